"""Single-file checkpoints that lack components, through the engine child (tiny models built here).

- SD 3: Stability's sd3.5 files hold the MMDiT transformer and the VAE in the original layout but
  no text encoders (CLIP-L/G and T5 ship apart). A tiny one is written here from the tiny SD 3
  folder (the inverse of diffusers' SD 3 key conversion, which has no hard-coded dimensions, so
  the tiny width works), loaded with ``ModelSpec(path, config=<tiny sd3 folder>)``: the text
  encoders come from the config folder's weights, and the pixels equal the folder's.
- diffusers raises SingleFileComponentError (a bare ``Exception``) for a transformers component
  missing from the checkpoint: it only looks for ``diffusion_pytorch_model.*`` weights in the
  config folder, not transformers' ``model.safetensors``. The loader then takes the component from
  the config folder when it has its weights, and otherwise gives a ``model_format`` error naming
  the missing component (tested with a tiny SD 1.5 single file stripped of its text encoder).
"""

from __future__ import annotations

import shutil

import pytest

from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec
from tests.diffusion.conftest import png_pixels, run_job

pytestmark = pytest.mark.slow


def _req(spec: ModelSpec, **kw) -> GenerateRequest:
    kw.setdefault("prompt", "a tiny red fox")
    kw.setdefault("seed", 11)
    kw.setdefault("steps", 2)
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return GenerateRequest(model=spec, **kw)


def _weightless_copy(folder, dest):
    """The config folder as bundled/fetched ones are: configs and tokenizers, no weights."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return dest


def _result(events):
    assert events[-1].type == "done", events[-1].data
    return next(e for e in events if e.type == "result")


@pytest.fixture(scope="module")
def stripped_sd15(tiny_models, tmp_path_factory):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_models["single"]))
    kept = {k: v for k, v in state.items() if not k.startswith("cond_stage_model.")}
    assert len(kept) < len(state)
    out = tmp_path_factory.mktemp("stripped") / "tiny-sd15-no-te.safetensors"
    save_file(kept, str(out))
    return out


def test_sd15_without_text_encoder_and_weightless_config_is_a_clear_model_format_error(
        engine, tiny_models, stripped_sd15, tmp_path):
    cfg = _weightless_copy(tiny_models["sd15"], tmp_path / "sd15-config")
    err = run_job(engine, _req(ModelSpec(str(stripped_sd15), config=str(cfg), family="sd15")))[-1]
    assert err.type == "error" and err["kind"] == "model_format", err.data
    msg = err["message"]
    assert "not a complete Stable Diffusion 1.x checkpoint" in msg
    assert "text_encoder (CLIPTextModel)" in msg and str(cfg) in msg
    assert "from_single_file" not in msg  # diffusers' API advice is not for users
    # the complete checkpoint loads with the same weightless config folder
    ok = _result(run_job(engine, _req(ModelSpec(str(tiny_models["single"]), config=str(cfg)))))
    # without a family, a checkpoint with no text encoder cannot be placed: a clear error too
    guess = run_job(engine, _req(ModelSpec(str(stripped_sd15), config=str(cfg))))[-1]
    assert guess.type == "error" and guess["kind"] == "model_format"
    assert "no text-encoder weights" in guess["message"] and "family" in guess["message"]
    assert ok.image


def test_sd15_without_text_encoder_takes_it_from_a_full_config_folder(engine, tiny_models, stripped_sd15):
    folder = _result(run_job(engine, _req(ModelSpec(str(tiny_models["sd15"])))))
    events = run_job(engine, _req(ModelSpec(str(stripped_sd15), config=str(tiny_models["sd15"]), family="sd15")))
    loaded = next(e for e in events if e.type == "loaded")
    assert loaded["source"] == "single_file" and loaded["family"] == "sd15"
    assert png_pixels(_result(events).image) == png_pixels(folder.image)


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    from tests.diffusion import tiny_flow_pipelines as tf

    root = tmp_path_factory.mktemp("tiny_sd3_single")
    folder = tf.build_sd3(root / "tiny-sd3")
    return folder, tf.write_sd3_single_file(folder, root / "tiny-sd3.5.safetensors")


def test_sd3_single_file_with_config_folder_same_pixels_as_folder(engine, tiny_sd3, tmp_path):
    from desktop_app.core.model_files import read_safetensors_header
    from desktop_app.engines.diffusion.loader import detect_family, transformer_only

    folder, single = tiny_sd3
    header = read_safetensors_header(single)
    assert detect_family(header) == "sd3" and not transformer_only(header)
    assert not any(k.startswith("text_encoders.") for k in header)  # like sd3.5_medium.safetensors
    ref = _result(run_job(engine, _req(ModelSpec(str(folder)), guidance=4.0)))
    events = run_job(engine, _req(ModelSpec(str(single), config=str(folder)), guidance=4.0))
    loaded = next(e for e in events if e.type == "loaded")
    assert (loaded["family"], loaded["source"], loaded["pipeline"]) == ("sd3", "single_file",
                                                                        "StableDiffusion3Pipeline")
    assert png_pixels(_result(events).image) == png_pixels(ref.image)

    # a config folder without the text encoders' weights: the missing encoders are named
    cfg = _weightless_copy(folder, tmp_path / "sd3-config")
    err = run_job(engine, _req(ModelSpec(str(single), config=str(cfg))))[-1]
    assert err.type == "error" and err["kind"] == "model_format", err.data
    assert "not a complete Stable Diffusion 3/3.5 checkpoint" in err["message"]
    assert "CLIPTextModelWithProjection" in err["message"]
