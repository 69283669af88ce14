"""Conversions between tnkit formats and TensorNetwork / TensorLy.

Layouts. No axis is permuted by any conversion here, because all three libraries store a tensor-train core the
same way:

  ==================================  ===========================================  ===============================
  tnkit                               peer                                         core shape
  ==================================  ===========================================  ===============================
  :class:`tnkit.TT` core ``k``        ``tensornetwork.FiniteMPS.tensors[k]``       ``(r_{k-1}, n_k, r_k)``
  :class:`tnkit.TT` core ``k``        ``tensorly.tt_tensor.TTTensor.factors[k]``   ``(r_{k-1}, n_k, r_k)``
  :class:`tnkit.TTMatrix` core ``k``  ``tensorly.tt_matrix.TTMatrix.factors[k]``   ``(r_{k-1}, m_k, n_k, r_k)``
  ==================================  ===========================================  ===============================

with open boundaries ``r_0 = r_d = 1`` everywhere. :func:`to_tensornetwork_nodes` is the one place where the
layout differs: it squeezes the two size-1 boundary legs (see there).

The represented tensor is never changed. tnkit does not normalise; TensorNetwork's ``FiniteMPS`` does when it
canonicalises (``FiniteMPS(..., canonicalize=True)``, its default, and ``mps.position(site)`` with its default
``normalize=True`` divide the norm out and discard it). :func:`to_tensornetwork_mps` therefore builds the MPS with
``canonicalize=False``; with ``center_position`` it brings ``t`` into mixed-canonical form with tnkit's own
:func:`tnkit.tt.orthogonalize`, which keeps the norm in the centre tensor. :func:`from_tensornetwork_mps` reads the
MPS's tensors as they are, so the dense tensors agree: an MPS that TensorNetwork has normalised converts to the
normalised tensor, which is what it represents.

Dtypes. ``float32``, ``float64``, ``complex64`` and ``complex128`` are kept in both directions; integer cores are
refused with a ``TypeError`` (tnkit does not promote silently). Converting 64-bit arrays *into* tnkit needs
``jax.config.update("jax_enable_x64", True)``, as with any JAX array; otherwise JAX truncates them to 32 bits and
warns.

Arrays. Conversions are eager operations (do not call them under ``jax.jit``). NumPy arrays handed to a peer are
fresh writable copies, arrays read from a peer are copied into JAX, and JAX arrays are immutable, so in-place
updates on either side (TensorNetwork's ``FiniteMPS`` divides its tensors in place) never reach the other. Only
unbatched objects convert: for a batch produced by ``jax.vmap``, convert one member at a time.

TensorNetwork backends. ``backend="numpy"`` is the default: it is the backend on which all of TensorNetwork 0.4.6
works. ``backend="jax"`` keeps JAX arrays and works for building networks, contracting them
(``tn.contractors.*``), canonicalising a ``FiniteMPS`` and its measurements, but TensorNetwork 0.4.6's JAX backend
calls APIs that JAX has since removed (``jax.ShapedArray``, ``jax.ops.index_update``), so its Krylov solvers
(``eigsh_lanczos``, ``eigs``, ``gmres``), hence ``tn.FiniteDMRG``, and ``backend.index_update`` raise
``AttributeError`` with JAX 0.10.

Imports. ``tensornetwork`` (a dependency of tnkit) and ``tensorly`` (optional: ``pip install tensorly``) are
imported inside the functions that need them, so ``import tnkit`` stays fast and works without TensorLy.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import interop, tt
  >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
  >>> mps = interop.to_tensornetwork_mps(t)
  >>> mps.bond_dimensions, mps.physical_dimensions
  ([1, 2, 2, 1], [2, 3, 4])
  >>> back = interop.from_tensornetwork_mps(mps)
  >>> all(bool(jnp.array_equal(a, b)) for a, b in zip(back.cores, t.cores))
  True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from tnkit.formats import TT, TTMatrix

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    import tensornetwork
    import tensorly.tt_matrix
    import tensorly.tt_tensor

__all__ = [
    "to_tensornetwork_mps",
    "from_tensornetwork_mps",
    "to_tensornetwork_mpo",
    "from_tensornetwork_mpo",
    "to_tensornetwork_nodes",
    "from_tensornetwork_nodes",
    "to_tensorly",
    "from_tensorly",
    "to_tensorly_matrix",
    "from_tensorly_matrix",
]

_TN_BACKENDS = ("numpy", "jax")

# ------------------------------------------------------------------------------------------------------- helpers


def _import_tensornetwork():
    try:
        import tensornetwork
    except ImportError as e:  # pragma: no cover - tensornetwork is a runtime dependency
        raise ImportError(
            "this tnkit.interop function needs TensorNetwork, which is not installed: pip install tensornetwork"
        ) from e
    return tensornetwork


def _import_tensorly():
    try:
        import tensorly
        import tensorly.tt_matrix
        import tensorly.tt_tensor
    except ImportError as e:
        raise ImportError(
            "this tnkit.interop function needs TensorLy, which is not installed (it is an optional dependency of "
            "tnkit): pip install tensorly"
        ) from e
    return tensorly


def _check_format(obj, cls, name: str):
    if not isinstance(obj, cls):
        raise TypeError(f"{name} must be a tnkit.{cls.__name__}, got {type(obj).__name__}")
    if obj.batch_shape:
        raise ValueError(
            f"{name} has batch_shape {obj.batch_shape}: only unbatched objects convert; convert one member at a "
            f"time, e.g. jax.tree_util.tree_map(lambda c: c[i], {name})"
        )
    return obj


def _check_backend(backend) -> str:
    name = getattr(backend, "name", backend)
    if name not in _TN_BACKENDS:
        raise ValueError(f"backend must be one of {_TN_BACKENDS} (or such a TensorNetwork backend), got {backend!r}")
    return name


def _to_numpy(core: jax.Array) -> np.ndarray:
    """A writable NumPy copy (``np.asarray`` of a JAX array is a read-only view)."""
    return np.array(core, copy=True)


def _for_tn_backend(core: jax.Array, backend: str):
    return core if backend == "jax" else _to_numpy(core)


def _to_jax(a: Any, label: str) -> jax.Array:
    """A JAX array from an array of any library (NumPy, JAX, a CPU torch tensor, ...), checking its dtype."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{label} must be an array, got {type(a).__name__}")
    if not isinstance(a, jax.Array):
        a = np.asarray(a)
    if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.complexfloating)):
        raise TypeError(
            f"{label} has dtype {a.dtype}: expected a floating or complex dtype (tnkit does not promote silently)"
        )
    return jnp.asarray(a)


