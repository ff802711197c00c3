"""Fixtures: tiny random pipelines (built once per session) and one engine process per module."""

from __future__ import annotations

import io
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from tests.diffusion import tiny_pipelines as tp

    root = tmp_path_factory.mktemp("tiny_diffusion")
    sd15 = tp.build_sd15(root / "tiny-sd15")
    sdxl = tp.build_sdxl(root / "tiny-sdxl")
    single = tp.write_sd15_single_file(sd15, root / "tiny-sd15.safetensors")
    lora = tp.write_tiny_lora(sd15, root / "lora")
    return {"sd15": sd15, "sdxl": sdxl, "single": single, "lora": lora, "root": root}


def make_engine(tmp_path_factory, env=None):
    from desktop_app.engines.diffusion.client import EngineProcess

    log = tmp_path_factory.mktemp("engine_log") / "engine.log"
    return EngineProcess(env=env, log_path=log)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = make_engine(tmp_path_factory)
    yield eng
    eng.stop()


def run_job(engine, request, token=None):
    """All events of one job, checking there is exactly one terminal event, last."""
    events = list(engine.generate(request, token))
    terminals = [e for e in events if e.terminal]
    assert len(terminals) == 1 and events[-1].terminal, [e.type for e in events]
    return events


def png_pixels(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").tobytes()


def solid_png(size=(64, 64), color=(200, 30, 30), mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()
