"""Chat Markdown as text, Qt-free: cut into prose and fenced code, and close a fence a reply left
open (a reply cut by its token limit inside a code block), so that an exported file does not
render the rest of itself as code."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*$")


@dataclass(frozen=True)
class Segment:
    kind: str  # "prose" | "code"
    text: str
    lang: str = ""
    closed: bool = True  # a code block still streaming has no closing fence yet
    fence: str = ""  # a code block's opening fence ("```", "~~~~")


def split_segments(text: str) -> list[Segment]:
    """Cut Markdown into prose and fenced-code segments (an unclosed fence runs to the end)."""
    out: list[Segment] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE_RE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = m.group(1), m.group(2)
        if prose and any(p.strip() for p in prose):
            out.append(Segment("prose", "\n".join(prose).strip("\n")))
        prose = []
        code: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            s = lines[i].strip()
            if s.startswith(fence[0] * len(fence)) and set(s) == {fence[0]}:
                closed = True
                i += 1
                break
            code.append(lines[i])
            i += 1
        out.append(Segment("code", "\n".join(code), lang.lower(), closed, fence))
    if prose and any(p.strip() for p in prose):
        out.append(Segment("prose", "\n".join(prose).strip("\n")))
    return out


def open_fence(text: str) -> str | None:
    """The fence (e.g. "```") that ``text`` leaves open at its end, or None."""
    segs = split_segments(text)
    if segs and segs[-1].kind == "code" and not segs[-1].closed:
        return segs[-1].fence
    return None


def close_open_fence(text: str) -> str:
    """``text`` with a closing fence added when it ends inside a fenced code block."""
    fence = open_fence(text)
    if fence is None:
        return text
    return text.rstrip("\n") + "\n" + fence[0] * len(fence)
