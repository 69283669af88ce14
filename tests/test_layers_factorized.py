"""Low-rank, Tucker and CP linear layers (tnkit.layers specs, tnkit.nn and tnkit.eqx layers) against dense maths."""

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests import layer_checks as lc
from tests.helpers import graded_tensor
from tnkit import cp, layers, nn
from tnkit import eqx as teqx

FAC, DENSE = layers.Implementation.FACTORIZED, layers.Implementation.DENSE


# ------------------------------------------------------------------------------------- NumPy reconstructions


def lowrank_reference(spec):
    return lambda p: p["a"] @ p["b"]


def tucker_reference(spec):
    """W = (core x_k U_k ...) reshaped to (in, out), by successive NumPy tensordots."""

    def build(p):
        factors = [p[f"in_factor_{k}"] for k in range(len(spec.in_modes))]
        factors += [p[f"out_factor_{k}"] for k in range(len(spec.out_modes))]
        t = p["core"]
        for k, u in enumerate(factors):
            t = np.moveaxis(np.tensordot(u, t, axes=(1, k)), 0, k)
        return t.reshape(spec.in_features, spec.out_features)

    return build


def cp_reference(spec):
    """W[(i..), (j..)] = sum_r prod_k A_k[i_k, r] prod_l B_l[j_l, r], by one NumPy einsum."""

    def build(p):
        factors = [p[f"in_factor_{k}"] for k in range(len(spec.in_modes))]
        factors += [p[f"out_factor_{k}"] for k in range(len(spec.out_modes))]
        letters = "abcdefgh"[: len(factors)]
        t = np.einsum(",".join(c + "z" for c in letters) + "->" + letters, *factors)
        return t.reshape(spec.in_features, spec.out_features)

    return build


LR = layers.LowRankLinearSpec(24, 12, rank=3)
TK = layers.TuckerLinearSpec(24, 12, ranks=(2, 3, 3, 2, 2), in_modes=(2, 3, 4), out_modes=(3, 4))
CPS = layers.CPLinearSpec(24, 12, rank=5, in_modes=(2, 3, 4), out_modes=(3, 4))
SPECS = {"lowrank": (LR, lowrank_reference), "tucker": (TK, tucker_reference), "cp": (CPS, cp_reference)}


# ------------------------------------------------------------------------------------------------- specs


