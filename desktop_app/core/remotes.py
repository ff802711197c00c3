"""The team servers a user connected (Qt-free): names and base URLs in Settings
(``remote_servers``), API keys in the OS keyring like the hub token (a 0600 file where no
keyring works), never in the settings file. ``resolve`` turns a name or a base URL (used once,
not saved) into a RemoteServer.

The models each server listed when the user last added or refreshed it are kept in
``cache/remote_models.json``, so that the chat picker and the Studio show them without opening a
socket at start-up (no network call the user did not ask for). A remote model's id in the app is
``remote:SERVER/MODEL``."""

from __future__ import annotations

import json
import os
import re

from desktop_app.core.errors import AtelierError

KEYRING_SERVICE = "atelier-remote"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
PREFIX = "remote:"
MAX_MODELS = 500  # a server that lists more is cut short (a hostile one could list millions)


def remote_id(server: str, model: str) -> str:
    return f"{PREFIX}{server}/{model}"


def parse_remote_id(model_id: str | None) -> tuple[str, str] | None:
    """(server name, model) of a ``remote:SERVER/MODEL`` id; None for a local model's id."""
    if not isinstance(model_id, str) or not model_id.startswith(PREFIX):
        return None
    name, sep, model = model_id[len(PREFIX):].partition("/")  # a server's name has no "/"
    return (name, model) if sep and name and model else None


def _cache_file():
    from desktop_app.core.paths import get_paths

    return get_paths().cache / "remote_models.json"


