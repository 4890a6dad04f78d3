"""The Hugging Face Hub: publish a packed dataset, resolve names, download or stream a split.

Names (:func:`resolve`):

* a local dataset folder (store.zarr + index.parquet + manifest.json) is used in place;
* ``"materials-ham-soc"`` is the official dataset: repo :data:`OFFICIAL_REPO` at the pinned revision
  :data:`OFFICIAL_REVISION`, overridable with ``$MATERIALS_HAM_REPO`` / ``$MATERIALS_HAM_REVISION``.
  **The official repo is not published yet**; until it is, downloading by this name fails with a
  message saying so (point ``$MATERIALS_HAM_REPO`` at a repo you published, or use a local folder);
* ``"ORG/NAME"`` is that Hub dataset repo, at ``revision`` (default ``main``).

A revision (branch, tag) is resolved once to its commit, and every file is fetched at that commit,
so a download never mixes two versions.

Download (:func:`download`) fetches, with ``hf_hub_download`` one file at a time (resumable, cached
and deduplicated by huggingface_hub in ``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``):
``manifest.json``, ``index.parquet``, every ``zarr.json``, the card, and **only the shard files that
hold the rows of the requested split** (from the index offsets and each array's shard shape,
:func:`materials_ham.store.layout.shard_key`).  Each file is checked against the sha256 and size in
the manifest; a mismatch is a :class:`FormatError` naming the file, and the bad copy is removed from
the cache.  The verified files are then linked (symlinks; copies where links are impossible) into a
*view*, a dataset folder that :func:`materials_ham.store.open_store` opens::

    $MATERIALS_HAM_CACHE/datasets/<org>--<name>/<commit>/     (default ~/.cache/materials-ham)

Shards of splits not downloaded are absent from the view, and the store reader refuses a missing
shard file (it never reads it as zeros).

Streaming (:func:`open_streaming`) opens the store in place over ``hf://`` (``HfFileSystem``): only the
byte ranges of the shard indexes and inner chunks a read needs are fetched (a whole shard file when a
read needs all of its chunks); nothing is written to disk.  The small files (index, ``zarr.json``) are
checked against the manifest's sha256; shard data is checked by the crc32c of each inner chunk.

Offline (``HF_HUB_OFFLINE=1``): a cached view is used without any request; anything missing fails at
once with a message saying how to get the data or to generate it locally.

Publishing (:func:`publish`) refuses a dataset that does not pass
:func:`~materials_ham.store.verify_dataset`, and commits the files in batches (shards first; the
manifest and the card, as ``README.md``, in the last commit), so that an interrupted upload is
resumed by running it again: files already on the Hub with the same content are skipped by
huggingface_hub (``create_commit`` compares each file with the remote one before uploading it).
The token comes from the usual places (``HF_TOKEN``, ``hf auth login``) or an explicit argument, and
is never printed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import file_sha256, read_json_object
from .errors import FormatError, HubError, MaterialsHamError
from .store import layout as L

#: The short name of the official dataset.
OFFICIAL_NAME = "materials-ham-soc"
#: Hub repo of the official dataset (not published yet).
OFFICIAL_REPO = "materials-ham/materials-ham-soc"
#: Revision of the official dataset this version of the package loads: the tag of its first release
#: (``materials-ham publish ... --tag v1.0``).  A tag, not a branch, so that a later upload to ``main``
#: does not change what this version loads.
OFFICIAL_REVISION = "v1.0"
REPO_ENV = "MATERIALS_HAM_REPO"
REVISION_ENV = "MATERIALS_HAM_REVISION"
CACHE_ENV = "MATERIALS_HAM_CACHE"
DEFAULT_CACHE = Path("~/.cache/materials-ham")
REPO_TYPE = "dataset"
#: The card is uploaded as the repo's README.md (the Hub shows it; ``datasets`` reads its configs).
README = "README.md"
CARD_FILE = "dataset_card.md"
#: Publish: most files and bytes per commit.
COMMIT_FILES = 500
COMMIT_BYTES = 8 << 30

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHARD = re.compile(rf"^{re.escape(L.STORE_DIR)}/([^/]+)/c/")


# ----------------------------------------------------------------------------------- names
@dataclass(frozen=True)
class Location:
    """Where a dataset lives: a local folder (``path``) or a Hub dataset repo (``repo_id`` at ``revision``)."""

    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    official: bool = False

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        return str(self.path) if self.is_local else f"{self.repo_id}@{self.revision}"


def resolve(name_or_path: "str | os.PathLike | Location", revision: str | None = None) -> Location:
    """Where ``name_or_path`` points (see the module docstring); raises :class:`MaterialsHamError` if nowhere."""
    if isinstance(name_or_path, Location):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if revision is not None:
            raise MaterialsHamError("a revision applies to Hub datasets, not to a local folder", subject=text)
        return Location(path=path)
    if text.lower() == OFFICIAL_NAME:
        repo = os.environ.get(REPO_ENV) or OFFICIAL_REPO
        rev = revision or os.environ.get(REVISION_ENV) or OFFICIAL_REVISION
        return Location(repo_id=_check_repo_id(repo, REPO_ENV), revision=rev, official=True)
    if _REPO_ID.match(text) and not path.exists():
        return Location(repo_id=text, revision=revision or "main")
    if path.exists():
        raise MaterialsHamError("not a dataset folder", subject=text)
    raise MaterialsHamError(f"no such dataset folder, and not a Hub repo id ORG/NAME nor the name {OFFICIAL_NAME!r}",
                            subject=text)


def _check_repo_id(repo_id: str, what: str = "repo") -> str:
    if not _REPO_ID.match(repo_id or ""):
        raise MaterialsHamError(f"{what}: {repo_id!r} is not a Hub repo id of the form ORG/NAME")
    return repo_id


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The materials-ham cache: ``cache_dir``, else ``$MATERIALS_HAM_CACHE``, else ``~/.cache/materials-ham``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` set (read now, and as huggingface_hub read it at import)."""
    from huggingface_hub import constants

    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _get_help(loc: Location, split: str | None) -> str:
    what = f"materials-ham download {OFFICIAL_NAME if loc.official else loc.repo_id}" + (
        f" --split {split}" if split else "") + ("" if loc.official else f" --revision {loc.revision}")
    return (f"to get it, run `{what}` with network access (HF_HUB_OFFLINE unset); or generate the data locally "
            "(`materials-ham demo`, or `materials-ham structures` + `generate` + `pack`) and pass the dataset "
            "folder's path instead of a name")


