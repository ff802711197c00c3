"""PNG metadata: A1111 `parameters` text + our JSON chunk, written and parsed back (no torch)."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from desktop_app.engines.diffusion.metadata import format_parameters, parse_a1111, parse_parameters, png_with_metadata

PARAMS = {
    "prompt": "a red fox, in snow: at dawn", "negative": "blurry, low quality", "mode": "txt2img", "steps": 20,
    "guidance": 7.0, "width": 512, "height": 768, "seed": 1234567890, "scheduler": "Euler a",
    "model": "dreamshaper_8", "family": "sd15", "loras": [{"path": "/l/detail.safetensors", "weight": 0.8}],
}


def test_a1111_text_format():
    text = format_parameters(PARAMS)
    lines = text.split("\n")
    assert lines[0] == "a red fox, in snow: at dawn"
    assert lines[1] == "Negative prompt: blurry, low quality"
    assert lines[2].startswith("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234567890, Size: 512x768, Model: dreamshaper_8")
    assert "Lora: " in lines[2]


def test_no_negative_line_when_empty_and_quoting():
    text = format_parameters({**PARAMS, "negative": "", "model": "my, model"})
    assert "Negative prompt" not in text
    assert 'Model: "my, model"' in text
    back = parse_a1111(text)
    assert back["model"] == "my, model" and back["negative"] == ""


def test_png_round_trip_both_chunks():
    png = png_with_metadata(Image.new("RGB", (8, 8), "red"), PARAMS)
    with Image.open(io.BytesIO(png)) as img:
        assert "parameters" in img.text and "atelier" in img.text
    back = parse_parameters(png)
    assert back["source"] == "atelier"
    for k, v in PARAMS.items():
        assert back[k] == v, k


def test_parse_a1111_png_without_our_chunk(tmp_path):
    text = ("masterpiece, a castle\non a hill\nNegative prompt: ugly\nSteps: 30, Sampler: DPM++ 2M Karras, "
            "CFG scale: 6.5, Seed: 42, Size: 640x512, Model hash: abc123, Model: sdxl_base, Denoising strength: 0.4")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    back = parse_parameters(path)
    assert back["source"] == "a1111"
    assert back["prompt"] == "masterpiece, a castle\non a hill"
    assert back["negative"] == "ugly"
    assert (back["steps"], back["scheduler"], back["guidance"], back["seed"]) == (30, "DPM++ 2M Karras", 6.5, 42)
    assert (back["width"], back["height"], back["model"], back["strength"]) == (640, 512, "sdxl_base", 0.4)
    assert back["extra"] == {"Model hash": "abc123"}


def test_plain_png_has_no_parameters(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(path)
    assert parse_parameters(path) is None
