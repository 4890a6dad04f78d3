"""The Zarr v3 dataset store: pack -> open is bit-identical; damage is named, never silent."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("pyarrow")

from materials_ham import Basis, FormatError, MaterialsHamError, load_sample  # noqa: E402
from materials_ham.sample import MATRICES, Sample  # noqa: E402
from materials_ham.store import layout as L  # noqa: E402
from materials_ham.store import open_store, pack, verify_dataset, write_store  # noqa: E402
from materials_ham.atomic import file_sha256  # noqa: E402
from materials_ham.store.reader import shard_files  # noqa: E402
from materials_ham.store.writer import half_arrays  # noqa: E402

ARRAY_FIELDS = MATRICES + ("edge_index", "edge_shift", "edge_reverse", "ref_kpts", "ref_eigenvalues")
#: Small shards so that the test dataset has several shard files per block array.
SHARD_MIB = 2


def assert_identical(a: Sample, b: Sample):
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    for name in ("numbers", "positions", "cell", "pbc"):
        x, y = getattr(a.crystal, name), getattr(b.crystal, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.basis == b.basis
    assert a.metadata() == b.metadata()


def catalog_row(sid: str, sample: Sample, split: str) -> dict:
    prov = sample.provenance
    return {"id": sid, "formula": sample.crystal.formula,
            "elements": sorted({str(x) for x in sample.crystal.to_ase().get_chemical_symbols()}),
            "n_atoms": sample.n_atoms, "spacegroup": 227, "spacegroup_symbol": "Fd-3m",
            "source": prov.get("source", "test"), "source_id": prov.get("source_id", sid), "prototype": "test",
            "note": "", "split": split, "numbers": sample.crystal.numbers.tolist(),
            "positions": sample.crystal.positions.reshape(-1).tolist(),
            "cell": sample.crystal.cell.reshape(-1).tolist(), "e_above_hull": 0.0}


def make_staging(root, samples: dict[str, tuple[Sample, str]], failed: dict[str, str] = ()):
    """A generator staging directory: samples/, done/, failed/, catalog.parquet, run.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "done").mkdir(parents=True)
    (root / "failed").mkdir()
    rows = []
    for k, (sid, (sample, split)) in enumerate(samples.items()):
        path = sample.save(root / "samples" / f"{sid}.npz")
        record = {"id": sid, "sample": f"samples/{sid}.npz", "sha256": file_sha256(path), "seconds": 10.0 + k,
                  "peak_rss_mib": 300.0 + k, "validation": {"hermiticity": 1e-15 * k, "eigenvalues_mev": 0.001},
                  "passed": True}
        (root / "done" / f"{sid}.json").write_text(json.dumps(record))
        rows.append(catalog_row(sid, sample, split))
    for sid, kind in dict(failed).items():
        (root / "failed" / f"{sid}.json").write_text(json.dumps({"id": sid, "cause": "test", "kind": kind}))
        rows.append({**rows[0], "id": sid, "split": "train"})
    pq.write_table(pa.Table.from_pylist(rows), root / "catalog.parquet")
    (root / "run.json").write_text(json.dumps({"engine": "gpaw", "settings": {"kpts": [2, 2, 2]}}))
    return root


@pytest.fixture(scope="module")
def engine_samples(gaas_sample, pbte_sample, si_fixture_path):
    """{id: (engine sample, split)} of three different real structures."""
    return {"si": (load_sample(si_fixture_path), "train"), "gaas": (gaas_sample, "test"),
            "pbte": (pbte_sample, "train")}


