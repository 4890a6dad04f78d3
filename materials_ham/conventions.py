"""The one home of ``CONVENTIONS.md`` in code.

Units, the benchmark's element set, orbital-order/sign tables per engine, the spinor
layout and the metric cut-offs live here and are imported everywhere else.

Summary (see README / dataset card for the full text):

* energies and matrix elements in eV (float64 / complex128), lengths in Angstrom,
  cells as row vectors, k-points in reduced coordinates, reported errors in meV;
* orbitals shell by shell, within a shell m = -l..l over real spherical harmonics in
  the Wikipedia convention (l=1 order y, z, x);
* spinor blocks are spin-major ``[[uu, ud], [du, dd]]`` (spin quantised along z),
  S is spin independent and stored once;
* X_ij(R) = <phi_i(r - tau_i)|X|phi_j(r - tau_j - R)>, X(k) = sum_R exp(+2 pi i k.R) X(R).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import chemical_symbols
from ase.units import Bohr as BOHR_ANGSTROM  # 1 Bohr in Angstrom
from ase.units import Ha as HARTREE_EV  # 1 Hartree in eV
from ase.units import Ry as RYDBERG_EV  # 1 Rydberg in eV

__all__ = [
    "HARTREE_EV", "RYDBERG_EV", "BOHR_ANGSTROM", "EV_TO_MEV", "BENCHMARK_ELEMENTS",
    "check_elements", "OrbitalTable", "ORBITAL_TABLES", "orbital_table", "signed_permutation", "shell_sizes",
    "HEADLINE_EDGE_CUTOFF", "DISTANCE_BINS", "CONVENTIONS_VERSION", "conventions_dict",
    "spinor_from_parts", "spin_view",
]

CONVENTIONS_VERSION = "1.0"
EV_TO_MEV = 1000.0

#: The 68 elements of Materials-HAM-SOC: Z = 1..56 and Z = 72..83 (H..Ba, Hf..Bi).
BENCHMARK_ELEMENTS: frozenset[int] = frozenset(list(range(1, 57)) + list(range(72, 84)))

#: Matrix metrics are defined on edges shorter than this (Angstrom), the NextHAM cutoff.
HEADLINE_EDGE_CUTOFF = 8.0
#: Edge-length bins (Angstrom) of the distance-resolved metrics.
DISTANCE_BINS = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0)


def check_elements(numbers, *, subject: str | None = None) -> None:
    """Raise :class:`StructureError` naming the first element outside the benchmark set."""
    from .errors import StructureError

    bad = sorted({int(z) for z in numbers} - BENCHMARK_ELEMENTS)
    if bad:
        names = ", ".join(f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else '?'} (Z={z})"
                          for z in bad)
        raise StructureError(
            f"element(s) {names} outside the benchmark's 68 elements "
            "(Z 1-56 and 72-83; lanthanides and Po, At, Rn are out of scope)",
            subject=subject)


def shell_sizes(shell_ls) -> np.ndarray:
    """Number of orbitals (2l+1) of each shell."""
    return 2 * np.asarray(shell_ls, dtype=np.int64) + 1


@dataclass(frozen=True)
class OrbitalTable:
    """How an engine/format orders and signs the 2l+1 real harmonics of a shell.

    ``perm[l][k]`` is the engine's index of the project's k-th orbital (m = k - l) and
    ``sign[l][k]`` the factor applied, so ``project = sign * engine[perm]``.
    """

    name: str
    perm: dict[int, tuple[int, ...]]
    sign: dict[int, tuple[int, ...]]

    def shell_transform(self, l: int) -> np.ndarray:
        """(2l+1, 2l+1) matrix T with project_vector = T @ engine_vector."""
        n = 2 * l + 1
        perm = self.perm.get(l, tuple(range(n)))
        sign = self.sign.get(l, (1,) * n)
        t = np.zeros((n, n))
        t[np.arange(n), perm] = sign
        return t

    def atom_transform(self, shell_ls) -> np.ndarray:
        """Block-diagonal (n, n) matrix for an atom with shells ``shell_ls``."""
        sizes = shell_sizes(shell_ls)
        out = np.zeros((sizes.sum(), sizes.sum()))
        o = 0
        for l, n in zip(shell_ls, sizes):
            out[o:o + n, o:o + n] = self.shell_transform(int(l))
            o += n
        return out

    @property
    def is_identity(self) -> bool:
        return all(tuple(p) == tuple(range(len(p))) for p in self.perm.values()) and all(
            all(s == 1 for s in sg) for sg in self.sign.values())


def _identity_table(name: str, lmax: int = 4) -> OrbitalTable:
    return OrbitalTable(name, {l: tuple(range(2 * l + 1)) for l in range(lmax + 1)},
                        {l: (1,) * (2 * l + 1) for l in range(lmax + 1)})


#: GPAW's real spherical harmonics (gpaw.sphere.spherical_harmonics: y, z, x; xy, yz,
#: 3z2-r2, zx, x2-y2; ...) coincide with the project's order and signs; this is proven by
#: tests/test_rotations.py (GPAW's Y vs ours) and the rotate-and-recompute test.
ORBITAL_TABLES: dict[str, OrbitalTable] = {
    "gpaw": _identity_table("gpaw"),
}


def _abacus_table(lmax: int = 3) -> OrbitalTable:
    """ABACUS: a shell is ordered m = 0, +1, -1, +2, -2, ... and its real harmonics carry a
    factor (-1)^m against ours (l=1: z, -x, -y).  Project m sits at ABACUS index 2m-1 (m > 0)
    or 2|m| (m <= 0).  Verified on real ABACUS S(R)/H(R) for l <= 2 by crystal-symmetry
    equivariance (tests/test_formats_abacus.py); l = 3 follows the same rule, unverified."""
    perm, sign = {}, {}
    for l in range(lmax + 1):
        ms = range(-l, l + 1)
        perm[l] = tuple(2 * m - 1 if m > 0 else -2 * m for m in ms)
        sign[l] = tuple(-1 if m % 2 else 1 for m in ms)
    return OrbitalTable("abacus", perm, sign)


#: OpenMX / legacy DeepH (DeepH-pack, DeepH-E3 ``hamiltonians.h5``): p = (x, y, z) and
#: d = (3z2-r2, x2-y2, xy, xz, yz), no sign changes.  Recovered on the DeepH-dock MoTe2 pair
#: (legacy vs updated folder: exact) and by symmetry equivariance; only l <= 2 is known, so a
#: legacy file with f shells is refused rather than guessed.
_OPENMX = OrbitalTable("openmx", {0: (0,), 1: (1, 2, 0), 2: (2, 4, 0, 3, 1)},
                       {0: (1,), 1: (1, 1, 1), 2: (1, 1, 1, 1, 1)})

ORBITAL_TABLES.update({
    "abacus": _abacus_table(),
    # dftio / DeePTB h5 (``hamiltonians.h5``, ``overlaps.h5``) re-order ABACUS output to m = -l..l and
    # multiply by (-1)^m: that is exactly the project's convention (verified by symmetry equivariance).
    "deeptb": _identity_table("deeptb"),
    # DeepH-dock "updated" format (atom_pairs / chunk_* / entries): m = -l..l, e3nn ("wiki") order.
    "deeph": _identity_table("deeph"),
    "deeph-legacy": _OPENMX,
})


def orbital_table(name: str, shell_ls=()) -> OrbitalTable:
    """The table of engine/format ``name``; :class:`FormatError` if it does not cover every l in
    ``shell_ls`` (an unknown order is refused, never guessed)."""
    from .errors import FormatError

    try:
        table = ORBITAL_TABLES[name]
    except KeyError:
        raise FormatError(f"no orbital-order table for {name!r}; known: {sorted(ORBITAL_TABLES)}") from None
    bad = sorted({int(l) for l in shell_ls} - set(table.perm))
    if bad:
        raise FormatError(f"the {name} orbital order of shells with l = {bad} is not known (tables cover "
                          f"l <= {max(table.perm)}); refusing to guess it")
    return table


def signed_permutation(table: OrbitalTable, shell_ls) -> tuple[np.ndarray, np.ndarray]:
    """Index form of :meth:`OrbitalTable.atom_transform` for an atom with shells ``shell_ls``.

    Returns ``(to_project, sign)``, both (n,): the engine's orbital e becomes the project's
    orbital ``to_project[e]`` multiplied by ``sign[e]`` (so ``project[to_project] = sign * engine``).
    Export is the inverse: ``engine = sign * project[to_project]``.
    """
    t = table.atom_transform(shell_ls)
    proj, eng = np.nonzero(t)
    to_project = np.empty(len(eng), np.int64)
    sign = np.empty(len(eng))
    to_project[eng] = proj
    sign[eng] = t[proj, eng]
    return to_project, sign


def spinor_from_parts(scalar: np.ndarray, sx: np.ndarray, sy: np.ndarray, sz: np.ndarray) -> np.ndarray:
    """Spin-major spinor block from H = scalar x 1 + (Vx, Vy, Vz) . sigma components.

    ``scalar``/``sx``/``sy``/``sz`` have shape (..., n_i, n_j); the result has shape
    (..., 2 n_i, 2 n_j) with blocks uu = s + z, ud = x - i y, du = x + i y, dd = s - z.
    """
    uu = scalar + sz
    ud = sx - 1j * sy
    du = sx + 1j * sy
    dd = scalar - sz
    top = np.concatenate([uu, ud], axis=-1)
    bot = np.concatenate([du, dd], axis=-1)
    return np.concatenate([top, bot], axis=-2).astype(np.complex128)


def spin_view(block: np.ndarray, n_i: int, n_j: int) -> np.ndarray:
    """A spin-major spinor block (2n_i x 2n_j, or its n_i*n_j*4 flat entries) as a
    (2, n_i, 2, n_j) view: ``v[s1, :, s2, :]`` is the (s1, s2) spin block, 0 = up."""
    return np.asarray(block).reshape(2, n_i, 2, n_j)


def conventions_dict() -> dict:
    """The conventions as plain data, for sample/store metadata."""
    return {
        "version": CONVENTIONS_VERSION,
        "energy_unit": "eV", "length_unit": "Angstrom", "error_unit": "meV",
        "cell": "row vectors (cell[i] is lattice vector i)",
        "kpoints": "reduced coordinates of the reciprocal lattice",
        "orbital_order": "shell by shell; m=-l..l real spherical harmonics, Wikipedia convention (l=1: y,z,x)",
        "spinor_layout": "spin-major [[uu, ud], [du, dd]], spin along z; S spin-independent (S x I2)",
        "block_definition": "X_ij(R) = <phi_i(r-tau_i)|X|phi_j(r-tau_j-R)>",
        "bloch_sum": "X(k) = sum_R exp(+2 pi i k.R) X(R)",
        "edge_set": "union of supports of H, H0 and S; every edge has its reverse (j,i,-R)",
        "hermiticity": "X_ji(-R) = X_ij(R)^dagger",
        "gauge": "mu* = Re<D,S>/<S,S> per structure over scored entries; error D - mu* S",
        "headline_edge_cutoff_angstrom": HEADLINE_EDGE_CUTOFF,
        "distance_bins_angstrom": list(DISTANCE_BINS),
        "precision": "float64 / complex128, lossless",
    }
