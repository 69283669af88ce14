"""Run every tnkit benchmark, each in a fresh Python process (so JIT caches, BLAS thread pools and memory from one do
not affect the next).

    python benchmarks/run_all.py            # full runs: results/*.json and the README tables
    python benchmarks/run_all.py --quick    # smoke run: fewer repeats, JSON to benchmarks/out/, README untouched
    python benchmarks/run_all.py --only tt_svd mps_overlap
    python benchmarks/run_all.py --blas-threads 1   # single-threaded OpenBLAS: separate *_openblas1 tables

Exits non-zero if a script fails (a crash, not a missed target: targets are reported in the tables).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "tt_svd": "bench_tt_svd.py",
    "mps_overlap": "bench_mps_overlap.py",
    "tt_round": "bench_tt_round.py",
    "t3f_workload": "bench_t3f_workload.py",
    "compile": "bench_compile.py",
    "ht_svd": "bench_ht_svd.py",
    "tucker": "bench_tucker.py",
    "tr_svd": "bench_tr_svd.py",
    "kron_matvec": "bench_kron_matvec.py",
    "cp_als": "bench_cp_als.py",
    "tt_linear": "bench_tt_linear.py",
    "tt_linear_memory": "bench_tt_linear_memory.py",
    "tt_embedding": "bench_tt_embedding.py",
    "tltorch": "bench_tltorch.py",
    "optim_digits": "bench_optim_digits.py",
    "optim_lstsq": "bench_optim_lstsq.py",
    "optim_step_time": "bench_optim_step_time.py",
    "cpu_floors": "bench_cpu_floors.py",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats; nothing committed is overwritten")
    p.add_argument("--no-write", action="store_true", help="print tables only")
    p.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), help="run these benchmarks only")
    p.add_argument(
        "--blas-threads",
        type=int,
        help="run with OPENBLAS_NUM_THREADS set to this (for tnkit's LAPACK calls and the NumPy peers alike); results "
        "go to <name>_openblas<N>.json and their own README tables",
    )
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    names = args.only or list(SCRIPTS)
    extra = [f for f, on in (("--quick", args.quick), ("--no-write", args.no_write)) if on]
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / SCRIPTS[name]), *extra]
        print(f"==> {name}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, env=env)
        print(f"<== {name}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
