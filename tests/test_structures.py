"""Reading and checking structures: each bad input gets one clear error."""
import numpy as np
import pytest

from materials_ham import Crystal, StructureError
from materials_ham.structures import check_structure, default_structures, read_structure


def test_reads_cif_poscar_extxyz(tmp_path):
    from ase.build import bulk

    atoms = bulk("GaAs", "zincblende", a=5.653)
    for name, fmt in [("x.cif", "cif"), ("POSCAR", "vasp"), ("x.extxyz", "extxyz")]:
        atoms.write(tmp_path / name, format=fmt)
        c = read_structure(tmp_path / name)
        assert sorted(c.numbers.tolist()) == [31, 33]
        np.testing.assert_allclose(abs(np.linalg.det(c.cell)), atoms.get_volume(), rtol=1e-6)


def test_unparseable_file(tmp_path):
    p = tmp_path / "junk.cif"
    p.write_text("this is not a crystal\n")
    with pytest.raises(StructureError, match="junk.cif.*cannot parse"):
        read_structure(p)


def test_missing_file(tmp_path):
    with pytest.raises(StructureError, match="no such file"):
        read_structure(tmp_path / "nope.cif")


@pytest.mark.parametrize("crystal, match", [
    (Crystal([14, 14], [[0, 0, 0], [0.2, 0, 0]], np.eye(3) * 5), "overlap"),
    (Crystal([14], [[0, 0, 0]], np.eye(3) * 5, pbc=[True, True, False]), "not periodic"),
    (Crystal([14, 62], [[0, 0, 0], [2, 2, 2]], np.eye(3) * 5), "Sm"),
    (Crystal([14], [[0, 0, 0]], np.zeros((3, 3))), "degenerate"),
])
def test_bad_structures(crystal, match):
    with pytest.raises(StructureError, match=match):
        check_structure(crystal, subject="test-structure")


def test_default_set_is_valid():
    for name, (crystal, prov) in default_structures().items():
        check_structure(crystal, subject=name)
        assert prov["source_id"] == name
