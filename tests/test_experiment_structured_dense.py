"""The structured_dense experiment (Qiu et al. 2024) at the smoke size: it learns, and its FLOP counts are right."""

from tests.experiment_checks import run_smoke


def test_structured_dense_smoke(tmp_path):
    record = run_smoke("structured_dense", tmp_path)
    config, runs = record["config"], record["results"]["runs"]
    assert {r["structure"] for r in runs} == set(config["structures"])
    n_in, classes, depth = 64, 10, config["depth"]
    for r in runs:
        d = r["width"]
        # learning: the chosen rate lowered the training loss well below its start, and test accuracy beats chance
        assert r["best"]["train_loss"] < 0.7 * r["initial_train_loss"], r
        assert r["best"]["test_acc"] > 0.3, r
        # closed-form multiply-adds of each hidden d x d layer (written from the definitions, not from tnkit)
        expected = {
            "dense": d * d,
            "btt": config["btt_rank"] * 2 * d * round(d**0.5),  # r (in n_1 + out m_1), d = 64 -> modes (8, 8)
            "low_rank": 2 * d * (d // config["low_rank_divisor"]),
        }[r["structure"]]
        assert r["hidden_macs"] == expected == r["hidden_macs_xla"], r
        assert r["flops_per_example"] == 2 * (n_in * d + depth * expected + d * classes)
        # parameters: the two dense outer layers with biases, plus the hidden layers' factors and biases
        hidden = {"dense": d * d, "btt": expected, "low_rank": expected}[r["structure"]]
        assert r["params"] == (n_in + 1) * d + depth * (hidden + d) + (d + 1) * classes
