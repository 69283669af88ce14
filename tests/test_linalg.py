"""The factorisation primitives in tnkit._linalg: values, derivatives, and the Gram reliability rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tnkit import _linalg
from tnkit._linalg import SVDMethod


def test_gram_reliability_rule():
    s_geometric = jnp.asarray(0.5 ** np.arange(64.0))  # squared tail at rank 16 ~ 1e-10: far above the noise
    s_steep = jnp.asarray(10.0 ** -np.arange(64.0))  # tail at rank 16 below machine precision
    assert bool(_linalg.gram_is_reliable(s_geometric, 16, 32768))
    assert not bool(_linalg.gram_is_reliable(s_steep, 16, 32768))
    assert bool(_linalg.gram_is_reliable(s_steep, 64, 32768))  # no truncation: always exact


def _hard_wide_matrices(dtype):
    """Wide ``24 x 400`` matrices, several with small singular values that the Gram matrix alone cannot resolve."""
    rng = np.random.default_rng(0)
    m, n = 24, 400
    complex_ = np.iscomplexobj(np.zeros((), dtype))

    def orth(k):
        g = rng.standard_normal((k, m)) + (1j * rng.standard_normal((k, m)) if complex_ else 0)
        return np.linalg.qr(g)[0]

    i, j = np.indices((m, n))
    cases = {
        "graded 1e0..1e-20": (orth(m) * np.logspace(0, -20, m)[None, :]) @ orth(n).conj().T,
        "smooth function": 1.0 / (1.0 + i / m + j / n) ** 2,
        "rank 5": rng.standard_normal((m, 5)) @ rng.standard_normal((5, n)),
        "zero rows": np.vstack([rng.standard_normal((m // 2, n)), np.zeros((m - m // 2, n))]),
    }
    return {k: np.asarray(v, dtype) for k, v in cases.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_preconditioned_gram_route_is_as_accurate_as_qr(dtype):
    # AUTO's fallback must be backward stable like the QR route: singular values to O(eps) * s_1 and truncations
    # whose error is the exact SVD tail up to O(eps) * ||a||, on spectra far below the Gram matrix's resolution.
    eps = np.finfo(np.float64).eps
    for name, a in _hard_wide_matrices(dtype).items():
        lam, v = _linalg._gram_eigh(jnp.asarray(a))
        u, s, ok = jax.jit(_linalg._preconditioned_gram_left_svd)(jnp.asarray(a), lam, v)
        u_gram, _ = _linalg.left_svd(jnp.asarray(a), 24, SVDMethod.GRAM)
        exact = np.linalg.svd(a, compute_uv=False)
        assert bool(ok), name
        np.testing.assert_allclose(s, exact, rtol=0, atol=50 * eps * exact[0], err_msg=name)
        np.testing.assert_allclose(np.asarray(u).conj().T @ np.asarray(u), np.eye(24), atol=50 * eps)
        gram_worst = 0.0
        for k in (3, 8, 14, 18):
            tail = np.sqrt(np.sum(exact[k:] ** 2))
            for basis, bound in ((np.asarray(u), 20 * eps * exact[0]), (np.asarray(u_gram), np.inf)):
                uk = basis[:, :k]
                err = np.linalg.norm(a - uk @ (uk.conj().T @ a))
                assert err <= tail + bound, (name, k, err, tail)
            uk = np.asarray(u_gram)[:, :k]
            gram_worst = max(gram_worst, np.linalg.norm(a - uk @ (uk.conj().T @ a)) - tail)
        if name in ("graded 1e0..1e-20", "smooth function"):  # the cases need the second stage
            assert gram_worst > 1e4 * eps * exact[0], name


def test_preconditioned_gram_route_float32_and_zero():
    a = _hard_wide_matrices(np.float32)["graded 1e0..1e-20"]
    lam, v = _linalg._gram_eigh(jnp.asarray(a))
    u, s, ok = _linalg._preconditioned_gram_left_svd(jnp.asarray(a), lam, v)
    assert bool(ok) and u.dtype == jnp.float32 and s.dtype == jnp.float32
    np.testing.assert_allclose(s, np.linalg.svd(a.astype(np.float64), compute_uv=False), atol=1e-5)
    zero = jnp.zeros((4, 10))
    u, s, ok = _linalg._preconditioned_gram_left_svd(zero, *_linalg._gram_eigh(zero))
    assert bool(ok) and not np.any(s) and np.all(np.isfinite(u))


def test_auto_fallback_takes_the_qr_route_when_a_cholesky_fails(monkeypatch):
    a = jnp.asarray(_hard_wide_matrices(np.float64)["graded 1e0..1e-20"])
    original = _linalg._preconditioned_gram_left_svd
    traced = []

    def failing(a, lam, v):
        traced.append(a.shape)
        u, s, _ = original(a, lam, v)
        return jnp.full_like(u, jnp.nan), s, jnp.asarray(False)

    monkeypatch.setattr(_linalg, "_preconditioned_gram_left_svd", failing)
    # Rank 8 of 24 on this spectrum: the Gram route alone is unreliable, so AUTO falls back, alone and in a stack.
    one = jax.jit(lambda a: _linalg.left_svd(a, 8))(a)
    two = jax.jit(jax.vmap(lambda a: _linalg.left_svd(a, 8)))(jnp.stack([a, 2 * a]))
    assert traced and set(traced) == {a.shape}  # the fallback was traced (unbatched, and inside vmap)
    for (u, s), x in ((one, a), ((two[0][1], two[1][1]), 2 * a)):
        u_qr, s_qr = _linalg._accurate_left_svd(x)
        assert np.all(np.isfinite(u))
        np.testing.assert_allclose(s, s_qr, rtol=1e-12, atol=1e-30)
        np.testing.assert_allclose(np.abs(u[:, :8]), np.abs(u_qr[:, :8]), atol=1e-8)


@pytest.mark.parametrize("shape", [(5, 12), (12, 5), (6, 6), (4, 20)])
@pytest.mark.parametrize("method", list(SVDMethod))
def test_left_svd_values(shape, method):
    a = jax.random.normal(jax.random.key(0), shape, jnp.float64)
    u, s = _linalg.left_svd(a, min(shape), method)
    np.testing.assert_allclose(s, np.linalg.svd(np.asarray(a), compute_uv=False), rtol=1e-10)
    np.testing.assert_allclose(u.T @ u, np.eye(min(shape)), atol=1e-12)
    # u spans the column space with the right weights: u diag(s^2) u^T = a a^T
    np.testing.assert_allclose((u * (s**2)[None, :]) @ u.T, a @ a.T, atol=1e-11)


@pytest.mark.parametrize("shape", [(5, 8), (8, 5)])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_left_svd_jvp_matches_jax_on_generic_input(shape, dtype):
    k1, k2 = jax.random.split(jax.random.key(1))
    a = jax.random.normal(k1, shape, dtype)
    da = jax.random.normal(k2, shape, dtype)
    rank = 3

    def projector_ours(a):
        u, s = _linalg.left_svd(a, rank, SVDMethod.ACCURATE)
        return u[:, :rank] @ u[:, :rank].conj().T, s

    def projector_jax(a):
        u, s, _ = jnp.linalg.svd(a, full_matrices=False)
        return u[:, :rank] @ u[:, :rank].conj().T, s

    (p1, s1), (dp1, ds1) = jax.jvp(projector_ours, (a,), (da,))
    (p2, s2), (dp2, ds2) = jax.jvp(projector_jax, (a,), (da,))
    np.testing.assert_allclose(p1, p2, atol=1e-12)
    np.testing.assert_allclose(dp1, dp2, atol=1e-10)  # the projector is gauge invariant
    np.testing.assert_allclose(ds1, ds2, atol=1e-10)


def test_left_svd_jvp_finite_where_jax_is_not():
    a = jnp.zeros((4, 6)).at[0, 0].set(1.0)  # singular values 1, 0, 0, 0
    da = jax.random.normal(jax.random.key(0), (4, 6))
    _, (du, ds) = jax.jvp(lambda a: _linalg.left_svd(a, 2, SVDMethod.ACCURATE), (a,), (da,))
    assert bool(jnp.all(jnp.isfinite(du))) and bool(jnp.all(jnp.isfinite(ds)))
    _, (_, ds_jax, _) = jax.jvp(lambda a: jnp.linalg.svd(a, full_matrices=False), (a,), (da,))
    _, (du_jax, _, _) = jax.jvp(lambda a: jnp.linalg.svd(a, full_matrices=False), (a,), (da,))
    assert not bool(jnp.all(jnp.isfinite(du_jax)))  # the reason the custom rule exists


@pytest.mark.parametrize("shape", [(7, 4), (4, 4), (3, 6)])
def test_left_orthonormal(shape):
    a = jax.random.normal(jax.random.key(2), shape, jnp.float64)
    q, b = _linalg.left_orthonormal(a)
    k = min(shape)
    assert q.shape == (shape[0], k) and b.shape == (k, shape[1])
    np.testing.assert_allclose(q @ b, a, atol=1e-12)
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-12)
    # Derivative of the product is the identity (the factorisation is exact for every input).
    da = jax.random.normal(jax.random.key(3), shape, jnp.float64)
    _, dprod = jax.jvp(lambda a: jnp.matmul(*_linalg.left_orthonormal(a)), (a,), (da,))
    np.testing.assert_allclose(dprod, da, atol=1e-10)


def test_qr_jvp_matches_jax_when_full_rank():
    a = jax.random.normal(jax.random.key(4), (6, 3), jnp.float64)
    da = jax.random.normal(jax.random.key(5), (6, 3), jnp.float64)
    _, (dq1, dr1) = jax.jvp(_linalg._thin_qr, (a,), (da,))
    _, (dq2, dr2) = jax.jvp(jnp.linalg.qr, (a,), (da,))
    np.testing.assert_allclose(dq1, dq2, atol=1e-10)
    np.testing.assert_allclose(dr1, dr2, atol=1e-10)


def test_truncation_rank():
    s = np.array([3.0, 2.0, 1.0, 0.1])
    assert _linalg.truncation_rank(s, max_rank=None, abs_tol=None) == 4
    assert _linalg.truncation_rank(s, max_rank=2, abs_tol=None) == 2
    assert _linalg.truncation_rank(s, max_rank=None, abs_tol=0.2) == 3
    assert _linalg.truncation_rank(s, max_rank=None, abs_tol=1.01) == 2
    assert _linalg.truncation_rank(s, max_rank=None, abs_tol=100.0) == 1
    assert _linalg.truncation_rank(s, max_rank=None, abs_tol=0.0) == 4


def test_qr_derivative_through_jit():
    # Regression: the custom JVP returned a tuple while the primal returned a QRResult, so grad/jvp of a jitted
    # function reaching left_orthonormal failed with a pytree-structure mismatch.
    a = jnp.arange(12.0).reshape(4, 3) + jnp.eye(4, 3)
    f = jax.jit(lambda a: jnp.sum(_linalg.left_orthonormal(a)[1] ** 2))  # ||R||^2 = ||a||^2
    np.testing.assert_allclose(jax.grad(f)(a), 2 * a, rtol=1e-10)


def test_safe_sqrt_values_and_derivative():
    sq = jnp.array([4.0, 0.0, -1e-18, jnp.inf, jnp.nan])
    out = np.asarray(_linalg.safe_sqrt(sq))
    np.testing.assert_array_equal(out[:4], [2.0, 0.0, 0.0, np.inf])
    assert np.isnan(out[4])
    g = jax.vmap(jax.grad(_linalg.safe_sqrt))(jnp.array([4.0, 0.0, -1.0]))
    np.testing.assert_allclose(g, [0.25, 0.0, 0.0])


def _nan_in_first_leaf(x):
    leaves, treedef = jax.tree_util.tree_flatten(x)
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(jnp.nan)
    return jax.tree_util.tree_unflatten(treedef, leaves)


@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp", "tree"])
def test_norm_of_a_non_finite_tensor_is_nan_not_zero(fmt):
    # The norms guard sqrt at zero; that guard must not turn a NaN input into a norm of 0.
    from tnkit import cp, tr, tree, tt, tucker

    key = jax.random.key(0)
    dims = (3, 4, 5)
    make = {
        "tt": lambda: (tt.random(key, dims, 2), tt.norm),
        "tr": lambda: (tr.random(key, dims, 2), tr.norm),
        "tucker": lambda: (tucker.random(key, dims, (2, 2, 2)), tucker.norm),
        "cp": lambda: (cp.random(key, dims, 2), cp.norm),
        "tree": lambda: (tree.from_dense(jax.random.normal(key, dims), max_rank=2), tree.norm),
    }
    x, norm = make[fmt]()
    assert np.isfinite(float(norm(x))) and float(norm(x)) > 0
    assert np.isnan(float(norm(_nan_in_first_leaf(x)))), f"tnkit.{fmt}.norm hid a NaN"


def test_all_over_batch_keeps_one_cond_for_a_batch():
    from jax import lax

    def f(x):
        return lax.cond(_linalg.all_over_batch(x > 0), lambda: 2 * x, lambda: 3 * x)

    assert float(f(jnp.asarray(1.0))) == 2.0 and float(f(jnp.asarray(-1.0))) == -3.0
    np.testing.assert_array_equal(jax.vmap(f)(jnp.array([1.0, 2.0])), [2.0, 4.0])
    np.testing.assert_array_equal(jax.vmap(f)(jnp.array([1.0, -2.0])), [3.0, -6.0])  # one decision for the batch
    np.testing.assert_array_equal(jax.vmap(jax.vmap(f))(jnp.array([[1.0, 2.0], [3.0, -4.0]])), [[3, 6], [9, -12]])
    jaxpr = str(jax.make_jaxpr(jax.vmap(f))(jnp.array([1.0, 2.0])))
    assert "cond[" in jaxpr and "select_n" not in jaxpr  # still a cond, not a select of both branches
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(jax.vmap(f)(x)))(jnp.array([1.0, 2.0])), [2.0, 2.0])
