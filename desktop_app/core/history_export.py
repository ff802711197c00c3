"""Conversations out of the history (Qt-free): JSON and Markdown exports, and the search snippet
the conversation list shows."""

from __future__ import annotations

import time

from desktop_app.core.errors import AtelierError
from desktop_app.core.markdown_text import close_open_fence


def snippet_around(text: str, needle: str, width: int = 70) -> str:
    """The part of ``text`` around the first case-insensitive ``needle``, on one line, with "…"
    where it was cut ("" when it is not there)."""
    flat = " ".join(text.split())
    i = flat.lower().find(needle.lower())
    if i < 0:
        return ""
    start = max(0, i - (width - len(needle)) // 2)
    end = min(len(flat), start + width)
    start = max(0, end - width)
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def export_json(store, conversation_id: int) -> dict:
    conv = store.get_conversation(conversation_id)
    if conv is None:
        raise AtelierError(f"No conversation {conversation_id} in the history.")
    return {
        "format": "atelier-conversation",
        "version": 1,
        "conversation": conv.to_dict(),
        "messages": [m.to_dict() for m in store.messages(conversation_id)],
    }


def export_markdown(store, conversation_id: int) -> str:
    conv = store.get_conversation(conversation_id)
    if conv is None:
        raise AtelierError(f"No conversation {conversation_id} in the history.")
    lines = [f"# {conv.title or 'Conversation'}", ""]
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(conv.created))
    meta = f"*{stamp}*" + (f" · model `{conv.model_id}`" if conv.model_id else "")
    lines += [meta, ""]
    if conv.system_prompt:
        lines += ["## System", "", conv.system_prompt, ""]
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    for m in store.messages(conversation_id):
        lines += [f"## {names[m.role]}", ""]
        if m.thinking:
            secs = m.stats.get("thinking_s")
            head = f"Thought for {secs:.0f} s" if isinstance(secs, (int, float)) else "Thought"
            lines += ["<details>", f"<summary>{head}</summary>", "", m.thinking.strip(), "", "</details>", ""]
        # a reply cut inside a code block: closed here, or the rest of the file renders as code
        lines += [close_open_fence(m.content), ""]
        image = (m.params or {}).get("image") if isinstance(m.params, dict) else None
        if isinstance(image, dict) and isinstance(image.get("path"), str):  # an /imagine result
            alt = str(image.get("prompt") or "image").replace("[", "(").replace("]", ")").replace("\n", " ")[:200]
            lines += [f"![{alt}](<{image['path']}>)", ""]
    return "\n".join(lines).rstrip() + "\n"
