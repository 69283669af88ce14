"""Smoke run of the ``core_shapes`` experiment (knapsack against greedy Tucker rank search), checked independently."""

from __future__ import annotations

import math

import numpy as np

from tests.experiment_checks import run_smoke


def test_core_shapes_smoke(tmp_path):
    record = run_smoke("core_shapes", tmp_path)
    tensors = record["results"]["tensors"]
    assert set(tensors) == set(record["config"]["tensors"])
    for name, t in tensors.items():
        dims = t["dims"]
        errors = []
        for row in t["rows"]:
            for method in ("knapsack", "greedy", "greedy_true", "optimum"):
                ranks = row[method]["ranks"]
                # Parameter count from the closed form, and the budget respected.
                params = math.prod(ranks) + sum(n * r for n, r in zip(dims, ranks))
                assert row[method]["params"] == params <= row["budget"], (name, method, ranks)
                # Attainable multilinear ranks: r_k <= prod of the others.
                assert all(r * r <= math.prod(ranks) for r in ranks), (name, method, ranks)
                assert all(1 <= r <= n for r, n in zip(ranks, dims))
            # The brute-force optimum is never beaten by any method (it searches every shape).
            best = row["optimum"]["hosvd_err"]
            assert all(row[m]["hosvd_err"] >= best * (1 - 1e-9) for m in ("knapsack", "greedy", "greedy_true"))
            # The discarded singular-value energy bounds the squared HOSVD error (HOSVD's error bound).
            for m in ("knapsack", "greedy"):
                assert row[m]["hosvd_err"] <= row[m]["bound_err"] * (1 + 1e-6)
            # The knapsack's objective is never worse than greedy's.
            assert row["knapsack"]["discarded"] <= row["greedy"]["discarded"] * (1 + 1e-9)
            errors.append(row["knapsack"]["hosvd_err"])
        # Learning: the error falls with the budget and the factorisation beats the zero tensor (error 1).
        assert np.all(np.diff(errors) <= 1e-12) and errors[-1] < errors[0] < 1.0
        # The error table (from one full HOSVD) against tnkit.tucker.hosvd run at the chosen shapes.
        for c in t["table_check"]:
            np.testing.assert_allclose(c["table"], c["hosvd"], rtol=1e-6, atol=1e-9)
    # On the surrogate objective the knapsack strictly wins somewhere in the smoke setting.
    rows = [r for t in tensors.values() for r in t["rows"]]
    assert any(r["knapsack"]["discarded"] < r["greedy"]["discarded"] * (1 - 1e-6) for r in rows)
