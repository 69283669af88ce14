"""The TT-matrix (MPO) algebra: pure functions on :class:`tnkit.TTMatrix`.

A TT-matrix with cores ``(r_{k-1}, m_k, n_k, r_k)`` represents a ``(prod(m), prod(n))`` matrix ``W`` with row index
the row-major flattening of ``(i_1, ..., i_d)`` and column index that of ``(j_1, ..., j_d)``. Algebra that does not
care about the row/column split (``round``, ``norm``, ``inner``, ``add``) works on the TT with merged modes
``m_k * n_k``; the tolerance rules of :mod:`tnkit.tt` (``rtol`` is eager, ``max_rank`` is jit-compatible) carry over.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import ttm
  >>> w = jax.random.normal(jax.random.key(0), (8, 12))
  >>> a = ttm.from_dense(w, row_dims=(2, 4), col_dims=(3, 4))
  >>> bool(jnp.allclose(ttm.to_dense(a), w, atol=1e-4))
  True
  >>> x = jnp.ones((5, 12))
  >>> bool(jnp.allclose(ttm.apply(a, x), x @ w.T, atol=1e-4))
  True
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from tnkit import _checks
from tnkit import tt as _tt
from tnkit._linalg import SVDMethod
from tnkit.formats import TT, TTMatrix

__all__ = [
    "from_dense",
    "to_dense",
    "apply",
    "apply_cost",
    "mode_costs",
    "ApplyOrder",
    "matvec",
    "matmul",
    "transpose",
    "adjoint",
    "identity",
    "kron",
    "round",
    "add",
    "sub",
    "scale",
    "inner",
    "norm",
    "random",
    "SVDMethod",
]

_HIGHEST = lax.Precision.HIGHEST


def _check_ttm(a, name: str = "a") -> TTMatrix:
    if not isinstance(a, TTMatrix):
        raise TypeError(f"{name} must be a tnkit.TTMatrix, got {type(a).__name__}")
    return a


def _as_tt(a: TTMatrix) -> TT:
    return TT([c.reshape(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in a.cores])


def _from_tt(t: TT, row_dims, col_dims) -> TTMatrix:
    return TTMatrix([c.reshape(c.shape[0], m, n, c.shape[2]) for c, m, n in zip(t.cores, row_dims, col_dims)])


def _check_mode_dims(row_dims, col_dims) -> tuple[tuple[int, ...], tuple[int, ...]]:
    row_dims = tuple(int(m) for m in row_dims)
    col_dims = tuple(int(n) for n in col_dims)
    if len(row_dims) != len(col_dims):
        raise ValueError(
            f"row_dims and col_dims must have the same length, got {len(row_dims)} ({row_dims}) and "
            f"{len(col_dims)} ({col_dims})"
        )
    if not row_dims or any(m < 1 for m in row_dims + col_dims):
        raise ValueError(f"row_dims and col_dims must be non-empty and positive, got {row_dims} and {col_dims}")
    return row_dims, col_dims


def from_dense(
    w,
    row_dims: Sequence[int],
    col_dims: Sequence[int],
    *,
    max_rank: int | None = None,
    rtol: float | None = None,
    method: SVDMethod = SVDMethod.AUTO,
) -> TTMatrix:
    """TT-matrix of a dense matrix by TT-SVD of its interleaved reshaping.

    Args:
      w: matrix of shape ``(prod(row_dims), prod(col_dims))``.
      row_dims: row mode sizes ``(m_1, ..., m_d)``.
      col_dims: column mode sizes ``(n_1, ..., n_d)``, same length.
      max_rank: largest bond dimension (jit-compatible).
      rtol: relative Frobenius error bound (eager), as in :func:`tnkit.tt.from_dense`.
      method: how each unfolding is factored, as in :func:`tnkit.tt.from_dense`.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.from_dense(jnp.eye(16), (4, 4), (4, 4), rtol=1e-6)
      >>> a.ranks
      (1, 1, 1)
    """
    row_dims, col_dims = _check_mode_dims(row_dims, col_dims)
    w = jnp.asarray(w)
    expected = (math.prod(row_dims), math.prod(col_dims))
    if w.shape != expected:
        raise ValueError(
            f"w must have shape {expected} = (prod(row_dims), prod(col_dims)) for row_dims={row_dims}, "
            f"col_dims={col_dims}; got {w.shape}"
        )
    d = len(row_dims)
    x = w.reshape(row_dims + col_dims)
    perm = [p for k in range(d) for p in (k, d + k)]
    x = x.transpose(perm).reshape([m * n for m, n in zip(row_dims, col_dims)])
    return _from_tt(_tt.from_dense(x, max_rank=max_rank, rtol=rtol, method=method), row_dims, col_dims)


def to_dense(a: TTMatrix) -> jax.Array:
    """The dense ``(prod(row_dims), prod(col_dims))`` matrix.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import ttm
      >>> ttm.to_dense(ttm.identity((2, 3))).shape
      (6, 6)
    """
    _check_ttm(a)
    d = a.ndim
    x = _tt.to_dense(_as_tt(a)).reshape([s for m, n in zip(a.row_dims, a.col_dims) for s in (m, n)])
    perm = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
    return x.transpose(perm).reshape(a.shape)


# ------------------------------------------------------------------------------------------------------ apply


class ApplyOrder(enum.Enum):
    """Contraction order of :func:`apply`.

    Attributes:
      AUTO: the cheapest of the three by the FLOP model of :func:`apply_cost`, chosen at trace time.
      LEFT_TO_RIGHT: contract the input with core 1 first.
      RIGHT_TO_LEFT: contract the input with core d first.
      DENSE: reconstruct the dense matrix and multiply (cheapest for large batches and small matrices).
    """

    AUTO = "auto"
    LEFT_TO_RIGHT = "left_to_right"
    RIGHT_TO_LEFT = "right_to_left"
    DENSE = "dense"


def apply_cost(a: TTMatrix, batch: int) -> dict[ApplyOrder, int]:
    """Multiply-accumulate counts of each :class:`ApplyOrder` for a batch of ``batch`` vectors.

    Example:
      >>> from tnkit import ttm
      >>> costs = ttm.apply_cost(ttm.identity((4, 4, 4)), batch=8)
      >>> min(costs, key=costs.get).name
      'LEFT_TO_RIGHT'
    """
    return mode_costs(a.row_dims, a.col_dims, a.ranks, batch)


def mode_costs(row_dims, col_dims, ranks, batch: int) -> dict[ApplyOrder, int]:
    """:func:`apply_cost` from the shapes alone (no cores needed), for cost models of layers.

    Example:
      >>> from tnkit import ttm
      >>> costs = ttm.mode_costs((2, 2), (3, 3), (1, 4, 1), batch=10)
      >>> costs[ttm.ApplyOrder.DENSE] == ttm.mode_costs((2, 2), (3, 3), (1, 4, 1), batch=0)[ttm.ApplyOrder.DENSE] + 10 * 36
      True
    """
    m, n, r = tuple(row_dims), tuple(col_dims), tuple(ranks)
    d = len(m)
    ltr = sum(batch * math.prod(m[:k]) * math.prod(n[k + 1 :]) * r[k] * n[k] * m[k] * r[k + 1] for k in range(d))
    rtl = sum(batch * math.prod(n[:k]) * math.prod(m[k + 1 :]) * r[k] * n[k] * m[k] * r[k + 1] for k in range(d))
    build = sum(math.prod(m[:k]) * math.prod(n[:k]) * r[k] * m[k] * n[k] * r[k + 1] for k in range(d))
    dense = build + batch * math.prod(m) * math.prod(n)
    return {ApplyOrder.LEFT_TO_RIGHT: ltr, ApplyOrder.RIGHT_TO_LEFT: rtl, ApplyOrder.DENSE: dense}


def _apply_left_to_right(a: TTMatrix, x, precision):
    b = x.shape[0]
    z = x.reshape(b, 1, 1, a.col_dims[0], -1)  # (batch, rows done, rank, n_k, cols left)
    for k, core in enumerate(a.cores):
        z = jnp.einsum("bMrnR,rmns->bMmsR", z, core, precision=precision)
        if k + 1 < a.ndim:
            bb, mm, mk, s, rest = z.shape
            z = z.reshape(bb, mm * mk, s, a.col_dims[k + 1], rest // a.col_dims[k + 1])
    return z.reshape(b, -1)


def _apply_right_to_left(a: TTMatrix, x, precision):
    b = x.shape[0]
    z = x.reshape(b, -1, a.col_dims[-1], 1, 1)  # (batch, cols left, n_k, rank, rows done)
    for k in range(a.ndim - 1, -1, -1):
        z = jnp.einsum("bRnsM,rmns->bRrmM", z, a.cores[k], precision=precision)
        if k > 0:
            bb, rest, r, mk, mm = z.shape
            z = z.reshape(bb, rest // a.col_dims[k - 1], a.col_dims[k - 1], r, mk * mm)
    return z.reshape(b, -1)


def apply(a: TTMatrix, x, *, order: ApplyOrder = ApplyOrder.AUTO, precision=None) -> jax.Array:
    """``y = W x`` for a dense batch: ``y[..., :] = to_dense(a) @ x[..., :]``, without forming ``W`` unless cheaper.

    This is the forward pass of a TT layer. With ``order=AUTO`` the contraction order is chosen at trace time from
    the static shapes by :func:`apply_cost` (sweeping the cores from either end, or reconstructing ``W`` when the
    batch is large enough to amortise it).

    Args:
      a: TT-matrix of shape ``(M, N) = (prod(row_dims), prod(col_dims))``.
      x: array of shape ``(..., N)``.
      order: an :class:`ApplyOrder`.
      precision: passed to the contractions (``jax.lax.Precision``).

    Returns:
      Array of shape ``(..., M)`` in the promoted dtype of ``a`` and ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (4, 4), (2, 8), 3)
      >>> x = jnp.ones((7, 3, 16))
      >>> y = ttm.apply(a, x)
      >>> y.shape
      (7, 3, 16)
      >>> bool(jnp.allclose(y, x @ ttm.to_dense(a).T, atol=1e-5))
      True
    """
    _check_ttm(a)
    if not isinstance(order, ApplyOrder):
        raise TypeError(f"order must be a tnkit.ttm.ApplyOrder, got {order!r}")
    x = jnp.asarray(x)
    m_total, n_total = a.shape
    if x.ndim < 1 or x.shape[-1] != n_total:
        raise ValueError(f"x must have shape (..., {n_total}) = (..., prod(col_dims)), got {x.shape}")
    dtype = jnp.result_type(a.dtype, x.dtype)
    batch_shape = x.shape[:-1]
    batch = math.prod(batch_shape)
    xb = x.reshape(batch, n_total).astype(dtype)
    a = a if a.dtype == dtype else jax.tree_util.tree_map(lambda c: c.astype(dtype), a)
    if order is ApplyOrder.AUTO:
        costs = apply_cost(a, batch)
        order = min(costs, key=costs.get)
    if order is ApplyOrder.DENSE:
        y = jnp.matmul(xb, to_dense(a).T, precision=precision)
    elif order is ApplyOrder.LEFT_TO_RIGHT:
        y = _apply_left_to_right(a, xb, precision)
    else:
        y = _apply_right_to_left(a, xb, precision)
    return y.reshape(batch_shape + (m_total,))


# -------------------------------------------------------------------------------------------- structured products


def matvec(a: TTMatrix, x: TT) -> TT:
    """``W x`` for a TT ``x``: a TT with dims ``a.row_dims`` and ranks ``a.ranks[k] * x.ranks[k]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt, ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (4, 5), 2)
      >>> x = tt.random(jax.random.key(1), (4, 5), 3)
      >>> y = ttm.matvec(a, x)
      >>> bool(jnp.allclose(tt.to_dense(y).ravel(), ttm.to_dense(a) @ tt.to_dense(x).ravel(), atol=1e-5))
      True
    """
    _check_ttm(a)
    if not isinstance(x, TT):
        raise TypeError(f"x must be a tnkit.TT, got {type(x).__name__}")
    if a.col_dims != x.dims:
        raise ValueError(f"x.dims must equal a.col_dims {a.col_dims}, got {x.dims}")
    dtype = jnp.result_type(a.dtype, x.dtype)
    cores = []
    for ca, cx in zip(a.cores, x.cores):
        ra, m, n, ra_next = ca.shape
        rx, _, rx_next = cx.shape
        c = jnp.einsum("aijb,cjd->acibd", ca.astype(dtype), cx.astype(dtype), precision=_HIGHEST)
        cores.append(c.reshape(ra * rx, m, ra_next * rx_next))
    return TT(cores)


def matmul(a: TTMatrix, b: TTMatrix) -> TTMatrix:
    """The product ``A B`` as a TT-matrix with ranks ``a.ranks[k] * b.ranks[k]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (4, 5), 2)
      >>> b = ttm.random(jax.random.key(1), (4, 5), (3, 2), 2)
      >>> c = ttm.matmul(a, b)
      >>> bool(jnp.allclose(ttm.to_dense(c), ttm.to_dense(a) @ ttm.to_dense(b), atol=1e-5))
      True
    """
    _check_ttm(a, "a")
    _check_ttm(b, "b")
    if a.col_dims != b.row_dims:
        raise ValueError(f"a.col_dims {a.col_dims} must equal b.row_dims {b.row_dims}")
    dtype = jnp.result_type(a.dtype, b.dtype)
    cores = []
    for ca, cb in zip(a.cores, b.cores):
        ra, m, _, ra_next = ca.shape
        rb, _, n, rb_next = cb.shape
        c = jnp.einsum("aijb,cjkd->acikbd", ca.astype(dtype), cb.astype(dtype), precision=_HIGHEST)
        cores.append(c.reshape(ra * rb, m, n, ra_next * rb_next))
    return TTMatrix(cores)


def transpose(a: TTMatrix) -> TTMatrix:
    """``W^T`` (no conjugation).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (4, 5), 2)
      >>> bool(jnp.allclose(ttm.to_dense(ttm.transpose(a)), ttm.to_dense(a).T))
      True
    """
    _check_ttm(a)
    return TTMatrix([jnp.swapaxes(c, 1, 2) for c in a.cores])


def adjoint(a: TTMatrix) -> TTMatrix:
    """``W^H``, the conjugate transpose.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (4, 5), 2, dtype=jnp.complex64)
      >>> bool(jnp.allclose(ttm.to_dense(ttm.adjoint(a)), ttm.to_dense(a).conj().T))
      True
    """
    _check_ttm(a)
    return TTMatrix([jnp.swapaxes(c, 1, 2).conj() for c in a.cores])


def identity(dims: Sequence[int], dtype=jnp.float32) -> TTMatrix:
    """The identity of size ``prod(dims)`` as a rank-1 TT-matrix with ``row_dims = col_dims = dims``.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import ttm
      >>> bool(jnp.array_equal(ttm.to_dense(ttm.identity((2, 3))), jnp.eye(6)))
      True
    """
    dims = _checks.check_dims(dims)
    return TTMatrix([jnp.eye(n, dtype=dtype)[None, :, :, None] for n in dims])


def kron(a: TTMatrix, b: TTMatrix) -> TTMatrix:
    """Kronecker product ``A ⊗ B`` (``to_dense`` equals ``jnp.kron``), with modes of ``a`` followed by ``b``'s.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2,), (3,), 1)
      >>> b = ttm.random(jax.random.key(1), (4, 2), (2, 2), 2)
      >>> bool(jnp.allclose(ttm.to_dense(ttm.kron(a, b)), jnp.kron(ttm.to_dense(a), ttm.to_dense(b)), atol=1e-6))
      True
    """
    _check_ttm(a, "a")
    _check_ttm(b, "b")
    dtype = jnp.result_type(a.dtype, b.dtype)
    return TTMatrix([c.astype(dtype) for c in a.cores + b.cores])


# ---------------------------------------------------------------------------------- algebra through the TT view


def round(  # noqa: A001
    a: TTMatrix, *, max_rank: int | None = None, rtol: float | None = None, method: SVDMethod = SVDMethod.AUTO
) -> TTMatrix:
    """TT-rounding of a TT-matrix (see :func:`tnkit.tt.round` for ``method``; ``rtol`` bounds the Frobenius error).

    Example:
      >>> import jax
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 2, 2), (2, 2, 2), 2)
      >>> ttm.round(ttm.add(a, a), rtol=1e-5).ranks
      (1, 2, 2, 1)
    """
    _check_ttm(a)
    return _from_tt(_tt.round(_as_tt(a), max_rank=max_rank, rtol=rtol, method=method), a.row_dims, a.col_dims)


def _check_same_shape(a: TTMatrix, b: TTMatrix):
    if a.row_dims != b.row_dims or a.col_dims != b.col_dims:
        raise ValueError(
            f"a and b must have the same row_dims and col_dims, got {a.row_dims}x{a.col_dims} and "
            f"{b.row_dims}x{b.col_dims}"
        )


def add(a: TTMatrix, b: TTMatrix) -> TTMatrix:
    """``A + B`` (ranks add).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (2, 2), 2)
      >>> bool(jnp.allclose(ttm.to_dense(ttm.add(a, a)), 2 * ttm.to_dense(a)))
      True
    """
    _check_ttm(a, "a")
    _check_ttm(b, "b")
    _check_same_shape(a, b)
    return _from_tt(_tt.add(_as_tt(a), _as_tt(b)), a.row_dims, a.col_dims)


def sub(a: TTMatrix, b: TTMatrix) -> TTMatrix:
    """``A - B`` (ranks add).

    Example:
      >>> import jax
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (2, 2), 2)
      >>> float(ttm.norm(ttm.sub(a, a))) < 1e-6
      True
    """
    _check_ttm(a, "a")
    _check_ttm(b, "b")
    _check_same_shape(a, b)
    return _from_tt(_tt.sub(_as_tt(a), _as_tt(b)), a.row_dims, a.col_dims)


def scale(a: TTMatrix, alpha) -> TTMatrix:
    """``alpha * A`` for a scalar ``alpha``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2,), (2,), 1)
      >>> bool(jnp.allclose(ttm.to_dense(ttm.scale(a, 2.0)), 2 * ttm.to_dense(a)))
      True
    """
    _check_ttm(a)
    return _from_tt(_tt.scale(_as_tt(a), alpha), a.row_dims, a.col_dims)


def inner(a: TTMatrix, b: TTMatrix) -> jax.Array:
    """Frobenius inner product ``sum(conj(A) * B)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (2, 2), 2)
      >>> bool(jnp.allclose(ttm.inner(a, a), jnp.sum(ttm.to_dense(a) ** 2), atol=1e-6))
      True
    """
    _check_ttm(a, "a")
    _check_ttm(b, "b")
    _check_same_shape(a, b)
    return _tt.inner(_as_tt(a), _as_tt(b))


def norm(a: TTMatrix) -> jax.Array:
    """Frobenius norm.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import ttm
      >>> bool(jnp.allclose(ttm.norm(ttm.identity((2, 8))), 4.0))
      True
    """
    _check_ttm(a)
    return _tt.norm(_as_tt(a))


def random(key, row_dims: Sequence[int], col_dims: Sequence[int], ranks, dtype=jnp.float32) -> TTMatrix:
    """A TT-matrix with Gaussian cores scaled so that ``E ||A||_F^2 = 1`` (see :func:`tnkit.tt.random`).

    Example:
      >>> import jax
      >>> from tnkit import ttm
      >>> ttm.random(jax.random.key(0), (2, 3), (4, 5), 3).shape
      (6, 20)
    """
    row_dims, col_dims = _check_mode_dims(row_dims, col_dims)
    t = _tt.random(key, [m * n for m, n in zip(row_dims, col_dims)], ranks, dtype)
    return _from_tt(t, row_dims, col_dims)

