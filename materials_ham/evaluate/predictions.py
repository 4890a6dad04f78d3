"""The predictions format: what a model hands to the scorer, written and read strictly.

A predictions store is one **Zarr v3 group** (a folder, conventionally ``*.zarr``)::

    zarr.json     group attributes:
                    format              "materials-ham-predictions"
                    format_version      1
                    dataset             the dataset's name (free text, for messages)
                    dataset_fingerprint sha256 of the dataset's manifest.json (its exact version)
                    split               the split predicted ("test", "val", ...)
                    ids                 structure ids, a JSON list of strings (storage order)
                    model               free text (optional)
                    hermitian_tolerance_ev, writer (informational)
    H/            complex128, 1-D, sharded: the predicted H blocks of every structure,
                  concatenated in the order of ``ids``
    offsets/      int64, shape (N+1,): structure k owns H[offsets[k]:offsets[k+1]]

Per structure, ``H`` holds the **canonical half** of the reference edge set (edges
e <= reverse[e], in the dataset's edge order), each block spin-major (2 n_i, 2 n_j) and
flattened row-major -- exactly the layout of the dataset's own ``H`` array (and of
:meth:`materials_ham.sample.Sample.save`).  The other half is the conjugate transpose; the
reader rebuilds the full flat array (the layout of ``Sample.H``) exactly.  Units: eV.

Ids live in the group attributes (a JSON list) rather than a string array: Zarr 3
variable-length strings are not portable across readers.

Arrays use inner chunks of :data:`CHUNK_ENTRIES` entries (1 MiB), shards of
:data:`SHARD_CHUNKS` chunks (64 MiB), each chunk ``bytes -> blosc(zstd) -> crc32c``, the shard
index with crc32c too: a flipped bit or a truncated shard is detected, never silently read.

:func:`write_predictions` is the only supported way to make one; :func:`read_predictions`
checks everything against the dataset before any large read (format/version attributes,
fingerprint, split, ids, declared array sizes, offsets) and each structure's values when it
is read (checksums, finite, Hermitian on-site blocks).  Every problem is a
:class:`~materials_ham.errors.FormatError` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..errors import FormatError, MaterialsHamError
from ..sample import Sample, gather_blocks

FORMAT = "materials-ham-predictions"
FORMAT_VERSION = 1
H_ARRAY = "H"
OFFSETS_ARRAY = "offsets"
#: Entries (complex128) per inner chunk: 1 MiB.
CHUNK_ENTRIES = 1 << 16
#: Inner chunks per shard file (64 MiB of raw data per shard).
SHARD_CHUNKS = 64
#: Largest |X_ij(R) - X_ji(-R)^dagger| (eV) accepted in a prediction; pass symmetrize=True
#: to :func:`write_predictions` to average the two halves instead.
HERMITIAN_TOLERANCE_EV = 1e-5
#: Known public dataset names (resolved by the Hub, a later release) and the environment
#: variable that points one of them at a local dataset folder meanwhile.
DATASET_NAMES = ("materials-ham-soc",)
DATASET_ENV = "MATERIALS_HAM_DATASET"


# ------------------------------------------------------------------------------ the dataset
def open_dataset(dataset):
    """A :class:`~materials_ham.store.DatasetStore` from a store, a dataset folder or a name.

    ``"materials-ham-soc"`` resolves through the environment variable ``MATERIALS_HAM_DATASET``
    (a dataset folder) until the Hub can resolve names.
    """
    from ..store import DatasetStore, open_store

    if isinstance(dataset, DatasetStore):
        return dataset
    if dataset is None:
        raise MaterialsHamError("no dataset given: pass the path of a packed dataset folder "
                                f"(or set {DATASET_ENV})")
    text = os.fspath(dataset)
    if str(text).lower() in DATASET_NAMES and not Path(text).exists():
        folder = os.environ.get(DATASET_ENV)
        if not folder:
            raise MaterialsHamError(
                f"the dataset name {text!r} cannot be resolved yet (downloading by name comes with the Hub): "
                f"pass the path of a packed dataset folder instead, or set {DATASET_ENV}=/path/to/dataset")
        return open_store(folder)
    if not Path(text).exists():
        raise MaterialsHamError(f"no such dataset folder (known names: {', '.join(DATASET_NAMES)})", subject=text)
    return open_store(text)


def dataset_fingerprint(store) -> str:
    """sha256 (hex) of the dataset's manifest.json: identifies the exact dataset version."""
    from ..store.layout import MANIFEST_FILE
    from ..store.manifest import file_sha256

    path = Path(store.root) / MANIFEST_FILE
    if not path.is_file():
        raise FormatError("the dataset has no manifest.json, so its version cannot be identified", subject=str(path))
    return file_sha256(path)


