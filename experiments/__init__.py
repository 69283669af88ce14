"""tnkit's paper reproductions, run with ``python -m experiments``.

Each experiment is a package ``experiments/<name>/`` with a README (the paper, the claim, the command, the expected
runtime and our numbers beside the paper's) and an ``EXPERIMENT`` object (see :mod:`experiments._core`).
"""
