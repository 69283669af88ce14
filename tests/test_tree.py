"""tnkit.tree (hierarchical Tucker / tree tensor networks) against dense NumPy references.

The oracle for what a TreeTN represents is one ``numpy.einsum`` over all its cores (``np_dense``), written from the
format's definition and independent of tnkit's contraction code; HT-SVD is checked against Grasedyck's computable
error bound (NumPy SVDs of every matricization), against a NumPy ST-HOSVD on the star (Tucker) tree and against a
NumPy TT-SVD on the linear tree.
"""

import dataclasses
import functools
import math
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from tests.helpers import graded_tensor, rel_err, traced
from tnkit import TT, tree
from tnkit.tree import DimensionTree, TreeTN

DTYPES = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128]
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-12, jnp.complex64: 2e-5, jnp.complex128: 1e-12}
DIMS = (3, 4, 2, 5)
TREES = {
    "balanced": ((0, 1), (2, 3)),
    "linear": (((0, 1), 2), 3),
    "star": (0, 1, 2, 3),
    "permuted": ((2, 0), (3, 1)),
    "mixed": ((3, 1), 0, 2),
}


# ------------------------------------------------------------------------------------------------ NumPy oracles


def np_subtree(t: TreeTN, node: int) -> np.ndarray:
    """The basis of ``node`` by one einsum over its subtree: axes (modes below node in DFS order..., r_node)."""
    tr, d = t.tree, t.ndim
    letters = string.ascii_letters
    mode, edge = (lambda m: letters[m]), (lambda s: letters[d + s])
    terms, ops, stack = [], [], [node]
    while stack:
        s = stack.pop()
        kids = tr.children[s]
        stack.extend(kids)
        sub = (mode(tr.modes[s][0]) if not kids else "".join(edge(c) for c in kids)) + edge(s)
        terms.append(sub)
        ops.append(np.asarray(t.cores[s]))
    out = "".join(mode(m) for m in tr.modes[node]) + edge(node)
    return np.einsum(",".join(terms) + "->" + out, *ops, optimize=True)


def np_dense(t: TreeTN) -> np.ndarray:
    order = t.tree.modes[t.tree.root]
    return np.transpose(np_subtree(t, t.tree.root)[..., 0], np.argsort(order))


def np_frame(t: TreeTN, node: int) -> np.ndarray:
    u = np_subtree(t, node)
    return u.reshape(-1, u.shape[-1])


def matricize(x, modes):
    rest = [k for k in range(x.ndim) if k not in modes]
    return x.transpose(list(modes) + rest).reshape(math.prod(x.shape[k] for k in modes), -1)


def tails(x, tr: DimensionTree, ranks):
    """Discarded squared singular values of every non-root matricization of x at the given ranks."""
    return [float(np.sum(np.linalg.svd(matricize(x, tr.modes[s]), compute_uv=False)[ranks[s] :] ** 2)) for s in
            range(tr.root)]


