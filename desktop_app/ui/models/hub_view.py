"""Hub search: search the hub (only when asked), list a repo's files with sizes and fit badges.

Every hub call runs on ``ctx.background`` through desktop_app.hub.client.HubClient, which
raises OfflineError before opening any socket when the offline switch is on; this view also
checks the switch first so that offline nothing is even queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui.models.common import badge_brush_color, badge_kind, error_text, highlight_tint, human_size
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)
REPO_ROLE = Qt.ItemDataRole.UserRole + 3


@dataclass
class DownloadSpec:
    """What the downloads panel needs to queue one download (a file, or a whole diffusers repo)."""

    repo_id: str
    filename: str = ""  # "" = the whole repository (diffusers pipeline)
    revision: str = ""
    size_bytes: int | None = None
    sha256: str = ""
    task: str = "chat"
    license: str = ""
    gated: bool | str = False
    display: str = ""
    catalog_id: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.display or (f"{self.repo_id}/{self.filename}" if self.filename else self.repo_id)


def file_rows(info: Any, hw: Any) -> tuple[list[dict], str | None]:
    """Files of a repo with fit badges for ``hw``, and the name of the best GGUF for this machine."""
    from types import SimpleNamespace

    from desktop_app.hub.catalog import choose_best_gguf, fit_image_size, fit_llm_size
    from desktop_app.hub.picks import speed_words

    rows = []
    for f in info.files:
        name = f.name
        lower = name.lower()
        fit = None
        task = ""
        if lower.endswith(".gguf") and f.size and "mmproj" not in lower:
            fit, task = fit_llm_size(int(f.size), hw), "chat"
        elif lower.endswith(".safetensors") and f.size and "/" not in name and f.size > 500 * 1000**2:
            fit, task = fit_image_size(int(f.size), hw), "image"
        speed = speed_words(SimpleNamespace(task=task), fit) if fit is not None and fit.fits else ""
        rows.append({"name": name, "size": f.size, "sha256": f.sha256, "quant": f.quantization, "fit": fit,
                     "speed": speed})
    best = choose_best_gguf([(f.name, int(f.size or 0)) for f in info.gguf_files], hw) if info.gguf_files else None
    return rows, best


def hub_card_html(info: Any, row: dict) -> str:
    """A model card for a hub file: what it is for (the repo's pipeline and tags), its parameters
    (from its name), licence, the exact file and size, the fit here in words with the speed. Every
    text from the hub is escaped (untrusted)."""
    from html import escape

    from desktop_app.hub.catalog import params_billions

    params = params_billions(f"{info.repo_id} {row['name']}")
    what = ", ".join(escape(t) for t in ([info.pipeline_tag] if info.pipeline_tag else []) + list(info.tags[:4]))
    fit = row.get("fit")
    where = (f"<b>{escape(fit.badge)}</b>" + (f": {escape(row['speed'])}" if row.get("speed") else "")
             if fit is not None else "Fit: known for model files only")
    facts = [x for x in (params and f"about {params:g}B parameters", row.get("quant") and escape(row["quant"]),
                         f"licence {escape(info.license or 'see the model card')}",
                         "context: read from the file once it is here") if x]
    return (f"<b>{escape(info.repo_id)}</b>{(' · ' + what) if what else ''}<br>{' · '.join(facts)}<br>"
            f"<small>{escape(row['name'])} · {human_size(row.get('size'))}</small><br>{where}")


class HubSearchView(QWidget):
    download_requested = Signal(object)  # DownloadSpec

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("hubSearchView")
        self._search_op = None
        self._files_op = None
        self.repo_info = None
        self.best_file: str | None = None

        self.query_edit = named(QLineEdit(), "hubQuery", "Search the hub")
        self.query_edit.setPlaceholderText("Search the hub, e.g. qwen3 gguf (nothing is sent until you press Search)")
        self.query_edit.returnPressed.connect(self._on_search_clicked)
        self.task_combo = named(QComboBox(), "hubTask", "Kind of model to search for")
        self.task_combo.addItem("Chat (GGUF)", "chat")
        self.task_combo.addItem("Image (diffusers / single file)", "image")
        self.search_btn = named(QPushButton("&Search"), "hubSearch", "Search the hub")
        self.search_btn.clicked.connect(self._on_search_clicked)

        self.results = named(QListWidget(), "hubResults", "Search results")
        self.results.currentItemChanged.connect(self._on_result_changed)

        self.files = named(QTreeWidget(), "hubFiles", "Files of the selected repository")
        self.files.setRootIsDecorated(False)
        self.files.setColumnCount(4)
        self.files.setHeaderLabels(["File", "Size", "Quantization", "Fit on this machine"])
        self.files.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.files.currentItemChanged.connect(self._on_file_changed)

        self.download_btn = named(QPushButton("&Download file"), "hubDownload", "Download the selected file")
        self.download_btn.setEnabled(False)
        self.download_btn.clicked.connect(self._on_download_clicked)
        self.download_repo_btn = named(QPushButton("Download whole &pipeline"), "hubDownloadRepo",
                                       "Download the whole diffusers pipeline")
        self.download_repo_btn.setVisible(False)
        self.download_repo_btn.clicked.connect(self._on_download_repo_clicked)

        self.message = QLabel("Search runs only when you ask: nothing is sent to the hub otherwise.")
        self.message.setObjectName("hubMessage")
        self.message.setWordWrap(True)

        bar = QHBoxLayout()
        bar.addWidget(self.query_edit, 1)
        bar.addWidget(self.task_combo)
        bar.addWidget(self.search_btn)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.results)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.files, 1)
        self.card = named(QLabel(""), "hubCard", "The selected file, as a model card")
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        rl.addWidget(self.card)
        btns = QHBoxLayout()
        btns.addStretch(1)
        btns.addWidget(self.download_repo_btn)
        btns.addWidget(self.download_btn)
        rl.addLayout(btns)
        split.addWidget(right)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        lay.addWidget(self.message)

    # search ----------------------------------------------------------------------------
    def search(self, text: str, task: str = "chat"):
        self.query_edit.setText(text)
        self.task_combo.setCurrentIndex(max(0, self.task_combo.findData(task)))
        return self._on_search_clicked()

    @Slot()
    def _on_search_clicked(self):
        text = self.query_edit.text().strip()
        if not text:
            self.message.setText("Type what to search for (e.g. a model family) first.")
            return None
        settings = self.ctx.settings
        if settings.offline:
            self.message.setText("Offline mode is on, so Atelier does not contact the hub. Turn 'Offline' off "
                                 "in Settings (and unset ATELIER_OFFLINE) to search.")
            return None
        task = self.task_combo.currentData()

        def work(_token):
            from desktop_app.hub.client import HubClient

            return HubClient(settings=settings).search(text, task=task, limit=30)

        self.search_btn.setEnabled(False)
        self.message.setText(f"Searching {settings.hf_endpoint} for '{text}'…")
        self._search_op = self.ctx.network.run(work, on_success=self._on_searched, on_failure=self._on_failed)
        return self._search_op

    @Slot(object)
    def _on_searched(self, results) -> None:
        self.search_btn.setEnabled(True)
        self._search_op = None
        self.results.clear()
        self.files.clear()
        for r in results:
            gated = " · gated" if r.gated else ""
            it = QListWidgetItem(f"{r.repo_id}\n{r.downloads:,} downloads · {r.likes:,} likes{gated}")
            it.setData(REPO_ROLE, r)
            it.setToolTip(", ".join(r.tags[:12]))
            self.results.addItem(it)
        self.message.setText(f"{len(results)} repositories found." if results else "Nothing found on the hub.")

    @Slot(object)
    def _on_failed(self, exc) -> None:
        self.search_btn.setEnabled(True)
        self._search_op = None
        self._files_op = None
        self.message.setText(error_text(exc))

    # files -----------------------------------------------------------------------------
    @Slot(object, object)
    def _on_result_changed(self, current, _previous) -> None:
        if current is None:
            return
        self.show_repo(current.data(REPO_ROLE).repo_id)

    def show_repo(self, repo_id: str):
        settings = self.ctx.settings
        if settings.offline:
            self.message.setText("Offline mode is on, so the repository's files cannot be listed.")
            return None
        hw = self.ctx.hardware

        def work(_token):
            from desktop_app.hub.client import HubClient

            info = HubClient(settings=settings).repo_info(repo_id)
            rows, best = file_rows(info, hw)
            return info, rows, best

        self.files.clear()
        self.download_btn.setEnabled(False)
        self.message.setText(f"Listing the files of {repo_id}…")
        self._files_op = self.ctx.network.run(work, on_success=self._on_files, on_failure=self._on_failed)
        return self._files_op

    @Slot(object)
    def _on_files(self, result) -> None:
        self._files_op = None
        info, rows, best = result
        self.repo_info, self.best_file = info, best
        self.files.clear()
        best_item = None
        for r in rows:
            fit = r["fit"]
            name = r["name"] + ("  ★ best for this machine" if r["name"] == best else "")
            badge = getattr(fit, "badge", "") if fit is not None else ""
            it = QTreeWidgetItem([name, human_size(r["size"]), r["quant"] or "",
                                  f"{badge}: {r['speed']}" if r.get("speed") else badge])
            it.setData(0, REPO_ROLE, r)
            if fit is not None:
                it.setBackground(3, QBrush(badge_brush_color(badge_kind(fit))))
            if r["name"] == best:
                for c in range(3):
                    it.setBackground(c, QBrush(highlight_tint()))
                best_item = it
            if r["sha256"]:
                it.setToolTip(1, f"{r['size']:,} bytes · sha256 {r['sha256']}")
            self.files.addTopLevelItem(it)
        for c in range(1, 4):
            self.files.resizeColumnToContents(c)
        self.download_repo_btn.setVisible(info.is_diffusers)
        lic = f" Licence: {info.license}." if info.license else ""
        gated = " Gated: accept the licence on the hub and set a token in Settings." if info.gated else ""
        self.message.setText(f"{info.repo_id}: {len(rows)} files.{lic}{gated}")
        if best_item is not None:
            self.files.setCurrentItem(best_item)

    @Slot(object, object)
    def _on_file_changed(self, current, _previous) -> None:
        self.download_btn.setEnabled(current is not None)
        self.card.setText(hub_card_html(self.repo_info, current.data(0, REPO_ROLE)) if current is not None
                          and self.repo_info is not None else "")

    def file_names(self) -> list[str]:
        return [self.files.topLevelItem(i).data(0, REPO_ROLE)["name"] for i in range(self.files.topLevelItemCount())]

    def select_file(self, name: str) -> bool:
        for i in range(self.files.topLevelItemCount()):
            it = self.files.topLevelItem(i)
            if it.data(0, REPO_ROLE)["name"] == name:
                self.files.setCurrentItem(it)
                return True
        return False

    def _spec(self, filename: str, size, sha) -> DownloadSpec:
        info = self.repo_info
        task = "image" if (info.is_diffusers or info.pipeline_tag == "text-to-image") else "chat"
        return DownloadSpec(repo_id=info.repo_id, filename=filename, revision=info.sha, size_bytes=size,
                            sha256=sha, task=task, license=info.license, gated=info.gated,
                            extra={"tags": list(info.tags)})

    @Slot()
    def _on_download_clicked(self) -> None:
        it = self.files.currentItem()
        if it is None or self.repo_info is None:
            return
        r = it.data(0, REPO_ROLE)
        spec = self._spec(r["name"], r["size"], r["sha256"])
        self.download_requested.emit(spec)
        self.message.setText(f"Queued {spec.title} (see Downloads).")

    @Slot()
    def _on_download_repo_clicked(self) -> None:
        if self.repo_info is None:
            return
        spec = self._spec("", None, "")
        spec.task = "image"
        self.download_requested.emit(spec)
        self.message.setText(f"Queued the pipeline {spec.repo_id} (see Downloads).")

    def shutdown(self) -> None:
        for op in (self._search_op, self._files_op):
            if op is not None:
                op.cancel()
