"""Optimizers with tensor-network structure, as optax ``GradientTransformation`` s.

* :func:`inverse_pth_root` (with :class:`RootMethod`, :class:`RootInfo`): ``(M + ridge I)^{-1/p}`` of stacked
  symmetric PSD blocks, by eigendecomposition or coupled Newton, with a residual to test.
* :func:`scale_by_shampoo` and its alias :func:`shampoo` (with :class:`ShampooLayout`, :class:`Grafting`,
  :class:`ShampooState`): one Kronecker factor per mode of each gradient tensor; ``mesh=`` spreads the block
  statistics and roots over devices.
* :func:`scale_by_soap` / :func:`soap`: Adam in the eigenbasis of Shampoo's factors (SOAP).
* :func:`scale_by_shampoo_4bit` / :func:`shampoo_4bit`: Shampoo with eigenvectors stored block-wise in 4 bits
  (:func:`quantize`, :func:`dequantize`, :func:`bjorck_orthonormalize`).
* :func:`save_state` / :func:`load_state`: optimizer-state checkpoints that restore on any device count.
* :func:`conjugate_complex`: turns JAX's gradients of complex parameters into descent directions for optax (chain it
  first; JAX returns the conjugate of the ascent direction).

Example:
  >>> import jax.numpy as jnp
  >>> from tnkit import optim
  >>> tx = optim.shampoo(learning_rate=1e-2)
  >>> state = tx.init({"w": jnp.zeros((4, 3))})
  >>> type(state[0]).__name__
  'ShampooState'
"""

from tnkit.optim._checkpoint import load_state, save_state
from tnkit.optim._complex import conjugate_complex
from tnkit.optim._matrix_functions import RootInfo, RootMethod, inverse_pth_root
from tnkit.optim._quantize import LINEAR_SQUARE_CODEBOOK, Quantized, bjorck_orthonormalize, dequantize, quantize
from tnkit.optim._shampoo import Grafting, ShampooLayout, ShampooState, scale_by_shampoo, shampoo
from tnkit.optim._shampoo4bit import QuantizationOptions, Shampoo4bitState, scale_by_shampoo_4bit, shampoo_4bit
from tnkit.optim._soap import SOAPState, scale_by_soap, soap

__all__ = [
    "inverse_pth_root",
    "RootMethod",
    "RootInfo",
    "scale_by_shampoo",
    "shampoo",
    "ShampooState",
    "ShampooLayout",
    "Grafting",
    "save_state",
    "load_state",
    "scale_by_soap",
    "soap",
    "SOAPState",
    "scale_by_shampoo_4bit",
    "shampoo_4bit",
    "Shampoo4bitState",
    "QuantizationOptions",
    "quantize",
    "dequantize",
    "bjorck_orthonormalize",
    "Quantized",
    "LINEAR_SQUARE_CODEBOOK",
    "conjugate_complex",
]
