"""The diffusion engine through the app's real loading code and its child process (tiny models)."""

from __future__ import annotations

import pytest

from desktop_app.engines.diffusion.metadata import parse_parameters
from desktop_app.engines.diffusion.protocol import SCHEDULERS, GenerateRequest, LoraSpec, ModelSpec
from tests.diffusion.conftest import png_pixels, run_job, solid_png

pytestmark = pytest.mark.slow


def req(model, **kw):
    kw.setdefault("prompt", "a tiny red fox")
    kw.setdefault("steps", 3)
    kw.setdefault("seed", 7)
    return GenerateRequest(model=ModelSpec(str(model)), **kw)


def results(events):
    return [e for e in events if e.type == "result"]


def test_txt2img_sd15_progress_previews_metadata(engine, tiny_models):
    events = run_job(engine, req(tiny_models["sd15"], negative="blurry", steps=4))
    types = [e.type for e in events]
    assert types[-1] == "done", events[-1].data
    loaded = next(e for e in events if e.type == "loaded")
    assert loaded["family"] == "sd15" and loaded["dtype"] == "float32" and loaded["device"] == "cpu"
    progress = [e for e in events if e.type == "progress"]
    total = progress[0]["total"]  # the scheduler's real count (PNDM's PLMS adds one warm-up step)
    assert total in (4, 5) and [p["step"] for p in progress] == list(range(1, total + 1))
    assert all(p["it_s"] > 0 for p in progress)
    previews = [e for e in events if e.type == "preview"]
    assert previews and all(p.image[:2] == b"\xff\xd8" and max(p["width"], p["height"]) <= 256 for p in previews)
    (res,) = results(events)
    assert res.image[:8] == b"\x89PNG\r\n\x1a\n" and (res["width"], res["height"]) == (64, 64)
    meta = parse_parameters(res.image)
    assert meta["source"] == "atelier" and meta["seed"] == 7 and meta["negative"] == "blurry"
    assert meta["steps"] == 4 and meta["width"] == 64 and meta["model"] == "tiny-sd15"


def test_same_seed_same_pixels_and_random_seed_recorded(engine, tiny_models):
    a = results(run_job(engine, req(tiny_models["sd15"], seed=11)))[0]
    b = results(run_job(engine, req(tiny_models["sd15"], seed=11)))[0]
    c = results(run_job(engine, req(tiny_models["sd15"], seed=12)))[0]
    assert png_pixels(a.image) == png_pixels(b.image)
    assert png_pixels(a.image) != png_pixels(c.image)
    r = results(run_job(engine, req(tiny_models["sd15"], seed=None)))[0]
    seed = r["params"]["seed"]
    assert isinstance(seed, int) and seed >= 0
    again = results(run_job(engine, req(tiny_models["sd15"], seed=seed)))[0]
    assert png_pixels(again.image) == png_pixels(r.image)


def test_batch_count_uses_consecutive_seeds(engine, tiny_models):
    events = run_job(engine, req(tiny_models["sd15"], seed=100, batch=2, steps=2))
    rs = results(events)
    assert [r["params"]["seed"] for r in rs] == [100, 101]
    assert events[-1]["images"] == 2


def test_modes_reuse_loaded_weights(engine, tiny_models):
    run_job(engine, req(tiny_models["sd15"]))
    before = engine.ping()
    init = solid_png()
    mask = solid_png(color=255, mode="L")
    i2i = run_job(engine, req(tiny_models["sd15"], mode="img2img", init_image=init, strength=0.5, steps=4,
                                   scheduler="Euler"))
    assert results(i2i) and not any(e.type == "loaded" for e in i2i)
    assert [p["total"] for p in i2i if p.type == "progress"][0] == 2  # strength 0.5 of 4 steps
    inp = run_job(engine, req(tiny_models["sd15"], mode="inpaint", init_image=init, mask=mask, strength=1.0))
    assert results(inp)[0]["params"]["mode"] == "inpaint"
    after = engine.ping()
    assert after["loads"] == before["loads"]
    ids = after["module_ids"]
    assert set(ids) == {"txt2img", "img2img", "inpaint"}
    assert ids["img2img"] == ids["txt2img"] == ids["inpaint"]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_each_scheduler(engine, tiny_models, scheduler):
    events = run_job(engine, req(tiny_models["sd15"], scheduler=scheduler, steps=3))
    (r,) = results(events)
    assert r["params"]["scheduler"] == scheduler
    assert parse_parameters(r.image)["scheduler"] == scheduler