@contextmanager
def _hub_errors(loc: Location, split: str | None = None, action: str = "read"):
    """Map huggingface_hub/network exceptions to one-line :class:`HubError` messages (never a token)."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError, RevisionResolutionError)

    subject = f"{loc.repo_id}@{loc.revision}"
    try:
        yield
    except GatedRepoError:
        raise HubError("the repo is gated: accept its conditions on the Hub and log in (`hf auth login`)",
                       subject=subject) from None
    except RepositoryNotFoundError:
        hint = (f" The official dataset ({OFFICIAL_REPO}) is not published yet: set {REPO_ENV}=ORG/NAME to a repo "
                "you published, or pass a local dataset folder." if loc.official and loc.repo_id == OFFICIAL_REPO
                else " If it is private, log in (`hf auth login`) or set HF_TOKEN.")
        if action == "write":
            hint = " Check the repo id and that your token may write to it (`hf auth login` or HF_TOKEN)."
        raise HubError(f"dataset repo not found on {_endpoint()} (or no access).{hint}", subject=subject) from None
    except RevisionNotFoundError:
        raise HubError(f"revision {loc.revision!r} not found in the repo", subject=subject) from None
    except RemoteEntryNotFoundError as err:
        raise HubError(f"a file is missing from the repo (incomplete upload? publish again): {_first_line(err)}",
                       subject=subject) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, RevisionResolutionError):
        state = "offline (HF_HUB_OFFLINE=1)" if is_offline() else f"the Hub ({_endpoint()}) cannot be reached"
        raise HubError(f"{state} and {'split ' + repr(split) if split else 'the dataset'} is not in the cache; "
                       + _get_help(loc, split), subject=subject) from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubError(f"not authorised to {action} (HTTP {status}): log in with `hf auth login` or set HF_TOKEN",
                           subject=subject) from None
        raise HubError(f"the Hub answered HTTP {status}: {_first_line(err)}", subject=subject) from None
    except Exception as err:  # noqa: BLE001 - network errors of httpx2 (not importable by a stable name)
        if type(err).__module__.split(".")[0] in ("httpx", "httpx2") or isinstance(err, ConnectionError):
            raise HubError(f"cannot reach the Hub at {_endpoint()} ({type(err).__name__}: {_first_line(err)}); "
                           "set HF_HUB_OFFLINE=1 to use the local cache", subject=subject) from None
        raise


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


# --------------------------------------------------------------------------------- publish
@dataclass
class PublishResult:
    """What :func:`publish` did: the repo, the revision and its final commit, files and bytes published."""

    repo_id: str
    revision: str
    commit: str
    url: str
    n_files: int
    n_bytes: int
    commits: list[str] = field(default_factory=list)
    tag: str | None = None


def publish(dataset: str | os.PathLike, repo_id: str, *, revision: str = "main", private: bool = False,
            token: str | None = None, tag: str | None = None, commit_files: int = COMMIT_FILES,
            commit_bytes: int = COMMIT_BYTES, log: Callable[[str], None] | None = None) -> PublishResult:
    """Upload the packed dataset folder ``dataset`` to the Hub dataset repo ``repo_id`` (``ORG/NAME``).

    Uploads every file of the manifest (store.zarr, index.parquet, card, plot), ``manifest.json``, and
    ``dataset_card.md`` again as ``README.md``; removes shard files of an earlier version that the
    dataset no longer has.  ``revision``: the branch to commit to (created from ``main`` if absent);
    ``private``: visibility of a repo created now; ``tag``: also tag the final commit (e.g. the
    release's ``v1.0``).  Refuses a dataset that fails :func:`~materials_ham.store.verify_dataset` or
    has no card.  Resumable: re-running skips the files already on the Hub.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from .store import verify_dataset
    from .store.manifest import read_manifest

    root = Path(dataset)
    _check_repo_id(repo_id)
    say = log or (lambda msg: None)
    report = verify_dataset(root)
    if not report.ok:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise FormatError(f"refusing to publish a dataset that does not verify: {report.problems[0]}{more}; "
                          "run `materials-ham verify` on it", subject=str(root))
    listed = read_manifest(root)["files"]
    if CARD_FILE not in listed:
        raise FormatError(f"the dataset has no {CARD_FILE}: run `materials-ham card {root}` first", subject=str(root))
    rels = sorted(listed, key=lambda r: (not _SHARD.match(r), r))         # shards first, then metadata
    loc = Location(repo_id=repo_id, revision=revision)
    api = HfApi(token=token)
    with _hub_errors(loc, action="write"):
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
        info = api.dataset_info(repo_id, revision=revision)
        head, remote = info.sha, {f.rfilename for f in info.siblings or []}
        stale = sorted(p for p in remote if p.startswith(L.STORE_DIR + "/") and p not in listed)
        batches = list(_batches(rels, lambda r: listed[r]["size"], commit_files, commit_bytes))
        final = [L.MANIFEST_FILE, README]
        commits = []
        for k, batch in enumerate(batches + [final]):
            ops = [CommitOperationAdd(path_in_repo=r, path_or_fileobj=str(root / r)) for r in batch
                   if r != README]
            if k == len(batches):
                ops.append(CommitOperationAdd(path_in_repo=README, path_or_fileobj=str(root / CARD_FILE)))
                ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
            size = sum((root / r).stat().st_size for r in batch if r != README)
            say(f"commit {k + 1}/{len(batches) + 1}: {len(ops)} file(s), {size / 2**20:.1f} MiB")
            with _quiet_noop_commit():
                done = api.create_commit(repo_id, ops, repo_type=REPO_TYPE, revision=revision,
                                         commit_message=f"materials-ham publish ({k + 1}/{len(batches) + 1})")
            if done.oid == head:
                say("  unchanged: already on the Hub")
            head = done.oid
            commits.append(done.oid)
        if tag:
            api.create_tag(repo_id, tag=tag, revision=commits[-1], repo_type=REPO_TYPE, exist_ok=False)
    n_bytes = sum(e["size"] for e in listed.values()) + (root / L.MANIFEST_FILE).stat().st_size
    prefix = f"{_endpoint()}/datasets/{repo_id}"
    return PublishResult(repo_id, revision, commits[-1], prefix if revision == "main" else f"{prefix}/tree/{revision}",
                         len(listed) + 2, n_bytes, commits, tag)


@contextmanager
def _quiet_noop_commit():
    """Drop huggingface_hub's warning about a skipped empty commit (publish reports it itself)."""
    import logging

    logger = logging.getLogger("huggingface_hub.hf_api")
    drop = lambda record: "No files have been modified" not in record.getMessage()  # noqa: E731
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _batches(items: list[str], size: Callable[[str], int], max_files: int, max_bytes: int) -> Iterable[list[str]]:
    batch, total = [], 0
    for item in items:
        if batch and (len(batch) >= max_files or total + size(item) > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size(item)
    if batch:
        yield batch


# -------------------------------------------------------------------------------- download
@dataclass
class View:
    """A downloaded dataset: the local folder (a view of symlinks into the HF cache) and where it came from."""

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    downloaded: list[str] = field(default_factory=list)


def view_dir(repo_id: str, commit: str, cache_dir: str | os.PathLike | None = None) -> Path:
    org, name = repo_id.split("/")
    return cache_root(cache_dir) / "datasets" / f"{org}--{name}" / commit


def download(name_or_path: "str | os.PathLike | Location", *, split: str | None = None, revision: str | None = None,
             cache_dir: str | os.PathLike | None = None, token: str | None = None, max_workers: int = 8,
             progress: bool = False) -> View:
    """Download the files of ``split`` (all splits if None) of a Hub dataset into a local view; see the module.

    A local folder is returned as is.  Files already in the view are not fetched again; files in
    the huggingface_hub cache are not downloaded again.
    """
    loc = resolve(name_or_path, revision)
    if loc.is_local:
        return View(loc.path)
    from huggingface_hub import HfApi

    offline = is_offline()
    with _hub_errors(loc, split):
        commit = HfApi(token=token).resolve_revision(loc.repo_id, repo_type=REPO_TYPE, revision=loc.revision,
                                                     local_files_only=offline).resolved
        view = view_dir(loc.repo_id, commit, cache_dir)
        fetch = _Fetcher(loc, commit, view, token, offline)
        fetch.files([L.MANIFEST_FILE], verify=False)
        manifest = read_json_object(view / L.MANIFEST_FILE)
        fetch.manifest = manifest.get("files") if isinstance(manifest.get("files"), dict) else None
        if fetch.manifest is None:
            raise FormatError("manifest has no 'files' table", subject=fetch.label(L.MANIFEST_FILE))
        unsafe = [r for r in fetch.manifest if not _safe_relative(r)]
        if unsafe:  # the view is built from these paths: never let one point outside it
            raise FormatError(f"manifest lists a path outside the dataset: {unsafe[0]!r}",
                              subject=fetch.label(L.MANIFEST_FILE))
        fetch.files([r for r in sorted(fetch.manifest) if not _SHARD.match(r)])
        index = _read_index(view)
        rows = split_rows(index, split, fetch.label(L.INDEX_FILE))
        needed = needed_shards(view, index, rows, fetch.manifest, fetch.label)
        fetch.files(needed, max_workers=max_workers, progress=progress)
    return View(view, loc.repo_id, loc.revision, commit, fetch.downloaded)


class _Fetcher:
    """Fetch files of one commit into a view: hf_hub_download, check against the manifest, link."""

    def __init__(self, loc: Location, commit: str, view: Path, token, offline: bool):
        self.loc, self.commit, self.view, self.token, self.offline = loc, commit, view, token, offline
        self.manifest: dict | None = None
        self.downloaded: list[str] = []

    def label(self, rel: str) -> str:
        return f"hf://datasets/{self.loc.repo_id}@{self.commit}/{rel}"

    def files(self, rels: list[str], *, verify: bool = True, max_workers: int = 1, progress: bool = False) -> None:
        """Fetch, check and link the files ``rels`` not yet in the view (``max_workers`` threads)."""
        todo = [r for r in rels if not os.path.exists(self.view / r)]   # follows links: a dangling one is redone
        if not todo:
            return
        if self.offline:  # fail at once if anything is not in the huggingface_hub cache either
            from huggingface_hub import try_to_load_from_cache

            missing = [r for r in todo if not isinstance(try_to_load_from_cache(
                self.loc.repo_id, r, revision=self.commit, repo_type=REPO_TYPE), str)]
            if missing:
                from huggingface_hub.errors import LocalEntryNotFoundError

                raise LocalEntryNotFoundError(f"{len(missing)} file(s) not cached, e.g. {missing[0]}")
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="download", unit="file", disable=not progress)
        self._one(todo[0], verify)            # one first: an unreachable Hub fails once, not once per file
        bar.update()
        pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo) - 1)))
        try:
            for f in [pool.submit(self._one, r, verify) for r in todo[1:]]:
                f.result()
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()

    def _one(self, rel: str, verify: bool) -> None:
        from huggingface_hub import hf_hub_download

        if verify and rel not in (self.manifest or {}):
            raise FormatError("file is not listed in the manifest", subject=self.label(rel))
        path = hf_hub_download(self.loc.repo_id, rel, repo_type=REPO_TYPE, revision=self.commit, token=self.token,
                               local_files_only=self.offline, tqdm_class=_silent_tqdm())  # one bar for all files
        blob = Path(os.path.realpath(path))
        if verify:
            entry = self.manifest[rel]
            size = blob.stat().st_size
            bad = (f"size {size} bytes, the manifest says {entry.get('size')}" if size != entry.get("size") else
                   "sha256 differs from the manifest" if file_sha256(blob) != entry.get("sha256") else None)
            if bad:
                for p in {Path(path), blob}:  # quarantine: the next run downloads it anew
                    Path(p).unlink(missing_ok=True)
                raise FormatError(f"corrupted download: {bad}; the bad copy was removed from the cache, "
                                  "run again to download it anew", subject=self.label(rel))
        _link(blob, self.view / rel)
        self.downloaded.append(rel)


