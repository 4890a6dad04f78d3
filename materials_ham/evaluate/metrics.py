"""The metric table: matrix metrics as data (groupings x quantities), band metrics as named reductions.

Matrix metrics (meV) are gauge-standardised MAEs (CONVENTIONS.md, "Gauge"): per structure,
D = P - T over the flat spinor entries, mu* = Re<D, S x I2> / <S x I2, S x I2> over the
**scored entries** (every entry of the blocks of edges with |r_ij| < 8 Angstrom), and the
error of an entry is e = D - mu* (S x I2).  Since S is real, mu* only moves the real parts of
uu and dd entries; imaginary parts are gauge independent.

Per structure, the scorer reduces |Re e| and |Im e| once per (edge, spin block) with one
``bincount`` (:func:`edge_sums`); every breakdown is then a sum over edges by an edge label
(:data:`GROUPINGS`), so no metric loops over edges or entries in Python.  A *quantity*
(:data:`QUANTITIES`) picks spin blocks and a part: e.g. ``spin_diag_real`` = mean |Re e| over
the uu and dd entries (the NextHAM paper's headline), ``real`` = over all four spin blocks.

Averages over structures, for every (grouping, group, quantity):
* ``mean``: mean over structures (that have entries in the group) of the structure's entry
  mean -- each structure weighs the same (the headline);
* ``pooled``: total over all entries of all structures divided by their number.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from ase.data import chemical_symbols

from ..conventions import DISTANCE_BINS, EV_TO_MEV, HEADLINE_EDGE_CUTOFF
from ..errors import MaterialsHamError
from ..gauge import SPIN_BLOCKS, SpinorLayout, gauge_mu_from_edge_sums
from ..sample import Sample


# ------------------------------------------------------------------------- per structure
@dataclass
class MatrixReference:
    """Reference-side data of one structure for the matrix metrics, computed once.

    Entry level (n_h = len(Sample.H)): ``target`` complex (eV); ``overlap`` the spinless flat S
    (len(Sample.S)); ``s_spinor`` the S x I2 entries (n_h, made from ``overlap`` when first used:
    the planned path of :func:`edge_sums` never needs it).  Edge level (E): ``den`` sum of
    (S x I2)^2 per edge, ``length`` (Angstrom), ``onsite``, ``scored`` (|r| < cutoff),
    ``z_i``/``z_j`` atomic numbers, ``count`` = n_i n_j entries per spin block.  ``layout``
    reduces entry arrays to (edge, spin block) sums.
    """

    layout: SpinorLayout
    target: np.ndarray
    overlap: np.ndarray
    den: np.ndarray
    length: np.ndarray
    onsite: np.ndarray
    scored: np.ndarray
    z_i: np.ndarray
    z_j: np.ndarray
    count: np.ndarray
    plan: "SumPlan | None" = None

    @classmethod
    def from_sample(cls, sample: Sample, cutoff: float = HEADLINE_EDGE_CUTOFF, *,
                    edge_layout=None, mirrored: bool | None = None) -> "MatrixReference":
        """``edge_layout``: the sample's :class:`~materials_ham.evaluate.predictions.EdgeLayout`
        if the caller has one (its half/full plan is reused).  ``mirrored=True``: the caller
        guarantees that H and S are exactly conjugate-symmetric (X_ji(-R) = X_ij(R)^dagger bit for
        bit), as every sample rebuilt from its canonical half is (the store's); the entry-by-entry
        check of :class:`SumPlan` is then skipped.  None: checked; False: every edge is reduced."""
        layout = SpinorLayout.from_sample(sample)
        length = sample.edge_lengths()
        z = sample.crystal.numbers
        ref = cls(layout=layout, target=sample.H, overlap=sample.S, den=layout.overlap_norms(sample.S),
                  length=length, onsite=sample.is_onsite, scored=length < cutoff,
                  z_i=z[sample.edge_index[:, 0]], z_j=z[sample.edge_index[:, 1]], count=sample.block_sizes.copy())
        ref.plan = SumPlan.build(ref, sample, edge_layout, mirrored=mirrored)
        return ref

    @cached_property
    def s_spinor(self) -> np.ndarray:
        """(n_h,) float64 the entries of S x I2 in the flat spinor layout (0 off the spin diagonal)."""
        return self.layout.spinor_overlap(self.overlap)

    @property
    def n_edges(self) -> int:
        return len(self.length)

    def nbytes(self) -> int:
        spinor = self.__dict__.get("s_spinor")                   # counted once made
        return int(self.target.nbytes + self.overlap.nbytes + (spinor.nbytes if spinor is not None else 0)
                   + (self.plan.nbytes() if self.plan is not None else 0))


@dataclass
class SumPlan:
    """Reference-side index data that makes :func:`edge_sums` cheap (built once per structure).

    * ``mirror``: True when the reference H and S x I2 are exactly conjugate-symmetric
      (X_ji(-R) = X_ij(R)^dagger bit for bit); then, for a prediction with the same symmetry (what
      the scorer always builds from the stored half), the |Re e|, |Im e| sums of a non-canonical
      edge are those of its partner with the ud and du blocks swapped, so only the canonical edges
      are reduced.  ``runs``: the layout runs reduced (canonical edges only when ``mirror``);
      ``mirror_edges`` (E_m,) the non-canonical edges and ``partner`` (E_m,) their reverse edges.
    * The gauge term mu* (S x I2) is non-zero only on the uu and dd entries of edges where S does
      not vanish ("support" edges).  Their entries are gathered once per prediction:
      ``support_pos`` (n_s,) flat positions, ``support_s`` / ``support_target`` (n_s,) S and Re T
      (eV) there.  ``chunks``: tuples (edges (c,), n_i, n_j, first support entry, reduced) of
      support edges of one block shape, each edge's uu rows then its dd rows (row-major); the
      chunks with ``reduced`` (canonical edges when ``mirror``) come first, up to support entry
      ``n_reduced``.  Every other entry has S = 0, so its |Re e| = |Re D| in both gauges.
      Re<D, S x I2> per edge is summed from all support edges in the order of the plain
      per-entry pass (row sums, then rows in sequence), so mu* is bit for bit the same.
    """

    runs: tuple
    mirror: bool
    mirror_edges: np.ndarray
    partner: np.ndarray
    support_pos: np.ndarray
    support_s: np.ndarray
    support_target: np.ndarray
    chunks: tuple
    n_reduced: int
    max_run: int

    @classmethod
    def build(cls, ref: "MatrixReference", sample: Sample, edge_layout=None, *,
              mirrored: bool | None = None) -> "SumPlan":
        """The plan of ``ref`` (from ``sample``); ``mirrored``: see :meth:`MatrixReference.from_sample`."""
        from .predictions import EdgeLayout

        lay = ref.layout
        E = ref.n_edges
        rev = np.asarray(sample.edge_reverse, np.int64)
        canon = np.arange(E) <= rev
        involution = bool(E) and np.array_equal(rev[rev], np.arange(E))
        mirror = bool(involution and mirrored)
        if involution and mirrored is None:
            el = edge_layout if edge_layout is not None else EdgeLayout.from_sample(sample)
            try:
                mirror = el.plan.is_mirrored(ref.target) and el.plan.is_mirrored(ref.s_spinor)
            except MaterialsHamError:
                mirror = False
        keep = canon if mirror else np.ones(E, bool)
        runs = []
        for a, b, ni, nj, start, s0 in lay.runs:                 # cut the runs at canonical / non-canonical changes
            k = keep[a:b]
            cuts = np.nonzero(np.diff(k.astype(np.int8)))[0] + 1
            for u, v in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [b - a]])):
                if k[u]:
                    runs.append((a + int(u), a + int(v), ni, nj, start + 4 * int(u) * ni * nj, s0 + int(u) * ni * nj))
        mirror_edges = np.nonzero(~keep)[0]
        has_s = lay.overlap_support(ref.overlap)
        n = sample.orbitals_per_atom
        ni_e = n[sample.edge_index[:, 0]].astype(np.int64)
        nj_e = n[sample.edge_index[:, 1]].astype(np.int64)
        idx_type = np.int32 if lay.n_entries < np.iinfo(np.int32).max else np.int64
        start_e = 4 * np.asarray(sample.block_offsets, idx_type)
        chunks, pieces, at, n_reduced = [], [], 0, 0
        for reduced in (True, False):
            sel_part = np.nonzero(has_s & (keep == reduced))[0]
            shapes = np.unique(np.stack([ni_e[sel_part], nj_e[sel_part]], 1), axis=0) if len(sel_part) else []
            for a, b in shapes:
                a, b = int(a), int(b)
                edges = sel_part[(ni_e[sel_part] == a) & (nj_e[sel_part] == b)]
                r, c = np.divmod(np.arange(a * b), b)
                local = np.concatenate([r * 2 * b + c, (r + a) * 2 * b + b + c]).astype(idx_type)  # uu, then dd rows
                pieces.append((start_e[edges][:, None] + local[None, :]).reshape(-1))
                chunks.append((edges, a, b, at, reduced))
                at += len(edges) * 2 * a * b
            if reduced:
                n_reduced = at
        pos = np.concatenate(pieces) if pieces else np.zeros(0, idx_type)
        # S x I2 there, copied block by block from S (the same block in uu and dd)
        support_s = np.empty(at)
        for edges, a, b, at0, _ in chunks:
            s_view = support_s[at0:at0 + len(edges) * 2 * a * b].reshape(len(edges), 2, a, b)
            lay.overlap_blocks(ref.overlap, edges, s_view[:, 0])
            s_view[:, 1] = s_view[:, 0]
        return cls(runs=tuple(runs), mirror=mirror, mirror_edges=mirror_edges, partner=rev[mirror_edges],
                   support_pos=pos, support_s=support_s, support_target=ref.target.real[pos],
                   chunks=tuple(chunks), n_reduced=n_reduced,
                   max_run=max((4 * (b - a) * ni_ * nj_ for a, b, ni_, nj_, _, _ in runs), default=0))

    def nbytes(self) -> int:
        return int(self.support_pos.nbytes + self.support_s.nbytes + self.support_target.nbytes)


@dataclass
class EdgeSums:
    """Per-edge error sums of one structure (eV): ``re[gauge]`` and ``im`` (E, 4) sums of |Re e|,
    |Im e| per spin block; ``mu[gauge]`` (eV).  Gauges: 'scored' (mu* over edges < cutoff, the
    headline) and 'all' (mu* over all stored edges)."""

    re: dict[str, np.ndarray]
    im: np.ndarray
    mu: dict[str, float]


#: Entries per piece of a layout run reduced at once by :func:`edge_sums` (bounds its scratch: 16 MiB).
_SUM_PIECE = 1 << 21


def _spin_sums_run(x: np.ndarray, m: int, ni: int, nj: int) -> np.ndarray:
    """(m, 4) per-edge, per-spin-block sums of ``x``: m consecutive (2 ni, 2 nj) spinor blocks, flat."""
    return (x.reshape(-1, nj) @ np.ones(nj)).reshape(m, 2, ni, 2).sum(axis=2).reshape(m, 4)


def edge_sums(ref: MatrixReference, predicted: np.ndarray, *, hermitian: bool = False) -> EdgeSums:
    """Gauge shifts and per-(edge, spin block) absolute-error sums of a full flat prediction.

    ``predicted``: (n_h,) complex, eV, the layout of ``Sample.H``.  ``hermitian=True`` promises
    that it is exactly conjugate-symmetric (block e == block reverse[e]^dagger bit for bit, as
    :func:`~materials_ham.evaluate.predictions.check_prediction` and the predictions reader return
    it): only the canonical half is then reduced (see :class:`SumPlan`).  The result is the same
    either way, up to the order of floating-point sums (without the promise, or without a plan,
    every entry is reduced by :func:`_edge_sums_plain`).
    """
    plan = ref.plan
    if plan is None or (plan.mirror and not hermitian):
        return _edge_sums_plain(ref, predicted)
    predicted = np.asarray(predicted)
    E = ref.n_edges
    base = np.zeros((E, 4))                                      # sums of |Re D|
    im = np.zeros((E, 4))                                        # sums of |Im D|
    buf = np.empty(min(plan.max_run, _SUM_PIECE) if plan.max_run else 0)
    for a, b, ni, nj, start, _ in plan.runs:
        per = 4 * ni * nj
        step = max(1, _SUM_PIECE // per)
        for u in range(a, b, step):
            v = min(b, u + step)
            lo, hi = start + (u - a) * per, start + (v - a) * per
            x = buf[:hi - lo]
            np.subtract(predicted.real[lo:hi], ref.target.real[lo:hi], out=x)
            np.abs(x, out=x)
            base[u:v] = _spin_sums_run(x, v - u, ni, nj)
            np.subtract(predicted.imag[lo:hi], ref.target.imag[lo:hi], out=x)
            np.abs(x, out=x)
            im[u:v] = _spin_sums_run(x, v - u, ni, nj)
    # the entries where S x I2 is not zero: uu and dd blocks of the support edges
    dr = predicted.real[plan.support_pos] - plan.support_target     # (fancy indexing beats take on a strided view)
    prod = dr * plan.support_s
    num = np.zeros(E)
    for edges, ni, nj, at, _ in plan.chunks:
        rows = prod[at:at + len(edges) * 2 * ni * nj].reshape(len(edges) * 2, ni, nj).sum(axis=2)
        acc = rows[:, 0].copy()
        for r in range(1, ni):                                   # rows in sequence, as the plain pass adds them
            acc += rows[:, r]
        acc = acc.reshape(-1, 2)
        num[edges] = acc[:, 0] + acc[:, 1]
    re, mu = {}, {}
    m = plan.n_reduced
    dev = np.empty(m)
    for gauge, mask in (("scored", ref.scored), ("all", None)):
        mu[gauge] = gauge_mu_from_edge_sums(num, ref.den, mask)
        np.multiply(plan.support_s[:m], mu[gauge], out=dev)
        np.subtract(dr[:m], dev, out=dev)
        np.abs(dev, out=dev)
        r = base.copy()
        for edges, ni, nj, at, reduced in plan.chunks:
            if reduced:
                r[edges[:, None], [0, 3]] = dev[at:at + len(edges) * 2 * ni * nj].reshape(len(edges), 2, ni * nj).sum(2)
        re[gauge] = r
    if plan.mirror:
        swap = [0, 2, 1, 3]                                      # X_ji(-R) = X_ij(R)^dagger: ud <-> du
        for arr in (im, *re.values()):
            arr[plan.mirror_edges] = arr[plan.partner][:, swap]
    return EdgeSums(re=re, im=im, mu=mu)


def _edge_sums_plain(ref: MatrixReference, predicted: np.ndarray) -> EdgeSums:
    """:func:`edge_sums` over every entry (no plan): two real scratch arrays, each pass in place."""
    lay, s = ref.layout, ref.s_spinor
    predicted = np.asarray(predicted)
    dr = np.subtract(predicted.real, ref.target.real)           # Re D
    tmp = np.subtract(predicted.imag, ref.target.imag)          # Im D, then scratch
    np.abs(tmp, out=tmp)
    im = lay.spin_sums(tmp)
    np.multiply(dr, s, out=tmp)
    num = lay.spin_sums(tmp).sum(1)
    re, mu = {}, {}
    for gauge, mask in (("scored", ref.scored), ("all", None)):
        mu[gauge] = gauge_mu_from_edge_sums(num, ref.den, mask)
        np.multiply(s, mu[gauge], out=tmp)
        np.subtract(dr, tmp, out=tmp)
        np.abs(tmp, out=tmp)
        re[gauge] = lay.spin_sums(tmp)
    return EdgeSums(re=re, im=im, mu=mu)


# ------------------------------------------------------------------------------- groupings
@dataclass(frozen=True)
class Grouping:
    """A breakdown of the matrix metric: edge labels -> groups.

    ``labels(ref)`` returns (E, L) int group keys per edge (several columns: an edge counts in
    every group it names; key ``None``/-1: not counted) as a list of key strings per column;
    ``gauge``: which mu* the errors use; ``quantities``: what is reported per group.
    """

    name: str
    doc: str
    labels: Callable[[MatrixReference], list[np.ndarray]]
    quantities: tuple[str, ...]
    gauge: str = "scored"


def _sym(z: int) -> str:
    return chemical_symbols[int(z)]


def _label_all(ref):
    return [np.where(ref.scored, "all", "")]


def _label_all_stored(ref):
    return [np.full(ref.n_edges, "all", dtype=object)]


def _label_site(ref):
    return [np.where(ref.scored, np.where(ref.onsite, "on-site", "off-site"), "")]


DISTANCE_LABELS = tuple(f"[{a:g},{b:g})" if b != DISTANCE_BINS[-1] else f">={a:g}"
                        for a, b in zip(DISTANCE_BINS[:-1], DISTANCE_BINS[1:]))


def _label_distance(ref):
    k = np.clip(np.searchsorted(DISTANCE_BINS, ref.length, side="right") - 1, 0, len(DISTANCE_LABELS) - 1)
    return [np.where(ref.scored, np.array(DISTANCE_LABELS, dtype=object)[k], "")]


def _label_element(ref):
    zi = np.array([_sym(z) for z in ref.z_i], dtype=object)
    zj = np.array([_sym(z) for z in ref.z_j], dtype=object)
    return [np.where(ref.scored, zi, ""), np.where(ref.scored & (ref.z_i != ref.z_j), zj, "")]


def _label_pair(ref):
    lo, hi = np.minimum(ref.z_i, ref.z_j), np.maximum(ref.z_i, ref.z_j)
    keys = np.array([f"{_sym(a)}-{_sym(b)}" for a, b in zip(lo, hi)], dtype=object)
    return [np.where(ref.scored, keys, "")]


#: What a quantity averages: (spin blocks, part).  Spin blocks index :data:`SPIN_BLOCKS`.
QUANTITIES: dict[str, tuple[tuple[int, ...], str]] = {
    **{f"{b}_{p}": ((k,), "re" if p == "real" else "im") for k, b in enumerate(SPIN_BLOCKS) for p in ("real", "imag")},
    "spin_diag_real": ((0, 3), "re"),
    "real": ((0, 1, 2, 3), "re"),
    "imag": ((0, 1, 2, 3), "im"),
}
_SPIN_TABLE = tuple(f"{b}_{p}" for b in SPIN_BLOCKS for p in ("real", "imag"))
_SUMMARY = ("spin_diag_real", "real", "imag")

#: The matrix-metric table.  Edges >= the cutoff are counted only by 'all_stored_edges'.
GROUPINGS: tuple[Grouping, ...] = (
    Grouping("overall", f"every entry of the blocks of edges |r| < {HEADLINE_EDGE_CUTOFF:g} A", _label_all,
             _SUMMARY + _SPIN_TABLE),
    Grouping("site", "on-site blocks (i = j, R = 0) vs off-site blocks", _label_site, _SUMMARY),
    Grouping("distance", "by edge length |r_ij| (Angstrom)", _label_distance, _SUMMARY),
    Grouping("element", "blocks with at least one atom of the element (an A-B block counts for A and B)",
             _label_element, _SUMMARY),
    Grouping("element_pair", "blocks between atoms of the two elements (either order)", _label_pair, _SUMMARY),
    Grouping("all_stored_edges", "every stored block, whatever its length; mu* solved over all of them",
             _label_all_stored, _SUMMARY, gauge="all"),
)


def group_sums(ref: MatrixReference, sums: EdgeSums, grouping: Grouping,
               labels: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """{group key: (9,) array [re sums per spin (4), im sums per spin (4), entries per spin block]}."""
    labels = grouping.labels(ref) if labels is None else labels
    re, im = sums.re[grouping.gauge], sums.im
    out: dict[str, np.ndarray] = {}
    for col in labels:
        keys, inv = np.unique(col.astype(str), return_inverse=True)
        inv = inv.reshape(-1)
        G = len(keys)
        acc = np.zeros((G, 9))
        for s in range(4):
            acc[:, s] = np.bincount(inv, re[:, s], minlength=G)
            acc[:, 4 + s] = np.bincount(inv, im[:, s], minlength=G)
        acc[:, 8] = np.bincount(inv, ref.count, minlength=G)
        for g, key in enumerate(keys):
            if key:
                out[str(key)] = out.get(str(key), 0) + acc[g]
    return out


def quantity(acc: np.ndarray, name: str) -> float:
    """The MAE (meV) of quantity ``name`` from a (9,) or (..., 9) sums array; NaN if empty."""
    spins, part = QUANTITIES[name]
    base = 0 if part == "re" else 4
    total = sum(acc[..., base + s] for s in spins)
    n = len(spins) * acc[..., 8]
    with np.errstate(invalid="ignore", divide="ignore"):
        return EV_TO_MEV * total / n


def aggregate_matrix(per_structure: list[dict[str, dict[str, np.ndarray]]]) -> dict:
    """Combine per-structure group sums into ``{grouping: {group: {quantity: {mean, pooled}, n_structures,
    n_entries}}}`` (see the module docstring for mean vs pooled)."""
    out: dict = {}
    for grouping in GROUPINGS:
        keys = sorted({k for s in per_structure for k in s[grouping.name]}, key=_group_order(grouping.name))
        table = {}
        for key in keys:
            accs = np.array([s[grouping.name][key] for s in per_structure if key in s[grouping.name]])
            accs = accs[accs[:, 8] > 0]
            entry = {}
            for q in grouping.quantities:
                per = quantity(accs, q)
                entry[q] = {"mean": float(np.mean(per)) if len(per) else None,
                            "pooled": float(quantity(accs.sum(axis=0), q)) if len(accs) else None}
            entry["n_structures"] = int(len(accs))
            entry["n_entries"] = int(4 * accs[:, 8].sum())
            table[key] = entry
        out[grouping.name] = table
    return out


def _group_order(name: str):
    if name == "distance":
        return lambda k: DISTANCE_LABELS.index(k) if k in DISTANCE_LABELS else 99
    if name == "site":
        return lambda k: {"on-site": 0, "off-site": 1}.get(k, 2)
    if name == "element":
        return lambda k: chemical_symbols.index(k) if k in chemical_symbols else 999
    if name == "element_pair":
        return lambda k: tuple(chemical_symbols.index(x) if x in chemical_symbols else 999 for x in k.split("-"))
    return lambda k: k


# ----------------------------------------------------------------------------- band table
@dataclass(frozen=True)
class BandMetric:
    """A band metric: ``reduce(per-structure band scores) -> (value per structure or None)``;
    averaged over the structures where it is defined (meV unless ``unit`` says otherwise)."""

    name: str
    doc: str
    per_structure: Callable[[dict], float | None]
    unit: str = "meV"


def _window_metric(kset: str, window: str, aligned: bool):
    def f(b: dict):
        s_raw, s_al, n = b["windows"][kset][window]
        return EV_TO_MEV * (s_al if aligned else s_raw) / n if n else None
    return f


def _gap_error(b: dict):
    if b["gap_ref"] is None:
        return None
    return EV_TO_MEV * abs(b["gap_pred"] - b["gap_ref"])


def _gap_error_insulators(b: dict):
    return _gap_error(b) if b["gap_ref"] else None


def _soc_error(b: dict):
    if not b["soc"]:
        return None
    return EV_TO_MEV * float(np.mean([abs(p - r) for r, p in b["soc"]]))


def band_metrics(window_names: tuple[str, ...]) -> tuple[BandMetric, ...]:
    """The band-metric table for the given windows (names like 'w1', 'w3', 'occupied')."""
    table = []
    for kset in ("grid", "path"):
        for w in window_names:
            for aligned in (False, True):
                what = "all occupied bands" if w == "occupied" else f"reference eigenvalues within +-{w[1:]} eV of E_F"
                table.append(BandMetric(
                    f"{kset}.{w}.{'aligned' if aligned else 'raw'}",
                    f"MAE of band energies on the {kset} k-points, {what}, "
                    + ("after removing the gauge shift mu*" if aligned else "no alignment"),
                    _window_metric(kset, w, aligned)))
    table += [
        BandMetric("gap_error", "|gap_pred - gap_ref|, gap = max(0, CBM - VBM) over grid and path (metals: 0)",
                   _gap_error),
        BandMetric("gap_error_insulators", "gap_error over structures whose reference gap is > 0",
                   _gap_error_insulators),
        BandMetric("soc_splitting_error", "|delta_pred - delta_ref| of the SOC spread of the top valence "
                   "multiplet at labelled high-symmetry points", _soc_error),
    ]
    for w in window_names:
        if w != "occupied":
            table.append(BandMetric(f"ghost_states.{w}", f"predicted states in E_F +-{w[1:]} eV without a reference "
                                    "counterpart (count excess over the window widened by the margin), per k-point",
                                    (lambda b, w=w: b["ghost"][w]), unit="states/k-point"))
    table.append(BandMetric("ghost_states.below", "predicted states below the reference spectrum (minus tolerance), "
                            "per k-point", lambda b: b["ghost"]["below"], unit="states/k-point"))
    return tuple(table)


def aggregate_bands(per_structure: list[dict], window_names: tuple[str, ...]) -> dict:
    """{metric: {mean, max, n_structures, unit, doc}} over the structures where it is defined;
    window metrics also get ``pooled`` (over all (k, band) pairs)."""
    out = {}
    for m in band_metrics(window_names):
        vals = [v for v in (m.per_structure(b) for b in per_structure) if v is not None]
        entry = {"mean": float(np.mean(vals)) if vals else None, "max": float(np.max(vals)) if vals else None,
                 "n_structures": len(vals), "unit": m.unit, "doc": m.doc}
        parts = m.name.split(".")
        if len(parts) == 3:
            kset, w, kind = parts
            tot = np.sum([b["windows"][kset][w] for b in per_structure], axis=0)
            entry["pooled"] = float(EV_TO_MEV * tot[1 if kind == "aligned" else 0] / tot[2]) if tot[2] else None
        out[m.name] = entry
    return out
