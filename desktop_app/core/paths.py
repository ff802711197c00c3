"""Where Atelier keeps its files.

By default the platform's directories (platformdirs). With ``ATELIER_HOME=/some/dir``
everything lives under that one folder (portable mode: run from a USB stick; the tests use
it for isolation).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.core.errors import storage_error

APP_DIR_NAME = "Atelier"
# Per data folder (ATELIER_HOME may change between calls, as in the tests): why nothing can be
# saved there ("" when it can). Set when a folder cannot be created, else by the write probe.
_storage_problems: dict[Path, str] = {}


def storage_problem() -> str:
    """'' when Atelier can save its files, else one sentence saying why it cannot (read-only
    folder, full disk). Checked once per data folder: the folders exist and it takes a file."""
    paths = get_paths()
    if paths.data not in _storage_problems:
        probe = paths.data / ".write-test"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            _storage_problems[paths.data] = ""
        except OSError as exc:
            _storage_problems[paths.data] = str(storage_error(exc, paths.data, "settings, chat history or models"))
    return _storage_problems[paths.data]


@dataclass(frozen=True)
class Paths:
    config: Path
    data: Path
    models: Path
    cache: Path
    logs: Path
    portable: bool

    def as_dict(self) -> dict:
        return {
            "config": str(self.config),
            "data": str(self.data),
            "models": str(self.models),
            "cache": str(self.cache),
            "logs": str(self.logs),
            "portable": self.portable,
        }

    def ensure(self) -> "Paths":
        """Create the folders. One that cannot be created (read-only medium, full disk) is not fatal:
        the app runs without saving, ``storage_problem()`` says why, and each write says so."""
        for p in (self.config, self.data, self.models, self.cache, self.logs):
            try:
                p.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # the first reason is the one said
                _storage_problems.setdefault(self.data, str(storage_error(exc, p, "settings, chat history or models")))
        # The data dir holds chat history: readable by the user only.
        try:
            os.chmod(self.data, 0o700)
        except OSError:
            pass
        return self


def get_paths(create: bool = True) -> Paths:
    """The app's directories; created on first use unless ``create`` is False."""
    home = os.environ.get("ATELIER_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        paths = Paths(
            config=root / "config",
            data=root / "data",
            models=root / "models",
            cache=root / "cache",
            logs=root / "logs",
            portable=True,
        )
    else:
        import platformdirs

        data = Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False))
        paths = Paths(
            config=Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False)),
            data=data,
            models=data / "models",
            cache=Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False)),
            logs=Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False)),
            portable=False,
        )
    return paths.ensure() if create else paths


def write_json_atomic(path: Path, data: Any, **dumps_kwargs: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a sibling ``.tmp`` file and ``os.replace``:
    a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, **dumps_kwargs), "utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise storage_error(exc, path, path.name) from None


def documents_dir() -> Path:
    """Where a user expects exported files: their Documents folder (the home folder when the
    platform has none or it does not exist)."""
    import platformdirs

    docs = Path(platformdirs.user_documents_dir())
    return docs if docs.is_dir() else Path.home()
