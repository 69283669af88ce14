"""tnkit.interop against TensorNetwork and TensorLy: round trips, the peers' own dense reconstructions, bad inputs,
and TensorLy's TT-SVD as an oracle for tnkit.tt.from_dense.

Shapes are deliberately few (every new shape costs a JAX compile): one TT shape, dims (2, 3, 4) with ranks
(1, 2, 3, 1), built from NumPy cores so that building it compiles nothing.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorly as tl
import tensornetwork as tn
from tensorly.decomposition import tensor_train
from tensorly.tt_matrix import TTMatrix as TLTTMatrix
from tensorly.tt_tensor import TTTensor

from tnkit import TT, TTMatrix, interop, tt, ttm

# tests/conftest.py enables float64 for the whole session; repeated here so this module also runs on its own.
jax.config.update("jax_enable_x64", True)

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
BACKENDS = ["numpy", "jax"]
DIMS = (2, 3, 4)
RANKS = (1, 2, 3, 1)
TOL = {np.float32: 1e-5, np.float64: 1e-12, np.complex64: 1e-5, np.complex128: 1e-12}


# ------------------------------------------------------------------------------------------------------ helpers


def np_cores(dtype, seed=0, dims=DIMS, ranks=RANKS, extra=()):
    """Random NumPy cores of shape (ranks[k], dims[k], *extra, ranks[k + 1])."""
    rng = np.random.default_rng(seed)
    cores = []
    for k, n in enumerate(dims):
        shape = (ranks[k], n, *extra, ranks[k + 1])
        c = rng.standard_normal(shape)
        if np.issubdtype(dtype, np.complexfloating):
            c = c + 1j * rng.standard_normal(shape)
        cores.append(c.astype(dtype))
    return cores


def make_tt(dtype, seed=0, **kwargs) -> TT:
    return TT([jnp.asarray(c) for c in np_cores(dtype, seed, **kwargs)])


def np_dense(cores):
    """Dense tensor of open-boundary TT cores, contracted with NumPy alone."""
    out = np.ones((1, 1), dtype=cores[0].dtype)
    for c in cores:
        c = np.asarray(c)
        out = np.tensordot(out, c, axes=([-1], [0]))
    return out.reshape(out.shape[1:-1])


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def assert_same_cores(a, b):
    assert type(a) is type(b)
    assert a.dtype == b.dtype
    assert len(a.cores) == len(b.cores)
    for ca, cb in zip(a.cores, b.cores):
        assert isinstance(ca, jax.Array)
        assert ca.shape == cb.shape
        np.testing.assert_array_equal(np.asarray(ca), np.asarray(cb))


def ncon_dense(mps):
    """Dense tensor a FiniteMPS represents, its tensors contracted by TensorNetwork's own ncon on its backend."""
    tensors = [mps.get_tensor(k) for k in range(len(mps))]
    d = len(tensors)
    labels = []
    for k in range(d):
        left = -1 if k == 0 else k
        right = -(d + 2) if k == d - 1 else k + 1
        labels.append([left, -(k + 2), right])
    out = np.asarray(tn.ncon(tensors, labels, backend=mps.backend))
    return out.reshape(out.shape[1:-1])


# ------------------------------------------------------------------------------------------- TensorNetwork: MPS