def test_single_file_matches_folder(engine, tiny_models):
    folder = results(run_job(engine, req(tiny_models["sd15"], seed=5)))[0]
    spec = ModelSpec(str(tiny_models["single"]), config=str(tiny_models["sd15"]))
    events = run_job(engine, GenerateRequest(model=spec, prompt="a tiny red fox", steps=3, seed=5))
    loaded = next(e for e in events if e.type == "loaded")
    assert loaded["source"] == "single_file" and loaded["family"] == "sd15"
    assert png_pixels(results(events)[0].image) == png_pixels(folder.image)


def test_single_file_without_config_says_what_is_missing(engine, tiny_models):
    # SD 1.5 has a bundled config folder: the tiny file (not SD 1.5's real shapes) is told so clearly
    events = run_job(engine, GenerateRequest(model=ModelSpec(str(tiny_models["single"])), prompt="x", steps=1))
    err = events[-1]
    assert err.type == "error" and err["kind"] == "model_format"
    assert "does not match the standard Stable Diffusion 1.x architecture" in err["message"]
    assert "diffusion_configs" in err["message"]
    # a family with no config folder on this computer: the error says what is missing and how to get it
    events = run_job(engine, GenerateRequest(model=ModelSpec(str(tiny_models["single"]), family="sd3"),
                                             prompt="x", steps=1))
    err = events[-1]
    assert err.type == "error" and err["kind"] == "model_format"
    assert "Stable Diffusion 3" in err["message"] and "config folder" in err["message"]
    assert "atelier models configs --family sd3" in err["message"]


def test_lora_changes_pixels_at_weight_one_not_zero(engine, tiny_models):
    base = results(run_job(engine, req(tiny_models["sd15"], seed=3)))[0]
    lora = str(tiny_models["lora"])
    on = results(run_job(engine, req(tiny_models["sd15"], seed=3, loras=[LoraSpec(lora, 1.0)])))[0]
    off = results(run_job(engine, req(tiny_models["sd15"], seed=3, loras=[LoraSpec(lora, 0.0)])))[0]
    none = results(run_job(engine, req(tiny_models["sd15"], seed=3)))[0]
    assert png_pixels(on.image) != png_pixels(base.image)
    assert png_pixels(off.image) == png_pixels(base.image)
    assert png_pixels(none.image) == png_pixels(base.image)
    # private metadata (the default): the LoRA and the model by name, never an absolute path
    assert on["params"]["loras"] == [{"path": "tiny-lora.safetensors", "weight": 1.0}]
    saved = parse_parameters(on.image)
    assert "model_path" not in saved and saved["model"] == "tiny-sd15"
    assert str(tiny_models["root"]) not in on.image.decode("latin-1")  # no folder of this machine in the file
    full = results(run_job(engine, req(tiny_models["sd15"], seed=3, loras=[LoraSpec(lora, 1.0)],
                                       private_metadata=False, model_sha256="ab" * 32)))[0]
    saved = parse_parameters(full.image)
    assert saved["model_path"] == str(tiny_models["sd15"]) and saved["loras"] == [{"path": lora, "weight": 1.0}]
    assert saved["model_sha256"] == "ab" * 32
    assert png_pixels(full.image) == png_pixels(on.image)


def test_sdxl_txt2img_and_img2img(engine, tiny_models):
    events = run_job(engine, req(tiny_models["sdxl"], steps=3, scheduler="Euler a"))
    assert next(e for e in events if e.type == "loaded")["family"] == "sdxl"
    assert any(e.type == "preview" for e in events)
    a = results(events)[0]
    assert parse_parameters(a.image)["family"] == "sdxl"
    i2i = run_job(engine, req(tiny_models["sdxl"], mode="img2img", init_image=solid_png(), strength=0.7))
    assert results(i2i) and not any(e.type == "loaded" for e in i2i)


def test_size_above_model_maximum_is_refused(engine, tiny_models):
    events = run_job(engine, req(tiny_models["sd15"], width=512, height=64))
    err = events[-1]
    assert err.type == "error" and err["kind"] == "invalid_request"
    assert "width 512" in err["message"] and "64 to 256" in err["message"]


def test_corrupt_and_truncated_files_give_clear_errors(engine, tiny_models, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    trunc = tmp_path / "trunc.safetensors"
    data = tiny_models["single"].read_bytes()
    trunc.write_bytes(data[: len(data) - 1000])
    pick = tmp_path / "model.ckpt"
    pick.write_bytes(b"\x80\x04K\x01.")
    for path, words in ((junk, "not a valid safetensors"), (trunc, "truncated"), (pick, "pickle checkpoint"),
                        (tmp_path / "missing", "Model not found")):
        events = run_job(engine, GenerateRequest(model=ModelSpec(str(path)), prompt="x", steps=1))
        assert events[-1].type == "error" and events[-1]["kind"] == "model_format", events[-1].data
        assert words in events[-1]["message"]
    # the engine is still fine afterwards
    assert results(run_job(engine, req(tiny_models["sd15"], steps=1)))
