"""Tensorized layers for Equinox: twins of the :mod:`tnkit.nn` layers on the same functional core.

Same arguments as the nnx layers, with ``key`` instead of ``rngs``; the modules are ordinary Equinox pytrees
(spec, dtypes and implementation are static fields), so ``eqx.filter_jit``/``eqx.filter_grad`` and optax work as
usual. Inputs may carry any leading batch axes.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import eqx as teqx
  >>> layer = teqx.TTLinear(64, 64, ranks=4, key=jax.random.key(0))
  >>> layer(jnp.ones((2, 64))).shape
  (2, 64)
"""

from tnkit.eqx._base import StructuredLayer
from tnkit.eqx._factorized import CPLinear, LowRankLinear, TuckerLinear
from tnkit.eqx._tt import TTLinear
from tnkit.eqx._structured import BlockTTLinear, KronLinear, MonarchLinear, TRLinear
from tnkit.eqx._conv import CPConv, TTConv, TuckerConv
from tnkit.eqx._embedding import StructuredEmbedding, TTEmbedding
from tnkit.eqx._adapters import Adapter, LoRA, TTAdapter, TuckerAdapter, adapter_filter
from tnkit.layers import Implementation

__all__ = [
    "Implementation",
    "StructuredLayer",
    "TTLinear",
    "KronLinear", "BlockTTLinear", "MonarchLinear", "TRLinear",
    "CPConv", "TuckerConv", "TTConv",
    "StructuredEmbedding", "TTEmbedding",
    "LowRankLinear", "TuckerLinear", "CPLinear",
    "Adapter", "LoRA", "TuckerAdapter", "TTAdapter", "adapter_filter",
]
