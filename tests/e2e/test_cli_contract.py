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
