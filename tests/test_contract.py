"""tnkit.contract against np.einsum, opt_einsum, cotengra and TensorNetwork."""

import functools
import string

import jax
import jax.numpy as jnp
import numpy as np
import opt_einsum
import pytest
import tensornetwork as tn
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from tests.helpers import rel_err
from tnkit import contract as C

PS = C.PathStrategy


def rand(shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def random_network(n_tensors, n_edges, seed, *, n_open=2, dims=(2, 3)):
    """A random connected network: a spanning tree plus extra bonds (some parallel), and open legs."""
    rng = np.random.default_rng(seed)
    terms = [[] for _ in range(n_tensors)]
    sizes = {}
    labels = iter(string.ascii_letters)
    for k in range(1, n_tensors):
        a, b = int(rng.integers(k)), k
        label = next(labels)
        terms[a].append(label), terms[b].append(label)
        sizes[label] = int(rng.choice(dims))
    for _ in range(n_edges - (n_tensors - 1)):
        a, b = rng.choice(n_tensors, 2, replace=False)
        label = next(labels)
        terms[a].append(label), terms[b].append(label)
        sizes[label] = int(rng.choice(dims))
    output = []
    for _ in range(n_open):
        label = next(labels)
        terms[int(rng.integers(n_tensors))].append(label)
        sizes[label] = int(rng.choice(dims))
        output.append(label)
    equation = ",".join("".join(t) for t in terms) + "->" + "".join(output)
    arrays = [rand(tuple(sizes[c] for c in t), seed=100 * seed + k) for k, t in enumerate(terms)]
    return equation, arrays


def np_einsum(equation, *arrays):
    return np.einsum(equation, *[np.asarray(a) for a in arrays], optimize="greedy")


# ------------------------------------------------------------------------------------------------------ einsum


EINSUM_CASES = {
    "matmul": ("ij,jk->ik", [(2, 3), (3, 4)]),
    "implicit": ("ij,jk", [(2, 3), (3, 4)]),
    "implicit_sorted_like_numpy": ("Ba,aC", [(2, 3), (3, 4)]),
    "transpose_output": ("ij,jk->ki", [(2, 3), (3, 4)]),
    "trace": ("ii->", [(3, 3)]),
    "implicit_trace": ("ii", [(3, 3)]),
    "diagonal": ("ii->i", [(3, 3)]),
    "partial_trace_then_bond": ("iij,jk->k", [(3, 3, 4), (4, 5)]),
    "trace_across_axes": ("iji,jk->ik", [(3, 4, 3), (4, 2)]),
    "sum_private_label": ("ij,jk->k", [(2, 3), (3, 4)]),
    "outer": ("ij,kl->iljk", [(2, 3), (4, 2)]),
    "scalar_operand": (",ij->ji", [(), (2, 3)]),
    "scalars_only": (",->", [(), ()]),
    "hadamard_kept": ("ij,ij->ij", [(2, 3), (2, 3)]),
    "hyperedge_summed": ("ij,ij,i->", [(3, 4), (3, 4), (3,)]),
    "hyperedge_open": ("ai,bi,ci,i->abci", [(2, 3), (2, 3), (2, 3), (3,)]),
    "triangle_loop": ("ij,jk,ki->", [(2, 3), (3, 4), (4, 2)]),
    "ellipsis_batch": ("...ij,...jk->...ik", [(5, 2, 3), (5, 3, 4)]),
    "ellipsis_ragged": ("...ij,...jk->...ik", [(6, 5, 2, 3), (5, 3, 4)]),
    "ellipsis_implicit": ("...i,i", [(2, 3, 4), (4,)]),
    "ellipsis_middle": ("a...b,b->...a", [(2, 3, 4, 5), (5,)]),
    "spaces": (" ij , jk -> ik ", [(2, 3), (3, 4)]),
}


@pytest.mark.parametrize("name", list(EINSUM_CASES))
def test_einsum_matches_numpy(name):
    equation, shapes = EINSUM_CASES[name]
    arrays = [rand(s, seed=k) for k, s in enumerate(shapes)]
    got = C.einsum(equation, *arrays)
    want = np.einsum(equation, *arrays)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.complex128])
