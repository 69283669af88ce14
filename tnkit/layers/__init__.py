"""The functional core of tnkit's layers, shared by :mod:`tnkit.nn` (Flax nnx) and :mod:`tnkit.eqx` (Equinox).

A *spec* (a frozen, hashable dataclass such as :class:`TTLinearSpec`) describes a structured weight; its parameters
are a ``dict[str, jax.Array]``; :func:`apply` multiplies an input by the weight, choosing between the factorised
contraction, the rebuilt dense weight and any registered kernel (:class:`Implementation`). Use the specs directly for
pure-function models, or through the layer classes of :mod:`tnkit.nn` and :mod:`tnkit.eqx`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import layers
  >>> spec = layers.TTLinearSpec(64, 32, ranks=4)
  >>> params = spec.init(jax.random.key(0))
  >>> layers.apply(spec, params, jnp.ones((3, 64))).shape
  (3, 32)
"""

from tnkit.layers._base import (
    ConversionInfo,
    Implementation,
    LinearSpec,
    Spec,
    apply,
    default_num_modes,
    factorize_features,
    register_implementation,
    registered_implementations,
)
from tnkit.layers._factorized import CPLinearSpec, LowRankLinearSpec, TuckerLinearSpec, tucker_ranks
from tnkit.layers._tt import TTLinearSpec, tt_ranks
from tnkit.layers._conv import ConvSpec, CPConvSpec, TTConvSpec, TuckerConvSpec
from tnkit.layers._structured import BlockTTLinearSpec, KronLinearSpec, MonarchLinearSpec, TRLinearSpec
from tnkit.layers._embedding import TTEmbeddingSpec, vocab_modes_for
from tnkit.layers._adapters import AdapterSpec, kernel_matrix_shape

__all__ = [
    "Implementation",
    "register_implementation",
    "registered_implementations",
    "Spec",
    "LinearSpec",
    "ConversionInfo",
    "apply",
    "factorize_features",
    "default_num_modes",
    "tt_ranks",
    "TTLinearSpec",
    "ConvSpec", "CPConvSpec", "TuckerConvSpec", "TTConvSpec",
    "TTEmbeddingSpec", "vocab_modes_for",
    "LowRankLinearSpec", "TuckerLinearSpec", "CPLinearSpec", "tucker_ranks",
    "AdapterSpec", "kernel_matrix_shape",
    "KronLinearSpec", "BlockTTLinearSpec", "MonarchLinearSpec", "TRLinearSpec",
]
