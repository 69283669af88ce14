"""Tests for tnkit.optim.inverse_pth_root against dense NumPy / SciPy matrix functions in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from tnkit.optim import RootInfo, RootMethod, inverse_pth_root

EIGH, NEWTON = RootMethod.EIGH, RootMethod.COUPLED_NEWTON

# One jitted entry point shared by the tests (p, method static; ridge_epsilon traced).
_root = jax.jit(inverse_pth_root, static_argnames=("p", "method", "num_iters", "tol"))


def _psd(n, rank, seed, batch=()):
    g = np.random.default_rng(seed).standard_normal(batch + (n, rank))
    return g @ np.swapaxes(g, -1, -2)


def _graded(n, cond, seed):
    """A PSD matrix with eigenvalues logspace(0, -log10(cond)) in a random basis."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (q * np.logspace(0, -np.log10(cond), n)) @ q.T


def _reference(m, p, ridge):
    """``(m + ridge I)^{-1/p}`` in float64 through NumPy's eigh (negative eigenvalues clipped, as documented)."""
    lam, q = np.linalg.eigh(np.asarray(m, np.float64))
    return (q * (np.maximum(lam, 0) + ridge) ** (-1.0 / p)) @ q.T


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("method", [EIGH, NEWTON])
@pytest.mark.parametrize("p", [1, 2, 4])
def test_matches_scipy_fractional_power(method, p):
    m = _psd(6, 6, seed=p) + 0.1 * np.eye(6)
    x, info = _root(jnp.asarray(m), p=p, method=method)
    assert isinstance(info, RootInfo) and x.shape == (6, 6) and x.dtype == jnp.float64
    lam_max = np.linalg.eigvalsh(m)[-1]
    if method is EIGH:
        np.testing.assert_allclose(float(info.ridge), 1e-6 * lam_max, rtol=1e-12)
        assert int(info.num_iters) == 0
    else:  # a power-iteration estimate: a lower bound, close for this spectrum
        assert 0.999 * 1e-6 * lam_max <= float(info.ridge) <= 1e-6 * lam_max * (1 + 1e-12)
        assert 0 < int(info.num_iters) < 100
    ref = np.real(scipy.linalg.fractional_matrix_power(m + float(info.ridge) * np.eye(6), -1.0 / p))
    assert _rel(x, ref) < 1e-10
    assert float(info.residual) < 1e-12 and bool(info.is_finite)
    if p == 1:
        assert _rel(x, np.linalg.inv(m + float(info.ridge) * np.eye(6))) < 1e-10


def test_batched_and_methods_agree():
    m = _psd(8, 3, seed=1, batch=(2, 3))  # rank-deficient: the ridge matters
    x, info = _root(jnp.asarray(m), p=4, method=EIGH)
    xn, info_n = _root(jnp.asarray(m), p=4, method=NEWTON)
    assert x.shape == xn.shape == (2, 3, 8, 8)
    assert info.residual.shape == info.ridge.shape == info.num_iters.shape == info.is_finite.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        lam_max = np.linalg.eigvalsh(m[idx])[-1]
        assert _rel(x[idx], _reference(m[idx], 4, 1e-6 * lam_max)) < 1e-9
        assert _rel(xn[idx], _reference(m[idx], 4, float(info_n.ridge[idx]))) < 1e-9
    # The two methods differ only through Newton's estimate of λ_max in the ridge.
    assert _rel(xn, x) < 1e-3
    assert bool(jnp.all(info.residual < 1e-8)) and bool(jnp.all(info_n.residual < 1e-8))
    # The ridge is relative, so the root is scale-covariant: X(c M) = c^{-1/p} X(M).
    x16, _ = _root(jnp.asarray(16.0 * m), p=4, method=EIGH)
    assert _rel(x16, x / 2) < 1e-9


def test_newton_iteration_limit_shows_in_residual():
    m = jnp.asarray(_graded(8, 1e6, seed=2))
    x, info = _root(m, p=2, method=NEWTON, num_iters=3)
    assert int(info.num_iters) == 3 and bool(info.is_finite)
    assert float(info.residual) > 0.1  # far from converged, and the residual says so
    assert _rel(x, _reference(m, 2, float(info.ridge))) > 1e-2


@pytest.mark.parametrize("method", [EIGH, NEWTON])
def test_ill_conditioned(method):
    m = _graded(10, 1e12, seed=3)  # condition number 1e12, regularised to about 1e6
    x, info = _root(jnp.asarray(m), p=2, method=method, ridge_epsilon=1e-6)
    assert _rel(x, _reference(m, 2, float(info.ridge))) < 1e-8
    assert float(info.residual) < 1e-8
    # Without a ridge the root of a near-singular matrix is still finite here and the residual reports its quality.
    _, info0 = _root(jnp.asarray(m), p=2, method=method, ridge_epsilon=0.0)
    assert float(info0.ridge) == 0.0 and bool(info0.is_finite)


