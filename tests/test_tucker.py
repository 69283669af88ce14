"""tnkit.tucker against dense NumPy references, TensorLy's HOOI and brute-force rank searches."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tests.helpers import graded_tensor, rel_err
from tnkit import TT, Tucker, tt, tucker

DTYPES = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128]
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-12, jnp.complex64: 2e-5, jnp.complex128: 1e-12}
DIMS = (5, 6, 7)


def rand_dense(shape, dtype=jnp.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return jnp.asarray(x, dtype)


def rand_tucker(seed, dims=DIMS, ranks=(2, 3, 2), dtype=jnp.float64):
    """A Tucker with Gaussian core and factors (NumPy random numbers: cheaper to make than jax.random's)."""
    core = rand_dense(ranks, dtype, seed)
    factors = [rand_dense((n, r), dtype, 100 * seed + k + 1) / n**0.5 for k, (n, r) in enumerate(zip(dims, ranks))]
    return Tucker(core, factors)


def unfold(x, k):
    x = np.asarray(x)
    return np.moveaxis(x, k, 0).reshape(x.shape[k], -1)


def hosvd_tails(x, ranks):
    """sum_{i >= r_k} sigma_{k,i}^2 per mode, from NumPy SVDs of the unfoldings."""
    return [float(np.sum(np.linalg.svd(unfold(x, k), compute_uv=False)[r:] ** 2)) for k, r in enumerate(ranks)]


def dense_tucker(core, factors):
    """core x_1 U_1 ... x_d U_d with np.einsum (the reference for to_dense)."""
    letters = "abcdefgh"
    d = len(factors)
    spec = letters[:d] + "," + ",".join(f"{c.upper()}{c}" for c in letters[:d]) + "->" + letters[:d].upper()
    return np.einsum(spec, np.asarray(core), *[np.asarray(f) for f in factors])


def assert_orthonormal(t, atol=1e-10):
    for f in t.factors:
        f = np.asarray(f)
        np.testing.assert_allclose(f.conj().T @ f, np.eye(f.shape[1]), atol=atol)


GRADED = jnp.asarray(graded_tensor(DIMS, decay=0.5))
RANKS = (3, 3, 3)


class TestDecompositions:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_full_rank_is_exact(self, dtype):
        x = rand_dense(DIMS, dtype)
        for t in (tucker.hosvd(x), tucker.sthosvd(x)):
            assert t.ranks == DIMS and t.dtype == dtype
            assert rel_err(tucker.to_dense(t), x) < 10 * TOL[dtype]

    def test_default_ranks_cap_at_the_other_modes(self):
        # A (2, 3, 9) tensor has multilinear rank at most (2, 3, 6).
        x = rand_dense((2, 3, 9))
        t = tucker.sthosvd(x)
        assert t.ranks == (2, 3, 6)
        assert rel_err(tucker.to_dense(t), x) < 1e-12

    @pytest.mark.parametrize("fn", [tucker.hosvd, tucker.sthosvd])
    def test_matrix_case_is_eckart_young(self, fn):
        x = rand_dense((9, 7))
        s = np.linalg.svd(np.asarray(x), compute_uv=False)
        for r in (1, 3):
            err = np.linalg.norm(np.asarray(tucker.to_dense(fn(x, ranks=(r, r))) - x))
            np.testing.assert_allclose(err, np.sqrt(np.sum(s[r:] ** 2)), rtol=1e-10)

    @pytest.mark.parametrize("ranks", [(3, 3, 3), (4, 2, 5)])
    def test_error_bounds(self, ranks):
        x = GRADED
        bound = sum(hosvd_tails(x, ranks))
        h, s = tucker.hosvd(x, ranks=ranks), tucker.sthosvd(x, ranks=ranks)
        err_h = float(np.sum(np.abs(np.asarray(tucker.to_dense(h) - x)) ** 2))
        err_s = float(np.sum(np.abs(np.asarray(tucker.to_dense(s) - x)) ** 2))
        assert err_h <= bound * (1 + 1e-10) and err_s <= bound * (1 + 1e-10)
        # HOSVD: the error is at least the largest single-mode tail (a projection of x onto fewer dimensions).
        assert err_h >= max(hosvd_tails(x, ranks)) * (1 - 1e-10)
        assert h.ranks == s.ranks == ranks
        assert_orthonormal(h)
        assert_orthonormal(s)

    def test_hosvd_factors_are_the_unfoldings_singular_vectors(self):
        x = GRADED
        t = tucker.hosvd(x, ranks=RANKS)
        for k, f in enumerate(t.factors):
            u = np.linalg.svd(unfold(x, k), full_matrices=False)[0][:, : RANKS[k]]
            np.testing.assert_allclose(np.abs(u.T @ np.asarray(f)), np.eye(RANKS[k]), atol=1e-8)

    def test_sthosvd_error_is_the_sum_of_its_steps_tails(self):
        # Reference implementation of ST-HOSVD in NumPy, order (2, 0, 1).
        x, order = np.asarray(GRADED), (2, 0, 1)
        y, total = x.copy(), 0.0
        for k in order:
            u, s, _ = np.linalg.svd(unfold(y, k), full_matrices=False)
            total += np.sum(s[RANKS[k] :] ** 2)
            y = np.moveaxis(np.tensordot(u[:, : RANKS[k]].T, np.moveaxis(y, k, 0), axes=1), 0, k)
        t = tucker.sthosvd(GRADED, ranks=RANKS, order=order)
        err2 = np.sum((np.asarray(tucker.to_dense(t)) - x) ** 2)
        np.testing.assert_allclose(err2, total, rtol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(t.core)), np.linalg.norm(y), rtol=1e-12)

    @pytest.mark.parametrize(
        "fn, rtol",
        [(tucker.hosvd, 1e-2), (tucker.hosvd, 1e-9), (tucker.sthosvd, 3e-1), (tucker.sthosvd, 1e-9)],
    )
    def test_rtol_bound(self, fn, rtol):
        x = jnp.asarray(graded_tensor((6, 7, 8), decay=0.3, terms=12))
        t = fn(x, rtol=rtol)
        assert rel_err(tucker.to_dense(t), x) <= rtol
        if rtol >= 1e-4 and max(t.ranks) > 1:  # not wastefully large: one rank less per mode would violate it
            smaller = tuple(max(1, r - 1) for r in t.ranks)
            assert rel_err(tucker.to_dense(tucker.sthosvd(x, ranks=smaller)), x) > rtol / 10

    def test_rtol_under_grad(self):
        # Ranks are chosen from concrete values inside jax.grad; the gradient flows through the chosen factors.
        x = jnp.asarray(graded_tensor((3, 4, 3), decay=0.2))
        g = jax.grad(lambda x: jnp.sum(tucker.to_dense(tucker.sthosvd(x, rtol=1e-12)) ** 2))(x)
        np.testing.assert_allclose(g, 2 * x, atol=1e-9)

    def test_rtol_with_ranks_as_upper_bounds(self):
        x = jnp.asarray(graded_tensor((6, 7, 8), decay=0.3, terms=12))
        t = tucker.sthosvd(x, rtol=1e-9, ranks=(2, 2, 2))
        assert t.ranks == (2, 2, 2)

    @pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float32])
    def test_complex_and_single_precision(self, dtype):
        x = rand_dense(DIMS, dtype, seed=3)
        x = x + 3 * jnp.asarray(graded_tensor(DIMS, decay=0.4), dtype)
        t = tucker.sthosvd(x, ranks=RANKS)
        assert t.dtype == dtype
        assert_orthonormal(t, atol=1e-5 if dtype == jnp.float32 else 1e-10)
        bound = sum(hosvd_tails(np.asarray(x, np.complex128), RANKS))
        assert np.sum(np.abs(np.asarray(tucker.to_dense(t) - x, np.complex128)) ** 2) <= bound * (1 + 1e-4)

    def test_methods_agree(self):
        ref = rel_err(tucker.to_dense(tucker.sthosvd(GRADED, ranks=RANKS, method=tucker.SVDMethod.ACCURATE)), GRADED)
        for method in (tucker.SVDMethod.AUTO, tucker.SVDMethod.GRAM):
            err = rel_err(tucker.to_dense(tucker.sthosvd(GRADED, ranks=RANKS, method=method)), GRADED)
            np.testing.assert_allclose(err, ref, rtol=1e-8)

    def test_from_dense_is_sthosvd(self):
        a, b = tucker.from_dense(GRADED, ranks=RANKS), tucker.sthosvd(GRADED, ranks=RANKS)
        np.testing.assert_allclose(tucker.to_dense(a), tucker.to_dense(b), atol=1e-12)

    def test_fixed_ranks_jit_and_rtol_raises_under_jit(self):
        t = jax.jit(functools.partial(tucker.sthosvd, ranks=RANKS))(GRADED)
        assert t.ranks == RANKS
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(functools.partial(tucker.hosvd, rtol=1e-3))(GRADED)

    def test_vmap_over_tensors(self):
        xs = jnp.stack([GRADED, 2 * GRADED + 0.01 * rand_dense(DIMS)])
        batch = jax.jit(jax.vmap(functools.partial(tucker.sthosvd, ranks=RANKS)))(xs)
        assert batch.batch_shape == (2,) and batch.ranks == RANKS
        dense = jax.jit(jax.vmap(tucker.to_dense))(batch)
        for i in range(2):
            ref = np.asarray(tucker.to_dense(tucker.sthosvd(xs[i], ranks=RANKS)))
            np.testing.assert_allclose(dense[i], ref, atol=1e-10)


