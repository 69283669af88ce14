"""The functional core of tnkit's layers: specs, one dispatch point, initialisation and feature factorisation.

A *spec* is a frozen, hashable dataclass that describes a structured weight statically (features, modes, ranks). It
knows the shapes of its parameters, how to initialise them, how to rebuild the dense weight, how to apply the weight
without rebuilding it, and what each way costs. Parameters are a plain ``dict[str, jax.Array]``. The Flax nnx layers
(:mod:`tnkit.nn`) and the Equinox layers (:mod:`tnkit.eqx`) hold a spec and a parameter dict and call :func:`apply`:
the maths lives here once.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Implementation",
    "register_implementation",
    "registered_implementations",
    "Spec",
    "LinearSpec",
    "ConversionInfo",
    "apply",
    "factorize_features",
    "default_num_modes",
]

Params = dict[str, jax.Array]
Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]


# ------------------------------------------------------------------------------------------------- implementations


@dataclasses.dataclass(frozen=True)
class Implementation:
    """How a layer computes its product; the one dispatch point of every tnkit layer.

    Built-in values:

    * ``Implementation.AUTO``: the cheaper of ``FACTORIZED`` and ``DENSE`` for the input shape at hand, by the
      spec's multiply-add model (:meth:`Spec.costs`), decided at trace time from static shapes.
    * ``Implementation.FACTORIZED``: contract the input with the factors one at a time, never forming the weight.
    * ``Implementation.DENSE``: rebuild the dense weight from the factors, then one matmul (or convolution). Wins
      for large batches, where the rebuild is amortised.

    Other values are made by :func:`register_implementation` (for example a Pallas kernel for one spec type).
    The choice is made per layer (``implementation=`` at construction) or per call; there is deliberately no global
    context, because a context read at trace time would be invisible to ``jax.jit``'s cache.

    Example:
      >>> from tnkit import layers
      >>> layers.Implementation.AUTO
      Implementation('auto')
    """

    name: str

    AUTO: ClassVar[Implementation]
    FACTORIZED: ClassVar[Implementation]
    DENSE: ClassVar[Implementation]

    def __repr__(self) -> str:
        return f"Implementation({self.name!r})"


Implementation.AUTO = Implementation("auto")
Implementation.FACTORIZED = Implementation("factorized")
Implementation.DENSE = Implementation("dense")
_BUILTIN = (Implementation.AUTO, Implementation.FACTORIZED, Implementation.DENSE)

# (spec type, implementation) -> fn(spec, params, x, *, precision) -> y
_REGISTRY: dict[tuple[type, Implementation], Callable[..., jax.Array]] = {}


def register_implementation(name: str, spec_type: type, fn: Callable[..., jax.Array]) -> Implementation:
    """Register ``fn`` as a way to apply layers of ``spec_type``; returns the :class:`Implementation` to select it.

    Args:
      name: a new name (not ``"auto"``, ``"factorized"`` or ``"dense"``).
      spec_type: a :class:`Spec` subclass, for example :class:`tnkit.layers.TTLinearSpec`.
      fn: ``fn(spec, params, x, *, precision) -> y`` with the same contract as the spec's
        :meth:`Spec.apply_factorized` (``x`` already validated and flattened to the spec's input layout).

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import layers
      >>> def via_dense(spec, params, x, *, precision):
      ...     return jnp.matmul(x, spec.to_dense(params), precision=precision)
      >>> impl = layers.register_implementation("doc_example", layers.TTLinearSpec, via_dense)
      >>> impl
      Implementation('doc_example')
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    impl = Implementation(name)
    if impl in _BUILTIN:
        raise ValueError(f"name {name!r} is reserved for a built-in implementation")
    if not (isinstance(spec_type, type) and issubclass(spec_type, Spec)):
        raise TypeError(f"spec_type must be a subclass of tnkit.layers.Spec, got {spec_type!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _REGISTRY[(spec_type, impl)] = fn
    return impl


def registered_implementations(spec_type: type) -> tuple[Implementation, ...]:
    """The implementations that can apply ``spec_type``: the built-in ones, then the registered ones.

    Example:
      >>> from tnkit import layers
      >>> layers.registered_implementations(layers.TTLinearSpec)[:3]
      (Implementation('auto'), Implementation('factorized'), Implementation('dense'))
    """
    extra = tuple(impl for (t, impl) in _REGISTRY if issubclass(spec_type, t))
    return _BUILTIN + extra


# -------------------------------------------------------------------------------------------------- conversions


class ConversionInfo(NamedTuple):
    """What a conversion from a dense weight achieved.

    Attributes:
      relative_error: ``||W - W_approx||_F / ||W||_F`` of the weight (bias excluded; the bias is copied exactly).
      num_params: parameters of the structured weight.
      dense_params: parameters of the dense weight it replaces.
    """

    relative_error: float
    num_params: int
    dense_params: int


@functools.partial(jax.jit, static_argnums=0)
def dense_weight(spec: Spec, params: Mapping[str, jax.Array]) -> jax.Array:
    """``spec.to_dense(params)`` as one compiled program per spec (the eager call would compile every small op on
    its own, which dominates a conversion's time for small layers)."""
    return spec.to_dense(params)


def conversion_info(spec: Spec, params: Mapping[str, jax.Array], reference) -> ConversionInfo:
    """The :class:`ConversionInfo` of a conversion of the dense ``reference`` (a kernel or table) into ``spec`` /
    ``params``: the relative error of the rebuilt weight, and both parameter counts."""
    error = relative_error(reference, dense_weight(spec, params))
    return ConversionInfo(error, spec.count_params(), int(np.size(reference)))


def relative_error(dense, approx) -> float:
    """``||dense - approx||_F / ||dense||_F`` as a Python float (0 when both are zero)."""
    dense = np.asarray(dense, dtype=np.complex128 if np.iscomplexobj(dense) else np.float64)
    approx = np.asarray(approx)
    denom = np.linalg.norm(dense)
    num = np.linalg.norm(dense - approx)
    return float(num / denom) if denom > 0 else float(num)


# ------------------------------------------------------------------------------------------------------- specs


class Spec(abc.ABC):
    """Static description of a structured weight; subclasses are frozen dataclasses (hashable, jit-static).

    Subclasses implement :meth:`param_shapes`, :meth:`init`, :meth:`to_dense`, :meth:`apply_factorized`,
    :meth:`apply_dense`, :meth:`check_input` and :meth:`costs`.
    """

    @abc.abstractmethod
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter array."""

    @abc.abstractmethod
    def init(self, key: jax.Array, dtype=jnp.float32, kernel_init: Initializer | None = None) -> Params:
        """Parameters; with ``kernel_init=None`` their product has the variance of the dense default init."""

    @abc.abstractmethod
    def to_dense(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """The dense weight in the layout of the dense layer it replaces."""

    @abc.abstractmethod
    def apply_factorized(self, params: Mapping[str, jax.Array], x: jax.Array, precision=None) -> jax.Array:
        """The product with an input already passed through :meth:`check_input`, never forming the weight."""

    def apply_factorized_with_bias(
        self, params: Mapping[str, jax.Array], x: jax.Array, bias: jax.Array | None, precision=None
    ) -> jax.Array:
        """:meth:`apply_factorized` plus ``bias`` (``None``: no bias) over the last axis. Specs whose contraction runs
        in row chunks override this to add the bias inside each chunk, so no second output-sized buffer is needed."""
        return add_bias(self.apply_factorized(params, x, precision), bias)

    @abc.abstractmethod
    def apply_dense(self, weight: jax.Array, x: jax.Array, precision=None) -> jax.Array:
        """The product of the dense weight (from :meth:`to_dense`) with a checked input."""

    @abc.abstractmethod
    def check_input(self, x) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
        """Validate ``x``; return it in the layout the ``apply_*`` methods take and a function restoring the shape."""

    @abc.abstractmethod
    def costs(self, input_shape: Sequence[int]) -> dict[Implementation, int]:
        """Multiply-adds of the forward pass for each built-in implementation (``FACTORIZED``, ``DENSE``)."""

    def count_params(self) -> int:
        """Number of scalars in the parameters (bias excluded)."""
        return sum(math.prod(s) for s in self.param_shapes().values())

    def choose(self, input_shape: Sequence[int]) -> Implementation:
        """The implementation ``AUTO`` picks for ``input_shape``: the cheapest by :meth:`estimated_costs`."""
        costs = self.estimated_costs(tuple(input_shape))
        return min(costs, key=costs.get)

    def estimated_costs(self, input_shape: Sequence[int]) -> dict[Implementation, float]:
        """Relative run time of each built-in implementation (multiply-add equivalents), the input of :meth:`choose`.

        Defaults to the multiply-adds of :meth:`costs`. A spec whose implementations differ in time per multiply-add
        (memory-bound small contractions, a rebuild dominated by transposes) overrides it with a calibrated model;
        :meth:`costs` and :meth:`flops` keep counting exact multiply-adds."""
        return self.costs(tuple(input_shape))

    def flops(self, input_shape: Sequence[int], implementation: Implementation = Implementation.AUTO) -> int:
        """Floating-point operations (2 per multiply-add) of the forward pass on an input of ``input_shape``."""
        implementation = _check_implementation(implementation)
        if implementation is Implementation.AUTO:
            implementation = self.choose(input_shape)
        costs = self.costs(tuple(input_shape))
        if implementation not in costs:
            raise ValueError(f"no cost model for {implementation!r}; the built-in ones are {tuple(costs)}")
        return 2 * costs[implementation]

    def check_params(self, params: Mapping[str, jax.Array], name: str = "params") -> None:
        """Raise a clear error unless ``params`` has exactly the names and shapes of :meth:`param_shapes`."""
        expected = self.param_shapes()
        if not isinstance(params, Mapping):
            raise TypeError(f"{name} must be a mapping of parameter arrays, got {type(params).__name__}")
        if set(params) != set(expected):
            raise ValueError(f"{name} must have the keys {sorted(expected)}, got {sorted(params)}")
        for k, shape in expected.items():
            got = tuple(jnp.shape(params[k]))
            if got != shape:
                raise ValueError(f"{name}[{k!r}] must have shape {shape} for {self}, got {got}")


class LinearSpec(Spec):
    """A structured ``(in_features, out_features)`` kernel used as ``y = x @ W`` (the ``nnx.Linear`` layout).

    Subclasses are frozen dataclasses with ``in_features`` and ``out_features`` fields and implement
    :meth:`param_shapes`, :meth:`init`, :meth:`to_dense`, :meth:`apply_factorized` and :meth:`factorized_cost`.
    """

    in_features: int
    out_features: int

    def check_input(self, x):
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., in_features) = (..., {self.in_features}), got {x.shape}")
        batch_shape = x.shape[:-1]
        out = self.out_features
        return x.reshape(-1, self.in_features), lambda y: y.reshape(batch_shape + (out,))

    def apply_dense(self, weight, x, precision=None):
        return jnp.matmul(x, weight, precision=precision)

    @abc.abstractmethod
    def factorized_cost(self, batch: int) -> int:
        """Multiply-adds of :meth:`apply_factorized` on ``batch`` rows."""

    def rebuild_cost(self) -> int:
        """Multiply-adds of :meth:`to_dense` (defaults to one pass over the dense weight per parameter block)."""
        return self.in_features * self.out_features

    def costs(self, input_shape):
        batch = math.prod(input_shape[:-1])
        return {
            Implementation.FACTORIZED: self.factorized_cost(batch),
            Implementation.DENSE: self.rebuild_cost() + batch * self.in_features * self.out_features,
        }


def _check_implementation(implementation) -> Implementation:
    if not isinstance(implementation, Implementation):
        raise TypeError(
            f"implementation must be a tnkit.layers.Implementation (AUTO, FACTORIZED, DENSE or one returned by "
            f"register_implementation), got {implementation!r}"
        )
    return implementation


def apply(
    spec: Spec,
    params: Mapping[str, jax.Array],
    x,
    *,
    implementation: Implementation = Implementation.AUTO,
    precision=None,
    bias: jax.Array | None = None,
) -> jax.Array:
    """The product of the structured weight ``spec``/``params`` with ``x``: the one dispatch point of tnkit layers.

    Args:
      spec: a :class:`Spec` (for a linear spec, ``x`` has shape ``(..., in_features)`` and the result
        ``(..., out_features)``).
      params: the parameter dict, with the shapes of ``spec.param_shapes()``.
      x: the input.
      implementation: an :class:`Implementation`; ``AUTO`` picks by :meth:`Spec.costs` at trace time.
      precision: ``jax.lax.Precision`` passed to every contraction.
      bias: optional bias of shape ``(spec.out_features,)`` (output features, or output channels of a conv spec),
        added over the last axis of the result. Passing it here rather than adding it afterwards lets a chunked
        factorised contraction add it chunk by chunk (less activation memory).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from tnkit import layers
      >>> spec = layers.TTLinearSpec(16, 8, ranks=3, in_modes=(4, 4), out_modes=(2, 4))
      >>> params = spec.init(jax.random.key(0))
      >>> x = jnp.ones((5, 16))
      >>> y = layers.apply(spec, params, x)
      >>> y.shape
      (5, 8)
      >>> bool(jnp.allclose(y, x @ spec.to_dense(params), atol=1e-5))
      True
    """
    if not isinstance(spec, Spec):
        raise TypeError(f"spec must be a tnkit.layers.Spec, got {type(spec).__name__}")
    implementation = _check_implementation(implementation)
    spec.check_params(params)
    x, restore = spec.check_input(x)
    if implementation is Implementation.AUTO:
        implementation = spec.choose(x.shape)
    if bias is not None:
        bias = jnp.asarray(bias)
        n_out = spec.out_features
        if bias.shape != (n_out,):
            raise ValueError(f"bias must have shape (out_features,) = ({n_out},), got {bias.shape}")
    if implementation is Implementation.FACTORIZED:
        return restore(spec.apply_factorized_with_bias(params, x, bias, precision))
    if implementation is Implementation.DENSE:
        y = spec.apply_dense(spec.to_dense(params), x, precision)
    else:
        fn = next((f for (t, impl), f in _REGISTRY.items() if impl == implementation and isinstance(spec, t)), None)
        if fn is None:
            raise ValueError(
                f"implementation {implementation!r} is not registered for {type(spec).__name__}; available: "
                f"{registered_implementations(type(spec))}"
            )
        y = fn(spec, params, x, precision=precision)
    return restore(add_bias(y, bias))


def add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``y + bias`` over the last axis (explicitly broadcast: tnkit runs under ``jax_numpy_rank_promotion="raise"``);
    ``y`` when ``bias`` is ``None``."""
    return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)


# ------------------------------------------------------------------------------------------------ feature modes


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def factorize_features(n: int, num_modes: int) -> tuple[int, ...]:
    """Split ``n`` into ``num_modes`` integer factors that are as equal as the primes of ``n`` allow.

    Primes are placed largest first into the currently smallest factor; the result is sorted in decreasing order.
    Factors of 1 appear when ``n`` has fewer prime factors than ``num_modes``.

    Example:
      >>> from tnkit import layers
      >>> layers.factorize_features(4096, 4)
      (8, 8, 8, 8)
      >>> layers.factorize_features(784, 3)
      (14, 8, 7)
      >>> layers.factorize_features(10, 3)
      (5, 2, 1)
    """
    n = _check_positive_int(n, "n")
    num_modes = _check_positive_int(num_modes, "num_modes")
    bins = [1] * num_modes
    for p in sorted(_prime_factors(n), reverse=True):
        i = int(np.argmin(bins))
        bins[i] *= p
    return tuple(sorted(bins, reverse=True))


def default_num_modes(*features: int) -> int:
    """The number of modes used when none is given: about one mode per factor of 8, between 2 and 6.

    Example:
      >>> from tnkit import layers
      >>> layers.default_num_modes(4096, 4096), layers.default_num_modes(784, 10)
      (4, 3)
    """
    biggest = max(_check_positive_int(f, "features") for f in features)
    return int(min(6, max(2, round(math.log2(max(biggest, 2)) / 3))))


def resolve_modes(features: int, modes, num_modes: int, name: str, features_name: str) -> tuple[int, ...]:
    """``modes`` validated against ``features`` (or chosen by :func:`factorize_features` when ``None``)."""
    if modes is None:
        return factorize_features(features, num_modes)
    try:
        modes = tuple(int(m) for m in modes)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive ints or None, got {modes!r}") from None
    if not modes or any(m < 1 for m in modes):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {modes}")
    if math.prod(modes) != features:
        raise ValueError(f"{name}={modes} multiplies to {math.prod(modes)}, but {features_name}={features}")
    return modes


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


check_positive_int = _check_positive_int


def gaussian_factors(
    key: jax.Array,
    shapes: Mapping[str, tuple[int, ...]],
    std: float | Mapping[str, float],
    dtype,
    kernel_init: Initializer | None,
) -> Params:
    """Independent parameters: ``N(0, std**2)`` (complex: circular, same total variance) or ``kernel_init``.

    Without ``kernel_init`` all factors come from one draw of ``_draw_size(total)`` numbers (sliced and reshaped):
    eagerly, every distinct shape given to ``jax.random.normal`` compiles its own sampling program (about a second
    on a CPU), so one draw in a few bucketed sizes makes building a layer fast. ``kernel_init`` is called once per
    factor with its own key, as a user-supplied initializer expects.
    """
    if kernel_init is not None:
        keys = jax.random.split(key, len(shapes))
        items = zip(keys, shapes.items())
        return {name: jnp.asarray(kernel_init(k, shape, dtype), dtype) for k, (name, shape) in items}
    sizes = [math.prod(shape) for shape in shapes.values()]
    total = sum(sizes)
    flat = jax.random.normal(key, (_draw_size(total),), dtype)
    offsets = np.cumsum([0] + sizes)
    out = {}
    for k, (name, shape) in enumerate(shapes.items()):
        scale = std[name] if isinstance(std, Mapping) else std
        out[name] = (scale * flat[offsets[k] : offsets[k + 1]]).reshape(shape).astype(dtype)
    return out


def _draw_size(total: int) -> int:
    """``total`` rounded up to a power of two (at most 2**22), or to a multiple of 2**20 above that."""
    if total <= 1 << 22:
        return 1 << max(total - 1, 0).bit_length()
    return -(-total // (1 << 20)) << 20


def promote(dtype, *trees):
    """Cast every array in ``trees`` to ``dtype`` (or, when ``None``, to their common result type)."""
    leaves = [leaf for t in trees for leaf in jax.tree_util.tree_leaves(t)]
    target = dtype if dtype is not None else jnp.result_type(*leaves)
    cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, target), t)  # noqa: E731
    return tuple(cast(t) for t in trees)