class TestSpecs:
    def test_param_shapes_and_closed_form_counts(self):
        assert LR.param_shapes() == {"a": (24, 3), "b": (3, 12)}
        assert LR.count_params() == 24 * 3 + 3 * 12
        assert TK.param_shapes() == {
            "core": (2, 3, 3, 2, 2),
            "in_factor_0": (2, 2), "in_factor_1": (3, 3), "in_factor_2": (4, 3),
            "out_factor_0": (3, 2), "out_factor_1": (4, 2),
        }
        # prod(ranks) + sum_k n_k r_k
        assert TK.count_params() == 2 * 3 * 3 * 2 * 2 + (2 * 2 + 3 * 3 + 4 * 3) + (3 * 2 + 4 * 2)
        # R * (sum of all mode sizes)
        assert CPS.count_params() == 5 * (2 + 3 + 4 + 3 + 4)
        assert set(CPS.param_shapes()) == {f"in_factor_{k}" for k in range(3)} | {"out_factor_0", "out_factor_1"}

    @pytest.mark.parametrize("name", list(SPECS))
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_every_implementation_equals_dense(self, name, dtype):
        spec, reference = SPECS[name]
        params = spec.init(jax.random.key(1), dtype)
        assert all(v.dtype == dtype for v in params.values())
        x = lc.random_input((2, 3, 24)).astype(dtype)
        lc.check_spec_against_dense(spec, params, reference(spec), x)

    @pytest.mark.parametrize("name", list(SPECS))
    def test_grads_equal_dense_path(self, name):
        spec, _ = SPECS[name]
        lc.check_grads_match_dense(spec, spec.init(jax.random.key(2), jnp.float64), lc.random_input((5, 24)))

    def test_float32(self):
        for spec, reference in (SPECS["tucker"], SPECS["cp"]):
            params = spec.init(jax.random.key(3), jnp.float32)
            x = lc.random_input((4, 24), dtype=np.float32)
            y = layers.apply(spec, params, x, implementation=FAC)
            assert y.dtype == jnp.float32
            w = reference(spec)({k: np.asarray(v, np.float64) for k, v in params.items()})
            np.testing.assert_allclose(np.asarray(y), np.asarray(x, np.float64) @ w, rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize(
        "spec",
        [
            layers.LowRankLinearSpec(16, 8, rank=4),
            layers.TuckerLinearSpec(16, 8, ranks=(3, 2, 2, 4), in_modes=(4, 2, 2), out_modes=(8,)),
            layers.CPLinearSpec(16, 8, rank=6, in_modes=(4, 4), out_modes=(2, 4)),
        ],
        ids=["lowrank", "tucker", "cp"],
    )
    def test_init_variance_matches_lecun(self, spec):
        lc.check_init_variance(spec, fan_in=16)

    def test_init_variance_check_can_fail(self):
        # the statistical check rejects a weight whose variance is twice the target (as if fan_in were 8)
        spec = layers.CPLinearSpec(16, 8, rank=6, in_modes=(4, 4), out_modes=(2, 4))
        with pytest.raises(AssertionError, match="ratio"):
            lc.check_init_variance(spec, fan_in=8)

    def test_costs_closed_forms_and_auto(self):
        for batch in (1, 50):
            shape = (batch, 24)
            # low rank: b r (in + out); rebuild in r out
            assert LR.costs(shape) == {FAC: batch * 3 * 36, DENSE: 24 * 3 * 12 + batch * 24 * 12}
            # Tucker, input modes (2, 3, 4) -> ranks (2, 3, 3): mode 2 first (24 * 3), then 0 (18 * 2), then 1
            # (18 * 3) = 162; core 18 * 4 = 72; output ranks (2, 2) -> (3, 4): mode 0 (4 * 3), then 1 (6 * 4) = 36.
            # Rebuild (tucker.to_dense, smallest growth first): 72*2 + 72*3 + 72*4 + 96*3 + 144*4 = 1512.
            assert TK.costs(shape) == {FAC: batch * (162 + 72 + 36), DENSE: 1512 + batch * 288}
            # CP: b R (in + out) + Khatri-Rao 5 (2*3 + 2*3*4) + 5 (3*4); rebuild 5 (288 + 6 + 24 + 72)
            assert CPS.costs(shape) == {FAC: batch * 5 * 36 + 150 + 60, DENSE: 5 * (288 + 102) + batch * 288}
        # AUTO picks the cheaper one, which changes with the batch where the rank is high
        for spec in (
            layers.LowRankLinearSpec(12, 6, rank=5),  # 90 b  vs  360 + 72 b
            layers.TuckerLinearSpec(6, 6, ranks=(2, 3, 2, 3), in_modes=(2, 3), out_modes=(2, 3)),
            layers.CPLinearSpec(6, 6, rank=20, in_modes=(2, 3), out_modes=(2, 3)),  # 240 b + 240  vs  960 + 36 b
        ):
            assert spec.choose((1, spec.in_features)) is FAC
            assert spec.choose((10, 10, spec.in_features)) is DENSE
            assert spec.flops((1, spec.in_features)) == 2 * spec.costs((1, spec.in_features))[FAC]

    @pytest.mark.parametrize(
        "in_modes, out_modes, ranks",
        [((5, 2, 3), (3, 4), (2, 2, 3, 3, 1)), ((2, 7, 3, 2), (6,), (2, 2, 3, 1, 5)), ((4, 4), (2, 8), (4, 1, 2, 3))],
    )
    def test_tucker_mode_order_is_optimal(self, in_modes, out_modes, ranks):
        # the factorised cost equals the cheapest of all orders of the mode products on each side (brute force)
        spec = layers.TuckerLinearSpec(math.prod(in_modes), math.prod(out_modes), ranks=ranks, in_modes=in_modes,
                                       out_modes=out_modes)
        p = len(in_modes)

        def best(pairs):
            def cost(order):
                dims, total = [a for a, _ in pairs], 0
                for k in order:
                    total += math.prod(dims) * pairs[k][1]
                    dims[k] = pairs[k][1]
                return total

            return min(cost(o) for o in itertools.permutations(range(len(pairs))))

        expected = best(list(zip(in_modes, ranks[:p]))) + math.prod(ranks) + best(list(zip(ranks[p:], out_modes)))
        assert spec.factorized_cost(1) == expected
        assert spec.factorized_cost(7) == 7 * expected

    def test_modes_and_ranks_normalisation(self):
        spec = layers.TuckerLinearSpec(4096, 1000, ranks=4)
        assert math.prod(spec.in_modes) == 4096 and math.prod(spec.out_modes) == 1000
        # Tucker defaults to two modes per side (the core has one axis per mode): 4096 = 64 * 64, 1000 = 40 * 25
        assert spec.in_modes == (64, 64) and spec.out_modes == (40, 25)
        # an int rank is clipped to each mode size, then to the largest feasible multilinear ranks
        assert layers.TuckerLinearSpec(32, 2, ranks=8, in_modes=(16, 2), out_modes=(2,)).ranks == (4, 2, 2)
        # the two sides may have different numbers of modes
        spec = layers.CPLinearSpec(24, 5, rank=2, in_modes=(2, 3, 4))
        assert spec.out_modes == (5, 1)
        assert hash(TK) == hash(layers.TuckerLinearSpec(24, 12, ranks=[2, 3, 3, 2, 2], in_modes=[2, 3, 4],
                                                        out_modes=[3, 4]))
        assert layers.tucker_ranks(3, (2, 5), (4,)) == (2, 3, 3)

    @pytest.mark.parametrize(
        "make, error, match",
        [
            (lambda: layers.LowRankLinearSpec(24, 12, rank=0), ValueError, "rank must be a positive int, got 0"),
            (lambda: layers.LowRankLinearSpec(24, 0, rank=2), ValueError, "out_features must be a positive int"),
            (lambda: layers.CPLinearSpec(24, 12, rank=True), ValueError, "rank must be a positive int, got True"),
            (lambda: layers.CPLinearSpec(24, 12, rank=2, in_modes=(5, 5)), ValueError,
             r"in_modes=\(5, 5\) multiplies to 25, but in_features=24"),
            (lambda: layers.TuckerLinearSpec(24, 12, ranks=(2, 2), in_modes=(4, 6), out_modes=(12,)), ValueError,
             r"one entry per mode of in_modes \+ out_modes = \(4, 6, 12\) \(3\), got 2"),
            (lambda: layers.TuckerLinearSpec(24, 12, ranks=(2, 2, 13), in_modes=(4, 6), out_modes=(12,)), ValueError,
             r"ranks\[2\] = 13 must be between 1 and the mode size out_modes\[0\] = 12"),
            (lambda: layers.TuckerLinearSpec(24, 12, ranks=(4, 1, 2), in_modes=(4, 6), out_modes=(12,)), ValueError,
             "not the multilinear ranks of any tensor"),
            (lambda: layers.TuckerLinearSpec(24, 12, ranks=(2, 2.5, 2), in_modes=(4, 6), out_modes=(12,)), TypeError,
             "ranks must hold ints"),
        ],
    )
    def test_bad_spec(self, make, error, match):
        with pytest.raises(error, match=match):
            make()

    def test_bad_apply_and_conversion(self):
        params = TK.init(jax.random.key(0))
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., in_features\) = \(\.\.\., 24\), got \(3, 12\)"):
            layers.apply(TK, params, jnp.ones((3, 12)))
        with pytest.raises(ValueError, match=r"params\['core'\] must have shape \(2, 3, 3, 2, 2\)"):
            layers.apply(TK, {**params, "core": jnp.ones((2, 3, 3, 2, 1))}, jnp.ones((3, 24)))
        with pytest.raises(ValueError, match=r"params must have the keys"):
            layers.apply(CPS, params, jnp.ones((3, 24)))
        with pytest.raises(ValueError, match="needs max_rank or rtol"):
            layers.LowRankLinearSpec.from_dense(jnp.ones((24, 12)))
        with pytest.raises(ValueError, match="needs ranks or rtol"):
            layers.TuckerLinearSpec.from_dense(jnp.ones((24, 12)))
        with pytest.raises(ValueError, match=r"kernel must be a 2-D \(in_features, out_features\) array, got shape \(24,\)"):
            layers.CPLinearSpec.from_dense(jnp.ones(24), rank=2)
        with pytest.raises(TypeError, match="kernel must have a floating or complex dtype, got int"):
            layers.LowRankLinearSpec.from_dense(np.ones((4, 3), np.int32), max_rank=1)
        with pytest.raises(ValueError, match="max_rank must be a positive int, got 0"):
            layers.LowRankLinearSpec.from_dense(jnp.ones((4, 3)), max_rank=0)
        with pytest.raises(ValueError, match="needs a PRNG key"):
            layers.CPLinearSpec.from_dense(jnp.ones((4, 4)), rank=2, init=cp.Init.RANDOM)


