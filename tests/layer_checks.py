"""Checks shared by the layer tests: every structured layer is compared with the dense layer of its own weight.

Each check takes a *built* layer (nnx or Equinox) or a spec, so a test module per format stays short. The oracle
is always dense maths: ``x @ W + b`` with ``W = layer.weight()`` cross-checked against the spec's factors
contracted by NumPy (``dense_reference``) where the test supplies one.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from tnkit import layers


def random_input(shape, seed=0, dtype=np.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def check_spec_against_dense(spec, params, dense_reference, x, *, atol=1e-10):
    """``to_dense`` equals an independent NumPy reconstruction; every implementation equals ``x @ W``."""
    w = np.asarray(dense_reference({k: np.asarray(v) for k, v in params.items()}))
    np.testing.assert_allclose(np.asarray(spec.to_dense(params)), w, atol=atol, rtol=1e-8)
    expected = spec.apply_dense(jnp.asarray(w), *spec.check_input(x)[:1], precision=jax.lax.Precision.HIGHEST)
    expected = spec.check_input(x)[1](expected)
    for impl in (layers.Implementation.FACTORIZED, layers.Implementation.DENSE, layers.Implementation.AUTO):
        y = layers.apply(spec, params, x, implementation=impl)
        np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=atol, rtol=1e-8, err_msg=str(impl))


def check_grads_match_dense(spec, params, x, *, atol=1e-9):
    """Gradients of a scalar loss through the factorised path equal those through the rebuilt dense weight."""

    def loss(p, xx, impl):
        y = layers.apply(spec, p, xx, implementation=impl)
        return jnp.sum(jnp.sin(y))

    g_fac = jax.grad(loss, argnums=(0, 1))(params, x, layers.Implementation.FACTORIZED)
    g_den = jax.grad(loss, argnums=(0, 1))(params, x, layers.Implementation.DENSE)
    for a, b in zip(jax.tree.leaves(g_fac), jax.tree.leaves(g_den)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-7)
    # and the input gradient equals the dense formula  d/dx sum(sin(x W)) = cos(x W) W^T
    if isinstance(spec, layers.LinearSpec):
        w = spec.to_dense(params)
        xx = x.reshape(-1, spec.in_features)
        expected = (jnp.cos(xx @ w) @ w.T).reshape(x.shape)
        np.testing.assert_allclose(np.asarray(g_fac[1]), np.asarray(expected), atol=atol, rtol=1e-7)


def init_output_variance(spec, x, num_seeds=2000, dtype=jnp.float64):
    """Empirical ``Var y`` over ``num_seeds`` initialisations for a fixed input ``x`` (pooled over outputs)."""
    keys = jax.random.split(jax.random.key(1234), num_seeds)

    @jax.jit
    @jax.vmap
    def outputs(k):
        return layers.apply(spec, spec.init(k, dtype), x)

    ys = np.asarray(outputs(keys))
    return float(np.mean(np.abs(ys) ** 2))  # the mean is zero by symmetry of the init


def check_init_variance(spec, *, fan_in, x=None, num_seeds=2000, rtol=0.2):
    """``Var y = ||x||^2 / fan_in`` (LeCun normal, ``nnx.Linear``'s default) within ``rtol``.

    For a convolution pass ``x`` with a single output position and ``||x||^2`` over that receptive field (or
    compare against the dense convolution yourself)."""
    if x is None:
        x = random_input((1, spec.in_features), seed=7)
    expected = float(np.sum(np.asarray(x) ** 2)) / fan_in
    got = init_output_variance(spec, x, num_seeds)
    assert abs(got / expected - 1) < rtol, f"Var y = {got:.4g}, expected {expected:.4g} (ratio {got / expected:.3f})"


def check_nnx_layer(layer, x, *, atol=1e-9):
    """Forward = dense layer of the same weight; split/merge round trip; an ``nnx.Optimizer`` step lowers the loss;
    repeated jitted calls do not retrace."""
    w = layer.weight()
    expected = x @ w if layer.bias is None else x @ w + layer.bias[...][None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(expected), atol=atol, rtol=1e-8)

    graphdef, state = nnx.split(layer)
    again = nnx.merge(graphdef, state)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(layer(x)), atol=0)

    target = jnp.zeros_like(expected)
    traces = []

    @nnx.jit
    def step(model, optimizer, xx):
        traces.append(1)

        def loss_fn(m):
            return jnp.mean((m(xx) - target) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    optimizer = nnx.Optimizer(layer, optax.sgd(0.05), wrt=nnx.Param)
    losses = [float(step(layer, optimizer, x)) for _ in range(4)]
    assert losses[-1] < losses[0], losses
    assert len(traces) == 1, f"retraced {len(traces)} times"


def check_eqx_layer(layer, x, *, atol=1e-9):
    """Forward = dense layer of the same weight; ``vmap`` over single examples agrees; an optax step under
    ``eqx.filter_jit`` lowers the loss without retracing."""
    w = layer.weight()
    expected = x @ w if layer.bias is None else x @ w + layer.bias[None, :]
    # jitted: one compile instead of one per eager op (the eager path is covered by the nnx checks)
    forward = eqx.filter_jit(lambda m, xx: (m(xx), jax.vmap(m)(xx)))
    y, y_vmapped = forward(layer, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=atol, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(y_vmapped), np.asarray(expected), atol=atol, rtol=1e-8)

    opt = optax.sgd(0.05)
    traces = []

    @eqx.filter_jit
    def step(model, state, xx):
        traces.append(1)
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean(m(xx) ** 2))(model)
        updates, state = opt.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, loss

    state = opt.init(eqx.filter(layer, eqx.is_array))
    losses = []
    for _ in range(4):
        layer, state, loss = step(layer, state, x)
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
    assert len(traces) == 1, f"retraced {len(traces)} times"
