"""The shared base of tnkit's Flax nnx layers: a spec, its parameters as ``nnx.Param``, an optional bias."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tnkit.layers import _base
from tnkit.layers._base import ConversionInfo, Implementation

__all__ = ["StructuredLayer"]

_zeros = nnx.initializers.zeros_init()


class StructuredLayer(nnx.Module):
    """Base class of the nnx layers: ``y = apply(spec, factors, x) + bias``.

    Attributes:
      spec: the static :class:`tnkit.layers.Spec` (shapes, ranks, modes).
      factors: ``nnx.Dict`` of ``nnx.Param`` named as in ``spec.param_shapes()``.
      bias: ``nnx.Param`` of shape ``(out_features,)`` (or ``(out_channels,)``), or ``None``.
      dtype: computation dtype (``None``: the promoted dtype of the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      implementation: the default :class:`tnkit.layers.Implementation` (overridable per call).
    """

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
        rngs: nnx.Rngs,
    ):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be a flax.nnx.Rngs, got {type(rngs).__name__}")
        self.spec = spec
        self.factors = nnx.Dict(
            {k: nnx.Param(v) for k, v in spec.init(rngs.params(), param_dtype, kernel_init).items()}
        )
        self.bias = nnx.Param(bias_init(rngs.params(), (self._bias_size(),), param_dtype)) if use_bias else None
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.implementation = _base._check_implementation(implementation)

    def _bias_size(self) -> int:
        return self.spec.out_features

    def __call__(self, x, *, implementation: Implementation | None = None) -> jax.Array:
        """Apply the layer; ``implementation`` overrides the layer's default for this call."""
        impl = self.implementation if implementation is None else implementation
        params = {k: v[...] for k, v in self.factors.items()}
        bias = None if self.bias is None else self.bias[...]
        x, params, bias = _base.promote(self.dtype, jnp.asarray(x), params, bias)
        # The bias goes to the dispatch point, so a chunked contraction adds it chunk by chunk.
        return _base.apply(self.spec, params, x, implementation=impl, precision=self.precision, bias=bias)

    def params(self) -> dict[str, jax.Array]:
        """The factor arrays as a plain dict (the input of :func:`tnkit.layers.apply`)."""
        return {k: v[...] for k, v in self.factors.items()}

    def weight(self) -> jax.Array:
        """The dense weight the layer represents (same layout as the dense layer's kernel)."""
        return self.spec.to_dense(self.params())

    def count_params(self) -> int:
        """Trainable scalars: the factors plus the bias."""
        return self.spec.count_params() + (0 if self.bias is None else int(np.prod(self.bias.shape)))

    def flops(self, input_shape, implementation: Implementation | None = None) -> int:
        """Forward floating-point operations for an input of ``input_shape`` (2 per multiply-add; bias excluded)."""
        impl = self.implementation if implementation is None else implementation
        return self.spec.flops(tuple(input_shape), impl)

    # ------------------------------------------------------------------------------------------ conversion

    @classmethod
    def _from_spec(cls, spec, params, bias, **kwargs):
        """A layer of this class with the given spec, factor values and bias (``None`` for no bias)."""
        args, spec_kwargs = cls._args_from_spec(spec)
        layer = cls(*args, **spec_kwargs, use_bias=bias is not None, rngs=nnx.Rngs(0), **kwargs)
        spec.check_params(params)
        for k, v in params.items():
            layer.factors[k] = nnx.Param(jnp.asarray(v, layer.param_dtype))
        if bias is not None:
            layer.bias = nnx.Param(jnp.asarray(bias, layer.param_dtype))
        return layer

    @classmethod
    def _args_from_spec(cls, spec) -> tuple[tuple, dict[str, Any]]:
        """Constructor arguments reproducing ``spec``: the first two fields positional, the rest by name."""
        fields = [f.name for f in dataclasses.fields(spec)]
        values = {f: getattr(spec, f) for f in fields}
        return (values.pop(fields[0]), values.pop(fields[1])), values

    @classmethod
    def from_linear(cls, layer, **conversion_kwargs) -> tuple[StructuredLayer, ConversionInfo]:
        """Convert a trained dense layer; returns ``(new_layer, info)`` with the achieved weight error in ``info``.

        Args:
          layer: an ``nnx.Linear`` (its kernel, bias, dtypes and precision are carried over), or a dense kernel
            array of shape ``(in_features, out_features)``.
          **conversion_kwargs: passed to the spec's ``from_dense`` (``max_rank``/``rtol``/modes, by format).
        """
        kernel, bias, kwargs = _dense_parts(layer)
        spec, params, info = cls.spec_type.from_dense(kernel, **conversion_kwargs)
        return cls._from_spec(spec, params, bias, **kwargs), info


def _dense_parts(layer):
    if isinstance(layer, nnx.Linear):
        bias = None if layer.bias is None else layer.bias[...]
        kwargs = {"dtype": layer.dtype, "param_dtype": layer.param_dtype, "precision": layer.precision}
        return layer.kernel[...], bias, kwargs
    if isinstance(layer, (jax.Array, np.ndarray)):
        return jnp.asarray(layer), None, {"param_dtype": jnp.asarray(layer).dtype}
    raise TypeError(f"layer must be a flax.nnx.Linear or a kernel array, got {type(layer).__name__}")


def bias_initializer(bias_init: Callable | None):
    return _zeros if bias_init is None else bias_init