class TestTensorNetworkMPS:
    @pytest.mark.parametrize("backend", BACKENDS)
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_round_trip_is_exact(self, dtype, backend):
        t = make_tt(dtype)
        mps = interop.to_tensornetwork_mps(t, backend=backend)
        assert isinstance(mps, tn.FiniteMPS)
        assert mps.backend.name == backend
        assert mps.center_position is None
        assert mps.bond_dimensions == list(RANKS) and mps.physical_dimensions == list(DIMS)
        array_type = jax.Array if backend == "jax" else np.ndarray
        assert all(isinstance(x, array_type) and x.dtype == dtype for x in mps.tensors)
        assert_same_cores(interop.from_tensornetwork_mps(mps), t)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dense_matches_tensornetwork_contraction(self, dtype):
        cores = np_cores(dtype, seed=1)
        t = TT([jnp.asarray(c) for c in cores])
        mps = interop.to_tensornetwork_mps(t)
        reference = np_dense(cores)
        assert rel_err(ncon_dense(mps), reference) < TOL[dtype]
        assert rel_err(tt.to_dense(interop.from_tensornetwork_mps(mps)), reference) < TOL[dtype]

    def test_numpy_tensors_are_writable_copies(self):
        # FiniteMPS divides its tensors in place when it moves its centre; that must work and not reach t.
        t = make_tt(np.float64)
        mps = interop.to_tensornetwork_mps(t)
        assert all(x.flags.writeable for x in mps.tensors)
        mps.tensors[0] *= 2.0
        np.testing.assert_array_equal(np.asarray(t.cores[0]), np_cores(np.float64)[0])

    @pytest.mark.parametrize("backend", BACKENDS)
    @pytest.mark.parametrize("center", [0, 1, -1])
    def test_center_position_is_canonical_and_keeps_the_norm(self, center, backend):
        cores = np_cores(np.complex128, seed=2)
        t = TT([jnp.asarray(c) for c in cores])
        mps = interop.to_tensornetwork_mps(t, backend=backend, center_position=center)
        assert mps.center_position == center % len(DIMS)
        assert abs(complex(mps.check_canonical())) < 1e-12
        # Not normalised (TensorNetwork's own canonicalisation would divide the norm out).
        assert rel_err(ncon_dense(mps), np_dense(cores)) < 1e-12
        assert rel_err(tt.to_dense(interop.from_tensornetwork_mps(mps)), np_dense(cores)) < 1e-12

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_from_a_tensornetwork_canonicalised_mps(self, backend):
        # TensorNetwork normalises when it canonicalises; the converted TT is what the MPS represents.
        cores = np_cores(np.float64, seed=3)
        tensors = cores if backend == "numpy" else [jnp.asarray(c) for c in cores]
        mps = tn.FiniteMPS(tensors, center_position=1, canonicalize=True, backend=backend)
        t = interop.from_tensornetwork_mps(mps)
        x = np_dense(cores)
        assert rel_err(tt.to_dense(t), ncon_dense(mps)) < 1e-12
        assert rel_err(tt.to_dense(t), x / np.linalg.norm(x)) < 1e-12
        assert t.ranks == tuple(mps.bond_dimensions)

    def test_connector_matrix_is_absorbed(self):
        cores = np_cores(np.float64, seed=4)
        mps = tn.FiniteMPS(cores, canonicalize=False, backend="numpy")
        mps.connector_matrix = np.array([[3.0]])
        assert rel_err(tt.to_dense(interop.from_tensornetwork_mps(mps)), 3.0 * np_dense(cores)) < 1e-12

    def test_single_core(self):
        t = make_tt(np.float64, dims=(3,), ranks=(1, 1))
        mps = interop.to_tensornetwork_mps(t, center_position=0)
        assert mps.bond_dimensions == [1, 1]
        assert rel_err(tt.to_dense(interop.from_tensornetwork_mps(mps)), tt.to_dense(t)) < 1e-12

    def test_bad_inputs(self):
        t = make_tt(np.float64)
        with pytest.raises(TypeError, match="t must be a tnkit.TT, got ndarray"):
            interop.to_tensornetwork_mps(np.ones((2, 3)))
        with pytest.raises(ValueError, match="backend must be one of"):
            interop.to_tensornetwork_mps(t, backend="tensorflow")
        with pytest.raises(ValueError, match=r"center_position must be None or an int in \[-3, 3\).*got 3"):
            interop.to_tensornetwork_mps(t, center_position=3)
        with pytest.raises(ValueError, match="center_position"):
            interop.to_tensornetwork_mps(t, center_position=1.0)
        batch = jax.tree_util.tree_map(lambda c: jnp.stack([c, c]), t)
        with pytest.raises(ValueError, match=r"t has batch_shape \(2,\)"):
            interop.to_tensornetwork_mps(batch)
        with pytest.raises(TypeError, match="mps must be a tensornetwork.FiniteMPS, got TT"):
            interop.from_tensornetwork_mps(t)
        infinite = tn.InfiniteMPS([np.ones((2, 2, 2))], backend="numpy")
        with pytest.raises(TypeError, match="got InfiniteMPS"):
            interop.from_tensornetwork_mps(infinite)
        periodic = tn.FiniteMPS([np.ones((2, 2, 3)), np.ones((3, 2, 2))], canonicalize=False, backend="numpy")
        with pytest.raises(ValueError, match=r"mps.tensors\[0\] has shape \(2, 2, 3\): expected left rank 1"):
            interop.from_tensornetwork_mps(periodic)
        ints = tn.FiniteMPS([np.ones((1, 2, 1), np.int64)], canonicalize=False, backend="numpy")
        with pytest.raises(TypeError, match=r"mps.tensors\[0\] has dtype int64"):
            interop.from_tensornetwork_mps(ints)


