"""Small shared helpers for the tests (dense references live in the tests themselves)."""

import numpy as np


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def graded_tensor(dims, seed=0, decay=0.5, terms=30, dtype=np.float64):
    """A sum of random rank-1 terms with geometrically decaying weights: a tensor with a decaying spectrum."""
    rng = np.random.default_rng(seed)
    x = np.zeros(dims, dtype=dtype)
    for k in range(terms):
        t = np.ones((), dtype=dtype)
        for n in dims:
            v = rng.standard_normal(n)
            if np.issubdtype(dtype, np.complexfloating):
                v = v + 1j * rng.standard_normal(n)
            t = np.multiply.outer(t, v)
        x = x + decay**k * t
    return x


def traced(fn):
    """``(jitted, count)``: ``jax.jit`` of ``fn`` and a function returning how many times it has been traced.

    The retrace checks count traces (a Python side effect that runs only while tracing) instead of reading
    ``jitted._cache_size()``: that private C++ cache is shared by every jitted function in the process, and once a
    long test run has created more than its capacity (8,192 functions) it reports 0 for a new function even when
    nothing is retraced (reproduced with 10,000 jitted partials of one function).
    """
    import jax

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return jax.jit(counted), lambda: len(calls)
