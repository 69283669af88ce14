"""Round the sum of two TTs (d=32, n=4, rank 32 each, float64) to rank 16: tnkit vs quimb.

* tnkit: ``jax.jit(lambda a, b: tt.round(tt.add(a, b), max_rank=16))`` (the default ``method=SVDMethod.AUTO``):
  the QR-free rounding of ``method=GRAM`` (truncations through Gram matrices of the right parts) with a certificate
  that every truncation is as good as an SVD's (since 2026-11-25); where the certificate fails, a right-to-left QR
  orthogonalisation followed by a left-to-right sweep of truncations, each from the Gram matrix of the unfolding
  where that is as accurate as an SVD, else an SVD. A second row forces ``method=SVDMethod.ACCURATE`` (QR sweep,
  an SVD at every step), and a third ``method=SVDMethod.GRAM`` (the QR-free route without the certificate,
  accurate to about ``sqrt(eps)`` relative; opt-in, no target).
* quimb: ``(psi_a + psi_b).compress(max_bond=16, cutoff=0.0)`` on ``MatrixProductState`` objects holding the same
  cores: quimb's standard SVD-based ("direct") compression, ``form="right"``: a left-canonicalising QR sweep followed
  by a right-to-left sweep of truncated SVDs. ``cutoff=0.0`` disables singular-value cutoffs, so only ``max_bond``
  truncates, as for tnkit. The sum ``psi_a + psi_b`` (a direct sum of cores, bond 64) is part of both timings.

Two pairs of inputs (``jax.random.key(0)`` / ``key(1)``):

* ``random``: ``tt.random(key, (4,)*32, 32, float64)``: i.i.d. Gaussian cores. Their spectra are flat, so rank 16
  keeps little of the sum (relative error near 1); this checks speed and that both make the same choice.
* ``decaying``: the same cores with bond index ``j`` of every core scaled by ``0.7**j`` on both sides (a
  geometrically decaying bond spectrum, as in a physical state); rank 16 then leaves a small error.

Errors are measured against the exact sum ``s`` without densifying (4**32 entries): ``||s - c|| / ||s||`` with
``tt.norm(tt.sub(s, c))`` (an orthogonalisation sweep, no cancellation), for tnkit's and for quimb's result (its
cores converted to a tnkit TT); quimb's own ``(s - c).norm()`` is reported as a cross-check.

Batched rows (context, no target): ``BATCH`` pairs (keys ``2 s`` / ``2 s + 1``, ``s = 0 .. BATCH - 1``) stacked and
rounded by one ``jax.jit(jax.vmap(...))`` call, against quimb's compression in a Python loop over the pairs.
Under ``vmap`` the default method makes one decision for the whole batch (the QR route only if some pair fails
the certificate, and then one decision per truncation: an SVD only if some pair needs it). The error column then holds the largest error over the batch, and the error ratio the largest
pairwise ratio.

Target (default method): tnkit <= 0.5 x quimb's median time, at an error not larger than quimb's. The two sweep in opposite
directions, so their truncations differ slightly even in exact arithmetic; "equal" is taken as an error ratio
tnkit / quimb <= 1.01 (the ratio itself is reported).
"""

from __future__ import annotations

if __package__ in (None, ""):
    import _harness as H  # noqa: N812
    import _peers
else:
    from benchmarks import _harness as H  # noqa: N812
    from benchmarks import _peers

NAME = "tt_round"
D, N, RANK, MAX_RANK = 32, 4, 32, 16
DECAY = 0.7
TARGET_RATIO = 0.5
BATCH = 8


def make_pair(kind: str, seed: int = 0):
    import jax
    import jax.numpy as jnp

    from tnkit import TT, tt

    a = tt.random(jax.random.key(2 * seed), (N,) * D, RANK, jnp.float64)
    b = tt.random(jax.random.key(2 * seed + 1), (N,) * D, RANK, jnp.float64)
    if kind == "decaying":

        def decay(t):
            cores = []
            for c in t.cores:
                left = DECAY ** jnp.arange(c.shape[0])
                right = DECAY ** jnp.arange(c.shape[2])
                cores.append(c * left[:, None, None] * right[None, None, :])
            return TT(cores)

        a, b = decay(a), decay(b)
    return a, b


