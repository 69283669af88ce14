"""Argument checks shared by the format modules (private)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import concrete_or_error


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


def check_max_rank(max_rank) -> None:
    if max_rank is not None and (not isinstance(max_rank, (int, np.integer)) or max_rank < 1):
        raise ValueError(f"max_rank must be a positive int or None, got {max_rank!r}")


def check_rtol(rtol) -> None:
    if rtol is None:
        return
    if not isinstance(rtol, (int, float, np.floating)) or not (0 <= rtol < math.inf):
        raise ValueError(f"rtol must be a non-negative finite float or None, got {rtol!r}")


def validate_rank_request(max_rank, rtol) -> None:
    check_max_rank(max_rank)
    check_rtol(rtol)


def require_concrete(x, fname: str) -> None:
    """Raise a clear error when ``x`` has no concrete value (under ``jit`` or ``vmap``); ``grad`` is fine."""
    if isinstance(x, jax.core.Tracer):
        try:
            concrete_or_error(None, x)
        except jax.errors.ConcretizationTypeError:
            raise ValueError(
                f"{fname}(..., rtol=...) chooses ranks from the data, so it cannot run under jax.jit or jax.vmap "
                "(which abstract the values). Call it outside those transformations (jax.grad is fine), or pass "
                "max_rank alone, which gives static shapes."
            ) from None


def concrete(x) -> np.ndarray:
    """A NumPy copy of a concrete value (also inside ``jax.grad``), for rank decisions."""
    return np.asarray(concrete_or_error(None, x) if isinstance(x, jax.core.Tracer) else x)


def check_dims(dims) -> tuple[int, ...]:
    try:
        dims = tuple(int(n) for n in dims)
    except TypeError:
        raise TypeError(f"dims must be a sequence of ints, got {dims!r}") from None
    if not dims or any(n < 1 for n in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims}")
    return dims


def scalar_factor(alpha, dtype) -> tuple[jax.Array, jnp.dtype]:
    """Validate the ``alpha`` of a ``scale`` function and choose the result's dtype.

    The result keeps ``dtype`` (the scaled object's), except that a complex ``alpha`` makes a real object complex
    at the same precision (``float32 -> complex64``, ``float64 -> complex128``); ``alpha`` is cast to that dtype.

    Returns:
      ``(alpha, dtype)``: ``alpha`` as a 0-d array of the result dtype, and that dtype.
    """
    alpha = jnp.asarray(alpha)
    if alpha.ndim != 0:
        raise ValueError(f"alpha must be a scalar, got shape {alpha.shape}")
    if jnp.issubdtype(alpha.dtype, jnp.complexfloating) and not jnp.issubdtype(dtype, jnp.complexfloating):
        dtype = jnp.result_type(dtype, jnp.complex64)
    return alpha.astype(dtype), jnp.dtype(dtype)
