"""The Models tab: catalog, hub search, downloads and the local library, plus Settings.

Nothing here touches the network or the disk on the GUI thread: the catalog, the library listing,
hub calls and downloads run in the background (``ctx.background`` and the dedicated
``ctx.model_thread("downloads")``). With the offline switch on, no socket is opened.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from desktop_app.ui.models.catalog_view import CatalogView
from desktop_app.ui.models.downloads_view import DownloadsView
from desktop_app.ui.models.hub_view import HubSearchView
from desktop_app.ui.models.library_view import LibraryView
from desktop_app.ui.models.servers_view import ServersView
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)


class ModelsTab(QWidget):
    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("modelsTab")
        self.setAccessibleName("Models")

        self.catalog = CatalogView(ctx, self)
        self.hub = HubSearchView(ctx, self)
        self.downloads = DownloadsView(ctx, self)
        self.library = LibraryView(ctx, self)
        self.servers = ServersView(ctx, self)

        self.sections = named(QTabWidget(self), "modelsSections", "Models sections")
        self.sections.addTab(self.catalog, "Catalog")
        self.sections.addTab(self.hub, "Hub search")
        self.sections.addTab(self.downloads, "Downloads")
        self.sections.addTab(self.library, "Library")
        self.sections.addTab(self.servers, "Servers")

        self.offline_label = named(QLabel(""), "modelsOfflineLabel")
        self.settings_btn = named(QPushButton("Se&ttings…"), "modelsSettings", "Open the settings")
        self.settings_btn.clicked.connect(self._on_settings_clicked)
        top = QHBoxLayout()
        top.addWidget(self.offline_label, 1)
        top.addWidget(self.settings_btn)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.sections, 1)

        self.catalog.download_requested.connect(self._on_catalog_download)
        self.hub.download_requested.connect(self._on_hub_download)
        self.downloads.queue_changed.connect(self._on_queue_changed)
        from desktop_app.ui.settings_dialog import settings_events

        settings_events().saved.connect(self._on_any_settings_saved)  # also when opened from the File menu
        self._shut_down = False
        self._update_offline_label()

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Called once the window is shown: background loads only, and no network call."""
        self.catalog.start()
        self.library.start()
        self.downloads.start()
        self.servers.start()

    def shutdown(self) -> None:
        self._shut_down = True
        from desktop_app.ui.settings_dialog import settings_events

        try:
            settings_events().saved.disconnect(self._on_any_settings_saved)
        except (RuntimeError, TypeError):
            pass
        for view in (self.catalog, self.hub, self.library, self.downloads, self.servers):
            try:
                view.shutdown()
            except Exception:  # noqa: BLE001
                log.exception("models view shutdown failed")

    # routing -----------------------------------------------------------------------------
    @Slot(object)
    def _on_catalog_download(self, entry) -> None:
        self.downloads.enqueue_catalog_entry(entry)
        self.sections.setCurrentWidget(self.downloads)

    def download_entry(self, entry) -> str | None:
        """Download a catalog entry chosen elsewhere (the welcome page): its licence is accepted
        first when it needs to be, as in the Catalog."""
        if not self.catalog.accept_licence(entry):
            self.downloads.say(f"Download of {entry.family} cancelled: the licence was not accepted.")
            self.sections.setCurrentWidget(self.downloads)
            return None
        job = self.downloads.enqueue_catalog_entry(entry)
        self.sections.setCurrentWidget(self.downloads)
        return job

    @Slot(object)
    def _on_hub_download(self, spec) -> None:
        self.downloads.enqueue_spec(spec)
        self.sections.setCurrentWidget(self.downloads)

    @Slot(int)
    def _on_queue_changed(self, active: int) -> None:
        i = self.sections.indexOf(self.downloads)
        self.sections.setTabText(i, f"Downloads ({active})" if active else "Downloads")

    # settings ----------------------------------------------------------------------------
    def settings_dialog(self):
        from desktop_app.ui.settings_dialog import SettingsDialog

        return SettingsDialog(self.ctx, self)

    @Slot()
    def _on_settings_clicked(self) -> None:
        self.settings_dialog().exec()

    @Slot(object, object)
    def _on_any_settings_saved(self, settings, changed) -> None:
        if settings is self.ctx.settings and not self._shut_down:
            self._on_settings_saved(changed)

    def _on_settings_saved(self, changed) -> None:
        self._update_offline_label()
        self.catalog.update_offline_state()
        if "extra_model_dirs" in changed and self.ctx.settings.get("extra_model_dirs"):
            self.library.register_folders(self.ctx.settings.get("extra_model_dirs"))
        if "offline" in changed:
            self.servers.show_list()  # a server outside this computer is blocked, or no longer
            self.ctx.remotes_changed.emit()
            self.downloads.offline_changed()  # an "offline" note goes when it is no longer true
            if not self.ctx.settings.offline:
                self.downloads.start_runner()  # jobs that waited while offline resume now

    def _update_offline_label(self) -> None:
        from desktop_app.core.policy import current

        pol = current()
        if pol.offline:  # the administrator's offline: the hub is not only off, it is hidden
            self.sections.setTabVisible(self.sections.indexOf(self.hub), False)
            self.offline_label.setText(f"Offline, as set by {pol.source}: the hub is hidden. Catalog and library "
                                       "work as usual.")
        elif self.ctx.settings.offline:
            self.offline_label.setText("Offline mode: the hub is not contacted. Catalog and library work as usual.")
        else:
            self.offline_label.setText(f"Hub: {self.ctx.settings.hf_endpoint} (contacted only when you ask)")
