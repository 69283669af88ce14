"""Factorised convolutions (tnkit.layers.{CP,Tucker,TT}ConvSpec, tnkit.nn/tnkit.eqx {CP,Tucker,TT}Conv).

The oracle is ``jax.lax.conv_general_dilated`` (string dimension numbers, the geometry as lax takes it) applied with
the kernel rebuilt from the factors by independent NumPy einsums, and the source ``nnx.Conv`` / ``eqx.nn.Conv``
layers themselves for the conversions.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import lax

from tests import layer_checks as lc
from tests.helpers import graded_tensor
from tnkit import eqx as teqx
from tnkit import layers, nn, tucker

FACTORIZED, DENSE, AUTO = layers.Implementation.FACTORIZED, layers.Implementation.DENSE, layers.Implementation.AUTO
DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


# ------------------------------------------------------------------------------------------ independent oracles


def cp_kernel(spec, p):
    """W[k_1..k_N, i, o] = sum_r S_1[k_1, r] ... S_N[k_N, r] A[i, r] B[o, r]."""
    letters = "abcdefgh"[: spec.num_spatial_dims]
    ops = [np.asarray(p[f"spatial_{j}"]) for j in range(len(letters))] + [np.asarray(p["in_factor"]),
                                                                          np.asarray(p["out_factor"])]
    subscripts = ",".join(f"{c}r" for c in letters) + ",ir,or->" + letters + "io"
    return np.einsum(subscripts, *ops)


def tucker_kernel(spec, p):
    """W[k, i, o] = sum_{a, b} A[i, a] G[k, a, b] B[o, b]."""
    return np.einsum("...ab,ia,ob->...io", np.asarray(p["core"]), np.asarray(p["in_factor"]), np.asarray(p["out_factor"]))


def tt_kernel(spec, p):
    """W[k, (i_1..i_d), (o_1..o_d)] = S[k, :] G_1[:, o_1, i_1, :] ... G_d[:, o_d, i_d, :] (row-major channels)."""
    s = np.asarray(p["spatial_core"])
    w = s.reshape(-1, 1, 1, s.shape[-1])  # (K, in so far, out so far, rank)
    for j in range(spec.num_modes):
        w = np.einsum("kIOr,rmns->kInOms", w, np.asarray(p[f"core_{j}"]))
        k, i, n, o, m, r = w.shape
        w = w.reshape(k, i * n, o * m, r)
    return w[..., 0].reshape(spec.kernel_shape)


REFERENCE = {layers.CPConvSpec: cp_kernel, layers.TuckerConvSpec: tucker_kernel, layers.TTConvSpec: tt_kernel}


def lax_conv(x, w, strides, padding, dilation):
    """The dense convolution, channels last, any leading batch axes (flattened, as nnx.Conv does)."""
    n = w.ndim - 2
    batch = x.shape[: x.ndim - n - 1]
    xb = jnp.asarray(x).reshape((-1,) + x.shape[len(batch) :])
    y = lax.conv_general_dilated(
        xb, jnp.asarray(w), strides, padding, rhs_dilation=dilation, dimension_numbers=DIMENSION_NUMBERS[n],
        precision=lax.Precision.HIGHEST,
    )
    return y.reshape(batch + y.shape[1:])


# (spec, lax geometry (strides, padding, dilation) written independently of the spec's normalisation, input shape)
CASES = {
    "cp-2d": (
        layers.CPConvSpec(4, 6, (3, 2), rank=3, strides=(2, 1), padding="SAME", kernel_dilation=(1, 2)),
        ((2, 1), "SAME", (1, 2)), (2, 1, 7, 6, 4),
    ),
    "tucker-2d": (
        layers.TuckerConvSpec(4, 6, (3, 2), ranks=(3, 2), strides=2, padding=((1, 0), 2)),
        ((2, 2), [(1, 0), (2, 2)], (1, 1)), (2, 6, 7, 4),
    ),
    "tt-2d-spatial-first": (
        layers.TTConvSpec(4, 6, (3, 2), ranks=(2, 3), in_modes=(2, 2), out_modes=(3, 2), strides=2, padding="VALID",
                          kernel_dilation=(2, 1)),
        ((2, 2), "VALID", (2, 1)), (2, 7, 6, 4),
    ),
    "tt-2d-channels-first": (
        layers.TTConvSpec(8, 2, (3, 2), ranks=(2, 2), in_modes=(4, 2), out_modes=(1, 2), padding="SAME_LOWER"),
        ((1, 1), "SAME_LOWER", (1, 1)), (2, 5, 6, 8),
    ),
    "cp-1d": (layers.CPConvSpec(4, 6, 3, rank=3, strides=2, padding="VALID"), ((2,), "VALID", (1,)), (2, 9, 4)),
    "tucker-1d": (
        layers.TuckerConvSpec(4, 6, 4, ranks=2, padding="SAME", kernel_dilation=2), ((1,), "SAME", (2,)), (3, 9, 4),
    ),
    "tt-1d": (
        layers.TTConvSpec(4, 6, 3, ranks=(2, 2), in_modes=(2, 2), out_modes=(2, 3), padding=1),
        ((1,), [(1, 1)], (1,)), (9, 4),
    ),
    "cp-3d": (layers.CPConvSpec(2, 3, (2, 2, 2), rank=2, padding="SAME"), ((1, 1, 1), "SAME", (1, 1, 1)), (1, 4, 3, 3, 2)),
    "tt-3d": (
        layers.TTConvSpec(4, 3, (2, 2, 1), ranks=2, in_modes=(2, 2), out_modes=(3, 1), padding="SAME"),
        ((1, 1, 1), "SAME", (1, 1, 1)), (1, 3, 4, 3, 4),
    ),
}


def _params(spec, seed=1, dtype=jnp.float64):
    return spec.init(jax.random.key(seed), dtype)


# jitted once per (spec, implementation, shape): the whole program compiles faster than op-by-op dispatch
apply = jax.jit(layers.apply, static_argnums=0, static_argnames="implementation")


@functools.partial(jax.jit, static_argnums=(0, 3))
def sin_loss_grads(spec, params, x, implementation):
    """Gradients of ``sum(sin(apply(spec, params, x)))`` with respect to the parameters and the input."""
    loss = lambda p, xx: jnp.sum(jnp.sin(layers.apply(spec, p, xx, implementation=implementation)))  # noqa: E731
    return jax.grad(loss, argnums=(0, 1))(params, x)


class TestSpecs:
    @pytest.mark.parametrize("name", list(CASES))
    def test_every_implementation_equals_lax_conv(self, name):
        spec, (strides, padding, dilation), x_shape = CASES[name]
        params = _params(spec)
        w = REFERENCE[type(spec)](spec, params)
        assert w.shape == spec.kernel_shape
        np.testing.assert_allclose(np.asarray(spec.to_dense(params)), w, atol=1e-12, rtol=1e-10)
        if isinstance(spec, layers.TuckerConvSpec):  # the format view (identity spatial factors) is the same kernel
            np.testing.assert_allclose(np.asarray(tucker.to_dense(spec.to_tucker(params))), w, atol=1e-12, rtol=1e-10)
        x = lc.random_input(x_shape, seed=3)
        expected = lax_conv(x, w, strides, padding, dilation)
        assert spec.output_shape(x_shape) == expected.shape
        for impl in (FACTORIZED, DENSE):  # AUTO, the layers' default, is checked by TestNNX and TestEquinox
            y = apply(spec, params, x, implementation=impl)
            np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=1e-11, rtol=1e-9, err_msg=str(impl))

    def test_complex(self):
        spec, (strides, padding, dilation), x_shape = CASES["tt-1d"]
        params = _params(spec, dtype=jnp.complex128)
        x = lc.random_input(x_shape, seed=4) + 1j * lc.random_input(x_shape, seed=5)
        expected = lax_conv(x, REFERENCE[type(spec)](spec, params), strides, padding, dilation)
        for impl in (FACTORIZED, DENSE):
            y = apply(spec, params, x, implementation=impl)
            np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=1e-11, rtol=1e-9, err_msg=str(impl))

    def test_both_tt_orders_are_exercised(self):
        # the forward test covers both factorised orders of TTConvSpec: check that each case takes the one expected
        for name, order in (("tt-2d-spatial-first", "spatial_first"), ("tt-2d-channels-first", "channels_first")):
            spec, _, x_shape = CASES[name]
            costs = spec._order_costs(x_shape[0], x_shape[1:-1])
            assert min(costs, key=costs.get) == order, (name, costs)

    @pytest.mark.parametrize("name", ["cp-2d", "tucker-2d", "tt-2d-spatial-first", "tt-2d-channels-first"])
    def test_grads_equal_dense_path(self, name):
        spec, (strides, padding, dilation), x_shape = CASES[name]
        params = _params(spec, seed=2)
        x = lc.random_input(x_shape, seed=6)
        g_fac = sin_loss_grads(spec, params, x, FACTORIZED)
        g_den = sin_loss_grads(spec, params, x, DENSE)
        for a, b in zip(jax.tree.leaves(g_fac), jax.tree.leaves(g_den)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-9, rtol=1e-7)
        # the input gradient equals the adjoint of the dense convolution with the NumPy kernel: conv^T(cos(y))
        w = REFERENCE[type(spec)](spec, params)
        y, vjp = jax.vjp(lambda xx: lax_conv(xx, w, strides, padding, dilation), x)
        np.testing.assert_allclose(np.asarray(g_fac[1]), np.asarray(vjp(jnp.cos(y))[0]), atol=1e-10)

    @pytest.mark.parametrize(
        "spec",
        [
            layers.CPConvSpec(4, 6, (3, 2), rank=8, padding="VALID"),
            layers.TuckerConvSpec(4, 6, (3, 2), ranks=(3, 4), padding="VALID"),
            layers.TTConvSpec(4, 6, (3, 2), ranks=3, in_modes=(2, 2), out_modes=(3, 2), padding="VALID"),
        ],
        ids=["cp", "tucker", "tt"],
    )
    def test_init_variance_matches_lecun(self, spec):
        # one output position (input window = kernel, VALID): Var y = ||x||^2 / fan_in, fan_in = 3 * 2 * 4
        x = lc.random_input((1, 3, 2, 4), seed=7)
        expected = float(np.sum(np.asarray(x) ** 2)) / (3 * 2 * 4)
        ratio = lc.init_output_variance(spec, x) / expected
        assert abs(ratio - 1) < 0.2, ratio
        # the statistic is sharp enough to reject a wrong fan-in (half or twice the variance)
        assert abs(2 * ratio - 1) >= 0.2 and abs(ratio / 2 - 1) >= 0.2, ratio

    def test_param_shapes_and_counts(self):
        cp = layers.CPConvSpec(4, 6, (3, 2), rank=3)
        assert cp.param_shapes() == {"spatial_0": (3, 3), "spatial_1": (2, 3), "in_factor": (4, 3), "out_factor": (6, 3)}
        assert cp.count_params() == 3 * (3 + 2 + 4 + 6)
        tucker = layers.TuckerConvSpec(4, 6, (3, 2), ranks=(3, 2))
        assert tucker.param_shapes() == {"in_factor": (4, 3), "core": (3, 2, 3, 2), "out_factor": (6, 2)}
        assert tucker.count_params() == 4 * 3 + 3 * 2 * 3 * 2 + 6 * 2
        tt = layers.TTConvSpec(4, 6, (3, 2), ranks=(2, 3), in_modes=(2, 2), out_modes=(3, 2))
        assert tt.ranks == (1, 2, 3, 1)
        assert tt.param_shapes() == {"spatial_core": (3, 2, 2), "core_0": (2, 3, 2, 3), "core_1": (3, 2, 2, 1)}
        assert tt.count_params() == 3 * 2 * 2 + 2 * 3 * 2 * 3 + 3 * 2 * 2 * 1
        assert tt.fan_in == cp.fan_in == 3 * 2 * 4

    def test_costs_closed_forms_and_auto(self):
        # 1-D, k = 3, VALID, length 10 -> 8 output positions, in 4, out 6; multiply-adds per batch element:
        dense_conv = 8 * 3 * 4 * 6
        cp = layers.CPConvSpec(4, 6, 3, rank=2, padding="VALID")
        # 1x1 to R at 10 positions, depthwise k at 8, 1x1 to out at 8; rebuild: Khatri-Rao (3 R + 12 R) + 12 * 6 * R
        costs = cp.costs((5, 10, 4))
        assert costs[FACTORIZED] == 5 * (10 * 4 * 2 + 8 * 3 * 2 + 8 * 2 * 6)
        assert costs[DENSE] == (3 * 2 + 12 * 2 + 72 * 2) + 5 * dense_conv
        wide = layers.CPConvSpec(4, 6, 3, rank=20, padding="VALID")  # 2240 per element against 1740 + 576 per element
        assert wide.choose((1, 10, 4)) is FACTORIZED and wide.choose((2, 10, 4)) is DENSE
        assert wide.flops((2, 10, 4)) == 2 * (1740 + 2 * dense_conv)
        # TTConv's AUTO weighs the factorised multiply-adds by 4 (measured time per multiply-add against lax conv):
        # a third of the dense multiply-adds is not enough to pick it, a twentieth is
        ttc = layers.TTConvSpec(64, 64, (3, 3), ranks=4, padding="SAME", in_modes=(8, 8), out_modes=(8, 8))
        c = ttc.costs((32, 16, 16, 64))
        assert 0.2 < c[FACTORIZED] / c[DENSE] < 0.5 and ttc.choose((32, 16, 16, 64)) is DENSE
        assert ttc.estimated_costs((32, 16, 16, 64)) == {FACTORIZED: 4 * c[FACTORIZED], DENSE: c[DENSE]}
        thin = layers.TTConvSpec(1024, 1024, (3, 3), ranks=2, padding="SAME", in_modes=(32, 32), out_modes=(32, 32))
        c = thin.costs((4, 8, 8, 1024))
        assert c[FACTORIZED] * 4 < c[DENSE] and thin.choose((4, 8, 8, 1024)) is FACTORIZED
        # Tucker-2, 2-D, (3, 3), stride 2, SAME, 8 x 7 -> 4 x 4: 1x1 at 56 positions, core conv and 1x1 at 16
        tucker = layers.TuckerConvSpec(4, 6, (3, 3), ranks=(2, 3), strides=2, padding="SAME")
        costs = tucker.costs((3, 8, 7, 4))
        assert costs[FACTORIZED] == 3 * (56 * 4 * 2 + 16 * 9 * 2 * 3 + 16 * 3 * 6)
        assert costs[DENSE] == (9 * 2 * 3 * 4 + 9 * 4 * 3 * 6) + 3 * 16 * 9 * 4 * 6
        # TT with one channel mode, r_0 = 2: channels first = 10 * (2 * 6) * 4 + 8 * 3 * 2 * 6 = 768 per element;
        # spatial first = 8 * 3 * 4 * 2 + 8 * 6 * (2 * 4) = 576; rebuild 3 * 2 + 3 * 2 * 6 * 4 = 150
        tt = layers.TTConvSpec(4, 6, 3, ranks=2, in_modes=(4,), out_modes=(6,), padding="VALID")
        costs = tt.costs((2, 10, 4))
        assert costs[FACTORIZED] == 2 * 576
        assert costs[DENSE] == 150 + 2 * dense_conv

    def test_spec_is_hashable_static(self):
        a = layers.TTConvSpec(4, 6, (3, 2), ranks=(2, 3), in_modes=(2, 2), out_modes=(3, 2), strides=2, padding=1)
        b = layers.TTConvSpec(4, 6, [3, 2], ranks=(1, 2, 3, 1), in_modes=(2, 2), out_modes=(3, 2), strides=(2, 2),
                              padding=((1, 1), (1, 1)))
        assert a == b and hash(a) == hash(b)

    @pytest.mark.parametrize(
        "make, error, match",
        [
            (lambda: layers.CPConvSpec(4, 6, (3, 0), rank=2), ValueError, r"kernel_size must be .* got \(3, 0\)"),
            (lambda: layers.CPConvSpec(4, 6, (3, 3), rank=2, strides=(1, 1, 1)), ValueError,
             r"strides must have one entry per spatial axis \(2 for this kernel\), got \(1, 1, 1\)"),
            (lambda: layers.CPConvSpec(4, 6, (3, 3), rank=2, kernel_dilation=0), ValueError,
             r"kernel_dilation must hold positive ints, got \(0, 0\)"),
            (lambda: layers.CPConvSpec(4, 6, (3, 3), rank=2, padding="CIRCULAR"), ValueError,
             "zero padding only.*got 'CIRCULAR'"),
            (lambda: layers.CPConvSpec(4, 6, (3, 3), rank=2, padding=((1, 2, 3), 0)), ValueError,
             r"padding entries must be ints or \(low, high\) pairs"),
            (lambda: layers.CPConvSpec(4, 6, (3, 3), rank=0), ValueError, "rank must be a positive int, got 0"),
            (lambda: layers.CPConvSpec(4, 6, (3, 3), rank=(2,)), TypeError, r"rank must be an int \(the CP rank\)"),
            (lambda: layers.TuckerConvSpec(4, 6, 3, ranks=(1, 2, 3)), ValueError, r"pair \(r_in, r_out\)"),
            (lambda: layers.TTConvSpec(4, 6, 3, ranks=2, in_modes=(2, 3), out_modes=(3, 2)), ValueError,
             r"in_modes=\(2, 3\) multiplies to 6, but in_features=4"),
            (lambda: layers.TTConvSpec(4, 6, 3, ranks=(2, 2, 2), in_modes=(2, 2), out_modes=(3, 2)), ValueError,
             "2 inner ranks or 4 ranks"),
            (lambda: layers.TTConvSpec(0, 6, 3, ranks=2), ValueError, "in_features must be a positive int, got 0"),
        ],
    )
    def test_bad_spec(self, make, error, match):
        with pytest.raises(error, match=match):
            make()

    def test_bad_apply(self):
        spec = layers.TuckerConvSpec(4, 6, (3, 2), ranks=2, padding="VALID")
        params = _params(spec)
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., \*spatial, in_features\) with 2 spatial "
                                             r"axes and in_features=4, got \(2, 5, 5, 3\)"):
            layers.apply(spec, params, jnp.ones((2, 5, 5, 3)))
        with pytest.raises(ValueError, match=r"x must have shape .* got \(5, 4\)"):
            layers.apply(spec, params, jnp.ones((5, 4)))
        with pytest.raises(ValueError, match=r"spatial shape \(2, 5\), too small .* output spatial shape would be "
                                             r"\(0, 4\)"):
            layers.apply(spec, params, jnp.ones((1, 2, 5, 4)))
        with pytest.raises(ValueError, match=r"params\['core'\] must have shape \(3, 2, 2, 2\)"):
            layers.apply(spec, {**params, "core": jnp.ones((3, 2, 2, 3))}, jnp.ones((1, 5, 5, 4)))
        with pytest.raises(ValueError, match="needs ranks or rtol"):
            layers.TuckerConvSpec.from_dense(jnp.ones((3, 3, 4, 6)))
        with pytest.raises(ValueError, match="needs max_rank or rtol"):
            layers.TTConvSpec.from_dense(jnp.ones((3, 3, 4, 6)))
        with pytest.raises(ValueError, match=r"kernel must have shape \(\*kernel_size, in_features, out_features\)"):
            layers.CPConvSpec.from_dense(jnp.ones((4, 6)), rank=2)


# -------------------------------------------------------------------------------------------------- conversions


def _unfolding_tail(w, rows, rank):
    """Relative best rank-``rank`` error of the unfolding with ``rows`` (a tuple of axes) as rows, by NumPy SVD."""
    w = np.asarray(w)
    cols = [a for a in range(w.ndim) if a not in rows]
    m = np.transpose(w, list(rows) + cols).reshape(int(np.prod([w.shape[a] for a in rows])), -1)
    s = np.linalg.svd(m, compute_uv=False)
    return float(np.sqrt(np.sum(s[rank:] ** 2)) / np.linalg.norm(s))


def _nnx_conv(**kwargs):
    base = dict(strides=(2, 1), padding=((1, 0), (0, 1)), kernel_dilation=(1, 2), param_dtype=jnp.float64,
                bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(3))
    return nnx.Conv(4, 6, (3, 2), **{**base, **kwargs})


class TestFromConv:
    def test_tucker(self):
        conv = _nnx_conv()
        w = np.asarray(conv.kernel[...])
        x = lc.random_input((2, 7, 6, 4), seed=8)
        layer, info = nn.TuckerConv.from_conv(conv, ranks=(4, 6))
        assert info.relative_error < 1e-12 and layer.spec.ranks == (4, 6)
        assert (layer.spec.strides, layer.spec.padding, layer.spec.kernel_dilation) == ((2, 1), ((1, 0), (0, 1)), (1, 2))
        np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(conv(x)), atol=1e-10)
        # the truncated conversions through the spec (the same code, without building layers)
        spec, params, info = layers.TuckerConvSpec.from_dense(w, ranks=(2, 3))
        assert spec.ranks == (2, 3)
        err = np.linalg.norm(tucker_kernel(spec, params) - w) / np.linalg.norm(w)
        assert info.relative_error == pytest.approx(err, rel=1e-9)
        # HOSVD bounds: rank-2 in-unfolding optimum <= err <= sqrt(tail_in^2 + tail_out^2)
        tail_in, tail_out = _unfolding_tail(w, (2,), 2), _unfolding_tail(w, (3,), 3)
        assert tail_in - 1e-12 <= err <= np.hypot(tail_in, tail_out) + 1e-12
        # rtol: a guarantee, here on a kernel with a decaying spectrum (compressible)
        w = graded_tensor((3, 2, 4, 6), seed=0)
        spec, params, info = layers.TuckerConvSpec.from_dense(w, rtol=0.4)
        err = np.linalg.norm(tucker_kernel(spec, params) - w) / np.linalg.norm(w)
        assert err <= 0.4 and info.relative_error == pytest.approx(err, rel=1e-9)
        assert info.num_params == spec.count_params() < info.dense_params == w.size

    def test_tt(self):
        conv = _nnx_conv()
        w = np.asarray(conv.kernel[...])
        x = lc.random_input((2, 7, 6, 4), seed=8)
        layer, info = nn.TTConv.from_conv(conv, max_rank=100, in_modes=(2, 2), out_modes=(3, 2))
        assert info.relative_error < 1e-12
        np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(conv(x)), atol=1e-10)
        spec, params, info = layers.TTConvSpec.from_dense(w, max_rank=2, in_modes=(2, 2), out_modes=(3, 2))
        assert spec.ranks == (1, 2, 2, 1)
        err = np.linalg.norm(tt_kernel(spec, params) - w) / np.linalg.norm(w)
        assert info.relative_error == pytest.approx(err, rel=1e-9)
        # TT-SVD bounds on the tensor T[k, (o_1, i_1), (o_2, i_2)]: the first bond's optimum <= err <= the root sum
        # of squares of every bond's optimum (Oseledets 2011)
        t = w.reshape(6, 2, 2, 3, 2).transpose(0, 3, 1, 4, 2)  # (K, o_1, i_1, o_2, i_2)
        tails = [_unfolding_tail(t, (0,), 2), _unfolding_tail(t, (0, 1, 2), 2)]
        assert max(tails) - 1e-12 <= err <= np.sqrt(np.sum(np.square(tails))) + 1e-12
        w = graded_tensor((3, 2, 4, 6), seed=0)
        spec, params, info = layers.TTConvSpec.from_dense(w, rtol=0.3, in_modes=(2, 2), out_modes=(3, 2))
        err = np.linalg.norm(tt_kernel(spec, params) - w) / np.linalg.norm(w)
        assert err <= 0.3 and info.relative_error == pytest.approx(err, rel=1e-9)
        assert info.num_params == spec.count_params() < info.dense_params == w.size

    def test_cp(self):
        rng = np.random.default_rng(1)
        factors = [rng.standard_normal((n, 2)) for n in (3, 2, 4, 6)]
        low_rank = np.einsum("ar,br,ir,or->abio", *factors)
        conv = _nnx_conv()
        conv.kernel = nnx.Param(jnp.asarray(low_rank))
        x = lc.random_input((2, 7, 6, 4), seed=8)
        layer, info = nn.CPConv.from_conv(conv, rank=2)
        assert info.relative_error < 1e-6 and layer.spec.rank == 2
        np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(conv(x)), atol=1e-5 * float(jnp.abs(conv(x)).max()))
        # a generic kernel: no CP rank-2 tensor beats the rank-2 optimum of any unfolding; ALS never exceeds 1
        generic = _nnx_conv()
        w = np.asarray(generic.kernel[...])
        layer, info = nn.CPConv.from_conv(generic, rank=2)
        err = np.linalg.norm(np.asarray(layer.weight()) - w) / np.linalg.norm(w)
        assert info.relative_error == pytest.approx(err, rel=1e-9)
        assert max(_unfolding_tail(w, (a,), 2) for a in range(4)) - 1e-12 <= err <= 1

    @pytest.mark.parametrize(
        "conv, match",
        [
            (lambda: nnx.Conv(4, 6, 3, feature_group_count=2, rngs=nnx.Rngs(0)),
             r"feature_group_count must be 1 \(grouped and depthwise convolutions are not supported\), got 2"),
            (lambda: nnx.Conv(4, 6, 3, input_dilation=2, rngs=nnx.Rngs(0)), "input_dilation must be 1"),
            (lambda: nnx.Conv(4, 6, 3, padding="CIRCULAR", rngs=nnx.Rngs(0)), "zero padding only.*'CIRCULAR'"),
            (lambda: nnx.Conv(4, 6, 3, mask=jnp.ones((3, 4, 6)), rngs=nnx.Rngs(0)), "mask must be None"),
        ],
    )
    def test_unsupported_conv(self, conv, match):
        with pytest.raises(ValueError, match=match):
            nn.TuckerConv.from_conv(conv(), ranks=2)

    def test_bad_from_conv_calls(self):
        with pytest.raises(TypeError, match="conv must be a flax.nnx.Conv, got Linear"):
            nn.CPConv.from_conv(nnx.Linear(4, 6, rngs=nnx.Rngs(0)), rank=2)
        with pytest.raises(TypeError, match=r"\['strides'\] are copied from conv"):
            nn.TuckerConv.from_conv(nnx.Conv(4, 6, 3, rngs=nnx.Rngs(0)), ranks=2, strides=2)
        with pytest.raises(TypeError, match=r"use TTConv.from_conv\(conv, ...\), not from_linear"):
            nn.TTConv.from_linear(nnx.Linear(4, 6, rngs=nnx.Rngs(0)), max_rank=2)
        with pytest.raises(TypeError, match="conv must be an equinox.nn.Conv, got Linear"):
            teqx.CPConv.from_conv(eqx.nn.Linear(4, 6, key=jax.random.key(0)), rank=2)
        with pytest.raises(ValueError, match=r"conv.groups must be 1 \(grouped"):
            teqx.TuckerConv.from_conv(eqx.nn.Conv2d(4, 6, 3, groups=2, key=jax.random.key(0)), ranks=2)
        with pytest.raises(ValueError, match="padding_mode must be 'ZEROS'"):
            teqx.TuckerConv.from_conv(eqx.nn.Conv1d(4, 6, 3, padding_mode="REFLECT", key=jax.random.key(0)), ranks=2)


# ------------------------------------------------------------------------------------------------------- layers


def check_nnx_conv(layer, x, geometry, *, atol=1e-9):
    """Forward = lax conv of the layer's kernel plus bias (batched and unbatched input); split/merge; an
    ``nnx.Optimizer`` step lowers the loss; repeated jitted calls do not retrace."""
    expected = lax_conv(x, layer.weight(), *geometry)
    if layer.bias is not None:
        expected = expected + layer.bias[...].reshape((1,) * (expected.ndim - 1) + (-1,))
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(expected), atol=atol, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(layer(x[0])), np.asarray(expected[0]), atol=atol, rtol=1e-8)
    graphdef, state = nnx.split(layer)
    np.testing.assert_allclose(np.asarray(nnx.merge(graphdef, state)(x)), np.asarray(layer(x)), atol=0)

    traces = []

    @nnx.jit
    def step(model, optimizer, xx):
        traces.append(1)
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(xx) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    optimizer = nnx.Optimizer(layer, optax.sgd(0.05), wrt=nnx.Param)
    losses = [float(step(layer, optimizer, x)) for _ in range(4)]
    assert losses[-1] < losses[0], losses
    assert len(traces) == 1, f"retraced {len(traces)} times"


def check_eqx_conv(layer, x, geometry, *, atol=1e-9):
    """Forward = lax conv of the layer's kernel plus bias; ``vmap`` over single examples agrees; an optax step under
    ``eqx.filter_jit`` lowers the loss without retracing."""
    expected = lax_conv(x, layer.weight(), *geometry)
    if layer.bias is not None:
        expected = expected + layer.bias.reshape((1,) * (expected.ndim - 1) + (-1,))
    # jitted: one compile instead of one per eager op (the eager path is covered by the nnx checks)
    forward = eqx.filter_jit(lambda m, xx: (m(xx), jax.vmap(m)(xx)))
    y, y_vmapped = forward(layer, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=atol, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(y_vmapped), np.asarray(expected), atol=atol, rtol=1e-8)
    opt = optax.sgd(0.05)
    traces = []

    @eqx.filter_jit
    def step(model, state, xx):
        traces.append(1)
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean(m(xx) ** 2))(model)
        updates, state = opt.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, loss

    state = opt.init(eqx.filter(layer, eqx.is_array))
    losses = []
    for _ in range(4):
        layer, state, loss = step(layer, state, x)
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
    assert len(traces) == 1, f"retraced {len(traces)} times"


LAYER_ARGS = {
    "CPConv": dict(rank=3),
    "TuckerConv": dict(ranks=(3, 2)),
    "TTConv": dict(ranks=2, in_modes=(2, 2), out_modes=(3, 2)),
}
GEOMETRY = dict(strides=(2, 1), padding="SAME", kernel_dilation=(1, 2))
LAX_GEOMETRY = ((2, 1), "SAME", (1, 2))


class TestNNX:
    @pytest.mark.parametrize("name", list(LAYER_ARGS))
    def test_layer(self, name):
        layer = getattr(nn, name)(4, 6, (3, 2), **LAYER_ARGS[name], **GEOMETRY, param_dtype=jnp.float64,
                                  bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
        assert layer.implementation is AUTO
        check_nnx_conv(layer, lc.random_input((2, 5, 4, 4), seed=9), LAX_GEOMETRY)

    def test_count_params_flops_override_and_dtypes(self):
        layer = nn.TuckerConv(4, 6, (3, 2), ranks=(3, 2), param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        assert layer.count_params() == 4 * 3 + 3 * 2 * 3 * 2 + 6 * 2 + 6
        assert layer.flops((2, 5, 4, 4)) == layer.spec.flops((2, 5, 4, 4))
        x = lc.random_input((2, 5, 4, 4))
        np.testing.assert_allclose(layer(x, implementation=DENSE), layer(x, implementation=FACTORIZED), atol=1e-12)
        low = nn.CPConv(4, 6, 3, rank=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert low.factors["in_factor"][...].dtype == jnp.float32
        assert low(jnp.ones((2, 5, 4), jnp.float32)).dtype == jnp.bfloat16

    def test_bad_input(self):
        with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
            nn.CPConv(4, 6, 3, rank=2, rngs=0)
        with pytest.raises(ValueError, match=r"out_modes=\(5, 2\) multiplies to 10, but out_features=6"):
            nn.TTConv(4, 6, 3, ranks=2, in_modes=(2, 2), out_modes=(5, 2), rngs=nnx.Rngs(0))


class TestEquinox:
    @pytest.mark.parametrize("name", ["TTConv"])
    def test_layer(self, name):
        layer = getattr(teqx, name)(4, 6, (3, 2), **LAYER_ARGS[name], **GEOMETRY, param_dtype=jnp.float64,
                                    bias_init=jax.nn.initializers.normal(1.0), key=jax.random.key(0))
        check_eqx_conv(layer, lc.random_input((2, 5, 4, 4), seed=9), LAX_GEOMETRY)

    def test_from_conv(self):
        conv = eqx.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2),
                             key=jax.random.key(3), dtype=jnp.float64)
        layer, info = teqx.TTConv.from_conv(conv, max_rank=100, in_modes=(2, 2), out_modes=(3, 2))
        assert info.relative_error < 1e-12
        x = lc.random_input((2, 7, 6, 4), seed=10)  # channels last here; equinox's Conv is channels first
        expected = jax.vmap(conv)(jnp.moveaxis(x, -1, 1))
        np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(jnp.moveaxis(expected, 1, -1)), atol=1e-10)
        assert layer.count_params() == layer.spec.count_params() + 6
        same, info = teqx.TuckerConv.from_conv(eqx.nn.Conv1d(4, 6, 3, padding="SAME", key=jax.random.key(4),
                                                             dtype=jnp.float64), ranks=(4, 6))
        assert info.relative_error < 1e-12 and same.spec.padding == "SAME"
