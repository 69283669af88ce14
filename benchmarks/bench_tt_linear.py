"""TTLinear 4096 -> 4096, modes (8, 8, 8, 8), TT-rank 8, float32, forward + backward: tnkit vs nnx.Linear, and AUTO.

Headline workload: ``tnkit.nn.TTLinear(4096, 4096, ranks=8, in_modes=(8, 8, 8, 8), out_modes=(8, 8, 8, 8))`` and
``flax.nnx.Linear(4096, 4096)``, both float32 with a bias, default initialisation (``nnx.Rngs(0)``), input
``x ~ N(0, 1)`` of shape ``(256, 4096)`` (NumPy ``default_rng(0)``). Timed function, the same for both layers:
``jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)`` with ``loss(params, x) = 0.5 * sum(layer(x) ** 2)``
and ``params`` the layer's ``nnx.Param`` state (``nnx.split``), i.e. forward plus the gradients with respect to every
parameter and to the input. Target: TTLinear time / nnx.Linear time <= 0.5 (at least 2x faster), same run.

Sweep: the same TTLinear at TT-ranks {2, 4, 8, 16, 32} and batches {1, 16, 256, 4096}, same forward + backward, with
``implementation=`` ``FACTORIZED`` (sweep the cores), ``DENSE`` (rebuild the 4096 x 4096 kernel, one matmul) and
``AUTO`` (the default: the spec's cost model picks one of the two at trace time). Reported per cell: the three
times and ``AUTO / min(FACTORIZED, DENSE)``; target <= 1.25 in every cell (the automatic choice works).
``--quick`` runs the sweep at ranks {2, 8, 32} x batches {1, 16, 256} only (about 5 minutes on 2 shared cores); the
full run takes about 20 minutes on 2 idle cores, most of it in the batch-4096 cells (2 samples each there).
"""

from __future__ import annotations

import functools

if __package__ in (None, ""):
    import _harness as H  # noqa: N812  (run as a script)
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "tt_linear"
FEATURES = 4096
MODES = (8, 8, 8, 8)
RANK = 8
BATCH = 256
RANKS = (2, 4, 8, 16, 32)
BATCHES = (1, 16, 256, 4096)
QUICK_RANKS = (2, 8, 32)
QUICK_BATCHES = (1, 16, 256)
TARGET_SPEEDUP_RATIO = 0.5
TARGET_AUTO_RATIO = 1.25


