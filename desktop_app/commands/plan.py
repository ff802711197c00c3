"""`atelier models plan CHAT_ID IMAGE_ID [--active image|chat|none] [--json]`: what the memory
broker (core/memory_broker.py) would do with both models loaded on this machine (or on an
``ATELIER_HARDWARE`` profile). IDs are library or catalog ids."""

from __future__ import annotations

from desktop_app.commands import emit_json

GiB = 2**30


def plan_pair(chat_id: str, image_id: str, active: str = "image", n_ctx: int | None = None) -> dict:
    from desktop_app.core.hardware import detect_hardware
    from desktop_app.core.library import Library
    from desktop_app.core.memory_broker import plan_models, resolve_demand
    from desktop_app.core.starter import ensure_starter_registered
    from desktop_app.hub.catalog import load_catalog

    lib = Library()
    ensure_starter_registered(lib)
    cat = load_catalog()
    chat = resolve_demand(chat_id, lib, cat, n_ctx)
    image = resolve_demand(image_id, lib, cat)
    from desktop_app.core.errors import AtelierError

    if chat.task != "chat":
        raise AtelierError(f"{chat_id} is a {chat.task} model, not a chat model (give the chat model first).")
    if image.task != "image":
        raise AtelierError(f"{image_id} is a {image.task} model, not an image model (give the image model second).")
    hw = detect_hardware()
    act = {"chat": chat.id, "image": image.id}.get(active)
    plan = plan_models([chat, image], hw, active=act)
    d = plan.to_dict()
    d["hardware"] = hw.summary()
    return d


def render_text(d: dict) -> str:
    lines = [f"On {d['hardware']}:"]
    for m in d["models"]:
        where = m["placement"]
        if m["placement"] == "partial":
            where = f"partial {m['n_gpu_layers']} of {m['n_layers']} layers"
        elif m["mode"] in ("gpu_offload", "gpu_sequential_offload"):
            where = "offload (" + ("model CPU offload" if m["mode"] == "gpu_offload" else "sequential") + ")"
        lines.append(f"  {m['task']:<6} {m['id']}: {where} on {m['device']}, ~{m['planned_bytes'] / GiB:.1f} GiB")
        if m["reason"]:
            lines.append(f"         {m['reason']}")
    for dev in d["devices"]:
        lines.append(f"  {dev['name']}: {dev['planned_bytes'] / GiB:.1f} GiB planned of {dev['total_bytes'] / GiB:.1f} GiB "
                     f"({dev['budget_bytes'] / GiB:.1f} GiB usable)")
    if d.get("refused"):
        lines.append(f"Refused: {d['refused']}")
    return "\n".join(lines)


def cmd_plan(args) -> int:
    d = plan_pair(args.chat_id, args.image_id, getattr(args, "active", "image"), getattr(args, "ctx", None))
    if getattr(args, "json", False):
        emit_json(d)
    else:
        print(render_text(d))
    return 1 if d.get("refused") else 0
