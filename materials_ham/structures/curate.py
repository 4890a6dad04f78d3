"""Curation: candidates -> filtered, deduplicated, split catalog (a Parquet table).

The catalog has one row per structure with the columns of :data:`CATALOG_COLUMNS`; the
structure itself travels in it (``numbers``, Cartesian ``positions`` in Angstrom flattened
(3n,), row-vector ``cell`` flattened (9,)), so that generation needs nothing else.

Presets (:data:`PRESETS`):

* ``mini`` — the built-in prototypes up to 5 atoms: every element the engine covers appears
  in at least two structures (checked); generated on 2 cores in about an hour or two;
* ``full`` — the built-in prototypes with every elemental polymorph and the charge-balanced
  binary enumeration, up to 20 atoms; with ``--source mp`` the Materials Project instead
  (how the 17,000-structure set is built by users with access).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..conventions import BENCHMARK_ELEMENTS
from ..errors import FormatError, MaterialsHamError, StructureError
from ..sample import Crystal
from . import splits as S
from .io import check_structure
from .sources import Candidate

CATALOG_COLUMNS = ("id", "formula", "elements", "n_atoms", "spacegroup", "spacegroup_symbol", "source",
                   "source_id", "prototype", "note", "split", "numbers", "positions", "cell")


@dataclass
class Preset:
    source: str = "prototypes"
    polymorphs: str = "needed"
    enumerate_binaries: bool = False
    max_atoms: int = 5
    min_per_element: int = 0  # every element the engine covers must appear this often (0: no check)
    cover: bool = False       # keep only a cheap subset reaching min_per_element (see select_cover)
    extended: bool = True     # also prototypes.EXTENDED_COMPOUNDS (mini: no, so that it stays the same)


PRESETS = {
    "mini": Preset(max_atoms=5, min_per_element=2, cover=True, extended=False),
    "small": Preset(max_atoms=5, min_per_element=2),
    "full": Preset(polymorphs="all", enumerate_binaries=True, max_atoms=20),
}


def relative_cost(crystal: Crystal) -> float:
    """A rough relative engine cost of a structure, from its composition alone.

    Atoms count once; transition metals (groups 3-12, many orbitals, often semicore states)
    three times; elemental metals take many SCF iterations on dense k-meshes: x3.
    Measured GPAW dzp wall times on 2 cores (mini run): ionic binaries 15-60 s, elemental
    hcp metals 40-200 s, oxide perovskites 110-290 s.
    """
    from pymatgen.core import Element
    from ase.data import chemical_symbols

    els = [Element(chemical_symbols[z]) for z in crystal.numbers]
    cost = sum(3.0 if (e.is_transition_metal and e.group <= 12) else 1.0 for e in els)
    distinct = set(crystal.numbers.tolist())
    if len(distinct) == 1 and els[0].is_metal:
        cost *= 3.0
    return cost


def select_cover(items: list, min_per_element: int, wanted: set[str], have: dict[str, int] | None = None) -> list:
    """A cheap subset in which every element of ``wanted`` appears in ``min_per_element`` structures
    (counting ``have[element]`` appearances already made elsewhere).

    Greedy weighted set multi-cover: repeatedly take the structure with the most still-needed
    element appearances per unit of :func:`relative_cost` (ties: cheaper, then id).  Items are
    (Candidate, pymatgen Structure); the input order is kept.
    """
    from ase.data import chemical_symbols

    have = have or {}
    need = {el: max(0, min_per_element - have.get(el, 0)) for el in wanted}
    info = []
    for k, (cand, _) in enumerate(items):
        els = {chemical_symbols[z] for z in cand.crystal.numbers}
        info.append((k, cand.id, els, relative_cost(cand.crystal)))
    chosen: set[int] = set()
    while any(v > 0 for v in need.values()):
        best = None
        for k, cid, els, cost in info:
            if k in chosen:
                continue
            gain = sum(1 for el in els if need.get(el, 0) > 0)
            if gain == 0:
                continue
            key = (-gain / cost, cost, cid)
            if best is None or key < best[0]:
                best = (key, k, els)
        if best is None:
            break  # what is left cannot be covered: curate's min_per_element check names it
        chosen.add(best[1])
        for el in best[2]:
            if need.get(el, 0) > 0:
                need[el] -= 1
    return [it for k, it in enumerate(items) if k in chosen]


@dataclass
class CurationReport:
    """What curation kept and dropped, and why."""

    n_candidates: int = 0
    dropped: Counter = field(default_factory=Counter)          # reason -> count
    dropped_ids: dict = field(default_factory=dict)            # id -> reason
    duplicates: dict = field(default_factory=dict)             # dropped id -> kept id
    element_counts: Counter = field(default_factory=Counter)   # symbol -> structures containing it
    split_counts: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"n_candidates": self.n_candidates, "dropped": dict(self.dropped), "dropped_ids": self.dropped_ids,
                "duplicates": self.duplicates, "element_counts": dict(self.element_counts),
                "split_counts": dict(self.split_counts)}


def pymatgen_structure(crystal: Crystal):
    """``crystal`` as a pymatgen ``Structure``."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(crystal.cell), crystal.numbers.tolist(), crystal.positions, coords_are_cartesian=True)


