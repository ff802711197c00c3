"""Model packs (issue 12): models carried on a USB stick or a shared folder to machines that never
see the internet, verified on arrival.

``export_pack(ids, dest)`` copies each library model (a file or a diffusers folder) to
``dest/models/<id>/`` and writes ``dest/pack.json``: for every model its library fields (task,
format, family, quantisation, source repo, revision, licence) and, for every file, its path in the
pack, size and sha256.

``import_pack(dest)`` trusts nothing in ``pack.json``: every path must stay inside the pack (the
hub's name rules, ``core/safepath.py``), and every file's size and sha256 are checked *before*
anything is copied or registered. One tampered, missing or extra-large file: one clear error that
names it, and nothing from the pack is registered. The models are then copied into the models
folder (the stick can go) and registered with their pack metadata; a failure half-way takes back
what this import registered.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from desktop_app import __version__
from desktop_app.core.cancel import CancelToken
from desktop_app.core.errors import AtelierError
from desktop_app.core.library import Library, ModelRecord
from desktop_app.core.safepath import inside, validate_relpath

PACK_FILE = "pack.json"
FORMAT = "atelier-model-pack"
MAX_PACK_JSON = 4 * 2**20
MAX_FIELD = 300  # characters of a pack's id, name, licence … (they are shown in the app and in errors)
KEPT = ("name", "task", "format", "family", "quantization", "repo_id", "filename", "revision", "license")


def _sha256(path: Path, cancel: CancelToken, copy_to: Path | None = None) -> str:
    """The file's sha256; with ``copy_to``, the file is copied there in the same pass (one read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f, (open(copy_to, "wb") if copy_to is not None else contextlib.nullcontext()) as out:
        while True:
            cancel.raise_if_cancelled()
            b = f.read(4 * 2**20)
            if not b:
                return h.hexdigest()
            h.update(b)
            if out is not None:
                out.write(b)


