"""A whole pull (one file, a split GGUF, or a diffusers folder): choosing the files, planning
(licence, pickle, names validated), downloading through :mod:`desktop_app.hub.transfer`, and
registering the verified result in the Library."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Generator

from desktop_app.core.errors import (
    AtelierError, Cancelled, ModelFormatError, OfflineError,
)
from desktop_app.core.library import Library, ModelRecord, hub_id
from desktop_app.core.model_files import refuse_pickle
from desktop_app.core.safepath import inside, remove_inside, validate_relpath, validate_repo_id, validate_revision
from desktop_app.core.settings import Settings
from desktop_app.core.cancel import CancelToken
from desktop_app.hub.client import HubClient, HubFile, RepoInfo, quantization_from_name, split_info
from desktop_app.hub.importer import file_sha256

from desktop_app.hub.licences import _licence_error, licence_requires_acceptance
from desktop_app.hub.transfer import (
    Paused,
    DownloadControl, DownloadProgress, _gb, _Meter, default_disk_probe, download_file_iter, part_paths,
    require_free_space,
)

log = logging.getLogger("atelier.hub.downloads")





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
    if not (existing and Path(existing.path).exists()) and plan.kind != "diffusers" and len(plan.files) == 1:
        f0 = plan.files[0]  # the same file imported or downloaded under another name: shown once
        existing = library.same_contents(f0.size or -1, _format_of(f0.name), f0.sha256 or "",
                                         digest=lambda p: file_sha256(p, control.cancel_token))
    if existing and Path(existing.path).exists():
        yield DownloadProgress(repo_id, filename or "", "done", existing.size_bytes, existing.size_bytes,
                               message=f"already installed as {existing.display_name}", record_id=existing.id,
                               job_id=job_id)
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


def _format_of(name: str) -> str:
    return {".gguf": "gguf", ".safetensors": "safetensors", ".onnx": "onnx"}.get(Path(name).suffix.lower(), "")


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
