"""Hub publishing, download, streaming and loading, against a loopback server that emulates the Hub.

The Hub is not reachable from the test machines, so these tests run the real huggingface_hub code
paths of :mod:`materials_ham.hub` and :mod:`materials_ham.data` (create_repo, create_commit,
hf_hub_download, HfFileSystem) and of ``datasets.load_dataset`` against ``tests/hubserver.py``: a
threaded HTTP server on 127.0.0.1 that **emulates the Hub's protocol** (repo creation, preupload,
NDJSON commits, repo info, tree listings, paths-info, resolve with ETag/X-Repo-Commit/Range).  The
production code is unchanged: only the endpoint setting differs (``HF_ENDPOINT``; in-process, the
constants huggingface_hub and datasets computed from it at import are set to the same value).

The datasets are packed from real samples (the shipped Si fixture and GPAW runs of GaAs and PbTe).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("huggingface_hub")

from hubserver import HubServer  # noqa: E402
from test_store import assert_identical, make_staging  # noqa: E402

from materials_ham import FormatError, HubError, MaterialsHamError, load_sample  # noqa: E402
from materials_ham import hub as H  # noqa: E402
from materials_ham.data import collate_graphs, load_dataset, sample_arrays  # noqa: E402
from materials_ham.store import layout as L  # noqa: E402
from materials_ham.store import open_store, pack  # noqa: E402
from materials_ham.store.card import write_card  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPO = "test-org/ham"
#: 2 MiB shards of two 1 MiB chunks: each block array has several shard files, so a split needs only
#: some of them, and streaming reads parts of shards.
SHARD_MIB = 2


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(hub):
    """huggingface_hub and datasets pointed at the loopback Hub, as ``HF_ENDPOINT`` would at import."""
    import huggingface_hub.constants as C

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.endpoint)
        mp.setattr(C, "ENDPOINT", hub.endpoint)
        mp.setattr(C, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        try:
            import datasets.config as D
        except ImportError:
            pass
        else:
            mp.setattr(D, "HF_ENDPOINT", hub.endpoint)
            mp.setattr(D, "HUB_DATASETS_URL", hub.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
        yield hub.endpoint


@pytest.fixture()
def caches(endpoint, hub, tmp_path, monkeypatch):
    """Fresh caches (huggingface_hub's and ours), the token in HF_TOKEN, online."""
    import huggingface_hub.constants as C

    hf, mh = tmp_path / "hf-cache", tmp_path / "mh-cache"
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(hf))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))
    monkeypatch.setenv(H.CACHE_ENV, str(mh))
    monkeypatch.setenv("HF_TOKEN", hub.token)
    monkeypatch.setattr(C, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(H.REPO_ENV, REPO)
    monkeypatch.delenv(H.REVISION_ENV, raising=False)
    return hf, mh


def go_offline(monkeypatch):
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def originals(gaas_sample, pbte_sample, si_fixture_path):
    """{id: (real sample, split)}: the test split (GaAs) lies between two train structures."""
    return {"si": (load_sample(si_fixture_path), "train"), "gaas": (gaas_sample, "test"),
            "pbte": (pbte_sample, "train")}


@pytest.fixture(scope="module")
def staging(tmp_path_factory, originals):
    return make_staging(tmp_path_factory.mktemp("staging"), originals)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, staging):
    out = pack(staging, tmp_path_factory.mktemp("packed") / "ds", shard_mib=SHARD_MIB, progress=False,
               attrs={"dataset_name": "hub-test"})
    write_card(out, name="hub-test")
    return out


@pytest.fixture(scope="module")
def published(endpoint, hub, dataset):
    """The dataset published to REPO and tagged with the pinned revision of the official name."""
    return H.publish(dataset, REPO, token=hub.token, tag=H.OFFICIAL_REVISION)


def packed(staging, sid):
    return load_sample(staging / "samples" / f"{sid}.npz")


