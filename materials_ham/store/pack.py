"""Pack a generator staging directory into a dataset (:func:`pack`).

Staging layout (written by the generator)::

    STAGING/catalog.parquet      catalog: id, formula, elements, n_atoms, spacegroup, ... (all kept)
    STAGING/run.json             engine name + settings of the run (-> attrs["generation"])
    STAGING/samples/<id>.npz     Sample.save() files
    STAGING/done/<id>.json       {"id", "sample": "samples/<id>.npz", "sha256", "seconds",
                                  "peak_rss_mib", "validation": {check: value}, "passed": true}
    STAGING/failed/<id>.json     {"id", "cause", "kind", ...}  (not packed; counted)

Every id with a passing done record is packed, in catalog order; its index row is the
catalog row plus ``val_<check>`` for each validation value, ``seconds_total`` and
``peak_rss_mib``.  A sample whose sha256 differs from its done record is refused.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..atomic import file_sha256, read_json_object
from ..errors import FormatError
from ..generate import Staging
from ..sample import load_sample
from .layout import DEFAULT_SHARD_MIB
from .writer import write_store


def pack(staging_dir: str | os.PathLike, out_dir: str | os.PathLike, *, shard_mib: float = DEFAULT_SHARD_MIB,
         progress: bool = True, attrs: dict | None = None, overwrite: bool = False) -> Path:
    """Pack the finished samples of ``staging_dir`` into the dataset directory ``out_dir``.

    ``attrs`` (dataset name, version, ...) go into the group attributes beside
    ``generation`` (run.json) and ``failures`` ({"count", "by_kind"}).
    """
    from tqdm import tqdm

    staging = Path(staging_dir)
    if not staging.is_dir():
        raise FormatError("no such staging directory", subject=str(staging))
    layout = Staging(staging)
    catalog = _read_catalog(layout.catalog)
    done, failed = _read_records(layout.root / "done"), _read_records(layout.root / "failed")
    if not done:
        raise FormatError("nothing to pack: no finished sample records in done/", subject=str(staging))
    unknown = sorted(set(done) - set(catalog))
    if unknown:
        raise FormatError(f"done records for ids not in the catalog: {unknown[:5]}", subject=str(staging))
    passed = [sid for sid in catalog if done.get(sid, {}).get("passed") is True]
    kinds = Counter(str(r.get("kind", "unknown")) for r in failed.values())
    if len(done) > len(passed):  # done but not passed: a validation failure
        kinds["validation"] += len(done) - len(passed)
    if not passed:
        raise FormatError("nothing to pack: no done record has passed validation", subject=str(staging))
    run_path = layout.run
    generation = read_json_object(run_path) if run_path.is_file() else None

    def items():
        for sid in passed:
            rec = done[sid]
            path = staging / rec["sample"]
            if not path.is_file():
                raise FormatError("sample file of a done record is missing", subject=str(path))
            if file_sha256(path) != rec.get("sha256"):
                raise FormatError(f"sha256 differs from its done record (done/{sid}.json): "
                                  "the file changed after the run", subject=str(path))
            row = dict(catalog[sid])
            row.update({f"val_{k}": _number(v) for k, v in (rec.get("validation") or {}).items()})
            row.update(seconds_total=_number(rec.get("seconds")), peak_rss_mib=_number(rec.get("peak_rss_mib")))
            yield load_sample(path), row

    extra = {"generation": generation, "failures": {"count": sum(kinds.values()), "by_kind": dict(kinds)},
             **(attrs or {})}
    bar = tqdm(items(), total=len(passed), disable=not progress, desc="pack", unit="structure")
    return write_store(out_dir, bar, attrs=extra, shard_mib=shard_mib, progress=False, overwrite=overwrite)


def _read_catalog(path: Path) -> dict[str, dict]:
    """{id: row} in catalog order, with plain Python values (the catalog is checked strictly)."""
    from ..structures.curate import read_catalog

    df = read_catalog(path)
    rows = df.to_dict("records")
    return {str(r["id"]): {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()} for r in rows}


def _read_records(folder: Path) -> dict[str, dict]:
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.json")):
        rec = read_json_object(path)
        out[str(rec.get("id", path.stem))] = rec
    return out


def _number(value):
    """Numbers (and booleans) as float; anything else (None, text) unchanged."""
    return float(value) if isinstance(value, (int, float)) else value
