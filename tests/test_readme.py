"""The README's tour runs as written: each ```python block on its own (they are self-contained), so the blocks can
run on different test workers."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3, "README lost its tour blocks"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    exec(compile(BLOCKS[index], f"{README}:block{index}", "exec"), {"__name__": "__readme__"})
