"""SD 3 and FLUX.1 through the engine child (tiny random pipelines built in code), and a FLUX
transformer from a GGUF file (diffusers' GGUF quantization) with the rest from the folder."""

from __future__ import annotations

import io

import numpy as np
import pytest

from desktop_app.engines.diffusion.metadata import parse_parameters
from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec
from tests.diffusion.conftest import make_engine, png_pixels, run_job, solid_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow_models(tmp_path_factory):
    from tests.diffusion import tiny_flow_pipelines as tf

    root = tmp_path_factory.mktemp("tiny_flow")
    flux = tf.build_flux(root / "tiny-flux")
    return {
        "sd3": tf.build_sd3(root / "tiny-sd3"),
        "flux": flux,
        "gguf_f32": tf.write_flux_transformer_gguf(flux, root / "tiny-flux-F32.gguf", "F32"),
        "gguf_q8": tf.write_flux_transformer_gguf(flux, root / "tiny-flux-Q8_0.gguf", "Q8_0"),
        "flux_dev": tf.build_flux(root / "tiny-flux-dev", guidance=True),
        "root": root,
    }


@pytest.fixture(scope="module")
def flow_engine(tmp_path_factory):
    eng = make_engine(tmp_path_factory)
    yield eng
    eng.stop()


def req(model, gguf=None, **kw):
    kw.setdefault("prompt", "a tiny red fox")
    kw.setdefault("seed", 7)
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return GenerateRequest(model=ModelSpec(str(model), transformer_gguf=str(gguf) if gguf else None), **kw)


def results(events):
    return [e for e in events if e.type == "result"]


