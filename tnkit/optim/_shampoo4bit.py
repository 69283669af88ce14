r"""4-bit Shampoo: Shampoo whose factors are stored as 4-bit eigenvectors and float eigenvalues.

After Wang et al. 2024, "4-bit Shampoo for Memory-Efficient Network Training". Each full Kronecker factor
``S_i = U_i diag(λ_i) U_i^T`` of :func:`tnkit.optim.scale_by_shampoo` is kept as its eigenvalues ``λ_i`` (float32,
``b_i`` numbers per block) and its eigenvector matrix ``U_i`` quantised block-wise to 4 bits with the linear-square
mapping (:func:`tnkit.optim.quantize`, two codes per byte): about ``0.14 x`` the bytes of the float32 ``U_i`` and
far less than the two float32 ``(b_i, b_i)`` matrices (statistics and root) that 32-bit Shampoo keeps.

Whenever the eigenvectors are used they are dequantised and rectified by Björck orthonormalisation
(:func:`tnkit.optim.bjorck_orthonormalize`), ``Ũ = rect(deq(U))``, and:

* **Statistics** every ``statistics_every`` steps: ``S = Ũ diag(λ) Ũ^T``, ``S <- β_2 S + (1 - β_2) G_(i) G_(i)^T``
  (the sum when ``β_2 = 1``), then ``λ, U = eigh(S)`` (eigenvalues clipped at 0) and ``U`` is re-quantised. A
  non-finite eigendecomposition is rejected (the block keeps its previous ``U, λ``; counted in the state).
* **Roots** at every step, from the dequantised eigenvectors and the float eigenvalues, as in the paper:
  ``P_i = Ũ diag((λ + ε λ_max)^{-1/p}) Ũ^T``; no root matrix is stored.

Diagonal factors (vectors, modes above ``diagonal_threshold``) are stored as float diagonals as in 32-bit Shampoo.
Layout, grafting, ``start_preconditioning_step`` and momentum are those of :func:`tnkit.optim.scale_by_shampoo`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from tnkit.optim._quantize import Quantized, bjorck_orthonormalize, dequantize, quantize
from tnkit.optim._shampoo import (
    _DEFAULT_LAYOUT,
    Grafting,
    ShampooLayout,
    _block_statistics,
    _check_layout,
    _check_leaf,
    _check_range,
    _cond,
    _diagonal_roots,
    _from_blocks,
    _graft,
    _like,
    _Plan,
    _plan,
    _precondition_blocks,
    _statistics_dtype,
    _to_blocks,
)

__all__ = ["QuantizationOptions", "Shampoo4bitState", "scale_by_shampoo_4bit", "shampoo_4bit"]

_HIGHEST = lax.Precision.HIGHEST


class QuantizationOptions(NamedTuple):
    """How the eigenvectors are stored; static (it fixes the shapes of the state).

    A typed option rather than loose arguments so that ``optax.inject_hyperparams(shampoo_4bit)`` keeps it static.

    Attributes:
      block_size: entries per quantisation block, an even int (64 in the paper); each block has a float32 scale.
      rectification_iters: Björck iterations after each dequantisation, a non-negative int (1 in the paper).
    """

    block_size: int = 64
    rectification_iters: int = 1


_DEFAULT_QUANTIZATION = QuantizationOptions()


class Shampoo4bitState(NamedTuple):
    """State of :func:`scale_by_shampoo_4bit`.

    Per parameter (in ``jax.tree.leaves(params)`` order, flat tuples as in :class:`tnkit.optim.ShampooState`):
    ``eigenvectors`` holds one :class:`tnkit.optim.Quantized` per *full* mode, ``eigenvalues`` one array per mode.
    """

    count: jax.Array  # shape=(), dtype=int32: updates applied so far.
    eigenvectors: tuple  # per leaf, per full mode: Quantized(codes (num_blocks, nq, qb // 2) uint8,
    #                      scales (num_blocks, nq) float32), nq = ceil(b_i^2 / qb): U_i flattened row-major.
    eigenvalues: tuple  # per leaf, per mode: (num_blocks, b_i), float32+: λ_i (full) or diag(S_i) (diagonal).
    graft_moment: Any  # params tree: param-shaped second moment (float32+); shape () for Grafting.NONE / SGD.
    momentum: Any  # params tree: param-shaped, float32+.
    rejected_updates: jax.Array  # shape=(), dtype=int32: block eigendecompositions rejected (non-finite).


def _full_modes(plan: _Plan) -> list[int]:
    return [i for i, diag in enumerate(plan.diagonal) if not diag]


def _decode(q: Quantized, b: int, dtype, rectification_iters: int):
    """Dequantised, Björck-rectified eigenvectors ``(C, b, b)``."""
    u = dequantize(q, b * b, dtype)
    return bjorck_orthonormalize(u.reshape(u.shape[:-1] + (b, b)), rectification_iters)


def _select_blocks(ok, new, old):
    """``new`` where the per-block flag ``ok`` (shape ``(C,)``) holds, else ``old``."""
    return jnp.where(ok.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def _encode(u, block_size: int) -> Quantized:
    return quantize(u.reshape(u.shape[:-2] + (-1,)), block_size=block_size)


def scale_by_shampoo_4bit(
    beta1=0.9,
    beta2=0.999,
    ridge_epsilon=1e-6,
    *,
    layout: ShampooLayout = _DEFAULT_LAYOUT,
    grafting: Grafting = Grafting.ADAM,
    graft_beta2=0.999,
    graft_eps=1e-8,
    statistics_every=10,
    start_preconditioning_step=10,
    nesterov: bool = False,
    quantization: QuantizationOptions = _DEFAULT_QUANTIZATION,
) -> optax.GradientTransformation:
    r"""Shampoo with 4-bit eigenvector storage (see the module docstring).

    Per block ``G_b`` and full mode ``i`` (``Ũ_i`` the rectified dequantised eigenvectors):

    .. math::

       S_i &= Ũ_i \operatorname{diag}(\lambda_i) Ũ_i^T, \quad
           S_i \leftarrow \beta_2 S_i + (1 - \beta_2) G_{b,(i)} G_{b,(i)}^T, \quad
           (\lambda_i, U_i) = \operatorname{eigh}(S_i) \quad(\text{every statistics\_every steps}) \\
       P_i &= Ũ_i \operatorname{diag}\big((\lambda_i + \epsilon \max \lambda_i)^{-1/p}\big) Ũ_i^T, \qquad
           D = G_b \times_1 P_1 \cdots \times_k P_k

    followed by grafting and momentum exactly as in :func:`tnkit.optim.scale_by_shampoo`.

    Args:
      beta1, beta2, ridge_epsilon, layout, grafting, graft_beta2, graft_eps, start_preconditioning_step, nesterov:
        as in :func:`tnkit.optim.scale_by_shampoo`.
      statistics_every: update the statistics (and their eigendecomposition) on steps ``count % statistics_every
        == 0``; the roots follow at once (there is no separate ``precondition_every``).
      quantization: a :class:`QuantizationOptions` (quantisation block size, Björck iterations).

    Returns:
      An ``optax.GradientTransformation`` whose state is a :class:`Shampoo4bitState`.

    Example:
      >>> import jax.numpy as jnp
      >>> from tnkit import optim
      >>> tx = optim.scale_by_shampoo_4bit(layout=optim.ShampooLayout(block_size=16))
      >>> state = tx.init({"w": jnp.zeros((16, 8))})
      >>> [(q.codes.shape, q.codes.dtype.name) for q in state.eigenvectors[0]]
      [((1, 4, 32), 'uint8'), ((1, 1, 32), 'uint8')]
      >>> [lam.shape for lam in state.eigenvalues[0]]
      [(1, 16), (1, 8)]
    """
    layout = _check_layout(layout)
    if not isinstance(grafting, Grafting):
        raise TypeError(f"grafting must be a tnkit.optim.Grafting, got {grafting!r}")
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
    _check_range(beta1, "beta1", integer=False, low=0, high=1, high_open=True)
    _check_range(beta2, "beta2", integer=False, low=0, high=1, low_open=True)
    _check_range(ridge_epsilon, "ridge_epsilon", integer=False, low=0, high=math.inf, high_open=True)
    _check_range(graft_beta2, "graft_beta2", integer=False, low=0, high=1, low_open=True)
    _check_range(graft_eps, "graft_eps", integer=False, low=0, high=math.inf, high_open=True)
    _check_range(statistics_every, "statistics_every", integer=True, low=1, high=math.inf, high_open=True)
    _check_range(
        start_preconditioning_step, "start_preconditioning_step", integer=True, low=0, high=math.inf, high_open=True
    )
    if not isinstance(quantization, QuantizationOptions):
        raise TypeError(f"quantization must be a tnkit.optim.QuantizationOptions, got {type(quantization).__name__}")
    qb, iters = quantization
    if isinstance(qb, bool) or not isinstance(qb, (int, np.integer)) or qb < 2 or qb % 2:
        raise ValueError(f"quantization.block_size must be an even int >= 2, got {qb!r}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 0:
        raise ValueError(f"quantization.rectification_iters must be a non-negative int, got {iters!r}")
    has_graft_moment = grafting in (Grafting.ADAGRAD, Grafting.RMSPROP, Grafting.ADAM)
    qb, iters = int(qb), int(iters)

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        for i, leaf in enumerate(leaves):
            _check_leaf(leaf, f"params leaf {i}")
        plans = [_plan(leaf.shape, layout) for leaf in leaves]
        dtypes = [_statistics_dtype(leaf.dtype) for leaf in leaves]
        vectors, values = [], []
        for pl, dt in zip(plans, dtypes):
            eye = [jnp.broadcast_to(jnp.eye(pl.blocks[i], dtype=jnp.float32), (pl.num_blocks,) + (pl.blocks[i],) * 2)
                   for i in _full_modes(pl)]
            vectors.append(tuple(_encode(e, qb) for e in eye))
            values.append(tuple(jnp.zeros((pl.num_blocks, b), dt) for b in pl.blocks))
        return Shampoo4bitState(
            count=jnp.zeros((), jnp.int32),
            eigenvectors=tuple(vectors),
            eigenvalues=tuple(values),
            graft_moment=treedef.unflatten(
                [jnp.zeros(leaf.shape if has_graft_moment else (), dt) for leaf, dt in zip(leaves, dtypes)]
            ),
            momentum=treedef.unflatten([jnp.zeros(leaf.shape, dt) for leaf, dt in zip(leaves, dtypes)]),
            rejected_updates=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree.flatten(updates)
        for i, leaf in enumerate(leaves):
            _check_leaf(leaf, f"updates leaf {i}")
        plans = [_plan(leaf.shape, layout) for leaf in leaves]
        momentum = jax.tree.leaves(state.momentum)
        graft_moment = jax.tree.leaves(state.graft_moment)
        if [m.shape for m in momentum] != [leaf.shape for leaf in leaves]:
            raise ValueError(
                f"updates have leaf shapes {[tuple(x.shape) for x in leaves]} but the state was initialised for "
                f"{[tuple(m.shape) for m in momentum]}"
            )
        values = [tuple(jax.tree.leaves(v)) for v in state.eigenvalues]
        vectors = [
            tuple(Quantized(*pair) for pair in zip(*[iter(jax.tree.leaves(entry))] * 2)) for entry in state.eigenvectors
        ]
        for i, (vals, pl) in enumerate(zip(values, plans)):
            want = [(pl.num_blocks, b) for b in pl.blocks]
            if [tuple(v.shape) for v in vals] != want or len(vectors[i]) != len(_full_modes(pl)):
                raise ValueError(
                    f"updates leaf {i} has shape {tuple(leaves[i].shape)}, which needs eigenvalues of shapes {want}, "
                    f"but the state holds {[tuple(v.shape) for v in vals]}: was it initialised for other params?"
                )
        grads = [g.astype(_statistics_dtype(g.dtype)) for g in leaves]
        blocks = [_to_blocks(g, pl) if pl.dims else None for g, pl in zip(grads, plans)]
        count = state.count
        count_inc = optax.safe_increment(count)

        def gather(operand):
            vecs, vals = operand
            new_vecs, new_vals, rejected = [], [], jnp.zeros((), jnp.int32)
            for q_entry, v_entry, b, pl in zip(vecs, vals, blocks, plans):
                if b is None:
                    new_vecs.append(q_entry)
                    new_vals.append(v_entry)
                    continue
                dt = b.dtype
                b2 = jnp.asarray(beta2, dt)
                weight = jnp.where(b2 == 1, jnp.ones((), dt), 1 - b2)
                fresh = _block_statistics(b, pl)
                q_out, v_out, full = [], [], iter(q_entry)
                for i, (lam, gg) in enumerate(zip(v_entry, fresh)):
                    if pl.diagonal[i]:
                        v_out.append(b2 * lam + weight * gg)
                        continue
                    q = next(full)
                    u = _decode(q, pl.blocks[i], dt, iters)
                    s = jnp.matmul(u * lam[..., None, :], jnp.swapaxes(u, -1, -2), precision=_HIGHEST)
                    s = b2 * s + weight * gg
                    new_lam, new_u = jnp.linalg.eigh((s + jnp.swapaxes(s, -1, -2)) / 2)
                    ok = jnp.all(jnp.isfinite(new_lam), axis=-1) & jnp.all(jnp.isfinite(new_u), axis=(-2, -1))
                    rejected = rejected + jnp.sum(~ok).astype(jnp.int32)
                    new_q = _encode(jnp.where(ok[:, None, None], new_u, 0), qb)
                    q_out.append(Quantized(*(_select_blocks(ok, a, o) for a, o in zip(new_q, q))))
                    v_out.append(jnp.where(ok[:, None], jnp.maximum(new_lam, 0), lam))
                new_vecs.append(tuple(q_out))
                new_vals.append(tuple(v_out))
            return (new_vecs, new_vals), rejected

        def keep(operand):
            return operand, jnp.zeros((), jnp.int32)

        (vectors, values), rejected = _cond(count % statistics_every == 0, gather, keep, (vectors, values))

        preconditioning = count >= start_preconditioning_step
        new_graft, new_momentum, out = [], [], []
        for g, b, q_entry, v_entry, v, m, pl, leaf in zip(
            grads, blocks, vectors, values, graft_moment, momentum, plans, leaves
        ):
            dt = g.dtype
            if b is None:
                direction = g
            else:
                roots, full = [], iter(q_entry)
                for i, lam in enumerate(v_entry):
                    if pl.diagonal[i]:
                        roots.append(_diagonal_roots(lam, pl.root_order, jnp.asarray(ridge_epsilon, dt))[0])
                        continue
                    u = _decode(next(full), pl.blocks[i], dt, iters)
                    d, _ = _diagonal_roots(lam, pl.root_order, jnp.asarray(ridge_epsilon, dt))
                    roots.append(jnp.matmul(u * d[..., None, :], jnp.swapaxes(u, -1, -2), precision=_HIGHEST))
                direction = _from_blocks(_precondition_blocks(b, roots, pl), pl)
            if grafting is not Grafting.NONE:
                v, graft_direction = _graft(g, v, count_inc, grafting, graft_beta2, graft_eps)
                graft_norm = jnp.linalg.norm(graft_direction)
                norm = jnp.linalg.norm(direction)
                scale = jnp.where(norm > 0, graft_norm / jnp.where(norm > 0, norm, 1), 0).astype(dt)
                direction = jnp.where(preconditioning, direction * scale, graft_direction)
            else:
                direction = jnp.where(preconditioning, direction, g)
            b1 = jnp.asarray(beta1, dt)
            m = b1 * m + (1 - b1) * direction
            t = count_inc.astype(dt)
            if nesterov:
                u_out = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * direction / (1 - b1**t)
            else:
                u_out = m / (1 - b1**t)
            new_graft.append(v)
            new_momentum.append(m)
            out.append(u_out.astype(leaf.dtype))

        new_state = Shampoo4bitState(
            count=count_inc,
            eigenvectors=_like(state.eigenvectors, jax.tree.leaves(vectors)),
            eigenvalues=_like(state.eigenvalues, [a for entry in values for a in entry]),
            graft_moment=_like(state.graft_moment, new_graft),
            momentum=_like(state.momentum, new_momentum),
            rejected_updates=state.rejected_updates + rejected,
        )
        return treedef.unflatten(out), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def shampoo_4bit(
    learning_rate: optax.ScalarOrSchedule,
    beta1=0.9,
    beta2=0.999,
    ridge_epsilon=1e-6,
    weight_decay=0.0,
    weight_decay_mask=None,
    *,
    layout: ShampooLayout = _DEFAULT_LAYOUT,
    grafting: Grafting = Grafting.ADAM,
    graft_beta2=0.999,
    graft_eps=1e-8,
    statistics_every=10,
    start_preconditioning_step=10,
    nesterov: bool = False,
    quantization: QuantizationOptions = _DEFAULT_QUANTIZATION,
) -> optax.GradientTransformation:
    r"""4-bit Shampoo with decoupled weight decay: :func:`scale_by_shampoo_4bit`, then ``+ weight_decay * params``,
    then ``* -learning_rate``, i.e. ``x <- x - η_t (u_t + λ x)``.

    Args:
      learning_rate: a float or an ``optax`` schedule.
      weight_decay: decoupled weight decay ``λ >= 0``.
      weight_decay_mask: as in ``optax.add_decayed_weights``.
      beta1, beta2, ridge_epsilon, layout, grafting, graft_beta2, graft_eps, statistics_every,
        start_preconditioning_step, nesterov, quantization: see
        :func:`scale_by_shampoo_4bit`.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``; its first state is a :class:`Shampoo4bitState`).

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from tnkit import optim
      >>> target = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
      >>> loss = lambda w: jnp.sum((w - target) ** 2)
      >>> tx = optim.shampoo_4bit(0.1, statistics_every=1, start_preconditioning_step=1)
      >>> @jax.jit
      ... def step(w, state):
      ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
      ...     return optax.apply_updates(w, updates), state
      >>> w, state = jnp.zeros((2, 3)), tx.init(jnp.zeros((2, 3)))
      >>> for _ in range(100):
      ...     w, state = step(w, state)
      >>> bool(loss(w) < 1e-2)
      True
    """
    if not callable(weight_decay):
        _check_range(weight_decay, "weight_decay", integer=False, low=0, high=math.inf, high_open=True)
    return optax.chain(
        scale_by_shampoo_4bit(
            beta1,
            beta2,
            ridge_epsilon,
            layout=layout,
            grafting=grafting,
            graft_beta2=graft_beta2,
            graft_eps=graft_eps,
            statistics_every=statistics_every,
            start_preconditioning_step=start_preconditioning_step,
            nesterov=nesterov,
            quantization=quantization,
        ),
        optax.add_decayed_weights(weight_decay, weight_decay_mask),
        optax.scale_by_learning_rate(learning_rate),
    )
