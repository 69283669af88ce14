"""General tensor-network contraction: einsum, ncon and labelled networks, with cached contraction paths.

Three ways to describe the same thing, a network of arrays whose axes carry labels:

  * :func:`einsum` -- NumPy's notation: ``einsum("ij,jk->ik", a, b)``, the implicit form ``einsum("ij,jk", a,
    b)``, ``...`` for leading axes, any Unicode character as a label, and the interleaved form ``einsum(a, [0, 1],
    b, [1, 2], [0, 2])`` for networks with more labels than there are letters.
  * :func:`ncon` -- the ncon convention (TensorNetwork's ``tn.ncon``): positive integers are contracted (each
    exactly twice), negative integers are open legs, and the result's axes are ordered ``-1, -2, ...``.
  * :func:`contract` -- arbitrary hashable labels (strings, ints, tuples, ...):
    ``contract([a, b], [("i", "j"), ("j", "k")], ("i", "k"))``.

Semantics (all three). The result is the einsum of the network: the product of all tensors, summed over every label
that is not in the output. So a label may appear in any number of tensors: twice is an ordinary bond, once (and
not in the output) is summed away, twice within one tensor is a trace (or a diagonal if it is also in the output),
three or more times is a hyperedge, and tensors sharing no label form an outer product. Output labels must be
distinct and appear in some input. Every occurrence of a label must have the same size: nothing is broadcast (an
``einsum`` ellipsis may stand for different numbers of axes in different operands, aligned from the right as in
NumPy, but a size-1 axis is never stretched). Dtypes follow JAX's type promotion, as in ``jnp.einsum``; there is no
conjugation (conjugate the bra yourself).

Execution. The network is contracted pairwise along a contraction path: first each tensor sums away the labels
only it has and takes its traces/diagonals (a one-operand einsum), then each step of the path contracts two
operands with a two-operand ``jnp.einsum`` at ``precision=lax.Precision.HIGHEST``, keeping the labels still needed
by the output or by another operand, and finally the result is transposed to the output order. The same executor
runs paths from opt_einsum, from cotengra and paths given by hand, inside one ``jax.jit`` (keyed by the path), so
everything works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``, and a repeated eager call reuses the compiled
contraction. XLA's compile time grows with the number of steps (on CPU, about 0.1 s per pairwise step).

Paths. ``optimize=`` takes a :class:`PathStrategy`, a :class:`HyperSearch` (cotengra settings) or an explicit path:

  =====================  ===================================================================================
  ``AUTO`` (default)     ``OPTIMAL`` for networks of up to ``AUTO_OPTIMAL_MAX_TENSORS = 16`` tensors (the
                         threshold of opt_einsum's own ``"auto-hq"``; its dynamic programming takes ~0.03 s at
                         16 tensors of a random 3-regular or grid network and ~4 s at 25), ``HYPER`` above it.
  ``GREEDY``             opt_einsum's ``"greedy"``: milliseconds for any size, often 2x the optimal flops.
  ``RANDOM_GREEDY``      opt_einsum's ``"random-greedy-128"``: 128 randomised greedy trials (~0.1-0.6 s).
  ``OPTIMAL``            opt_einsum's ``"dp"`` (dynamic programming): the flop-minimal contraction tree among
                         those without outer products (outer products only where the network is disconnected).
                         Exponential time: for networks of up to ~20 tensors.
  ``HYPER``              cotengra's ``HyperOptimizer`` with the defaults of :class:`HyperSearch` (32 trials,
                         flops minimised, no parallel workers). If cotengra is not installed this silently uses
                         ``RANDOM_GREEDY`` instead (cotengra is optional; :func:`contraction_cost` reports which
                         strategy ran).
  =====================  ===================================================================================

Networks of one or two tensors (after summing away private labels) need no search. An explicit path is a sequence
of steps, each a tuple of positions in the current list of operands; the operands of a step are removed and their
contraction appended at the end (the format of ``opt_einsum.contract_path``, ``np.einsum_path`` -- its leading
``"einsum_path"`` is ignored -- and cotengra's ``ContractionTree.get_path()``). A step of three or more operands is
contracted left to right, pairwise.

Path cache. Paths found by a strategy are kept in a module-level LRU cache of ``PATH_CACHE_MAXSIZE = 512``
entries, keyed by the network's structure (labels renamed by first appearance, so label names do not matter), the
operands' shapes and the strategy -- not by dtype or values. A repeated call with the same shapes reuses the path
without searching; see :func:`path_cache_info` and :func:`clear_path_cache`. Paths are found at trace time from
static shapes, so under ``jit`` the search runs once per compilation; under ``vmap`` the shapes are those of one
example, so the path is the one for a single example. cotengra's search is randomised, so the path (never the
value) may differ between processes.

Flop counts. :func:`contraction_cost` counts the way opt_einsum does (``opt_einsum.helpers.flop_count``): a
contraction over the set of labels ``L`` of ``t`` terms costs ``prod(size(L)) * max(t - 1, 1)``, plus
``prod(size(L))`` if it sums over a label -- so a matrix product ``(m, k) x (k, n)`` costs ``2 m k n``. Every einsum
that tnkit executes is counted, the one-operand reductions included.

TensorNetwork. :func:`from_tensornetwork` turns a graph of ``tensornetwork`` nodes into arrays and labels, and
:func:`to_tensornetwork` does the reverse (hyperedges and summed labels become ``CopyNode`` s), so that
``tn.contractors.auto(graph.nodes, output_edge_order=graph.output_edges)`` equals :func:`contract`. Both are eager
and import ``tensornetwork`` only when called. As in :mod:`tnkit.interop`, the NumPy backend is the default
because TensorNetwork 0.4.6's JAX backend is partly broken on current JAX.

Example:
  >>> import jax.numpy as jnp
  >>> from tnkit import contract
  >>> a, b, c = jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.ones((4, 5))
  >>> contract.einsum("ij,jk,kl->il", a, b, c).shape
  (2, 5)
  >>> contract.ncon([a, b, c], [[-1, 1], [1, 2], [2, -2]]).shape
  (2, 5)
  >>> float(contract.contract([a, b, c], [("i", "j"), ("j", "k"), ("k", "l")], ()))
  120.0
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import itertools
import math
import threading
import warnings
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import opt_einsum
from jax import lax

from tnkit import interop

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    import tensornetwork

__all__ = [
    "PathStrategy",
    "HyperSearch",
    "ContractionCost",
    "PathCacheInfo",
    "Network",
    "NodeGraph",
    "einsum",
    "ncon",
    "contract",
    "contraction_path",
    "contraction_cost",
    "path_cache_info",
    "clear_path_cache",
    "from_tensornetwork",
    "to_tensornetwork",
    "AUTO_OPTIMAL_MAX_TENSORS",
    "PATH_CACHE_MAXSIZE",
]

_HIGHEST = lax.Precision.HIGHEST

AUTO_OPTIMAL_MAX_TENSORS = 16
"""``PathStrategy.AUTO`` uses ``OPTIMAL`` up to this many tensors and ``HYPER`` above."""

PATH_CACHE_MAXSIZE = 512
"""Number of contraction paths kept by the module-level LRU cache."""


# ------------------------------------------------------------------------------------------------- path options


class PathStrategy(enum.Enum):
    """How a contraction path is searched for; see the table in the module docstring.

    Attributes:
      AUTO: ``OPTIMAL`` up to ``AUTO_OPTIMAL_MAX_TENSORS`` tensors, ``HYPER`` above.
      GREEDY: opt_einsum's greedy search (fast, not optimal).
      RANDOM_GREEDY: opt_einsum's ``"random-greedy-128"``.
      OPTIMAL: opt_einsum's dynamic programming (``"dp"``), flop-optimal; exponential time.
      HYPER: cotengra's ``HyperOptimizer`` with :class:`HyperSearch`'s defaults (``RANDOM_GREEDY`` without cotengra).
    """

    AUTO = "auto"
    GREEDY = "greedy"
    RANDOM_GREEDY = "random-greedy"
    OPTIMAL = "optimal"
    HYPER = "hyper"


@dataclasses.dataclass(frozen=True)
class HyperSearch:
    """Settings of a cotengra ``HyperOptimizer`` search (minimising flops, no parallel workers, no progress bar).

    Without cotengra installed, a search with these settings falls back to ``PathStrategy.RANDOM_GREEDY``.

    Attributes:
      max_repeats: number of trial contraction trees (``HyperOptimizer(max_repeats=...)``), a positive int.
      max_time: optional time limit of the search in seconds (``HyperOptimizer(max_time=...)``), a positive
        number; ``None`` (default) for no limit. A limit makes the path depend on the machine's speed.

    Example:
      >>> from tnkit import contract
      >>> contract.HyperSearch(max_repeats=8)
      HyperSearch(max_repeats=8, max_time=None)
    """

    max_repeats: int = 32
    max_time: float | None = None

    def __post_init__(self):
        if not isinstance(self.max_repeats, (int, np.integer)) or isinstance(self.max_repeats, bool) or (
            self.max_repeats < 1
        ):
            raise ValueError(f"max_repeats must be a positive int, got {self.max_repeats!r}")
        if self.max_time is not None and (
            isinstance(self.max_time, bool)
            or not isinstance(self.max_time, (int, float, np.integer, np.floating))
            or not 0 < self.max_time < math.inf
        ):
            raise ValueError(f"max_time must be a positive finite number of seconds or None, got {self.max_time!r}")


class ContractionCost(NamedTuple):
    """The path of a contraction and what executing it costs.

    Attributes:
      path: the contraction path (steps of positions in the current operand list, opt_einsum's format); pass it
        as ``optimize=`` to run exactly this path.
      flops: floating-point operations of every einsum tnkit executes, counted as opt_einsum counts them (see the
        module docstring), as a Python int.
      largest_intermediate: number of elements of the largest array an einsum produces (inputs not included).
      strategy: the strategy that found the path after ``AUTO`` was resolved and a missing cotengra replaced (a
        :class:`PathStrategy` other than ``AUTO`` and ``HYPER``, or a :class:`HyperSearch`), or ``None`` for a
        path given explicitly.
    """

    path: tuple[tuple[int, ...], ...]
    flops: int
    largest_intermediate: int
    strategy: PathStrategy | HyperSearch | None


class PathCacheInfo(NamedTuple):
    """Statistics of the path cache, in the manner of ``functools.lru_cache``'s ``cache_info()``."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class Network(NamedTuple):
    """A network as arrays and labels, in the argument order of :func:`contract` (``contract(*network)``).

    Attributes:
      tensors: list of JAX arrays.
      labels: ``labels[k]`` is a tuple of ``tensors[k].ndim`` int labels.
      output: tuple of the open labels, in the order of the result's axes.
    """

    tensors: list[jax.Array]
    labels: list[tuple[int, ...]]
    output: tuple[int, ...]


class NodeGraph(NamedTuple):
    """``tensornetwork`` nodes with their edges connected, and the open (dangling) edges in output order.

    Attributes:
      nodes: list of ``tensornetwork`` nodes (one per tensor, then any ``CopyNode`` s).
      output_edges: list of dangling edges; pass it as ``output_edge_order`` to a ``tn.contractors`` function.
    """

    nodes: list
    output_edges: list


# -------------------------------------------------------------------------------------------- network building


@dataclasses.dataclass(frozen=True)
class _EllipsisAxis:
    """The label of the axis an einsum ``...`` stands for, ``offset`` axes from the right end of the ellipsis.

    A class of its own (not a tuple), so it never equals a user's label.
    """

    offset: int

    def __repr__(self):
        return f"'...' axis {-1 - self.offset}"


@dataclasses.dataclass(frozen=True)
class _Network:
    """A validated network with labels renamed to ints ``0, 1, ...`` by first appearance (inputs, then output)."""

    inputs: tuple[tuple[int, ...], ...]  # per tensor, with repeats
    output: tuple[int, ...]
    sizes: tuple[int, ...]  # per label id
    shapes: tuple[tuple[int, ...], ...]

    @functools.cached_property
    def reduced(self) -> tuple[tuple[int, ...], ...]:
        """Per tensor: its distinct labels still needed (in the output or in another tensor), in order."""
        holders = collections.Counter(label for term in self.inputs for label in set(term))
        out = set(self.output)
        reduced = []
        for term in self.inputs:
            keep = []
            for label in term:
                if label not in keep and (label in out or holders[label] > 1):
                    keep.append(label)
            reduced.append(tuple(keep))
        return tuple(reduced)


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim")


def _label_tuple(term, where: str) -> tuple:
    if not isinstance(term, Sequence):
        raise TypeError(f"{where} must be a sequence of labels, got {type(term).__name__}")
    labels = tuple(term)
    for i, label in enumerate(labels):
        if not isinstance(label, Hashable):
            raise TypeError(f"{where}[{i}] must be a hashable label, got {type(label).__name__}")
    return labels


def _build_network(shapes, terms, output, *, name, labels_name) -> _Network:
    """Validate ``terms`` against ``shapes`` and ``output``; rename labels to ints by first appearance.

    ``output=None`` means the labels appearing exactly once, in order of first appearance.
    """
    if len(shapes) == 0:
        raise ValueError("a network needs at least one tensor, got none")
    if len(terms) != len(shapes):
        raise ValueError(f"got {len(shapes)} tensors but {len(terms)} label sequences in {labels_name}")
    ids: dict = {}
    first: dict = {}  # label -> (tensor, axis, size)
    inputs = []
    for k, (shape, term) in enumerate(zip(shapes, terms)):
        if len(term) != len(shape):
            raise ValueError(
                f"{name(k)} has {len(shape)} axes (shape {tuple(shape)}) but {labels_name}[{k}] has {len(term)} "
                f"labels ({', '.join(repr(label) for label in term)})"
            )
        for axis, (label, size) in enumerate(zip(term, shape)):
            if label not in first:
                first[label] = (k, axis, int(size))
                ids[label] = len(ids)
                continue
            k0, axis0, size0 = first[label]
            if int(size) != size0:
                hint = " (tnkit.contract does not broadcast size-1 axes)" if isinstance(label, _EllipsisAxis) else ""
                where0 = f"axis {axis0} of {name(k0)}"
                raise ValueError(
                    f"label {repr(label)} has size {size0} at {where0} but size {int(size)} at axis {axis} of "
                    f"{name(k)}: every occurrence of a label must have the same size{hint}"
                )
        inputs.append(tuple(ids[label] for label in term))
    if output is None:
        counts = collections.Counter(label for term in terms for label in term)
        output = tuple(label for label in first if counts[label] == 1)
    seen = set()
    for label in output:
        if label in seen:
            raise ValueError(f"output label {repr(label)} is repeated: output labels must be distinct")
        seen.add(label)
        if label not in ids:
            raise ValueError(f"output label {repr(label)} appears in no input")
    sizes = [0] * len(ids)
    for label, (_, _, size) in first.items():
        sizes[ids[label]] = size
    return _Network(
        inputs=tuple(inputs),
        output=tuple(ids[label] for label in output),
        sizes=tuple(sizes),
        shapes=tuple(tuple(int(n) for n in shape) for shape in shapes),
    )


def _check_arrays(arrays, name) -> list:
    arrays = list(arrays)
    for k, x in enumerate(arrays):
        if not _is_array(x):
            raise TypeError(f"{name(k)} must be an array (with .shape and .dtype), got {type(x).__name__}")
    return arrays


# -------------------------------------------------------------------------------------------------- path search


def _check_optimize(optimize):
    """A PathStrategy, a HyperSearch, or an explicit path normalised to a tuple of int tuples."""
    if isinstance(optimize, (PathStrategy, HyperSearch)):
        return optimize
    if isinstance(optimize, str) or not isinstance(optimize, Sequence):
        raise TypeError(
            "optimize must be a tnkit.contract.PathStrategy (e.g. PathStrategy.GREEDY), a HyperSearch or an explicit "
            f"path (a sequence of tuples of operand positions), got {optimize!r}"
        )
    steps = list(optimize)
    if steps and isinstance(steps[0], str) and steps[0] == "einsum_path":
        steps = steps[1:]  # np.einsum_path's header
    path = []
    for s, step in enumerate(steps):
        if isinstance(step, str) or not isinstance(step, Sequence) or not step:
            raise TypeError(f"optimize (a path): step {s} must be a non-empty tuple of operand positions, got {step!r}")
        for p in step:
            if not isinstance(p, (int, np.integer)) or isinstance(p, bool):
                raise TypeError(f"optimize (a path): step {s} = {tuple(step)!r} holds {p!r}, which is not an int")
        path.append(tuple(int(p) for p in step))
    return tuple(path)


def _strategy_key(strategy):
    return HyperSearch() if strategy is PathStrategy.HYPER else strategy


def _opt_einsum_path(reduced, output, sizes, method: str):
    symbol = opt_einsum.get_symbol
    equation = ",".join("".join(symbol(i) for i in term) for term in reduced)
    equation += "->" + "".join(symbol(i) for i in output)
    shapes = [tuple(sizes[i] for i in term) for term in reduced]
    path, _ = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=method)
    return tuple(tuple(int(p) for p in step) for step in path)


