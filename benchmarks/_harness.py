"""Shared utilities for the tnkit benchmarks: timing, compile timing, machine info and result files.

Every benchmark script imports this module, enables float64 (:func:`setup`), times tnkit and its peer in the same
process (interleaved, see :func:`time_interleaved`), and ends with :func:`write_results`, which writes
``benchmarks/results/<name>.json`` and refreshes the table between ``<!-- BEGIN name -->`` and ``<!-- END name -->``
in ``benchmarks/README.md``. With ``--quick`` (fewer repeats) the JSON goes to ``benchmarks/out/`` (git-ignored) and
the README is left alone, so a smoke run never overwrites the committed numbers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_DIR = BENCH_DIR / "out"
README = BENCH_DIR / "README.md"

if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` without installing tnkit
    sys.path.insert(0, str(REPO_ROOT))

PEER_PACKAGES = ("jax", "jaxlib", "numpy", "scipy", "tensorly", "quimb", "cotengra", "opt_einsum")


# --------------------------------------------------------------------------------------------------------- setup


def setup() -> None:
    """Enable float64 in JAX. Every script calls this before creating arrays."""
    jax.config.update("jax_enable_x64", True)


def parse_args(description: str, argv: Sequence[str] | None = None, extra: Callable | None = None) -> argparse.Namespace:
    """The command line shared by all scripts: ``--quick`` and ``--no-write``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer repeats; results go to benchmarks/out/, README untouched")
    p.add_argument("--no-write", action="store_true", help="print the table only, write no files")
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


# -------------------------------------------------------------------------------------------------------- timing


def _is_jax_output(out: Any) -> bool:
    return any(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(out))


def _block(out: Any) -> Any:
    """Wait for JAX results (``jax.block_until_ready``); anything else (NumPy, quimb objects) is already done."""
    if _is_jax_output(out):
        jax.block_until_ready(out)
    return out


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "all": list(samples)}


class _OthersCPU:
    """Share of the machine's CPU time used by *other* processes between ``start()`` and ``stop()``: all busy
    time in ``/proc/stat`` minus this process's own CPU time. 0 on an idle machine; 0.5 means one of two cores
    was taken by someone else on average."""

    def start(self):
        self._a, self._own = _cpu_times(), os.times()
        return self

    def stop(self) -> float | None:
        b, own = _cpu_times(), os.times()
        if self._a is None or b is None or b[0] == self._a[0]:
            return None
        total = b[0] - self._a[0]
        busy = total - (b[1] - self._a[1])
        mine = (own.user - self._own.user + own.system - self._own.system) * os.sysconf("SC_CLK_TCK")
        return round(max(0.0, (busy - mine) / total), 3)


def time_fn(fn: Callable, *args, repeats: int = 7, warmup: int = 2) -> dict[str, Any]:
    """Wall-clock time of ``fn(*args)`` in seconds: ``{"median", "min", "all", "others_cpu_share", "cores",
    "system_share"}``.

    ``warmup`` calls are made first (they trigger ``jit`` compilation, which is not counted here; use
    :func:`compile_time` for that). JAX outputs are waited for with ``jax.block_until_ready``; NumPy work is
    synchronous and is timed as is. ``others_cpu_share`` is the share of the machine's CPU time that other
    processes used while the samples were taken (0 = undisturbed). ``cores`` is this process's CPU time (user +
    kernel) over the wall time of the samples (1.0 = one core kept busy), and ``system_share`` the kernel's part
    of that CPU time (page faults show up there).
    """
    for _ in range(warmup):
        _block(fn(*args))
    samples = []
    others = _OthersCPU().start()
    own0, wall0 = os.times(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        _block(fn(*args))
        samples.append(time.perf_counter() - t0)
    wall, own1 = time.perf_counter() - wall0, os.times()
    user, system = own1.user - own0.user, own1.system - own0.system
    return _stats(samples) | {
        "others_cpu_share": others.stop(),
        "cores": (user + system) / wall,
        "system_share": system / (user + system) if user + system > 0 else None,
    }


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 7,
    warmup: int = 2,
    cooldown_s: float = 0.25,
    rewarm: bool = True,
    rewarm_s: float = 0.02,
) -> dict[str, dict]:
    """Time several zero-argument callables round-robin (A B C A B C ...), so slow drifts of a shared machine hit
    all of them alike. Returns ``{name: {"median", "min", "all", "others_cpu_share"}}`` (seconds; the share of CPU
    time other processes used during the whole loop).

    Each timed call starts after an untimed pause of ``cooldown_s``: thread pools keep their workers spinning for a
    while after a call (OpenBLAS for ~0.1 s by default, XLA's pool too), and on a machine with few cores a call
    that starts right after another library's would share the cores with those spinning threads. The pause lets
    them go idle; with ``rewarm`` untimed calls of the same function follow (at least one, and more until
    ``rewarm_s`` has passed), so that the timed call finds its own thread pools awake and caches warm, as in a loop
    of calls of one library alone. One call is not always enough: on a 2-vCPU Intel VM (2026-11-25) the second call
    of a ~2 ms XLA function after a 0.25 s pause still took 3.1 ms against 1.9 ms in a loop, while after 5 ms or
    more of rewarming calls it took 1.9-2.1 ms; functions slower than ``rewarm_s`` get exactly one call, as
    before."""
    for _ in range(warmup):
        for fn in fns.values():
            _block(fn())
    samples: dict[str, list[float]] = {k: [] for k in fns}
    others = _OthersCPU().start()
    for _ in range(repeats):
        for name, fn in fns.items():
            if cooldown_s:
                time.sleep(cooldown_s)
            if rewarm:
                t_rewarm = time.perf_counter()
                _block(fn())
                while time.perf_counter() - t_rewarm < rewarm_s:
                    _block(fn())
            t0 = time.perf_counter()
            _block(fn())
            samples[name].append(time.perf_counter() - t0)
    share = others.stop()
    return {k: _stats(v) | {"others_cpu_share": share} for k, v in samples.items()}


