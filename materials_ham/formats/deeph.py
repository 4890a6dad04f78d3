"""DeepH formats: import and export, the current DeepH-dock layout ("new") and legacy DeepH.

**new** (DeepH-dock / DeepH-pack 2, one folder per structure):

* ``POSCAR`` -- cell rows and Cartesian positions (Angstrom); species grouped by element;
* ``info.json`` -- ``atoms_quantity``, ``orbits_quantity`` (spatial orbitals), ``orthogonal_basis``,
  ``spinful``, ``fermi_energy_eV``, ``elements_orbital_map`` {symbol: [l of each shell]};
* ``hamiltonian.h5`` / ``overlap.h5`` -- datasets ``atom_pairs`` (E, 5) int64 rows (Rx, Ry, Rz, i, j),
  0-based atoms in POSCAR order; ``chunk_shapes`` (E, 2); ``chunk_boundaries`` (E+1,); ``entries``
  flat: block n is ``entries[cb[n]:cb[n+1]].reshape(chunk_shapes[n])``.  Orbitals m = -l..l in the
  e3nn ("wiki") order, the project's (``ORBITAL_TABLES["deeph"]``).

**legacy** (DeepH-pack / DeepH-E3):

* ``lat.dat`` (lattice vectors as **columns**, Angstrom), ``rlat.dat`` (reciprocal, columns, 1/Angstrom
  with 2 pi), ``element.dat`` (Z per atom), ``site_positions.dat`` (Cartesian positions as columns),
  ``orbital_types.dat`` (l of each shell, one row per atom), ``info.json`` (``nsites``,
  ``isorthogonal``, ``isspinful``, ``fermi_level``);
* ``hamiltonians.h5`` / ``overlaps.h5`` -- one dataset per block keyed ``"[Rx, Ry, Rz, i, j]"`` with
  **1-based** atoms, OpenMX orbital order (``ORBITAL_TABLES["deeph-legacy"]``; f and higher shells
  are refused: their legacy order is not verified).

Both: eV and Angstrom; blocks X_ij(R) as in the project; a spinful H is complex and spin-major
(2 n_i, 2 n_j) (DeepH-dock's own converter treats both layouts so), S is always real and spinless.
A non-spinful H is real (n_i, n_j) and becomes h x I2 on import.

Our extensions, ignored by DeepH tools, make the round trip exact: H0 in ``hamiltonian_0.h5`` (new) /
``hamiltonians_0.h5`` (legacy) in the same layout as H, and ``materials_ham.json`` with what the
DeepH files cannot hold (basis names and radii, electron count, engine band energies, engine,
provenance, info, pbc, original atom order).  Export writes H spinless when H and H0 are exactly
h x I2 with real h (no SOC), spinful otherwise.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from ..atomic import atomic_directory
from ..conventions import orbital_table, signed_permutation
from ..errors import FormatError
from ..sample import Basis, Crystal, Sample
from .common import assemble, convert_block, file_record, spin_label, spinor_from_spinless

LAYOUTS = ("new", "legacy")
TABLES = {"new": "deeph", "legacy": "deeph-legacy"}
FILES = {
    "new": {"H": "hamiltonian.h5", "S": "overlap.h5", "H0": "hamiltonian_0.h5"},
    "legacy": {"H": "hamiltonians.h5", "S": "overlaps.h5", "H0": "hamiltonians_0.h5"},
}
SIDECAR = "materials_ham.json"
SIDECAR_FORMAT = "materials-ham deeph sidecar"
SIDECAR_VERSION = 1
_LEGACY_KEY = re.compile(r"^\[\s*(-?\d+),\s*(-?\d+),\s*(-?\d+),\s*(-?\d+),\s*(-?\d+)\s*\]$")


def detect_layout(folder) -> str:
    """'new' if the folder has POSCAR + info.json, 'legacy' if it has lat.dat + element.dat."""
    folder = Path(folder)
    if (folder / "POSCAR").is_file() and (folder / "info.json").is_file():
        return "new"
    if (folder / "lat.dat").is_file() and (folder / "element.dat").is_file():
        return "legacy"
    raise FormatError("neither a DeepH-dock folder (POSCAR + info.json) nor a legacy DeepH folder "
                      "(lat.dat + element.dat)", subject=str(folder))


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise FormatError(f"unknown DeepH layout {layout!r}; choose one of {LAYOUTS}")
    return layout


def _perms(atom_ls, layout: str) -> list:
    table = orbital_table(TABLES[layout], {l for ls in atom_ls for l in ls})
    return [signed_permutation(table, ls) for ls in atom_ls]


# --------------------------------------------------------------------------------- export
def _is_spinless(sample: Sample) -> bool:
    """True when H and H0 are exactly h x I2 with real h on every edge (no SOC, no magnetism)."""
    for name in ("H", "H0"):
        for e in range(sample.n_edges):
            b = sample.block(name, e)
            n, m = b.shape[0] // 2, b.shape[1] // 2
            if b.imag.any() or b[:n, m:].any() or b[n:, :m].any() or not np.array_equal(b[:n, :m], b[n:, m:]):
                return False
    return True


def _poscar_text(numbers, cell, positions) -> str:
    runs = []
    for z in numbers:
        if runs and runs[-1][0] == z:
            runs[-1][1] += 1
        else:
            runs.append([int(z), 1])
    lines = ["POSCAR written by materials-ham", "1.0"]
    lines += ["  " + "  ".join(repr(float(x)) for x in row) for row in cell]
    lines += [" ".join(chemical_symbols[z] for z, _ in runs), " ".join(str(c) for _, c in runs), "Cartesian"]
    lines += ["    " + "  ".join(repr(float(x)) for x in p) for p in positions]
    return "\n".join(lines) + "\n"


def _block_lists(sample: Sample, name: str, order: np.ndarray, perms, spinful: bool) -> list[np.ndarray]:
    """Blocks of matrix ``name`` in the format's orbital order, atoms renumbered by ``order``."""
    out = []
    for e in range(sample.n_edges):
        i, j = sample.edge_index[e]
        b = sample.block(name, e)
        if name != "S" and not spinful:
            b = b[:b.shape[0] // 2, :b.shape[1] // 2].real
        f = 2 if name != "S" and spinful else 1
        out.append(convert_block(b, perms[i], perms[j], f, export=True))
    return out


def _write_new_h5(path: Path, pairs: np.ndarray, blocks: list[np.ndarray]) -> None:
    import h5py

    shapes = np.array([b.shape for b in blocks], np.int64).reshape(-1, 2)
    bounds = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])]).astype(np.int64)
    entries = np.concatenate([b.reshape(-1) for b in blocks]) if blocks else np.zeros(0)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("atom_pairs", data=pairs.astype(np.int64))
        fh.create_dataset("chunk_shapes", data=shapes)
        fh.create_dataset("chunk_boundaries", data=bounds)
        fh.create_dataset("entries", data=entries)


