"""Images under the administrator's policy and the audit log (issue 16): the app's image engine
(child process, tiny pipelines) refuses a model the policy does not approve and records each job."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from desktop_app.core.audit import verify
from desktop_app.core.policy import model_digest
from desktop_app.engines.diffusion.protocol import GenerateRequest, LoraSpec, ModelSpec
from tests.diffusion.conftest import run_job

pytestmark = pytest.mark.slow


def policy(home, text):
    p = home / "policy.toml"
    p.write_text(text)
    os.environ["ATELIER_POLICY"] = str(p)  # restored by the autouse fixture


def records(folder):
    return [json.loads(x) for f in sorted(folder.glob("audit-*.jsonl")) for x in f.read_text().splitlines()]


def test_an_image_job_is_refused_or_recorded_as_the_policy_says(engine, tiny_models, atelier_home, tmp_path):
    sd15, audit = tiny_models["sd15"], tmp_path / "audit"
    policy(atelier_home, f"allowed_models = ['{'0' * 64}']\n[audit]\nmode = 'full'\npath = '{audit}'")
    req = GenerateRequest(model=ModelSpec(str(sd15)), prompt="a tiny red fox", steps=2, seed=5)
    events = run_job(engine, req)
    assert [e.type for e in events] == ["error"] and events[0]["kind"] == "not_approved"
    assert "tiny-sd15 is not approved by your administrator" in events[0]["message"]
    assert list(engine.load(ModelSpec(str(sd15))))[0]["kind"] == "not_approved"
    assert not audit.exists() or records(audit) == []  # nothing ran, nothing to record

    digest = model_digest(sd15)
    policy(atelier_home, f"allowed_models = ['{digest}']\n[audit]\nmode = 'full'\npath = '{audit}'")
    events = run_job(engine, req)
    assert events[-1].type == "done", events[-1].data
    (res,) = [e for e in events if e.type == "result"]
    (rec,) = records(audit)
    assert rec["kind"] == "image" and rec["outcome"] == "done" and rec["model_sha256"] == digest
    assert rec["prompt"] == "a tiny red fox" and rec["params"]["steps"] == 2 and rec["params"]["seed"] == 5
    assert rec["reply"]["images"][0]["sha256"] == hashlib.sha256(res.image).hexdigest()
    assert rec["counts"]["images"] == 1 and rec["counts"]["steps"] >= 2

    # a LoRA is a model too: one the policy does not list stops the job before it runs
    bad = run_job(engine, GenerateRequest(model=ModelSpec(str(sd15)), prompt="x", steps=2, seed=1,
                                          loras=[LoraSpec(str(tiny_models["lora"]))]))
    assert bad[0]["kind"] == "not_approved" and "not approved" in bad[0]["message"]

    # metadata: digests of the prompt and the reply, never their text
    policy(atelier_home, f"[audit]\nmode = 'metadata'\npath = '{audit}'")
    run_job(engine, GenerateRequest(model=ModelSpec(str(sd15)), prompt="secret patient name", steps=2, seed=5))
    last = records(audit)[-1]
    assert "prompt" not in last and last["prompt_sha256"] == hashlib.sha256(b"secret patient name").hexdigest()
    assert "secret patient name" not in (audit / sorted(os.listdir(audit))[-1]).read_text()
    assert verify(audit) == {"records": 2, "ok": True, "first_bad": None, "torn_tail": False}


WRITER = """
import sys
from desktop_app.core.audit import AuditLog
log = AuditLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.append("chat", "bulk", "ab" * 32, {"i": i}, "done", prompt=f"p{i}", reply="r", counts={"tokens": 1})
"""


def test_ten_thousand_records_from_concurrent_chat_and_image_jobs_verify(engine, tiny_models, starter_model,
                                                                         atelier_home, tmp_path):
    """Real chat replies (the starter model, its engine child) and real image jobs (tiny SD 1.5) run at
    once in two threads while two other processes append to the same log: 10,000+ records, one chain."""
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    audit = tmp_path / "audit"
    policy(atelier_home, f"[audit]\nmode = 'full'\npath = '{audit}'")
    root = Path(__file__).resolve().parents[2]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(audit), "4990"], cwd=root) for _ in range(2)]
    failures: list = []

    def chats():
        try:
            with ChatEngineProcess() as chat:
                chat.load(LoadConfig.for_model(str(starter_model)))
                for i in range(10):
                    chat.complete([{"role": "user", "content": f"Count to {i}"}], {"max_tokens": 4, "seed": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    def images():
        try:
            for i in range(10):
                run_job(engine, GenerateRequest(model=ModelSpec(str(tiny_models["sd15"])), prompt=f"fox {i}",
                                                steps=1, seed=i, preview=False))
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=chats), threading.Thread(target=images)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for w in writers:
        assert w.wait(300) == 0
    assert not failures, failures
    recs = [json.loads(x) for f in sorted(audit.glob("audit-*.jsonl")) for x in f.read_text().splitlines()]
    kinds = [r["kind"] for r in recs if r["model_id"] != "bulk"]
    assert kinds.count("chat") == 10 and kinds.count("image") == 10
    assert len(recs) == 10_000
    assert verify(audit) == {"records": 10_000, "ok": True, "first_bad": None, "torn_tail": False}
