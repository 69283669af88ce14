"""Factorised convolution kernels: CP (Lebedev et al., 2015), Tucker-2 (Kim et al., 2016) and TT (Garipov et al., 2016).

Every spec here describes the kernel of an ``N``-dimensional convolution (``N = len(kernel_size)``: 1-D, 2-D, 3-D
and beyond share one code path) in the layout of ``flax.nnx.Conv``:

* input ``x`` of shape ``(batch..., *spatial, in_features)`` (channels last; any number of leading batch axes,
  including none);
* kernel ``W`` of shape ``(*kernel_size, in_features, out_features)``;
* output ``y[b, p, o] = sum_{k, i} x_pad[b, p * s + k * d, i] W[k, i, o]`` (cross-correlation, as
  ``lax.conv_general_dilated``), with strides ``s``, kernel dilation ``d`` and zero padding ``'SAME'``,
  ``'SAME_LOWER'``, ``'VALID'`` or explicit ``(low, high)`` pairs per spatial axis.

``apply_dense`` rebuilds ``W`` and runs one ``lax.conv_general_dilated``; ``apply_factorized`` never forms ``W``
and instead chains cheap convolutions (1x1 channel maps, separable or small spatial convolutions). ``costs`` counts
the multiply-adds of both for the input shape at hand, so ``Implementation.AUTO`` picks the cheaper one.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tnkit import cp as _cp
from tnkit import ttm as _ttm
from tnkit import tucker as _tucker
from tnkit.formats import CP, TTMatrix, Tucker
from tnkit.layers import _base
from tnkit.layers._tt import tt_ranks

__all__ = ["ConvSpec", "CPConvSpec", "TuckerConvSpec", "TTConvSpec"]

_STRING_PADDINGS = ("SAME", "SAME_LOWER", "VALID")


# ------------------------------------------------------------------------------------------------ argument checks


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _kernel_size(value) -> tuple[int, ...]:
    """An int means a 1-D kernel (as in ``nnx.Conv``); a sequence gives one size per spatial axis."""
    if _is_int(value):
        value = (value,)
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"kernel_size must be an int or a sequence of positive ints, got {value!r}") from None
    if not value or not all(_is_int(v) and v >= 1 for v in value):
        raise ValueError(f"kernel_size must be an int or a non-empty sequence of positive ints, got {value!r}")
    return tuple(int(v) for v in value)


def _per_axis(value, n: int, name: str) -> tuple[int, ...]:
    """An int (the same on every spatial axis) or ``n`` positive ints."""
    if _is_int(value):
        value = (value,) * n
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}") from None
    if len(value) != n:
        raise ValueError(f"{name} must have one entry per spatial axis ({n} for this kernel), got {value!r}")
    if not all(_is_int(v) and v >= 1 for v in value):
        raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return tuple(int(v) for v in value)


def _padding(padding, n: int):
    """``'SAME'``/``'SAME_LOWER'``/``'VALID'``, or ``n`` explicit ``(low, high)`` pairs (an int ``p`` is ``(p, p)``)."""
    if isinstance(padding, str):
        if padding.upper() in _STRING_PADDINGS:
            return padding.upper()
        raise ValueError(
            f"padding must be 'SAME', 'SAME_LOWER', 'VALID', an int or {n} (low, high) pairs (zero padding only: "
            f"'CIRCULAR', 'REFLECT' and 'CAUSAL' are not supported), got {padding!r}"
        )
    if _is_int(padding):
        return ((int(padding), int(padding)),) * n
    try:
        items = tuple(padding)
    except TypeError:
        raise TypeError(
            f"padding must be a string, an int or a sequence of (low, high) pairs, got {padding!r}"
        ) from None
    if len(items) != n:
        raise ValueError(f"padding must have one entry per spatial axis ({n} for this kernel), got {padding!r}")
    pairs = []
    for p in items:
        if _is_int(p):
            pairs.append((int(p), int(p)))
            continue
        try:
            lo, hi = p
        except (TypeError, ValueError):
            raise ValueError(
                f"padding entries must be ints or (low, high) pairs of ints, got {p!r} in {padding!r}"
            ) from None
        if not (_is_int(lo) and _is_int(hi)):
            raise ValueError(f"padding entries must be ints or (low, high) pairs of ints, got {p!r} in {padding!r}")
        pairs.append((int(lo), int(hi)))
    return tuple(pairs)


def _check_kernel(kernel) -> jax.Array:
    kernel = jnp.asarray(kernel)
    if kernel.ndim < 3:
        raise ValueError(
            f"kernel must have shape (*kernel_size, in_features, out_features) with at least one spatial axis, got "
            f"shape {kernel.shape}"
        )
    if not (jnp.issubdtype(kernel.dtype, jnp.floating) or jnp.issubdtype(kernel.dtype, jnp.complexfloating)):
        raise TypeError(f"kernel must have a floating or complex dtype, got {kernel.dtype}")
    return kernel


def _promoted(params, x):
    dtype = jnp.result_type(x.dtype, *[v.dtype for v in params.values()])
    return {k: jnp.asarray(v, dtype) for k, v in params.items()}, jnp.asarray(x, dtype)


def _conv(x, kernel, strides, pads, dilation, precision=None):
    """``lax.conv_general_dilated`` in the channels-last layout of ``nnx.Conv``: ``x (B, *S, C)``, kernel
    ``(*k, C, O)``."""
    n = x.ndim - 2
    spatial = tuple(range(1, n + 1))
    dn = lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1) + spatial, rhs_spec=(n + 1, n) + tuple(range(n)), out_spec=(0, n + 1) + spatial
    )
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=tuple(strides),
        padding=tuple(tuple(p) for p in pads),
        rhs_dilation=tuple(dilation),
        dimension_numbers=dn,
        precision=precision,
    )


def _windows(x, kernel_size, strides, pads, dilation):
    """For each kernel offset ``k`` (row-major over ``kernel_size``): ``(k, x_pad[:, p * s + k * d, ...])``, the input
    seen by tap ``k`` at every output position ``p``, of shape ``(B, *out_spatial, ...)``.

    ``x`` has shape ``(B, *spatial, ...)`` with ``len(kernel_size)`` spatial axes and any trailing channel axes. A
    depthwise or grouped convolution is then a sum over taps of elementwise products: the same multiply-adds as
    ``lax.conv_general_dilated`` with ``feature_group_count > 1``, but one fused loop on CPU, where XLA's grouped
    convolutions are several times slower than a dense convolution of many more flops.
    """
    n = len(kernel_size)
    rest = x.ndim - n - 1
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)] * rest)
    out = [(m - (k - 1) * d - 1) // s + 1 for m, k, d, s in zip(xp.shape[1 : n + 1], kernel_size, dilation, strides)]
    for ks in itertools.product(*map(range, kernel_size)):
        start = tuple(k * d for k, d in zip(ks, dilation))
        limit = tuple(a + (o - 1) * s + 1 for a, o, s in zip(start, out, strides))
        begin, end = (0,) + start + (0,) * rest, xp.shape[:1] + limit + xp.shape[n + 1 :]
        yield ks, lax.slice(xp, begin, end, (1,) + tuple(strides) + (1,) * rest)


# ------------------------------------------------------------------------------------------------------ base


class ConvSpec(_base.Spec):
    """A structured ``(*kernel_size, in_features, out_features)`` convolution kernel (the ``nnx.Conv`` layout).

    Subclasses are frozen dataclasses whose fields start with ``in_features, out_features, kernel_size`` and include
    ``strides``, ``padding`` and ``kernel_dilation``; their ``__post_init__`` calls :meth:`_init_conv_fields`. They
    implement :meth:`param_shapes`, :meth:`init`, :meth:`to_dense`, :meth:`apply_factorized`,
    :meth:`factorized_cost` and :meth:`rebuild_cost`; this class supplies the input checks, the dense convolution
    and the cost comparison.

    Normalised fields: ``kernel_size``, ``strides`` and ``kernel_dilation`` become tuples with one entry per spatial
    axis (an int ``kernel_size`` means a 1-D kernel, as in ``nnx.Conv``; an int stride or dilation is used on every
    axis); ``padding`` becomes ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'`` or a tuple of ``(low, high)`` pairs.
    """

    in_features: int
    out_features: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str | tuple[tuple[int, int], ...]
    kernel_dilation: tuple[int, ...]

    def _init_conv_fields(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("in_features", _base.check_positive_int(self.in_features, "in_features"))
        set_("out_features", _base.check_positive_int(self.out_features, "out_features"))
        ks = _kernel_size(self.kernel_size)
        n = len(ks)
        set_("kernel_size", ks)
        set_("strides", _per_axis(self.strides, n, "strides"))
        set_("kernel_dilation", _per_axis(self.kernel_dilation, n, "kernel_dilation"))
        set_("padding", _padding(self.padding, n))

    @property
    def num_spatial_dims(self) -> int:
        """``N``, the number of spatial axes."""
        return len(self.kernel_size)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """``(*kernel_size, in_features, out_features)``, the shape of :meth:`to_dense`."""
        return self.kernel_size + (self.in_features, self.out_features)

    @property
    def fan_in(self) -> int:
        """``prod(kernel_size) * in_features``: the inputs one output entry depends on."""
        return math.prod(self.kernel_size) * self.in_features

    def padding_pairs(self, spatial_shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """The explicit ``(low, high)`` zero padding of each spatial axis for an input of spatial shape
        ``spatial_shape`` (``lax.padtype_to_pads`` for the string paddings)."""
        if isinstance(self.padding, str):
            window = tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation))
            pads = lax.padtype_to_pads(tuple(spatial_shape), window, self.strides, self.padding)
            return tuple(tuple(p) for p in pads)
        return self.padding

    def _output_spatial(self, spatial_shape: Sequence[int], name: str = "x", full_shape=None) -> tuple[int, ...]:
        pads = self.padding_pairs(spatial_shape)
        out = tuple(
            (s + lo + hi - (k - 1) * d - 1) // st + 1
            for s, (lo, hi), k, d, st in zip(spatial_shape, pads, self.kernel_size, self.kernel_dilation, self.strides)
        )
        if any(o < 1 for o in out):
            raise ValueError(
                f"{name} of shape {full_shape} has spatial shape {tuple(spatial_shape)}, too small for kernel_size="
                f"{self.kernel_size} with kernel_dilation={self.kernel_dilation}, padding={self.padding!r} and "
                f"strides={self.strides}: the output spatial shape would be {out}"
            )
        return out

    def _split_shape(self, shape, name: str):
        n = self.num_spatial_dims
        if len(shape) < n + 1 or shape[-1] != self.in_features:
            raise ValueError(
                f"{name} must have shape (..., *spatial, in_features) with {n} spatial "
                f"ax{'i' if n == 1 else 'e'}s and in_features={self.in_features}, got {tuple(shape)}"
            )
        return tuple(shape[: -(n + 1)]), tuple(shape[-(n + 1) : -1])

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of the output for an input of shape ``(batch..., *spatial, in_features)``.

        Example:
          >>> from tnkit import layers
          >>> spec = layers.TuckerConvSpec(8, 16, (3, 3), ranks=4, strides=2, padding="SAME")
          >>> spec.output_shape((5, 32, 31, 8))
          (5, 16, 16, 16)
        """
        input_shape = tuple(int(s) for s in input_shape)
        batch, spatial = self._split_shape(input_shape, "input_shape")
        return batch + self._output_spatial(spatial, "input_shape", input_shape) + (self.out_features,)

    def check_input(self, x):
        x = jnp.asarray(x)
        batch, spatial = self._split_shape(x.shape, "x")
        self._output_spatial(spatial, "x", x.shape)
        xb = x.reshape((math.prod(batch),) + x.shape[len(batch) :])
        return xb, lambda y: y.reshape(batch + y.shape[1:])

    def apply_dense(self, weight, x, precision=None):
        dtype = jnp.result_type(weight.dtype, x.dtype)
        pads = self.padding_pairs(x.shape[1:-1])
        return _conv(x.astype(dtype), weight.astype(dtype), self.strides, pads, self.kernel_dilation, precision)

    @abc.abstractmethod
    def factorized_cost(self, batch: int, spatial_shape: tuple[int, ...]) -> int:
        """Multiply-adds of :meth:`apply_factorized` on ``batch`` inputs of spatial shape ``spatial_shape``."""

    @abc.abstractmethod
    def rebuild_cost(self) -> int:
        """Multiply-adds of :meth:`to_dense`."""

    def costs(self, input_shape):
        input_shape = tuple(int(s) for s in input_shape)
        batch_shape, spatial = self._split_shape(input_shape, "input_shape")
        batch = math.prod(batch_shape)
        out = self._output_spatial(spatial, "input_shape", input_shape)
        conv = batch * math.prod(out) * self.fan_in * self.out_features
        return {
            _base.Implementation.FACTORIZED: self.factorized_cost(batch, spatial),
            _base.Implementation.DENSE: self.rebuild_cost() + conv,
        }