def _chain_cores(arrays: Sequence[Any], label: Callable[[int], str], name: str, layout: str, core_ndim: int):
    """Validate a sequence of open-boundary tensor-train cores and convert them to JAX, naming ``label(k)``."""
    cores = [_to_jax(a, label(k)) for k, a in enumerate(arrays)]
    if not cores:
        raise ValueError(f"{name} must hold at least one core, got none")
    for k, c in enumerate(cores):
        if c.ndim != core_ndim:
            raise ValueError(f"{label(k)} has shape {c.shape}: expected a {core_ndim}-D core of shape {layout}")
    if cores[0].shape[0] != 1:
        raise ValueError(
            f"{label(0)} has shape {cores[0].shape}: expected left rank 1 (open boundary), i.e. shape (1, ...)"
        )
    if cores[-1].shape[-1] != 1:
        raise ValueError(
            f"{label(len(cores) - 1)} has shape {cores[-1].shape}: expected right rank 1 (open boundary), i.e. "
            "shape (..., 1)"
        )
    for k in range(1, len(cores)):
        left, right = cores[k - 1].shape[-1], cores[k].shape[0]
        if left != right:
            raise ValueError(
                f"{label(k)} has shape {cores[k].shape}: its left rank {right} must equal the right rank {left} of "
                f"{label(k - 1)} (shape {cores[k - 1].shape})"
            )
    dtypes = [str(c.dtype) for c in cores]
    if len(set(dtypes)) > 1:
        raise TypeError(f"all cores of {name} must share one dtype, got {dtypes}")
    return cores


# ------------------------------------------------------------------------------------------- TensorNetwork: MPS


