"""The main job on the embedded default, on one structure: generated, validated, packed, scored."""
import json

from rich.console import Console


def test_demo_runs_the_whole_pipeline(tmp_path):
    from materials_ham.demo import run_demo
    from materials_ham.gauge import gauge_errors
    from materials_ham.store import open_store, verify_dataset

    summary = run_demo(tmp_path, names=["GaAs-zincblende"], settings={"kpts": (2, 2, 2)}, workers=1,
                       console=Console(file=open("/dev/null", "w")))
    assert summary["all_valid"] and summary["verify_ok"]
    row = summary["structures"][0]
    assert row["name"] == "GaAs-zincblende" and row["validation"]["band_reproduction"] < 0.01
    assert 0.05 < row["h0_gauge_mae_mev"] < 50  # H0 is close to, but not equal to, H
    # the Evaluator's number is the gauge module's number for this sample
    sample = open_store(tmp_path / "dataset").by_id("GaAs-zincblende")
    assert abs(row["h0_gauge_mae_mev"] - gauge_errors(sample, sample.H0)["spin_diag_real"]) < 1e-9
    assert verify_dataset(tmp_path / "dataset").ok
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "dataset" / "dataset_card.md").is_file()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["structures"][0]["name"] == "GaAs-zincblende"
    assert on_disk["metrics"]["headline"]["spin_diag_real_mev"] == summary["h0_gauge_mae_mean_mev"]


def test_public_api():
    import materials_ham as mh

    assert callable(mh.validate_sample) and callable(mh.get_engine) and callable(mh.read_structure)
    assert callable(mh.Evaluator) and callable(mh.write_predictions)
