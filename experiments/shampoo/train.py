"""Shampoo, 4-bit Shampoo and SOAP against Adam on a small CNN (the ``shampoo`` experiment).

The model
---------
A flax ``nnx`` CNN: ``Conv(1 -> c1, 3x3, SAME)``, ReLU, ``Conv(c1 -> c2, 3x3, SAME)``, ReLU, 2x2 average pooling,
flatten, ``Linear(-> 10)``. On 28x28 images (MNIST, Fashion-MNIST) a 2x2 average pooling also follows the first
convolution. Mean softmax cross-entropy, float32.

Training
--------
Mini-batches of ``batch_size`` images drawn without replacement from a fresh permutation of the training set each
epoch (the permutation depends on the seed only, so every optimizer sees the same batches in the same order).
Each optimizer's update is one ``jax.jit`` called from a Python loop, with the learning rate a traced scalar: one
compilation per optimizer for every rate and seed. Every ``eval_every`` steps the full training loss and the test accuracy are evaluated (one more jitted function, shared by all optimizers).

Optimizers (``make_optimizer``): ``optax.adam(lr)``; ``tnkit.optim.shampoo`` and ``tnkit.optim.shampoo_4bit``
with the same settings (EMA statistics ``beta2``, Adam grafting, momentum ``beta1``, and the factors updated every
``precondition_every`` steps: statistics *and* roots for 32-bit Shampoo, statistics and eigendecomposition for
4-bit Shampoo, so the two differ only by the 4-bit storage); ``tnkit.optim.soap`` with its basis refreshed every
``precondition_every`` steps.

Memory: the optimizer state is measured as the sum of ``nbytes`` over its arrays after ``init``; the
preconditioner part is ``statistics + roots`` for 32-bit Shampoo and ``eigenvectors (4-bit codes + scales) +
eigenvalues`` for 4-bit Shampoo; its "full factors" part leaves out the diagonal factors (biases), which both keep
in float32.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments._core import Outcome, markdown_table, pyplot
from experiments.data import load_digits, load_mnist
from tnkit import optim

OPTIMIZERS = ("adam", "shampoo", "shampoo_4bit", "soap")
LABELS = {
    "adam": "Adam",
    "shampoo": "Shampoo (32-bit)",
    "shampoo_4bit": "Shampoo (4-bit)",
    "soap": "SOAP",
}
COLORS = {
    "adam": "tab:gray",
    "shampoo": "tab:blue",
    "shampoo_4bit": "tab:orange",
    "soap": "tab:green",
}


# --------------------------------------------------------------------------------------------------- model, data


class CNN(nnx.Module):
    """Two 3x3 convolutions with ReLU, 2x2 average pooling, a dense head; input ``(batch, h, w, 1)``."""

    def __init__(
        self,
        channels: tuple[int, int],
        num_classes: int,
        image_size: int,
        *,
        rngs: nnx.Rngs,
    ):
        c1, c2 = channels
        self.pool_first = image_size >= 16
        self.conv1 = nnx.Conv(1, c1, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(c1, c2, (3, 3), padding="SAME", rngs=rngs)
        side = image_size // 2 // (2 if self.pool_first else 1)
        self.head = nnx.Linear(side * side * c2, num_classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.conv1(x))
        if self.pool_first:
            x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        x = jax.nn.relu(self.conv2(x))
        x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


def load_data(config, ctx):
    """``(x_train, y_train, x_test, y_test)`` as NumPy arrays, images ``(n, h, w, 1)`` float32."""
    if config.dataset == "digits":
        train, test = load_digits(seed=0)
    else:
        train = load_mnist(ctx.data_dir, dataset=config.dataset, split="train")
        test = load_mnist(ctx.data_dir, dataset=config.dataset, split="test")
    if config.train_size is not None:
        train = type(train)(
            train.images[: config.train_size], train.labels[: config.train_size]
        )
    return train.images[..., None], train.labels, test.images[..., None], test.labels


# ------------------------------------------------------------------------------------------------------ optimizers


def make_optimizer(name: str, lr, config) -> optax.GradientTransformation:
    """The optax transformation ``name`` at rate ``lr`` with the experiment's fixed settings."""
    t = config.precondition_every
    if name == "adam":
        return optax.adam(lr)
    if name == "shampoo":
        return optim.shampoo(
            lr,
            beta1=0.9,
            beta2=config.beta2,
            statistics_every=t,
            precondition_every=t,
            start_preconditioning_step=t,
        )
    if name == "shampoo_4bit":
        return optim.shampoo_4bit(
            lr,
            beta1=0.9,
            beta2=config.beta2,
            statistics_every=t,
            start_preconditioning_step=t,
        )
    if name == "soap":
        return optim.soap(
            lr, b1=0.9, b2=0.999, shampoo_beta2=config.beta2, precondition_frequency=t
        )
    raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")


