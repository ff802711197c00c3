"""Locate files shipped in resources/ (the checkout's folder, or a copy next to the package)."""

from __future__ import annotations

from pathlib import Path

_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "resources",  # source checkout / editable install
    Path(__file__).resolve().parent / "resources",  # frozen or packaged layouts
)


def resources_dir() -> Path:
    for c in _CANDIDATES:
        if c.is_dir():
            return c
    return _CANDIDATES[0]


def resource(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)
