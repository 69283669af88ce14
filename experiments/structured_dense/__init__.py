"""Structured hidden layers against dense ones at matched compute (Qiu et al., ICML 2024), on scikit-learn digits.

An MLP ``64 -> d -> d -> d -> 10`` (ReLU) whose ``depth`` hidden ``d x d`` layers are dense (``nnx.Linear``) or
structured (block tensor-train, Monarch, Kronecker, PHM Kronecker sum, tensor train, low rank) is trained with Adam
(cosine schedule) for a fixed number of steps at several widths; the final loss is plotted against the forward FLOPs
per example.
"""

from __future__ import annotations

import dataclasses

from experiments._core import Experiment, Size

#: The structures compared (the names of ``experiments.structured_dense.mlp.STRUCTURES``).
ALL_STRUCTURES = ("dense", "btt", "monarch", "kron", "phm", "tt", "low_rank")


@dataclasses.dataclass(frozen=True)
class Config:
    """Qiu et al. (2024), "Compute Better Spent", the CIFAR-10 MLP scaling study, scaled down to 8x8 digits on a CPU.

    Each structure is trained at every width of its list (the input and output layers stay dense, the ``depth``
    hidden ``d x d`` layers get the structure) with Adam, its learning rate decayed to zero on a cosine schedule, at
    every peak rate of ``learning_rates`` (all rates of one model train together under ``jax.vmap``, from the same
    initialisation, on the same batches); the rate with the lowest final training loss is kept per structure and
    width.

    Command: ``python -m experiments run structured_dense [--quick]``; on 2 idle CPU cores about 5 minutes full
    (4.4 min of CPU time; 17 min measured on a shared, loaded machine), about 1 minute quick, about 25 s smoke.

    Attributes:
      structures: names from :data:`ALL_STRUCTURES`; ``"dense"`` must be one of them.
      dense_widths: widths of the dense MLP.
      structured_widths: widths of the structured MLPs (the factorisations need them to split into two or three
        factors: use powers of 2).
      depth: number of hidden ``d x d`` layers.
      steps: Adam steps (one minibatch each).
      batch_size: minibatch size.
      learning_rates: the grid of Adam peak learning rates searched per structure and width.
      common_learning_rate: the rate at which the "one learning rate for all" comparison is read (in the grid).
      shift: maximum random translation (pixels) of the training images (data augmentation, so that the larger
        models do not simply memorise the 1,347 training images).
      dataset: ``"digits"`` (scikit-learn, shipped) or ``"mnist"``/``"fashion_mnist"`` (local IDX files).
      btt_rank, tt_rank, phm_terms, low_rank_divisor: the structures' hyperparameters (low rank: ``d // divisor``).
      fast_compile: compile the training loop with XLA's backend optimisations off (half the compile time, slower
        steps: only worth it for the tiny smoke models).
    """

    structures: tuple[str, ...] = ALL_STRUCTURES
    dense_widths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    structured_widths: tuple[int, ...] = (64, 128, 256, 512)
    depth: int = 2
    steps: int = 400
    batch_size: int = 64
    learning_rates: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    common_learning_rate: float = 1e-2
    shift: int = 1
    dataset: str = "digits"
    btt_rank: int = 4
    tt_rank: int = 4
    phm_terms: int = 4
    low_rank_divisor: int = 16
    fast_compile: bool = False

    def __post_init__(self):
        unknown = [s for s in self.structures if s not in ALL_STRUCTURES]
        if unknown or "dense" not in self.structures:
            raise ValueError(f"structures: expected names from {ALL_STRUCTURES} including 'dense', got {self.structures}")
        if self.common_learning_rate not in self.learning_rates:
            raise ValueError(
                f"common_learning_rate: expected one of learning_rates {self.learning_rates}, got "
                f"{self.common_learning_rate}"
            )
        if self.dataset not in ("digits", "mnist", "fashion_mnist"):
            raise ValueError(f"dataset: expected 'digits', 'mnist' or 'fashion_mnist', got {self.dataset!r}")
        for name in ("depth", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")


EXPERIMENT = Experiment(
    name="structured_dense",
    title="Structured hidden layers vs dense at matched FLOPs",
    paper=(
        "S. Qiu, A. Potapczynski, M. Finzi, M. Goldblum, A. G. Wilson, \"Compute Better Spent: Replacing Dense "
        "Layers with Structured Matrices\", ICML 2024"
    ),
    claim=(
        "At matched compute (forward FLOPs), MLPs with block-tensor-train or Monarch hidden layers reach a lower loss "
        "than dense MLPs, while low-rank layers do worse."
    ),
    configs={
        Size.FULL: Config(),
        Size.QUICK: Config(
            structures=("dense", "btt", "monarch", "low_rank"),
            dense_widths=(16, 64, 256),
            structured_widths=(64, 256),
            steps=300,
            learning_rates=(1e-2, 3e-2),
        ),
        Size.SMOKE: Config(
            structures=("dense", "btt", "low_rank"),
            dense_widths=(32,),
            structured_widths=(64,),
            depth=1,
            steps=150,
            batch_size=64,
            learning_rates=(1e-2,),
            common_learning_rate=1e-2,
            fast_compile=True,
        ),
    },
    run="experiments.structured_dense.mlp:run",
    runtime={Size.FULL: "about 5 min", Size.QUICK: "about 1 min", Size.SMOKE: "about 25 s"},
)
