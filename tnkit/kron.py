"""Kronecker-structured operators: :class:`Kron` (``A_1 ⊗ ... ⊗ A_k``) and :class:`KronSum` (sums of them).

A :class:`Kron` holds its factors ``A_k`` of shape ``(m_k, n_k)`` and stands for the ``(prod(m), prod(n))`` matrix
``A_1 ⊗ A_2 ⊗ ... ⊗ A_k`` in the convention of ``np.kron`` (row-major): row index ``(i_1, ..., i_k)`` and column
index ``(j_1, ..., j_k)`` are flattened row-major, and ``W[(i_1..i_k), (j_1..j_k)] = prod_k A_k[i_k, j_k]``.
A :class:`KronSum` is ``sum_t A_1[t] ⊗ ... ⊗ A_k[t]`` with each factor stacked over the ``T`` terms, shape
``(T, m_k, n_k)``; with two factors this is the weight ``W = sum_i A_i ⊗ S_i`` of a parameterised hypercomplex
(PHM) layer.

Nothing here forms the dense matrix unless asked (:func:`to_dense`). Products with a batch of vectors run as
successive mode products, ``k`` small matrix products instead of one large one, and everything that needs a
factorisation (inverse, solve, determinant, eigendecomposition, matrix powers, the Gaussian-process solve) works on
the factors one at a time:

* ``(A ⊗ B)^{-1} = A^{-1} ⊗ B^{-1}``, ``(A ⊗ B)(C ⊗ D) = AC ⊗ BD``, ``(A ⊗ B)^T = A^T ⊗ B^T``;
* ``det(A_1 ⊗ ... ⊗ A_k) = prod_k det(A_k)^{N / n_k}`` with ``N = prod(n)``; ``trace = prod_k trace(A_k)``;
* ``A_k = Q_k Λ_k Q_k^H`` gives ``⊗A_k = (⊗Q_k)(⊗Λ_k)(⊗Q_k)^H``: the eigenvalues of the product are all products
  ``λ_1[i_1] ... λ_k[i_k]``.

Conventions:
  * ``matvec(op, x)`` applies ``op`` to each vector of a batch ``x`` of shape ``(..., prod(n))``:
    ``y[..., :] = W @ x[..., :]`` (like :func:`tnkit.ttm.apply`). ``matmul(x, op)`` is ``x @ W`` for ``x`` of shape
    ``(..., prod(m))`` (the form of a linear layer ``y = x @ kernel``). The ``@`` operator follows NumPy's
    ``matmul`` exactly as if ``op`` were its dense matrix.
  * Operations that need square factors (``inverse``, ``solve``, ``slogdet``, ``trace``, ``eigh``, ``power``, the
    GP functions) say so with a ``ValueError`` naming the factor. ``eigh``, ``power``, ``sqrt``, ``inverse_root``
    and the GP functions assume Hermitian (symmetric) factors and, like ``jnp.linalg.eigh``, use only the Hermitian
    part ``(A + A^H) / 2`` of each factor, in value and in derivative.
  * Everything works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``, for float32/float64/complex64/complex128
    (the GP log-likelihood is real only). Objects made by ``jax.vmap`` carry leading batch axes on their factors;
    the properties read the trailing axes (see :attr:`Kron.batch_shape`); to operate on such a batch, map over it
    with ``jax.vmap``.
  * Large batches on CPU are processed in blocks of rows (chosen at lowering time with
    ``jax.lax.platform_dependent``; other backends run the whole batch at once). On CPU, XLA gives each
    intermediate of a jitted function a freshly allocated buffer, and for a batch of many MiB the page faults of
    those buffers cost more than the arithmetic; blocks of about 1 MiB stay in cache.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import kron
  >>> a, b = jnp.arange(1.0, 5.0).reshape(2, 2), jnp.arange(1.0, 7.0).reshape(2, 3)
  >>> op = kron.Kron([a, b])
  >>> op.shape, op.row_dims, op.col_dims
  ((4, 6), (2, 2), (2, 3))
  >>> bool(jnp.allclose(kron.to_dense(op), jnp.kron(a, b)))
  True
  >>> x = jnp.ones((5, 4))
  >>> bool(jnp.allclose(x @ op, x @ jnp.kron(a, b)))
  True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from tnkit import _checks, _linalg

__all__ = [
    "Kron",
    "KronSum",
    "KronEigh",
    "to_dense",
    "from_dense",
    "from_dense_sum",
    "identity",
    "matvec",
    "matmul",
    "transpose",
    "adjoint",
    "scale",
    "add",
    "inverse",
    "solve",
    "slogdet",
    "logdet",
    "trace",
    "diagonal",
    "eigh",
    "power",
    "sqrt",
    "inverse_root",
    "gp_solve",
    "gp_log_marginal_likelihood",
]

_HIGHEST = lax.Precision.HIGHEST

# Blocked execution on CPU (see the module docstring): a batch is split into blocks of rows when its largest
# intermediate exceeds _BLOCK_THRESHOLD_BYTES, with blocks whose largest intermediate is about _BLOCK_TARGET_BYTES.
_BLOCK_THRESHOLD_BYTES = 4 << 20
_BLOCK_TARGET_BYTES = 1 << 20


# ------------------------------------------------------------------------------------------------------ formats


def _as_factor(f: Any, name: str) -> jax.Array:
    if not hasattr(f, "shape") or not hasattr(f, "dtype"):
        f = jnp.asarray(f)
    if not (jnp.issubdtype(f.dtype, jnp.floating) or jnp.issubdtype(f.dtype, jnp.complexfloating)):
        raise TypeError(f"{name} has dtype {f.dtype}: expected a floating or complex dtype")
    return jnp.asarray(f)


def _validate_factors(factors: Any, ndim: int, layout: str) -> tuple[jax.Array, ...]:
    if isinstance(factors, (jax.Array, np.ndarray)):
        raise TypeError(f"factors must be a sequence of arrays {layout}, got a single array of shape {factors.shape}")
    if isinstance(factors, (Kron, KronSum)):
        raise TypeError(f"factors must be a sequence of arrays {layout}, got a {type(factors).__name__}")
    try:
        factors = tuple(factors)
    except TypeError:
        raise TypeError(f"factors must be a sequence of arrays {layout}, got {type(factors).__name__}") from None
    if not factors:
        raise ValueError("factors must hold at least one factor, got an empty sequence")
    factors = tuple(_as_factor(f, f"factors[{k}]") for k, f in enumerate(factors))
    for k, f in enumerate(factors):
        if f.ndim != ndim:
            raise ValueError(f"factors[{k}] has shape {f.shape}: expected a {ndim}-D array {layout}")
        if any(s == 0 for s in f.shape):
            raise ValueError(f"factors[{k}] has shape {f.shape}: expected non-empty axes")
    dtypes = {f.dtype for f in factors}
    if len(dtypes) > 1:
        raise TypeError(
            f"all factors must share one dtype, got {[str(f.dtype) for f in factors]}; cast them first "
            "(tnkit does not promote silently)"
        )
    return factors


class _KronBase:
    """Shared machinery: immutability, pytree registration and the operators."""

    __slots__ = ("factors",)
    factors: tuple[jax.Array, ...]
    _factor_ndim = 2
    # NumPy arrays defer to our reflected operators (``ndarray @ op`` calls ``op.__rmatmul__``).
    __array_ufunc__ = None

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one instead of setting {name!r}")

    def tree_flatten(self):
        return self.factors, None

    @classmethod
    def tree_unflatten(cls, aux, children):
        # No validation: JAX unflattens with placeholders (None, object(), batched arrays).
        obj = object.__new__(cls)
        object.__setattr__(obj, "factors", tuple(children))
        return obj

    @property
    def num_factors(self) -> int:
        """Number of Kronecker factors ``k``."""
        return len(self.factors)

    @property
    def row_dims(self) -> tuple[int, ...]:
        """Row sizes ``(m_1, ..., m_k)`` of the factors."""
        return tuple(f.shape[-2] for f in self.factors)

    @property
    def col_dims(self) -> tuple[int, ...]:
        """Column sizes ``(n_1, ..., n_k)`` of the factors."""
        return tuple(f.shape[-1] for f in self.factors)

    @property
    def shape(self) -> tuple[int, int]:
        """``(prod(row_dims), prod(col_dims))``: the shape of the dense matrix."""
        return math.prod(self.row_dims), math.prod(self.col_dims)

    @property
    def dtype(self):
        """The dtype of the factors."""
        return self.factors[0].dtype

    @property
    def num_params(self) -> int:
        """Total number of entries in the factors (including any batch axes)."""
        return int(sum(math.prod(f.shape) for f in self.factors))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes of the factors: ``()`` unless the object was produced by ``jax.vmap``."""
        return tuple(self.factors[0].shape[: -self._factor_ndim])

    @property
    def T(self):  # noqa: N802  (mirrors ndarray.T)
        """The transpose (no conjugation); see :func:`transpose`."""
        return transpose(self)

    def __matmul__(self, other):
        if isinstance(other, _KronBase) or hasattr(other, "ndim"):
            return matmul(self, other)
        return NotImplemented

    def __rmatmul__(self, other):
        if hasattr(other, "ndim"):
            return matmul(other, self)
        return NotImplemented

    def __add__(self, other):
        return add(self, other) if isinstance(other, _KronBase) else NotImplemented

    def __sub__(self, other):
        return add(self, scale(other, -1)) if isinstance(other, _KronBase) else NotImplemented

    def __neg__(self):
        return scale(self, -1)

    def __mul__(self, other):
        if isinstance(other, _KronBase):
            return NotImplemented
        return scale(self, other)

    __rmul__ = __mul__


