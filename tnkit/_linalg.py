"""Matrix factorisations with derivatives that stay finite at degenerate points.

Every tensor-network algorithm in tnkit that truncates or re-gauges a network goes through two primitives:

* :func:`left_svd` -- the left singular vectors and singular values of a matrix ``a`` of shape ``(m, n)``.
* :func:`left_orthonormal` -- a factorisation ``a = q @ b`` with ``q`` of orthonormal columns (QR, or an SVD
  where QR's derivative is not defined).

JAX's own ``jnp.linalg.svd`` and ``jnp.linalg.qr`` differentiate to ``inf``/``nan`` when singular values are
repeated or zero (the derivative contains ``1 / (s_i**2 - s_j**2)`` and ``1 / s_i``; QR's contains ``r^{-1}``).
Such points are the rule in tensor networks, not the exception: a TT built as ``a + a`` has exactly rank-deficient
unfoldings, and a TT-SVD at full rank keeps zero singular values. The custom JVPs here replace the ill-defined
inverses by zero (a pseudo-inverse), which gives the exact derivative wherever one exists and a finite one
elsewhere. Gauge freedoms (the phase of a complex singular vector, rotations inside a degenerate singular
subspace) are fixed by setting their derivative to zero; gauge-invariant quantities, such as the dense tensor a
network represents, do not depend on that choice.
"""

from __future__ import annotations

import enum
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import _checks

_HIGHEST = lax.Precision.HIGHEST


class SVDMethod(enum.Enum):
    """How :func:`left_svd` computes the factorisation of a wide matrix (``m <= n``).

    Attributes:
      AUTO: Gram matrix ``a a^H`` and ``eigh`` (one matrix product and a small eigenproblem, several times faster
        than an SVD of the wide matrix) when :func:`gram_is_reliable` says the truncation it gives is as good as
        an SVD's (within 0.01% in error). Otherwise, for wide matrices (``n >= 2 m``), a second stage that uses the
        Gram eigenvectors as a preconditioner (two more matrix products and an SVD of an ``m x m`` matrix; see
        :func:`_preconditioned_gram_left_svd`): backward stable like ACCURATE, with errors measured equal to its
        own to rounding, and about half the time of LAPACK's QR on a 2-core CPU; ACCURATE itself if a Cholesky
        factorisation of that stage fails, and for matrices with ``n < 2 m``. Decided on device, so it works under
        ``jit``. Under ``vmap`` the fallback runs only when some matrix of the batch needs it (and then for the
        whole batch, the Gram result kept where it was reliable). On data whose discarded singular values lie
        below the Gram matrix's rounding noise (smooth functions sampled on a grid, truncated far down their
        spectrum) every step falls back, and AUTO then takes about as long as ACCURATE (``benchmarks/README.md``,
        the ``smooth`` rows of TT-SVD and TR-SVD). In :func:`tnkit.tt.round` (with ``max_rank``) AUTO also
        skips the QR orthogonalisation where a certificate proves GRAM's rounding as good (see there).
      GRAM: always the Gram matrix. Squares the condition number: accurate only for singular values above about
        ``sqrt(eps) * s_1``. In :func:`tnkit.tt.round` (with ``max_rank``) it also replaces the QR
        orthogonalisation by Gram matrices of the right parts, the fastest rounding where that accuracy suffices.
      ACCURATE: a QR factorisation of ``a^H`` followed by an SVD of the small triangular factor; backward stable.
    """

    AUTO = "auto"
    GRAM = "gram"
    ACCURATE = "accurate"


def check_method(method, name: str = "method") -> None:
    """Raise a ``TypeError`` unless ``method`` is an :class:`SVDMethod`.

    That is the enum every module re-exports (``tnkit.tt.SVDMethod``, ``tnkit.tr.SVDMethod``, ...); a string such
    as ``"gram"`` is not one.
    """
    if not isinstance(method, SVDMethod):
        choices = ", ".join(m.name for m in SVDMethod)
        raise TypeError(f"{name} must be a tnkit.tt.SVDMethod ({choices}), got {method!r}")


