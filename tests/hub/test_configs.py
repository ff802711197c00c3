"""Fetching a family's config folder (configs + tokenizers, no weights) from the fake hub."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from desktop_app.core.errors import AtelierError, Cancelled, OfflineError
from desktop_app.hub.configs import (
    configs_dir,
    fetch_pipeline_configs,
    fetched_source,
    select_config_files,
)
from tests.hub.conftest import safetensors_bytes

BUNDLED = Path(__file__).resolve().parents[2] / "resources" / "diffusion_configs" / "sd15"
REPO = "testorg/sd-configs"


def _bundled_files() -> dict[str, bytes]:
    return {p.relative_to(BUNDLED).as_posix(): p.read_bytes() for p in sorted(BUNDLED.rglob("*")) if p.is_file()}


@pytest.fixture
def config_repo(fake_hub):
    files = _bundled_files()
    st = safetensors_bytes()
    files.update({
        "README.md": b"# sd\n",
        "v1-5-pruned-emaonly.safetensors": st,
        "unet/diffusion_pytorch_model.safetensors": st,
        "unet/diffusion_pytorch_model.fp16.safetensors": st,
        "unet/diffusion_pytorch_model.bin": b"pickle",
        "vae/diffusion_pytorch_model.safetensors": st,
        "text_encoder/model.safetensors": st,
        "unet/diffusion_pytorch_model.safetensors.index.json": b"{}",
        "unet/nested/extra.json": b"{}",
        "safety_checker/config.json": b"{}",  # not a component of this model_index (null)
    })
    fake_hub.add_repo(REPO, files, tags=["diffusers"], library_name="diffusers", pipeline_tag="text-to-image")
    return files


def test_fetch_downloads_only_configs_and_the_loader_finds_them(fake_hub, config_repo):
    from desktop_app.engines.diffusion.loader import find_config_dir

    dest = fetch_pipeline_configs(REPO, "sd2")
    assert dest == configs_dir("sd2") and dest.parent.name == "configs"
    got = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    want = set(_bundled_files()) | {"atelier-source.json"}
    assert got == want
    for name in _bundled_files():
        assert (dest / name).read_bytes() == config_repo[name]
    assert not any(n.endswith((".safetensors", ".bin")) for n in got)
    fetched_paths = [p for m, p, _ in fake_hub.requests if m == "GET" and "/resolve/" in p]
    assert fetched_paths and not any(p.endswith((".safetensors", ".bin", ".md")) for p in fetched_paths)
    src = fetched_source("sd2")
    assert src["repo_id"] == REPO and src["revision"] == fake_hub.repos[REPO].sha and src["family"] == "sd2"
    assert find_config_dir("sd2") == dest  # the diffusion loader's lookup (models dir/configs/<family>)
    assert not list(dest.parent.glob(".*"))  # no staging left behind

    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(dest / "tokenizer"), local_files_only=True)
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_select_skips_weights_nested_and_unlisted(fake_hub, config_repo):
    from desktop_app.hub.client import HubClient

    c = HubClient()
    info = c.repo_info(REPO)
    idx = json.loads(config_repo["model_index.json"])
    names = [f.name for f in select_config_files(info, idx)]
    assert "model_index.json" in names and "unet/config.json" in names and "tokenizer/merges.txt" in names
    assert not any(n.startswith("safety_checker/") or "/nested/" in n or ".index." in n for n in names)
    assert all(n.endswith((".json", ".txt")) for n in names)


def test_refetch_replaces_and_cancel_keeps_the_old_folder(fake_hub, config_repo):
    from desktop_app.engines.base import CancelToken
    from desktop_app.hub.downloads import DownloadControl

    dest = fetch_pipeline_configs(REPO, "sd15")
    files = dict(config_repo)
    files["scheduler/scheduler_config.json"] = b'{"_class_name": "DDIMScheduler"}'
    fake_hub.add_repo(REPO, files, tags=["diffusers"], library_name="diffusers")
    assert fetch_pipeline_configs(REPO, "sd15") == dest
    assert json.loads((dest / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "DDIMScheduler"

    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        fetch_pipeline_configs(REPO, "sd15", control=DownloadControl(tok))
    assert (dest / "model_index.json").is_file() and (dest / "scheduler" / "scheduler_config.json").is_file()
    assert not list(dest.parent.glob(".*"))


def test_wrong_family_and_not_diffusers_are_refused(fake_hub, config_repo):
    with pytest.raises(AtelierError, match="StableDiffusionPipeline repository, not a Stable Diffusion XL"):
        fetch_pipeline_configs(REPO, "sdxl")
    with pytest.raises(AtelierError, match="not a diffusers repository"):
        fetch_pipeline_configs("testorg/Tiny-GGUF", "sd15")
    with pytest.raises(AtelierError, match="Unknown model family"):
        fetch_pipeline_configs(REPO, "sd9")
    assert not configs_dir("sdxl").exists() and not configs_dir("sd15").exists()


def test_offline_raises_without_a_socket(fake_hub, config_repo, monkeypatch, socket_attempts):
    attempts = socket_attempts
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    with pytest.raises(OfflineError, match="Offline mode is on"):
        fetch_pipeline_configs(REPO, "sd15")
    from desktop_app.commands.configs import cmd_configs

    with pytest.raises(OfflineError):
        cmd_configs(argparse.Namespace(repo=REPO, family="sd15", revision=None, json=True))
    assert attempts == [] and not configs_dir("sd15").exists()


def test_cmd_configs_json_and_default_repo(fake_hub, config_repo, capsys, monkeypatch):
    from desktop_app.commands.configs import cmd_configs
    from desktop_app.engines.diffusion import loader

    assert cmd_configs(argparse.Namespace(repo=REPO, family="sd2", revision=None, json=True)) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["family"] == "sd2" and out["repo_id"] == REPO and Path(out["path"]) == configs_dir("sd2")
    assert "unet/config.json" in out["files"] and out["bundled_also"] is False
    # REPO left out: the family's usual repository (here served by the fake hub under that name)
    fake_hub.add_repo(loader.CONFIG_REPOS["sd15"], config_repo, tags=["diffusers"], library_name="diffusers")
    assert cmd_configs(argparse.Namespace(repo=None, family="sd15", revision=None, json=False)) == 0
    text = capsys.readouterr()
    assert "Fetched" in text.out and "the fetched folder is used first" in text.out
    assert fetched_source("sd15")["repo_id"] == loader.CONFIG_REPOS["sd15"]
    # the folder fetched from the model's own repository wins over the bundled generic one
    assert loader.find_config_dir("sd15") == configs_dir("sd15")
