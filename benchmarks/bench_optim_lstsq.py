"""Steps to a target loss on least squares with Kronecker-correlated inputs: tnkit Shampoo vs optax Adam.

Workload (float32, although :func:`H.setup` turns float64 on for the process), seed ``s``:

* a weight matrix ``W`` of shape ``(M, N) = (16, 12)`` (the parameter, initialised to zeros), true weights
  ``W*`` standard normal;
* inputs ``X = Z C^{1/2}`` of shape ``(S, M N) = (2048, 192)``, ``Z`` standard normal, ``C = A ⊗ B`` with
  ``A = U_A diag(a) U_A^T`` (``16 x 16``) and ``B = U_B diag(b) U_B^T`` (``12 x 12``), ``U`` Haar-random
  orthogonal, ``a`` and ``b`` log-spaced from 1 down to ``1 / sqrt(COND)``, so ``cond(C) = COND = 1e3`` (the
  sample covariance ``X^T X / S`` has a somewhat larger one); targets ``y = X vec(W*)`` (no noise), ``vec``
  row-major;
* loss ``L(W) = ||X vec(W) - y||^2 / (2 S)``; ``L(W*) = 0``. Target: ``L(W) <= TARGET_REL * L(0)`` with
  ``TARGET_REL = 1e-4``; at most ``MAX_STEPS`` steps.
* Adam: ``optax.adam(lr)``. Shampoo: ``tnkit.optim.shampoo(lr, **SHAMPOO_KW)`` with ``beta1=0.9, beta2=0.95``,
  Adam grafting, ``precondition_every=1``, ``start_preconditioning_step=1``, and
  ``ShampooLayout(merge_small_dims=False)`` (the default layout would merge ``16 x 12 = 192 <= 256`` into one
  mode, i.e. a vector with a diagonal factor); one factor per mode, ``16 x 16`` and ``12 x 12``.
* each optimizer at each rate of its log grid (``LR_GRIDS``), ``SEEDS`` seeds (data, ``W*`` and ``Z`` from
  ``numpy.random.default_rng(seed)``); one ``jax.jit`` of a ``lax.scan`` over ``MAX_STEPS`` steps per optimizer,
  the rate a traced scalar.

Reported: per optimizer at its best rate (least median steps), the median over seeds of the steps to the target
(``>cap``: not reached), and the ratio Adam / Shampoo. Target: Shampoo needs at least 5x fewer steps than Adam.
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
MAX_STEPS = 1000
TARGET_RATIO = 5.0

SHAMPOO_KW = {
    "beta1": 0.9,
    "beta2": 0.95,
    "ridge_epsilon": 1e-6,
    "precondition_every": 1,
    "start_preconditioning_step": 1,
}


def _grid(lo_exp: float, hi_exp: float, n: int) -> list[float]:
    return [float(10 ** (lo_exp + (hi_exp - lo_exp) * i / (n - 1))) for i in range(n)]


LR_GRIDS = {  # (full, quick)
    "adam": (_grid(-3.0, 0.5, 8), _grid(-2.0, 0.0, 5)),
    "shampoo": (_grid(-3.0, 0.5, 8), _grid(-2.0, 0.0, 5)),
}


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


def make_optimizer(name: str, lr):
    import optax

    from tnkit import optim

    if name == "adam":
        return optax.adam(lr)
    if name == "shampoo":
        return optim.shampoo(
            lr, layout=optim.ShampooLayout(merge_small_dims=False), **SHAMPOO_KW
        )
    raise ValueError(f"unknown optimizer {name!r}")


def make_run(name: str):
    """Jitted ``run(lr, x, y) -> losses`` of shape ``(MAX_STEPS + 1,)`` (entry ``t``: after ``t`` updates)."""
    import jax
    import jax.numpy as jnp
    import optax

    def run(lr, x, y):
        tx = make_optimizer(name, lr)

        def loss_fn(w):
            r = x @ w.reshape(-1) - y
            return 0.5 * jnp.mean(r * r)

        def body(carry, _):
            w, s = carry
            loss, g = jax.value_and_grad(loss_fn)(w)
            u, s = tx.update(g, s, w)
            return (optax.apply_updates(w, u), s), loss

        w0 = jnp.zeros((M, N), jnp.float32)
        (w, _), losses = jax.lax.scan(body, (w0, tx.init(w0)), None, length=MAX_STEPS)
        return jnp.append(losses, loss_fn(w))

    return jax.jit(run)


def first_reach(losses) -> float:
    import numpy as np

    hits = np.nonzero(losses <= TARGET_REL * losses[0])[0]
    return float(hits[0]) if hits.size else math.inf


def cell(v: float):
    return f">{MAX_STEPS}" if math.isinf(v) else v


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax.numpy as jnp
    import numpy as np

    seeds = list(range(2)) if args.quick else list(range(5))
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
        lr_grids={k: v[1 if args.quick else 0] for k, v in LR_GRIDS.items()},
        shampoo=SHAMPOO_KW,
        dtype="float32",
    )
    problems = [tuple(map(jnp.asarray, make_problem(s))) for s in seeds]
    conds = [
        float(np.linalg.cond(np.asarray(x, np.float64).T @ np.asarray(x, np.float64)))
        for x, _ in problems
    ]

    rate_rows, best = [], {}
    for name, grids in LR_GRIDS.items():
        run = make_run(name)
        per_rate = []
        for lr in grids[1 if args.quick else 0]:
            t0 = time.perf_counter()
            curves = [np.asarray(run(jnp.float32(lr), x, y)) for x, y in problems]
            steps = [first_reach(c) for c in curves]
            row = {
                "optimizer": name,
                "lr": lr,
                "median_steps": float(statistics.median(steps)),
                "steps": ", ".join(str(cell(v)) for v in steps),
                "final_rel_loss": float(np.median([c[-1] / c[0] for c in curves])),
                "nan": bool(not all(np.all(np.isfinite(c)) for c in curves)),
                "wall_s": time.perf_counter() - t0,
            }
            print(
                f"{name} lr={lr:.3g}: {row['steps']} ({row['wall_s']:.1f} s)",
                flush=True,
            )
            per_rate.append(row)
        b = min(per_rate, key=lambda r: (r["median_steps"], r["final_rel_loss"]))
        best[name] = b
        rate_rows += per_rate

    ratio = best["adam"]["median_steps"] / best["shampoo"]["median_steps"]
    rows = []
    for name, b in best.items():
        r = {"table": "best rate"} | b | {"median_steps": cell(b["median_steps"])}
        if name == "shampoo":
            r |= {"adam_over_shampoo": ratio, "target_ok": ratio >= TARGET_RATIO}
        rows.append(r)
    rows += [
        {"table": "all rates"} | r | {"median_steps": cell(r["median_steps"])}
        for r in rate_rows
    ]
    columns = [
        ("table", "table"),
        ("optimizer", "optimizer"),
        ("lr", "learning rate", ".3g"),
        ("median_steps", f"median steps to {TARGET_REL:g} x L(0)"),
        ("steps", "per seed"),
        ("final_rel_loss", f"L / L(0) at step {MAX_STEPS}"),
        ("nan", "non-finite"),
        ("adam_over_shampoo", "Adam steps / Shampoo steps"),
        ("target_ok", f"target (≥ {TARGET_RATIO:g}x) met"),
    ]
    notes = [
        (
            f"W of shape ({M}, {N}), {SAMPLES} samples, input covariance A ⊗ B with cond {COND:g} (sample X^T X cond "
            f"{', '.join(f'{c:.3g}' for c in conds)}), noise-free, float32, {len(seeds)} seeds, at most {MAX_STEPS} "
            "steps; `>cap`: not reached (counted as infinite in the median)."
        ),
        f"Shampoo: {SHAMPOO_KW}, Adam grafting, `ShampooLayout(merge_small_dims=False)`; Adam: optax defaults.",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
