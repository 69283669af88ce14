"""Tests for tnkit.optim.shampoo / scale_by_shampoo.

* A conformance suite (``_CONFORMANCE``) meant for every optimizer in tnkit.optim: convergence on quadratics and on
  Rosenbrock, stable state shapes/dtypes under ``jit``, no recompilation across steps, ``inject_hyperparams``.
* Mathematical oracles in float64 NumPy: full-matrix AdaGrad for a vector, ``L^{-1/4} G R^{-1/4}`` for a matrix, the
  dense Kronecker product ``(⊗_i P_i) vec(G)`` for a 3-tensor, blocks, merged modes, diagonal factors.
* Each feature (grafting, schedules, EMA/sum, momentum, weight decay, failure handling, bfloat16) against its
  formula, and the optax / flax integrations.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tnkit import optim
from tnkit.optim import Grafting, RootMethod, ShampooLayout

# ------------------------------------------------------------------------------------------------ dense oracles


def _inv_root(s, p, ridge_epsilon):
    """``(S + ε λ_max I)^{-1/p}`` in float64 (the ridge is ``ε`` for a zero matrix), negative eigenvalues clipped."""
    lam, q = np.linalg.eigh(s)
    ridge = ridge_epsilon * lam[-1] if lam[-1] > 0 else ridge_epsilon
    return (q * (np.maximum(lam, 0) + ridge) ** (-1.0 / p)) @ q.T


def _unfold(g, i):
    return np.moveaxis(g, i, 0).reshape(g.shape[i], -1)


def _shampoo_directions(grads, *, ridge_epsilon, p=None, beta2=1.0, diagonal=None):
    """Un-grafted Shampoo directions for a sequence of gradients of one tensor, preconditioning at every step.

    The preconditioner is the dense Kronecker product ``P_1 ⊗ ... ⊗ P_k`` (NumPy's ``kron``) applied to the
    row-major ``vec(G)``; a diagonal mode uses ``diag(S_i)`` in place of ``S_i``.
    """
    k = grads[0].ndim
    p = p or 2 * k
    diagonal = diagonal or (False,) * k
    stats = [np.zeros((n, n)) for n in grads[0].shape]
    out = []
    for g in grads:
        w = 1.0 if beta2 == 1.0 else 1.0 - beta2
        stats = [beta2 * s + w * _unfold(g, i) @ _unfold(g, i).T for i, s in enumerate(stats)]
        factors = [_inv_root(np.diag(np.diag(s)) if d else s, p, ridge_epsilon) for s, d in zip(stats, diagonal)]
        kron = functools.reduce(np.kron, factors)
        out.append((kron @ g.ravel()).reshape(g.shape))
    return out


def _blockwise(grads, slices, **kw):
    """Apply :func:`_shampoo_directions` independently to each block ``g[slc]``."""
    out = [np.zeros_like(g) for g in grads]
    for slc in slices:
        for o, d in zip(out, _shampoo_directions([g[slc] for g in grads], **kw)):
            o[slc] = d
    return out


def _grads(shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


def _run(tx, params, grads, *, jit=True):
    """Updates and states of ``tx`` for a list of gradients (params kept fixed)."""
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params)
    updates, states = [], []
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, params)
        updates.append(u)
        states.append(state)
    return updates, states


def _close(a, b, rtol=1e-8):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.max(np.abs(a - b), initial=0.0))
    scale = float(np.max(np.abs(b), initial=0.0))
    assert err <= rtol * scale, f"relative error {err / max(scale, 1e-300):.3e} > {rtol:g}"


# Raw Shampoo: no grafting, no momentum, sum statistics, roots from the first step and at every step.
_RAW = dict(beta1=0.0, beta2=1.0, grafting=Grafting.NONE, start_preconditioning_step=0, precondition_every=1)
_EPS = 1e-9
_KRON = ShampooLayout(merge_small_dims=False)  # one factor per mode of the parameter as given
_RAW_TX = optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=_KRON, **_RAW)  # shared: its jitted update is reused

# ----------------------------------------------------------------------------------------------- conformance
# One entry per optimizer of tnkit.optim: (name, factory(learning_rate) -> GradientTransformation, learning rate).

_CONFORMANCE = [
    (
        "shampoo",  # block_size=4: matrices keep one factor per mode, larger modes are blocked
        functools.partial(
            optim.shampoo, layout=ShampooLayout(block_size=4), precondition_every=1, start_preconditioning_step=1
        ),
        0.1,
    ),
]
_IDS = [c[0] for c in _CONFORMANCE]


def _parabola():
    target = jnp.array([1.0, -1.0, 1.0], jnp.float32)
    return jnp.array([-1.0, 10.0, 1.0], jnp.float32), target, lambda x: jnp.sum((x - target) ** 2)


def _rosenbrock():
    return jnp.zeros(2, jnp.float32), jnp.ones(2), lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _mixed():
    t1, t2 = jnp.array([1.0, -1.0, 2.0]), jnp.array([[3.0, -2.0, 0.5], [1.0, 4.0, -1.0]])
    init = (jnp.zeros(3, jnp.float32), jnp.zeros((2, 3), jnp.float32))
    return init, (t1, t2), lambda x: jnp.sum((x[0] - t1) ** 2) + jnp.sum((x[1] - t2) ** 2)


def _minimize(tx, init, loss, steps):
    def step(carry, _):
        x, state = carry
        u, state = tx.update(jax.grad(loss)(x), state, x)
        return (optax.apply_updates(x, u), state), None

    (x, _), _ = jax.jit(lambda x, s: jax.lax.scan(step, (x, s), length=steps))(init, tx.init(init))
    return x


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_converges(name, factory, lr):
    for setup, steps, schedule in [(_parabola, 300, lr), (_mixed, 300, lr), (_rosenbrock, 3000, None)]:
        init, target, loss = setup()
        if schedule is None:  # Rosenbrock's valley needs a decaying step
            schedule = optax.cosine_decay_schedule(0.05, steps, alpha=0.01)
        x = _minimize(factory(schedule), init, loss, steps)
        for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(target)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=3e-2, err_msg=f"{name} on {setup.__name__}")


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_jit_state_stable_and_no_recompilation(name, factory, lr):
    tx = factory(lr)
    params = {
        "w": jnp.ones((5, 3), jnp.float32),
        "b": jnp.ones(3, jnp.bfloat16),
        "t": jnp.ones((2, 3, 4)),
        "s": jnp.ones((), jnp.float32),
        "e": jnp.ones((0, 3), jnp.float32),
    }
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        grads = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=p.dtype).reshape(p.shape) + p), params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    spec = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    dtypes = jax.tree.map(lambda a: a.dtype, params)
    for _ in range(4):
        params, state = step(params, state)
        assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == spec
        assert jax.tree.map(lambda a: a.dtype, params) == dtypes
    assert len(traces) == 1, f"{name} retraced across steps"
    assert jax.tree.map(lambda a: (a.shape, a.dtype), jax.jit(tx.init)(params)) == spec
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_inject_hyperparams(name, factory, lr):
    params = {"w": -jnp.ones((2, 3)), "b": jnp.ones(5)}
    grads = [{"w": jnp.asarray(g[:6].reshape(2, 3)), "b": jnp.asarray(g[6:])} for g in _grads((11,), 3)]
    plain, _ = _run(factory(lr), params, grads)
    tx = optax.inject_hyperparams(factory)(learning_rate=lr)
    injected, states = _run(tx, params, grads)
    for u, v in zip(plain, injected):
        jax.tree.map(lambda a, b: _close(a, b, 1e-6), v, u)
    # The injected learning rate can be changed in the state.
    state = states[-1]
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    zero, _ = jax.jit(tx.update)(grads[0], state, params)
    assert all(float(jnp.max(jnp.abs(z))) == 0.0 for z in jax.tree.leaves(zero))


# -------------------------------------------------------------------------------------------------- oracles


def test_vector_full_matrix_equals_full_matrix_adagrad():
    grads = _grads((5,), 6)
    tx = optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=ShampooLayout(diagonal_for_vectors=False), **_RAW)
    updates, states = _run(tx, jnp.zeros(5), grads)
    s = np.zeros((5, 5))
    for g, u in zip(grads, updates):
        s += np.outer(g, g)
        _close(u, _inv_root(s, 2, _EPS) @ g)  # (sum_t g_t g_t^T + ε λ_max I)^{-1/2} g
    assert [x.shape for x in states[-1].statistics[0]] == [(1, 5, 5)]


def test_matrix_oracle_left_right_quarter_roots():
    grads = _grads((4, 3), 4, seed=1)
    updates, _ = _run(_RAW_TX, jnp.zeros((4, 3)), grads)
    left, right = np.zeros((4, 4)), np.zeros((3, 3))
    for g, u in zip(grads, updates):
        left, right = left + g @ g.T, right + g.T @ g
        _close(u, _inv_root(left, 4, _EPS) @ g @ _inv_root(right, 4, _EPS))


@pytest.mark.parametrize("shape, root_order", [((2, 3, 4), None), ((3, 4), 2)])
def test_any_order_tensor_against_dense_kronecker(shape, root_order):
    grads = _grads(shape, 3, seed=2)
    layout = _KRON._replace(root_order=root_order)
    tx = _RAW_TX if root_order is None else optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=layout, **_RAW)
    updates, states = _run(tx, jnp.zeros(shape), grads)
    for u, d in zip(updates, _shampoo_directions(grads, ridge_epsilon=_EPS, p=root_order)):
        _close(u, d)
    assert [x.shape for x in states[-1].roots[0]] == [(1, n, n) for n in shape]


def test_layout_of_state():
    layout = ShampooLayout(block_size=8, diagonal_threshold=40)
    shapes = [(), (0, 3), (1, 1, 5), (2, 3, 20), (50, 9), (3, 2)]
    params = [jnp.ones(s) for s in shapes]
    state = optim.scale_by_shampoo(layout=layout).init(params)
    factor_shapes = [[x.shape for x in entry] for entry in state.statistics]
    assert factor_shapes == [
        [(1, 1)],  # scalar: a diagonal 1-vector
        [],  # empty: no factors
        [(1, 5)],  # vector after dropping size-1 modes: diagonal
        [(3, 6, 6), (3, 8, 8)],  # (2, 3) merged to 6; 20 cut into 3 blocks of 8
        [(2, 50), (2, 8, 8)],  # 50 > diagonal_threshold: diagonal; 9 cut into 2 blocks of 8
        [(1, 6, 6)],  # (3, 2) merged into one mode of 6: full-matrix AdaGrad on the whole matrix
    ]
    assert [[x.shape for x in entry] for entry in state.roots] == factor_shapes
    assert jax.tree.map(lambda a: a.shape, state.momentum) == [p.shape for p in params]
    assert np.array_equal(np.asarray(state.roots[3][1][2]), np.eye(8)) and float(jnp.max(state.statistics[3][1])) == 0


def test_blocking_of_large_modes():
    grads = _grads((10, 3), 3, seed=3)
    layout = ShampooLayout(block_size=4, merge_small_dims=False)
    updates, states = _run(optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=layout, **_RAW), jnp.zeros((10, 3)), grads)
    rows = [np.s_[0:4], np.s_[4:8], np.s_[8:10]]  # the last block is padded to 4 inside the optimizer
    for u, d in zip(updates, _blockwise(grads, rows, ridge_epsilon=_EPS)):
        _close(u, d)
    assert [x.shape for x in states[-1].statistics[0]] == [(3, 4, 4), (3, 3, 3)]


def test_merging_of_small_modes():
    grads = _grads((2, 3, 1, 20), 2, seed=4)
    layout = ShampooLayout(block_size=8)  # (2, 3, 1, 20) -> modes (6, 20) -> column blocks of 8, 8, 4 (+4 padding)
    tx = optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=layout, **_RAW)
    updates, states = _run(tx, jnp.zeros((2, 3, 1, 20)), grads)
    cols = [np.s_[:, 0:8], np.s_[:, 8:16], np.s_[:, 16:20]]
    flat = [g.reshape(6, 20) for g in grads]
    for u, d in zip(updates, _blockwise(flat, cols, ridge_epsilon=_EPS)):
        _close(u, d.reshape(2, 3, 1, 20))
    assert [x.shape for x in states[-1].statistics[0]] == [(3, 6, 6), (3, 8, 8)]


def test_diagonal_fallback_for_large_modes_and_vectors():
    grads = _grads((3, 12), 3, seed=5)
    vgrads = _grads((4,), 3, seed=6)
    layout = ShampooLayout(merge_small_dims=False, diagonal_threshold=8)
    tx = optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=layout, **_RAW)
    params = {"m": jnp.zeros((3, 12)), "v": jnp.zeros(4)}
    updates, states = _run(tx, params, [{"m": g, "v": v} for g, v in zip(grads, vgrads)])
    for u, d in zip(updates, _shampoo_directions(grads, ridge_epsilon=_EPS, diagonal=(False, True))):
        _close(u["m"], d)
    acc = np.zeros(4)
    for u, v in zip(updates, vgrads):  # a vector: diagonal AdaGrad, (acc + ε max(acc))^{-1/2} g
        acc += v**2
        _close(u["v"], v / np.sqrt(acc + _EPS * acc.max()))
    assert [x.shape for x in states[-1].statistics[0]] == [(1, 3, 3), (1, 12)]
    assert [x.shape for x in states[-1].statistics[1]] == [(1, 4)]


# -------------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize("grafting", [Grafting.SGD, Grafting.ADAGRAD, Grafting.RMSPROP, Grafting.ADAM])
def test_grafting_sets_the_norm(grafting):
    grads = _grads((5,), 3, seed=7)  # a vector: its Shampoo direction is diagonal AdaGrad's
    tx = optim.scale_by_shampoo(ridge_epsilon=_EPS, graft_beta2=0.9, graft_eps=1e-8, **dict(_RAW, grafting=grafting))
    updates, _ = _run(tx, jnp.zeros(5), grads)
    v, acc = np.zeros(5), np.zeros(5)
    for t, (g, u) in enumerate(zip(grads, updates), start=1):
        acc += g**2
        d = g / np.sqrt(acc + _EPS * acc.max())
        if grafting is Grafting.SGD:
            a = g
        elif grafting is Grafting.ADAGRAD:
            v = v + g**2
            a = g / (np.sqrt(v) + 1e-8)
        else:
            v = 0.9 * v + 0.1 * g**2
            a = g / (np.sqrt(v / (1 - 0.9**t) if grafting is Grafting.ADAM else v) + 1e-8)
        _close(u, d * np.linalg.norm(a) / np.linalg.norm(d), 1e-10)


def test_start_preconditioning_step_grafts_before():
    grads = _grads((4, 3), 4, seed=8)
    raw = dict(_RAW, grafting=Grafting.SGD, start_preconditioning_step=2)
    tx = optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=_KRON, **raw)
    updates, states = _run(tx, jnp.zeros((4, 3)), grads)
    _close(updates[0], grads[0], 0)
    _close(updates[1], grads[1], 0)
    assert np.all(np.asarray(states[1].roots[0][0]) == np.eye(4))  # no root computed yet
    # From step 2 on: statistics of all steps so far, roots recomputed every step.
    for t in (2, 3):
        d = _shampoo_directions(grads[: t + 1], ridge_epsilon=_EPS)[-1]
        _close(updates[t], d * np.linalg.norm(grads[t]) / np.linalg.norm(d), 1e-7)


def test_statistics_and_roots_schedules_with_ema():
    grads = _grads((4, 3), 7, seed=9)
    tx = optim.scale_by_shampoo(
        beta1=0.0, beta2=0.9, ridge_epsilon=_EPS, layout=_KRON, grafting=Grafting.NONE,
        statistics_every=2, precondition_every=3, start_preconditioning_step=1,
    )  # fmt: skip
    updates, states = _run(tx, jnp.zeros((4, 3)), grads)
    left = np.zeros((4, 4))
    root = np.eye(4)
    for count, (g, u, st) in enumerate(zip(grads, updates, states)):
        if count % 2 == 0:  # EMA statistics on even steps only
            left = 0.9 * left + 0.1 * g @ g.T
        _close(st.statistics[0][0][0], left, 1e-12)
        if count >= 1 and (count - 1) % 3 == 0:  # roots at steps 1, 4
            root = _inv_root(left, 4, _EPS)
        _close(st.roots[0][0][0], root, 1e-6)
        if count in (2, 3, 5, 6):  # identical roots between recomputations (not even re-rounded)
            assert np.array_equal(np.asarray(st.roots[0][0]), np.asarray(states[count - 1].roots[0][0]))
    # Both pieces of work sit behind a lax.cond.
    jaxpr = str(jax.make_jaxpr(tx.update)(jnp.asarray(grads[0]), tx.init(jnp.zeros((4, 3)))))
    assert jaxpr.count("cond[") == 2 and "eigh" in jaxpr


def test_eager_matches_jit():
    # Eagerly the step count is concrete and the two conds become plain Python branches.
    grads = _grads((5,), 4, seed=15)
    tx = optim.scale_by_shampoo(statistics_every=2, precondition_every=2, start_preconditioning_step=1)
    for u, v in zip(_run(tx, jnp.zeros(5), grads)[0], _run(tx, jnp.zeros(5), grads, jit=False)[0]):
        _close(v, u, 1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_and_nesterov(nesterov):
    grads = _grads((5,), 4, seed=10)
    tx = optim.scale_by_shampoo(beta1=0.8, grafting=Grafting.SGD, start_preconditioning_step=100, nesterov=nesterov)
    updates, _ = _run(tx, jnp.zeros(5), grads)
    m = np.zeros(5)
    for t, (g, u) in enumerate(zip(grads, updates), start=1):  # before preconditioning the direction is g
        m = 0.8 * m + 0.2 * g
        want = 0.8 * m / (1 - 0.8 ** (t + 1)) + 0.2 * g / (1 - 0.8**t) if nesterov else m / (1 - 0.8**t)
        _close(u, want, 1e-12)


def test_decoupled_weight_decay_and_learning_rate():
    params = {"w": jnp.arange(1.0, 7.0).reshape(2, 3), "b": jnp.ones(3)}
    grads = [{"w": jnp.asarray(g), "b": jnp.ones(3)} for g in _grads((2, 3), 2, seed=11)]
    grads[1] = jax.tree.map(jnp.zeros_like, grads[1])
    base, _ = _run(optim.scale_by_shampoo(beta1=0.0), params, grads)
    mask = {"w": True, "b": False}
    full, _ = _run(optim.shampoo(0.5, beta1=0.0, weight_decay=0.1, weight_decay_mask=mask), params, grads)
    # Decoupled: the decay is added to the Shampoo update (never preconditioned), then the learning rate applies.
    for u, v in zip(full, base):
        _close(u["w"], -0.5 * (v["w"] + 0.1 * params["w"]), 1e-12)
        _close(u["b"], -0.5 * v["b"], 1e-12)
    # Without momentum a zero gradient gives a zero Shampoo update (the graft norm is 0): only the decay acts.
    assert float(jnp.max(jnp.abs(base[1]["w"]))) == 0.0


def test_rejected_roots_keep_the_previous_preconditioner():
    grads = _grads((4, 3), 2, seed=11)
    bad = grads[1].copy()
    bad[0, 0] = np.inf
    _, states = _run(_RAW_TX, jnp.zeros((4, 3)), [grads[0], bad])
    assert int(states[0].rejected_roots) == 0 and int(states[1].rejected_roots) == 2  # both factors of the one block
    for a, b in zip(states[0].roots[0], states[1].roots[0]):
        assert np.array_equal(np.asarray(a), np.asarray(b)) and bool(jnp.all(jnp.isfinite(b)))
    # A residual threshold no root can meet: every block keeps the identity it started with.
    tight = optim.scale_by_shampoo(ridge_epsilon=_EPS, layout=_KRON, max_residual=1e-300, **_RAW)
    _, states = _run(tight, {"w": jnp.zeros((4, 3)), "v": jnp.zeros(3)}, [{"w": grads[0], "v": grads[0][0]}])
    assert int(states[0].rejected_roots) == 3
    assert np.array_equal(np.asarray(states[0].roots[1][0][0]), np.eye(4))
    assert np.array_equal(np.asarray(states[0].roots[0][0]), np.ones((1, 3)))


def test_bfloat16_params_float32_statistics():
    target = jnp.asarray(_grads((4, 3), 1, seed=12)[0], jnp.bfloat16)
    params = {"w": jnp.zeros((4, 3), jnp.bfloat16), "b": jnp.zeros(3, jnp.bfloat16)}

    def loss(p):
        return jnp.sum((p["w"] - target).astype(jnp.float32) ** 2) + jnp.sum((p["b"] - 1).astype(jnp.float32) ** 2)

    tx = optim.shampoo(0.05, precondition_every=1, start_preconditioning_step=1)

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s, u

    state = tx.init(params)
    first = float(loss(params))
    for _ in range(30):
        params, state, updates = step(params, state)
    assert updates["w"].dtype == jnp.bfloat16 and params["w"].dtype == jnp.bfloat16
    inner = state[0]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((inner.statistics, inner.roots, inner.momentum)))
    assert float(loss(params)) < 0.1 * first
    # inject_hyperparams casts hyperparameters to the parameters' dtype, where 0.999 is 1.0: a clear error instead.
    with pytest.raises(TypeError, match="must be at least float32, got a bfloat16 value.*hyperparam_dtype=jnp.float32"):
        optax.inject_hyperparams(optim.shampoo)(0.05).init(params)
    optax.inject_hyperparams(optim.shampoo, hyperparam_dtype=jnp.float32)(0.05).init(params)


def test_newton_roots_match_the_oracle():
    grads = _grads((5, 4), 3, seed=13)
    tx = optim.scale_by_shampoo(ridge_epsilon=1e-4, layout=_KRON, root_method=RootMethod.COUPLED_NEWTON, **_RAW)
    updates, states = _run(tx, jnp.zeros((5, 4)), grads)
    for u, d in zip(updates, _shampoo_directions(grads, ridge_epsilon=1e-4)):
        _close(u, d, 1e-3)  # the ridge differs by Newton's estimate of λ_max
    assert int(states[-1].rejected_roots) == 0


def test_chain_and_multisteps():
    params = jnp.zeros((3, 2))
    grads = _grads((3, 2), 2, seed=14)
    alias_tx = optim.shampoo(0.1)
    chained = optax.chain(optax.clip_by_global_norm(1e6), optim.scale_by_shampoo(), optax.scale(-0.1))
    alias, _ = _run(alias_tx, params, grads)
    via_chain, _ = _run(chained, params, grads)
    for u, v in zip(alias, via_chain):
        _close(v, u, 1e-12)
    # MultiSteps: zeros while accumulating, then one Shampoo step on the mean gradient.
    updates, _ = _run(optax.MultiSteps(alias_tx, every_k_schedule=2), params, grads)
    assert float(jnp.max(jnp.abs(updates[0]))) == 0.0
    single, _ = _run(alias_tx, params, [(grads[0] + grads[1]) / 2])
    _close(updates[1], single[0], 1e-12)


def test_nnx_optimizer_trains_a_small_mlp():
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(4, 8, rngs=rngs)
            self.out = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))

    model = MLP(nnx.Rngs(0))
    tx = optim.shampoo(0.05, precondition_every=2, start_preconditioning_step=1)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jnp.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1)

    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    traces = []

    @nnx.jit
    def train_step(model, optimizer):
        traces.append(1)
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer)) for _ in range(20)]
    assert losses[-1] < 0.3 * losses[0]
    assert len(traces) == 1  # the state keeps its structure inside nnx.Optimizer


# -------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\), got 1.0"),
        ({"beta2": 0.0}, ValueError, r"beta2 must be in \(0, 1\], got 0.0"),
        ({"beta2": 1.5}, ValueError, r"beta2 must be in \(0, 1\], got 1.5"),
        ({"ridge_epsilon": -1e-6}, ValueError, "ridge_epsilon must be in"),
        ({"graft_eps": "1e-8"}, TypeError, "graft_eps must be a real number"),
        ({"statistics_every": 0}, ValueError, r"statistics_every must be in \[1, inf\), got 0"),
        ({"precondition_every": 2.5}, TypeError, "precondition_every must be an int"),
        ({"start_preconditioning_step": -1}, ValueError, "start_preconditioning_step must be in"),
        ({"max_residual": -0.1}, ValueError, "max_residual must be in"),
        ({"grafting": "adam"}, TypeError, "grafting must be a tnkit.optim.Grafting, got 'adam'"),
        ({"root_method": "eigh"}, TypeError, "root_method must be a tnkit.optim.RootMethod"),
        ({"nesterov": 1}, TypeError, "nesterov must be a bool"),
        ({"layout": {"block_size": 4}}, TypeError, "layout must be a tnkit.optim.ShampooLayout, got dict"),
        ({"layout": ShampooLayout(block_size=0)}, ValueError, "layout.block_size must be a positive int, got 0"),
        ({"layout": ShampooLayout(diagonal_threshold=2.0)}, ValueError, "layout.diagonal_threshold must be"),
        ({"layout": ShampooLayout(root_order=0)}, ValueError, "layout.root_order must be a positive int or None"),
        ({"layout": ShampooLayout(merge_small_dims=None)}, TypeError, "layout.merge_small_dims must be a bool"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.scale_by_shampoo(**kwargs)


def test_bad_params_and_weight_decay():
    with pytest.raises(TypeError, match="params leaf 1 must have a real floating dtype.*got int32"):
        optim.scale_by_shampoo().init([jnp.ones(2), jnp.ones(2, jnp.int32)])
    tx = optim.scale_by_shampoo(layout=_KRON)
    match = r"updates leaf 0 has shape \(3, 2\).*\[\(1, 3, 3\), \(1, 2, 2\)\].*holds \[\(1, 2, 2\), "
    with pytest.raises(ValueError, match=match):
        tx.update(jnp.ones((3, 2)), tx.init(jnp.ones((2, 3))))
    with pytest.raises(ValueError, match="weight_decay must be in"):
        optim.shampoo(0.1, weight_decay=-1.0)
