"""Low-rank, Tucker and CP linear layers for Equinox."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tnkit.eqx._base import StructuredLayer
from tnkit.layers import (
    CPLinearSpec,
    Implementation,
    LowRankLinearSpec,
    TuckerLinearSpec,
)

__all__ = ["LowRankLinear", "TuckerLinear", "CPLinear"]


class LowRankLinear(StructuredLayer):
    """Equinox twin of :class:`tnkit.nn.LowRankLinear`: a linear layer with a rank-``rank`` kernel ``W = A B``.

    ``y = (x A) B + b`` with ``A`` of shape ``(in_features, rank)`` and ``B`` of shape ``(rank, out_features)``
    (factors ``"a"`` and ``"b"``); see :class:`tnkit.layers.LowRankLinearSpec` for the variance-matched
    initialisation (``Var W_ij = 1 / in_features``, as ``nnx.Linear``'s default). ``from_linear(layer,
    max_rank=... or rtol=...)`` converts a dense layer by truncated SVD.

    Args:
      in_features: input features.
      out_features: output features.
      rank: the rank of the kernel.
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to every factor (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the factorised product
        and the rebuilt kernel for the batch at hand).
      key: a ``jax.random`` key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.LowRankLinear(64, 32, rank=4, key=jax.random.key(0))
      >>> layer(jnp.ones((8, 64))).shape
      (8, 32)
      >>> layer.count_params()  # 64 * 4 + 4 * 32 + 32
      416
    """

    spec_type = LowRankLinearSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rank: int,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        key: jax.Array,
    ):
        spec = LowRankLinearSpec(in_features, out_features, rank=rank)
        super().__init__(
            spec,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            implementation=implementation,
            key=key,
        )


class TuckerLinear(StructuredLayer):
    """Equinox twin of :class:`tnkit.nn.TuckerLinear`: the kernel's tensor (``in_modes + out_modes``) is a Tucker.

    ``y = x @ W + b`` with ``W`` = core times one factor per mode; the product contracts ``x`` with the input
    factors, the core and the output factors without forming ``W``. See :class:`tnkit.layers.TuckerLinearSpec` for
    the parameterisation, the rank rules and the variance-matched initialisation (``Var W_ij = 1 / in_features``, as
    ``nnx.Linear``'s default). ``from_linear(layer, ranks=... and/or rtol=...)`` converts a dense layer by ST-HOSVD.

    Args:
      in_features: input features.
      out_features: output features.
      ranks: an int or one int per mode of ``in_modes + out_modes`` (see :func:`tnkit.layers.tucker_ranks`).
      in_modes, out_modes: factorisations of the features, of any lengths (chosen automatically when ``None``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to every factor (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the factorised product
        and the rebuilt kernel for the batch at hand).
      key: a ``jax.random`` key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.TuckerLinear(64, 32, ranks=4, in_modes=(8, 8), out_modes=(4, 8), key=jax.random.key(0))
      >>> layer.spec.ranks
      (4, 4, 4, 4)
      >>> layer(jnp.ones((8, 64))).shape
      (8, 32)
      >>> layer.count_params() < 64 * 32
      True
    """

    spec_type = TuckerLinearSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        ranks: int | Sequence[int],
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        key: jax.Array,
    ):
        spec = TuckerLinearSpec(in_features, out_features, ranks=ranks, in_modes=in_modes, out_modes=out_modes)
        super().__init__(
            spec,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            implementation=implementation,
            key=key,
        )

    def to_tucker(self):
        """The kernel's tensor (modes ``in_modes + out_modes``) as a :class:`tnkit.Tucker`."""
        return self.spec.to_tucker(self.factors)


class CPLinear(StructuredLayer):
    """Equinox twin of :class:`tnkit.nn.CPLinear`: the kernel's tensor (``in_modes + out_modes``) has CP rank ``rank``.

    ``y = (x K_in) K_out^T + b`` with ``K_in``, ``K_out`` the Khatri-Rao products of the input and output factors.
    See :class:`tnkit.layers.CPLinearSpec` for the parameterisation and the variance-matched initialisation
    (``Var W_ij = 1 / in_features``, as ``nnx.Linear``'s default). ``from_linear(layer, rank=..., key=...)``
    converts a dense layer by CP-ALS and reports the error it reached.

    Args:
      in_features: input features.
      out_features: output features.
      rank: the CP rank ``R``.
      in_modes, out_modes: factorisations of the features, of any lengths (chosen automatically when ``None``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to every factor (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the factorised product
        and the rebuilt kernel for the batch at hand).
      key: a ``jax.random`` key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.CPLinear(64, 32, rank=8, in_modes=(8, 8), out_modes=(4, 8), key=jax.random.key(0))
      >>> layer(jnp.ones((8, 64))).shape
      (8, 32)
      >>> layer.count_params()  # 8 * (8 + 8 + 4 + 8) + 32
      256
    """

    spec_type = CPLinearSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rank: int,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        key: jax.Array,
    ):
        spec = CPLinearSpec(in_features, out_features, rank=rank, in_modes=in_modes, out_modes=out_modes)
        super().__init__(
            spec,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            implementation=implementation,
            key=key,
        )

    def to_cp(self):
        """The kernel's tensor (modes ``in_modes + out_modes``) as a :class:`tnkit.CP` with unit weights."""
        return self.spec.to_cp(self.factors)