def _nbytes(tree) -> int:
    return int(
        sum(
            np.dtype(x.dtype).itemsize * math.prod(x.shape)
            for x in jax.tree.leaves(tree)
        )
    )


def state_bytes(name: str, state) -> dict:
    """Bytes of the optimizer state: ``total``, and for Shampoo ``preconditioner`` and ``full_factors``."""
    out = {"total": _nbytes(state)}
    first = state[0]
    if name == "shampoo":
        out["preconditioner"] = _nbytes((first.statistics, first.roots))
        out["full_factors"] = _nbytes(
            [a for a in jax.tree.leaves((first.statistics, first.roots)) if a.ndim == 3]
        )
    elif name == "shampoo_4bit":
        out["preconditioner"] = _nbytes((first.eigenvectors, first.eigenvalues))
    return out


def _full_factor_bytes_4bit(state_4bit, state_32bit) -> int:
    """4-bit bytes of the full factors: all eigenvector codes and scales, and the eigenvalues of full modes only
    (a mode is full where 32-bit Shampoo keeps a ``(num_blocks, b, b)`` statistic)."""
    full_eigenvalues = [
        lam
        for lams, stats in zip(state_4bit[0].eigenvalues, state_32bit[0].statistics)
        for lam, s in zip(lams, stats)
        if s.ndim == 3
    ]
    return _nbytes(state_4bit[0].eigenvectors) + _nbytes(full_eigenvalues)


# -------------------------------------------------------------------------------------------------------- training


