"""Conversions between tnkit TTs and the peers' objects used by the benchmarks (quimb MPS).

Kept apart from tnkit.interop on purpose: the benchmarks should not depend on the library code they measure for
setting up the peer side.
"""

from __future__ import annotations

import numpy as np


def tt_to_quimb_mps(t):
    """A ``quimb.tensor.MatrixProductState`` with the same cores (NumPy copies), open boundaries squeezed."""
    import quimb.tensor as qtn

    cores = [np.array(c) for c in t.cores]
    if len(cores) == 1:
        raise ValueError("need at least 2 sites")
    arrays = [cores[0][0]] + cores[1:-1] + [cores[-1][..., 0]]
    return qtn.MatrixProductState(arrays, shape="lpr")


def quimb_mps_to_cores(mps) -> list[np.ndarray]:
    """The cores ``(r_{k-1}, n_k, r_k)`` (NumPy) of a quimb MPS, whatever the index order of its tensors."""
    cores = []
    L = mps.L
    for i in range(L):
        t = mps[i]
        phys = mps.site_ind(i)
        left = [ix for ix in t.inds if i > 0 and ix != phys and ix in mps[i - 1].inds]
        right = [ix for ix in t.inds if i < L - 1 and ix != phys and ix in mps[i + 1].inds]
        x = t.transpose(*(left + [phys] + right)).data
        if i == 0:
            x = x[None]
        if i == L - 1:
            x = x[..., None]
        cores.append(np.ascontiguousarray(x))
    return cores


def quimb_mps_to_tt(mps):
    import jax.numpy as jnp

    from tnkit import TT

    return TT([jnp.asarray(c) for c in quimb_mps_to_cores(mps)])