def _cotengra_path(reduced, output, sizes, settings: HyperSearch):
    import cotengra

    symbol = opt_einsum.get_symbol
    inputs = [tuple(symbol(i) for i in term) for term in reduced]
    size_dict = {symbol(i): n for i, n in enumerate(sizes)}
    with warnings.catch_warnings():
        # Without kahypar, cotengra warns and uses its other partitioners; that is expected and not the user's issue.
        warnings.filterwarnings("ignore", message=".*kahypar.*")
        optimizer = cotengra.HyperOptimizer(
            minimize="flops",
            max_repeats=int(settings.max_repeats),
            max_time=settings.max_time,
            parallel=False,
            progbar=False,
        )
        tree = optimizer.search(inputs, tuple(symbol(i) for i in output), size_dict)
    return tuple(tuple(int(p) for p in step) for step in tree.get_path())


def _search(net: _Network, strategy):
    """(path, strategy that ran) for a network, without the cache."""
    reduced = net.reduced
    n = len(reduced)
    if strategy is PathStrategy.AUTO:
        strategy = PathStrategy.OPTIMAL if n <= AUTO_OPTIMAL_MAX_TENSORS else HyperSearch()
    strategy = _strategy_key(strategy)
    if isinstance(strategy, HyperSearch) and not _cotengra_installed():
        strategy = PathStrategy.RANDOM_GREEDY
    if n <= 2:  # nothing to search
        return (((0,),) if n == 1 else ((0, 1),)), strategy
    if isinstance(strategy, HyperSearch):
        return _cotengra_path(reduced, net.output, net.sizes, strategy), strategy
    method = {
        PathStrategy.GREEDY: "greedy",
        PathStrategy.RANDOM_GREEDY: "random-greedy-128",
        PathStrategy.OPTIMAL: "dp",
    }[strategy]
    return _opt_einsum_path(reduced, net.output, net.sizes, method), strategy


