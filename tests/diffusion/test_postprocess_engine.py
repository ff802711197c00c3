"""Upscaling and background removal hosted in the diffusion engine's child process (tiny real
models: a random ESRGAN .safetensors loaded by spandrel, a U2Net-shaped ONNX net run by onnxruntime)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from desktop_app.engines.base import CancelToken
from desktop_app.engines.diffusion.protocol import RemoveBgRequest, UpscaleRequest
from tests.diffusion.conftest import make_engine
from tests.postprocess.models import noise_image, subject_image, write_tiny_esrgan, write_tiny_segmenter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def post_engine(tmp_path_factory):
    # 30 ms per tile/stage so that "cancel between tiles" is certain
    eng = make_engine(tmp_path_factory, env={"ATELIER_TEST_STEP_DELAY": "0.03"})
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def post_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("post_models")
    return {
        "esrgan": write_tiny_esrgan(root / "tiny-esrgan-4x.safetensors", scale=4),
        "u2net": write_tiny_segmenter(root / "tiny-u2net.onnx", outputs=7),
    }


def png(img: Image.Image, **info) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    for k, v in info.items():
        meta.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=meta)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def run(events_iter):
    events = list(events_iter)
    terminals = [e for e in events if e.terminal]
    assert len(terminals) == 1 and events[-1].terminal, [e.type for e in events]
    return events


def test_upscale_in_child_tiles_progress_and_matches_in_process(post_engine, post_models):
    from desktop_app.engines.upscale import load_upscaler, upscale_image

    img = noise_image(90, 70)
    events = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(img, parameters="a fox"),
                                                    tile=40, overlap=8)))
    assert events[-1].type == "done", events[-1].data
    notice = next(e for e in events if e.type == "notice")
    assert notice["kind"] == "upscaler" and notice["model"]["architecture"] == "ESRGAN"
    assert notice["model"]["device"] == "cpu" and notice["tile"] == 40
    progress = [e for e in events if e.type == "progress"]
    n = progress[0]["total"]
    assert n >= 9 and [p["step"] for p in progress] == list(range(1, n + 1))
    assert all(p["stage"] == "tile" and p["total"] == n for p in progress)
    (res,) = [e for e in events if e.type == "result"]
    assert res.image[:8] == b"\x89PNG\r\n\x1a\n"
    out = decode(res.image)
    assert out.size == (360, 280) and (res["width"], res["height"], res["scale"], res["tiles"]) == (360, 280, 4, n)
    assert out.text.get("parameters") == "a fox"  # the source's metadata travels with the result
    # the same pixels as the in-process engine (this process imports torch; the GUI never does)
    local = upscale_image(img, load_upscaler(post_models["esrgan"]), tile=40, overlap=8)
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(local))
    # untiled in the child: no seams (tiled and whole agree within rounding)
    whole = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(img), tile=0)))
    (w,) = [e for e in whole if e.type == "result"]
    assert w["tiles"] == 1
    diff = np.abs(np.asarray(decode(w.image).convert("RGB")).astype(int) - np.asarray(out.convert("RGB")).astype(int))
    assert diff.max() <= 2
    # the model stayed loaded
    assert post_engine.ping()["post_models"]["upscale"].endswith("tiny-esrgan-4x.safetensors")
    again = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(img), tile=0)))
    assert next(e for e in again if e.type == "notice")["loaded"] is False


def test_upscale_smaller_scale_alpha_and_auto_tile(post_engine, post_models):
    img = subject_image(30, 20).convert("RGBA")
    events = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(img), scale=2)))
    (res,) = [e for e in events if e.type == "result"]
    out = decode(res.image)
    assert out.size == (60, 40) and out.mode == "RGBA" and res["scale"] == 2
    assert next(e for e in events if e.type == "notice")["tile"] >= 128  # chosen from free memory


def test_upscale_cancel_between_tiles_then_works_again(post_engine, post_models):
    token = CancelToken()
    events = []
    t_cancel = None
    for ev in post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(noise_image(120, 100)),
                                                 tile=40, overlap=8), token):
        events.append(ev)
        if ev.type == "progress" and ev["step"] == 2:
            t_cancel = time.perf_counter()
            token.cancel()
    assert events[-1].type == "cancelled", events[-1].data
    assert time.perf_counter() - t_cancel < 2.0
    steps = [e["step"] for e in events if e.type == "progress"]
    assert max(steps) <= 3 < events[[e.type for e in events].index("progress")]["total"]
    assert not any(e.type == "result" for e in events)
    assert run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(noise_image(20, 20)))))[-1].type == "done"


def test_upscale_errors_are_clear(post_engine, post_models, tmp_path):
    bad_scale = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), png(noise_image(8, 8)), scale=8)))
    assert bad_scale[-1].type == "error" and bad_scale[-1]["kind"] == "invalid_request"
    assert "upscales 4x" in bad_scale[-1]["message"]
    pick = tmp_path / "model.pth"
    pick.write_bytes(b"\x80\x04K\x01.")
    err = run(post_engine.upscale(UpscaleRequest(str(pick), png(noise_image(8, 8)))))[-1]
    assert err.type == "error" and err["kind"] == "model_format" and "pickle" in err["message"]
    junk = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), b"not an image")))[-1]
    assert junk.type == "error" and "Cannot read the image" in junk["message"]
    # refused before it reaches the child
    empty = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), b"")))[-1]
    assert empty.type == "error" and empty["kind"] == "invalid_request" and "No image" in empty["message"]


def test_remove_background_in_child(post_engine, post_models):
    img = subject_image(96, 64)
    events = run(post_engine.remove_background(RemoveBgRequest(str(post_models["u2net"]), png(img))))
    assert events[-1].type == "done", events[-1].data
    progress = [e for e in events if e.type == "progress"]
    assert [p["stage"] for p in progress] == ["preprocess", "inference", "postprocess"]
    assert [p["step"] for p in progress] == [1, 2, 3] and {p["total"] for p in progress} == {3}
    (res,) = [e for e in events if e.type == "result"]
    out = decode(res.image)
    assert out.mode == "RGBA" and out.size == (96, 64) and res["mode"] == "RGBA"
    alpha = np.asarray(out.getchannel("A"))
    assert alpha[32, 48] == 255 and alpha[0, 0] == 0 and set(np.unique(alpha)) <= {0, 255}
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(img))
    soft = run(post_engine.remove_background(RemoveBgRequest(str(post_models["u2net"]), png(img), soft=True,
                                                             mask_only=True)))
    mask = decode(next(e for e in soft if e.type == "result").image)
    m = np.asarray(mask)
    assert mask.mode == "L" and mask.size == (96, 64)
    assert ((m > 0) & (m < 255)).sum() > 20 and m[32, 48] > 240 and m[0, 0] < 10
    assert post_engine.ping()["post_models"]["remove_bg"].endswith("tiny-u2net.onnx")


def test_remove_background_cancel_and_errors(post_engine, post_models, tmp_path):
    token = CancelToken()
    events = []
    for ev in post_engine.remove_background(RemoveBgRequest(str(post_models["u2net"]), png(subject_image())), token):
        events.append(ev)
        if ev.type == "progress" and ev["step"] == 1:
            token.cancel()
    assert events[-1].type == "cancelled" and not any(e.type == "result" for e in events)
    wrong = tmp_path / "seg.safetensors"
    wrong.write_bytes(b"x")
    err = run(post_engine.remove_background(RemoveBgRequest(str(wrong), png(subject_image()))))[-1]
    assert err.type == "error" and err["kind"] == "model_format" and ".onnx" in err["message"]
    bad = run(post_engine.remove_background(RemoveBgRequest(str(post_models["u2net"]), png(subject_image()),
                                                            threshold=300)))[-1]
    assert bad.type == "error" and bad["kind"] == "invalid_request"


def test_upscale_and_background_removal_are_refused_or_recorded_by_the_policy(post_engine, post_models,
                                                                               atelier_home, tmp_path):
    """Issue 16: post-processing models pass the same gate and leave the same records as images."""
    import hashlib
    import json
    import os

    from desktop_app.core.audit import verify
    from desktop_app.core.policy import model_digest

    audit = tmp_path / "audit"
    pol = atelier_home / "policy.toml"
    os.environ["ATELIER_POLICY"] = str(pol)  # restored by the autouse fixture
    pol.write_text(f"allowed_models = ['{model_digest(post_models['u2net'])}']\n"
                   f"[audit]\nmode = 'metadata'\npath = '{audit}'\n")
    src = png(noise_image(40, 30))
    refused = run(post_engine.upscale(UpscaleRequest(str(post_models["esrgan"]), src, tile=40, overlap=8)))
    assert [e.type for e in refused] == ["error"] and refused[0]["kind"] == "not_approved"
    cut = run(post_engine.remove_background(RemoveBgRequest(str(post_models["u2net"]), src)))
    assert cut[-1].type == "done", cut[-1].data
    (res,) = [e for e in cut if e.type == "result"]
    (rec,) = [json.loads(x) for f in sorted(audit.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert rec["kind"] == "remove_bg" and rec["outcome"] == "done"
    assert rec["model_sha256"] == model_digest(post_models["u2net"])
    assert rec["prompt_sha256"] == hashlib.sha256(json.dumps(
        {"image_sha256": hashlib.sha256(src).hexdigest()}, sort_keys=True).encode()).hexdigest()
    assert rec["counts"]["images"] == 1 and verify(audit)["ok"]
    assert hashlib.sha256(res.image).hexdigest() not in (audit / sorted(os.listdir(audit))[-1]).read_text()
