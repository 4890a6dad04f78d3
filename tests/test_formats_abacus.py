"""ABACUS importer on every real ABACUS case (old and new CSR headers, nspin 1 and 4).

The small cases are copied in tests/data/external; Si2 dzp and the two GaAs SOC cases are read from
../shared/external and skip when it is absent.  Physics checks on every import: exact Hermiticity,
S(k) positive definite, and crystal-symmetry equivariance of the blocks (which proves the orbital
order/sign table, the spin layout and the sign of R: see tests/formats_helpers.py).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from formats_helpers import ROOT, atom_shells, external_case, sample_blocks, symmetry_deviation
from materials_ham import FormatError
from materials_ham.conventions import ORBITAL_TABLES, RYDBERG_EV, OrbitalTable
from materials_ham.formats import abacus as A
from materials_ham.formats import import_abacus, read_csr, read_running_log
from materials_ham.validate import validate_sample

# (case, file, header, dim, number of R, total nnz, complex) -- numbers from each PROVENANCE.md
CSR_CASES = [
    ("abacus_C1_nspin4_newfmt_abacusdevelop", "hrs1_nao.csr.ref", "new", 26, 7, 662, True),
    ("abacus_C1_nspin4_newfmt_abacusdevelop", "srs1_nao.csr.ref", "new", 26, 7, 646, True),
    ("abacus_C1_nspin4_oldfmt_abacusdevelop", "data-HR-sparse_SPIN0.csr.ref", "old", 26, 1, 42, True),
    ("abacus_C1_nspin4_oldfmt_abacusdevelop", "data-SR-sparse_SPIN0.csr.ref", "old", 26, 1, 26, True),
    ("abacus_Si2_sz_nspin1_newfmt_abacusdevelop", "hrs1_nao.csr.ref", "new", 8, 13, 520, False),
    ("abacus_Si2_sz_nspin1_newfmt_abacusdevelop", "srs1_nao.csr.ref", "new", 8, 13, 376, False),
    ("abacus_Si2_dzp_nspin1_oldfmt_abacusdevelop", "data-HR-sparse_SPIN0.csr.ref", "old", 26, 183, 89242, False),
    ("abacus_Si2_dzp_nspin1_oldfmt_abacusdevelop", "data-SR-sparse_SPIN0.csr.ref", "old", 26, 183, 35550, False),
    # the new-style file name with the old header (file names do not tell the format)
    ("abacus_GaAs_soc_deeptb", "OUT.ABACUS/srs1_nao.csr", "old", 62, 153, 106898, True),
    ("abacus_GaAs_soc_deephdock", "OUT.ABACUS/data-SR-sparse_SPIN0.csr", "old", 62, 153, 106898, True),
]
IMPORT_CASES = ["abacus_C1_nspin4_newfmt_abacusdevelop", "abacus_C1_nspin4_oldfmt_abacusdevelop",
                "abacus_Si2_sz_nspin1_newfmt_abacusdevelop", "abacus_Si2_dzp_nspin1_oldfmt_abacusdevelop"]
SOC_OVERLAP_CASES = ["abacus_GaAs_soc_deeptb", "abacus_GaAs_soc_deephdock"]


def case(name, local_only=False):
    path = external_case(name, local_only=local_only)
    if path is None:
        pytest.skip(f"external case {name} is not in tests/data/external and ../shared/external is absent")
    return path


def spin_block(blocks, s1=0, s2=0):
    return {k: v.reshape(2, v.shape[0] // 2, 2, v.shape[1] // 2)[s1, :, s2, :].real for k, v in blocks.items()}


@pytest.mark.parametrize("name, fname, header, dim, n_r, nnz, cplx", CSR_CASES)
def test_csr_header_is_told_by_content(name, fname, header, dim, n_r, nnz, cplx):
    csr = read_csr(case(name) / fname)
    assert (csr.header, csr.dim, len(csr.shifts), csr.n_entries, csr.is_complex) == (header, dim, n_r, nnz, cplx)
    assert csr.nnz.sum() == nnz and (csr.cols < dim).all() and (csr.rows < dim).all()
    if header == "new":
        assert csr.lattice is not None and csr.lattice["lattice_constant_angstrom"] > 0


def test_wrapped_index_line_is_not_taken_for_an_r_line():
    path = case("abacus_Si2_sz_nspin1_newfmt_abacusdevelop") / "srs1_nao.csr.ref"
    text = path.read_text()
    assert re.search(r"^\s*6 4 5 7\s*$", text, re.M), "the pitfall line is part of the real file"
    csr = read_csr(path)
    assert tuple(csr.shifts[0]) == (-1, 0, 0) and csr.nnz[0] == 36
    shifts = {tuple(r) for r in csr.shifts.tolist()}
    assert len(shifts) == 13 and all(tuple(-x for x in r) in shifts for r in shifts)
    assert (6, 4, 5) not in shifts


def test_oldest_header_without_step_line(tmp_path):
    src = case("abacus_C1_nspin4_oldfmt_abacusdevelop") / "data-HR-sparse_SPIN0.csr.ref"
    text = src.read_text()
    assert text.startswith("STEP: 0")
    dst = tmp_path / "data-HR-sparse_SPIN0.csr"
    dst.write_text(text.split("\n", 1)[1])
    a, b = read_csr(src), read_csr(dst)
    assert a.step == 0 and b.step is None
    assert np.array_equal(a.values, b.values) and np.array_equal(a.cols, b.cols) and np.array_equal(a.rows, b.rows)


@pytest.mark.parametrize("name", IMPORT_CASES)
def test_import_every_abacus_case(name):
    s = import_abacus(case(name))
    report = validate_sample(s)
    assert report["hermiticity"].value == 0.0 and report["layout"].passed and report["finite"].passed
    assert report["overlap_positive_definite"].value > 1e-4
    herm = s.info["hermiticity_before_symmetrize"]
    assert herm["H"]["max_hermiticity_deviation"] < 1e-12 and herm["S"]["max_hermiticity_deviation"] < 1e-12
    # the spin-up/up parts of H (no SOC in these runs) and S transform with the crystal's symmetry
    ls = atom_shells(s)
    for blocks in (sample_blocks(s, "S"), spin_block(sample_blocks(s, "H"))):
        dev = symmetry_deviation(s.crystal, ls, blocks, spinor=False)
        assert dev["max_dev"] < 1e-6 * dev["scale"] and dev["missing"] == 0 and dev["n_ops"] == 48
    # provenance: every file with its sha256; H0 honestly absent
    assert all(len(f["sha256"]) == 64 for f in s.provenance["files"])
    assert any(f["path"].endswith(".csr.ref") for f in s.provenance["files"])
    assert s.info["h0_available"] is False and not s.H0.any() and "absent" in s.provenance["h0"]
    assert len(s.ref_kpts) == 0 and s.ref_eigenvalues.shape == (0, 2 * s.nao)


def test_units_spin_layout_and_magnetism_of_the_nspin4_run():
    folder = case("abacus_C1_nspin4_oldfmt_abacusdevelop")
    s = import_abacus(folder)
    csr = read_csr(folder / "data-HR-sparse_SPIN0.csr.ref")
    # row 0 of the file (C 2s zeta 1, spin up) couples to columns 0 and 2 (interleaved spin: 2 mu + s)
    first = csr.values[csr.rows == 0]
    assert list(csr.cols[csr.rows == 0]) == [0, 2]
    h = s.block("H", 0).reshape(2, 13, 2, 13)
    assert h[0, 0, 0, 0] == first[0].real * RYDBERG_EV and h[0, 0, 0, 1] == first[1].real * RYDBERG_EV
    assert not h[0, :, 1, :].any() and not h[1, :, 0, :].any()           # no SOC: spin off-diagonal zero
    assert np.abs(h[0, :, 0] - h[1, :, 1]).max() > 1.0                    # but the atom is spin-polarised
    assert s.engine["spin"].startswith("magnetic")
    assert "kramers_degeneracy" not in validate_sample(s).numbers()       # not applied to a magnetic run
    d = np.diag(h[0, :, 0, :]).real                                        # cubic box: d splits into t2g / eg
    t2g, eg = d[[8, 9, 11]], d[[10, 12]]                                  # xy, yz, zx / 3z2-r2, x2-y2
    assert np.ptp(t2g) < 1e-9 and np.ptp(eg) < 1e-9 and abs(t2g[0] - eg[0]) > 1e-3


def test_r_sign_overlap_vanishes_beyond_the_orbital_radii():
    s = import_abacus(case("abacus_Si2_sz_nspin1_newfmt_abacusdevelop"))
    rc = s.basis[14].cutoffs[0]
    lengths = s.edge_lengths()
    nonzero = np.array([np.abs(s.block("S", e)).max() > 0 for e in range(s.n_edges)])
    assert lengths[nonzero].max() < 2 * rc
    flipped = np.linalg.norm(s.crystal.positions[s.edge_index[:, 1]] - s.edge_shift @ s.crystal.cell
                             - s.crystal.positions[s.edge_index[:, 0]], axis=1)
    assert flipped[nonzero].max() > 2 * rc     # with R of the other sign the overlap would reach too far


def test_wrong_orbital_table_breaks_the_symmetry(monkeypatch):
    """Negative control: the equivariance check fails without ABACUS's (-1)^m signs."""
    folder = case("abacus_Si2_sz_nspin1_newfmt_abacusdevelop")
    t = ORBITAL_TABLES["abacus"]
    monkeypatch.setitem(ORBITAL_TABLES, "abacus", OrbitalTable("x", t.perm, {l: (1,) * (2 * l + 1) for l in t.perm}))
    s = import_abacus(folder)
    dev = symmetry_deviation(s.crystal, atom_shells(s), sample_blocks(s, "S"), spinor=False)
    assert dev["max_dev"] > 1e-2


