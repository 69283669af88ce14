"""Tests for distributing tnkit.optim.scale_by_shampoo over a mesh, and for checkpointing optimizer states.

The 8-device checks run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (this process
initialised JAX with one CPU device). The subprocess runs the same float32 problem with ``mesh=None`` and with an
8-device mesh, records the updates and states, the compiled program's ``eigh`` operand shapes, and writes a
checkpoint of the 8-device state; this process compares them and resumes the 8-device checkpoint on its 1 device.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from tnkit import optim
from tnkit.optim import ShampooLayout

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEPS, _SAVE_AT = 4, 2

# A (10, 6) matrix with block_size 4: 3 x 2 = 6 blocks, two (4, 4) factors each -> one group of 12 blocks, padded to
# 16 = 2 per device. A (30,) vector: one diagonal block (padded to 8 blocks, 1 per device).
_SETUP = """
import jax, jax.numpy as jnp, numpy as np
from tnkit import optim
from tnkit.optim import Grafting, ShampooLayout
PARAMS = {"a": jnp.zeros((10, 6), jnp.float32), "c": jnp.zeros(30, jnp.float32)}
KW = dict(beta1=0.5, layout=ShampooLayout(block_size=4), grafting=Grafting.ADAM, precondition_every=2,
          start_preconditioning_step=1, max_residual=None)
def grads(steps):
    rng = np.random.default_rng(0)
    return [{k: jnp.asarray(rng.standard_normal(p.shape), jnp.float32) for k, p in PARAMS.items()}
            for _ in range(steps)]
"""

_CHILD = """
import re, sys, json
jax.config.update("jax_disable_most_optimizations", True)
from jax.sharding import Mesh
out = sys.argv[1]
assert jax.device_count() == 8, jax.device_count()
mesh = Mesh(np.array(jax.devices()), ("blocks",))
gs = grads(STEPS)
results = {}
for name, m in [("one", None), ("eight", mesh)]:
    tx = optim.scale_by_shampoo(**KW, mesh=m)
    state = tx.init(PARAMS)
    update = jax.jit(tx.update).lower(gs[0], state).compile()
    if m is not None:
        text = update.as_text()
        eigh = [l for l in text.splitlines() if "custom_call_target" in l and "syevd" in l]
        results["eigh_shapes"] = sorted({s for l in eigh for s in re.findall(r"f32\\[\\d+,4,4\\]", l)})
    for t, g in enumerate(gs):
        u, state = update(g, state)
        if m is not None and t + 1 == SAVE_AT:
            optim.save_state(out + "/ckpt.npz", state)
        for i, leaf in enumerate(jax.tree.leaves((u, state))):
            results[f"{name}_{t}_{i}"] = np.asarray(leaf).tolist()
