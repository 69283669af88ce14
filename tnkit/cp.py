"""The CP (CANDECOMP/PARAFAC) algebra and CP-ALS: pure functions on :class:`tnkit.CP`.

Conventions:
  * A CP of rank ``R`` is ``x[i_1, ..., i_d] = sum_r weights[r] * A_1[i_1, r] * ... * A_d[i_d, r]``, with
    ``weights`` of shape ``(R,)`` and ``factors[k] = A_{k+1}`` of shape ``(n_k, R)``.
  * ``inner(a, b) = sum(conj(a) * b)``: conjugate-linear in the first argument (like ``jnp.vdot``).
  * Every function works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (except :func:`als`, whose loop is a
    ``lax.while_loop``: it can be jitted and vmapped but not reverse-differentiated), for float32, float64,
    complex64 and complex128.
  * Nothing here forms a dense tensor unless its name says so (:func:`to_dense`): :func:`inner` and :func:`norm`
    work on the ``R x R`` Gram matrices of the factors, :func:`get` gathers rows.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import cp
  >>> t = cp.random(jax.random.key(0), (4, 5, 6), 3)
  >>> t.dims, t.rank
  ((4, 5, 6), 3)
  >>> x = cp.to_dense(t)
  >>> fit, info = cp.als(x, 3, num_iters=200)
  >>> bool(jnp.linalg.norm(cp.to_dense(fit) - x) <= 1e-3 * jnp.linalg.norm(x))
  True
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import _checks, _linalg
from tnkit.formats import CP, TT, Tucker

__all__ = [
    "to_dense",
    "inner",
    "norm",
    "get",
    "random",
    "normalize",
    "add",
    "scale",
    "to_tt",
    "to_tucker",
    "als",
    "Init",
    "LineSearch",
    "ALSInfo",
]

_HIGHEST = lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------- validation helpers


def _check_cp(t, name: str = "t") -> CP:
    if not isinstance(t, CP):
        raise TypeError(f"{name} must be a tnkit.CP, got {type(t).__name__}")
    return t


def _check_same_dims(a: CP, b: CP, names=("a", "b")) -> None:
    if a.dims != b.dims:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dims, got {a.dims} and {b.dims}")


def _promote(a: CP, b: CP) -> tuple[CP, CP]:
    dtype = jnp.result_type(a.dtype, b.dtype)
    cast = lambda t: t if t.dtype == dtype else jax.tree_util.tree_map(lambda c: c.astype(dtype), t)  # noqa: E731
    return cast(a), cast(b)


def _check_rank(rank, name: str = "rank") -> int:
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"{name} must be a positive int, got {rank!r}")
    return int(rank)


def _check_dims(dims) -> tuple[int, ...]:
    try:
        dims = tuple(int(n) for n in dims)
    except TypeError:
        raise TypeError(f"dims must be a sequence of ints, got {dims!r}") from None
    if not dims or any(n < 1 for n in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims}")
    return dims


def _real_dtype(dtype):
    return jnp.finfo(dtype).dtype


def _grams(factors: Sequence[jax.Array]) -> list[jax.Array]:
    """``G_k = A_k^H A_k`` of shape ``(R, R)`` for each factor."""
    return [jnp.matmul(f.conj().T, f, precision=_HIGHEST) for f in factors]


def _hadamard_all(mats: Sequence[jax.Array], shape, dtype) -> jax.Array:
    out = jnp.ones(shape, dtype)
    for m in mats:
        out = out * m
    return out


# ---------------------------------------------------------------------------------------------- dense conversions


def to_dense(t: CP) -> jax.Array:
    """The dense tensor of shape ``t.dims`` that ``t`` represents.

    Computed as ``(w * A_1) (.) A_2 (.) ... (.) A_{d-1}`` (a column-wise Khatri-Rao product of shape
    ``(n_1 ... n_{d-1}, R)``) times ``A_d^T``: one matrix product of ``O(R prod(n))`` flops.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import CP, cp
      >>> t = CP(jnp.array([2.0]), [jnp.array([[1.0], [2.0]]), jnp.array([[1.0], [0.0], [3.0]])])
      >>> cp.to_dense(t).tolist()
      [[2.0, 0.0, 6.0], [4.0, 0.0, 12.0]]
    """
    _check_cp(t)
    w, factors = t.weights, t.factors
    if t.ndim == 1:
        return jnp.matmul(factors[0], w, precision=_HIGHEST)
    rank = t.rank
    left = factors[0] * w[None, :]
    for f in factors[1:-1]:
        left = (left[:, None, :] * f[None, :, :]).reshape(-1, rank)
    return jnp.matmul(left, factors[-1].T, precision=_HIGHEST).reshape(t.dims)


def to_tt(t: CP) -> TT:
    """The same tensor as a tensor train with ranks ``(1, R, ..., R, 1)`` (exact, no arithmetic beyond a copy).

    Core ``1`` is ``(w * A_1)`` as ``(1, n_1, R)``, the middle cores are diagonal in the bond,
    ``G_k[r, i, s] = delta_{rs} A_k[i, r]``, and the last core is ``A_d^T`` as ``(R, n_d, 1)``. The ranks are not
    minimal where ``R`` exceeds the mode sizes on one side; :func:`tnkit.tt.round` compresses them.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp, tt
      >>> t = cp.random(jax.random.key(0), (3, 4, 5), 2)
      >>> c = cp.to_tt(t)
      >>> c.ranks
      (1, 2, 2, 1)
      >>> bool(jnp.allclose(tt.to_dense(c), cp.to_dense(t), atol=1e-6))
      True
    """
    _check_cp(t)
    w, factors = t.weights, t.factors
    d, rank = t.ndim, t.rank
    if d == 1:
        return TT([jnp.matmul(factors[0], w, precision=_HIGHEST).reshape(1, -1, 1)])
    eye = jnp.eye(rank, dtype=t.dtype)
    cores = [(factors[0] * w[None, :])[None, :, :]]
    for f in factors[1:-1]:
        cores.append(eye[:, None, :] * f.T[:, :, None])  # (R, n, R): delta_rs f[i, r]
    cores.append(factors[-1].T[:, :, None])
    return TT(cores)


def to_tucker(t: CP) -> Tucker:
    """The same tensor in Tucker form with orthonormal factors and multilinear ranks ``min(n_k, R)`` (exact).

    Each factor is factored ``A_k = Q_k B_k`` (a thin QR where ``n_k >= R``, else an SVD-based basis of its
    ``n_k``-dimensional column space, via :func:`tnkit._linalg.left_orthonormal`, whose derivative is finite);
    the core is the small CP ``[w; B_1, ..., B_d]`` made dense, of shape ``(min(n_1, R), ..., min(n_d, R))``. The
    core has ``prod_k min(n_k, R)`` entries, so this is meant for small ``d``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> t = cp.random(jax.random.key(0), (2, 6, 7), 3)
      >>> tk = cp.to_tucker(t)
      >>> tk.ranks
      (2, 3, 3)
      >>> u = tk.factors[1]
      >>> bool(jnp.allclose(u.T @ u, jnp.eye(3), atol=1e-5))
      True
    """
    _check_cp(t)
    qs, bs = [], []
    for f in t.factors:
        q, b = _linalg.left_orthonormal(f)
        qs.append(q)
        bs.append(b)
    core = to_dense(CP(t.weights, bs))
    return Tucker(core, qs)


# ------------------------------------------------------------------------------------------------- linear algebra


def inner(a: CP, b: CP) -> jax.Array:
    """``<a, b> = sum(conj(a) * b) = conj(w_a)^T (G_1 * ... * G_d) w_b`` with ``G_k = A_k^H B_k`` (never dense).

    ``O(R_a R_b sum_k n_k)`` flops. The ranks of ``a`` and ``b`` may differ; dtypes are promoted.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> a = cp.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = cp.random(jax.random.key(1), (2, 3, 4), 3)
      >>> bool(jnp.allclose(cp.inner(a, b), jnp.vdot(cp.to_dense(a), cp.to_dense(b)), atol=1e-6))
      True
    """
    _check_cp(a, "a")
    _check_cp(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    h = _hadamard_all(
        [jnp.matmul(fa.conj().T, fb, precision=_HIGHEST) for fa, fb in zip(a.factors, b.factors)],
        (a.rank, b.rank),
        a.dtype,
    )
    return jnp.matmul(a.weights.conj(), jnp.matmul(h, b.weights, precision=_HIGHEST), precision=_HIGHEST)


def norm(t: CP) -> jax.Array:
    """Frobenius norm ``||t|| = sqrt(Re <t, t>)`` (real, non-negative), from the Gram matrices of the factors.

    The square is a sum of ``R^2`` terms, so the result carries an absolute error of about
    ``sqrt(eps) * sqrt(sum_rs |w_r w_s| prod_k |G_k[r, s]|)``: accurate to machine precision relative to the norm
    unless the rank-one terms cancel strongly (a norm far below the size of the terms). The square root is guarded:
    a round-off negative square gives 0, and the derivative stays finite at ``t = 0``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> t = cp.random(jax.random.key(0), (2, 3, 4), 2)
      >>> bool(jnp.allclose(cp.norm(t), jnp.linalg.norm(cp.to_dense(t)), atol=1e-6))
      True
    """
    _check_cp(t)
    return _linalg.safe_sqrt(jnp.real(inner(t, t)))


def add(a: CP, b: CP) -> CP:
    """``a + b`` as a CP of rank ``R_a + R_b`` (weights and factor columns concatenated).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> a = cp.random(jax.random.key(0), (2, 3), 2)
      >>> b = cp.random(jax.random.key(1), (2, 3), 1)
      >>> c = cp.add(a, b)
      >>> c.rank
      3
      >>> bool(jnp.allclose(cp.to_dense(c), cp.to_dense(a) + cp.to_dense(b), atol=1e-6))
      True
    """
    _check_cp(a, "a")
    _check_cp(b, "b")
    _check_same_dims(a, b)
    a, b = _promote(a, b)
    return CP(
        jnp.concatenate([a.weights, b.weights]),
        [jnp.concatenate([fa, fb], axis=1) for fa, fb in zip(a.factors, b.factors)],
    )


def scale(t: CP, alpha) -> CP:
    """``alpha * t`` for a scalar ``alpha`` (the factor goes into the weights; real CPs become complex for a
    complex ``alpha``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> t = cp.random(jax.random.key(0), (2, 3), 2)
      >>> bool(jnp.allclose(cp.to_dense(cp.scale(t, 3.0)), 3.0 * cp.to_dense(t)))
      True
    """
    _check_cp(t)
    alpha, dtype = _checks.scalar_factor(alpha, t.dtype)
    factors = [f.astype(dtype) for f in t.factors]
    return CP(t.weights.astype(dtype) * alpha, factors)


def normalize(t: CP) -> CP:
    """The same tensor with unit-norm factor columns; the weights absorb the norms.

    ``A_k[:, r] <- A_k[:, r] / ||A_k[:, r]||`` and ``w_r <- w_r prod_k ||A_k[:, r]||``. A zero column is left
    as it is (its component has weight 0 after the update).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> t = cp.normalize(cp.random(jax.random.key(0), (3, 4), 2))
      >>> bool(jnp.allclose(jnp.linalg.norm(t.factors[0], axis=0), 1.0))
      True
    """
    _check_cp(t)
    return CP(*_normalize_parts(t.weights, t.factors))


def _normalize_parts(w, factors):
    """:func:`normalize` on raw ``(weights, factors)``."""
    out = []
    for f in factors:
        f, nrm = _normalize_columns(f)
        w = w * nrm.astype(w.dtype)
        out.append(f)
    return w, out


def _normalize_columns(f):
    """``(f / ||f[:, r]||, norms)``; a zero column is returned unchanged with norm 0."""
    nrm = _linalg.safe_sqrt(jnp.sum(jnp.real(f.conj() * f), axis=0))
    safe = jnp.where(nrm > 0, nrm, 1.0)
    return f / safe.astype(f.dtype)[None, :], nrm


# -------------------------------------------------------------------------------------------------- entries, random


def get(t: CP, index) -> jax.Array:
    """Entries ``t[index[b, 0], ..., index[b, d-1]] = sum_r w_r prod_k A_k[index[b, k], r]``, without forming
    the tensor.

    Args:
      t: a CP with ``d`` modes.
      index: integer array of shape ``(batch, d)`` (or ``(d,)`` for a single entry). Out-of-range indices raise
        when concrete; under ``jit`` they follow JAX's gather semantics (clamped), so check them beforehand.

    Returns:
      Array of shape ``(batch,)`` (or a scalar for ``(d,)`` input).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> t = cp.random(jax.random.key(0), (2, 3, 4), 2)
      >>> idx = jnp.array([[0, 1, 2], [1, 2, 3]])
      >>> x = cp.to_dense(t)
      >>> bool(jnp.allclose(cp.get(t, idx), x[idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-6))
      True
    """
    _check_cp(t)
    index, single = _checks.element_index(index, t.dims, "CP")
    rows = t.weights[None, :]
    for k, f in enumerate(t.factors):
        rows = rows * jnp.take(f, index[:, k], axis=0)
    out = jnp.sum(rows, axis=1)
    return out[0] if single else out


def random(key, dims: Sequence[int], rank: int, dtype=jnp.float32) -> CP:
    """A CP with i.i.d. Gaussian factors (entries of variance ``1 / n_k``) and weights ``1 / sqrt(R)``, so that
    ``E ||t||^2 = 1``. Complex dtypes draw real and imaginary parts independently.

    Example:
      >>> import jax
      >>> from tnkit import cp
      >>> t = cp.random(jax.random.key(0), (2, 3, 4), 5)
      >>> t.dims, t.rank, [f.shape for f in t.factors]
      ((2, 3, 4), 5, [(2, 5), (3, 5), (4, 5)])
    """
    dims = _check_dims(dims)
    rank = _check_rank(rank)
    dtype = jnp.dtype(dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise TypeError(f"dtype must be floating or complex, got {dtype}")
    keys = jax.random.split(key, len(dims))
    factors = [jax.random.normal(k, (n, rank), dtype) / math.sqrt(n) for k, n in zip(keys, dims)]
    return CP(jnp.full((rank,), 1.0 / math.sqrt(rank), dtype), factors)


# ------------------------------------------------------------------------------------------------------------ ALS


class Init(enum.Enum):
    """How :func:`als` chooses its starting point when no CP is given.

    Attributes:
      SVD: factor ``k`` starts as the ``R`` leading left singular vectors of the mode-``k`` unfolding
        ``x_(k)`` of shape ``(n_k, prod_{j != k} n_j)`` (from the eigenvectors of its ``n_k x n_k`` Gram matrix
        ``x_(k) x_(k)^H``, accurate for the directions that matter to a starting point); where ``R > n_k`` the
        missing columns are Gaussian, drawn
        from ``key`` (``jax.random.key(0)`` when no key is given). Deterministic otherwise.
      RANDOM: i.i.d. standard Gaussian factors drawn from ``key`` (required).

    The first factor's starting value is never used (the first ALS step overwrites it from the others), so neither
    method computes it.
    """

    SVD = "svd"
    RANDOM = "random"


class LineSearch(NamedTuple):
    """Extrapolation ("line search") of Bro (1998) for CP-ALS, with the adaptive step of TensorLy's ``parafac``.

    At iterations ``it = start, start + every, ...`` (0-based), after the ALS sweep that takes the iterate from
    ``p_old`` to ``p_new`` (weights and factors), the point ``p_old + s (p_new - p_old)`` with step
    ``s = it ** (1 / power)`` is tried; it replaces ``p_new`` if its relative error is lower than ``p_new``'s.
    After ``max_failures`` consecutive rejections, ``power`` grows by one (shorter steps). The trial costs one
    extra MTTKRP (a pass over ``x``), computed only at those iterations.

    Attributes:
      start: first iteration that may extrapolate (``>= 1``).
      every: extrapolate every ``every`` iterations (``>= 1``).
      power: initial ``power`` (``> 0``); TensorLy starts at 2, Bro's thesis uses 3.
      max_failures: consecutive rejections after which ``power`` grows by 1 (``>= 1``).
    """

    start: int = 6
    every: int = 2
    power: float = 2.0
    max_failures: int = 4


class ALSInfo(NamedTuple):
    """What happened in :func:`als`.

    Attributes:
      iterations: int array, the number of ALS sweeps done (``<= num_iters``).
      errors: array of shape ``(num_iters,)``, real: ``errors[k]`` is the relative error
        ``||x - cp|| / ||x||`` after sweep ``k + 1`` (after the extrapolation, if one was accepted); entries
        ``k >= iterations`` repeat the last error. Computed from ``||x||^2``, the last MTTKRP and the Gram matrices
        (no dense reconstruction), so it has an absolute accuracy of about ``sqrt(eps)`` (``1e-8`` in float64,
        ``3e-4`` in float32): below that, check with :func:`to_dense`. The absolute error is reported if
        ``x = 0``.
      converged: bool array, whether the loop stopped because ``|errors[k-1] - errors[k]| < tol``.
      accepted_jumps: int array, how many line-search extrapolations were accepted (0 without line search).
    """

    iterations: jax.Array
    errors: jax.Array
    converged: jax.Array
    accepted_jumps: jax.Array


def _check_x(x) -> jax.Array:
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        raise TypeError(f"x must have a floating or complex dtype, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 axes for a CP decomposition, got shape {x.shape}")
    return jnp.asarray(x)


def _check_line_search(line_search) -> LineSearch | None:
    if line_search is None or line_search is False:
        return None
    if line_search is True:
        return LineSearch()
    if not isinstance(line_search, LineSearch):
        raise TypeError(f"line_search must be a bool or a cp.LineSearch, got {type(line_search).__name__}")
    ls = line_search
    for name in ("start", "every", "max_failures"):
        v = getattr(ls, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"LineSearch.{name} must be an int >= 1, got {v!r}")
    if not isinstance(ls.power, (int, float, np.floating, np.integer)) or not (0 < ls.power < math.inf):
        raise ValueError(f"LineSearch.power must be a positive finite number, got {ls.power!r}")
    return ls


def _check_scalar(value, name: str):
    """A non-negative finite Python number, or a traced scalar (checked for shape only)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a non-negative finite float, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not (0 <= value < math.inf):
            raise ValueError(f"{name} must be a non-negative finite float, got {value!r}")
        return value
    value = jnp.asarray(value)
    if value.ndim != 0 or not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise ValueError(f"{name} must be a non-negative real scalar, got shape {value.shape} dtype {value.dtype}")
    return value


def _initial_factors(x, rank, init, key):
    dims, dtype = x.shape, x.dtype
    d = x.ndim
    if isinstance(init, CP):
        if init.dims != dims or init.rank != rank:
            raise ValueError(
                f"init is a CP with dims {init.dims} and rank {init.rank}: expected dims {dims} (the shape of x) and "
                f"rank {rank}"
            )
        if init.batch_shape:
            raise ValueError(f"init must be a single CP, got one with batch_shape {init.batch_shape}")
        if jnp.issubdtype(init.dtype, jnp.complexfloating) and not jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"init has complex dtype {init.dtype} but x is real ({dtype}); pass a real init")
        return init.weights.astype(dtype), [f.astype(dtype) for f in init.factors]
    if not isinstance(init, Init):
        raise TypeError(f"init must be a cp.Init or a tnkit.CP, got {type(init).__name__}")
    if init is Init.RANDOM and key is None:
        raise ValueError("init=Init.RANDOM needs a PRNG key: pass key=jax.random.key(...)")
    keys = jax.random.split(jax.random.key(0) if key is None else key, d)
    factors = [jnp.zeros((dims[0], rank), dtype)]  # overwritten by the first ALS step before any use
    for k in range(1, d):
        n = dims[k]
        if init is Init.RANDOM:
            factors.append(jax.random.normal(keys[k], (n, rank), dtype))
            continue
        unfolding = jnp.moveaxis(x, k, 0).reshape(n, -1)
        kept = min(rank, *unfolding.shape)
        # The start is a heuristic: the Gram route (exact for singular values above sqrt(eps) s_1) is enough.
        u, _ = _linalg.left_svd(unfolding, kept, _linalg.SVDMethod.GRAM)
        f = u[:, :kept]
        if kept < rank:
            pad = jax.random.normal(keys[k], (n, rank - kept), dtype) / math.sqrt(n)
            f = jnp.concatenate([f, pad], axis=1)
        factors.append(f)
    return jnp.ones((rank,), dtype), factors


def _padded_width(rank: int) -> int:
    """Columns of the factor matrices in the MTTKRP passes: ``rank`` rounded up to 8, or above 8 to a multiple of
    16. XLA's CPU products of a tall ``(prod(n) / n_k, n_k)`` matrix by an ``(n_k, R)`` one ran faster at these widths
    than at nearby ones, extra zero columns included (``100^3`` float64, 2 cores: 0.25 ms at ``R = 8``, 0.39 ms at
    ``R = 10``, 0.28 ms at ``R = 16``, 0.49 ms at ``R = 24``, 0.44 ms at ``R = 32``)."""
    return 8 if rank <= 8 else -(-rank // 16) * 16


def _pad_columns(m, width: int):
    """``m`` with zero columns appended up to ``width`` columns."""
    return jnp.pad(m, ((0, 0), (0, width - m.shape[1]))) if width > m.shape[1] else m


def _contract_trailing(x, mats):
    """``x`` contracted with ``mats[j]`` (shape ``(n, W)``) over its last ``len(mats)`` modes, sharing the column
    index: result of shape ``(n_1, ..., n_{d-len(mats)}, W)``. The first step is one matrix product over all of
    ``x`` (a pass over it); the others act on tensors ``n_d`` times smaller and less."""
    dims = x.shape
    d, m = x.ndim, x.ndim - len(mats)
    width = mats[-1].shape[1]
    t = jnp.matmul(x.reshape(-1, dims[-1]), mats[-1], precision=_HIGHEST)  # (n_1 ... n_{d-1}, W)
    for k in range(d - 2, m - 1, -1):
        # An elementwise product and a sum: faster here than a dot batched over the columns (measured on CPU).
        t = jnp.sum(t.reshape(-1, dims[k], width) * mats[k - m][None, :, :], axis=1)
    return t.reshape(dims[:m] + (width,))


def _mttkrp_from_partial(t, modes, mats, mode):
    """Contract a partial result ``t`` of shape ``(n_k for k in modes) + (W,)`` with ``mats[k]`` for every mode
    ``k`` in ``modes`` except ``mode``: the MTTKRP of ``mode``, shape ``(n_mode, W)``. Each step is a broadcast
    product and a sum, which XLA fuses into one loop (an einsum would transpose ``t`` into a dot batched over the
    columns)."""
    axes = list(modes)
    for k in [k for k in modes if k != mode]:
        i = axes.index(k)
        shape = [1] * t.ndim
        shape[i], shape[-1] = mats[k].shape
        t = jnp.sum(t * mats[k].reshape(shape), axis=i)
        axes.pop(i)
    return t


def _moved(x):
    """``x`` with its first ``d // 2`` axes moved to the end: the layout in which the second MTTKRP pass of a sweep
    contracts trailing, contiguous axes (a product over the leading axes ran about 2x slower on the CPU)."""
    m = x.ndim // 2
    return jnp.transpose(x, tuple(range(m, x.ndim)) + tuple(range(m)))


def _solve_normal_equations(h, m):
    """``F`` with ``F conj(h) = m``, i.e. ``h F^T = m^T``, for Hermitian positive semi-definite ``h`` (``R x R``).

    Through the eigendecomposition ``h = V diag(lam) V^H``, with eigenvalues below ``R eps lam_max`` dropped: the
    minimum-norm least-squares solution, so a rank-deficient system (collinear or zero columns, ``x = 0``) gives a
    finite answer instead of a failed Cholesky factorisation. ``O(R^3)`` flops, negligible next to the MTTKRP's
    ``O(R prod(n))``. (Cholesky with this as a fallback under ``lax.cond`` was also tried: at ``R = 10`` its run
    time was the same within measurement noise, and the ALS loop took about 45% longer to compile.)
    """
    lam, v = jnp.linalg.eigh(h)
    cutoff = h.shape[0] * jnp.finfo(lam.dtype).eps * jnp.max(lam)
    keep = lam > cutoff
    inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0).astype(h.dtype)
    sol = jnp.matmul(v * inv[None, :], jnp.matmul(v.conj().T, m.T, precision=_HIGHEST), precision=_HIGHEST)
    return sol.T


def _model_norm_sq(w, grams):
    h = _hadamard_all(grams, grams[0].shape, grams[0].dtype)
    return jnp.real(jnp.vdot(w, jnp.matmul(h, w, precision=_HIGHEST)))


def _error_sq(norm_x_sq, w, grams, f_last, m_last):
    """``||x - y||^2 = ||x||^2 - 2 Re <y, x> + ||y||^2`` with ``<y, x> = sum conj(F) M`` (``F = A_d w``, ``M`` the
    MTTKRP of the last mode)."""
    cross = jnp.real(jnp.sum(f_last.conj() * m_last))
    return norm_x_sq - 2 * cross + _model_norm_sq(w, grams)


def _finish_update(f, normalize_columns):
    if normalize_columns:
        a, nrm = _normalize_columns(f)
        return nrm.astype(f.dtype), a
    return jnp.ones((f.shape[1],), f.dtype), f


def _sweep(x, x_moved, factors, ridge, normalize_columns):
    """One ALS sweep over all modes with a two-level dimension tree: two passes over ``x`` in all.

    Modes are split into a left half ``[0, m)`` and a right half ``[m, d)``, ``m = d // 2``. One pass contracts
    ``x`` with the (fixed) right-half factors, and the left-half MTTKRPs follow from that partial result; a second
    pass contracts ``x_moved`` (``x`` with the left-half axes moved to the end, :func:`_moved`) with the freshly
    updated left-half factors for the right half. The passes use the factors zero-padded to
    :func:`_padded_width` columns.

    Returns ``(weights, factors, grams, m_last)``: the new CP, its Gram matrices and the MTTKRP of the last mode
    (for the error).
    """
    d = x.ndim
    rank = factors[0].shape[1]
    width = _padded_width(rank)
    factors = list(factors)
    grams = _grams(factors)
    conj = [_pad_columns(f.conj(), width) for f in factors]
    eye = jnp.eye(rank, dtype=x.dtype)
    m = d // 2
    w = m_last = None
    for modes in (range(m), range(m, d)):
        # x times the other half's factors (the left half's are the ones just updated): (n_k for k in modes) + (W,)
        if modes.start == 0:
            partial = _contract_trailing(x, conj[m:])
        else:
            partial = _contract_trailing(x_moved, conj[:m])
        for n in modes:
            m_last = _mttkrp_from_partial(partial, modes, conj, n)[:, :rank]
            h = _hadamard_all([g for k, g in enumerate(grams) if k != n], (rank, rank), x.dtype)
            w, factors[n] = _finish_update(_solve_normal_equations(h + ridge * eye, m_last), normalize_columns)
            conj[n] = _pad_columns(factors[n].conj(), width)
            grams[n] = jnp.matmul(factors[n].conj().T, factors[n], precision=_HIGHEST)
    return w, factors, grams, m_last


def _last_mttkrp(x_moved, factors):
    """The MTTKRP of the last mode (one pass over ``x``, through :func:`_moved`'s layout)."""
    d, rank = len(factors), factors[0].shape[1]
    m = d // 2
    conj = [_pad_columns(f.conj(), _padded_width(rank)) for f in factors]
    partial = _contract_trailing(x_moved, conj[:m])
    return _mttkrp_from_partial(partial, range(m, d), conj, d - 1)[:, :rank]


def als(
    x,
    rank: int,
    *,
    key=None,
    init: Init | CP = Init.SVD,
    num_iters: int = 100,
    tol=1e-8,
    line_search: bool | LineSearch = False,
    normalize: bool = True,
    ridge=0.0,
) -> tuple[CP, ALSInfo]:
    """CP decomposition of a dense tensor by alternating least squares (CP-ALS).

    Each sweep updates ``A_1, ..., A_d`` in turn; the update of mode ``k`` solves the least-squares problem
    ``min_F ||x_(k) - F K_k^T||^2 + ridge ||F||^2`` (``K_k`` the Khatri-Rao product of the other factors) through
    its normal equations ``F (conj(H_k) + ridge I) = M_k``, where ``H_k = *_{j != k} A_j^H A_j`` (Hadamard product
    of ``R x R`` Gram matrices) and ``M_k = x_(k) conj(K_k)`` is the MTTKRP. The MTTKRPs are never computed from a
    Khatri-Rao product: a two-level dimension tree gets all ``d`` of them from two passes over ``x`` per sweep
    (``4 R prod(n)`` flops; the second pass reads a copy of ``x`` with its axes reordered, made once per call, so
    ``als`` holds ``x`` twice in memory), the small systems are solved through an eigendecomposition (a pseudo-inverse, finite
    when they are singular), and the error comes from ``||x||^2``, the last MTTKRP and the Gram matrices.
    With ``normalize``, each updated factor's column norms move into the weights (as in Kolda and Bader's CP-ALS);
    without it the weights stay 1 and the factors carry the scale (as in TensorLy's default). The iterates define
    the same tensors either way (up to rounding), except where a line search extrapolates.

    Args:
      x: dense array of shape ``(n_1, ..., n_d)``, ``d >= 2``, floating or complex (complex data are fitted with
        complex factors; the conjugations are done properly).
      rank: number ``R`` of rank-one terms (static).
      key: PRNG key for ``Init.RANDOM`` (required) and for the padding of ``Init.SVD`` when ``R > n_k``.
      init: an :class:`Init`, or a :class:`tnkit.CP` of dims ``x.shape`` and rank ``R`` to start from. Only the
        column directions of ``A_2, ..., A_d`` matter: the first step overwrites ``A_1`` and the weights.
      num_iters: maximal number of sweeps (static); also the length of the error history.
      tol: stop when the relative error changes by less than ``tol`` between two sweeps (TensorLy's
        ``cvg_criterion="abs_rec_error"``). ``tol=0`` runs all ``num_iters`` sweeps. May be traced.
      line_search: ``True`` for :class:`LineSearch` with its defaults, a :class:`LineSearch`, or ``False``.
      normalize: move column norms into the weights after every factor update (static).
      ridge: Tikhonov regularisation ``ridge ||F||^2`` of each factor update (``>= 0``; may be traced). ``F`` is
        the updated factor with the weights in it, the other factors as they are; so with ``normalize`` (other
        factors of unit columns) the penalty acts on the weights' scale, and without it the result is TensorLy's
        ``l2_reg``. The two choices then give different fits.

    Returns:
      ``(cp, info)``: the fitted :class:`tnkit.CP` (unit-norm columns if ``normalize``) and an :class:`ALSInfo`.

    Raises:
      ValueError: ``rank < 1``, ``x`` with fewer than 2 axes, an ``init`` CP of the wrong dims or rank, bad
        ``num_iters``, ``tol``, ``ridge`` or :class:`LineSearch` fields, ``Init.RANDOM`` without a key.
      TypeError: ``x`` not floating or complex, ``init`` or ``line_search`` of the wrong type.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import cp
      >>> x = cp.to_dense(cp.random(jax.random.key(0), (5, 6, 7), 2))
      >>> fit, info = cp.als(x, 2, num_iters=100, tol=0.0)
      >>> int(info.iterations), info.errors.shape, fit.rank
      (100, (100,), 2)
      >>> bool(jnp.linalg.norm(cp.to_dense(fit) - x) < 1e-4 * jnp.linalg.norm(x))
      True
    """
    x = _check_x(x)
    rank = _check_rank(rank)
    if isinstance(num_iters, bool) or not isinstance(num_iters, (int, np.integer)) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
    num_iters = int(num_iters)
    tol = _check_scalar(tol, "tol")
    ridge = _check_scalar(ridge, "ridge")
    ls = _check_line_search(line_search)
    normalize = bool(normalize)
    w0, factors0 = _initial_factors(x, rank, init, key)

    rdtype = _real_dtype(x.dtype)
    norm_x_sq = jnp.real(jnp.vdot(x, x))
    denom = jnp.where(norm_x_sq > 0, jnp.sqrt(jnp.where(norm_x_sq > 0, norm_x_sq, 1.0)), 1.0)
    tol = jnp.asarray(tol, rdtype)
    ridge = jnp.asarray(ridge, rdtype)

    x_moved = _moved(x)  # a second copy of x, in the layout of the second pass

    def relative(err_sq):
        return _linalg.safe_sqrt(err_sq) / denom

    def body(state):
        it, w, factors, errors, prev_err, _, power, fails, accepted = state
        w_new, f_new, grams, m_last = _sweep(x, x_moved, factors, ridge, normalize)
        err = relative(_error_sq(norm_x_sq, w_new, grams, f_new[-1] * w_new[None, :], m_last))
        if ls is not None:

            def jump(_):
                step = it.astype(rdtype) ** (1.0 / power)
                w_try = w + step.astype(w.dtype) * (w_new - w)
                f_try = [a + step.astype(a.dtype) * (b - a) for a, b in zip(factors, f_new)]
                if normalize:
                    w_try, f_try = _normalize_parts(w_try, f_try)
                err_try = relative(
                    _error_sq(norm_x_sq, w_try, _grams(f_try), f_try[-1] * w_try[None, :], _last_mttkrp(x_moved, f_try))
                )
                better = err_try < err  # False for NaN
                pick = lambda a, b: jnp.where(better, a, b)  # noqa: E731
                new_fails = jnp.where(better, 0, fails + 1)
                grow = new_fails >= ls.max_failures
                return (
                    pick(w_try, w_new),
                    [pick(a, b) for a, b in zip(f_try, f_new)],
                    pick(err_try, err),
                    power + grow.astype(power.dtype),
                    jnp.where(grow, 0, new_fails),
                    accepted + better.astype(accepted.dtype),
                )

            def no_jump(_):
                return w_new, list(f_new), err, power, fails, accepted

            line_iter = (it >= ls.start) & ((it - ls.start) % ls.every == 0)
            w_new, f_new, err, power, fails, accepted = lax.cond(line_iter, jump, no_jump, None)
        converged = jnp.abs(prev_err - err) < tol
        errors = errors.at[it].set(err)
        return it + 1, w_new, list(f_new), errors, err, converged, power, fails, accepted

    def cond(state):
        return (state[0] < num_iters) & ~state[5]

    state = (
        jnp.asarray(0, jnp.int32),
        w0,
        list(factors0),
        jnp.zeros((num_iters,), rdtype),
        jnp.asarray(jnp.inf, rdtype),
        jnp.asarray(False),
        jnp.asarray(ls.power if ls is not None else 1.0, rdtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(0, jnp.int32),
    )
    it, w, factors, errors, last_err, converged, _, _, accepted = lax.while_loop(cond, body, state)
    errors = jnp.where(jnp.arange(num_iters) < it, errors, last_err)
    return CP(w, factors), ALSInfo(it, errors, converged, accepted)