def test_abacus_table_is_the_documented_rule():
    t = ORBITAL_TABLES["abacus"]
    # project p = (y, z, x); ABACUS p = (z, x, y) as m = 0, +1, -1 with (-1)^m signs
    assert t.perm[1] == (2, 0, 1) and t.sign[1] == (-1, 1, -1)
    assert t.perm[2] == (4, 2, 0, 1, 3) and t.sign[2] == (1, -1, 1, -1, 1)
    x = np.arange(1.0, 6.0)
    assert np.array_equal(t.shell_transform(2).T @ (t.shell_transform(2) @ x), x)


@pytest.mark.parametrize("name", SOC_OVERLAP_CASES)
def test_soc_overlap_is_spin_independent_real_and_symmetric(name):
    run = A.locate_run(case(name), need_h=False)
    crystal, basis, atom_ls = A.run_basis(run)
    H, S, desc = A.read_run_matrices(run, crystal, atom_ls)
    assert H is None and desc["nspin"] == 4 and desc["files"]["S"]["header"] == "old"
    dev = symmetry_deviation(crystal, atom_ls, S, spinor=False)
    assert dev["max_dev"] < 1e-7 and dev["missing"] == 0 and dev["n_ops"] == 24
    from materials_ham.formats.common import assemble

    s, herm = assemble(crystal, basis, {"S": S}, subject=name, fermi_level=0.0, n_electrons=0.0)
    assert herm["S"]["max_hermiticity_deviation"] < 1e-12
    assert validate_sample(s)["overlap_positive_definite"].value > 1e-4


