"""The gauge convention of matrix metrics (CONVENTIONS.md, "Gauge").

H and H + mu S have the same eigenvectors, so a prediction P of a target T is compared
after removing the best constant shift: with D = P - T over the scored entries,
mu* = Re<D, S x I2> / <S x I2, S x I2> (one mu per structure) and the error is
D - mu* S x I2 (only spin-diagonal blocks change).
"""
from __future__ import annotations

import numpy as np

from .conventions import EV_TO_MEV, HEADLINE_EDGE_CUTOFF, spin_view
from .sample import Sample


def _spinor_view(sample: Sample, flat: np.ndarray, edges: np.ndarray):
    """Yield (edge, (2, n_i, 2, n_j) spinor block, (n_i, n_j) S block) for the given edges."""
    n = sample.orbitals_per_atom
    for e in edges:
        i, j = sample.edge_index[e]
        a, b = sample.block_offsets[e], sample.block_offsets[e + 1]
        yield e, spin_view(flat[4 * a:4 * b], n[i], n[j]), sample.S[a:b].reshape(n[i], n[j])


def scored_edges(sample: Sample, cutoff: float | None = HEADLINE_EDGE_CUTOFF) -> np.ndarray:
    """Indices of edges with |r_ij| < cutoff (Angstrom); all edges when cutoff is None."""
    if cutoff is None:
        return np.arange(sample.n_edges)
    return np.nonzero(sample.edge_lengths() < cutoff)[0]


def gauge_shift(sample: Sample, diff: np.ndarray, edges: np.ndarray) -> float:
    """mu* (eV) minimising |D - mu S x I2|^2 over ``edges``; ``diff`` is a flat spinor D (eV)."""
    num = den = 0.0
    for _, d, s in _spinor_view(sample, diff, edges):
        num += float(np.sum((d[0, :, 0, :] + d[1, :, 1, :]).real * s))
        den += 2.0 * float(np.sum(s * s))
    return num / den if den > 0 else 0.0


def gauge_errors(sample: Sample, predicted: np.ndarray, target: np.ndarray | None = None,
                 cutoff: float | None = HEADLINE_EDGE_CUTOFF) -> dict:
    """Gauge-standardised errors of a flat spinor prediction against ``target`` (default: sample.H).

    Returns mu (eV) and MAEs in meV: ``spin_diag_real`` (the NextHAM paper's headline:
    real part of uu and dd), and per spin block real/imaginary parts.
    """
    target = sample.H if target is None else target
    edges = scored_edges(sample, cutoff)
    diff = np.asarray(predicted) - np.asarray(target)
    mu = gauge_shift(sample, diff, edges)
    sums = {f"{blk}_{part}": 0.0 for blk in ("uu", "ud", "du", "dd") for part in ("real", "imag")}
    count = 0
    for _, d, s in _spinor_view(sample, diff, edges):
        d = d.copy()
        d[0, :, 0, :] -= mu * s
        d[1, :, 1, :] -= mu * s
        for s1, n1 in enumerate("ud"):
            for s2, n2 in enumerate("ud"):
                sums[f"{n1}{n2}_real"] += float(np.abs(d[s1, :, s2, :].real).sum())
                sums[f"{n1}{n2}_imag"] += float(np.abs(d[s1, :, s2, :].imag).sum())
        count += s.size
    out = {k: EV_TO_MEV * v / max(count, 1) for k, v in sums.items()}
    out["spin_diag_real"] = 0.5 * (out["uu_real"] + out["dd_real"])
    out["mu_ev"] = mu
    out["n_entries_per_spin_block"] = count
    return out