@functools.cache
def _cotengra_installed() -> bool:
    try:
        import cotengra  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ the program


class _Plan(NamedTuple):
    path: tuple[tuple[int, ...], ...]
    strategy: Any
    program: tuple  # hashable: the static argument of the jitted executor
    records: tuple  # per executed einsum: (input label tuples, output labels), for cost accounting


def _subscripts(terms, out) -> str:
    """An einsum string for ``terms -> out`` with labels renamed locally to ``a, b, ...`` (Unicode beyond 52)."""
    local: dict = {}
    for label in itertools.chain(*terms, out):
        local.setdefault(label, opt_einsum.get_symbol(len(local)))
    return ",".join("".join(local[label] for label in term) for term in terms) + "->" + "".join(
        local[label] for label in out
    )


def _ordered_union(*terms) -> list:
    seen = {}
    for term in terms:
        for label in term:
            seen.setdefault(label, None)
    return list(seen)


def _make_plan(net: _Network, path, strategy) -> _Plan:
    """Turn a path into the executor's program, validating a path given by the user."""
    out = set(net.output)
    records = []
    pre = []
    for term, keep in zip(net.inputs, net.reduced):
        if term == keep:
            pre.append(None)
        else:
            pre.append(_subscripts((term,), keep))
            records.append(((term,), keep))
    ops = list(net.reduced)
    steps = []
    for s, step in enumerate(path):
        if len(set(step)) != len(step):
            raise ValueError(f"optimize (a path): step {s} = {step} repeats an operand position")
        bad = [p for p in step if not 0 <= p < len(ops)]
        if bad:
            raise ValueError(
                f"optimize (a path): step {s} = {step} names position {bad[0]}, but only {len(ops)} operands remain "
                "at that step (each step removes its operands and appends their contraction at the end)"
            )
        taken = [ops[p] for p in step]
        for p in sorted(step, reverse=True):
            del ops[p]
        needed = out.union(*ops)
        subs = []
        acc = taken[0]
        if len(taken) == 1:
            keep = tuple(label for label in acc if label in needed)
            if keep != acc:
                records.append(((acc,), keep))
                subs.append(_subscripts((acc,), keep))
                acc = keep
        for i in range(1, len(taken)):
            later = needed.union(*taken[i + 1 :])
            keep = tuple(label for label in _ordered_union(acc, taken[i]) if label in later)
            records.append(((acc, taken[i]), keep))
            subs.append(_subscripts((acc, taken[i]), keep))
            acc = keep
        ops.append(acc)
        steps.append((step, tuple(subs)))
    if len(ops) != 1:
        raise ValueError(
            f"optimize (a path): the path leaves {len(ops)} operands uncontracted; a complete path of a network of "
            f"{len(net.inputs)} tensors reduces them to one (e.g. {len(net.inputs) - 1} pairwise steps)"
        )
    final = ops[0]
    perm = tuple(final.index(label) for label in net.output)
    program = (tuple(pre), tuple(steps), None if perm == tuple(range(len(perm))) else perm)
    return _Plan(tuple(path), strategy, program, tuple(records))


