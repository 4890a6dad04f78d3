"""Loading a dataset: :func:`load_dataset`, the map-style :class:`MaterialsHamDataset`, and PyTorch.

>>> from materials_ham import load_dataset
>>> ds = load_dataset("materials-ham-soc", split="test")        # or a folder, or "ORG/NAME"
>>> len(ds), ds[0]                                                # a Sample (H, H0 complex128; S float64)
>>> ds.index                                                      # the split's index rows (DataFrame)
>>> small = ds.filter("n_atoms <= 4").select([0, 1])
>>> ds.with_format("dict")[0]["H"].dtype                          # complex128: dict of numpy arrays
>>> loader = DataLoader(ds.torch(), batch_size=4, collate_fn=collate_graphs, num_workers=2)

Samples never go through ``datasets``' numpy/torch formatting (it casts complex128 to float32):
they are read by the store reader, bit-identical to the packed samples.

A dataset object holds only a *source* (a local folder, or a Hub repo at a commit for streaming) and
the positions of its structures; the store is opened lazily in each process, so the object pickles
cheaply and works in ``DataLoader`` worker processes.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MaterialsHamError
from .sample import Sample

FORMATS = ("sample", "dict")
LAYOUTS = ("padded", "flat")


@dataclass(frozen=True)
class LocalSource:
    """A dataset folder on the local disk (a packed dataset, or a downloaded view)."""

    path: Path

    def open(self):
        from .store import open_store

        return open_store(self.path)

    def __str__(self) -> str:
        return str(self.path)


def load_dataset(name_or_path: str | os.PathLike, split: str | None = None, *, revision: str | None = None,
                 streaming: bool = False, cache_dir: str | os.PathLike | None = None, format: str = "sample",
                 token: str | None = None, progress: bool | None = None) -> "MaterialsHamDataset":
    """Open a dataset by folder, Hub repo ``ORG/NAME`` or the name ``"materials-ham-soc"``.

    ``split``: ``"train"``, ``"val"``, ``"test"``, ... (None: every structure).  ``revision``: branch,
    tag or commit of a Hub dataset (the official name defaults to the pinned revision).
    ``streaming=False`` downloads the split's files into the cache (``cache_dir``, else
    ``$MATERIALS_HAM_CACHE``, else ``~/.cache/materials-ham``; raw files in huggingface_hub's cache),
    checked against the manifest; ``streaming=True`` reads the shards in place over ``hf://``
    (offline, a complete cached copy is used instead; a local folder is read in place either way).  ``format``: ``"sample"`` (:class:`Sample`) or
    ``"dict"`` (dict of numpy arrays, :func:`sample_arrays`).  See :mod:`materials_ham.hub`.
    """
    from . import hub

    _check_format(format)
    loc = hub.resolve(name_or_path, revision)
    if loc.is_local:
        source, info = LocalSource(loc.path), {}
    elif streaming and not hub.is_offline():
        src, loc = hub.open_streaming(loc, token=token, split=split)
        source, info = src, {"repo_id": loc.repo_id, "revision": loc.revision, "commit": src.commit}
    else:
        view = hub.cached_view(loc, split, cache_dir, token) if streaming else None
        if view is None:
            if progress is None:
                progress = _interactive()
            view = hub.download(loc, split=split, cache_dir=cache_dir, token=token, progress=progress)
        source, info = LocalSource(view.path), {"repo_id": view.repo_id, "revision": view.revision,
                                                "commit": view.commit}
    ds = MaterialsHamDataset(source, split=split, format=format, **info)
    ds.positions = _split_positions(ds)
    return ds


def _interactive() -> bool:
    import sys

    return sys.stderr.isatty()


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise MaterialsHamError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _split_positions(ds: "MaterialsHamDataset") -> np.ndarray:
    from .hub import split_rows

    return split_rows(ds.store.index, ds.split, str(ds.source))


class MaterialsHamDataset:
    """A map-style dataset: structures of one split (or a selection) of a packed dataset.

    ``len(ds)``; ``ds[i]`` (``i`` < len, negative counts from the end) -> :class:`Sample`, or with
    ``format="dict"`` a dict of numpy arrays (:func:`sample_arrays`); iteration in storage order;
    ``ds.index`` the rows of the index for these structures (DataFrame, ``ds.index.iloc[i]`` describes
    ``ds[i]``); ``select``/``filter``/``with_format`` return new datasets; ``ds.torch()`` a
    ``torch.utils.data.Dataset``.  ``repo_id``/``revision``/``commit`` say where a Hub dataset came from.
    """

    def __init__(self, source, positions: Sequence[int] | np.ndarray | None = None, *, split: str | None = None,
                 format: str = "sample", repo_id: str | None = None, revision: str | None = None,
                 commit: str | None = None):
        _check_format(format)
        self.source = source
        self.split = split
        self.format = format
        self.repo_id, self.revision, self.commit = repo_id, revision, commit
        self._store = None
        self._pid = None
        self.positions = None if positions is None else np.asarray(positions, np.int64)

    # ------------------------------------------------------------------ store (lazy, per process)
    @property
    def store(self):
        """The :class:`~materials_ham.store.DatasetStore` (opened on first use in each process)."""
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = self.source.open(), os.getpid()
        return self._store

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_store"] = state["_pid"] = None
        return state

    @property
    def path(self) -> Path | None:
        """Local folder of the data (a downloaded view), or None when streaming."""
        return getattr(self.source, "path", None)

    def _positions(self) -> np.ndarray:
        if self.positions is None:
            self.positions = np.arange(len(self.store))
        return self.positions

    def _derive(self, positions: np.ndarray, fmt: str | None = None) -> "MaterialsHamDataset":
        out = MaterialsHamDataset(self.source, positions, split=self.split, format=fmt or self.format,
                                  repo_id=self.repo_id, revision=self.revision, commit=self.commit)
        out._store, out._pid = self._store, self._pid
        return out

    # ------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._positions())

    def __getitem__(self, i: int):
        n = len(self)
        if isinstance(i, slice):
            return self.select(range(n)[i])
        if not isinstance(i, (int, np.integer)) or not -n <= int(i) < n:
            raise IndexError(f"index {i!r} out of range for a dataset of {n} structures")
        k = int(self._positions()[int(i)])
        sample = self.store.get(k)
        return sample if self.format == "sample" else sample_arrays(sample, self.store.ids[k])

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self)))

    @property
    def ids(self) -> list[str]:
        ids = self.store.ids
        return [ids[k] for k in self._positions()]

    @property
    def index(self):
        """The index rows of these structures (pandas DataFrame, renumbered 0..len-1)."""
        return self.store.index.iloc[self._positions()].reset_index(drop=True)

    def select(self, indices: Sequence[int] | np.ndarray) -> "MaterialsHamDataset":
        """The structures at ``indices`` (positions in this dataset, in the order given)."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"select: indices out of range for a dataset of {n} structures")
        return self._derive(self._positions()[idx % n if n else idx])

    def filter(self, where) -> "MaterialsHamDataset":
        """Keep the structures whose index row matches ``where``.

        ``where``: a boolean mask of length ``len(self)``; a callable taking one index row (a pandas
        Series) and returning a bool; or a ``DataFrame.query`` string such as ``"n_atoms <= 4"``.
        """
        ix = self.index
        if isinstance(where, str):
            try:
                mask = ix.eval(where)
            except Exception as err:  # noqa: BLE001 - pandas raises many types for a bad expression
                raise MaterialsHamError(f"filter expression {where!r} is invalid: {err}") from None
        elif callable(where):
            mask = np.array([bool(where(row)) for _, row in ix.iterrows()], bool)
        else:
            mask = where
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (len(self),):
            raise MaterialsHamError(f"filter: expected {len(self)} booleans, got {mask.dtype}{mask.shape}")
        return self._derive(self._positions()[mask])

    def by_id(self, structure_id: str):
        """The structure with this id (among those of this dataset)."""
        try:
            i = self.ids.index(str(structure_id))
        except ValueError:
            raise KeyError(f"no structure with id {structure_id!r} in this dataset") from None
        return self[i]

    def with_format(self, format: str) -> "MaterialsHamDataset":
        """The same structures as ``"sample"`` (:class:`Sample`) or ``"dict"`` (dict of numpy arrays)."""
        _check_format(format)
        return self._derive(self._positions(), format)

    def torch(self):
        """A ``torch.utils.data.Dataset`` of dicts of tensors (see :class:`TorchView`)."""
        return _torch_view_class()(self)

    def __repr__(self) -> str:
        where = f"{self.repo_id}@{self.commit[:12]}" if self.repo_id and self.commit else str(self.source)
        return (f"MaterialsHamDataset({where}, split={self.split!r}, {len(self)} structures, "
                f"format={self.format!r})")


