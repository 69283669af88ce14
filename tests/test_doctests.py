"""Every `>>>` example in the public modules runs and prints what its docstring says."""

import doctest
import importlib

import pytest

MODULES = ["tnkit", "tnkit.formats", "tnkit.tt", "tnkit.ttm", "tnkit.interop", "tnkit.contract", "tnkit.cp", "tnkit.kron", "tnkit.tr", "tnkit.tucker", "tnkit.tree", "tnkit._linalg"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
    if name != "tnkit._linalg":
        assert result.attempted > 0, f"{name} has no examples"