def _safe_relative(rel: str) -> bool:
    """A plain relative POSIX path inside the dataset folder (no '..', no absolute path, no backslash)."""
    parts = rel.split("/")
    return bool(rel) and "\\" not in rel and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _silent_tqdm():
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def _link(target: Path, where: Path) -> None:
    """Atomically make ``where`` a symlink to ``target`` (a copy where symlinks are not allowed)."""
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = where.with_name(f".{where.name}.{os.getpid()}.{id(target)}.tmp")
    try:
        os.symlink(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, where)


def _read_index(root: Path):
    from .store.reader import read_index

    return read_index(root / L.INDEX_FILE)


def split_rows(index, split: str | None, where: str = L.INDEX_FILE) -> np.ndarray:
    """Positions (storage order) of the structures of ``split`` (all if None); an unknown split is an error."""
    if split is None:
        return np.arange(len(index))
    if "split" not in index.columns:
        raise FormatError("the index has no 'split' column", subject=where)
    names = sorted({str(s) for s in index["split"].dropna()})
    if split not in names:
        raise MaterialsHamError(f"no split {split!r} in the dataset; it has: {', '.join(names) or 'none'}",
                                subject=where)
    return np.nonzero((index["split"] == split).to_numpy())[0]


def needed_shards(root: Path, index, rows: np.ndarray, manifest: dict, label=str) -> list[str]:
    """Relative paths of the shard files holding the rows of structures ``rows`` in every array.

    Structure k owns rows [``<unit>_start``, ``<unit>_stop``) of an array of row unit ``unit``
    (row k of per-structure arrays); rows [a, b) of an array with shards of R rows live in shard
    files a // R .. (b - 1) // R.  Arrays the layout does not know (and the small ``offsets``) are
    taken whole.  ``root``: the folder holding the ``zarr.json`` files; ``index``: its index DataFrame.
    """
    out = []
    for rel in sorted(manifest):
        m = re.fullmatch(rf"{re.escape(L.STORE_DIR)}/([^/]+)/zarr\.json", rel)
        if not m:
            continue
        name = m.group(1)
        meta = read_json_object(root / rel)
        try:
            shape = [int(x) for x in meta["shape"]]
            shard_rows = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        except (KeyError, TypeError, ValueError, IndexError):
            raise FormatError("array metadata lacks shape or chunk grid", subject=label(rel)) from None
        n_shards = -(-shape[0] // shard_rows) if shape[0] else 0
        spec = L.ARRAYS.get(name)
        if spec is None:
            shards = np.arange(n_shards)
        elif spec.unit == "structure":
            shards = np.unique(rows // shard_rows)
        else:
            u = spec.unit
            a = index[L.start_column(u)].to_numpy(np.int64)[rows]
            b = index[L.stop_column(u)].to_numpy(np.int64)[rows]
            keep = b > a
            a, b = a[keep] // shard_rows, (b[keep] - 1) // shard_rows
            mark = np.zeros(n_shards + 1, np.int64)          # difference array: +1 at a, -1 after b
            np.add.at(mark, a, 1)
            np.add.at(mark, b + 1, -1)
            shards = np.nonzero(np.cumsum(mark)[:n_shards] > 0)[0]
        for s in shards.tolist():
            key = f"{L.STORE_DIR}/{L.shard_key(name, s, len(shape))}"
            if key not in manifest:
                raise FormatError(f"shard {key} is not listed in the manifest", subject=label(L.MANIFEST_FILE))
            out.append(key)
    return out


# ------------------------------------------------------------------------------- streaming
@dataclass(frozen=True)
class RemoteSource:
    """A Hub dataset read in place over ``hf://`` (picklable: each process opens its own filesystem)."""

    repo_id: str
    commit: str
    endpoint: str
    token: str | None = field(default=None, repr=False)
    block_size: int = 1 << 18

    @property
    def root(self) -> str:
        return f"datasets/{self.repo_id}@{self.commit}"

    def filesystem(self):
        from huggingface_hub import HfFileSystem

        # small blocks: zarr asks for exact byte ranges (shard index, inner chunks), read-ahead is waste
        return HfFileSystem(endpoint=self.endpoint, token=self.token, block_size=self.block_size)

    def open(self):
        from .store import open_store

        return open_store(self.root, fs=self.filesystem())

    def __str__(self) -> str:
        return f"hf://{self.root}"


def open_streaming(name_or_path: "str | os.PathLike | Location", *, revision: str | None = None,
                   token: str | None = None, split: str | None = None) -> tuple[RemoteSource, Location]:
    """Resolve a Hub dataset for reading in place; checks index.parquet and every zarr.json against the manifest.

    Offline, streaming is impossible: raises :class:`HubError` (callers fall back to a cached view).
    """
    loc = resolve(name_or_path, revision)
    if loc.is_local:
        raise MaterialsHamError("streaming applies to Hub datasets; a local folder is read in place anyway",
                                subject=str(loc.path))
    from huggingface_hub import HfApi

    with _hub_errors(loc, split):
        if is_offline():
            from huggingface_hub.errors import OfflineModeIsEnabled

            raise OfflineModeIsEnabled("streaming needs the network")
        commit = HfApi(token=token).resolve_revision(loc.repo_id, repo_type=REPO_TYPE, revision=loc.revision).resolved
        src = RemoteSource(loc.repo_id, commit, _endpoint(), token)
        fs = src.filesystem()
        manifest = json.loads(fs.cat_file(f"{src.root}/{L.MANIFEST_FILE}"))
        files = manifest.get("files", {})
        small = [r for r in files if r == L.INDEX_FILE or r.endswith("zarr.json")]
        for rel, data in zip(small, _cat_many(fs, [f"{src.root}/{r}" for r in small])):
            if hashlib.sha256(data).hexdigest() != files[rel].get("sha256"):
                raise FormatError("sha256 differs from the manifest (corrupted transfer or repo)",
                                  subject=f"hf://{src.root}/{rel}")
    return src, loc


def _cat_many(fs, paths: list[str]) -> list[bytes]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fs.cat_file, paths))


