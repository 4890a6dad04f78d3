"""Time to score a split, with and without the reference cache, against a plain per-k eigh loop.

Scores the H0 baseline of a split (in memory) and prints, per structure and in total:

* ``no cache``: every reference quantity recomputed (S(k) Bloch sums + Cholesky + inverse,
  reference eigenvalues, labels) -- what a scorer without a cache pays on every submission;
* ``cache fill``: the same, also writing the on-disk cache;
* ``disk cache``: a fresh Evaluator reading the reference from disk: the band data from the
  cache, H and S (never H0) from the dataset (what ``materials-ham evaluate`` pays from the
  second submission on), with 1 thread and with 2 (``workers=2``, the CLI's ``--workers 2``);
* ``predictions store + disk cache``: the same, reading the predictions from a predictions store
  (the CLI path), with 1 and 2 threads;
* ``memory cache``: a second ``eval`` in the same process;
* ``memory cache, 2 threads``: the same with ``workers=2``;
* ``plain loop``: per structure and k-point, H(k) and S(k) from :mod:`materials_ham.kspace`
  and ``scipy.linalg.eigh(H, S x I2, eigvals_only=True)`` for the prediction and the reference;
* ``eigvalsh floor``: only the batched ``numpy.linalg.eigvalsh`` of the transformed predicted
  matrices (the part no scorer can skip).

Then extrapolates to the 3,000-structure test split: (a) with this split's own structure
sizes, and (b) with the eigen-solve cost measured at the size of a typical NextHAM (ABACUS)
structure (``--nao``, default 150 orbitals, i.e. a 300 x 300 spinor matrix).

    python benchmarks/score_speed.py [--dataset PATH] [--split test] [--kgrid 4 4 4] [--path-points 40]

Without ``--dataset`` (and without ``$MATERIALS_HAM_DATASET``) it packs a small dataset from the
Si fixture and two GPAW runs (GaAs, PbTe; about 20 s).  BLAS runs single-threaded
(OMP_NUM_THREADS / OPENBLAS_NUM_THREADS default to 1 here, as scripts/test.sh sets them): with
OpenBLAS threads on a busy 2-core machine the band metrics were measured 4-6x slower, and their
last digits depend on the thread count.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_TEST = 3000


def small_dataset(tmp: Path) -> Path:
    from materials_ham import load_sample
    from materials_ham.engines import get_engine
    from materials_ham.store import write_store
    from materials_ham.structures import default_structures

    eng = get_engine("gpaw", kpts=(2, 2, 2))
    samples = {"si": load_sample(ROOT / "tests" / "data" / "Si-dzp-k222.npz")}
    for name in ("GaAs-zincblende", "PbTe-rocksalt"):
        crystal, prov = default_structures([name])[name]
        samples[name] = eng.compute(crystal, provenance=prov)
    items = [(s, {"id": sid, "split": "test", "formula": s.crystal.formula}) for sid, s in samples.items()]
    return write_store(tmp / "dataset", items, attrs={"dataset_name": "speed-benchmark"}, progress=False)


def plain_loop(store, ids, preds, kpts) -> float:
    """Per-k scipy.linalg.eigh(H, S x I2) of prediction and reference; returns seconds."""
    import scipy.linalg as sl

    from materials_ham.kspace import bloch

    t0 = time.perf_counter()
    for sid in ids:
        s = store.by_id(sid)
        k = kpts[sid]
        Sk = bloch(s, "S", k)
        for flat in (preds[sid], s.H):
            Hk = bloch(s, "H", k, flat)
            for q in range(len(k)):
                sl.eigh(Hk[q], np.kron(np.eye(2), Sk[q]), eigvals_only=True)
    return time.perf_counter() - t0


def eig_floor(ev, ids, preds) -> tuple[float, float]:
    """(wall, CPU) seconds of the batched eigvalsh of the transformed predicted matrices alone."""
    mats = []
    for sid in ids:
        ref = ev.reference(sid)
        Hk = ref.bloch(preds[sid])                       # all k-points
        L = ref.bands.Linv
        K, n = L.shape[0], L.shape[-1]
        T = (L[:, None] @ Hk.reshape(K, 2, n, 2 * n)).reshape(K, 2 * n, 2 * n)
        mats.append((T.reshape(K, 4 * n, n) @ np.conj(np.swapaxes(L, -1, -2))).reshape(K, 2 * n, 2 * n))
    t0, c0 = time.perf_counter(), time.process_time()
    for A in mats:
        np.linalg.eigvalsh(A)
    return time.perf_counter() - t0, time.process_time() - c0


def per_k_cost(nao: int, reps: int = 3) -> float:
    """Seconds per k-point of transform + eigvalsh for a random 2 nao spinor problem."""
    rng = np.random.default_rng(0)
    N = 2 * nao
    H = rng.normal(size=(reps, N, N)) + 1j * rng.normal(size=(reps, N, N))
    H = H + np.conj(np.swapaxes(H, 1, 2))
    L = np.tril(rng.normal(size=(reps, nao, nao))) + 3 * np.eye(nao)
    t0 = time.perf_counter()
    T = (L[:, None] @ H.reshape(reps, 2, nao, N)).reshape(reps, N, N)
    A = (T.reshape(reps, 2 * N, nao) @ np.swapaxes(L, -1, -2)).reshape(reps, N, N)
    np.linalg.eigvalsh(A)
    return (time.perf_counter() - t0) / reps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=os.environ.get("MATERIALS_HAM_DATASET"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--kgrid", nargs=3, type=int, default=(4, 4, 4))
    ap.add_argument("--path-points", type=int, default=40)
    ap.add_argument("--nao", type=int, default=150, help="orbitals of a typical NextHAM structure (extrapolation b)")
    ap.add_argument("--max-structures", type=int, default=None, help="score only the first N structures of the split")
    args = ap.parse_args(argv)

    from materials_ham import Evaluator
    from materials_ham.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        dataset = Path(args.dataset) if args.dataset else small_dataset(tmp)
        setup = time.perf_counter() - t0
        store = open_store(dataset)
        kw = dict(split=args.split, kgrid=tuple(args.kgrid), path_points=args.path_points)

        def evaluator(**extra):
            ev = Evaluator(store, **kw, **extra)
            if args.max_structures:
                ev.ids = ev.ids[:args.max_structures]
            return ev

        ids = evaluator(bands=False).ids
        preds = {sid: store.by_id(sid, matrices=("H0",)).H0 for sid in ids}
        import seekpath  # noqa: F401  (imports outside the timings)

        load_before = os.getloadavg()[0]

        from materials_ham import write_predictions

        t = time.perf_counter()
        split_ids = Evaluator(store, split=args.split, bands=False).ids
        full = {sid: store.by_id(sid, matrices=("H0",)).H0 for sid in split_ids}
        pred_path = write_predictions(tmp / "h0.zarr", store, full, split=args.split)
        write_s = time.perf_counter() - t
        rows = []                                        # (name, wall seconds, CPU seconds of this process)

        def measure(name, fn):
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            rows.append((name, time.perf_counter() - t, time.process_time() - c))
            return out

        def timed(name, ev, source=None):
            return measure(name, lambda: ev.eval(preds if source is None else source))

        timed("no cache", evaluator(memory_cache_mib=0))
        timed("cache fill (compute + write)", evaluator(cache_dir=tmp / "cache", memory_cache_mib=0))
        timed("disk cache", evaluator(cache_dir=tmp / "cache", memory_cache_mib=0))
        timed("disk cache, 2 threads", evaluator(cache_dir=tmp / "cache", memory_cache_mib=0, workers=2))
        ev = evaluator(cache_dir=tmp / "cache", memory_cache_mib=4096)
        ev.eval(preds)
        m = timed("memory cache", ev)
        for workers in (1, 2):
            timed(f"predictions store + disk cache, {workers} thread{'s' if workers > 1 else ''} (CLI)",
                  evaluator(cache_dir=tmp / "cache", memory_cache_mib=0, workers=workers), pred_path)
        ev2 = evaluator(cache_dir=tmp / "cache", memory_cache_mib=4096, workers=2)
        ev2.eval(preds)
        timed("memory cache, 2 threads", ev2)
        timed("matrix metrics only (no bands)", evaluator(bands=False, memory_cache_mib=0))
        kpts = {sid: ev.reference(sid).bands.kpts for sid in ids}
        measure("plain per-k scipy.linalg.eigh loop", lambda: plain_loop(store, ids, preds, kpts))
        rows.append(("eigvalsh floor (batched, prediction only)", *eig_floor(ev, ids, preds)))

        n = len(ids)
        naos = [ev.reference(sid).nao for sid in ids]
        K = len(next(iter(kpts.values())))
        print(f"dataset {dataset} split {args.split}: {n} structures, nao {min(naos)}-{max(naos)} "
              f"(spinor {2 * min(naos)}-{2 * max(naos)}), {K} k-points each ({args.kgrid[0]}x{args.kgrid[1]}x"
              f"{args.kgrid[2]} grid + path), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
              + (f"; dataset built in {setup:.0f} s" if not args.dataset else ""))
        print(f"{os.cpu_count()} cores; 1-minute load average {load_before:.2f} before the timings, "
              f"{os.getloadavg()[0]:.2f} after (other work on the machine inflates every number below)")
        print(f"headline of the H0 baseline: {m['headline']['spin_diag_real_mev']:.4f} meV; writing the predictions "
              f"store took {write_s:.2f} s (incl. reading H0); 'plain loop' = eigenvalues only (prediction + reference)")
        print("'cpu s/str': CPU seconds of this process per structure (all its threads), which other work on the "
              "machine inflates much less than wall time")
        print(f"{'':50s} {'total s':>9s} {'s/structure':>12s} {'cpu s/str':>10s} {'3,000 structures':>17s}")
        for name, sec, cpu in rows:
            print(f"{name:50s} {sec:9.2f} {sec / n:12.4f} {cpu / n:10.4f} {sec / n * N_TEST / 60:13.1f} min")
        wall = {name: sec for name, sec, _ in rows}
        warm = wall["memory cache, 2 threads"]
        disk = wall["predictions store + disk cache, 2 threads (CLI)"]
        print(f"\n(a) 3,000 structures of this split's sizes, 2 threads: {warm / n * N_TEST / 60:.1f} min with the "
              f"references in memory, {disk / n * N_TEST / 60:.1f} min from the disk cache and a predictions store "
              f"(the CLI with --workers 2) (goal: < 10 min)")
        c = per_k_cost(args.nao)
        print(f"(b) typical NextHAM structure (nao {args.nao}, spinor {2 * args.nao}): transform + eigvalsh "
              f"{1000 * c:.1f} ms per k-point x {K} k-points = {c * K:.2f} s/structure -> 3,000 structures: "
              f"{c * K * N_TEST / 60:.0f} min on 1 core, ~{c * K * N_TEST / 120:.0f} min on 2 "
              f"(eigen-solves alone; a {args.kgrid[0]}x{args.kgrid[1]}x{args.kgrid[2]} grid sets K)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