# --------------------------------------------------------------------------- dict format
def sample_arrays(sample: Sample, structure_id: str | None = None) -> dict:
    """A sample as a dict of numpy arrays, dtypes as stored (units: eV, Angstrom).

    ``numbers`` int64 (n,); ``positions`` float64 (n, 3) A; ``cell`` float64 (3, 3) A (rows);
    ``pbc`` bool (3,); ``orbitals_per_atom`` int64 (n,) spatial orbitals; ``edge_index`` int64 (E, 2)
    (i, j); ``edge_shift`` int64 (E, 3) R; ``edge_reverse`` int64 (E,); ``H``, ``H0`` complex128 flat
    (sum 4 n_i n_j, spin-major blocks in edge order, row-major), eV; ``S`` float64 flat (sum n_i n_j);
    ``fermi_level``, ``n_electrons`` float64 0-d (eV, count); ``ref_kpts`` float64 (K, 3) reduced;
    ``ref_eigenvalues`` float64 (K, 2 nao) eV; ``id`` str.
    """
    c = sample.crystal
    out = {
        "numbers": c.numbers, "positions": c.positions, "cell": c.cell, "pbc": c.pbc,
        "orbitals_per_atom": sample.orbitals_per_atom,
        "edge_index": sample.edge_index, "edge_shift": sample.edge_shift, "edge_reverse": sample.edge_reverse,
        "H": sample.H, "H0": sample.H0, "S": sample.S,
        "fermi_level": np.array(sample.fermi_level, np.float64),
        "n_electrons": np.array(sample.n_electrons, np.float64),
        "ref_kpts": sample.ref_kpts, "ref_eigenvalues": sample.ref_eigenvalues,
    }
    if structure_id is not None:
        out["id"] = str(structure_id)
    return out


