"""Compile time of tnkit's main jitted entry points at d = 64 cores, measured apart from running them.

For each function: ``jax.jit(f).lower(*args)`` (trace + lowering) and ``.compile()`` (XLA) are timed separately after
clearing JAX's caches, then a cold first call (trace + lower + compile + run, after another cache clear), then the
steady-state run time. The optimised HLO's instruction count shows how the program grows with ``d`` (tnkit unrolls
its Python loops over cores).

Inputs (float64):

* ``tt.from_dense(x, max_rank=16)``: a dense tensor with 64 modes must stay small, so ``x`` has shape
  ``(2,)*20 + (1,)*44`` (2**20 entries, 8 MiB; standard normal). All 63 TT-SVD steps are still traced and compiled
  (the size-1 modes give ``(r, 1)`` unfoldings, which take the tall-matrix branch of ``_linalg.left_svd``), so the
  program has the structure of a real 64-mode TT-SVD; only the arrays are small. (Lowering a ``(2,)*64``
  ``jax.ShapeDtypeStruct`` is not possible: 2**64 entries overflow XLA's shape arithmetic.)
* ``tt.round(t, max_rank=16)``: ``t = tt.add(a, b)`` of two random TTs with dims ``(2,)*64`` and rank 16 (rank 32).
* ``tt.inner(a, b)``: two random TTs with dims ``(2,)*64`` and rank 64 (the MPS-overlap benchmark's shapes).
* ``tt.norm(t)``: ``t`` a random TT with dims ``(2,)*64`` and rank 64 (extra row).

Target: lower + compile under 10 s each.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import _harness as H  # noqa: N812
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "compile"
D = 64
TARGET_S = 10.0


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import functools

    import jax
    import jax.numpy as jnp

    from tnkit import tt

    repeats = 3 if args.quick else 5
    attempts = 1 if args.quick else 3
    f64 = jnp.float64
    k = jax.random.split(jax.random.key(0), 6)
    dense_shape = (2,) * 20 + (1,) * (D - 20)
    x = jax.random.normal(k[0], dense_shape, f64)
    t_sum = tt.add(tt.random(k[1], (2,) * D, 16, f64), tt.random(k[2], (2,) * D, 16, f64))
    a = tt.random(k[3], (2,) * D, 64, f64)
    b = tt.random(k[4], (2,) * D, 64, f64)

    cases = [
        ("tt.from_dense(max_rank=16)", f"x: {dense_shape[:3]}...x20 then (1,)x44", jax.jit(functools.partial(tt.from_dense, max_rank=16)), (x,)),
        ("tt.round(max_rank=16)", "TT dims (2,)*64, rank 32", jax.jit(functools.partial(tt.round, max_rank=16)), (t_sum,)),
        ("tt.inner", "two TTs dims (2,)*64, rank 64", jax.jit(tt.inner), (a, b)),
        ("tt.norm", "TT dims (2,)*64, rank 64", jax.jit(tt.norm), (a,)),
    ]
    meta = H.run_meta(NAME, args, d=D, repeats=repeats, dense_shape=dense_shape)
    rows = []
    for name, inputs, fn, fargs in cases:
        comp, tries = H.quietly(lambda: H.compile_time(fn, *fargs), attempts=attempts)
        run = H.time_fn(fn, *fargs, repeats=repeats, warmup=1)
        total = comp["lower_compile_s"]
        rows.append(
            {
                "function": name,
                "inputs": inputs,
                "lower_s": comp["lower_s"],
                "compile_s": comp["compile_s"],
                "lower_compile_s": total,
                "first_call_s": comp["first_call_s"],
                "run_ms": H.ms(run["median"]),
                "hlo_instructions": comp["hlo_instructions"],
                "others_cpu": comp["others_cpu_share"],
                "attempts": tries,
                "ok": total < TARGET_S,
            }
        )
    columns = [
        ("function", "function (d = 64)"),
        ("inputs", "inputs"),
        ("lower_s", "lower s"),
        ("compile_s", "XLA compile s"),
        ("lower_compile_s", "lower + compile s (target < 10)"),
        ("first_call_s", "cold first call s"),
        ("run_ms", "run ms (median)"),
        ("hlo_instructions", "optimised HLO instructions"),
        ("ok", "target met"),
        ("others_cpu", "others' CPU share (compile)", ".2f"),
    ]
    notes = ["Each measurement starts from cleared in-memory caches (`jax.clear_caches()`); no persistent cache."]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
