"""tnkit.tt against quimb's MPS algebra (an independent implementation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tnkit import tt

qtn = pytest.importorskip("quimb.tensor")

DIMS = (2, 3, 2, 3, 2)


def to_quimb(t):
    """tnkit cores (l, p, r) -> quimb MatrixProductState with shape 'lrp' (end tensors drop the size-1 bond)."""
    cores = [np.asarray(c) for c in t.cores]
    arrays = [cores[0][0].T] + [c.transpose(0, 2, 1) for c in cores[1:-1]] + [cores[-1][:, :, 0]]
    return qtn.MatrixProductState(arrays, shape="lrp")


@pytest.mark.parametrize("dtype", [jnp.float64, pytest.param(jnp.complex128, marks=pytest.mark.slow)])
def test_inner_and_norm_match_quimb(dtype):
    a = tt.random(jax.random.key(0), DIMS, 3, dtype)
    b = tt.random(jax.random.key(1), DIMS, 4, dtype)
    qa, qb = to_quimb(a), to_quimb(b)
    np.testing.assert_allclose(np.asarray(to_quimb(a).to_dense()).ravel(), np.asarray(tt.to_dense(a)).ravel(), rtol=1e-12)
    np.testing.assert_allclose(tt.inner(a, b), qa.H @ qb, rtol=1e-11)
    np.testing.assert_allclose(tt.norm(a), qa.norm(), rtol=1e-11)


def test_round_error_matches_quimb_compression():
    a = tt.random(jax.random.key(2), DIMS, 4, jnp.float64)
    b = tt.random(jax.random.key(3), DIMS, 4, jnp.float64)
    s = tt.add(a, b)
    exact = to_quimb(s)
    for bond in (2, 3):
        ours = tt.round(s, max_rank=bond)
        theirs = exact.copy()
        # form="left" is the same sweep as tt.round: truncate left to right, the centre ends on the last site.
        theirs.compress(form="left", max_bond=bond, cutoff=0.0)
        assert max(ours.ranks) == theirs.max_bond() == bond
        err_ours = float(tt.norm(tt.sub(s, ours)))
        err_theirs = float(np.sqrt(abs((exact - theirs).H @ (exact - theirs))))
        np.testing.assert_allclose(err_ours, err_theirs, rtol=1e-9)
        np.testing.assert_allclose(tt.to_dense(ours).ravel(), np.asarray(theirs.to_dense()).ravel(), atol=1e-10)
