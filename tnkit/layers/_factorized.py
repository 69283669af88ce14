"""Factorised linear weights: low rank (the baseline), Tucker and CP of the tensorised kernel.

The Tucker and CP specs view the ``(in_features, out_features)`` kernel as a tensor of shape
``in_modes + out_modes`` (row-major: ``W[i, j] = T[i_1, ..., i_p, j_1, ..., j_q]`` with ``i`` the row-major index of
``(i_1, ..., i_p)`` in ``in_modes`` and ``j`` that of ``(j_1, ..., j_q)`` in ``out_modes``) and store a
decomposition of that tensor.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from tnkit import cp as _cp
from tnkit import tt as _tt
from tnkit import tucker as _tucker
from tnkit.formats import CP, Tucker
from tnkit.layers import _base

__all__ = ["LowRankLinearSpec", "TuckerLinearSpec", "CPLinearSpec", "tucker_ranks"]


# --------------------------------------------------------------------------------------------------- helpers


def _check_kernel(kernel) -> jax.Array:
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be a 2-D (in_features, out_features) array, got shape {kernel.shape}")
    if not (jnp.issubdtype(kernel.dtype, jnp.floating) or jnp.issubdtype(kernel.dtype, jnp.complexfloating)):
        raise TypeError(f"kernel must have a floating or complex dtype, got {kernel.dtype}")
    return kernel


def _resolve_both_modes(n_in, n_out, in_modes, out_modes, num_modes=None):
    """``in_modes`` and ``out_modes`` validated, each chosen by ``factorize_features`` when ``None`` (with
    ``num_modes`` modes, default ``default_num_modes(in_features, out_features)``); the two may have different
    lengths."""
    d = _base.default_num_modes(n_in, n_out) if num_modes is None else num_modes
    return (
        _base.resolve_modes(n_in, in_modes, d, "in_modes", "in_features"),
        _base.resolve_modes(n_out, out_modes, d, "out_modes", "out_features"),
    )


# Default modes per side for Tucker: the core is the product of all per-mode ranks.
_TUCKER_MODES = 2


def _product_order(sizes: Sequence[tuple[int, int]]) -> list[int]:
    """The order of mode products ``a_k -> b_k`` (mode ``k`` of size ``a_k`` becomes ``b_k``) with the fewest
    multiply-adds: ascending ``1/a_k - 1/b_k``.

    A product on mode ``k`` costs ``(current size of the tensor) * b_k``. For two neighbouring steps ``k, l`` the
    rest of the sequence is the same either way, and ``k`` first is cheaper exactly when
    ``a_l b_k (a_k + b_l) < a_k b_l (a_l + b_k)``, i.e. ``1/a_k - 1/b_k < 1/a_l - 1/b_l``: a key, so sorting by it
    gives the optimum (exact rationals, ties by mode).
    """
    return sorted(range(len(sizes)), key=lambda k: (Fraction(1, sizes[k][0]) - Fraction(1, sizes[k][1]), k))


def _products_cost(rest: int, sizes: Sequence[tuple[int, int]], order: Sequence[int]) -> int:
    """Multiply-adds of the mode products ``a_k -> b_k`` in ``order`` on a tensor with ``rest`` other entries."""
    dims = [a for a, _ in sizes]
    cost = 0
    for k in order:
        cost += rest * math.prod(dims) * sizes[k][1]
        dims[k] = sizes[k][1]
    return cost


def _mode_products(y, mats, order, precision):
    """``y`` (batch first) times ``mats[k]`` on axis ``k + 1``: ``y[b, .., j, ..] = sum_i y[b, .., i, ..] M_k[i, j]``
    with ``M_k`` of shape ``(a_k, b_k)``, in ``order``. (:func:`tnkit.tucker.multi_mode_product` computes the same
    but always at ``Precision.HIGHEST``; a layer passes its own ``precision``.)"""
    nd = y.ndim
    for k in order:
        axes = list(range(nd))
        out = axes.copy()
        out[k + 1] = nd
        y = jnp.einsum(y, axes, mats[k], [k + 1, nd], out, precision=precision)
    return y


def _khatri_rao(mats):
    """Column-wise Khatri-Rao product of ``(n_k, R)`` matrices: ``K[(i_1..i_p), r] = prod_k M_k[i_k, r]``, of shape
    ``(n_1 ... n_p, R)`` (row-major in ``(i_1, ..., i_p)``); ``R * (n_1 n_2 + n_1 n_2 n_3 + ...)`` multiply-adds."""
    out = mats[0]
    rank = out.shape[1]
    for m in mats[1:]:
        out = (out[:, None, :] * m[None, :, :]).reshape(-1, rank)
    return out


def _khatri_rao_cost(dims: Sequence[int], rank: int) -> int:
    return rank * sum(math.prod(dims[: k + 1]) for k in range(1, len(dims)))


# ------------------------------------------------------------------------------------------------- low rank


@dataclasses.dataclass(frozen=True)
class LowRankLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel ``W = A B`` of rank at most ``rank``: the baseline factorisation.

    Parameters are ``a`` of shape ``(in_features, rank)`` and ``b`` of shape ``(rank, out_features)``; the layer
    computes ``y = (x A) B`` (``rank * (in + out)`` multiply-adds per row) or rebuilds ``W`` when the batch is large
    enough for that to be cheaper. Any positive ``rank`` is accepted; above ``min(in_features, out_features)`` it adds
    parameters but no expressiveness.

    Initialisation (``kernel_init=None``): ``A_ik ~ N(0, 1 / in_features)`` and ``B_kj ~ N(0, 1 / rank)``, each
    factor the LeCun-normal init of its own fan-in. ``W_ij = sum_k A_ik B_kj`` is a sum of ``rank`` uncorrelated
    zero-mean products, so ``Var W_ij = rank * (1 / in_features) * (1 / rank) = 1 / in_features``: the variance of
    ``nnx.Linear``'s default. Entries ``W_ij`` and ``W_i'j`` (``i != i'``) are uncorrelated (they share ``B`` but no
    entry of ``A``), so for a fixed input ``Var y_j = ||x||^2 / in_features`` as for the dense layer; the
    intermediate ``x A`` has that variance too. (Complex dtypes: circular Gaussians, ``E|.|^2`` in place of the
    variance.)

    Example:
      >>> from tnkit import layers
      >>> spec = layers.LowRankLinearSpec(512, 256, rank=16)
      >>> spec.param_shapes()
      {'a': (512, 16), 'b': (16, 256)}
      >>> spec.count_params(), 512 * 256
      (12288, 131072)
    """

    in_features: int
    out_features: int
    rank: int = 1

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("in_features", _base.check_positive_int(self.in_features, "in_features"))
        set_("out_features", _base.check_positive_int(self.out_features, "out_features"))
        set_("rank", _base.check_positive_int(self.rank, "rank"))

    def param_shapes(self):
        return {"a": (self.in_features, self.rank), "b": (self.rank, self.out_features)}

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = {"a": self.in_features**-0.5, "b": self.rank**-0.5}
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_dense(self, params):
        return jnp.matmul(params["a"], params["b"], precision=jax.lax.Precision.HIGHEST)

    def factorized_cost(self, batch):
        return batch * self.rank * (self.in_features + self.out_features)

    def rebuild_cost(self):
        return self.in_features * self.rank * self.out_features

    def apply_factorized(self, params, x, precision=None):
        return jnp.matmul(jnp.matmul(x, params["a"], precision=precision), params["b"], precision=precision)

    @classmethod
    def from_dense(
        cls, kernel, *, max_rank: int | None = None, rtol: float | None = None
    ) -> tuple[LowRankLinearSpec, _base.Params, _base.ConversionInfo]:
        """Truncated SVD of a dense ``(in_features, out_features)`` kernel (optimal by Eckart-Young).

        Computed by :func:`tnkit.tt.from_dense` of the matrix (a two-mode TT-SVD is a truncated SVD, with its
        fast Gram route where it is accurate). ``max_rank`` caps the rank; ``rtol`` keeps the smallest rank with
        ``||W - A B||_F <= rtol ||W||_F`` (eager: the rank comes from the data). At least one of them must be given.
        The singular values are split evenly, ``A = U S^(1/2)``, ``B = S^(1/2) V^H``, so the two factors have the
        same scale for training.

        Returns:
          ``(spec, params, info)`` with the achieved error in ``info``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (16, 9))
          >>> spec, params, info = layers.LowRankLinearSpec.from_dense(kernel, max_rank=4)
          >>> spec.rank, 0 < info.relative_error < 1
          (4, True)
        """
        kernel = _check_kernel(kernel)
        if max_rank is None and rtol is None:
            raise ValueError("from_dense needs max_rank or rtol (or both), got neither")
        if max_rank is not None:
            _base.check_positive_int(max_rank, "max_rank")
        t = _tt.from_dense(kernel, max_rank=max_rank, rtol=rtol)
        u = t.cores[0][0]  # (in, r), orthonormal columns
        b = t.cores[1][..., 0]  # (r, out) = U^H W
        scale = jnp.sqrt(jnp.linalg.norm(b, axis=1))  # = s^(1/2) for singular vectors
        scale = jnp.where(scale > 0, scale, 1.0).astype(kernel.dtype)
        params = {"a": u * scale[None, :], "b": b / scale[:, None]}
        spec = cls(kernel.shape[0], kernel.shape[1], rank=u.shape[1])
        info = _base.conversion_info(spec, params, kernel)
        return spec, params, info


