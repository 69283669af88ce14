"""TT-matrix (MPO) weights: the layer of "Tensorizing Neural Networks" (Novikov et al., 2015)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax.numpy as jnp

from tnkit import ttm as _ttm
from tnkit.formats import TTMatrix
from tnkit.layers import _base

__all__ = ["TTLinearSpec", "tt_ranks"]


def tt_ranks(ranks, num_modes: int, name: str = "ranks") -> tuple[int, ...]:
    """Full TT ranks ``(1, r_1, ..., r_{d-1}, 1)`` from an int, the ``d - 1`` inner ranks, or all ``d + 1``.

    Example:
      >>> from tnkit.layers import tt_ranks
      >>> tt_ranks(4, 3), tt_ranks((2, 3), 3), tt_ranks((1, 2, 3, 1), 3)
      ((1, 4, 4, 1), (1, 2, 3, 1), (1, 2, 3, 1))
    """
    d = num_modes
    if isinstance(ranks, bool):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {ranks!r}")
    if isinstance(ranks, int):
        r = _base.check_positive_int(ranks, name)
        return (1,) + (r,) * (d - 1) + (1,)
    try:
        ranks = tuple(int(r) for r in ranks)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {ranks!r}") from None
    if len(ranks) == d - 1:
        ranks = (1,) + ranks + (1,)
    if len(ranks) != d + 1:
        raise ValueError(f"{name} must have {d - 1} inner ranks or {d + 1} ranks for {d} modes, got {ranks}")
    if ranks[0] != 1 or ranks[-1] != 1:
        raise ValueError(f"{name} must start and end with 1 (boundary TT ranks), got {ranks}")
    if any(r < 1 for r in ranks):
        raise ValueError(f"{name} must be positive, got {ranks}")
    return ranks


@dataclasses.dataclass(frozen=True)
class TTLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel stored as a TT-matrix with cores ``(r_{k-1}, m_k, n_k, r_k)``.

    ``m = out_modes`` and ``n = in_modes`` (the TT-matrix represents ``W^T``, so ``y = x @ W`` is
    :func:`tnkit.ttm.apply`). Parameters are ``core_0 ... core_{d-1}``.

    Args:
      in_features: ``prod(in_modes)``.
      out_features: ``prod(out_modes)``.
      ranks: an int (every inner rank), the ``d - 1`` inner ranks, or all ``d + 1`` ranks.
      in_modes, out_modes: the factorisations of the features, of equal length ``d``; chosen by
        :func:`tnkit.layers.factorize_features` with :func:`tnkit.layers.default_num_modes` when ``None``
        (if one is given, the other gets the same number of modes).

    Initialisation (``kernel_init=None``): every core entry is ``N(0, s^2)`` with
    ``s^2 = (1 / (in_features * r_1 * ... * r_{d-1}))^(1/d)``. An entry of ``W`` is a sum of
    ``r_1 ... r_{d-1}`` products of ``d`` independent core entries, so ``Var W_ij = s^{2d} r_1 ... r_{d-1}
    = 1 / in_features``: the variance of ``nnx.Linear``'s default (LeCun normal). Distinct entries are uncorrelated
    (each product contains a core entry the other lacks, with mean zero), so for a fixed input ``x``,
    ``Var y_j = ||x||^2 / in_features`` exactly as for the dense layer.

    Example:
      >>> import jax
      >>> from tnkit import layers
      >>> spec = layers.TTLinearSpec(4096, 4096, ranks=8)
      >>> spec.in_modes, spec.ranks
      ((8, 8, 8, 8), (1, 8, 8, 8, 1))
      >>> spec.count_params(), 4096 * 4096
      (9216, 16777216)
    """

    in_features: int
    out_features: int
    ranks: tuple[int, ...] | int = 1
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None

    def __post_init__(self):
        n_in = _base.check_positive_int(self.in_features, "in_features")
        n_out = _base.check_positive_int(self.out_features, "out_features")
        given = [m for m in (self.in_modes, self.out_modes) if m is not None]
        d = len(tuple(given[0])) if given else _base.default_num_modes(n_in, n_out)
        in_modes = _base.resolve_modes(n_in, self.in_modes, d, "in_modes", "in_features")
        out_modes = _base.resolve_modes(n_out, self.out_modes, d, "out_modes", "out_features")
        if len(in_modes) != len(out_modes):
            raise ValueError(
                f"in_modes and out_modes must have the same length, got in_modes={in_modes} and out_modes={out_modes}"
            )
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("in_features", n_in)
        set_("out_features", n_out)
        set_("in_modes", in_modes)
        set_("out_modes", out_modes)
        set_("ranks", tt_ranks(self.ranks, len(in_modes)))

    @property
    def num_modes(self) -> int:
        return len(self.in_modes)

    def param_shapes(self):
        r = self.ranks
        return {
            f"core_{k}": (r[k], self.out_modes[k], self.in_modes[k], r[k + 1]) for k in range(self.num_modes)
        }

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        d = self.num_modes
        std = (1.0 / (self.in_features * math.prod(self.ranks[1:-1]))) ** (0.5 / d)
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_ttmatrix(self, params) -> TTMatrix:
        """The weight as a :class:`tnkit.TTMatrix` of shape ``(out_features, in_features)`` (``W^T``)."""
        return TTMatrix([params[f"core_{k}"] for k in range(self.num_modes)])

    def to_dense(self, params):
        return _ttm.to_dense(self.to_ttmatrix(params)).T

    def _costs(self, batch):
        return _ttm.mode_costs(self.out_modes, self.in_modes, self.ranks, batch)

    def _sweep_costs(self, batch):
        costs = self._costs(batch)
        return costs[_ttm.ApplyOrder.LEFT_TO_RIGHT], costs[_ttm.ApplyOrder.RIGHT_TO_LEFT]

    def factorized_cost(self, batch):
        return min(self._sweep_costs(batch))

    def rebuild_cost(self):
        return self._costs(0)[_ttm.ApplyOrder.DENSE]

    def apply_factorized(self, params, x, precision=None):
        ltr, rtl = self._sweep_costs(x.shape[0])
        order = _ttm.ApplyOrder.LEFT_TO_RIGHT if ltr <= rtl else _ttm.ApplyOrder.RIGHT_TO_LEFT
        return _ttm.apply(self.to_ttmatrix(params), x, order=order, precision=precision)

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        max_rank: int | None = None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
    ) -> tuple[TTLinearSpec, _base.Params, _base.ConversionInfo]:
        """TT-SVD of a dense ``(in_features, out_features)`` kernel.

        ``max_rank`` caps every TT rank; ``rtol`` bounds ``||W - W_tt||_F <= rtol ||W||_F`` (eager: ranks come from
        the data). At least one of them must be given.

        Returns:
          ``(spec, params, info)`` with the achieved error in ``info``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (16, 9))
          >>> spec, params, info = layers.TTLinearSpec.from_dense(kernel, rtol=1e-6, in_modes=(4, 4), out_modes=(3, 3))
          >>> spec.ranks, info.relative_error < 1e-5
          ((1, 12, 1), True)
        """
        kernel = jnp.asarray(kernel)
        if kernel.ndim != 2:
            raise ValueError(f"kernel must be a 2-D (in_features, out_features) array, got shape {kernel.shape}")
        if max_rank is None and rtol is None:
            raise ValueError("from_dense needs max_rank or rtol (or both), got neither")
        shape_spec = cls(kernel.shape[0], kernel.shape[1], ranks=1, in_modes=in_modes, out_modes=out_modes)
        a = _ttm.from_dense(
            kernel.T, row_dims=shape_spec.out_modes, col_dims=shape_spec.in_modes, max_rank=max_rank, rtol=rtol
        )
        spec = cls(kernel.shape[0], kernel.shape[1], ranks=a.ranks, in_modes=a.col_dims, out_modes=a.row_dims)
        params = {f"core_{k}": c for k, c in enumerate(a.cores)}
        info = _base.ConversionInfo(
            _base.relative_error(kernel, spec.to_dense(params)), spec.count_params(), kernel.size
        )
        return spec, params, info
