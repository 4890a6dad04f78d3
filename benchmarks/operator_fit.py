"""How much of the SCF correction H - H0 the NextHAM on-site-operator form can hold.

For each structure of a split, fits one Hermitian spinor operator X_i per atom so that
dH = 1/2 (S X + X S) (baselines/nextham/model.py, the same code the model uses) matches H - H0
on the scored edges (least squares, L-BFGS), then prints the gauge MAE of the spin-diagonal real
part (meV) of H0 and of H0 + dH.  This is an upper bound on what the term alone can give (X is
fitted to the answer, not predicted).

    python benchmarks/operator_fit.py --dataset mini/dataset --split val [--limit N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.nextham.encoding import SlotTable  # noqa: E402
from baselines.nextham.graph import build_graph  # noqa: E402
from baselines.nextham.model import NextHAM  # noqa: E402
from materials_ham.gauge import gauge_errors  # noqa: E402
from materials_ham.store import open_store  # noqa: E402


def fit_operator(sample, table) -> np.ndarray:
    """H0 + 1/2 (S X + X S) with the least-squares X, on the sample's full flat array (eV)."""
    g = build_graph(sample, "fit", table, cutoff=0.0, input_scale=1.0, target_scale=1.0, dtype=torch.float64)
    onsite = torch.zeros(len(g.h0), dtype=torch.bool)
    n = sample.orbitals_per_atom
    for a in range(sample.n_atoms):
        onsite[int(g.onsite_start[a]):int(g.onsite_start[a]) + 4 * int(n[a]) ** 2] = True
    x = torch.zeros(int(onsite.sum()), dtype=torch.complex128, requires_grad=True)
    target = g.h - g.h0

    def term():
        full = torch.zeros(len(g.h0), dtype=torch.complex128).masked_scatter(onsite, x)
        t = NextHAM._operator_term(g, full)
        return 0.5 * (t + t[g.herm.long()].conj())          # the model's Hermitian symmetrisation

    opt = torch.optim.LBFGS([x], max_iter=300, history_size=30, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((term() - target).abs() ** 2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    out = sample.H0.copy()
    with torch.no_grad():
        out[g.scored_take] += term().numpy()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    store = open_store(args.dataset)
    table = SlotTable.from_shells({z: b.ls for z, b in store.basis.items()})
    ids = store.index.id[store.index.split == args.split].tolist()[: args.limit or None]
    rows = []
    t0 = time.perf_counter()
    print(f"{'structure':32s} {'H0':>8s} {'fit':>8s}  (gauge MAE, spin-diagonal real, meV)")
    for sid in ids:
        s = store.by_id(sid)
        h0 = gauge_errors(s, s.H0)["spin_diag_real"]
        fit = gauge_errors(s, fit_operator(s, table))["spin_diag_real"]
        rows.append((h0, fit))
        print(f"{sid:32s} {h0:8.3f} {fit:8.3f}", flush=True)
    r = np.array(rows)
    print(f"mean over {len(r)} structures: H0 {r[:, 0].mean():.3f} meV, fitted operator term "
          f"{r[:, 1].mean():.3f} meV (ratio {r[:, 0].mean() / r[:, 1].mean():.2f}); {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
