"""Factorised convolutions for Equinox: twins of :mod:`tnkit.nn`'s ``CPConv``, ``TuckerConv``, ``TTConv``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from tnkit.eqx._base import StructuredLayer
from tnkit.layers import CPConvSpec, Implementation, TTConvSpec, TuckerConvSpec
from tnkit.layers._base import ConversionInfo

__all__ = ["CPConv", "TuckerConv", "TTConv"]

_GEOMETRY = ("strides", "padding", "kernel_dilation")


def _conv_parts(conv):
    """``(kernel, bias, geometry)`` of an ``equinox.nn.Conv`` (weight ``(out, in, *kernel_size)``), refusing what a
    factorised kernel cannot copy."""
    if not isinstance(conv, eqx.nn.Conv):
        raise TypeError(f"conv must be an equinox.nn.Conv, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(
            f"conv.groups must be 1 (grouped and depthwise convolutions are not supported), got {conv.groups}"
        )
    if conv.padding_mode != "ZEROS":
        raise ValueError(f"conv.padding_mode must be 'ZEROS' (zero padding only), got {conv.padding_mode!r}")
    n = conv.num_spatial_dims
    kernel = jnp.moveaxis(conv.weight, (0, 1), (n + 1, n))  # (out, in, *k) -> (*k, in, out)
    bias = None if conv.bias is None else conv.bias.reshape(-1)
    geometry = {"strides": tuple(conv.stride), "padding": conv.padding, "kernel_dilation": tuple(conv.dilation)}
    return kernel, bias, geometry


class _ConvLayer(StructuredLayer):
    """Shared parts of the Equinox convolutions: constructor arguments from a spec, ``from_conv``."""

    @classmethod
    def _args_from_spec(cls, spec):
        """``(in_features, out_features, kernel_size)`` positional, the other spec fields by name."""
        values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        return (values.pop("in_features"), values.pop("out_features"), values.pop("kernel_size")), values

    @classmethod
    def from_conv(cls, conv, **conversion_kwargs) -> tuple[StructuredLayer, ConversionInfo]:
        """Convert a trained ``equinox.nn.Conv``; returns ``(new_layer, info)`` with the achieved kernel error.

        The weight ``(out, in, *kernel_size)`` is transposed to ``(*kernel_size, in, out)`` and decomposed by the
        spec's ``from_dense``; the bias, stride, padding and dilation are copied. The new layer takes channels-last
        input ``(batch..., *spatial, in)``, not ``equinox.nn.Conv``'s ``(in, *spatial)``. Raises ``ValueError`` for
        ``groups != 1`` and a ``padding_mode`` other than ``'ZEROS'``.

        Args:
          conv: an ``equinox.nn.Conv`` (or ``Conv1d``/``Conv2d``/``Conv3d``).
          **conversion_kwargs: passed to the spec's ``from_dense`` (the rank arguments of each format).
        """
        kernel, bias, geometry = _conv_parts(conv)
        clash = sorted(set(conversion_kwargs) & set(_GEOMETRY))
        if clash:
            raise TypeError(f"{clash} are copied from conv and cannot be passed to from_conv")
        spec, params, info = cls.spec_type.from_dense(kernel, **geometry, **conversion_kwargs)
        return cls._from_spec(spec, params, bias, param_dtype=kernel.dtype), info

    @classmethod
    def from_linear(cls, layer, **conversion_kwargs):
        """Not available for convolutions: use :meth:`from_conv`."""
        raise TypeError(
            f"{cls.__name__} replaces a convolution: use {cls.__name__}.from_conv(conv, ...), not from_linear"
        )


class CPConv(_ConvLayer):
    """Equinox twin of :class:`tnkit.nn.CPConv`: a convolution whose kernel has CP rank ``rank`` (Lebedev et al.,
    2015), for 1-D, 2-D, 3-D, ... inputs.

    Input ``(batch..., *spatial, in_features)`` (channels last, as ``nnx.Conv``;
    ``equinox.nn.Conv`` is channels first and unbatched); output
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
      key: a ``jax.random`` key.

    Example:
      >>> import jax.numpy as jnp
      >>> import jax
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.CPConv(16, 32, (3, 3), rank=8, key=jax.random.key(0))
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
        key: jax.Array,
    ):
        spec = CPConvSpec(
            in_features, out_features, kernel_size, rank=rank, strides=strides, padding=padding,
            kernel_dilation=kernel_dilation,
        )
        super().__init__(
            spec, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_init, implementation=implementation, key=key,
        )


class TuckerConv(_ConvLayer):
    """Equinox twin of :class:`tnkit.nn.TuckerConv`: a convolution with a Tucker-2 kernel (Kim et al., 2016),
    channel modes compressed, spatial window whole.

    Input ``(batch..., *spatial, in_features)`` (channels last, as ``nnx.Conv``;
    ``equinox.nn.Conv`` is channels first and unbatched). The factorised product is a 1x1
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
      key: a ``jax.random`` key.

    Example:
      >>> import jax.numpy as jnp
      >>> import jax
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.TuckerConv(16, 32, (3, 3), ranks=(4, 8), strides=2, key=jax.random.key(0))
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
        key: jax.Array,
    ):
        spec = TuckerConvSpec(
            in_features, out_features, kernel_size, ranks=ranks, strides=strides, padding=padding,
            kernel_dilation=kernel_dilation,
        )
        super().__init__(
            spec, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_init, implementation=implementation, key=key,
        )


class TTConv(_ConvLayer):
    """Equinox twin of :class:`tnkit.nn.TTConv`: a convolution with a TT kernel (Garipov et al., 2016), a spatial
    core followed by TT cores over the channel modes.

    Input ``(batch..., *spatial, in_features)`` (channels last, as ``nnx.Conv``;
    ``equinox.nn.Conv`` is channels first and unbatched). See
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
      key: a ``jax.random`` key.

    Example:
      >>> import jax.numpy as jnp
      >>> import jax
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.TTConv(16, 32, (3, 3), ranks=4, in_modes=(4, 4), out_modes=(8, 4), key=jax.random.key(0))
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
        key: jax.Array,
    ):
        spec = TTConvSpec(
            in_features, out_features, kernel_size, ranks=ranks, in_modes=in_modes, out_modes=out_modes,
            strides=strides, padding=padding, kernel_dilation=kernel_dilation,
        )
        super().__init__(
            spec, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_init, implementation=implementation, key=key,
        )
