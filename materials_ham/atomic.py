"""File helpers: atomic writes (temporary name in the target folder, then rename) and checksums.

A reader never sees a half-written file, and a failed write leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """``with atomic_write(p) as fh: ...`` writes ``p`` all-or-nothing (permissions follow the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_directory(path: str | os.PathLike):
    """``with atomic_directory(p) as tmp: ...`` builds a folder in ``tmp`` and renames it to ``p``.

    The temporary folder sits beside ``p`` (same filesystem); an existing ``p`` is replaced only
    once the new one is complete, and a failure leaves ``p`` as it was and no temporary behind.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file holding one object; :class:`FormatError` naming the file otherwise."""
    from .errors import FormatError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise FormatError(f"unreadable JSON ({type(err).__name__}: {err})", subject=str(path)) from None
    if not isinstance(data, dict):
        raise FormatError("expected a JSON object", subject=str(path))
    return data
