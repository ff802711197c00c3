"""Cancel within one step (no VAE decode), engine killed mid-run → reported and restartable,
out of memory → one lighter retry (fault injected at the torch boundary), no torch in the parent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from desktop_app.engines.base import CancelToken
from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec
from tests.diffusion.conftest import make_engine, run_job

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow_engine(tmp_path_factory):
    """Each denoising step takes ≥ 50 ms (ATELIER_TEST_STEP_DELAY), so 'mid-run' is certain."""
    eng = make_engine(tmp_path_factory, env={"ATELIER_TEST_STEP_DELAY": "0.05"})
    yield eng
    eng.stop()


def long_req(models, steps=200):
    return GenerateRequest(model=ModelSpec(str(models["sd15"])), prompt="x", steps=steps, seed=1, scheduler="Euler")


def test_cancel_mid_run_stops_within_one_step_without_decode(slow_engine, tiny_models):
    run_job(slow_engine, long_req(tiny_models, steps=2))  # load first
    decodes_before = slow_engine.ping()["vae_decodes"]
    token = CancelToken()
    events, t_cancel = [], None
    for ev in slow_engine.generate(long_req(tiny_models), token):
        events.append(ev)
        if ev.type == "progress" and ev["step"] == 5:
            t_cancel = time.perf_counter()
            token.cancel()
    elapsed = time.perf_counter() - t_cancel
    last = events[-1]
    assert last.type == "cancelled", last.data
    assert last["decoded"] is False and not any(e.type == "result" for e in events)
    assert last["step"] - last["cancel_seen_at_step"] <= 1
    assert last["step"] < 20
    assert elapsed < 2.0
    assert slow_engine.ping()["vae_decodes"] == decodes_before
    # the engine goes on working after a cancel
    after = run_job(slow_engine, long_req(tiny_models, steps=2))
    assert after[-1].type == "done"


def test_cancel_from_another_thread_like_the_gui(slow_engine, tiny_models):
    token = CancelToken()
    timer = threading.Timer(0.6, token.cancel)
    timer.start()
    try:
        events = run_job(slow_engine, long_req(tiny_models), token)
    finally:
        timer.cancel()
        timer.join()
    assert events[-1].type == "cancelled"


def test_killed_engine_is_reported_and_restart_works(slow_engine, tiny_models):
    run_job(slow_engine, long_req(tiny_models, steps=2))
    pid = slow_engine.pid
    events = []
    for ev in slow_engine.generate(long_req(tiny_models)):
        events.append(ev)
        if ev.type == "progress" and ev["step"] == 3:
            os.kill(pid, 9)
    last = events[-1]
    assert last.type == "error" and last["kind"] == "crashed"
    assert "SIGKILL" in last["message"] and "restart" in last["message"]
    assert not slow_engine.alive
    slow_engine.restart()
    assert slow_engine.pid != pid
    events = run_job(slow_engine, long_req(tiny_models, steps=2))
    assert events[-1].type == "done" and any(e.type == "loaded" for e in events)


def test_out_of_memory_retries_once_lighter_then_reports(tmp_path_factory, tiny_models):
    # Fault injected at the torch boundary: the first 3 pipeline calls raise torch.OutOfMemoryError.
    eng = make_engine(tmp_path_factory, env={"ATELIER_FAULT_OOM": "3"})
    try:
        first = run_job(eng, long_req(tiny_models, steps=2))
        notices = [e for e in first if e.type == "notice" and e["kind"] == "oom_retry"]
        assert len(notices) == 1 and notices[0]["to_plan"] == "cpu_lowmem"
        assert first[-1].type == "error" and first[-1]["kind"] == "oom"
        assert "Out of memory" in first[-1]["message"] and "smaller" in first[-1]["message"]
        second = run_job(eng, long_req(tiny_models, steps=2))  # plan is now cpu_lowmem: no lighter mode left
        assert second[-1].type == "error" and second[-1]["kind"] == "oom"
        eng.restart()  # fresh child: fault counter reset to 3 again, so use a new engine for the success path
    finally:
        eng.stop()
    eng = make_engine(tmp_path_factory, env={"ATELIER_FAULT_OOM": "1"})
    try:
        events = run_job(eng, long_req(tiny_models, steps=2))
        assert [e["kind"] for e in events if e.type == "notice"] == ["oom_retry"]
        assert events[-1].type == "done" and any(e.type == "result" for e in events)
        assert eng.ping()["placement"] == "cpu_lowmem"
    finally:
        eng.stop()


def test_cli_imagine_json_and_no_torch_in_parent(tiny_models, tmp_path, atelier_home):
    """`atelier imagine` runs through the client + child; the parent process never imports torch."""
    out = tmp_path / "fox.png"
    script = (
        "import sys, json\n"
        "from desktop_app.cli import main\n"
        f"rc = main(['imagine', '--model', {str(tiny_models['sd15'])!r}, '--prompt', 'a fox', '--out', {str(out)!r},"
        " '--steps', '2', '--seed', '9', '--size', '64x64', '--scheduler', 'Euler', '--json'])\n"
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'diffusers': 'diffusers' in sys.modules}))\n"
    )
    env = dict(os.environ, ATELIER_HOME=str(atelier_home))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    result, state = json.loads(lines[-2]), json.loads(lines[-1])
    assert state == {"rc": 0, "torch": False, "diffusers": False}
    assert result["seed"] == 9 and result["size"] == "64x64" and result["steps"] == 2
    assert Path(result["out"]) == out.resolve() and out.read_bytes()[:4] == b"\x89PNG"
    assert "step 2/2" in proc.stderr


def test_cli_imagine_errors_are_one_line(tmp_path, atelier_home):
    env = dict(os.environ, ATELIER_HOME=str(atelier_home))
    bad = tmp_path / "m.ckpt"
    bad.write_bytes(b"x")
    for args, words, out in (
        (["--model", str(bad)], "pickle", "o.png"),
        (["--model", str(tmp_path), "--size", "100x64"], "multiple of 8", "o.png"),
        (["--model", str(bad)], "use a .png file name", "o.jpg"),
    ):
        proc = subprocess.run([sys.executable, "-m", "desktop_app", "imagine", "--prompt", "p", "--out",
                               str(tmp_path / out), *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 1
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("atelier: error:") and words in err[0], proc.stderr
