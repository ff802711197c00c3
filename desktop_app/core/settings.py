"""User settings, declared in one place with their defaults and descriptions.

Stored as JSON in the config dir. Environment variables win over the file where noted
(``ATELIER_OFFLINE=1``, ``HF_ENDPOINT``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.core.paths import get_paths, write_json_atomic


@dataclass(frozen=True)
class Option:
    default: Any
    description: str


OPTIONS: dict[str, Option] = {
    "models_dir": Option("", "Folder where downloaded and imported models are stored (empty: the app's data dir)."),
    "extra_model_dirs": Option([], "Read-only folders (e.g. provisioned by an admin) whose models are used in place."),
    "offline": Option(False, "Block every network call of the app (also set by ATELIER_OFFLINE=1)."),
    "hf_endpoint": Option("", "Hugging Face hub endpoint, e.g. an internal mirror (empty: HF_ENDPOINT or huggingface.co)."),
    "proxy": Option("", "HTTP(S) proxy for hub access, e.g. http://proxy:3128 (empty: none)."),
    "allow_pickle": Option(False, "Allow pickle checkpoints (.ckpt/.pt/.bin). They can run code: only for files you trust."),
    "default_chat_model": Option("", "Model id used by the Chat tab when none is chosen (empty: the starter model)."),
    "context_overflow": Option("truncate_oldest", "When a chat no longer fits the context: 'truncate_oldest' or 'stop'."),
    "vram_reserve_mib": Option(512, "Free VRAM kept in reserve per GPU when planning a model load."),
}


def _settings_file() -> Path:
    return get_paths().config / "settings.json"


class Settings:
    """Typed access to settings.json; unknown keys in the file are kept but ignored."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _settings_file()
        self._values: dict[str, Any] = {}
        if self.path.exists():
            try:
                self._values = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError):
                self._values = {}

    def get(self, key: str) -> Any:
        if key not in OPTIONS:
            raise KeyError(key)
        return self._values.get(key, OPTIONS[key].default)

    def set(self, key: str, value: Any) -> None:
        if key not in OPTIONS:
            raise KeyError(key)
        self._values[key] = value
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self._values, indent=2, sort_keys=True)

    # Derived values -----------------------------------------------------------------
    @property
    def offline(self) -> bool:
        env = os.environ.get("ATELIER_OFFLINE", "").strip().lower()
        if env in ("1", "true", "yes", "on"):
            return True
        return bool(self.get("offline"))

    @property
    def hf_endpoint(self) -> str:
        return (self.get("hf_endpoint") or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")

    @property
    def models_dir(self) -> Path:
        custom = self.get("models_dir")
        path = Path(custom).expanduser() if custom else get_paths().models
        path.mkdir(parents=True, exist_ok=True)
        return path
