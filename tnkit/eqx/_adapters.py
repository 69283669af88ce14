"""Adapters for fine-tuning a frozen weight in Equinox: twins of :class:`tnkit.nn.LoRA`,
:class:`tnkit.nn.TuckerAdapter` and :class:`tnkit.nn.TTAdapter`.

An adapter wraps an ``equinox.nn.Linear`` / ``equinox.nn.Conv`` (or a raw kernel array) and computes it with the
kernel ``W_0 + dW``; the update ``dW`` and its maths are those of the nnx twins (:mod:`tnkit.layers`). Kernels and
updates are given in the tnkit / ``nnx`` layout (``(in, out)``, ``(*kernel_size, in, out)``); the wrapped Equinox
layer stores the transpose (``(out, in)``, ``(out, in, *kernel_size)``).

Which parameters train: the forward wraps the wrapped layer's weight and bias in ``jax.lax.stop_gradient``, so a
plain ``eqx.filter_grad`` gives them zero gradients and plain SGD leaves them unchanged. Optimizers that move
parameters without a gradient (weight decay, momentum built up elsewhere) must not see them: partition the model
with :func:`adapter_filter`::

    trainable, frozen = eqx.partition(model, tnkit.eqx.adapter_filter(model))
    opt_state = optimizer.init(trainable)
    grads = eqx.filter_grad(lambda t, f, x: loss(eqx.combine(t, f), x))(trainable, frozen, x)

which keeps exactly the adapters' ``factors`` (of every adapter anywhere in the model) trainable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from tnkit.layers import _base
from tnkit.layers._adapters import AdapterSpec
from tnkit.layers._base import ConversionInfo, Implementation

__all__ = ["Adapter", "LoRA", "TuckerAdapter", "TTAdapter", "adapter_filter"]

_CONV_IMPL_MESSAGE = (
    "a convolution adapter convolves once with W_0 + dW; implementation must be Implementation.AUTO or "
    "Implementation.DENSE, got {!r}"
)


def _to_eqx(kernel, is_conv: bool):
    """tnkit layout ``(in, out)`` / ``(*k, in, out)`` -> Equinox ``(out, in)`` / ``(out, in, *k)``."""
    if not is_conv:
        return kernel.T
    n = kernel.ndim
    return jnp.transpose(kernel, (n - 1, n - 2) + tuple(range(n - 2)))


def _from_eqx(weight, is_conv: bool):
    """Equinox ``(out, in)`` / ``(out, in, *k)`` -> tnkit layout ``(in, out)`` / ``(*k, in, out)``."""
    if not is_conv:
        return weight.T
    n = weight.ndim
    return jnp.transpose(weight, tuple(range(2, n)) + (1, 0))


def _kernel_of(base) -> tuple[jax.Array, bool]:
    """The kernel in the tnkit layout, and whether ``base`` is a convolution."""
    if isinstance(base, eqx.nn.Linear):
        if base.in_features == "scalar" or base.out_features == "scalar":
            raise ValueError("base must map vectors to vectors; 'scalar' features are not supported")
        return _from_eqx(base.weight, False), False
    if isinstance(base, eqx.nn.Conv):
        return _from_eqx(base.weight, True), True
    if isinstance(base, (jax.Array, np.ndarray)):
        kernel = jnp.asarray(base)
        if not (jnp.issubdtype(kernel.dtype, jnp.floating) or jnp.issubdtype(kernel.dtype, jnp.complexfloating)):
            raise TypeError(f"base must have a floating or complex dtype, got {kernel.dtype}")
        if not 2 <= kernel.ndim <= 5:
            raise ValueError(
                f"base must be a linear kernel (in, out) or a 1-D to 3-D convolution kernel (*kernel_size, in, out), "
                f"i.e. 2 to 5 axes, got shape {kernel.shape}"
            )
        return kernel, kernel.ndim > 2
    raise TypeError(
        f"base must be an equinox.nn.Linear, an equinox.nn.Conv or a kernel array, got {type(base).__name__}"
    )


def _module_of(base, kernel: jax.Array, is_conv: bool):
    """``base`` itself, or the default bias-free layer (stride 1, ``'SAME'`` padding) around a raw kernel."""
    if isinstance(base, (eqx.nn.Linear, eqx.nn.Conv)):
        return base
    # eval_shape: the layer's structure without running (and compiling) its random initialisation
    if is_conv:
        module = eqx.filter_eval_shape(
            eqx.nn.Conv, kernel.ndim - 2, kernel.shape[-2], kernel.shape[-1], kernel.shape[:-2], padding="SAME",
            use_bias=False, key=jax.random.key(0),
        )
    else:
        module = eqx.filter_eval_shape(eqx.nn.Linear, kernel.shape[0], kernel.shape[1], use_bias=False,
                                       key=jax.random.key(0))
    return eqx.tree_at(lambda m: m.weight, module, _to_eqx(kernel, is_conv))


def _with_weights(base, weight, bias):
    base = eqx.tree_at(lambda m: m.weight, base, weight)
    return base if bias is None else eqx.tree_at(lambda m: m.bias, base, bias)


def _batched(module, x, core_ndim: int):
    """``module`` (which takes one example of ``core_ndim`` axes) on ``x`` with any leading batch axes."""
    lead = x.shape[: x.ndim - core_ndim]
    if not lead:
        return module(x)
    y = jax.vmap(module)(x.reshape((-1,) + x.shape[x.ndim - core_ndim :]))
    return y.reshape(lead + y.shape[1:])


class Adapter(eqx.Module):
    """Base class of the Equinox adapters: the wrapped layer with kernel ``W_0 + dW`` (see :class:`tnkit.nn.Adapter`).

    Attributes:
      base: the wrapped ``equinox.nn.Linear`` / ``equinox.nn.Conv`` holding the frozen ``W_0`` (Equinox layout) and
        bias (for a raw kernel: a bias-free layer, stride 1, ``'SAME'`` padding).
      factors: ``dict[str, jax.Array]`` of the update, named as in ``spec.param_shapes()``: the trainable part.
      spec: the :class:`tnkit.layers.AdapterSpec` (static).
      is_conv: whether the wrapped layer is a convolution (static).
      implementation: the default :class:`tnkit.layers.Implementation` (static; see :class:`tnkit.nn.Adapter`).

    Inputs are those of the wrapped layer, ``(in,)`` or ``(in, *spatial)``, with any leading batch axes.
    """

    base: Any
    factors: dict[str, jax.Array]
    spec: AdapterSpec = eqx.field(static=True)
    is_conv: bool = eqx.field(static=True)
    implementation: Implementation = eqx.field(static=True)

    def _setup(self, base, spec_of, param_dtype, kernel_init, implementation, key) -> None:
        implementation = _base._check_implementation(implementation)
        kernel, is_conv = _kernel_of(base)
        spec = spec_of(kernel.shape)
        if is_conv and implementation not in (Implementation.AUTO, Implementation.DENSE):
            raise ValueError(_CONV_IMPL_MESSAGE.format(implementation))
        self.base = _module_of(base, kernel, is_conv)
        self.factors = spec.init(key, kernel.dtype if param_dtype is None else param_dtype, kernel_init)
        self.spec = spec
        self.is_conv = is_conv
        self.implementation = implementation

    # ---------------------------------------------------------------------------------------------- weights

    def frozen_kernel(self) -> jax.Array:
        """The frozen kernel ``W_0`` in the tnkit layout ``(in, out)`` / ``(*kernel_size, in, out)``."""
        return _from_eqx(self.base.weight, self.is_conv)

    def delta(self) -> jax.Array:
        """The update ``dW`` in the tnkit layout."""
        return self.spec.delta(self.factors)

    def weight(self) -> jax.Array:
        """The adapted kernel ``W_0 + dW`` in the tnkit layout (the wrapped layer stores its transpose)."""
        return self.frozen_kernel() + self.delta()

    def merge(self):
        """An ordinary ``equinox.nn.Linear`` / ``equinox.nn.Conv`` with the kernel ``W_0 + dW`` and the bias."""
        weight = _to_eqx(self.weight(), self.is_conv).astype(self.base.weight.dtype)
        return eqx.tree_at(lambda m: m.weight, self.base, weight)

    def count_params(self) -> int:
        """Trainable scalars: the update's factors (the frozen kernel and bias are not counted)."""
        return self.spec.count_params()

    # ----------------------------------------------------------------------------------------------- forward

    def _core_ndim(self) -> int:
        return self.base.num_spatial_dims + 1 if self.is_conv else 1

    def _check_input(self, shape: tuple[int, ...]) -> None:
        if self.is_conv:
            ns, channels = self.base.num_spatial_dims, self.base.in_channels
            if len(shape) < ns + 1 or shape[-(ns + 1)] != channels:
                raise ValueError(
                    f"x must have shape (..., in_channels, *spatial) with {ns} spatial axes and "
                    f"in_channels = {channels}, got {shape}"
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

    def __call__(self, x, *, implementation: Implementation | None = None, key=None) -> jax.Array:
        """The wrapped layer with kernel ``W_0 + dW``; ``key`` is unused (Equinox API)."""
        del key
        x = jnp.asarray(x)
        self._check_input(x.shape)
        impl = self._resolve(implementation, x.shape)
        weight = jax.lax.stop_gradient(self.base.weight)
        bias = None if self.base.bias is None else jax.lax.stop_gradient(self.base.bias)
        if impl is Implementation.DENSE:
            delta = self.spec.delta(self.factors)
            return _batched(_with_weights(self.base, weight + _to_eqx(delta, self.is_conv), bias), x, self._core_ndim())
        y = _batched(_with_weights(self.base, weight, bias), x, 1)
        xu, pu = _base.promote(None, x, dict(self.factors))
        return y + self.spec.apply_update(pu, xu, implementation=impl)

    def flops(self, input_shape: Sequence[int], implementation: Implementation | None = None) -> int:
        """Forward floating-point operations (2 per multiply-add; bias excluded), as :meth:`tnkit.nn.Adapter.flops`."""
        input_shape = tuple(int(n) for n in input_shape)
        self._check_input(input_shape)
        impl = self._resolve(implementation, input_shape)
        size = self.base.weight.size
        if self.is_conv:
            ns = self.base.num_spatial_dims
            one = jax.ShapeDtypeStruct(input_shape[-(ns + 1) :], self.base.weight.dtype)
            out = jax.eval_shape(self.base, one)
            positions = int(np.prod(input_shape[: -(ns + 1)])) * int(np.prod(out.shape[1:]))
            return 2 * (self.spec.update.rebuild_cost() + size + positions * size)
        costs = self.spec.linear_costs(input_shape)
        if impl in costs:
            return 2 * costs[impl]
        return 2 * int(np.prod(input_shape[:-1])) * size + self.spec.update.flops(input_shape, impl)


class LoRA(Adapter):
    """Equinox twin of :class:`tnkit.nn.LoRA`: the wrapped layer with kernel ``W_0 + (alpha / rank) A B``.

    Args:
      base: an ``equinox.nn.Linear`` or ``equinox.nn.Conv``, or a kernel array in the tnkit layout.
      rank, alpha, param_dtype, kernel_init, implementation: as for :class:`tnkit.nn.LoRA`.
      key: a ``jax.random`` key.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> base = eqx.nn.Linear(64, 32, key=jax.random.key(0))
      >>> model = teqx.LoRA(base, rank=4, key=jax.random.key(1))
      >>> x = jnp.ones((8, 64))
      >>> bool(jnp.array_equal(model(x), jax.vmap(base)(x))), model.count_params()
      (True, 384)
      >>> trainable, frozen = eqx.partition(model, teqx.adapter_filter(model))
      >>> sorted(trainable.factors), trainable.base.weight is None
      (['a', 'b'], True)
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
        key: jax.Array,
    ):
        self._setup(
            base,
            lambda shape: AdapterSpec.lora(shape, rank=rank, alpha=alpha),
            param_dtype,
            kernel_init,
            implementation,
            key,
        )


class TuckerAdapter(Adapter):
    """Equinox twin of :class:`tnkit.nn.TuckerAdapter` (FLoRA): kernel ``W_0 + alpha G x_1 U_1 ... x_N U_N``.

    The Tucker modes are those of the kernel in the tnkit layout ``(*kernel_size, in, out)``.

    Args:
      base: an ``equinox.nn.Linear`` or ``equinox.nn.Conv``, or a kernel array in the tnkit layout.
      ranks, alpha, param_dtype, kernel_init, implementation: as for :class:`tnkit.nn.TuckerAdapter`.
      key: a ``jax.random`` key.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> conv = eqx.nn.Conv2d(16, 32, kernel_size=3, padding=1, key=jax.random.key(0))
      >>> model = teqx.TuckerAdapter(conv, ranks=(2, 2, 4, 4), key=jax.random.key(1))
      >>> model.spec.kernel_shape, model.count_params()
      ((3, 3, 16, 32), 268)
      >>> x = jnp.ones((16, 8, 8))
      >>> bool(jnp.array_equal(model(x), conv(x)))
      True
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
        key: jax.Array,
    ):
        self._setup(
            base,
            lambda shape: AdapterSpec.tucker(shape, ranks=ranks, alpha=alpha),
            param_dtype,
            kernel_init,
            implementation,
            key,
        )