# ---------------------------------------------------------------------------------------------- conversions


def hosvd_bound_sq(tensor, ranks):
    """sum_k sum_{i >= r_k} sigma_{k,i}^2: the discarded squared higher-order singular values (NumPy SVDs)."""
    total = 0.0
    for k, r in enumerate(ranks):
        s = np.linalg.svd(np.moveaxis(tensor, k, 0).reshape(tensor.shape[k], -1), compute_uv=False)
        total += float(np.sum(s[r:] ** 2))
    return total


class TestConversion:
    @pytest.mark.parametrize("dtype", [np.float64, np.complex128])
    def test_lowrank_is_eckart_young_optimal(self, dtype):
        rng = np.random.default_rng(0)
        kernel = rng.standard_normal((24, 12)).astype(dtype)
        if dtype == np.complex128:
            kernel = kernel + 1j * rng.standard_normal((24, 12))
        s = np.linalg.svd(kernel, compute_uv=False)
        norm = np.linalg.norm(kernel)
        optimum = lambda r: np.sqrt(np.sum(s[r:] ** 2)) / norm
        spec, params, info = layers.LowRankLinearSpec.from_dense(kernel, max_rank=4)
        err = np.linalg.norm(np.asarray(params["a"]) @ np.asarray(params["b"]) - kernel) / norm
        assert spec.rank == 4
        assert err == pytest.approx(optimum(4), rel=1e-9) and info.relative_error == pytest.approx(err, rel=1e-9)
        assert (info.num_params, info.dense_params) == (4 * 36, 24 * 12)
        # the singular values are split evenly between the factors
        np.testing.assert_allclose(np.linalg.norm(params["a"], axis=0), np.sqrt(s[:4]), rtol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(params["b"], axis=1), np.sqrt(s[:4]), rtol=1e-9)
        # rtol: the smallest rank meeting the bound, at the optimal error for that rank
        rank = int(np.argmax([optimum(r) <= 0.5 for r in range(13)]))
        spec, params, info = layers.LowRankLinearSpec.from_dense(kernel, rtol=0.5)
        assert spec.rank == rank and info.relative_error == pytest.approx(optimum(rank), rel=1e-9)
        assert optimum(rank) <= 0.5 < optimum(rank - 1)

    def test_tucker_bounds_and_exact_recovery(self):
        rng = np.random.default_rng(1)
        kernel = rng.standard_normal((24, 12))
        dims, ranks = (2, 3, 4, 3, 4), (2, 2, 3, 2, 3)
        spec, params, info = layers.TuckerLinearSpec.from_dense(kernel, ranks=ranks, in_modes=(2, 3, 4),
                                                                 out_modes=(3, 4))
        assert spec.ranks == ranks
        approx = tucker_reference(spec)({k: np.asarray(v) for k, v in params.items()})
        err_sq = np.linalg.norm(approx - kernel) ** 2
        assert 0 < err_sq <= hosvd_bound_sq(kernel.reshape(dims), ranks) * (1 + 1e-9)
        assert info.relative_error == pytest.approx(np.sqrt(err_sq) / np.linalg.norm(kernel), rel=1e-9)
        graded = graded_tensor(dims, seed=1).reshape(24, 12)  # decaying spectra: rtol can compress
        spec, params, info = layers.TuckerLinearSpec.from_dense(graded, rtol=0.3, in_modes=(2, 3, 4), out_modes=(3, 4))
        assert 0 < info.relative_error <= 0.3 and info.num_params == spec.count_params() < 24 * 12
        # a kernel that is exactly a Tucker of ranks (1, 2, 2, 2, 3) is recovered at those ranks by rtol
        exact_spec = layers.TuckerLinearSpec(24, 12, ranks=(1, 2, 2, 2, 3), in_modes=(2, 3, 4), out_modes=(3, 4))
        exact = tucker_reference(exact_spec)({k: np.asarray(v) for k, v in
                                              exact_spec.init(jax.random.key(5), jnp.float64).items()})
        spec, params, info = layers.TuckerLinearSpec.from_dense(exact, rtol=1e-8, in_modes=(2, 3, 4),
                                                                 out_modes=(3, 4))
        assert spec.ranks == (1, 2, 2, 2, 3) and info.relative_error < 1e-10

    def test_cp_exact_recovery(self):
        # (the error reported for an inexact fit is checked against the weight in TestNNX/TestEquinox.from_linear)
        exact = np.asarray(cp.to_dense(cp.random(jax.random.key(0), (3, 4, 3, 4), 2, jnp.float64))).reshape(12, 12)
        spec, params, info = layers.CPLinearSpec.from_dense(exact, rank=2, in_modes=(3, 4), out_modes=(3, 4))
        assert spec.rank == 2 and info.relative_error < 1e-6
        approx = cp_reference(spec)({k: np.asarray(v) for k, v in params.items()})
        assert info.relative_error == pytest.approx(np.linalg.norm(approx - exact) / np.linalg.norm(exact), rel=1e-6)
        # the weights are spread evenly: every factor has the same column norms
        norms = [np.linalg.norm(v, axis=0) for v in params.values()]
        for n in norms[1:]:
            np.testing.assert_allclose(n, norms[0], rtol=1e-9)


