"""Tensor-network formats as immutable JAX pytrees.

A format object holds only arrays (its leaves); everything else (dims, ranks) is read off the shapes, so
``jax.jit``, ``jax.vmap``, ``jax.grad`` and ``jax.tree_util.tree_map`` pass straight through it.

Batches: ``jax.vmap`` over a function that returns a format gives an object whose cores carry a leading batch
axis. Properties read the trailing axes, so ``dims`` and ``ranks`` still describe each member of the batch, and
``batch_shape`` gives the leading axes. Pass such an object to another ``jax.vmap`` to work on its members::

    >>> import jax, jax.numpy as jnp
    >>> from tnkit import tt
    >>> keys = jax.random.split(jax.random.key(0), 5)
    >>> batch = jax.vmap(lambda k: tt.random(k, (4, 4, 4), 2))(keys)
    >>> batch.batch_shape, batch.dims, batch.ranks
    ((5,), (4, 4, 4), (1, 2, 2, 1))
    >>> jax.vmap(tt.norm)(batch).shape
    (5,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TT", "TTMatrix", "TR", "Tucker", "CP"]


def _as_core(core: Any, index: int) -> jax.Array:
    if not hasattr(core, "shape") or not hasattr(core, "dtype"):
        core = jnp.asarray(core)
    if not (jnp.issubdtype(core.dtype, jnp.floating) or jnp.issubdtype(core.dtype, jnp.complexfloating)):
        raise TypeError(f"cores[{index}] has dtype {core.dtype}: expected a floating or complex dtype")
    return jnp.asarray(core)


def _check_dtypes(arrays: Sequence[jax.Array], what: str) -> None:
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        raise TypeError(
            f"all {what} must share one dtype, got {[str(a.dtype) for a in arrays]}; cast them first "
            "(tnkit does not promote silently)"
        )


def _validate_cores(cores: Sequence[Any], core_ndim: int, layout: str, *, ring: bool = False) -> tuple[jax.Array, ...]:
    if isinstance(cores, (jax.Array, np.ndarray)):
        raise TypeError(f"cores must be a sequence of arrays {layout}, got a single array of shape {cores.shape}")
    cores = tuple(_as_core(c, k) for k, c in enumerate(cores))
    if not cores:
        raise ValueError("cores must hold at least one core, got an empty sequence")
    for k, c in enumerate(cores):
        if c.ndim != core_ndim:
            raise ValueError(f"cores[{k}] has shape {c.shape}: expected a {core_ndim}-D core {layout}")
    _check_dtypes(cores, "cores")
    if ring:
        first, last = cores[0].shape[0], cores[-1].shape[-1]
        if first != last:
            raise ValueError(
                f"cores[{len(cores) - 1}] has shape {cores[-1].shape}: expected right rank {first}, because a ring "
                f"closes on the left rank of cores[0] (shape {cores[0].shape})"
            )
    elif cores[0].shape[0] != 1:
        raise ValueError(f"cores[0] has shape {cores[0].shape}: expected left rank 1, i.e. shape (1, ...)")
    if not ring and cores[-1].shape[-1] != 1:
        raise ValueError(
            f"cores[{len(cores) - 1}] has shape {cores[-1].shape}: expected right rank 1, i.e. shape (..., 1)"
        )
    for k in range(1, len(cores)):
        left, right = cores[k - 1].shape[-1], cores[k].shape[0]
        if left != right:
            expected = (left,) + cores[k].shape[1:]
            raise ValueError(
                f"cores[{k}] has shape {cores[k].shape}: expected shape {expected}, because its left rank must "
                f"equal the right rank {left} of cores[{k - 1}] (shape {cores[k - 1].shape})"
            )
    return cores


class _Format:
    """Shared machinery: immutability and pytree registration of a tuple of cores."""

    __slots__ = ("cores",)
    cores: tuple[jax.Array, ...]

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one instead of setting {name!r}")

    def tree_flatten(self):
        return self.cores, None

    @classmethod
    def tree_unflatten(cls, aux, children):
        # No validation here: JAX unflattens with placeholders (None, object(), batched arrays).
        obj = object.__new__(cls)
        object.__setattr__(obj, "cores", tuple(children))
        return obj

    @property
    def ndim(self) -> int:
        """Number of cores ``d``."""
        return len(self.cores)

    @property
    def ranks(self) -> tuple[int, ...]:
        """Bond dimensions ``(r_0, r_1, ..., r_d)`` with ``r_0 = r_d = 1``."""
        return (self.cores[0].shape[-(self._core_ndim)],) + tuple(c.shape[-1] for c in self.cores)

    @property
    def dtype(self):
        """The dtype of the cores."""
        return self.cores[0].dtype

    @property
    def num_params(self) -> int:
        """Total number of entries in the cores (including any batch axes)."""
        return int(sum(np.prod(c.shape) for c in self.cores))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes of the cores: ``()`` unless the object was produced by ``jax.vmap``."""
        return tuple(self.cores[0].shape[: -self._core_ndim])