@functools.partial(jax.jit, static_argnums=0)
def _execute(program, *arrays):
    pre, steps, perm = program
    ops = [x if s is None else jnp.einsum(s, x, precision=_HIGHEST) for s, x in zip(pre, arrays)]
    for positions, subs in steps:
        taken = [ops[p] for p in positions]
        for p in sorted(positions, reverse=True):
            del ops[p]
        acc = taken[0]
        if len(taken) == 1:
            for s in subs:
                acc = jnp.einsum(s, acc, precision=_HIGHEST)
        for s, x in zip(subs, taken[1:]):
            acc = jnp.einsum(s, acc, x, precision=_HIGHEST)
        ops.append(acc)
    (result,) = ops
    return result if perm is None else jnp.transpose(result, perm)


# ---------------------------------------------------------------------------------------------------- the cache


class _PathCache:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            plan = self._entries.get(key)
            if plan is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return plan

    def put(self, key, plan) -> None:
        with self._lock:
            self._entries[key] = plan
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def info(self) -> PathCacheInfo:
        with self._lock:
            return PathCacheInfo(self.hits, self.misses, self.maxsize, len(self._entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


_CACHE = _PathCache(PATH_CACHE_MAXSIZE)


def _plan(net: _Network, optimize) -> _Plan:
    optimize = _check_optimize(optimize)
    if not isinstance(optimize, (PathStrategy, HyperSearch)):
        return _make_plan(net, optimize, None)
    key = (net.inputs, net.output, net.shapes, _strategy_key(optimize))
    plan = _CACHE.get(key)
    if plan is None:
        path, used = _search(net, optimize)
        plan = _make_plan(net, path, used)
        _CACHE.put(key, plan)
    return plan


def path_cache_info() -> PathCacheInfo:
    """Hits, misses, maximum size and current size of the module-level path cache.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import contract
      >>> contract.clear_path_cache()
      >>> x = jnp.ones((2, 2))
      >>> _ = contract.einsum("ij,jk,kl->il", x, x, x)
      >>> _ = contract.einsum("ab,bc,cd->ad", 2 * x, x, x)  # same structure and shapes: the path is reused
      >>> info = contract.path_cache_info()
      >>> info.hits, info.misses, info.currsize
      (1, 1, 1)
    """
    return _CACHE.info()


def clear_path_cache() -> None:
    """Empty the path cache and reset its hit and miss counts.

    Example:
      >>> from tnkit import contract
      >>> contract.clear_path_cache()
      >>> contract.path_cache_info().currsize
      0
    """
    _CACHE.clear()


# ------------------------------------------------------------------------------------------------ front ends


def _contract_network(arrays, net: _Network, optimize) -> jax.Array:
    plan = _plan(net, optimize)
    return _execute(plan.program, *arrays)


def _parse_subscript_term(term: str, where: str) -> list:
    labels: list = []
    i = 0
    while i < len(term):
        if term.startswith("...", i):
            if Ellipsis in labels:
                raise ValueError(f"subscripts: {where} {term!r} has more than one '...'")
            labels.append(Ellipsis)
            i += 3
            continue
        char = term[i]
        if char in ".,->":
            raise ValueError(f"subscripts: unexpected {char!r} in {where} {term!r} (only '...' may use dots)")
        labels.append(char)
        i += 1
    return labels


def _parse_einsum_args(args):
    """(operands, terms, output or None, is_string_form) from einsum's positional arguments."""
    if not args:
        raise TypeError("einsum needs subscripts and operands, got no arguments")
    if isinstance(args[0], str):
        subscripts, operands = args[0], list(args[1:])
        compact = "".join(subscripts.split())
        if compact.count("->") > 1:
            raise ValueError(f"subscripts {subscripts!r} has more than one '->'")
        lhs, arrow, rhs = compact.partition("->")
        raw_terms = lhs.split(",")
        if len(raw_terms) != len(operands):
            raise ValueError(
                f"subscripts {subscripts!r} name {len(raw_terms)} operands but {len(operands)} were given"
            )
        terms = [_parse_subscript_term(t, f"input term {k}") for k, t in enumerate(raw_terms)]
        output = _parse_subscript_term(rhs, "the output") if arrow else None
        return operands, terms, output, True
    items = list(args)
    output = None
    if len(items) % 2 == 1:
        output = _label_tuple(items.pop(), "the output sublist")
    operands = items[0::2]
    terms = [list(_label_tuple(t, f"sublist {k}")) for k, t in enumerate(items[1::2])]
    for k, t in enumerate(terms):
        if t.count(Ellipsis) > 1:
            raise ValueError(f"sublist {k} has more than one Ellipsis")
    if output is not None:
        output = list(output)
    return operands, terms, output, False


def _shape_of(x, name: str, shapes_allowed: bool) -> tuple[int, ...]:
    if _is_array(x) or (shapes_allowed and hasattr(x, "shape")):
        return tuple(int(n) for n in x.shape)
    if shapes_allowed and isinstance(x, (tuple, list)) and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in x
    ):
        return tuple(int(n) for n in x)
    expected = "an array, an object with .shape or a tuple of ints" if shapes_allowed else "an array"
    raise TypeError(f"{name} must be {expected}, got {type(x).__name__}")


def _expand_ellipsis(terms, output, shapes, string_form: bool):
    """Replace ``...`` by right-aligned :class:`_EllipsisAxis` labels and fill in an implicit output (NumPy's)."""
    expanded = []
    widths = []
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        if Ellipsis not in term:
            expanded.append(tuple(term))
            continue
        n_named = len(term) - 1
        width = len(shape) - n_named
        if width < 0:
            raise ValueError(
                f"operands[{k}] has {len(shape)} axes (shape {shape}) but its subscripts name {n_named} besides '...'"
            )
        pos = term.index(Ellipsis)
        axes = tuple(_EllipsisAxis(j) for j in range(width - 1, -1, -1))
        expanded.append(tuple(term[:pos]) + axes + tuple(term[pos + 1 :]))
        widths.append(width)
    width = max(widths, default=0)
    ellipsis_out = tuple(_EllipsisAxis(j) for j in range(width - 1, -1, -1))
    if output is None:
        counts = collections.Counter(label for term in expanded for label in term)
        once = [label for label in counts if counts[label] == 1 and not isinstance(label, _EllipsisAxis)]
        try:
            once = sorted(once)
        except TypeError:
            raise TypeError(
                "the implicit output sorts the labels that appear once (as NumPy does), but these labels cannot be "
                f"compared: {once!r}; give the output sublist explicitly"
            ) from None
        return expanded, ellipsis_out + tuple(once)
    if Ellipsis in output:
        if output.count(Ellipsis) > 1:
            raise ValueError("the output has more than one '...'")
        pos = output.index(Ellipsis)
        return expanded, tuple(output[:pos]) + ellipsis_out + tuple(output[pos + 1 :])
    if width:
        where = "subscripts" if string_form else "sublists"
        raise ValueError(
            f"the input {where} have '...' standing for {width} axes but the output has no '...' (as in NumPy, "
            "give '...' in the output; sum over those axes with explicit labels)"
        )
    return expanded, tuple(output)


def _einsum_network(args, *, shapes_allowed: bool):
    operands, terms, output, string_form = _parse_einsum_args(args)
    shapes = [_shape_of(x, f"operands[{k}]", shapes_allowed) for k, x in enumerate(operands)]
    terms, output = _expand_ellipsis(terms, output, shapes, string_form)
    net = _build_network(
        shapes,
        terms,
        output,
        name=lambda k: f"operands[{k}]",
        labels_name="subscripts" if string_form else "sublists",
    )
    return operands, net


def einsum(*args, optimize: PathStrategy | HyperSearch | Sequence = PathStrategy.AUTO) -> jax.Array:
    """Contract operands given in NumPy's einsum notation, along an optimised and cached path.

    Called as ``einsum(subscripts, *operands)`` or, interleaved, ``einsum(op0, sublist0, op1, sublist1, ...,
    [sublist_out])``:

      * ``subscripts`` -- ``"ij,jk->ik"`` (explicit output) or ``"ij,jk"`` (implicit: the labels appearing exactly
        once, sorted by character, as in NumPy). Spaces are ignored. Any character other than ``, - > .`` is a
        label, so Unicode labels (``"αβ,βγ->αγ"``) are fine. ``...`` stands for the axes not named, aligned from the
        right (operands may have different numbers of them, but sizes must match: nothing is broadcast); the
        implicit output puts them first, an explicit output must contain ``...`` if any input does.
      * sublists -- sequences of hashable labels (ints, strings, ...), ``Ellipsis`` allowed, so networks with more
        labels than letters work; the implicit output sorts the labels appearing once (they must be comparable).

    Repeated labels within an operand take traces (``"ii->"``) or diagonals (``"ii->i"``); a label in three or more
    operands is a hyperedge. See the module docstring for the semantics, the path strategies and the cache.

    Args:
      *args: subscripts and operands as above. Operands are arrays (JAX, NumPy or tracers).
      optimize: a :class:`PathStrategy` (default ``AUTO``), a :class:`HyperSearch`, or an explicit path.

    Returns:
      The contraction, an array with one axis per output label, of the operands' promoted dtype.

    Raises:
      TypeError: an operand is not an array, ``optimize`` is of the wrong type (a string, for instance).
      ValueError: malformed subscripts, a label count that does not match an operand's number of axes, a label with
        two sizes (naming both operands, the axes and the sizes), a repeated or missing output label, an invalid
        explicit path.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import contract
      >>> a = jnp.arange(6.0).reshape(2, 3)
      >>> b = jnp.arange(12.0).reshape(3, 4)
      >>> bool(jnp.allclose(contract.einsum("ij,jk->ik", a, b), a @ b))
      True
      >>> float(contract.einsum("ii", jnp.eye(3)))  # implicit output: a trace
      3.0
      >>> contract.einsum(a, [0, 1], b, [1, 2], [2, 0]).shape  # interleaved
      (4, 2)
    """
    operands, net = _einsum_network(args, shapes_allowed=False)
    return _contract_network(operands, net, optimize)


def contract(
    tensors: Sequence,
    labels: Sequence[Sequence[Hashable]],
    output: Sequence[Hashable] | None = None,
    *,
    optimize: PathStrategy | HyperSearch | Sequence = PathStrategy.AUTO,
) -> jax.Array:
    """Contract a network of arrays whose axes carry arbitrary hashable labels.

    ``result[output] = sum over all other labels of prod_k tensors[k][labels[k]]`` -- the einsum of the network,
    with no limit on the number of labels. A string in ``labels`` is read as a sequence of one-character labels.

    Args:
      tensors: non-empty sequence of arrays.
      labels: ``labels[k]`` is a sequence of ``tensors[k].ndim`` hashable labels (repeats allowed: traces).
      output: sequence of distinct labels, each present in some tensor, giving the result's axes in order.
        ``None`` (default) means the labels that appear exactly once, in order of first appearance (the convention
        of quimb and TensorNetwork, unlike :func:`einsum`'s implicit form, which sorts).
      optimize: a :class:`PathStrategy` (default ``AUTO``), a :class:`HyperSearch`, or an explicit path.

    Returns:
      An array of shape ``tuple(size[label] for label in output)``.

    Raises:
      TypeError: a tensor is not an array, a label is not hashable, ``optimize`` is of the wrong type.
      ValueError: ``len(labels) != len(tensors)``, a tensor with the wrong number of labels, a label with two sizes,
        a repeated or missing output label, an invalid explicit path.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import contract
      >>> a, b = jnp.ones((2, 3)), jnp.ones((3, 4))
      >>> contract.contract([a, b], [("left", "bond"), ("bond", "right")]).shape
      (2, 4)
      >>> contract.contract([a, b], [("left", "bond"), ("bond", "right")], ("right", "left")).shape
      (4, 2)
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"tensors must be a list or tuple of arrays, got {type(tensors).__name__}")
    if not isinstance(labels, Sequence) or isinstance(labels, str):
        raise TypeError(f"labels must be a sequence of label sequences, got {type(labels).__name__}")
    arrays = _check_arrays(tensors, lambda k: f"tensors[{k}]")
    terms = [_label_tuple(t, f"labels[{k}]") for k, t in enumerate(labels)]
    if output is not None:
        output = _label_tuple(output, "output")
    net = _build_network(
        [x.shape for x in arrays], terms, output, name=lambda k: f"tensors[{k}]", labels_name="labels"
    )
    return _contract_network(arrays, net, optimize)


def _int_labels(seq, where: str) -> tuple[int, ...]:
    labels = _label_tuple(seq, where)
    for label in labels:
        if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
            raise TypeError(f"{where} holds {label!r}: ncon labels must be ints")
    return tuple(int(label) for label in labels)


def _ncon_network(network, con_order, out_order):
    """Validate an ncon network; return (terms, output labels, explicit path or None)."""
    if not isinstance(network, (list, tuple)):
        raise TypeError(f"network must be a list or tuple of label lists, got {type(network).__name__}")
    terms = []
    where: dict = collections.defaultdict(list)
    for k, term in enumerate(network):
        term = _int_labels(term, f"network[{k}]")
        for label in term:
            if label == 0:
                raise ValueError(
                    f"network[{k}] holds the label 0: ncon labels are positive (contracted) or negative (open)"
                )
            where[label].append(k)
        terms.append(term)
    for label, ks in where.items():
        if label < 0 and len(ks) != 1:
            raise ValueError(
                f"negative (open) label {label} appears {len(ks)} times (in network{ks}): each open label must "
                "appear exactly once"
            )
        if label > 0 and len(ks) != 2:
            raise ValueError(
                f"positive (contracted) label {label} appears {len(ks)} time{'s' if len(ks) != 1 else ''} (in "
                f"network{ks}): each positive label must appear exactly twice"
            )
    negatives = sorted((label for label in where if label < 0), reverse=True)
    positives = sorted(label for label in where if label > 0)
    if out_order is None:
        output = tuple(negatives)
    else:
        output = _int_labels(out_order, "out_order")
        if sorted(output, reverse=True) != negatives or len(set(output)) != len(output):
            raise ValueError(
                f"out_order must be a permutation of the network's negative labels {negatives}, got {list(output)}"
            )
    if con_order is None:
        return terms, output, None
    order = _int_labels(con_order, "con_order")
    if sorted(order) != positives or len(set(order)) != len(order):
        raise ValueError(
            f"con_order must be a permutation of the network's positive labels {positives}, got {list(order)}"
        )
    # The path that contracts the bonds in con_order: the two operands holding a label are contracted together
    # (with every other label they share); labels already contracted, and traces, are skipped.
    ops = [set(term) for term in terms]
    path = []
    for label in order:
        holders = [p for p, op in enumerate(ops) if label in op]
        if len(holders) != 2:
            continue  # a trace (taken before any step) or a label contracted with an earlier one
        i, j = holders
        merged = ops[i] | ops[j]
        shared = ops[i] & ops[j]
        path.append((i, j))
        ops = [op for p, op in enumerate(ops) if p not in (i, j)] + [merged - {x for x in shared if x > 0}]
    while len(ops) > 1:  # disconnected parts: outer products
        path.append((0, 1))
        ops = ops[2:] + [ops[0] | ops[1]]
    return terms, output, tuple(path)


def ncon(
    tensors: Sequence,
    network: Sequence[Sequence[int]],
    *,
    con_order: Sequence[int] | None = None,
    out_order: Sequence[int] | None = None,
    optimize: PathStrategy | HyperSearch | Sequence | None = None,
) -> jax.Array:
    """Contract a network in the ncon convention (as ``tensornetwork.ncon``).

    ``network[k]`` lists one int label per axis of ``tensors[k]``: a positive label is contracted and must appear
    exactly twice (in two tensors, or twice in one tensor: a trace); a negative label is an open leg and must appear
    once. By default the result's axes are ordered ``-1, -2, -3, ...``.

    Args:
      tensors: non-empty sequence of arrays.
      network: sequence of int sequences, ``len(network[k]) == tensors[k].ndim``. ``0`` is not a label.
      con_order: optional order in which to contract the positive labels (a permutation of them); it fixes the
        path: each label not yet contracted contracts the two operands holding it. ``None`` (default) lets
        ``optimize`` choose.
      out_order: optional order of the negative labels in the result (a permutation of them); default
        ``sorted(descending)``, i.e. ``-1, -2, ...``.
      optimize: a :class:`PathStrategy`, a :class:`HyperSearch` or an explicit path, used when ``con_order`` is
        ``None``; ``None`` (default) means ``PathStrategy.AUTO``.

    Returns:
      The contraction, with one axis per negative label.

    Raises:
      TypeError: a tensor is not an array, a label is not an int.
      ValueError: label ``0``, a positive label not appearing exactly twice, a negative label appearing more than
        once, ``con_order``/``out_order`` not a permutation of the positive/negative labels, both ``con_order`` and
        ``optimize`` given, a label with two sizes.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import contract
      >>> a, b = jnp.ones((2, 3)), jnp.ones((3, 4))
      >>> contract.ncon([a, b], [[-1, 1], [1, -2]]).shape
      (2, 4)
      >>> contract.ncon([a, b], [[-2, 1], [1, -1]], out_order=[-2, -1]).shape
      (2, 4)
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"tensors must be a list or tuple of arrays, got {type(tensors).__name__}")
    if con_order is not None and optimize is not None:
        raise ValueError("give con_order or optimize, not both: con_order already fixes the contraction path")
    arrays = _check_arrays(tensors, lambda k: f"tensors[{k}]")
    terms, output, path = _ncon_network(network, con_order, out_order)
    net = _build_network(
        [x.shape for x in arrays], terms, output, name=lambda k: f"tensors[{k}]", labels_name="network"
    )
    if path is not None:
        optimize = path
    elif optimize is None:
        optimize = PathStrategy.AUTO
    return _contract_network(arrays, net, optimize)