def pixels(ev):
    from PIL import Image

    with Image.open(io.BytesIO(ev.image)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def test_flux_schnell_defaults_progress_previews_and_determinism(flow_engine, flow_models):
    events = run_job(flow_engine, req(flow_models["flux"]))
    assert events[-1].type == "done", events[-1].data
    loaded = next(e for e in events if e.type == "loaded")
    assert loaded["family"] == "flux-schnell" and loaded["pipeline"] == "FluxPipeline"
    assert (loaded["default_steps"], loaded["default_guidance"]) == (4, 0.0)
    assert loaded["schedulers"] == ["Flow Euler"] and loaded["size_multiple"] == 16
    assert loaded["dtype"] == "float32" and loaded["source"] == "folder"
    progress = [e for e in events if e.type == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4]
    assert any(e.type == "preview" and e.image[:2] == b"\xff\xd8" for e in events)
    (r,) = results(events)
    assert (r["width"], r["height"]) == (64, 64)
    meta = parse_parameters(r.image)
    assert meta["steps"] == 4 and meta["guidance"] == 0.0 and meta["scheduler"] == "Flow Euler"
    assert meta["family"] == "flux-schnell"
    again = results(run_job(flow_engine, req(flow_models["flux"])))[0]
    other = results(run_job(flow_engine, req(flow_models["flux"], seed=8)))[0]
    assert png_pixels(again.image) == png_pixels(r.image) != png_pixels(other.image)


def test_flux_img2img_inpaint_reuse_weights_and_scheduler_rules(flow_engine, flow_models):
    run_job(flow_engine, req(flow_models["flux"], steps=2))
    loads = flow_engine.ping()["loads"]
    i2i = run_job(flow_engine, req(flow_models["flux"], mode="img2img", init_image=solid_png(), strength=0.5,
                                   steps=4, scheduler="Euler"))
    assert i2i[-1].type == "done", i2i[-1].data
    assert [p["total"] for p in i2i if p.type == "progress"][0] == 2  # strength 0.5 of 4 steps
    assert results(i2i)[0]["params"]["scheduler"] == "Flow Euler"
    inp = run_job(flow_engine, req(flow_models["flux"], mode="inpaint", init_image=solid_png(),
                                   mask=solid_png(color=255, mode="L"), strength=1.0, steps=2))
    assert inp[-1].type == "done", inp[-1].data
    stats = flow_engine.ping()
    assert stats["loads"] == loads and set(stats["modes"]) == {"txt2img", "img2img", "inpaint"}
    assert stats["module_ids"]["img2img"] == stats["module_ids"]["txt2img"]
    bad = run_job(flow_engine, req(flow_models["flux"], scheduler="DDIM", steps=1))[-1]
    assert bad.type == "error" and bad["kind"] == "invalid_request" and "Flow Euler" in bad["message"]
    size = run_job(flow_engine, req(flow_models["flux"], width=72, steps=1))[-1]
    assert size.type == "error" and "multiple of 16" in size["message"]


def test_sd3_txt2img_img2img(flow_engine, flow_models):
    events = run_job(flow_engine, req(flow_models["sd3"], steps=3, negative="blurry", guidance=5.0))
    assert events[-1].type == "done", events[-1].data
    loaded = next(e for e in events if e.type == "loaded")
    assert loaded["family"] == "sd3" and loaded["pipeline"] == "StableDiffusion3Pipeline"
    assert loaded["default_steps"] == 28 and 4.0 <= loaded["default_guidance"] <= 7.0
    assert loaded["native_size"] == 64 and loaded["schedulers"] == ["Flow Euler"]
    assert any(e.type == "preview" and e["width"] == 64 for e in events)  # 16-channel latents previewed
    (r,) = results(events)
    meta = parse_parameters(r.image)
    assert meta["family"] == "sd3" and meta["negative"] == "blurry" and meta["steps"] == 3
    i2i = run_job(flow_engine, req(flow_models["sd3"], mode="img2img", init_image=solid_png(), strength=0.7, steps=3))
    assert i2i[-1].type == "done" and results(i2i) and not any(e.type == "loaded" for e in i2i)
    inp = run_job(flow_engine, req(flow_models["sd3"], mode="inpaint", init_image=solid_png(),
                                   mask=solid_png(color=255, mode="L"), strength=1.0, steps=2))
    assert inp[-1].type == "done", inp[-1].data
    assert results(inp)[0]["params"]["mode"] == "inpaint"


def test_gguf_transformer_f32_same_pixels_q8_close(flow_engine, flow_models):
    folder = results(run_job(flow_engine, req(flow_models["flux"], steps=2, seed=3)))[0]
    events = run_job(flow_engine, req(flow_models["flux"], gguf=flow_models["gguf_f32"], steps=2, seed=3))
    assert events[-1].type == "done", events[-1].data
    loaded = next(e for e in events if e.type == "loaded")
    assert loaded["source"] == "folder+gguf" and loaded["family"] == "flux-schnell"
    # the same weights: the same image. Exactly equal on some CPUs; on others (an AVX2-only one) the
    # GGUF path's matmuls round differently and a few channels differ by one level (of 255).
    same = np.abs(pixels(results(events)[0]) - pixels(folder))
    assert same.max() <= 1 and (same > 0).mean() < 0.01, (same.max(), (same > 0).mean())
    q8 = run_job(flow_engine, req(flow_models["flux"], gguf=flow_models["gguf_q8"], steps=2, seed=3))
    assert q8[-1].type == "done", q8[-1].data
    assert next(e for e in q8 if e.type == "loaded")["source"] == "folder+gguf"
    diff = np.abs(pixels(results(q8)[0]) - pixels(folder))
    assert diff.mean() < 8  # 8-bit weights: nearly the same image
    assert png_pixels(results(q8)[0].image) != png_pixels(folder.image)  # really the quantized weights


def test_transformer_safetensors_file_and_flux_dev_defaults(flow_engine, flow_models, tmp_path):
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import save_file

    tr = FluxTransformer2DModel.from_pretrained(flow_models["flux"] / "transformer", local_files_only=True)
    single = tmp_path / "tiny-flux-transformer.safetensors"
    save_file({k: v.contiguous() for k, v in tr.state_dict().items()}, str(single))
    folder = results(run_job(flow_engine, req(flow_models["flux"], steps=2, seed=4)))[0]
    events = run_job(flow_engine, req(flow_models["flux"], gguf=single, steps=2, seed=4))
    assert events[-1].type == "done", events[-1].data
    assert next(e for e in events if e.type == "loaded")["source"] == "folder+transformer_file"
    # the same weights: the same image. Exactly equal on some CPUs; on others (an AVX2-only one) the
    # GGUF path's matmuls round differently and a few channels differ by one level (of 255).
    same = np.abs(pixels(results(events)[0]) - pixels(folder))
    assert same.max() <= 1 and (same > 0).mean() < 0.01, (same.max(), (same > 0).mean())
    dev = run_job(flow_engine, req(flow_models["flux_dev"], steps=2))
    loaded = next(e for e in dev if e.type == "loaded")
    assert loaded["family"] == "flux-dev" and (loaded["default_steps"], loaded["default_guidance"]) == (28, 3.5)
    assert results(dev)[0]["params"]["guidance"] == 3.5


def test_transformer_file_errors_are_clear(flow_engine, flow_models, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"NOPE" + b"\x00" * 40)
    err = run_job(flow_engine, req(flow_models["flux"], gguf=junk, steps=1))[-1]
    assert err.type == "error" and err["kind"] == "model_format" and "not a GGUF file" in err["message"]
    missing = run_job(flow_engine, req(flow_models["flux"], gguf=tmp_path / "none.gguf", steps=1))[-1]
    assert missing.type == "error" and "not found" in missing["message"]
    # a FLUX transformer-only single file (original BFL key names) without its folder
    from safetensors.numpy import save_file

    single = tmp_path / "flux1-schnell-transformer.safetensors"
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": np.ones(4, np.float32),
               "single_blocks.0.linear2.weight": np.ones((4, 4), np.float32)}, str(single))
    err = run_job(flow_engine, GenerateRequest(model=ModelSpec(str(single)), prompt="x", steps=1))[-1]
    assert err.type == "error" and err["kind"] == "model_format"
    assert "FLUX.1 schnell transformer" in err["message"] and "diffusers folder" in err["message"]


def test_fit_plan_sizes_every_component(flow_models):
    from desktop_app.core.fitting import diffusion_components, plan_diffusion
    from desktop_app.core.hardware import detect_hardware

    sd3 = diffusion_components(flow_models["sd3"])
    assert {"transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae"} <= set(sd3)
    flux = diffusion_components(flow_models["flux"])
    assert {"transformer", "text_encoder", "text_encoder_2", "vae"} <= set(flux)
    plan = plan_diffusion(flow_models["flux"], detect_hardware())
    assert plan.plan in ("cpu", "gpu", "gpu_offload", "gpu_sequential_offload")
    assert set(plan.components) == set(flux)


def test_family_detection_of_original_layout_keys():
    from desktop_app.engines.diffusion.loader import detect_family, detect_flow_family

    h = {"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": {}}
    assert detect_family(h) == "flux-schnell"
    assert detect_flow_family(["double_blocks.0.x", "guidance_in.in_layer.bias"]) == "flux-dev"
    assert detect_flow_family(["model.diffusion_model.joint_blocks.0.x"]) == "sd3"
    assert detect_flow_family(["model.diffusion_model.input_blocks.0.0.weight"]) is None
