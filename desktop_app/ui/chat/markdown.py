"""Markdown for chat messages: prose through Qt's Markdown (md4c: headings, lists, tables, links),
fenced code blocks highlighted with pygments, each in its own frame with a Copy button.

User and model text is Markdown, never HTML (model output is untrusted): raw HTML is parsed as
text (md4c's NoHTML), so a typed ``<div>`` or ``<think>`` shows as typed; an image is shown as its
address, never loaded; a link opens in the browser only when clicked, and only http(s) or mailto.

A message is cut into segments (prose / code). While a reply streams only the segments that
changed are re-rendered (in practice: the last one), so appending tokens never re-renders the
whole message, let alone the conversation.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QPalette, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from desktop_app.core.markdown_text import Segment, split_segments  # noqa: F401 - re-exported
from desktop_app.ui.widgets.named import named


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


_FEATURES = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
SAFE_LINK_SCHEMES = ("http", "https", "mailto")


def safe_markdown_html(text: str) -> str:
    """Markdown as Qt rich text with nothing in it that loads a file or a URL: raw HTML stays
    text, and every image becomes "[image: ADDRESS]" (Qt would read a ``file:`` image from disk)."""
    doc = QTextDocument()
    doc.setMarkdown(text, _FEATURES)
    images = []
    block = doc.begin()
    while block.isValid():
        for it in block:
            frag = it.fragment()
            if frag.isValid() and frag.charFormat().isImageFormat():
                images.append((frag.position(), frag.length(), frag.charFormat().toImageFormat().name()))
        block = block.next()
    for pos, length, name in reversed(images):
        cur = QTextCursor(doc)
        cur.setPosition(pos)
        cur.setPosition(pos + length, QTextCursor.MoveMode.KeepAnchor)
        cur.insertText(f"[image: {name[:300]}]", QTextCharFormat())
    return doc.toHtml()


def open_link(url: str, opener=QDesktopServices.openUrl) -> bool:
    """Open a clicked link in the browser: http(s) and mailto only (never a file or a custom scheme)."""
    q = QUrl(url)
    if q.scheme().lower() not in SAFE_LINK_SCHEMES:
        return False
    return bool(opener(q))


class _Prose(QLabel):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatProse")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setOpenExternalLinks(False)
        self.linkActivated.connect(open_link)
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
            self.setText(safe_markdown_html(keep_line_breaks(text)))


class CodeBlock(QFrame):
    """One fenced code block: a header with the language and a Copy button, then the code."""

    copied = Signal(str)

    def __init__(self, seg: Segment, streaming: bool = False, parent: QWidget | None = None) -> None:
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
        self.streaming = False
        self.set_segment(seg, streaming)

    @property
    def code(self) -> str:
        return self.segment.text if self.segment else ""

    def set_segment(self, seg: Segment, streaming: bool = False) -> None:
        if seg == self.segment and streaming == self.streaming:
            return
        self.segment, self.streaming = seg, streaming
        lang = seg.lang or "code"
        # A finished reply that ended inside this block (its token limit, a stop) says so: it is not
        # shown as a complete block.
        self.lang_label.setText(lang if seg.closed or streaming else f"{lang} · not closed: the reply ended inside it")
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
        self.streaming = False
        self.set_text(text)

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self._widgets if isinstance(w, CodeBlock)]

    def set_text(self, text: str, streaming: bool = False) -> None:
        if text == self.text and self._widgets and streaming == self.streaming:
            return
        self.text, self.streaming = text, streaming
        segs = split_segments(text) if text.strip() else []
        for i, seg in enumerate(segs):
            w = self._widgets[i] if i < len(self._widgets) else None
            if i < len(self._segments) and self._segments[i] == seg:
                if isinstance(w, CodeBlock):
                    w.set_segment(seg, streaming)  # only its header, when streaming ended
                continue
            if w is not None and seg.kind == "prose" and isinstance(w, _Prose):
                w.set_source(seg.text)
            elif w is not None and seg.kind == "code" and isinstance(w, CodeBlock):
                w.set_segment(seg, streaming)
            else:
                nw = _Prose(seg.text) if seg.kind == "prose" else CodeBlock(seg, streaming)
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
