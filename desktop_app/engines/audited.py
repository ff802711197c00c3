"""The policy's gate and the audit log's records around every load and inference call (issue 16).

Both engine clients (chat: engines/chat_client.py; images, upscale, background removal:
engines/diffusion/client.py) go through here, so the GUI, the CLI and the server obey the same
policy and write the same records, from the thread that drives the engine (never the GUI thread).

- :func:`admit` before a model is used: under ``allowed_models`` the model's digest must be listed
  (:class:`~desktop_app.core.policy.NotApproved` otherwise); it returns the digest the records carry.
- :func:`chat_events` / :func:`image_events` pass an engine's events through unchanged and append one
  record when the call ends: done, stopped (cancelled, or the caller stopped reading) or error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from desktop_app.core.audit import Call, current_log


def admit(path: str | Path, model_id: str = "", sha256: str = "", token=None,
          digest_needed: bool | None = None) -> str:
    """The model's digest ('' when neither the policy nor the audit needs it); raises NotApproved.
    ``digest_needed``: whether a record will carry it (None: whether the audit is on now)."""
    from desktop_app.core.policy import current, model_digest

    pol = current()
    if pol.restricts_models:
        return pol.check_model(path, model_id, sha256, token)
    if sha256:
        return sha256.lower()
    if digest_needed is None:
        digest_needed = current_log() is not None
    if digest_needed and Path(path).exists():
        return model_digest(path, token)
    return ""


def start_call(kind: str, path: str | Path, params: dict, prompt: Any, *, model_id: str = "", sha256: str = "",
               token=None, also: tuple = ()) -> Call:
    """The policy's gate and the start of one call's record, the audit log checked once: the model
    at ``path`` and every file in ``also`` (LoRAs, a transformer file) must be approved (NotApproved
    otherwise); the Call's ``model_sha256`` is the model's digest. Raises AtelierError when the
    audit is on and its log cannot be written."""
    log = current_log()
    for extra in also:
        admit(extra, Path(extra).name, "", token, digest_needed=False)
    digest = admit(path, model_id, sha256, token, digest_needed=log is not None)
    return Call(log, kind, model_id or Path(path).name, digest, params, prompt)


def _outcome(exc: BaseException) -> str:
    """An exception that ended a call: stopped (a cancel, or the caller closed the stream) or error."""
    from desktop_app.core.errors import Cancelled

    return "stopped" if isinstance(exc, (Cancelled, GeneratorExit)) else "error"


def chat_events(call: Call, events: Iterator) -> Iterator:
    """ChatEvents through; the record has the reply (answer and thinking) and the token counts.
    The engine's generator is closed here as soon as the caller stops (a stopped reply frees the
    engine at once), and no exception is kept (it would keep the engine's job alive in a cycle)."""
    answer, thinking, stats, failed = [], [], None, None
    try:
        for ev in events:
            if ev.type == "answer":
                answer.append(ev.text)
            elif ev.type == "thinking":
                thinking.append(ev.text)
            elif ev.type == "done":
                stats = ev.stats
            yield ev
    except BaseException as exc:  # noqa: BLE001 - recorded, then raised again
        if not isinstance(exc, GeneratorExit):  # the caller stopped reading: the stats say how far it got
            failed = _outcome(exc), str(exc)[:500]
        raise
    finally:
        _close(events)
        counts = {}
        reply: Any = "".join(answer)
        if stats is not None:
            counts = {"prompt_tokens": stats.prompt_tokens, "tokens": stats.tokens,
                      "finish_reason": stats.finish_reason}
            reply = stats.text or reply
            thinking = [stats.thinking] if stats.thinking else thinking
        if thinking:
            reply = {"answer": reply, "thinking": "".join(thinking)}
        outcome = failed[0] if failed else ("done" if stats is not None and stats.finish_reason != "cancelled"
                                            else "stopped")
        call.end(outcome, reply, counts, {"error": failed[1]} if outcome == "error" else None)


def _close(events) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()


def image_events(call: Call, events: Iterator) -> Iterator:
    """Image-engine events through; the record has each result's sha256 (the PNG bytes as the engine
    made them) and the steps run. The engine's job is closed as soon as the caller stops."""
    images, steps, outcome, error = [], 0, "", ""
    try:
        for ev in events:
            if ev.type == "progress":
                steps = max(steps, int(ev.get("step") or 0))
            elif ev.type == "result" and ev.image:
                images.append({"sha256": hashlib.sha256(ev.image).hexdigest(), "bytes": len(ev.image),
                               "seed": (ev.get("params") or {}).get("seed")})
            elif ev.type == "done":
                outcome = "done"
            elif ev.type == "cancelled":
                outcome = "stopped"
            elif ev.type == "error":
                outcome, error = "error", str(ev.get("message") or ev.get("kind") or "")
            yield ev
    except BaseException as exc:  # noqa: BLE001 - recorded, then raised again
        if not outcome:
            outcome, error = _outcome(exc), str(exc)[:500]
        raise
    finally:
        _close(events)
        call.end(outcome or "stopped", {"images": images}, {"steps": steps, "images": len(images)},
                 {"error": error[:500]} if error else None)
