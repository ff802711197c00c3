"""The Chat tab's two status panels: the notices above the messages (plan warning, reply and
history notices) and the status row under them (load progress, generation speed, TTFT, context
meter). They lay out and show; the tab decides what to say."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QVBoxLayout, QWidget

from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.ui.widgets.named import named


def truncation_text(v: dict) -> str:
    """What the overflow policy left out of a reply (``Truncation.to_dict()``), in a sentence."""
    n = v.get("dropped_messages", 0)
    if not n:
        return v.get("notice", "The conversation was shortened to fit the model's context.")
    s, verb = ("s", "were") if n != 1 else ("", "was")
    text = f"{n} earlier message{s} no longer fit the model's context and {verb} left out of this reply."
    if v.get("truncated_index") is not None:
        text += f" A long message was also shortened by {v.get('removed_chars', 0):,} characters."
    return text


class ChatNotices(QWidget):
    """The fit plan's warning and the notices of the current chat. Notices of one reply add up
    (old turns left out, then the length limit); a sticky one (history off or recovered) stays
    until the app closes: switching chats keeps it."""

    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.plan_warning = named(QLabel(), "chatPlanWarning")
        self.plan_warning.setWordWrap(True)
        self.plan_warning.hide()
        v.addWidget(self.plan_warning)
        self.notice = named(QLabel(), "chatNotice")
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.notice, 1)
        self.retry_button = named(QPushButton("Retry"), "chatRetry", "Retry loading the model")
        self.retry_button.hide()
        self.retry_button.clicked.connect(lambda: (self.retry_button.hide(), self.retry_requested.emit()))
        row.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignTop)
        v.addLayout(row)
        self._lines: list[str] = []
        self._sticky: list[str] = []

    def show_notice(self, text: str, error: bool = False, sticky: bool = False, retry: bool = False) -> None:
        """``retry``: with a Retry button (a model or a team server that could not be reached)."""
        self.retry_button.setVisible(retry or not self.retry_button.isHidden())
        line = ("⚠ " if error else "ℹ ") + text
        if sticky:
            self._sticky = [n for n in self._sticky if n != line] + [line]
        self._lines = [n for n in self._lines if n != line] + [line]
        self.notice.setText("\n".join(self._lines))
        self.notice.show()

    def clear_notices(self) -> None:
        """Drop this chat's notices; the sticky ones stay."""
        self.retry_button.hide()
        self._lines = list(self._sticky)
        if self._lines:
            self.notice.setText("\n".join(self._lines))
            self.notice.show()
            return
        self.notice.hide()
        self.notice.clear()

    def show_plan(self, info: dict, has_gpu: bool) -> None:
        """Never a silent CPU fallback: say where the model runs when it is not all on the GPU."""
        plan = info.get("plan")
        if plan not in ("cpu", "partial"):
            self.plan_warning.hide()
            return
        note = info.get("plan_note") or ""
        if plan == "cpu" and not has_gpu:
            text = "Running on the CPU: this machine has no usable GPU."
        elif plan == "cpu":
            text = f"⚠ This model does not fit the GPU: running on the CPU, much slower. {note}".strip()
        else:
            text = f"⚠ Partial GPU offload: some layers run on the CPU, slower than full GPU. {note}".strip()
        self.plan_warning.setText(text)
        self.plan_warning.setProperty("severity", "warning" if has_gpu else "info")
        self.plan_warning.show()


