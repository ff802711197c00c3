"""Fixtures for the hub tests: a fake hub on 127.0.0.1 with a few repos, and the endpoint set to it."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from tests.helpers import write_tiny_llama_gguf
from tests.hub.fake_hub import FakeHub


def safetensors_bytes(n_floats: int = 4) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * (4 * n_floats)


@pytest.fixture(autouse=True)
def isolated_keyring():
    """Never touch the developer's real OS keyring: every hub test starts with keyring's "fail"
    backend (no keyring, as on a headless machine); a test may install its own with set_keyring."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        yield None
        return
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield keyring
    keyring.set_keyring(before)


@pytest.fixture(scope="session")
def gguf_bytes(tmp_path_factory) -> bytes:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("hubgguf") / "t.gguf").read_bytes()


@pytest.fixture
def fake_hub(monkeypatch, gguf_bytes):
    hub = FakeHub()
    big = gguf_bytes + bytes(range(256)) * 8192  # ~2.4 MB: long enough to pause or kill mid-way
    hub.add_repo("testorg/Tiny-GGUF", {
        "README.md": b"# tiny\n",
        "tiny-Q4_K_M.gguf": gguf_bytes,
        "tiny-Q8_0.gguf": gguf_bytes + b"\0" * 1000,
        "tiny-Q2_K.gguf": gguf_bytes[: len(gguf_bytes)],
    }, tags=["gguf", "llama"], library_name="gguf", downloads=100)
    hub.add_repo("testorg/Big-GGUF", {"big-Q4_K_M.gguf": big}, tags=["gguf"], downloads=50)
    hub.add_repo("gatedorg/Gated-GGUF", {"g-Q4_K_M.gguf": gguf_bytes + b"\0" * 2000}, gated=True, tags=["gguf"],
                 license="llama3.2")
    st = safetensors_bytes()
    hub.add_repo("testorg/tiny-diffusers", {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                                        "text_encoder": ["transformers", "CLIPTextModel"],
                                        "tokenizer": ["transformers", "CLIPTokenizer"],
                                        "safety_checker": [None, None]}).encode(),
        "unet/config.json": b'{"sample_size": 8}',
        "unet/diffusion_pytorch_model.safetensors": st + b"\0" * 16,
        "unet/diffusion_pytorch_model.fp16.safetensors": st,
        "unet/diffusion_pytorch_model.bin": b"pickle",
        "text_encoder/config.json": b"{}",
        "text_encoder/model.safetensors": st + b"\0" * 16,
        "text_encoder/model.fp16.safetensors": st,
        "tokenizer/vocab.json": b"{}",
        "tokenizer/merges.txt": b"",
        "safety_checker/model.safetensors": st,
        "v1-5-pruned.safetensors": st,
        "v1-5-pruned.ckpt": b"pickle",
    }, tags=["diffusers"], library_name="diffusers", pipeline_tag="text-to-image", downloads=10)
    hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    from desktop_app.core.settings import Settings

    Settings().set("hf_endpoint", hub.url)
    yield hub
    hub.stop()


@pytest.fixture
def cpu_hw():
    """A CPU-only machine with 16 GB RAM (a profile, as the foundation defines them)."""
    from desktop_app.core.hardware import Hardware

    return Hardware.from_dict({"cpu": {"name": "test", "cores": 4, "flags": []}, "ram_total_bytes": 16 * 1024**3,
                               "ram_available_bytes": 12 * 1024**3, "gpus": [], "llama_backend": "cpu"})


@pytest.fixture
def gpu_hw():
    from desktop_app.core.hardware import Hardware

    return Hardware.from_dict({"cpu": {"name": "test", "cores": 16, "flags": ["avx2"]},
                               "ram_total_bytes": 64 * 1024**3, "ram_available_bytes": 48 * 1024**3,
                               "gpus": [{"vendor": "nvidia", "name": "RTX 4090", "vram_total_bytes": 24 * 1024**3,
                                         "vram_free_bytes": 23 * 1024**3}], "llama_backend": "cuda"})


def models_dir() -> Path:
    from desktop_app.core.settings import Settings

    return Settings().models_dir


@pytest.fixture
def socket_attempts(monkeypatch) -> list:
    """Every socket connect attempted during the test (create_connection fails loudly): the
    offline tests assert this stays empty."""
    attempts = []
    real_connect = socket.socket.connect

    def spy_connect(self, addr):
        attempts.append(addr)
        return real_connect(self, addr)

    def spy_create(addr, *a, **kw):
        attempts.append(addr)
        raise AssertionError("network used while offline")

    monkeypatch.setattr(socket.socket, "connect", spy_connect)
    monkeypatch.setattr(socket, "create_connection", spy_create)
    return attempts
