"""The tfno experiment: train a 1-D FNO with dense, Tucker and CP spectral weights on Burgers data we generate.

Data: ``n_train + n_test`` initial conditions from the FNO paper's Gaussian random field, solved to ``t_final`` with
:func:`experiments.tfno.burgers.solve` on ``n_solve`` points, then subsampled to ``n_grid`` points for learning.
Every variant trains on the same data, with the same seed, optimizer (adam, cosine-decayed learning rate, batch
``batch_size``), loss (mean relative L2 error) and number of epochs. One jitted function trains one epoch (a
``lax.scan`` over the minibatches) and returns the test error, so each variant compiles once.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments._core import Outcome, markdown_table, pyplot
from experiments.tfno import burgers
from experiments.tfno.fno import (
    FNO1d,
    WeightSpec,
    conjugate_complex,
    count_params,
    spectral_param_count,
)


def _rel_l2(pred, y):
    return jnp.linalg.norm(pred - y, axis=-1) / jnp.linalg.norm(y, axis=-1)


def make_data(config, ctx):
    """``(u0_train, u1_train, u0_test, u1_test, info)`` on the learning grid, float32, and the solver's facts."""
    rng = ctx.rng(1)
    count = config.n_train + config.n_test
    u0 = burgers.random_initial_conditions(rng, count, config.n_solve).astype(
        np.float32
    )
    t0 = time.perf_counter()
    u1, steps = burgers.solve(u0, config.nu, config.t_final)
    u1 = np.asarray(u1, np.float64)
    solve_s = time.perf_counter() - t0
    scale = float(np.max(np.abs(u0)))
    mean_drift = float(np.max(np.abs(u1.mean(-1) - u0.astype(np.float64).mean(-1))))
    heat = burgers.heat_solve(u0, config.nu, config.t_final)
    sub = config.n_solve // config.n_grid
    u0g, u1g, heatg = u0[:, ::sub], u1[:, ::sub].astype(np.float32), heat[:, ::sub]
    n = config.n_train
    info = {
        "solver_steps": steps,
        "solver_seconds": round(solve_s, 2),
        "max_abs_u0": scale,
        "max_abs_u1": float(np.max(np.abs(u1))),
        "mean_drift": mean_drift,
        "mean_drift_relative": mean_drift / scale,
        "finite": bool(np.all(np.isfinite(u1))),
    }
    test = slice(n, None)
    y = u1g[test].astype(np.float64)
    norms = np.linalg.norm(y, axis=-1)
    info["baselines"] = {
        "zero": 1.0,
        "identity": float(np.mean(np.linalg.norm(u0g[test] - y, axis=-1) / norms)),
        "heat": float(np.mean(np.linalg.norm(heatg[test] - y, axis=-1) / norms)),
    }
    return u0g[:n], u1g[:n], u0g[test], u1g[test], info


def train_variant(spec: WeightSpec, config, data, ctx, salt: int):
    """Train one FNO; returns a dict of its numbers (losses per epoch, test error, parameter counts, timings)."""
    x_tr, y_tr, x_te, y_te = data
    steps_per_epoch = config.n_train // config.batch_size
    total = steps_per_epoch * config.epochs
    schedule = optax.cosine_decay_schedule(config.learning_rate, total, alpha=0.01)
    opt = optax.adam(schedule)

    model = FNO1d(
        config.width,
        config.modes,
        config.layers,
        spec,
        hidden=config.hidden,
        rng=ctx.rng(3, salt),
    )
    graphdef, params = nnx.split(model, nnx.Param)
    opt_state = opt.init(params)

    def loss_fn(p, x, y):
        return jnp.mean(_rel_l2(nnx.merge(graphdef, p)(x), y))

    def epoch(p, s, xb, yb, xt, yt):
        def step(carry, batch):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, *batch)
            updates, s = opt.update(conjugate_complex(g), s, p)
            return (optax.apply_updates(p, updates), s), loss

        (p, s), losses = jax.lax.scan(step, (p, s), (xb, yb))
        pred = nnx.merge(graphdef, p)(xt)
        return p, s, jnp.mean(losses), jnp.mean(_rel_l2(pred, yt)), pred[0]

    rng = ctx.rng(2, salt)
    xt, yt = jnp.asarray(x_te), jnp.asarray(y_te)
    t0 = time.perf_counter()
    batches = jax.ShapeDtypeStruct(
        (steps_per_epoch, config.batch_size, x_tr.shape[-1]), jnp.float32
    )
    # The XLA CPU backend's optimisation level trades compile time for run time; the smoke size only compiles.
    options = {"xla_backend_optimization_level": 0} if config.fast_compile else {}
    epoch = (
        jax.jit(epoch)
        .lower(params, opt_state, batches, batches, xt, yt)
        .compile(options)
    )
    compile_s = time.perf_counter() - t0
    train_losses, test_errors = [], []
    t0 = time.perf_counter()
    for e in ctx.progress(range(config.epochs), desc=spec.label, total=config.epochs):
        perm = rng.permutation(config.n_train)[: steps_per_epoch * config.batch_size]
        xb = jnp.asarray(x_tr[perm].reshape(steps_per_epoch, config.batch_size, -1))
        yb = jnp.asarray(y_tr[perm].reshape(steps_per_epoch, config.batch_size, -1))
        params, opt_state, tr, te, example = epoch(params, opt_state, xb, yb, xt, yt)
        train_losses.append(float(tr))
        test_errors.append(float(te))
    wall = time.perf_counter() - t0
    spectral = (
        spectral_param_count(spec, config.width, config.width, config.modes)
        * config.layers
    )
    return {
        "label": spec.label,
        "kind": spec.kind,
        "rank": spec.rank,
        "params_total": count_params(params),
        "params_spectral": spectral,
        "train_loss": train_losses,
        "test_error_curve": test_errors,
        "test_error": test_errors[-1],
        "best_test_error": min(test_errors),
        "seconds": round(wall, 2),
        "compile_seconds": round(compile_s, 2),
        "prediction_example": np.asarray(example),
    }