def contraction_path(*args, optimize: PathStrategy | HyperSearch | Sequence = PathStrategy.AUTO):
    """The contraction path that :func:`einsum` with the same arguments follows (found or taken from the cache).

    Arguments are those of :func:`einsum`; an operand may also be a shape: any object with ``.shape`` (such as
    ``jax.ShapeDtypeStruct``) or a tuple of ints. For a labelled network ``contract(tensors, labels, output)`` use
    the interleaved form ``contraction_path(tensors[0], labels[0], tensors[1], labels[1], ..., output)``.

    Returns:
      A tuple of steps, each a tuple of positions in the current operand list (opt_einsum's format), usable as
      ``optimize=`` in :func:`einsum`, :func:`contract` or :func:`ncon`.

    Example:
      >>> from tnkit import contract
      >>> contract.contraction_path("ij,jk,kl->il", (10, 100), (100, 5), (5, 50))
      ((0, 1), (0, 1))
    """
    _, net = _einsum_network(args, shapes_allowed=True)
    return _plan(net, optimize).path


def contraction_cost(*args, optimize: PathStrategy | HyperSearch | Sequence = PathStrategy.AUTO) -> ContractionCost:
    """Path, flop count and largest intermediate of the contraction that :func:`einsum` would run.

    Arguments are those of :func:`contraction_path`. Flops are counted as opt_einsum counts them (module
    docstring); for the matrix chain ``(10, 100) x (100, 5) x (5, 50)`` the order ``(AB)C`` costs ``2*10*100*5 +
    2*10*5*50 = 15000`` and ``A(BC)`` ``2*100*5*50 + 2*10*100*50 = 150000``.

    Returns:
      A :class:`ContractionCost`.

    Example:
      >>> from tnkit import contract
      >>> shapes = (10, 100), (100, 5), (5, 50)
      >>> cost = contract.contraction_cost("ij,jk,kl->il", *shapes)
      >>> cost.path, cost.flops, cost.largest_intermediate, cost.strategy
      (((0, 1), (0, 1)), 15000, 500, <PathStrategy.OPTIMAL: 'optimal'>)
      >>> contract.contraction_cost("ij,jk,kl->il", *shapes, optimize=[(1, 2), (0, 1)]).flops
      150000
    """
    _, net = _einsum_network(args, shapes_allowed=True)
    plan = _plan(net, optimize)
    sizes = {i: n for i, n in enumerate(net.sizes)}
    flops = 0
    largest = 0
    for terms, keep in plan.records:
        involved = _ordered_union(*terms)
        inner = bool(set(involved) - set(keep))
        flops += int(opt_einsum.helpers.flop_count(involved, inner, len(terms), sizes))
        largest = max(largest, math.prod(sizes[i] for i in keep))
    return ContractionCost(plan.path, flops, largest, plan.strategy)


