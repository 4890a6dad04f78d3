"""The CLI end to end: real compute + validate, and bad input -> one line, exit != 0, nothing written."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "materials_ham.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=600)


def test_compute_then_validate(tmp_path):
    from ase.build import bulk

    bulk("Si", "diamond", a=5.431).write(tmp_path / "POSCAR", format="vasp")
    out = tmp_path / "si.npz"
    r = run("compute", tmp_path / "POSCAR", "-o", out, "--kpts", 2, 2, 2)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "PASSED" in r.stdout
    r = run("validate", out, "--json", tmp_path / "report.json")
    assert r.returncode == 0, r.stderr
    assert "band_reproduction" in r.stdout and (tmp_path / "report.json").is_file()


@pytest.mark.parametrize("content, name, match", [
    ("data_x\n_cell_length_a 5\n", "broken.cif", "cannot parse"),
    (None, "missing.cif", "no such file"),
])
def test_compute_bad_file(tmp_path, content, name, match):
    p = tmp_path / name
    if content is not None:
        p.write_text(content)
    out = tmp_path / "out.npz"
    r = run("compute", p, "-o", out)
    assert r.returncode != 0
    assert match in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3  # one message (rich may wrap a long line)
    assert not out.exists() and not list(tmp_path.glob(".out.npz*"))


def test_compute_lanthanide_and_tc(tmp_path):
    from ase.build import bulk

    for sym, match in [("Ce", "Ce"), ("Tc", "Tc")]:
        bulk(sym, "fcc", a=4.0).write(tmp_path / f"{sym}.cif")
        out = tmp_path / f"{sym}.npz"
        r = run("compute", tmp_path / f"{sym}.cif", "-o", out)
        assert r.returncode != 0 and match in r.stderr and "Traceback" not in r.stderr
        assert not out.exists()


def test_validate_corrupt_sample_fails(si_fixture_path, tmp_path):
    from materials_ham import load_sample

    s = load_sample(si_fixture_path)
    s.ref_eigenvalues[0, 0] += 1.0
    s.save(tmp_path / "bad.npz")
    r = run("validate", tmp_path / "bad.npz")
    assert r.returncode == 5
    assert "band_reproduction" in r.stdout and "failed validation" in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_not_a_sample(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("hello")
    r = run("validate", p)
    assert r.returncode == 3 and "not a materials-ham sample" in r.stderr and "Traceback" not in r.stderr
