"""Spreading per-block optimizer work over the devices of a ``jax.sharding.Mesh``.

Kronecker-factored optimizers keep their factors as stacks of equally-shaped blocks, ``(num_blocks, b, b)``, and
their expensive work (statistics ``G_(i) G_(i)^T``, inverse roots by ``eigh`` or Newton) is independent per block.
:func:`shard_blocks` runs such a per-block function with the stacked block axis split across the devices of a mesh
axis (``jax.shard_map``): each device computes only its own blocks, and scalar totals (such as counts of rejected
roots) are summed across devices.

The block axis is zero-padded to a multiple of the device count *inside the computation only* and the padding is
sliced off again, so the stored state keeps the shape it has on one device: a checkpoint written on 8 devices
restores on 1. The function receives a ``valid`` mask so that padded blocks never count in the totals.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jax.sharding import Mesh
  >>> from tnkit.optim._distributed import shard_blocks
  >>> mesh = Mesh(jax.devices()[:1], ("blocks",))
  >>> def squares(valid, x):                      # per-block work and a total over the real blocks
  ...     return (x * x,), (jnp.sum(valid).astype(jnp.int32),)
  >>> (y,), (n,) = shard_blocks(squares, (jnp.arange(5.0),), mesh=mesh, axes=("blocks",))
  >>> y.shape, int(n)
  ((5,), 5)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, PartitionSpec

__all__ = ["check_mesh", "shard_blocks"]


def check_mesh(mesh, mesh_axis) -> tuple[str, ...]:
    """Validate a ``mesh`` / ``mesh_axis`` option pair; returns the axis names the block axis is split over.

    ``mesh_axis`` is an axis name, a tuple of names (the block axis is split over their product), or ``None`` for
    every axis of the mesh. ``mesh=None`` (no distribution) requires ``mesh_axis=None`` and returns ``()``.
    """
    if mesh is None:
        if mesh_axis is not None:
            raise ValueError(f"mesh_axis needs a mesh, got mesh=None and mesh_axis={mesh_axis!r}")
        return ()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")
    if mesh_axis is None:
        return tuple(mesh.axis_names)
    axes = (mesh_axis,) if isinstance(mesh_axis, str) else mesh_axis
    if not isinstance(axes, tuple) or not axes or not all(isinstance(a, str) for a in axes):
        raise TypeError(f"mesh_axis must be an axis name, a non-empty tuple of names or None, got {mesh_axis!r}")
    missing = [a for a in axes if a not in mesh.axis_names]
    if missing or len(set(axes)) != len(axes):
        raise ValueError(f"mesh_axis must name distinct axes of the mesh {tuple(mesh.axis_names)}, got {mesh_axis!r}")
    return axes


def shard_blocks(fn, blocked, replicated=(), *, mesh: Mesh, axes: tuple[str, ...]):
    """``fn`` applied to the blocks of ``blocked``, with the block axis (axis 0) split over ``axes`` of ``mesh``.

    Args:
      fn: ``fn(valid, *blocked, *replicated) -> (per_block, totals)``: ``valid`` a bool ``(c,)`` mask of the local
        blocks that are real (not padding); ``per_block`` a tuple of arrays with leading axis ``c``; ``totals`` a
        tuple of arrays summed over the devices (``lax.psum``), e.g. counts that use ``valid``. It must treat each
        block independently.
      blocked: a tuple of arrays with the same leading size ``n`` (the stacked blocks).
      replicated: a tuple of pytrees (scalars, hyperparameters; ``None`` allowed) that every device sees whole.
      mesh: the device mesh.
      axes: the mesh axes to split the block axis over (from :func:`check_mesh`).

    Returns:
      ``(per_block, totals)``: the per-block outputs with leading size ``n`` (padding removed), sharded over
      ``axes`` before the slice, and the summed totals.
    """
    n = blocked[0].shape[0]
    devices = math.prod(mesh.shape[a] for a in axes)
    pad = -n % devices
    if pad:
        blocked = tuple(jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)) for x in blocked)
    valid = jnp.arange(n + pad) < n
    spec = PartitionSpec(axes)

    def local(valid, blocked, replicated):
        per_block, totals = fn(valid, *blocked, *replicated)
        return tuple(per_block), tuple(lax.psum(t, axes) for t in totals)

    per_block, totals = jax.shard_map(
        local, mesh=mesh, in_specs=(spec, spec, PartitionSpec()), out_specs=(spec, PartitionSpec())
    )(valid, tuple(blocked), tuple(replicated))
    if pad:
        per_block = tuple(x[:n] for x in per_block)
    return per_block, totals
