"""Tensorized embedding layers for Flax nnx: ``nnx.Embed``'s interface, a table that is never materialised."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tnkit.layers import TTEmbeddingSpec
from tnkit.layers._base import ConversionInfo, promote

__all__ = ["StructuredEmbedding", "TTEmbedding"]


class StructuredEmbedding(nnx.Module):
    """Base class of the nnx embedding layers: ``table[ids]`` read from the factors by ``spec.lookup``.

    Not a :class:`tnkit.nn.StructuredLayer`: an embedding is not a linear map of its input, so it has no
    ``from_linear`` and no :class:`tnkit.layers.Implementation` choice (a lookup never rebuilds the table).

    Attributes:
      spec: the static embedding spec (for example :class:`tnkit.layers.TTEmbeddingSpec`).
      factors: ``nnx.Dict`` of ``nnx.Param`` named as in ``spec.param_shapes()``.
      dtype: computation dtype (``None``: the dtype of the parameters; for :meth:`attend`, promoted with the query).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
    """

    spec_type: ClassVar[type]

    def __init__(self, spec, *, dtype, param_dtype, precision, embedding_init, rngs: nnx.Rngs):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be a flax.nnx.Rngs, got {type(rngs).__name__}")
        self.spec = spec
        self.factors = nnx.Dict(
            {k: nnx.Param(v) for k, v in spec.init(rngs.params(), param_dtype, embedding_init).items()}
        )
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision

    @property
    def num_embeddings(self) -> int:
        return self.spec.num_embeddings

    @property
    def features(self) -> int:
        return self.spec.features

    def __call__(self, ids) -> jax.Array:
        """Rows of the table: integer ``ids`` of any shape -> ``ids.shape + (features,)``.

        Ids lie in ``[-num_embeddings, num_embeddings)`` (negative ids count from the end). Out-of-range ids raise
        a ``ValueError`` when their values are known; under ``jit`` they give NaN rows, as in ``nnx.Embed``."""
        (params,) = promote(self.dtype, self.params())
        return self.spec.lookup(params, ids, precision=self.precision)

    def attend(self, query) -> jax.Array:
        """``query @ table^T``: ``(..., features) -> (..., num_embeddings)`` (tied output logits)."""
        query, params = promote(self.dtype, jnp.asarray(query), self.params())
        return self.spec.attend(params, query, precision=self.precision)

    def params(self) -> dict[str, jax.Array]:
        """The factor arrays as a plain dict (the ``params`` of the spec's ``lookup``)."""
        return {k: v[...] for k, v in self.factors.items()}

    def table(self) -> jax.Array:
        """The dense ``(num_embeddings, features)`` table (materialised: for inspection and small tables only)."""
        return self.spec.to_dense(self.params())

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
        layer = cls(values.pop(fields[0]), values.pop(fields[1]), **values, rngs=nnx.Rngs(0), **kwargs)
        spec.check_params(params)
        for k, v in params.items():
            layer.factors[k] = nnx.Param(jnp.asarray(v, layer.param_dtype))
        return layer

    @classmethod
    def from_embed(cls, embed, **conversion_kwargs) -> tuple[StructuredEmbedding, ConversionInfo]:
        """Convert a trained dense embedding; returns ``(new_layer, info)`` with the achieved table error in ``info``.

        Args:
          embed: an ``nnx.Embed`` (its table, ``dtype`` and ``param_dtype`` are carried over) or a table array of
            shape ``(num_embeddings, features)``.
          **conversion_kwargs: passed to the spec's ``from_dense`` (``max_rank``/``rtol``, ``vocab_modes``,
            ``feature_modes``).
        """
        table, kwargs = _dense_table(embed)
        spec, params, info = cls.spec_type.from_dense(table, **conversion_kwargs)
        return cls._from_spec(spec, params, **kwargs), info


def _dense_table(embed) -> tuple[jax.Array, dict[str, Any]]:
    if isinstance(embed, nnx.Embed):
        table = embed.embedding[...]
        return table, {"dtype": embed.dtype, "param_dtype": embed.param_dtype}
    if isinstance(embed, (jax.Array, np.ndarray)):
        table = jnp.asarray(embed)
        return table, {"param_dtype": table.dtype}
    raise TypeError(f"embed must be a flax.nnx.Embed or a table array, got {type(embed).__name__}")


class TTEmbedding(StructuredEmbedding):
    """An embedding whose ``(num_embeddings, features)`` table is a TT-matrix; rows are read without forming it.

    The drop-in replacement of ``nnx.Embed`` of "Tensorized Embedding Layers" (Hrinchuk et al., 2020): the table
    has ``count_params()`` scalars instead of ``num_embeddings * features``; a lookup contracts one slice per core
    for each id (see :class:`tnkit.layers.TTEmbeddingSpec` for the layout, the padding of the vocabulary and the
    initialisation, whose variance ``1 / features`` is that of ``nnx.Embed``'s default).

    Args:
      num_embeddings: vocabulary size.
      features: embedding size.
      ranks: TT-ranks: an int, the ``d - 1`` inner ranks, or all ``d + 1``.
      vocab_modes: ``d`` modes with product ``>= num_embeddings`` (chosen automatically when ``None``).
      feature_modes: ``d`` modes with product ``== features`` (chosen automatically when ``None``).
      dtype: computation dtype (``None``: the parameters' dtype).
      param_dtype: storage dtype of the cores.
      precision: ``jax.lax.Precision`` of the contractions.
      embedding_init: ``None`` for the variance-matched Gaussian cores, or an initializer ``init(key, shape,
        dtype)`` applied to every core (then the table's variance is yours to choose).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> emb = nn.TTEmbedding(10_000, 64, ranks=8, rngs=nnx.Rngs(0))
      >>> emb.spec.vocab_modes, emb.spec.feature_modes
      ((10, 10, 10, 10), (4, 4, 2, 2))
      >>> emb(jnp.array([[1, 2, 3], [4, 5, 9_999]])).shape
      (2, 3, 64)
      >>> emb.attend(jnp.ones((2, 64))).shape
      (2, 10000)
      >>> emb.count_params() < 10_000 * 64
      True
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
        rngs: nnx.Rngs,
    ):
        spec = TTEmbeddingSpec(
            num_embeddings, features, ranks=ranks, vocab_modes=vocab_modes, feature_modes=feature_modes
        )
        super().__init__(
            spec, dtype=dtype, param_dtype=param_dtype, precision=precision, embedding_init=embedding_init, rngs=rngs
        )

    def to_ttmatrix(self):
        """The padded table as a :class:`tnkit.TTMatrix` (rows: ``vocab_modes``, columns: ``feature_modes``)."""
        return self.spec.to_ttmatrix(self.params())
