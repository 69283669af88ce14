"""Structured linear weights: Kronecker sums (PHM), block tensor-trains (BTT), Monarch and tensor rings.

All four are ``(in_features, out_features)`` kernels used as ``y = x @ W`` (the ``nnx.Linear`` layout):

* :class:`KronLinearSpec`: ``W = sum_{t=1}^{n} A_t ⊗ B_t``, the parameterised hypercomplex (PHM) layer of Zhang et
  al., "Beyond Fully-Connected Layers with Quaternions" (ICLR 2021), about ``1/n`` of the dense parameters.
* :class:`BlockTTLinearSpec`: the two-core block tensor-train (BTT) of Qiu et al., "Compute Better Spent: Replacing
  Dense Layers with Structured Matrices" (ICML 2024); equivalently, a grid of ``m_1 x n_1`` blocks of rank ``r``.
* :class:`MonarchLinearSpec`: Dao et al., "Monarch: Expressive Structured Matrices for Efficient and Accurate
  Training" (ICML 2022), ``M = P L P^T R`` with block-diagonal ``L`` and ``R``; the rank-1 BTT up to an output
  permutation.
* :class:`TRLinearSpec`: a tensor-ring matrix (a TT-matrix whose first and last bonds are joined and traced).

Conversions from a dense kernel (``from_dense``) are optimal for BTT and Monarch (a truncated SVD per block:
the blocks share no parameters), optimal for the PHM weight (truncated SVD of the Van Loan–Pitsianis rearrangement),
and TR-SVD with its error bound for the tensor ring.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import _checks, _linalg
from tnkit import kron as _kron
from tnkit import tr as _tr
from tnkit import ttm as _ttm
from tnkit.formats import TR, TTMatrix
from tnkit.layers import _base
from tnkit.layers._tt import tt_ranks

__all__ = ["KronLinearSpec", "BlockTTLinearSpec", "MonarchLinearSpec", "TRLinearSpec"]

_HIGHEST = lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------------------- helpers


def _check_kernel(kernel) -> jax.Array:
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be a 2-D (in_features, out_features) array, got shape {kernel.shape}")
    if not (jnp.issubdtype(kernel.dtype, jnp.floating) or jnp.issubdtype(kernel.dtype, jnp.complexfloating)):
        raise TypeError(f"kernel must have a floating or complex dtype, got {kernel.dtype}")
    return kernel


def _set(obj, **values) -> None:
    for k, v in values.items():
        object.__setattr__(obj, k, v)


# The conversions run their fixed-rank parts as jitted functions: one compiled program per shape instead of dozens of
# eagerly compiled operations (several times faster for a one-off conversion).


@functools.partial(jax.jit, static_argnames=("rank", "method"))
def _block_svd(blocks, rank: int, method: _linalg.SVDMethod):
    """Left singular vectors and values of every block: ``blocks`` ``(N, p, q)`` -> ``u (N, p, k)``, ``s (N, k)``."""
    return jax.vmap(lambda a: _linalg.left_svd(a, rank, method))(blocks)


@functools.partial(jax.jit, static_argnames=("rank",))
def _split_blocks(u, blocks, rank: int):
    """Best rank-``rank`` factors of each block from its left singular vectors ``u``, norms balanced.

    ``blocks`` ``(N, p, q)``, ``u`` ``(N, p, k)``; returns ``left (N, p, rank)`` and ``right (N, rank, q)`` with
    ``left @ right`` the truncated SVD of each block and ``||left[:, :, t]|| = ||right[:, t, :]|| = sqrt(s_t)``.
    """
    u = u[..., :rank]
    w = jnp.matmul(jnp.conj(jnp.swapaxes(u, -1, -2)), blocks, precision=_HIGHEST)  # (N, rank, q) = s_t v_t^H
    s = jnp.linalg.norm(w, axis=-1)  # (N, rank), the singular values (differentiable)
    c = jnp.sqrt(jnp.maximum(s, jnp.finfo(s.dtype).tiny))
    return u * c[:, None, :].astype(u.dtype), w / c[:, :, None].astype(w.dtype)


def _block_low_rank(blocks, *, max_rank: int | None, rtol: float | None, norm: float | None = None):
    """Truncated SVD of every block ``(N, p, q)`` at one common rank: ``max_rank`` (static) and/or the smallest rank
    whose total discarded energy over all blocks is at most ``(rtol * norm)^2`` (eager). Returns
    ``(left, right, rank)``."""
    k = min(blocks.shape[-2:])
    rank = k if max_rank is None else min(int(max_rank), k)
    if rtol is None:
        u, _ = _block_svd(blocks, rank, _linalg.SVDMethod.AUTO)
        return (*_split_blocks(u, blocks, rank), rank)
    _checks.require_concrete(blocks, "from_dense")
    u, s = _block_svd(blocks, k, _linalg.SVDMethod.ACCURATE)
    lam = np.sum(_checks.concrete(s).astype(np.float64) ** 2, axis=0)  # (k,): energy of singular index t, all blocks
    tail = np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]])  # tail[r] = discarded energy at rank r
    needed = max(1, int(np.argmax(tail <= (float(rtol) * norm) ** 2)))
    rank = min(rank, needed)
    return (*_split_blocks(u, blocks, rank), rank)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _kron_sum_factors(kernel, row_dims, col_dims, num_terms):
    return _kron.from_dense_sum(kernel, row_dims, col_dims, num_terms=num_terms).factors


def _ring_of_kernel(kernel, out_modes, in_modes, ranks=None, max_rank=None, rtol=None) -> TR:
    """TR-SVD of ``W^T`` reshaped to ``(m_1 n_1, ..., m_d n_d)`` (modes interleaved, as in ``tnkit.ttm.from_dense``)."""
    d = len(out_modes)
    x = kernel.T.reshape(out_modes + in_modes).transpose([p for k in range(d) for p in (k, d + k)])
    x = x.reshape([a * b for a, b in zip(out_modes, in_modes)])
    return _tr.from_dense(x, ranks=ranks, max_rank=max_rank, rtol=rtol)


_ring_of_kernel_fixed_ranks = jax.jit(_ring_of_kernel, static_argnums=(1, 2, 3, 4))


# ------------------------------------------------------------------------------------------------------ PHM


@dataclasses.dataclass(frozen=True)
class KronLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel ``W = sum_{t=1}^{n} A_t ⊗ B_t``: the PHM layer (Zhang et al. 2021).

    ``n = num_terms``; ``A_t`` has shape ``(n, n)`` and ``B_t`` shape ``(in_features / n, out_features / n)``, so
    ``W[(a, p), (c, q)] = sum_t A_t[a, c] B_t[p, q]`` with row index ``a * (in_features / n) + p`` and column index
    ``c * (out_features / n) + q`` (``np.kron`` order). Parameters: ``a`` of shape ``(n, n, n)`` (the stacked
    ``A_t``) and ``b`` of shape ``(n, in_features / n, out_features / n)``: ``n^3 + in_features * out_features / n``
    scalars, about ``1/n`` of the dense kernel. The weight is a :class:`tnkit.kron.KronSum` (:meth:`to_kron`).

    Args:
      in_features, out_features: both divisible by ``num_terms``.
      num_terms: ``n``, the number of Kronecker products and the size of the ``A_t``.

    Forward pass (``FACTORIZED``): ``x`` is reshaped to ``(batch, n, in_features / n)`` and contracted with ``B``
    then ``A`` (``batch * n^2 * q * (p + n)`` multiply-adds for ``p = in_features / n``, ``q = out_features / n``)
    or ``A`` then ``B`` (``batch * n^2 * p * (n + q)``), whichever is cheaper. A PHM weight saves parameters, not
    arithmetic: the factorised product costs about as much as the dense one (``batch * n^2 * p * q``), so ``AUTO``
    rebuilds ``W`` (``n * in_features * out_features`` multiply-adds) once the batch exceeds ``max(p, q)`` rows.

    Initialisation (``kernel_init=None``): every entry of ``A`` and ``B`` is ``N(0, s^2)`` with
    ``s^4 = 1 / (n * in_features)``. An entry of ``W`` is a sum of ``n`` products of two independent entries, so
    ``Var W_ij = n s^4 = 1 / in_features``: ``nnx.Linear``'s default (LeCun normal). Distinct entries of ``W`` use
    distinct pairs ``(A_t[a, c], B_t[p, q])`` and are uncorrelated, so ``Var y_j = ||x||^2 / in_features`` for a
    fixed input, as for the dense layer.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.KronLinearSpec(64, 32, num_terms=4)
      >>> spec.param_shapes()
      {'a': (4, 4, 4), 'b': (4, 16, 8)}
      >>> spec.count_params(), 64 * 32 // 4 + 4**3
      (576, 576)
    """

    in_features: int
    out_features: int
    num_terms: int

    def __post_init__(self):
        n_in = _base.check_positive_int(self.in_features, "in_features")
        n_out = _base.check_positive_int(self.out_features, "out_features")
        n = _base.check_positive_int(self.num_terms, "num_terms")
        if n_in % n or n_out % n:
            raise ValueError(
                f"num_terms={n} must divide in_features and out_features (W = sum_t A_t ⊗ B_t with A_t of shape "
                f"({n}, {n})); got in_features={n_in} (remainder {n_in % n}) and out_features={n_out} "
                f"(remainder {n_out % n})"
            )
        _set(self, in_features=n_in, out_features=n_out, num_terms=n)

    @property
    def block_shape(self) -> tuple[int, int]:
        """``(in_features / n, out_features / n)``: the shape of each ``B_t``."""
        n = self.num_terms
        return self.in_features // n, self.out_features // n

    def param_shapes(self):
        n = self.num_terms
        return {"a": (n, n, n), "b": (n,) + self.block_shape}

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = (1.0 / (self.num_terms * self.in_features)) ** 0.25
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_kron(self, params) -> _kron.KronSum:
        """The weight ``sum_t a[t] ⊗ b[t]`` as a :class:`tnkit.kron.KronSum` (``(in_features, out_features)``)."""
        return _kron.KronSum([params["a"], params["b"]])

    def to_dense(self, params):
        # = kron.to_dense(self.to_kron(params)) (the tests check it), as one einsum: under jit it is several times
        # faster than the vmapped jnp.kron of tnkit.kron.to_dense.
        n, (p, q) = self.num_terms, self.block_shape
        w = jnp.einsum("tac,tpq->apcq", params["a"], params["b"], precision=_HIGHEST)
        return w.reshape(n * p, n * q)

    def _order_costs(self, batch: int) -> tuple[int, int]:
        n, (p, q) = self.num_terms, self.block_shape
        return batch * n * n * q * (p + n), batch * n * n * p * (n + q)

    def factorized_cost(self, batch):
        return min(self._order_costs(batch))

    def rebuild_cost(self):
        return self.num_terms * self.in_features * self.out_features

    def apply_factorized(self, params, x, precision=None):
        n, (p, q) = self.num_terms, self.block_shape
        a, b = params["a"], params["b"]
        xb = x.reshape(x.shape[0], n, p)
        b_first, a_first = self._order_costs(x.shape[0])
        if b_first <= a_first:
            z = jnp.einsum("xap,tpq->xtaq", xb, b, precision=precision)
            y = jnp.einsum("xtaq,tac->xcq", z, a, precision=precision)
        else:
            z = jnp.einsum("xap,tac->xtcp", xb, a, precision=precision)
            y = jnp.einsum("xtcp,tpq->xcq", z, b, precision=precision)
        return y.reshape(x.shape[0], n * q)

    @classmethod
    def from_dense(cls, kernel, *, num_terms: int) -> tuple[KronLinearSpec, _base.Params, _base.ConversionInfo]:
        """The nearest PHM weight to a dense kernel: :func:`tnkit.kron.from_dense_sum` with ``num_terms`` terms.

        Optimal in the Frobenius norm (Van Loan–Pitsianis): with ``s_1 >= s_2 >= ...`` the singular values of the
        rearranged ``(n^2, in_features * out_features / n^2)`` matrix, the error is ``sqrt(sum_{t > n} s_t^2)``.
        Eager, like every ``from_dense``: ``info`` holds the achieved error as a Python float.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (8, 12))
          >>> spec, params, info = layers.KronLinearSpec.from_dense(kernel, num_terms=2)
          >>> spec.param_shapes(), 0 < info.relative_error < 1
          ({'a': (2, 2, 2), 'b': (2, 4, 6)}, True)
        """
        kernel = _check_kernel(kernel)
        spec = cls(kernel.shape[0], kernel.shape[1], num_terms=num_terms)
        n, (p, q) = spec.num_terms, spec.block_shape
        if n > p * q:
            raise ValueError(
                f"num_terms={n} must be at most (in_features / num_terms) * (out_features / num_terms) = {p * q}, "
                f"the largest rank of the rearranged ({n * n}, {p * q}) matrix"
            )
        a, b = _kron_sum_factors(kernel, (n, p), (n, q), n)
        params = {"a": a, "b": b}
        return spec, params, _base.conversion_info(spec, params, kernel)


