"""Malformed predictions: each kind gets one clear message, a non-zero exit code, no traceback,
and nothing written.  Cases run through the CLI (in process, and two in a real subprocess)
or through ``write_predictions``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from evaluate_data import TEST_IDS, build_dataset  # noqa: E402

from materials_ham import FormatError, MaterialsHamError, load_sample, write_predictions  # noqa: E402
from materials_ham.cli import main  # noqa: E402
from materials_ham.evaluate.predictions import EdgeLayout  # noqa: E402
from materials_ham.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, si_fixture_path, gaas_sample, pbte_sample):
    samples = {"si": load_sample(si_fixture_path), "gaas": gaas_sample, "pbte": pbte_sample}
    return build_dataset(tmp_path_factory.mktemp("bad") / "dataset", samples)


@pytest.fixture(scope="module")
def refs(dataset):
    store = open_store(dataset)
    return {sid: store.by_id(sid) for sid in TEST_IDS}


@pytest.fixture(scope="module")
def good(dataset, refs, tmp_path_factory):
    return write_predictions(tmp_path_factory.mktemp("good") / "h0.zarr", dataset,
                             {sid: s.H0 for sid, s in refs.items()}, split="test", model="H0")


# ------------------------------------------------------------------------------ mutations
def set_attrs(**upd):
    def f(p, ctx):
        meta = json.loads((p / "zarr.json").read_text())
        meta["attributes"].update(upd)
        (p / "zarr.json").write_text(json.dumps(meta))
    return f


def edit_meta(name, **upd):
    def f(p, ctx):
        meta = json.loads((p / name / "zarr.json").read_text())
        meta.update(upd)
        (p / name / "zarr.json").write_text(json.dumps(meta))
    return f


def rewrite(name, transform, *, dtype=None, crc=True):
    """Replace array ``name`` with ``transform(old data)`` (same codecs, optionally no crc32c)."""
    def f(p, ctx):
        import zarr
        from zarr.codecs import BloscCodec, Crc32cCodec

        data = transform(np.asarray(zarr.open_array(zarr.storage.LocalStore(p / name), mode="r")[:]), ctx)
        shutil.rmtree(p / name)
        group = zarr.open_group(zarr.storage.LocalStore(p), mode="a", zarr_format=3)
        codecs = [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")] + ([Crc32cCodec()] if crc else [])
        arr = group.create_array(name, shape=data.shape, dtype=dtype or data.dtype, chunks=(1 << 16,),
                                 shards=(1 << 22,), compressors=codecs, fill_value=0,
                                 chunk_key_encoding={"name": "default", "separator": "/"})
        arr[:] = data
    return f


def at_structure(sid, offset_in_structure, value):
    def t(data, ctx):
        data = data.copy()
        k = ctx["ids"].index(sid)
        data[ctx["offsets"][k] + offset_in_structure] = value
        return data
    return t


def onsite_not_hermitian(data, ctx):
    """Break the Hermiticity of an on-site block (stored whole) of 'gaas'."""
    s = ctx["refs"]["gaas"]
    lay = EdgeLayout.from_sample(s)
    e = int(np.nonzero(s.is_onsite)[0][0])
    sizes = lay.rows * lay.cols
    pos = int(sizes[lay.canonical & (np.arange(len(sizes)) < e)].sum())   # start of e in the stored half
    data = data.copy()
    data[ctx["offsets"][ctx["ids"].index("gaas")] + pos + 1] += 0.01      # entry (0, 1), not (1, 0)
    return data


def shard(p):
    return p / "H" / "c" / "0"


def flip_middle(p, ctx):
    raw = bytearray(shard(p).read_bytes())
    for k in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[k] ^= 0xFF
    shard(p).write_bytes(bytes(raw))


def truncate(p, ctx):
    raw = shard(p).read_bytes()
    shard(p).write_bytes(raw[:len(raw) // 2])


def replace_by_file(p, ctx):
    shutil.rmtree(p)
    p.write_text("not a store")


def offsets_plus(delta, last: bool = False):
    def t(data, ctx):
        out = data.copy()
        out[1:] += delta
        if not last:
            out[-1] -= delta
        return out
    return t


CASES = [
    ("path does not exist", lambda p, c: shutil.rmtree(p), "no such predictions store"),
    ("a file, not a Zarr store", replace_by_file, "not a Zarr store"),
    ("a folder without zarr.json", lambda p, c: (p / "zarr.json").unlink(), "no zarr.json"),
    ("corrupt group metadata", lambda p, c: (p / "zarr.json").write_text("{not json"), "unreadable"),
    ("an array, not a group", lambda p, c: (p / "zarr.json").write_text(json.dumps(
        {"zarr_format": 3, "node_type": "array", "attributes": {}})), "not a Zarr v3 group"),
    ("not a predictions store", set_attrs(format="materials-ham-dataset"), "not a predictions store"),
    ("unsupported format version", set_attrs(format_version=7), "format_version 7"),
    ("mismatched dataset version", set_attrs(dataset_fingerprint="0" * 64), "another version of the dataset"),
    ("fingerprint attribute missing", lambda p, c: (p / "zarr.json").write_text(json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {"format": "materials-ham-predictions",
                                                                "format_version": 1}})), "'dataset_fingerprint'"),
    ("wrong split", set_attrs(split="val", ids=["si-val"]), "for split 'val', not 'test'"),
    ("missing structure", set_attrs(ids=TEST_IDS[:2]), "missing: 'pbte'"),
    ("extra structure", set_attrs(ids=TEST_IDS + ["mp-999"]), "not in split 'test' of the dataset: 'mp-999'"),
    ("duplicate structure", set_attrs(ids=["si", "si", "gaas", "pbte"]), "more than once: 'si'"),
    ("ids not strings", set_attrs(ids=[1, 2, 3]), "list of strings"),
    ("H array missing", lambda p, c: shutil.rmtree(p / "H"), "array 'H' metadata is missing"),
    ("real where complex is needed", rewrite("H", lambda d, c: d.real.copy()), "real where complex is needed"),
    ("complex64", rewrite("H", lambda d, c: d.astype(np.complex64)), "'complex64', expected complex128"),
    ("huge declared size", edit_meta("H", shape=[10 ** 15]), "declares 1000000000000000 entries"),
    ("two-dimensional H", edit_meta("H", shape=[5, 7]), "expected one dimension"),
    ("absurd offsets", rewrite("offsets", offsets_plus(10 ** 15, last=True)),
     "first 'si': 1000000000"),
    ("decreasing offsets", rewrite("offsets", lambda d, c: d[[0, 2, 1, 3]].copy()), "never decrease"),
    ("wrong block shapes", rewrite("offsets", offsets_plus(8)), "wrong number of H entries, first 'si'"),
    ("offsets of the wrong dtype", rewrite("offsets", lambda d, c: d.astype(np.float64)),
     "'float64', expected int64"),
    ("NaN", rewrite("H", at_structure("pbte", 5, np.nan)), "structure 'pbte': 1 non-finite"),
    ("inf", rewrite("H", at_structure("gaas", 0, np.inf)), "structure 'gaas': 1 non-finite"),
    ("truncated shard", truncate, "truncated or corrupt"),
    ("corrupt shard", flip_middle, "checksum mismatch"),
    ("missing shard", lambda p, c: shard(p).unlink(), "shard file is missing"),
    ("empty shard", lambda p, c: shard(p).write_bytes(b""), "shard file is empty"),
    ("no checksum codec", rewrite("H", lambda d, c: d, crc=False), "no crc32c checksum"),
    ("on-site block not Hermitian", rewrite("H", onsite_not_hermitian), "on-site block is not Hermitian"),
]


@pytest.mark.parametrize("name, mutate, message", CASES, ids=[c[0] for c in CASES])
def test_malformed_predictions_give_one_clear_error(name, mutate, message, good, dataset, refs, tmp_path, capsys):
    p = tmp_path / "pred.zarr"
    shutil.copytree(good, p)
    import zarr

    g = zarr.open_group(zarr.storage.LocalStore(good), mode="r")
    ctx = {"ids": list(g.attrs["ids"]), "offsets": np.asarray(g["offsets"][:]), "refs": refs}
    mutate(p, ctx)
    out_json = tmp_path / "metrics.json"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(p), "--dataset", str(dataset), "--no-bands", "--no-cache", "--json", str(out_json)])
    err = capsys.readouterr().err
    assert exc.value.code not in (0, None), err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out_json.exists()


def test_dataset_that_is_not_a_dataset(good, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(good), "--dataset", str(tmp_path / "nothing"), "--no-bands", "--no-cache"])
    err = capsys.readouterr().err
    assert exc.value.code != 0 and "no such dataset folder" in err and "Traceback" not in err


def test_dataset_store_passed_as_predictions(dataset, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(dataset / "store.zarr"), "--dataset", str(dataset), "--no-bands", "--no-cache"])
    err = capsys.readouterr().err
    assert exc.value.code == FormatError.exit_code and "not a predictions store" in err


@pytest.mark.parametrize("mutate, message", [(set_attrs(format_version=2), "format_version 2"), (flip_middle, "corrupt")])
def test_subprocess_cli_has_no_traceback(mutate, message, good, dataset, tmp_path):
    p = tmp_path / "pred.zarr"
    shutil.copytree(good, p)
    mutate(p, {})
    r = subprocess.run([sys.executable, "-m", "materials_ham.cli", "evaluate", str(p), "--dataset", str(dataset),
                        "--no-bands", "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == FormatError.exit_code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------- writer
def writer_cases(refs):
    h = {sid: s.H0.copy() for sid, s in refs.items()}
    yield "real dtype", {**h, "si": h["si"].real.copy()}, {}, "float64, expected complex128"
    yield "wrong length", {**h, "gaas": h["gaas"][:-4]}, {}, "wrong block shapes or a different edge set"
    yield "two-dimensional", {**h, "gaas": h["gaas"].reshape(4, -1)}, {}, "wrong block shapes"
    yield "unknown id", {**h, "mp-1": h["si"]}, {}, "'mp-1' is not in split 'test'"
    yield "missing id", {k: v for k, v in h.items() if k != "pbte"}, {}, "have no prediction: 'pbte'"
    nan = h["pbte"].copy()
    nan[17] = np.nan
    yield "NaN", {**h, "pbte": nan}, {}, "non-finite"
    yield "a Sample instead of H", {**h, "si": refs["si"]}, {}, "not a Sample"
    yield "unknown split", h, {"split": "tset"}, "no structure in split 'tset'"
    yield "pairs with a duplicate", [("si", h["si"]), ("si", h["si"])], {}, "given twice"


def test_writer_refuses_bad_predictions_and_leaves_nothing(dataset, refs, tmp_path):
    seen = 0
    for name, preds, kw, message in writer_cases(refs):
        out = tmp_path / "w" / "p.zarr"
        with pytest.raises(MaterialsHamError, match=message.replace("(", r"\(").replace(")", r"\)")):
            write_predictions(out, dataset, preds, **{"split": "test", **kw})
        assert not out.exists()
        assert not list(out.parent.glob("*")) if out.parent.exists() else True    # no temporary folder left
        seen += 1
    assert seen == 9
    write_predictions(tmp_path / "ok.zarr", dataset, {sid: s.H0 for sid, s in refs.items()})
    with pytest.raises(MaterialsHamError, match="already exists"):
        write_predictions(tmp_path / "ok.zarr", dataset, {sid: s.H0 for sid, s in refs.items()})
