"""Super resolution through spandrel with a tiny random ESRGAN written by the test."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.core.errors import AtelierError, Cancelled, ModelFormatError
from desktop_app.core.model_files import record_for_path
from desktop_app.engines.base import CancelToken
from desktop_app.engines.upscale import (
    TileDone,
    UpscaleResult,
    auto_tile,
    load_upscaler,
    tile_boxes,
    upscale,
    upscale_image,
)
from tests.postprocess.models import noise_image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tiny_esrgan):
    return load_upscaler(tiny_esrgan)


def test_spandrel_detects_the_tiny_esrgan_through_our_loader(model, tiny_esrgan):
    assert model.architecture == "ESRGAN"
    assert model.scale == 4
    assert model.purpose == "SR"
    assert (model.device, model.dtype) == ("cpu", "float32")
    assert model.to_dict()["scale"] == 4
    # torchvision stood in only while spandrel was imported; libraries probing for it still see none
    assert not [m for m in sys.modules if m.startswith("torchvision")]
    rec = record_for_path(tiny_esrgan)
    assert (rec.task, rec.format) == ("upscale", "safetensors")


def test_a_2x_model_reports_its_scale(tiny_esrgan_2x):
    m = load_upscaler(tiny_esrgan_2x)
    assert m.scale == 2
    out = upscale_image(noise_image(20, 12), m)
    assert out.size == (40, 24)


def test_tiled_matches_untiled_and_reports_each_tile(model):
    img = noise_image(90, 70)
    whole = np.asarray(upscale_image(img, model, tile=0)).astype(int)
    assert whole.shape == (280, 360, 3)
    assert whole.std() > 1  # the random net does not output a flat image

    events = list(upscale(img, model, tile=40, overlap=8))
    tiles = [e for e in events if isinstance(e, TileDone)]
    assert isinstance(events[-1], UpscaleResult) and events[:-1] == tiles
    n = len(tile_boxes(90, 70, 40, 8))
    assert n >= 12
    assert [t.index for t in tiles] == list(range(1, n + 1)) and {t.total for t in tiles} == {n}
    res = events[-1]
    assert (res.scale, res.model_scale, res.tiles) == (4, 4, n)
    tiled = np.asarray(res.image).astype(int)
    assert np.abs(tiled - whole).max() <= 2  # < 2/255 + rounding: no seams

    # without overlap the tiles miss their neighbours' context: seams show (proves tiles ran apart)
    seams = np.asarray(upscale_image(img, model, tile=24, overlap=0)).astype(int)
    assert np.abs(seams - whole).max() > 2


def test_tile_boxes_cover_the_image_exactly_once():
    boxes = tile_boxes(333, 101, 96, 16)
    cover = np.zeros((101, 333), int)
    for x0, y0, x1, y1 in boxes:
        assert x1 - x0 + 32 <= 96 and y1 - y0 + 32 <= 96
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    assert tile_boxes(50, 40, 256, 32) == [(0, 0, 50, 40)]
    with pytest.raises(AtelierError, match="too small"):
        tile_boxes(500, 500, 64, 32)


def test_cancel_between_tiles(model):
    token = CancelToken()
    gen = upscale(noise_image(90, 70), model, tile=40, overlap=8, token=token)
    first = next(gen)
    assert isinstance(first, TileDone) and first.index == 1 and first.total > 1
    token.cancel()
    with pytest.raises(Cancelled):
        next(gen)


def test_smaller_scale_and_alpha(model):
    rgba = noise_image(30, 20).convert("RGBA")
    a = np.zeros((20, 30), np.uint8)
    a[:, 15:] = 255
    rgba.putalpha(Image.fromarray(a))
    out = upscale_image(rgba, model, scale=2)
    assert out.size == (60, 40) and out.mode == "RGBA"
    alpha = np.asarray(out.getchannel("A"))
    assert alpha[:, :25].max() < 20 and alpha[:, 35:].min() > 235
    with pytest.raises(AtelierError, match="upscales 4x"):
        list(upscale(rgba, model, scale=8))


def test_refuses_pickle_and_foreign_files(tmp_path, tiny_esrgan):
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelFormatError, match="pickle"):
        load_upscaler(pth)

    from safetensors.numpy import save_file

    other = tmp_path / "not-an-upscaler.safetensors"
    save_file({"encoder.weight": np.zeros((4, 4), np.float32)}, str(other))
    with pytest.raises(ModelFormatError, match="not a super-resolution model"):
        load_upscaler(other)

    cut = tmp_path / "truncated.safetensors"
    cut.write_bytes(tiny_esrgan.read_bytes()[:-100])
    with pytest.raises(ModelFormatError, match="truncated"):
        load_upscaler(cut)
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with pytest.raises(ModelFormatError):
        load_upscaler(bad)


def test_importing_the_engines_loads_neither_torch_nor_onnxruntime():
    code = (
        "import sys\n"
        "import desktop_app.engines.upscale, desktop_app.engines.background, desktop_app.commands.postprocess\n"
        "bad = [m for m in ('torch', 'spandrel', 'onnxruntime', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_auto_tile_follows_free_memory(model):
    # fp32 4x: ~10.7 KB per input pixel; half of 2 GiB allows ~310 px -> 256
    assert auto_tile(model, 2 * 1024**3) == 256
    assert auto_tile(model, 64 * 1024**3) == 512  # CPU cap
    assert auto_tile(model, 1024**2) == 128  # never below 128
    assert auto_tile(model) in range(128, 513, 64)  # this machine's available RAM