def train_step(layer, implementation=None):
    """``jit(value_and_grad(0.5 * sum(layer(x)**2)))`` over the layer's parameters and the input."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params = nnx.split(layer)
    kwargs = {} if implementation is None else {"implementation": implementation}

    def loss(p, x):
        y = nnx.merge(graphdef, p)(x, **kwargs)
        return 0.5 * jnp.sum(y * y)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), params


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from tnkit import layers, nn

    repeats, warmup = (3, 1) if args.quick else (11, 2)
    attempts = 1 if args.quick else 3
    ranks, batches = (QUICK_RANKS, QUICK_BATCHES) if args.quick else (RANKS, BATCHES)
    meta = H.run_meta(
        NAME, args, features=FEATURES, modes=MODES, rank=RANK, batch=BATCH, sweep_ranks=ranks, sweep_batches=batches,
        dtype="float32", repeats=repeats, warmup=warmup,
    )
    rng = np.random.default_rng(0)
    xs = {b: jnp.asarray(rng.standard_normal((b, FEATURES)), jnp.float32) for b in sorted({BATCH, *batches})}

    def tt_layer(rank):
        return nn.TTLinear(FEATURES, FEATURES, ranks=rank, in_modes=MODES, out_modes=MODES, rngs=nnx.Rngs(0))

    # ---- headline: TTLinear (AUTO) vs nnx.Linear
    step_tt, p_tt = train_step(tt_layer(RANK))
    step_dense, p_dense = train_step(nnx.Linear(FEATURES, FEATURES, rngs=nnx.Rngs(0)))
    x = xs[BATCH]
    comp, _ = H.quietly(lambda: H.compile_time(step_tt, p_tt, x), attempts=attempts)
    fns = {"tnkit": functools.partial(step_tt, p_tt, x), "nnx": functools.partial(step_dense, p_dense, x)}
    times, tries = H.quietly(lambda: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts)
    spec = tt_layer(RANK).spec
    head = {
        "table": "headline",
        "rank": RANK,
        "batch": BATCH,
        "auto_choice": spec.choose((BATCH, FEATURES)).name,
        "tnkit_ms": H.ms(times["tnkit"]["median"]),
        "nnx_ms": H.ms(times["nnx"]["median"]),
        "ratio": times["tnkit"]["median"] / times["nnx"]["median"],
        "ratio_best": times["tnkit"]["min"] / times["nnx"]["min"],
        "params_tnkit": tt_layer(RANK).count_params(),
        "params_nnx": FEATURES * FEATURES + FEATURES,
        "compile_s": comp["lower_compile_s"],
        "others_cpu": times["tnkit"]["others_cpu_share"],
        "attempts": tries,
        "samples_tnkit_s": times["tnkit"]["all"],
        "samples_nnx_s": times["nnx"]["all"],
    }
    head["ok"] = head["ratio"] <= TARGET_SPEEDUP_RATIO
    rows = [head]

    # ---- sweep: AUTO vs the better of FACTORIZED and DENSE
    impls = {"FACTORIZED": layers.Implementation.FACTORIZED, "DENSE": layers.Implementation.DENSE,
             "AUTO": layers.Implementation.AUTO}
    for rank in ranks:
        layer = tt_layer(rank)
        steps = {name: train_step(layer, impl) for name, impl in impls.items()}
        for batch in batches:
            xb = xs[batch]
            fns = {name: functools.partial(f, p, xb) for name, (f, p) in steps.items()}
            jax.block_until_ready(fns["DENSE"]())  # compile; one call tells whether this cell is slow
            slow = H.time_fn(fns["DENSE"], repeats=1, warmup=0)["median"] > 1.0
            reps = 2 if slow else repeats  # 4096-row cells take seconds (FACTORIZED at rank 32: about a minute)
            t, tries = H.quietly(
                lambda fns=fns, reps=reps, slow=slow: H.time_interleaved(
                    fns, repeats=reps, warmup=1 if slow else warmup, rewarm=not slow
                ),
                attempts=attempts,
            )
            best = min(t["FACTORIZED"]["median"], t["DENSE"]["median"])
            costs = layer.spec.costs((batch, FEATURES))
            row = {
                "table": "sweep",
                "rank": rank,
                "batch": batch,
                "auto_choice": layer.spec.choose((batch, FEATURES)).name,
                "factorized_ms": H.ms(t["FACTORIZED"]["median"]),
                "dense_ms": H.ms(t["DENSE"]["median"]),
                "auto_ms": H.ms(t["AUTO"]["median"]),
                "auto_ratio": t["AUTO"]["median"] / best,
                "auto_ratio_best": t["AUTO"]["min"] / min(t["FACTORIZED"]["min"], t["DENSE"]["min"]),
                "cost_factorized": costs[layers.Implementation.FACTORIZED],
                "cost_dense": costs[layers.Implementation.DENSE],
                "others_cpu": t["AUTO"]["others_cpu_share"],
                "attempts": tries,
            }
            row["ok"] = row["auto_ratio"] <= TARGET_AUTO_RATIO
            rows.append(row)

    columns = [
        ("table", "table"),
        ("rank", "TT-rank"),
        ("batch", "batch"),
        ("auto_choice", "AUTO picks"),
        ("tnkit_ms", "TTLinear ms"),
        ("nnx_ms", "nnx.Linear ms"),
        ("ratio", "TTLinear / nnx.Linear (target ≤ 0.5)"),
        ("factorized_ms", "FACTORIZED ms"),
        ("dense_ms", "DENSE ms"),
        ("auto_ms", "AUTO ms"),
        ("auto_ratio", "AUTO / best (target ≤ 1.25)"),
        ("compile_s", "compile s"),
        ("ok", "target met"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    notes = [
        "Forward + backward: `jit(value_and_grad(0.5 * sum(layer(x)**2), argnums=(params, x)))`, float32.",
        f"Headline: median of {repeats} interleaved samples ({warmup} warm-up rounds). Sweep cells whose DENSE call "
        "takes over 1 s (batch 4096) use fewer samples and no re-warm call.",
        "`AUTO picks`: the implementation chosen by `TTLinearSpec.choose` (the calibrated time model "
        "`TTLinearSpec.estimated_costs`).",
        "`others' CPU share`: CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
