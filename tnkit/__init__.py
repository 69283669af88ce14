"""tnkit: tensor networks for JAX.

Formats are immutable pytrees (:class:`TT`, :class:`TTMatrix`); the algebra lives in pure-function modules
(:mod:`tnkit.tt`, :mod:`tnkit.ttm`); :mod:`tnkit.interop` converts to and from TensorNetwork and TensorLy.

Example:
  >>> import jax.numpy as jnp
  >>> import tnkit
  >>> t = tnkit.tt.from_dense(jnp.ones((2, 3, 4)), rtol=1e-6)
  >>> t.ranks
  (1, 1, 1, 1)
"""

from tnkit import contract, cp, interop, kron, tr, tree, tt, ttm, tucker
from tnkit.formats import CP, TR, TT, TTMatrix, Tucker
from tnkit.kron import Kron, KronSum
from tnkit.tree import DimensionTree, TreeTN

__version__ = "0.1.0"

__all__ = ["TT", "TTMatrix", "TR", "Tucker", "CP", "Kron", "KronSum", "TreeTN", "DimensionTree", "tt", "ttm", "contract", "cp", "kron", "tr", "tucker", "tree", "interop", "__version__"]
