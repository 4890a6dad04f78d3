"""How much of the SCF correction H - H0 the NextHAM operator terms can hold, and what they do to bands.

For each structure of a split, fits one Hermitian spinor operator per atom so that the chosen term
of baselines/nextham/model.py (the same code the model uses) matches H - H0 on the scored edges
(least squares, L-BFGS), together with one free gauge shift mu S (the metric removes it anyway):

* ``--term operator``: dH = 1/2 (S X + X S)
* ``--term projector``: dH = S Y S over the legs with |S_ab(R)|_F >= ``--threshold``

then prints the gauge MAE of the spin-diagonal real part (meV) of H0 and of H0 + dH per structure.
The fitted term is written on every stored edge (as with ``terms_on_all_edges``).  With every
structure of the split fitted (no ``--limit``) it also scores the fitted Hamiltonians with the
project's Evaluator (bands, ghost states) next to H0.  This is an upper bound on what the
term alone can give (the operators are fitted to the answer, not predicted).

    python benchmarks/operator_fit.py --dataset mini/dataset --split val --term projector
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.nextham.encoding import SlotTable  # noqa: E402
from baselines.nextham.model import ModelConfig, NextHAM, model_graph  # noqa: E402
from materials_ham import Evaluator  # noqa: E402
from materials_ham.gauge import gauge_errors  # noqa: E402
from materials_ham.store import open_store  # noqa: E402


def fit_term(sample, table, term: str, threshold: float = 1e-2, iterations: int = 300) -> np.ndarray:
    """H0 + dH with the least-squares operators of ``term``, on the sample's full flat array (eV)."""
    cfg = replace(ModelConfig(), cutoff=0.0, onsite_operator=term == "operator", projector_operator=term == "projector",
                  projector_threshold=threshold, terms_on_all_edges=True)
    g = model_graph(sample, "fit", table, cfg, dtype=torch.float64, predict=True)
    onsite = torch.zeros(len(g.h0), dtype=torch.bool)
    n = sample.orbitals_per_atom
    for a in range(sample.n_atoms):
        onsite[int(g.onsite_start[a]):int(g.onsite_start[a]) + 4 * int(n[a]) ** 2] = True
    x = torch.zeros(int(onsite.sum()), dtype=torch.complex128, requires_grad=True)
    mu = torch.zeros((), dtype=torch.float64, requires_grad=True)
    apply = NextHAM._projector_term if term == "projector" else NextHAM._operator_term
    target = g.h - g.h0
    s = g.s_spinor.to(torch.float64)

    def operators():
        full = torch.zeros(len(g.h0), dtype=torch.complex128).masked_scatter(onsite, x)
        return 0.5 * (full + full[g.herm.long()].conj())     # Hermitian, as in the model

    def dh():
        return apply(g, operators())

    opt = torch.optim.LBFGS([x, mu], max_iter=iterations, history_size=30, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((dh() + mu * s - target).abs() ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = sample.H0.copy()
    with torch.no_grad():
        out[g.scored_take] += dh().numpy()
        out[g.far_take] += apply(g, operators(), far=True).numpy()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--term", choices=("operator", "projector"), default="operator")
    ap.add_argument("--threshold", type=float, default=1e-2, help="projector legs: |S_ab(R)|_F at least this")
    ap.add_argument("--iterations", type=int, default=300, help="L-BFGS iterations per structure")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    store = open_store(args.dataset)
    table = SlotTable.from_shells({z: b.ls for z, b in store.basis.items()})
    ids = store.index.id[store.index.split == args.split].tolist()
    fitted_ids = ids[: args.limit or None]
    rows, fitted = [], {}
    t0 = time.perf_counter()
    print(f"term {args.term}" + (f", threshold {args.threshold:g}" if args.term == "projector" else ""))
    print(f"{'structure':32s} {'H0':>8s} {'fit':>8s}  (gauge MAE, spin-diagonal real, meV)")
    for sid in fitted_ids:
        s = store.by_id(sid)
        fitted[sid] = fit_term(s, table, args.term, args.threshold, args.iterations)
        rows.append((gauge_errors(s, s.H0)["spin_diag_real"], gauge_errors(s, fitted[sid])["spin_diag_real"]))
        print(f"{sid:32s} {rows[-1][0]:8.3f} {rows[-1][1]:8.3f}", flush=True)
    r = np.array(rows)
    print(f"mean over {len(r)} structures: H0 {r[:, 0].mean():.3f} meV, fitted {args.term} term "
          f"{r[:, 1].mean():.3f} meV (ratio {r[:, 0].mean() / r[:, 1].mean():.2f}); {time.perf_counter() - t0:.0f} s")
    if len(fitted) < len(ids):
        return
    ev = Evaluator(store, split=args.split, workers=1)
    for name, pred in (("H0", {sid: store.by_id(sid, matrices=("H0",)).H0 for sid in ids}), ("fitted", fitted)):
        h = ev.eval(pred)["headline"]
        print(f"{name:7s} " + ", ".join(f"{k} {v:.4g}" for k, v in h.items() if isinstance(v, float)))


if __name__ == "__main__":
    main()
