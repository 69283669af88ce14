"""Pallas kernels for hot tensor-network contractions.

This package will hold hand-written Pallas (``jax.experimental.pallas``)
kernels for the contractions that dominate tnkit's run time (e.g. TT/MPS
core sweeps, TT-matrix-by-vector products), each placed beside a pure
``jax.numpy`` reference implementation that defines its semantics and is
used to test it.

It is intentionally empty until the kernels issue is worked on; nothing
in ``tnkit`` depends on it yet.
"""

__all__: list[str] = []
