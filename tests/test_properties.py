"""Hypothesis property tests on small random shapes (the budget is set in conftest.py)."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tnkit import TT, tt

dims_strategy = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@st.composite
def tensors(draw, dims=None):
    dims = draw(dims_strategy) if dims is None else dims
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    decay = draw(st.sampled_from([0.1, 0.5, 1.0]))
    # Random tensor whose unfoldings have varied spectra: Gaussian entries, scaled per index along each mode.
    x = rng.standard_normal(dims)
    for k, n in enumerate(dims):
        shape = [1] * len(dims)
        shape[k] = n
        x = x * (decay ** np.arange(n)).reshape(shape)
    return jnp.asarray(x)


@st.composite
def tt_pairs(draw):
    dims = draw(dims_strategy)
    a = draw(tensors(dims))
    b = draw(tensors(dims))
    rank = draw(st.integers(1, 3))
    return tt.from_dense(a, max_rank=rank), tt.from_dense(b, max_rank=rank)


def _dense(t: TT) -> np.ndarray:
    return np.asarray(tt.to_dense(t))


@given(tensors())
def test_full_rank_roundtrip_is_exact(x):
    np.testing.assert_allclose(_dense(tt.from_dense(x)), x, atol=1e-12 * max(1.0, float(jnp.abs(x).max())))


@given(tensors(), st.sampled_from([1e-1, 1e-3, 1e-8]))
def test_rtol_bound_holds(x, rtol):
    t = tt.from_dense(x, rtol=rtol)
    assert np.linalg.norm(_dense(t) - x) <= rtol * np.linalg.norm(x) + 1e-300


@pytest.mark.slow
@given(tt_pairs(), st.integers(1, 4))
def test_round_never_increases_ranks(pair, max_rank):
    a, b = pair
    s = tt.add(a, b)
    r = tt.round(s, max_rank=max_rank)
    assert all(x <= y for x, y in zip(r.ranks, s.ranks))
    assert max(r.ranks) <= max_rank
    rr = tt.round(s, rtol=1e-6)
    assert all(x <= y for x, y in zip(rr.ranks, s.ranks))
    assert np.linalg.norm(_dense(rr) - _dense(s)) <= 1e-6 * np.linalg.norm(_dense(s)) + 1e-300


@given(tt_pairs(), st.floats(-3, 3), st.floats(-3, 3))
def test_inner_is_bilinear_and_matches_norm(pair, alpha, beta):
    a, b = pair
    c = tt.add(tt.scale(a, alpha), tt.scale(b, beta))
    lhs = float(tt.inner(a, c))
    rhs = alpha * float(tt.inner(a, a)) + beta * float(tt.inner(a, b))
    scale = 1 + abs(alpha) * float(tt.inner(a, a)) + abs(beta) * abs(float(tt.inner(a, b)))
    assert abs(lhs - rhs) <= 1e-10 * scale
    np.testing.assert_allclose(float(tt.norm(a)) ** 2, float(tt.inner(a, a)), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(float(tt.inner(a, b)), np.vdot(_dense(a), _dense(b)), rtol=1e-9, atol=1e-12)
