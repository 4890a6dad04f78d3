"""DeePTB / dftio h5 import: the real ABACUS SOC pair (H, H0, S of GaAs) and a local layout test.

The GaAs case (12 MB) is read from ../shared/external and its tests skip when that is absent.  The
local tests write the dftio layout from the real ABACUS Si2 run (tests/data/external) and read it back.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from formats_helpers import atom_shells, external_case, sample_blocks, symmetry_deviation
from materials_ham import FormatError
from materials_ham.formats import import_abacus, import_deeptb
from materials_ham.formats import abacus as A
from materials_ham.formats.common import engine_band_errors
from materials_ham.validate import validate_sample

h5py = pytest.importorskip("h5py")
GAAS = "abacus_GaAs_soc_deeptb"


@pytest.fixture(scope="module")
def gaas():
    folder = external_case(GAAS)
    if folder is None:
        pytest.skip(f"{GAAS} (12 MB) lives only in ../shared/external, which is absent")
    return folder, import_deeptb(folder)


def test_gaas_reproduces_abacus_band_energies(gaas):
    _, s = gaas
    errs = engine_band_errors(s)
    assert [(e["n_kpoints"], e["n_bands"]) for e in errs] == [(64, 35), (122, 35)]   # SCF mesh, NSCF path
    for e in errs:
        assert e["max_mev"] < 0.01, e       # the project's validation tolerance; float32 h5 gives ~0.003
    assert s.n_electrons == pytest.approx(18.0, abs=1e-6)   # sum of ABACUS occupations
    assert np.isnan(s.fermi_level) and s.engine["spin"].startswith("non-magnetic")


def test_gaas_blocks_are_physical(gaas):
    _, s = gaas
    report = validate_sample(s)
    assert report.passed, [r.name for r in report.failures()]
    assert report["kramers_degeneracy"].value < 1e-6
    ls = atom_shells(s)
    for name, spinor in (("S", False), ("H", True), ("H0", True)):
        dev = symmetry_deviation(s.crystal, ls, sample_blocks(s, name), spinor=spinor)
        assert dev["max_dev"] < 1e-6 * dev["scale"] and dev["missing"] == 0 and dev["n_ops"] == 24, name
    assert s.n_edges == 428 and s.nao == 31


def test_gaas_h5_overlap_equals_the_converted_abacus_csr(gaas):
    folder, s = gaas
    run = A.locate_run(folder, need_h=False)
    crystal, basis, atom_ls = A.run_basis(run)
    _, S, _ = A.read_run_matrices(run, crystal, atom_ls)
    h5 = sample_blocks(s, "S")
    assert max(float(np.abs(h5[k] - v).max()) for k, v in S.items()) < 1e-7     # float32 storage
    assert all(not h5[k].any() for k in set(h5) - set(S))   # H-only edges: S is zero there


def test_gaas_h0_baseline_with_the_projects_scorer(gaas):
    from materials_ham.evaluate.metrics import GROUPINGS, MatrixReference, aggregate_matrix, edge_sums, group_sums

    _, s = gaas
    assert s.info["h0_available"] and "hamiltonians_0.h5" in s.provenance["h0"]
    ref = MatrixReference.from_sample(s)
    sums = edge_sums(ref, s.H0)
    table = aggregate_matrix([{g.name: group_sums(ref, sums, g) for g in GROUPINGS}])
    head = table["overall"]["all"]
    # the numbers of the report (and of CONVENTIONS.md: 1.06 meV over ABACUS GaAs's 428 stored blocks)
    assert head["spin_diag_real"]["mean"] == pytest.approx(2.389, abs=2e-3)
    assert table["all_stored_edges"]["all"]["spin_diag_real"]["mean"] == pytest.approx(1.06, abs=5e-3)
    # H - H0 of a non-magnetic ABACUS run is real and spin-diagonal: SOC comes unchanged from the pseudopotential
    assert head["imag"]["mean"] == 0.0 and head["ud_real"]["mean"] == 0.0
    assert np.abs(s.H0 - s.H).max() > 0.1


# -------------------------------------------------------------- local: the layout itself
def write_dftio(sample, folder, names=("hamiltonians.h5", "overlaps.h5")):
    for fname, mat in zip(names, ("H", "S")):
        with h5py.File(folder / fname, "w") as fh:
            g = fh.create_group("0")
            for e, ((i, j), r) in enumerate(zip(sample.edge_index, sample.edge_shift)):
                g.create_dataset(f"{i}_{j}_{r[0]}_{r[1]}_{r[2]}", data=sample.block(mat, e))


@pytest.fixture()
def si_dftio(tmp_path):
    src = external_case("abacus_Si2_sz_nspin1_newfmt_abacusdevelop")
    folder = shutil.copytree(src, tmp_path / "si", copy_function=shutil.copy)
    s = import_abacus(src)
    write_dftio(s, folder)
    return folder, s


def test_local_dftio_layout_round_trip(si_dftio):
    folder, s = si_dftio
    t = import_deeptb(folder)
    assert np.array_equal(t.H, s.H) and np.array_equal(t.S, s.S) and np.array_equal(t.edge_shift, s.edge_shift)
    assert not t.info["h0_available"] and not t.H0.any() and "absent" in t.provenance["h0"]
    assert {f["path"] for f in t.provenance["files"]} >= {"STRU", "hamiltonians.h5", "overlaps.h5"}


def test_bad_dftio_files(si_dftio):
    folder, s = si_dftio
    with h5py.File(folder / "overlaps.h5", "a") as fh:
        fh["0"].create_dataset("0_0_0_0", data=np.eye(4))
    with pytest.raises(FormatError, match=r"overlaps.h5: block key '0_0_0_0' is not 'i_j_Rx_Ry_Rz'"):
        import_deeptb(folder)
    with h5py.File(folder / "overlaps.h5", "a") as fh:
        del fh["0"]["0_0_0_0"]
        del fh["0"]["0_0_0_0_0"]
        fh["0"].create_dataset("0_0_0_0_0", data=np.eye(3))
    with pytest.raises(FormatError, match=r"overlaps.h5: block 0_0_0_0_0 has shape \(3, 3\), the basis needs \(4, 4\)"):
        import_deeptb(folder)
    with pytest.raises(FormatError, match="no frame '7'"):
        import_deeptb(folder, frame="7")
    (folder / "STRU").unlink()
    with pytest.raises(FormatError, match="no STRU beside the h5 files"):
        import_deeptb(folder)
