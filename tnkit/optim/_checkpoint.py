"""Saving and restoring optimizer state (any pytree of arrays) as a plain ``.npz`` file.

An optax state is a pytree of arrays whose structure is fixed by the transform and the parameters, so a checkpoint
needs only the leaves: :func:`save_state` writes them with ``numpy.savez`` together with their tree paths and
dtypes, and :func:`load_state` reads them back into the structure of a freshly initialised state (``like``),
checking that paths, shapes and dtypes agree. Restored arrays are placed like the leaves of ``like`` (its
shardings), so a state saved from a run on 8 devices restores on 1 and vice versa: the state layout of
:func:`tnkit.optim.scale_by_shampoo` never depends on the devices. Resuming from a checkpoint continues the
trajectory exactly (bit for bit on the same machine and program).

Orbax (``orbax.checkpoint``), when installed, saves the same states too (they are plain pytrees of arrays); these
two functions need nothing beyond NumPy. Typed PRNG keys are stored as their key data.

Example:
  >>> import os, tempfile
  >>> import jax, jax.numpy as jnp
  >>> from tnkit import optim
  >>> from tnkit.optim import load_state, save_state
  >>> tx = optim.shampoo(1e-2)
  >>> params = {"w": jnp.ones((4, 3))}
  >>> state = tx.init(params)
  >>> _, state = tx.update({"w": jnp.ones((4, 3))}, state, params)
  >>> path = os.path.join(tempfile.mkdtemp(), "opt_state.npz")
  >>> save_state(path, state)
  >>> restored = load_state(path, like=tx.init(params))
  >>> int(restored[0].count)
  1
  >>> all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)))
  True
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["load_state", "save_state"]

_PATHS, _DTYPES = "__paths__", "__dtypes__"


def _leaves_with_paths(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) for path, _ in flat], [leaf for _, leaf in flat]


def _is_key(x) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def save_state(path: str | os.PathLike, state) -> None:
    """Write the leaves of ``state`` (a pytree of arrays) to ``path`` with ``numpy.savez``.

    Stored: each leaf as ``leaf_<i>`` (in ``jax.tree.leaves`` order, gathered to the host), the leaves' tree paths
    and their dtype names (so bfloat16 and other non-NumPy dtypes round-trip). ``numpy.savez`` appends ``.npz`` to a
    path without that suffix.

    Args:
      path: the file to write.
      state: an optimizer state, or any pytree of arrays and scalars.

    Raises:
      TypeError: for a leaf that is not an array or a number (naming its path).
    """
    paths, leaves = _leaves_with_paths(state)
    arrays, dtypes = {}, []
    for i, (p, leaf) in enumerate(zip(paths, leaves)):
        if _is_key(leaf):
            dtypes.append("key<" + str(jax.random.key_impl(leaf)) + ">")
            leaf = jax.random.key_data(leaf)
        elif not hasattr(leaf, "dtype") and not isinstance(leaf, (int, float, complex, np.number)):
            raise TypeError(f"state leaf {p} must be an array or a number, got {type(leaf).__name__}")
        else:
            dtypes.append(str(jnp.asarray(leaf).dtype) if not hasattr(leaf, "dtype") else str(leaf.dtype))
        a = np.asarray(jax.device_get(leaf))
        if a.dtype.kind not in "biufc":  # ml_dtypes (bfloat16, float8, int4): store the raw bits
            a = a.view(np.dtype(f"uint{8 * a.dtype.itemsize}"))
        arrays[f"leaf_{i}"] = a
    np.savez(path, **arrays, **{_PATHS: np.array(paths, dtype=str), _DTYPES: np.array(dtypes, dtype=str)})


def load_state(path: str | os.PathLike, like):
    """Read a state written by :func:`save_state` into the tree structure of ``like``.

    Args:
      path: the ``.npz`` file.
      like: a state of the same structure, shapes and dtypes, e.g. ``tx.init(params)`` on the machine that resumes;
        its leaves' shardings (or devices) are given to the restored arrays.

    Returns:
      A pytree like ``like`` holding the saved values.

    Raises:
      ValueError: when the file's tree paths, shapes or dtypes differ from those of ``like`` (naming the first
        difference).
    """
    paths, leaves = _leaves_with_paths(like)
    with np.load(path, allow_pickle=False) as data:
        saved_paths, saved_dtypes = list(data[_PATHS]), list(data[_DTYPES])
        if saved_paths != paths:
            extra, missing = sorted(set(saved_paths) - set(paths)), sorted(set(paths) - set(saved_paths))
            raise ValueError(
                f"the checkpoint {os.fspath(path)!r} holds a state of {len(saved_paths)} leaves but like has "
                f"{len(paths)}; in the file only: {extra[:5]}, in like only: {missing[:5]}"
                if extra or missing
                else f"the checkpoint {os.fspath(path)!r} holds the leaves of like in another order"
            )
        out = []
        for i, (p, leaf, dtype) in enumerate(zip(paths, leaves, saved_dtypes)):
            a = data[f"leaf_{i}"]
            if _is_key(leaf):
                want = "key<" + str(jax.random.key_impl(leaf)) + ">"
                shape = jax.random.key_data(leaf).shape
            else:
                want = str(leaf.dtype) if hasattr(leaf, "dtype") else str(jnp.asarray(leaf).dtype)
                shape = np.shape(leaf)
            if dtype != want or a.shape != tuple(shape):
                raise ValueError(
                    f"state leaf {p}: the checkpoint holds {dtype}{list(a.shape)} but like has {want}{list(shape)}"
                )
            if _is_key(leaf):
                value = jax.random.wrap_key_data(a, impl=jax.random.key_impl(leaf))
            else:
                value = a.view(jnp.dtype(dtype)) if a.dtype != jnp.dtype(dtype) else a
            sharding = getattr(leaf, "sharding", None)
            out.append(jax.device_put(value, sharding) if sharding is not None else jnp.asarray(value))
    return jax.tree.structure(like).unflatten(out)
