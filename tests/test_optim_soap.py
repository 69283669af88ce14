"""Tests for tnkit.optim.soap / scale_by_soap.

* The conformance suite of tests/test_optim_shampoo.py applied to SOAP.
* Oracle: a float64 NumPy transcription of the paper's single-layer SOAP step (Vyas et al. 2024): Adam on
  ``Q_L^T G Q_R``, statistics after the step, ``Q <- qr(L Q)`` every ``f`` steps; eigh initialisation at step 1.
  Its k-mode generalisation for a 3-tensor.
* The refresh schedule, plain Adam for vectors (against ``optax.scale_by_adam``), blocking, bad options.
"""

import functools

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests import test_optim_shampoo as base
from tnkit import optim
from tnkit.optim import ShampooLayout

_CONFORMANCE = [
    (
        "soap",
        functools.partial(optim.soap, layout=ShampooLayout(block_size=4), precondition_frequency=2),
        0.1,
    ),
]
_IDS = [c[0] for c in _CONFORMANCE]


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_converges(name, factory, lr):
    base.test_conformance_converges(name, factory, lr)


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_jit_state_stable_and_no_recompilation(name, factory, lr):
    base.test_conformance_jit_state_stable_and_no_recompilation(name, factory, lr)


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_inject_hyperparams(name, factory, lr):
    base.test_conformance_inject_hyperparams(name, factory, lr)


# ------------------------------------------------------------------------------------------------------ oracle


def _soap_numpy(grads, *, b1, b2, bs, eps, f):
    """The paper's SOAP for one matrix parameter, in float64; returns the updates ``N`` (before ``-lr``)."""
    m_, n_ = grads[0].shape
    mom, v = np.zeros((m_, n_)), np.zeros((m_, n_))
    left = right = ql = qr = None
    out = []
    for t, g in enumerate(grads, start=1):
        if t == 1:  # initialisation: statistics of the first gradient and their eigenvectors (decreasing order)
            left, right = (1 - bs) * g @ g.T, (1 - bs) * g.T @ g
            ql, qr = np.linalg.eigh(left)[1][:, ::-1], np.linalg.eigh(right)[1][:, ::-1]
        g_rot = ql.T @ g @ qr
        mom = b1 * mom + (1 - b1) * g
        m_rot = ql.T @ mom @ qr
        v = b2 * v + (1 - b2) * g_rot**2
        n_rot = (m_rot / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(ql @ n_rot @ qr.T)
        if t > 1:
            left, right = bs * left + (1 - bs) * g @ g.T, bs * right + (1 - bs) * g.T @ g
            if t % f == 0:
                ql, qr = np.linalg.qr(left @ ql)[0], np.linalg.qr(right @ qr)[0]
    return out


_KRON = ShampooLayout(merge_small_dims=False)
# eps = 1e-4, not 1e-8: at step 1 the rotated gradient Q_L^T G Q_R is diagonal (Q_L, Q_R are G's singular
# vectors), so its off-diagonal entries are round-off (1e-16) and Adam's ratio g' / (|g'| + eps) amplifies them by
# 1 / eps; a larger eps keeps the comparison at round-off level.
_HYPER = {"b1": 0.9, "b2": 0.95, "shampoo_beta2": 0.8, "eps": 1e-4}


def test_matrix_oracle_against_the_papers_algorithm():
    # The update is invariant to the signs of the basis columns, so eigh/QR sign conventions cannot matter.
    grads = base._grads((4, 3), 7, seed=5)
    tx = optim.scale_by_soap(**_HYPER, precondition_frequency=2, layout=_KRON)
    updates, states = base._run(tx, jnp.zeros((4, 3)), grads)
    want = _soap_numpy(grads, b1=0.9, b2=0.95, bs=0.8, eps=1e-4, f=2)
    for u, w in zip(updates, want):
        base._close(u, w, 1e-10)
    assert [q.shape for q in states[-1].bases[0]] == [(1, 4, 4), (1, 3, 3)]
    q = np.asarray(states[-1].bases[0][0][0])
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)