# -------------------------------------------------------------------------------- PyTorch
def _make_torch_view():
    import torch
    from torch.utils.data import Dataset

    class TorchView(Dataset):
        """A ``torch.utils.data.Dataset`` over a :class:`MaterialsHamDataset`: ``view[i]`` is
        :func:`sample_arrays` as tensors (``torch.from_numpy``: complex128 stays complex128, float64
        stays float64; ``id`` stays a str).  Picklable; the store opens lazily in each worker."""

        def __init__(self, dataset: MaterialsHamDataset):
            self.dataset = dataset.with_format("dict")

        def __len__(self) -> int:
            return len(self.dataset)

        def __getitem__(self, i: int) -> dict:
            return {k: (torch.from_numpy(v if v.flags.c_contiguous else v.copy(order="C"))
                        if isinstance(v, np.ndarray) else v) for k, v in self.dataset[i].items()}

    TorchView.__qualname__ = "TorchView"   # picklable as materials_ham.data.TorchView (spawned workers)
    TorchView.__module__ = __name__
    return TorchView


def _torch_view_class():
    cls = globals().get("TorchView")
    if cls is None:
        cls = globals()["TorchView"] = _make_torch_view()
    return cls


def __getattr__(name):
    """``TorchView`` is built on first use, so that importing this module does not import torch."""
    if name == "TorchView":
        return _torch_view_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def collate_graphs(batch: list[dict], layout: str = "padded") -> dict:
    """Batch structures (items of :class:`TorchView`, or :func:`sample_arrays` dicts) into graph tensors.

    Atoms are concatenated (N = sum of atoms), edges too (E = sum of edges, every edge of the full
    set, both directions), with atom indices shifted by each structure's atom offset:

    * ``numbers`` int64 (N,), ``positions`` float64 (N, 3) A, ``batch`` int64 (N,) structure of each
      atom, ``orbitals_per_atom`` int64 (N,), ``atom_ptr`` int64 (B+1,) atom offsets;
    * ``cell`` float64 (B, 3, 3), ``pbc`` bool (B, 3), ``fermi_level``, ``n_electrons`` float64 (B,),
      ``ids`` list of B str;
    * ``edge_index`` int64 (2, E): row 0 the source atom i, row 1 the target atom j (PyG convention;
      note the transpose of :attr:`Sample.edge_index`), ``edge_shift`` int64 (E, 3) lattice shift R of
      j, ``edge_vec`` float64 (E, 3) = r_j + R cell - r_i in A, ``edge_batch`` int64 (E,),
      ``edge_reverse`` int64 (E,) index of the reverse edge (j, i, -R) in the batch, ``edge_ptr`` (B+1,).

    Blocks, ``layout="padded"`` (default): M = the largest orbital count of an atom in the batch;
    ``H``, ``H0`` complex128 (E, 2, 2, M, M) with ``H[e, s, t, :n_i, :n_j]`` the spin block (s, t) of
    edge e (spin-major: s, t = up, down), eV; ``S`` float64 (E, M, M); ``block_mask`` bool (E, M, M)
    true on the n_i x n_j entries that exist (padding is zero).  ``layout="flat"``: ``H``, ``H0``
    complex128 and ``S`` float64 are the blocks concatenated in edge order (row-major; H blocks
    2 n_i x 2 n_j spin-major) with ``h_ptr``, ``s_ptr`` int64 (E+1,) offsets of each edge's block.
    Use ``functools.partial(collate_graphs, layout="flat")`` as a DataLoader ``collate_fn``.
    """
    import torch

    if layout not in LAYOUTS:
        raise MaterialsHamError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if not batch:
        raise MaterialsHamError("collate_graphs: empty batch")
    items = [{k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in b.items()} for b in batch]
    n_atoms = np.array([len(b["numbers"]) for b in items], np.int64)
    n_edges = np.array([len(b["edge_index"]) for b in items], np.int64)
    atom_ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    edge_ptr = np.concatenate([[0], np.cumsum(n_edges)])
    cat = lambda key: np.concatenate([b[key] for b in items])  # noqa: E731
    edge_vec = []
    for b in items:
        i, j = b["edge_index"][:, 0], b["edge_index"][:, 1]
        edge_vec.append(b["positions"][j] + b["edge_shift"] @ b["cell"] - b["positions"][i])
    out = {
        "numbers": cat("numbers"), "positions": cat("positions"),
        "batch": np.repeat(np.arange(len(items)), n_atoms), "orbitals_per_atom": cat("orbitals_per_atom"),
        "atom_ptr": atom_ptr,
        "cell": np.stack([b["cell"] for b in items]), "pbc": np.stack([b["pbc"] for b in items]),
        "fermi_level": np.array([np.asarray(b["fermi_level"], np.float64).reshape(()) for b in items]),
        "n_electrons": np.array([np.asarray(b["n_electrons"], np.float64).reshape(()) for b in items]),
        "edge_index": np.concatenate([b["edge_index"] + atom_ptr[k] for k, b in enumerate(items)]).T.copy(),
        "edge_shift": cat("edge_shift"), "edge_vec": np.concatenate(edge_vec),
        "edge_batch": np.repeat(np.arange(len(items)), n_edges),
        "edge_reverse": np.concatenate([b["edge_reverse"] + edge_ptr[k] for k, b in enumerate(items)]),
        "edge_ptr": edge_ptr,
    }
    if layout == "flat":
        sizes = [b["orbitals_per_atom"][b["edge_index"][:, 0]] * b["orbitals_per_atom"][b["edge_index"][:, 1]]
                 for b in items]
        s_ptr = np.concatenate([[0], np.cumsum(np.concatenate(sizes))])
        out.update(H=cat("H"), H0=cat("H0"), S=cat("S"), s_ptr=s_ptr, h_ptr=4 * s_ptr)
    else:
        m = int(max(b["orbitals_per_atom"].max() for b in items))
        e_total = int(edge_ptr[-1])
        blocks = {"H": np.zeros((e_total, 2, 2, m, m), np.complex128),
                  "H0": np.zeros((e_total, 2, 2, m, m), np.complex128),
                  "S": np.zeros((e_total, m, m), np.float64)}
        mask = np.zeros((e_total, m, m), bool)
        for k, b in enumerate(items):
            _pad_blocks(b, int(edge_ptr[k]), blocks, mask)
        out.update(blocks, block_mask=mask)
    ids = [str(b.get("id", "")) for b in items]
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
    tensors["ids"] = ids
    return tensors


