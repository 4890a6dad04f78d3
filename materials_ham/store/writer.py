"""Write a dataset directory (store.zarr + index.parquet + manifest.json) from samples.

:func:`write_store` streams the samples: each array is buffered only up to one shard
(~``shard_mib`` MiB) and written shard by shard, so a shard file is written once, whole.
Everything goes to a temporary directory beside ``out_dir``, renamed into place at the end:
a failure never leaves a half-written dataset.  See :mod:`materials_ham.store.layout`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..conventions import conventions_dict
from ..atomic import atomic_directory
from ..errors import FormatError, MaterialsHamError
from ..sample import Sample
from . import layout as L
from .manifest import build_manifest

#: Group attributes set by the writer; caller ``attrs`` may not override them.
RESERVED_ATTRS = ("store_format_version", "conventions", "basis", "engines", "block_drop_threshold",
                  "n_structures", "layout")


def write_store(out_dir: str | os.PathLike, items: Iterable[tuple[Sample, dict]], *, attrs: dict,
                shard_mib: float = L.DEFAULT_SHARD_MIB, progress: bool = True, overwrite: bool = False) -> Path:
    """Pack ``(sample, row)`` pairs into the dataset directory ``out_dir``; returns its path.

    ``row`` holds the catalog fields of the structure (``id`` required and unique; formula,
    elements, n_atoms, spacegroup, ..., ``val_<check>`` numbers, seconds_total, peak_rss_mib);
    they become the columns of ``index.parquet`` beside the computed ones (n_edges, n_edges_stored,
    nao, fermi_level, n_electrons, engine/provenance/info as JSON, raw_bytes, offsets).
    ``attrs`` (dataset name, version, ...) are added to the group attributes.  Each sample
    must be exactly Hermitian with its edges sorted as :meth:`Sample.from_blocks` sorts them
    (what the engine and :func:`load_sample` give), so that storing half the edges is lossless;
    anything else is refused.  Memory: each array buffers up to one shard, so the peak is a few
    times ``shard_mib`` for each of H, H0 (and less for S) on top of the current sample.
    """
    clash = sorted(set(attrs) & set(RESERVED_ATTRS))
    if clash:
        raise ValueError(f"attrs may not set the writer's own keys {clash}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise MaterialsHamError("already exists (pass overwrite=True to replace it)", subject=str(out))
    with atomic_directory(out) as tmp:
        _write(tmp, items, attrs, shard_mib, progress)
        build_manifest(tmp)
    return out


class _Column:
    """One sharded array, appended to along axis 0 and written a whole shard at a time."""

    def __init__(self, group, name: str, spec: L.ArraySpec, shard_mib: float):
        from zarr.codecs import BloscCodec, Crc32cCodec

        chunks, shards = L.chunking(spec, shard_mib)
        self.tail, self.shard_rows, self.written = spec.tail, shards[0], 0
        self.dtype = np.dtype(spec.dtype)
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.array = group.create_array(
            name, shape=(0, *spec.tail), dtype=spec.dtype, chunks=chunks, shards=shards,
            compressors=[BloscCodec(**L.BLOSC), Crc32cCodec()], fill_value=0,
            chunk_key_encoding={"name": "default", "separator": "/"},
            config={"write_empty_chunks": True}, attributes={"unit": spec.unit, "description": spec.doc})

    def add(self, data: np.ndarray) -> None:
        data = np.asarray(data)
        if data.dtype != self.dtype or data.shape[1:] != self.tail:
            raise FormatError(f"array {self.array.basename}: got {data.dtype}{data.shape}, "
                              f"expected {self.dtype} (*, {self.tail})")
        self.pending.append(data)
        self.n_pending += len(data)
        if self.n_pending >= self.shard_rows:
            self._flush(final=False)

    def finish(self) -> None:
        self._flush(final=True)

    def _flush(self, *, final: bool) -> None:
        data = np.concatenate(self.pending) if self.pending else np.zeros((0, *self.tail), self.dtype)
        n = len(data) if final else len(data) // self.shard_rows * self.shard_rows
        if n:
            self.array.resize((self.written + n, *self.tail))
            self.array[self.written:self.written + n] = data[:n]
            self.written += n
        self.pending, self.n_pending = [data[n:]], len(data) - n


def half_arrays(sample: Sample) -> dict[str, np.ndarray]:
    """The rows each array of the store gets from ``sample`` (canonical half of the edges)."""
    keep = sample.canonical_edges()
    mask = np.zeros(sample.n_edges, bool)
    mask[keep] = True
    sizes = sample.block_sizes
    c = sample.crystal
    return {
        "numbers": c.numbers, "positions": c.positions, "cell": c.cell[None], "pbc": c.pbc[None],
        "edge_index": sample.edge_index[keep], "edge_shift": sample.edge_shift[keep],
        "H": sample.H[np.repeat(mask, 4 * sizes)], "H0": sample.H0[np.repeat(mask, 4 * sizes)],
        "S": sample.S[np.repeat(mask, sizes)],
        "ref_kpts": sample.ref_kpts, "ref_eigenvalues": sample.ref_eigenvalues.reshape(-1),
    }


def _check_lossless(sample: Sample, half: dict[str, np.ndarray], subject: str) -> None:
    """Refuse a sample that the stored half would not reproduce exactly."""
    rebuilt = Sample.from_half(sample.crystal, sample.basis, half["edge_index"], half["edge_shift"],
                               half["H"], half["H0"], half["S"], fermi_level=0.0, n_electrons=0.0,
                               ref_kpts=sample.ref_kpts, ref_eigenvalues=sample.ref_eigenvalues)
    for name in ("edge_index", "edge_shift", "edge_reverse", "H", "H0", "S"):
        if not np.array_equal(getattr(rebuilt, name), getattr(sample, name)):
            raise FormatError(f"the canonical half of the edges does not reproduce {name} exactly: the sample is "
                              "not exactly Hermitian or its edges are not sorted by (i, j, R) "
                              "(build it with Sample.from_blocks and call symmetrize())", subject=subject)


def _index_row(sample: Sample, row: dict, counts: dict[str, int], starts: dict[str, int]) -> dict:
    computed = {
        "n_atoms": sample.n_atoms, "n_edges": sample.n_edges, "n_edges_stored": counts["edge"],
        "nao": sample.nao, "fermi_level": sample.fermi_level, "n_electrons": sample.n_electrons,
        **{col: json.dumps(getattr(sample, key)) for key, col in L.JSON_COLUMNS.items()},
        "raw_bytes": int(sample.block_sizes.sum()) * (2 * 4 * 16 + 8),
        **{L.start_column(u): starts[u] for u in L.UNITS},
        **{L.stop_column(u): starts[u] + counts[u] for u in L.UNITS},
    }
    for key, value in computed.items():
        if key in row and row[key] != value:
            raise FormatError(f"row field {key}={row[key]!r} disagrees with the sample ({value!r})",
                              subject=str(row["id"]))
    return {**row, **computed}


def _write(root: Path, items, attrs: dict, shard_mib: float, progress: bool) -> None:
    import zarr
    from tqdm import tqdm

    group = zarr.open_group(zarr.storage.LocalStore(root / L.STORE_DIR), mode="w", zarr_format=3)
    columns = {name: _Column(group, name, spec, shard_mib) for name, spec in L.ARRAYS.items()}
    unit_array = {spec.unit: name for name, spec in reversed(L.ARRAYS.items())}  # an array of each unit
    starts = dict.fromkeys(L.UNITS, 0)
    rows, ids, basis, engines = [], set(), {}, []
    for sample, row in tqdm(items, disable=not progress, desc="writing store", unit="structure"):
        if "id" not in row:
            raise FormatError("every row needs an 'id'")
        sid = str(row["id"])
        if sid in ids:
            raise FormatError("duplicate structure id", subject=sid)
        ids.add(sid)
        if set(sample.basis) != {int(z) for z in sample.crystal.numbers}:
            raise FormatError(f"basis given for Z={sorted(sample.basis)} but the structure has "
                              f"Z={sorted({int(z) for z in sample.crystal.numbers})}", subject=sid)
        for z, b in sample.basis.items():
            if basis.setdefault(z, b) != b:
                raise FormatError(f"basis of Z={z} differs from an earlier structure's: "
                                  f"{b.to_dict()} vs {basis[z].to_dict()}", subject=sid)
        eng = {k: sample.engine[k] for k in ("name", "version", "settings") if k in sample.engine}
        if eng not in engines:
            engines.append(eng)
        half = half_arrays(sample)
        _check_lossless(sample, half, sid)
        counts = {u: len(half[unit_array[u]]) for u in L.UNITS}
        rows.append(_index_row(sample, {**row, "id": sid}, counts, starts))
        for name, data in half.items():
            columns[name].add(data)
        for u in L.UNITS:
            starts[u] += counts[u]
    if not rows:
        raise FormatError("no structures to write")
    for col in columns.values():
        col.finish()
    offsets = np.array([[r[L.start_column(u)] for u in L.UNITS] for r in rows] + [[starts[u] for u in L.UNITS]],
                       np.int64)
    off = _Column(group, L.OFFSETS_ARRAY, L.OFFSETS_SPEC, shard_mib)
    off.array.attrs["columns"] = list(L.UNITS)
    off.add(offsets)
    off.finish()
    group.attrs.update({
        "store_format_version": L.STORE_FORMAT_VERSION,
        "conventions": conventions_dict(),
        "basis": {str(z): b.to_dict() for z, b in sorted(basis.items())},
        "engines": engines,
        "block_drop_threshold": L.BLOCK_DROP_THRESHOLD,
        "n_structures": len(rows),
        "layout": {"units": list(L.UNITS), "index": L.INDEX_FILE, "manifest": L.MANIFEST_FILE,
                   "arrays": {n: {"unit": s.unit, "description": s.doc} for n, s in L.ARRAYS.items()},
                   "edges": "canonical half (e <= reverse[e]); the reverse half is the exact conjugate transpose"},
        **attrs,
    })
    _write_index(root / L.INDEX_FILE, rows)


def _write_index(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = list(dict.fromkeys(k for r in rows for k in r))
    try:
        table = pa.table({k: [_plain(r.get(k)) for r in rows] for k in keys})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise FormatError(f"catalog rows do not form a table: {err}") from None
    pq.write_table(table, path)


def _plain(value):
    """numpy scalars/arrays to Python values for Arrow."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