def _soap_numpy_tensor(grads, *, b1, b2, bs, eps, f):
    """The k-mode generalisation: one statistic and one basis per mode, rotations by mode products."""
    k = grads[0].ndim

    def rotate(x, qs, transpose):
        for i, q in enumerate(qs):
            x = np.moveaxis(np.tensordot(q.T if transpose else q, x, axes=(1, i)), 0, i)
        return x

    def unfold(x, i):
        return np.moveaxis(x, i, 0).reshape(x.shape[i], -1)

    mom, v = np.zeros(grads[0].shape), np.zeros(grads[0].shape)
    out = []
    for t, g in enumerate(grads, start=1):
        if t == 1:
            stats = [(1 - bs) * unfold(g, i) @ unfold(g, i).T for i in range(k)]
            qs = [np.linalg.eigh(s)[1][:, ::-1] for s in stats]
        mom = b1 * mom + (1 - b1) * g
        v = b2 * v + (1 - b2) * rotate(g, qs, True) ** 2
        n_rot = (rotate(mom, qs, True) / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(rotate(n_rot, qs, False))
        if t > 1:
            stats = [bs * s + (1 - bs) * unfold(g, i) @ unfold(g, i).T for i, s in enumerate(stats)]
            if t % f == 0:
                qs = [np.linalg.qr(s @ q)[0] for s, q in zip(stats, qs)]
    return out


def test_three_tensor_against_mode_product_oracle():
    grads = base._grads((2, 3, 4), 5, seed=8)
    tx = optim.scale_by_soap(**_HYPER, precondition_frequency=2, layout=_KRON)
    updates, states = base._run(tx, jnp.zeros((2, 3, 4)), grads)
    for u, w in zip(updates, _soap_numpy_tensor(grads, b1=0.9, b2=0.95, bs=0.8, eps=1e-4, f=2)):
        base._close(u, w, 1e-9)
    assert [q.shape for q in states[-1].bases[0]] == [(1, 2, 2), (1, 3, 3), (1, 4, 4)]


def test_refresh_frequency_is_honoured():
    grads = base._grads((3, 3), 7, seed=6)
    tx = optim.scale_by_soap(**_HYPER, precondition_frequency=3, layout=_KRON)
    _, states = base._run(tx, jnp.zeros((3, 3)), grads)
    bases = [np.asarray(s.bases[0][0][0]) for s in states]
    stats = [np.asarray(s.statistics[0][0][0]) for s in states]
    # Step 1: eigenvectors of (1 - β_s) G G^T.
    g0 = grads[0]
    lam = np.linalg.eigvalsh(0.2 * g0 @ g0.T)[::-1]
    np.testing.assert_allclose(np.diag(bases[0].T @ (0.2 * g0 @ g0.T) @ bases[0]), lam, atol=1e-12)
    for k in range(1, len(grads)):
        t = k + 1
        if t % 3 == 0:  # refreshed after step t: qr(L_t Q_{t-1}), equal up to column signs
            want = np.linalg.qr(stats[k] @ bases[k - 1])[0]
            np.testing.assert_allclose(np.abs(bases[k].T @ want), np.eye(3), atol=1e-10)
            assert not np.allclose(bases[k], bases[k - 1])
        else:
            np.testing.assert_array_equal(bases[k], bases[k - 1])


def test_vectors_get_plain_adam_and_blocks_have_their_own_bases():
    grads = [{"b": g[:5], "w": g[5:].reshape(6, 3)} for g in base._grads((23,), 3, seed=7)]
    params = {"b": jnp.zeros(5), "w": jnp.zeros((6, 3))}
    tx = optim.scale_by_soap(**_HYPER, layout=ShampooLayout(block_size=4, merge_small_dims=False))
    updates, states = base._run(tx, params, grads)
    adam, _ = base._run(optax.scale_by_adam(b1=0.9, b2=0.95, eps=1e-4), params["b"], [g["b"] for g in grads])
    for u, a in zip(updates, adam):
        base._close(u["b"], a, 1e-10)
    assert states[-1].bases[0] == ()  # a vector: not rotated
    assert [q.shape for q in states[-1].bases[1]] == [(2, 4, 4), (2, 3, 3)]  # 6 rows cut into 2 blocks of 4
    # Block 0 (rows 0..3) equals SOAP on that sub-matrix alone.
    want = _soap_numpy([g["w"][:4] for g in grads], b1=0.9, b2=0.95, bs=0.8, eps=1e-4, f=10)
    for u, w in zip(updates, want):
        base._close(u["w"][:4], w, 1e-10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"b1": 1.0}, ValueError, "b1 must be in"),
        ({"b2": 0.0}, ValueError, "b2 must be in"),
        ({"shampoo_beta2": 1.0}, ValueError, "shampoo_beta2 must be in"),
        ({"eps": -1.0}, ValueError, "eps must be in"),
        ({"precondition_frequency": 0}, ValueError, "precondition_frequency must be in"),
        ({"precondition_frequency": 1.5}, TypeError, "precondition_frequency must be an int"),
        ({"layout": "big"}, TypeError, "layout must be a tnkit.optim.ShampooLayout"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.scale_by_soap(**kwargs)


def test_bad_params_and_mismatched_state():
    with pytest.raises(TypeError, match="params leaf 0 must have a real floating dtype"):
        optim.scale_by_soap().init([jnp.zeros(3, jnp.int32)])
    state = optim.scale_by_soap().init(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="state was initialised for"):
        optim.scale_by_soap().update(jnp.zeros((3, 3)), state)