def test_einsum_dtypes_and_promotion(dtype):
    a, b = rand((3, 4), 0, dtype), rand((4, 5), 1, np.float32)
    got = C.einsum("ij,jk->ik", a, b)
    assert got.dtype == np.result_type(dtype, np.float32)
    tol = 1e-5 if np.dtype(dtype).itemsize <= 8 else 1e-6
    assert rel_err(got, a.astype(np.complex128) @ b) < tol


def test_unicode_labels_match_letters():
    a, b, c = rand((2, 3)), rand((3, 4), 1), rand((4, 2), 2)
    got = C.einsum("αβ,βγ,γδ->δα", a, b, c)
    np.testing.assert_allclose(got, np.einsum("ab,bc,cd->da", a, b, c), rtol=1e-12)


def test_interleaved_form_matches_numpy():
    a, b = rand((2, 3)), rand((3, 4), 1)
    np.testing.assert_allclose(C.einsum(a, [0, 1], b, [1, 2], [2, 0]), np.einsum(a, [0, 1], b, [1, 2], [2, 0]))
    np.testing.assert_allclose(C.einsum(a, [0, 1], b, [1, 2]), np.einsum(a, [0, 1], b, [1, 2]))
    x = rand((5, 2, 3), 2)
    np.testing.assert_allclose(
        C.einsum(x, [Ellipsis, 0, 1], b, [1, 2], [Ellipsis, 2]),
        np.einsum(x, [Ellipsis, 0, 1], b, [1, 2], [Ellipsis, 2]),
    )


def test_hand_written_networks():
    # Matrix chain.
    ms = [rand((n, m), k) for k, (n, m) in enumerate([(3, 5), (5, 2), (2, 6), (6, 4)])]
    np.testing.assert_allclose(C.einsum("ab,bc,cd,de->ae", *ms), ms[0] @ ms[1] @ ms[2] @ ms[3], rtol=1e-12)

    # MPS overlap <a|b>, 6 sites, complex, bond dimension 3 (boundary bonds of size 1).
    d, bond, n = 2, 3, 6
    ranks = [1] + [bond] * (n - 1) + [1]
    a = [rand((ranks[k], d, ranks[k + 1]), k, np.complex128) for k in range(n)]
    b = [rand((ranks[k], d, ranks[k + 1]), 10 + k, np.complex128) for k in range(n)]
    terms, ops = [], []
    for k in range(n):
        terms += [f"{'ABCDEFG'[k]}{'pqrstu'[k]}{'ABCDEFG'[k + 1]}", f"{'abcdefg'[k]}{'pqrstu'[k]}{'abcdefg'[k + 1]}"]
        ops += [np.conj(a[k]), b[k]]
    equation = ",".join(terms) + "->"
    dense_a = functools.reduce(lambda x, y: np.tensordot(x, y, 1), a).reshape(-1)
    dense_b = functools.reduce(lambda x, y: np.tensordot(x, y, 1), b).reshape(-1)
    np.testing.assert_allclose(C.einsum(equation, *ops), np.vdot(dense_a, dense_b), rtol=1e-12)

    # Norm of a 2x3 PEPS-like grid state, complex: 12 tensors (ket and conjugated bra).
    rows, cols, bond, d = 2, 3, 2, 2
    bonds = {}
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                bonds[(r, c), (r, c + 1)] = len(bonds)
            if r + 1 < rows:
                bonds[(r, c), (r + 1, c)] = len(bonds)
    ket_labels, bra_labels, ops = [], [], []
    for r in range(rows):
        for c in range(cols):
            mine = [i for (u, v), i in bonds.items() if (r, c) in (u, v)]
            phys = ("phys", r, c)
            ket_labels.append([("ket", i) for i in mine] + [phys])
            bra_labels.append([("bra", i) for i in mine] + [phys])
            ops.append(rand((bond,) * len(mine) + (d,), 3 * r + c, np.complex128))
    norm = C.contract(ops + [np.conj(x) for x in ops], ket_labels + bra_labels, ())
    symbols = {}
    sym = lambda label: symbols.setdefault(label, string.ascii_letters[len(symbols)])  # noqa: E731
    equation = ",".join("".join(sym(x) for x in t) for t in ket_labels + bra_labels) + "->"
    want = np.einsum(equation, *ops, *[np.conj(x) for x in ops], optimize="greedy")
    np.testing.assert_allclose(norm, want, rtol=1e-12)
    assert abs(want.imag) < 1e-10 * abs(want) and want.real > 0  # a norm: a sanity check of the reference