@jax.tree_util.register_pytree_node_class
class Kron(_KronBase):
    """The Kronecker product ``A_1 ⊗ ... ⊗ A_k`` of factor matrices, kept factored.

    Represents the ``(prod(m), prod(n))`` matrix ``np.kron(A_1, np.kron(A_2, ...))``, entry
    ``W[(i_1..i_k), (j_1..j_k)] = A_1[i_1, j_1] ... A_k[i_k, j_k]`` (row-major multi-indices).

    Args:
      factors: sequence of ``k >= 1`` arrays, factor ``k`` of shape ``(m_k, n_k)`` (rectangular allowed), all of one
        floating or complex dtype.

    Raises:
      ValueError: a factor is not 2-D or has an empty axis (the message names ``factors[k]`` and its shape).
      TypeError: a factor has an integer dtype, or the factors have different dtypes.

    Operators: ``op @ other`` and ``other @ op`` follow NumPy's ``matmul`` for the dense matrix (see
    :func:`matmul`); ``op.T``; ``op + other`` gives a :class:`KronSum`; ``alpha * op`` scales.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.ones((2, 3)), jnp.eye(4)])
      >>> op.shape, op.num_factors, op.num_params
      ((8, 12), 2, 22)
      >>> (op @ op.T).shape
      (8, 8)
    """

    __slots__ = ()
    _factor_ndim = 2

    def __init__(self, factors: Sequence[jax.Array]):
        object.__setattr__(self, "factors", _validate_factors(factors, 2, "of shape (m, n)"))

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"Kron(row_dims={self.row_dims}, col_dims={self.col_dims}, dtype={self.dtype}{batch})"


@jax.tree_util.register_pytree_node_class
class KronSum(_KronBase):
    """A sum of ``T`` Kronecker products ``sum_t A_1[t] ⊗ ... ⊗ A_k[t]``, factors stacked over the terms.

    With two factors, ``KronSum([a, s])`` for ``a`` of shape ``(n, n, n)`` and ``s`` of shape ``(n, d/n, k/n)`` is
    the weight ``W = sum_i a[i] ⊗ s[i]`` of a parameterised hypercomplex multiplication (PHM) layer, with
    ``1/n`` of the parameters of a dense ``(d, k)`` matrix.

    Args:
      factors: sequence of ``k >= 1`` arrays, factor ``k`` of shape ``(T, m_k, n_k)``, all with the same number of
        terms ``T`` and one floating or complex dtype.

    Raises:
      ValueError: a factor is not 3-D, has an empty axis, or its number of terms differs from ``factors[0]``'s.
      TypeError: integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> w = kron.KronSum([jnp.ones((4, 4, 4)), jnp.ones((4, 8, 16))])
      >>> w.shape, w.num_terms, w.num_params
      ((32, 64), 4, 576)
      >>> bool(jnp.allclose(kron.to_dense(w), 4 * jnp.ones((32, 64))))
      True
    """

    __slots__ = ()
    _factor_ndim = 3

    def __init__(self, factors: Sequence[jax.Array]):
        factors = _validate_factors(factors, 3, "of shape (num_terms, m, n)")
        t = factors[0].shape[0]
        for k, f in enumerate(factors):
            if f.shape[0] != t:
                raise ValueError(
                    f"factors[{k}] has shape {f.shape}: expected {t} terms (shape ({t}, m, n)) like factors[0] "
                    f"(shape {factors[0].shape})"
                )
        object.__setattr__(self, "factors", factors)

    @property
    def num_terms(self) -> int:
        """Number of Kronecker products ``T`` in the sum."""
        return self.factors[0].shape[-3]

    @property
    def terms(self) -> tuple[Kron, ...]:
        """The ``T`` Kronecker products as :class:`Kron` objects (unbatched objects only)."""
        _check_unbatched(self, "terms")
        return tuple(Kron([f[t] for f in self.factors]) for t in range(self.num_terms))

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return (
            f"KronSum(num_terms={self.num_terms}, row_dims={self.row_dims}, col_dims={self.col_dims}, "
            f"dtype={self.dtype}{batch})"
        )


class KronEigh(NamedTuple):
    """Eigendecomposition of a Hermitian :class:`Kron`: ``op = V diag(λ) V^H`` with ``V = eigenvectors``.

    Attributes:
      eigenvalues: tuple of ``k`` real arrays of shape ``(n_k,)``, each factor's eigenvalues in ascending order.
      eigenvectors: :class:`Kron` of the factors' unitary eigenvector matrices ``Q_k`` of shape ``(n_k, n_k)``.

    The eigenvalue belonging to column ``(i_1, ..., i_k)`` of ``V`` (row-major) is
    ``eigenvalues[0][i_1] * ... * eigenvalues[k-1][i_k]``; :meth:`full_eigenvalues` lists them in that column
    order, which is not sorted.
    """

    eigenvalues: tuple[jax.Array, ...]  # k arrays, (n_k,), real, ascending
    eigenvectors: Kron  # factors (n_k, n_k), unitary

    def full_eigenvalues(self) -> jax.Array:
        """All ``prod(n)`` eigenvalues ``λ_1 ⊗ ... ⊗ λ_k`` (shape ``(prod(n),)``), in the column order of
        ``eigenvectors`` (not sorted)."""
        return _outer_product(self.eigenvalues).reshape(-1)


# --------------------------------------------------------------------------------------------- validation helpers


def _check_op(op, name: str = "op", kinds=None) -> Kron | KronSum:
    kinds = kinds or (Kron, KronSum)
    if not isinstance(op, kinds):
        expected = " or ".join(f"tnkit.kron.{k.__name__}" for k in kinds)
        raise TypeError(f"{name} must be a {expected}, got {type(op).__name__}")
    _check_unbatched(op, name)
    return op


def _check_unbatched(op, name: str) -> None:
    if op.batch_shape:
        raise ValueError(
            f"{name} has batch_shape {op.batch_shape} (made by jax.vmap); map over the batch with jax.vmap instead "
            "of passing it whole"
        )


def _check_square(op, fname: str, name: str = "op") -> None:
    for k, (m, n) in enumerate(zip(op.row_dims, op.col_dims)):
        if m != n:
            raise ValueError(
                f"{fname} needs square factors, but {name}.factors[{k}] has shape "
                f"{op.factors[k].shape[-2:]} (an ({m}, {n}) matrix)"
            )


def _check_vectors(x, size: int, name: str, what: str) -> jax.Array:
    if not hasattr(x, "ndim"):
        x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}) = (..., {what}), got shape {x.shape}")
    return jnp.asarray(x)


def _check_dims(dims, name: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(n) for n in dims)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {dims!r}") from None
    if not dims or any(n < 1 for n in dims):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {dims}")
    return dims


def _cast(op, dtype):
    return op if op.dtype == dtype else jax.tree_util.tree_map(lambda f: f.astype(dtype), op)


def _hermitian(x):
    return jnp.swapaxes(x, -1, -2).conj()


def _outer_product(vectors) -> jax.Array:
    """``v_1 ∘ v_2 ∘ ... ∘ v_k`` as an array of shape ``(n_1, ..., n_k)``."""
    k = len(vectors)
    out = None
    for i, v in enumerate(vectors):
        v = v.reshape((1,) * i + (v.shape[0],) + (1,) * (k - i - 1))
        out = v if out is None else out * v
    return out


# ------------------------------------------------------------------------------------------------ mode products


def _contraction_order(in_dims, out_dims) -> list[int]:
    """The FLOP-optimal order of the mode products (exact, not a heuristic).

    Applying mode ``p`` while the intermediate has ``S`` entries per row costs ``S * out_dims[p]`` multiply-adds per
    row, after which ``n_p`` is replaced by ``m_p``. Exchanging two neighbouring steps ``i, j`` shows that ``i``
    should go first iff ``1/n_i - 1/m_i < 1/n_j - 1/m_j``, a key of each mode alone, so sorting by it is optimal:
    shrinking factors (``m < n``) go first, growing ones last. Ties go last-mode-first, which makes the square case
    the classic shuffle algorithm (every contracted axis is already the last one).
    """
    k = len(in_dims)
    return sorted(range(k), key=lambda p: (Fraction(1, in_dims[p]) - Fraction(1, out_dims[p]), -p))