def to_tensornetwork_mps(
    t: TT, backend: str = "numpy", *, center_position: int | None = None
) -> tensornetwork.FiniteMPS:
    """A ``tensornetwork.FiniteMPS`` representing the same tensor as ``t``.

    The MPS tensors are ``t``'s cores, of shape ``(r_{k-1}, n_k, r_k)`` (TensorNetwork's ``(D_left, d, D_right)``),
    built with ``canonicalize=False`` so that nothing is normalised: the MPS represents ``tt.to_dense(t)`` exactly.

    Args:
      t: an unbatched :class:`tnkit.TT` with ``d`` cores.
      backend: ``"numpy"`` (default; NumPy copies of the cores) or ``"jax"`` (the JAX arrays themselves). The JAX
        backend of TensorNetwork 0.4.6 does not run ``tn.FiniteDMRG`` or its Krylov solvers with current JAX; see
        the module docstring.
      center_position: ``None`` (default) keeps ``t``'s cores and gives ``mps.center_position = None``. An int in
        ``[-d, d)`` first moves the orthogonality centre there with :func:`tnkit.tt.orthogonalize` (cores left of
        it left-orthonormal, right of it right-orthonormal, the norm kept in the centre tensor, ranks larger than
        the dims allow reduced) and sets ``mps.center_position``, so ``mps.check_canonical()`` is about zero. Note
        that TensorNetwork's own ``mps.position(site)`` normalises unless given ``normalize=False``.

    Returns:
      A ``FiniteMPS`` with ``bond_dimensions == list(t.ranks)`` (unless ``center_position`` reduced ranks),
      ``physical_dimensions == list(t.dims)`` and ``dtype == t.dtype``.

    Raises:
      TypeError: ``t`` is not a ``tnkit.TT``.
      ValueError: ``t`` is batched, ``backend`` is not ``"numpy"`` or ``"jax"``, or ``center_position`` is out of
        range.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import interop, tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> mps = interop.to_tensornetwork_mps(t, center_position=1)
      >>> mps.center_position, bool(abs(mps.check_canonical()) < 1e-5)
      (1, True)
      >>> x = tt.to_dense(interop.from_tensornetwork_mps(mps))
      >>> bool(jnp.allclose(x, tt.to_dense(t), atol=1e-5))
      True
    """
    _check_format(t, TT, "t")
    backend = _check_backend(backend)
    d = t.ndim
    if center_position is not None:
        if not isinstance(center_position, (int, np.integer)) or isinstance(center_position, bool) or not (
            -d <= center_position < d
        ):
            raise ValueError(
                f"center_position must be None or an int in [-{d}, {d}) for a TT with {d} cores, got "
                f"{center_position!r}"
            )
        center_position = int(center_position) % d
        from tnkit import tt as _tt

        t = _tt.orthogonalize(t, center_position)
    tn = _import_tensornetwork()
    mps = tn.FiniteMPS([_for_tn_backend(c, backend) for c in t.cores], canonicalize=False, backend=backend)
    if center_position is not None:
        # FiniteMPS only accepts a centre together with its own (normalising) canonicalisation; the cores are already
        # in mixed-canonical form about this site, so record it.
        mps.center_position = center_position
    return mps