@pytest.mark.parametrize("strategy, seed", [(PS.GREEDY, 0), (PS.OPTIMAL, 1), (PS.RANDOM_GREEDY, 2), (PS.OPTIMAL, 3)])
def test_random_networks_match_numpy(strategy, seed):
    equation, arrays = random_network(9, 13, seed)
    got = C.einsum(equation, *arrays, optimize=strategy)
    assert rel_err(got, np_einsum(equation, *arrays)) < 1e-12


@settings(max_examples=6)
@given(
    st.integers(2, 5),
    st.integers(0, 4),
    st.integers(0, 2),
    st.integers(0, 10_000),
)
def test_property_random_networks(n_tensors, extra_edges, n_open, seed):
    equation, arrays = random_network(n_tensors, n_tensors - 1 + extra_edges, seed, n_open=n_open)
    assert rel_err(C.einsum(equation, *arrays, optimize=PS.GREEDY), np_einsum(equation, *arrays)) < 1e-12


def test_more_labels_than_letters():
    # Overlap of two 30-site MPS: 30 physical + 2 x 31 bond labels (boundary bonds of size 1) = 92 labels.
    n, bond = 30, 2
    ranks = [1] + [bond] * (n - 1) + [1]
    a = [rand((ranks[k], 2, ranks[k + 1]), k) for k in range(n)]
    b = [rand((ranks[k], 2, ranks[k + 1]), 100 + k) for k in range(n)]
    labels = [(("a", k), ("p", k), ("a", k + 1)) for k in range(n)]
    labels += [(("b", k), ("p", k), ("b", k + 1)) for k in range(n)]
    got = C.contract(a + b, labels, (), optimize=PS.GREEDY)
    env = np.ones((1, 1))
    for x, y in zip(a, b):  # transfer matrices
        env = np.einsum("ab,apc,bpd->cd", env, x, y)
    np.testing.assert_allclose(got, env[0, 0], rtol=1e-10)
    # The same network in the interleaved einsum form with int labels.
    ints = {}
    interleaved = []
    for x, t in zip(a + b, labels):
        interleaved += [x, [ints.setdefault(label, len(ints)) for label in t]]
    assert len(ints) == 92
    np.testing.assert_allclose(C.einsum(*interleaved, [], optimize=PS.GREEDY), env[0, 0], rtol=1e-10)


# ------------------------------------------------------------------------------------------------------ contract


def test_contract_default_output_is_first_appearance_order():
    a, b = rand((2, 3)), rand((3, 4), 1)
    got = C.contract([a, b], [("z", "bond"), ("bond", "a")])
    np.testing.assert_allclose(got, a @ b, rtol=1e-12)  # ("z", "a"), not sorted ("a", "z")
    got = C.contract([a, b], ["ij", "jk"], "ki")  # strings are sequences of one-character labels
    np.testing.assert_allclose(got, (a @ b).T, rtol=1e-12)


