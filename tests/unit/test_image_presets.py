"""Issue 13: Studio presets: aspect ratios sized for the model's trained resolution, style presets."""

from desktop_app.core.image_presets import ASPECTS, STYLES, apply_style, size_for_aspect


def test_aspects_keep_about_the_trained_pixel_count():
    assert size_for_aspect(1024, (16, 9)) == (1344, 768)  # SDXL's own 16:9 bucket
    assert size_for_aspect(1024, (1, 1)) == (1024, 1024)
    assert size_for_aspect(512, (2, 3)) == (448, 640)
    for native in (512, 768, 1024):
        for _label, ratio in ASPECTS:
            w, h = size_for_aspect(native, ratio)
            assert w % 64 == 0 and h % 64 == 0
            assert abs(w * h / native**2 - 1) < 0.15  # the trained area, within rounding
            assert (w > h) == (ratio[0] > ratio[1]) or ratio[0] == ratio[1]


def test_styles_add_to_the_prompts():
    assert apply_style("a fox", "", "None") == ("a fox", "")
    p, n = apply_style("a fox, ", "blurry", "Anime")
    assert p.startswith("a fox, anime style") and n == "blurry, " + STYLES["Anime"][1]
    assert apply_style("", "", "Photographic")[0] == STYLES["Photographic"][0]
    assert apply_style("a fox", "", "Unknown style") == ("a fox", "")
