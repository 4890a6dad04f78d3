"""A real SOC H0 baseline on the NextHAM authors' engine: GaAs from ABACUS (DeePTB's h5 files).

Imports ``abacus_GaAs_soc_deeptb`` (converged H, zeroth-step H0 and S of a 2-atom zinc-blende
GaAs cell, ABACUS LTS 3.10.1, nspin 4 + lspinorb, 2s2p1d/2s2p2d orbitals, complex64 h5) with
:func:`materials_ham.formats.import_deeptb`, then prints

* band reproduction: eigenvalues of the imported H(k), S(k) against ABACUS's own (``eig_occ.txt``:
  the 4x4x4 SCF mesh and the 122-point NSCF path, lowest 35 bands), max and mean |diff| in meV;
* the H0-vs-H matrix scores with the project's scorer (``materials_ham.evaluate.metrics``, the same
  per-structure code the Evaluator runs): headline gauge-standardised MAE (edges < 8 A), distance
  bins, on-site/off-site, all stored edges; spin-diagonal real, real, imaginary parts, in meV;
* the same H0 baseline's band errors (H0 eigenvalues vs H eigenvalues on the SCF mesh, raw and
  aligned with the gauge mu*).

    python benchmarks/abacus_gaas_h0.py [CASE_FOLDER] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "external" / "abacus_GaAs_soc_deeptb"


def gaas_report(folder: Path) -> dict:
    from materials_ham.evaluate.metrics import GROUPINGS, MatrixReference, aggregate_matrix, edge_sums, group_sums
    from materials_ham.formats import import_deeptb
    from materials_ham.formats.common import engine_band_errors
    from materials_ham.kspace import band_energies

    s = import_deeptb(folder)
    out = {"structure": s.crystal.formula, "n_edges": s.n_edges, "nao": s.nao,
           "band_reproduction_mev": engine_band_errors(s)}
    ref = MatrixReference.from_sample(s)
    sums = edge_sums(ref, s.H0)
    table = aggregate_matrix([{g.name: group_sums(ref, sums, g) for g in GROUPINGS}])
    out["h0_vs_h"] = {g: {k: {q: v["mean"] for q, v in e.items() if isinstance(v, dict)}
                          for k, e in table[g].items()} for g in ("overall", "site", "distance", "all_stored_edges")}
    out["h0_vs_h"]["gauge_mu_ev"] = {k: float(v) for k, v in sums.mu.items()}
    k = np.array(s.info["engine_bands"][0]["kpts"])
    e_h, e_h0 = band_energies(s, k), band_energies(s, k, name="H0")
    nb = np.array(s.info["engine_bands"][0]["eigenvalues_ev"]).shape[1]
    d = (e_h0 - e_h)[:, :nb]
    out["h0_band_error_mev"] = {"raw_mae": float(np.abs(d).mean() * 1e3),
                                "aligned_mae": float(np.abs(d - sums.mu["scored"]).mean() * 1e3),
                                "n_kpoints": len(k), "n_bands": nb}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.case.is_dir():
        print(f"error: {args.case}: no such folder (the case lives in ../shared/external)", file=sys.stderr)
        return 1
    rep = gaas_report(args.case)
    print(json.dumps(rep, indent=2))
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
