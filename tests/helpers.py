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