# -------------------------------------------------------------------------------------------------------- CP


@functools.partial(jax.jit, static_argnums=(1, 2))
def _cp_als_balanced(kernel, rank, num_iters, tol, key):
    """CP-ALS of ``kernel`` (jitted, so repeated conversions of one shape compile once) with the weights spread
    evenly over the factors: each column scaled by ``|w_r|^(1/m)``, the phase of ``w_r`` going to the last factor."""
    fit, _ = _cp.als(kernel, rank, num_iters=num_iters, tol=tol, key=key)
    m = len(fit.factors)
    mag = jnp.abs(fit.weights)
    scale = (mag ** (1.0 / m)).astype(fit.weights.dtype)
    phase = jnp.where(mag > 0, fit.weights / jnp.where(mag > 0, mag, 1), 1).astype(fit.weights.dtype)
    factors = [f * scale[None, :] for f in fit.factors]
    factors[-1] = factors[-1] * phase[None, :]
    return factors


@dataclasses.dataclass(frozen=True)
class CPConvSpec(ConvSpec):
    """A convolution kernel of CP rank ``R`` (Lebedev et al., 2015, "Speeding-up convolutional neural networks using
    fine-tuned CP-decomposition"), for any number ``N`` of spatial axes.

    ``W[k_1, ..., k_N, i, o] = sum_r S_1[k_1, r] ... S_N[k_N, r] A[i, r] B[o, r]``. Parameters: ``spatial_j`` of
    shape ``(kernel_size[j], R)`` for ``j < N``, ``in_factor`` ``A`` of shape ``(in_features, R)``, ``out_factor``
    ``B`` of shape ``(out_features, R)``; ``R * (sum(kernel_size) + in_features + out_features)`` scalars in all.

    Factorised product (never forms ``W``): a 1x1 convolution ``in_features -> R`` (``t = x @ A``), then for each
    spatial axis ``j`` in turn a depthwise convolution along that axis only, with that axis's stride, dilation and
    padding: ``t[.., p_j, .., r] <- sum_k t_pad[.., p_j s_j + k d_j, .., r] S_j[k, r]`` (computed as a sum over the
    ``kernel_size[j]`` taps of strided slices, the multiply-adds of a grouped convolution but several times faster
    than XLA's grouped convolution on CPU), then a 1x1 convolution ``R -> out_features`` (``@ B^T``). Zero padding
    and strides act on each axis independently, so the chain equals the dense convolution.

    Args:
      in_features, out_features: channels.
      kernel_size: an int (1-D) or one size per spatial axis.
      rank: the CP rank ``R`` (an int).
      strides, padding, kernel_dilation: as ``nnx.Conv`` (zero padding only).

    Initialisation (``kernel_init=None``): every factor entry is ``N(0, s^2)`` with
    ``s^2 = (1 / (fan_in R))^(1 / (N + 2))``, ``fan_in = prod(kernel_size) * in_features``. An entry of ``W`` is a
    sum of ``R`` products of ``N + 2`` independent zero-mean entries, so ``Var W = R s^(2 (N + 2)) = 1 / fan_in``,
    the variance of ``nnx.Conv``'s default (LeCun normal); distinct entries of ``W`` are uncorrelated (their products
    differ in at least one factor entry of mean zero), so an output entry has ``Var y = ||x_patch||^2 / fan_in`` as
    for the dense layer.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.CPConvSpec(64, 128, (3, 3), rank=16)
      >>> spec.param_shapes()["spatial_0"], spec.count_params(), 3 * 3 * 64 * 128
      ((3, 16), 3168, 73728)
    """

    in_features: int
    out_features: int
    kernel_size: int | tuple[int, ...]
    rank: int = 1
    strides: int | tuple[int, ...] = 1
    padding: str | int | tuple = "SAME"
    kernel_dilation: int | tuple[int, ...] = 1

    def __post_init__(self):
        self._init_conv_fields()
        if isinstance(self.rank, bool) or not _is_int(self.rank):
            raise TypeError(f"rank must be an int (the CP rank), got {self.rank!r}")
        object.__setattr__(self, "rank", _base.check_positive_int(self.rank, "rank"))

    def param_shapes(self):
        r = self.rank
        shapes = {f"spatial_{j}": (k, r) for j, k in enumerate(self.kernel_size)}
        shapes["in_factor"] = (self.in_features, r)
        shapes["out_factor"] = (self.out_features, r)
        return shapes

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = (1.0 / (self.fan_in * self.rank)) ** (0.5 / (self.num_spatial_dims + 2))
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_cp(self, params) -> CP:
        """The kernel as a :class:`tnkit.CP` of dims ``(*kernel_size, in_features, out_features)`` (unit weights)."""
        factors = [params[f"spatial_{j}"] for j in range(self.num_spatial_dims)]
        factors += [params["in_factor"], params["out_factor"]]
        dtype = jnp.result_type(*[f.dtype for f in factors])
        factors = [jnp.asarray(f, dtype) for f in factors]
        return CP(jnp.ones((self.rank,), dtype), factors)

    def to_dense(self, params):
        return _cp.to_dense(self.to_cp(params))

    def apply_factorized(self, params, x, precision=None):
        p, x = _promoted(params, x)
        n, r = self.num_spatial_dims, self.rank
        pads = self.padding_pairs(x.shape[1:-1])
        t = jnp.matmul(x, p["in_factor"], precision=precision)  # (B, *S, R)
        for j in range(n):  # depthwise along axis j: t[.., p_j, .., r] <- sum_k t[.., p_j s_j + k d_j, .., r] S_j[k, r]
            one = lambda v, fill: tuple(v if a == j else fill for a in range(n))  # noqa: E731
            taps = _windows(t, one(self.kernel_size[j], 1), one(self.strides[j], 1), one(pads[j], (0, 0)),
                            one(self.kernel_dilation[j], 1))
            factor = p[f"spatial_{j}"]
            t = sum(window * factor[ks[j]].reshape((1,) * (n + 1) + (r,)) for ks, window in taps)
        return jnp.matmul(t, p["out_factor"].T, precision=precision)

    def factorized_cost(self, batch, spatial_shape):
        r = self.rank
        out = self._output_spatial(spatial_shape)
        cost = batch * math.prod(spatial_shape) * self.in_features * r
        for j, k in enumerate(self.kernel_size):  # after the conv along axis j: axes <= j at output size
            cost += batch * math.prod(out[: j + 1] + tuple(spatial_shape[j + 1 :])) * k * r
        return cost + batch * math.prod(out) * r * self.out_features

    def rebuild_cost(self):
        # tnkit.cp.to_dense: a Khatri-Rao product of all factors but the last, then one matrix product
        dims, r = self.kernel_shape, self.rank
        return sum(math.prod(dims[: j + 1]) * r for j in range(len(dims) - 1)) + math.prod(dims) * r

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        rank: int,
        strides=1,
        padding="SAME",
        kernel_dilation=1,
        num_iters: int = 500,
        tol: float = 1e-10,
        key=None,
    ) -> tuple[CPConvSpec, _base.Params, _base.ConversionInfo]:
        """CP-ALS (:func:`tnkit.cp.als`, SVD start) of a dense ``(*kernel_size, in_features, out_features)`` kernel.

        The CP weights are spread evenly over the ``N + 2`` factors (each column scaled by ``|w_r|^(1 / (N + 2))``,
        the phase going to ``out_factor``). ALS has no error guarantee: the achieved error is in ``info`` (it is
        at most 1, since every ALS step is a least-squares solve that could have returned zero).

        Args:
          kernel: the dense kernel.
          rank: the CP rank ``R``.
          strides, padding, kernel_dilation: the geometry of the convolution (copied into the spec).
          num_iters, tol, key: passed to :func:`tnkit.cp.als`.

        Returns:
          ``(spec, params, info)``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))
          >>> spec, params, info = layers.CPConvSpec.from_dense(kernel, rank=4, strides=2)
          >>> spec.rank, spec.strides, 0 < info.relative_error < 1
          (4, (2, 2), True)
        """
        kernel = _check_kernel(kernel)
        *ks, n_in, n_out = kernel.shape
        spec = cls(n_in, n_out, tuple(ks), rank=rank, strides=strides, padding=padding, kernel_dilation=kernel_dilation)
        if isinstance(num_iters, bool) or not _is_int(num_iters) or num_iters < 1:
            raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
        number = isinstance(tol, (int, float, np.integer, np.floating)) and not isinstance(tol, bool)
        if not number or not 0 <= tol < math.inf:
            raise ValueError(f"tol must be a non-negative finite float, got {tol!r}")
        factors = _cp_als_balanced(kernel, spec.rank, int(num_iters), tol, key)
        params = {f"spatial_{j}": factors[j] for j in range(len(ks))}
        params["in_factor"], params["out_factor"] = factors[-2], factors[-1]
        return spec, params, _base.conversion_info(spec, params, kernel)