def _loss(graphdef, params, x, y):
    logits = nnx.merge(graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


def make_step(name: str, graphdef, config):
    """Jitted ``step(lr, params, state, x, y) -> (params, state, loss)`` (``loss``: the mini-batch loss before the
    update). One Python-loop call per step: on XLA:CPU the convolutions ran about 15x slower inside a ``lax.scan``
    (115 ms against 7 ms a step for this model)."""

    def step(lr, params, state, x, y):
        tx = make_optimizer(name, lr, config)
        (loss, _), g = jax.value_and_grad(
            functools.partial(_loss, graphdef), has_aux=True
        )(params, x, y)
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    return jax.jit(step)


def make_evaluate(graphdef):
    @jax.jit
    def evaluate(params, x_train, y_train, x_test, y_test):
        train_loss, _ = _loss(graphdef, params, x_train, y_train)
        _, logits = _loss(graphdef, params, x_test, y_test)
        return train_loss, jnp.mean(jnp.argmax(logits, -1) == y_test)

    return evaluate


def batch_indices(
    n: int, batch_size: int, steps: int, rng: np.random.Generator
) -> np.ndarray:
    """``(steps, batch_size)`` indices: consecutive slices of fresh permutations of ``range(n)`` (the tail of each
    permutation that does not fill a batch is dropped)."""
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    idx = np.concatenate(
        [rng.permutation(n)[: per_epoch * batch_size] for _ in range(epochs)]
    )
    return idx[: steps * batch_size].reshape(steps, batch_size)


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def first_reach(steps, values, target) -> float:
    """The first step where ``values <= target``; ``inf`` if never."""
    hits = np.nonzero(np.asarray(values) <= target)[0]
    return float(steps[hits[0]]) if hits.size else math.inf


# ------------------------------------------------------------------------------------------------------------- run


def run(config, ctx) -> Outcome:
    """Train every optimizer at every rate and seed; see the module docstring."""
    # The eigendecompositions run in LAPACK (OpenBLAS) on CPU. Its threads oversubscribe a small, shared machine:
    # a 256 x 256 ``eigh`` took 0.9 s with the default 2 threads under load and 0.02 s with one. Limit it to one
    # thread (threadpoolctl acts on the libraries already loaded, so load SciPy's OpenBLAS first).
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run(config, ctx)


def _run(config, ctx) -> Outcome:
    x_train, y_train, x_test, y_test = load_data(config, ctx)
    image_size = x_train.shape[1]
    ctx.log(
        f"{config.dataset}: {len(x_train)} train, {len(x_test)} test images of {image_size}x{image_size}"
    )
    data = tuple(jnp.asarray(a) for a in (x_train, y_train, x_test, y_test))

    def init_model(seed: int):
        return CNN(config.channels, 10, image_size, rngs=nnx.Rngs(ctx.key(1, seed)))

    graphdef, params0 = nnx.split(init_model(0), nnx.Param)
    num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params0))
    evaluate = make_evaluate(graphdef)
    n_chunks = config.steps // config.eval_every
    eval_steps = np.arange(n_chunks + 1) * config.eval_every

    # optimizer-state bytes, from the state of the first seed's parameters
    memory = {}
    states0 = {}
    for name in config.optimizers:
        states0[name] = make_optimizer(name, 1e-3, config).init(params0)
        memory[name] = state_bytes(name, states0[name])
    if "shampoo" in memory and "shampoo_4bit" in memory:
        memory["shampoo_4bit"]["full_factors"] = _full_factor_bytes_4bit(
            states0["shampoo_4bit"], states0["shampoo"]
        )

    runs = {}  # name -> lr -> list over seeds of dicts
    walls = {}
    for name in config.optimizers:
        step = make_step(name, graphdef, config)
        runs[name] = {}
        t0 = time.perf_counter()
        for lr in config.lr_grid:
            per_seed = []
            for seed in config.seeds:
                _, params = nnx.split(init_model(seed), nnx.Param)
                lr_arr = jnp.asarray(lr, jnp.float32)
                state = make_optimizer(name, lr_arr, config).init(params)
                idx = batch_indices(
                    len(x_train), config.batch_size, config.steps, ctx.rng(2, seed)
                )
                train_loss, test_acc = evaluate(params, *data)
                losses, full_losses, accs = [], [float(train_loss)], [float(test_acc)]
                for c in ctx.progress(
                    range(n_chunks), desc=f"{name} lr={lr:g} seed={seed}"
                ):
                    batch_losses = []
                    for b in idx[c * config.eval_every : (c + 1) * config.eval_every]:
                        params, state, loss = step(
                            lr_arr, params, state, data[0][b], data[1][b]
                        )
                        batch_losses.append(loss)
                    train_loss, test_acc = evaluate(params, *data)
                    losses += [float(v) for v in batch_losses]
                    full_losses.append(float(train_loss))
                    accs.append(float(test_acc))
                per_seed.append(
                    {"batch_loss": losses, "train_loss": full_losses, "test_acc": accs}
                )
            final = float(np.median([r["train_loss"][-1] for r in per_seed]))
            ctx.log(
                f"{name} lr={lr:g}: median final train loss {final:.4f}, "
                f"test acc {np.median([r['test_acc'][-1] for r in per_seed]):.3f}"
            )
            runs[name][lr] = per_seed
        walls[name] = time.perf_counter() - t0

    # best rate per optimizer: least median final training loss (non-finite counts as infinite)
    def final_loss(per_seed):
        v = [r["train_loss"][-1] for r in per_seed]
        return float(np.median([x if math.isfinite(x) else math.inf for x in v]))

    best = {
        name: min(config.lr_grid, key=lambda lr: final_loss(runs[name][lr]))
        for name in config.optimizers
    }
    summary = {}
    for name in config.optimizers:
        per_seed = runs[name][best[name]]
        tl = np.asarray([r["train_loss"] for r in per_seed])
        acc = np.asarray([r["test_acc"] for r in per_seed])
        reach = [
            first_reach(eval_steps, r["train_loss"], config.loss_target)
            for r in per_seed
        ]
        summary[name] = {
            "lr": best[name],
            "initial_train_loss": float(np.median(tl[:, 0])),
            "final_train_loss": float(np.median(tl[:, -1])),
            "final_train_loss_per_seed": tl[:, -1].tolist(),
            "final_test_acc": float(np.median(acc[:, -1])),
            "final_test_acc_per_seed": acc[:, -1].tolist(),
            "steps_to_target_per_seed": [
                s if math.isfinite(s) else None for s in reach
            ],
            "median_steps_to_target": _finite_or_none(float(np.median(reach))),
            "median_train_loss_curve": np.median(tl, axis=0).tolist(),
            "median_test_acc_curve": np.median(acc, axis=0).tolist(),
            "median_batch_loss_curve": np.median(
                np.asarray([r["batch_loss"] for r in per_seed]), axis=0
            ).tolist(),
            "state_bytes": memory[name]["total"],
            "preconditioner_bytes": memory[name].get("preconditioner"),
            "full_factor_bytes": memory[name].get("full_factors"),
            "wall_s_all_rates": walls[name],
        }
    lr_table = {
        name: {
            f"{lr:g}": {
                "final_train_loss": final_loss(runs[name][lr]),
                "final_test_acc": float(
                    np.median([r["test_acc"][-1] for r in runs[name][lr]])
                ),
            }
            for lr in config.lr_grid
        }
        for name in config.optimizers
    }
    ratio = ratio_full = None
    if "shampoo" in summary and "shampoo_4bit" in summary:
        ratio = (
            summary["shampoo_4bit"]["preconditioner_bytes"]
            / summary["shampoo"]["preconditioner_bytes"]
        )
        ratio_full = (
            summary["shampoo_4bit"]["full_factor_bytes"]
            / summary["shampoo"]["full_factor_bytes"]
        )

    _plot(config, eval_steps, summary, ctx)

    checks = {}
    for name in config.optimizers:
        s = summary[name]
        checks[f"{LABELS[name]} train loss decreased"] = (
            s["final_train_loss"] < 0.5 * s["initial_train_loss"]
        )
        checks[f"{LABELS[name]} test accuracy above chance (10%)"] = (
            s["final_test_acc"] > 0.2
        )
    if ratio is not None:
        checks["4-bit preconditioner state smaller than 32-bit"] = ratio < 1.0

    steps_cell = lambda v: f">{config.steps}" if v is None else f"{v:g}"
    rows = [
        (
            LABELS[n],
            f"{summary[n]['lr']:g}",
            summary[n]["final_train_loss"],
            f"{100 * summary[n]['final_test_acc']:.1f}",
            steps_cell(summary[n]["median_steps_to_target"]),
            f"{summary[n]['state_bytes']:,}",
            "-"
            if summary[n]["preconditioner_bytes"] is None
            else f"{summary[n]['preconditioner_bytes']:,}",
        )
        for n in config.optimizers
    ]
    table = markdown_table(
        [
            "optimizer",
            "best lr",
            "final train loss",
            "test acc (%)",
            f"steps to train loss {config.loss_target:g}",
            "state bytes",
            "preconditioner bytes",
        ],
        rows,
    )
    lr_rows = [
        (LABELS[n], lr, v["final_train_loss"], f"{100 * v['final_test_acc']:.1f}")
        for n in config.optimizers
        for lr, v in lr_table[n].items()
    ]
    lr_md = markdown_table(
        ["optimizer", "lr", "median final train loss", "median test acc (%)"], lr_rows
    )
    report = (
        f"CNN {config.channels} ({num_params:,} parameters, {4 * num_params:,} bytes in float32) on "
        f"{config.dataset} ({len(x_train)} train / {len(x_test)} test), batch {config.batch_size}, {config.steps} "
        f"steps, seeds {list(config.seeds)}, factors refreshed every {config.precondition_every} steps, "
        f"Shampoo beta2 = {config.beta2}. Medians over the seeds at each optimizer's best rate (least median final "
        f"training loss over the grid {list(config.lr_grid)}); training loss on the whole training set, evaluated "
        f"every {config.eval_every} steps.\n\n{table}\n"
    )
    if ratio is not None:
        report += (
            f"\nPreconditioner memory, 4-bit / 32-bit: {ratio:.3f} overall (1/{1 / ratio:.1f}), {ratio_full:.3f} on "
            f"the full (non-diagonal) factors alone (1/{1 / ratio_full:.1f}).\n"
        )
    report += f"\nAll rates:\n\n{lr_md}\n"
    parts = []
    if "shampoo" in summary and "adam" in summary:
        parts.append(
            f"Shampoo loss {summary['shampoo']['final_train_loss']:.3g} vs Adam "
            f"{summary['adam']['final_train_loss']:.3g} after {config.steps} steps"
        )
    if ratio is not None:
        parts.append(
            f"4-bit: loss {summary['shampoo_4bit']['final_train_loss']:.3g}, preconditioner "
            f"{ratio:.2f}x of 32-bit"
        )
    headline = "; ".join(parts)
    results = {
        "num_params": num_params,
        "eval_steps": eval_steps.tolist(),
        "loss_target": config.loss_target,
        "summary": summary,
        "lr_table": lr_table,
        "preconditioner_ratio_4bit_over_32bit": ratio,
        "full_factor_ratio_4bit_over_32bit": ratio_full,
        "memory": memory,
    }
    return Outcome(results=results, checks=checks, headline=headline, report=report)


