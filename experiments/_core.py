"""The experiment layer: what an experiment declares, and what running one produces.

An experiment is a package ``experiments/<name>/`` whose ``__init__.py`` defines ``EXPERIMENT``, an
:class:`Experiment`. It declares the paper and the claim it tests, one config per size, and a ``run`` function::

    run(config, ctx: Context) -> Outcome

Sizes:

* ``"full"``: the paper's setting, scaled to what a 2-core CPU and the data shipped with packages allow (each
  experiment's README says where and why it differs from the paper);
* ``"quick"``: the ``--quick`` shrink; ``python -m experiments run all --quick`` must finish in under 10 minutes on
  2 cores, all experiments together;
* ``"smoke"``: seconds, for the test suite; it still has to learn something (the tests check the ``Outcome.checks``).

Running an experiment (:func:`run_experiment`) writes into its output folder:

* ``results.json``: the config, seed, size, versions, wall time, the experiment's own results, its checks and its
  one-line headline;
* ``report.md``: a header (paper, claim, command, size, runtime) followed by the experiment's markdown report and its
  figures;
* ``*.png``: the figures the experiment saved through :meth:`Context.savefig`.

The library never prints progress; this layer does (``Context.progress`` wraps ``tqdm`` and ``Context.log`` prints).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import importlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "out"

#: The experiments, in the order ``list`` shows them and ``run all`` runs them.
NAMES = (
    "compress_image",
    "tensorizing_nn",
    "structured_dense",
    "flora",
    "shampoo",
    "core_shapes",
    "tfno",
)


class Size(enum.Enum):
    """How big a run is: the paper-scale ``FULL``, the ``--quick`` shrink, or the test suite's ``SMOKE``."""

    FULL = "full"
    QUICK = "quick"
    SMOKE = "smoke"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an experiment's ``run`` returns.

    Attributes:
      results: JSON-serialisable results (numbers, lists, dicts of them; NumPy/JAX scalars and arrays are converted).
      checks: named pass/fail checks that the run learned or reproduced something (``"loss decreased": True``);
        the runner reports them and exits non-zero when one fails.
      headline: one line for the summary table, e.g. ``"TT 30x smaller at -0.4 pt accuracy"``.
      report: the markdown body of ``report.md`` (tables, discussion); the runner adds the header and figures.
    """

    results: Mapping[str, Any]
    checks: Mapping[str, bool]
    headline: str
    report: str


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One reproduction.

    Attributes:
      name: the folder name and the CLI name.
      title: a short title.
      paper: the paper reproduced (authors, title, venue, year).
      claim: the claim being tested, in one or two sentences.
      configs: one config (a frozen dataclass) per :class:`Size`.
      run: ``run(config, ctx) -> Outcome``, or its location ``"package.module:function"``, imported when the
        experiment runs (so that ``list`` and loading stay cheap: the module usually imports JAX and the models).
      runtime: expected wall time of each size on a 2-core CPU, e.g. ``{Size.FULL: "about 25 min", ...}``.
      x64: whether the experiment needs ``jax_enable_x64`` (set before it runs; ``run all`` gives every experiment its
        own process, so this never leaks into another experiment).
    """

    name: str
    title: str
    paper: str
    claim: str
    configs: Mapping[Size, Any]
    run: Callable[[Any, Context], Outcome] | str
    runtime: Mapping[Size, str]
    x64: bool = False

    def __post_init__(self):
        missing = [s.value for s in Size if s not in self.configs]
        if missing:
            raise ValueError(f"experiment {self.name!r}: configs has no entry for size(s) {missing}")
        if isinstance(self.run, str) and self.run.count(":") != 1:
            raise ValueError(f"experiment {self.name!r}: run must be 'package.module:function', got {self.run!r}")

    def run_function(self) -> Callable[[Any, Context], Outcome]:
        """``run`` as a callable (imported here when given as ``"package.module:function"``)."""
        if callable(self.run):
            return self.run
        module, function = self.run.split(":")
        return getattr(importlib.import_module(module), function)


