"""Overlap <a|b> of two random MPS (64 sites, physical dim 2, bond dim 64, float64): tnkit vs cotengra vs quimb.

* quimb: ``psi.H @ phi`` with ``psi, phi = quimb.tensor.MPS_rand_state(64, 64, phys_dim=2, dtype="float64",
  seed=0 / 1)`` (real, so ``.H`` changes nothing; quimb keeps bond 64 at the boundary sites too).
* tnkit: ``jax.jit(tt.inner)`` on the same arrays as cores ``(r, 2, r)`` (the end cores ``(1, 2, 64)``, ``(64, 2, 1)``).
* cotengra: the einsum network of <a|b> on the same arrays (NumPy), a contraction tree found once with
  ``cotengra.HyperOptimizer(minimize="flops")`` through ``cotengra.array_contract_tree``; only
  ``tree.contract(arrays)`` is timed (search time reported separately).

The three values must agree to 1e-10 relative. Flop counts: for tnkit, XLA's own cost analysis of the compiled
``tt.inner`` (``compiled.cost_analysis()["flops"]``, so it follows whatever order the code uses); for cotengra,
2 x ``tree.contraction_cost()`` (its multiply-adds).
Achieved GFLOP/s are compared with a reference rate measured in the same process: a jitted float64 ``jnp.dot`` of
two 2048 x 2048 matrices.

Target: tnkit median time <= 0.6 x cotengra's.
"""

from __future__ import annotations

import random
import time
import warnings

if __package__ in (None, ""):
    import _harness as H  # noqa: N812
    import _peers
else:
    from benchmarks import _harness as H  # noqa: N812
    from benchmarks import _peers

NAME = "mps_overlap"
L, D, PHYS = 64, 64, 2
TARGET_RATIO = 0.6


