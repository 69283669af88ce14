"""The ``shampoo`` experiment at the smoke size: every optimizer learns, and the state sizes match closed forms."""

from __future__ import annotations

import math

from tests.experiment_checks import run_smoke


def _cnn_shapes(c1: int, c2: int, image_size: int = 8, classes: int = 10):
    """Parameter shapes of the experiment's CNN on 8x8 images (one 2x2 pooling before the head)."""
    side = image_size // 2
    return [
        (3, 3, 1, c1),
        (c1,),
        (3, 3, c1, c2),
        (c2,),
        (side * side * c2, classes),
        (classes,),
    ]


def test_shampoo_smoke(tmp_path):
    record = run_smoke("shampoo", tmp_path)
    config, res = record["config"], record["results"]
    summary = res["summary"]
    assert set(summary) == {"adam", "shampoo", "shampoo_4bit", "soap"}
    for name, s in summary.items():
        assert s["final_train_loss"] < 0.5 * s["initial_train_loss"], name
        assert s["initial_train_loss"] > 2.0, (
            name
        )  # about log(10) = 2.3 at initialisation
        assert s["final_test_acc"] > 0.5, name  # chance is 10%
        assert (
            len(s["median_train_loss_curve"])
            == config["steps"] // config["eval_every"] + 1
        )

    # parameter count and Adam's state (count + two float32 moments) from the architecture alone
    shapes = _cnn_shapes(*config["channels"])
    num_params = sum(math.prod(s) for s in shapes)
    assert res["num_params"] == num_params
    assert summary["adam"]["state_bytes"] == 4 + 2 * 4 * num_params

    # Full Kronecker factors, worked out by hand for channels (8, 16) and block_size 256: conv1 (3,3,1,8) merges to
    # one mode of 72; conv2 (3,3,8,16) to modes (72, 16); the head (256, 10) keeps (256, 10); biases are diagonal.
    assert tuple(config["channels"]) == (8, 16)
    full_modes = [72, 72, 16, 256, 10]
    # 32-bit: statistics and root, (b, b) float32 each
    assert summary["shampoo"]["full_factor_bytes"] == sum(
        2 * 4 * b * b for b in full_modes
    )

    # 4-bit: U flattened into blocks of 64 entries, two codes per byte plus one float32 scale a block; eigenvalues
    def quantized(b):
        blocks = -(-b * b // 64)
        return blocks * 32 + blocks * 4

    assert summary["shampoo_4bit"]["full_factor_bytes"] == sum(
        quantized(b) + 4 * b for b in full_modes
    )
    ratio = res["full_factor_ratio_4bit_over_32bit"]
    assert (
        0.05 < ratio < 0.1
    )  # about 1/14: 4-bit eigenvectors and no stored root, against two float32 matrices
    assert res["preconditioner_ratio_4bit_over_32bit"] < 0.15
