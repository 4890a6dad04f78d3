"""The H0 baseline: predictions equal to H0, the zeroth-step Hamiltonian of each structure.

H0 is the Kohn-Sham operator on the initial density (superposed atomic densities), an input
of every model.  Its scores are the floor every model must beat.  Uses only the public API:
:func:`materials_ham.store.open_store` and :func:`materials_ham.write_predictions`.

    python -m baselines.h0 --dataset PATH --split test -o h0-test.zarr
    materials-ham evaluate h0-test.zarr --dataset PATH --split test
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

MODEL_NAME = "H0 baseline (predictions = H0, no learning)"


def predict(store, split: str = "test") -> Iterator[tuple[str, "object"]]:
    """(id, predicted H) for every structure of ``split``: the structure's own H0 (eV, Sample.H layout)."""
    ix = store.index
    for sid in ix.loc[ix["split"] == split, "id"]:
        yield str(sid), store.by_id(str(sid)).H0


def write(dataset: str | os.PathLike, out: str | os.PathLike, split: str = "test", *, overwrite: bool = False,
          progress: bool = False) -> Path:
    """Write the H0 predictions of ``split`` of the packed dataset folder ``dataset`` to ``out``."""
    from materials_ham import write_predictions
    from materials_ham.store import open_store

    store = open_store(dataset)
    return write_predictions(out, store, predict(store, split), split=split, model=MODEL_NAME, overwrite=overwrite,
                             progress=progress)
