"""Fetch a pipeline family's config folder (configs and tokenizers, no weights) once, on request.

Single-file checkpoints (A1111/ComfyUI ``.safetensors``) need their family's diffusers config
folder: ``model_index.json``, each component's ``config.json`` / ``scheduler_config.json`` and the
tokenizer files. SD 1.5 and SDXL ship bundled in ``resources/diffusion_configs/``; for the other
families (or a newer layout) the model manager fetches the small files of a diffusers repo into
``<models dir>/configs/<family>/``, where the diffusion loader looks for them. Only when the user
asks (``atelier models configs REPO --family F`` or the Models tab), never silently, and never
with the offline switch on (OfflineError before any socket).

Downloads go through :func:`desktop_app.hub.downloads.download_file_iter` (pinned to the listed
commit, git-blob / LFS checksums verified), into a staging folder that replaces the old folder
only once every file has arrived.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.core.safepath import inside
from desktop_app.hub.client import HubClient, HubFile, RepoInfo
from desktop_app.hub.netguard import ensure_online

CONFIG_SUFFIXES = (".json", ".txt")
TOKENIZER_SUFFIXES = (".model",)  # sentencepiece (T5 tokenizers of SD3 / FLUX), tokenizer folders only
MAX_CONFIG_FILE = 32 * 1024 * 1024  # a tokenizer.json is a few MB; anything bigger is not a config
SOURCE_FILE = "atelier-source.json"
# the pipeline class prefixes each family's folder must have (a wrong repo is refused before download)
FAMILY_CLASSES = {
    "sd15": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    "sd15-inpainting": ("StableDiffusionInpaintPipeline",),
    "sd2": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
    "sdxl-inpainting": ("StableDiffusionXLInpaintPipeline",),
    "sd3": ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
    "flux-schnell": ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
    "flux-dev": ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
}


def configs_dir(family: str, models_dir: Path | None = None) -> Path:
    """``<models dir>/configs/<family>``: where fetched config folders are kept (and the loader looks)."""
    from desktop_app.core.settings import Settings

    return Path(models_dir or Settings().models_dir) / "configs" / family


def _components(model_index: dict) -> set[str]:
    return {k for k, v in model_index.items()
            if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0]}


def select_config_files(info: RepoInfo, model_index: dict) -> list[HubFile]:
    """``model_index.json`` and the small config/tokenizer files of the components it names (no weights)."""
    comps = _components(model_index)
    out = []
    for f in info.files:
        if f.name == "model_index.json":
            out.append(f)
            continue
        if f.name.count("/") != 1:
            continue
        top, base = f.name.split("/")
        if top not in comps or ".index." in base or base.startswith("."):
            continue
        ok = base.endswith(CONFIG_SUFFIXES) or (base.endswith(TOKENIZER_SUFFIXES) and top.startswith("tokenizer"))
        if not ok:
            continue
        if f.size is not None and f.size > MAX_CONFIG_FILE:
            continue
        out.append(f)
    return sorted(out, key=lambda f: f.name)


def _check_family(repo_id: str, family: str, model_index: dict) -> None:
    from desktop_app.core.families import FAMILIES

    if family not in FAMILIES:
        raise AtelierError(f"Unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")
    cls = model_index.get("_class_name", "")
    allowed = FAMILY_CLASSES.get(family, ())
    if allowed and cls not in allowed:
        raise AtelierError(
            f"{repo_id} is a {cls or 'unknown'} repository, not a {FAMILIES[family]} one ({', '.join(allowed)}): "
            "its configs would not fit this family's checkpoints. Pick the family's own diffusers repository."
        )


def _read_model_index(client: HubClient, info: RepoInfo) -> dict:
    from desktop_app.hub.pull import _fetch_model_index

    idx = _fetch_model_index(client, info.repo_id, info.sha or "main")
    if not isinstance(idx, dict):
        raise AtelierError(f"{info.repo_id}: model_index.json could not be read; is it a diffusers repository?")
    return idx


def fetch_pipeline_configs(repo_id: str, family: str, *, client: HubClient | None = None,
                           revision: str | None = None, token: str | None = None,
                           models_dir: Path | None = None, control=None) -> Path:
    """Download the config/tokenizer files (``*.json``, ``*.txt``, tokenizer ``*.model``; no weights) of
    the diffusers repo ``repo_id`` into ``<models dir>/configs/<family>/`` and return that folder.

    Raises OfflineError (offline switch; no socket), GatedError / HubNotFoundError / AtelierError
    (hub errors, wrong family, not a diffusers repo), ModelFormatError (checksum), Cancelled.
    """
    from desktop_app.hub.transfer import DownloadControl, download_file_iter

    client = client or HubClient(token=token)
    ensure_online(client.settings)
    from desktop_app.core.families import FAMILIES

    if family not in FAMILIES:
        raise AtelierError(f"Unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")
    control = control or DownloadControl()
    info = client.repo_info(repo_id, revision)
    if not info.is_diffusers:
        raise AtelierError(
            f"{repo_id} has no model_index.json: it is not a diffusers repository, so it holds no config folder. "
            "Pick the family's diffusers repository."
        )
    rev = info.sha or revision or "main"
    model_index = _read_model_index(client, info)
    _check_family(repo_id, family, model_index)
    files = select_config_files(info, model_index)
    missing = [c for c in sorted(_components(model_index))
               if not any(f.name.startswith(c + "/") for f in files)]
    dest = configs_dir(family, models_dir)
    stage = dest.with_name(f".{family}.partial")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        for f in files:
            it = download_file_iter(client, info.repo_id, f.name, inside(stage, f.name, f"the listing of {info.repo_id}"),
                                    revision=rev,
                                    expected_sha256=f.sha256, expected_size=f.size, control=control,
                                    expected_git_sha1="" if f.lfs else (f.blob_id or ""))
            for _ in it:
                pass
        (stage / SOURCE_FILE).write_text(json.dumps({
            "repo_id": info.repo_id, "revision": rev, "family": family, "fetched_at": int(time.time()),
            "files": [f.name for f in files], "components_without_files": missing,
        }, indent=2) + "\n", "utf-8")
        try:
            json.loads((stage / "model_index.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{repo_id}: the downloaded model_index.json is not valid JSON ({exc}).") from None
        old = dest.with_name(f".{family}.old")
        if old.exists():
            shutil.rmtree(old)
        if dest.exists():
            dest.rename(old)
        stage.rename(dest)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dest


def fetched_source(family: str, models_dir: Path | None = None) -> dict | None:
    """What was fetched for ``family`` (repo_id, revision, files), or None when nothing was."""
    p = configs_dir(family, models_dir) / SOURCE_FILE
    try:
        return json.loads(p.read_text("utf-8"))
    except (OSError, ValueError):
        return None
