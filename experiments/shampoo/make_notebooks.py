"""Write ``notebooks/shampoo_in_flax.ipynb`` (tutorial) and ``notebooks/results_shampoo.ipynb`` (results), outputs
cleared. Run from the repository root: ``python experiments/shampoo/make_notebooks.py``."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]

TUTORIAL = [
    new_markdown_cell(
        """# Shampoo on a Flax model

[Shampoo](https://arxiv.org/abs/1802.09568) (Gupta, Koren & Singer, 2018) keeps, for a weight matrix with gradient
$G$ of shape $(m, n)$, two Kronecker factors $L = \\sum_t G_t G_t^T$ ($m \\times m$) and $R = \\sum_t G_t^T G_t$
($n \\times n$), and steps along $L^{-1/4} G R^{-1/4}$: a cheap Kronecker-factored stand-in for full-matrix AdaGrad.
A tensor of $k$ modes gets one factor per mode and the roots $-1/(2k)$.

`tnkit.optim.shampoo` is an ordinary optax `GradientTransformation`, so it drops into `flax.nnx.Optimizer` like
`optax.adam`. This notebook trains a small MLP on scikit-learn's digits with both, explains the main options, and
measures the optimizer state. (The `shampoo` experiment, `python -m experiments run shampoo`, does the same on a CNN
with SOAP and 4-bit Shampoo alongside.)"""
    ),
    new_code_cell(
        """import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

from tnkit import optim

# Shampoo's roots are eigendecompositions in LAPACK; on a small shared CPU one BLAS thread is much faster.
import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS so that the limit reaches it)
from threadpoolctl import threadpool_limits

threadpool_limits(1, user_api="blas")

digits = load_digits()
x = jnp.asarray(digits.data / 16.0, jnp.float32)  # (1797, 64), in [0, 1]
y = jnp.asarray(digits.target, jnp.int32)
x.shape, y.shape"""
    ),
    new_markdown_cell(
        """## A model, a loss, a training step

Nothing here is Shampoo-specific: the step is the usual `nnx.value_and_grad` + `optimizer.update`."""
    ),
    new_code_cell(
        """class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 64, rngs=rngs)
        self.out = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def loss_fn(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


def train(tx, steps=100, seed=0):
    model = MLP(nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    losses = [float(train_step(model, optimizer, x, y)) for _ in range(steps)]  # full batch
    return model, optimizer, np.asarray(losses)"""
    ),
    new_markdown_cell(
        """## Shampoo beside Adam

`precondition_every=5, start_preconditioning_step=5`: the roots are recomputed every 5 steps (inside a `lax.cond`,
so the other steps cost no eigendecomposition), and the first 5 steps are plain Adam steps (the *graft*, below)
while the statistics accumulate. Same learning rate for both: with Adam grafting, Shampoo's step has Adam's
per-layer size, so Adam's learning rate is a good start."""
    ),
    new_code_cell(
        """t0 = time.perf_counter()
adam_model, adam_opt, adam_losses = train(optax.adam(1e-2))
shampoo_tx = optim.shampoo(1e-2, precondition_every=5, start_preconditioning_step=5)
shampoo_model, shampoo_opt, shampoo_losses = train(shampoo_tx)
print(f"{time.perf_counter() - t0:.1f} s (compilation included)")
for step in (10, 25, 50, 99):
    print(f"step {step:3d}: Adam {adam_losses[step]:.4f}   Shampoo {shampoo_losses[step]:.4f}")


def accuracy(model):
    return float(jnp.mean(jnp.argmax(model(x), -1) == y))


print(f"train accuracy: Adam {accuracy(adam_model):.3f}, Shampoo {accuracy(shampoo_model):.3f}")
plt.figure(figsize=(5, 3.2))
plt.semilogy(adam_losses, label="Adam")
plt.semilogy(shampoo_losses, label="Shampoo")
plt.xlabel("step")
plt.ylabel("training loss")
plt.legend();"""
    ),
    new_markdown_cell(
        """## The main options

* **`layout=optim.ShampooLayout(block_size=...)`**: a mode larger than `block_size` is cut into blocks with a factor
  each, which caps the cost of a root at `block_size**3` (the default, 256, keeps every mode here whole). Small
  adjacent modes are merged while their product fits (`merge_small_dims`, so a `(3, 3, c_in, c_out)` convolution
  kernel becomes a `(9 * c_in, c_out)` matrix), and vectors (biases) get a diagonal factor (`diagonal_for_vectors`).
* **`grafting=optim.Grafting.ADAM`** (the default; also `SGD`, `ADAGRAD`, `RMSPROP`, `NONE`): Shampoo's direction is
  rescaled, layer by layer, to the norm of the graft optimizer's direction. Shampoo decides the *direction*, the
  graft the *step size*, so learning rates and schedules carry over from the graft optimizer.
* **`precondition_every`** (roots), **`statistics_every`** (factor updates) and **`start_preconditioning_step`**:
  how often the expensive parts run. **`beta2`**: `< 1` keeps an exponential moving average of the factors, `1` the
  AdaGrad-style sum. **`beta1`**: momentum, applied after grafting.

The layout is easiest to see on the state: one `(num_blocks, b, b)` array per mode."""
    ),
    new_code_cell(
        """params = nnx.state(MLP(nnx.Rngs(0)), nnx.Param)
print(jax.tree.map(lambda a: a.shape, params.to_pure_dict()))
for block_size in (256, 32):
    state = optim.shampoo(1e-2, layout=optim.ShampooLayout(block_size=block_size)).init(params)
    shapes = [[s.shape for s in leaf] for leaf in state[0].statistics]  # leaves in jax.tree.leaves(params) order
    print(f"block_size={block_size}: statistics {shapes}")"""
    ),
    new_markdown_cell(
        """With `block_size=32` the `(64, 64)` hidden weight is cut into a 2 x 2 grid of blocks, each with two `32 x 32`
factors, and the `(64, 10)` output weight into two `(32, 10)` blocks. The biases `(64,)` and `(10,)` have diagonal factors.

## How much state?

Adam keeps two moments per parameter. Shampoo keeps, per full factor, the statistic and its root (two float32
`b x b` matrices), plus the graft's second moment and the momentum. `optim.shampoo_4bit` (Wang et al. 2024) stores
each factor as float32 eigenvalues and 4-bit eigenvectors (block-wise quantised, two codes per byte, a float32 scale
per 64 entries) and no root."""
    ),
    new_code_cell(
        """def nbytes(tree):
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))


print(f"parameters: {nbytes(params):,} bytes")
states = {
    "adam": optax.adam(1e-2).init(params),
    "shampoo": optim.shampoo(1e-2).init(params),
    "shampoo_4bit": optim.shampoo_4bit(1e-2).init(params),
}
for name, state in states.items():
    print(f"{name:13s} state: {nbytes(state):,} bytes")
pre32 = nbytes((states["shampoo"][0].statistics, states["shampoo"][0].roots))
pre4 = nbytes((states["shampoo_4bit"][0].eigenvectors, states["shampoo_4bit"][0].eigenvalues))
print(f"preconditioner: 32-bit {pre32:,} bytes, 4-bit {pre4:,} bytes ({pre4 / pre32:.3f} x)")
# the trained optimizer holds the same arrays, wrapped as nnx variables:
print(f"trained nnx.Optimizer(shampoo) state: {nbytes(shampoo_opt.opt_state):,} bytes")"""
    ),
    new_markdown_cell(
        """On a model this small Shampoo's state is several times Adam's (the `64 x 64` factors are as large as the weight
itself); 4-bit Shampoo brings the preconditioner down by an order of magnitude. For wide layers the factors grow as
`b^2` per mode against the weights' `m * n`, and `block_size` is the knob that bounds them."""
    ),
]

