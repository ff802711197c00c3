"""Separating a reasoning model's ``<think>…</think>`` block from its answer, while it streams.

Reasoning models (DeepSeek R1 distills, Qwen3, QwQ…) write their chain of thought between
``<think>`` and ``</think>`` before the answer. Three shapes occur in practice:

1. the model writes both tags itself (``<think>…</think>answer``);
2. the chat template already opened the block at the end of the prompt (R1 distills add
   ``<think>\\n`` to the generation prompt), so only ``</think>`` appears in the output:
   create the parser with ``start_in_thinking=True`` (``ChatEngine`` does this when the rendered
   prompt ends with ``<think>``);
3. as 2 but the caller could not know: a ``</think>`` arrives while no block is open and no
   ``<think>`` was ever seen. The parser then reclassifies everything it had emitted as answer
   into thinking and reports it with a ``("reclassify", text)`` segment, so a UI can move the
   text it already showed into the thought block.

Tags may be split across chunks in any way (``"<th"`` + ``"ink>"``): the parser holds back the
shortest suffix that could still become a tag, so nothing is ever shown and then retracted
(except in case 3, which is explicit).

A ``<think>`` is only recognised before any answer text (leading whitespace aside): a model
that writes about the tag later in its answer is not cut in two.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

THINKING = "thinking"
ANSWER = "answer"
RECLASSIFY = "reclassify"

_BLOCK_RE = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


def strip_thinking(text: str) -> str:
    """The answer part of a full reply: every ``<think>…</think>`` block (and an unclosed one at
    the end) removed, plus a leading orphan ``…</think>`` (template-opened block).

    Used so that the thought is never fed back to the model in later turns.
    """
    if OPEN_TAG not in text and CLOSE_TAG not in text:
        return text
    if CLOSE_TAG in text and OPEN_TAG not in text.split(CLOSE_TAG, 1)[0]:
        text = text.split(CLOSE_TAG, 1)[1]
    return _BLOCK_RE.sub("", text).strip()


def split_thinking(text: str, start_in_thinking: bool = False) -> tuple[str, str]:
    """(thinking, answer) of a complete reply, with the same rules as the streaming parser."""
    p = ThinkParser(start_in_thinking=start_in_thinking)
    p.feed(text)
    p.finish()
    return p.thinking, p.answer


def _partial_suffix(buf: str, tag: str) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(buf)), 0, -1):
        if buf.endswith(tag[:n]):
            return n
    return 0


@dataclass
class ThinkParser:
    """Streaming splitter. ``feed(chunk)`` returns a list of ``(kind, text)`` segments where kind
    is ``"thinking"``, ``"answer"`` or ``"reclassify"`` (see the module doc); ``finish()`` flushes
    what was held back. ``thinking`` / ``answer`` hold the full texts so far; ``thinking_s`` the
    duration of the thought (first chunk → ``</think>``, or → finish when never closed).
    """

    start_in_thinking: bool = False
    clock: Callable[[], float] = time.monotonic
    thinking: str = ""
    answer: str = ""
    _state: str = field(default="", init=False)  # "start" | "thinking" | "answer"
    _buf: str = field(default="", init=False)
    _seen_open: bool = field(default=False, init=False)
    _closed: bool = field(default=False, init=False)
    _t_start: float | None = field(default=None, init=False)
    _t_end: float | None = field(default=None, init=False)
    _answer_started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._state = THINKING if self.start_in_thinking else "start"

    # ------------------------------------------------------------------ properties
    @property
    def in_thinking(self) -> bool:
        return self._state == THINKING

    @property
    def had_thinking(self) -> bool:
        return bool(self.thinking) or self._seen_open or self.start_in_thinking

    @property
    def thinking_s(self) -> float | None:
        """Seconds spent thinking; None when the reply had no thought block."""
        if self._t_start is None or not self.had_thinking:
            return None
        end = self._t_end if self._t_end is not None else self.clock()
        return max(0.0, end - self._t_start)

    # ------------------------------------------------------------------ streaming
    def feed(self, chunk: str) -> list[tuple[str, str]]:
        if self._t_start is None and chunk:
            self._t_start = self.clock()
        self._buf += chunk
        out: list[tuple[str, str]] = []
        while self._buf:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if not stripped:
                    break  # only whitespace so far: wait
                if stripped.startswith(OPEN_TAG):
                    self._buf = stripped[len(OPEN_TAG):]
                    self._state = THINKING
                    self._seen_open = True
                    self._t_start = self.clock()
                    continue
                if OPEN_TAG.startswith(stripped):
                    break  # could still become "<think>": wait
                self._state = ANSWER
                continue
            if self._state == THINKING:
                i = self._buf.find(CLOSE_TAG)
                if i >= 0:
                    self._emit(out, THINKING, self._buf[:i])
                    self._buf = self._buf[i + len(CLOSE_TAG):]
                    self._state = ANSWER
                    self._closed = True
                    self._t_end = self.clock()
                    continue
                keep = _partial_suffix(self._buf, CLOSE_TAG)
                self._emit(out, THINKING, self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep:]
                break
            # ANSWER
            if not self._seen_open and not self._closed:
                # Case 3: an orphan </think> reclassifies the answer so far as thinking.
                i = self._buf.find(CLOSE_TAG)
                if i >= 0:
                    moved = self.answer + self._buf[:i]
                    self.thinking += moved
                    self.answer = ""
                    self._answer_started = False
                    out.append((RECLASSIFY, moved))
                    self._buf = self._buf[i + len(CLOSE_TAG):]
                    self._closed = True
                    self._t_end = self.clock()
                    continue
                keep = _partial_suffix(self._buf, CLOSE_TAG)
            else:
                keep = 0
            self._emit(out, ANSWER, self._buf[: len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep:]
            break
        return out

    def finish(self) -> list[tuple[str, str]]:
        """Flush held-back text at the end of the stream (a partial tag is plain text then)."""
        out: list[tuple[str, str]] = []
        if self._buf:
            kind = THINKING if self._state == THINKING else ANSWER
            text, self._buf = self._buf, ""
            self._emit(out, kind, text)
        if self._state == THINKING and self._t_end is None:
            self._t_end = self.clock()
        return out

    def _emit(self, out: list[tuple[str, str]], kind: str, text: str) -> None:
        if not text:
            return
        if kind == ANSWER:
            if not self._answer_started:
                # Whitespace between </think> and the answer (usually "\n\n") is not content.
                text = text.lstrip()
                if not text:
                    return
                self._answer_started = True
            self.answer += text
        else:
            if not self.thinking:
                text = text.lstrip()
                if not text:
                    return
            self.thinking += text
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
