"""The scorer: every metric against a hand-computed case, on a small real dataset (Si, GaAs, PbTe)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("seekpath")

from evaluate_data import FAST, TEST_IDS, build_dataset, loop_gauge_mae, onsite_edge, spinor_s  # noqa: E402

from materials_ham import Evaluator, FormatError, MaterialsHamError, load_sample, write_predictions  # noqa: E402
from materials_ham.conventions import spin_view  # noqa: E402
from materials_ham.evaluate import read_predictions  # noqa: E402
from materials_ham.evaluate import bands as B  # noqa: E402
from materials_ham.gauge import gauge_errors  # noqa: E402
from materials_ham.kspace import band_energies  # noqa: E402
from materials_ham.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, si_fixture_path, gaas_sample, pbte_sample):
    samples = {"si": load_sample(si_fixture_path), "gaas": gaas_sample, "pbte": pbte_sample}
    return build_dataset(tmp_path_factory.mktemp("scorer") / "dataset", samples)


@pytest.fixture(scope="module")
def refs(dataset):
    store = open_store(dataset)
    return {sid: store.by_id(sid) for sid in TEST_IDS}


@pytest.fixture(scope="module")
def evaluator(dataset):
    return Evaluator(dataset, split="test", **FAST)


def per(metrics, sid):
    return next(r for r in metrics["per_structure"] if r["id"] == sid)


def with_pred(refs, sid, pred):
    """Predictions equal to the reference except ``sid``."""
    return {k: (pred if k == sid else s.H.copy()) for k, s in refs.items()}


def matrix_numbers(metrics):
    for grouping, table in metrics["matrix"].items():
        for key, entry in table.items():
            for q, v in entry.items():
                if isinstance(v, dict):
                    yield f"{grouping}/{key}/{q}", v["mean"], v["pooled"]


# ------------------------------------------------------------------------------- exactness
def test_reference_prediction_scores_exactly_zero(evaluator, refs):
    m = evaluator.eval({sid: s.H.copy() for sid, s in refs.items()})
    assert m["n_structures"] == 3 and m["split"] == "test"
    for name, mean, pooled in matrix_numbers(m):
        assert mean == 0.0 and pooled == 0.0, name
    for name, entry in m["bands"].items():
        assert entry["mean"] == 0.0, name
    assert m["headline"]["spin_diag_real_mev"] == 0.0
    assert m["headline"]["ghost_states_below_per_k"] == 0.0 and m["headline"]["ghost_states_w1_per_k"] == 0.0
    assert all(r["mu_ev"] == 0.0 for r in m["per_structure"])


def test_known_gauge_shift_is_removed_exactly(evaluator, refs):
    c = 0.7317  # eV
    m = evaluator.eval({sid: s.H + c * spinor_s(s) for sid, s in refs.items()})
    for name, mean, pooled in matrix_numbers(m):
        assert mean < 1e-9 and pooled < 1e-9, name                        # meV
    for r in m["per_structure"]:
        assert r["mu_ev"] == pytest.approx(c, abs=1e-12)
        b = r["bands"]
        for kset in ("grid", "path"):
            for w in ("w1", "w3", "occupied"):
                assert b[f"{kset}.{w}.aligned"] < 1e-6                    # meV
                assert b[f"{kset}.{w}.raw"] == pytest.approx(1000 * c, abs=1e-6)   # every level moves by c
        assert b["gap_error"] < 1e-6 and b["soc_splitting_error"] < 1e-6
        assert b["ghost_states.w1"] == b["ghost_states.below"] == 0


def test_perturbed_onsite_block_moves_only_onsite_and_its_element(evaluator, refs):
    s = refs["gaas"]
    ga = int(np.nonzero(s.crystal.numbers == 31)[0][0])
    e = onsite_edge(s, ga)
    n = int(s.orbitals_per_atom[ga])
    X = np.random.default_rng(1).normal(size=(n, n)) * 0.01
    X = X + X.T                                                            # real symmetric: Hermitian
    pred = s.H.copy()
    blk = spin_view(pred[4 * s.block_offsets[e]:4 * s.block_offsets[e + 1]], n, n)
    blk[0, :, 0, :] += X                                                   # + sigma_z x X: gauge neutral
    blk[1, :, 1, :] -= X
    m = evaluator.eval(with_pred(refs, "gaas", pred))

    L = s.edge_lengths()
    scored = L < 8.0
    sizes = s.block_sizes
    z = s.crystal.numbers[s.edge_index]
    err = 2 * np.abs(X).sum()                                              # |Re| summed over uu and dd
    expect = {                                                             # per spin-diag entry count
        "overall": sizes[scored].sum(), "on-site": sizes[scored & s.is_onsite].sum(),
        "Ga": sizes[scored & (z == 31).any(axis=1)].sum(), "Ga-Ga": sizes[scored & (z == 31).all(axis=1)].sum(),
    }
    r = per(m, "gaas")
    assert abs(r["mu_ev"]) < 1e-15
    assert r["matrix"]["spin_diag_real"] == pytest.approx(1000 * err / (2 * expect["overall"]), rel=1e-12)
    assert r["matrix"]["on-site.spin_diag_real"] == pytest.approx(1000 * err / (2 * expect["on-site"]), rel=1e-12)
    assert r["matrix"]["off-site.spin_diag_real"] < 1e-12
    for q in ("ud_real", "du_real", "uu_imag", "dd_imag", "imag"):
        assert r["matrix"][q] == 0.0, q
    mat = m["matrix"]
    # structure-mean over the 3 test structures (Si and PbTe score 0); element tables only hold GaAs
    assert mat["site"]["on-site"]["spin_diag_real"]["mean"] == pytest.approx(
        1000 * err / (2 * expect["on-site"]) / 3, rel=1e-12)
    assert mat["element"]["Ga"]["spin_diag_real"]["mean"] == pytest.approx(1000 * err / (2 * expect["Ga"]), rel=1e-12)
    assert mat["element_pair"]["Ga-Ga"]["spin_diag_real"]["mean"] == pytest.approx(
        1000 * err / (2 * expect["Ga-Ga"]), rel=1e-12)
    assert mat["distance"]["[0,1)"]["spin_diag_real"]["mean"] > 0
    untouched = [mat["element"][x] for x in ("As", "Si", "Pb", "Te")] + [mat["element_pair"][x] for x in
                                                                        ("Ga-As", "As-As", "Si-Si", "Te-Pb")]
    untouched += [mat["distance"][k] for k in mat["distance"] if k != "[0,1)"] + [mat["site"]["off-site"]]
    for entry in untouched:
        assert entry["spin_diag_real"]["mean"] < 1e-12
    for sid in ("si", "pbte"):
        assert per(m, sid)["matrix"]["spin_diag_real"] == 0.0


def test_headline_and_pooled_match_an_independent_loop(evaluator, refs):
    m = evaluator.eval({sid: s.H0.copy() for sid, s in refs.items()})
    per_structure, totals, counts = [], 0.0, 0
    for sid, s in refs.items():
        mu, total, count = loop_gauge_mae(s, s.H0)
        assert per(m, sid)["mu_ev"] == pytest.approx(mu, rel=1e-10)
        per_structure.append(1000 * total / (2 * count))
        assert per(m, sid)["matrix"]["spin_diag_real"] == pytest.approx(per_structure[-1], rel=1e-10)
        # gauge.py (vectorised) keeps the semantics of the loop
        assert gauge_errors(s, s.H0)["spin_diag_real"] == pytest.approx(per_structure[-1], rel=1e-10)
        mu_all, total_all, count_all = loop_gauge_mae(s, s.H0, cutoff=None)
        assert per(m, sid)["matrix"]["all_stored_edges.spin_diag_real"] == pytest.approx(
            1000 * total_all / (2 * count_all), rel=1e-10)
        totals, counts = totals + total, counts + count
    assert m["headline"]["spin_diag_real_mev"] == pytest.approx(np.mean(per_structure), rel=1e-10)
    assert m["headline"]["spin_diag_real_pooled_mev"] == pytest.approx(1000 * totals / (2 * counts), rel=1e-10)
    ov = m["matrix"]["overall"]["all"]
    assert ov["spin_diag_real"]["mean"] == pytest.approx(0.5 * (ov["uu_real"]["mean"] + ov["dd_real"]["mean"]))
    # distance bins partition the scored entries
    assert sum(e["n_entries"] for e in m["matrix"]["distance"].values()) == ov["n_entries"]
    assert sum(e["n_entries"] for e in m["matrix"]["site"].values()) == ov["n_entries"]


# ----------------------------------------------------------------------------------- bands
def test_reference_bands_match_kspace_and_kpath_is_physical(evaluator, refs):
    for sid, s in refs.items():
        ref = evaluator.reference(sid).bands
        assert np.abs(ref.eig - band_energies(s, ref.kpts)).max() < 1e-8    # independent Bloch sum + solver
    si = evaluator.reference("si").bands
    labelled = {lab: si.kpts[si.n_grid + i] for i, lab in si.path_labels}
    for lab in ("Γ", "X", "L"):                                            # fcc TRIM points stay TRIM in our cell
        k = labelled[lab]
        assert np.allclose(2 * k, np.round(2 * k), atol=1e-9), lab
        e = si.eig[si.n_grid + next(i for i, x in si.path_labels if x == lab)]
        assert np.abs(e[1::2] - e[0::2]).max() < 1e-5                      # Kramers pairs at TRIM


def test_soc_splitting_error_of_a_prediction_without_soc(evaluator, refs):
    s = refs["gaas"]
    pred = np.empty_like(s.H)
    n = s.orbitals_per_atom
    for e in range(s.n_edges):                                             # drop the SOC: uu = dd = A0, ud = du = 0
        i, j = s.edge_index[e]
        a, b = 4 * s.block_offsets[e], 4 * s.block_offsets[e + 1]
        v = spin_view(s.H[a:b], n[i], n[j])
        a0 = 0.5 * (v[0, :, 0, :] + v[1, :, 1, :])
        w = np.zeros_like(v)
        w[0, :, 0, :] = w[1, :, 1, :] = a0
        pred[a:b] = w.reshape(-1)
    m = evaluator.eval(with_pred(refs, "gaas", pred))
    ref = evaluator.reference("gaas").bands
    gamma = ref.n_grid + next(i for i, lab in ref.path_labels if lab == "Γ")
    row = next(r for r in ref.multiplets if r[0] == gamma)
    assert row[2] - row[1] == 5                                            # p-like valence top: 6 states at Gamma
    delta = ref.eig[gamma, row[2]] - ref.eig[gamma, row[1]]
    assert 0.2 < delta < 0.45                                              # GaAs spin-orbit splitting (eV)
    deltas = [ref.eig[k, hi] - ref.eig[k, lo] for k, lo, hi in ref.multiplets]
    # without SOC each multiplet is degenerate again (up to the grid's symmetry breaking, << 1 meV)
    assert per(m, "gaas")["bands"]["soc_splitting_error"] == pytest.approx(1000 * np.mean(deltas), abs=1.0)
    assert per(m, "si")["bands"]["soc_splitting_error"] == 0.0


def test_gap_error_and_ghost_states_below(evaluator, refs):
    s = refs["gaas"]
    ga = int(np.nonzero(s.crystal.numbers == 31)[0][0])
    e = onsite_edge(s, ga)
    n = int(s.orbitals_per_atom[ga])
    pred = s.H.copy()
    blk = spin_view(pred[4 * s.block_offsets[e]:4 * s.block_offsets[e + 1]], n, n)
    blk[0, 0, 0, 0] -= 50.0                                                # one orbital (both spins) pulled 50 eV down
    blk[1, 0, 1, 0] -= 50.0
    m = evaluator.eval(with_pred(refs, "gaas", pred))
    r = per(m, "gaas")["bands"]
    assert r["ghost_states.below"] == 2.0                                  # one Kramers pair below the spectrum, every k
    assert per(m, "si")["bands"]["ghost_states.below"] == 0.0
    assert m["headline"]["ghost_states_below_per_k"] == pytest.approx(2.0 / 3)       # mean over the 3 structures
    ref = evaluator.reference("gaas").bands
    gap_ref = min(ref.eig[:, ref.n_occ]) - max(ref.eig[:, ref.n_occ - 1])
    assert r["gap_ref_ev"] == pytest.approx(max(0.0, gap_ref), abs=1e-12) and r["gap_ref_ev"] > 0.1
    assert r["gap_error"] == pytest.approx(1000 * abs(r["gap_pred_ev"] - r["gap_ref_ev"]), rel=1e-12)


# --------------------------------------------------------------------------- format + API
def test_file_route_equals_memory_route_and_roundtrip(evaluator, dataset, refs, tmp_path):
    preds = {sid: s.H0.copy() for sid, s in refs.items()}
    path = write_predictions(tmp_path / "h0.zarr", dataset, preds, split="test", model="H0")
    store = read_predictions(path, dataset, "test")
    assert store.model == "H0" and sorted(store.ids) == sorted(TEST_IDS)
    for sid, s in refs.items():
        lay = evaluator.reference(sid).layout
        assert np.array_equal(store.read_full(sid, lay), s.H0)             # canonical half rebuilt bit for bit
    a, b = evaluator.eval(preds), evaluator.eval(path)
    for key in ("headline", "matrix", "bands"):
        assert a[key] == b[key], key
    assert [r["matrix"] for r in a["per_structure"]] == [r["matrix"] for r in b["per_structure"]]
    two = Evaluator(dataset, split="test", workers=2, **FAST).eval(path)
    assert two["headline"] == b["headline"]


def test_hermiticity_is_checked_or_symmetrised(dataset, refs, tmp_path):
    s = refs["pbte"]
    preds = {sid: x.H0.copy() for sid, x in refs.items()}
    e = int(np.nonzero(np.arange(s.n_edges) > s.edge_reverse)[0][0])      # a non-canonical edge
    preds["pbte"][4 * s.block_offsets[e]] += 1e-3
    with pytest.raises(FormatError, match="not Hermitian"):
        write_predictions(tmp_path / "p.zarr", dataset, preds, split="test")
    assert not list(tmp_path.iterdir())                                    # nothing half-written
    path = write_predictions(tmp_path / "p.zarr", dataset, preds, split="test", symmetrize=True)
    ev = Evaluator(dataset, split="test", bands=False)
    full = read_predictions(path, dataset).read_full("pbte", ev.reference("pbte").layout)
    r = s.edge_reverse[e]
    assert full[4 * s.block_offsets[e]] == pytest.approx(s.H0[4 * s.block_offsets[e]] + 5e-4, abs=1e-15)
    assert np.array_equal(full[4 * s.block_offsets[r]:4 * s.block_offsets[r + 1]].reshape(
        s.block_shape("H", r)), full[4 * s.block_offsets[e]:4 * s.block_offsets[e + 1]].reshape(
        s.block_shape("H", e)).conj().T)


def test_disk_cache_is_reused_and_damage_recomputed(dataset, refs, tmp_path):
    preds = {sid: s.H0.copy() for sid, s in refs.items()}
    first = Evaluator(dataset, split="test", cache_dir=tmp_path, memory_cache_mib=0, **FAST)
    m1 = first.eval(preds)
    files = sorted(first.cache.dir.glob("*.npz"))
    assert len(files) == 3 and first.cache.dir.parts[-2] == first.fingerprint[:16]
    second = Evaluator(dataset, split="test", cache_dir=tmp_path, memory_cache_mib=0, **FAST)
    assert all(second.cache.get(sid) is not None for sid in TEST_IDS)
    assert second.eval(preds)["bands"] == m1["bands"]
    files[0].write_bytes(b"not an npz")
    assert Evaluator(dataset, split="test", cache_dir=tmp_path, **FAST).eval(preds)["bands"] == m1["bands"]
    assert all(first.cache.get(sid) is not None for sid in TEST_IDS)      # rewritten
    other = Evaluator(dataset, split="test", cache_dir=tmp_path, kgrid=(1, 1, 2), path_points=12)
    assert other.cache.dir != first.cache.dir                              # settings are part of the key


def test_warm_disk_cache_reads_only_h_and_s_and_recomputes_no_bands(dataset, refs, tmp_path, monkeypatch):
    preds = {sid: s.H0.copy() for sid, s in refs.items()}
    cold = Evaluator(dataset, split="test", cache_dir=tmp_path, memory_cache_mib=0, **FAST).eval(preds)
    warm = Evaluator(dataset, split="test", cache_dir=tmp_path, memory_cache_mib=0, **FAST)
    read = []
    real_matrix = type(warm.store)._matrix

    def spy(self, k, name, edges):
        read.append(name)
        return real_matrix(self, k, name, edges)

    def no_bands(*args, **kwargs):
        raise AssertionError("reference bands recomputed despite a warm cache")
    monkeypatch.setattr(type(warm.store), "_matrix", spy)
    monkeypatch.setattr(B, "reference_bands", no_bands)
    m = warm.eval(preds)
    assert sorted(read) == sorted(["H", "S"] * len(TEST_IDS))          # H0 is never read for scoring
    for key in ("headline", "matrix", "bands", "per_structure"):
        assert m[key] == cold[key], key


def test_reference_overlap_terms_equal_the_spinor_formulas(refs):
    """den, the support edges and the support values, computed from the spinless S, are bit for bit
    what the spinor overlap S x I2 gives."""
    from materials_ham.evaluate.metrics import MatrixReference

    for sid, s in refs.items():
        ref = MatrixReference.from_sample(s, mirrored=True)
        checked = MatrixReference.from_sample(s)
        spin = spinor_s(s)
        assert ref.s_spinor.tobytes() == spin.tobytes()
        lay = ref.layout
        assert ref.den.tobytes() == lay.spin_sums(spin * spin).sum(1).tobytes()
        assert np.array_equal(lay.overlap_support(s.S), lay.spin_sums(np.abs(spin)).sum(1) > 0)
        for plan in (ref.plan, checked.plan):
            assert plan.mirror                                         # a stored sample is exactly mirrored
            assert plan.support_s.tobytes() == spin[plan.support_pos].tobytes()
            assert plan.support_target.tobytes() == s.H.real[plan.support_pos].tobytes()
            assert len(plan.support_pos) == 2 * int(s.block_sizes[lay.spin_sums(np.abs(spin)).sum(1) > 0].sum())


def test_dataset_name_resolution_and_formats(dataset, monkeypatch):
    monkeypatch.delenv("MATERIALS_HAM_DATASET", raising=False)
    with pytest.raises(MaterialsHamError, match="MATERIALS_HAM_DATASET"):
        Evaluator("materials-ham-soc")
    monkeypatch.setenv("MATERIALS_HAM_DATASET", str(dataset))
    ev = Evaluator("materials-ham-soc", bands=False)
    assert ev.ids == TEST_IDS
    assert "complex128" in ev.expected_input_format and "3 ids" in ev.expected_input_format
    assert "spin_diag_real_mev" in ev.expected_output_format
    with pytest.raises(MaterialsHamError, match="no structure in split 'tset'"):
        Evaluator(dataset, split="tset")


def test_h0_baseline_and_cli_report(dataset, refs, tmp_path):
    out = tmp_path / "h0.zarr"
    r = subprocess.run([sys.executable, "-m", "baselines.h0", "--dataset", str(dataset), "--split", "test",
                        "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "materials_ham.cli", "evaluate", str(out), "--dataset", str(dataset),
                        "--report", str(tmp_path / "report"), "--json", str(tmp_path / "m.json"), "--kgrid", "2", "2",
                        "2", "--path-points", "12", "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "uu" in r.stdout and "headline" in r.stdout
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.md", "report.html", "metrics.json", "parity.png", "element_pair_mae.png", "bands_best.png",
            "bands_median.png", "bands_worst.png"} <= files
    m = json.loads((tmp_path / "m.json").read_text())
    mem = Evaluator(dataset, split="test", **FAST).eval({sid: s.H0 for sid, s in refs.items()})
    assert m["headline"] == pytest.approx(mem["headline"], rel=1e-12)
    assert m["model"].startswith("H0 baseline")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("user file")
    r = subprocess.run([sys.executable, "-m", "materials_ham.cli", "evaluate", str(out), "--dataset", str(dataset),
                        "--no-bands", "--no-cache", "--report", str(tmp_path / "foreign"), "--json",
                        str(tmp_path / "m2.json")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "not an earlier report" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "foreign" / "keep.txt").is_file() and not (tmp_path / "m2.json").exists()


def test_band_settings_are_validated():
    with pytest.raises(MaterialsHamError, match="k-grid"):
        B.BandSettings(kgrid=(0, 2, 2))


def test_bloch_map_grid_fft_and_path_agree_with_kspace(refs):
    from materials_ham.kspace import bloch, monkhorst_pack

    grid = (3, 2, 4)                                                       # odd and even sizes
    k = np.vstack([monkhorst_pack(grid), np.random.default_rng(0).random((5, 3))])
    for sid in ("pbte", "gaas"):
        s = refs[sid]
        for name, spinor in (("H", True), ("S", False)):
            want = bloch(s, name, k)
            for g in (grid, None):                                         # FFT for the grid part, or all by GEMM
                bm = B.BlochMap(s, k, spinor=spinor, grid=g)
                vals = getattr(s, name)
                assert np.abs(bm(vals) - want).max() < 1e-12
                assert np.abs(bm(vals, np.array([23, 1, 25])) - want[[23, 1, 25]]).max() < 1e-12
                got = np.concatenate([x for _, x in bm.batches(vals, max_bytes=16 * bm.N ** 2 * 4)])
                assert np.abs(got - want).max() < 1e-12
    s = refs["pbte"]
    bm = B.BlochMap(s, k, grid=grid)
    L = np.linalg.inv(np.linalg.cholesky(bloch(s, "S", k)))
    assert np.abs(B.batched_eigenvalues(bm, s.H, L, max_bytes=1) - band_energies(s, k)).max() < 1e-8
