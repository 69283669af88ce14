"""Kronecker matvec ``X @ (A1 ⊗ A2)`` for X of shape (8192, 1024) and A1, A2 of shape (32, 32), float32.

Inputs (fixed seeds): ``X``, ``A1``, ``A2`` standard normal from ``jax.random.key(0..2)``, float32 (the JAX default
dtype of a layer; float64 is enabled in the process but not used here). Each row of ``X`` is multiplied by the
1024 x 1024 matrix ``A1 ⊗ A2`` (``np.kron`` convention), as in a Kronecker-factored linear layer ``y = x @ W``.

Timed, all ``jax.jit``-compiled, outputs waited for with ``block_until_ready``:

* ``tnkit``: ``kron.matmul(X, kron.Kron([A1, A2]))``: two mode products, 2 x 8192 x 1024 x 32 multiply-adds
  (1.07 GFLOP), no 1024 x 1024 matrix.
* ``dense, materialised``: ``X @ jnp.kron(A1, A2)``, building the 1024 x 1024 ``W`` inside the timed function,
  then a dense product of 2 x 8192 x 1024^2 = 17.2 GFLOP.
* ``dense, W given`` (context): ``X @ W`` with ``W = jnp.kron(A1, A2)`` computed beforehand.
* ``copy (reference)``: ``2.0 * X``. Reads the batch once and writes a new array of the same size: the batch's
  32 MiB moved twice. Any ``X @ W`` must at least read ``X`` and write an output of that size, so this is the
  memory-bound floor of the operation (on CPU it also pays the page faults of the fresh 32 MiB output buffer, as
  every implementation here does). "Read the batch twice" in the target is taken to mean this.
* ``sum (context)``: ``jnp.sum(X)``, a read without a write.
* ``tnkit, unblocked`` (context): the same tnkit code compiled with its CPU row blocking switched off (the whole
  batch in one pass, intermediates of 32 MiB), to show what the blocking buys.

Targets: tnkit at least 10x faster than ``dense, materialised``, and at most 2x the time of ``copy``.
Correctness: relative Frobenius error of each product against the float64 NumPy reference (must be float32-level).
"""

from __future__ import annotations

import functools

