"""Discovery on fake LM Studio / Ollama / HF-cache / GPT4All / ComfyUI trees built here (HOME points at them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from desktop_app.core.library import Library
from desktop_app.hub.discovery import discover
from tests.hub.conftest import safetensors_bytes


@pytest.fixture
def fake_home(tmp_path, monkeypatch, gguf_bytes):
    home = tmp_path / "home"
    for var in ("HF_HUB_CACHE", "HF_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))

    # LM Studio (new and old locations), with a vision projector that must be skipped
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Qwen3-8B-GGUF"
    lms.mkdir(parents=True)
    (lms / "Qwen3-8B-Q4_K_M.gguf").write_bytes(gguf_bytes)
    (lms / "mmproj-Qwen3-8B-F16.gguf").write_bytes(gguf_bytes)
    old = home / ".cache" / "lm-studio" / "models" / "TheBloke" / "Mistral-GGUF"
    old.mkdir(parents=True)
    (old / "mistral-7b.Q4_K_M.gguf").write_bytes(gguf_bytes)
    (old / "broken.gguf").write_bytes(b"nope" * 10)

    # Ollama: manifest -> model layer -> blob
    oll = home / ".ollama" / "models"
    digest = hashlib.sha256(gguf_bytes).hexdigest()
    (oll / "blobs").mkdir(parents=True)
    (oll / "blobs" / f"sha256-{digest}").write_bytes(gguf_bytes)
    (oll / "blobs" / "sha256-aaaa").write_text("template")
    man = oll / "manifests" / "registry.ollama.ai" / "library" / "llama3.2"
    man.mkdir(parents=True)
    (man / "latest").write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(gguf_bytes)},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:aaaa", "size": 8}]}))

    # Hugging Face cache: a GGUF repo and a diffusers repo, snapshots are symlinks to blobs
    hub = home / ".cache" / "huggingface" / "hub"
    r = hub / "models--bartowski--SmolLM2-GGUF"
    (r / "blobs").mkdir(parents=True)
    (r / "blobs" / digest).write_bytes(gguf_bytes)
    (r / "refs").mkdir()
    (r / "refs" / "main").write_text("abc123")
    snap = r / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "SmolLM2-Q8_0.gguf").symlink_to(r / "blobs" / digest)
    d = hub / "models--org--tiny-sd" / "snapshots" / "c0ffee"
    (d / "unet").mkdir(parents=True)
    (d / "model_index.json").write_text("{}")
    (d / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(safetensors_bytes())

    # GPT4All (Linux location)
    g = home / ".local" / "share" / "nomic.ai" / "GPT4All"
    g.mkdir(parents=True)
    (g / "Llama-3.2-1B-Instruct-Q4_0.gguf").write_bytes(gguf_bytes)
    return home


def test_discover_registers_in_place(fake_home, tmp_path, gguf_bytes):
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "checkpoints" / "dreamshaper.safetensors").write_bytes(_sd_checkpoint())
    (comfy / "checkpoints" / "old.ckpt").write_bytes(b"pickle")
    (comfy / "upscale_models").mkdir()
    (comfy / "upscale_models" / "4x-UltraSharp.safetensors").write_bytes(safetensors_bytes())
    (comfy / "unet").mkdir()
    (comfy / "unet" / "flux1-schnell-Q4_K_S.gguf").write_bytes(gguf_bytes)

    report = discover(extra_dirs=[tmp_path / "ComfyUI"])
    ids = {r.id: r for r in report.added}
    assert set(ids) == {
        "lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf",
        "TheBloke/Mistral-GGUF/mistral-7b.Q4_K_M.gguf",
        "ollama/llama3.2-latest",
        "bartowski/SmolLM2-GGUF/SmolLM2-Q8_0.gguf",
        "org/tiny-sd",
        "gpt4all/llama-3.2-1b-instruct-q4_0.gguf",
        "comfyui/dreamshaper.safetensors",
        "comfyui/4x-ultrasharp.safetensors",
        "comfyui/flux1-schnell-q4_k_s.gguf",
    }, sorted(ids)
    assert all(r.managed is False and r.source == "discovered" for r in report.added)
    oll = ids["ollama/llama3.2-latest"]
    assert Path(oll.path).name.startswith("sha256-") and oll.task == "chat" and oll.format == "gguf"
    assert ids["org/tiny-sd"].format == "diffusers" and ids["org/tiny-sd"].task == "image"
    assert ids["comfyui/dreamshaper.safetensors"].task == "image"
    assert ids["comfyui/4x-ultrasharp.safetensors"].task == "upscale"
    assert ids["comfyui/flux1-schnell-q4_k_s.gguf"].task == "image"
    assert ids["bartowski/SmolLM2-GGUF/SmolLM2-Q8_0.gguf"].quantization == "Q8_0"
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    assert "broken.gguf" in skipped and "old.ckpt" in skipped and "pickle" in skipped["old.ckpt"]
    assert not any("mmproj" in r.path for r in report.found)
    lib = Library()
    assert {r.id for r in lib.list()} >= set(ids)

    # a second run registers nothing new; deleting a discovered model never deletes its file
    assert discover(extra_dirs=[tmp_path / "ComfyUI"]).added == []
    from desktop_app.hub.importer import remove_model

    res = remove_model("ollama/llama3.2-latest")
    assert res.deleted is False and res.bytes_freed == 0 and Path(oll.path).exists()


def test_env_overrides(fake_home, tmp_path, monkeypatch, gguf_bytes):
    alt = tmp_path / "alt-ollama"
    digest = hashlib.sha256(gguf_bytes).hexdigest()
    (alt / "blobs").mkdir(parents=True)
    (alt / "blobs" / f"sha256-{digest}").write_bytes(gguf_bytes)
    m = alt / "manifests" / "registry.ollama.ai" / "someone" / "mymodel"
    m.mkdir(parents=True)
    (m / "q4").write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                  "digest": f"sha256:{digest}"}]}))
    monkeypatch.setenv("OLLAMA_MODELS", str(alt))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    report = discover(register=False)
    ids = {r.id for r in report.found}
    assert "ollama/someone-mymodel-q4" in ids
    assert not any(i.startswith("bartowski/") for i in ids)  # the default HF cache is not read
    assert Library().list() == []  # register=False


def _sd_checkpoint() -> bytes:
    import struct

    header = json.dumps({"model.diffusion_model.input_blocks.0.0.weight": {
        "dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 8


def test_read_only_admin_folder_is_used_in_place_and_never_deleted(tmp_path, tiny_gguf):
    """A provisioned, read-only folder: its models are registered in place; rm only unregisters."""
    import os
    import shutil
    import stat

    from desktop_app.core.library import Library
    from desktop_app.hub.discovery import register_folders
    from desktop_app.hub.importer import remove_model

    share = tmp_path / "provisioned"
    share.mkdir()
    model = share / "team-model.gguf"
    shutil.copy(tiny_gguf, model)
    os.chmod(share, stat.S_IRUSR | stat.S_IXUSR)
    try:
        report = register_folders([share])
        assert [Path(r.path) for r in report.added] == [model.resolve()]
        rec = Library().list()[0]
        assert rec.managed is False and rec.extra.get("read_only_folder") == str(share)
        again = register_folders([share])  # idempotent
        assert again.added == [] and len(Library().list()) == 1
        removal = remove_model(rec.id)
        assert removal.bytes_freed == 0 and not removal.deleted
        assert model.exists() and Library().get(rec.id) is None
    finally:
        os.chmod(share, stat.S_IRWXU)
