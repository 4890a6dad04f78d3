"""Random-read throughput and size on disk: our Zarr store vs DeepH's one-dataset-per-edge HDF5.

In one run:

1. gets real samples: from SOURCE (a staging directory with catalog.parquet, a packed dataset
   directory, or a directory of .npz samples), or by default computes Si, GaAs, PbTe and
   SrTiO3 with GPAW (k = 2x2x2);
2. packs them with :func:`materials_ham.store.write_store` (or :func:`pack` for a staging dir);
3. writes the same samples in DeepH's layout: one folder per structure with
   hamiltonian.h5 / h0.h5 / overlap.h5, one HDF5 dataset per edge named "[Rx, Ry, Rz, i, j]"
   (1-based atoms, as DeepH), full edge set, uncompressed complex128 (S float64);
4. reads a seeded random sequence of structures from each layout into the same full
   samples (ours: ``store[k]`` -> Sample; DeepH: every dataset of the three files, blocks
   assembled in the sample's edge order), checks both against the originals, and prints
   structures/s, MB/s of full-block payload (dense H + H0 complex128 and S float64 over all
   edges), wall and CPU milliseconds per read (CPU: this process, all its threads; other work
   on the machine inflates it much less than wall time), and bytes on disk per structure
   relative to that raw payload.

File handles are cold-ish: the store reopens shard files on every read and the HDF5 files
are opened per structure read; the OS page cache is warm for both (same-run comparison).
Ours reads a sample's H, H0 and S with ``--threads`` threads (default: the store's default;
1 reads them one after the other); the DeepH side reads its three files one after the other,
as DeepH does.  The 1-minute load average is printed before and after the timings: other work
on the machine slows both sides.

    python benchmarks/store_read.py [SOURCE] [--reads 24] [--seed 0] [--limit N] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from materials_ham.sample import MATRICES, Sample, load_sample  # noqa: E402
from materials_ham.store import open_store, pack, write_store  # noqa: E402

DEFAULT = ["Si-diamond", "GaAs-zincblende", "PbTe-rocksalt", "SrTiO3-perovskite"]
H5_FILES = {"H": "hamiltonian.h5", "H0": "h0.h5", "S": "overlap.h5"}
KEY = re.compile(r"\[(-?\d+), (-?\d+), (-?\d+), (\d+), (\d+)\]")


def raw_bytes(s: Sample) -> int:
    """Dense payload of the full edge set: H, H0 complex128 and S float64."""
    return s.H.nbytes + s.H0.nbytes + s.S.nbytes


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def get_samples(source: Path | None, work: Path, limit: int | None = None,
                seed: int = 0) -> tuple[list[tuple[str, Sample]], Path]:
    """[(id, sample)] and the packed dataset directory (a seeded subset of ``limit`` structures
    of a dataset source, repacked, so memory stays bounded)."""
    out = work / "dataset"
    if source is None:
        from materials_ham.engines import get_engine
        from materials_ham.structures import default_structures

        engine = get_engine("gpaw", kpts=(2, 2, 2))
        samples = []
        for name, (crystal, prov) in default_structures(DEFAULT).items():
            t0 = time.perf_counter()
            samples.append((name, engine.compute(crystal, provenance=prov)))
            print(f"computed {name:<18} {time.perf_counter() - t0:6.1f} s", flush=True)
    elif (source / "catalog.parquet").is_file():
        pack(source, out, progress=False)
        store = open_store(out)
        return list(zip(store.ids, store)), out
    elif (source / "store.zarr").is_dir():
        store = open_store(source)
        ids = store.ids
        if limit is not None and limit < len(ids):
            ids = sorted(np.random.default_rng(seed).choice(ids, limit, replace=False).tolist())
        samples = [(sid, store.by_id(sid)) for sid in ids]
    else:
        samples = [(p.stem, load_sample(p)) for p in sorted(source.glob("*.npz"))]
    if not samples:
        sys.exit(f"no samples found in {source}")
    write_store(out, ((s, {"id": sid}) for sid, s in samples), attrs={"name": "store-read-benchmark"},
                progress=False)
    return samples, out


# ---------------------------------------------------------------------------- DeepH layout
def write_deeph(folder: Path, s: Sample) -> None:
    import h5py

    folder.mkdir(parents=True)
    for name, fname in H5_FILES.items():
        with h5py.File(folder / fname, "w") as f:
            for e, ((i, j), R) in enumerate(zip(s.edge_index, s.edge_shift)):
                f[f"[{R[0]}, {R[1]}, {R[2]}, {i + 1}, {j + 1}]"] = s.block(name, e)


def read_deeph(folder: Path) -> dict[str, np.ndarray]:
    """The three matrices as flat arrays over the full edge set, sorted by (i, j, R) like Sample."""
    import h5py

    out = {}
    for name, fname in H5_FILES.items():
        with h5py.File(folder / fname, "r") as f:
            blocks = {}
            for key in f.keys():
                rx, ry, rz, i, j = map(int, KEY.fullmatch(key).groups())
                blocks[(i - 1, j - 1, rx, ry, rz)] = f[key][()]
        out[name] = np.concatenate([blocks[k].reshape(-1) for k in sorted(blocks)])
    return out


# -------------------------------------------------------------------------------- measuring
def timed(reads: list[int], read_one) -> tuple[float, float]:
    """(wall, CPU) seconds to read the structures ``reads`` in order (CPU: this process, all threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for k in reads:
        read_one(k)
    return time.perf_counter() - t0, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", type=Path, help="staging dir, dataset dir or folder of .npz samples")
    ap.add_argument("--reads", type=int, default=24, help="random structure reads per layout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="dataset source: use a seeded subset of N structures")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads reading one sample's matrices in our store (default: the store's default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        samples, ds_dir = get_samples(args.source, work, args.limit, args.seed)
        n = len(samples)
        for k, (sid, s) in enumerate(samples):
            write_deeph(work / "deeph" / f"{k:06d}", s)
        store = open_store(ds_dir, threads=args.threads)
        # correctness first: both layouts give back the original blocks
        for k, (sid, s) in enumerate(samples):
            got, h5 = store[k], read_deeph(work / "deeph" / f"{k:06d}")
            assert all(np.array_equal(getattr(got, m), getattr(s, m)) for m in MATRICES), sid
            assert all(np.array_equal(h5[m], getattr(s, m)) for m in MATRICES), sid
        reads = np.random.default_rng(args.seed).integers(0, n, args.reads).tolist()
        payload = sum(raw_bytes(samples[k][1]) for k in reads)
        load_before = os.getloadavg()[0]
        t_ours, cpu_ours = timed(reads, lambda k: store[k])
        t_h5, cpu_h5 = timed(reads, lambda k: read_deeph(work / "deeph" / f"{k:06d}"))
        load_after = os.getloadavg()[0]
        raw_per = sum(raw_bytes(s) for _, s in samples) / n
        disk = {"zarr store (ours)": dir_bytes(ds_dir) / n, "DeepH HDF5": dir_bytes(work / "deeph") / n}

        print(f"\n{n} structures ({', '.join(sid for sid, _ in samples)}); {args.reads} random reads, seed {args.seed}; "
              f"mean raw full-block payload {raw_per / 2**20:.2f} MiB/structure")
        print(f"{os.cpu_count()} cores; 1-minute load average {load_before:.2f} before the timings, {load_after:.2f} "
              f"after; ours read with {store.threads} thread(s)")
        print(f"{'layout':<20}{'structures/s':>14}{'MB/s':>10}{'ms/read':>10}{'cpu ms/read':>13}{'disk MiB/str':>14}"
              f"{'disk/raw':>10}")
        for label, t, cpu in (("zarr store (ours)", t_ours, cpu_ours), ("DeepH HDF5", t_h5, cpu_h5)):
            print(f"{label:<20}{args.reads / t:>14.1f}{payload / t / 1e6:>10.1f}{1e3 * t / args.reads:>10.1f}"
                  f"{1e3 * cpu / args.reads:>13.1f}{disk[label] / 2**20:>14.2f}{disk[label] / raw_per:>10.3f}")
        print(f"read speed-up ours/DeepH: {t_h5 / t_ours:.1f}x (goal >= 10x), CPU time {cpu_h5 / cpu_ours:.1f}x; "
              f"size on disk ours: {disk['zarr store (ours)'] / raw_per:.3f}x raw (goal <= 0.5x), "
              f"DeepH: {disk['DeepH HDF5'] / raw_per:.3f}x raw")


if __name__ == "__main__":
    main()