def run(config, ctx) -> Outcome:
    ctx.log(
        f"generating {config.n_train + config.n_test} Burgers solutions on {config.n_solve} points ..."
    )
    x_tr, y_tr, x_te, y_te, info = make_data(config, ctx)
    ctx.log(
        f"  {info['solver_steps']} RK4 steps, {info['solver_seconds']} s; baselines on test: "
        + ", ".join(f"{k} {v:.3f}" for k, v in info["baselines"].items())
    )
    specs = [WeightSpec("dense")]
    specs += [WeightSpec("tucker", tuple(r)) for r in config.tucker_ranks]
    specs += [WeightSpec("cp", int(r)) for r in config.cp_ranks]
    variants = []
    for i, spec in enumerate(specs):
        res = train_variant(spec, config, (x_tr, y_tr, x_te, y_te), ctx, salt=100 + i)
        ctx.log(
            f"  {res['label']:>16}: {res['params_total']:>7} params, test rel L2 {res['test_error']:.4f} "
            f"(train {res['train_loss'][0]:.3f} -> {res['train_loss'][-1]:.4f}), {res['seconds']} s"
        )
        variants.append(res)
    dense = variants[0]
    for v in variants:
        v["compression_total"] = dense["params_total"] / v["params_total"]
        v["compression_spectral"] = dense["params_spectral"] / v["params_spectral"]
        v["error_ratio_to_dense"] = v["test_error"] / dense["test_error"]

    base = info["baselines"]
    checks = {"solver: every solution finite": info["finite"]}
    checks["solver: mean of u conserved to 1e-6 (relative to max|u0|)"] = (
        info["mean_drift_relative"] < 1e-6
    )
    for v in variants:
        checks[f"{v['label']}: training loss decreased (first epoch -> last)"] = (
            v["train_loss"][-1] < v["train_loss"][0]
        )
        checks[
            f"{v['label']}: test error below the zero predictor ({base['zero']:.2f})"
        ] = v["test_error"] < base["zero"]
        checks[
            f"{v['label']}: test error below the identity map ({base['identity']:.2f})"
        ] = v["test_error"] < base["identity"]

    factorised = [v for v in variants if v["kind"] != "dense"]
    tuckers = [v for v in variants if v["kind"] == "tucker"]
    best_tucker = min(tuckers, key=lambda v: v["test_error"]) if tuckers else None
    most_compressed_ok = max(
        (v for v in factorised if v["test_error"] <= 1.1 * dense["test_error"]),
        key=lambda v: v["compression_total"],
        default=None,
    )
    if most_compressed_ok is not None:
        headline = (
            f"{most_compressed_ok['label']} FNO: {most_compressed_ok['compression_total']:.1f}x fewer parameters "
            f"({most_compressed_ok['compression_spectral']:.0f}x in the spectral weights) at test rel. L2 "
            f"{most_compressed_ok['test_error']:.4f} vs dense {dense['test_error']:.4f}"
        )
    else:
        best = min(factorised, key=lambda v: v["test_error"]) if factorised else dense
        headline = (
            f"no factorised FNO within 10% of dense ({dense['test_error']:.4f}); best {best['label']} "
            f"{best['test_error']:.4f} at {best['compression_total']:.1f}x fewer parameters"
        )

    # Figures.
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for kind, marker, color in (
        ("dense", "s", "k"),
        ("tucker", "o", "tab:blue"),
        ("cp", "^", "tab:orange"),
    ):
        vs = sorted(
            (v for v in variants if v["kind"] == kind), key=lambda v: v["params_total"]
        )
        if vs:
            ax.plot(
                [v["params_total"] for v in vs],
                [v["test_error"] for v in vs],
                marker=marker,
                color=color,
                label=kind
                if kind == "dense"
                else f"{kind} (ranks {', '.join(str(v['rank']) for v in vs)})",
            )
    for name, style in (("zero", ":"), ("identity", "--"), ("heat", "-.")):
        ax.axhline(
            base[name],
            color="gray",
            ls=style,
            lw=1,
            label=f"{name} predictor ({base[name]:.2f})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (real numbers, whole model)")
    ax.set_ylabel("test relative L2 error")
    ax.set_title(
        f"1-D Burgers (nu={config.nu}), FNO width {config.width}, {config.modes} modes"
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "error_vs_params")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for v in variants:
        axes[0].plot(
            np.arange(1, len(v["train_loss"]) + 1),
            v["train_loss"],
            label=v["label"],
            lw=1,
        )
        axes[1].plot(
            np.arange(1, len(v["test_error_curve"]) + 1),
            v["test_error_curve"],
            label=v["label"],
            lw=1,
        )
    for a, t in zip(axes, ("training loss (mean rel. L2)", "test rel. L2 error")):
        a.set_yscale("log")
        a.set_xlabel("epoch")
        a.set_title(t)
        a.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7)
    ctx.savefig(fig, "training_curves")

    xg = np.arange(config.n_grid) / config.n_grid
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    ax.plot(xg, x_te[0], color="gray", lw=1, label="u(x, 0)")
    ax.plot(xg, y_te[0], color="k", lw=2, label="u(x, 1) (solver)")
    for v in (dense, best_tucker):
        if v is not None:
            ax.plot(
                xg, v["prediction_example"], lw=1, ls="--", label=f"{v['label']} FNO"
            )
    ax.set_xlabel("x")
    ax.legend(fontsize=7)
    ax.set_title("first test sample")
    ctx.savefig(fig, "example")

    rows = [
        (
            v["label"],
            v["params_total"],
            v["params_spectral"],
            f"{v['compression_total']:.1f}x",
            f"{v['compression_spectral']:.1f}x",
            v["test_error"],
            v["best_test_error"],
            v["train_loss"][-1],
            f"{v['seconds']:.0f}",
        )
        for v in variants
    ]
    table = markdown_table(
        [
            "spectral weight",
            "params",
            "spectral params",
            "compression",
            "spectral compression",
            "test rel. L2",
            "best epoch",
            "final train loss",
            "train s",
        ],
        rows,
    )
    base_table = markdown_table(
        ["baseline", "test rel. L2"], [(k, v) for k, v in base.items()]
    )
    report = (
        f"## Setting\n\n1-D viscous Burgers, nu = {config.nu}, u(x, 0) -> u(x, {config.t_final}); "
        f"{config.n_train} training / {config.n_test} test samples, solved on {config.n_solve} points "
        f"({info['solver_steps']} integrating-factor RK4 steps, {info['solver_seconds']} s), learned on "
        f"{config.n_grid} points. FNO: width {config.width}, {config.modes} modes, {config.layers} Fourier layers; "
        f"adam, lr {config.learning_rate} cosine-decayed, batch {config.batch_size}, {config.epochs} epochs. "
        f"Solver: max|mean drift| / max|u0| = {info['mean_drift_relative']:.1e}.\n\n"
        f"## Results\n\n{table}\n\n### Baselines\n\n{base_table}\n\n"
        "`heat` keeps only the viscous term (exact linear solution): it ignores advection and is worse than "
        "predicting zero here, because shocks dissipate most of the energy by t = 1.\n"
    )
    results = {"data": info, "variants": variants, "baselines": base}
    return Outcome(results=results, checks=checks, headline=headline, report=report)