def test_running_log_v3_10():
    log = read_running_log(case("abacus_GaAs_soc_deephdock") / "OUT.ABACUS" / "running_scf.log")
    assert log.version == "3.10.0" and log.nspin == 4 and log.nlocal == 62 and log.converged
    assert log.zeta == {"As": [(0, 2), (1, 2), (2, 1)], "Ga": [(0, 2), (1, 2), (2, 2)]}
    assert log.fermi_ev == 7.8510353074 and log.n_electrons == 18.0
    assert log.shell_ls("Ga") == (0, 0, 1, 1, 2, 2)


def test_run_without_h_matrix_is_a_clear_error():
    with pytest.raises(FormatError, match=r"OUT.ABACUS: no Hamiltonian matrix file"):
        import_abacus(case("abacus_GaAs_soc_deephdock"))


# ------------------------------------------------------------------------------ bad input
def copy_case(tmp_path, name="abacus_Si2_sz_nspin1_newfmt_abacusdevelop"):
    return shutil.copytree(case(name), tmp_path / name, copy_function=shutil.copy)


def test_truncated_csr_names_the_file_and_block(tmp_path):
    run = copy_case(tmp_path)
    f = run / "hrs1_nao.csr.ref"
    f.chmod(0o644)
    text = f.read_text()
    f.write_text(text[: len(text) // 2])
    with pytest.raises(FormatError, match=r"hrs1_nao.csr.ref: truncated: block \d+ of 13"):
        import_abacus(run)


def test_stray_tokens_and_bad_numbers(tmp_path):
    src = case("abacus_C1_nspin4_oldfmt_abacusdevelop") / "data-SR-sparse_SPIN0.csr.ref"
    f = tmp_path / "x.csr"
    f.write_text(src.read_text() + "\n1 2 3\n")
    with pytest.raises(FormatError, match=r"x.csr: 3 unexpected tokens after the last of 1 blocks"):
        read_csr(f)
    f.write_text(src.read_text().replace("0 0 0 26", "0 0 x 26"))
    with pytest.raises(FormatError, match=r"x.csr: block 1 of 1: expected 'Rx Ry Rz nnz'"):
        read_csr(f)
    f.write_text("hello\nworld\n")
    with pytest.raises(FormatError, match=r"x.csr: unrecognised CSR header"):
        read_csr(f)


def test_log_of_unknown_version_or_drifted_layout_is_refused(tmp_path):
    f = tmp_path / "running_scf.log"
    f.write_text("\n                              ABACUS v4.0.0\n\n READING ATOM TYPE 1\n")
    with pytest.raises(FormatError, match=r"running_scf.log: running log of ABACUS v4.0.0: its layout is not known"):
        read_running_log(f)
    f.write_text("no banner here\n")
    with pytest.raises(FormatError, match=r"no 'ABACUS vX.Y.Z' version line"):
        read_running_log(f)
    f.write_text("   ABACUS v3.10.0\n READING ATOM TYPE 1\n atom label = Si\n L=0, number of zeta = 1\n"
                 " number of atom for this type = 2\n")
    with pytest.raises(FormatError, match=r"ABACUS v3.10.0 log without an 'nspin = n' line.*drifted"):
        read_running_log(f)


def test_unknown_log_version_in_a_run_folder_is_refused_unless_ignored(tmp_path):
    run = copy_case(tmp_path)
    (run / "OUT.ABACUS").mkdir()
    (run / "OUT.ABACUS" / "running_scf.log").write_text("  ABACUS v5.1.0\n")
    with pytest.raises(FormatError, match="v5.1.0"):
        import_abacus(run)
    assert import_abacus(run, no_log=True).nao == 8


def test_missing_files(tmp_path):
    run = copy_case(tmp_path)
    (run / "srs1_nao.csr.ref").unlink()
    with pytest.raises(FormatError, match=r"no overlap matrix file"):
        import_abacus(run)
    (run / "STRU").unlink()
    with pytest.raises(FormatError, match=r"no structure file \(STRU\)"):
        import_abacus(run)
    with pytest.raises(FormatError, match="no such ABACUS run folder"):
        import_abacus(tmp_path / "nothing")
    run2 = copy_case(tmp_path / "b")
    shutil.rmtree(run2 / "PP_ORB")
    with pytest.raises(FormatError, match=r"cannot tell the basis of species Si: no running log and no orbital file"):
        import_abacus(run2)


def test_csr_of_another_structure_is_refused(tmp_path):
    run = copy_case(tmp_path)
    stru = run / "STRU"
    stru.chmod(0o644)
    stru.write_text(stru.read_text().replace("15.3", "10.2"))
    with pytest.raises(FormatError, match=r"cell in the CSR header differs from the STRU cell"):
        import_abacus(run)


def test_h0_from_a_second_run(tmp_path):
    run = copy_case(tmp_path / "h")
    run0 = copy_case(tmp_path / "h0")
    s = import_abacus(run, h0_dir=run0)
    assert s.info["h0_available"] is True and np.array_equal(s.H0, s.H) and "second run" in s.provenance["h0"]
    other = case("abacus_C1_nspin4_newfmt_abacusdevelop")
    with pytest.raises(FormatError, match="different structure or basis"):
        import_abacus(run, h0_dir=other)


# ------------------------------------------------------------------------------------ CLI
def cli(*args):
    return subprocess.run([sys.executable, "-m", "materials_ham.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_cli_convert_abacus(tmp_path):
    from materials_ham import load_sample

    folder = case("abacus_C1_nspin4_newfmt_abacusdevelop")
    out = tmp_path / "c.npz"
    r = cli("convert", "abacus", folder, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "PASSED" in r.stdout and "H0 absent" in r.stdout
    a, b = load_sample(out), import_abacus(folder)
    assert np.array_equal(a.H, b.H) and np.array_equal(a.S, b.S) and a.provenance["files"] == b.provenance["files"]


def test_cli_convert_abacus_bad_input_is_one_line(tmp_path):
    run = copy_case(tmp_path)
    f = run / "srs1_nao.csr.ref"
    f.chmod(0o644)
    f.write_text(f.read_text()[:3000])
    out = tmp_path / "x.npz"
    r = cli("convert", "abacus", run, "-o", out)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "srs1_nao.csr.ref" in r.stderr and "truncated" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3 and not out.exists()
