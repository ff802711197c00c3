"""`atelier models …` through a real subprocess (the CLI contract), with the fake hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_app.core.library import Library
from desktop_app.hub.downloads import hub_dir, part_paths

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def atelier(*args, check=True, **env):
    p = subprocess.run([sys.executable, "-m", "desktop_app", *args], capture_output=True, text=True,
                       env=_env(**env), timeout=120, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"atelier {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.mark.slow
def test_pull_resumes_after_kill_9(fake_hub):
    data = fake_hub.repos["testorg/Big-GGUF"].files["big-Q4_K_M.gguf"]
    fake_hub.throttle_bps = 250_000  # ~10 s for the whole file
    dest = hub_dir("testorg/Big-GGUF") / "big-Q4_K_M.gguf"
    part, side = part_paths(dest)
    proc = subprocess.Popen([sys.executable, "-m", "desktop_app", "models", "pull", "testorg/Big-GGUF",
                             "big-Q4_K_M.gguf"], env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 200_000):
            time.sleep(0.05)
        assert part.exists(), proc.stderr.read1(4000) if proc.poll() is not None else "no .part yet"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    have = part.stat().st_size
    assert 0 < have < len(data) and side.exists() and not dest.exists()
    assert Library().get("testorg/Big-GGUF/big-Q4_K_M.gguf") is None  # never registered while incomplete
    fake_hub.throttle_bps = None
    p = atelier("models", "pull", "testorg/Big-GGUF", "big-Q4_K_M.gguf", "--json")
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    assert Path(rec["path"]).read_bytes() == data
    assert f"bytes={have}-" in fake_hub.ranges()
    assert "verifying" in p.stderr and not part.exists()


def test_pull_progress_and_offline(fake_hub, gguf_bytes):
    p = atelier("models", "pull", "testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    assert "Installed testorg/Tiny-GGUF/tiny-Q4_K_M.gguf" in p.stdout
    assert "downloading" in p.stderr and "done" in p.stderr  # progress goes to stderr
    n = len(fake_hub.requests)
    t0 = time.monotonic()
    off = atelier("models", "pull", "testorg/Tiny-GGUF", "tiny-Q2_K.gguf", check=False, ATELIER_OFFLINE="1")
    assert off.returncode == 1 and "Offline mode is on" in off.stderr
    assert len(off.stderr.strip().splitlines()) == 1 and "Traceback" not in off.stderr
    assert len(fake_hub.requests) == n and time.monotonic() - t0 < 30
    gated = atelier("models", "pull", "gatedorg/Gated-GGUF", "g-Q4_K_M.gguf", "--accept-license", check=False,
                    HF_TOKEN="")
    assert gated.returncode == 1 and "gated:" in gated.stderr
    lic = atelier("models", "pull", "gatedorg/Gated-GGUF", "g-Q4_K_M.gguf", check=False)
    assert lic.returncode == 1 and "--accept-license" in lic.stderr


def test_import_list_rm(fake_hub, tmp_path, gguf_bytes, starter_model):
    src = tmp_path / "outside" / "My-Model-Q5_K_M.gguf"
    src.parent.mkdir()
    src.write_bytes(gguf_bytes)
    imp = json.loads(atelier("models", "import", str(src), "--json").stdout)
    assert imp["managed"] is False and imp["path"] == str(src) and imp["quantization"] == "Q5_K_M"
    cp_src = tmp_path / "outside" / "copy-me.gguf"
    cp_src.write_bytes(gguf_bytes + b"\0" * 16)  # another model (GGUF readers ignore trailing bytes)
    cp = json.loads(atelier("models", "import", str(cp_src), "--copy", "--json").stdout)
    assert cp["managed"] is True and Path(cp["path"]).exists() and Path(cp["path"]) != cp_src
    # the same bytes as the first one under another name: not a second model, and exit 0
    same = tmp_path / "outside" / "same-as-first.gguf"
    same.write_bytes(gguf_bytes)
    dup = atelier("models", "import", str(same), "--copy")
    assert dup.returncode == 0 and "already in the library as" in dup.stdout and imp["id"] in dup.stdout
    dup = json.loads(atelier("models", "import", str(same), "--json").stdout)
    assert dup["already_installed"] is True and dup["id"] == imp["id"]

    bad = tmp_path / "outside" / "model.ckpt"
    bad.write_bytes(b"pickle")
    r = atelier("models", "import", str(bad), check=False)
    assert r.returncode == 1 and "pickle" in r.stderr and "Traceback" not in r.stderr

    lst = json.loads(atelier("models", "list", "--json").stdout)
    by_id = {d["id"]: d for d in lst}
    for d in lst:
        assert {"id", "task", "format", "path", "size_bytes"} <= set(d)
    assert imp["id"] in by_id and cp["id"] in by_id
    assert "smollm2-135m-instruct.q4_1.gguf" in by_id  # list registers the starter model

    rm = atelier("models", "rm", cp["id"])
    assert f"({len(gguf_bytes) + 16} bytes) freed" in rm.stdout
    assert not Path(cp["path"]).exists() and cp_src.exists()
    rm2 = json.loads(atelier("models", "rm", imp["id"], "--json").stdout)
    assert rm2["deleted"] is False and rm2["bytes_freed"] == 0 and src.exists()
    missing = atelier("models", "rm", "no-such-model", check=False)
    assert missing.returncode == 1 and "No model" in missing.stderr


def test_search_files_catalog_json(fake_hub):
    s = json.loads(atelier("models", "search", "tiny", "--json").stdout)
    assert [r["repo_id"] for r in s] == ["testorg/Tiny-GGUF"]
    f = json.loads(atelier("models", "files", "testorg/Tiny-GGUF", "--json").stdout)
    names = {x["name"]: x for x in f["files"]}
    assert names["tiny-Q4_K_M.gguf"]["fit"]["fits"] is True and len(names["tiny-Q4_K_M.gguf"]["sha256"]) == 64
    assert f["best"] in names
    cat = json.loads(atelier("models", "catalog", "--task", "upscale", "--json").stdout)
    assert cat and all(e["task"] == "upscale" for e in cat)
    assert all("fit" in e and "badge" in e["fit"] for e in cat)


@pytest.mark.slow
def test_pull_without_checksum_refused_unless_allowed(fake_hub, gguf_bytes):
    """A mirror that gives no checksum: refused by default; --allow-unverified installs it, says so."""
    fake_hub.omit_hashes = True
    try:
        p = atelier("models", "pull", "testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", check=False)
        assert p.returncode == 1 and "no checksum" in p.stderr and len(p.stderr.strip().splitlines()) >= 1
        assert "Installed" not in p.stdout
        p = atelier("models", "pull", "testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", "--allow-unverified")
        assert "NOT VERIFIED" in p.stdout and "WARNING" in p.stderr
        listed = json.loads(atelier("models", "list", "--json").stdout)
        rec = next(r for r in listed if r["id"] == "testorg/Tiny-GGUF/tiny-Q4_K_M.gguf")
        assert rec["extra"]["verified"] is False
    finally:
        fake_hub.omit_hashes = False