def _safe_reciprocal(x, tol):
    """``1 / x`` where ``|x| > tol``, else ``0``; NaN-free in value and derivative."""
    ok = jnp.abs(x) > tol
    return jnp.where(ok, 1.0 / jnp.where(ok, x, 1.0), 0.0)


def safe_sqrt(sq):
    """``sqrt(sq)`` of a real array whose negative entries are rounding noise: ``0`` where ``sq <= 0``, with a
    derivative that is finite (zero) there, and NaN where ``sq`` is NaN (a non-finite input must not come out as a
    norm of zero).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit._linalg import safe_sqrt
      >>> safe_sqrt(jnp.array([4.0, 0.0, -1e-18, jnp.nan])).tolist()
      [2.0, 0.0, 0.0, nan]
      >>> float(jax.grad(safe_sqrt)(0.0))
      0.0
    """
    ok = sq > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), jnp.where(jnp.isnan(sq), sq, 0.0))


def _hermitian(x):
    return jnp.swapaxes(x, -1, -2).conj()


def _accurate_left_svd(a):
    m, n = a.shape
    if m > n:
        q, r = jnp.linalg.qr(a)
        w, s, _ = jnp.linalg.svd(r, full_matrices=False)
        return jnp.matmul(q, w, precision=_HIGHEST), s
    if n >= 2 * m:
        # a = r^H q^H with r (m, m): the SVD of the small factor gives the left singular vectors of a.
        r = jnp.linalg.qr(_hermitian(a), mode="r")
        u, s, _ = jnp.linalg.svd(_hermitian(r), full_matrices=False)
        return u, s
    u, s, _ = jnp.linalg.svd(a, full_matrices=False)
    return u, s


def _gram_eigh(a):
    """Eigenvalues (descending) and eigenvectors of the Gram matrix ``a a^H``."""
    gram = jnp.matmul(a, _hermitian(a), precision=_HIGHEST)
    lam, v = jnp.linalg.eigh(gram)
    return lam[::-1], v[:, ::-1]


def _gram_left_svd(a):
    lam, v = _gram_eigh(a)
    return v, jnp.sqrt(jnp.maximum(lam, 0.0))


def _preconditioned_gram_left_svd(a, lam, v):
    """Left SVD of a wide ``a`` (``m <= n``) from its Gram eigenpairs ``(lam, v)`` (:func:`_gram_eigh`), accurate to
    the level of the QR route. Returns ``(u, s, ok)``; ``ok`` is False where a Cholesky factorisation failed.

    The Gram eigenvectors ``v`` are exactly orthonormal but inaccurate for small singular values. They still make a
    good preconditioner: with ``d_i = sqrt(lam_i + mu)``, ``mu`` the Gram matrix's rounding noise, the rows of
    ``y = diag(1/d) v^H a`` have norms between 0 and about 1, so ``y``'s own Gram matrix loses nothing that
    matters to rounding. Its Cholesky factor ``f`` (``f f^H = y y^H + nu I``, ``nu`` that matrix's noise) gives
    ``a = (v diag(d) f) (f^{-1} y)``, where ``f^{-1} y`` has orthonormal rows up to a deviation that ``v diag(d) f``
    weights by at most about ``sqrt(mu nu) = O(eps) ||a||``; the SVD of the ``m x m`` matrix ``v diag(d) f`` then
    gives the left singular vectors and singular values of ``a`` with a backward error of order ``eps ||a||``, like
    Householder QR. Computing ``v^H a`` before scaling keeps the rounding of that product from being amplified
    (a triangular preconditioner applied as an explicit inverse would amplify it by its condition number).

    Cost: two products of ``m^2 n`` multiply-adds (``v^H a`` and ``y y^H``) on top of the Gram route's one, and
    small ``m x m`` factorisations. On a 2-core CPU, ``64 x 32768`` float64: ~11 ms beyond the Gram route,
    against ~21 ms for LAPACK's QR of ``a^H`` alone.
    """
    m, n = a.shape
    eps = jnp.finfo(lam.dtype).eps
    noise = (n**0.5 + m) * eps
    d = jnp.sqrt(jnp.maximum(lam, 0.0) + noise * jnp.maximum(lam[0], 0.0))  # all zero only for a = 0
    y = jnp.matmul(_hermitian(v), a, precision=_HIGHEST) / jnp.where(d > 0, d, 1.0).astype(a.dtype)[:, None]
    g = jnp.matmul(y, _hermitian(y), precision=_HIGHEST)
    nu = noise * jnp.max(jnp.real(jnp.diagonal(g))) + jnp.finfo(lam.dtype).tiny
    f = jnp.linalg.cholesky(g + nu * jnp.eye(m, dtype=g.dtype))
    ok = jnp.all(jnp.isfinite(f))
    u, s, _ = jnp.linalg.svd(jnp.matmul(v * d.astype(v.dtype)[None, :], jnp.where(ok, f, 0.0), precision=_HIGHEST))
    return u, s, ok


