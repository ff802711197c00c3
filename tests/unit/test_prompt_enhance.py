"""Enhance prompt's pieces (core/prompt_enhance.py): styles per family, reading a model's reply
(complete or streaming, and what small models get wrong), and a real run on the starter model."""

from __future__ import annotations

import pytest

from desktop_app.core.errors import AtelierError
from desktop_app.core.prompt_enhance import (
    NATURAL_SYSTEM, TAG_SYSTEM, build_messages, check_idea, enhance, split_reply, style_for, system_prompt,
)


def test_style_follows_the_family():
    for fam in ("sd15", "sd15-inpainting", "sd2", "sdxl", "sdxl-inpainting", None, ""):
        assert style_for(fam) == "tags" and system_prompt(fam) == TAG_SYSTEM
    for fam in ("sd3", "flux", "flux-schnell", "flux-dev"):
        assert style_for(fam) == "natural" and system_prompt(fam) == NATURAL_SYSTEM
    assert system_prompt("sdxl", "  Mine.  ") == "Mine."  # the user's own instructions win
    m = build_messages(" a fox ", "flux-dev")
    assert m[0]["role"] == "system" and m[1] == {"role": "user", "content": "Idea: a fox"}


def test_bad_ideas_are_one_line_errors():
    with pytest.raises(AtelierError, match="Type a short idea"):
        check_idea("   ")
    with pytest.raises(AtelierError, match="at most 2000"):
        check_idea("x" * 2001)


@pytest.mark.parametrize("reply,family,expected", [
    ("Prompt: red fox, snow, forest, golden hour, masterpiece\nNegative: blurry, lowres",
     "sdxl", ("red fox, snow, forest, golden hour, masterpiece", "blurry, lowres")),
    ("**Prompt:** \"a fox in the snow\"\n**Negative prompt:** blurry\n\nHope this helps!",
     "sd15", ("a fox in the snow", "blurry")),
    ("<think>they want tags</think>Prompt: fox, snow\nNegative: text", "sd15", ("fox, snow", "text")),
    ("Sure! Here it is:\nPrompt: A red fox trots through fresh snow at dawn.\nNegative: blurry",
     "flux-schnell", ("A red fox trots through fresh snow at dawn.", "")),  # FLUX takes no negative
    ("fox, snow, dusk\nmore chatter", "sd15", ("fox, snow, dusk", "")),  # no label: the first line
    ("Prompt: fox, sn", "sdxl", ("fox, sn", "")),  # streaming: the prompt so far
    ("Prompt: fox, snow\nNeg", "sdxl", ("fox, snow", "")),
    ("", "sdxl", ("", "")),
])
def test_split_reply(reply, family, expected):
    assert split_reply(reply, family) == expected


def test_enhance_on_the_real_starter_streams_a_prompt(starter_model):
    from desktop_app.engines.chat import ChatEngine
    from desktop_app.engines.chat_types import LoadConfig

    eng = ChatEngine()
    eng.load(LoadConfig.for_model(starter_model, n_ctx=1024))
    try:
        seen = []
        prompt, negative = enhance(eng, "a lighthouse in a storm", "sdxl", seed=7,
                                   on_text=lambda p, n: seen.append((p, n)))
    finally:
        eng.unload()
    assert prompt and "\n" not in prompt and len(seen) >= 3
    assert seen[-1][0] in (prompt, "") or prompt.startswith(seen[-1][0][:10])
    # the natural style never returns a negative prompt, whatever the model wrote
    eng = ChatEngine()
    eng.load(LoadConfig.for_model(starter_model, n_ctx=1024))
    try:
        _p, neg = enhance(eng, "a lighthouse in a storm", "flux-schnell", seed=7)
    finally:
        eng.unload()
    assert neg == ""
