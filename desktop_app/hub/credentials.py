"""The hub access token (for gated repos): OS keyring when available, else a 0600 file.

Order when reading: ``HF_TOKEN`` environment variable, the keyring, the file. The token is never
logged or printed; ``describe_token()`` shows only where it comes from.
"""

from __future__ import annotations

import os
from pathlib import Path

from desktop_app.core.paths import get_paths

KEYRING_SERVICE = "atelier-huggingface"
KEYRING_USER = "token"


def _token_file() -> Path:
    return get_paths().config / "hf_token"


def _keyring():
    try:
        import keyring  # optional dependency

        keyring.get_keyring()
        return keyring
    except Exception:  # not installed, or no usable backend (headless Linux)
        return None


def get_token() -> str | None:
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env
    kr = _keyring()
    if kr is not None:
        try:
            tok = kr.get_password(KEYRING_SERVICE, KEYRING_USER)
            if tok:
                return tok
        except Exception:
            pass
    f = _token_file()
    if f.exists():
        tok = f.read_text("utf-8").strip()
        return tok or None
    return None


def set_token(token: str) -> str:
    """Store the token; returns where: 'keyring' or the file path."""
    token = token.strip()
    if not token:
        clear_token()
        return "cleared"
    kr = _keyring()
    if kr is not None:
        try:
            kr.set_password(KEYRING_SERVICE, KEYRING_USER, token)
            f = _token_file()
            if f.exists():
                f.unlink()
            return "keyring"
        except Exception:
            pass
    f = _token_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token)
    os.chmod(f, 0o600)
    return str(f)


def clear_token() -> None:
    kr = _keyring()
    if kr is not None:
        try:
            kr.delete_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:
            pass
    f = _token_file()
    if f.exists():
        f.unlink()


def describe_token() -> str:
    """Where the token comes from, for display (never the token itself)."""
    if os.environ.get("HF_TOKEN", "").strip():
        return "HF_TOKEN environment variable"
    kr = _keyring()
    if kr is not None:
        try:
            if kr.get_password(KEYRING_SERVICE, KEYRING_USER):
                return "system keyring"
        except Exception:
            pass
    if _token_file().exists():
        return f"file {_token_file()} (mode 0600)"
    return "none"
