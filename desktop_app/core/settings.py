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

from desktop_app.core.errors import AtelierError
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
    "chat_threads": Option(0, "Decode threads for chat models (0: auto, one per physical core)."),
    "chat_batch_threads": Option(0, "Threads for reading the prompt (0: auto, one per physical core)."),
    "chat_flash_attn": Option("auto", "Flash attention for chat models: auto (GPUs: llama.cpp decides; CPU: off, faster decoding), on or off."),
    "chat_kv_cache": Option("f16", "KV cache type: f16, q8_0 (half the memory) or q4_0 (a quarter); long contexts."),
    "chat_adaptive_threads": Option(True, "Use fewer decode threads while another program keeps a core busy."),
    "image_cpu_dtype": Option("auto", "Image models on the CPU: auto, float32 or bfloat16 (CPUs with native bfloat16)."),
    "theme": Option("system", "Colour theme: system (follows the desktop), light or dark."),
    "welcome_shown": Option(False, "The welcome page was seen (Help › Welcome shows it again)."),
    "downloads_auto_resume": Option(False, "Resume downloads that quitting interrupted as soon as Atelier starts (off: they wait, paused, until you resume them)."),
    "image_metadata_paths": Option(False, "Saved images name the model and LoRA files by their full path (off: names and hashes only, for privacy)."),
    "remote_servers": Option({}, "Team servers speaking the OpenAI API: {name: base URL} (their API keys are in the keyring)."),
    "memory_pinned": Option([], "Slots (chat, image) whose model the memory broker never moves or unloads to make room."),
    "enhance_system_prompts": Option({}, "The Studio's Enhance prompt instructions per style ('tags': SD 1.5/SDXL, 'natural': SD 3.5/FLUX); a missing one: the built-in."),
    "studio_model_params": Option({}, "The Studio's last size and steps per image model (restored when it is chosen)."),
    "chat_prompt_lookup": Option(False, "Prompt-lookup decoding: faster replies that repeat the prompt (code, edits)."),
    "audit_mode": Option("off", "Keep a tamper-evident log of every inference call: off, metadata (digests of prompts "
                         "and replies) or full (their text); an administrator's policy may fix it."),
}


def _settings_file() -> Path:
    return get_paths().config / "settings.json"


_KIND = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list of texts"}


def type_problem(key: str, value: Any) -> str:
    """'' when ``value`` has the type of the option's default, else what is wrong, in words."""
    default = OPTIONS[key].default
    want = type(default)
    ok = (isinstance(value, bool) if want is bool else
          isinstance(value, int) and not isinstance(value, bool) if want is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
          isinstance(value, list) and all(isinstance(x, str) for x in value) if want is list else
          isinstance(value, want))
    if ok:
        return ""
    shown = json.dumps(value)[:60] if not isinstance(value, str) else repr(value[:60])
    return f"the setting '{key}' must be {_KIND.get(want, want.__name__)}, not {shown}"


class Settings:
    """Typed access to settings.json; unknown keys in the file are kept but ignored.

    A value of the wrong type (a hand-edited file) is never used: ``get`` gives the default and
    ``problems`` says, in words, what was ignored (the CLI and the window show it once)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _settings_file()
        self._values: dict[str, Any] = {}
        self.problems: list[str] = []
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError, RecursionError):
                loaded = None
            if isinstance(loaded, dict):
                self._values = loaded
            else:
                self.problems.append(f"{self.path} is not a valid settings file; the defaults are used")
        for key, value in self._values.items():
            why = type_problem(key, value) if key in OPTIONS else ""
            if why:
                self.problems.append(f"{self.path.name}: {why}; the default ({json.dumps(OPTIONS[key].default)}) "
                                     "is used")

    def own(self, key: str) -> Any:
        """The user's own value (what the file holds), whatever the administrator's policy fixes."""
        if key not in OPTIONS:
            raise KeyError(key)
        value = self._values.get(key, OPTIONS[key].default)
        return OPTIONS[key].default if type_problem(key, value) else value

    def get(self, key: str) -> Any:
        """The value in force: the administrator's policy (core/policy.py) wins over the user's."""
        value = self.own(key)
        from desktop_app.core.policy import current

        pol = current()
        if not pol.present:
            return value
        locked = pol.locked()
        if key in locked:
            return locked[key]
        if key == "extra_model_dirs" and pol.model_dirs:
            return list(dict.fromkeys([*pol.model_dirs, *value]))
        return value

    def locked_reason(self, key: str) -> str:
        """Why the policy fixes ``key`` ('' when the user may change it)."""
        from desktop_app.core.policy import current

        return current().reason(key)

    def set(self, key: str, value: Any) -> None:
        if key not in OPTIONS:
            raise KeyError(key)
        from desktop_app.core.policy import current

        pol = current()
        if key in pol.locked() and value != pol.locked()[key]:
            from desktop_app.core.policy import PolicyLocked

            raise PolicyLocked(f"Cannot set {key}: it is fixed by {pol.source}.")
        why = type_problem(key, value)
        if why:
            raise AtelierError(f"Cannot set {key}: {why}.")
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
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only or full: each write then says so in one line (storage_error)
            pass
        return path