# ---------------------------------------------------------------------------------------------------- Tucker


def _tucker2_ranks(ranks) -> tuple[int, int]:
    if isinstance(ranks, bool):
        raise TypeError(f"ranks must be an int or a pair (r_in, r_out) of ints, got {ranks!r}")
    if _is_int(ranks):
        r = _base.check_positive_int(ranks, "ranks")
        return (r, r)
    try:
        ranks = tuple(ranks)
    except TypeError:
        raise TypeError(f"ranks must be an int or a pair (r_in, r_out) of ints, got {ranks!r}") from None
    if len(ranks) != 2:
        raise ValueError(f"ranks must be an int or a pair (r_in, r_out) (one rank per channel mode), got {ranks!r}")
    return (_base.check_positive_int(ranks[0], "ranks[0]"), _base.check_positive_int(ranks[1], "ranks[1]"))


def _tucker2_ranks_for_rtol(x, rtol, caps) -> tuple[int, int]:
    """The smallest ``(r_in, r_out)`` (at most ``caps``) whose discarded squared singular values of the two channel
    unfoldings of ``x`` (shape ``(K, in, out)``) are each at most ``rtol^2 ||x||^2 / 2`` (eager)."""
    number = isinstance(rtol, (int, float, np.integer, np.floating)) and not isinstance(rtol, bool)
    if not number or not 0 <= rtol < math.inf:
        raise ValueError(f"rtol must be a non-negative finite float or None, got {rtol!r}")
    if isinstance(x, jax.core.Tracer):
        raise ValueError(
            "from_dense with rtol chooses the ranks from the kernel's values, which needs a concrete kernel; under "
            "jax.jit pass fixed ranks instead"
        )
    spectra = _tucker.higher_order_singular_values(x)
    budget = float(rtol) ** 2 * float(np.sum(spectra[1] ** 2)) / 2
    out = []
    for s, cap in zip(spectra[1:], caps):
        tails = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])  # tails[r] = sum_{i >= r} s_i^2
        out.append(min(cap, max(1, int(np.argmax(tails <= budget)))))
    return out[0], out[1]


