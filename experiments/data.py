"""Data sets for the experiments. Nothing here touches the network.

* :func:`load_digits`: scikit-learn's bundled 8x8 digits (1,797 images), the default data set of the experiments.
* :func:`load_mnist`: MNIST or Fashion-MNIST from the standard IDX files in a local folder. The folder is
  ``data_dir`` (``--data-dir``) or ``$TNKIT_DATA_DIR``, optionally with a sub-folder per data set
  (``<dir>/mnist/``, ``<dir>/fashion_mnist/``); files may be gzipped. Download them yourself (for instance from the
  data sets' home pages or a mirror) and the experiments that accept ``dataset="mnist"`` will use them.
* :func:`load_sample_image`: the photos scikit-learn ships (``china.jpg``, ``flower.jpg``).

Every loader returns NumPy arrays: images as ``float32`` in ``[0, 1]`` of shape ``(n, h, w)`` (or ``(h, w, 3)``
for photos), labels as ``int32`` of shape ``(n,)``.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "TNKIT_DATA_DIR"

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SUBDIRS = {"mnist": ("mnist", "MNIST"), "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST")}


@dataclasses.dataclass(frozen=True)
class Split:
    """Images and labels of one split. ``images``: ``(n, h, w)`` float32 in [0, 1]; ``labels``: ``(n,)`` int32."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    def flat(self) -> np.ndarray:
        """Images flattened to ``(n, h * w)``."""
        return self.images.reshape(len(self.images), -1)


def load_digits(*, test_fraction: float = 0.25, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's 8x8 handwritten digits, split into train and test with a fixed shuffle.

    Args:
      test_fraction: fraction of the 1,797 images held out, in ``(0, 1)``.
      seed: seed of the shuffle.

    Returns:
      ``(train, test)``; images ``(n, 8, 8)`` float32 in [0, 1] (the raw 0..16 counts divided by 16).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    images = (d.images / 16.0).astype(np.float32)
    labels = d.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return Split(images[train], labels[train]), Split(images[test], labels[test])


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format; ``.gz`` is decompressed).

    The header is two zero bytes, a type code (``0x08`` for unsigned bytes, the only type MNIST uses), the number of
    dimensions, then each dimension as a big-endian 32-bit integer; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be zero)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX type code 0x{raw[2]:02x} is not supported (expected 0x08, unsigned bytes)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape)) if shape else 0
    if len(raw) - header != size:
        raise ValueError(f"{path}: header says shape {shape} ({size} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a ``uint8`` array as an IDX file (gzipped when ``path`` ends in ``.gz``). Used to make test data."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"array: expected dtype uint8, got {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_mnist(
    data_dir: str | os.PathLike | None = None, *, dataset: str = "mnist", split: str = "train"
) -> Split:
    """MNIST or Fashion-MNIST from the standard IDX files in a local folder.

    Args:
      data_dir: a folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``, directly or in a sub-folder named after
        the data set (``mnist/``, ``fashion_mnist/``). Default: ``$TNKIT_DATA_DIR``.
      dataset: ``"mnist"`` or ``"fashion_mnist"`` (both use the same file names).
      split: ``"train"`` or ``"test"``.

    Returns:
      A :class:`Split` with images ``(n, 28, 28)`` float32 in [0, 1] and labels ``(n,)`` int32.

    Raises:
      FileNotFoundError: the files are not there; the message lists where it looked and what it expected.
    """
    if dataset not in _SUBDIRS:
        raise ValueError(f"dataset: expected one of {sorted(_SUBDIRS)}, got {dataset!r}")
    if split not in _IDX_FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if data_dir is None:
        env = os.environ.get(DATA_DIR_ENV)
        if not env:
            raise FileNotFoundError(
                f"{dataset}: no data folder given. Pass --data-dir DIR (or set ${DATA_DIR_ENV}) pointing to a folder "
                f"with the IDX files {', '.join(s for pair in _IDX_FILES.values() for s in pair)} (optionally .gz). "
                "tnkit never downloads data; without these files use the default data set (scikit-learn's digits)."
            )
        data_dir = env
    root = Path(data_dir)
    image_stem, label_stem = _IDX_FILES[split]
    searched = [root, *(root / sub for sub in _SUBDIRS[dataset])]
    for folder in searched:
        images, labels = _find(folder, image_stem), _find(folder, label_stem)
        if images is not None and labels is not None:
            x, y = read_idx(images), read_idx(labels)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{folder}: images of shape {x.shape} do not match labels of shape {y.shape}")
            return Split((x.astype(np.float32) / 255.0), y.astype(np.int32))
    raise FileNotFoundError(
        f"{dataset} {split} split: did not find {image_stem}[.gz] and {label_stem}[.gz] in any of "
        f"{', '.join(str(s) for s in searched)}. tnkit never downloads data: put the standard IDX files there."
    )


def load_sample_image(name: str = "china.jpg") -> np.ndarray:
    """One of scikit-learn's bundled photos (``"china.jpg"`` or ``"flower.jpg"``): ``(427, 640, 3)`` float32 in
    [0, 1]."""
    from sklearn.datasets import load_sample_image as sk_load

    return (sk_load(name) / 255.0).astype(np.float32)
