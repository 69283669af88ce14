"""TT-layers against dense and matrix-rank layers: Novikov et al., "Tensorizing Neural Networks" (NeurIPS 2015).

The paper's MNIST network (32 x 32 images, a 1024 -> 1024 hidden layer, ReLU, 1024 -> 10) with the hidden layer
stored densely (``flax.nnx.Linear``), as a TT-matrix over modes ``4 x 4 x 4 x 4 x 4`` (``tnkit.nn.TTLinear``) at
several TT-ranks, and as a rank-``k`` product (``tnkit.nn.LowRankLinear``) at matching parameter counts. See
``experiments/tensorizing_nn/README.md``.
"""

from __future__ import annotations

import dataclasses

from experiments._core import Experiment, Size

DATASETS = ("digits", "mnist", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class Config:
    """The MNIST experiment of Novikov et al. 2015 (Section 6.1, Figure 1), scaled to a 2-core CPU.

    Network: 32 x 32 image -> hidden layer 1024 -> 1024 -> ReLU -> ``nnx.Linear(1024, 10)``. The hidden layer is
    dense, a TT-layer with modes ``(4, 4, 4, 4, 4)`` on both sides and uniform TT-rank ``r`` for each ``r`` in
    ``tt_ranks``, or a low-rank layer of rank ``k = ceil(P_TT(r) / 2048)``, the smallest with at least the
    TT-layer's parameter count ``P_TT(r)`` (one low-rank layer per distinct ``k``). Every model: softmax cross-entropy, Adam,
    the same epochs, minibatches and learning rate; ``seeds`` independent initialisations and data orders each.

    Data: ``"digits"`` (default) = scikit-learn's 1,797 8 x 8 digits (75/25 split) upsampled to 32 x 32 by bilinear
    interpolation (``jax.image.resize``); ``"mnist"`` / ``"fashion_mnist"`` = the 28 x 28 IDX files from
    ``--data-dir``, zero-padded to 32 x 32 as in the paper.

    Command: ``python -m experiments run tensorizing_nn [--quick]``; on digits about 4 min full, 50 s quick, 25 s
    smoke on 2 idle cores (measured CPU time: 242 s, 48 s, 25 s; wall time on a loaded machine is much longer).

    Attributes:
      dataset: ``"digits"``, ``"mnist"`` or ``"fashion_mnist"``.
      tt_ranks: uniform TT-ranks of the TT-layers, increasing.
      epochs: passes over the training set.
      batch_size: minibatch size (the last partial batch of each epoch is dropped).
      learning_rate: Adam's step size.
      seeds: independent runs per model (initialisation and data order); mean and spread are reported.
      train_limit: use at most this many training images (``None``: all).
      svd_baseline: also convert each trained dense hidden layer to TT-rank ``r`` by TT-SVD
        (``TTLinear.from_linear``, no fine-tuning) and report its test accuracy.
    """

    dataset: str = "digits"
    tt_ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    seeds: int = 3
    train_limit: int | None = None
    svd_baseline: bool = True

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {DATASETS}, got {self.dataset!r}")
        r = tuple(self.tt_ranks)
        if not r or any(int(k) < 1 for k in r) or list(r) != sorted(set(r)):
            raise ValueError(f"tt_ranks: expected increasing positive integers, got {self.tt_ranks}")
        for name in ("epochs", "batch_size", "seeds"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: expected a positive number, got {self.learning_rate}")
        if self.train_limit is not None and self.train_limit < self.batch_size:
            raise ValueError(f"train_limit: expected None or >= batch_size ({self.batch_size}), got {self.train_limit}")


EXPERIMENT = Experiment(
    name="tensorizing_nn",
    title="TT-layer vs dense and matrix-rank layers (1024 -> 1024 MLP)",
    paper=(
        "A. Novikov, D. Podoprikhin, A. Osokin, D. Vetrov, \"Tensorizing Neural Networks\", "
        "Advances in Neural Information Processing Systems 28 (NeurIPS), 2015"
    ),
    claim=(
        "A TT-layer (TT-matrix weight) compresses a 1024 x 1024 fully-connected layer by a large factor at a small "
        "loss of accuracy, and at an equal parameter count it is more accurate than a low-rank (matrix-rank) layer."
    ),
    configs={
        Size.FULL: Config(),
        Size.QUICK: Config(tt_ranks=(1, 4, 16), epochs=20, seeds=1, svd_baseline=False),
        Size.SMOKE: Config(tt_ranks=(4,), epochs=5, seeds=1, train_limit=768, svd_baseline=False),
    },
    run="experiments.tensorizing_nn.train:run",
    runtime={Size.FULL: "about 4 min", Size.QUICK: "about 50 s", Size.SMOKE: "about 25 s"},
)