# ----------------------------------------------------------------------------------------- TensorNetwork: nodes


class TestTensorNetworkMPO:
    def test_xxz_hamiltonian_matches_dense_sum_of_couplings(self):
        # TensorNetwork's XXZ MPO against the Hamiltonian assembled densely from Pauli-type spin matrices.
        from tensornetwork.matrixproductstates.mpo import FiniteXXZ

        rng = np.random.default_rng(0)
        n = 4
        jz, jxy, bz = rng.standard_normal(n - 1), rng.standard_normal(n - 1), rng.standard_normal(n)
        h = ttm.to_dense(interop.from_tensornetwork_mpo(FiniteXXZ(jz, jxy, bz, dtype=np.float64)))
        sz, sp = np.diag([-0.5, 0.5]), np.array([[0.0, 0.0], [1.0, 0.0]])  # basis (down, up) as TensorNetwork's

        def site_op(op, k):
            out = np.ones((1, 1))
            for j in range(n):
                out = np.kron(out, op if j == k else np.eye(2))
            return out

        dense = sum(bz[k] * site_op(sz, k) for k in range(n))
        for k in range(n - 1):
            dense = dense + jz[k] * site_op(sz, k) @ site_op(sz, k + 1)
            dense = dense + jxy[k] / 2 * (site_op(sp, k) @ site_op(sp.T, k + 1) + site_op(sp.T, k) @ site_op(sp, k + 1))
        np.testing.assert_allclose(h, dense, atol=1e-12)

    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex128])
    def test_roundtrip_and_tensornetwork_applies_it_like_tnkit(self, dtype):
        a = ttm.random(jax.random.key(0), (2, 3), (3, 2), 2, dtype=dtype)
        mpo = interop.to_tensornetwork_mpo(a)
        assert mpo.bond_dimensions == [1, 2, 1] and mpo.dtype == dtype
        back = interop.from_tensornetwork_mpo(mpo)
        for c, b in zip(a.cores, back.cores):
            np.testing.assert_array_equal(c, b)
        # Apply the MPO to a product vector with TensorNetwork's own index convention (DMRG's matvec: the state's
        # physical leg contracts with the MPO's last axis) and compare with the dense TT-matrix.
        v0, v1 = np.arange(1.0, 4.0), np.array([0.5, -1.0])
        t0, t1 = mpo.tensors
        out = tn.ncon([t0, t1, v0, v1], [[-3, 1, -1, 2], [1, -4, -2, 3], [2], [3]])
        want = (np.asarray(ttm.to_dense(a)) @ np.kron(v0, v1)).reshape(2, 3)
        np.testing.assert_allclose(out[..., 0, 0], want, rtol=1e-5)

    def test_bad_inputs(self):
        with pytest.raises(TypeError, match="a must be a tnkit.TTMatrix"):
            interop.to_tensornetwork_mpo(make_tt(jnp.float64))
        with pytest.raises(TypeError, match="mpo must be a tensornetwork FiniteMPO"):
            interop.from_tensornetwork_mpo([np.ones((1, 1, 2, 2))])


def phys_edges(nodes):
    return [node["phys"] for node in nodes]