def test_contract_mixed_hashable_labels():
    a, b, c = rand((2, 3)), rand((3, 4), 1), rand((4,), 2)
    got = C.contract([a, b, c], [(0, "x"), ("x", (1, 2)), ((1, 2),)], (0,))
    np.testing.assert_allclose(got, a @ b @ c, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------- ncon


NCON_CASES = [
    ([(2, 3), (3, 4)], [[-1, 1], [1, -2]], None, None),
    ([(2, 3), (3, 4)], [[-2, 1], [1, -1]], None, None),
    ([(3, 3, 4), (4, 5)], [[1, 1, 2], [2, -1]], None, None),  # trace
    ([(3, 3, 4), (4, 5)], [[1, 1, 2], [2, -1]], [2, 1], None),  # trace in con_order
    ([(2, 3, 4), (4, 3, 5), (5, 2)], [[1, 2, 3], [3, 2, 4], [4, 1]], [3, 1, 4, 2], None),  # loop, con_order
    ([(2, 3), (3, 4), (5,)], [[-1, 1], [1, -3], [-2]], [1], [-3, -1, -2]),  # outer product, out_order
    ([(2, 3, 2), (3, 4)], [[-1, 1, -3], [1, -2]], None, [-2, -3, -1]),
]


@pytest.mark.parametrize("case", range(len(NCON_CASES)))
def test_ncon_matches_tensornetwork(case):
    shapes, network, con_order, out_order = NCON_CASES[case]
    arrays = [rand(s, seed=k) for k, s in enumerate(shapes)]
    got = C.ncon(arrays, network, con_order=con_order, out_order=out_order)
    want = tn.ncon(arrays, network, con_order=con_order, out_order=out_order, backend="numpy")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_ncon_con_order_fixes_the_path(monkeypatch):
    # Matrix chain A(BC) forced by con_order=[2, 1], although (AB)C is cheaper.
    shapes = [(10, 100), (100, 5), (5, 50)]
    arrays = [rand(s, k) for k, s in enumerate(shapes)]
    paths = []
    real = C._make_plan
    monkeypatch.setattr(C, "_make_plan", lambda net, path, strategy: paths.append(path) or real(net, path, strategy))
    got = C.ncon(arrays, [[-1, 1], [1, 2], [2, -2]], con_order=[2, 1])
    assert paths == [((1, 2), (0, 1))]
    np.testing.assert_allclose(got, arrays[0] @ arrays[1] @ arrays[2], rtol=1e-12)


# --------------------------------------------------------------------------------------------- paths and costs


def test_contraction_cost_matrix_chain_by_hand():
    shapes = [(10, 100), (100, 5), (5, 50)]
    cost = C.contraction_cost("ij,jk,kl->il", *shapes, optimize=PS.OPTIMAL)
    assert cost.path == ((0, 1), (0, 1))
    assert cost.flops == 2 * 10 * 100 * 5 + 2 * 10 * 5 * 50
    assert cost.largest_intermediate == 10 * 50
    worse = C.contraction_cost("ij,jk,kl->il", *shapes, optimize=[(1, 2), (0, 1)])
    assert worse.flops == 2 * 100 * 5 * 50 + 2 * 10 * 100 * 50 and worse.strategy is None
    assert C.contraction_path("ij,jk,kl->il", *[jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]) == cost.path


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contraction_cost_agrees_with_opt_einsum(seed):
    equation, arrays = random_network(10, 14, seed)
    shapes = [a.shape for a in arrays]
    for strategy, method in [(PS.OPTIMAL, "dp"), (PS.GREEDY, "greedy")]:
        cost = C.contraction_cost(equation, *shapes, optimize=strategy)
        path, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=method)
        assert [tuple(s) for s in path] == list(cost.path)
        assert cost.flops == int(info.opt_cost)
        assert cost.largest_intermediate == int(info.largest_intermediate)


def test_explicit_paths_from_peers():
    equation, arrays = random_network(5, 7, 3)
    want = np_einsum(equation, *arrays)
    oe_path, _ = opt_einsum.contract_path(equation, *arrays, optimize="optimal")
    np_path, _ = np.einsum_path(equation, *arrays, optimize="greedy")
    assert np_path[0] == "einsum_path"
    for path in (oe_path, np_path, [tuple(range(len(arrays)))]):  # the last one: one 5-operand step
        assert rel_err(C.einsum(equation, *arrays, optimize=path), want) < 1e-12
    cost = C.contraction_cost(equation, *arrays, optimize=oe_path)
    assert cost.path == tuple(tuple(s) for s in oe_path)


def test_cotengra_on_25_tensors_matches_opt_einsum():
    pytest.importorskip("cotengra")
    equation, arrays = random_network(25, 36, 7, dims=(2,))
    settings = C.HyperSearch(max_repeats=8)
    cost = C.contraction_cost(equation, *arrays, optimize=settings)
    assert cost.strategy == settings and len(cost.path) == 24
    _, info = opt_einsum.contract_path(equation, *arrays, optimize=list(cost.path))
    assert cost.flops == int(info.opt_cost)  # all steps pairwise, no traces: opt_einsum counts the same
    got = C.einsum(equation, *arrays, optimize=settings)  # the cached cotengra path
    assert rel_err(got, opt_einsum.contract(equation, *arrays, optimize="greedy")) < 1e-12


