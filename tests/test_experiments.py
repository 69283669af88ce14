"""Smoke run of the main job: it must finish and agree with TensorLy."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_compress_image_smoke(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("PIL")
    pytest.importorskip("tensorly")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "compress_image.py"), "--smoke", "--repeats", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"] if isinstance(results, dict) else results
    assert len(rows) >= 3
    for row in rows:
        # Same TT-SVD, same truncation: errors agree with TensorLy's to rounding.
        assert abs(row["rel_err_tnkit"] - row["rel_err_tensorly"]) <= 1e-8 + 1e-6 * row["rel_err_tensorly"]
    errs = [row["rel_err_tnkit"] for row in rows]
    assert errs == sorted(errs, reverse=True), "error must fall as the rank grows"
