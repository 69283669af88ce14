"""Main job: compress a real image with tensor trains, tnkit vs TensorLy.

The tensor
----------
scikit-learn ships a sample photo, ``sklearn.datasets.load_sample_image(
"china.jpg")``: a 427 x 640 x 3 ``uint8`` RGB image (no network needed;
Pillow is used to decode it). We

1. convert it to ``float64`` in ``[0, 1]`` and keep all three colour
   channels;
2. take the centred crop of 256 x 512 pixels (rows 85..340, cols 64..575);
3. write the row index ``i`` (256 = 4^4) and the column index ``j``
   (512 = 2 * 4^4) in mixed radix, most significant digit first::

       i = 64*i1 + 16*i2 + 4*i3 + i4,           i1..i4 in {0..3}
       j = 256*j0 + 64*j1 + 16*j2 + 4*j3 + j4,  j0 in {0,1}, j1..j4 in {0..3}

   i.e. reshape the image to ``(4,4,4,4, 2,4,4,4,4, 3)``;
4. interleave the digits coarse to fine ("quantized tensor train"
   ordering) so that row digit k and column digit k sit side by side, and
   merge each pair into one mode of size 16; the left/right half bit ``j0``
   comes first and the colour channel last::

       (j0, (i1,j1), (i2,j2), (i3,j3), (i4,j4), c)  ->  shape (2, 16, 16, 16, 16, 3)

   Mode k (1..4) addresses a 4 x 4 block of pixels at scale 4^(4-k), so
   low TT ranks capture the coarse structure of the picture first.

The 6-way tensor (393,216 entries) is decomposed by TT-SVD for several
maximum ranks with ``tnkit.tt.from_dense`` (jitted, float64) and with
``tensorly.decomposition.tensor_train`` (NumPy backend). For each rank the
script prints a table of: number of TT parameters, compression ratio
(dense size / params), relative Frobenius error of both, tnkit's compile
time and steady-state time (median of ``--repeats`` calls after a warm-up
call), and TensorLy's time (median of ``--repeats`` calls after a warm-up).

Outputs under ``--out`` (default ``experiments/out/compress_image/``):
``results.json`` (the table plus metadata), ``error_vs_compression.png``
and ``reconstructions.png`` (original crop and tnkit reconstructions at a
few ranks).

Usage::

    python experiments/compress_image.py                 # full run
    python experiments/compress_image.py --smoke         # quick check
    python experiments/compress_image.py --ranks 1 8 64 --out /tmp/ci
"""

from __future__ import annotations

import jax

# float64 for the experiment only; the library itself never flips this flag.
jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import tnkit  # noqa: E402
from tnkit import tt  # noqa: E402

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64)
SMOKE_RANKS = (1, 4, 16)
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "compress_image"

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
def save_plots(out: Path, img: np.ndarray, rows: list[dict], recons: dict[int, np.ndarray]):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): skipping plots")
        return []

    paths = []

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
    fig.tight_layout()
    p = out / "error_vs_compression.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    by_rank = {r["max_rank"]: r for r in rows}
    shown = sorted(recons)
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3.2 * (len(shown) + 1), 2.2))
    axes = np.atleast_1d(axes)
    axes[0].imshow(img)
    axes[0].set_title("original crop", fontsize=9)
    for ax, r in zip(axes[1:], shown):
        ax.imshow(np.clip(recons[r], 0.0, 1.0))
        row = by_rank[r]
        ax.set_title(
            f"max rank {r}: {row['compression_ratio']:.1f}x, err {row['rel_err_tnkit']:.3f}",
            fontsize=9,
        )
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    p = out / "reconstructions.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths


