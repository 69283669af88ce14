"""Core-level building blocks shared by the chain formats (TT and TR; private)."""

from __future__ import annotations

import jax.numpy as jnp


def block_diagonal(ca, cb):
    """The core of a sum: ``ca`` of shape ``(ra, n, ra')`` and ``cb`` of shape ``(rb, n, rb')`` on the diagonal of
    the two bond axes, zeros elsewhere: shape ``(ra + rb, n, ra' + rb')``. Both must have the same dtype."""
    ra, n, ra_next = ca.shape
    rb, _, rb_next = cb.shape
    top = jnp.concatenate([ca, jnp.zeros((ra, n, rb_next), ca.dtype)], axis=2)
    bottom = jnp.concatenate([jnp.zeros((rb, n, ra_next), cb.dtype), cb], axis=2)
    return jnp.concatenate([top, bottom], axis=0)
