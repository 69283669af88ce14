"""The experiments runner (``python -m experiments``), its data loaders, and the compress_image experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.experiment_checks import ROOT, run_smoke
from experiments import _core, data


def test_compress_image_smoke(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("PIL")
    pytest.importorskip("tensorly")
    record = run_smoke("compress_image", tmp_path)
    rows = record["results"]["rows"]
    assert [r["max_rank"] for r in rows] == [1, 4, 16]
    for row in rows:
        # Same TT-SVD, same truncation: errors agree with TensorLy's to rounding, and so do the parameter counts.
        assert abs(row["rel_err_tnkit"] - row["rel_err_tensorly"]) <= 1e-8 + 1e-6 * row["rel_err_tensorly"]
        assert row["params"] == row["params_tensorly"]
        dims = record["results"]["tensor_dims"]
        ranks = row["ranks_tnkit"]
        assert row["params"] == sum(ranks[k] * dims[k] * ranks[k + 1] for k in range(len(dims)))
    assert set(record["figures"]) == {"error_vs_compression.png", "reconstructions.png"}
    assert record["command"] == "python -m experiments run compress_image --smoke"


def test_cli_lists_every_experiment():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in _core.NAMES:
        assert f"| {name} |" in proc.stdout
        exp = _core.load(name)
        assert (ROOT / "experiments" / name / "README.md").exists(), f"{name} has no README"
        assert set(exp.configs) == set(_core.Size)


def test_cli_rejects_unknown_experiment():
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_markdown_table_and_json_conversion():
    table = _core.markdown_table(["a", "b"], [(1, 0.5), ("x", float("nan"))])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5 |", "| x | nan |"]
    with pytest.raises(ValueError, match="a row has 1 cells, expected 2"):
        _core.markdown_table(["a", "b"], [(1,)])
    converted = _core.to_jsonable({"x": np.float32(1.5), "y": np.arange(3), "z": (_core.Size.QUICK, None)})
    assert json.loads(json.dumps(converted)) == {"x": 1.5, "y": [0, 1, 2], "z": ["quick", None]}
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        _core.to_jsonable({"f": object()})


def test_idx_round_trip_and_mnist_loader(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    data.write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    data.write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    split = data.load_mnist(tmp_path, dataset="fashion_mnist", split="test")
    np.testing.assert_array_equal(split.images, images.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(split.labels, labels.astype(np.int32))
    assert split.images.dtype == np.float32 and split.flat().shape == (5, 784)
    # The train split is absent: the error says where it looked and what it wanted.
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_mnist(tmp_path, dataset="fashion_mnist", split="train")


def test_mnist_loader_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("TNKIT_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        data.load_mnist(None)
    with pytest.raises(ValueError, match="dataset: expected one of"):
        data.load_mnist(tmp_path, dataset="cifar")
    with pytest.raises(ValueError, match="split: expected"):
        data.load_mnist(tmp_path, split="val")
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 9, 1, 2]))  # says 9 bytes, holds 2
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(bad)
    with pytest.raises(TypeError, match="expected dtype uint8"):
        data.write_idx(tmp_path / "x", np.zeros(3, np.int32))


def test_digits_split_is_a_fixed_partition():
    pytest.importorskip("sklearn")
    train, test = data.load_digits(test_fraction=0.25, seed=0)
    assert len(train.labels) + len(test.labels) == 1797 and len(test.labels) == 449
    assert train.images.shape[1:] == (8, 8) and 0.0 <= train.images.min() and train.images.max() <= 1.0
    again, _ = data.load_digits(test_fraction=0.25, seed=0)
    np.testing.assert_array_equal(train.labels, again.labels)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=1.0)


def test_cli_set_overrides_a_config_field_and_is_checked(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bad = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "compress_image", "--smoke", "--set", "nope=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode != 0 and "has no field 'nope'" in bad.stderr
    from experiments.__main__ import _overrides

    assert _overrides(["ranks=(2, 3)", "repeats=1"], "compress_image") == {"ranks": (2, 3), "repeats": 1}
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        _overrides(["ranks"], "compress_image")


def test_every_experiment_run_resolves_to_a_function():
    for name in _core.NAMES:
        exp = _core.load(name)
        fn = exp.run_function()
        assert callable(fn) and fn.__name__ == "run", name


def test_experiment_run_location_is_checked():
    config = {size: None for size in _core.Size}
    with pytest.raises(ValueError, match=r"run must be 'package\.module:function', got 'experiments\.flora'"):
        _core.Experiment("x", "t", "p", "c", config, "experiments.flora", {})
    assert _core.Experiment("x", "t", "p", "c", config, len, {}).run_function() is len
