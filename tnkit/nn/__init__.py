"""Tensorized layers for Flax nnx, built on the functional core :mod:`tnkit.layers`.

Every layer has the ``nnx.Linear``-style signature (``in_features, out_features, *, ranks, dtype, param_dtype,
precision, kernel_init, rngs``), an initialisation whose output variance matches the dense layer's default,
``count_params``, ``flops``, ``weight()`` (the dense weight it represents) and a ``from_linear`` conversion that
reports the error it achieved. :mod:`tnkit.eqx` has an Equinox twin of each.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from tnkit import nn
  >>> model = nnx.Sequential(nn.TTLinear(64, 64, ranks=4, rngs=nnx.Rngs(0)), nnx.relu)
  >>> model(jnp.ones((2, 64))).shape
  (2, 64)
"""

from tnkit.layers import Implementation
from tnkit.nn._base import StructuredLayer
from tnkit.nn._factorized import CPLinear, LowRankLinear, TuckerLinear
from tnkit.nn._tt import TTLinear
from tnkit.nn._structured import BlockTTLinear, KronLinear, MonarchLinear, TRLinear
from tnkit.nn._conv import CPConv, TTConv, TuckerConv
from tnkit.nn._embedding import StructuredEmbedding, TTEmbedding
from tnkit.nn._adapters import Adapter, AdapterParam, FrozenWeight, LoRA, TTAdapter, TuckerAdapter

__all__ = [
    "Implementation",
    "StructuredLayer",
    "TTLinear",
    "KronLinear", "BlockTTLinear", "MonarchLinear", "TRLinear",
    "CPConv", "TuckerConv", "TTConv",
    "StructuredEmbedding", "TTEmbedding",
    "LowRankLinear", "TuckerLinear", "CPLinear",
    "Adapter", "AdapterParam", "FrozenWeight", "LoRA", "TuckerAdapter", "TTAdapter",
]
