"""Shared check for the experiment tests: run one experiment's real CLI at the smoke size and validate its outputs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_smoke(name: str, tmp_path: pathlib.Path, *extra: str, timeout: float = 600) -> dict:
    """Run ``python -m experiments run NAME --smoke`` from the repository root; return its ``results.json`` record.

    Asserts: exit code 0, ``results.json`` and ``report.md`` written, every listed figure exists and is a PNG, and every
    check the experiment reports passed.
    """
    pytest.importorskip("matplotlib")
    out = tmp_path / name
    env = dict(os.environ)
    env.pop("TNKIT_DATA_DIR", None)  # the smoke runs use the data that ships with packages
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "experiments", "run", name, "--smoke", "--quiet", "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{output}"
    record = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert record["experiment"] == name and record["size"] == "smoke"
    assert record["checks"], f"{name}: the experiment reports no checks"
    failed = [c for c, ok in record["checks"].items() if not ok]
    assert not failed, f"{name}: checks failed: {failed}"
    for fig in record["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name}: {fig} is not a PNG"
        assert fig in report
    return record
