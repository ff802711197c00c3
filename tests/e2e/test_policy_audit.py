"""`atelier run` under the administrator's policy, with the real starter model (issue 16): a model
the policy does not approve is refused in one line; an approved one runs and each reply is one
record of a hash chain that `atelier audit verify` checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.core.policy import model_digest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def atelier(*args, home, policy):
    env = dict(os.environ, ATELIER_HOME=str(home), ATELIER_POLICY=str(policy), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "desktop_app", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


def test_run_is_refused_then_recorded(atelier_home, starter_model, tmp_path):
    pol, audit = tmp_path / "policy.toml", tmp_path / "audit"
    pol.write_text(f"offline = true\nallowed_models = ['{'1' * 64}']\n[audit]\nmode = 'full'\npath = '{audit}'\n")
    r = atelier("run", "--prompt", "hi", "--max-tokens", "4", home=atelier_home, policy=pol)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = [x for x in r.stderr.splitlines() if x.startswith("atelier: error:")]
    assert len(err) == 1 and "is not approved by your administrator" in err[0]
    assert not list(audit.glob("*.jsonl")) if audit.exists() else True

    digest = model_digest(starter_model)
    r = atelier("models", "digest", "smollm2-135m-instruct.q4_1.gguf", "--json", home=atelier_home, policy=pol)
    assert r.returncode == 0 and json.loads(r.stdout)["sha256"] == digest and not json.loads(r.stdout)["approved"]
    pol.write_text(f"offline = true\nallowed_models = ['starter:{digest}']\n"
                   f"[audit]\nmode = 'full'\npath = '{audit}'\n")
    for prompt in ("What is 2 + 2?", "Name a colour."):
        r = atelier("run", "--prompt", prompt, "--max-tokens", "8", "--temperature", "0", "--seed", "1", "--json",
                    home=atelier_home, policy=pol)
        assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)["text"]
    recs = [json.loads(x) for f in sorted(audit.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert [r_["kind"] for r_ in recs] == ["chat", "chat"] and all(r_["outcome"] == "done" for r_ in recs)
    last = recs[-1]
    assert last["model_sha256"] == digest and last["model_id"] == "smollm2-135m-instruct.q4_1.gguf"
    assert last["prompt"][-1] == {"role": "user", "content": "Name a colour."} and last["reply"] == reply
    assert last["counts"]["tokens"] >= 1 and last["params"]["max_tokens"] == 8 and last["duration_s"] > 0
    assert last["prev"] == recs[0]["sha256"] and last["user"]
    r = atelier("audit", "verify", "--json", home=atelier_home, policy=pol)
    assert r.returncode == 0 and json.loads(r.stdout) == {"records": 2, "ok": True, "first_bad": None}

    # an edited reply is found and named
    f = sorted(audit.glob("*.jsonl"))[-1]
    lines = f.read_text().splitlines()
    lines[1] = lines[1].replace(json.dumps(reply)[1:-1] or "\"reply\"", "I was edited", 1)
    f.write_text("\n".join(lines) + "\n")
    r = atelier("audit", "verify", "--json", home=atelier_home, policy=pol)
    d = json.loads(r.stdout)
    assert r.returncode == 1 and not d["ok"] and d["first_bad"]["line"] == 2


def test_an_unwritable_audit_log_stops_inference(atelier_home, starter_model, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    pol = tmp_path / "policy.toml"
    pol.write_text(f"[audit]\nmode = 'metadata'\npath = '{blocker / 'audit'}'\n")
    r = atelier("run", "--prompt", "hi", "--max-tokens", "4", home=atelier_home, policy=pol)
    assert r.returncode == 1 and "The audit log at" in r.stderr and "cannot be written" in r.stderr


def test_a_reply_the_caller_stops_is_recorded_as_stopped_and_frees_the_engine(atelier_home, starter_model,
                                                                              tmp_path, monkeypatch):
    """The audit's wrapper closes the engine's job as soon as the caller stops reading (CI once
    caught it keeping the job alive, so that the next message found the engine busy)."""
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    pol = tmp_path / "policy.toml"
    pol.write_text(f"[audit]\nmode = 'full'\npath = '{tmp_path / 'audit'}'\n")
    monkeypatch.setenv("ATELIER_POLICY", str(pol))
    with ChatEngineProcess() as chat:
        chat.load(LoadConfig.for_model(str(starter_model)))
        it = chat.chat([{"role": "user", "content": "Write a long story."}], {"max_tokens": 200, "seed": 1})
        got = [next(it) for _ in range(3)]
        it.close()  # the caller stops: no cancel token, no "done"
        assert got and chat.complete([{"role": "user", "content": "Hi"}], {"max_tokens": 4}).tokens >= 1
    recs = [json.loads(x) for f in sorted((tmp_path / "audit").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert [r["outcome"] for r in recs] == ["stopped", "done"]
    assert recs[0]["reply"] == "".join(e.text for e in got if e.type == "answer")  # what was read, no more


def test_the_server_refuses_a_model_the_policy_does_not_approve_with_403(atelier_home, starter_model, tmp_path):
    import socket
    import time
    import urllib.error
    import urllib.request

    pol = tmp_path / "policy.toml"
    pol.write_text(f"allowed_models = ['{'1' * 64}']\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, ATELIER_HOME=str(atelier_home), ATELIER_POLICY=str(pol), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "desktop_app", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/models", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < end and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        for stream in (False, True):
            body = {"model": "smollm2-135m-instruct.q4_1.gguf", "max_tokens": 4, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]}
            rq = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(), method="POST",
                                        headers={"Content-Type": "application/json"})
            if stream:  # the stream has begun (200): the refusal is its error event
                with urllib.request.urlopen(rq, timeout=120) as r:
                    events = [ln[6:] for ln in r.read().decode().splitlines() if ln.startswith("data: ")]
                err = json.loads(events[-2])["error"]
                assert err["code"] == "model_not_approved" and "not approved by your administrator" in err["message"]
                continue
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(rq, timeout=120)
            err = json.loads(e.value.read())["error"]
            assert e.value.code == 403 and err["type"] == "permission_error"
            assert "not approved by your administrator" in err["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
