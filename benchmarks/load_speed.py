"""Load throughput from the Hub: map-style (download, then read), streaming, and DataLoader workers.

In one run:

1. gets real samples: from SOURCE (a packed dataset folder) or, by default, the shipped Si fixture
   and GPAW runs of GaAs and PbTe (k = 2x2x2, about 15 s), each repeated ``--copies`` times under
   different ids (a split of every third structure is "test");
2. packs them (``--shard-mib`` shards) with the dataset card;
3. starts the loopback Hub server of the tests (``tests/hubserver.py``, in its own process on
   127.0.0.1: it emulates the Hub's HTTP protocol) and points huggingface_hub at it with
   ``HF_ENDPOINT`` -- the only setting that differs from using the real Hub;
4. publishes the dataset, then in fresh caches:

   * map-style: ``load_dataset(repo)`` (download + sha256 checks), then reads every structure;
   * streaming: ``load_dataset(repo, streaming=True)`` reads every structure over ``hf://``;
   * DataLoader over the map-style dataset, ``collate_graphs`` (padded and flat block layouts), batch
     ``--batch``, with 0 and 2 workers, two epochs (the first includes starting the workers);

   and prints structures/s and MB/s of full-block payload (dense H + H0 complex128 and S float64
   over all edges) for each, checking the loaded samples against the originals.

Loopback numbers measure the client's work (HTTP, checks, decoding, assembly), not a network:
on the real Hub, download and streaming add the network's latency and bandwidth.

    python benchmarks/load_speed.py [SOURCE] [--copies 8] [--shard-mib 8] [--batch 4]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_loopback_benchmark_token"


def start_hub() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hubserver.py"), TOKEN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def get_samples(source: Path | None, copies: int):
    from materials_ham import load_sample
    from materials_ham.store import open_store

    if source is not None:
        store = open_store(source)
        return [(sid, store.by_id(sid)) for sid in store.ids]
    from materials_ham.engines import get_engine
    from materials_ham.structures import default_structures

    base = [("Si", load_sample(ROOT / "tests" / "data" / "Si-dzp-k222.npz"))]
    engine = get_engine("gpaw", kpts=(2, 2, 2))
    for name, (crystal, prov) in default_structures(["GaAs-zincblende", "PbTe-rocksalt"]).items():
        t0 = time.perf_counter()
        base.append((name.split("-")[0], engine.compute(crystal, provenance=prov)))
        print(f"computed {name:<18} {time.perf_counter() - t0:6.1f} s", flush=True)
    return [(f"{name}-{k}", s) for k in range(copies) for name, s in base]


def row(sid: str, s, k: int) -> dict:
    symbols = s.crystal.to_ase().get_chemical_symbols()
    return {"id": sid, "formula": s.crystal.formula, "elements": sorted(set(symbols)), "n_atoms": s.n_atoms,
            "split": "test" if k % 3 == 2 else "train", "source": "benchmark", "prototype": sid.split("-")[0]}


def payload(s) -> int:
    return s.H.nbytes + s.H0.nbytes + s.S.nbytes


def report(label: str, n: int, nbytes: int, seconds: float) -> None:
    print(f"{label:<38}{n / seconds:>12.1f}{nbytes / seconds / 1e6:>10.1f}{seconds:>9.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", type=Path, help="a packed dataset folder (default: Si, GaAs, PbTe)")
    ap.add_argument("--copies", type=int, default=8, help="copies of each default structure")
    ap.add_argument("--shard-mib", type=float, default=8, help="shard size of the packed dataset (MiB raw)")
    ap.add_argument("--batch", type=int, default=4, help="DataLoader batch size")
    args = ap.parse_args()

    hub_proc, endpoint = start_hub()
    os.environ.update(HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HUB_DISABLE_TELEMETRY="1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # empty caches (set before huggingface_hub is imported, which reads them)
            os.environ.update(HF_HUB_CACHE=str(Path(tmp) / "hf-cache"), MATERIALS_HAM_CACHE=str(Path(tmp) / "mh-cache"))
            run(Path(tmp), args)
    finally:
        hub_proc.stdin.close()
        hub_proc.wait(timeout=30)


def run(work: Path, args) -> None:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from materials_ham.data import collate_graphs, load_dataset
    from materials_ham.hub import publish
    from materials_ham.store import write_store
    from materials_ham.store.card import write_card

    samples = get_samples(args.source, args.copies)
    original = dict(samples)
    ds_dir = write_store(work / "dataset", ((s, row(sid, s, k)) for k, (sid, s) in enumerate(samples)),
                         attrs={"dataset_name": "load-speed-benchmark"}, shard_mib=args.shard_mib, progress=False)
    write_card(ds_dir, name="load-speed-benchmark")
    size = sum(p.stat().st_size for p in ds_dir.rglob("*") if p.is_file())
    total = sum(payload(s) for _, s in samples)
    n = len(samples)
    print(f"\n{n} structures, full-block payload {total / 2**20:.1f} MiB, on disk {size / 2**20:.1f} MiB "
          f"({args.shard_mib:g} MiB shards); loopback Hub {os.environ['HF_ENDPOINT']}")

    t0 = time.perf_counter()
    publish(ds_dir, "bench/ham")
    t_pub = time.perf_counter() - t0

    t0 = time.perf_counter()
    ds = load_dataset("bench/ham", progress=False)
    t_dl = time.perf_counter() - t0
    t0 = time.perf_counter()
    for sid, s in zip(ds.ids, ds):
        assert np.array_equal(s.H, original[sid].H) and np.array_equal(s.S, original[sid].S), sid
    t_map = time.perf_counter() - t0

    t0 = time.perf_counter()
    st = load_dataset("bench/ham", streaming=True)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    for sid, s in zip(st.ids, st):
        assert np.array_equal(s.H, original[sid].H), sid
    t_stream = time.perf_counter() - t0

    loaders = {}
    for layout in ("padded", "flat"):
        for workers in (0, 2):
            loader = DataLoader(ds.torch(), batch_size=args.batch, num_workers=workers, persistent_workers=workers > 0,
                                collate_fn=partial(collate_graphs, layout=layout))
            for epoch in (1, 2):     # epoch 1 includes starting the workers (and their first store opening)
                t0 = time.perf_counter()
                count = 0
                for batch in loader:
                    count += len(batch["ids"])
                    assert batch["H"].dtype == torch.complex128
                loaders[layout, workers, epoch] = time.perf_counter() - t0
                assert count == n
            del loader

    print(f"\n{'step':<38}{'struct/s':>12}{'MB/s':>10}{'s':>9}")
    report("publish (upload, loopback)", n, size, t_pub)
    report("map-style: download + sha256 checks", n, size, t_dl)
    report("map-style: read every structure", n, total, t_map)
    print(f"{'streaming: open (index, zarr.json)':<38}{'':>12}{'':>10}{t_open:>9.2f}")
    report("streaming: read every structure", n, total, t_stream)
    for (layout, workers, epoch), t in loaders.items():
        report(f"DataLoader {layout}, {workers} workers, epoch {epoch}", n, total, t)
    print("(MB/s: download and publish count bytes on disk; reads count the full-block payload)")


if __name__ == "__main__":
    main()
