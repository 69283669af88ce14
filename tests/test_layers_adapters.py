"""Adapters (tnkit.layers.AdapterSpec; tnkit.nn and tnkit.eqx LoRA, TuckerAdapter, TTAdapter) against dense maths:
the adapted layer is the base layer with kernel W_0 + dW, dW rebuilt from the factors by NumPy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests import layer_checks as lc
from tnkit import eqx as teqx
from tnkit import layers, nn

FAC, DENSE, AUTO = layers.Implementation.FACTORIZED, layers.Implementation.DENSE, layers.Implementation.AUTO


# ------------------------------------------------------------------------------------- NumPy reconstructions


def tucker_tensor(core, factors):
    """core x_1 U_1 ... x_N U_N by one NumPy einsum (sublist form)."""
    n = len(factors)
    operands = [core, list(range(n))]
    for k, u in enumerate(factors):
        operands += [u, [n + k, k]]
    return np.einsum(*operands, list(range(n, 2 * n)))


def tt_matrix_dense(cores):
    """W[(i_1..i_d), (j_1..j_d)] (in rows, out columns) from cores (r, m_k out, n_k in, s)."""
    w = np.ones((1, 1, 1))  # (out so far, in so far, rank)
    for g in cores:
        w = np.einsum("abr,rmns->ambns", w, g)
        a, m, b, n, s = w.shape
        w = w.reshape(a * m, b * n, s)
    return w[:, :, 0].T


def delta_reference(spec, params):
    """The update dW = scale * U in the kernel layout, U rebuilt from the factors by NumPy only."""
    p = {k: np.asarray(v) for k, v in params.items()}
    u = spec.update
    if isinstance(u, layers.LowRankLinearSpec):
        m = p["a"] @ p["b"]
    elif isinstance(u, layers.TuckerLinearSpec):
        factors = [p[f"in_factor_{k}"] for k in range(len(u.in_modes))]
        factors += [p[f"out_factor_{k}"] for k in range(len(u.out_modes))]
        m = tucker_tensor(p["core"], factors)
    elif isinstance(u, layers.TTLinearSpec):
        m = tt_matrix_dense([p[f"core_{k}"] for k in range(u.num_modes)])
    else:
        raise TypeError(type(u))
    return spec.scale * m.reshape(spec.kernel_shape)


def random_params(spec, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in spec.param_shapes().items():
        v = rng.standard_normal(shape)
        if np.issubdtype(dtype, np.complexfloating):
            v = v + 1j * rng.standard_normal(shape)
        out[name] = jnp.asarray(0.5 * v, dtype)
    return out


def conv_reference(x, kernel, channels_last=True):
    """Stride-1 'SAME' convolution by lax (the definition the layers use), NHWC/HWIO or NCHW/OIHW."""
    ns = kernel.ndim - 2
    sp = "DHW"[3 - ns :]
    if channels_last:
        dn = ("N" + sp + "C", sp + "IO", "N" + sp + "C")
    else:
        dn = ("NC" + sp, "OI" + sp, "NC" + sp)
    return jax.lax.conv_general_dilated(
        x, kernel, (1,) * ns, "SAME", dimension_numbers=dn, precision=jax.lax.Precision.HIGHEST
    )


def set_factors(model, params):
    for k, v in params.items():
        model.factors[k] = nn.AdapterParam(jnp.asarray(v))


# Closed forms of the trainable parameter counts (bias and frozen kernel excluded).
def lora_count(n_in, n_out, r):
    return r * (n_in + n_out)


def tucker_count(dims, ranks):
    return int(np.prod(ranks)) + sum(n * r for n, r in zip(dims, ranks))


def tt_count(in_modes, out_modes, ranks):
    return sum(ranks[k] * out_modes[k] * in_modes[k] * ranks[k + 1] for k in range(len(in_modes)))


LORA = layers.AdapterSpec.lora((24, 12), rank=3, alpha=6.0)
TUCKER = layers.AdapterSpec.tucker((3, 2, 4, 5), ranks=(2, 2, 3, 2), alpha=0.7)
TT = layers.AdapterSpec.tt((24, 12), ranks=(3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), alpha=0.5)


def linear_adapter(kind, base, **kw):
    if kind == "lora":
        return nn.LoRA(base, rank=3, alpha=6.0, rngs=nnx.Rngs(1), **kw)
    if kind == "tucker":
        return nn.TuckerAdapter(base, ranks=(3, 3), alpha=0.7, rngs=nnx.Rngs(1), **kw)
    return nn.TTAdapter(base, ranks=(3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), alpha=0.5, rngs=nnx.Rngs(1), **kw)


def eqx_linear_adapter(kind, base, **kw):
    if kind == "lora":
        return teqx.LoRA(base, rank=3, alpha=6.0, key=jax.random.key(1), **kw)
    if kind == "tucker":
        return teqx.TuckerAdapter(base, ranks=(3, 3), alpha=0.7, key=jax.random.key(1), **kw)
    return teqx.TTAdapter(base, ranks=(3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), alpha=0.5,
                          key=jax.random.key(1), **kw)


def nnx_linear(seed=0):
    return nnx.Linear(24, 12, param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(seed))


# ----------------------------------------------------------------------------------------------------- specs


class TestSpecs:
    @pytest.mark.parametrize(
        "spec, dtype",
        [(LORA, np.float64), (TUCKER, np.float64), (TUCKER, np.complex128), (TT, np.float64)],
        ids=["lora", "tucker", "tucker-complex", "tt"],
    )
    def test_update_equals_numpy(self, spec, dtype):
        params = random_params(spec, seed=1, dtype=dtype)
        delta = delta_reference(spec, params)
        np.testing.assert_allclose(np.asarray(spec.delta(params)), delta, atol=1e-12)
        n_in, n_out = layers.kernel_matrix_shape(spec.kernel_shape)
        x = lc.random_input((2, 3, n_in)).astype(dtype)
        expected = np.asarray(x) @ delta.reshape(n_in, n_out)
        for impl in (FAC, DENSE, AUTO):
            y = spec.apply_update(params, x, implementation=impl)
            np.testing.assert_allclose(np.asarray(y), expected, atol=1e-10, err_msg=str(impl))

    def test_tucker_update_keeps_the_kernel_modes(self):
        params = random_params(TUCKER, seed=2)
        delta = np.asarray(TUCKER.delta(params))
        assert TUCKER.update.in_modes == (3, 2, 4) and TUCKER.update.out_modes == (5,)
        np.testing.assert_allclose(delta, delta_reference(TUCKER, params), atol=1e-12)
        # the multilinear rank of dW in the kernel's own modes is at most the Tucker ranks
        for k, r in enumerate((2, 2, 3, 2)):
            unfolding = np.moveaxis(delta, k, 0).reshape(delta.shape[k], -1)
            assert np.linalg.matrix_rank(unfolding, tol=1e-9) == r

    @pytest.mark.parametrize(
        "spec, zero", [(LORA, "b"), (TUCKER, "core"), (TT, "core_2")], ids=["lora", "tucker", "tt"]
    )
    def test_init_is_zero_and_the_gradient_reaches_the_zero_factor(self, spec, zero):
        params = spec.init(jax.random.key(0), jnp.float64)
        assert not np.any(np.asarray(params[zero]))
        assert not np.any(np.asarray(spec.delta(params)))
        others = [k for k in params if k != zero]
        assert all(np.any(np.asarray(params[k])) for k in others)
        n_in, n_out = layers.kernel_matrix_shape(spec.kernel_shape)
        x = lc.random_input((5, n_in))
        w0 = lc.random_input((n_in, n_out), seed=3)

        def loss(p):
            return jnp.sum(jnp.sin(x @ (w0 + spec.delta(p).reshape(n_in, n_out))))

        grads = jax.jit(jax.grad(loss))(params)
        g_w = np.asarray(x).T @ np.cos(np.asarray(x @ w0))  # dL/dW at dW = 0
        if spec is LORA:  # dL/dB = (alpha / r) A^T dL/dW
            expected = 6.0 / 3 * np.asarray(params["a"]).T @ g_w
        elif spec is TUCKER:  # dL/dG = alpha (dL/dW) x_k U_k^T
            p = {k: np.asarray(v) for k, v in params.items()}
            t = g_w.reshape(spec.kernel_shape)
            us = [p[f"in_factor_{k}"] for k in range(3)] + [p["out_factor_0"]]
            expected = 0.7 * tucker_tensor(t, [u.T for u in us])
        else:
            expected = None
        if expected is not None:
            np.testing.assert_allclose(np.asarray(grads[zero]), expected, atol=1e-10, rtol=1e-9)
        assert np.linalg.norm(np.asarray(grads[zero])) > 1e-3
        for k in others:  # they multiply the zero factor
            assert not np.any(np.asarray(grads[k])), k

    def test_param_counts_closed_forms(self):
        assert LORA.count_params() == lora_count(24, 12, 3) == 108
        assert TUCKER.count_params() == tucker_count((3, 2, 4, 5), (2, 2, 3, 2)) == 24 + 6 + 4 + 12 + 10
        assert TT.count_params() == tt_count((2, 3, 4), (3, 2, 2), (1, 3, 2, 1)) == 18 + 36 + 16
        assert layers.AdapterSpec.tucker((3, 3, 16, 32), ranks=8).update.ranks == (3, 3, 8, 8)
        assert LORA.scale == 2.0 and TUCKER.scale == 0.7 and TT.scale == 0.5
        assert layers.AdapterSpec.lora((8, 4), rank=2).scale == 1.0
        assert layers.AdapterSpec.lora((8, 4), rank=2, alpha=1).scale == 0.5

    def test_linear_adapter_costs_and_auto_choice(self):
        # LoRA 64 -> 32, rank 4. Per row: x W_0 = 2048, x A B = 4 * 96 = 384; dense: rebuild 64*4*32 = 8192 plus
        # the addition 2048 once, then 2048 per row. Factorised wins up to 10240 / 384 = 26.7 rows.
        spec = layers.AdapterSpec.lora((64, 32), rank=4)
        for batch in (1, 100):
            costs = spec.linear_costs((batch, 64))
            assert costs[FAC] == 2048 * batch + 384 * batch
            assert costs[DENSE] == 8192 + 2048 + 2048 * batch
        base = nnx.Linear(64, 32, rngs=nnx.Rngs(0))
        model = nn.LoRA(base, rank=4, rngs=nnx.Rngs(1))
        assert model._resolve(None, (26, 64)) is FAC and model._resolve(None, (27, 64)) is DENSE
        assert model.flops((26, 64)) == 2 * (2048 + 384) * 26
        assert model.flops((27, 64), DENSE) == 2 * (8192 + 2048 + 2048 * 27)

    def test_tt_from_pretrained_error_bounds(self):
        rng = np.random.default_rng(4)
        kernel = rng.standard_normal((3, 2, 4, 6))  # conv kernel; matrix view (24, 6)
        in_modes, out_modes = (4, 6), (2, 3)
        spec, params, residual, info = layers.AdapterSpec.tt_from_pretrained(
            kernel, max_rank=3, in_modes=in_modes, out_modes=out_modes)
        assert spec.update.ranks == (1, 3, 1) and spec.scale == 1.0 and residual.shape == kernel.shape
        tt = tt_matrix_dense([np.asarray(params[f"core_{k}"]) for k in range(2)])
        np.testing.assert_allclose(np.asarray(residual).reshape(24, 6), kernel.reshape(24, 6) - tt, atol=1e-12)
        err = np.linalg.norm(np.asarray(residual)) / np.linalg.norm(kernel)
        assert info.relative_error == pytest.approx(err, rel=1e-9)
        # TT-SVD with d = 2 is the truncated SVD of the interleaved unfolding (out_1 in_1) x (out_2 in_2):
        # Eckart-Young, the optimum, computed here by NumPy.
        t = kernel.reshape(4, 6, 2, 3).transpose(2, 0, 3, 1).reshape(8, 18)  # rows (m_1, n_1), cols (m_2, n_2)
        s = np.linalg.svd(t, compute_uv=False)
        assert err == pytest.approx(np.sqrt(np.sum(s[3:] ** 2)) / np.linalg.norm(kernel), rel=1e-8)
        # d = 3 (in_modes (2, 3, 4), out_modes (3, 2, 2)): TT-SVD quasi-optimality ||R||^2 <= sum_k e_k^2, e_k the
        # best rank-2 error of the k-th unfolding of the interleaved tensor (m_1 n_1, m_2 n_2, m_3 n_3)
        w = rng.standard_normal((24, 12))
        spec3, _, residual3, _ = layers.AdapterSpec.tt_from_pretrained(
            w, max_rank=2, in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        assert spec3.update.ranks == (1, 2, 2, 1)
        t = w.T.reshape(3, 2, 2, 2, 3, 4).transpose(0, 3, 1, 4, 2, 5).reshape(6, 6, 8)
        bound = sum(np.sum(np.linalg.svd(t.reshape(n, -1), compute_uv=False)[2:] ** 2) for n in (6, 36))
        best = max(np.sum(np.linalg.svd(t.reshape(n, -1), compute_uv=False)[2:] ** 2) for n in (6, 36))
        assert best <= np.sum(np.asarray(residual3) ** 2) <= bound * (1 + 1e-10)
        # a tolerance is met
        _, _, residual, info = layers.AdapterSpec.tt_from_pretrained(kernel, rtol=0.4, in_modes=in_modes,
                                                                     out_modes=out_modes)
        assert info.relative_error <= 0.4
        assert np.linalg.norm(np.asarray(residual)) <= 0.4 * np.linalg.norm(kernel) + 1e-12

    @pytest.mark.parametrize(
        "make, error, match",
        [
            (lambda: layers.AdapterSpec.lora((8, 4), rank=2, alpha=0.0), ValueError,
             "alpha must be a positive finite number, got 0.0"),
            (lambda: layers.AdapterSpec.lora((8, 4), rank=2, alpha=True), TypeError,
             "alpha must be a positive real number, got True"),
            (lambda: layers.AdapterSpec.lora((8, 4), rank=0), ValueError, "rank must be a positive int, got 0"),
            (lambda: layers.AdapterSpec.tucker((5,), ranks=1), ValueError,
             r"kernel_shape must have at least 2 modes \(in, out\), got \(5,\)"),
            (lambda: layers.AdapterSpec.tucker((3, 0, 4), ranks=1), ValueError,
             r"kernel_shape\[1\] must be a positive int, got 0"),
            (lambda: layers.AdapterSpec.tucker((3, 3, 4, 5), ranks=(4, 1, 1, 1)), ValueError,
             r"ranks\[0\] = 4 must be between 1 and the mode size in_modes\[0\] = 3"),
            (lambda: layers.AdapterSpec.tt((24, 12), ranks=2, in_modes=(5, 5)), ValueError,
             r"in_modes=\(5, 5\) multiplies to 25, but in_features=24"),
            (lambda: layers.AdapterSpec.tt_from_pretrained(np.ones((6, 4))), ValueError, "needs max_rank or rtol"),
            (lambda: layers.AdapterSpec((4, 5, 12), layers.LowRankLinearSpec(24, 12, rank=2)), ValueError,
             r"update must map 20 -> 12 features \(the matrix view of a kernel of shape \(4, 5, 12\)\), got 24 -> 12"),
            (lambda: layers.AdapterSpec((24, 12), "lora"), TypeError,
             "update must be a tnkit.layers.LinearSpec, got str"),
            (lambda: layers.AdapterSpec((24, 12), layers.LowRankLinearSpec(24, 12), scale=-1.0), ValueError,
             "scale must be a positive finite number, got -1.0"),
            (lambda: layers.AdapterSpec((24, 12), layers.CPLinearSpec(24, 12, rank=2)).init(jax.random.key(0)),
             TypeError, "no zero initialisation for an update of type CPLinearSpec"),
        ],
    )
    def test_bad_spec(self, make, error, match):
        with pytest.raises(error, match=match):
            make()


# ------------------------------------------------------------------------------------------------------- nnx


class TestNNX:
    @pytest.mark.parametrize("kind", ["lora", "tucker", "tt"])
    def test_linear_adapter(self, kind):
        base = nnx_linear()
        model = linear_adapter(kind, base)
        x = lc.random_input((2, 3, 24))
        # at init the adapted layer is the base, exactly, through either path
        for impl in (FAC, DENSE):
            np.testing.assert_array_equal(np.asarray(model(x, implementation=impl)), np.asarray(base(x)))
        # after random adapter parameters: base(x) + x @ dW with dW rebuilt by NumPy
        params = random_params(model.spec, seed=5)
        set_factors(model, params)
        delta = delta_reference(model.spec, params)
        expected = np.asarray(base(x)) + np.asarray(x) @ delta
        for impl in (FAC, DENSE, AUTO):
            y = model(x, implementation=impl)
            np.testing.assert_allclose(np.asarray(y), expected, atol=1e-10, err_msg=str(impl))
        np.testing.assert_allclose(np.asarray(model.weight()), np.asarray(base.kernel[...]) + delta, atol=1e-12)
        merged = model.merge()
        assert type(merged) is nnx.Linear and set(nnx.state(merged, nnx.Param).keys()) == {"kernel", "bias"}
        np.testing.assert_allclose(np.asarray(merged(x)), expected, atol=1e-10)
        assert model.count_params() == {"lora": lora_count(24, 12, 3), "tucker": tucker_count((24, 12), (3, 3)),
                                        "tt": tt_count((2, 3, 4), (3, 2, 2), (1, 3, 2, 1))}[kind]

    def test_registered_implementation_of_the_update_gets_the_scale(self):
        calls = []

        def via_dense(spec, params, x, *, precision):
            calls.append(x.shape)
            return jnp.matmul(x, spec.to_dense(params), precision=precision)

        impl = layers.register_implementation("test_adapter_lowrank", layers.LowRankLinearSpec, via_dense)
        base = nnx_linear()
        model = linear_adapter("lora", base)
        params = random_params(model.spec, seed=4)
        set_factors(model, params)
        x = lc.random_input((5, 24))
        expected = np.asarray(base(x)) + np.asarray(x) @ delta_reference(model.spec, params)
        np.testing.assert_allclose(np.asarray(model(x, implementation=impl)), expected, atol=1e-10)
        assert calls == [(5, 24)]

    def test_optimizer_step_trains_only_the_adapter(self):
        base = nnx_linear()
        kernel0, bias0 = np.asarray(base.kernel[...]), np.asarray(base.bias[...])
        model = nn.LoRA(base, rank=3, rngs=nnx.Rngs(1))
        assert type(base.kernel) is nnx.Param and type(model.base.kernel) is nn.FrozenWeight  # base is copied
        assert set(nnx.state(model, nnx.Param).keys()) == {"factors"}
        assert set(nnx.state(model, nn.FrozenWeight)["base"].keys()) == {"kernel", "bias"}
        x = lc.random_input((6, 24))
        target = lc.random_input((6, 12), seed=9)
        traces = []

        @nnx.jit
        def step(m, opt):
            traces.append(1)
            loss, grads = nnx.value_and_grad(lambda mm: jnp.mean((mm(x) - target) ** 2))(m)
            opt.update(m, grads)
            return loss

        for wrt in (nnx.Param, nn.AdapterParam):
            b0 = np.asarray(model.factors["b"][...])
            optimizer = nnx.Optimizer(model, optax.adamw(0.05, weight_decay=0.5), wrt=wrt)
            losses = [float(step(model, optimizer))]
            traced = len(traces)
            losses += [float(step(model, optimizer)) for _ in range(3)]
            assert losses[-1] < losses[0], losses
            assert len(traces) == traced, "retraced"
            assert np.any(np.asarray(model.factors["b"][...]) != b0)
        np.testing.assert_array_equal(np.asarray(model.frozen_kernel()), kernel0)
        np.testing.assert_array_equal(np.asarray(model.base.bias[...]), bias0)
        np.testing.assert_array_equal(np.asarray(base.kernel[...]), kernel0)
        # even a gradient with respect to every variable is zero for the frozen ones (stop_gradient)
        grads = nnx.grad(lambda mm: jnp.sum(mm(x) ** 2), argnums=nnx.DiffState(0, nnx.Variable))(model)
        assert not np.any(np.asarray(grads["base"]["kernel"][...]))
        assert not np.any(np.asarray(grads["base"]["bias"][...]))
        # split / merge round trip
        graphdef, state = nnx.split(model)
        np.testing.assert_array_equal(np.asarray(nnx.merge(graphdef, state)(x)), np.asarray(model(x)))

    def test_conv_tucker_adapter_keeps_kernel_modes(self):
        base = nnx.Conv(4, 5, kernel_size=(3, 2), param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0),
                        rngs=nnx.Rngs(0))
        model = nn.TuckerAdapter(base, ranks=(2, 1, 3, 2), alpha=0.7, rngs=nnx.Rngs(1))
        assert {k: v[...].shape for k, v in model.factors.items()} == {
            "core": (2, 1, 3, 2), "in_factor_0": (3, 2), "in_factor_1": (2, 1), "in_factor_2": (4, 3),
            "out_factor_0": (5, 2)}
        x = lc.random_input((2, 6, 5, 4))
        np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(base(x)))
        params = random_params(model.spec, seed=6)
        set_factors(model, params)
        delta = delta_reference(model.spec, params)
        assert model.delta().shape == (3, 2, 4, 5)
        np.testing.assert_allclose(np.asarray(model.delta()), delta, atol=1e-12)
        # the spatial mode of size 2 has rank 1: a Tucker update in the kernel's own modes, not a reshaped matrix
        assert np.linalg.matrix_rank(np.moveaxis(delta, 1, 0).reshape(2, -1), tol=1e-9) == 1
        expected = np.asarray(base(x)) + np.asarray(conv_reference(x, jnp.asarray(delta)))
        np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-10)
        merged = model.merge()
        assert type(merged) is nnx.Conv
        np.testing.assert_allclose(np.asarray(merged(x)), expected, atol=1e-10)
        assert model.count_params() == tucker_count((3, 2, 4, 5), (2, 1, 3, 2))
        # flops: rebuild dW, add it to W_0 (120 entries), one SAME convolution: 2 * 6 * 5 positions * 120
        assert model.flops(x.shape) == 2 * (model.spec.update.rebuild_cost() + 120 + 60 * 120)
        # and an optimizer step moves the core only (the factors multiply it)
        optimizer = nnx.Optimizer(model, optax.sgd(0.01), wrt=nn.AdapterParam)
        model.factors["core"] = nn.AdapterParam(jnp.zeros((2, 1, 3, 2)))
        grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
        optimizer.update(model, grads)
        assert np.any(np.asarray(model.factors["core"][...]))
        np.testing.assert_array_equal(np.asarray(model.frozen_kernel()), np.asarray(base.kernel[...]))

    @pytest.mark.parametrize("kernel_shape", [(3, 4, 2), (2, 2, 2, 3, 2)], ids=["conv1d", "conv3d"])
    def test_raw_conv_kernels(self, kernel_shape):
        kernel = lc.random_input(kernel_shape, seed=2)
        model = nn.TuckerAdapter(kernel, ranks=2, rngs=nnx.Rngs(1))
        x = lc.random_input((2,) + (4,) * (len(kernel_shape) - 2) + (kernel_shape[-2],), seed=3)
        base_y = np.asarray(conv_reference(x, kernel))
        np.testing.assert_allclose(np.asarray(model(x)), base_y, atol=1e-12)
        params = random_params(model.spec, seed=7)
        set_factors(model, params)
        delta = delta_reference(model.spec, params)
        np.testing.assert_allclose(np.asarray(model(x)), base_y + np.asarray(conv_reference(x, jnp.asarray(delta))),
                                   atol=1e-10)

    def test_lora_on_conv_is_the_matrix_view(self):
        base = nnx.Conv(4, 5, kernel_size=(3, 2), param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        model = nn.LoRA(base, rank=2, rngs=nnx.Rngs(1))
        params = random_params(model.spec, seed=8)
        set_factors(model, params)
        delta = delta_reference(model.spec, params)  # (A B) reshaped
        x = lc.random_input((1, 5, 4, 4))
        expected = np.asarray(base(x)) + np.asarray(conv_reference(x, jnp.asarray(delta)))
        np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-10)
        assert model.count_params() == lora_count(3 * 2 * 4, 5, 2)

    def test_tt_from_pretrained(self):
        # (the TT-SVD shapes of TestSpecs.test_tt_from_pretrained_error_bounds: its compiled kernels are reused)
        base = nnx.Linear(24, 6, param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(3))
        model, info = nn.TTAdapter.from_pretrained(base, max_rank=3, in_modes=(4, 6), out_modes=(2, 3))
        assert model.spec.update.ranks == (1, 3, 1) and 0.1 < info.relative_error < 1
        tt = delta_reference(model.spec, model.params())
        w = np.asarray(base.kernel[...])
        np.testing.assert_allclose(np.asarray(model.frozen_kernel()), w - tt, atol=1e-12)
        assert info.relative_error == pytest.approx(np.linalg.norm(w - tt) / np.linalg.norm(w), rel=1e-9)
        x = lc.random_input((4, 24))
        for impl in (FAC, DENSE):
            np.testing.assert_allclose(np.asarray(model(x, implementation=impl)), np.asarray(base(x)), atol=1e-12)
        np.testing.assert_allclose(np.asarray(model.merge().kernel[...]), w, atol=1e-12)

    def test_dtypes(self):
        base = nnx.Linear(16, 8, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
        model = nn.LoRA(base, rank=2, rngs=nnx.Rngs(1))
        assert model.factors["a"][...].dtype == jnp.float32
        assert model(jnp.ones((2, 16), jnp.float32)).dtype == jnp.float32
        wide = nn.LoRA(base, rank=2, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
        assert wide.factors["a"][...].dtype == jnp.float64 and wide.frozen_kernel().dtype == jnp.float32

    def test_bad_input(self):
        base = nnx_linear()
        with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs, got int"):
            nn.LoRA(base, rank=2, rngs=0)
        with pytest.raises(TypeError, match="base must be a flax.nnx.Linear, a flax.nnx.Conv or a kernel array, got"):
            nn.LoRA("linear", rank=2, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=r"2 to 5 axes, got shape \(24,\)"):
            nn.LoRA(np.ones(24), rank=2, rngs=nnx.Rngs(0))
        with pytest.raises(TypeError, match="base must have a floating or complex dtype, got int64"):
            nn.LoRA(np.ones((4, 3), np.int64), rank=2, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=r"ranks\[2\] = 5 must be between 1 and the mode size in_modes\[2\] = 4"):
            nn.TuckerAdapter(jnp.ones((3, 3, 4, 5)), ranks=(1, 1, 5, 1), rngs=nnx.Rngs(0))
        model = nn.LoRA(base, rank=2, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., in_features\) = .*24\), got \(3, 25\)"):
            model(jnp.ones((3, 25)))
        with pytest.raises(TypeError, match="implementation must be a tnkit.layers.Implementation"):
            model(jnp.ones((3, 24)), implementation="dense")
        conv = nn.TuckerAdapter(jnp.ones((3, 3, 4, 5)), ranks=2, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=r"2 spatial axes and in_features = 4, got \(1, 8, 8, 3\)"):
            conv(jnp.ones((1, 8, 8, 3)))
        with pytest.raises(ValueError, match="convolves once with W_0 \\+ dW; implementation must be"):
            conv(jnp.ones((1, 8, 8, 4)), implementation=FAC)
        with pytest.raises(ValueError, match="convolves once with W_0 \\+ dW; implementation must be"):
            nn.LoRA(jnp.ones((3, 4, 5)), rank=2, implementation=FAC, rngs=nnx.Rngs(0))


# -------------------------------------------------------------------------------------------------- Equinox


class TestEquinox:
    @pytest.mark.parametrize("kind", ["lora", "tt"])
    def test_linear_adapter(self, kind):
        base = eqx.nn.Linear(24, 12, key=jax.random.key(0), dtype=jnp.float64)
        model = eqx_linear_adapter(kind, base)
        x = lc.random_input((2, 3, 24))
        base_y = np.asarray(jax.vmap(jax.vmap(base))(x))
        for impl in (FAC, DENSE):
            np.testing.assert_array_equal(np.asarray(model(x, implementation=impl)), base_y)
        params = random_params(model.spec, seed=5)
        model = eqx.tree_at(lambda m: m.factors, model, params)
        delta = delta_reference(model.spec, params)
        expected = base_y + np.asarray(x) @ delta
        for impl in (FAC, DENSE):
            np.testing.assert_allclose(np.asarray(model(x, implementation=impl)), expected, atol=1e-10)
        np.testing.assert_allclose(np.asarray(model.weight()), np.asarray(base.weight).T + delta, atol=1e-12)
        merged = model.merge()
        assert type(merged) is eqx.nn.Linear
        np.testing.assert_allclose(np.asarray(jax.vmap(jax.vmap(merged))(x)), expected, atol=1e-10)

    def test_training_step_touches_only_the_adapter(self):
        base = eqx.nn.Linear(24, 12, key=jax.random.key(0), dtype=jnp.float64)
        model = [teqx.LoRA(base, rank=3, key=jax.random.key(1)), eqx.nn.Linear(12, 2, key=jax.random.key(2),
                                                                                dtype=jnp.float64)]
        x = lc.random_input((6, 24))

        def loss(m, xx):
            return jnp.mean(jax.vmap(m[1])(m[0](xx)) ** 2)

        # 1) plain filter_grad over every array: the frozen weight gets a zero gradient (stop_gradient)
        grads = eqx.filter_grad(loss)(model, x)
        assert not np.any(np.asarray(grads[0].base.weight)) and not np.any(np.asarray(grads[0].base.bias))
        assert np.any(np.asarray(grads[0].factors["b"]))
        # 2) partition with adapter_filter: AdamW with weight decay moves the factors only, without retracing
        filt = teqx.adapter_filter(model)
        assert jax.tree.leaves(filt[0].factors) == [True, True] and jax.tree.leaves(filt[1]) == [False, False]
        assert not any(jax.tree.leaves(filt[0].base))
        trainable, frozen = eqx.partition(model, filt)
        opt = optax.adamw(0.05, weight_decay=0.5)
        state = opt.init(trainable)
        traces = []

        @eqx.filter_jit
        def step(t, s):
            traces.append(1)
            value, g = eqx.filter_value_and_grad(lambda tt: loss(eqx.combine(tt, frozen), x))(t)
            updates, s = opt.update(g, s, t)
            return eqx.apply_updates(t, updates), s, value

        losses = []
        for _ in range(4):
            trainable, state, value = step(trainable, state)
            losses.append(float(value))
        assert losses[-1] < losses[0] and len(traces) == 1, (losses, len(traces))
        new = eqx.combine(trainable, frozen)
        np.testing.assert_array_equal(np.asarray(new[0].base.weight), np.asarray(base.weight))
        np.testing.assert_array_equal(np.asarray(new[0].base.bias), np.asarray(base.bias))
        np.testing.assert_array_equal(np.asarray(new[1].weight), np.asarray(model[1].weight))
        assert np.any(np.asarray(new[0].factors["b"]))

    def test_conv_tucker_and_twin_agreement(self):
        # the same raw kernel (tnkit layout) and factors give the same layer in nnx (NHWC) and Equinox (NCHW)
        kernel = lc.random_input((3, 2, 4, 5), seed=1)
        a = nn.TuckerAdapter(kernel, ranks=(2, 1, 3, 2), alpha=0.7, rngs=nnx.Rngs(1))
        b = teqx.TuckerAdapter(kernel, ranks=(2, 1, 3, 2), alpha=0.7, key=jax.random.key(1))
        assert a.spec == b.spec
        params = random_params(a.spec, seed=3)
        set_factors(a, params)
        b = eqx.tree_at(lambda m: m.factors, b, params)
        x = lc.random_input((2, 6, 5, 4))
        xc = jnp.moveaxis(x, -1, 1)
        yb = b(xc)
        np.testing.assert_allclose(np.asarray(jnp.moveaxis(yb, 1, -1)), np.asarray(a(x)), atol=1e-10)
        delta = delta_reference(b.spec, params)
        np.testing.assert_allclose(np.asarray(b.delta()), delta, atol=1e-12)
        np.testing.assert_allclose(np.asarray(b(xc[0])), np.asarray(yb[0]), atol=1e-12)  # unbatched input
        np.testing.assert_allclose(np.asarray(jax.vmap(b.merge())(xc)), np.asarray(yb), atol=1e-10)
        assert b.flops(xc.shape) == a.flops(x.shape)

    def test_tt_from_pretrained_conv(self):
        conv = eqx.nn.Conv2d(4, 6, kernel_size=(3, 2), padding=1, key=jax.random.key(0), dtype=jnp.float64)
        model, info = teqx.TTAdapter.from_pretrained(conv, max_rank=3, in_modes=(4, 6), out_modes=(2, 3))
        assert model.spec.update.ranks == (1, 3, 1) and 0 < info.relative_error < 1
        x = lc.random_input((2, 4, 5, 5))
        np.testing.assert_allclose(np.asarray(model(x)), np.asarray(jax.vmap(conv)(x)), atol=1e-12)
        w = np.asarray(conv.weight).transpose(2, 3, 1, 0)  # tnkit layout (3, 2, 4, 6)
        tt = delta_reference(model.spec, model.factors)
        np.testing.assert_allclose(np.asarray(model.frozen_kernel()), w - tt, atol=1e-12)
        assert model.count_params() == tt_count((4, 6), (2, 3), (1, 3, 1))

    def test_bad_input(self):
        with pytest.raises(TypeError, match="base must be an equinox.nn.Linear, an equinox.nn.Conv or a kernel array"):
            teqx.LoRA(nnx_linear(), rank=2, key=jax.random.key(0))
        with pytest.raises(ValueError, match="'scalar' features are not supported"):
            teqx.LoRA(eqx.nn.Linear("scalar", 3, key=jax.random.key(0)), rank=1, key=jax.random.key(0))
        model = teqx.TuckerAdapter(jnp.ones((3, 3, 4, 5)), ranks=2, key=jax.random.key(0))
        with pytest.raises(ValueError, match=r"in_channels = 4, got \(3, 8, 8\)"):
            model(jnp.ones((3, 8, 8)))
        with pytest.raises(ValueError, match="implementation must be Implementation.AUTO or Implementation.DENSE"):
            model(jnp.ones((4, 8, 8)), implementation=FAC)