@jax.tree_util.register_pytree_node_class
class TT(_Format):
    """A tensor train (matrix product state) representing a tensor of shape ``dims``.

    The tensor is ``x[i_1, ..., i_d] = G_1[:, i_1, :] @ G_2[:, i_2, :] @ ... @ G_d[:, i_d, :]``.

    Args:
      cores: sequence of ``d`` arrays, core ``k`` of shape ``(r_{k-1}, n_k, r_k)``, with ``r_0 = r_d = 1``, all of
        one floating or complex dtype.

    Raises:
      ValueError: a core is not 3-D, the boundary ranks are not 1, or neighbouring ranks disagree (the message names
        the core index, the expected and the given shape).
      TypeError: the cores have integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import TT, tt
      >>> t = TT([jnp.ones((1, 2, 3)), jnp.ones((3, 4, 1))])
      >>> t.dims, t.ranks, t.num_params
      ((2, 4), (1, 3, 1), 18)
      >>> tt.to_dense(t).shape
      (2, 4)
    """

    __slots__ = ()
    _core_ndim = 3

    def __init__(self, cores: Sequence[jax.Array]):
        object.__setattr__(self, "cores", _validate_cores(cores, 3, "of shape (r_prev, n, r_next)"))

    @property
    def dims(self) -> tuple[int, ...]:
        """Mode sizes ``(n_1, ..., n_d)``."""
        return tuple(c.shape[-2] for c in self.cores)

    @property
    def shape(self) -> tuple[int, ...]:
        """Same as ``dims``: the shape of the dense tensor."""
        return self.dims

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"TT(dims={self.dims}, ranks={self.ranks}, dtype={self.dtype}{batch})"

    # Operators forward to tnkit.tt; imported lazily to keep formats free of algebra.
    def __add__(self, other):
        from tnkit import tt

        return tt.add(self, other) if isinstance(other, TT) else NotImplemented

    def __sub__(self, other):
        from tnkit import tt

        return tt.sub(self, other) if isinstance(other, TT) else NotImplemented

    def __neg__(self):
        from tnkit import tt

        return tt.scale(self, -1)

    def __mul__(self, other):
        from tnkit import tt

        if isinstance(other, TT):
            return tt.hadamard(self, other)
        if isinstance(other, _Format):
            return NotImplemented
        return tt.scale(self, other)

    __rmul__ = __mul__