def test_auto_thresholds_and_fallback_without_cotengra(monkeypatch):
    pytest.importorskip("cotengra")
    equation, arrays = random_network(5, 6, 4)
    C.clear_path_cache()
    assert C.contraction_cost(equation, *arrays).strategy is PS.OPTIMAL  # 5 <= 16 tensors
    monkeypatch.setattr(C, "AUTO_OPTIMAL_MAX_TENSORS", 4)
    C.clear_path_cache()
    assert C.contraction_cost(equation, *arrays).strategy == C.HyperSearch()
    monkeypatch.setattr(C, "_cotengra_installed", lambda: False)
    C.clear_path_cache()
    cost = C.contraction_cost(equation, *arrays)
    assert cost.strategy is PS.RANDOM_GREEDY
    assert rel_err(C.einsum(equation, *arrays), np_einsum(equation, *arrays)) < 1e-12
    C.clear_path_cache()


def test_path_cache_hits_on_repeated_shapes(monkeypatch):
    searches = []
    real = C._search
    monkeypatch.setattr(C, "_search", lambda net, strategy: searches.append(strategy) or real(net, strategy))
    C.clear_path_cache()
    assert C.path_cache_info() == C.PathCacheInfo(0, 0, C.PATH_CACHE_MAXSIZE, 0)
    a, b, c = rand((2, 3)), rand((3, 4), 1), rand((4, 5), 2)
    first = C.einsum("ij,jk,kl->il", a, b, c)
    assert C.path_cache_info()[:2] == (0, 1) and len(searches) == 1
    # Same shapes, other values, other dtype, other label names: no new search.
    second = C.einsum("xy,yz,zw->xw", 2 * a, b.astype(np.float32), c)
    third = C.contract([a, b, c], [("i", 1), (1, "k"), ("k", None)], ("i", None))
    info = C.path_cache_info()
    assert (info.hits, info.misses, info.currsize) == (2, 1, 1) and len(searches) == 1
    np.testing.assert_allclose(second, 2 * first, rtol=1e-6)
    np.testing.assert_allclose(third, first, rtol=1e-12)
    # Other shapes or another strategy: a new search.
    C.einsum("ij,jk,kl->il", rand((2, 3)), rand((3, 4)), rand((4, 6)))
    C.einsum("ij,jk,kl->il", a, b, c, optimize=PS.GREEDY)
    assert C.path_cache_info()[:2] == (2, 3) and len(searches) == 3
    # Explicit paths are not cached; clearing resets everything.
    C.einsum("ij,jk,kl->il", a, b, c, optimize=[(0, 1), (0, 1)])
    assert C.path_cache_info()[:2] == (2, 3)
    C.clear_path_cache()
    assert C.path_cache_info() == C.PathCacheInfo(0, 0, C.PATH_CACHE_MAXSIZE, 0)


# ---------------------------------------------------------------------------------------- jit / vmap / grad


def test_jit_vmap_grad():
    a, b, c = rand((3, 4)), rand((4, 4, 5), 1), rand((5, 3), 2)
    equation = "ij,jjk,ki->"  # a trace inside a loop
    f = functools.partial(C.einsum, equation)
    want = np.einsum(equation, a, b, c)
    np.testing.assert_allclose(jax.jit(f)(a, b, c), want, rtol=1e-12)

    batch = rand((6, 3, 4), 3)
    got = jax.vmap(f, in_axes=(0, None, None))(batch, b, c)
    np.testing.assert_allclose(got, np.einsum("bij,jjk,ki->b", batch, b, c), rtol=1e-12)
    got = jax.jit(jax.vmap(lambda x, y: C.ncon([x, y], [[-1, 1], [1, -2]])))(batch, rand((6, 4, 2), 4))
    np.testing.assert_allclose(got, np.einsum("bij,bjk->bik", batch, rand((6, 4, 2), 4)), rtol=1e-12)

    check_grads(f, (a, b, c), order=1, modes=["fwd", "rev"])
    hyper = functools.partial(C.contract, labels=[("i", "j"), ("i", "j"), ("i",)], output=("j",))
    check_grads(lambda x, y, z: hyper([x, y, z]), (a, rand((3, 4), 5), rand((3,), 6)), order=1, modes=["rev"])
    za, zb = rand((2, 3), 7, np.complex128), rand((3, 2), 8, np.complex128)
    check_grads(lambda x, y: C.einsum("ij,ji->", x, y), (za, zb), order=1, modes=["rev"])


