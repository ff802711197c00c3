"""File › Local server: serve the installed chat and image models through the OpenAI API from the running
app (desktop_app/qt/server_bridge.py), with the address, the API key and a live request count.
Starting (imports, binding the port) and stopping run in the background lane, never on the GUI
thread. This machine only by default; another address needs the key (one is generated)."""

from __future__ import annotations

import secrets

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from desktop_app.ui.widgets.named import named
from desktop_app.ui.widgets.throttle import Coalescer

DEFAULT_PORT = 8765


class ServerPanel(QDialog):
    state_changed = Signal(bool)  # serving or not

    def __init__(self, ctx, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from desktop_app.qt.server_bridge import GuiChatWorker, ServerRunner

        self.ctx = ctx
        self.setObjectName("serverPanel")
        self.setWindowTitle("Local server (OpenAI API)")
        from desktop_app.ui.server_images import GuiImageWorker

        self.worker = GuiChatWorker(ctx, self)
        self.images = GuiImageWorker(ctx, self)
        self.runner = ServerRunner(ctx, self.worker, self.images)
        self._op = None
        v = QVBoxLayout(self)
        v.addWidget(QLabel("Other programs on this computer can use Atelier's chat and image models through the "
                           "OpenAI API.\nRequests run on the Chat tab's and the Image Studio's models, one after another."))
        form = QFormLayout()
        self.host_edit = named(QLineEdit("127.0.0.1"), "serverHost", "Address to listen on")
        self.host_edit.setToolTip("127.0.0.1: this computer only. Another address (e.g. 0.0.0.0) needs the API key.")
        self.port_box = named(QSpinBox(), "serverPort", "Port")
        self.port_box.setRange(1024, 65535)
        self.port_box.setValue(DEFAULT_PORT)
        key_row = QHBoxLayout()
        self.key_edit = named(QLineEdit(), "serverKey", "API key")
        self.key_edit.setPlaceholderText("none (this computer only)")
        self.new_key = new_key = named(QPushButton("New key"), "serverNewKey", "Make a new random API key")
        new_key.clicked.connect(lambda: self.key_edit.setText(secrets.token_urlsafe(24)))
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(new_key)
        form.addRow("Address", self.host_edit)
        form.addRow("Port", self.port_box)
        form.addRow("API key", key_row)
        v.addLayout(form)
        self.status = named(QLabel("Not serving."), "serverStatus", "Server status")
        self.status.setWordWrap(True)
        v.addWidget(self.status)
        row = QHBoxLayout()
        row.addStretch(1)
        self.toggle_button = named(QPushButton("Start"), "serverToggle", "Start or stop the local server")
        self.toggle_button.clicked.connect(self.toggle)
        close = named(QPushButton("Close"), "serverClose")
        close.clicked.connect(self.hide)
        row.addWidget(self.toggle_button)
        row.addWidget(close)
        v.addLayout(row)
        self._tick = Coalescer(1000, self._show_count, self, mode="repeat")

    @property
    def serving(self) -> bool:
        return self.runner.running

    @property
    def address(self) -> str:
        return f"http://{self.runner.host}:{self.runner.port}/v1"

    @Slot()
    def toggle(self) -> None:
        if self._op is not None:
            return
        if self.serving:
            self.stop()
        else:
            self.start()

    def start(self, host: str | None = None, port: int | None = None, key: str | None = None):
        host = (host or self.host_edit.text()).strip() or "127.0.0.1"
        port = int(port or self.port_box.value())
        key = (key if key is not None else self.key_edit.text()).strip() or None
        from desktop_app.core.loopback import is_loopback

        if not is_loopback(host) and not key:
            key = secrets.token_urlsafe(24)  # another address: never without a key
            self.key_edit.setText(key)
        self.host_edit.setText(host)
        self.port_box.setValue(port)
        self.toggle_button.setEnabled(False)
        self.status.setText(f"Starting on {host}:{port}…")
        self._op = self.ctx.background.run(lambda _t: self.runner.start(host, port, key),
                                           on_success=lambda _r: self._started(key), on_failure=self._failed)
        return self._op

    def _started(self, key) -> None:
        self._op = None
        self.toggle_button.setEnabled(True)
        self.toggle_button.setText("Stop")
        for w in (self.host_edit, self.port_box, self.key_edit, self.new_key):
            w.setEnabled(False)
        self._tick.start()
        self._show_count()
        self.ctx.status_message.emit(f"Serving the OpenAI API at {self.address}" + (" (API key required)." if key else "."))
        self.state_changed.emit(True)

    def _failed(self, exc) -> None:
        self._op = None
        self.toggle_button.setEnabled(True)
        self.status.setText(str(exc))
        self.state_changed.emit(False)

    def stop(self):
        self._tick.stop()
        self.toggle_button.setEnabled(False)
        self.status.setText("Stopping…")
        self._op = self.ctx.background.run(lambda _t: self.runner.stop(), on_success=lambda _r: self._stopped(),
                                           on_failure=lambda _e: self._stopped())
        return self._op

    def _stopped(self) -> None:
        self._op = None
        self.toggle_button.setEnabled(True)
        self.toggle_button.setText("Start")
        for w in (self.host_edit, self.port_box, self.key_edit, self.new_key):
            w.setEnabled(True)
        self.status.setText("Not serving.")
        self.state_changed.emit(False)

    @Slot()
    def _show_count(self) -> None:
        st = self.runner.state
        if st is None or not self.serving:
            return
        w = self.worker
        busy = f", {st.active} running, {w.pending} waiting" if (st.active or w.pending) else ""
        self.status.setText(f"Serving at {self.address} · {st.requests} request(s) answered{busy}.")

    def shutdown(self) -> None:
        """At quit: stop serving (uvicorn's thread is joined)."""
        self._tick.stop()
        if self.runner.thread is not None:
            self.runner.stop()
