"""Tucker core shapes under a parameter budget: knapsack against greedy (the ``core_shapes`` experiment).

The question (Ghadiri, Fahrbach, Fu and Mirrokni, ICML 2023): given a tensor ``x`` of shape ``(n_1, ..., n_d)`` and
a budget ``B`` of parameters, which multilinear ranks ``r`` (core shape) minimise the Tucker reconstruction error,
subject to ``prod_k r_k + sum_k n_k r_k <= B``? The paper replaces the true loss by the discarded higher-order
singular values ``sum_k sum_{i > r_k} sigma_{k,i}^2`` (an upper bound on the squared HOSVD error, separable over the
modes) and solves that "Tucker packing" problem near-optimally by a knapsack; tnkit implements it as
``tnkit.tucker.ranks_for_budget(x, B, method=RankSearch.KNAPSACK)``. Per tensor and budget we compare four choices:

* ``knapsack``: ``ranks_for_budget(spectra, B, method=RankSearch.KNAPSACK)`` (the paper's RTS);
* ``greedy``: ``ranks_for_budget(spectra, B, method=RankSearch.GREEDY)``, the cheap greedy on the same surrogate;
* ``greedy_true``: the paper's expensive baseline, a greedy on the *true* HOSVD loss: from ranks ``(1, ..., 1)``,
  repeatedly take the step (one rank +1, or two ranks +1 each, keeping the ranks attainable) with the largest drop
  of the true squared HOSVD error per added parameter, while the budget allows;
* ``optimum``: the brute-force best attainable ranks for the true HOSVD error (every core shape is tried).

The true HOSVD error of *every* core shape comes from one full HOSVD: with the full orthonormal factors ``U_k``
(all left singular vectors of the mode-``k`` unfolding, by decreasing singular value) and core
``G = x x_1 U_1^T ... x_d U_d^T`` (``tnkit.tucker.multi_mode_product``), the HOSVD at ranks ``r`` keeps the leading
``r_k`` columns of each ``U_k``, so its core is the block ``G[:r_1, ..., :r_d]`` and, the factors being
orthonormal, ``||x - T_r||^2 = ||x||^2 - ||G[:r_1, ..., :r_d]||^2``. A cumulative sum of ``G^2`` along every axis
gives all those block norms at once. The table is checked against ``tnkit.tucker.hosvd(x, ranks=r)`` directly, and
ST-HOSVD (``tnkit.tucker.sthosvd``) is run at the knapsack and greedy shapes.

Tensors (float64):

* ``china``: scikit-learn's ``china.jpg`` as a ``427 x 640 x 3`` tensor (rows, columns, colour);
* ``china_blocks``: its ``416 x 640`` crop (rows 5..420) cut into ``16 x 16`` blocks, as a 5-way tensor
  ``(26, 16, 40, 16, 3)`` (block row, row in block, block column, column in block, colour);
* ``flower_patches``: ``flower.jpg``'s ``416 x 640`` crop as ``1040`` patches of ``16 x 16`` pixels, a 4-way tensor
  ``(1040, 16, 16, 3)`` (patch, row, column, colour), like a stack of small images;
* ``lowrank_noise``: ``G x_1 U_1 ... x_4 U_4 + E`` of shape ``(60, 50, 40, 30)``, multilinear rank
  ``(30, 8, 20, 12)``, random orthonormal ``U_k``, a Gaussian core with entries damped by ``exp(-a_k i_k / r_k)``
  along each mode (``a = (1, 3, 0.5, 2)``: some modes decay fast, some slowly), and Gaussian noise ``E`` with
  ``||E|| = 0.01 ||x||``;
* ``graded``: the same construction at full multilinear rank (core of shape ``(60, 50, 40, 30)``, damping
  ``a = (6, 12, 3, 9)``), no noise: every mode's spectrum decays geometrically, at its own rate;
* ``smooth``: ``f(s, t, u, v) = sin(3 s + t^2) / (1 + u + 2 v) + exp(-s t u v)`` sampled on a uniform grid of
  ``[0, 1]^4`` with ``(64, 48, 32, 16)`` points.

``downsample`` divides every side length (photos: strided subsampling, blocks of ``16 / downsample`` pixels; the
synthetic tensors: fewer points, ranks ``max(2, r // downsample)``).
"""