class TTAdapter(Adapter):
    """Equinox twin of :class:`tnkit.nn.TTAdapter`: kernel ``W_0 + alpha TT(cores)``, zero-initialised or (by
    :meth:`from_pretrained`) started from the TT-SVD of the pretrained weight with the residual frozen.

    Args:
      base: an ``equinox.nn.Linear`` or ``equinox.nn.Conv``, or a kernel array in the tnkit layout.
      ranks, in_modes, out_modes, alpha, param_dtype, kernel_init, implementation: as for :class:`tnkit.nn.TTAdapter`.
      key: a ``jax.random`` key.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> base = eqx.nn.Linear(64, 32, key=jax.random.key(0))
      >>> model, info = teqx.TTAdapter.from_pretrained(base, max_rank=4, in_modes=(8, 8), out_modes=(8, 4))
      >>> x = jnp.ones((8, 64))
      >>> bool(jnp.allclose(model(x), jax.vmap(base)(x), atol=1e-4)), model.spec.update.ranks
      (True, (1, 4, 1))
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
        key: jax.Array,
    ):
        self._setup(
            base,
            lambda shape: AdapterSpec.tt(shape, ranks=ranks, in_modes=in_modes, out_modes=out_modes, alpha=alpha),
            param_dtype,
            kernel_init,
            implementation,
            key,
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
        """As :meth:`tnkit.nn.TTAdapter.from_pretrained`: cores = TT-SVD ``T`` of ``W``, frozen kernel ``W - T``."""
        kernel, is_conv = _kernel_of(base)
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
            key=jax.random.key(0),
        )
        dtype = kernel.dtype if param_dtype is None else param_dtype
        adapter = eqx.tree_at(lambda a: a.factors, adapter, {k: jnp.asarray(v, dtype) for k, v in params.items()})
        residual = _to_eqx(residual, is_conv).astype(adapter.base.weight.dtype)
        return eqx.tree_at(lambda a: a.base.weight, adapter, residual), info


def adapter_filter(tree) -> Any:
    """A filter for ``eqx.partition`` that keeps the ``factors`` of every tnkit adapter in ``tree`` and nothing else.

    Returns a pytree of ``tree``'s structure with ``True`` at each adapter factor and ``False`` elsewhere (frozen
    kernels and biases, and every other leaf of the model). To train a new head as well, combine it with your own
    filter (for example with ``jax.tree.map(operator.or_, ...)``).

    Example:
      >>> import equinox as eqx, jax
      >>> from tnkit import eqx as teqx
      >>> model = [teqx.LoRA(eqx.nn.Linear(8, 4, key=jax.random.key(0)), rank=2, key=jax.random.key(1))]
      >>> trainable, frozen = eqx.partition(model, teqx.adapter_filter(model))
      >>> sorted(trainable[0].factors), frozen[0].factors
      (['a', 'b'], {'a': None, 'b': None})
    """

    def mark(node):
        if isinstance(node, Adapter):
            mask = jax.tree.map(lambda _: False, node)
            return eqx.tree_at(lambda a: a.factors, mask, {k: True for k in node.factors})
        return False

    return jax.tree.map(mark, tree, is_leaf=lambda n: isinstance(n, Adapter))
