"""TT-matrix layers (tnkit.layers.TTLinearSpec, tnkit.nn.TTLinear, tnkit.eqx.TTLinear) against dense maths."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests import layer_checks as lc
from tnkit import eqx as teqx
from tnkit import layers, nn, ttm


def tt_dense_reference(spec):
    """W[(j_1..j_d), (i_1..i_d)] = G_1[:, i_1, j_1, :] ... G_d[:, i_d, j_d, :] (in rows, out columns), by NumPy."""

    def build(params):
        d = spec.num_modes
        w = np.ones((1, 1, 1))  # (out so far, in so far, rank)
        for k in range(d):
            g = params[f"core_{k}"]  # (r, m, n, s)
            w = np.einsum("abr,rmns->ambns", w, g)
            a, m, b, n, s = w.shape
            w = w.reshape(a * m, b * n, s)
        return w[:, :, 0].T

    return build


SPEC = layers.TTLinearSpec(24, 12, ranks=(3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2))


class TestSpec:
    def test_param_shapes_and_count(self):
        shapes = SPEC.param_shapes()
        assert shapes == {"core_0": (1, 3, 2, 3), "core_1": (3, 2, 3, 2), "core_2": (2, 2, 4, 1)}
        assert SPEC.count_params() == 1 * 3 * 2 * 3 + 3 * 2 * 3 * 2 + 2 * 2 * 4 * 1

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_every_implementation_equals_dense(self, dtype):
        params = SPEC.init(jax.random.key(1), dtype)
        x = lc.random_input((2, 3, 24)).astype(dtype)
        lc.check_spec_against_dense(SPEC, params, tt_dense_reference(SPEC), x)

    def test_grads_equal_dense_path(self):
        params = SPEC.init(jax.random.key(2), jnp.float64)
        lc.check_grads_match_dense(SPEC, params, lc.random_input((5, 24)))

    def test_init_variance_matches_lecun(self):
        lc.check_init_variance(layers.TTLinearSpec(64, 8, ranks=4, in_modes=(4, 4, 4), out_modes=(2, 2, 2)), fan_in=64)

    def test_init_variance_check_can_fail(self):
        # the statistical check rejects a layer whose weight variance is twice the target
        spec = layers.TTLinearSpec(64, 8, ranks=4, in_modes=(4, 4, 4), out_modes=(2, 2, 2))
        with pytest.raises(AssertionError, match="ratio"):
            lc.check_init_variance(spec, fan_in=128)

    def test_auto_choice_follows_costs(self):
        # d = 2, in (3, 4), out (2, 3), rank 5; closed forms of the multiply-adds per input row:
        # left-to-right 2*3*5*4 + 2*5*3*4 = 240, right-to-left 3*5*4*3 + 3*5*3*2 = 270 (the two-block path at k = 1
        # is one of these with no merge), dense = rebuild (1*2*3*5 + 2*3*5*3*4) = 390 plus 12*6 per row.
        spec = layers.TTLinearSpec(12, 6, ranks=5, in_modes=(3, 4), out_modes=(2, 3))
        for batch in (1, 100):
            costs = spec.costs((batch, 12))
            assert costs[layers.Implementation.FACTORIZED] == 240 * batch
            assert costs[layers.Implementation.DENSE] == 390 + 72 * batch
        assert spec.choose((1, 12)) is layers.Implementation.FACTORIZED
        assert spec.choose((10, 10, 12)) is layers.Implementation.DENSE
        assert spec.flops((1, 12)) == 480

    def test_two_block_costs(self):
        # d = 3, modes (4, 4, 4) in and out, ranks (1, 4, 4, 1); multiply-adds per input row:
        # sweep (either order): 1*16*(1*4*4*4) + 4*4*(4*4*4*4) + 16*1*(4*4*4*1) = 1024 + 4096 + 1024 = 6144;
        # two blocks at k = 1 (L = core_0 as is; R = core_1 x core_2: 4*4*4*4 * 4*4 = 4096 once per call), through
        # the (row, n_L=4, r=4, m_R=16) intermediate of 256 numbers: 256 * n_R (16) + 256 * m_L (4) = 5120 per row
        # (k = 2 and the left-first order give the same numbers). Time model (AUTO's coefficients): sweep
        # 6144 + 45 * (64 + 256 + 256 + 64) * 2 = 57984 per row; blocks 4096 + (5120 + 40 * (64 + 2 * 256 + 64)) =
        # 4096 + 30720 per row, cheaper from 1 row on.
        # dense = rebuild (1*4*4*4 + 16*4*4*4*4 + 256*4*4*4*1 = 64 + 4096 + 16384) = 20544 plus 64*64 per row, time
        # model 20544 + 4096 * rows + 120 * 4096: AUTO takes the blocks up to 19 rows (26624 * rows < 507968).
        spec = layers.TTLinearSpec(64, 64, ranks=4, in_modes=(4, 4, 4), out_modes=(4, 4, 4))
        factorized = {b: spec.costs((b, 64))[layers.Implementation.FACTORIZED] for b in (1, 3, 100)}
        assert factorized == {1: 4096 + 5120, 3: 4096 + 3 * 5120, 100: 4096 + 100 * 5120}
        assert spec.costs((100, 64))[layers.Implementation.DENSE] == 20544 + 4096 * 100
        assert spec.choose((19, 64)) is layers.Implementation.FACTORIZED
        assert spec.choose((20, 64)) is layers.Implementation.DENSE
        params = spec.init(jax.random.key(3), jnp.float64)
        for batch in (1, 5):
            lc.check_spec_against_dense(spec, params, tt_dense_reference(spec), lc.random_input((batch, 64)))
        lc.check_grads_match_dense(spec, params, lc.random_input((5, 64)))

    def test_every_factorized_plan_matches_dense(self, monkeypatch):
        # AUTO picks one plan per batch; each of the others (core sweeps both ways, two blocks at every split,
        # either block first) must be correct too, forward and backward, on an asymmetric layer.
        spec = layers.TTLinearSpec(48, 40, ranks=3, in_modes=(4, 3, 4), out_modes=(2, 5, 4))
        params = spec.init(jax.random.key(7), jnp.float64)
        plans = [plan for plan, _, _ in spec._plans(5)]
        assert {p[0] for p in plans} == {"sweep", "blocks"} and {p[2] for p in plans if p[0] == "blocks"} == {
            "left", "right"}
        for plan in plans:
            monkeypatch.setattr(layers.TTLinearSpec, "_plan", lambda self, batch, plan=plan: (plan, 1, batch, 0, 0))
            lc.check_spec_against_dense(spec, params, tt_dense_reference(spec), lc.random_input((5, 48)))
            lc.check_grads_match_dense(spec, params, lc.random_input((5, 48)))

    def test_row_chunks(self, monkeypatch):
        # chunking triggers when the largest intermediate exceeds max(batch * out_features // _CHUNK_DIV,
        # _CHUNK_MIN_NUMBERS); with both set to 1 so tiny layers chunk: 10 rows, intermediate 10 * 256 > 10 * 64
        # -> 4 chunks of 3 rows (2 zero rows of padding), the blocks merged once: 4096 + 12 * 5120 multiply-adds.
        from tnkit.layers import _tt

        monkeypatch.setattr(_tt, "_CHUNK_MIN_NUMBERS", 1)
        monkeypatch.setattr(_tt, "_CHUNK_DIV", 1)
        layers.TTLinearSpec._plan.cache_clear()
        try:
            spec = layers.TTLinearSpec(64, 64, ranks=4, in_modes=(4, 4, 4), out_modes=(4, 4, 4))
            assert spec._plan(10)[:3] == (("blocks", 1, "left"), 4, 3)  # a tie with "right": left is faster
            assert spec.costs((10, 64))[layers.Implementation.FACTORIZED] == 4096 + 12 * 5120
            params = spec.init(jax.random.key(4), jnp.float64)
            lc.check_spec_against_dense(spec, params, tt_dense_reference(spec), lc.random_input((2, 5, 64)))
            lc.check_grads_match_dense(spec, params, lc.random_input((10, 64)))
            # the core sweep in chunks (made the model's choice by pricing the blocks out): a d = 2 spec, 7 rows,
            # intermediate 7 * 2*5*4 = 280 > 7 * 6 -> 7 chunks of one row
            monkeypatch.setattr(_tt, "_BLOCK_TRAFFIC_COST", 10**9)
            layers.TTLinearSpec._plan.cache_clear()
            small = layers.TTLinearSpec(12, 6, ranks=5, in_modes=(3, 4), out_modes=(2, 3))
            assert small._plan(7)[:3] == (("sweep", ttm.ApplyOrder.LEFT_TO_RIGHT), 7, 1)
            p_small = small.init(jax.random.key(5), jnp.float64)
            lc.check_grads_match_dense(small, p_small, lc.random_input((7, 12)))
            # the bias is added inside the chunks: the padded rows must not leak, and a bad bias shape is refused
            x = lc.random_input((10, 64))
            b = np.random.default_rng(6).standard_normal(64)
            want = np.asarray(x) @ tt_dense_reference(spec)(params) + b
            for impl in (layers.Implementation.FACTORIZED, layers.Implementation.DENSE):
                got = layers.apply(spec, params, x, implementation=impl, bias=jnp.asarray(b))
                np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)
            for bad in (np.ones(1), np.ones(63), np.ones((1, 64))):
                with pytest.raises(ValueError, match="bias must have shape"):
                    layers.apply(spec, params, x, bias=jnp.asarray(bad))
        finally:
            layers.TTLinearSpec._plan.cache_clear()

    def test_from_dense_rtol_guarantee_and_exact(self):
        rng = np.random.default_rng(0)
        kernel = rng.standard_normal((24, 12))
        spec, params, info = layers.TTLinearSpec.from_dense(kernel, rtol=0.3, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        err = np.linalg.norm(np.asarray(spec.to_dense(params)) - kernel) / np.linalg.norm(kernel)
        assert err <= 0.3 and info.relative_error == pytest.approx(err, rel=1e-9)
        assert info.num_params == spec.count_params() and info.dense_params == 24 * 12
        spec, params, info = layers.TTLinearSpec.from_dense(kernel, rtol=1e-12, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        assert info.relative_error < 1e-12

    def test_auto_modes(self):
        spec = layers.TTLinearSpec(4096, 1000, ranks=2)
        assert math.prod(spec.in_modes) == 4096 and math.prod(spec.out_modes) == 1000
        assert len(spec.in_modes) == len(spec.out_modes) == 4
        spec = layers.TTLinearSpec(12, 6, ranks=2, in_modes=(3, 4))
        assert len(spec.out_modes) == 2 and math.prod(spec.out_modes) == 6

    def test_spec_is_hashable_static(self):
        assert hash(SPEC) == hash(layers.TTLinearSpec(24, 12, ranks=(1, 3, 2, 1), in_modes=(2, 3, 4), out_modes=(3, 2, 2)))

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (dict(in_modes=(2, 2)), r"in_modes=\(2, 2\) multiplies to 4, but in_features=24"),
            (dict(in_modes=(4, 6), out_modes=(2, 3, 2)), "same length"),
            (dict(ranks=(2, 2, 2)), "2 inner ranks or 4 ranks"),
            (dict(ranks=(2, 2, 2, 2)), "start and end with 1"),
            (dict(ranks=0), "ranks must be a positive int"),
        ],
    )
    def test_bad_spec(self, kwargs, match):
        base = dict(ranks=2, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        with pytest.raises(ValueError, match=match):
            layers.TTLinearSpec(24, 12, **{**base, **kwargs})

    def test_bad_apply(self):
        params = SPEC.init(jax.random.key(0))
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., in_features\) = \(\.\.\., 24\)"):
            layers.apply(SPEC, params, jnp.ones((3, 25)))
        with pytest.raises(ValueError, match=r"params\['core_1'\] must have shape"):
            layers.apply(SPEC, {**params, "core_1": jnp.ones((3, 2, 3, 3))}, jnp.ones((3, 24)))
        with pytest.raises(TypeError, match="implementation must be a tnkit.layers.Implementation"):
            layers.apply(SPEC, params, jnp.ones((3, 24)), implementation="dense")
        with pytest.raises(ValueError, match="needs max_rank or rtol"):
            layers.TTLinearSpec.from_dense(jnp.ones((24, 12)))


class TestRegistry:
    def test_registered_implementation_is_dispatched(self):
        calls = []

        def via_dense(spec, params, x, *, precision):
            calls.append(x.shape)
            return jnp.matmul(x, spec.to_dense(params), precision=precision)

        impl = layers.register_implementation("test_via_dense", layers.TTLinearSpec, via_dense)
        assert impl in layers.registered_implementations(layers.TTLinearSpec)
        params = SPEC.init(jax.random.key(0))
        x = lc.random_input((2, 24))
        y = layers.apply(SPEC, params, x, implementation=impl)
        np.testing.assert_allclose(y, x @ SPEC.to_dense(params), atol=1e-12)
        assert calls == [(2, 24)]
        with pytest.raises(ValueError, match="not registered"):
            layers.apply(SPEC, params, x, implementation=layers.Implementation("nowhere"))
        with pytest.raises(ValueError, match="reserved"):
            layers.register_implementation("dense", layers.TTLinearSpec, via_dense)


class TestNNX:
    def test_layer(self):
        layer = nn.TTLinear(24, 12, ranks=3, in_modes=(2, 3, 4), out_modes=(3, 2, 2), param_dtype=jnp.float64,
                            bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
        lc.check_nnx_layer(layer, lc.random_input((5, 24)))

    def test_count_params_and_flops(self):
        layer = nn.TTLinear(24, 12, ranks=(3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), rngs=nnx.Rngs(0))
        assert layer.count_params() == SPEC.count_params() + 12
        assert layer.flops((7, 24)) == SPEC.flops((7, 24))
        no_bias = nn.TTLinear(24, 12, ranks=(3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), use_bias=False,
                              rngs=nnx.Rngs(0))
        assert no_bias.count_params() == SPEC.count_params()

    def test_from_linear(self):
        dense = nnx.Linear(24, 12, param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(3))
        layer, info = nn.TTLinear.from_linear(dense, max_rank=100, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        assert info.relative_error < 1e-12
        x = lc.random_input((4, 24))
        np.testing.assert_allclose(layer(x), dense(x), atol=1e-10)
        small, info = nn.TTLinear.from_linear(dense, max_rank=2, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        assert max(small.spec.ranks) == 2 and 0.1 < info.relative_error < 1
        w = np.asarray(dense.kernel[...])
        assert info.relative_error == pytest.approx(np.linalg.norm(small.weight() - w) / np.linalg.norm(w), rel=1e-8)

    def test_dtypes(self):
        layer = nn.TTLinear(16, 8, ranks=2, param_dtype=jnp.float32, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert layer.factors["core_0"][...].dtype == jnp.float32
        assert layer(jnp.ones((2, 16), jnp.float32)).dtype == jnp.bfloat16

    def test_implementation_override(self):
        layer = nn.TTLinear(24, 12, ranks=3, in_modes=(2, 3, 4), out_modes=(3, 2, 2), param_dtype=jnp.float64,
                            implementation=layers.Implementation.DENSE, rngs=nnx.Rngs(0))
        x = lc.random_input((3, 24))
        np.testing.assert_allclose(layer(x), layer(x, implementation=layers.Implementation.FACTORIZED), atol=1e-12)

    def test_bad_input(self):
        with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
            nn.TTLinear(24, 12, ranks=2, rngs=0)
        with pytest.raises(ValueError, match="out_modes=\\(5, 2\\) multiplies to 10, but out_features=12"):
            nn.TTLinear(24, 12, ranks=2, in_modes=(4, 6), out_modes=(5, 2), rngs=nnx.Rngs(0))
        with pytest.raises(TypeError, match="nnx.Linear or a kernel array"):
            nn.TTLinear.from_linear(object(), max_rank=2)


class TestEquinox:
    def test_layer(self):
        layer = teqx.TTLinear(24, 12, ranks=3, in_modes=(2, 3, 4), out_modes=(3, 2, 2), param_dtype=jnp.float64,
                              bias_init=jax.nn.initializers.normal(1.0), key=jax.random.key(0))
        lc.check_eqx_layer(layer, lc.random_input((5, 24)))

    def test_from_linear(self):
        dense = eqx.nn.Linear(24, 12, key=jax.random.key(3), dtype=jnp.float64)
        layer, info = teqx.TTLinear.from_linear(dense, max_rank=100, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        assert info.relative_error < 1e-12
        x = lc.random_input((4, 24))
        np.testing.assert_allclose(layer(x), jax.vmap(dense)(x), atol=1e-10)
        assert layer.count_params() == layer.spec.count_params() + 12
