"""FLoRA against LoRA on a frozen digits CNN: the model, the data, the vmapped training and the report.

Every method is one ``nnx`` model split by a filter into its trainable ``nnx.Param`` state and the rest (frozen
weights): the adapters' factors are :class:`tnkit.nn.AdapterParam` (an ``nnx.Param``) and the kernels they wrap are
:class:`tnkit.nn.FrozenWeight` (not an ``nnx.Param``), so ``nnx.split(model, nnx.Param, ...)`` gives exactly what
trains. Training is a ``lax.scan`` of Adam steps, vmapped over learning rates and seeds: one compile per setting.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import data
from experiments._core import Outcome, markdown_table, pyplot
from tnkit import nn

CONVS = ("conv1", "conv2", "conv3")


class CNN(nnx.Module):
    """Three 3x3 convolutions (ReLU; a 2x2 max-pool after the first, a global average pool after the third) and a
    linear head, on 8x8 images. The pooled head is small, so what a method can learn lies in the convolutions."""

    def __init__(self, channels, num_classes: int, *, rngs: nnx.Rngs):
        c1, c2, c3 = channels
        self.conv1 = nnx.Conv(1, c1, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(c1, c2, (3, 3), rngs=rngs)
        self.conv3 = nnx.Conv(c2, c3, (3, 3), rngs=rngs)
        self.head = nnx.Linear(c3, num_classes, rngs=rngs)

    def __call__(self, x):  # x: (batch, 8, 8)
        h = jax.nn.relu(self.conv1(x[..., None]))
        h = nnx.max_pool(h, (2, 2), strides=(2, 2))
        h = jax.nn.relu(self.conv2(h))
        h = jax.nn.relu(self.conv3(h))
        return self.head(h.mean(axis=(-3, -2)))


# ------------------------------------------------------------------------------------------------------ data


def _select(split: data.Split, classes, rotate: int):
    keep = np.isin(split.labels, classes)
    images = np.rot90(split.images[keep], k=rotate, axes=(1, 2)) if rotate % 4 else split.images[keep]
    relabel = {c: i for i, c in enumerate(classes)}
    labels = np.array([relabel[int(c)] for c in split.labels[keep]], dtype=np.int32)
    return np.ascontiguousarray(images, dtype=np.float32), labels


def make_data(config, ctx):
    """Pretraining train/test, and the new task's fit/val/test (rotated, relabelled 0..k-1, ``shots`` per class)."""
    train, test = data.load_digits(seed=ctx.seed)
    pre = {"train": _select(train, config.pretrain_classes, 0), "test": _select(test, config.pretrain_classes, 0)}
    x, y = _select(train, config.adapt_classes, config.rotate)
    order = ctx.rng(1).permutation(len(y))
    n_val = round(config.val_fraction * len(y))
    val, fit = order[:n_val], order[n_val:]
    if config.shots is not None:
        fit = np.concatenate([fit[y[fit] == c][: config.shots] for c in range(len(config.adapt_classes))])
    new = {"fit": (x[fit], y[fit]), "val": (x[val], y[val]), "test": _select(test, config.adapt_classes, config.rotate)}
    return pre, new


# -------------------------------------------------------------------------------------------------- training


