"""Adapters for fine-tuning a frozen weight: the functional core shared by :mod:`tnkit.nn` and :mod:`tnkit.eqx`.

An adapter keeps a frozen kernel ``W_0`` in the layout of the dense layer it wraps -- ``(in_features, out_features)``
for a linear layer, ``(*kernel_size, in_features // groups, out_features)`` for a convolution (the ``nnx.Conv``
layout) -- and learns a structured update of the same shape; the adapted layer is the dense layer with the kernel

    ``W = W_0 + dW``,   ``dW = scale * U.reshape(kernel_shape)``,

where ``U`` is the dense weight of an ordinary layer spec (:class:`LowRankLinearSpec`, :class:`TuckerLinearSpec`,
:class:`TTLinearSpec`) over the *matrix view* of the kernel, of shape ``(prod(kernel_shape[:-1]),
kernel_shape[-1])``. For a linear layer the matrix view is the kernel; for a convolution it is the im2col view (a
convolution is ``patches @ W.reshape(-1, out)`` with each patch flattened in ``(*kernel_size, in)`` order). An
:class:`AdapterSpec` bundles the kernel shape, the update's spec and the scale; its constructors give the three
adapters of tnkit:

* :meth:`AdapterSpec.lora`: ``dW = (alpha / rank) A B`` ("LoRA", Hu et al., 2021).
* :meth:`AdapterSpec.tucker`: ``dW = alpha G x_1 U_1 ... x_N U_N``, a Tucker tensor over the kernel's own ``N`` modes
  ("FLoRA: Low-Rank Core Space for N-dimension", Si et al., 2024): a :class:`TuckerLinearSpec` with
  ``in_modes = kernel_shape[:-1]`` and ``out_modes = kernel_shape[-1:]``, so a conv kernel is never flattened.
* :meth:`AdapterSpec.tt`: ``dW = alpha TT(cores)``, a TT-matrix (MPO) over factorised in/out modes, zero at start;
  or :meth:`AdapterSpec.tt_from_pretrained`: the TT-matrix starts as the TT-SVD of the pretrained weight and the
  frozen kernel becomes the residual.

The update's spec is used as is (its contractions, cost model and any kernel registered for it with
:func:`tnkit.layers.register_implementation`); the scale is applied outside it. :meth:`AdapterSpec.init` starts the
update at exactly zero, with the gradient still reaching one factor (each constructor says which factor is zero).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tnkit.layers import _base
from tnkit.layers._base import Implementation
from tnkit.layers._factorized import LowRankLinearSpec, TuckerLinearSpec
from tnkit.layers._tt import TTLinearSpec

__all__ = ["AdapterSpec", "kernel_matrix_shape"]


def _check_alpha(alpha, name: str = "alpha") -> float:
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive real number, got {alpha!r}")
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{name} must be a positive finite number, got {alpha}")
    return alpha


def _check_kernel_shape(kernel_shape, name: str = "kernel_shape") -> tuple[int, ...]:
    try:
        shape = tuple(kernel_shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive ints, got {kernel_shape!r}") from None
    if len(shape) < 2:
        raise ValueError(f"{name} must have at least 2 modes (in, out), got {shape}")
    return tuple(_base.check_positive_int(n, f"{name}[{k}]") for k, n in enumerate(shape))


def kernel_matrix_shape(kernel_shape: Sequence[int]) -> tuple[int, int]:
    """The matrix view ``(prod(kernel_shape[:-1]), kernel_shape[-1])`` of a linear or convolution kernel.

    Example:
      >>> from tnkit.layers import kernel_matrix_shape
      >>> kernel_matrix_shape((3, 3, 16, 32)), kernel_matrix_shape((64, 10))
      ((144, 32), (64, 10))
    """
    shape = _check_kernel_shape(kernel_shape)
    return math.prod(shape[:-1]), shape[-1]


def _zero_update(update: _base.LinearSpec, key, dtype, kernel_init) -> _base.Params:
    """Parameters of ``update`` whose dense weight is exactly zero (see the :class:`AdapterSpec` constructors)."""
    if isinstance(update, LowRankLinearSpec):
        init_a = jax.nn.initializers.he_uniform() if kernel_init is None else kernel_init
        a = jnp.asarray(init_a(key, (update.in_features, update.rank), dtype), dtype)
        return {"a": a, "b": jnp.zeros((update.rank, update.out_features), dtype)}
    if isinstance(update, TuckerLinearSpec):
        shapes = update.param_shapes()
        core_shape = shapes.pop("core")
        std = {name: (2.0 * shape[1]) ** -0.5 for name, shape in shapes.items()}
        params = {"core": jnp.zeros(core_shape, dtype)}
        params.update(_base.gaussian_factors(key, shapes, std, dtype, kernel_init))
        return params
    if isinstance(update, TTLinearSpec):
        params = update.init(key, dtype, kernel_init)
        last = f"core_{update.num_modes - 1}"
        params[last] = jnp.zeros_like(params[last])
        return params
    raise TypeError(
        f"no zero initialisation for an update of type {type(update).__name__}; use LowRankLinearSpec, "
        f"TuckerLinearSpec or TTLinearSpec, or build the parameters yourself"
    )


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """Static description of an adapter: the kernel ``W_0 + scale * update.to_dense(params).reshape(kernel_shape)``.

    Frozen and hashable (jit-static), like the layer specs. Build it with :meth:`lora`, :meth:`tucker`, :meth:`tt` or
    :meth:`tt_from_pretrained`; the fields are public for other updates.

    Args:
      kernel_shape: the frozen kernel's shape, ``(in, out)`` or ``(*kernel_size, in // groups, out)``.
      update: a :class:`tnkit.layers.LinearSpec` from ``prod(kernel_shape[:-1])`` to ``kernel_shape[-1]`` features.
      scale: the positive factor applied to the update.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import layers
      >>> spec = layers.AdapterSpec.tucker((3, 3, 16, 32), ranks=(2, 2, 4, 4))
      >>> spec.update.in_modes, spec.update.out_modes, spec.count_params()
      ((3, 3, 16), (32,), 268)
      >>> params = spec.init(jax.random.key(0))
      >>> spec.delta(params).shape, bool(jnp.all(spec.delta(params) == 0))
      ((3, 3, 16, 32), True)
    """

    kernel_shape: tuple[int, ...]
    update: _base.LinearSpec
    scale: float = 1.0

    def __post_init__(self):
        shape = _check_kernel_shape(self.kernel_shape)
        object.__setattr__(self, "kernel_shape", shape)
        object.__setattr__(self, "scale", _check_alpha(self.scale, "scale"))
        if not isinstance(self.update, _base.LinearSpec):
            raise TypeError(f"update must be a tnkit.layers.LinearSpec, got {type(self.update).__name__}")
        expected = kernel_matrix_shape(shape)
        got = (self.update.in_features, self.update.out_features)
        if got != expected:
            raise ValueError(
                f"update must map {expected[0]} -> {expected[1]} features (the matrix view of a kernel of shape "
                f"{shape}), got {got[0]} -> {got[1]}"
            )

    # ---------------------------------------------------------------------------------------- constructors

    @classmethod
    def lora(cls, kernel_shape: Sequence[int], *, rank: int, alpha: float | None = None) -> AdapterSpec:
        """LoRA: ``dW = (alpha / rank) A B``, ``A`` of shape ``(in, rank)``, ``B`` of shape ``(rank, out)``.

        The update is a :class:`LowRankLinearSpec` (parameters ``a``, ``b``) of the matrix view; ``scale = alpha /
        rank`` with ``alpha = rank`` (scale 1) when ``None``, as LoRA's authors set ``alpha`` to the first rank they
        try (keeping ``alpha`` fixed while changing ``rank`` keeps the initial updates comparable).

        :meth:`init`: ``A`` He uniform (``Var A_ij = 2 / in``, as ``nnx.LoRA``; or ``kernel_init``) and ``B = 0``, so
        ``dW = 0``. The gradient still flows: ``dL/dB = scale A^T dL/dW`` is non-zero because ``A`` is random, so ``B``
        moves at the first step, and ``dL/dA = scale (dL/dW) B^T`` follows.

        Example:
          >>> from tnkit import layers
          >>> spec = layers.AdapterSpec.lora((64, 32), rank=4, alpha=8)
          >>> spec.scale, spec.count_params()
          (2.0, 384)
        """
        shape = _check_kernel_shape(kernel_shape)
        update = LowRankLinearSpec(*kernel_matrix_shape(shape), rank=rank)
        alpha = float(update.rank) if alpha is None else _check_alpha(alpha)
        return cls(shape, update, alpha / update.rank)

    @classmethod
    def tucker(cls, kernel_shape: Sequence[int], *, ranks, alpha: float = 1.0) -> AdapterSpec:
        """FLoRA: ``dW = alpha G x_1 U_1 x_2 U_2 ... x_N U_N`` over the ``N`` modes of the kernel.

        ``dW[i_1, ..., i_N] = alpha sum_j G[j_1, ..., j_N] U_1[i_1, j_1] ... U_N[i_N, j_N]``: a small core ``G`` of
        shape ``(r_1, ..., r_N)`` and one factor ``U_k`` of shape ``(n_k, r_k)`` per kernel mode -- each spatial mode,
        the input and the output channels of a convolution keep their own factor, nothing is flattened to a matrix.
        The update is a :class:`TuckerLinearSpec` with ``in_modes = kernel_shape[:-1]``, ``out_modes =
        kernel_shape[-1:]`` (row-major, so the tensor of the matrix view *is* the kernel; parameters ``core``,
        ``in_factor_k``, ``out_factor_0``). ``ranks``: an int (``min(ranks, n_k)`` per mode, lowered to what is
        attainable) or one per mode with ``1 <= r_k <= n_k`` (see :func:`tnkit.layers.tucker_ranks`).

        :meth:`init`: the core is zero and every factor ``N(0, 1 / (2 r_k))`` (the Kaiming normal with ``a = sqrt(3)``
        of FLoRA's reference code; or ``kernel_init``), so ``dW = 0``. The gradient still flows:
        ``dL/dG = alpha (dL/dW) x_1 U_1^T ... x_N U_N^T`` (each mode contracted with its random, full-rank factor) is
        non-zero, so the core moves at the first step, and the factors (whose gradients contain ``G``) follow.
        Zeroing the core rather than one factor keeps every mode's factor random: no mode is special.

        Example:
          >>> from tnkit import layers
          >>> spec = layers.AdapterSpec.tucker((3, 3, 16, 32), ranks=8)
          >>> spec.update.ranks
          (3, 3, 8, 8)
        """
        shape = _check_kernel_shape(kernel_shape)
        n_in, n_out = kernel_matrix_shape(shape)
        update = TuckerLinearSpec(n_in, n_out, ranks=ranks, in_modes=shape[:-1], out_modes=shape[-1:])
        return cls(shape, update, _check_alpha(alpha))

    @classmethod
    def tt(
        cls,
        kernel_shape: Sequence[int],
        *,
        ranks,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        alpha: float = 1.0,
    ) -> AdapterSpec:
        """MPO adapter: ``dW = alpha TT(cores)``, a :class:`TTLinearSpec` over factorised in/out modes of the matrix
        view (cores ``(r_{k-1}, m_k, n_k, r_k)``, ``m = out_modes``, ``n = in_modes``, chosen when ``None``).

        :meth:`init`: cores ``0 .. d-2`` are :class:`TTLinearSpec`'s variance-matched Gaussians (or ``kernel_init``)
        and the last core is zero, so ``dW = 0``. The gradient still flows: ``dL/dG_d`` is ``dL/dW`` contracted with
        the other (random, non-zero) cores, so the last core moves at the first step and the others follow.

        Example:
          >>> from tnkit import layers
          >>> spec = layers.AdapterSpec.tt((64, 32), ranks=4, in_modes=(8, 8), out_modes=(8, 4))
          >>> spec.update.ranks, spec.count_params()
          ((1, 4, 1), 384)
        """
        shape = _check_kernel_shape(kernel_shape)
        update = TTLinearSpec(*kernel_matrix_shape(shape), ranks=ranks, in_modes=in_modes, out_modes=out_modes)
        return cls(shape, update, _check_alpha(alpha))

    @classmethod
    def tt_from_pretrained(
        cls,
        kernel,
        *,
        max_rank: int | None = None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
    ) -> tuple[AdapterSpec, _base.Params, jax.Array, _base.ConversionInfo]:
        """Split a pretrained kernel ``W`` into a trainable TT-matrix ``T`` and a frozen residual ``R = W - T``.

        ``T`` is the TT-SVD of the matrix view of ``W`` (:meth:`TTLinearSpec.from_dense`: ranks capped by
        ``max_rank`` and/or chosen by ``rtol``, eagerly). An adapter with the frozen kernel ``R`` and the update ``T``
        (``scale = 1``) has the kernel ``R + T = W`` up to one rounding of the subtraction, so it starts equal to the
        base; training moves the dominant low-TT-rank part of ``W`` while what the TT-SVD discarded stays frozen.
        ``||R||_F <= rtol ||W||_F`` when ``rtol`` binds; with ``max_rank`` the TT-SVD is quasi-optimal,
        ``||R||_F^2 <= sum_k e_k^2`` with ``e_k`` the error of the best rank-``r_k`` approximation of the ``k``-th
        unfolding (with two modes, ``R`` is the optimal truncated-SVD error).

        Returns:
          ``(spec, params, residual, info)``: the :class:`AdapterSpec`, the cores of ``T``, ``R`` with the shape of
          ``kernel``, and the :class:`ConversionInfo` of ``T`` (``info.relative_error = ||R||_F / ||W||_F``).

        Example:
          >>> import jax, jax.numpy as jnp
          >>> from tnkit import layers
          >>> w = jax.random.normal(jax.random.key(0), (16, 9))
          >>> spec, params, residual, info = layers.AdapterSpec.tt_from_pretrained(
          ...     w, max_rank=2, in_modes=(4, 4), out_modes=(3, 3))
          >>> spec.update.ranks, residual.shape
          ((1, 2, 1), (16, 9))
          >>> bool(jnp.allclose(residual + spec.delta(params), w, atol=1e-5))
          True
        """
        kernel = jnp.asarray(kernel)
        shape = _check_kernel_shape(kernel.shape, "kernel.shape")
        matrix = kernel.reshape(kernel_matrix_shape(shape))
        update, params, info = TTLinearSpec.from_dense(
            matrix, max_rank=max_rank, rtol=rtol, in_modes=in_modes, out_modes=out_modes
        )
        residual = (matrix - update.to_dense(params)).reshape(shape)
        return cls(shape, update, 1.0), params, residual, info

    # ------------------------------------------------------------------------------------------------ maths

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of the trainable parameters (those of ``update``)."""
        return self.update.param_shapes()

    def count_params(self) -> int:
        """Trainable scalars (the update's parameters; the frozen kernel is not counted)."""
        return self.update.count_params()

    def init(self, key: jax.Array, dtype=jnp.float32, kernel_init=None) -> _base.Params:
        """Parameters whose update is exactly zero while the gradient reaches one factor (see the constructors)."""
        return _zero_update(self.update, key, dtype, kernel_init)

    def delta(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """The update ``dW = scale * update.to_dense(params).reshape(kernel_shape)``."""
        self.update.check_params(params)
        return self.scale * self.update.to_dense(params).reshape(self.kernel_shape)

    def apply_update(self, params, x, *, implementation: Implementation = Implementation.AUTO, precision=None):
        """``x @ dW`` over the matrix view: ``scale * layers.apply(update, params, x)``, ``x`` of shape
        ``(..., prod(kernel_shape[:-1]))``; ``implementation`` as for :func:`tnkit.layers.apply`."""
        y = _base.apply(self.update, params, x, implementation=implementation, precision=precision)
        return y if self.scale == 1.0 else self.scale * y

    def linear_costs(self, input_shape: Sequence[int]) -> dict[Implementation, int]:
        """Multiply-adds of the adapted linear layer ``x @ (W_0 + dW)`` on an input of ``input_shape``.

        * ``FACTORIZED``: ``x @ W_0`` plus the update's factorised product: ``B in out + update.factorized_cost(B)``.
        * ``DENSE``: rebuild ``dW``, add it to ``W_0``, one matmul: ``update.rebuild_cost() + in out + B in out``.

        ``B = prod(input_shape[:-1])``; the scale and the bias are not counted.

        Example:
          >>> from tnkit import layers
          >>> spec = layers.AdapterSpec.lora((64, 32), rank=4)
          >>> spec.linear_costs((10, 64))[layers.Implementation.FACTORIZED] == 10 * 64 * 32 + 10 * 4 * (64 + 32)
          True
        """
        batch = math.prod(tuple(input_shape)[:-1])
        dense = self.update.in_features * self.update.out_features
        return {
            Implementation.FACTORIZED: batch * dense + self.update.factorized_cost(batch),
            Implementation.DENSE: self.update.rebuild_cost() + dense + batch * dense,
        }
