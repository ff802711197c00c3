"""The gallery of results: a QListView in icon mode over a list model whose thumbnails load lazily.

Thumbnails (and each PNG's parameters) are read off the GUI thread, only for rows the view asks
to paint, in small batches through ``ctx.background``. Newest images come first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QWidget

from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.core.paths import get_paths

log = logging.getLogger(__name__)
THUMB = 128
IMAGE_SUFFIXES = (".png",)


def images_dir() -> Path:
    d = get_paths().data / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def trash_dir() -> Path:
    """Deleted gallery images wait here until Atelier closes (Undo brings them back)."""
    return images_dir() / ".trash"


def new_image_path(stem: str = "") -> Path:
    """A fresh, unique file name in the images folder (time-ordered)."""
    d = images_dir()
    base = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}" + (f"-{stem}" if stem else "")
    p = d / f"{base}.png"
    n = 1
    while p.exists():
        p = d / f"{base}-{n}.png"
        n += 1
    return p


def scan_images(_token=None) -> list[Path]:
    """The PNGs of the images folder, newest first (runs in the background)."""
    d = images_dir()
    files = [p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return files


def load_thumbnail(path: Path, size: int = THUMB) -> tuple[QImage, dict | None, tuple[int, int]]:
    """A scaled QImage, the PNG's parameters and its pixel size (runs in the background)."""
    from desktop_app.engines.diffusion.metadata import parse_parameters

    reader = QImageReader(str(path))
    full = reader.size()
    if full.isValid() and (full.width() > size or full.height() > size):
        reader.setScaledSize(full.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio))
    img = reader.read()
    try:
        params = parse_parameters(path)
    except Exception:  # noqa: BLE001 - a PNG without (or with broken) metadata still shows
        params = None
    return img, params, (full.width(), full.height())