def _write_legacy_h5(path: Path, pairs: np.ndarray, blocks: list[np.ndarray]) -> None:
    import h5py

    with h5py.File(path, "w") as fh:
        for (rx, ry, rz, i, j), b in zip(pairs.tolist(), blocks):
            fh.create_dataset(f"[{rx}, {ry}, {rz}, {i + 1}, {j + 1}]", data=b)


def _sidecar(sample: Sample, layout: str, order: np.ndarray, spinful: bool, h0_written: bool) -> dict:
    return {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "layout": layout,
        "note": "materials-ham metadata the DeepH files cannot hold; DeepH tools ignore this file",
        "atom_order": order.tolist(), "pbc": sample.crystal.pbc.tolist(),
        "basis": {str(z): b.to_dict() for z, b in sorted(sample.basis.items())},
        "spinful_written": spinful, "h0_written": h0_written,
        "fermi_level": sample.fermi_level, "n_electrons": sample.n_electrons,
        "ref_kpts": sample.ref_kpts.tolist(), "ref_eigenvalues": sample.ref_eigenvalues.tolist(),
        "ref_eigenvalues_shape": list(sample.ref_eigenvalues.shape),
        "engine": sample.engine, "provenance": sample.provenance, "info": sample.info,
    }


def export_deeph(sample: Sample, out, layout: str = "new") -> Path:
    """Write ``sample`` as a DeepH folder ``out`` (replaced atomically) in ``layout`` 'new' or 'legacy'.

    H (and H0, when the sample has one) are spinful complex spin-major blocks, or real spinless
    blocks when the sample has no SOC and no magnetism (exactly h x I2); S real spinless.  Atoms
    are grouped by element in the new layout's POSCAR (DeepH-dock's convention); the original
    order is kept in ``materials_ham.json``.  Units eV, Angstrom.
    """
    layout = _check_layout(layout)
    out = Path(out)
    numbers = sample.crystal.numbers
    atom_ls = [sample.basis[int(z)].ls for z in numbers]
    perms = _perms(atom_ls, layout)
    spinful = not _is_spinless(sample)
    h0 = bool(sample.info.get("h0_available", True))
    if layout == "new":   # group atoms by element, in order of first appearance (stable)
        first = {int(z): k for k, z in reversed(list(enumerate(numbers)))}
        order = np.array(sorted(range(len(numbers)), key=lambda a: (first[int(numbers[a])], a)), np.int64)
    else:
        order = np.arange(len(numbers), dtype=np.int64)
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    pairs = np.concatenate([sample.edge_shift, new_index[sample.edge_index]], axis=1)
    perms_by_old = perms
    names = ["H", "S"] + (["H0"] if h0 else [])
    with atomic_directory(out) as tmp:
        for name in names:
            blocks = _block_lists(sample, name, order, perms_by_old, spinful)
            path = tmp / FILES[layout][name]
            (_write_new_h5 if layout == "new" else _write_legacy_h5)(path, pairs, blocks)
        symbols_map = {}
        for z in dict.fromkeys(int(z) for z in numbers[order]):
            symbols_map[chemical_symbols[z]] = list(sample.basis[z].ls)
        if layout == "new":
            (tmp / "POSCAR").write_text(_poscar_text(numbers[order], sample.crystal.cell,
                                                     sample.crystal.positions[order]))
            info = {"atoms_quantity": len(numbers), "orbits_quantity": int(sample.nao), "orthogonal_basis": False,
                    "spinful": spinful, "fermi_energy_eV": _json_float(sample.fermi_level),
                    "elements_orbital_map": symbols_map}
        else:
            cell = sample.crystal.cell
            np.savetxt(tmp / "lat.dat", cell.T, fmt="%.17g")
            np.savetxt(tmp / "rlat.dat", 2 * np.pi * np.linalg.inv(cell), fmt="%.17g")  # columns b_i
            np.savetxt(tmp / "site_positions.dat", sample.crystal.positions.T, fmt="%.17g")
            np.savetxt(tmp / "element.dat", numbers, fmt="%d")
            (tmp / "orbital_types.dat").write_text("".join("  ".join(str(l) for l in ls) + "\n" for ls in atom_ls))
            info = {"nsites": len(numbers), "isorthogonal": False, "isspinful": spinful,
                    "fermi_level": _json_float(sample.fermi_level)}
        (tmp / "info.json").write_text(json.dumps(info))
        (tmp / SIDECAR).write_text(json.dumps(_sidecar(sample, layout, order, spinful, h0), indent=1))
    return out


