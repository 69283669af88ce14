"""TT-matrix (MPO) weights: the layer of "Tensorizing Neural Networks" (Novikov et al., 2015)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from tnkit import ttm as _ttm
from tnkit.formats import TTMatrix
from tnkit.layers import _base

__all__ = ["TTLinearSpec", "tt_ranks"]

# Calibration of AUTO's time model (TTLinearSpec.estimated_costs), in multiply-add equivalents. Measured on the
# development machine (AMD EPYC, XLA CPU single-threaded: --xla_cpu_multi_thread_eigen=false
# intra_op_parallelism_threads=1, float32, median process CPU time of jit(value_and_grad) calls; TTLinear 4096 -> 4096
# with modes (8, 8, 8, 8), the cells of benchmarks/bench_tt_linear.py; 2 cores shared with other jobs, so single
# timings carry ~20% noise): a large matmul runs at ~23 G multiply-adds/s, and
# * a core sweep costs its multiply-adds plus ~45 per number its steps read and write (fitted at batch 256 for
#   ranks 2, 8 and 32 within 5%; the steps are small, memory-bound contractions with transposes between them);
# * the two-block contraction (see TTLinearSpec._plans) costs its multiply-adds plus ~40 per number it reads and
#   writes (input, twice the (rows, n_L, r, m_R) intermediate, output): fitted on forward + backward at ranks 4, 8,
#   16, 32 and batch 256 (measured FACTORIZED / DENSE time 0.22, 0.42, 0.88, 1.71; the model, with the row chunking
#   below, gives 0.21, 0.39, 0.73, 1.33) and checked at batch 4096 (rank 8: 0.47 measured, 0.56 model; rank 16: 1.13
#   measured, 1.09 model). Rank 2 at batch 256 runs ~2x faster than the model (0.06 vs 0.12) and batches 1-16 ~1.5x
#   slower (fixed overheads); DENSE is >6x slower in those cells, so the FACTORIZED / DENSE choice is unaffected.
#   With 75 (not 80, which fits ranks 8-16 slightly better) the two blocks also win over the sweep at rank 2, as
#   measured (batch 256: 37 ms blocks vs 88 ms sweep). Re-fitted to 40 when the blocks started taking the left
#   block first on a tie (2026-11-24, benchmarks/bench_tt_linear.py, default threading): FACTORIZED / DENSE measured
#   0.13, 0.26, 0.45, 0.92 at ranks 4, 8, 16, 32 and batch 256 (model with 40: 0.15, 0.28, 0.54, 0.99; with 75:
#   0.21, 0.39, 0.73, 1.33), and 0.38, 0.74 at ranks 8, 16 and batch 4096 (40: 0.41, 0.80; 75: 0.56, 1.09, which
#   chose DENSE at rank 16, 1.35x slower). No plan changes between 75 and 40 in that sweep;
# * rebuilding the kernel costs ~150 per kernel entry in the forward pass (transposes of the 8-d interleaved
#   tensor), and the dense path's forward + backward ~275 per entry over its matmuls (kernel and gradient traffic);
#   divided by the ~3.3x a training step costs over a forward pass, that is ~85; 120 splits the difference.
# With multiply-adds alone AUTO was 1.6x-3.4x off at (rank 16, batch 256) and (rank 32, batch 16) for the sweep.
# Row chunking (memory): when the largest intermediate of a factorised contraction would exceed
# max(batch * out_features / _CHUNK_DIV, _CHUNK_MIN_NUMBERS) numbers, the rows are processed in chunks under
# lax.map + jax.checkpoint (the backward recomputes each chunk), so activation memory stays near the output's. The
# chunk size barely changes the time (rank 8: batch 256 in 1, 2, 8, 32 chunks 249, 248, 200, 242 ms; batch 4096 in
# 8, 32, 128 chunks 3.47, 3.12, 3.59 s, all within noise), so chunks are small: 1/16 of the output, at least 4 MB.
_SWEEP_TRAFFIC_COST = 45
_BLOCK_TRAFFIC_COST = 40
_DENSE_FIXED_COST = 120
_CHUNK_MIN_NUMBERS = 1 << 20
_CHUNK_DIV = 16
_HIGHEST = lax.Precision.HIGHEST


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

    def rebuild_cost(self):
        return self._costs(0)[_ttm.ApplyOrder.DENSE]

    def _merge_costs(self, k):
        """Multiply-adds of merging cores ``0..k-1`` into the left block and ``k..d-1`` into the right block."""
        m, n, r, d = self.out_modes, self.in_modes, self.ranks, self.num_modes
        left = sum(math.prod(m[:j]) * math.prod(n[:j]) * r[j] * m[j] * n[j] * r[j + 1] for j in range(1, k))
        right = sum(
            r[j] * m[j] * n[j] * r[j + 1] * math.prod(m[j + 1 :]) * math.prod(n[j + 1 :]) for j in range(k, d - 1)
        )
        return left + right

    def _plans(self, rows):
        """Every factorised contraction of ``rows`` input rows as ``(plan, multiply-adds, numbers read + written)``.

        Plans: ``("sweep", order)`` (the core sweep of :func:`tnkit.ttm.apply`) and ``("blocks", k, first)``
        (cores ``0..k-1`` merged into ``L (mL, nL, r_k)``, cores ``k..d-1`` into ``R (r_k, mR, nR)``, then two
        matmuls, ``first`` = ``"right"`` through ``(rows, nL, r_k, mR)`` or ``"left"`` through
        ``(rows, mL, r_k, nR)``)."""
        m, n, r, d = self.out_modes, self.in_modes, self.ranks, self.num_modes
        costs = self._costs(rows)
        t_ltr = [rows * math.prod(m[:k]) * r[k] * math.prod(n[k:]) for k in range(d + 1)]
        t_rtl = [rows * math.prod(n[:k]) * r[k] * math.prod(m[k:]) for k in range(d + 1)]
        ltr, rtl = _ttm.ApplyOrder.LEFT_TO_RIGHT, _ttm.ApplyOrder.RIGHT_TO_LEFT
        plans = [
            (("sweep", ltr), costs[ltr], sum(t_ltr[:-1]) + sum(t_ltr[1:])),
            (("sweep", rtl), costs[rtl], sum(t_rtl[:-1]) + sum(t_rtl[1:])),
        ]
        n_in, n_out = self.in_features, self.out_features
        for k in range(1, d):
            ml, nl, mr, nr = math.prod(m[:k]), math.prod(n[:k]), math.prod(m[k:]), math.prod(n[k:])
            merge = self._merge_costs(k)
            # "left" first on a tie (min keeps the first): with equal multiply-adds it ran faster, forward +
            # backward of the 4096 -> 4096 layer (modes 8^4, rank 8, batch 256, 8 chunks): 70.6 vs 80.8 ms and
            # 81.9 vs 89.9 ms in two interleaved runs; 19-25% in a sweep of intermediate layouts and chunk counts.
            for first, mid in (("left", ml * nr), ("right", nl * mr)):
                inter = rows * r[k] * mid
                plans.append((("blocks", k, first), merge + inter * (nr if first == "right" else nl)
                              + inter * (ml if first == "right" else mr), rows * n_in + 2 * inter + rows * n_out))
        return plans

    def _intermediate(self, plan, rows):
        """Numbers in the largest intermediate of ``plan`` on ``rows`` rows."""
        m, n, r, d = self.out_modes, self.in_modes, self.ranks, self.num_modes
        if plan[0] == "sweep":
            if plan[1] is _ttm.ApplyOrder.LEFT_TO_RIGHT:
                return max((rows * math.prod(m[:k]) * r[k] * math.prod(n[k:]) for k in range(1, d)), default=0)
            return max((rows * math.prod(n[:k]) * r[k] * math.prod(m[k:]) for k in range(1, d)), default=0)
        _, k, first = plan
        mid = math.prod(n[:k]) * math.prod(m[k:]) if first == "right" else math.prod(m[:k]) * math.prod(n[k:])
        return rows * r[k] * mid

    @functools.lru_cache(maxsize=256)  # noqa: B019  (specs are frozen and hashable)
    def _plan(self, batch):
        """``(plan, chunks, rows, multiply-adds, estimated cost)`` of :meth:`apply_factorized` on ``batch`` rows:
        the plan of :meth:`_plans` with the smallest time model, run on ``chunks`` chunks of ``rows`` rows (the input
        zero-padded to ``chunks * rows``) when its intermediate would exceed ``max(batch * out_features //
        _CHUNK_DIV, _CHUNK_MIN_NUMBERS)`` numbers. Cached: it runs at every trace and every cost query."""
        if self.num_modes == 1:
            plans = self._plans(batch)[:1]
        else:
            plans = self._plans(batch)
        (plan, macs, traffic) = min(
            plans, key=lambda p: p[1] + (_SWEEP_TRAFFIC_COST if p[0][0] == "sweep" else _BLOCK_TRAFFIC_COST) * p[2]
        )
        limit = max(batch * self.out_features // _CHUNK_DIV, _CHUNK_MIN_NUMBERS)
        chunks = min(batch, -(-self._intermediate(plan, batch) // limit)) if batch else 1
        chunks = max(chunks, 1)
        rows = -(-batch // chunks) if batch else 0
        if chunks > 1:
            (_, macs, traffic), = [p for p in self._plans(rows) if p[0] == plan]
            merge = self._merge_costs(plan[1]) if plan[0] == "blocks" else 0
            # the blocks are merged once, outside the chunk loop
            macs = chunks * (macs - merge) + merge
            traffic = chunks * traffic
        coef = _SWEEP_TRAFFIC_COST if plan[0] == "sweep" else _BLOCK_TRAFFIC_COST
        return plan, chunks, rows, macs, macs + coef * traffic

    def factorized_cost(self, batch):
        return self._plan(batch)[3]

    def estimated_costs(self, input_shape):
        """The time model of ``AUTO`` in multiply-add equivalents (:meth:`costs` keeps the exact multiply-adds).

        ``FACTORIZED``: the multiply-adds of the contraction :meth:`apply_factorized` runs plus a cost per number
        its steps read and write (``_SWEEP_TRAFFIC_COST`` for the core sweep's small memory-bound contractions,
        ``_BLOCK_TRAFFIC_COST`` for the two-block matmuls). ``DENSE``: the rebuild's multiply-adds, ``batch * in *
        out`` for the matmul, plus ``_DENSE_FIXED_COST * in * out`` (the rebuild's transposes and the traffic of the
        kernel and, in training, of its gradient)."""
        batch = math.prod(tuple(input_shape)[:-1])
        size = self.in_features * self.out_features
        dense = self.rebuild_cost() + batch * size + _DENSE_FIXED_COST * size
        return {_base.Implementation.FACTORIZED: self._plan(batch)[4], _base.Implementation.DENSE: dense}

    def _blocks(self, params, k):
        """``L (prod m[:k], prod n[:k], r_k)`` and ``R (r_k, prod m[k:], prod n[k:])``: the merged cores."""
        cores = [params[f"core_{j}"] for j in range(self.num_modes)]
        left = cores[0][0]
        for core in cores[1:k]:
            left = jnp.einsum("MNr,rmns->MmNns", left, core, precision=_HIGHEST)
            a, b, c, e, s = left.shape
            left = left.reshape(a * b, c * e, s)
        right = cores[-1][..., 0]
        for core in reversed(cores[k:-1]):
            right = jnp.einsum("rmns,sMN->rmMnN", core, right, precision=_HIGHEST)
            r, a, b, c, e = right.shape
            right = right.reshape(r, a * b, c * e)
        return left, right

    def apply_factorized(self, params, x, precision=None):
        """``x @ W`` without forming ``W``: the contraction of :meth:`_plan` (core sweep or two merged blocks),
        over row chunks under ``jax.checkpoint`` (the backward pass recomputes each chunk) for large batches."""
        return self.apply_factorized_with_bias(params, x, None, precision)

    def apply_factorized_with_bias(self, params, x, bias, precision=None):
        """:meth:`apply_factorized` plus ``bias`` (or none when ``None``), added inside each row chunk so that the
        output is the only output-sized buffer."""
        batch = x.shape[0]
        plan, chunks, rows, _, _ = self._plan(batch)
        dtype = jnp.result_type(x.dtype, *(params[f"core_{j}"].dtype for j in range(self.num_modes)))
        x = x.astype(dtype)
        params = {key: v.astype(dtype) for key, v in params.items()}
        if plan[0] == "sweep":
            a = self.to_ttmatrix(params)

            def contract(xc):
                return _ttm.apply(a, xc, order=plan[1], precision=precision)
        else:
            _, k, first = plan
            left, right = self._blocks(params, k)
            nl, nr = left.shape[1], right.shape[2]

            def contract(xc):
                xc = xc.reshape(xc.shape[0], nl, nr)
                if first == "right":
                    t = jnp.einsum("bpq,rmq->bprm", xc, right, precision=precision)
                    y = jnp.einsum("bprm,Mpr->bMm", t, left, precision=precision)
                else:
                    t = jnp.einsum("bpq,Mpr->bMrq", xc, left, precision=precision)
                    y = jnp.einsum("bMrq,rmq->bMm", t, right, precision=precision)
                return y.reshape(xc.shape[0], -1)

        def contract_with_bias(xc):
            return _base.add_bias(contract(xc), bias)

        if chunks == 1:
            return contract_with_bias(x)
        pad = chunks * rows - batch
        xs = (jnp.pad(x, ((0, pad), (0, 0))) if pad else x).reshape(chunks, rows, self.in_features)
        y = lax.map(jax.checkpoint(contract_with_bias), xs).reshape(chunks * rows, self.out_features)
        return y[:batch] if pad else y

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
        if rtol is None:  # ranks follow from the shapes: one compiled TT-SVD instead of many eager ops
            a = _ttm_svd(kernel.T, shape_spec.out_modes, shape_spec.in_modes, max_rank)
        else:
            a = _ttm.from_dense(
                kernel.T, row_dims=shape_spec.out_modes, col_dims=shape_spec.in_modes, max_rank=max_rank, rtol=rtol
            )
        spec = cls(kernel.shape[0], kernel.shape[1], ranks=a.ranks, in_modes=a.col_dims, out_modes=a.row_dims)
        params = {f"core_{k}": c for k, c in enumerate(a.cores)}
        info = _base.conversion_info(spec, params, kernel)
        return spec, params, info


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _ttm_svd(w, row_dims, col_dims, max_rank):
    return _ttm.from_dense(w, row_dims=row_dims, col_dims=col_dims, max_rank=max_rank)