def from_tensornetwork_mps(mps: tensornetwork.FiniteMPS) -> TT:
    """The :class:`tnkit.TT` with the tensors of a ``tensornetwork.FiniteMPS`` as cores.

    Reads ``mps.get_tensor(k)`` for every site (so a ``connector_matrix``, if one was set, is absorbed into the last
    core, as TensorNetwork does), without copying a gauge or a norm anywhere: ``tt.to_dense`` of the result is the
    contraction of the MPS tensors. ``center_position`` only records which site is the orthogonality centre and
    needs no conversion. An MPS that TensorNetwork canonicalised (its default) is normalised, and so is the result.

    Args:
      mps: a ``FiniteMPS`` (NumPy or JAX backend) whose tensors have shape ``(D_left, d, D_right)`` with open
        boundaries ``D_left = 1`` at the first site and ``D_right = 1`` at the last.

    Returns:
      A TT with ``ranks == tuple(mps.bond_dimensions)``, ``dims == tuple(mps.physical_dimensions)``, of the MPS's
      dtype.

    Raises:
      TypeError: ``mps`` is not a ``FiniteMPS`` (an ``InfiniteMPS`` included), or its tensors are not floating or
        complex.
      ValueError: a tensor is not 3-D or a boundary bond dimension is not 1.

    Example:
      >>> import numpy as np
      >>> import tensornetwork as tn
      >>> from tnkit import interop, tt
      >>> mps = tn.FiniteMPS.random([2, 3, 2], [2, 2], dtype=np.float32)  # canonical, hence normalised
      >>> t = interop.from_tensornetwork_mps(mps)
      >>> t.dims, t.ranks, t.dtype
      ((2, 3, 2), (1, 2, 2, 1), dtype('float32'))
      >>> round(float(tt.norm(t)), 4)
      1.0
    """
    tn = _import_tensornetwork()
    if not isinstance(mps, tn.FiniteMPS):
        raise TypeError(f"mps must be a tensornetwork.FiniteMPS, got {type(mps).__name__}")
    tensors = [mps.get_tensor(k) for k in range(len(mps))]
    return TT(_chain_cores(tensors, lambda k: f"mps.tensors[{k}]", "mps", "(D_left, d, D_right)", 3))


# ------------------------------------------------------------------------------------------- TensorNetwork: MPO


def to_tensornetwork_mpo(a: TTMatrix, backend: str = "numpy") -> tensornetwork.FiniteMPO:
    """A ``tensornetwork.FiniteMPO`` representing the same operator as the TT-matrix ``a``.

    TensorNetwork stores MPO tensors as ``(D_left, D_right, d_out, d_in)`` (its DMRG contracts the MPS's physical
    leg with the last axis), tnkit as ``(r_{k-1}, m_k, n_k, r_k)`` with ``m`` the row (output) and ``n`` the column
    (input) mode, so each core is transposed by ``(0, 3, 1, 2)``.

    Args:
      a: an unbatched :class:`tnkit.TTMatrix`.
      backend: ``"numpy"`` (default) or ``"jax"``, as in :func:`to_tensornetwork_mps`.

    Returns:
      A ``FiniteMPO`` with ``bond_dimensions == list(a.ranks)``.

    Raises:
      TypeError: ``a`` is not a ``tnkit.TTMatrix``.
      ValueError: ``a`` is batched or ``backend`` is unknown.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import interop, ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (4, 5), 2)
      >>> mpo = interop.to_tensornetwork_mpo(a)
      >>> mpo.bond_dimensions, [t.shape for t in mpo.tensors]
      ([1, 2, 1], [(1, 2, 2, 4), (2, 1, 3, 5)])
      >>> back = interop.from_tensornetwork_mpo(mpo)
      >>> bool(jnp.allclose(ttm.to_dense(back), ttm.to_dense(a)))
      True
    """
    _check_format(a, TTMatrix, "a")
    backend = _check_backend(backend)
    tn = _import_tensornetwork()
    tensors = [_for_tn_backend(jnp.transpose(c, (0, 3, 1, 2)), backend) for c in a.cores]
    return tn.FiniteMPO(tensors, backend=backend)


