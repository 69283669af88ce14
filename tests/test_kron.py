"""tnkit.kron against dense NumPy / SciPy references (np.kron, np.linalg, scipy.stats) and TensorLy."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from tests.helpers import rel_err, traced
from tnkit import kron
from tnkit.kron import Kron, KronSum

# Jitted entry points: one compilation per signature instead of one per primitive in eager mode (compile time
# dominates this file). Errors are raised while tracing, so the bad-input tests call the plain functions.
matvec = jax.jit(kron.matvec)
matmul = jax.jit(kron.matmul)
solve = jax.jit(kron.solve)
inverse = jax.jit(kron.inverse)
eigh = jax.jit(kron.eigh)
power = jax.jit(kron.power, static_argnums=1)
inverse_root = jax.jit(kron.inverse_root, static_argnums=1)
gp_solve = jax.jit(kron.gp_solve)
gp_lml = jax.jit(kron.gp_log_marginal_likelihood)
to_dense = jax.jit(kron.to_dense)
slogdet = jax.jit(kron.slogdet)
from_dense = jax.jit(kron.from_dense, static_argnums=(1, 2), static_argnames="num_iterations")
from_dense_sum = jax.jit(kron.from_dense_sum, static_argnums=(1, 2, 3))
apply = jax.jit(lambda a, b: a @ b)

DTYPES = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128]
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-12, jnp.complex64: 2e-5, jnp.complex128: 1e-12}


def rand(shape, dtype=jnp.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype)


def rand_kron(shapes, dtype=jnp.float64, seed=0):
    return Kron([jnp.asarray(rand(s, dtype, seed + k)) for k, s in enumerate(shapes)])


def spd(n, seed=0, dtype=np.float64, shift=1.0):
    """A Hermitian positive-definite (n, n) matrix with eigenvalues >= shift."""
    a = rand((n, n), dtype, seed)
    return np.asarray(a @ a.conj().T / n + shift * np.eye(n), dtype)


def dense(op):
    """Reference dense matrix, from NumPy only."""
    fs = [np.asarray(f) for f in op.factors]
    if isinstance(op, Kron):
        return functools.reduce(np.kron, fs)
    return sum(functools.reduce(np.kron, [f[t] for f in fs]) for t in range(fs[0].shape[0]))


def rbf(n, lengthscale, dtype=np.float64):
    x = np.linspace(0.0, 1.0, n)
    return np.asarray(np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / lengthscale**2), dtype)


# ------------------------------------------------------------------------------------------------------ formats


class TestFormats:
    def test_properties(self):
        op = rand_kron([(2, 3), (4, 1), (3, 5)])
        assert op.shape == (24, 15) and op.row_dims == (2, 4, 3) and op.col_dims == (3, 1, 5)
        assert op.num_factors == 3 and op.num_params == 6 + 4 + 15 and op.batch_shape == ()
        assert op.dtype == jnp.float64
        assert "Kron(row_dims=(2, 4, 3)" in repr(op)
        s = KronSum([jnp.ones((4, 2, 2)), jnp.ones((4, 3, 5))])
        assert s.shape == (6, 10) and s.num_terms == 4 and s.num_params == 16 + 60
        assert len(s.terms) == 4 and all(isinstance(t, Kron) for t in s.terms)
        assert "KronSum(num_terms=4" in repr(s)

    def test_immutable_pytree(self):
        op = rand_kron([(2, 2), (3, 3)])
        with pytest.raises(AttributeError, match="immutable"):
            op.factors = ()
        leaves, treedef = jax.tree_util.tree_flatten(op)
        assert len(leaves) == 2
        back = jax.tree_util.tree_unflatten(treedef, leaves)
        assert isinstance(back, Kron) and back.shape == op.shape

    def test_vmap_batch_reads_trailing_axes(self):
        fs1 = jnp.asarray(rand((5, 2, 3), seed=1))
        fs2 = jnp.asarray(rand((5, 4, 2), seed=2))
        batch = jax.vmap(lambda a, b: Kron([a, b]))(fs1, fs2)
        assert batch.batch_shape == (5,) and batch.row_dims == (2, 4) and batch.col_dims == (3, 2)
        assert batch.shape == (8, 6)
        x = jnp.asarray(rand((5, 7, 6), seed=3))
        y = jax.jit(jax.vmap(kron.matvec))(batch, x)
        for i in range(5):
            ref = np.asarray(x[i]) @ np.kron(np.asarray(fs1[i]), np.asarray(fs2[i])).T
            np.testing.assert_allclose(y[i], ref, rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match=r"batch_shape \(5,\).*jax.vmap"):
            kron.matvec(batch, x[0])

    @pytest.mark.parametrize(
        "factors, err, match",
        [
            (jnp.ones((2, 2)), TypeError, "sequence of arrays"),
            ([], ValueError, "at least one factor"),
            ([jnp.ones((2, 2)), jnp.ones((2, 2, 2))], ValueError, r"factors\[1\] has shape \(2, 2, 2\): expected a 2"),
            ([jnp.ones((2, 2), jnp.int32)], TypeError, r"factors\[0\] has dtype int32"),
            ([jnp.ones((2, 2), jnp.float32), jnp.ones((2, 2), jnp.float64)], TypeError, "share one dtype"),
            ([jnp.ones((0, 2))], ValueError, r"factors\[0\] has shape \(0, 2\)"),
        ],
    )
    def test_kron_validation(self, factors, err, match):
        with pytest.raises(err, match=match):
            Kron(factors)

    def test_kron_sum_validation(self):
        with pytest.raises(ValueError, match=r"factors\[1\] has shape \(2, 3, 3\): expected 3 terms"):
            KronSum([jnp.ones((3, 2, 2)), jnp.ones((2, 3, 3))])
        with pytest.raises(ValueError, match=r"factors\[0\] has shape \(2, 2\): expected a 3-D"):
            KronSum([jnp.ones((2, 2))])


# ----------------------------------------------------------------------------------------------------- products


class TestProducts:
    SHAPES = [(2, 3), (4, 2), (3, 3)]  # shrinking, growing and square factors

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_matvec_and_matmul_against_dense(self, dtype):
        op = rand_kron(self.SHAPES, dtype)
        w = dense(op)
        x = rand((2, 3, 18), dtype, seed=10)  # (..., prod n)
        np.testing.assert_allclose(matvec(op, x), x @ w.T, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
        xr = rand((3, 24), dtype, seed=11)  # (..., prod m)
        np.testing.assert_allclose(matmul(xr, op), xr @ w, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
        assert matvec(op, x).dtype == dtype

    def test_matmul_operator_follows_numpy_semantics(self):
        op = rand_kron(self.SHAPES)
        w = dense(op)
        v, mat, rows = rand((18,), seed=1), rand((18, 4), seed=2), rand((2, 5, 24), seed=3)
        mats, row = rand((3, 18, 4), seed=4), rand((24,), seed=5)
        products = jax.jit(lambda op, v, mat, mats, rows, row: (op @ v, op @ mat, op @ mats, rows @ op, row @ op))
        refs = (w @ v, w @ mat, w @ mats, rows @ w, row @ w)
        for got, ref in zip(products(op, v, mat, mats, rows, row), refs):
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-12)
        # Outside jit too: a NumPy array defers to Kron.__rmatmul__, a jax.Array as well.
        assert isinstance(rows @ op, jax.Array) and (jnp.asarray(rows) @ op).shape == (2, 5, 18)

    def test_mixed_dtypes_promote(self):
        op = rand_kron([(2, 2), (3, 3)], jnp.float32)
        x = rand((6,), jnp.complex128, seed=1)
        y = matvec(op, x)
        assert y.dtype == jnp.complex128
        np.testing.assert_allclose(y, dense(op).astype(np.complex128) @ x, rtol=1e-6)

    def test_contraction_order_is_flop_optimal(self):
        # The sort rule of _contraction_order against brute force over all orders (the cost model of its docstring).
        rng = np.random.default_rng(0)

        def cost(order, n, m):
            sizes, total = list(n), 0
            for p in order:
                total += math.prod(sizes) * m[p]
                sizes[p] = m[p]
            return total

        for _ in range(200):
            k = int(rng.integers(2, 6))
            n, m = tuple(rng.integers(1, 9, k)), tuple(rng.integers(1, 9, k))
            best = min(cost(o, n, m) for o in itertools.permutations(range(k)))
            assert cost(kron._contraction_order(n, m), n, m) == best

    def test_operator_products(self):
        a = rand_kron([(2, 3), (4, 2)], seed=1)
        b = rand_kron([(3, 2), (2, 5)], seed=3)
        s = KronSum([jnp.asarray(rand((3, 3, 2), seed=5)), jnp.asarray(rand((3, 2, 5), seed=6))])
        s2 = KronSum([jnp.asarray(rand((2, 2, 3), seed=7)), jnp.asarray(rand((2, 4, 2), seed=8))])
        ab = matmul(a, b)
        assert isinstance(ab, Kron)
        np.testing.assert_allclose(dense(ab), dense(a) @ dense(b), rtol=1e-12)
        for left, right in [(a, s), (s2, b), (s2, s)]:
            prod = matmul(left, right)
            assert isinstance(prod, KronSum)
            np.testing.assert_allclose(dense(prod), dense(left) @ dense(right), rtol=1e-11, atol=1e-12)

    def test_transpose_adjoint_scale_add(self):
        op = rand_kron([(2, 3), (3, 2)], jnp.complex128)
        w = dense(op)
        np.testing.assert_allclose(dense(op.T), w.T)
        np.testing.assert_allclose(dense(kron.transpose(op)), w.T)
        np.testing.assert_allclose(dense(kron.adjoint(op)), w.conj().T)
        np.testing.assert_allclose(dense(2.5 * op), 2.5 * w, rtol=1e-14)
        np.testing.assert_allclose(dense(-op), -w)
        other = rand_kron([(2, 3), (3, 2)], jnp.complex128, seed=5)
        total = op + other - op
        assert isinstance(total, KronSum) and total.num_terms == 3
        np.testing.assert_allclose(dense(total), dense(other), atol=1e-12)
        real = rand_kron([(2, 2)], jnp.float64)
        assert kron.scale(real, 1j).dtype == jnp.complex128
        np.testing.assert_allclose(dense(kron.scale(real, 1j)), 1j * dense(real))

    def test_identity_and_to_dense(self):
        np.testing.assert_array_equal(to_dense(kron.identity((2, 3, 2))), np.eye(12))
        op = rand_kron([(2, 3), (1, 4), (2, 2)], jnp.complex64)
        np.testing.assert_allclose(to_dense(op), dense(op), rtol=1e-6)

    def test_bad_inputs(self):
        op = rand_kron([(3, 4), (2, 3)])  # (6, 12)
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 12\)"):
            kron.matvec(op, jnp.ones(6))
        with pytest.raises(ValueError, match=r"a must have shape \(\.\.\., 6\)"):
            jnp.ones((2, 12)) @ op
        with pytest.raises(ValueError, match=r"op @ x needs x of shape \(\.\.\., 12, K\)"):
            op @ jnp.ones((3, 5, 12))
        with pytest.raises(ValueError, match=r"b must have shape \(\.\.\., 12\)"):
            op @ jnp.ones(6)
        with pytest.raises(ValueError, match=r"a.factors\[1\] \(shape \(2, 3\)\) and b.factors\[1\]"):
            op @ rand_kron([(4, 2), (2, 3)])
        with pytest.raises(ValueError, match="same number of factors"):
            op @ rand_kron([(12, 2)])
        with pytest.raises(ValueError, match="same factor shapes"):
            op + rand_kron([(3, 4), (3, 2)])
        with pytest.raises(TypeError, match="must be a tnkit.kron.Kron or tnkit.kron.KronSum"):
            kron.matvec(jnp.ones((6, 12)), jnp.ones(12))
        with pytest.raises(ValueError, match="alpha must be a scalar"):
            kron.scale(op, jnp.ones(2))

    def test_blocked_cpu_path_matches_dense(self, monkeypatch):
        # Force the row-block evaluation (normally only for batches of several MiB) on small inputs: a block size
        # that divides the batch (lax.map) and one that does not (overlapping last block), values and gradients.
        # Fresh lambdas: the block size is read at trace time, so nothing may come from a trace cache.
        monkeypatch.setattr(kron, "_BLOCK_THRESHOLD_BYTES", 0)
        op = rand_kron([(3, 4), (5, 2)], seed=1)
        w = dense(op)
        for target_rows, batch in [(4, 16), (5, 23)]:
            monkeypatch.setattr(kron, "_BLOCK_TARGET_BYTES", target_rows * 20 * 8)  # rows of 20 float64 entries
            x = rand((batch, 8), seed=batch)
            y = jax.jit(lambda op, x: kron.matvec(op, x))(op, x)
            np.testing.assert_allclose(y, x @ w.T, rtol=1e-12)
        xr = rand((23, 15), seed=1)
        np.testing.assert_allclose(jax.jit(lambda x, op: kron.matmul(x, op))(xr, op), xr @ w, rtol=1e-12)
        g = jax.jit(jax.grad(lambda f0, f1: jnp.sum(kron.matmul(xr, Kron([f0, f1])) ** 2), (0, 1)))(*op.factors)
        # d/dW sum((x W)^2) = 2 x^T x W, then the chain rule through W = A (x) B (indices (i, k), (j, l)).
        a, b = (np.asarray(f) for f in op.factors)
        gw = (2 * xr.T @ xr @ w).reshape(3, 5, 4, 2)
        np.testing.assert_allclose(g[0], np.einsum("ikjl,kl->ij", gw, b), rtol=1e-10)
        np.testing.assert_allclose(g[1], np.einsum("ikjl,ij->kl", gw, a), rtol=1e-10)
        sq = rand_kron([(3, 3), (4, 4)], seed=5)
        y = rand((23, 12), seed=10)
        ref = np.linalg.solve(dense(sq), y.T).T
        np.testing.assert_allclose(jax.jit(lambda a, y: kron.solve(a, y))(sq, y), ref, rtol=1e-9)
        assert "platform_index" in str(jax.make_jaxpr(lambda a, y: kron.solve(a, y))(sq, y))  # really blocked

    def test_grads_of_matvec(self):
        a, b = jnp.asarray(rand((2, 3), seed=1)), jnp.asarray(rand((3, 2), seed=2))
        s0, s1 = jnp.asarray(rand((2, 2, 3), seed=5)), jnp.asarray(rand((2, 3, 2), seed=6))
        x = jnp.asarray(rand((4, 6), seed=3))  # prod(n) = prod(m) = 6 for both operators

        def f(a, b, s0, s1, x):
            op, s = Kron([a, b]), KronSum([s0, s1])
            return kron.matvec(op, x), kron.matmul(x, op), kron.matvec(s, x)

        check_grads(jax.jit(f), (a, b, s0, s1, x), order=1, modes=["fwd", "rev"])

    def test_jit_does_not_retrace(self):
        f, traces = traced(lambda x, op: kron.matmul(x, op))
        for seed in range(3):
            f(jnp.asarray(rand((5, 6), seed=seed)), rand_kron([(2, 3), (3, 2)], seed=seed))
        assert traces() == 1


class TestKronSum:
    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex128])
    def test_phm_weight_matvec_matmul(self, dtype):
        # W = sum_i A_i ⊗ S_i with n = 4 terms of (4, 4) ⊗ (2, 3): a PHM weight of shape (8, 12).
        s = KronSum([jnp.asarray(rand((4, 4, 4), dtype, 1)), jnp.asarray(rand((4, 2, 3), dtype, 2))])
        w = dense(s)
        assert w.shape == (8, 12) and s.num_params == 64 + 24
        x = rand((5, 12), dtype, 3)
        np.testing.assert_allclose(matvec(s, x), x @ w.T, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
        xr = rand((2, 5, 8), dtype, 4)
        np.testing.assert_allclose(apply(xr, s), xr @ w, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
        np.testing.assert_allclose(kron.to_dense(s), w, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
        np.testing.assert_allclose(dense(s.T), w.T)

    def test_three_factors_trace_diagonal(self):
        s = KronSum([jnp.asarray(rand((3, 2, 2), seed=k)) for k in range(3)])
        w = dense(s)
        x = rand((4, 8), seed=5)
        np.testing.assert_allclose(matvec(s, x), x @ w.T, rtol=1e-12)
        np.testing.assert_allclose(kron.trace(s), np.trace(w), rtol=1e-12)
        np.testing.assert_allclose(kron.diagonal(s), np.diagonal(w), rtol=1e-12)


# ----------------------------------------------------------------------------------------------- linear algebra


class TestLinalg:
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex64])
    def test_inverse_and_solve(self, dtype):
        op = Kron([jnp.asarray(rand((n, n), dtype, n) + 3 * np.eye(n, dtype=dtype)) for n in (2, 3, 4)])
        w = dense(op)
        tol = 100 * TOL[dtype]
        np.testing.assert_allclose(dense(inverse(op)), np.linalg.inv(w), rtol=tol, atol=tol)
        y = rand((2, 3, 24), dtype, seed=7)
        x = solve(op, y)
        ref = np.linalg.solve(w, y.reshape(-1, 24).T).T.reshape(y.shape)
        np.testing.assert_allclose(x, ref, rtol=tol, atol=tol)
        assert x.dtype == dtype

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_slogdet(self, dtype):
        a = rand((3, 3), dtype, 1)
        a[0] *= -1 if np.linalg.det(a).real > 0 else 1  # a negative determinant for real input
        op = Kron([jnp.asarray(a), jnp.asarray(rand((2, 2), dtype, 2)), jnp.asarray(rand((2, 2), dtype, 3))])
        sign, logabs = kron.slogdet(op)
        ref_sign, ref_logabs = np.linalg.slogdet(dense(op))
        np.testing.assert_allclose(sign, ref_sign, rtol=1e-10)
        np.testing.assert_allclose(logabs, ref_logabs, rtol=1e-10)
        np.testing.assert_allclose(kron.logdet(op), ref_logabs, rtol=1e-10)

    def test_slogdet_large_does_not_overflow_and_singular(self):
        # det of a 4096 x 4096 operator with factor determinants 10**6: 10**(6 * 2 * 64 * 64)... far beyond float64.
        op = Kron([10.0 * jnp.eye(64), 10.0 * jnp.eye(64)])
        sign, logabs = slogdet(op)
        assert float(sign) == 1.0
        np.testing.assert_allclose(logabs, 4096 * 2 * np.log(10.0), rtol=1e-12)
        sign, logabs = slogdet(Kron([jnp.zeros((64, 64)), jnp.eye(64)]))
        assert float(sign) == 0.0 and float(logabs) == -np.inf

    def test_trace_diagonal(self):
        op = rand_kron([(3, 3), (2, 2), (4, 4)], jnp.complex128)
        np.testing.assert_allclose(kron.trace(op), np.trace(dense(op)), rtol=1e-12)
        np.testing.assert_allclose(kron.diagonal(op), np.diagonal(dense(op)), rtol=1e-12)

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_eigh(self, dtype):
        op = Kron([jnp.asarray(spd(n, n, dtype)) for n in (3, 2, 4)])
        e = eigh(op)
        lam = np.asarray(e.full_eigenvalues())
        v = dense(e.eigenvectors)
        w = dense(op)
        np.testing.assert_allclose((v * lam[None, :]) @ v.conj().T, w, atol=1e-12)
        np.testing.assert_allclose(v.conj().T @ v, np.eye(24), atol=1e-12)
        np.testing.assert_allclose(np.sort(lam), np.linalg.eigvalsh(w), rtol=1e-12)
        assert [x.shape for x in e.eigenvalues] == [(3,), (2,), (4,)]

    def test_square_factor_required(self):
        op = rand_kron([(2, 2), (2, 3)])
        for fn in (kron.inverse, kron.eigh, kron.slogdet, kron.logdet, kron.trace, kron.sqrt):
            with pytest.raises(ValueError, match=r"needs square factors, but op.factors\[1\] has shape \(2, 3\)"):
                fn(op)
        with pytest.raises(ValueError, match=r"needs square factors"):
            kron.solve(op, jnp.ones(6))
        with pytest.raises(ValueError, match=r"kernel.factors\[1\] has shape \(2, 3\)"):
            kron.gp_solve(op, jnp.ones(6), 0.1)
        s = KronSum([jnp.ones((2, 2, 2))])
        for fn in (kron.inverse, kron.eigh, kron.slogdet):
            with pytest.raises(TypeError, match="must be a tnkit.kron.Kron, got KronSum"):
                fn(s)
        with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., 4\)"):
            kron.solve(rand_kron([(2, 2), (2, 2)]), jnp.ones(3))


# ------------------------------------------------------------------------------------------- matrix functions


def np_psd_power(a, p, eps=0.0):
    lam, q = np.linalg.eigh(a)
    return (q * (np.maximum(lam, 0) + eps) ** p) @ q.conj().T


class TestMatrixFunctions:
    @pytest.mark.parametrize("p", [0.5, -0.25, 3.0])
    def test_power_equals_dense_power(self, p):
        # For PSD factors (eps = 0) the Kronecker power is the power of the dense matrix.
        op = Kron([jnp.asarray(spd(n, n)) for n in (3, 4)])
        np.testing.assert_allclose(dense(power(op, p)), np_psd_power(dense(op), p), rtol=1e-10, atol=1e-12)

    def test_sqrt_inverse_root_with_ridge_and_clipping(self):
        a = spd(3, 1, np.complex128)
        b = spd(4, 2, np.complex128)
        b_indef = b - 1.5 * np.eye(4)  # some eigenvalues negative: clipped to 0
        op = Kron([jnp.asarray(a), jnp.asarray(b_indef)])
        r = dense(inverse_root(op, 4, eps=0.1))
        ref = np.kron(np_psd_power(a, -0.25, 0.1), np_psd_power(b_indef, -0.25, 0.1))
        np.testing.assert_allclose(r, ref, rtol=1e-10)
        sq = dense(power(Kron([jnp.asarray(a), jnp.asarray(b)]), 0.5))
        np.testing.assert_allclose(sq @ sq, np.kron(a, b), rtol=1e-10)

    def test_grads_finite_at_repeated_eigenvalues(self):
        # At A = 2 I all eigenvalues coincide; d sqrt(A)[D] = D / (2 sqrt(2)) for symmetric D.
        b = jnp.asarray(spd(3, 5))
        d = rand((2, 2), seed=3)
        d = (d + d.T) / 2
        f = jax.jit(lambda a: kron.to_dense(kron.sqrt(Kron([a, b]))))
        _, tangent = jax.jvp(f, (2.0 * jnp.eye(2),), (jnp.asarray(d),))
        np.testing.assert_allclose(tangent, np.kron(d / (2 * np.sqrt(2)), np_psd_power(np.asarray(b), 0.5)), rtol=1e-10)
        loss = jax.jit(jax.grad(lambda a: jnp.sum(kron.to_dense(kron.inverse_root(Kron([a, b]), 4, eps=1e-3)))))
        g = loss(jnp.eye(2))
        assert np.all(np.isfinite(g))

    def test_check_grads_power(self):
        a, b = jnp.asarray(spd(3, 1)), jnp.asarray(spd(2, 2))
        check_grads(
            jax.jit(lambda a, b, eps: kron.to_dense(kron.inverse_root(Kron([a, b]), 4, eps=eps))),
            (a, b, jnp.float64(0.1)),
            order=1,
            modes=["rev"],
        )

    def test_bad_arguments(self):
        op = Kron([jnp.eye(2)])
        with pytest.raises(TypeError, match="p must be a finite real Python number"):
            kron.power(op, jnp.float64(0.5) * jnp.ones(2))
        with pytest.raises(ValueError, match="p must be a positive real Python number"):
            kron.inverse_root(op, 0)
        with pytest.raises(ValueError, match="eps must be a scalar"):
            kron.power(op, 2, eps=jnp.ones(2))


# ------------------------------------------------------------------------------------------- Gaussian processes


def dense_lml(k, y, noise):
    cov = k + noise * np.eye(k.shape[0])
    return scipy.stats.multivariate_normal(mean=np.zeros(k.shape[0]), cov=cov).logpdf(y)


class TestGaussianProcess:
    def test_solve_and_lml_on_5x6_grid(self):
        k1, k2 = rbf(5, 0.3), rbf(6, 0.5)
        k = np.kron(k1, k2)
        y = rand((3, 30), seed=1)
        alpha = gp_solve([jnp.asarray(k1), jnp.asarray(k2)], y, 0.05)
        np.testing.assert_allclose(alpha, np.linalg.solve(k + 0.05 * np.eye(30), y.T).T, rtol=1e-9)
        lml = gp_lml(Kron([jnp.asarray(k1), jnp.asarray(k2)]), y, 0.05)
        assert lml.shape == (3,)
        np.testing.assert_allclose(lml, dense_lml(k, y, 0.05), rtol=1e-10)

    def test_three_factor_grid_float32(self):
        ks = [rbf(3, 0.4), rbf(4, 0.7), rbf(2, 1.0)]
        y = rand((24,), seed=2)
        alpha = gp_solve([jnp.asarray(x, jnp.float32) for x in ks], jnp.asarray(y, jnp.float32), 0.1)
        assert alpha.dtype == jnp.float32
        ref = np.linalg.solve(functools.reduce(np.kron, ks) + 0.1 * np.eye(24), y)
        assert rel_err(alpha, ref) < 1e-4

    def test_check_grads_gp_solve(self):
        k1, k2 = jnp.asarray(rbf(3, 0.5)), jnp.asarray(spd(2, 1))
        y = jnp.asarray(rand((2, 6), seed=3))
        f = jax.jit(lambda a, b, y, s: (kron.gp_solve([a, b], y, s), kron.gp_log_marginal_likelihood([a, b], y, s)))
        check_grads(f, (k1, k2, y, 0.3), order=1, modes=["rev"])  # rev: linearises the custom JVP and transposes it

    def test_hyperparameter_gradient_matches_dense(self):
        # Gradient of the log marginal likelihood in the lengthscales and noise, against autodiff of the dense formula.
        x1, x2 = jnp.linspace(0, 1, 5), jnp.linspace(0, 2, 6)
        y = jnp.asarray(rand((30,), seed=4))

        def kernel(x, ell):
            return jnp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2)

        def structured(params):
            l1, l2, s = params
            return kron.gp_log_marginal_likelihood([kernel(x1, l1), kernel(x2, l2)], y, s)

        def dense_ref(params):
            l1, l2, s = params
            cov = jnp.kron(kernel(x1, l1), kernel(x2, l2)) + s * jnp.eye(30)
            return -0.5 * y @ jnp.linalg.solve(cov, y) - 0.5 * jnp.linalg.slogdet(cov)[1] - 15 * jnp.log(2 * jnp.pi)

        params = (jnp.float64(0.4), jnp.float64(0.9), jnp.float64(0.05))
        value, grads = jax.jit(jax.value_and_grad(structured))(params)
        ref_value, ref_grads = jax.jit(jax.value_and_grad(dense_ref))(params)
        np.testing.assert_allclose(value, ref_value, rtol=1e-10)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-7)

    def test_grads_finite_with_degenerate_kernel(self):
        # An identity factor (all eigenvalues equal) and a smooth kernel with eigenvalues at round-off level:
        # differentiating eigh would give inf/nan; the structured derivative is exact.
        k1, k2 = jnp.eye(3), jnp.asarray(rbf(8, 2.0))  # rbf(8, 2.0) has eigenvalues down to ~1e-17
        y = jnp.asarray(rand((24,), seed=5))

        def dense_ref(a, b):
            cov = jnp.kron(a, b) + 0.01 * jnp.eye(24)
            return -0.5 * y @ jnp.linalg.solve(cov, y) - 0.5 * jnp.linalg.slogdet(cov)[1]

        g = jax.jit(jax.grad(lambda a, b: kron.gp_log_marginal_likelihood([a, b], y, 0.01), argnums=(0, 1)))(k1, k2)
        ref = jax.jit(jax.grad(dense_ref, argnums=(0, 1)))(k1, k2)
        for x, r in zip(g, ref):
            assert np.all(np.isfinite(x))
            np.testing.assert_allclose(x, r, rtol=1e-6, atol=1e-8 * np.abs(r).max())

    def test_vmap_over_kernels_and_jit(self):
        ells = jnp.array([0.2, 0.5, 1.0])
        x1, x2 = jnp.linspace(0, 1, 4), jnp.linspace(0, 1, 3)
        y = jnp.asarray(rand((12,), seed=6))

        def solve(ell):
            k = [jnp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2) for x in (x1, x2)]
            return kron.gp_solve(Kron(k), y, 0.1)

        batch = jax.jit(jax.vmap(solve))(ells)
        for i, ell in enumerate(np.asarray(ells)):
            k = np.kron(*[np.exp(-0.5 * (np.subtract.outer(x, x)) ** 2 / ell**2) for x in (x1, x2)])
            np.testing.assert_allclose(batch[i], np.linalg.solve(k + 0.1 * np.eye(12), y), rtol=1e-9)

    def test_bad_inputs(self):
        k = [jnp.eye(2), jnp.eye(3)]
        with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., 6\)"):
            kron.gp_solve(k, jnp.ones(5), 0.1)
        with pytest.raises(ValueError, match="noise_variance must be a scalar"):
            kron.gp_solve(k, jnp.ones(6), jnp.ones(2))
        with pytest.raises(TypeError, match="needs a real kernel"):
            kron.gp_log_marginal_likelihood([jnp.eye(2) + 0j], jnp.ones(2), 0.1)
        with pytest.raises(TypeError, match="got a KronSum"):
            kron.gp_solve(KronSum([jnp.ones((2, 2, 2))]), jnp.ones(2), 0.1)


# ------------------------------------------------------------------------------------------ nearest Kronecker


def np_rearrange(w, row_dims, col_dims):
    (m1, m2), (n1, n2) = row_dims, col_dims
    return w.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


class TestFromDense:
    @pytest.mark.parametrize(
        "shapes, dtype", [([(3, 2), (2, 5)], jnp.complex128), ([(2, 3), (3, 2), (2, 2)], jnp.float64)]
    )
    def test_exact_recovery(self, shapes, dtype):
        op = rand_kron(shapes, dtype, seed=2)
        w = dense(op)
        rec = from_dense(w, tuple(s[0] for s in shapes), tuple(s[1] for s in shapes))
        np.testing.assert_allclose(dense(rec), w, atol=1e-11)
        norms = [np.linalg.norm(np.asarray(f)) for f in rec.factors]
        np.testing.assert_allclose(norms, norms[0], rtol=1e-10)  # the norm is shared evenly

    def test_two_factor_optimality_vs_dense_svd(self):
        w = rand((12, 10), seed=3)
        s = np.linalg.svd(np_rearrange(w, (3, 4), (2, 5)), compute_uv=False)
        op = from_dense(w, (3, 4), (2, 5))
        np.testing.assert_allclose(np.linalg.norm(w - dense(op)), np.sqrt(np.sum(s[1:] ** 2)), rtol=1e-10)
        for t in (3,):
            approx = from_dense_sum(w, (3, 4), (2, 5), t)
            assert approx.num_terms == t
            np.testing.assert_allclose(np.linalg.norm(w - dense(approx)), np.sqrt(np.sum(s[t:] ** 2)), rtol=1e-10)
        full = from_dense_sum(w, (3, 4), (2, 5), 6)
        np.testing.assert_allclose(dense(full), w, atol=1e-12)

    def test_three_factors_vs_tensorly_rank1_cp(self):
        import tensorly as tl
        from tensorly.decomposition import parafac

        tl.set_backend("numpy")
        row_dims, col_dims = (2, 3, 2), (3, 2, 2)
        w = dense(rand_kron(list(zip(row_dims, col_dims)), seed=4)) + 0.3 * rand((12, 12), seed=5)
        op = from_dense(w, row_dims, col_dims)
        r = w.reshape(row_dims + col_dims).transpose(0, 3, 1, 4, 2, 5).reshape(6, 6, 4)
        cp = parafac(r, rank=1, n_iter_max=500, tol=1e-14, init="svd")
        err_tl = np.linalg.norm(r - tl.cp_to_tensor(cp))
        np.testing.assert_allclose(np.linalg.norm(w - dense(op)), err_tl, rtol=1e-6)

    def test_grad_is_twice_the_residual(self):
        w = jnp.asarray(rand((6, 6), seed=6))
        # The best approximation P(W) minimises ||W - P||^2, so (envelope theorem) the gradient of the minimal error
        # is 2 (W - P(W)): a check of the derivative through the SVD.
        def err(w):
            return jnp.sum((w - kron.to_dense(kron.from_dense(w, (2, 3), (3, 2)))) ** 2)

        g = jax.jit(jax.grad(err))(w)
        np.testing.assert_allclose(g, 2 * (w - dense(from_dense(w, (2, 3), (3, 2)))), rtol=1e-9, atol=1e-12)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match=r"matrix must have shape \(6, 6\)"):
            kron.from_dense(jnp.ones((6, 5)), (2, 3), (3, 2))
        with pytest.raises(ValueError, match="same length"):
            kron.from_dense(jnp.ones((6, 6)), (2, 3), (6,))
        with pytest.raises(ValueError, match=r"num_terms must be an int in \[1, 6\]"):
            kron.from_dense_sum(jnp.ones((6, 6)), (2, 3), (3, 2), 7)
        with pytest.raises(ValueError, match="exactly 2 factors"):
            kron.from_dense_sum(jnp.ones((8, 8)), (2, 2, 2), (2, 2, 2), 2)
        with pytest.raises(TypeError, match="floating or complex"):
            kron.from_dense(jnp.ones((6, 6), jnp.int32), (2, 3), (3, 2))