def _pad_blocks(b: dict, e0: int, blocks: dict, mask: np.ndarray) -> None:
    """Write the blocks of one structure (flat, edge order) into the padded arrays from edge ``e0``.

    Vectorised per block shape (n_i, n_j): one gather per shape, about as many as pairs of elements.
    """
    n = b["orbitals_per_atom"]
    ni, nj = n[b["edge_index"][:, 0]], n[b["edge_index"][:, 1]]
    s_off = np.concatenate([[0], np.cumsum(ni * nj)])[:-1]
    shapes = np.unique(np.stack([ni, nj], axis=1), axis=0)
    for a, c in shapes.tolist():
        sel = np.nonzero((ni == a) & (nj == c))[0]
        rows = e0 + sel
        idx = s_off[sel][:, None] + np.arange(a * c)
        blocks["S"][rows, :a, :c] = b["S"][idx].reshape(-1, a, c)
        hidx = 4 * s_off[sel][:, None] + np.arange(4 * a * c)
        for name in ("H", "H0"):
            spin = b[name][hidx].reshape(-1, 2, a, 2, c).transpose(0, 1, 3, 2, 4)   # [e, s, t, mu, nu]
            blocks[name][rows, :, :, :a, :c] = spin
        mask[rows, :a, :c] = True


__all__ = ["load_dataset", "MaterialsHamDataset", "LocalSource", "collate_graphs", "sample_arrays"]  # + TorchView