def pick_shown(ranks: list[int], k: int = 4) -> list[int]:
    """Up to k ranks spread over the list (always first and last)."""
    if len(ranks) <= k:
        return list(ranks)
    idx = np.unique(np.linspace(0, len(ranks) - 1, k).round().astype(int))
    return [ranks[i] for i in idx]


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--ranks",
        type=int,
        nargs="+",
        default=None,
        help=f"max TT ranks to try (default {' '.join(map(str, DEFAULT_RANKS))})",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"quick run: ranks {' '.join(map(str, SMOKE_RANKS))} (unless --ranks given)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per rank (default 3)")
    args = p.parse_args(argv)
    if args.ranks is None:
        args.ranks = list(SMOKE_RANKS if args.smoke else DEFAULT_RANKS)
    if any(r < 1 for r in args.ranks) or args.repeats < 1:
        p.error("ranks and repeats must be >= 1")
    args.ranks = sorted(set(args.ranks))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    import tensorly as tl

    img = load_image()
    x_np = image_to_tensor(img)
    assert np.array_equal(tensor_to_image(x_np), img)
    x = jnp.asarray(x_np)
    dense_size = int(x_np.size)

    print(
        f"image china.jpg crop {img.shape} -> tensor dims {x_np.shape} "
        f"({dense_size} entries), dtype {x.dtype}, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, tensorly {tl.__version__}"
    )
    print(f"ranks {args.ranks}, {args.repeats} timed call(s) per rank\n")

    header = (
        f"{'rank':>4} {'params':>8} {'ratio':>8} {'err tnkit':>10} {'err tly':>10} "
        f"{'compile s':>10} {'tnkit s':>9} {'tly s':>9}  tt ranks"
    )
    print(header)
    print("-" * len(header))

    shown = set(pick_shown(args.ranks))
    rows, recons = [], {}
    for r in args.ranks:
        t, compile_s, tn_s = time_tnkit(x, r, args.repeats)
        y = np.asarray(tt.to_dense(t))
        err_tn = rel_error(x_np, y)
        params = int(t.num_params)

        tly, tly_s = time_tensorly(x_np, r, args.repeats)
        err_tly = rel_error(x_np, tl.tt_to_tensor(tly))
        tly_params = int(sum(np.size(f) for f in tly.factors))

        row = {
            "max_rank": r,
            "ranks_tnkit": [int(k) for k in t.ranks],
            "ranks_tensorly": [int(k) for k in tly.rank],
            "params": params,
            "params_tensorly": tly_params,
            "compression_ratio": dense_size / params,
            "rel_err_tnkit": err_tn,
            "rel_err_tensorly": err_tly,
            "tnkit_compile_s": compile_s,
            "tnkit_s": tn_s,
            "tensorly_s": tly_s,
        }
        rows.append(row)
        if r in shown:
            recons[r] = tensor_to_image(y)
        print(
            f"{r:>4} {params:>8} {row['compression_ratio']:>8.2f} {err_tn:>10.4e} "
            f"{err_tly:>10.4e} {compile_s:>10.3f} {tn_s:>9.4f} {tly_s:>9.4f}  "
            + "-".join(map(str, row["ranks_tnkit"]))
        )
        if params != tly_params:
            print(f"     note: TensorLy has {tly_params} parameters (ranks {row['ranks_tensorly']})")

    result = {
        "experiment": "compress_image",
        "image": "sklearn.datasets.load_sample_image('china.jpg')",
        "crop": {"rows": CROP_ROWS, "cols": CROP_COLS, "channels": 3, "centred": True},
        "tensor_dims": list(TT_DIMS),
        "ordering": "(j0, (i1,j1), (i2,j2), (i3,j3), (i4,j4), c), digits most significant first",
        "dense_size": dense_size,
        "dtype": str(x.dtype),
        "repeats": args.repeats,
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "tnkit": getattr(tnkit, "__version__", "unknown"),
            "tensorly": tl.__version__,
            "numpy": np.__version__,
        },
        "device": str(jax.devices()[0]),
        "machine": platform.machine(),
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    paths = save_plots(out, img, rows, recons)

    print(f"\nwrote {out / 'results.json'}")
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
