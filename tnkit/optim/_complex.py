"""Complex parameters: turn JAX's gradients into descent directions for optax.

For a real loss ``L`` of a complex parameter ``z = x + i y``, ``jax.grad`` returns ``dL/dx - i dL/dy``: the
complex *conjugate* of the steepest-ascent direction ``dL/dx + i dL/dy`` (JAX's convention, see the JAX FAQ on
complex differentiation). optax transforms step along ``-g``, so fed with JAX's gradient they descend in the real
part and *ascend* in the imaginary part: plain SGD on ``|z - c|^2`` diverges. :func:`conjugate_complex` conjugates
the complex leaves first, which turns every optax transform that supports complex numbers (``sgd``, ``adam``, ...)
into a descent method, and makes the real and imaginary parts usable by real-only transforms through
``optax.contrib.split_real_and_imaginary`` (for example tnkit's Shampoo, whose statistics are real).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _conj_if_complex(g):
    return jnp.conj(g) if jnp.iscomplexobj(g) else g


def conjugate_complex() -> optax.GradientTransformation:
    """Conjugate the complex leaves of the updates; real leaves pass through unchanged. Stateless.

    Put it first in an ``optax.chain`` whenever a parameter is complex and the updates are JAX gradients (see the
    module docstring for why). Shapes and dtypes are kept; ``None`` leaves (masked parameters) stay ``None``.

    Returns:
      An ``optax.GradientTransformation`` with an ``optax.EmptyState``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from tnkit import optim
      >>> c = jnp.array([1 + 2j, -3 + 0.5j], jnp.complex64)
      >>> loss = lambda z: jnp.sum(jnp.abs(z - c) ** 2)
      >>> tx = optax.chain(optim.conjugate_complex(), optax.adam(0.1))
      >>> @jax.jit
      ... def step(z, state):
      ...     updates, state = tx.update(jax.grad(loss)(z), state, z)
      ...     return optax.apply_updates(z, updates), state
      >>> z = jnp.zeros(2, jnp.complex64)
      >>> state = tx.init(z)
      >>> for _ in range(300):
      ...     z, state = step(z, state)
      >>> bool(loss(z) < 1e-3)
      True

      For a real-only transform such as Shampoo, split the conjugated updates into real and imaginary parts:

      >>> tx = optax.chain(
      ...     optim.conjugate_complex(),
      ...     optax.contrib.split_real_and_imaginary(optim.shampoo(0.1, start_preconditioning_step=1)),
      ... )
      >>> w = jnp.zeros((2, 3), jnp.complex64)
      >>> tx.update(jax.grad(lambda w: jnp.sum(jnp.abs(w - 1j) ** 2))(w), tx.init(w), w)[0].dtype
      dtype('complex64')
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(_conj_if_complex, updates), state

    return optax.GradientTransformation(init_fn, update_fn)