def _tensorly_error(x, ranks):
    import tensorly as tl
    from tensorly.decomposition import tucker as tl_tucker

    tl.set_backend("numpy")
    res = tl_tucker(np.asarray(x), rank=list(ranks), init="svd", tol=1e-12, n_iter_max=500)
    return rel_err(tl.tucker_to_tensor(res), x)


_hooi = jax.jit(tucker.hooi, static_argnames=("ranks", "max_iters", "method"))


ITERS = 60  # one max_iters for the tests on GRADED: a single compilation (tol is traced)


class TestHOOI:
    def test_matches_tensorly_and_improves_on_sthosvd(self):
        x, ranks = GRADED, (2, 3, 3)
        t, info = _hooi(x, ranks=ranks, max_iters=ITERS, tol=1e-13)
        err = rel_err(tucker.to_dense(t), x)
        err_st = rel_err(tucker.to_dense(tucker.sthosvd(x, ranks=ranks)), x)
        assert err <= err_st + 1e-14
        np.testing.assert_allclose(err, _tensorly_error(x, ranks), rtol=1e-7)
        assert_orthonormal(t)
        n = int(info.iterations)
        assert 1 <= n < ITERS and bool(info.converged)
        e = np.asarray(info.errors)
        np.testing.assert_allclose(e[0], err_st, rtol=1e-9)  # errors[0]: the sthosvd start
        np.testing.assert_allclose(e[n], err, rtol=1e-6)  # the reported error is the returned Tucker's
        assert np.all(np.diff(e[: n + 1]) <= 1e-12) and np.all(np.isnan(e[n + 1 :]))

    def test_core_is_the_projection(self):
        t, _ = _hooi(GRADED, ranks=RANKS, max_iters=ITERS, tol=1e-3)
        proj = tucker.multi_mode_product(GRADED, t.factors, transpose=True)
        np.testing.assert_allclose(t.core, proj, atol=1e-12)

    def test_stopping_rule(self):
        # tol = 0 never stops early; a huge tol stops after the first sweep.
        _, info = _hooi(GRADED, ranks=RANKS, max_iters=ITERS, tol=0.0)
        assert int(info.iterations) == ITERS and not bool(info.converged)
        _, info = _hooi(GRADED, ranks=RANKS, max_iters=ITERS, tol=1.0)
        assert int(info.iterations) == 1 and bool(info.converged)
        # otherwise it stops at the first sweep that changes the error by less than tol
        _, info = _hooi(GRADED, ranks=RANKS, max_iters=ITERS, tol=1e-6)
        e, n = np.asarray(info.errors), int(info.iterations)
        assert abs(e[n - 1] - e[n]) < 1e-6 and np.all(np.abs(np.diff(e[:n])) >= 1e-6)

    def test_four_modes_against_tensorly(self):
        # The dimension tree splits (0, 1) | (2, 3): check it against the textbook sweep's fixed point.
        x = jnp.asarray(graded_tensor((4, 5, 3, 6), decay=0.6, seed=1))
        ranks = (2, 3, 2, 3)
        t, _ = _hooi(x, ranks=ranks, max_iters=ITERS, tol=1e-13)
        np.testing.assert_allclose(rel_err(tucker.to_dense(t), x), _tensorly_error(x, ranks), rtol=1e-6)

    def test_complex(self):
        x = jnp.asarray(graded_tensor((4, 5, 6), decay=0.6, dtype=np.complex128))
        t, info = _hooi(x, ranks=(2, 2, 3), max_iters=ITERS, tol=1e-12)
        err = rel_err(tucker.to_dense(t), x)
        assert t.dtype == jnp.complex128
        assert err <= rel_err(tucker.to_dense(tucker.sthosvd(x, ranks=(2, 2, 3))), x) + 1e-14
        np.testing.assert_allclose(err, _tensorly_error(x, (2, 2, 3)), rtol=1e-6)

    def test_init_from_a_tucker(self):
        init = rand_tucker(5, DIMS, RANKS)  # factors not orthonormal: they are orthonormalised
        t, info = _hooi(GRADED, ranks=RANKS, init=init, max_iters=ITERS, tol=1e-13)
        ref, _ = _hooi(GRADED, ranks=RANKS, max_iters=ITERS, tol=1e-13)
        err, err_ref = rel_err(tucker.to_dense(t), GRADED), rel_err(tucker.to_dense(ref), GRADED)
        np.testing.assert_allclose(err, err_ref, rtol=1e-6)
        # errors[0]: the error of the initial subspaces with the optimal core (the orthogonal projection of x)
        x = np.asarray(GRADED)
        qs = [np.linalg.qr(np.asarray(f))[0] for f in init.factors]
        proj = dense_tucker(np.einsum("ijk,ia,jb,kc->abc", x, *qs), qs)
        np.testing.assert_allclose(info.errors[0], rel_err(proj, x), rtol=1e-8)

    def test_fixed_sweeps_are_differentiable(self):
        x = 0.1 * rand_dense((3, 4, 5), seed=1) + jnp.asarray(graded_tensor((3, 4, 5), decay=0.3))

        @jax.jit
        def loss(x):
            t, info = tucker.hooi(x, (2, 2, 2), max_iters=1, tol=None, method=tucker.SVDMethod.ACCURATE)
            return jnp.sum(tucker.to_dense(t) ** 2), info

        info = loss(x)[1]
        assert int(info.iterations) == 1 and not np.isnan(np.asarray(info.errors)).any()
        check_grads(lambda x: loss(x)[0], (x,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)

    def test_vmap(self):
        xs = jnp.stack([GRADED, GRADED[::-1] + 0.1])
        batch, info = jax.jit(jax.vmap(lambda x: tucker.hooi(x, RANKS, max_iters=ITERS)))(xs)
        assert batch.batch_shape == (2,) and info.iterations.shape == (2,)
        for i in range(2):
            one, _ = _hooi(xs[i], ranks=RANKS, max_iters=ITERS, tol=1e-4)
            np.testing.assert_allclose(
                rel_err(tucker.to_dense(jax.tree_util.tree_map(lambda a: a[i], batch)), xs[i]),
                rel_err(tucker.to_dense(one), xs[i]),
                rtol=1e-6,
            )


class TestModeProducts:
    @pytest.mark.parametrize("mode", [0, 1, 2, -1])
    def test_dense_against_einsum(self, mode):
        x = rand_dense(DIMS, seed=1)
        n = DIMS[mode]
        for m_rows in (2, 9):  # both code paths of a middle mode (batched product / einsum)
            m = rand_dense((m_rows, n), seed=2)
            y = tucker.mode_product(x, m, mode)
            ref = np.moveaxis(np.tensordot(np.asarray(m), np.asarray(x), axes=([1], [mode])), 0, mode)
            np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)

    def test_four_modes_middle(self):
        x = rand_dense((3, 4, 5, 6), seed=1)
        for mode, rows in [(1, 2), (2, 7)]:
            m = rand_dense((rows, x.shape[mode]), seed=mode)
            ref = np.moveaxis(np.tensordot(np.asarray(m), np.asarray(x), axes=([1], [mode])), 0, mode)
            np.testing.assert_allclose(tucker.mode_product(x, m, mode), ref, rtol=1e-12, atol=1e-12)

    def test_tucker_multiplies_the_factor(self):
        t = rand_tucker(0)
        m = rand_dense((4, DIMS[1]), seed=3)
        y = tucker.mode_product(t, m, 1)
        assert isinstance(y, Tucker) and y.dims == (5, 4, 7) and y.ranks == t.ranks
        np.testing.assert_allclose(y.core, t.core)
        ref = np.einsum("ij,ajb->aib", np.asarray(m), np.asarray(tucker.to_dense(t)))
        np.testing.assert_allclose(tucker.to_dense(y), ref, rtol=1e-11)

    def test_multi_with_transpose_is_conjugate_transpose(self):
        x = rand_dense(DIMS, jnp.complex128, seed=1)
        a, c = rand_dense((5, 2), jnp.complex128, 2), rand_dense((7, 3), jnp.complex128, 3)
        y = tucker.multi_mode_product(x, [c, a], modes=[2, 0], transpose=True)
        ref = np.einsum("ia,kc,ijk->ajc", np.conj(np.asarray(a)), np.conj(np.asarray(c)), np.asarray(x))
        np.testing.assert_allclose(y, ref, rtol=1e-12)
        t = tucker.multi_mode_product(rand_tucker(0, dtype=jnp.complex128), [c, a], modes=[2, 0], transpose=True)
        assert t.dims == (2, 6, 3)

    def test_promotes_real_tensor_times_complex_matrix(self):
        x = rand_dense(DIMS)
        m = rand_dense((2, 5), jnp.complex128)
        y = tucker.mode_product(x, m, 0)
        assert y.dtype == jnp.complex128
        np.testing.assert_allclose(y, np.tensordot(np.asarray(m), np.asarray(x), axes=1), rtol=1e-12)

    def test_to_dense_against_einsum(self):
        t = rand_tucker(1, (3, 4, 5, 2), (2, 3, 2, 2), jnp.complex128)
        np.testing.assert_allclose(tucker.to_dense(t), dense_tucker(t.core, t.factors), rtol=1e-12)