def gram_is_reliable(s, rank: int, n: int):
    """Whether a truncation at ``rank`` computed from the Gram matrix of an ``(m, n)`` matrix is as good as an SVD's.

    ``s`` are the singular values (descending, length ``m``) obtained from the Gram matrix. Forming ``a a^H`` and
    diagonalising it perturbs the Gram matrix by ``E`` with ``||E|| <~ noise = (sqrt(n) + m) * eps * s_1^2``. The
    kept subspace then loses ``min(2 rank noise, noise^2 / gap)`` of squared norm compared to the optimal one
    (second order in ``E``; ``gap = s_rank^2 - s_{rank+1}^2``). The Gram route is accepted when that loss is at most
    ``1e-4`` of the squared tail that the truncation discards anyway (so the error grows by at most ``0.01%``), and
    the tail itself is well above the eigenvalue noise. Without truncation (``rank >= m``) it is always exact,
    because the full eigenbasis is orthogonal and the remainder ``u^H a`` is computed from ``a``.

    Works on traced values (the decision runs on device).
    """
    m = s.shape[0]
    if rank >= m:
        return jnp.asarray(True)
    eps = jnp.finfo(s.dtype).eps
    return gram_is_reliable_given_noise(s, rank, (n**0.5 + m) * eps * s[0] * s[0])


def gram_is_reliable_given_noise(s, rank: int, noise):
    """:func:`gram_is_reliable` for a Gram matrix known only to within ``noise`` (a bound on the 2-norm of its
    error, in the units of ``s**2``), for example one assembled from other Gram matrices."""
    m = s.shape[0]
    if rank >= m:
        return jnp.asarray(True)
    lam = s * s
    tail = jnp.sum(lam[rank:])
    gap = lam[rank - 1] - lam[rank]
    extra = jnp.minimum(2 * rank * noise, noise * noise / jnp.maximum(gap, jnp.finfo(s.dtype).tiny))
    return (tail >= 2 * (m - rank) * noise) & (extra <= 1e-4 * tail)


@jax.custom_batching.custom_vmap
def all_over_batch(flag):
    """``flag`` (a boolean scalar) itself; under ``jax.vmap``, one unbatched ``jnp.all`` of it over the batch (any
    number of nested ``vmap`` axes).

    For a ``lax.cond`` whose predicate is computed per element but must stay one decision for a batch: with a
    batched predicate ``vmap`` turns the cond into a select that runs both branches for every element.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit._linalg import all_over_batch
      >>> jax.vmap(lambda x: all_over_batch(x > 0) * x)(jnp.array([1.0, 2.0, -3.0])).tolist()
      [0.0, 0.0, -0.0]
    """
    return flag


