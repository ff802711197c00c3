"""Remote engines (issue 15) against llama-cpp-python's own server (`llama_cpp.server`, started
here on loopback with the starter model): add and list, stream, stop, the server killed mid-reply
(a clear error, the partial reply kept), back again (use resumes), unreachable servers, and the
offline switch (loopback allowed, anything else blocked before a socket exists)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ALIAS = "starter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(model: Path, port: int, log: Path) -> subprocess.Popen:
    with open(log, "a") as err:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
                                 ALIAS, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                                stdout=subprocess.DEVNULL, stderr=err)
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail("llama_cpp.server exited: " + log.read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("llama_cpp.server did not start")


@pytest.fixture
def llama_server(starter_model, tmp_path):
    port = free_port()
    proc = start_llama_server(starter_model, port, tmp_path / "llama_server.log")
    yield port, proc, tmp_path / "llama_server.log"
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "desktop_app", *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env=env)


def test_add_list_run_and_stop(llama_server):
    from desktop_app.core.remotes import resolve
    from desktop_app.engines.chat_types import Reply

    port, _proc, _log = llama_server
    r = cli("remotes", "add", "box", f"http://127.0.0.1:{port}", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["url"] == f"http://127.0.0.1:{port}/v1" and ALIAS in d["models"]
    r = cli("models", "list", "--json")
    remote = [m for m in json.loads(r.stdout) if m.get("remote")]
    assert remote == [{"id": ALIAS, "task": "chat", "format": "remote", "remote": True, "server": "box",
                       "url": f"http://127.0.0.1:{port}/v1"}]
    r = cli("run", "--remote", "box", "--model", ALIAS, "--prompt", "Name a colour.", "--max-tokens", "12",
            "--temperature", "0", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["text"] and out["server"] == "box" and out["tokens"] > 0 and out["finish_reason"] in ("stop", "length")
    # a base URL used once, not saved
    r = cli("run", "--remote", f"http://127.0.0.1:{port}/v1", "--model", ALIAS, "--prompt", "Hi", "--max-tokens", "4")
    assert r.returncode == 0 and r.stdout.strip()
    # stop strings
    srv = resolve("box")
    full = Reply()
    for ev in srv.chat(ALIAS, [{"role": "user", "content": "Write a short poem about the sea."}],
                       {"max_tokens": 40, "temperature": 0.0}):
        full.add(ev)
    words = full.answer.split()
    assert len(words) >= 6, full.answer
    cut = words[4]
    part = Reply()
    for ev in srv.chat(ALIAS, [{"role": "user", "content": "Write a short poem about the sea."}],
                       {"max_tokens": 40, "temperature": 0.0, "stop": [cut]}):
        part.add(ev)
    assert cut not in part.answer and part.stats.finish_reason == "stop"
    r = cli("remotes", "rm", "box")
    assert r.returncode == 0 and "box" not in cli("remotes", "list").stdout


def test_killed_mid_reply_keeps_the_partial_reply_and_resumes(llama_server, starter_model):
    from desktop_app.engines.chat_types import Reply
    from desktop_app.engines.remote_chat import RemoteError, RemoteServer

    port, proc, log = llama_server
    srv = RemoteServer("box", f"http://127.0.0.1:{port}")
    reply = Reply()
    with pytest.raises(RemoteError, match="the reply so far is kept"):
        for ev in srv.chat(ALIAS, [{"role": "user", "content": "Tell a very long story about a lighthouse."}],
                           {"max_tokens": 1500, "temperature": 1.0, "seed": 1}):
            reply.add(ev)
            if len(reply.answer) > 40 and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert len(reply.answer) > 40  # what streamed before is kept
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="Cannot reach the server box"):
        srv.models()
    assert time.monotonic() - t0 < 6  # a clear state, not a hang
    proc2 = start_llama_server(starter_model, port, log)  # the server is back: use resumes
    try:
        again = Reply()
        for ev in srv.chat(ALIAS, [{"role": "user", "content": "Hi"}], {"max_tokens": 6}):
            again.add(ev)
        assert again.answer and again.stats.tokens > 0
    finally:
        proc2.terminate()
        proc2.wait(timeout=30)


def test_offline_blocks_servers_outside_this_machine(llama_server, monkeypatch):
    from desktop_app.core.errors import OfflineError
    from desktop_app.engines.remote_chat import RemoteServer

    port, _proc, _log = llama_server
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    assert RemoteServer("box", f"http://127.0.0.1:{port}").models() == [ALIAS]  # loopback stays allowed
    with pytest.raises(OfflineError, match="Offline mode is on"):
        RemoteServer("far", "http://10.255.255.1:8000/v1").models()  # no socket is even opened
    r = cli("run", "--remote", "http://10.255.255.1:8000", "--model", "x", "--prompt", "Hi",
            env_extra={"ATELIER_OFFLINE": "1"})
    assert r.returncode != 0 and "Offline mode is on" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("remotes", "add", "bad", "ftp://x")
    assert r.returncode != 0 and "not a server address" in r.stderr


def test_enhance_prompt_on_a_team_servers_model_is_an_enhance_record(llama_server, tmp_path, monkeypatch):
    """The Studio's Enhance prompt runs on whichever chat model is loaded: a team server's too. Its
    audit record has the kind "enhance" and names remote:NAME/MODEL."""
    from desktop_app.core.prompt_enhance import enhance
    from desktop_app.core.settings import Settings
    from desktop_app.engines.remote_chat import RemoteChatEngine, RemoteServer

    port, _proc, _log = llama_server
    monkeypatch.setenv("ATELIER_AUDIT_DIR", str(tmp_path / "audit"))
    Settings().set("audit_mode", "full")
    engine = RemoteChatEngine(RemoteServer("box", f"http://127.0.0.1:{port}"), ALIAS)
    engine.check()
    prompt, negative = enhance(engine, "a lighthouse in a storm", "sd15", seed=1)
    assert prompt.strip()
    from desktop_app.core.audit import log_folder

    lines = [json.loads(x) for f in sorted(log_folder().glob("*.jsonl")) for x in f.read_text().splitlines()]
    rec = lines[-1]
    assert rec["kind"] == "enhance" and rec["model_id"] == f"remote:box/{ALIAS}" and rec["outcome"] == "done"