def cached_view(loc: Location, split: str | None, cache_dir=None, token=None) -> View | None:
    """The cached view of ``loc`` if it holds every file ``split`` needs (no network), else None."""
    try:
        from huggingface_hub import HfApi

        commit = loc.revision if _COMMIT.match(loc.revision or "") else HfApi(token=token).resolve_revision(
            loc.repo_id, repo_type=REPO_TYPE, revision=loc.revision, local_files_only=True).resolved
        view = view_dir(loc.repo_id, commit, cache_dir)
        manifest = read_json_object(view / L.MANIFEST_FILE)["files"]
        meta = [r for r in manifest if not _SHARD.match(r)]
        if not all(os.path.exists(view / r) for r in meta):
            return None
        index = _read_index(view)
        if all(os.path.exists(view / r) for r in needed_shards(view, index, split_rows(index, split), manifest)):
            return View(view, loc.repo_id, loc.revision, commit)
    except Exception:  # noqa: BLE001 - anything missing or unreadable: not a usable cache hit
        return None
    return None


__all__ = ["OFFICIAL_NAME", "OFFICIAL_REPO", "OFFICIAL_REVISION", "REPO_ENV", "REVISION_ENV", "CACHE_ENV",
           "Location", "resolve", "cache_root", "is_offline", "publish", "PublishResult", "download", "View",
           "view_dir", "split_rows", "needed_shards", "RemoteSource", "open_streaming", "cached_view"]