@all_over_batch.def_vmap
def _all_over_batch_rule(axis_size, in_batched, flag):
    (batched,) = in_batched
    return all_over_batch(jnp.all(flag) if batched else flag), False


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def left_svd(a, rank: int, method: SVDMethod = SVDMethod.AUTO):
    """Left singular vectors and singular values of ``a``.

    Args:
      a: matrix of shape ``(m, n)``, real or complex.
      rank: the truncation rank the caller will apply; only used by ``SVDMethod.AUTO`` to decide whether the fast
        Gram method is accurate enough for it. Static.
      method: a :class:`SVDMethod`. Static.

    Returns:
      ``(u, s)``: ``u`` of shape ``(m, k)`` with orthonormal columns and ``s`` of shape ``(k,)``, real, descending,
      ``k = min(m, n)``, such that ``a = u @ diag(s) @ v^H`` for some ``v`` with orthonormal columns.

    The derivative is finite for repeated and zero singular values (see the module docstring).
    """
    m, n = a.shape
    if m > n or method is SVDMethod.ACCURATE:
        return _accurate_left_svd(a)
    if method is SVDMethod.GRAM:
        return _gram_left_svd(a)
    return _auto_left_svd(rank)(a)


def _accurate_left_svd_stack(a):
    """:func:`_accurate_left_svd` of each matrix of a stack ``(B, m, n)``: the last resort of AUTO (a seam for
    tests)."""
    return jax.vmap(_accurate_left_svd)(a)


def _fallback_left_svd_stack(a, lam, v):
    """AUTO's fallback on a stack ``(B, m, n)`` with its Gram eigenpairs (a seam for tests):
    :func:`_preconditioned_gram_left_svd` for wide matrices (``n >= 2 m``), the QR or SVD route of
    :func:`_accurate_left_svd` for the others and for any stack in which a Cholesky factorisation failed."""
    m, n = a.shape[1:]
    if n < 2 * m:
        return _accurate_left_svd_stack(a)
    u, s, ok = jax.vmap(_preconditioned_gram_left_svd)(a, lam, v)
    return lax.cond(jnp.all(ok), lambda: (u, s), lambda: _accurate_left_svd_stack(a))


def _fallback_left_svd(a, lam, v):
    """:func:`_fallback_left_svd_stack` for one matrix ``(m, n)``."""
    m, n = a.shape
    if n < 2 * m:
        return _accurate_left_svd(a)
    u, s, ok = _preconditioned_gram_left_svd(a, lam, v)
    return lax.cond(ok, lambda: (u, s), lambda: _accurate_left_svd(a))


def _auto_left_svd_stack_impl(a, rank: int):
    """``SVDMethod.AUTO`` on a stack ``a`` of shape ``(B, m, n)``, ``m <= n``, with one decision for the stack.

    Every matrix takes the Gram route; the fallback (:func:`_fallback_left_svd_stack`) runs on the whole stack, its
    results selected where :func:`gram_is_reliable` cannot vouch for the Gram route, only when some matrix of the
    stack needs it. A stack of one runs unbatched: the batched QR and SVD of a single matrix are slower on CPU
    (TR-SVD of a smooth ``(8,)*7`` tensor, every step falling back to the QR route: 115 ms batched against 77 ms
    unbatched, interleaved).
    """
    if a.shape[0] == 1:
        single = _auto_left_svd_single(a[0], rank)
        return single[0][None], single[1][None]
    n = a.shape[2]
    lam, v = jax.vmap(_gram_eigh)(a)
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    ok = jax.vmap(lambda s: gram_is_reliable(s, rank, n))(s)

    def with_fallback():
        u_acc, s_acc = _fallback_left_svd_stack(a, lam, v)
        return jnp.where(ok[:, None, None], v, u_acc), jnp.where(ok[:, None], s, s_acc)

    return lax.cond(jnp.all(ok), lambda: (v, s), with_fallback)