from __future__ import annotations

import math
import statistics
import time

import jax.numpy as jnp
import numpy as np

from experiments._core import Outcome, markdown_table, pyplot
from experiments.data import load_sample_image
from tnkit import tucker

METHODS = ("knapsack", "greedy", "greedy_true", "optimum")
LABELS = {
    "knapsack": "knapsack (RTS, tnkit KNAPSACK)",
    "greedy": "greedy on singular values (tnkit GREEDY)",
    "greedy_true": "greedy on the true HOSVD loss",
    "optimum": "brute-force optimum (HOSVD loss)",
}
#: Relative slack for "error A <= error B" comparisons (rounding of the table and of float64 SVDs).
TOL = 1e-9


# ------------------------------------------------------------------------------------------------------- tensors


def _photo_blocks(name: str, ds: int) -> np.ndarray:
    """The ``416 x 640`` crop of a photo, strided by ``ds``, as ``(26, 16/ds, 40, 16/ds, 3)``."""
    img = load_sample_image(name).astype(np.float64)[5:421][::ds, ::ds]
    b = 16 // ds
    return img.reshape(26, b, 40, b, 3)


def make_tensor(name: str, ds: int, rng: np.random.Generator) -> np.ndarray:
    """One of the experiment's tensors (see the module docstring), float64."""
    if name == "china":
        return load_sample_image("china.jpg").astype(np.float64)[::ds, ::ds]
    if name == "china_blocks":
        return _photo_blocks("china.jpg", ds)
    if name == "flower_patches":
        x = _photo_blocks("flower.jpg", ds)
        return x.transpose(0, 2, 1, 3, 4).reshape(26 * 40, x.shape[1], x.shape[3], 3)
    if name in ("lowrank_noise", "graded"):
        dims = tuple(n // ds for n in (60, 50, 40, 30))
        if name == "lowrank_noise":
            ranks, decay = tuple(max(2, r // ds) for r in (30, 8, 20, 12)), (1.0, 3.0, 0.5, 2.0)
        else:
            ranks, decay = dims, (6.0, 12.0, 3.0, 9.0)
        core = rng.standard_normal(ranks)
        for k, (r, a) in enumerate(zip(ranks, decay)):
            shape = [1] * len(ranks)
            shape[k] = r
            core = core * np.exp(-a * np.arange(r) / r).reshape(shape)
        x = core
        for k, (n, r) in enumerate(zip(dims, ranks)):
            u, _ = np.linalg.qr(rng.standard_normal((n, r)))
            x = np.moveaxis(np.tensordot(u, x, axes=(1, k)), 0, k)
        if name == "graded":
            return x
        noise = rng.standard_normal(dims)
        return x + 0.01 * np.linalg.norm(x) / np.linalg.norm(noise) * noise
    if name == "smooth":
        s, t, u, v = np.meshgrid(*(np.linspace(0, 1, n // ds) for n in (64, 48, 32, 16)), indexing="ij")
        return np.sin(3 * s + t**2) / (1 + u + 2 * v) + np.exp(-s * t * u * v)
    raise ValueError(f"tensor: unknown name {name!r}")


# ------------------------------------------------------------------------------------------ the true HOSVD loss


def _left_singular_vectors(x: np.ndarray, k: int) -> np.ndarray:
    """All left singular vectors of the mode-``k`` unfolding with a nonzero singular value, by decreasing value.

    (``tucker.hosvd`` at full multilinear rank returns identity factors for modes kept whole, which is right for
    that decomposition but not the basis whose leading columns give the truncated HOSVDs, hence this.)
    """
    a = np.moveaxis(x, k, 0).reshape(x.shape[k], -1)
    lam, u = np.linalg.eigh(a @ a.T)
    order = np.argsort(lam)[::-1]
    cap = min(a.shape)
    return u[:, order[:cap]]


class HOSVDTable:
    """The squared HOSVD error of every core shape, from one full HOSVD (see the module docstring).

    Attributes:
      dims: the tensor's shape ``(n_1, ..., n_d)``.
      caps: the full multilinear ranks (the core's shape); larger ranks lose nothing more.
      norm2: ``||x||^2``.
      kept: ``kept[r_1 - 1, ..., r_d - 1] = ||G[:r_1, ..., :r_d]||^2``, shape ``caps``.
    """

    def __init__(self, x: np.ndarray):
        factors = [_left_singular_vectors(x, k) for k in range(x.ndim)]
        core = np.asarray(tucker.multi_mode_product(jnp.asarray(x), factors, transpose=True), dtype=np.float64)
        self.dims = tuple(x.shape)
        self.caps = tuple(core.shape)
        self.norm2 = float(np.sum(x * x))
        kept = core * core
        for k in range(core.ndim):
            kept = np.cumsum(kept, axis=k)
        self.kept = kept

    def error2(self, ranks) -> float:
        """``||x - HOSVD_r(x)||^2`` (clamped at 0 against rounding)."""
        idx = tuple(min(r, c) - 1 for r, c in zip(ranks, self.caps))
        return max(self.norm2 - float(self.kept[idx]), 0.0)

    def rel_error(self, ranks) -> float:
        return math.sqrt(self.error2(ranks) / self.norm2)

    def all_shapes(self, spectra):
        """Every core shape in the box ``[1, caps]``: flat arrays of parameter counts, attainability, true squared
        HOSVD errors and discarded singular-value energies (the knapsack's objective) computed from ``spectra``."""
        grids = np.meshgrid(*(np.arange(1, c + 1, dtype=np.int64) for c in self.caps), indexing="ij", sparse=True)
        prod = math.prod(grids) if len(grids) > 1 else grids[0]
        params = prod + sum(n * g for n, g in zip(self.dims, grids))
        ok = np.ones(self.caps, bool)
        for g in grids:
            ok &= g * g <= prod
        err2 = np.maximum(self.norm2 - self.kept, 0.0)
        discarded = np.zeros(self.caps)
        for k, (s, c) in enumerate(zip(spectra, self.caps)):
            tail = np.cumsum((np.asarray(s, np.float64) ** 2)[::-1])[::-1]  # tail[r] = sum_{i >= r} s_i^2
            shape = [1] * len(self.caps)
            shape[k] = c
            discarded = discarded + np.concatenate([tail[1:], [0.0]])[:c].reshape(shape)
        return params.ravel(), ok.ravel(), err2.ravel(), discarded.ravel()


def num_params(ranks, dims) -> int:
    return math.prod(ranks) + sum(n * r for n, r in zip(dims, ranks))


def _attainable(ranks) -> bool:
    total = math.prod(ranks)
    return all(r * r <= total for r in ranks)


def greedy_true(table: HOSVDTable, budget: int) -> tuple[int, ...]:
    """The paper's baseline: greedy on the true HOSVD loss (same steps as tnkit's GREEDY, true error as the gain)."""
    d = len(table.dims)
    ranks = [1] * d
    params, err2 = num_params(ranks, table.dims), table.error2(ranks)
    moves = [(k,) for k in range(d)] + [(j, k) for j in range(d) for k in range(j + 1, d)]
    while True:
        best = None
        best_score = 0.0
        for move in moves:
            new = list(ranks)
            for k in move:
                new[k] += 1
            if any(new[k] > table.caps[k] for k in move) or not _attainable(new):
                continue
            new_params = num_params(new, table.dims)
            if new_params > budget:
                continue
            new_err2 = table.error2(new)
            score = (err2 - new_err2) / (new_params - params)
            if score > best_score:
                best, best_score, best_state = new, score, (new_params, new_err2)
        if best is None:
            return tuple(ranks)
        ranks, (params, err2) = best, best_state


def optimum(shapes, caps, budget: int, *, surrogate: bool = False) -> tuple[tuple[int, ...], float]:
    """The attainable core shape in the box with the least HOSVD error (or, with ``surrogate``, the least discarded
    singular-value energy) within ``budget`` (ties: fewer parameters); returns it and that least value."""
    params, ok, err2, discarded = shapes
    value = discarded if surrogate else err2
    mask = ok & (params <= budget)
    idx = np.flatnonzero(mask)
    best = idx[np.lexsort((params[idx], value[idx]))[0]]
    ranks = tuple(int(i) + 1 for i in np.unravel_index(best, caps))
    return ranks, float(value[best])


# ------------------------------------------------------------------------------------------------------ running


def _median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def _rel_err_of(t, x: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(tucker.to_dense(t)) - x) / np.linalg.norm(x))


def study_tensor(name: str, x: np.ndarray, config, ctx) -> dict:
    """Every budget of ``config.budgets`` on one tensor: the four choices, their sizes, errors and times."""
    dims = tuple(x.shape)
    size = x.size
    t0 = time.perf_counter()
    spectra = tucker.higher_order_singular_values(x)
    t_spectra = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = HOSVDTable(x)
    t_table = time.perf_counter() - t0
    shapes = table.all_shapes(spectra)
    minimum = num_params((1,) * len(dims), dims)
    sthosvd_cache: dict[tuple[int, ...], tuple[float, int]] = {}
    rows = []
    for frac in ctx.progress(config.budgets, desc=name):
        budget = max(int(frac * size), minimum)
        row = {"fraction": frac, "budget": budget}
        for method in ("knapsack", "greedy"):
            search = tucker.RankSearch.KNAPSACK if method == "knapsack" else tucker.RankSearch.GREEDY
            choice, secs = _median_time(
                lambda s=search: tucker.ranks_for_budget(spectra, budget, method=s, resolution=config.resolution),
                config.repeats,
            )
            row[method] = {
                "ranks": list(choice.ranks),
                "params": num_params(choice.ranks, dims),
                "discarded": choice.discarded,
                "hosvd_err": table.rel_error(choice.ranks),
                "bound_err": math.sqrt(choice.discarded / table.norm2),
                "time_s": secs,
            }
            if config.sthosvd:
                if choice.ranks not in sthosvd_cache:
                    t = tucker.sthosvd(jnp.asarray(x), ranks=choice.ranks)
                    sthosvd_cache[choice.ranks] = (_rel_err_of(t, x), t.core.size + sum(f.size for f in t.factors))
                row[method]["sthosvd_err"], row[method]["sthosvd_params"] = sthosvd_cache[choice.ranks]
        ranks, secs = _median_time(lambda: greedy_true(table, budget), config.repeats)
        row["greedy_true"] = {
            "ranks": list(ranks),
            "params": num_params(ranks, dims),
            "hosvd_err": table.rel_error(ranks),
            "time_s": secs + t_table,
        }
        (ranks, err2), secs = _median_time(lambda: optimum(shapes, table.caps, budget), 1)
        row["optimum"] = {
            "ranks": list(ranks),
            "params": num_params(ranks, dims),
            "hosvd_err": math.sqrt(err2 / table.norm2),
            "time_s": secs + t_table,
        }
        # The knapsack's guarantee: its discarded energy is at most the best attainable one for the budget
        # B (1 - resolution) / (1 + resolution); brute force over every shape gives that best value.
        small = int(budget * (1 - config.resolution) / (1 + config.resolution))
        row["surrogate"] = {
            "optimum": optimum(shapes, table.caps, budget, surrogate=True)[1],
            "optimum_shrunk_budget": optimum(shapes, table.caps, small, surrogate=True)[1] if small >= minimum else None,
        }
        rows.append(row)
    # Independent check of the table: tnkit's HOSVD at the knapsack shape of the smallest and largest budget.
    direct = []
    for row in (rows[0], rows[-1]):
        ranks = tuple(row["knapsack"]["ranks"])
        direct.append(
            {"ranks": list(ranks), "table": table.rel_error(ranks), "hosvd": _rel_err_of(tucker.hosvd(jnp.asarray(x), ranks=ranks), x)}
        )
    ctx.log(f"{name} {dims}: spectra {t_spectra:.2f} s, full HOSVD table {t_table:.2f} s")
    return {
        "dims": list(dims),
        "size": size,
        "caps": list(table.caps),
        "spectra_time_s": t_spectra,
        "table_time_s": t_table,
        "rows": rows,
        "table_check": direct,
    }


def _plots(per_tensor: dict, ctx) -> None:
    plt = pyplot()
    names = list(per_tensor)
    styles = {
        "knapsack": dict(marker="o", color="C0"),
        "greedy": dict(marker="s", color="C1", linestyle="--"),
        "greedy_true": dict(marker="^", color="C2", linestyle=":"),
        "optimum": dict(marker="x", color="k", linestyle="none"),
    }
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = per_tensor[name]["rows"]
        fr = [100 * r["fraction"] for r in rows]
        for m in METHODS:
            ax.plot(fr, [r[m]["hosvd_err"] for r in rows], label=LABELS[m], **styles[m])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name} {tuple(per_tensor[name]['dims'])}", fontsize=9)
        ax.set_xlabel("budget (% of dense size)")
    axes[0][0].set_ylabel("relative HOSVD error")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "error_vs_budget")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, name in enumerate(names):
        rows = per_tensor[name]["rows"]
        fr = [100 * r["fraction"] for r in rows]
        gap = [100 * (r["greedy"]["hosvd_err"] / r["knapsack"]["hosvd_err"] - 1) for r in rows]
        axes[0].plot(fr, gap, marker="o", color=f"C{i}", label=name)
        opt = [100 * (r["knapsack"]["hosvd_err"] / r["optimum"]["hosvd_err"] - 1) for r in rows]
        axes[1].plot(fr, opt, marker="o", color=f"C{i}", label=name)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_title("greedy error / knapsack error - 1 (%)", fontsize=9)
    axes[1].set_title("knapsack error / optimum error - 1 (%)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("budget (% of dense size)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "gaps")

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m, style in (("knapsack", "o-"), ("greedy", "s--"), ("greedy_true", "^:")):
        t = [r[m]["time_s"] for name in names for r in per_tensor[name]["rows"]]
        b = [r["budget"] for name in names for r in per_tensor[name]["rows"]]
        ax.plot(b, t, style[0], label=LABELS[m], alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("budget (parameters)")
    ax.set_ylabel("selection time (s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "selection_time")


def run(config, ctx) -> Outcome:
    per_tensor = {}
    for i, name in enumerate(config.tensors):
        x = make_tensor(name, config.downsample, ctx.rng(i))
        per_tensor[name] = study_tensor(name, x, config, ctx)

    all_rows = [(name, r) for name, t in per_tensor.items() for r in t["rows"]]
    within = all(r[m]["params"] <= r["budget"] for _, r in all_rows for m in METHODS)
    if config.sthosvd:
        within &= all(r[m]["sthosvd_params"] <= r["budget"] for _, r in all_rows for m in ("knapsack", "greedy"))
    objective_ok = all(r["knapsack"]["discarded"] <= r["greedy"]["discarded"] * (1 + TOL) for _, r in all_rows)
    hosvd_not_worse = [
        (name, r["fraction"]) for name, r in all_rows if r["knapsack"]["hosvd_err"] > r["greedy"]["hosvd_err"] * (1 + TOL)
    ]
    hosvd_better = [
        (name, r["fraction"]) for name, r in all_rows if r["knapsack"]["hosvd_err"] < r["greedy"]["hosvd_err"] * (1 - 1e-6)
    ]
    sthosvd_worse = []
    if config.sthosvd:
        sthosvd_worse = [
            (name, r["fraction"])
            for name, r in all_rows
            if r["knapsack"]["sthosvd_err"] > r["greedy"]["sthosvd_err"] * (1 + 1e-6)
        ]
    falls = all(
        all(b["knapsack"]["hosvd_err"] <= a["knapsack"]["hosvd_err"] * (1 + TOL) + 1e-7 for a, b in zip(t["rows"], t["rows"][1:]))
        and (t["rows"][-1]["knapsack"]["hosvd_err"] < t["rows"][0]["knapsack"]["hosvd_err"]
             or t["rows"][0]["knapsack"]["hosvd_err"] < 1e-7)  # already exact to float64 at the smallest budget
        for t in per_tensor.values()
    )
    true_better = [
        (name, r["fraction"]) for name, r in all_rows if r["greedy_true"]["hosvd_err"] < r["knapsack"]["hosvd_err"] * (1 - 1e-6)
    ]
    gap_opt = max(r["knapsack"]["hosvd_err"] / r["optimum"]["hosvd_err"] - 1 for _, r in all_rows)
    gap_greedy = max(r["greedy"]["hosvd_err"] / r["knapsack"]["hosvd_err"] - 1 for _, r in all_rows)
    table_ok = all(abs(c["table"] - c["hosvd"]) <= 1e-6 + 1e-6 * c["hosvd"] for t in per_tensor.values() for c in t["table_check"])
    t_knap = sum(r["knapsack"]["time_s"] for _, r in all_rows)
    t_greedy = sum(r["greedy"]["time_s"] for _, r in all_rows)
    t_true = sum(r["greedy_true"]["time_s"] for _, r in all_rows)

    guarantee = all(
        r["knapsack"]["discarded"] <= r["surrogate"]["optimum_shrunk_budget"] * (1 + TOL) + 1e-12
        for _, r in all_rows
        if r["surrogate"]["optimum_shrunk_budget"] is not None
    )
    bound_ok = all(r[m]["hosvd_err"] <= r[m]["bound_err"] * (1 + 1e-6) + 1e-7 for _, r in all_rows for m in ("knapsack", "greedy"))
    mean_knap = statistics.fmean(r["knapsack"]["hosvd_err"] for _, r in all_rows)
    mean_greedy = statistics.fmean(r["greedy"]["hosvd_err"] for _, r in all_rows)
    mean_true = statistics.fmean(r["greedy_true"]["hosvd_err"] for _, r in all_rows)
    mean_opt = statistics.fmean(r["optimum"]["hosvd_err"] for _, r in all_rows)
    checks = {
        "every chosen core shape fits its budget (all methods, and the ST-HOSVD results' sizes)": within,
        "knapsack discards no more singular-value energy than greedy at every budget (its objective)": objective_ok,
        "knapsack meets its guarantee against the brute-force best discarded energy at budget B(1-res)/(1+res)": guarantee,
        "the discarded energy bounds the true HOSVD error (knapsack and greedy shapes)": bound_ok,
        "knapsack's HOSVD error, averaged over every tensor and budget, is no higher than greedy's": mean_knap
        <= mean_greedy * (1 + TOL),
        "knapsack HOSVD error falls as the budget grows, on every tensor": falls,
        "the error table agrees with tnkit.tucker.hosvd at the chosen shapes": table_ok,
        "knapsack selection is faster than the greedy on the true loss": t_knap < t_true,
    }

    headline = (
        f"knapsack beats greedy at {len(hosvd_better)}/{len(all_rows)} budgets (by up to {100 * gap_greedy:.1f}% "
        f"error), loses at {len(hosvd_not_worse)}; true-loss greedy beats knapsack at {len(true_better)}; knapsack "
        f"within {100 * gap_opt:.1f}% of the optimum; selection {t_knap:.1f} s vs greedy {t_greedy:.2f} s"
    )

    tensor_list = ", ".join(f"`{n}` {tuple(t['dims'])}" for n, t in per_tensor.items())
    sections = [
        "## Setting\n\n"
        f"Tensors: {tensor_list} (float64). Budgets: "
        f"{', '.join(f'{100 * f:g}%' for f in config.budgets)} of the dense size. Knapsack resolution "
        f"{config.resolution}. Errors are relative Frobenius errors `||x - T|| / ||x||`; `HOSVD` errors come from one "
        "full HOSVD per tensor (exact for every core shape, checked against `tucker.hosvd`), `ST-HOSVD` errors from "
        "`tucker.sthosvd` at the chosen shape. Times: the rank search alone, from precomputed higher-order singular "
        "values (median of "
        f"{config.repeats}); `greedy on the true loss` and `optimum` include the full HOSVD they need.",
        "## Summary\n\n"
        + markdown_table(
            ["quantity", "value"],
            [
                ("budgets where knapsack's HOSVD error is lower than greedy's", f"{len(hosvd_better)} of {len(all_rows)}"),
                ("budgets where it is higher", f"{len(hosvd_not_worse)} ({hosvd_not_worse or 'none'})"),
                ("budgets where knapsack's ST-HOSVD error is higher than greedy's", f"{len(sthosvd_worse)}"
                 + ("" if config.sthosvd else " (ST-HOSVD not run)")),
                ("largest greedy/knapsack HOSVD error ratio - 1", f"{100 * gap_greedy:.2f}%"),
                ("largest knapsack/optimum HOSVD error ratio - 1", f"{100 * gap_opt:.3f}%"),
                ("mean HOSVD error: knapsack / greedy / greedy on the true loss / optimum",
                 f"{mean_knap:.5f} / {mean_greedy:.5f} / {mean_true:.5f} / {mean_opt:.5f}"),
                ("budgets where the greedy on the true loss beats knapsack", f"{len(true_better)} of {len(all_rows)}"),
                ("total selection time: knapsack / greedy / greedy on the true loss",
                 f"{t_knap:.2f} s / {t_greedy:.3f} s / {t_true:.2f} s"),
            ],
        ),
    ]
    for name, t in per_tensor.items():
        rows = []
        for r in t["rows"]:
            k, g, gt, o = (r[m] for m in METHODS)
            rows.append((
                f"{100 * r['fraction']:g}%",
                r["budget"],
                f"{tuple(k['ranks'])} {k['params']}",
                f"{tuple(g['ranks'])} {g['params']}",
                f"{tuple(gt['ranks'])}",
                f"{tuple(o['ranks'])}",
                f"{k['hosvd_err']:.4f}",
                f"{g['hosvd_err']:.4f}",
                f"{gt['hosvd_err']:.4f}",
                f"{o['hosvd_err']:.4f}",
                f"{k['sthosvd_err']:.4f} / {g['sthosvd_err']:.4f}" if config.sthosvd else "-",
                f"{k['time_s']:.3f} / {g['time_s']:.4f} / {gt['time_s']:.2f}",
            ))
        sections.append(
            f"## `{name}` {tuple(t['dims'])}\n\nHigher-order singular values in {t['spectra_time_s']:.2f} s; full "
            f"HOSVD and error table in {t['table_time_s']:.2f} s.\n\n"
            + markdown_table(
                ["budget", "params", "knapsack ranks, size", "greedy ranks, size", "true-loss greedy", "optimum",
                 "HOSVD err knapsack", "greedy", "true-loss greedy", "optimum", "ST-HOSVD err knap / greedy",
                 "time (s) knap / greedy / true"],
                rows,
            )
        )
    _plots(per_tensor, ctx)
    results = {
        "tensors": per_tensor,
        "summary": {
            "budgets": len(all_rows),
            "knapsack_better": [list(p) for p in hosvd_better],
            "knapsack_worse": [list(p) for p in hosvd_not_worse],
            "knapsack_worse_sthosvd": [list(p) for p in sthosvd_worse],
            "max_greedy_over_knapsack": gap_greedy,
            "max_knapsack_over_optimum": gap_opt,
            "greedy_true_better": [list(p) for p in true_better],
            "mean_hosvd_err": {"knapsack": mean_knap, "greedy": mean_greedy, "greedy_true": mean_true, "optimum": mean_opt},
            "time_knapsack_s": t_knap,
            "time_greedy_s": t_greedy,
            "time_greedy_true_s": t_true,
        },
    }
    return Outcome(results=results, checks=checks, headline=headline, report="\n\n".join(sections))
