"""Settings dialog for the options of desktop_app.core.settings (models, hub, network, safety).

The access token is stored through the hub package's token storage (OS keyring when available,
else a 0600 file); the dialog shows only where it is stored, never the token, and never logs it.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.settings import OPTIONS, Settings
from desktop_app.ui.widgets.named import named


def _token_api():
    """The hub package's token storage (get_token/set_token/clear_token/describe_token)."""
    from desktop_app.hub import credentials

    return credentials


class _SettingsEvents(QObject):
    """Process-wide notice that settings were saved (whoever opened the dialog: menu or Models tab)."""

    saved = Signal(object, object)  # the Settings object, list of changed keys


_events: _SettingsEvents | None = None


def settings_events() -> _SettingsEvents:
    global _events
    if _events is None:
        _events = _SettingsEvents()
    return _events


class SettingsDialog(QDialog):
    """Edit models folder, read-only model folders, offline switch, hub endpoint, proxy, token, pickle.

    ``SettingsDialog(ctx)`` (an AppContext: its settings object is edited, and ``library_changed``
    is emitted when model folders change) or ``SettingsDialog(settings)``.
    """

    settings_saved = Signal(object)  # list of changed keys

    def __init__(self, ctx_or_settings=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if isinstance(ctx_or_settings, Settings) or ctx_or_settings is None:
            self.ctx = None
            self.settings = ctx_or_settings or Settings()
        else:
            self.ctx = ctx_or_settings
            self.settings = ctx_or_settings.settings
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.setAccessibleName("Settings")
        self.setMinimumWidth(560)
        self._clear_token = False

        form = QFormLayout()

        # models folder
        self.models_dir_edit = named(QLineEdit(str(self.settings.get("models_dir") or "")), "modelsDirEdit",
                                     "Models folder")
        self.models_dir_edit.setPlaceholderText("Default: the app's data folder")
        self.models_dir_edit.setToolTip(OPTIONS["models_dir"].description)
        browse = named(QPushButton("Browse…"), "modelsDirBrowse", "Choose the models folder")
        browse.clicked.connect(self._on_browse_models_dir)
        row = QHBoxLayout()
        row.addWidget(self.models_dir_edit, 1)
        row.addWidget(browse)
        form.addRow("&Models folder:", self._wrap(row))

        # extra read-only folders
        self.extra_list = named(QListWidget(), "extraModelDirs", "Read-only model folders")
        self.extra_list.setToolTip(OPTIONS["extra_model_dirs"].description)
        self.extra_list.setMaximumHeight(90)
        for d in self.settings.own("extra_model_dirs") or []:  # the policy's own folders are not the user's
            self.extra_list.addItem(str(d))
        add_extra = named(QPushButton("Add…"), "extraDirAdd", "Add a read-only model folder")
        add_extra.clicked.connect(self._on_add_extra_dir)
        rm_extra = named(QPushButton("Remove"), "extraDirRemove", "Remove the selected read-only model folder")
        rm_extra.clicked.connect(self._on_remove_extra_dir)
        col = QVBoxLayout()
        col.addWidget(add_extra)
        col.addWidget(rm_extra)
        col.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.extra_list, 1)
        row.addLayout(col)
        form.addRow("Read-only model folders:", self._wrap(row))

        # offline switch
        self.offline_check = named(QCheckBox("&Offline: block every network call of the app"), "offlineCheck",
                                   "Offline mode")
        self.offline_check.setChecked(bool(self.settings.get("offline")))
        env_forced = os.environ.get("ATELIER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        if env_forced:
            self.offline_check.setChecked(True)
            self.offline_check.setEnabled(False)
            self.offline_check.setToolTip("Forced on by ATELIER_OFFLINE=1 in the environment.")
        else:
            self.offline_check.setToolTip(OPTIONS["offline"].description)
        form.addRow("Network:", self.offline_check)

        # hub endpoint
        self.endpoint_edit = named(QLineEdit(str(self.settings.get("hf_endpoint") or "")), "hubEndpointEdit",
                                   "Hub endpoint")
        self.endpoint_edit.setPlaceholderText(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
        self.endpoint_edit.setToolTip(OPTIONS["hf_endpoint"].description)
        form.addRow("Hub &endpoint:", self.endpoint_edit)

        # proxy
        self.proxy_edit = named(QLineEdit(str(self.settings.get("proxy") or "")), "proxyEdit", "Proxy")
        self.proxy_edit.setPlaceholderText("http://proxy:3128 (empty: none)")
        self.proxy_edit.setToolTip(OPTIONS["proxy"].description)
        form.addRow("&Proxy:", self.proxy_edit)

        # token (masked; the stored value is never read back into the widget)
        self.token_edit = named(QLineEdit(), "tokenEdit", "Hub access token")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("Leave empty to keep the stored token")
        self.token_where = named(QLabel(self._token_description()), "tokenWhere")
        self.token_where.setWordWrap(True)
        clear_tok = named(QPushButton("Clear token"), "tokenClear", "Clear the stored access token")
        clear_tok.clicked.connect(self._on_clear_token)
        row = QHBoxLayout()
        row.addWidget(self.token_edit, 1)
        row.addWidget(clear_tok)
        tok_col = QVBoxLayout()
        tok_col.setContentsMargins(0, 0, 0, 0)
        tok_col.addLayout(row)
        tok_col.addWidget(self.token_where)
        form.addRow("Access &token:", self._wrap(tok_col))

        # pickle
        self.pickle_check = QCheckBox("Allow pickle checkpoints (.ckpt/.pt/.bin): they can run code")
        self.pickle_check.setObjectName("allowPickleCheck")
        self.pickle_check.setAccessibleName("Allow pickle checkpoints")
        self.pickle_check.setToolTip(OPTIONS["allow_pickle"].description)
        self.pickle_check.setChecked(bool(self.settings.get("allow_pickle")))
        form.addRow("Safety:", self.pickle_check)
        self.resume_check = named(QCheckBox("Always &resume interrupted downloads when Atelier starts"),
                                  "autoResumeCheck", "Always resume interrupted downloads",
                                  OPTIONS["downloads_auto_resume"].description)
        self.resume_check.setChecked(bool(self.settings.get("downloads_auto_resume")))
        self.privacy_check = named(QCheckBox("Saved images name the model and LoRA files by their full &path"),
                                   "imagePathsCheck", "Saved images include file paths",
                                   OPTIONS["image_metadata_paths"].description)
        self.privacy_check.setChecked(bool(self.settings.get("image_metadata_paths")))
        form.addRow("Downloads:", self.resume_check)
        form.addRow("Privacy:", self.privacy_check)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.setObjectName("settingsButtons")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        for b in buttons.buttons():
            b.setAccessibleName(b.text().replace("&", ""))

        lay = QVBoxLayout(self)
        self.policy_label = named(QLabel(), "policyLocks")
        self.policy_label.setWordWrap(True)
        self.policy_label.setTextFormat(Qt.TextFormat.PlainText)  # a path from a file: never markup
        lay.addWidget(self.policy_label)
        lay.addLayout(form)
        lay.addWidget(buttons)
        self._show_policy_locks()

    def _show_policy_locks(self) -> None:
        """What the administrator's policy fixes: shown with its value, disabled, and the reason."""
        from desktop_app.core.policy import current

        pol = current()
        widgets = {"offline": self.offline_check, "allow_pickle": self.pickle_check,
                   "hf_endpoint": self.endpoint_edit, "proxy": self.proxy_edit}
        locked = pol.locked()
        for key, w in widgets.items():
            if key not in locked:
                continue
            if isinstance(w, QCheckBox):
                w.setChecked(bool(locked[key]))
            else:
                w.setText(str(locked[key]))
            w.setEnabled(False)
            w.setToolTip(f"Locked. {pol.reason(key)}")
            w.setAccessibleDescription(pol.reason(key))
        lines = []
        if locked:
            lines.append(f"Some settings are fixed by {pol.source}; they are shown greyed out.")
        if pol.error:
            lines.append(f"The policy is not valid, so the most restrictive settings apply: {pol.error}")
        if pol.model_dirs:
            lines.append("Model folders provided by the policy: " + ", ".join(pol.model_dirs))
        self.policy_label.setText("\n".join(lines))
        self.policy_label.setVisible(bool(lines))

    @staticmethod
    def _wrap(layout) -> QWidget:
        w = QWidget()
        layout.setContentsMargins(0, 0, 0, 0)
        w.setLayout(layout)
        return w

    @staticmethod
    def _token_description() -> str:
        try:
            where = _token_api().describe_token()
        except Exception as exc:  # noqa: BLE001 - storage problems must not block the dialog
            where = f"unavailable ({type(exc).__name__})"
        return f"Stored token: {where}."

    # slots ------------------------------------------------------------------------------
    @Slot()
    def _on_browse_models_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir_edit.text())
        if d:
            self.models_dir_edit.setText(d)

    @Slot()
    def _on_add_extra_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Read-only model folder")
        if d:
            self.extra_list.addItem(d)

    @Slot()
    def _on_remove_extra_dir(self) -> None:
        for it in self.extra_list.selectedItems():
            self.extra_list.takeItem(self.extra_list.row(it))

    @Slot()
    def _on_clear_token(self) -> None:
        self._clear_token = True
        self.token_edit.clear()
        self.token_where.setText("Stored token: will be cleared when you save.")

    # saving -----------------------------------------------------------------------------
    def values(self) -> dict:
        return {
            "models_dir": self.models_dir_edit.text().strip(),
            "extra_model_dirs": [self.extra_list.item(i).text() for i in range(self.extra_list.count())],
            "offline": self.offline_check.isChecked() if self.offline_check.isEnabled()
            else bool(self.settings.get("offline")),
            "hf_endpoint": self.endpoint_edit.text().strip().rstrip("/") if self.endpoint_edit.isEnabled()
            else self.settings.get("hf_endpoint"),
            "proxy": self.proxy_edit.text().strip() if self.proxy_edit.isEnabled() else self.settings.get("proxy"),
            "allow_pickle": self.pickle_check.isChecked() if self.pickle_check.isEnabled()
            else bool(self.settings.get("allow_pickle")),
            "downloads_auto_resume": self.resume_check.isChecked(),
            "image_metadata_paths": self.privacy_check.isChecked(),
        }

    def save(self) -> list[str]:
        """Write changed options and the token; returns the changed keys ('token' for the token)."""
        changed = []
        for key, value in self.values().items():
            now = self.settings.own(key) if key == "extra_model_dirs" else self.settings.get(key)
            if now != value:
                self.settings.set(key, value)
                changed.append(key)
        token = self.token_edit.text().strip()
        if token:
            _token_api().set_token(token)
            changed.append("token")
        elif self._clear_token:
            _token_api().clear_token()
            changed.append("token")
        self.token_edit.clear()  # the token does not linger in the widget
        return changed

    def accept(self) -> None:  # noqa: D401 - Qt API
        changed = self.save()
        self.settings_saved.emit(changed)
        settings_events().saved.emit(self.settings, changed)
        if self.ctx is not None:
            if {"models_dir", "extra_model_dirs"} & set(changed):
                self.ctx.library_changed.emit()
            if changed:
                self.ctx.status_message.emit("Settings saved.")
        super().accept()
