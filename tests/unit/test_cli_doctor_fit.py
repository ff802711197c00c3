"""`atelier doctor` and `atelier models fit` through the real CLI (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "tests" / "profiles"


def run_cli(*args: str, hardware: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("ATELIER_HARDWARE", None)
    if hardware is not None:
        env["ATELIER_HARDWARE"] = str(hardware)
    return subprocess.run([sys.executable, "-m", "desktop_app", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def one_json(r: subprocess.CompletedProcess):
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, r.stdout  # exactly one JSON object on stdout
    return json.loads(lines[0])


def test_doctor_json_on_this_machine(starter_model, atelier_home):
    d = one_json(run_cli("doctor", "--json"))
    for key in ("cpu", "ram_total_bytes", "ram_available_bytes", "gpus", "llama_backend", "paths", "models",
                "offline", "warnings"):
        assert key in d, key
    assert d["gpus"] == [] and d["source"] == "detected" and d["offline"] is False
    assert d["llama_backend"] in ("cpu", None)
    assert Path(d["paths"]["data"]).is_relative_to(atelier_home) and d["paths"]["portable"] is True
    starter = [m for m in d["models"] if m["source"] == "starter"]
    assert len(starter) == 1 and starter[0]["path"] == str(starter_model)
    fit = starter[0]["fit"]
    assert fit["plan"] == "cpu" and fit["n_layers"] == 30 and fit["n_ctx"] == 8192
    if d["llama_backend"] == "cpu":
        assert d["backends"]["llama_runtime"]["supports_gpu_offload"] is False


def test_doctor_believes_a_profile(starter_model):
    prof = PROFILES / "rtx4090_24gb.json"
    d = one_json(run_cli("doctor", "--json", hardware=prof))
    raw = json.loads(prof.read_text())
    assert d["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090" and d["llama_backend"] == "cuda"
    assert d["ram_total_bytes"] == raw["ram_total_bytes"] and d["cpu"] == raw["cpu"]
    assert d["summary"] == "NVIDIA GeForce RTX 4090 · 24 GB VRAM · 64 GB RAM"
    fit = next(m for m in d["models"] if m["source"] == "starter")["fit"]
    assert fit["plan"] == "gpu" and fit["n_gpu_layers"] == fit["n_layers"] == 30
    assert d["warnings"] == []


def test_doctor_text_and_cpu_build_warning(starter_model, tmp_path):
    raw = json.loads((PROFILES / "laptop_rtx4060_8gb.json").read_text())
    raw["llama_backend"] = "cpu"
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(raw))
    r = run_cli("doctor", hardware=prof)
    assert r.returncode == 0, r.stderr
    assert "RTX 4060" in r.stdout and "Installed models" in r.stdout and "Warnings" in r.stdout
    assert "GGML_CUDA=on" in r.stdout
    d = one_json(run_cli("doctor", "--json", hardware=prof))
    assert any("GGML_CUDA=on" in w for w in d["warnings"])
    assert next(m for m in d["models"] if m["source"] == "starter")["fit"]["plan"] == "cpu"


def test_models_fit_gguf(starter_model, tiny_gguf):
    d = one_json(run_cli("models", "fit", str(starter_model), "--json"))
    for key in ("plan", "n_gpu_layers", "n_layers", "n_ctx", "estimated_bytes", "weights_bytes", "kv_cache_bytes"):
        assert key in d
    assert (d["plan"], d["n_gpu_layers"], d["n_layers"], d["n_ctx"]) == ("cpu", 0, 30, 8192)
    d = one_json(run_cli("models", "fit", str(starter_model), "--ctx", "2048", "--json"))
    assert d["n_ctx"] == 2048 and d["kv_cache_bytes"] == 30 * 2048 * 128 * 3 * 2
    d = one_json(run_cli("models", "fit", str(tiny_gguf), "--json", hardware=PROFILES / "2x_a100_80gb.json"))
    assert d["plan"] == "gpu" and d["n_gpu_layers"] == d["n_layers"] == 2
    r = run_cli("models", "fit", str(starter_model))
    assert r.returncode == 0 and "plan:" in r.stdout and "KV cache" in r.stdout


def test_models_fit_diffusers_folder(tmp_path):
    from safetensors.numpy import save_file

    root = tmp_path / "pipe"
    (root / "unet").mkdir(parents=True)
    (root / "vae").mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"],
                                                       "vae": ["diffusers", "AutoencoderKL"]}))
    save_file({"w": np.zeros((64, 64), dtype=np.float16)}, str(root / "unet" / "diffusion_pytorch_model.safetensors"))
    save_file({"w": np.zeros((8, 8), dtype=np.float16)}, str(root / "vae" / "diffusion_pytorch_model.safetensors"))
    d = one_json(run_cli("models", "fit", str(root), "--json"))
    assert (d["plan"], d["device"], d["dtype"]) == ("cpu", "cpu", "float32")
    assert d["components"] == {"unet": 64 * 64 * 4, "vae": 8 * 8 * 4}
    d = one_json(run_cli("models", "fit", str(root), "--json", hardware=PROFILES / "m2_max_32gb.json"))
    assert (d["plan"], d["device"], d["dtype"]) == ("gpu", "mps", "bfloat16")


def test_errors_are_one_line_without_traceback(tmp_path):
    cases = [
        run_cli("models", "fit", str(tmp_path / "missing.gguf"), "--json"),
        run_cli("models", "fit", str(_write(tmp_path / "trunc.gguf", b"GGUF\x03\0\0\0" + b"\x05" * 30)), "--json"),
        run_cli("doctor", "--json", hardware=tmp_path / "no-profile.json"),
    ]
    for r in cases:
        assert r.returncode != 0
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("atelier: error: "), r.stderr
        assert "Traceback" not in r.stderr


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_doctor_checks_what_torch_really_sees_in_a_child_process():
    """Not only the build: torch is imported in a short-lived child and asked for CUDA/MPS."""
    import json as _json
    import subprocess as _sp
    import sys as _sys

    out = _sp.run([_sys.executable, "-m", "desktop_app", "doctor", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    d = _json.loads(out.stdout.strip().splitlines()[-1])
    rt = d["backends"]["torch_runtime"]
    assert rt["version"].startswith("2.13.0")
    assert rt["cuda_available"] is False and rt["cuda_devices"] == 0  # this machine has no GPU