def dataset_name(store) -> str:
    return str(store.attrs.get("dataset_name") or Path(store.root).name)


def split_ids(store, split: str) -> list[str]:
    """Ids of the structures of ``split``, in storage order; a clear error for an unknown split."""
    ix = store.index
    if "split" not in ix.columns:
        raise FormatError("the dataset index has no 'split' column", subject=str(store.root))
    ids = [str(x) for x in ix.loc[ix["split"] == split, "id"]]
    if not ids:
        present = sorted({str(x) for x in ix["split"].unique()})
        raise MaterialsHamError(f"the dataset has no structure in split {split!r} (splits: {', '.join(present)})",
                                subject=str(store.root))
    return ids


def expected_half_lengths(store, ids: list[str]) -> np.ndarray:
    """(N,) number of complex entries of each structure's canonical half, from the dataset index."""
    from ..store import layout as L

    ix = store.index.set_index("id")
    rows = ix.loc[ids]
    return (rows[L.stop_column("h")].to_numpy(np.int64) - rows[L.start_column("h")].to_numpy(np.int64))


# ------------------------------------------------------------------------------ edge layout
@dataclass(frozen=True)
class EdgeLayout:
    """The flat spinor layout of one reference structure, as the predictions format needs it.

    ``offsets`` (E+1,): start of each edge's block in the full flat spinor array (Sample.H);
    ``rows``/``cols`` (E,): block shape (2 n_i, 2 n_j); ``reverse`` (E,): partner edge;
    ``canonical`` (E,) bool: e <= reverse[e] (the stored half); ``edge_index``/``edge_shift``
    for messages.
    """

    offsets: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    reverse: np.ndarray
    canonical: np.ndarray
    edge_index: np.ndarray
    edge_shift: np.ndarray

    @classmethod
    def from_sample(cls, sample: Sample) -> "EdgeLayout":
        n = sample.orbitals_per_atom
        rev = sample.edge_reverse
        return cls(offsets=4 * sample.block_offsets, rows=2 * n[sample.edge_index[:, 0]],
                   cols=2 * n[sample.edge_index[:, 1]], reverse=rev, canonical=np.arange(len(rev)) <= rev,
                   edge_index=sample.edge_index, edge_shift=sample.edge_shift)

    @property
    def n_full(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_half(self) -> int:
        return int((self.rows * self.cols)[self.canonical].sum())

    def edge_name(self, e: int) -> str:
        i, j = self.edge_index[e]
        return f"edge (i={i}, j={j}, R={tuple(int(x) for x in self.edge_shift[e])})"

    @cached_property
    def plan(self) -> "HalfPlan":
        """How the full flat array maps onto its canonical half (built once per layout)."""
        return HalfPlan.from_layout(self)

    def half(self, full: np.ndarray) -> np.ndarray:
        """The canonical half (stored layout) of a full flat spinor array."""
        return self.plan.half(full)

    def full(self, half: np.ndarray) -> np.ndarray:
        """The full flat spinor array from its canonical half (partners conjugate-transposed)."""
        return self.plan.full(half)

    def mirrored(self, full: np.ndarray) -> np.ndarray:
        """The array whose block e is block reverse[e]^dagger of ``full`` (equal to ``full`` if Hermitian)."""
        r = self.reverse
        return gather_blocks(full, self.offsets[r], self.rows[r], self.cols[r], np.ones(len(r), bool))

    def hermiticity_error(self, full: np.ndarray, edges: np.ndarray | None = None) -> tuple[float, int]:
        """(max |X_ij(R) - X_ji(-R)^dagger| in eV, worst edge) over ``edges`` (default: all)."""
        if edges is None:
            orig, mirror, which = full, self.mirrored(full), None
        else:
            edges = np.asarray(edges, np.int64)
            r = self.reverse[edges]
            orig = gather_blocks(full, self.offsets[edges], self.rows[edges], self.cols[edges],
                                 np.zeros(len(edges), bool))
            mirror = gather_blocks(full, self.offsets[r], self.rows[r], self.cols[r], np.ones(len(edges), bool))
            which = edges
        dev = np.abs(orig - mirror)
        if not dev.size:
            return 0.0, -1
        k = int(np.argmax(dev))
        if which is None:
            return float(dev[k]), int(np.searchsorted(self.offsets, k, side="right") - 1)
        local = np.concatenate([[0], np.cumsum(self.rows[which] * self.cols[which])])
        return float(dev[k]), int(which[np.searchsorted(local, k, side="right") - 1])

    @property
    def onsite_edges(self) -> np.ndarray:
        """Edges that are their own reverse (i = j, R = 0): stored whole, so checked for Hermiticity."""
        return np.nonzero(self.reverse == np.arange(len(self.reverse)))[0]


def _edge_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [a, b) of consecutive edges where ``mask`` is True."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


#: Entries per piece when two large flat arrays are compared (bounds the temporaries: 4 MiB).
_PIECE = 1 << 18


@dataclass(frozen=True)
class HalfPlan:
    """Index plan between a full flat spinor array (n_full entries, ``Sample.H`` layout) and its
    canonical half (n_half entries, the stored layout), built once per :class:`EdgeLayout`.

    ``canonical_runs``: tuples (full start, full stop, half start) of the runs of consecutive
    canonical edges (copied as slices); ``mirror_runs``: tuples (full start, full stop) of the
    runs of consecutive non-canonical edges.  Per edge e (E,): ``source`` the start in the half
    of the block e is made from (its own for a canonical edge, its partner's otherwise: H_ji(-R)
    = H_ij(R)^dagger), ``src_rows``/``src_cols`` that block's shape, ``flip`` = not canonical;
    :func:`~materials_ham.sample.gather_blocks` moves them.  ``mirror_pieces``: edge ranges
    [a, b) covering the non-canonical edges, each at most about :data:`_PIECE` entries (or one edge).
    """

    canonical_runs: tuple
    mirror_runs: tuple
    source: np.ndarray
    src_rows: np.ndarray
    src_cols: np.ndarray
    flip: np.ndarray
    mirror_pieces: tuple
    offsets: np.ndarray
    n_full: int
    n_half: int

    @classmethod
    def from_layout(cls, layout: "EdgeLayout") -> "HalfPlan":
        sizes = (layout.rows * layout.cols).astype(np.int64)
        off = np.asarray(layout.offsets, np.int64)
        canon = np.asarray(layout.canonical, bool)
        half_off = np.concatenate([[0], np.cumsum(np.where(canon, sizes, 0))])
        rev = np.asarray(layout.reverse, np.int64)
        nc = np.nonzero(~canon)[0]
        if len(nc) and not canon[rev[nc]].all():
            raise MaterialsHamError("edge reverse map is not an involution onto the canonical edges")
        part = np.where(canon, np.arange(len(canon)), rev)                 # the stored block each edge comes from
        pieces = []
        for a, b in _edge_runs(~canon):
            ends = np.cumsum(sizes[a:b])
            cuts = np.unique(np.searchsorted(ends, np.arange(_PIECE, ends[-1], _PIECE), side="right")) + a
            bounds = [a, *(int(c) for c in cuts if a < c < b), b]
            pieces += list(zip(bounds[:-1], bounds[1:]))
        return cls(canonical_runs=tuple((int(off[a]), int(off[b]), int(half_off[a])) for a, b in _edge_runs(canon)),
                   mirror_runs=tuple((int(off[a]), int(off[b])) for a, b in _edge_runs(~canon)),
                   source=half_off[part], src_rows=np.asarray(layout.rows, np.int64)[part],
                   src_cols=np.asarray(layout.cols, np.int64)[part], flip=~canon, mirror_pieces=tuple(pieces),
                   offsets=off, n_full=int(off[-1]), n_half=int(half_off[-1]))

    def nbytes(self) -> int:
        return int(self.source.nbytes + self.src_rows.nbytes + self.src_cols.nbytes + self.offsets.nbytes)

    def half(self, full: np.ndarray) -> np.ndarray:
        """(n_half,) the canonical entries of the flat ``full`` array (a copy)."""
        full = np.asarray(full)
        out = np.empty(self.n_half, full.dtype)
        for a, b, h in self.canonical_runs:
            out[h:h + b - a] = full[a:b]
        return out

    def full(self, half: np.ndarray) -> np.ndarray:
        """(n_full,) the full flat array: ``half`` on the canonical entries, conjugate-transposed
        partner blocks elsewhere (exact: values are moved and conjugated, never computed)."""
        return gather_blocks(np.asarray(half), self.source, self.src_rows, self.src_cols, self.flip)

    def is_mirrored(self, x: np.ndarray) -> bool:
        """True when every non-canonical entry of the flat ``x`` is exactly (bit for bit) the
        conjugate of its partner entry, i.e. ``full(half(x))`` would return ``x`` unchanged."""
        x = np.asarray(x)
        half = self.half(x)
        for a, b in self.mirror_pieces:
            want = gather_blocks(half, self.source[a:b], self.src_rows[a:b], self.src_cols[a:b], self.flip[a:b])
            if not np.array_equal(x[self.offsets[a]:self.offsets[b]].view(np.uint8), want.view(np.uint8)):
                return False
        return True

    def mirror_deviation(self, given: np.ndarray, full: np.ndarray) -> float:
        """max |given - full| (eV) over the non-canonical entries (0 where there are none)."""
        worst = 0.0
        for a, b in self.mirror_runs:
            for c in range(a, b, _PIECE):
                d = min(b, c + _PIECE)
                worst = max(worst, float(np.abs(given[c:d] - full[c:d]).max()))
        return worst


def check_prediction(sid: str, H, layout: EdgeLayout, *, subject: str | None = None, symmetrize: bool = False,
                     tolerance: float = HERMITIAN_TOLERANCE_EV) -> np.ndarray:
    """Check one structure's full flat predicted H (layout of ``Sample.H``); returns it as complex128.

    Refuses: a real dtype, a shape other than (n_full,), non-finite values, blocks that are not
    Hermitian partners within ``tolerance`` eV (unless ``symmetrize``: then the two halves are
    averaged).  The result is exactly Hermitian: rebuilt from its canonical half.
    """
    where = f"structure {sid!r}"
    if isinstance(H, Sample):
        raise FormatError(f"{where}: pass the flat predicted array (like Sample.H), not a Sample", subject=subject)
    arr = np.asarray(H)
    if arr.dtype.kind != "c":
        raise FormatError(f"{where}: predicted H is {arr.dtype}, expected complex128 (spinor blocks are complex; "
                          "a real prediction must still be cast, e.g. H.astype(np.complex128))", subject=subject)
    if arr.ndim != 1 or arr.size != layout.n_full:
        raise FormatError(f"{where}: predicted H has shape {arr.shape}, expected ({layout.n_full},): the flat "
                          f"(2 n_i x 2 n_j) blocks of all {len(layout.reverse)} reference edges in the dataset's edge "
                          "order (the layout of Sample.H); wrong block shapes or a different edge set",
                          subject=subject)
    arr = arr.astype(np.complex128, copy=False)
    bad = ~np.isfinite(arr) if not np.isfinite(arr.sum()) else None    # a finite sum: every value is finite
    if bad is not None and bad.any():
        k = int(np.argmax(bad))
        e = int(np.searchsorted(layout.offsets, k, side="right") - 1)
        raise FormatError(f"{where}: {int(bad.sum())} non-finite predicted value(s) (NaN/inf), first on "
                          f"{layout.edge_name(e)}", subject=subject)
    if symmetrize:
        return layout.full(layout.half(0.5 * (arr + layout.mirrored(arr))))
    canonical = layout.full(layout.half(arr))      # = arr on the stored half, the mirrored blocks elsewhere
    # Fast acceptance: the deviation is 0 on the stored half, so only the mirrored entries and the
    # on-site blocks need comparing; a refusal recomputes the worst entry below for the message.
    if max(layout.plan.mirror_deviation(arr, canonical),
           layout.hermiticity_error(arr, layout.onsite_edges)[0]) <= tolerance:
        return canonical
    dev = np.abs(arr - canonical)
    worst = float(dev.max(initial=0.0))
    k = int(np.argmax(dev)) if dev.size else 0
    e = int(np.searchsorted(layout.offsets, k, side="right") - 1)
    on_dev, on_e = layout.hermiticity_error(arr, layout.onsite_edges)
    if on_dev > worst:
        worst, e = on_dev, on_e
    if worst > tolerance:
        raise FormatError(f"{where}: predicted H is not Hermitian: |H_ij(R) - H_ji(-R)^dagger| reaches {worst:.3g} eV "
                          f"on {layout.edge_name(e)} (tolerance {tolerance:g} eV); predict one block per edge pair "
                          "or pass symmetrize=True to average the halves", subject=subject)
    return canonical


# ---------------------------------------------------------------------------------- writer
def _iter_items(predictions) -> Iterator[tuple[str, np.ndarray]]:
    if isinstance(predictions, Mapping):
        yield from ((str(k), v) for k, v in predictions.items())
        return
    for item in predictions:
        try:
            sid, H = item
        except (TypeError, ValueError):
            raise FormatError("predictions must be a mapping {id: H} or an iterable of (id, H) pairs") from None
        yield str(sid), H


class _ShardedColumn:
    """A 1-D sharded complex128/int64 array written one whole shard at a time."""

    def __init__(self, group, name: str, dtype: str, attributes: dict):
        from zarr.codecs import BloscCodec, Crc32cCodec

        self.dtype = np.dtype(dtype)
        self.shard = CHUNK_ENTRIES * SHARD_CHUNKS
        self.array = group.create_array(
            name, shape=(0,), dtype=dtype, chunks=(CHUNK_ENTRIES,), shards=(self.shard,),
            compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"), Crc32cCodec()], fill_value=0,
            chunk_key_encoding={"name": "default", "separator": "/"}, config={"write_empty_chunks": True},
            attributes=attributes)
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.written = 0

    def add(self, data: np.ndarray) -> None:
        self.pending.append(np.asarray(data, self.dtype))
        self.n_pending += len(data)
        if self.n_pending >= self.shard:
            self._flush(final=False)

    def finish(self) -> None:
        self._flush(final=True)

    def _flush(self, *, final: bool) -> None:
        data = np.concatenate(self.pending) if self.pending else np.zeros(0, self.dtype)
        n = len(data) if final else len(data) // self.shard * self.shard
        if n:
            self.array.resize((self.written + n,))
            self.array[self.written:self.written + n] = data[:n]
            self.written += n
        self.pending, self.n_pending = [data[n:]], len(data) - n


def write_predictions(path: str | os.PathLike, dataset, predictions, *, split: str = "test",
                      model: str | None = None, symmetrize: bool = False, overwrite: bool = False,
                      progress: bool = False) -> Path:
    """Write predicted Hamiltonians of every structure of ``split`` as a predictions store.

    ``dataset``: a packed dataset folder (or a :class:`~materials_ham.store.DatasetStore`, or a
    dataset name, see :func:`open_dataset`).  ``predictions``: ``{id: H}`` or an iterable of
    ``(id, H)`` (streamed: one structure in memory at a time), where ``H`` is the full flat
    complex array of predicted H blocks (eV) on **all** reference edges of that structure, in
    the layout of :attr:`materials_ham.sample.Sample.H` (e.g. ``sample.H0`` for the H0 baseline).
    Every id of the split must appear exactly once.  H must be Hermitian (X_ji(-R) =
    X_ij(R)^dagger within 1e-5 eV) unless ``symmetrize=True`` averages the two halves.
    Only the canonical half is stored.  The store is written to a temporary folder and renamed
    into place: a failure leaves nothing behind.  Returns the path.
    """
    from tqdm import tqdm
    import zarr

    store = open_dataset(dataset)
    out = Path(path)
    if out.exists() and not overwrite:
        raise MaterialsHamError("already exists (pass overwrite=True to replace it)", subject=str(out))
    wanted = split_ids(store, split)
    wanted_set = set(wanted)
    fingerprint = dataset_fingerprint(store)
    with atomic_directory(out) as tmp:
        group = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w", zarr_format=3)
        col = _ShardedColumn(group, H_ARRAY, "complex128",
                             {"unit": "eV", "description": "predicted H blocks, canonical half of the reference edges, "
                                                           "spin-major, flat; structure k owns [offsets[k], offsets[k+1])"})
        ids: list[str] = []
        offsets = [0]
        seen: set[str] = set()
        for sid, H in tqdm(_iter_items(predictions), total=len(wanted), disable=not progress, desc="writing predictions",
                           unit="structure"):
            if sid in seen:
                raise FormatError(f"structure {sid!r} is given twice")
            if sid not in wanted_set:
                raise FormatError(f"structure {sid!r} is not in split {split!r} of the dataset {dataset_name(store)!r}")
            seen.add(sid)
            layout = EdgeLayout.from_sample(store.by_id(sid, matrices=()))   # the edge layout only: no matrix read
            full = check_prediction(sid, H, layout, symmetrize=symmetrize)
            half = layout.half(full)
            col.add(half)
            ids.append(sid)
            offsets.append(offsets[-1] + len(half))
        missing = [s for s in wanted if s not in seen]
        if missing:
            raise FormatError(f"{len(missing)} structure(s) of split {split!r} have no prediction: "
                              f"{_preview(missing)}; nothing written")
        col.finish()
        off = _ShardedColumn(group, OFFSETS_ARRAY, "int64", {"description": "N+1 starts of each structure in H"})
        off.add(np.array(offsets, np.int64))
        off.finish()
        from .. import __version__

        group.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset_name(store),
            "dataset_fingerprint": fingerprint, "split": split, "ids": ids, "model": model or "",
            "n_structures": len(ids), "hermitian_tolerance_ev": HERMITIAN_TOLERANCE_EV,
            "symmetrized": bool(symmetrize), "writer": f"materials_ham {__version__}",
            "layout": "per structure: canonical half (e <= reverse[e]) of the reference edges in the dataset's edge "
                      "order, blocks (2 n_i, 2 n_j) spin-major flattened row-major, eV",
        })
    return out


