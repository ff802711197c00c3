"""Catalog view: the curated catalog with fit badges for this machine, filters, download, refresh;
as model cards (ui/models/cards.py) or as the table (the list view), one filter and one selection.

Data flow: the catalog JSON is read and every entry's fit is computed off the GUI thread
(``ctx.background``) once ``ctx.hardware`` is known; the table model only holds the results.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtWidgets import QButtonGroup, QStackedWidget, QToolButton
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_app.hub.catalog import PLAN_ORDER
from desktop_app.ui.models.common import (
    RowTableModel,
    badge_brush_color,
    badge_kind,
    error_text,
    highlight_tint,
    human_size,
    licence_box,
)
from desktop_app.ui.models.cards import CardView
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)

TASK_LABELS = {"chat": "Chat", "image": "Image", "upscale": "Upscale", "background_removal": "Background removal"}
SPEED_ORDER = {"fast": 0, "ok": 1, "": 1, "slow": 2, "very slow": 3}


def machine_order(v) -> tuple:
    """Per machine: by task, then where it runs (all on the GPU first; partial, offloaded, slow and
    too large below), this machine's best file of each family first, then by family and size."""
    task = list(TASK_LABELS).index(v.entry.task) if v.entry.task in TASK_LABELS else 9
    plan = getattr(v.fit, "plan", "")
    return (task, -PLAN_ORDER.get(plan, -2), SPEED_ORDER.get(getattr(v.fit, "speed", ""), 1) if plan == "cpu" else 0,
            not v.recommended, v.entry.family.lower(), v.entry.size_bytes)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 2


class CatalogRow:
    """One table row: a catalog entry, its fit on this machine (None until computed), flags."""

    __slots__ = ("entry", "fit", "recommended", "installed")

    def __init__(self, entry: Any, fit: Any = None, recommended: bool = False, installed: bool = False) -> None:
        self.entry = entry
        self.fit = fit
        self.recommended = recommended
        self.installed = installed


class CatalogTableModel(RowTableModel):
    COLUMNS = ("Model", "Fit on this machine", "Task", "Quantization", "Size", "Licence", "Context", "Params")
    COL_NAME, COL_FIT, COL_TASK, COL_QUANT, COL_SIZE, COL_LICENSE, COL_CTX, COL_PARAMS = range(8)

    rows: list[CatalogRow]

    def row_at(self, row: int) -> CatalogRow:
        return self.rows[row]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        e = r.entry
        c = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if c == self.COL_NAME:
                name = e.family
                if r.installed:
                    name += "  ✓ installed"
                if r.recommended:
                    name += "  ★ best"
                return name
            if c == self.COL_TASK:
                return TASK_LABELS.get(e.task, e.task)
            if c == self.COL_QUANT:
                return e.quantization or ("diffusers" if e.format == "diffusers" else e.format)
            if c == self.COL_SIZE:
                return human_size(e.size_bytes, approx=not e.size_exact) if e.size_bytes else "—"
            if c == self.COL_LICENSE:
                lic = e.license or "—"
                return lic + (" (gated)" if e.gated else "")
            if c == self.COL_CTX:
                return f"{e.context_length:,}" if e.context_length else "—"
            if c == self.COL_PARAMS:
                return e.params or "—"
            if c == self.COL_FIT:
                if e.needs_server:
                    return "Needs a server"
                return r.fit.badge if r.fit is not None else "…"
        if role == SORT_ROLE:
            # floats, not ints: Python ints become int or qlonglong depending on their size, and
            # Qt 6.11 does not order a mix of the two (sizes above 2 GiB sorted wrongly).
            if c == self.COL_SIZE:
                return float(e.size_bytes or 0)
            if c == self.COL_CTX:
                return float(e.context_length or 0)
            if c == self.COL_PARAMS:
                return float(e.params_b or 0.0)
            if c == self.COL_FIT:
                return -PLAN_ORDER.get(getattr(r.fit, "plan", ""), -2)
            return str(self.data(index, Qt.ItemDataRole.DisplayRole) or "").lower()
        if role == ENTRY_ROLE:
            return r
        if role == Qt.ItemDataRole.ToolTipRole:
            if c == self.COL_SIZE:
                src = f"\nSource: {e.size_source}" if e.size_source else ""
                kind = "exact" if e.size_exact else "approximate (exact size fetched at download or refresh)"
                return f"{e.size_bytes:,} bytes, {kind}{src}" if e.size_bytes else "Size unknown"
            if c == self.COL_LICENSE:
                return (e.license_url or e.license or "") + (
                    "\nYou must read and accept this licence before downloading." if e.needs_acceptance else "")
            if c == self.COL_FIT:
                if e.needs_server:
                    return "Too big for a desktop: run it on a server (e.g. a multi-GPU machine)."
                if r.recommended and c == self.COL_FIT:
                    return "The best quantization of this family for this machine."
                if r.fit is not None and r.fit.estimated_bytes:
                    return f"Estimated memory: {human_size(r.fit.estimated_bytes)}"
            return e.description or e.repo_id
        if role == Qt.ItemDataRole.BackgroundRole:
            if c == self.COL_FIT:
                kind = "server" if e.needs_server else badge_kind(r.fit)
                if kind != "unknown":
                    return badge_brush_color(kind)
            if r.recommended:
                return highlight_tint()
        if role == Qt.ItemDataRole.FontRole and r.recommended and c == self.COL_NAME:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return str(self.data(index, Qt.ItemDataRole.DisplayRole))
        return None