def rand_dense(shape, dtype=jnp.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return jnp.asarray(x, dtype)


def rand_tree(seed, dims=DIMS, ranks=2, nested=TREES["balanced"], dtype=jnp.float64):
    """A TreeTN with Gaussian NumPy cores (no JAX compilation; tree.random is tested on its own)."""
    tr = DimensionTree(nested)
    ranks = [ranks] * tr.num_nodes if isinstance(ranks, int) else list(ranks)
    ranks[tr.root] = 1
    rng = np.random.default_rng(seed)
    cores = []
    for s, kids in enumerate(tr.children):
        shape = tuple(ranks[k] for k in kids) + (ranks[s],) if kids else (dims[tr.modes[s][0]], ranks[s])
        c = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        if np.issubdtype(np.dtype(dtype), np.complexfloating):
            c = c + 1j * rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        cores.append(jnp.asarray(c, dtype))
    return TreeTN(tr, cores)


def member(batch, i):
    return jax.tree_util.tree_map(lambda c: c[i], batch)


# ------------------------------------------------------------------------------------------------ dimension trees


class TestDimensionTree:
    def test_constructors(self):
        assert DimensionTree.balanced(1).nested == 0
        assert DimensionTree.balanced(4).nested == ((0, 1), (2, 3))
        assert DimensionTree.balanced(5).nested == ((0, 1), (2, (3, 4)))
        assert DimensionTree.linear(4).nested == (((0, 1), 2), 3)
        assert DimensionTree.star(3).nested == (0, 1, 2)
        assert DimensionTree.star(1).nested == 0
        assert DimensionTree.tucker(3) == DimensionTree.star(3)
        for d in range(1, 9):
            assert DimensionTree.balanced(d).num_nodes == 2 * d - 1
            assert DimensionTree.linear(d).num_nodes == 2 * d - 1

    def test_post_order_structure(self):
        t = DimensionTree(((0, 1), (2, (3, 4))))
        # post-order: 0:leaf0 1:leaf1 2:{0,1} 3:leaf2 4:leaf3 5:leaf4 6:{3,4} 7:{2,3,4} 8:root
        assert t.children == ((), (), (0, 1), (), (), (), (4, 5), (3, 6), (2, 7))
        assert t.parent == (2, 2, 8, 7, 6, 6, 7, 8, -1)
        assert t.modes[7] == (2, 3, 4) and t.modes[8] == (0, 1, 2, 3, 4)
        assert t.leaves == (0, 1, 3, 4, 5)
        assert t.root == 8 and t.ndim == 5 and t.is_leaf(4) and not t.is_leaf(6)
        p = DimensionTree(((2, 0), 1))
        assert p.modes[p.root] == (2, 0, 1) and p.leaves == (1, 3, 0)

    def test_hashable_static_and_canonical(self):
        a = DimensionTree([[np.int64(0), 1], [2, 3]])
        b = DimensionTree.balanced(4)
        assert a == b and hash(a) == hash(b) and len({a, b}) == 1
        assert a.nested == ((0, 1), (2, 3)) and isinstance(a.nested[0][0], int)
        assert a != DimensionTree(((0, 2), (1, 3)))
        assert repr(a) == "DimensionTree(((0, 1), (2, 3)))"
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.nested = 0

    @pytest.mark.parametrize(
        "nested, err, match",
        [
            (((0, 0), 1), ValueError, r"each exactly once.*repeated: \[0\].*missing: \[2\]"),
            (((0, 1), 3), ValueError, r"out of range: \[3\], missing: \[2\]"),
            (((0,), 1), ValueError, "at least two children"),
            ((), ValueError, "at least two children"),
            (((0, 1.0), 2), TypeError, "int \\(a mode\\) or a tuple of subtrees, got 1.0 of type float"),
            ((True, 0), TypeError, "got the bool True"),
            ("01", TypeError, "got '01' of type str"),
        ],
    )
    def test_bad_trees(self, nested, err, match):
        with pytest.raises(err, match=match):
            DimensionTree(nested)

    @pytest.mark.parametrize("ctor", [DimensionTree.balanced, DimensionTree.linear, DimensionTree.star])
    def test_bad_number_of_modes(self, ctor):
        for d in (0, -1, 2.0, True):
            with pytest.raises(ValueError, match=r"d \(the number of modes\) must be a positive int"):
                ctor(d)


# ------------------------------------------------------------------------------------------------------ the format


def _cores_312():
    # tree ((0, 1), 2): nodes 0: leaf0, 1: leaf1, 2: {0,1}, 3: leaf2, 4: root
    return [jnp.ones((2, 3)), jnp.ones((4, 3)), jnp.ones((3, 3, 5)), jnp.ones((6, 2)), jnp.ones((5, 2, 1))]


class TestTreeTN:
    def test_properties(self):
        t = TreeTN(((0, 1), 2), _cores_312())
        assert t.tree == DimensionTree(((0, 1), 2))
        assert t.dims == t.shape == (2, 4, 6) and t.ndim == 3
        assert t.ranks == (3, 3, 5, 2, 1) and t.num_params == 6 + 12 + 45 + 12 + 10
        assert t.dtype == jnp.float64 and t.batch_shape == ()
        assert "TreeTN(tree=((0, 1), 2), dims=(2, 4, 6), ranks=(3, 3, 5, 2, 1)" in repr(t)
        p = TreeTN([[2, 0], 1], [jnp.ones((5, 2)), jnp.ones((7, 3)), jnp.ones((2, 3, 4)), jnp.ones((6, 4)),
                                 jnp.ones((4, 4, 1))])
        assert p.dims == (7, 6, 5)  # dims are in mode order, whatever the leaf order

    @pytest.mark.parametrize(
        "change, err, match",
        [
            (lambda c: c[:4], ValueError, r"one array per node of the tree: 5 for .*, got 4"),
            (lambda c: [jnp.ones((2, 3, 1))] + c[1:], ValueError, r"cores\[0\] \(the leaf of mode 0\) has shape "
             r"\(2, 3, 1\): expected a 2-D frame of shape \(n, r\)"),
            (lambda c: c[:2] + [jnp.ones((3, 5))] + c[3:], ValueError, r"cores\[2\] \(interior node over modes "
             r"\(0, 1\) with children \(0, 1\)\) has shape \(3, 5\): expected a 3-D transfer tensor"),
            (lambda c: c[:2] + [jnp.ones((3, 4, 5))] + c[3:], ValueError, r"cores\[2\] .* has shape \(3, 4, 5\): "
             r"expected shape \(3, 3, 5\), because its axis 1 must equal the rank 3 of its child node 1"),
            (lambda c: c[:4] + [jnp.ones((5, 2, 2))], ValueError, r"cores\[4\] \(the root\) has shape \(5, 2, 2\): "
             r"expected a trailing axis of size 1"),
            (lambda c: c[:4] + [jnp.ones((5, 2, 1), jnp.int32)], TypeError, r"cores\[4\] has dtype int32"),
            (lambda c: c[:4] + [jnp.ones((5, 2, 1), jnp.float32)], TypeError, "all cores must share one dtype"),
            (lambda c: jnp.ones((2, 3)), TypeError, "got a single array of shape"),
            (lambda c: 3, TypeError, "cores must be a sequence of arrays"),
        ],
    )
    def test_bad_cores(self, change, err, match):
        with pytest.raises(err, match=match):
            TreeTN(((0, 1), 2), change(_cores_312()))

    def test_bad_tree_argument(self):
        with pytest.raises(TypeError, match="tree must be a DimensionTree or a nested tuple of modes, got str"):
            TreeTN("((0, 1), 2)", _cores_312())
        with pytest.raises(ValueError, match="each exactly once"):
            TreeTN(((0, 1), 1), _cores_312())

    def test_immutable_pytree(self):
        t = TreeTN(((0, 1), 2), _cores_312())
        with pytest.raises(AttributeError, match="TreeTN is immutable"):
            t.cores = ()
        leaves, treedef = jax.tree_util.tree_flatten(t)
        assert len(leaves) == 5
        doubled = jax.tree_util.tree_map(lambda c: 2 * c, t)
        assert isinstance(doubled, TreeTN) and doubled.tree == t.tree and doubled.ranks == t.ranks
        out = jax.jit(lambda t: t)(t)
        assert out.tree == t.tree and out.ranks == t.ranks

    def test_operators(self):
        a, b = rand_tree(0), rand_tree(1, ranks=3)
        xa, xb = np_dense(a), np_dense(b)
        np.testing.assert_allclose(np_dense(a + b), xa + xb, atol=1e-12)
        np.testing.assert_allclose(np_dense(a - b), xa - xb, atol=1e-12)
        np.testing.assert_allclose(np_dense(-a), -xa, atol=1e-12)
        np.testing.assert_allclose(np_dense(2.5 * a), 2.5 * xa, atol=1e-12)
        np.testing.assert_allclose(np_dense(a * 2.5), 2.5 * xa, atol=1e-12)
        with pytest.raises(TypeError):
            a * a


# ----------------------------------------------------------------------------------------------- dense conversions


class TestDense:
    @pytest.mark.parametrize("name", list(TREES))
    def test_to_dense_matches_numpy_einsum(self, name):
        t = rand_tree(0, ranks=3, nested=TREES[name])
        np.testing.assert_allclose(tree.to_dense(t), np_dense(t), rtol=1e-12, atol=1e-14)

    @pytest.mark.parametrize(
        "name, dtype",
        [("balanced", jnp.float32), ("balanced", jnp.complex64), ("star", jnp.float64),
         ("permuted", jnp.complex128), ("mixed", jnp.float64)],
    )
    def test_full_rank_roundtrip_and_orthonormal_bases(self, name, dtype):
        x = rand_dense(DIMS, dtype)
        t = tree.from_dense(x, TREES[name])
        assert t.dtype == dtype and t.dims == DIMS
        assert rel_err(np_dense(t), x) < 20 * TOL[dtype]
        for s in range(t.tree.root):
            u = np_frame(t, s)
            assert t.ranks[s] <= min(u.shape[0], x.size // u.shape[0])
            np.testing.assert_allclose(u.conj().T @ u, np.eye(t.ranks[s]), atol=50 * TOL[dtype])

    @pytest.mark.parametrize(
        "name, max_rank, dtype",
        [
            ("balanced", 2, jnp.float64),
            ("balanced", 3, jnp.complex128),
            ("linear", 2, jnp.float64),
            ("permuted", 3, jnp.float64),
            ("star", 2, jnp.float64),
            ("mixed", 2, jnp.complex128),
        ],
    )
    def test_grasedyck_error_bound(self, name, max_rank, dtype):
        x = graded_tensor((3, 4, 3, 5), decay=0.6, dtype=np.dtype(dtype).type)
        t = tree.from_dense(jnp.asarray(x), TREES[name], max_rank=max_rank)
        tr = t.tree
        assert max(t.ranks) <= max_rank
        err2 = np.linalg.norm(np_dense(t) - x) ** 2
        tail = tails(x, tr, t.ranks)
        assert sum(tail) > 1e-3 * np.linalg.norm(x) ** 2  # the test truncates something
        # Computable bound: ||x - HT||^2 <= sum over edges of the discarded squared singular values of x.
        assert err2 <= sum(tail) * (1 + 1e-10)
        # With ||x - x_best||^2 >= max_t tail_t, this gives Grasedyck's ||x - HT|| <= sqrt(2d - 3) ||x - x_best||
        # for binary trees (and sqrt(#edges) in general).
        edges = tr.num_nodes - 1 - (len(tr.children[tr.root]) == 2)
        assert np.sqrt(err2) <= np.sqrt(edges) * np.sqrt(max(tail)) * (1 + 1e-10)
        if len(tr.children[tr.root]) == 2 and all(len(c) <= 2 for c in tr.children):
            assert edges == 2 * tr.ndim - 3

    @pytest.mark.parametrize("name, rtol", [("balanced", 1e-1), ("balanced", 1e-9), ("mixed", 1e-3)])
    def test_rtol_bound(self, rtol, name):
        x = graded_tensor((4, 5, 4, 5), decay=0.3)
        t = tree.from_dense(jnp.asarray(x), TREES[name], rtol=rtol)
        assert rel_err(np_dense(t), x) <= rtol
        full = tree.from_dense(jnp.asarray(x), TREES[name])
        assert t.num_params <= full.num_params
        if rtol == 1e-1:
            assert t.num_params < full.num_params / 4  # compresses when the tolerance allows

    def test_star_tree_is_st_hosvd(self):
        # On the star tree, HT-SVD leaves-to-root is the sequentially truncated HOSVD (Vannieuwenhoven et al. 2012).
        x = graded_tensor((4, 5, 4, 6), decay=0.6, seed=1)
        leaf_ranks = (2, 3, 2, 4)
        st_tree = DimensionTree.star(4)
        t = tree.from_dense(jnp.asarray(x), st_tree, max_rank=leaf_ranks + (None,))
        assert t.ranks == leaf_ranks + (1,)
        core, factors = x, []
        for k, r in enumerate(leaf_ranks):
            u = np.linalg.svd(matricize(core, [k]), full_matrices=False)[0][:, :r]
            factors.append(u)
            core = np.moveaxis(np.tensordot(u.conj().T, np.moveaxis(core, k, 0), axes=1), 0, k)
        approx = core
        for k, u in enumerate(factors):
            approx = np.moveaxis(np.tensordot(u, np.moveaxis(approx, k, 0), axes=1), 0, k)
        np.testing.assert_allclose(np_dense(t), approx, atol=1e-10 * np.linalg.norm(x))
        # and within the plain HOSVD bound sqrt(sum of the discarded squared singular values of each unfolding)
        assert np.linalg.norm(np_dense(t) - x) ** 2 <= sum(tails(x, st_tree, t.ranks))

    def test_star_tree_against_tensorly_tucker_bound(self):
        tl = pytest.importorskip("tensorly")
        from tensorly.decomposition import tucker

        tl.set_backend("numpy")
        x = graded_tensor((4, 5, 4), decay=0.5, seed=2)
        ranks = [2, 3, 2]
        core, factors = tucker(x, rank=ranks, init="svd", n_iter_max=100, tol=1e-12)
        best_hooi = np.linalg.norm(tl.tucker_to_tensor((core, factors)) - x)
        t = tree.from_dense(jnp.asarray(x), DimensionTree.star(3), max_rank=ranks + [1])
        err = np.linalg.norm(np_dense(t) - x)
        # HOOI (TensorLy) is a better local optimum; ST-HOSVD is quasi-optimal within sqrt(d) of the best.
        assert best_hooi <= err * (1 + 1e-8) and err <= np.sqrt(3) * best_hooi

    def test_linear_tree_equals_tt_svd(self):
        # On the linear tree with leaf ranks untruncated (max_rank >= every n_k), HT-SVD keeps the same subspaces as
        # TT-SVD: the two approximations coincide. NumPy TT-SVD as the reference.
        x = graded_tensor((3, 4, 3, 4, 3), decay=0.5)
        r = 5
        cores, rest, rp = [], x, 1
        for k, n in enumerate(x.shape[:-1]):
            u, s, vh = np.linalg.svd(rest.reshape(rp * n, -1), full_matrices=False)
            rk = min(r, len(s))
            cores.append(u[:, :rk].reshape(rp, n, rk))
            rest, rp = s[:rk, None] * vh[:rk], rk
        cores.append(rest.reshape(rp, x.shape[-1], 1))
        ref = cores[0]
        for c in cores[1:]:
            ref = np.tensordot(ref, c, axes=1)
        ref = ref[0, ..., 0]
        t = tree.from_dense(jnp.asarray(x), DimensionTree.linear(5), max_rank=r)
        assert rel_err(ref, x) > 1e-4  # truncation happened
        np.testing.assert_allclose(np_dense(t), ref, atol=1e-10 * np.linalg.norm(x))
        assert tree.to_tt(t).ranks == tuple([1] + [c.shape[-1] for c in cores])

    def test_matrix_case_is_eckart_young(self):
        x = rand_dense((9, 7))
        s = np.linalg.svd(np.asarray(x), compute_uv=False)
        for r in (1, 3, 6):
            t = tree.from_dense(x, max_rank=r)
            assert t.ranks == (r, r, 1)
            np.testing.assert_allclose(np.linalg.norm(np_dense(t) - x), np.sqrt(np.sum(s[r:] ** 2)), rtol=1e-10)

    def test_one_mode(self):
        x = jnp.arange(1.0, 5.0)
        t = tree.from_dense(x, rtol=1e-3)
        assert t.ranks == (1,) and t.tree.nested == 0
        np.testing.assert_allclose(tree.to_dense(t), x)
        np.testing.assert_allclose(tree.norm(t), np.linalg.norm(x), rtol=1e-12)
        np.testing.assert_allclose(tree.to_dense(tree.add(t, t)), 2 * x)
        np.testing.assert_allclose(tree.get(t, jnp.array([[2]])), [3.0])

    def test_max_rank_is_jittable_and_rtol_is_not(self):
        f, traces = traced(functools.partial(tree.from_dense, tree=TREES["mixed"], max_rank=2))
        for seed in range(2):
            t = f(rand_dense(DIMS, seed=seed))
            assert t.ranks == (2, 2, 2, 2, 2, 1)
        assert traces() == 1
        with pytest.raises(ValueError, match="tree.from_dense.*cannot run under jax.jit"):
            jax.jit(functools.partial(tree.from_dense, rtol=1e-3))(rand_dense(DIMS))
        with pytest.raises(ValueError, match="cannot run under jax.jit or jax.vmap"):
            jax.vmap(functools.partial(tree.from_dense, rtol=1e-3))(rand_dense((2,) + DIMS))

    @pytest.mark.parametrize(
        "x, kwargs, err, match",
        [
            (jnp.ones((2, 2, 2)), {"tree": ((0, 1), (2, 3))}, ValueError, r"tree has 4 modes .* but x has 3"),
            (jnp.ones((2, 2)), {"tree": "01"}, TypeError, "tree must be a DimensionTree, a nested tuple"),
            (jnp.ones((2, 2), jnp.int32), {}, TypeError, "floating or complex dtype, got int32"),
            (jnp.float64(1.0), {}, ValueError, "at least one axis"),
            (jnp.ones((2, 2)), {"max_rank": 0}, ValueError, "max_rank must be a positive int"),
            (jnp.ones((2, 2)), {"max_rank": 2.5}, ValueError, "max_rank must be a positive int"),
            (jnp.ones((2, 2)), {"max_rank": (1, 2)}, ValueError, r"a sequence of 3 positive ints or Nones"),
            (jnp.ones((2, 2)), {"max_rank": (1, 2, 2)}, ValueError, r"max_rank\[2\] \(the root\) must be 1"),
            (jnp.ones((2, 2)), {"rtol": -1.0}, ValueError, "rtol must be a non-negative"),
        ],
    )
    def test_bad_inputs(self, x, kwargs, err, match):
        with pytest.raises(err, match=match):
            tree.from_dense(x, **kwargs)


# ------------------------------------------------------------------------------------------- gauge and truncation


class TestOrthogonalizeAndRound:
    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    @pytest.mark.parametrize("name", ["balanced", "mixed"])
    def test_orthogonalize(self, dtype, name):
        t = rand_tree(2, ranks=6, nested=TREES[name], dtype=dtype)  # leaf ranks 6 > n_k: they must shrink
        o = tree.orthogonalize(t)
        assert rel_err(np_dense(o), np_dense(t)) < 1e-12
        for s in range(t.tree.root):
            u = np_frame(o, s)
            np.testing.assert_allclose(u.conj().T @ u, np.eye(o.ranks[s]), atol=1e-12)
        assert all(r <= q for r, q in zip(o.ranks, t.ranks))
        assert all(o.ranks[leaf] == n for leaf, n in zip(t.tree.leaves, DIMS))
        np.testing.assert_allclose(np.linalg.norm(o.cores[o.tree.root]), np.linalg.norm(np_dense(t)), rtol=1e-12)

    @pytest.mark.parametrize("name", ["balanced", "star", "mixed"])
    def test_round_is_exact_without_truncation(self, name):
        t = rand_tree(3, ranks=4, nested=TREES[name])
        r = tree.round(t)
        assert all(a <= b for a, b in zip(r.ranks, t.ranks))
        assert rel_err(np_dense(r), np_dense(t)) < 1e-12

    @pytest.mark.parametrize("name", ["balanced", "linear", "mixed"])
    def test_round_of_sum_recovers_ranks(self, name):
        a = rand_tree(0, ranks=2, nested=TREES[name])
        s = tree.round(tree.add(a, a), rtol=1e-10)
        assert s.ranks == a.ranks
        assert rel_err(np_dense(s), 2 * np_dense(a)) < 1e-10

    @pytest.mark.parametrize(
        "name, dtype", [("balanced", jnp.complex128), ("linear", jnp.float64), ("star", jnp.complex128),
                        ("mixed", jnp.float64)]
    )
    def test_round_error_bound(self, name, dtype):
        t = tree.from_dense(jnp.asarray(graded_tensor((3, 4, 3, 5), decay=0.6, dtype=np.dtype(dtype).type)),
                            TREES[name])
        x = np_dense(t)
        r = tree.round(t, max_rank=2)
        assert max(r.ranks) <= 2
        err2 = np.linalg.norm(np_dense(r) - x) ** 2
        tail = tails(x, r.tree, r.ranks)
        assert sum(tail) > 1e-3 * np.linalg.norm(x) ** 2
        assert err2 <= sum(tail) * (1 + 1e-10)
        edges = r.tree.num_nodes - 1 - (len(r.tree.children[r.tree.root]) == 2)
        assert np.sqrt(err2) <= np.sqrt(edges * max(tail)) * (1 + 1e-10)

    def test_round_matrix_case_is_eckart_young(self):
        t = rand_tree(1, dims=(10, 12), ranks=6, nested=(0, 1))
        x = np_dense(t)
        sv = np.linalg.svd(x, compute_uv=False)
        r = tree.round(t, max_rank=3)
        assert r.ranks == (3, 3, 1)
        np.testing.assert_allclose(np.linalg.norm(np_dense(r) - x), np.sqrt(np.sum(sv[3:] ** 2)), rtol=1e-9)

    @pytest.mark.parametrize("rtol", [1e-1, 1e-4, 1e-10])
    def test_round_rtol_bound(self, rtol):
        t = tree.from_dense(jnp.asarray(graded_tensor((4, 5, 4, 5), decay=0.3)), TREES["permuted"])
        r = tree.round(t, rtol=rtol)
        assert rel_err(np_dense(r), np_dense(t)) <= rtol
        assert all(a <= b for a, b in zip(r.ranks, t.ranks))
        if rtol == 1e-1:
            assert r.num_params < t.num_params / 4

    def test_round_per_node_ranks_and_jit(self):
        t = rand_tree(0, ranks=4, nested=TREES["star"])
        f, traces = traced(functools.partial(tree.round, max_rank=(1, 2, 2, 3, None)))
        r = f(t)
        assert r.ranks == (1, 2, 2, 3, 1)
        f(rand_tree(5, ranks=4, nested=TREES["star"]))
        assert traces() == 1
        with pytest.raises(ValueError, match="tree.round.*cannot run under jax.jit"):
            jax.jit(functools.partial(tree.round, rtol=1e-3))(t)
        with pytest.raises(TypeError, match="t must be a tnkit.TreeTN, got ndarray"):
            tree.round(np.ones((2, 2)), max_rank=1)


# ------------------------------------------------------------------------------------------------- linear algebra


class TestAlgebra:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_inner_norm_add_scale(self, dtype):
        a = rand_tree(0, dtype=dtype)
        b = rand_tree(1, ranks=(3, 2, 4, 2, 3, 2, 1), dtype=dtype)
        xa, xb = np_dense(a), np_dense(b)
        tol = 20 * TOL[dtype]
        np.testing.assert_allclose(tree.inner(a, b), np.vdot(xa, xb), rtol=tol, atol=tol)
        np.testing.assert_allclose(tree.norm(a), np.linalg.norm(xa), rtol=tol)
        assert tree.norm(a).dtype == jnp.finfo(dtype).dtype
        c = tree.add(a, b)
        assert c.ranks == tuple(p + q for p, q in zip(a.ranks[:-1], b.ranks[:-1])) + (1,)
        assert rel_err(np_dense(c), xa + xb) < tol
        assert rel_err(np_dense(tree.sub(a, b)), xa - xb) < tol
        alpha = 0.5 - 2j if jnp.issubdtype(dtype, jnp.complexfloating) else -1.5
        assert rel_err(np_dense(tree.scale(a, alpha)), alpha * xa) < tol

    @pytest.mark.parametrize("name", ["star", "permuted", "mixed", "linear"])
    def test_inner_add_get_on_other_trees(self, name):
        a = rand_tree(0, ranks=3, nested=TREES[name], dtype=jnp.complex128)
        b = rand_tree(1, ranks=2, nested=TREES[name], dtype=jnp.complex128)
        xa, xb = np_dense(a), np_dense(b)
        np.testing.assert_allclose(tree.inner(a, b), np.vdot(xa, xb), rtol=1e-12)
        assert rel_err(np_dense(tree.add(a, b)), xa + xb) < 1e-12
        idx = np.stack(np.unravel_index(np.arange(xa.size), DIMS), axis=1)
        np.testing.assert_allclose(tree.get(a, idx), xa.ravel(), rtol=1e-12, atol=1e-14)

    def test_inner_is_sesquilinear(self):
        a, b1, b2 = (rand_tree(s, dtype=jnp.complex128) for s in range(3))
        c = 0.3 - 1.2j
        np.testing.assert_allclose(tree.inner(tree.scale(a, c), b1), np.conj(c) * tree.inner(a, b1), rtol=1e-12)
        np.testing.assert_allclose(tree.inner(a, tree.scale(b1, c)), c * tree.inner(a, b1), rtol=1e-12)
        np.testing.assert_allclose(
            tree.inner(a, tree.add(b1, b2)), tree.inner(a, b1) + tree.inner(a, b2), rtol=1e-12
        )
        np.testing.assert_allclose(tree.inner(b1, a), np.conj(tree.inner(a, b1)), rtol=1e-12)
        np.testing.assert_allclose(tree.norm(a) ** 2, tree.inner(a, a).real, rtol=1e-12)
        assert abs(tree.inner(a, a).imag) < 1e-14

    def test_dtype_promotion(self):
        a, b = rand_tree(0, dtype=jnp.float32), rand_tree(1, dtype=jnp.float64)
        assert tree.inner(a, b).dtype == jnp.float64 and tree.add(a, b).dtype == jnp.float64
        s = tree.scale(a, 1j)
        assert s.dtype == jnp.complex64  # a Python scalar is weakly typed
        np.testing.assert_allclose(np_dense(s), 1j * np_dense(a), atol=1e-6)
        assert tree.scale(a, np.float64(2.0)).dtype == jnp.float32  # a real factor does not upcast

    def test_norm_of_zero_and_its_gradient(self):
        z = tree.zeros(DIMS, dtype=jnp.float64)
        assert float(tree.norm(z)) == 0.0
        g = jax.grad(tree.norm)(z)
        assert all(bool(jnp.all(jnp.isfinite(c))) for c in g.cores)

    def test_mismatches(self):
        a = rand_tree(0)
        with pytest.raises(ValueError, match=r"a and b must have the same dimension tree, got "
                                             r"DimensionTree\(\(\(0, 1\), \(2, 3\)\)\) and"):
            tree.inner(a, rand_tree(1, nested=TREES["linear"]))
        with pytest.raises(ValueError, match=r"same dims, got \(3, 4, 2, 5\) and \(3, 4, 2, 6\)"):
            tree.add(a, rand_tree(1, dims=(3, 4, 2, 6)))
        with pytest.raises(ValueError, match="alpha must be a scalar"):
            tree.scale(a, jnp.ones(2))
        with pytest.raises(TypeError, match="b must be a tnkit.TreeTN, got ArrayImpl"):
            tree.inner(a, jnp.ones(DIMS))
        with pytest.raises(TypeError, match="t must be a tnkit.TreeTN, got TT"):
            tree.norm(TT([jnp.ones((1, 2, 1))]))


# ------------------------------------------------------------------------------------------------------ entries


class TestGet:
    def test_get(self):
        t = rand_tree(0, nested=TREES["permuted"])
        x = np_dense(t)
        idx = np.stack(np.unravel_index(np.arange(x.size), DIMS), axis=1)
        np.testing.assert_allclose(tree.get(t, idx), x.ravel(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(tree.get(t, jnp.array([2, 3, 1, 4])), x[2, 3, 1, 4], rtol=1e-12)
        np.testing.assert_allclose(jax.jit(tree.get)(t, idx[:7]), x.ravel()[:7], rtol=1e-12, atol=1e-14)

    def test_get_errors(self):
        t = rand_tree(0)
        with pytest.raises(ValueError, match=r"index must have shape \(batch, 4\).*got \(4, 2\)"):
            tree.get(t, np.zeros((4, 2), np.int32))
        with pytest.raises(TypeError, match="integer array"):
            tree.get(t, np.zeros((4, 4)))
        with pytest.raises(IndexError, match=r"index\[1, 3\] = 5 is out of range for mode 3 of size 5"):
            tree.get(t, np.array([[0, 0, 0, 0], [0, 0, 0, 5]]))
        with pytest.raises(IndexError, match=r"index\[0, 0\] = -1 is out of range"):
            tree.get(t, np.array([-1, 0, 0, 0]))


# ----------------------------------------------------------------------------------------------------- creation


class TestCreation:
    def test_random_ranks_forms(self):
        t = tree.random(jax.random.key(0), DIMS, 3)
        assert t.ranks == (3,) * 6 + (1,) and t.dtype == jnp.float32 and t.tree == DimensionTree.balanced(4)
        t = tree.random(jax.random.key(0), DIMS, (1, 2, 3, 4, 5, 6, 1), tree=TREES["linear"], dtype=jnp.complex64)
        assert t.ranks == (1, 2, 3, 4, 5, 6, 1) and t.dtype == jnp.complex64
        with pytest.raises(ValueError, match=r"one rank per node \(7 for .*got 4 values"):
            tree.random(jax.random.key(0), DIMS, (1, 2, 3, 1))
        with pytest.raises(ValueError, match=r"ranks\[6\] \(the root\) must be 1"):
            tree.random(jax.random.key(0), DIMS, (2,) * 7)
        with pytest.raises(ValueError, match="ranks must be positive"):
            tree.random(jax.random.key(0), DIMS, 0)
        with pytest.raises(ValueError, match="dims must be a non-empty sequence of positive ints"):
            tree.random(jax.random.key(0), (2, 0), 2)
        with pytest.raises(TypeError, match="dtype must be floating or complex"):
            tree.random(jax.random.key(0), (2, 3), 2, dtype=jnp.int32)
        with pytest.raises(ValueError, match=r"tree has 3 modes .* but dims has 4"):
            tree.random(jax.random.key(0), DIMS, 2, tree=((0, 1), 2))

    @pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
    def test_random_is_normalised_in_expectation(self, dtype):
        keys = jax.random.split(jax.random.key(0), 400)
        norms2 = jax.vmap(lambda k: tree.norm(tree.random(k, (3, 4, 2), 3, tree=(0, 1, 2), dtype=dtype)) ** 2)(keys)
        mean, sem = float(norms2.mean()), float(norms2.std() / np.sqrt(len(norms2)))
        assert abs(mean - 1.0) < 4 * sem

    def test_zeros(self):
        z = tree.zeros((2, 3), tree=(1, 0), dtype=jnp.complex64)
        assert z.dtype == jnp.complex64 and z.ranks == (1, 1, 1)
        np.testing.assert_array_equal(np_dense(z), np.zeros((2, 3)))


# ------------------------------------------------------------------------------------------------ tensor trains


class TestTensorTrains:
    @pytest.mark.parametrize("dims", [(3, 4, 2, 5), (4,), (2, 6)])
    def test_from_tt_and_back(self, dims):
        rng = np.random.default_rng(0)
        ranks = [1] + [3] * (len(dims) - 1) + [1]
        cores = [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(dims)]
        ref = cores[0]
        for c in cores[1:]:
            ref = np.tensordot(ref, c, axes=1)
        ref = ref[0, ..., 0]
        h = tree.from_tt(TT([jnp.asarray(c) for c in cores]))
        assert h.tree == DimensionTree.linear(len(dims))
        np.testing.assert_allclose(np_dense(h), ref, rtol=1e-12, atol=1e-12)
        back = tree.to_tt(h)
        assert back.ranks == tuple(ranks)
        dense = back.cores[0]
        for c in back.cores[1:]:
            dense = np.tensordot(dense, c, axes=1)
        np.testing.assert_allclose(dense[0, ..., 0], ref, rtol=1e-12, atol=1e-12)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"to_tt needs a TreeTN on the linear tree DimensionTree\(\(\(\(0, 1\)"):
            tree.to_tt(rand_tree(0))
        with pytest.raises(TypeError, match="t must be a tnkit.TT, got TreeTN"):
            tree.from_tt(rand_tree(0))


# ------------------------------------------------------------------------------------------------ transformations


class TestTransformations:
    def test_vmap_over_a_batch(self):
        keys = jax.random.split(jax.random.key(0), 3)
        make = lambda k: tree.random(k, DIMS, 2, tree=TREES["mixed"], dtype=jnp.float64)  # noqa: E731
        batch = jax.vmap(make)(keys)
        assert batch.batch_shape == (3,) and batch.dims == DIMS and batch.ranks == (2, 2, 2, 2, 2, 1)
        assert "batch_shape=(3,)" in repr(batch)
        dense = jax.vmap(tree.to_dense)(batch)
        inner = jax.vmap(tree.inner)(batch, batch)
        norms = jax.vmap(tree.norm)(batch)
        xs = jax.vmap(tree.to_dense)(batch)
        compressed = jax.vmap(functools.partial(tree.from_dense, tree=TREES["mixed"], max_rank=1))(xs)
        assert compressed.batch_shape == (3,) and compressed.ranks == (1,) * 6
        for i in range(3):
            x = np_dense(member(batch, i))
            c = member(compressed, i)
            np.testing.assert_allclose(np_dense(c), np_dense(tree.from_dense(jnp.asarray(x), c.tree, max_rank=1)),
                                       atol=1e-12)
            np.testing.assert_allclose(dense[i], x, atol=1e-12)
            np.testing.assert_allclose(inner[i], np.vdot(x, x), rtol=1e-12)
            np.testing.assert_allclose(norms[i], np.linalg.norm(x), rtol=1e-12)

    @pytest.mark.slow
    def test_check_grads_inner_norm_get_to_dense(self):
        a = rand_tree(0, dims=(2, 3, 2), nested=((0, 1), 2))
        b = rand_tree(1, dims=(2, 3, 2), nested=((0, 1), 2))
        check_grads(tree.inner, (a, b), order=1, modes=["fwd", "rev"])
        check_grads(tree.norm, (a,), order=1, modes=["rev"])
        check_grads(tree.to_dense, (a,), order=1, modes=["rev"])
        idx = jnp.array([[0, 1, 1], [1, 2, 0]])
        check_grads(lambda a: tree.get(a, idx), (a,), order=1, modes=["rev"])

    def test_check_grads_complex(self):
        a = rand_tree(0, dims=(2, 3, 2), nested=(0, 1, 2), dtype=jnp.complex128)
        b = rand_tree(1, dims=(2, 3, 2), nested=(0, 1, 2), dtype=jnp.complex128)
        check_grads(tree.inner, (a, b), order=1, modes=["fwd", "rev"])
        check_grads(tree.norm, (a,), order=1, modes=["rev"])

    @pytest.mark.slow
    def test_check_grads_from_dense_and_round(self):
        x = jnp.asarray(graded_tensor((2, 3, 3), decay=0.6))
        f = lambda x: tree.to_dense(tree.from_dense(x, ((0, 1), 2), max_rank=2))  # noqa: E731
        check_grads(f, (x,), order=1, modes=["rev"])  # reverse mode linearizes: it checks the JVP rules as well
        t = tree.from_dense(x, ((0, 1), 2))
        g = lambda t: tree.to_dense(tree.round(t, max_rank=2))  # noqa: E731
        check_grads(g, (t,), order=1, modes=["rev"])

    def test_rtol_under_grad_and_full_rank_gradient(self):
        x = jnp.asarray(graded_tensor((3, 4), decay=0.2))  # rtol runs eagerly, op by op: keep it small
        g = jax.grad(lambda x: jnp.sum(tree.to_dense(tree.from_dense(x, rtol=1e-12)) ** 2))(x)
        np.testing.assert_allclose(g, 2 * x, atol=1e-9)
        g = jax.grad(lambda x: jnp.sum(jnp.sin(tree.to_dense(tree.from_dense(x)))))(x)
        np.testing.assert_allclose(g, jnp.cos(x), atol=1e-12)

    def test_gradients_finite_at_degenerate_points(self):
        x = jnp.ones((2, 3, 3))  # rank one: zero singular values everywhere
        g = jax.grad(lambda x: jnp.sum(tree.to_dense(tree.from_dense(x, ((0, 1), 2), max_rank=2)) ** 2))(x)
        assert bool(jnp.all(jnp.isfinite(g)))
        a = rand_tree(0, dims=(2, 3, 3), ranks=2, nested=((0, 1), 2))
        g = jax.grad(lambda a: jnp.sum(tree.to_dense(tree.round(tree.add(a, a), max_rank=2)) ** 2))(a)
        ref = jax.grad(lambda a: 4 * jnp.sum(tree.to_dense(a) ** 2))(a)
        for c, r in zip(g.cores, ref.cores):
            np.testing.assert_allclose(c, r, atol=1e-9)

    def test_jitted_inner_does_not_recompile(self):
        f, traces = traced(tree.inner)
        for seed in range(3):
            f(rand_tree(seed), rand_tree(seed + 10))
        assert traces() == 1


# ------------------------------------------------------------------------------------------------ properties


@st.composite
def random_trees(draw):
    """A random dimension tree over 2..5 modes, leaves in a random order, nodes of 2 or 3 children."""
    d = draw(st.integers(2, 5))
    modes = draw(st.permutations(list(range(d))))

    def build(ms):
        if len(ms) == 1:
            return ms[0]
        k = draw(st.integers(2, min(3, len(ms))))
        cuts = sorted(draw(st.lists(st.integers(1, len(ms) - 1), min_size=k - 1, max_size=k - 1, unique=True)))
        parts = [ms[i:j] for i, j in zip([0] + cuts, cuts + [len(ms)])]
        return tuple(build(p) for p in parts)

    return DimensionTree(build(list(modes)))


@settings(max_examples=6)  # every example is a new tree, hence new compilations
@given(random_trees(), st.integers(0, 2**31 - 1), st.integers(1, 3))
def test_random_trees_roundtrip_get_and_bound(tr, seed, max_rank):
    dims = tuple(2 + (k % 2) for k in range(tr.ndim))
    x = graded_tensor(dims, seed=seed % 1000, decay=0.5, terms=6)
    full = tree.from_dense(jnp.asarray(x), tr)
    np.testing.assert_allclose(np_dense(full), x, atol=1e-12 * np.abs(x).max())
    idx = np.stack([np.arange(5) % n for n in dims], axis=1)
    np.testing.assert_allclose(tree.get(full, idx), x[tuple(idx.T)], atol=1e-12 * np.abs(x).max())
    t = tree.from_dense(jnp.asarray(x), tr, max_rank=max_rank)
    assert np.linalg.norm(np_dense(t) - x) ** 2 <= sum(tails(x, tr, t.ranks)) * (1 + 1e-10) + 1e-24
    r = tree.round(full, max_rank=max_rank)
    assert all(a <= b for a, b in zip(r.ranks, full.ranks)) and max(r.ranks) <= max_rank