def from_tensornetwork_mpo(mpo: tensornetwork.FiniteMPO) -> TTMatrix:
    """The :class:`tnkit.TTMatrix` of a ``tensornetwork.FiniteMPO`` (tensors ``(D_left, D_right, d_out, d_in)``).

    Model MPOs such as ``tn.matrixproductstates.mpo.FiniteXXZ`` convert directly; row modes are TensorNetwork's
    output legs, column modes its input legs (see :func:`to_tensornetwork_mpo`).

    Args:
      mpo: a ``FiniteMPO`` (any backend) with open boundaries ``D_left = 1`` at the first and ``D_right = 1`` at the
        last site.

    Returns:
      A TTMatrix with ``ranks == tuple(mpo.bond_dimensions)``.

    Raises:
      TypeError: ``mpo`` is not a ``FiniteMPO`` or its tensors are not floating or complex.
      ValueError: a tensor is not 4-D or the bonds do not chain.

    Example:
      >>> import numpy as np
      >>> from tensornetwork.matrixproductstates.mpo import FiniteXXZ
      >>> from tnkit import interop, ttm
      >>> h = interop.from_tensornetwork_mpo(FiniteXXZ(np.ones(3), np.ones(3), np.zeros(4), dtype=np.float32))
      >>> h.shape, h.ranks
      ((16, 16), (1, 5, 5, 5, 1))
      >>> w = np.asarray(ttm.to_dense(h))
      >>> bool(np.allclose(w, w.T))  # the Heisenberg Hamiltonian is symmetric
      True
    """
    tn = _import_tensornetwork()
    if not isinstance(mpo, tn.matrixproductstates.mpo.FiniteMPO):
        raise TypeError(f"mpo must be a tensornetwork FiniteMPO, got {type(mpo).__name__}")
    tensors = []
    for k, tensor in enumerate(mpo.tensors):
        if getattr(tensor, "ndim", None) != 4:
            raise ValueError(
                f"mpo.tensors[{k}] has shape {getattr(tensor, 'shape', None)}: expected a 4-D tensor of shape "
                "(D_left, D_right, d_out, d_in)"
            )
        tensors.append(np.transpose(np.asarray(tensor), (0, 2, 3, 1)))
    return TTMatrix(_chain_cores(tensors, lambda k: f"mpo.tensors[{k}] (transposed)", "mpo", "(r, m, n, r)", 4))


# ----------------------------------------------------------------------------------------- TensorNetwork: nodes


def to_tensornetwork_nodes(t: TT, backend: str = "numpy") -> list[tensornetwork.Node]:
    """``t`` as a chain of connected ``tensornetwork.Node`` objects, one per core, boundary legs squeezed.

    Node ``k`` is named ``"core{k}"``. The size-1 boundary legs are dropped, so the only dangling edges are the
    physical ones and contracting the network gives a tensor of shape ``t.dims``:

      * ``d >= 2``: ``nodes[0]`` has shape ``(n_1, r_1)`` and axes ``("phys", "right")``; ``nodes[k]``, ``0 < k <
        d-1``, has shape ``(r_k, n_{k+1}, r_{k+1})`` and axes ``("left", "phys", "right")``; ``nodes[-1]`` has shape
        ``(r_{d-1}, n_d)`` and axes ``("left", "phys")``.
      * ``d == 1``: a single node of shape ``(n_1,)`` with axis ``("phys",)``.

    ``nodes[k]["right"]`` is connected (``tn.connect``) to ``nodes[k+1]["left"]``, an edge named ``"bond{k+1}"`` of
    dimension ``t.ranks[k+1]``; ``nodes[k]["phys"]`` is a dangling edge named ``"phys{k}"`` of dimension
    ``t.dims[k]``. The physical edges in order are ``[node["phys"] for node in nodes]``.

    Args:
      t: an unbatched :class:`tnkit.TT`.
      backend: ``"numpy"`` (default, NumPy copies) or ``"jax"`` (JAX arrays; contraction works with either).

    Returns:
      A list of ``d`` nodes.

    Raises:
      TypeError: ``t`` is not a ``tnkit.TT``.
      ValueError: ``t`` is batched or ``backend`` is not ``"numpy"`` or ``"jax"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import tensornetwork as tn
      >>> from tnkit import interop, tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> nodes = interop.to_tensornetwork_nodes(t)
      >>> [n.shape for n in nodes]
      [(2, 2), (2, 3, 2), (2, 4)]
      >>> out = tn.contractors.auto(nodes, output_edge_order=[n["phys"] for n in nodes])
      >>> bool(jnp.allclose(out.tensor, tt.to_dense(t), atol=1e-6))
      True
    """
    _check_format(t, TT, "t")
    backend = _check_backend(backend)
    tn = _import_tensornetwork()
    d = t.ndim
    nodes = []
    for k, core in enumerate(t.cores):
        if d == 1:
            tensor, axes = core[0, :, 0], ["phys"]
        elif k == 0:
            tensor, axes = core[0], ["phys", "right"]
        elif k == d - 1:
            tensor, axes = core[..., 0], ["left", "phys"]
        else:
            tensor, axes = core, ["left", "phys", "right"]
        node = tn.Node(_for_tn_backend(tensor, backend), name=f"core{k}", axis_names=axes, backend=backend)
        node["phys"].set_name(f"phys{k}")
        nodes.append(node)
    for k in range(d - 1):
        tn.connect(nodes[k]["right"], nodes[k + 1]["left"], name=f"bond{k + 1}")
    return nodes


