"""The leaderboard: a valid submission round trip, trusted re-scoring catching tampering, and
hostile metadata and files refused with one clear message (CLI: exit code 7, no traceback,
nothing written).  Uses the small real dataset of the scorer's tests (Si, GaAs, PbTe)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("seekpath")
pytest.importorskip("pydantic")
yaml = pytest.importorskip("yaml")

from evaluate_data import FAST, TEST_IDS, build_dataset  # noqa: E402

from materials_ham import Evaluator, load_sample, write_predictions  # noqa: E402
from materials_ham.cli import main  # noqa: E402
from materials_ham.errors import SubmissionError  # noqa: E402
from materials_ham.store import open_store  # noqa: E402
from materials_ham import submissions as S  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCORER = S.ScorerSettings(kgrid=FAST["kgrid"], path_points=FAST["path_points"])
FAST_ARGS = ["--kgrid", *map(str, FAST["kgrid"]), "--path-points", str(FAST["path_points"]), "--no-cache"]
ALPHAS = {0: 0.8, 1: 0.9}          # model of seed s predicts H0 + alpha (H - H0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, si_fixture_path, gaas_sample, pbte_sample):
    samples = {"si": load_sample(si_fixture_path), "gaas": gaas_sample, "pbte": pbte_sample}
    return build_dataset(tmp_path_factory.mktemp("board") / "dataset", samples)


@pytest.fixture(scope="module")
def stores(dataset, tmp_path_factory):
    """Predictions stores: 'h0' (test), 'model-<seed>' (test) and 'val-<seed>' (val) for seeds 0, 1."""
    d = tmp_path_factory.mktemp("preds")
    ds = open_store(dataset)
    ix = ds.index
    out = {"h0": write_predictions(d / "h0.zarr", ds, {sid: ds.by_id(sid).H0 for sid in TEST_IDS}, split="test",
                                   model="H0")}
    val_ids = list(ix.id[ix.split == "val"])
    for seed, a in ALPHAS.items():
        for name, ids, split in (("model", TEST_IDS, "test"), ("val", val_ids, "val")):
            preds = {}
            for sid in ids:
                s = ds.by_id(sid)
                preds[sid] = s.H0 + a * (s.H - s.H0)
            out[f"{name}-{seed}"] = write_predictions(d / f"{name}-{seed}.zarr", ds, preds, split=split, model="m")
    return out


def metadata(**upd) -> dict:
    m = {"model_name": "Test model", "model_key": "test-model", "version": "1.0", "authors": ["A. Author"],
         "code": {"repository": "https://example.org/code", "command": "python -m model predict --dataset D"},
         "paper": "https://example.org/paper", "license": "MIT", "parameters": 12345, "hardware": "1 CPU core",
         "training_cost": {"gpu_hours": 0.5}, "training_data": {"splits": ["train", "val"], "external_data": False},
         "seeds": [0, 1], "dataset": {"name": "scorer-test", "revision": "t1"}, "date": "2026-11-25"}
    m.update(upd)
    return m


def h0_metadata() -> dict:
    return metadata(model_name="H0 baseline", model_key="h0-baseline", parameters=0, baseline=True, seeds=[0],
                    training_cost={"gpu_hours": 0}, training_data={"splits": [], "external_data": False})


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def board(dataset, stores, tmp_path_factory):
    """A leaderboard with the H0 baseline (1 seed) and the test model (2 seeds + val), built once."""
    d = tmp_path_factory.mktemp("lb")
    lb = d / "leaderboard"
    S.submit([stores["h0"]], write_yaml(d / "h0.yaml", h0_metadata()), dataset, leaderboard=lb, scorer=SCORER)
    res = S.submit([stores["model-0"], stores["model-1"]], write_yaml(d / "model.yaml", metadata()), dataset,
                   val_predictions=[stores["val-0"], stores["val-1"]], leaderboard=lb, scorer=SCORER)
    built = S.build(lb, dataset, scorer=SCORER)
    return lb, res, built


@pytest.fixture()
def h0_board(dataset, stores, tmp_path):
    """A fresh leaderboard with the H0 entry only (for tampering)."""
    lb = tmp_path / "leaderboard"
    S.submit([stores["h0"]], write_yaml(tmp_path / "h0.yaml", h0_metadata()), dataset, leaderboard=lb, scorer=SCORER)
    return lb


# ----------------------------------------------------------------------------- round trip
def test_valid_submission_round_trip(board, dataset, stores):
    lb, res, built = board
    sub = lb / "submissions" / "test-model"
    assert sorted(p.name for p in sub.iterdir()) == ["checksums.json", "metadata.yaml", "metrics.json"]
    preds = lb / "predictions" / "test-model"
    assert sorted(p.name for p in preds.iterdir()) == ["seed-0.test.zarr", "seed-0.val.zarr", "seed-1.test.zarr",
                                                       "seed-1.val.zarr"]
    # metrics are the scorer's own numbers; mean and sample std over the two seeds
    ev = Evaluator(dataset, split="test", **FAST)
    per_seed = [ev.eval(stores[f"model-{s}"])["headline"]["spin_diag_real_mev"] for s in (0, 1)]
    agg = res.metrics["aggregate"]["test"]["headline"]["spin_diag_real_mev"]
    assert agg["mean"] == pytest.approx(np.mean(per_seed), rel=1e-12)
    assert agg["std"] == pytest.approx(np.std(per_seed, ddof=1), rel=1e-9) and agg["n"] == 2
    h0 = ev.eval(stores["h0"])["headline"]["spin_diag_real_mev"]
    assert per_seed[0] == pytest.approx((1 - ALPHAS[0]) * h0, rel=1e-9)      # the gauge MAE is linear in H - H
    assert set(res.metrics["aggregate"]) == {"test", "val"}
    assert res.metrics["runs"]["val"][0]["n_structures"] == 1
    assert set(res.metrics["runs"]["test"][0]["element"]) == {"Si", "Ga", "As", "Pb", "Te"}
    # the stored metadata carries the computed checksums, which match checksums.json and the files
    meta = S.load_metadata(sub / "metadata.yaml")
    sums = json.loads((sub / "checksums.json").read_text())
    assert {(p.seed, p.split, p.sha256) for p in meta.predictions} == {(s["seed"], s["split"], s["sha256"])
                                                                      for s in sums["stores"]}
    assert S.digest_store(preds / "seed-1.test.zarr").sha256 == S.digest_store(stores["model-1"]).sha256
    # build verified both entries, ranked the model above the H0 baseline, and rendered the pages
    assert [e.key for e in built.entries] == ["test-model", "h0-baseline"]
    readme = (lb / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert "Test model" in rows[0] and "H0 baseline" in rows[1] and "*(baseline)*" in rows[1]
    assert f"{agg['mean']:.3f} ± {agg['std']:.3f}" in rows[0]
    page = (lb / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table class='board'" in page
    assert "http://" not in page.replace("https://example.org", "") and "<script src" not in page   # self-contained
    schema = json.loads((lb / "submission.schema.json").read_text())
    assert schema["additionalProperties"] is False and "model_key" in schema["required"]
    # a second build reproduces the same files
    before = {p: p.read_bytes() for p in built.written}
    S.build(lb, dataset, scorer=SCORER)
    assert all(p.read_bytes() == b for p, b in before.items())


def test_tampered_metrics_are_caught_by_build(h0_board, dataset):
    p = h0_board / "submissions" / "h0-baseline" / "metrics.json"
    m = json.loads(p.read_text())
    m["runs"]["test"][0]["headline"]["spin_diag_real_mev"] *= 0.5          # a better score than computed
    m["aggregate"]["test"]["headline"]["spin_diag_real_mev"]["mean"] *= 0.5
    p.write_text(json.dumps(m))
    with pytest.raises(SubmissionError, match=r"do not match trusted re-scoring: runs\.test\[0\]\.headline\."
                                              r"spin_diag_real_mev"):
        S.build(h0_board, dataset, scorer=SCORER)
    assert not (h0_board / "README.md").exists() and not (h0_board / "index.html").exists()


def test_build_refuses_other_scorer_settings(h0_board, dataset):
    with pytest.raises(SubmissionError, match="scored with other settings"):
        S.build(h0_board, dataset, scorer=S.ScorerSettings(kgrid=(1, 1, 1), path_points=12))


# ------------------------------------------------------------------- hostile metadata (submit)
def _bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, 9):
        prev = chr(ord("a") + k - 1)
        lines.append(f"{chr(ord('a') + k)}: &{chr(ord('a') + k)} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HOSTILE_METADATA = {
    "unknown key": (lambda: yaml.safe_dump(metadata(favourite_colour="blue")), "unknown key 'favourite_colour'"),
    "unknown nested key": (lambda: yaml.safe_dump(metadata(code={"repository": "https://x.org/c", "command": "x",
                                                                 "shell": "rm -rf /"})), "unknown key 'code.shell'"),
    "missing required key": (lambda: yaml.safe_dump({k: v for k, v in metadata().items() if k != "license"}),
                             "missing required key 'license'"),
    "python tag": (lambda: "!!python/object/apply:os.system ['echo owned']\n", "explicit YAML tags"),
    "python tag in a value": (lambda: yaml.safe_dump(metadata()) + "notes: !!python/name:os.system\n",
                              "explicit YAML tags"),
    "alias bomb": (_bomb, "YAML anchors"),
    "oversized file": (lambda: yaml.safe_dump(metadata(notes="x")) + "#" * (S.MAX_METADATA_BYTES + 10) + "\n",
                       "more than the limit"),
    "deep nesting": (lambda: "a: " + "[" * 50 + "]" * 50 + "\n", "nested deeper"),
    "two documents": (lambda: yaml.safe_dump(metadata()) + "---\n" + yaml.safe_dump(metadata()),
                      "more than one YAML document"),
    "duplicate key": (lambda: yaml.safe_dump(metadata()) + "license: GPL\n", "duplicate key 'license'"),
    "not a mapping": (lambda: "- just\n- a list\n", "must be a YAML mapping"),
    "not utf-8": (lambda: b"model_name: \xff\xfe\n", "not UTF-8"),
    "typed metrics": (lambda: yaml.safe_dump(metadata(metrics={"spin_diag_real_mev": 0.01})),
                      "metrics are computed by `materials-ham submit`, never typed"),
    "typed validation score": (lambda: yaml.safe_dump(metadata(validation_score=0.1)), "never typed"),
    "model_key traversal": (lambda: yaml.safe_dump(metadata(model_key="../../evil")), "model_key must be"),
    "model_key bad characters": (lambda: yaml.safe_dump(metadata(model_key="Evil Key!")), "model_key must be"),
    "model_key absolute": (lambda: yaml.safe_dump(metadata(model_key="/etc")), "model_key must be"),
    "non-https url": (lambda: yaml.safe_dump(metadata(paper="javascript:alert(1)")), "paper"),
    "external data undeclared": (lambda: yaml.safe_dump(metadata(training_data={"splits": ["train"],
                                                                                "external_data": True})),
                                 "describe it in external_data_description"),
    "test split used for training": (lambda: yaml.safe_dump(metadata(training_data={"splits": ["test"],
                                                                                    "external_data": False})),
                                     "training_data.splits"),
    "negative parameters": (lambda: yaml.safe_dump(metadata(parameters=-1)), "parameters"),
    "NaN cost": (lambda: yaml.safe_dump(metadata(training_cost={"gpu_hours": float("nan")})), "gpu_hours"),
    "duplicate seeds": (lambda: yaml.safe_dump(metadata(seeds=[0, 0])), "a seed is listed twice"),
    "wrong dataset revision": (lambda: yaml.safe_dump(metadata(dataset={"name": "scorer-test", "revision": "t2"})),
                               "declares dataset revision 't2'"),
    "wrong dataset name": (lambda: yaml.safe_dump(metadata(dataset={"name": "other", "revision": "t1"})),
                           "declares dataset 'other'"),
    "wrong dataset fingerprint": (lambda: yaml.safe_dump(metadata(dataset={"name": "scorer-test", "revision": "t1",
                                                                           "fingerprint": "0" * 64})),
                                  "declares dataset fingerprint"),
    "seeds do not match predictions": (lambda: yaml.safe_dump(metadata(seeds=[0, 1, 2])),
                                       "lists 3 seed(s) [0, 1, 2], but 2 test predictions"),
    "declared checksum mismatch": (lambda: yaml.safe_dump(metadata(predictions=[
        {"seed": 0, "split": "test", "sha256": "ab" * 32}])), "checksum mismatch for seed 0 (test)"),
}


@pytest.mark.parametrize("case", list(HOSTILE_METADATA))
def test_hostile_metadata_is_refused_by_submit(case, dataset, stores, tmp_path, capsys):
    make, message = HOSTILE_METADATA[case]
    text = make()
    p = tmp_path / "model.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    lb = tmp_path / "leaderboard"
    with pytest.raises(SystemExit) as exc:
        main(["submit", str(stores["model-0"]), str(stores["model-1"]), "--metadata", str(p), "--dataset",
              str(dataset), "--leaderboard", str(lb), *FAST_ARGS])
    err = capsys.readouterr().err
    assert exc.value.code == 7, err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4
    assert not lb.exists() or not any(lb.rglob("*"))                       # nothing written


def test_yaml_tags_never_execute(tmp_path):
    marker = tmp_path / "owned"
    p = tmp_path / "m.yaml"
    p.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SubmissionError):
        S.load_metadata(p)
    assert not marker.exists()


def test_symlink_in_a_submitted_store_is_refused(dataset, stores, tmp_path):
    src = tmp_path / "m.zarr"
    shutil.copytree(stores["model-0"], src)
    (src / "H" / "c" / "0").unlink()
    (src / "H" / "c" / "0").symlink_to("/etc/passwd")
    lb = tmp_path / "leaderboard"
    with pytest.raises(SubmissionError, match="H/c/0 is a symbolic link"):
        S.submit([src, stores["model-1"]], write_yaml(tmp_path / "m.yaml", metadata()), dataset, leaderboard=lb,
                 scorer=SCORER)
    assert not lb.exists() or not any(lb.rglob("*"))


def test_existing_entry_needs_overwrite(h0_board, dataset, stores, tmp_path):
    with pytest.raises(SubmissionError, match="already exists"):
        S.submit([stores["h0"]], write_yaml(tmp_path / "h0.yaml", h0_metadata()), dataset, leaderboard=h0_board,
                 scorer=SCORER)


# ------------------------------------------------------------------ hostile files (build)
def _sums(lb):
    return lb / "submissions" / "h0-baseline" / "checksums.json"


def _edit_sums(fn):
    def f(lb):
        p = _sums(lb)
        data = json.loads(p.read_text())
        fn(data)
        p.write_text(json.dumps(data))
    return f


def _rename_file(new):
    def fn(data):
        files = data["stores"][0]["files"]
        files[new] = files.pop("zarr.json")
    return fn


def _link_out(lb):
    f = lb / "predictions" / "h0-baseline" / "seed-0.test.zarr" / "H" / "c" / "0"
    outside = lb.parent / "outside.bin"
    outside.write_bytes(f.read_bytes())                                    # same bytes: only the link is wrong
    f.unlink()
    f.symlink_to(outside)


def _link_predictions_folder(lb):
    d = lb / "predictions" / "h0-baseline"
    shutil.move(d, lb.parent / "elsewhere")
    d.symlink_to(lb.parent / "elsewhere")


def _link_metadata(lb):
    p = lb / "submissions" / "h0-baseline" / "metadata.yaml"
    shutil.move(p, lb.parent / "m.yaml")
    p.symlink_to(lb.parent / "m.yaml")


def _flip_byte(lb):
    f = lb / "predictions" / "h0-baseline" / "seed-0.test.zarr" / "H" / "c" / "0"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))


def _extra_store_file(lb):
    (lb / "predictions" / "h0-baseline" / "seed-0.test.zarr" / "extra.bin").write_bytes(b"x")


def _extra_submission_file(lb):
    (lb / "submissions" / "h0-baseline" / "run.sh").write_text("rm -rf /\n")


def _metadata_with_metrics(lb):
    p = lb / "submissions" / "h0-baseline" / "metadata.yaml"
    p.write_text(p.read_text() + "headline: 0.001\n")


def _metadata_other_seeds(lb):
    p = lb / "submissions" / "h0-baseline" / "metadata.yaml"
    data = yaml.safe_load(p.read_text())
    data["seeds"] = [0, 1]
    p.write_text(yaml.safe_dump(data))


def _huge_metrics(lb):
    p = lb / "submissions" / "h0-baseline" / "metrics.json"
    with open(p, "wb") as fh:
        fh.truncate(S.MAX_METRICS_BYTES + 1)


def _missing_predictions(lb):
    shutil.rmtree(lb / "predictions" / "h0-baseline")


HOSTILE_FILES = {
    "path traversal in checksums": (_edit_sums(_rename_file("../../../etc/passwd")), "leaves its folder"),
    "absolute path in checksums": (_edit_sums(_rename_file("/etc/passwd")), "is absolute"),
    "store path traversal": (_edit_sums(lambda d: d["stores"][0].update(path="../../x.zarr")), "leaves its folder"),
    "symlink out of the store": (_link_out, "H/c/0 is a symbolic link"),
    "predictions folder is a symlink": (_link_predictions_folder, "symbolic link"),
    "metadata is a symlink": (_link_metadata, "metadata.yaml is a symbolic link"),
    "checksum mismatch": (_flip_byte, "checksum mismatch in ['H/c/0']"),
    "extra file in a store": (_extra_store_file, "unexpected file(s) ['extra.bin']"),
    "extra file in the submission": (_extra_submission_file, "unexpected file 'run.sh'"),
    "metrics typed into metadata": (_metadata_with_metrics, "never typed"),
    "seeds changed after submit": (_metadata_other_seeds, "need [(0, 'test'), (1, 'test')]"),
    "oversized metrics file": (_huge_metrics, "more than the limit"),
    "missing predictions": (_missing_predictions, "predictions store not found"),
    "unknown key in checksums": (_edit_sums(lambda d: d.update(trust_me=True)), "unknown key 'trust_me'"),
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_files_are_refused_by_build(case, h0_board, dataset, capsys):
    tamper, message = HOSTILE_FILES[case]
    tamper(h0_board)
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "build", "--leaderboard", str(h0_board), "--dataset", str(dataset), *FAST_ARGS])
    err = capsys.readouterr().err
    assert exc.value.code == 7, err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4
    assert not (h0_board / "README.md").exists() and not (h0_board / "index.html").exists()


# ---------------------------------------------------------------------------- CLI, browser
def test_cli_submit_and_build_in_a_subprocess(dataset, stores, tmp_path):
    lb = tmp_path / "leaderboard"
    meta = write_yaml(tmp_path / "h0.yaml", h0_metadata())
    run = lambda *a: subprocess.run([sys.executable, "-m", "materials_ham.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, cwd=ROOT, timeout=600)
    r = run("submit", stores["h0"], "--metadata", meta, "--dataset", dataset, "--leaderboard", lb, *FAST_ARGS)
    assert r.returncode == 0, r.stderr
    assert "headline" in r.stdout and (lb / "submissions" / "h0-baseline" / "metrics.json").is_file()
    r = run("submit", stores["h0"], "--metadata", meta, "--dataset", dataset, "--leaderboard", lb, *FAST_ARGS)
    assert r.returncode == 7 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = run("leaderboard", "build", "--leaderboard", lb, "--dataset", dataset, *FAST_ARGS)
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and (lb / "index.html").is_file() and (lb / "README.md").is_file()


def test_rendered_page_in_headless_chromium(board, tmp_path):
    """Screenshot of index.html in headless Chromium (Debian package `chromium`).  Set
    MATERIALS_HAM_SCREENSHOT=/path/x.png to keep the picture for a look."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the page check needs it")
    lb, _, _ = board
    page = (lb / "index.html").resolve()
    shot = Path(os.environ.get("MATERIALS_HAM_SCREENSHOT") or tmp_path / "index.png")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,2000"]
    r = subprocess.run(args + [f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    raw = shot.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 50_000            # a rendered page, not a blank one
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert 'class="board"' in dom and dom.count("<img") == 2 and "Test model" in dom
    assert dom.index("Test model") < dom.index("H0 baseline")                  # ranked order
    dom = subprocess.run(args + ["--dump-dom", page.as_uri() + "#sort=2-desc"], capture_output=True, text=True,
                         timeout=180).stdout                                 # the inline JS sorts on click
    assert 'aria-sort="descending"' in dom and dom.index("H0 baseline") < dom.index("Test model")


def test_store_size_and_file_limits(stores):
    with pytest.raises(SubmissionError, match="larger than the limit of 1000 bytes"):
        S.digest_store(stores["h0"], max_bytes=1000)
    with pytest.raises(SubmissionError, match="more than 2 files"):
        S.digest_store(stores["h0"], max_files=2)
