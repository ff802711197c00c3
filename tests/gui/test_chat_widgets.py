"""Chat tab widgets without a model: Markdown/code rendering, input keys, lazy lists, screenshot."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.history import HistoryStore
from desktop_app.ui.chat.conversations import PAGE as LIST_PAGE
from desktop_app.ui.chat.conversations import ConversationListModel
from desktop_app.ui.chat.message_view import PAGE as VIEW_PAGE
from desktop_app.ui.chat.message_view import MessageView, ViewMessage
from desktop_app.ui.chat.input import ChatInput
from desktop_app.ui.chat.markdown import CodeBlock, MarkdownView, highlight_html, split_segments

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"

CODE_REPLY = """Here is a **recursive** Fibonacci with memoisation:

```python
from functools import lru_cache

@lru_cache(maxsize=None)
def fib(n: int) -> int:
    \"\"\"The n-th Fibonacci number.\"\"\"
    return n if n < 2 else fib(n - 1) + fib(n - 2)

print([fib(i) for i in range(10)])  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
```

| n | fib(n) |
|---|--------|
| 10 | 55 |
| 20 | 6765 |

1. Fast: each value is computed once.
2. See [the docs](https://docs.python.org/3/library/functools.html).
"""


def test_split_segments_handles_fences_and_unclosed_streaming_block():
    segs = split_segments("intro\n```py\nx = 1\n```\nafter\n~~~\nraw\n")
    assert [(s.kind, s.text, s.lang, s.closed) for s in segs] == [
        ("prose", "intro", "", True), ("code", "x = 1", "py", True), ("prose", "after", "", True),
        ("code", "raw\n", "", False),
    ]
    assert split_segments("") == []


def test_code_is_highlighted_with_inline_colours():
    html = highlight_html("def f():\n    return 1\n", "python", False)
    assert "style=" in html and "def" in html and "background-color" not in html


def test_markdown_view_renders_code_blocks_with_copy(qtbot):
    view = MarkdownView(CODE_REPLY)
    qtbot.addWidget(view)
    blocks = view.code_blocks()
    assert len(blocks) == 1 and blocks[0].code.startswith("from functools import lru_cache")
    blocks[0].copy_button.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == blocks[0].code
    assert blocks[0].copy_button.text() == "Copied"


def test_streaming_rerenders_only_the_changed_segment(qtbot):
    view = MarkdownView("")
    qtbot.addWidget(view)
    text = ""
    for chunk in ["Intro para.\n\n", "```python\n", "x = 1\n", "y = 2\n", "```\n", "Tail ", "words ", "here."]:
        text += chunk
        view.set_text(text)
    first = view._widgets[0]
    before = view.renders
    view.set_text(text + " More.")
    assert view.renders == before + 1  # only the last prose segment
    assert view._widgets[0] is first
    assert isinstance(view._widgets[1], CodeBlock)


def test_input_enter_sends_shift_enter_newline_esc_stops(qtbot):
    box = ChatInput()
    qtbot.addWidget(box)
    box.show()
    qtbot.keyClicks(box, "hello")
    with qtbot.waitSignal(box.send_requested, timeout=1000):
        qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box, "world")
    assert box.toPlainText() == "hello\nworld"
    with qtbot.waitSignal(box.stop_requested, timeout=1000):
        qtbot.keyClick(box, Qt.Key.Key_Escape)


def test_conversation_list_is_lazy_with_many_conversations(qtbot, tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    with store._lock:  # bulk insert for speed; the model reads through the public API
        store._db.executemany("INSERT INTO conversations (title, created, updated) VALUES (?, ?, ?)",
                              [(f"chat {i}", float(i), float(i)) for i in range(3000)])
    model = ConversationListModel(store)
    from PySide6.QtWidgets import QListView

    view = QListView()
    qtbot.addWidget(view)
    t0 = time.perf_counter()
    view.setModel(model)
    view.resize(250, 600)
    view.show()
    qtbot.waitExposed(view)
    dt = time.perf_counter() - t0
    assert model.rowCount() == LIST_PAGE, "only the first page is read"
    assert model.data(model.index(0)) == "chat 2999"  # newest first
    assert dt < 1.0
    view.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() > LIST_PAGE, timeout=3000)
    model.set_search("chat 12")
    while model.canFetchMore():
        model.fetchMore()
    assert model.rowCount() == 111  # chat 12, 120-129, 1200-1299
    assert model.setData(model.index(0), "renamed")
    assert store.get_conversation(model.conversation_at(0).id).title == "renamed"
    store.close()


def test_message_view_with_1000_messages_builds_one_page_and_streams_incrementally(qtbot):
    view = MessageView()
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    msgs = [ViewMessage(i, "user" if i % 2 else "assistant", f"message **{i}**\n\n- a\n- b") for i in range(1000)]
    t0 = time.perf_counter()
    view.set_messages(msgs)
    dt = time.perf_counter() - t0
    assert view.widget_count() == VIEW_PAGE and dt < 2.0
    assert view.more_button.isVisible()
    view.more_button.click()
    assert view.widget_count() == 2 * VIEW_PAGE
    other = view.widget_for(999)
    renders_before = other.body.renders
    view.begin_stream(5000)
    for word in ["Hello", " there", ", ", "friend", "."]:
        view.stream_delta("answer", word)
    qtbot.waitUntil(lambda: view.widget_for(5000).content == "Hello there, friend.", timeout=2000)
    assert view.flushes >= 1
    view.stream_delta("answer", " Bye.")
    view.end_stream(stats={"tokens": 6, "tokens_per_s": 30.0})
    assert view.widget_for(5000).content == "Hello there, friend. Bye."
    assert other.body.renders == renders_before, "other messages are not re-rendered while streaming"
    assert "30.0 tok/s" in view.widget_for(5000).stats_label.text()


def test_thinking_block_is_collapsible(qtbot):
    view = MessageView()
    qtbot.addWidget(view)
    view.show()
    view.begin_stream(1)
    view.stream_delta("thinking", "Let me think about it.")
    qtbot.waitUntil(lambda: view.widget_for(1).think_button.isVisible(), timeout=2000)
    w = view.widget_for(1)
    assert w.think_button.text() == "Thinking…" and w.think_label.isVisible()
    view.stream_delta("answer", "42")
    view.end_stream(stats={"thinking_s": 3.2})
    assert w.think_button.text() == "Thought for 3 s"
    assert not w.think_label.isVisible()
    w.think_button.click()
    assert w.think_label.isVisible() and "Let me think" in w.think_label.text()


def test_screenshot_of_conversation_with_code_block(qtbot):
    """Messages inserted through the history API, rendered by the real tab."""
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    tab = win.chat_tab
    store = tab.store
    conv = store.create_conversation("Fibonacci in Python")
    store.add_message(conv.id, "user", "Write a memoised Fibonacci in Python and show a few values.")
    store.add_message(conv.id, "assistant", CODE_REPLY, thinking="The user wants memoisation: lru_cache.",
                      stats={"tokens": 142, "tokens_per_s": 38.4, "ttft_s": 0.16, "thinking_s": 2.0})
    tab.conv_model.refresh()
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    tab.open_conversation(conv.id)
    qtbot.wait(50)
    w = tab.view.widget_for(store.messages(conv.id)[1].id)
    assert w is not None and len(w.body.code_blocks()) == 1
    assert w.think_button.text() == "Thought for 2 s"
    assert tab.conv_model.rowCount() == 1
    SHOTS.mkdir(exist_ok=True)
    assert win.grab().save(str(SHOTS / "chat_code_block.png"))
    win.close()


def test_dark_palette_screenshot_keeps_code_readable(qtbot):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    old = app.palette()
    p = QPalette()
    for role, c in ((QPalette.ColorRole.Window, (40, 40, 44)), (QPalette.ColorRole.WindowText, (230, 230, 230)),
                    (QPalette.ColorRole.Base, (30, 30, 32)), (QPalette.ColorRole.AlternateBase, (48, 48, 54)),
                    (QPalette.ColorRole.Text, (230, 230, 230)), (QPalette.ColorRole.Button, (40, 40, 44)),
                    (QPalette.ColorRole.ButtonText, (230, 230, 230)), (QPalette.ColorRole.Link, (110, 170, 255)),
                    (QPalette.ColorRole.PlaceholderText, (150, 150, 150))):
        p.setColor(role, QColor(*c))
    app.setPalette(p)
    try:
        view = MessageView()
        qtbot.addWidget(view)
        view.resize(900, 600)
        view.set_messages([ViewMessage(1, "user", "Show me Fibonacci."),
                           ViewMessage(2, "assistant", CODE_REPLY, "Memoise it.", {"thinking_s": 1.0})])
        view.show()
        qtbot.waitExposed(view)
        block = view.widget_for(2).body.code_blocks()[0]
        assert block.palette().color(QPalette.ColorRole.Window).lightness() < 128
        SHOTS.mkdir(exist_ok=True)
        assert view.grab().save(str(SHOTS / "chat_code_block_dark.png"))
    finally:
        app.setPalette(old)


def test_single_newlines_in_prose_stay_line_breaks(qtbot):
    from PySide6.QtGui import QTextDocument

    from desktop_app.ui.chat.markdown import keep_line_breaks

    poem = "Waves fold on the shore\nsalt wind carries gull voices\nthe tide keeps its time"
    doc = QTextDocument()
    doc.setMarkdown(keep_line_breaks(poem))
    lines = [x for x in doc.toPlainText().replace("\u2028", "\n").split("\n") if x.strip()]
    assert lines == poem.split("\n")
    # tables, headings and paragraphs are left as Markdown means them
    table = "| a | b |\n|---|---|\n| 1 | 2 |"
    assert keep_line_breaks(table) == table
    assert keep_line_breaks("# Title\ntext") == "# Title\ntext"
    assert keep_line_breaks("one\n\ntwo") == "one\n\ntwo"


# --- issue 13: text that looks like HTML, images and links, unclosed fences ---------------------
def _shown(view: MarkdownView) -> str:
    """What a person reads in the view's prose labels (their rich text, as plain text)."""
    from PySide6.QtGui import QTextDocument

    out = []
    for w in view._widgets:
        if not isinstance(w, CodeBlock):
            doc = QTextDocument()
            doc.setHtml(w.text())
            out.append(doc.toPlainText())
    return "\n".join(out)


def test_text_that_looks_like_html_is_shown_as_typed(qtbot):
    typed = "In HTML, what does the <div> tag do? Also is 3 < 5 and <b>bold</b>?"
    view = MarkdownView(typed + "\n\nI typed <think>a thought</think> myself & <script>alert(1)</script>.")
    qtbot.addWidget(view)
    shown = _shown(view)
    assert typed in shown
    assert "<think>a thought</think>" in shown and "<script>alert(1)</script>" in shown and "&" in shown
    # Markdown still renders: emphasis, lists, tables, and inline code keeps its brackets
    view.set_text("**bold** and `<div>` in code\n\n- one\n- two")
    shown = _shown(view)
    assert "bold and <div> in code" in shown and "one" in shown and "**" not in shown


def test_a_message_cannot_make_the_view_load_a_file_or_url(qtbot, tmp_path):
    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(secret)
    view = MarkdownView(f"look ![pic]({secret.as_uri()}) and ![remote](https://example.org/x.png) "
                        f"<img src=\"{secret.as_uri()}\">")
    qtbot.addWidget(view)
    html = view._widgets[0].text()
    assert "<img" not in html.lower()  # nothing for the label to load
    shown = _shown(view)
    assert f"[image: {secret.as_uri()}]" in shown and "[image: https://example.org/x.png]" in shown
    assert '<img src="' in shown  # the raw tag is text


def test_links_open_only_http_and_mailto_on_click():
    from desktop_app.ui.chat.markdown import open_link

    opened = []

    def opener(url):  # QDesktopServices.openUrl in the app: the OS boundary
        opened.append(url)
        return True

    assert open_link("https://example.org/docs", opener) is True
    assert [u.toString() for u in opened] == ["https://example.org/docs"]
    for bad in ("file:///etc/passwd", "javascript:alert(1)", "smb://host/share", "/etc/passwd", "atelier:x"):
        assert open_link(bad, opener) is False
    assert len(opened) == 1
    assert open_link("mailto:a@b.c", opener) and opened[-1].scheme() == "mailto"


def test_a_reply_that_ends_inside_a_code_fence_says_so_once_finished(qtbot):
    from desktop_app.ui.chat.message import MessageWidget

    cut = "Here:\n\n```python\ndef f():\n    return 1"
    w = MessageWidget(1, "assistant")
    qtbot.addWidget(w)
    w.set_content(cut, streaming=True)
    block = w.body.code_blocks()[0]
    assert block.lang_label.text() == "python"  # still streaming: it may yet close
    w.set_content(cut, streaming=False, stats={"tokens": 12, "finish_reason": "length"})
    block = w.body.code_blocks()[0]
    assert "not closed" in block.lang_label.text()
    assert "color" not in block.code_label.text()  # shown plain, not highlighted as a finished block
    w.set_content(cut + "\n```", streaming=False)
    assert w.body.code_blocks()[0].lang_label.text() == "python"


def test_the_conversation_list_shows_dates_and_search_snippets(qtbot):
    from desktop_app.ui.chat.conversations import ConversationDelegate, DetailRole

    store = HistoryStore()
    trip = store.create_conversation("Trip ideas")
    store.add_message(trip.id, "user", "Where should I go in Portugal? I like beaches and old towns with tiles.")
    store.add_message(trip.id, "assistant", "Try Lisbon first, then the Algarve coast for its beaches.")
    store.create_conversation("Other")
    model = ConversationListModel(store)
    assert model.rowCount() == 2
    import re

    assert all(re.fullmatch(r"\d\d:\d\d", model.index(i, 0).data(DetailRole)) for i in range(2))  # used today
    model.set_search("algarve")
    assert model.rowCount() == 1 and model.index(0, 0).data() == "Trip ideas"  # the title stays the title
    assert "Algarve coast" in model.index(0, 0).data(DetailRole)
    from PySide6.QtWidgets import QListView

    view = QListView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.setItemDelegate(ConversationDelegate(view))
    view.resize(260, 200)
    view.show()
    view.setCurrentIndex(model.index(0, 0))
    assert view.sizeHintForRow(0) >= 2 * view.fontMetrics().height()  # two lines per chat
    SHOTS.mkdir(exist_ok=True)
    assert view.grab().save(str(SHOTS / "chat_list_search.png"))


def test_message_actions_show_on_hover_or_focus_and_the_column_keeps_a_readable_width(qtbot):
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QEnterEvent
    from PySide6.QtWidgets import QApplication

    from desktop_app.ui.chat.message import MessageWidget

    w = MessageWidget(7, "assistant", "A reply with **Markdown**.")
    qtbot.addWidget(w)
    w.resize(600, 160)
    w.show()
    qtbot.waitExposed(w)
    assert not w.actions_box.isVisible()  # not three buttons on every message
    QApplication.sendEvent(w, QEnterEvent(QPointF(5, 5), QPointF(5, 5), QPointF(5, 5)))
    assert w.actions_box.isVisible()
    QApplication.sendEvent(w, QEvent(QEvent.Type.Leave))
    assert not w.actions_box.isVisible()
    w.buttons["copy"].setFocus(Qt.FocusReason.TabFocusReason)  # the keyboard reaches them too
    QApplication.sendEvent(w.buttons["copy"], QEvent(QEvent.Type.FocusIn))
    assert w.actions_box.isVisible()

    view = MessageView()
    qtbot.addWidget(view)
    view.resize(1600, 600)
    view.set_messages([ViewMessage(1, "user", "word " * 300), ViewMessage(2, "assistant", "answer " * 300)])
    view.show()
    qtbot.waitExposed(view)
    column = view.widget()
    assert column.width() <= column.maximumWidth() < 1400  # about 100 characters, not 1600 px of text
    assert abs((column.x() + column.width() / 2) - view.viewport().width() / 2) < 20  # centred
    SHOTS.mkdir(exist_ok=True)
    assert view.grab().save(str(SHOTS / "chat_wide_column.png"))
