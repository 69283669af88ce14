"""TT and TTMatrix: construction, validation, properties, pytree behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tnkit import CP, TR, TT, TTMatrix, Tucker, tt, ttm


def _cores(ranks, dims, dtype=jnp.float64):
    return [jnp.ones((ranks[k], n, ranks[k + 1]), dtype) for k, n in enumerate(dims)]


class TestTT:
    def test_properties(self):
        t = TT(_cores((1, 2, 3, 1), (4, 5, 6)))
        assert t.dims == t.shape == (4, 5, 6)
        assert t.ranks == (1, 2, 3, 1)
        assert t.ndim == 3
        assert t.num_params == 1 * 4 * 2 + 2 * 5 * 3 + 3 * 6 * 1
        assert t.dtype == jnp.float64
        assert t.batch_shape == ()
        assert repr(t) == "TT(dims=(4, 5, 6), ranks=(1, 2, 3, 1), dtype=float64)"

    def test_accepts_numpy_cores(self):
        t = TT([np.ones((1, 2, 1), np.float32)])
        assert isinstance(t.cores[0], jax.Array) and t.dtype == jnp.float32

    @pytest.mark.parametrize(
        "cores, match",
        [
            ([jnp.ones((1, 2))], r"cores\[0\] has shape \(1, 2\): expected a 3-D core"),
            ([jnp.ones((2, 2, 1))], r"cores\[0\] has shape \(2, 2, 1\): expected left rank 1"),
            ([jnp.ones((1, 2, 1)), jnp.ones((1, 2, 3))], r"cores\[1\] has shape \(1, 2, 3\): expected right rank 1"),
            (
                [jnp.ones((1, 2, 3)), jnp.ones((2, 2, 1))],
                r"cores\[1\] has shape \(2, 2, 1\): expected shape \(3, 2, 1\).*right rank 3 of cores\[0\]",
            ),
            ([], "at least one core"),
        ],
    )
    def test_validation_errors(self, cores, match):
        with pytest.raises(ValueError, match=match):
            TT(cores)

    def test_dtype_errors(self):
        with pytest.raises(TypeError, match="share one dtype"):
            TT([jnp.ones((1, 2, 1), jnp.float32), jnp.ones((1, 2, 1), jnp.float64)])
        with pytest.raises(TypeError, match=r"cores\[0\] has dtype int32"):
            TT([jnp.ones((1, 2, 1), jnp.int32)])
        with pytest.raises(TypeError, match="single array"):
            TT(jnp.ones((1, 2, 1)))

    def test_immutable(self):
        t = TT(_cores((1, 1), (2,)))
        with pytest.raises(AttributeError, match="immutable"):
            t.cores = ()

    def test_pytree_roundtrip_and_tree_map(self):
        t = TT(_cores((1, 2, 1), (3, 4)))
        leaves, treedef = jax.tree_util.tree_flatten(t)
        assert len(leaves) == 2
        t2 = jax.tree_util.tree_unflatten(treedef, leaves)
        assert isinstance(t2, TT) and t2.ranks == t.ranks
        doubled = jax.tree_util.tree_map(lambda c: 2 * c, t)
        np.testing.assert_allclose(tt.to_dense(doubled), 4 * tt.to_dense(t))  # both cores doubled

    def test_jit_and_grad_pass_through(self):
        t = tt.random(jax.random.key(0), (3, 4), 2, dtype=jnp.float64)
        out = jax.jit(lambda s: s)(t)
        assert isinstance(out, TT) and out.ranks == t.ranks
        g = jax.grad(lambda s: jnp.sum(tt.to_dense(s) ** 2))(t)
        assert isinstance(g, TT)
        # d/dG1 sum(x^2) where x = G1 G2 is 2 x G2^T; check one core against the dense formula.
        x = tt.to_dense(t)
        g0 = 2 * jnp.einsum("ij,aj->ia", x, t.cores[1][:, :, 0])[None]
        np.testing.assert_allclose(g.cores[0], g0, rtol=1e-12)

    def test_vmap_batch(self):
        keys = jax.random.split(jax.random.key(0), 4)
        batch = jax.vmap(lambda k: tt.random(k, (2, 3, 4), 2, dtype=jnp.float64))(keys)
        assert batch.batch_shape == (4,)
        assert batch.dims == (2, 3, 4) and batch.ranks == (1, 2, 2, 1)
        norms = jax.vmap(tt.norm)(batch)
        for i in range(4):
            member = jax.tree_util.tree_map(lambda c, i=i: c[i], batch)
            np.testing.assert_allclose(norms[i], jnp.linalg.norm(tt.to_dense(member)), rtol=1e-12)

    def test_operators(self):
        a = tt.random(jax.random.key(0), (2, 3), 2, dtype=jnp.float64)
        b = tt.random(jax.random.key(1), (2, 3), 2, dtype=jnp.float64)
        xa, xb = tt.to_dense(a), tt.to_dense(b)
        np.testing.assert_allclose(tt.to_dense(a + b), xa + xb, atol=1e-12)
        np.testing.assert_allclose(tt.to_dense(a - b), xa - xb, atol=1e-12)
        np.testing.assert_allclose(tt.to_dense(-a), -xa, atol=1e-12)
        np.testing.assert_allclose(tt.to_dense(a * b), xa * xb, atol=1e-12)
        np.testing.assert_allclose(tt.to_dense(2.5 * a), 2.5 * xa, atol=1e-12)
        np.testing.assert_allclose(tt.to_dense(a * 2.5), 2.5 * xa, atol=1e-12)
        with pytest.raises(TypeError):
            _ = a + 1.0


class TestTTMatrix:
    def test_properties(self):
        a = TTMatrix([jnp.ones((1, 2, 3, 4)), jnp.ones((4, 5, 6, 1))])
        assert a.row_dims == (2, 5) and a.col_dims == (3, 6)
        assert a.dims == ((2, 3), (5, 6))
        assert a.shape == (10, 18)
        assert a.ranks == (1, 4, 1)
        assert a.num_params == 2 * 3 * 4 + 4 * 5 * 6
        assert "TTMatrix(row_dims=(2, 5), col_dims=(3, 6)" in repr(a)

    @pytest.mark.parametrize(
        "cores, match",
        [
            ([jnp.ones((1, 2, 1))], r"cores\[0\] has shape \(1, 2, 1\): expected a 4-D core"),
            ([jnp.ones((1, 2, 2, 3)), jnp.ones((2, 2, 2, 1))], r"cores\[1\] has shape \(2, 2, 2, 1\): expected shape \(3, 2, 2, 1\)"),
            ([jnp.ones((3, 2, 2, 1))], "expected left rank 1"),
        ],
    )
    def test_validation_errors(self, cores, match):
        with pytest.raises(ValueError, match=match):
            TTMatrix(cores)

    def test_matmul_operator(self):
        a = ttm.random(jax.random.key(0), (2, 3), (2, 2), 2, dtype=jnp.float64)
        b = ttm.random(jax.random.key(1), (2, 2), (3, 2), 2, dtype=jnp.float64)
        x = tt.random(jax.random.key(2), (2, 2), 2, dtype=jnp.float64)
        wa, wb = ttm.to_dense(a), ttm.to_dense(b)
        np.testing.assert_allclose(ttm.to_dense(a @ b), wa @ wb, atol=1e-12)
        np.testing.assert_allclose(tt.to_dense(a @ x).ravel(), wa @ tt.to_dense(x).ravel(), atol=1e-12)
        v = jnp.arange(4.0)
        np.testing.assert_allclose(a @ v, wa @ v, atol=1e-12)
        with pytest.raises(TypeError, match="use ttm.apply"):
            _ = a @ jnp.ones((4, 4))
        np.testing.assert_allclose(ttm.to_dense(a + a), 2 * wa, atol=1e-12)
        np.testing.assert_allclose(ttm.to_dense(a - a), 0 * wa, atol=1e-12)
        np.testing.assert_allclose(ttm.to_dense(3.0 * a), 3 * wa, atol=1e-12)


class TestTR:
    def test_properties_and_dense_meaning(self):
        rng = np.random.default_rng(0)
        cores = [jnp.asarray(rng.standard_normal(s)) for s in ((2, 3, 4), (4, 5, 2))]
        t = TR(cores)
        assert t.dims == t.shape == (3, 5) and t.ranks == (2, 4, 2) and t.ndim == 2
        assert t.num_params == 24 + 40 and t.batch_shape == ()
        assert repr(t) == "TR(dims=(3, 5), ranks=(2, 4, 2), dtype=float64)"
        leaves, treedef = jax.tree_util.tree_flatten(t)
        assert len(leaves) == 2 and isinstance(jax.tree_util.tree_unflatten(treedef, leaves), TR)

    @pytest.mark.parametrize(
        "cores, match",
        [
            ([jnp.ones((2, 3, 4)), jnp.ones((4, 5, 3))], r"cores\[1\] has shape \(4, 5, 3\): expected right rank 2"),
            ([jnp.ones((2, 3, 4)), jnp.ones((3, 5, 2))], r"cores\[1\] has shape \(3, 5, 2\): expected shape \(4, 5, 2\)"),
            ([jnp.ones((2, 3))], r"cores\[0\] has shape \(2, 3\): expected a 3-D core"),
        ],
    )
    def test_validation_errors(self, cores, match):
        with pytest.raises(ValueError, match=match):
            TR(cores)

    def test_a_tt_is_a_ring_of_rank_one(self):
        assert TR(_cores((1, 2, 1), (3, 4))).ranks == (1, 2, 1)

    def test_immutable(self):
        with pytest.raises(AttributeError, match="immutable"):
            TR(_cores((1, 1), (2,))).cores = ()


class TestTucker:
    def test_properties_pytree_and_vmap(self):
        t = Tucker(jnp.ones((2, 3)), [jnp.ones((4, 2)), jnp.ones((5, 3))])
        assert t.dims == (4, 5) and t.ranks == (2, 3) and t.ndim == 2
        assert t.num_params == 6 + 8 + 15 and t.batch_shape == ()
        assert repr(t) == "Tucker(dims=(4, 5), ranks=(2, 3), dtype=float64)"
        leaves = jax.tree_util.tree_leaves(t)
        assert len(leaves) == 3
        batch = jax.vmap(lambda c: Tucker(c, [2 * f for f in t.factors]))(jnp.ones((7, 2, 3)))
        assert batch.core.shape == (7, 2, 3) and batch.batch_shape == (7,)
        assert batch.ranks == (2, 3) and batch.dims == (4, 5)
        doubled = jax.tree_util.tree_map(lambda a: 2 * a, t)
        assert isinstance(doubled, Tucker) and float(doubled.factors[1][0, 0]) == 2.0

    @pytest.mark.parametrize(
        "core, factors, exc, match",
        [
            (jnp.ones((2, 4)), [jnp.ones((4, 2)), jnp.ones((5, 3))], ValueError, r"core has shape \(2, 4\): expected \(2, 3\)"),
            (jnp.ones((2,)), [jnp.ones((4, 2, 1))], ValueError, r"factors\[0\] has shape \(4, 2, 1\): expected a matrix"),
            (jnp.ones((2,)), [], ValueError, "at least one matrix"),
            (jnp.ones((2,), jnp.float32), [jnp.ones((4, 2))], TypeError, "share one dtype"),
            (jnp.ones((2,)), [jnp.ones((4, 2), jnp.int32)], TypeError, r"factors\[0\] has dtype int32"),
        ],
    )
    def test_validation_errors(self, core, factors, exc, match):
        with pytest.raises(exc, match=match):
            Tucker(core, factors)


class TestCP:
    def test_properties_and_pytree(self):
        c = CP(jnp.ones(3), [jnp.ones((4, 3)), jnp.ones((5, 3))])
        assert c.dims == (4, 5) and c.rank == 3 and c.ndim == 2 and c.num_params == 3 + 12 + 15
        assert repr(c) == "CP(dims=(4, 5), rank=3, dtype=float64)"
        out = jax.jit(lambda x: x)(c)
        assert isinstance(out, CP) and out.rank == 3
        with pytest.raises(AttributeError, match="immutable"):
            c.weights = jnp.zeros(3)

    @pytest.mark.parametrize(
        "weights, factors, match",
        [
            (jnp.ones(3), [jnp.ones((4, 3)), jnp.ones((5, 2))], r"factors\[1\] has shape \(5, 2\): expected \(5, 3\)"),
            (jnp.ones(2), [jnp.ones((4, 3))], r"weights has shape \(2,\): expected \(3,\)"),
        ],
    )
    def test_validation_errors(self, weights, factors, match):
        with pytest.raises(ValueError, match=match):
            CP(weights, factors)


class TestScaleAcrossFormats:
    """Every format's ``scale`` follows one dtype rule (``_checks.scalar_factor``) and matches ``alpha * dense``."""

    @staticmethod
    def _make(name, dtype):
        from tnkit import cp, kron, tr, tree, tucker

        key = jax.random.key(0)
        if name == "kron":
            a = jax.random.normal(key, (2, 3), dtype)
            return kron.Kron([a, a.T]), kron.to_dense, kron.scale
        module = {"tt": tt, "tr": tr, "cp": cp, "tucker": tucker, "tree": tree}.get(name)
        if name == "ttm":
            return ttm.random(key, (2, 3), (3, 2), 2, dtype=dtype), ttm.to_dense, ttm.scale
        return module.random(key, (2, 3, 2), 2, dtype=dtype), module.to_dense, module.scale

    FORMATS = ["tt", "ttm", "tr", "cp", "tucker", "tree", "kron"]

    @pytest.mark.parametrize("name", FORMATS)
    @pytest.mark.parametrize(
        "dtype, alpha, expected",
        [
            (jnp.float32, np.complex128(2 - 1j), jnp.complex64),  # complex alpha: same precision, made complex
            (jnp.float64, np.complex64(2 - 1j), jnp.complex128),
            (jnp.float32, np.float64(-1.5), jnp.float32),  # real alpha never changes the dtype
            (jnp.complex64, np.complex128(0.5j), jnp.complex64),
        ],
    )
    def test_dtype_rule_and_value(self, name, dtype, alpha, expected):
        obj, to_dense, scale = self._make(name, dtype)
        out = scale(obj, alpha)
        assert out.dtype == expected
        want = np.asarray(to_dense(obj), np.complex128) * complex(alpha)
        tol = 1e-5 if jnp.finfo(expected).bits <= 32 else 1e-12
        np.testing.assert_allclose(np.asarray(to_dense(out), np.complex128), want, rtol=tol, atol=tol)

    @pytest.mark.parametrize("name", FORMATS)
    def test_non_scalar_alpha_is_rejected(self, name):
        obj, _, scale = self._make(name, jnp.float32)
        with pytest.raises(ValueError, match=r"alpha must be a scalar, got shape \(2,\)"):
            scale(obj, jnp.ones(2))
