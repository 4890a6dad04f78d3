"""Read a structure file (anything ASE or pymatgen can parse) and check it for the engine."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import check_elements
from ..errors import StructureError
from ..sample import Crystal

#: Two atoms closer than this (Angstrom) make a structure unphysical ("overlapping atoms").
MIN_DISTANCE = 0.5


def read_structure(path: str | Path) -> Crystal:
    """Parse CIF, POSCAR, extxyz, ... into a checked :class:`Crystal`.

    Raises :class:`StructureError` naming the file and the cause.
    """
    path = Path(path)
    if not path.is_file():
        raise StructureError("no such file", subject=str(path))
    errors = []
    crystal = None
    try:
        from ase.io import read

        atoms = read(str(path))
        if isinstance(atoms, list):
            atoms = atoms[-1]
        crystal = Crystal.from_ase(atoms)
    except Exception as err:  # noqa: BLE001 - try pymatgen next, report both
        errors.append(f"ase: {type(err).__name__}: {err}")
    if crystal is None:
        try:
            import warnings

            from pymatgen.core import Structure

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = Structure.from_file(str(path))
            crystal = Crystal(np.array(s.atomic_numbers), s.cart_coords, s.lattice.matrix, np.ones(3, bool))
        except Exception as err:  # noqa: BLE001
            errors.append(f"pymatgen: {type(err).__name__}: {err}")
    if crystal is None:
        raise StructureError("cannot parse as a structure (" + "; ".join(e.splitlines()[0][:200] for e in errors) + ")",
                             subject=str(path))
    check_structure(crystal, subject=str(path))
    return crystal


def check_structure(crystal: Crystal, *, subject: str | None = None) -> None:
    """Raise :class:`StructureError` for an empty, non-periodic, degenerate or overlapping structure,
    or one with elements outside the benchmark's 68."""
    if len(crystal) == 0:
        raise StructureError("structure has no atoms", subject=subject)
    if not crystal.pbc.all():
        raise StructureError(f"structure is not periodic in all directions (pbc={crystal.pbc.tolist()}); "
                             "crystals only", subject=subject)
    vol = abs(np.linalg.det(crystal.cell))
    if not np.isfinite(vol) or vol < 1.0:
        raise StructureError(f"cell is degenerate (volume {vol:.3g} A^3)", subject=subject)
    if not np.isfinite(crystal.positions).all():
        raise StructureError("positions contain NaN or infinity", subject=subject)
    check_elements(crystal.numbers, subject=subject)
    d, pair = min_distance(crystal)
    if d < MIN_DISTANCE:
        raise StructureError(f"atoms {pair[0]} and {pair[1]} overlap ({d:.3f} A apart, minimum {MIN_DISTANCE} A)",
                             subject=subject)


def min_distance(crystal: Crystal) -> tuple[float, tuple[int, int]]:
    """Smallest interatomic distance (Angstrom) under periodic boundary conditions."""
    from ase.geometry import get_distances

    _, dist = get_distances(crystal.positions, cell=crystal.cell, pbc=crystal.pbc)
    n = len(crystal)
    if n == 1:
        # self-images: shortest lattice vector
        from ase.geometry import minkowski_reduce

        red, _ = minkowski_reduce(crystal.cell)
        return float(np.linalg.norm(red, axis=1).min()), (0, 0)
    dist = dist + np.diag(np.full(n, np.inf))
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    return float(dist[i, j]), (int(i), int(j))