# ---------------------------------------------------------------------------------------- TensorNetwork graphs


def _import_tensornetwork():
    try:
        import tensornetwork
    except ImportError as e:  # pragma: no cover - tensornetwork is a runtime dependency
        raise ImportError(
            "tnkit.contract's TensorNetwork conversions need TensorNetwork: pip install tensornetwork"
        ) from e
    return tensornetwork


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def from_tensornetwork(
    nodes: Sequence[tensornetwork.AbstractNode],
    output_edge_order: Sequence[tensornetwork.Edge] | None = None,
    *,
    copy_nodes_as_hyperedges: bool = True,
) -> Network:
    """Arrays and labels of a graph of ``tensornetwork`` nodes, so that ``contract(*network)`` contracts it.

    Every edge becomes an int label (``0, 1, ...`` in order of first appearance, scanning the nodes and their axes):
    a connected edge is a bond, a trace edge (both ends on one node) a repeated label, a dangling edge an open
    label. With ``copy_nodes_as_hyperedges`` (default), each ``tn.CopyNode`` (a delta tensor) is dropped and all
    edges meeting at it share one label -- a hyperedge, which :func:`contract` sums without building the delta
    tensor. A copy node is kept as an ordinary (dense) tensor where that is not possible: when its label would
    be open more than once, or would occur in no other tensor. The nodes are only read, never changed.

    Args:
      nodes: a non-empty list or tuple of distinct nodes; every connected edge must join two of them.
      output_edge_order: the dangling edges in the order of the result's axes, all of them. ``None`` (default)
        takes them in order of node, then axis.
      copy_nodes_as_hyperedges: see above.

    Returns:
      A :class:`Network` ``(tensors, labels, output)`` of JAX arrays (copies of the node tensors, which must be
      floating or complex) and int labels.

    Raises:
      TypeError: ``nodes`` is not a list or tuple of nodes, or a tensor is not floating or complex.
      ValueError: no nodes, a node given twice, an edge to a node not in ``nodes``, ``output_edge_order`` that is
        not the set of dangling edges.

    Example:
      >>> import numpy as np
      >>> import tensornetwork as tn
      >>> from tnkit import contract
      >>> a, b = tn.Node(np.ones((2, 3))), tn.Node(np.ones((3, 4)))
      >>> _ = tn.connect(a[1], b[0])
      >>> net = contract.from_tensornetwork([a, b])
      >>> net.labels, net.output
      ([(0, 1), (1, 2)], (0, 2))
      >>> contract.contract(*net).shape
      (2, 4)
    """
    tn = _import_tensornetwork()
    if not isinstance(nodes, (list, tuple)):
        raise TypeError(f"nodes must be a list or tuple of tensornetwork nodes, got {type(nodes).__name__}")
    if not nodes:
        raise ValueError("nodes must hold at least one node, got an empty sequence")
    index: dict = {}
    for k, node in enumerate(nodes):
        if not isinstance(node, tn.AbstractNode):
            raise TypeError(f"nodes[{k}] must be a tensornetwork node, got {type(node).__name__}")
        if id(node) in index:
            raise ValueError(f"nodes[{k}] is the same node as nodes[{index[id(node)]}]: give each node once")
        index[id(node)] = k
    dangling = []
    for k, node in enumerate(nodes):
        for axis, edge in enumerate(node.edges):
            if edge.is_dangling():
                dangling.append(edge)
                continue
            for end in (edge.node1, edge.node2):
                if id(end) not in index:
                    raise ValueError(
                        f"nodes[{k}] axis {axis} is connected to node {end.name!r}, which is not in nodes: pass every "
                        "node of the network (or disconnect that edge)"
                    )

    copies = {k for k, node in enumerate(nodes) if copy_nodes_as_hyperedges and isinstance(node, tn.CopyNode)}
    while True:
        uf = _UnionFind()
        for k in copies:
            edges = nodes[k].edges
            for edge in edges[1:]:
                uf.union(id(edge), id(edges[0]))
        open_count = collections.Counter(uf.find(id(edge)) for edge in dangling)
        regular = collections.Counter(
            uf.find(id(edge)) for k, node in enumerate(nodes) if k not in copies for edge in node.edges
        )
        bad = {
            k
            for k in copies
            for root in {uf.find(id(edge)) for edge in nodes[k].edges}
            if open_count[root] > 1 or regular[root] == 0
        }
        if not bad:
            break
        copies -= bad

    ids: dict = {}
    tensors, labels = [], []
    for k, node in enumerate(nodes):
        if k in copies:
            continue
        term = []
        for edge in node.edges:
            term.append(ids.setdefault(uf.find(id(edge)), len(ids)))
        labels.append(tuple(term))
        tensors.append(interop._to_jax(node.tensor, f"nodes[{k}].tensor"))

    if output_edge_order is None:
        order = dangling
    else:
        if not isinstance(output_edge_order, (list, tuple)):
            raise TypeError(
                f"output_edge_order must be a list or tuple of edges, got {type(output_edge_order).__name__}"
            )
        order = list(output_edge_order)
        known = {id(edge) for edge in dangling}
        seen = set()
        for i, edge in enumerate(order):
            if not isinstance(edge, tn.Edge):
                raise TypeError(f"output_edge_order[{i}] must be a tensornetwork Edge, got {type(edge).__name__}")
            if id(edge) not in known:
                raise ValueError(
                    f"output_edge_order[{i}] (edge {edge.name!r}) is not a dangling edge of the given nodes"
                )
            if id(edge) in seen:
                raise ValueError(f"output_edge_order[{i}] (edge {edge.name!r}) is given twice")
            seen.add(id(edge))
        if len(seen) != len(known):
            missing = [edge.name for edge in dangling if id(edge) not in seen]
            raise ValueError(
                f"output_edge_order must list every dangling edge: {len(missing)} missing (names {missing})"
            )
    output = tuple(ids.setdefault(uf.find(id(edge)), len(ids)) for edge in order)
    return Network(tensors, labels, output)