if __package__ in (None, ""):
    import _harness as H  # noqa: N812  (run as a script)
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "kron_matvec"
BATCH, M1, M2 = 8192, 32, 32
TARGET_SPEEDUP = 10.0
TARGET_COPY_RATIO = 2.0


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from tnkit import kron

    repeats, warmup = (5, 1) if args.quick else (21, 3)
    attempts = 1 if args.quick else 3
    meta = H.run_meta(
        NAME, args, batch=BATCH, factors=[(M1, M1), (M2, M2)], dtype="float32", repeats=repeats, warmup=warmup
    )

    x = jax.random.normal(jax.random.key(0), (BATCH, M1 * M2), jnp.float32)
    a1 = jax.random.normal(jax.random.key(1), (M1, M1), jnp.float32)
    a2 = jax.random.normal(jax.random.key(2), (M2, M2), jnp.float32)
    op = kron.Kron([a1, a2])
    w = jax.block_until_ready(jax.jit(jnp.kron)(a1, a2))

    tnkit_fn = jax.jit(lambda x, op: kron.matmul(x, op))
    dense_fn = jax.jit(lambda x, a1, a2: jnp.matmul(x, jnp.kron(a1, a2)))
    given_fn = jax.jit(lambda x, w: jnp.matmul(x, w))
    copy_fn = jax.jit(lambda x: 2.0 * x)
    sum_fn = jax.jit(jnp.sum)
    # Compiled ahead of time while the blocking is off: clear_caches() in compile_time cannot retrace it.
    saved = kron._BLOCK_THRESHOLD_BYTES
    kron._BLOCK_THRESHOLD_BYTES = 1 << 62
    try:
        unblocked_fn = jax.jit(lambda x, op: kron.matmul(x, op)).lower(x, op).compile()
    finally:
        kron._BLOCK_THRESHOLD_BYTES = saved

    comp, _ = H.quietly(lambda: H.compile_time(tnkit_fn, x, op), attempts=attempts)
    fns = {
        "tnkit": functools.partial(tnkit_fn, x, op),
        "dense, materialised": functools.partial(dense_fn, x, a1, a2),
        "dense, W given": functools.partial(given_fn, x, w),
        "copy (reference)": functools.partial(copy_fn, x),
        "sum (context)": functools.partial(sum_fn, x),
        "tnkit, unblocked": functools.partial(unblocked_fn, x, op),
    }
    times, tries = H.quietly(lambda: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts)

    ref = np.asarray(x, np.float64) @ np.kron(np.asarray(a1, np.float64), np.asarray(a2, np.float64))

    def error(out):
        return float(np.linalg.norm(np.asarray(out, np.float64) - ref) / np.linalg.norm(ref))

    flops = {
        "tnkit": 2 * 2 * BATCH * M1 * M2 * M1,
        "tnkit, unblocked": 2 * 2 * BATCH * M1 * M2 * M1,
        "dense, materialised": 2 * BATCH * (M1 * M2) ** 2,
        "dense, W given": 2 * BATCH * (M1 * M2) ** 2,
    }
    t_tnkit = times["tnkit"]["median"]
    t_dense = times["dense, materialised"]["median"]
    t_copy = times["copy (reference)"]["median"]
    nbytes = x.size * x.dtype.itemsize
    bytes_moved = {"copy (reference)": 2 * nbytes, "sum (context)": nbytes}  # copy: read X + write the result
    rows = []
    for label, fn in fns.items():
        t = times[label]["median"]
        out = fn()
        row = {
            "implementation": label,
            "ms": H.ms(t),
            "best_ms": H.ms(times[label]["min"]),
            "vs_tnkit": t / t_tnkit,
            "vs_copy": t / t_copy,
            "gflops": flops[label] / t / 1e9 if label in flops else None,
            "gbytes_per_s": bytes_moved[label] / t / 1e9 if label in bytes_moved else None,
            "rel_error": error(out) if label in flops else None,
            "others_cpu": times[label]["others_cpu_share"],
            "attempts": tries,
            "samples_s": times[label]["all"],
        }
        if label == "tnkit":
            row |= {
                "speedup_vs_dense": t_dense / t,
                "speedup_ok": t_dense / t >= TARGET_SPEEDUP,
                "copy_ratio_ok": t / t_copy <= TARGET_COPY_RATIO,
                "compile_s": comp["lower_compile_s"],
                "first_call_s": comp["first_call_s"],
            }
        rows.append(row)

    columns = [
        ("implementation", "implementation"),
        ("ms", "median ms"),
        ("best_ms", "best ms"),
        ("vs_tnkit", "time / tnkit"),
        ("vs_copy", "time / copy (target for tnkit ≤ 2)"),
        ("speedup_vs_dense", "dense materialised / tnkit (target ≥ 10)"),
        ("gflops", "GFLOP/s"),
        ("gbytes_per_s", "GB/s"),
        ("rel_error", "rel. error vs float64"),
        ("speedup_ok", "speed-up target met"),
        ("copy_ratio_ok", "copy target met"),
        ("compile_s", "compile s"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    notes = [
        "`copy (reference)` is `2.0 * X`: one read and one write of the 32 MiB batch, the least any `X @ W` can do; "
        "the target asks tnkit to stay within 2x of it. `GB/s`: bytes moved per second (copy: read + write of X; "
        "sum: read of X).",
        "`tnkit, unblocked` is the same code with the CPU row blocking off; see the `tnkit.kron` module docstring.",
        f"Median of {repeats} interleaved samples per implementation ({warmup} warm-up rounds), one process. "
        "`others' CPU share`: CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
