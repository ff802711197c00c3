"""The library of installed models: one JSON file of records in the data dir.

Record contract (``atelier models list --json``): ``id`` (stable: ``org/repo/file`` for hub
files, a slug of the file name for local ones), ``task`` (chat, image, upscale,
background_removal), ``format`` (gguf, diffusers, safetensors, onnx), ``path``, ``size_bytes``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Container, Iterable

from desktop_app.core.errors import AtelierError
from desktop_app.core.paths import get_paths, write_json_atomic

TASKS = ("chat", "image", "upscale", "background_removal")
FORMATS = ("gguf", "diffusers", "safetensors", "onnx")


@dataclass
class ModelRecord:
    id: str
    task: str
    format: str
    path: str
    size_bytes: int
    name: str = ""
    source: str = "import"  # starter | hub | import | discovered | catalog
    managed: bool = False  # True: the file lives in our models dir and deleting it is ours to do
    repo_id: str = ""
    filename: str = ""
    revision: str = ""
    quantization: str = ""
    family: str = ""  # e.g. llama, qwen3 (chat) or sd15, sdxl, sd3, flux (image)
    sha256: str = ""
    license: str = ""
    added_at: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def display_name(self) -> str:
        return self.name or Path(self.path).name


def slugify(name: str) -> str:
    """Stable id for a local file: lower case, [a-z0-9._-] only."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug or "model"


def hub_id(repo_id: str, filename: str = "") -> str:
    return f"{repo_id}/{filename}" if filename else repo_id


def unique_id(base: str, taken: Container[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... : the first one not in ``taken``."""
    rid, n = base, 2
    while rid in taken:
        rid = f"{base}-{n}"
        n += 1
    return rid


def path_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).stat().st_size
            except OSError:
                pass
    return total


class Library:
    """Thread-safe, file-backed list of ModelRecords (atomic writes)."""

    _lock = threading.RLock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or (get_paths().data / "library.json")

    # storage ------------------------------------------------------------------------
    def _load(self) -> list[ModelRecord]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise AtelierError(f"The model library file {self.path} is unreadable: {exc}") from exc
        return [ModelRecord.from_dict(d) for d in raw.get("models", [])]

    def _save(self, records: Iterable[ModelRecord]) -> None:
        write_json_atomic(self.path, {"version": 1, "models": [r.to_dict() for r in records]}, indent=1)

    # queries ------------------------------------------------------------------------
    def list(self, task: str | None = None) -> list[ModelRecord]:
        with self._lock:
            recs = self._load()
        return [r for r in recs if task is None or r.task == task]

    def get(self, model_id: str) -> ModelRecord | None:
        for r in self.list():
            if r.id == model_id:
                return r
        return None

    def find_by_path(self, path: str | Path) -> ModelRecord | None:
        p = str(Path(path).expanduser().resolve())
        for r in self.list():
            if str(Path(r.path).resolve()) == p:
                return r
        return None

    def same_contents(self, size_bytes: int, fmt: str, sha256: str = "",
                      digest: Callable[[Path], str] | None = None) -> ModelRecord | None:
        """A record whose single file has these contents: the same sha256, or (``digest`` given)
        the same size and format and a file that hashes to it (computed only for such a record;
        its sha256 is then kept). None when there is none."""
        sha256 = (sha256 or "").lower()
        for rec in self.list():
            p = Path(rec.path)
            if rec.format != fmt or rec.format == "diffusers" or rec.size_bytes != size_bytes or not p.is_file():
                continue
            if sha256 and rec.sha256 and rec.sha256.lower() == sha256:
                return rec
            if digest is not None and not rec.sha256 and sha256:
                rec.sha256 = digest(p)
                self.add(rec)
                if rec.sha256 == sha256:
                    return rec
        return None

    def resolve(self, id_or_path: str) -> ModelRecord:
        """A record for ``--model``: a library id, or a path (registered or not)."""
        rec = self.get(id_or_path)
        if rec:
            return rec
        p = Path(id_or_path).expanduser()
        if p.exists():
            rec = self.find_by_path(p)
            if rec:
                return rec
            from desktop_app.core.model_files import record_for_path  # local import: avoids a cycle
            from desktop_app.core.settings import Settings

            return record_for_path(p, allow_pickle=bool(Settings().get("allow_pickle")))
        raise AtelierError(
            f"No model '{id_or_path}': not an id in the library and not an existing path "
            "(see 'atelier models list')."
        )

    # changes ------------------------------------------------------------------------
    def add(self, record: ModelRecord) -> ModelRecord:
        """Insert or replace (by id)."""
        self.add_all([record])
        return record

    def add_all(self, records: Iterable[ModelRecord]) -> None:
        """Insert or replace (by id) several records with one read and one write of the file."""
        records = list(records)
        for record in records:
            if record.task not in TASKS:
                raise ValueError(f"unknown task {record.task!r}")
            if record.format not in FORMATS:
                raise ValueError(f"unknown format {record.format!r}")
        if not records:
            return
        new_ids = {r.id for r in records}
        with self._lock:
            recs = [r for r in self._load() if r.id not in new_ids]
            recs.extend({r.id: r for r in records}.values())
            self._save(recs)

    def remove(self, model_id: str) -> ModelRecord:
        """Unregister a record (files are left alone; see ``delete``)."""
        with self._lock:
            recs = self._load()
            hit = [r for r in recs if r.id == model_id]
            if not hit:
                raise AtelierError(f"No model with id '{model_id}' in the library.")
            self._save([r for r in recs if r.id != model_id])
        return hit[0]

    def delete(self, model_id: str) -> int:
        """Unregister and, when the files are ours (managed), delete them.

        Returns the bytes freed (0 for a model used in place from another app's folder).
        """
        from desktop_app.core.safepath import is_strictly_inside, remove_inside
        from desktop_app.core.settings import Settings

        rec = self.remove(model_id)
        p = Path(rec.path)
        models_dir = Settings().models_dir
        if not rec.managed or not is_strictly_inside(p, models_dir):
            return 0
        freed = path_size(p) if p.exists() else 0
        remove_inside(p, models_dir)
        return freed
