"""The tensor-ring algebra: pure functions on :class:`tnkit.TR`.

Conventions:
  * Core ``k`` has shape ``(r_{k-1}, n_k, r_k)`` with ``r_0 = r_d`` (the ring closes), and the tensor is
    ``x[i_1, ..., i_d] = trace(G_1[:, i_1, :] @ G_2[:, i_2, :] @ ... @ G_d[:, i_d, :])``. A tensor train is the
    special case ``r_0 = 1`` (:func:`from_tt`, :func:`to_tt` convert exactly).
  * ``inner(a, b) = sum(conj(a) * b)``: conjugate-linear in the first argument (like ``jnp.vdot``).
  * Every function works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (:func:`als` under ``jit`` and ``vmap``)
    with one exception: a tolerance (``rtol``) chooses ranks from the data, so ``from_dense(..., rtol=...)`` and
    ``round(..., rtol=...)`` need concrete arrays and run eagerly (they raise a clear error under ``jit``). Fixed
    ranks (``ranks`` or ``max_rank``) give static shapes and are jit-compatible.
  * A tensor ring has no canonical (orthogonal) form: the ring index cannot be gauged away. :func:`round` therefore
    goes through the exact TT form of the ring (see its docstring for what that guarantees and what it costs).

References:
  Q. Zhao, G. Zhou, S. Xie, L. Zhang, A. Cichocki, "Tensor Ring Decomposition", arXiv:1606.05535 (2016):
  Algorithm 1 (TR-SVD, :func:`from_dense`) and Algorithm 2 (TR-ALS, :func:`als`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import tr
  >>> t = tr.random(jax.random.key(0), (3, 4, 5), 2)
  >>> t.ranks
  (2, 2, 2, 2)
  >>> x = tr.to_dense(t)
  >>> bool(jnp.allclose(tr.to_dense(tr.from_dense(x)), x, atol=1e-5))
  True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import _checks, _cores, _linalg
from tnkit import tt as _tt
from tnkit._linalg import SVDMethod
from tnkit.formats import TR, TT
from tnkit._checks import check_dims as _check_dims
from tnkit._checks import concrete as _concrete
from tnkit._checks import require_concrete as _require_concrete
from tnkit._checks import validate_rank_request as _validate_rank_request
from tnkit._linalg import left_svd_with_tolerance as _left_svd_with_tolerance

__all__ = [
    "from_dense",
    "als",
    "ALSInfo",
    "to_dense",
    "round",
    "from_tt",
    "to_tt",
    "add",
    "sub",
    "scale",
    "hadamard",
    "inner",
    "norm",
    "get",
    "random",
    "SVDMethod",
]

_HIGHEST = lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------- validation helpers


def _check_tr(t, name: str = "t") -> TR:
    if not isinstance(t, TR):
        raise TypeError(f"{name} must be a tnkit.TR, got {type(t).__name__}")
    return t


def _check_same_dims(a: TR, b: TR, names=("a", "b")) -> None:
    if a.dims != b.dims:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dims, got {a.dims} and {b.dims}")


def _check_dense(x, name: str = "x") -> jax.Array:
    if not hasattr(x, "ndim"):
        x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{name} must have at least one axis, got shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        raise TypeError(f"{name} must have a floating or complex dtype, got {x.dtype}")
    return jnp.asarray(x)


def _full_ranks(dims: Sequence[int], ranks, name: str = "ranks") -> tuple[int, ...]:
    """``(r_0, r_1, ..., r_{d-1}, r_0)`` from an int, ``d`` ranks ``(r_0, ..., r_{d-1})`` or ``d + 1`` ranks."""
    d = len(dims)
    if isinstance(ranks, bool) or not isinstance(ranks, (int, np.integer, Sequence, np.ndarray)):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {ranks!r}")
    if isinstance(ranks, (int, np.integer)):
        ranks = (int(ranks),) * (d + 1)
    else:
        values = tuple(ranks)
        if not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in values):
            raise TypeError(f"{name} must hold ints, got {values!r}")
        ranks = tuple(int(r) for r in values)
        if len(ranks) == d:
            ranks = ranks + (ranks[0],)
        if len(ranks) != d + 1:
            raise ValueError(
                f"{name} must be an int, {d} ranks (r_0, ..., r_{d - 1}) or {d + 1} ranks (r_0, ..., r_{d - 1}, r_0) "
                f"for {d} dims; got {len(ranks)} values {ranks}"
            )
        if ranks[0] != ranks[-1]:
            raise ValueError(
                f"{name} must close the ring (first == last, r_0 = r_d), got {ranks} with {ranks[0]} != {ranks[-1]}"
            )
    if any(r < 1 for r in ranks):
        raise ValueError(f"{name} must be positive, got {ranks}")
    return ranks


def _rotate(t: TR, start: int) -> list[jax.Array]:
    """The cores read around the ring starting at core ``start``: the same trace, cut at bond ``start``."""
    return list(t.cores[start:] + t.cores[:start])


def _smallest_bond(ranks: Sequence[int]) -> int:
    """Index ``m`` in ``[0, d)`` of the smallest bond ``r_m`` (the left rank of core ``m``); ties go to 0."""
    return int(np.argmin(ranks[:-1]))


# ---------------------------------------------------------------------------------------------- dense conversions


def _split_first_rank(p: int, bound: int | None) -> tuple[int, int, int]:
    """``(r_0, r_1, q)``: the largest ``q <= p`` with ``q = r_0 r_1``, ``r_0 <= r_1 <= bound``; most balanced pair.

    Zhao et al. (Alg. 1, step 4) split the rank ``p`` of the first unfolding as ``r_0 r_1 = p`` with ``|r_0 - r_1|``
    minimal. With a bound on every rank, a ``p`` that has no such factor pair (a prime above the bound, say) is
    lowered to the next number that has one.
    """
    for q in range(p, 0, -1):
        r0 = max((a for a in range(1, math.isqrt(q) + 1) if q % a == 0), default=1)
        if bound is None or q // r0 <= bound:
            return r0, q // r0, q
    return 1, 1, 1  # unreachable: q = 1 always qualifies


def _first_step(a, p: int, method: SVDMethod):
    """Leading ``p`` left singular vectors of ``a`` (always an SVD basis: its order decides the ring split)."""
    u, _ = _linalg.left_svd(a, p, method)
    return _fix_signs(u[:, :p])


def _fix_signs(u):
    """Scale each column so that its entry of largest modulus is real and positive (TensorLy's ``svd_flip``).

    The first TR-SVD step splits its singular vectors over both ends of the ring, so, unlike in TT-SVD, their
    signs (phases) change the later truncations. This convention makes the result independent of the SVD route.
    """
    pivot = jnp.take_along_axis(u, jnp.argmax(jnp.abs(u), axis=0)[None, :], axis=0)[0]
    phase = jnp.where(jnp.abs(pivot) > 0, jnp.sign(pivot), 1)
    return u * phase.conj()[None, :]


def from_dense(
    x,
    *,
    ranks=None,
    max_rank: int | None = None,
    rtol: float | None = None,
    method: SVDMethod = SVDMethod.AUTO,
) -> TR:
    """Tensor ring of a dense tensor by TR-SVD (Zhao et al. 2016, Algorithm 1).

    1. The first unfolding ``x_(1)`` of shape ``(n_1, n_2 ... n_d)`` is factored by an SVD truncated to
       ``p = r_0 r_1`` terms; the left singular vectors ``U`` (in descending order of singular value) are reshaped
       to ``(n_1, r_0, r_1)`` row-major (singular vector ``j`` gets ``(a_0, a_1) = (j // r_1, j % r_1)``, as in
       TensorLy) and give core 1, of shape ``(r_0, n_1, r_1)``.
    2. The remainder ``U^H x_(1)`` is reshaped to ``(r_0, r_1, n_2, ..., n_d)`` and its ring index ``r_0`` is moved
       to the end: ``(r_1, n_2, ..., n_d, r_0)``. TT-SVD steps then factor the unfoldings
       ``(r_{k-1} n_k, n_{k+1} ... n_d r_0)`` for ``k = 2, ..., d - 1``.
    3. The last remainder, of shape ``(r_{d-1}, n_d r_0)``, is core ``d`` of shape ``(r_{d-1}, n_d, r_0)``, which
       closes the ring.

    Unlike TT-SVD, the result depends on the individual first singular vectors, not only on the subspace they
    span: another basis of that subspace splits the ring differently and changes the later truncations. Signs
    (phases) are fixed as in TensorLy (each vector's entry of largest modulus is real and positive), so with the
    same ``ranks`` both give the same error up to rounding; rotations within repeated singular values, and
    singular vectors below about ``sqrt(eps) * s_1`` on the fast Gram route of ``SVDMethod.AUTO``, remain
    arbitrary.

    Rank selection (at most one of ``ranks`` and ``max_rank``; ``rtol`` only without ``ranks``):

    * ``ranks``: upper bounds per bond, TensorLy's ``rank`` of ``tensor_ring``: an int, ``(r_0, ..., r_{d-1})`` or
      ``(r_0, ..., r_{d-1}, r_0)``. ``r_0`` and ``r_1`` are used exactly (so ``r_0 r_1`` must not exceed
      ``min(n_1, n_2 ... n_d)``); later ranks are capped by their unfolding sizes. jit-compatible.
    * ``max_rank``: every rank at most ``max_rank``. The first step keeps ``p = min(n_1, n_2 ... n_d,
      max_rank**2)`` terms, lowered if needed so that ``p = r_0 r_1`` with ``r_0 <= r_1 <= max_rank``, split as
      evenly as possible (``r_0`` is the smaller factor: it is carried through every later step). jit-compatible.
    * neither: no truncation; ``p = min(n_1, n_2 ... n_d)`` split as evenly as possible. Exact up to rounding.
    * ``rtol``: relative error bound ``||x - to_dense(t)|| <= rtol * ||x||`` (Frobenius norm), the paper's split:
      with ``delta = rtol * ||x|| / sqrt(d)`` the first truncation discards at most ``sqrt(2) * delta`` and each of
      the ``d - 2`` others at most ``delta`` (the discarded parts are orthogonal, so their squares add up to at
      most ``d * delta**2``). The rank ``p`` of the first step is split as evenly as possible (the paper's
      ``min |r_0 - r_1|``); a prime ``p`` gives ``r_0 = 1``. Forces eager execution. With ``max_rank`` as well,
      ranks are also capped by it, and the bound then holds only where ``max_rank`` is not the binding one.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, ``d >= 1``, floating or complex.
      ranks: upper bounds per bond (see above), or ``None``.
      max_rank: largest bond dimension, or ``None``.
      rtol: relative error bound, or ``None``.
      method: how each wide unfolding is factored (a :class:`tnkit.tr.SVDMethod`, see :func:`tnkit.tt.from_dense`).

    Returns:
      A :class:`tnkit.TR` of dims ``x.shape``. For ``d = 1`` the ring has ranks ``(1, 1)``.

    Raises:
      ValueError: bad rank arguments (the message says which and why), ``ranks[0] * ranks[1]`` larger than the rank
        of the first unfolding, or ``rtol`` under ``jit``/``vmap``.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import tr
      >>> i, j, k = jnp.indices((4, 4, 4))
      >>> x = jnp.cos(1.0 * (i + j + k))
      >>> tr.from_dense(x, max_rank=2).ranks  # p = min(4, 2**2) = 4 = 2 * 2
      (2, 2, 2, 2)
      >>> tr.from_dense(x, ranks=(1, 2, 2)).ranks
      (1, 2, 2, 1)
      >>> t = tr.from_dense(x, rtol=1e-5)  # the first unfolding has rank 2 = 1 * 2
      >>> t.ranks
      (1, 2, 2, 1)
      >>> bool(jnp.linalg.norm(tr.to_dense(t) - x) <= 1e-5 * jnp.linalg.norm(x))
      True
    """
    if ranks is not None and (max_rank is not None or rtol is not None):
        raise ValueError(
            "pass ranks alone, or max_rank and/or rtol: ranks fixes r_0 and r_1, which max_rank and rtol would choose"
        )
    _validate_rank_request(max_rank, rtol)
    _linalg.check_method(method)
    x = _check_dense(x)
    dims = x.shape
    d = len(dims)
    if ranks is not None:
        ranks = _full_ranks(dims, ranks)
    if d == 1:
        if ranks is not None and ranks != (1, 1):
            raise ValueError(f"a one-mode tensor ring from from_dense has ranks (1, 1), got ranks={ranks}")
        return TR([x.reshape(1, dims[0], 1)])

    delta = None
    if rtol is not None:
        _require_concrete(x, "from_dense")
        delta = float(rtol) * float(_concrete(jnp.linalg.norm(x))) / math.sqrt(d)

    # Step 1: the first unfolding at rank p = r_0 r_1.
    a = x.reshape(dims[0], -1)
    k_max = min(a.shape)
    if ranks is not None:
        r0, r1 = ranks[0], ranks[1]
        if r0 * r1 > k_max:
            raise ValueError(
                f"ranks[0] * ranks[1] = {r0} * {r1} = {r0 * r1} must be at most {k_max}, the largest rank of the "
                f"first unfolding of x (shape {a.shape}); lower ranks[0] or ranks[1]"
            )
        p = r0 * r1
        u = _first_step(a, p, method)
    else:
        cap = k_max if max_rank is None else min(k_max, max_rank * max_rank)
        if delta is None:
            r0, r1, p = _split_first_rank(cap, max_rank)
            u = _first_step(a, p, method)
        else:
            u, p_tol = _left_svd_with_tolerance(a, cap, math.sqrt(2.0) * delta, method)
            r0, r1, p = _split_first_rank(p_tol, max_rank)
            u = _fix_signs(u[:, :p])
    rest = jnp.matmul(u.conj().T, a, precision=_HIGHEST)  # (p, n_2 ... n_d)
    cores = [u.reshape(dims[0], r0, r1).transpose(1, 0, 2)]
    # Carry the ring index r_0 to the end: (r_1, n_2 ... n_d, r_0).
    rest = rest.reshape(r0, r1, -1).transpose(1, 2, 0)

    # Steps 2 .. d-1: TT-SVD of (r_{k-1} n_k, n_{k+1} ... n_d r_0).
    bound = max_rank
    r_prev = r1
    for k in range(1, d - 1):
        if ranks is not None:
            bound = ranks[k + 1]
        a = rest.reshape(r_prev * dims[k], -1)
        k_max = min(a.shape)
        rank = k_max if bound is None else min(bound, k_max)
        if delta is None and rank == k_max:
            # Nothing to truncate: any orthonormal basis will do (a unitary on this bond changes no later step).
            if a.shape[0] <= a.shape[1]:
                u, rest = jnp.eye(a.shape[0], dtype=a.dtype), a
            else:
                u, rest = _linalg.left_orthonormal(a)
        else:
            if delta is None:
                u, _ = _linalg.left_svd(a, rank, method)
            else:
                u, rank = _left_svd_with_tolerance(a, bound, delta, method)
            u = u[:, :rank]
            rest = jnp.matmul(u.conj().T, a, precision=_HIGHEST)
        cores.append(u.reshape(r_prev, dims[k], rank))
        r_prev = rank
    cores.append(rest.reshape(r_prev, dims[-1], r0))
    return TR(cores)


def _chain(cores: Sequence[jax.Array]) -> jax.Array:
    """Cores multiplied along the chain (not closed): shape ``(r_first, n_1 ... n_m, r_last)``."""
    block = cores[0]
    for core in cores[1:]:
        r0, m, r = block.shape
        _, n, r_next = core.shape
        block = jnp.matmul(block.reshape(r0 * m, r), core.reshape(r, n * r_next), precision=_HIGHEST)
        block = block.reshape(r0, m * n, r_next)
    return block


def to_dense(t: TR) -> jax.Array:
    """The dense tensor of shape ``t.dims``: ``x[i] = trace(G_1[:, i_1, :] ... G_d[:, i_d, :])``.

    The chain is cut at the smallest bond ``r_m`` and multiplied out, ``O(r_m r^2 n_1 ... n_d)`` operations.

    Example:
      >>> import jax
      >>> from tnkit import tr
      >>> tr.to_dense(tr.random(jax.random.key(0), (2, 3, 4), 2)).shape
      (2, 3, 4)
    """
    _check_tr(t)
    m = _smallest_bond(t.ranks)
    block = _chain(_rotate(t, m))  # modes m, ..., d-1, 0, ..., m-1
    dense = jnp.trace(block, axis1=0, axis2=2)
    order = list(range(m, t.ndim)) + list(range(m))
    return dense.reshape([t.dims[k] for k in order]).transpose(np.argsort(order))


# ------------------------------------------------------------------------------------------ alternating least squares


class ALSInfo(NamedTuple):
    """What happened in :func:`als` (the same fields as :class:`tnkit.cp.ALSInfo` where they apply).

    Attributes:
      iterations: int32 scalar: the number of sweeps run, ``1 <= iterations <= num_iters``.
      errors: shape ``(num_iters,)``, real: the relative error ``||x - to_dense(tr)|| / ||x||`` after each sweep.
        Entries from ``iterations`` on (sweeps not run because the stopping rule fired) repeat the last error.
      converged: bool scalar: whether the loop stopped because a sweep decreased the error by less than ``tol``.
    """

    iterations: jax.Array  # () int32
    errors: jax.Array  # (num_iters,) real
    converged: jax.Array  # () bool


def _transfer(core: jax.Array) -> jax.Array:
    """``T[(p, q), (p', q')] = sum_i conj(G[p, i, p']) G[q, i, q']``: shape ``(r^2, r'^2)``."""
    r, n, r_next = core.shape
    t = jnp.einsum("aib,cid->acbd", core.conj(), core, precision=_HIGHEST)
    return t.reshape(r * r, r_next * r_next)


def _als_update(x, cores: list[jax.Array], k: int, ridge: float) -> jax.Array:
    """The least-squares core ``k`` given all others (normal equations, Tikhonov-regularised)."""
    d = len(cores)
    others = [(k + j) % d for j in range(1, d)]  # k+1, ..., d-1, 0, ..., k-1
    sub = [cores[m] for m in others]
    r_prev, n, r_next = cores[k].shape
    # Subchain M_j = G_{k+1}[j_{k+1}] ... G_{k-1}[j_{k-1}], shape (r_k, N', r_{k-1}).
    chain = _chain(sub)
    xk = jnp.transpose(x, [k] + others).reshape(n, -1)  # (n_k, N')
    # Model: x_k[i, j] = sum_{a, b} G_k[a, i, b] M_j[b, a].
    # Right-hand side R[(a, b), i] = sum_j conj(M_j[b, a]) x_k[i, j].
    rhs = jnp.einsum("bja,ij->abi", chain.conj(), xk, precision=_HIGHEST).reshape(r_prev * r_next, n)
    # Normal matrix A[(a, b), (a', b')] = sum_j conj(M_j[b, a]) M_j[b', a'] from transfer matrices, O(d n r^4 + d r^6).
    prod = _transfer(sub[0])
    for core in sub[1:]:
        prod = jnp.matmul(prod, _transfer(core), precision=_HIGHEST)
    gram = prod.reshape(r_next, r_next, r_prev, r_prev).transpose(2, 0, 3, 1).reshape(r_prev * r_next, -1)
    gram = 0.5 * (gram + gram.conj().T)
    lam, v = jnp.linalg.eigh(gram)
    lam = jnp.maximum(lam, 0.0)
    mu = ridge * lam[-1] + jnp.finfo(lam.dtype).tiny
    g = jnp.matmul(v.conj().T, rhs, precision=_HIGHEST) / (lam + mu)[:, None].astype(rhs.dtype)
    g = jnp.matmul(v, g, precision=_HIGHEST)
    return g.reshape(r_prev, r_next, n).transpose(0, 2, 1)


def _tr_svd_ranks(dims: Sequence[int], ranks: Sequence[int]) -> tuple[int, ...] | None:
    """The ranks ``from_dense(x, ranks=ranks)`` produces, or ``None`` if ``r_0 r_1`` is too large."""
    d = len(dims)
    total = int(np.prod(dims))
    if ranks[0] * ranks[1] > min(dims[0], total // dims[0]):
        return None
    out = [ranks[0], ranks[1]]
    for k in range(1, d - 1):
        rows = out[-1] * dims[k]
        cols = int(np.prod(dims[k + 1 :])) * ranks[0]
        out.append(min(ranks[k + 1], rows, cols))
    return tuple(out) + (ranks[0],)


def als(
    x,
    ranks,
    *,
    key=None,
    init: TR | None = None,
    num_iters: int = 100,
    tol: float = 1e-6,
    ridge: float | None = None,
) -> tuple[TR, ALSInfo]:
    """Tensor ring of fixed ranks fitted to a dense tensor by alternating least squares (TR-ALS).

    Each sweep updates the cores ``k = 1, ..., d`` in turn. Core ``k`` solves the linear least-squares problem
    ``min_G sum_{i, j} |x[i_k = i, rest = j] - trace(G[:, i, :] M_j)|^2`` exactly, where
    ``M_j = G_{k+1}[j_{k+1}] ... G_d[j_d] G_1[j_1] ... G_{k-1}[j_{k-1}]`` is the product of the other cores'
    slices (the subchain, shape ``(r_k, r_{k-1})``). It is solved through the normal equations
    ``(A + mu I) g = R``: ``A``, of size ``r_{k-1} r_k``, comes from the cores alone (transfer matrices,
    ``O(d n r^4 + d r^6)``), ``R`` from one pass over ``x`` (``O(r^2 n_1 ... n_d)`` plus forming the subchain),
    and the solve uses an eigendecomposition of ``A`` with ``mu = ridge * lambda_max(A)`` (so a rank-deficient
    subchain gives a finite, minimum-norm-like update instead of NaN). Normal equations square the condition
    number of the subchain: the attainable relative error is about ``eps * cond(subchain)``, which float64 makes
    negligible in practice but which in float32 can leave a floor of ``1e-4 .. 1e-3``. Prefer float64 for ALS.

    Like every TR-ALS, it can stall for many sweeps at a poor stationary point (a "swamp"), depending on the
    start; restarting from a few keys and keeping the best fit is the usual remedy (``jax.vmap`` over keys works).

    The error never increases from one core update to the next (each is an exact minimisation, up to ``mu``).
    The loop is a ``lax.while_loop``: it stops after ``num_iters`` sweeps, or after a sweep ``t >= 2`` whose error
    decreased by less than ``tol`` (``errors[t-1] - errors[t] < tol``, TensorLy's ``tensor_ring_als`` rule;
    ``tol=0`` runs every sweep unless the error rises). jit- and vmap-compatible (``ranks``, ``num_iters`` static);
    not reverse-differentiable (a while loop).

    Start (at most one of ``init`` and ``key``):

    * ``init``: a :class:`tnkit.TR` with dims ``x.shape``, ranks ``ranks`` and the dtype of ``x`` (warm start).
    * ``key``: random cores from :func:`random`, scaled to ``||x||``.
    * neither: TR-SVD, :func:`from_dense` ``(x, ranks=ranks)``; raises if TR-SVD cannot reach ``ranks``
      (``r_0 r_1 > n_1``, or a rank larger than its unfolding), in which case pass ``key`` or ``init``.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, ``d >= 2``, floating or complex.
      ranks: an int, ``(r_0, ..., r_{d-1})`` or ``(r_0, ..., r_{d-1}, r_0)``.
      key: JAX PRNG key for a random start, or ``None``.
      init: starting TR, or ``None``.
      num_iters: maximum number of sweeps, ``>= 1``.
      tol: stopping threshold on the per-sweep decrease of the relative error, ``>= 0``.
      ridge: relative Tikhonov parameter, ``>= 0``; default ``10 * eps`` of the dtype.

    Returns:
      ``(t, info)``: the fitted :class:`tnkit.TR` and an :class:`ALSInfo`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> x = tr.to_dense(tr.random(jax.random.key(0), (4, 5, 4, 5), 2))
      >>> fit, info = tr.als(x, 2, key=jax.random.key(0), num_iters=50, tol=0.0)
      >>> fit.ranks, info.errors.shape
      ((2, 2, 2, 2, 2), (50,))
      >>> bool(info.errors[-1] < 1e-3)
      True
    """
    x = _check_dense(x)
    dims = x.shape
    d = len(dims)
    if d < 2:
        raise ValueError(f"x must have at least two axes for als, got shape {dims} (a vector needs no fitting)")
    ranks = _full_ranks(dims, ranks)
    if isinstance(num_iters, bool) or not isinstance(num_iters, (int, np.integer)) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
    if not isinstance(tol, (int, float, np.floating)) or not (0 <= tol < math.inf):
        raise ValueError(f"tol must be a non-negative finite float, got {tol!r}")
    if ridge is None:
        ridge = 10 * float(jnp.finfo(x.dtype).eps)
    if not isinstance(ridge, (int, float, np.floating)) or not (0 <= ridge < math.inf):
        raise ValueError(f"ridge must be a non-negative finite float or None, got {ridge!r}")
    if init is not None and key is not None:
        raise ValueError("pass at most one of init (a starting TR) and key (a random start), got both")

    x_norm = jnp.linalg.norm(x)
    if init is not None:
        _check_tr(init, "init")
        if init.dims != dims or init.ranks != ranks or init.dtype != x.dtype:
            raise ValueError(
                f"init must have dims {dims}, ranks {ranks} and dtype {x.dtype} to start als on x, got dims "
                f"{init.dims}, ranks {init.ranks} and dtype {init.dtype}"
            )
        cores = list(init.cores)
    elif key is not None:
        start = _jit_random(key, dims, ranks, x.dtype)
        cores = [c for c in start.cores]
        cores[0] = cores[0] * x_norm.astype(x.dtype)
    else:
        reached = _tr_svd_ranks(dims, ranks)
        if reached != ranks:
            why = "r_0 r_1 exceeds the first unfolding's rank" if reached is None else f"it would give ranks {reached}"
            raise ValueError(
                f"ranks {ranks} cannot be reached by a TR-SVD start ({why}); pass key= for a random start or init="
            )
        cores = list(_jit_from_dense(x, ranks=ranks).cores)

    dtype = jnp.finfo(x.dtype).dtype
    cores, errors, it, done = _als_loop(x, tuple(cores), jnp.asarray(tol, dtype), jnp.asarray(ridge, dtype), num_iters)
    return TR(cores), ALSInfo(it, errors, done)


# The starts of als, compiled as a whole: cheaper than running them op by op when als is called eagerly.
_jit_from_dense = jax.jit(lambda x, ranks: from_dense(x, ranks=ranks), static_argnames="ranks")
_jit_random = jax.jit(lambda key, dims, ranks, dtype: random(key, dims, ranks, dtype), static_argnums=(1, 2, 3))


@functools.partial(jax.jit, static_argnames="num_iters")
def _als_loop(x, cores, tol, ridge, num_iters):
    """The sweeps of :func:`als` (one compilation per shape, dtype and ``num_iters``)."""
    d = x.ndim
    x_norm = jnp.linalg.norm(x)
    scale_ = jnp.where(x_norm > 0, x_norm, 1.0)

    def error(cs):
        return jnp.linalg.norm(x - to_dense(TR.tree_unflatten(None, cs))) / scale_

    def cond(state):
        it, _, _, done = state
        return (it < num_iters) & jnp.logical_not(done)

    def body(state):
        it, cs, errors, _ = state
        cs = list(cs)
        for k in range(d):
            cs[k] = _als_update(x, cs, k, ridge)
        e = error(cs)
        prev = errors[jnp.maximum(it - 1, 0)]
        done = (it >= 1) & (prev - e < tol)
        return it + 1, tuple(cs), errors.at[it].set(e), done

    errors0 = jnp.zeros((num_iters,), scale_.dtype)
    state = (jnp.int32(0), tuple(cores), errors0, jnp.asarray(False))
    it, cores, errors, done = lax.while_loop(cond, body, state)
    errors = jnp.where(jnp.arange(num_iters) < it, errors, errors[it - 1])
    return cores, errors, it, done


# ------------------------------------------------------------------------------------------- conversions and rounding


def from_tt(t: TT) -> TR:
    """A tensor train as a tensor ring with ``r_0 = 1`` (the same cores; exact).

    Example:
      >>> import jax
      >>> from tnkit import tr, tt
      >>> tr.from_tt(tt.random(jax.random.key(0), (2, 3, 4), 2)).ranks
      (1, 2, 2, 1)
    """
    if not isinstance(t, TT):
        raise TypeError(f"t must be a tnkit.TT, got {type(t).__name__}")
    return TR(t.cores)


def to_tt(t: TR) -> TT:
    """The exact tensor train of a tensor ring, with TT ranks ``(1, r_1 r_0, ..., r_{d-1} r_0, 1)``.

    The ring index ``alpha`` (bond ``r_0``) is carried along the train next to each bond:

    * core 1: ``H_1[0, i, (b, alpha)] = G_1[alpha, i, b]``;
    * core ``k``: ``H_k[(a, alpha), i, (b, alpha')] = G_k[a, i, b] delta(alpha, alpha')``;
    * core ``d``: ``H_d[(a, alpha), i, 0] = G_d[a, i, alpha]``;

    so the train's product is ``sum_alpha (G_1 ... G_d)[alpha, alpha]``, the trace. For ``d = 1`` the single core
    is ``trace(G_1[:, i, :])``. The middle cores hold ``r_0^2`` times as many entries (mostly zeros); use
    :func:`tnkit.tt.round` (or :func:`round`) to compress.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr, tt
      >>> t = tr.random(jax.random.key(0), (2, 3, 4), 2)
      >>> tr.to_tt(t).ranks
      (1, 4, 4, 1)
      >>> bool(jnp.allclose(tt.to_dense(tr.to_tt(t)), tr.to_dense(t), atol=1e-6))
      True
    """
    _check_tr(t)
    d, r0 = t.ndim, t.ranks[0]
    if d == 1:
        return TT([jnp.trace(t.cores[0], axis1=0, axis2=2).reshape(1, -1, 1)])
    first = t.cores[0]
    _, n, r1 = first.shape
    cores = [first.transpose(1, 2, 0).reshape(1, n, r1 * r0)]
    eye = jnp.eye(r0, dtype=t.dtype)
    for core in t.cores[1:-1]:
        r, n, r_next = core.shape
        cores.append(jnp.einsum("aib,xy->axiby", core, eye).reshape(r * r0, n, r_next * r0))
    last = t.cores[-1]
    r, n, _ = last.shape
    cores.append(last.transpose(0, 2, 1).reshape(r * r0, n, 1))
    return TT(cores)


def round(t: TR, *, max_rank: int | None = None, rtol: float | None = None) -> TR:  # noqa: A001
    """Re-compress ``t`` through its TT form: ``from_tt(tt.round(to_tt(t), max_rank=..., rtol=...))``.

    A tensor ring has no orthogonal canonical form, so there is no ring analogue of TT-rounding with a guarantee.
    This function instead rounds the exact TT form (:func:`to_tt`, TT ranks ``r_k r_0``) with
    :func:`tnkit.tt.round` and returns the result as a ring with ``r_0 = 1``. What that gives:

    * ``rtol``: ``||to_dense(t) - to_dense(result)|| <= rtol * ||t||`` holds (TT-rounding's bound). Eager.
    * ``max_rank``: every rank of the result is at most ``max_rank`` (quasi-optimal TT truncation). jit-compatible.
    * Ranks of the result are TT ranks, between the TR ranks and ``r_k r_0``. For a tensor that is a TT in
      disguise (``add`` of TT-like rings, say) they drop to the TT ranks; for a genuine ring (``r_0 > 1``) the result
      can hold more parameters than ``t`` does, because the ring structure is given up. To compress into a genuine
      ring, decompose ``to_dense(t)`` again with :func:`from_dense` or :func:`als` (dense, for small tensors).
    * Cost: ``O(d n r^3 r_0^3)``, the cost of TT-rounding at ranks ``r r_0``.

    Args:
      t: a TR.
      max_rank: largest bond dimension kept, or ``None``.
      rtol: relative error bound, or ``None`` (eager).

    Example:
      >>> import jax
      >>> from tnkit import tr, tt
      >>> a = tr.from_tt(tt.random(jax.random.key(0), (4, 4, 4, 4), 3))
      >>> tr.add(a, a).ranks, tr.round(tr.add(a, a), rtol=1e-6).ranks
      ((2, 6, 6, 6, 2), (1, 3, 3, 3, 1))
    """
    _check_tr(t)
    _validate_rank_request(max_rank, rtol)
    return from_tt(_tt.round(to_tt(t), max_rank=max_rank, rtol=rtol))


# ------------------------------------------------------------------------------------------------- linear algebra


def _promote(a: TR, b: TR) -> tuple[TR, TR]:
    dtype = jnp.result_type(a.dtype, b.dtype)
    cast = lambda t: t if t.dtype == dtype else jax.tree_util.tree_map(lambda c: c.astype(dtype), t)  # noqa: E731
    return cast(a), cast(b)


def add(a: TR, b: TR) -> TR:
    """``a + b``: every core block-diagonal, ``G_k = diag(A_k, B_k)``, so all ranks add (``r_0`` too).

    The trace of a product of block-diagonal matrices is the sum of the blocks' traces. Use :func:`round` to
    compress.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> a = tr.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = tr.random(jax.random.key(1), (2, 3, 4), (1, 3, 2))
      >>> c = tr.add(a, b)
      >>> c.ranks
      (3, 5, 4, 3)
      >>> bool(jnp.allclose(tr.to_dense(c), tr.to_dense(a) + tr.to_dense(b), atol=1e-5))
      True
    """
    _check_tr(a, "a")
    _check_tr(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    return TR([_cores.block_diagonal(ca, cb) for ca, cb in zip(a.cores, b.cores)])


def scale(t: TR, alpha) -> TR:
    """``alpha * t`` for a scalar ``alpha`` (the factor goes into the first core).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> t = tr.random(jax.random.key(0), (2, 3), 2)
      >>> bool(jnp.allclose(tr.to_dense(tr.scale(t, 3.0)), 3.0 * tr.to_dense(t)))
      True
    """
    _check_tr(t)
    alpha, dtype = _checks.scalar_factor(alpha, t.dtype)
    cores = [c.astype(dtype) for c in t.cores]
    cores[0] = cores[0] * alpha
    return TR(cores)


def sub(a: TR, b: TR) -> TR:
    """``a - b`` (ranks add, as for :func:`add`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> a = tr.random(jax.random.key(0), (2, 3), 2)
      >>> float(tr.norm(tr.sub(a, a))) < 1e-3
      True
    """
    _check_tr(b, "b")
    return add(a, scale(b, -1))


def hadamard(a: TR, b: TR) -> TR:
    """Elementwise product ``a * b``: slices are Kronecker products, ``G_k[:, i, :] = A_k[:, i, :] (x) B_k[:, i, :]``,
    so all ranks multiply (``trace(X (x) Y) = trace(X) trace(Y)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> a = tr.random(jax.random.key(0), (2, 3), 2)
      >>> b = tr.random(jax.random.key(1), (2, 3), 3)
      >>> tr.hadamard(a, b).ranks
      (6, 6, 6)
      >>> bool(jnp.allclose(tr.to_dense(tr.hadamard(a, b)), tr.to_dense(a) * tr.to_dense(b), atol=1e-6))
      True
    """
    _check_tr(a, "a")
    _check_tr(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    cores = []
    for ca, cb in zip(a.cores, b.cores):
        ra, n, ra_next = ca.shape
        rb, _, rb_next = cb.shape
        cores.append(jnp.einsum("anb,cnd->acnbd", ca, cb).reshape(ra * rb, n, ra_next * rb_next))
    return TR(cores)


def inner(a: TR, b: TR) -> jax.Array:
    """``<a, b> = sum(conj(a) * b)``, never forming either tensor.

    Both rings are cut at the bond ``m`` where ``ra_m rb_m`` is smallest. A transfer tensor
    ``E[p, q, a', b']`` (``p, q`` the open indices of the cut, ``a', b'`` the current bonds) is swept around the
    ring, ``E <- sum_{a, b, i} E[p, q, a, b] conj(A_k[a, i, a']) B_k[b, i, b']``, and closed by a trace over
    ``p = a'``, ``q = b'``. Cost ``O(d n ra_m rb_m r^3)``, for example ``O(d n r^5)`` with all ranks ``r``
    (``O(d n r^3)`` for tensor trains).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> a = tr.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = tr.random(jax.random.key(1), (2, 3, 4), 3)
      >>> bool(jnp.allclose(tr.inner(a, b), jnp.vdot(tr.to_dense(a), tr.to_dense(b)), atol=1e-6))
      True
    """
    _check_tr(a, "a")
    _check_tr(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    if a.ndim == 1:
        return jnp.vdot(to_dense(a), to_dense(b))
    m = int(np.argmin([x * y for x, y in zip(a.ranks[:-1], b.ranks[:-1])]))
    ca, cb = _rotate(a, m), _rotate(b, m)
    pa, pb = a.ranks[m], b.ranks[m]
    env = jnp.einsum("pia,qib->pqab", ca[0].conj(), cb[0], precision=_HIGHEST)
    env = env.reshape(pa * pb, ca[0].shape[2], cb[0].shape[2])
    for xa, xb in zip(ca[1:], cb[1:]):
        r_a, n, ra_next = xa.shape
        r_b, _, rb_next = xb.shape
        # env[P, a, b] B[b, i, b'] -> tmp[P, a, i, b'];  tmp conj(A[a, i, a']) -> env[P, a', b'].
        tmp = jnp.matmul(env.reshape(-1, r_b), xb.reshape(r_b, n * rb_next), precision=_HIGHEST)
        tmp = tmp.reshape(pa * pb, r_a * n, rb_next)
        env = jnp.einsum("Pxc,xa->Pac", tmp, xa.reshape(r_a * n, ra_next).conj(), precision=_HIGHEST)
    env = env.reshape(pa, pb, pa, pb)
    return jnp.einsum("pqpq->", env)


def norm(t: TR) -> jax.Array:
    """Frobenius norm ``||t|| = sqrt(max(Re <t, t>, 0))`` (real, non-negative).

    Computed from :func:`inner`, so relative accuracy is about ``sqrt(eps * S) / ||t||`` with ``S`` the sum of the
    absolute values of the terms of ``<t, t>``: when the ring's entries cancel strongly (``||t||`` much smaller than
    its cores suggest), about half the digits are lost. For a tensor train, :func:`tnkit.tt.norm` is accurate to
    machine precision. The derivative is finite at ``t = 0``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> t = tr.random(jax.random.key(0), (2, 3, 4), 2)
      >>> bool(jnp.allclose(tr.norm(t), jnp.linalg.norm(tr.to_dense(t)), atol=1e-6))
      True
    """
    _check_tr(t)
    return _linalg.safe_sqrt(jnp.real(inner(t, t)))


# -------------------------------------------------------------------------------------------------------- entries


def get(t: TR, index) -> jax.Array:
    """Entries ``trace(G_1[:, i_1, :] ... G_d[:, i_d, :])`` for a batch of multi-indices, without forming the tensor.

    Args:
      t: a TR with ``d`` modes.
      index: integer array of shape ``(batch, d)`` (or ``(d,)`` for a single entry). Out-of-range indices raise
        when concrete; under ``jit`` they follow JAX's gather semantics (clamped), so check them beforehand.

    Returns:
      Array of shape ``(batch,)`` (or a scalar for ``(d,)`` input). Cost ``O(batch d r_0 r^2)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tr
      >>> t = tr.random(jax.random.key(0), (2, 3, 4), 2)
      >>> idx = jnp.array([[0, 1, 2], [1, 2, 3]])
      >>> x = tr.to_dense(t)
      >>> bool(jnp.allclose(tr.get(t, idx), x[idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-6))
      True
    """
    _check_tr(t)
    index, single = _checks.element_index(index, t.dims, "TR")
    mats = jnp.take(t.cores[0], index[:, 0], axis=1).transpose(1, 0, 2)  # (batch, r_0, r_1)
    for k in range(1, t.ndim):
        nxt = jnp.take(t.cores[k], index[:, k], axis=1)  # (r_{k-1}, batch, r_k)
        mats = jnp.einsum("bpa,abc->bpc", mats, nxt, precision=_HIGHEST)
    out = jnp.trace(mats, axis1=1, axis2=2)
    return out[0] if single else out


# ------------------------------------------------------------------------------------------------------ creation


def random(key, dims: Sequence[int], ranks, dtype=jnp.float32) -> TR:
    """A TR with i.i.d. Gaussian cores, scaled so that ``E ||t||^2 = 1``.

    Entries of core ``k`` have variance ``1 / (n_k r_k)`` (``r_k`` its right rank). Distinct index paths around the
    ring use distinct entries, so ``E |x[i]|^2 = prod_k r_k / (n_k r_k)`` and the ``prod_k n_k`` entries add up to
    one. Complex dtypes draw real and imaginary parts independently.

    Args:
      key: a JAX PRNG key.
      dims: mode sizes ``(n_1, ..., n_d)``.
      ranks: an int (all ranks, ``r_0`` included), ``(r_0, ..., r_{d-1})`` or ``(r_0, ..., r_{d-1}, r_0)``.
      dtype: floating or complex dtype.

    Example:
      >>> import jax
      >>> from tnkit import tr
      >>> tr.random(jax.random.key(0), (2, 3, 4), (2, 3, 4)).ranks
      (2, 3, 4, 2)
    """
    dims = _check_dims(dims)
    ranks = _full_ranks(dims, ranks)
    dtype = jnp.dtype(dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise TypeError(f"dtype must be floating or complex, got {dtype}")
    # One draw for all cores (one sampling kernel to compile when called eagerly), cut into the cores.
    sizes = [ranks[k] * n * ranks[k + 1] for k, n in enumerate(dims)]
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    cores, start = [], 0
    for k, n in enumerate(dims):
        std = 1.0 / math.sqrt(n * ranks[k + 1])
        cores.append(std * flat[start : start + sizes[k]].reshape(ranks[k], n, ranks[k + 1]))
        start += sizes[k]
    return TR(cores)