def _node_layout(k: int, d: int, ndim: int):
    """Axes ``(left, phys, right)`` of node ``k`` of ``d`` with ``ndim`` axes; ``None`` marks a squeezed leg."""
    if ndim == 3:
        return 0, 1, 2
    if d == 1 and ndim == 1:
        return None, 0, None
    if d > 1 and ndim == 2 and k == 0:
        return None, 0, 1
    if d > 1 and ndim == 2 and k == d - 1:
        return 0, 1, None
    return None


def from_tensornetwork_nodes(nodes: Sequence[tensornetwork.Node]) -> TT:
    """The :class:`tnkit.TT` of a chain of ``tensornetwork`` nodes, as made by :func:`to_tensornetwork_nodes`.

    Accepted chains of ``d`` nodes: every inner node is 3-D with axes ``(left, phys, right)``; the end nodes are
    either squeezed (2-D ``(phys, right)`` first and ``(left, phys)`` last; 1-D ``(phys,)`` when ``d == 1``) or 3-D
    with a dangling boundary leg of dimension 1. Node ``k``'s right axis must be connected to node ``k+1``'s left
    axis, and every ``phys`` axis must be dangling. Axis names are not needed, axis positions are; reorder a node's
    axes with ``node.reorder_edges`` first if necessary. The nodes are only read, not changed or contracted.

    Args:
      nodes: a non-empty list or tuple of ``tensornetwork`` nodes (NumPy or JAX backend).

    Returns:
      A TT with cores of shape ``(r_{k-1}, n_k, r_k)`` (squeezed legs restored as size-1 ranks) and the nodes'
      dtype.

    Raises:
      TypeError: ``nodes`` is not a list or tuple of nodes, or the tensors are not floating or complex.
      ValueError: the nodes do not form such a chain (wrong number of axes, an edge that is not connected to the
        neighbour it should be, a physical leg that is connected, a boundary leg that is not of dimension 1). The
        message names the node and axis.

    Example:
      >>> import numpy as np
      >>> import tensornetwork as tn
      >>> from tnkit import interop
      >>> a = tn.Node(np.ones((2, 3), np.float32))
      >>> b = tn.Node(np.ones((3, 4), np.float32))
      >>> _ = tn.connect(a[1], b[0])
      >>> t = interop.from_tensornetwork_nodes([a, b])
      >>> t.dims, t.ranks
      ((2, 4), (1, 3, 1))
    """
    tn = _import_tensornetwork()
    if not isinstance(nodes, (list, tuple)):
        raise TypeError(f"nodes must be a list or tuple of tensornetwork nodes, got {type(nodes).__name__}")
    if not nodes:
        raise ValueError("nodes must hold at least one node, got an empty sequence")
    for k, node in enumerate(nodes):
        if not isinstance(node, tn.AbstractNode):
            raise TypeError(f"nodes[{k}] must be a tensornetwork node, got {type(node).__name__}")
    d = len(nodes)
    layouts = []
    for k, node in enumerate(nodes):
        layout = _node_layout(k, d, len(node.edges))
        if layout is None:
            if d == 1:
                expected = "the only node must be 1-D (phys,) or 3-D (1, phys, 1)"
            elif k == 0:
                expected = "the first node must be 2-D (phys, right) or 3-D (1, phys, right)"
            elif k == d - 1:
                expected = "the last node must be 2-D (left, phys) or 3-D (left, phys, 1)"
            else:
                expected = "an inner node must be 3-D (left, phys, right)"
            raise ValueError(f"nodes[{k}] has shape {tuple(node.shape)}: in a chain of {d} nodes, {expected}")
        layouts.append(layout)
    for k in range(d - 1):
        right = layouts[k][2]
        left = layouts[k + 1][0]
        if nodes[k].edges[right] is not nodes[k + 1].edges[left]:
            raise ValueError(
                f"nodes[{k}] axis {right} (right bond) must be connected to nodes[{k + 1}] axis {left} (left bond): "
                f"the nodes do not form a chain (shapes {tuple(nodes[k].shape)} and {tuple(nodes[k + 1].shape)}); "
                f"connect them with tn.connect(nodes[{k}][{right}], nodes[{k + 1}][{left}])"
            )
    for k, (node, (left, phys, right)) in enumerate(zip(nodes, layouts)):
        if not node.edges[phys].is_dangling():
            raise ValueError(
                f"nodes[{k}] axis {phys} (the physical leg) must be dangling, but it is connected; nodes must form "
                "a chain like the output of to_tensornetwork_nodes"
            )
        for axis, side, boundary in ((left, "left", k == 0), (right, "right", k == d - 1)):
            if axis is None or not boundary:
                continue
            edge = node.edges[axis]
            if not edge.is_dangling() or edge.dimension != 1:
                raise ValueError(
                    f"nodes[{k}] axis {axis} (the {side} boundary leg) must be a dangling leg of dimension 1, got "
                    f"{'a connected edge' if not edge.is_dangling() else 'dimension ' + str(edge.dimension)}"
                )
    tensors = []
    for k, (node, (left, _, right)) in enumerate(zip(nodes, layouts)):
        x = _to_jax(node.tensor, f"nodes[{k}].tensor")
        if left is None:
            x = x[None]
        if right is None:
            x = x[..., None]
        tensors.append(x)
    return TT(_chain_cores(tensors, lambda k: f"nodes[{k}]", "nodes", "(r_prev, n, r_next)", 3))


