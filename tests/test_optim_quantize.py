"""Tests for tnkit.optim quantize / dequantize / bjorck_orthonormalize and scale_by_shampoo_4bit.

* The quantiser against a brute-force NumPy nearest-codebook search (codes, packing, scales).
* Random orthogonal matrices: round-trip error, orthogonality after Björck rectification, and the error of the
  inverse 4th root rebuilt from the rectified eigenvectors (the quantity the paper bounds).
  The thresholds are the errors measured here (64 x 64, block 64) with about 10-30% margin:
  relative Frobenius error of U about 0.109, of A^{-1/4} about 0.045 after one Björck step (0.155 without).
* 4-bit Shampoo: state bytes against 32-bit, directions close to dense float64 Shampoo, and the conformance suite.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import test_optim_shampoo as base
from tnkit import optim
from tnkit.optim import Grafting, ShampooLayout
from tnkit.optim import QuantizationOptions as _Q


def _orthogonal(n, count, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((count, n, n)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # Haar-distributed


def _fro(x):
    return np.linalg.norm(x, axis=(-2, -1))


# --------------------------------------------------------------------------------------------------- quantiser


def test_codebook_is_the_linear_square_mapping():
    book = optim.LINEAR_SQUARE_CODEBOOK
    x = -1 + 2 * np.arange(16) / 15
    want = np.where(np.arange(16) == 7, 0.0, np.sign(x) * x**2)
    np.testing.assert_allclose(book, want, rtol=1e-6)
    assert book.shape == (16,) and np.all(np.diff(book) > 0) and book[0] == -1 and book[-1] == 1


def test_quantize_is_nearest_codebook_entry_and_packs_two_codes_per_byte():
    x = np.random.default_rng(0).standard_normal((3, 70)).astype(np.float32)
    q = optim.quantize(jnp.asarray(x), block_size=32)
    assert q.codes.shape == (3, 3, 16) and q.codes.dtype == jnp.uint8 and q.scales.shape == (3, 3)
    padded = np.pad(x, [(0, 0), (0, 26)]).reshape(3, 3, 32)
    scales = np.abs(padded).max(-1)
    np.testing.assert_allclose(np.asarray(q.scales), scales, rtol=1e-7)
    normalised = padded / scales[..., None]
    idx = np.argmin(np.abs(normalised[..., None] - optim.LINEAR_SQUARE_CODEBOOK), axis=-1)  # brute force
    codes = np.asarray(q.codes)
    np.testing.assert_array_equal(codes & 0xF, idx[..., 0::2])  # low nibble: even entries
    np.testing.assert_array_equal(codes >> 4, idx[..., 1::2])
    back = np.asarray(optim.dequantize(q, 70))
    np.testing.assert_allclose(back, (optim.LINEAR_SQUARE_CODEBOOK[idx] * scales[..., None]).reshape(3, -1)[:, :70],
                               rtol=1e-6)
    # A zero block and the identity survive exactly.
    eye = jnp.eye(8).reshape(1, 64)
    np.testing.assert_array_equal(np.asarray(optim.dequantize(optim.quantize(eye), 64)), np.asarray(eye))
    np.testing.assert_array_equal(np.asarray(optim.dequantize(optim.quantize(jnp.zeros((1, 5))), 5)), np.zeros((1, 5)))


def test_round_trip_error_of_random_orthogonal_matrices():
    n = 64
    u = _orthogonal(n, 6, seed=1)
    d = np.asarray(optim.dequantize(optim.quantize(jnp.asarray(u.reshape(6, -1))), n * n, jnp.float64))
    d = d.reshape(6, n, n)
    assert np.max(_fro(d - u) / _fro(u)) < 0.12
    # The inverse 4th root rebuilt from the rectified eigenvectors and float eigenvalues (spectrum over 3 decades).
    lam = np.random.default_rng(2).uniform(1e-3, 1.0, (6, n))
    root = lambda v: np.einsum("cij,cj,ckj->cik", v, lam**-0.25, v)
    rect = np.asarray(optim.bjorck_orthonormalize(jnp.asarray(d), 1))
    err_rect = _fro(root(rect) - root(u)) / _fro(root(u))
    err_raw = _fro(root(d) - root(u)) / _fro(root(u))
    assert np.max(err_rect) < 0.06 and np.min(err_raw) > 2 * np.max(err_rect)  # rectification helps


def test_orthogonality_after_rectification():
    n = 64
    u = _orthogonal(n, 4, seed=3)
    d = optim.dequantize(optim.quantize(jnp.asarray(u.reshape(4, -1))), n * n, jnp.float64).reshape(4, n, n)
    eye = np.eye(n)

    def ortho_error(v):
        v = np.asarray(v)
        return np.max(_fro(np.swapaxes(v, 1, 2) @ v - eye)) / np.sqrt(n)

    e0, e1, e2 = (ortho_error(optim.bjorck_orthonormalize(d, k)) for k in (0, 1, 2))
    assert e0 > 0.1  # dequantised: far from orthogonal
    assert e1 < 0.04 and e2 < 2e-3  # quadratic convergence: E <- -(3/4) E^2 + E^3 / 4


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: optim.quantize(jnp.ones(4), block_size=3), ValueError, "block_size must be even"),
        (lambda: optim.quantize(jnp.ones(4), block_size=0), ValueError, "block_size must be an even int"),
        (lambda: optim.quantize(jnp.ones(4, jnp.int32)), TypeError, "x must have a real floating dtype"),
        (lambda: optim.quantize(jnp.ones((2, 0))), ValueError, "non-empty last axis"),
        (lambda: optim.dequantize(optim.quantize(jnp.ones(4), block_size=4), 5), ValueError, r"size must be in \[1, 4"),
        (lambda: optim.bjorck_orthonormalize(jnp.eye(2), -1), ValueError, "num_iters must be a non-negative int"),
        (lambda: optim.scale_by_shampoo_4bit(quantization=_Q(block_size=7)), ValueError, "quantization.block_size"),
        (lambda: optim.scale_by_shampoo_4bit(quantization=_Q(rectification_iters=-1)), ValueError, "rectification_it"),
        (lambda: optim.scale_by_shampoo_4bit(quantization=64), TypeError, "quantization must be a tnkit.optim.Quant"),
        (lambda: optim.scale_by_shampoo_4bit(statistics_every=0), ValueError, "statistics_every must be in"),
    ],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------------------------- 4-bit Shampoo


def _nbytes(tree):
    return sum(leaf.nbytes for leaf in jax.tree.leaves(tree))


def test_state_bytes_against_32_bit():
    params = {"w": jnp.zeros((64, 32), jnp.float32), "v": jnp.zeros((128, 64), jnp.float32)}
    layout = ShampooLayout(block_size=64)
    s4 = optim.scale_by_shampoo_4bit(layout=layout).init(params)
    s32 = optim.scale_by_shampoo(layout=layout).init(params)
    eigenvector_bytes_32 = 4 * sum(b * b * c for entry in s32.roots for r in entry for c, b, _ in [r.shape])
    assert _nbytes(s4.eigenvectors) <= 0.3 * eigenvector_bytes_32
    assert _nbytes(s4.eigenvectors) + _nbytes(s4.eigenvalues) <= 0.3 * eigenvector_bytes_32
    # Against 32-bit Shampoo's preconditioner state (statistics and roots): under 0.3x too.
    assert _nbytes((s4.eigenvectors, s4.eigenvalues)) <= 0.3 * _nbytes((s32.statistics, s32.roots)) / 2
    assert all(q.codes.dtype == jnp.uint8 for entry in s4.eigenvectors for q in entry)


def test_directions_close_to_dense_shampoo():
    # Raw Shampoo (sum statistics, no grafting or momentum): the 4-bit direction stays within the quantisation
    # error of the float64 dense oracle, step after step (the statistics are rebuilt from 4-bit eigenvectors).
    # Square blocks, so the statistics are full rank from step 1: with a null space, the quantisation error leaks
    # into directions that the root scales by (ε λ_max)^{-1/4} (30x here), and the first directions differ wildly.
    grads = base._grads((8, 8), 5, seed=4)
    raw = {"beta1": 0.0, "beta2": 1.0, "grafting": Grafting.NONE, "start_preconditioning_step": 0}
    raw["statistics_every"] = 1
    tx = optim.scale_by_shampoo_4bit(ridge_epsilon=1e-6, layout=ShampooLayout(merge_small_dims=False), **raw)
    updates, states = base._run(tx, jnp.zeros((8, 8)), grads)
    want = base._shampoo_directions(grads, ridge_epsilon=1e-6)
    errors = [np.linalg.norm(np.asarray(u) - w) / np.linalg.norm(w) for u, w in zip(updates, want)]
    assert max(errors) < 0.15, errors
    assert int(states[-1].rejected_updates) == 0
    # And not trivially: the first direction is not the gradient.
    assert np.linalg.norm(np.asarray(updates[0]) - grads[0]) > 0.1 * np.linalg.norm(grads[0])


_CONFORMANCE = [
    (
        "shampoo_4bit",
        functools.partial(
            optim.shampoo_4bit, layout=ShampooLayout(block_size=4), statistics_every=1, start_preconditioning_step=1
        ),
        0.1,
    ),
]
_IDS = [c[0] for c in _CONFORMANCE]


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_converges(name, factory, lr):
    base.test_conformance_converges(name, factory, lr)


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_jit_state_stable_and_no_recompilation(name, factory, lr):
    base.test_conformance_jit_state_stable_and_no_recompilation(name, factory, lr)


@pytest.mark.parametrize("name, factory, lr", _CONFORMANCE, ids=_IDS)
def test_conformance_inject_hyperparams(name, factory, lr):
    base.test_conformance_inject_hyperparams(name, factory, lr)


def test_exactly_representable_eigenvectors_give_32_bit_shampoo():
    # Diagonal gradients have diagonal statistics, whose eigenvectors (signed unit vectors) quantise exactly: the
    # 4-bit optimizer must then reproduce dense Shampoo to round-off (a wrong root order, ridge or mode would show).
    rng = np.random.default_rng(8)
    grads = [np.diag(rng.standard_normal(4)) for _ in range(3)]
    raw = {"beta1": 0.0, "beta2": 1.0, "grafting": Grafting.NONE, "start_preconditioning_step": 0}
    tx = optim.scale_by_shampoo_4bit(ridge_epsilon=1e-6, layout=ShampooLayout(merge_small_dims=False), **raw,
                                     statistics_every=1)
    updates, _ = base._run(tx, jnp.zeros((4, 4)), grads)
    for u, w in zip(updates, base._shampoo_directions(grads, ridge_epsilon=1e-6)):
        base._close(u, w, 1e-9)


def test_non_finite_statistics_are_rejected():
    tx = optim.scale_by_shampoo_4bit(layout=ShampooLayout(block_size=4), statistics_every=1)
    params = jnp.zeros((4, 4))
    state = tx.init(params)
    _, state = tx.update(jnp.asarray(np.random.default_rng(9).standard_normal((4, 4))), state)
    before = jax.tree.map(np.asarray, (state.eigenvectors, state.eigenvalues))
    _, state = tx.update(jnp.full((4, 4), jnp.nan), state)
    assert int(state.rejected_updates) == 2  # both factors of the one block
    jax.tree.map(np.testing.assert_array_equal, (state.eigenvectors, state.eigenvalues), before)
