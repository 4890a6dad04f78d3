"""Generation with dask: staging, resume, per-structure failures and limits, and SIGKILL at random moments.

Real GPAW runs on tiny cells with a 2x2x2 mesh (about 1-6 s each).
"""
import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import pytest

from materials_ham import load_sample
from materials_ham.atomic import file_sha256 as sha256_file
from materials_ham.generate import Limits, Staging, generate
from materials_ham.structures import sources
from materials_ham.structures.curate import curate, write_catalog

SMALL = ("proto-He-fcc", "proto-Ne-fcc", "proto-Li-bcc", "proto-Si-diamond", "proto-LiH-rocksalt")
SETTINGS = {"kpts": (2, 2, 2)}


def _catalog(ids):
    cands = [c for c in sources.prototype_source() if c.id in set(ids)]
    df, _ = curate(cands, split="ood-elements", holdout_elements=["Ne"])
    return df


@pytest.fixture(scope="module")
def small_catalog():
    return _catalog(SMALL)


def _engine_children(parent_pid):
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "materials_ham.generate" in cmd and str(parent_pid) in cmd:
            out.append(p)
    return out


def test_generate_resume_and_records(small_catalog, tmp_path):
    cat = small_catalog[small_catalog["id"].isin(SMALL[:3])]
    s = generate(cat, tmp_path, settings=SETTINGS, workers=2, progress=False)
    assert (s.done, s.failed, s.skipped_done) == (3, 0, 0)
    st = Staging(tmp_path)
    for sid in cat["id"]:
        rec = json.loads(st.done(sid).read_text())
        assert rec["passed"] and rec["sha256"] == sha256_file(st.sample(sid))
        assert rec["validation"]["band_reproduction"] < 0.01  # meV, against GPAW's own eigenvalues
        sample = load_sample(st.sample(sid))
        assert sample.provenance["id"] == sid and sample.engine["settings"]["kpts"] == [2, 2, 2]
    again = generate(cat, tmp_path, settings=SETTINGS, workers=2, progress=False)
    assert (again.done, again.skipped_done) == (0, 3)
    with pytest.raises(Exception, match="other engine settings"):
        generate(cat, tmp_path, settings={"kpts": (3, 3, 3)}, workers=1, progress=False)


def test_failures_are_recorded_and_the_run_goes_on(small_catalog, tmp_path):
    good = small_catalog[small_catalog["id"] == "proto-He-fcc"]
    tc = good.copy()
    tc["id"], tc["numbers"], tc["elements"] = "tc-by-hand", [[43]], [["Tc"]]  # bypasses curation's filter
    cat = pd.concat([tc, good], ignore_index=True)
    s = generate(cat, tmp_path, settings=SETTINGS, workers=2, progress=False)
    assert (s.done, s.failed) == (1, 1)
    assert s.failures["tc-by-hand"]["kind"] == "engine" and "Tc" in s.failures["tc-by-hand"]["cause"]
    rec = json.loads(Staging(tmp_path).failed("tc-by-hand").read_text())
    assert rec["kind"] == "engine"
    # a re-run skips the failure unless asked to retry it
    assert generate(cat, tmp_path, settings=SETTINGS, workers=1, progress=False).skipped_failed == 1
    assert generate(cat, tmp_path, settings=SETTINGS, workers=1, progress=False, retry_failed=True).failed == 1


@pytest.mark.parametrize("limits, kind", [(Limits(seconds=0.3), "timeout"), (Limits(memory_mib=25), "memory")])
def test_limits_kill_the_engine_process(small_catalog, tmp_path, limits, kind):
    cat = small_catalog[small_catalog["id"] == "proto-He-fcc"]
    s = generate(cat, tmp_path, settings=SETTINGS, limits=limits, workers=1, progress=False)
    assert s.failed == 1 and s.failures["proto-He-fcc"]["kind"] == kind
    assert not Staging(tmp_path).sample("proto-He-fcc").exists()


def test_sigkill_at_random_moments_then_resume(small_catalog, tmp_path):
    """Kill ``materials-ham generate`` with SIGKILL three times at random moments, then finish.

    At the end every structure is present exactly once, every staged sample matches its
    checksum and loads, no temp file is left, no engine process outlived its killed parent,
    and the packed store verifies.
    """
    from materials_ham.store import open_store, pack, verify_dataset

    cat_path = write_catalog(small_catalog, tmp_path / "catalog.parquet")
    staging = tmp_path / "staging"
    cmd = [sys.executable, "-m", "materials_ham.cli", "generate", str(cat_path), "-o", str(staging),
           "--kpts", "2", "2", "2", "--workers", "2"]
    rng = random.Random(7)
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 9.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        assert not _engine_children(proc.pid), "an engine process outlived the killed run"
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    st = Staging(staging)
    assert st.done_ids() == sorted(SMALL)
    assert sorted(p.stem for p in (staging / "samples").glob("*.npz")) == sorted(SMALL)
    assert not list(staging.rglob(".*.tmp"))
    for sid in SMALL:
        rec = json.loads(st.done(sid).read_text())
        assert rec["sha256"] == sha256_file(st.sample(sid))
        load_sample(st.sample(sid))
    out = pack(staging, tmp_path / "dataset", progress=False)
    assert verify_dataset(out).ok
    store = open_store(out)
    assert sorted(store.index["id"]) == sorted(SMALL) and len(store) == len(SMALL)
    assert np.isfinite(store.by_id("proto-Si-diamond").H).all()
