"""Markdown for chat messages: prose through Qt's Markdown (md4c: headings, lists, tables, links),
fenced code blocks highlighted with pygments, each in its own frame with a Copy button.

A message is cut into segments (prose / code). While a reply streams only the segments that
changed are re-rendered (in practice: the last one), so appending tokens never re-renders the
whole message, let alone the conversation.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from desktop_app.ui.widgets.named import named

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*$")


@dataclass(frozen=True)
class Segment:
    kind: str  # "prose" | "code"
    text: str
    lang: str = ""
    closed: bool = True  # a code block still streaming has no closing fence yet


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
        out.append(Segment("code", "\n".join(code), lang.lower(), closed))
    if prose and any(p.strip() for p in prose):
        out.append(Segment("prose", "\n".join(prose).strip("\n")))
    return out


def small_label(label: QLabel) -> QLabel:
    """A secondary label: a smaller font in the palette's placeholder colour."""
    f = label.font()
    f.setPointSizeF(max(6.0, f.pointSizeF() * 0.85))
    label.setFont(f)
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def fill_alternate(widget: QWidget) -> None:
    """Paint the widget's background in the palette's alternate base (user bubbles, code blocks)."""
    widget.setAutoFillBackground(True)
    pal = widget.palette()
    pal.setColor(QPalette.ColorRole.Window, pal.color(QPalette.ColorRole.AlternateBase))
    widget.setPalette(pal)


def _is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


@lru_cache(maxsize=4)
def _formatter(dark: bool):
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(noclasses=True, nowrap=True, style="monokai" if dark else "friendly")


@lru_cache(maxsize=512)
def highlight_html(code: str, lang: str, dark: bool) -> str:
    """Code as HTML with inline colours (pygments), ready for a Qt rich-text label."""
    from pygments import highlight
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    # No guess_lexer: it tries every lexer (tens of ms). An untagged block stays plain.
    lexer = None
    if lang:
        try:
            lexer = get_lexer_by_name(lang, stripnl=False, ensurenl=False)
        except ClassNotFound:
            lexer = None
    if lexer is None:
        lexer = TextLexer()
    body = highlight(code, lexer, _formatter(dark))
    # pygments' background colour is dropped: the frame takes its colour from the palette.
    body = re.sub(r"background-color: #[0-9a-fA-F]+;?\s*", "", body)
    return body


def code_html(code: str, lang: str, dark: bool, fast: bool = False) -> str:
    body = html.escape(code) if fast else highlight_html(code, lang, dark)
    return (
        "<pre style=\"white-space: pre-wrap; margin: 0; font-family: 'DejaVu Sans Mono', 'Consolas', "
        f"'Menlo', monospace;\">{body}</pre>"
    )


def warm_up(langs=("python", "bash", "javascript", "json", "c", "cpp", "rust", "markdown")) -> None:
    """Import pygments and the common lexers ahead of time (call it off the GUI thread), so the
    first highlighted block does not stall the GUI."""
    for lang in langs:
        highlight_html("x = 1\n", lang, False)
        highlight_html("x = 1\n", lang, True)


def keep_line_breaks(text: str) -> str:
    """Markdown joins single newlines into one paragraph; chat models mean them as line breaks
    (poems, addresses, step lists without markers). Make each one a hard break (two trailing
    spaces), leaving blank lines, table rows and headings alone."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and nxt.strip() and not line.lstrip().startswith(("|", "#")) and not line.endswith("  "):
            line += "  "
        out.append(line)
    return "\n".join(out)


class _Prose(QLabel):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatProse")
        self.setTextFormat(Qt.TextFormat.MarkdownText)
        self.setWordWrap(True)
        self.setOpenExternalLinks(True)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        )
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName("Message text")
        self.source = ""
        self.set_source(text)

    def set_source(self, text: str) -> None:
        if text != self.source:
            self.source = text
            self.setText(keep_line_breaks(text))


class CodeBlock(QFrame):
    """One fenced code block: a header with the language and a Copy button, then the code."""

    copied = Signal(str)

    def __init__(self, seg: Segment, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatCodeBlock")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        fill_alternate(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 8)
        lay.setSpacing(2)
        head = QHBoxLayout()
        self.lang_label = named(small_label(QLabel()), "chatCodeLang")
        self.copy_button = named(QToolButton(), "chatCodeCopy")
        self.copy_button.setText("Copy")
        self.copy_button.setAutoRaise(True)
        self.copy_button.setAccessibleName("Copy code")
        self.copy_button.setToolTip("Copy this code block to the clipboard")
        self.copy_button.clicked.connect(self._on_copy)
        head.addWidget(self.lang_label)
        head.addStretch(1)
        head.addWidget(self.copy_button)
        lay.addLayout(head)
        self.code_label = named(QLabel(), "chatCode")
        self.code_label.setTextFormat(Qt.TextFormat.RichText)
        self.code_label.setWordWrap(True)
        self.code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.code_label.setAccessibleName("Code")
        self.code_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.code_label)
        self.segment: Segment | None = None
        self.set_segment(seg)

    @property
    def code(self) -> str:
        return self.segment.text if self.segment else ""

    def set_segment(self, seg: Segment) -> None:
        if seg == self.segment:
            return
        self.segment = seg
        self.lang_label.setText(seg.lang or "code")
        # While the block streams it is shown plain (escaped only); highlighted once, when it closes.
        fast = not seg.closed
        self.code_label.setText(code_html(seg.text, seg.lang, _is_dark(self.palette()), fast))

    @Slot()
    def _on_copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code)
        self.copy_button.setText("Copied")
        self.copied.emit(self.code)


class MarkdownView(QWidget):
    """A message body: a column of prose labels and code blocks, updated segment by segment."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(6)
        self._widgets: list[QWidget] = []
        self._segments: list[Segment] = []
        self.renders = 0  # segment widgets (re)rendered: tests check streaming stays incremental
        self.text = ""
        self.set_text(text)

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self._widgets if isinstance(w, CodeBlock)]

    def set_text(self, text: str) -> None:
        if text == self.text and self._widgets:
            return
        self.text = text
        segs = split_segments(text) if text.strip() else []
        for i, seg in enumerate(segs):
            if i < len(self._segments) and self._segments[i] == seg:
                continue
            w = self._widgets[i] if i < len(self._widgets) else None
            if w is not None and seg.kind == "prose" and isinstance(w, _Prose):
                w.set_source(seg.text)
            elif w is not None and seg.kind == "code" and isinstance(w, CodeBlock):
                w.set_segment(seg)
            else:
                nw = _Prose(seg.text) if seg.kind == "prose" else CodeBlock(seg)
                if w is not None:
                    self._lay.replaceWidget(w, nw)
                    w.deleteLater()
                    self._widgets[i] = nw
                else:
                    self._lay.addWidget(nw)
                    self._widgets.append(nw)
            self.renders += 1
        for w in self._widgets[len(segs):]:
            self._lay.removeWidget(w)
            w.deleteLater()
        del self._widgets[len(segs):]
        self._segments = segs