# ----------------------------------------------------------------------------------------------------- TensorLy


def _tensorly_factors(obj, cls, other_cls, name: str, other_fn: str, what: str):
    if isinstance(obj, other_cls):
        raise TypeError(f"{name} is a {type(obj).__module__}.{type(obj).__name__}: use tnkit.interop.{other_fn}")
    if isinstance(obj, cls):
        return list(obj.factors)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    raise TypeError(
        f"{name} must be a {cls.__module__}.{cls.__name__} or a list of {what} factors, got {type(obj).__name__}"
    )


def _to_tensorly_arrays(cores, tl):
    # tl.tensor makes an array of TensorLy's active backend (a NumPy copy for its default NumPy backend).
    return [tl.tensor(np.asarray(c)) for c in cores]


def to_tensorly(t: TT) -> tensorly.tt_tensor.TTTensor:
    """A TensorLy ``TTTensor`` with ``t``'s cores as factors, each of shape ``(r_{k-1}, n_k, r_k)``.

    The factors are arrays of TensorLy's active backend (``tl.tensor``; NumPy copies by default) of ``t``'s dtype.

    Args:
      t: an unbatched :class:`tnkit.TT`.

    Raises:
      ImportError: TensorLy is not installed (``pip install tensorly``).
      TypeError: ``t`` is not a ``tnkit.TT``.
      ValueError: ``t`` is batched.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import tensorly as tl
      >>> from tnkit import interop, tt
      >>> t = tt.random(jax.random.key(0), (2, 3, 4), 2)
      >>> f = interop.to_tensorly(t)
      >>> f.rank, f.shape
      ((1, 2, 2, 1), (2, 3, 4))
      >>> bool(jnp.allclose(tl.tt_to_tensor(f), tt.to_dense(t), atol=1e-6))
      True
    """
    _check_format(t, TT, "t")
    tl = _import_tensorly()
    return tl.tt_tensor.TTTensor(_to_tensorly_arrays(t.cores, tl))


