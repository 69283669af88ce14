"""The shared base of tnkit's Equinox layers: a static spec, a dict of parameter arrays, an optional bias."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from tnkit.layers import _base
from tnkit.layers._base import ConversionInfo, Implementation

__all__ = ["StructuredLayer"]


class StructuredLayer(eqx.Module):
    """Base class of the Equinox layers: ``y = apply(spec, factors, x) + bias``.

    The arguments and their meaning are those of the :mod:`tnkit.nn` twin, with ``key`` instead of ``rngs``.
    Inputs may have any leading batch axes (no ``jax.vmap`` needed, though it works).

    Attributes:
      spec: the static :class:`tnkit.layers.Spec`.
      factors: ``dict[str, jax.Array]`` named as in ``spec.param_shapes()``.
      bias: array of shape ``(out_features,)`` (or ``(out_channels,)``), or ``None``.
      dtype: computation dtype (``None``: the promoted dtype of the input and the parameters).
      precision: ``jax.lax.Precision`` of the contractions.
      implementation: the default :class:`tnkit.layers.Implementation` (overridable per call).
    """

    spec: _base.Spec = eqx.field(static=True)
    factors: dict[str, jax.Array]
    bias: jax.Array | None
    dtype: Any = eqx.field(static=True)
    precision: Any = eqx.field(static=True)
    implementation: Implementation = eqx.field(static=True)

    spec_type: ClassVar[type]

    def __init__(
        self,
        spec: _base.Spec,
        *,
        use_bias: bool,
        dtype,
        param_dtype,
        precision,
        kernel_init,
        bias_init,
        implementation: Implementation,
        key: jax.Array,
    ):
        k_factors, k_bias = jax.random.split(key)
        self.spec = spec
        self.factors = spec.init(k_factors, param_dtype, kernel_init)
        size = self._bias_size()
        if not use_bias:
            self.bias = None
        elif bias_init is None:
            self.bias = jnp.zeros((size,), param_dtype)
        else:
            self.bias = jnp.asarray(bias_init(k_bias, (size,), param_dtype), param_dtype)
        self.dtype = dtype
        self.precision = precision
        self.implementation = _base._check_implementation(implementation)

    def _bias_size(self) -> int:
        return self.spec.out_features

    def __call__(self, x, *, implementation: Implementation | None = None, key=None) -> jax.Array:
        """Apply the layer; ``implementation`` overrides the layer's default; ``key`` is unused (Equinox API)."""
        del key
        impl = self.implementation if implementation is None else implementation
        x, params, bias = _base.promote(self.dtype, jnp.asarray(x), dict(self.factors), self.bias)
        # The bias goes to the dispatch point, so a chunked contraction adds it chunk by chunk.
        return _base.apply(self.spec, params, x, implementation=impl, precision=self.precision, bias=bias)

    def weight(self) -> jax.Array:
        """The dense weight the layer represents (same layout as the dense layer's kernel)."""
        return self.spec.to_dense(self.factors)

    def count_params(self) -> int:
        """Trainable scalars: the factors plus the bias."""
        return self.spec.count_params() + (0 if self.bias is None else int(np.prod(self.bias.shape)))

    def flops(self, input_shape, implementation: Implementation | None = None) -> int:
        """Forward floating-point operations for an input of ``input_shape`` (2 per multiply-add; bias excluded)."""
        impl = self.implementation if implementation is None else implementation
        return self.spec.flops(tuple(input_shape), impl)

    @classmethod
    def _from_spec(cls, spec, params, bias, **kwargs):
        args, spec_kwargs = cls._args_from_spec(spec)
        layer = cls(*args, **spec_kwargs, use_bias=bias is not None, key=jax.random.key(0), **kwargs)
        spec.check_params(params)
        dtype = kwargs.get("param_dtype", jnp.float32)
        factors = {k: jnp.asarray(v, dtype) for k, v in params.items()}
        layer = eqx.tree_at(lambda m: m.factors, layer, factors)
        if bias is not None:
            layer = eqx.tree_at(lambda m: m.bias, layer, jnp.asarray(bias, dtype))
        return layer

    @classmethod
    def _args_from_spec(cls, spec) -> tuple[tuple, dict[str, Any]]:
        fields = [f.name for f in dataclasses.fields(spec)]
        values = {f: getattr(spec, f) for f in fields}
        return (values.pop(fields[0]), values.pop(fields[1])), values

    @classmethod
    def from_linear(cls, layer, **conversion_kwargs) -> tuple[StructuredLayer, ConversionInfo]:
        """Convert a trained dense layer; returns ``(new_layer, info)`` with the achieved weight error in ``info``.

        Args:
          layer: an ``equinox.nn.Linear`` (weight ``(out, in)``; its bias is carried over), or a dense kernel
            array of shape ``(in_features, out_features)``.
          **conversion_kwargs: passed to the spec's ``from_dense`` (``max_rank``/``rtol``/modes, by format).
        """
        if isinstance(layer, eqx.nn.Linear):
            if layer.in_features == "scalar" or layer.out_features == "scalar":
                raise ValueError("layer must map vectors to vectors; 'scalar' features are not supported")
            kernel, bias = layer.weight.T, layer.bias
        elif isinstance(layer, (jax.Array, np.ndarray)):
            kernel, bias = jnp.asarray(layer), None
        else:
            raise TypeError(f"layer must be an equinox.nn.Linear or a kernel array, got {type(layer).__name__}")
        spec, params, info = cls.spec_type.from_dense(kernel, **conversion_kwargs)
        return cls._from_spec(spec, params, bias, param_dtype=kernel.dtype), info
