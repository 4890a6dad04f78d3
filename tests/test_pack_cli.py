"""`materials-ham pack / verify / card` on a real staging folder, and the generated dataset card."""
import subprocess
import sys

import pytest
import yaml

from materials_ham.generate import generate
from materials_ham.structures import sources
from materials_ham.structures.curate import curate

IDS = ("proto-He-fcc", "proto-Li-bcc", "proto-LiH-rocksalt")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "materials_ham.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def staging(tmp_path_factory):
    cands = [c for c in sources.prototype_source() if c.id in IDS]
    df, _ = curate(cands, split="ood-elements", holdout_elements=["He"])
    out = tmp_path_factory.mktemp("staging")
    summary = generate(df, out, settings={"kpts": (2, 2, 2)}, workers=2, progress=False)
    assert summary.done == len(IDS)
    return out


@pytest.fixture(scope="module")
def dataset(staging, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    r = _cli("pack", staging, "-o", out, "--version", "test-1")
    assert r.returncode == 0, r.stderr
    assert "verify: OK" in r.stdout
    return out


def test_card_is_generated_from_the_data(dataset):
    text = (dataset / "dataset_card.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["license"] == "cc-by-4.0"
    assert front["configs"] == [{"config_name": "default", "data_files": "index.parquet"}]
    assert front["size_categories"] == ["n<1K"]
    assert "- **3 structures**, 3 elements" in text
    assert "non-self-consistent" in text and "gpaw 26.7.0" in text
    assert "| test | 1 |" in text and "| train |" in text  # He is held out into test
    assert "| He | 1 |" in text and "| Li | 2 |" in text
    assert (dataset / "element_coverage.png").stat().st_size > 10_000
    assert "(test-1)" in text


def test_verify_cli_ok_then_catches_tampering(dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    r = _cli("verify", copy)
    assert r.returncode == 0 and "OK" in r.stdout
    (copy / "dataset_card.md").write_text("edited by hand\n")
    r = _cli("verify", copy)
    assert r.returncode == 3 and "dataset_card.md" in r.stdout and "Traceback" not in r.stderr


def test_card_command_regenerates_and_copies(dataset, tmp_path):
    r = _cli("card", dataset, "--copy-to", tmp_path / "card.md")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "card.md").read_text() == (dataset / "dataset_card.md").read_text()
    assert (tmp_path / "element_coverage.png").read_bytes() == (dataset / "element_coverage.png").read_bytes()
    assert _cli("verify", dataset).returncode == 0  # the manifest was re-hashed


def test_pack_refuses_bad_input(tmp_path, staging):
    r = _cli("pack", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert r.returncode == 3 and "no such staging directory" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    r = _cli("pack", staging, "-o", tmp_path / "out2")
    assert r.returncode == 0
    r = _cli("pack", staging, "-o", tmp_path / "out2")  # exists: refused unless --overwrite
    assert r.returncode != 0 and "Traceback" not in r.stderr
