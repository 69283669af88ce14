"""Tests for tnkit.optim.conjugate_complex: complex parameters with optax.

The oracle is calculus on ``f(z) = sum |z - c|^2`` written in real coordinates: its steepest-ascent direction is
``df/dx + i df/dy = 2 (z - c)``, so one SGD step of size ``lr`` must land on ``z - 2 lr (z - c)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tnkit import layers, optim

C = jnp.array([1 + 2j, -3 + 0.5j, 0.25 - 1j], jnp.complex64)


def _loss(z):
    return jnp.sum(jnp.abs(z - C) ** 2)


def _run(tx, z, steps, loss=_loss):
    state = tx.init(z)

    @jax.jit
    def step(z, state):
        updates, state = tx.update(jax.grad(loss)(z), state, z)
        return optax.apply_updates(z, updates), state

    for _ in range(steps):
        z, state = step(z, state)
    return z


def test_one_sgd_step_is_steepest_descent():
    z0 = jnp.array([0.5 - 0.5j, 2 + 1j, -1 + 3j], jnp.complex64)
    lr = 0.1
    z1 = _run(optax.chain(optim.conjugate_complex(), optax.sgd(lr)), z0, 1)
    expected = np.asarray(z0) - 2 * lr * (np.asarray(z0) - np.asarray(C))
    np.testing.assert_allclose(np.asarray(z1), expected, rtol=1e-6)


def test_without_conjugation_the_imaginary_part_ascends():
    # The reason the transform exists: JAX's gradient fed to optax moves Im(z) away from Im(c).
    z0 = jnp.zeros(3, jnp.complex64)
    z1 = _run(optax.sgd(0.1), z0, 1)
    assert np.all(np.abs(np.imag(np.asarray(z1 - C))) > np.abs(np.imag(np.asarray(z0 - C))))
    z1 = _run(optax.chain(optim.conjugate_complex(), optax.sgd(0.1)), z0, 1)
    assert np.all(np.abs(np.asarray(z1 - C)) < np.abs(np.asarray(z0 - C)))


def test_real_and_none_leaves_pass_through():
    tx = optim.conjugate_complex()
    updates = {"c": jnp.array([1 + 2j], jnp.complex64), "r": jnp.array([1.5, -2.0]), "masked": None}
    state = tx.init(updates)
    assert isinstance(state, optax.EmptyState)
    out, state2 = jax.jit(tx.update)(updates, state)
    np.testing.assert_array_equal(np.asarray(out["c"]), np.array([1 - 2j], np.complex64))
    np.testing.assert_array_equal(np.asarray(out["r"]), np.asarray(updates["r"]))
    assert out["masked"] is None
    assert out["c"].dtype == jnp.complex64 and out["r"].dtype == updates["r"].dtype
    assert state2 == state


def test_adam_converges_on_complex_parameters():
    z = _run(optax.chain(optim.conjugate_complex(), optax.adam(0.1)), jnp.zeros(3, jnp.complex64), 300)
    np.testing.assert_allclose(np.asarray(z), np.asarray(C), atol=1e-2)


def test_shampoo_on_complex_through_split_real_and_imaginary():
    target = (jnp.arange(6.0).reshape(2, 3) + 1j * jnp.array([[1.0, -1.0, 0.5], [2.0, 0.0, -0.5]])).astype(
        jnp.complex64
    )

    def loss(w):
        return jnp.sum(jnp.abs(w - target) ** 2)

    tx = optax.chain(
        optim.conjugate_complex(),
        optax.contrib.split_real_and_imaginary(
            optim.shampoo(0.1, precondition_every=1, start_preconditioning_step=1)
        ),
    )
    w = _run(tx, jnp.zeros((2, 3), jnp.complex64), 200, loss)
    assert float(loss(w)) < 1e-3 * float(loss(jnp.zeros((2, 3), jnp.complex64)))


def test_shampoo_rejects_complex_with_a_pointer_to_the_fix():
    with pytest.raises(TypeError, match="conjugate_complex"):
        optim.shampoo(0.1).init(jnp.zeros((2, 3), jnp.complex64))


def test_complex_tt_layer_trains_with_optax():
    # Fit a complex TT layer to the outputs of another TT layer of the same structure (a realisable target).
    spec = layers.TTLinearSpec(8, 8, ranks=2)
    teacher = spec.init(jax.random.key(0), dtype=jnp.complex64)
    x = jax.random.normal(jax.random.key(1), (32, 8), jnp.complex64)
    y = layers.apply(spec, teacher, x)

    def loss(params):
        return jnp.mean(jnp.abs(layers.apply(spec, params, x) - y) ** 2)

    student = spec.init(jax.random.key(2), dtype=jnp.complex64)
    trained = _run(optax.chain(optim.conjugate_complex(), optax.adam(0.02)), student, 400, loss)
    assert all(leaf.dtype == jnp.complex64 for leaf in jax.tree.leaves(trained))
    assert float(loss(trained)) < 1e-2 * float(loss(student))
