"""Tree tensor networks in the hierarchical Tucker (HT) format: :class:`DimensionTree`, :class:`TreeTN` and the
pure functions on them.

A dimension tree is a rooted tree whose leaves are the modes ``0 .. d-1`` of a tensor ``x`` of shape
``(n_0, ..., n_{d-1})``. Every node ``t`` stands for the set of modes below it, and the format keeps for each node a
basis ``U_t`` of shape ``(prod_{k in t} n_k, r_t)`` for the column space of the matricization ``X^{(t)}`` (rows:
the modes of ``t``; columns: all other modes). Only the leaves store their basis; an interior node stores a
*transfer tensor* that builds its basis from those of its children (Hackbusch and Kuehn 2009; Grasedyck 2010)::

    leaf t (mode k):             cores[t] = U_t                                  shape (n_k, r_t)
    interior t (children c_1..c_m): cores[t] = B_t                               shape (r_{c_1}, ..., r_{c_m}, r_t)
        U_t[(i_{c_1}, ..., i_{c_m}), p]
            = sum_{a_1..a_m} B_t[a_1, ..., a_m, p] U_{c_1}[i_{c_1}, a_1] ... U_{c_m}[i_{c_m}, a_m]
    root: r_root = 1 and vec(x) = U_root[:, 0] (up to the order of the modes, see below).

Conventions:
  * Every core's last axis is the node's own rank ``r_t``; the root keeps its trailing axis of size 1, so
    ``ranks[t] == cores[t].shape[-1]`` for every node, and ``t.ranks[t.tree.root] == 1``.
  * Transfer tensors have one axis per child, in the order the tree lists the children, so any tree works:
    binary (the usual HT format), linear (a tensor train, see :func:`to_tt`) or a star (the Tucker format: one
    ``d``-way transfer tensor, which is the Tucker core, over ``d`` leaf factor matrices).
  * Nodes are numbered in post-order (children before their parent, children in the listed order; the root is
    last). ``tree.modes[t]`` lists the modes below ``t`` in that depth-first order, which is also the row order of
    ``U_t``; :func:`to_dense` returns the axes in the natural order ``0 .. d-1`` whatever the tree.
  * ``inner(a, b) = sum(conj(a) * b)`` (conjugate-linear in the first argument, like ``jnp.vdot``).
  * Every function works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``, except that a tolerance (``rtol``)
    chooses ranks from the data: ``from_dense(..., rtol=...)`` and ``round(..., rtol=...)`` need concrete arrays and
    raise a clear error under ``jit``/``vmap``. ``max_rank`` alone gives static shapes and is jit-compatible.
    The fixed-shape work is compiled once per structure (tree, shapes, dtype, ranks) by internal ``jax.jit`` calls, so
    eager calls do not dispatch dozens of small operations one by one; inside a user's ``jit`` they simply inline.
  * Batches: as for :class:`tnkit.TT`, ``jax.vmap`` over a function returning a ``TreeTN`` gives cores with leading
    batch axes; the properties read the trailing axes and ``batch_shape`` reports the leading ones.

References:
  W. Hackbusch, S. Kuehn, "A new scheme for the tensor representation", J. Fourier Anal. Appl. 15 (2009).
  L. Grasedyck, "Hierarchical singular value decomposition of tensors", SIAM J. Matrix Anal. Appl. 31 (2010).
  D. Kressner, C. Tobler, "htucker -- a Matlab toolbox for tensors in hierarchical Tucker format", ACM TOMS 40
  (2014).

Example:
  >>> import jax.numpy as jnp
  >>> from tnkit import tree
  >>> x = jnp.arange(2.0 * 3 * 4 * 5).reshape(2, 3, 4, 5)
  >>> t = tree.from_dense(x, rtol=1e-6)     # balanced binary tree ((0, 1), (2, 3)) by default
  >>> t.tree, t.ranks
  (DimensionTree(((0, 1), (2, 3))), (2, 2, 2, 2, 2, 2, 1))
  >>> bool(jnp.allclose(tree.to_dense(t), x, atol=1e-3))
  True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import _checks, _linalg
from tnkit._linalg import SVDMethod
from tnkit.formats import TT, TTMatrix
from tnkit._checks import check_rtol as _check_rtol
from tnkit._checks import concrete as _concrete
from tnkit._checks import require_concrete as _require_concrete
from tnkit._linalg import left_svd_with_tolerance as _left_svd_with_tolerance

__all__ = [
    "DimensionTree",
    "TreeTN",
    "from_dense",
    "to_dense",
    "orthogonalize",
    "round",
    "inner",
    "norm",
    "add",
    "sub",
    "scale",
    "get",
    "random",
    "zeros",
    "from_tt",
    "to_tt",
]

_HIGHEST = lax.Precision.HIGHEST


# -------------------------------------------------------------------------------------------------- dimension tree


def _canonical(node: Any) -> Any:
    """``node`` with lists turned into tuples and NumPy ints into ints; type and arity checked."""
    if isinstance(node, (bool, np.bool_)):
        raise TypeError(f"tree leaves must be int modes, got the bool {node!r}")
    if isinstance(node, (int, np.integer)):
        return int(node)
    if isinstance(node, (tuple, list)):
        if len(node) < 2:
            raise ValueError(
                f"every interior node of a dimension tree needs at least two children, got {tuple(node)!r} "
                "(write a single mode as an int, not a 1-tuple)"
            )
        return tuple(_canonical(c) for c in node)
    raise TypeError(
        f"a dimension tree is an int (a mode) or a tuple of subtrees, got {node!r} of type {type(node).__name__}"
    )


def _leaves_of(node) -> list[int]:
    return [node] if isinstance(node, int) else [m for c in node for m in _leaves_of(c)]


@dataclasses.dataclass(frozen=True)
class DimensionTree:
    """A rooted tree whose leaves are the modes ``0 .. d-1``: the static structure of a :class:`TreeTN`.

    Built from a nested tuple: an int is a leaf (a mode), a tuple of at least two subtrees is an interior node.
    Each mode must appear exactly once. The object is frozen and hashable (it is the pytree aux data of a
    ``TreeTN``, so it is static under ``jit``); two trees are equal when their nested tuples are.

    Nodes are numbered in post-order: a node's children come before it, in the listed order, and the root is node
    ``num_nodes - 1``.

    Args:
      nested: the tree as nested tuples (or lists) of ints, e.g. ``((0, 1), (2, (3, 4)))``; a single int ``0`` is
        the one-mode tree.

    Attributes:
      nested: the canonical nested tuple.
      children: ``children[t]`` is the tuple of child node indices of node ``t`` (``()`` for a leaf).
      parent: ``parent[t]`` is the parent node index (``-1`` for the root).
      modes: ``modes[t]`` are the modes below node ``t`` in depth-first order (the row order of its basis
        ``U_t``).
      leaves: ``leaves[k]`` is the node index of the leaf for mode ``k``.

    Raises:
      TypeError: an entry is neither an int nor a tuple (bools are rejected).
      ValueError: an interior node has fewer than two children, or the leaves are not the modes ``0 .. d-1``,
        each exactly once.

    Example:
      >>> from tnkit.tree import DimensionTree
      >>> t = DimensionTree(((0, 1), (2, (3, 4))))
      >>> t.ndim, t.num_nodes, t.root
      (5, 9, 8)
      >>> t.children[t.root], t.modes[7]
      ((2, 7), (2, 3, 4))
      >>> DimensionTree.balanced(4) == DimensionTree([[0, 1], [2, 3]])
      True
    """

    nested: Any
    children: tuple[tuple[int, ...], ...] = dataclasses.field(init=False, repr=False, compare=False)
    parent: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)
    modes: tuple[tuple[int, ...], ...] = dataclasses.field(init=False, repr=False, compare=False)
    leaves: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        nested = _canonical(self.nested)
        found = _leaves_of(nested)
        d = len(found)
        seen, repeated, out_of_range = set(), [], []
        for m in found:
            if not 0 <= m < d:
                out_of_range.append(m)
            elif m in seen:
                repeated.append(m)
            seen.add(m)
        if repeated or out_of_range:
            missing = sorted(set(range(d)) - seen)
            raise ValueError(
                f"the leaves of a dimension tree with {d} leaves must be the modes 0..{d - 1}, each exactly once; "
                f"got {nested!r} (repeated: {sorted(set(repeated))}, out of range: {out_of_range}, missing: {missing})"
            )
        children: list[tuple[int, ...]] = []
        modes: list[tuple[int, ...]] = []
        leaves = [0] * d

        def visit(node) -> int:
            if isinstance(node, int):
                children.append(())
                modes.append((node,))
                leaves[node] = len(children) - 1
                return len(children) - 1
            kids = tuple(visit(c) for c in node)
            children.append(kids)
            modes.append(tuple(m for k in kids for m in modes[k]))
            return len(children) - 1

        visit(nested)
        parent = [-1] * len(children)
        for t, kids in enumerate(children):
            for c in kids:
                parent[c] = t
        object.__setattr__(self, "nested", nested)
        object.__setattr__(self, "children", tuple(children))
        object.__setattr__(self, "parent", tuple(parent))
        object.__setattr__(self, "modes", tuple(modes))
        object.__setattr__(self, "leaves", tuple(leaves))

    def __repr__(self):
        return f"DimensionTree({self.nested!r})"

    @property
    def ndim(self) -> int:
        """Number of modes ``d`` (leaves)."""
        return len(self.leaves)

    @property
    def num_nodes(self) -> int:
        """Number of nodes (``2 d - 1`` for a binary tree, ``d + 1`` for a star with ``d >= 2``)."""
        return len(self.children)

    @property
    def root(self) -> int:
        """Index of the root node (the last one in post-order)."""
        return len(self.children) - 1

    def is_leaf(self, node: int) -> bool:
        """Whether ``node`` is a leaf (a mode)."""
        return not self.children[node]

    # ------------------------------------------------------------------------------------------- constructors

    @classmethod
    def balanced(cls, d: int) -> DimensionTree:
        """The balanced binary tree: modes ``0..d-1`` split recursively into a first half of ``d // 2`` modes and the
        rest.

        Example:
          >>> from tnkit.tree import DimensionTree
          >>> DimensionTree.balanced(5)
          DimensionTree(((0, 1), (2, (3, 4))))
        """
        d = _check_num_modes(d)

        def build(lo, hi):
            if hi - lo == 1:
                return lo
            mid = lo + (hi - lo) // 2
            return (build(lo, mid), build(mid, hi))

        return cls(build(0, d))

    @classmethod
    def linear(cls, d: int) -> DimensionTree:
        """The linear (caterpillar) tree ``((((0, 1), 2), 3), ...)``: its edges cut the tensor as a tensor train does
        (node ``{0..k}`` carries the TT rank ``r_{k+1}``); see :func:`to_tt` and :func:`from_tt`.

        Example:
          >>> from tnkit.tree import DimensionTree
          >>> DimensionTree.linear(4)
          DimensionTree((((0, 1), 2), 3))
        """
        d = _check_num_modes(d)
        nested: Any = 0
        for k in range(1, d):
            nested = (nested, k)
        return cls(nested)

    @classmethod
    def star(cls, d: int) -> DimensionTree:
        """The star tree ``(0, 1, ..., d-1)``: a root with every mode as a child, i.e. the Tucker format (the root's
        transfer tensor is the Tucker core, the leaves are the factor matrices).

        Example:
          >>> from tnkit.tree import DimensionTree
          >>> DimensionTree.star(3)
          DimensionTree((0, 1, 2))
        """
        d = _check_num_modes(d)
        return cls(tuple(range(d)) if d > 1 else 0)

    tucker = star


def _check_num_modes(d) -> int:
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (the number of modes) must be a positive int, got {d!r}")
    return int(d)


def _as_tree(tree, d: int, what: str) -> DimensionTree:
    """``tree`` as a :class:`DimensionTree` with ``d`` modes (``None``: the balanced tree)."""
    if tree is None:
        return DimensionTree.balanced(d)
    if not isinstance(tree, DimensionTree):
        if not isinstance(tree, (tuple, list, int, np.integer)) or isinstance(tree, bool):
            raise TypeError(f"tree must be a DimensionTree, a nested tuple of modes or None, got {type(tree).__name__}")
        tree = DimensionTree(tree)
    if tree.ndim != d:
        raise ValueError(f"tree has {tree.ndim} modes ({tree!r}) but {what} has {d}")
    return tree


# ------------------------------------------------------------------------------------------------------- TreeTN


def _validate(tree: DimensionTree, cores) -> tuple[jax.Array, ...]:
    if isinstance(cores, (jax.Array, np.ndarray)):
        raise TypeError(f"cores must be a sequence of arrays (one per node), got a single array of shape {cores.shape}")
    try:
        cores = list(cores)
    except TypeError:
        raise TypeError(f"cores must be a sequence of arrays (one per node), got {type(cores).__name__}") from None
    if len(cores) != tree.num_nodes:
        raise ValueError(
            f"cores must hold one array per node of the tree: {tree.num_nodes} for {tree!r}, got {len(cores)}"
        )
    out = []
    for t, c in enumerate(cores):
        if not hasattr(c, "shape") or not hasattr(c, "dtype"):
            c = jnp.asarray(c)
        if not (jnp.issubdtype(c.dtype, jnp.floating) or jnp.issubdtype(c.dtype, jnp.complexfloating)):
            raise TypeError(f"cores[{t}] has dtype {c.dtype}: expected a floating or complex dtype")
        out.append(jnp.asarray(c))
    dtypes = {c.dtype for c in out}
    if len(dtypes) > 1:
        raise TypeError(
            f"all cores must share one dtype, got {[str(c.dtype) for c in out]}; cast them first "
            "(tnkit does not promote silently)"
        )
    for t, c in enumerate(out):
        kids = tree.children[t]
        if not kids:
            if c.ndim != 2:
                raise ValueError(
                    f"cores[{t}] (the leaf of mode {tree.modes[t][0]}) has shape {c.shape}: expected a 2-D frame of "
                    "shape (n, r)"
                )
            continue
        if c.ndim != len(kids) + 1:
            raise ValueError(
                f"cores[{t}] (interior node over modes {tree.modes[t]} with children {kids}) has shape {c.shape}: "
                f"expected a {len(kids) + 1}-D transfer tensor of shape (r_child_1, ..., r_child_{len(kids)}, r)"
            )
        expected = tuple(out[k].shape[-1] for k in kids) + (c.shape[-1],)
        if c.shape != expected:
            j = next(j for j, k in enumerate(kids) if c.shape[j] != expected[j])
            raise ValueError(
                f"cores[{t}] (interior node over modes {tree.modes[t]}) has shape {c.shape}: expected shape "
                f"{expected}, because its axis {j} must equal the rank {expected[j]} of its child node {kids[j]} "
                f"(cores[{kids[j]}] has shape {out[kids[j]].shape})"
            )
    root = out[tree.root]
    if root.shape[-1] != 1:
        raise ValueError(
            f"cores[{tree.root}] (the root) has shape {root.shape}: expected a trailing axis of size 1 (the root's "
            "rank is 1)"
        )
    return tuple(out)


@jax.tree_util.register_pytree_node_class
class TreeTN:
    """A tree tensor network in hierarchical Tucker format: one core per node of a :class:`DimensionTree`.

    ``cores[t]`` is the leaf frame ``U_t`` of shape ``(n_k, r_t)`` for the leaf of mode ``k``, and the transfer
    tensor ``B_t`` of shape ``(r_{c_1}, ..., r_{c_m}, r_t)`` for an interior node with children ``c_1..c_m``; the
    root has ``r_root = 1`` (its trailing axis is kept). See the module docstring for the formula.

    Args:
      tree: a :class:`DimensionTree` or a nested tuple of modes (converted).
      cores: sequence of ``tree.num_nodes`` arrays in node (post-)order, all of one floating or complex dtype.

    Raises:
      ValueError: wrong number of cores, a core of the wrong number of axes, an axis that does not match the rank
        of the child it connects to, or a root rank other than 1 (the message names the node, the expected and the
        given shape).
      TypeError: ``tree`` or ``cores`` of the wrong kind, integer or mixed dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit.tree import TreeTN
      >>> t = TreeTN(((0, 1), 2), [jnp.ones((2, 3)), jnp.ones((4, 3)), jnp.ones((3, 3, 5)),
      ...                          jnp.ones((6, 2)), jnp.ones((5, 2, 1))])
      >>> t.dims, t.ranks, t.num_params
      ((2, 4, 6), (3, 3, 5, 2, 1), 85)
    """

    __slots__ = ("tree", "cores")
    tree: DimensionTree
    cores: tuple[jax.Array, ...]

    def __init__(self, tree, cores: Sequence[jax.Array]):
        if not isinstance(tree, DimensionTree):
            if not isinstance(tree, (tuple, list, int, np.integer)) or isinstance(tree, bool):
                raise TypeError(f"tree must be a DimensionTree or a nested tuple of modes, got {type(tree).__name__}")
            tree = DimensionTree(tree)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "cores", _validate(tree, cores))

    def __setattr__(self, name, value):
        raise AttributeError(f"TreeTN is immutable; build a new one instead of setting {name!r}")

    def tree_flatten(self):
        return self.cores, self.tree

    @classmethod
    def tree_unflatten(cls, tree, children):
        # No validation here: JAX unflattens with placeholders (None, object(), batched arrays).
        obj = object.__new__(cls)
        object.__setattr__(obj, "tree", tree)
        object.__setattr__(obj, "cores", tuple(children))
        return obj

    def _core_ndim(self, node: int) -> int:
        return len(self.tree.children[node]) + 1 if self.tree.children[node] else 2

    @property
    def ndim(self) -> int:
        """Number of modes ``d``."""
        return self.tree.ndim

    @property
    def dims(self) -> tuple[int, ...]:
        """Mode sizes ``(n_0, ..., n_{d-1})`` in the natural mode order."""
        return tuple(self.cores[leaf].shape[-2] for leaf in self.tree.leaves)

    @property
    def shape(self) -> tuple[int, ...]:
        """Same as ``dims``: the shape of the dense tensor."""
        return self.dims

    @property
    def ranks(self) -> tuple[int, ...]:
        """The rank ``r_t`` of every node, in node order (``ranks[tree.root] == 1``). The rank of node ``t`` is the
        rank of the matricization over the modes ``tree.modes[t]`` that the format allows."""
        return tuple(c.shape[-1] for c in self.cores)

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
        root = self.tree.root
        return tuple(self.cores[root].shape[: -self._core_ndim(root)])

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"TreeTN(tree={self.tree.nested!r}, dims={self.dims}, ranks={self.ranks}, dtype={self.dtype}{batch})"

    def __add__(self, other):
        return add(self, other) if isinstance(other, TreeTN) else NotImplemented

    def __sub__(self, other):
        return sub(self, other) if isinstance(other, TreeTN) else NotImplemented

    def __neg__(self):
        return scale(self, -1)

    def __mul__(self, other):
        if isinstance(other, (TreeTN, TT, TTMatrix)):
            return NotImplemented
        return scale(self, other)

    __rmul__ = __mul__


# ----------------------------------------------------------------------------------------------------- helpers


def _check_treetn(t, name: str = "t") -> TreeTN:
    if not isinstance(t, TreeTN):
        raise TypeError(f"{name} must be a tnkit.TreeTN, got {type(t).__name__}")
    return t


def _check_same_structure(a: TreeTN, b: TreeTN, names=("a", "b")) -> None:
    if a.tree != b.tree:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dimension tree, got {a.tree!r} and {b.tree!r}")
    if a.dims != b.dims:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dims, got {a.dims} and {b.dims}")


def _promote(a: TreeTN, b: TreeTN) -> tuple[TreeTN, TreeTN]:
    dtype = jnp.result_type(a.dtype, b.dtype)
    cast = lambda t: t if t.dtype == dtype else jax.tree_util.tree_map(lambda c: c.astype(dtype), t)  # noqa: E731
    return cast(a), cast(b)


def _node_max_ranks(tree: DimensionTree, max_rank) -> tuple[int | None, ...]:
    """``max_rank`` (None, an int, or one entry per node) as one cap per node (None: no cap)."""
    n = tree.num_nodes
    message = (
        f"max_rank must be a positive int, a sequence of {n} positive ints or Nones (one per node, in node order), "
        f"or None; got {max_rank!r}"
    )

    def one(r):
        if r is None:
            return None
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(message)
        return int(r)

    if max_rank is None or isinstance(max_rank, (int, np.integer, bool, np.bool_)):
        return (one(max_rank),) * n
    if not isinstance(max_rank, (Sequence, np.ndarray)) or isinstance(max_rank, str) or len(max_rank) != n:
        raise ValueError(message)
    caps = tuple(one(r) for r in max_rank)
    if caps[tree.root] not in (None, 1):
        raise ValueError(f"max_rank[{tree.root}] (the root) must be 1 or None, got {caps[tree.root]}")
    return caps


def _exempt_child(tree: DimensionTree) -> int | None:
    """The second child of a root with exactly two children: its matricization is the transpose of its sibling's,
    so truncating the sibling already truncates it (it needs no error budget of its own)."""
    kids = tree.children[tree.root]
    return kids[1] if len(kids) == 2 else None


def _num_truncated_edges(tree: DimensionTree) -> int:
    return tree.num_nodes - 1 - (_exempt_child(tree) is not None)


def _mode_product(core, matrix, axis: int):
    """``out[..., i, ...] = sum_a matrix[i, a] core[..., a, ...]`` on axis ``axis``."""
    out = jnp.tensordot(matrix, core, axes=((1,), (axis,)), precision=_HIGHEST)
    return jnp.moveaxis(out, 0, axis)


def _dagger(m):
    return jnp.swapaxes(m, -1, -2).conj()


# ---------------------------------------------------------------------------------------------- dense conversions


def from_dense(
    x,
    tree=None,
    *,
    max_rank=None,
    rtol: float | None = None,
    method: SVDMethod = SVDMethod.AUTO,
) -> TreeTN:
    """Hierarchical Tucker decomposition of a dense tensor by the hierarchical SVD (HT-SVD), leaves to root.

    The nodes are processed in post-order (every child before its parent). A working tensor ``C`` starts as ``x``;
    at a leaf ``t`` of mode ``k`` the mode-``k`` matricization of ``C`` (shape ``(n_k, rest)``) is factored and
    ``U_t`` keeps its ``r_t`` leading left singular vectors; at an interior node the axes of its children
    (shape ``(r_{c_1} ... r_{c_m}, rest)``) are factored the same way and the singular vectors, reshaped to
    ``(r_{c_1}, ..., r_{c_m}, r_t)``, become ``B_t``. Each time ``C`` is projected, ``C <- U^H C`` on those axes, so
    later steps factor ever smaller matrices; what is left at the end is the root's transfer tensor. (This is the
    sequentially truncated variant of Grasedyck's leaves-to-root HSVD, the HT analogue of the sequentially
    truncated HOSVD.)

    Error bound. The projections commute or are nested, so the error is (in exact arithmetic) the Pythagorean sum of
    what each step discards, ``||x - HT||^2 = sum_t sum_{i > r_t} sigma~_{t,i}^2``, and each step's singular values
    ``sigma~_{t,i}`` (of a projected matricization) are at most those of the matricization ``X^{(t)}`` of ``x``.
    Hence ``||x - HT||^2 <= sum_t sum_{i > r_t} sigma_i(X^{(t)})^2 <= (2d - 3) ||x - x_best||^2`` for a binary
    tree (Grasedyck 2010), ``x_best`` being the best approximation with the same ranks. The second child
    of a root with two children truncates nothing: its matricization is its sibling's transposed.

    Args:
      x: dense array of shape ``(n_0, ..., n_{d-1})``, ``d >= 1``, floating or complex.
      tree: a :class:`DimensionTree`, a nested tuple of modes, or ``None`` for ``DimensionTree.balanced(d)``.
      max_rank: the largest rank kept: an int for every node, or a sequence with one int (or ``None``) per node in
        node order (the root's entry must be 1 or ``None``), e.g. per-mode Tucker ranks on a star tree.
        jit-compatible (static shapes).
      rtol: relative error bound: the result satisfies ``||x - to_dense(t)|| <= rtol * ||x||`` (Frobenius). The
        budget is split evenly: each of the ``E`` truncated edges (every non-root node except the exempt root
        child above) discards at most ``rtol * ||x|| / sqrt(E)``. Forces eager execution. With both arguments, each
        rank is the smaller of the two choices (the bound then holds only if ``max_rank`` is not the binding one).
      method: how each wide matricization is factored (a :class:`tnkit.tt.SVDMethod`); the default takes the fast
        Gram-matrix route only where it is accurate for the rank being kept.

    Returns:
      A :class:`TreeTN` on ``tree`` whose non-root bases are orthonormal (the norm sits in the root's transfer
      tensor), with ``r_t <= min(prod of the child ranks (n_k for a leaf), size of the rest)``. A step that
      truncates nothing skips the SVD: it keeps the identity basis (which moves no data) or, for a matricization
      with more rows than columns, a QR basis.

    Raises:
      ValueError: bad ``max_rank``/``rtol``, a tree whose number of modes differs from ``x.ndim``, or ``rtol``
        under ``jit``/``vmap``.
      TypeError: ``x`` with an integer dtype, or ``tree`` of the wrong kind.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import tree
      >>> x = jnp.ones((3, 3, 3, 3)) + 1e-3 * jnp.arange(81.0).reshape(3, 3, 3, 3)
      >>> tree.from_dense(x, max_rank=1).ranks
      (1, 1, 1, 1, 1, 1, 1)
      >>> t = tree.from_dense(x, tree.DimensionTree.star(4), rtol=1e-2)   # Tucker
      >>> bool(jnp.linalg.norm(tree.to_dense(t) - x) <= 1e-2 * jnp.linalg.norm(x))
      True
    """
    if not hasattr(x, "ndim"):
        x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis, got shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        raise TypeError(f"x must have a floating or complex dtype, got {x.dtype}")
    x = jnp.asarray(x)
    tree = _as_tree(tree, x.ndim, "x")
    caps = _node_max_ranks(tree, max_rank)
    _check_rtol(rtol)
    _linalg.check_method(method)
    if rtol is None:
        return _from_dense_fixed(x, tree=tree, caps=caps, method=method)
    _require_concrete(x, "tree.from_dense")
    edges = _num_truncated_edges(tree)
    abs_tol = float(rtol) * float(_concrete(jnp.linalg.norm(x))) / math.sqrt(max(edges, 1))
    return _from_dense(x, tree, caps, method, abs_tol)


def _from_dense(x, tree: DimensionTree, caps, method: SVDMethod, abs_tol: float | None) -> TreeTN:
    root = tree.root
    if root == 0:
        return TreeTN(tree, [x.reshape(-1, 1)])
    exempt = _exempt_child(tree)
    cores: list[Any] = [None] * tree.num_nodes
    c = x
    # The working tensor's axes carry ids (0..d-1: the modes; later ids: ranks created by truncations). A node that
    # truncates nothing keeps the identity basis and owns the row-major flattening of its children's axes, without
    # moving data: axes are only transposed when a matricization is actually factored.
    order = list(range(x.ndim))  # ids of the axes of c, in order
    size = dict(enumerate(x.shape))
    group: dict[int, list[int]] = {}  # node -> the axis ids whose flattening is its rank index
    for node in range(root):
        if tree.is_leaf(node):
            ids, child_dims = [tree.modes[node][0]], [x.shape[tree.modes[node][0]]]
        else:
            kids = [group.pop(k) for k in tree.children[node]]
            ids, child_dims = [i for g in kids for i in g], [math.prod(size[i] for i in g) for g in kids]
        rows = math.prod(child_dims)
        cols = c.size // rows
        k_max = min(rows, cols)
        tol = None if node == exempt else abs_tol
        cap = caps[node]
        hint = k_max if cap is None else min(cap, k_max)
        if tol is None and hint == k_max and rows <= cols:
            # Nothing to truncate: the identity is an exact orthonormal basis and moves no data.
            cores[node] = jnp.eye(rows, dtype=c.dtype).reshape(*child_dims, rows)
            group[node] = ids
            continue
        pos = [order.index(i) for i in ids]
        rest = [p for p in range(len(order)) if p not in pos]
        if pos + rest != list(range(len(order))):
            c = jnp.transpose(c, pos + rest)
        rest_ids = [order[p] for p in rest]
        a = c.reshape(rows, cols)
        if tol is None and hint == k_max:
            u, c_new = _linalg.left_orthonormal(a)  # more rows than columns: an exact basis of rank cols
        else:
            if tol is None:
                u, _ = _linalg.left_svd(a, hint, method)
                rank = hint
            else:
                u, rank = _left_svd_with_tolerance(a, cap, tol, method)
            u = u[:, :rank]
            c_new = jnp.matmul(_dagger(u), a, precision=_HIGHEST)
        rank = u.shape[1]
        cores[node] = u.reshape(*child_dims, rank)
        new_id = len(size)
        size[new_id] = rank
        c = c_new.reshape(rank, *[size[i] for i in rest_ids])
        order = [new_id] + rest_ids
        group[node] = [new_id]
    kids = [group.pop(k) for k in tree.children[root]]
    pos = [order.index(i) for g in kids for i in g]
    if pos != list(range(len(order))):
        c = jnp.transpose(c, pos)
    cores[root] = c.reshape(*[math.prod(size[i] for i in g) for g in kids], 1)
    return TreeTN(tree, cores)


# Fixed ranks give static shapes: the whole decomposition is one compiled function per (shape, tree, ranks), so
# eager calls do not dispatch (and compile) dozens of small operations one by one. Inside a user's jit it inlines.
@functools.partial(jax.jit, static_argnames=("tree", "caps", "method"))
def _from_dense_fixed(x, *, tree, caps, method):
    return _from_dense(x, tree, caps, method, None)


def _frames(t: TreeTN):
    """Dense bases ``U_t`` of every node, shape ``(prod_{k in t} n_k, r_t)``, rows in ``tree.modes[t]`` order."""
    tree = t.tree
    frames: list[Any] = []
    for node, core in enumerate(t.cores):
        f = core
        for j, k in enumerate(tree.children[node]):
            f = _mode_product(f, frames[k], j)
        frames.append(f.reshape(-1, f.shape[-1]))
    return frames


def to_dense(t: TreeTN) -> jax.Array:
    """The dense tensor of shape ``t.dims`` that ``t`` represents (axes in the natural mode order).

    Built leaves to root: each node's basis ``U_t`` is its transfer tensor with the children's bases multiplied
    into their axes.

    Example:
      >>> import jax
      >>> from tnkit import tree
      >>> tree.to_dense(tree.random(jax.random.key(0), (2, 3, 4), 2)).shape
      (2, 3, 4)
    """
    _check_treetn(t)
    return _to_dense(t)


@jax.jit
def _to_dense(t: TreeTN) -> jax.Array:
    tree = t.tree
    dense = _frames(t)[tree.root]
    order = tree.modes[tree.root]
    dense = dense.reshape([t.dims[k] for k in order])
    return jnp.transpose(dense, np.argsort(order)) if list(order) != sorted(order) else dense


# ----------------------------------------------------------------------------------------- gauge and truncation


def orthogonalize(t: TreeTN) -> TreeTN:
    """Re-gauge ``t`` so that every non-root basis ``U_t`` has orthonormal columns (the norm moves into the root).

    Leaves to root: each core, matricized as ``(everything but its last axis, r_t)``, is factored ``Q R`` (thin QR,
    with a derivative that stays finite at rank-deficient points); ``Q`` replaces the core and ``R`` is multiplied
    into the parent's axis for this child. A rank larger than the side it factorises shrinks to that size (a leaf
    with ``r_t > n_k`` gets ``r_t = n_k``); ranks never grow. The dense tensor is unchanged, and afterwards
    ``norm(t) == ||cores[root]||``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tree
      >>> t = tree.orthogonalize(tree.random(jax.random.key(0), (3, 4, 5, 6), 3))
      >>> u = t.cores[0]
      >>> bool(jnp.allclose(u.T @ u, jnp.eye(3), atol=1e-5))
      True
    """
    _check_treetn(t)
    return _orthogonalize(t)


@jax.jit
def _orthogonalize(t: TreeTN) -> TreeTN:
    tree = t.tree
    cores = list(t.cores)
    for node in range(tree.root):
        core = cores[node]
        q, r = _linalg.left_orthonormal(core.reshape(-1, core.shape[-1]))
        cores[node] = q.reshape(*core.shape[:-1], q.shape[1])
        p = tree.parent[node]
        cores[p] = _mode_product(cores[p], r, tree.children[p].index(node))
    return TreeTN(tree, cores)


def round(t: TreeTN, *, max_rank=None, rtol: float | None = None) -> TreeTN:  # noqa: A001
    """Re-compress ``t`` to lower ranks: the standard root-to-leaves HT truncation of an HT tensor
    (Grasedyck 2010; Kressner and Tobler's htucker), which never forms the dense tensor.

    1. :func:`orthogonalize` ``t``.
    2. Root to leaves, compute the reduced Gramians ``G_t = W_t^H W_t`` (``X^{(t)} = U_t W_t^H``, so the eigenvalues
       of ``G_t`` are the squared singular values of the matricization ``X^{(t)}``). They are kept in factored form
       ``G_t = L_t^H L_t`` and never squared: for a child ``c`` of ``t`` the matrix
       ``Y_c = [B_t x_{last} conj(L_t)]`` matricized at ``c``'s axis satisfies ``G_c = Y_c Y_c^H``, so an SVD of the
       small ``Y_c`` gives the singular values of ``X^{(c)}`` to full accuracy, and ``L_c = diag(s) u^H``.
    3. Keep the ``r_c`` leading left singular vectors ``S_c`` of each ``Y_c`` and project:
       ``U_leaf <- U_leaf S_leaf``, ``B_t <- (S_{c_1}^H (x) ... (x) S_{c_m}^H) B_t S_t``.

    Error bound: ``||t - round(t)||^2 <= sum_c sum_{i > r_c} sigma_i(X^{(c)})^2`` over the truncated nodes
    ``c`` (at most ``sqrt(2d - 3)`` times the best error for a binary tree). For a root with two children both
    are cut at the same rank with matching bases (the second from the first), so that edge counts once.

    Args:
      t: a TreeTN.
      max_rank: largest rank kept: an int, or one entry per node (see :func:`from_dense`). jit-compatible.
      rtol: relative error bound ``||t - round(t)|| <= rtol * ||t||``, split evenly over the truncated edges as
        in :func:`from_dense`. Forces eager execution.

    Returns:
      A TreeTN on the same tree with ranks ``<=`` those of ``orthogonalize(t)`` (never larger than ``t``'s). Without
      ``max_rank`` and ``rtol`` the result is exact (ranks only drop to what the structure allows). The result is
      not orthogonalized.

    Example:
      >>> import jax
      >>> from tnkit import tree
      >>> a = tree.random(jax.random.key(0), (3, 3, 3, 3), 2)
      >>> tree.add(a, a).ranks, tree.round(tree.add(a, a), rtol=1e-6).ranks
      ((4, 4, 4, 4, 4, 4, 1), (2, 2, 2, 2, 2, 2, 1))
    """
    _check_treetn(t)
    tree = t.tree
    caps = _node_max_ranks(tree, max_rank)
    _check_rtol(rtol)
    if tree.root == 0:
        return t
    if rtol is None:
        return _round_fixed(t, caps=caps)
    for c in t.cores:
        _require_concrete(c, "tree.round")
    t, us, ss = _round_spectra(t)
    nrm = float(_concrete(jnp.linalg.norm(t.cores[tree.root])))
    abs_tol = float(rtol) * nrm / math.sqrt(_num_truncated_edges(tree))
    spectra = [None if s is None else _concrete(s) for s in ss]
    ranks = _round_ranks(tree, caps, [None if s is None else len(s) for s in spectra], spectra, abs_tol)
    return _round_project(t, us, ranks=ranks)


@jax.jit
def _round_spectra(t: TreeTN):
    """Orthogonalize ``t``, then, root to leaves, the left singular vectors ``u`` (in the coordinates of ``U_c``) and
    the singular values ``s`` of the matricization at every non-root node ``c`` (``None`` at the root)."""
    t = _orthogonalize(t)
    tree = t.tree
    root = tree.root
    us: list[Any] = [None] * tree.num_nodes
    ss: list[Any] = [None] * tree.num_nodes
    factor: dict[int, Any] = {root: jnp.ones((1, 1), t.dtype)}  # L_t with G_t = L_t^H L_t
    for node in reversed(range(tree.num_nodes)):  # parents before children
        kids = tree.children[node]
        if not kids:
            continue
        z = _mode_product(t.cores[node], factor.pop(node).conj(), len(kids))  # (r_c1, ..., r_cm, k_t)
        for j, child in enumerate(kids):
            y = jnp.moveaxis(z, j, 0).reshape(z.shape[j], -1)  # G_child = y y^H
            u, s = _linalg.left_svd(y, y.shape[0], SVDMethod.ACCURATE)
            us[child], ss[child] = u, s
            if tree.children[child]:
                factor[child] = s.astype(u.dtype)[:, None] * _dagger(u)
    return t, tuple(us), tuple(ss)


def _round_ranks(tree: DimensionTree, caps, sizes, spectra=None, abs_tol=None) -> tuple[int, ...]:
    """The kept rank of every node: ``sizes[c]`` singular values are available at node ``c``; with ``abs_tol``, the
    smallest rank whose discarded tail of the concrete ``spectra[c]`` is within it."""
    exempt = _exempt_child(tree)
    ranks = [1] * tree.num_nodes
    for node in range(tree.root):  # post-order: the exempt child comes after its sibling
        cap = sizes[node] if caps[node] is None else min(caps[node], sizes[node])
        if node == exempt:
            ranks[node] = min(ranks[tree.children[tree.root][0]], cap)
        elif abs_tol is not None:
            ranks[node] = _linalg.truncation_rank(spectra[node], max_rank=cap, abs_tol=abs_tol)
        else:
            ranks[node] = cap
    return tuple(ranks)


@functools.partial(jax.jit, static_argnames=("ranks",))
def _round_project(t: TreeTN, us, *, ranks) -> TreeTN:
    """Project the orthogonalized ``t`` onto the leading ``ranks`` singular vectors ``us`` of every node."""
    tree = t.tree
    root = tree.root
    exempt = _exempt_child(tree)
    basis = [None if u is None else u[:, : ranks[node]] for node, u in enumerate(us)]  # S_c, (r_c, new r_c)
    if exempt is not None:
        # The basis matching the first child's: the span of B_root^T conj(S_first), so that the two projections
        # together make the truncated SVD of the root's matrix (one tail, however degenerate the spectrum).
        first = tree.children[root][0]
        b = t.cores[root][..., 0]
        q, _ = _linalg.left_orthonormal(jnp.matmul(b.T, basis[first].conj(), precision=_HIGHEST))
        basis[exempt] = q[:, : ranks[exempt]]
    new = []
    for node, core in enumerate(t.cores):
        for j, child in enumerate(tree.children[node]):
            core = _mode_product(core, _dagger(basis[child]), j)
        if node != root:
            core = _mode_product(core, basis[node].T, core.ndim - 1)
        new.append(core)
    return TreeTN(tree, new)


@functools.partial(jax.jit, static_argnames=("caps",))
def _round_fixed(t: TreeTN, *, caps) -> TreeTN:
    t, us, ss = _round_spectra(t)
    ranks = _round_ranks(t.tree, caps, [None if s is None else s.shape[0] for s in ss])
    return _round_project(t, us, ranks=ranks)


# ------------------------------------------------------------------------------------------------- linear algebra


def inner(a: TreeTN, b: TreeTN) -> jax.Array:
    """``<a, b> = sum(conj(a) * b)``, contracted leaves to root without forming either tensor.

    For every node ``M_t = U^a_t^H U^b_t`` (shape ``(r^a_t, r^b_t)``): ``conj(U^a)^T U^b`` at a leaf, and at an
    interior node ``M_t = conj(B^a_t)^T [B^b_t x_1 M_{c_1} ... x_m M_{c_m}]`` (matricized at the last axis);
    the result is ``M_root``. Cost ``O(sum_t r^{m_t + 2})`` for ``m_t`` children (``r^4`` per node for a binary
    tree) plus ``O(n r^2)`` per leaf.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tree
      >>> a = tree.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = tree.random(jax.random.key(1), (2, 3, 4), 3)
      >>> bool(jnp.allclose(tree.inner(a, b), jnp.vdot(tree.to_dense(a), tree.to_dense(b)), atol=1e-6))
      True
    """
    _check_treetn(a, "a")
    _check_treetn(b, "b")
    _check_same_structure(a, b)
    return _inner(*_promote(a, b))


@jax.jit
def _inner(a: TreeTN, b: TreeTN) -> jax.Array:
    tree = a.tree
    env: list[Any] = []
    for node, (ca, cb) in enumerate(zip(a.cores, b.cores)):
        for j, child in enumerate(tree.children[node]):
            cb = _mode_product(cb, env[child], j)
        env.append(
            jnp.matmul(_dagger(ca.reshape(-1, ca.shape[-1])), cb.reshape(-1, cb.shape[-1]), precision=_HIGHEST)
        )
    return env[tree.root][0, 0]


def norm(t: TreeTN) -> jax.Array:
    """Frobenius norm ``||t||`` (real, non-negative), computed through :func:`orthogonalize`.

    After orthogonalisation the norm is that of the root's transfer tensor: accurate to relative machine precision
    (``sqrt(inner(t, t))`` loses half the digits when the norm is small compared to the cores), and its derivative
    is finite at ``t = 0``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tree
      >>> t = tree.random(jax.random.key(0), (2, 3, 4), 2)
      >>> bool(jnp.allclose(tree.norm(t), jnp.linalg.norm(tree.to_dense(t)), atol=1e-6))
      True
    """
    _check_treetn(t)
    return _norm(t)


@jax.jit
def _norm(t: TreeTN) -> jax.Array:
    root = _orthogonalize(t).cores[t.tree.root].reshape(-1)
    return _linalg.safe_sqrt(jnp.real(jnp.vdot(root, root)))


def add(a: TreeTN, b: TreeTN) -> TreeTN:
    """``a + b`` on the same tree: every non-root rank is ``r^a_t + r^b_t`` (use :func:`round` to compress).

    Leaf frames are concatenated along the rank axis, interior transfer tensors are placed block-diagonally
    (``B^a`` in the leading corner, ``B^b`` in the trailing one, zeros elsewhere), and the root's blocks share its
    rank-1 axis, which sums the two tensors.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tree
      >>> a = tree.random(jax.random.key(0), (2, 3, 4), 2)
      >>> b = tree.random(jax.random.key(1), (2, 3, 4), 3)
      >>> c = tree.add(a, b)
      >>> c.ranks
      (5, 5, 5, 5, 1)
      >>> bool(jnp.allclose(tree.to_dense(c), tree.to_dense(a) + tree.to_dense(b), atol=1e-5))
      True
    """
    _check_treetn(a, "a")
    _check_treetn(b, "b")
    _check_same_structure(a, b)
    return _add(*_promote(a, b))


@jax.jit
def _add(a: TreeTN, b: TreeTN) -> TreeTN:
    tree = a.tree
    cores = []
    for node, (ca, cb) in enumerate(zip(a.cores, b.cores)):
        pad_a, pad_b = [], []
        for axis in range(ca.ndim):
            fixed = (tree.is_leaf(node) and axis == 0) or (node == tree.root and axis == ca.ndim - 1)
            pad_a.append((0, 0) if fixed else (0, cb.shape[axis]))
            pad_b.append((0, 0) if fixed else (ca.shape[axis], 0))
        cores.append(jnp.pad(ca, pad_a) + jnp.pad(cb, pad_b))
    return TreeTN(tree, cores)


def scale(t: TreeTN, alpha) -> TreeTN:
    """``alpha * t`` for a scalar ``alpha`` (the factor goes into the root's transfer tensor).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tree
      >>> t = tree.random(jax.random.key(0), (2, 3, 4), 2)
      >>> bool(jnp.allclose(tree.to_dense(tree.scale(t, 3.0)), 3.0 * tree.to_dense(t)))
      True
    """
    _check_treetn(t)
    alpha, _ = _checks.scalar_factor(alpha, t.dtype)
    return _scale(t, alpha)


@jax.jit
def _scale(t: TreeTN, alpha) -> TreeTN:
    cores = [c.astype(alpha.dtype) for c in t.cores]
    root = t.tree.root
    cores[root] = cores[root] * alpha
    return TreeTN(t.tree, cores)


def sub(a: TreeTN, b: TreeTN) -> TreeTN:
    """``a - b`` (ranks add, as for :func:`add`).

    Example:
      >>> import jax
      >>> from tnkit import tree
      >>> a = tree.random(jax.random.key(0), (2, 3, 4), 2)
      >>> float(tree.norm(tree.sub(a, a))) < 1e-5
      True
    """
    _check_treetn(b, "b")
    return add(a, scale(b, -1))


# -------------------------------------------------------------------------------------------------------- entries


def get(t: TreeTN, index) -> jax.Array:
    """Entries ``t[index[b, 0], ..., index[b, d-1]]`` for a batch of multi-indices, without forming the tensor.

    Leaves to root: a leaf gives the rows ``U_t[index[:, k], :]`` (shape ``(batch, r_t)``), an interior node
    contracts its transfer tensor with its children's rows, entry by entry of the batch. Cost
    ``O(batch * sum_t r^{m_t + 1})``.

    Args:
      t: a TreeTN with ``d`` modes.
      index: integer array of shape ``(batch, d)`` (or ``(d,)`` for a single entry), columns in mode order.
        Out-of-range indices raise when concrete; under ``jit`` they follow JAX's gather semantics (clamped), so
        check them beforehand.

    Returns:
      Array of shape ``(batch,)`` (or a scalar for ``(d,)`` input).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import tree
      >>> t = tree.random(jax.random.key(0), (2, 3, 4), 2)
      >>> idx = jnp.array([[0, 1, 2], [1, 2, 3]])
      >>> x = tree.to_dense(t)
      >>> bool(jnp.allclose(tree.get(t, idx), x[idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-6))
      True
    """
    _check_treetn(t)
    index, single = _checks.element_index(index, t.dims, "TreeTN")
    out = _get(t, index)
    return out[0] if single else out


@jax.jit
def _get(t: TreeTN, index) -> jax.Array:
    tree = t.tree
    rows: list[Any] = []
    for node, core in enumerate(t.cores):
        kids = tree.children[node]
        if not kids:
            rows.append(jnp.take(core, index[:, tree.modes[node][0]], axis=0))  # (batch, r_t)
            continue
        v = jnp.tensordot(rows[kids[0]], core, axes=((1,), (0,)), precision=_HIGHEST)  # (batch, a_2.., r_t)
        for k in kids[1:]:
            v = jnp.einsum("ba,ba...->b...", rows[k], v, precision=_HIGHEST)
        rows.append(v)
    return rows[tree.root][:, 0]


# ------------------------------------------------------------------------------------------------------ creation


def _check_dims(dims) -> tuple[int, ...]:
    try:
        dims = tuple(int(n) for n in dims)
    except TypeError:
        raise TypeError(f"dims must be a sequence of ints, got {dims!r}") from None
    if not dims or any(n < 1 for n in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims}")
    return dims


def _node_ranks(tree: DimensionTree, ranks) -> tuple[int, ...]:
    n = tree.num_nodes
    if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, (bool, np.bool_)):
        if ranks < 1:
            raise ValueError(f"ranks must be positive, got {ranks}")
        out = [int(ranks)] * n
        out[tree.root] = 1
        return tuple(out)
    try:
        ranks = tuple(int(r) for r in ranks)
    except TypeError:
        raise TypeError(f"ranks must be an int or a sequence of ints, got {ranks!r}") from None
    if len(ranks) != n:
        raise ValueError(
            f"ranks must be an int or one rank per node ({n} for {tree!r}, in node order, the root's being 1); "
            f"got {len(ranks)} values {ranks}"
        )
    if ranks[tree.root] != 1:
        raise ValueError(f"ranks[{tree.root}] (the root) must be 1, got ranks {ranks}")
    if any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be positive, got {ranks}")
    return ranks


def _check_dtype(dtype):
    dtype = jnp.dtype(dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise TypeError(f"dtype must be floating or complex, got {dtype}")
    return dtype


def random(key, dims: Sequence[int], ranks, tree=None, dtype=jnp.float32) -> TreeTN:
    """A TreeTN with i.i.d. Gaussian cores, scaled so that ``E ||t||^2 = 1``.

    Entries of a leaf frame have variance ``1 / (n_k r_t)``, of a transfer tensor ``1 / r_t`` (the root's: 1).
    Complex dtypes draw real and imaginary parts independently.

    Args:
      key: a JAX PRNG key.
      dims: mode sizes ``(n_0, ..., n_{d-1})``.
      ranks: an int (every non-root node), or one rank per node in node order with 1 for the root (the form of
        ``TreeTN.ranks``). Ranks above what the structure allows are kept as given.
      tree: a :class:`DimensionTree`, a nested tuple, or ``None`` for the balanced tree.
      dtype: floating or complex dtype.

    Example:
      >>> import jax
      >>> from tnkit import tree
      >>> tree.random(jax.random.key(0), (2, 3, 4), (2, 3, 4, 2, 1), tree=((0, 1), 2)).ranks
      (2, 3, 4, 2, 1)
    """
    dims = _check_dims(dims)
    tree = _as_tree(tree, len(dims), "dims")
    ranks = _node_ranks(tree, ranks)
    dtype = _check_dtype(dtype)
    shapes, stds = [], []
    for node in range(tree.num_nodes):
        kids = tree.children[node]
        if kids:
            shapes.append(tuple(ranks[k] for k in kids) + (ranks[node],))
            stds.append(1.0 / math.sqrt(ranks[node]))
        else:
            n = dims[tree.modes[node][0]]
            shapes.append((n, ranks[node]))
            stds.append(1.0 / math.sqrt(n * ranks[node]))
    return TreeTN(tree, _gaussian_cores(key, shapes=tuple(shapes), stds=tuple(stds), dtype=dtype))


@functools.partial(jax.jit, static_argnames=("shapes", "stds", "dtype"))
def _gaussian_cores(key, *, shapes, stds, dtype):
    # One draw for all cores, in one compiled function: eager calls compile once per structure, not once per core.
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    offsets = np.cumsum([0] + sizes)
    return [std * flat[o : o + n].reshape(s) for o, n, s, std in zip(offsets, sizes, shapes, stds)]


def zeros(dims: Sequence[int], tree=None, dtype=jnp.float32) -> TreeTN:
    """The zero tensor with every rank 1.

    Example:
      >>> from tnkit import tree
      >>> z = tree.zeros((2, 3, 4))
      >>> z.ranks, float(tree.norm(z))
      ((1, 1, 1, 1, 1), 0.0)
    """
    dims = _check_dims(dims)
    tree = _as_tree(tree, len(dims), "dims")
    dtype = _check_dtype(dtype)
    cores = []
    for node in range(tree.num_nodes):
        kids = tree.children[node]
        shape = (1,) * (len(kids) + 1) if kids else (dims[tree.modes[node][0]], 1)
        cores.append(jnp.zeros(shape, dtype))
    return TreeTN(tree, cores)


# ------------------------------------------------------------------------------------------------ tensor trains


def from_tt(t: TT) -> TreeTN:
    """The same tensor as a TreeTN on ``DimensionTree.linear(d)``, exactly.

    Node ``{0..k}`` of the linear tree carries the TT rank ``r_{k+1}``: the first core becomes the frame of leaf 0;
    core ``k >= 1`` (shape ``(r_k, n_k, r_{k+1})``) is split by a QR factorisation of its mode unfolding
    ``(n_k, r_k r_{k+1}) = Q R`` into an orthonormal leaf frame ``Q`` (rank ``min(n_k, r_k r_{k+1})``) and the
    transfer tensor ``R`` reshaped to ``(r_k, rank, r_{k+1})``.

    Example:
      >>> import jax
      >>> from tnkit import tree, tt
      >>> h = tree.from_tt(tt.random(jax.random.key(0), (2, 3, 4), 2))
      >>> h.tree, h.ranks
      (DimensionTree(((0, 1), 2)), (2, 3, 2, 2, 1))
    """
    if not isinstance(t, TT):
        raise TypeError(f"t must be a tnkit.TT, got {type(t).__name__}")
    return _from_tt(t)


@jax.jit
def _from_tt(t: TT) -> TreeTN:
    d = t.ndim
    tree = DimensionTree.linear(d)
    first = t.cores[0][0]  # (n_0, r_1)
    if d == 1:
        return TreeTN(tree, [first])
    cores = [first]
    for k in range(1, d):
        g = t.cores[k]
        r, n, r_next = g.shape
        q, rest = _linalg.left_orthonormal(jnp.transpose(g, (1, 0, 2)).reshape(n, r * r_next))
        cores.append(q)
        cores.append(jnp.transpose(rest.reshape(q.shape[1], r, r_next), (1, 0, 2)))
    return TreeTN(tree, cores)


def to_tt(t: TreeTN) -> TT:
    """The same tensor as a :class:`tnkit.TT`, exactly; ``t`` must be on ``DimensionTree.linear(d)``.

    TT core ``k >= 1`` is the transfer tensor of node ``{0..k}`` with the frame of leaf ``k`` multiplied into its
    middle axis, ``G_k[a, i, b] = sum_c B[a, c, b] U_k[i, c]``; the first core is the frame of leaf 0. The TT ranks
    are the ranks of the nodes ``{0}, {0, 1}, ..., {0..d-1}``.

    Raises:
      ValueError: ``t`` is on another tree (convert with ``from_dense(tt.to_dense(...))`` or round through a dense
        tensor instead).

    Example:
      >>> import jax
      >>> from tnkit import tree
      >>> h = tree.random(jax.random.key(0), (2, 3, 4), 2, tree=tree.DimensionTree.linear(3))
      >>> tree.to_tt(h).ranks
      (1, 2, 2, 1)
    """
    _check_treetn(t)
    d = t.ndim
    if t.tree != DimensionTree.linear(d):
        raise ValueError(f"to_tt needs a TreeTN on the linear tree {DimensionTree.linear(d)!r}, got {t.tree!r}")
    return _to_tt(t)


@jax.jit
def _to_tt(t: TreeTN) -> TT:
    d = t.ndim
    cores = [t.cores[0][None]]
    for k in range(1, d):
        leaf, node = 2 * k - 1, 2 * k
        cores.append(jnp.einsum("acb,ic->aib", t.cores[node], t.cores[leaf], precision=_HIGHEST))
    return TT(cores)
