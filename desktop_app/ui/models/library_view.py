"""Library view: every installed model with size, format, quantization, fit badge and location.

Listing (with fit badges, which read file headers), deleting, importing, discovering and model packs
(export the selected models to a folder or a USB stick, import a pack: hub/packs.py) all run
off the GUI thread through ``ctx.background``; after a change the view emits
``ctx.library_changed`` and every view refreshes on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QSortFilterProxyModel, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.library import ModelRecord
from desktop_app.ui.models.catalog_view import ENTRY_ROLE, SORT_ROLE, TASK_LABELS
from desktop_app.ui.models.common import RowTableModel, badge_brush_color, badge_kind, error_text, human_size
from desktop_app.ui.widgets.fit import plan_or_error
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)


class LibraryRow:
    __slots__ = ("record", "fit", "exists", "fit_error", "refused")

    def __init__(self, record: ModelRecord, fit: Any = None, exists: bool = True, fit_error: str = "",
                 refused: str = "") -> None:
        self.record = record
        self.fit = fit
        self.exists = exists
        self.fit_error = fit_error
        self.refused = refused  # why the administrator's policy does not let it load ("" when it may)


def where_label(rec: ModelRecord) -> str:
    if rec.managed:
        return "Atelier models folder"
    return {"starter": "Bundled starter", "discovered": "Used in place (other app)",
            "import": "Used in place"}.get(rec.source, "Used in place")


class LibraryTableModel(RowTableModel):
    COLUMNS = ("Model", "Task", "Format", "Quantization", "Size on disk", "Fit on this machine", "Location")
    COL_NAME, COL_TASK, COL_FORMAT, COL_QUANT, COL_SIZE, COL_FIT, COL_PATH = range(7)

    rows: list[LibraryRow]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        r = row.record
        c = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if c == self.COL_NAME:
                return r.display_name + ("" if row.exists else "  (missing on disk)") + (
                    "  (not approved by your administrator)" if row.refused else "")
            if c == self.COL_TASK:
                return TASK_LABELS.get(r.task, r.task)
            if c == self.COL_FORMAT:
                return r.format
            if c == self.COL_QUANT:
                return r.quantization or "—"
            if c == self.COL_SIZE:
                return human_size(r.size_bytes)
            if c == self.COL_FIT:
                if row.fit is not None:
                    badge = getattr(row.fit, "badge", None)
                    return str(badge) if badge else "—"
                return "—" if row.fit_error else "…"
            if c == self.COL_PATH:
                return f"{where_label(r)}: {r.path}"
        if role == SORT_ROLE:
            if c == self.COL_SIZE:
                return float(r.size_bytes or 0)  # float: Qt 6.11 does not order int with qlonglong
            return str(self.data(index, Qt.ItemDataRole.DisplayRole) or "").lower()
        if role == ENTRY_ROLE:
            return row
        if role == Qt.ItemDataRole.ToolTipRole:
            if c == self.COL_FIT:
                if row.fit_error:
                    return row.fit_error
                note = getattr(row.fit, "note", "")
                est = getattr(row.fit, "estimated_bytes", 0)
                return (f"Estimated memory: {human_size(est)}. " if est else "") + (note or "")
            if c == self.COL_PATH:
                return r.path
            if row.refused:
                return row.refused
            return f"{r.id}\n{r.repo_id or r.source}" + (f"\nLicence: {r.license}" if r.license else "")
        if role == Qt.ItemDataRole.BackgroundRole and c == self.COL_FIT and row.fit is not None:
            kind = badge_kind(row.fit)
            if kind != "unknown":
                return badge_brush_color(kind)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return str(self.data(index, Qt.ItemDataRole.DisplayRole))
        return None


def _fit_for(rec: ModelRecord, hw: Any) -> tuple[Any, str]:
    """The plan, or None and the reason (a broken file shows as "—" with it)."""
    plan, exc = plan_or_error(rec, hw)
    return plan, "" if exc is None else error_text(exc)


def list_rows(library, hw: Any, token=None) -> list[LibraryRow]:
    """Records with existence and fit badge (runs in the background: it reads file headers)."""
    from desktop_app.core.policy import current, record_digest

    pol = current()
    rows = []
    for rec in library.list():
        if token is not None:
            token.raise_if_cancelled()
        exists = Path(rec.path).exists()
        fit, err = (None, "The file is missing.") if not exists else ((None, "") if hw is None else _fit_for(rec, hw))
        refused = ""
        if exists and pol.restricts_models and not pol.approves(record_digest(rec, token)):  # hashed once, cached
            refused = f"Not approved by {pol.source}: it cannot be loaded."
        rows.append(LibraryRow(rec, fit, exists, err, refused))
    rows.sort(key=lambda r: (r.record.task, r.record.display_name.lower()))
    return rows


def import_model(library, settings, path: Path, copy: bool, token=None) -> ModelRecord:
    """Check and register a file or folder, copied into the models folder or used in place.

    The hub package's importer refuses pickle files (unless allowed in Settings) and checks the
    GGUF / safetensors headers and diffusers folders before anything is copied or registered.
    """
    from desktop_app.hub.importer import import_path

    return import_path(path, copy=copy, allow_pickle=bool(settings.get("allow_pickle")), library=library,
                       cancel=token)


def remove_model(library, model_id: str):
    """Unregister; delete the files only when Atelier owns them. Returns the importer's Removal."""
    from desktop_app.hub.importer import remove_model as _remove

    return _remove(model_id, library=library)


