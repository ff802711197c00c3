"""`atelier imagine --enhance` through the real CLI: the starter model turns the idea into the
prompt (streamed to stderr), the tiny pipeline draws it, and the PNG keeps the idea."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_imagine_enhance(tmp_path, starter_model):
    from desktop_app.engines.diffusion.metadata import parse_parameters
    from tests.diffusion import tiny_pipelines as tp

    folder = tp.build_sd15(tmp_path / "tiny-sd15")
    out = tmp_path / "fox.png"
    r = subprocess.run([sys.executable, "-m", "desktop_app", "imagine", "--enhance", "--prompt", "a fox in the snow",
                        "--model", str(folder), "--out", str(out), "--steps", "2", "--size", "64x64", "--seed", "3",
                        "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["idea"] == "a fox in the snow" and d["prompt"]
    assert "enhancing the prompt with SmolLM2" in r.stderr and f"prompt: {d['prompt']}" in r.stderr
    params = parse_parameters(out)
    assert params["idea"] == "a fox in the snow" and params["prompt"] == d["prompt"]
    # an empty idea is a one-line error before any model loads
    r = subprocess.run([sys.executable, "-m", "desktop_app", "imagine", "--enhance", "--prompt", "  ",
                        "--model", str(folder), "--out", str(out)], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env=dict(os.environ))
    assert r.returncode != 0 and "Type a short idea" in r.stderr and len(r.stderr.strip().splitlines()) == 1
