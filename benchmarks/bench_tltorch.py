"""TTLinear 4096 -> 4096 (modes (8, 8, 8, 8), TT-rank 8, float32) forward + backward: tnkit vs TensorLy-Torch (CPU).

tnkit: ``tnkit.nn.TTLinear(4096, 4096, ranks=8, in_modes=(8, 8, 8, 8), out_modes=(8, 8, 8, 8))`` (default
``implementation=AUTO``), timed as ``jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)`` with
``loss = 0.5 * sum(layer(x) ** 2)`` (gradients for every parameter and the input), as in ``bench_tt_linear``.

TensorLy-Torch: ``tltorch.FactorizedLinear((8, 8, 8, 8), (8, 8, 8, 8), factorization="blocktt", rank=[1, 8, 8, 8, 1])``
(the TT-matrix weight, same shape, modes and ranks as tnkit's; parameters of shapes ``(r, 8, 8, r')``) with
``implementation="factorized"`` (its default: one ``torch.einsum`` of the input with all cores) and
``"reconstructed"`` (rebuild the weight, then ``F.linear``), on the CPU build of PyTorch with its default thread
count. Timed step: ``zero_grad(set_to_none=True)``, ``y = layer(x)`` with ``x.requires_grad``,
``(0.5 * (y * y).sum()).backward()``. ``torch.nn.Linear(4096, 4096)`` is timed the same way for reference.

Inputs ``x ~ N(0, 1)`` of shape ``(batch, 4096)``, float32 (NumPy ``default_rng(0)``; the same values for both), at
batches 256 (the target) and 1. Target: tnkit time / the faster TensorLy-Torch implementation's time <= 0.5 at batch
256. PyTorch and TensorLy-Torch are a benchmark-only extra (``pip install torch --index-url
https://download.pytorch.org/whl/cpu tensorly-torch``); without them the script prints why and exits cleanly.
"""

from __future__ import annotations

import functools

if __package__ in (None, ""):
    import _harness as H  # noqa: N812  (run as a script)
    import bench_tt_linear
else:
    from benchmarks import _harness as H  # noqa: N812
    from benchmarks import bench_tt_linear

NAME = "tltorch"
FEATURES = 4096
MODES = (8, 8, 8, 8)
RANK = 8
BATCHES = (256, 1)
TARGET_BATCH = 256
TARGET_TIME_RATIO = 0.5


def torch_step(layer, x):
    """One forward + backward of ``0.5 * sum(layer(x)**2)`` with respect to the parameters and ``x``."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    y = layer(x)
    loss = 0.5 * (y * y).sum()
    loss.backward()
    return float(loss.detach())


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    try:
        import tltorch
        import torch
    except ImportError as e:
        print(
            f"bench_tltorch skipped: {e}. PyTorch and TensorLy-Torch are a benchmark-only extra; install them with "
            "`pip install torch --index-url https://download.pytorch.org/whl/cpu` and `pip install tensorly-torch`."
        )
        return []
    H.setup()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from tnkit import nn

    repeats, warmup = (3, 1) if args.quick else (15, 3)
    attempts = 1 if args.quick else 3
    meta = H.run_meta(
        NAME, args, features=FEATURES, modes=MODES, rank=RANK, batches=BATCHES, dtype="float32", repeats=repeats,
        warmup=warmup, torch=torch.__version__, tensorly_torch=getattr(tltorch, "__version__", None),
        torch_threads=torch.get_num_threads(),
    )
    torch.manual_seed(0)
    tl_layers = {
        impl: tltorch.FactorizedLinear(
            MODES, MODES, factorization="blocktt", rank=[1] + [RANK] * (len(MODES) - 1) + [1], implementation=impl
        )
        for impl in ("factorized", "reconstructed")
    }
    torch_dense = torch.nn.Linear(FEATURES, FEATURES)
    tt = nn.TTLinear(FEATURES, FEATURES, ranks=RANK, in_modes=MODES, out_modes=MODES, rngs=nnx.Rngs(0))
    step_tt, params = bench_tt_linear.train_step(tt)
    assert tuple(tt.spec.ranks) == tuple(tl_layers["factorized"].weight.rank)

    rows = []
    for batch in BATCHES:
        x_np = np.random.default_rng(0).standard_normal((batch, FEATURES)).astype(np.float32)
        xj = jnp.asarray(x_np)
        xt = torch.from_numpy(x_np).requires_grad_(True)
        fns = {"tnkit": functools.partial(step_tt, params, xj)}
        fns |= {f"tltorch {impl}": functools.partial(torch_step, layer, xt) for impl, layer in tl_layers.items()}
        fns["torch.nn.Linear"] = functools.partial(torch_step, torch_dense, xt)
        times, tries = H.quietly(
            lambda fns=fns: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts
        )
        t_tnkit = times["tnkit"]["median"]
        t_tl = {impl: times[f"tltorch {impl}"]["median"] for impl in tl_layers}
        best_impl = min(t_tl, key=t_tl.get)
        row = {
            "batch": batch,
            "tnkit_ms": H.ms(t_tnkit),
            "tltorch_factorized_ms": H.ms(t_tl["factorized"]),
            "tltorch_reconstructed_ms": H.ms(t_tl["reconstructed"]),
            "torch_linear_ms": H.ms(times["torch.nn.Linear"]["median"]),
            "ratio": t_tnkit / t_tl[best_impl],
            "ratio_vs_default": t_tnkit / t_tl["factorized"],
            "tltorch_best": best_impl,
            "auto_choice": tt.spec.choose((batch, FEATURES)).name,
            "others_cpu": times["tnkit"]["others_cpu_share"],
            "attempts": tries,
            "samples_tnkit_s": times["tnkit"]["all"],
        }
        if batch == TARGET_BATCH:
            row["ok"] = row["ratio"] <= TARGET_TIME_RATIO
        rows.append(row)
    jax.clear_caches()

    columns = [
        ("batch", "batch"),
        ("tnkit_ms", "tnkit ms"),
        ("auto_choice", "tnkit AUTO picks"),
        ("tltorch_factorized_ms", "tltorch factorized ms"),
        ("tltorch_reconstructed_ms", "tltorch reconstructed ms"),
        ("torch_linear_ms", "torch.nn.Linear ms"),
        ("ratio", "tnkit / best tltorch (target ≤ 0.5)"),
        ("ratio_vs_default", "tnkit / tltorch default"),
        ("ok", "target met"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    notes = [
        "Forward + backward, float32, gradients for the parameters and the input; the target applies at batch "
        f"{TARGET_BATCH} against the faster of TensorLy-Torch's two implementations.",
        f"Median of {repeats} interleaved samples ({warmup} warm-up rounds); PyTorch {torch.__version__} (CPU build, "
        f"{torch.get_num_threads()} threads), TensorLy-Torch {getattr(tltorch, '__version__', '?')}.",
        "`others' CPU share`: CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
