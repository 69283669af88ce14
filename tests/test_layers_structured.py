"""Kronecker-sum (PHM), block-TT, Monarch and tensor-ring layers against dense NumPy maths.

Every dense reference below is written from the paper's definition with NumPy only (``np.kron``, explicit blocks,
``scipy.linalg.block_diag`` with permutation matrices, traces of core products), never from tnkit's output.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from tests import layer_checks as lc
from tnkit import eqx as teqx
from tnkit import kron, layers, nn, tr

AUTO, FACTORIZED, DENSE = layers.Implementation.AUTO, layers.Implementation.FACTORIZED, layers.Implementation.DENSE

# ---------------------------------------------------------------------------------------- dense references


def kron_reference(spec):
    """W = sum_t A_t ⊗ B_t (np.kron)."""
    return lambda p: sum(np.kron(p["a"][t], p["b"][t]) for t in range(spec.num_terms))


def btt_reference(spec):
    """W as an m_1 x n_1 grid of (m_2, n_2) blocks, block (i_1, j_1) = core_0[i_1, :, j_1, :] @ core_1[j_1, i_1]."""
    (m1, m2), (n1, n2) = spec.in_modes, spec.out_modes

    def build(p):
        c0, c1 = np.asarray(p["core_0"]), np.asarray(p["core_1"])
        w = np.zeros((m1 * m2, n1 * n2), dtype=np.result_type(c0, c1))
        for i1, j1 in itertools.product(range(m1), range(n1)):
            w[i1 * m2 : (i1 + 1) * m2, j1 * n2 : (j1 + 1) * n2] = c0[i1, :, j1, :] @ c1[j1, i1]
        return w

    return build


def shuffle(rows, cols):
    """The permutation matrix P with (P z)[c * rows + r] = z[r * cols + c] (z read as (rows, cols), transposed)."""
    p = np.zeros((rows * cols, rows * cols))
    for r, c in itertools.product(range(rows), range(cols)):
        p[c * rows + r, r * cols + c] = 1
    return p


def monarch_reference(spec):
    """M = P_out L P R with R = block_diag(r_blocks), L = block_diag(l_blocks); the kernel is M^T."""
    b = spec.num_blocks
    q = spec.out_features // b

    def build(p):
        r = scipy.linalg.block_diag(*p["r_blocks"])  # (b b, in)
        l_ = scipy.linalg.block_diag(*p["l_blocks"])  # (b q, b b)
        return (shuffle(b, q) @ l_ @ shuffle(b, b) @ r).T

    return build


def tr_reference(spec):
    """W[i, j] = trace(G_1[:, j_1, i_1, :] ... G_d[:, j_d, i_d, :]), entry by entry."""

    def build(p):
        cores = [p[f"core_{k}"] for k in range(spec.num_modes)]
        w = np.zeros((spec.in_features, spec.out_features), dtype=cores[0].dtype)
        for i_multi in itertools.product(*map(range, spec.in_modes)):
            for j_multi in itertools.product(*map(range, spec.out_modes)):
                m = np.eye(cores[0].shape[0])
                for g, i, j in zip(cores, i_multi, j_multi):
                    m = m @ g[:, j, i, :]
                w[np.ravel_multi_index(i_multi, spec.in_modes), np.ravel_multi_index(j_multi, spec.out_modes)] = (
                    np.trace(m)
                )
        return w

    return build


KRON = layers.KronLinearSpec(12, 8, num_terms=2)
BTT = layers.BlockTTLinearSpec(12, 6, ranks=2, in_modes=(3, 4), out_modes=(2, 3))
MONARCH = layers.MonarchLinearSpec(12, 6, num_blocks=3)
TR = layers.TRLinearSpec(24, 12, ranks=(2, 3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2))
CASES = {
    "kron": (KRON, kron_reference(KRON)),
    "btt": (BTT, btt_reference(BTT)),
    "monarch": (MONARCH, monarch_reference(MONARCH)),
    "tr": (TR, tr_reference(TR)),
}


def random_params(spec, dtype=np.float64, seed=0):
    """O(1) parameters drawn by NumPy (no JAX sampling kernel to compile per shape)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in spec.param_shapes().items():
        v = rng.standard_normal(shape)
        if np.issubdtype(dtype, np.complexfloating):
            v = v + 1j * rng.standard_normal(shape)
        out[name] = jnp.asarray(0.7 * v, dtype)
    return out


