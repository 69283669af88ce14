"""Inverse ``p``-th roots of symmetric positive semi-definite matrices, batched over stacked blocks.

:func:`inverse_pth_root` is the matrix function every Kronecker-factored optimizer needs (Shampoo raises each factor
to ``-1/(2k)``): given a symmetric PSD matrix ``M`` it returns ``X = (M + ridge I)^{-1/p}`` with a ridge relative to
the largest eigenvalue, and a :class:`RootInfo` whose residual tells the caller whether to trust the result.

Two methods (:class:`RootMethod`):

* ``EIGH``: ``M = Q Λ Q^T``, ``X = Q (max(Λ, 0) + ridge)^{-1/p} Q^T``. One symmetric eigendecomposition; accurate and
  the default.
* ``COUPLED_NEWTON``: the coupled Newton iteration of Guo & Higham (2006) as used by distributed Shampoo: only matrix
  products, so it runs well on accelerators where ``eigh`` is slow.

Example:
  >>> import jax.numpy as jnp
  >>> from tnkit.optim import inverse_pth_root
  >>> x, info = inverse_pth_root(jnp.diag(jnp.array([16.0, 81.0])), 4, ridge_epsilon=0.0)
  >>> [round(float(v), 4) for v in jnp.diagonal(x)]
  [0.5, 0.3333]
  >>> bool(info.residual < 1e-4)
  True
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["RootMethod", "RootInfo", "inverse_pth_root"]

_HIGHEST = lax.Precision.HIGHEST

# Newton stops once an iteration grows the error ``‖M_k - I‖_∞`` by more than _NEWTON_GROWTH (and keeps the
# previous iterate) after that error has fallen below _NEWTON_CONVERGING: near convergence a rise means round-off
# has taken over.
_NEWTON_GROWTH = 1.2
_NEWTON_CONVERGING = 0.5
_POWER_ITERS = 30


class RootMethod(enum.Enum):
    """How :func:`inverse_pth_root` computes ``(M + ridge I)^{-1/p}``.

    Attributes:
      EIGH: symmetric eigendecomposition ``M = Q Λ Q^T``, then ``Q (max(Λ, 0) + ridge)^{-1/p} Q^T``. Negative
        eigenvalues (round-off in a PSD matrix) are clipped to 0 before the ridge is added. The ridge is relative to
        the exact largest eigenvalue.
      COUPLED_NEWTON: the coupled Newton iteration (Guo & Higham, SIAM J. Matrix Anal. Appl. 28, 2006), with
        ``z = (1 + p) / (2 (λ + ridge))``, ``X_0 = z^{1/p} I``, ``M_0 = z (M + ridge I)`` and
        ``T_k = ((p + 1) I - M_k) / p``, ``X_{k+1} = X_k T_k``, ``M_{k+1} = T_k^p M_k``; ``M_k -> I`` and
        ``X_k -> (M + ridge I)^{-1/p}``. ``λ`` is a power-iteration estimate of the largest eigenvalue (it also sets
        the ridge). Stops when ``‖M_k - I‖_∞ <= tol`` (the largest absolute row sum), after ``num_iters``
        iterations, or when an iteration grows that error by more than 20% once it is below 0.5 (then the previous
        iterate is kept). Only matrix products, so it suits accelerators where ``eigh`` is slow.
    """

    EIGH = "eigh"
    COUPLED_NEWTON = "coupled_newton"


class RootInfo(NamedTuple):
    """Diagnostics of :func:`inverse_pth_root`; every field has the batch shape ``matrix.shape[:-2]``.

    Attributes:
      residual: ``max_ij |(X^⌈p/2⌉ A X^⌊p/2⌋ - I)_ij|`` with ``A = (M + M^T) / 2 + ridge I`` (the regularised
        symmetric part of the input), in the computation dtype (at least float32). Zero for the exact root (the
        powers commute, so this is ``X^p A - I`` split to limit round-off). ``nan`` when the root is not finite.
        It grows like ``κ^{1/2} u`` with ``κ`` the condition number of ``A`` (at most about ``1 / ridge_epsilon``)
        and ``u`` the unit round-off: with ``ridge_epsilon = 1e-6`` expect about ``1e-2 .. 1e-1`` in float32 for a
        rank-deficient ``M`` (fewer than ``1e-3`` for a well-conditioned one), ``1e-10`` in float64.
      ridge: the absolute ridge added, ``ridge_epsilon * λ_max`` (``ridge_epsilon`` when ``λ_max <= 0``).
      num_iters: int32, Newton iterations run (``0`` for ``EIGH``).
      is_finite: bool, whether every entry of the root is finite. ``False`` for non-finite input.
    """

    residual: jax.Array
    ridge: jax.Array
    num_iters: jax.Array
    is_finite: jax.Array


# ------------------------------------------------------------------------------------------------------ checks


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_matrix(matrix) -> jax.Array:
    if not hasattr(matrix, "dtype") or not hasattr(matrix, "shape"):
        matrix = jnp.asarray(matrix)
    if not jnp.issubdtype(matrix.dtype, jnp.floating):
        raise TypeError(f"matrix must have a real floating dtype, got {matrix.dtype}")
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2] or matrix.shape[-1] == 0:
        raise ValueError(
            f"matrix must have shape (..., n, n) with n >= 1 (a stack of square matrices), got shape "
            f"{tuple(matrix.shape)}"
        )
    return jnp.asarray(matrix)


def _check_p(p) -> int:
    if not _is_int(p) or p < 1:
        raise ValueError(f"p must be a positive Python int (the root order, static), got {p!r}")
    return int(p)


def _check_method(method) -> RootMethod:
    if not isinstance(method, RootMethod):
        raise TypeError(f"method must be a tnkit.optim.RootMethod (EIGH or COUPLED_NEWTON), got {method!r}")
    return method


def _check_nonnegative(value, name: str, *, allow_none: bool = False):
    """A non-negative finite real scalar; traced values pass unchecked (their value is not known)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise TypeError(f"{name} must be a non-negative real number, got {value!r}")
    arr = jnp.asarray(value)
    if arr.ndim != 0 or not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a non-negative real scalar, got {value!r}")
    if not isinstance(arr, jax.core.Tracer):
        v = float(arr)
        if not (0 <= v < math.inf):
            raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return value