@pytest.mark.parametrize("method", [EIGH, NEWTON])
def test_float32(method):
    m = _psd(16, 4, seed=4)
    x, info = _root(jnp.asarray(m, jnp.float32), p=4, method=method)
    assert x.dtype == jnp.float32 and info.residual.dtype == jnp.float32
    assert float(info.residual) < 0.5
    assert _rel(x, _reference(m, 4, float(info.ridge))) < 5e-2


@pytest.mark.parametrize("method", [EIGH, NEWTON])
def test_zero_matrix(method):
    x, info = _root(jnp.zeros((2, 5, 5)), p=4, method=method, ridge_epsilon=1e-4)
    np.testing.assert_allclose(np.asarray(x), np.broadcast_to(10.0 * np.eye(5), (2, 5, 5)), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(info.ridge), 1e-4)
    assert bool(jnp.all(info.is_finite)) and bool(jnp.all(info.residual < 1e-10))


@pytest.mark.parametrize("method", [EIGH, NEWTON])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_input_is_flagged(method, bad):
    m = _psd(4, 4, seed=5, batch=(2,))
    m[1, 0, 0] = bad
    x, info = _root(jnp.asarray(m), p=2, method=method)
    assert info.is_finite.tolist() == [True, False]
    assert np.isfinite(float(info.residual[0])) and np.isnan(float(info.residual[1]))
    assert _rel(x[0], _reference(m[0], 2, float(info.ridge[0]))) < 1e-9


def test_jit_traced_ridge_matches_eager():
    m = jnp.asarray(_psd(5, 5, seed=6))
    f = jax.jit(lambda a, eps: inverse_pth_root(a, 2, ridge_epsilon=eps))
    x, info = f(m, 1e-3)
    lam_max = np.linalg.eigvalsh(np.asarray(m))[-1]
    assert _rel(x, _reference(m, 2, 1e-3 * lam_max)) < 1e-10
    np.testing.assert_allclose(float(info.ridge), 1e-3 * lam_max, rtol=1e-12)


def test_symmetric_part_and_half_precision():
    m = _psd(4, 4, seed=7)
    skew = np.triu(np.ones((4, 4)), 1)
    x, _ = _root(jnp.asarray(m + skew - skew.T), p=2, method=EIGH)  # only (M + M^T) / 2 counts
    assert _rel(x, _reference(m, 2, 1e-6 * np.linalg.eigvalsh(m)[-1])) < 1e-10
    xb, info = inverse_pth_root(jnp.asarray(m, jnp.bfloat16), 2)
    assert xb.dtype == jnp.bfloat16 and info.residual.dtype == jnp.float32 and bool(info.is_finite)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((np.ones(3), 2), {}, ValueError, r"matrix must have shape \(\.\.\., n, n\).*got shape \(3,\)"),
        ((np.ones((2, 3)), 2), {}, ValueError, r"matrix must have shape.*got shape \(2, 3\)"),
        ((np.ones((0, 0)), 2), {}, ValueError, r"matrix must have shape \(\.\.\., n, n\) with n >= 1.*\(0, 0\)"),
        ((np.eye(2, dtype=np.int32), 2), {}, TypeError, "matrix must have a real floating dtype, got int32"),
        ((np.eye(2, dtype=np.complex64), 2), {}, TypeError, "matrix must have a real floating dtype, got complex64"),
        ((np.eye(2), 0), {}, ValueError, "p must be a positive Python int.*got 0"),
        ((np.eye(2), 2.5), {}, ValueError, "p must be a positive Python int.*got 2.5"),
        ((np.eye(2), True), {}, ValueError, "p must be a positive Python int.*got True"),
        ((np.eye(2), 2), {"method": "eigh"}, TypeError, "method must be a tnkit.optim.RootMethod.*got 'eigh'"),
        ((np.eye(2), 2), {"ridge_epsilon": -1.0}, ValueError, "ridge_epsilon must be a non-negative finite.*-1.0"),
        ((np.eye(2), 2), {"ridge_epsilon": np.ones(2)}, TypeError, "ridge_epsilon must be a non-negative real scalar"),
        ((np.eye(2), 2), {"ridge_epsilon": "1e-6"}, TypeError, "ridge_epsilon must be a non-negative real number"),
        ((np.eye(2), 2), {"num_iters": 0}, ValueError, "num_iters must be a positive Python int, got 0"),
        ((np.eye(2), 2), {"tol": -1e-3}, ValueError, "tol must be a non-negative finite number"),
    ],
)
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        inverse_pth_root(*args, **kwargs)
