"""Steps to a target loss on least squares with Kronecker-correlated inputs: tnkit Shampoo vs optax Adam, full
batch and minibatch.

Workload (float32, although :func:`H.setup` turns float64 on for the process), seed ``s``:

* a weight matrix ``W`` of shape ``(M, N) = (16, 12)`` (the parameter, initialised to zeros), true weights
  ``W*`` standard normal;
* inputs ``X = Z C^{1/2}`` of shape ``(S, M N) = (2048, 192)``, ``Z`` standard normal, ``C = A ⊗ B`` with
  ``A = U_A diag(a) U_A^T`` (``16 x 16``) and ``B = U_B diag(b) U_B^T`` (``12 x 12``), ``U`` Haar-random
  orthogonal, ``a`` and ``b`` log-spaced from 1 down to ``1 / sqrt(COND)``, so ``cond(C) = COND = 1e3`` (the
  sample covariance ``X^T X / S`` has a somewhat larger one); targets ``y = X vec(W*)`` (no noise), ``vec``
  row-major;
* loss ``L(W) = ||X vec(W) - y||^2 / (2 S)`` on all ``S`` samples; ``L(W*) = 0``. Target: ``L(W) <= TARGET_REL *
  L(0)`` with ``TARGET_REL = 1e-4``; at most ``MAX_STEPS`` steps.
* the gradient of each step is that of the same loss on a batch: all ``S`` samples (``full``), or ``b`` rows drawn
  uniformly with replacement, the draws fixed by the seed (every optimizer sees the same batches). The target is
  always judged on the full loss. The targets are noise-free, so the minibatch gradient noise vanishes at ``W*``
  and constant-rate methods can still converge.
* Adam: ``optax.adam(lr, b1=beta1)``. Shampoo: ``tnkit.optim.shampoo(lr, beta1=beta1, **SHAMPOO_KW)`` with
  ``beta2=0.95``, Adam grafting, ``precondition_every=1``, ``start_preconditioning_step=1``, and
  ``ShampooLayout(merge_small_dims=False)`` (the default layout would merge ``16 x 12 = 192 <= 256`` into one
  mode, i.e. a vector with a diagonal factor); one factor per mode, ``16 x 16`` and ``12 x 12``. Two exponents:
  the default ``-1/4`` per factor (``(L ⊗ R)^{-1/4}``, the original Shampoo) and ``root_order=2``, ``-1/2`` per
  factor (``(L ⊗ R)^{-1/2}``, the power at which ``L ⊗ R`` best approximates full-matrix AdaGrad's statistics:
  Morwani et al., "A New Perspective on Shampoo's Preconditioner", 2024).
* each optimizer at every rate of the log grid ``LR_GRID`` and every momentum of ``MOMENTUM_GRID`` (the same
  grid for all optimizers: momentum is tuned as well as the rate, because the best momentum differs between the
  methods and batch sizes), Adam also at every ``b2`` of ``ADAM_B2_GRID`` (Shampoo's ``beta2`` is fixed), 5 seeds
  (data, ``W*``, ``Z`` from ``numpy.random.default_rng(seed)``; batches from ``jax.random.key(seed)``); one
  ``jax.jit`` per optimizer and batch size of a ``lax.scan`` over ``MAX_STEPS`` steps, vmapped over seeds and
  rates, the momentum (and Adam's ``b2``) a traced scalar.

Reported: per batch size and optimizer at its best setting (rate, momentum, Adam b2; least median steps), the
median over seeds of the steps to the target (``>cap``: not reached), and the ratio of Adam's to Shampoo's; then the
best rate (and Adam b2) at each momentum. Target: Shampoo needs at least 5x fewer steps than Adam.
"""

from __future__ import annotations

import math
import statistics
import time

if __package__ in (None, ""):
    import _harness as H
else:
    from benchmarks import _harness as H

NAME = "optim_lstsq"
M, N, SAMPLES = 16, 12, 2048
COND = 1e3
TARGET_REL = 1e-4
MAX_STEPS = 4000
TARGET_RATIO = 5.0
BATCHES = (None, 256, 64, 32, 16)  # None: full batch
QUICK_BATCHES = (None, 32)

SHAMPOO_KW = {
    "beta2": 0.95,
    "ridge_epsilon": 1e-6,
    "precondition_every": 1,
    "start_preconditioning_step": 1,
}
OPTIMIZERS = ("adam", "shampoo", "shampoo, root order 2")


def _grid(lo_exp: float, hi_exp: float, n: int) -> list[float]:
    return [float(10 ** (lo_exp + (hi_exp - lo_exp) * i / (n - 1))) for i in range(n)]