class TestAlgebra:
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_inner_and_norm(self, dtype):
        a, b = rand_tucker(0, dtype=dtype), rand_tucker(1, ranks=(3, 1, 4), dtype=dtype)
        da, db = np.asarray(tucker.to_dense(a)), np.asarray(tucker.to_dense(b))
        tol = 1e-5 if dtype == jnp.float32 else 1e-12
        np.testing.assert_allclose(tucker.inner(a, b), np.vdot(da, db), rtol=tol)
        np.testing.assert_allclose(tucker.inner(b, a), np.vdot(db, da), rtol=tol)
        np.testing.assert_allclose(tucker.norm(a), np.linalg.norm(da), rtol=tol)
        assert tucker.norm(a).dtype == jnp.finfo(dtype).dtype

    def test_norm_does_not_assume_orthonormal_factors(self):
        t = rand_tucker(0)
        t = Tucker(t.core, [3.0 * f for f in t.factors])
        np.testing.assert_allclose(tucker.norm(t), np.linalg.norm(np.asarray(tucker.to_dense(t))), rtol=1e-12)

    def test_norm_is_accurate_for_small_tensors(self):
        t = tucker.scale(rand_tucker(0), 1e-200)
        np.testing.assert_allclose(tucker.norm(t) * 1e200, tucker.norm(rand_tucker(0)), rtol=1e-12)

    def test_norm_of_zero_and_its_gradient(self):
        t = tucker.scale(rand_tucker(0), 0.0)
        assert float(tucker.norm(t)) == 0.0
        g = jax.grad(lambda c: tucker.norm(Tucker(c, t.factors)))(t.core)
        assert np.all(np.isfinite(np.asarray(g)))

    def test_add_sub_scale(self):
        a, b = rand_tucker(0, dtype=jnp.complex128), rand_tucker(1, ranks=(1, 2, 3), dtype=jnp.complex128)
        da, db = tucker.to_dense(a), tucker.to_dense(b)
        c = tucker.add(a, b)
        assert c.ranks == (3, 5, 5)
        np.testing.assert_allclose(tucker.to_dense(c), da + db, rtol=1e-12)
        np.testing.assert_allclose(tucker.to_dense(tucker.sub(a, b)), da - db, rtol=1e-12)
        np.testing.assert_allclose(tucker.to_dense(tucker.scale(a, 2 - 1j)), (2 - 1j) * da, rtol=1e-12)
        assert tucker.scale(rand_tucker(0), 1j).dtype == jnp.complex128
        assert tucker.scale(rand_tucker(0, dtype=jnp.float32), 2.0).dtype == jnp.float32

    def test_round(self):
        a = rand_tucker(0)
        s = tucker.round(tucker.add(a, a), rtol=1e-10)
        assert s.ranks == a.ranks
        np.testing.assert_allclose(tucker.to_dense(s), 2 * tucker.to_dense(a), atol=1e-12)
        assert_orthonormal(s)
        # ranks are upper bounds: too large ones are capped, never raised
        assert tucker.round(a, ranks=(5, 5, 5)).ranks == a.ranks
        assert tucker.round(a, ranks=2).ranks == (2, 2, 2)

    @pytest.mark.parametrize("rtol", [3e-1, 1e-6])
    def test_round_rtol_bound_and_fixed_rank_is_sthosvd(self, rtol):
        t = tucker.add(rand_tucker(0, ranks=(3, 3, 3)), tucker.scale(rand_tucker(1, ranks=(2, 4, 2)), 0.1))
        x = tucker.to_dense(t)
        r = tucker.round(t, rtol=rtol)
        assert rel_err(tucker.to_dense(r), x) <= rtol
        # at fixed ranks, rounding gives the sthosvd of the dense tensor (the same subspaces)
        fixed = tucker.round(t, ranks=(2, 3, 2))
        ref = tucker.sthosvd(x, ranks=(2, 3, 2))
        np.testing.assert_allclose(rel_err(tucker.to_dense(fixed), x), rel_err(tucker.to_dense(ref), x), rtol=1e-8)

    def test_round_caps_unattainable_ranks(self):
        # ranks (3, 1, 1) are not attainable: they become (1, 1, 1)
        assert tucker.round(rand_tucker(0, ranks=(3, 3, 3)), ranks=(3, 1, 1)).ranks == (1, 1, 1)

    def test_round_under_jit(self):
        r = jax.jit(functools.partial(tucker.round, ranks=(2, 2, 2)))(rand_tucker(0, ranks=(3, 3, 3)))
        assert r.ranks == (2, 2, 2)
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(functools.partial(tucker.round, rtol=1e-3))(rand_tucker(0))

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_to_tt_is_exact(self, dtype):
        t = rand_tucker(2, (4, 5, 6, 3), (2, 3, 2, 2), dtype)
        s = tucker.to_tt(t)
        assert isinstance(s, TT) and s.dims == t.dims and s.dtype == dtype
        assert s.ranks == (1, 2, 4, 2, 1)
        np.testing.assert_allclose(tt.to_dense(s), tucker.to_dense(t), rtol=1e-11, atol=1e-13)

    def test_random(self):
        t = tucker.random(jax.random.key(0), (4, 5, 6), (2, 3, 2), jnp.complex64)
        assert t.dims == (4, 5, 6) and t.ranks == (2, 3, 2) and t.dtype == jnp.complex64
        # E ||t||^2 = 1
        keys = jax.random.split(jax.random.key(0), 400)
        sq = jax.jit(jax.vmap(lambda k: tucker.norm(tucker.random(k, (4, 5, 6), (2, 3, 2), jnp.float64)) ** 2))(keys)
        sq = np.asarray(sq)
        assert abs(sq.mean() - 1) < 4 * sq.std() / np.sqrt(sq.size)
        with pytest.raises(ValueError, match="dims must be a non-empty sequence of positive ints"):
            tucker.random(jax.random.key(0), (2, 0), 2)
        with pytest.raises(TypeError, match="dtype must be floating or complex"):
            tucker.random(jax.random.key(0), (2, 3), 2, dtype=jnp.int32)

    def test_vmap_of_the_algebra(self):
        stack = lambda ts: jax.tree_util.tree_map(lambda *c: jnp.stack(c), *ts)  # noqa: E731
        a = [rand_tucker(i, ranks=(2, 3, 2), dtype=jnp.complex128) for i in range(3)]
        b = [rand_tucker(i + 5, ranks=(1, 2, 2), dtype=jnp.complex128) for i in range(3)]
        ta, tb = stack(a), stack(b)
        assert ta.batch_shape == (3,)

        @jax.jit
        def f(ta, tb):
            return jax.vmap(tucker.to_dense)(ta), jax.vmap(tucker.inner)(ta, tb), jax.vmap(tucker.norm)(ta)

        dense, inner, nrm = f(ta, tb)
        da = [dense_tucker(t.core, t.factors) for t in a]
        db = [dense_tucker(t.core, t.factors) for t in b]
        np.testing.assert_allclose(dense, np.stack(da), rtol=1e-12)
        np.testing.assert_allclose(inner, [np.vdot(x, y) for x, y in zip(da, db)], rtol=1e-12)
        np.testing.assert_allclose(nrm, [np.linalg.norm(x) for x in da], rtol=1e-12)