@pytest.fixture(scope="module")
def staging(tmp_path_factory, engine_samples):
    return make_staging(tmp_path_factory.mktemp("staging"), engine_samples, failed={"bad": "scf"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, staging):
    out = tmp_path_factory.mktemp("packed") / "ds"
    return pack(staging, out, shard_mib=SHARD_MIB, progress=False, attrs={"name": "test-set", "version": "0.0.1"})


@pytest.fixture()
def damaged(tmp_path, dataset):
    """A private copy of the packed dataset, to damage."""
    return shutil.copytree(dataset, tmp_path / "copy")


def largest_shard(root, name="H"):
    files = sorted((root / L.STORE_DIR / name / "c").iterdir(), key=lambda p: p.stat().st_size)
    return files[-1]


# --------------------------------------------------------------------------------- round trip
def test_pack_then_open_is_bit_identical(dataset, staging, engine_samples):
    ds = open_store(dataset)
    assert len(ds) == 3 and list(ds.index["id"]) == ["si", "gaas", "pbte"]   # catalog order, failed not packed
    for sid, (engine_sample, _) in engine_samples.items():
        got = ds.by_id(sid)
        assert_identical(got, load_sample(staging / "samples" / f"{sid}.npz"))
        # and equal to what the engine produced (metadata as JSON normalises tuples to lists)
        for name in ARRAY_FIELDS:
            assert np.array_equal(getattr(got, name), getattr(engine_sample, name)), name
        assert got.metadata() == json.loads(json.dumps(engine_sample.metadata()))


def test_index_and_attributes(dataset, engine_samples):
    ds = open_store(dataset)
    ix = ds.index.set_index("id")
    gaas = engine_samples["gaas"][0]
    assert ix.loc["gaas", "n_edges"] == gaas.n_edges
    assert ix.loc["gaas", "n_edges_stored"] == len(gaas.canonical_edges()) < gaas.n_edges
    assert ix.loc["gaas", "nao"] == gaas.nao and ix.loc["gaas", "fermi_level"] == gaas.fermi_level
    assert ix.loc["pbte", "seconds_total"] == 12.0 and ix.loc["pbte", "val_hermiticity"] == 2e-15
    assert ix.loc["si", "e_above_hull"] == 0.0 and list(ix.loc["gaas", "elements"]) == ["As", "Ga"]
    assert ix.loc["gaas", "raw_bytes"] == gaas.H.nbytes + gaas.H0.nbytes + gaas.S.nbytes
    # the offsets in the index alone locate a structure in the flat arrays
    h = ds.array("H")[int(ix.loc["gaas", "h_start"]):int(ix.loc["gaas", "h_stop"])]
    assert np.array_equal(h, half_arrays(gaas)["H"])
    a = ds.attrs
    assert a["store_format_version"] == L.STORE_FORMAT_VERSION and a["n_structures"] == 3
    assert a["conventions"]["energy_unit"] == "eV" and a["block_drop_threshold"] == 0.0
    assert set(a["basis"]) == {"14", "31", "33", "52", "82"}
    assert a["basis"]["31"] == gaas.basis[31].to_dict()
    assert [e["name"] for e in a["engines"]] == ["gpaw"]
    assert a["failures"] == {"count": 1, "by_kind": {"scf": 1}}
    assert a["generation"]["engine"] == "gpaw" and a["name"] == "test-set"


def test_random_access_by_position_and_id(dataset, engine_samples):
    ds = open_store(dataset)
    ids = list(engine_samples)
    for k in np.random.default_rng(7).integers(0, len(ds), 6):
        assert_identical(ds[int(k)], ds.by_id(ids[k]))
        assert np.array_equal(ds.get(int(k)).H, engine_samples[ids[k]][0].H)
    assert np.array_equal(ds[-1].S, engine_samples["pbte"][0].S)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(KeyError, match="nope"):
        ds.by_id("nope")


def test_iter_split_in_storage_order(dataset, engine_samples):
    ds = open_store(dataset)
    train = [engine_samples[k][0] for k in ("si", "pbte")]
    got = list(ds.iter_split("train"))
    assert len(got) == 2 and all(np.array_equal(a.H, b.H) for a, b in zip(got, train))
    assert [s.n_atoms for s in ds.iter_split("test")] == [engine_samples["gaas"][0].n_atoms]
    assert list(ds.iter_split("val")) == []


def test_reading_only_chosen_matrices(dataset, monkeypatch):
    ds = open_store(dataset)
    read = []
    real_read_rows = ds.read_rows
    monkeypatch.setattr(ds, "read_rows",
                        lambda name, *args, **kw: read.append(name) or real_read_rows(name, *args, **kw))
    ds.get(1, matrices=("H", "S"))
    assert "H" in read and "S" in read and "H0" not in read             # H0 is not even read, let alone decoded
    read.clear()
    ds.get(1, matrices=())
    assert not set(read) & set(MATRICES) and "edge_index" in read
    for k in range(len(ds)):
        full = ds[k]
        hs = ds.get(k, matrices=("H", "S"))
        assert hs.H0 is None and hs.matrices == ("H", "S")
        for name in ("H", "S", "edge_index", "edge_shift", "edge_reverse", "ref_kpts", "ref_eigenvalues"):
            x, y = getattr(full, name), getattr(hs, name)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
        bare = ds.by_id(ds.ids[k], matrices=())
        assert bare.matrices == () and bare.n_edges == full.n_edges and bare.nao == full.nao
        assert ds.get(k, matrices="H0").H0.tobytes() == full.H0.tobytes()
    assert [s.matrices for s in ds.iter_split("train", matrices=["S", "H"])] == [("H", "S")] * 2
    with pytest.raises(ValueError, match="unknown matrix"):
        ds.get(0, matrices=("H", "overlap"))


def test_threads_do_not_change_a_read(dataset):
    one, three = open_store(dataset, threads=1), open_store(dataset, threads=3)
    assert one.threads == 1 and three.threads == 3
    for k in range(len(one)):
        assert_identical(one[k], three[k])


def test_direct_shard_reads_equal_zarr_for_every_array(dataset):
    """The direct reader (materials_ham.store.shards) handles every array of the store and gives
    zarr's rows bit for bit, for every structure's rows and for ranges crossing shard files."""
    from materials_ham.store import shards
    from materials_ham.store.reader import read_checked

    ds = open_store(dataset)
    for name, spec in L.ARRAYS.items():
        arr = ds.array(name)
        geo = shards.geometry(arr)
        assert geo is not None, name                                   # the fast path is used, not skipped
        n = arr.shape[0]
        starts = ds.index[L.start_column(spec.unit)] if spec.unit != "structure" else range(len(ds))
        stops = ds.index[L.stop_column(spec.unit)] if spec.unit != "structure" else range(1, len(ds) + 1)
        ranges = list(zip(starts, stops)) + [(0, n), (n // 3, n - 1), (n - 1, n)]
        for a, b in ranges:
            got = shards.read_rows(geo, shard_files_of(arr, dataset, name, a, b), int(a), int(b))
            want = arr[int(a):int(b)]
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), (name, a)
            assert read_checked(arr, dataset / L.STORE_DIR, name, int(a), int(b)).tobytes() == want.tobytes()
    assert shards.read_rows(shards.geometry(ds.array("H")), [], 0, 0).shape == (0,)


def shard_files_of(arr, dataset, name, a, b):
    return shard_files(arr, dataset / L.STORE_DIR, name, int(a), int(b))


def test_direct_reader_leaves_unusual_shards_to_zarr(tmp_path):
    """An inner chunk absent from its shard (zarr reads fill values) or another codec chain: the
    direct reader declines (None) and read_checked gives zarr's answer."""
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec

    from materials_ham.store import shards
    from materials_ham.store.reader import read_checked

    group = zarr.open_group(zarr.storage.LocalStore(tmp_path / "g"), mode="w", zarr_format=3)
    data = np.arange(64, dtype=np.float64)
    data[16:32] = 0.0                                                  # one all-zero inner chunk of 16 rows
    sparse = group.create_array("sparse", shape=(64,), dtype="float64", chunks=(16,), shards=(64,),
                                compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle"), Crc32cCodec()],
                                fill_value=0, chunk_key_encoding={"name": "default", "separator": "/"},
                                config={"write_empty_chunks": False})
    sparse[:] = data
    geo = shards.geometry(sparse)

    def direct(a, b):
        return shards.read_rows(geo, shard_files(sparse, tmp_path / "g", "sparse", a, b), a, b)
    assert geo is not None and direct(0, 16).tobytes() == data[:16].tobytes()
    assert direct(40, 60).tobytes() == data[40:60].tobytes()
    assert direct(10, 40) is None                                      # chunk 1 is not in the index
    assert read_checked(sparse, tmp_path / "g", "sparse", 10, 40).tobytes() == data[10:40].tobytes()
    plain = group.create_array("plain", shape=(64,), dtype="float64", chunks=(16,), shards=(64,),
                               compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle")], fill_value=0,
                               chunk_key_encoding={"name": "default", "separator": "/"})
    plain[:] = data
    assert shards.geometry(plain) is None                              # no crc32c: not our layout
    assert read_checked(plain, tmp_path / "g", "plain", 5, 50).tobytes() == data[5:50].tobytes()


def test_from_half_rebuilds_the_engine_sample_exactly(gaas_sample):
    h = half_arrays(gaas_sample)
    s = Sample.from_half(gaas_sample.crystal, gaas_sample.basis, h["edge_index"], h["edge_shift"], h["H"], h["H0"],
                         h["S"], fermi_level=gaas_sample.fermi_level, n_electrons=gaas_sample.n_electrons,
                         ref_kpts=gaas_sample.ref_kpts, ref_eigenvalues=gaas_sample.ref_eigenvalues,
                         engine=gaas_sample.engine, provenance=gaas_sample.provenance, info=gaas_sample.info)
    assert_identical(s, gaas_sample)
    # the stored edges in any order give the same sample (edges are sorted, blocks follow them)
    perm = np.random.default_rng(3).permutation(len(h["edge_index"]))
    offsets = np.concatenate([[0], np.cumsum(gaas_sample.block_sizes[gaas_sample.canonical_edges()])])

    def permuted(x, f):
        return np.concatenate([x[f * offsets[e]:f * offsets[e + 1]] for e in perm])

    shuffled = Sample.from_half(s.crystal, s.basis, h["edge_index"][perm], h["edge_shift"][perm],
                                permuted(h["H"], 4), permuted(h["H0"], 4), permuted(h["S"], 1),
                                fermi_level=s.fermi_level, n_electrons=s.n_electrons, ref_kpts=s.ref_kpts,
                                ref_eigenvalues=s.ref_eigenvalues, engine=s.engine, provenance=s.provenance,
                                info=s.info)
    assert_identical(shuffled, gaas_sample)
    with pytest.raises(FormatError, match="twice"):
        Sample.from_half(s.crystal, s.basis, h["edge_index"][[0, 0]], h["edge_shift"][[0, 0]],
                         np.tile(h["H"][:4 * offsets[1]], 2), np.tile(h["H0"][:4 * offsets[1]], 2),
                         np.tile(h["S"][:offsets[1]], 2), fermi_level=0, n_electrons=0, ref_kpts=s.ref_kpts,
                         ref_eigenvalues=s.ref_eigenvalues)
    with pytest.raises(FormatError, match="shorter"):
        Sample.from_half(s.crystal, s.basis, h["edge_index"], h["edge_shift"], h["H"][:-1], h["H0"], h["S"],
                         fermi_level=0, n_electrons=0, ref_kpts=s.ref_kpts, ref_eigenvalues=s.ref_eigenvalues)


# ------------------------------------------------------------------------------ the layout
def test_sharding_with_checksums_and_few_files(dataset):
    meta = json.loads((dataset / L.STORE_DIR / "H" / "zarr.json").read_text())
    assert meta["data_type"] == "complex128"
    (codec,) = meta["codecs"]
    assert codec["name"] == "sharding_indexed"
    inner = [c["name"] for c in codec["configuration"]["codecs"]]
    assert inner[-1] == "crc32c" and "blosc" in inner
    assert codec["configuration"]["index_codecs"][-1]["name"] == "crc32c"
    chunk = codec["configuration"]["chunk_shape"][0]
    assert chunk * 16 == L.CHUNK_BYTES and meta["chunk_grid"]["configuration"]["chunk_shape"][0] == chunk * (
        SHARD_MIB * 2**20 // L.CHUNK_BYTES)
    # one file per shard: the block arrays have a few, every other array one
    n_files = sum(len(f) for _, _, f in os.walk(dataset / L.STORE_DIR))
    total_h = open_store(dataset).array("H").shape[0] * 16
    n_block_shards = 2 * -(-total_h // (SHARD_MIB * 2**20)) + 1
    assert n_files <= 1 + 2 * (len(L.ARRAYS) + 1) + n_block_shards
    assert sorted(p.name for p in dataset.iterdir()) == sorted([L.STORE_DIR, L.INDEX_FILE, L.MANIFEST_FILE])


def test_default_shards_make_one_file_per_array(tmp_path, si_sample):
    out = write_store(tmp_path / "ds", [(si_sample, {"id": "a"}), (si_sample, {"id": "b"})], attrs={},
                      progress=False)
    n_files = sum(len(f) for _, _, f in os.walk(out / L.STORE_DIR))
    assert n_files == 1 + 2 * (len(L.ARRAYS) + 1)
    assert_identical(open_store(out).by_id("b"), si_sample)


# ------------------------------------------------------------------------------- integrity
def test_verify_passes_on_a_fresh_dataset(dataset):
    report = verify_dataset(dataset)
    assert report.ok, report.problems
    assert verify_dataset(dataset, deep=True).ok and report.n_structures == 3


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_byte], ids=["truncated", "one-byte-altered"])
def test_damaged_shard_is_named_by_verify_and_reader(damaged, damage):
    shard = largest_shard(damaged)
    damage(shard)
    report = verify_dataset(damaged)
    assert not report.ok and all(str(shard) in p for p in report.problems), report.problems
    # without the manifest, decoding alone (crc32c) still finds it
    deep = verify_dataset(damaged, deep=True, hashes=False)
    assert [p for p in deep.problems if str(shard) in p and "corrupt" in p], deep.problems
    ds = open_store(damaged)
    with pytest.raises(FormatError, match=re.escape(str(shard)) + ".*(truncated or corrupt)") as info:
        for k in range(len(ds)):
            ds[k]
    assert "Traceback" not in str(info.value)


def test_missing_or_empty_shard_is_never_read_as_zeros(damaged):
    shard = largest_shard(damaged, "S")
    shard.write_bytes(b"")
    ds = open_store(damaged)
    with pytest.raises(FormatError, match=re.escape(str(shard)) + ".*empty"):
        for k in range(len(ds)):
            ds[k]
    shard.unlink()
    with pytest.raises(FormatError, match=re.escape(str(shard)) + ".*missing"):
        for k in range(len(ds)):
            ds[k]
    assert any(str(shard) in p and "missing" in p for p in verify_dataset(damaged, hashes=False).problems)


def test_extra_and_missing_files_are_reported(damaged):
    extra = damaged / L.STORE_DIR / "H" / "c" / "stray"
    extra.write_bytes(b"x")
    gone = damaged / L.STORE_DIR / "ref_kpts" / "zarr.json"
    gone.unlink()
    problems = verify_dataset(damaged).problems
    assert any(str(extra) in p and "extra" in p for p in problems), problems
    assert any(str(gone) in p and "missing" in p for p in problems), problems
    with pytest.raises(FormatError, match=re.escape(str(gone))):
        open_store(damaged)[0]
    (damaged / L.MANIFEST_FILE).unlink()
    assert any("manifest is missing" in p for p in verify_dataset(damaged).problems)


@pytest.mark.parametrize("victim", [f"{L.STORE_DIR}/zarr.json", L.INDEX_FILE])
def test_garbled_metadata_is_a_format_error_naming_the_file(damaged, victim):
    (damaged / victim).write_text("{not json")
    with pytest.raises(FormatError, match=re.escape(str(damaged / victim))):
        open_store(damaged)
    assert any(str(damaged / victim) in p for p in verify_dataset(damaged, hashes=False).problems)


# ------------------------------------------------------------------------------------ pack
def test_pack_refuses_a_sample_changed_after_its_run(tmp_path, si_sample):
    staging = make_staging(tmp_path / "st", {"a": (si_sample, "train"), "b": (si_sample, "test")})
    npz = staging / "samples" / "b.npz"
    with open(npz, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(FormatError, match=re.escape(str(npz)) + ".*sha256"):
        pack(staging, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]   # no temporary left behind


def test_pack_refuses_an_empty_staging_dir(tmp_path, si_sample):
    with pytest.raises(FormatError, match="catalog"):
        pack(tmp_path, tmp_path / "out", progress=False)
    staging = make_staging(tmp_path / "st", {"a": (si_sample, "train")})
    shutil.rmtree(staging / "done")
    with pytest.raises(FormatError, match="nothing to pack"):
        pack(staging, tmp_path / "out", progress=False)


def test_write_is_atomic(tmp_path, si_sample):
    def items():
        yield si_sample, {"id": "a"}
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        write_store(tmp_path / "ds", items(), attrs={}, progress=False)
    assert list(tmp_path.iterdir()) == []
    out = write_store(tmp_path / "ds", [(si_sample, {"id": "a"})], attrs={}, progress=False)
    with pytest.raises(MaterialsHamError, match="already exists"):
        write_store(out, [(si_sample, {"id": "a"})], attrs={}, progress=False)


def test_writer_refuses_what_it_could_not_store_losslessly(tmp_path, si_sample):
    other = si_sample.copy()
    other.basis = {14: Basis("gpaw", "szp", si_sample.basis[14].ls, si_sample.basis[14].cutoffs)}
    with pytest.raises(FormatError, match="basis of Z=14 differs"):
        write_store(tmp_path / "a", [(si_sample, {"id": "a"}), (other, {"id": "b"})], attrs={}, progress=False)
    skew = si_sample.copy()
    e = int(np.nonzero(np.arange(skew.n_edges) > skew.edge_reverse)[0][0])   # a non-stored edge
    skew.block("H", e)[0, 1] += 1e-9
    with pytest.raises(FormatError, match="Hermitian"):
        write_store(tmp_path / "b", [(skew, {"id": "a"})], attrs={}, progress=False)
    with pytest.raises(FormatError, match="duplicate"):
        write_store(tmp_path / "c", [(si_sample, {"id": "a"}), (si_sample, {"id": "a"})], attrs={}, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_importing_the_package_does_not_need_zarr():
    code = "import sys, materials_ham, materials_ham.store; sys.exit('zarr' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
