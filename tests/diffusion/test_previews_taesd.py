"""TAESD live previews through the engine child: a tiny random AutoencoderTiny built here.

The TAESD made for the main test paints one known colour whatever the latents (its last conv has
zero weights and the colour as bias), so a preview of that colour can only come from it; the same
seed and step without TAESD gives the latent→RGB projection instead.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec
from tests.diffusion.conftest import run_job

pytestmark = pytest.mark.slow

COLOUR = (230, 40, 120)


def _rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def _req(model: ModelSpec, **kw) -> GenerateRequest:
    kw.setdefault("prompt", "a tiny red fox")
    kw.setdefault("seed", 5)
    kw.setdefault("steps", 3)
    kw.setdefault("width", 128)
    kw.setdefault("height", 64)
    return GenerateRequest(model=model, preview=True, preview_every=1, **kw)


def test_taesd_previews_are_announced_and_decoded_by_it(engine, tiny_models, tmp_path):
    from tests.diffusion.tiny_pipelines import write_tiny_taesd

    taesd = write_tiny_taesd(tmp_path / "tiny-taesd", latent_channels=4, solid=COLOUR)
    events = run_job(engine, _req(ModelSpec(str(tiny_models["sd15"]), taesd=str(taesd))))
    assert events[-1].type == "done", events[-1].data
    notices = [e for e in events if e.type == "notice" and e["kind"] == "taesd"]
    assert len(notices) == 1 and notices[0]["active"] is True and "TAESD" in notices[0]["message"]
    previews = [e for e in events if e.type == "preview"]
    steps = [p["step"] for p in previews]
    assert len(steps) >= 2 and steps == list(range(1, len(steps) + 1))
    for p in previews:
        assert p["decoder"] == "taesd"
        assert (p["width"], p["height"]) == (128, 64)  # TAESD decodes 8x: 16x8 latents -> 128x64
        px = _rgb(p.image)
        assert px.shape == (64, 128, 3)
        assert np.abs(px - np.array(COLOUR)).max() <= 6, "not the TAESD's colour (JPEG tolerance)"
    # the final image still comes from the model's own VAE, not from TAESD
    result = next(e for e in events if e.type == "result")
    assert np.abs(_rgb(result.image) - np.array(COLOUR)).mean() > 20

    # Same seed and steps without TAESD: the latent projection, which is not that colour.
    plain = run_job(engine, _req(ModelSpec(str(tiny_models["sd15"]))))
    assert plain[-1].type == "done", plain[-1].data
    assert not any(e.type == "notice" and e["kind"] == "taesd" for e in plain)
    latent = [e for e in plain if e.type == "preview"]
    assert [p["step"] for p in latent] == steps and all(p["decoder"] == "latent" for p in latent)
    for a, b in zip(previews, latent):
        assert (a["width"], a["height"]) == (b["width"], b["height"])
        assert np.abs(_rgb(b.image) - np.array(COLOUR)).mean() > 20
        assert a.image != b.image
    # same pixels with and without TAESD (it only changes the previews)
    assert next(e for e in plain if e.type == "result").image == result.image


def test_random_taesd_decodes_the_step_latents(engine, tiny_models, tmp_path):
    """A random (not solid) TAESD: previews change from step to step, as the latents do."""
    from tests.diffusion.tiny_pipelines import write_tiny_taesd

    taesd = write_tiny_taesd(tmp_path / "tiny-taesd-random", latent_channels=4)
    events = run_job(engine, _req(ModelSpec(str(tiny_models["sd15"]), taesd=str(taesd)), steps=4, width=64))
    assert events[-1].type == "done", events[-1].data
    previews = [e for e in events if e.type == "preview"]
    assert len(previews) >= 3 and all(p["decoder"] == "taesd" for p in previews)
    frames = [_rgb(p.image) for p in previews]
    assert all(f.shape == (64, 64, 3) for f in frames)
    assert all(f.std() > 0 for f in frames)  # a real decode, not a flat image
    assert np.abs(frames[0] - frames[-1]).mean() > 0


def test_unusable_taesd_says_so_and_falls_back(engine, tiny_models, tmp_path):
    from tests.diffusion.tiny_pipelines import write_tiny_taesd

    wrong = write_tiny_taesd(tmp_path / "taesd3-like", latent_channels=16)  # SD 3's channels on SD 1.5
    events = run_job(engine, _req(ModelSpec(str(tiny_models["sd15"]), taesd=str(wrong)), steps=2))
    assert events[-1].type == "done", events[-1].data
    (notice,) = [e for e in events if e.type == "notice" and e["kind"] == "taesd"]
    assert notice["active"] is False and "16-channel" in notice["message"] and "4-channel" in notice["message"]
    previews = [e for e in events if e.type == "preview"]
    assert previews and all(p["decoder"] == "latent" for p in previews)

    missing = run_job(engine, _req(ModelSpec(str(tiny_models["sd15"]), taesd=str(tmp_path / "nope")), steps=2))
    assert missing[-1].type == "done", missing[-1].data
    (notice,) = [e for e in missing if e.type == "notice" and e["kind"] == "taesd"]
    assert notice["active"] is False and "nope" in notice["message"]
    assert all(p["decoder"] == "latent" for p in missing if p.type == "preview")
