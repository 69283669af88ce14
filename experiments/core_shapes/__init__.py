"""Core shapes under a parameter budget: knapsack (RTS-style) rank search against greedy rank search.

Reproduces Ghadiri, Fahrbach, Fu and Mirrokni, "Approximately Optimal Core Shapes for Tensor Decompositions"
(ICML 2023) with ``tnkit.tucker.ranks_for_budget``. The heavy code is in :mod:`experiments.core_shapes.search`.
"""

from __future__ import annotations

import dataclasses

from experiments._core import Experiment, Size

TENSORS = ("china", "china_blocks", "flower_patches", "lowrank_noise", "graded", "smooth")


@dataclasses.dataclass(frozen=True)
class Config:
    """Tucker core shapes chosen under budgets of 1% to 30% of the dense size, on photos and synthetic tensors.

    Setting (Ghadiri et al., ICML 2023, Section 6, scaled to a 2-core CPU and to data that ships with packages): for
    every tensor and every budget, choose multilinear ranks with ``tnkit.tucker.ranks_for_budget`` by the knapsack
    (``RankSearch.KNAPSACK``, the paper's RTS) and by the greedy baseline (``RankSearch.GREEDY``), and compare the
    relative reconstruction error of HOSVD and ST-HOSVD at those ranks; also against the paper's expensive baseline
    (greedy on the true HOSVD loss) and the brute-force best ranks for the HOSVD loss.

    Command: ``python -m experiments run core_shapes [--quick|--smoke]``; about 8 min full, 40 s quick, 15 s smoke
    on 2 cores.

    Attributes:
      tensors: which tensors to use (see :data:`TENSORS` and ``search.make_tensor``).
      downsample: every side length is divided by this integer (photos: subsampled by striding, blocks shrink with
        them; synthetic tensors: fewer grid points); 1 = full size.
      budgets: budgets as fractions of the dense size, increasing.
      resolution: the knapsack's cost rounding (``ranks_for_budget(..., resolution=)``).
      sthosvd: also run ``tnkit.tucker.sthosvd`` at each chosen shape (one compile per distinct shape).
      repeats: timed calls of each rank search (the median is reported).
    """

    tensors: tuple[str, ...] = TENSORS
    downsample: int = 1
    budgets: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
    resolution: float = 0.01
    sthosvd: bool = True
    repeats: int = 3

    def __post_init__(self):
        bad = [t for t in self.tensors if t not in TENSORS]
        if not self.tensors or bad:
            raise ValueError(f"tensors: expected a non-empty subset of {TENSORS}, got {self.tensors}")
        if self.downsample not in (1, 2, 4):
            raise ValueError(f"downsample: expected 1, 2 or 4, got {self.downsample}")
        if not self.budgets or list(self.budgets) != sorted(set(self.budgets)) or not 0 < self.budgets[0]:
            raise ValueError(f"budgets: expected increasing fractions in (0, 1], got {self.budgets}")
        if self.budgets[-1] > 1:
            raise ValueError(f"budgets: expected increasing fractions in (0, 1], got {self.budgets}")
        if not 0 < self.resolution <= 1:
            raise ValueError(f"resolution: expected a number in (0, 1], got {self.resolution}")
        if self.repeats < 1:
            raise ValueError(f"repeats: expected >= 1, got {self.repeats}")


EXPERIMENT = Experiment(
    name="core_shapes",
    title="Approximately optimal Tucker core shapes: knapsack against greedy rank search",
    paper=(
        'M. Ghadiri, M. Fahrbach, G. Fu, V. Mirrokni, "Approximately Optimal Core Shapes for Tensor Decompositions", '
        "ICML 2023 (PMLR 202)"
    ),
    claim=(
        "Choosing Tucker multilinear ranks under a parameter budget by a knapsack over the higher-order singular "
        "values (RTS) gives a reconstruction error no worse than greedy rank search at the same budget, in time "
        "comparable to the cheap greedy and far below a greedy on the true loss."
    ),
    configs={
        Size.FULL: Config(),
        Size.QUICK: Config(
            tensors=("china", "flower_patches", "lowrank_noise", "smooth"),
            downsample=2,
            budgets=(0.01, 0.03, 0.1, 0.3),
            repeats=1,
        ),
        Size.SMOKE: Config(
            tensors=("china", "lowrank_noise"),
            downsample=4,
            budgets=(0.03, 0.1, 0.3),
            resolution=0.05,
            sthosvd=False,
            repeats=1,
        ),
    },
    run="experiments.core_shapes.search:run",
    runtime={Size.FULL: "about 5 min", Size.QUICK: "about 60 s", Size.SMOKE: "about 15 s"},
    x64=True,
)