def _share_of(result: Mapping[str, Any]) -> float:
    if "others_cpu_share" in result:
        return result["others_cpu_share"] or 0.0
    return max((v.get("others_cpu_share") or 0.0) for v in result.values() if isinstance(v, Mapping))


def quietly(measure: Callable[[], Any], *, attempts: int = 3, max_share: float = 0.1) -> tuple[Any, dict]:
    """Run a measurement (``time_fn``, ``time_interleaved`` or ``compile_time`` wrapped in a lambda); if other
    processes took more than ``max_share`` of the CPU meanwhile, wait for the machine to be quiet and measure again,
    up to ``attempts`` times. Returns the least disturbed result and ``{"attempts", "shares"}``."""
    best, best_share, shares = None, None, []
    for i in range(max(1, attempts)):
        if i:
            wait_for_quiet(timeout_s=120)
        result = measure()
        share = _share_of(result)
        shares.append(share)
        if best is None or share < best_share:
            best, best_share = result, share
        if share <= max_share:
            break
    return best, {"attempts": len(shares), "shares": shares}


def compile_time(jitted_fn, *args, first_call: bool = True, return_compiled: bool = False) -> dict[str, Any]:
    """Compile time of a ``jax.jit``-wrapped function, measured apart from running it.

    Clears JAX's in-memory caches, then times ``jitted_fn.lower(*args)`` (trace + lowering to StableHLO) and
    ``.compile()`` (XLA) separately. With ``first_call`` (and concrete ``args``), also times a cold first call
    ``jitted_fn(*args)`` after another cache clear: trace + lower + compile + one run. ``args`` may be
    ``jax.ShapeDtypeStruct`` pytrees, in which case only lower/compile are timed.

    Returns seconds: ``{"lower_s", "compile_s", "lower_compile_s", "first_call_s", "hlo_instructions",
    "others_cpu_share"}`` (the last: other processes' share of the CPU during lower + compile) (and
    ``"compiled"``, the executable, with ``return_compiled``). Note that this clears the caches of every jitted
    function in the process: warm up again before timing steady-state runs.
    """
    concrete = not any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(args))
    out: dict[str, Any] = {}
    if first_call and concrete:
        jax.clear_caches()
        t0 = time.perf_counter()
        _block(jitted_fn(*args))
        out["first_call_s"] = time.perf_counter() - t0
    else:
        out["first_call_s"] = None
    jax.clear_caches()
    others = _OthersCPU().start()
    t0 = time.perf_counter()
    lowered = jitted_fn.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    out["others_cpu_share"] = others.stop()
    out["lower_s"] = t1 - t0
    out["compile_s"] = t2 - t1
    out["lower_compile_s"] = t2 - t0
    out["hlo_instructions"] = count_hlo_instructions(compiled.as_text())
    if return_compiled:
        out["compiled"] = compiled
    return out


