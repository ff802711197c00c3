"""What the Studio's jobs (generation, loads, post-processing) hand to the GUI thread: one small
dataclass per kind, the same for every producer (issue 10: no positional tuples whose length
differs between two producers). Images are already decoded into QImage (safe off the GUI thread)
and results already saved, so the view only swaps pixmaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtGui import QImage


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    it_s: float | None = None
    image_index: int = 0
    batch: int = 1
    text: str = ""  # post-processing says what it does ("Tile 3/12"); generation shows steps and speed


@dataclass(frozen=True)
class Preview:
    image: QImage
    step: int
    total: int


@dataclass(frozen=True)
class Result:
    path: Path  # the PNG, already saved with its metadata
    params: dict
    image: QImage


@dataclass(frozen=True)
class Loaded:
    data: dict = field(default_factory=dict)  # the engine's LOADED data (native_size, max_size, device…)


@dataclass(frozen=True)
class Notice:
    kind: str
    message: str


@dataclass(frozen=True)
class EngineError:
    kind: str  # "crashed" → offer a restart (see protocol.ERROR_KINDS)
    message: str


@dataclass(frozen=True)
class Status:
    text: str  # what the engine is doing (starting, loading …)


STARTING = Status("Starting the image engine…")