def split_shards(dataset, split) -> set[str]:
    """Shard files holding the split's rows, by the store reader's own rule (reader.shard_files)."""
    from materials_ham.store.reader import shard_files

    store = open_store(dataset)
    out = set()
    for k in np.nonzero((store.index["split"] == split).to_numpy())[0]:
        for name, spec in L.ARRAYS.items():
            arr = store.array(name)
            if spec.unit == "structure":
                a, b = k, k + 1
            else:
                a = int(store.index.loc[k, L.start_column(spec.unit)])
                b = int(store.index.loc[k, L.stop_column(spec.unit)])
            out |= {p.relative_to(dataset).as_posix() for p, _, _ in shard_files(arr, store.store_dir, name, a, b)}
    return out


def all_shards(dataset) -> set[str]:
    return {p.relative_to(dataset).as_posix() for p in (dataset / L.STORE_DIR).rglob("*")
            if p.is_file() and "/c/" in p.relative_to(dataset).as_posix()}


# ------------------------------------------------------------------------------- publishing
def test_publish_uploads_store_index_manifest_and_card_as_readme(hub, dataset, published):
    files = hub.files(REPO)
    listed = json.loads((dataset / L.MANIFEST_FILE).read_text())["files"]
    assert set(files) == set(listed) | {L.MANIFEST_FILE, "README.md", ".gitattributes"}
    assert files["README.md"] == (dataset / "dataset_card.md").read_bytes()
    for rel in listed:
        assert files[rel] == (dataset / rel).read_bytes(), rel
    assert hub.repos[("dataset", REPO)].tags[H.OFFICIAL_REVISION] == published.commit
    # the manifest and the card come last: a repo without a manifest is an unfinished upload
    assert set(hub.commit_log[-1][1]) == {L.MANIFEST_FILE, "README.md"}