def numpy_block_svd_error(kernel, blocks, rank):
    """Relative error of the best rank-``rank`` approximation of every block of ``blocks`` (NumPy SVD)."""
    s = np.linalg.svd(blocks, compute_uv=False)
    return float(np.sqrt(np.sum(s[..., rank:] ** 2)) / np.linalg.norm(kernel))


# ------------------------------------------------------------------------------------------------ specs


class TestSpecs:
    def test_param_shapes_and_closed_form_counts(self):
        # PHM: n^3 + in * out / n
        assert KRON.param_shapes() == {"a": (2, 2, 2), "b": (2, 6, 4)}
        assert KRON.count_params() == 2**3 + 12 * 8 // 2
        # BTT: r m_1 n_1 (m_2 + n_2)
        assert BTT.param_shapes() == {"core_0": (3, 4, 2, 2), "core_1": (2, 3, 2, 3)}
        assert BTT.count_params() == 2 * 3 * 2 * (4 + 3)
        # Monarch: b (in + out)
        assert MONARCH.param_shapes() == {"r_blocks": (3, 3, 4), "l_blocks": (3, 2, 3)}
        assert MONARCH.count_params() == 3 * (12 + 6)
        # TR: sum_k r_{k-1} m_k n_k r_k with r_3 = r_0
        assert TR.ranks == (2, 3, 2, 2)
        assert TR.count_params() == 2 * 3 * 2 * 3 + 3 * 2 * 3 * 2 + 2 * 2 * 4 * 2

    @pytest.mark.parametrize("name", CASES)
    @pytest.mark.parametrize("dtype, atol", [(np.float32, 1e-4), (np.float64, 1e-10), (np.complex128, 1e-10)])
    def test_every_implementation_equals_dense(self, name, dtype, atol):
        spec, reference = CASES[name]
        params = random_params(spec, dtype, seed=1)
        x = lc.random_input((2, 3, spec.in_features)).astype(dtype)
        lc.check_spec_against_dense(spec, params, reference, x, atol=atol)
        assert layers.apply(spec, params, x, implementation=FACTORIZED).dtype == dtype

    def test_single_mode_ring(self):
        # d = 1: W^T = sum_a core_0[a, :, :, a], applied as a trace then one product
        spec = layers.TRLinearSpec(12, 6, ranks=2, in_modes=(12,), out_modes=(6,))
        lc.check_spec_against_dense(spec, random_params(spec, seed=2), tr_reference(spec), lc.random_input((3, 12)))

    @pytest.mark.parametrize("name", CASES)
    def test_grads_equal_dense_path(self, name):
        spec, _ = CASES[name]
        lc.check_grads_match_dense(spec, random_params(spec, seed=3), lc.random_input((5, spec.in_features)))

    @pytest.mark.parametrize(
        "spec",
        [
            layers.KronLinearSpec(16, 8, num_terms=2),
            layers.BlockTTLinearSpec(16, 8, ranks=2, in_modes=(4, 4), out_modes=(2, 4)),
            layers.MonarchLinearSpec(16, 8, num_blocks=2),
            layers.TRLinearSpec(16, 8, ranks=2, in_modes=(4, 4), out_modes=(2, 4)),
        ],
        ids=["kron", "btt", "monarch", "tr"],
    )
    def test_init_variance_matches_lecun_and_check_can_fail(self, spec, monkeypatch):
        # One Monte-Carlo estimate per spec, shared by both checks (the estimate dominates the runtime).
        cache = {}
        estimate = lc.init_output_variance

        def cached(s, x, num_seeds=2000, dtype=jnp.float64):
            if s not in cache:
                cache[s] = estimate(s, x, num_seeds, dtype)
            return cache[s]

        monkeypatch.setattr(lc, "init_output_variance", cached)
        lc.check_init_variance(spec, fan_in=spec.in_features)
        with pytest.raises(AssertionError, match="ratio"):  # twice the target variance is rejected
            lc.check_init_variance(spec, fan_in=2 * spec.in_features)

    def test_auto_choice_follows_closed_form_costs(self):
        # Multiply-adds per input row, by hand:
        # PHM n=2, p=6, q=4: B first n^2 q (p + n) = 128, A first n^2 p (n + q) = 144; rebuild n in out = 192.
        # BTT: r m1 n1 (m2 + n2) = 84; rebuild r in out = 144.
        # Monarch: b (in + out) = 54; rebuild in out = 72.
        # TR, cut at r_0 = 2 into TT-matrices of ranks (1, 3, 2, 1), out (3, 2, 2), in (2, 3, 4):
        #   right-to-left 1*4*(1*2*3*3) + 2*2*(3*3*2*2) + 6*1*(2*4*2*1) = 72 + 144 + 96 = 312, times r_0 = 624;
        #   rebuild of each cut 1*1*(1*3*2*3) + 3*2*(3*2*3*2) + 6*6*(2*2*4*1) = 18 + 216 + 576 = 810, times r_0 = 1620.
        expected = {"kron": (128, 192), "btt": (84, 144), "monarch": (54, 72), "tr": (624, 1620)}
        for name, (per_row, rebuild) in expected.items():
            spec = CASES[name][0]
            for batch in (1, 7):
                costs = spec.costs((batch, spec.in_features))
                dense_row = spec.in_features * spec.out_features
                assert costs[FACTORIZED] == per_row * batch, name
                assert costs[DENSE] == rebuild + dense_row * batch, name
            assert spec.flops((1, spec.in_features)) == 2 * per_row
        assert KRON.choose((6, 12)) is FACTORIZED and KRON.choose((7, 12)) is DENSE  # switch at max(p, q) = 6
        assert BTT.choose((10, 12)) is FACTORIZED and BTT.choose((100, 12)) is DENSE
        assert MONARCH.choose((10_000, 12)) is FACTORIZED
        assert TR.choose((1, 24)) is FACTORIZED and TR.choose((10, 24)) is DENSE

    def test_monarch_is_btt_rank_one_up_to_output_shuffle(self):
        params = random_params(MONARCH, seed=4)
        r, l_ = np.asarray(params["r_blocks"]), np.asarray(params["l_blocks"])  # (k, j, i), (j, t, k)
        btt = layers.BlockTTLinearSpec(12, 6, ranks=1, in_modes=(3, 4), out_modes=(3, 2))
        btt_params = {
            "core_0": jnp.asarray(r.transpose(0, 2, 1)[..., None]),  # [k, i, j, 0] = r[k, j, i]
            "core_1": jnp.asarray(l_.transpose(0, 2, 1)[:, :, None, :]),  # [j, k, 0, t] = l[j, t, k]
        }
        w_btt = np.asarray(btt.to_dense(btt_params))  # columns (j, t)
        w_monarch = np.asarray(MONARCH.to_dense(params))  # columns (t, j)
        np.testing.assert_allclose(w_monarch, w_btt @ shuffle(3, 2).T, atol=1e-12)
        x = lc.random_input((5, 12))
        y_btt = layers.apply(btt, btt_params, x, implementation=FACTORIZED)
        y_monarch = layers.apply(MONARCH, params, x, implementation=FACTORIZED)
        np.testing.assert_allclose(y_monarch, y_btt.reshape(5, 3, 2).transpose(0, 2, 1).reshape(5, 6), atol=1e-12)

    def test_monarch_square_case_is_p_l_pt_r(self):
        # in = out = b^2: the paper's M = P L P^T R with P = P^T, all blocks b x b.
        spec = layers.MonarchLinearSpec(9, 9)
        assert spec.num_blocks == 3 and spec.param_shapes() == {"r_blocks": (3, 3, 3), "l_blocks": (3, 3, 3)}
        params = random_params(spec, seed=5)
        p = shuffle(3, 3)
        np.testing.assert_array_equal(p, p.T)
        m = p @ scipy.linalg.block_diag(*params["l_blocks"]) @ p.T @ scipy.linalg.block_diag(*params["r_blocks"])
        np.testing.assert_allclose(np.asarray(spec.to_dense(params)), m.T, atol=1e-12)

    def test_default_num_blocks(self):
        assert layers.MonarchLinearSpec(64, 64).num_blocks == 8
        assert layers.MonarchLinearSpec(784, 256).num_blocks == 16  # smallest common divisor with b^2 >= 256
        assert layers.MonarchLinearSpec(12, 10).num_blocks == 2  # no common divisor reaches sqrt(10): the gcd

    def test_specs_are_hashable_and_normalised(self):
        assert BTT == layers.BlockTTLinearSpec(12, 6, ranks=(1, 2, 1), in_modes=(3, 4), out_modes=(2, 3))
        assert BTT.ranks == (1, 2, 1) and BTT.rank == 2
        assert hash(TR) == hash(
            layers.TRLinearSpec(24, 12, ranks=(2, 3, 2, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2))
        )
        assert layers.BlockTTLinearSpec(24, 10).in_modes == (6, 4)

    @pytest.mark.parametrize(
        "make, error, match",
        [
            (
                lambda: layers.KronLinearSpec(12, 8, num_terms=3),
                ValueError,
                (
                    r"num_terms=3 must divide in_features and out_features .* got in_features=12 \(remainder 0\) and "
                    r"out_features=8 \(remainder 2\)"
                ),
            ),
            (lambda: layers.KronLinearSpec(12, 8, num_terms=0), ValueError, "num_terms must be a positive int, got 0"),
            (
                lambda: layers.BlockTTLinearSpec(12, 6, in_modes=(2, 3, 2)),
                ValueError,
                r"in_modes must have 2 modes .* got \(2, 3, 2\)",
            ),
            (
                lambda: layers.BlockTTLinearSpec(12, 6, out_modes=(5, 2)),
                ValueError,
                r"out_modes=\(5, 2\) multiplies to 10, but out_features=6",
            ),
            (lambda: layers.BlockTTLinearSpec(12, 6, ranks=(2, 2, 2)), ValueError, "start and end with 1"),
            (lambda: layers.BlockTTLinearSpec(12, 6, ranks=0), ValueError, "ranks must be a positive int, got 0"),
            (
                lambda: layers.MonarchLinearSpec(12, 6, num_blocks=4),
                ValueError,
                r"num_blocks=4 must divide .* in_features=12 \(remainder 0\) and out_features=6 \(remainder 2\)",
            ),
            (lambda: layers.MonarchLinearSpec(12, 6, num_blocks=-1), ValueError, "num_blocks must be a positive int"),
            (
                lambda: layers.TRLinearSpec(12, 6, ranks=(2, 3, 4), in_modes=(3, 4), out_modes=(2, 3)),
                ValueError,
                r"ranks must close the ring .* got \(2, 3, 4\)",
            ),
            (lambda: layers.TRLinearSpec(12, 6, ranks=0), ValueError, "ranks must be a positive int, got 0"),
            (lambda: layers.TRLinearSpec(12, 6, ranks=2, in_modes=(3, 4), out_modes=(6,)), ValueError, "same length"),
        ],
    )
    def test_bad_spec(self, make, error, match):
        with pytest.raises(error, match=match):
            make()

    def test_bad_apply_and_conversion(self):
        params = random_params(BTT)
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., in_features\) = \(\.\.\., 12\)"):
            layers.apply(BTT, params, jnp.ones((3, 13)))
        with pytest.raises(ValueError, match=r"params\['core_1'\] must have shape \(2, 3, 2, 3\)"):
            layers.apply(BTT, {**params, "core_1": jnp.ones((2, 3, 2, 2))}, jnp.ones((3, 12)))
        with pytest.raises(ValueError, match="needs max_rank or rtol"):
            layers.BlockTTLinearSpec.from_dense(jnp.ones((12, 6)))
        with pytest.raises(ValueError, match="needs ranks, max_rank or rtol"):
            layers.TRLinearSpec.from_dense(jnp.ones((12, 6)))
        with pytest.raises(ValueError, match=r"kernel must be a 2-D \(in_features, out_features\) array, got shape"):
            layers.KronLinearSpec.from_dense(jnp.ones(12), num_terms=2)
        with pytest.raises(TypeError, match="kernel must have a floating or complex dtype, got int"):
            layers.MonarchLinearSpec.from_dense(jnp.ones((12, 6), jnp.int32))
        with pytest.raises(ValueError, match=r"num_terms=4 must be at most .* = 1"):
            layers.KronLinearSpec.from_dense(jnp.ones((4, 4)), num_terms=4)
        with pytest.raises(ValueError, match="max_rank must be a positive int"):
            layers.BlockTTLinearSpec.from_dense(jnp.ones((12, 6)), max_rank=0)
        with pytest.raises(ValueError, match="cannot run under jax.jit"):
            jax.jit(lambda k: layers.BlockTTLinearSpec.from_dense(k, rtol=0.1)[1])(jnp.ones((12, 6)))