RESULTS = [
    new_markdown_cell(
        """# Results: Shampoo and 4-bit Shampoo vs Adam on a CNN

Redraws the tables and plots of `python -m experiments run shampoo` from the committed
`experiments/shampoo/results/results.json` (no training here). See `experiments/shampoo/README.md`."""
    ),
    new_code_cell(
        """import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

root = Path.cwd()
while not (root / "pyproject.toml").exists():
    root = root.parent
record = json.loads((root / "experiments" / "shampoo" / "results" / "results.json").read_text())
res, config = record["results"], record["config"]
print(record["size"], "run,", record["headline"])
print({k: config[k] for k in ("dataset", "channels", "batch_size", "steps", "lr_grid", "seeds", "precondition_every")})"""
    ),
    new_code_cell(
        """labels = {"adam": "Adam", "shampoo": "Shampoo (32-bit)", "shampoo_4bit": "Shampoo (4-bit)", "soap": "SOAP"}
print(f"{'optimizer':18s} {'lr':>7s} {'train loss':>10s} {'test acc':>8s} {'steps to ' + str(res['loss_target']):>14s} "
      f"{'state B':>9s} {'precond B':>10s}")
for name, s in res["summary"].items():
    steps = s["median_steps_to_target"]
    pre = s["preconditioner_bytes"]
    print(f"{labels[name]:18s} {s['lr']:7g} {s['final_train_loss']:10.4f} {100 * s['final_test_acc']:7.1f}% "
          f"{'>' + str(config['steps']) if steps is None else int(steps):>14} {s['state_bytes']:9,d} "
          f"{'-' if pre is None else format(pre, ','):>10s}")
print(f"4-bit / 32-bit preconditioner bytes: {res['preconditioner_ratio_4bit_over_32bit']:.3f} overall, "
      f"{res['full_factor_ratio_4bit_over_32bit']:.3f} on the full factors")"""
    ),
    new_code_cell(
        """steps = np.asarray(res["eval_steps"])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for name, s in res["summary"].items():
    axes[0].plot(steps, s["median_train_loss_curve"], label=f"{labels[name]} (lr {s['lr']:g})")
    axes[1].plot(steps, 100 * np.asarray(s["median_test_acc_curve"]), label=labels[name])
axes[0].axhline(res["loss_target"], color="k", lw=0.6, ls=":")
axes[0].set(yscale="log", xlabel="step", ylabel="training loss (whole set)")
axes[1].set(xlabel="step", ylabel="test accuracy (%)")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=8)
fig.tight_layout()"""
    ),
    new_code_cell(
        """for name, rates in res["lr_table"].items():
    print(labels[name], {lr: round(v["final_train_loss"], 4) for lr, v in rates.items()})"""
    ),
]


def write(cells, name):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = ROOT / "notebooks" / name
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    print("wrote", path)


if __name__ == "__main__":
    write(TUTORIAL, "shampoo_in_flax.ipynb")
    write(RESULTS, "results_shampoo.ipynb")