def make_trainer(graphdef, *, steps: int, batch_size: int):
    """``train(trainable[seed], rest, lrs[lr], keys[seed], x, y) -> (trainable[seed, lr], losses[seed, lr, step])``
    and ``predict(trainable[seed, lr], rest, x) -> logits[seed, lr]``, both jitted (one compile per graphdef)."""

    def loss_fn(trainable, rest, x, y):
        logits = nnx.merge(graphdef, trainable, rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def train_one(trainable, rest, lr, key, x, y):
        tx = optax.adam(lr)

        def step(carry, k):
            p, opt = carry
            idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
            loss, grads = jax.value_and_grad(loss_fn)(p, rest, x[idx], y[idx])
            updates, opt = tx.update(grads, opt, p)
            return (optax.apply_updates(p, updates), opt), loss

        (p, _), losses = jax.lax.scan(step, (trainable, tx.init(trainable)), jax.random.split(key, steps))
        return p, losses

    over_lr = jax.vmap(train_one, in_axes=(None, None, 0, None, None, None))
    train = jax.jit(jax.vmap(over_lr, in_axes=(0, None, None, 0, None, None)))

    def predict_one(trainable, rest, x):
        return nnx.merge(graphdef, trainable, rest)(x)

    predict = jax.jit(jax.vmap(jax.vmap(predict_one, in_axes=(0, None, None)), in_axes=(0, None, None)))
    return train, predict


def count(state) -> int:
    """Scalars in an ``nnx.State``."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(state)))


def tucker_closed_form(kernel_shape, r: int) -> int:
    """FLoRA's parameters: ``prod(r_k) + sum(n_k r_k)`` with ``r_k = min(r, n_k)``."""
    ranks = [min(r, n) for n in kernel_shape]
    return math.prod(ranks) + sum(n * rk for n, rk in zip(kernel_shape, ranks))


def lora_closed_form(kernel_shape, r: int) -> int:
    """LoRA's parameters on the matrix view ``(prod(kernel_shape[:-1]), kernel_shape[-1])``: ``r (in + out)``."""
    return r * (math.prod(kernel_shape[:-1]) + kernel_shape[-1])


def build(pretrained: CNN, method: str, rank: int | None, seed: int, num_classes: int):
    """The model of one method and seed: a copy of ``pretrained`` with a new head (and adapters on the convolutions),
    and the filter of what trains."""
    model = nnx.clone(pretrained)
    in_features = model.head.in_features
    model.head = nnx.Linear(in_features, num_classes, rngs=nnx.Rngs(1000 + seed))
    for name in CONVS:
        conv = getattr(model, name)
        if method == "tucker":
            setattr(model, name, nn.TuckerAdapter(conv, ranks=rank, rngs=nnx.Rngs(2000 + seed)))
        elif method == "lora":
            setattr(model, name, nn.LoRA(conv, rank=rank, rngs=nnx.Rngs(2000 + seed)))
    trainable = nnx.All(nnx.Param, nnx.PathContains("head")) if method == "head" else nnx.Param
    return model, trainable


def accuracy(logits, labels) -> np.ndarray:
    return (np.asarray(logits).argmax(-1) == labels).mean(-1)


def run_setting(pretrained, method, rank, config, ctx, new):
    """Train one method at every (seed, learning rate); return its numbers."""
    k = len(config.adapt_classes)
    models = [build(pretrained, method, rank, s, k) for s in range(config.seeds)]
    splits = [nnx.split(m, flt, ...) for m, flt in models]
    graphdef, _, rest = splits[0]
    trainable = jax.tree.map(lambda *a: jnp.stack(a), *[s[1] for s in splits])
    n_trainable = count(splits[0][1])
    adapters = {}
    for name in CONVS:
        layer = getattr(models[0][0], name)
        if isinstance(layer, nn.Adapter):
            shape = tuple(int(n) for n in layer.spec.kernel_shape)
            closed = (tucker_closed_form if method == "tucker" else lora_closed_form)(shape, rank)
            adapters[name] = {"kernel_shape": shape, "count": int(layer.count_params()), "closed_form": closed}
    head = models[0][0].head
    head_params = head.in_features * head.out_features + head.out_features
    train, predict = make_trainer(graphdef, steps=config.adapt_steps, batch_size=config.batch_size)
    salt = ("head", "full", "tucker", "lora").index(method)  # not hash(): str hashes change between processes
    keys = jax.random.split(ctx.key(3, salt, rank or 0), config.seeds)
    lrs = jnp.asarray(config.learning_rates, jnp.float32)
    x, y = new["fit"]
    params, losses = train(trainable, rest, lrs, keys, jnp.asarray(x), jnp.asarray(y))
    acc = {s: accuracy(predict(params, rest, jnp.asarray(new[s][0])), new[s][1]) for s in ("fit", "val", "test")}
    best = int(np.argmax(acc["val"].mean(0)))  # learning rate by mean validation accuracy over seeds
    losses = np.asarray(losses)
    return {
        "method": method,
        "rank": rank,
        "trainable_params": n_trainable,
        "adapter_params": n_trainable - head_params,
        "head_params": head_params,
        "adapters": adapters,
        "best_lr": float(config.learning_rates[best]),
        "test_acc": float(acc["test"][:, best].mean()),
        "test_acc_std": float(acc["test"][:, best].std()),
        "test_acc_per_seed": acc["test"][:, best].tolist(),
        "val_acc": float(acc["val"][:, best].mean()),
        "fit_acc": float(acc["fit"][:, best].mean()),
        "val_acc_per_lr": acc["val"].mean(0).tolist(),
        "test_acc_per_lr": acc["test"].mean(0).tolist(),
        "loss_first": float(losses[:, best, :10].mean()),
        "loss_last": float(losses[:, best, -max(1, config.adapt_steps // 20):].mean()),
        "loss_curve": _thin(losses[:, best].mean(0)),
    }


def _thin(curve: np.ndarray, points: int = 60) -> list[float]:
    """A loss curve averaged over windows, at most ``points`` values."""
    n = len(curve)
    w = max(1, n // points)
    return curve[: n // w * w].reshape(-1, w).mean(1).tolist()


def pretrain(config, ctx, pre):
    k = len(config.pretrain_classes)
    model = CNN(config.channels, k, rngs=nnx.Rngs(ctx.seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    train, predict = make_trainer(graphdef, steps=config.pretrain_steps, batch_size=config.batch_size)
    stacked = jax.tree.map(lambda a: a[None], params)
    x, y = pre["train"]
    out, losses = train(stacked, rest, jnp.asarray([config.pretrain_lr]), ctx.key(1)[None], jnp.asarray(x),
                        jnp.asarray(y))
    acc = float(accuracy(predict(out, rest, jnp.asarray(pre["test"][0])), pre["test"][1])[0, 0])
    losses = np.asarray(losses)[0, 0]
    nnx.update(model, jax.tree.map(lambda a: a[0, 0], out))
    return model, {
        "test_acc": acc,
        "loss_first": float(losses[:10].mean()),
        "loss_last": float(losses[-max(1, config.pretrain_steps // 20):].mean()),
        "chance": 1.0 / k,
        "params": count(params),
    }


# ------------------------------------------------------------------------------------------------------- run


def run(config, ctx) -> Outcome:
    pre, new = make_data(config, ctx)
    ctx.log(f"pretraining on digits {config.pretrain_classes} ({len(pre['train'][1])} images)")
    pretrained, pre_res = pretrain(config, ctx, pre)
    ctx.log(f"  pretrained test accuracy {pre_res['test_acc']:.3f}")
    settings = [("head", None)] + ([("full", None)] if config.full_finetune else [])
    settings += [("tucker", r) for r in config.tucker_ranks] + [("lora", r) for r in config.lora_ranks]
    rows = []
    for method, rank in ctx.progress(settings, desc="settings"):
        res = run_setting(pretrained, method, rank, config, ctx, new)
        ctx.log(f"  {method:6s} r={rank}: {res['trainable_params']:6d} trainable, test {res['test_acc']:.3f} "
                f"+- {res['test_acc_std']:.3f} (lr {res['best_lr']:g})")
        rows.append(res)
    return _outcome(config, ctx, pre_res, rows, new)


def _label(r) -> str:
    return {"head": "linear probe", "full": "full fine-tuning"}.get(r["method"], f"{r['method']} r={r['rank']}")


def _outcome(config, ctx, pre_res, rows, new) -> Outcome:
    chance = 1.0 / len(config.adapt_classes)
    by = {m: [r for r in rows if r["method"] == m] for m in ("head", "full", "tucker", "lora")}
    probe = by["head"][0]
    full = f", full FT {by['full'][0]['test_acc']:.1%}" if by["full"] else ""
    adapters = by["tucker"] + by["lora"]

    # Matched budgets: for each LoRA rank, the best FLoRA at no more trainable parameters.
    matched = []
    for lo in by["lora"]:
        cands = [t for t in by["tucker"] if t["trainable_params"] <= lo["trainable_params"]]
        if cands:
            t = max(cands, key=lambda t: t["test_acc"])
            matched.append({"lora_rank": lo["rank"], "lora_params": lo["trainable_params"], "lora_acc": lo["test_acc"],
                            "tucker_rank": t["rank"], "tucker_params": t["trainable_params"],
                            "tucker_acc": t["test_acc"]})
    wins = sum(m["tucker_acc"] > m["lora_acc"] for m in matched)

    counts_ok = all(
        a["count"] == a["closed_form"] for r in adapters for a in r["adapters"].values()
    ) and all(r["adapter_params"] == sum(a["closed_form"] for a in r["adapters"].values()) for r in adapters)
    checks = {
        f"pretraining learned (test accuracy {pre_res['test_acc']:.2f} > 0.9)": pre_res["test_acc"] > 0.9,
        "pretraining loss decreased": pre_res["loss_last"] < pre_res["loss_first"],
        "every adapter's training loss decreased": all(r["loss_last"] < r["loss_first"] for r in adapters),
        f"every adapter beats chance ({chance:.0%}) on the new task": all(r["test_acc"] > chance + 0.2
                                                                          for r in adapters),
        "every adapter beats the frozen features (linear probe)": all(r["test_acc"] > probe["test_acc"]
                                                                      for r in adapters),
        "trainable counts (nnx.Param filter) equal the closed forms": counts_ok,
    }
    if matched:
        m0 = matched[0]
        headline = (
            f"FLoRA beats LoRA at {wins}/{len(matched)} matched budgets; at <= {m0['lora_params']} params "
            f"FLoRA r={m0['tucker_rank']} {m0['tucker_acc']:.1%} vs LoRA r={m0['lora_rank']} {m0['lora_acc']:.1%} "
            f"(probe {probe['test_acc']:.1%}{full})"
        )
    else:
        best_t = max(by["tucker"], key=lambda r: r["test_acc"])
        headline = f"FLoRA best {best_t['test_acc']:.1%}; no LoRA setting with as many parameters"

    fig = _figure(rows, by, chance)
    ctx.savefig(fig, "accuracy_vs_params")

    table = markdown_table(
        ["method", "trainable params", "adapter params", "best lr", "test acc (mean +- std over seeds)", "val acc",
         "train acc"],
        [(_label(r), r["trainable_params"], r["adapter_params"], f"{r['best_lr']:g}",
          f"{r['test_acc']:.3f} +- {r['test_acc_std']:.3f}", f"{r['val_acc']:.3f}", f"{r['fit_acc']:.3f}")
         for r in rows],
    )
    match_table = markdown_table(
        ["LoRA", "params", "test acc", "best FLoRA with <= params", "params", "test acc"],
        [(f"r={m['lora_rank']}", m["lora_params"], f"{m['lora_acc']:.3f}", f"r={m['tucker_rank']}",
          m["tucker_params"], f"{m['tucker_acc']:.3f}") for m in matched],
    )
    shapes = ", ".join(f"{k} {tuple(v['kernel_shape'])}" for k, v in (adapters[0]["adapters"] if adapters else {}).items())
    n_fit, n_val, n_test = (len(new[s][1]) for s in ("fit", "val", "test"))
    report = f"""
## Setting

Pretrained CNN: three 3x3 convolutions with {config.channels} channels and a linear head, trained
{config.pretrain_steps} Adam steps on scikit-learn digits {config.pretrain_classes}: test accuracy
{pre_res['test_acc']:.3f} (chance {pre_res['chance']:.2f}). New task: digits {config.adapt_classes} rotated by
{90 * config.rotate} degrees ({n_fit} training, {n_val} validation, {n_test} test images). Every method trains a new
linear head ({probe['head_params']} parameters, counted in "trainable params"); the adapters wrap the frozen kernels
(HWIO) {shapes}. {config.adapt_steps} Adam steps, batch {config.batch_size}, learning rate chosen per method from
{config.learning_rates} by mean validation accuracy over {config.seeds} seed(s).

## Results

{table}

## FLoRA against LoRA at matched budgets

{match_table}
"""
    results = {
        "pretrain": pre_res,
        "chance": chance,
        "settings": rows,
        "matched": matched,
        "tucker_wins": wins,
        "n_fit": n_fit,
        "n_val": n_val,
        "n_test": n_test,
    }
    return Outcome(results=results, checks=checks, headline=headline, report=report)


def _figure(rows, by, chance):
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for m, style, label in (("tucker", "o-", "FLoRA (Tucker, kernel modes)"), ("lora", "s-", "LoRA (matrix view)")):
        pts = sorted(by[m], key=lambda r: r["trainable_params"])
        if pts:
            ax.errorbar([r["trainable_params"] for r in pts], [r["test_acc"] for r in pts],
                        yerr=[r["test_acc_std"] for r in pts], fmt=style, capsize=3, label=label)
            for r in pts:
                ax.annotate(str(r["rank"]), (r["trainable_params"], r["test_acc"]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7)
    for m, style, label in (("head", "k^", "linear probe"), ("full", "kD", "full fine-tuning")):
        if not by[m]:
            continue
        r = by[m][0]
        ax.errorbar([r["trainable_params"]], [r["test_acc"]], yerr=[r["test_acc_std"]], fmt=style, capsize=3,
                    label=label)
    ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (adapters + head)")
    ax.set_ylabel("test accuracy, new task")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for r in rows:
        bx.plot(r["loss_curve"], label=_label(r), lw=1)
    bx.set_yscale("log")
    bx.set_xlabel(f"training progress ({len(rows[0]['loss_curve'])} windows)")
    bx.set_ylabel("training loss (best lr, mean over seeds)")
    bx.legend(fontsize=6, ncol=2)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    return fig
