r"""SOAP: Adam in the eigenbasis of Shampoo's Kronecker factors, as an optax ``GradientTransformation``.

SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321) keeps Shampoo's
statistics ``L_i`` (one per mode, as in :func:`tnkit.optim.scale_by_shampoo`), an orthogonal basis ``Q_i`` of
(approximate) eigenvectors of each, and runs Adam on the gradient rotated into that basis. For a matrix
``W`` with gradient ``G`` (``L = L_1``, ``R = L_2``):

.. math::

   G' &= Q_L^T G Q_R, \qquad M \leftarrow \beta_1 M + (1 - \beta_1) G, \qquad M' = Q_L^T M Q_R \\
   V &\leftarrow \beta_2 V + (1 - \beta_2)\, G' \odot G' \\
   N &= Q_L \Big( \frac{M' / (1 - \beta_1^t)}{\sqrt{V / (1 - \beta_2^t)} + \epsilon} \Big) Q_R^T \\
   L &\leftarrow \beta_s L + (1 - \beta_s) G G^T, \qquad R \leftarrow \beta_s R + (1 - \beta_s) G^T G \\
   Q_L &\leftarrow \operatorname{qr}(L Q_L), \quad Q_R \leftarrow \operatorname{qr}(R Q_R)
       \quad\text{when } t \bmod f = 0

(``t`` the step from 1, ``f = precondition_frequency``): the basis is refreshed by one step of power iteration
followed by a QR decomposition. The first step initialises ``L = (1 - β_s) G G^T`` and takes ``Q_L`` from its
eigendecomposition (``eigh``, eigenvalues in decreasing order) *before* the Adam step, so the first update is
already rotated (the authors' reference implementation instead skips the first update; here it is taken).
The first moment ``M`` lives in the original coordinates (it is rotated each step), the second moment ``V`` in the
rotated ones. A ``k``-mode tensor uses ``G' = G x_1 Q_1^T ... x_k Q_k^T`` and ``N = N' x_1 Q_1 ... x_k Q_k``.

The layout is Shampoo's (:class:`tnkit.optim.ShampooLayout`, ``root_order`` unused): small modes merged, large modes
cut into blocks with their own factors, and diagonal modes (above ``diagonal_threshold``, every mode of a vector
parameter) are not rotated (their basis is the identity; a vector parameter gets plain Adam). Unlike the reference
implementation, the columns of ``Q`` are not re-sorted by the estimated eigenvalues before each refresh: the power
iteration keeps the column order of the eigh initialisation.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from tnkit import tucker
from tnkit.optim._shampoo import (
    _DEFAULT_LAYOUT,
    ShampooLayout,
    _check_layout,
    _check_leaf,
    _check_range,
    _cond,
    _from_blocks,
    _like,
    _Plan,
    _plan,
    _statistics_dtype,
    _to_blocks,
)

__all__ = ["SOAPState", "scale_by_soap", "soap"]

_HIGHEST = lax.Precision.HIGHEST


class SOAPState(NamedTuple):
    """State of :func:`scale_by_soap`.

    ``statistics``, ``bases`` and ``nu`` hold one entry per parameter, in the order of ``jax.tree.leaves(params)``
    (flat tuples, as in :class:`tnkit.optim.ShampooState`). ``statistics`` and ``bases`` entries are tuples with one
    array per *rotated* mode (diagonal modes have none). Dtypes: the parameter dtype promoted to at least float32.
    """

    count: jax.Array  # shape=(), dtype=int32: updates applied so far.
    statistics: tuple  # per param leaf, per rotated mode: (num_blocks, b_i, b_i), the EMA of G_(i) G_(i)^T.
    bases: tuple  # per param leaf, per rotated mode: (num_blocks, b_i, b_i) orthogonal Q_i (identity before step 1).
    mu: Any  # params tree: param-shaped first moment, in the original coordinates.
    nu: tuple  # per param leaf: (num_blocks, b_1, ..., b_k) second moment in the rotated coordinates.


def _rotated_modes(plan: _Plan) -> list[int]:
    return [i for i, diag in enumerate(plan.diagonal) if not diag]


def _rotate(blocks, bases, plan: _Plan, *, transpose: bool):
    """``B x_i Q_i^T`` (``transpose``: into the eigenbasis) or ``B x_i Q_i`` (back) over the rotated modes."""
    modes = _rotated_modes(plan)
    if not modes:
        return blocks

    def one(block, *qs):
        return tucker.multi_mode_product(block, list(qs), modes, transpose=transpose)

    return jax.vmap(one)(blocks, *bases)


def _eigenbasis(statistics):
    """Eigenvectors of stacked symmetric ``(C, b, b)`` blocks, columns in decreasing eigenvalue order."""
    _, q = jnp.linalg.eigh(statistics)
    return q[..., ::-1]


def _power_qr(statistics, basis):
    """One step of power iteration and QR: ``qr(L Q)``, stacked over blocks."""
    q, _ = jnp.linalg.qr(jnp.matmul(statistics, basis, precision=_HIGHEST))
    return q


def _full_statistics(blocks, plan: _Plan):
    """Per rotated mode: ``G_(i) G_(i)^T`` of each block, ``(C, b_i, b_i)``."""
    modes = _rotated_modes(plan)
    out = []
    k = len(plan.dims)
    for i in modes:
        others = tuple(1 + j for j in range(k) if j != i)
        out.append(lax.dot_general(blocks, blocks, ((others, others), ((0,), (0,))), precision=_HIGHEST))
    return tuple(out)


def scale_by_soap(
    b1=0.95,
    b2=0.95,
    shampoo_beta2=0.95,
    eps=1e-8,
    *,
    precondition_frequency=10,
    layout: ShampooLayout = _DEFAULT_LAYOUT,
) -> optax.GradientTransformation:
    r"""Rescale updates by Adam run in the eigenbasis of Shampoo's factors (SOAP; see the module docstring).

    Per block ``G_b`` of each parameter, step ``t = count + 1``:

    .. math::

       G' &= G_b \times_1 Q_1^T \cdots \times_k Q_k^T, \qquad
           M \leftarrow \beta_1 M + (1 - \beta_1) G, \qquad M' = M_b \times_1 Q_1^T \cdots \times_k Q_k^T \\
       V &\leftarrow \beta_2 V + (1 - \beta_2)\, G' \odot G', \qquad
           u = \Big(\frac{M' / (1 - \beta_1^t)}{\sqrt{V / (1 - \beta_2^t)} + \epsilon}\Big)
               \times_1 Q_1 \cdots \times_k Q_k \\
       L_i &\leftarrow \beta_s L_i + (1 - \beta_s)\, G_{b,(i)} G_{b,(i)}^T, \qquad
           Q_i \leftarrow \operatorname{qr}(L_i Q_i) \text{ when } t \bmod f = 0

    except at ``t = 1``, where ``L_i = (1 - β_s) G_(i) G_(i)^T`` and ``Q_i`` its eigenvectors (``eigh``) are set
    before the Adam step. The update ``u`` is returned in the parameter's dtype (negate and scale it with a learning
    rate, as :func:`soap` does). The eigh and QR refreshes each run inside a ``lax.cond``, so they cost nothing on
    the steps where they are not due.

    Args:
      b1: Adam's first-moment decay, in ``[0, 1)``.
      b2: Adam's second-moment decay, in ``(0, 1)``.
      shampoo_beta2: decay ``β_s`` of the Shampoo statistics, in ``(0, 1)``.
      eps: Adam's epsilon, ``>= 0``.
      precondition_frequency: ``f``, refresh the bases after steps ``t`` with ``t % f == 0``; a positive int.
      layout: a :class:`tnkit.optim.ShampooLayout` (blocking, merging, unrotated diagonal modes; ``root_order`` is
        ignored).

    Returns:
      An ``optax.GradientTransformation`` whose state is a :class:`SOAPState`.

    Raises:
      TypeError, ValueError: at construction for an option of the wrong type or out of range (naming it); at
        ``init`` for a non-floating parameter.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import optim
      >>> tx = optim.scale_by_soap(layout=optim.ShampooLayout(block_size=4))
      >>> state = tx.init({"w": jnp.ones((6, 3)), "b": jnp.ones(3)})
      >>> [q.shape for q in state.bases[1]], [q.shape for q in state.bases[0]]  # "w": 2 blocks; "b": no rotation
      ([(2, 4, 4), (2, 3, 3)], [])
      >>> updates, state = tx.update({"w": jnp.ones((6, 3)), "b": jnp.ones(3)}, state)
      >>> updates["w"].shape, int(state.count)
      ((6, 3), 1)
    """
    layout = _check_layout(layout)
    _check_range(b1, "b1", integer=False, low=0, high=1, high_open=True)
    _check_range(b2, "b2", integer=False, low=0, high=1, low_open=True, high_open=True)
    _check_range(shampoo_beta2, "shampoo_beta2", integer=False, low=0, high=1, low_open=True, high_open=True)
    _check_range(eps, "eps", integer=False, low=0, high=math.inf, high_open=True)
    _check_range(precondition_frequency, "precondition_frequency", integer=True, low=1, high=math.inf, high_open=True)

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        for i, leaf in enumerate(leaves):
            _check_leaf(leaf, f"params leaf {i}")
        plans = [_plan(leaf.shape, layout) for leaf in leaves]
        statistics, bases, nu = [], [], []
        for leaf, plan in zip(leaves, plans):
            dt = _statistics_dtype(leaf.dtype)
            sizes = [plan.blocks[i] for i in _rotated_modes(plan)]
            statistics.append(tuple(jnp.zeros((plan.num_blocks, b, b), dt) for b in sizes))
            bases.append(tuple(jnp.broadcast_to(jnp.eye(b, dtype=dt), (plan.num_blocks, b, b)) for b in sizes))
            nu.append(jnp.zeros((plan.num_blocks,) + plan.blocks, dt))
        mu = [jnp.zeros(leaf.shape, _statistics_dtype(leaf.dtype)) for leaf in leaves]
        return SOAPState(
            count=jnp.zeros((), jnp.int32),
            statistics=tuple(statistics),
            bases=tuple(bases),
            mu=treedef.unflatten(mu),
            nu=tuple(nu),
        )

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree.flatten(updates)
        for i, leaf in enumerate(leaves):
            _check_leaf(leaf, f"updates leaf {i}")
        plans = [_plan(leaf.shape, layout) for leaf in leaves]
        mu = jax.tree.leaves(state.mu)
        nu = list(state.nu)
        if [m.shape for m in mu] != [leaf.shape for leaf in leaves] or len(nu) != len(leaves):
            raise ValueError(
                f"updates have leaf shapes {[tuple(x.shape) for x in leaves]} but the state was initialised for "
                f"{[tuple(m.shape) for m in mu]}"
            )
        statistics = [tuple(jax.tree.leaves(s)) for s in state.statistics]
        bases = [tuple(jax.tree.leaves(q)) for q in state.bases]
        for i, (s, pl) in enumerate(zip(statistics, plans)):
            want = [(pl.num_blocks, pl.blocks[j], pl.blocks[j]) for j in _rotated_modes(pl)]
            if [tuple(a.shape) for a in s] != want:
                raise ValueError(
                    f"updates leaf {i} has shape {tuple(leaves[i].shape)}, which needs SOAP factors of shapes {want}, "
                    f"but the state holds {[tuple(a.shape) for a in s]}: was it initialised for other params?"
                )
        grads = [g.astype(_statistics_dtype(g.dtype)) for g in leaves]
        blocks = [_to_blocks(g, pl) if pl.dims else None for g, pl in zip(grads, plans)]
        count = state.count
        count_inc = optax.safe_increment(count)

        def gathered(stats, *, first):
            out = []
            for s, b, pl in zip(stats, blocks, plans):
                if b is None or not s:
                    out.append(s)
                    continue
                bs = jnp.asarray(shampoo_beta2, b.dtype)
                new = _full_statistics(b, pl)
                out.append(tuple((1 - bs) * n if first else bs * si + (1 - bs) * n for si, n in zip(s, new)))
            return out

        # Step 1: statistics and their eigenbases, before the Adam step.
        def initialise(operand):
            stats = gathered(operand[0], first=True)
            return stats, [tuple(_eigenbasis(s) for s in entry) for entry in stats]

        statistics, bases = _cond(count == 0, initialise, lambda op: op, (statistics, bases))

        # Adam in the rotated coordinates.
        t = count_inc
        new_mu, new_nu, out = [], [], []
        for g, b, q, m, v, pl, leaf in zip(grads, blocks, bases, mu, nu, plans, leaves):
            dt = g.dtype
            beta1, beta2 = jnp.asarray(b1, dt), jnp.asarray(b2, dt)
            m = beta1 * m + (1 - beta1) * g
            if b is None:
                new_mu.append(m)
                new_nu.append(v)
                out.append(jnp.zeros_like(leaf))
                continue
            g_rot = _rotate(b, q, pl, transpose=True)
            m_rot = _rotate(_to_blocks(m, pl), q, pl, transpose=True)
            v = beta2 * v + (1 - beta2) * g_rot * g_rot
            tf = t.astype(dt)
            n_rot = (m_rot / (1 - beta1**tf)) / (jnp.sqrt(v / (1 - beta2**tf)) + jnp.asarray(eps, dt))
            direction = _from_blocks(_rotate(n_rot, q, pl, transpose=False), pl)
            new_mu.append(m)
            new_nu.append(v)
            out.append(direction.astype(leaf.dtype))

        # Later steps: statistics after the Adam step, then a power-iteration refresh of the bases when due.
        def refresh(operand):
            stats, qs = operand
            return stats, [tuple(_power_qr(s, q) for s, q in zip(se, qe)) for se, qe in zip(stats, qs)]

        def accumulate(operand):
            stats = gathered(operand[0], first=False)
            return _cond(t % precondition_frequency == 0, refresh, lambda op: op, (stats, operand[1]))

        statistics, bases = _cond(count > 0, accumulate, lambda op: op, (statistics, bases))

        new_state = SOAPState(
            count=count_inc,
            statistics=_like(state.statistics, [a for entry in statistics for a in entry]),
            bases=_like(state.bases, [a for entry in bases for a in entry]),
            mu=_like(state.mu, new_mu),
            nu=_like(state.nu, new_nu),
        )
        return treedef.unflatten(out), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def soap(
    learning_rate: optax.ScalarOrSchedule,
    b1=0.95,
    b2=0.95,
    shampoo_beta2=0.95,
    eps=1e-8,
    weight_decay=0.0,
    weight_decay_mask=None,
    *,
    precondition_frequency=10,
    layout: ShampooLayout = _DEFAULT_LAYOUT,
) -> optax.GradientTransformation:
    r"""SOAP with decoupled weight decay: :func:`scale_by_soap`, then ``+ weight_decay * params``, then
    ``* -learning_rate``, i.e. ``x <- x - η_t (u_t + λ x)``.

    Args:
      learning_rate: a float or an ``optax`` schedule.
      b1, b2, shampoo_beta2, eps, precondition_frequency, layout: see :func:`scale_by_soap`.
      weight_decay: decoupled weight decay ``λ >= 0``.
      weight_decay_mask: a tree of bools (or a callable returning one), as in ``optax.add_decayed_weights``.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``; its first state is a :class:`SOAPState`).

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from tnkit import optim
      >>> target = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
      >>> loss = lambda w: jnp.sum((w - target) ** 2)
      >>> tx = optim.soap(0.05, precondition_frequency=1)
      >>> @jax.jit
      ... def step(w, state):
      ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
      ...     return optax.apply_updates(w, updates), state
      >>> w, state = jnp.zeros((2, 3)), tx.init(jnp.zeros((2, 3)))
      >>> for _ in range(300):
      ...     w, state = step(w, state)
      >>> bool(loss(w) < 1e-2)
      True
    """
    if not callable(weight_decay):
        _check_range(weight_decay, "weight_decay", integer=False, low=0, high=math.inf, high_open=True)
    return optax.chain(
        scale_by_soap(b1, b2, shampoo_beta2, eps, precondition_frequency=precondition_frequency, layout=layout),
        optax.add_decayed_weights(weight_decay, weight_decay_mask),
        optax.scale_by_learning_rate(learning_rate),
    )