# ---------------------------------------------------------------------------------------------- TensorNetwork


def build_tn_graph(arrays):
    """A hand-built graph: a trace edge, a bond, a CopyNode hyperedge with one open leg, two dangling legs."""
    a, b, c, d = (tn.Node(x.copy(), name=f"n{k}") for k, x in enumerate(arrays))
    copy = tn.CopyNode(4, 3, dtype=np.float64)
    tn.connect(a[0], a[1])  # trace
    tn.connect(a[2], b[0])  # bond of size 4
    tn.connect(b[1], copy[0]), tn.connect(c[0], copy[1]), tn.connect(d[0], copy[2])  # hyperedge of size 3
    tn.connect(c[1], d[1])
    return [a, b, c, d, copy], [b[2], copy[3]]


GRAPH_SHAPES = [(2, 2, 4), (4, 3, 5), (3, 2), (3, 2)]


@pytest.mark.parametrize("as_hyperedges", [True, False])
def test_from_tensornetwork_matches_tn_contractor(as_hyperedges):
    arrays = [rand(s, k) for k, s in enumerate(GRAPH_SHAPES)]
    nodes, out = build_tn_graph(arrays)
    net = C.from_tensornetwork(nodes, out, copy_nodes_as_hyperedges=as_hyperedges)
    assert len(net.tensors) == (4 if as_hyperedges else 5)
    assert all(node.tensor is not None for node in nodes) and not nodes[0][2].is_dangling()  # graph untouched
    got = C.contract(*net)
    fresh_nodes, fresh_out = build_tn_graph(arrays)
    want = tn.contractors.auto(fresh_nodes, output_edge_order=fresh_out).tensor
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got, np.einsum("iij,jkl,km,km->lk", *arrays), rtol=1e-12)


def test_from_tensornetwork_default_order_and_kept_copy_nodes():
    x, y = rand((3, 2)), rand((2, 3), 1)
    a, b = tn.Node(x), tn.Node(y)
    tn.connect(a[1], b[0])
    net = C.from_tensornetwork([a, b])
    assert net.labels == [(0, 1), (1, 2)] and net.output == (0, 2)
    # A copy node with two open legs cannot become one label: it stays a dense tensor.
    copy = tn.CopyNode(3, 3, dtype=np.float64)
    c = tn.Node(rand((3,), 2))
    tn.connect(c[0], copy[0])
    net = C.from_tensornetwork([c, copy], [copy[2], copy[1]])
    assert len(net.tensors) == 2
    np.testing.assert_allclose(C.contract(*net), np.diag(np.asarray(c.tensor)), rtol=1e-12)


TO_TN_NETWORKS = {
    "chain": (["ij", "jk", "kl"], "il"),
    "hyperedge_and_private": (["ij", "ij", "ik", "k"], "j"),  # i in three tensors
    "trace_and_diagonal": (["iijk", "kl"], "jl"),
    "label_in_output_twice_in_inputs": (["ij", "ij"], "ji"),
    "diagonal_output": (["ii"], "i"),
    "summed_once": (["ij"], ""),
    "outer_with_scalar": (["", "ij", "k"], "kji"),
}