def _max_row_entries(in_dims, out_dims, order) -> int:
    sizes = list(in_dims)
    biggest = math.prod(sizes)
    for p in order:
        sizes[p] = out_dims[p]
        biggest = max(biggest, math.prod(sizes))
    return biggest


def _mode_products(x, mode_ops, in_dims, out_dims, order):
    """Apply a linear map to each mode of a batch of tensors.

    ``x`` has shape ``(B, prod(in_dims))``; ``mode_ops[p]`` maps an array ``(R, in_dims[p])`` to ``(R, out_dims[p])``
    row by row. The contracted axis is moved last (a no-op along the shuffle order), mapped, and the new axis moved
    to the front, so every step is one matrix product over all other axes at once.
    """
    b = x.shape[0]
    k = len(in_dims)
    z = x.reshape((b,) + tuple(in_dims))
    labels = list(range(k))  # axis j + 1 of z holds mode labels[j]
    for p in order:
        pos = labels.index(p)
        if pos != k - 1:
            z = jnp.moveaxis(z, pos + 1, -1)
            labels.append(labels.pop(pos))
        lead = z.shape[:-1]
        z = mode_ops[p](z.reshape(-1, in_dims[p])).reshape(lead + (out_dims[p],))
        if k > 1:
            z = jnp.moveaxis(z, -1, 1)
            labels.insert(0, labels.pop())
    perm = [0] + [1 + labels.index(j) for j in range(k)]
    if perm != list(range(k + 1)):
        z = z.transpose(perm)
    return z.reshape(b, -1)


