"""TT-matrix embedding tables with row lookup that never forms the table ("Tensorized Embedding Layers").

The ``(num_embeddings, features)`` table is a TT-matrix over ``vocab_modes`` x ``feature_modes`` (Khrulkov,
Hrinchuk et al., 2019/2020). A row ``T[i, :]`` is read by writing ``i`` in the mixed radix of the vocab modes,
``i = sum_k i_k * v_{k+1} ... v_d``, taking the slice ``G_k[:, i_k, :, :]`` of every core and contracting the chain of
``d`` small ``(r_{k-1}, f_k, r_k)`` tensors: ``O(features * r)`` multiply-adds per id, never ``O(num_embeddings)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tnkit import ttm as _ttm
from tnkit.formats import TTMatrix
from tnkit.layers import _base
from tnkit.layers._tt import tt_ranks

__all__ = ["TTEmbeddingSpec", "vocab_modes_for"]


def vocab_modes_for(num_embeddings: int, num_modes: int) -> tuple[int, ...]:
    """Vocab modes for ``num_embeddings`` rows: exact when balanced, else balanced with a few padding rows.

    The exact factorisation :func:`tnkit.layers.factorize_features` is used when its largest mode is at most twice
    ``q = ceil(num_embeddings ** (1 / num_modes))``; otherwise (a prime-heavy vocabulary such as 50257 = 29 * 1733)
    the modes are ``(q, ..., q)`` with trailing modes lowered to ``q - 1`` while the product stays
    ``>= num_embeddings``. Rows ``num_embeddings .. prod(modes) - 1`` of the TT-matrix are then padding, never read.

    Example:
      >>> from tnkit.layers import vocab_modes_for
      >>> vocab_modes_for(10**6, 3), vocab_modes_for(50257, 3)
      ((100, 100, 100), (37, 37, 37))
    """
    n = _base.check_positive_int(num_embeddings, "num_embeddings")
    d = _base.check_positive_int(num_modes, "num_modes")
    exact = _base.factorize_features(n, d)
    q = 1
    while q**d < n:
        q += 1
    if max(exact) <= 2 * q:
        return exact
    modes = [q] * d
    for k in range(d - 1, -1, -1):
        if math.prod(modes[:k] + [q - 1] + modes[k + 1 :]) >= n:
            modes[k] = q - 1
    return tuple(modes)


def _resolve_vocab_modes(n: int, modes, num_modes: int) -> tuple[int, ...]:
    if modes is None:
        return vocab_modes_for(n, num_modes)
    try:
        modes = tuple(int(m) for m in modes)
    except TypeError:
        raise TypeError(f"vocab_modes must be a sequence of positive ints or None, got {modes!r}") from None
    if not modes or any(m < 1 for m in modes):
        raise ValueError(f"vocab_modes must be a non-empty sequence of positive ints, got {modes}")
    if math.prod(modes) < n:
        raise ValueError(
            f"vocab_modes={modes} multiplies to {math.prod(modes)}, fewer than num_embeddings={n} "
            "(the product may exceed num_embeddings, the extra rows are padding, but not fall short)"
        )
    return modes


def _wide_int():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


@dataclasses.dataclass(frozen=True)
class TTEmbeddingSpec:
    """A ``(num_embeddings, features)`` table stored as a TT-matrix with cores ``(r_{k-1}, v_k, f_k, r_k)``.

    ``T[i, j] = G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :]`` with ``(i_1, ..., i_d)`` the row-major digits of
    the id ``i`` in the radix ``vocab_modes = (v_1, ..., v_d)`` and ``(j_1, ..., j_d)`` those of the feature ``j``
    in ``feature_modes = (f_1, ..., f_d)``: the TT-matrix of :func:`tnkit.ttm.to_dense` (rows = ids, columns =
    features), of which the first ``num_embeddings`` rows are the table. Parameters are ``core_0 ... core_{d-1}``.

    Not a :class:`tnkit.layers.LinearSpec`: an embedding is a lookup, read by :meth:`lookup` (and multiplied by
    :meth:`attend`), not through :func:`tnkit.layers.apply`.

    Args:
      num_embeddings: rows of the table (vocabulary size).
      features: columns of the table (embedding size), ``prod(feature_modes)``.
      ranks: an int (every inner rank), the ``d - 1`` inner ranks, or all ``d + 1`` ranks.
      vocab_modes: ``d`` modes with ``prod(vocab_modes) >= num_embeddings`` (extra rows are padding that no id
        reads); chosen by :func:`vocab_modes_for` when ``None``.
      feature_modes: ``d`` modes with ``prod(feature_modes) == features``; chosen by
        :func:`tnkit.layers.factorize_features` when ``None``. When neither modes is given,
        ``d = default_num_modes(num_embeddings, features)``; when one is, the other gets its length.

    Initialisation (``embedding_init=None``): every core entry is ``N(0, s^2)`` with
    ``s^2 = (1 / (features * r_1 * ... * r_{d-1}))^(1/d)``. An entry of ``T`` is a sum of ``r_1 ... r_{d-1}``
    products of ``d`` independent core entries, so ``Var T_ij = s^{2d} r_1 ... r_{d-1} = 1 / features``: the
    variance of ``nnx.Embed``'s default initializer, ``variance_scaling(1.0, "fan_in", "normal", out_axis=0)``,
    whose fan-in on a ``(num_embeddings, features)`` table is ``features`` (entries ``N(0, 1 / features)``).
    (``equinox.nn.Embedding`` draws ``N(0, 1)`` instead; pass ``embedding_init`` to match that.) Entries are
    uncorrelated (every product contains a zero-mean core entry the other lacks), but not independent.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import layers
      >>> spec = layers.TTEmbeddingSpec(10**6, 256, ranks=16, vocab_modes=(100, 100, 100), feature_modes=(8, 8, 4))
      >>> spec.count_params(), 10**6 * 256
      (224000, 256000000)
      >>> params = spec.init(jax.random.key(0))
      >>> spec.lookup(params, jnp.array([[3, 999_999], [0, 17]])).shape
      (2, 2, 256)
    """

    num_embeddings: int
    features: int
    ranks: tuple[int, ...] | int = 1
    vocab_modes: tuple[int, ...] | None = None
    feature_modes: tuple[int, ...] | None = None

    def __post_init__(self):
        n = _base.check_positive_int(self.num_embeddings, "num_embeddings")
        f = _base.check_positive_int(self.features, "features")
        given = [m for m in (self.vocab_modes, self.feature_modes) if m is not None]
        try:
            d = len(tuple(given[0])) if given else _base.default_num_modes(n, f)
        except TypeError:
            raise TypeError(f"vocab_modes and feature_modes must be sequences of ints or None, got {given[0]!r}") from None
        vocab_modes = _resolve_vocab_modes(n, self.vocab_modes, d)
        feature_modes = _base.resolve_modes(f, self.feature_modes, d, "feature_modes", "features")
        if len(vocab_modes) != len(feature_modes):
            raise ValueError(
                "vocab_modes and feature_modes must have the same length, got "
                f"vocab_modes={vocab_modes} and feature_modes={feature_modes}"
            )
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("num_embeddings", n)
        set_("features", f)
        set_("vocab_modes", vocab_modes)
        set_("feature_modes", feature_modes)
        set_("ranks", tt_ranks(self.ranks, len(vocab_modes)))

    # ------------------------------------------------------------------------------------------------ shapes

    @property
    def num_modes(self) -> int:
        return len(self.vocab_modes)

    @property
    def padded_num_embeddings(self) -> int:
        """``prod(vocab_modes)``: rows of the TT-matrix (``>= num_embeddings``)."""
        return math.prod(self.vocab_modes)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape: ``core_k`` is ``(r_k, v_k, f_k, r_{k+1})``."""
        r = self.ranks
        return {
            f"core_{k}": (r[k], self.vocab_modes[k], self.feature_modes[k], r[k + 1]) for k in range(self.num_modes)
        }

    def count_params(self) -> int:
        """Number of scalars in the cores."""
        return sum(math.prod(s) for s in self.param_shapes().values())

    def check_params(self, params: Mapping[str, jax.Array], name: str = "params") -> None:
        """Raise a clear error unless ``params`` has exactly the names and shapes of :meth:`param_shapes`."""
        _base.Spec.check_params(self, params, name)  # only reads self.param_shapes()

    # --------------------------------------------------------------------------------------------- init/dense

    def init(self, key: jax.Array, dtype=jnp.float32, embedding_init=None) -> _base.Params:
        """Cores with ``Var T_ij = 1 / features`` (see the class docstring), or ``embedding_init`` on every core."""
        d = self.num_modes
        std = (1.0 / (self.features * math.prod(self.ranks[1:-1]))) ** (0.5 / d)
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, embedding_init)

    def to_ttmatrix(self, params: Mapping[str, jax.Array]) -> TTMatrix:
        """The padded table as a :class:`tnkit.TTMatrix` of shape ``(prod(vocab_modes), features)``."""
        return TTMatrix([params[f"core_{k}"] for k in range(self.num_modes)])

    def to_dense(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """The ``(num_embeddings, features)`` table (materialised: for inspection and small tables only)."""
        self.check_params(params)
        return _ttm.to_dense(self.to_ttmatrix(params))[: self.num_embeddings]

    # ------------------------------------------------------------------------------------------------ lookup

    def _split_costs(self) -> tuple[int, ...]:
        """Multiply-adds per id of the chain contraction split at bond ``m`` (``m = 0..d``).

        Cores ``0..m-1`` are contracted left to right into a ``(f_1...f_m, r_m)`` block, cores ``m..d-1`` right to
        left into a ``(r_m, f_{m+1}...f_d)`` block, and the two blocks are merged (``features * r_m``, absent for
        ``m = 0`` or ``d``, the pure sweeps)."""
        f, r, d = self.feature_modes, self.ranks, self.num_modes
        costs = []
        for m in range(d + 1):
            left = sum(math.prod(f[:k]) * r[k] * f[k] * r[k + 1] for k in range(1, m))
            right = sum(r[k] * f[k] * r[k + 1] * math.prod(f[k + 1 :]) for k in range(m, d - 1))
            merge = self.features * r[m] if 0 < m < d else 0
            costs.append(left + right + merge)
        return tuple(costs)

    def lookup_cost(self, num_ids: int) -> int:
        """Multiply-adds of :meth:`lookup` for ``num_ids`` ids (the slice gathers are free).

        Example:
          >>> from tnkit import layers
          >>> spec = layers.TTEmbeddingSpec(10**4, 256, ranks=8, vocab_modes=(10,) * 4, feature_modes=(4,) * 4)
          >>> spec.lookup_cost(1)  # split at bond 2: 4*8*4*8 + 8*4*8*4 + 256*8; a sweep costs 7168
          4096
        """
        return int(num_ids) * min(self._split_costs())

    def flops(self, ids_shape: Sequence[int]) -> int:
        """Floating-point operations (2 per multiply-add) of :meth:`lookup` on ids of shape ``ids_shape``."""
        return 2 * self.lookup_cost(math.prod(tuple(ids_shape)))

    def check_ids(self, ids) -> jax.Array:
        """``ids`` as an integer array, after checking its dtype and (when concrete) its range ``[-N, N)``.

        Negative ids count from the end, as in ``nnx.Embed``. Under ``jit``/``vmap`` the values are unknown and
        cannot be checked: :meth:`lookup` then returns NaN rows for out-of-range ids (as ``nnx.Embed`` does)."""
        n = self.num_embeddings
        if not isinstance(ids, jax.core.Tracer):
            host = np.asarray(ids)
            if not np.issubdtype(host.dtype, np.integer):
                raise TypeError(f"ids must have an integer dtype, got {host.dtype} (shape {host.shape})")
            if host.size and (host.min() < -n or host.max() >= n):
                raise ValueError(
                    f"ids must lie in [-{n}, {n}) for num_embeddings={n} (negative ids count from the end), got "
                    f"values in [{host.min()}, {host.max()}]"
                )
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"ids must have an integer dtype, got {ids.dtype} (shape {ids.shape})")
        return ids

    def lookup(self, params: Mapping[str, jax.Array], ids, precision=None) -> jax.Array:
        """Rows ``T[ids]`` of shape ``ids.shape + (features,)``, without forming the table.

        Each id is split into its vocab digits ``i_k``; the slices ``G_k[:, i_k, :, :]`` are gathered and the chain
        is contracted from both ends towards the bond ``m`` with the fewest multiply-adds (:meth:`lookup_cost`).
        Gradients flow to the cores through the gathers (scatter-adds into the cores only).

        Args:
          params: the cores, shapes of :meth:`param_shapes`.
          ids: integer array of any shape with values in ``[-num_embeddings, num_embeddings)``.
          precision: ``jax.lax.Precision`` of the contractions.

        Raises:
          TypeError: ``ids`` is not of an integer dtype.
          ValueError: ``ids`` is concrete and out of range, or ``params`` has the wrong names or shapes.

        Example:
          >>> import jax, jax.numpy as jnp
          >>> from tnkit import layers
          >>> spec = layers.TTEmbeddingSpec(100, 8, ranks=3, vocab_modes=(10, 10), feature_modes=(4, 2))
          >>> params = spec.init(jax.random.key(0))
          >>> rows = spec.lookup(params, jnp.array([7, 42, -1]))
          >>> bool(jnp.allclose(rows, spec.to_dense(params)[jnp.array([7, 42, 99])], atol=1e-6))
          True
        """
        self.check_params(params)
        ids = self.check_ids(ids)
        cores = tuple(params[f"core_{k}"] for k in range(self.num_modes))
        costs = self._split_costs()
        return _lookup(self, cores, ids, precision, costs.index(min(costs)))

    def attend(self, params: Mapping[str, jax.Array], query, precision=None) -> jax.Array:
        """``query @ T^T`` of shape ``(..., num_embeddings)`` (logits tied to the embedding, as ``nnx.Embed.attend``).

        Computed by :func:`tnkit.ttm.apply` on the TT-matrix (sweeping the cores, or rebuilding the table when the
        batch is large enough to amortise it); no conjugation for complex tables, as in ``nnx.Embed``.

        Example:
          >>> import jax, jax.numpy as jnp
          >>> from tnkit import layers
          >>> spec = layers.TTEmbeddingSpec(100, 8, ranks=3, vocab_modes=(10, 10), feature_modes=(4, 2))
          >>> params = spec.init(jax.random.key(0))
          >>> q = jnp.ones((5, 8))
          >>> bool(jnp.allclose(spec.attend(params, q), q @ spec.to_dense(params).T, atol=1e-5))
          True
        """
        self.check_params(params)
        query = jnp.asarray(query)
        if query.ndim < 1 or query.shape[-1] != self.features:
            raise ValueError(f"query must have shape (..., features) = (..., {self.features}), got {query.shape}")
        logits = _ttm.apply(self.to_ttmatrix(params), query, precision=precision)
        return logits[..., : self.num_embeddings]

    # ------------------------------------------------------------------------------------------- conversion

    @classmethod
    def from_dense(
        cls,
        table,
        *,
        max_rank: int | None = None,
        rtol: float | None = None,
        vocab_modes: Sequence[int] | None = None,
        feature_modes: Sequence[int] | None = None,
    ) -> tuple[TTEmbeddingSpec, _base.Params, _base.ConversionInfo]:
        """TT-SVD (:func:`tnkit.ttm.from_dense`) of a dense ``(num_embeddings, features)`` table.

        The table is padded with zero rows to ``prod(vocab_modes)`` rows; zeros add nothing to the norm, so
        ``rtol`` still bounds the error of the real rows: ``||T - T_tt||_F <= rtol ||T||_F`` (eager: the ranks come
        from the data). ``max_rank`` caps every TT rank. At least one of them must be given.

        Returns:
          ``(spec, params, info)`` with the achieved relative error of the table in ``info``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> table = jax.random.normal(jax.random.key(0), (90, 6))
          >>> spec, params, info = layers.TTEmbeddingSpec.from_dense(
          ...     table, rtol=1e-6, vocab_modes=(10, 10), feature_modes=(3, 2))
          >>> spec.ranks, info.relative_error < 1e-5
          ((1, 20, 1), True)
        """
        table = jnp.asarray(table)
        if table.ndim != 2:
            raise ValueError(f"table must be a 2-D (num_embeddings, features) array, got shape {table.shape}")
        if max_rank is None and rtol is None:
            raise ValueError("from_dense needs max_rank or rtol (or both), got neither")
        n, f = table.shape
        shape_spec = cls(n, f, ranks=1, vocab_modes=vocab_modes, feature_modes=feature_modes)
        padded = jnp.pad(table, ((0, shape_spec.padded_num_embeddings - n), (0, 0)))
        a = _ttm.from_dense(
            padded, row_dims=shape_spec.vocab_modes, col_dims=shape_spec.feature_modes, max_rank=max_rank, rtol=rtol
        )
        spec = cls(n, f, ranks=a.ranks, vocab_modes=a.row_dims, feature_modes=a.col_dims)
        params = {f"core_{k}": c for k, c in enumerate(a.cores)}
        info = _base.conversion_info(spec, params, table)
        return spec, params, info


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _lookup(spec: TTEmbeddingSpec, cores, ids, precision, split: int) -> jax.Array:
    """The numerical part of :meth:`TTEmbeddingSpec.lookup` (ids already checked); jitted so that an eager call
    compiles once per spec and shape instead of dispatching every small op."""
    n = spec.num_embeddings
    dtype = jnp.result_type(*cores)
    batch_shape = ids.shape
    flat = ids.reshape(-1)
    b = flat.shape[0]
    wide = _wide_int()
    info = jnp.iinfo(flat.dtype)
    if info.bits > jnp.iinfo(wide).bits or (info.bits == jnp.iinfo(wide).bits and info.min == 0):
        flat = jnp.minimum(flat, jnp.asarray(min(n, info.max), flat.dtype))  # keep out-of-range ids out of range
    flat = flat.astype(wide)
    valid = (flat >= -n) & (flat < n)
    idx = jnp.where(valid, jnp.where(flat < 0, flat + n, flat), 0)

    slices = []
    stride = spec.padded_num_embeddings
    for k, core in enumerate(cores):
        stride //= spec.vocab_modes[k]
        digit = (idx // stride) % spec.vocab_modes[k]
        # (r, v, f, s) -> (v, r, f, s) so each id gathers one contiguous (r, f, s) block
        slices.append(jnp.take(jnp.moveaxis(core.astype(dtype), 1, 0), digit, axis=0, mode="clip"))
    rows = _contract_chain(slices, split, spec.feature_modes, spec.ranks, b, precision)
    rows = jnp.where(valid[:, None], rows, jnp.asarray(jnp.nan, dtype))
    return rows.reshape(batch_shape + (spec.features,))


def _contract_chain(slices, split: int, feature_modes, ranks, batch: int, precision) -> jax.Array:
    """Rows ``(batch, features)`` from per-id core slices ``(batch, r_k, f_k, r_{k+1})``, split at bond ``split``.

    A batched (one chain per id) version of the TT-to-dense contraction; :mod:`tnkit.tt` has none with a split
    point, so it lives here."""
    d = len(slices)
    left = None  # (batch, f_1 ... f_k, r_k)
    for k in range(split):
        s = slices[k]
        if left is None:
            left = s.reshape(batch, feature_modes[k], ranks[k + 1])
        else:
            z = jnp.einsum("bFr,brfs->bFfs", left, s, precision=precision)
            left = z.reshape(batch, left.shape[1] * feature_modes[k], ranks[k + 1])
    right = None  # (batch, r_k, f_{k+1} ... f_d)
    for k in range(d - 1, split - 1, -1):
        s = slices[k]
        if right is None:
            right = s.reshape(batch, ranks[k], feature_modes[k])
        else:
            z = jnp.einsum("brfs,bsG->brfG", s, right, precision=precision)
            right = z.reshape(batch, ranks[k], feature_modes[k] * right.shape[2])
    features = math.prod(feature_modes)
    if right is None:
        return left.reshape(batch, features)
    if left is None:
        return right.reshape(batch, features)
    return jnp.einsum("bFr,brG->bFG", left, right, precision=precision).reshape(batch, features)