def _json_float(x: float):
    return None if not np.isfinite(x) else float(x)


def export_deeph_dataset(dataset, out, *, split: str | None = "test", layout: str = "new",
                         progress: bool = False) -> list[Path]:
    """Export every structure of a dataset split as ``out/<structure id>/`` DeepH folders.

    ``dataset``: a packed dataset folder or name accepted by :func:`materials_ham.load_dataset`.
    The whole ``out`` folder is written atomically.  Returns the structure folders.
    """
    from ..data import load_dataset

    layout = _check_layout(layout)
    ds = load_dataset(dataset, split=split)
    ids = ds.ids
    out = Path(out)
    done = []
    with atomic_directory(out) as tmp:
        it = range(len(ds))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"DeepH {layout} export", unit="structure")
        for k in it:
            name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(ids[k]))
            export_deeph(ds[k], tmp / name, layout)
            done.append(out / name)
    return done


# --------------------------------------------------------------------------------- import
def _read_json(path: Path) -> dict:
    from ..atomic import read_json_object

    return read_json_object(path)


def read_poscar(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(numbers (n,), cell (3, 3) rows Angstrom, Cartesian positions (n, 3) Angstrom) of a VASP5 POSCAR."""
    path = Path(path)
    if not path.is_file():
        raise FormatError("missing POSCAR", subject=str(path))
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    try:
        scale = float(lines[1].split()[0])
        if scale <= 0:
            raise FormatError("a negative (volume) scale factor is not supported", subject=str(path))
        cell = np.array([[float(x) for x in lines[k].split()[:3]] for k in (2, 3, 4)]) * scale
        symbols = lines[5].split()
        counts = [int(x) for x in lines[6].split()]
        k = 7
        if lines[k][:1].lower() == "s":
            k += 1
        mode = lines[k][:1].lower()
        n = sum(counts)
        coords = np.array([[float(x) for x in lines[k + 1 + a].split()[:3]] for a in range(n)])
    except (IndexError, ValueError):
        raise FormatError("cannot parse as a VASP5 POSCAR (symbols line required)", subject=str(path)) from None
    if len(symbols) != len(counts) or any(s not in atomic_numbers for s in symbols):
        raise FormatError(f"bad species line {lines[5]!r} / counts {lines[6]!r}", subject=str(path))
    positions = coords * scale if mode in ("c", "k") else coords @ cell
    numbers = np.repeat([atomic_numbers[s] for s in symbols], counts)
    return numbers.astype(np.int64), cell, positions


def _read_new_h5(path: Path, nat: int) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            for key in ("atom_pairs", "chunk_shapes", "chunk_boundaries", "entries"):
                if key not in fh:
                    raise FormatError(f"no dataset {key!r}", subject=str(path))
            pairs = np.asarray(fh["atom_pairs"][()], np.int64)
            shapes = np.asarray(fh["chunk_shapes"][()], np.int64)
            bounds = np.asarray(fh["chunk_boundaries"][()], np.int64)
            entries = np.asarray(fh["entries"][()])
    except OSError as err:
        raise FormatError(f"unreadable h5 file ({err})", subject=str(path)) from None
    E = len(pairs)
    if pairs.shape != (E, 5) or shapes.shape != (E, 2) or bounds.shape != (E + 1,):
        raise FormatError(f"inconsistent shapes: atom_pairs {pairs.shape}, chunk_shapes {shapes.shape}, "
                          f"chunk_boundaries {bounds.shape}", subject=str(path))
    if entries.ndim != 1 or bounds[-1] != entries.size or (np.diff(bounds) != shapes[:, 0] * shapes[:, 1]).any():
        raise FormatError("chunk_boundaries do not match chunk_shapes and entries", subject=str(path))
    if E and (pairs[:, 3:].min() < 0 or pairs[:, 3:].max() >= nat):
        raise FormatError(f"atom index outside 0..{nat - 1}", subject=str(path))
    return {(int(p[3]), int(p[4]), (int(p[0]), int(p[1]), int(p[2]))): entries[bounds[n]:bounds[n + 1]].reshape(shapes[n])
            for n, p in enumerate(pairs)}


def _read_legacy_h5(path: Path, nat: int) -> dict:
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as fh:
            for key in fh:
                m = _LEGACY_KEY.match(key)
                if not m:
                    raise FormatError(f"key {key!r} is not '[Rx, Ry, Rz, i, j]'", subject=str(path))
                rx, ry, rz, i, j = (int(x) for x in m.groups())
                if not (1 <= i <= nat and 1 <= j <= nat):
                    raise FormatError(f"key {key}: atom index outside 1..{nat} (legacy keys are 1-based)",
                                      subject=str(path))
                out[(i - 1, j - 1, (rx, ry, rz))] = np.asarray(fh[key][()])
    except OSError as err:
        raise FormatError(f"unreadable h5 file ({err})", subject=str(path)) from None
    return out


def _structure(folder: Path, layout: str):
    """numbers, cell, positions, shells per atom, spinful, Fermi level (eV or NaN), files read."""
    if layout == "new":
        numbers, cell, positions = read_poscar(folder / "POSCAR")
        info = _read_json(folder / "info.json")
        omap = info.get("elements_orbital_map")
        if not isinstance(omap, dict):
            raise FormatError("no elements_orbital_map", subject=str(folder / "info.json"))
        try:
            atom_ls = [tuple(int(l) for l in omap[chemical_symbols[z]]) for z in numbers]
        except KeyError as err:
            raise FormatError(f"elements_orbital_map has no entry for {err.args[0]}",
                              subject=str(folder / "info.json")) from None
        if int(info.get("atoms_quantity", len(numbers))) != len(numbers):
            raise FormatError(f"atoms_quantity {info['atoms_quantity']} but POSCAR has {len(numbers)} atoms",
                              subject=str(folder / "info.json"))
        spinful, fermi = bool(info.get("spinful", False)), info.get("fermi_energy_eV")
        orthogonal = bool(info.get("orthogonal_basis", False))
        files = [folder / "POSCAR", folder / "info.json"]
    else:
        def load(name, ndmin=2):
            p = folder / name
            if not p.is_file():
                raise FormatError(f"missing legacy DeepH file {name}", subject=str(p))
            try:
                return np.loadtxt(p, ndmin=ndmin)
            except ValueError as err:
                raise FormatError(f"unreadable ({err})", subject=str(p)) from None

        cell = load("lat.dat").T
        numbers = load("element.dat", 1).astype(np.int64)
        positions = load("site_positions.dat").T.reshape(-1, 3) if len(numbers) else np.zeros((0, 3))
        if cell.shape != (3, 3) or positions.shape != (len(numbers), 3):
            raise FormatError(f"lat.dat {cell.shape} / site_positions.dat {positions.shape} do not fit "
                              f"{len(numbers)} atoms (vectors and positions are columns)", subject=str(folder))
        lines = [ln.split() for ln in (folder / "orbital_types.dat").read_text().splitlines() if ln.strip()] \
            if (folder / "orbital_types.dat").is_file() else None
        if lines is None or len(lines) != len(numbers):
            raise FormatError(f"orbital_types.dat needs one row per atom ({len(numbers)})",
                              subject=str(folder / "orbital_types.dat"))
        atom_ls = [tuple(int(l) for l in row) for row in lines]
        info = _read_json(folder / "info.json")
        spinful, fermi = bool(info.get("isspinful", False)), info.get("fermi_level")
        orthogonal = bool(info.get("isorthogonal", False))
        files = [folder / n for n in ("lat.dat", "element.dat", "site_positions.dat", "orbital_types.dat", "info.json")]
    fermi = float("nan") if fermi is None else float(fermi)
    return numbers, cell, positions, atom_ls, spinful, fermi, orthogonal, files


def import_deeph(folder, layout: str | None = None) -> Sample:
    """Import one DeepH structure folder (``layout`` 'new', 'legacy' or None: detected).

    Returns a :class:`Sample` in the project's conventions (eV, Angstrom, e3nn m order, spin-major
    spinor H; a non-spinful H becomes h x I2).  H0 comes from our extension file when present,
    else it is absent (zeros, ``info["h0_available"] = False``).  Without our sidecar the basis is
    named by its shells only (DeepH files carry no basis names or radii), the electron count is
    NaN and there are no engine band energies.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError("no such DeepH folder", subject=str(folder))
    layout = _check_layout(layout or detect_layout(folder))
    numbers, cell, positions, atom_ls, spinful, fermi, orthogonal, files = _structure(folder, layout)
    perms = _perms(atom_ls, layout)
    n = np.array([len(p[0]) for p in perms])
    reader = _read_new_h5 if layout == "new" else _read_legacy_h5
    mats: dict[str, dict] = {}
    for name in ("H", "S", "H0"):
        path = folder / FILES[layout][name]
        if not path.is_file():
            if name == "H":
                raise FormatError(f"missing {FILES[layout]['H']}", subject=str(path))
            if name == "S" and not orthogonal:
                raise FormatError(f"missing {FILES[layout]['S']} (and the basis is not orthogonal)",
                                  subject=str(path))
            continue
        files.append(path)
        spin_blocks = name != "S" and spinful
        f = 2 if spin_blocks else 1
        blocks = {}
        for (i, j, r), b in reader(path, len(numbers)).items():
            if b.shape != (f * n[i], f * n[j]):
                raise FormatError(f"block (i={i}, j={j}, R={r}) has shape {b.shape}, the basis needs "
                                  f"{(f * n[i], f * n[j])}{' (spinful)' if spin_blocks else ''}", subject=str(path))
            if name == "S" and np.iscomplexobj(b):
                if np.abs(b.imag).max(initial=0) > 0:
                    raise FormatError("the overlap has imaginary parts", subject=str(path))
                b = b.real
            b = convert_block(b, perms[i], perms[j], f)
            if name != "S" and not spinful:
                if np.iscomplexobj(b) and np.abs(b.imag).max(initial=0) > 0:
                    raise FormatError("a non-spinful Hamiltonian with imaginary parts", subject=str(path))
                b = spinor_from_spinless(b.real)
            blocks[(i, j, r)] = b.astype(np.complex128) if name != "S" else b.astype(np.float64)
        mats[name] = blocks
    if "S" not in mats:   # orthogonal basis: S is the identity on-site
        mats["S"] = {(a, a, (0, 0, 0)): np.eye(n[a]) for a in range(len(numbers))}
    side = _read_json(folder / SIDECAR) if (folder / SIDECAR).is_file() else None
    if side is not None:
        files.append(folder / SIDECAR)
    crystal, basis, fields = _finish(folder, layout, numbers, cell, positions, atom_ls, fermi, mats, side)
    if side is None:
        spin, trs = spin_label(mats["H"])
        fields["engine"] = {"name": "unknown", "version": "unknown", "spin": spin,
                            "note": f"imported from a DeepH {layout} folder, which does not name its engine"}
        fields["provenance"] = {"source": f"deeph-{layout}", "source_id": folder.name, "formula": crystal.formula}
        fields["info"] = {"h0_available": "H0" in mats, "time_reversal_deviation": trs,
                          "fermi_level_source": "info.json" if np.isfinite(fermi) else "unknown (NaN)"}
    fields["provenance"] = {**fields["provenance"], "imported_from": {
        "format": f"deeph-{layout}", "folder": str(folder), "importer": "materials_ham.formats.deeph",
        "files": [file_record(p, folder) for p in dict.fromkeys(files)]}}
    if "H0" not in mats and side is None:
        fields["provenance"]["h0"] = "absent: no H0 file in the DeepH folder; H0 is stored as zeros " \
                                     "(info.h0_available = false)"
    sample, herm = assemble(crystal, basis, mats, subject=str(folder), **fields)
    if side is None:
        sample.info["hermiticity_before_symmetrize"] = herm
    return sample