def square_thumbnail(img: QImage, size: int = THUMB) -> QPixmap:
    """The image scaled to fit a transparent size×size square, centred (a tidy grid)."""
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    if img.isNull():
        return pm
    if img.width() > size or img.height() > size:
        img = img.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    p = QPainter(pm)
    p.drawImage((size - img.width()) // 2, (size - img.height()) // 2, img)
    p.end()
    return pm


@dataclass
class GalleryItem:
    path: Path
    params: dict | None = None
    thumb: QPixmap | None = None
    size: tuple[int, int] | None = None
    loaded: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        p = self.params or {}
        if p.get("operation"):
            return str(p["operation"])
        if p.get("seed") is not None:  # the caption: seed first (the grid elides the end), then the prompt
            prompt = " ".join(str(p.get("prompt") or "").split())
            return f"seed {p['seed']}" + (f" · {prompt}" if prompt else "")
        return self.path.stem


def thumb_icon(it: GalleryItem) -> QIcon:
    """The thumbnail as an icon whose selected look is the same picture: Qt tints a selected icon
    with the highlight colour otherwise, which changes the colours of the image shown."""
    if it.extra.get("icon_of") is not it.thumb:
        icon = QIcon()
        icon.addPixmap(it.thumb, QIcon.Mode.Normal)
        icon.addPixmap(it.thumb, QIcon.Mode.Selected)
        it.extra["icon"], it.extra["icon_of"] = icon, it.thumb
    return it.extra["icon"]


class GalleryModel(QAbstractListModel):
    """Rows of GalleryItem; DecorationRole asks for a thumbnail that arrives later."""

    PathRole = Qt.ItemDataRole.UserRole + 1
    ParamsRole = Qt.ItemDataRole.UserRole + 2
    thumbnails_loaded = Signal(int)  # how many arrived in one batch

    def __init__(self, runner, parent=None) -> None:
        """``runner``: an object with ``run(fn, on_success, on_failure, on_progress)`` (ctx.background)."""
        super().__init__(parent)
        self._runner = runner
        self._items: list[GalleryItem] = []
        self._pending: set[Path] = set()
        self._queued: list[Path] = []
        self._in_flight = False
        self._placeholder: QPixmap | None = None
        self._batch_timer = Coalescer(15, self._on_flush_requests, self)
        self.requested_total = 0

    # list model API ---------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._items):
            return None
        it = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return it.label
        if role == Qt.ItemDataRole.DecorationRole:
            if it.thumb is None:
                self._request(it.path)
                return self._placeholder_pixmap()
            return thumb_icon(it)
        if role == Qt.ItemDataRole.ToolTipRole:
            p = it.params or {}
            text = p.get("prompt") or it.path.name
            if it.size:
                text += f"\n{it.size[0]}×{it.size[1]}"
            return text
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"Image {it.label}: {(it.params or {}).get('prompt', it.path.name)}"
        if role == self.PathRole:
            return str(it.path)
        if role == self.ParamsRole:
            return it.params
        return None

    # content ------------------------------------------------------------------------------------
    def items(self) -> list[GalleryItem]:
        return list(self._items)

    def item(self, row: int) -> GalleryItem:
        return self._items[row]

    def row_of(self, path: str | Path) -> int:
        p = Path(path)
        for i, it in enumerate(self._items):
            if it.path == p:
                return i
        return -1

    def set_paths(self, paths: list[Path]) -> None:
        self.beginResetModel()
        known = {it.path: it for it in self._items}
        self._items = [known.get(Path(p)) or GalleryItem(Path(p)) for p in paths]
        self.endResetModel()

    def prepend(self, path: Path, params: dict | None = None, image: QImage | None = None) -> None:
        """Add a new result at the top (its thumbnail is made from ``image`` if given)."""
        existing = self.row_of(path)
        if existing >= 0:
            self.remove_row(existing)
        it = GalleryItem(Path(path), params=params)
        if image is not None and not image.isNull():
            it.thumb = square_thumbnail(image)
            it.size = (image.width(), image.height())
            it.loaded = True
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._items.insert(0, it)
        self.endInsertRows()

    def remove_row(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._items[row]
        self.endRemoveRows()

    def set_params(self, row: int, params: dict | None) -> None:
        self._items[row].params = params
        idx = self.index(row)
        self.dataChanged.emit(idx, idx)

    # lazy thumbnails ---------------------------------------------------------------------------
    def _placeholder_pixmap(self) -> QPixmap:
        if self._placeholder is None:
            pm = QPixmap(THUMB, THUMB)
            pm.fill(Qt.GlobalColor.transparent)
            p = QPainter(pm)
            c = QColor(QPalette().color(QPalette.ColorRole.Mid))
            c.setAlpha(90)
            p.fillRect(8, 8, THUMB - 16, THUMB - 16, c)
            p.end()
            self._placeholder = pm
        return self._placeholder

    def _request(self, path: Path) -> None:
        if path in self._pending:
            return
        self._pending.add(path)
        self._queued.append(path)
        self.requested_total += 1
        self._batch_timer.poke()

    @Slot()
    def _on_flush_requests(self) -> None:
        if self._in_flight or not self._queued:
            return
        batch, self._queued = self._queued[:16], self._queued[16:]
        self._in_flight = True

        def work(token):
            for p in batch:
                if token.cancelled:
                    return
                try:
                    yield (p, *load_thumbnail(p))
                except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the rest
                    log.warning("thumbnail of %s failed: %s", p, exc)
                    yield (p, QImage(), None, None)

        self._runner.run(work, on_success=self._on_batch_done, on_failure=self._on_batch_failed,
                         on_progress=self._on_thumbnail)

    @Slot(object)
    def _on_thumbnail(self, item) -> None:
        path, img, params, size = item
        row = self.row_of(path)
        if row < 0:
            return
        it = self._items[row]
        if not img.isNull():
            it.thumb = square_thumbnail(img)
        else:
            it.thumb = self._placeholder_pixmap()
        if params is not None and it.params is None:
            it.params = params
        it.size = size
        it.loaded = True
        idx = self.index(row)
        self.dataChanged.emit(idx, idx)

    @Slot(object)
    def _on_batch_done(self, _result) -> None:
        self._in_flight = False
        self.thumbnails_loaded.emit(1)
        if self._queued:
            self._batch_timer.start()

    @Slot(object)
    def _on_batch_failed(self, exc) -> None:
        self._in_flight = False
        log.debug("thumbnail batch stopped: %s", exc)


class GalleryView(QListView):
    """Icon grid with a context menu; the actions themselves are owned by the studio tab."""

    context_menu_requested = Signal(object, object)  # (QMenu to fill, list of rows)
    activated_row = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studioGallery")
        self.setAccessibleName("Gallery of generated images")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 20, THUMB + 24))
        self.setMinimumHeight(THUMB + 40)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setWordWrap(False)
        self.setSpacing(4)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._on_context_menu)
        self.doubleClicked.connect(self._on_double_clicked)

    EMPTY_TEXT = ("Your images appear here.\nWrite a prompt and press Generate, or drop a PNG made by Atelier "
                  "or A1111 to reuse its settings.")

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().paintEvent(event)
        if self.model() is not None and self.model().rowCount() == 0:  # an empty state that leads somewhere
            p = QPainter(self.viewport())
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.viewport().rect().adjusted(20, 10, -20, -10),
                       int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.EMPTY_TEXT)
            p.end()

    def selected_rows(self) -> list[int]:
        return sorted({i.row() for i in self.selectionModel().selectedIndexes()}) if self.selectionModel() else []

    @Slot(object)
    def _on_context_menu(self, pos) -> None:
        idx = self.indexAt(pos)
        if idx.isValid() and idx.row() not in self.selected_rows():
            self.setCurrentIndex(idx)
        rows = self.selected_rows()
        if not rows:
            return
        menu = QMenu(self)
        self.context_menu_requested.emit(menu, rows)
        menu.exec(self.viewport().mapToGlobal(pos))

    @Slot(object)
    def _on_double_clicked(self, idx) -> None:
        if idx.isValid():
            self.activated_row.emit(idx.row())

