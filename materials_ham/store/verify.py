"""Check a packed dataset: manifest, Zarr metadata, index and offsets, optionally every shard.

:func:`verify_dataset` never raises on damage: it returns a :class:`VerifyReport` listing each
problem, prefixed by the path of the offending file.  Default checks read the metadata, the
index and hash every file (sha256, against the manifest); ``deep=True`` also decodes every
shard, which checks the crc32c of every inner chunk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..sample import Basis
from . import layout as L
from .manifest import verify_manifest
from .reader import check_shard_file, open_array, open_group, read_checked, read_index, shard_files


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_dataset`: ``problems`` (each naming a file); ``ok`` if there are none."""

    path: Path
    problems: list[str] = field(default_factory=list)
    n_structures: int = 0
    deep: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.path}: {'OK' if self.ok else f'{len(self.problems)} problem(s)'} " \
               f"({self.n_structures} structures, {'deep' if self.deep else 'fast'} check)"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def verify_dataset(path: str | os.PathLike, *, deep: bool = False, hashes: bool = True) -> VerifyReport:
    """Verify the dataset directory ``path``; see the module docstring for what is checked."""
    root = Path(path)
    report = VerifyReport(root, deep=deep)
    if not root.is_dir():
        report.problems.append(f"{root}: no such dataset directory")
        return report
    report.problems += verify_manifest(root, hashes=hashes)
    store_dir = root / L.STORE_DIR
    try:
        index = read_index(root / L.INDEX_FILE)
        group = open_group(store_dir)
    except FormatError as err:
        report.problems.append(str(err))
        return report
    n = report.n_structures = len(index)
    report.problems += _check_attrs(dict(group.attrs), n, store_dir / "zarr.json")
    report.problems += _check_index(index, root / L.INDEX_FILE)
    arrays = {}
    for name in (*L.ARRAYS, L.OFFSETS_ARRAY):
        try:
            arrays[name] = open_array(group, store_dir, name)
        except FormatError as err:
            report.problems.append(str(err))
    totals = {u: int(index[L.stop_column(u)].iloc[-1]) if n else 0 for u in L.UNITS}
    for name, arr in arrays.items():
        unit = L.OFFSETS_SPEC.unit if name == L.OFFSETS_ARRAY else L.ARRAYS[name].unit
        want = {"structure": n, "structure+1": n + 1}[unit] if unit.startswith("structure") else totals[unit]
        if arr.shape[0] != want:
            report.problems.append(f"{store_dir / name / 'zarr.json'}: {arr.shape[0]} rows, the index implies {want}")
            continue
        for shard, lo, hi in shard_files(arr, store_dir, name, 0, arr.shape[0]):
            try:
                check_shard_file(shard)
                if deep:
                    read_checked(arr, store_dir, name, lo, hi)
            except FormatError as err:
                report.problems.append(str(err))
    off = arrays.get(L.OFFSETS_ARRAY)
    if off is not None and off.shape[0] == n + 1:
        try:
            stored = read_checked(off, store_dir, L.OFFSETS_ARRAY, 0, n + 1)
            starts = index[[L.start_column(u) for u in L.UNITS]].to_numpy(np.int64)
            if not np.array_equal(stored, np.vstack([starts, [[totals[u] for u in L.UNITS]]])):
                report.problems.append(f"{store_dir / L.OFFSETS_ARRAY}: offsets differ from those of the index")
        except FormatError as err:
            report.problems.append(str(err))
    return report


def _check_attrs(attrs: dict, n: int, where: Path) -> list[str]:
    problems = []
    if attrs.get("store_format_version") != L.STORE_FORMAT_VERSION:
        problems.append(f"{where}: store_format_version is {attrs.get('store_format_version')!r}, "
                        f"expected {L.STORE_FORMAT_VERSION}")
    if not isinstance(attrs.get("conventions"), dict) or "version" not in attrs["conventions"]:
        problems.append(f"{where}: attributes lack the conventions")
    try:
        for d in attrs["basis"].values():
            Basis.from_dict(d)
        if not attrs["basis"]:
            raise ValueError("empty")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        problems.append(f"{where}: attributes lack valid basis tables ({type(err).__name__}: {err})")
    if attrs.get("n_structures") != n:
        problems.append(f"{where}: n_structures is {attrs.get('n_structures')!r} but the index has {n} rows")
    return problems


def _check_index(index, where: Path) -> list[str]:
    problems = []
    ids = index["id"].astype(str)
    if ids.duplicated().any():
        problems.append(f"{where}: duplicate ids {sorted(set(ids[ids.duplicated()]))[:5]}")
    for u in L.UNITS:
        start = index[L.start_column(u)].to_numpy(np.int64)
        stop = index[L.stop_column(u)].to_numpy(np.int64)
        if len(start) and (start[0] != 0 or (stop < start).any() or (start[1:] != stop[:-1]).any()):
            problems.append(f"{where}: {u} offsets are not contiguous from 0")
    checks = {"n_atoms": ("atom", 1), "n_edges_stored": ("edge", 1)}
    for col, (u, f) in checks.items():
        if col in index.columns:
            count = index[L.stop_column(u)] - index[L.start_column(u)]
            if not (count == f * index[col]).all():
                problems.append(f"{where}: column {col} disagrees with the {u} offsets")
    s = index[L.stop_column("s")] - index[L.start_column("s")]
    h = index[L.stop_column("h")] - index[L.start_column("h")]
    if not (h == 4 * s).all():
        problems.append(f"{where}: H entries are not 4x the S entries (spinor blocks)")
    if "nao" in index.columns:
        kpt = index[L.stop_column("kpt")] - index[L.start_column("kpt")]
        eig = index[L.stop_column("eig")] - index[L.start_column("eig")]
        if not (eig == kpt * 2 * index["nao"]).all():
            problems.append(f"{where}: reference eigenvalues are not K x 2 nao per structure")
    return problems
