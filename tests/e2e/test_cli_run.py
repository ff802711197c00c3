"""`atelier run` end to end, in a subprocess, with the real starter model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def atelier(*args, home):
    env = dict(os.environ, ATELIER_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "desktop_app", *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


@pytest.mark.slow
def test_run_json_gives_one_object_with_the_fields(atelier_home, starter_model):
    r = atelier("run", "--prompt", "What is 2 + 2?", "--max-tokens", "16", "--seed", "3", "--temperature", "0",
                "--json", home=atelier_home)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold only the JSON object: {r.stdout!r}"
    d = json.loads(lines[0])
    for key in ("text", "tokens", "ttft_s", "tokens_per_s", "model", "n_ctx", "finish_reason", "prompt_tokens"):
        assert key in d, key
    assert d["text"].strip() and d["tokens"] >= 1 and d["tokens"] <= 16
    assert d["ttft_s"] > 0 and (d["tokens_per_s"] is None or d["tokens_per_s"] > 0)
    assert d["model"] == "smollm2-135m-instruct.q4_1.gguf"
    assert d["finish_reason"] in ("stop", "length")
    # the streamed reply went to stderr
    assert d["text"].strip() in r.stderr

    # without --json the same seeded reply streams to stdout, and nothing else goes there
    r2 = atelier("run", "--model", str(starter_model), "--prompt", "What is 2 + 2?", "--max-tokens", "16",
                 "--seed", "3", "--temperature", "0", "--system", "You are a helpful AI assistant named SmolLM, "
                 "trained by Hugging Face", home=atelier_home)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.strip() == d["text"].strip()


def test_run_errors_are_one_line_without_traceback(atelier_home, tmp_path):
    r = atelier("run", "--model", str(tmp_path / "nope.gguf"), "--prompt", "hi", home=atelier_home)
    assert r.returncode == 1
    assert r.stderr.startswith("atelier: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    r = atelier("run", "--model", str(bad), "--prompt", "hi", "--json", home=atelier_home)
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr
