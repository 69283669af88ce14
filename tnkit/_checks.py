"""Argument checks shared by the format modules (private)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def element_index(index, dims: Sequence[int], what: str) -> tuple[jax.Array, bool]:
    """Validate the ``index`` argument of a ``get`` function.

    Args:
      index: integer array of shape ``(batch, d)``, or ``(d,)`` for one entry.
      dims: the mode sizes ``(n_1, ..., n_d)`` of the object indexed.
      what: the format's name for messages (``"TT"``, ``"CP"``, ...).

    Returns:
      ``(index, single)``: the index as an array of shape ``(batch, d)`` and whether a single ``(d,)`` index was
      given. Concrete out-of-range entries raise ``IndexError``; traced ones follow JAX's gather (clamping).
    """
    d = len(dims)
    index = jnp.asarray(index)
    if not jnp.issubdtype(index.dtype, jnp.integer):
        raise TypeError(f"index must be an integer array, got dtype {index.dtype}")
    single = index.ndim == 1
    if single:
        index = index[None, :]
    if index.ndim != 2 or index.shape[1] != d:
        raise ValueError(f"index must have shape (batch, {d}) for a {what} with {d} modes, got {index.shape}")
    if not isinstance(index, jax.core.Tracer):
        idx = np.asarray(index)
        bad = (idx < 0) | (idx >= np.asarray(dims))
        if bad.any():
            b, k = np.argwhere(bad)[0]
            raise IndexError(f"index[{b}, {k}] = {idx[b, k]} is out of range for mode {k} of size {dims[k]}")
    return index, single
