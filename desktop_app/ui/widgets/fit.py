"""Fit of a library model on this machine, for the badges of the Chat, Image Studio and Models tabs.

``plan_or_error`` reads the model's file headers: call it in the background (``ctx.background``),
never on the GUI thread.
"""

from __future__ import annotations

from typing import Any


def plan_or_error(rec: Any, hw: Any) -> tuple[Any, Exception | None]:
    """``(plan_for_record(rec, hw), None)``, or ``(None, exc)`` when the model's files cannot be read."""
    try:
        from desktop_app.core.fitting import plan_for_record

        return plan_for_record(rec, hw), None
    except Exception as exc:  # noqa: BLE001 - a broken file shows its reason as its badge
        return None, exc
