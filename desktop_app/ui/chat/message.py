"""One chat message: role, collapsible "Thought for N s" block, Markdown body, stats, actions."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from desktop_app.ui.chat.markdown import MarkdownView, fill_alternate, small_label
from desktop_app.ui.widgets.named import named

ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}
# Longest text a bubble lays out: a 1 MB paste would stall the GUI thread for seconds in Qt's text
# layout. The rest is kept (Copy, Export, the model and the history get the whole message).
DISPLAY_CHARS = 8_000


def display_text(content: str, limit: int = DISPLAY_CHARS) -> tuple[str, int]:
    """The part of ``content`` shown in the bubble (cut at a line or word end) and how many
    characters are left out."""
    if len(content) <= limit:
        return content, 0
    cut = content.rfind("\n", limit // 2, limit)
    if cut < 0:
        cut = content.rfind(" ", limit // 2, limit)
    if cut < 0:
        cut = limit
    return content[:cut], len(content) - cut


def stats_text(stats: dict) -> str:
    parts = []
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("tokens"):
        parts.append(f"{stats['tokens']} tokens")
    if stats.get("ttft_s") is not None:
        parts.append(f"first token {stats['ttft_s']:.2f} s")
    reason = stats.get("finish_reason") or stats.get("stop_reason")
    if reason in ("cancelled", "stopped"):
        parts.append("stopped")
    elif reason == "crashed":
        parts.append("cut short: the chat engine crashed")
    return " · ".join(parts)


class MessageWidget(QFrame):
    """A message bubble. ``action`` carries (name, message_id): copy, edit, regenerate, delete."""

    action = Signal(str, int)

    def __init__(self, message_id: int, role: str, content: str = "", thinking: str = "",
                 stats: dict | None = None, parent: QWidget | None = None, image: dict | None = None) -> None:
        super().__init__(parent)
        self.message_id = message_id
        self.role = role
        self.setObjectName(f"chatMessage_{role}")
        self.setFrameShape(QFrame.Shape.NoFrame)
        if role == "user":
            fill_alternate(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.setSpacing(4)

        head = QHBoxLayout()
        self.role_label = QLabel(f"<b>{ROLE_NAMES.get(role, role)}</b>")
        self.role_label.setTextFormat(Qt.TextFormat.RichText)
        head.addWidget(self.role_label)
        head.addStretch(1)
        lay.addLayout(head)

        # Reasoning: a collapsible block, collapsed once the thought is over.
        self.think_button = named(QToolButton(), "chatThinkToggle")
        self.think_button.setCheckable(True)
        self.think_button.setAutoRaise(True)
        self.think_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.think_button.setArrowType(Qt.ArrowType.RightArrow)
        self.think_button.setAccessibleName("Show or hide the model's reasoning")
        self.think_button.toggled.connect(self._on_think_toggled)
        self.think_label = named(QLabel(), "chatThinking")
        self.think_label.setTextFormat(Qt.TextFormat.PlainText)
        self.think_label.setWordWrap(True)
        self.think_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.think_label.setAccessibleName("Reasoning")
        small_label(self.think_label)
        self.think_label.setContentsMargins(12, 0, 0, 0)
        self.think_button.hide()
        self.think_label.hide()
        lay.addWidget(self.think_button)
        lay.addWidget(self.think_label)

        self.body = MarkdownView()
        lay.addWidget(self.body)
        self.image = image
        self.image_button = None
        if image is not None:  # an image from the Studio (/imagine): a thumbnail that opens it there
            from desktop_app.ui.chat.inline_image import inline_image_button

            self.image_button = inline_image_button(image, lambda: self.action.emit("open_image", self.message_id))
            lay.addWidget(self.image_button)
        self.clipped_label = named(small_label(QLabel()), "chatMessageClipped")
        self.clipped_label.setWordWrap(True)
        self.clipped_label.hide()
        lay.addWidget(self.clipped_label)

        foot = QHBoxLayout()
        foot.setSpacing(2)
        self.stats_label = named(small_label(QLabel()), "chatMessageStats")
        foot.addWidget(self.stats_label)
        foot.addStretch(1)
        # The message's actions show on hover (or when one of them has the keyboard focus), not
        # on every message at once; their place is kept, so nothing moves.
        self.actions_box = named(QWidget(), "chatMessageActions")
        actions_lay = QHBoxLayout(self.actions_box)
        actions_lay.setContentsMargins(0, 0, 0, 0)
        actions_lay.setSpacing(2)
        policy = self.actions_box.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.actions_box.setSizePolicy(policy)
        self.buttons: dict[str, QToolButton] = {}
        actions = [("copy", "Copy", "Copy this message")]
        if role == "user":
            actions.append(("edit", "Edit", "Edit this message here and send it again (what followed stays as its previous version)"))
        if role == "assistant" and image is None:
            actions.append(("regenerate", "Regenerate", "Generate this reply again"))
            actions.append(("imagine_this", "Imagine this", "Make an image of this reply with the Image Studio's model"))
        actions.append(("delete", "Delete", "Delete this message"))
        for name, text, tip in actions:
            b = QToolButton()
            b.setObjectName(f"chatMsg_{name}")
            b.setText(text)
            b.setAutoRaise(True)
            b.setToolTip(tip)
            b.setAccessibleName(f"{text} message")
            b.clicked.connect(lambda _=False, n=name: self._on_action(n))
            b.installEventFilter(self)
            actions_lay.addWidget(b)
            self.buttons[name] = b
        foot.addWidget(self.actions_box)
        self.actions_box.hide()
        # a regenerated reply's versions: ‹ k/n › (the earlier answers are kept)
        self.version_prev = named(QToolButton(), "chatVersionPrev", "Previous version of this reply")
        self.version_next = named(QToolButton(), "chatVersionNext", "Next version of this reply")
        self.version_label = named(small_label(QLabel()), "chatVersion", "Version of this reply")
        for b, text, act in ((self.version_prev, "‹", "version_prev"), (self.version_next, "›", "version_next")):
            b.setText(text)
            b.setAutoRaise(True)
            b.clicked.connect(lambda _=False, a=act: self.action.emit(a, self.message_id))
        foot.insertWidget(1, self.version_prev)
        foot.insertWidget(2, self.version_label)
        foot.insertWidget(3, self.version_next)
        self.set_version(0, 1)
        lay.addLayout(foot)

        self.content = ""
        self.thinking = ""
        self.streaming = False
        self._auto_opened = False
        self.set_content(content, thinking, stats or {})

    # ------------------------------------------------------------------ content
    def set_content(self, content: str, thinking: str = "", stats: dict | None = None,
                    thinking_s: float | None = None, streaming: bool = False) -> None:
        self.streaming = streaming
        if thinking != self.thinking or (thinking and not streaming):
            first = not self.thinking and thinking
            self.thinking = thinking
            self.think_label.setText(thinking.strip())
            self.think_button.setVisible(bool(thinking.strip()))
            if first and streaming and not content:
                self.think_button.setChecked(True)  # show the thought while it is being written
                self._auto_opened = True
        if thinking:
            secs = thinking_s if thinking_s is not None else (stats or {}).get("thinking_s")
            if streaming and not content:
                self.think_button.setText("Thinking…")
            elif isinstance(secs, (int, float)):
                self.think_button.setText(f"Thought for {max(1, round(secs))} s")
            else:
                self.think_button.setText("Thought")
            if content and self._auto_opened:
                self._auto_opened = False
                self.think_button.setChecked(False)  # the answer started: fold the thought away
        if content != self.content or not self.body.text or streaming != self.body.streaming:
            self.content = content
            shown, hidden = display_text(content)
            self.body.set_text(shown if content or not streaming else "", streaming)
            self.clipped_label.setText(
                f"… {hidden:,} more characters not shown here (Copy copies the whole message; "
                "Export saves it)." if hidden else "")
            self.clipped_label.setVisible(bool(hidden))
        if stats is not None:
            self.stats_label.setText(stats_text(stats))
        for b in self.buttons.values():
            b.setEnabled(not streaming)

    # inline edit --------------------------------------------------------------------------
    def start_edit(self) -> None:
        """Edit in the bubble itself: the text in an editor, Send (Ctrl+Enter) and Cancel (Esc)."""
        from PySide6.QtWidgets import QPlainTextEdit, QPushButton

        if getattr(self, "editor", None) is not None:
            self.editor.setFocus()
            return
        self.editor = named(QPlainTextEdit(self.content), "chatInlineEditor", "Edit the message")
        self.editor.setMinimumHeight(3 * self.fontMetrics().height() + 12)
        send = named(QPushButton("Send"), "chatInlineSend", "Send the edited message (Ctrl+Enter)")
        cancel = named(QPushButton("Cancel"), "chatInlineCancel", "Cancel the edit (Esc)")
        send.clicked.connect(lambda: self.action.emit("edit_send", self.message_id))
        cancel.clicked.connect(self.end_edit)
        self.editor.installEventFilter(self)  # Esc and Ctrl+Enter are the editor's (over the tab's Esc = Stop)
        self.edit_row = QWidget()
        row = QHBoxLayout(self.edit_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        row.addWidget(cancel)
        row.addWidget(send)
        lay = self.layout()
        at = lay.indexOf(self.body)
        lay.insertWidget(at + 1, self.editor)
        lay.insertWidget(at + 2, self.edit_row)
        self.body.hide()
        self.editor.setFocus()

    def edited_text(self) -> str:
        return self.editor.toPlainText() if getattr(self, "editor", None) is not None else self.content

    def end_edit(self) -> None:
        for w in (getattr(self, "editor", None), getattr(self, "edit_row", None)):
            if w is not None:
                w.hide()
                w.deleteLater()
        self.editor = self.edit_row = None
        self.body.show()

    # actions on hover ---------------------------------------------------------------------
    def enterEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.actions_box.show()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if not self.actions_box.isAncestorOf(QApplication.focusWidget()):
            self.actions_box.hide()
        super().leaveEvent(event)

    def _edit_key(self, event) -> str:
        key, mods = event.key(), event.modifiers()
        if key == Qt.Key.Key_Escape:
            return "cancel"
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and mods & Qt.KeyboardModifier.ControlModifier:
            return "send"
        return ""

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is getattr(self, "editor", None) and event.type() in (QEvent.Type.ShortcutOverride,
                                                                     QEvent.Type.KeyPress):
            what = self._edit_key(event)
            if what and event.type() == QEvent.Type.ShortcutOverride:
                event.accept()  # the key comes to the editor, not to a window shortcut
                return True
            if what == "cancel":
                self.end_edit()
                return True
            if what == "send":
                self.action.emit("edit_send", self.message_id)
                return True
            return False
        if event.type() == QEvent.Type.FocusIn:  # Tab reaches an action: they show
            self.actions_box.show()
        elif event.type() == QEvent.Type.FocusOut and not self.underMouse():
            self.actions_box.hide()
        return False

    def set_version(self, index: int, count: int) -> None:
        """‹ k/n › for a reply with several versions; hidden when it has one."""
        many = count > 1
        for w in (self.version_prev, self.version_label, self.version_next):
            w.setVisible(many)
        self.version = (index, count)
        self.version_label.setText(f"{index + 1}/{count}")
        self.version_prev.setEnabled(index > 0)
        self.version_next.setEnabled(index < count - 1)

    def set_regenerate_visible(self, visible: bool) -> None:
        b = self.buttons.get("regenerate")
        if b is not None:
            b.setVisible(visible)

    @Slot(bool)
    def _on_think_toggled(self, on: bool) -> None:
        self.think_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.think_label.setVisible(on)

    def _on_action(self, name: str) -> None:
        if name == "copy":
            QGuiApplication.clipboard().setText(self.content)
        self.action.emit(name, self.message_id)


def warm_render() -> None:
    """Lay out one sample message off-screen while idle: the first real reply then does not pay
    for font matching and the Markdown parser's first use (a visible stall otherwise)."""
    w = MessageWidget(0, "assistant", "**b** *i* `c` [l](https://example.org)\n\n- a\n\n| a |\n|---|\n| b |\n\n"
                      "```\nx\n```", "t")
    w.resize(600, 400)
    w.grab()
    w.deleteLater()
