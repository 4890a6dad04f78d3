"""DeePTB / dftio h5 layout -> :class:`~materials_ham.sample.Sample`.

The layout (as written by dftio for DeePTB, e.g. DeePTB ``examples/soc_case``): one h5 file per
matrix, a group per frame (``"0"``, ...), one dataset per block keyed ``"i_j_Rx_Ry_Rz"`` with 0-based
atoms in STRU order.  ``hamiltonians_full.h5`` (or ``hamiltonians.h5`` in a plain dataset) holds H,
``hamiltonians_0.h5`` the zeroth-step H0 and, beside a ``_full`` file, ``hamiltonians.h5`` the
training target H - H0.  ``overlaps.h5`` holds S.  H blocks are complex (2 n_i, 2 n_j), spin-major,
in eV; S blocks are real (n_i, n_j).  Orbitals are ordered m = -l..l with dftio's (-1)^m applied to
ABACUS's functions, which is the project's convention (``ORBITAL_TABLES["deeptb"]``, proven by the
symmetry test and by equality with the converted ABACUS ``srs1_nao.csr``).  Values are typically
complex64/float32, so about 7 significant digits.

The structure and basis come from the ABACUS run beside the h5 files (``STRU`` and the ``.orb``
headers), band energies from ``OUT.*/eig_occ.txt`` when present.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..conventions import orbital_table, signed_permutation
from ..errors import FormatError
from ..sample import Sample
from .abacus import find_orbital_files, read_eig_occ, read_input, read_stru, structure_and_basis
from .common import assemble, convert_block, file_record, spin_label

TABLE = "deeptb"
_KEY = re.compile(r"^(-?\d+)_(-?\d+)_(-?\d+)_(-?\d+)_(-?\d+)$")


def read_h5_blocks(path, frame: str = "0", *, spinor: bool, atom_ls) -> dict:
    """Blocks {(i, j, R): array} of one dftio h5 file, converted to the project's orbital order.

    ``spinor``: blocks are (2 n_i, 2 n_j) spin-major complex (H); else (n_i, n_j) real (S).
    Shapes are checked against the basis ``atom_ls`` (shells per atom).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FormatError("missing DeePTB h5 file", subject=str(path))
    table = orbital_table(TABLE, {l for ls in atom_ls for l in ls})
    perms = [signed_permutation(table, ls) for ls in atom_ls]
    n = [len(p[0]) for p in perms]
    out = {}
    try:
        with h5py.File(path, "r") as fh:
            if frame not in fh:
                raise FormatError(f"no frame {frame!r} (frames: {sorted(fh.keys())[:10]})", subject=str(path))
            group = fh[frame]
            for key in group:
                m = _KEY.match(key)
                if not m:
                    raise FormatError(f"block key {key!r} is not 'i_j_Rx_Ry_Rz'", subject=str(path))
                i, j, *r = (int(x) for x in m.groups())
                if not (0 <= i < len(n) and 0 <= j < len(n)):
                    raise FormatError(f"block {key}: atom index outside 0..{len(n) - 1}", subject=str(path))
                b = np.asarray(group[key][()])
                f = 2 if spinor else 1
                if b.shape != (f * n[i], f * n[j]):
                    raise FormatError(f"block {key} has shape {b.shape}, the basis needs {(f * n[i], f * n[j])}",
                                      subject=str(path))
                b = b.astype(np.complex128 if spinor else np.float64)
                if not spinor and np.iscomplexobj(group[key][()]):
                    raise FormatError(f"overlap block {key} is complex", subject=str(path))
                out[(i, j, tuple(r))] = convert_block(b, perms[i], perms[j], f)
    except OSError as err:
        raise FormatError(f"unreadable h5 file ({err})", subject=str(path)) from None
    return out