def _symmetry(structure) -> tuple[int, str]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=1e-3)
            return int(sga.get_space_group_number()), str(sga.get_space_group_symbol())
    except Exception:  # noqa: BLE001 - spglib gives up on some inputs: record P1-unknown
        return 0, "?"


def structure_matcher():
    """The pymatgen ``StructureMatcher`` that decides when two structures are the same one
    (deduplication here; leaks between training data and scored splits elsewhere)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, scale=False)


def equivalents(structures: dict, known: dict) -> dict[str, str]:
    """{id: id of a known structure it is equivalent to} for the ``structures`` ({id: pymatgen
    Structure}) that :func:`structure_matcher` finds equal to one of ``known`` ({id: Structure});
    compared only within the same reduced composition."""
    matcher = structure_matcher()
    out = {}
    with warnings.catch_warnings():         # pymatgen: "no Pauling electronegativity for He" and the like
        warnings.simplefilter("ignore")
        by_comp: dict[str, list] = {}
        for kid, ref in known.items():
            by_comp.setdefault(ref.composition.reduced_formula, []).append((kid, ref))
        for sid, st in structures.items():
            match = next((kid for kid, ref in by_comp.get(st.composition.reduced_formula, []) if matcher.fit(st, ref)),
                         None)
            if match is not None:
                out[sid] = match
    return out


def deduplicate(items: list[tuple[Candidate, object]]) -> tuple[list, dict]:
    """Drop structures that :func:`structure_matcher` finds equivalent to an earlier one.

    Compared only within the same reduced composition.  Returns (kept items, {dropped id: kept id}).
    """
    matcher = structure_matcher()
    by_comp: dict[str, list[int]] = {}
    for k, (_, s) in enumerate(items):
        by_comp.setdefault(s.composition.reduced_formula, []).append(k)
    drop: dict[str, str] = {}
    for group in by_comp.values():
        kept: list[int] = []
        for k in group:
            match = next((q for q in kept if matcher.fit(items[q][1], items[k][1])), None)
            if match is None:
                kept.append(k)
            else:
                drop[items[k][0].id] = items[match][0].id
    return [it for it in items if it[0].id not in drop], drop


def curate(candidates, *, max_atoms: int = 20, engine=None, dedup: bool = True, split: str = "random",
           seed: int = 0, holdout_elements=(), holdout_prototypes=(), min_per_element: int = 0,
           cover: bool = False, progress: bool = False):
    """Filter, deduplicate and split candidates; returns ``(catalog DataFrame, CurationReport)``.

    Filters, in order: a valid crystal (:func:`check_structure`: benchmark elements, no overlap,
    periodic), at most ``max_atoms`` atoms, covered by ``engine`` (its ``check_coverage``), then
    duplicates.  ``split`` is ``random``, ``ood-elements`` (needs ``holdout_elements``) or
    ``ood-prototype`` (needs ``holdout_prototypes``).  With ``min_per_element`` > 0 every element
    the engine covers must appear in that many kept structures, else :class:`MaterialsHamError`;
    with ``cover`` only a cheap subset reaching that count is kept (:func:`select_cover`).
    """
    import pandas as pd
    from ase.data import chemical_symbols
    from tqdm.auto import tqdm

    report = CurationReport()
    items, seen_ids = [], set()
    for cand in tqdm(list(candidates), desc="candidates", disable=not progress, leave=False):
        report.n_candidates += 1
        if cand.id in seen_ids:
            raise MaterialsHamError(f"two candidates share the id {cand.id!r}")
        seen_ids.add(cand.id)
        reason = None
        try:
            check_structure(cand.crystal, subject=cand.id)
        except StructureError as err:
            reason = f"invalid structure: {err}"
        if reason is None and len(cand.crystal) > max_atoms:
            reason = f"more than {max_atoms} atoms"
        if reason is None and engine is not None:
            try:
                engine.check_coverage(cand.crystal, subject=cand.id)
            except MaterialsHamError as err:
                reason = f"not covered by the {engine.name} engine: {err}"
        if reason is not None:
            report.dropped[reason.split(":")[0]] += 1
            report.dropped_ids[cand.id] = reason
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items.append((cand, pymatgen_structure(cand.crystal)))
    if dedup:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items, report.duplicates = deduplicate(items)
        report.dropped["duplicate"] += len(report.duplicates)
        report.dropped_ids.update({k: f"duplicate of {v}" for k, v in report.duplicates.items()})
    if not items:
        raise MaterialsHamError("curation kept no structure (see the dropped reasons with --report)")
    if cover and min_per_element:
        kept = select_cover(items, min_per_element, {chemical_symbols[z] for z in _wanted_elements(engine)})
        ids = {c.id for c, _ in kept}
        for cand, _ in items:
            if cand.id not in ids:
                report.dropped["not needed for the element cover"] += 1
                report.dropped_ids[cand.id] = "not needed for the element cover"
        items = kept

    rows = []
    for cand, s in items:
        sg, symbol = _symmetry(s)
        els = sorted({chemical_symbols[z] for z in cand.crystal.numbers})
        rows.append({"id": cand.id, "formula": s.composition.reduced_formula, "elements": els,
                     "n_atoms": len(cand.crystal), "spacegroup": sg, "spacegroup_symbol": symbol,
                     "source": cand.source, "source_id": cand.source_id, "prototype": cand.prototype,
                     "note": cand.note, "split": "",
                     "numbers": cand.crystal.numbers.tolist(),
                     "positions": cand.crystal.positions.reshape(-1).tolist(),
                     "cell": cand.crystal.cell.reshape(-1).tolist()})
    ids = [r["id"] for r in rows]
    if split == "random":
        assign = S.random_split(ids, seed=seed)
    elif split == "ood-elements":
        held = set(holdout_elements)
        if not held:
            raise MaterialsHamError("--split ood-elements needs --holdout-elements (e.g. Ne,Bi)")
        assign = S.held_out_split(ids, [bool(held & set(r["elements"])) for r in rows], seed=seed)
    elif split == "ood-prototype":
        held = set(holdout_prototypes)
        if not held:
            raise MaterialsHamError("--split ood-prototype needs --holdout-prototypes (e.g. perovskite)")
        assign = S.held_out_split(ids, [r["prototype"] in held for r in rows], seed=seed)
    else:
        raise MaterialsHamError(f"unknown split {split!r}; choose random, ood-elements or ood-prototype")
    for r in rows:
        r["split"] = assign[r["id"]]
        report.element_counts.update(r["elements"])
    report.split_counts.update(assign.values())

    if min_per_element:
        wanted = _wanted_elements(engine)
        short = [f"{chemical_symbols[z]} ({report.element_counts.get(chemical_symbols[z], 0)})"
                 for z in sorted(wanted) if report.element_counts.get(chemical_symbols[z], 0) < min_per_element]
        if short:
            raise MaterialsHamError(f"elements below {min_per_element} structures each: {', '.join(short)}")
    return pd.DataFrame(rows, columns=list(CATALOG_COLUMNS)), report


def _wanted_elements(engine) -> set[int]:
    """The benchmark's elements that ``engine`` covers (all 68 without an engine)."""
    return {z for z in BENCHMARK_ELEMENTS if engine is None or _covered(engine, z)}


