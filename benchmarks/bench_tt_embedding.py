"""TTEmbedding lookup of 4096 rows from a 10^6 x 256 table at TT-rank 16 vs a dense table lookup: time and memory.

Workload (float32, fixed seeds): ``tnkit.nn.TTEmbedding(10**6, 256, ranks=16, vocab_modes=(100, 100, 100),
feature_modes=(8, 8, 4))`` (224,000 parameters) against ``flax.nnx.Embed(10**6, 256)`` (256,000,000 parameters,
1.02 GB), both with their default initialisation (``nnx.Rngs(0)``). Ids: 4096 integers drawn uniformly from
``[0, 10^6)`` (NumPy ``default_rng(0)``), int32. An extra row uses TTEmbedding's automatic modes
(``default_num_modes``: ``(10,) * 6`` x ``(4, 4, 2, 2, 2, 2)``) at the same rank.

Timed functions (``nnx.split`` state as ``params``): forward, ``jax.jit(lambda params, ids: layer(ids))``; and
forward + backward, ``jax.jit(jax.value_and_grad(lambda params, ids: 0.5 * sum(layer(ids) ** 2)))`` (the gradient
with respect to every parameter: for the dense table, a dense (10^6, 256) array that is zero except in the looked-up
rows; for the TT table, the cores' gradients).

Memory: parameter bytes, and XLA's ``compiled.memory_analysis()`` of each jitted function (argument, output and
temporary bytes). No target is set by the issue ("report time and memory"); the expectation is that the TT lookup
is slower than a dense gather (it contracts a chain of ``3`` small matrices per id, ``lookup_cost`` multiply-adds)
but needs about 1/1000 of the parameter memory, and that its training step never allocates a table-sized gradient.
"""

from __future__ import annotations

import functools

if __package__ in (None, ""):
    import _harness as H  # noqa: N812  (run as a script)
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "tt_embedding"
NUM_EMBEDDINGS = 10**6
FEATURES = 256
RANK = 16
VOCAB_MODES = (100, 100, 100)
FEATURE_MODES = (8, 8, 4)
NUM_IDS = 4096


def functions(layer):
    """``(forward, forward + backward, params)`` of an nnx embedding layer, jitted."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params = nnx.split(layer)

    def forward(p, ids):
        return nnx.merge(graphdef, p)(ids)

    def loss(p, ids):
        rows = forward(p, ids)
        return 0.5 * jnp.sum(rows * rows)

    return jax.jit(forward), jax.jit(jax.value_and_grad(loss)), params


def memory(jitted, *args) -> dict:
    stats = jitted.lower(*args).compile().memory_analysis()
    if stats is None:  # a backend without memory analysis
        return {"argument_bytes": None, "output_bytes": None, "temp_bytes": None}
    return {
        "argument_bytes": stats.argument_size_in_bytes,
        "output_bytes": stats.output_size_in_bytes,
        "temp_bytes": stats.temp_size_in_bytes,
    }


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from tnkit import nn

    repeats, warmup = (5, 1) if args.quick else (21, 3)
    attempts = 1 if args.quick else 3
    meta = H.run_meta(
        NAME, args, num_embeddings=NUM_EMBEDDINGS, features=FEATURES, rank=RANK, vocab_modes=VOCAB_MODES,
        feature_modes=FEATURE_MODES, num_ids=NUM_IDS, dtype="float32", repeats=repeats, warmup=warmup,
    )
    ids = jnp.asarray(np.random.default_rng(0).integers(0, NUM_EMBEDDINGS, NUM_IDS), jnp.int32)
    variants = {
        "TTEmbedding (100,100,100)x(8,8,4)": nn.TTEmbedding(
            NUM_EMBEDDINGS, FEATURES, ranks=RANK, vocab_modes=VOCAB_MODES, feature_modes=FEATURE_MODES,
            rngs=nnx.Rngs(0),
        ),
        "TTEmbedding (automatic modes)": nn.TTEmbedding(NUM_EMBEDDINGS, FEATURES, ranks=RANK, rngs=nnx.Rngs(0)),
        "nnx.Embed (dense)": nnx.Embed(NUM_EMBEDDINGS, FEATURES, rngs=nnx.Rngs(0)),
    }
    fns, info = {}, {}
    for label, layer in variants.items():
        fwd, train, params = functions(layer)
        fns[f"{label} | forward"] = functools.partial(fwd, params, ids)
        fns[f"{label} | forward+backward"] = functools.partial(train, params, ids)
        param_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(params))
        modes = (layer.spec.vocab_modes, layer.spec.feature_modes) if hasattr(layer, "spec") else None
        flops = layer.flops((NUM_IDS,)) if hasattr(layer, "flops") else 0
        info[label] = {"param_bytes": param_bytes, "modes": str(modes), "lookup_flops": flops,
                       "forward": memory(fwd, params, ids), "forward+backward": memory(train, params, ids)}
    times, tries = H.quietly(lambda: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts)

    dense_label = "nnx.Embed (dense)"
    rows = []
    for label in variants:
        for mode in ("forward", "forward+backward"):
            t = times[f"{label} | {mode}"]
            t_dense = times[f"{dense_label} | {mode}"]
            mem = info[label][mode]
            rows.append({
                "layer": label,
                "pass": mode,
                "ms": H.ms(t["median"]),
                "time_vs_dense": t["median"] / t_dense["median"],
                "param_mb": info[label]["param_bytes"] / 1e6,
                "param_vs_dense": info[label]["param_bytes"] / info[dense_label]["param_bytes"],
                "argument_mb": None if mem["argument_bytes"] is None else mem["argument_bytes"] / 1e6,
                "output_mb": None if mem["output_bytes"] is None else mem["output_bytes"] / 1e6,
                "temp_mb": None if mem["temp_bytes"] is None else mem["temp_bytes"] / 1e6,
                "lookup_gflop": info[label]["lookup_flops"] / 1e9,
                "modes": info[label]["modes"],
                "others_cpu": t["others_cpu_share"],
                "attempts": tries,
                "samples_s": t["all"],
            })

    columns = [
        ("layer", "layer"),
        ("pass", "pass"),
        ("ms", "ms"),
        ("time_vs_dense", "time / dense"),
        ("param_mb", "params MB"),
        ("param_vs_dense", "params / dense", ".2e"),
        ("argument_mb", "XLA argument MB"),
        ("output_mb", "XLA output MB"),
        ("temp_mb", "XLA temp MB"),
        ("lookup_gflop", "lookup GFLOP"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    notes = [
        f"{NUM_IDS} ids uniform in [0, 10^6); float32; median of {repeats} interleaved samples ({warmup} warm-up "
        "rounds).",
        "XLA columns: `jit(f).lower(...).compile().memory_analysis()` (argument = parameters + ids, output = rows or "
        "loss + gradients, temp = intermediate buffers).",
        "`others' CPU share`: CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
