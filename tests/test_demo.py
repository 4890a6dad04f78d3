"""The main job on the embedded default, on one structure: generated, validated, scored."""
import json

from rich.console import Console


def test_demo_generates_validates_and_scores(engine, tmp_path):
    from materials_ham import load_sample
    from materials_ham.demo import run_demo

    summary = run_demo(tmp_path, names=["GaAs-zincblende"], engine=engine, console=Console(file=open("/dev/null", "w")))
    assert summary["all_valid"]
    row = summary["structures"][0]
    assert row["valid"] and row["validation"]["band_reproduction"] < 0.01
    assert 0.05 < row["h0_gauge_mae_mev"] < 50  # H0 is close to, but not equal to, H
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["structures"][0]["name"] == "GaAs-zincblende"
    assert load_sample(row["path"]).n_edges == row["edges"]


def test_public_api():
    import materials_ham as mh

    assert callable(mh.validate_sample) and callable(mh.get_engine) and callable(mh.read_structure)
