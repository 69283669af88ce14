"""Compress a real image with tensor trains: tnkit's TT-SVD against TensorLy's (the ``compress_image`` experiment).

The tensor
----------
scikit-learn ships a sample photo, ``sklearn.datasets.load_sample_image("china.jpg")``: a 427 x 640 x 3 ``uint8``
RGB image (no network needed; Pillow decodes it). We

1. convert it to ``float64`` in ``[0, 1]`` and keep all three colour channels;
2. take the centred crop of 256 x 512 pixels (rows 85..340, cols 64..575);
3. write the row index ``i`` (256 = 4^4) and the column index ``j`` (512 = 2 * 4^4) in mixed radix, most
   significant digit first::

       i = 64*i1 + 16*i2 + 4*i3 + i4,           i1..i4 in {0..3}
       j = 256*j0 + 64*j1 + 16*j2 + 4*j3 + j4,  j0 in {0,1}, j1..j4 in {0..3}

   i.e. reshape the image to ``(4,4,4,4, 2,4,4,4,4, 3)``;
4. interleave the digits coarse to fine ("quantized tensor train" ordering) so that row digit k and column digit k
   sit side by side, and merge each pair into one mode of size 16; the left/right half bit ``j0`` comes first and
   the colour channel last::

       (j0, (i1,j1), (i2,j2), (i3,j3), (i4,j4), c)  ->  shape (2, 16, 16, 16, 16, 3)

   Mode k (1..4) addresses a 4 x 4 block of pixels at scale 4^(4-k), so low TT ranks capture the coarse structure
   of the picture first.

The 6-way tensor (393,216 entries) is decomposed by TT-SVD for several maximum ranks with ``tnkit.tt.from_dense``
(jitted, float64) and with ``tensorly.decomposition.tensor_train`` (NumPy backend).
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._core import Outcome, markdown_table, pyplot
from tnkit import tt

CROP_ROWS, CROP_COLS = 256, 512
# (i1,i2,i3,i4, j0,j1,j2,j3,j4, c) -> (j0, i1,j1, i2,j2, i3,j3, i4,j4, c)
SPLIT_SHAPE = (4, 4, 4, 4, 2, 4, 4, 4, 4, 3)
PERM = (4, 0, 5, 1, 6, 2, 7, 3, 8, 9)
TT_DIMS = (2, 16, 16, 16, 16, 3)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def load_image() -> np.ndarray:
    """Centred 256 x 512 x 3 float64 crop of sklearn's china.jpg, in [0, 1]."""
    from sklearn.datasets import load_sample_image

    img = load_sample_image("china.jpg")  # (427, 640, 3) uint8
    h, w, _ = img.shape
    r0, c0 = (h - CROP_ROWS) // 2, (w - CROP_COLS) // 2
    crop = img[r0 : r0 + CROP_ROWS, c0 : c0 + CROP_COLS, :]
    return crop.astype(np.float64) / 255.0


def image_to_tensor(img: np.ndarray) -> np.ndarray:
    """(256, 512, 3) image -> (2, 16, 16, 16, 16, 3) QTT-ordered tensor."""
    assert img.shape == (CROP_ROWS, CROP_COLS, 3), img.shape
    return img.reshape(SPLIT_SHAPE).transpose(PERM).reshape(TT_DIMS)