@jax.tree_util.register_pytree_node_class
class TTMatrix(_Format):
    """A TT-matrix (matrix product operator) representing a ``(prod(row_dims), prod(col_dims))`` matrix.

    Entry ``W[(i_1..i_d), (j_1..j_d)] = A_1[:, i_1, j_1, :] @ ... @ A_d[:, i_d, j_d, :]``, where the row index is
    the row-major flattening of ``(i_1, ..., i_d)`` and likewise for columns.

    Args:
      cores: sequence of ``d`` arrays, core ``k`` of shape ``(r_{k-1}, m_k, n_k, r_k)``, ``r_0 = r_d = 1``.

    Raises:
      ValueError: a core is not 4-D, the boundary ranks are not 1, or neighbouring ranks disagree.
      TypeError: the cores have integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import TTMatrix, ttm
      >>> a = TTMatrix([jnp.ones((1, 2, 3, 2)), jnp.ones((2, 4, 5, 1))])
      >>> a.row_dims, a.col_dims, a.shape
      ((2, 4), (3, 5), (8, 15))
      >>> ttm.to_dense(a).shape
      (8, 15)
    """

    __slots__ = ()
    _core_ndim = 4

    def __init__(self, cores: Sequence[jax.Array]):
        object.__setattr__(self, "cores", _validate_cores(cores, 4, "of shape (r_prev, m, n, r_next)"))

    @property
    def row_dims(self) -> tuple[int, ...]:
        """Row mode sizes ``(m_1, ..., m_d)``."""
        return tuple(c.shape[-3] for c in self.cores)

    @property
    def col_dims(self) -> tuple[int, ...]:
        """Column mode sizes ``(n_1, ..., n_d)``."""
        return tuple(c.shape[-2] for c in self.cores)

    @property
    def dims(self) -> tuple[tuple[int, int], ...]:
        """``((m_1, n_1), ..., (m_d, n_d))``."""
        return tuple(zip(self.row_dims, self.col_dims))

    @property
    def shape(self) -> tuple[int, int]:
        """``(prod(row_dims), prod(col_dims))``: the shape of the dense matrix."""
        return int(np.prod(self.row_dims)), int(np.prod(self.col_dims))

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return (
            f"TTMatrix(row_dims={self.row_dims}, col_dims={self.col_dims}, ranks={self.ranks}, "
            f"dtype={self.dtype}{batch})"
        )

    def __add__(self, other):
        from tnkit import ttm

        return ttm.add(self, other) if isinstance(other, TTMatrix) else NotImplemented

    def __sub__(self, other):
        from tnkit import ttm

        return ttm.sub(self, other) if isinstance(other, TTMatrix) else NotImplemented

    def __neg__(self):
        from tnkit import ttm

        return ttm.scale(self, -1)

    def __mul__(self, other):
        from tnkit import ttm

        if isinstance(other, _Format):
            return NotImplemented
        return ttm.scale(self, other)

    __rmul__ = __mul__

    def __matmul__(self, other):
        from tnkit import ttm

        if isinstance(other, TTMatrix):
            return ttm.matmul(self, other)
        if isinstance(other, TT):
            return ttm.matvec(self, other)
        if hasattr(other, "ndim") and other.ndim == 1:
            return ttm.apply(self, other)
        if hasattr(other, "ndim"):
            raise TypeError(
                f"TTMatrix @ array needs a 1-D vector, got shape {other.shape}; for a batch of vectors of shape "
                "(..., prod(col_dims)) use ttm.apply(a, x)"
            )
        return NotImplemented


@jax.tree_util.register_pytree_node_class
class TR(_Format):
    """A tensor ring representing a tensor of shape ``dims``.

    The tensor is ``x[i_1, ..., i_d] = trace(G_1[:, i_1, :] @ G_2[:, i_2, :] @ ... @ G_d[:, i_d, :])``. A tensor
    train is the special case ``r_0 = r_d = 1``.

    Args:
      cores: sequence of ``d`` arrays, core ``k`` of shape ``(r_{k-1}, n_k, r_k)``, with ``r_0 = r_d`` (the ring
        closes), all of one floating or complex dtype.

    Raises:
      ValueError: a core is not 3-D, the ring does not close (``r_d != r_0``), or neighbouring ranks disagree (the
        message names the core index, the expected and the given shape).
      TypeError: the cores have integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import TR
      >>> t = TR([jnp.ones((2, 3, 4)), jnp.ones((4, 5, 2))])
      >>> t.dims, t.ranks, t.num_params
      ((3, 5), (2, 4, 2), 64)
    """

    __slots__ = ()
    _core_ndim = 3

    def __init__(self, cores: Sequence[jax.Array]):
        object.__setattr__(self, "cores", _validate_cores(cores, 3, "of shape (r_prev, n, r_next)", ring=True))

    @property
    def dims(self) -> tuple[int, ...]:
        """Mode sizes ``(n_1, ..., n_d)``."""
        return tuple(c.shape[-2] for c in self.cores)

    @property
    def shape(self) -> tuple[int, ...]:
        """Same as ``dims``: the shape of the dense tensor."""
        return self.dims

    @property
    def ranks(self) -> tuple[int, ...]:
        """Bond dimensions ``(r_0, r_1, ..., r_d)`` with ``r_0 = r_d``."""
        return super().ranks

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"TR(dims={self.dims}, ranks={self.ranks}, dtype={self.dtype}{batch})"

    def __add__(self, other):
        from tnkit import tr

        return tr.add(self, other) if isinstance(other, TR) else NotImplemented

    def __sub__(self, other):
        from tnkit import tr

        return tr.sub(self, other) if isinstance(other, TR) else NotImplemented

    def __neg__(self):
        from tnkit import tr

        return tr.scale(self, -1)

    def __mul__(self, other):
        from tnkit import tr

        if isinstance(other, TR):
            return tr.hadamard(self, other)
        if isinstance(other, (_Format, Tucker, CP)):
            return NotImplemented
        return tr.scale(self, other)

    __rmul__ = __mul__