# ----------------------------------------------------------------------------------------------- nnx / eqx

NN = {
    "lowrank": (nn.LowRankLinear, teqx.LowRankLinear, dict(rank=3), dict(max_rank=3)),
    "tucker": (nn.TuckerLinear, teqx.TuckerLinear, dict(ranks=2, in_modes=(2, 3, 4), out_modes=(3, 4)),
               dict(ranks=2, in_modes=(2, 3, 4), out_modes=(3, 4))),
    "cp": (nn.CPLinear, teqx.CPLinear, dict(rank=4, in_modes=(4, 6), out_modes=(3, 4)),
           dict(rank=4, in_modes=(4, 6), out_modes=(3, 4), key=jax.random.key(1), init=cp.Init.RANDOM)),
}


class TestNNX:
    @pytest.mark.parametrize("name", list(NN))
    def test_layer(self, name):
        cls, _, kwargs, _ = NN[name]
        layer = cls(24, 12, **kwargs, param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0),
                    rngs=nnx.Rngs(0))
        lc.check_nnx_layer(layer, lc.random_input((5, 24)))
        assert layer.count_params() == layer.spec.count_params() + 12
        assert layer.flops((7, 24)) == layer.spec.flops((7, 24))
        if name == "tucker":
            assert layer.to_tucker().dims == (2, 3, 4, 3, 4)
        if name == "cp":
            assert layer.to_cp().dims == (4, 6, 3, 4) and layer.to_cp().rank == 4

    @pytest.mark.parametrize("name", list(NN))
    def test_from_linear(self, name):
        cls, _, _, conversion = NN[name]
        dense = nnx.Linear(24, 12, param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(3))
        layer, info = cls.from_linear(dense, **conversion)
        w = np.asarray(dense.kernel[...])
        err = np.linalg.norm(np.asarray(layer.weight()) - w) / np.linalg.norm(w)
        assert info.relative_error == pytest.approx(err, rel=1e-8) and 0 < err < 1
        x = lc.random_input((4, 24))
        np.testing.assert_allclose(layer(x), x @ layer.weight() + dense.bias[...][None, :], atol=1e-10)
        assert layer.param_dtype == jnp.float64 and layer.bias is not None

    def test_from_linear_lowrank_full_rank_is_exact(self):
        dense = nnx.Linear(24, 12, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
        layer, info = nn.LowRankLinear.from_linear(dense, max_rank=12)
        x = lc.random_input((4, 24))
        assert info.relative_error < 1e-12
        np.testing.assert_allclose(layer(x), dense(x), atol=1e-10)

    def test_dtypes(self):
        layer = nn.TuckerLinear(16, 8, ranks=2, param_dtype=jnp.float32, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert layer.factors["core"][...].dtype == jnp.float32
        assert layer(jnp.ones((2, 16), jnp.float32)).dtype == jnp.bfloat16

    def test_bad_input(self):
        with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
            nn.CPLinear(24, 12, rank=2, rngs=0)
        with pytest.raises(ValueError, match=r"out_modes=\(5, 2\) multiplies to 10, but out_features=12"):
            nn.TuckerLinear(24, 12, ranks=2, out_modes=(5, 2), rngs=nnx.Rngs(0))
        with pytest.raises(TypeError, match="nnx.Linear or a kernel array"):
            nn.LowRankLinear.from_linear(object(), max_rank=2)


class TestEquinox:
    @pytest.mark.parametrize("name", list(NN))
    def test_layer(self, name):
        _, cls, kwargs, _ = NN[name]
        layer = cls(24, 12, **kwargs, param_dtype=jnp.float64, bias_init=jax.nn.initializers.normal(1.0),
                    key=jax.random.key(0))
        lc.check_eqx_layer(layer, lc.random_input((5, 24)))
        assert layer.count_params() == layer.spec.count_params() + 12

    @pytest.mark.parametrize("name", list(NN))
    def test_from_linear(self, name):
        _, cls, _, conversion = NN[name]
        dense = eqx.nn.Linear(24, 12, key=jax.random.key(3), dtype=jnp.float64)
        layer, info = cls.from_linear(dense, **conversion)
        w = np.asarray(dense.weight.T)
        assert info.relative_error == pytest.approx(
            np.linalg.norm(np.asarray(layer.weight()) - w) / np.linalg.norm(w), rel=1e-8)
        x = lc.random_input((4, 24))
        np.testing.assert_allclose(layer(x), x @ layer.weight() + dense.bias[None, :], atol=1e-10)
