"""The main job on the embedded default: the whole pipeline on a small real dataset.

The default structures (:mod:`materials_ham.structures.prototypes`: Si, GaAs, PbTe, SrTiO3)
go through the same steps as the benchmark itself:

1. a catalog (all in the ``test`` split: the demo scores everything);
2. :func:`materials_ham.generate.generate`: GPAW on each structure in its own process
   (dask LocalCluster), H, H0 and S with SOC, each sample validated physically;
3. :func:`materials_ham.store.pack` into a Zarr v3 dataset with its card, then
   :func:`materials_ham.store.verify_dataset`;
4. the H0 baseline (predictions = H0) written with :func:`materials_ham.write_predictions` and
   scored by :class:`materials_ham.Evaluator`: gauge-standardised matrix MAE and band errors.

Re-running with the same folder resumes: finished structures are not recomputed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from .atomic import atomic_write


def demo_catalog(names=None):
    """The default structures as a catalog DataFrame, every row in the ``test`` split."""
    from .structures.curate import curate
    from .structures.prototypes import default_structures
    from .structures.sources import Candidate

    cands = [Candidate(name, crystal, prov["source"], name, name.split("-", 1)[1], prov["note"])
             for name, (crystal, prov) in default_structures(names).items()]
    df, _ = curate(cands, split="random")
    df["split"] = "test"
    return df


def run_demo(out: Path, *, names=None, engine: str = "gpaw", settings: dict | None = None, workers=None,
             console=None) -> dict:
    """Run the pipeline into ``out`` (staging/, dataset/, h0-test.zarr, report/, summary.json)."""
    from rich.console import Console

    from . import Evaluator, write_predictions
    from .evaluate.report import rich_tables, write_report
    from .generate import generate
    from .store import open_store, pack, verify_dataset
    from .store.card import write_card

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    catalog = demo_catalog(names)
    console.print(f"[1/4] generate: {len(catalog)} structures with {engine} ({out / 'staging'})")
    gen = generate(catalog, out / "staging", engine=engine, settings=settings, workers=workers,
                   progress=console.is_terminal, log=console.print)
    for sid, f in gen.failures.items():
        console.print(f"  [red]failed[/] {sid} ({f['kind']}): {f['cause']}")
    console.print(f"[2/4] pack + verify ({out / 'dataset'})")
    dataset = pack(out / "staging", out / "dataset", attrs={"dataset_name": "materials-ham demo"},
                   overwrite=True, progress=False)
    write_card(dataset, name="materials-ham demo")
    check = verify_dataset(dataset)
    store = open_store(dataset)
    console.print(f"[3/4] H0 baseline predictions ({out / 'h0-test.zarr'})")
    preds = write_predictions(out / "h0-test.zarr", store,
                              ((sid, store.by_id(sid).H0) for sid in store.index["id"]),
                              split="test", model="H0 baseline (predictions = H0)", overwrite=True)
    console.print("[4/4] score with the Evaluator")
    result = Evaluator(store, split="test").evaluate(preds, details=True)
    write_report(result, out / "report", title="H0 baseline on the demo set")
    m = result.metrics

    ix = store.index.set_index("id")
    t = Table(title="Materials-HAM-SOC demo: embedded default set (GPAW LCAO, SOC)", title_justify="left")
    for col in ("structure", "atoms", "edges", "engine s", "bands vs GPAW (meV)", "Kramers (meV)",
                "min eig S(k)", "H0 MAE (meV)"):
        t.add_column(col, justify="left" if col == "structure" else "right")
    rows = []
    for s in m["per_structure"]:
        r = ix.loc[s["id"]]
        row = {"name": s["id"], "formula": r["formula"], "atoms": int(r["n_atoms"]), "edges": int(r["n_edges"]),
               "seconds": float(r["seconds_total"]), "valid": True,
               "validation": {c[4:]: float(r[c]) for c in ix.columns if c.startswith("val_")},
               "h0_gauge_mae_mev": s["matrix"]["spin_diag_real"]}
        rows.append(row)
        v = row["validation"]
        t.add_row(row["name"], str(row["atoms"]), str(row["edges"]), f"{row['seconds']:.1f}",
                  f"{v['band_reproduction']:.1e}", f"{v['kramers_degeneracy']:.1e}",
                  f"{v['overlap_positive_definite']:.1e}", f"{row['h0_gauge_mae_mev']:.3f}")
    console.print(t)
    for table in rich_tables(m):
        console.print(table)
    headline = m["headline"]["spin_diag_real_mev"]
    console.print(f"H0 baseline, gauge MAE (spin-diagonal real part, edges < 8 A), mean over structures: "
                  f"{headline:.3f} meV; dataset verify: {'OK' if check.ok else 'FAILED'}; "
                  f"{time.perf_counter() - t0:.0f} s")
    summary = {"engine": {"name": engine, "settings": settings or {}}, "structures": rows,
               "failures": gen.failures, "h0_gauge_mae_mean_mev": headline, "metrics": m,
               "dataset": str(dataset), "verify_ok": check.ok,
               "all_valid": not gen.failures and check.ok and len(rows) == len(catalog)}
    with atomic_write(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=float)
    console.print(f"dataset, predictions, report/ and summary.json in {out}/")
    return summary
