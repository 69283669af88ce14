"""Adapters for fine-tuning a frozen weight in Flax nnx: :class:`LoRA`, :class:`TuckerAdapter` (FLoRA) and
:class:`TTAdapter` (MPO).

An adapter wraps a dense layer (``nnx.Linear``, ``nnx.Conv``) or a raw kernel array and computes the wrapped layer
with the kernel ``W_0 + dW``: ``W_0`` (and the bias) frozen, ``dW`` a structured update whose factors are the only
trainable parameters (the maths is :class:`tnkit.layers.AdapterSpec`).

Which parameters train: the update's factors are :class:`AdapterParam` (a subclass of ``nnx.Param``); the frozen
kernel and bias are :class:`FrozenWeight` (an ``nnx.Variable`` that is *not* an ``nnx.Param``). So
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` updates the adapters and any other ``nnx.Param`` of the model (a new
head, say) but never a frozen weight, and ``wrt=AdapterParam`` updates the adapters only. ``nnx.grad`` (whose
default differentiates ``nnx.Param``) returns no gradient for the frozen weights; the forward also wraps them in
``jax.lax.stop_gradient``, so even a gradient with respect to every ``nnx.Variable`` is zero for them. The layer
passed in is copied, never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tnkit.layers import _base
from tnkit.layers._adapters import AdapterSpec
from tnkit.layers._base import ConversionInfo, Implementation

__all__ = ["AdapterParam", "FrozenWeight", "Adapter", "LoRA", "TuckerAdapter", "TTAdapter"]


class AdapterParam(nnx.Param):
    """The trainable parameters of a tnkit adapter (an ``nnx.Param``): filter with ``wrt=AdapterParam``."""


class FrozenWeight(nnx.Variable):
    """A frozen weight held by a tnkit adapter: an ``nnx.Variable`` but not an ``nnx.Param``, so optimizers and
    ``nnx.grad`` with the default ``nnx.Param`` filter leave it alone."""


def _check_float_kernel(kernel: jax.Array, name: str) -> jax.Array:
    if not (jnp.issubdtype(kernel.dtype, jnp.floating) or jnp.issubdtype(kernel.dtype, jnp.complexfloating)):
        raise TypeError(f"{name} must have a floating or complex dtype, got {kernel.dtype}")
    return kernel


def _kernel_of(base) -> jax.Array:
    if isinstance(base, (nnx.Linear, nnx.Conv)):
        return base.kernel[...]
    if isinstance(base, (jax.Array, np.ndarray)):
        kernel = _check_float_kernel(jnp.asarray(base), "base")
        if not 2 <= kernel.ndim <= 5:
            raise ValueError(
                f"base must be a linear kernel (in, out) or a 1-D to 3-D convolution kernel (*kernel_size, in, out), "
                f"i.e. 2 to 5 axes, got shape {kernel.shape}"
            )
        return kernel
    raise TypeError(f"base must be a flax.nnx.Linear, a flax.nnx.Conv or a kernel array, got {type(base).__name__}")


def _frozen_copy(base) -> tuple[nnx.Module, bool]:
    """A copy of ``base`` (a module, or a default module around a raw kernel) whose kernel and bias are frozen."""
    kernel = _kernel_of(base)
    if isinstance(base, (nnx.Linear, nnx.Conv)):
        module = nnx.clone(base)
    else:
        def given(key, shape, dtype):  # the kernel itself: no random initialisation to compile and discard
            return kernel

        common = {"use_bias": False, "param_dtype": kernel.dtype, "kernel_init": given, "rngs": nnx.Rngs(0)}
        if kernel.ndim == 2:
            module = nnx.Linear(*kernel.shape, **common)
        else:
            module = nnx.Conv(kernel.shape[-2], kernel.shape[-1], kernel.shape[:-2], **common)
    module.kernel = FrozenWeight(kernel)
    if module.bias is not None:
        module.bias = FrozenWeight(module.bias[...])
    return module, isinstance(module, nnx.Conv)


def _call_with(base: nnx.Module, kernel, bias, x) -> jax.Array:
    """``base(x)`` with its kernel and bias replaced (functionally: ``base`` itself is not modified)."""
    graphdef, state = nnx.split(base)
    state["kernel"] = FrozenWeight(kernel)
    if bias is not None:
        state["bias"] = FrozenWeight(bias)
    return nnx.merge(graphdef, state)(x)


class Adapter(nnx.Module):
    """Base class of the nnx adapters: the wrapped layer with kernel ``W_0 + dW``.

    Attributes:
      base: a copy of the wrapped layer whose kernel ``W_0`` and bias are :class:`FrozenWeight` (for a raw kernel
        array: an ``nnx.Linear`` or ``nnx.Conv`` without bias, stride 1 and ``'SAME'`` padding).
      spec: the :class:`tnkit.layers.AdapterSpec` (kernel shape, the update's spec over the matrix view, scale).
      factors: ``nnx.Dict`` of :class:`AdapterParam` named as in ``spec.param_shapes()``.
      is_conv: whether the wrapped layer is a convolution.
      implementation: the default :class:`tnkit.layers.Implementation`. For a linear layer ``FACTORIZED`` computes
        ``base(x) + x @ dW`` with the update's factorised product, ``DENSE`` the base with the kernel ``W_0 + dW``,
        ``AUTO`` the cheaper by :meth:`tnkit.layers.AdapterSpec.linear_costs` (and a registered implementation of the
        update's spec replaces its factorised product). A convolution always convolves once with ``W_0 + dW``
        (``AUTO`` or ``DENSE``).
    """

    def __init__(
        self,
        base,
        make_spec: Callable[[tuple[int, ...]], AdapterSpec],
        *,
        param_dtype,
        kernel_init,
        implementation: Implementation,
        rngs: nnx.Rngs,
    ):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be a flax.nnx.Rngs, got {type(rngs).__name__}")
        implementation = _base._check_implementation(implementation)
        self.base, self.is_conv = _frozen_copy(base)
        kernel_shape = tuple(self.base.kernel[...].shape)
        spec = make_spec(kernel_shape)
        if self.is_conv and implementation not in (Implementation.AUTO, Implementation.DENSE):
            raise ValueError(_CONV_IMPL_MESSAGE.format(implementation))
        dtype = self.base.kernel[...].dtype if param_dtype is None else param_dtype
        self.spec = spec
        self.factors = nnx.Dict({k: AdapterParam(v) for k, v in spec.init(rngs.params(), dtype, kernel_init).items()})
        self.implementation = implementation

    # ---------------------------------------------------------------------------------------------- weights

    def params(self) -> dict[str, jax.Array]:
        """The update's factors as a plain dict (the input of :func:`tnkit.layers.apply`)."""
        return {k: v[...] for k, v in self.factors.items()}

    def frozen_kernel(self) -> jax.Array:
        """The frozen kernel ``W_0`` in the wrapped layer's layout."""
        return self.base.kernel[...]

    def delta(self) -> jax.Array:
        """The update ``dW``, of the shape of the kernel."""
        return self.spec.delta(self.params())

    def weight(self) -> jax.Array:
        """The adapted kernel ``W_0 + dW`` (the layout of ``nnx.Linear`` / ``nnx.Conv``)."""
        return self.frozen_kernel() + self.delta()

    def merge(self) -> nnx.Module:
        """An ordinary ``nnx.Linear`` / ``nnx.Conv`` (all ``nnx.Param``) with the kernel ``W_0 + dW`` and the bias."""
        merged = nnx.clone(self.base)
        merged.kernel = nnx.Param(self.weight().astype(self.frozen_kernel().dtype))
        if merged.bias is not None:
            merged.bias = nnx.Param(merged.bias[...])
        return merged

    def count_params(self) -> int:
        """Trainable scalars: the update's factors (the frozen kernel and bias are not counted)."""
        return self.spec.count_params()

    # ----------------------------------------------------------------------------------------------- forward

    def _check_input(self, shape: tuple[int, ...]) -> None:
        if self.is_conv:
            num_spatial = len(self.base.kernel_size)
            channels = self.base.in_features
            if len(shape) < num_spatial + 1 or shape[-1] != channels:
                raise ValueError(
                    f"x must have shape (..., *spatial, in_features) with {num_spatial} spatial axes and "
                    f"in_features = {channels}, got {shape}"
                )
        elif len(shape) < 1 or shape[-1] != self.spec.update.in_features:
            n_in = self.spec.update.in_features
            raise ValueError(f"x must have shape (..., in_features) = (..., {n_in}), got {shape}")

    def _resolve(self, implementation, input_shape) -> Implementation:
        impl = _base._check_implementation(self.implementation if implementation is None else implementation)
        if self.is_conv:
            if impl not in (Implementation.AUTO, Implementation.DENSE):
                raise ValueError(_CONV_IMPL_MESSAGE.format(impl))
            return Implementation.DENSE
        if impl is Implementation.AUTO:
            costs = self.spec.linear_costs(input_shape)
            return min(costs, key=costs.get)
        return impl

    def __call__(self, x, *, implementation: Implementation | None = None) -> jax.Array:
        """The wrapped layer with kernel ``W_0 + dW``; ``implementation`` overrides the default for this call."""
        x = jnp.asarray(x)
        self._check_input(x.shape)
        impl = self._resolve(implementation, x.shape)
        kernel = jax.lax.stop_gradient(self.base.kernel[...])
        bias = None if self.base.bias is None else jax.lax.stop_gradient(self.base.bias[...])
        params = self.params()
        if impl is Implementation.DENSE:
            return _call_with(self.base, kernel + self.spec.delta(params), bias, x)
        y = _call_with(self.base, kernel, bias, x)
        xu, pu = _base.promote(self.base.dtype, x, params)
        return y + self.spec.apply_update(pu, xu, implementation=impl, precision=self.base.precision)

    def flops(self, input_shape: Sequence[int], implementation: Implementation | None = None) -> int:
        """Forward floating-point operations (2 per multiply-add; bias excluded) on an input of ``input_shape``.

        Linear: ``2 * spec.linear_costs(input_shape)[implementation]``. Convolution: rebuilding ``dW``,
        adding it to ``W_0`` and one convolution (``prod(output_shape[:-1]) * W_0.size`` multiply-adds).
        """
        input_shape = tuple(int(n) for n in input_shape)
        self._check_input(input_shape)
        impl = self._resolve(implementation, input_shape)
        kernel = self.base.kernel[...]
        if self.is_conv:
            out = jax.eval_shape(self.base, jax.ShapeDtypeStruct(input_shape, kernel.dtype))
            return 2 * (self.spec.update.rebuild_cost() + kernel.size + int(np.prod(out.shape[:-1])) * kernel.size)
        costs = self.spec.linear_costs(input_shape)
        if impl in costs:
            return 2 * costs[impl]
        batch = int(np.prod(input_shape[:-1]))
        return 2 * batch * kernel.size + self.spec.update.flops(input_shape, impl)


_CONV_IMPL_MESSAGE = (
    "a convolution adapter convolves once with W_0 + dW; implementation must be Implementation.AUTO or "
    "Implementation.DENSE, got {!r}"
)


class LoRA(Adapter):
    """LoRA: the wrapped layer with kernel ``W_0 + (alpha / rank) A B``, ``W_0`` frozen ("LoRA", Hu et al., 2021).

    ``y = base(x) + (alpha / rank) x A B`` for a linear layer. For a convolution the update is the matrix view
    ``(prod(kernel_size) * in, out)`` of the kernel (``dW = (A B).reshape(kernel.shape)``, the usual conv LoRA: a
    ``kernel_size`` convolution to ``rank`` channels followed by a 1x1 convolution). ``A`` is He uniform (or
    ``kernel_init``), ``B`` zero, so the adapted layer starts equal to the base; see
    :meth:`tnkit.layers.AdapterSpec.lora` for why the gradient still flows.

    Args:
      base: an ``nnx.Linear`` or ``nnx.Conv`` (copied; its kernel and bias are frozen), or a kernel array
        ``(in, out)`` / ``(*kernel_size, in, out)`` (a bias-free layer, stride 1, ``'SAME'`` padding).
      rank: the LoRA rank ``r``.
      alpha: the update is scaled by ``alpha / rank``; ``None``: ``alpha = rank`` (scale 1).
      param_dtype: storage dtype of ``A`` and ``B`` (default: the kernel's dtype).
      kernel_init: initializer of ``A`` (default He uniform).
      implementation: default :class:`tnkit.layers.Implementation` (see :class:`Adapter`).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> base = nnx.Linear(64, 32, rngs=nnx.Rngs(0))
      >>> model = nn.LoRA(base, rank=4, rngs=nnx.Rngs(1))
      >>> x = jnp.ones((8, 64))
      >>> bool(jnp.array_equal(model(x), base(x))), model.count_params()
      (True, 384)
      >>> optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nn.AdapterParam)  # trains A and B only
      >>> type(model.merge()).__name__
      'Linear'
    """

    def __init__(
        self,
        base,
        *,
        rank: int,
        alpha: float | None = None,
        param_dtype=None,
        kernel_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            base,
            lambda shape: AdapterSpec.lora(shape, rank=rank, alpha=alpha),
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            implementation=implementation,
            rngs=rngs,
        )


class TuckerAdapter(Adapter):
    """FLoRA: the wrapped layer with kernel ``W_0 + alpha G x_1 U_1 ... x_N U_N`` over the kernel's own modes.

    ("FLoRA: Low-Rank Core Space for N-dimension", Si et al., 2024.) For a convolution kernel
    ``(*kernel_size, in, out)`` every spatial mode, the input and the output channels get their own factor ``U_k``
    of shape ``(n_k, r_k)`` around a small core ``G`` (``N = 3`` to ``5`` modes); for a linear kernel ``N = 2``.
    The core starts at zero and the factors are random, so the adapted layer starts equal to the base and the core
    receives the first gradient (see :meth:`tnkit.layers.AdapterSpec.tucker`). The convolution is the wrapped one
    with the kernel ``W_0 + dW`` (``dW`` is rebuilt by :func:`tnkit.tucker.to_dense`; it is small).

    Args:
      base: an ``nnx.Linear`` or ``nnx.Conv`` (copied; kernel and bias frozen), or a kernel array.
      ranks: an int (``min(ranks, n_k)`` per mode) or one rank per kernel mode, ``1 <= r_k <= n_k``.
      alpha: the scale ``s`` of the update.
      param_dtype: storage dtype of the core and factors (default: the kernel's dtype).
      kernel_init: initializer of the factors (default ``N(0, 1 / (2 r_k))``); the core is always zero.
      implementation: default :class:`tnkit.layers.Implementation` (see :class:`Adapter`).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> conv = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=nnx.Rngs(0))
      >>> model = nn.TuckerAdapter(conv, ranks=(2, 2, 4, 4), rngs=nnx.Rngs(1))
      >>> model.spec.kernel_shape, model.factors["in_factor_0"].shape
      ((3, 3, 16, 32), (3, 2))
      >>> x = jnp.ones((2, 8, 8, 16))
      >>> bool(jnp.array_equal(model(x), conv(x))), model.count_params()
      (True, 268)
    """

    def __init__(
        self,
        base,
        *,
        ranks: int | Sequence[int],
        alpha: float = 1.0,
        param_dtype=None,
        kernel_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            base,
            lambda shape: AdapterSpec.tucker(shape, ranks=ranks, alpha=alpha),
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            implementation=implementation,
            rngs=rngs,
        )


class TTAdapter(Adapter):
    """An MPO adapter: the wrapped layer with kernel ``W_0 + alpha TT(cores)``, a TT-matrix over factorised modes.

    The update is a TT-matrix (:meth:`tnkit.layers.AdapterSpec.tt`) of the matrix view ``(prod(kernel.shape[:-1]),
    out)`` of the kernel, over ``in_modes`` x ``out_modes`` (chosen automatically when ``None``). Two ways to start:

    * ``TTAdapter(base, ranks=...)``: a zero update (last core zero, the others random), ``W_0`` the pretrained
      kernel.
    * :meth:`from_pretrained`: the TT-matrix starts as the TT-SVD ``T`` of the pretrained kernel ``W`` and the frozen
      kernel is the residual ``W_0 = W - T``, so the layer starts equal to the base (up to one rounding) and training
      moves the dominant low-TT-rank part of ``W``.

    Args:
      base: an ``nnx.Linear`` or ``nnx.Conv`` (copied; kernel and bias frozen), or a kernel array.
      ranks: TT-ranks: an int, the ``d - 1`` inner ranks, or all ``d + 1``.
      in_modes, out_modes: factorisations of the matrix view's rows and columns.
      alpha: the scale of the update.
      param_dtype: storage dtype of the cores (default: the kernel's dtype).
      kernel_init: initializer of the cores (default: :class:`tnkit.layers.TTLinearSpec`'s); the last is zeroed.
      implementation: default :class:`tnkit.layers.Implementation` (see :class:`Adapter`).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> base = nnx.Linear(64, 32, rngs=nnx.Rngs(0))
      >>> model = nn.TTAdapter(base, ranks=4, in_modes=(8, 8), out_modes=(8, 4), rngs=nnx.Rngs(1))
      >>> x = jnp.ones((8, 64))
      >>> bool(jnp.array_equal(model(x), base(x))), model.count_params()
      (True, 384)
    """

    def __init__(
        self,
        base,
        *,
        ranks: int | Sequence[int],
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        alpha: float = 1.0,
        param_dtype=None,
        kernel_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            base,
            lambda shape: AdapterSpec.tt(shape, ranks=ranks, in_modes=in_modes, out_modes=out_modes, alpha=alpha),
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            implementation=implementation,
            rngs=rngs,
        )

    @classmethod
    def from_pretrained(
        cls,
        base,
        *,
        max_rank: int | None = None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        param_dtype=None,
        implementation: Implementation = Implementation.AUTO,
    ) -> tuple[TTAdapter, ConversionInfo]:
        """An adapter whose trainable TT-matrix starts as the TT-SVD ``T`` of the pretrained kernel ``W``.

        The frozen kernel becomes the residual ``W_0 = W - T`` (:meth:`tnkit.layers.AdapterSpec.tt_from_pretrained`),
        so the adapted kernel ``W_0 + T`` equals ``W`` up to one rounding and the layer starts as the base; ``alpha`` is
        1.

        Args:
          base: as for the constructor.
          max_rank, rtol: TT-rank cap and/or relative error bound of ``T`` (at least one; ``rtol`` is eager).
          in_modes, out_modes: factorisations of the matrix view (chosen when ``None``).
          param_dtype: storage dtype of the cores (default: the kernel's dtype).
          implementation: default :class:`tnkit.layers.Implementation`.

        Returns:
          ``(adapter, info)``; ``info.relative_error = ||W - T||_F / ||W||_F`` is the share of ``W`` left frozen.

        Example:
          >>> import jax.numpy as jnp
          >>> from flax import nnx
          >>> from tnkit import nn
          >>> base = nnx.Linear(64, 32, rngs=nnx.Rngs(0))
          >>> model, info = nn.TTAdapter.from_pretrained(base, max_rank=4, in_modes=(8, 8), out_modes=(8, 4))
          >>> x = jnp.ones((8, 64))
          >>> bool(jnp.allclose(model(x), base(x), atol=1e-4)), 0 < info.relative_error < 1
          (True, True)
        """
        kernel = _kernel_of(base)
        spec, params, residual, info = AdapterSpec.tt_from_pretrained(
            kernel, max_rank=max_rank, rtol=rtol, in_modes=in_modes, out_modes=out_modes
        )
        adapter = cls(
            base,
            ranks=spec.update.ranks,
            in_modes=spec.update.in_modes,
            out_modes=spec.update.out_modes,
            param_dtype=param_dtype,
            implementation=implementation,
            rngs=nnx.Rngs(0),
        )
        dtype = kernel.dtype if param_dtype is None else param_dtype
        adapter.factors = nnx.Dict({k: AdapterParam(jnp.asarray(v, dtype)) for k, v in params.items()})
        adapter.base.kernel = FrozenWeight(residual.astype(kernel.dtype))
        return adapter, info
