"""XLA memory analysis of TTLinear vs nnx.Linear (4096 -> 4096), forward + backward at batch 4096, float32.

Workload: ``tnkit.nn.TTLinear(4096, 4096, ranks=8, in_modes=(8, 8, 8, 8), out_modes=(8, 8, 8, 8))`` (the layer of
``bench_tt_linear``) with ``implementation=`` ``AUTO`` (the default), ``FACTORIZED`` and ``DENSE``, and
``flax.nnx.Linear(4096, 4096)``; float32, with bias, input of shape ``(4096, 4096)``. Analysed function, the same for
all: ``jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))`` with ``loss(params, x) = 0.5 * sum(layer(x) ** 2)`` and
``params`` the layer's ``nnx.Param`` state (``nnx.split``). Nothing is run: the function is lowered and compiled for
``jax.ShapeDtypeStruct`` arguments and ``compiled.memory_analysis()`` gives the argument, output and temporary
(intermediate buffer) bytes.

Target: the factorised layer's activation memory (XLA temp bytes of the default ``AUTO`` layer) must not exceed the
dense layer's. Rows at TT-ranks 2 and 16 show how the temp bytes scale with the rank (the factorised contraction's
intermediates hold ``batch * 4096 * r`` numbers; above ``batch * 4096 / 16`` numbers, at least 2**20, the rows are
processed in chunks under ``jax.checkpoint``, so they stay small).
"""

from __future__ import annotations

if __package__ in (None, ""):
    import _harness as H  # noqa: N812  (run as a script)
else:
    from benchmarks import _harness as H  # noqa: N812

NAME = "tt_linear_memory"
FEATURES = 4096
MODES = (8, 8, 8, 8)
RANK = 8
EXTRA_RANKS = (2, 16)
BATCH = 4096


def analysed(layer, implementation=None):
    """``(jitted value_and_grad, abstract params)`` of ``0.5 * sum(layer(x)**2)`` over the params and the input."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params = nnx.split(layer)
    kwargs = {} if implementation is None else {"implementation": implementation}

    def loss(p, x):
        y = nnx.merge(graphdef, p)(x, **kwargs)
        return 0.5 * jnp.sum(y * y)

    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), abstract


def chosen(layer, implementation):
    """The contraction a TTLinear call makes: ``implementation``, or the cost model's pick for ``AUTO``."""
    from tnkit import layers

    if implementation is layers.Implementation.AUTO:
        return layer.spec.choose((BATCH, FEATURES))
    return implementation


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from tnkit import layers, nn

    ranks = (RANK,) if args.quick else (RANK, *EXTRA_RANKS)
    meta = H.run_meta(NAME, args, features=FEATURES, modes=MODES, rank=RANK, ranks=ranks, batch=BATCH, dtype="float32")
    x = jax.ShapeDtypeStruct((BATCH, FEATURES), jnp.float32)

    cases = {"nnx.Linear": (nnx.Linear(FEATURES, FEATURES, rngs=nnx.Rngs(0)), None, None)}
    for rank in ranks:
        layer = nn.TTLinear(FEATURES, FEATURES, ranks=rank, in_modes=MODES, out_modes=MODES, rngs=nnx.Rngs(0))
        impls = {"AUTO": layers.Implementation.AUTO}
        if rank == RANK:
            impls |= {"FACTORIZED": layers.Implementation.FACTORIZED, "DENSE": layers.Implementation.DENSE}
        for name, impl in impls.items():
            cases[f"TTLinear r={rank} {name}"] = (layer, impl, rank)

    rows, dense_temp = [], None
    for label, (layer, impl, rank) in cases.items():
        fn, params = analysed(layer, impl)
        comp = H.compile_time(fn, params, x, first_call=False, return_compiled=True)
        stats = comp["compiled"].memory_analysis()
        row = {
            "layer": label,
            "rank": rank,
            "picks": None if impl is None else chosen(layer, impl).name,
            "argument_mb": stats.argument_size_in_bytes / 1e6,
            "output_mb": stats.output_size_in_bytes / 1e6,
            "temp_mb": stats.temp_size_in_bytes / 1e6,
            "param_mb": sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(params)) / 1e6,
            "compile_s": comp["lower_compile_s"],
        }
        if impl is None:
            dense_temp = stats.temp_size_in_bytes
        row["temp_vs_dense"] = stats.temp_size_in_bytes / dense_temp
        if label == f"TTLinear r={RANK} AUTO":
            row["ok"] = stats.temp_size_in_bytes <= dense_temp
        rows.append(row)

    columns = [
        ("layer", "layer"),
        ("picks", "contraction"),
        ("param_mb", "params MB"),
        ("argument_mb", "XLA argument MB"),
        ("output_mb", "XLA output MB"),
        ("temp_mb", "XLA temp MB (activations)"),
        ("temp_vs_dense", "temp / nnx.Linear temp"),
        ("ok", "target met (temp ≤ dense)"),
        ("compile_s", "compile s"),
    ]
    notes = [
        f"Forward + backward at batch {BATCH}, float32: `jit(value_and_grad(0.5 * sum(layer(x)**2), argnums=(params, "
        "x)))`, compiled for abstract arguments; numbers from `compiled.memory_analysis()` (CPU backend).",
        "argument = parameters + input; output = loss + gradients (parameters and input); temp = every intermediate "
        "buffer XLA allocates (activations kept for the backward pass, transposes, the rebuilt kernel for DENSE).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
