"""The tamper-evident audit log (issue 16, core/audit.py and `atelier audit`): 10,000 records
written by concurrent threads and processes verify; one edited, deleted or reordered line is
found and named; kill -9 while writing leaves a chain that verifies up to the last whole record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from desktop_app.core.audit import AuditLog, export, verify

ROOT = Path(__file__).resolve().parents[2]
WRITER = r"""
import sys
from desktop_app.core.audit import AuditLog
log = AuditLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.append("image", "tiny-sd15", "ab" * 32, {"steps": 2, "i": i}, "done", prompt=f"p{i}", reply="x.png")
"""


def lines(folder):
    (f,) = sorted(Path(folder).glob("audit-*.jsonl"))
    return f, f.read_bytes().split(b"\n")[:-1]


def test_ten_thousand_concurrent_records_verify(tmp_path):
    log = AuditLog(tmp_path)

    def chat(n):
        for i in range(n):
            log.append("chat", "smollm2", "cd" * 32, {"max_tokens": 8}, "done", prompt=f"hi {i}", reply="hello",
                       counts={"tokens": 3}, duration_s=0.01)

    threads = [threading.Thread(target=chat, args=(1500,)) for _ in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "2000"], cwd=ROOT) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=300) == 0 for p in procs)
    d = verify(tmp_path)
    assert d == {"records": 10_000, "ok": True, "first_bad": None, "torn_tail": False}
    _f, ls = lines(tmp_path)
    recs = [json.loads(x) for x in ls]
    assert {r["kind"] for r in recs} == {"chat", "image"} and all(r["user"] and r["app_version"] for r in recs)
    assert recs[0]["prev"] == "0" * 64 and all(a["sha256"] == b["prev"] for a, b in zip(recs, recs[1:]))


def test_edited_deleted_and_reordered_lines_are_named(tmp_path):
    log = AuditLog(tmp_path / "a")
    for i in range(10):
        log.append("chat", "m", "", {}, "done", prompt=f"q{i}", reply=f"r{i}")
    f, ls = lines(tmp_path / "a")

    def check(new_lines, line, words):
        f.write_bytes(b"\n".join(new_lines) + b"\n")
        d = verify(tmp_path / "a")
        assert not d["ok"] and d["first_bad"]["line"] == line and words in d["first_bad"]["reason"], d
        f.write_bytes(b"\n".join(ls) + b"\n")
        assert verify(tmp_path / "a")["ok"]

    edited = list(ls)
    edited[4] = edited[4].replace(b'"r4"', b'"R4"')
    check(edited, 5, "edited")
    last = list(ls)
    last[9] = last[9].replace(b'"r9"', b'"nope"')
    check(last, 10, "edited")  # the last record too: its own digest
    check(ls[:3] + ls[4:], 4, "deleted")
    check(ls[:2] + [ls[3], ls[2]] + ls[4:], 3, "moved")
    check(ls[:6] + [b"garbage"] + ls[7:], 7, "not a JSON record")
    # the CLI says the same, in one JSON object, and exits 1
    edited_file = list(ls)
    edited_file[1] = edited_file[1].replace(b'"q1"', b'"Q1"')
    f.write_bytes(b"\n".join(edited_file) + b"\n")
    r = subprocess.run([sys.executable, "-m", "desktop_app", "audit", "verify", "--dir", str(tmp_path / "a"), "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["records"] == 1 and d["ok"] is False and d["first_bad"]["line"] == 2 and set(d) == {"records", "ok", "first_bad"}


def test_metadata_mode_keeps_digests_only_and_export(tmp_path):
    log = AuditLog(tmp_path, mode="metadata")
    rec = log.append("enhance", "m", "", {}, "done", prompt="a secret idea", reply="tags")
    assert "prompt" not in rec and len(rec["prompt_sha256"]) == 64 and "a secret idea" not in json.dumps(rec)
    assert AuditLog(tmp_path, mode="off").append("chat", "m", "", {}, "done") is None
    AuditLog(tmp_path).append("chat", "m", "", {"t": 1}, "stopped", prompt="p", reply="r")
    assert export(tmp_path, tmp_path / "out.json") == 2
    assert export(tmp_path, tmp_path / "out.csv", since="2000-01-01") == 2
    assert export(tmp_path, tmp_path / "none.json", since="2999-01-01") == 0
    assert (tmp_path / "out.csv").read_text().count("\n") == 3
    r = subprocess.run([sys.executable, "-m", "desktop_app", "audit", "export", "--dir", str(tmp_path), "--to",
                        str(tmp_path / "x.txt")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode != 0 and ".csv or .json" in r.stderr


def test_kill_minus_nine_while_writing_leaves_a_chain_that_verifies(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "1000000"], cwd=ROOT)
    end = time.monotonic() + 60
    while time.monotonic() < end and not list(tmp_path.glob("audit-*.jsonl")):
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    d = verify(tmp_path)
    assert d["ok"] and d["records"] > 10, d
    f, _ = lines(tmp_path)
    # and a torn last record (as a crash mid-write leaves it) is not counted, and later appends go on
    with open(f, "ab") as fh:
        fh.write(b'{"kind": "chat", "tor')
    d2 = verify(tmp_path)
    assert d2["ok"] and d2["torn_tail"] and d2["records"] == d["records"]
    AuditLog(tmp_path).append("chat", "m", "", {}, "done", prompt="after the crash", reply="ok")
    d3 = verify(tmp_path)
    assert d3["ok"] and not d3["torn_tail"] and d3["records"] == d["records"] + 1
