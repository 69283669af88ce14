"""MLPs with dense or structured hidden layers, trained at several widths; loss against FLOPs per example.

Model: ``x (n_in) -> Linear(n_in, d) -> ReLU -> [S(d, d) -> ReLU] x depth -> Linear(d, classes)``, where ``S`` is
``nnx.Linear`` (dense) or a tnkit structured layer. Only the hidden ``d x d`` layers are structured, as in Qiu et al.
(2024), who keep the input and output layers dense. The structures (two factors of ``d`` are ``d = d_1 d_2`` as equal
as the primes of ``d`` allow, :func:`tnkit.layers.factorize_features`):

==========  ===========================================  ================================================
name        layer                                        multiply-adds per example
==========  ===========================================  ================================================
dense       ``nnx.Linear(d, d)``                         ``d^2``
btt         ``nn.BlockTTLinear(d, d, ranks=r)``          ``r (d d_1 + d d_1) = 2 r d^1.5`` for a square d
monarch     ``nn.MonarchLinear(d, d)`` (b = d_1 blocks)  ``2 b d``
kron        ``nn.TTLinear(d, d, ranks=1)``, two modes:   ``d (d_1 + d_2)``
            ``W = A ⊗ B``, ``A`` ``(d_1, d_1)``,
            ``B`` ``(d_2, d_2)`` (the paper's Kronecker)
phm         ``nn.KronLinear(d, d, num_terms=n)``:        ``n^2 (d/n) (d/n + n)``, about ``d^2``
            ``W = sum_t A_t ⊗ B_t`` (PHM)
tt          ``nn.TTLinear(d, d, ranks=r)``, default      tnkit's contraction plan (``spec.costs``)
            modes (2 or 3 cores)
low_rank    ``nn.LowRankLinear(d, d, rank=d // k)``      ``2 d^2 / k``
==========  ===========================================  ================================================

Every structured layer runs its factorised product (``Implementation.FACTORIZED``), so the multiply-adds counted by
``spec.costs`` are the ones executed; the run checks them against XLA's own count of the compiled forward pass
(``cost_analysis()["flops"]`` = 2 x multiply-adds + the bias additions). FLOPs per example = 2 x the multiply-adds
of all four (or more) matrix products, forward pass only (training costs about 3x that for every model alike).

Training: Adam (``optax.adam``) with the learning rate decayed to zero on a cosine schedule, at every peak rate of
the grid, the rates of one model vectorised with
``jax.vmap`` over one jitted ``lax.scan`` of all steps; every model sees the same minibatches (random ±``shift``
pixel translations of the training images). Reported: the loss on the whole (un-augmented) training set and the
test set after the last step; per model the rate with the lowest final training loss is kept ("tuned"), and the
rate ``common_learning_rate`` gives the untuned comparison.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import data
from experiments._core import Outcome, markdown_table, pyplot
from tnkit import layers, nn

FACTORIZED = layers.Implementation.FACTORIZED

#: name -> (label for plots and tables, factory(d, config, rngs) -> hidden layer)
STRUCTURES = {
    "dense": ("Dense", lambda d, c, rngs: nnx.Linear(d, d, rngs=rngs)),
    "btt": (
        "BTT (rank {btt_rank})",
        lambda d, c, rngs: nn.BlockTTLinear(d, d, ranks=c.btt_rank, implementation=FACTORIZED, rngs=rngs),
    ),
    "monarch": ("Monarch", lambda d, c, rngs: nn.MonarchLinear(d, d, implementation=FACTORIZED, rngs=rngs)),
    "kron": (
        "Kronecker A⊗B",
        lambda d, c, rngs: nn.TTLinear(
            d,
            d,
            ranks=1,
            in_modes=layers.factorize_features(d, 2),
            out_modes=layers.factorize_features(d, 2),
            implementation=FACTORIZED,
            rngs=rngs,
        ),
    ),
    "phm": (
        "PHM Kron sum (n={phm_terms})",
        lambda d, c, rngs: nn.KronLinear(d, d, num_terms=c.phm_terms, implementation=FACTORIZED, rngs=rngs),
    ),
    "tt": ("TT (rank {tt_rank})", lambda d, c, rngs: nn.TTLinear(d, d, ranks=c.tt_rank, implementation=FACTORIZED, rngs=rngs)),
    "low_rank": (
        "Low rank (d/{low_rank_divisor})",
        lambda d, c, rngs: nn.LowRankLinear(
            d, d, rank=max(1, d // c.low_rank_divisor), implementation=FACTORIZED, rngs=rngs
        ),
    ),
}


def label(name: str, config) -> str:
    return STRUCTURES[name][0].format(**{k: getattr(config, k) for k in ("btt_rank", "tt_rank", "phm_terms", "low_rank_divisor")})


class MLP(nnx.Module):
    """``Linear(n_in, d) -> ReLU -> [hidden(d, d) -> ReLU] x depth -> Linear(d, classes)``."""

    def __init__(self, n_in: int, width: int, classes: int, depth: int, make_hidden, *, rngs: nnx.Rngs):
        self.first = nnx.Linear(n_in, width, rngs=rngs)
        self.hidden = nnx.List([make_hidden(width, rngs) for _ in range(depth)])
        self.last = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.first(x))
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.last(x)


def hidden_macs(layer, width: int) -> int:
    """Multiply-adds per example of one hidden ``width x width`` layer (bias excluded)."""
    if isinstance(layer, nnx.Linear):
        return layer.in_features * layer.out_features
    return int(layer.spec.costs((1, width))[FACTORIZED])


def xla_macs(layer, width: int) -> float:
    """The multiply-adds XLA counts in the compiled forward pass of ``layer`` on one example, bias additions removed."""
    graphdef, state = nnx.split(layer)
    fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    cost = fn.lower(state, jnp.ones((1, width), jnp.float32)).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return (float(cost["flops"]) - width) / 2  # one addition per output for the bias


# ------------------------------------------------------------------------------------------------ data


def load_data(config, ctx):
    if config.dataset == "digits":
        train, test = data.load_digits(seed=ctx.seed)
    else:
        train = data.load_mnist(ctx.data_dir, dataset=config.dataset, split="train")
        test = data.load_mnist(ctx.data_dir, dataset=config.dataset, split="test")
    return train, test


def shifted_batches(images, labels, steps, batch_size, shift, rng):
    """``steps`` minibatches drawn with replacement, each image translated by a random ``(dy, dx)`` in
    ``[-shift, shift]^2`` (zero fill). Returns ``x (steps, batch, h * w)`` float32 and ``y (steps, batch)`` int32."""
    n, h, w = images.shape
    idx = rng.integers(0, n, size=(steps, batch_size))
    pad = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
    dy = rng.integers(0, 2 * shift + 1, size=(steps, batch_size))
    dx = rng.integers(0, 2 * shift + 1, size=(steps, batch_size))
    rows = dy[..., None] + np.arange(h)  # (steps, batch, h)
    cols = dx[..., None] + np.arange(w)
    x = pad[idx[..., None, None], rows[..., :, None], cols[..., None, :]]
    return x.reshape(steps, batch_size, h * w).astype(np.float32), labels[idx].astype(np.int32)


# ------------------------------------------------------------------------------------------------ training


def train(model, learning_rates, xs, ys, x_train, y_train, x_test, y_test, *, fast_compile=False):
    """Adam with a cosine-decayed learning rate, from the same initialisation at every peak rate (vmapped), one
    jitted scan over the steps.

    Returns per rate: the batch losses ``(rates, steps)``, the final training loss and accuracy, test loss and
    accuracy, and the training loss at initialisation."""
    graphdef, params = nnx.split(model, nnx.Param)

    def loss_fn(p, x, y):
        logits = nnx.merge(graphdef, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def evaluate(p, x, y):
        logits = nnx.merge(graphdef, p)(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == y)

    def one_rate(lr, params, xs, ys, x_train, y_train, x_test, y_test):
        # cosine decay to zero, so that the final loss measures the model, not the noise of a constant step size
        opt = optax.adam(optax.cosine_decay_schedule(lr, decay_steps=xs.shape[0]))

        def step(carry, batch):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, *batch)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), (xs, ys))
        train_loss, train_acc = evaluate(p, x_train, y_train)
        test_loss, test_acc = evaluate(p, x_test, y_test)
        return losses, train_loss, train_acc, test_loss, test_acc, evaluate(params, x_train, y_train)[0]

    # everything is an argument (nothing closed over), so XLA does not constant-fold the data through the model
    fn = jax.jit(jax.vmap(one_rate, in_axes=(0,) + (None,) * 7))
    arrays = [jnp.asarray(a) for a in (xs, ys, x_train, y_train, x_test, y_test)]
    args = (jnp.asarray(learning_rates, jnp.float32), params, *arrays)
    options = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True} if fast_compile else None
    out = fn.lower(*args).compile(compiler_options=options)(*args)
    return [np.asarray(o) for o in out]


# ------------------------------------------------------------------------------------------------ analysis


def matched_flops_ratios(dense_points, points):
    """``loss / dense loss at the same FLOPs`` for every point inside the dense curve's FLOP range.

    The dense loss is interpolated linearly in ``(log FLOPs, log loss)`` between the dense widths."""
    fd = np.log([p[0] for p in dense_points])
    ld = np.log([p[1] for p in dense_points])
    order = np.argsort(fd)
    fd, ld = fd[order], ld[order]
    out = []
    for f, loss in points:
        lf = math.log(f)
        if fd[0] <= lf <= fd[-1]:
            out.append((f, loss / math.exp(np.interp(lf, fd, ld))))
    return out


def run(config, ctx) -> Outcome:
    train_split, test_split = load_data(config, ctx)
    x_train, y_train = train_split.flat(), train_split.labels
    x_test, y_test = test_split.flat(), test_split.labels
    n_in, classes = x_train.shape[1], max(train_split.num_classes, test_split.num_classes)
    xs, ys = shifted_batches(
        train_split.images, y_train, config.steps, config.batch_size, config.shift, ctx.rng(1)
    )
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    ctx.log(f"data: {config.dataset}, {len(x_train)} train / {len(x_test)} test, {n_in} inputs, {classes} classes")

    settings = [("dense", d) for d in config.dense_widths] + [
        (s, d) for s in config.structures if s != "dense" for d in config.structured_widths
    ]
    lrs = list(config.learning_rates)
    i_common = lrs.index(config.common_learning_rate)
    runs = []
    for i, (name, width) in enumerate(ctx.progress(settings, desc="models", total=len(settings))):
        t0 = time.perf_counter()
        factory = STRUCTURES[name][1]
        model = MLP(
            n_in, width, classes, config.depth, lambda d, rngs, f=factory: f(d, config, rngs), rngs=nnx.Rngs(ctx.seed + i)
        )
        h_macs = hidden_macs(model.hidden[0], width)
        h_xla = xla_macs(model.hidden[0], width)
        macs = n_in * width + config.depth * h_macs + width * classes
        n_params = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
        batch_losses, train_loss, train_acc, test_loss, test_acc, loss0 = train(
            model, lrs, xs, ys, x_train, y_train, x_test, y_test, fast_compile=config.fast_compile
        )
        loss0 = float(loss0[0])
        finite = np.isfinite(train_loss)
        best = int(np.nanargmin(np.where(finite, train_loss, np.inf)))
        record = {
            "structure": name,
            "width": width,
            "params": n_params,
            "hidden_macs": h_macs,
            "hidden_macs_xla": h_xla,
            "macs_per_example": macs,
            "flops_per_example": 2 * macs,
            "initial_train_loss": loss0,
            "learning_rates": lrs,
            "train_loss": train_loss.tolist(),
            "train_acc": train_acc.tolist(),
            "test_loss": test_loss.tolist(),
            "test_acc": test_acc.tolist(),
            "best_lr": lrs[best],
            "best": {
                "train_loss": float(train_loss[best]),
                "train_acc": float(train_acc[best]),
                "test_loss": float(test_loss[best]),
                "test_acc": float(test_acc[best]),
                # the minibatch loss at the chosen rate, every 10th step (the training curve)
                "batch_loss_curve": batch_losses[best, ::10].tolist(),
            },
            "common": {"train_loss": float(train_loss[i_common]), "test_loss": float(test_loss[i_common])},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        runs.append(record)
        ctx.log(
            f"{name:>8} d={width:<5} {2 * macs / 1e3:9.1f} kFLOPs  params {n_params:8d}  lr {lrs[best]:g}  "
            f"train {train_loss[best]:.4f}  test {test_loss[best]:.4f} ({test_acc[best]:.3f})  "
            f"[{record['seconds']:.1f} s]"
        )
    outcome = summarise(config, runs)
    plot(config, outcome.results["curves"], ctx)
    return outcome


def summarise(config, runs) -> Outcome:
    names = [s for s in ("dense", *config.structures) if any(r["structure"] == s for r in runs)]
    names = list(dict.fromkeys(names))
    by = {s: sorted([r for r in runs if r["structure"] == s], key=lambda r: r["flops_per_example"]) for s in names}

    comparisons = {}
    for key in ("train_loss", "test_loss", "common_train_loss"):
        get = (lambda r: r["common"]["train_loss"]) if key == "common_train_loss" else (lambda r, k=key: r["best"][k])
        dense_pts = [(r["flops_per_example"], get(r)) for r in by["dense"]]
        comparisons[key] = {}
        for s in names:
            if s == "dense":
                continue
            ratios = matched_flops_ratios(dense_pts, [(r["flops_per_example"], get(r)) for r in by[s]])
            comparisons[key][s] = {
                "points_in_dense_range": len(ratios),
                "points_below_dense": sum(q < 1 for _, q in ratios),
                "geomean_ratio": float(np.exp(np.mean(np.log([q for _, q in ratios])))) if ratios else None,
                "ratios": [[f, q] for f, q in ratios],
            }

    checks = {}
    for r in runs:
        tag = f"{r['structure']} d={r['width']}"
        checks[f"{tag}: training loss decreased"] = r["best"]["train_loss"] < r["initial_train_loss"]
    classes_chance = 0.1
    checks["every model above chance (10%) on test"] = all(r["best"]["test_acc"] > classes_chance for r in runs)
    checks["dense hidden layers cost in*out multiply-adds (counted, and by XLA)"] = all(
        r["hidden_macs"] == r["width"] ** 2 and r["hidden_macs_xla"] == r["width"] ** 2 for r in by["dense"]
    )
    checks["every structured layer's multiply-add count equals XLA's"] = all(
        r["hidden_macs"] == r["hidden_macs_xla"] for r in runs
    )

    # headline: the train-loss comparison at matched FLOPs (tuned learning rates)
    parts = []
    for s, c in comparisons["train_loss"].items():
        if c["points_in_dense_range"]:
            parts.append(f"{s} {c['geomean_ratio']:.2f}x ({c['points_below_dense']}/{c['points_in_dense_range']} below)")
    if parts:
        headline = "train loss vs dense at matched FLOPs: " + ", ".join(parts)
    else:  # the smoke run: too few dense widths to interpolate
        headline = "no structured model inside the dense models' FLOP range (add dense widths to compare)"

    figures_data = {
        s: {
            "label": label(s, config),
            "flops": [r["flops_per_example"] for r in by[s]],
            "train_loss": [r["best"]["train_loss"] for r in by[s]],
            "test_loss": [r["best"]["test_loss"] for r in by[s]],
            "common_train_loss": [r["common"]["train_loss"] for r in by[s]],
            "width": [r["width"] for r in by[s]],
        }
        for s in names
    }
    return Outcome(
        results={"runs": runs, "curves": figures_data, "comparisons": comparisons},
        checks=checks,
        headline=headline,
        report=report(config, runs, by, comparisons),
    )


def report(config, runs, by, comparisons) -> str:
    rows = []
    for s, rs in by.items():
        for r in rs:
            rows.append(
                (
                    label(s, config),
                    r["width"],
                    f"{r['flops_per_example'] / 1e3:.1f}",
                    r["params"],
                    f"{r['best_lr']:g}",
                    r["best"]["train_loss"],
                    r["best"]["test_loss"],
                    f"{100 * r['best']['test_acc']:.1f}",
                    r["common"]["train_loss"],
                )
            )
    table = markdown_table(
        [
            "structure",
            "width",
            "kFLOPs/example",
            "params",
            "best lr",
            "train loss",
            "test loss",
            "test acc %",
            f"train loss @ lr {config.common_learning_rate:g}",
        ],
        rows,
    )
    crow = []
    for s in comparisons["train_loss"]:
        cells = [label(s, config)]
        for key in ("train_loss", "test_loss", "common_train_loss"):
            c = comparisons[key][s]
            cells.append(
                f"{c['geomean_ratio']:.3f} ({c['points_below_dense']}/{c['points_in_dense_range']})"
                if c["points_in_dense_range"]
                else "n/a"
            )
        crow.append(cells)
    ctable = markdown_table(
        ["structure", "train loss / dense", "test loss / dense", f"train loss / dense, lr {config.common_learning_rate:g}"],
        crow,
    )
    return (
        "## Setting\n\n"
        f"MLP `{config.dataset}` -> d -> (d x d) x {config.depth} -> classes, ReLU; the hidden d x d layers are dense "
        f"or structured. Adam with cosine decay, {config.steps} steps of batch {config.batch_size} (random "
        f"±{config.shift} px shifts), peak learning rate chosen per model from {list(config.learning_rates)} by final "
        "training loss. FLOPs per "
        "example: 2 x the forward multiply-adds of every matrix product (bias and ReLU excluded).\n\n"
        "## All models\n\n"
        f"{table}\n\n"
        "## Structured vs dense at matched FLOPs\n\n"
        "Geometric mean over a structure's widths inside the dense FLOP range of (loss / dense loss at the same "
        "FLOPs, log-log interpolation between dense widths); in brackets how many of those points lie below the "
        "dense curve. Below 1 = the structure beats dense at equal compute.\n\n"
        f"{ctable}\n"
    )


def plot(config, curves, ctx) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    keys = [
        ("train_loss", "final train loss (tuned lr)"),
        ("test_loss", "final test loss (tuned lr)"),
        ("common_train_loss", f"final train loss (lr {config.common_learning_rate:g})"),
    ]
    for ax, (key, title) in zip(axes, keys):
        for s, c in curves.items():
            style = {"color": "k", "lw": 2.2, "marker": "s"} if s == "dense" else {"marker": "o"}
            ax.plot(c["flops"], c[key], label=c["label"], **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("forward FLOPs per example")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("cross-entropy")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Structured vs dense hidden layers, {config.dataset}, {config.steps} Adam steps")
    fig.tight_layout()
    ctx.savefig(fig, "loss_vs_flops")
