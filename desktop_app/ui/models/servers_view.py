"""Models › Servers: the team servers whose models Atelier uses (vLLM, llama.cpp's server,
Ollama, another Atelier's ``atelier serve``). Add a server (a name, a base URL, an optional API
key: it goes to the keyring), remove one, refresh one (Retry). Each server shows its models with
a "remote" badge, or why it could not be reached. Every call to a server runs in the background
lane (a short connect timeout: an unreachable one is a clear state at once), and only when the
user asks: the list shown at start-up is the one kept from the last time (core/remotes)."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTreeWidget,
    QTreeWidgetItem, QVBoxLayout, QWidget,
)

from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)


class AddServerDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a server")
        form = QFormLayout(self)
        self.name_edit = named(QLineEdit(), "serverName", "Server name", "A short name, e.g. team-gpu")
        self.url_edit = named(QLineEdit(), "serverUrl", "Base URL", "e.g. http://gpu-box:8000/v1")
        self.url_edit.setPlaceholderText("http://host:8000/v1")
        self.key_edit = named(QLineEdit(), "serverApiKey", "API key (optional)",
                              "Kept in the system keyring, never in the settings file")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("none")
        form.addRow("Name", self.name_edit)
        form.addRow("Base URL", self.url_edit)
        form.addRow("API key", self.key_edit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[str, str, str | None]:
        return self.name_edit.text().strip(), self.url_edit.text().strip(), self.key_edit.text().strip() or None


class ServersView(QWidget):
    changed = Signal()  # the list was shown again (tests)

    def __init__(self, ctx, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._shut = False
        v = QVBoxLayout(self)
        intro = QLabel("Use the models of a team server that speaks the OpenAI API (vLLM, llama.cpp's server, "
                       "Ollama, another Atelier). Its models appear in the Chat tab's picker with a \"remote\" badge. "
                       "Offline mode blocks every server outside this computer.")
        intro.setWordWrap(True)
        v.addWidget(intro)
        self.tree = named(QTreeWidget(), "serversList", "Team servers and their models")
        self.tree.setHeaderLabels(["Server / model", "Address / kind", "State"])
        self.tree.setRootIsDecorated(True)
        self.tree.setColumnWidth(0, 280)
        self.tree.setColumnWidth(1, 320)
        v.addWidget(self.tree, 1)
        self.status = named(QLabel(""), "serversStatus", "Servers status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.status)
        row = QHBoxLayout()
        self.add_button = named(QPushButton("Add a server…"), "serversAdd", "Add a team server")
        self.refresh_button = named(QPushButton("Refresh"), "serversRefresh",
                                    "Ask the selected server (or all) for its models again")
        self.remove_button = named(QPushButton("Remove"), "serversRemove", "Remove the selected server")
        self.add_button.clicked.connect(self._on_add_clicked)
        self.refresh_button.clicked.connect(lambda: self.refresh(self.selected_server()))
        self.remove_button.clicked.connect(self._on_remove_clicked)
        row.addWidget(self.add_button)
        row.addWidget(self.refresh_button)
        row.addWidget(self.remove_button)
        row.addStretch(1)
        v.addLayout(row)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self.show_list()

    def shutdown(self) -> None:
        self._shut = True

    def _run(self, fn, done, what: str) -> None:
        def failed(exc):
            if not self._shut:
                self.status.setText(f"⚠ {exc}")
                self._set_busy(False)

        self._set_busy(True)
        self.status.setText(what)
        self.ctx.background.run(lambda _t: fn(), on_success=lambda r: None if self._shut else done(r),
                                on_failure=failed)

    def _set_busy(self, busy: bool) -> None:
        for b in (self.add_button, self.refresh_button, self.remove_button):
            b.setEnabled(not busy)

    # ------------------------------------------------------------------ the list (no network)
    def show_list(self, say: str = "") -> None:
        """The servers and the models each listed last time (reads two small files, off the GUI
        thread); ``say``: the status line to show with it."""
        settings = self.ctx.settings

        def read():
            from desktop_app.core.remotes import cached_models, list_servers

            return list_servers(settings), cached_models(), bool(settings.offline)

        self._run(read, lambda result: self._fill(result, say), "")

    def _fill(self, result, say: str = "") -> None:
        from desktop_app.core.remotes import blocked_offline

        servers, cache, offline = result
        self._set_busy(False)
        self.tree.clear()
        for s in servers:
            e = cache.get(s["name"]) or {}
            blocked = blocked_offline(s["url"], offline)
            n = len(e.get("chat") or []) + len(e.get("image") or [])
            if blocked:
                state = "blocked: offline mode is on, and this server is outside this computer"
            elif e.get("error"):
                state = f"unreachable: {e['error']}"
            elif e.get("checked") is None:
                state = "not asked yet: Refresh"
            else:
                state = f"{n} model(s)"
            top = QTreeWidgetItem([s["name"], s["url"], state])
            top.setData(0, Qt.ItemDataRole.UserRole, s["name"])
            top.setToolTip(2, state)
            for task in ("chat", "image"):
                for m in e.get(task) or []:
                    child = QTreeWidgetItem([m, f"{task} · remote", ""])
                    child.setData(0, Qt.ItemDataRole.UserRole, s["name"])
                    top.addChild(child)
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        if not servers:
            self.status.setText("No servers yet. Add one with \"Add a server…\".")
        elif say:
            self.status.setText(say)
        self.changed.emit()

    def selected_server(self) -> str | None:
        item = self.tree.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    # ------------------------------------------------------------------ what the user asks
    @Slot()
    def _on_add_clicked(self) -> None:
        dlg = AddServerDialog(self)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.add(*dlg.values())

    def add(self, name: str, url: str, api_key: str | None = None) -> None:
        """Save the server (the key to the keyring), then ask it for its models."""
        settings = self.ctx.settings

        def work():
            from desktop_app.core.remotes import add_server, refresh

            entry = add_server(name, url, api_key, settings=settings)
            return entry, refresh(entry["name"], settings=settings)

        self._run(work, self._after_refresh, f"Adding {name} and asking it for its models…")

    def refresh(self, name: str | None = None) -> None:
        """Ask ``name`` (or every server) for its models again: the Retry of an unreachable one."""
        settings = self.ctx.settings

        def work():
            from desktop_app.core.remotes import list_servers, refresh

            names = [name] if name else [s["name"] for s in list_servers(settings)]
            out = [refresh(n, settings=settings) for n in names]
            return None, (out[-1] if len(out) == 1 else {"error": None, "many": len(out)})

        self._run(work, self._after_refresh, "Asking the server(s) for their models…")

    def _after_refresh(self, result) -> None:
        entry, listed = result
        self.ctx.remotes_changed.emit()
        if listed.get("many") is not None:
            text = f"Asked {listed['many']} server(s)."
        elif listed.get("error"):
            text = f"⚠ {listed['error']}"
        else:
            n = len(listed.get("chat") or []) + len(listed.get("image") or [])
            text = (f"Added {entry['name']}: " if entry else "") + f"{n} model(s) listed."
        self.show_list(say=text)

    @Slot()
    def _on_remove_clicked(self) -> None:
        name = self.selected_server()
        if name:
            self.remove(name)

    def remove(self, name: str) -> None:
        settings = self.ctx.settings

        def work():
            from desktop_app.core.remotes import remove_server

            remove_server(name, settings=settings)
            return name

        def done(_r):
            self.ctx.remotes_changed.emit()
            self.show_list()

        self._run(work, done, f"Removing {name}…")
