"""The tfno experiment: its Burgers solver against the exact Cole-Hopf solution, and the smoke run of the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.tfno import burgers
from tests.experiment_checks import run_smoke


def _cole_hopf(x, t, nu, a, coeffs, phases):
    # Independent of burgers.cole_hopf_solution: phi = a + sum_k c_k exp(-nu (2 pi k)^2 t) cos(2 pi k x + theta_k)
    # solves phi_t = nu phi_xx, and u = -2 nu phi_x / phi solves u_t + u u_x = nu u_xx.
    k = 2 * np.pi * np.arange(1, len(coeffs) + 1)[:, None]
    c = (np.asarray(coeffs) * 1.0)[:, None] * np.exp(-nu * k**2 * t)
    arg = k * x[None, :] + np.asarray(phases)[:, None]
    phi = a + np.sum(c * np.cos(arg), axis=0)
    phi_x = -np.sum(c * k * np.sin(arg), axis=0)
    return -2 * nu * phi_x / phi


def test_burgers_solver_matches_cole_hopf():
    # A steep front (a close to sum |c_k|: max|u0| about 0.8, front width about 0.04); conftest turns x64 on.
    nu, a, coeffs, phases = 0.02, 1.03, (1.0, 0.02), (0.3, 1.1)
    n = 256
    x = np.arange(n) / n
    u0 = _cole_hopf(x, 0.0, nu, a, coeffs, phases)
    assert np.allclose(
        burgers.cole_hopf_solution(x, 0.0, nu, a, coeffs, phases),
        u0,
        rtol=1e-13,
        atol=1e-13,
    )
    assert np.max(np.abs(u0)) > 0.5  # the nonlinear term matters
    u1, steps = burgers.solve(u0, nu, 0.5)
    exact = _cole_hopf(x, 0.5, nu, a, coeffs, phases)
    assert steps > 50
    assert np.linalg.norm(np.asarray(u1) - exact) / np.linalg.norm(exact) < 1e-6
    # The mean is conserved (here: both are 0 to rounding, since u = -2 nu (log phi)_x is a derivative).
    assert abs(float(np.mean(u1)) - float(np.mean(u0))) < 1e-12
    # The heat baseline is the exact linear solution: a single Fourier mode decays by exp(-nu (2 pi k)^2 t).
    s = np.sin(2 * np.pi * 3 * x)
    assert np.allclose(
        burgers.heat_solve(s, nu, 0.5),
        s * np.exp(-nu * (6 * np.pi) ** 2 * 0.5),
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="nu"):
        burgers.solve(u0, -1.0, 0.5)


def test_tfno_smoke(tmp_path):
    record = run_smoke("tfno", tmp_path)
    cfg, res = record["config"], record["results"]
    w, m, layers = cfg["width"], cfg["modes"], cfg["layers"]
    variants = {v["label"]: v for v in res["variants"]}
    # Parameter counts of the spectral weights against their closed forms (a complex number counts 2).
    assert variants["dense"]["params_spectral"] == layers * 2 * w * w * m
    for ri, ro, rm in cfg["tucker_ranks"]:
        v = variants[f"tucker {ri}x{ro}x{rm}"]
        assert v["params_spectral"] == layers * 2 * (
            ri * ro * rm + w * ri + w * ro + m * rm
        )
    for r in cfg["cp_ranks"]:
        assert variants[f"cp {r}"]["params_spectral"] == layers * 2 * r * (
            1 + 2 * w + m
        )
    # Everything outside the spectral weights is shared, so the totals differ by the spectral counts only.
    rest = {v["params_total"] - v["params_spectral"] for v in variants.values()}
    assert len(rest) == 1
    assert all(
        v["params_total"] < variants["dense"]["params_total"]
        for k, v in variants.items()
        if k != "dense"
    )
    # Learning: loss down, and every model beats the zero predictor and the identity map on test.
    base = res["baselines"]
    assert base["zero"] == 1.0 and base["identity"] > 1.0
    for v in variants.values():
        assert v["train_loss"][-1] < 0.5 * v["train_loss"][0]
        assert v["test_error"] < 0.6 * base["zero"]
    assert res["data"]["mean_drift_relative"] < 1e-6