def test_publish_refuses_what_does_not_verify_and_a_missing_card(endpoint, hub, dataset, tmp_path):
    bad = shutil.copytree(dataset, tmp_path / "bad")
    shard = sorted(all_shards(bad))[0]
    data = bytearray((bad / shard).read_bytes())
    data[len(data) // 2] ^= 1
    (bad / shard).write_bytes(bytes(data))
    n = len(hub.requests)
    with pytest.raises(FormatError, match="does not verify.*" + re.escape(str(bad / shard))):
        H.publish(bad, "test-org/bad", token=hub.token)
    nocard = shutil.copytree(dataset, tmp_path / "nocard")
    (nocard / "dataset_card.md").unlink()
    from materials_ham.store.manifest import build_manifest

    build_manifest(nocard)
    with pytest.raises(FormatError, match="no dataset_card.md.*materials-ham card"):
        H.publish(nocard, "test-org/bad", token=hub.token)
    with pytest.raises(MaterialsHamError, match="ORG/NAME"):
        H.publish(dataset, "not a repo", token=hub.token)
    assert len(hub.requests) == n and ("dataset", "test-org/bad") not in hub.repos   # nothing sent


def test_publish_resumes_after_an_interrupted_upload(endpoint, hub, dataset, caches):
    from huggingface_hub import HfApi

    repo = "test-org/resume"
    hub.commit_log.clear()

    def fail_third_commit(msg):
        if msg.startswith("commit 3/"):
            hub.fail_commits = 1

    with pytest.raises(HubError, match="HTTP 500"):
        H.publish(dataset, repo, token=hub.token, commit_files=8, log=fail_third_commit)
    first = {p for _, paths in hub.commit_log for p in paths}
    assert len(hub.commit_log) == 2 and L.MANIFEST_FILE not in hub.files(repo)
    # an unfinished repo is refused by the loader with a clear message
    with pytest.raises(HubError, match="missing from the repo.*publish again"):
        load_dataset(repo, split="test")
    # a file of an older version of the store, to be removed
    HfApi(token=hub.token).upload_file(path_or_fileobj=b"old", path_in_repo=f"{L.STORE_DIR}/old/c/0",
                                       repo_id=repo, repo_type="dataset")
    hub.commit_log.clear()
    result = H.publish(dataset, repo, token=hub.token, commit_files=8)
    again = [p for _, paths in hub.commit_log for p in paths]
    assert again and not first & set(again)            # nothing uploaded twice
    listed = json.loads((dataset / L.MANIFEST_FILE).read_text())["files"]
    assert set(hub.files(repo)) == set(listed) | {L.MANIFEST_FILE, "README.md", ".gitattributes"}
    assert result.commit == hub.repos[("dataset", repo)].branches["main"]
    ds = load_dataset(repo, split="test")
    assert len(ds) == 1 and ds.commit == result.commit


# ------------------------------------------------------------------------- download (map style)
def test_load_by_name_downloads_only_the_split_and_is_bit_identical(hub, dataset, staging, published, caches):
    hf_cache, mh_cache = caches
    n = len(hub.requests)
    ds = load_dataset("materials-ham-soc", split="test")      # MATERIALS_HAM_REPO -> REPO, pinned tag
    assert ds.repo_id == REPO and ds.revision == H.OFFICIAL_REVISION and ds.commit == published.commit
    assert len(ds) == 1 and ds.ids == ["gaas"] and list(ds.index["id"]) == ["gaas"]
    assert_identical(ds[0], packed(staging, "gaas"))
    shard_gets = {re.sub(r"^.*/resolve/[^/]+/", "", u) for m, u, _ in hub.requests[n:]
                  if m == "GET" and "/resolve/" in u and "/c/" in u}
    offsets = {p for p in all_shards(dataset) if p.startswith(f"{L.STORE_DIR}/{L.OFFSETS_ARRAY}/")}  # tiny, whole
    assert shard_gets == split_shards(dataset, "test") | offsets and shard_gets < all_shards(dataset)
    # the view: symlinks into huggingface_hub's cache, under $MATERIALS_HAM_CACHE
    assert ds.path == mh_cache / "datasets" / "test-org--ham" / published.commit
    link = ds.path / sorted(shard_gets)[0]
    assert link.is_symlink() and Path(os.path.realpath(link)).is_relative_to(hf_cache)
    # a structure of another split is not there: a clear error, never zeros
    with pytest.raises(FormatError, match="shard file is missing"):
        ds.store.by_id("pbte")
    # again: served from the cache (one request: resolving the tag); then the whole dataset
    n = len(hub.requests)
    assert len(load_dataset("materials-ham-soc", split="test")) == 1 and len(hub.requests) == n + 1
    full = load_dataset(REPO, revision=H.OFFICIAL_REVISION)
    assert full.ids == ["si", "gaas", "pbte"]
    for sid, s in zip(full.ids, full):
        assert_identical(s, packed(staging, sid))


def test_corrupted_download_is_detected_and_removed(hub, dataset, published, caches):
    from huggingface_hub import try_to_load_from_cache

    victim = sorted(split_shards(dataset, "test"))[-1]
    hub.corrupt(REPO, victim)
    try:
        with pytest.raises(FormatError, match=re.escape(victim) + ".*") as info:
            load_dataset(REPO, split="test")
        assert "sha256 differs from the manifest" in str(info.value)
        assert not isinstance(try_to_load_from_cache(REPO, victim, revision=published.commit, repo_type="dataset"),
                              str)
    finally:
        hub.corrupt(REPO, victim, on=False)
    ds = load_dataset(REPO, split="test")                      # the next run downloads it anew
    assert np.array_equal(ds[0].H, open_store(dataset).by_id("gaas").H)


def test_a_manifest_path_outside_the_dataset_is_refused(hub, dataset, caches, tmp_path):
    from huggingface_hub import HfApi

    evil = shutil.copytree(dataset, tmp_path / "evil")
    manifest = json.loads((evil / L.MANIFEST_FILE).read_text())
    manifest["files"]["../../outside"] = {"size": 1, "sha256": "0" * 64}
    api = HfApi(token=hub.token)
    api.create_repo("test-org/evil", repo_type="dataset")
    api.upload_file(path_or_fileobj=json.dumps(manifest).encode(), path_in_repo=L.MANIFEST_FILE,
                    repo_id="test-org/evil", repo_type="dataset")
    with pytest.raises(FormatError, match="outside the dataset.*outside"):
        load_dataset("test-org/evil")
    assert not list(tmp_path.rglob("outside"))


def test_offline_uses_the_cache_and_fails_at_once_without_it(hub, staging, published, caches, monkeypatch,
                                                             tmp_path):
    load_dataset("materials-ham-soc", split="test")
    go_offline(monkeypatch)
    n = len(hub.requests)
    ds = load_dataset("materials-ham-soc", split="test")
    assert_identical(ds[0], packed(staging, "gaas"))
    streamed = load_dataset("materials-ham-soc", split="test", streaming=True)   # complete cached copy
    assert streamed.path == ds.path
    with pytest.raises(HubError, match=r"offline.*split 'train'.*not in the cache.*materials-ham download "
                                       r"materials-ham-soc --split train.*generate"):
        load_dataset("materials-ham-soc", split="train")
    with pytest.raises(HubError, match="offline"):
        load_dataset(REPO, split="test", cache_dir=tmp_path / "elsewhere", revision="main")
    assert len(hub.requests) == n                               # not one request went out


def test_private_repo_needs_the_token(hub, dataset, caches, monkeypatch, tmp_path):
    import huggingface_hub.constants as C

    H.publish(dataset, "test-org/private", private=True, token=hub.token)
    assert hub.repos[("dataset", "test-org/private")].private
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(C, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubError, match="not found.*private.*log in"):
        load_dataset("test-org/private", split="test")
    assert load_dataset("test-org/private", split="test", token=hub.token).ids == ["gaas"]


def test_official_name_not_published_yet_says_so(hub, caches, monkeypatch):
    monkeypatch.delenv(H.REPO_ENV)
    with pytest.raises(HubError, match="not published yet.*MATERIALS_HAM_REPO"):
        load_dataset("materials-ham-soc", split="test")
    monkeypatch.setenv(H.REVISION_ENV, "v9")
    assert H.resolve("materials-ham-soc") == H.Location(repo_id=H.OFFICIAL_REPO, revision="v9", official=True)
    with pytest.raises(MaterialsHamError, match="not a Hub repo id"):
        H.resolve("no/such/thing")


# -------------------------------------------------------------------------------- streaming
def test_streaming_reads_shards_in_place_and_is_bit_identical(hub, dataset, staging, published, caches):
    hf_cache, mh_cache = caches
    n = len(hub.requests)
    hub.bytes_sent.clear()
    ds = load_dataset("materials-ham-soc", split="train", streaming=True)
    assert ds.path is None and ds.commit == published.commit and ds.ids == ["si", "pbte"]
    for sid, s in zip(ds.ids, ds):
        assert_identical(s, packed(staging, sid))
    shard_reads = [(u, r) for m, u, r in hub.requests[n:] if m == "GET" and "/resolve/" in u and "/c/" in u]
    assert any(r is not None for _, r in shard_reads)           # byte ranges of shards (inner chunks, index)
    # nothing downloaded to disk (huggingface_hub caches only tag -> commit); no byte of the shards only
    # the test split uses; fewer bytes than the shards touched
    assert [p.relative_to(hf_cache).parts[1:] for p in hf_cache.rglob("*") if p.is_file()] == [("refs", "v1.0")]
    assert not mh_cache.exists()
    sent = {p: b for p, b in hub.bytes_sent.items() if "/c/" in p}
    test_only = split_shards(dataset, "test") - split_shards(dataset, "train")
    assert test_only and not set(sent) & test_only
    assert sum(sent.values()) < sum((dataset / p).stat().st_size for p in sent)


# ------------------------------------------------------------------------- datasets library
def test_plain_datasets_load_dataset_reads_the_index(published, caches, dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    import pandas as pd

    table = datasets.load_dataset(REPO, cache_dir=str(tmp_path / "datasets-cache"))
    df = table["train"].to_pandas()
    want = pd.read_parquet(dataset / L.INDEX_FILE)
    assert list(df.columns) == list(want.columns) and list(df["id"]) == ["si", "gaas", "pbte"]
    assert list(df["split"]) == list(want["split"]) and (df["h_stop"] == want["h_stop"]).all()


# ------------------------------------------------------------------------ map-style dataset
def test_map_style_dataset_api(dataset, staging):
    ds = load_dataset(dataset)                                  # a local folder: read in place
    assert ds.path == dataset and len(ds) == 3 and ds.split is None
    assert [s.n_atoms for s in ds] == [2, 2, 2]
    assert_identical(ds[-1], packed(staging, "pbte"))
    train = load_dataset(dataset, split="train")
    assert train.ids == ["si", "pbte"] and list(train.index["id"]) == ["si", "pbte"]
    assert train.select([1, 0]).ids == ["pbte", "si"] and train[1:].ids == ["pbte"]
    assert train.filter(np.array([False, True])).ids == ["pbte"]
    assert train.filter(lambda row: "Pb" in row["elements"]).ids == ["pbte"]
    assert ds.filter("nao > 30").ids == [i for i, n in zip(ds.ids, ds.index["nao"]) if n > 30]
    assert_identical(train.by_id("pbte"), packed(staging, "pbte"))
    d = train.with_format("dict")[1]
    ref = packed(staging, "pbte")
    assert d["id"] == "pbte" and d["H"].dtype == np.complex128 and d["S"].dtype == np.float64
    for key, value in sample_arrays(ref).items():
        assert value.dtype == d[key].dtype and np.array_equal(value, d[key]), key
    with pytest.raises(MaterialsHamError, match="no split 'valid'.*test, train"):
        load_dataset(dataset, split="valid")
    with pytest.raises(MaterialsHamError, match="unknown format"):
        load_dataset(dataset, format="numpy")
    with pytest.raises(IndexError):
        train[2]
    with pytest.raises(MaterialsHamError, match="expected 2 booleans"):
        train.filter([True])


def test_torch_view_collate_and_dataloader_workers(dataset, staging):
    torch = pytest.importorskip("torch")
    from functools import partial

    from torch.utils.data import DataLoader, Dataset

    ds = load_dataset(dataset)
    view = ds.torch()
    assert isinstance(view, Dataset)
    item = view[1]
    assert item["H"].dtype == torch.complex128 and item["S"].dtype == torch.float64 and item["id"] == "gaas"
    samples = [packed(staging, sid) for sid in ds.ids]
    batch = collate_graphs([view[i] for i in range(3)])
    n = [s.n_atoms for s in samples]
    ne = [s.n_edges for s in samples]
    assert batch["ids"] == ["si", "gaas", "pbte"] and batch["numbers"].shape == (sum(n),)
    assert batch["edge_index"].shape == (2, sum(ne)) and batch["H"].dtype == torch.complex128
    assert torch.equal(batch["batch"], torch.repeat_interleave(torch.arange(3), torch.tensor(n)))
    m = max(int(s.orbitals_per_atom.max()) for s in samples)
    assert batch["H"].shape == (sum(ne), 2, 2, m, m) and batch["S"].shape == (sum(ne), m, m)
    rng = np.random.default_rng(0)
    for k, s in enumerate(samples):
        e0 = sum(ne[:k])
        assert np.array_equal(batch["edge_vec"][e0:e0 + ne[k]].numpy(), s.edge_vectors())
        assert np.array_equal(batch["edge_index"][:, e0:e0 + ne[k]].numpy().T - sum(n[:k]), s.edge_index)
        assert np.array_equal(batch["edge_reverse"][e0:e0 + ne[k]].numpy() - e0, s.edge_reverse)
        for e in rng.integers(0, s.n_edges, 25):
            ni, nj = (int(s.orbitals_per_atom[a]) for a in s.edge_index[e])
            h, h0 = s.block("H", e), s.block("H0", e)
            for a in range(2):
                for b in range(2):
                    got = batch["H"][e0 + e, a, b].numpy()
                    assert np.array_equal(got[:ni, :nj], h[a * ni:(a + 1) * ni, b * nj:(b + 1) * nj])
                    assert not got[ni:].any() and not got[:, nj:].any()
                    assert np.array_equal(batch["H0"][e0 + e, a, b, :ni, :nj].numpy(),
                                          h0[a * ni:(a + 1) * ni, b * nj:(b + 1) * nj])
            assert np.array_equal(batch["S"][e0 + e, :ni, :nj].numpy(), s.block("S", e))
            assert batch["block_mask"][e0 + e].sum() == ni * nj
    flat = collate_graphs([view[i] for i in range(3)], layout="flat")
    assert torch.equal(flat["H"], torch.from_numpy(np.concatenate([s.H for s in samples])))
    assert int(flat["h_ptr"][-1]) == flat["H"].numel() and int(flat["s_ptr"][-1]) == flat["S"].numel()
    # DataLoader: 2 worker processes (each opens the store itself) give what 0 workers give
    runs = {}
    for workers in (0, 2):
        loader = DataLoader(view, batch_size=2, collate_fn=partial(collate_graphs, layout="flat"),
                            num_workers=workers)
        runs[workers] = list(loader)
    assert [b["ids"] for b in runs[2]] == [["si", "gaas"], ["pbte"]]
    for a, b in zip(runs[0], runs[2]):
        assert all(torch.equal(a[k], b[k]) for k in a if k != "ids")


def test_streaming_dataset_in_dataloader_workers(published, caches, staging):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = load_dataset(REPO, split="train", streaming=True)
    loader = DataLoader(ds.torch(), batch_size=1, collate_fn=collate_graphs, num_workers=2)
    got = {b["ids"][0]: b for b in loader}
    assert set(got) == {"si", "pbte"}
    ref = packed(staging, "pbte")
    assert torch.equal(got["pbte"]["numbers"], torch.from_numpy(ref.crystal.numbers))
    assert got["pbte"]["H"].dtype == torch.complex128


# ---------------------------------------------------------------------------------------- CLI
def cli(args, env):
    return subprocess.run([sys.executable, "-m", "materials_ham.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_publish_and_download_with_plain_environment_variables(hub, dataset, tmp_path):
    """A fresh process configured only by environment variables, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATERIALS_HAM"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"), MATERIALS_HAM_CACHE=str(tmp_path / "mh"),
               MY_TOKEN=hub.token, OMP_NUM_THREADS="1", HF_HUB_DISABLE_TELEMETRY="1")
    r = cli(["publish", dataset, "--repo", "test-org/cli", "--token-env", "MY_TOKEN"], env)
    assert r.returncode == 0, r.stderr
    assert "published" in r.stdout and hub.token not in r.stdout + r.stderr
    r = cli(["download", "test-org/cli", "--split", "test"], env)
    assert r.returncode == 0, r.stderr
    view = Path(r.stdout.strip().splitlines()[-1])
    assert (view / L.MANIFEST_FILE).exists() and open_store(view).by_id("gaas").n_atoms == 2
    r = cli(["download", "test-org/cli", "--split", "train"], {**env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == HubError.exit_code and "Traceback" not in r.stderr
    assert "offline" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli(["publish", dataset, "--repo", "test-org/cli2"], env)     # no token anywhere: refused, clearly
    assert r.returncode == HubError.exit_code and "Traceback" not in r.stderr and "HF_TOKEN" in r.stderr
