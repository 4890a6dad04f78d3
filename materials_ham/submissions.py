"""The leaderboard: submission schema, ``submit``, trusted re-scoring (``build``) and rendering.

A leaderboard folder (``leaderboard/`` in the repository)::

    submissions/<model_key>/metadata.yaml    the submitter's metadata, validated against :class:`Submission`
                            metrics.json     computed by ``submit`` (never typed): per seed and split, + mean/std
                            checksums.json   sha256 and size (bytes) of every file of every predictions store
    predictions/<model_key>/seed-<s>.<split>.zarr   the predictions stores (git-ignored; ``--predictions-root``)
    README.md, index.html, submission.schema.json    rendered by ``build``
    CONTRIBUTING.md                                  how to submit (hand-written)

:func:`submit` validates the metadata, copies each seed's predictions store under the predictions
root, checksums the copies, scores them with :class:`~materials_ham.evaluate.Evaluator` and writes
the submission folder.  :func:`build` re-scores every submission from its predictions (after
verifying every checksum) and refuses any stored metric that the trusted scorer does not
reproduce, then renders the README table and the static HTML page.

Everything a submission contains is untrusted: YAML is parsed with ``yaml.SafeLoader`` after an
event scan that refuses anchors/aliases, explicit tags (``!!python/object``), several documents,
deep nesting and oversized files; JSON files have size limits and refuse duplicate keys and
NaN; every path read from a file is relative, without ``..``, and resolved inside its folder;
symbolic links are refused everywhere inside a submission and its predictions; nothing is ever
unpickled or executed.  Every refusal is a :class:`~materials_ham.errors.SubmissionError` (one
line, exit code 7 in the CLI) and leaves nothing half-written (all outputs are written to a
temporary name and renamed).

All errors reported are in meV unless stated (ghost states: states per k-point).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from .atomic import atomic_directory, atomic_write, file_sha256
from .errors import MaterialsHamError, SubmissionError

# ------------------------------------------------------------------------------- constants
METADATA_FILE = "metadata.yaml"
METRICS_FILE = "metrics.json"
CHECKSUMS_FILE = "checksums.json"
SUBMISSION_FILES = (METADATA_FILE, METRICS_FILE, CHECKSUMS_FILE)
SUBMISSIONS_DIR = "submissions"
PREDICTIONS_DIR = "predictions"
SCHEMA_FILE = "submission.schema.json"
METRICS_FORMAT = "materials-ham-leaderboard-metrics"
CHECKSUMS_FORMAT = "materials-ham-leaderboard-checksums"
LEADERBOARD_VERSION = 1
SPLITS = ("test", "val")
#: The ranking metric: gauge MAE of the real part of the spin-diagonal entries, mean over structures (meV).
HEADLINE = "spin_diag_real_mev"

#: Size limits (bytes) of the files of a submission, and of the YAML parse.
MAX_METADATA_BYTES = 64 * 1024
MAX_METRICS_BYTES = 32 * 1024 * 1024
MAX_CHECKSUMS_BYTES = 16 * 1024 * 1024
MAX_YAML_DEPTH = 12
MAX_YAML_NODES = 4000
MAX_SEEDS = 32
#: Limits of one predictions store: number of files and total bytes (override with ``max_store_bytes``).
MAX_STORE_FILES = 100_000
MAX_STORE_BYTES = 512 * 1024 ** 3
#: Relative tolerance of trusted re-scoring (stored vs recomputed numbers); absolute floor in meV.
RTOL = 1e-7
ATOL = 1e-9

MODEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,63}$"
_SHA256 = r"^[0-9a-f]{64}$"
_URL = r"^https://[^\s<>\"']+$"
#: Keys that would carry numbers the scorer computes; refused with a pointed message.
TYPED_METRIC_KEYS = frozenset({"metrics", "metric", "results", "result", "scores", "score", "headline", "mae",
                               "test_mae", "test_score", "validation_score", "val_score", "val_mae", "leaderboard",
                               "spin_diag_real_mev", "band_error", "errors"})


# ------------------------------------------------------------------------------------ schema
def _pydantic():
    try:
        import pydantic  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise MaterialsHamError("the leaderboard needs pydantic: pip install 'materials-ham[leaderboard]'") from None
    return pydantic


def _schema_models():
    """Build the pydantic models (imported lazily so that the package imports without pydantic)."""
    from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

    Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    Url = Annotated[str, StringConstraints(strip_whitespace=True, pattern=_URL, max_length=500)]
    Sha = Annotated[str, StringConstraints(pattern=_SHA256)]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    class Code(Strict):
        """Where the code is and how to reproduce the submitted predictions exactly."""
        repository: Url = Field(description="https URL of the code repository")
        commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,40}$")] | None = Field(
            None, description="commit hash of the code that made the predictions")
        command: LongText = Field(description="exact command(s) that reproduce the predictions from the dataset")

    class TrainingCost(Strict):
        gpu_hours: float = Field(ge=0, description="accelerator hours of one training run (0 for no training)")
        description: Text | None = Field(None, description="free text, e.g. '8 x A100 for 36 h'")

    class TrainingData(Strict):
        splits: list[Literal["train", "val"]] = Field(
            max_length=2, description="splits of the dataset used for training or model selection (never test)")
        external_data: bool = Field(description="true if any data outside the dataset was used (pre-training, ...)")
        external_data_description: Text | None = Field(None, description="what external data, required if used")

        @field_validator("splits")
        @classmethod
        def _unique(cls, v):
            if len(set(v)) != len(v):
                raise ValueError("a split is listed twice")
            return v

        @model_validator(mode="after")
        def _external(self):
            if self.external_data and not self.external_data_description:
                raise ValueError("external_data is true: describe it in external_data_description")
            return self

    class DatasetRef(Strict):
        name: Text = Field(description="dataset name, e.g. Materials-HAM-SOC")
        revision: Text = Field(description="dataset version (the store's dataset_version) or its fingerprint")
        fingerprint: Sha | None = Field(None, description="sha256 of the dataset's manifest.json (exact version)")

    class PredictionsEntry(Strict):
        seed: int = Field(ge=0, le=2 ** 63 - 1)
        split: Literal["test", "val"]
        sha256: Sha = Field(description="tree digest of the predictions store (see CONTRIBUTING.md)")
        url: Url | None = Field(None, description="where this store can be downloaded")

    class Submission(Strict):
        """Metadata of one leaderboard entry (``metadata.yaml``).  Unknown keys are refused;
        metrics are never part of it: ``materials-ham submit`` computes them."""
        model_name: Text = Field(description="display name of the model")
        model_key: Annotated[str, StringConstraints(pattern=MODEL_KEY_PATTERN)] = Field(
            description="folder name: lower-case letters, digits, '-' and '_' (2-64 characters)")
        version: Text
        authors: list[Text] = Field(min_length=1, max_length=100)
        code: Code
        paper: Url | None = Field(None, description="https URL of the paper (DOI, arXiv, ...)")
        license: Text = Field(description="licence of the code/weights (SPDX identifier preferred)")
        parameters: int = Field(ge=0, le=10 ** 13, description="number of trainable parameters")
        hardware: Text = Field(description="hardware used for training and prediction")
        training_cost: TrainingCost
        training_data: TrainingData
        seeds: list[Annotated[int, Field(ge=0, le=2 ** 63 - 1)]] = Field(
            min_length=1, max_length=MAX_SEEDS, description="training seeds; one test predictions store per seed")
        dataset: DatasetRef
        date: _dt.date = Field(description="submission date, YYYY-MM-DD")
        baseline: bool = Field(False, description="true for reference baselines (e.g. H0), marked in the table")
        predictions_url: Url | None = Field(None, description="where all predictions stores can be downloaded")
        predictions: list[PredictionsEntry] | None = Field(
            None, max_length=2 * MAX_SEEDS,
            description="declared checksums of the stores; filled in (computed) by materials-ham submit")
        notes: LongText | None = None

        @field_validator("seeds")
        @classmethod
        def _unique_seeds(cls, v):
            if len(set(v)) != len(v):
                raise ValueError("a seed is listed twice")
            return v

    class FileChecksum(Strict):
        sha256: Sha
        bytes: int = Field(ge=0)

    class StoreChecksum(Strict):
        seed: int = Field(ge=0)
        split: Literal["test", "val"]
        path: Annotated[str, StringConstraints(max_length=200)]
        sha256: Sha
        bytes: int = Field(ge=0)
        files: dict[Annotated[str, StringConstraints(min_length=1, max_length=1024)], FileChecksum] = Field(
            max_length=MAX_STORE_FILES)

    class Checksums(Strict):
        format: Literal["materials-ham-leaderboard-checksums"]
        version: Literal[1]
        model_key: Annotated[str, StringConstraints(pattern=MODEL_KEY_PATTERN)]
        algorithm: Literal["sha256"]
        stores: list[StoreChecksum] = Field(min_length=1, max_length=2 * MAX_SEEDS)

    return Submission, Checksums


_MODELS: tuple | None = None


def _models():
    global _MODELS
    if _MODELS is None:
        _pydantic()
        _MODELS = _schema_models()
    return _MODELS


def submission_schema() -> dict:
    """The JSON Schema of ``metadata.yaml`` (from the pydantic model :class:`Submission`)."""
    schema = _models()[0].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Materials-HAM-SOC leaderboard submission (metadata.yaml)"
    return schema


def _validation_message(err, what: str) -> str:
    parts = []
    for e in err.errors()[:6]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(top level)"
        if e.get("type") == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif e.get("type") == "missing":
            parts.append(f"missing required key {loc!r}")
        else:
            msg = e.get("msg", "invalid")
            if e.get("type") == "string_pattern_mismatch" and loc.endswith("model_key"):
                msg = "model_key must be 2-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
            parts.append(f"{loc}: {msg}")
    more = len(err.errors()) - len(parts)
    return f"invalid {what}: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# ----------------------------------------------------------------------------- safe reading
def _read_limited(path: Path, max_bytes: int, what: str, *, follow: bool = True) -> bytes:
    """Bytes of a plain file of at most ``max_bytes`` (symbolic links refused unless ``follow``)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as err:
        raise SubmissionError(f"cannot read the {what} ({err.strerror})", subject=str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionError(f"the {what} is a symbolic link; submissions hold plain files only", subject=str(path))
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionError(f"the {what} is not a regular file", subject=str(path))
    if st.st_size > max_bytes:
        raise SubmissionError(f"the {what} is {st.st_size} bytes, more than the limit of {max_bytes}",
                              subject=str(path))
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SubmissionError(f"the {what} is larger than the limit of {max_bytes} bytes", subject=str(path))
    return data


def _yaml_loader():
    import yaml

    class StrictSafeLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate mapping keys."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:
                    raise yaml.constructor.ConstructorError(None, None, "mapping key is not hashable",
                                                            key_node.start_mark) from None
                if dup:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictSafeLoader


def load_yaml_safely(path: str | os.PathLike, *, max_bytes: int = MAX_METADATA_BYTES, follow: bool = True) -> dict:
    """Parse an untrusted YAML file holding one mapping.

    Refused: files over ``max_bytes``, non-UTF-8 text, several documents, anchors and aliases
    (``&a`` / ``*a``: alias bombs), explicit tags (``!!python/object``, ``!!binary``, ...),
    ``%TAG`` directives, nesting deeper than :data:`MAX_YAML_DEPTH`, more than
    :data:`MAX_YAML_NODES` nodes, duplicate keys.  Parsed with ``yaml.SafeLoader`` only.
    """
    import yaml

    path = Path(path)
    raw = _read_limited(path, max_bytes, "metadata file", follow=follow)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError("the metadata file is not UTF-8 text", subject=str(path)) from None
    depth = nodes = docs = 0
    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(ev, yaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    raise SubmissionError("the metadata file holds more than one YAML document", subject=str(path))
                if ev.tags:
                    raise SubmissionError("YAML %TAG directives are not allowed", subject=str(path))
            elif isinstance(ev, yaml.AliasEvent):
                raise SubmissionError(f"YAML aliases (*{ev.anchor}) are not allowed in metadata", subject=str(path))
            elif isinstance(ev, yaml.NodeEvent):
                if ev.anchor is not None:
                    raise SubmissionError(f"YAML anchors (&{ev.anchor}) are not allowed in metadata",
                                          subject=str(path))
                tag = getattr(ev, "tag", None)
                if tag is not None and tag not in ("!",):
                    raise SubmissionError(f"explicit YAML tags ({tag}) are not allowed in metadata; write plain "
                                          "values", subject=str(path))
                nodes += 1
                if nodes > MAX_YAML_NODES:
                    raise SubmissionError(f"the metadata has more than {MAX_YAML_NODES} YAML nodes", subject=str(path))
                if isinstance(ev, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_YAML_DEPTH:
                        raise SubmissionError(f"the metadata is nested deeper than {MAX_YAML_DEPTH} levels",
                                              subject=str(path))
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        msg = " ".join(str(err).split())
        raise SubmissionError(f"invalid YAML: {msg[:300]}", subject=str(path)) from None
    if not isinstance(data, dict):
        raise SubmissionError("the metadata must be a YAML mapping (key: value lines)", subject=str(path))
    return data


def load_json_safely(path: str | os.PathLike, *, max_bytes: int, what: str, follow: bool = False) -> dict:
    """An untrusted JSON file holding one object: size limit, no duplicate keys, no NaN/Infinity."""
    path = Path(path)
    raw = _read_limited(path, max_bytes, what, follow=follow)

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    def constant(name):
        raise ValueError(f"{name} is not allowed")

    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise SubmissionError(f"the {what} is not valid JSON ({str(err)[:200]})", subject=str(path)) from None
    if not isinstance(data, dict):
        raise SubmissionError(f"the {what} must hold a JSON object", subject=str(path))
    return data


def safe_relpath(text, *, what: str = "path", subject: str | None = None) -> PurePosixPath:
    """A relative POSIX path read from an untrusted file: no absolute path, no ``..``, no ``~``,
    no backslash or control character, no empty or ``.`` component, at most 16 components."""
    if not isinstance(text, str) or not text:
        raise SubmissionError(f"{what} must be a non-empty string", subject=subject)
    if text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text):
        raise SubmissionError(f"{what} {text!r} is absolute; only paths relative to the submission are allowed",
                              subject=subject)
    if "\\" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SubmissionError(f"{what} {text!r} holds a backslash or a control character", subject=subject)
    parts = text.split("/")
    if ".." in parts:
        raise SubmissionError(f"{what} {text!r} leaves its folder ('..' is not allowed)", subject=subject)
    if any(p in ("", ".") for p in parts) or len(parts) > 16 or any(len(p) > 255 for p in parts):
        raise SubmissionError(f"{what} {text!r} is not a plain relative path", subject=subject)
    return PurePosixPath(text)


def _confined(base: Path, rel: PurePosixPath, what: str) -> Path:
    """``base / rel`` after checking that no component below ``base`` is a symbolic link and that
    it resolves inside ``base`` (the file itself may be absent)."""
    cur = base
    for part in rel.parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode):
            raise SubmissionError(f"{what} is a symbolic link ({cur}); submissions hold plain files only",
                                  subject=str(base))
    out = base / Path(*rel.parts)
    if not str(out.resolve()).startswith(str(base.resolve()) + os.sep):
        raise SubmissionError(f"{what} {rel} resolves outside {base}", subject=str(base))
    return out


# --------------------------------------------------------------------------- store digests
@dataclass
class StoreDigest:
    """Checksums of one predictions store (a folder): ``files`` {relative path: (sha256, bytes)},
    ``sha256`` the tree digest (sha256 of the sorted lines ``path<TAB>bytes<TAB>sha256``)."""

    sha256: str
    bytes: int
    files: dict[str, tuple[str, int]]


def tree_digest(files: dict[str, tuple[str, int]]) -> str:
    """sha256 (hex) of a file listing: lines ``relpath\\tbytes\\tsha256\\n`` sorted by path."""
    import hashlib

    h = hashlib.sha256()
    for rel in sorted(files):
        sha, size = files[rel]
        h.update(f"{rel}\t{size}\t{sha}\n".encode())
    return h.hexdigest()


def digest_store(path: str | os.PathLike, *, max_bytes: int = MAX_STORE_BYTES,
                 max_files: int = MAX_STORE_FILES) -> StoreDigest:
    """Checksum every file of a predictions store folder; refuse links, special files and size excess."""
    root = Path(path)
    try:
        st = os.lstat(root)
    except OSError:
        raise SubmissionError("no such predictions store", subject=str(root)) from None
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionError("the predictions store is a symbolic link; pass the real folder", subject=str(root))
    if not stat.S_ISDIR(st.st_mode):
        raise SubmissionError("a predictions store is a folder (a Zarr group written by write_predictions)",
                              subject=str(root))
    listing: list[tuple[str, Path, int]] = []
    total = 0
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                safe_relpath(rel, what="file", subject=str(root))
                if entry.is_symlink():
                    raise SubmissionError(f"{rel} is a symbolic link; predictions stores must hold plain files only",
                                          subject=str(root))
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    total += size
                    listing.append((rel, Path(entry.path), size))
                    if len(listing) > max_files:
                        raise SubmissionError(f"more than {max_files} files in the predictions store",
                                              subject=str(root))
                    if total > max_bytes:
                        raise SubmissionError(f"the predictions store is larger than the limit of {max_bytes} bytes",
                                              subject=str(root))
                else:
                    raise SubmissionError(f"{rel} is not a regular file or folder", subject=str(root))
    if not listing:
        raise SubmissionError("the predictions store is empty", subject=str(root))
    files = {rel: (file_sha256(p), size) for rel, p, size in listing}
    return StoreDigest(tree_digest(files), total, files)


def store_name(seed: int, split: str) -> str:
    """File name of the predictions store of one seed and split: ``seed-<seed>.<split>.zarr``."""
    return f"seed-{int(seed)}.{split}.zarr"


# ----------------------------------------------------------------------------- the scorer
@dataclass
class ScorerSettings:
    """How ``submit`` and ``build`` score: band settings (k-grid, path points; the Evaluator's
    defaults when None), ``workers`` threads and an optional on-disk reference cache folder."""

    kgrid: tuple[int, int, int] | None = None
    path_points: int | None = None
    workers: int = 1
    cache_dir: str | os.PathLike | None = None
    progress: bool = False


class _Scorer:
    """One Evaluator per split on one dataset, shared by all submissions (reference caches)."""

    def __init__(self, dataset, settings: ScorerSettings):
        from .evaluate.predictions import dataset_fingerprint, dataset_name, open_dataset

        self.store = open_dataset(dataset)
        self.fingerprint = dataset_fingerprint(self.store)
        self.name = dataset_name(self.store)
        self.version = str(self.store.attrs.get("dataset_version") or "")
        self.settings = settings
        self._evaluators: dict = {}

    def evaluator(self, split: str):
        from .evaluate import Evaluator

        if split not in self._evaluators:
            s = self.settings
            self._evaluators[split] = Evaluator(self.store, split=split, bands=True, kgrid=s.kgrid,
                                                path_points=s.path_points, cache_dir=s.cache_dir,
                                                workers=s.workers, progress=s.progress)
        return self._evaluators[split]

    def score(self, path: Path, split: str) -> dict:
        """Evaluator metrics of the predictions store ``path`` (full dict, meV)."""
        from .evaluate import read_predictions

        store = read_predictions(path, self.store, split)
        return self.evaluator(split).eval(store)

    def check_dataset(self, ref, subject: str) -> None:
        """The submission's declared dataset (name, revision, fingerprint) must be this dataset."""
        if ref.name.strip().lower() != self.name.strip().lower():
            raise SubmissionError(f"declares dataset {ref.name!r}, but the leaderboard scores {self.name!r}",
                                  subject=subject)
        rev = ref.revision.strip()
        ok = rev == self.version if self.version else False
        ok = ok or (len(rev) >= 12 and re.fullmatch(r"[0-9a-f]+", rev) is not None and self.fingerprint.startswith(rev))
        if not ok:
            have = f"{self.version!r} (fingerprint {self.fingerprint[:12]})" if self.version else \
                f"fingerprint {self.fingerprint[:12]}"
            raise SubmissionError(f"declares dataset revision {rev!r}, but the dataset is revision {have}; "
                                  "predict and submit against this revision", subject=subject)
        if ref.fingerprint is not None and ref.fingerprint != self.fingerprint:
            raise SubmissionError(f"declares dataset fingerprint {ref.fingerprint[:12]}..., but the dataset's is "
                                  f"{self.fingerprint[:12]}... (sha256 of manifest.json)", subject=subject)

    def description(self) -> dict:
        return {"name": self.name, "revision": self.version, "fingerprint": self.fingerprint}


def _first_window_key(headline: dict, kind: str) -> str | None:
    return next((k for k in headline if k.startswith("band_grid_") and k.endswith(f"_{kind}_mev")), None)


def summarize(metrics: dict) -> dict:
    """The part of an Evaluator metrics dict that the leaderboard stores and re-checks (meV).

    ``headline`` (as the Evaluator reports it), ``overall`` (the eight spin-block quantities plus
    spin_diag_real/real/imag, mean over structures), ``element`` (spin-diag real MAE of the blocks
    with an atom of each element), ``bands`` (mean of each band metric) and ``per_structure``
    (id, formula, spin-diag real MAE, band error in the first window on the grid, aligned, gap error).
    """
    head = dict(metrics["headline"])
    ov = metrics["matrix"]["overall"].get("all", {})
    band_key = _first_window_key(head, "aligned")
    window = band_key[len("band_grid_"):-len("_aligned_mev")] if band_key else None
    per = []
    for r in metrics["per_structure"]:
        b = r.get("bands") or {}
        per.append({"id": r["id"], "formula": r["formula"], "spin_diag_real": r["matrix"].get("spin_diag_real"),
                    "band_error": b.get(f"grid.{window}.aligned") if window else None,
                    "gap_error": b.get("gap_error")})
    return {
        "n_structures": int(metrics["n_structures"]),
        "headline": head,
        "overall": {q: v.get("mean") for q, v in ov.items() if isinstance(v, dict)},
        "element": {el: (e.get("spin_diag_real") or {}).get("mean") for el, e in metrics["matrix"]["element"].items()},
        "bands": {name: e.get("mean") for name, e in (metrics.get("bands") or {}).items()},
        "per_structure": per,
    }


def _mean_std(values: list) -> dict:
    """{mean, std, n} over seeds; std is the sample standard deviation (ddof=1), None for one seed."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    mean = math.fsum(vals) / len(vals)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return {"mean": mean, "std": std, "n": len(vals)}


def aggregate(runs: list[dict]) -> dict:
    """Mean and std over seeds of every headline, overall, element and band number of ``runs``."""
    out = {}
    for section in ("headline", "overall", "element", "bands"):
        keys = list(dict.fromkeys(k for r in runs for k in r[section]))
        out[section] = {k: _mean_std([r[section].get(k) for r in runs]) for k in keys}
    return out


def _compare(stored, fresh, where: str) -> str | None:
    """First difference between a stored and a recomputed JSON value (None if they agree)."""
    if isinstance(fresh, dict):
        if not isinstance(stored, dict):
            return f"{where}: stored {type(stored).__name__}, recomputed an object"
        if set(stored) != set(fresh):
            extra, missing = sorted(set(stored) - set(fresh)), sorted(set(fresh) - set(stored))
            return f"{where}: keys differ (stored only {extra[:3]}, recomputed only {missing[:3]})"
        for k in fresh:
            d = _compare(stored[k], fresh[k], f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(fresh, list):
        if not isinstance(stored, list) or len(stored) != len(fresh):
            return f"{where}: stored list differs in length"
        for i, (a, b) in enumerate(zip(stored, fresh)):
            d = _compare(a, b, f"{where}[{i}]")
            if d:
                return d
        return None
    if isinstance(fresh, bool) or fresh is None or isinstance(fresh, str):
        return None if stored == fresh else f"{where}: stored {stored!r}, recomputed {fresh!r}"
    if isinstance(fresh, (int, float)):
        if isinstance(stored, bool) or not isinstance(stored, (int, float)):
            return f"{where}: stored {stored!r}, recomputed {fresh!r}"
        if not math.isclose(float(stored), float(fresh), rel_tol=RTOL, abs_tol=ATOL):
            return f"{where}: stored {stored!r}, recomputed {fresh!r}"
        return None
    return None if stored == fresh else f"{where}: stored {stored!r}, recomputed {fresh!r}"


# ------------------------------------------------------------------------------- metadata
def load_metadata(path: str | os.PathLike, *, follow: bool = True):
    """Read and validate untrusted metadata (YAML) into a :class:`Submission` model."""
    from pydantic import ValidationError

    Submission, _ = _models()
    data = load_yaml_safely(path, follow=follow)
    typed = sorted(k for k in data if isinstance(k, str) and k.strip().lower() in TYPED_METRIC_KEYS)
    if typed:
        raise SubmissionError(f"metrics are computed by `materials-ham submit`, never typed by the submitter: remove "
                              f"{', '.join(repr(k) for k in typed)}", subject=str(path))
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SubmissionError(f"metadata keys must be strings (got {bad[0]!r})", subject=str(path))
    try:
        return Submission.model_validate(data)
    except ValidationError as err:
        raise SubmissionError(_validation_message(err, "metadata"), subject=str(path)) from None


def _dump_metadata(meta) -> str:
    import yaml

    data = meta.model_dump(mode="json", exclude_none=True)
    head = ("# Validated by `materials-ham submit` (schema: ../../submission.schema.json). The predictions\n"
            "# checksums below were computed by submit; the metrics are in metrics.json (computed, never typed).\n")
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _expected_stores(meta, n_val: int | None = None) -> list[tuple[int, str]]:
    out = [(s, "test") for s in meta.seeds]
    if n_val:
        out += [(s, "val") for s in meta.seeds]
    return out


# ---------------------------------------------------------------------------------- submit
@dataclass
class SubmitResult:
    """What :func:`submit` wrote: the submission folder, the predictions folder and the metrics."""

    submission: Path
    predictions: Path
    metrics: dict


def _write_json_text(data) -> str:
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def submit(predictions: Sequence[str | os.PathLike], metadata: str | os.PathLike, dataset, *,
           val_predictions: Sequence[str | os.PathLike] = (), leaderboard: str | os.PathLike = "leaderboard",
           predictions_root: str | os.PathLike | None = None, overwrite: bool = False,
           scorer: ScorerSettings | None = None, max_store_bytes: int = MAX_STORE_BYTES,
           log: Callable[[str], None] = lambda s: None) -> SubmitResult:
    """Validate, copy, checksum and score a submission; write ``<leaderboard>/submissions/<model_key>/``.

    ``predictions``: one test predictions store (from ``write_predictions``) per seed, in the order
    of the metadata's ``seeds``; ``val_predictions``: none, or one val store per seed (the
    validation score of the same runs).  The stores are copied to
    ``<predictions_root>/<model_key>/seed-<s>.<split>.zarr`` (default root
    ``<leaderboard>/predictions``), checksummed there and scored from the copies.  A declared
    ``predictions[].sha256`` must equal the computed tree digest.  Nothing is written unless
    every step succeeds; an existing entry is replaced only with ``overwrite``.
    """
    meta = load_metadata(metadata)
    subject = str(metadata)
    preds = [Path(p) for p in predictions]
    vals = [Path(p) for p in val_predictions]
    if len(preds) != len(meta.seeds):
        raise SubmissionError(f"the metadata lists {len(meta.seeds)} seed(s) {meta.seeds}, but {len(preds)} test "
                              "predictions store(s) were given (one per seed, in the order of 'seeds')",
                              subject=subject)
    if vals and len(vals) != len(meta.seeds):
        raise SubmissionError(f"{len(vals)} validation store(s) for {len(meta.seeds)} seed(s): give none or one per "
                              "seed", subject=subject)
    board = Path(leaderboard)
    root = Path(predictions_root) if predictions_root is not None else board / PREDICTIONS_DIR
    sub_dir = board / SUBMISSIONS_DIR / meta.model_key
    pred_dir = root / meta.model_key
    for target in (sub_dir, pred_dir):
        if os.path.lexists(target):
            if os.path.islink(target):
                raise SubmissionError("is a symbolic link; refusing to write through it", subject=str(target))
            if not overwrite:
                raise SubmissionError(f"an entry {meta.model_key!r} already exists (pass --overwrite to replace it)",
                                      subject=str(target))
    sc = _Scorer(dataset, scorer or ScorerSettings())
    sc.check_dataset(meta.dataset, subject)
    pairs = list(zip(_expected_stores(meta, len(vals)), preds + vals))
    declared = {(p.seed, p.split): p for p in (meta.predictions or [])}
    unknown = sorted(set(declared) - {k for k, _ in pairs})
    if unknown:
        raise SubmissionError(f"'predictions' declares store(s) {unknown} that were not submitted", subject=subject)
    from .evaluate import read_predictions

    sources = {}
    for (seed, split), src in pairs:
        dig = digest_store(src, max_bytes=max_store_bytes)
        d = declared.get((seed, split))
        if d is not None and d.sha256 != dig.sha256:
            raise SubmissionError(f"checksum mismatch for seed {seed} ({split}): declared {d.sha256[:12]}..., the "
                                  f"store's tree digest is {dig.sha256[:12]}...", subject=str(src))
        read_predictions(src, sc.store, split)  # format, fingerprint, split and ids, before copying anything
        sources[(seed, split)] = (src, dig)
    entries, stores, runs = [], [], {"test": [], "val": []}
    with atomic_directory(pred_dir) as ptmp:
        for (seed, split), (src, dig) in sources.items():
            name = store_name(seed, split)
            log(f"copying {src} -> {pred_dir / name}")
            shutil.copytree(src, ptmp / name, symlinks=True, copy_function=shutil.copyfile)
            copy = digest_store(ptmp / name, max_bytes=max_store_bytes)
            if copy.sha256 != dig.sha256:
                raise SubmissionError("the store changed while it was copied; submit again", subject=str(src))
            log(f"scoring seed {seed} ({split})")
            m = sc.score(ptmp / name, split)
            runs[split].append({"seed": seed, "predictions": name, **summarize(m)})
            stores.append({"seed": seed, "split": split, "path": name, "sha256": copy.sha256, "bytes": copy.bytes,
                           "files": {k: {"sha256": v[0], "bytes": v[1]} for k, v in sorted(copy.files.items())}})
            d = declared.get((seed, split))
            entries.append({"seed": seed, "split": split, "sha256": copy.sha256,
                            **({"url": d.url} if d is not None and d.url else {})})
        settings = sc.evaluator("test").settings.to_dict()
        metrics = _metrics_document(meta.model_key, sc, settings, runs)
        meta = _models()[0].model_validate({**meta.model_dump(), "predictions": entries})
        checksums = {"format": CHECKSUMS_FORMAT, "version": LEADERBOARD_VERSION, "model_key": meta.model_key,
                     "algorithm": "sha256", "stores": stores}
        with atomic_directory(sub_dir) as stmp:
            (stmp / METADATA_FILE).write_text(_dump_metadata(meta))
            (stmp / METRICS_FILE).write_text(_write_json_text(metrics))
            (stmp / CHECKSUMS_FILE).write_text(_write_json_text(checksums))
    return SubmitResult(sub_dir, pred_dir, metrics)


def _metrics_document(key: str, sc: _Scorer, band_settings: dict, runs: dict) -> dict:
    from .evaluate.evaluator import EVALUATOR_NAME, RESULTS_VERSION

    runs = {split: rs for split, rs in runs.items() if rs}
    doc = {"format": METRICS_FORMAT, "version": LEADERBOARD_VERSION, "model_key": key,
            "note": "computed by materials-ham submit and re-checked by materials-ham leaderboard build; all errors in "
                    "meV (ghost states: states per k-point); std over seeds with ddof=1",
            "dataset": sc.description(),
            "scorer": {"evaluator": EVALUATOR_NAME, "results_version": RESULTS_VERSION, "bands": band_settings},
            "runs": runs, "aggregate": {split: aggregate(rs) for split, rs in runs.items()}}
    return json.loads(json.dumps(doc, allow_nan=False))  # JSON types only (tuples -> lists), as stored


# ----------------------------------------------------------------------------------- build
@dataclass
class Entry:
    """One verified leaderboard entry: validated metadata and re-scored metrics."""

    meta: object
    metrics: dict

    @property
    def key(self) -> str:
        return self.meta.model_key

    def value(self, section: str, name: str, split: str = "test") -> dict:
        return ((self.metrics["aggregate"].get(split) or {}).get(section) or {}).get(name) or \
            {"mean": None, "std": None, "n": 0}


@dataclass
class BuildResult:
    """What :func:`build` verified and wrote."""

    entries: list[Entry]
    written: list[Path] = field(default_factory=list)
    dataset: dict = field(default_factory=dict)


def _check_submission_folder(folder: Path) -> None:
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionError("the submission folder is a symbolic link", subject=str(folder))
    if not stat.S_ISDIR(st.st_mode):
        raise SubmissionError("unexpected file in submissions/ (each entry is a folder)", subject=str(folder))
    if not re.fullmatch(MODEL_KEY_PATTERN, folder.name):
        raise SubmissionError("the folder name is not a valid model_key", subject=str(folder))
    names = set()
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_symlink():
                raise SubmissionError(f"{entry.name} is a symbolic link; submissions hold plain files only",
                                      subject=str(folder))
            if entry.name not in SUBMISSION_FILES or not entry.is_file(follow_symlinks=False):
                raise SubmissionError(f"unexpected {'folder' if entry.is_dir() else 'file'} {entry.name!r} (a "
                                      f"submission holds exactly {', '.join(SUBMISSION_FILES)})", subject=str(folder))
            names.add(entry.name)
    missing = [n for n in SUBMISSION_FILES if n not in names]
    if missing:
        raise SubmissionError(f"missing {', '.join(missing)}", subject=str(folder))


def verify_submission(folder: Path, scorer: _Scorer, predictions_root: Path, *,
                      max_store_bytes: int = MAX_STORE_BYTES, log: Callable[[str], None] = lambda s: None) -> Entry:
    """Trusted re-scoring of one submission folder.

    Checks the folder (exactly the three files, no links), the metadata (schema, dataset), the
    checksums (schema, confined paths, every file of every store at
    ``<predictions_root>/<model_key>/`` byte for byte), re-scores every store and compares every
    stored number of ``metrics.json`` with the recomputed one.  Raises :class:`SubmissionError`.
    """
    from pydantic import ValidationError

    _, Checksums = _models()
    _check_submission_folder(folder)
    meta = load_metadata(folder / METADATA_FILE, follow=False)
    if meta.model_key != folder.name:
        raise SubmissionError(f"model_key {meta.model_key!r} does not match the folder name", subject=str(folder))
    scorer.check_dataset(meta.dataset, str(folder / METADATA_FILE))
    raw = load_json_safely(folder / CHECKSUMS_FILE, max_bytes=MAX_CHECKSUMS_BYTES, what="checksums file")
    try:
        sums = Checksums.model_validate(raw)
    except ValidationError as err:
        raise SubmissionError(_validation_message(err, "checksums file"),
                              subject=str(folder / CHECKSUMS_FILE)) from None
    if sums.model_key != meta.model_key:
        raise SubmissionError("checksums.json is for another model_key", subject=str(folder / CHECKSUMS_FILE))
    have = [(s.seed, s.split) for s in sums.stores]
    n_val = sum(1 for s in sums.stores if s.split == "val")
    want = _expected_stores(meta, n_val)
    if sorted(have) != sorted(want) or len(set(have)) != len(have):
        raise SubmissionError(f"checksums.json lists stores {sorted(have)}, but the metadata's seeds {meta.seeds} "
                              f"need {sorted(want)}", subject=str(folder / CHECKSUMS_FILE))
    declared = {(p.seed, p.split): p.sha256 for p in (meta.predictions or [])}
    if declared != {(s.seed, s.split): s.sha256 for s in sums.stores}:
        raise SubmissionError("the predictions checksums in metadata.yaml and checksums.json differ",
                              subject=str(folder))
    metrics = load_json_safely(folder / METRICS_FILE, max_bytes=MAX_METRICS_BYTES, what="metrics file")
    base = Path(predictions_root)
    if not base.is_dir():
        raise SubmissionError(f"no predictions root folder (expected {base}/{meta.model_key}/{store_name(0, 'test')} "
                              "...; pass --predictions-root)", subject=str(folder))
    pred_dir = _confined(base, safe_relpath(meta.model_key, what="model_key"), "the predictions folder")
    runs = {"test": [], "val": []}
    for s in sums.stores:
        rel = safe_relpath(s.path, what="store path", subject=str(folder / CHECKSUMS_FILE))
        if s.path != store_name(s.seed, s.split):
            raise SubmissionError(f"store path {s.path!r} must be {store_name(s.seed, s.split)!r}",
                                  subject=str(folder / CHECKSUMS_FILE))
        for f in s.files:
            safe_relpath(f, what="file path", subject=str(folder / CHECKSUMS_FILE))
        if tree_digest({k: (v.sha256, v.bytes) for k, v in s.files.items()}) != s.sha256:
            raise SubmissionError(f"the file list of {s.path} does not give its tree digest",
                                  subject=str(folder / CHECKSUMS_FILE))
        path = _confined(pred_dir, rel, "the predictions store")
        if not os.path.lexists(path):
            raise SubmissionError(f"predictions store not found: {path} (download it from the entry's "
                                  f"predictions_url, or pass --predictions-root)", subject=str(folder))
        log(f"{meta.model_key}: verifying {path}")
        dig = digest_store(path, max_bytes=max_store_bytes)
        if dig.sha256 != s.sha256:
            listed = {k: (v.sha256, v.bytes) for k, v in s.files.items()}
            extra = sorted(set(dig.files) - set(listed))
            missing = sorted(set(listed) - set(dig.files))
            changed = sorted(k for k in set(listed) & set(dig.files) if listed[k] != dig.files[k])
            what = (f"unexpected file(s) {extra[:3]}" if extra else f"missing file(s) {missing[:3]}" if missing
                    else f"checksum mismatch in {changed[:3]}")
            raise SubmissionError(f"{s.path}: {what}", subject=str(path))
        log(f"{meta.model_key}: re-scoring seed {s.seed} ({s.split})")
        runs[s.split].append({"seed": s.seed, "predictions": s.path, **summarize(scorer.score(path, s.split))})
    order = {seed: i for i, seed in enumerate(meta.seeds)}
    for split in runs:
        runs[split].sort(key=lambda r: order[r["seed"]])
    fresh = _metrics_document(meta.model_key, scorer, scorer.evaluator("test").settings.to_dict(), runs)
    if metrics.get("scorer") != fresh["scorer"]:
        raise SubmissionError(f"metrics.json was scored with other settings ({json.dumps(metrics.get('scorer'))[:200]}"
                              f"); this build uses {json.dumps(fresh['scorer'])}: submit again with these settings",
                              subject=str(folder / METRICS_FILE))
    diff = _compare(metrics, fresh, "")
    if diff:
        raise SubmissionError(f"stored metrics do not match trusted re-scoring: {diff}",
                              subject=str(folder / METRICS_FILE))
    return Entry(meta, fresh)


def build(leaderboard: str | os.PathLike, dataset, *, predictions_root: str | os.PathLike | None = None,
          scorer: ScorerSettings | None = None, max_store_bytes: int = MAX_STORE_BYTES,
          log: Callable[[str], None] = lambda s: None) -> BuildResult:
    """Re-score every submission of ``leaderboard`` and render README.md, index.html and the schema.

    Every submission is verified first (see :func:`verify_submission`); any refusal stops the build
    and nothing is written.  ``predictions_root`` defaults to ``<leaderboard>/predictions``.
    """
    board = Path(leaderboard)
    subs = board / SUBMISSIONS_DIR
    root = Path(predictions_root) if predictions_root is not None else board / PREDICTIONS_DIR
    sc = _Scorer(dataset, scorer or ScorerSettings())
    folders = []
    if subs.exists():
        if subs.is_symlink() or not subs.is_dir():
            raise SubmissionError("must be a folder (not a link)", subject=str(subs))
        folders = sorted(p for p in subs.iterdir() if not p.name.startswith("."))
    entries = [verify_submission(f, sc, root, max_store_bytes=max_store_bytes, log=log) for f in folders]
    entries = rank(entries)
    info = {**sc.description(), "bands": sc.evaluator("test").settings.to_dict(),
            "n_test": len(sc.evaluator("test").ids)}
    readme = render_markdown(entries, info)
    page = render_html(entries, info)
    schema = json.dumps(submission_schema(), indent=1) + "\n"
    written = []
    for name, text in (("README.md", readme), ("index.html", page), (SCHEMA_FILE, schema)):
        with atomic_write(board / name, "w") as fh:
            fh.write(text)
        written.append(board / name)
    return BuildResult(entries, written, info)


def rank(entries: list[Entry]) -> list[Entry]:
    """Entries sorted by the headline (mean over seeds, ascending; missing values last)."""
    def key(e):
        v = e.value("headline", HEADLINE)["mean"]
        return (v is None, v if v is not None else 0.0, e.key)
    return sorted(entries, key=key)


# ------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class Column:
    """A numeric leaderboard column: aggregate section and name, label, unit."""

    section: str
    name: str
    label: str
    split: str = "test"


def columns(entries: list[Entry]) -> list[Column]:
    """The numeric columns of the table (headline first), from the metric keys that exist."""
    keys = list(dict.fromkeys(k for e in entries for k in e.metrics["aggregate"].get("test", {}).get("headline", {})))
    band = _first_window_key(dict.fromkeys(keys), "aligned")
    w = band[len("band_grid_"):-len("_aligned_mev")] if band else "w1"
    half = w[1:] if w.startswith("w") else w
    cols = [Column("headline", HEADLINE, "H MAE spin-diag real (meV)"),
            Column("headline", "overall_real_mev", "H MAE real, 4 blocks (meV)"),
            Column("headline", "overall_imag_mev", "H MAE imag, 4 blocks (meV)")]
    if band:
        cols.append(Column("headline", band, f"bands E_F±{half} eV, aligned (meV)"))
    for name, label in (("gap_error_mev", "gap error (meV)"), ("soc_splitting_error_mev", "SOC splitting error (meV)"),
                        (f"ghost_states_{w}_per_k", f"ghost states E_F±{half} eV (per k)"),
                        ("ghost_states_below_per_k", "states below the spectrum (per k)")):
        if name in keys:
            cols.append(Column("headline", name, label))
    cols.append(Column("headline", HEADLINE, "val: H MAE spin-diag real (meV)", split="val"))
    return cols


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if x != 0 and (abs(x) >= 1000 or abs(x) < 10 ** -digits):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.1f}"
    return f"{x:.{digits}f}"


def _pm(v: dict, sep: str = " ± ") -> str:
    if v["mean"] is None:
        return "—"
    return _fmt(v["mean"]) + (f"{sep}{_fmt(v['std'])}" if v.get("std") is not None else "")


def _params(n: int) -> str:
    if n == 0:
        return "0"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _training(meta) -> str:
    td = meta.training_data
    s = "+".join(td.splits) if td.splits else "none"
    return s + (" + external" if td.external_data else "")


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(entries: list[Entry], info: dict) -> str:
    """``leaderboard/README.md``: the ranked table (mean ± std over seeds), details of each entry."""
    cols = columns(entries)
    lines = ["# Materials-HAM-SOC leaderboard", "",
             "<!-- Generated by `materials-ham leaderboard build`; do not edit by hand. -->", "",
             f"Dataset **{info['name']}**, revision `{info['revision'] or 'n/a'}` (fingerprint "
             f"`{info['fingerprint'][:12]}`), split **test** ({info['n_test']} structures). Every number was "
             "recomputed from the submitted predictions by the trusted scorer when this page was built. Errors in "
             "meV (ghost states: states per k-point), mean ± sample std over seeds; ranked by the gauge-standardised "
             "MAE of the real part of the spin-diagonal H entries (edges < 8 Å, mean over structures). Band "
             f"metrics: {info['bands']['kgrid'][0]}x{info['bands']['kgrid'][1]}x{info['bands']['kgrid'][2]} grid. "
             "Definitions: the repository README, section \"Scoring\". Interactive table and plots: "
             "[index.html](index.html). How to submit: [CONTRIBUTING.md](CONTRIBUTING.md).", ""]
    head = ["#", "model"] + [c.label for c in cols] + ["params", "seeds", "training data", "date"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---"] + ["---:"] * len(cols) + ["---:"] * 2
                                                               + ["---"] * 2) + "|"]
    for i, e in enumerate(entries, 1):
        m = e.meta
        name = f"[{_md_escape(m.model_name)}]({m.paper or m.code.repository})" + (" *(baseline)*" if m.baseline else "")
        name += f" [details](submissions/{m.model_key}/metadata.yaml)"
        cells = [str(i), name] + [_pm(e.value(c.section, c.name, c.split)) for c in cols]
        cells += [_params(m.parameters), str(len(m.seeds)), _training(m), m.date.isoformat()]
        lines.append("| " + " | ".join(cells) + " |")
    if not entries:
        lines.append("| | *no entries yet* |" + " |" * (len(head) - 2))
    lines += ["", "## Entries", ""]
    for e in entries:
        m = e.meta
        lines += [f"### {_md_escape(m.model_name)} (`{m.model_key}`, version {_md_escape(m.version)})", "",
                  f"- authors: {_md_escape(', '.join(m.authors))}",
                  f"- code: <{m.code.repository}>" + (f" at `{m.code.commit}`" if m.code.commit else ""),
                  f"- reproduce: `{_md_escape(m.code.command)}`"]
        if m.paper:
            lines.append(f"- paper: <{m.paper}>")
        lines += [f"- licence: {_md_escape(m.license)}; parameters: {m.parameters:,}; "
                  f"hardware: {_md_escape(m.hardware)}"
                  f"; training cost: {m.training_cost.gpu_hours:g} GPU-hours"
                  + (f" ({_md_escape(m.training_cost.description)})" if m.training_cost.description else ""),
                  f"- training data: {_training(m)}" + (f" ({_md_escape(m.training_data.external_data_description)})"
                                                        if m.training_data.external_data_description else ""),
                  f"- seeds: {', '.join(map(str, m.seeds))}; validation score reported: "
                  + ("yes" if "val" in e.metrics["aggregate"] else "no"),
                  "- predictions: " + ", ".join(f"seed {p.seed} {p.split} `{p.sha256[:12]}`" for p in m.predictions)
                  + (f"; download: <{m.predictions_url}>" if m.predictions_url else "")]
        if m.notes:
            lines.append(f"- notes: {_md_escape(m.notes)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _log_labels(axis) -> None:
    """Plain-number labels on a log axis: decades and 2x, 5x minor ticks (no overlapping labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(fmt)
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axis.set_minor_formatter(fmt)
    axis.set_tick_params(which="minor", labelsize=7)


def plot_elements(entries: list[Entry]):
    """Figure: per-element spin-diag real MAE (meV, log scale), one bar per model, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from ase.data import chemical_symbols

    els = sorted({el for e in entries for el in e.metrics["aggregate"]["test"]["element"]},
                 key=lambda s: chemical_symbols.index(s) if s in chemical_symbols else 999)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.32 * len(els) * max(1, len(entries)) ** 0.5 + 2), 4.2))
    n = max(1, len(entries))
    width = 0.8 / n
    x = np.arange(len(els))
    for k, e in enumerate(entries):
        agg = e.metrics["aggregate"]["test"]["element"]
        mean = np.array([np.nan if (agg.get(el) or {}).get("mean") is None else agg[el]["mean"] for el in els])
        std = np.array([(agg.get(el) or {}).get("std") or 0.0 for el in els])
        ax.bar(x + (k - (n - 1) / 2) * width, mean, width, yerr=std if std.any() else None, capsize=2,
               label=e.meta.model_name,
               color=f"C{k % 10}", error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, els, rotation=90 if len(els) > 30 else 0, fontsize=8)
    ax.set_xlim(-0.6, len(els) - 0.4)
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * (hi / lo) ** 0.25)           # head room for the legend above the bars
    _log_labels(ax.yaxis)
    ax.set_ylabel("H MAE spin-diag real (meV)")
    ax.set_title("Error by element (blocks with an atom of the element; mean over structures, ± std over seeds)",
                 fontsize=9)
    if entries:
        ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", which="both", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def plot_scatter(entries: list[Entry]):
    """Figure: band error vs matrix error (meV, log-log): one point per test structure (mean over
    seeds) and one large marker per model (mean over structures, error bars = std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    band_label = "band error (meV)"
    for k, e in enumerate(entries):
        runs = e.metrics["runs"]["test"]
        xs, ys = [], []
        for i, row in enumerate(runs[0]["per_structure"]):
            mx = [r["per_structure"][i]["spin_diag_real"] for r in runs]
            by = [r["per_structure"][i]["band_error"] for r in runs]
            if any(v is None for v in mx + by):
                continue
            xs.append(sum(mx) / len(mx))
            ys.append(sum(by) / len(by))
        ax.scatter(xs, ys, s=14, alpha=0.55, color=f"C{k % 10}", label=f"{e.meta.model_name}: structures ({len(xs)})")
        head = e.metrics["aggregate"]["test"]["headline"]
        bkey = _first_window_key(head, "aligned")
        if bkey:
            band_label = f"band error, E_F±{bkey[len('band_grid_w'):-len('_aligned_mev')]} eV, grid, aligned (meV)"
            hx, hy = head[HEADLINE], head[bkey]
            if hx["mean"] is not None and hy["mean"] is not None:
                ax.errorbar(hx["mean"], hy["mean"], xerr=hx["std"] or 0, yerr=hy["std"] or 0, fmt="D", ms=9,
                            color=f"C{k % 10}", mec="k", capsize=3, label=f"{e.meta.model_name}: mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_labels(ax.xaxis)
    _log_labels(ax.yaxis)
    ax.set_xlabel("H MAE spin-diag real (meV)")
    ax.set_ylabel(band_label)
    ax.set_title("Band error vs matrix error (test structures)", fontsize=9)
    ax.grid(which="both", color="0.92", lw=0.6)
    if entries:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;max-width:1320px;
 color:#1d2430;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}
p.meta{color:#4a5563;font-size:.92em;line-height:1.45}
.scroll{overflow-x:auto}
table.board{border-collapse:collapse;font-size:.84em;width:100%}
table.board th,table.board td{border-bottom:1px solid #dde2ea;padding:5px 6px;text-align:right;white-space:nowrap}
table.board th{background:#f2f5f9;cursor:pointer;user-select:none;position:sticky;top:0;white-space:normal;
 vertical-align:bottom;font-weight:600}
table.board th.text,table.board td.text{text-align:left}
table.board tr.baseline td{background:#fbf7ea;font-style:italic}
table.board th[aria-sort=ascending]::after{content:' \\25B2'}
table.board th[aria-sort=descending]::after{content:' \\25BC'}
table.board td.headline{font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
.plots figure{margin:0;border:1px solid #dde2ea;padding:.5em;background:#fff}
.plots img{max-width:100%;height:auto;display:block}
figcaption{font-size:.82em;color:#4a5563;max-width:640px}
dl.entry{font-size:.88em;display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}
dl.entry dt{color:#4a5563}code{font-size:.92em;background:#f2f5f9;padding:0 .25em;border-radius:3px}
"""

_JS = r"""
(function(){
  function val(td){var v=td.getAttribute('data-v');if(v===null)return td.textContent.trim().toLowerCase();
    return v===''?Infinity:parseFloat(v);}
  document.querySelectorAll('table.board').forEach(function(t){
    var ths=t.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths,function(th,i){
      th.title='click to sort';
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        Array.prototype.forEach.call(ths,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);
          if(x===y)return 0;if(x===Infinity)return 1;if(y===Infinity)return -1;
          return (x<y?-1:1)*(asc?1:-1);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
    // index.html#sort=N or #sort=N-desc sorts by column N (0-based) on load (used by the tests)
    var m=location.hash.match(/^#sort=(\d+)(-desc)?$/);
    if(m&&ths[+m[1]]){ths[+m[1]].click();if(m[2])ths[+m[1]].click();}
  });
})();
"""


def render_html(entries: list[Entry], info: dict) -> str:
    """``leaderboard/index.html``: self-contained (inline CSS, JS and base64 PNG plots; no network)."""
    import matplotlib.pyplot as plt

    esc = html.escape
    cols = columns(entries)
    head = ["#", "model"] + [c.label for c in cols] + ["params", "seeds", "training data", "date"]
    text_cols = {1, len(head) - 2}
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width,initial-scale=1'>",
             "<title>Materials-HAM-SOC leaderboard</title>", f"<style>{_CSS}</style></head><body>",
             "<!-- Generated by `materials-ham leaderboard build`; do not edit by hand. -->",
             "<h1>Materials-HAM-SOC leaderboard</h1>",
             f"<p class='meta'>Dataset <b>{esc(info['name'])}</b>, revision "
             f"<code>{esc(info['revision'] or 'n/a')}</code>"
             f" (fingerprint <code>{esc(info['fingerprint'][:12])}</code>), split <b>test</b> ({info['n_test']} "
             "structures). Every number was recomputed from the submitted predictions by the trusted scorer. Errors "
             "in meV (ghost states: states per k-point), mean ± sample std over seeds. Ranked by the gauge-"
             "standardised MAE of the real part of the spin-diagonal H entries (edges &lt; 8 Å, mean over "
             "structures). Click a column header to sort.</p>",
             "<div class='scroll'><table class='board' id='board'><thead><tr>"
             + "".join(f"<th class='{'text' if i in text_cols else 'num'}'>{esc(h)}</th>" for i, h in enumerate(head))
             + "</tr></thead><tbody>"]
    for i, e in enumerate(entries, 1):
        m = e.meta
        link = m.paper or m.code.repository
        cells = [f"<td data-v='{i}'>{i}</td>",
                 f"<td class='text'><a href='{esc(link)}'>{esc(m.model_name)}</a>"
                 + (" <small>(baseline)</small>" if m.baseline else "")
                 + f" <small><a href='submissions/{esc(m.model_key)}/metadata.yaml'>details</a></small></td>"]
        for j, c in enumerate(cols):
            v = e.value(c.section, c.name, c.split)
            dv = "" if v["mean"] is None else repr(float(v["mean"]))
            cells.append(f"<td data-v='{dv}' class='{'headline' if j == 0 else ''}'>{esc(_pm(v))}</td>")
        cells += [f"<td data-v='{m.parameters}'>{_params(m.parameters)}</td>", f"<td data-v='{len(m.seeds)}'>"
                  f"{len(m.seeds)}</td>", f"<td class='text'>{esc(_training(m))}</td>",
                  f"<td>{m.date.isoformat()}</td>"]
        parts.append(f"<tr class='{'baseline' if m.baseline else ''}'>" + "".join(cells) + "</tr>")
    if not entries:
        parts.append(f"<tr><td colspan='{len(head)}' class='text'>No entries yet.</td></tr>")
    parts.append("</tbody></table></div>")
    if entries:
        figs = [(plot_elements(entries), "Per-element error: spin-diagonal real MAE of the blocks with an atom of "
                                         "each element (log scale); error bars: std over seeds."),
                (plot_scatter(entries), "Band error vs matrix error: small dots are test structures (mean over "
                                        "seeds), diamonds the model means (± std over seeds).")]
        parts.append("<h2>Plots</h2><div class='plots'>")
        for fig, caption in figs:
            parts.append(f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{_png(fig)}'>"
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
            plt.close(fig)
        parts.append("</div><h2>Entries</h2>")
        for e in entries:
            m = e.meta
            rows = [("key / version", f"<code>{esc(m.model_key)}</code> / {esc(m.version)}"),
                    ("authors", esc(", ".join(m.authors))),
                    ("code", f"<a href='{esc(m.code.repository)}'>{esc(m.code.repository)}</a>"
                             + (f" at <code>{esc(m.code.commit)}</code>" if m.code.commit else "")),
                    ("reproduce", f"<code>{esc(m.code.command)}</code>"),
                    ("paper", f"<a href='{esc(m.paper)}'>{esc(m.paper)}</a>" if m.paper else "—"),
                    ("licence", esc(m.license)), ("parameters", f"{m.parameters:,}"), ("hardware", esc(m.hardware)),
                    ("training cost", f"{m.training_cost.gpu_hours:g} GPU-hours"
                     + (f" ({esc(m.training_cost.description)})" if m.training_cost.description else "")),
                    ("training data", esc(_training(m)) + (f" ({esc(m.training_data.external_data_description)})"
                                                           if m.training_data.external_data_description else "")),
                    ("seeds", esc(", ".join(map(str, m.seeds)))),
                    ("predictions", "<br>".join(f"seed {p.seed} {p.split}: <code>{p.sha256}</code>"
                                                for p in m.predictions)
                     + (f"<br><a href='{esc(m.predictions_url)}'>download</a>" if m.predictions_url else ""))]
            if m.notes:
                rows.append(("notes", esc(m.notes)))
            parts.append(f"<h3>{esc(m.model_name)}</h3><dl class='entry'>"
                         + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
