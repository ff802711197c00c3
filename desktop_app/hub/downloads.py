"""Resumable, verified hub downloads, and a queue the GUI can drive.

One file::

    <models>/hub/<org>/<name>/<file>.part        bytes so far
    <models>/hub/<org>/<name>/<file>.part.json   sidecar: url, size, sha256, etag, commit

Resume uses HTTP Range from the size of the ``.part`` file, also after the process was killed
(the sidecar proves the partial bytes belong to the same file version). Before anything is
written the free disk space is checked (``disk_probe``, replaceable in tests). After the last
byte the sha256 (the hub's LFS sha256, or the git blob sha1 of small files) is verified, and only
then is the file moved into place and registered in the Library (id ``org/repo/file``,
``managed=True``). A mismatch deletes the partial file and raises ModelFormatError. An incomplete
file is never registered. A diffusers repo is assembled in ``<name>.partial/`` and renamed when
every file is verified.

Work is written as generators (``pull_iter``) that yield :class:`DownloadProgress` events and
check a :class:`DownloadControl` (or a plain CancelToken) between chunks: no hidden threads.
:class:`DownloadQueue` runs jobs one after another (or N at a time) in threads *you* give it
(``run(stop)`` in your worker) or its own (``start()``/``shutdown()``), and persists pending jobs.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Generator

from desktop_app.core.errors import (
    AtelierError, Cancelled, ModelFormatError, OfflineError, is_storage_error, storage_error,
)
from desktop_app.core.library import Library, ModelRecord, hub_id
from desktop_app.core.model_files import refuse_pickle
from desktop_app.core.paths import get_paths, write_json_atomic
from desktop_app.core.safepath import inside, remove_inside, validate_relpath, validate_repo_id, validate_revision
from desktop_app.core.settings import Settings
from desktop_app.core.cancel import CancelToken
from desktop_app.hub.client import HubClient, HubConnectionError, HubFile, RepoInfo, git_blob_sha1_matches, quantization_from_name, split_info
from desktop_app.hub.netguard import abort_response, ensure_online

log = logging.getLogger("atelier.hub.downloads")

CHUNK = 1024 * 1024
DISK_MARGIN = 64 * 1024 * 1024  # keep this much free beyond the download


class Paused(Cancelled):
    """The download was paused: the partial file is kept and the next pull resumes from it."""

    def __init__(self, message: str = "Paused; the partial download is kept and resumes where it stopped.") -> None:
        super().__init__(message)


# ---------------------------------------------------------------------------------------
# events and control
# ---------------------------------------------------------------------------------------
@dataclass
class DownloadProgress:
    """One progress event. ``bytes_*`` cover the whole job (all files of a diffusers repo)."""

    repo_id: str
    filename: str  # the file being transferred ("" before the file list is known)
    state: str  # resolving | downloading | retrying | verifying | done | paused | cancelled | failed
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float = 0.0
    eta_s: float | None = None
    file_index: int = 0  # 1-based
    file_count: int = 0
    message: str = ""
    record_id: str = ""
    job_id: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_done / self.bytes_total)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fraction"] = self.fraction
        return d


class DownloadControl:
    """Pause/cancel a running download from another thread, waking a blocked read at once."""

    def __init__(self, cancel: CancelToken | None = None) -> None:
        self.cancel_token = cancel or CancelToken()
        self.pause_token = CancelToken()
        self._lock = threading.Lock()
        self._resp = None

    def cancel(self) -> None:
        self.cancel_token.cancel()
        self._abort()

    def pause(self) -> None:
        self.pause_token.cancel()
        self._abort()

    @property
    def stopping(self) -> bool:
        return self.cancel_token.cancelled or self.pause_token.cancelled

    def check(self) -> None:
        if self.cancel_token.cancelled:
            raise Cancelled("Download cancelled; the partial file was deleted.")
        if self.pause_token.cancelled:
            raise Paused()

    def wait(self, seconds: float) -> None:
        """Sleep (retry back-off), waking on pause or cancel."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stopping:
            self.cancel_token.wait(min(0.05, max(0.0, end - time.monotonic())))
        self.check()

    def _attach(self, resp) -> None:
        with self._lock:
            self._resp = resp
        if self.stopping:
            abort_response(resp)

    def _detach(self) -> None:
        with self._lock:
            self._resp = None

    def _abort(self) -> None:
        with self._lock:
            resp = self._resp
        if resp is not None:
            abort_response(resp)


class _Meter:
    """Speed (moving window) and ETA."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: list[tuple[float, int]] = []

    def update(self, done: int, total: int | None) -> tuple[float, float | None]:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.pop(0)
        t0, d0 = self.samples[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = (total - done) / speed if total and speed > 0 else None
        return speed, eta


def default_disk_probe(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _gb(n: int | float) -> str:
    return f"{n / 1e9:.2f} GB"


def require_free_space(need: int, where: Path, what: str,
                       disk_probe: Callable[[Path], int] = default_disk_probe) -> None:
    """Raise a clear AtelierError unless ``where``'s filesystem has ``need`` bytes (+ DISK_MARGIN) free."""
    free = disk_probe(where)
    if need + DISK_MARGIN > free:
        raise AtelierError(
            f"Not enough disk space for {what}: it needs {_gb(need)} more, and {where} has {_gb(free)} free. "
            "Free some space or choose another models folder in Settings."
        )


