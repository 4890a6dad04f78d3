"""A training supplement for an existing dataset.

A small dataset (the ``mini`` preset) meets many elements in one or two training structures, or
only in its validation and test splits.  :func:`training_supplement` picks more structures from a
candidate catalog (e.g. ``materials-ham structures --preset small``) so that every element of the
dataset appears in at least ``min_per_element`` training structures, counting those the dataset's
train split already has, at the least :func:`~.curate.relative_cost` (the greedy cover of
:func:`~.curate.select_cover`).  Every structure of the dataset, and every structure
:func:`~.curate.equivalents` finds equivalent to one, is dropped first: the supplement can
never put a validation or test structure into training.  Every chosen row gets split ``train``.

The supplement is packed as a dataset of its own, so the dataset it serves keeps its splits and
fingerprint (adding structures to a catalog re-draws its random split).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

from ..errors import MaterialsHamError
from ..sample import Crystal
from .curate import catalog_crystal, equivalents, pymatgen_structure, select_cover
from .sources import Candidate


@dataclass
class SupplementReport:
    """What :func:`training_supplement` chose and why (counts of element appearances in training)."""

    n_candidates: int = 0
    elements: list = field(default_factory=list)      # the dataset's elements (symbols, sorted)
    dropped: dict = field(default_factory=dict)       # candidate id -> reason
    before: Counter = field(default_factory=Counter)  # element -> train structures of the dataset
    after: Counter = field(default_factory=Counter)   # ... with the supplement (the dataset's elements)
    short: list = field(default_factory=list)         # elements still below min_per_element

    def to_dict(self) -> dict:
        return {"n_candidates": self.n_candidates, "elements": self.elements, "dropped": self.dropped, "before": dict(self.before),
                "after": dict(self.after), "short": self.short}


def _symbols(crystal: Crystal) -> set[str]:
    from ase.data import chemical_symbols

    return {chemical_symbols[int(z)] for z in crystal.numbers}


def training_supplement(catalog, dataset: list[tuple[str, str, Crystal]], *, min_per_element: int = 3,
                        existing: list[tuple[str, str, Crystal]] = (), failed: dict | None = None):
    """(supplement catalog DataFrame, :class:`SupplementReport`).

    ``catalog``: a candidate catalog (:func:`~.curate.read_catalog`); ``dataset``: the structures of
    the dataset to supplement, as (id, split, crystal).  Elements are those of the dataset (all
    splits); the counts to reach are over its ``train`` split plus the supplement.
    ``existing``: the structures of supplements already made for it, as (id, split, crystal): their
    ``train`` structures count as training structures, and none of them is picked again.
    ``failed``: candidate id -> why it failed an earlier generation run (engine or validation): such
    candidates are not picked, so the cover takes the next cheapest instead of failing again.
    """
    if min_per_element < 1:
        raise MaterialsHamError(f"min_per_element must be at least 1, got {min_per_element}")
    failed = failed or {}
    report = SupplementReport(n_candidates=len(catalog))
    report.before = Counter(el for _, split, c in [*dataset, *existing] if split == "train" for el in _symbols(c))
    wanted = {el for _, _, c in dataset for el in _symbols(c)}
    report.elements = sorted(wanted)
    split = {sid: sp for sid, sp, _ in dataset}
    rows = [(row, catalog_crystal(row)) for _, row in catalog.iterrows()]
    earlier = {sid for sid, _, _ in existing}
    for row, _ in rows:
        if row["id"] in split:
            report.dropped[row["id"]] = "in the dataset"
        elif row["id"] in earlier:
            report.dropped[row["id"]] = "in an existing supplement"
        elif row["id"] in failed:
            report.dropped[row["id"]] = f"failed before: {failed[row['id']]}"
    split.update({sid: "existing supplement" for sid in earlier if sid not in split})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = {row["id"]: pymatgen_structure(c) for row, c in rows
                      if row["id"] not in split and row["id"] not in failed}
        same = equivalents(structures, {sid: pymatgen_structure(c) for sid, _, c in [*dataset, *existing]})
    for cid, sid in same.items():
        report.dropped[cid] = (f"equivalent to {sid} of an existing supplement" if split[sid] == "existing supplement"
                               else f"equivalent to {sid} ({split[sid]}) of the dataset")
    items = [(Candidate(row["id"], c, row["source"], row["source_id"], row["prototype"], row["note"]),
              structures[row["id"]]) for row, c in rows if row["id"] in structures and row["id"] not in same]
    chosen = {c.id for c, _ in select_cover(items, min_per_element, wanted, dict(report.before))}
    for c, _ in items:
        if c.id not in chosen:
            report.dropped[c.id] = "not needed for the element cover"
    out = catalog[catalog["id"].isin(chosen)].copy()
    out["split"] = "train"
    added = Counter(el for els in out["elements"] for el in els)
    report.after = Counter({el: report.before[el] + added[el] for el in wanted})
    report.short = sorted(el for el in wanted if report.after[el] < min_per_element)
    return out.reset_index(drop=True), report
