"""tnkit.tr against dense NumPy references and TensorLy's tensor ring."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorly as tl
from jax.test_util import check_grads
from tensorly.decomposition import tensor_ring, tensor_train

from tests.helpers import graded_tensor, rel_err, traced
from tnkit import TR, TT, tr, tt

DTYPES = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128]
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-12, jnp.complex64: 2e-5, jnp.complex128: 1e-12}


def rand_tr(seed, dims=(3, 4, 5), ranks=(2, 3, 4), dtype=jnp.float64):
    """A TR with standard normal cores drawn by NumPy (cheaper than compiling jax.random for every shape)."""
    rng = np.random.default_rng(seed)
    d = len(dims)
    ranks = (ranks,) * d if isinstance(ranks, int) else tuple(ranks)
    ranks = ranks[:d] + ranks[:1]
    cores = []
    for k, n in enumerate(dims):
        shape = (ranks[k], n, ranks[k + 1])
        c = rng.standard_normal(shape)
        if np.issubdtype(np.dtype(dtype), np.complexfloating):
            c = c + 1j * rng.standard_normal(shape)
        cores.append(jnp.asarray(c / np.sqrt(n * ranks[k + 1]), dtype))
    return TR(cores)


def rand_dense(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return jnp.asarray(x, dtype)


def dense_ref(t):
    """NumPy reference: x[i] = trace(G_1[:, i_1, :] ... G_d[:, i_d, :]), by an explicit loop over all entries."""
    cores = [np.asarray(c) for c in t.cores]
    out = np.zeros(t.dims, dtype=cores[0].dtype)
    for idx in np.ndindex(*t.dims):
        m = np.eye(cores[0].shape[0], dtype=cores[0].dtype)
        for c, i in zip(cores, idx):
            m = m @ c[:, i, :]
        out[idx] = np.trace(m)
    return out


# Shared jitted entry points: one compilation per shape and dtype is much cheaper than running the same functions
# eagerly (which compiles every primitive separately). rtol paths stay eager: they choose ranks from the data.
to_dense = jax.jit(tr.to_dense)
tt_to_dense = jax.jit(tt.to_dense)


@functools.partial(jax.jit, static_argnames=("ranks", "max_rank"))
def from_dense(x, ranks=None, max_rank=None):
    return tr.from_dense(x, ranks=ranks, max_rank=max_rank)


@jax.jit
def algebra(a, b, alpha):
    return {
        "add": tr.to_dense(tr.add(a, b)),
        "sub": tr.to_dense(tr.sub(a, b)),
        "scale": tr.to_dense(tr.scale(a, alpha)),
        "hadamard": tr.to_dense(tr.hadamard(a, b)),
        "inner_ab": tr.inner(a, b),
        "inner_ba": tr.inner(b, a),
        "norm": tr.norm(a),
    }


def tensorly_tr_error(x, ranks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rel_err(tl.tr_to_tensor(tensor_ring(np.asarray(x), rank=list(ranks))), x)


class TestDense:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_to_dense_is_the_trace_formula(self, dtype):
        t = rand_tr(0, ranks=(3, 2, 4), dtype=dtype)  # smallest bond is r_1: to_dense cuts the ring there
        assert rel_err(to_dense(t), dense_ref(t)) < 10 * TOL[dtype]

    def test_to_dense_one_and_two_modes(self):
        for dims, ranks in [((4,), 3), ((3, 5), (2, 3))]:
            t = rand_tr(1, dims, ranks)
            np.testing.assert_allclose(to_dense(t), dense_ref(t), rtol=1e-12)

    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex128])
    def test_full_rank_roundtrip_is_exact(self, dtype):
        x = rand_dense((4, 3, 5), dtype)
        t = from_dense(x)
        # p = min(4, 15) = 4 = 2 * 2; then r_2 = min(2 * 3, 5 * 2) = 6; the last core closes on r_0 = 2.
        assert t.ranks == (2, 2, 6, 2) and t.dtype == dtype
        assert rel_err(to_dense(t), x) < 10 * TOL[dtype]

    def test_one_and_two_modes(self):
        x = jnp.arange(1.0, 4.0)
        t = tr.from_dense(x)
        assert t.ranks == (1, 1)
        np.testing.assert_allclose(tr.to_dense(t), x)
        y = rand_dense((6, 5), jnp.float64)
        t = from_dense(y, ranks=(2, 2))
        assert t.ranks == (2, 2, 2)
        # d = 2: one truncation of the unfolding at rank r_0 r_1 = 4: the Eckart-Young error.
        s = np.linalg.svd(np.asarray(y), compute_uv=False)
        np.testing.assert_allclose(np.linalg.norm(to_dense(t) - y), np.sqrt(np.sum(s[4:] ** 2)), rtol=1e-10)

    def test_rtol_bound_and_ranks_shrink_with_the_tolerance(self):
        x = jnp.asarray(graded_tensor((6, 5, 7), decay=0.4))
        sizes = []
        for rtol in (1e-10, 1e-2):
            t = tr.from_dense(x, rtol=rtol)
            assert rel_err(to_dense(t), x) <= rtol
            sizes.append(t.num_params)
        assert sizes[0] > sizes[1]

    @pytest.mark.parametrize(
        "dims, ranks",
        [((6, 5, 4, 5), (1, 3, 3, 3, 1)), ((6, 5, 4, 5, 3), (2, 2, 4, 4, 4, 2))],
    )
    def test_matches_tensorly_tensor_ring(self, dims, ranks):
        # Same algorithm, same ring split of the first singular vectors (row-major, signs as TensorLy's svd_flip):
        # the errors agree to rounding, also for genuine rings (r_0 = 2).
        x = graded_tensor(dims, decay=0.6, seed=1)
        t = from_dense(jnp.asarray(x), ranks=ranks)
        assert t.ranks == ranks
        err, err_tl = rel_err(to_dense(t), x), tensorly_tr_error(x, ranks)
        assert 1e-3 < err_tl < 0.5  # a real truncation
        np.testing.assert_allclose(err, err_tl, rtol=1e-8)

    def test_matches_tensorly_complex(self):
        x = graded_tensor((6, 5, 4, 5), decay=0.6, seed=2, dtype=np.complex128)
        ranks = (2, 3, 5, 5, 2)
        t = from_dense(jnp.asarray(x), ranks=ranks)
        np.testing.assert_allclose(rel_err(to_dense(t), x), tensorly_tr_error(x, ranks), rtol=1e-8)

    def test_max_rank_splits_the_first_rank(self):
        def ranks(max_rank, shape=(8, 4, 4)):  # ranks are static: tracing alone gives them
            x = jax.ShapeDtypeStruct(shape, jnp.float64)
            return jax.eval_shape(functools.partial(tr.from_dense, max_rank=max_rank), x).ranks

        # p = min(8, 16, 3**2) = 8 has no pair r_0 <= r_1 <= 3; 7 neither; 6 = 2 * 3 does.
        assert ranks(3) == (2, 3, 3, 2)
        assert ranks(4) == (2, 4, 4, 2)
        assert ranks(1) == (1, 1, 1, 1)
        assert ranks(None) == (2, 4, 8, 2)  # no truncation: p = 8 = 2 * 4, then r_2 = min(4 * 4, 4 * 2) = 8
        assert ranks(8, (8,) * 7) == (2, 4, 8, 8, 8, 8, 8, 2)  # the benchmark's ring

    def test_rtol_complex_with_prime_first_rank_gives_a_train(self):
        # A tensor whose first unfolding has rank exactly 3 (a prime): the paper's split is r_0 * r_1 = 1 * 3.
        u, v = rand_dense((6, 3), jnp.complex128, seed=1), rand_dense((3, 5, 4), jnp.complex128, seed=2)
        x = jnp.einsum("ia,ajk->ijk", u, v)
        t = tr.from_dense(x, rtol=1e-10)
        assert t.ranks[:2] == (1, 3)
        assert rel_err(to_dense(t), x) <= 1e-10

    def test_fixed_ranks_are_jittable_and_rtol_is_not(self):
        x = rand_dense((4, 3, 5), jnp.float64)
        f, traces = traced(functools.partial(tr.from_dense, ranks=(2, 2, 3)))
        assert f(x).ranks == (2, 2, 3, 2)
        f(rand_dense((4, 3, 5), jnp.float64, seed=1))
        assert traces() == 1
        g = jax.jit(functools.partial(tr.from_dense, max_rank=2))
        assert g(x).ranks == (2, 2, 2, 2)
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(functools.partial(tr.from_dense, rtol=1e-3))(x)

    def test_gradient_of_from_dense(self):
        x = jnp.asarray(graded_tensor((4, 3, 4), decay=0.6))
        f = jax.jit(lambda x: tr.to_dense(tr.from_dense(x, ranks=(2, 2, 2))))
        check_grads(f, (x,), order=1, modes=["rev"])

    @pytest.mark.parametrize(
        "kwargs, err, match",
        [
            ({"ranks": (2, 2)}, ValueError, r"ranks must be an int, 3 ranks .* got 2 values"),
            ({"ranks": (2, 2, 2, 3)}, ValueError, r"close the ring .* 2 != 3"),
            ({"ranks": (2, 3, 2)}, ValueError, r"ranks\[0\] \* ranks\[1\] = 2 \* 3 = 6 must be at most 4"),
            ({"ranks": (2, 0, 2)}, ValueError, "ranks must be positive"),
            ({"ranks": (2.0, 2, 2)}, TypeError, "ranks must hold ints"),
            ({"ranks": 2, "max_rank": 2}, ValueError, "pass ranks alone"),
            ({"ranks": 2, "rtol": 0.1}, ValueError, "pass ranks alone"),
            ({"max_rank": 0}, ValueError, "max_rank must be a positive int"),
            ({"rtol": -1.0}, ValueError, "rtol must be a non-negative"),
        ],
    )
    def test_bad_arguments(self, kwargs, err, match):
        with pytest.raises(err, match=match):
            tr.from_dense(jnp.ones((4, 3, 5)), **kwargs)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="at least one axis"):
            tr.from_dense(jnp.float64(1.0))
        with pytest.raises(TypeError, match="floating or complex dtype, got int"):
            tr.from_dense(jnp.ones((2, 2), jnp.int32))
        with pytest.raises(ValueError, match=r"one-mode tensor ring .* ranks \(1, 1\)"):
            tr.from_dense(jnp.ones(3), ranks=2)


# One compiled ALS per (shape, dtype, num_iters): the tests share these sizes.
ALS_DIMS, ALS_RANKS, ALS_ITERS = (6, 5, 4), 2, 80


class TestALS:
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_recovers_a_low_rank_ring(self, dtype):
        x = to_dense(rand_tr(8, ALS_DIMS, ALS_RANKS, dtype))
        fit, info = tr.als(x, ALS_RANKS, key=jax.random.key(1), num_iters=ALS_ITERS, tol=0.0)
        assert fit.ranks == (2,) * 4 and fit.dtype == dtype
        e = np.asarray(info.errors)
        assert e[-1] < 1e-10
        assert rel_err(to_dense(fit), x) < 1e-10  # the reported error is the true one
        # Every core update is an exact least-squares solve: the error does not rise (up to rounding).
        assert np.all(np.diff(e) <= 1e-12)

    def test_starts_from_tr_svd_and_never_gets_worse(self):
        x = jnp.asarray(graded_tensor(ALS_DIMS, decay=0.7, seed=3))
        fit, info = tr.als(x, ALS_RANKS, num_iters=ALS_ITERS, tol=0.0)
        e_svd = rel_err(to_dense(from_dense(x, ranks=ALS_RANKS)), x)
        e = np.asarray(info.errors)
        assert e[0] <= e_svd and e[-1] < 0.9 * e_svd
        assert np.all(np.diff(e) <= 1e-12)
        # Warm start from the result: the first sweep is no worse than where it left off.
        _, again = tr.als(x, ALS_RANKS, init=fit, num_iters=ALS_ITERS, tol=0.0)
        assert float(again.errors[0]) <= e[-1] + 1e-12

    def test_stopping_rule(self):
        x = jnp.asarray(graded_tensor(ALS_DIMS, decay=0.7, seed=3))
        _, info = tr.als(x, ALS_RANKS, num_iters=ALS_ITERS, tol=1e-2)
        n = int(info.iterations)
        e = np.asarray(info.errors)
        assert 2 <= n < ALS_ITERS and bool(info.converged)
        assert e[n - 2] - e[n - 1] < 1e-2  # the rule that stopped it
        assert np.all(e[n:] == e[n - 1])  # the tail repeats the last error

    def test_jit_and_vmap(self):
        # Rings of ranks 3 fitted at ranks 2, from the TR-SVD start.
        xs = jnp.stack([to_dense(rand_tr(s, (4, 4, 4), 3)) for s in range(3)])
        f = jax.jit(jax.vmap(functools.partial(tr.als, ranks=(2, 2, 2), num_iters=6, tol=0.0)))
        fits, info = f(xs)
        assert fits.batch_shape == (3,) and info.errors.shape == (3, 6)
        assert info.iterations.shape == (3,)
        dense = jax.vmap(tr.to_dense)(fits)
        for b in range(3):
            e = np.asarray(info.errors[b])
            np.testing.assert_allclose(e[-1], rel_err(dense[b], xs[b]), rtol=1e-6)  # each member's true error
            assert np.all(np.diff(e) <= 1e-12) and e[-1] < e[0]

    def test_bad_arguments(self):
        x = jnp.ones((4, 3, 5))
        with pytest.raises(ValueError, match="at most one of init"):
            tr.als(x, 2, key=jax.random.key(0), init=rand_tr(0, (4, 3, 5), 2))
        with pytest.raises(ValueError, match=r"init must have dims \(4, 3, 5\), ranks \(2, 2, 2, 2\)"):
            tr.als(x, 2, init=rand_tr(0, (4, 3, 5), 3))
        with pytest.raises(ValueError, match=r"ranks \(3, 3, 3, 3\) cannot be reached by a TR-SVD start.*pass key="):
            tr.als(x, 3)
        with pytest.raises(ValueError, match="num_iters must be a positive int"):
            tr.als(x, 2, num_iters=0)
        with pytest.raises(ValueError, match="tol must be a non-negative"):
            tr.als(x, 2, tol=-1.0)
        with pytest.raises(ValueError, match="at least two axes"):
            tr.als(jnp.ones(4), 1)
        with pytest.raises(ValueError, match="close the ring"):
            tr.als(x, (1, 2, 2, 2))


class TestAlgebra:
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex64])
    def test_against_dense(self, dtype):
        a, b = rand_tr(0, dtype=dtype), rand_tr(1, ranks=(1, 3, 2), dtype=dtype)
        xa, xb = dense_ref(a), dense_ref(b)
        tol = 10 * TOL[dtype]
        alpha = 0.5 - 2j if jnp.issubdtype(dtype, jnp.complexfloating) else -1.5
        out = algebra(a, b, alpha)
        assert rel_err(out["add"], xa + xb) < tol
        assert rel_err(out["sub"], xa - xb) < tol
        assert rel_err(out["scale"], alpha * xa) < tol
        assert rel_err(out["hadamard"], xa * xb) < tol
        np.testing.assert_allclose(out["inner_ab"], np.vdot(xa, xb), rtol=tol)
        np.testing.assert_allclose(out["inner_ba"], np.vdot(xb, xa), rtol=tol)
        np.testing.assert_allclose(out["norm"], np.linalg.norm(xa), rtol=tol)
        assert out["norm"].dtype == jnp.finfo(dtype).dtype

    def test_ranks(self):
        a, b = rand_tr(0), rand_tr(1, ranks=(1, 3, 2))  # ranks (2, 3, 4, 2) and (1, 3, 2, 1)
        assert jax.eval_shape(tr.add, a, b).ranks == (3, 6, 6, 3)
        assert jax.eval_shape(tr.hadamard, a, b).ranks == (2, 9, 8, 2)

    def test_operators_forward_to_tr(self):
        a, b = rand_tr(0), rand_tr(1, ranks=2)
        xa, xb = dense_ref(a), dense_ref(b)
        out = jax.jit(lambda a, b: [tr.to_dense(y) for y in (a + b, -a, a * b, 2.0 * a)])(a, b)
        for y, ref in zip(out, [xa + xb, -xa, xa * xb, 2 * xa]):
            np.testing.assert_allclose(y, ref, rtol=1e-12)

    def test_scale_real_by_complex_promotes(self):
        s = tr.scale(rand_tr(0), 1j)
        assert s.dtype == jnp.complex128
        np.testing.assert_allclose(to_dense(s), 1j * dense_ref(rand_tr(0)), atol=1e-12)

    def test_inner_one_and_two_modes(self):
        for dims in [(4,), (3, 5)]:
            a, b = rand_tr(0, dims, 2), rand_tr(1, dims, 3)
            np.testing.assert_allclose(jax.jit(tr.inner)(a, b), np.vdot(dense_ref(a), dense_ref(b)), rtol=1e-12)

    def test_norm_of_zero_and_its_gradient(self):
        z = TR([jnp.zeros((2, 3, 2)), jnp.zeros((2, 4, 2))])
        assert float(jax.jit(tr.norm)(z)) == 0.0
        g = jax.jit(jax.grad(tr.norm))(z)
        assert all(bool(jnp.all(jnp.isfinite(c))) for c in g.cores)

    def test_mismatched_and_bad_inputs(self):
        with pytest.raises(ValueError, match=r"a and b must have the same dims, got \(3, 4, 5\) and \(3, 4\)"):
            tr.add(rand_tr(0), rand_tr(1, (3, 4), 2))
        with pytest.raises(ValueError, match="same dims"):
            tr.inner(rand_tr(0), rand_tr(1, (3, 4), 2))
        with pytest.raises(ValueError, match="same dims"):
            tr.hadamard(rand_tr(0), rand_tr(1, (3, 4), 2))
        with pytest.raises(ValueError, match="alpha must be a scalar"):
            tr.scale(rand_tr(0), jnp.ones(2))
        with pytest.raises(TypeError, match="b must be a tnkit.TR, got TT"):
            tr.inner(rand_tr(0), TT(rand_tr(1, ranks=(1, 2, 2)).cores))
        with pytest.raises(TypeError, match="t must be a tnkit.TR, got ndarray"):
            tr.to_dense(np.ones((2, 2)))


class TestEntries:
    def test_get(self):
        t = rand_tr(0)
        x = dense_ref(t)
        idx = np.stack(np.unravel_index(np.arange(60), (3, 4, 5)), axis=1)
        np.testing.assert_allclose(jax.jit(tr.get)(t, idx), x.ravel(), rtol=1e-12)
        np.testing.assert_allclose(tr.get(t, np.array([2, 3, 4])), x[2, 3, 4], rtol=1e-12)

    def test_get_errors(self):
        t = rand_tr(0)
        with pytest.raises(ValueError, match=r"index must have shape \(batch, 3\).*got \(4, 2\)"):
            tr.get(t, np.zeros((4, 2), np.int32))
        with pytest.raises(TypeError, match="integer array"):
            tr.get(t, np.zeros((4, 3)))
        with pytest.raises(IndexError, match=r"index\[1, 2\] = 5 is out of range for mode 2 of size 5"):
            tr.get(t, np.array([[0, 0, 0], [0, 0, 5]]))


class TestConversionsAndRound:
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_to_tt_and_from_tt_are_exact(self, dtype):
        t = rand_tr(0, ranks=(3, 2, 4), dtype=dtype)
        train = jax.jit(tr.to_tt)(t)
        assert isinstance(train, TT) and train.ranks == (1, 6, 12, 1)
        np.testing.assert_allclose(tt_to_dense(train), dense_ref(t), rtol=1e-12)
        s = TT(rand_tr(1, (3, 4, 5), (1, 2, 2), dtype).cores)
        ring = tr.from_tt(s)
        assert isinstance(ring, TR) and ring.ranks == (1, 2, 2, 1)
        np.testing.assert_allclose(dense_ref(ring), tt.to_dense(s), rtol=1e-12)
        one = rand_tr(2, (4,), 3, dtype)
        np.testing.assert_allclose(tt_to_dense(tr.to_tt(one)), dense_ref(one), rtol=1e-12)

    def test_round_of_sum_of_trains_recovers_ranks(self):
        a = rand_tr(0, (3, 4, 4, 3), (1, 2, 2, 2))
        s = tr.add(a, a)
        assert s.ranks == (2, 4, 4, 4, 2)
        r = jax.jit(functools.partial(tr.round, max_rank=2))(s)
        assert r.ranks == (1, 2, 2, 2, 1)
        assert rel_err(to_dense(r), 2 * dense_ref(a)) < 1e-10

    def test_round_rtol_bound_on_a_genuine_ring(self):
        t = rand_tr(3, (4, 5, 4), 3)
        r = tr.round(t, rtol=1e-3)
        assert rel_err(to_dense(r), dense_ref(t)) <= 1e-3
        assert r.ranks[0] == 1 and all(k <= 9 for k in r.ranks)  # TT ranks, at most r_k r_0

    def test_round_max_rank_is_quasi_optimal_like_tensorly_tt_svd(self):
        t = rand_tr(4, (4, 5, 4, 5), (2, 3, 3, 2))
        x = dense_ref(t)
        r = jax.jit(functools.partial(tr.round, max_rank=3))(t)
        assert r.ranks == (1, 3, 3, 3, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            err_tl = rel_err(tl.tt_to_tensor(tensor_train(x, rank=[1, 3, 3, 3, 1])), x)
        # TT-rounding of the exact TT form is TT-SVD in exact arithmetic.
        np.testing.assert_allclose(rel_err(to_dense(r), x), err_tl, rtol=1e-6)

    def test_round_bad_arguments(self):
        with pytest.raises(ValueError, match="max_rank must be a positive int"):
            tr.round(rand_tr(0), max_rank=0)
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(functools.partial(tr.round, rtol=1e-3))(rand_tr(0))
        with pytest.raises(TypeError, match="t must be a tnkit.TT"):
            tr.from_tt(rand_tr(0))


class TestCreation:
    def test_random_ranks_forms(self):
        key = jax.random.key(0)
        shapes = lambda ranks: jax.eval_shape(lambda k: tr.random(k, (2, 3, 4), ranks), key)  # noqa: E731
        assert shapes(3).ranks == (3, 3, 3, 3)
        assert shapes((2, 5, 4)).ranks == (2, 5, 4, 2)
        assert shapes((2, 5, 4, 2)).ranks == (2, 5, 4, 2)
        with pytest.raises(ValueError, match=r"ranks must be an int, 3 ranks \(r_0, ..., r_2\) or 4 ranks"):
            tr.random(key, (2, 3, 4), (1, 2))
        with pytest.raises(ValueError, match="close the ring"):
            tr.random(key, (2, 3, 4), (2, 2, 2, 1))
        with pytest.raises(ValueError, match="ranks must be positive"):
            tr.random(key, (2, 3, 4), 0)
        with pytest.raises(ValueError, match="dims must be a non-empty sequence of positive ints"):
            tr.random(key, (2, 0), 2)
        with pytest.raises(TypeError, match="dtype must be floating or complex"):
            tr.random(key, (2, 3), 2, dtype=jnp.int32)

    def test_random_is_normalised_in_expectation_and_vmaps(self):
        keys = jax.random.split(jax.random.key(0), 400)
        batch = jax.vmap(lambda k: tr.random(k, (3, 4), (2, 3), jnp.complex64))
        assert jax.eval_shape(batch, keys).batch_shape == (400,)
        norms2 = jax.jit(lambda keys: jax.vmap(tr.norm)(batch(keys)) ** 2)(keys)
        mean, sem = float(norms2.mean()), float(norms2.std() / np.sqrt(len(norms2)))
        assert abs(mean - 1.0) < 4 * sem


class TestGradients:
    def test_check_grads_inner(self):
        a, b = rand_tr(0, (2, 3, 2), 2), rand_tr(1, (2, 3, 2), (1, 2, 3))
        check_grads(jax.jit(tr.inner), (a, b), order=1, modes=["rev"])

    def test_check_grads_complex(self):
        a = rand_tr(0, (2, 3, 2), 2, jnp.complex128)
        b = rand_tr(1, (2, 3, 2), 2, jnp.complex128)
        check_grads(jax.jit(tr.inner), (a, b), order=1, modes=["fwd"])
        check_grads(to_dense, (a,), order=1, modes=["rev"])