class TestTensorNetworkNodes:
    @pytest.mark.parametrize("backend", BACKENDS)
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_round_trip_is_exact(self, dtype, backend):
        t = make_tt(dtype)
        nodes = interop.to_tensornetwork_nodes(t, backend=backend)
        assert [n.shape for n in nodes] == [(2, 2), (2, 3, 3), (3, 4)]
        assert [n.name for n in nodes] == ["core0", "core1", "core2"]
        assert all(n.backend.name == backend and n.tensor.dtype == dtype for n in nodes)
        assert [e.name for e in phys_edges(nodes)] == ["phys0", "phys1", "phys2"]
        assert [e.dimension for e in phys_edges(nodes)] == list(DIMS)
        assert set(tn.get_all_dangling(nodes)) == set(phys_edges(nodes))
        bonds = [nodes[0]["right"], nodes[1]["right"]]
        assert [e.name for e in bonds] == ["bond1", "bond2"]
        assert bonds[0] is nodes[1]["left"] and bonds[1] is nodes[2]["left"]
        assert_same_cores(interop.from_tensornetwork_nodes(nodes), t)

    @pytest.mark.parametrize("contractor", ["greedy", "auto"])
    @pytest.mark.parametrize("dtype", [np.float64, np.complex128])
    def test_contraction_matches_to_dense(self, dtype, contractor):
        t = make_tt(dtype, seed=5)
        nodes = interop.to_tensornetwork_nodes(t)
        out = getattr(tn.contractors, contractor)(nodes, output_edge_order=phys_edges(nodes))
        assert out.tensor.shape == DIMS and out.tensor.dtype == dtype
        assert rel_err(out.tensor, tt.to_dense(t)) < 1e-12

    def test_contraction_with_the_jax_backend(self):
        t = make_tt(np.complex128, seed=6)
        nodes = interop.to_tensornetwork_nodes(t, backend="jax")
        out = tn.contractors.greedy(nodes, output_edge_order=phys_edges(nodes))
        assert isinstance(out.tensor, jax.Array)
        assert rel_err(out.tensor, tt.to_dense(t)) < 1e-12

    def test_single_core(self):
        t = make_tt(np.float64, dims=(3,), ranks=(1, 1))
        (node,) = interop.to_tensornetwork_nodes(t)
        assert node.shape == (3,) and node["phys"].is_dangling()
        assert_same_cores(interop.from_tensornetwork_nodes([node]), t)
        # The unsqueezed form is accepted as well.
        assert_same_cores(interop.from_tensornetwork_nodes([tn.Node(np.asarray(t.cores[0]))]), t)

    def test_unsqueezed_end_nodes_are_accepted(self):
        cores = np_cores(np.float64, seed=7)
        nodes = [tn.Node(c) for c in cores]
        for a, b in zip(nodes[:-1], nodes[1:]):
            tn.connect(a[2], b[0])
        t = interop.from_tensornetwork_nodes(nodes)
        assert t.ranks == RANKS
        for c, ref in zip(t.cores, cores):
            np.testing.assert_array_equal(np.asarray(c), ref)

    def test_from_nodes_does_not_change_them(self):
        nodes = interop.to_tensornetwork_nodes(make_tt(np.float64))
        before = [(n.shape, [e.is_dangling() for e in n.edges]) for n in nodes]
        interop.from_tensornetwork_nodes(nodes)
        assert [(n.shape, [e.is_dangling() for e in n.edges]) for n in nodes] == before

    def test_bad_inputs(self):
        t = make_tt(np.float64)
        with pytest.raises(TypeError, match="t must be a tnkit.TT"):
            interop.to_tensornetwork_nodes([np.ones((1, 2, 1))])
        with pytest.raises(ValueError, match="backend must be one of"):
            interop.to_tensornetwork_nodes(t, backend="pytorch")
        nodes = interop.to_tensornetwork_nodes(t)
        with pytest.raises(TypeError, match="nodes must be a list or tuple of tensornetwork nodes, got Node"):
            interop.from_tensornetwork_nodes(nodes[0])
        with pytest.raises(TypeError, match=r"nodes\[1\] must be a tensornetwork node, got ndarray"):
            interop.from_tensornetwork_nodes([nodes[0], np.ones((2, 3, 3)), nodes[2]])
        with pytest.raises(ValueError, match="at least one node"):
            interop.from_tensornetwork_nodes([])
        with pytest.raises(ValueError, match=r"nodes\[0\] axis 1 \(right bond\) must be connected to nodes\[1\]"):
            interop.from_tensornetwork_nodes(nodes[::-1])
        with pytest.raises(ValueError, match=r"nodes\[0\] axis 1 \(right bond\) must be connected to nodes\[1\]"):
            interop.from_tensornetwork_nodes([nodes[0], nodes[2]])

    def test_broken_chain(self):
        nodes = interop.to_tensornetwork_nodes(make_tt(np.float64))
        nodes[1]["right"].disconnect()
        with pytest.raises(ValueError, match=r"nodes\[1\] axis 2 \(right bond\) must be connected to nodes\[2\]"):
            interop.from_tensornetwork_nodes(nodes)

    def test_bad_node_shapes(self):
        cores = np_cores(np.float64)
        with pytest.raises(ValueError, match=r"nodes\[1\] has shape \(6, 3\): .*inner node must be 3-D"):
            interop.from_tensornetwork_nodes([tn.Node(cores[0][0]), tn.Node(np.ones((6, 3))), tn.Node(cores[2])])
        with pytest.raises(ValueError, match=r"nodes\[0\] has shape \(2, 2, 2, 2\): .*first node must be 2-D"):
            interop.from_tensornetwork_nodes([tn.Node(np.ones((2, 2, 2, 2))), tn.Node(np.ones((2, 2)))])
        with pytest.raises(ValueError, match=r"nodes\[0\] has shape \(2, 3\): .*only node must be 1-D"):
            interop.from_tensornetwork_nodes([tn.Node(np.ones((2, 3)))])

    def test_connected_physical_leg_and_wide_boundary(self):
        a, b, c = tn.Node(np.ones((2, 3))), tn.Node(np.ones((3, 2))), tn.Node(np.ones(2))
        tn.connect(a[1], b[0])
        tn.connect(b[1], c[0])
        with pytest.raises(ValueError, match=r"nodes\[1\] axis 1 \(the physical leg\) must be dangling"):
            interop.from_tensornetwork_nodes([a, b])
        a, b = tn.Node(np.ones((2, 2, 3))), tn.Node(np.ones((3, 2)))
        tn.connect(a[2], b[0])
        with pytest.raises(ValueError, match=r"nodes\[0\] axis 0 \(the left boundary leg\).*dimension 2"):
            interop.from_tensornetwork_nodes([a, b])


