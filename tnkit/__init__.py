"""tnkit: tensor networks for JAX.

Formats are immutable pytrees: :class:`TT`, :class:`TTMatrix`, :class:`TR`, :class:`Tucker`, :class:`CP`,
:class:`TreeTN` (on a static :class:`DimensionTree`), :class:`Kron` and :class:`KronSum`. The algebra of each lives
in a pure-function module of the same name (:mod:`tnkit.tt`, :mod:`tnkit.ttm`, :mod:`tnkit.tr`,
:mod:`tnkit.tucker`, :mod:`tnkit.cp`, :mod:`tnkit.tree`, :mod:`tnkit.kron`); :mod:`tnkit.contract` contracts
arbitrary networks, and :mod:`tnkit.interop` converts to and from TensorNetwork and TensorLy.

Layers built on the formats live in :mod:`tnkit.layers` (the functional core), :mod:`tnkit.nn` (Flax nnx) and
:mod:`tnkit.eqx` (Equinox); optax optimizers with tensor-structured state in :mod:`tnkit.optim`. These four are
imported on first access (``tnkit.nn`` or ``from tnkit import nn``), so ``import tnkit`` stays light.

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

_LAZY_SUBMODULES = ("layers", "nn", "eqx", "optim")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"tnkit.{name}")
    raise AttributeError(f"module 'tnkit' has no attribute {name!r}")

__all__ = [
    "TT",
    "TTMatrix",
    "TR",
    "Tucker",
    "CP",
    "TreeTN",
    "DimensionTree",
    "Kron",
    "KronSum",
    "tt",
    "ttm",
    "tr",
    "tucker",
    "cp",
    "tree",
    "kron",
    "contract",
    "interop",
    "layers",
    "nn",
    "eqx",
    "optim",
    "__version__",
]