def _auto_left_svd_single(a, rank: int):
    """:func:`_auto_left_svd_stack_impl` for one matrix ``(m, n)``."""
    n = a.shape[1]
    lam, v = _gram_eigh(a)
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    ok = gram_is_reliable(s, rank, n)
    return lax.cond(ok, lambda: (v, s), lambda: _fallback_left_svd(a, lam, v))


@functools.lru_cache(maxsize=None)
def _auto_left_svd(rank: int):
    """``SVDMethod.AUTO`` for one wide matrix, as a function of ``a`` with a custom batching rule.

    Under ``jax.vmap`` the batch (any number of nested ``vmap`` axes) is folded into one stack, so that the choice
    between the routes stays one ``lax.cond`` on device for the whole batch instead of becoming a select that would
    run every route for every element (as a ``lax.cond`` with a batched predicate does).
    """

    # Both functions take one argument, so vmap calls their rules only with it batched (leading axis).

    @jax.custom_batching.custom_vmap
    def stack(a):
        return _auto_left_svd_stack_impl(a, rank)

    @stack.def_vmap
    def stack_batched(axis_size, in_batched, a):  # a: (axis_size, B, m, n)
        u, s = stack(a.reshape((-1,) + a.shape[2:]))
        lead = a.shape[:2]
        return (u.reshape(lead + u.shape[1:]), s.reshape(lead + s.shape[1:])), (True, True)

    @jax.custom_batching.custom_vmap
    def single(a):
        return _auto_left_svd_single(a, rank)

    @single.def_vmap
    def single_batched(axis_size, in_batched, a):  # a: (axis_size, m, n)
        return stack(a), (True, True)

    return single


@left_svd.defjvp
def _left_svd_jvp(rank, method, primals, tangents):
    (a,), (da,) = primals, tangents
    u, s = left_svd(a, rank, method)
    m, k = u.shape
    lam = s * s
    tol = jnp.finfo(s.dtype).eps * k * lam[0] + jnp.finfo(s.dtype).tiny
    c = jnp.matmul(_hermitian(a), u, precision=_HIGHEST)  # (n, k) = v diag(s)
    dac = jnp.matmul(da, c, precision=_HIGHEST)  # (m, k)
    x = jnp.matmul(_hermitian(u), dac, precision=_HIGHEST)  # (k, k) = (u^H da v) diag(s)
    ds = jnp.real(jnp.diagonal(x)) * _safe_reciprocal(s, jnp.sqrt(tol))
    f = _safe_reciprocal(lam[None, :] - lam[:, None], tol)  # f_ij = 1 / (s_j^2 - s_i^2)
    du = jnp.matmul(u, f.astype(u.dtype) * (x + _hermitian(x)), precision=_HIGHEST)
    if m > k:
        # Component of the column space that leaves span(u): (1 - u u^H) da v diag(1 / s).
        outside = dac - jnp.matmul(u, x, precision=_HIGHEST)
        du = du + outside * _safe_reciprocal(lam, tol).astype(u.dtype)[None, :]
    return (u, s), (du, ds)


@jax.custom_jvp
def _thin_qr(a):
    q, r = jnp.linalg.qr(a)  # a plain tuple: the JVP rule must return the same pytree structure
    return q, r


def _pinv_triangular(r):
    """Pseudo-inverse of a small square matrix through its SVD (singular values below ``eps * k * s_1`` dropped)."""
    w, s, zh = jnp.linalg.svd(r)
    tol = jnp.finfo(s.dtype).eps * s.shape[0] * s[0] + jnp.finfo(s.dtype).tiny
    return jnp.matmul(_hermitian(zh) * _safe_reciprocal(s, tol).astype(r.dtype)[None, :], _hermitian(w))


