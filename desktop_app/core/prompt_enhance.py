"""Enhance prompt (Qt-free): the chat model turns a short idea into a prompt (and a negative
prompt) suited to the image model's family, for the Studio and ``atelier imagine --enhance``.

Stable Diffusion 1.5/2/XL read comma-separated tags (CLIP, 77 tokens); SD 3.5 and FLUX read
natural sentences (T5) and use no negative prompt. The model is asked for two labelled lines::

    Prompt: <the prompt>
    Negative: <the negative prompt>

:func:`split_reply` reads them from a reply, also while it streams (the Studio shows the prompt
as it grows), and tolerates what small models do: a missing label, quotes, a ``<think>`` block,
Markdown bold, trailing chatter.
"""

from __future__ import annotations

import re

TAG_FAMILIES = ("sd15", "sd2", "sdxl")  # CLIP-only text encoders: tags
NATURAL_FAMILIES = ("sd3", "flux")  # T5: sentences, no negative prompt
MAX_TOKENS = 160
MAX_IDEA = 2000  # characters: an idea, not a document

TAG_SYSTEM = (
    "You write prompts for the Stable Diffusion image generator. Turn the user's idea into one line of "
    "comma-separated tags: subject first, then details, setting, lighting, style and quality tags "
    "(for example: masterpiece, best quality, detailed). At most 60 words. Then write a second line of "
    "negative tags (what to avoid, e.g. blurry, lowres, bad anatomy, watermark, text).\n"
    "Answer with exactly two lines and nothing else:\n"
    "Prompt: <tags>\n"
    "Negative: <tags>"
)
NATURAL_SYSTEM = (
    "You write prompts for a modern image generator that understands plain English. Turn the user's idea "
    "into two to four vivid sentences: the subject, what it does, the setting, the light, the camera or "
    "art style and the mood. Name concrete details; do not use tag lists. At most 90 words.\n"
    "Answer with exactly one line and nothing else:\n"
    "Prompt: <sentences>"
)

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_LABEL = re.compile(r"^\s*[*_#>\-\s]*(prompt|positive(?: prompt)?|negative(?: prompt)?)\s*[*_]*\s*:\s*[*_]*\s*",
                    re.I | re.M)


def style_for(family: str | None) -> str:
    """``tags`` or ``natural`` for an image family id (sd15, sdxl-inpainting, flux-schnell…)."""
    base = (family or "").lower().split("-")[0]
    return "natural" if base in NATURAL_FAMILIES else "tags"


def system_prompt(family: str | None, custom: str | None = None) -> str:
    """The instructions for ``family`` (or the user's own, from Settings)."""
    if custom and custom.strip():
        return custom.strip()
    return NATURAL_SYSTEM if style_for(family) == "natural" else TAG_SYSTEM


def custom_instructions(settings, family: str | None) -> str | None:
    """The user's own instructions for ``family``'s style (Settings ``enhance_system_prompts``)."""
    try:
        stored = settings.get("enhance_system_prompts") or {}
    except Exception:  # noqa: BLE001 - an unreadable settings file: the built-in ones
        return None
    text = stored.get(style_for(family)) if isinstance(stored, dict) else None
    return text.strip() if isinstance(text, str) and text.strip() else None


def check_idea(idea: str) -> str:
    from desktop_app.core.errors import AtelierError

    text = (idea or "").strip()
    if not text:
        raise AtelierError("Type a short idea in the prompt box first, then Enhance.")
    if len(text) > MAX_IDEA:
        raise AtelierError(f"The idea is {len(text)} characters long; Enhance takes at most {MAX_IDEA}.")
    return text


def build_messages(idea: str, family: str | None, custom_system: str | None = None) -> list[dict]:
    """The chat messages that ask for the prompt."""
    return [{"role": "system", "content": system_prompt(family, custom_system)},
            {"role": "user", "content": f"Idea: {check_idea(idea)}"}]


def _clean(text: str) -> str:
    text = text.strip().strip("*_`").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    text = re.sub(r"\s+", " ", text)
    return text.strip().strip('"').strip()


def split_reply(text: str, family: str | None = None) -> tuple[str, str]:
    """(prompt, negative) from a model's reply, complete or still streaming."""
    text = _THINK.sub("", text or "")
    marks = list(_LABEL.finditer(text))
    prompt, negative = "", ""
    if not marks:
        # no label (yet): the first line is the prompt
        prompt = text.strip().split("\n", 1)[0]
    else:
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            body = text[m.end():end]
            if m.group(1).lower().startswith("negative"):
                if not negative:
                    negative = body.strip().split("\n", 1)[0]
            elif not prompt:
                prompt = body.strip().split("\n", 1)[0]  # one line, as asked (the rest is chatter)
    if style_for(family) == "natural":
        negative = ""  # SD 3.5 and FLUX take none
    return _clean(prompt), _clean(negative)


def enhance_stream(engine, idea: str, family: str | None, token=None, custom_system: str | None = None,
                   seed: int | None = None):
    """Run the enhancement on a chat engine (ChatEngine or ChatEngineProcess: its ``chat``
    generator), yielding (prompt, negative) as the reply grows; returns the final pair (an empty
    prompt falls back to the idea itself)."""
    from desktop_app.engines.chat_types import Reply

    messages = build_messages(idea, family, custom_system)
    sampling = {"max_tokens": MAX_TOKENS, "temperature": 0.7, "top_p": 0.9, "seed": seed}
    reply = Reply()
    it = engine.chat(messages, sampling, token, purpose="enhance")  # the audit record's kind
    try:
        for ev in it:
            reply.add(ev)
            if ev.type in ("answer", "reclassify"):
                yield split_reply(reply.answer, family)
    finally:
        it.close()
    prompt, negative = split_reply(reply.answer, family)
    return (prompt or check_idea(idea)), negative


def enhance(engine, idea: str, family: str | None, token=None, custom_system: str | None = None,
            seed: int | None = None, on_text=None) -> tuple[str, str]:
    """:func:`enhance_stream` to its end; ``on_text(prompt, negative)`` follows the stream."""
    gen = enhance_stream(engine, idea, family, token, custom_system, seed)
    while True:
        try:
            pair = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_text is not None:
            on_text(*pair)
