"""t3f's published benchmark workload, run with tnkit: TT-matrices of 10 cores of 10 x 10 at TT-rank 10, float64.

The workload follows t3f's own script (``docs/benchmark/benchmark.py`` in github.com/Bihaqo/t3f):

* matvec: one TT-matrix (``10**10 x 10**10``, cores ``(r, 10, 10, r)``, rank 10) times a rank-10 TT-vector (dims
  ``(10,)*10``): ``ttm.matvec``. Batch: the same matrix times 100 vectors.
* matmul: the TT-matrix times itself: ``ttm.matmul``. Batch: the matrix times 100 TT-matrices.
* norm: Frobenius norm of the TT-matrix: ``ttm.norm``. Batch: the norms of 100 TT-matrices. (t3f timed
  ``frobenius_norm(..., differentiable=True)``, i.e. ``sqrt(<A, A>)`` without orthogonalisation; tnkit's ``norm``
  orthogonalises first, which costs more. The row ``norm via inner`` times ``sqrt(ttm.inner(A, A))``, t3f's
  algorithm, for comparison.) ``tt.norm`` of one TT-vector is given as an extra row.
* round: a rank-100 TT-vector (``tt.random`` with rank 100, dims ``(10,)*10``) rounded to rank 10:
  ``tt.round(max_rank=10)``. Batch: 100 such vectors.

Batches are stacked objects (``jax.vmap`` of ``tt.random`` / ``ttm.random``) and the operation is ``jax.jit`` of
``jax.vmap`` over them, with ``in_axes=(None, 0)`` where one matrix is shared. Times are medians; "per object" is the
batch time divided by 100, which is how t3f reports its batch columns.

The t3f and ttpy columns are **published figures from another machine** (NVIDIA DGX-1, Intel Xeon E5-2698 v4 @
2.20GHz, 80 logical cores; TensorFlow 1.x, 2018-2019), copied from t3f's documentation page "Benchmark"
(``docs/benchmark.rst`` in github.com/Bihaqo/t3f, https://t3f.readthedocs.io/en/latest/benchmark.html), in ms per
object. They are context, not a like-for-like comparison: different hardware, core count and software. The table
of the JMLR paper itself (Novikov et al., "Tensor Train Decomposition on TensorFlow (T3F)", JMLR 21(30), 2020)
could not be retrieved here, so the figures are attributed to the documentation page, not to the paper.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import _harness as H  # noqa: N812
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "t3f_workload"
D, N, RANK, BIG_RANK, BATCH = 10, 10, 10, 100, 100

# t3f docs/benchmark.rst, ms per object: (ttpy one on CPU, t3f one on CPU, t3f batch on CPU per object).
T3F_PUBLISHED_MS = {
    "matvec": (11.142, 1.19, 1.885),
    "matmul": (86.191, 9.849, 17.483),
    "norm": (3.79, 2.136, 0.253),
    "round": (73.027, 86.04, 8.234),
}
T3F_SOURCE = "t3f docs/benchmark.rst (https://t3f.readthedocs.io/en/latest/benchmark.html)"


def _mem_available_gib() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax
    import jax.numpy as jnp

    from tnkit import tt, ttm

    repeats, warmup = (3, 1) if args.quick else (11, 2)
    attempts = 1 if args.quick else 3
    f64 = jnp.float64
    dims = (N,) * D
    keys = jax.random.split(jax.random.key(0), 6)

    def batch_of(fn, key, size=BATCH):
        return jax.jit(jax.vmap(fn))(jax.random.split(key, size))

    A = ttm.random(keys[0], dims, dims, RANK, f64)
    x = tt.random(keys[1], dims, RANK, f64)
    xs = batch_of(lambda k: tt.random(k, dims, RANK, f64), keys[2])
    As = batch_of(lambda k: ttm.random(k, dims, dims, RANK, f64), keys[3])
    y100 = tt.random(keys[4], dims, BIG_RANK, f64)
    ys100 = batch_of(lambda k: tt.random(k, dims, BIG_RANK, f64), keys[5])

    rnd = lambda t: tt.round(t, max_rank=RANK)  # noqa: E731
    norm_inner = lambda a: jnp.sqrt(ttm.inner(a, a))  # noqa: E731
    # (op, batch, jitted fn, args, published key)
    cases = [
        ("matvec", 1, jax.jit(ttm.matvec), (A, x), "matvec"),
        ("matvec", BATCH, jax.jit(jax.vmap(ttm.matvec, in_axes=(None, 0))), (A, xs), "matvec"),
        ("matmul", 1, jax.jit(ttm.matmul), (A, A), "matmul"),
        ("matmul", BATCH, jax.jit(jax.vmap(ttm.matmul, in_axes=(None, 0))), (A, As), "matmul"),
        ("norm (ttm.norm)", 1, jax.jit(ttm.norm), (A,), "norm"),
        ("norm (ttm.norm)", BATCH, jax.jit(jax.vmap(ttm.norm)), (As,), "norm"),
        ("norm via inner (t3f's algorithm)", 1, jax.jit(norm_inner), (A,), "norm"),
        ("norm via inner (t3f's algorithm)", BATCH, jax.jit(jax.vmap(norm_inner)), (As,), "norm"),
        ("tt.norm of the vector", 1, jax.jit(tt.norm), (x,), None),
        ("tt.norm of the vector", BATCH, jax.jit(jax.vmap(tt.norm)), (xs,), None),
        ("round (rank 100 -> 10)", 1, jax.jit(rnd), (y100,), "round"),
        ("round (rank 100 -> 10)", BATCH, jax.jit(jax.vmap(rnd)), (ys100,), "round"),
    ]
    # The batched matmul output is 100 TT-matrices of rank 100: 8 GB in float64. Skip it if memory is short.
    mem = _mem_available_gib()
    skip_big = mem is not None and mem < 20.0
    meta = H.run_meta(
        NAME, args, d=D, n=N, rank=RANK, big_rank=BIG_RANK, batch=BATCH, repeats=repeats, warmup=warmup,
        t3f_source=T3F_SOURCE, t3f_machine="NVIDIA DGX-1, Intel Xeon E5-2698 v4 @ 2.20GHz, 80 logical cores",
        mem_available_gib=mem,
    )
    rows = []
    for op, batch, fn, fargs, pub in cases:
        row = {"op": op, "batch": batch}
        if op == "matmul" and batch > 1 and skip_big:
            row["note"] = f"skipped: output is 8 GB, only {mem:.1f} GiB available"
            rows.append(row)
            continue
        comp, _ = H.quietly(lambda: H.compile_time(fn, *fargs), attempts=attempts)
        # Heavy cases (the batched products write up to 8 GB per call): fewer repeats.
        heavy = comp["first_call_s"] is not None and comp["first_call_s"] - comp["lower_compile_s"] > 2.0
        t, tries = H.quietly(
            lambda: H.time_fn(fn, *fargs, repeats=min(repeats, 5) if heavy else repeats, warmup=1 if heavy else warmup),
            attempts=attempts,
        )
        row |= {
            "tnkit_ms": H.ms(t["median"]),
            "tnkit_per_object_ms": H.ms(t["median"]) / batch,
            "tnkit_best_per_object_ms": H.ms(t["min"]) / batch,
            "compile_s": comp["lower_compile_s"],
            "others_cpu": t["others_cpu_share"],
            "attempts": tries,
            "samples_s": t["all"],
        }
        if pub is not None:
            ttpy, one, per_obj = T3F_PUBLISHED_MS[pub]
            row["t3f_cpu_per_object_ms"] = one if batch == 1 else per_obj
            row["ttpy_cpu_ms"] = ttpy if batch == 1 else None
        rows.append(row)
        del t
    columns = [
        ("op", "operation"),
        ("batch", "batch"),
        ("tnkit_ms", "tnkit ms (whole batch)"),
        ("tnkit_per_object_ms", "tnkit ms / object"),
        ("tnkit_best_per_object_ms", "tnkit best ms / object"),
        ("compile_s", "tnkit compile s"),
        ("t3f_cpu_per_object_ms", "t3f CPU ms / object (published, other machine)"),
        ("ttpy_cpu_ms", "ttpy CPU ms (published, other machine)"),
        ("others_cpu", "others' CPU share", ".2f"),
        ("note", "note"),
    ]
    notes = [
        f"t3f / ttpy figures: {T3F_SOURCE}; measured there on an NVIDIA DGX-1 host CPU (Intel Xeon E5-2698 v4, "
        "80 logical cores) with TensorFlow; this machine is different (see below). Not a like-for-like comparison.",
        "t3f's 'norm' is `frobenius_norm(differentiable=True)` = sqrt(<A, A>); compare it with the 'norm via inner' "
        "rows. tnkit's `ttm.norm` orthogonalises first (accurate for tiny norms) and costs more.",
        f"Median of {repeats} runs ({warmup} warm-up; 5 runs, 1 warm-up where one call takes over 2 s); compile time (lower+compile) measured separately. "
        "`others' CPU share`: CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