@dataclasses.dataclass(frozen=True)
class TuckerConvSpec(ConvSpec):
    """A Tucker-2 convolution kernel: the channel modes compressed, the spatial window kept whole (Kim et al., 2016,
    "Compression of deep convolutional neural networks for fast and low power mobile applications").

    ``W[k, i, o] = sum_{a, b} A[i, a] G[k, a, b] B[o, b]`` with ``k`` the (multi-)index of the spatial window.
    Parameters: ``in_factor`` ``A`` of shape ``(in_features, r_in)``, ``core`` ``G`` of shape
    ``(*kernel_size, r_in, r_out)``, ``out_factor`` ``B`` of shape ``(out_features, r_out)``;
    ``in_features r_in + prod(kernel_size) r_in r_out + out_features r_out`` scalars.

    Factorised product: a 1x1 convolution ``in_features -> r_in`` (``x @ A``), the full spatial convolution
    ``r_in -> r_out`` with kernel ``G`` (carrying the strides, dilation and padding), a 1x1 convolution
    ``r_out -> out_features`` (``@ B^T``).

    Args:
      in_features, out_features: channels.
      kernel_size: an int (1-D) or one size per spatial axis.
      ranks: an int (both channel ranks) or ``(r_in, r_out)``.
      strides, padding, kernel_dilation: as ``nnx.Conv`` (zero padding only).

    Initialisation (``kernel_init=None``): all entries ``N(0, s^2)`` with
    ``s^2 = (1 / (fan_in r_in r_out))^(1/3)``, ``fan_in = prod(kernel_size) * in_features``: an entry of ``W`` is a
    sum of ``r_in r_out`` products of three independent zero-mean entries, so ``Var W = r_in r_out s^6 = 1 / fan_in``
    (``nnx.Conv``'s LeCun default), with distinct entries uncorrelated; hence ``Var y = ||x_patch||^2 / fan_in``.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.TuckerConvSpec(64, 128, (3, 3), ranks=(16, 32))
      >>> spec.param_shapes()["core"], spec.count_params()
      ((3, 3, 16, 32), 9728)
    """

    in_features: int
    out_features: int
    kernel_size: int | tuple[int, ...]
    ranks: int | tuple[int, int] = 1
    strides: int | tuple[int, ...] = 1
    padding: str | int | tuple = "SAME"
    kernel_dilation: int | tuple[int, ...] = 1

    def __post_init__(self):
        self._init_conv_fields()
        object.__setattr__(self, "ranks", _tucker2_ranks(self.ranks))

    def param_shapes(self):
        r_in, r_out = self.ranks
        return {
            "in_factor": (self.in_features, r_in),
            "core": self.kernel_size + (r_in, r_out),
            "out_factor": (self.out_features, r_out),
        }

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        std = (1.0 / (self.fan_in * self.ranks[0] * self.ranks[1])) ** (1.0 / 6.0)
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def to_tucker(self, params) -> Tucker:
        """The kernel as a :class:`tnkit.Tucker` of dims ``(*kernel_size, in_features, out_features)`` (identity
        factors on the spatial modes)."""
        p = dict(params)
        dtype = jnp.result_type(*[v.dtype for v in p.values()])
        eyes = [jnp.eye(k, dtype=dtype) for k in self.kernel_size]
        channel = [jnp.asarray(p["in_factor"], dtype), jnp.asarray(p["out_factor"], dtype)]
        return Tucker(jnp.asarray(p["core"], dtype), eyes + channel)

    def to_dense(self, params):
        n = self.num_spatial_dims
        p = dict(params)
        dtype = jnp.result_type(*[v.dtype for v in p.values()])
        mats = [jnp.asarray(p["in_factor"], dtype), jnp.asarray(p["out_factor"], dtype)]
        return _tucker.multi_mode_product(jnp.asarray(p["core"], dtype), mats, [n, n + 1])

    def apply_factorized(self, params, x, precision=None):
        p, x = _promoted(params, x)
        pads = self.padding_pairs(x.shape[1:-1])
        t = jnp.matmul(x, p["in_factor"], precision=precision)  # (B, *S, r_in)
        t = _conv(t, p["core"], self.strides, pads, self.kernel_dilation, precision)  # (B, *S', r_out)
        return jnp.matmul(t, p["out_factor"].T, precision=precision)

    def factorized_cost(self, batch, spatial_shape):
        r_in, r_out = self.ranks
        p_in, p_out = math.prod(spatial_shape), math.prod(self._output_spatial(spatial_shape))
        kk = math.prod(self.kernel_size)
        return batch * (p_in * self.in_features * r_in + p_out * kk * r_in * r_out + p_out * r_out * self.out_features)

    def rebuild_cost(self):
        # tnkit.tucker.multi_mode_product applies the mode with the smaller growth (rows / columns) first
        kk, (r_in, r_out), n_in, n_out = math.prod(self.kernel_size), self.ranks, self.in_features, self.out_features
        if n_in / r_in <= n_out / r_out:
            return kk * r_in * r_out * n_in + kk * n_in * r_out * n_out
        return kk * r_in * r_out * n_out + kk * r_in * n_out * n_in

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        ranks=None,
        rtol: float | None = None,
        strides=1,
        padding="SAME",
        kernel_dilation=1,
    ) -> tuple[TuckerConvSpec, _base.Params, _base.ConversionInfo]:
        """Tucker-2 of a dense ``(*kernel_size, in_features, out_features)`` kernel by sequentially truncated HOSVD.

        The kernel is viewed as a 3-mode tensor ``(prod(kernel_size), in_features, out_features)`` and passed to
        :func:`tnkit.tucker.sthosvd` in the order ``in, out, spatial``; the spatial factor is then multiplied back
        into the core, so the layer keeps the whole spatial window. With fixed ``ranks`` the spatial rank is
        ``min(prod(kernel_size), r_in r_out)``, which loses nothing once the channel modes are truncated, and the
        error obeys the HOSVD bound ``||W - W_T||^2 <= tail_in(r_in) + tail_out(r_out)`` (the squared singular
        values discarded from the two channel unfoldings). With ``rtol``, each channel rank is the smallest whose
        discarded tail is at most ``rtol^2 ||W||^2 / 2`` (from :func:`tnkit.tucker.higher_order_singular_values`;
        ``ranks`` are then upper bounds), so ``||W - W_T||_F <= rtol ||W||_F`` is guaranteed (eager: the ranks come
        from the data). The spatial window is never truncated.

        Args:
          kernel: the dense kernel.
          ranks: an int or ``(r_in, r_out)``; clipped to ``(in_features, out_features)`` and to the ranks a tensor
            can have (``r_in <= prod(kernel_size) r_out`` and vice versa).
          rtol: relative error bound.
          strides, padding, kernel_dilation: the geometry of the convolution (copied into the spec).

        Returns:
          ``(spec, params, info)`` with orthonormal ``in_factor`` and ``out_factor``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (3, 3, 4, 6))
          >>> spec, params, info = layers.TuckerConvSpec.from_dense(kernel, ranks=100)
          >>> spec.ranks, info.relative_error < 1e-5
          ((4, 6), True)
        """
        kernel = _check_kernel(kernel)
        if ranks is None and rtol is None:
            raise ValueError("from_dense needs ranks or rtol (or both), got neither")
        *ks, n_in, n_out = kernel.shape
        geometry = {"strides": strides, "padding": padding, "kernel_dilation": kernel_dilation}
        shape_spec = cls(n_in, n_out, tuple(ks), ranks=1 if ranks is None else ranks, **geometry)
        kk = math.prod(ks)
        x = kernel.reshape(kk, n_in, n_out)
        r_in, r_out = (n_in, n_out) if ranks is None else shape_spec.ranks
        if rtol is not None:
            r_in, r_out = _tucker2_ranks_for_rtol(x, rtol, (r_in, r_out))
        r_in, r_out = min(r_in, n_in, kk * min(r_out, n_out)), min(r_out, n_out, kk * min(r_in, n_in))
        t = _tucker.sthosvd(x, ranks=(min(kk, r_in * r_out), r_in, r_out), order=(1, 2, 0))
        core = _tucker.mode_product(t.core, t.factors[0], 0)  # (K, r_in, r_out): the spatial window back in full
        spec = cls(n_in, n_out, tuple(ks), ranks=t.ranks[1:], **geometry)
        params = {
            "in_factor": t.factors[1],
            "core": core.reshape(tuple(ks) + t.ranks[1:]),
            "out_factor": t.factors[2],
        }
        return spec, params, _base.conversion_info(spec, params, kernel)


