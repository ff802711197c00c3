"""FLUX through the engine child: a tiny peft LoRA on the transformer (weight 1.0 changes the
pixels, 0.0 and no LoRA give the base image), and TAESD previews of FLUX's packed latents."""

from __future__ import annotations

import io

import numpy as np
import pytest

from desktop_app.engines.diffusion.protocol import GenerateRequest, LoraSpec, ModelSpec
from tests.diffusion.conftest import make_engine, png_pixels, run_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from tests.diffusion import tiny_flow_pipelines as tf

    root = tmp_path_factory.mktemp("tiny_flux_lora")
    folder = tf.build_flux(root / "tiny-flux")
    return {"folder": folder, "lora": tf.write_flux_lora(folder, root / "lora")}


@pytest.fixture(scope="module")
def flux_engine(tmp_path_factory):
    eng = make_engine(tmp_path_factory)
    yield eng
    eng.stop()


def _req(folder, loras=(), taesd=None, **kw):
    kw.setdefault("prompt", "a tiny red fox")
    kw.setdefault("seed", 9)
    kw.setdefault("steps", 2)
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return GenerateRequest(model=ModelSpec(str(folder), taesd=str(taesd) if taesd else None),
                           loras=[LoraSpec(str(p), w) for p, w in loras], **kw)


def _image(events):
    assert events[-1].type == "done", events[-1].data
    return png_pixels(next(e for e in events if e.type == "result").image)


def test_flux_lora_weight_changes_pixels_zero_gives_base(flux_engine, flux):
    base = _image(run_job(flux_engine, _req(flux["folder"])))
    with_lora = run_job(flux_engine, _req(flux["folder"], loras=[(flux["lora"], 1.0)]))
    on = _image(with_lora)
    assert on != base
    params = next(e for e in with_lora if e.type == "result")["params"]
    assert params["loras"] == [{"path": flux["lora"].name, "weight": 1.0}]  # private metadata: its name only
    assert flux_engine.ping()["loras"] == [str(flux["lora"].resolve())]
    half = _image(run_job(flux_engine, _req(flux["folder"], loras=[(flux["lora"], 0.5)])))
    assert half not in (base, on)
    zero = _image(run_job(flux_engine, _req(flux["folder"], loras=[(flux["lora"], 0.0)])))
    assert zero == base
    # back to no LoRA (the adapter stays loaded but disabled), then 1.0 again: same pixels as before
    assert _image(run_job(flux_engine, _req(flux["folder"]))) == base
    assert _image(run_job(flux_engine, _req(flux["folder"], loras=[(flux["lora"], 1.0)]))) == on
    assert flux_engine.ping()["loads"] == 1  # no reload for any of this


def test_flux_lora_for_another_model_is_a_clear_error(flux_engine, flux, tiny_models):
    base = _image(run_job(flux_engine, _req(flux["folder"])))
    # an SD 1.5 UNet LoRA on FLUX: diffusers loads nothing from it (a log line only)
    err = run_job(flux_engine, _req(flux["folder"], loras=[(tiny_models["lora"], 1.0)]))[-1]
    assert err.type == "error" and err["kind"] == "model_format", err.data
    assert "tiny-lora.safetensors" in err["message"] and "another model family" in err["message"]
    assert str(tiny_models["lora"].resolve()) not in flux_engine.ping()["loras"]
    # the engine goes on: the base image, then the FLUX LoRA, still work
    assert _image(run_job(flux_engine, _req(flux["folder"]))) == base
    assert _image(run_job(flux_engine, _req(flux["folder"], loras=[(flux["lora"], 1.0)]))) != base


def test_flux_taesd_previews_of_packed_latents(flux_engine, flux, tmp_path):
    from tests.diffusion.tiny_pipelines import write_tiny_taesd

    colour = (20, 200, 90)
    taesd = write_tiny_taesd(tmp_path / "tiny-taef1", latent_channels=4, solid=colour)
    events = run_job(flux_engine, _req(flux["folder"], taesd=taesd, steps=3, width=128))
    assert events[-1].type == "done", events[-1].data
    (notice,) = [e for e in events if e.type == "notice" and e["kind"] == "taesd"]
    assert notice["active"] is True
    previews = [e for e in events if e.type == "preview"]
    assert previews and all(p["decoder"] == "taesd" for p in previews)
    from PIL import Image

    for p in previews:
        assert (p["width"], p["height"]) == (128, 64)
        with Image.open(io.BytesIO(p.image)) as img:
            px = np.asarray(img.convert("RGB")).astype(int)
        assert px.shape == (64, 128, 3) and np.abs(px - np.array(colour)).max() <= 6