def _check_num_iters(num_iters) -> int:
    if not _is_int(num_iters) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive Python int, got {num_iters!r}")
    return int(num_iters)


# ------------------------------------------------------------------------------------------------------- maths


def _compute_dtype(dtype):
    """At least float32: ``eigh`` has no half-precision kernels, and Shampoo's roots need the range anyway."""
    return jnp.promote_types(dtype, jnp.float32)


def _symmetric(m):
    return (m + jnp.swapaxes(m, -1, -2)) / 2


def _matrix_power(x, p: int):
    """``x^p`` for a static positive int ``p``, by repeated squaring (``O(log p)`` products)."""
    result = None
    base = x
    while True:
        if p & 1:
            result = base if result is None else jnp.matmul(result, base, precision=_HIGHEST)
        p >>= 1
        if not p:
            return result
        base = jnp.matmul(base, base, precision=_HIGHEST)


def _ridge(lam_max, ridge_epsilon):
    """The absolute ridge ``ridge_epsilon * λ_max``; ``ridge_epsilon`` for a matrix with no positive eigenvalue."""
    return jnp.where(lam_max > 0, ridge_epsilon * lam_max, ridge_epsilon).astype(lam_max.dtype)


def _residual(x, a, p: int):
    """``max|X^⌈p/2⌉ A X^⌊p/2⌋ - I|`` (``A`` the regularised input); ``nan`` propagates from a non-finite ``X``.

    Mathematically the same as ``X^p A - I`` (everything commutes), but splitting the powers around ``A`` keeps
    round-off from being amplified by ``A``'s conditioning: in float32 an accurate root of a matrix of condition
    number ``1e6`` gives about ``1e-2`` here and up to ``10`` in the one-sided form for ``p = 8``.
    """
    n = a.shape[-1]
    r = jnp.matmul(_matrix_power(x, (p + 1) // 2), a, precision=_HIGHEST)
    if p // 2:
        r = jnp.matmul(r, _matrix_power(x, p // 2), precision=_HIGHEST)
    eye = jnp.eye(n, dtype=a.dtype).reshape((1,) * (a.ndim - 2) + (n, n))
    return jnp.max(jnp.abs(r - eye), axis=(-2, -1))


def _eigh_root(m, p: int, ridge_epsilon):
    """Single matrix: ``(root, ridge, 0)`` by eigendecomposition."""
    lam, q = jnp.linalg.eigh(m, symmetrize_input=False)
    ridge = _ridge(lam[-1], ridge_epsilon)
    mu = jnp.maximum(lam, 0) + ridge
    root = jnp.matmul(q * (mu ** (-1.0 / p))[None, :], q.T, precision=_HIGHEST)
    return root, ridge, jnp.zeros((), jnp.int32)


def _largest_eigenvalue_estimate(m):
    """Power iteration (Rayleigh quotient) from a fixed generic start; a lower bound on ``λ_max`` of a PSD ``m``."""
    n = m.shape[-1]
    v = jax.random.normal(jax.random.key(0), (n,), m.dtype)

    def body(_, v):
        w = jnp.matmul(m, v, precision=_HIGHEST)
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1), w)

    v = lax.fori_loop(0, _POWER_ITERS, body, v / jnp.linalg.norm(v))
    return jnp.maximum(jnp.vdot(v, jnp.matmul(m, v, precision=_HIGHEST)), 0)


def _inf_norm(a):
    """``‖A‖_∞`` (largest absolute row sum): for a symmetric ``A`` an upper bound on its spectral radius."""
    return jnp.max(jnp.sum(jnp.abs(a), axis=-1), axis=-1)


def _newton_root(m, p: int, ridge_epsilon, num_iters: int, tol):
    """Single matrix: ``(root, ridge, iterations)`` by the coupled Newton iteration."""
    n = m.shape[-1]
    eye = jnp.eye(n, dtype=m.dtype)
    lam = _largest_eigenvalue_estimate(m)
    ridge = _ridge(lam, ridge_epsilon)
    a = m + ridge * eye
    z = (1 + p) / (2 * (lam + ridge))
    x0 = (z ** (1.0 / p)) * eye
    m0 = z * a
    err0 = _inf_norm(m0 - eye)

    def cond(state):
        i, _, _, _, err, improving = state
        return (i < num_iters) & (err > tol) & improving

    def body(state):
        i, mk, xk, _, err, _ = state
        t = ((p + 1) * eye - mk) / p
        x_new = jnp.matmul(xk, t, precision=_HIGHEST)
        m_new = jnp.matmul(_matrix_power(t, p), mk, precision=_HIGHEST)
        err_new = _inf_norm(m_new - eye)
        # Early iterations may raise the error (the largest eigenvalues of M_0 start above 1); growth only means
        # round-off once the iteration is converging.
        improving = (err_new < _NEWTON_GROWTH * err) | (err >= _NEWTON_CONVERGING)
        return i + 1, m_new, x_new, xk, err_new, improving

    init = (jnp.zeros((), jnp.int32), m0, x0, x0, err0, jnp.isfinite(err0))
    i, _, x, x_prev, _, improving = lax.while_loop(cond, body, init)
    # The last iteration is kept unless it made things worse.
    return jnp.where(improving, x, x_prev), ridge, i


def inverse_pth_root(
    matrix,
    p: int,
    *,
    method: RootMethod = RootMethod.EIGH,
    ridge_epsilon=1e-6,
    num_iters: int = 100,
    tol=None,
) -> tuple[jax.Array, RootInfo]:
    r"""The inverse ``p``-th root ``X = (M + ridge I)^{-1/p}`` of symmetric PSD matrices, batched.

    The ridge is relative to the spectrum: ``ridge = ridge_epsilon * λ_max(M)`` (the exact largest eigenvalue for
    ``EIGH``, a power-iteration estimate for ``COUPLED_NEWTON``), so the result does not depend on the scale of
    ``M`` beyond ``X(c M) = c^{-1/p} X(M)``, and ``M + ridge I`` has condition number at most about
    ``1 / ridge_epsilon``. A matrix with no positive eigenvalue (the zero matrix) gets ``ridge = ridge_epsilon``,
    so its root is ``ridge_epsilon^{-1/p} I``, finite.

    Only the symmetric part ``(M + M^T) / 2`` is used. Non-finite input gives a non-finite root and
    ``info.is_finite = False`` (and a ``nan`` residual); nothing is raised, so the check works under ``jit`` and
    the caller decides (Shampoo keeps its previous preconditioner).

    Args:
      matrix: array of shape ``(..., n, n)``: a stack of symmetric PSD matrices, real floating dtype. Half
        precision is computed in float32.
      p: the root order, a positive Python int (static).
      method: a :class:`RootMethod`.
      ridge_epsilon: non-negative, relative ridge (may be traced).
      num_iters: maximum Newton iterations (``COUPLED_NEWTON`` only).
      tol: Newton's stopping tolerance on ``‖M_k - I‖_∞``; ``None`` means ``100 * eps`` of the computation dtype
        (about ``1e-5`` in float32, ``2e-14`` in float64).

    Returns:
      ``(root, info)``: ``root`` of the shape and dtype of ``matrix``, and a :class:`RootInfo` with fields of the
      batch shape ``matrix.shape[:-2]``.

    Raises:
      TypeError: ``matrix`` is not real floating, or ``method`` is not a :class:`RootMethod`.
      ValueError: ``matrix`` is not a stack of square matrices, ``p`` is not a positive int, ``ridge_epsilon`` or
        ``tol`` is negative, or ``num_iters`` is not a positive int.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit.optim import inverse_pth_root, RootMethod
      >>> g = jax.random.normal(jax.random.key(0), (3, 5, 8))
      >>> m = g @ jnp.swapaxes(g, -1, -2)          # three 5 x 5 PSD blocks
      >>> x, info = inverse_pth_root(m, 4)
      >>> x.shape, info.residual.shape, bool(info.is_finite.all())
      ((3, 5, 5), (3,), True)
      >>> xn, _ = inverse_pth_root(m, 4, method=RootMethod.COUPLED_NEWTON)
      >>> bool(jnp.allclose(x, xn, rtol=1e-3, atol=1e-3))
      True
    """
    matrix = _check_matrix(matrix)
    p = _check_p(p)
    method = _check_method(method)
    ridge_epsilon = _check_nonnegative(ridge_epsilon, "ridge_epsilon")
    num_iters = _check_num_iters(num_iters)
    tol = _check_nonnegative(tol, "tol", allow_none=True)

    out_dtype = matrix.dtype
    dtype = _compute_dtype(out_dtype)
    batch, n = matrix.shape[:-2], matrix.shape[-1]
    m = _symmetric(matrix.astype(dtype)).reshape((-1, n, n))
    eps = jnp.asarray(ridge_epsilon, dtype)
    tol_ = jnp.asarray(100 * jnp.finfo(dtype).eps if tol is None else tol, dtype)

    def fn(a):
        if method is RootMethod.EIGH:
            return _eigh_root(a, p, eps)
        return _newton_root(a, p, eps, num_iters, tol_)

    if m.shape[0] == 0:
        root, ridge, iters = m, jnp.zeros((0,), dtype), jnp.zeros((0,), jnp.int32)
    else:
        root, ridge, iters = jax.vmap(fn)(m)
    eye = jnp.eye(n, dtype=dtype)
    residual = _residual(root, m + ridge[:, None, None] * eye[None], p)
    is_finite = jnp.all(jnp.isfinite(root), axis=(-2, -1))
    residual = jnp.where(is_finite, residual, jnp.nan)
    info = RootInfo(
        residual=residual.reshape(batch),
        ridge=ridge.reshape(batch),
        num_iters=iters.reshape(batch),
        is_finite=is_finite.reshape(batch),
    )
    return root.reshape(matrix.shape).astype(out_dtype), info