LR_GRID = (_grid(-3.0, 0.5, 15), _grid(-2.0, 0.0, 5))  # (full, quick): factors 1.78 and 3.16
MOMENTUM_GRID = ((0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), (0.5, 0.9))  # (full, quick)
# Adam's second-moment decay is tuned too (Shampoo's statistics decay is fixed at SHAMPOO_KW["beta2"], picked by
# hand in earlier runs, so Adam gets at least as much tuning as Shampoo).
ADAM_B2_GRID = ((0.95, 0.99, 0.999), (0.999,))  # (full, quick)


def make_problem(seed: int):
    """``(X, y)`` float32 of shapes ``(SAMPLES, M * N)`` and ``(SAMPLES,)``."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def spd(n):
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        d = np.logspace(0, -0.5 * math.log10(COND), n)
        return (q * np.sqrt(d)) @ q.T  # the square root U diag(sqrt(d)) U^T

    root = np.kron(spd(M), spd(N))  # (A ⊗ B)^{1/2} = A^{1/2} ⊗ B^{1/2}
    x = rng.standard_normal((SAMPLES, M * N)) @ root
    w_true = rng.standard_normal(M * N)
    return x.astype(np.float32), (x @ w_true).astype(np.float32)


def make_optimizer(name: str, lr, beta1, b2):
    """The optimizer ``name`` at rate ``lr`` and momentum ``beta1``, and Adam's second-moment decay ``b2`` (ignored
    by Shampoo); all may be traced scalars."""
    import optax

    from tnkit import optim

    if name == "adam":
        return optax.adam(lr, b1=beta1, b2=b2)
    if name.startswith("shampoo"):
        root_order = 2 if name.endswith("root order 2") else None
        layout = optim.ShampooLayout(merge_small_dims=False, root_order=root_order)
        return optim.shampoo(lr, beta1=beta1, layout=layout, **SHAMPOO_KW)
    raise ValueError(f"unknown optimizer {name!r}")


def make_run(name: str, batch: int | None, max_steps: int):
    """Jitted ``run(lrs, beta1, b2, xs, ys, keys) -> losses`` of shape ``(seeds, rates, max_steps + 1)``: the full
    loss after ``t`` updates, for every seed (leading axis of ``xs``, ``ys``, ``keys``) and every rate of ``lrs``."""
    import jax
    import jax.numpy as jnp
    import optax

    def loss_fn(w, x, y):
        r = x @ w.reshape(-1) - y
        return 0.5 * jnp.mean(r * r)

    def run(lr, beta1, b2, x, y, key):
        tx = make_optimizer(name, lr, beta1, b2)

        def body(carry, k):
            w, s = carry
            loss = loss_fn(w, x, y)
            if batch is None:
                g = jax.grad(loss_fn)(w, x, y)
            else:
                rows = jax.random.randint(k, (batch,), 0, x.shape[0])
                g = jax.grad(loss_fn)(w, x[rows], y[rows])
            u, s = tx.update(g, s, w)
            return (optax.apply_updates(w, u), s), loss

        w0 = jnp.zeros((M, N), jnp.float32)
        keys = jax.random.split(key, max_steps)
        (w, _), losses = jax.lax.scan(body, (w0, tx.init(w0)), keys)
        return jnp.append(losses, loss_fn(w, x, y))

    over_rates = jax.vmap(run, in_axes=(0, None, None, None, None, None))
    return jax.jit(jax.vmap(over_rates, in_axes=(None, None, None, 0, 0, 0)))


def first_reach(losses) -> float:
    import numpy as np

    hits = np.nonzero(losses <= TARGET_REL * losses[0])[0]
    return float(hits[0]) if hits.size else math.inf


def cell(v: float):
    return f">{MAX_STEPS}" if math.isinf(v) else v


def batch_label(batch: int | None) -> str:
    return "full" if batch is None else str(batch)


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax
    import jax.numpy as jnp
    import numpy as np

    seeds = list(range(2)) if args.quick else list(range(5))
    batches = QUICK_BATCHES if args.quick else BATCHES
    lrs = LR_GRID[1 if args.quick else 0]
    momenta = MOMENTUM_GRID[1 if args.quick else 0]
    adam_b2s = ADAM_B2_GRID[1 if args.quick else 0]
    meta = H.run_meta(
        NAME,
        args,
        m=M,
        n=N,
        samples=SAMPLES,
        cond=COND,
        target_rel=TARGET_REL,
        max_steps=MAX_STEPS,
        seeds=seeds,
        batches=[batch_label(b) for b in batches],
        lr_grid=lrs,
        momentum_grid=momenta,
        adam_b2_grid=adam_b2s,
        shampoo=SHAMPOO_KW,
        dtype="float32",
    )
    problems = [make_problem(s) for s in seeds]
    xs = jnp.asarray(np.stack([x for x, _ in problems]))
    ys = jnp.asarray(np.stack([y for _, y in problems]))
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    conds = [float(np.linalg.cond(np.asarray(x, np.float64).T @ np.asarray(x, np.float64))) for x, _ in problems]
    rates = jnp.asarray(lrs, jnp.float32)

    best_rows, momentum_rows, per_rate = [], [], []
    for batch in batches:
        best = {}
        for name in OPTIMIZERS:
            run = make_run(name, batch, MAX_STEPS)
            settings = []
            for beta1 in momenta:
                at_momentum = []
                for b2 in adam_b2s if name == "adam" else (None,):
                    t0 = time.perf_counter()
                    b2_arg = jnp.float32(0.0 if b2 is None else b2)
                    # (seeds, rates, steps + 1)
                    curves = np.asarray(run(rates, jnp.float32(beta1), b2_arg, xs, ys, keys))
                    wall = time.perf_counter() - t0
                    cells = []
                    for j, lr in enumerate(lrs):
                        steps = [first_reach(curves[i, j]) for i in range(len(seeds))]
                        cells.append(
                            {
                                "batch": batch_label(batch),
                                "optimizer": name,
                                "lr": lr,
                                "beta1": beta1,
                                "adam_b2": b2,
                                "median_steps": float(statistics.median(steps)),
                                "steps": ", ".join(str(cell(v)) for v in steps),
                                "final_rel_loss": float(np.median(curves[:, j, -1] / curves[:, j, 0])),
                                "nan": bool(not np.all(np.isfinite(curves[:, j]))),
                            }
                        )
                    top = min(cells, key=_rank)
                    print(
                        f"batch {top['batch']} {name} beta1={beta1:g}"
                        + ("" if b2 is None else f" b2={b2:g}")
                        + f": best lr {top['lr']:.3g}, {top['steps']} ({wall:.1f} s for {len(lrs)} rates x "
                        f"{len(seeds)} seeds)",
                        flush=True,
                    )
                    at_momentum += cells
                top = min(at_momentum, key=_rank)
                shown = {"median_steps": cell(top["median_steps"])}
                momentum_rows.append({"table": "best rate per momentum"} | top | shown)
                settings += at_momentum
            per_rate += settings
            best[name] = min(settings, key=_rank)
        for name, b in best.items():
            r = {"table": "best setting"} | b | {"median_steps": cell(b["median_steps"])}
            if name != "adam":
                a, s = best["adam"]["median_steps"], b["median_steps"]
                ratio = a / s if math.isfinite(s) else 0.0
                r |= {"adam_over_shampoo": ratio, "target_ok": ratio >= TARGET_RATIO}
            best_rows.append(r)
    meta["per_rate"] = per_rate  # every (batch, optimizer, momentum, rate) cell, in the JSON only

    rows = best_rows + momentum_rows
    columns = [
        ("table", "table"),
        ("batch", "batch"),
        ("optimizer", "optimizer"),
        ("lr", "learning rate", ".3g"),
        ("beta1", "momentum (beta1)", ".2g"),
        ("adam_b2", "Adam b2", ".3g"),
        ("median_steps", f"median steps to {TARGET_REL:g} x L(0)"),
        ("steps", "per seed"),
        ("final_rel_loss", f"L / L(0) at step {MAX_STEPS}", ".2e"),
        ("nan", "non-finite"),
        ("adam_over_shampoo", "Adam steps / Shampoo steps", ".2f"),
        ("target_ok", f"target (≥ {TARGET_RATIO:g}x) met"),
    ]
    notes = [
        (
            f"W of shape ({M}, {N}), {SAMPLES} samples, input covariance A ⊗ B with cond {COND:g} (sample X^T X cond "
            f"{', '.join(f'{c:.3g}' for c in conds)}), noise-free, float32, {len(seeds)} seeds, at most {MAX_STEPS} "
            "steps; `>cap`: not reached (counted as infinite in the median). `batch`: rows per gradient (`full`: all "
            f"{SAMPLES}, else drawn with replacement); the target is judged on the full loss."
        ),
        (
            f"Every optimizer is tuned over the same grid: {len(lrs)} rates from {lrs[0]:.3g} to {lrs[-1]:.3g} times "
            f"momentum beta1 in {list(momenta)} (Adam's `b1`, Shampoo's `beta1`); Adam's second-moment decay `b2` is "
            f"tuned as well, over {list(adam_b2s)} (Shampoo's statistics decay stays at {SHAMPOO_KW['beta2']}, "
            "picked by hand in earlier runs, so Adam gets the extra tuning). `best setting`: the setting with the "
            "least median steps (ties: lower final loss); `best rate per momentum`: the best rate (and Adam b2) at "
            f"each beta1. Shampoo: {SHAMPOO_KW}, Adam grafting (`graft_beta2` 0.999), "
            "`ShampooLayout(merge_small_dims=False)`; `root order 2`: exponent -1/2 per factor instead of -1/4. "
            "Adam: optax defaults otherwise (eps = 1e-8). "
            "Every cell of the grid is in the JSON (`meta.per_rate`)."
        ),
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


def _rank(row):
    return (row["median_steps"], row["final_rel_loss"])


if __name__ == "__main__":
    main()
