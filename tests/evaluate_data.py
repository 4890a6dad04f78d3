"""Shared builders of the scorer's tests: a small real dataset and predictions made from it."""
from __future__ import annotations

import numpy as np

#: Structures of the test dataset: id -> (fixture name, split).  'si-val' is the Si fixture again.
LAYOUT = {"si": ("si", "test"), "gaas": ("gaas", "test"), "pbte": ("pbte", "test"), "si-val": ("si", "val")}
TEST_IDS = ["si", "gaas", "pbte"]
#: Small settings keep the band part of every test quick.
FAST = {"kgrid": (2, 2, 2), "path_points": 12}


def build_dataset(root, samples: dict) -> "object":
    """Pack ``samples`` ({'si', 'gaas', 'pbte'}: Sample) into ``root`` as a dataset (small shards)."""
    from materials_ham.store import write_store

    items = []
    for sid, (name, split) in LAYOUT.items():
        s = samples[name]
        items.append((s, {"id": sid, "formula": s.crystal.formula, "split": split,
                          "elements": sorted(set(s.crystal.to_ase().get_chemical_symbols()))}))
    return write_store(root, items, attrs={"dataset_name": "scorer-test", "dataset_version": "t1"}, shard_mib=2,
                       progress=False)


def spinor_s(sample) -> np.ndarray:
    """S x I2 in the flat spinor layout of ``sample`` (zero off the spin diagonal)."""
    from materials_ham.gauge import spinor_overlap

    return spinor_overlap(sample)


def onsite_edge(sample, atom: int) -> int:
    return int(np.nonzero((sample.edge_index[:, 0] == atom) & (sample.edge_index[:, 1] == atom)
                          & ~sample.edge_shift.any(axis=1))[0][0])


def loop_gauge_mae(sample, predicted, cutoff=8.0):
    """Independent loop implementation of the gauge MAE (CONVENTIONS.md) for cross-checks.

    Returns (mu, sum of |Re| over uu+dd entries, number of uu entries) over edges < cutoff.
    """
    n = sample.orbitals_per_atom
    L = sample.edge_lengths()
    num = den = 0.0
    blocks = []
    for e in range(sample.n_edges):
        if cutoff is not None and L[e] >= cutoff:
            continue
        i, j = sample.edge_index[e]
        a, b = sample.block_offsets[e], sample.block_offsets[e + 1]
        d = (predicted[4 * a:4 * b] - sample.H[4 * a:4 * b]).reshape(2 * n[i], 2 * n[j])
        s = sample.S[a:b].reshape(n[i], n[j])
        num += float(np.sum(d[:n[i], :n[j]].real * s) + np.sum(d[n[i]:, n[j]:].real * s))
        den += 2.0 * float(np.sum(s * s))
        blocks.append((d, s, n[i], n[j]))
    mu = num / den
    total, count = 0.0, 0
    for d, s, ni, nj in blocks:
        total += float(np.abs(d[:ni, :nj].real - mu * s).sum() + np.abs(d[ni:, nj:].real - mu * s).sum())
        count += s.size
    return mu, total, count