class CatalogFilterProxy(QSortFilterProxyModel):
    """Filters: task, free text, fits my machine. Sorting uses SORT_ROLE (sizes sort numerically)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.task = ""
        self.text = ""
        self.fits_only = False
        self.setSortRole(SORT_ROLE)

    def set_filters(self, task: str | None = None, text: str | None = None, fits_only: bool | None = None) -> None:
        begin = getattr(self, "beginFilterChange", None)  # Qt >= 6.9 (invalidateFilter is deprecated)
        if begin is not None:
            begin()
        if task is not None:
            self.task = task
        if text is not None:
            self.text = text.strip().lower()
        if fits_only is not None:
            self.fits_only = fits_only
        if begin is not None:
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row, source_parent) -> bool:  # noqa: N802 - Qt API
        r: CatalogRow = self.sourceModel().row_at(source_row)
        e = r.entry
        if self.task and e.task != self.task:
            return False
        if self.text:
            hay = f"{e.family} {e.repo_id} {e.quantization} {e.description} {e.license} {e.params}".lower()
            if not all(word in hay for word in self.text.split()):
                return False
        if self.fits_only:
            if e.needs_server or r.fit is None or not r.fit.fits:
                return False
        return True


class CatalogView(QWidget):
    """The catalog table with its filter bar and actions."""

    download_requested = Signal(object)  # CatalogEntry (licence already accepted)

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("catalogView")
        self.catalog = None
        self._load_op = None
        self._refresh_op = None
        self._accepted_licences: set[str] = set()

        self.task_combo = named(QComboBox(), "catalogTaskFilter", "Filter by task")
        self.task_combo.addItem("All tasks", "")
        for key, label in TASK_LABELS.items():
            self.task_combo.addItem(label, key)
        self.task_combo.currentIndexChanged.connect(self._on_filters_changed)

        self.search_edit = named(QLineEdit(), "catalogTextFilter", "Filter the catalog by text")
        self.search_edit.setPlaceholderText("Filter: name, family, quantization…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_filters_changed)

        self.fits_check = named(QCheckBox("Fits my machine"), "catalogFitsFilter",
                                "Show only models that fit this machine")
        self.fits_check.toggled.connect(self._on_filters_changed)

        self.model = CatalogTableModel(self)
        self.proxy = CatalogFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = named(QTableView(), "catalogTable", "Model catalog")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(False)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hdr.setSectionResizeMode(CatalogTableModel.COL_NAME, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table.doubleClicked.connect(self._on_download_clicked)
        self.cards = CardView()
        self.cards.setModel(self.proxy)
        self.cards.setSelectionModel(self.table.selectionModel())  # one selection for both views
        self.cards.doubleClicked.connect(self._on_download_clicked)
        self.views = QStackedWidget()
        self.views.addWidget(self.cards)
        self.views.addWidget(self.table)
        self.view_buttons = QButtonGroup(self)
        self.cards_btn = named(QToolButton(), "catalogCardsView", "Show the catalog as cards")
        self.list_btn = named(QToolButton(), "catalogListView", "Show the catalog as a list")
        for i, (b, text) in enumerate(((self.cards_btn, "Cards"), (self.list_btn, "List"))):
            b.setText(text)
            b.setCheckable(True)
            self.view_buttons.addButton(b, i)
        self.cards_btn.setChecked(True)
        self.view_buttons.idClicked.connect(self.views.setCurrentIndex)

        self.download_btn = named(QPushButton("&Download"), "catalogDownload", "Download the selected model")
        self.download_btn.setEnabled(False)
        self.download_btn.clicked.connect(self._on_download_clicked)
        self.refresh_btn = named(QPushButton("Refresh sizes from hub"), "catalogRefresh",
                                 "Refresh exact sizes and checksums from the hub")
        self.refresh_btn.clicked.connect(self._on_refresh_clicked)

        self.details = named(QLabel(""), "catalogDetails")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.PlainText)
        self.message = named(QLabel("Loading the catalog…"), "catalogMessage")
        self.message.setWordWrap(True)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Task:"))
        bar.addWidget(self.task_combo)
        bar.addWidget(self.search_edit, 1)
        bar.addWidget(self.fits_check)
        bar.addWidget(self.cards_btn)
        bar.addWidget(self.list_btn)
        actions = QHBoxLayout()
        actions.addWidget(self.details, 1)
        actions.addWidget(self.refresh_btn)
        actions.addWidget(self.download_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.views, 1)
        lay.addLayout(actions)
        lay.addWidget(self.message)

        self.ctx.hardware_ready.connect(self._on_hardware_ready)
        self.ctx.library_changed.connect(self._on_library_changed)

    # loading -----------------------------------------------------------------------------
    def start(self) -> None:
        self.reload()
        self.update_offline_state()

    def reload(self) -> None:
        """(Re)load the catalog and compute fits in the background (fits only once hardware is known)."""
        hw = self.ctx.hardware
        library = self.ctx.library

        def work(token):
            from desktop_app.hub.catalog import load_catalog

            cat = load_catalog()
            try:
                installed = {r.id for r in library.list()}
            except Exception:  # noqa: BLE001 - an unreadable library must not hide the catalog
                installed = set()
            if hw is None:
                return cat, [CatalogRow(e, None, False, e.record_id in installed) for e in cat.entries]
            views = sorted(cat.view(hw, installed_ids=installed), key=machine_order)
            token.raise_if_cancelled()
            return cat, [CatalogRow(v.entry, v.fit, v.recommended, v.installed) for v in views]

        self._load_op = self.ctx.background.run(work, on_success=self._on_loaded, on_failure=self._on_load_failed)

    @Slot(object)
    def _on_loaded(self, result) -> None:
        self.catalog, rows = result
        self.model.set_rows(rows)
        n = len(rows)
        if self.ctx.hardware is None:
            self.message.setText(f"{n} catalog entries. Computing fit badges once the hardware is detected…")
        else:
            fits = sum(1 for r in rows if r.fit is not None and r.fit.fits)
            self.message.setText(f"{n} catalog entries; {fits} fit this machine ({self.ctx.hardware.summary()}). "
                                 "★ best: the quantization pre-selected for each family on this machine.")
        self._on_selection_changed()

    @Slot(object)
    def _on_load_failed(self, exc) -> None:
        self.message.setText(f"Could not load the catalog: {error_text(exc)}")

    @Slot(object)
    def _on_hardware_ready(self, _hw) -> None:
        self.reload()

    @Slot()
    def _on_library_changed(self) -> None:
        if self.catalog is not None:
            self.reload()

    # filters -----------------------------------------------------------------------------
    @Slot()
    def _on_filters_changed(self, *_args) -> None:
        self.proxy.set_filters(task=self.task_combo.currentData() or "", text=self.search_edit.text(),
                               fits_only=self.fits_check.isChecked())

    def visible_rows(self) -> list[CatalogRow]:
        return [self.proxy.data(self.proxy.index(i, 0), ENTRY_ROLE) for i in range(self.proxy.rowCount())]

    def sort_by_size(self, ascending: bool = True) -> None:
        self.table.sortByColumn(CatalogTableModel.COL_SIZE,
                                Qt.SortOrder.AscendingOrder if ascending else Qt.SortOrder.DescendingOrder)

    # selection / download ----------------------------------------------------------------
    def selected_row(self) -> CatalogRow | None:
        idx = self.table.selectionModel().selectedIndexes()  # a card or a table row
        if not idx:
            return None
        return self.proxy.data(self.proxy.index(idx[0].row(), 0), ENTRY_ROLE)

    def select_entry(self, entry_id: str) -> bool:
        for i in range(self.proxy.rowCount()):
            r = self.proxy.data(self.proxy.index(i, 0), ENTRY_ROLE)
            if r.entry.id == entry_id:
                self.table.selectRow(i)
                return True
        return False

    @Slot()
    def _on_selection_changed(self, *_args) -> None:
        r = self.selected_row()
        if r is None:
            self.download_btn.setEnabled(False)
            self.details.setText("")
            return
        e = r.entry
        if e.needs_server:
            self.download_btn.setEnabled(False)
            self.details.setText(f"{e.family}: {e.description} Needs a server: too big for a desktop.")
            return
        self.download_btn.setEnabled(not r.installed)
        extra = " Already installed." if r.installed else ""
        self.details.setText(f"{e.family} · {e.repo_id}{(' · ' + e.file) if e.file else ''}. {e.description}{extra}")

    def licence_box(self, entry) -> QMessageBox:
        """The acceptance dialog for a gated or restrictive licence (name and link shown)."""
        link = entry.license_url or f"{self.ctx.settings.hf_endpoint}/{entry.repo_id}"
        gated = ("\n\nThe hub also requires you to accept it on the model page while logged in, and an access "
                 "token in Settings.") if entry.gated else ""
        return licence_box(self, f"{entry.family} is distributed under the {entry.license or 'model'} licence, which "
                           f"restricts how it may be used.\n\nRead it: {link}{gated}\n\nDo you accept the licence?",
                           selectable=True)

    def accept_licence(self, entry) -> bool:
        """True when ``entry`` needs no acceptance, or the user accepted its licence (asked once)."""
        if entry.needs_acceptance and entry.id not in self._accepted_licences:
            box = self.licence_box(entry)
            box.exec()
            if box.clickedButton() is not box.property("accept_button"):
                return False
            self._accepted_licences.add(entry.id)
        return True

    @Slot()
    def _on_download_clicked(self, *_args) -> None:
        r = self.selected_row()
        if r is None or r.entry.needs_server:
            return
        e = r.entry
        if not self.accept_licence(e):
            self.message.setText(f"Download of {e.family} cancelled: the licence was not accepted.")
            return
        self.download_requested.emit(e)
        self.message.setText(f"Queued {e.family} {e.quantization} for download (see Downloads).")

    # refresh sizes -----------------------------------------------------------------------
    def update_offline_state(self) -> None:
        offline = self.ctx.settings.offline
        self.refresh_btn.setEnabled(not offline and self._refresh_op is None)
        self.refresh_btn.setToolTip(
            "Offline mode is on: turn it off in Settings to fetch sizes from the hub." if offline
            else "Fetch exact sizes and sha256 of the catalog files from the hub (only when you ask).")

    @Slot()
    def _on_refresh_clicked(self) -> None:
        if self.ctx.settings.offline:
            self.message.setText("Offline mode is on, so sizes cannot be refreshed from the hub. "
                                 "Turn 'Offline' off in Settings to use the hub.")
            return
        cat = self.catalog
        if cat is None:
            return
        settings = self.ctx.settings
        r = self.selected_row()
        only = [r.entry.id] if r is not None and not r.entry.needs_server else None

        def work(token):
            from desktop_app.hub.catalog import refresh
            from desktop_app.hub.client import HubClient

            changes = refresh(cat, HubClient(settings=settings), entry_ids=only, cancel=token,
                              progress=lambda i, n, repo: None)
            return changes

        self.refresh_btn.setEnabled(False)
        what = r.entry.family if only else "all catalog entries"
        self.message.setText(f"Fetching exact sizes for {what} from {settings.hf_endpoint}…")
        self._refresh_op = self.ctx.network.run(work, on_success=self._on_refreshed,
                                                on_failure=self._on_refresh_failed)

    @Slot(object)
    def _on_refreshed(self, changes) -> None:
        self._refresh_op = None
        self.update_offline_state()
        errors = [c for c in changes if c.get("error")]
        self.message.setText(f"Sizes refreshed: {len(changes) - len(errors)} changed"
                             + (f", {len(errors)} no longer on the hub" if errors else "") + ".")
        self.reload()

    @Slot(object)
    def _on_refresh_failed(self, exc) -> None:
        self._refresh_op = None
        self.update_offline_state()
        self.message.setText(f"Could not refresh sizes: {error_text(exc)}")

    def shutdown(self) -> None:
        for op in (self._load_op, self._refresh_op):
            if op is not None:
                op.cancel()