# ----------------------------------------------------------------------------------------------------- TensorLy


class TestTensorLy:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_round_trip_is_exact(self, dtype):
        t = make_tt(dtype)
        f = interop.to_tensorly(t)
        assert isinstance(f, TTTensor)
        assert f.rank == RANKS and f.shape == DIMS
        assert all(isinstance(x, np.ndarray) and x.dtype == dtype for x in f.factors)
        assert_same_cores(interop.from_tensorly(f), t)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dense_matches_tt_to_tensor(self, dtype):
        cores = np_cores(dtype, seed=8)
        t = TT([jnp.asarray(c) for c in cores])
        x = tl.tt_to_tensor(interop.to_tensorly(t))
        assert x.dtype == dtype
        assert rel_err(x, np_dense(cores)) < TOL[dtype]
        assert rel_err(tt.to_dense(interop.from_tensorly(TTTensor(cores))), x) < TOL[dtype]

    def test_factors_are_copies(self):
        t = make_tt(np.float64)
        f = interop.to_tensorly(t)
        f.factors[0][...] = 0.0
        np.testing.assert_array_equal(np.asarray(t.cores[0]), np_cores(np.float64)[0])

    def test_plain_list_and_tuple_of_factors(self):
        cores = np_cores(np.complex128, seed=9)
        for factors in (cores, tuple(cores), [jnp.asarray(c) for c in cores]):
            t = interop.from_tensorly(factors)
            assert t.dtype == np.complex128 and t.ranks == RANKS
            for c, ref in zip(t.cores, cores):
                np.testing.assert_array_equal(np.asarray(c), ref)

    @pytest.mark.parametrize("dtype", [np.float32, np.complex128])
    def test_tt_matrix_round_trip_and_dense(self, dtype):
        cores = np_cores(dtype, seed=10, dims=(2, 3), ranks=(1, 2, 1), extra=(2,))
        a = TTMatrix([jnp.asarray(c) for c in cores])
        m = interop.to_tensorly_matrix(a)
        assert isinstance(m, TLTTMatrix)
        assert m.rank == (1, 2, 1) and m.shape == (2, 3, 2, 2)
        assert all(x.dtype == dtype for x in m.factors)
        assert_same_cores(interop.from_tensorly_matrix(m), a)
        assert_same_cores(interop.from_tensorly_matrix(list(m.factors)), a)
        assert rel_err(ttm.to_dense(a), tl.tt_matrix_to_matrix(m)) < TOL[dtype]

    def test_bad_inputs(self):
        cores = np_cores(np.float64)
        t = TT([jnp.asarray(c) for c in cores])
        with pytest.raises(TypeError, match="t must be a tnkit.TT, got TTMatrix"):
            interop.to_tensorly(TTMatrix([jnp.ones((1, 2, 2, 1))]))
        with pytest.raises(TypeError, match="a must be a tnkit.TTMatrix, got TT"):
            interop.to_tensorly_matrix(t)
        with pytest.raises(TypeError, match="tt_tensor must be a tensorly.tt_tensor.TTTensor or a list .* got int"):
            interop.from_tensorly(42)
        with pytest.raises(TypeError, match="got ndarray"):
            interop.from_tensorly(cores[1])
        with pytest.raises(TypeError, match="use tnkit.interop.from_tensorly_matrix"):
            interop.from_tensorly(TLTTMatrix([np.ones((1, 2, 2, 1))]))
        with pytest.raises(TypeError, match="use tnkit.interop.from_tensorly"):
            interop.from_tensorly_matrix(TTTensor(cores))
        with pytest.raises(ValueError, match="tt_tensor must hold at least one core"):
            interop.from_tensorly([])
        with pytest.raises(ValueError, match=r"tt_tensor\[2\] has shape \(3, 4, 1\): its left rank 3 must equal"):
            interop.from_tensorly([cores[0], cores[1][:, :, :2], cores[2]])
        with pytest.raises(ValueError, match=r"tt_tensor\[0\] has shape \(2, 3, 1\): expected left rank 1"):
            interop.from_tensorly([np.ones((2, 3, 1))])
        with pytest.raises(ValueError, match=r"tt_tensor\[0\] has shape \(2, 3\): expected a 3-D core"):
            interop.from_tensorly([np.ones((2, 3))])
        with pytest.raises(TypeError, match=r"tt_tensor\[0\] has dtype int64"):
            interop.from_tensorly([np.ones((1, 3, 1), np.int64)])
        with pytest.raises(TypeError, match=r"tt_tensor\[1\] must be an array, got str"):
            interop.from_tensorly([cores[0], "core"])
        with pytest.raises(TypeError, match="must share one dtype"):
            interop.from_tensorly([cores[0], cores[1].astype(np.float32), cores[2]])
        with pytest.raises(ValueError, match=r"m\[0\] has shape \(1, 2, 1\): expected a 4-D core"):
            interop.from_tensorly_matrix([np.ones((1, 2, 1))])

    def test_missing_tensorly_says_how_to_install(self, monkeypatch):
        for name in ("tensorly", "tensorly.tt_tensor", "tensorly.tt_matrix"):
            monkeypatch.setitem(sys.modules, name, None)
        t = make_tt(np.float64)
        for call in (
            lambda: interop.to_tensorly(t),
            lambda: interop.from_tensorly([]),
            lambda: interop.to_tensorly_matrix(TTMatrix([jnp.ones((1, 2, 2, 1))])),
            lambda: interop.from_tensorly_matrix([]),
        ):
            with pytest.raises(ImportError, match="pip install tensorly"):
                call()