class TestGradients:
    def test_check_grads_to_dense_inner_norm(self):
        a, b = rand_tucker(0, (3, 4, 2), (2, 2, 2)), rand_tucker(1, (3, 4, 2), (1, 2, 2))
        check_grads(jax.jit(tucker.to_dense), (a,), order=1, modes=("fwd", "rev"))
        check_grads(jax.jit(tucker.inner), (a, b), order=1, modes=("rev",))
        check_grads(jax.jit(tucker.norm), (a,), order=1, modes=("rev",))

    def test_check_grads_complex_inner(self):
        a = rand_tucker(0, (3, 4, 2), (2, 2, 2), jnp.complex128)
        b = rand_tucker(1, (3, 4, 2), (2, 1, 2), jnp.complex128)
        check_grads(jax.jit(lambda a, b: jnp.real(tucker.inner(a, b))), (a, b), order=1, modes=("rev",))
        check_grads(jax.jit(lambda a, b: jnp.imag(tucker.inner(a, b))), (a, b), order=1, modes=("rev",))

    def test_check_grads_sthosvd_fixed_ranks(self):
        x = jnp.asarray(graded_tensor((3, 4, 5), decay=0.4))
        f = jax.jit(lambda x: tucker.to_dense(tucker.sthosvd(x, ranks=(2, 2, 2))))
        check_grads(f, (x,), order=1, modes=("rev",))


