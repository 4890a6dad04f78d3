"""The dataset manifest: sha256 and size of every file, so that any change is detectable.

``manifest.json`` = ``{"store_format_version": 1, "algorithm": "sha256",
"files": {relative/posix/path: {"size": bytes, "sha256": hex}}}`` over every file of the
dataset directory except the manifest itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_write, file_sha256
from .layout import MANIFEST_FILE, STORE_FORMAT_VERSION



def dataset_files(root: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of every file under ``root`` except the manifest, sorted."""
    root = Path(root)
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST_FILE:
                out.append(rel)
    return sorted(out)


def build_manifest(root: str | os.PathLike) -> Path:
    """Hash every file of the dataset directory ``root`` and write ``root/manifest.json`` atomically."""
    root = Path(root)
    files = {rel: {"size": (root / rel).stat().st_size, "sha256": file_sha256(root / rel)}
             for rel in dataset_files(root)}
    manifest = {"store_format_version": STORE_FORMAT_VERSION, "algorithm": "sha256", "files": files}
    with atomic_write(root / MANIFEST_FILE, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    return root / MANIFEST_FILE


def read_manifest(root: str | os.PathLike) -> dict:
    """The parsed manifest; raises :class:`FormatError` naming the file if absent or unreadable."""
    from ..errors import FormatError

    path = Path(root) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except FileNotFoundError:
        raise FormatError("manifest is missing", subject=str(path)) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FormatError(f"manifest is unreadable ({type(err).__name__}: {err})", subject=str(path)) from None
    return manifest


def verify_manifest(root: str | os.PathLike, *, hashes: bool = True) -> list[str]:
    """Problems found comparing the files of ``root`` with its manifest (empty: all match).

    Each problem names the file's path.  With ``hashes=False`` only presence and sizes are checked.
    """
    from ..errors import FormatError

    root = Path(root)
    try:
        listed = read_manifest(root)["files"]
    except FormatError as err:
        return [str(err)]
    problems = []
    present = set(dataset_files(root))
    for rel in sorted(present - set(listed)):
        problems.append(f"{root / rel}: extra file, not listed in the manifest")
    for rel, entry in sorted(listed.items()):
        path = root / rel
        if rel not in present:
            problems.append(f"{path}: missing (listed in the manifest)")
            continue
        size = path.stat().st_size
        if size != entry.get("size"):
            problems.append(f"{path}: size {size} bytes, the manifest says {entry.get('size')}")
        elif hashes and file_sha256(path) != entry.get("sha256"):
            problems.append(f"{path}: sha256 differs from the manifest (file altered)")
    return problems