def _by_row_blocks(fn, x, row_entries: int):
    """``fn(x)`` for ``fn`` acting row by row on ``x`` of shape ``(B, n)``, in blocks of rows on CPU when large.

    ``row_entries`` bounds the entries per row of ``fn``'s intermediates. Rows are independent, so blocking changes
    nothing in the result; only the peak size of the intermediates. The choice between the blocked and the direct
    evaluation is made by ``lax.platform_dependent`` when lowering (blocked on CPU only).
    """
    b = x.shape[0]
    itemsize = jnp.dtype(x.dtype).itemsize
    rows = max(1, _BLOCK_TARGET_BYTES // (row_entries * itemsize))
    if b * row_entries * itemsize <= _BLOCK_THRESHOLD_BYTES or rows * 2 > b:
        return fn(x)
    # Prefer a block size that divides the batch: the scan then writes each block's output straight into the
    # stacked result. Otherwise the blocks overlap at the end (the last one starts at b - rows; overlapping rows are
    # computed twice and written with the same values).
    divisor = next((r for r in range(rows, rows // 2, -1) if b % r == 0), None)

    def blocked(x):
        if divisor is not None:
            ys = lax.map(fn, x.reshape(b // divisor, divisor, x.shape[1]))
            return ys.reshape(b, ys.shape[-1])
        starts = np.minimum(np.arange(-(-b // rows)) * rows, b - rows)
        out_shape = jax.eval_shape(fn, jax.ShapeDtypeStruct((rows, x.shape[1]), x.dtype))
        out = jnp.zeros((b, out_shape.shape[1]), out_shape.dtype)

        def body(out, start):
            block = fn(lax.dynamic_slice_in_dim(x, start, rows))
            return lax.dynamic_update_slice_in_dim(out, block, start, 0), None

        out, _ = lax.scan(body, out, jnp.asarray(starts, dtype=jnp.int32))
        return out

    return lax.platform_dependent(x, cpu=blocked, default=fn)


def _apply_kron(factors, x, *, transposed: bool, precision=_HIGHEST):
    """``x`` of shape ``(B, N)``: rows ``W x_b`` (``transposed=False``) or ``W^T x_b`` (``transposed=True``)."""
    m = tuple(f.shape[0] for f in factors)
    n = tuple(f.shape[1] for f in factors)
    in_dims, out_dims = (m, n) if transposed else (n, m)

    def mode_op(z, a):
        return jnp.matmul(z, a if transposed else a.T, precision=precision)

    mode_ops = [functools.partial(mode_op, a=f) for f in factors]
    order = _contraction_order(in_dims, out_dims)
    fn = functools.partial(_mode_products, mode_ops=mode_ops, in_dims=in_dims, out_dims=out_dims, order=order)
    return _by_row_blocks(fn, x, _max_row_entries(in_dims, out_dims, order))


def _apply_kron_sum(factors, x, *, transposed: bool, precision=_HIGHEST):
    """As :func:`_apply_kron` for a :class:`KronSum`: one ``einsum`` whose contraction path (chosen by opt_einsum's
    FLOP model) carries the term index through the mode products, or forms the dense matrix first when cheaper."""
    k = len(factors)
    letters = "abcdefghijklmnopqrsuvwxyzABCDEFGHIJKLMNOPQRSUVWXYZ"  # no 't' (terms) or 'T' (batch)
    if 2 * k > len(letters):
        raise ValueError(f"KronSum products support at most {len(letters) // 2} factors, got {k}")
    rows, cols = letters[:k], letters[k : 2 * k]
    src, dst = (rows, cols) if transposed else (cols, rows)
    spec = "T" + src + "," + ",".join(f"t{r}{c}" for r, c in zip(rows, cols)) + "->T" + dst
    in_dims = tuple(f.shape[1] if transposed else f.shape[2] for f in factors)
    out_dims = tuple(f.shape[2] if transposed else f.shape[1] for f in factors)

    def fn(x):
        z = x.reshape((x.shape[0],) + in_dims)
        return jnp.einsum(spec, z, *factors, precision=precision).reshape(x.shape[0], -1)

    terms = factors[0].shape[0]
    return _by_row_blocks(fn, x, terms * max(math.prod(in_dims), math.prod(out_dims)))


def _apply(op, x, *, transposed: bool, precision=_HIGHEST):
    """Batch ``x`` of shape ``(..., size)``, already checked; returns ``(..., out)`` in the promoted dtype."""
    dtype = jnp.result_type(op.dtype, x.dtype)
    op = _cast(op, dtype)
    batch_shape = x.shape[:-1]
    x2 = x.astype(dtype).reshape(math.prod(batch_shape), x.shape[-1])
    if isinstance(op, Kron):
        y = _apply_kron(op.factors, x2, transposed=transposed, precision=precision)
    else:
        y = _apply_kron_sum(op.factors, x2, transposed=transposed, precision=precision)
    return y.reshape(batch_shape + (y.shape[-1],))


# ---------------------------------------------------------------------------------------------- dense conversions


def to_dense(op: Kron | KronSum) -> jax.Array:
    """The dense ``(prod(row_dims), prod(col_dims))`` matrix (``np.kron`` of the factors; summed for a KronSum).

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> a, b = jnp.arange(4.0).reshape(2, 2), jnp.ones((3, 1))
      >>> bool(jnp.array_equal(kron.to_dense(kron.Kron([a, b])), jnp.kron(a, b)))
      True
    """
    _check_op(op)
    if isinstance(op, Kron):
        return functools.reduce(jnp.kron, op.factors)
    dense_terms = jax.vmap(lambda *fs: functools.reduce(jnp.kron, fs))(*op.factors)
    return jnp.sum(dense_terms, axis=0)


def _check_matrix_dims(matrix, row_dims, col_dims):
    row_dims = _check_dims(row_dims, "row_dims")
    col_dims = _check_dims(col_dims, "col_dims")
    if len(row_dims) != len(col_dims):
        raise ValueError(
            f"row_dims and col_dims must have the same length, got {len(row_dims)} ({row_dims}) and "
            f"{len(col_dims)} ({col_dims})"
        )
    if not hasattr(matrix, "ndim"):
        matrix = jnp.asarray(matrix)
    if not (jnp.issubdtype(matrix.dtype, jnp.floating) or jnp.issubdtype(matrix.dtype, jnp.complexfloating)):
        raise TypeError(f"matrix must have a floating or complex dtype, got {matrix.dtype}")
    expected = (math.prod(row_dims), math.prod(col_dims))
    if matrix.shape != expected:
        raise ValueError(
            f"matrix must have shape {expected} = (prod(row_dims), prod(col_dims)) for row_dims={row_dims}, "
            f"col_dims={col_dims}; got {matrix.shape}"
        )
    return jnp.asarray(matrix), row_dims, col_dims


def _rearrange(matrix, row_dims, col_dims):
    """Van Loan–Pitsianis rearrangement: a tensor of shape ``(m_1 n_1, ..., m_k n_k)`` with
    ``R[(i_1, j_1), ..., (i_k, j_k)] = W[(i_1..i_k), (j_1..j_k)]``; Kronecker products become rank-1 tensors."""
    k = len(row_dims)
    x = matrix.reshape(row_dims + col_dims)
    x = x.transpose([p for q in range(k) for p in (q, k + q)])
    return x.reshape([m * n for m, n in zip(row_dims, col_dims)])


def _sum_terms_2(matrix, row_dims, col_dims, num_terms):
    """The best ``sum_{t < num_terms} B_t ⊗ C_t`` (two factors): truncated SVD of the rearranged matrix."""
    r = _rearrange(matrix, row_dims, col_dims)  # (m1 n1, m2 n2)
    u, _ = _linalg.left_svd(r, num_terms)
    u = u[:, :num_terms]  # (m1 n1, T)
    w = jnp.matmul(_hermitian(u), r, precision=_HIGHEST)  # (T, m2 n2), row t = s_t v_t^H
    s = jnp.linalg.norm(w, axis=1)  # singular values, from the projection (differentiable)
    c = jnp.sqrt(jnp.maximum(s, jnp.finfo(s.dtype).tiny))  # balance the norm: ||B_t|| = ||C_t|| = sqrt(s_t)
    b_t = (u * c[None, :].astype(u.dtype)).T.reshape(num_terms, row_dims[0], col_dims[0])
    c_t = (w / c[:, None].astype(w.dtype)).reshape(num_terms, row_dims[1], col_dims[1])
    return b_t, c_t


def from_dense(matrix, row_dims: Sequence[int], col_dims: Sequence[int], *, num_iterations: int = 20) -> Kron:
    """The Kronecker product ``A_1 ⊗ ... ⊗ A_k`` nearest to ``matrix`` in the Frobenius norm.

    Rearranging ``W`` into the tensor ``R[(i_1, j_1), ..., (i_k, j_k)] = W[(i_1..i_k), (j_1..j_k)]`` turns
    ``||W - A_1 ⊗ ... ⊗ A_k||_F`` into ``||R - vec(A_1) ∘ ... ∘ vec(A_k)||_F`` (Van Loan and Pitsianis, 1993), a
    rank-1 approximation problem:

    * ``k = 1``: the matrix itself.
    * ``k = 2``: ``R`` is a matrix and its leading singular pair gives the exact optimum (Eckart–Young):
      ``||W - A_1 ⊗ A_2||_F^2 = ||W||_F^2 - s_1^2``.
    * ``k > 2``: the best rank-1 approximation of a tensor has no closed form. This runs the higher-order power
      method (rank-1 alternating least squares) for ``num_iterations`` sweeps from the leading left singular
      vectors of the unfoldings (HOSVD). It is exact when ``W`` is a Kronecker product and converges to a local
      optimum in general, not necessarily the global one.

    The factors share the norm evenly (``||A_k||_F`` equal for all ``k``); the sign or phase sits in ``A_1``.

    Args:
      matrix: array of shape ``(prod(row_dims), prod(col_dims))``, floating or complex.
      row_dims: ``(m_1, ..., m_k)``.
      col_dims: ``(n_1, ..., n_k)``, same length.
      num_iterations: power-method sweeps for ``k > 2`` (static; unused for ``k <= 2``).

    Returns:
      A :class:`Kron` with factor shapes ``(m_k, n_k)``. jit-compatible and differentiable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import kron
      >>> a = jax.random.normal(jax.random.key(0), (3, 2))
      >>> b = jax.random.normal(jax.random.key(1), (4, 5))
      >>> op = kron.from_dense(jnp.kron(a, b), (3, 4), (2, 5))
      >>> bool(jnp.allclose(kron.to_dense(op), jnp.kron(a, b), atol=1e-5))
      True
    """
    matrix, row_dims, col_dims = _check_matrix_dims(matrix, row_dims, col_dims)
    if not isinstance(num_iterations, (int, np.integer)) or num_iterations < 0:
        raise ValueError(f"num_iterations must be a non-negative int, got {num_iterations!r}")
    k = len(row_dims)
    if k == 1:
        return Kron([matrix])
    if k == 2:
        b_t, c_t = _sum_terms_2(matrix, row_dims, col_dims, 1)
        return Kron([b_t[0], c_t[0]])
    return Kron(_nearest_kron_hopm(matrix, row_dims, col_dims, int(num_iterations)))


def _nearest_kron_hopm(matrix, row_dims, col_dims, num_iterations):
    r = _rearrange(matrix, row_dims, col_dims)
    k = r.ndim

    def unfold(q):
        return jnp.moveaxis(r, q, 0).reshape(r.shape[q], -1)

    vs = [_linalg.left_svd(unfold(q), 1)[0][:, 0] for q in range(k)]

    def contract_all_but(vs, q):
        # R contracted with conj(v_j) on every mode j != q.
        z = r
        for j in range(k - 1, -1, -1):
            if j != q:
                z = jnp.tensordot(z, vs[j].conj(), axes=([j], [0]), precision=_HIGHEST)
        return z

    def sweep(_, vs):
        vs = list(vs)
        for q in range(k):
            v = contract_all_but(vs, q)
            nrm = jnp.linalg.norm(v)
            vs[q] = v / jnp.where(nrm > 0, nrm, 1.0).astype(v.dtype)
        return tuple(vs)

    vs = lax.fori_loop(0, num_iterations, sweep, tuple(vs))
    sigma = jnp.vdot(vs[0], contract_all_but(vs, 0))  # <v_1 ∘ ... ∘ v_k, R>
    mag = jnp.abs(sigma)
    share = jnp.maximum(mag, jnp.finfo(mag.dtype).tiny) ** (1.0 / k)
    phase = jnp.where(mag > 0, sigma / jnp.where(mag > 0, mag, 1.0).astype(sigma.dtype), 1.0)
    factors = []
    for q in range(k):
        f = vs[q] * share.astype(vs[q].dtype)
        if q == 0:
            f = f * phase.astype(f.dtype)
        factors.append(f.reshape(row_dims[q], col_dims[q]))
    return factors


def from_dense_sum(matrix, row_dims: Sequence[int], col_dims: Sequence[int], num_terms: int) -> KronSum:
    """The best sum of ``num_terms`` Kronecker products ``sum_t B_t ⊗ C_t`` (two factors) in the Frobenius norm.

    The truncated SVD of the Van Loan–Pitsianis rearrangement (see :func:`from_dense`): with singular values
    ``s_1 >= s_2 >= ...`` of the rearranged ``(m_1 n_1, m_2 n_2)`` matrix, the error is
    ``sqrt(sum_{t > num_terms} s_t^2)``, the least possible (Eckart–Young). ``B_t`` and ``C_t`` share ``s_t``
    evenly (``||B_t|| = ||C_t|| = sqrt(s_t)``); ``<B_s, B_t> = 0`` for ``s != t``, and likewise for ``C``.

    Only two factors: the best sum of several products of three or more factors (a CP decomposition) may not exist.
    (A separate function from :func:`from_dense` because it returns a :class:`KronSum`.)

    Args:
      matrix: array of shape ``(m_1 m_2, n_1 n_2)``.
      row_dims: ``(m_1, m_2)``.
      col_dims: ``(n_1, n_2)``.
      num_terms: ``T``, at most ``min(m_1 n_1, m_2 n_2)`` (static).

    Returns:
      A :class:`KronSum` with factors of shapes ``(T, m_1, n_1)`` and ``(T, m_2, n_2)``. jit-compatible and
      differentiable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import kron
      >>> w = jax.random.normal(jax.random.key(0), (12, 20))
      >>> full = kron.from_dense_sum(w, (3, 4), (4, 5), num_terms=12)
      >>> full.num_terms, bool(jnp.allclose(kron.to_dense(full), w, atol=1e-4))
      (12, True)
    """
    matrix, row_dims, col_dims = _check_matrix_dims(matrix, row_dims, col_dims)
    if len(row_dims) != 2:
        raise ValueError(
            f"from_dense_sum supports exactly 2 factors (the best sum of products of 3 or more factors may not "
            f"exist), got row_dims={row_dims}, col_dims={col_dims}"
        )
    most = min(row_dims[0] * col_dims[0], row_dims[1] * col_dims[1])
    if not isinstance(num_terms, (int, np.integer)) or not 1 <= num_terms <= most:
        raise ValueError(
            f"num_terms must be an int in [1, {most}] (the rank of the rearranged ({row_dims[0] * col_dims[0]}, "
            f"{row_dims[1] * col_dims[1]}) matrix is at most {most}), got {num_terms!r}"
        )
    return KronSum(list(_sum_terms_2(matrix, row_dims, col_dims, int(num_terms))))


def identity(dims: Sequence[int], dtype=jnp.float32) -> Kron:
    """The identity of size ``prod(dims)`` as ``I_{n_1} ⊗ ... ⊗ I_{n_k}``.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> bool(jnp.array_equal(kron.to_dense(kron.identity((2, 3))), jnp.eye(6)))
      True
    """
    dims = _check_dims(dims, "dims")
    return Kron([jnp.eye(n, dtype=dtype) for n in dims])


# ---------------------------------------------------------------------------------------------------- products


def matvec(op: Kron | KronSum, x, *, precision=_HIGHEST) -> jax.Array:
    """``y[..., :] = W @ x[..., :]`` for a batch of vectors, without forming ``W``.

    Successive mode products: ``x`` is reshaped to ``(..., n_1, ..., n_k)`` and factor ``A_p`` applied to mode
    ``p``, one matrix product per factor, in the FLOP-optimal order (shrinking factors first). The cost is
    ``B * sum_p S_p m_p`` multiply-adds, ``S_p`` the entries per row before step ``p`` (``2 B N (n_1 + n_2)``
    flops for two square factors), instead of ``B * prod(m) * prod(n)``. For a
    :class:`KronSum`, ``jnp.einsum`` with opt_einsum's contraction path (which forms ``W`` first only when that
    is cheaper). Large batches on CPU run in blocks of rows (see the module docstring).

    Args:
      op: a :class:`Kron` or :class:`KronSum` of shape ``(M, N)``.
      x: array of shape ``(..., N)``.
      precision: passed to the matrix products (``jax.lax.Precision``). The default, ``HIGHEST``, keeps full float32
        accuracy on accelerators (no TF32 / bfloat16 passes); a layer may pass ``None`` for the backend default.

    Returns:
      Array of shape ``(..., M)`` in the promoted dtype of ``op`` and ``x``.

    Raises:
      ValueError: ``x`` is not of shape ``(..., N)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.arange(6.0).reshape(2, 3), jnp.ones((4, 5))])
      >>> x = jax.random.normal(jax.random.key(0), (7, 15))
      >>> bool(jnp.allclose(kron.matvec(op, x), x @ kron.to_dense(op).T, atol=1e-4))
      True
    """
    _check_op(op)
    x = _check_vectors(x, op.shape[1], "x", "prod(col_dims)")
    return _apply(op, x, transposed=False, precision=precision)


def _product_dtype(a, b):
    return jnp.result_type(a.dtype, b.dtype)


def _operator_product(a, b, precision):
    if a.num_factors != b.num_factors:
        raise ValueError(
            f"a and b must have the same number of factors to be multiplied factor by factor, got {a.num_factors} "
            f"and {b.num_factors}; Kronecker products with different factorisations have no factored product"
        )
    for k, (n, m) in enumerate(zip(a.col_dims, b.row_dims)):
        if n != m:
            raise ValueError(
                f"a.factors[{k}] (shape {a.factors[k].shape}) and b.factors[{k}] (shape {b.factors[k].shape}) "
                f"cannot be multiplied: a.col_dims {a.col_dims} must equal b.row_dims {b.row_dims} factor by factor"
            )
    dtype = _product_dtype(a, b)
    a, b = _cast(a, dtype), _cast(b, dtype)
    mm = functools.partial(jnp.matmul, precision=precision)
    if isinstance(a, Kron) and isinstance(b, Kron):
        return Kron([mm(fa, fb) for fa, fb in zip(a.factors, b.factors)])
    if isinstance(a, Kron):
        return KronSum([mm(fa[None], fb) for fa, fb in zip(a.factors, b.factors)])
    if isinstance(b, Kron):
        return KronSum([mm(fa, fb[None]) for fa, fb in zip(a.factors, b.factors)])
    # (sum_s A_s)(sum_t B_t) = sum_{s,t} A_s B_t: T_a * T_b terms, term (s, t) at index s * T_b + t.
    factors = []
    for fa, fb in zip(a.factors, b.factors):
        p = jnp.einsum("sij,tjk->stik", fa, fb, precision=precision)
        factors.append(p.reshape((-1,) + p.shape[2:]))
    return KronSum(factors)


def matmul(a, b, *, precision=_HIGHEST):
    """``a @ b`` where one or both operands are :class:`Kron` / :class:`KronSum`, with NumPy ``matmul`` semantics
    for the dense matrix ``W``.

    * ``op @ op``: a :class:`Kron` when both are (``(A ⊗ B)(C ⊗ D) = AC ⊗ BD``), else a :class:`KronSum` with
      ``T_a T_b`` terms. Needs the same number of factors and ``a.col_dims == b.row_dims`` factor by factor.
    * ``x @ op`` for ``x`` of shape ``(..., M)``: shape ``(..., N)`` (each row times ``W``; a linear layer
      ``y = x @ kernel``). Computed as the mode products of ``W^T`` (see :func:`matvec`).
    * ``op @ x``: ``x`` of shape ``(N,)`` gives ``(M,)``; ``x`` of shape ``(..., N, K)`` gives ``(..., M, K)``.
      For a batch of vectors stored as rows, ``(..., N)``, use :func:`matvec`.

    ``precision`` is passed to the matrix products (see :func:`matvec`).

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.arange(4.0).reshape(2, 2), jnp.arange(6.0).reshape(2, 3)])
      >>> x = jnp.ones((5, 4))
      >>> bool(jnp.allclose(kron.matmul(x, op), x @ kron.to_dense(op)))
      True
      >>> prod = kron.matmul(op, op.T)
      >>> type(prod).__name__, bool(jnp.allclose(kron.to_dense(prod), kron.to_dense(op) @ kron.to_dense(op).T))
      ('Kron', True)
    """
    a_op, b_op = isinstance(a, _KronBase), isinstance(b, _KronBase)
    if a_op and b_op:
        _check_op(a, "a")
        _check_op(b, "b")
        return _operator_product(a, b, precision)
    if a_op:
        _check_op(a, "a")
        x = b if hasattr(b, "ndim") else jnp.asarray(b)
        n = a.shape[1]
        if x.ndim == 0:
            raise ValueError("b must have at least one axis for matmul (use scale for a scalar), got a scalar")
        if x.ndim == 1:
            x = _check_vectors(x, n, "b", "prod(a.col_dims)")
            return _apply(a, x, transposed=False, precision=precision)
        if x.shape[-2] != n:
            raise ValueError(
                f"op @ x needs x of shape (..., {n}, K) with {n} = prod(a.col_dims), got shape {x.shape}; for a "
                "batch of vectors stored as rows, (..., N), use kron.matvec(op, x)"
            )
        y = _apply(a, jnp.swapaxes(jnp.asarray(x), -1, -2), transposed=False, precision=precision)
        return jnp.swapaxes(y, -1, -2)
    if b_op:
        _check_op(b, "b")
        x = a if hasattr(a, "ndim") else jnp.asarray(a)
        if x.ndim == 0:
            raise ValueError("a must have at least one axis for matmul (use scale for a scalar), got a scalar")
        x = _check_vectors(x, b.shape[0], "a", "prod(b.row_dims)")
        return _apply(b, x, transposed=True, precision=precision)
    raise TypeError(
        f"matmul needs a tnkit.kron.Kron or KronSum operand, got {type(a).__name__} and {type(b).__name__}"
    )


def transpose(op: Kron | KronSum) -> Kron | KronSum:
    """``W^T`` (no conjugation): each factor transposed.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.arange(6.0).reshape(2, 3), jnp.arange(2.0).reshape(1, 2)])
      >>> bool(jnp.array_equal(kron.to_dense(kron.transpose(op)), kron.to_dense(op).T))
      True
    """
    _check_op(op)
    return type(op)([jnp.swapaxes(f, -1, -2) for f in op.factors])


def adjoint(op: Kron | KronSum) -> Kron | KronSum:
    """``W^H``, the conjugate transpose.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[1.0, 2j], [0.5, -1j]]), jnp.eye(2) + 0j])
      >>> bool(jnp.allclose(kron.to_dense(kron.adjoint(op)), kron.to_dense(op).conj().T))
      True
    """
    _check_op(op)
    return type(op)([_hermitian(f) for f in op.factors])


def scale(op: Kron | KronSum, alpha) -> Kron | KronSum:
    """``alpha * W`` for a scalar ``alpha`` (the first factor is scaled).

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.eye(2), jnp.ones((2, 2))])
      >>> bool(jnp.allclose(kron.to_dense(kron.scale(op, 3.0)), 3.0 * kron.to_dense(op)))
      True
    """
    _check_op(op)
    alpha, dtype = _checks.scalar_factor(alpha, op.dtype)
    op = _cast(op, dtype)
    factors = list(op.factors)
    factors[0] = factors[0] * alpha
    return type(op)(factors)


def add(a: Kron | KronSum, b: Kron | KronSum) -> KronSum:
    """``W_a + W_b`` as a :class:`KronSum` (terms concatenated; no compression).

    Both need the same ``row_dims`` and ``col_dims`` factor by factor. Dtypes are promoted.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> a = kron.Kron([jnp.eye(2), jnp.ones((3, 3))])
      >>> s = kron.add(a, a)
      >>> s.num_terms, bool(jnp.allclose(kron.to_dense(s), 2 * kron.to_dense(a)))
      (2, True)
    """
    _check_op(a, "a")
    _check_op(b, "b")
    if a.row_dims != b.row_dims or a.col_dims != b.col_dims:
        raise ValueError(
            "a and b must have the same factor shapes to be added, got row_dims/col_dims "
            f"{a.row_dims}/{a.col_dims} and {b.row_dims}/{b.col_dims}"
        )
    dtype = _product_dtype(a, b)
    a, b = _cast(a, dtype), _cast(b, dtype)

    def stacked(op):
        return [f[None] for f in op.factors] if isinstance(op, Kron) else list(op.factors)

    return KronSum([jnp.concatenate([fa, fb], axis=0) for fa, fb in zip(stacked(a), stacked(b))])


# ---------------------------------------------------------------------------------------------- linear algebra


def inverse(op: Kron) -> Kron:
    """``W^{-1} = A_1^{-1} ⊗ ... ⊗ A_k^{-1}`` (square, invertible factors).

    A singular factor gives ``inf``/``nan`` entries, as ``jnp.linalg.inv`` does; a sum of Kronecker products has no
    factored inverse, so :class:`KronSum` is refused.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[2.0, 1.0], [1.0, 3.0]]), jnp.array([[4.0]])])
      >>> bool(jnp.allclose(kron.to_dense(kron.inverse(op)), jnp.linalg.inv(kron.to_dense(op))))
      True
    """
    _check_op(op, kinds=(Kron,))
    _check_square(op, "inverse")
    return Kron([jnp.linalg.inv(f) for f in op.factors])


def _lu_right_solve(lu, perm, z):
    """Rows ``w`` of ``z`` mapped to ``A^{-1} w`` given ``A[perm] = L U`` (packed ``lu``): ``W = Z A^{-T}``.

    ``A W^T = Z^T`` becomes ``W U^T L^T = Z[:, perm]``: two triangular solves from the right.
    """
    v = lax.linalg.triangular_solve(lu, z[:, perm], left_side=False, lower=True, transpose_a=True, unit_diagonal=True)
    return lax.linalg.triangular_solve(lu, v, left_side=False, lower=False, transpose_a=True)


def solve(op: Kron, y) -> jax.Array:
    """``x[..., :] = W^{-1} y[..., :]`` for a batch of right-hand sides, without forming ``W``.

    One LU factorisation per factor, then the mode products of the factors' inverses applied by triangular solves
    (``(A_1 ⊗ ... ⊗ A_k)^{-1} = A_1^{-1} ⊗ ... ⊗ A_k^{-1}``). Cost: ``sum_k n_k^3`` for the factorisations and
    ``B * N * sum_k n_k`` for the solves, instead of ``N^3`` dense. A singular factor gives ``inf``/``nan``, like
    ``jnp.linalg.solve``.

    Args:
      op: a square :class:`Kron` of shape ``(N, N)``.
      y: array of shape ``(..., N)``.

    Returns:
      Array of shape ``(..., N)`` in the promoted dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([[1.0, 2.0], [3.0, 4.0]])])
      >>> y = jnp.arange(8.0).reshape(2, 4)
      >>> x = kron.solve(op, y)
      >>> bool(jnp.allclose(kron.matvec(op, x), y, atol=1e-4))
      True
    """
    _check_op(op, kinds=(Kron,))
    _check_square(op, "solve")
    y = _check_vectors(y, op.shape[1], "y", "prod(col_dims)")
    dtype = jnp.result_type(op.dtype, y.dtype)
    op = _cast(op, dtype)
    dims = op.col_dims
    mode_ops = []
    for f in op.factors:
        lu, _, perm = lax.linalg.lu(f)
        mode_ops.append(functools.partial(_lu_right_solve, lu, perm))
    order = _contraction_order(dims, dims)
    fn = functools.partial(_mode_products, mode_ops=mode_ops, in_dims=dims, out_dims=dims, order=order)
    batch_shape = y.shape[:-1]
    y2 = y.astype(dtype).reshape(math.prod(batch_shape), y.shape[-1])
    x = _by_row_blocks(fn, y2, math.prod(dims))
    return x.reshape(y.shape)


def slogdet(op: Kron) -> tuple[jax.Array, jax.Array]:
    """Sign and log of the absolute determinant, like ``jnp.linalg.slogdet``, from the factors.

    ``det(A_1 ⊗ ... ⊗ A_k) = prod_k det(A_k)^{N / n_k}`` with ``N = prod(n)``, so
    ``log|det W| = sum_k (N / n_k) log|det A_k|`` and ``sign = prod_k sign_k^{N / n_k}`` (``sign_k`` is ``±1``, or a
    unit complex number for complex factors, or ``0`` for a singular factor, with ``log|det| = -inf``). Nothing of
    size ``N`` is formed and no determinant is computed directly, so it neither overflows nor underflows.

    Returns:
      ``(sign, logabsdet)``: ``sign`` of the factors' dtype, ``logabsdet`` real.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[0.0, 2.0], [1.0, 0.0]]), jnp.diag(jnp.array([1.0, 2.0, 3.0]))])
      >>> sign, logabsdet = kron.slogdet(op)
      >>> ref_sign, ref = jnp.linalg.slogdet(kron.to_dense(op))
      >>> bool(sign == ref_sign), bool(jnp.allclose(logabsdet, ref))
      (True, True)
    """
    _check_op(op, kinds=(Kron,))
    _check_square(op, "slogdet")
    n_total = op.shape[1]
    sign, logabsdet = None, None
    for f, n in zip(op.factors, op.col_dims):
        s, l = jnp.linalg.slogdet(f)
        s = s ** (n_total // n)  # integer power: exact for ±1 and 0
        l = l * (n_total // n)
        sign = s if sign is None else sign * s
        logabsdet = l if logabsdet is None else logabsdet + l
    return sign, logabsdet


def logdet(op: Kron) -> jax.Array:
    """``log |det W|`` (see :func:`slogdet`): the log-determinant of a positive-definite operator (a covariance, a
    preconditioner). It drops the sign; use :func:`slogdet` where the determinant may be negative or complex.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([2.0 * jnp.eye(3), 5.0 * jnp.eye(2)])
      >>> bool(jnp.allclose(kron.logdet(op), 6 * jnp.log(10.0)))
      True
    """
    return slogdet(op)[1]


def trace(op: Kron | KronSum) -> jax.Array:
    """``trace(W) = prod_k trace(A_k)``; for a :class:`KronSum`, the sum over the terms.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.diag(jnp.array([1.0, 2.0])), 3.0 * jnp.eye(4)])
      >>> float(kron.trace(op))
      36.0
    """
    _check_op(op)
    _check_square(op, "trace")
    traces = [jnp.trace(f, axis1=-2, axis2=-1) for f in op.factors]
    prod = functools.reduce(jnp.multiply, traces)
    return prod if isinstance(op, Kron) else jnp.sum(prod)


def diagonal(op: Kron | KronSum) -> jax.Array:
    """The diagonal of ``W`` (square factors): ``diag(A_1) ⊗ ... ⊗ diag(A_k)``, shape ``(N,)``; summed over the
    terms of a :class:`KronSum`.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.arange(4.0).reshape(2, 2), jnp.arange(9.0).reshape(3, 3)])
      >>> bool(jnp.array_equal(kron.diagonal(op), jnp.diagonal(kron.to_dense(op))))
      True
    """
    _check_op(op)
    _check_square(op, "diagonal")
    if isinstance(op, Kron):
        return _outer_product([jnp.diagonal(f) for f in op.factors]).reshape(-1)
    diags = [jnp.diagonal(f, axis1=-2, axis2=-1) for f in op.factors]  # (T, n_k)
    return jax.vmap(lambda *ds: _outer_product(ds).reshape(-1))(*diags).sum(axis=0)


def eigh(op: Kron) -> KronEigh:
    """Eigendecomposition of a Hermitian :class:`Kron` from its factors' (``jnp.linalg.eigh`` of each).

    ``W = V diag(λ) V^H`` with ``V = Q_1 ⊗ ... ⊗ Q_k`` and ``λ = λ_1 ⊗ ... ⊗ λ_k`` (all products of the factors'
    eigenvalues). The result keeps both factored: a :class:`KronEigh` of per-factor eigenvalue vectors and a Kron of
    eigenvectors; :meth:`KronEigh.full_eigenvalues` gives the ``N`` eigenvalues in the column order of ``V`` (not
    sorted, unlike ``jnp.linalg.eigh``). Only the Hermitian part of each factor is used. Derivatives are those of
    ``jnp.linalg.eigh`` (eigenvectors have none at repeated eigenvalues); the functions of the spectrum in this
    module (:func:`power`, :func:`gp_solve`, ...) have their own derivatives that stay finite there.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[2.0, 1.0], [1.0, 2.0]]), jnp.diag(jnp.array([1.0, 4.0]))])
      >>> e = kron.eigh(op)
      >>> v, lam = kron.to_dense(e.eigenvectors), e.full_eigenvalues()
      >>> bool(jnp.allclose((v * lam[None, :]) @ v.T, kron.to_dense(op), atol=1e-5))
      True
    """
    _check_op(op, kinds=(Kron,))
    _check_square(op, "eigh")
    pairs = [jnp.linalg.eigh(f) for f in op.factors]
    return KronEigh(tuple(p[0] for p in pairs), Kron([p[1] for p in pairs]))


# ----------------------------------------------------------------------------------------- matrix functions


def _power_divided_differences(lam, mu, p: float):
    """``G[i, j] = (f(λ_i) - f(λ_j)) / (λ_i - λ_j)`` for ``f(λ) = (max(λ, 0) + eps)^p``, ``f'(λ_i)`` on ties.

    ``mu = max(λ, 0) + eps``. Where both eigenvalues are positive the quotient is ``(mu_i^p - mu_j^p) / (mu_i -
    mu_j)``, computed without cancellation as ``hi^(p-1) expm1(p L) / expm1(L)`` with ``hi = max(mu_i, mu_j)`` and
    ``L = log1p((lo - hi) / hi) <= 0`` (``p hi^(p-1)`` when ``L = 0``). Where both are clipped ``f`` is constant
    (``0``); mixed pairs use the plain quotient, whose denominator is at least the positive eigenvalue.
    """
    pos = lam > 0
    pi, pj = pos[:, None], pos[None, :]
    mi, mj = mu[:, None], mu[None, :]
    hi, lo = jnp.maximum(mi, mj), jnp.minimum(mi, mj)
    safe_hi = jnp.where(hi > 0, hi, 1.0)
    big_l = jnp.log1p((lo - hi) / safe_hi)
    neg = big_l < 0
    ratio = jnp.where(neg, jnp.expm1(p * big_l) / jnp.where(neg, jnp.expm1(big_l), 1.0), p)
    both = ratio * safe_hi ** (p - 1)
    f = mu**p
    diff = lam[:, None] - lam[None, :]
    nonzero = diff != 0
    mixed = jnp.where(nonzero, (f[:, None] - f[None, :]) / jnp.where(nonzero, diff, 1.0), 0.0)
    return jnp.where(pi & pj, both, jnp.where(pi | pj, mixed, 0.0))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _psd_power(a, eps, p: float):
    """``(A_+ + eps I)^p`` for a Hermitian ``A`` (negative eigenvalues clipped to 0), one factor."""
    lam, q = jnp.linalg.eigh(a)
    mu = jnp.maximum(lam, 0) + eps
    return jnp.matmul(q * (mu**p).astype(q.dtype)[None, :], _hermitian(q), precision=_HIGHEST)


def _psd_power_jvp(p, primals, tangents):
    # Daleckii–Krein: d f(A) = Q (G ∘ Q^H dA Q) Q^H with G the divided differences of f, finite at repeated
    # eigenvalues (unlike differentiating through eigh's eigenvectors).
    a, eps = primals
    da, deps = tangents
    lam, q = jnp.linalg.eigh(a)
    mu = jnp.maximum(lam, 0) + eps
    qh = _hermitian(q)
    out = jnp.matmul(q * (mu**p).astype(q.dtype)[None, :], qh, precision=_HIGHEST)
    inner = jnp.zeros_like(out)
    if not isinstance(da, SymbolicZero):
        e = jnp.matmul(qh, jnp.matmul(da, q, precision=_HIGHEST), precision=_HIGHEST)
        e = (e + _hermitian(e)) / 2
        inner = inner + _power_divided_differences(lam, mu, p).astype(e.dtype) * e
    if not isinstance(deps, SymbolicZero):
        d_mu = jnp.where(mu > 0, p * jnp.where(mu > 0, mu, 1.0) ** (p - 1), 0.0) * deps
        inner = inner + jnp.diag(d_mu.astype(inner.dtype))
    return out, jnp.matmul(q, jnp.matmul(inner, qh, precision=_HIGHEST), precision=_HIGHEST)


_psd_power.defjvp(_psd_power_jvp, symbolic_zeros=True)


def _is_real_number(p) -> bool:
    return isinstance(p, (int, float, np.integer, np.floating)) and not isinstance(p, (bool, np.bool_))


def _check_real_scalar(value, name: str):
    value = jnp.asarray(value)
    if value.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {value.shape}")
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {value.dtype}")
    return value


def power(op: Kron, p: float, *, eps=0.0) -> Kron:
    """``(A_1 + eps I)^p ⊗ ... ⊗ (A_k + eps I)^p`` for Hermitian positive semi-definite factors.

    Each factor goes through its eigendecomposition ``A = Q Λ Q^H`` to ``Q (max(Λ, 0) + eps)^p Q^H``: negative
    eigenvalues (round-off in a PSD matrix) are clipped to 0 before the ridge ``eps`` is added. With ``eps = 0``,
    ``W^p = ⊗_k A_k^p`` exactly (for PSD factors the eigenvalues multiply); with ``eps > 0`` the ridge is per factor,
    as in Shampoo (``(L + eps I)^{-1/4} ⊗ (R + eps I)^{-1/4}``), which is not ``(W + eps I)^p``. For ``p < 0`` a
    singular factor needs ``eps > 0`` (otherwise ``inf``). For a ridge relative to the spectrum, pass
    ``eps = c * largest eigenvalue``.

    Derivatives (in the factors and in ``eps``) use the divided differences of ``λ -> (max(λ, 0) + eps)^p``, so
    they stay finite at repeated eigenvalues (identity factors, the usual Shampoo start).

    Args:
      op: a :class:`Kron` with square Hermitian PSD factors.
      p: the exponent, a real Python number (static).
      eps: non-negative ridge added to each factor's clipped eigenvalues (a scalar; may be traced).

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[4.0, 0.0], [0.0, 9.0]]), jnp.array([[2.0, 1.0], [1.0, 2.0]])])
      >>> cube = kron.power(op, 3)
      >>> dense = kron.to_dense(op)
      >>> bool(jnp.allclose(kron.to_dense(cube), dense @ dense @ dense, rtol=1e-4))
      True
    """
    _check_op(op, kinds=(Kron,))
    _check_square(op, "power")
    if not _is_real_number(p) or not math.isfinite(p):
        raise TypeError(f"p must be a finite real Python number (it is static), got {p!r}")
    eps = _check_real_scalar(eps, "eps")
    real = jnp.finfo(op.dtype).dtype
    return Kron([_psd_power(f, eps.astype(real), float(p)) for f in op.factors])


def sqrt(op: Kron, *, eps=0.0) -> Kron:
    """The PSD square root ``⊗_k (A_k + eps I)^{1/2}`` (see :func:`power`).

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[5.0, 4.0], [4.0, 5.0]]), 4.0 * jnp.eye(3)])
      >>> r = kron.to_dense(kron.sqrt(op))
      >>> bool(jnp.allclose(r @ r, kron.to_dense(op), atol=1e-4))
      True
    """
    return power(op, 0.5, eps=eps)


def inverse_root(op: Kron, p: int | float, *, eps=0.0) -> Kron:
    """``⊗_k (A_k + eps I)^{-1/p}``, the inverse ``p``-th root of Hermitian PSD factors (see :func:`power`).

    This is Shampoo's preconditioner: for a gradient ``G`` of shape ``(m, n)`` with statistics ``L = sum G G^T``
    and ``R = sum G^T G``, the update ``L^{-1/4} G R^{-1/4}`` is ``matvec(inverse_root(Kron([L, R]), 4, eps=eps),
    G.ravel())`` reshaped (``R`` is symmetric, so ``(L ⊗ R^T) vec(G) = vec(L G R)`` in row-major order).

    Args:
      op: a :class:`Kron` with square Hermitian PSD factors.
      p: the root, a positive real Python number (static).
      eps: ridge (see :func:`power`); needed when a factor is singular.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> op = kron.Kron([jnp.array([[16.0, 0.0], [0.0, 81.0]]), jnp.eye(2)])
      >>> bool(jnp.allclose(jnp.diagonal(kron.to_dense(kron.inverse_root(op, 4))), jnp.array([0.5, 0.5, 1 / 3, 1 / 3])))
      True
    """
    if not _is_real_number(p) or not p > 0:
        raise ValueError(f"p must be a positive real Python number, got {p!r}")
    return power(op, -1.0 / float(p), eps=eps)


# ------------------------------------------------------------------------------------------- Gaussian processes


def _check_kernel(kernel, fname: str) -> Kron:
    if not isinstance(kernel, Kron):
        if isinstance(kernel, KronSum):
            raise TypeError(f"{fname} needs a tnkit.kron.Kron kernel (one Kronecker product), got a KronSum")
        kernel = Kron(kernel)
    _check_unbatched(kernel, "kernel")
    _check_square(kernel, fname, "kernel")
    return kernel


def _eigenbasis(qs, z, *, to: bool):
    """Rows of ``z`` (shape ``(B, N)``) mapped by ``V^H`` (``to=True``) or ``V`` (``to=False``), ``V = ⊗ Q_k``."""
    factors = [_hermitian(q) if to else q for q in qs]
    return _apply_kron(factors, z, transposed=False)


@jax.custom_jvp
def _gp_core(factors, y, noise):
    """``alpha = (K + noise I)^{-1} y`` (rows of ``y``, shape ``(B, N)``) and ``log det(K + noise I)``."""
    alpha, logdet, _ = _gp_primal(factors, y, noise)
    return alpha, logdet


def _gp_primal(factors, y, noise):
    lams, qs = zip(*(jnp.linalg.eigh(f) for f in factors))
    dims = tuple(f.shape[0] for f in factors)
    denom = _outer_product(lams) + noise  # (n_1, ..., n_k), real
    b = y.shape[0]
    yt = _eigenbasis(qs, y, to=True).reshape((b,) + dims)
    at = yt / denom[None].astype(yt.dtype)  # alpha in the eigenbasis: V^H alpha
    alpha = _eigenbasis(qs, at.reshape(b, -1), to=False)
    logdet = jnp.sum(jnp.log(denom))
    return alpha, logdet, (lams, qs, denom, at)


def _gp_core_jvp(primals, tangents):
    # With M = K + noise I and alpha = M^{-1} y:
    #   d alpha = M^{-1} (dy - dK alpha - dnoise alpha),   d log det M = tr(M^{-1} dK) + dnoise tr(M^{-1}),
    # evaluated in the eigenbasis V = ⊗Q_k, where dK = sum_k K_1 ⊗ .. dK_k .. ⊗ K_d becomes
    # sum_k Λ_1 ⊗ .. E_k .. ⊗ Λ_d with E_k = Q_k^H dK_k Q_k: no derivative of an eigenvector is needed, so the
    # result is exact and finite at repeated eigenvalues.
    factors, y, noise = primals
    dfactors, dy, dnoise = tangents
    alpha, logdet, (lams, qs, denom, at) = _gp_primal(factors, y, noise)
    k = len(factors)
    b = y.shape[0]
    inv_denom = 1.0 / denom
    rhs = jnp.zeros_like(at)
    dlogdet = jnp.zeros_like(logdet)
    if not isinstance(dy, SymbolicZero):
        rhs = rhs + _eigenbasis(qs, dy, to=True).reshape(at.shape)
    for j, df in enumerate(dfactors):
        if isinstance(df, SymbolicZero):
            continue
        e = jnp.matmul(_hermitian(qs[j]), jnp.matmul(df, qs[j], precision=_HIGHEST), precision=_HIGHEST)
        e = (e + _hermitian(e)) / 2
        # (Λ_1 ⊗ .. E_j .. ⊗ Λ_k) at: scale every other mode by its eigenvalues, multiply mode j by E_j.
        scales = [lams[i] if i != j else jnp.ones_like(lams[i]) for i in range(k)]
        z = at * _outer_product(scales)[None].astype(at.dtype)
        z = jnp.moveaxis(jnp.tensordot(z, e, axes=([j + 1], [1]), precision=_HIGHEST), -1, j + 1)
        rhs = rhs - z
        diag = [lams[i] if i != j else jnp.real(jnp.diagonal(e)) for i in range(k)]
        dlogdet = dlogdet + jnp.sum(inv_denom * _outer_product(diag))
    if not isinstance(dnoise, SymbolicZero):
        rhs = rhs - dnoise.astype(at.dtype) * at
        dlogdet = dlogdet + dnoise * jnp.sum(inv_denom)
    dalpha = _eigenbasis(qs, (rhs * inv_denom[None].astype(rhs.dtype)).reshape(b, -1), to=False)
    return (alpha, logdet), (dalpha, dlogdet)


_gp_core.defjvp(_gp_core_jvp, symbolic_zeros=True)


def _gp_inputs(kernel, y, noise_variance, fname):
    kernel = _check_kernel(kernel, fname)
    y = _check_vectors(y, kernel.shape[1], "y", "prod of the kernel factor sizes")
    noise = _check_real_scalar(noise_variance, "noise_variance")
    dtype = jnp.result_type(kernel.dtype, y.dtype)
    kernel = _cast(kernel, dtype)
    real = jnp.finfo(dtype).dtype
    y2 = y.astype(dtype).reshape(-1, y.shape[-1])
    return kernel, y, y2, noise.astype(real)


def gp_solve(kernel, y, noise_variance) -> jax.Array:
    """``(K_1 ⊗ ... ⊗ K_d + σ² I)^{-1} y``: the Gaussian-process solve on a grid, without forming the ``N x N``
    covariance.

    With ``K_k = Q_k Λ_k Q_k^H`` (one ``eigh`` per factor, ``O(sum_k n_k^3)``), the covariance is
    ``V (Λ + σ² I) V^H`` with ``V = ⊗Q_k`` and ``Λ = ⊗Λ_k``, so ``alpha = V ((V^H y) / (λ_1 ⊗ ... ⊗ λ_d + σ²))``:
    two Kronecker matvecs and an elementwise division, ``O(N sum_k n_k)`` per right-hand side instead of
    ``O(N^3)``. This is the GP posterior-mean weight vector (mean = ``K_* alpha``) for a kernel that factorises over
    the dimensions of a Cartesian grid (e.g. a product of 1-D RBF kernels).

    Derivatives in the kernel factors, ``y`` and ``σ²`` are implemented directly
    (``d alpha = -(K + σ² I)^{-1} (dK + dσ² I) alpha`` evaluated in the eigenbasis), not by differentiating
    ``eigh``: they are exact and finite even where kernel eigenvalues repeat or cluster at round-off level, as
    they do for smooth kernels on fine grids.

    Args:
      kernel: a square :class:`Kron` or a sequence of factor matrices ``K_k`` of shape ``(n_k, n_k)``, Hermitian
        positive semi-definite (only the Hermitian part is used).
      y: array of shape ``(..., N)``, ``N = prod(n_k)``, the observations on the grid in row-major order.
      noise_variance: ``σ² > 0``, a real scalar (may be traced and differentiated); ``0`` only for a positive
        definite kernel.

    Returns:
      ``alpha`` of shape ``(..., N)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> def rbf(x, ell):
      ...     return jnp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2)
      >>> k1, k2 = rbf(jnp.linspace(0, 1, 5), 0.3), rbf(jnp.linspace(0, 1, 6), 0.5)
      >>> y = jnp.sin(jnp.arange(30.0))
      >>> alpha = kron.gp_solve([k1, k2], y, 0.1)
      >>> dense = jnp.kron(k1, k2) + 0.1 * jnp.eye(30)
      >>> bool(jnp.allclose(dense @ alpha, y, atol=1e-4))
      True
    """
    kernel, y, y2, noise = _gp_inputs(kernel, y, noise_variance, "gp_solve")
    alpha, _ = _gp_core(kernel.factors, y2, noise)
    return alpha.reshape(y.shape)


def gp_log_marginal_likelihood(kernel, y, noise_variance) -> jax.Array:
    """``log p(y) = -y^T alpha / 2 - log det(K + σ² I) / 2 - (N / 2) log(2π)`` for ``y ~ N(0, K + σ² I)``,
    ``K = K_1 ⊗ ... ⊗ K_d``, from the per-factor eigendecompositions (see :func:`gp_solve`).

    ``log det(K + σ² I) = sum_i log(λ_i + σ²)`` over the ``N`` products ``λ_i`` of factor eigenvalues. The gradient
    in the kernel factors and ``σ²`` (for hyperparameter fitting) is
    ``(alpha^T dK alpha - tr((K + σ² I)^{-1} dK)) / 2``, computed in the eigenbasis: exact and finite at repeated
    eigenvalues. Real dtypes only.

    Args:
      kernel: as in :func:`gp_solve`.
      y: array of shape ``(..., N)``: each vector along the last axis is one independent draw.
      noise_variance: ``σ²``, as in :func:`gp_solve`.

    Returns:
      Array of shape ``y.shape[:-1]``: one log-likelihood per vector.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import kron
      >>> k1, k2 = jnp.eye(2), jnp.eye(3)
      >>> y = jnp.zeros(6)
      >>> lml = kron.gp_log_marginal_likelihood([k1, k2], y, 1.0)  # covariance 2 I: -(6/2) log(2π · 2)
      >>> bool(jnp.allclose(lml, -3 * jnp.log(4 * jnp.pi)))
      True
    """
    kernel, y, y2, noise = _gp_inputs(kernel, y, noise_variance, "gp_log_marginal_likelihood")
    if jnp.issubdtype(kernel.dtype, jnp.complexfloating):
        raise TypeError(
            f"gp_log_marginal_likelihood needs a real kernel and y (a real Gaussian likelihood), got {kernel.dtype}"
        )
    alpha, logdet = _gp_core(kernel.factors, y2, noise)
    n = y.shape[-1]
    quad = jnp.sum(y2 * alpha, axis=-1)
    lml = -0.5 * quad - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)
    return lml.reshape(y.shape[:-1])
