"""What a perfect short-range model scores: the reference H on the edges shorter than r, H0 beyond.

A model that corrects H0 only on edges shorter than r (the NextHAM baseline's free correction and,
without ``terms_on_all_edges``, its operator terms stop at the scored set, r = 8 A) can do no better
than this oracle.  Printed per r: the headline matrix MAE (scored edges, where the oracle is exact),
the band errors and the ghost states of the project's Evaluator, next to H0's.  On overlaps with
near-null directions (diffuse basis functions), the mismatch left beyond r is amplified into states
below the reference spectrum.

    python benchmarks/ghost_cut.py --dataset mini/dataset --split test --radii 6 8 12
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from materials_ham import Evaluator  # noqa: E402
from materials_ham.store import open_store  # noqa: E402

COLUMNS = (("spin_diag_real_mev", "MAE"), ("band_grid_w1_aligned_mev", "bands E_F+-1 eV"),
           ("gap_error_mev", "gap"), ("soc_splitting_error_mev", "SOC split"),
           ("ghost_states_w1_per_k", "ghosts E_F+-1 eV /k"), ("ghost_states_below_per_k", "below spectrum /k"))


def oracle(sample, radius: float) -> np.ndarray:
    """The reference H on edges shorter than ``radius`` (A), H0 on the others (full flat array, eV)."""
    near = np.repeat(sample.edge_lengths() < radius, 4 * sample.block_sizes)
    return np.where(near, sample.H, sample.H0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--radii", type=float, nargs="+", default=[8.0])
    ap.add_argument("--cache", default=None, help="the scorer's band cache folder")
    args = ap.parse_args(argv)
    store = open_store(args.dataset)
    ids = store.index.id[store.index.split == args.split].tolist()
    ev = Evaluator(store, split=args.split, workers=1, cache_dir=args.cache)
    print(f"{len(ids)} structures of split {args.split!r}; errors in meV, ghost states per k-point")
    print(f"{'prediction':28s}" + "".join(f"{name:>22s}" for _, name in COLUMNS))
    rows = [("H0", lambda s: s.H0)] + [(f"H below {r:g} A, H0 beyond", lambda s, r=r: oracle(s, r)) for r in args.radii]
    for name, make in rows:
        t0 = time.perf_counter()
        h = ev.eval({sid: make(store.by_id(sid)) for sid in ids})["headline"]
        print(f"{name:28s}" + "".join(f"{h[key]:22.4g}" for key, _ in COLUMNS) + f"   ({time.perf_counter() - t0:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