@pytest.mark.parametrize("name", list(TO_TN_NETWORKS))
def test_to_tensornetwork_contracts_like_contract(name):
    terms, output = TO_TN_NETWORKS[name]
    sizes = dict(i=3, j=2, k=4, l=2)
    arrays = [rand(tuple(sizes[c] for c in t), k) for k, t in enumerate(terms)]
    want = np.einsum(",".join(terms) + "->" + output, *arrays)
    graph = C.to_tensornetwork(arrays, terms, output)
    assert [e.is_dangling() for e in graph.output_edges] == [True] * len(output)
    assert [e.name for e in graph.output_edges] == list(output)
    # Round trip before the TN contractor consumes the graph.
    for hyper in (True, False):
        back = C.from_tensornetwork(graph.nodes, graph.output_edges, copy_nodes_as_hyperedges=hyper)
        np.testing.assert_allclose(C.contract(*back), want, rtol=1e-12, atol=1e-14)
    got = tn.contractors.auto(graph.nodes, output_edge_order=graph.output_edges).tensor
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(C.contract(arrays, terms, output), want, rtol=1e-12, atol=1e-14)


def test_to_tensornetwork_complex_and_default_output():
    a, b = rand((2, 3), 0, np.complex128), rand((3, 4), 1, np.complex128)
    graph = C.to_tensornetwork([jnp.asarray(a), b], [("x", 0), (0, "y")])
    assert [n.name for n in graph.nodes] == ["tensor0", "tensor1"]
    got = tn.contractors.auto(graph.nodes, output_edge_order=graph.output_edges).tensor
    np.testing.assert_allclose(got, a @ b, rtol=1e-12)


# --------------------------------------------------------------------------------------------------- bad input


