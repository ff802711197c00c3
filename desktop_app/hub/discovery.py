"""Find models other apps already keep on this machine and register them in place (no copy).

Records get ``managed=False`` and ``source="discovered"``: deleting one in Atelier only
unregisters it, never touches the other app's files. Every location is derived from
``Path.home()`` and the apps' own environment variables, so tests point HOME at a fake tree.

Sources:
- Hugging Face cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``;
  ``models--org--name/snapshots/<rev>/`` (the revision ``refs/main`` points to, else the newest).
- LM Studio: ``~/.lmstudio/models/<publisher>/<repo>/*.gguf`` and the older ``~/.cache/lm-studio/models``.
- Ollama: ``OLLAMA_MODELS`` or ``~/.ollama/models``: ``manifests/<registry>/<namespace>/<name>/<tag>``
  JSON; the layer with mediaType ``application/vnd.ollama.image.model`` names the GGUF blob
  ``blobs/sha256-<hex>``, which becomes the record's path.
- GPT4All: ``~/.local/share/nomic.ai/GPT4All`` (Linux), ``~/Library/Application Support/nomic.ai/GPT4All``
  (macOS), ``~/AppData/Local/nomic.ai/GPT4All`` (Windows).
- ComfyUI/A1111 ``models`` folders named by the user (and Settings' ``extra_model_dirs``):
  ``checkpoints``/``Stable-diffusion`` → image, ``ESRGAN``/``RealESRGAN``/``upscale_models`` → upscale,
  ``unet``/``diffusion_models`` GGUF → image, ``LLM``/``llm`` GGUF → chat, ``rembg`` ONNX → background removal.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.core.library import Library, ModelRecord, path_size, slugify, unique_id
from desktop_app.core.model_files import check_gguf_file, record_for_path
from desktop_app.hub.client import quantization_from_name, split_info

log = logging.getLogger("atelier.hub.discovery")

OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"

# folder name (lower case) -> task, for ComfyUI / A1111 / Stability Matrix model trees
FOLDER_TASKS = {
    "checkpoints": "image", "stable-diffusion": "image", "diffusers": "image", "unet": "image",
    "diffusion_models": "image",
    "esrgan": "upscale", "realesrgan": "upscale", "upscale_models": "upscale", "swinir": "upscale",
    "llm": "chat", "llms": "chat", "gguf": "chat",
    "rembg": "background_removal", "background_removal": "background_removal", "u2net": "background_removal",
}


@dataclass
class Skipped:
    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass
class DiscoveryReport:
    found: list[ModelRecord] = field(default_factory=list)  # everything recognised
    added: list[ModelRecord] = field(default_factory=list)  # newly registered
    skipped: list[Skipped] = field(default_factory=list)  # not usable, with the reason
    searched: list[str] = field(default_factory=list)  # locations that existed

    def to_dict(self) -> dict:
        return {"found": [r.to_dict() for r in self.found], "added": [r.id for r in self.added],
                "skipped": [s.to_dict() for s in self.skipped], "searched": self.searched}


# ---------------------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------------------
def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def lmstudio_dirs() -> list[Path]:
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def ollama_dir() -> Path:
    if os.environ.get("OLLAMA_MODELS"):
        return Path(os.environ["OLLAMA_MODELS"]).expanduser()
    return Path.home() / ".ollama" / "models"


def gpt4all_dirs() -> list[Path]:
    home = Path.home()
    return [
        home / ".local" / "share" / "nomic.ai" / "GPT4All",
        home / "Library" / "Application Support" / "nomic.ai" / "GPT4All",
        home / "AppData" / "Local" / "nomic.ai" / "GPT4All",
    ]


# ---------------------------------------------------------------------------------------
# scanners: each yields (record, None) or (None, Skipped)
# ---------------------------------------------------------------------------------------
def _rec(path: Path, id_: str, task: str, fmt: str, app: str, repo_id: str = "", filename: str = "",
         name: str = "") -> ModelRecord:
    size = path_size(path)
    if fmt == "gguf":
        sp = split_info(path.name)
        if sp:
            size = sum(path_size(p) for p in path.parent.glob(path.name.replace("-00001-of-", "-*-of-")))
    return ModelRecord(
        id=id_, task=task, format=fmt, path=str(path), size_bytes=size,
        name=name or (path.stem if path.is_file() else path.name), source="discovered", managed=False,
        repo_id=repo_id, filename=filename, quantization=quantization_from_name(path.name) if fmt == "gguf" else "",
        extra={"app": app},
    )


def _check_file(path: Path, task_hint: str | None = None) -> tuple[str, str]:
    """(task, format) of a model file after checking its header; raises ModelFormatError."""
    r = record_for_path(path)  # refuses pickle, checks GGUF/safetensors headers
    task = task_hint or r.task
    if r.format == "gguf" and task_hint is None:
        task = "chat"
    return task, r.format


def _gguf_usable(p: Path) -> bool:
    n = p.name.lower()
    if "mmproj" in n:  # vision projector, not a model of its own
        return False
    sp = split_info(p.name)
    return not sp or sp[0] == 1


def scan_hf_cache(root: Path | None = None) -> Iterator[tuple[ModelRecord | None, Skipped | None]]:
    root = root or hf_cache_dir()
    if not root.is_dir():
        return
    for repo_dir in sorted(root.glob("models--*")):
        parts = repo_dir.name.split("--")
        if len(parts) < 3:
            continue
        repo_id = f"{parts[1]}/{'--'.join(parts[2:])}"
        snaps = repo_dir / "snapshots"
        if not snaps.is_dir():
            continue
        snap = None
        ref = repo_dir / "refs" / "main"
        if ref.exists():
            cand = snaps / ref.read_text("utf-8").strip()
            if cand.is_dir():
                snap = cand
        if snap is None:
            all_snaps = [s for s in snaps.iterdir() if s.is_dir()]
            if not all_snaps:
                continue
            snap = max(all_snaps, key=lambda s: s.stat().st_mtime)
        if (snap / "model_index.json").exists():
            yield _rec(snap, repo_id, "image", "diffusers", "hf-cache", repo_id, name=repo_id.split("/")[1]), None
            continue
        for f in sorted(snap.rglob("*")):
            if not f.is_file() or f.suffix.lower() not in (".gguf", ".safetensors", ".onnx"):
                continue
            if f.suffix.lower() == ".gguf" and not _gguf_usable(f):
                continue
            if f.suffix.lower() == ".safetensors" and (snap / "config.json").exists():
                continue  # a transformers checkpoint (not something Atelier runs)
            rel = f.relative_to(snap).as_posix()
            try:
                task, fmt = _check_file(f)
            except ModelFormatError as exc:
                yield None, Skipped(str(f), str(exc))
                continue
            yield _rec(f, f"{repo_id}/{rel}", task, fmt, "hf-cache", repo_id, rel), None


def scan_lmstudio(roots: Iterable[Path] | None = None) -> Iterator[tuple[ModelRecord | None, Skipped | None]]:
    for root in roots or lmstudio_dirs():
        if not root.is_dir():
            continue
        for f in sorted(root.rglob("*.gguf")):
            if not _gguf_usable(f):
                continue
            rel = f.relative_to(root)
            repo_id = "/".join(rel.parts[:2]) if len(rel.parts) >= 3 else ""
            try:
                check_gguf_file(f)  # the whole header, as import checks it: refused with the reason
            except ModelFormatError as exc:
                yield None, Skipped(str(f), str(exc))
                continue
            rid = f"{repo_id}/{f.name}" if repo_id else slugify(f.name)
            yield _rec(f, rid, "chat", "gguf", "lmstudio", repo_id, f.name), None


def scan_ollama(root: Path | None = None) -> Iterator[tuple[ModelRecord | None, Skipped | None]]:
    root = root or ollama_dir()
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for m in sorted(manifests.rglob("*")):
        if not m.is_file():
            continue
        rel = m.relative_to(manifests).parts  # registry, namespace, name, tag
        if len(rel) < 4:
            continue
        _registry, namespace, name, tag = rel[0], rel[1], rel[-2], rel[-1]
        label = f"{name}:{tag}" if namespace == "library" else f"{namespace}/{name}:{tag}"
        try:
            doc = json.loads(m.read_text("utf-8"))
            layer = next(layer for layer in doc.get("layers", []) if layer.get("mediaType") == OLLAMA_MODEL_MEDIA)
            digest = layer["digest"]
        except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
            yield None, Skipped(str(m), "Ollama manifest without a model layer")
            continue
        blob = root / "blobs" / digest.replace(":", "-")
        if not blob.is_file():
            yield None, Skipped(str(blob), f"Ollama blob for {label} is missing")
            continue
        try:
            check_gguf_file(blob)
        except ModelFormatError as exc:
            yield None, Skipped(str(blob), f"{label}: {exc}")
            continue
        rid = "ollama/" + slugify(label.replace(":", "-"))
        yield _rec(blob, rid, "chat", "gguf", "ollama", name=f"{label} (Ollama)"), None


def scan_gpt4all(roots: Iterable[Path] | None = None) -> Iterator[tuple[ModelRecord | None, Skipped | None]]:
    for root in roots or gpt4all_dirs():
        if not root.is_dir():
            continue
        for f in sorted(root.glob("*.gguf")):
            if not _gguf_usable(f):
                continue
            try:
                check_gguf_file(f)  # the whole header, as import checks it: refused with the reason
            except ModelFormatError as exc:
                yield None, Skipped(str(f), str(exc))
                continue
            yield _rec(f, "gpt4all/" + slugify(f.name), "chat", "gguf", "gpt4all", filename=f.name), None


def _models_root(d: Path) -> Path:
    """Accept the app folder (ComfyUI/, stable-diffusion-webui/) or its models/ folder."""
    return d / "models" if (d / "models").is_dir() else d


def scan_model_folder(folder: Path, app: str = "folder") -> Iterator[tuple[ModelRecord | None, Skipped | None]]:
    """A ComfyUI/A1111/admin models folder: task from the sub-folder name, else from the file."""
    root = _models_root(Path(folder).expanduser())
    if not root.is_dir():
        yield None, Skipped(str(root), "not a folder")
        return
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if (d / "model_index.json").exists():
            dirnames[:] = []
            yield _rec(d, f"{app}/{slugify(d.name)}", "image", "diffusers", app), None
            continue
        rel = d.relative_to(root).parts
        hint = next((FOLDER_TASKS[p.lower()] for p in rel if p.lower() in FOLDER_TASKS), None)
        for fn in sorted(filenames):
            f = d / fn
            suf = f.suffix.lower()
            if suf in (".ckpt", ".pt", ".pth", ".bin"):
                if hint in ("image", "upscale"):
                    yield None, Skipped(str(f), "pickle checkpoint: refused by default (use a .safetensors version)")
                continue
            if suf not in (".gguf", ".safetensors", ".onnx"):
                continue
            if suf == ".gguf" and not _gguf_usable(f):
                continue
            task_hint = hint
            if suf == ".gguf" and hint not in ("image", "chat"):
                task_hint = "chat"
            if suf == ".onnx" and hint is None:
                task_hint = "background_removal"
            if suf == ".safetensors" and hint == "chat":
                continue
            try:
                task, fmt = _check_file(f, task_hint)
            except ModelFormatError as exc:
                yield None, Skipped(str(f), str(exc))
                continue
            yield _rec(f, f"{app}/{slugify(f.name)}", task, fmt, app), None


# ---------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------
def discover(extra_dirs: Iterable[str | Path] = (), library: Library | None = None, register: bool = True,
             include_settings_dirs: bool = True) -> DiscoveryReport:
    """Scan every known location (+ ``extra_dirs``) and register what is new (in place). Refused
    (PolicyLocked) when the administrator's policy turns imports off and ``register`` is asked."""
    if register:
        from desktop_app.core.policy import refuse_import

        refuse_import()
    library = library or Library()
    report = DiscoveryReport()
    dirs = [Path(d).expanduser() for d in extra_dirs]
    if include_settings_dirs:
        from desktop_app.core.settings import Settings

        dirs += [Path(d).expanduser() for d in (Settings().get("extra_model_dirs") or [])]
    scans: list[tuple[str, Iterator]] = [
        (str(hf_cache_dir()), scan_hf_cache()),
        *[(str(p), scan_lmstudio([p])) for p in lmstudio_dirs()],
        (str(ollama_dir()), scan_ollama()),
        *[(str(p), scan_gpt4all([p])) for p in gpt4all_dirs()],
        *[(str(d), scan_model_folder(d, app=slugify(d.name) or "folder")) for d in dirs],
    ]
    _register_scans(scans, library, report, register)
    return report


