"""Command line: ``python -m experiments list`` and ``python -m experiments run NAME|all [--quick] ...``.

``run all`` runs every experiment in its own Python process (so one experiment's JAX settings, caches and memory never
affect the next), then prints a summary table and writes it to ``<out>/summary.md``. It exits non-zero when an
experiment crashes or one of its checks fails.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from experiments._core import DEFAULT_OUT, NAMES, Size, load, markdown_table, run_experiment


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m experiments", description="tnkit's paper reproductions.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments, their papers and expected runtimes")
    r = sub.add_parser("run", help="run one experiment, or all of them")
    r.add_argument("name", choices=[*NAMES, "all"], metavar="NAME", help=f"one of: {', '.join(NAMES)}, or all")
    size = r.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the shrunk setting (all of them: under 10 min, 2 cores)")
    size.add_argument("--smoke", action="store_true", help="the test suite's setting (seconds)")
    r.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT}/<name>)")
    r.add_argument("--seed", type=int, default=0, help="seed of every random stream (default 0)")
    r.add_argument(
        "--data-dir", type=Path, default=None, help="folder with downloaded data sets (default $TNKIT_DATA_DIR)"
    )
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field (repeatable), e.g. --set dataset=mnist --set epochs=5; VALUE is read as a "
        "Python literal when it is one, else as a string",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def _overrides(items: list[str], name: str) -> dict:
    """``["a=1", "b=mnist"]`` -> ``{"a": 1, "b": "mnist"}``, checked against the experiment's config fields."""
    fields = {f.name for f in dataclasses.fields(load(name).configs[Size.FULL])} if name != "all" else None
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set: expected FIELD=VALUE, got {item!r}")
        if fields is not None and key not in fields:
            raise SystemExit(f"--set: {name}'s config has no field {key!r}; its fields are {', '.join(sorted(fields))}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _list() -> int:
    rows = []
    for name in NAMES:
        exp = load(name)
        rows.append((name, exp.title, exp.runtime.get(Size.QUICK, "?"), exp.runtime.get(Size.FULL, "?")))
    print(markdown_table(["name", "reproduces", "--quick", "full"], rows))
    return 0


def _run_all(args, size: Size) -> int:
    out_root = args.out if args.out is not None else DEFAULT_OUT
    out_root.mkdir(parents=True, exist_ok=True)
    flag = {Size.FULL: [], Size.QUICK: ["--quick"], Size.SMOKE: ["--smoke"]}[size]
    if size is Size.FULL:
        expected = ", ".join(f"{name} {load(name).runtime.get(Size.FULL, '?')}" for name in NAMES)
        print(f"full runs, one after the other: {expected} (use --quick for under 10 minutes in all)", flush=True)
    rows, failed = [], []
    t_start = time.perf_counter()
    for name in NAMES:
        out = out_root / name
        cmd = [sys.executable, "-m", "experiments", "run", name, *flag, "--out", str(out), "--seed", str(args.seed)]
        if args.data_dir is not None:
            cmd += ["--data-dir", str(args.data_dir)]
        if args.quiet:
            cmd.append("--quiet")
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        wall = time.perf_counter() - t0
        results = out / "results.json"
        if rc not in (0, 3) or not results.exists():
            failed.append(name)
            rows.append((name, "CRASHED", f"{wall:.0f}", f"exit code {rc}"))
            continue
        record = json.loads(results.read_text())
        bad = [c for c, ok in record["checks"].items() if not ok]
        if bad:
            failed.append(name)
        status = "ok" if not bad else "FAILED: " + "; ".join(bad)
        rows.append((name, status, f"{wall:.0f}", record["headline"]))
    table = markdown_table(["experiment", "checks", "time (s)", "result"], rows)
    total = time.perf_counter() - t_start
    summary = f"# tnkit experiments, {size.value} run (seed {args.seed})\n\n{table}\n\nTotal: {total:.0f} s.\n"
    (out_root / "summary.md").write_text(summary)
    print("\n" + summary)
    print(f"reports: {out_root}/<name>/report.md")
    return 1 if failed else 0


def main(argv=None) -> int:
    args = _parse(argv)
    if args.command == "list":
        return _list()
    size = Size.QUICK if args.quick else Size.SMOKE if args.smoke else Size.FULL
    if args.name == "all":
        if args.overrides:
            raise SystemExit("--set applies to one experiment, not to run all")
        return _run_all(args, size)
    overrides = _overrides(args.overrides, args.name)
    if size is Size.FULL:
        print(f"{args.name}: full run, expected {load(args.name).runtime.get(Size.FULL, '?')} (use --quick for less)")
    record = run_experiment(
        args.name,
        size=size,
        out_dir=args.out,
        seed=args.seed,
        data_dir=args.data_dir,
        overrides=overrides,
        verbose=not args.quiet,
    )
    # Exit code 3: ran to the end but a check failed (``run all`` reads the results and reports which).
    return 0 if all(record["checks"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