def test_bad_einsum_input():
    a, b = rand((2, 3)), rand((4, 5))
    mismatch = r"'j' has size 3 at axis 1 of operands\[0\] but size 4 at axis 0 of operands\[1\]"
    with pytest.raises(ValueError, match=mismatch):
        C.einsum("ij,jk->ik", a, b)
    within_one = r"'i' has size 2 at axis 0 of operands\[0\] but size 3 at axis 1 of operands\[0\]"
    with pytest.raises(ValueError, match=within_one):
        C.einsum("ii->", a)
    with pytest.raises(ValueError, match=r"operands\[0\] has 2 axes \(shape \(2, 3\)\) but subscripts\[0\] has 3 lab"):
        C.einsum("ijk->", a)
    with pytest.raises(ValueError, match="name 2 operands but 1 were given"):
        C.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError, match="output label 'z' appears in no input"):
        C.einsum("ij->iz", a)
    with pytest.raises(ValueError, match="output label 'i' is repeated"):
        C.einsum("ij->ii", a)
    with pytest.raises(ValueError, match="more than one '->'"):
        C.einsum("ij->i->", a)
    with pytest.raises(ValueError, match="unexpected '.'"):
        C.einsum("i.j->", a)
    with pytest.raises(ValueError, match="does not broadcast"):
        C.einsum("...i,...i->...", rand((1, 3)), rand((2, 3)))
    with pytest.raises(ValueError, match="output has no '...'"):
        C.einsum("...i->i", a)
    with pytest.raises(TypeError, match=r"operands\[1\] must be an array"):
        C.einsum("ij,j->i", a, [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="cannot be compared"):
        C.einsum(a, [0, "x"])


def test_bad_optimize():
    a, b, c = rand((2, 3)), rand((3, 4)), rand((4, 5))
    with pytest.raises(TypeError, match="PathStrategy"):
        C.einsum("ij,jk->ik", a, b, optimize="greedy")
    with pytest.raises(ValueError, match="names position 2, but only 2 operands remain"):
        C.einsum("ij,jk,kl->il", a, b, c, optimize=[(0, 1), (0, 2)])
    with pytest.raises(ValueError, match="leaves 2 operands uncontracted"):
        C.einsum("ij,jk,kl->il", a, b, c, optimize=[(0, 1)])
    with pytest.raises(ValueError, match="repeats an operand position"):
        C.einsum("ij,jk,kl->il", a, b, c, optimize=[(0, 0), (0, 1)])
    with pytest.raises(TypeError, match="not an int"):
        C.einsum("ij,jk->ik", a, b, optimize=[(0, 1.0)])
    with pytest.raises(ValueError, match="max_repeats must be a positive int"):
        C.HyperSearch(max_repeats=0)
    with pytest.raises(ValueError, match="max_time must be"):
        C.HyperSearch(max_time=-1.0)


def test_bad_contract_input():
    a, b = rand((2, 3)), rand((3, 4))
    with pytest.raises(ValueError, match=r"got 2 tensors but 1 label sequences in labels"):
        C.contract([a, b], [("i", "j")])
    with pytest.raises(ValueError, match=r"tensors\[1\] has 2 axes \(shape \(3, 4\)\) but labels\[1\] has 1 labels"):
        C.contract([a, b], [("i", "j"), ("j",)])
    mismatch = r"'i' has size 2 at axis 0 of tensors\[0\] but size 3 at axis 0 of tensors\[1\]"
    with pytest.raises(ValueError, match=mismatch):
        C.contract([a, b], [("i", "j"), ("i", "k")])
    with pytest.raises(TypeError, match=r"labels\[0\]\[0\] must be a hashable label"):
        C.contract([a, b], [(["i"], "j"), ("j", "k")])
    with pytest.raises(TypeError, match="tensors must be a list or tuple"):
        C.contract(a, [("i", "j")])
    with pytest.raises(ValueError, match="at least one tensor"):
        C.contract([], [])
    with pytest.raises(ValueError, match="output label 'q' appears in no input"):
        C.contract([a, b], [("i", "j"), ("j", "k")], ("i", "q"))


def test_bad_ncon_input():
    a, b = rand((2, 3)), rand((3, 4))
    with pytest.raises(ValueError, match=r"negative \(open\) label -1 appears 2 times"):
        C.ncon([a, b], [[-1, 1], [1, -1]])
    with pytest.raises(ValueError, match=r"positive \(contracted\) label 2 appears 1 time "):
        C.ncon([a, b], [[-1, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"positive \(contracted\) label 1 appears 3 times"):
        C.ncon([a, b, rand((3,))], [[-1, 1], [1, -2], [1]])
    with pytest.raises(ValueError, match="label 0"):
        C.ncon([a, b], [[-1, 0], [0, -2]])
    with pytest.raises(TypeError, match="ncon labels must be ints"):
        C.ncon([a, b], [[-1, "x"], ["x", -2]])
    with pytest.raises(ValueError, match=r"network\[1\] has 1 labels"):
        C.ncon([a, b], [[-1, 1], [1]])
    with pytest.raises(ValueError, match="out_order must be a permutation"):
        C.ncon([a, b], [[-1, 1], [1, -2]], out_order=[-1, -3])
    with pytest.raises(ValueError, match="con_order must be a permutation"):
        C.ncon([a, b], [[-1, 1], [1, -2]], con_order=[1, 2])
    with pytest.raises(ValueError, match="not both"):
        C.ncon([a, b], [[-1, 1], [1, -2]], con_order=[1], optimize=PS.GREEDY)
    with pytest.raises(ValueError, match=r"label 1 has size 3 at axis 1 of tensors\[0\] but size 4"):
        C.ncon([a, b.T], [[-1, 1], [1, -2]])


def test_bad_tensornetwork_input():
    a, b = tn.Node(rand((2, 3))), tn.Node(rand((3, 4)))
    tn.connect(a[1], b[0])
    with pytest.raises(ValueError, match=r"nodes\[0\] axis 1 is connected to node .* which is not in nodes"):
        C.from_tensornetwork([a])
    with pytest.raises(ValueError, match=r"nodes\[1\] is the same node as nodes\[0\]"):
        C.from_tensornetwork([a, a])
    with pytest.raises(ValueError, match="must list every dangling edge"):
        C.from_tensornetwork([a, b], [a[0]])
    with pytest.raises(ValueError, match="not a dangling edge"):
        C.from_tensornetwork([a, b], [a[0], a[1]])
    with pytest.raises(TypeError, match=r"nodes\[0\] must be a tensornetwork node"):
        C.from_tensornetwork([np.ones(2)])
    with pytest.raises(TypeError, match="floating or complex"):
        C.from_tensornetwork([tn.Node(np.ones(2, np.int32))])
    with pytest.raises(ValueError, match="backend must be one of"):
        C.to_tensornetwork([rand((2,))], ["i"], backend="torch")
    with pytest.raises(TypeError, match="tracer"):
        jax.jit(lambda x: C.to_tensornetwork([x], ["i"]).nodes[0].tensor)(jnp.ones(2))