def _preview(items: list[str], n: int = 5) -> str:
    head = ", ".join(repr(x) for x in items[:n])
    return head + (f", ... ({len(items)} in all)" if len(items) > n else "")


# ---------------------------------------------------------------------------------- reader
def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"{what} is missing", subject=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise FormatError(f"{what} is unreadable ({type(err).__name__}: {str(err)[:120]})", subject=str(path)) from None
    if not isinstance(data, dict):
        raise FormatError(f"{what} is not a JSON object", subject=str(path))
    return data


class PredictionsStore:
    """An opened, checked predictions store (see the module docstring); use :func:`read_predictions`.

    All metadata is checked on opening; ``read_half(id)`` / ``read_full(id, layout)`` read one
    structure (checksums, finite values, Hermitian on-site blocks checked on the way).
    """

    def __init__(self, path: str | os.PathLike, dataset, split: str | None = "test"):
        self.path = Path(path)
        self.dataset = open_dataset(dataset)
        p = self.path
        if not p.exists():
            raise FormatError("no such predictions store", subject=str(p))
        if not p.is_dir():
            raise FormatError("not a Zarr store (a file, expected a folder written by materials_ham.write_predictions)",
                              subject=str(p))
        if not (p / "zarr.json").is_file():
            raise FormatError("not a Zarr v3 store (no zarr.json; write predictions with "
                              "materials_ham.write_predictions)", subject=str(p))
        meta = _read_json(p / "zarr.json", "group metadata")
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
            raise FormatError(f"not a Zarr v3 group (zarr_format={meta.get('zarr_format')!r}, "
                              f"node_type={meta.get('node_type')!r})", subject=str(p / "zarr.json"))
        attrs = meta.get("attributes")
        if not isinstance(attrs, dict):
            raise FormatError("group has no attributes", subject=str(p / "zarr.json"))
        self.attrs = attrs
        self._check_attrs(split)
        self.ids: list[str] = list(attrs["ids"])
        self._position = {sid: k for k, sid in enumerate(self.ids)}
        self._expected = expected_half_lengths(self.dataset, self.ids)
        self._H = self._open_array(H_ARRAY, "complex128", int(self._expected.sum()))
        offsets_arr = self._open_array(OFFSETS_ARRAY, "int64", len(self.ids) + 1)
        self.offsets = self._read(offsets_arr, OFFSETS_ARRAY, 0, len(self.ids) + 1)
        self._check_offsets()

    # ------------------------------------------------------------------------------ checks
    @property
    def model(self) -> str:
        return str(self.attrs.get("model") or "")

    @property
    def split(self) -> str:
        return str(self.attrs["split"])

    def _check_attrs(self, split: str | None) -> None:
        a, where = self.attrs, str(self.path / "zarr.json")
        if a.get("format") != FORMAT:
            raise FormatError(f"not a predictions store (format attribute {a.get('format')!r}, expected {FORMAT!r})",
                              subject=where)
        if a.get("format_version") != FORMAT_VERSION:
            raise FormatError(f"unsupported predictions format_version {a.get('format_version')!r} "
                              f"(this materials_ham reads version {FORMAT_VERSION})", subject=where)
        for key in ("dataset_fingerprint", "split", "ids"):
            if key not in a:
                raise FormatError(f"attribute {key!r} is missing", subject=where)
        fp = dataset_fingerprint(self.dataset)
        if a["dataset_fingerprint"] != fp:
            raise FormatError(
                f"made for another version of the dataset: {a.get('dataset')!r} with fingerprint "
                f"{str(a['dataset_fingerprint'])[:12]}..., but {self.dataset.root} is {dataset_name(self.dataset)!r} "
                f"{fp[:12]}... (sha256 of manifest.json); predict again on this dataset version", subject=where)
        if split is not None and a["split"] != split:
            raise FormatError(f"predictions are for split {a['split']!r}, not {split!r} (score them with "
                              f"split={a['split']!r}, or predict the {split!r} structures)", subject=where)
        ids = a["ids"]
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise FormatError("attribute 'ids' must be a list of strings", subject=where)
        dupes = sorted(k for k, v in Counter(ids).items() if v > 1)
        if dupes:
            raise FormatError(f"structure id(s) listed more than once: {_preview(dupes)}", subject=where)
        wanted = split_ids(self.dataset, a["split"])
        missing = [x for x in wanted if x not in set(ids)]
        extra = [x for x in ids if x not in set(wanted)]
        if missing:
            raise FormatError(f"{len(missing)} structure(s) of split {a['split']!r} are missing: {_preview(missing)}",
                              subject=where)
        if extra:
            raise FormatError(f"{len(extra)} structure(s) not in split {a['split']!r} of the dataset: {_preview(extra)}",
                              subject=where)

    def _open_array(self, name: str, dtype: str, length: int):
        """Open array ``name`` after checking its metadata (dtype, declared shape, codecs) by hand."""
        import zarr

        meta_path = self.path / name / "zarr.json"
        meta = _read_json(meta_path, f"array {name!r} metadata")
        where = str(meta_path)
        if meta.get("node_type") != "array":
            raise FormatError(f"{name!r} is not an array", subject=where)
        if meta.get("data_type") != dtype:
            hint = " (real where complex is needed)" if dtype == "complex128" and str(meta.get("data_type")).startswith(
                ("float", "int")) else ""
            raise FormatError(f"array {name!r} has data type {meta.get('data_type')!r}, expected {dtype}{hint}",
                              subject=where)
        shape = meta.get("shape")
        if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)):
            raise FormatError(f"array {name!r} has shape {shape!r}, expected one dimension", subject=where)
        if shape[0] != length:
            raise FormatError(f"array {name!r} declares {shape[0]} entries but the dataset's reference edges of the "
                              f"{len(self.ids)} structures need exactly {length}", subject=where)
        codecs = meta.get("codecs") or []
        shard = next((c for c in codecs if isinstance(c, dict) and c.get("name") == "sharding_indexed"), None)
        inner = (shard or {}).get("configuration", {}).get("codecs", []) if shard else codecs
        if not any(isinstance(c, dict) and c.get("name") == "crc32c" for c in inner):
            raise FormatError(f"array {name!r} has no crc32c checksum codec, so damage could go unnoticed; "
                              "write predictions with materials_ham.write_predictions", subject=where)
        enc = meta.get("chunk_key_encoding") or {}
        if enc.get("name") != "default" or (enc.get("configuration") or {}).get("separator", "/") != "/":
            raise FormatError(f"array {name!r} has chunk key encoding {enc!r}, expected default with '/'", subject=where)
        try:
            arr = zarr.open_array(zarr.storage.LocalStore(self.path / name, read_only=True), mode="r", zarr_format=3)
        except Exception as err:  # noqa: BLE001 - zarr raises many types for bad metadata
            raise FormatError(f"array {name!r} metadata is invalid ({type(err).__name__}: {str(err)[:160]})",
                              subject=where) from None
        return arr

    def _check_offsets(self) -> None:
        off, where = self.offsets, str(self.path / OFFSETS_ARRAY)
        if off[0] != 0 or (np.diff(off) < 0).any():
            raise FormatError("offsets must start at 0 and never decrease", subject=where)
        lengths = np.diff(off)
        bad = np.nonzero(lengths != self._expected)[0]
        if len(bad):
            k = int(bad[0])
            raise FormatError(
                f"{len(bad)} structure(s) have the wrong number of H entries, first {self.ids[k]!r}: {int(lengths[k])} "
                f"stored, the canonical half of its reference edge set has {int(self._expected[k])} "
                "(wrong block shapes or a different edge set)", subject=where)

    # ------------------------------------------------------------------------------ reads
    def _read(self, arr, name: str, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
        from ..store.reader import read_checked

        return np.asarray(read_checked(arr, self.path, name, a, b, hint="", out=out))

    def read_half(self, sid: str) -> np.ndarray:
        """The stored canonical half of structure ``sid`` (complex128, checked finite)."""
        return self._read_half(sid)

    def _read_half(self, sid: str, scratch: bool = False) -> np.ndarray:
        """:meth:`read_half`; ``scratch``: into this thread's reusable buffer (valid until its next use)."""
        from ..store.shards import scratch as scratch_buffer

        try:
            k = self._position[sid]
        except KeyError:
            raise FormatError(f"structure {sid!r} is not in the predictions", subject=str(self.path)) from None
        a, b = int(self.offsets[k]), int(self.offsets[k + 1])
        half = self._read(self._H, H_ARRAY, a, b, out=scratch_buffer((b - a,), np.complex128) if scratch else None)
        if not np.isfinite(half.sum()):              # a finite sum: every value is finite
            bad = ~np.isfinite(half)
            raise FormatError(f"structure {sid!r}: {int(bad.sum())} non-finite predicted value(s) (NaN/inf)",
                              subject=str(self.path / H_ARRAY))
        return half

    def read_full(self, sid: str, layout: EdgeLayout, tolerance: float = HERMITIAN_TOLERANCE_EV) -> np.ndarray:
        """The full flat H of structure ``sid`` (Sample.H layout); on-site blocks must be Hermitian."""
        full = layout.full(self._read_half(sid, scratch=True))      # the half is consumed here
        dev, e = layout.hermiticity_error(full, layout.onsite_edges)
        if dev > tolerance:
            raise FormatError(f"structure {sid!r}: on-site block is not Hermitian ({dev:.3g} eV on "
                              f"{layout.edge_name(e)}, tolerance {tolerance:g} eV)", subject=str(self.path / H_ARRAY))
        return full

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


def read_predictions(path: str | os.PathLike, dataset, split: str | None = "test") -> PredictionsStore:
    """Open and check the predictions store ``path`` against ``dataset`` and ``split``.

    ``split=None`` accepts the split the store declares.  Raises :class:`FormatError` naming the
    file and the problem; see :class:`PredictionsStore`.
    """
    return PredictionsStore(path, dataset, split)

