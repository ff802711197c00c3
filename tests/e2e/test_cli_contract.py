"""The CLI contract for usage errors: one line on stderr, nothing on stdout, non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [
    ["doctor", "--bogus"],
    ["models", "bogus"],
    ["run"],
    ["imagine", "--prompt", "x"],
    ["models", "fit"],
])
def test_usage_errors_are_one_line(argv):
    out = subprocess.run([sys.executable, "-m", "desktop_app", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in out.stderr


def test_imagine_refuses_a_lora_that_is_not_one(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    ckpt = tmp_path / "checkpoint.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float16)}, str(ckpt))
    folder = tmp_path / "pipe"
    folder.mkdir()
    out = subprocess.run([sys.executable, "-m", "desktop_app", "imagine", "--model", str(folder), "--prompt", "x",
                          "--out", str(tmp_path / "o.png"), "--lora", f"{ckpt}:0.8"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint.safetensors is not a LoRA adapter" in lines[0], out.stderr
    assert not (tmp_path / "o.png").exists()
