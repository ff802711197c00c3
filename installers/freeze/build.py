#!/usr/bin/env python3
"""Freeze Atelier with PyInstaller into one folder for this OS and llama.cpp backend:

    .venv/bin/python installers/freeze/build.py [--dist DIR] [--clean]

writes ``DIR/atelier-<version>-<os>-<arch>-<backend>/`` (default DIR: ``dist/``) holding
``atelier`` (the command line) and ``atelier-gui`` (the app, no console window), plus everything
they need: Python, Qt, torch, diffusers, transformers, llama.cpp's libraries, the app's resources and
the starter model. Run it with the environment the README's set-up made (PyInstaller comes from the
``freeze`` extra: ``pip install -e .[freeze]``). On macOS the same folder is also wrapped as
``Atelier.app`` (``installers/freeze/macos/make_dmg.sh`` turns that into a .dmg); on Windows
``installers/freeze/windows/atelier.iss`` (Inno Setup) turns the folder into an installer.
The last line printed is a JSON summary (folder, size, seconds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def app_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text("utf-8"), re.M)
    return m.group(1) if m else "0"


def llama_backend() -> str:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise SystemExit("build.py: llama-cpp-python is not installed in this environment")
    names = " ".join(p.name.lower() for p in (Path(spec.origin).parent / "lib").glob("*ggml*"))
    return next((b for b in ("cuda", "metal", "vulkan", "hip") if f"ggml-{b}" in names),
                "metal" if sys.platform == "darwin" and platform.machine() == "arm64" else "cpu")


def folder_name() -> str:
    os_name = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"atelier-{app_version()}-{os_name}-{machine}-{llama_backend()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Freeze Atelier into one folder (PyInstaller onedir).")
    p.add_argument("--dist", default=str(ROOT / "dist"), help="where the folder goes (default: dist/)")
    p.add_argument("--work", default=str(ROOT / "build" / "freeze"), help="PyInstaller's work folder")
    p.add_argument("--clean", action="store_true", help="discard PyInstaller's cache first")
    args = p.parse_args(argv)
    if importlib.util.find_spec("PyInstaller") is None:
        raise SystemExit("build.py: PyInstaller is not installed (pip install -e .[freeze])")
    name = folder_name()
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", args.dist,
           "--workpath", args.work, str(HERE / "atelier.spec")] + (["--clean"] if args.clean else [])
    print("[atelier freeze] " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, env=dict(os.environ, ATELIER_FREEZE_NAME=name), cwd=ROOT)
    if r.returncode != 0:
        print(f"build.py: PyInstaller failed (exit {r.returncode}); see above", file=sys.stderr)
        return r.returncode
    out = Path(args.dist) / name
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and not f.is_symlink())
    summary = {"folder": str(out), "bytes": size, "seconds": round(time.monotonic() - t0, 1),
               "executables": sorted(f.name for f in out.iterdir() if f.is_file() and os.access(f, os.X_OK))}
    if sys.platform == "darwin":
        summary["app"] = str(Path(args.dist) / "Atelier.app")
    print(f"[atelier freeze] {out}: {size / 1e9:.2f} GB in {summary['seconds']} s", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