def _finish(folder, layout, numbers, cell, positions, atom_ls, fermi, mats, side):
    """Crystal, basis and Sample fields, restoring our sidecar (and the original atom order) when present."""
    basis: dict[int, Basis] = {}
    for z, ls in zip(numbers, atom_ls):
        if int(z) in basis and basis[int(z)].ls != ls:
            raise FormatError(f"two atoms of {chemical_symbols[z]} with different shells", subject=str(folder))
        basis[int(z)] = Basis("unknown", f"DeepH {layout} import: l = {list(ls)}", ls)
    pbc = np.ones(3, bool)
    fields: dict = {"fermi_level": fermi, "n_electrons": float("nan")}
    if side is not None:
        if side.get("format") != SIDECAR_FORMAT or side.get("version") != SIDECAR_VERSION:
            raise FormatError(f"not a {SIDECAR_FORMAT} version {SIDECAR_VERSION}", subject=str(folder / SIDECAR))
        stored = {int(z): Basis.from_dict(d) for z, d in side["basis"].items()}
        if any(stored.get(z) is None or stored[z].ls != b.ls for z, b in basis.items()):
            raise FormatError("the sidecar's basis does not match the DeepH files' shells", subject=str(folder / SIDECAR))
        basis = stored
        order = np.asarray(side.get("atom_order", range(len(numbers))), np.int64)
        if sorted(order.tolist()) != list(range(len(numbers))):
            raise FormatError("bad atom_order", subject=str(folder / SIDECAR))
        if not np.array_equal(order, np.arange(len(numbers))):   # back to the original atom order
            new_of_old = np.empty_like(order)
            new_of_old[order] = np.arange(len(order))
            numbers, positions = numbers[new_of_old], positions[new_of_old]
            for name, blocks in mats.items():
                mats[name] = {(int(order[i]), int(order[j]), r): b for (i, j, r), b in blocks.items()}
        pbc = np.asarray(side.get("pbc", [True] * 3), bool)
        eig = np.asarray(side["ref_eigenvalues"], float).reshape(side["ref_eigenvalues_shape"])
        fields.update(n_electrons=float(side["n_electrons"]), ref_kpts=np.asarray(side["ref_kpts"], float).reshape(-1, 3),
                      ref_eigenvalues=eig, engine=side["engine"], provenance=side["provenance"], info=side["info"])
        if side.get("fermi_level") is not None:
            fields["fermi_level"] = float(side["fermi_level"])
    return Crystal(numbers, positions, cell, pbc), basis, fields
