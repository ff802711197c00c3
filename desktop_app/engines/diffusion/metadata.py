"""Parameters stored in PNG text chunks: A1111's ``parameters`` plus our own ``atelier`` JSON.

Pillow only (no torch): the GUI reads dropped PNGs with ``parse_parameters``.

A1111 format::

    <prompt>
    Negative prompt: <negative>            (omitted when empty)
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: name

Values containing ``,``, ``:`` or a newline are JSON-quoted.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

A1111_KEY = "parameters"
ATELIER_KEY = "atelier"
FORMAT_VERSION = 1

# A1111's own pattern for "Key: value" pairs (value optionally JSON-quoted).
_PAIR = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")

# our param key -> A1111 key
_A1111_NAMES = [
    ("steps", "Steps"),
    ("scheduler", "Sampler"),
    ("guidance", "CFG scale"),
    ("seed", "Seed"),
    ("size", "Size"),
    ("model", "Model"),
    ("strength", "Denoising strength"),
    ("mode", "Mode"),
    ("loras", "Lora"),
    ("idea", "Idea"),
]


def _quote(value: Any) -> str:
    s = _fmt_number(value) if isinstance(value, (int, float)) else str(value)
    if any(c in s for c in ",:\n") or s.startswith('"'):
        return json.dumps(s, ensure_ascii=False)
    return s


def _fmt_number(v: float | int) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def format_parameters(params: dict) -> str:
    """The A1111 ``parameters`` text for our params dict."""
    lines = [str(params.get("prompt", ""))]
    neg = params.get("negative") or ""
    if neg:
        lines.append(f"Negative prompt: {neg}")
    pairs = []
    for key, a_name in _A1111_NAMES:
        if key == "size":
            if params.get("width") and params.get("height"):
                pairs.append(f"Size: {params['width']}x{params['height']}")
            continue
        value = params.get(key)
        if value in (None, "", []):
            continue
        if key == "strength" and params.get("mode", "txt2img") == "txt2img":
            continue
        if key == "mode" and value == "txt2img":
            continue
        if key == "loras":
            value = "; ".join(f"{Path(x['path']).stem}:{_fmt_number(float(x.get('weight', 1.0)))}" for x in value)
        pairs.append(f"{a_name}: {_quote(value)}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def png_with_metadata(png_or_image: Any, params: dict) -> bytes:
    """Encode a PIL image (or re-encode PNG bytes) with both text chunks."""
    from PIL import Image, PngImagePlugin

    img = Image.open(io.BytesIO(png_or_image)) if isinstance(png_or_image, (bytes, bytearray)) else png_or_image
    info = PngImagePlugin.PngInfo()
    info.add_text(A1111_KEY, format_parameters(params))
    info.add_itxt(ATELIER_KEY, json.dumps({"version": FORMAT_VERSION, **params}, ensure_ascii=False))
    buf = io.BytesIO()
    # compress_level 1: about 3× faster than Pillow's default (6) for ~10 % larger files; this runs
    # once per generated image, on the path the user waits on.
    img.save(buf, format="PNG", pnginfo=info, compress_level=1)
    return buf.getvalue()


def parse_a1111(text: str) -> dict:
    """Our params dict from A1111's ``parameters`` text (unknown keys kept under ``extra``)."""
    lines = text.strip("\n").split("\n")
    last = lines[-1] if lines else ""
    if len(_PAIR.findall(last)) < 3:  # not a parameter line: everything is prompt
        param_line, body = "", lines
    else:
        param_line, body = last, lines[:-1]
    prompt_lines, neg_lines, in_neg = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_neg = True
            line = line[len("Negative prompt:"):].lstrip()
        (neg_lines if in_neg else prompt_lines).append(line)
    out: dict[str, Any] = {"prompt": "\n".join(prompt_lines), "negative": "\n".join(neg_lines)}
    names = {a: k for k, a in _A1111_NAMES}
    extra = {}
    for key, raw in _PAIR.findall(param_line):
        key = key.strip()
        value: Any = raw.strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        ours = names.get(key)
        if ours is None:
            extra[key] = value
            continue
        if ours == "size":
            m = _SIZE.match(value)
            if m:
                out["width"], out["height"] = int(m.group(1)), int(m.group(2))
            continue
        if ours in ("steps", "seed"):
            try:
                value = int(value)
            except ValueError:
                pass
        elif ours in ("guidance", "strength"):
            try:
                value = float(value)
            except ValueError:
                pass
        elif ours == "loras":
            loras = []
            for part in str(value).split(";"):
                name, _, w = part.strip().rpartition(":")
                try:
                    loras.append({"path": name, "weight": float(w)})
                except ValueError:
                    pass
            value = loras
        out[ours] = value
    if extra:
        out["extra"] = extra
    return out


def parse_parameters(source: str | Path | bytes) -> dict | None:
    """Parameters of a PNG made by Atelier (full JSON) or A1111 (``parameters`` text); None if neither.

    ``source``: a path or the PNG bytes. The result has ``source`` = ``"atelier"`` or ``"a1111"``.
    """
    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    with fp, Image.open(fp) as img:
        text = dict(getattr(img, "text", {}) or img.info)
    if ATELIER_KEY in text:
        try:
            data = json.loads(text[ATELIER_KEY])
        except ValueError:
            data = None
        if isinstance(data, dict):
            data.pop("version", None)
            data["source"] = "atelier"
            return data
    if A1111_KEY in text and isinstance(text[A1111_KEY], str):
        data = parse_a1111(text[A1111_KEY])
        data["source"] = "a1111"
        return data
    return None
