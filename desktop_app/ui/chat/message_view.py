"""The conversation view: a lazily populated scroll area of message widgets.

* Only the newest ``PAGE`` messages get widgets when a conversation opens; older ones are built
  when the user scrolls to the top (or presses "Show earlier messages"). 1 000 messages open as
  fast as 30.
* Streaming: deltas are buffered and flushed by a 40 ms timer into the one streaming message;
  its body re-renders only the segment that changed. Nothing else is touched.
* The view sticks to the bottom while the user is at the bottom, and stays put when they scrolled up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PySide6.QtCore import QTimer, Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.ui.chat.message import MessageWidget
from desktop_app.ui.widgets.named import named

PAGE = 12  # a screenful and a bit: widgets cost ~3 ms each to build and lay out
FLUSH_MS = 40


@dataclass
class ViewMessage:
    id: int
    role: str
    content: str = ""
    thinking: str = ""
    stats: dict = field(default_factory=dict)
    version: tuple = (0, 1)  # (shown, how many): a regenerated reply's ‹ k/n ›
    params: dict = field(default_factory=dict)

    @property
    def image(self) -> dict | None:
        """An inline image from the Studio (``/imagine``): {path, prompt, seed, …}."""
        img = self.params.get("image")
        return img if isinstance(img, dict) and isinstance(img.get("path"), str) else None

    @property
    def is_imagine(self) -> bool:
        """An /imagine command or its image: never part of what the language model reads."""
        return self.image is not None or self.params.get("command") == "imagine"

    @classmethod
    def of(cls, m) -> "ViewMessage":
        from desktop_app.core.history_versions import position

        return cls(m.id, m.role, m.content, getattr(m, "thinking", "") or "", dict(getattr(m, "stats", {}) or {}),
                   position(m) if getattr(m, "versions", None) else (0, 1), dict(getattr(m, "params", {}) or {}))


class MessageView(QScrollArea):
    action = Signal(str, int)  # (copy|edit|regenerate|delete, message_id)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatMessageView")
        self.setAccessibleName("Conversation")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._inner = named(QWidget(), "chatMessageColumn")
        self._lay = QVBoxLayout(self._inner)
        self._lay.setContentsMargins(12, 8, 12, 8)
        self._lay.setSpacing(8)
        self.more_button = named(QPushButton("Show earlier messages"), "chatShowEarlier", "Show earlier messages")
        self.more_button.setFlat(True)
        self.more_button.clicked.connect(self._on_show_earlier)
        self.more_button.hide()
        self._lay.addWidget(self.more_button)
        self.empty_label = QLabel("Type a message below and press Enter.\nShift+Enter adds a new line; Esc stops.")
        self.empty_label.setObjectName("chatEmptyHint")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self._lay.addWidget(self.empty_label, 1)
        self._lay.addStretch(0)
        self.setWidget(self._inner)
        # a readable line length on wide screens: the column stops at about 100 characters, centred
        self._inner.setMaximumWidth(max(640, self.fontMetrics().horizontalAdvance("x" * 100)))
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter)

        self._messages: list[ViewMessage] = []
        self._widgets: dict[int, MessageWidget] = {}
        self._first_shown = 0  # index in _messages of the oldest message with a widget
        self._stick = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

        # streaming state
        self._stream_id: int | None = None
        self._stream_content = ""
        self._stream_thinking = ""
        self._stream_dirty = False
        self._stream_t0 = 0.0
        self._think_end: float | None = None
        self.flushes = 0
        self._timer = Coalescer(FLUSH_MS, self._on_flush, self, mode="repeat")

    # ------------------------------------------------------------------ whole conversation
    def clear(self) -> None:
        self.stop_stream_timer()
        for w in self._widgets.values():
            self._lay.removeWidget(w)
            w.deleteLater()
        self._widgets.clear()
        self._messages = []
        self._first_shown = 0
        self._stream_id = None
        self.more_button.hide()
        self.empty_label.show()

    def set_messages(self, messages) -> None:
        """Show a conversation (history Message objects or ViewMessages); builds the newest PAGE."""
        self.clear()
        self._messages = [m if isinstance(m, ViewMessage) else ViewMessage.of(m) for m in messages]
        self._first_shown = max(0, len(self._messages) - PAGE)
        insert_at = self._lay.indexOf(self.empty_label)
        for m in self._messages[self._first_shown:]:
            w = self._make(m)
            self._lay.insertWidget(insert_at, w)
            insert_at += 1
        self._after_change()
        self._stick = True
        self._scroll_to_bottom()

    def messages(self) -> list[ViewMessage]:
        return list(self._messages)

    def widget_for(self, message_id: int) -> MessageWidget | None:
        return self._widgets.get(message_id)

    def widget_count(self) -> int:
        return len(self._widgets)

    # ------------------------------------------------------------------ single messages
    def add_message(self, m) -> MessageWidget:
        vm = m if isinstance(m, ViewMessage) else ViewMessage.of(m)
        self._messages.append(vm)
        w = self._make(vm)
        self._lay.insertWidget(self._lay.indexOf(self.empty_label), w)
        self._stick = True
        self._after_change()
        return w

    def update_message(self, message_id: int, content: str) -> None:
        for m in self._messages:
            if m.id == message_id:
                m.content = content
        w = self._widgets.get(message_id)
        if w is not None:
            w.set_content(content, w.thinking)

    def show_version(self, msg) -> None:
        """Show the version of a message the store now holds (its text, thought, stats, ‹ k/n ›)."""
        vm = ViewMessage.of(msg)
        for i, m in enumerate(self._messages):
            if m.id == vm.id:
                self._messages[i] = vm
        w = self._widgets.get(vm.id)
        if w is not None:
            w.set_content(vm.content, vm.thinking, vm.stats)
            w.set_version(*vm.version)

    def remove_message(self, message_id: int) -> None:
        idx = next((i for i, m in enumerate(self._messages) if m.id == message_id), None)
        if idx is None:
            return
        del self._messages[idx]
        if idx < self._first_shown:
            self._first_shown -= 1
        w = self._widgets.pop(message_id, None)
        if w is not None:
            self._lay.removeWidget(w)
            w.deleteLater()
        self._after_change()

    def truncate_after(self, message_id: int, inclusive: bool = False) -> None:
        idx = next((i for i, m in enumerate(self._messages) if m.id == message_id), None)
        if idx is None:
            return
        cut = idx if inclusive else idx + 1
        for m in self._messages[cut:]:
            w = self._widgets.pop(m.id, None)
            if w is not None:
                self._lay.removeWidget(w)
                w.deleteLater()
        del self._messages[cut:]
        self._first_shown = min(self._first_shown, len(self._messages))
        self._after_change()

    # ------------------------------------------------------------------ streaming
    def begin_stream(self, message_id: int) -> MessageWidget:
        """Add an empty assistant message that ``stream_delta`` fills."""
        w = self.add_message(ViewMessage(message_id, "assistant"))
        w.set_content("", "", None, streaming=True)
        self._stream_id = message_id
        self._stream_content = ""
        self._stream_thinking = ""
        self._stream_dirty = False
        self._stream_t0 = time.monotonic()
        self._think_end = None
        self._timer.start()
        return w

    @property
    def streaming_id(self) -> int | None:
        return self._stream_id

    def stream_delta(self, kind: str, text: str) -> None:
        """Buffer a delta (kind: 'answer', 'thinking' or 'reclassify'); the timer renders it."""
        if self._stream_id is None or not text:
            return
        if kind == "thinking":
            self._stream_thinking += text
        elif kind == "reclassify":
            # the text shown as answer so far was a thought (see engines/think.py)
            self._stream_thinking += text
            self._stream_content = ""
        else:
            if self._think_end is None and self._stream_thinking:
                self._think_end = time.monotonic()
            self._stream_content += text
        self._stream_dirty = True

    def end_stream(self, content: str | None = None, thinking: str | None = None, stats: dict | None = None) -> None:
        """Final render of the streamed message (with the engine's final text and stats)."""
        mid = self._stream_id
        self._timer.stop()
        if mid is None:
            return
        if content is not None:
            self._stream_content = content
        if thinking is not None:
            self._stream_thinking = thinking
        stats = dict(stats or {})
        if self._stream_thinking and "thinking_s" not in stats:
            stats["thinking_s"] = (self._think_end or time.monotonic()) - self._stream_t0
        for m in self._messages:
            if m.id == mid:
                m.content, m.thinking, m.stats = self._stream_content, self._stream_thinking, stats
        w = self._widgets.get(mid)
        if w is not None:
            w.set_content(self._stream_content, self._stream_thinking, stats, streaming=False)
        self._stream_id = None
        self._after_change()

    def stop_stream_timer(self) -> None:
        self._timer.stop()

    @Slot()
    def _on_flush(self) -> None:
        if not self._stream_dirty or self._stream_id is None:
            return
        self._stream_dirty = False
        w = self._widgets.get(self._stream_id)
        if w is None:
            return
        secs = (self._think_end or time.monotonic()) - self._stream_t0 if self._stream_thinking else None
        w.set_content(self._stream_content, self._stream_thinking, None, thinking_s=secs, streaming=True)
        self.flushes += 1

    # ------------------------------------------------------------------ internals
    def _make(self, m: ViewMessage) -> MessageWidget:
        w = MessageWidget(m.id, m.role, m.content, m.thinking, m.stats, image=m.image)
        w.set_version(*m.version)
        w.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        w.action.connect(self.action)
        self._widgets[m.id] = w
        return w

    def _after_change(self) -> None:
        self.empty_label.setVisible(not self._messages)
        self.more_button.setVisible(self._first_shown > 0)
        if self._first_shown > 0:
            self.more_button.setText(f"Show earlier messages ({self._first_shown} more)")
        # Regenerate only on the last assistant reply.
        last_assistant = next((m.id for m in reversed(self._messages) if m.role == "assistant"), None)
        for mid, w in self._widgets.items():
            w.set_regenerate_visible(mid == last_assistant)

    @Slot()
    def _on_show_earlier(self) -> None:
        if self._first_shown <= 0:
            return
        bar = self.verticalScrollBar()
        old_max, old_val = bar.maximum(), bar.value()
        start = max(0, self._first_shown - PAGE)
        pos = self._lay.indexOf(self.more_button) + 1
        for m in self._messages[start:self._first_shown]:
            self._lay.insertWidget(pos, self._make(m))
            pos += 1
        self._first_shown = start
        self._stick = False
        self._after_change()
        self._keep = (old_max, old_val)

    def _scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    @Slot(int)
    def _on_scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._stick = value >= bar.maximum() - 24
        if value == 0 and self._first_shown > 0 and bar.maximum() > 0:
            QTimer.singleShot(0, self._on_show_earlier)

    @Slot(int, int)
    def _on_range_changed(self, _lo: int, hi: int) -> None:
        keep = getattr(self, "_keep", None)
        if keep is not None:
            old_max, old_val = keep
            self._keep = None
            self.verticalScrollBar().setValue(old_val + (hi - old_max))
        elif self._stick:
            self.verticalScrollBar().setValue(hi)
