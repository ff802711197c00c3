"""Export a conversation to Markdown or JSON: a file name every OS accepts, in the user's
Documents folder by default, written off the GUI thread; a failed write is one clear sentence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from PySide6.QtWidgets import QFileDialog, QWidget

from desktop_app.core.errors import AtelierError
from desktop_app.core.paths import documents_dir
from desktop_app.core.safepath import safe_filename


def write_export(store, cid: int, fmt: str, path: str) -> None:
    text = store.export_markdown(cid) if fmt == "md" else json.dumps(store.export_json(cid), indent=1)
    try:
        Path(path).write_text(text, "utf-8")
    except OSError as exc:
        why = {2: "that folder does not exist", 13: "permission is denied", 1: "permission is denied",
               28: "the disk is full", 122: "the disk quota is used up", 30: "the disk is read-only",
               21: "that is a folder", 36: "the name is too long"}.get(exc.errno, exc.strerror or str(exc))
        raise AtelierError(f"Could not export to {path}: {why}. Nothing was written; choose another place.") from None


def export_conversation(parent: QWidget, store, cid: int, fmt: str, background,
                        done: Callable[[str], None], failed: Callable[[str], None]) -> None:
    conv = store.get_conversation(cid)
    default = str(documents_dir() / safe_filename(conv.title if conv else "", fmt))
    path, _ = QFileDialog.getSaveFileName(parent, "Export conversation", default,
                                          "Markdown (*.md)" if fmt == "md" else "JSON (*.json)")
    if path:  # off the GUI thread: a long chat, a slow or full disk
        background.run(lambda _token: write_export(store, cid, fmt, path),
                       lambda _r: done(f"Conversation exported to {path}"), lambda exc: failed(str(exc)))
