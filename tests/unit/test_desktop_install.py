"""Issue 12 (desktop integration, Linux): the shipped desktop entry and AppStream metainfo pass
their validators; ``atelier desktop-install`` writes them (pointing at the installed atelier-gui)
and every icon size under XDG_DATA_HOME, they validate there, and ``--uninstall`` removes them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux desktop integration")


def validator(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:  # the test set-up installs them on Debian/Ubuntu (desktop-file-utils, appstream)
        pytest.skip(f"{name} is not installed")
    return exe


def validate(path: Path) -> None:
    if path.suffix == ".desktop":
        r = subprocess.run([validator("desktop-file-validate"), str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and "error" not in r.stdout.lower(), r.stdout + r.stderr
    else:
        r = subprocess.run([validator("appstreamcli"), "validate", "--no-net", str(path)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_the_shipped_entry_and_metainfo_validate():
    validate(ROOT / "resources" / "atelier.desktop")
    validate(ROOT / "resources" / "atelier.metainfo.xml")
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        from PIL import Image

        with Image.open(ROOT / "resources" / "icons" / f"atelier-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"


def test_desktop_install_and_uninstall(tmp_path):
    data = tmp_path / "xdg"
    keep = data / "applications" / "other.desktop"
    keep.parent.mkdir(parents=True)
    keep.write_text("[Desktop Entry]\n")
    env = dict(os.environ, XDG_DATA_HOME=str(data))
    run = [sys.executable, "-m", "desktop_app", "desktop-install", "--json"]
    r = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    written = json.loads(r.stdout.strip().splitlines()[-1])["installed"]
    entry = data / "applications" / "atelier.desktop"
    assert str(entry) in written and len(written) == 11
    text = entry.read_text("utf-8")
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    exe = Path(exec_line[5:].strip('"'))
    assert exe.is_absolute() and exe.name == "atelier-gui" and exe.is_file()
    validate(entry)
    validate(data / "metainfo" / "io.atelier.Atelier.metainfo.xml")
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "atelier.png").is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "atelier.svg").is_file()

    r = subprocess.run(run + ["--uninstall"], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert not entry.exists() and not any((data / "icons").rglob("atelier.*")) and keep.exists()