class TestBadInput:
    def test_ranks(self):
        x = jnp.ones(DIMS)
        with pytest.raises(ValueError, match=r"ranks must have one entry per mode \(3 for dims \(5, 6, 7\)\), got 2"):
            tucker.hosvd(x, ranks=(2, 2))
        with pytest.raises(ValueError, match=r"ranks\[1\] = 7 exceeds dims\[1\] = 6"):
            tucker.sthosvd(x, ranks=(2, 7, 2))
        with pytest.raises(ValueError, match=r"ranks\[0\] = 0: ranks must be positive"):
            tucker.hooi(x, (0, 2, 2))
        with pytest.raises(ValueError, match=r"not the multilinear ranks of any tensor: ranks\[2\] = 5 exceeds .* 4"):
            tucker.hooi(x, (2, 2, 5))
        with pytest.raises(TypeError, match="ranks must hold ints"):
            tucker.sthosvd(x, ranks=(2.0, 2, 2))

    def test_mode_product(self):
        x = jnp.ones(DIMS)
        with pytest.raises(ValueError, match=r"matrices\[0\] must have shape \(m, 6\) to act on mode 1 .*\(3, 5\)"):
            tucker.mode_product(x, jnp.ones((3, 5)), 1)
        with pytest.raises(ValueError, match=r"mode.* must be an int in \[-3, 3\) for a tensor with 3 modes, got 3"):
            tucker.mode_product(x, jnp.ones((3, 5)), 3)
        with pytest.raises(ValueError, match=r"must have shape \(5, m\) .* with transpose=True"):
            tucker.multi_mode_product(x, [jnp.ones((3, 5))], transpose=True)
        with pytest.raises(ValueError, match="modes must be distinct"):
            tucker.multi_mode_product(x, [jnp.ones((2, 5)), jnp.ones((2, 5))], modes=[0, -3])
        with pytest.raises(ValueError, match="the same length"):
            tucker.multi_mode_product(x, [jnp.ones((2, 5))], modes=[0, 1])

    def test_arguments(self):
        x = jnp.ones(DIMS)
        with pytest.raises(ValueError, match="rtol must be a non-negative"):
            tucker.sthosvd(x, rtol=-1.0)
        with pytest.raises(ValueError, match=r"order must be a permutation of range\(3\)"):
            tucker.sthosvd(x, order=(0, 0, 1))
        with pytest.raises(ValueError, match="max_iters must be a positive int"):
            tucker.hooi(x, 2, max_iters=0)
        with pytest.raises(ValueError, match="tol must be a non-negative"):
            tucker.hooi(x, 2, tol=-1.0)
        with pytest.raises(ValueError, match=r"init must have dims \(5, 6, 7\) and ranks \(2, 2, 2\)"):
            tucker.hooi(x, 2, init=rand_tucker(0))
        with pytest.raises(TypeError, match="method must be a tnkit.tt.SVDMethod"):
            tucker.hosvd(x, method="gram")
        with pytest.raises(TypeError, match="floating or complex dtype, got int32"):
            tucker.hosvd(jnp.ones(DIMS, jnp.int32))
        with pytest.raises(ValueError, match="at least one axis"):
            tucker.hosvd(jnp.float64(1.0))
        with pytest.raises(TypeError, match="x must be a dense array, got a Tucker"):
            tucker.hosvd(rand_tucker(0))

    def test_algebra(self):
        with pytest.raises(ValueError, match=r"same dims, got \(5, 6, 7\) and \(5, 6, 8\)"):
            tucker.inner(rand_tucker(0), rand_tucker(1, (5, 6, 8)))
        with pytest.raises(TypeError, match="a must be a tnkit.Tucker, got TT"):
            tucker.inner(TT([jnp.ones((1, n, 1)) for n in DIMS]), rand_tucker(0))
        with pytest.raises(ValueError, match="alpha must be a scalar"):
            tucker.scale(rand_tucker(0), jnp.ones(2))
        with pytest.raises(ValueError, match=r"ranks must have one entry per mode"):
            tucker.round(rand_tucker(0), ranks=(1, 1))


