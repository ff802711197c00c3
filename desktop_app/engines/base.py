"""What every engine shares: the cancel token (its home is core/cancel.py) and run_to_end()."""

from __future__ import annotations

from typing import Generator, TypeVar

from desktop_app.core.cancel import CancelToken  # noqa: F401 - the engines' public name for it

R = TypeVar("R")


def run_to_end(gen: Generator[object, None, R]) -> R:
    """Drive an engine generator to its end, dropping its progress events; return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