def cached_models() -> dict:
    """{server name: {"chat": [ids], "image": [ids], "error": str | None, "checked": time}}, as
    last seen; never contacts a server."""
    try:
        d = json.loads(_cache_file().read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(d, dict):
        return {}
    out = {}
    for name, e in d.items():
        if isinstance(name, str) and isinstance(e, dict):
            out[name] = {k: [x[:300] for x in (e.get(k) if isinstance(e.get(k), list) else []) if isinstance(x, str)]
                         [:MAX_MODELS] for k in ("chat", "image")}
            out[name]["error"] = e.get("error") if isinstance(e.get("error"), str) else None
            out[name]["checked"] = e.get("checked") if isinstance(e.get("checked"), (int, float)) else None
    return out


def _write_cache(entries: dict) -> None:
    from desktop_app.core.paths import write_json_atomic

    write_json_atomic(_cache_file(), entries)


def refresh(name: str, settings=None) -> dict:
    """Ask the server ``name`` for its models now (the user asked: Add or Refresh); the answer, or
    the reason it could not be reached, is kept for the pickers. Returns its cache entry."""
    import time

    server = resolve(name, settings=settings)
    entry = {"chat": [], "image": [], "error": None, "checked": time.time()}
    try:
        for mid, task in server.model_entries()[:MAX_MODELS]:
            entry["image" if task == "image" else "chat"].append(mid)
    except AtelierError as exc:
        old = cached_models().get(name) or {}
        entry.update(chat=old.get("chat") or [], image=old.get("image") or [], error=str(exc))  # kept, marked
    entries = cached_models()
    entries[name] = entry
    _write_cache(entries)
    return entry


def blocked_offline(url: str, offline: bool) -> bool:
    """Whether the offline switch keeps the server at ``url`` out (loopback is always allowed)."""
    import urllib.parse

    from desktop_app.core.loopback import is_loopback

    return offline and not is_loopback(urllib.parse.urlsplit(url).hostname)


def remote_entries(task: str = "chat", settings=None) -> list[dict]:
    """The remote models for a picker, from the cache: ``{"id", "name", "server", "model", "url",
    "badge", "note", "blocked"}``; ``blocked`` when the offline switch keeps that server out."""
    from desktop_app.core.settings import Settings

    settings = settings or Settings()
    offline = bool(settings.offline)
    cache = cached_models()
    out = []
    for s in list_servers(settings):
        e = cache.get(s["name"]) or {}
        blocked = blocked_offline(s["url"], offline)
        for m in e.get(task) or []:
            badge = f"remote · {s['name']}" + (" · blocked while offline" if blocked else
                                               " · unreachable when last tried" if e.get("error") else "")
            out.append({"id": remote_id(s["name"], m), "name": m, "server": s["name"], "model": m, "url": s["url"],
                        "badge": badge, "blocked": blocked,
                        "note": f"{m} on the server {s['name']} ({s['url']})" + (f": {e['error']}" if e.get("error") else "")})
    return out


def _keys_file():
    from desktop_app.core.paths import get_paths

    return get_paths().config / "remote_keys.json"


def _read_file_keys() -> dict:
    f = _keys_file()
    try:
        d = json.loads(f.read_text("utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def get_key(name: str) -> str | None:
    from desktop_app.hub.credentials import _keyring

    kr = _keyring()
    if kr is not None:
        try:
            k = kr.get_password(KEYRING_SERVICE, name)
            if k:
                return k
        except Exception:  # noqa: BLE001 - a broken keyring: the file
            pass
    k = _read_file_keys().get(name)
    return k if isinstance(k, str) and k else None


def set_key(name: str, key: str | None) -> None:
    from desktop_app.core.paths import write_json_atomic
    from desktop_app.hub.credentials import _keyring

    kr = _keyring()
    stored = False
    if kr is not None:
        try:
            if key:
                kr.set_password(KEYRING_SERVICE, name, key)
            else:
                try:
                    kr.delete_password(KEYRING_SERVICE, name)
                except Exception:  # noqa: BLE001 - there was none
                    pass
            stored = True
        except Exception:  # noqa: BLE001 - fall back to the file
            stored = False
    keys = _read_file_keys()
    if key and not stored:
        keys[name] = key
    else:
        keys.pop(name, None)
    f = _keys_file()
    if keys or f.exists():
        write_json_atomic(f, keys)
        os.chmod(f, 0o600)


def list_servers(settings=None) -> list[dict]:
    from desktop_app.core.settings import Settings

    items = (settings or Settings()).get("remote_servers") or {}
    return [{"name": n, "url": u} for n, u in items.items() if isinstance(n, str) and isinstance(u, str)]


def add_server(name: str, url: str, api_key: str | None = None, settings=None) -> dict:
    from desktop_app.core.settings import Settings
    from desktop_app.engines.remote_chat import normalise_url

    settings = settings or Settings()
    name = (name or "").strip()
    if not NAME.match(name):
        raise AtelierError(f"{name!r} is not a server name: letters, digits, space, . _ - (up to 64).")
    entry = {"name": name, "url": normalise_url(url)}
    settings.set("remote_servers", {**{s["name"]: s["url"] for s in list_servers(settings)}, name: entry["url"]})
    set_key(name, api_key)
    return entry


def remove_server(name: str, settings=None) -> None:
    from desktop_app.core.settings import Settings

    settings = settings or Settings()
    servers = list_servers(settings)
    if not any(s["name"] == name for s in servers):
        raise AtelierError(f"No server named {name!r} (see 'atelier remotes list').")
    settings.set("remote_servers", {s["name"]: s["url"] for s in servers if s["name"] != name})
    set_key(name, None)
    entries = cached_models()
    if entries.pop(name, None) is not None:
        _write_cache(entries)


def resolve(name_or_url: str, api_key: str | None = None, settings=None):
    """A configured server by name, or a base URL used once (not saved)."""
    from desktop_app.engines.remote_chat import RemoteServer

    for s in list_servers(settings):
        if s["name"] == name_or_url:
            return RemoteServer(s["name"], s["url"], api_key or get_key(s["name"]))
    if "://" in name_or_url:
        return RemoteServer(name_or_url, name_or_url, api_key)
    raise AtelierError(f"No server named {name_or_url!r}: add it with 'atelier remotes add NAME URL', or give "
                       "a base URL such as http://host:8000/v1.")