def _as_array(x: Any, name: str) -> jax.Array:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        raise TypeError(f"{name} has dtype {x.dtype}: expected a floating or complex dtype")
    return jnp.asarray(x)


def _validate_factors(factors: Sequence[Any], layout: str) -> tuple[jax.Array, ...]:
    if isinstance(factors, (jax.Array, np.ndarray)):
        raise TypeError(f"factors must be a sequence of matrices {layout}, got a single array of shape {factors.shape}")
    factors = tuple(_as_array(f, f"factors[{k}]") for k, f in enumerate(factors))
    if not factors:
        raise ValueError("factors must hold at least one matrix, got an empty sequence")
    for k, f in enumerate(factors):
        if f.ndim != 2:
            raise ValueError(f"factors[{k}] has shape {f.shape}: expected a matrix {layout}")
    _check_dtypes(factors, "factors")
    return factors


class _Immutable:
    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one instead of setting {name!r}")


@jax.tree_util.register_pytree_node_class
class Tucker(_Immutable):
    """A Tucker decomposition: a core tensor multiplied by one factor matrix per mode.

    ``x = core x_1 U_1 x_2 U_2 ... x_d U_d``, i.e. ``x[i_1..i_d] = sum_{j} core[j_1..j_d] U_1[i_1, j_1] ...
    U_d[i_d, j_d]``.

    Args:
      core: array of shape ``(r_1, ..., r_d)``.
      factors: sequence of ``d`` matrices, ``factors[k]`` of shape ``(n_k, r_k)``. Factors need not be orthonormal
        (:func:`tnkit.tucker.hosvd` and :func:`tnkit.tucker.hooi` return orthonormal ones).

    Raises:
      ValueError: a factor is not 2-D, or the core's shape is not ``(r_1, ..., r_d)`` (the message names the
        argument, the expected and the given shape).
      TypeError: integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import Tucker
      >>> t = Tucker(jnp.ones((2, 3, 4)), [jnp.ones((5, 2)), jnp.ones((6, 3)), jnp.ones((7, 4))])
      >>> t.dims, t.ranks, t.num_params
      ((5, 6, 7), (2, 3, 4), 80)
    """

    __slots__ = ("core", "factors")
    core: jax.Array
    factors: tuple[jax.Array, ...]

    def __init__(self, core: jax.Array, factors: Sequence[jax.Array]):
        factors = _validate_factors(factors, "of shape (n_k, r_k)")
        core = _as_array(core, "core")
        expected = tuple(f.shape[1] for f in factors)
        if core.shape != expected:
            raise ValueError(
                f"core has shape {core.shape}: expected {expected}, one axis per factor with the factors' ranks "
                f"(factor shapes {[f.shape for f in factors]})"
            )
        _check_dtypes((core, factors[0]), "of core and factors")
        object.__setattr__(self, "core", core)
        object.__setattr__(self, "factors", factors)

    def tree_flatten(self):
        return (self.core, self.factors), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "core", children[0])
        object.__setattr__(obj, "factors", tuple(children[1]))
        return obj

    @property
    def ndim(self) -> int:
        """Number of modes ``d``."""
        return len(self.factors)

    @property
    def dims(self) -> tuple[int, ...]:
        """Mode sizes ``(n_1, ..., n_d)``."""
        return tuple(f.shape[-2] for f in self.factors)

    @property
    def shape(self) -> tuple[int, ...]:
        """Same as ``dims``: the shape of the dense tensor."""
        return self.dims

    @property
    def ranks(self) -> tuple[int, ...]:
        """Multilinear ranks ``(r_1, ..., r_d)``."""
        return tuple(f.shape[-1] for f in self.factors)

    @property
    def dtype(self):
        """The dtype of the core and factors."""
        return self.core.dtype

    @property
    def num_params(self) -> int:
        """Number of entries in the core and the factors (including any batch axes)."""
        return int(np.prod(self.core.shape) + sum(np.prod(f.shape) for f in self.factors))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes: ``()`` unless the object was produced by ``jax.vmap``."""
        return tuple(self.factors[0].shape[:-2])

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"Tucker(dims={self.dims}, ranks={self.ranks}, dtype={self.dtype}{batch})"


@jax.tree_util.register_pytree_node_class
class CP(_Immutable):
    """A CP (CANDECOMP/PARAFAC) decomposition: a weighted sum of ``R`` rank-one tensors.

    ``x[i_1..i_d] = sum_r weights[r] * A_1[i_1, r] * ... * A_d[i_d, r]``.

    Args:
      weights: array of shape ``(R,)``.
      factors: sequence of ``d`` matrices, ``factors[k]`` of shape ``(n_k, R)``.

    Raises:
      ValueError: a factor is not 2-D, factors disagree on ``R``, or ``weights`` is not of shape ``(R,)``.
      TypeError: integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import CP
      >>> t = CP(jnp.ones(3), [jnp.ones((4, 3)), jnp.ones((5, 3))])
      >>> t.dims, t.rank, t.num_params
      ((4, 5), 3, 30)
    """

    __slots__ = ("weights", "factors")
    weights: jax.Array
    factors: tuple[jax.Array, ...]

    def __init__(self, weights: jax.Array, factors: Sequence[jax.Array]):
        factors = _validate_factors(factors, "of shape (n_k, R)")
        rank = factors[0].shape[1]
        for k, f in enumerate(factors):
            if f.shape[1] != rank:
                raise ValueError(
                    f"factors[{k}] has shape {f.shape}: expected ({f.shape[0]}, {rank}), because every factor must "
                    f"have R = {rank} columns like factors[0] (shape {factors[0].shape})"
                )
        weights = _as_array(weights, "weights")
        if weights.shape != (rank,):
            raise ValueError(f"weights has shape {weights.shape}: expected ({rank},), one weight per column of the factors")
        _check_dtypes((weights, factors[0]), "of weights and factors")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "factors", factors)

    def tree_flatten(self):
        return (self.weights, self.factors), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "weights", children[0])
        object.__setattr__(obj, "factors", tuple(children[1]))
        return obj

    @property
    def ndim(self) -> int:
        """Number of modes ``d``."""
        return len(self.factors)

    @property
    def dims(self) -> tuple[int, ...]:
        """Mode sizes ``(n_1, ..., n_d)``."""
        return tuple(f.shape[-2] for f in self.factors)

    @property
    def shape(self) -> tuple[int, ...]:
        """Same as ``dims``: the shape of the dense tensor."""
        return self.dims

    @property
    def rank(self) -> int:
        """The number ``R`` of rank-one terms."""
        return self.weights.shape[-1]

    @property
    def dtype(self):
        """The dtype of the weights and factors."""
        return self.weights.dtype

    @property
    def num_params(self) -> int:
        """Number of entries in the weights and the factors (including any batch axes)."""
        return int(np.prod(self.weights.shape) + sum(np.prod(f.shape) for f in self.factors))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes: ``()`` unless the object was produced by ``jax.vmap``."""
        return tuple(self.weights.shape[:-1])

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"CP(dims={self.dims}, rank={self.rank}, dtype={self.dtype}{batch})"
