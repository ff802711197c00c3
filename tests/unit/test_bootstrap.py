"""The set-up script's backend choice and rebuild rule (installers/bootstrap.py).

pip and the machine's tools are the boundary here: `pip` records what it would run, `which`,
`platform` and the installed build's backend are set per case. The decision logic is the real one.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def boot(monkeypatch):
    spec = importlib.util.spec_from_file_location("atelier_bootstrap", ROOT / "installers" / "bootstrap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.delenv("ATELIER_LLAMA_BACKEND", raising=False)
    mod.calls = []
    monkeypatch.setattr(mod, "pip", lambda *a, env=None: mod.calls.append((a, (env or {}).get("CMAKE_ARGS"))))
    return mod


def _which(present):
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_backend_choice(boot, monkeypatch):
    monkeypatch.setattr(boot.sys, "platform", "linux")
    monkeypatch.setattr(boot.shutil, "which", _which(set()))
    assert boot.wanted_backend() == "cpu"
    # an NVIDIA GPU without the CUDA toolkit cannot build CUDA: CPU
    monkeypatch.setattr(boot.shutil, "which", _which({"nvidia-smi"}))
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    assert boot.wanted_backend() == "cpu"
    monkeypatch.setattr(boot.shutil, "which", _which({"nvidia-smi", "nvcc"}))
    monkeypatch.setattr(boot.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, b"GPU 0", b""))
    assert boot.wanted_backend() == "cuda"
    monkeypatch.setattr(boot.sys, "platform", "darwin")
    monkeypatch.setattr(boot.platform, "machine", lambda: "arm64")
    assert boot.wanted_backend() == "metal"
    monkeypatch.setenv("ATELIER_LLAMA_BACKEND", "vulkan")
    assert boot.wanted_backend() == "vulkan"


def test_cmake_args_are_portable(boot, monkeypatch):
    monkeypatch.setattr(boot.platform, "machine", lambda: "x86_64")
    cpu = boot.cmake_args("cpu")
    assert "-DGGML_NATIVE=OFF" in cpu and "-DGGML_AVX2=ON" in cpu and "march=native" not in cpu
    assert "-DGGML_CUDA=on" in boot.cmake_args("cuda") and "-DGGML_NATIVE=OFF" in boot.cmake_args("cuda")
    monkeypatch.setattr(boot.platform, "machine", lambda: "aarch64")
    arm = boot.cmake_args("cpu")
    assert "-DGGML_NATIVE=OFF" in arm and "AVX" not in arm


def test_cached_cpu_wheel_is_fine_for_cpu_but_never_for_a_gpu(boot, monkeypatch):
    # fresh venv, CPU wanted: plain install (pip's cached CPU wheel may serve)
    states = iter([None, "cpu"])
    monkeypatch.setattr(boot, "installed_backend", lambda: next(states))
    boot.install_llama("cpu")
    (args, cmake), = boot.calls
    assert "--no-cache-dir" not in args and "-DGGML_NATIVE=OFF" in cmake

    # CUDA wanted but a CPU build installed: rebuild, bypassing pip's cache
    boot.calls.clear()
    states = iter(["cpu", "cuda"])
    monkeypatch.setattr(boot, "installed_backend", lambda: next(states))
    boot.install_llama("cuda")
    first_args, cmake = boot.calls[0]
    assert "--no-cache-dir" in first_args and "--force-reinstall" in first_args and "-DGGML_CUDA=on" in cmake

    # already the wanted backend: nothing to do
    boot.calls.clear()
    monkeypatch.setattr(boot, "installed_backend", lambda: "cuda")
    boot.install_llama("cuda")
    assert boot.calls == []