@_thin_qr.defjvp
def _thin_qr_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    q, r = _thin_qr(a)
    # The textbook QR derivative with r^{-1} replaced by the pseudo-inverse: exact when r is invertible.
    da_rinv = jnp.matmul(da, _pinv_triangular(r), precision=_HIGHEST)
    qt = jnp.matmul(_hermitian(q), da_rinv, precision=_HIGHEST)
    lower = jnp.tril(qt, -1)
    omega = lower - _hermitian(lower)
    if jnp.iscomplexobj(qt):
        omega = omega + jnp.diag(1j * jnp.imag(jnp.diagonal(qt)))
    dq = jnp.matmul(q, omega - qt, precision=_HIGHEST) + da_rinv
    dr = jnp.matmul(qt - omega, r, precision=_HIGHEST)
    return (q, r), (dq, dr)


def left_orthonormal(a):
    """Factor ``a = q @ b`` with ``q`` of orthonormal columns.

    Args:
      a: matrix of shape ``(m, n)``.

    Returns:
      ``(q, b)`` with ``q`` of shape ``(m, k)``, ``b`` of shape ``(k, n)``, ``k = min(m, n)``. For ``m >= n`` this is
      the thin QR factorisation; for ``m < n`` (where QR has no derivative in JAX) it is ``q = u`` from an SVD and
      ``b = u^H a``.
    """
    m, n = a.shape
    if m >= n:
        return _thin_qr(a)
    u, _ = left_svd(a, m, SVDMethod.ACCURATE)
    return u, jnp.matmul(_hermitian(u), a, precision=_HIGHEST)


def truncation_rank(s, *, max_rank: int | None, abs_tol: float | None) -> int:
    """Smallest rank ``r <= max_rank`` whose discarded tail satisfies ``sqrt(sum_{i >= r} s_i^2) <= abs_tol``.

    Args:
      s: concrete singular values, descending (a NumPy array: this is where tolerance-based truncation forces
        eager execution).
      max_rank: upper bound on the rank, or ``None``.
      abs_tol: absolute bound on the discarded tail, or ``None`` for no tolerance.

    Returns:
      An int in ``[1, len(s)]``.
    """
    s = np.asarray(s, dtype=np.float64)
    k = s.shape[0]
    rank = k if max_rank is None else min(max_rank, k)
    if abs_tol is None:
        return rank
    tail = np.concatenate([np.cumsum((s * s)[::-1])[::-1], [0.0]])  # tail[r] = sum_{i >= r} s_i^2
    needed = int(np.argmax(tail <= abs_tol**2))  # tail[k] = 0, so some r qualifies
    return max(1, min(rank, needed))


def left_svd_with_tolerance(a, max_rank, abs_tol, method):
    """Eager: factor ``a`` and pick the smallest rank whose discarded tail is at most ``abs_tol``."""
    m, n = a.shape
    k = min(m, n)
    if method is SVDMethod.AUTO and m <= n:
        u, s = left_svd(a, k, SVDMethod.GRAM)
        lam = _checks.concrete(s).astype(np.float64) ** 2
        # Gram eigenvalues carry an absolute error of about `noise` each (see gram_is_reliable): choose the
        # rank from a tail inflated by that error, and shrink the budget by the 0.01% the Gram route may add.
        noise = (math.sqrt(n) + m) * np.finfo(_checks.concrete(s).dtype).eps * lam[0]
        tail = np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]]) + noise * (k - np.arange(k + 1))
        rank = max(1, int(np.argmax(tail <= abs_tol**2 / 1.0001)))
        rank = rank if max_rank is None else min(rank, max_rank)
        # Below ~k * noise the Gram spectrum cannot tell which singular values fit the budget.
        if abs_tol**2 >= 2 * k * noise and bool(gram_is_reliable(s, rank, n)):
            return u, rank
        method = SVDMethod.ACCURATE
    u, s = left_svd(a, k, method)
    return u, truncation_rank(_checks.concrete(s), max_rank=max_rank, abs_tol=abs_tol)
