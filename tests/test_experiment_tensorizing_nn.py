"""The tensorizing_nn experiment at the smoke size: it runs, learns, and counts parameters by the closed forms."""

from tests.experiment_checks import run_smoke

DENSE = 1024 * 1024


def tt_count(rank, modes=(4, 4, 4, 4, 4)):
    """sum_k r_{k-1} m_k n_k r_k with ranks (1, r, ..., r, 1), written out independently of tnkit and the experiment."""
    ranks = [1] + [rank] * (len(modes) - 1) + [1]
    return sum(ranks[k] * m * m * ranks[k + 1] for k, m in enumerate(modes))


def test_tensorizing_nn_smoke(tmp_path):
    record = run_smoke("tensorizing_nn", tmp_path)
    res = record["results"]
    models = {(m["kind"], m["rank"]): m for m in res["models"]}
    tt_ranks = record["config"]["tt_ranks"]
    assert set(models) == {("dense", 0)} | {("tt", r) for r in tt_ranks} | {("lowrank", k) for k in res["lowrank_ranks"]}

    # parameter counts and compression factors against closed forms (rank 4: 64 + 3 * 256 + 64 = 896)
    assert tt_count(4) == 896
    assert models[("dense", 0)]["weight_params"] == DENSE
    for r in tt_ranks:
        assert models[("tt", r)]["weight_params"] == tt_count(r)
        assert abs(models[("tt", r)]["compression"] - DENSE / tt_count(r)) < 1e-9
    for k in res["lowrank_ranks"]:
        assert models[("lowrank", k)]["weight_params"] == k * 2048

    # learning: every model above chance, the dense and TT nets well above it, every training loss went down
    for m in models.values():
        assert m["test_accuracy_mean"] > 0.1, m["kind"]
        assert all(c[-1] < 0.9 * c[0] for c in m["loss_curves"]), m["kind"]
    assert models[("dense", 0)]["test_accuracy_mean"] > 0.8
    assert all(models[("tt", r)]["test_accuracy_mean"] > 0.5 for r in tt_ranks)
