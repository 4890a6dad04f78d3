"""ABACUS LCAO runs -> :class:`~materials_ham.sample.Sample`.

What an ABACUS run folder holds and how each piece is read:

* ``STRU`` (:func:`read_stru`): species, orbital files, ``LATTICE_CONSTANT`` (Bohr), cell rows
  (units of the lattice constant), positions (``Direct``, ``Cartesian`` [lattice-constant units],
  ``Cartesian_angstrom``, ``Cartesian_au``) and magnetisations.
* ``INPUT`` (:func:`read_input`): ``key value`` pairs (nspin, lspinorb, suffix, ...).  ABACUS echoes
  every parameter into ``OUT.<suffix>/INPUT``; that echo is preferred.
* ``running_*.log`` (:func:`read_running_log`): version, "L=l, number of zeta = n" per element,
  nspin, NLOCAL, Fermi level (eV), electron count.  The log layout is only known for ABACUS 3.x
  (checked on v3.10.0); any other version, or a 3.x log missing a marker, is a
  :class:`FormatError` naming what was not found -- never a guess.
* ``*.orb`` headers (:func:`read_orbital_header`): shells per l and cutoff radius; used for the
  basis where no log exists (ABACUS test references) and to cross-check the log.
* real-space CSR text (:func:`read_csr`), with either file naming (``data-HR-sparse_SPIN0.csr`` /
  ``hrs1_nao.csr``) and either header, told apart by content, never by name:

  - old: ``[STEP: n]`` / ``Matrix Dimension of X(R): d`` / ``Matrix number of X(R): m``;
  - new (ABACUS 3.11): commented header (``# number of localized basis``, ...), a lattice block
    (lattice constant in Angstrom), a comment box, and ``# CSR values`` / ``# CSR column indices`` /
    ``# CSR row pointers`` comment lines, each list wrapped over several lines.

  Then per R: ``Rx Ry Rz nnz`` and, when nnz > 0, nnz values, nnz column indices and d+1 row
  pointers.  Parsing counts tokens: a wrapped line of four column indices looks exactly like an
  R line.  Values are real, or ``(re,im)`` for nspin 4, where the index is 2*mu + s (spin
  interleaved, s = 0 up).  H is in Rydberg, S dimensionless.

Conversions (all from :mod:`materials_ham.conventions`): H * ``RYDBERG_EV``; orbitals through
``ORBITAL_TABLES["abacus"]`` (m = 0, +1, -1, ... with (-1)^m signs -> m = -l..l); interleaved spin
-> spin-major blocks; with nspin 4, S must be spin-diagonal, equal in both spins and real, and
its up-up part is kept; with nspin 1, H becomes H x I2.  Block X_ij(R) takes the rows of atom i
in cell 0 and the columns of atom j in cell R.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

from ..conventions import BOHR_ANGSTROM, RYDBERG_EV, orbital_table, signed_permutation
from ..errors import FormatError
from ..sample import Basis, Crystal, Sample
from .common import assemble, file_record, spin_label, spinor_from_spinless

ENGINE = "abacus"
#: File names of the real-space matrices, in order of preference ("old" and "new" naming;
#: ABACUS's own test references add ".ref").  The header, not the name, decides the format.
H_NAMES = ("hrs1_nao.csr", "data-HR-sparse_SPIN0.csr", "hrs1_nao.csr.ref", "data-HR-sparse_SPIN0.csr.ref")
S_NAMES = ("srs1_nao.csr", "data-SR-sparse_SPIN0.csr", "srs1_nao.csr.ref", "data-SR-sparse_SPIN0.csr.ref")
#: Running-log layouts this importer knows, by ABACUS major version.
LOG_LAYOUTS = {3: "ABACUS 3.x running log (checked on v3.10.0)"}
#: Largest allowed |S_ud|, |S_uu - S_dd|, |Im S| in an nspin-4 overlap (the file is rounded).
SPIN_S_TOLERANCE = 1e-6
_SHELL_LETTERS = "SPDFGHI"


# --------------------------------------------------------------------------------- helpers
def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise FormatError(f"missing {what}", subject=str(path))
    try:
        return path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"unreadable {what} ({type(err).__name__}: {err})", subject=str(path)) from None


def _strip_comment(line: str) -> str:
    for mark in ("//", "#"):
        k = line.find(mark)
        if k >= 0:
            line = line[:k]
    return line.strip()


def _float(token: str, path: Path, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise FormatError(f"expected a number for {what}, found {token!r}", subject=str(path)) from None


def _int(token: str, path: Path, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise FormatError(f"expected an integer for {what}, found {token!r}", subject=str(path)) from None


# ----------------------------------------------------------------------------------- INPUT
def read_input(path) -> dict[str, str]:
    """``INPUT`` as {lower-case key: value string}; comments (``#``, ``//``) removed."""
    path = Path(path)
    text = _read_text(path, "ABACUS INPUT file")
    params: dict[str, str] = {}
    started = False
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        if line.upper().startswith("INPUT_PARAMETERS"):
            started = True
            continue
        parts = line.split(None, 1)
        params[parts[0].lower()] = parts[1].strip() if len(parts) > 1 else ""
    if not started:
        raise FormatError("no INPUT_PARAMETERS line: not an ABACUS INPUT file", subject=str(path))
    return params


def _input_int(params: dict, key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    word = value.split()[0].lower()
    if word in ("true", "t"):
        return 1
    if word in ("false", "f"):
        return 0
    try:
        return int(float(word))
    except ValueError:
        raise FormatError(f"INPUT parameter {key} = {value!r} is not a number") from None


# ------------------------------------------------------------------------------------ STRU
@dataclass
class AbacusStructure:
    """A parsed ``STRU``: per species ``labels``, ``pseudo_files``, ``orbital_files``; per atom
    ``species`` (index), ``positions`` (n, 3) Angstrom, ``magnetization`` (n,) or (n, 3); ``cell``
    (3, 3) Angstrom rows; ``lattice_constant_bohr``."""

    labels: list[str]
    pseudo_files: list[str]
    orbital_files: list[str]
    lattice_constant_bohr: float
    cell: np.ndarray
    species: np.ndarray
    positions: np.ndarray
    magnetization: list
    coordinate_type: str

    def element_numbers(self, orbital_elements: dict[int, str] | None = None) -> np.ndarray:
        """Z per species from the labels (``Fe1`` -> Fe), cross-checked with the .orb headers."""
        out = []
        for s, label in enumerate(self.labels):
            m = re.match(r"[A-Z][a-z]?", label)
            z = atomic_numbers.get(m.group(0)) if m else None
            orb = (orbital_elements or {}).get(s)
            if z is None and m and m.group(0)[:1] in atomic_numbers:
                z = atomic_numbers[m.group(0)[:1]]
            if orb is not None:
                zo = atomic_numbers.get(orb)
                if zo is None:
                    raise FormatError(f"orbital file of species {label!r} names an unknown element {orb!r}")
                if z is not None and z != zo:
                    raise FormatError(f"species label {label!r} does not match its orbital file's element {orb!r}")
                z = zo
            if z is None:
                raise FormatError(f"cannot tell the element of species label {label!r}")
            out.append(z)
        return np.array(out, np.int64)


def read_stru(path) -> AbacusStructure:
    """Parse an ABACUS ``STRU`` file (see :class:`AbacusStructure` for units)."""
    path = Path(path)
    text = _read_text(path, "ABACUS STRU file")
    keywords = ("ATOMIC_SPECIES", "NUMERICAL_ORBITAL", "LATTICE_CONSTANT", "LATTICE_VECTORS", "LATTICE_PARAMETERS",
                "ATOMIC_POSITIONS", "NUMERICAL_DESCRIPTOR", "ABFS_ORBITAL", "PAW_FILES")
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        word = line.split()[0].upper()
        if word in keywords:
            current = word
            sections[current] = []
            continue
        if current is None:
            raise FormatError(f"text before the first section keyword: {line!r}", subject=str(path))
        sections[current].append(line)
    for need in ("ATOMIC_SPECIES", "LATTICE_CONSTANT", "ATOMIC_POSITIONS"):
        if need not in sections:
            raise FormatError(f"no {need} section", subject=str(path))
    if "LATTICE_VECTORS" not in sections:
        raise FormatError("no LATTICE_VECTORS section (cells given by latname/LATTICE_PARAMETERS are not supported)",
                          subject=str(path))
    labels, pseudos = [], []
    for line in sections["ATOMIC_SPECIES"]:
        t = line.split()
        labels.append(t[0])
        pseudos.append(t[2] if len(t) > 2 else "")
    orbitals = [line.split()[0] for line in sections.get("NUMERICAL_ORBITAL", [])]
    if orbitals and len(orbitals) != len(labels):
        raise FormatError(f"{len(labels)} species but {len(orbitals)} orbital files", subject=str(path))
    lat0 = _float(sections["LATTICE_CONSTANT"][0].split()[0], path, "LATTICE_CONSTANT")
    rows = sections["LATTICE_VECTORS"]
    if len(rows) < 3:
        raise FormatError("LATTICE_VECTORS needs three rows", subject=str(path))
    vectors = np.array([[_float(x, path, "a lattice vector") for x in r.split()[:3]] for r in rows[:3]])
    if vectors.shape != (3, 3):
        raise FormatError("LATTICE_VECTORS rows need three numbers each", subject=str(path))
    cell = vectors * lat0 * BOHR_ANGSTROM

    lines = sections["ATOMIC_POSITIONS"]
    ctype = lines[0].split()[0]
    k = 1
    species, coords, mags = [], [], []
    for s, label in enumerate(labels):
        if k + 2 >= len(lines) + 1 or k >= len(lines):
            raise FormatError(f"ATOMIC_POSITIONS ends before species {label!r}", subject=str(path))
        if lines[k].split()[0] != label:
            raise FormatError(f"ATOMIC_POSITIONS lists {lines[k].split()[0]!r} where species {s + 1} ({label!r}) "
                              "is expected (same order as ATOMIC_SPECIES)", subject=str(path))
        mag_species = _float(lines[k + 1].split()[0], path, f"magnetism of {label}")
        count = _int(lines[k + 2].split()[0], path, f"number of {label} atoms")
        k += 3
        for a in range(count):
            if k >= len(lines):
                raise FormatError(f"ATOMIC_POSITIONS ends inside species {label!r} (atom {a + 1} of {count})",
                                  subject=str(path))
            t = lines[k].split()
            coords.append([_float(x, path, f"a position of {label}") for x in t[:3]])
            mag = mag_species
            if "mag" in t or "magmom" in t:
                q = t.index("mag") if "mag" in t else t.index("magmom")
                vals = []
                for x in t[q + 1:q + 4]:
                    try:
                        vals.append(float(x))
                    except ValueError:
                        break
                mag = vals[0] if len(vals) == 1 else vals
            mags.append(mag)
            species.append(s)
            k += 1
    coords = np.array(coords, float).reshape(-1, 3)
    low = ctype.lower()
    if low == "direct":
        positions = coords @ cell
    elif low == "cartesian":
        positions = coords * lat0 * BOHR_ANGSTROM
    elif low == "cartesian_angstrom":
        positions = coords
    elif low == "cartesian_au":
        positions = coords * BOHR_ANGSTROM
    else:
        raise FormatError(f"coordinate type {ctype!r} is not supported (Direct, Cartesian, Cartesian_angstrom, "
                          "Cartesian_au)", subject=str(path))
    return AbacusStructure(labels, pseudos, orbitals, lat0, cell, np.array(species, np.int64), positions, mags, ctype)


# ------------------------------------------------------------------------------- .orb files
@dataclass
class OrbitalHeader:
    """Header of an ABACUS numerical orbital file: element, shells ``ls`` (ABACUS order: l
    ascending, zeta inner), cutoff radius (Bohr)."""

    element: str
    ls: tuple[int, ...]
    rcut_bohr: float


def read_orbital_header(path) -> OrbitalHeader:
    """Parse the summary header of an ABACUS ``.orb`` file."""
    path = Path(path)
    if not path.is_file():
        raise FormatError("missing ABACUS orbital file", subject=str(path))
    fields: dict[str, str] = {}
    with open(path, errors="replace") as fh:
        for n, line in enumerate(fh):
            if "SUMMARY" in line or n > 60:
                break
            m = re.match(r"\s*(Element|Radius Cutoff\(a\.u\.\)|Lmax|Number of ([A-Z])orbital-->)\s+(\S+)", line)
            if m:
                fields[m.group(2) or m.group(1)] = m.group(3)
    for need in ("Element", "Lmax", "Radius Cutoff(a.u.)"):
        if need not in fields:
            raise FormatError(f"no {need!r} line in the orbital file header", subject=str(path))
    lmax = _int(fields["Lmax"], path, "Lmax")
    ls: list[int] = []
    for l in range(lmax + 1):
        letter = _SHELL_LETTERS[l]
        if letter not in fields:
            raise FormatError(f"no 'Number of {letter}orbital-->' line for l = {l}", subject=str(path))
        ls += [l] * _int(fields[letter], path, f"number of {letter} orbitals")
    return OrbitalHeader(fields["Element"], tuple(ls), _float(fields["Radius Cutoff(a.u.)"], path, "the cutoff"))


# ----------------------------------------------------------------------------- running log
@dataclass
class AbacusLog:
    """What the importer takes from ``running_*.log``: ``version`` string, ``zeta`` per species
    label as [(l, number of zeta)], ``nspin``, ``nlocal`` (matrix dimension, x2 with nspin 4),
    ``fermi_ev`` (None if absent), ``n_electrons`` (None if absent), ``converged`` and
    ``etot_ev`` (None if absent)."""

    path: Path
    version: str
    layout: str
    zeta: dict[str, list[tuple[int, int]]]
    atoms_per_species: dict[str, int]
    nspin: int
    nlocal: int
    fermi_ev: float | None
    n_electrons: float | None
    converged: bool
    etot_ev: float | None

    def shell_ls(self, label: str) -> tuple[int, ...]:
        return tuple(l for l, nz in self.zeta[label] for _ in range(nz))


_NUM = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def read_running_log(path) -> AbacusLog:
    """Parse an ABACUS ``running_*.log``; its layout version is checked first (:data:`LOG_LAYOUTS`).

    A log from an unknown ABACUS major version, without a version line, or missing one of the
    markers the importer reads raises :class:`FormatError` saying which and why.
    """
    path = Path(path)
    text = _read_text(path, "ABACUS running log")
    head = "\n".join(text.splitlines()[:60])
    m = re.search(r"ABACUS\s+v?(\d+)\.(\d+)(?:\.(\d+))?", head)
    if not m:
        raise FormatError("no 'ABACUS vX.Y.Z' version line in the first 60 lines: unknown running-log layout "
                          f"(known: {', '.join(LOG_LAYOUTS.values())}); not guessing", subject=str(path))
    version = ".".join(g for g in m.groups() if g is not None)
    major = int(m.group(1))
    if major not in LOG_LAYOUTS:
        raise FormatError(f"running log of ABACUS v{version}: its layout is not known to this importer (known: "
                          f"{', '.join(LOG_LAYOUTS.values())}); not guessing (omit the log with no_log / --no-log "
                          "to read the basis from STRU and the .orb files instead)", subject=str(path))

    def need(pattern: str, what: str, last: bool = False):
        found = list(re.finditer(pattern, text, re.M))
        if not found:
            raise FormatError(f"ABACUS v{version} log without {what} (pattern {pattern!r}): the log layout has "
                              "drifted from the known 3.x layout; not guessing", subject=str(path))
        return found[-1] if last else found[0]

    zeta: dict[str, list[tuple[int, int]]] = {}
    natoms: dict[str, int] = {}
    types = list(re.finditer(r"READING ATOM TYPE\s+(\d+)", text))
    if not types:
        need(r"READING ATOM TYPE\s+(\d+)", "'READING ATOM TYPE n' sections")
    for t, start in enumerate(types):
        end = types[t + 1].start() if t + 1 < len(types) else len(text)
        chunk = text[start.end():end]
        lab = re.search(r"atom label\s*=\s*(\S+)", chunk)
        zs = re.findall(r"L=(\d+), number of zeta\s*=\s*(\d+)", chunk)
        na = re.search(r"number of atom for this type\s*=\s*(\d+)", chunk)
        if not (lab and zs and na):
            raise FormatError(f"ABACUS v{version} log: atom type {start.group(1)} lacks 'atom label', 'L=l, number "
                              "of zeta' or 'number of atom for this type' lines: layout drift; not guessing",
                              subject=str(path))
        zeta[lab.group(1)] = [(int(l), int(n)) for l, n in zs]
        natoms[lab.group(1)] = int(na.group(1))
    nspin = int(need(r"^\s*nspin\s*=\s*(\d+)", "an 'nspin = n' line").group(1))
    nlocal = int(need(r"NLOCAL\s*=\s*(\d+)", "an 'NLOCAL = n' line").group(1))
    fermi = [float(x) for x in re.findall(r"EFERMI\s*=\s*" + _NUM + r"\s*eV", text)]
    elec = re.search(r"(?:AUTOSET number of electrons:|number of electrons)\s*=\s*" + _NUM, text)
    etot = re.findall(r"!FINAL_ETOT_IS\s+" + _NUM, text)
    return AbacusLog(path=path, version=version, layout=LOG_LAYOUTS[major], zeta=zeta, atoms_per_species=natoms,
                     nspin=nspin, nlocal=nlocal, fermi_ev=fermi[-1] if fermi else None,
                     n_electrons=float(elec.group(1)) if elec else None,
                     converged="charge density convergence is achieved" in text,
                     etot_ev=float(etot[-1]) if etot else None)


# ------------------------------------------------------------------------------------- CSR
@dataclass
class AbacusCSR:
    """One real-space CSR file as flat entries.

    ``dim`` is the matrix dimension (2 x orbitals with nspin 4); ``shifts`` (nR, 3) the lattice
    vectors listed; entry k is ``values[k]`` (float64 or complex128, file units) at
    (``rows[k]``, ``cols[k]``) of block ``block[k]``.  ``header`` is "old" or "new"; ``lattice``
    holds the new header's cell block (lattice constant in Angstrom, cell rows in its units).
    """

    path: Path
    header: str
    matrix: str
    step: int | None
    dim: int
    shifts: np.ndarray
    nnz: np.ndarray
    block: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    is_complex: bool
    lattice: dict | None = None
    spin: dict = field(default_factory=dict)

    @property
    def n_entries(self) -> int:
        return len(self.values)


_OLD_DIM = re.compile(r"Matrix Dimension of\s+(\w+)\(R\)\s*:\s*(\S+)")
_OLD_NUM = re.compile(r"Matrix number of\s+(\w+)\(R\)\s*:\s*(\S+)")
_NEW_FIELD = re.compile(r"^\s*(\S+)\s+#\s*(number of spin directions|spin index|number of localized basis|"
                        r"number of Bravais lattice vector R)\s*$")


def read_csr(path) -> AbacusCSR:
    """Parse an ABACUS real-space CSR file (old or new header, real or ``(re,im)`` values).

    Raises :class:`FormatError` naming the file for an unknown header, a truncated file, stray
    tokens, or inconsistent row pointers / column indices.
    """
    path = Path(path)
    text = _read_text(path, "ABACUS CSR matrix file")
    lines = text.splitlines()
    first = [ln for ln in lines[:12] if ln.strip()]
    if any(_OLD_DIM.search(ln) for ln in first):
        header, matrix, step, dim, n_r, body, lattice, spin = _old_header(lines, path)
    elif any(_NEW_FIELD.match(ln) for ln in first):
        header, matrix, step, dim, n_r, body, lattice, spin = _new_header(lines, path)
    else:
        raise FormatError("unrecognised CSR header: neither the old 'Matrix Dimension of X(R): n' nor the new "
                          "'n # number of localized basis' form", subject=str(path))
    tokens = " ".join(body).split()
    shifts = np.zeros((n_r, 3), np.int64)
    nnz = np.zeros(n_r, np.int64)
    pieces_v, pieces_c, pieces_r, pieces_b = [], [], [], []
    is_complex = None
    pos = 0
    for b in range(n_r):
        if pos + 4 > len(tokens):
            raise FormatError(f"truncated: the file ends before block {b + 1} of {n_r} (expected 'Rx Ry Rz nnz')",
                              subject=str(path))
        head = tokens[pos:pos + 4]
        try:
            rx, ry, rz, n = (int(x) for x in head)
        except ValueError:
            raise FormatError(f"block {b + 1} of {n_r}: expected 'Rx Ry Rz nnz', found {' '.join(head)!r}",
                              subject=str(path)) from None
        pos += 4
        shifts[b] = (rx, ry, rz)
        nnz[b] = n
        if n < 0:
            raise FormatError(f"block {b + 1} (R = {rx} {ry} {rz}): negative nnz {n}", subject=str(path))
        if n == 0:
            continue
        need = 2 * n + dim + 1
        if pos + need > len(tokens):
            raise FormatError(f"truncated: block {b + 1} of {n_r} (R = {rx} {ry} {rz}, nnz {n}) needs {n} values, "
                              f"{n} column indices and {dim + 1} row pointers, but the file ends after "
                              f"{len(tokens) - pos} more tokens", subject=str(path))
        vals = tokens[pos:pos + n]
        cplx = vals[0].startswith("(")
        if is_complex is None:
            is_complex = cplx
        elif cplx != is_complex:
            raise FormatError(f"block {b + 1} (R = {rx} {ry} {rz}) mixes real and complex values", subject=str(path))
        try:
            if cplx:
                flat = np.array(" ".join(vals).translate(_PAREN).split(), float)
                if flat.size != 2 * n:
                    raise ValueError(f"{flat.size // 2} complex values")
                v = flat[0::2] + 1j * flat[1::2]
            else:
                v = np.array(vals, dtype=np.float64)
            c = np.array(tokens[pos + n:pos + 2 * n]).astype(np.int64)
            p = np.array(tokens[pos + 2 * n:pos + need]).astype(np.int64)
        except ValueError as err:
            raise FormatError(f"block {b + 1} (R = {rx} {ry} {rz}): bad number ({err}); the block does not hold "
                              f"{n} values, {n} column indices and {dim + 1} row pointers", subject=str(path)) from None
        pos += need
        if p[0] != 0 or p[-1] != n or (np.diff(p) < 0).any():
            raise FormatError(f"block {b + 1} (R = {rx} {ry} {rz}): row pointers are not 0..{n} non-decreasing "
                              f"(first {p[0]}, last {p[-1]})", subject=str(path))
        if c.min() < 0 or c.max() >= dim:
            raise FormatError(f"block {b + 1} (R = {rx} {ry} {rz}): column index outside 0..{dim - 1}",
                              subject=str(path))
        pieces_v.append(v)
        pieces_c.append(c)
        pieces_r.append(np.repeat(np.arange(dim, dtype=np.int64), np.diff(p)))
        pieces_b.append(np.full(n, b, np.int64))
    if pos != len(tokens):
        raise FormatError(f"{len(tokens) - pos} unexpected tokens after the last of {n_r} blocks "
                          f"(starting {' '.join(tokens[pos:pos + 4])!r})", subject=str(path))
    is_complex = bool(is_complex)
    dtype = np.complex128 if is_complex else np.float64
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return AbacusCSR(path=path, header=header, matrix=matrix, step=step, dim=dim, shifts=shifts, nnz=nnz,
                     block=cat(pieces_b, np.int64), rows=cat(pieces_r, np.int64), cols=cat(pieces_c, np.int64),
                     values=cat(pieces_v, dtype), is_complex=is_complex, lattice=lattice, spin=spin)


_PAREN = str.maketrans("(),", "   ")


def _old_header(lines, path):
    step, k = None, 0
    while k < len(lines) and not lines[k].strip():
        k += 1
    m = re.match(r"\s*STEP:\s*(\S+)", lines[k]) if k < len(lines) else None
    if m:
        step = _int(m.group(1), path, "STEP")
        k += 1
    md = _OLD_DIM.search(lines[k]) if k < len(lines) else None
    mn = _OLD_NUM.search(lines[k + 1]) if k + 1 < len(lines) else None
    if not (md and mn):
        raise FormatError("old CSR header must be '[STEP: n]', 'Matrix Dimension of X(R): d', "
                          "'Matrix number of X(R): m'", subject=str(path))
    dim = _int(md.group(2), path, "the matrix dimension")
    n_r = _int(mn.group(2), path, "the number of R blocks")
    return "old", md.group(1), step, dim, n_r, lines[k + 2:], None, {}


def _new_header(lines, path):
    fields: dict[str, str] = {}
    matrix, step = None, None
    k = 0
    while k < len(lines) and "number of Bravais lattice vector R" not in lines[k]:
        ln = lines[k]
        m = _NEW_FIELD.match(ln)
        if m:
            fields[m.group(2)] = m.group(1)
        elif (mm := re.search(r"print\s+(\w+)\s+matrix", ln)):
            matrix = mm.group(1)
        elif (ms := re.search(r"Ionic Step\s+(\d+)", ln)):
            step = int(ms.group(1))
        k += 1
    if k == len(lines):
        raise FormatError("new CSR header without '# number of Bravais lattice vector R'", subject=str(path))
    fields["number of Bravais lattice vector R"] = _NEW_FIELD.match(lines[k]).group(1)
    if "number of localized basis" not in fields:
        raise FormatError("new CSR header without '# number of localized basis'", subject=str(path))
    dim = _int(fields["number of localized basis"], path, "the number of localized basis")
    n_r = _int(fields["number of Bravais lattice vector R"], path, "the number of R vectors")
    k += 1
    block: list[str] = []
    while k < len(lines) and not lines[k].strip().startswith("#"):
        if lines[k].strip():
            block.append(lines[k].strip())
        k += 1
    lattice = None
    if block:
        try:
            lat0 = float(block[1])
            cell = np.array([[float(x) for x in r.split()[:3]] for r in block[2:5]])
            species = block[5].split()
            counts = [int(x) for x in block[6].split()]
            coords = np.array([[float(x) for x in r.split()[:3]] for r in block[8:8 + sum(counts)]])
            lattice = {"name": block[0], "lattice_constant_angstrom": lat0, "cell": cell, "species": species,
                       "counts": counts, "coordinate_type": block[7], "positions": coords}
        except (ValueError, IndexError):
            raise FormatError("cannot read the lattice block of the new CSR header", subject=str(path)) from None
    body = [ln for ln in lines[k:] if not ln.lstrip().startswith("#")]
    spin = {key: int(fields[key]) for key in ("number of spin directions", "spin index") if key in fields}
    return "new", matrix, step, dim, n_r, body, lattice, spin


# -------------------------------------------------------------------- CSR -> project blocks
@dataclass
class _Layout:
    """Orbital layout of a run: per atom number of orbitals and shells; per global ABACUS orbital
    its atom, project-order local index and sign."""

    n: np.ndarray
    offsets: np.ndarray
    atom: np.ndarray
    local: np.ndarray
    sign: np.ndarray

    @classmethod
    def build(cls, atom_ls: list[tuple[int, ...]], table_name: str = ENGINE) -> "_Layout":
        table = orbital_table(table_name, {l for ls in atom_ls for l in ls})
        locs, signs = [], []
        for ls in atom_ls:
            p, s = signed_permutation(table, ls)
            locs.append(p)
            signs.append(s)
        n = np.array([len(p) for p in locs], np.int64)
        return cls(n=n, offsets=np.concatenate([[0], np.cumsum(n)]),
                   atom=np.repeat(np.arange(len(n)), n), local=np.concatenate(locs).astype(np.int64),
                   sign=np.concatenate(signs))

    @property
    def nao(self) -> int:
        return int(self.offsets[-1])


def csr_blocks(csr: AbacusCSR, layout: _Layout, *, spinful: bool, scale: float = 1.0) -> dict:
    """Project-convention blocks {(i, j, (Rx, Ry, Rz)): array} of one CSR matrix.

    ``spinful`` (nspin 4, dim = 2 nao, index 2*mu + s): blocks are spin-major (2 n_i, 2 n_j),
    complex.  Otherwise (dim = nao) blocks are (n_i, n_j).  Values are multiplied by ``scale``
    (``RYDBERG_EV`` for H) and by the orbital signs.
    """
    want = 2 * layout.nao if spinful else layout.nao
    if csr.dim != want:
        raise FormatError(f"matrix dimension {csr.dim} does not match the basis ({layout.nao} orbitals"
                          f"{', x2 spins (nspin 4)' if spinful else ''} = {want})", subject=str(csr.path))
    if spinful:
        mu_r, s_r, mu_c, s_c = csr.rows // 2, csr.rows % 2, csr.cols // 2, csr.cols % 2
    else:
        mu_r, mu_c = csr.rows, csr.cols
        s_r = s_c = np.zeros_like(mu_r)
    a_i, a_j = layout.atom[mu_r], layout.atom[mu_c]
    nat = len(layout.n)
    key = (csr.block * nat + a_i) * nat + a_j
    uniq, inv = np.unique(key, return_inverse=True)
    f = 2 if spinful else 1
    ub, ui, uj = uniq // (nat * nat), (uniq // nat) % nat, uniq % nat
    sizes = f * f * layout.n[ui] * layout.n[uj]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    ni, nj = layout.n[a_i], layout.n[a_j]
    r_in = s_r * ni + layout.local[mu_r]
    c_in = s_c * nj + layout.local[mu_c]
    where = starts[inv] + r_in * (f * nj) + c_in
    if len(np.unique(where)) != len(where):
        raise FormatError("an entry is listed twice (duplicate column index in a row)", subject=str(csr.path))
    buf = np.zeros(int(starts[-1]), np.complex128 if csr.is_complex else np.float64)
    buf[where] = csr.values * (scale * layout.sign[mu_r] * layout.sign[mu_c])
    out = {}
    for k in range(len(uniq)):
        i, j = int(ui[k]), int(uj[k])
        out[(i, j, tuple(int(x) for x in csr.shifts[ub[k]]))] = buf[starts[k]:starts[k + 1]].reshape(
            f * layout.n[i], f * layout.n[j])
    return out


def spinless_overlap(blocks: dict, layout: _Layout, path: Path) -> dict:
    """Real spinless S blocks from nspin-4 (spin-major) overlap blocks, after checking that S is
    spin-diagonal, equal in both spins and real (:data:`SPIN_S_TOLERANCE`)."""
    out, worst = {}, {"ud": 0.0, "uu-dd": 0.0, "imag": 0.0}
    for (i, j, r), b in blocks.items():
        v = b.reshape(2, layout.n[i], 2, layout.n[j])
        worst["ud"] = max(worst["ud"], float(np.abs(v[0, :, 1]).max(initial=0)), float(np.abs(v[1, :, 0]).max(initial=0)))
        worst["uu-dd"] = max(worst["uu-dd"], float(np.abs(v[0, :, 0] - v[1, :, 1]).max(initial=0)))
        worst["imag"] = max(worst["imag"], float(np.abs(v[0, :, 0].imag).max(initial=0)))
        out[(i, j, r)] = np.ascontiguousarray(v[0, :, 0].real)
    bad = {k: x for k, x in worst.items() if x > SPIN_S_TOLERANCE}
    if bad:
        raise FormatError("the nspin-4 overlap is not spin-independent and real: "
                          + ", ".join(f"max |{k}| = {x:.2e}" for k, x in bad.items()), subject=str(path))
    return out


# -------------------------------------------------------------------------------- the run
@dataclass
class AbacusRun:
    """The located files of one run folder and what they say (see :func:`locate_run`)."""

    run_dir: Path
    out_dir: Path
    input_path: Path | None
    params: dict
    stru_path: Path
    stru: AbacusStructure
    log: AbacusLog | None
    h_path: Path | None
    s_path: Path | None
    orbital_paths: list[Path | None]


def _first(paths) -> Path | None:
    for p in paths:
        if p is not None and p.is_file():
            return p
    return None


def locate_run(run_dir, *, no_log: bool = False, need_h: bool = True) -> AbacusRun:
    """Find and parse INPUT, STRU, the running log and the CSR file names of a run folder.

    Outputs are looked for in ``OUT.<suffix>`` (suffix from INPUT, default ABACUS), any single
    ``OUT.*`` folder, then the run folder itself.  A missing STRU, S or (with ``need_h``) H file is a
    :class:`FormatError` listing the names tried.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FormatError("no such ABACUS run folder", subject=str(run_dir))
    input_path = _first([run_dir / "INPUT"])
    params = read_input(input_path) if input_path else {}
    suffix = params.get("suffix", "ABACUS").split()[0] if params.get("suffix") else "ABACUS"
    outs = [run_dir / f"OUT.{suffix}"] + sorted(p for p in run_dir.glob("OUT.*") if p.is_dir())
    out_dir = next((p for p in outs if p.is_dir()), run_dir)
    echo = out_dir / "INPUT"
    if echo.is_file() and echo != input_path:   # ABACUS's own echo of every parameter of the run
        params = {**params, **read_input(echo)}
        input_path = input_path or echo
    stru_name = params.get("stru_file", "STRU").split()[0] if params.get("stru_file") else "STRU"
    stru_path = _first([run_dir / stru_name, run_dir / "STRU"])
    if stru_path is None:
        raise FormatError(f"no structure file ({stru_name}) in the run folder", subject=str(run_dir))
    stru = read_stru(stru_path)
    log = None
    if not no_log:
        logs = sorted(out_dir.glob("running_*.log"))
        calc = params.get("calculation", "scf").split()[0] if params.get("calculation") else "scf"
        chosen = _first([out_dir / f"running_{calc}.log"]) or (logs[0] if len(logs) == 1 else None)
        if chosen is None and logs:
            raise FormatError(f"several running logs ({', '.join(p.name for p in logs)}) and none matches "
                              f"calculation = {calc}", subject=str(out_dir))
        log = read_running_log(chosen) if chosen else None
    dirs = [out_dir, run_dir] if out_dir != run_dir else [run_dir]
    h_path = _first([d / n for d in dirs for n in H_NAMES])
    s_path = _first([d / n for d in dirs for n in S_NAMES])
    if s_path is None:
        raise FormatError(f"no overlap matrix file ({' / '.join(S_NAMES[:2])}); run ABACUS with out_mat_hs2 1",
                          subject=str(out_dir))
    if need_h and h_path is None:
        raise FormatError(f"no Hamiltonian matrix file ({' / '.join(H_NAMES[:2])}); run ABACUS with out_mat_hs2 1",
                          subject=str(out_dir))
    orbital_paths = find_orbital_files(stru, run_dir, params)
    return AbacusRun(run_dir, out_dir, input_path, params, stru_path, stru, log, h_path, s_path, orbital_paths)


def run_basis(run: AbacusRun) -> tuple[Crystal, dict[int, Basis], list[tuple[int, ...]]]:
    """Crystal, basis per element and shells per atom of a run (log and/or .orb headers)."""
    return structure_and_basis(run.stru, run.stru_path, run.orbital_paths, log=run.log, where=run.run_dir)


def find_orbital_files(stru: AbacusStructure, folder: Path, params: dict | None = None) -> list[Path | None]:
    """Paths of the STRU's orbital files, looked for in ``folder``, ``folder/PP_ORB`` and INPUT's
    ``orbital_dir`` (None where not found)."""
    dirs = [folder, folder / "PP_ORB"]
    if params and params.get("orbital_dir"):
        od = Path(params["orbital_dir"].split()[0])
        dirs.append(od if od.is_absolute() else folder / od)
    return [_first([d / name for d in dirs]) for name in stru.orbital_files]


def structure_and_basis(stru: AbacusStructure, stru_path: Path, orbital_paths, *, log: AbacusLog | None = None,
                        where: Path | None = None) -> tuple[Crystal, dict[int, Basis], list[tuple[int, ...]]]:
    """Crystal (Angstrom), basis per element (shells from the log and/or the .orb headers, which must
    agree; cutoff radii in Angstrom from the .orb headers) and shells per atom."""
    headers = {s: read_orbital_header(p) for s, p in enumerate(orbital_paths) if p is not None}
    numbers_species = stru.element_numbers({s: h.element for s, h in headers.items()})
    ls_species: dict[int, tuple[int, ...]] = {}
    for s, label in enumerate(stru.labels):
        from_log = log.shell_ls(label) if log is not None and label in log.zeta else None
        from_orb = headers[s].ls if s in headers else None
        if from_log is not None and from_orb is not None and from_log != from_orb:
            raise FormatError(f"species {label}: the log's shells {from_log} differ from the orbital file's {from_orb}",
                              subject=str(log.path))
        ls = from_log if from_log is not None else from_orb
        if ls is None:
            tried = stru.orbital_files[s] if s < len(stru.orbital_files) else "(none listed in STRU)"
            raise FormatError(f"cannot tell the basis of species {label}: no running log and no orbital file "
                              f"{tried} in the folder, PP_ORB/ or orbital_dir", subject=str(where or stru_path))
        ls_species[s] = ls
    basis: dict[int, Basis] = {}
    for s, z in enumerate(numbers_species):
        name = stru.orbital_files[s] if s < len(stru.orbital_files) else f"{stru.labels[s]} (from log)"
        cut = (headers[s].rcut_bohr * BOHR_ANGSTROM,) * len(ls_species[s]) if s in headers else ()
        b = Basis(ENGINE, name, ls_species[s], cut)
        if int(z) in basis and basis[int(z)].ls != b.ls:
            raise FormatError(f"two species of element Z={int(z)} with different bases: the project keeps one basis "
                              "per element", subject=str(stru_path))
        basis.setdefault(int(z), b)
    crystal = Crystal(numbers_species[stru.species], stru.positions, stru.cell, np.ones(3, bool))
    return crystal, basis, [ls_species[int(s)] for s in stru.species]


def _check_lattice(csr: AbacusCSR, crystal: Crystal) -> None:
    """The new CSR header repeats the cell: it must agree with STRU (5-6 digits are written)."""
    if not csr.lattice:
        return
    cell = csr.lattice["cell"] * csr.lattice["lattice_constant_angstrom"]
    if not np.allclose(cell, crystal.cell, rtol=1e-4, atol=1e-4):
        raise FormatError("the cell in the CSR header differs from the STRU cell: this matrix does not belong to this "
                          "structure", subject=str(csr.path))


def read_run_matrices(run: AbacusRun, crystal: Crystal, atom_ls) -> tuple[dict, dict, dict]:
    """H (spinor, eV) and S (spinless) blocks of a run, and a description of the files read."""
    layout = _Layout.build(atom_ls)
    s_csr = read_csr(run.s_path)
    _check_lattice(s_csr, crystal)
    spinful = s_csr.dim == 2 * layout.nao
    nspin_input = _input_int(run.params, "nspin", 4 if spinful else 1)
    nspin = run.log.nspin if run.log is not None else nspin_input
    if nspin == 2:
        raise FormatError("nspin 2 (collinear spin-polarised) runs are not supported: the benchmark needs spinor H "
                          "(nspin 4) or a spin-paired run (nspin 1)", subject=str(run.run_dir))
    if (nspin == 4) != spinful:
        raise FormatError(f"the overlap has dimension {s_csr.dim} for {layout.nao} orbitals, which contradicts nspin "
                          f"{nspin}", subject=str(run.s_path))
    if run.log is not None and run.log.nlocal != s_csr.dim:
        raise FormatError(f"the log says NLOCAL = {run.log.nlocal} but the overlap has dimension {s_csr.dim}",
                          subject=str(run.s_path))
    S = csr_blocks(s_csr, layout, spinful=spinful)
    S = spinless_overlap(S, layout, run.s_path) if spinful else {k: np.asarray(v.real, float) for k, v in S.items()}
    H = None
    desc = {"S": {"file": run.s_path.name, "header": s_csr.header, "step": s_csr.step, "n_R": len(s_csr.shifts),
                  "nnz": int(s_csr.n_entries)}}
    if run.h_path is not None:
        h_csr = read_csr(run.h_path)
        _check_lattice(h_csr, crystal)
        if h_csr.dim != s_csr.dim:
            raise FormatError(f"H has dimension {h_csr.dim} but S has {s_csr.dim}", subject=str(run.h_path))
        H = csr_blocks(h_csr, layout, spinful=spinful, scale=RYDBERG_EV)
        if not spinful:
            H = {k: spinor_from_spinless(np.asarray(v.real if np.iscomplexobj(v) else v)) for k, v in H.items()}
        else:
            H = {k: v.astype(np.complex128) for k, v in H.items()}
        desc["H"] = {"file": run.h_path.name, "header": h_csr.header, "step": h_csr.step, "n_R": len(h_csr.shifts),
                     "nnz": int(h_csr.n_entries), "unit": "Rydberg (converted to eV)"}
    return H, S, {"nspin": nspin, "files": desc}


def import_abacus(run_dir, *, h0_dir=None, no_log: bool = False) -> Sample:
    """Import a finished ABACUS LCAO run (``out_mat_hs2 1``) as a :class:`Sample`.

    ``run_dir``: the folder with INPUT/STRU (outputs in ``OUT.<suffix>/`` or beside them).
    ``h0_dir``: optional second run of the same structure and basis whose H is taken as H0
    (e.g. ABACUS stopped before the first SCF update); its S must equal the first run's.  Without
    it H0 is absent: stored as zeros and flagged ``info["h0_available"] = False``.
    ``no_log``: ignore ``running_*.log`` (basis from the .orb headers; Fermi level unknown).

    Units: eV (H from Rydberg), Angstrom.  The Fermi level (eV) and electron count come from the
    log (NaN when unknown).  ``ref_kpts``/``ref_eigenvalues`` stay empty: an ABACUS run writes the
    lowest NBANDS bands only, not the 2 nao the sample format stores.
    """
    run = locate_run(run_dir, no_log=no_log)
    crystal, basis, atom_ls = run_basis(run)
    if run.log is not None:
        natoms = sum(run.log.atoms_per_species.get(lab, 0) for lab in run.stru.labels)
        if natoms != len(crystal):
            raise FormatError(f"the log lists {natoms} atoms, STRU {len(crystal)}", subject=str(run.log.path))
    H, S, desc = read_run_matrices(run, crystal, atom_ls)
    files = [p for p in (run.input_path, run.stru_path, run.log.path if run.log else None, run.h_path, run.s_path)
             if p is not None] + [p for p in run.orbital_paths if p is not None]
    mats = {"H": H, "S": S}
    h0_note = "absent: no H0 run was given; H0 is stored as zeros (info.h0_available = false)"
    if h0_dir is not None:
        run0 = locate_run(h0_dir, no_log=no_log)
        crystal0, _, atom_ls0 = run_basis(run0)
        if atom_ls0 != atom_ls or not np.array_equal(crystal0.numbers, crystal.numbers) or \
                not np.allclose(crystal0.positions, crystal.positions, atol=1e-6) or \
                not np.allclose(crystal0.cell, crystal.cell, atol=1e-6):
            raise FormatError("the H0 run has a different structure or basis", subject=str(h0_dir))
        H0, S0, desc0 = read_run_matrices(run0, crystal0, atom_ls0)
        if desc0["nspin"] != desc["nspin"]:
            raise FormatError(f"the H0 run has nspin {desc0['nspin']}, the H run {desc['nspin']}", subject=str(h0_dir))
        dev = max((float(np.abs(S.get(k, 0) - S0.get(k, 0)).max()) for k in set(S) | set(S0)), default=0.0)
        if dev > 1e-6:
            raise FormatError(f"the H0 run's overlap differs from the H run's by {dev:.2e}", subject=str(h0_dir))
        mats["H0"] = H0
        h0_note = f"H of the second run {Path(h0_dir).name} ({desc0['files']['H']['file']})"
        files += [p for p in (run0.input_path, run0.stru_path, run0.h_path, run0.s_path) if p is not None]
    log = run.log
    lspinorb = _input_int(run.params, "lspinorb", 0)
    spin, trs = spin_label(H)
    prov = {"source": "abacus", "source_id": run.run_dir.name, "formula": crystal.formula,
            "importer": "materials_ham.formats.abacus", "run_dir": str(run.run_dir),
            "files": [file_record(p, run.run_dir) for p in dict.fromkeys(files)], "matrices": desc["files"],
            "h0": h0_note}
    if h0_dir is not None:
        prov["h0_matrices"] = desc0["files"]
    engine = {"name": ENGINE, "version": log.version if log else "unknown (no running log)",
              "settings": run.params, "nspin": desc["nspin"], "spin": spin,
              "soc": "self-consistent (lspinorb 1)" if desc["nspin"] == 4 and lspinorb else "none"}
    info = {"h0_available": h0_dir is not None, "time_reversal_deviation": trs,
            "log_layout": log.layout if log else None, "scf_converged": log.converged if log else None,
            "etot_ev": log.etot_ev if log else None,
            "fermi_level_source": "running log EFERMI" if log and log.fermi_ev is not None else "unknown (NaN)"}
    sample, herm = assemble(
        crystal, basis, mats, subject=str(run.run_dir),
        fermi_level=log.fermi_ev if log and log.fermi_ev is not None else float("nan"),
        n_electrons=log.n_electrons if log and log.n_electrons is not None else float("nan"),
        engine=engine, provenance=prov, info=info)
    sample.info["hermiticity_before_symmetrize"] = herm
    return sample


# ------------------------------------------------------------------------ band energies
def read_eig_occ(path, stru: AbacusStructure) -> list[dict]:
    """Band energies of ``OUT.*/eig_occ.txt`` (ABACUS >= 3.10): one record per section.

    Each section (one per SCF/NSCF run appended to the file) gives, per k-point, the lowest
    NBANDS energies (eV) and occupations; k is written Cartesian in units of 2 pi / lattice
    constant and converted to reduced coordinates with the STRU lattice vectors.  Returns
    [{"kpts": (K, 3) reduced, "eigenvalues_ev": (K, nb), "occupations": (K, nb)}] (numpy arrays).
    """
    path = Path(path)
    text = _read_text(path, "ABACUS eig_occ.txt")
    vectors = stru.cell / (stru.lattice_constant_bohr * BOHR_ANGSTROM)  # rows, lattice-constant units
    sections: list[dict] = []
    kpts, eigs, occs = [], [], []
    for line in text.splitlines():
        if "# ionic step" in line:
            if kpts:
                sections.append({"kpts": np.array(kpts), "eigenvalues_ev": np.array(eigs), "occupations": np.array(occs)})
            kpts, eigs, occs = [], [], []
            continue
        m = re.search(r"k-point=\d+/\d+\s+Cartesian=\s*" + r"\s+".join([_NUM] * 3), line)
        if m:
            if "spin=1" not in line.split("k-point")[0]:
                raise FormatError(f"only spin=1 sections are supported (nspin 1 or 4): {line.strip()!r}",
                                  subject=str(path))
            kpts.append(vectors @ np.array([float(x) for x in m.groups()]))
            eigs.append([])
            occs.append([])
            continue
        t = line.split()
        if len(t) == 3 and eigs and t[0].isdigit():
            eigs[-1].append(float(t[1]))
            occs[-1].append(float(t[2]))
    if kpts:
        sections.append({"kpts": np.array(kpts), "eigenvalues_ev": np.array(eigs), "occupations": np.array(occs)})
    if not sections:
        raise FormatError("no k-point sections found", subject=str(path))
    for s in sections:
        if s["eigenvalues_ev"].ndim != 2:
            raise FormatError("k-points with different numbers of bands", subject=str(path))
    return sections
