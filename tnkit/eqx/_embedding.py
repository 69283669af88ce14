"""Tensorized embedding layers for Equinox: twins of :mod:`tnkit.nn`'s, on the same functional core."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from tnkit.layers import TTEmbeddingSpec
from tnkit.layers._base import ConversionInfo, promote

__all__ = ["StructuredEmbedding", "TTEmbedding"]


class StructuredEmbedding(eqx.Module):
    """Base class of the Equinox embedding layers: ``table[ids]`` read from the factors by ``spec.lookup``.

    The arguments and their meaning are those of the :mod:`tnkit.nn` twin, with ``key`` instead of ``rngs``. Ids of
    any shape are accepted (``equinox.nn.Embedding`` takes a scalar and needs ``jax.vmap``; that works too).

    Attributes:
      spec: the static embedding spec (for example :class:`tnkit.layers.TTEmbeddingSpec`).
      factors: ``dict[str, jax.Array]`` named as in ``spec.param_shapes()``.
      dtype: computation dtype (``None``: the dtype of the parameters; for :meth:`attend`, promoted with the query).
      precision: ``jax.lax.Precision`` of the contractions.
    """

    spec: Any = eqx.field(static=True)
    factors: dict[str, jax.Array]
    dtype: Any = eqx.field(static=True)
    precision: Any = eqx.field(static=True)

    spec_type: ClassVar[type]

    def __init__(self, spec, *, dtype, param_dtype, precision, embedding_init, key: jax.Array):
        self.spec = spec
        self.factors = spec.init(key, param_dtype, embedding_init)
        self.dtype = dtype
        self.precision = precision

    @property
    def num_embeddings(self) -> int:
        return self.spec.num_embeddings

    @property
    def features(self) -> int:
        return self.spec.features

    def __call__(self, ids, *, key=None) -> jax.Array:
        """Rows of the table: integer ``ids`` of any shape -> ``ids.shape + (features,)``; ``key`` is unused.

        Ids lie in ``[-num_embeddings, num_embeddings)``. Out-of-range ids raise a ``ValueError`` when their values
        are known; under ``jit``/``vmap`` they give NaN rows."""
        del key
        (params,) = promote(self.dtype, dict(self.factors))
        return self.spec.lookup(params, ids, precision=self.precision)

    def attend(self, query) -> jax.Array:
        """``query @ table^T``: ``(..., features) -> (..., num_embeddings)`` (tied output logits)."""
        query, params = promote(self.dtype, jnp.asarray(query), dict(self.factors))
        return self.spec.attend(params, query, precision=self.precision)

    def table(self) -> jax.Array:
        """The dense ``(num_embeddings, features)`` table (materialised: for inspection and small tables only)."""
        return self.spec.to_dense(self.factors)

    def count_params(self) -> int:
        """Trainable scalars."""
        return self.spec.count_params()

    def flops(self, ids_shape) -> int:
        """Floating-point operations of a lookup of ids of shape ``ids_shape`` (2 per multiply-add)."""
        return self.spec.flops(tuple(ids_shape))

    @classmethod
    def _from_spec(cls, spec, params, **kwargs):
        fields = [f.name for f in dataclasses.fields(spec)]
        values = {f: getattr(spec, f) for f in fields}
        layer = cls(values.pop(fields[0]), values.pop(fields[1]), **values, key=jax.random.key(0), **kwargs)
        spec.check_params(params)
        dtype = kwargs.get("param_dtype", jnp.float32)
        return eqx.tree_at(lambda m: m.factors, layer, {k: jnp.asarray(v, dtype) for k, v in params.items()})

    @classmethod
    def from_embed(cls, embed, **conversion_kwargs) -> tuple[StructuredEmbedding, ConversionInfo]:
        """Convert a trained dense embedding; returns ``(new_layer, info)`` with the achieved table error in ``info``.

        Args:
          embed: an ``equinox.nn.Embedding`` (its ``weight`` is the table) or a table array of shape
            ``(num_embeddings, features)``.
          **conversion_kwargs: passed to the spec's ``from_dense`` (``max_rank``/``rtol``, ``vocab_modes``,
            ``feature_modes``).
        """
        if isinstance(embed, eqx.nn.Embedding):
            table = embed.weight
        elif isinstance(embed, (jax.Array, np.ndarray)):
            table = jnp.asarray(embed)
        else:
            raise TypeError(f"embed must be an equinox.nn.Embedding or a table array, got {type(embed).__name__}")
        spec, params, info = cls.spec_type.from_dense(table, **conversion_kwargs)
        return cls._from_spec(spec, params, param_dtype=table.dtype), info


class TTEmbedding(StructuredEmbedding):
    """Equinox twin of :class:`tnkit.nn.TTEmbedding`: an embedding whose table is a TT-matrix.

    See :class:`tnkit.layers.TTEmbeddingSpec` for the layout, the vocabulary padding and the initialisation
    (``Var T_ij = 1 / features``, ``nnx.Embed``'s default; ``equinox.nn.Embedding`` draws ``N(0, 1)``).

    Args:
      num_embeddings: vocabulary size.
      features: embedding size.
      ranks: TT-ranks: an int, the ``d - 1`` inner ranks, or all ``d + 1``.
      vocab_modes: ``d`` modes with product ``>= num_embeddings`` (chosen automatically when ``None``).
      feature_modes: ``d`` modes with product ``== features`` (chosen automatically when ``None``).
      dtype: computation dtype (``None``: the parameters' dtype).
      param_dtype: storage dtype of the cores.
      precision: ``jax.lax.Precision`` of the contractions.
      embedding_init: ``None`` for the variance-matched Gaussian cores, or an initializer applied to every core.
      key: a ``jax.random`` key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> emb = teqx.TTEmbedding(10_000, 64, ranks=8, key=jax.random.key(0))
      >>> emb(jnp.array([[1, 2, 3], [4, 5, 9_999]])).shape
      (2, 3, 64)
      >>> emb.attend(jnp.ones((2, 64))).shape
      (2, 10000)
    """

    spec_type = TTEmbeddingSpec

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        ranks: int | Sequence[int],
        vocab_modes: Sequence[int] | None = None,
        feature_modes: Sequence[int] | None = None,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        embedding_init=None,
        key: jax.Array,
    ):
        spec = TTEmbeddingSpec(
            num_embeddings, features, ranks=ranks, vocab_modes=vocab_modes, feature_modes=feature_modes
        )
        super().__init__(
            spec, dtype=dtype, param_dtype=param_dtype, precision=precision, embedding_init=embedding_init, key=key
        )

    def to_ttmatrix(self):
        """The padded table as a :class:`tnkit.TTMatrix` (rows: ``vocab_modes``, columns: ``feature_modes``)."""
        return self.spec.to_ttmatrix(self.factors)
