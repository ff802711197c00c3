"""A read-only or full data folder (issue 9, item 7): the app starts and says once, plainly, that
nothing can be saved; the CLI prints one line; nothing prints a traceback; a full disk mid-download
is not retried like a network error.

Real read-only and full file systems: each case runs in its own mount namespace (``unshare -m``,
as root) with a read-only bind mount or a tiny tmpfs; skipped where that is not allowed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _can_mount() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro,size=64k tmpfs /mnt"],
                       capture_output=True)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare -m to mount a read-only folder")


def _in_ns(setup: str, argv: list[str], home: Path, timeout: int = 120, env: dict | None = None):
    """Run ``argv`` with ATELIER_HOME=home after the shell ``setup`` (mounts), in a new mount namespace."""
    cmd = f"{setup} && exec {' '.join(shlex.quote(a) for a in argv)}"
    e = dict(os.environ, ATELIER_HOME=str(home), QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                          env=e, cwd=ROOT)


def _ro_empty(home: Path) -> str:
    return f"mount -t tmpfs -o ro,size=64k tmpfs {shlex.quote(str(home))}"


def _ro_bind(src: Path, home: Path) -> str:
    q, h = shlex.quote(str(src)), shlex.quote(str(home))
    return f"mount --bind {q} {h} && mount -o remount,bind,ro {h}"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "desktop_app", *args]


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def test_cli_on_an_empty_read_only_home(home, tmp_path, tiny_gguf):
    r = _in_ns(_ro_empty(home), _cli("doctor", "--json"), home)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0] and "Nothing can be saved" in lines[0]
    r = _in_ns(_ro_empty(home), _cli("models", "list"), home)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    r = _in_ns(_ro_empty(home), _cli("run", "--prompt", "Hi", "--max-tokens", "4"), home)
    assert r.returncode == 0 and r.stdout.strip() and "Traceback" not in r.stderr
    r = _in_ns(_ro_empty(home), _cli("models", "import", str(tiny_gguf)), home)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("atelier: error: Cannot save library.json: the folder is "
                                                        "read-only")


def test_gui_on_an_empty_read_only_home(home, tmp_path):
    shot = tmp_path / "ro.png"
    r = _in_ns(_ro_empty(home), [sys.executable, str(ROOT / "tests/e2e/gui_probe.py"), str(shot)], home)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["visible"] and "Nothing can be saved" in out["banner"] and "read-only" in out["banner"]
    assert "Traceback" not in r.stderr and out["close_s"] < 3
    assert shot.exists()


def test_gui_on_a_populated_read_only_home_keeps_the_history_and_closes_cleanly(home, tmp_path):
    src = tmp_path / "populated"
    src.mkdir()
    r = subprocess.run([sys.executable, str(ROOT / "tests/e2e/gui_probe.py")], capture_output=True, text=True,
                       env=dict(os.environ, ATELIER_HOME=str(src), QT_QPA_PLATFORM="offscreen",
                                PYTHONPATH=str(ROOT)), timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    from desktop_app.core.history import HistoryStore

    store = HistoryStore(src / "data" / "history.sqlite3")
    store.add_message(store.create_conversation("kept").id, "user", "hello")
    store.close()
    before = sorted(p.name for p in (src / "data").iterdir())
    r = _in_ns(_ro_bind(src, home), [sys.executable, str(ROOT / "tests/e2e/gui_probe.py")], home)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["visible"] and "Nothing can be saved" in out["banner"]
    assert "read-only" in out["chat_notice"] and out["close_s"] < 3
    assert sorted(p.name for p in (src / "data").iterdir()) == before  # nothing moved aside
    store = HistoryStore(src / "data" / "history.sqlite3")
    assert [c.title for c in store.list_conversations()] == ["kept"]
    store.close()


def test_full_disk_mid_download_is_not_retried(home, tmp_path):
    """A pull onto a 1 MiB file system, with a disk probe that (like some network shares) claims room:
    the write hits ENOSPC, which fails the pull at once with a clear line, not after retries."""
    r = _in_ns(f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(home))}",
               [sys.executable, str(ROOT / "tests/e2e/full_disk_pull.py")], home, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["error_type"] == "StorageError" and "disk is full" in out["error"], out
    assert out["retries"] == 0 and out["seconds"] < 10 and "\n" not in out["error"]
    assert out["traceback_lines_on_stderr"] == 0
