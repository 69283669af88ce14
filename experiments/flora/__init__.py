"""FLoRA (Si et al., 2024): a Tucker update of a conv kernel against LoRA on the kernel's matrix view.

A small CNN is pretrained on scikit-learn digits 0-4; its convolutions are then frozen and adapted to a new task
(digits 5-9, rotated by 90 degrees) with :class:`tnkit.nn.TuckerAdapter` (FLoRA: a core and one factor per kernel mode
``(kh, kw, in, out)``) at several core sizes and with :class:`tnkit.nn.LoRA` on the reshaped kernel ``(kh kw in, out)``
at several ranks; a new linear head is trained with every method. References: the linear probe (head only) and full
fine-tuning. The heavy code is in :mod:`experiments.flora.flora`.
"""

from __future__ import annotations

import dataclasses

from experiments._core import Experiment, Size


@dataclasses.dataclass(frozen=True)
class Config:
    """Adapting a frozen digits CNN with FLoRA (Tucker) adapters and LoRA, accuracy against trainable parameters.

    Reproduces the convolution setting of Si et al., "FLoRA: Low-Rank Core Space for N-dimension" (arXiv 2405.14739,
    2024), scaled to a 2-core CPU: the pretrained model is a three-layer CNN (channels ``channels``) trained on
    scikit-learn digits of classes ``pretrain_classes``; the new task is classes ``adapt_classes`` rotated by
    ``rotate`` quarter turns, learned from ``shots`` training images per class (all of them when ``None``). Every
    setting runs ``len(seeds)`` seeds x ``len(learning_rates)`` Adam learning rates (vmapped: one compile per
    setting); the learning rate is chosen per method by the mean validation accuracy, and the test accuracy reported
    is the mean over seeds at that rate.

    Command: ``python -m experiments run flora [--quick | --smoke]``; about 8 min full, 1.5 min quick, 35 s smoke on a
    2-core CPU.

    Attributes:
      channels: output channels of the three 3x3 convolutions.
      pretrain_classes, adapt_classes: digit classes of the pretraining and of the new task.
      rotate: quarter turns (``np.rot90``) applied to the new task's images.
      shots: training images per class of the new task (``None``: all).
      val_fraction: share of the new task's training images held out to choose the learning rate.
      pretrain_steps, adapt_steps: Adam steps (mini-batches of ``batch_size``, drawn with replacement).
      pretrain_lr: learning rate of pretraining.
      learning_rates: the grid each adaptation method is run at.
      seeds: number of seeds (adapter initialisation, head initialisation, batch order).
      tucker_ranks: FLoRA core sizes (an int ``r`` means ``min(r, n_k)`` per kernel mode).
      lora_ranks: LoRA ranks of the matrix views.
      batch_size: mini-batch size.
      full_finetune: whether to run the full fine-tuning reference (off at the smoke size, to save a compile).
    """

    channels: tuple[int, int, int] = (8, 16, 16)
    pretrain_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    adapt_classes: tuple[int, ...] = (5, 6, 7, 8, 9)
    rotate: int = 1
    shots: int | None = None
    val_fraction: float = 0.2
    pretrain_steps: int = 600
    adapt_steps: int = 400
    pretrain_lr: float = 3e-3
    learning_rates: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    seeds: int = 2
    tucker_ranks: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    lora_ranks: tuple[int, ...] = (1, 2, 4, 8)
    batch_size: int = 64
    full_finetune: bool = True

    def __post_init__(self):
        if len(self.channels) != 3 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels: expected three positive integers, got {self.channels}")
        if set(self.pretrain_classes) & set(self.adapt_classes) and self.rotate % 4 == 0:
            raise ValueError("adapt_classes: the new task equals the pretraining task (same classes, no rotation)")
        for name in ("pretrain_classes", "adapt_classes"):
            classes = getattr(self, name)
            if len(classes) < 2 or any(not 0 <= c <= 9 for c in classes) or len(set(classes)) != len(classes):
                raise ValueError(f"{name}: expected at least two distinct digits in 0..9, got {classes}")
        if self.shots is not None and self.shots < 2:
            raise ValueError(f"shots: expected None or >= 2, got {self.shots}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a number in (0, 1), got {self.val_fraction}")
        if min(self.pretrain_steps, self.adapt_steps, self.seeds, self.batch_size) < 1:
            raise ValueError("pretrain_steps, adapt_steps, seeds and batch_size must be positive")
        if not self.learning_rates or any(lr <= 0 for lr in self.learning_rates):
            raise ValueError(f"learning_rates: expected positive numbers, got {self.learning_rates}")
        for name in ("tucker_ranks", "lora_ranks"):
            ranks = getattr(self, name)
            if not ranks or any(r < 1 for r in ranks):
                raise ValueError(f"{name}: expected positive integers, got {ranks}")


EXPERIMENT = Experiment(
    name="flora",
    title="FLoRA: Tucker adapters of conv kernels against LoRA",
    paper=(
        'C. Si, X. Wang, X. Yang, Z. Xu, Q. Li, J. Dai, Y. Qiao, X. Yang, W. Shen, "FLoRA: Low-Rank Core Space for '
        'N-dimension", arXiv:2405.14739, 2024'
    ),
    claim=(
        "For conv kernels (kh, kw, in, out), a Tucker update that keeps the kernel's modes (FLoRA) adapts a frozen "
        "pretrained model better per trainable parameter than LoRA on the kernel reshaped into a matrix."
    ),
    configs={
        Size.FULL: Config(),
        Size.QUICK: Config(
            pretrain_steps=400, adapt_steps=200, learning_rates=(1e-2, 3e-2), seeds=1, tucker_ranks=(1, 2, 4),
            lora_ranks=(1, 2),
        ),
        Size.SMOKE: Config(
            pretrain_steps=300, adapt_steps=150, learning_rates=(1e-2,), seeds=1, tucker_ranks=(2,), lora_ranks=(1,),
            full_finetune=False,
        ),
    },
    run="experiments.flora.flora:run",
    runtime={Size.FULL: "about 6 min", Size.QUICK: "about 1.5 min", Size.SMOKE: "about 35 s"},
)
