"""Random access to a packed dataset: :func:`open_store` -> :class:`DatasetStore`.

``store[k]`` reads only the rows of structure k from each array (the inner chunks that hold
them, located through the shard index) and returns the full :class:`Sample`, rebuilt from
the stored canonical half (:class:`~materials_ham.sample.HalfEdges`): bit-identical to the
packed sample.  ``store.get(k, matrices=("H", "S"))`` reads and decodes only the matrices
named (the others are None in the sample).  Rows are read by :mod:`.shards` (one ``pread``
per shard file, crc32c checked, Blosc straight into the output), Zarr being the fallback for
anything else; a sample's matrices are read and mirrored in up to ``threads`` threads.

Damage is reported as :class:`FormatError` naming the file: a missing shard file (which
Zarr alone would silently read as zeros), a truncated or altered shard (crc32c mismatch of
an inner chunk or of the shard index), a missing or unreadable ``zarr.json`` or index.
The shard files a read touches follow from the shard shape: rows [a, b) of an array with
shards of R rows live in shard files a // R .. (b - 1) // R (:func:`layout.shard_key`).
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import FormatError
from ..sample import MATRICES, Basis, Crystal, HalfEdges, Sample
from . import layout as L
from .shards import geometry, read_rows, scratch

_HINT = "run `materials-ham verify` on the dataset"
#: Default number of threads reading one sample's matrices at once (one per matrix at most).
DEFAULT_THREADS = 2


def open_store(path: str | os.PathLike, *, fs=None, threads: int | None = None) -> "DatasetStore":
    """Open the dataset directory ``path`` (holding store.zarr, index.parquet, manifest.json).

    ``fs``: an fsspec filesystem holding ``path`` (e.g. ``HfFileSystem``, to read a Hub repo in place);
    default: the local disk.  Reads and checks are the same on both.  ``threads``: how many of a
    sample's matrices (H, H0, S) are read and rebuilt at once (default: :data:`DEFAULT_THREADS`,
    at most the number of cores; 1 reads them one after the other).
    """
    return DatasetStore(path, fs=fs, threads=threads)


class DatasetStore:
    """A packed dataset: ``len(store)``, ``store[k]``, ``store.by_id(id)``, ``store.iter_split(name)``.

    ``store.index`` is the per-structure table (pandas DataFrame, storage order);
    ``store.attrs`` the group attributes (conventions, basis tables, engines, dataset metadata);
    ``store.threads`` how many matrices of one sample are read at once (see :func:`open_store`).
    Reads are thread-safe.
    """

    def __init__(self, path: str | os.PathLike, *, fs=None, threads: int | None = None):
        self.fs = fs
        self.threads = max(1, int(threads)) if threads is not None else min(DEFAULT_THREADS, os.cpu_count() or 1)
        self.root = Path(path) if fs is None else PurePosixPath(path)
        if not _is_dir(self.root, fs):
            raise FormatError("no such dataset directory", subject=str(self.root))
        self.store_dir = self.root / L.STORE_DIR
        self.index = read_index(self.root / L.INDEX_FILE, fs)
        self._group = open_group(self.store_dir, fs)
        self.attrs: dict = dict(self._group.attrs)
        version = self.attrs.get("store_format_version")
        if version != L.STORE_FORMAT_VERSION:
            raise FormatError(f"unsupported store_format_version {version!r} (expected {L.STORE_FORMAT_VERSION})",
                              subject=str(self.store_dir / "zarr.json"))
        try:
            self.basis = {int(z): Basis.from_dict(d) for z, d in self.attrs["basis"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise FormatError(f"attributes lack valid basis tables ({type(err).__name__}: {err})",
                              subject=str(self.store_dir / "zarr.json")) from None
        ix = self.index
        self._starts = ix[[L.start_column(u) for u in L.UNITS]].to_numpy(np.int64)
        self._stops = ix[[L.stop_column(u) for u in L.UNITS]].to_numpy(np.int64)
        self._scalars = ix[["fermi_level", "n_electrons"]].to_numpy(np.float64)
        self._json = ix[list(L.JSON_COLUMNS.values())].to_numpy(object)
        self.ids: list[str] = [str(x) for x in ix["id"]]
        self._position = {sid: k for k, sid in enumerate(self.ids)}
        self._arrays: dict = {}
        self._arrays_lock = threading.Lock()

    # ------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> Sample:
        return self.get(k)

    def __iter__(self) -> Iterator[Sample]:
        return (self.get(k) for k in range(len(self)))

    def get(self, k: int, matrices: Iterable[str] = MATRICES) -> Sample:
        """The structure at position ``k`` (storage order; negative counts from the end).

        ``matrices``: which of 'H', 'H0', 'S' to read (default: all three); the others are neither
        read nor decoded and are None in the returned sample (e.g. ``("H", "S")`` for scoring,
        which never needs H0).  What is read is bit-identical to a full read.
        """
        n = len(self)
        if not -n <= int(k) < n:
            raise IndexError(f"structure {k} out of range for a dataset of {n}")
        return self._load(int(k) % n, matrices)

    def by_id(self, structure_id: str, matrices: Iterable[str] = MATRICES) -> Sample:
        """The structure with id ``structure_id``; ``matrices`` as in :meth:`get`."""
        try:
            k = self._position[str(structure_id)]
        except KeyError:
            raise KeyError(f"no structure with id {structure_id!r} in {self.root}") from None
        return self._load(k, matrices)

    def iter_split(self, split: str, matrices: Iterable[str] = MATRICES) -> Iterator[Sample]:
        """The structures of ``split`` ('train', 'val', 'test', ...), in storage order; ``matrices``
        as in :meth:`get`."""
        if "split" not in self.index.columns:
            raise FormatError("the index has no 'split' column", subject=str(self.root / L.INDEX_FILE))
        for k in np.nonzero((self.index["split"] == split).to_numpy())[0]:
            yield self._load(int(k), matrices)

    # ---------------------------------------------------------------------------- internals
    def _span(self, k: int, name: str) -> tuple[int, int]:
        """Rows [a, b) of array ``name`` that hold structure k."""
        unit = L.ARRAYS[name].unit
        if unit == "structure":
            return k, k + 1
        u = L.UNITS.index(unit)
        return int(self._starts[k, u]), int(self._stops[k, u])

    def _rows_of(self, k: int, name: str) -> np.ndarray:
        """Structure k's part of array ``name`` (its rows; for per-structure arrays, its one row)."""
        rows = self.read_rows(name, *self._span(k, name))
        return rows[0] if L.ARRAYS[name].unit == "structure" else rows

    def _load(self, k: int, matrices: Iterable[str] = MATRICES) -> Sample:
        """Structure k: the small arrays, then each wanted matrix read and mirrored (:meth:`_matrix`),
        in parallel threads when more than one is wanted (decoding and copying release the GIL)."""
        wanted = _wanted(matrices)
        a = {name: self._rows_of(k, name) for name in L.ARRAYS if name not in MATRICES}
        crystal = Crystal(a["numbers"], a["positions"], a["cell"], a["pbc"])
        try:
            basis = {int(z): self.basis[int(z)] for z in np.unique(a["numbers"])}
        except KeyError as err:
            raise FormatError(f"no basis table for Z={err.args[0]} in the attributes",
                              subject=str(self.store_dir / "zarr.json")) from None
        engine, provenance, info = (json.loads(x) for x in self._json[k])
        edges = self._guard(k, HalfEdges.build, crystal, basis, a["edge_index"], a["edge_shift"])
        if len(wanted) > 1 and self.threads > 1:
            full = self._read_parallel(k, wanted, edges)
        else:
            full = {name: self._matrix(k, name, edges) for name in wanted}
        return self._guard(k, Sample, crystal=crystal, basis=basis, edge_index=edges.edge_index,
                           edge_shift=edges.edge_shift, edge_reverse=edges.edge_reverse,
                           **{name: full.get(name) for name in MATRICES}, fermi_level=self._scalars[k, 0],
                           n_electrons=self._scalars[k, 1], ref_kpts=a["ref_kpts"],
                           ref_eigenvalues=a["ref_eigenvalues"], engine=engine, provenance=provenance, info=info)

    def _read_parallel(self, k: int, wanted: tuple[str, ...], edges: HalfEdges) -> dict[str, np.ndarray]:
        """{name: :meth:`_matrix`} with up to ``self.threads`` matrices in flight at once (the
        largest first, so that the last one to start is the smallest)."""
        order = sorted(wanted, key=lambda m: -edges.half_size(m))
        gate = threading.Semaphore(self.threads)

        def one(name):
            with gate:
                return self._matrix(k, name, edges)
        futures = {name: _pool().submit(one, name) for name in order}
        return {name: futures[name].result() for name in wanted}

    def _matrix(self, k: int, name: str, edges: HalfEdges) -> np.ndarray:
        """Matrix ``name`` of structure k over its full edge list: the stored half, decoded into
        this thread's scratch buffer (consumed at once), then mirrored into a new array."""
        spec = L.ARRAYS[name]
        a, b = self._span(k, name)
        half = self.read_rows(name, a, b, out=scratch((b - a, *spec.tail), spec.dtype))
        return self._guard(k, edges.full, name, half)

    def _guard(self, k: int, build, *args, **kwargs):
        """``build(*args, **kwargs)``, its :class:`FormatError` naming structure k and the dataset."""
        try:
            return build(*args, **kwargs)
        except FormatError as err:
            raise FormatError(f"structure {self.ids[k]!r} is inconsistent: {err}", subject=str(self.root)) from None

    def array(self, name: str):
        """The Zarr array ``name`` of store.zarr (opened once, checked against the layout)."""
        with self._arrays_lock:              # threads read different arrays of one store at once
            if name not in self._arrays:
                self._arrays[name] = open_array(self._group, self.store_dir, name, fs=self.fs)
            return self._arrays[name]

    def read_rows(self, name: str, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows [a, b) of array ``name`` (into ``out`` if given, see :func:`read_checked`); damage
        is a :class:`FormatError` naming the shard file."""
        arr = self.array(name)
        if not 0 <= a <= b <= arr.shape[0]:
            raise FormatError(f"offsets [{a}, {b}) of array {name} lie outside its {arr.shape[0]} rows",
                              subject=str(self.root / L.INDEX_FILE))
        return read_checked(arr, self.store_dir, name, a, b, fs=self.fs, out=out)


def _wanted(matrices: Iterable[str]) -> tuple[str, ...]:
    """The requested matrices in :data:`MATRICES` order; ValueError for an unknown name."""
    names = [matrices] if isinstance(matrices, str) else list(matrices)
    unknown = sorted(set(names) - set(MATRICES))
    if unknown:
        raise ValueError(f"unknown matrix name(s) {unknown}: choose among {list(MATRICES)}")
    return tuple(m for m in MATRICES if m in names)


_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The process-wide pool (one thread per matrix) that reads the matrices of a sample; made
    again in a forked child, which inherits no threads."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(len(MATRICES), thread_name_prefix="materials-ham-read"))
        return _POOL[1]


# ----------------------------------------------------------------------- checked primitives
def _is_dir(path, fs) -> bool:
    return path.is_dir() if fs is None else fs.isdir(str(path))


def _is_file(path, fs) -> bool:
    return path.is_file() if fs is None else fs.isfile(str(path))


def read_index(path: Path, fs=None):
    """index.parquet as a DataFrame, with the columns the reader needs."""
    import pandas as pd

    if not _is_file(path, fs):
        raise FormatError("index is missing", subject=str(path))
    try:
        df = pd.read_parquet(path) if fs is None else pd.read_parquet(str(path), filesystem=fs)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        raise FormatError(f"index is unreadable ({type(err).__name__}: {err})", subject=str(path)) from None
    need = ["id", "fermi_level", "n_electrons", *L.JSON_COLUMNS.values(),
            *(c for u in L.UNITS for c in (L.start_column(u), L.stop_column(u)))]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise FormatError(f"index lacks column(s) {missing}", subject=str(path))
    return df


def open_group(store_dir: Path, fs=None):
    import zarr

    meta = store_dir / "zarr.json"
    if not _is_file(meta, fs):
        raise FormatError("zarr group metadata is missing", subject=str(meta))
    try:
        if fs is None:
            store = zarr.storage.LocalStore(store_dir, read_only=True)
        else:  # zarr needs an async filesystem: wrap a synchronous one (HfFileSystem)
            from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

            afs = fs if fs.async_impl else AsyncFileSystemWrapper(fs, asynchronous=True)
            store = zarr.storage.FsspecStore(afs, path=str(store_dir), read_only=True)
        return zarr.open_group(store, mode="r", zarr_format=3)
    except Exception as err:  # noqa: BLE001 - JSON/metadata errors of several types
        raise FormatError(f"zarr group metadata is unreadable ({type(err).__name__}: {err})",
                          subject=str(meta)) from None


def open_array(group, store_dir: Path, name: str, fs=None):
    """Array ``name`` of the group, checked against :data:`layout.ARRAYS` (dtype, trailing shape)."""
    spec = L.OFFSETS_SPEC if name == L.OFFSETS_ARRAY else L.ARRAYS[name]
    meta = store_dir / name / "zarr.json"
    if not _is_file(meta, fs):
        raise FormatError(f"array {name!r} is missing", subject=str(meta))
    try:
        arr = group[name]
    except Exception as err:  # noqa: BLE001
        raise FormatError(f"array metadata is unreadable ({type(err).__name__}: {err})", subject=str(meta)) from None
    if arr.dtype != np.dtype(spec.dtype) or tuple(arr.shape[1:]) != spec.tail or arr.shards is None:
        raise FormatError(f"array {name!r} is {arr.dtype}{arr.shape} (shards {arr.shards}); "
                          f"expected sharded {spec.dtype} (*, {spec.tail})", subject=str(meta))
    return arr


def shard_files(arr, store_dir: Path, name: str, a: int, b: int) -> list[tuple[Path, int, int]]:
    """(file, first row, stop row) of each shard (or chunk, if unsharded) holding rows [a, b) of ``arr``."""
    rows = (arr.shards or arr.chunks)[0]
    return [(store_dir / L.shard_key(name, s, arr.ndim), max(a, s * rows), min(b, (s + 1) * rows))
            for s in range(a // rows, (b - 1) // rows + 1)] if b > a else []


def check_shard_file(path: Path, fs=None, hint: str = _HINT) -> None:
    """Zarr reads a missing or empty shard file as fill values (zeros): refuse both."""
    tail = f"; {hint}" if hint else ""
    try:
        empty = (os.stat(path).st_size if fs is None else fs.size(str(path))) == 0
    except FileNotFoundError:
        raise FormatError(f"shard file is missing{tail}", subject=str(path)) from None
    if empty:
        raise FormatError(f"shard file is empty (truncated){tail}", subject=str(path))


def read_checked(arr, store_dir: Path, name: str, a: int, b: int, fs=None, hint: str = _HINT,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``arr[a:b]``, or a :class:`FormatError` naming the shard file that is missing or damaged.

    ``store_dir`` is the Zarr group folder holding array ``name``; ``hint`` ends the message.
    ``out``: an array of the result's shape and dtype to fill and return (e.g. a reused
    :func:`~materials_ham.store.shards.scratch` buffer), else a new array."""
    shards = shard_files(arr, store_dir, name, a, b)
    for path, _, _ in shards:
        check_shard_file(path, fs, hint)
    if fs is None and 0 <= a < b <= arr.shape[0]:     # the direct path; None: read (and report) through Zarr
        geo = geometry(arr)
        got = read_rows(geo, shards, a, b, out) if geo is not None else None
        if got is not None:
            return got
    try:
        got = arr[a:b]
        if len(got) == b - a:
            if out is None:
                return got
            out[...] = got
            return out
        err: Exception = ValueError(f"got {len(got)} rows instead of {b - a}")
    except Exception as e:  # noqa: BLE001 - codecs raise ValueError/RuntimeError/OSError...; mapped below
        err = e
    culprit = [str(p) for p, _, _ in shards]
    for path, lo, hi in shards if len(shards) > 1 else ():
        try:
            arr[lo:hi]
        except Exception:  # noqa: BLE001
            culprit = [str(path)]
            break
    reason = "checksum mismatch" if "checksum" in str(err).lower() else f"{type(err).__name__}: {str(err)[:200]}"
    raise FormatError(f"shard is truncated or corrupt ({reason})" + (f"; {hint}" if hint else ""),
                      subject=", ".join(culprit))
