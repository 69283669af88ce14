"""TT-matrix embeddings (tnkit.layers.TTEmbeddingSpec, tnkit.nn.TTEmbedding, tnkit.eqx.TTEmbedding) against NumPy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads

from tests import layer_checks as lc
from tnkit import eqx as teqx
from tnkit import layers, nn

# 45 ids in vocab modes (2, 5, 5) = 50 rows: the last 5 rows of the TT-matrix are padding.
SPEC = layers.TTEmbeddingSpec(45, 12, ranks=(3, 2), vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2))
IDS = np.array([[0, 44, 7], [-1, -45, 7], [23, 9, 30]])  # repeated and negative ids


def table_reference(params, num_embeddings):
    """T[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] ... G_d[:, i_d, j_d, :], first num_embeddings rows, by NumPy."""
    t = np.ones((1, 1, 1))  # (ids so far, features so far, rank)
    for k in range(len(params)):
        g = np.asarray(params[f"core_{k}"])  # (r, v, f, s)
        t = np.einsum("abr,rvfs->avbfs", t, g)
        a, v, b, f, s = t.shape
        t = t.reshape(a * v, b * f, s)
    return t[:num_embeddings, :, 0]


def rows_reference(params, ids, num_embeddings):
    table = table_reference(params, num_embeddings)
    return table[np.asarray(ids) % num_embeddings]  # NumPy semantics for negative ids


def table_variance(spec, num_seeds=2000):
    """Empirical E|T_ij|^2 over num_seeds initialisations (pooled over entries; the mean is zero by symmetry)."""
    keys = jax.random.split(jax.random.key(99), num_seeds)
    tables = jax.jit(jax.vmap(lambda k: spec.to_dense(spec.init(k, jnp.float64))))(keys)
    return float(np.mean(np.abs(np.asarray(tables)) ** 2))


def check_table_variance(spec, expected, rtol=0.1):
    got = table_variance(spec)
    assert abs(got / expected - 1) < rtol, f"Var T = {got:.4g}, expected {expected:.4g} (ratio {got / expected:.3f})"


class TestSpec:
    def test_param_shapes_and_count(self):
        assert SPEC.param_shapes() == {"core_0": (1, 2, 3, 3), "core_1": (3, 5, 2, 2), "core_2": (2, 5, 2, 1)}
        assert SPEC.count_params() == 1 * 2 * 3 * 3 + 3 * 5 * 2 * 2 + 2 * 5 * 2 * 1
        assert SPEC.padded_num_embeddings == 50

    def test_lookup_cost_closed_form(self):
        # left to right: (3 * 3*2*2) + (3*2 * 2*2*1) = 60 per id; the other splits also cost 60 here
        assert SPEC.lookup_cost(7) == 60 * 7
        assert SPEC.flops((2, 7)) == 2 * 60 * 14
        # d = 4, features (4, 4, 4, 4), rank 8: a sweep costs 4*8*4*8 + 16*8*4*8 + 64*8*4 = 7168 per id,
        # splitting at the middle bond 4*8*4*8 + 8*4*8*4 + 256*8 = 4096
        spec = layers.TTEmbeddingSpec(10**4, 256, ranks=8, vocab_modes=(10,) * 4, feature_modes=(4,) * 4)
        assert spec.lookup_cost(1) == 4096

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_lookup_and_to_dense_equal_numpy(self, dtype):
        params = SPEC.init(jax.random.key(1), dtype)
        np.testing.assert_allclose(SPEC.to_dense(params), table_reference(params, 45), atol=1e-12)
        rows = SPEC.lookup(params, IDS)
        assert rows.shape == (3, 3, 12) and rows.dtype == dtype
        np.testing.assert_allclose(rows, rows_reference(params, IDS, 45), atol=1e-12)

    def test_every_split_point(self, monkeypatch):
        # the chain is contracted from both ends towards the cheapest bond; check every bond against NumPy
        spec = layers.TTEmbeddingSpec(60, 24, ranks=(2, 3, 2), vocab_modes=(3, 2, 5, 2), feature_modes=(2, 3, 2, 2))
        params = spec.init(jax.random.key(2), jnp.float64)
        ids = np.arange(-60, 60, 7)
        expected = rows_reference(params, ids, 60)
        for m in range(5):
            monkeypatch.setattr(layers.TTEmbeddingSpec, "_split_costs", lambda self, m=m: (1,) * m + (0,) + (1,) * (4 - m))
            np.testing.assert_allclose(spec.lookup(params, ids), expected, atol=1e-12, err_msg=f"split {m}")

    def test_lookup_never_forms_the_table(self):
        # every array in the traced lookup and its gradient is far smaller than the 10^4 x 64 table
        spec = layers.TTEmbeddingSpec(10**4, 64, ranks=4, vocab_modes=(100, 100), feature_modes=(8, 8))
        params = spec.init(jax.random.key(0))
        ids = jnp.arange(16)

        def sizes(jaxpr):
            for eqn in jaxpr.eqns:
                yield from (int(np.prod(v.aval.shape)) for v in eqn.outvars)
                for p in eqn.params.values():
                    sub = getattr(p, "jaxpr", p)
                    if hasattr(sub, "eqns"):
                        yield from sizes(sub)

        for fn in (spec.lookup, jax.grad(lambda p, i: jnp.sum(spec.lookup(p, i)))):
            largest = max(sizes(jax.make_jaxpr(fn)(params, ids).jaxpr))
            assert 16 * 64 <= largest < 10**4, largest

    def test_attend_equals_numpy(self):
        params = SPEC.init(jax.random.key(3), jnp.float64)
        q = lc.random_input((2, 4, 12))
        np.testing.assert_allclose(SPEC.attend(params, q), np.asarray(q) @ table_reference(params, 45).T, atol=1e-12)

    def test_unsigned_and_small_int_ids(self):
        params = SPEC.init(jax.random.key(4), jnp.float64)
        ids = np.array([3, 44, 0], np.uint8)
        np.testing.assert_allclose(SPEC.lookup(params, ids), rows_reference(params, ids, 45), atol=1e-12)
        np.testing.assert_allclose(SPEC.lookup(params, 5), rows_reference(params, 5, 45), atol=1e-12)
        assert SPEC.lookup(params, np.zeros((0, 2), np.int32)).shape == (0, 2, 12)

    def test_grads_equal_dense_path(self):
        params = SPEC.init(jax.random.key(5), jnp.float64)

        def loss_tt(p):
            return jnp.sum(jnp.sin(SPEC.lookup(p, IDS)))

        def loss_dense(p):  # rows gathered from the rebuilt table (negative ids wrap as in NumPy)
            return jnp.sum(jnp.sin(SPEC.to_dense(p)[jnp.asarray(IDS) % 45]))

        g_tt, g_dense = jax.grad(loss_tt)(params), jax.grad(loss_dense)(params)
        for k in params:
            np.testing.assert_allclose(g_tt[k], g_dense[k], atol=1e-12, err_msg=k)
        check_grads(loss_tt, (params,), order=1, modes=("rev",))

    def test_jit_and_vmap(self):
        params = SPEC.init(jax.random.key(6), jnp.float64)
        expected = rows_reference(params, IDS, 45)
        lookup = jax.jit(SPEC.lookup)
        np.testing.assert_allclose(lookup(params, IDS), expected, atol=1e-12)
        np.testing.assert_allclose(jax.vmap(SPEC.lookup, in_axes=(None, 0))(params, IDS), expected, atol=1e-12)
        # vmap over two parameter sets
        stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, SPEC.init(jax.random.key(7), jnp.float64))
        both = jax.vmap(SPEC.lookup, in_axes=(0, None))(stacked, IDS)
        np.testing.assert_allclose(both[0], expected, atol=1e-12)

    def test_out_of_range_under_jit_gives_nan_rows(self):
        params = SPEC.init(jax.random.key(8), jnp.float64)
        rows = np.asarray(jax.jit(SPEC.lookup)(params, np.array([3, 45, -46, 49, 44])))
        assert np.isnan(rows[1:4]).all()  # 45..49 would be padding rows of the TT-matrix: never read
        np.testing.assert_allclose(rows[[0, 4]], rows_reference(params, [3, 44], 45), atol=1e-12)

    def test_init_variance_matches_nnx_embed_default(self):
        # nnx.Embed's default initializer: variance_scaling(1, "fan_in", "normal", out_axis=0) -> Var = 1 / features
        dense = nnx.Embed(4000, 16, rngs=nnx.Rngs(0)).embedding[...]
        assert abs(float(jnp.var(dense)) * 16 - 1) < 0.05
        check_table_variance(layers.TTEmbeddingSpec(16, 8, ranks=3, vocab_modes=(4, 4), feature_modes=(2, 4)), 1 / 8)
        spec3 = layers.TTEmbeddingSpec(27, 8, ranks=(3, 4), vocab_modes=(3, 3, 3), feature_modes=(2, 2, 2))
        check_table_variance(spec3, 1 / 8)

    def test_init_variance_check_can_fail(self):
        spec = layers.TTEmbeddingSpec(16, 8, ranks=3, vocab_modes=(4, 4), feature_modes=(2, 4))
        with pytest.raises(AssertionError, match="ratio"):
            check_table_variance(spec, 2 / 8)

    def test_from_dense_guarantee_and_optimum(self):
        rng = np.random.default_rng(0)
        table = rng.standard_normal((45, 12))
        spec, params, info = layers.TTEmbeddingSpec.from_dense(table, rtol=0.3, vocab_modes=(2, 5, 5),
                                                               feature_modes=(3, 2, 2))
        err = np.linalg.norm(table_reference(params, 45) - table) / np.linalg.norm(table)
        assert err <= 0.3 and info.relative_error == pytest.approx(err, rel=1e-9)
        assert info.num_params == spec.count_params() and info.dense_params == 45 * 12
        # d = 2, no padding: TT-SVD at max_rank r is the optimal rank-r truncation of the (v1 f1, v2 f2) unfolding
        spec, params, info = layers.TTEmbeddingSpec.from_dense(table, max_rank=4, vocab_modes=(5, 9),
                                                               feature_modes=(3, 4))
        s = np.linalg.svd(table.reshape(5, 9, 3, 4).transpose(0, 2, 1, 3).reshape(15, 36), compute_uv=False)
        assert spec.ranks == (1, 4, 1)
        assert info.relative_error == pytest.approx(np.sqrt(np.sum(s[4:] ** 2)) / np.linalg.norm(table), rel=1e-9)
        # with padding rows (5 * 10 = 50 > 45) the error of the real rows is at most that of the padded table
        _, params, info = layers.TTEmbeddingSpec.from_dense(table, max_rank=4, vocab_modes=(5, 10),
                                                            feature_modes=(3, 4))
        padded = np.vstack([table, np.zeros((5, 12))])
        s = np.linalg.svd(padded.reshape(5, 10, 3, 4).transpose(0, 2, 1, 3).reshape(15, 40), compute_uv=False)
        err = np.linalg.norm(table_reference(params, 45) - table) / np.linalg.norm(table)
        assert info.relative_error == pytest.approx(err, rel=1e-9)
        assert err <= np.sqrt(np.sum(s[4:] ** 2)) / np.linalg.norm(table) + 1e-12

    def test_auto_modes(self):
        assert layers.vocab_modes_for(10**6, 3) == (100, 100, 100)
        assert layers.vocab_modes_for(50257, 3) == (37, 37, 37)  # 50257 = 29 * 1733: padded to 50653 rows
        assert layers.vocab_modes_for(97, 2) == (10, 10)
        spec = layers.TTEmbeddingSpec(1000, 64, ranks=2, feature_modes=(8, 8))
        assert spec.vocab_modes == (40, 25) and spec.num_modes == 2

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (dict(feature_modes=(3, 2, 3)), r"feature_modes=\(3, 2, 3\) multiplies to 18, but features=12"),
            (dict(vocab_modes=(2, 4, 5)), r"vocab_modes=\(2, 4, 5\) multiplies to 40, fewer than num_embeddings=45"),
            (dict(vocab_modes=(5, 9)), "same length"),
            (dict(ranks=(2, 2, 2)), "2 inner ranks or 4 ranks"),
            (dict(ranks=0), "ranks must be a positive int"),
        ],
    )
    def test_bad_spec(self, kwargs, match):
        base = dict(ranks=2, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2))
        with pytest.raises(ValueError, match=match):
            layers.TTEmbeddingSpec(45, 12, **{**base, **kwargs})
        with pytest.raises(ValueError, match="num_embeddings must be a positive int, got 0"):
            layers.TTEmbeddingSpec(0, 12, ranks=2)

    def test_bad_lookup(self):
        params = SPEC.init(jax.random.key(0))
        with pytest.raises(ValueError, match=r"ids must lie in \[-45, 45\) for num_embeddings=45.*got values in \[0, 45\]"):
            SPEC.lookup(params, jnp.array([0, 45]))
        with pytest.raises(ValueError, match=r"got values in \[-46, 3\]"):
            SPEC.lookup(params, [3, -46])
        with pytest.raises(TypeError, match="ids must have an integer dtype, got float32"):
            SPEC.lookup(params, jnp.ones(3, jnp.float32))
        with pytest.raises(TypeError, match="ids must have an integer dtype, got bool"):
            SPEC.lookup(params, np.array([True]))
        with pytest.raises(TypeError, match="ids must have an integer dtype"):
            jax.jit(SPEC.lookup)(params, jnp.ones(3))
        with pytest.raises(ValueError, match=r"params\['core_1'\] must have shape \(3, 5, 2, 2\)"):
            SPEC.lookup({**params, "core_1": jnp.ones((3, 5, 2, 3))}, IDS)
        with pytest.raises(ValueError, match=r"query must have shape \(\.\.\., features\) = \(\.\.\., 12\), got \(2, 13\)"):
            SPEC.attend(params, jnp.ones((2, 13)))
        with pytest.raises(ValueError, match="needs max_rank or rtol"):
            layers.TTEmbeddingSpec.from_dense(jnp.ones((45, 12)))
        with pytest.raises(ValueError, match=r"table must be a 2-D \(num_embeddings, features\) array"):
            layers.TTEmbeddingSpec.from_dense(jnp.ones(45), max_rank=2)


def embedding_training_losses(step, layer_state, ids, steps=4):
    losses = []
    for _ in range(steps):
        layer_state, loss = step(layer_state, ids)
        losses.append(float(loss))
    return losses


class TestNNX:
    def test_layer_forward_attend_split_merge(self):
        emb = nn.TTEmbedding(45, 12, ranks=3, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2), param_dtype=jnp.float64,
                             rngs=nnx.Rngs(0))
        np.testing.assert_allclose(emb(IDS), rows_reference(emb.params(), IDS, 45), atol=1e-12)
        np.testing.assert_allclose(emb.table(), table_reference(emb.params(), 45), atol=1e-12)
        q = lc.random_input((5, 12))
        np.testing.assert_allclose(emb.attend(q), np.asarray(q) @ table_reference(emb.params(), 45).T, atol=1e-12)
        graphdef, state = nnx.split(emb)
        np.testing.assert_allclose(nnx.merge(graphdef, state)(IDS), emb(IDS), atol=0)
        assert emb.num_embeddings == 45 and emb.features == 12

    def test_optimizer_step_without_retrace(self):
        emb = nn.TTEmbedding(45, 12, ranks=3, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2), param_dtype=jnp.float64,
                             rngs=nnx.Rngs(1))
        target = lc.random_input((3, 3, 12), seed=3)
        traces = []

        @nnx.jit
        def step(model, optimizer, ids):
            traces.append(1)
            loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(ids) - target) ** 2))(model)
            optimizer.update(model, grads)
            return loss

        optimizer = nnx.Optimizer(emb, optax.sgd(0.5), wrt=nnx.Param)
        losses = [float(step(emb, optimizer, jnp.asarray(IDS))) for _ in range(4)]
        assert losses[-1] < losses[0], losses
        assert len(traces) == 1, f"retraced {len(traces)} times"

    def test_count_params_flops_dtypes(self):
        emb = nn.TTEmbedding(45, 12, ranks=(3, 2), vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2), dtype=jnp.bfloat16,
                             rngs=nnx.Rngs(0))
        assert emb.count_params() == 98 and emb.flops((4, 5)) == 2 * 60 * 20
        assert emb.factors["core_0"][...].dtype == jnp.float32
        assert emb(jnp.array([1, 2])).dtype == jnp.bfloat16
        assert emb.attend(jnp.ones((2, 12), jnp.float32)).dtype == jnp.bfloat16

    def test_from_embed(self):
        dense = nnx.Embed(45, 12, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
        emb, info = nn.TTEmbedding.from_embed(dense, max_rank=100, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2))
        assert info.relative_error < 1e-12 and emb.param_dtype == jnp.float64
        np.testing.assert_allclose(emb(IDS), dense(jnp.asarray(IDS)), atol=1e-12)
        small, info = nn.TTEmbedding.from_embed(dense, max_rank=2, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2))
        table = np.asarray(dense.embedding[...])
        err = np.linalg.norm(table_reference(small.params(), 45) - table) / np.linalg.norm(table)
        assert max(small.spec.ranks) == 2 and 0.1 < err < 1 and info.relative_error == pytest.approx(err, rel=1e-9)

    def test_bad_input(self):
        with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
            nn.TTEmbedding(45, 12, ranks=2, rngs=0)
        with pytest.raises(TypeError, match="embed must be a flax.nnx.Embed or a table array, got Linear"):
            nn.TTEmbedding.from_embed(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), max_rank=2)
        emb = nn.TTEmbedding(45, 12, ranks=2, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=r"ids must lie in \[-45, 45\)"):
            emb(jnp.array([45]))


class TestEquinox:
    def test_layer_and_training_step(self):
        emb = teqx.TTEmbedding(45, 12, ranks=3, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2),
                               param_dtype=jnp.float64, key=jax.random.key(0))
        expected = rows_reference(emb.factors, IDS, 45)
        np.testing.assert_allclose(emb(IDS), expected, atol=1e-12)
        np.testing.assert_allclose(jax.vmap(jax.vmap(emb))(IDS), expected, atol=1e-12)  # scalar ids, eqx style
        q = lc.random_input((5, 12))
        np.testing.assert_allclose(emb.attend(q), np.asarray(q) @ table_reference(emb.factors, 45).T, atol=1e-12)
        assert emb.count_params() == 1 * 2 * 3 * 3 + 3 * 5 * 2 * 3 + 3 * 5 * 2 * 1

        opt = optax.sgd(0.5)
        target = lc.random_input((3, 3, 12), seed=3)
        traces = []

        @eqx.filter_jit
        def step(carry, ids):
            traces.append(1)
            model, state = carry
            loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean((m(ids) - target) ** 2))(model)
            updates, state = opt.update(grads, state, model)
            return (eqx.apply_updates(model, updates), state), loss

        losses = embedding_training_losses(step, (emb, opt.init(eqx.filter(emb, eqx.is_array))), jnp.asarray(IDS))
        assert losses[-1] < losses[0], losses
        assert len(traces) == 1, f"retraced {len(traces)} times"

    def test_from_embed(self):
        dense = eqx.nn.Embedding(45, 12, dtype=jnp.float64, key=jax.random.key(3))
        emb, info = teqx.TTEmbedding.from_embed(dense, max_rank=100, vocab_modes=(2, 5, 5), feature_modes=(3, 2, 2))
        assert info.relative_error < 1e-12
        np.testing.assert_allclose(emb(IDS), jax.vmap(jax.vmap(dense))(jnp.asarray(IDS) % 45), atol=1e-12)
        with pytest.raises(TypeError, match="embed must be an equinox.nn.Embedding or a table array"):
            teqx.TTEmbedding.from_embed(object(), max_rank=2)
