"""XLA memory analysis of TTLinear vs nnx.Linear (4096 -> 4096), forward + backward at batch 4096, float32.

Workload: ``tnkit.nn.TTLinear(4096, 4096, ranks=8, in_modes=(8, 8, 8, 8), out_modes=(8, 8, 8, 8))`` (the layer of
``bench_tt_linear``) with ``implementation=`` ``AUTO`` (the default), ``FACTORIZED`` and ``DENSE``, and
``flax.nnx.Linear(4096, 4096)``; float32, with bias, input of shape ``(4096, 4096)``. Analysed function, the same for
all: ``jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))`` with ``loss(params, x) = 0.5 * sum(layer(x) ** 2)`` and
``params`` the layer's ``nnx.Param`` state (``nnx.split``). Nothing is run: the function is lowered and compiled for
``jax.ShapeDtypeStruct`` arguments and ``compiled.memory_analysis()`` gives the argument, output and temporary
(intermediate buffer) bytes.

Target: the factorised layer's activation memory (XLA temp bytes of the default ``AUTO`` layer) must not exceed the
dense layer's.

Also reported: the bytes the forward pass keeps for the backward pass, i.e. the leaves of the closure that
``jax.vjp(layer_fn, params, x)`` returns (shapes from ``jax.eval_shape``, nothing run). These include the saved input
and any saved weights, and none of the buffers that the loss and XLA's scheduling add. XLA's temp bytes also count
the layer's output and its cotangent: for this loss ``dy = y``, which the dense layer's program computes in place
of ``y``, whereas the chunked layer's backward loop reads ``dy`` from a buffer of its own (see the README notes). Rows at TT-ranks 2 and 16 show how the temp bytes scale with the rank (the factorised contraction's
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


def saved_for_backward_bytes(layer, implementation, x) -> int:
    """Bytes of the residuals ``jax.vjp`` keeps for the backward pass of ``layer`` (input and weights included)."""
    import jax
    from flax import nnx

    graphdef, params = nnx.split(layer)
    kwargs = {} if implementation is None else {"implementation": implementation}

    def apply(p, x):
        return nnx.merge(graphdef, p)(x, **kwargs)

    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    residuals = jax.eval_shape(lambda p, x: jax.vjp(apply, p, x)[1], abstract, x)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(residuals))


def chosen(layer, implementation):
    """The contraction a TTLinear call makes: ``implementation``, or the cost model's pick for ``AUTO``."""
    from tnkit import layers

    if implementation is layers.Implementation.AUTO:
        return layer.spec.choose((BATCH, FEATURES))
    return implementation


def map_reference_temp_mb() -> tuple[float, float]:
    """XLA temp MB of the same loss on ``tanh(x @ w)`` (``x`` 4096 x 1024, ``w`` 1024 x 1024, float32, no tnkit),
    computed in one pass and as ``lax.map`` over 8 row chunks under ``jax.checkpoint``, as TTLinear does."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((4096, 1024), jnp.float32)
    w = jax.ShapeDtypeStruct((1024, 1024), jnp.float32)

    def one_pass(w, x):
        return jnp.tanh(x @ w)

    def chunked(w, x):
        ys = jax.lax.map(jax.checkpoint(lambda xb: jnp.tanh(xb @ w)), x.reshape(8, -1, x.shape[1]))
        return ys.reshape(x.shape[0], -1)

    def temp(f):
        fn = jax.jit(jax.value_and_grad(lambda w, x: 0.5 * jnp.sum(f(w, x) ** 2), argnums=(0, 1)))
        return fn.lower(w, x).compile().memory_analysis().temp_size_in_bytes / 1e6

    return temp(one_pass), temp(chunked)


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
            "total_mb": (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes) / 1e6,
            "saved_mb": saved_for_backward_bytes(layer, impl, x) / 1e6,
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
        ("total_mb", "argument + output + temp MB"),
        ("saved_mb", "saved for backward MB (jax.vjp residuals)"),
        ("compile_s", "compile s"),
    ]
    ref = map_reference_temp_mb()
    notes = [
        f"Forward + backward at batch {BATCH}, float32: `jit(value_and_grad(0.5 * sum(layer(x)**2), argnums=(params, "
        "x)))`, compiled for abstract arguments; numbers from `compiled.memory_analysis()` (CPU backend).",
        "argument = parameters + input; output = loss + gradients (parameters and input); temp = every intermediate "
        "buffer XLA allocates (activations kept for the backward pass, transposes, the rebuilt kernel for DENSE).",
        "`saved for backward`: the leaves of the `jax.vjp` closure (input and weights included): what the forward "
        "pass keeps for the backward pass. The factorised layer keeps only its input (row chunks are recomputed "
        "under `jax.checkpoint`); `nnx.Linear` keeps its input and its kernel.",
        "Why the factorised temp is 2x the dense one (read from XLA's buffer assignment): `nnx.Linear`'s program "
        "keeps `x @ W` and `y` in the buffers of its two large outputs (the kernel and input gradients, written "
        "last), so its only temp is the cotangent `dy = y`. The factorised layer has one large output (the input "
        "gradient, the accumulator of its backward loop), so `y` and `dy` both land in temp: XLA schedules the "
        "fusion that makes `dy` before the reduction that reads `y` for the loss and does not write `dy` over `y`. "
        f"The same happens without tnkit: `tanh(x @ w)` (x 4096 x 1024, w 1024 x 1024) needs {ref[0]:.1f} MB of "
        f"temp in one pass and {ref[1]:.1f} MB as `lax.map` over 8 row chunks under `jax.checkpoint`. In total "
        "memory (argument + output + temp) the factorised layer needs less than the dense one.",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
