"""Train the 1024 -> 1024 -> 10 MLP with a dense, TT or low-rank hidden layer (the ``tensorizing_nn`` experiment).

Every model is trained the same way: softmax cross-entropy, ``optax.adam``, one ``jax.jit``-compiled epoch
(``lax.scan`` over the minibatches) per model structure, reused across seeds. The models are Flax nnx modules; the
training loop is functional (``nnx.split`` once, ``nnx.merge`` inside the jitted step), so the jitted functions take
the static ``GraphDef`` and are compiled once per architecture.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import data as data_lib
from experiments._core import Outcome, markdown_table, pyplot
from tnkit import nn as tnn

SIDE = 32
FEATURES = SIDE * SIDE  # 1024 = 4^5
MODES = (4, 4, 4, 4, 4)
NUM_CLASSES = 10


# ------------------------------------------------------------------------------------------------------ data


def load_data(config, ctx):
    """``(x_train, y_train, x_test, y_test)``: images flattened to 1024 features in [0, 1], labels int32."""
    if config.dataset == "digits":
        train, test = data_lib.load_digits(seed=ctx.seed)

        def prep(split):  # 8 x 8 -> 32 x 32, bilinear
            up = jax.image.resize(jnp.asarray(split.images), (len(split.images), SIDE, SIDE), method="bilinear")
            return np.asarray(up, dtype=np.float32).reshape(-1, FEATURES), split.labels

    else:
        train = data_lib.load_mnist(ctx.data_dir, dataset=config.dataset, split="train")
        test = data_lib.load_mnist(ctx.data_dir, dataset=config.dataset, split="test")

        def prep(split):  # 28 x 28 -> 32 x 32, zero padding (2 pixels each side), as in the paper
            padded = np.pad(split.images, ((0, 0), (2, 2), (2, 2)))
            return padded.astype(np.float32).reshape(-1, FEATURES), split.labels

    x_train, y_train = prep(train)
    x_test, y_test = prep(test)
    if config.train_limit is not None:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    return x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------------------------------------- models


class MLP(nnx.Module):
    """``head(relu(hidden(x)))`` with a given 1024 -> 1024 hidden layer and a dense 1024 -> 10 head."""

    def __init__(self, hidden: nnx.Module, *, rngs: nnx.Rngs):
        self.hidden = hidden
        self.head = nnx.Linear(FEATURES, NUM_CLASSES, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.hidden(x)))


def tt_params_closed_form(rank: int) -> int:
    """``sum_k r_{k-1} m_k n_k r_k`` for modes 4^5 on both sides and ranks ``(1, r, r, r, r, 1)``."""
    r = (1,) + (rank,) * (len(MODES) - 1) + (1,)
    return sum(r[k] * MODES[k] * MODES[k] * r[k + 1] for k in range(len(MODES)))


def lowrank_params_closed_form(rank: int) -> int:
    """``k (in + out)`` for ``W = A B`` with ``A (1024, k)``, ``B (k, 1024)``."""
    return rank * (FEATURES + FEATURES)


def matched_lowrank_rank(tt_rank: int) -> int:
    """The smallest low-rank rank whose parameter count is at least the TT-layer's: ``ceil(P_TT / 2048)``."""
    return -(-tt_params_closed_form(tt_rank) // (2 * FEATURES))


def make_hidden(kind: str, rank: int, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "dense":
        return nnx.Linear(FEATURES, FEATURES, rngs=rngs)
    if kind == "tt":
        return tnn.TTLinear(FEATURES, FEATURES, ranks=rank, in_modes=MODES, out_modes=MODES, rngs=rngs)
    if kind == "lowrank":
        return tnn.LowRankLinear(FEATURES, FEATURES, rank=rank, rngs=rngs)
    raise ValueError(f"kind: expected 'dense', 'tt' or 'lowrank', got {kind!r}")


def weight_params(hidden: nnx.Module) -> int:
    """Scalars in the hidden layer's weight (bias excluded), read from the layer itself."""
    if isinstance(hidden, nnx.Linear):
        return int(np.prod(hidden.kernel.shape))
    return int(hidden.spec.count_params())


# -------------------------------------------------------------------------------------------------- training


def _loss(graphdef, state, x, y):
    logits = nnx.merge(graphdef, state)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_train_fns(learning_rate: float):
    """``(init_opt, epoch, accuracy)``: jitted with the ``GraphDef`` static, so one compile per architecture."""
    tx = optax.adam(learning_rate)

    @functools.partial(jax.jit, static_argnums=0)
    def epoch(graphdef, state, opt_state, xb, yb):
        def step(carry, batch):
            state, opt_state = carry
            loss, grads = jax.value_and_grad(_loss, argnums=1)(graphdef, state, *batch)
            updates, opt_state = tx.update(grads, opt_state, state)
            return (optax.apply_updates(state, updates), opt_state), loss

        (state, opt_state), losses = jax.lax.scan(step, (state, opt_state), (xb, yb))
        return state, opt_state, losses

    @functools.partial(jax.jit, static_argnums=0)
    def accuracy(graphdef, state, x, y):
        logits = nnx.merge(graphdef, state)(x)
        return jnp.mean(jnp.argmax(logits, axis=-1) == y)

    return tx.init, epoch, accuracy


def train_model(kind, rank, seed_index, data, config, ctx, fns):
    """Train one model; returns ``(model, per-epoch mean training loss, test accuracy)``."""
    x_train, y_train, x_test, y_test = data
    init_opt, epoch, accuracy = fns
    salt = {"dense": 0, "tt": 1, "lowrank": 2}[kind]
    rngs = nnx.Rngs(params=ctx.key(salt, rank, seed_index))
    model = MLP(make_hidden(kind, rank, rngs), rngs=rngs)
    graphdef, state = nnx.split(model)
    opt_state = init_opt(state)
    rng = ctx.rng(salt, rank, seed_index)
    steps = len(x_train) // config.batch_size
    losses = []
    for _ in range(config.epochs):
        order = rng.permutation(len(x_train))[: steps * config.batch_size].reshape(steps, config.batch_size)
        state, opt_state, loss = epoch(graphdef, state, opt_state, x_train[order], y_train[order])
        losses.append(float(jnp.mean(loss)))
    test_acc = float(accuracy(graphdef, state, x_test, y_test))
    return nnx.merge(graphdef, state), losses, test_acc


def _summary(values):
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


# ------------------------------------------------------------------------------------------------------- run


def run(config, ctx) -> Outcome:
    data = load_data(config, ctx)
    x_train, _, x_test, y_test = data
    ctx.log(f"data: {config.dataset}, {len(x_train)} train / {len(x_test)} test images of {SIDE}x{SIDE}")
    fns = make_train_fns(config.learning_rate)
    _, _, accuracy = fns
    dense_params = FEATURES * FEATURES

    lowrank_ranks = sorted({matched_lowrank_rank(r) for r in config.tt_ranks})
    settings = [("dense", 0)] + [("tt", r) for r in config.tt_ranks] + [("lowrank", k) for k in lowrank_ranks]
    closed = {"dense": lambda r: dense_params, "tt": tt_params_closed_form, "lowrank": lowrank_params_closed_form}

    models, rows, svd_rows = {}, [], []
    for kind, rank in ctx.progress(settings, desc="models"):
        accs, curves = [], []
        for s in range(config.seeds):
            model, losses, acc = train_model(kind, rank, s, data, config, ctx, fns)
            accs.append(acc)
            curves.append(losses)
            if kind == "dense":
                models.setdefault("dense", []).append(model)
        n_weight = weight_params(model.hidden)
        mean, std = _summary(accs)
        row = {
            "kind": kind,
            "rank": rank,
            "weight_params": n_weight,
            "closed_form_params": closed[kind](rank),
            "compression": dense_params / n_weight,
            "test_accuracy": accs,
            "test_accuracy_mean": mean,
            "test_accuracy_std": std,
            "loss_curves": curves,
            "implementation_train": (
                None if kind == "dense" else model.hidden.spec.choose((config.batch_size, FEATURES)).name
            ),
        }
        rows.append(row)
        label = "dense" if kind == "dense" else f"{kind} rank {rank}"
        ctx.log(
            f"  {label:>16}: {n_weight:>8} weight params ({row['compression']:.0f}x), test accuracy "
            f"{100 * mean:.2f} +- {100 * std:.2f} %, loss {curves[0][0]:.3f} -> {curves[0][-1]:.3f}"
        )

    if config.svd_baseline:
        # TT-SVD of each trained dense hidden layer (no fine-tuning): what the TT format costs a trained weight.
        for rank in config.tt_ranks:
            accs, errs = [], []
            for dense_model in models["dense"]:
                tt_hidden, info = tnn.TTLinear.from_linear(
                    dense_model.hidden, max_rank=rank, in_modes=MODES, out_modes=MODES
                )
                converted = MLP(tt_hidden, rngs=nnx.Rngs(0))
                converted.head = dense_model.head
                graphdef, state = nnx.split(converted)
                accs.append(float(accuracy(graphdef, state, x_test, y_test)))
                errs.append(info.relative_error)
            svd_rows.append(
                {
                    "rank": rank,
                    "weight_params": info.num_params,
                    "compression": dense_params / info.num_params,
                    "relative_weight_error_mean": _summary(errs)[0],
                    "test_accuracy_mean": _summary(accs)[0],
                    "test_accuracy_std": _summary(accs)[1],
                }
            )

    return _outcome(config, ctx, rows, svd_rows, lowrank_ranks)


def _outcome(config, ctx, rows, svd_rows, lowrank_ranks):
    dense = next(r for r in rows if r["kind"] == "dense")
    tt = [r for r in rows if r["kind"] == "tt"]
    lr = [r for r in rows if r["kind"] == "lowrank"]
    by_rank = {r["rank"]: r for r in lr}

    # Matched pairs: each TT-layer beside the smallest low-rank layer with at least as many parameters.
    pairs = []
    for t in tt:
        low = by_rank[matched_lowrank_rank(t["rank"])]
        pairs.append(
            {
                "tt_rank": t["rank"],
                "tt_params": t["weight_params"],
                "tt_accuracy": t["test_accuracy_mean"],
                "lowrank_rank": low["rank"],
                "lowrank_params": low["weight_params"],
                "lowrank_accuracy": low["test_accuracy_mean"],
            }
        )
    # The fair comparisons: the TT-layer has no more parameters than the low-rank layer it is compared with.
    fair = [p for p in pairs if p["tt_params"] <= p["lowrank_params"]]
    tt_wins = sum(p["tt_accuracy"] >= p["lowrank_accuracy"] for p in fair)

    # Largest compression whose TT accuracy is within 1 point of the dense net's.
    within = [t for t in tt if t["test_accuracy_mean"] >= dense["test_accuracy_mean"] - 0.01]
    best = max(within, key=lambda t: t["compression"]) if within else max(tt, key=lambda t: t["test_accuracy_mean"])
    drop = 100 * (dense["test_accuracy_mean"] - best["test_accuracy_mean"])
    headline = (
        f"TT rank {best['rank']}: {best['compression']:.0f}x smaller hidden layer at "
        f"{drop:+.1f} pt accuracy drop ({100 * best['test_accuracy_mean']:.1f}% vs dense "
        f"{100 * dense['test_accuracy_mean']:.1f}%); TT >= low-rank in {tt_wins}/{len(fair)} matched pairs"
    )

    checks = {
        "every model above chance (10%) on test": all(r["test_accuracy_mean"] > 0.10 for r in rows),
        "dense net learned (test accuracy > 50%)": dense["test_accuracy_mean"] > 0.5,
        "every TT model's training loss decreased (first to last epoch, every seed)": all(
            c[-1] < c[0] for t in tt for c in t["loss_curves"]
        ),
        "every low-rank model's training loss decreased": all(c[-1] < c[0] for r in lr for c in r["loss_curves"]),
        "at the smallest TT-rank, the TT-layer beats the low-rank layer with at least as many parameters": (
            pairs[0]["tt_accuracy"] > pairs[0]["lowrank_accuracy"] and pairs[0]["tt_params"] <= pairs[0]["lowrank_params"]
        ),
        "layer parameter counts equal the closed forms (dense n^2, TT sum r m n r, low-rank k (n + m))": all(
            r["weight_params"] == r["closed_form_params"] for r in rows
        ),
    }

    table = markdown_table(
        ["hidden layer", "rank", "weight params", "compression", "test accuracy %", "+- (std over seeds)",
         "final train loss"],
        [
            (
                r["kind"], r["rank"] if r["kind"] != "dense" else "-", r["weight_params"], f"{r['compression']:.1f}x",
                f"{100 * r['test_accuracy_mean']:.2f}", f"{100 * r['test_accuracy_std']:.2f}",
                f"{np.mean([c[-1] for c in r['loss_curves']]):.4f}",
            )
            for r in rows
        ],
    )
    pair_table = markdown_table(
        ["TT rank", "TT params", "TT accuracy %", "low-rank k", "low-rank params", "low-rank accuracy %"],
        [
            (p["tt_rank"], p["tt_params"], f"{100 * p['tt_accuracy']:.2f}", p["lowrank_rank"], p["lowrank_params"],
             f"{100 * p['lowrank_accuracy']:.2f}")
            for p in pairs
        ],
    )
    report = (
        f"Data: {config.dataset}; {config.epochs} epochs of Adam (lr {config.learning_rate}), batch "
        f"{config.batch_size}, {config.seeds} seed(s) per model. Compression = 1024 x 1024 / (weight parameters of the "
        "hidden layer); biases (1024) and the 1024 -> 10 head (10,250) are the same in every model and not counted.\n\n"
        f"## All models\n\n{table}\n\n"
        "## TT against low-rank at matching parameter counts\n\n"
        "Each TT-layer beside the low-rank layer of smallest rank k = ceil(P_TT / 2048) with at least as many "
        f"parameters (so the comparison favours the low-rank layer).\n\n{pair_table}\n\n"
        f"In the {len(fair)} pair(s) where the TT-layer has no more parameters than the low-rank layer, the TT-layer "
        f"is at least as accurate in {tt_wins}.\n"
    )
    if svd_rows:
        svd_table = markdown_table(
            ["TT rank", "compression", "relative weight error", "test accuracy % (no fine-tuning)"],
            [
                (s["rank"], f"{s['compression']:.1f}x", f"{s['relative_weight_error_mean']:.3f}",
                 f"{100 * s['test_accuracy_mean']:.2f}")
                for s in svd_rows
            ],
        )
        report += (
            "\n## TT-SVD of the trained dense layer (TTLinear.from_linear, no fine-tuning)\n\n"
            f"{svd_table}\n\nCompare with the TT-layers trained from scratch above (the paper's procedure): "
            "a relative weight error near 1 means the trained dense weight is far from low TT-rank, so truncating it "
            "is no substitute for training in the TT format.\n"
        )

    _plots(ctx, dense, tt, lr, svd_rows)
    results = {
        "dense_params": FEATURES * FEATURES,
        "modes": MODES,
        "lowrank_ranks": lowrank_ranks,
        "models": rows,
        "pairs": pairs,
        "tt_wins_matched": tt_wins,
        "matched_pairs_fair": len(fair),
        "svd_baseline": svd_rows,
        "best_tt": {"rank": best["rank"], "compression": best["compression"], "accuracy_drop_points": drop},
    }
    return Outcome(results=results, checks=checks, headline=headline, report=report)


def _plots(ctx, dense, tt, lr, svd_rows):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for rows, style, label in ((tt, "o-", "TT-layer (modes 4^5)"), (lr, "s--", "low-rank layer")):
        x = [r["compression"] for r in rows]
        y = [100 * (1 - r["test_accuracy_mean"]) for r in rows]
        e = [100 * r["test_accuracy_std"] for r in rows]
        ax.errorbar(x, y, yerr=e, fmt=style, capsize=3, label=label)
        for r, xi, yi in zip(rows, x, y, strict=True):
            ax.annotate(f"r={r['rank']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if svd_rows:
        ax.plot([s["compression"] for s in svd_rows], [100 * (1 - s["test_accuracy_mean"]) for s in svd_rows],
                "^:", color="gray", label="TT-SVD of trained dense (no fine-tuning)")
    ax.axhline(100 * (1 - dense["test_accuracy_mean"]), color="k", lw=1, label="dense 1024x1024")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compression factor of the hidden layer (dense params / layer params)")
    ax.set_ylabel("test error (%)")
    ax.set_title("1024 -> 1024 hidden layer: test error vs compression")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ctx.savefig(fig, "error_vs_compression")

    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for rows, style in ((([dense]), "-"), (tt, "-"), (lr, "--")):
        for r in rows:
            curve = np.mean(np.asarray(r["loss_curves"]), axis=0)
            label = "dense" if r["kind"] == "dense" else f"{r['kind']} r={r['rank']}"
            ax.plot(np.arange(1, len(curve) + 1), curve, style, label=label, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, alpha=0.3)
    ctx.savefig(fig, "training_loss")