# ----------------------------------------------------------------------------------------------------- BTT


def _two_modes(features: int, modes, name: str, features_name: str) -> tuple[int, int]:
    modes = _base.resolve_modes(features, modes, 2, name, features_name)
    if len(modes) != 2:
        raise ValueError(f"{name} must have 2 modes (one per BTT core) multiplying to {features_name}, got {modes}")
    return modes


@dataclasses.dataclass(frozen=True)
class BlockTTLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel in the two-core block tensor-train (BTT) form of Qiu et al. (2024).

    With ``in_modes = (m_1, m_2)``, ``out_modes = (n_1, n_2)`` and rank ``r``, the input index is ``(i_1, i_2)``
    and the output index ``(j_1, j_2)`` (row-major, ``i = i_1 m_2 + i_2``, ``j = j_1 n_2 + j_2``), and::

        W[(i_1, i_2), (j_1, j_2)] = sum_{s < r} core_0[i_1, i_2, j_1, s] * core_1[j_1, i_1, s, j_2]

    with ``core_0`` of shape ``(m_1, m_2, n_1, r)`` and ``core_1`` of shape ``(n_1, m_1, r, n_2)``. It is a TT-matrix
    with two cores in which each core also depends on the other core's block index (``i_1`` or ``j_1``). As
    matrices acting on column vectors: for each input block ``i_1`` a ``(n_1 r, m_2)`` matrix
    ``core_0[i_1]`` maps the ``m_2`` inputs of that block (a block-diagonal factor), the result is regrouped by
    ``j_1`` (a permutation), and for each ``j_1`` an ``(n_2, m_1 r)`` matrix ``core_1[j_1]`` gives the ``n_2``
    outputs of that block (another block-diagonal factor). This is the kernel of the authors' ``btt_mvm`` with
    ``ms = (m_2, m_1)``, ``ns = (n_1, n_2)``, ``rs = (1, r, 1)``. Qiu et al. define BTT with any number of cores;
    this spec implements the two-core case, the one of their fast ``btt_mvm`` kernel.

    Equivalently, ``W`` is an ``m_1 x n_1`` grid of ``(m_2, n_2)`` blocks and the block ``(i_1, j_1)`` is
    ``core_0[i_1, :, j_1, :] @ core_1[j_1, i_1]``, of rank at most ``r``; every parameter belongs to exactly one
    block, so the BTT matrices of rank ``r`` are exactly the matrices whose blocks all have rank ``<= r``. Rank 1
    is Monarch up to a fixed output permutation (see :class:`MonarchLinearSpec`); rank ``min(m_2, n_2)`` is any
    dense matrix.

    Args:
      in_features: ``m_1 m_2``.
      out_features: ``n_1 n_2``.
      ranks: the BTT rank ``r`` as an int, ``(r,)`` or ``(1, r, 1)`` (stored as ``(1, r, 1)``, as for TT).
      in_modes, out_modes: ``(m_1, m_2)`` and ``(n_1, n_2)``; chosen by :func:`tnkit.layers.factorize_features`
        when ``None``.

    Costs: ``r m_1 n_1 (m_2 + n_2) = r (in_features n_1 + out_features m_1)`` parameters, and as many
    multiply-adds per input row for the factorised product (two batched matrix products, one per core);
    rebuilding ``W`` costs ``r * in_features * out_features``.

    Initialisation (``kernel_init=None``): every core entry is ``N(0, s^2)`` with ``s^4 = 1 / (r * in_features)``.
    An entry of ``W`` is a sum of ``r`` products of two independent entries, so ``Var W_ij = r s^4 =
    1 / in_features``, ``nnx.Linear``'s default (LeCun normal); distinct entries share no product, hence are
    uncorrelated, and ``Var y_j = ||x||^2 / in_features`` for a fixed input as for the dense layer. (Qiu et al.
    scale their cores by μP arguments instead; this choice matches the dense layer it replaces.)

    Example:
      >>> from tnkit import layers
      >>> spec = layers.BlockTTLinearSpec(64, 64, ranks=2)
      >>> spec.in_modes, spec.out_modes, spec.rank
      ((8, 8), (8, 8), 2)
      >>> spec.param_shapes()
      {'core_0': (8, 8, 8, 2), 'core_1': (8, 8, 2, 8)}
      >>> spec.count_params(), 2 * 8 * 8 * (8 + 8)
      (2048, 2048)
    """

    in_features: int
    out_features: int
    ranks: tuple[int, ...] | int = 1
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None

    def __post_init__(self):
        n_in = _base.check_positive_int(self.in_features, "in_features")
        n_out = _base.check_positive_int(self.out_features, "out_features")
        _set(
            self,
            in_features=n_in,
            out_features=n_out,
            in_modes=_two_modes(n_in, self.in_modes, "in_modes", "in_features"),
            out_modes=_two_modes(n_out, self.out_modes, "out_modes", "out_features"),
            ranks=tt_ranks(self.ranks, 2),
        )

    @property
    def rank(self) -> int:
        """The BTT rank ``r`` (``ranks[1]``)."""
        return self.ranks[1]

    def param_shapes(self):
        (m1, m2), (n1, n2), r = self.in_modes, self.out_modes, self.rank
        return {"core_0": (m1, m2, n1, r), "core_1": (n1, m1, r, n2)}

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = (1.0 / (self.rank * self.in_features)) ** 0.25
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_dense(self, params):
        w = jnp.einsum("abjs,jask->abjk", params["core_0"], params["core_1"], precision=_HIGHEST)
        return w.reshape(self.in_features, self.out_features)

    def factorized_cost(self, batch):
        (m1, m2), (n1, n2) = self.in_modes, self.out_modes
        return batch * self.rank * m1 * n1 * (m2 + n2)

    def rebuild_cost(self):
        return self.rank * self.in_features * self.out_features

    def apply_factorized(self, params, x, precision=None):
        (m1, m2), n = self.in_modes, self.out_features
        z = jnp.einsum("xab,abjs->xajs", x.reshape(x.shape[0], m1, m2), params["core_0"], precision=precision)
        y = jnp.einsum("xajs,jask->xjk", z, params["core_1"], precision=precision)
        return y.reshape(x.shape[0], n)

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        max_rank: int | None = None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
    ) -> tuple[BlockTTLinearSpec, _base.Params, _base.ConversionInfo]:
        """The nearest BTT kernel of a given rank: a truncated SVD of every ``(m_2, n_2)`` block (optimal).

        The blocks share no parameters, so the best BTT approximation of rank ``r`` truncates each block's SVD to
        ``r`` terms (Eckart–Young per block): ``||W - W_btt||_F^2 = sum_blocks sum_{t > r} s_t^2``, the least
        possible. ``max_rank`` fixes ``r`` (capped at ``min(m_2, n_2)``); ``rtol`` picks the smallest ``r`` with
        ``||W - W_btt||_F <= rtol ||W||_F`` (the rank comes from the data: not under ``jax.jit``). At least one of
        them must be given.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (16, 12))
          >>> spec, params, info = layers.BlockTTLinearSpec.from_dense(
          ...     kernel, rtol=1e-6, in_modes=(4, 4), out_modes=(4, 3))
          >>> spec.rank, info.relative_error < 1e-5
          (3, True)
        """
        kernel = _check_kernel(kernel)
        if max_rank is None and rtol is None:
            raise ValueError("from_dense needs max_rank or rtol (or both), got neither")
        _checks.validate_rank_request(max_rank, rtol)
        shape_spec = cls(kernel.shape[0], kernel.shape[1], ranks=1, in_modes=in_modes, out_modes=out_modes)
        (m1, m2), (n1, n2) = shape_spec.in_modes, shape_spec.out_modes
        blocks = kernel.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2, n2)
        norm = None
        if rtol is not None:
            _checks.require_concrete(kernel, "from_dense")
            norm = float(_checks.concrete(jnp.linalg.norm(kernel)))
        left, right, rank = _block_low_rank(blocks, max_rank=max_rank, rtol=rtol, norm=norm)
        spec = cls(kernel.shape[0], kernel.shape[1], ranks=rank, in_modes=(m1, m2), out_modes=(n1, n2))
        params = {
            "core_0": left.reshape(m1, n1, m2, rank).transpose(0, 2, 1, 3),
            "core_1": right.reshape(m1, n1, rank, n2).transpose(1, 0, 2, 3),
        }
        return spec, params, _base.conversion_info(spec, params, kernel)


# ------------------------------------------------------------------------------------------------- Monarch


def _default_num_blocks(n_in: int, n_out: int) -> int:
    common = [b for b in range(1, math.gcd(n_in, n_out) + 1) if n_in % b == 0 and n_out % b == 0]
    return next((b for b in common if b * b >= min(n_in, n_out)), common[-1])


@dataclasses.dataclass(frozen=True)
class MonarchLinearSpec(_base.LinearSpec):
    """A Monarch kernel (Dao et al. 2022): ``M = P_out L P R`` with block-diagonal ``L`` and ``R``.

    With ``b = num_blocks``, ``p = in_features / b`` and ``q = out_features / b``, acting on column vectors
    (``y = M x``; the kernel is ``W = M^T``, ``y = x @ W``):

    * ``R = diag(R_0, ..., R_{b-1})``, ``R_k = r_blocks[k]`` of shape ``(b, p)``: input chunk ``k`` (entries
      ``k p ... k p + p - 1``) to ``b`` values; the intermediate index is ``(k, j)``, row-major.
    * ``P``: the perfect shuffle of the ``b x b`` intermediate, ``(P z)[(j, k)] = z[(k, j)]``.
    * ``L = diag(L_0, ..., L_{b-1})``, ``L_j = l_blocks[j]`` of shape ``(q, b)``: gives output values ``(j, t)``.
    * ``P_out``: the shuffle ``(P_out v)[(t, j)] = v[(j, t)]`` of the ``(b, q)`` result; the output index is
      ``t b + j``.

    Entry by entry, ``W[k p + i, t b + j] = r_blocks[k, j, i] * l_blocks[j, t, k]``. For ``in_features =
    out_features = b^2`` every block is ``b x b``, ``P_out = P = P^T`` and this is Dao et al.'s ``M = P L P^T R``
    exactly; in general it is the ``blockdiag_butterfly_multiply`` of their code with
    ``w1_bfly = r_blocks`` and ``w2_bfly = l_blocks``. Without ``P_out`` it is the rank-1
    :class:`BlockTTLinearSpec` with ``in_modes = (b, p)``, ``out_modes = (b, q)``, ``core_0[k, i, j, 0] =
    r_blocks[k, j, i]`` and ``core_1[j, k, 0, t] = l_blocks[j, t, k]``: the ``(p, q)`` blocks of ``W`` with
    columns ordered ``(j, t)`` are rank-one, and ``rank(W) <= b^2``.

    Args:
      in_features, out_features: both divisible by ``num_blocks``.
      num_blocks: ``b``, the number of diagonal blocks of ``L`` and of ``R``. ``None``: the smallest common divisor
        ``b`` of the features with ``b^2 >= min(in_features, out_features)`` (so that ``W`` can have full rank),
        or their greatest common divisor if there is none.

    Costs: ``b (in_features + out_features)`` parameters and as many multiply-adds per input row; rebuilding ``W``
    costs ``in_features * out_features``.

    Initialisation (``kernel_init=None``): every entry of both factors is ``N(0, s^2)`` with
    ``s^4 = 1 / in_features``. An entry of ``W`` is one product of two independent entries, so
    ``Var W_ij = s^4 = 1 / in_features`` (``nnx.Linear``'s LeCun default); two distinct entries differ in at least
    one factor, which is independent of everything else and has mean zero, so they are uncorrelated and
    ``Var y_j = ||x||^2 / in_features`` for a fixed input.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.MonarchLinearSpec(64, 64)
      >>> spec.num_blocks, spec.param_shapes()
      (8, {'r_blocks': (8, 8, 8), 'l_blocks': (8, 8, 8)})
      >>> spec.count_params(), 8 * (64 + 64)
      (1024, 1024)
    """

    in_features: int
    out_features: int
    num_blocks: int | None = None

    def __post_init__(self):
        n_in = _base.check_positive_int(self.in_features, "in_features")
        n_out = _base.check_positive_int(self.out_features, "out_features")
        if self.num_blocks is None:
            b = _default_num_blocks(n_in, n_out)
        else:
            b = _base.check_positive_int(self.num_blocks, "num_blocks")
        if n_in % b or n_out % b:
            raise ValueError(
                f"num_blocks={b} must divide in_features and out_features (L and R have {b} diagonal blocks); got "
                f"in_features={n_in} (remainder {n_in % b}) and out_features={n_out} (remainder {n_out % b})"
            )
        _set(self, in_features=n_in, out_features=n_out, num_blocks=b)

    def param_shapes(self):
        b = self.num_blocks
        return {"r_blocks": (b, b, self.in_features // b), "l_blocks": (b, self.out_features // b, b)}

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = (1.0 / self.in_features) ** 0.25
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_dense(self, params):
        w = jnp.einsum("kji,jtk->kitj", params["r_blocks"], params["l_blocks"], precision=_HIGHEST)
        return w.reshape(self.in_features, self.out_features)

    def factorized_cost(self, batch):
        return batch * self.num_blocks * (self.in_features + self.out_features)

    def rebuild_cost(self):
        return self.in_features * self.out_features

    def apply_factorized(self, params, x, precision=None):
        b = self.num_blocks
        xb = x.reshape(x.shape[0], b, self.in_features // b)
        z = jnp.einsum("xki,kji->xkj", xb, params["r_blocks"], precision=precision)  # R, then P (by the labels)
        y = jnp.einsum("xkj,jtk->xtj", z, params["l_blocks"], precision=precision)  # L, then P_out
        return y.reshape(x.shape[0], self.out_features)

    @classmethod
    def from_dense(
        cls, kernel, *, num_blocks: int | None = None
    ) -> tuple[MonarchLinearSpec, _base.Params, _base.ConversionInfo]:
        """The nearest Monarch kernel: the best rank-1 approximation of every ``(p, q)`` block (optimal).

        For fixed ``(k, j)`` the entries ``W[k p + i, t b + j] = r_blocks[k, j, i] l_blocks[j, t, k]`` form a
        rank-one ``(p, q)`` block, and distinct blocks share no parameters, so the leading singular pair of each
        block is the Frobenius-optimal projection (Dao et al.'s projection algorithm): ``||W - W_monarch||_F^2 =
        sum_blocks sum_{t > 1} s_t^2``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (16, 16))
          >>> spec, params, info = layers.MonarchLinearSpec.from_dense(kernel)
          >>> spec.num_blocks, 0 < info.relative_error < 1
          (4, True)
        """
        kernel = _check_kernel(kernel)
        spec = cls(kernel.shape[0], kernel.shape[1], num_blocks=num_blocks)
        b = spec.num_blocks
        p, q = spec.in_features // b, spec.out_features // b
        blocks = kernel.reshape(b, p, q, b).transpose(0, 3, 1, 2).reshape(b * b, p, q)  # block (k, j): [i, t]
        left, right, _ = _block_low_rank(blocks, max_rank=1, rtol=None)
        params = {
            "r_blocks": left.reshape(b, b, p),  # [k, j, i]
            "l_blocks": right.reshape(b, b, q).transpose(1, 2, 0),  # [k, j, t] -> [j, t, k]
        }
        return spec, params, _base.conversion_info(spec, params, kernel)


# ----------------------------------------------------------------------------------------------- tensor ring


@dataclasses.dataclass(frozen=True)
class TRLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel whose transpose is a tensor-ring matrix.

    Cores ``core_k`` of shape ``(r_{k-1}, m_k, n_k, r_k)`` with ``m = out_modes``, ``n = in_modes`` (as in
    :class:`tnkit.layers.TTLinearSpec`) and the ring closed, ``r_d = r_0``::

        W[(i_1..i_d), (j_1..j_d)] = trace(core_1[:, j_1, i_1, :] @ ... @ core_d[:, j_d, i_d, :])

    (row-major multi-indices). A TT-matrix is the case ``r_0 = 1``. Interleaving the modes, ``W^T`` is the
    :class:`tnkit.TR` of the tensor of shape ``(m_1 n_1, ..., m_d n_d)`` (:meth:`to_tensor_ring`).

    Args:
      in_features: ``prod(in_modes)``.
      out_features: ``prod(out_modes)``.
      ranks: an int (every bond, ``r_0`` included), the ``d`` ranks ``(r_0, ..., r_{d-1})``, or all ``d + 1`` with
        ``r_d = r_0``.
      in_modes, out_modes: the factorisations of the features, of equal length ``d``; chosen by
        :func:`tnkit.layers.factorize_features` with :func:`tnkit.layers.default_num_modes` when ``None``.

    Forward pass (``FACTORIZED``): cutting the ring at bond 0 writes ``W^T = sum_{a < r_0} A_a`` with ``A_a`` the
    TT-matrix of cores ``core_1[a:a+1], core_2, ..., core_d[..., a:a+1]``; each is applied by
    :func:`tnkit.ttm.apply` and the results summed (a loop unrolled over ``a``, which XLA runs about twice as fast as
    ``jax.vmap`` over ``a``). This costs ``r_0`` TT sweeps, so with unequal ranks put the smallest at ``r_0``.
    ``DENSE`` rebuilds ``W`` the same way, as ``sum_a`` :func:`tnkit.ttm.to_dense` ``(A_a)`` (an order of magnitude
    faster under ``jit`` than :func:`tnkit.tr.to_dense` of :meth:`to_tensor_ring`, which gives the same matrix).

    Initialisation (``kernel_init=None``): every core entry is ``N(0, s^2)`` with
    ``s^2 = (1 / (in_features * r_0 r_1 ... r_{d-1}))^(1/d)``. An entry of ``W`` is a sum over the
    ``r_0 ... r_{d-1}`` index loops of products of ``d`` independent entries (one per core), so ``Var W_ij = s^{2d}
    r_0 ... r_{d-1} = 1 / in_features``, ``nnx.Linear``'s LeCun default; distinct entries or loops share no
    complete product, so the terms are uncorrelated and ``Var y_j = ||x||^2 / in_features`` for a fixed input.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.TRLinearSpec(64, 32, ranks=3, in_modes=(4, 4, 4), out_modes=(2, 4, 4))
      >>> spec.ranks, spec.param_shapes()["core_0"]
      ((3, 3, 3, 3), (3, 2, 4, 3))
      >>> spec.count_params(), 9 * (2 * 4 + 4 * 4 + 4 * 4)
      (360, 360)
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
        ranks = self.ranks
        if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, bool):
            ranks = _base.check_positive_int(ranks, "ranks")
        _set(
            self,
            in_features=n_in,
            out_features=n_out,
            in_modes=in_modes,
            out_modes=out_modes,
            ranks=_tr._full_ranks(in_modes, ranks, "ranks"),
        )

    @property
    def num_modes(self) -> int:
        return len(self.in_modes)

    def param_shapes(self):
        r = self.ranks
        return {f"core_{k}": (r[k], self.out_modes[k], self.in_modes[k], r[k + 1]) for k in range(self.num_modes)}

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        d = self.num_modes
        std = (1.0 / (self.in_features * math.prod(self.ranks[:-1]))) ** (0.5 / d)
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_tensor_ring(self, params) -> TR:
        """``W^T`` as a :class:`tnkit.TR` of dims ``(m_1 n_1, ..., m_d n_d)`` (row index ``j_k``, column ``i_k``)."""
        cores = [params[f"core_{k}"] for k in range(self.num_modes)]
        return TR([c.reshape(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in cores])

    def _cut(self, params) -> list[TTMatrix]:
        """The ``r_0`` TT-matrices ``A_a`` (cores ``core_1[a:a+1], ..., core_d[..., a:a+1]``) that sum to ``W^T``."""
        cores = [params[f"core_{k}"] for k in range(self.num_modes)]
        if self.num_modes == 1:
            return [TTMatrix([cores[0][a : a + 1, ..., a : a + 1]]) for a in range(self.ranks[0])]
        return [
            TTMatrix([cores[0][a : a + 1], *cores[1:-1], cores[-1][..., a : a + 1]]) for a in range(self.ranks[0])
        ]

    def to_dense(self, params):
        return sum(_ttm.to_dense(a) for a in self._cut(params)).T

    def _costs(self, batch):
        r = self.ranks
        return _ttm.mode_costs(self.out_modes, self.in_modes, (1,) + r[1:-1] + (1,), batch)

    def _sweep_costs(self, batch) -> tuple[int, int]:
        """Multiply-adds of the left-to-right and right-to-left sweeps over the ``r_0`` cut TT-matrices."""
        costs = self._costs(batch)
        r0 = self.ranks[0]
        return r0 * costs[_ttm.ApplyOrder.LEFT_TO_RIGHT], r0 * costs[_ttm.ApplyOrder.RIGHT_TO_LEFT]

    def factorized_cost(self, batch):
        return min(self._sweep_costs(batch))

    def rebuild_cost(self):
        return self.ranks[0] * self._costs(0)[_ttm.ApplyOrder.DENSE]

    def apply_factorized(self, params, x, precision=None):
        ltr, rtl = self._sweep_costs(x.shape[0])
        order = _ttm.ApplyOrder.LEFT_TO_RIGHT if ltr <= rtl else _ttm.ApplyOrder.RIGHT_TO_LEFT
        return sum(_ttm.apply(a, x, order=order, precision=precision) for a in self._cut(params))

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        ranks=None,
        max_rank: int | None = None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
    ) -> tuple[TRLinearSpec, _base.Params, _base.ConversionInfo]:
        """TR-SVD (:func:`tnkit.tr.from_dense`) of the interleaved kernel, as :func:`tnkit.ttm.from_dense` does for TT.

        ``W^T`` is reshaped to ``(m_1, ..., m_d, n_1, ..., n_d)``, interleaved to ``(m_1 n_1, ..., m_d n_d)`` and
        factored with the rank request of :func:`tnkit.tr.from_dense`: ``ranks`` (bounds per bond; ``r_0 r_1`` is
        used exactly), ``max_rank`` (every bond), and/or ``rtol`` (eager, ``||W - W_tr||_F <= rtol ||W||_F``). At
        least one must be given. TR-SVD is quasi-optimal, not optimal: its error bound is the guarantee.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (16, 9))
          >>> spec, params, info = layers.TRLinearSpec.from_dense(kernel, rtol=1e-6, in_modes=(4, 4), out_modes=(3, 3))
          >>> info.relative_error < 1e-5
          True
        """
        kernel = _check_kernel(kernel)
        if ranks is None and max_rank is None and rtol is None:
            raise ValueError("from_dense needs ranks, max_rank or rtol, got none of them")
        shape_spec = cls(kernel.shape[0], kernel.shape[1], ranks=1, in_modes=in_modes, out_modes=out_modes)
        m, n = shape_spec.out_modes, shape_spec.in_modes
        if rtol is None:  # static ranks: one jitted program
            if ranks is not None and not isinstance(ranks, (int, np.integer)):
                ranks = tuple(ranks)
            t = _ring_of_kernel_fixed_ranks(kernel, m, n, ranks, max_rank)
        else:  # ranks from the data: eager
            t = _ring_of_kernel(kernel, m, n, ranks, max_rank, rtol)
        spec = cls(kernel.shape[0], kernel.shape[1], ranks=t.ranks, in_modes=n, out_modes=m)
        params = {f"core_{k}": c.reshape(c.shape[0], m[k], n[k], c.shape[2]) for k, c in enumerate(t.cores)}
        return spec, params, _base.conversion_info(spec, params, kernel)
