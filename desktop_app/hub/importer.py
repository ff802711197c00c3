"""Import a local model file or folder, and remove models (deleting only what Atelier owns).

``import_path(p)`` checks the file first (GGUF magic/version, safetensors header, diffusers
folder components; pickle refused unless allowed), then registers it in place
(``managed=False``) or, with ``copy=True``, copies it into ``<models>/imported/`` (through a
``.part`` name, with progress and cancel) and registers the copy (``managed=True``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from desktop_app.core.errors import AlreadyInstalled, AtelierError, Cancelled
from desktop_app.core.library import Library, ModelRecord, path_size, unique_id
from desktop_app.core.model_files import check_diffusers_folder, file_sha256, record_for_path
from desktop_app.core.safepath import is_strictly_inside, remove_inside
from desktop_app.core.settings import Settings
from desktop_app.core.cancel import CancelToken
from desktop_app.hub.client import quantization_from_name
from desktop_app.hub.transfer import default_disk_probe, require_free_space

CHUNK = 4 * 1024 * 1024


def _unique_id(library: Library, base: str, path: str) -> str:
    """``base`` made unique among the library's ids (an id already naming ``path`` is kept)."""
    return unique_id(base, {r.id for r in library.list() if r.path != path})


def _copy_file(src: Path, dst: Path, cancel: CancelToken, progress: Callable[[int, int], None] | None,
               done0: int, total: int, hasher=None) -> int:
    part = dst.with_name(dst.name + ".part")
    done = done0
    try:
        with open(src, "rb") as fi, open(part, "wb") as fo:
            while True:
                cancel.raise_if_cancelled()
                b = fi.read(CHUNK)
                if not b:
                    break
                if hasher is not None:
                    hasher.update(b)
                fo.write(b)
                done += len(b)
                if progress:
                    progress(done, total)
        shutil.copystat(src, part)
        os.replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return done


def import_path(
    path: str | Path,
    *,
    copy: bool = False,
    allow_pickle: bool | None = None,
    library: Library | None = None,
    cancel: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
    disk_probe: Callable[[Path], int] = default_disk_probe,
    task: str | None = None,
) -> ModelRecord:
    """Check and register a model file or diffusers folder; returns the record. Refused (PolicyLocked)
    when the administrator's policy turns imports off, or pickle off and ``allow_pickle`` asks for it."""
    from desktop_app.core.policy import refuse_import, refuse_locked

    refuse_import()
    settings = Settings()
    if allow_pickle is None:
        allow_pickle = bool(settings.get("allow_pickle"))
    elif allow_pickle and not settings.get("allow_pickle"):
        refuse_locked("allow_pickle")
    library = library or Library()
    cancel = cancel or CancelToken()
    src = Path(path).expanduser().resolve()
    rec = record_for_path(src, allow_pickle=allow_pickle)  # header checks, pickle refusal
    if src.is_dir():
        check_diffusers_folder(src, allow_pickle=allow_pickle)
    if task:
        rec.task = task
    if rec.format == "gguf":
        rec.quantization = quantization_from_name(src.name)
    existing = library.find_by_path(src)
    if existing and not copy:
        return existing
    if src.is_file() and any(r.size_bytes == rec.size_bytes for r in library.list()):
        # a file of the same size is installed: the same contents (downloaded, imported) show once
        rec.sha256 = file_sha256(src, cancel)
        dup = library.same_contents(rec.size_bytes, rec.format, rec.sha256, digest=lambda p: file_sha256(p, cancel))
        if dup is not None:
            raise AlreadyInstalled(dup, src.name)
    hasher = hashlib.sha256() if src.is_file() else None
    if copy:
        dest_root = settings.models_dir / "imported"
        dest = dest_root / src.name
        if dest.exists():
            raise AtelierError(f"{dest} already exists in the models folder; remove it first or import in place.")
        total = rec.size_bytes
        require_free_space(total, dest_root, f"a copy of {src.name}", disk_probe)
        dest_root.mkdir(parents=True, exist_ok=True)
        try:
            if src.is_dir():
                staging = dest_root / (src.name + ".partial")
                shutil.rmtree(staging, ignore_errors=True)
                done = 0
                for f in sorted(p for p in src.rglob("*") if p.is_file()):
                    t = staging / f.relative_to(src)
                    t.parent.mkdir(parents=True, exist_ok=True)
                    done = _copy_file(f, t, cancel, progress, done, total)
                os.replace(staging, dest)
            else:
                _copy_file(src, dest, cancel, progress, 0, total, hasher)
                rec.sha256 = hasher.hexdigest()  # hashed as it was copied (one read)
        except Cancelled:
            if src.is_dir():
                shutil.rmtree(dest_root / (src.name + ".partial"), ignore_errors=True)
            raise
        rec.path = str(dest)
        rec.managed = True
        rec.size_bytes = path_size(dest)
    rec.source = "import"
    rec.id = _unique_id(library, rec.id, rec.path)
    return library.add(rec)


@dataclass
class Removal:
    record: ModelRecord
    bytes_freed: int
    deleted: bool  # False: only unregistered (the files belong to another app or folder)
    note: str = ""

    def to_dict(self) -> dict:
        return {"id": self.record.id, "path": self.record.path, "bytes_freed": self.bytes_freed,
                "deleted": self.deleted, "note": self.note}


def remove_model(model_id: str, library: Library | None = None) -> Removal:
    """Unregister a model; delete its files only if Atelier owns them (managed and inside the models folder)."""
    library = library or Library()
    rec = library.get(model_id)
    if rec is None:
        raise AtelierError(f"No model with id '{model_id}' in the library (see 'atelier models list').")
    p = Path(rec.path)
    models_dir = Settings().models_dir
    if not rec.managed or not is_strictly_inside(p, models_dir):
        library.remove(model_id)
        note = "unregistered only: the files are not Atelier's (used in place)"
        if rec.managed:
            note = f"unregistered only: {p} is outside the models folder {models_dir}"
        return Removal(rec, 0, False, note)
    freed = path_size(p) if p.exists() else 0
    library.remove(model_id)
    was_file = p.is_file()
    remove_inside(p, models_dir)
    if was_file:
        # split GGUF parts downloaded with it
        from desktop_app.hub.client import split_info

        if split_info(p.name):
            for other in p.parent.glob(p.name.replace("-00001-of-", "-*-of-")):
                freed += other.stat().st_size
                other.unlink()
    # tidy empty hub/org/name folders
    parent = p.parent
    while is_strictly_inside(parent, models_dir):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return Removal(rec, freed, True)
