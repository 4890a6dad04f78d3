"""Seeded train/validation/test splits of a catalog.

* ``random``: a seeded shuffle cut in the paper's 12 : 2 : 3 proportions;
* ``ood-elements``: every structure containing a held-out element is test, the rest are
  split 12 : 2 into train and validation;
* ``ood-prototype``: every structure of a held-out prototype is test, likewise.

All functions take and return plain lists so they are independent of the catalog format.
"""
from __future__ import annotations

import numpy as np

from ..errors import MaterialsHamError

SPLITS = ("train", "val", "test")
#: The NextHAM paper's 12,000 / 2,000 / 3,000.
PAPER_RATIOS = (12, 2, 3)


def _cut(n: int, ratios) -> list[int]:
    """Sizes of consecutive parts of n items in the given ratios (largest remainder)."""
    r = np.asarray(ratios, float) / np.sum(ratios)
    raw = r * n
    sizes = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - sizes))[: n - sizes.sum()]:
        sizes[k] += 1
    return sizes.tolist()


def random_split(ids: list[str], *, seed: int = 0, ratios=PAPER_RATIOS) -> dict[str, str]:
    """{id: split} with a seeded shuffle (independent of the input order: ids are sorted first)."""
    order = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(order))
    sizes = _cut(len(order), ratios)
    names = [name for name, size in zip(SPLITS[: len(sizes)], sizes) for _ in range(size)]
    return {order[p]: name for p, name in zip(perm, names)}


def held_out_split(ids: list[str], held_out: list[bool], *, seed: int = 0,
                   ratios=PAPER_RATIOS[:2]) -> dict[str, str]:
    """Held-out structures -> test; the rest split train/val in ``ratios`` with a seeded shuffle."""
    if not any(held_out):
        raise MaterialsHamError("the out-of-distribution split holds out nothing: no structure matches")
    if all(held_out):
        raise MaterialsHamError("the out-of-distribution split holds out every structure")
    rest = [i for i, h in zip(ids, held_out) if not h]
    out = random_split(rest, seed=seed, ratios=ratios)
    out.update({i: "test" for i, h in zip(ids, held_out) if h})
    return out