def to_tensornetwork(
    tensors: Sequence,
    labels: Sequence[Sequence[Hashable]],
    output: Sequence[Hashable] | None = None,
    *,
    backend: str = "numpy",
) -> NodeGraph:
    """A graph of connected ``tensornetwork`` nodes that contracts to ``contract(tensors, labels, output)``.

    Node ``k`` (named ``"tensor{k}"``) holds a copy of ``tensors[k]``. A label that occurs exactly twice and is not
    in the output becomes an edge between those two axes (``tn.connect``; a trace edge if both are on one node). A
    label that occurs once and is in the output is a dangling edge. Any other label -- a hyperedge (three or more
    occurrences), a label summed over but occurring once, a label in the output occurring two or more times --
    becomes a ``tn.CopyNode`` (named ``"copy[label]"``) connected to every occurrence, with one more, dangling,
    edge if the label is in the output. Edges are named ``str(label)``.

    Args:
      tensors, labels, output: as for :func:`contract` (``output=None``: the labels occurring once, in order of
        first appearance). Eager only: concrete arrays, not tracers.
      backend: ``"numpy"`` (default; NumPy copies) or ``"jax"`` (see the module docstring of
        :mod:`tnkit.interop` for what TensorNetwork's JAX backend can still do).

    Returns:
      A :class:`NodeGraph` ``(nodes, output_edges)``; ``tn.contractors.auto(nodes,
      output_edge_order=output_edges)`` contracts it (and, as TensorNetwork's contractors do, consumes the graph).

    Raises:
      TypeError: as for :func:`contract`; a tensor is a tracer.
      ValueError: as for :func:`contract`; ``backend`` is not ``"numpy"`` or ``"jax"``.

    Example:
      >>> import numpy as np
      >>> import tensornetwork as tn
      >>> from tnkit import contract
      >>> a, b = np.ones((2, 3)), np.ones((3, 4))
      >>> graph = contract.to_tensornetwork([a, b], [("i", "j"), ("j", "k")])
      >>> [e.name for e in graph.output_edges]
      ['i', 'k']
      >>> tn.contractors.auto(graph.nodes, output_edge_order=graph.output_edges).tensor.shape
      (2, 4)
    """
    tn = _import_tensornetwork()
    backend = interop._check_backend(backend)
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"tensors must be a list or tuple of arrays, got {type(tensors).__name__}")
    arrays = _check_arrays(tensors, lambda k: f"tensors[{k}]")
    for k, x in enumerate(arrays):
        if isinstance(x, jax.core.Tracer):
            raise TypeError(f"tensors[{k}] is a JAX tracer: to_tensornetwork is eager, call it outside jit/vmap/grad")
    if not isinstance(labels, Sequence) or isinstance(labels, str):
        raise TypeError(f"labels must be a sequence of label sequences, got {type(labels).__name__}")
    terms = [_label_tuple(t, f"labels[{k}]") for k, t in enumerate(labels)]
    if output is not None:
        output = _label_tuple(output, "output")
    net = _build_network(
        [x.shape for x in arrays], terms, output, name=lambda k: f"tensors[{k}]", labels_name="labels"
    )
    names = {}
    for term, ids in zip(terms, net.inputs):
        for label, i in zip(term, ids):
            names.setdefault(i, label)
    dtype = np.result_type(*[np.dtype(x.dtype) for x in arrays])
    # NumPy inputs go to the NumPy backend without a detour through JAX (which would drop float64 without x64).
    nodes = [
        tn.Node(np.array(x, copy=True) if backend == "numpy" else jnp.asarray(x), name=f"tensor{k}", backend=backend)
        for k, x in enumerate(arrays)
    ]
    occurrences = collections.defaultdict(list)
    for k, term in enumerate(net.inputs):
        for axis, i in enumerate(term):
            occurrences[i].append((k, axis))
    out = set(net.output)
    open_edges = {}
    for i, occ in occurrences.items():
        label = str(names[i])
        if len(occ) == 2 and i not in out:
            (k1, a1), (k2, a2) = occ
            tn.connect(nodes[k1][a1], nodes[k2][a2], name=label)
        elif len(occ) == 1 and i in out:
            k, axis = occ[0]
            nodes[k][axis].set_name(label)
            open_edges[i] = nodes[k][axis]
        else:
            rank = len(occ) + (i in out)
            copy = tn.CopyNode(rank, net.sizes[i], name=f"copy[{label}]", backend=backend, dtype=dtype)
            for slot, (k, axis) in enumerate(occ):
                tn.connect(nodes[k][axis], copy[slot], name=label)
            if i in out:
                copy[rank - 1].set_name(label)
                open_edges[i] = copy[rank - 1]
            nodes.append(copy)
    return NodeGraph(nodes, [open_edges[i] for i in net.output])
