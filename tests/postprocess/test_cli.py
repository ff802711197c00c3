"""`atelier upscale` and `atelier remove-bg` run as real subprocesses under the CLI contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.core.library import Library
from desktop_app.core.model_files import record_for_path
from tests.postprocess.models import noise_image, subject_image

REPO = Path(__file__).resolve().parents[2]


def load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


def atelier(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # ATELIER_HOME comes from the autouse fixture
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "desktop_app", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def one_json(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("atelier: error: ")
    return lines[-1]


@pytest.mark.slow
def test_upscale_cli_with_a_path_and_with_the_library_default(tmp_path, tiny_esrgan):
    src = tmp_path / "in.png"
    noise_image(40, 30).save(src)

    out = tmp_path / "out" / "x4.png"
    d = one_json(r := atelier("upscale", str(src), str(out), "--model", str(tiny_esrgan), "--json"))
    assert Path(d["out"]) == out.resolve() and out.is_file()
    assert d["scale"] == 4 and d["size"] == [160, 120] and d["model"] == "tiny-esrgan-4x.safetensors"
    assert d["seconds"] > 0 and d["tiles"] == 1
    assert load(out).size == (160, 120)
    assert "tile 1/1" in r.stderr

    # with nothing named, the first upscale model in the library; tiled; 2x from a 4x model
    Library().add(record_for_path(tiny_esrgan))
    out2 = tmp_path / "x2.jpg"
    d = one_json(r := atelier("upscale", str(src), str(out2), "--scale", "2", "--tile", "32", "--json"))
    assert d["scale"] == 2 and d["model_scale"] == 4 and d["size"] == [80, 60] and d["tiles"] > 1
    assert f"tile {d['tiles']}/{d['tiles']}" in r.stderr
    assert load(out2).format == "JPEG"

    err = one_line_error(atelier("upscale", str(src), str(tmp_path / "y.png"), "--scale", "8"))
    assert "upscales 4x" in err


def test_upscale_cli_without_a_model_says_how_to_get_one(tmp_path):
    src = tmp_path / "in.png"
    noise_image(8, 8).save(src)
    err = one_line_error(atelier("upscale", str(src), str(tmp_path / "o.png")))
    assert "No upscaling model is installed" in err and "atelier models import" in err
    err = one_line_error(atelier("upscale", str(tmp_path / "missing.png"), str(tmp_path / "o.png")))
    assert "No image file" in err


def test_remove_bg_cli(tmp_path, tiny_u2net, tiny_esrgan):
    src = tmp_path / "in.png"
    subject_image(96, 64).save(src)

    out = tmp_path / "cut.png"
    d = one_json(r := atelier("remove-bg", str(src), str(out), "--model", str(tiny_u2net), "--soft", "--json"))
    assert d["out"] == str(out.resolve()) and d["size"] == [96, 64] and d["scale"] == 1 and d["soft"] is True
    assert d["model"] == "tiny-u2net.onnx" and d["seconds"] > 0
    assert "inference" in r.stderr
    im = load(out)
    assert im.mode == "RGBA"
    alpha = np.asarray(im.getchannel("A"))
    assert alpha[32, 48] > 240 and alpha[0, 0] < 10

    Library().add(record_for_path(tiny_u2net))
    mask = tmp_path / "mask.jpg"
    d = one_json(atelier("remove-bg", str(src), str(mask), "--mask-only", "--json"))
    assert d["mask_only"] is True and load(mask).mode == "L"

    err = one_line_error(atelier("remove-bg", str(src), str(tmp_path / "cut.jpg")))
    assert "no transparency" in err and not (tmp_path / "cut.jpg").exists()
    Library().add(record_for_path(tiny_esrgan))
    err = one_line_error(atelier("remove-bg", str(src), str(tmp_path / "c.png"), "--model", "tiny-esrgan-4x.safetensors"))
    assert "is a upscale model, not a background-removal model" in err