# ---------------------------------------------------------------------------------------
# choosing files
# ---------------------------------------------------------------------------------------
_DIFFUSERS_AUX = (".json", ".txt", ".model")  # configs, tokenizer vocab/merges, sentencepiece


def select_diffusers_files(info: RepoInfo, allow_pickle: bool = False,
                           model_index: dict | None = None) -> tuple[list[HubFile], str]:
    """The files a diffusers pipeline needs, and the weight variant chosen ("" or "fp16").

    Only the component folders named in model_index.json (when ``model_index`` is given; else
    every first-level folder) and the index itself. Weights: safetensors only (pickle ``.bin``
    only with ``allow_pickle`` and when no safetensors exists in that folder); the fp16 variant
    when every weighted component has one (half the download), else the plain files.
    """
    comps: set[str] | None = None
    if model_index:
        comps = {k for k, v in model_index.items() if not k.startswith("_") and isinstance(v, list) and v[0]}
    by_dir: dict[str, list[HubFile]] = {}
    for f in info.files:
        if "/" not in f.name:
            continue
        top, rest = f.name.split("/", 1)
        if "/" in rest:
            continue  # deeper files are not part of a diffusers component
        if comps is not None and top not in comps:
            continue
        by_dir.setdefault(top, []).append(f)

    def weights(files: list[HubFile], variant: str) -> list[HubFile]:
        out = []
        for f in files:
            base = f.name.split("/", 1)[1]
            if not base.endswith(".safetensors") or ".index." in base:
                continue
            parts = base[: -len(".safetensors")].split(".")
            v = parts[1] if len(parts) > 1 and not parts[1].startswith("0") else ""
            # sharded: diffusion_pytorch_model-00001-of-00002.safetensors has no dot variant
            if v == variant:
                out.append(f)
        return out

    weighted = {d: fs for d, fs in by_dir.items() if any(f.name.endswith((".safetensors", ".bin")) for f in fs)}
    variant = "fp16" if weighted and all(weights(fs, "fp16") for fs in weighted.values()) else ""
    chosen: list[HubFile] = []
    root_index = info.file("model_index.json")
    if root_index:
        chosen.append(root_index)
    for d, fs in sorted(by_dir.items()):
        chosen += [f for f in fs if f.name.endswith(_DIFFUSERS_AUX) and ".index." not in f.name.split("/", 1)[1]]
        w = weights(fs, variant)
        if w:
            chosen += w
            # sharded weights need their index file
            idx_name = "diffusion_pytorch_model.safetensors.index.json" if not variant else \
                f"diffusion_pytorch_model.safetensors.index.{variant}.json"
            chosen += [f for f in fs if f.name.split("/", 1)[1] in (idx_name, "model.safetensors.index.json",
                                                                     f"model.safetensors.index.{variant}.json")]
        elif d in weighted:
            pickles = [f for f in fs if f.name.endswith(".bin") and ".fp16." not in f.name]
            if pickles and allow_pickle:
                chosen += pickles
            elif pickles:
                raise ModelFormatError(
                    f"{info.repo_id}: the '{d}' component exists only as a pickle file ({pickles[0].name}); "
                    "pickle files can run arbitrary code, so Atelier refuses them by default. Pick a repo "
                    "with .safetensors weights, or allow pickle checkpoints in Settings if you trust it."
                )
    seen = set()
    out = []
    for f in chosen:
        if f.name not in seen:
            seen.add(f.name)
            out.append(f)
    return out, variant


def hub_dir(repo_id: str, models_dir: Path | None = None) -> Path:
    """``<models>/hub/<owner>/<name>`` for a validated repo id (UnsafeNameError for ``evil/..``)."""
    org, name = validate_repo_id(repo_id).split("/", 1)
    return Path(models_dir or Settings().models_dir) / "hub" / org / name


def part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


