"""The gauge convention of matrix metrics (CONVENTIONS.md, "Gauge"): its one home in code.

H and H + mu S have the same eigenvectors, so a prediction P of a target T is compared
after removing the best constant shift: with D = P - T over the scored entries,
mu* = Re<D, S x I2> / <S x I2, S x I2> (one mu per structure) and the error is
D - mu* S x I2 (only spin-diagonal blocks change).

Everything here is vectorised over the flat spinor array (``Sample.H`` layout: blocks in
edge order, each block (2 n_i, 2 n_j) spin-major and row-major).  :class:`SpinorLayout`
cuts the edges into runs of consecutive edges with one block shape (with edges sorted by
(i, j, R), about one run per atom pair), so that per-edge, per-spin-block sums are
reshapes and sums, with no Python loop over edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conventions import EV_TO_MEV, HEADLINE_EDGE_CUTOFF
from .sample import Sample

#: Names of the spin blocks, in the order of the last axis of :meth:`SpinorLayout.spin_sums`.
SPIN_BLOCKS = ("uu", "ud", "du", "dd")


@dataclass(frozen=True)
class SpinorLayout:
    """The flat spinor layout of a sample as runs of consecutive edges with one block shape.

    ``runs``: tuples (first edge, stop edge, n_i, n_j, first spinor entry, first S entry);
    ``sizes`` (E,) spinless entries n_i n_j per edge; ``n_entries`` = len(Sample.H).
    """

    runs: tuple
    sizes: np.ndarray
    n_entries: int

    @classmethod
    def from_sample(cls, sample: Sample) -> "SpinorLayout":
        n = sample.orbitals_per_atom
        ni, nj = n[sample.edge_index[:, 0]], n[sample.edge_index[:, 1]]
        E = len(ni)
        cut = np.nonzero((np.diff(ni) != 0) | (np.diff(nj) != 0))[0] + 1 if E else np.zeros(0, int)
        starts = np.concatenate([[0], cut]).astype(int) if E else np.zeros(0, int)
        stops = np.append(starts[1:], E).astype(int)
        bo = sample.block_offsets
        runs = tuple((int(a), int(b), int(ni[a]), int(nj[a]), int(4 * bo[a]), int(bo[a])) for a, b in zip(starts, stops))
        return cls(runs=runs, sizes=sample.block_sizes.copy(), n_entries=4 * int(bo[-1]))

    @property
    def n_edges(self) -> int:
        return len(self.sizes)

    def _view(self, x: np.ndarray, run) -> np.ndarray:
        a, b, ni, nj, start, _ = run
        return x[start:start + 4 * (b - a) * ni * nj].reshape(b - a, 2, ni, 2, nj)

    def spin_sums(self, x: np.ndarray) -> np.ndarray:
        """(E, 4) sums of the flat spinor array ``x`` per edge and spin block (uu, ud, du, dd)."""
        out = np.empty((self.n_edges, 4), np.result_type(x.dtype, np.float64))
        for run in self.runs:
            out[run[0]:run[1]] = self._view(x, run).sum(axis=4).sum(axis=2).reshape(-1, 4)
        return out

    def spinor_overlap(self, S: np.ndarray) -> np.ndarray:
        """(n_entries,) float64: the entries of S x I2 in the flat spinor layout (0 off the spin diagonal)."""
        out = np.zeros(self.n_entries)
        for run in self.runs:
            a, b, ni, nj, _, s0 = run
            blk = S[s0:s0 + (b - a) * ni * nj].reshape(b - a, ni, nj)
            v = self._view(out, run)
            v[:, 0, :, 0, :] = blk
            v[:, 1, :, 1, :] = blk
        return out

    def overlap_norms(self, S: np.ndarray) -> np.ndarray:
        """(E,) sum of (S x I2)^2 over each edge's spinor entries, from the spinless flat ``S``.

        Bit for bit ``spin_sums(s * s).sum(1)`` of the spinor overlap s = S x I2, at a quarter of
        the work: per block, the row sums of S^2 (contiguous, as :meth:`spin_sums` sums a row), then
        the rows added in sequence (as its reduction over rows does); the uu and dd blocks give the
        same sum and the ud, du blocks +0, so the total is that sum doubled (exactly).
        """
        out = np.empty(self.n_edges)
        for a, b, ni, nj, _, s0 in self.runs:
            blk = S[s0:s0 + (b - a) * ni * nj].reshape(b - a, ni, nj)
            rows = (blk * blk).sum(axis=2)
            acc = rows[:, 0].copy()
            for r in range(1, ni):
                acc += rows[:, r]
            out[a:b] = acc + acc
        return out

    def overlap_support(self, S: np.ndarray) -> np.ndarray:
        """(E,) bool: edges where S x I2 has a non-zero entry, decided as ``spin_sums(|s|).sum(1) > 0``
        decides it (a sum of absolute values is > 0 in any order exactly when some entry is
        non-zero and none is NaN), from the spinless flat ``S``."""
        out = np.zeros(self.n_edges, bool)
        for a, b, ni, nj, _, s0 in self.runs:
            out[a:b] = np.abs(S[s0:s0 + (b - a) * ni * nj]).reshape(b - a, ni * nj).sum(axis=1) > 0
        return out

    def _groups(self, edges: np.ndarray) -> list[tuple[int, int, int]]:
        """(run, i0, i1): ``edges[i0:i1]`` (ascending) are the edges that lie in run number ``run``."""
        starts = np.fromiter((r[0] for r in self.runs), np.int64, len(self.runs))
        which = np.searchsorted(starts, edges, side="right") - 1
        cut = np.concatenate([[0], np.nonzero(np.diff(which))[0] + 1, [len(edges)]]).astype(int)
        return [(int(which[i0]), int(i0), int(i1)) for i0, i1 in zip(cut[:-1], cut[1:]) if i1 > i0]

    def overlap_blocks(self, S: np.ndarray, edges: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (len(edges), n_i, n_j) with the blocks of the spinless flat ``S`` on ``edges``
        (ascending, all of one block shape)."""
        edges = np.asarray(edges, np.int64)
        for q, i0, i1 in self._groups(edges):
            a, b, ni, nj, _, s0 = self.runs[q]
            out[i0:i1] = S[s0:s0 + (b - a) * ni * nj].reshape(b - a, ni, nj)[edges[i0:i1] - a]
        return out

    def spin_labels(self) -> np.ndarray:
        """(n_entries,) int8 spin block of every entry: 0 uu, 1 ud, 2 du, 3 dd."""
        out = np.empty(self.n_entries, np.int8)
        for run in self.runs:
            self._view(out, run)[...] = (2 * np.arange(2)[:, None, None, None]
                                         + np.arange(2)[None, None, :, None])
        return out

    def entry_mask(self, edge_mask: np.ndarray) -> np.ndarray:
        """(n_entries,) bool: entries of the edges where ``edge_mask`` is True."""
        return np.repeat(np.asarray(edge_mask, bool), 4 * self.sizes)


