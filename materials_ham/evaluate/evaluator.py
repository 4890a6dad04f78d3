"""The standardised scorer: :class:`Evaluator` (in the spirit of OGB's evaluators).

>>> from materials_ham import Evaluator, write_predictions
>>> ev = Evaluator("path/to/dataset", split="test", cache_dir="~/.cache/materials-ham")
>>> print(ev.expected_input_format)
>>> metrics = ev.eval({sid: H_pred for sid, H_pred in ...})      # in memory
>>> metrics = ev.eval("predictions.zarr")                         # a store from write_predictions
>>> metrics["headline"]["spin_diag_real_mev"]

Reference-side work (labels of every entry, half/full and edge-sum plans, Bloch maps, S(k)
factors, reference eigenvalues, window masks) is computed once per structure and kept in a
bounded in-memory cache and, with ``cache_dir``, on disk (band data; keyed by the dataset
fingerprint and the settings).  A structure's reference H and S are read from the dataset
(:data:`REFERENCE_MATRICES`: H0 is never read nor decoded); they are not copied into the disk
cache, whose entries stay small: the store holds them compressed ~10x and decodes them as fast
as an uncompressed copy loads (README, "Speed and the reference cache").
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conventions import DISTANCE_BINS, HEADLINE_EDGE_CUTOFF
from ..errors import FormatError, MaterialsHamError
from . import bands as B
from . import metrics as M
from .predictions import (HERMITIAN_TOLERANCE_EV, EdgeLayout, PredictionsStore, _preview, check_prediction,
                          dataset_fingerprint, dataset_name, open_dataset, read_predictions, split_ids)

EVALUATOR_NAME = "materials-ham-soc"
RESULTS_VERSION = 2   # 2: headline gains ghost_states_below_per_k
#: Entries per structure kept for the parity plot (``details=True``).
PARITY_SAMPLES = 2000
#: The matrices of a reference structure that scoring reads (H0 never is: it is not decoded).
REFERENCE_MATRICES = ("H", "S")


@dataclass
class StructureReference:
    """Everything reference-side the scorer needs for one structure (see the module docstring)."""

    sid: str
    formula: str
    n_atoms: int
    nao: int
    matrix: M.MatrixReference
    layout: EdgeLayout
    labels: dict
    bloch: B.BlochMap | None = None
    bands: B.BandReference | None = None

    def nbytes(self) -> int:
        n = self.matrix.nbytes() + self.layout.plan.nbytes()
        if self.bloch is not None:
            n += self.bloch.nbytes()
        if self.bands is not None:
            n += self.bands.nbytes()
        return n


@dataclass
class Evaluation:
    """Result of :meth:`Evaluator.evaluate`: ``metrics`` (JSON-ready dict) and ``details``
    (arrays for plots: parity samples and path band structures per structure)."""

    metrics: dict
    details: dict = field(default_factory=dict)


class Evaluator:
    """Score predicted Hamiltonians of one split of a packed dataset.

    ``dataset``: a packed dataset folder, an open :class:`~materials_ham.store.DatasetStore`, or
    the name ``"materials-ham-soc"`` (resolved through ``$MATERIALS_HAM_DATASET`` until the Hub
    resolves names).  ``bands=False`` skips the band metrics.  ``kgrid``/``path_points``/
    ``windows_ev`` tune them (:class:`~materials_ham.evaluate.bands.BandSettings`).  ``cache_dir``:
    folder for the on-disk reference cache (None: memory only).  ``workers``: threads scoring
    structures in parallel (set OMP/OPENBLAS threads to 1 when > 1).  ``memory_cache_mib``:
    bound of the in-memory reference cache (0 disables it).
    """

    def __init__(self, dataset=EVALUATOR_NAME, *, split: str = "test", bands: bool = True,
                 kgrid=None, path_points: int | None = None, windows_ev=None, cache_dir: str | os.PathLike | None = None,
                 workers: int = 1, memory_cache_mib: float = 512, progress: bool = False):
        self.store = open_dataset(dataset)
        self.name = EVALUATOR_NAME
        self.split = split
        self.ids = split_ids(self.store, split)
        self.fingerprint = dataset_fingerprint(self.store)
        d = B.BandSettings()
        self.settings = B.BandSettings(kgrid=tuple(kgrid) if kgrid is not None else d.kgrid,
                                       path_points=d.path_points if path_points is None else int(path_points),
                                       windows_ev=tuple(windows_ev) if windows_ev is not None else d.windows_ev)
        self.with_bands = bool(bands)
        self.cache = B.BandCache(Path(cache_dir).expanduser(), self.fingerprint, self.settings) if cache_dir else None
        self.workers = max(1, int(workers))
        self.memory_cache_bytes = int(memory_cache_mib * (1 << 20))
        self.progress = progress
        self._memory: OrderedDict[str, StructureReference] = OrderedDict()
        self._memory_bytes = 0
        self._mem_lock = threading.Lock()
        self._labels = {g.name: g for g in M.GROUPINGS}

    # ----------------------------------------------------------------------- descriptions
    @property
    def expected_input_format(self) -> str:
        return (
            f"==== Expected input format of Evaluator('{self.name}') ====\n"
            f"eval(predictions) with predictions either\n"
            f"  * a dict {{structure id: H}} with one entry per structure of split '{self.split}' "
            f"({len(self.ids)} ids: store.index.id where store.index.split == '{self.split}'), where H is a 1-D "
            "complex128 numpy array of the predicted H blocks (eV) on ALL reference edges of the structure, in the "
            "layout of Sample.H: blocks in the dataset's edge order, each (2 n_i, 2 n_j) spin-major "
            "[[uu, ud], [du, dd]] flattened row-major (len(H) == len(sample.H); e.g. sample.H0 is the H0 baseline); "
            f"H must be Hermitian (H_ji(-R) = H_ij(R)^dagger within {HERMITIAN_TOLERANCE_EV:g} eV) and finite;\n"
            "  * or the path of a predictions store written by materials_ham.write_predictions(path, dataset, "
            f"predictions, split='{self.split}').\n"
            "Bad input raises materials_ham.FormatError naming the structure and the problem."
        )

    @property
    def expected_output_format(self) -> str:
        return (
            f"==== Expected output format of Evaluator('{self.name}') ====\n"
            "A JSON-ready dict: 'headline' {spin_diag_real_mev (mean over structures of the gauge-standardised MAE of "
            "the real part of the uu and dd entries of edges < 8 A), ...}; 'matrix' {grouping: {group: {quantity: "
            "{mean, pooled}, n_structures, n_entries}}} for groupings overall (paper table: uu_real ... dd_imag), "
            "site, distance, element, element_pair, all_stored_edges; 'bands' {metric: {mean, max, pooled, "
            "n_structures, unit}}; 'per_structure' [one row per structure]; all errors in meV."
        )

    # --------------------------------------------------------------------------- references
    def reference(self, sid: str) -> StructureReference:
        """The reference-side data of structure ``sid`` (memory cache, then disk cache, then computed)."""
        with self._mem_lock:
            hit = self._memory.get(sid)
            if hit is not None:
                self._memory.move_to_end(sid)
                return hit
        sample = self.store.by_id(sid, matrices=REFERENCE_MATRICES)
        layout = EdgeLayout.from_sample(sample)
        # rebuilt from its stored canonical half, the reference is exactly conjugate-symmetric
        matrix = M.MatrixReference.from_sample(sample, edge_layout=layout, mirrored=True)
        ref = StructureReference(sid=sid, formula=sample.crystal.formula, n_atoms=sample.n_atoms, nao=sample.nao,
                                 matrix=matrix, layout=layout,
                                 labels={g.name: g.labels(matrix) for g in M.GROUPINGS})
        if self.with_bands:
            cached = self.cache.get(sid) if self.cache is not None else None
            if cached is not None:
                kpts = cached.kpts
            else:
                kpts, n_grid, path = B.band_kpoints(sample.crystal, self.settings)
            ref.bloch = B.BlochMap(sample, kpts, spinor=True, grid=self.settings.kgrid)
            if cached is not None:
                ref.bands = cached
            else:
                bloch_s = B.BlochMap(sample, kpts, spinor=False, grid=self.settings.kgrid)
                try:
                    ref.bands = B.reference_bands(sample, ref.bloch, bloch_s, kpts, n_grid, path, self.settings)
                except MaterialsHamError as err:  # e.g. S(k) not positive definite: name the structure
                    raise type(err)(f"reference bands of structure {sid!r}: {err}") from None
                if self.cache is not None:
                    self.cache.put(sid, ref.bands)
        if self.memory_cache_bytes > 0:
            with self._mem_lock:
                self._memory[sid] = ref
                self._memory_bytes += ref.nbytes()
                while self._memory_bytes > self.memory_cache_bytes and len(self._memory) > 1:
                    _, old = self._memory.popitem(last=False)
                    self._memory_bytes -= old.nbytes()
        return ref

    def clear_memory_cache(self) -> None:
        with self._mem_lock:
            self._memory.clear()
            self._memory_bytes = 0

    # ------------------------------------------------------------------------------ input
    def _source(self, predictions):
        """(description, model, getter(sid, ref) -> full H) after the checks that need no reading."""
        if isinstance(predictions, (str, os.PathLike)):
            predictions = read_predictions(predictions, self.store, self.split)
        if isinstance(predictions, PredictionsStore):
            store = predictions
            if store.split != self.split:
                raise FormatError(f"predictions are for split {store.split!r}, the evaluator scores {self.split!r}",
                                  subject=str(store.path))

            def get(sid, ref):
                return store.read_full(sid, ref.layout)
            return str(store.path), store.model, get
        if not isinstance(predictions, Mapping):
            try:
                pairs = list(predictions)
                predictions = dict(pairs)
            except (TypeError, ValueError):
                raise FormatError("predictions must be a dict {id: H}, an iterable of (id, H) pairs or the path of a "
                                  "predictions store") from None
            if len(predictions) != len(pairs):
                raise FormatError("a structure id is given more than once")
        given = {str(k) for k in predictions}
        wanted = set(self.ids)
        missing = [s for s in self.ids if s not in given]
        extra = sorted(given - wanted)
        if missing:
            raise FormatError(f"{len(missing)} structure(s) of split {self.split!r} have no prediction: "
                              f"{_preview(missing)}")
        if extra:
            raise FormatError(f"{len(extra)} prediction(s) for structures not in split {self.split!r}: {_preview(extra)}")
        lookup = {str(k): v for k, v in predictions.items()}
        return "in-memory predictions", "", lambda sid, ref: check_prediction(sid, lookup[sid], ref.layout)

    # ----------------------------------------------------------------------------- scoring
    def eval(self, predictions) -> dict:
        """Score ``predictions`` (see :attr:`expected_input_format`); returns the metrics dict."""
        return self.evaluate(predictions).metrics

    def evaluate(self, predictions, *, details: bool = False) -> Evaluation:
        """Like :meth:`eval`, also returning plot data when ``details``."""
        from tqdm import tqdm

        t0 = time.perf_counter()
        source, model, get = self._source(predictions)

        def one(k_sid):
            k, sid = k_sid
            ref = self.reference(sid)
            pred = get(sid, ref)
            return self._score(k, ref, pred, details)

        bar = dict(total=len(self.ids), disable=not self.progress, desc=f"scoring {self.split}", unit="structure")
        if self.workers == 1:
            rows = [one(x) for x in tqdm(enumerate(self.ids), **bar)]
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                rows = list(tqdm(pool.map(one, enumerate(self.ids)), **bar))
        metrics = self._aggregate(rows, source, model, time.perf_counter() - t0)
        det = {}
        if details:
            det = {"parity": {k: np.concatenate([r["_parity"][k] for r in rows]) for k in ("ref", "pred", "pair")},
                   "bands": {r["id"]: r["_bands"] for r in rows if r.get("_bands") is not None}}
        return Evaluation(metrics, det)

    def _score(self, k: int, ref: StructureReference, pred: np.ndarray, details: bool) -> dict:
        sums = M.edge_sums(ref.matrix, pred, hermitian=True)    # pred is rebuilt from its canonical half
        groups = {g.name: M.group_sums(ref.matrix, sums, g, ref.labels[g.name]) for g in M.GROUPINGS}
        ov = groups["overall"].get("all")
        row = {"id": ref.sid, "formula": ref.formula, "n_atoms": ref.n_atoms, "nao": ref.nao,
               "n_edges": ref.matrix.n_edges, "n_scored_edges": int(ref.matrix.scored.sum()),
               "mu_ev": sums.mu["scored"], "mu_all_edges_ev": sums.mu["all"]}
        row["matrix"] = {q: _num(M.quantity(ov, q)) if ov is not None else None for q in M.QUANTITIES}
        for site in ("on-site", "off-site"):
            acc = groups["site"].get(site)
            row["matrix"][f"{site}.spin_diag_real"] = _num(M.quantity(acc, "spin_diag_real")) if acc is not None else None
        row["matrix"]["all_stored_edges.spin_diag_real"] = _num(M.quantity(groups["all_stored_edges"]["all"],
                                                                           "spin_diag_real"))
        row["_groups"] = groups
        if ref.bands is not None:
            eig = B.batched_eigenvalues(ref.bloch, pred, ref.bands.Linv)
            b = B.band_scores(ref.bands, eig, sums.mu["scored"], self.settings)
            row["_band_scores"] = b
            row["bands"] = {m.name: _num(m.per_structure(b)) for m in M.band_metrics(self.settings.window_names)}
            row["bands"]["gap_ref_ev"] = b["gap_ref"]
            row["bands"]["gap_pred_ev"] = b["gap_pred"]
            if details:
                r = ref.bands
                row["_bands"] = {"x": r.path_x, "labels": r.path_labels, "breaks": r.path_breaks,
                                 "ref": r.eig[r.n_grid:], "pred": eig[r.n_grid:] - sums.mu["scored"],
                                 "fermi_level": r.fermi_level, "formula": ref.formula}
        if details:
            m = ref.matrix
            spin = m.layout.spin_labels()
            cand = np.nonzero(((spin == 0) | (spin == 3)) & m.layout.entry_mask(m.scored))[0]
            rng = np.random.default_rng(k)
            pick = rng.choice(cand, size=min(PARITY_SAMPLES, len(cand)), replace=False) if len(cand) else cand
            e = np.searchsorted(np.cumsum(4 * m.count), pick, side="right")
            zi, zj = np.minimum(m.z_i[e], m.z_j[e]), np.maximum(m.z_i[e], m.z_j[e])
            row["_parity"] = {"ref": m.target[pick].real, "pred": (pred[pick] - sums.mu["scored"] * m.s_spinor[pick]).real,
                              "pair": np.stack([zi, zj], axis=1)}
        return row

    def _aggregate(self, rows: list[dict], source: str, model: str, seconds: float) -> dict:
        matrix = M.aggregate_matrix([r["_groups"] for r in rows])
        ov = matrix["overall"].get("all", {})
        headline = {"spin_diag_real_mev": _get(ov, "spin_diag_real", "mean"),
                    "spin_diag_real_pooled_mev": _get(ov, "spin_diag_real", "pooled"),
                    "overall_real_mev": _get(ov, "real", "mean"), "overall_imag_mev": _get(ov, "imag", "mean"),
                    "all_stored_edges_spin_diag_real_mev": _get(matrix["all_stored_edges"].get("all", {}),
                                                               "spin_diag_real", "mean")}
        out = {
            "evaluator": self.name, "results_version": RESULTS_VERSION,
            "dataset": {"name": dataset_name(self.store), "path": str(self.store.root), "fingerprint": self.fingerprint},
            "split": self.split, "n_structures": len(rows), "predictions": source, "model": model,
            "settings": {"edge_cutoff_angstrom": HEADLINE_EDGE_CUTOFF, "distance_bins_angstrom": list(DISTANCE_BINS),
                         "units": "meV", "bands": self.settings.to_dict() if self.with_bands else None},
            "headline": headline, "matrix": matrix,
        }
        if self.with_bands:
            out["bands"] = M.aggregate_bands([r["_band_scores"] for r in rows], self.settings.window_names)
            first = self.settings.window_names[0]
            headline[f"band_grid_{first}_aligned_mev"] = out["bands"][f"grid.{first}.aligned"]["mean"]
            headline[f"band_grid_{first}_raw_mev"] = out["bands"][f"grid.{first}.raw"]["mean"]
            headline["gap_error_mev"] = out["bands"]["gap_error"]["mean"]
            headline["soc_splitting_error_mev"] = out["bands"]["soc_splitting_error"]["mean"]
            headline[f"ghost_states_{first}_per_k"] = out["bands"][f"ghost_states.{first}"]["mean"]
            headline["ghost_states_below_per_k"] = out["bands"]["ghost_states.below"]["mean"]
        out["per_structure"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        out["seconds"] = seconds
        return out


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _get(entry: dict, q: str, kind: str):
    return (entry.get(q) or {}).get(kind)