# ---------------------------------------------------------------------------------------------------- Tucker


def tucker_ranks(ranks, in_modes: Sequence[int], out_modes: Sequence[int], name: str = "ranks") -> tuple[int, ...]:
    """Per-mode Tucker ranks for the modes ``in_modes + out_modes``, from an int or one int per mode.

    An int ``r`` gives ``r_k = min(r, n_k)`` for every mode, then each ``r_k`` is lowered to at most the product of
    the others (the largest multilinear ranks any tensor can have: more would only add parameters). A sequence must
    have one entry per mode with ``1 <= r_k <= n_k`` and ``r_k <= prod_{j != k} r_j``, else a ``ValueError``.

    Example:
      >>> from tnkit.layers import tucker_ranks
      >>> tucker_ranks(4, (8, 2), (16,)), tucker_ranks(8, (16,), (2,)), tucker_ranks((3, 2, 4), (8, 2), (16,))
      ((4, 2, 4), (2, 2), (3, 2, 4))
    """
    dims = tuple(in_modes) + tuple(out_modes)
    if isinstance(ranks, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a sequence of {len(dims)} ints, got {ranks!r}")
    if isinstance(ranks, (int, np.integer)):
        r = _base.check_positive_int(ranks, name)
        return _tucker._clip_feasible([min(r, n) for n in dims])
    try:
        ranks = tuple(ranks)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {len(dims)} ints, got {ranks!r}") from None
    if not all(isinstance(r, (int, np.integer)) and not isinstance(r, (bool, np.bool_)) for r in ranks):
        raise TypeError(f"{name} must hold ints, got {ranks!r}")
    ranks = tuple(int(r) for r in ranks)
    if len(ranks) != len(dims):
        raise ValueError(
            f"{name} must have one entry per mode of in_modes + out_modes = {dims} ({len(dims)}), got "
            f"{len(ranks)}: {ranks}"
        )
    p = len(in_modes)
    for k, (r, n) in enumerate(zip(ranks, dims)):
        where = f"in_modes[{k}]" if k < p else f"out_modes[{k - p}]"
        if r < 1 or r > n:
            raise ValueError(f"{name}[{k}] = {r} must be between 1 and the mode size {where} = {n}")
    _tucker._check_feasible(ranks, name)
    return ranks


@dataclasses.dataclass(frozen=True)
class TuckerLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel whose tensor ``T`` (modes ``in_modes + out_modes``) is a Tucker.

    ``T = G x_1 U_1 ... x_p U_p x_{p+1} V_1 ... x_{p+q} V_q``: parameters ``core`` ``G`` of shape
    ``(r_1, ..., r_p, s_1, ..., s_q)``, ``in_factor_k`` ``U_k`` of shape ``(n_k, r_k)`` and ``out_factor_l``
    ``V_l`` of shape ``(m_l, s_l)``, with ``ranks = (r_1, ..., r_p, s_1, ..., s_q)``.

    The product never forms ``W``: ``x`` of shape ``(batch, n_1, ..., n_p)`` is multiplied by each ``U_k`` on its
    mode (``z = x x_k U_k^T``, shape ``(batch, r_1, ..., r_p)``), then by the core as a ``(prod r, prod s)`` matrix,
    then expanded by each ``V_l``. The modes on each side are processed in the order with the fewest multiply-adds
    (see :meth:`factorized_cost`); ``AUTO`` rebuilds ``W`` instead when the batch makes that cheaper.

    Args:
      in_features: ``prod(in_modes)``.
      out_features: ``prod(out_modes)``.
      ranks: an int or one int per mode of ``in_modes + out_modes`` (see :func:`tnkit.layers.tucker_ranks`).
      in_modes, out_modes: the factorisations of the features, of any lengths; each split into two balanced
        factors by :func:`tnkit.layers.factorize_features` when ``None`` (the core has one axis per mode, so its
        size ``prod(ranks)`` grows exponentially with the number of modes: two per side keeps it small).

    Initialisation (``kernel_init=None``): ``U_k`` entries ``N(0, 1 / n_k)``, core entries ``N(0, 1 / (r_1 ...
    r_p))``, ``V_l`` entries ``N(0, 1 / s_l)``: every stage of the product is the LeCun-normal init of its own
    fan-in. An entry of ``W`` is ``sum_{c, c'} G[c, c'] prod_k U_k[i_k, c_k] prod_l V_l[j_l, c'_l]``, a sum of
    ``prod r * prod s`` uncorrelated zero-mean products, so ``Var W_ij = (prod r)(prod s) (1 / prod r)
    (1 / prod n)(prod_l 1 / s_l) = 1 / in_features``: the variance of ``nnx.Linear``'s default. ``W_ij`` and
    ``W_i'j`` (``i != i'``) are uncorrelated (they differ in some ``i_k``, hence in an independent zero-mean entry
    of ``U_k``), so for a fixed input ``Var y_j = ||x||^2 / in_features`` as for the dense layer, and each
    intermediate of the factorised product has that variance too.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.TuckerLinearSpec(64, 32, ranks=4, in_modes=(8, 8), out_modes=(4, 8))
      >>> spec.ranks, spec.param_shapes()["core"]
      ((4, 4, 4, 4), (4, 4, 4, 4))
      >>> spec.count_params(), 64 * 32
      (368, 2048)
    """

    in_features: int
    out_features: int
    ranks: tuple[int, ...] | int = 1
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None

    def __post_init__(self):
        n_in = _base.check_positive_int(self.in_features, "in_features")
        n_out = _base.check_positive_int(self.out_features, "out_features")
        in_modes, out_modes = _resolve_both_modes(n_in, n_out, self.in_modes, self.out_modes, _TUCKER_MODES)
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("in_features", n_in)
        set_("out_features", n_out)
        set_("in_modes", in_modes)
        set_("out_modes", out_modes)
        set_("ranks", tucker_ranks(self.ranks, in_modes, out_modes))

    @property
    def in_ranks(self) -> tuple[int, ...]:
        return self.ranks[: len(self.in_modes)]

    @property
    def out_ranks(self) -> tuple[int, ...]:
        return self.ranks[len(self.in_modes) :]

    def param_shapes(self):
        shapes = {"core": self.ranks}
        shapes.update({f"in_factor_{k}": (n, r) for k, (n, r) in enumerate(zip(self.in_modes, self.in_ranks))})
        shapes.update({f"out_factor_{k}": (m, s) for k, (m, s) in enumerate(zip(self.out_modes, self.out_ranks))})
        return shapes

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = {"core": math.prod(self.in_ranks) ** -0.5}
        std.update({f"in_factor_{k}": n**-0.5 for k, n in enumerate(self.in_modes)})
        std.update({f"out_factor_{k}": s**-0.5 for k, s in enumerate(self.out_ranks)})
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def _factors(self, params):
        return [params[f"in_factor_{k}"] for k in range(len(self.in_modes))] + [
            params[f"out_factor_{k}"] for k in range(len(self.out_modes))
        ]

    def to_tucker(self, params) -> Tucker:
        """The weight tensor (modes ``in_modes + out_modes``) as a :class:`tnkit.Tucker`."""
        return Tucker(params["core"], self._factors(params))

    def to_dense(self, params):
        return _tucker.to_dense(self.to_tucker(params)).reshape(self.in_features, self.out_features)

    def _orders(self):
        in_sizes = list(zip(self.in_modes, self.in_ranks))
        out_sizes = list(zip(self.out_ranks, self.out_modes))
        return in_sizes, _product_order(in_sizes), out_sizes, _product_order(out_sizes)

    def factorized_cost(self, batch):
        """Multiply-adds of the factorised product on ``batch`` rows.

        ``sum`` over the input modes in order of ``batch * (current size) * r_k``, plus ``batch * prod(r) * prod(s)``
        for the core, plus ``sum`` over the output modes of ``batch * (current size) * m_l``; the orders minimise each
        sum (see :func:`_product_order`).
        """
        in_sizes, in_order, out_sizes, out_order = self._orders()
        return (
            _products_cost(batch, in_sizes, in_order)
            + batch * math.prod(self.in_ranks) * math.prod(self.out_ranks)
            + _products_cost(batch, out_sizes, out_order)
        )

    def rebuild_cost(self):
        """Multiply-adds of :func:`tnkit.tucker.to_dense`: mode products ``r_k -> n_k`` on the core, smallest growth
        ``n_k / r_k`` first (that function's order)."""
        sizes = list(zip(self.ranks, self.in_modes + self.out_modes))
        order = sorted(range(len(sizes)), key=lambda k: sizes[k][1] / sizes[k][0])
        return _products_cost(1, sizes, order)

    def apply_factorized(self, params, x, precision=None):
        _, in_order, _, out_order = self._orders()
        batch = x.shape[0]
        p = len(self.in_modes)
        z = _mode_products(x.reshape((batch,) + self.in_modes), self._factors(params)[:p], in_order, precision)
        core = params["core"].reshape(math.prod(self.in_ranks), math.prod(self.out_ranks))
        t = jnp.matmul(z.reshape(batch, -1), core, precision=precision).reshape((batch,) + self.out_ranks)
        outs = [f.T for f in self._factors(params)[p:]]
        return _mode_products(t, outs, out_order, precision).reshape(batch, self.out_features)

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        ranks=None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
    ) -> tuple[TuckerLinearSpec, _base.Params, _base.ConversionInfo]:
        """Tucker decomposition (ST-HOSVD, :func:`tnkit.tucker.sthosvd`) of the kernel's tensor.

        ``ranks`` (an int or one per mode, as in the spec) are the exact ranks without ``rtol`` (jit-compatible) and
        upper bounds with it; ``rtol`` guarantees ``||W - W_tucker||_F <= rtol ||W||_F`` (eager). At least one must
        be given. With fixed ranks the squared error is at most the sum of the discarded squared higher-order
        singular values (the HOSVD bound). Factors are orthonormal, the scale sits in the core.

        Returns:
          ``(spec, params, info)`` with the achieved error in ``info``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (16, 9))
          >>> spec, params, info = layers.TuckerLinearSpec.from_dense(
          ...     kernel, rtol=1e-6, in_modes=(4, 4), out_modes=(3, 3))
          >>> spec.ranks, info.relative_error < 1e-5
          ((4, 4, 3, 3), True)
        """
        kernel = _check_kernel(kernel)
        if ranks is None and rtol is None:
            raise ValueError("from_dense needs ranks or rtol (or both), got neither")
        in_modes, out_modes = _resolve_both_modes(kernel.shape[0], kernel.shape[1], in_modes, out_modes, _TUCKER_MODES)
        caps = None if ranks is None else tucker_ranks(ranks, in_modes, out_modes)
        t = _tucker.sthosvd(kernel.reshape(in_modes + out_modes), ranks=caps, rtol=rtol)
        if _tucker._clip_feasible(t.ranks) != t.ranks:
            # a later truncation can leave an earlier rank above the product of the others: the tensor's true
            # multilinear ranks are then the clipped ones, and re-compressing to them is exact
            t = _tucker.round(t, ranks=t.ranks)
        spec = cls(kernel.shape[0], kernel.shape[1], ranks=t.ranks, in_modes=in_modes, out_modes=out_modes)
        params = {"core": t.core}
        p = len(in_modes)
        params.update({f"in_factor_{k}": t.factors[k] for k in range(p)})
        params.update({f"out_factor_{k}": t.factors[p + k] for k in range(len(out_modes))})
        info = _base.conversion_info(spec, params, kernel)
        return spec, params, info


# -------------------------------------------------------------------------------------------------------- CP


@dataclasses.dataclass(frozen=True)
class CPLinearSpec(_base.LinearSpec):
    """A ``(in_features, out_features)`` kernel whose tensor (modes ``in_modes + out_modes``) has CP rank ``rank``.

    ``T[i_1..i_p, j_1..j_q] = sum_r A_1[i_1, r] ... A_p[i_p, r] B_1[j_1, r] ... B_q[j_q, r]``: parameters
    ``in_factor_k`` ``A_k`` of shape ``(n_k, R)`` and ``out_factor_l`` ``B_l`` of shape ``(m_l, R)`` (no separate
    weights: the scale sits in the factors). Equivalently ``W = K_in K_out^T`` with the Khatri-Rao products
    ``K_in = A_1 (.) ... (.) A_p`` of shape ``(in_features, R)`` and ``K_out`` of shape ``(out_features, R)``: a
    rank-``R`` matrix whose factors have Khatri-Rao structure.

    The product builds ``K_in`` and ``K_out`` (independent of the batch: ``R (n_1 n_2 + n_1 n_2 n_3 + ...)``
    multiply-adds each) and computes ``y = (x K_in) K_out^T``: ``batch * R * (in + out)``. Contracting ``x`` mode by
    mode instead would cost at least ``batch * R * in`` for its first mode alone, so this is the cheaper route for
    every batch; ``AUTO`` rebuilds ``W`` when the batch makes that cheaper still.

    Args:
      in_features: ``prod(in_modes)``.
      out_features: ``prod(out_modes)``.
      rank: the CP rank ``R`` (any positive int).
      in_modes, out_modes: the factorisations of the features, of any lengths; each chosen by
        :func:`tnkit.layers.factorize_features` with :func:`tnkit.layers.default_num_modes` modes when ``None``.

    Initialisation (``kernel_init=None``): ``A_k`` entries ``N(0, 1 / n_k)`` and ``B_l`` entries
    ``N(0, R^(-1/q))``. ``W_ij`` is a sum of ``R`` uncorrelated zero-mean products, so ``Var W_ij = R (prod_k 1 / n_k)
    (R^(-1/q))^q = 1 / in_features``: the variance of ``nnx.Linear``'s default. ``W_ij`` and ``W_i'j`` (``i != i'``)
    are uncorrelated (they differ in some ``i_k``, hence in an independent zero-mean entry of ``A_k``), so for a
    fixed input ``Var y_j = ||x||^2 / in_features`` as for the dense layer; the intermediate ``x K_in`` has that
    variance too. (The entries of ``W`` are products of Gaussians: heavy-tailed for many modes, with the right
    variance.)

    Example:
      >>> from tnkit import layers
      >>> spec = layers.CPLinearSpec(64, 32, rank=8, in_modes=(8, 8), out_modes=(4, 8))
      >>> spec.param_shapes()["out_factor_0"]
      (4, 8)
      >>> spec.count_params(), 64 * 32
      (224, 2048)
    """

    in_features: int
    out_features: int
    rank: int = 1
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None

    def __post_init__(self):
        n_in = _base.check_positive_int(self.in_features, "in_features")
        n_out = _base.check_positive_int(self.out_features, "out_features")
        in_modes, out_modes = _resolve_both_modes(n_in, n_out, self.in_modes, self.out_modes)
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("in_features", n_in)
        set_("out_features", n_out)
        set_("in_modes", in_modes)
        set_("out_modes", out_modes)
        set_("rank", _base.check_positive_int(self.rank, "rank"))

    def param_shapes(self):
        shapes = {f"in_factor_{k}": (n, self.rank) for k, n in enumerate(self.in_modes)}
        shapes.update({f"out_factor_{k}": (m, self.rank) for k, m in enumerate(self.out_modes)})
        return shapes

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = {f"in_factor_{k}": n**-0.5 for k, n in enumerate(self.in_modes)}
        out_std = self.rank ** (-0.5 / len(self.out_modes))
        std.update({f"out_factor_{k}": out_std for k in range(len(self.out_modes))})
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def _in_factors(self, params):
        return [params[f"in_factor_{k}"] for k in range(len(self.in_modes))]

    def _out_factors(self, params):
        return [params[f"out_factor_{k}"] for k in range(len(self.out_modes))]

    def to_cp(self, params) -> CP:
        """The weight tensor (modes ``in_modes + out_modes``) as a :class:`tnkit.CP` with unit weights."""
        factors = self._in_factors(params) + self._out_factors(params)
        return CP(jnp.ones((self.rank,), factors[0].dtype), factors)

    def to_dense(self, params):
        return _cp.to_dense(self.to_cp(params)).reshape(self.in_features, self.out_features)

    def factorized_cost(self, batch):
        """``batch * R * (in + out)`` plus the two Khatri-Rao products (independent of the batch)."""
        r = self.rank
        return (
            batch * r * (self.in_features + self.out_features)
            + _khatri_rao_cost(self.in_modes, r)
            + _khatri_rao_cost(self.out_modes, r)
        )

    def rebuild_cost(self):
        """Multiply-adds of :func:`tnkit.cp.to_dense`: the Khatri-Rao product of all factors but the last, then one
        matrix product with it."""
        dims = self.in_modes + self.out_modes
        return self.rank * (math.prod(dims) + sum(math.prod(dims[: k + 1]) for k in range(1, len(dims) - 1)))

    def apply_factorized(self, params, x, precision=None):
        k_in = _khatri_rao(self._in_factors(params))
        k_out = _khatri_rao(self._out_factors(params))
        return jnp.matmul(jnp.matmul(x, k_in, precision=precision), k_out.T, precision=precision)

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        rank: int,
        key: jax.Array | None = None,
        init: _cp.Init = _cp.Init.SVD,
        num_iters: int = 200,
        tol: float = 1e-10,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
    ) -> tuple[CPLinearSpec, _base.Params, _base.ConversionInfo]:
        """CP-ALS (:func:`tnkit.cp.als`) of the kernel's tensor at CP rank ``rank``.

        ALS is a local method with no error guarantee: ``info.relative_error`` reports what it achieved (computed
        densely). The fitted weights are spread evenly over the factors (each column scaled by ``w_r^(1/(p+q))``),
        so all factors have the same scale for training.

        Args:
          kernel: the dense ``(in_features, out_features)`` kernel.
          rank: the CP rank ``R``.
          key: PRNG key of the starting point: required for ``init=cp.Init.RANDOM``; with ``cp.Init.SVD`` (the
            default, deterministic) it draws the columns beyond a mode's size when ``R > n_k``.
          init: :class:`tnkit.cp.Init`.
          num_iters: maximal number of ALS sweeps.
          tol: stop when the relative error changes by less than ``tol`` between sweeps.
          in_modes, out_modes: as in the spec.

        Returns:
          ``(spec, params, info)`` with the achieved error in ``info``.

        Example:
          >>> import jax
          >>> from tnkit import cp, layers
          >>> kernel = cp.to_dense(cp.random(jax.random.key(0), (3, 4, 3, 4), 2)).reshape(12, 12)  # CP rank 2
          >>> spec, params, info = layers.CPLinearSpec.from_dense(
          ...     kernel, rank=2, in_modes=(3, 4), out_modes=(3, 4))
          >>> spec.rank, info.relative_error < 1e-2
          (2, True)
        """
        kernel = _check_kernel(kernel)
        rank = _base.check_positive_int(rank, "rank")
        in_modes, out_modes = _resolve_both_modes(kernel.shape[0], kernel.shape[1], in_modes, out_modes)
        dims = in_modes + out_modes
        if len(dims) < 2:  # pragma: no cover - resolve_modes gives each side at least one mode
            raise ValueError(f"in_modes + out_modes must have at least 2 modes, got {dims}")
        fit, _ = _cp.als(kernel.reshape(dims), rank, key=key, init=init, num_iters=num_iters, tol=tol)
        w = fit.weights
        mag = jnp.abs(w)
        spread = (mag ** (1.0 / len(dims))).astype(kernel.dtype)
        phase = jnp.where(mag > 0, w / jnp.where(mag > 0, mag, 1.0), 1.0).astype(kernel.dtype)
        factors = [f * spread[None, :] for f in fit.factors]
        factors[0] = factors[0] * phase[None, :]
        spec = cls(kernel.shape[0], kernel.shape[1], rank=rank, in_modes=in_modes, out_modes=out_modes)
        p = len(in_modes)
        params = {f"in_factor_{k}": factors[k] for k in range(p)}
        params.update({f"out_factor_{k}": factors[p + k] for k in range(len(out_modes))})
        info = _base.conversion_info(spec, params, kernel)
        return spec, params, info