def main(argv=None) -> list[dict]:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    H.setup()
    import jax

    from tnkit import tt

    repeats, warmup = (5, 1) if args.quick else (21, 3)
    # (row label, timing key, method): AUTO is the default and the one the target applies to.
    routes = (("AUTO (default)", "tnkit", tt.SVDMethod.AUTO), ("ACCURATE (forced)", "accurate", tt.SVDMethod.ACCURATE),
              ("GRAM (opt-in)", "gram", tt.SVDMethod.GRAM))

    def rounding(method):
        return lambda a, b: tt.round(tt.add(a, b), max_rank=MAX_RANK, method=method)

    single = {key: jax.jit(rounding(method)) for _, key, method in routes}
    fn = single["tnkit"]

    def quimb_round(qa, qb):
        s = qa + qb
        s.compress(max_bond=MAX_RANK, cutoff=0.0)
        return s

    norm = jax.jit(tt.norm)
    rel_err = jax.jit(lambda s, c: tt.norm(tt.sub(s, c)) / tt.norm(s))

    rows = []
    cases = {}
    for kind in ("random", "decaying"):
        a, b = make_pair(kind)
        qa, qb = _peers.tt_to_quimb_mps(a), _peers.tt_to_quimb_mps(b)
        cases[kind] = (a, b, qa, qb)
    attempts = 1 if args.quick else 3
    comp, _ = H.quietly(lambda: H.compile_time(fn, *cases["random"][:2]), attempts=attempts)
    meta = H.run_meta(
        NAME, args, d=D, n=N, rank=RANK, max_rank=MAX_RANK, decay=DECAY, repeats=repeats, warmup=warmup,
        quimb_method="MatrixProductState.compress(max_bond=16, cutoff=0.0) (form='right': QR sweep + SVD sweep)",
        tnkit_compile=comp,
    )
    for kind, (a, b, qa, qb) in cases.items():
        fns = {key: (lambda f=f: f(a, b)) for key, f in single.items()} | {"quimb": lambda: quimb_round(qa, qb)}
        times, tries = H.quietly(lambda: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts)
        s = tt.add(a, b)
        q_sum = qa + qb
        q_c = quimb_round(qa, qb)
        c_quimb = _peers.quimb_mps_to_tt(q_c)
        err_quimb = float(rel_err(s, c_quimb))
        err_quimb_native = float((q_sum - q_c).norm() / q_sum.norm())
        t_q = times["quimb"]["median"]
        for label, key, _ in routes:
            c_tnkit = single[key](a, b)
            err_tnkit = float(rel_err(s, c_tnkit))
            t_tn = times[key]["median"]
            ratio = t_tn / t_q
            default = key == "tnkit"
            rows.append(
                {
                    "case": kind,
                    "method": label,
                    "tnkit_ms": H.ms(t_tn),
                    "quimb_ms": H.ms(t_q),
                    "ratio": ratio,
                    "ratio_best": times[key]["min"] / times["quimb"]["min"],
                    "err_tnkit": err_tnkit,
                    "err_quimb": err_quimb,
                    "err_quimb_native": err_quimb_native,
                    "norm_sum": float(norm(s)),
                    "ranks_tnkit_max": max(c_tnkit.ranks),
                    "bond_quimb_max": q_c.max_bond(),
                    "others_cpu": times[key]["others_cpu_share"],
                    "attempts": tries,
                    "time_ok": (ratio <= TARGET_RATIO) if default else None,
                    "err_ratio": err_tnkit / err_quimb,
                    "err_ok": (err_tnkit <= err_quimb * 1.01) if default else None,
                    "samples_tnkit_s": times[key]["all"],
                    "samples_quimb_s": times["quimb"]["all"],
                }
            )
    # Batches of pairs under jax.vmap (context rows).
    batch = 2 if args.quick else BATCH
    batched = {key: jax.jit(jax.vmap(rounding(method))) for _, key, method in routes}
    stack = lambda ts: jax.tree.map(lambda *cs: jax.numpy.stack(cs), *ts)  # noqa: E731
    for kind in ("random", "decaying"):
        pairs = [make_pair(kind, seed) for seed in range(batch)]
        sa, sb = stack([p[0] for p in pairs]), stack([p[1] for p in pairs])
        qpairs = [(_peers.tt_to_quimb_mps(a), _peers.tt_to_quimb_mps(b)) for a, b in pairs]
        fns = {key: (lambda f=f: f(sa, sb)) for key, f in batched.items()}
        fns["quimb"] = lambda: [quimb_round(qa, qb) for qa, qb in qpairs]
        times, tries = H.quietly(lambda: H.time_interleaved(fns, repeats=repeats, warmup=warmup), attempts=attempts)
        t_q = times["quimb"]["median"]
        errs_quimb = [float(rel_err(tt.add(a, b), _peers.quimb_mps_to_tt(quimb_round(qa, qb))))
                      for (a, b), (qa, qb) in zip(pairs, qpairs)]
        for label, key, _ in routes:
            out = batched[key](sa, sb)
            errs = [float(rel_err(tt.add(a, b), jax.tree.map(lambda x, i=i: x[i], out)))
                    for i, (a, b) in enumerate(pairs)]
            ratio = times[key]["median"] / t_q
            rows.append(
                {
                    "case": f"{kind}, {batch} pairs",
                    "method": f"{label}, vmap",
                    "tnkit_ms": H.ms(times[key]["median"]),
                    "quimb_ms": H.ms(t_q),
                    "ratio": ratio,
                    "ratio_best": times[key]["min"] / times["quimb"]["min"],
                    "err_tnkit": max(errs),
                    "err_quimb": max(errs_quimb),
                    "err_ratio": max(e / q for e, q in zip(errs, errs_quimb)),
                    "others_cpu": times[key]["others_cpu_share"],
                    "attempts": tries,
                    "samples_tnkit_s": times[key]["all"],
                    "samples_quimb_s": times["quimb"]["all"],
                }
            )

    columns = [
        ("case", "inputs"),
        ("method", "tnkit method"),
        ("tnkit_ms", "tnkit ms"),
        ("quimb_ms", "quimb ms"),
        ("ratio", "time ratio (target ≤ 0.5)"),
        ("ratio_best", "ratio of best times"),
        ("err_tnkit", "rel. error tnkit"),
        ("err_quimb", "rel. error quimb"),
        ("err_ratio", "error ratio (≤ 1.01)", ".4f"),
        ("err_quimb_native", "quimb error (quimb's norm)"),
        ("ranks_tnkit_max", "max rank tnkit"),
        ("bond_quimb_max", "max bond quimb"),
        ("time_ok", "time target met"),
        ("err_ok", "error ≤ quimb's"),
        ("others_cpu", "others' CPU share", ".2f"),
    ]
    notes = [
        "Targets apply to the default (AUTO) rows of single pairs. AUTO takes the GRAM route where a certificate "
        "proves it as good as an SVD's and the QR route otherwise (since 2026-11-25; under `vmap` one decision for "
        "the batch); the ACCURATE rows force a QR sweep and an SVD at every truncation (the method before "
        "2026-11-24); the GRAM rows skip the QR sweep and truncate through Gram matrices (opt-in: accurate to "
        "about sqrt(eps) relative, no certificate). The `vmap` rows round a stack of pairs in one call against "
        "quimb in a loop (context, no target).",
        f"tnkit compile (lower+compile) {comp['lower_compile_s']:.2f} s, cold first call {comp['first_call_s']:.2f} s "
        "(not in the times above).",
        f"Median of {repeats} interleaved samples ({warmup} warm-up rounds), one process. `others' CPU share`: "
        "CPU time used by other processes while sampling (0 = undisturbed, 0.5 = one core).",
    ]
    H.report(NAME, rows, meta, columns, notes, write=not args.no_write)
    return rows


if __name__ == "__main__":
    main()
