"""Factorised convolutions for Flax nnx: ``CPConv``, ``TuckerConv``, ``TTConv`` (any number of spatial axes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax import lax

from tnkit.layers import CPConvSpec, Implementation, TTConvSpec, TuckerConvSpec
from tnkit.layers._base import ConversionInfo
from tnkit.nn._base import StructuredLayer, bias_initializer

__all__ = ["CPConv", "TuckerConv", "TTConv"]

_GEOMETRY = ("strides", "padding", "kernel_dilation")


def _broadcast(value, n: int):
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(value)


def _conv_parts(conv) -> tuple[Any, Any, dict, dict]:
    """``(kernel, bias, geometry, layer kwargs)`` of an ``nnx.Conv``, refusing what a factorised kernel cannot copy."""
    if not isinstance(conv, nnx.Conv):
        raise TypeError(f"conv must be a flax.nnx.Conv, got {type(conv).__name__}")
    n = len(conv.kernel_size)
    if conv.feature_group_count != 1:
        raise ValueError(
            f"conv.feature_group_count must be 1 (grouped and depthwise convolutions are not supported), got "
            f"{conv.feature_group_count}"
        )
    if any(v != 1 for v in _broadcast(conv.input_dilation, n)):
        raise ValueError(
            f"conv.input_dilation must be 1 (transposed convolutions are not supported), got {conv.input_dilation!r}"
        )
    if conv.mask is not None:
        raise ValueError("conv.mask must be None: a masked kernel is not supported")
    if conv.conv_general_dilated is not lax.conv_general_dilated:
        raise ValueError(
            "conv.conv_general_dilated must be jax.lax.conv_general_dilated; a custom one is not supported"
        )
    geometry = {
        "strides": _broadcast(conv.strides, n),
        "padding": conv.padding,
        "kernel_dilation": _broadcast(conv.kernel_dilation, n),
    }
    bias = None if conv.bias is None else conv.bias[...]
    kwargs = {"dtype": conv.dtype, "param_dtype": conv.param_dtype, "precision": conv.precision}
    return conv.kernel[...], bias, geometry, kwargs


class _ConvLayer(StructuredLayer):
    """Shared parts of the nnx convolutions: constructor arguments from a spec, ``from_conv``."""

    @classmethod
    def _args_from_spec(cls, spec):
        """``(in_features, out_features, kernel_size)`` positional, the other spec fields by name."""
        values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        return (values.pop("in_features"), values.pop("out_features"), values.pop("kernel_size")), values

    @classmethod
    def from_conv(cls, conv, **conversion_kwargs) -> tuple[StructuredLayer, ConversionInfo]:
        """Convert a trained ``nnx.Conv``; returns ``(new_layer, info)`` with the achieved kernel error in ``info``.

        The kernel ``(*kernel_size, in_features, out_features)`` is decomposed by the spec's ``from_dense``; the
        bias, strides, padding, kernel dilation, dtypes and precision are copied. Raises ``ValueError`` for what a
        factorised kernel cannot reproduce: ``feature_group_count != 1``, ``input_dilation != 1``, a ``mask``, a
        non-zero padding mode (``'CIRCULAR'``, ``'REFLECT'``, ``'CAUSAL'``) or a custom ``conv_general_dilated``.
        (``preferred_element_type`` is not carried over.)

        Args:
          conv: a ``flax.nnx.Conv``.
          **conversion_kwargs: passed to the spec's ``from_dense`` (the rank arguments of each format).
        """
        kernel, bias, geometry, kwargs = _conv_parts(conv)
        clash = sorted(set(conversion_kwargs) & set(_GEOMETRY))
        if clash:
            raise TypeError(f"{clash} are copied from conv and cannot be passed to from_conv")
        spec, params, info = cls.spec_type.from_dense(kernel, **geometry, **conversion_kwargs)
        return cls._from_spec(spec, params, bias, **kwargs), info

    @classmethod
    def from_linear(cls, layer, **conversion_kwargs):
        """Not available for convolutions: use :meth:`from_conv`."""
        raise TypeError(
            f"{cls.__name__} replaces a convolution: use {cls.__name__}.from_conv(conv, ...), not from_linear"
        )


class CPConv(_ConvLayer):
    """A convolution whose kernel has CP rank ``rank`` (Lebedev et al., 2015), for 1-D, 2-D, 3-D, ... inputs.

    Input ``(batch..., *spatial, in_features)`` (channels last, as ``nnx.Conv``); output
    ``(batch..., *out_spatial, out_features)``. The factorised product is a 1x1 convolution to ``rank`` channels,
    one depthwise convolution per spatial axis, and a 1x1 convolution to ``out_features``; see
    :class:`tnkit.layers.CPConvSpec` for the parameterisation and the variance-matched initialisation
    (``Var W = 1 / (prod(kernel_size) in_features)``, as ``nnx.Conv``'s default).

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: an int (a 1-D convolution, as in ``nnx.Conv``) or one size per spatial axis.
      rank: the CP rank ``R`` (an int).
      strides: an int or one stride per spatial axis.
      padding: ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'``, an int or one ``(low, high)`` pair (or int) per spatial
        axis; zero padding only.
      kernel_dilation: an int or one dilation per spatial axis.
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions and convolutions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to every factor (then the variance of the kernel is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the factorised chain
        and the rebuilt kernel with one convolution, for the input shape at hand).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.CPConv(16, 32, (3, 3), rank=8, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 10, 16))).shape
      (2, 10, 10, 32)
      >>> layer.count_params(), 3 * 3 * 16 * 32 + 32
      (464, 4640)
    """

    spec_type = CPConvSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        rank: int,
        strides: int | Sequence[int] = 1,
        padding="SAME",
        kernel_dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        spec = CPConvSpec(
            in_features, out_features, kernel_size, rank=rank, strides=strides, padding=padding,
            kernel_dilation=kernel_dilation,
        )
        super().__init__(
            spec, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_initializer(bias_init), implementation=implementation, rngs=rngs,
        )


class TuckerConv(_ConvLayer):
    """A convolution with a Tucker-2 kernel (Kim et al., 2016): channel modes compressed, spatial window whole.

    Input ``(batch..., *spatial, in_features)`` (channels last, as ``nnx.Conv``). The factorised product is a 1x1
    convolution to ``r_in`` channels, the full spatial convolution ``r_in -> r_out`` with the core, and a 1x1
    convolution to ``out_features``; see :class:`tnkit.layers.TuckerConvSpec` for the parameterisation and the
    variance-matched initialisation.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: an int (a 1-D convolution, as in ``nnx.Conv``) or one size per spatial axis.
      ranks: an int (both channel ranks) or ``(r_in, r_out)``.
      strides: an int or one stride per spatial axis.
      padding: ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'``, an int or one ``(low, high)`` pair (or int) per spatial
        axis; zero padding only.
      kernel_dilation: an int or one dilation per spatial axis.
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions and convolutions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to every factor (then the variance of the kernel is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the factorised chain
        and the rebuilt kernel with one convolution, for the input shape at hand).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.TuckerConv(16, 32, (3, 3), ranks=(4, 8), strides=2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 10, 16))).shape
      (2, 5, 5, 32)
      >>> layer.count_params()
      640
    """

    spec_type = TuckerConvSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        ranks: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding="SAME",
        kernel_dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        spec = TuckerConvSpec(
            in_features, out_features, kernel_size, ranks=ranks, strides=strides, padding=padding,
            kernel_dilation=kernel_dilation,
        )
        super().__init__(
            spec, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_initializer(bias_init), implementation=implementation, rngs=rngs,
        )


class TTConv(_ConvLayer):
    """A convolution with a TT kernel (Garipov et al., 2016): a spatial core, then TT cores over the channel modes.

    Input ``(batch..., *spatial, in_features)`` (channels last, as ``nnx.Conv``). See
    :class:`tnkit.layers.TTConvSpec` for the kernel formula, the two factorised orders (channel cores then a grouped
    spatial convolution, or a depthwise spatial convolution then the channel cores; the cheaper is chosen from the
    shapes), the mode choice and the variance-matched initialisation.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: an int (a 1-D convolution, as in ``nnx.Conv``) or one size per spatial axis.
      ranks: TT ranks of the chain (spatial core, channel cores): an int, the ``d`` inner ranks, or all ``d + 2``.
      in_modes, out_modes: factorisations of the channels (chosen automatically when ``None``).
      strides: an int or one stride per spatial axis.
      padding: ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'``, an int or one ``(low, high)`` pair (or int) per spatial
        axis; zero padding only.
      kernel_dilation: an int or one dilation per spatial axis.
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions and convolutions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to every factor (then the variance of the kernel is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the factorised chain
        and the rebuilt kernel with one convolution, for the input shape at hand).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.TTConv(16, 32, (3, 3), ranks=4, in_modes=(4, 4), out_modes=(8, 4), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 10, 16))).shape
      (2, 10, 10, 32)
      >>> layer.spec.ranks
      (1, 4, 4, 1)
    """

    spec_type = TTConvSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        ranks: int | Sequence[int],
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        strides: int | Sequence[int] = 1,
        padding="SAME",
        kernel_dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        spec = TTConvSpec(
            in_features, out_features, kernel_size, ranks=ranks, in_modes=in_modes, out_modes=out_modes,
            strides=strides, padding=padding, kernel_dilation=kernel_dilation,
        )
        super().__init__(
            spec, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_initializer(bias_init), implementation=implementation, rngs=rngs,
        )