class ChatStatusRow(QWidget):
    """Load progress (with Cancel), what the model is doing, TTFT and the context meter.

    While a reply streams, the speed is shown four times a second from the deltas counted here."""

    cancel_load_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        status = QHBoxLayout(self)
        status.setContentsMargins(0, 0, 0, 0)
        self.load_bar = named(QProgressBar(), "chatLoadBar", "Model loading progress")
        self.load_bar.setRange(0, 100)
        self.load_bar.setFormat("Loading model… %p%")
        self.load_bar.setMaximumWidth(260)
        self.load_bar.hide()
        self.cancel_load_button = named(QToolButton(), "chatCancelLoad")
        self.cancel_load_button.setText("Cancel")
        self.cancel_load_button.setAccessibleName("Cancel model loading")
        self.cancel_load_button.hide()
        self.cancel_load_button.clicked.connect(self.cancel_load_requested)
        self.status_label = named(QLabel(""), "chatStatus", "Chat status")
        self.ttft_label = named(QLabel(""), "chatTtft")
        self.ctx_meter = named(QProgressBar(), "chatContextMeter", "Context used")
        self.ctx_meter.setMinimumWidth(190)
        self.ctx_meter.setMaximumWidth(240)
        self.ctx_meter.setToolTip("Tokens of the model's context used by this conversation")
        self.set_context(0, 0)
        status.addWidget(self.load_bar)
        status.addWidget(self.cancel_load_button)
        status.addWidget(self.status_label, 1)
        status.addWidget(self.ttft_label)
        status.addWidget(self.ctx_meter)
        self._timer = Coalescer(250, self._on_tick, self, mode="repeat")
        self._t0 = 0.0
        self.first_delta_at: float | None = None
        self._deltas = 0
        self.loading = lambda: False  # the tab says whether a load runs before the reply

    # ---------------------------------------------------------------- loading
    def show_loading(self, name: str | None = None) -> None:
        if name:
            self.load_bar.setFormat(f"Loading {name}… %p%")
        self.load_bar.setValue(0)
        self.load_bar.show()
        self.cancel_load_button.show()

    def set_load_progress(self, fraction: float) -> None:
        self.load_bar.setValue(int(100 * fraction))

    def hide_loading(self) -> None:
        self.load_bar.hide()
        self.cancel_load_button.hide()

    # ---------------------------------------------------------------- a reply
    def reply_started(self) -> None:
        self._t0 = time.monotonic()
        self.first_delta_at = None
        self._deltas = 0
        self.status_label.setText("generating…")
        self.ttft_label.setText("")
        self._timer.start()

    def delta(self) -> None:
        if self.first_delta_at is None:
            self.first_delta_at = time.monotonic()
            self.ttft_label.setText(f"TTFT {self.first_delta_at - self._t0:.2f} s")
        self._deltas += 1

    def reply_stopped(self) -> None:
        self._timer.stop()

    def _on_tick(self) -> None:
        if self.first_delta_at is None:
            if not self.loading():
                self.status_label.setText("generating… (reading the prompt)")
            return
        dt = time.monotonic() - self.first_delta_at
        rate = (self._deltas - 1) / dt if dt > 0.2 and self._deltas > 1 else 0.0
        self.status_label.setText(f"generating… {rate:.0f} tok/s" if rate else "generating…")

    def reply_ended(self, stats: dict) -> None:
        """The reply's figures: speed and tokens, or how it ended; TTFT; context used."""
        self.reply_stopped()
        fr = stats.get("finish_reason")
        if stats.get("tokens_per_s"):
            self.status_label.setText(f"{stats['tokens_per_s']:.1f} tok/s · {stats.get('tokens', 0)} tokens"
                                      + (" · stopped" if fr == "cancelled" else ""))
        elif fr == "cancelled":
            self.status_label.setText("Stopped")
        elif fr == "error":
            self.status_label.setText("")
        elif fr == "crashed":
            self.status_label.setText("The chat engine crashed")
        if stats.get("ttft_s") is not None:
            self.ttft_label.setText(f"TTFT {stats['ttft_s']:.2f} s")
        if stats.get("n_ctx"):
            self.set_context(stats.get("context_used", 0), stats["n_ctx"])

    def clear_reply(self, messages=()) -> None:
        """Another chat is shown: no speed or TTFT of a reply it did not get; its context meter from
        its last reply's figures when they are known ("context –" otherwise)."""
        self.reply_stopped()
        self.first_delta_at = None
        self.status_label.setText("")
        self.ttft_label.setText("")
        last = next((m.stats for m in reversed(list(messages)) if m.role == "assistant" and m.stats), {})
        self.set_context(int(last.get("context_used") or 0), int(last.get("n_ctx") or 0))

    def set_context(self, used: int, total: int) -> None:
        if total:
            self.ctx_meter.setRange(0, total)
            self.ctx_meter.setValue(min(used, total))
            self.ctx_meter.setFormat(f"context {used}/{total}")
        else:
            self.ctx_meter.setRange(0, 1)
            self.ctx_meter.setValue(0)
            self.ctx_meter.setFormat("context –")

    def stop_timers(self) -> None:
        self._timer.stop()
