"""Shampoo vs Adam on a CNN, and 4-bit Shampoo vs 32-bit Shampoo (with SOAP alongside).

Reproduces, at CPU scale, Gupta, Koren & Singer 2018 (Shampoo converges faster per step than Adam) and Wang et al.
2024 (4-bit Shampoo matches 32-bit Shampoo with a fraction of the preconditioner memory). The heavy code is in
:mod:`experiments.shampoo.train`.
"""

from __future__ import annotations

import dataclasses

from experiments._core import Experiment, Size

DATASETS = ("digits", "mnist", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class Config:
    """A small CNN trained by Adam, Shampoo (32-bit), 4-bit Shampoo and SOAP, each over a learning-rate grid.

    Reproduces the CNN comparisons of Gupta et al. 2018 (Shampoo vs Adam, per step) and Wang et al. 2024 (4-bit vs
    32-bit Shampoo: accuracy and preconditioner memory), scaled to scikit-learn's 8x8 digits on a 2-core CPU.

    Command: ``python -m experiments run shampoo [--quick | --smoke] [--data-dir DIR]``; about 4 min full (186 s of CPU
    time; 11 min wall on the loaded shared machine), 1 min quick, 30-45 s smoke.

    Attributes:
      dataset: ``"digits"`` (scikit-learn's, the default), ``"mnist"`` or ``"fashion_mnist"`` (IDX files under
        ``--data-dir``; never downloaded).
      train_size: use only the first this many training images; ``None``: all.
      channels: output channels of the two 3x3 convolutions.
      batch_size: images per step.
      steps: training steps per run (a multiple of ``eval_every``).
      eval_every: steps between evaluations of the whole-training-set loss and the test accuracy.
      lr_grid: learning rates tried for every optimizer (the best, by median final training loss, is reported).
      seeds: model-initialisation and batch-order seeds (folded with ``--seed``).
      precondition_every: steps between refreshes of the Shampoo/4-bit statistics and roots and of SOAP's basis.
      beta2: decay of the Shampoo statistics (Shampoo, 4-bit Shampoo, SOAP's ``shampoo_beta2``).
      loss_target: the training loss whose first crossing is reported as "steps to target".
      optimizers: which of ``adam``, ``shampoo``, ``shampoo_4bit``, ``soap`` to run.
    """

    dataset: str = "digits"
    train_size: int | None = None
    channels: tuple[int, int] = (16, 32)
    batch_size: int = 64
    steps: int = 300
    eval_every: int = 20
    lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    seeds: tuple[int, ...] = (0, 1, 2)
    precondition_every: int = 5
    beta2: float = 0.99
    loss_target: float = 0.1
    optimizers: tuple[str, ...] = ("adam", "shampoo", "shampoo_4bit", "soap")

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(
                f"dataset: expected one of {DATASETS}, got {self.dataset!r}"
            )
        if self.steps < 1 or self.eval_every < 1 or self.steps % self.eval_every:
            raise ValueError(
                f"steps: expected a positive multiple of eval_every={self.eval_every}, got {self.steps}"
            )
        if not self.lr_grid or any(lr <= 0 for lr in self.lr_grid):
            raise ValueError(f"lr_grid: expected positive rates, got {self.lr_grid}")
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed")
        bad = [
            o
            for o in self.optimizers
            if o not in ("adam", "shampoo", "shampoo_4bit", "soap")
        ]
        if bad or not self.optimizers:
            raise ValueError(
                f"optimizers: expected a subset of adam, shampoo, shampoo_4bit, soap, got {self.optimizers}"
            )


EXPERIMENT = Experiment(
    name="shampoo",
    title="Shampoo and 4-bit Shampoo vs Adam on a CNN",
    paper=(
        'V. Gupta, T. Koren, Y. Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization", ICML 2018; '
        'S. Wang, P. Zhou, J. Li, H. Huang, "4-bit Shampoo for Memory-Efficient Network Training", NeurIPS 2024 '
        '(with N. Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam", 2024, alongside)'
    ),
    claim=(
        "Shampoo reaches a lower training loss than Adam per step on a CNN; 4-bit Shampoo matches 32-bit Shampoo's "
        "convergence while storing its preconditioner in a fraction (about 1/7) of the memory."
    ),
    configs={
        Size.FULL: Config(),
        Size.QUICK: Config(steps=300, lr_grid=(1e-3, 3e-3), seeds=(0,), eval_every=30),
        Size.SMOKE: Config(
            train_size=512,
            channels=(8, 16),
            steps=60,
            eval_every=30,
            lr_grid=(3e-3,),
            seeds=(0,),
            batch_size=32,
        ),
    },
    run="experiments.shampoo.train:run",
    runtime={
        Size.FULL: "about 4 min",
        Size.QUICK: "about 1 min",
        Size.SMOKE: "about 30 s",
    },
)
