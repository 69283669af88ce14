"""tnkit.ttm against dense NumPy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tests.helpers import rel_err, traced
from tnkit import TTMatrix, tt, ttm

ROW, COL = (2, 3, 2), (3, 2, 2)


def rand_ttm(seed, row=ROW, col=COL, ranks=3, dtype=jnp.float64):
    return ttm.random(jax.random.key(seed), row, col, ranks, dtype=dtype)


class TestDense:
    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.complex128])
    def test_from_dense_roundtrip(self, dtype):
        rng = np.random.default_rng(0)
        w = rng.standard_normal((12, 12))
        if jnp.issubdtype(dtype, jnp.complexfloating):
            w = w + 1j * rng.standard_normal((12, 12))
        w = jnp.asarray(w, dtype)
        a = ttm.from_dense(w, ROW, COL)
        assert a.row_dims == ROW and a.col_dims == COL and a.dtype == dtype
        assert rel_err(ttm.to_dense(a), w) < (1e-5 if dtype == jnp.float32 else 1e-12)

    def test_to_dense_index_convention(self):
        # W[(i1, i2), (j1, j2)] = A1[0, i1, j1, :] @ A2[:, i2, j2, 0]
        a = rand_ttm(0, (2, 3), (4, 2), 2)
        w = np.asarray(ttm.to_dense(a))
        c1, c2 = (np.asarray(c) for c in a.cores)
        for i1, i2, j1, j2 in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 1, 2, 0)]:
            expected = c1[0, i1, j1, :] @ c2[:, i2, j2, 0]
            np.testing.assert_allclose(w[i1 * 3 + i2, j1 * 2 + j2], expected, rtol=1e-12)

    def test_kronecker_structure_has_rank_one(self):
        rng = np.random.default_rng(1)
        b, c = rng.standard_normal((2, 3)), rng.standard_normal((4, 5))
        a = ttm.from_dense(np.kron(b, c), (2, 4), (3, 5), rtol=1e-10)
        assert a.ranks == (1, 1, 1)

    def test_rtol_and_max_rank(self):
        a = rand_ttm(0, ranks=2)
        w = ttm.to_dense(ttm.add(a, ttm.scale(rand_ttm(1, ranks=3), 1e-3)))
        b = ttm.from_dense(w, ROW, COL, rtol=1e-2)
        assert rel_err(ttm.to_dense(b), w) <= 1e-2
        assert ttm.from_dense(w, ROW, COL, max_rank=2).ranks == (1, 2, 2, 1)

    def test_bad_input(self):
        with pytest.raises(ValueError, match=r"w must have shape \(12, 12\).*got \(12, 11\)"):
            ttm.from_dense(jnp.ones((12, 11)), ROW, COL)
        with pytest.raises(ValueError, match="row_dims and col_dims must have the same length"):
            ttm.from_dense(jnp.ones((12, 12)), (12,), (3, 4))


class TestApply:
    @pytest.mark.parametrize("order", list(ttm.ApplyOrder))
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_all_orders_match_dense(self, order, dtype):
        a = rand_ttm(0, dtype=dtype)
        x = jax.random.normal(jax.random.key(1), (5, 2, 12), dtype)
        y = ttm.apply(a, x, order=order)
        assert y.shape == (5, 2, 12)
        np.testing.assert_allclose(y, x @ ttm.to_dense(a).T, rtol=1e-11, atol=1e-12)

    def test_rectangular_and_single_vector(self):
        a = rand_ttm(0, (4, 2), (2, 3))
        w = ttm.to_dense(a)
        x = jnp.arange(6.0)
        for order in ttm.ApplyOrder:
            np.testing.assert_allclose(ttm.apply(a, x, order=order), w @ x, rtol=1e-12)

    def test_auto_order_follows_cost_model(self):
        low = rand_ttm(0, (4, 4, 4), (4, 4, 4), 2)
        # Exact count for the left-to-right sweep with batch 1: sum_k m_<k n_>k r_k n_k m_k r_k+1.
        costs = ttm.apply_cost(low, 1)
        assert costs[ttm.ApplyOrder.LEFT_TO_RIGHT] == 16 * 2 * 16 + 4 * 4 * 2 * 16 * 2 + 16 * 2 * 16
        assert costs[ttm.ApplyOrder.DENSE] > costs[ttm.ApplyOrder.LEFT_TO_RIGHT]
        # At rank 16 the sweep costs more per vector than the dense product: dense wins once the batch amortises
        # the reconstruction, and AUTO follows.
        high = rand_ttm(0, (4, 4, 4), (4, 4, 4), 16)
        small, large = ttm.apply_cost(high, 1), ttm.apply_cost(high, 4096)
        assert min(small, key=small.get) is not ttm.ApplyOrder.DENSE
        assert min(large, key=large.get) is ttm.ApplyOrder.DENSE

    def test_promotes_dtype(self):
        a = rand_ttm(0, dtype=jnp.float32)
        y = ttm.apply(a, jnp.ones((2, 12), jnp.complex64))
        assert y.dtype == jnp.complex64

    def test_jit_grad_no_recompile(self):
        a = rand_ttm(0)
        f, traces = traced(ttm.apply)
        x = jnp.ones((3, 12))
        f(a, x)
        f(rand_ttm(1), 2 * x)
        assert traces() == 1
        check_grads(lambda a, x: ttm.apply(a, x), (a, x), order=1, modes=["rev"])

    def test_bad_input(self):
        a = rand_ttm(0)
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 12\)"):
            ttm.apply(a, jnp.ones((3, 11)))
        with pytest.raises(TypeError, match="order must be a tnkit.ttm.ApplyOrder"):
            ttm.apply(a, jnp.ones((3, 12)), order="dense")
        with pytest.raises(TypeError, match="a must be a tnkit.TTMatrix, got TT"):
            ttm.apply(tt.random(jax.random.key(0), (2, 2), 2), jnp.ones(4))


class TestProducts:
    def test_matvec(self):
        a = rand_ttm(0)
        x = tt.random(jax.random.key(5), COL, 2, dtype=jnp.float64)
        y = ttm.matvec(a, x)
        assert y.dims == ROW and y.ranks == (1, 6, 6, 1)
        np.testing.assert_allclose(tt.to_dense(y).ravel(), ttm.to_dense(a) @ tt.to_dense(x).ravel(), rtol=1e-11)
        with pytest.raises(ValueError, match=r"x.dims must equal a.col_dims \(3, 2, 2\), got \(2, 3, 2\)"):
            ttm.matvec(a, tt.random(jax.random.key(5), ROW, 2))

    def test_matmul_transpose_adjoint(self):
        a = rand_ttm(0, dtype=jnp.complex128)
        b = rand_ttm(1, COL, (2, 2, 2), 2, dtype=jnp.complex128)
        wa, wb = ttm.to_dense(a), ttm.to_dense(b)
        np.testing.assert_allclose(ttm.to_dense(ttm.matmul(a, b)), wa @ wb, rtol=1e-11)
        np.testing.assert_allclose(ttm.to_dense(ttm.transpose(a)), wa.T)
        np.testing.assert_allclose(ttm.to_dense(ttm.adjoint(a)), wa.conj().T)
        with pytest.raises(ValueError, match="a.col_dims .* must equal b.row_dims"):
            ttm.matmul(a, a)

    def test_identity_and_kron(self):
        np.testing.assert_array_equal(ttm.to_dense(ttm.identity((2, 3), jnp.float64)), np.eye(6))
        a, b = rand_ttm(0, (2,), (3,), 1), rand_ttm(1, (2, 2), (1, 2), 2)
        np.testing.assert_allclose(ttm.to_dense(ttm.kron(a, b)), np.kron(ttm.to_dense(a), ttm.to_dense(b)), rtol=1e-12)
        a = rand_ttm(0)
        np.testing.assert_allclose(ttm.to_dense(ttm.matmul(ttm.identity(ROW, jnp.float64), a)), ttm.to_dense(a))


class TestAlgebra:
    def test_round_add_inner_norm(self):
        a, b = rand_ttm(0), rand_ttm(1, ranks=2)
        wa, wb = np.asarray(ttm.to_dense(a)), np.asarray(ttm.to_dense(b))
        s = ttm.round(ttm.add(a, a), rtol=1e-10)
        assert s.ranks == a.ranks
        np.testing.assert_allclose(ttm.to_dense(s), 2 * wa, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ttm.to_dense(ttm.sub(a, b)), wa - wb, atol=1e-12)
        np.testing.assert_allclose(ttm.inner(a, b), np.sum(wa * wb), rtol=1e-11)
        np.testing.assert_allclose(ttm.norm(a), np.linalg.norm(wa), rtol=1e-11)
        r = jax.jit(functools.partial(ttm.round, max_rank=1))(a)
        assert r.ranks == (1, 1, 1, 1)
        with pytest.raises(ValueError, match="same row_dims and col_dims"):
            ttm.add(a, rand_ttm(1, COL, ROW))

    def test_round_matches_dense_svd_for_two_cores(self):
        a = rand_ttm(3, (3, 4), (4, 2), 5)
        w = np.asarray(ttm.to_dense(a)).reshape(3, 4, 4, 2).transpose(0, 2, 1, 3).reshape(12, 8)
        sv = np.linalg.svd(w, compute_uv=False)
        for method in ttm.SVDMethod:  # Eckart-Young holds for every route here (the kept spectrum is well resolved)
            r = ttm.round(a, max_rank=2, method=method)
            np.testing.assert_allclose(ttm.norm(ttm.sub(a, r)), np.sqrt(np.sum(sv[2:] ** 2)), rtol=1e-9)
            f = ttm.from_dense(jnp.asarray(ttm.to_dense(a)), (3, 4), (4, 2), max_rank=2, method=method)
            np.testing.assert_allclose(ttm.norm(ttm.sub(a, f)), np.sqrt(np.sum(sv[2:] ** 2)), rtol=1e-9)
        with pytest.raises(TypeError, match="method must be a tnkit.tt.SVDMethod"):
            ttm.round(a, max_rank=2, method="svd")


def test_ttmatrix_constructor_errors_name_core():
    with pytest.raises(ValueError, match=r"cores\[1\]"):
        TTMatrix([jnp.ones((1, 2, 2, 2)), jnp.ones((3, 2, 2, 1))])