def import_deeptb(folder, *, frame: str = "0") -> Sample:
    """Import a DeePTB/dftio h5 folder that sits in (or beside) its ABACUS run.

    Reads ``STRU`` (+ ``.orb`` headers) for structure and basis; H from ``hamiltonians_full.h5``
    (else ``hamiltonians.h5``), H0 from ``hamiltonians_0.h5`` (absent -> zeros, flagged
    ``info["h0_available"] = False``), S from ``overlaps.h5``; engine band energies from
    ``OUT.*/eig_occ.txt`` into ``info["engine_bands"]`` (the lowest NBANDS only; ``ref_kpts`` stays
    empty).  The electron count is the sum of the occupations there; the Fermi level is unknown
    (NaN) since the folder has no log.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError("no such folder", subject=str(folder))
    stru_path = folder / "STRU"
    if not stru_path.is_file():
        raise FormatError("no STRU beside the h5 files: the DeePTB importer takes structure and basis from the "
                          "ABACUS run", subject=str(folder))
    stru = read_stru(stru_path)
    input_path = next((p for p in (folder / "INPUT", *sorted(folder.glob("OUT.*/INPUT"))) if p.is_file()), None)
    params = read_input(input_path) if input_path else {}
    orbital_paths = find_orbital_files(stru, folder, params)
    crystal, basis, atom_ls = structure_and_basis(stru, stru_path, orbital_paths, where=folder)
    h_path = next((p for p in (folder / "hamiltonians_full.h5", folder / "hamiltonians.h5") if p.is_file()), None)
    s_path = folder / "overlaps.h5"
    if h_path is None:
        raise FormatError("no hamiltonians_full.h5 or hamiltonians.h5", subject=str(folder))
    if not s_path.is_file():
        raise FormatError("no overlaps.h5", subject=str(folder))
    mats = {"H": read_h5_blocks(h_path, frame, spinor=True, atom_ls=atom_ls),
            "S": read_h5_blocks(s_path, frame, spinor=False, atom_ls=atom_ls)}
    files = [stru_path, h_path, s_path] + [p for p in orbital_paths if p is not None]
    h0_path = folder / "hamiltonians_0.h5"
    if h0_path.is_file():
        mats["H0"] = read_h5_blocks(h0_path, frame, spinor=True, atom_ls=atom_ls)
        files.append(h0_path)
        h0_note = "hamiltonians_0.h5 (zeroth-step H of the same ABACUS run, dftio layout)"
    else:
        h0_note = "absent: no hamiltonians_0.h5; H0 is stored as zeros (info.h0_available = false)"
    bands, n_electrons = [], float("nan")
    eig = next(iter(sorted(folder.glob("OUT.*/eig_occ.txt"))), None)
    if eig is not None:
        sections = read_eig_occ(eig, stru)
        last = {}
        for k, sec in enumerate(sections):   # the last section of each distinct k-set
            last[(len(sec["kpts"]), sec["kpts"].round(8).tobytes())] = k
        for k in sorted(last.values()):
            sec = sections[k]
            bands.append({"source": str(eig.relative_to(folder)), "section": k, "kpts": sec["kpts"].tolist(),
                          "eigenvalues_ev": sec["eigenvalues_ev"].tolist()})
        n_electrons = float(sections[-1]["occupations"].sum())
        files.append(eig)
    spin, trs = spin_label(mats["H"])
    prov = {"source": "deeptb-h5", "source_id": folder.name, "formula": crystal.formula,
            "importer": "materials_ham.formats.deeptb", "folder": str(folder), "frame": frame,
            "files": [file_record(p, folder) for p in dict.fromkeys(files)], "h0": h0_note}
    engine = {"name": "abacus", "version": "unknown (no running log)", "settings": params, "spin": spin,
              "soc": "as in the ABACUS run (lspinorb " + params.get("lspinorb", "?") + ")",
              "source_precision": "h5 dtypes (complex64/float32 in DeePTB's examples)"}
    info = {"h0_available": "H0" in mats, "time_reversal_deviation": trs, "engine_bands": bands,
            "fermi_level_source": "unknown (NaN): the folder has no running log",
            "n_electrons_source": "sum of occupations in eig_occ.txt" if eig is not None else "unknown (NaN)"}
    sample, herm = assemble(crystal, basis, mats, subject=str(folder), fermi_level=float("nan"),
                            n_electrons=n_electrons, engine=engine, provenance=prov, info=info)
    sample.info["hermiticity_before_symmetrize"] = herm
    return sample