def tensor_to_image(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`image_to_tensor`."""
    inv = np.argsort(PERM)
    split = tuple(SPLIT_SHAPE[p] for p in PERM)
    return np.asarray(x).reshape(split).transpose(inv).reshape(CROP_ROWS, CROP_COLS, 3)


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.linalg.norm((x - y).ravel()) / np.linalg.norm(x.ravel()))


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------
def time_tnkit(x: jnp.ndarray, rank: int, repeats: int):
    """Compile, warm up, then time ``repeats`` calls of jitted TT-SVD."""
    f = jax.jit(functools.partial(tt.from_dense, max_rank=rank))
    t0 = time.perf_counter()
    compiled = f.lower(x).compile()
    compile_s = time.perf_counter() - t0

    t = jax.block_until_ready(compiled(x))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        t = jax.block_until_ready(compiled(x))
        times.append(time.perf_counter() - t0)
    return t, compile_s, statistics.median(times)


def time_tensorly(x: np.ndarray, rank: int, repeats: int):
    """Warm up, then time ``repeats`` calls of TensorLy's TT-SVD."""
    import tensorly as tl
    from tensorly.decomposition import tensor_train

    tl.set_backend("numpy")
    res = tensor_train(x, rank=rank)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = tensor_train(x, rank=rank)
        times.append(time.perf_counter() - t0)
    return res, statistics.median(times)


# --------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------
def save_plots(ctx, img: np.ndarray, rows: list[dict], recons: dict[int, np.ndarray]) -> None:
    """Error against compression (both libraries) and reconstructions at a few ranks."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    cr = [r["compression_ratio"] for r in rows]
    ax.plot(cr, [r["rel_err_tnkit"] for r in rows], "o-", label="tnkit tt.from_dense")
    ax.plot(cr, [r["rel_err_tensorly"] for r in rows], "x--", label="TensorLy tensor_train")
    for r in rows:
        ax.annotate(
            f"r={r['max_rank']}",
            (r["compression_ratio"], r["rel_err_tnkit"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (dense size / TT parameters)")
    ax.set_ylabel("relative Frobenius error")
    ax.set_title("china.jpg 256x512x3 as TT with dims (2,16,16,16,16,3)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "error_vs_compression")

    by_rank = {r["max_rank"]: r for r in rows}
    shown = sorted(recons)
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3.2 * (len(shown) + 1), 2.2))
    axes = np.atleast_1d(axes)
    axes[0].imshow(img)
    axes[0].set_title("original crop", fontsize=9)
    for ax, r in zip(axes[1:], shown, strict=True):
        ax.imshow(np.clip(recons[r], 0.0, 1.0))
        row = by_rank[r]
        ax.set_title(f"max rank {r}: {row['compression_ratio']:.1f}x, err {row['rel_err_tnkit']:.3f}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    ctx.savefig(fig, "reconstructions")


def pick_shown(ranks: list[int], k: int = 4) -> list[int]:
    """Up to k ranks spread over the list (always first and last)."""
    if len(ranks) <= k:
        return list(ranks)
    idx = np.unique(np.linspace(0, len(ranks) - 1, k).round().astype(int))
    return [ranks[i] for i in idx]


def run(config, ctx) -> Outcome:
    """TT-SVD of the image tensor at each rank of ``config.ranks``, tnkit and TensorLy, errors and times."""
    import tensorly as tl

    img = load_image()
    x_np = image_to_tensor(img)
    if not np.array_equal(tensor_to_image(x_np), img):
        raise AssertionError("image_to_tensor and tensor_to_image are not inverse to each other")
    x = jnp.asarray(x_np)
    dense_size = int(x_np.size)
    ctx.log(f"china.jpg crop {img.shape} -> tensor {x_np.shape} ({dense_size} entries, {x.dtype})")
    ctx.log(f"ranks {config.ranks}")

    shown = set(pick_shown(list(config.ranks)))
    rows, recons = [], {}
    for r in ctx.progress(config.ranks, desc="ranks"):
        t, compile_s, tn_s = time_tnkit(x, r, config.repeats)
        y = np.asarray(tt.to_dense(t))
        tly, tly_s = time_tensorly(x_np, r, config.repeats)
        row = {
            "max_rank": r,
            "ranks_tnkit": [int(k) for k in t.ranks],
            "ranks_tensorly": [int(k) for k in tly.rank],
            "params": int(t.num_params),
            "params_tensorly": int(sum(np.size(f) for f in tly.factors)),
            "compression_ratio": dense_size / int(t.num_params),
            "rel_err_tnkit": rel_error(x_np, y),
            "rel_err_tensorly": rel_error(x_np, tl.tt_to_tensor(tly)),
            "tnkit_compile_s": compile_s,
            "tnkit_s": tn_s,
            "tensorly_s": tly_s,
        }
        rows.append(row)
        if r in shown:
            recons[r] = tensor_to_image(y)
        ctx.log(
            f"rank {r:>3}: {row['params']:>7} params ({row['compression_ratio']:.1f}x), error tnkit "
            f"{row['rel_err_tnkit']:.4e} / TensorLy {row['rel_err_tensorly']:.4e}, time {tn_s * 1e3:.1f} ms / "
            f"{tly_s * 1e3:.1f} ms"
        )
    save_plots(ctx, img, rows, recons)

    errs = [r["rel_err_tnkit"] for r in rows]
    agree = all(abs(r["rel_err_tnkit"] - r["rel_err_tensorly"]) <= 1e-8 + 1e-6 * r["rel_err_tensorly"] for r in rows)
    speedups = [r["tensorly_s"] / r["tnkit_s"] for r in rows]
    table = markdown_table(
        ["max rank", "TT ranks", "params", "compression", "error tnkit", "error TensorLy", "tnkit ms", "TensorLy ms",
         "tnkit compile s"],
        [
            (r["max_rank"], "-".join(map(str, r["ranks_tnkit"])), r["params"], f"{r['compression_ratio']:.1f}x",
             r["rel_err_tnkit"], r["rel_err_tensorly"], r["tnkit_s"] * 1e3, r["tensorly_s"] * 1e3, r["tnkit_compile_s"])
            for r in rows
        ],
    )
    report = (
        "## Setting\n\n"
        f"scikit-learn's `china.jpg`, centred 256 x 512 x 3 crop, float64, reshaped in quantized-TT order to "
        f"`{TT_DIMS}` ({dense_size} entries). TT-SVD with a rank cap by `tnkit.tt.from_dense` (jitted; compile time "
        f"separate) and by TensorLy's `tensor_train` (NumPy backend); times are medians of {config.repeats} calls "
        "after a warm-up, in the same process.\n\n"
        f"## Results\n\n{table}\n"
    )
    headline = (
        f"TT of a photo: error {errs[0]:.3f} -> {errs[-1]:.3f} over ranks {config.ranks[0]}..{config.ranks[-1]}; "
        f"same error as TensorLy, {min(speedups):.1f}-{max(speedups):.1f}x faster"
    )
    return Outcome(
        results={"tensor_dims": TT_DIMS, "dense_size": dense_size, "rows": rows},
        checks={
            "errors equal TensorLy's to rounding at every rank": agree,
            "error falls as the rank grows": errs == sorted(errs, reverse=True) and errs[-1] < errs[0],
        },
        headline=headline,
        report=report,
    )