# ------------------------------------------------------------------------------------------- conversions


def kernel_and_bias(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(shape[1])


def nnx_linear(kernel, bias):
    """An ``nnx.Linear`` holding ``kernel`` and ``bias`` (initialisers that return them: no sampling to compile)."""
    return nnx.Linear(
        *kernel.shape,
        param_dtype=jnp.float64,
        kernel_init=lambda *_: jnp.asarray(kernel),
        bias_init=lambda *_: jnp.asarray(bias),
        rngs=nnx.Rngs(0),
    )


def check_converted(layer, info, kernel, bias, expected_error):
    """The reported error is the weight's true error and the dense optimum; forward = x @ W_approx + bias."""
    w = np.asarray(layer.weight())
    true_error = np.linalg.norm(w - kernel) / np.linalg.norm(kernel)
    assert info.relative_error == pytest.approx(true_error, rel=1e-9, abs=1e-13)
    if expected_error is not None:
        assert info.relative_error == pytest.approx(expected_error, rel=1e-7, abs=1e-12)
    assert info.num_params == layer.spec.count_params() and info.dense_params == kernel.size
    x = lc.random_input((3, kernel.shape[0]))
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(x) @ w + bias, atol=1e-10)


class TestConversion:
    def test_kron_from_linear_is_van_loan_pitsianis_optimum(self):
        kernel, bias = kernel_and_bias((12, 8))
        n, p, q = 2, 6, 4
        rearranged = kernel.reshape(n, p, n, q).transpose(0, 2, 1, 3).reshape(n * n, p * q)
        s = np.linalg.svd(rearranged, compute_uv=False)
        optimum = np.sqrt(np.sum(s[n:] ** 2)) / np.linalg.norm(kernel)
        layer, info = nn.KronLinear.from_linear(nnx_linear(kernel, bias), num_terms=2)
        assert 0.1 < optimum < 1
        check_converted(layer, info, kernel, bias, optimum)
        rng = np.random.default_rng(1)
        a, b = rng.standard_normal((2, 2, 2)), rng.standard_normal((2, 6, 4))
        _, _, info = layers.KronLinearSpec.from_dense(np.kron(a[0], b[0]) + np.kron(a[1], b[1]), num_terms=2)
        assert info.relative_error < 1e-12

    def test_btt_from_linear_is_blockwise_svd_optimum(self):
        kernel, bias = kernel_and_bias((12, 6))
        blocks = kernel.reshape(3, 4, 2, 3).transpose(0, 2, 1, 3)  # block (i_1, j_1), shape (4, 3)
        dense = nnx_linear(kernel, bias)
        layer, info = nn.BlockTTLinear.from_linear(dense, max_rank=2, in_modes=(3, 4), out_modes=(2, 3))
        assert layer.spec.rank == 2
        check_converted(layer, info, kernel, bias, numpy_block_svd_error(kernel, blocks, 2))
        # rtol: the guarantee holds and the rank is the smallest that meets it
        layer, info = nn.BlockTTLinear.from_linear(dense, rtol=0.5, in_modes=(3, 4), out_modes=(2, 3))
        r = layer.spec.rank
        assert info.relative_error <= 0.5 < numpy_block_svd_error(kernel, blocks, r - 1)
        check_converted(layer, info, kernel, bias, numpy_block_svd_error(kernel, blocks, r))
        _, _, info = layers.BlockTTLinearSpec.from_dense(kernel, max_rank=5, in_modes=(3, 4), out_modes=(2, 3))
        assert info.relative_error < 1e-12  # rank capped at min(m_2, n_2) = 3: exact
        # complex kernels: the same optimum
        kernel = kernel + 1j * np.random.default_rng(9).standard_normal(kernel.shape)
        spec, params, info = layers.BlockTTLinearSpec.from_dense(kernel, max_rank=2, in_modes=(3, 4), out_modes=(2, 3))
        blocks = kernel.reshape(3, 4, 2, 3).transpose(0, 2, 1, 3)
        assert params["core_0"].dtype == np.complex128
        assert info.relative_error == pytest.approx(numpy_block_svd_error(kernel, blocks, 2), rel=1e-9)
        np.testing.assert_allclose(spec.to_dense(params), btt_reference(spec)(params), atol=1e-12)

    def test_monarch_from_linear_is_blockwise_rank_one_optimum(self):
        kernel, bias = kernel_and_bias((12, 6))
        blocks = kernel.reshape(3, 4, 2, 3).transpose(0, 3, 1, 2)  # W[k p + i, t b + j]: block (k, j), (i, t)
        layer, info = nn.MonarchLinear.from_linear(nnx_linear(kernel, bias), num_blocks=3)
        check_converted(layer, info, kernel, bias, numpy_block_svd_error(kernel, blocks, 1))
        params = random_params(MONARCH, seed=6)
        _, _, info = layers.MonarchLinearSpec.from_dense(MONARCH.to_dense(params), num_blocks=3)
        assert info.relative_error < 1e-12

    def test_tr_from_linear(self):
        kernel, bias = kernel_and_bias((12, 6))
        dense = nnx_linear(kernel, bias)
        # r_0 = 1, two modes: TR-SVD is the truncated SVD of the interleaved (m_1 n_1, m_2 n_2) matrix: optimal
        interleaved = kernel.T.reshape(2, 3, 3, 4).transpose(0, 2, 1, 3).reshape(6, 12)
        s = np.linalg.svd(interleaved, compute_uv=False)
        layer, info = nn.TRLinear.from_linear(dense, ranks=(1, 3), in_modes=(3, 4), out_modes=(2, 3))
        assert layer.spec.ranks == (1, 3, 1)
        check_converted(layer, info, kernel, bias, np.sqrt(np.sum(s[3:] ** 2)) / np.linalg.norm(kernel))
        # the rtol guarantee, here met by a true ring (r_0 = 2)
        layer, info = nn.TRLinear.from_linear(dense, rtol=0.3, in_modes=(3, 4), out_modes=(2, 3))
        assert info.relative_error <= 0.3 and layer.spec.ranks[0] == 2
        check_converted(layer, info, kernel, bias, None)

    @pytest.mark.parametrize(
        "cls, out_features, kwargs",
        [  # the conversions of the nnx tests above (same shapes: nothing new to compile)
            (teqx.KronLinear, 8, dict(num_terms=2)),
            (teqx.BlockTTLinear, 6, dict(max_rank=2, in_modes=(3, 4), out_modes=(2, 3))),
            (teqx.MonarchLinear, 6, dict(num_blocks=3)),
            (teqx.TRLinear, 6, dict(ranks=(1, 3), in_modes=(3, 4), out_modes=(2, 3))),
        ],
        ids=["kron", "btt", "monarch", "tr"],
    )
    def test_equinox_from_linear(self, cls, out_features, kwargs):
        kernel, bias = kernel_and_bias((12, out_features))
        dense = eqx.nn.Linear(12, out_features, key=jax.random.key(3), dtype=jnp.float64)
        dense = eqx.tree_at(lambda m: (m.weight, m.bias), dense, (jnp.asarray(kernel.T), jnp.asarray(bias)))
        layer, info = cls.from_linear(dense, **kwargs)  # the weight is (out, in): transposed on the way
        check_converted(layer, info, kernel, bias, None)
        assert layer.count_params() == layer.spec.count_params() + out_features


