"""Where candidate structures come from: the built-in prototypes, a folder of files, the Materials Project.

Each source yields :class:`Candidate` objects (a crystal plus where it came from); curation
(:mod:`materials_ham.structures.curate`) filters, deduplicates and splits them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..conventions import BENCHMARK_ELEMENTS
from ..errors import MaterialsHamError, StructureError
from ..sample import Crystal
from . import prototypes as P


class SourceUnavailable(MaterialsHamError):
    """A structure source cannot be used here (no API key, no network, missing package)."""

    exit_code = 6


@dataclass
class Candidate:
    """A structure proposed for the catalog. ``id`` is stable across runs (it names the files)."""

    id: str
    crystal: Crystal
    source: str
    source_id: str
    prototype: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)


def _symbols():
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in sorted(BENCHMARK_ELEMENTS)]


def _candidate(kind: str, label: str, atoms, prototype: str, note: str) -> Candidate:
    cid = f"{kind}-{label}"
    return Candidate(cid, Crystal.from_ase(atoms), "materials-ham prototypes", cid, prototype, note)


# ------------------------------------------------------------------------ prototypes


def prototype_source(*, polymorphs: str = "needed", enumerate_binaries: bool = False,
                     extended: bool = False) -> Iterator[Candidate]:
    """The built-in offline source: real crystal prototypes over the benchmark's 68 elements.

    * every element in its experimental reference structure where ASE tabulates a buildable one;
    * close-packed polymorphs (fcc, hcp, bcc at the reference atomic volume; never for the
      molecular elements H, N, O, F, Cl, Br, I): ``polymorphs="needed"`` adds them only for the
      noble gases (which form no compounds), ``"all"`` for every element, ``"none"`` never;
    * the table of real compounds (:data:`prototypes.COMPOUNDS`, experimental lattice constants),
      with ``extended`` also :data:`prototypes.EXTENDED_COMPOUNDS` (not in the ``mini`` preset);
    * with ``enumerate_binaries``, charge-balanced binaries in rock-salt, zinc-blende, CsCl and
      (anti-)fluorite prototypes with lattice constants from covalent radii (hypothetical
      structures, marked so in ``note``).
    """
    for sym in _symbols():
        ref = P.elemental(sym)
        if ref is not None:
            atoms, proto, note = ref
            yield _candidate("proto", f"{sym}-{proto}", atoms, proto, note)
        if sym in P.MOLECULAR_ELEMENTS or polymorphs == "none":
            continue
        if polymorphs == "all":
            kinds = P.ELEMENTAL_POLYMORPHS
        elif sym in P.NOBLE_GASES:  # they form no compounds: a second structure for each
            kinds = ("fcc", "hcp") if ref is None else ("hcp",)
        else:
            kinds = ()
        for kind in kinds:
            if ref is not None and kind == ref[1]:
                continue  # the reference structure already is this polymorph (e.g. bcc Li)
            yield _candidate("proto", f"{sym}-{kind}", P.elemental_polymorph(sym, kind), kind,
                             "close-packed polymorph at the reference atomic volume (hypothetical)")
    seen = set()
    for comp in P.COMPOUNDS + (P.EXTENDED_COMPOUNDS if extended else []):
        atoms = comp.build()
        seen.add((atoms.get_chemical_formula(mode="metal"), comp.prototype))
        yield _candidate("proto", comp.label, atoms, comp.prototype,
                         f"experimental lattice parameters {', '.join(f'{x:g}' for x in comp.params)}")
    if enumerate_binaries:
        yield from _enumerated_binaries(seen)


def _enumerated_binaries(seen) -> Iterator[Candidate]:
    from pymatgen.core import Element

    syms = _symbols()
    ox = {}
    for s in syms:
        try:
            ox[s] = set(Element(s).common_oxidation_states)
        except Exception:  # noqa: BLE001
            ox[s] = set()
    rules = [  # (prototype, cation charge, anion charge, builder formula ratio)
        ("rocksalt", 2, -2), ("rocksalt", 1, -1), ("cesium-chloride", 1, -1), ("zincblende", 3, -3),
        ("zincblende", 2, -2), ("fluorite", 2, -1), ("fluorite", 4, -2), ("antifluorite", 1, -2),
    ]
    for proto, qc, qa in rules:
        for cat in syms:
            if qc not in ox[cat]:
                continue
            for an in syms:
                if an == cat or qa not in ox[an]:
                    continue
                a = P.radius_estimate(proto, cat, an)
                atoms = P.BUILDERS[proto](cat, an, a)
                key = (atoms.get_chemical_formula(mode="metal"), proto)
                if key in seen:
                    continue
                seen.add(key)
                yield _candidate("enum", f"{key[0]}-{proto}", atoms, proto,
                                 f"hypothetical: charge-balanced ({qc:+d}/{qa:+d}), a = {a:.3f} A from covalent radii")


# ----------------------------------------------------------------------------- files

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz", ".json")


def folder_source(folder: str | os.PathLike, *, skip_invalid: bool = False,
                  rejected: list | None = None) -> Iterator[Candidate]:
    """Every structure file (CIF, POSCAR/CONTCAR, extxyz, ...) in ``folder`` (recursively).

    A file that cannot be read raises :class:`StructureError` naming it; with ``skip_invalid``
    it is appended to ``rejected`` as (path, reason) and skipped instead.
    """
    from .io import read_structure

    folder = Path(folder)
    if not folder.is_dir():
        raise StructureError("not a folder of structure files", subject=str(folder))
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (
        p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.upper().startswith(("POSCAR", "CONTCAR"))))
    if not files:
        raise StructureError(f"no structure files ({', '.join(STRUCTURE_SUFFIXES)}, POSCAR*) found", subject=str(folder))
    for path in files:
        try:
            crystal = read_structure(path)
        except StructureError as err:
            if not skip_invalid:
                raise
            if rejected is not None:
                rejected.append((str(path), str(err)))
            continue
        rel = path.relative_to(folder).as_posix()
        stem = rel.rsplit(".", 1)[0].replace("/", "_")
        yield Candidate(f"file-{stem}", crystal, "file", rel, "", f"read from {rel}")


# ------------------------------------------------------------------ Materials Project

MP_KEY_VARIABLES = ("MP_API_KEY", "PMG_MAPI_KEY")


def materials_project_source(*, api_key: str | None = None, max_atoms: int = 20,
                             max_energy_above_hull: float = 0.05, non_magnetic: bool = True,
                             limit: int | None = None) -> Iterator[Candidate]:
    """Structures from the Materials Project (``mp-api``), how the full 17,000-structure set is built.

    Needs the ``mp-api`` package (``pip install 'materials-ham[mp]'``), an API key (argument or
    ``MP_API_KEY`` / ``PMG_MAPI_KEY``) and network access; otherwise raises
    :class:`SourceUnavailable` saying which is missing.  Queries structures made only of the
    benchmark's elements with at most ``max_atoms`` sites, within ``max_energy_above_hull`` eV/atom
    of the hull and (by default) non-magnetic, as the benchmark's SCF is spin-paired.
    """
    api_key = api_key or next((os.environ[v] for v in MP_KEY_VARIABLES if os.environ.get(v)), None)
    if not api_key:
        raise SourceUnavailable("the Materials Project source needs an API key: set MP_API_KEY (get one at "
                                "https://next-gen.materialsproject.org/api) or use --source prototypes / a folder")
    try:
        from mp_api.client import MPRester
    except ImportError:
        raise SourceUnavailable("the Materials Project source needs the mp-api package: "
                                "pip install 'materials-ham[mp]'") from None
    from ase.data import chemical_symbols

    excluded = [chemical_symbols[z] for z in range(1, 119) if z not in BENCHMARK_ELEMENTS and z < len(chemical_symbols)]
    fields = ["material_id", "structure", "formula_pretty", "symmetry", "energy_above_hull", "total_magnetization"]
    try:
        with MPRester(api_key) as mpr:
            docs = mpr.materials.summary.search(
                exclude_elements=excluded, nsites=(1, max_atoms), energy_above_hull=(0, max_energy_above_hull),
                total_magnetization=(0, 0.05) if non_magnetic else None, fields=fields,
                num_chunks=None if limit is None else max(1, limit // 1000 + 1))
    except Exception as err:  # noqa: BLE001 - network, auth and API errors all end here
        raise SourceUnavailable(f"Materials Project query failed ({type(err).__name__}: {err}); "
                                "check the API key and network access") from None
    for n, doc in enumerate(docs):
        if limit is not None and n >= limit:
            break
        s = doc.structure
        crystal = Crystal(s.atomic_numbers, s.cart_coords, s.lattice.matrix)
        mid = str(doc.material_id)
        yield Candidate(mid, crystal, "materials-project", mid, "", f"E_hull {doc.energy_above_hull:.3f} eV/atom",
                        extra={"energy_above_hull": float(doc.energy_above_hull)})
