"""Every `>>>` example in the public modules runs and prints what its docstring says."""

import doctest
import importlib

import pytest

MODULES = [
    "tnkit",
    "tnkit.formats",
    "tnkit.tt",
    "tnkit.ttm",
    "tnkit.interop",
    "tnkit.contract",
    "tnkit.cp",
    "tnkit.kron",
    "tnkit.tr",
    "tnkit.tucker",
    "tnkit.tree",
    "tnkit._linalg",
    "tnkit.layers",
    "tnkit.layers._base",
    "tnkit.layers._tt",
    "tnkit.layers._factorized",
    "tnkit.layers._structured",
    "tnkit.layers._conv",
    "tnkit.layers._adapters",
    "tnkit.layers._embedding",
    "tnkit.nn",
    "tnkit.nn._tt",
    "tnkit.nn._factorized",
    "tnkit.nn._structured",
    "tnkit.nn._conv",
    "tnkit.nn._adapters",
    "tnkit.nn._embedding",
    "tnkit.eqx",
    "tnkit.eqx._tt",
    "tnkit.eqx._factorized",
    "tnkit.eqx._structured",
    "tnkit.eqx._conv",
    "tnkit.eqx._adapters",
    "tnkit.eqx._embedding",
    "tnkit.optim",
    "tnkit.optim._matrix_functions",
    "tnkit.optim._shampoo",
    "tnkit.optim._soap",
    "tnkit.optim._quantize",
    "tnkit.optim._shampoo4bit",
    "tnkit.optim._checkpoint",
    "tnkit.optim._distributed",
    "tnkit.optim._complex",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
    if name not in ("tnkit._linalg", "tnkit.nn._base", "tnkit.eqx._base"):
        assert result.attempted > 0, f"{name} has no examples"