# ------------------------------------------------------------------------------------------------------ oracles


def graded_tensor(dims, seed=0, decay=0.5, terms=12):
    """A float64 sum of random rank-1 terms with geometrically decaying weights (a decaying spectrum)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(dims)
    for k in range(terms):
        term = np.ones(())
        for n in dims:
            term = np.multiply.outer(term, rng.standard_normal(n))
        x = x + decay**k * term
    return x


class TestOracles:
    @pytest.mark.parametrize("rank", [1, 3])
    def test_from_dense_matches_tensorly_tensor_train(self, rank):
        x = graded_tensor((4, 5, 6))
        ours = tt.from_dense(jnp.asarray(x), max_rank=rank)
        theirs = tensor_train(x, rank=rank)
        assert ours.ranks == tuple(theirs.rank)
        err_ours = rel_err(tt.to_dense(ours), x)
        err_theirs = rel_err(tl.tt_to_tensor(theirs), x)
        assert 1e-6 < err_theirs < 1  # truncation is doing something
        assert err_ours <= 1.01 * err_theirs + 1e-12

    @pytest.mark.parametrize("dtype", [np.float64, np.complex128])
    def test_inner_and_norm_against_numpy(self, dtype):
        a_cores, b_cores = np_cores(dtype, seed=11), np_cores(dtype, seed=12)
        a, b = TT([jnp.asarray(c) for c in a_cores]), TT([jnp.asarray(c) for c in b_cores])
        xa, xb = np_dense(a_cores), np_dense(b_cores)
        np.testing.assert_allclose(complex(tt.inner(a, b)), np.vdot(xa, xb), rtol=1e-12)
        np.testing.assert_allclose(float(tt.norm(a)), np.linalg.norm(xa), rtol=1e-12)
        # The same numbers from the peers' dense reconstructions.
        np.testing.assert_allclose(
            complex(tt.inner(a, b)), np.vdot(tl.tt_to_tensor(interop.to_tensorly(a)), xb), rtol=1e-12
        )
        np.testing.assert_allclose(
            float(tt.norm(b)), np.linalg.norm(ncon_dense(interop.to_tensornetwork_mps(b))), rtol=1e-12
        )