def _covered(engine, z: int) -> bool:
    cell = np.eye(3) * 10.0
    try:
        engine.check_coverage(Crystal([z], [[0, 0, 0]], cell))
        return True
    except MaterialsHamError:
        return False


# ------------------------------------------------------------------------ catalog files


def write_catalog(df, path: str | Path) -> Path:
    """Write the catalog as Parquet, atomically."""
    path = Path(path)
    with atomic_write(path) as fh:
        df.to_parquet(fh, index=False)
    return path


def read_catalog(path: str | Path):
    """Read and check a catalog written by :func:`write_catalog` (FormatError naming the problem)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FormatError("no such catalog file", subject=str(path))
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many kinds
        raise FormatError(f"not a Parquet catalog ({type(err).__name__}: {err})", subject=str(path)) from None
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise FormatError(f"catalog lacks column(s) {', '.join(missing)}", subject=str(path))
    dup = df["id"][df["id"].duplicated()].tolist()
    if dup:
        raise FormatError(f"catalog has duplicate id(s) {', '.join(map(str, dup[:5]))}", subject=str(path))
    bad = sorted(set(df["split"]) - set(S.SPLITS))
    if bad:
        raise FormatError(f"catalog has unknown split name(s) {bad}", subject=str(path))
    return df


def catalog_crystal(row) -> Crystal:
    """The :class:`Crystal` stored in one catalog row."""
    return Crystal(np.asarray(row["numbers"], np.int64), np.asarray(row["positions"], float).reshape(-1, 3),
                   np.asarray(row["cell"], float).reshape(3, 3))


def catalog_provenance(row) -> dict:
    """The provenance dict a sample carries for a catalog row."""
    return {"source": row["source"], "source_id": row["source_id"], "id": row["id"], "formula": row["formula"],
            "prototype": row["prototype"], "spacegroup": int(row["spacegroup"]),
            "spacegroup_symbol": row["spacegroup_symbol"], "note": row["note"]}