def spinor_overlap(sample: Sample, layout: SpinorLayout | None = None) -> np.ndarray:
    """(n_h,) float64: the entries of S x I2 in the flat spinor layout of ``sample``."""
    return (layout or SpinorLayout.from_sample(sample)).spinor_overlap(sample.S)


def scored_edges(sample: Sample, cutoff: float | None = HEADLINE_EDGE_CUTOFF) -> np.ndarray:
    """Indices of edges with |r_ij| < cutoff (Angstrom); all edges when cutoff is None."""
    if cutoff is None:
        return np.arange(sample.n_edges)
    return np.nonzero(sample.edge_lengths() < cutoff)[0]


def _mu(num: float, den: float) -> float:
    """mu* = Re<D, S x I2> / <S x I2, S x I2>; 0 where S vanishes."""
    return float(num) / float(den) if den > 0 else 0.0


def gauge_mu_from_edge_sums(num: np.ndarray, den: np.ndarray, edge_mask: np.ndarray | None = None) -> float:
    """mu* (eV) from per-edge partial sums: ``num`` (E,) = sum Re(D) (S x I2), ``den`` (E,) =
    sum (S x I2)^2 over each edge's entries, over the edges where ``edge_mask`` is True."""
    if edge_mask is not None:
        num, den = num[edge_mask], den[edge_mask]
    return _mu(num.sum(), den.sum())


def _shift(layout: SpinorLayout, s_spinor: np.ndarray, diff: np.ndarray, on: np.ndarray) -> float:
    """mu* (eV) over the edges where ``on`` is True, from the flat spinor D and S x I2."""
    return gauge_mu_from_edge_sums(layout.spin_sums(diff.real * s_spinor).sum(1),
                                   layout.spin_sums(s_spinor * s_spinor).sum(1), on)


def gauge_shift(sample: Sample, diff: np.ndarray, edges: np.ndarray) -> float:
    """mu* (eV) minimising |D - mu S x I2|^2 over ``edges``; ``diff`` is a flat spinor D (eV)."""
    layout = SpinorLayout.from_sample(sample)
    on = np.zeros(sample.n_edges, bool)
    on[np.asarray(edges, np.int64)] = True
    return _shift(layout, layout.spinor_overlap(sample.S), np.asarray(diff), on)


def gauge_errors(sample: Sample, predicted: np.ndarray, target: np.ndarray | None = None,
                 cutoff: float | None = HEADLINE_EDGE_CUTOFF) -> dict:
    """Gauge-standardised errors of a flat spinor prediction against ``target`` (default: sample.H).

    Returns mu (eV) and MAEs in meV over the entries of edges shorter than ``cutoff``
    (Angstrom; None: all stored edges): ``spin_diag_real`` (the NextHAM paper's headline:
    real part of uu and dd), and per spin block real/imaginary parts (``uu_real``, ...).
    """
    target = sample.H if target is None else target
    layout = SpinorLayout.from_sample(sample)
    s = layout.spinor_overlap(sample.S)
    on = np.zeros(sample.n_edges, bool)
    on[scored_edges(sample, cutoff)] = True
    diff = np.asarray(predicted) - np.asarray(target)
    mu = _shift(layout, s, diff, on)
    sums_re = layout.spin_sums(np.abs(diff.real - mu * s))[on].sum(axis=0)
    sums_im = layout.spin_sums(np.abs(diff.imag))[on].sum(axis=0)
    count = int(layout.sizes[on].sum())
    out = {}
    for k, blk in enumerate(SPIN_BLOCKS):
        out[f"{blk}_real"] = EV_TO_MEV * float(sums_re[k]) / max(count, 1)
        out[f"{blk}_imag"] = EV_TO_MEV * float(sums_im[k]) / max(count, 1)
    out["spin_diag_real"] = 0.5 * (out["uu_real"] + out["dd_real"])
    out["mu_ev"] = mu
    out["n_entries_per_spin_block"] = count
    return out
