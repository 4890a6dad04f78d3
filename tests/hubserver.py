"""A loopback server that emulates the Hugging Face Hub's HTTP protocol, for tests without internet.

It implements, on ``127.0.0.1`` only, the endpoints that ``huggingface_hub`` (HfApi, hf_hub_download,
HfFileSystem) and ``datasets.load_dataset`` call for publishing and downloading a dataset repo, with the
same URLs, JSON shapes, headers and error codes (``X-Error-Code``) as the Hub:

====================================================  ==========================================================
``POST /api/repos/create``                             create a repo (409 if it exists; initial commit with
                                                       ``.gitattributes``, as on the Hub)
``POST /api/validate-yaml``                            card front-matter check (accepts)
``GET  /api/{type}s/{repo}[/revision/{rev}]``          repo info: sha, private, siblings, cardData
``POST /api/{type}s/{repo}/preupload/{rev}``           upload modes: always ``"regular"`` (base64 in the
                                                       commit), with the remote git-blob oid for unchanged-file
                                                       detection
``POST /api/{type}s/{repo}/commit/{rev}``              NDJSON commit: header / file / deletedFile /
                                                       deletedFolder operations
``POST /api/{type}s/{repo}/branch/{branch}``           create a branch; ``POST .../tag/{rev}``: create a tag
``GET  /api/{type}s/{repo}/refs``                      branches and tags
``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]``       listing (``recursive``), one page
``POST /api/{type}s/{repo}/paths-info/{rev}``          info of given paths (form-encoded ``paths``)
``GET  /api/{type}s/{repo}/commits/{rev}``             commit history (for ``expand`` info)
``HEAD|GET /{type}s/{repo}/resolve/{rev}/{path}``      file content with ``ETag`` (git blob sha1),
                                                       ``X-Repo-Commit``, ``Content-Length``, and single
                                                       ``Range`` requests (206 / 416)
====================================================  ==========================================================

Not implemented: LFS/Xet transfers (the preupload answer asks for regular uploads, so the client never
uses them), pull requests, pagination (every listing is one page), and anything outside repos.

Writes, and reads of private repos, need ``Authorization: Bearer <token>`` with the server's token.
Test hooks: :attr:`HubServer.requests` logs ``(method, path, range)`` of every request;
:meth:`HubServer.corrupt` makes downloads of one file return altered bytes (same size and headers,
as a damaged transfer would); :attr:`HubServer.fail_commits` makes the next N commits fail with 500;
:attr:`HubServer.commit_log` lists the files each commit uploaded.

Usage::

    with HubServer() as hub:        # binds 127.0.0.1:<free port>; stops on exit
        os.environ["HF_ENDPOINT"] = hub.endpoint
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
REPO_TYPES = ("model", "dataset", "space")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
#: Largest request body accepted (bytes): bounds memory if a client misbehaves.
MAX_BODY = 512 << 20


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    title: str
    parent: str | None
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        sha = self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)
        return self.commits.get(sha) if sha else None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """The emulated Hub: repos in memory, served on ``127.0.0.1:<port>`` by a background thread."""

    def __init__(self, token: str = "hf_loopback_test_token"):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.corrupted: set[tuple[str, str]] = set()
        self.fail_commits = 0
        self.commit_log: list[tuple[str, list[str]]] = []   # (repo_id, paths added or changed) per commit
        self.bytes_sent: dict[str, int] = {}                  # path in repo -> bytes of file content served
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ lifecycle
    def start(self) -> "HubServer":
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = self._thread = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # --------------------------------------------------------------------------- hooks
    def corrupt(self, repo_id: str, path: str, on: bool = True) -> None:
        """Serve ``path`` of ``repo_id`` with one byte flipped (or stop doing so)."""
        (self.corrupted.add if on else self.corrupted.discard)((repo_id, path))

    def downloads(self, prefix: str = "") -> list[str]:
        """Paths of the files fetched with GET .../resolve/... (in order; ranges included)."""
        out = []
        for method, path, _ in self.requests:
            m = re.match(r"^/(?:datasets/|spaces/)?[^/]+/[^/]+/resolve/[^/]+/(.*)$", path)
            if method == "GET" and m and unquote(m.group(1)).startswith(prefix):
                out.append(unquote(m.group(1)))
        return out

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)].resolve(rev).files)

    # ----------------------------------------------------------------------- repo state
    def _new_sha(self) -> str:
        self._counter += 1
        return hashlib.sha1(f"loopback-commit-{self._counter}-{time.time_ns()}".encode()).hexdigest()

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes], title: str) -> Commit:
        parent = repo.branches.get(branch)
        c = Commit(self._new_sha(), files, title, parent,
                   datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        repo.commits[c.sha] = c
        repo.branches[branch] = c.sha
        return c


def _tree_entries(files: dict[str, bytes], base: str, recursive: bool) -> list[dict] | None:
    """Tree listing of folder ``base`` ('' = root); None if ``base`` is no folder."""
    prefix = base.rstrip("/") + "/" if base else ""
    out, dirs = [], {}
    for path, data in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            if depth > 1 and not recursive:
                break
            d = prefix + "/".join(parts[:depth])
            dirs.setdefault(d, hashlib.sha1()).update(path.encode())
        if recursive or len(parts) == 1:
            out.append(_file_entry(path, data))
    if prefix and not out and not dirs:
        return None
    out += [{"type": "directory", "oid": h.hexdigest(), "size": 0, "path": d} for d, h in dirs.items()]
    return sorted(out, key=lambda e: e["path"])


def _file_entry(path: str, data: bytes) -> dict:
    return {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body are separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        self.hub.requests.append((method, self.path.split("?")[0], self.headers.get("Range")))
        try:
            self._route(method)
        except HubError as err:
            self._send_json(err.status, {"error": err.message},
                            {"X-Error-Code": err.code, "X-Error-Message": err.message} if err.code else {},
                            head=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):  # noqa: N802 - http.server API
        self._dispatch("GET")

    def do_HEAD(self):  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise HubError(413, "payload too large")
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, headers: dict | None = None, head: bool = False,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, status: int, obj, headers: dict | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _need_write(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header", "Unauthorized")

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._authorized()):
            raise HubError(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _commit_of(self, repo: Repo, rev: str) -> Commit:
        c = repo.resolve(rev)
        if c is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return c

    # --------------------------------------------------------------------------- routes
    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        seg = [unquote(s) for s in url.path.split("/")[1:]]
        if seg[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if seg[:2] == ["api", "validate-yaml"] and method == "POST":
            self._body()
            return self._send_json(200, {"errors": [], "warnings": []})
        if len(seg) >= 4 and seg[0] == "api" and seg[1].rstrip("s") in REPO_TYPES:
            repo_type, repo_id, rest = seg[1][:-1], f"{seg[2]}/{seg[3]}", seg[4:]
            return self._api(method, repo_type, repo_id, rest, query)
        # file download: /{repo} (models) or /{type}s/{repo}, then resolve/{rev}/{path}
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = seg[0][:-1], seg[1:]
        else:
            repo_type = "model"
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HubError(404, f"no such endpoint on the loopback Hub: {method} {url.path}")

    def _create_repo(self) -> None:
        self._need_write()
        body = json.loads(self._body() or b"{}")
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES or not body.get("name"):
            raise HubError(400, "invalid repo type or name")
        repo_id = f"{body.get('organization') or 'loopback-user'}/{body['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.endpoint}/{prefix}{repo_id}"
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub.repos:   # the Hub's 409 carries the url (create_repo reads it)
                return self._send_json(409, {"error": f"You already created this {repo_type} repo", "url": url})
            private = body.get("private") is True or body.get("visibility") == "private"
            repo = self.hub.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private)
            self.hub._commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        self._send_json(200, {"url": url, "name": repo_id})

    def _api(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict) -> None:
        action = rest[0] if rest else ""
        if method == "POST" and action in ("preupload", "commit", "branch", "tag", "paths-info"):
            rev, body = "/".join(rest[1:]), self._body()
            if action in ("preupload", "commit", "branch", "tag"):
                self._need_write()
            with self.hub._lock:
                repo = self._repo(repo_type, repo_id)
                return getattr(self, "_" + action.replace("-", "_"))(repo, rev, body)
        if method != "GET":
            raise HubError(405, f"{method} not supported here")
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            if action in ("", "revision"):
                return self._info(repo, "/".join(rest[1:]) if rest else "main")
            if action == "tree":
                rev, path = rest[1], "/".join(rest[2:])
                listing = _tree_entries(self._commit_of(repo, rev).files, path,
                                        query.get("recursive", ["false"])[0].lower() == "true")
                if listing is None:
                    raise HubError(404, f"{path} does not exist", "EntryNotFound")
                return self._send_json(200, listing)
            if action == "refs":
                ref = lambda kind, n, s: {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s}  # noqa: E731
                return self._send_json(200, {"branches": [ref("heads", n, s) for n, s in repo.branches.items()],
                                             "tags": [ref("tags", n, s) for n, s in repo.tags.items()],
                                             "converts": []})
            if action == "commits":
                c, out = self._commit_of(repo, "/".join(rest[1:])), []
                while c is not None:
                    out.append({"id": c.sha, "title": c.title, "message": "", "authors": [], "date": c.date})
                    c = repo.commits.get(c.parent) if c.parent else None
                return self._send_json(200, out)
        raise HubError(404, f"no such endpoint on the loopback Hub: {'/'.join(rest)}")

    def _info(self, repo: Repo, rev: str) -> None:
        c = self._commit_of(repo, rev)
        card = c.files.get("README.md", b"").decode(errors="replace")
        card_data = None
        m = re.match(r"^---\n(.*?)\n---\n", card, re.S)
        if m:
            import yaml

            card_data = yaml.safe_load(m.group(1))
        self._send_json(200, {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": c.sha, "lastModified": c.date, "createdAt": c.date,
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "cardData": card_data, "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(c.files.items())],
            "usedStorage": sum(len(d) for d in c.files.values()),
        })

    def _preupload(self, repo: Repo, rev: str, body: bytes) -> None:
        files = json.loads(body)["files"]
        current = repo.resolve(rev)
        have = current.files if current is not None else {}
        self._send_json(200, {"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": git_blob_sha1(have[f["path"]]) if f["path"] in have else None} for f in files]})

    def _commit(self, repo: Repo, rev: str, body: bytes) -> None:
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if self.hub.fail_commits > 0:
            self.hub.fail_commits -= 1
            raise HubError(500, "loopback Hub: injected commit failure")
        files = dict(repo.commits[repo.branches[rev]].files)
        title, added = "commit", []
        for line in body.splitlines():
            if not line.strip():
                continue
            op = json.loads(line)
            key, value = op["key"], op["value"]
            if key == "header":
                title = value.get("summary") or title
                parent = value.get("parentCommit")
                if parent and parent != repo.branches[rev]:
                    raise HubError(412, "parent commit is not the head of the branch")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"operation {key!r} is not supported by the loopback Hub (no LFS/Xet)")
        c = self.hub._commit(repo, rev, files, title)
        self.hub.commit_log.append((repo.repo_id, added))
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        self._send_json(200, {"success": True, "commitOid": c.sha,
                              "commitUrl": f"{self.hub.endpoint}/{prefix}{repo.repo_id}/commit/{c.sha}"})

    def _branch(self, repo: Repo, branch: str, body: bytes) -> None:
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        if branch in repo.branches:
            raise HubError(409, "Reference already exists")
        repo.branches[branch] = self._commit_of(repo, start).sha
        self._send_json(200, {})

    def _tag(self, repo: Repo, rev: str, body: bytes) -> None:
        tag = json.loads(body)["tag"]
        if tag in repo.tags:
            raise HubError(409, "Tag already exists")
        repo.tags[tag] = self._commit_of(repo, rev).sha
        self._send_json(200, {})

    def _paths_info(self, repo: Repo, rev: str, body: bytes) -> None:
        files = self._commit_of(repo, rev).files
        out = []
        for path in parse_qs(body.decode()).get("paths", []):
            path = path.strip("/")
            if path in files:
                out.append(_file_entry(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0,
                            "path": path})
        self._send_json(200, out)

    def _resolve(self, method: str, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            c = self._commit_of(repo, rev)
            if path not in c.files:
                raise HubError(404, "Entry not found", "EntryNotFound")
            data = c.files[path]
        headers = {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": c.sha, "Accept-Ranges": "bytes"}
        if (repo_id, path) in self.hub.corrupted and data:
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0x01
            data = bytes(bad)
        status, rng = 200, self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(416, f"unsupported range {rng!r}")
            n = len(data)
            if m.group(1):
                a = int(m.group(1))
                b = min(int(m.group(2)), n - 1) if m.group(2) else n - 1
            else:
                a, b = max(0, n - int(m.group(2))), n - 1
            if a >= n or b < a:
                return self._send(416, b"", {"Content-Range": f"bytes */{n}"}, head=method == "HEAD")
            headers["Content-Range"] = f"bytes {a}-{b}/{n}"
            data, status = data[a:b + 1], 206
        if method == "GET":
            with self.hub._lock:
                self.hub.bytes_sent[path] = self.hub.bytes_sent.get(path, 0) + len(data)
        self._send(status, data, headers, head=method == "HEAD", content_type="application/octet-stream")


def main() -> None:
    """``python tests/hubserver.py``: serve until stdin closes (or SIGTERM); prints the endpoint first."""
    import sys

    with HubServer(token=sys.argv[1] if len(sys.argv) > 1 else "hf_loopback_test_token") as hub:
        print(hub.endpoint, flush=True)
        try:
            sys.stdin.read()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
