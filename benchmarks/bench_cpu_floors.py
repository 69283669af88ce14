"""What this CPU allows: the operations that bound the missed CPU targets, timed with the cores they occupy.

No tnkit-vs-peer comparison here. Each row times one building block that a tnkit benchmark spends its time in,
and records how many cores the process kept busy while it ran (process CPU time over wall time: 1.0 = one core) and
which share of that CPU time went to the kernel (page faults show up there). The rows:

* ``a @ a.T`` for a float64 ``a`` of shape ``(64, 32768)`` (the Gram matrix of the second TT-SVD unfolding of an
  ``(8,)*7`` tensor), in XLA and in NumPy; and a float64 ``(1024, 1024) @ (1024, 1024)`` product in XLA for
  contrast: a product with a large output.
* ``jnp.linalg.qr(a.T, mode="r")`` for the same ``a``: the accurate route of ``tnkit.tt.SVDMethod`` on that
  unfolding (LAPACK ``geqrf``, which JAX takes from SciPy's OpenBLAS).
* 31 calls of ``jnp.linalg.qr`` (reduced, with ``Q``) on float64 ``(256, 64)`` matrices in one jitted function: the
  right-to-left orthogonalisation of ``tt.round`` on the ``tt_round`` benchmark's sum (d = 32, n = 4, rank 64); also
  in a child process with ``OPENBLAS_NUM_THREADS=1``, because OpenBLAS's threads, not the arithmetic, decide this
  one on a 2-vCPU machine.
* ``tt.inner`` of two random MPS (64 sites, physical dimension 2, bond 64, float64): 126 small products
  ``(64 x 64) @ (64 x 128)``.
* ``2.0 * x`` for a float32 ``x`` of 8192 x 1024 (32 MiB: the kron-matvec batch and its "copy" reference) and of
  8192 x 512 (16 MiB), and ``jnp.sum(x)`` of the 32 MiB array (a read only). glibc serves allocations of 32 MiB
  and more with a fresh ``mmap`` each time (its largest dynamic mmap threshold), so a 32 MiB output is page-faulted
  on every call; a 16 MiB one is reused from the heap. The 32 MiB copy is also timed in a child process started
  with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4000000000`` (glibc then serves every allocation from its heap
  and keeps freed memory), to show what the page faults cost.

Every function is jitted and warmed up; each row is a loop of calls of that function alone (median and best wall
time, and the CPU-time counters of the whole loop).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

if __package__ in (None, ""):
    import _harness as H  # noqa: N812  (run as a script)
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "cpu_floors"
GRAM_SHAPE = (64, 32768)
SQUARE = 1024
MPS_SITES, MPS_BOND = 64, 64
BATCH, FEATURES = 8192, 1024
QR_CALLS, QR_SHAPE = 31, (256, 64)


_CHILD = """
import json, sys, time
import jax, jax.numpy as jnp
x = jax.random.normal(jax.random.key(0), ({batch}, {features}), jnp.float32)
f = jax.jit(lambda v: 2.0 * v)
for _ in range({warmup}):
    f(x).block_until_ready()
s = []
for _ in range({repeats}):
    t = time.perf_counter(); f(x).block_until_ready(); s.append(time.perf_counter() - t)
print(json.dumps(s))
"""


_CHILD_QR = """
import json, sys, time
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
xs = jax.random.normal(jax.random.key(0), ({calls}, {rows}, {cols}), jnp.float64)
f = jax.jit(lambda xs: [jnp.linalg.qr(xs[i]) for i in range({calls})])
for _ in range({warmup}):
    jax.block_until_ready(f(xs))
s = []
for _ in range({repeats}):
    t = time.perf_counter(); jax.block_until_ready(f(xs)); s.append(time.perf_counter() - t)
