"""tnkit.tt against dense NumPy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tests.helpers import graded_tensor, rel_err, traced
from tnkit import TT, _linalg, tt

DTYPES = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128]
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-12, jnp.complex64: 2e-5, jnp.complex128: 1e-12}


def nearly_exact_sum():
    """``(x, a)``: ``x`` of shape ``(2,)*8``, the sum of 6 rank-one terms with weights 1, 1e-2, ..., 1e-10, and its
    exact TT ``a`` (ranks at most 6). ``round(a + a, max_rank=6)`` discards nothing, but its kept singular values go
    down to ~1e-10, below what a Gram matrix resolves (~1e-8)."""
    rng = np.random.default_rng(0)
    x = 0.0
    for k in range(6):
        term = np.ones(())
        for _ in range(8):
            term = np.multiply.outer(term, rng.standard_normal(2))
        x = x + 10.0 ** (-2 * k) * term
    return x, tt.from_dense(jnp.asarray(x), max_rank=6, method=tt.SVDMethod.ACCURATE)


def rand_tt(seed, dims=(3, 4, 5), ranks=2, dtype=jnp.float64):
    return tt.random(jax.random.key(seed), dims, ranks, dtype=dtype)


def rand_dense(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return jnp.asarray(x, dtype)


class TestFromDense:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_full_rank_roundtrip_is_exact(self, dtype):
        x = rand_dense((3, 4, 5), dtype)
        t = tt.from_dense(x)
        assert t.ranks == (1, 3, 5, 1) and t.dtype == dtype
        assert rel_err(tt.to_dense(t), x) < 10 * TOL[dtype]

    def test_matrix_case_is_eckart_young(self):
        # For d = 2, TT-SVD at rank r is the truncated SVD: its error is the discarded singular values.
        x = rand_dense((12, 9), jnp.float64)
        s = np.linalg.svd(np.asarray(x), compute_uv=False)
        for r in (1, 3, 5):
            t = tt.from_dense(x, max_rank=r)
            assert t.ranks == (1, r, 1)
            err = np.linalg.norm(np.asarray(tt.to_dense(t) - x))
            np.testing.assert_allclose(err, np.sqrt(np.sum(s[r:] ** 2)), rtol=1e-10)

    @pytest.mark.parametrize("rtol", [1e-1, 1e-3, 1e-6, 1e-10])
    def test_rtol_bound_float64(self, rtol):
        x = jnp.asarray(graded_tensor((4, 5, 4, 5), decay=0.3))
        t = tt.from_dense(x, rtol=rtol)
        assert rel_err(tt.to_dense(t), x) <= rtol
        if rtol >= 1e-6:  # the bound is not met by a much smaller rank: ranks are not wastefully large
            smaller = tt.from_dense(x, max_rank=max(t.ranks) - 1) if max(t.ranks) > 1 else None
            assert smaller is None or rel_err(tt.to_dense(smaller), x) > rtol / 10

    def test_rtol_1e10_on_smooth_function(self):
        # A smooth function on a grid: singular values decay to machine precision.
        g = np.linspace(0, 1, 6)
        grid = np.meshgrid(g, g, g, g, g, indexing="ij")
        x = jnp.asarray(1.0 / (1.0 + sum(grid)))
        t = tt.from_dense(x, rtol=1e-10)
        assert rel_err(tt.to_dense(t), x) <= 1e-10
        assert t.num_params < x.size / 5  # actually compressed (full ranks would be (1, 6, 36, 36, 6, 1))

    @pytest.mark.parametrize("method", list(tt.SVDMethod))
    def test_methods_agree_on_well_conditioned_input(self, method):
        x = jnp.asarray(graded_tensor((4, 4, 4, 4), decay=0.7))
        t = tt.from_dense(x, max_rank=3, method=method)
        ref = tt.from_dense(x, max_rank=3, method=tt.SVDMethod.ACCURATE)
        np.testing.assert_allclose(
            rel_err(tt.to_dense(t), x), rel_err(tt.to_dense(ref), x), rtol=1e-8
        )

    def test_auto_falls_back_for_ill_conditioned_input(self):
        # Singular values down to 1e-12: the Gram route alone would lose them.
        # Singular values 1, 1e-2, ..., 1e-18: keeping 6 leaves a tail of about 1e-12.
        x = jnp.asarray(graded_tensor((8, 8, 8), decay=0.01, terms=10))
        auto = tt.from_dense(x, max_rank=6)
        gram = tt.from_dense(x, max_rank=6, method=tt.SVDMethod.GRAM)
        accurate = tt.from_dense(x, max_rank=6, method=tt.SVDMethod.ACCURATE)
        # AUTO's fallback (the preconditioned Gram route) and ACCURATE (QR) agree to rounding: measured 9.985316e-13
        # against 9.985265e-13, a difference of 5e-18 = 0.02 eps in units of ||x||.
        np.testing.assert_allclose(rel_err(tt.to_dense(auto), x), rel_err(tt.to_dense(accurate), x), rtol=1e-4)
        assert rel_err(tt.to_dense(auto), x) < 1e-11
        assert rel_err(tt.to_dense(gram), x) > 100 * rel_err(tt.to_dense(auto), x)

    def test_rtol_under_grad(self):
        # Ranks are chosen from concrete values inside jax.grad; the gradient flows through the chosen factors.
        x = jnp.asarray(graded_tensor((3, 4, 3), decay=0.2))
        g = jax.grad(lambda x: jnp.sum(tt.to_dense(tt.from_dense(x, rtol=1e-12)) ** 2))(x)
        np.testing.assert_allclose(g, 2 * x, atol=1e-9)

    def test_max_rank_is_jittable_and_rtol_is_not(self):
        x = rand_dense((3, 4, 5), jnp.float64)
        t = jax.jit(functools.partial(tt.from_dense, max_rank=2))(x)
        assert t.ranks == (1, 2, 2, 1)
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(functools.partial(tt.from_dense, rtol=1e-3))(x)

    def test_one_mode(self):
        x = jnp.arange(1.0, 4.0)
        t = tt.from_dense(x)
        assert t.ranks == (1, 1) and np.allclose(tt.to_dense(t), x)

    @pytest.mark.parametrize(
        "kwargs, err, match",
        [
            ({"max_rank": 0}, ValueError, "max_rank must be a positive int"),
            ({"max_rank": 2.5}, ValueError, "max_rank must be a positive int"),
            ({"rtol": -1.0}, ValueError, "rtol must be a non-negative"),
            ({"rtol": "big"}, ValueError, "rtol must be"),
        ],
    )
    def test_bad_arguments(self, kwargs, err, match):
        with pytest.raises(err, match=match):
            tt.from_dense(jnp.ones((2, 2)), **kwargs)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="at least one axis"):
            tt.from_dense(jnp.float64(1.0))
        with pytest.raises(TypeError, match="floating or complex dtype, got int"):
            tt.from_dense(jnp.ones((2, 2), jnp.int32))


class TestRoundAndOrthogonalize:
    def test_round_of_sum_recovers_ranks(self):
        a = rand_tt(0, (3, 4, 4, 3), 2)
        s = tt.round(tt.add(a, a), rtol=1e-10)
        assert s.ranks == a.ranks
        assert rel_err(tt.to_dense(s), 2 * tt.to_dense(a)) < 1e-10

    def test_round_matrix_case_is_eckart_young(self):
        a = rand_tt(1, (10, 12), 6)
        x = np.asarray(tt.to_dense(a))
        sv = np.linalg.svd(x, compute_uv=False)
        r = tt.round(a, max_rank=3)
        assert r.ranks == (1, 3, 1)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(tt.to_dense(r)) - x), np.sqrt(np.sum(sv[3:] ** 2)), rtol=1e-9)

    @pytest.mark.parametrize("rtol", [1e-1, 1e-4, 1e-10])
    def test_round_rtol_bound(self, rtol):
        t = tt.from_dense(jnp.asarray(graded_tensor((4, 5, 4, 5), decay=0.3)))
        r = tt.round(t, rtol=rtol)
        assert rel_err(tt.to_dense(r), tt.to_dense(t)) <= rtol
        assert all(a <= b for a, b in zip(r.ranks, t.ranks))

    def test_round_is_quasi_optimal_against_tt_svd(self):
        x = jnp.asarray(graded_tensor((4, 5, 4, 5), decay=0.5))
        full = tt.from_dense(x)
        for r in (2, 4):
            e_round = rel_err(tt.to_dense(tt.round(full, max_rank=r)), x)
            e_svd = rel_err(tt.to_dense(tt.from_dense(x, max_rank=r)), x)
            np.testing.assert_allclose(e_round, e_svd, rtol=1e-6)

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_round_methods_match_the_dense_tt_svd(self, dtype, monkeypatch):
        # A sum of two TTs whose bond spectra decay (bond index j scaled by 0.6**j): the default (Gram where
        # reliable), the SVD route and GRAM (Gram matrices of the right parts, no QR sweep) all give the truncation
        # error of the TT-SVD of the dense sum, and left-orthonormal cores.
        def no_qr_sweep(*args, **kwargs):
            raise AssertionError("method=GRAM with max_rank must not orthogonalise")

        def graded(seed):
            t = rand_tt(seed, (4, 4, 4, 4, 4), 6, dtype)
            return TT([c * (0.6 ** jnp.arange(c.shape[2]))[None, None, :] for c in t.cores])

        s = tt.add(graded(3), graded(4))
        x = tt.to_dense(s)
        e_svd = rel_err(tt.to_dense(tt.from_dense(x, max_rank=4, method=tt.SVDMethod.ACCURATE)), x)
        for method in tt.SVDMethod:
            with monkeypatch.context() as patch:
                if method is tt.SVDMethod.GRAM:
                    patch.setattr(tt, "orthogonalize", no_qr_sweep)
                r = jax.jit(functools.partial(tt.round, max_rank=4, method=method))(s)
            assert r.ranks == (1, 4, 4, 4, 4, 1)
            assert r.dtype == dtype
            np.testing.assert_allclose(rel_err(tt.to_dense(r), x), e_svd, rtol=1e-6)
            for core in r.cores[:-1]:
                m = core.reshape(-1, core.shape[2])
                np.testing.assert_allclose(m.conj().T @ m, np.eye(m.shape[1]), atol=1e-7)

    def test_round_auto_keeps_the_gram_route_only_where_certified(self, monkeypatch):
        # AUTO rounds through the right Gram matrices (no QR sweep) and keeps that result where every truncation is
        # certified as good as an SVD's; otherwise it orthogonalises. The QR sweep is traced either way (lax.cond),
        # so count its runs.
        runs = []
        original = tt.orthogonalize

        def counted(t, center):
            jax.debug.callback(lambda: runs.append(1))
            return original(t, center)

        monkeypatch.setattr(tt, "orthogonalize", counted)
        a, b = rand_tt(1, (4,) * 8, 6), rand_tt(2, (4,) * 8, 6)
        rnd = jax.jit(functools.partial(tt.round, max_rank=5))
        auto = rnd(tt.add(a, b))
        jax.block_until_ready(auto)
        assert not runs  # certified: no QR sweep
        accurate = tt.round(tt.add(a, b), max_rank=5, method=tt.SVDMethod.ACCURATE)
        x = tt.to_dense(tt.add(a, b))
        np.testing.assert_allclose(rel_err(tt.to_dense(auto), x), rel_err(tt.to_dense(accurate), x), rtol=1e-4)
        _, exact = nearly_exact_sum()
        jax.block_until_ready(jax.jit(functools.partial(tt.round, max_rank=6))(tt.add(exact, exact)))
        assert runs  # not certified: the kept singular values go below what the Gram matrices resolve

    def test_gram_round_certificate(self):
        # The certificate of the Gram route: True where the discarded tail is far above the rounding noise of the
        # Gram matrices, False for nearly exact roundings and for t + t to its own rank (nothing discarded); where
        # it is True the result is as accurate as ACCURATE's.
        @functools.partial(jax.jit, static_argnums=1)
        def certified(t, max_rank):
            factors, noise = tt._right_gram_factors(t)
            cores, ok = tt._truncation_sweep(list(t.cores), max_rank, None, tt.SVDMethod.GRAM, factors, noise)
            return ok, TT(cores)

        c = rand_tt(5, (4,) * 10, 8)
        _, exact = nearly_exact_sum()
        for t, max_rank, expected in [
            (tt.add(c, rand_tt(6, (4,) * 10, 8)), 8, True),
            (tt.add(c, c), 4, True),
            (tt.add(c, c), 8, False),
            (tt.add(exact, exact), 6, False),
            (rand_tt(7, (4,) * 10, 8, jnp.complex128), 4, True),
        ]:
            ok, r = certified(t, max_rank)
            ok = bool(ok)
            assert ok == expected, (t.ranks, max_rank)
            if ok:
                ref = tt.round(t, max_rank=max_rank, method=tt.SVDMethod.ACCURATE)
                x = tt.to_dense(t)
                np.testing.assert_allclose(rel_err(tt.to_dense(r), x), rel_err(tt.to_dense(ref), x), rtol=1e-4)

    def test_round_nearly_exact_keeps_float64_accuracy(self):
        # See nearly_exact_sum: the Gram route alone loses the small kept singular values (error ~4e-10); the
        # default must notice and take the SVD.
        x, a = nearly_exact_sum()
        errors = {}
        for method in tt.SVDMethod:
            r = jax.jit(functools.partial(tt.round, max_rank=6, method=method))(tt.add(a, a))
            assert r.ranks == a.ranks
            errors[method] = rel_err(tt.to_dense(r), 2 * x)
        assert errors[tt.SVDMethod.GRAM] > 1e-11  # the case needs the fallback
        assert errors[tt.SVDMethod.AUTO] < 1e-14
        assert errors[tt.SVDMethod.ACCURATE] < 1e-14

    def test_round_auto_under_vmap_decides_per_element(self, monkeypatch):
        # A stack of two TTs with equal ranks: a + a (nearly exact rounding: the Gram route alone errs by ~4e-10,
        # see the test above) and b + c (random, where the Gram route is reliable). Under vmap each element must
        # get the accuracy it gets alone, and the SVD route must not run at all for a stack that does not need it
        # (a batched lax.cond predicate would become a select that runs both routes for every element).
        runs = []
        fallback = _linalg._fallback_left_svd_stack

        def counted(*args):
            jax.debug.callback(lambda: runs.append(1))
            return fallback(*args)

        monkeypatch.setattr(_linalg, "_fallback_left_svd_stack", counted)
        x, a = nearly_exact_sum()
        b, c = (TT([jax.random.normal(jax.random.key(s + k), core.shape, core.dtype) for k, core in enumerate(a.cores)])
                for s in (10, 20))
        stack = jax.tree.map(lambda *cs: jnp.stack(cs), tt.add(a, a), tt.add(b, c))
        rnd = functools.partial(tt.round, max_rank=6)
        batched = jax.jit(jax.vmap(rnd))(stack)
        first, second = (jax.tree.map(lambda leaf, i=i: leaf[i], batched) for i in range(2))
        assert rel_err(tt.to_dense(first), 2 * x) < 1e-14
        alone = jax.jit(rnd)(tt.add(b, c))
        assert rel_err(tt.to_dense(second), tt.to_dense(alone)) < 1e-10
        assert runs  # the fallback ran for a + a
        runs.clear()
        reliable = jax.tree.map(lambda *cs: jnp.stack(cs), tt.add(b, c), tt.add(c, b))
        jax.block_until_ready(jax.jit(jax.vmap(rnd))(reliable))
        assert not runs
        # Nested vmap folds both batch axes into one decision and gives the same results.
        nested = jax.jit(jax.vmap(jax.vmap(rnd)))(jax.tree.map(lambda leaf: jnp.stack([leaf, leaf[::-1]]), stack))
        for i, j, ref in ((0, 0, first), (0, 1, second), (1, 0, second), (1, 1, first)):
            got = jax.tree.map(lambda leaf, i=i, j=j: leaf[i, j], nested)
            assert rel_err(tt.to_dense(got), tt.to_dense(ref)) < 1e-12

    @pytest.mark.parametrize("method, rtol", [(tt.SVDMethod.AUTO, 1e-7), (tt.SVDMethod.GRAM, 1e-6)])
    def test_round_under_vmap_differentiates_like_accurate(self, method, rtol):
        # The rounded dense tensor does not depend on the gauge, so its gradient must not depend on the route
        # (AUTO: Gram truncations where reliable; GRAM: no QR sweep at all).
        stack = jax.tree.map(lambda *cs: jnp.stack(cs), *(rand_tt(s, (3, 4, 3), 3) for s in (5, 6)))

        def loss(method):
            def f(st):
                r = jax.vmap(functools.partial(tt.round, max_rank=2, method=method))(st)
                return jnp.sum(jax.vmap(tt.to_dense)(r) ** 2)

            return f

        g_route = jax.jit(jax.grad(loss(method)))(stack)
        g_acc = jax.jit(jax.grad(loss(tt.SVDMethod.ACCURATE)))(stack)
        for ga, gb in zip(g_route.cores, g_acc.cores):
            np.testing.assert_allclose(ga, gb, rtol=rtol, atol=1e-2 * rtol)
        _, t_route = jax.jvp(loss(method), (stack,), (stack,))
        _, t_acc = jax.jvp(loss(tt.SVDMethod.ACCURATE), (stack,), (stack,))
        np.testing.assert_allclose(t_route, t_acc, rtol=rtol)

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    @pytest.mark.parametrize("center", [0, 1, 3, -1])
    def test_orthogonalize(self, dtype, center):
        t = rand_tt(2, (2, 3, 4, 2), 3, dtype)
        o = tt.orthogonalize(t, center)
        assert rel_err(tt.to_dense(o), tt.to_dense(t)) < 1e-12
        c = center % t.ndim
        for k, core in enumerate(o.cores):
            r, n, r_next = core.shape
            if k < c:
                m = core.reshape(r * n, r_next)
                np.testing.assert_allclose(m.conj().T @ m, np.eye(r_next), atol=1e-12)
            elif k > c:
                m = core.reshape(r, n * r_next)
                np.testing.assert_allclose(m @ m.conj().T, np.eye(r), atol=1e-12)
        assert all(r <= s for r, s in zip(o.ranks, t.ranks))
        if c > 0:  # core 0 was made left-orthonormal: r_1 = 3 > n_1 = 2 shrinks to 2
            assert o.ranks[1] == 2

    def test_round_gram_bonds_larger_than_the_modes_allow_and_exact_sums(self):
        # Bond 8 on modes of size 2 near the right end (the Gram matrix there is singular by shape), and t + t
        # (singular to working precision everywhere): ranks as the SVD route gives them, finite, accurate to
        # about sqrt(eps) at least.
        a = rand_tt(3, (2,) * 6, 8)
        r_gram = tt.round(tt.add(a, a), max_rank=8, method=tt.SVDMethod.GRAM)
        r_acc = tt.round(tt.add(a, a), max_rank=8, method=tt.SVDMethod.ACCURATE)
        assert r_gram.ranks == r_acc.ranks
        assert rel_err(tt.to_dense(r_gram), 2 * tt.to_dense(a)) < 1e-7
        z = tt.round(tt.add(tt.zeros((3, 4, 5)), tt.zeros((3, 4, 5))), max_rank=1, method=tt.SVDMethod.GRAM)
        np.testing.assert_array_equal(tt.to_dense(z), np.zeros((3, 4, 5)))  # zero Gram matrices: zeros, not NaN
        b = rand_tt(4, (3, 4, 5, 4, 3), 4)
        r = tt.round(tt.add(b, b), method=tt.SVDMethod.GRAM)  # no max_rank: nothing to truncate beyond the shape
        assert r.ranks == tt.round(tt.add(b, b), method=tt.SVDMethod.ACCURATE).ranks
        assert rel_err(tt.to_dense(r), 2 * tt.to_dense(b)) < 1e-7

    def test_round_gram_float32(self):
        s = tt.add(rand_tt(7, (4, 4, 4, 4), 3, jnp.float32), rand_tt(8, (4, 4, 4, 4), 3, jnp.float32))
        x = tt.to_dense(s)
        r = tt.round(s, max_rank=4, method=tt.SVDMethod.GRAM)
        r64 = tt.round(jax.tree.map(lambda c: c.astype(jnp.float64), s), max_rank=4, method=tt.SVDMethod.ACCURATE)
        assert r.dtype == jnp.float32
        np.testing.assert_allclose(rel_err(tt.to_dense(r), x), rel_err(tt.to_dense(r64), x), rtol=1e-3)

    def test_round_jit_no_recompile(self):
        f, traces = traced(functools.partial(tt.round, max_rank=2))
        f(rand_tt(0, (3, 4, 3), 3))
        f(rand_tt(1, (3, 4, 3), 3))
        assert traces() == 1

    def test_bad_arguments(self):
        t = rand_tt(0)
        with pytest.raises(ValueError, match="center must be an int in"):
            tt.orthogonalize(t, 3)
        with pytest.raises(ValueError, match="max_rank must be a positive int"):
            tt.round(t, max_rank=-1)
        with pytest.raises(TypeError, match="t must be a tnkit.TT, got ndarray"):
            tt.round(np.ones((2, 2)), max_rank=1)
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(functools.partial(tt.round, rtol=1e-3))(t)
        with pytest.raises(TypeError, match=r"method must be a tnkit.tt.SVDMethod \(AUTO, GRAM, ACCURATE\), got 'gram'"):
            tt.round(t, max_rank=1, method="gram")
        with pytest.raises(TypeError, match="method must be a tnkit.tt.SVDMethod"):
            tt.from_dense(jnp.ones((2, 2)), max_rank=1, method="accurate")


class TestAlgebra:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_add_sub_scale_hadamard(self, dtype):
        a, b = rand_tt(0, dtype=dtype), rand_tt(1, ranks=3, dtype=dtype)
        xa, xb = tt.to_dense(a), tt.to_dense(b)
        tol = 10 * TOL[dtype]
        assert tt.add(a, b).ranks == (1, 5, 5, 1)
        assert rel_err(tt.to_dense(tt.add(a, b)), xa + xb) < tol
        assert rel_err(tt.to_dense(tt.sub(a, b)), xa - xb) < tol
        alpha = 0.5 - 2j if jnp.issubdtype(dtype, jnp.complexfloating) else -1.5
        assert rel_err(tt.to_dense(tt.scale(a, alpha)), alpha * xa) < tol
        assert tt.hadamard(a, b).ranks == (1, 6, 6, 1)
        assert rel_err(tt.to_dense(tt.hadamard(a, b)), xa * xb) < tol

    def test_scale_real_tt_by_complex_promotes(self):
        a = rand_tt(0)
        s = tt.scale(a, 1j)
        assert s.dtype == jnp.complex128
        np.testing.assert_allclose(tt.to_dense(s), 1j * tt.to_dense(a), atol=1e-12)

    def test_add_one_mode(self):
        a, b = rand_tt(0, (4,), 1), rand_tt(1, (4,), 1)
        np.testing.assert_allclose(tt.to_dense(tt.add(a, b)), tt.to_dense(a) + tt.to_dense(b))

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_inner_and_norm(self, dtype):
        a, b = rand_tt(0, dtype=dtype), rand_tt(1, ranks=3, dtype=dtype)
        xa, xb = np.asarray(tt.to_dense(a)), np.asarray(tt.to_dense(b))
        tol = 10 * TOL[dtype]
        np.testing.assert_allclose(tt.inner(a, b), np.vdot(xa, xb), rtol=tol)
        np.testing.assert_allclose(tt.norm(a), np.linalg.norm(xa), rtol=tol)
        assert tt.norm(a).dtype == jnp.finfo(dtype).dtype

    @pytest.mark.parametrize("dtype", [jnp.float64, pytest.param(jnp.complex128, marks=pytest.mark.slow)])
    def test_inner_with_bonds_larger_than_the_modes_allow(self, dtype):
        # Constant bond 8 on modes of size 2 (as in MPS with a fixed bond dimension): inner contracts the boundary
        # cores blockwise; the value must not change.
        a = rand_tt(3, (2,) * 6, 8, dtype)
        b = rand_tt(4, (2,) * 6, (3, 8, 8, 8, 5), dtype)
        np.testing.assert_allclose(tt.inner(a, b), np.vdot(tt.to_dense(a), tt.to_dense(b)), rtol=1e-12)

    def test_norm_of_zero_and_its_gradient(self):
        z = tt.zeros((2, 3))
        assert float(tt.norm(z)) == 0.0
        g = jax.grad(tt.norm)(tt.zeros((2, 3), jnp.float64))
        assert all(bool(jnp.all(jnp.isfinite(c))) for c in g.cores)

    def test_mismatched_dims(self):
        with pytest.raises(ValueError, match=r"a and b must have the same dims, got \(3, 4, 5\) and \(3, 4\)"):
            tt.add(rand_tt(0), rand_tt(1, (3, 4)))
        with pytest.raises(ValueError, match="same dims"):
            tt.inner(rand_tt(0), rand_tt(1, (3, 4)))
        with pytest.raises(ValueError, match="same dims"):
            tt.hadamard(rand_tt(0), rand_tt(1, (3, 4)))
        with pytest.raises(ValueError, match="alpha must be a scalar"):
            tt.scale(rand_tt(0), jnp.ones(2))
        with pytest.raises(TypeError, match="b must be a tnkit.TT"):
            tt.inner(rand_tt(0), jnp.ones((3, 4, 5)))

    def test_kron(self):
        a, b = rand_tt(0, (2, 3)), rand_tt(1, (4,), 1)
        np.testing.assert_allclose(tt.to_dense(tt.kron(a, b)), np.multiply.outer(tt.to_dense(a), tt.to_dense(b)))


class TestEntriesAndContractions:
    def test_get(self):
        t = rand_tt(0)
        x = np.asarray(tt.to_dense(t))
        idx = np.stack(np.unravel_index(np.arange(60), (3, 4, 5)), axis=1)
        np.testing.assert_allclose(tt.get(t, idx), x.ravel(), rtol=1e-12)
        np.testing.assert_allclose(tt.get(t, jnp.array([2, 3, 4])), x[2, 3, 4], rtol=1e-12)
        np.testing.assert_allclose(jax.jit(tt.get)(t, idx), x.ravel(), rtol=1e-12)

    def test_get_errors(self):
        t = rand_tt(0)
        with pytest.raises(ValueError, match=r"index must have shape \(batch, 3\).*got \(4, 2\)"):
            tt.get(t, np.zeros((4, 2), np.int32))
        with pytest.raises(TypeError, match="integer array"):
            tt.get(t, np.zeros((4, 3)))
        with pytest.raises(IndexError, match=r"index\[1, 2\] = 5 is out of range for mode 2 of size 5"):
            tt.get(t, np.array([[0, 0, 0], [0, 0, 5]]))

    def test_mode_product(self):
        t = rand_tt(0)
        m = rand_dense((6, 4), jnp.float64)
        y = tt.mode_product(t, m, 1)
        assert y.dims == (3, 6, 5) and y.ranks == t.ranks
        np.testing.assert_allclose(tt.to_dense(y), np.einsum("ij,ajb->aib", m, tt.to_dense(t)), rtol=1e-12)
        with pytest.raises(ValueError, match=r"matrix must have shape \(m, 4\) to act on mode 1, got shape \(6, 5\)"):
            tt.mode_product(t, jnp.ones((6, 5)), 1)
        with pytest.raises(ValueError, match=r"mode must be an int in \[-3, 3\)"):
            tt.mode_product(t, m, 3)

    def test_contract_modes_and_all(self):
        t = rand_tt(0, (3, 4, 5, 2))
        x = np.asarray(tt.to_dense(t))
        v0, v2 = np.arange(3.0), np.linspace(-1, 1, 5)
        y = tt.contract_modes(t, {0: v0, 2: v2})
        assert y.dims == (4, 2)
        np.testing.assert_allclose(tt.to_dense(y), np.einsum("abcd,a,c->bd", x, v0, v2), rtol=1e-12)
        y = tt.contract_modes(t, {-1: np.ones(2)})
        np.testing.assert_allclose(tt.to_dense(y), x.sum(-1), rtol=1e-12)
        vs = [np.arange(3.0), np.ones(4), v2, np.array([1.0, -1.0])]
        np.testing.assert_allclose(tt.contract_all(t, vs), np.einsum("abcd,a,b,c,d->", x, *vs), rtol=1e-12)
        with pytest.raises(ValueError, match="covers every mode"):
            tt.contract_modes(t, dict(enumerate(vs)))
        with pytest.raises(ValueError, match=r"vectors\[0\] must have shape \(3,\)"):
            tt.contract_modes(t, {0: np.ones(4)})
        with pytest.raises(ValueError, match="one vector per mode"):
            tt.contract_all(t, vs[:2])

    def test_sum(self):
        t = rand_tt(0, (3, 4, 5))
        x = np.asarray(tt.to_dense(t))
        np.testing.assert_allclose(tt.sum(t), x.sum(), rtol=1e-12)
        np.testing.assert_allclose(tt.to_dense(tt.sum(t, modes=(0, 2))), x.sum((0, 2)), rtol=1e-12)
        with pytest.raises(ValueError, match="modes=None"):
            tt.sum(t, modes=(0, 1, 2))


class TestCreation:
    def test_random_ranks_forms(self):
        assert tt.random(jax.random.key(0), (2, 3, 4), 3).ranks == (1, 3, 3, 1)
        assert tt.random(jax.random.key(0), (2, 3, 4), (2, 5)).ranks == (1, 2, 5, 1)
        assert tt.random(jax.random.key(0), (2, 3, 4), (1, 2, 5, 1)).ranks == (1, 2, 5, 1)
        with pytest.raises(ValueError, match="ranks must be an int, 2 inner ranks, or 4 ranks"):
            tt.random(jax.random.key(0), (2, 3, 4), (1, 2, 3))
        with pytest.raises(ValueError, match="boundary ranks must be 1"):
            tt.random(jax.random.key(0), (2, 3, 4), (2, 2, 2, 1))
        with pytest.raises(ValueError, match="dims must be a non-empty sequence of positive ints"):
            tt.random(jax.random.key(0), (2, 0), 2)
        with pytest.raises(TypeError, match="dtype must be floating or complex"):
            tt.random(jax.random.key(0), (2, 3), 2, dtype=jnp.int32)

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_random_is_normalised_in_expectation(self, dtype):
        keys = jax.random.split(jax.random.key(0), 400)
        norms2 = jax.vmap(lambda k: tt.norm(tt.random(k, (3, 4, 5), 3, dtype)) ** 2)(keys)
        mean, sem = float(norms2.mean()), float(norms2.std() / np.sqrt(len(norms2)))
        assert abs(mean - 1.0) < 4 * sem

    def test_zeros_ones(self):
        np.testing.assert_array_equal(tt.to_dense(tt.zeros((2, 3))), np.zeros((2, 3)))
        np.testing.assert_array_equal(tt.to_dense(tt.ones((2, 3), jnp.float64)), np.ones((2, 3)))
        assert tt.ones((2,), jnp.complex64).dtype == jnp.complex64


class TestGradients:
    def test_check_grads_inner_norm_get(self):
        a, b = rand_tt(0, (2, 3, 2)), rand_tt(1, (2, 3, 2))
        check_grads(lambda a, b: tt.inner(a, b), (a, b), order=1, modes=["fwd", "rev"])
        check_grads(tt.norm, (a,), order=1, modes=["fwd", "rev"])
        idx = jnp.array([[0, 1, 1], [1, 2, 0]])
        check_grads(lambda a: tt.get(a, idx), (a,), order=1, modes=["fwd", "rev"])

    def test_check_grads_complex_inner(self):
        a, b = rand_tt(0, (2, 3, 2), dtype=jnp.complex128), rand_tt(1, (2, 3, 2), dtype=jnp.complex128)
        check_grads(lambda a, b: tt.inner(a, b), (a, b), order=1, modes=["fwd", "rev"])
        check_grads(tt.norm, (a,), order=1, modes=["rev"])

    def test_check_grads_from_dense_and_round(self):
        x = jnp.asarray(graded_tensor((3, 4, 3), decay=0.6))
        f = lambda x: tt.to_dense(tt.from_dense(x, max_rank=2))  # noqa: E731
        check_grads(f, (x,), order=1, modes=["fwd", "rev"])
        t = tt.from_dense(x)
        g = lambda t: tt.to_dense(tt.round(t, max_rank=2))  # noqa: E731
        check_grads(g, (t,), order=1, modes=["fwd", "rev"])

    def test_from_dense_gradient_at_full_rank_is_identity(self):
        x = rand_dense((3, 4, 5), jnp.float64)
        g = jax.grad(lambda x: jnp.sum(jnp.sin(tt.to_dense(tt.from_dense(x)))))(x)
        np.testing.assert_allclose(g, jnp.cos(x), atol=1e-12)

    @pytest.mark.parametrize(
        "x",
        [
            np.ones((3, 3, 3)),  # rank one: zero singular values
            np.eye(4).reshape(2, 2, 2, 2),  # repeated singular values
            np.zeros((2, 3, 2)),  # all zero
        ],
        ids=["rank-one", "repeated", "zero"],
    )
    @pytest.mark.parametrize("max_rank", [1, None])
    def test_gradients_finite_at_degenerate_spectra(self, x, max_rank):
        x = jnp.asarray(x)
        g = jax.grad(lambda x: jnp.sum(tt.to_dense(tt.from_dense(x, max_rank=max_rank)) ** 2))(x)
        assert bool(jnp.all(jnp.isfinite(g)))
        t = tt.from_dense(x)
        g = jax.grad(lambda t: jnp.sum(tt.to_dense(tt.round(tt.add(t, t), max_rank=max_rank)) ** 2))(t)
        assert all(bool(jnp.all(jnp.isfinite(c))) for c in g.cores)

    def test_round_gradient_is_exact_on_rank_deficient_sum(self):
        # round(a + a) at a rank >= rank(a) is exactly 2a although every unfolding of a + a is rank deficient.
        a = rand_tt(0, (3, 4, 3), 2)
        g = jax.grad(lambda a: jnp.sum(tt.to_dense(tt.round(tt.add(a, a), max_rank=3)) ** 2))(a)
        ref = jax.grad(lambda a: 4 * jnp.sum(tt.to_dense(a) ** 2))(a)
        for c, r in zip(g.cores, ref.cores):
            np.testing.assert_allclose(c, r, atol=1e-10)


def test_jitted_functions_do_not_recompile():
    inner, inner_traces = traced(tt.inner)
    from_dense, from_dense_traces = traced(functools.partial(tt.from_dense, max_rank=2))
    for seed in range(3):
        a, b = rand_tt(seed), rand_tt(seed + 10)
        inner(a, b)
        from_dense(rand_dense((3, 4, 5), jnp.float64, seed))
    assert inner_traces() == 1
    assert from_dense_traces() == 1


def test_tt_constructor_under_vmap():
    cores = [jnp.ones((4, 1, 2, 2)), jnp.ones((4, 2, 3, 1))]
    batch = jax.vmap(lambda c0, c1: TT([c0, c1]))(*cores)
    assert batch.batch_shape == (4,) and batch.ranks == (1, 2, 1)