def _plot(config, eval_steps, summary, ctx):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, s in summary.items():
        axes[0].plot(
            eval_steps,
            s["median_train_loss_curve"],
            color=COLORS[name],
            label=f"{LABELS[name]} (lr {s['lr']:g})",
        )
        axes[1].plot(
            eval_steps,
            100 * np.asarray(s["median_test_acc_curve"]),
            color=COLORS[name],
            label=LABELS[name],
        )
    axes[0].axhline(config.loss_target, color="k", lw=0.6, ls=":")
    axes[0].set(
        yscale="log",
        xlabel="step",
        ylabel="training loss (whole set)",
        title="Training loss (median over seeds)",
    )
    axes[1].set(
        xlabel="step",
        ylabel="test accuracy (%)",
        title="Test accuracy (median over seeds)",
    )
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "loss_curves")

    names = [n for n in ("shampoo", "shampoo_4bit") if n in summary]
    if names:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        vals = [summary[n]["preconditioner_bytes"] / 1024 for n in names]
        ax.bar([LABELS[n] for n in names], vals, color=[COLORS[n] for n in names])
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.0f} KiB", ha="center", va="bottom", fontsize=9)
        ax.set(
            ylabel="preconditioner state (KiB)", title="Shampoo preconditioner memory"
        )
        fig.tight_layout()
        ctx.savefig(fig, "preconditioner_memory")