print(json.dumps(s))
"""


def _copy_without_mmap(repeats: int, warmup: int) -> list[float] | None:
    """Wall seconds of the 32 MiB ``2.0 * x`` in a child process whose glibc never uses ``mmap`` for allocations."""
    env = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="4000000000")
    code = _CHILD.format(batch=BATCH, features=FEATURES, warmup=warmup, repeats=repeats)
    return _child(code, env)


def _qr_single_threaded(repeats: int, warmup: int) -> list[float] | None:
    """Wall seconds of the QR loop of the ``QR_*`` settings in a child process with single-threaded OpenBLAS."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    code = _CHILD_QR.format(calls=QR_CALLS, rows=QR_SHAPE[0], cols=QR_SHAPE[1], warmup=warmup, repeats=repeats)
    return _child(code, env)


def _child(code: str, env: dict) -> list[float] | None:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        print(f"child process failed ({out.returncode}): {out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    from tnkit import TT, tt

    repeats, warmup = (5, 1) if args.quick else (31, 3)
    meta = H.run_meta(NAME, args, gram_shape=GRAM_SHAPE, square=SQUARE, mps=(MPS_SITES, MPS_BOND),
                      batch=(BATCH, FEATURES), repeats=repeats, warmup=warmup)
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal(GRAM_SHAPE)
    a = jax.device_put(a_np)
    sq = jax.device_put(rng.standard_normal((SQUARE, SQUARE)))

    def mps(seed):
        r = np.random.default_rng(seed)
        bonds = [1] + [MPS_BOND] * (MPS_SITES - 1) + [1]
        return TT([jax.device_put(r.standard_normal((bonds[k], 2, bonds[k + 1])) / np.sqrt(MPS_BOND))
                   for k in range(MPS_SITES)])

    psi, phi = mps(0), mps(1)
    qr_inputs = jax.random.normal(jax.random.key(2), (QR_CALLS,) + QR_SHAPE, jnp.float64)
    qr_loop = jax.jit(lambda xs: [jnp.linalg.qr(xs[i]) for i in range(QR_CALLS)])
    # Householder QR with Q formed: 2 m n^2 - 2 n^3 / 3 for R, as much again for Q.
    small_qr_flop = QR_CALLS * 2 * (2.0 * QR_SHAPE[0] * QR_SHAPE[1] ** 2 - 2.0 * QR_SHAPE[1] ** 3 / 3)
    x32 = jax.random.normal(jax.random.key(0), (BATCH, FEATURES), jnp.float32)
    x16 = jax.random.normal(jax.random.key(1), (BATCH, FEATURES // 2), jnp.float32)

    m, n = GRAM_SHAPE
    gram_flop = 2.0 * m * m * n
    qr_flop = 2.0 * n * m * m - 2.0 * m**3 / 3
    mps_flop = MPS_SITES * 4.0 * MPS_BOND**3 * 2  # upper bound: the zipper's 2 products per site, 2 flops per MAC
    double = jax.jit(lambda v: 2.0 * v)
    cases = [
        ("XLA float64 a @ a.T, a (64, 32768)", "Gram steps of TT/TR-SVD (`SVDMethod.AUTO`)",
         functools.partial(jax.jit(lambda v: v @ v.T), a), gram_flop, None),
        ("NumPy float64 a @ a.T, same a", "(the same product in OpenBLAS)",
         lambda: a_np @ a_np.T, gram_flop, None),
        ("XLA float64 (1024, 1024) @ (1024, 1024)", "(a product with a large output)",
         functools.partial(jax.jit(lambda v: v @ v), sq), 2.0 * SQUARE**3, None),
        ("LAPACK QR of a.T (32768, 64), mode r", "accurate route of TT/TR-SVD",
         functools.partial(jax.jit(lambda v: jnp.linalg.qr(v.T, mode="r")), a), qr_flop, None),
        ("LAPACK QR with Q, 31 calls on (256, 64) matrices", "`tt.round`'s orthogonalisation (`tt_round`)",
         functools.partial(qr_loop, qr_inputs), small_qr_flop, None),
        ("XLA float64 tt.inner, MPS 64 sites, bond 64", "`mps_overlap`",
         functools.partial(jax.jit(tt.inner), psi, phi), mps_flop, None),
        ("XLA float32 2.0 * x, x 32 MiB", "`kron_matvec` output and its copy reference",
         functools.partial(double, x32), None, 2 * x32.nbytes),
        ("XLA float32 2.0 * x, x 16 MiB", "(below glibc's mmap threshold)",
         functools.partial(double, x16), None, 2 * x16.nbytes),
        ("XLA float32 sum(x), x 32 MiB", "(a read only)",
         functools.partial(jax.jit(jnp.sum), x32), None, x32.nbytes),
    ]
    results, tries = H.quietly(
        lambda: {label: H.time_fn(fn, repeats=repeats, warmup=warmup) for label, _, fn, _, _ in cases},
        attempts=1 if args.quick else 3,
    )
    rows = []
    for label, bounds, _, flop, nbytes in cases:
        r = results[label]
        rows.append({
            "operation": label,
            "bounds": bounds,
            "ms": H.ms(r["median"]),
            "best_ms": H.ms(r["min"]),
            "cores": r["cores"],
            "system_share": r["system_share"],
            "gflops": None if flop is None else flop / r["median"] / 1e9,
            "gb_per_s": None if nbytes is None else nbytes / r["median"] / 1e9,
            "ms_per_mib": None if nbytes is None else H.ms(r["median"]) / (nbytes / 2**20),
            "others_cpu": r["others_cpu_share"],
            "attempts": tries,
            "samples_s": r["all"],
        })
    def child_row(operation, bounds, samples, flop=None, nbytes=None):
        """A table row for wall-clock samples taken in a child process (no CPU counters there)."""
        median = statistics.median(samples)
        return {
            "operation": operation,
            "bounds": bounds,
            "ms": H.ms(median),
            "best_ms": H.ms(min(samples)),
            "cores": None,
            "system_share": None,
            "gflops": None if flop is None else flop / median / 1e9,
            "gb_per_s": None if nbytes is None else nbytes / median / 1e9,
            "ms_per_mib": None if nbytes is None else H.ms(median) / (nbytes / 2**20),
            "others_cpu": None,
            "attempts": None,
            "samples_s": samples,
        }

    qr_child = _qr_single_threaded(repeats, warmup)
    if qr_child is not None:
        rows.append(child_row(
            "LAPACK QR with Q, 31 calls on (256, 64) matrices, OPENBLAS_NUM_THREADS=1 (child process)",
            "(the same QRs, single-threaded OpenBLAS)", qr_child, flop=small_qr_flop))
    copy_child = _copy_without_mmap(repeats, warmup)
    if copy_child is not None:
        rows.append(child_row(
            "XLA float32 2.0 * x, x 32 MiB, glibc without mmap (child process)",
            "(the same copy without page faults)", copy_child, nbytes=2 * x32.nbytes))
    columns = [
        ("operation", "operation"),
        ("bounds", "where it matters"),
        ("ms", "median ms"),
        ("best_ms", "best ms"),
        ("cores", "cores busy", ".2f"),
        ("system_share", "kernel share of CPU time", ".2f"),
        ("gflops", "GFLOP/s"),
        ("gb_per_s", "GB/s (bytes moved)"),
        ("ms_per_mib", "ms per MiB moved"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    notes = [
        "`cores busy`: process CPU time (user + kernel) over wall time during the loop; 2 = both cores of this "
        "machine. `kernel share`: the part of that CPU time spent in the kernel (page faults, zeroing fresh pages).",
        "`tt.inner` GFLOP/s use the zipper's 4 x 64^3 multiply-adds per site, an upper bound on its work (its end "
        "blocks are cheaper), so the rate is an upper bound too.",
        "The child-process rows have no CPU counters (they are not taken across processes).",
        "`others' CPU share`: CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
        f"Loop of {repeats} calls per row after {warmup} warm-up calls, each function alone (not interleaved).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
