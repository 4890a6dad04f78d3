"""Training structures drawn from more than one packed dataset.

``TrainingSet.open(dataset, extra)``: the training split of ``dataset`` plus the training split of
each extra dataset (``extra``: folders or names, e.g. a supplement generated with the same
pipeline to cover elements the main training split has once or never).  Before anything is
trained, each extra dataset is checked against the main one, and a clear
:class:`~materials_ham.MaterialsHamError` names the dataset and the problem when

* it was computed with another engine, engine version or engine settings (its H, H0 and S would
  not be the same functional of the structure: mixing them teaches the model two answers);
* a shared element has another basis (the orbital layout would differ);
* one of its structures is a validation or test structure of the main dataset: the same id, or a
  structure ``materials_ham.structures.equivalents`` finds equivalent (a leak into the scored splits).

:func:`check_prior_training` applies the same leak check to the datasets a starting checkpoint
(``--init``, fine-tuning) was trained on.

Only the public API of :mod:`materials_ham` is used.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from materials_ham import MaterialsHamError, load_dataset


def _engines(store) -> list[str]:
    """The engine name, version and settings a dataset was computed with (from its attributes)."""
    raw = store.attrs.get("engines", "[]")
    engines = json.loads(raw) if isinstance(raw, str) else raw
    return sorted((json.dumps(e, sort_keys=True) for e in engines))


def _structures(ds) -> dict:
    """{id: pymatgen Structure} of a dataset's structures (no matrix is read)."""
    from materials_ham.structures import pymatgen_structure

    return {sid: pymatgen_structure(ds.store.by_id(sid, matrices=()).crystal) for sid in ds.ids}


def check_compatible(main, extra, name: str) -> None:
    """Raise unless ``extra`` (a dataset) shares ``main``'s engine settings and basis tables."""
    a, b = _engines(main.store), _engines(extra.store)
    if not b or not set(b) <= set(a):
        raise MaterialsHamError(f"extra training dataset {name}: computed with other engine settings than the main "
                                f"dataset ({'; '.join(b) or 'none recorded'} against {'; '.join(a) or 'none recorded'})")
    for z, basis in extra.store.basis.items():
        mine = main.store.basis.get(z)
        if mine is not None and mine.to_dict() != basis.to_dict():
            raise MaterialsHamError(f"extra training dataset {name}: the basis of Z={z} differs from the main dataset's "
                                    f"({basis.to_dict()} against {mine.to_dict()})")


def check_disjoint(held_out, extra, name: str) -> None:
    """Raise if a structure of ``extra`` is one of ``held_out`` (same id, or equivalent structure)."""
    from materials_ham.structures import equivalents

    same_id = sorted(set(extra.ids) & set(held_out.ids))
    if same_id:
        raise MaterialsHamError(f"extra training dataset {name}: {len(same_id)} structure(s) are validation or test "
                                f"structures of the main dataset ({', '.join(same_id[:5])})")
    split = dict(zip(held_out.ids, held_out.index["split"]))
    same = equivalents(_structures(extra), _structures(held_out))
    if same:
        sid, other = next(iter(same.items()))
        raise MaterialsHamError(f"extra training dataset {name}: structure {sid} is equivalent to "
                                f"{other}, a {split[other]} structure of the main dataset")


def check_prior_training(dataset, names: Sequence, *, split: str = "train",
                         held_out: Sequence[str] = ("val", "test")) -> list[str]:
    """Check the data a starting checkpoint was trained on (``names``: packed datasets, their
    ``split`` structures) against the validation and test structures of ``dataset``, as
    :func:`check_disjoint` does for ``--extra-train``.  Returns the names that could not be opened
    (not checked); ``dataset`` itself is skipped (its training split is disjoint by construction)."""
    from pathlib import Path

    whole = load_dataset(dataset)
    kept = whole.filter(whole.index["split"].isin(list(held_out)).to_numpy())
    unchecked = []
    for name in names:
        if Path(str(name)).resolve() == Path(str(dataset)).resolve():
            continue
        try:
            ds = load_dataset(name, split=split)
        except MaterialsHamError:
            unchecked.append(str(name))
            continue
        check_disjoint(kept, ds, f"{name} (trained on by the starting checkpoint)")
    return unchecked


class TrainingSet:
    """The concatenation of training splits: ``len``, ``ids``, ``ts[k]`` -> Sample, ``basis``
    (every element's :class:`~materials_ham.Basis` over all parts) and ``sources`` (one line per part)."""

    def __init__(self, parts: Sequence, names: Sequence[str]):
        self.parts, self.names = list(parts), list(names)
        self._ids = [i for p in self.parts for i in p.ids]
        self._where = [(j, k) for j, p in enumerate(self.parts) for k in range(len(p))]

    @classmethod
    def open(cls, dataset, extra: Sequence = (), *, split: str = "train", held_out: Sequence[str] = ("val", "test"),
             max_structures: int = 0) -> "TrainingSet":
        main = load_dataset(dataset, split=split)
        if max_structures:
            main = main.select(np.arange(min(max_structures, len(main))))
        parts, names = [main], [str(dataset)]
        if extra:
            whole = load_dataset(dataset)
            kept = whole.filter(whole.index["split"].isin(list(held_out)).to_numpy())
            for name in extra:
                ds = load_dataset(name, split=split)
                check_compatible(whole, ds, str(name))
                check_disjoint(kept, ds, str(name))
                twice = sorted(set(ds.ids) & {i for p in parts for i in p.ids})
                if twice:
                    raise MaterialsHamError(f"extra training dataset {name}: {len(twice)} structure(s) are already "
                                            f"training structures ({', '.join(twice[:5])})")
                parts.append(ds)
                names.append(str(name))
        return cls(parts, names)

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, k: int):
        j, i = self._where[k]
        return self.parts[j][i]

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def basis(self) -> dict:
        out = {}
        for p in self.parts:
            out.update(p.store.basis)
        return out

    @property
    def sources(self) -> list[str]:
        return [f"{n}: {len(p)} structures" for n, p in zip(self.names, self.parts)]
