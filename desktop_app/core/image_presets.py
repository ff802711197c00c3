"""Image Studio presets (Qt-free): aspect ratios sized for a model's trained resolution, and style
presets that add to the prompt and the negative prompt (as Fooocus and DiffusionBee offer)."""

from __future__ import annotations

import math

# (label, width : height)
ASPECTS = [("1:1 square", (1, 1)), ("4:3", (4, 3)), ("3:2", (3, 2)), ("16:9 wide", (16, 9)), ("21:9 cinema", (21, 9)),
           ("3:4", (3, 4)), ("2:3 portrait", (2, 3)), ("9:16 tall", (9, 16))]

# name: (added to the prompt, added to the negative prompt)
STYLES = {
    "None": ("", ""),
    "Photographic": ("photograph, 35mm, natural light, sharp focus, highly detailed", "drawing, painting, cartoon, blurry"),
    "Cinematic": ("cinematic still, dramatic lighting, shallow depth of field, film grain", "cartoon, flat lighting"),
    "Digital art": ("digital painting, concept art, vibrant colours, highly detailed", "photo, blurry"),
    "Anime": ("anime style, clean line art, cel shading, vivid colours", "photo, realistic, 3d render"),
    "Watercolour": ("watercolour painting, soft washes, paper texture", "photo, 3d render, harsh lines"),
    "Line art": ("line art, ink drawing, black and white, clean lines", "colour, photo, shading"),
    "3D render": ("3d render, octane, global illumination, studio lighting", "drawing, flat, sketch"),
}


def size_for_aspect(native: int, ratio: tuple[int, int], multiple: int = 64) -> tuple[int, int]:
    """(width, height) with about the pixel count the model was trained for (native × native) in
    this aspect ratio, each a multiple of ``multiple``."""
    rw, rh = ratio
    area = native * native
    w = math.sqrt(area * rw / rh)
    h = area / w

    def snap(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return snap(w), snap(h)


def apply_style(prompt: str, negative: str, style: str) -> tuple[str, str]:
    """The prompt and negative prompt with a style preset added (unchanged for "None" or unknown)."""
    add, avoid = STYLES.get(style, ("", ""))
    prompt = f"{prompt.rstrip(' ,')}, {add}" if add and prompt.strip() else (prompt or add)
    negative = f"{negative.rstrip(' ,')}, {avoid}" if avoid and negative.strip() else (negative or avoid)
    return prompt, negative
