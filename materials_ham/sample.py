"""The sample format: the single home of the schema of one structure's matrices.

A :class:`Sample` holds

* the crystal (:class:`Crystal`: Z, Cartesian positions in Angstrom, row-vector cell, pbc);
* the basis of each element (:class:`Basis`: engine, basis name, l of each shell, radii);
* the edge list ``edge_index[e] = (i, j)``, ``edge_shift[e] = R`` (integer lattice shift)
  and ``edge_reverse[e]`` = index of the partner edge (j, i, -R);
* the blocks of S (real, spinless, n_i x n_j), H and H0 (complex spinor, 2n_i x 2n_j,
  spin-major), each stored **flat**: the blocks of all edges concatenated in edge order
  (row-major inside a block).  ``sample.block("H", e)`` returns one block as a view.  A
  matrix left out when reading (``store.get(k, matrices=("H", "S"))``) is None;
* Fermi level (eV), number of valence electrons, the engine's own SOC band energies at a
  few k-points (``ref_kpts`` (K, 3) reduced, ``ref_eigenvalues`` (K, 2*nao) eV),
  engine name/version/settings and provenance.

Serialisation (:meth:`Sample.save` / :func:`load_sample`) is a ``.npz`` archive without
pickles: arrays plus one JSON metadata string.  Only the canonical half of the edges
(e <= reverse[e]) is written; the other half is rebuilt as the conjugate transpose, which
is exact because samples are made exactly Hermitian (:meth:`Sample.symmetrize`).
:class:`HalfEdges` maps the stored half onto the full edge list and :func:`gather_blocks`
moves the blocks (also for the scorer's half/full plans): the one home of that mirroring.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .conventions import conventions_dict, shell_sizes
from .errors import FormatError

SCHEMA_VERSION = 1
MATRICES = ("H", "H0", "S")
SPINOR = {"H": True, "H0": True, "S": False}


@dataclass(frozen=True)
class Crystal:
    """A periodic structure. numbers (n,), positions (n, 3) Angstrom, cell (3, 3) rows, pbc (3,)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray = field(default_factory=lambda: np.ones(3, bool))

    def __post_init__(self):
        object.__setattr__(self, "numbers", np.asarray(self.numbers, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "positions", np.asarray(self.positions, dtype=np.float64).reshape(-1, 3))
        object.__setattr__(self, "cell", np.asarray(self.cell, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "pbc", np.asarray(self.pbc, dtype=bool).reshape(3))
        if len(self.numbers) != len(self.positions):
            raise FormatError(f"{len(self.numbers)} atomic numbers but {len(self.positions)} positions")

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def formula(self) -> str:
        return self.to_ase().get_chemical_formula(mode="metal")

    def to_ase(self):
        from ase import Atoms

        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)

    @classmethod
    def from_ase(cls, atoms) -> "Crystal":
        return cls(atoms.numbers.copy(), atoms.positions.copy(), atoms.cell.array.copy(), atoms.pbc.copy())

    def rotated(self, rotation: np.ndarray) -> "Crystal":
        """The crystal rigidly rotated by the (3, 3) matrix R (r -> R r; cell rows too)."""
        r = np.asarray(rotation, float)
        return Crystal(self.numbers, self.positions @ r.T, self.cell @ r.T, self.pbc)


@dataclass(frozen=True)
class Basis:
    """Localised basis of one element: shells with angular momenta ``ls`` and radii (Angstrom)."""

    engine: str
    name: str
    ls: tuple[int, ...]
    cutoffs: tuple[float, ...] = ()

    @property
    def n_orbitals(self) -> int:
        return int(shell_sizes(self.ls).sum())

    def to_dict(self) -> dict:
        return {"engine": self.engine, "name": self.name, "ls": list(self.ls), "cutoffs": list(self.cutoffs)}

    @classmethod
    def from_dict(cls, d: dict) -> "Basis":
        return cls(d["engine"], d["name"], tuple(int(l) for l in d["ls"]),
                   tuple(float(c) for c in d.get("cutoffs", ())))


@dataclass
class Sample:
    """One structure with its H, H0 (spinor) and S blocks; see the module docstring."""

    crystal: Crystal
    basis: dict[int, Basis]
    edge_index: np.ndarray            # (E, 2) int64, atom indices (i, j)
    edge_shift: np.ndarray            # (E, 3) int64, lattice shift R of atom j
    edge_reverse: np.ndarray          # (E,) int64, index of (j, i, -R)
    H: np.ndarray | None              # flat complex128, sum_e 4 n_i n_j, eV (None: not read)
    H0: np.ndarray | None             # flat complex128, sum_e 4 n_i n_j, eV (None: not read)
    S: np.ndarray | None              # flat float64, sum_e n_i n_j (None: not read)
    fermi_level: float                # eV
    n_electrons: float
    ref_kpts: np.ndarray              # (K, 3) reduced coordinates
    ref_eigenvalues: np.ndarray       # (K, 2 * nao) eV, SOC, from the engine itself
    engine: dict = field(default_factory=dict)       # name, version, settings
    provenance: dict = field(default_factory=dict)   # source, source_id, formula, spacegroup, ...
    info: dict = field(default_factory=dict)         # free-form numbers (timings, memory, ...)

    def __post_init__(self):
        self.edge_index = np.asarray(self.edge_index, np.int64).reshape(-1, 2)
        self.edge_shift = np.asarray(self.edge_shift, np.int64).reshape(-1, 3)
        self.edge_reverse = np.asarray(self.edge_reverse, np.int64).reshape(-1)
        for name in MATRICES:            # a matrix left out when reading (store.get(k, matrices=...)) stays None
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, np.complex128 if SPINOR[name] else np.float64).reshape(-1))
        self.ref_kpts = np.asarray(self.ref_kpts, np.float64).reshape(-1, 3)
        eigs = np.asarray(self.ref_eigenvalues, np.float64)
        # (0, 2 nao) is kept as is: a source without the engine's own band energies (importers)
        self.ref_eigenvalues = eigs if eigs.ndim == 2 and len(eigs) == len(self.ref_kpts) == 0 else \
            eigs.reshape(len(self.ref_kpts), -1)
        self.basis = {int(z): b for z, b in self.basis.items()}
        self.fermi_level = float(self.fermi_level)
        self.n_electrons = float(self.n_electrons)

    # ----------------------------------------------------------------- geometry of the layout
    @property
    def n_atoms(self) -> int:
        return len(self.crystal)

    @property
    def n_edges(self) -> int:
        return len(self.edge_index)

    @cached_property
    def orbitals_per_atom(self) -> np.ndarray:
        """(n,) number of spatial orbitals of each atom."""
        missing = sorted({int(z) for z in self.crystal.numbers} - set(self.basis))
        if missing:
            raise FormatError(f"no basis given for element(s) Z={missing}")
        return np.array([self.basis[int(z)].n_orbitals for z in self.crystal.numbers], np.int64)

    @cached_property
    def orbital_offsets(self) -> np.ndarray:
        """(n+1,) start of each atom's orbitals in the spinless matrix."""
        return np.concatenate([[0], np.cumsum(self.orbitals_per_atom)])

    @property
    def nao(self) -> int:
        """Number of spatial orbitals in the cell (the spinor dimension is 2 * nao)."""
        return int(self.orbital_offsets[-1])

    @cached_property
    def block_sizes(self) -> np.ndarray:
        """(E,) n_i * n_j of each edge (spinless entries)."""
        n = self.orbitals_per_atom
        return n[self.edge_index[:, 0]] * n[self.edge_index[:, 1]]

    @cached_property
    def block_offsets(self) -> np.ndarray:
        """(E+1,) start of each edge's block in the flat spinless array (x4 for spinors)."""
        return np.concatenate([[0], np.cumsum(self.block_sizes)])

    def block_shape(self, name: str, e: int) -> tuple[int, int]:
        n = self.orbitals_per_atom
        i, j = self.edge_index[e]
        f = 2 if SPINOR[name] else 1
        return int(f * n[i]), int(f * n[j])

    def block(self, name: str, e: int) -> np.ndarray:
        """Block of matrix ``name`` ('H', 'H0', 'S') on edge e, as a view into the flat array."""
        f = 4 if SPINOR[name] else 1
        a, b = self.block_offsets[e] * f, self.block_offsets[e + 1] * f
        return self.matrix(name)[a:b].reshape(self.block_shape(name, e))

    @property
    def matrices(self) -> tuple[str, ...]:
        """The matrices this sample holds (all of :data:`MATRICES` unless some were left out when reading)."""
        return tuple(name for name in MATRICES if getattr(self, name) is not None)

    def matrix(self, name: str) -> np.ndarray:
        """The flat array of matrix ``name``; a :class:`FormatError` if it was left out when reading."""
        value = getattr(self, name)
        if value is None:
            raise FormatError(f"matrix {name} was not read (read the sample with {name} among its matrices)")
        return value

    def edge_vectors(self) -> np.ndarray:
        """(E, 3) Cartesian vectors tau_j + R.cell - tau_i in Angstrom."""
        pos, cell = self.crystal.positions, self.crystal.cell
        i, j = self.edge_index.T
        return pos[j] + self.edge_shift @ cell - pos[i]

    def edge_lengths(self) -> np.ndarray:
        return np.linalg.norm(self.edge_vectors(), axis=1)

    @property
    def is_onsite(self) -> np.ndarray:
        return (self.edge_index[:, 0] == self.edge_index[:, 1]) & ~self.edge_shift.any(axis=1)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_blocks(cls, crystal: Crystal, basis: dict[int, Basis], blocks: dict[tuple, dict[str, np.ndarray]],
                    **fields) -> "Sample":
        """Build from ``{(i, j, (R1, R2, R3)): {'H': ..., 'H0': ..., 'S': ...}}``.

        Missing matrices on an edge are zero.  Edges are sorted by (i, j, R); every
        edge's reverse must be present (the union of supports is closed under it when the
        blocks come from a Hermitian operator).
        """
        keys = sorted(blocks)
        index = {k: e for e, k in enumerate(keys)}
        try:
            reverse = np.array([index[(k[1], k[0], tuple(-np.asarray(k[2])))] for k in keys], np.int64)
        except KeyError as err:
            raise FormatError(f"edge {err.args[0]} has no reverse partner") from None
        n = np.array([basis[int(z)].n_orbitals for z in crystal.numbers])
        flat = {}
        for name in MATRICES:
            f = 2 if SPINOR[name] else 1
            parts = []
            for k in keys:
                b = blocks[k].get(name)
                shape = (f * n[k[0]], f * n[k[1]])
                if b is None:
                    b = np.zeros(shape)
                elif b.shape != shape:
                    raise FormatError(f"block {name}{k} has shape {b.shape}, expected {shape}")
                parts.append(np.asarray(b).reshape(-1))
            dtype = np.complex128 if SPINOR[name] else np.float64
            flat[name] = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        return cls(crystal=crystal, basis=basis,
                   edge_index=np.array([k[:2] for k in keys], np.int64).reshape(-1, 2),
                   edge_shift=np.array([k[2] for k in keys], np.int64).reshape(-1, 3),
                   edge_reverse=reverse, H=flat["H"], H0=flat["H0"], S=flat["S"], **fields)

    @classmethod
    def from_half(cls, crystal: Crystal, basis: dict[int, Basis], edge_index_half: np.ndarray,
                  edge_shift_half: np.ndarray, H_half: np.ndarray | None, H0_half: np.ndarray | None,
                  S_half: np.ndarray | None, **fields) -> "Sample":
        """Build a full sample from the canonical half of its edges (the layout :meth:`save` writes).

        ``edge_index_half`` (Eh, 2) and ``edge_shift_half`` (Eh, 3) list the stored edges; the flat
        ``H_half``/``H0_half`` (complex, 4 n_i n_j per edge) and ``S_half`` (real, n_i n_j per edge)
        hold their blocks in that order (None: that matrix is left out, and is None in the sample).
        Every stored edge (i, j, R) other than an on-site one (i = j, R = 0) gets its partner
        (j, i, -R) with the exact conjugate-transposed blocks; edges are then sorted by (i, j, R) as
        in :meth:`from_blocks` (see :class:`HalfEdges`; blocks move in runs, :func:`gather_blocks`).
        """
        edges = HalfEdges.build(crystal, basis, edge_index_half, edge_shift_half)
        full = {name: None if half is None else edges.full(name, half)
                for name, half in (("H", H_half), ("H0", H0_half), ("S", S_half))}
        return cls(crystal=crystal, basis=basis, edge_index=edges.edge_index, edge_shift=edges.edge_shift,
                   edge_reverse=edges.edge_reverse, **full, **fields)

    def symmetrize(self) -> "Sample":
        """Make every matrix exactly Hermitian in place: X_ij(R) <- (X_ij(R) + X_ji(-R)^dagger) / 2.

        The canonical edge (e <= reverse[e]) gets the average and its partner the exact
        conjugate transpose, so that storing half of the edges is lossless.  Matrices left out
        when reading (None) stay None.
        """
        for name in self.matrices:
            for e in range(self.n_edges):
                r = self.edge_reverse[e]
                if e > r:
                    continue
                a, b = self.block(name, e), self.block(name, r)
                avg = 0.5 * (a + b.conj().T)
                a[...] = avg
                b[...] = avg.conj().T
        return self

    def copy(self) -> "Sample":
        import copy

        return copy.deepcopy(self)

    # ------------------------------------------------------------------------ serialisation
    def metadata(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "conventions": conventions_dict(),
            "basis": {str(z): b.to_dict() for z, b in sorted(self.basis.items())},
            "fermi_level": self.fermi_level, "n_electrons": self.n_electrons,
            "engine": self.engine, "provenance": self.provenance, "info": self.info,
        }

    def canonical_edges(self) -> np.ndarray:
        """Indices of the edges stored on disk: e <= reverse[e]."""
        return np.nonzero(np.arange(self.n_edges) <= self.edge_reverse)[0]

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename) to ``path`` (.npz)."""
        path = Path(path)
        keep = self.canonical_edges()
        arrays = {
            "numbers": self.crystal.numbers, "positions": self.crystal.positions,
            "cell": self.crystal.cell, "pbc": self.crystal.pbc,
            "edge_index": self.edge_index[keep], "edge_shift": self.edge_shift[keep],
            "ref_kpts": self.ref_kpts, "ref_eigenvalues": self.ref_eigenvalues,
            "metadata": np.frombuffer(json.dumps(self.metadata()).encode(), dtype=np.uint8),
        }
        for name in MATRICES:
            arrays[name] = np.concatenate([self.block(name, e).reshape(-1) for e in keep]) if len(keep) else \
                self.matrix(name)[:0]
        with atomic_write(path) as fh:
            np.savez_compressed(fh, **arrays)
        return path


@dataclass(frozen=True)
class HalfEdges:
    """The full edge list of a sample and where each of its blocks comes from in the stored half.

    Built from the canonical half of the edges (:meth:`Sample.save`, the store): every stored
    edge (i, j, R) other than an on-site one (i = j, R = 0) gets its partner (j, i, -R), and the
    full list is sorted by (i, j, R).  ``edge_index`` (E, 2), ``edge_shift`` (E, 3),
    ``edge_reverse`` (E,) are the full sample's; full edge e takes its blocks from stored edge
    ``src[e]``, conjugate-transposed where ``flip[e]``.  ``orbitals`` (n,) spatial orbitals per
    atom; ``half_index`` (Eh, 2) the stored edges' atoms.
    """

    edge_index: np.ndarray
    edge_shift: np.ndarray
    edge_reverse: np.ndarray
    src: np.ndarray
    flip: np.ndarray
    orbitals: np.ndarray
    half_index: np.ndarray

    @classmethod
    def build(cls, crystal: Crystal, basis: dict[int, Basis], edge_index_half: np.ndarray,
              edge_shift_half: np.ndarray) -> "HalfEdges":
        """The full edge list of the stored edges ``edge_index_half`` (Eh, 2), ``edge_shift_half``
        (Eh, 3); a :class:`FormatError` for inconsistent input (an edge twice, unknown atoms)."""
        half_index = np.asarray(edge_index_half, np.int64).reshape(-1, 2)
        half_shift = np.asarray(edge_shift_half, np.int64).reshape(-1, 3)
        if len(half_index) != len(half_shift):
            raise FormatError(f"{len(half_index)} edges but {len(half_shift)} lattice shifts")
        try:
            n = np.array([basis[int(z)].n_orbitals for z in crystal.numbers], np.int64)
        except KeyError as err:
            raise FormatError(f"no basis given for element Z={err.args[0]}") from None
        if half_index.size and (half_index.min() < 0 or half_index.max() >= len(n)):
            raise FormatError(f"edge atom index out of range for {len(n)} atoms")
        # full edge list: the stored half, then the partners of the non-on-site stored edges
        onsite = (half_index[:, 0] == half_index[:, 1]) & ~half_shift.any(axis=1)
        mirrored = np.nonzero(~onsite)[0]
        src = np.concatenate([np.arange(len(half_index)), mirrored])            # stored edge of each full edge
        flip = np.concatenate([np.zeros(len(half_index), bool), np.ones(len(mirrored), bool)])
        index = np.where(flip[:, None], half_index[src][:, ::-1], half_index[src])
        shift = np.where(flip[:, None], -half_shift[src], half_shift[src])
        partner = np.arange(len(src))                                             # unsorted full -> partner
        partner[mirrored] = len(half_index) + np.arange(len(mirrored))
        partner[len(half_index):] = mirrored
        order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], index[:, 1], index[:, 0]))
        index, shift, src, flip = index[order], shift[order], src[order], flip[order]
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        reverse = rank[partner[order]]
        key = np.concatenate([index, shift], axis=1)
        if len(key) > 1 and (np.diff(key, axis=0) == 0).all(axis=1).any():
            raise FormatError("the stored edge list holds an edge twice (or an edge and its reverse)")
        return cls(edge_index=index, edge_shift=shift, edge_reverse=reverse, src=src, flip=flip, orbitals=n,
                   half_index=half_index)

    def half_size(self, name: str) -> int:
        """Entries of the stored half of matrix ``name`` (4 n_i n_j per stored edge for H/H0, n_i n_j for S)."""
        f = 4 if SPINOR[name] else 1
        n = self.orbitals
        return int(f * (n[self.half_index[:, 0]] * n[self.half_index[:, 1]]).sum())

    def full(self, name: str, half: np.ndarray) -> np.ndarray:
        """The flat matrix ``name`` ('H', 'H0', 'S') of the full edge list from its stored ``half``
        (complex128 for H/H0, float64 for S; a new array, bit-identical blocks)."""
        f = 2 if SPINOR[name] else 1
        dtype = np.complex128 if SPINOR[name] else np.float64
        half = np.asarray(half, dtype).reshape(-1)
        n = self.orbitals
        rows, cols = f * n[self.half_index[:, 0]], f * n[self.half_index[:, 1]]
        half_offsets = np.concatenate([[0], np.cumsum(rows * cols)])
        if half_offsets[-1] > half.size:
            raise FormatError(f"matrix {name} is shorter than its edge list requires")
        if half_offsets[-1] < half.size:
            raise FormatError(f"matrix {name} has {half.size - half_offsets[-1]} entries more than its edge list")
        return gather_blocks(half, half_offsets[self.src], rows[self.src], cols[self.src], self.flip)


def gather_blocks(src: np.ndarray, offsets: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  flip: np.ndarray) -> np.ndarray:
    """Concatenate blocks taken from the flat array ``src`` (a new flat array of ``src.dtype``).

    Output block e is the (rows[e], cols[e]) row-major block starting at ``offsets[e]`` of
    ``src``, or, where ``flip[e]``, its conjugate transpose (cols[e], rows[e]); the blocks are
    concatenated in order, each row-major.  The work is done per *run* of consecutive output
    blocks (:func:`_block_runs`): one slice copy for blocks that lie back to back in ``src``
    (whatever their shapes), one transposing copy for flipped blocks of one shape that lie back
    to back in ``src`` in descending order (the partners of consecutive edges, with edges sorted
    by (i, j, R)); about one run per atom pair, no Python loop over edges.  Values are moved,
    never computed: the result is exact.
    """
    offsets = np.asarray(offsets, np.int64)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    flip = np.asarray(flip, bool)
    sizes = rows * cols
    dst = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty(int(dst[-1]), src.dtype)
    complex_ = np.iscomplexobj(out)
    for a, b in _block_runs(offsets, rows, cols, flip):
        target = out[dst[a]:dst[b]]
        if not flip[a]:
            target[:] = src[offsets[a]:offsets[a] + len(target)]
            continue
        r, c = int(rows[a]), int(cols[a])                     # sources offsets[a] > ... > offsets[b-1]
        blocks = src[offsets[b - 1]:offsets[a] + r * c].reshape(b - a, r, c)[::-1].transpose(0, 2, 1)
        if complex_:                                          # one pass: conjugate while transposing
            np.conjugate(blocks, out=target.reshape(b - a, c, r))
        else:
            target.reshape(b - a, c, r)[...] = blocks
    return out


def _block_runs(offsets: np.ndarray, rows: np.ndarray, cols: np.ndarray, flip: np.ndarray) -> list[tuple[int, int]]:
    """Runs [a, b) of output blocks that :func:`gather_blocks` moves with one copy.

    Block e continues the run of block e - 1 when both are copies and block e starts where
    block e - 1 ends in the source, or when both are flipped, have one shape and block e ends
    where block e - 1 starts (descending).
    """
    E = len(offsets)
    if E == 0:
        return []
    sizes = rows * cols
    cont = np.zeros(E, bool)
    cont[1:] = (flip[1:] == flip[:-1]) & np.where(
        flip[1:], (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1]) & (offsets[1:] + sizes[1:] == offsets[:-1]),
        offsets[1:] == offsets[:-1] + sizes[:-1])
    starts = np.nonzero(~cont)[0]
    return list(zip(starts.tolist(), np.append(starts[1:], E).tolist()))


def load_sample(path: str | os.PathLike) -> Sample:
    """Read a sample written by :meth:`Sample.save`; rebuilds the reverse half exactly."""
    path = Path(path)
    if not path.is_file():
        raise FormatError("no such file", subject=str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        meta = json.loads(a["metadata"].tobytes().decode())
    except Exception as err:  # zipfile/ValueError/KeyError/JSON errors: all mean "not a sample"
        raise FormatError(f"not a materials-ham sample file ({type(err).__name__}: {err})", subject=str(path)) from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise FormatError(f"unsupported schema_version {meta.get('schema_version')!r} (expected {SCHEMA_VERSION})",
                          subject=str(path))
    try:
        crystal = Crystal(a["numbers"], a["positions"], a["cell"], a["pbc"])
        basis = {int(z): Basis.from_dict(d) for z, d in meta["basis"].items()}
        return Sample.from_half(
            crystal, basis, a["edge_index"], a["edge_shift"], a["H"], a["H0"], a["S"],
            fermi_level=meta["fermi_level"], n_electrons=meta["n_electrons"], ref_kpts=a["ref_kpts"],
            ref_eigenvalues=a["ref_eigenvalues"], engine=meta.get("engine", {}),
            provenance=meta.get("provenance", {}), info=meta.get("info", {}))
    except KeyError as err:
        raise FormatError(f"missing field {err.args[0]!r}", subject=str(path)) from None
    except FormatError as err:
        raise FormatError(str(err), subject=str(path)) from None