class Context:
    """What an experiment's ``run`` gets besides its config: output folder, seed, data folder, progress and figures.

    Attributes:
      out_dir: the output folder (created).
      seed: the run's seed; derive every key and generator from it (:meth:`key`, :meth:`rng`).
      size: the :class:`Size` being run.
      data_dir: where loaders look for downloaded data sets (``--data-dir`` or ``$TNKIT_DATA_DIR``), or ``None``.
    """

    def __init__(self, out_dir: Path, seed: int, size: Size, data_dir: Path | None = None, verbose: bool = True):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.seed = int(seed)
        self.size = size
        self.data_dir = data_dir
        self.verbose = verbose
        self.figures: list[str] = []

    def key(self, *salt: int):
        """A ``jax.random`` key from the seed, folded with ``salt`` (so separate uses get independent streams)."""
        import jax

        k = jax.random.key(self.seed)
        for s in salt:
            k = jax.random.fold_in(k, s)
        return k

    def rng(self, *salt: int) -> np.random.Generator:
        """A NumPy generator from the seed and ``salt``."""
        return np.random.default_rng([self.seed, *salt])

    def log(self, message: str) -> None:
        """Print a progress message (flushed; silent when ``verbose`` is off)."""
        if self.verbose:
            print(message, flush=True)

    def progress(self, iterable: Iterable, *, desc: str, total: int | None = None) -> Iterable:
        """Wrap a long loop in a ``tqdm`` progress bar (on stderr, only when it is a terminal)."""
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is in the experiments extra; degrade to no bar.
            return iterable
        return tqdm(iterable, desc=desc, total=total, leave=False, disable=None if self.verbose else True)

    def savefig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as ``<out_dir>/<name>.png``, close it, and list it in the report."""
        import matplotlib.pyplot as plt

        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        if path.name not in self.figures:
            self.figures.append(path.name)
        return path


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, floatfmt: str = ".4g") -> str:
    """A GitHub markdown table; floats are formatted with ``floatfmt``, everything else with ``str``."""

    def cell(v):
        if isinstance(v, float | np.floating):
            return "nan" if math.isnan(v) else format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: a row has {len(row)} cells, expected {len(headers)} (headers {headers})")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy/JAX scalars and arrays, tuples, enums, paths and dataclasses to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # NumPy or JAX scalar/array
        return to_jsonable(np.asarray(obj).tolist())
    raise TypeError(f"results: {type(obj).__name__} is not JSON-serialisable ({obj!r:.80})")


def load(name: str) -> Experiment:
    """Import ``experiments.<name>`` and return its ``EXPERIMENT``."""
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(NAMES)}")
    module = importlib.import_module(f"experiments.{name}")
    exp = module.EXPERIMENT
    if exp.name != name:
        raise RuntimeError(f"experiments/{name}/__init__.py defines EXPERIMENT.name={exp.name!r}")
    return exp


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``data_dir`` if given, else ``$TNKIT_DATA_DIR`` (``experiments.data.DATA_DIR_ENV``) if set, else ``None``."""
    if data_dir is not None:
        return Path(data_dir)
    from experiments.data import DATA_DIR_ENV

    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def _versions() -> dict[str, str]:
    import jax

    versions = {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__}
    for mod in ("tnkit", "flax", "optax", "equinox", "tensorly"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "unknown")
    versions["device"] = str(jax.devices()[0])
    versions["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    return versions


def command_line(name: str, size: Size) -> str:
    """The command that reproduces a run of ``name`` at ``size``."""
    flag = {Size.FULL: "", Size.QUICK: " --quick", Size.SMOKE: " --smoke"}[size]
    return f"python -m experiments run {name}{flag}"


def run_experiment(
    name: str,
    *,
    size: Size = Size.FULL,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run one experiment in this process and write ``results.json``, ``report.md`` and its figures.

    Args:
      name: an entry of :data:`NAMES`.
      size: which config to run.
      out_dir: output folder; default ``experiments/out/<name>/``.
      seed: the seed every random stream is derived from.
      data_dir: folder with downloaded data sets (see ``experiments.data``).
      overrides: config fields to replace (``dataclasses.replace``), e.g. ``{"epochs": 1}``.
      verbose: print progress.

    Returns:
      The dictionary written to ``results.json``.
    """
    exp = load(name)
    if exp.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    config = exp.configs[size]
    if overrides:
        config = dataclasses.replace(config, **overrides)
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT / name
    ctx = Context(out, seed, size, resolve_data_dir(data_dir), verbose=verbose)
    ctx.log(f"== {name}: {exp.title} [{size.value}, seed {seed}] -> {out}")
    t0 = time.perf_counter()
    outcome = exp.run_function()(config, ctx)
    wall = time.perf_counter() - t0
    if not isinstance(outcome, Outcome):
        raise TypeError(f"experiment {name!r}: run returned {type(outcome).__name__}, expected Outcome")
    record = {
        "experiment": name,
        "title": exp.title,
        "paper": exp.paper,
        "claim": exp.claim,
        "size": size.value,
        "seed": seed,
        "command": command_line(name, size)
        + (f" --seed {seed}" if seed else "")
        + "".join(f" --set '{k}={v!r}'" for k, v in (overrides or {}).items()),
        "config": to_jsonable(config),
        "overrides": to_jsonable(dict(overrides or {})),
        "wall_time_s": round(wall, 2),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "versions": _versions(),
        "headline": outcome.headline,
        "checks": {k: bool(v) for k, v in outcome.checks.items()},
        "figures": list(ctx.figures),
        "results": to_jsonable(outcome.results),
    }
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "report.md").write_text(_report(exp, record, outcome.report))
    ctx.log(f"== {name}: {wall:.1f} s; {outcome.headline}")
    for check, ok in record["checks"].items():
        ctx.log(f"   [{'PASS' if ok else 'FAIL'}] {check}")
    return record


def _report(exp: Experiment, record: Mapping[str, Any], body: str) -> str:
    checks = "\n".join(f"- {'PASS' if ok else 'FAIL'}: {c}" for c, ok in record["checks"].items())
    figures = "\n\n".join(f"![{Path(f).stem}]({f})" for f in record["figures"])
    size = Size(record["size"])
    return (
        f"# {exp.title}\n\n"
        f"- Paper: {exp.paper}\n"
        f"- Claim tested: {exp.claim}\n"
        f"- Command: `{record['command']}`\n"
        f"- Size: {size.value} (expected runtime {exp.runtime.get(size, 'not stated')}; this run "
        f"{record['wall_time_s']:.0f} s on {record['versions']['machine']})\n"
        f"- Date: {record['date']}; jax {record['versions']['jax']}\n\n"
        f"**Result:** {record['headline']}\n\n"
        f"## Checks\n\n{checks or '(none)'}\n\n"
        f"{body.strip()}\n\n"
        + (f"## Figures\n\n{figures}\n" if figures else "")
    )