# ------------------------------------------------------------------------------------------------ layers

NNX_LAYERS = {
    "kron": lambda **kw: nn.KronLinear(12, 8, num_terms=2, **kw),
    "btt": lambda **kw: nn.BlockTTLinear(12, 6, ranks=2, in_modes=(3, 4), out_modes=(2, 3), **kw),
    "monarch": lambda **kw: nn.MonarchLinear(12, 6, num_blocks=3, **kw),
    "tr": lambda **kw: nn.TRLinear(24, 12, ranks=(2, 3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), **kw),
}
EQX_LAYERS = {
    "kron": lambda **kw: teqx.KronLinear(12, 8, num_terms=2, **kw),
    "btt": lambda **kw: teqx.BlockTTLinear(12, 6, ranks=2, in_modes=(3, 4), out_modes=(2, 3), **kw),
    "monarch": lambda **kw: teqx.MonarchLinear(12, 6, num_blocks=3, **kw),
    "tr": lambda **kw: teqx.TRLinear(24, 12, ranks=(2, 3, 2), in_modes=(2, 3, 4), out_modes=(3, 2, 2), **kw),
}


class TestNNX:
    @pytest.mark.parametrize("name", NNX_LAYERS)
    def test_layer(self, name):
        layer = NNX_LAYERS[name](param_dtype=jnp.float64, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
        assert layer.spec == CASES[name][0]
        lc.check_nnx_layer(layer, lc.random_input((5, layer.spec.in_features)))
        assert layer.count_params() == layer.spec.count_params() + layer.spec.out_features
        assert layer.flops((7, layer.spec.in_features)) == layer.spec.flops((7, layer.spec.in_features))
        if name == "kron":
            np.testing.assert_allclose(np.asarray(kron.to_dense(layer.to_kron())), layer.weight(), atol=1e-12)
        if name == "tr":  # W^T interleaved: (3 2, 2 3, 2 4) -> (out (3, 2, 2), in (2, 3, 4))
            ring = layer.to_tensor_ring()
            assert ring.dims == (6, 6, 8) and ring.ranks == (2, 3, 2, 2)
            w_t = np.asarray(tr.to_dense(ring)).reshape(3, 2, 2, 3, 2, 4).transpose(0, 2, 4, 1, 3, 5).reshape(12, 24)
            np.testing.assert_allclose(w_t, np.asarray(layer.weight()).T, atol=1e-12)

    def test_dtypes_and_no_bias(self):
        layer = NNX_LAYERS["kron"](param_dtype=jnp.float32, dtype=jnp.bfloat16, use_bias=False, rngs=nnx.Rngs(0))
        assert layer.factors["a"][...].dtype == jnp.float32 and layer.bias is None
        assert layer(jnp.ones((2, 12), jnp.float32)).dtype == jnp.bfloat16
        assert layer.count_params() == KRON.count_params()

    def test_bad_input(self):
        with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
            nn.MonarchLinear(12, 6, rngs=0)
        with pytest.raises(ValueError, match=r"num_terms=5 must divide in_features and out_features"):
            nn.KronLinear(12, 8, num_terms=5, rngs=nnx.Rngs(0))
        with pytest.raises(TypeError, match="nnx.Linear or a kernel array"):
            nn.TRLinear.from_linear(object(), max_rank=2)


class TestEquinox:
    @pytest.mark.parametrize("name", EQX_LAYERS)
    def test_layer(self, name):
        layer = EQX_LAYERS[name](
            param_dtype=jnp.float64, bias_init=jax.nn.initializers.normal(1.0), key=jax.random.key(0)
        )
        assert layer.spec == CASES[name][0]
        lc.check_eqx_layer(layer, lc.random_input((5, layer.spec.in_features)))
