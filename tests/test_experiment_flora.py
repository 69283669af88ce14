"""The flora experiment (FLoRA against LoRA on a frozen digits CNN) at the smoke size, through the real CLI."""

import math

from tests.experiment_checks import run_smoke


def tucker_count(shape, r):
    """Tucker update with ranks min(r, n_k): core prod(r_k) plus one (n_k, r_k) factor per kernel mode."""
    ranks = [min(r, n) for n in shape]
    return math.prod(ranks) + sum(n * k for n, k in zip(shape, ranks))


def lora_count(shape, r):
    """LoRA on the matrix view (kh * kw * in, out): A (kh kw in, r) and B (r, out)."""
    return r * (math.prod(shape[:-1]) + shape[-1])


def test_flora_smoke(tmp_path):
    record = run_smoke("flora", tmp_path)
    res, config = record["results"], record["config"]
    c1, c2, c3 = config["channels"]
    kernels = {"conv1": (3, 3, 1, c1), "conv2": (3, 3, c1, c2), "conv3": (3, 3, c2, c3)}
    k_new = len(config["adapt_classes"])
    head = c3 * k_new + k_new  # the new linear head on the c3 pooled features, with bias
    conv_params = sum(math.prod(s) + s[-1] for s in kernels.values())

    pre = res["pretrain"]
    assert pre["test_acc"] > 0.9 and pre["loss_last"] < 0.5 * pre["loss_first"]
    rows = {(r["method"], r["rank"]): r for r in res["settings"]}
    probe = rows[("head", None)]
    assert probe["trainable_params"] == head  # the linear probe trains the head only
    if ("full", None) in rows:
        assert rows[("full", None)]["trainable_params"] == conv_params + head
    adapters = [r for r in res["settings"] if r["method"] in ("tucker", "lora")]
    assert {r["method"] for r in adapters} == {"tucker", "lora"}
    for r in adapters:
        closed = tucker_count if r["method"] == "tucker" else lora_count
        expected = sum(closed(s, r["rank"]) for s in kernels.values())
        # the nnx.Param filter counts exactly the adapters' factors plus the head: the frozen kernels do not train
        assert r["trainable_params"] == expected + head, (r["method"], r["rank"])
        assert {k: tuple(v["kernel_shape"]) for k, v in r["adapters"].items()} == kernels
        assert r["loss_last"] < 0.5 * r["loss_first"]
        assert r["test_acc"] > res["chance"] + 0.2
        assert r["test_acc"] >= probe["test_acc"]  # adapting the convolutions helps over the frozen features
