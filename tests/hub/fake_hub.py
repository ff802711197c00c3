"""A hub-compatible HTTP server on 127.0.0.1 for tests (this machine cannot reach the real hub).

Implements what Atelier's client and huggingface_hub 2.x call:
  GET  /api/models?search=&filter=&pipeline_tag=&limit=      search
  GET  /api/models/{org}/{name}[/revision/{rev}]              model info, siblings with size/blobId/lfs
  HEAD /{org}/{name}/resolve/{rev}/{path}   LFS: 302 + X-Linked-Etag/X-Linked-Size/X-Repo-Commit/Location
                                            small files: 200 + ETag (git blob sha1) + Content-Length
  GET  /{org}/{name}/resolve/{rev}/{path}   LFS: 302 to http://localhost:PORT/cdn/{sha256} (another host
                                            name, like the hub's CDN); small files: the bytes
  GET  /cdn/{sha256}                        the bytes, with HTTP Range (206)

Knobs (attributes, change them between requests): ``drop_after`` (close the connection after N
bytes of a body, ``drop_times`` times), ``corrupt`` (file names served with a flipped byte),
``throttle_bps`` (slow bodies), ``token`` (gated repos need ``Authorization: Bearer <token>``),
``requests`` (log of (method, path, Range header)), ``omit_hashes`` (a mirror that gives no
checksum: no ``lfs``/``blobId`` in the model info, no X-Linked-Etag, and an nginx-style ETag
that is no hash, like a plain static file server).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".gguf", ".safetensors", ".onnx", ".bin", ".ckpt", ".pth")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    sha: str = field(default_factory=lambda: hashlib.sha1(str(time.time()).encode()).hexdigest())
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = "text-generation"
    library_name: str = ""
    license: str = "apache-2.0"
    downloads: int = 0

    def is_lfs(self, name: str) -> bool:
        return name.endswith(LFS_SUFFIXES)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.by_sha: dict[str, bytes] = {}
        self.drop_after: int | None = None
        self.drop_times = 1
        self.corrupt: set[str] = set()
        self.throttle_bps: int | None = None
        self.omit_hashes = False
        self.token = "hf_test_token"
        self.requests: list[tuple[str, str, str]] = []
        self.leaked_auth: list[str] = []  # CDN requests that carried the hub token (must stay empty)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # setup -------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes], **kw) -> FakeRepo:
        repo = FakeRepo(repo_id, dict(files), **kw)
        self.repos[repo_id] = repo
        for name, data in files.items():
            if repo.is_lfs(name):
                self.by_sha[hashlib.sha256(data).hexdigest()] = data
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, client_address: None  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def ranges(self) -> list[str]:
        return [r for _m, _p, r in self.requests if r]


def _static_etag(data: bytes) -> str:
    """The ETag a static file server (nginx) sends: mtime-size in hex, no hash of the content."""
    return f'"65a8e27d-{len(data):x}"'


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - silence
        pass

    # helpers -----------------------------------------------------------------------
    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, code: int = 200):
        self._send(code, json.dumps(obj).encode())

    def _error(self, code: int, err_code: str, msg: str):
        self._send(code, json.dumps({"error": msg}).encode(), {"X-Error-Code": err_code, "X-Error-Message": msg})

    def _authorized(self, repo: FakeRepo) -> bool:
        if not repo.gated:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str) -> FakeRepo | None:
        return self.hub.repos.get(repo_id)

    # routes ------------------------------------------------------------------------
    def do_HEAD(self):  # noqa: N802
        self._route()

    def do_GET(self):  # noqa: N802
        self._route()

    def _route(self):
        try:
            parsed = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(parsed.path)
            with self.hub._lock:
                self.hub.requests.append((self.command, path, self.headers.get("Range", "")))
                if path.startswith("/cdn/") and self.headers.get("Authorization"):
                    self.hub.leaked_auth.append(path)
            if path == "/api/models":
                return self._search(urllib.parse.parse_qs(parsed.query))
            if path.startswith("/api/models/"):
                return self._info(path[len("/api/models/"):])
            if path.startswith("/cdn/"):
                return self._serve_bytes(path[len("/cdn/"):], self.hub.by_sha.get(path[len("/cdn/"):]))
            parts = path.lstrip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
            self._error(404, "NotFound", "no route")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass

    def _search(self, q: dict):
        text = (q.get("search") or [""])[0].lower()
        flt = (q.get("filter") or [""])[0]
        ptag = (q.get("pipeline_tag") or [""])[0]
        limit = int((q.get("limit") or ["20"])[0])
        out = []
        for r in sorted(self.hub.repos.values(), key=lambda r: -r.downloads):
            if text and text not in r.repo_id.lower():
                continue
            if flt and flt not in r.tags and flt != r.library_name:
                continue
            if ptag and ptag != r.pipeline_tag:
                continue
            out.append({"_id": r.sha[:24], "id": r.repo_id, "modelId": r.repo_id, "likes": 1, "downloads": r.downloads,
                        "private": False, "tags": r.tags, "pipeline_tag": r.pipeline_tag,
                        "library_name": r.library_name or None, "createdAt": "2025-01-01T00:00:00.000Z"})
        self._json(out[:limit])

    def _info(self, rest: str):
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if len(parts) > 2 and parts[2] == "revision" and parts[3] not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        siblings = []
        for name, data in repo.files.items():
            s = {"rfilename": name, "size": len(data), "blobId": git_blob_sha1(data)}
            if self.hub.omit_hashes:
                s = {"rfilename": name, "size": len(data)}
            elif repo.is_lfs(name):
                s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(s)
        self._json({
            "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha, "private": False,
            "gated": "manual" if repo.gated else False, "disabled": False, "downloads": repo.downloads, "likes": 1,
            "tags": repo.tags + [f"license:{repo.license}"], "pipeline_tag": repo.pipeline_tag,
            "library_name": repo.library_name or None, "cardData": {"license": repo.license},
            "siblings": siblings, "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z", "usedStorage": sum(len(d) for d in repo.files.values()),
        })

    def _resolve(self, repo_id: str, rev: str, name: str):
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if not self._authorized(repo):
            return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
        if rev not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        data = repo.files.get(name)
        if data is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist")
        common = {"X-Repo-Commit": repo.sha}
        if repo.is_lfs(name):
            sha = hashlib.sha256(data).hexdigest()
            # the "CDN" is another host name for the same server, as on the real hub (where the
            # redirect leaves huggingface.co): clients must not forward the token there
            port = self.server.server_address[1]
            loc = f"http://localhost:{port}/cdn/{sha}"
            if name in self.hub.corrupt:
                loc += "?corrupt=1"
            self.send_response(302)
            hashes = {"X-Linked-Etag": f'"{sha}"', "ETag": f'"{git_blob_sha1(data)}"'}
            if self.hub.omit_hashes:
                hashes = {"ETag": _static_etag(data)}
            for k, v in {**common, **hashes, "X-Linked-Size": str(len(data)), "Location": loc,
                         "Content-Length": "0"}.items():
                self.send_header(k, v)
            self.end_headers()
            return
        etag = _static_etag(data) if self.hub.omit_hashes else f'"{git_blob_sha1(data)}"'
        return self._serve_bytes(name, data, {**common, "ETag": etag})

    def _serve_bytes(self, key: str, data: bytes | None, extra: dict | None = None):
        if data is None:
            return self._error(404, "EntryNotFound", "no such blob")
        if "corrupt=1" in self.path:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        total = len(data)
        start, end = 0, total - 1
        code = 200
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else 0
            end = int(b) if b else total - 1
            if start >= total:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            code = 206
        body = data[start: end + 1]
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        hub = self.hub
        limit = None
        with hub._lock:
            if hub.drop_after is not None and hub.drop_times > 0 and len(body) > hub.drop_after:
                hub.drop_times -= 1
                limit = hub.drop_after
        to_send = body if limit is None else body[:limit]
        step = 16 * 1024
        for i in range(0, len(to_send), step):
            self.wfile.write(to_send[i: i + step])
            if hub.throttle_bps:
                self.wfile.flush()
                time.sleep(step / hub.throttle_bps)
        self.wfile.flush()
        if limit is not None:
            self.close_connection = True
            try:
                import socket

                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
