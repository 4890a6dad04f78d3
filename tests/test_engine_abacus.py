"""The ABACUS engine: registry, clear error without the binary, input files, and (with the binary) a real run.

The input files are checked by reading them back with the project's own ABACUS parsers.  The end-to-end
run needs ``abacus`` on PATH plus pseudopotentials and orbitals (MATERIALS_HAM_ABACUS_PSEUDO_DIR /
MATERIALS_HAM_ABACUS_ORBITAL_DIR); it is skipped, with the reason, where they are absent.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from formats_helpers import external_case
from materials_ham import Crystal, EngineError
from materials_ham.engines import get_engine
from materials_ham.engines.abacus import AbacusEngine
from materials_ham.formats.abacus import read_input, read_orbital_header, read_stru

HAVE_ABACUS = shutil.which("abacus") is not None


@pytest.fixture()
def si_crystal():
    from ase.build import bulk

    return Crystal.from_ase(bulk("Si", "diamond", a=5.431))


@pytest.fixture()
def orbital_dir():
    case = external_case("abacus_Si2_sz_nspin1_newfmt_abacusdevelop")
    return case / "PP_ORB"


def test_registered_beside_gpaw():
    e = get_engine("abacus", command="abacus")
    assert isinstance(e, AbacusEngine) and e.name == "abacus"
    s = e.settings()
    assert (s["ecutwfc"], s["scf_thr"], s["kspacing"], s["h0_mode"]) == (100.0, 1e-6, 0.10, "get_hs")


@pytest.mark.skipif(HAVE_ABACUS, reason="abacus is installed here: the missing-binary error cannot be shown")
def test_missing_binary_is_a_clear_engine_error(si_crystal):
    e = get_engine("abacus", command="abacus")
    with pytest.raises(EngineError, match=r"ABACUS binary 'abacus' is not on PATH"):
        e.compute(si_crystal)
    with pytest.raises(EngineError, match="not on PATH"):
        get_engine("abacus", command="/nonexistent/abacus").binary()


def test_cli_compute_with_abacus_engine_fails_cleanly_without_binary(tmp_path):
    if HAVE_ABACUS:
        pytest.skip("abacus is installed here")
    import subprocess
    import sys

    from ase.build import bulk

    from formats_helpers import ROOT

    bulk("Si", "diamond", a=5.431).write(tmp_path / "POSCAR", format="vasp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATERIALS_HAM_ABACUS")}
    r = subprocess.run([sys.executable, "-m", "materials_ham.cli", "compute", str(tmp_path / "POSCAR"), "-o",
                        str(tmp_path / "x.npz"), "--engine", "abacus"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert r.returncode == 4 and "Traceback" not in r.stderr and "not on PATH" in r.stderr


def test_written_inputs_read_back(si_crystal, orbital_dir, tmp_path):
    e = get_engine("abacus", orbital_dir=str(orbital_dir), pseudopotentials={"Si": "Si_dojo_nsoc.upf"})
    folder = e.write_inputs(si_crystal, tmp_path / "scf")
    stru = read_stru(folder / "STRU")
    assert np.allclose(stru.cell, si_crystal.cell, atol=1e-12)
    assert np.allclose(stru.positions, si_crystal.positions, atol=1e-12)
    assert stru.orbital_files == ["Si_dojo_6au_sz.orb"] and stru.pseudo_files == ["Si_dojo_nsoc.upf"]
    assert all(m == 0.0 for m in stru.magnetization)                      # started non-magnetic
    p = read_input(folder / "INPUT")
    assert (p["nspin"], p["lspinorb"], p["calculation"], p["out_mat_hs2"]) == ("4", "1", "scf", "1")
    assert float(p["ecutwfc"]) == 100.0 and float(p["scf_thr"]) == 1e-6
    nao = 2 * sum(2 * l + 1 for l in read_orbital_header(orbital_dir / "Si_dojo_6au_sz.orb").ls)
    assert int(p["nbands"]) == 2 * nao                                    # every spinor band
    mesh = e.cfg.mp_grid(si_crystal)
    assert (folder / "KPT").read_text().splitlines()[3].split()[:3] == [str(m) for m in mesh]
    bands = e.write_inputs(si_crystal, tmp_path / "bands", calculation="nscf", kpoints=e.cfg.reference_kpts)
    lines = (bands / "KPT").read_text().splitlines()
    assert lines[1] == str(len(e.cfg.reference_kpts)) and lines[2] == "Direct"
    assert read_input(bands / "INPUT")["init_chg"] == "file"


def test_missing_pseudopotential_is_named(si_crystal, tmp_path):
    e = get_engine("abacus", pseudo_dir=str(tmp_path), orbital_dir=str(tmp_path))
    with pytest.raises(EngineError, match=r"no pseudo file\(s\) for Si"):
        e.check_coverage(si_crystal)


@pytest.mark.skipif(not HAVE_ABACUS, reason="the ABACUS binary is not on PATH (HPC only): the end-to-end run is skipped")
def test_end_to_end_run(si_crystal):  # pragma: no cover - needs ABACUS
    pp, orb = os.environ.get("MATERIALS_HAM_ABACUS_PSEUDO_DIR"), os.environ.get("MATERIALS_HAM_ABACUS_ORBITAL_DIR")
    if not (pp and orb):
        pytest.skip("set MATERIALS_HAM_ABACUS_PSEUDO_DIR and MATERIALS_HAM_ABACUS_ORBITAL_DIR for the ABACUS run")
    from materials_ham.validate import validate_sample

    s = get_engine("abacus", kpts=(2, 2, 2), h0_mode="none").compute(si_crystal)
    assert validate_sample(s).passed