def _files_of(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def export_pack(ids: list[str], dest: str | Path, library: Library | None = None,
                cancel: CancelToken | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Write the models ``ids`` and ``pack.json`` to ``dest`` (created; must not hold a pack)."""
    library = library or Library()
    cancel = cancel or CancelToken()
    dest = Path(dest).expanduser()
    if (dest / PACK_FILE).exists():
        raise AtelierError(f"{dest} already holds a model pack; choose an empty folder.")
    records = []
    for mid in ids:
        rec = library.get(mid)
        if rec is None:
            raise AtelierError(f"No model {mid!r} in the library (see 'atelier models list'); nothing was written.")
        if not Path(rec.path).exists():
            raise AtelierError(f"The files of {mid} are missing ({rec.path}); nothing was written.")
        records.append(rec)
    entries = []
    try:
        for rec in records:
            src = Path(rec.path)
            base = Path("models") / _safe_dir(rec.id) / src.name
            files = []
            for f in _files_of(src):
                rel = base / f.relative_to(src) if src.is_dir() else base
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                if progress:
                    progress(str(rel))
                digest = _sha256(f, cancel, copy_to=out)  # the copy is hashed as it is written
                files.append({"path": rel.as_posix(), "size": out.stat().st_size, "sha256": digest})
            entries.append({"id": rec.id, **{k: getattr(rec, k) for k in KEPT}, "path": base.as_posix(),
                            "size_bytes": sum(x["size"] for x in files), "files": files})
        pack = {"format": FORMAT, "version": 1, "app_version": __version__, "created": time.time(),
                "models": entries}
        tmp = dest / (PACK_FILE + ".tmp")
        tmp.write_text(json.dumps(pack, indent=1), "utf-8")
        os.replace(tmp, dest / PACK_FILE)
    except OSError as exc:
        raise AtelierError(f"Could not write the pack to {dest}: {exc.strerror or exc}.") from None
    return pack


def _safe_dir(model_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)[:120] or "model"


def read_pack(folder: Path) -> dict:
    """pack.json, checked in shape (not yet against the files)."""
    p = folder / PACK_FILE
    if not p.is_file():
        raise AtelierError(f"{folder} is not a model pack (no {PACK_FILE}).")
    if p.stat().st_size > MAX_PACK_JSON:
        raise AtelierError(f"{p} is too large to be a pack description.")
    try:
        pack = json.loads(p.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AtelierError(f"{p} is not valid JSON: {exc}.") from None
    if not isinstance(pack, dict) or pack.get("format") != FORMAT or not isinstance(pack.get("models"), list):
        raise AtelierError(f"{p} is not an Atelier model pack.")
    for m in pack["models"]:
        if not (isinstance(m, dict) and isinstance(m.get("id"), str) and isinstance(m.get("files"), list)
                and isinstance(m.get("path"), str) and m["files"] and 0 < len(m["id"]) <= MAX_FIELD):
            raise AtelierError(f"{p}: a model entry is malformed.")
        for k in KEPT:
            if m.get(k) is not None and not (isinstance(m[k], str) and len(m[k]) <= MAX_FIELD):
                raise AtelierError(f"{p}: the {k} of {m['id']} is not a short text.")
        for f in m["files"]:
            if not (isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
                    and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64):
                raise AtelierError(f"{p}: a file entry of {m['id']} is malformed.")
    return pack


def verify_pack(folder: str | Path, cancel: CancelToken | None = None) -> dict:
    """Every file of the pack, checked: inside the pack, its size, its sha256. Raises the first
    mismatch, naming the file."""
    cancel = cancel or CancelToken()
    folder = Path(folder).expanduser().resolve()
    pack = read_pack(folder)
    for m in pack["models"]:
        root = validate_relpath(m["path"], where="the pack")
        for f in m["files"]:
            rel = validate_relpath(f["path"], where="the pack")
            if rel != root and root not in rel.parents:
                raise AtelierError(f"The pack lists {rel} for {m['id']}, outside its folder {root}: refused.")
            path = inside(folder, str(rel), where="the pack")
            if not path.is_file():
                raise AtelierError(f"The pack is incomplete: {rel} is missing. Nothing was imported.")
            if path.stat().st_size != f["size"]:
                raise AtelierError(f"{rel} has {path.stat().st_size:,} bytes, the pack says {f['size']:,}: "
                                   "the file was altered or cut short. Nothing was imported.")
            if _sha256(path, cancel) != f["sha256"].lower():
                raise AtelierError(f"{rel} does not match its checksum in the pack (altered or damaged). "
                                   "Nothing was imported.")
    return pack


def import_pack(folder: str | Path, library: Library | None = None, cancel: CancelToken | None = None,
                skipped: list | None = None) -> list[ModelRecord]:
    """Verify the whole pack, then copy and register its models (all of them, or none). A model
    whose contents are already in the library is not added twice: its AlreadyInstalled goes to
    ``skipped`` (when given)."""
    from desktop_app.core.errors import AlreadyInstalled
    from desktop_app.core.policy import refuse_import
    from desktop_app.hub.importer import import_path, remove_model

    refuse_import()
    library = library or Library()
    folder = Path(folder).expanduser().resolve()
    pack = verify_pack(folder, cancel)
    added: list[ModelRecord] = []
    try:
        for m in pack["models"]:
            try:
                rec = import_path(folder / m["path"], copy=True, library=library, cancel=cancel,
                                  task=m.get("task") or None)
            except AlreadyInstalled as exc:
                if skipped is not None:
                    skipped.append(exc)
                continue
            for k in KEPT:
                if isinstance(m.get(k), str) and m[k] and k not in ("task", "format"):
                    setattr(rec, k, m[k])
            if len(m["files"]) == 1:
                rec.sha256 = m["files"][0]["sha256"]
            rec.source = "pack"
            added.append(library.add(rec))
    except BaseException:
        for rec in added:  # all or nothing: take back what this import registered and copied
            try:
                remove_model(rec.id, library)
            except Exception:  # noqa: BLE001 - best effort; the first error is the one to report
                pass
        raise
    return added