def count_hlo_instructions(hlo_text: str) -> int:
    """Number of instructions (``name = shape op(...)`` lines) in an optimized HLO module's text."""
    return sum(1 for line in hlo_text.splitlines() if re.match(r"\s*(ROOT\s+)?[%\w.\-]+\s*=\s*\S", line))


def measure_peak_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Reference rate of this machine: a jitted float64 ``jnp.dot`` of two ``n x n`` matrices (2 n^3 flops),
    and the same product in NumPy. Requires float64 to be enabled."""
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(123), (n, n), jnp.float64)
    b = jax.random.normal(jax.random.key(456), (n, n), jnp.float64)
    dot = jax.jit(jnp.dot)
    t_jax = time_fn(dot, a, b, repeats=repeats, warmup=1)
    an, bn = np.asarray(a), np.asarray(b)
    t_np = time_fn(np.dot, an, bn, repeats=repeats, warmup=1)
    flops = 2.0 * n**3
    return {
        "n": n,
        "jax_dot_gflops": flops / t_jax["median"] / 1e9,
        "jax_dot_gflops_best": flops / t_jax["min"] / 1e9,
        "numpy_dot_gflops": flops / t_np["median"] / 1e9,
        "numpy_dot_gflops_best": flops / t_np["min"] / 1e9,
    }


# -------------------------------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(pkg: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:  # noqa: BLE001
        try:
            return getattr(importlib.import_module(pkg), "__version__", None)
        except Exception:  # noqa: BLE001
            return None


def _blas_info() -> list[dict[str, Any]]:
    try:
        import threadpoolctl

        return [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "architecture")}
            | {"library": os.path.basename(info.get("filepath", ""))}
            for info in threadpoolctl.threadpool_info()
        ]
    except Exception:  # noqa: BLE001
        return []


def tnkit_source_digest() -> str:
    """sha256 (first 12 hex digits) of ``tnkit/*.py``: which library state the numbers belong to (the tree is
    edited concurrently, so a git commit alone may not identify it)."""
    h = hashlib.sha256()
    for path in sorted((REPO_ROOT / "tnkit").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory, OS, Python and library versions, BLAS threading and relevant env vars."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "cores_available": affinity,
        "mem_total_gib": _mem_total_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "versions": {pkg: _version(pkg) for pkg in PEER_PACKAGES} | {"tnkit": _version("tnkit")},
        "tnkit_source_sha256": tnkit_source_digest(),
        "blas": _blas_info(),
        "env": {
            k: os.environ.get(k)
            for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "JAX_ENABLE_X64")
            if os.environ.get(k) is not None
        },
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load average: a shared machine's numbers are only as good as its idleness."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields), idle


def machine_busy_fraction(interval_s: float = 1.0) -> float | None:
    """Fraction of all CPU time spent busy over ``interval_s`` (this process sleeps meanwhile, so it measures
    everyone else)."""
    a = _cpu_times()
    time.sleep(interval_s)
    b = _cpu_times()
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


def wait_for_quiet(max_busy: float = 0.2, settle_s: int = 3, timeout_s: float = 300.0) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until other processes use less than ``max_busy`` of the machine for ``settle_s``
    consecutive seconds. On a shared machine this keeps a benchmark from starting in the middle of someone's test
    run. Returns what happened, for the run's metadata; never fails."""
    t0 = time.perf_counter()
    calm = 0
    last = None
    while time.perf_counter() - t0 < timeout_s:
        last = machine_busy_fraction(1.0)
        if last is None:
            return {"waited_s": 0.0, "quiet": None, "busy_fraction": None}
        calm = calm + 1 if last < max_busy else 0
        if calm >= settle_s:
            return {"waited_s": round(time.perf_counter() - t0, 1), "quiet": True, "busy_fraction": round(last, 3)}
    return {"waited_s": round(time.perf_counter() - t0, 1), "quiet": False, "busy_fraction": round(last or 0, 3)}


def run_meta(name: str, args: argparse.Namespace, **settings) -> dict[str, Any]:
    """Metadata block for one run: time, mode, settings, machine, load average at the start. A full run first
    waits (up to 5 minutes) for the machine to be quiet (:func:`wait_for_quiet`)."""
    quiet = None if args.quick else wait_for_quiet()
    return {
        "quiet_wait": quiet,
        "benchmark": name,
        "utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "mode": "quick" if args.quick else "full",
        "argv": sys.argv[1:],
        "settings": settings,
        "machine": machine_info(),
        "load_average_start": load_average(),
    }


# --------------------------------------------------------------------------------------------------- result files


def fmt(value: Any) -> str:
    """A table cell: floats to 3 significant digits, booleans as yes/no, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
            return f"{v:.{digits}f}"
        return f"{v:.2e}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]] | None = None) -> str:
    """A GitHub markdown table. ``columns``: ``(key, header)`` or ``(key, header, format_spec)`` tuples (default:
    the keys of the rows, in order); ``format_spec`` (e.g. ``".5f"``) overrides :func:`fmt` for numbers."""
    if columns is None:
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        columns = [(k, k) for k in keys]

    def cell(row, col):
        value = row.get(col[0])
        if len(col) > 2 and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return format(value, col[2])
        return fmt(value)

    head = "| " + " | ".join(c[1] for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _machine_line(meta: Mapping[str, Any]) -> str:
    m = meta.get("machine", {})
    v = m.get("versions", {})
    peers = ", ".join(f"{k} {v[k]}" for k in PEER_PACKAGES if v.get(k))
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} thread{'' if b.get('num_threads') == 1 else 's'})"
        for b in m.get("blas", [])
    )
    return (
        f"{meta.get('utc', '')}, {meta.get('mode', '')} run; {m.get('cpu_model')}, {m.get('cores_available')} cores, "
        f"{m.get('mem_total_gib')} GiB; {peers}; BLAS: {blas}; tnkit source {m.get('tnkit_source_sha256')}; "
        f"load average at start {meta.get('load_average_start')}, at end {meta.get('load_average_end')}; "
        f"other processes' CPU share when timing began: {(meta.get('quiet_wait') or {}).get('busy_fraction')}."
    )


def variant_suffix() -> str:
    """``"_openblas<N>"`` when ``OPENBLAS_NUM_THREADS`` is set, else ``""``: such runs get their own JSON file and
    README table instead of replacing the default-configuration ones."""
    n = os.environ.get("OPENBLAS_NUM_THREADS")
    return f"_openblas{n}" if n else ""


def write_results(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    *,
    columns: Sequence[tuple[str, str]] | None = None,
    notes: Sequence[str] = (),
    quick: bool | None = None,
) -> Path:
    """Write ``benchmarks/results/<name>.json`` and refresh the README section between the markers.

    ``name`` gets :func:`variant_suffix` appended (``tt_svd_openblas1`` for a run under ``OPENBLAS_NUM_THREADS=1``).

    The section holds the markdown table of ``rows`` (``columns`` picks and names the columns), the ``notes``
    (one bullet each) and a line describing the run and the machine. With ``quick`` (default: ``meta["mode"]``)
    the JSON goes to ``benchmarks/out/`` and the README is not touched. If the markers are missing, a new section
    is appended to the README (which is created if it does not exist).
    """
    name = name + variant_suffix()
    meta = dict(meta)
    meta.setdefault("load_average_end", load_average())
    if quick is None:
        quick = meta.get("mode") == "quick"
    out_dir = QUICK_DIR if quick else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"name": name, "meta": meta, "rows": list(rows), "notes": list(notes)}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    if quick:
        return path

    table = markdown_table(rows, columns)
    bullets = "".join(f"- {n}\n" for n in notes)
    block = f"{table}\n\n{bullets}{'' if not bullets else chr(10)}<sub>{_machine_line(meta)}</sub>"
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = README.read_text() if README.exists() else "# tnkit benchmarks\n"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        _, post = rest.split(end, 1)
        text = f"{pre}{begin}\n{block}\n{end}{post}"
    else:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{begin}\n{block}\n{end}\n"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(README)
    return path


def print_table(title: str, rows, columns=None, notes=()) -> None:
    print(f"\n== {title} ==")
    print(markdown_table(rows, columns))
    for n in notes:
        print(f"- {n}")
    print()


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def report(name: str, rows, meta, columns, notes, *, write: bool) -> None:
    """Print a benchmark's table and, unless ``write`` is false, save its JSON and refresh its README table."""
    print_table(name, rows, columns, notes)
    if write:
        write_results(name, rows, meta, columns=columns, notes=notes)