# ---------------------------------------------------------------------------------------
# one file
# ---------------------------------------------------------------------------------------
def _hash_file(path: Path, algo: str, control: DownloadControl, prefix: bytes = b"") -> str:
    h = hashlib.new(algo)
    h.update(prefix)
    with open(path, "rb") as f:
        while True:
            control.check()
            b = f.read(8 * CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def unverifiable_error(repo_id: str, filename: str) -> AtelierError:
    return AtelierError(
        f"The hub or mirror gave no checksum for {repo_id}/{filename} (no LFS sha256, no git blob sha1), so Atelier "
        "cannot verify it, and refuses to install an unverified file. Use a mirror that serves the hub's checksum "
        "headers (X-Linked-Etag / ETag) and the model info API with LFS metadata, or, if you trust this mirror, "
        "allow unverified downloads explicitly (the file is then marked as not verified)."
    )


def verify_file(path: Path, sha256: str = "", git_sha1: str = "", control: DownloadControl | None = None,
                allow_unverified: bool = False) -> bool:
    """Check ``path`` against ``sha256`` (or git blob ``git_sha1``). True when a hash was checked.

    Raises ModelFormatError on a mismatch. With neither hash it raises AtelierError, unless
    ``allow_unverified``: then it returns False (the caller must mark the file as not verified).
    """
    control = control or DownloadControl()
    if not sha256 and not git_sha1:
        if allow_unverified:
            return False
        raise unverifiable_error("", path.name.removesuffix(".part"))
    if sha256:
        got = _hash_file(path, "sha256", control)
        if got != sha256.lower():
            raise ModelFormatError(
                f"{path.name}: checksum mismatch. The hub's sha256 is {sha256}, the downloaded bytes hash to {got}. "
                "The damaged file was deleted; try the download again (if it keeps failing, the server or mirror "
                "serves a corrupt copy)."
            )
    elif git_sha1:
        size = path.stat().st_size
        got = _hash_file(path, "sha1", control, prefix=f"blob {size}\0".encode())
        if got != git_sha1.lower():
            raise ModelFormatError(
                f"{path.name}: checksum mismatch (git blob sha1 {git_sha1} expected, got {got}). "
                "The damaged file was deleted; try the download again."
            )
    return True


def download_file_iter(
    client: HubClient,
    repo_id: str,
    filename: str,
    dest: Path,
    *,
    revision: str | None = None,
    expected_sha256: str = "",
    expected_size: int | None = None,
    expected_git_sha1: str = "",
    control: DownloadControl | None = None,
    disk_probe: Callable[[Path], int] = default_disk_probe,
    max_retries: int = 5,
    read_timeout: float = 30.0,
    allow_unverified: bool = False,
) -> Generator[tuple[str, int, int | None], None, Path]:
    """Download one hub file to ``dest`` (resumable, verified). Yields (state, bytes_done, total).

    Returns ``dest``. Raises Paused (partial kept), Cancelled (partial deleted), ModelFormatError
    (checksum; partial deleted), AtelierError (disk space, HTTP errors, no checksum), OfflineError.

    The checksum is the LFS sha256 (``expected_sha256`` from the repo listing, else the
    X-Linked-Etag header), else the git blob sha1 (the ETag header, else ``expected_git_sha1``
    from the listing's blobId of a non-LFS file). When there is none, the download is refused
    before any byte is fetched, unless ``allow_unverified``: then the last event before the
    file is moved into place is ``("unverified", done, size)``.
    """
    control = control or DownloadControl()
    ensure_online(client.settings)
    control.check()
    meta = client.file_metadata(repo_id, filename, revision)
    sha = (expected_sha256 or meta.sha256 or "").lower()
    git_sha1 = meta.etag.lower() if not sha and git_blob_sha1_matches(meta.etag) else ""
    if not sha and not git_sha1 and git_blob_sha1_matches(expected_git_sha1 or ""):
        git_sha1 = expected_git_sha1.lower()
    if not sha and not git_sha1 and not allow_unverified:
        raise unverifiable_error(repo_id, filename)
    size = meta.size if meta.size is not None else expected_size
    if expected_size is not None and meta.size is not None and expected_size != meta.size:
        log.info("%s/%s: size changed on the hub (%s -> %s)", repo_id, filename, expected_size, meta.size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, side = part_paths(dest)

    # already there and verified?
    if dest.exists() and size is not None and dest.stat().st_size == size and (sha or git_sha1):
        try:
            yield ("verifying", size, size)
            verify_file(dest, sha, git_sha1, control)
            return dest
        except ModelFormatError:
            dest.unlink()

    want = {"url": meta.url, "size": size, "sha256": sha, "etag": meta.etag, "commit": meta.commit,
            "repo_id": repo_id, "filename": filename}
    offset = 0
    if part.exists():
        try:
            old = json.loads(side.read_text("utf-8"))
        except (OSError, ValueError):
            old = {}
        same = all(old.get(k) == want[k] for k in ("size", "sha256", "etag")) and old.get("repo_id") == repo_id
        offset = part.stat().st_size if same else 0
        if size is not None and offset > size:
            offset = 0
        if offset == 0:
            part.unlink()
    if size is not None:
        require_free_space(size - offset, dest.parent, filename, disk_probe)
    side.write_text(json.dumps(want), "utf-8")
    if not part.exists():
        part.touch()

    failures = 0
    done = offset
    yield ("downloading", done, size)
    while size is None or done < size:
        control.check()
        headers = {"Accept-Encoding": "identity"}
        if done:
            headers["Range"] = f"bytes={done}-"
        resp = None
        attempt_start = done
        try:
            resp = client.open(meta.url, headers=headers, timeout=read_timeout, what=f"{repo_id}/{filename}")
            control._attach(resp)
            status = getattr(resp, "status", 200)
            if done and status == 200:
                done = 0  # the server ignored Range: start again
                with open(part, "wb"):
                    pass
            elif status == 206:
                cr = resp.headers.get("Content-Range", "")
                start = int(cr.split(" ")[1].split("-")[0]) if cr.startswith("bytes ") else done
                if start != done:
                    raise http.client.HTTPException(f"server resumed at byte {start}, expected {done}")
            got_any = False
            last_yield = 0.0
            read = getattr(resp, "read1", None) or resp.read  # read1: whatever has arrived, up to CHUNK
            with open(part, "r+b") as f:
                f.seek(done)
                while True:
                    if control.stopping:
                        control.check()
                    buf = read(CHUNK)
                    if not buf:
                        break
                    f.write(buf)
                    done += len(buf)
                    got_any = True
                    now = time.monotonic()
                    if now - last_yield > 0.1:
                        last_yield = now
                        yield ("downloading", done, size)
                f.flush()
                os.fsync(f.fileno())
            if size is None:
                size = done
                break
            if done < size:
                raise http.client.IncompleteRead(b"", size - done)
            if done > size:
                raise ModelFormatError(f"{filename}: the server sent more bytes ({done}) than announced ({size}).")
            if got_any:
                failures = 0
        except (Cancelled, OfflineError, ModelFormatError):
            raise
        except (AtelierError, OSError, http.client.HTTPException, ValueError) as exc:
            if is_storage_error(exc):  # a full disk or a read-only folder is not a network hiccup: no retry
                raise storage_error(exc, part.parent, f"{filename} (the partial file is kept)") from None
            if control.stopping:
                control.check()
            status = getattr(exc, "status", None)
            if status == 416 and size is not None and done >= size:
                break  # the part was already complete
            retryable = not isinstance(exc, AtelierError) or isinstance(exc, HubConnectionError) or \
                status in (408, 429, 500, 502, 503, 504)
            if not retryable:
                raise
            if done > attempt_start:
                failures = 0
            failures += 1
            if failures > max_retries:
                raise AtelierError(
                    f"Download of {filename} failed after {max_retries} retries ({type(exc).__name__}: {exc}). "
                    "The partial file is kept: run the same pull again to resume."
                ) from None
            log.info("retry %d for %s/%s after %s", failures, repo_id, filename, exc)
            yield ("retrying", done, size)
            control.wait(min(0.25 * 2 ** (failures - 1), 8.0))
        finally:
            control._detach()
            if resp is not None:
                try:
                    resp.close()
                except Exception:
                    pass

    yield ("verifying", done, size)
    try:
        if size is not None and part.stat().st_size != size:
            raise ModelFormatError(f"{filename}: size mismatch ({part.stat().st_size} bytes, expected {size}).")
        checked = verify_file(part, sha, git_sha1, control, allow_unverified=allow_unverified)
    except ModelFormatError:
        part.unlink(missing_ok=True)
        side.unlink(missing_ok=True)
        raise
    if not checked:
        log.warning("%s/%s: no checksum from the hub or mirror; installed WITHOUT verification", repo_id, filename)
        yield ("unverified", done, size)
    os.replace(part, dest)
    side.unlink(missing_ok=True)
    return dest


# ---------------------------------------------------------------------------------------
# a whole pull (one file, a split GGUF, or a diffusers folder) + registration
# ---------------------------------------------------------------------------------------
@dataclass
class PullPlan:
    repo_id: str
    revision: str
    files: list[HubFile]
    kind: str  # "file" | "diffusers"
    dest: Path  # the file (first split part) or the folder
    staging: Path  # where files are written (== dest.parent for single files)
    record_id: str
    variant: str = ""
    license: str = ""
    catalog_entry: Any = None

    @property
    def total_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]

    def target(self, f: HubFile) -> Path:
        """Where ``f`` is written: its path below the staging folder (diffusers) or its base name
        there (single files), checked to stay inside it."""
        return inside(self.staging, f.name if self.kind == "diffusers" else PurePosixPath(f.name).name,
                      f"the listing of {self.repo_id}")

    def partial_paths(self) -> list[Path]:
        """Everything a cancel must delete."""
        if self.kind == "diffusers":
            return [self.staging]
        out = []
        for f in self.files:
            out += list(part_paths(self.target(f)))
        return out


# Licence ids (the hub's ``license:`` tag / card ``license``) whose terms restrict use: the user
# reads and accepts them before a download, whoever uploaded the repo and whether or not the hub
# gates it (a third-party GGUF of Llama or Gemma carries the same licence as the original).
RESTRICTIVE_LICENCES = frozenset({
    "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma",
    "flux-1-dev-non-commercial-license", "stabilityai-ai-community",
})
_RESTRICTIVE_LICENCE_RE = re.compile(r"^llama-?\d")  # llama2 ... llama4 and future llamaN(.M)
# For licence "other" (the card then names its own licence): families with restrictive licences,
# looked for in the card's licence name, the repo id and ``base_model:`` tags (never in plain
# tags: "llama" is also the architecture tag of Mistral, SmolLM2 and others).
_RESTRICTIVE_FAMILY_RE = re.compile(
    r"llama[-_ ]?[2-9]|meta-llama|gemma|flux[-_.]?1?[-_.]?dev|stable[-_]?diffusion[-_]?3|sd[-_]?3(\.5)?\b|"
    r"stabilityai-ai-community",
    re.IGNORECASE,
)


def licence_requires_acceptance(licence: str, *, gated: bool | str = False, repo_id: str = "",
                                tags: Any = (), license_name: str = "") -> bool:
    """Whether the user must read and accept the licence before downloading.

    True for gated repos, for licence ids in :data:`RESTRICTIVE_LICENCES` (``llama3.2``,
    ``gemma``, ``flux-1-dev-non-commercial-license``, ``stabilityai-ai-community``, ...), and for
    ``other`` when the card's licence name, the repo id or a ``base_model:`` tag names one of those
    families (Llama, Gemma, FLUX.1-dev, Stable Diffusion 3.x). Shared by plan_pull, the CLI and
    the Models tab, so that they agree.
    """
    if gated:
        return True
    lic = (licence or "").strip().lower()
    if lic in RESTRICTIVE_LICENCES or _RESTRICTIVE_LICENCE_RE.match(lic):
        return True
    if lic == "other" or license_name:
        hay = [license_name or "", repo_id or ""]
        hay += [t.split(":", 1)[1] for t in (tags or ()) if isinstance(t, str) and t.startswith("base_model:")]
        if license_name and license_name.strip().lower() in RESTRICTIVE_LICENCES:
            return True
        return any(_RESTRICTIVE_FAMILY_RE.search(h) for h in hay if h)
    return False


def _licence_error(repo_id: str, licence: str, url: str) -> AtelierError:
    where = f" ({url})" if url else ""
    return AtelierError(
        f"{repo_id} is released under the licence '{licence or 'see the model card'}'{where}, which you must read "
        "and accept before downloading. Accept it in the Models tab, or pass --accept-license."
    )


def plan_pull(
    repo_id: str,
    filename: str | None = None,
    *,
    revision: str | None = None,
    accept_license: bool = False,
    allow_pickle: bool | None = None,
    client: HubClient | None = None,
    hw: Any = None,
    models_dir: Path | None = None,
    catalog=None,
) -> PullPlan:
    """Resolve what a pull downloads (network: repo info). Checks licence acceptance and pickle."""
    from desktop_app.hub.catalog import choose_best_gguf, load_catalog

    client = client or HubClient()
    client.ensure_online()
    settings = client.settings
    if allow_pickle is None:
        allow_pickle = bool(settings.get("allow_pickle"))
    repo_id = validate_repo_id(repo_id.strip("/"), "the command")
    if revision is not None:
        validate_revision(revision, "the command")
    if catalog is None:
        try:
            catalog = load_catalog()
        except AtelierError:
            catalog = None
    entries = catalog.for_repo(repo_id, filename) if catalog is not None else []
    gate = next((e for e in entries if e.needs_acceptance), None)
    if gate is not None and not accept_license:
        raise _licence_error(repo_id, gate.license, gate.license_url)
    info = client.repo_info(repo_id, revision)
    if not accept_license and licence_requires_acceptance(info.license, gated=info.gated, repo_id=info.repo_id,
                                                          tags=info.tags):
        raise _licence_error(repo_id, info.license, f"{client.endpoint}/{repo_id}")
    rev = validate_revision(info.sha or revision or "main", f"the hub's reply for {repo_id}")
    base = hub_dir(repo_id, models_dir)
    licence = (gate.license if gate else "") or (entries[0].license if entries else "") or info.license

    if filename is None and info.is_diffusers:
        idx = _fetch_model_index(client, repo_id, rev)
        files, variant = select_diffusers_files(info, allow_pickle, idx)
        return _checked(PullPlan(repo_id, rev, files, "diffusers", base, base.with_name(base.name + ".partial"),
                                 hub_id(repo_id), variant, licence, entries[0] if entries else None))
    if filename is None:
        ggufs = info.gguf_files
        if ggufs:
            sizes = {}
            for f in ggufs:
                sp = split_info(f.name)
                key = f.name if not sp else f.name.replace(f"-{sp[0]:05d}-of-", "-00001-of-")
                sizes[key] = sizes.get(key, 0) + (f.size or 0)
            layers = entries[0].layers if entries else 0
            filename = choose_best_gguf(sizes.items(), hw, layers)
            if filename is None:
                smallest = min(sizes.items(), key=lambda kv: kv[1])
                raise AtelierError(
                    f"No quantization of {repo_id} fits this machine (the smallest, {smallest[0]}, is "
                    f"{_gb(smallest[1])}). Pick a smaller model."
                )
        else:
            singles = [f for f in info.files if f.name.endswith((".safetensors", ".onnx")) and "/" not in f.name]
            if len(singles) == 1:
                filename = singles[0].name
            else:
                names = ", ".join(f.name for f in info.files[:12])
                raise AtelierError(f"{repo_id} has no GGUF file and is not a diffusers pipeline; name the FILE to "
                                   f"pull. Files: {names}")
    f0 = info.file(filename)
    if f0 is None:
        ggufs = ", ".join(f.name for f in info.gguf_files[:10])
        raise AtelierError(f"{repo_id} has no file '{filename}'." + (f" GGUF files: {ggufs}" if ggufs else ""))
    files = [f0]
    sp = split_info(filename)
    if sp:
        stem = filename[: -len(f"-00001-of-{sp[1]:05d}.gguf")]
        files = [info.file(f"{stem}-{i:05d}-of-{sp[1]:05d}.gguf") for i in range(1, sp[1] + 1)]
        if any(f is None for f in files):
            raise AtelierError(f"{repo_id}: some parts of the split file {filename} are missing on the hub.")
    for f in files:
        refuse_pickle(Path(f.name), allow_pickle)
    entry = next((e for e in entries if filename in e.files), entries[0] if entries else None)
    for f in files:  # the whole name, not only the base name kept below: a hostile name is refused outright
        validate_relpath(f.name, f"the listing of {repo_id}")
    dest = base / PurePosixPath(files[0].name).name
    return _checked(PullPlan(repo_id, rev, files, "file", dest, base, hub_id(repo_id, filename), "", licence, entry))


def _checked(plan: PullPlan) -> PullPlan:
    """Every file's target is validated before the plan is used, so nothing is written for a plan
    with one hostile name in it."""
    for f in plan.files:
        plan.target(f)
    return plan


def _fetch_model_index(client: HubClient, repo_id: str, rev: str) -> dict | None:
    try:
        with client.open(client.file_url(repo_id, "model_index.json", rev), what=f"{repo_id}/model_index.json") as r:
            return json.loads(r.read())
    except (ValueError, AtelierError) as exc:
        if isinstance(exc, OfflineError):
            raise
        return None


def pull_iter(
    repo_id: str,
    filename: str | None = None,
    *,
    revision: str | None = None,
    accept_license: bool = False,
    allow_pickle: bool | None = None,
    client: HubClient | None = None,
    library: Library | None = None,
    control: DownloadControl | None = None,
    cancel: CancelToken | None = None,
    disk_probe: Callable[[Path], int] = default_disk_probe,
    hw: Any = None,
    models_dir: Path | None = None,
    job_id: str = "",
    plan: PullPlan | None = None,
    allow_unverified: bool = False,
) -> Generator[DownloadProgress, None, ModelRecord]:
    """Download and register a model; yields progress events; returns the ModelRecord.

    The last event has state ``done`` and ``record_id``. On Paused the partial bytes stay; on
    Cancelled they are deleted. Nothing is registered unless every file is verified.

    A file for which the hub or mirror gives no checksum at all is refused (AtelierError, before
    its bytes are fetched), unless ``allow_unverified=True`` (for a trusted air-gapped mirror that
    serves no hash headers): then an event with state ``unverified`` and a warning ``message`` is
    yielded for each such file, the record gets ``extra["verified"] = False`` (and
    ``extra["unverified_files"]``), and the final ``done`` event carries the warning too.
    """
    client = client or HubClient()
    client.ensure_online()  # before any event: offline fails at once, with nothing shown as started
    control = control or DownloadControl(cancel)
    library = library or Library()
    ev = DownloadProgress(repo_id=repo_id, filename=filename or "", state="resolving", job_id=job_id)
    yield ev
    plan = plan or plan_pull(repo_id, filename, revision=revision, accept_license=accept_license,
                             allow_pickle=allow_pickle, client=client, hw=hw, models_dir=models_dir)
    existing = library.get(plan.record_id)
    if existing and Path(existing.path).exists():
        yield DownloadProgress(repo_id, filename or "", "done", existing.size_bytes, existing.size_bytes,
                               message="already installed", record_id=existing.id, job_id=job_id)
        return existing
    total = plan.total_bytes
    if total is not None:  # the whole job must fit before the first byte is written
        have = 0
        for f in plan.files:
            t = plan.target(f)
            for p in (t, part_paths(t)[0]):
                if p.exists():
                    have += p.stat().st_size
        require_free_space(total - have, plan.staging.parent, plan.repo_id, disk_probe)
    meter = _Meter()
    finished = 0
    unverified: list[str] = []
    try:
        for i, f in enumerate(plan.files, 1):
            target = plan.target(f)
            gen = download_file_iter(client, plan.repo_id, f.name, target, revision=plan.revision,
                                     expected_sha256=f.sha256, expected_size=f.size,
                                     expected_git_sha1="" if f.lfs else f.blob_id, control=control,
                                     disk_probe=disk_probe, allow_unverified=allow_unverified)
            while True:
                try:
                    state, done, _ftotal = next(gen)
                except StopIteration:
                    break
                speed, eta = meter.update(finished + done, total)
                msg = ""
                if state == "unverified":
                    unverified.append(f.name)
                    msg = _unverified_warning(plan.repo_id, [f.name])
                yield DownloadProgress(plan.repo_id, f.name, state, finished + done, total, speed, eta, i,
                                       len(plan.files), message=msg, job_id=job_id)
            finished += target.stat().st_size
        if plan.kind == "diffusers":
            remove_inside(plan.dest, plan.dest.parent)
            os.replace(plan.staging, plan.dest)
    except Cancelled as exc:
        if not isinstance(exc, Paused):
            discard_partial(plan)
        raise
    except ModelFormatError:
        raise
    rec = _register(plan, library, unverified)
    yield DownloadProgress(plan.repo_id, plan.files[-1].name if plan.files else "", "done", finished, total, 0.0,
                           0.0, len(plan.files), len(plan.files),
                           message=_unverified_warning(plan.repo_id, unverified) if unverified else "",
                           record_id=rec.id, job_id=job_id)
    return rec


def _unverified_warning(repo_id: str, names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"WARNING: {repo_id}: the hub or mirror gave no checksum for {shown}; installed WITHOUT verification "
            "(allowed unverified downloads). Atelier cannot tell whether these bytes are intact or genuine.")


def discard_partial(plan: PullPlan) -> None:
    for p in plan.partial_paths():
        remove_inside(p, plan.staging if p != plan.staging else plan.staging.parent)


def _register(plan: PullPlan, library: Library, unverified: list[str] | None = None) -> ModelRecord:
    from desktop_app.core.library import path_size
    from desktop_app.core.model_files import record_for_path

    e = plan.catalog_entry
    if plan.kind == "diffusers":
        task, fmt = (e.task if e else "image"), "diffusers"
        quant = plan.variant
    else:
        base = record_for_path(plan.dest, allow_pickle=True)  # checks the GGUF/safetensors header
        task, fmt = base.task, base.format
        if e is not None and e.task:
            task = e.task
        quant = quantization_from_name(plan.files[0].name) if fmt == "gguf" else ""
    filename = "" if plan.kind == "diffusers" else plan.files[0].name
    rec = ModelRecord(
        id=plan.record_id, task=task, format=fmt, path=str(plan.dest), size_bytes=path_size(plan.dest) if
        plan.kind == "diffusers" else sum(plan.target(f).stat().st_size for f in plan.files),
        name=(e.family + (f" {e.quantization}" if e.quantization else "")) if e else
        (Path(filename).stem if filename else plan.repo_id.split("/")[1]),
        source="hub", managed=True, repo_id=plan.repo_id, filename=filename, revision=plan.revision,
        quantization=quant, family=(e.family_id if e else ""), sha256=plan.files[0].sha256 if len(plan.files) == 1 else "",
        license=plan.license, extra={"variant": plan.variant} if plan.variant else {},
    )
    if e is not None and e.pipeline:
        rec.extra["pipeline"] = e.pipeline
    if unverified:
        rec.extra["verified"] = False
        rec.extra["unverified_files"] = list(unverified)
    return library.add(rec)


def pull(repo_id: str, filename: str | None = None, *, on_progress: Callable[[DownloadProgress], None] | None = None,
         **kw) -> ModelRecord:
    """``pull_iter`` driven to the end, calling ``on_progress`` for each event."""
    gen = pull_iter(repo_id, filename, **kw)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress:
            on_progress(ev)


# ---------------------------------------------------------------------------------------
# the queue
# ---------------------------------------------------------------------------------------
@dataclass
class DownloadJob:
    """A queued download; snapshots of it are what the GUI shows."""

    repo_id: str
    filename: str | None = None
    revision: str | None = None
    accept_license: bool = False
    allow_pickle: bool = False
    allow_unverified: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"  # queued | running | paused | done | failed | cancelled
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float = 0.0
    eta_s: float | None = None
    current_file: str = ""
    message: str = ""
    record_id: str = ""
    partials: list[str] = field(default_factory=list)  # what cancel deletes (known once resolved)
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


PERSISTED_STATES = ("queued", "running", "paused")


class DownloadQueue:
    """Runs downloads one at a time (or ``workers`` at a time) and persists pending jobs.

    Drive it from your own worker thread with ``run(stop_token)`` (returns when the token is
    set), or let it own threads with ``start()`` and ``shutdown()``. ``on_event(job_snapshot)``
    is called from the downloading thread after every change (bridge it to a Qt signal).
    ``shutdown()`` pauses running downloads (their partial files stay, and they are queued again
    on the next start) and joins the threads, normally within a fraction of a second.
    """

    def __init__(
        self,
        state_file: Path | None = None,
        *,
        library: Library | None = None,
        client_factory: Callable[[], HubClient] = HubClient,
        disk_probe: Callable[[Path], int] = default_disk_probe,
        hw: Any = None,
        on_event: Callable[[DownloadJob], None] | None = None,
    ) -> None:
        self.state_file = state_file or (get_paths().data / "downloads.json")
        self.library = library or Library()
        self.client_factory = client_factory
        self.disk_probe = disk_probe
        self.hw = hw
        self.on_event = on_event
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, DownloadJob] = {}
        self._controls: dict[str, DownloadControl] = {}
        self._threads: list[threading.Thread] = []
        self._stop = CancelToken()
        self._load()

    # persistence ----------------------------------------------------------------------
    def _load(self) -> None:
        if not self.state_file.exists():
            return
        try:
            raw = json.loads(self.state_file.read_text("utf-8"))
        except (OSError, ValueError):
            return
        for d in raw.get("jobs", []):
            known = set(DownloadJob.__dataclass_fields__)
            job = DownloadJob(**{k: v for k, v in d.items() if k in known})
            if job.state == "running":
                job.state = "queued"
            self._jobs[job.id] = job

    def _save(self) -> None:
        with self._lock:
            jobs = [j.to_dict() for j in self._jobs.values() if j.state in PERSISTED_STATES]
        write_json_atomic(self.state_file, {"version": 1, "jobs": jobs}, indent=1)

    def _emit(self, job: DownloadJob) -> None:
        if self.on_event:
            try:
                self.on_event(DownloadJob(**job.to_dict()))
            except Exception:  # a broken listener must not kill the download
                log.exception("download listener failed")

    # public API -----------------------------------------------------------------------
    def add(self, repo_id: str, filename: str | None = None, *, revision: str | None = None,
            accept_license: bool = False, allow_pickle: bool = False, allow_unverified: bool = False) -> str:
        """Queue a download; returns its job id. Nothing touches the network until a worker runs it.

        The repo id and revision are validated first (UnsafeNameError, nothing queued): in the GUI
        they may come from a server's reply."""
        validate_repo_id(repo_id, "the download request")
        if revision:
            validate_revision(revision, "the download request")
        job = DownloadJob(repo_id=repo_id, filename=filename, revision=revision, accept_license=accept_license,
                          allow_pickle=allow_pickle, allow_unverified=allow_unverified)
        with self._lock:
            self._jobs[job.id] = job
            self._save()
            self._wake.notify_all()
        self._emit(job)
        return job.id

    def jobs(self) -> list[DownloadJob]:
        """Snapshots (copies) of every job, oldest first."""
        with self._lock:
            return [DownloadJob(**j.to_dict()) for j in sorted(self._jobs.values(), key=lambda j: j.created_at)]

    def get(self, job_id: str) -> DownloadJob:
        with self._lock:
            if job_id not in self._jobs:
                raise AtelierError(f"No download job {job_id}.")
            return DownloadJob(**self._jobs[job_id].to_dict())

    def pause(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            ctl = self._controls.get(job_id)
            if job.state == "queued":
                job.state = "paused"
                self._save()
        if ctl is not None:
            ctl.pause()  # the worker sets the state when it stops
        else:
            self._emit(job)

    def resume(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if job.state in ("paused", "failed"):
                job.state = "queued"
                job.message = ""
                self._save()
                self._wake.notify_all()
        self._emit(job)

    def cancel(self, job_id: str) -> None:
        """Stop and delete the partial files."""
        with self._lock:
            job = self._jobs[job_id]
            ctl = self._controls.get(job_id)
            if ctl is None and job.state in ("queued", "paused", "failed"):
                owner = Settings().models_dir / "hub"
                for p in job.partials:  # from the state file: deleted only inside the hub folder
                    try:
                        remove_inside(Path(p), owner)
                    except AtelierError as exc:
                        log.warning("%s", exc)
                job.state = "cancelled"
                self._save()
        if ctl is not None:
            ctl.cancel()
        else:
            self._emit(job)

    def remove(self, job_id: str) -> None:
        """Forget a finished job (done/failed/cancelled)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job and job.state not in ("running",):
                del self._jobs[job_id]
                self._save()

    # running --------------------------------------------------------------------------
    def _claim(self) -> DownloadJob | None:
        with self._lock:
            for j in sorted(self._jobs.values(), key=lambda j: j.created_at):
                if j.state == "queued":
                    j.state = "running"
                    j.message = ""
                    self._controls[j.id] = DownloadControl()
                    return j
        return None

    def run_next(self) -> bool:
        """Run one queued job to its end in the calling thread. False when nothing is queued."""
        job = self._claim()
        if job is None:
            return False
        ctl = self._controls[job.id]
        self._emit(job)
        warning = ""
        try:
            client = self.client_factory()
            plan = plan_pull(job.repo_id, job.filename, revision=job.revision, accept_license=job.accept_license,
                             allow_pickle=job.allow_pickle, client=client, hw=self.hw)
            with self._lock:
                job.partials = [str(p) for p in plan.partial_paths()]
                job.bytes_total = plan.total_bytes
            for ev in pull_iter(job.repo_id, job.filename, client=client, library=self.library, control=ctl,
                                disk_probe=self.disk_probe, job_id=job.id, plan=plan,
                                allow_unverified=job.allow_unverified):
                with self._lock:
                    job.bytes_done, job.bytes_total = ev.bytes_done, ev.bytes_total
                    job.speed_bps, job.eta_s, job.current_file = ev.speed_bps, ev.eta_s, ev.filename
                    if ev.state == "retrying":
                        job.message = "connection lost, retrying"
                    elif ev.state == "verifying":
                        job.message = "verifying"
                    elif ev.state == "unverified":
                        job.message = ev.message
                    if ev.state == "done" and ev.message:
                        warning = ev.message
                    if ev.record_id:
                        job.record_id = ev.record_id
                self._emit(job)
            final, msg = "done", warning
        except Paused:
            final, msg = ("queued" if self._stop.cancelled else "paused"), "paused"
        except Cancelled:
            final, msg = "cancelled", "cancelled"
        except AtelierError as exc:
            final, msg = "failed", str(exc)
        except Exception as exc:  # keep the queue alive; the message says what happened
            log.exception("download job failed")
            final, msg = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            job.state, job.message = final, msg
            job.speed_bps, job.eta_s = 0.0, None
            self._controls.pop(job.id, None)
            self._save()
            self._wake.notify_all()
        self._emit(job)
        return True

    def run(self, stop: CancelToken | None = None, idle_wait: float = 0.25) -> None:
        """Process jobs in the calling thread until ``stop`` is set (for a GUI worker thread)."""
        stop = stop or self._stop
        while not stop.cancelled and not self._stop.cancelled:
            if not self.run_next():
                with self._lock:
                    self._wake.wait(idle_wait)

    def run_until_idle(self) -> None:
        """Process every queued job, then return (CLI, tests)."""
        while not self._stop.cancelled and self.run_next():
            pass

    def start(self, workers: int = 1) -> None:
        """Start ``workers`` threads of our own (stop them with ``shutdown``)."""
        self._stop.reset()
        for i in range(workers):
            t = threading.Thread(target=self.run, name=f"atelier-download-{i}", daemon=False)
            t.start()
            self._threads.append(t)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Pause what runs (partials kept, re-queued for next time), stop threads. True if all stopped."""
        self._stop.cancel()
        with self._lock:
            controls = list(self._controls.values())
            self._wake.notify_all()
        for c in controls:
            c.pause()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        self._threads = alive
        self._save()
        return not alive
