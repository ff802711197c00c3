"""The team servers a user connected (Qt-free): names and base URLs in Settings
(``remote_servers``), API keys in the OS keyring like the hub token (a 0600 file where no
keyring works), never in the settings file. ``resolve`` turns a name or a base URL (used once,
not saved) into a RemoteServer."""

from __future__ import annotations

import json
import os
import re

from desktop_app.core.errors import AtelierError

KEYRING_SERVICE = "atelier-remote"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


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
