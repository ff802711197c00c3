"""One hub file, resumable and verified: progress events, pause/cancel control, the disk check,
the ``.part`` file and its sidecar, HTTP Range resume (also after the process died), checksums.

See :mod:`desktop_app.hub.downloads` for the whole picture."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Generator

from desktop_app.core.errors import (
    AtelierError, Cancelled, ModelFormatError, OfflineError, is_storage_error, storage_error,
)
from desktop_app.core.cancel import CancelToken
from desktop_app.hub.client import HubClient, HubConnectionError, git_blob_sha1_matches
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
