"""DeepH formats: the real DeepH-dock MoTe2 case in both layouts, exact round trips of our samples."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from formats_helpers import atom_shells, external_case, sample_blocks, symmetry_deviation
from materials_ham import FormatError, Sample, load_sample
from materials_ham.formats import export_deeph, import_abacus, import_deeph
from materials_ham.validate import validate_sample

h5py = pytest.importorskip("h5py")
MOTE2 = "deeph_MoTe2_deephdock"


@pytest.fixture(scope="module")
def mote2():
    folder = external_case(MOTE2)
    if folder is None:
        pytest.skip(f"{MOTE2} missing from tests/data/external and ../shared/external")
    return folder / "deeph_legacy_data" / "MoTe2", folder / "deeph_updated_data" / "MoTe2"


def assert_same_sample(a: Sample, b: Sample, *, metadata: bool = True):
    for name in ("H", "H0", "S", "edge_index", "edge_shift", "edge_reverse", "ref_kpts", "ref_eigenvalues"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    for name in ("numbers", "positions", "cell", "pbc"):
        assert np.array_equal(getattr(a.crystal, name), getattr(b.crystal, name)), name
    if metadata:
        ma, mb = a.metadata(), b.metadata()
        mb["provenance"] = {k: v for k, v in mb["provenance"].items() if k != "imported_from"}
        assert json.dumps(ma, sort_keys=True) == json.dumps(mb, sort_keys=True)   # NaN-safe


def test_mote2_both_layouts_give_the_same_blocks(mote2):
    legacy, new = import_deeph(mote2[0]), import_deeph(mote2[1])
    assert legacy.provenance["imported_from"]["format"] == "deeph-legacy"
    assert new.provenance["imported_from"]["format"] == "deeph-new"
    assert legacy.n_edges == new.n_edges == 131 and legacy.nao == 57
    assert_same_sample(legacy, new, metadata=False)
    assert new.fermi_level == pytest.approx(-4.1934752874697425)
    assert not new.info["h0_available"] and not new.H0.any()


def test_mote2_is_physical_and_symmetric(mote2):
    s = import_deeph(mote2[1])
    report = validate_sample(s)
    assert report["hermiticity"].value == 0.0 and report["overlap_positive_definite"].value > 1e-4
    h = s.block("H", 0)
    n = h.shape[0] // 2
    assert np.array_equal(h[:n, :n], h[n:, n:]) and not h[:n, n:].any()     # non-spinful: h x I2
    ls = atom_shells(s)
    dev = symmetry_deviation(s.crystal, ls, sample_blocks(s, "S"), spinor=False)
    assert dev["max_dev"] < 1e-10 and dev["n_ops"] == 12 and dev["missing"] == 0
    # H is symmetric to ~2e-4 of its scale (a real-space grid code); a wrong orbital order gives O(1)
    dev = symmetry_deviation(s.crystal, ls, {k: v[:v.shape[0] // 2, :v.shape[1] // 2].real
                                             for k, v in sample_blocks(s, "H").items()}, spinor=False)
    assert dev["max_dev"] < 1e-3 * dev["scale"]


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_export_reproduces_the_deephdock_files(mote2, layout, tmp_path):
    """Import MoTe2, export it: the h5 blocks equal DeepH-dock's own files key by key (to 1e-8 eV: the
    files are Hermitian to ~5e-9 eV only, and an imported sample is made exactly Hermitian)."""
    src = mote2[1] if layout == "new" else mote2[0]
    out = export_deeph(import_deeph(src), tmp_path / "x", layout)
    name = "hamiltonian.h5" if layout == "new" else "hamiltonians.h5"
    sname = "overlap.h5" if layout == "new" else "overlaps.h5"
    for fname in (name, sname):
        a, b = read_any(src / fname, layout), read_any(out / fname, layout)
        assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype for k in a), fname
        assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-8, fname
    if layout == "new":
        info_a, info_b = json.loads((src / "info.json").read_text()), json.loads((out / "info.json").read_text())
        assert info_a == info_b
    else:
        for f in ("lat.dat", "site_positions.dat", "element.dat", "rlat.dat"):
            assert np.allclose(np.loadtxt(src / f), np.loadtxt(out / f), atol=1e-12), f
        assert (out / "orbital_types.dat").read_text().split() == (src / "orbital_types.dat").read_text().split()


def read_any(path, layout):
    with h5py.File(path, "r") as fh:
        if layout == "legacy":
            return {k: fh[k][()] for k in fh}
        pairs, cb, shapes, entries = (fh[k][()] for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes", "entries"))
    return {tuple(p): entries[cb[n]:cb[n + 1]].reshape(shapes[n]) for n, p in enumerate(pairs.tolist())}


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_round_trip_of_our_soc_sample_is_exact(si_fixture_path, tmp_path, layout):
    s = load_sample(si_fixture_path)
    out = export_deeph(s, tmp_path / layout, layout)
    info = json.loads((out / "info.json").read_text())
    assert info["spinful" if layout == "new" else "isspinful"] is True
    with h5py.File(out / ("hamiltonian.h5" if layout == "new" else "hamiltonians.h5"), "r") as fh:
        first = fh["entries"] if layout == "new" else fh[next(iter(fh))]
        assert first.dtype == np.complex128
    assert_same_sample(s, import_deeph(out))


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_round_trip_of_a_spinless_sample(tmp_path, layout):
    s = import_abacus(external_case("abacus_Si2_sz_nspin1_newfmt_abacusdevelop"))
    out = export_deeph(s, tmp_path / layout, layout)
    info = json.loads((out / "info.json").read_text())
    assert info["spinful" if layout == "new" else "isspinful"] is False
    assert not (out / FILES_H0[layout]).exists()     # H0 absent in the sample: not written
    r = import_deeph(out)
    assert_same_sample(s, r)
    # without our sidecar the blocks still come back exactly; metadata is then unknown
    (out / "materials_ham.json").unlink()
    r = import_deeph(out)
    assert_same_sample(s, r, metadata=False)
    assert r.basis[14].engine == "unknown" and np.isnan(r.n_electrons)


FILES_H0 = {"new": "hamiltonian_0.h5", "legacy": "hamiltonians_0.h5"}


def test_new_layout_groups_atoms_by_element_and_restores_the_order(mote2, tmp_path):
    s = import_deeph(mote2[1])                        # Te, Te, Mo
    order = np.array([0, 2, 1])                       # -> Te, Mo, Te: not grouped by element
    inv = np.argsort(order)
    blocks = {}
    for e, ((i, j), r) in enumerate(zip(s.edge_index, s.edge_shift)):
        blocks[(int(inv[i]), int(inv[j]), tuple(int(x) for x in r))] = {m: s.block(m, e) for m in ("H", "H0", "S")}
    from materials_ham import Crystal

    c = Crystal(s.crystal.numbers[order], s.crystal.positions[order], s.crystal.cell)
    p = Sample.from_blocks(c, s.basis, blocks, fermi_level=s.fermi_level, n_electrons=1.0, ref_kpts=np.zeros((0, 3)),
                           ref_eigenvalues=np.zeros((0, 2 * s.nao)), info={"h0_available": False})
    out = export_deeph(p, tmp_path / "x", "new")
    lines = (out / "POSCAR").read_text().splitlines()
    assert lines[5].split() == ["Te", "Mo"] and lines[6].split() == ["2", "1"]
    assert_same_sample(p, import_deeph(out))


# ------------------------------------------------------------------------------ bad input
def test_bad_deeph_folders(mote2, tmp_path):
    legacy = shutil.copytree(mote2[0], tmp_path / "legacy", copy_function=shutil.copy)
    for f in legacy.iterdir():
        f.chmod(0o644)
    with h5py.File(legacy / "overlaps.h5", "a") as fh:
        fh.create_dataset("[0, 0, 0, 0, 1]", data=np.zeros((19, 19)))
    with pytest.raises(FormatError, match=r"overlaps.h5: key \[0, 0, 0, 0, 1\]: atom index outside 1..3 \(legacy keys are 1-based\)"):
        import_deeph(legacy)
    (legacy / "element.dat").unlink()
    with pytest.raises(FormatError, match="neither a DeepH-dock folder"):
        import_deeph(legacy)
    new = shutil.copytree(mote2[1], tmp_path / "new", copy_function=shutil.copy)
    for f in new.iterdir():
        f.chmod(0o644)
    with h5py.File(new / "hamiltonian.h5", "a") as fh:
        cb = fh["chunk_boundaries"][()]
        cb[-1] += 1
        fh["chunk_boundaries"][...] = cb
    with pytest.raises(FormatError, match=r"hamiltonian.h5: chunk_boundaries do not match"):
        import_deeph(new)
    (new / "hamiltonian.h5").unlink()
    with pytest.raises(FormatError, match=r"missing hamiltonian.h5"):
        import_deeph(new)


def test_legacy_export_refuses_unverified_f_order(tmp_path):
    from materials_ham import Basis, Crystal

    c = Crystal([83], [[0.0, 0.0, 0.0]], np.eye(3) * 5)
    s = Sample.from_blocks(c, {83: Basis("test", "f", (3,))},
                           {(0, 0, (0, 0, 0)): {"S": np.eye(7), "H": np.eye(14, dtype=complex)}},
                           fermi_level=0.0, n_electrons=0.0, ref_kpts=np.zeros((0, 3)), ref_eigenvalues=np.zeros((0, 14)))
    with pytest.raises(FormatError, match=r"deeph-legacy orbital order of shells with l = \[3\] is not known"):
        export_deeph(s, tmp_path / "x", "legacy")
    assert not (tmp_path / "x").exists()
    export_deeph(s, tmp_path / "y", "new")           # the new layout is the project's order: fine
    assert_same_sample(s, import_deeph(tmp_path / "y"))


def test_cli_deeph_export_and_import(si_fixture_path, tmp_path):
    import subprocess
    import sys

    from formats_helpers import ROOT

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "materials_ham.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)

    r = cli("convert", "deeph-export", si_fixture_path, "-o", tmp_path / "d", "--layout", "legacy")
    assert r.returncode == 0, r.stderr
    r = cli("convert", "deeph-import", tmp_path / "d", "-o", tmp_path / "s.npz", "--no-validate")
    assert r.returncode == 0, r.stderr
    assert_same_sample(load_sample(si_fixture_path), load_sample(tmp_path / "s.npz"))
    r = cli("convert", "deeph-import", tmp_path / "nothing", "-o", tmp_path / "t.npz")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "no such DeepH folder" in r.stderr


def test_export_a_dataset_split(si_fixture_path, tmp_path):
    pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    from materials_ham.formats import export_deeph_dataset
    from materials_ham.store import write_store

    s = load_sample(si_fixture_path)

    def row(sid, split):
        c = s.crystal
        return {"id": sid, "formula": c.formula, "elements": ["Si"], "n_atoms": s.n_atoms, "spacegroup": 227,
                "spacegroup_symbol": "Fd-3m", "source": "test", "source_id": sid, "prototype": "test", "note": "",
                "split": split, "numbers": c.numbers.tolist(), "positions": c.positions.reshape(-1).tolist(),
                "cell": c.cell.reshape(-1).tolist(), "e_above_hull": 0.0}

    ds = write_store(tmp_path / "ds", [(s, row("si-a", "train")), (s, row("si-b", "test"))],
                     attrs={"name": "t"}, progress=False)
    done = export_deeph_dataset(ds, tmp_path / "out", split="test", layout="new")
    assert [p.name for p in done] == ["si-b"] and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["si-b"]
    assert_same_sample(s, import_deeph(done[0]))