def discover_models(library, settings, token=None):
    """Scan the usual places (HF cache, LM Studio, Ollama, GPT4All, extra folders) and register."""
    from desktop_app.hub.discovery import discover

    return discover(library=library, register=True)


def owned_by_atelier(rec: ModelRecord, models_dir: Path) -> bool:
    """Whether deleting removes files (managed and inside the models folder), as remove_model decides."""
    if not rec.managed:
        return False
    try:
        Path(rec.path).resolve().relative_to(Path(models_dir).resolve())
        return True
    except ValueError:
        return False


class LibraryView(QWidget):
    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("libraryView")
        self._ops: list = []
        self._list_op = None
        self.last_discovery = None
        self.open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl  # replaceable (tests)

        self.model = LibraryTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = named(QTableView(), "libraryTable", "Installed models")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # several rows for "Export pack…"; delete and open act on one
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hdr.setSectionResizeMode(LibraryTableModel.COL_PATH, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)

        def button(text, name, acc, slot):
            b = QPushButton(text)
            b.setObjectName(name)
            b.setAccessibleName(acc)
            b.clicked.connect(slot)
            return b

        self.delete_btn = button("De&lete…", "libraryDelete", "Delete the selected model", self._on_delete_clicked)
        self.open_btn = button("Open &folder", "libraryOpenFolder", "Open the folder of the selected model",
                               self._on_open_folder_clicked)
        self.import_file_btn = button("Import &file…", "libraryImportFile", "Import a model file",
                                      self._on_import_file_clicked)
        self.import_dir_btn = button("Import f&older…", "libraryImportFolder", "Import a model folder",
                                     self._on_import_folder_clicked)
        self.discover_btn = button("Dis&cover", "libraryDiscover",
                                   "Find models of other apps on this machine and register them",
                                   self._on_discover_clicked)
        self.discover_btn.setToolTip("Scans the Hugging Face cache, LM Studio, Ollama and GPT4All folders and "
                                     "registers their models in place (nothing is copied).")
        self.import_pack_btn = button("Import &pack…", "libraryImportPack",
                                      "Import a model pack (a folder with pack.json)", self._on_import_pack_clicked)
        self.import_pack_btn.setToolTip("Verifies every file of a pack (from a USB stick or a shared folder) "
                                        "before anything is copied; a pack with one altered file is refused.")
        self.export_pack_btn = button("E&xport pack…", "libraryExportPack",
                                      "Export the selected models as a model pack", self._on_export_pack_clicked)
        self.export_pack_btn.setToolTip("Copies the selected models and a pack.json with their checksums to a "
                                        "folder, for machines with no network (Import pack… there).")
        self.delete_btn.setEnabled(False)
        self.open_btn.setEnabled(False)
        self.export_pack_btn.setEnabled(False)

        self.message = named(QLabel(""), "libraryMessage")
        self.message.setWordWrap(True)
        self.total_label = named(QLabel(""), "libraryTotal")

        actions = QHBoxLayout()
        actions.addWidget(self.import_file_btn)
        actions.addWidget(self.import_dir_btn)
        actions.addWidget(self.import_pack_btn)
        actions.addWidget(self.discover_btn)
        actions.addStretch(1)
        actions.addWidget(self.export_pack_btn)
        actions.addWidget(self.open_btn)
        actions.addWidget(self.delete_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addLayout(actions)
        foot = QHBoxLayout()  # the totals on their own line: the buttons fit a 1000-pixel window
        foot.addWidget(self.message, 1)
        foot.addWidget(self.total_label)
        lay.addLayout(foot)

        self.ctx.library_changed.connect(self._on_library_changed)
        self.ctx.hardware_ready.connect(self._on_library_changed)

    # listing ---------------------------------------------------------------------------
    def start(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        library, hw = self.ctx.library, self.ctx.hardware
        if self._list_op is not None:
            self._list_op.cancel()
        self._list_op = self.ctx.background.run(lambda token: list_rows(library, hw, token),
                                                on_success=self._on_listed, on_failure=self._on_list_failed)

    @Slot(object)
    def _on_listed(self, rows) -> None:
        self._list_op = None
        selected = self.selected_record()
        self.model.set_rows(rows)
        total = sum(r.record.size_bytes for r in rows if r.record.managed)
        self.total_label.setText(f"{len(rows)} models · {human_size(total)} in the Atelier models folder")
        wanted = getattr(self, "_select_when_listed", None) or (selected.id if selected is not None else None)
        self._select_when_listed = None
        if wanted is not None:
            self.select_model(wanted)
        self._on_selection_changed()

    @Slot(object)
    def _on_list_failed(self, exc) -> None:
        self._list_op = None
        if not isinstance(exc, Exception) or "Cancelled" not in type(exc).__name__:
            self.message.setText(f"Could not read the library: {error_text(exc)}")

    @Slot()
    def _on_library_changed(self, *_args) -> None:
        self.refresh()

    def records(self) -> list[ModelRecord]:
        return [r.record for r in self.model.rows]

    # selection -------------------------------------------------------------------------
    def selected_rows(self) -> list[LibraryRow]:
        idx = sorted(self.table.selectionModel().selectedRows(), key=lambda i: i.row())
        return [self.proxy.data(i, ENTRY_ROLE) for i in idx]

    def selected_row(self) -> LibraryRow | None:
        """The selected row when exactly one is selected."""
        rows = self.selected_rows()
        return rows[0] if len(rows) == 1 else None

    def selected_record(self) -> ModelRecord | None:
        row = self.selected_row()
        return row.record if row else None

    def select_model(self, model_id: str) -> bool:
        for i in range(self.proxy.rowCount()):
            row = self.proxy.data(self.proxy.index(i, 0), ENTRY_ROLE)
            if row.record.id == model_id:
                self.table.selectRow(i)
                return True
        return False

    @Slot()
    def _on_selection_changed(self, *_args) -> None:
        rec = self.selected_record()
        self.delete_btn.setEnabled(rec is not None)
        self.open_btn.setEnabled(rec is not None)
        self.export_pack_btn.setEnabled(any(r.exists for r in self.selected_rows()))
        if rec is not None:
            self.delete_btn.setText("De&lete…" if rec.managed else "Un&register…")

    # delete ----------------------------------------------------------------------------
    def delete_box(self, rec: ModelRecord) -> QMessageBox:
        """Confirmation dialog: space freed, or 'only unregistered' for models used in place."""
        if owned_by_atelier(rec, self.ctx.settings.models_dir):
            text = (f"Delete {rec.display_name}?\n\nThe file{'s' if rec.format == 'diffusers' else ''} in "
                    f"{rec.path} will be deleted, freeing {human_size(rec.size_bytes)}.")
            title, action = "Delete model", "Delete"
        else:
            text = (f"Remove {rec.display_name} from the library?\n\nIt is used in place from {rec.path} "
                    "(another app's folder or a folder you chose). Atelier only unregisters it: no file is "
                    "deleted and no disk space is freed.")
            title, action = "Unregister model", "Unregister"
        box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, self)
        box.setObjectName("libraryDeleteDialog")
        box.setAccessibleName(title)
        ok = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
        ok.setObjectName("libraryDeleteConfirm")
        ok.setAccessibleName(action)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel")
        box.setDefaultButton(cancel)
        box.setProperty("confirm_button", ok)
        return box

    @Slot()
    def _on_delete_clicked(self) -> None:
        rec = self.selected_record()
        if rec is None:
            return
        box = self.delete_box(rec)
        box.exec()
        if box.clickedButton() is not box.property("confirm_button"):
            return
        self.delete_model(rec.id)

    def delete_model(self, model_id: str):
        library = self.ctx.library
        self.delete_btn.setEnabled(False)
        op = self.ctx.background.run(lambda _t: remove_model(library, model_id),
                                     on_success=self._on_deleted, on_failure=self._on_op_failed)
        self._ops.append(op)
        return op

    @Slot(object)
    def _on_deleted(self, removal) -> None:
        rec = removal.record
        if removal.deleted:
            self.message.setText(f"Deleted {rec.display_name}; {human_size(removal.bytes_freed)} freed.")
        else:
            self.message.setText(f"Unregistered {rec.display_name}; its files were left in place at {rec.path}.")
        self.ctx.library_changed.emit()

    # open folder -----------------------------------------------------------------------
    @Slot()
    def _on_open_folder_clicked(self) -> None:
        rec = self.selected_record()
        if rec is None:
            return
        p = Path(rec.path)
        folder = p if p.is_dir() else p.parent
        if not folder.exists():
            self.message.setText(f"The folder {folder} does not exist any more.")
            return
        self.open_url(QUrl.fromLocalFile(str(folder)))

    # import ----------------------------------------------------------------------------
    def copy_or_reference_box(self, path: Path) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Question, "Import model",
                          f"Import {path.name}:\n\n• Copy it into the Atelier models folder "
                          f"({self.ctx.settings.get('models_dir') or 'the app data folder'}), or\n"
                          "• use it in place (nothing is copied; if you move or delete it, it disappears "
                          "from the library).", QMessageBox.StandardButton.NoButton, self)
        box.setObjectName("importModeDialog")
        box.setAccessibleName("Import model")
        copy_b = box.addButton("Copy", QMessageBox.ButtonRole.AcceptRole)
        copy_b.setAccessibleName("Copy into the models folder")
        ref_b = box.addButton("Use in place", QMessageBox.ButtonRole.AcceptRole)
        ref_b.setAccessibleName("Use in place")
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel")
        box.setProperty("copy_button", copy_b)
        box.setProperty("reference_button", ref_b)
        return box

    def _ask_and_import(self, path: str) -> None:
        if not path:
            return
        p = Path(path)
        box = self.copy_or_reference_box(p)
        box.exec()
        clicked = box.clickedButton()
        if clicked is box.property("copy_button"):
            self.import_path(p, copy=True)
        elif clicked is box.property("reference_button"):
            self.import_path(p, copy=False)

    @Slot()
    def _on_import_file_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a model file", "",
            "Models (*.gguf *.safetensors *.onnx);;Pickle checkpoints (*.ckpt *.pt *.pth *.bin);;All files (*)")
        self._ask_and_import(path)

    @Slot()
    def _on_import_folder_clicked(self) -> None:
        self._ask_and_import(QFileDialog.getExistingDirectory(self, "Import a model folder (diffusers)"))

    def import_path(self, path: Path, copy: bool):
        library, settings = self.ctx.library, self.ctx.settings
        verb = "Copying" if copy else "Registering"
        self.message.setText(f"{verb} {Path(path).name}…")
        op = self.ctx.background.run(lambda token: import_model(library, settings, Path(path), copy, token),
                                     on_success=self._on_imported, on_failure=self._on_import_failed)
        self._ops.append(op)
        return op

    @Slot(object)
    def _on_imported(self, rec) -> None:
        where = "copied into the models folder" if getattr(rec, "managed", False) else "used in place"
        self.message.setText(f"Imported {getattr(rec, 'display_name', rec)} ({where}).")
        self.ctx.library_changed.emit()

    @Slot(object)
    def _on_import_failed(self, exc) -> None:
        from desktop_app.core.errors import AlreadyInstalled

        if isinstance(exc, AlreadyInstalled):  # shown once: point at the one that is there
            self.message.setText(str(exc))
            if not self.select_model(exc.record.id):
                self._select_when_listed = exc.record.id  # not listed yet: once the listing arrives
            return
        self.message.setText(f"Import refused: {error_text(exc)}")

    # model packs -----------------------------------------------------------------------
    @Slot()
    def _on_import_pack_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a model pack (the folder with pack.json)")
        if folder:
            self.import_pack(Path(folder))

    def import_pack(self, folder: Path):
        from desktop_app.hub.packs import import_pack

        library = self.ctx.library
        self.import_pack_btn.setEnabled(False)
        self.message.setText(f"Verifying every file of the pack in {folder}…")
        skipped: list = []
        self._pack_skipped = skipped
        op = self.ctx.background.run(lambda token: import_pack(folder, library, cancel=token, skipped=skipped),
                                     on_success=self._on_pack_imported, on_failure=self._on_pack_failed)
        self._ops.append(op)
        return op

    @Slot(object)
    def _on_pack_imported(self, records) -> None:
        self.import_pack_btn.setEnabled(True)
        names = ", ".join(r.display_name for r in records[:8]) + (" …" if len(records) > 8 else "")
        there = getattr(self, "_pack_skipped", [])
        also = f" {len(there)} already in the library (not added twice): " + ", ".join(
            e.record.display_name for e in there[:8]) + "." if there else ""
        self.message.setText(f"Imported {len(records)} model(s) from the pack, every file verified"
                             + (f": {names}." if records else ".") + also)
        self.ctx.library_changed.emit()

    @Slot(object)
    def _on_pack_failed(self, exc) -> None:
        self.import_pack_btn.setEnabled(True)
        self.export_pack_btn.setEnabled(any(r.exists for r in self.selected_rows()))
        self.message.setText(f"Model pack: {error_text(exc)}")

    @Slot()
    def _on_export_pack_clicked(self) -> None:
        if self.selected_rows():
            folder = QFileDialog.getExistingDirectory(self, "Export a model pack to an empty folder (a USB stick)")
            if folder:
                self.export_pack([r.record.id for r in self.selected_rows() if r.exists], Path(folder))

    def export_pack(self, ids: list[str], folder: Path):
        from desktop_app.hub.packs import export_pack

        library = self.ctx.library
        self.export_pack_btn.setEnabled(False)
        self.message.setText(f"Writing {len(ids)} model(s) and their checksums to {folder}…")
        op = self.ctx.background.run(lambda token: (export_pack(ids, folder, library, cancel=token), folder),
                                     on_success=self._on_pack_exported, on_failure=self._on_pack_failed)
        self._ops.append(op)
        return op

    @Slot(object)
    def _on_pack_exported(self, result) -> None:
        pack, folder = result
        self.export_pack_btn.setEnabled(any(r.exists for r in self.selected_rows()))
        size = human_size(sum(m["size_bytes"] for m in pack["models"]))
        self.message.setText(f"Wrote {len(pack['models'])} model(s) ({size}) and pack.json to {folder}. "
                             "On the other machine: Models › Library › Import pack….")

    # discover --------------------------------------------------------------------------
    @Slot()
    def _on_discover_clicked(self) -> None:
        self.discover()

    def discover(self):
        library, settings = self.ctx.library, self.ctx.settings
        self.discover_btn.setEnabled(False)
        self.message.setText("Looking for models of other apps (Hugging Face cache, LM Studio, Ollama, GPT4All)…")
        op = self.ctx.background.run(lambda token: discover_models(library, settings, token),
                                     on_success=self._on_discovered, on_failure=self._on_discover_failed)
        self._ops.append(op)
        return op

    def register_folders(self, folders):
        """Register what the read-only folders of Settings hold (in place, nothing copied)."""
        library = self.ctx.library
        folders = list(folders)
        self.message.setText("Registering the models of " + ", ".join(str(f) for f in folders) + "…")
        from desktop_app.hub.discovery import register_folders

        op = self.ctx.background.run(lambda _t: register_folders(folders, library),
                                     on_success=self._on_discovered, on_failure=self._on_discover_failed)
        self._ops.append(op)
        return op

    @Slot(object)
    def _on_discovered(self, report) -> None:
        self.discover_btn.setEnabled(True)
        self.last_discovery = report
        names = [r.display_name for r in report.added]
        where = ", ".join(report.searched) if report.searched else "none of the usual folders exist"
        skipped = f" {len(report.skipped)} file(s) skipped (hover for why)." if report.skipped else ""
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            text = f"Registered {len(names)} new model(s), used in place (nothing copied): {shown}."
        elif report.found:
            text = f"Found {len(report.found)} model(s); all were already in the library."
        else:
            text = "No models of other apps were found on this machine."
        self.message.setText(f"{text} Searched: {where}.{skipped}")
        self.message.setToolTip("\n".join(f"{s.path}: {s.reason}" for s in report.skipped[:30]))
        self.ctx.library_changed.emit()

    @Slot(object)
    def _on_discover_failed(self, exc) -> None:
        self.discover_btn.setEnabled(True)
        self.message.setText(f"Discovery failed: {error_text(exc)}")

    @Slot(object)
    def _on_op_failed(self, exc) -> None:
        self.delete_btn.setEnabled(self.selected_record() is not None)
        self.message.setText(error_text(exc))

    def shutdown(self) -> None:
        for op in [self._list_op, *self._ops]:
            if op is not None:
                op.cancel()
