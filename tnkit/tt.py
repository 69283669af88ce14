"""The tensor-train (TT / MPS) algebra: pure functions on :class:`tnkit.TT`.

Conventions:
  * Core ``k`` has shape ``(r_{k-1}, n_k, r_k)`` with ``r_0 = r_d = 1``.
  * ``inner(a, b) = sum(conj(a) * b)``: conjugate-linear in the first argument (like ``jnp.vdot``).
  * Every function works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` with one exception: a tolerance
    (``rtol``) chooses ranks from the data, so ``from_dense(..., rtol=...)`` and ``round(..., rtol=...)`` need
    concrete arrays and run eagerly (they raise a clear error under ``jit``). ``max_rank`` alone gives static
    shapes and is jit-compatible.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import tt
  >>> x = jnp.arange(2.0 * 3 * 4).reshape(2, 3, 4)
  >>> t = tt.from_dense(x, rtol=1e-6)
  >>> t.ranks
  (1, 2, 2, 1)
  >>> bool(jnp.allclose(tt.to_dense(t), x, atol=1e-4))
  True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import _checks, _cores, _linalg
from tnkit._checks import check_dims as _check_dims
from tnkit._checks import concrete as _concrete
from tnkit._checks import require_concrete as _require_concrete
from tnkit._checks import validate_rank_request as _validate_rank_request
from tnkit._linalg import left_svd_with_tolerance as _left_svd_with_tolerance
from tnkit._linalg import SVDMethod
from tnkit.formats import TT

__all__ = [
    "from_dense",
    "to_dense",
    "round",
    "orthogonalize",
    "add",
    "sub",
    "scale",
    "hadamard",
    "inner",
    "norm",
    "get",
    "mode_product",
    "contract_modes",
    "contract_all",
    "sum",
    "kron",
    "random",
    "zeros",
    "ones",
    "SVDMethod",
]

_HIGHEST = lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------- validation helpers


def _check_tt(t, name: str = "t") -> TT:
    if not isinstance(t, TT):
        raise TypeError(f"{name} must be a tnkit.TT, got {type(t).__name__}")
    return t


def _check_same_dims(a: TT, b: TT, names=("a", "b")) -> None:
    if a.dims != b.dims:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dims, got {a.dims} and {b.dims}")


# ---------------------------------------------------------------------------------------------- dense conversions


def from_dense(x, *, max_rank: int | None = None, rtol: float | None = None, method: SVDMethod = SVDMethod.AUTO) -> TT:
    """Tensor train of a dense tensor by TT-SVD.

    Sweeps left to right; at step ``k`` it factors the unfolding of shape ``(r_{k-1} n_k, n_{k+1} ... n_d)`` and keeps
    the leading singular vectors.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, ``d >= 1``, floating or complex.
      max_rank: largest bond dimension kept. jit-compatible (static shapes).
      rtol: relative error bound. The result satisfies ``||x - to_dense(t)|| <= rtol * ||x||`` (Frobenius norm):
        each of the ``d - 1`` truncations discards at most ``rtol * ||x|| / sqrt(d - 1)``. Forces eager
        execution. With both arguments, the rank is the smaller of the two choices (the bound then holds only if
        ``max_rank`` is not the binding one).
      method: how each wide unfolding is factored (a :class:`tnkit.tt.SVDMethod`); the default picks the fast
        Gram-matrix route only where it is accurate for the rank being kept.

    Returns:
      A :class:`tnkit.TT` with ``ranks[k] <= min(prod(n_1..n_k), prod(n_{k+1}..n_d))``. Left cores are
      left-orthonormal; the norm sits in the last core. A step that truncates nothing (the unfolding has at most
      ``max_rank`` rows or columns) skips the SVD and keeps an orthonormal basis from the identity or a QR
      factorisation, so the cores need not be singular vectors.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import tt
      >>> x = jnp.ones((4, 4, 4)) + 1e-3 * jnp.arange(64.0).reshape(4, 4, 4)
      >>> tt.from_dense(x, max_rank=1).ranks
      (1, 1, 1, 1)
      >>> t = tt.from_dense(x, rtol=1e-2)
      >>> bool(jnp.linalg.norm(tt.to_dense(t) - x) <= 1e-2 * jnp.linalg.norm(x))
      True
    """
    _validate_rank_request(max_rank, rtol)
    _linalg.check_method(method)
    if not hasattr(x, "ndim"):
        x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis, got shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        raise TypeError(f"x must have a floating or complex dtype, got {x.dtype}")
    x = jnp.asarray(x)
    dims = x.shape
    d = len(dims)
    if d == 1:
        return TT([x.reshape(1, dims[0], 1)])
    abs_tol = None
    if rtol is not None:
        _require_concrete(x, "from_dense")
        abs_tol = float(rtol) * float(_concrete(jnp.linalg.norm(x))) / math.sqrt(d - 1)
    cores = []
    rest = x
    r_prev = 1
    for k in range(d - 1):
        a = rest.reshape(r_prev * dims[k], -1)
        k_max = min(a.shape)
        rank_hint = k_max if max_rank is None else min(max_rank, k_max)
        if abs_tol is None and rank_hint == k_max:
            # Nothing to truncate: any orthonormal basis will do, and the cheapest is exact.
            if a.shape[0] <= a.shape[1]:
                u, rest = jnp.eye(a.shape[0], dtype=a.dtype), a
            else:
                u, rest = _linalg.left_orthonormal(a)
            rank = k_max
        else:
            if abs_tol is None:
                u, _ = _linalg.left_svd(a, rank_hint, method)
                rank = rank_hint
            else:
                u, rank = _left_svd_with_tolerance(a, max_rank, abs_tol, method)
            u = u[:, :rank]
            rest = jnp.matmul(u.conj().T, a, precision=_HIGHEST)
        cores.append(u.reshape(r_prev, dims[k], rank))
        r_prev = rank
    cores.append(rest.reshape(r_prev, dims[-1], 1))
    return TT(cores)


def to_dense(t: TT) -> jax.Array:
    """The dense tensor of shape ``t.dims`` that ``t`` represents.

    Example:
      >>> import jax
      >>> from tnkit import tt
      >>> tt.to_dense(tt.random(jax.random.key(0), (2, 3, 4), 2)).shape
      (2, 3, 4)
    """
    _check_tt(t)
    return _left_block(t, t.ndim).reshape(t.dims)


# ----------------------------------------------------------------------------------------- gauge and truncation


def orthogonalize(t: TT, center: int) -> TT:
    """Move the orthogonality centre of ``t`` to core ``center`` (mixed-canonical form).

    Cores ``0..center-1`` become left-orthonormal (``sum_{r,n} conj(G[r,n,a]) G[r,n,b] = delta_ab``) and cores
    ``center+1..d-1`` right-orthonormal; the dense tensor is unchanged. A rank larger than the side it factorises
    shrinks to that size (for example ``r_1 > n_1`` becomes ``n_1`` when core 0 is made left-orthonormal); ranks
    never grow.

    Args:
      t: a TT.
      center: core index in ``[-d, d)`` (negative counts from the end).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.orthogonalize(tt.random(jax.random.key(0), (3, 4, 5), 3), 2)
      >>> g = t.cores[0].reshape(-1, t.ranks[1])
      >>> bool(jnp.allclose(g.T @ g, jnp.eye(t.ranks[1]), atol=1e-5))
      True
    """
    _check_tt(t)
    d = t.ndim
    if not isinstance(center, (int, np.integer)) or not -d <= center < d:
        raise ValueError(f"center must be an int in [-{d}, {d}) for a TT with {d} cores, got {center!r}")
    center = int(center) % d
    cores = list(t.cores)
    for k in range(center):
        cores[k], cores[k + 1] = _orthonormalize_left(cores[k], cores[k + 1])
    for k in range(d - 1, center, -1):
        cores[k - 1], cores[k] = _orthonormalize_right(cores[k - 1], cores[k])
    return TT(cores)


def _orthonormalize_left(core, following):
    """Make ``core`` left-orthonormal and push the remainder into ``following``."""
    r, n, r_next = core.shape
    q, b = _linalg.left_orthonormal(core.reshape(r * n, r_next))
    k = q.shape[1]
    following = jnp.einsum("ab,bnc->anc", b, following, precision=_HIGHEST)
    return q.reshape(r, n, k), following


def _orthonormalize_right(preceding, core):
    """Make ``core`` right-orthonormal and push the remainder into ``preceding``."""
    r, n, r_next = core.shape
    q, b = _linalg.left_orthonormal(core.reshape(r, n * r_next).T)  # core^T = q b  =>  core = b^T q^T
    k = q.shape[1]
    preceding = jnp.einsum("anb,cb->anc", preceding, b, precision=_HIGHEST)
    return preceding, q.T.reshape(k, n, r_next)


def round(  # noqa: A001
    t: TT, *, max_rank: int | None = None, rtol: float | None = None, method: SVDMethod = SVDMethod.AUTO
) -> TT:
    """Re-compress ``t`` to lower ranks (TT-rounding).

    A left-to-right sweep of truncations, each seeing the rest of the train through an orthonormal basis (after a
    right-to-left QR orthogonalisation) or through a factor of its Gram matrix (see ``method``). Ranks never
    increase.

    Args:
      t: a TT.
      max_rank: largest bond dimension kept. jit-compatible.
      rtol: relative error bound ``||to_dense(t) - to_dense(result)|| <= rtol * ||t||``, split evenly over the
        ``d - 1`` truncations. Forces eager execution.
      method: how the truncations are computed (a :class:`tnkit.tt.SVDMethod`).

        * ``GRAM`` (with ``max_rank`` or nothing; with ``rtol`` it truncates like AUTO without the fallback) skips
          the QR orthogonalisation: it builds the Gram matrices of the right parts with matrix products and
          truncates through them, which squares condition numbers, so singular values below about ``sqrt(eps)``
          times the largest are not resolved.
        * ``AUTO`` (the default), with ``max_rank`` or nothing, computes the GRAM result together with a
          certificate: bounds on the rounding errors of the Gram matrices, carried along the sweep as positive
          semi-definite matrices, and at each truncation the test of
          :func:`tnkit._linalg.gram_is_reliable_given_noise` (the truncation provably within 0.01% of an SVD's
          in error). If every truncation passes it returns that result; otherwise (for example where the rounding
          is nearly exact, as for ``t + t`` to its own ranks) it orthogonalises with QR and truncates with Gram
          matrices where reliable and SVDs elsewhere, which it also does with ``rtol``. Under ``jax.vmap`` the
          choice is made once for the whole batch. Timings on the ``tt_round`` benchmark (a sum of two d = 32,
          rank-32 TTs to rank 16, float64, 2-core CPU, ``benchmarks/README.md``): GRAM 14.3 ms, AUTO 18.1 ms
          (certified), ACCURATE 40.1 ms; where the certificate fails AUTO pays for both routes.
        * ``ACCURATE`` orthogonalises and always takes the SVD.

    Example:
      >>> import jax
      >>> from tnkit import tt
      >>> a = tt.random(jax.random.key(0), (4, 4, 4, 4), 3)
      >>> tt.add(a, a).ranks, tt.round(tt.add(a, a), rtol=1e-6).ranks
      ((1, 6, 6, 6, 1), (1, 3, 3, 3, 1))
    """
    _check_tt(t)
    _validate_rank_request(max_rank, rtol)
    _linalg.check_method(method)
    d = t.ndim
    if d == 1:
        return t
    if rtol is None and method is not SVDMethod.ACCURATE:
        # No orthogonalisation: each truncation sees the right part through a factor of its Gram matrix.
        factors, noise = _right_gram_factors(t)
        gram_cores, certified = _truncation_sweep(list(t.cores), max_rank, None, SVDMethod.GRAM, factors, noise)
        if method is SVDMethod.GRAM:
            return TT(gram_cores)
        # AUTO: keep that result where every truncation is certified as good as an SVD's, else orthogonalise.
        return TT(
            lax.cond(
                _linalg.all_over_batch(certified),
                lambda: gram_cores,
                lambda: _truncation_sweep(list(orthogonalize(t, 0).cores), max_rank, None, method)[0],
            )
        )
    if rtol is not None:
        for c in t.cores:
            _require_concrete(c, "round")
    cores = list(orthogonalize(t, 0).cores)
    abs_tol = None
    if rtol is not None:
        nrm = float(_concrete(jnp.linalg.norm(cores[0])))
        abs_tol = float(rtol) * nrm / math.sqrt(d - 1)
    return TT(_truncation_sweep(cores, max_rank, abs_tol, method)[0])


def _truncation_sweep(cores, max_rank, abs_tol, method, right_factors=None, right_noise=None):
    """The left-to-right truncation sweep of :func:`round`: returns ``(cores, certified)`` (``cores`` updated).

    Without ``right_factors`` the cores right of each bond must be right-orthonormal (after ``orthogonalize(t,
    0)``), so the truncation of core ``k`` alone is the truncation of the whole unfolding. With them,
    ``right_factors[k + 1]`` is an ``(r_{k+1}, q)`` matrix ``F`` with ``F F^H`` proportional to the Gram matrix of
    the cores ``k + 1...`` (see :func:`_right_gram_factors`): the singular vectors are taken from ``a F`` instead.
    With ``right_noise`` (the bounds of :func:`_right_gram_factors`), ``certified`` says whether every truncation
    passed :func:`tnkit._linalg.gram_is_reliable_given_noise` with the error of ``(a F)(a F)^H`` bounded by
    ``||a N a^H||_F + c eps ||a F||_F^2`` (``N = noise[k + 1]``, the error of ``F F^H`` seen through ``a``, plus the
    rounding of ``a F``, of its Gram matrix and of ``eigh``: ``c = m + r_{k+1} + q + 2``); otherwise it is
    ``True``.
    """
    checks = {}  # bonds grouped by shapes, checked together after the sweep (fewer, larger operations)
    for k in range(len(cores) - 1):
        r, n, r_next = cores[k].shape
        a = cores[k].reshape(r * n, r_next)
        f = a if right_factors is None else jnp.matmul(a, right_factors[k + 1], precision=_HIGHEST)
        k_max = min(f.shape)
        if abs_tol is None:
            rank = k_max if max_rank is None else min(max_rank, k_max)
            u, s = _linalg.left_svd(f, rank, method)
            if right_noise is not None:
                checks.setdefault((a.shape, f.shape[1], s.shape, rank), []).append((a, right_noise[k + 1], s, f))
        else:
            u, rank = _left_svd_with_tolerance(f, max_rank, abs_tol, method)
        u = u[:, :rank]
        b = jnp.matmul(u.conj().T, a, precision=_HIGHEST)
        cores[k] = u.reshape(r, n, rank)
        cores[k + 1] = jnp.einsum("ab,bnc->anc", b, cores[k + 1], precision=_HIGHEST)
    certified = jnp.asarray(True)
    for (_, q, _, rank), group in checks.items():
        stacked = [jnp.stack(x) for x in zip(*group)]
        ok = jax.vmap(functools.partial(_gram_truncation_certified, rank=rank, q=q))(*stacked)
        certified = certified & jnp.all(ok)
    return cores, certified


def _gram_truncation_certified(a, noise, s, f, *, rank, q):
    """The test of :func:`_truncation_sweep` for one bond: ``f = a F`` with singular values ``s``, ``F F^H`` known to
    within the positive semi-definite ``noise``."""
    m, r_next = a.shape
    eps = jnp.finfo(s.dtype).eps
    # ||a N a^H||_2 <= ||a N a^H||_F, at most sqrt(m) times too large (the trace, up to m times, failed the decaying
    # benchmark pair at one bond with a near-tie at the rank: 1.3x too loose there)
    seen = jnp.linalg.norm(jnp.matmul(jnp.matmul(a, noise, precision=_HIGHEST), a.conj().T, precision=_HIGHEST))
    rounding = (m + r_next + q + 2) * eps * jnp.sum(jnp.abs(f) ** 2)
    return _linalg.gram_is_reliable_given_noise(s, rank, seen + rounding)


def _right_gram_factors(t: TT) -> tuple[list, list]:
    """Factors ``F_k`` (``k = 1 .. d-1``, shape ``(r_k, q_k)``) with ``F_k F_k^H`` proportional to ``R_k R_k^H``,
    ``R_k`` the cores ``k...`` of ``t`` as an ``(r_k, n_k ... n_d)`` matrix: what ``round(method=GRAM)`` truncates
    through instead of orthogonalising ``t``; and bounds on their errors.

    The best truncation at the bond before core ``k`` keeps the leading left singular vectors of ``a R_k`` (``a``:
    the carried core ``k - 1``), which are those of ``a F_k`` for any such factor. A right-to-left sweep of matrix
    products builds the Gram matrices (normalised to trace 1; the scale does not change singular vectors and keeps
    long trains in range), and a Cholesky factorisation of each gives ``F_k``. No QR factorisation of the cores is
    needed, but Gram matrices square the condition numbers: singular values below about ``sqrt(eps)`` times the
    largest are not resolved. ``q_k = min(r_k, n_k q_{k+1})`` is the bond after a right-to-left orthogonalisation,
    so the ranks equal those of the orthogonalising route. Entry 0 is ``None``.

    Returns ``(factors, noise)``: ``noise[k]`` is a positive semi-definite ``(r_k, r_k)`` matrix ``N`` that bounds
    the error of ``F_k F_k^H`` against ``H_k``, the exact Gram matrix of ``R_k`` in the same normalisation, in the
    Loewner order (``-N <= F_k F_k^H - H_k <= N``, to first order in ``eps``). It is carried along the sweep as
    errors propagate: a step ``H_k = sum_n G_n H_{k+1} G_n^H`` (``G_n`` the slices of core ``k``) maps an error
    bounded by ``N`` to one bounded by ``sum_n G_n N G_n^H`` and adds the rounding of its two products, at most
    ``gamma ||core||_F^2 ||H_{k+1}||_F`` in 2-norm (``gamma = (n r_{k+1} + r_{k+1} + 2) eps``), as a multiple of
    the identity; the factor adds its Cholesky shift or the eigenvalues it drops. Tracking the matrix instead of a
    norm keeps the bound from growing geometrically along the train (a bound on the 2-norm grew by about 2.3x per
    core on the random TTs of the ``tt_round`` benchmark, from 1e-13 to 3e-2 over 31 cores, where errors in the
    small directions of a Gram matrix are amplified relative to its trace but stay small next to its large ones;
    the matrix bound ends at 2e-10). ``inf`` entries for a zero right part.
    """
    cores = t.cores
    d = t.ndim
    dtype = t.dtype
    eps = jnp.finfo(dtype).eps
    q = list(t.ranks)
    for k in range(d - 1, 0, -1):
        q[k] = min(q[k], t.dims[k] * q[k + 1])
    factors = [None] * d
    noise = [None] * d
    gram = jnp.ones((1, 1), dtype)
    err = jnp.zeros((1, 1), dtype)  # the error bound of gram (a PSD matrix)

    def congruence(c, x):  # sum_n G_n x G_n^H
        r, n, r_next = c.shape
        tmp = jnp.matmul(c.reshape(r * n, r_next), x, precision=_HIGHEST).reshape(r, n * r_next)
        return jnp.matmul(tmp, c.reshape(r, n * r_next).conj().T, precision=_HIGHEST)

    for k in range(d - 1, 0, -1):
        c = cores[k]
        r, n, r_next = c.shape
        rounding = (n * r_next + r_next + 2) * eps * jnp.sum(jnp.abs(c) ** 2) * jnp.linalg.norm(gram)
        gram = congruence(c, gram)
        err = congruence(c, err) + rounding.astype(dtype) * jnp.eye(r, dtype=dtype)
        trace = jnp.real(jnp.trace(gram))
        scale = jnp.where(trace > 0, trace, 1.0)
        gram = (gram + gram.conj().T) / (2 * scale).astype(dtype)
        err = jnp.where(trace > 0, err / scale.astype(dtype), jnp.inf)
        if q[k] < r:
            # Rank-deficient by shape (a bond larger than the modes to its right): keep q[k] eigenvectors.
            u, s = _linalg.left_svd(gram, q[k], SVDMethod.ACCURATE)
            factors[k] = u[:, : q[k]] * _linalg.safe_sqrt(s[: q[k]]).astype(dtype)[None, :]
            noise[k] = err + (s[q[k]] + 2 * r * eps).astype(dtype) * jnp.eye(r, dtype=dtype)
        else:
            # A shift of a few ulps of the largest diagonal entry keeps Cholesky defined where the Gram matrix is
            # singular to working precision (as for t + t); it perturbs it no more than its rounding errors do.
            # A zero Gram matrix (a zero right part) takes the identity: any factor truncates a zero tensor.
            top = jnp.max(jnp.real(jnp.diagonal(gram)))
            eye = jnp.eye(r, dtype=dtype)
            shifted = jnp.where(top > 0, gram + ((10 * r * eps) * top).astype(dtype) * eye, eye)
            factors[k] = jnp.linalg.cholesky(shifted)
            noise[k] = err + ((10 * r * eps) * top + 2 * r * eps).astype(dtype) * jnp.eye(r, dtype=dtype)
    return factors, noise


# ------------------------------------------------------------------------------------------------- linear algebra


def _promote(a: TT, b: TT) -> tuple[TT, TT]:
    dtype = jnp.result_type(a.dtype, b.dtype)
    cast = lambda t: t if t.dtype == dtype else jax.tree_util.tree_map(lambda c: c.astype(dtype), t)  # noqa: E731
    return cast(a), cast(b)


def add(a: TT, b: TT) -> TT:
    """``a + b`` as a TT of ranks ``a.ranks + b.ranks`` (inner ranks add; use :func:`round` to compress).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> a = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = tt.random(jax.random.key(1), (2, 3, 4), 3)
      >>> c = tt.add(a, b)
      >>> c.ranks
      (1, 5, 5, 1)
      >>> bool(jnp.allclose(tt.to_dense(c), tt.to_dense(a) + tt.to_dense(b), atol=1e-5))
      True
    """
    _check_tt(a, "a")
    _check_tt(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    d = a.ndim
    if d == 1:
        return TT([a.cores[0] + b.cores[0]])
    cores = [jnp.concatenate([a.cores[0], b.cores[0]], axis=2)]
    cores += [_cores.block_diagonal(ca, cb) for ca, cb in zip(a.cores[1:-1], b.cores[1:-1])]
    cores.append(jnp.concatenate([a.cores[-1], b.cores[-1]], axis=0))
    return TT(cores)


def scale(t: TT, alpha) -> TT:
    """``alpha * t`` for a scalar ``alpha`` (the factor goes into the first core).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3), 2)
      >>> bool(jnp.allclose(tt.to_dense(tt.scale(t, 3.0)), 3.0 * tt.to_dense(t)))
      True
    """
    _check_tt(t)
    alpha, dtype = _checks.scalar_factor(alpha, t.dtype)
    cores = [c.astype(dtype) for c in t.cores]
    cores[0] = cores[0] * alpha
    return TT(cores)


def sub(a: TT, b: TT) -> TT:
    """``a - b`` (ranks add, as for :func:`add`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> a = tt.random(jax.random.key(0), (2, 3), 2)
      >>> float(tt.norm(tt.sub(a, a))) < 1e-6
      True
    """
    _check_tt(b, "b")
    return add(a, scale(b, -1))


def hadamard(a: TT, b: TT) -> TT:
    """Elementwise product ``a * b``; ranks multiply.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> a = tt.random(jax.random.key(0), (2, 3), 2)
      >>> b = tt.random(jax.random.key(1), (2, 3), 3)
      >>> bool(jnp.allclose(tt.to_dense(tt.hadamard(a, b)), tt.to_dense(a) * tt.to_dense(b), atol=1e-6))
      True
    """
    _check_tt(a, "a")
    _check_tt(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    cores = []
    for ca, cb in zip(a.cores, b.cores):
        ra, n, ra_next = ca.shape
        rb, _, rb_next = cb.shape
        c = jnp.einsum("anb,cnd->acnbd", ca, cb).reshape(ra * rb, n, ra_next * rb_next)
        cores.append(c)
    return TT(cores)


def inner(a: TT, b: TT) -> jax.Array:
    """``<a, b> = sum(conj(a) * b)``, contracted site by site in ``O(d n r^3)``.

    Near the ends, where a bond is larger than the product of the mode sizes before it (``r_k > n_1 ... n_k``, as in
    MPS with a constant bond dimension), the cores of each TT are first multiplied together into one block: that is
    cheaper than sweeping the pair of bonds through those sites.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> a = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = tt.random(jax.random.key(1), (2, 3, 4), 3)
      >>> bool(jnp.allclose(tt.inner(a, b), jnp.vdot(tt.to_dense(a), tt.to_dense(b)), atol=1e-6))
      True
    """
    _check_tt(a, "a")
    _check_tt(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    d = a.ndim
    if d == 1:
        return jnp.vdot(a.cores[0].reshape(-1), b.cores[0].reshape(-1))
    ra, rb, dims = a.ranks, b.ranks, a.dims
    # Left block: cores [0, left) multiplied together, shape (n_1 ... n_left, r_left), for each TT.
    left, rows = 1, dims[0]
    while left < d - 1 and rows * dims[left] <= min(ra[left + 1], rb[left + 1]):
        rows *= dims[left]
        left += 1
    # Right block: cores [right, d), shape (r_right, n_right ... n_d); never overlapping the left block.
    right, cols = d - 1, dims[-1]
    while right - 1 >= left and cols * dims[right - 1] <= min(ra[right - 1], rb[right - 1]):
        cols *= dims[right - 1]
        right -= 1
    # The sweep runs right to left: env[p, q] = sum conj(ca[p, n, p']) cb[q, n, q'] env[p', q'] is two products of
    # the form A @ B.T, which XLA:CPU runs 1.3-1.6x faster than the left-to-right sweep's transposed-operand
    # product ca^H @ tmp (float64/float32, 64 sites, n = 2, r = 64: 1.9 vs 3.0 ms; n = 4, r = 32: 0.39 vs 0.53 ms;
    # complex128 within 3%; measured 2026-11-25).
    # env: (ra[right], rb[right]), the closing block's pair of bonds.
    env = jnp.matmul(_right_block(a, right).conj(), _right_block(b, right).T, precision=_HIGHEST)
    for ca, cb in zip(reversed(a.cores[left:right]), reversed(b.cores[left:right])):
        r_a, n, ra_next = ca.shape
        r_b, _, rb_next = cb.shape
        tmp = jnp.matmul(cb.reshape(r_b * n, rb_next), env.T, precision=_HIGHEST)  # (r_b * n, ra_next)
        tmp = tmp.reshape(r_b, n * ra_next)
        env = jnp.matmul(ca.reshape(r_a, n * ra_next).conj(), tmp.T, precision=_HIGHEST)  # (r_a, r_b)
    opening = jnp.matmul(_left_block(a, left).conj().T, _left_block(b, left), precision=_HIGHEST)
    return jnp.sum(opening * env)


def _left_block(t: TT, stop: int):
    """Cores ``[0, stop)`` multiplied together: shape ``(n_1 ... n_stop, r_stop)``."""
    block = t.cores[0].reshape(t.dims[0], t.ranks[1])
    for core in t.cores[1:stop]:
        r, n, r_next = core.shape
        block = jnp.matmul(block, core.reshape(r, n * r_next), precision=_HIGHEST).reshape(-1, r_next)
    return block


def _right_block(t: TT, start: int):
    """Cores ``[start, d)`` multiplied together: shape ``(r_start, n_start+1 ... n_d)``."""
    block = t.cores[-1].reshape(t.ranks[-2], t.dims[-1])
    for core in reversed(t.cores[start:-1]):
        r, n, r_next = core.shape
        block = jnp.matmul(core.reshape(r * n, r_next), block, precision=_HIGHEST).reshape(r, -1)
    return block


def norm(t: TT) -> jax.Array:
    """Frobenius norm ``||t||`` (real, non-negative), computed through an orthogonalisation sweep.

    The sweep makes the result accurate to relative machine precision (``sqrt(inner(t, t))`` loses half the digits
    when the norm is small compared to the cores), and its derivative is finite at ``t = 0`` directions.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> bool(jnp.allclose(tt.norm(t), jnp.linalg.norm(tt.to_dense(t)), atol=1e-6))
      True
    """
    _check_tt(t)
    last = orthogonalize(t, -1).cores[-1].reshape(-1)
    # The norm of a vector with a derivative that is finite at zero.
    return _linalg.safe_sqrt(jnp.real(jnp.vdot(last, last)))


# -------------------------------------------------------------------------------------------- entries and contraction


def get(t: TT, index) -> jax.Array:
    """Entries ``t[index[b, 0], ..., index[b, d-1]]`` for a batch of multi-indices, without forming the tensor.

    Args:
      t: a TT with ``d`` modes.
      index: integer array of shape ``(batch, d)`` (or ``(d,)`` for a single entry). Out-of-range indices raise
        when concrete; under ``jit`` they follow JAX's gather semantics (clamped), so check them beforehand.

    Returns:
      Array of shape ``(batch,)`` (or a scalar for ``(d,)`` input).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> idx = jnp.array([[0, 1, 2], [1, 2, 3]])
      >>> x = tt.to_dense(t)
      >>> bool(jnp.allclose(tt.get(t, idx), x[idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-6))
      True
    """
    _check_tt(t)
    index, single = _checks.element_index(index, t.dims, "TT")
    vec = t.cores[0][0, index[:, 0], :]  # (batch, r_1)
    for k in range(1, t.ndim):
        mats = jnp.take(t.cores[k], index[:, k], axis=1)  # (r_{k-1}, batch, r_k)
        vec = jnp.einsum("ba,abc->bc", vec, mats, precision=_HIGHEST)
    out = vec[:, 0]
    return out[0] if single else out


def _check_mode(t: TT, mode, name="mode") -> int:
    d = t.ndim
    if not isinstance(mode, (int, np.integer)) or not -d <= mode < d:
        raise ValueError(f"{name} must be an int in [-{d}, {d}) for a TT with {d} modes, got {mode!r}")
    return int(mode) % d


def mode_product(t: TT, matrix, mode: int) -> TT:
    """Multiply mode ``mode`` by a matrix: ``y[..., i, ...] = sum_j matrix[i, j] t[..., j, ...]``.

    Args:
      t: a TT.
      matrix: array of shape ``(m, n_mode)``.
      mode: the mode index.

    Returns:
      A TT with ``dims[mode] = m`` and the same ranks.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> m = jnp.ones((5, 3))
      >>> y = tt.mode_product(t, m, 1)
      >>> bool(jnp.allclose(tt.to_dense(y), jnp.einsum("ij,ajb->aib", m, tt.to_dense(t)), atol=1e-5))
      True
    """
    _check_tt(t)
    mode = _check_mode(t, mode)
    matrix = jnp.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != t.dims[mode]:
        raise ValueError(
            f"matrix must have shape (m, {t.dims[mode]}) to act on mode {mode}, got shape {matrix.shape}"
        )
    dtype = jnp.result_type(t.dtype, matrix.dtype)
    cores = [c.astype(dtype) for c in t.cores]
    cores[mode] = jnp.einsum("ij,ajb->aib", matrix.astype(dtype), cores[mode], precision=_HIGHEST)
    return TT(cores)


def _absorb_vectors(t: TT, vectors: Mapping[int, jax.Array]):
    """Contract the listed modes with vectors; returns a list of cores, ``None`` where a mode was removed."""
    if not isinstance(vectors, Mapping):
        raise TypeError(f"vectors must be a mapping {{mode: vector}}, got {type(vectors).__name__}")
    mats = {}
    dtype = t.dtype
    for mode, v in vectors.items():
        k = _check_mode(t, mode, "vectors key")
        if k in mats:
            raise ValueError(f"mode {k} appears twice in vectors")
        v = jnp.asarray(v)
        if v.shape != (t.dims[k],):
            raise ValueError(f"vectors[{mode}] must have shape ({t.dims[k]},) to contract mode {k}, got {v.shape}")
        mats[k] = v
        dtype = jnp.result_type(dtype, v.dtype)
    cores = []
    for k, c in enumerate(t.cores):
        c = c.astype(dtype)
        cores.append(jnp.einsum("anb,n->ab", c, mats[k].astype(dtype), precision=_HIGHEST) if k in mats else c)
    return cores


def _merge_matrices(cores):
    """Fold rank matrices (2-D entries) into neighbouring 3-D cores."""
    out, pending = [], None
    for c in cores:
        if c.ndim == 2:
            pending = c if pending is None else jnp.matmul(pending, c, precision=_HIGHEST)
            continue
        if pending is not None:
            c = jnp.einsum("ab,bnc->anc", pending, c, precision=_HIGHEST)
            pending = None
        out.append(c)
    if pending is not None:
        out[-1] = jnp.einsum("anb,bc->anc", out[-1], pending, precision=_HIGHEST)
    return out


def contract_modes(t: TT, vectors: Mapping[int, jax.Array]) -> TT:
    """Contract some modes with vectors: ``y[rest] = sum_{i_k} t[..., i_k, ...] v_k[i_k]`` for each listed ``k``.

    Args:
      t: a TT.
      vectors: mapping ``{mode: vector of shape (n_mode,)}``, not covering every mode (for that, use
        :func:`contract_all`, which returns a scalar).

    Returns:
      A TT over the remaining modes, in their original order. Ranks are not increased.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> v = jnp.arange(3.0)
      >>> y = tt.contract_modes(t, {1: v})
      >>> bool(jnp.allclose(tt.to_dense(y), jnp.einsum("ajb,j->ab", tt.to_dense(t), v), atol=1e-5))
      True
    """
    _check_tt(t)
    if len({int(k) % t.ndim for k in vectors}) >= t.ndim:
        raise ValueError("vectors covers every mode; use tt.contract_all(t, vectors) for the scalar result")
    return TT(_merge_matrices(_absorb_vectors(t, vectors)))


def contract_all(t: TT, vectors: Sequence[jax.Array]) -> jax.Array:
    """Contract every mode with a vector: ``sum_{i} t[i_1, ..., i_d] v_1[i_1] ... v_d[i_d]`` (no conjugation).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3), 2)
      >>> vs = [jnp.ones(2), jnp.arange(3.0)]
      >>> bool(jnp.allclose(tt.contract_all(t, vs), jnp.einsum("ij,i,j->", tt.to_dense(t), *vs), atol=1e-5))
      True
    """
    _check_tt(t)
    if len(vectors) != t.ndim:
        raise ValueError(f"vectors must hold one vector per mode ({t.ndim}), got {len(vectors)}")
    mats = _absorb_vectors(t, dict(enumerate(vectors)))
    out = mats[0]
    for m in mats[1:]:
        out = jnp.matmul(out, m, precision=_HIGHEST)
    return out[0, 0]


def sum(t: TT, modes: Sequence[int] | None = None):  # noqa: A001
    """Sum over modes.

    Args:
      t: a TT.
      modes: ``None`` for the sum of all entries (a scalar), or a sequence of mode indices that leaves at least one
        mode (a TT over the remaining modes).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> bool(jnp.allclose(tt.sum(t), tt.to_dense(t).sum(), atol=1e-5))
      True
      >>> tt.sum(t, modes=(0, 2)).dims
      (3,)
    """
    _check_tt(t)
    if modes is None:
        return contract_all(t, [jnp.ones((n,), t.dtype) for n in t.dims])
    modes = [_check_mode(t, m, "modes entry") for m in modes]
    if len(set(modes)) >= t.ndim:
        raise ValueError("modes covers every mode; use modes=None for the scalar sum of all entries")
    return contract_modes(t, {m: jnp.ones((t.dims[m],), t.dtype) for m in modes})


def kron(a: TT, b: TT) -> TT:
    """Outer product as a TT with modes ``a.dims + b.dims`` (``to_dense`` gives ``jnp.multiply.outer``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tt
      >>> a = tt.random(jax.random.key(0), (2, 3), 2)
      >>> b = tt.random(jax.random.key(1), (4,), 1)
      >>> bool(jnp.allclose(tt.to_dense(tt.kron(a, b)), jnp.multiply.outer(tt.to_dense(a), tt.to_dense(b))))
      True
    """
    _check_tt(a, "a")
    _check_tt(b, "b")
    a, b = _promote(a, b)
    return TT(a.cores + b.cores)


# ------------------------------------------------------------------------------------------------------ creation


def _full_ranks(dims: Sequence[int], ranks) -> tuple[int, ...]:
    d = len(dims)
    if isinstance(ranks, (int, np.integer)):
        if ranks < 1:
            raise ValueError(f"ranks must be positive, got {ranks}")
        return (1,) + (int(ranks),) * (d - 1) + (1,)
    ranks = tuple(int(r) for r in ranks)
    if len(ranks) == d - 1:
        ranks = (1,) + ranks + (1,)
    if len(ranks) != d + 1:
        raise ValueError(
            f"ranks must be an int, {d - 1} inner ranks, or {d + 1} ranks including the boundary 1s for {d} dims; "
            f"got {len(ranks)} values {ranks}"
        )
    if ranks[0] != 1 or ranks[-1] != 1:
        raise ValueError(f"boundary ranks must be 1, got ranks {ranks}")
    if any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be positive, got {ranks}")
    return ranks


def random(key, dims: Sequence[int], ranks, dtype=jnp.float32) -> TT:
    """A TT with i.i.d. Gaussian cores, scaled so that ``E ||t||^2 = 1``.

    Entries of core ``k`` have variance ``1 / (n_k r_k)``. Complex dtypes draw real and imaginary parts
    independently.

    Args:
      key: a JAX PRNG key.
      dims: mode sizes ``(n_1, ..., n_d)``.
      ranks: an int (all inner ranks), ``d - 1`` inner ranks, or all ``d + 1`` ranks with boundary 1s.
      dtype: floating or complex dtype.

    Example:
      >>> import jax
      >>> from tnkit import tt
      >>> tt.random(jax.random.key(0), (2, 3, 4), (1, 2, 3, 1)).ranks
      (1, 2, 3, 1)
    """
    dims = _check_dims(dims)
    ranks = _full_ranks(dims, ranks)
    dtype = jnp.dtype(dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise TypeError(f"dtype must be floating or complex, got {dtype}")
    keys = jax.random.split(key, len(dims))
    cores = []
    for k, n in enumerate(dims):
        shape = (ranks[k], n, ranks[k + 1])
        std = 1.0 / math.sqrt(n * ranks[k + 1])
        cores.append(std * jax.random.normal(keys[k], shape, dtype))
    return TT(cores)


def zeros(dims: Sequence[int], dtype=jnp.float32) -> TT:
    """The zero tensor as a rank-1 TT.

    Example:
      >>> from tnkit import tt
      >>> float(tt.sum(tt.zeros((2, 3))))
      0.0
    """
    dims = _check_dims(dims)
    return TT([jnp.zeros((1, n, 1), dtype) for n in dims])


def ones(dims: Sequence[int], dtype=jnp.float32) -> TT:
    """The all-ones tensor as a rank-1 TT.

    Example:
      >>> from tnkit import tt
      >>> float(tt.sum(tt.ones((2, 3))))
      6.0
    """
    dims = _check_dims(dims)
    return TT([jnp.ones((1, n, 1), dtype) for n in dims])

