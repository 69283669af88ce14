"""TT-matrix layers for Equinox."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tnkit.eqx._base import StructuredLayer
from tnkit.layers import Implementation, TTLinearSpec

__all__ = ["TTLinear"]


class TTLinear(StructuredLayer):
    """Equinox twin of :class:`tnkit.nn.TTLinear`: a linear layer with a TT-matrix kernel.

    ``y = x @ W + b`` with ``W`` of TT-ranks ``ranks`` over ``in_modes`` x ``out_modes``; see
    :class:`tnkit.layers.TTLinearSpec` for the parameterisation, the mode choice and the variance-matched
    initialisation (``Var W_ij = 1 / in_features``, as ``nnx.Linear``'s default).

    Args:
      in_features: input features.
      out_features: output features.
      ranks: TT-ranks: an int, the ``d - 1`` inner ranks, or all ``d + 1``.
      in_modes, out_modes: factorisations of the features (chosen automatically when ``None``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian cores, or an initializer ``init(key, shape, dtype)``
        applied to every core (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the core sweep and the
        rebuilt kernel for the batch at hand).
      key: a ``jax.random`` key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import eqx as teqx
      >>> layer = teqx.TTLinear(64, 32, ranks=4, key=jax.random.key(0))
      >>> layer.spec.in_modes, layer.spec.out_modes
      ((8, 8), (8, 4))
      >>> layer(jnp.ones((8, 64))).shape
      (8, 32)
      >>> layer.count_params() < 64 * 32
      True
    """

    spec_type = TTLinearSpec

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
        spec = TTLinearSpec(in_features, out_features, ranks=ranks, in_modes=in_modes, out_modes=out_modes)
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

    def to_ttmatrix(self):
        """The kernel's transpose ``W^T`` as a :class:`tnkit.TTMatrix` (rows: ``out_modes``, columns: ``in_modes``)."""
        return self.spec.to_ttmatrix(self.factors)