def overlap_network(cores_a, cores_b):
    """inputs, output, size_dict and arrays (boundary legs squeezed) of the network <a|b>."""
    import cotengra as ctg
    import numpy as np

    names: dict[str, str] = {}

    def sym(label):
        if label not in names:
            names[label] = ctg.get_symbol(len(names))
        return names[label]

    inputs, arrays, size = [], [], {}
    n_sites = len(cores_a)
    for i in range(n_sites):
        for kind, cores in (("a", cores_a), ("b", cores_b)):
            arr = cores[i]
            ix = []
            if i > 0:
                ix.append(sym(f"{kind}{i}"))
            ix.append(sym(f"p{i}"))
            if i < n_sites - 1:
                ix.append(sym(f"{kind}{i + 1}"))
            if i == 0:
                arr = arr[0]
            if i == n_sites - 1:
                arr = arr[..., 0]
            arr = np.ascontiguousarray(arr)
            inputs.append(tuple(ix))
            arrays.append(arr)
            for s, n in zip(ix, arr.shape):
                size[s] = n
    return inputs, (), size, arrays


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import cotengra as ctg
    import jax
    import numpy as np
    import quimb.tensor as qtn

    from tnkit import TT, tt

    repeats, warmup = (7, 2) if args.quick else (41, 5)
    max_repeats = 16 if args.quick else 64

    psi = qtn.MPS_rand_state(L, D, phys_dim=PHYS, dtype="float64", seed=0)
    phi = qtn.MPS_rand_state(L, D, phys_dim=PHYS, dtype="float64", seed=1)
    cores_a = _peers.quimb_mps_to_cores(psi)
    cores_b = _peers.quimb_mps_to_cores(phi)
    a = TT([jax.device_put(c) for c in cores_a])
    b = TT([jax.device_put(c) for c in cores_b])

    inputs, output, size, arrays = overlap_network(cores_a, cores_b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "couldn't import kahypar": falls back to its other methods
        random.seed(0)  # cotengra's search draws from `random` and NumPy; seed both for a reproducible tree
        np.random.seed(0)
        t0 = time.perf_counter()
        opt = ctg.HyperOptimizer(minimize="flops", max_repeats=max_repeats, parallel=False, progbar=False)
        tree = ctg.array_contract_tree(inputs, output, size, optimize=opt)
        search_s = time.perf_counter() - t0

    inner = jax.jit(tt.inner)
    attempts = 1 if args.quick else 3
    comp, _ = H.quietly(lambda: H.compile_time(inner, a, b), attempts=attempts)

    v_quimb = float(psi.H @ phi)
    v_tnkit = float(inner(a, b))
    v_ctg = float(tree.contract(arrays))
    analysis = inner.lower(a, b).compile().cost_analysis()
    flops_tnkit = int((analysis[0] if isinstance(analysis, list) else analysis)["flops"])
    flops_ctg = 2 * int(tree.contraction_cost())

    meta = H.run_meta(
        NAME,
        args,
        sites=L,
        bond_dim=D,
        phys_dim=PHYS,
        repeats=repeats,
        warmup=warmup,
        cotengra_optimizer=f"HyperOptimizer(minimize='flops', max_repeats={max_repeats})",
        cotengra_search_s=search_s,
        cotengra_tree_flops=flops_ctg,
        tnkit_order_flops=flops_tnkit,
        tnkit_compile=comp,
    )
    peak = H.measure_peak_gflops(2048, repeats=3 if args.quick else 7)
    meta["peak"] = peak

    fns = {
        "tnkit": lambda: inner(a, b),
        "cotengra": lambda: tree.contract(arrays),
        "quimb": lambda: psi.H @ phi,
    }
    times, tries = H.quietly(lambda: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts)
    meta["attempts"] = tries
    peak_rate = peak["jax_dot_gflops"]

    values = {"tnkit": v_tnkit, "cotengra": v_ctg, "quimb": v_quimb}
    flops = {"tnkit": flops_tnkit, "cotengra": flops_ctg, "quimb": None}
    order = {
        "tnkit": "site by site (tt.inner)",
        "cotengra": f"HyperOptimizer tree (search {search_s:.1f} s)",
        "quimb": "quimb default (psi.H @ phi)",
    }
    rows = []
    t_ctg = times["cotengra"]["median"]
    for name in fns:
        t = times[name]["median"]
        f = flops[name]
        gflops = None if f is None else f / t / 1e9
        rows.append(
            {
                "impl": name,
                "order": order[name],
                "median_ms": H.ms(t),
                "best_ms": H.ms(times[name]["min"]),
                "ratio_vs_cotengra": t / t_ctg,
                "ratio_best_vs_cotengra": times[name]["min"] / times["cotengra"]["min"],
                "mflop": None if f is None else f / 1e6,
                "gflops": gflops,
                "pct_peak": None if gflops is None else 100 * gflops / peak_rate,
                "value": values[name],
                "rel_diff_vs_quimb": abs(values[name] - v_quimb) / abs(v_quimb),
                "others_cpu": times[name]["others_cpu_share"],
                "samples_s": times[name]["all"],
            }
        )
    agree = all(r["rel_diff_vs_quimb"] <= 1e-10 for r in rows)
    ratio = rows[0]["ratio_vs_cotengra"]
    notes = [
        f"tnkit compile (lower+compile): {comp['lower_compile_s']:.2f} s; cold first call {comp['first_call_s']:.2f} s.",
        f"Reference rate: jitted float64 `jnp.dot` 2048x2048 = {peak['jax_dot_gflops']:.1f} GFLOP/s "
        f"(best {peak['jax_dot_gflops_best']:.1f}); NumPy `np.dot` = {peak['numpy_dot_gflops']:.1f} GFLOP/s. "
        "`% peak` is relative to the jnp.dot median.",
        f"Values agree to 1e-10 relative: {'yes' if agree else 'NO'}. "
        f"Target tnkit <= {TARGET_RATIO} x cotengra: {'met' if ratio <= TARGET_RATIO else 'missed'} "
        f"(ratio {ratio:.2f}).",
        f"cotengra's tree needs {flops_ctg / 1e6:.1f} MFLOP, tnkit's compiled `tt.inner` {flops_tnkit / 1e6:.1f} "
        "(XLA cost analysis): near the ends, where bond 64 > 2**k, both first multiply cores along one MPS.",
        f"Median of {repeats} interleaved samples ({warmup} warm-up rounds), one process. `others' CPU share`: "
        "CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    columns = [
        ("impl", "implementation"),
        ("order", "contraction order"),
        ("median_ms", "median ms"),
        ("best_ms", "best ms"),
        ("ratio_vs_cotengra", "time / cotengra (target tnkit ≤ 0.6)"),
        ("ratio_best_vs_cotengra", "best / cotengra best"),
        ("mflop", "MFLOP (XLA cost analysis / cotengra tree)"),
        ("gflops", "GFLOP/s"),
        ("pct_peak", "% of jnp.dot peak"),
        ("value", "<a|b>"),
        ("rel_diff_vs_quimb", "rel. diff vs quimb"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    if not agree:
        raise SystemExit("the three overlaps disagree beyond 1e-10 relative (see the table)")
    return rows


if __name__ == "__main__":
    main()