# -------------------------------------------------------------------------------------------------------- TT


@dataclasses.dataclass(frozen=True)
class TTConvSpec(ConvSpec):
    """A TT convolution kernel (Garipov, Podoprikhin, Novikov and Vetrov, 2016, "Ultimate tensorization: compressing
    convolutional and FC layers alike"): a spatial core followed by a TT-matrix over the channel modes.

    With ``in_features = n_1 ... n_d`` (``in_modes``), ``out_features = m_1 ... m_d`` (``out_modes``), input channel
    ``i = (i_1, ..., i_d)`` and output channel ``o = (o_1, ..., o_d)`` (row-major), and ``k`` the spatial window
    (multi-)index::

        W[k, i, o] = sum_{a_0 .. a_{d-1}} S[k, a_0] G_1[a_0, o_1, i_1, a_1] ... G_d[a_{d-1}, o_d, i_d, 1]

    Parameters: ``spatial_core`` ``S`` of shape ``(*kernel_size, r_0)``, ``core_j`` ``G_{j+1}`` of shape
    ``(r_j, m_{j+1}, n_{j+1}, r_{j+1})`` for ``j < d``. ``ranks`` are the TT ranks of the chain ``(S, G_1, ..., G_d)``:
    ``(1, r_0, r_1, ..., r_{d-1}, 1)``, ``d + 2`` entries with ``r_0`` the spatial rank. Equivalently the matrix
    ``M[(k, o), i] = W[k, i, o]`` is the :class:`tnkit.TTMatrix` with cores ``S`` (as ``(1, K, 1, r_0)``),
    ``G_1, ..., G_d`` (:meth:`to_ttmatrix`).

    Factorised product: two orders, the cheaper one chosen at trace time from the shapes (:meth:`factorized_cost`).

    * *channels first* (Garipov et al.'s order): ``T[q, a_0, o] = sum_i x[q, i] (G_1 ... G_d)[a_0, o, i]`` at every
      input position ``q``, a TT-matrix product (:func:`tnkit.ttm.apply`, cores contracted one at a time, the first
      core read as ``(1, r_0 m_1, n_1, r_1)``) mapping ``in_features`` to ``r_0 out_features`` channels; then
      ``y[p, o] = sum_{k, a_0} T_pad[p s + k d, a_0, o] S[k, a_0]``, a grouped convolution (``r_0`` channels per
      output channel).
    * *spatial first*: ``Z[p, a_0, i] = sum_k x_pad[p s + k d, i] S[k, a_0]``, a depthwise convolution with channel
      multiplier ``r_0``; then ``y[p, o] = sum_{a_0, i} Z[p, a_0, i] (G_1 ... G_d)[a_0, o, i]`` at every output
      position, the TT-matrix product with the first core read as ``(1, m_1, r_0 n_1, r_1)``.

    The grouped and depthwise convolutions are sums over the ``prod(kernel_size)`` taps of strided slices (the
    multiply-adds of ``lax.conv_general_dilated`` with ``feature_group_count > 1``, several times faster on CPU).

    Args:
      in_features, out_features: channels.
      kernel_size: an int (1-D) or one size per spatial axis.
      ranks: an int (every inner rank, the spatial one included), the ``d`` inner ranks ``(r_0, ..., r_{d-1})``, or
        all ``d + 2``.
      in_modes, out_modes: factorisations of the channels, of equal length ``d``; chosen by
        :func:`tnkit.layers.factorize_features` with :func:`tnkit.layers.default_num_modes` when ``None``.
      strides, padding, kernel_dilation: as ``nnx.Conv`` (zero padding only).

    Initialisation (``kernel_init=None``): all entries ``N(0, s^2)`` with
    ``s^2 = (1 / (fan_in r_0 ... r_{d-1}))^(1 / (d + 1))``: an entry of ``W`` is a sum of ``r_0 ... r_{d-1}``
    products of ``d + 1`` independent zero-mean entries, so ``Var W = 1 / fan_in`` (``nnx.Conv``'s LeCun default)
    with distinct entries uncorrelated, and ``Var y = ||x_patch||^2 / fan_in``.

    Example:
      >>> from tnkit import layers
      >>> spec = layers.TTConvSpec(64, 128, (3, 3), ranks=8, in_modes=(8, 8), out_modes=(16, 8))
      >>> spec.ranks, spec.param_shapes()["core_0"]
      ((1, 8, 8, 1), (8, 16, 8, 8))
      >>> spec.count_params()
      8776
    """

    in_features: int
    out_features: int
    kernel_size: int | tuple[int, ...]
    ranks: int | tuple[int, ...] = 1
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None
    strides: int | tuple[int, ...] = 1
    padding: str | int | tuple = "SAME"
    kernel_dilation: int | tuple[int, ...] = 1

    def __post_init__(self):
        self._init_conv_fields()
        n_in, n_out = self.in_features, self.out_features
        given = [m for m in (self.in_modes, self.out_modes) if m is not None]
        d = len(tuple(given[0])) if given else _base.default_num_modes(n_in, n_out)
        in_modes = _base.resolve_modes(n_in, self.in_modes, d, "in_modes", "in_features")
        out_modes = _base.resolve_modes(n_out, self.out_modes, d, "out_modes", "out_features")
        if len(in_modes) != len(out_modes):
            raise ValueError(
                f"in_modes and out_modes must have the same length, got in_modes={in_modes} and out_modes={out_modes}"
            )
        object.__setattr__(self, "in_modes", in_modes)
        object.__setattr__(self, "out_modes", out_modes)
        object.__setattr__(self, "ranks", tt_ranks(self.ranks, len(in_modes) + 1))

    @property
    def num_modes(self) -> int:
        """``d``, the number of channel modes."""
        return len(self.in_modes)

    def param_shapes(self):
        r = self.ranks
        shapes = {"spatial_core": self.kernel_size + (r[1],)}
        for j in range(self.num_modes):
            shapes[f"core_{j}"] = (r[j + 1], self.out_modes[j], self.in_modes[j], r[j + 2])
        return shapes

    def init(self, key, dtype=jnp.float32, kernel_init=None):
        d = self.num_modes
        std = (1.0 / (self.fan_in * math.prod(self.ranks[1:-1]))) ** (0.5 / (d + 1))
        return _base.gaussian_factors(key, self.param_shapes(), std, dtype, kernel_init)

    def _cores(self, params):
        p = dict(params)
        dtype = jnp.result_type(*[v.dtype for v in p.values()])
        cores = [jnp.asarray(p[f"core_{j}"], dtype) for j in range(self.num_modes)]
        return jnp.asarray(p["spatial_core"], dtype), cores

    def to_ttmatrix(self, params) -> TTMatrix:
        """``M[(k, o), i] = W[k, i, o]`` as a :class:`tnkit.TTMatrix` with row modes ``(prod(kernel_size),
        *out_modes)`` and column modes ``(1, *in_modes)``."""
        spatial, cores = self._cores(params)
        kk = math.prod(self.kernel_size)
        return TTMatrix([spatial.reshape(1, kk, 1, self.ranks[1])] + cores)

    def to_dense(self, params):
        m = _ttm.to_dense(self.to_ttmatrix(params))  # (K * out, in)
        w = m.reshape(self.kernel_size + (self.out_features, self.in_features))
        return jnp.swapaxes(w, -1, -2)

    # the two orders of the factorised product -----------------------------------------------------------------

    def _channel_ranks(self):
        return (1,) + self.ranks[2:]

    def _order_costs(self, batch, spatial_shape):
        """``{"channels_first": ..., "spatial_first": ...}`` multiply-adds, each with its best TT sweep."""
        r0, kk = self.ranks[1], math.prod(self.kernel_size)
        p_in, p_out = math.prod(spatial_shape), math.prod(self._output_spatial(spatial_shape))
        m, n, rr = self.out_modes, self.in_modes, self._channel_ranks()
        sweep = lambda c: min(c[_ttm.ApplyOrder.LEFT_TO_RIGHT], c[_ttm.ApplyOrder.RIGHT_TO_LEFT])  # noqa: E731
        first = sweep(_ttm.mode_costs((r0 * m[0],) + m[1:], n, rr, batch * p_in))
        first += batch * p_out * kk * r0 * self.out_features
        second = batch * p_out * kk * self.in_features * r0
        second += sweep(_ttm.mode_costs(m, (r0 * n[0],) + n[1:], rr, batch * p_out))
        return {"channels_first": first, "spatial_first": second}

    def factorized_cost(self, batch, spatial_shape):
        return min(self._order_costs(batch, spatial_shape).values())

    def rebuild_cost(self):
        rows, cols = (math.prod(self.kernel_size),) + self.out_modes, (1,) + self.in_modes
        return _ttm.mode_costs(rows, cols, self.ranks, 0)[_ttm.ApplyOrder.DENSE]

    # Measured on a 2-core CPU (float32, forward + backward, 3x3 SAME kernels, channels 32-1024, ranks 2-16, 8x8 and
    # 16x16 images, batch 4-64; 6 shapes): the factorised path takes 3.6-9.1x the dense convolution's time per
    # multiply-add (its grouped and depthwise parts are sums of strided slices, memory-bound, against one
    # convolution call), so AUTO weighs its multiply-adds by 4. Before, AUTO picked the factorised path at 0.34x the
    # dense multiply-adds, where it ran 1.7-3.1x slower.
    _FACTORIZED_TIME_PER_MAC = 4.0

    def estimated_costs(self, input_shape):
        """:meth:`costs` with the factorised multiply-adds weighted by their measured relative cost (4x a dense
        convolution's); :meth:`costs` and :meth:`flops` still count exact multiply-adds."""
        costs = self.costs(input_shape)
        factorized = _base.Implementation.FACTORIZED
        return {**costs, factorized: self._FACTORIZED_TIME_PER_MAC * costs[factorized]}

    @staticmethod
    def _sweep(a: TTMatrix, batch: int) -> _ttm.ApplyOrder:
        c = _ttm.apply_cost(a, batch)
        ltr, rtl = c[_ttm.ApplyOrder.LEFT_TO_RIGHT], c[_ttm.ApplyOrder.RIGHT_TO_LEFT]
        return _ttm.ApplyOrder.LEFT_TO_RIGHT if ltr <= rtl else _ttm.ApplyOrder.RIGHT_TO_LEFT

    def apply_factorized(self, params, x, precision=None):
        p, x = _promoted(params, x)
        spatial, cores = self._cores(p)
        r0, n_in, n_out = self.ranks[1], self.in_features, self.out_features
        m1, n1, r1 = cores[0].shape[1:]
        b, sp = x.shape[0], x.shape[1:-1]
        pads = self.padding_pairs(sp)
        costs = self._order_costs(b, sp)
        if costs["channels_first"] <= costs["spatial_first"]:
            a = TTMatrix([cores[0].reshape(1, r0 * m1, n1, r1)] + cores[1:])  # rows (a_0, o), columns i
            t = _ttm.apply(a, x, order=self._sweep(a, b * math.prod(sp)), precision=precision)  # (B, *S, r0 * out)
            # y[p, o] = sum_{k, a} T[p s + k d, a, o] S[k, a]: a grouped convolution, as a sum over the ranks a
            # (contiguous channel blocks of t) and the taps k of scalar multiples of strided slices
            geometry = (self.kernel_size, self.strides, pads, self.kernel_dilation)
            blocks = (lax.slice_in_dim(t, a * n_out, (a + 1) * n_out, axis=-1) for a in range(r0))
            return sum(w * spatial[ks + (a,)] for a, block in enumerate(blocks) for ks, w in _windows(block, *geometry))
        # Z[p, a, i] = sum_k x[p s + k d, i] S[k, a]: depthwise convolution with multiplier r0, as a sum over taps
        n = self.num_spatial_dims
        taps = _windows(x, self.kernel_size, self.strides, pads, self.kernel_dilation)
        z = sum(w[..., None, :] * spatial[ks].reshape((1,) * (n + 1) + (r0, 1)) for ks, w in taps)
        z = z.reshape(z.shape[:-2] + (r0 * n_in,))  # columns (a_0, i)
        first = jnp.swapaxes(cores[0], 0, 1).reshape(1, m1, r0 * n1, r1)  # columns (a_0, i_1)
        a = TTMatrix([first] + cores[1:])
        return _ttm.apply(a, z, order=self._sweep(a, math.prod(z.shape[:-1])), precision=precision)

    @classmethod
    def from_dense(
        cls,
        kernel,
        *,
        max_rank: int | None = None,
        rtol: float | None = None,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        strides=1,
        padding="SAME",
        kernel_dilation=1,
    ) -> tuple[TTConvSpec, _base.Params, _base.ConversionInfo]:
        """TT-SVD (:func:`tnkit.ttm.from_dense`) of a dense ``(*kernel_size, in_features, out_features)`` kernel.

        The kernel is read as the matrix ``M[(k, o), i] = W[k, i, o]`` with row modes ``(prod(kernel_size),
        *out_modes)`` and column modes ``(1, *in_modes)``; its TT-matrix has the spatial core first. ``max_rank``
        caps every TT rank (jit-compatible); ``rtol`` bounds ``||W - W_tt||_F <= rtol ||W||_F`` (eager). At least
        one of them must be given.

        Returns:
          ``(spec, params, info)``.

        Example:
          >>> import jax
          >>> from tnkit import layers
          >>> kernel = jax.random.normal(jax.random.key(0), (3, 3, 4, 6))
          >>> spec, params, info = layers.TTConvSpec.from_dense(kernel, rtol=1e-6, in_modes=(2, 2), out_modes=(3, 2))
          >>> spec.ranks, info.relative_error < 1e-5
          ((1, 9, 4, 1), True)
        """
        kernel = _check_kernel(kernel)
        if max_rank is None and rtol is None:
            raise ValueError("from_dense needs max_rank or rtol (or both), got neither")
        *ks, n_in, n_out = kernel.shape
        geometry = {"strides": strides, "padding": padding, "kernel_dilation": kernel_dilation}
        shape_spec = cls(n_in, n_out, tuple(ks), ranks=1, in_modes=in_modes, out_modes=out_modes, **geometry)
        kk = math.prod(ks)
        m = jnp.swapaxes(kernel.reshape(kk, n_in, n_out), 1, 2).reshape(kk * n_out, n_in)
        a = _ttm.from_dense(
            m, (kk,) + shape_spec.out_modes, (1,) + shape_spec.in_modes, max_rank=max_rank, rtol=rtol
        )
        spec = cls(
            n_in, n_out, tuple(ks), ranks=a.ranks, in_modes=shape_spec.in_modes, out_modes=shape_spec.out_modes,
            **geometry,
        )
        params = {"spatial_core": a.cores[0].reshape(tuple(ks) + (a.ranks[1],))}
        params.update({f"core_{j}": c for j, c in enumerate(a.cores[1:])})
        return spec, params, _base.conversion_info(spec, params, kernel)
