"""Kronecker-sum (PHM), block tensor-train, Monarch and tensor-ring linear layers for Flax nnx."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from tnkit.formats import TR
from tnkit.kron import KronSum
from tnkit.layers import BlockTTLinearSpec, Implementation, KronLinearSpec, MonarchLinearSpec, TRLinearSpec
from tnkit.nn._base import StructuredLayer, bias_initializer

__all__ = ["KronLinear", "BlockTTLinear", "MonarchLinear", "TRLinear"]


class KronLinear(StructuredLayer):
    """A parameterised hypercomplex (PHM) linear layer: ``W = sum_{t=1}^{n} A_t ⊗ B_t`` (Zhang et al. 2021).

    ``y = x @ W + b`` with ``A_t`` of shape ``(n, n)`` and ``B_t`` of shape ``(in_features / n, out_features / n)``
    (factors ``"a"`` and ``"b"``, stacked over ``t``): about ``1/n`` of the dense parameters. See
    :class:`tnkit.layers.KronLinearSpec` for the layout, the costs and the variance-matched initialisation
    (``Var W_ij = 1 / in_features``, as ``nnx.Linear``'s default). ``from_linear(layer, num_terms=n)`` converts a
    dense layer to the nearest PHM weight (optimal, by :func:`tnkit.kron.from_dense_sum`).

    Args:
      in_features: input features, divisible by ``num_terms``.
      out_features: output features, divisible by ``num_terms``.
      num_terms: ``n``, the number of Kronecker products (and the size of each ``A_t``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian factors, or an initializer ``init(key, shape, dtype)``
        applied to both factors (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the factorised product for small
        batches, the rebuilt kernel beyond ``max(in_features, out_features) / n`` rows).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.KronLinear(64, 32, num_terms=4, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((8, 64))).shape
      (8, 32)
      >>> layer.count_params(), 4**3 + 64 * 32 // 4 + 32
      (608, 608)
    """

    spec_type = KronLinearSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        num_terms: int,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            KronLinearSpec(in_features, out_features, num_terms=num_terms),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_initializer(bias_init),
            implementation=implementation,
            rngs=rngs,
        )

    def to_kron(self) -> KronSum:
        """The kernel as a :class:`tnkit.kron.KronSum` ``sum_t a[t] ⊗ b[t]``."""
        return self.spec.to_kron(self.params())


class BlockTTLinear(StructuredLayer):
    """A linear layer with a block tensor-train (BTT) kernel of rank ``r`` ("Compute Better Spent", Qiu et al. 2024).

    ``y = x @ W + b`` with ``W[(i_1, i_2), (j_1, j_2)] = sum_s core_0[i_1, i_2, j_1, s] core_1[j_1, i_1, s, j_2]``:
    a block-diagonal factor, a permutation and another block-diagonal factor, or equivalently an ``m_1 x n_1`` grid
    of rank-``r`` blocks. Rank 1 is Monarch (:class:`MonarchLinear`, up to an output permutation). See
    :class:`tnkit.layers.BlockTTLinearSpec` for the exact layout, the costs and the variance-matched initialisation
    (``Var W_ij = 1 / in_features``). ``from_linear(layer, max_rank=... or rtol=...)`` converts a dense layer by a
    truncated SVD of every block (optimal).

    Args:
      in_features: input features, ``m_1 m_2``.
      out_features: output features, ``n_1 n_2``.
      ranks: the BTT rank ``r`` as an int, ``(r,)`` or ``(1, r, 1)``.
      in_modes, out_modes: ``(m_1, m_2)`` and ``(n_1, n_2)`` (chosen automatically when ``None``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian cores, or an initializer ``init(key, shape, dtype)``
        applied to both cores (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the two batched block
        products and the rebuilt kernel for the batch at hand).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.BlockTTLinear(64, 64, ranks=2, rngs=nnx.Rngs(0))
      >>> layer.spec.in_modes, layer.spec.out_modes
      ((8, 8), (8, 8))
      >>> layer(jnp.ones((8, 64))).shape
      (8, 64)
      >>> layer.count_params(), 2 * 8 * 8 * (8 + 8) + 64
      (2112, 2112)
    """

    spec_type = BlockTTLinearSpec

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
        rngs: nnx.Rngs,
    ):
        super().__init__(
            BlockTTLinearSpec(in_features, out_features, ranks=ranks, in_modes=in_modes, out_modes=out_modes),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_initializer(bias_init),
            implementation=implementation,
            rngs=rngs,
        )


class MonarchLinear(StructuredLayer):
    """A linear layer with a Monarch kernel ``M = P_out L P R`` (Dao et al. 2022), ``L``, ``R`` block-diagonal.

    ``y = x @ W + b`` with ``W = M^T``; ``R`` has ``num_blocks`` diagonal blocks ``r_blocks[k]`` of shape
    ``(num_blocks, in_features / num_blocks)`` and ``L`` has ``num_blocks`` blocks ``l_blocks[j]`` of shape
    ``(out_features / num_blocks, num_blocks)``; for ``in_features = out_features = num_blocks^2`` this is
    ``M = P L P^T R`` of the paper. See :class:`tnkit.layers.MonarchLinearSpec` for the exact permutations, the
    relation to :class:`BlockTTLinear` at rank 1, the costs and the variance-matched initialisation
    (``Var W_ij = 1 / in_features``). ``from_linear(layer)`` projects a dense layer onto Monarch matrices (the best
    rank-1 approximation of every block: optimal).

    Args:
      in_features: input features, divisible by ``num_blocks``.
      out_features: output features, divisible by ``num_blocks``.
      num_blocks: the number of diagonal blocks of ``L`` and ``R`` (``None``: the smallest common divisor ``b`` of
        the features with ``b^2 >= min(in_features, out_features)``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian blocks, or an initializer ``init(key, shape, dtype)``
        applied to both factors (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the two batched block
        products and the rebuilt kernel for the batch at hand).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.MonarchLinear(64, 64, rngs=nnx.Rngs(0))
      >>> layer.spec.num_blocks
      8
      >>> layer(jnp.ones((8, 64))).shape
      (8, 64)
      >>> layer.count_params(), 8 * (64 + 64) + 64
      (1088, 1088)
    """

    spec_type = MonarchLinearSpec

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        num_blocks: int | None = None,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=None,
        bias_init=None,
        implementation: Implementation = Implementation.AUTO,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            MonarchLinearSpec(in_features, out_features, num_blocks=num_blocks),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_initializer(bias_init),
            implementation=implementation,
            rngs=rngs,
        )


class TRLinear(StructuredLayer):
    """A linear layer whose kernel is a tensor-ring matrix: a TT-matrix with the first and last bonds joined.

    ``y = x @ W + b`` with ``W[(i_1..i_d), (j_1..j_d)] = trace(core_1[:, j_1, i_1, :] ... core_d[:, j_d, i_d, :])``,
    cores of shape ``(r_{k-1}, m_k, n_k, r_k)`` (``m = out_modes``, ``n = in_modes``) and ``r_d = r_0``. See
    :class:`tnkit.layers.TRLinearSpec` for the contraction, the costs and the variance-matched initialisation
    (``Var W_ij = 1 / in_features``). ``from_linear(layer, ranks=... or max_rank=... or rtol=...)`` converts a dense
    layer by TR-SVD (:func:`tnkit.tr.from_dense`).

    Args:
      in_features: input features.
      out_features: output features.
      ranks: an int (every bond), the ``d`` ranks ``(r_0, ..., r_{d-1})``, or all ``d + 1`` with ``r_d = r_0``.
      in_modes, out_modes: factorisations of the features (chosen automatically when ``None``).
      use_bias: add a bias (initialised by ``bias_init``, zeros by default).
      dtype: computation dtype (``None``: promote the input and the parameters).
      param_dtype: storage dtype of the parameters.
      precision: ``jax.lax.Precision`` of the contractions.
      kernel_init: ``None`` for the variance-matched Gaussian cores, or an initializer ``init(key, shape, dtype)``
        applied to every core (then the variance of ``W`` is yours to choose).
      bias_init: initializer of the bias.
      implementation: default :class:`tnkit.layers.Implementation` (``AUTO``: the cheaper of the ring sweep and the
        rebuilt kernel for the batch at hand).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from tnkit import nn
      >>> layer = nn.TRLinear(64, 32, ranks=3, rngs=nnx.Rngs(0))
      >>> layer.spec.in_modes, layer.spec.out_modes, layer.spec.ranks
      ((8, 8), (8, 4), (3, 3, 3))
      >>> layer(jnp.ones((8, 64))).shape
      (8, 32)
    """

    spec_type = TRLinearSpec

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
        rngs: nnx.Rngs,
    ):
        super().__init__(
            TRLinearSpec(in_features, out_features, ranks=ranks, in_modes=in_modes, out_modes=out_modes),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_initializer(bias_init),
            implementation=implementation,
            rngs=rngs,
        )

    def to_tensor_ring(self) -> TR:
        """``W^T`` as a :class:`tnkit.TR` of dims ``(m_1 n_1, ..., m_d n_d)``."""
        return self.spec.to_tensor_ring(self.params())