# ---------------------------------------------------------------------------------------------- rank selection


def brute_force(spectra, budget, dims=None):
    """Least discarded energy over all attainable rank tuples within the budget."""
    dims = dims or tuple(len(s) for s in spectra)
    lam = [np.asarray(s, float) ** 2 for s in spectra]
    best = math.inf
    for r in itertools.product(*[range(1, n + 1) for n in dims]):
        if math.prod(r) + sum(n * k for n, k in zip(dims, r)) > budget:
            continue
        if len(r) > 1 and any(k * k > math.prod(r) for k in r):
            continue
        best = min(best, sum(float(np.sum(l[k:])) for l, k in zip(lam, r)))
    return best


class TestRankSelection:
    def test_knapsack_against_brute_force(self):
        rng = np.random.default_rng(0)
        for trial in range(12):
            d = int(rng.integers(2, 5))
            dims = tuple(int(n) for n in rng.integers(2, 7, size=d))
            spectra = [np.sort(rng.exponential(size=n) * rng.uniform(0.2, 0.95) ** np.arange(n))[::-1] for n in dims]
            lo, hi = 1 + sum(dims), math.prod(dims) + sum(n * n for n in dims)
            budget = int(rng.integers(lo, hi))
            choice = tucker.ranks_for_budget(spectra, budget)
            res = 0.01
            # the documented guarantee: no worse than the optimum for a budget shrunk by the rounding
            assert choice.discarded <= brute_force(spectra, int(budget * (1 - res) / (1 + res))) * (1 + 1e-12) + 1e-300
            # ... and never better than the optimum at the budget (it is within the budget and attainable)
            assert choice.discarded >= brute_force(spectra, budget) * (1 - 1e-12)
            r = choice.ranks
            assert choice.num_params == math.prod(r) + sum(n * k for n, k in zip(dims, r)) <= budget
            assert d == 1 or all(k * k <= math.prod(r) for k in r)
            greedy = tucker.ranks_for_budget(spectra, budget, method=tucker.RankSearch.GREEDY)
            assert greedy.num_params <= budget and choice.discarded <= greedy.discarded

    def test_knapsack_beats_greedy(self):
        # Greedy spends the budget on mode 1's cheap big gain (9 -> 3) and cannot afford mode 0's flat spectrum.
        spectra = [np.array([9.0, 8, 8, 7]), np.array([9.0, 3, 1, 0]), np.array([2.0, 2, 1, 0])]
        k = tucker.ranks_for_budget(spectra, 49)
        g = tucker.ranks_for_budget(spectra, 49, method=tucker.RankSearch.GREEDY)
        assert k.ranks == (4, 2, 2) and k.discarded == pytest.approx(2.0)
        assert g.discarded == pytest.approx(54.0) and g.discarded > 20 * k.discarded
        assert k.discarded == pytest.approx(brute_force(spectra, 49))

    def test_unattainable_proxy_optimum_is_repaired(self):
        # Over the box of ranks, (1, 5, 9) is best, but no tensor has those multilinear ranks.
        spectra = [0.5 ** np.arange(10.0), 0.8 ** np.arange(10.0), 0.9 ** np.arange(10.0)]
        choice = tucker.ranks_for_budget(spectra, 200)
        assert all(k * k <= math.prod(choice.ranks) for k in choice.ranks)
        assert choice.discarded == pytest.approx(brute_force(spectra, 200), rel=1e-12)

    def test_dense_and_tucker_inputs(self):
        t = rand_tucker(0, (6, 7, 8), (2, 3, 4))
        x = tucker.to_dense(t) + 1e-6 * rand_dense((6, 7, 8))
        hosv = tucker.higher_order_singular_values(x)
        for k, s in enumerate(hosv):
            ref = np.linalg.svd(unfold(x, k), compute_uv=False)
            np.testing.assert_allclose(s[: len(ref)], ref, rtol=1e-6, atol=1e-7)
        hosv_t = tucker.higher_order_singular_values(t)
        dense_t = tucker.higher_order_singular_values(tucker.to_dense(t))
        for a, b in zip(hosv_t, dense_t):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-7)
        budget = t.num_params
        choice = tucker.ranks_for_budget(x, budget)
        assert choice.ranks == (2, 3, 4) and choice.num_params == budget
        err2 = np.sum(np.asarray(tucker.to_dense(tucker.sthosvd(x, ranks=choice.ranks)) - x) ** 2)
        assert err2 <= choice.discarded * (1 + 1e-6)

    def test_bad_input(self):
        spectra = [np.ones(3), np.ones(4)]
        with pytest.raises(ValueError, match=r"budget = 5 is below 8"):
            tucker.ranks_for_budget(spectra, 5)
        with pytest.raises(ValueError, match="descending"):
            tucker.ranks_for_budget([np.arange(3.0), np.ones(4)], 50)
        with pytest.raises(TypeError, match="method must be a tnkit.tucker.RankSearch"):
            tucker.ranks_for_budget(spectra, 50, method="greedy")
        with pytest.raises(ValueError, match="resolution must be a float in"):
            tucker.ranks_for_budget(spectra, 50, resolution=0.0)
        with pytest.raises(TypeError, match="budget must be an int"):
            tucker.ranks_for_budget(spectra, 50.0)


def test_hooi_error_of_zero_is_zero_and_of_nan_is_nan():
    # The relative error guards x = 0; that guard must not report a NaN input as fitted exactly.
    x = jax.random.normal(jax.random.key(0), (5, 6, 7))
    _, info = tucker.hooi(jnp.zeros_like(x), ranks=(2, 2, 2))
    assert float(info.errors[0]) == 0.0
    _, info = tucker.hooi(x.at[0, 0, 0].set(jnp.nan), ranks=(2, 2, 2))
    assert np.isnan(float(info.errors[0]))
