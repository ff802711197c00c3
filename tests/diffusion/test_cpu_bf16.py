"""Issue 11: image models on the CPU in bfloat16 where the CPU computes it natively (auto), with
the UNet and VAE in channels_last; float32 elsewhere; the quality against float32 on one seed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from desktop_app.core.hardware import detect_hardware
from desktop_app.engines.diffusion.cpu_tuning import cpu_dtype, native_bf16

pytestmark = pytest.mark.slow


def test_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.delenv("ATELIER_IMAGE_CPU_DTYPE")  # the suite pins float32 for its exact pixel checks
    assert cpu_dtype("auto", ["avx2", "avx512_bf16"])[0] == "bfloat16"
    assert cpu_dtype("auto", ["avx2", "fma"]) == ("float32", "")
    assert cpu_dtype("float32", ["amx_bf16"])[0] == "float32"
    dtype, note = cpu_dtype("bfloat16", ["avx2"])
    assert dtype == "float32" and "no native bfloat16" in note
    monkeypatch.setenv("ATELIER_IMAGE_CPU_DTYPE", "float32")
    assert cpu_dtype("auto", ["avx512_bf16"])[0] == "float32"  # the override wins


def _generate(tiny_models, tmp_path, mode: str):
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec

    eng = EngineProcess(env={"ATELIER_IMAGE_CPU_DTYPE": mode}, log_path=tmp_path / f"{mode}.log")
    try:
        spec = ModelSpec(str(tiny_models["sd15"]))
        events = list(eng.generate(GenerateRequest(model=spec, prompt="a fox", steps=4, width=64, height=64, seed=3,
                                                   scheduler="Euler")))
        assert events[-1].type == "done", events[-1].data
        loaded = next(e for e in events if e.type == "loaded")
        img = next(e for e in events if e.type == "result").image
        return loaded, np.asarray(Image.open(io.BytesIO(img)).convert("RGB")).astype(float)
    finally:
        eng.stop()


def test_bf16_on_a_native_bf16_cpu_is_close_to_float32(tiny_models, tmp_path):
    if not native_bf16(detect_hardware().cpu_flags):
        pytest.skip("this CPU has no native bfloat16")
    fp32_info, fp32 = _generate(tiny_models, tmp_path, "float32")
    bf16_info, bf16 = _generate(tiny_models, tmp_path, "auto")
    assert fp32_info["dtype"] == "float32" and fp32_info["cpu"]["channels_last"] == []
    assert bf16_info["dtype"] == "bfloat16" and bf16_info["cpu"]["channels_last"] == ["unet", "vae"]
    assert bf16_info["cpu"]["threads"] >= 1
    mad = float(np.abs(bf16 - fp32).mean())
    print(f"mean absolute pixel difference bf16 vs fp32: {mad:.3f} / 255")
    assert 0 < mad < 8  # close, not identical