json.dump(results, open(out + "/results.json", "w"))
"""


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    script = _SETUP + f"STEPS, SAVE_AT = {_STEPS}, {_SAVE_AT}\n" + textwrap.dedent(_CHILD)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "results.json") as f:
        return out, json.load(f)


def _namespace():
    ns = {}
    exec(_SETUP, ns)  # noqa: S102 - the child's exact problem, built in this process
    return ns


def test_eight_devices_match_one_device(eight_devices):
    _, r = eight_devices
    n = sum(k.startswith("one_0_") for k in r)
    assert n > 10  # updates and the whole state
    for t in range(_STEPS):
        for i in range(n):
            a, b = np.asarray(r[f"one_{t}_{i}"]), np.asarray(r[f"eight_{t}_{i}"])
            assert a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * max(1.0, float(np.max(np.abs(a)))))


def test_root_computation_is_sharded(eight_devices):
    _, r = eight_devices
    # 12 blocks of (4, 4) padded to 16: each device's eigh sees 2 blocks, never the whole stack of 12 (or 16).
    assert r["eigh_shapes"] == ["f32[2,4,4]"], r["eigh_shapes"]


def test_checkpoint_from_eight_devices_resumes_on_one(eight_devices):
    out, r = eight_devices
    ns = _namespace()
    tx = optim.scale_by_shampoo(**ns["KW"])  # no mesh: this process has one device
    like = tx.init(ns["PARAMS"])
    state = optim.load_state(out / "ckpt.npz", like)
    assert jax.tree.structure(state) == jax.tree.structure(like)
    update = jax.jit(tx.update)
    gs = ns["grads"](_STEPS)
    for t in range(_SAVE_AT, _STEPS):
        u, state = update(gs[t], state)
        for i, leaf in enumerate(jax.tree.leaves((u, state))):
            want = np.asarray(r[f"eight_{t}_{i}"])
            assert leaf.dtype != jnp.float64  # the float32 state stays float32 with x64 on
            np.testing.assert_allclose(np.asarray(leaf), want, rtol=1e-5, atol=1e-6 * max(1.0, np.max(np.abs(want))))


def test_mesh_on_one_device_equals_no_mesh():
    # The shard_map path on a 1-device mesh: same numbers as the plain path (float64 here), rejected count included.
    mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
    params = {"w": jnp.zeros((6, 5)), "b": jnp.zeros(3)}
    kw = {"layout": ShampooLayout(block_size=4), "start_preconditioning_step": 0, "precondition_every": 1}
    plain, sharded = optim.scale_by_shampoo(**kw), optim.scale_by_shampoo(**kw, mesh=mesh, mesh_axis="x")
    s1, s2 = plain.init(params), sharded.init(params)
    update1, update2 = jax.jit(plain.update), jax.jit(sharded.update)
    rng = np.random.default_rng(1)
    for _ in range(2):
        g = {k: jnp.asarray(rng.standard_normal(p.shape)) for k, p in params.items()}
        u1, s1 = update1(g, s1)
        u2, s2 = update2(g, s2)
        for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2))):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mesh="devices"), TypeError, "mesh must be a jax.sharding.Mesh"),
        (dict(mesh_axis="x"), ValueError, "mesh_axis needs a mesh"),
        (dict(mesh=Mesh(np.array(jax.devices()[:1]), ("x",)), mesh_axis="y"), ValueError, "mesh_axis must name"),
        (dict(mesh=Mesh(np.array(jax.devices()[:1]), ("x",)), mesh_axis=3), TypeError, "mesh_axis must be an axis"),
    ],
)
def test_bad_mesh_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.shampoo(1e-2, **kwargs)


# --------------------------------------------------------------------------------------------------- checkpoints


def test_resume_from_checkpoint_matches_uninterrupted_run_exactly(tmp_path):
    tx = optim.shampoo(
        0.05, layout=ShampooLayout(block_size=4), precondition_every=2, start_preconditioning_step=1, weight_decay=0.1
    )
    params0 = {"w": jnp.ones((6, 3), jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}

    def loss(p):
        return jnp.sum(jnp.sin(p["w"]) ** 2) + jnp.sum(p["b"].astype(jnp.float32) ** 2)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates), state

    params, state = params0, tx.init(params0)
    trajectory = []
    for _ in range(6):
        params, state = step(params, state)
        trajectory.append((params, state))

    params, state = params0, tx.init(params0)
    for _ in range(3):
        params, state = step(params, state)
    optim.save_state(tmp_path / "opt", state)  # numpy appends .npz
    optim.save_state(tmp_path / "params.npz", params)
    state = optim.load_state(tmp_path / "opt.npz", like=tx.init(params0))
    params = optim.load_state(tmp_path / "params.npz", like=params0)
    assert params["b"].dtype == jnp.bfloat16
    for want_params, want_state in trajectory[3:]:
        params, state = step(params, state)
        for a, b in zip(jax.tree.leaves((params, state)), jax.tree.leaves((want_params, want_state))):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


def test_load_state_rejects_another_state(tmp_path):
    tx = optim.scale_by_shampoo()
    optim.save_state(tmp_path / "s.npz", tx.init({"w": jnp.zeros((4, 3))}))
    with pytest.raises(
        ValueError, match=r"state leaf .statistics\[0\]\[0\]: .* float64\[1, 12, 12\] but like has float64\[1, 15, 15\]"
    ):
        optim.load_state(tmp_path / "s.npz", like=tx.init({"w": jnp.zeros((5, 3))}))
    with pytest.raises(
        ValueError, match=r"holds a state of 6 leaves but like has 10; .*in like only: .*statistics\[1\]\[0\]"
    ):
        optim.load_state(tmp_path / "s.npz", like=tx.init({"w": jnp.zeros((4, 3)), "v": jnp.zeros((4, 3))}))
    with pytest.raises(
        ValueError, match=r"statistics\[0\]\[0\]: .* float64\[1, 12, 12\] but like has float32\[1, 12, 12\]"
    ):
        optim.load_state(tmp_path / "s.npz", like=tx.init({"w": jnp.zeros((4, 3), jnp.float32)}))
    with pytest.raises(TypeError, match=r"state leaf \['x'\] must be an array or a number, got str"):
        optim.save_state(tmp_path / "t.npz", {"x": "text"})


def test_checkpoint_round_trips_prng_keys_and_bfloat16(tmp_path):
    tree = {"key": jax.random.key(3), "h": jnp.arange(4, dtype=jnp.bfloat16) / 3, "n": jnp.int32(7)}
    optim.save_state(tmp_path / "k.npz", tree)
    back = optim.load_state(
        tmp_path / "k.npz", like={"key": jax.random.key(0), "h": jnp.zeros(4, jnp.bfloat16), "n": jnp.int32(0)}
    )
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), jax.random.key_data(tree["key"]))
    assert back["h"].dtype == jnp.bfloat16 and bool(jnp.array_equal(back["h"], tree["h"]))
    assert int(back["n"]) == 7
