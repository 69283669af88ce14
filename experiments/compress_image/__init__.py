"""Compress a real image with tensor trains: tnkit's TT-SVD against TensorLy's, error against compression.

Not a paper reproduction: the sanity check that starts ``run all``. Both libraries run the same algorithm (TT-SVD
with a rank cap, Oseledets 2011), so their errors must agree to rounding; the timings compare a jitted JAX
implementation with TensorLy on NumPy.
"""

from __future__ import annotations

import dataclasses

from experiments._core import Experiment, Size


@dataclasses.dataclass(frozen=True)
class Config:
    """TT-SVD of scikit-learn's ``china.jpg`` (crop reshaped to ``(2, 16, 16, 16, 16, 3)``) at several rank caps.

    Command: ``python -m experiments run compress_image [--quick]``; about 1 minute full, 30 s quick on 2 cores.

    Attributes:
      ranks: the maximum TT ranks, increasing.
      repeats: timed calls per rank and library (median reported) after one warm-up call.
    """

    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    repeats: int = 5

    def __post_init__(self):
        if not self.ranks or any(r < 1 for r in self.ranks) or list(self.ranks) != sorted(set(self.ranks)):
            raise ValueError(f"ranks: expected increasing positive integers, got {self.ranks}")
        if self.repeats < 1:
            raise ValueError(f"repeats: expected >= 1, got {self.repeats}")


EXPERIMENT = Experiment(
    name="compress_image",
    title="TT compression of a photo, tnkit against TensorLy",
    paper="I. V. Oseledets, \"Tensor-Train Decomposition\", SIAM J. Sci. Comput. 33(5), 2011 (the TT-SVD algorithm)",
    claim="tnkit's TT-SVD reaches exactly TensorLy's error at every rank cap, and is faster.",
    configs={
        Size.FULL: Config(),
        Size.QUICK: Config(ranks=(1, 2, 4, 8, 16, 32, 64), repeats=3),
        Size.SMOKE: Config(ranks=(1, 4, 16), repeats=1),
    },
    run="experiments.compress_image.image:run",
    runtime={Size.FULL: "about 1 min", Size.QUICK: "about 30 s", Size.SMOKE: "about 10 s"},
    x64=True,
)