def from_tensorly(tt_tensor) -> TT:
    """The :class:`tnkit.TT` of a TensorLy ``TTTensor`` or of a plain list of its factors.

    Args:
      tt_tensor: a ``tensorly.tt_tensor.TTTensor`` (for example from ``tensorly.decomposition.tensor_train``), or a
        list or tuple of 3-D factors of shape ``(r_{k-1}, n_k, r_k)`` with ``r_0 = r_d = 1``, from any TensorLy
        backend that ``np.asarray`` reads (NumPy, JAX, CPU PyTorch).

    Returns:
      A TT with those cores (copied), of the factors' dtype.

    Raises:
      ImportError: TensorLy is not installed (``pip install tensorly``).
      TypeError: ``tt_tensor`` is of another type (a TensorLy ``TTMatrix`` included: use
        :func:`from_tensorly_matrix`), or a factor is not a floating or complex array.
      ValueError: a factor is not 3-D, a boundary rank is not 1, or neighbouring ranks disagree (the message names
        the factor index).

    Example:
      >>> import numpy as np
      >>> from tnkit import interop
      >>> t = interop.from_tensorly([np.ones((1, 2, 3), np.float32), np.ones((3, 4, 1), np.float32)])
      >>> t.dims, t.ranks, t.dtype
      ((2, 4), (1, 3, 1), dtype('float32'))
    """
    tl = _import_tensorly()
    factors = _tensorly_factors(
        tt_tensor, tl.tt_tensor.TTTensor, tl.tt_matrix.TTMatrix, "tt_tensor", "from_tensorly_matrix", "3-D"
    )
    return TT(_chain_cores(factors, lambda k: f"tt_tensor[{k}]", "tt_tensor", "(r_prev, n, r_next)", 3))


def to_tensorly_matrix(a: TTMatrix) -> tensorly.tt_matrix.TTMatrix:
    """A TensorLy ``TTMatrix`` with ``a``'s cores as factors, each of shape ``(r_{k-1}, m_k, n_k, r_k)``.

    Both libraries flatten row and column multi-indices row-major, so ``tl.tt_matrix_to_matrix`` of the result is
    ``ttm.to_dense(a)``.

    Args:
      a: an unbatched :class:`tnkit.TTMatrix`.

    Raises:
      ImportError: TensorLy is not installed (``pip install tensorly``).
      TypeError: ``a`` is not a ``tnkit.TTMatrix``.
      ValueError: ``a`` is batched.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import tensorly as tl
      >>> from tnkit import interop, ttm
      >>> a = ttm.random(jax.random.key(0), (2, 3), (4, 5), 2)
      >>> m = interop.to_tensorly_matrix(a)
      >>> m.rank, m.shape
      ((1, 2, 1), (2, 3, 4, 5))
      >>> bool(jnp.allclose(tl.tt_matrix_to_matrix(m), ttm.to_dense(a), atol=1e-6))
      True
    """
    _check_format(a, TTMatrix, "a")
    tl = _import_tensorly()
    return tl.tt_matrix.TTMatrix(_to_tensorly_arrays(a.cores, tl))


def from_tensorly_matrix(m) -> TTMatrix:
    """The :class:`tnkit.TTMatrix` of a TensorLy ``TTMatrix`` or of a plain list of its 4-D factors.

    Args:
      m: a ``tensorly.tt_matrix.TTMatrix`` or a list or tuple of factors of shape ``(r_{k-1}, m_k, n_k, r_k)`` with
        ``r_0 = r_d = 1``.

    Returns:
      A TTMatrix with those cores (copied), of the factors' dtype.

    Raises:
      ImportError: TensorLy is not installed (``pip install tensorly``).
      TypeError: ``m`` is of another type (a TensorLy ``TTTensor`` included: use :func:`from_tensorly`), or a
        factor is not a floating or complex array.
      ValueError: a factor is not 4-D, a boundary rank is not 1, or neighbouring ranks disagree.

    Example:
      >>> import numpy as np
      >>> from tnkit import interop
      >>> a = interop.from_tensorly_matrix([np.ones((1, 2, 3, 2), np.float32), np.ones((2, 4, 5, 1), np.float32)])
      >>> a.row_dims, a.col_dims, a.shape
      ((2, 4), (3, 5), (8, 15))
    """
    tl = _import_tensorly()
    factors = _tensorly_factors(m, tl.tt_matrix.TTMatrix, tl.tt_tensor.TTTensor, "m", "from_tensorly", "4-D")
    return TTMatrix(_chain_cores(factors, lambda k: f"m[{k}]", "m", "(r_prev, m, n, r_next)", 4))
