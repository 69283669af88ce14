"""The Tucker algebra: pure functions on :class:`tnkit.Tucker`, and rank selection under a parameter budget.

Conventions:
  * ``x = core x_1 U_1 x_2 U_2 ... x_d U_d`` with ``core`` of shape ``(r_1, ..., r_d)`` and ``factors[k] = U_k`` of
    shape ``(n_k, r_k)``; the mode-``k`` product ``y = x x_k M`` is ``y[..., i, ...] = sum_j M[i, j] x[..., j, ...]``.
  * ``inner(a, b) = sum(conj(a) * b)``: conjugate-linear in the first argument (like ``jnp.vdot``).
  * Decompositions (:func:`hosvd`, :func:`sthosvd`, :func:`hooi`) return orthonormal factors
    (``U_k^H U_k = I``); the other functions accept any factors.
  * Every function works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``, with these exceptions: a tolerance
    (``rtol``) chooses ranks from the data, so it needs concrete arrays and runs eagerly (a clear error under
    ``jit``; fixed ``ranks`` give static shapes and are jit-compatible); :func:`hooi` with a tolerance ``tol`` runs a
    ``lax.while_loop``, which ``jax.grad`` cannot differentiate (pass ``tol=None`` for a fixed number of sweeps,
    which can); the rank selection (:func:`higher_order_singular_values`, :func:`ranks_for_budget`) is eager NumPy.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import tucker
  >>> x = tucker.to_dense(tucker.random(jax.random.key(0), (6, 7, 8), (2, 3, 4)))
  >>> t = tucker.sthosvd(x, rtol=1e-6)
  >>> t.ranks
  (2, 3, 4)
  >>> bool(jnp.linalg.norm(tucker.to_dense(t) - x) <= 1e-6 * jnp.linalg.norm(x))
  True
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import concrete_or_error

from tnkit import _checks, _linalg
from tnkit import tt as _tt
from tnkit._linalg import SVDMethod
from tnkit.formats import TT, Tucker

__all__ = [
    "from_dense",
    "hosvd",
    "sthosvd",
    "hooi",
    "HOOIInfo",
    "to_dense",
    "to_tt",
    "mode_product",
    "multi_mode_product",
    "inner",
    "norm",
    "round",
    "add",
    "sub",
    "scale",
    "random",
    "higher_order_singular_values",
    "ranks_for_budget",
    "RankSearch",
    "RankChoice",
    "SVDMethod",
]

_HIGHEST = lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------- validation helpers


def _check_tucker(t, name: str = "t") -> Tucker:
    if not isinstance(t, Tucker):
        raise TypeError(f"{name} must be a tnkit.Tucker, got {type(t).__name__}")
    return t


def _as_dense(x, name: str = "x") -> jax.Array:
    if isinstance(x, (Tucker, TT)):
        raise TypeError(f"{name} must be a dense array, got a {type(x).__name__}")
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        raise TypeError(f"{name} must have a floating or complex dtype, got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have at least one axis, got shape {x.shape}")
    return jnp.asarray(x)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _parse_ranks(ranks, dims: Sequence[int], name: str = "ranks", *, at_most_dims: bool = True) -> tuple[int, ...]:
    """``ranks`` as a tuple of ``d`` positive ints (an int means the same rank for every mode)."""
    d = len(dims)
    if _is_int(ranks):
        ranks = (int(ranks),) * d
    else:
        try:
            ranks = tuple(ranks)
        except TypeError:
            raise TypeError(f"{name} must be an int or a sequence of {d} ints, got {ranks!r}") from None
        if not all(_is_int(r) for r in ranks):
            raise TypeError(f"{name} must hold ints, got {ranks!r}")
        ranks = tuple(int(r) for r in ranks)
    if len(ranks) != d:
        raise ValueError(f"{name} must have one entry per mode ({d} for dims {tuple(dims)}), got {len(ranks)}: {ranks}")
    for k, r in enumerate(ranks):
        if r < 1:
            raise ValueError(f"{name}[{k}] = {r}: ranks must be positive")
        if at_most_dims and r > dims[k]:
            raise ValueError(
                f"{name}[{k}] = {r} exceeds dims[{k}] = {dims[k]}: a factor of shape (n_k, r_k) with r_k > n_k cannot "
                "have orthonormal columns"
            )
    return ranks


def _check_feasible(ranks: tuple[int, ...], name: str = "ranks") -> None:
    """Raise unless every ``r_k <= prod_{j != k} r_j`` (the condition for multilinear ranks to exist)."""
    total = math.prod(ranks)
    for k, r in enumerate(ranks):
        others = total // r
        if len(ranks) > 1 and r > others:
            raise ValueError(
                f"{name} = {ranks} are not the multilinear ranks of any tensor: {name}[{k}] = {r} exceeds the product "
                f"{others} of the other ranks (a core of that shape has a mode-{k} unfolding of rank at most "
                f"{others}); "
                f"use ranks[{k}] <= {others}"
            )


def _clip_feasible(ranks: Sequence[int]) -> tuple[int, ...]:
    """Lower each ``r_k`` to ``prod_{j != k} r_j`` until all fit (a tensor of multilinear rank <= ``ranks`` has
    multilinear rank <= the result, so nothing representable is lost)."""
    ranks = list(ranks)
    if len(ranks) == 1:
        return (1,)
    changed = True
    while changed:
        changed = False
        for k in range(len(ranks)):
            others = math.prod(ranks[:k] + ranks[k + 1 :])
            if ranks[k] > others:
                ranks[k], changed = others, True
    return tuple(ranks)


def _check_rtol(rtol) -> None:
    if rtol is None:
        return
    number = isinstance(rtol, (int, float, np.floating, np.integer)) and not isinstance(rtol, bool)
    if not number or not 0 <= rtol < math.inf:
        raise ValueError(f"rtol must be a non-negative finite float or None, got {rtol!r}")


def _require_concrete(x, fname: str) -> None:
    """Raise a clear error when ``x`` has no concrete value (under ``jit`` or ``vmap``); ``grad`` is fine."""
    if isinstance(x, jax.core.Tracer):
        try:
            concrete_or_error(None, x)
        except jax.errors.ConcretizationTypeError:
            raise ValueError(
                f"{fname}(..., rtol=...) chooses ranks from the data, so it cannot run under jax.jit or jax.vmap "
                "(which abstract the values). Call it outside those transformations (jax.grad is fine), or pass "
                "ranks alone, which gives static shapes."
            ) from None


def _check_mode(mode, d: int, name: str = "mode") -> int:
    if not _is_int(mode) or not -d <= mode < d:
        raise ValueError(f"{name} must be an int in [-{d}, {d}) for a tensor with {d} modes, got {mode!r}")
    return int(mode) % d


def _hermitian(m):
    return jnp.swapaxes(m, -1, -2).conj()


# ------------------------------------------------------------------------------------------------- mode products


def _mode_dot(y, m, k: int):
    """``y x_k m`` for a dense ``y`` and ``m`` of shape ``(p, n_k)``, keeping the axis order.

    The first and last modes are plain matrix products of a reshaped ``y`` (no copy of ``y``). A middle mode is a
    product batched over the leading axes, which avoids transposing ``y`` when the broadcast copy of ``m`` is no
    larger than ``y``; otherwise an ``einsum``.
    """
    shape = y.shape
    n, p = shape[k], m.shape[0]
    lead, trail = math.prod(shape[:k]), math.prod(shape[k + 1 :])
    out_shape = shape[:k] + (p,) + shape[k + 1 :]
    if lead == 1:
        return jnp.matmul(m, y.reshape(n, trail), precision=_HIGHEST).reshape(out_shape)
    if trail == 1:
        return jnp.matmul(y.reshape(lead, n), m.T, precision=_HIGHEST).reshape(out_shape)
    if lead * p * n <= y.size:
        mb = jnp.broadcast_to(m, (lead, p, n))
        out = lax.dot_general(mb, y.reshape(lead, n, trail), (((2,), (1,)), ((0,), (0,))), precision=_HIGHEST)
        return out.reshape(out_shape)
    out = jnp.einsum("anb,pn->apb", y.reshape(lead, n, trail), m, precision=_HIGHEST)
    return out.reshape(out_shape)


def _project(y, factors, modes):
    """``y x_k U_k^H`` for every ``k`` in ``modes`` (``y`` dense, axes kept in place).

    Modes are contracted in order of the largest shrink first (ties: the last axis, then the first, which need no
    transposition), to keep the intermediates small.
    """
    d = y.ndim

    def key(k):
        return (factors[k].shape[1] / y.shape[k], 0 if k == d - 1 else (1 if k == 0 else 2), k)

    for k in sorted(modes, key=key):
        y = _mode_dot(y, _hermitian(factors[k]), k)
    return y


def _expand(core, matrices, modes):
    """``core x_k M_k`` for ``k`` in ``modes``, applying the smallest growth first."""
    order = sorted(zip(modes, matrices), key=lambda km: km[1].shape[0] / max(km[1].shape[1], 1))
    for k, m in order:
        core = _mode_dot(core, m, k)
    return core


# Jitted entry points for the fixed-shape work: an eager call compiles one program per shape instead of dispatching
# (and compiling) every primitive on its own; inside an outer jit/vmap/grad they are simply inlined.
_expand_jit = jax.jit(_expand, static_argnums=(2,))
_project_jit = jax.jit(_project, static_argnums=(2,))
_mode_dot_h_jit = jax.jit(lambda y, u, k: _mode_dot(y, _hermitian(u), k), static_argnums=(2,))


def _unfold(y, k: int):
    """Mode-``k`` unfolding of shape ``(n_k, prod of the other sizes)``."""
    return jnp.moveaxis(y, k, 0).reshape(y.shape[k], -1)


def _check_matrix(matrix, n: int, mode: int, name: str, transpose: bool):
    if not hasattr(matrix, "ndim") or not hasattr(matrix, "dtype"):
        matrix = jnp.asarray(matrix)
    if not (
        jnp.issubdtype(matrix.dtype, jnp.floating)
        or jnp.issubdtype(matrix.dtype, jnp.complexfloating)
        or jnp.issubdtype(matrix.dtype, jnp.integer)
    ):
        raise TypeError(f"{name} must have a numeric dtype, got {matrix.dtype}")
    if transpose:
        if matrix.ndim != 2 or matrix.shape[0] != n:
            shape = getattr(matrix, "shape", None)
            raise ValueError(
                f"{name} must have shape ({n}, m) to act on mode {mode} (of size {n}) with transpose=True, got shape "
                f"{shape}"
            )
    elif matrix.ndim != 2 or matrix.shape[1] != n:
        raise ValueError(
            f"{name} must have shape (m, {n}) to act on mode {mode} (of size {n}), got shape {matrix.shape}"
        )
    return jnp.asarray(matrix)


def mode_product(x, matrix, mode: int):
    """Mode-``mode`` product ``y = x x_mode M``: ``y[..., i, ...] = sum_j M[i, j] x[..., j, ...]``.

    Args:
      x: a dense array of shape ``(n_1, ..., n_d)``, or a :class:`tnkit.Tucker` (then only the factor changes:
        ``U_mode <- M U_mode``; the core is untouched, so the ranks stay the same).
      matrix: array of shape ``(m, n_mode)``.
      mode: the mode index, in ``[-d, d)``.

    Returns:
      The same kind as ``x`` (dense array or Tucker) with ``dims[mode] = m``, in the promoted dtype of ``x`` and
      ``matrix``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> x = jnp.arange(24.0).reshape(2, 3, 4)
      >>> m = jnp.ones((5, 3))
      >>> y = tucker.mode_product(x, m, 1)
      >>> y.shape, bool(jnp.allclose(y, jnp.einsum("ij,ajb->aib", m, x)))
      ((2, 5, 4), True)
      >>> t = tucker.random(jax.random.key(0), (2, 3, 4), (2, 2, 2))
      >>> tucker.mode_product(t, m, 1).dims
      (2, 5, 4)
    """
    return multi_mode_product(x, [matrix], [mode])


def multi_mode_product(x, matrices: Sequence, modes: Sequence[int] | None = None, *, transpose: bool = False):
    """Products with several modes: ``y = x x_{k_1} M_1 x_{k_2} M_2 ...`` (the modes must be distinct, so the order
    does not matter).

    Args:
      x: a dense array or a :class:`tnkit.Tucker` (then each ``M`` multiplies a factor, ``U_k <- M U_k``).
      matrices: sequence of matrices, ``matrices[i]`` of shape ``(m_i, n_{modes[i]})``.
      modes: the distinct modes they act on; ``None`` means ``0, 1, ..., len(matrices) - 1``.
      transpose: apply the conjugate transpose ``M^H`` of each matrix instead (``matrices[i]`` then has shape
        ``(n_{modes[i]}, m_i)``). This is the projection ``x x_k U_k^H`` onto orthonormal factors; for real
        matrices ``M^H = M^T``.

    Returns:
      The same kind as ``x``, in the promoted dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import tucker
      >>> x = jnp.ones((2, 3, 4))
      >>> y = tucker.multi_mode_product(x, [jnp.ones((2, 5)), jnp.ones((4, 6))], modes=[0, 2], transpose=True)
      >>> y.shape, float(y[0, 0, 0])
      ((5, 3, 6), 8.0)
    """
    is_tucker = isinstance(x, Tucker)
    if not is_tucker:
        x = _as_dense(x)
    dims = x.dims if is_tucker else x.shape
    d = len(dims)
    if isinstance(matrices, (jax.Array, np.ndarray)) or not isinstance(matrices, Sequence):
        raise TypeError(f"matrices must be a sequence of matrices, got {type(matrices).__name__}")
    if modes is None:
        modes = list(range(len(matrices)))
    elif isinstance(modes, (jax.Array, np.ndarray)) or not isinstance(modes, Sequence):
        raise TypeError(f"modes must be a sequence of ints or None, got {modes!r}")
    if len(modes) != len(matrices):
        raise ValueError(f"matrices and modes must have the same length, got {len(matrices)} and {len(modes)}")
    modes = [_check_mode(m, d, f"modes[{i}]") for i, m in enumerate(modes)]
    if len(set(modes)) != len(modes):
        raise ValueError(f"modes must be distinct, got {modes}")
    mats = [_check_matrix(m, dims[k], k, f"matrices[{i}]", transpose) for i, (m, k) in enumerate(zip(matrices, modes))]
    dtype = jnp.result_type(x.dtype, *[m.dtype for m in mats])
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        dtype = jnp.result_type(dtype, jnp.float32)
    mats = [(_hermitian(m) if transpose else m).astype(dtype) for m in mats]
    if is_tucker:
        factors = [f.astype(dtype) for f in x.factors]
        for k, m in zip(modes, mats):
            factors[k] = jnp.matmul(m, factors[k], precision=_HIGHEST)
        return Tucker(x.core.astype(dtype), factors)
    return _expand_jit(x.astype(dtype), mats, tuple(modes))


# ---------------------------------------------------------------------------------------------- dense conversions


def to_dense(t: Tucker) -> jax.Array:
    """The dense tensor ``core x_1 U_1 ... x_d U_d`` of shape ``t.dims``.

    Example:
      >>> import jax
      >>> from tnkit import tucker
      >>> tucker.to_dense(tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2))).shape
      (4, 5, 6)
    """
    _check_tucker(t)
    return _expand_jit(t.core, list(t.factors), tuple(range(t.ndim)))


def _default_ranks(dims):
    total = math.prod(dims)
    return tuple(min(n, total // n) for n in dims)


def _rank_request(x, ranks, rtol, fname):
    """Validated ``(caps, abs_tol)``: with ``rtol``, ``ranks`` (or the dims) are upper bounds; without, exact."""
    dims = x.shape
    _check_rtol(rtol)
    if ranks is not None:
        ranks = _parse_ranks(ranks, dims)
        if rtol is None:
            _check_feasible(ranks)
    else:
        ranks = _default_ranks(dims)
    abs_tol = None
    if rtol is not None:
        _require_concrete(x, fname)
        nrm = float(_checks.concrete(jnp.linalg.norm(x)))
        abs_tol = float(rtol) * nrm / math.sqrt(len(dims))
    return ranks, abs_tol


def _leading(a, rank, abs_tol, method, cap):
    """Leading left singular vectors of ``a``: ``rank`` of them, or (with ``abs_tol``) as few as keep the discarded
    squared tail at most ``abs_tol**2`` (and at most ``cap``)."""
    if abs_tol is None:
        if rank >= a.shape[0] and a.shape[0] <= a.shape[1]:
            return jnp.eye(a.shape[0], dtype=a.dtype)  # nothing is truncated: any orthonormal basis is exact
        u, _ = _linalg.left_svd(a, rank, method)
        return u[:, :rank]
    u, rank = _linalg.left_svd_with_tolerance(a, cap, abs_tol, method)
    return u[:, :rank]


def hosvd(x, *, ranks=None, rtol: float | None = None, method: SVDMethod = SVDMethod.AUTO) -> Tucker:
    """Truncated higher-order SVD (De Lathauwer, De Moor and Vandewalle, 2000).

    ``U_k`` = the leading ``r_k`` left singular vectors of the mode-``k`` unfolding of ``x`` (shape
    ``(n_k, prod_{j != k} n_j)``), each computed from ``x`` itself; ``core = x x_1 U_1^H ... x_d U_d^H``. The error
    satisfies ``||x - T||^2 <= sum_k sum_{i > r_k} sigma_{k,i}^2`` (the discarded higher-order singular values) and
    is at most ``sqrt(d)`` times the best rank-``ranks`` error. :func:`sthosvd` is cheaper and usually more accurate.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, floating or complex.
      ranks: an int (every mode) or ``d`` ints, ``1 <= r_k <= n_k`` and ``r_k <= prod_{j != k} r_j``. Without
        ``rtol`` these are the exact ranks (jit-compatible); with ``rtol`` they are upper bounds. ``None`` with no
        ``rtol`` keeps the full multilinear ranks ``min(n_k, prod_{j != k} n_j)`` (exact).
      rtol: relative error bound ``||x - to_dense(T)|| <= rtol * ||x||``: each mode discards at most
        ``rtol^2 ||x||^2 / d`` of squared norm. Forces eager execution.
      method: how each wide unfolding is factored (see :class:`tnkit.tucker.SVDMethod`); the default uses the
        Gram matrix where that is as accurate as an SVD for the rank kept.

    Returns:
      A :class:`tnkit.Tucker` with orthonormal factors. A mode kept at full size ``r_k = n_k`` gets the identity
      factor (no SVD).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> x = jax.random.normal(jax.random.key(0), (6, 7, 8))
      >>> t = tucker.hosvd(x, ranks=(3, 3, 4))
      >>> t.ranks, t.core.shape
      ((3, 3, 4), (3, 3, 4))
    """
    x = _as_dense(x)
    _linalg.check_method(method)
    caps, abs_tol = _rank_request(x, ranks, rtol, "hosvd")
    if abs_tol is None:
        return _hosvd_fixed(x, caps, None, method)
    return _hosvd_steps(x, caps, abs_tol, method)  # eager: ranks chosen from the data


def _hosvd_steps(x, caps, abs_tol, method):
    factors = [_leading(_unfold(x, k), caps[k], abs_tol, method, caps[k]) for k in range(x.ndim)]
    return Tucker(_project_jit(x, factors, tuple(range(x.ndim))), factors)


_hosvd_fixed = jax.jit(_hosvd_steps, static_argnums=(1, 2, 3))


def sthosvd(
    x, *, ranks=None, rtol: float | None = None, order: Sequence[int] | None = None, method: SVDMethod = SVDMethod.AUTO
) -> Tucker:
    """Sequentially truncated HOSVD (Vannieuwenhoven, Vandebril and Meerbergen, SIAM J. Sci. Comput. 2012).

    Processes the modes one after another in ``order``; each step takes the leading left singular vectors of the
    mode-``k`` unfolding of the *already truncated* tensor ``y`` and replaces ``y`` by ``y x_k U_k^H``, so the
    tensor shrinks as it goes (the first step costs one Gram matrix of ``x``, the later ones much less). The
    discarded parts are orthogonal, so ``||x - T||^2 = sum_k (squared tail discarded at step k)``, which is at most
    the HOSVD bound ``sum_k sum_{i > r_k} sigma_{k,i}^2``.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, floating or complex.
      ranks: as in :func:`hosvd` (exact without ``rtol``, upper bounds with it).
      rtol: relative error bound ``||x - to_dense(T)|| <= rtol * ||x||``; each step discards at most
        ``rtol^2 ||x||^2 / d``. Forces eager execution.
      order: a permutation of ``range(d)``, the processing order; ``None`` means ``0, 1, ..., d - 1``. Processing
        the most compressed modes first is cheapest.
      method: see :func:`hosvd`.

    Returns:
      A :class:`tnkit.Tucker` with orthonormal factors.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> x = jax.random.normal(jax.random.key(0), (6, 7, 8))
      >>> t = tucker.sthosvd(x, ranks=(3, 3, 4), order=(2, 0, 1))
      >>> t.ranks, t.factors[2].shape
      ((3, 3, 4), (8, 4))
    """
    x = _as_dense(x)
    _linalg.check_method(method)
    d = x.ndim
    if order is None:
        order = tuple(range(d))
    else:
        try:
            order = tuple(order)
        except TypeError:
            raise TypeError(f"order must be a permutation of range({d}) or None, got {order!r}") from None
        if not all(_is_int(k) for k in order) or sorted(int(k) for k in order) != list(range(d)):
            raise ValueError(f"order must be a permutation of range({d}), got {order}")
        order = tuple(int(k) for k in order)
    caps, abs_tol = _rank_request(x, ranks, rtol, "sthosvd")
    if abs_tol is None:
        return _sthosvd_fixed(x, caps, None, order, method)
    return _sthosvd_steps(x, caps, abs_tol, order, method)  # eager: ranks chosen from the data


def _sthosvd_steps(x, caps, abs_tol, order, method):
    factors: list = [None] * x.ndim
    y = x
    for k in order:
        u = _leading(_unfold(y, k), caps[k], abs_tol, method, caps[k])
        factors[k] = u
        y = _mode_dot_h_jit(y, u, k)
    return Tucker(y, factors)


_sthosvd_fixed = jax.jit(_sthosvd_steps, static_argnums=(1, 2, 3, 4))


def from_dense(x, *, ranks=None, rtol: float | None = None, method: SVDMethod = SVDMethod.AUTO) -> Tucker:
    """Tucker decomposition of a dense tensor: :func:`sthosvd` in the natural mode order (the same arguments).

    For a more accurate fit at fixed ranks, refine with :func:`hooi`.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import tucker
      >>> tucker.from_dense(jnp.ones((3, 4, 5)), rtol=1e-6).ranks
      (1, 1, 1)
    """
    return sthosvd(x, ranks=ranks, rtol=rtol, method=method)


# ------------------------------------------------------------------------------------------------------------ HOOI


class HOOIInfo(NamedTuple):
    """Convergence record of :func:`hooi`.

    Attributes:
      iterations: int32 scalar, the number of sweeps run.
      errors: array of shape ``(max_iters + 1,)`` (real dtype of ``x``): ``errors[0]`` is the relative error
        ``||x - T|| / ||x||`` of the initial factors (with their optimal core), ``errors[i]`` the one after sweep
        ``i``; entries after ``iterations`` are NaN. Computed as ``sqrt(||x||^2 - ||core||^2) / ||x||`` (exact for
        orthonormal factors), so errors below about ``1e-8`` (float64) are rounding noise.
      converged: bool scalar, whether the last sweep changed the error by less than ``tol``.
    """

    iterations: jax.Array
    errors: jax.Array
    converged: jax.Array


def _leaf_svd(y, k, rank, method):
    u, _ = _linalg.left_svd(_unfold(y, k), rank, method)
    return u[:, :rank]


def _hooi_sweep(x, factors, ranks, method):
    """One HOOI sweep over the modes ``0..d-1`` (Gauss-Seidel order) with a binary dimension tree.

    For a group of modes whose complement is already contracted into ``y``, split it into halves ``L, R``;
    contract ``y`` with the (old) factors of ``R`` and recurse into ``L``; then contract ``y`` with the (new)
    factors of ``L`` and recurse into ``R``. Each mode then sees exactly the factors the textbook HOOI uses, but the
    full tensor is contracted twice per sweep instead of ``d`` times. Returns the new factors and the core.
    """
    factors = list(factors)

    def recurse(y, modes):
        if len(modes) == 1:
            k = modes[0]
            factors[k] = _leaf_svd(y, k, ranks[k], method)
            return _mode_dot(y, _hermitian(factors[k]), k)
        half = len(modes) // 2
        left, right = modes[:half], modes[half:]
        recurse(_project(y, factors, right), left)
        return recurse(_project(y, factors, left), right)

    core = recurse(x, list(range(x.ndim)))
    return factors, core


def hooi(
    x,
    ranks,
    *,
    init: Tucker | None = None,
    max_iters: int = 100,
    tol: float | None = 1e-4,
    method: SVDMethod = SVDMethod.AUTO,
) -> tuple[Tucker, HOOIInfo]:
    """Higher-order orthogonal iteration (De Lathauwer, De Moor and Vandewalle, 2000; Kolda and Bader, 2009).

    Alternating least squares for ``min ||x - core x_1 U_1 ... x_d U_d||`` at fixed ``ranks``: a sweep updates
    ``U_k`` for ``k = 0..d-1`` to the leading ``r_k`` left singular vectors of the mode-``k`` unfolding of
    ``x x_{j != k} U_j^H`` (shape ``(n_k, prod_{j != k} r_j)``), then sets ``core = x x_1 U_1^H ... x_d U_d^H``.
    The error never increases. The full tensor is contracted twice per sweep, whatever ``d`` (see the dimension
    tree in the source), and the small unfoldings go through the Gram-matrix route of
    :func:`tnkit._linalg.left_svd` where it is accurate.

    Stopping rule (TensorLy's): after sweep ``i``, stop when ``|e_{i-1} - e_i| < tol``, with ``e_i`` the relative
    error ``||x - T_i|| / ||x||`` and ``e_0`` the error of the initialisation; or after ``max_iters`` sweeps.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, floating or complex.
      ranks: an int or ``d`` ints, ``1 <= r_k <= n_k`` and ``r_k <= prod_{j != k} r_j``. Static.
      init: a :class:`tnkit.Tucker` of dims ``x.shape`` and ranks ``ranks`` whose factors start the iteration
        (they are orthonormalised; the core is ignored). ``None``: :func:`sthosvd` with the same ranks.
      max_iters: maximum number of sweeps, ``>= 1``. Static.
      tol: threshold on the change of the relative error (may be traced), or ``None`` to run exactly ``max_iters``
        sweeps with ``lax.scan``, which, unlike the ``while_loop`` used with a tolerance, ``jax.grad`` can
        differentiate.
      method: how the leading singular vectors are computed (see :func:`hosvd`).

    Returns:
      ``(t, info)``: the :class:`tnkit.Tucker` (orthonormal factors) and a :class:`HOOIInfo`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> x = jax.random.normal(jax.random.key(0), (6, 7, 8))
      >>> t, info = jax.jit(lambda x: tucker.hooi(x, (2, 3, 3), max_iters=20))(x)
      >>> t.ranks, info.errors.shape
      ((2, 3, 3), (21,))
      >>> e = info.errors[: int(info.iterations) + 1]  # errors[0]: the sthosvd start
      >>> bool(jnp.all(jnp.diff(e) <= 1e-5))  # the error never increases
      True
    """
    x = _as_dense(x)
    _linalg.check_method(method)
    dims = x.shape
    ranks = _parse_ranks(ranks, dims)
    _check_feasible(ranks)
    if not _is_int(max_iters) or max_iters < 1:
        raise ValueError(f"max_iters must be a positive int, got {max_iters!r}")
    max_iters = int(max_iters)
    if tol is not None and not isinstance(tol, jax.core.Tracer):
        if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer, jax.Array, np.ndarray)):
            raise ValueError(f"tol must be a non-negative float or None, got {tol!r}")
        if not float(tol) >= 0:
            raise ValueError(f"tol must be a non-negative float or None, got {tol!r}")
    init_factors = None
    if init is not None:
        _check_tucker(init, "init")
        if init.dims != dims or init.ranks != ranks:
            raise ValueError(
                f"init must have dims {dims} and ranks {ranks} (those of x and the requested ranks), got dims "
                f"{init.dims} and ranks {init.ranks}"
            )
        init_factors = [f.astype(x.dtype) for f in init.factors]
    real = jnp.finfo(x.dtype).dtype
    tol = None if tol is None else jnp.asarray(tol, real)
    return _hooi_jit(x, init_factors, tol, ranks, max_iters, method)


def _hooi_impl(x, init_factors, tol, ranks, max_iters, method):
    d = x.ndim
    if init_factors is None:
        start = _sthosvd_steps(x, ranks, None, tuple(range(d)), method)
        factors, core = list(start.factors), start.core
    else:
        factors = [_linalg.left_orthonormal(f)[0] for f in init_factors]
        core = _project(x, factors, range(d))

    real = jnp.finfo(x.dtype).dtype
    norm_x2 = jnp.real(jnp.vdot(x, x)).astype(real)
    norm_x = jnp.sqrt(norm_x2)

    def rel_error(core):
        sq = jnp.maximum(norm_x2 - jnp.real(jnp.vdot(core, core)), 0.0)
        # x = 0 gives sq = 0 and an error of 0; a NaN in x gives NaN.
        return _linalg.safe_sqrt(sq) / jnp.where(norm_x > 0, norm_x, 1.0)

    errors = jnp.full((max_iters + 1,), jnp.nan, real).at[0].set(rel_error(core))

    def sweep(factors):
        factors, core = _hooi_sweep(x, factors, ranks, method)
        return factors, core, rel_error(core)

    if tol is None:

        def step(carry, i):
            factors, _core = carry
            factors, core, e = sweep(factors)
            return (factors, core), e

        (factors, core), errs = lax.scan(step, (factors, core), jnp.arange(max_iters))
        errors = errors.at[1:].set(errs)
        info = HOOIInfo(jnp.asarray(max_iters, jnp.int32), errors, jnp.asarray(False))
        return Tucker(core, factors), info

    def cond(state):
        _, _, it, _, done = state
        return (it < max_iters) & ~done

    def body(state):
        factors, _core, it, errors, _ = state
        factors, core, e = sweep(factors)
        done = jnp.abs(errors[it] - e) < tol
        return factors, core, it + 1, errors.at[it + 1].set(e), done

    state = (factors, core, jnp.asarray(0, jnp.int32), errors, jnp.asarray(False))
    factors, core, it, errors, done = lax.while_loop(cond, body, state)
    return Tucker(core, factors), HOOIInfo(it, errors, done)


_hooi_jit = jax.jit(_hooi_impl, static_argnums=(3, 4, 5))


# ----------------------------------------------------------------------------------------------- algebra and norms


def _promote(a: Tucker, b: Tucker) -> tuple[Tucker, Tucker]:
    dtype = jnp.result_type(a.dtype, b.dtype)
    cast = lambda t: t if t.dtype == dtype else jax.tree_util.tree_map(lambda c: c.astype(dtype), t)  # noqa: E731
    return cast(a), cast(b)


def _check_same_dims(a: Tucker, b: Tucker) -> None:
    if a.dims != b.dims:
        raise ValueError(f"a and b must have the same dims, got {a.dims} and {b.dims}")


def inner(a: Tucker, b: Tucker) -> jax.Array:
    """``<a, b> = sum(conj(a) * b)`` without forming either tensor.

    ``<a, b> = <core_a, core_b x_1 G_1 ... x_d G_d>`` with the factor Gram matrices ``G_k = A_k^H B_k`` of shape
    ``(ra_k, rb_k)``: cost ``O(sum_k n_k ra_k rb_k + sum_k ra_1..ra_k rb_k..rb_d)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> a = tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2))
      >>> b = tucker.random(jax.random.key(1), (4, 5, 6), (3, 2, 2))
      >>> bool(jnp.allclose(tucker.inner(a, b), jnp.vdot(tucker.to_dense(a), tucker.to_dense(b)), atol=1e-6))
      True
    """
    _check_tucker(a, "a")
    _check_tucker(b, "b")
    _check_same_dims(a, b)
    return _inner_jit(*_promote(a, b))


@jax.jit
def _inner_jit(a, b):
    grams = [jnp.matmul(_hermitian(fa), fb, precision=_HIGHEST) for fa, fb in zip(a.factors, b.factors)]
    y = _expand(b.core, grams, range(b.ndim))
    return jnp.vdot(a.core, y)


def _orthonormal_form(t: Tucker):
    """``(core', Q)``: ``t = core' x_k Q_k`` with orthonormal ``Q_k`` (``U_k = Q_k R_k``, ``core' = core x_k R_k``)."""
    qs, rs = zip(*[_linalg.left_orthonormal(f) for f in t.factors])
    return _expand(t.core, rs, range(t.ndim)), list(qs)


_orthonormal_form_jit = jax.jit(_orthonormal_form)


def norm(t: Tucker) -> jax.Array:
    """Frobenius norm ``||t||`` (real, non-negative).

    Computed as ``||core x_1 R_1 ... x_d R_d||`` from QR factorisations ``U_k = Q_k R_k`` of the factors, so no
    orthonormality is assumed, the result is accurate to relative machine precision, and the derivative is finite
    at ``t = 0``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> t = tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2))
      >>> bool(jnp.allclose(tucker.norm(t), jnp.linalg.norm(tucker.to_dense(t)), atol=1e-6))
      True
    """
    _check_tucker(t)
    return _norm_jit(t)


@jax.jit
def _norm_jit(t):
    core, _ = _orthonormal_form(t)
    # Scaled by the largest entry (held constant for the derivative), so tiny or huge tensors do not under- or
    # overflow in the sum of squares.
    big = lax.stop_gradient(jnp.max(jnp.abs(core)))
    big = jnp.where(big > 0, big, 1.0).astype(core.dtype)
    scaled = core / big
    return jnp.real(big) * _linalg.safe_sqrt(jnp.real(jnp.vdot(scaled, scaled)))


def round(t: Tucker, *, ranks=None, rtol: float | None = None) -> Tucker:  # noqa: A001
    """Re-compress ``t`` to lower multilinear ranks.

    QR of each factor ``U_k = Q_k R_k``, :func:`sthosvd` of the small core ``core x_k R_k`` (so the dense tensor
    is never formed), and the new factors ``Q_k V_k``. Ranks never increase.

    Args:
      t: a Tucker.
      ranks: upper bounds on the ranks (an int or ``d`` ints). Each is also capped by ``min(n_k, r_k)`` and by
        the product of the other ranks (ranks above it cannot be attained). jit-compatible.
      rtol: relative error bound ``||to_dense(t) - to_dense(result)|| <= rtol * ||t||``, split evenly over the modes.
        Forces eager execution.

    Returns:
      A :class:`tnkit.Tucker` with orthonormal factors.

    Example:
      >>> import jax
      >>> from tnkit import tucker
      >>> a = tucker.random(jax.random.key(0), (5, 6, 7), (2, 3, 2))
      >>> tucker.add(a, a).ranks, tucker.round(tucker.add(a, a), rtol=1e-6).ranks
      ((4, 6, 4), (2, 3, 2))
    """
    _check_tucker(t)
    _check_rtol(rtol)
    caps = None if ranks is None else _parse_ranks(ranks, t.dims, at_most_dims=False)
    if rtol is not None:
        _require_concrete(t.core, "round")
        for f in t.factors:
            _require_concrete(f, "round")
    shape = tuple(min(n, r) for n, r in zip(t.dims, t.ranks))  # the shape of the core after the QRs
    caps = shape if caps is None else tuple(min(c, s) for c, s in zip(caps, shape))
    caps = _clip_feasible(caps)
    if rtol is None:
        return _round_fixed(t, caps)
    core, qs = _orthonormal_form_jit(t)
    small = sthosvd(core, ranks=caps, rtol=rtol, method=SVDMethod.ACCURATE)
    return _apply_bases(qs, small)


def _apply_bases(qs, small):
    return Tucker(small.core, [jnp.matmul(q, v, precision=_HIGHEST) for q, v in zip(qs, small.factors)])


@functools.partial(jax.jit, static_argnums=(1,))
def _round_fixed(t, caps):
    core, qs = _orthonormal_form(t)
    small = _sthosvd_steps(core, caps, None, tuple(range(t.ndim)), SVDMethod.ACCURATE)
    return _apply_bases(qs, small)


def add(a: Tucker, b: Tucker) -> Tucker:
    """``a + b`` as a Tucker of ranks ``a.ranks + b.ranks``: block-diagonal core ``diag(core_a, core_b)`` and
    factors ``[A_k, B_k]`` side by side (use :func:`round` to compress).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> a = tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2))
      >>> b = tucker.random(jax.random.key(1), (4, 5, 6), (1, 2, 3))
      >>> c = tucker.add(a, b)
      >>> c.ranks, bool(jnp.allclose(tucker.to_dense(c), tucker.to_dense(a) + tucker.to_dense(b), atol=1e-6))
      ((3, 5, 5), True)
    """
    _check_tucker(a, "a")
    _check_tucker(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    ra, rb = a.ranks, b.ranks
    core = jnp.pad(a.core, [(0, r) for r in rb]) + jnp.pad(b.core, [(r, 0) for r in ra])
    factors = [jnp.concatenate([fa, fb], axis=1) for fa, fb in zip(a.factors, b.factors)]
    return Tucker(core, factors)


def scale(t: Tucker, alpha) -> Tucker:
    """``alpha * t`` for a scalar ``alpha`` (the factor goes into the core; a complex ``alpha`` promotes a real ``t``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tucker
      >>> t = tucker.random(jax.random.key(0), (2, 3), (2, 2))
      >>> bool(jnp.allclose(tucker.to_dense(tucker.scale(t, 3.0)), 3.0 * tucker.to_dense(t)))
      True
    """
    _check_tucker(t)
    alpha, dtype = _checks.scalar_factor(alpha, t.dtype)
    factors = [f.astype(dtype) for f in t.factors]
    return Tucker(t.core.astype(dtype) * alpha, factors)


def sub(a: Tucker, b: Tucker) -> Tucker:
    """``a - b`` (ranks add, as for :func:`add`).

    Example:
      >>> import jax
      >>> from tnkit import tucker
      >>> a = tucker.random(jax.random.key(0), (3, 4), (2, 2))
      >>> float(tucker.norm(tucker.sub(a, a))) < 1e-6
      True
    """
    _check_tucker(b, "b")
    return add(a, scale(b, -1))


def to_tt(t: Tucker) -> TT:
    """The same tensor as an exact :class:`tnkit.TT`.

    The core becomes a TT by an untruncated TT-SVD (:func:`tnkit.tt.from_dense`, bond ``k`` of size at most
    ``min(r_1..r_k, r_{k+1}..r_d)``), then factor ``U_k`` is absorbed into TT core ``k``:
    ``G_k[a, i, b] <- sum_j U_k[i, j] G_k[a, j, b]``. Compress further with :func:`tnkit.tt.round`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt, tucker
      >>> t = tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2))
      >>> s = tucker.to_tt(t)
      >>> s.dims, s.ranks, bool(jnp.allclose(tt.to_dense(s), tucker.to_dense(t), atol=1e-5))
      ((4, 5, 6), (1, 2, 2, 1), True)
    """
    _check_tucker(t)
    return _to_tt_jit(t)


@jax.jit
def _to_tt_jit(t):
    s = _tt.from_dense(t.core)
    return TT([jnp.einsum("ij,ajb->aib", u, c, precision=_HIGHEST) for u, c in zip(t.factors, s.cores)])


def random(key, dims: Sequence[int], ranks, dtype=jnp.float32) -> Tucker:
    """A Tucker tensor with i.i.d. Gaussian core and factors, scaled so that ``E ||t||^2 = 1``.

    Core entries have variance ``1 / prod(r)``, entries of factor ``k`` variance ``1 / n_k``. Complex dtypes draw
    real and imaginary parts independently. The factors are not orthonormal.

    Args:
      key: a JAX PRNG key.
      dims: mode sizes ``(n_1, ..., n_d)``.
      ranks: an int (every mode) or ``d`` positive ints.
      dtype: floating or complex dtype.

    Example:
      >>> import jax
      >>> from tnkit import tucker
      >>> tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2))
      Tucker(dims=(4, 5, 6), ranks=(2, 3, 2), dtype=float32)
    """
    try:
        dims = tuple(int(n) for n in dims)
    except TypeError:
        raise TypeError(f"dims must be a sequence of ints, got {dims!r}") from None
    if not dims or any(n < 1 for n in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims}")
    ranks = _parse_ranks(ranks, dims, at_most_dims=False)
    dtype = jnp.dtype(dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise TypeError(f"dtype must be floating or complex, got {dtype}")
    # One draw for all the entries (one random-number kernel to compile, whatever the shapes), then split.
    sizes = [math.prod(ranks)] + [n * r for n, r in zip(dims, ranks)]
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    offsets = np.cumsum([0] + sizes)
    core = flat[: offsets[1]].reshape(ranks) / math.sqrt(sizes[0])
    factors = [
        flat[offsets[k + 1] : offsets[k + 2]].reshape(n, r) / math.sqrt(n) for k, (n, r) in enumerate(zip(dims, ranks))
    ]
    return Tucker(core, factors)


# -------------------------------------------------------------------------------- rank selection under a budget


class RankSearch(enum.Enum):
    """How :func:`ranks_for_budget` searches the multilinear ranks.

    Attributes:
      KNAPSACK: a dynamic programme over the modes (a multiple-choice knapsack with two rounded resources, in the
        spirit of Ghadiri, Fahrbach, Fu and Mirrokni, ICML 2023); near-optimal with a guarantee, see
        :func:`ranks_for_budget`.
      GREEDY: the baseline: from ranks ``(1, ..., 1)``, repeatedly raise the rank that removes the most discarded
        energy per added parameter, while the budget allows.
    """

    KNAPSACK = "knapsack"
    GREEDY = "greedy"


class RankChoice(NamedTuple):
    """Result of :func:`ranks_for_budget`.

    Attributes:
      ranks: the multilinear ranks ``(r_1, ..., r_d)``.
      num_params: ``prod(r) + sum_k n_k r_k``, the size of a Tucker with these ranks (at most the budget).
      discarded: ``sum_k sum_{i > r_k} sigma_{k,i}^2``, the squared error bound of the truncated HOSVD (and
        :func:`sthosvd`) at these ranks: ``||x - sthosvd(x, ranks=ranks)||^2 <= discarded``.
    """

    ranks: tuple[int, ...]
    num_params: int
    discarded: float


def higher_order_singular_values(x) -> tuple[np.ndarray, ...]:
    """The singular values of each mode-``k`` unfolding of ``x`` (``(n_k, prod_{j != k} n_j)``), descending.

    Eager (NumPy, float64): computed from the eigenvalues of the Gram matrices ``X_(k) X_(k)^H``, so values below
    about ``1e-8 sigma_{k,1}`` are rounding noise (harmless for rank selection, which uses their squares).

    Args:
      x: a dense array of shape ``(n_1, ..., n_d)``, or a :class:`tnkit.Tucker` (then from its small core after a
        QR factorisation of the factors; the tensor is never formed).

    Returns:
      A tuple of ``d`` NumPy arrays, array ``k`` of length ``n_k`` (zero-padded beyond the rank of the unfolding).

    Example:
      >>> import numpy as np
      >>> from tnkit import tucker
      >>> x = np.einsum("i,j,k->ijk", np.ones(3), np.arange(4.0), np.ones(5))
      >>> [s.shape for s in tucker.higher_order_singular_values(x)]
      [(3,), (4,), (5,)]
      >>> bool(np.allclose(tucker.higher_order_singular_values(x)[1][1:], 0, atol=1e-6))
      True
    """
    if isinstance(x, Tucker):
        core, _ = _orthonormal_form_jit(x)
        dims = x.dims
        core = np.asarray(core)
    else:
        x = _as_dense(x)
        core = np.asarray(x)
        dims = core.shape
    if core.dtype in (np.float32, np.float16):
        core = core.astype(np.float64)
    elif core.dtype == np.complex64:
        core = core.astype(np.complex128)
    out = []
    for k, n in enumerate(dims):
        a = np.moveaxis(core, k, 0).reshape(core.shape[k], -1)
        lam = np.linalg.eigvalsh(a @ a.conj().T)[::-1]
        s = np.sqrt(np.maximum(lam, 0.0))
        out.append(np.concatenate([s, np.zeros(n - s.shape[0])]))
    return tuple(out)


def _tails(spectra) -> list[np.ndarray]:
    """``T_k[r] = sum_{i >= r} sigma_{k,i}^2`` for ``r = 0..n_k`` (``T_k[n_k] = 0``)."""
    out = []
    for s in spectra:
        lam = s.astype(np.float64) ** 2
        out.append(np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]]))
    return out


def _num_params(ranks, dims) -> int:
    return math.prod(ranks) + sum(n * r for n, r in zip(dims, ranks))


def _attainable(ranks) -> bool:
    total = math.prod(ranks)
    return all(r * r <= total for r in ranks) if len(ranks) > 1 else ranks[0] == 1


def _greedy(tails, dims, budget, start):
    """From the attainable ranks ``start``, repeatedly take the step with the most discarded energy removed per
    added parameter, while the budget allows.

    A step raises one rank by one, or two ranks by one each (from ``(1, ..., 1)`` no single step is attainable:
    ``(2, 1, ..., 1)`` is not a multilinear rank); only steps that keep every ``r_k <= prod_{j != k} r_j`` count.
    """
    d = len(dims)
    ranks = list(start)
    params = _num_params(ranks, dims)
    moves = [(k,) for k in range(d)] + [(j, k) for j in range(d) for k in range(j + 1, d)]
    while True:
        best, best_score, best_params = None, 0.0, 0
        for move in moves:
            new = list(ranks)
            for k in move:
                new[k] += 1
            if any(new[k] > dims[k] for k in move) or not _attainable(new):
                continue
            new_params = _num_params(new, dims)
            gain = sum(tails[k][ranks[k]] - tails[k][ranks[k] + 1] for k in move)
            if gain <= 0 or new_params > budget:
                continue
            score = gain / (new_params - params)
            if score > best_score:
                best, best_score, best_params = new, score, new_params
        if best is None:
            return tuple(ranks)
        ranks, params = best, best_params


def _knapsack_cells(tails, dims, budget, resolution, cap):
    """Dynamic programme over the modes with rounded costs and ranks ``r_k <= cap``.

    Per mode ``k`` and rank ``r`` the two costs are rounded *up*: the log of the core size to ``a_k(r) =
    ceil(log(r) / delta)`` units of ``delta = log(1 + resolution) / d``, and the factor size to ``w_k(r) =
    ceil(n_k r / g)`` units of ``g = max(1, floor(resolution * budget / d))``. The table ``best[A, W]`` holds the
    least discarded energy of the first modes with rounded costs exactly ``(A, W)`` (and the choice that reached
    it); ``A <= log(budget) / delta`` and ``W <= budget / g`` bound it. Every reachable final cell is traced back to
    its rank tuple; returns those tuples (array ``(cells, d)``) whose true parameter count is within the budget.
    """
    d = len(dims)
    delta = math.log1p(resolution) / d
    g = max(1, int(resolution * budget / d))
    a_cap = int(math.floor(math.log(budget) / delta)) + 1
    w_cap = budget // g
    base = sum(dims)
    costs_a, costs_w, rmax = [], [], []
    for n in dims:
        # r_k <= (budget - sum_{j != k} n_j) / (n_k + 1): the other ranks are at least 1.
        rk = max(1, min(n, cap, (budget - (base - n)) // (n + 1)))
        r = np.arange(1, rk + 1)
        costs_a.append(np.concatenate([[0], np.ceil(np.log(r) / delta - 1e-9).astype(np.int64)]))
        costs_w.append(np.concatenate([[0], -(-(n * r) // g)]))
        rmax.append(rk)
    best = np.full((a_cap + 1, w_cap + 1), np.inf)
    best[0, 0] = 0.0
    reach_a, reach_w = 0, 0  # the reachable cells lie in best[: reach_a + 1, : reach_w + 1]
    choices = []
    for k in range(d):
        new = np.full_like(best, np.inf)
        choice = np.zeros(best.shape, np.int32)
        src = best[: reach_a + 1, : reach_w + 1]
        new_reach_a, new_reach_w = 0, 0
        for r in range(1, rmax[k] + 1):
            a, w = int(costs_a[k][r]), int(costs_w[k][r])
            if a > a_cap or w > w_cap:
                break
            ha, hw = min(reach_a, a_cap - a), min(reach_w, w_cap - w)
            cand = src[: ha + 1, : hw + 1] + tails[k][r]
            target = new[a : a + ha + 1, w : w + hw + 1]
            better = cand < target
            target[better] = cand[better]
            choice[a : a + ha + 1, w : w + hw + 1][better] = r
            new_reach_a, new_reach_w = max(new_reach_a, a + ha), max(new_reach_w, w + hw)
        best, reach_a, reach_w = new, new_reach_a, new_reach_w
        choices.append(choice)
    cells_a, cells_w = np.nonzero(np.isfinite(best))
    ranks = np.zeros((cells_a.shape[0], d), np.int64)
    for k in reversed(range(d)):
        r = choices[k][cells_a, cells_w]
        ranks[:, k] = r
        cells_a = cells_a - costs_a[k][r]
        cells_w = cells_w - costs_w[k][r]
    return ranks[_params_of(ranks, dims) <= budget]


def _params_of(ranks, dims):
    """Parameter counts of the rank tuples in the rows of ``ranks``."""
    return np.prod(ranks, axis=1) + ranks @ np.asarray(dims, np.int64)


def _tails_of(ranks, tails):
    return sum(t[ranks[:, k]] for k, t in enumerate(tails))


def _clip_feasible_rows(ranks):
    """:func:`_clip_feasible` for every row of ``ranks``."""
    ranks = ranks.copy()
    if ranks.shape[1] == 1:
        return np.ones_like(ranks)
    while True:
        changed = False
        for k in range(ranks.shape[1]):
            others = np.prod(np.delete(ranks, k, axis=1), axis=1)
            low = ranks[:, k] > others
            if low.any():
                ranks[low, k] = others[low]
                changed = True
        if not changed:
            return ranks


def _best_row(ranks, tails, dims):
    """The row with the least discarded energy (ties: fewest parameters)."""
    return tuple(int(r) for r in ranks[np.lexsort((_params_of(ranks, dims), _tails_of(ranks, tails)))[0]])


def _knapsack(tails, dims, budget, resolution, max_repairs=8):
    """The knapsack search: DP over the box of ranks, repaired when its best tuple is not attainable.

    When the DP's best tuple has a rank above the product of the others (no tensor has such multilinear ranks),
    the DP is run again with every rank capped at ``isqrt(prod(r))``, which excludes that tuple; at most
    ``max_repairs`` times. All tuples met on the way are clipped to attainable ranks and the best is returned.
    """
    cap = max(dims)
    pool = []
    for _ in range(max_repairs):
        cells = _knapsack_cells(tails, dims, budget, resolution, cap)
        pool.append(cells)
        best = _best_row(cells, tails, dims)
        if _clip_feasible(best) == best:
            break
        cap = math.isqrt(math.prod(best))
        if cap < 1:
            break
    pool = _clip_feasible_rows(np.concatenate(pool))
    return _best_row(pool, tails, dims)


def _as_spectra(x):
    if isinstance(x, Tucker) or hasattr(x, "shape"):
        return higher_order_singular_values(x)
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence) or not x:
        raise TypeError(
            "x must be a dense array, a tnkit.Tucker, or a non-empty sequence of 1-D arrays of higher-order singular "
            f"values, got {type(x).__name__}"
        )
    spectra = []
    for k, s in enumerate(x):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 1 or s.shape[0] < 1:
            raise ValueError(
                f"x[{k}] must be a non-empty 1-D array of singular values (length n_{k}), got shape {s.shape}"
            )
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(f"x[{k}] must hold finite non-negative singular values")
        if np.any(np.diff(s) > 0):
            raise ValueError(f"x[{k}] must be sorted in descending order, like singular values")
        spectra.append(s)
    return tuple(spectra)


def ranks_for_budget(
    x, budget: int, *, method: RankSearch = RankSearch.KNAPSACK, resolution: float = 0.01
) -> RankChoice:
    """Multilinear ranks that minimise the discarded energy of a Tucker approximation under a parameter budget.

    Solves (approximately) the "Tucker packing" problem of Ghadiri, Fahrbach, Fu and Mirrokni, "Approximately
    optimal core shapes for tensor decompositions" (ICML 2023)::

        minimise   sum_k sum_{i > r_k} sigma_{k,i}^2          (the HOSVD error bound, separable over modes)
        subject to prod_k r_k + sum_k n_k r_k <= budget,  1 <= r_k <= n_k,  r_k <= prod_{j != k} r_j

    where ``sigma_{k,i}`` are the higher-order singular values (:func:`higher_order_singular_values`) and the last
    condition says that the ranks are attainable (no tensor has multilinear ranks ``(1, 1, 2)``, say).

    ``RankSearch.KNAPSACK`` (default) runs a dynamic programme over the modes: a multiple-choice knapsack (one rank
    per mode) with two resources, the log of the core size and the factor size, both rounded up (to units of
    ``log(1 + resolution) / d`` and of ``max(1, floor(resolution * budget / d))`` parameters). It keeps, for every
    pair of rounded costs, the best choice so far; every kept tuple is traced back and its true size checked
    against the budget. Rounding up costs a tuple at most ``resolution`` times its core size plus
    ``resolution * budget``, hence the guarantee: *the discarded energy is at most that of the best attainable
    ranks for the budget* ``budget * (1 - resolution) / (1 + resolution)``, provided the tuples the programme keeps
    are attainable (the usual case). When its best tuple is not attainable (small budgets, lopsided spectra), the
    programme is re-run with every rank capped at ``isqrt(prod(r))``, which excludes that tuple (at most 8 times),
    and all tuples met are lowered to attainable ranks; that repair has no guarantee, but in a test over 200
    random small problems against brute force the result was always optimal. Then the leftover budget is spent by
    the greedy steps below, and the greedy baseline's answer is taken instead if it discards less (so KNAPSACK is
    never worse than GREEDY). Cost: ``O(d * max_k n_k * S)`` time and ``O(d * S)`` memory for ``S ~ d^2
    log(budget) / resolution^2`` table cells (about ``10^6`` for ``d = 3`` and the default resolution: about a
    second).

    ``RankSearch.GREEDY`` is the baseline: from ``(1, ..., 1)``, take the step with the largest
    ``(discarded energy removed) / (parameters added)`` that keeps the ranks attainable and within the budget, a
    step raising one rank by one, or two ranks by one each. It can stop far from the optimum, for instance when a
    valuable step is expensive and cheap steps use up the budget first.

    Args:
      x: a dense array, a :class:`tnkit.Tucker`, or a sequence of ``d`` 1-D arrays of descending singular values,
        array ``k`` of length ``n_k`` (pad with zeros).
      budget: maximum number of parameters, an int ``>= 1 + sum_k n_k`` (the size of ranks ``(1, ..., 1)``).
      method: a :class:`RankSearch`.
      resolution: relative rounding of the knapsack's costs, in ``(0, 1]``; smaller is closer to optimal and
        slower (cost ``~ 1 / resolution^2``).

    Returns:
      A :class:`RankChoice` ``(ranks, num_params, discarded)``.

    Example:
      >>> import numpy as np
      >>> from tnkit import tucker
      >>> spectra = [np.array([9.0, 8, 8, 7]), np.array([9.0, 3, 1, 0]), np.array([2.0, 2, 1, 0])]
      >>> tucker.ranks_for_budget(spectra, 49)
      RankChoice(ranks=(4, 2, 2), num_params=48, discarded=2.0)
      >>> tucker.ranks_for_budget(spectra, 49, method=tucker.RankSearch.GREEDY)
      RankChoice(ranks=(3, 3, 1), num_params=37, discarded=54.0)
    """
    if not isinstance(method, RankSearch):
        raise TypeError(f"method must be a tnkit.tucker.RankSearch, got {method!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float, np.floating)) or not 0 < resolution <= 1:
        raise ValueError(f"resolution must be a float in (0, 1], got {resolution!r}")
    spectra = _as_spectra(x)
    dims = tuple(s.shape[0] for s in spectra)
    minimum = _num_params((1,) * len(dims), dims)
    if not _is_int(budget):
        raise TypeError(f"budget must be an int, got {budget!r}")
    budget = int(budget)
    if budget < minimum:
        raise ValueError(
            f"budget = {budget} is below {minimum}, the size of the smallest Tucker (ranks (1, ..., 1)) for dims {dims}"
        )
    tails = _tails(spectra)
    discarded = lambda r: float(sum(t[rk] for t, rk in zip(tails, r)))  # noqa: E731
    ranks = _greedy(tails, dims, budget, (1,) * len(dims))
    if method is RankSearch.KNAPSACK:
        dp = _greedy(tails, dims, budget, _knapsack(tails, dims, budget, float(resolution)))
        if (discarded(dp), _num_params(dp, dims)) <= (discarded(ranks), _num_params(ranks, dims)):
            ranks = dp
    return RankChoice(ranks, _num_params(ranks, dims), discarded(ranks))
