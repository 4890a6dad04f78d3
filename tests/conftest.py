"""Shared fixtures: real GPAW runs on tiny cells, computed once per test session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
#: Small SCF mesh for the tests (the default density would give 4x4x4).
TEST_KPTS = (2, 2, 2)


@pytest.fixture(scope="session")
def si_fixture_path() -> Path:
    return DATA / "Si-dzp-k222.npz"


@pytest.fixture()
def si_sample(si_fixture_path):
    from materials_ham import load_sample

    return load_sample(si_fixture_path)


@pytest.fixture(scope="session")
def engine():
    from materials_ham.engines import get_engine

    return get_engine("gpaw", kpts=TEST_KPTS)


def _compute(engine, name):
    from materials_ham.structures import default_structures

    crystal, prov = default_structures([name])[name]
    return engine.compute(crystal, provenance=prov)


@pytest.fixture(scope="session")
def gaas_sample(engine):
    return _compute(engine, "GaAs-zincblende")


@pytest.fixture(scope="session")
def pbte_sample(engine):
    """A heavy-element cell: SOC of Pb and Te is large (hundreds of meV)."""
    return _compute(engine, "PbTe-rocksalt")


@pytest.fixture(scope="session")
def low_symmetry_crystal():
    """A 2-atom GaAs cell with a sheared cell and a displaced atom: no symmetry left."""
    from ase.build import bulk

    from materials_ham import Crystal

    atoms = bulk("GaAs", "zincblende", a=5.653)
    cell = atoms.cell.array @ np.array([[1.0, 0.03, -0.02], [0.01, 0.98, 0.04], [-0.03, 0.02, 1.02]])
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions[1] += [0.07, -0.11, 0.05]
    return Crystal.from_ase(atoms)
