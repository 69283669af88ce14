r"""Block-wise 4-bit quantisation with the linear-square mapping, and Björck orthonormalisation.

As in Wang et al. 2024, "4-bit Shampoo for Memory-Efficient Network Training": an array is cut (along its last
axis) into blocks of ``block_size`` entries; each block is divided by its largest magnitude (the block's scale,
kept in float32) and every entry is rounded to the nearest of the 16 values of the *linear-square* codebook

.. math::

   R(j) = \operatorname{sign}(x_j)\, x_j^2, \quad x_j = -1 + \frac{2j}{15} \quad (j = 0..15,\ j \ne 7), \qquad R(7) = 0,

which is dense near zero (where most entries of an orthogonal matrix lie) and coarse near ``±1``. Two 4-bit codes
are packed per ``uint8``, so an array of ``n`` float32 entries takes ``n / 2`` bytes of codes plus ``4 n /
block_size`` bytes of scales (``0.14 x`` at ``block_size = 64``).

A dequantised orthogonal matrix is no longer orthogonal; :func:`bjorck_orthonormalize` rectifies it with the
iteration ``U <- U (3 I - U^T U) / 2``, which converges quadratically to the orthogonal polar factor.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["LINEAR_SQUARE_CODEBOOK", "Quantized", "bjorck_orthonormalize", "dequantize", "quantize"]

_HIGHEST = lax.Precision.HIGHEST


def _linear_square_codebook() -> np.ndarray:
    x = -1.0 + 2.0 * np.arange(16) / 15.0
    code = np.sign(x) * x**2
    code[7] = 0.0
    return code.astype(np.float32)


#: The 16 values of the 4-bit linear-square mapping, increasing: ``R(j)`` above.
LINEAR_SQUARE_CODEBOOK = _linear_square_codebook()


class Quantized(NamedTuple):
    """A block-wise 4-bit quantised array (a pytree; the size of the last axis is not stored).

    Its last axis of ``n`` entries is split into ``num_blocks = ceil(n / block_size)`` blocks (the last zero-padded).
    """

    codes: jax.Array  # shape=(..., num_blocks, block_size // 2), dtype=uint8: two codebook indices per byte.
    scales: jax.Array  # shape=(..., num_blocks), dtype=float32: the largest |entry| of each block.


def _check_block_size(block_size) -> int:
    if not isinstance(block_size, (int, np.integer)) or isinstance(block_size, bool) or block_size < 2:
        raise ValueError(f"block_size must be an even int >= 2, got {block_size!r}")
    if block_size % 2:
        raise ValueError(f"block_size must be even (two 4-bit codes per byte), got {block_size}")
    return int(block_size)


def quantize(x, *, block_size: int = 64) -> Quantized:
    """Quantise the last axis of ``x`` block-wise to 4-bit linear-square codes.

    Args:
      x: a real floating array ``(..., n)``, ``n >= 1``.
      block_size: entries per block, an even int (64 in the paper).

    Returns:
      A :class:`Quantized` with codes ``(..., ceil(n / block_size), block_size // 2)`` uint8 and scales
      ``(..., ceil(n / block_size))`` float32. Round-to-nearest in the codebook; an all-zero block gets scale 0.

    Raises:
      TypeError: for a non-floating ``x``. ValueError: for a bad ``block_size`` or an empty last axis.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit.optim import quantize, dequantize
      >>> q = quantize(jnp.array([[1.0, -0.5, 0.0, 0.25]]), block_size=4)
      >>> q.codes.shape, q.codes.dtype.name, q.scales.shape
      ((1, 1, 2), 'uint8', (1, 1))
      >>> [round(float(v), 2) for v in dequantize(q, 4)[0]]
      [1.0, -0.54, 0.0, 0.22]
    """
    block_size = _check_block_size(block_size)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must have a real floating dtype, got {x.dtype}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last axis, got shape {tuple(x.shape)}")
    n = x.shape[-1]
    num_blocks = -(-n // block_size)
    x = x.astype(jnp.float32)
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, num_blocks * block_size - n)])
    x = x.reshape(x.shape[:-1] + (num_blocks, block_size))
    scales = jnp.max(jnp.abs(x), axis=-1)
    normalised = x / jnp.where(scales > 0, scales, 1)[..., None]
    book = jnp.asarray(LINEAR_SQUARE_CODEBOOK)
    # Nearest codebook entry: the codebook is increasing, so compare with the midpoints.
    midpoints = (book[1:] + book[:-1]) / 2
    idx = jnp.searchsorted(midpoints, normalised).astype(jnp.uint8)
    codes = idx[..., 0::2] | (idx[..., 1::2] << 4)
    return Quantized(codes=codes.astype(jnp.uint8), scales=scales)


def dequantize(q: Quantized, size: int, dtype=jnp.float32):
    """Invert :func:`quantize` up to the rounding: ``(..., size)`` from a :class:`Quantized`.

    Args:
      q: the quantised array.
      size: ``n``, the length of the original last axis (``<= num_blocks * block_size``).
      dtype: the output dtype.

    Returns:
      ``scale * R(code)`` for each entry, shape ``(..., size)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit.optim import quantize, dequantize
      >>> x = jnp.linspace(-1.0, 1.0, 100)
      >>> bool(jnp.max(jnp.abs(dequantize(quantize(x), 100) - x)) < 0.13)
      True
    """
    codes, scales = q
    if codes.dtype != jnp.uint8 or codes.ndim < 2 or scales.shape != codes.shape[:-1]:
        raise ValueError(
            f"q must be a Quantized with uint8 codes (..., num_blocks, block_size // 2) and scales (..., num_blocks), "
            f"got codes {codes.dtype}{tuple(codes.shape)} and scales {tuple(scales.shape)}"
        )
    block_size = 2 * codes.shape[-1]
    if not 0 < size <= codes.shape[-2] * block_size:
        raise ValueError(f"size must be in [1, {codes.shape[-2] * block_size}] for these codes, got {size}")
    idx = jnp.stack([codes & 0xF, codes >> 4], axis=-1).reshape(codes.shape[:-1] + (block_size,))
    values = jnp.asarray(LINEAR_SQUARE_CODEBOOK)[idx.astype(jnp.int32)] * scales[..., None]
    values = values.reshape(values.shape[:-2] + (-1,))[..., :size]
    return values.astype(dtype)


def bjorck_orthonormalize(u, num_iters: int = 1):
    """Björck's orthonormalisation ``U <- 1.5 U - 0.5 U U^T U`` repeated ``num_iters`` times, batched.

    Converges (quadratically) to the orthogonal polar factor of ``U`` when ``||U^T U - I||_2 < 1``; one iteration
    squares the orthogonality error ``E = U^T U - I`` up to a constant: ``E <- -(3/4) E^2 + E^3 / 4``.

    Args:
      u: stacked square matrices ``(..., n, n)``, near-orthogonal.
      num_iters: a non-negative int.

    Returns:
      The rectified matrices, same shape and dtype.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit.optim import bjorck_orthonormalize
      >>> q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (8, 8)))
      >>> u = bjorck_orthonormalize(q + 0.01 * jnp.ones((8, 8)), num_iters=2)
      >>> bool(jnp.linalg.norm(u.T @ u - jnp.eye(8)) < 1e-3)
      True
    """
    if not isinstance(num_iters, (int, np.integer)) or isinstance(num_iters, bool) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative int, got {num_iters!r}")
    for _ in range(int(num_iters)):
        gram = jnp.matmul(jnp.swapaxes(u, -1, -2), u, precision=_HIGHEST)
        u = 1.5 * u - 0.5 * jnp.matmul(u, gram, precision=_HIGHEST)
    return u