def register_folders(folders: Iterable[str | Path], library: Library | None = None) -> DiscoveryReport:
    """Register the models of read-only folders (Settings' ``extra_model_dirs``, e.g. provisioned by
    an admin) in place: nothing is copied, and removing such a model only unregisters it."""
    library = library or Library()
    report = DiscoveryReport()
    scans = []
    for folder in folders:
        folder = Path(folder).expanduser()
        scans.append((str(folder), scan_model_folder(folder, app=slugify(folder.name) or "folder")))
    _register_scans(scans, library, report, True, read_only=True)
    return report


def _register_scans(scans, library: Library, report: DiscoveryReport, register: bool, read_only: bool = False) -> None:
    """Add what the scans found to the library (in place), skipping paths already known."""
    existing = library.list()
    known_paths = {str(Path(r.path).resolve()) for r in existing}
    known_ids = {r.id for r in existing}
    try:
        for where, it in scans:
            if Path(where).exists():
                report.searched.append(where)
            try:
                for rec, skip in it:
                    if skip is not None:
                        report.skipped.append(skip)
                        continue
                    assert rec is not None
                    report.found.append(rec)
                    rp = str(Path(rec.path).resolve())
                    if rp in known_paths:
                        continue
                    rec.id = unique_id(rec.id, known_ids)  # same id, other file: keep both
                    if read_only:
                        rec.extra["read_only_folder"] = where
                    known_paths.add(rp)
                    known_ids.add(rec.id)
                    report.added.append(rec)
            except (OSError, AtelierError) as exc:
                report.skipped.append(Skipped(where, f"could not scan: {exc}"))
    finally:
        if register:  # one read and one write of library.json, not one per model found
            library.add_all(report.added)
