"""A small Hugging Face hub client over the hub's REST API (search, repo files, file metadata).

Every request goes through :func:`desktop_app.hub.netguard.open_url` (offline switch, proxy,
token hygiene). The endpoint is passed explicitly (``Settings().hf_endpoint``: the setting, else
``HF_ENDPOINT``, else huggingface.co), never read from huggingface_hub's import-time constant, so
an internal mirror works without restarting the app.

Routes used (the same as huggingface_hub 2.x):
  GET  /api/models?search=…&filter=gguf&sort=downloads&direction=-1&limit=N
  GET  /api/models/{repo}[/revision/{rev}]?blobs=true      siblings with size and lfs.sha256
  HEAD /{repo}/resolve/{rev}/{file}   X-Linked-Size, X-Linked-Etag, ETag, X-Repo-Commit
  GET  /{repo}/resolve/{rev}/{file}   with Range for resume (see downloads.py)
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.parse
import logging
from dataclasses import asdict, dataclass, field

from desktop_app.core.errors import AtelierError, OfflineError
from desktop_app.core.safepath import UnsafeNameError, validate_repo_id
from desktop_app.core.settings import Settings
from desktop_app.hub import credentials
from desktop_app.hub.netguard import ensure_online, open_url

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_QUANT_RE = re.compile(
    r"(?i)(?:^|[-_.])((?:UD-)?(?:I?Q[1-8](?:_[0-9A-Z]{1,2})*(?:_XL|_XXS|_XS|_NL)?)|BF16|F16|FP16|F32)(?=[-_.]|$)"
)
_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.I)


class GatedError(AtelierError):
    """401/403: the repo needs an accepted licence and a token."""


class HubNotFoundError(AtelierError):
    """404: repo, revision or file does not exist on this endpoint."""


class HubConnectionError(AtelierError):
    """The hub could not be reached (DNS, refused, timeout, proxy)."""


def quantization_from_name(filename: str) -> str:
    """'Qwen_Qwen3-8B-Q4_K_M.gguf' -> 'Q4_K_M' (upper case); '' when none is recognisable."""
    stem = filename.rsplit("/", 1)[-1]
    stem = _SPLIT_RE.sub(".gguf", stem)
    if stem.lower().endswith(".gguf"):
        stem = stem[:-5]
    hits = _QUANT_RE.findall(stem)
    if not hits:
        return ""
    q = hits[-1].upper()
    return q[3:] if q.startswith("UD-") else q


def split_info(filename: str) -> tuple[int, int] | None:
    """(part, total) for llama.cpp split files 'x-00001-of-00003.gguf', else None."""
    m = _SPLIT_RE.search(filename)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass
class HubFile:
    name: str  # path inside the repo ("rfilename")
    size: int | None = None
    sha256: str = ""  # LFS sha256 ("" for small git files)
    blob_id: str = ""  # git blob sha1 (small files)
    lfs: bool = False

    @property
    def quantization(self) -> str:
        return quantization_from_name(self.name) if self.name.lower().endswith(".gguf") else ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quantization"] = self.quantization
        return d


@dataclass
class RepoInfo:
    repo_id: str
    sha: str = ""  # commit the listing was taken at
    files: list[HubFile] = field(default_factory=list)
    gated: bool | str = False  # False, "auto" or "manual"
    license: str = ""
    library_name: str = ""
    pipeline_tag: str = ""
    tags: list[str] = field(default_factory=list)

    def file(self, name: str) -> HubFile | None:
        for f in self.files:
            if f.name == name:
                return f
        return None

    @property
    def is_diffusers(self) -> bool:
        return self.file("model_index.json") is not None

    @property
    def gguf_files(self) -> list[HubFile]:
        return [f for f in self.files if f.name.lower().endswith(".gguf")]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files"] = [f.to_dict() for f in self.files]
        return d


@dataclass
class RepoSummary:
    repo_id: str
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str = ""
    library_name: str = ""
    tags: list[str] = field(default_factory=list)
    gated: bool | str = False
    last_modified: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileMeta:
    url: str  # the resolve URL pinned to the commit
    size: int | None
    sha256: str  # "" when the file is not in LFS
    etag: str
    commit: str


def _clean_etag(value: str | None) -> str:
    if not value:
        return ""
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    return v.strip('"')


class HubClient:
    """Talks to one hub endpoint. Cheap to create; holds no connection between calls."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.settings = settings or Settings()
        self.endpoint = (endpoint or self.settings.hf_endpoint).rstrip("/")
        self._token = token
        self.timeout = timeout

    # plumbing ------------------------------------------------------------------------
    @property
    def token(self) -> str | None:
        return self._token if self._token is not None else credentials.get_token()

    def headers(self, extra: dict | None = None) -> dict:
        h = {}
        tok = self.token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if extra:
            h.update(extra)
        return h

    def ensure_online(self) -> None:
        ensure_online(self.settings)

    def open(self, url: str, *, method: str = "GET", headers: dict | None = None,
             follow_redirects: bool = True, timeout: float | None = None, what: str = ""):
        """Open a hub URL with auth; HTTP and network errors become clear AtelierErrors."""
        try:
            return open_url(url, method=method, headers=self.headers(headers), follow_redirects=follow_redirects,
                            timeout=timeout or self.timeout, settings=self.settings)
        except OfflineError:
            raise
        except urllib.error.HTTPError as exc:
            raise self.http_error(exc, what or url) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HubConnectionError(
                f"Cannot reach the hub at {self.endpoint}: {reason}. Check the network, the proxy setting "
                "or the hub endpoint (Settings, or HF_ENDPOINT)."
            ) from None

    def http_error(self, exc: urllib.error.HTTPError, what: str) -> AtelierError:
        err = self._http_error(exc, what)
        err.status = exc.code  # type: ignore[attr-defined]
        return err

    def _http_error(self, exc: urllib.error.HTTPError, what: str) -> AtelierError:
        code = exc.code
        err_code = exc.headers.get("X-Error-Code", "") if exc.headers else ""
        if err_code == "GatedRepo" or code == 403 or (code == 401 and err_code != "RepoNotFound"):
            return GatedError(
                f"gated: {what} needs an accepted licence (HTTP {code}): accept the licence on the hub page "
                f"({self.endpoint}/{'/'.join(what.split('/')[:2])}) while logged in, and set an access token in "
                "Settings (or HF_TOKEN)." if self.token is None else
                f"gated: {what} refused the stored token (HTTP {code}). Accept the licence on the hub page "
                f"({self.endpoint}/{'/'.join(what.split('/')[:2])}) with the account that owns the token."
            )
        if code == 404 or err_code in ("RepoNotFound", "RevisionNotFound", "EntryNotFound"):
            if err_code == "EntryNotFound":
                return HubNotFoundError(f"{what}: no such file in the repository on {self.endpoint} (HTTP {code}).")
            if err_code == "RevisionNotFound":
                return HubNotFoundError(f"{what}: no such revision on {self.endpoint} (HTTP {code}).")
            extra = " (or it is private: set an access token)" if code == 401 else ""
            return HubNotFoundError(f"{what}: not found on {self.endpoint}{extra} (HTTP {code}). Check the spelling.")
        if code == 429:
            return AtelierError(f"The hub is rate-limiting requests (HTTP 429) for {what}; try again in a minute.")
        return AtelierError(f"The hub answered HTTP {code} for {what}.")

    def _get_json(self, url: str, what: str):
        with self.open(url, what=what) as resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise AtelierError(f"The hub at {self.endpoint} sent an unreadable answer for {what}.") from None

    # API -----------------------------------------------------------------------------
    def search(self, text: str, task: str = "chat", limit: int = 20) -> list[RepoSummary]:
        """Search repos: GGUF repos for chat, text-to-image repos (diffusers or single file) for images."""
        params = {"search": text, "sort": "downloads", "direction": "-1", "limit": str(int(limit))}
        if task == "chat":
            params["filter"] = "gguf"
        elif task == "image":
            params["pipeline_tag"] = "text-to-image"
        url = f"{self.endpoint}/api/models?{urllib.parse.urlencode(params)}"
        data = self._get_json(url, f"search '{text}'")
        out = []
        for d in data if isinstance(data, list) else []:
            rid = d.get("id") or d.get("modelId")
            try:
                validate_repo_id(rid, "the hub's search reply")
            except UnsafeNameError:
                log.warning("hub search: skipped an invalid repo id %.80r", rid)
                continue
            out.append(RepoSummary(
                repo_id=rid, downloads=int(d.get("downloads") or 0), likes=int(d.get("likes") or 0),
                pipeline_tag=d.get("pipeline_tag") or "", library_name=d.get("library_name") or "",
                tags=list(d.get("tags") or []), gated=d.get("gated", False) or False,
                last_modified=d.get("lastModified") or d.get("createdAt") or "",
            ))
        return out

    def repo_info(self, repo_id: str, revision: str | None = None) -> RepoInfo:
        """A repo's files with sizes and LFS sha256 (``model_info(files_metadata=True)``)."""
        repo_id = validate_repo_id(repo_id.strip("/"), "the request")
        url = f"{self.endpoint}/api/models/{repo_id}"
        if revision:
            url += f"/revision/{urllib.parse.quote(revision, safe='')}"
        url += "?blobs=true"
        d = self._get_json(url, repo_id)
        if not isinstance(d, dict):
            raise AtelierError(f"The hub's reply for {repo_id} is not a model description; is the endpoint a hub?")
        files = []
        siblings = d.get("siblings")
        for s in siblings if isinstance(siblings, list) else []:
            if not isinstance(s, dict) or not isinstance(s.get("rfilename"), str):
                continue  # names are validated as paths when a pull plans to write them
            lfs = s.get("lfs") if isinstance(s.get("lfs"), dict) else None
            files.append(HubFile(
                name=s["rfilename"], size=_size((lfs or {}).get("size", s.get("size"))),
                sha256=_hexstr((lfs or {}).get("sha256"), 64), blob_id=_hexstr(s.get("blobId"), 40), lfs=bool(lfs),
            ))
        card = d.get("cardData") if isinstance(d.get("cardData"), dict) else {}
        lic = card.get("license") or ""
        tags = [t for t in d.get("tags") or [] if isinstance(t, str)] if isinstance(d.get("tags"), list) else []
        if not lic:
            for t in tags:
                if t.startswith("license:"):
                    lic = t.split(":", 1)[1]
        return RepoInfo(
            repo_id=validate_repo_id(d.get("id") or repo_id, f"the hub's reply for {repo_id}"),
            sha=str(d.get("sha") or ""), files=files, gated=d.get("gated", False) or False,
            license=str(lic), library_name=str(d.get("library_name") or ""),
            pipeline_tag=str(d.get("pipeline_tag") or ""), tags=tags,
        )

    def file_url(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        rev = urllib.parse.quote(revision or "main", safe="")
        return f"{self.endpoint}/{repo_id}/resolve/{rev}/{urllib.parse.quote(filename)}"

    def file_metadata(self, repo_id: str, filename: str, revision: str | None = None) -> FileMeta:
        """HEAD on the resolve URL (no redirect): size, LFS sha256, etag and the commit to pin."""
        url = self.file_url(repo_id, filename, revision)
        resp = self.open(url, method="HEAD", headers={"Accept-Encoding": "identity"}, follow_redirects=False,
                         what=f"{repo_id}/{filename}")
        try:
            h = resp.headers
            linked_etag = _clean_etag(h.get("X-Linked-Etag"))
            etag = linked_etag or _clean_etag(h.get("ETag"))
            size_s = h.get("X-Linked-Size") or h.get("Content-Length")
            commit = h.get("X-Repo-Commit") or ""
        finally:
            resp.close()
        sha256 = linked_etag.lower() if _SHA256_RE.match(linked_etag.lower()) else ""
        pinned = self.file_url(repo_id, filename, commit) if commit else url
        return FileMeta(url=pinned, size=int(size_s) if size_s and size_s.isdigit() else None, sha256=sha256,
                        etag=etag, commit=commit)


def _size(value) -> int | None:
    """A byte count from a server: a non-negative int below 2**50 (1 PiB), else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**50 else None


def _hexstr(value, length: int) -> str:
    """A hex digest from a server, lower-cased; anything else is treated as absent."""
    return value.lower() if isinstance(value, str) and re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value) else ""


def git_blob_sha1_matches(etag: str) -> bool:
    """Whether an etag looks like a git blob sha1 (small non-LFS files), which we can verify."""
    return bool(_SHA1_RE.match(etag.lower()))
