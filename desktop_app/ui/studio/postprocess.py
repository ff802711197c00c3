"""Upscale / remove background from the gallery: runs ``atelier upscale|remove-bg`` in a child
process from the studio's "postprocess" model thread, so torch/spandrel/onnxruntime never load in
the GUI process. Progress lines come from the command's stderr; cancel kills the child.

Items yielded: ("progress", done, total, text), ("result", path, params, QImage).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from PySide6.QtGui import QImage

from desktop_app.core.errors import AtelierError, Cancelled

REPO_ROOT = Path(__file__).resolve().parents[3]
OPERATIONS = {
    "upscale": ("upscale", "Upscaled"),
    "remove-bg": ("background_removal", "Background removed"),
}


def postprocess_job(op: str, source: Path, out: Path, model_id: str, source_params: dict | None,
                    extra_args: list[str] | None = None):
    """fn(state, token): run the CLI command ``op`` on ``source`` → ``out`` (PNG with metadata)."""
    if op not in OPERATIONS:
        raise ValueError(op)

    def job(state, token):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["HF_HUB_OFFLINE"] = "1"
        cmd = [sys.executable, "-m", "desktop_app", op, str(source), str(out), "--model", model_id, "--json",
               *(extra_args or [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(REPO_ROOT), text=True, encoding="utf-8", errors="replace")
        lines: queue.Queue = queue.Queue()

        def pump():
            for line in proc.stderr:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, name="postprocess-stderr", daemon=True)
        reader.start()
        last_err = ""
        try:
            while True:
                if token.cancelled:
                    proc.kill()
                    proc.wait(10)
                    raise Cancelled()
                try:
                    line = lines.get(timeout=0.05)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line.strip():
                    last_err = line.strip()
                done, total = _parse_progress(line)
                yield ("progress", done, total, line.split(":", 1)[-1].strip())
            stdout = proc.stdout.read()
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            reader.join(2)
            for s in (proc.stdout, proc.stderr):
                try:
                    s.close()
                except OSError:
                    pass
        if code != 0:
            raise AtelierError(last_err or f"'{op}' failed (exit code {code}).")
        try:
            info = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            info = {}
        from desktop_app.engines.diffusion.metadata import parse_parameters, png_with_metadata

        src_params = source_params
        if src_params is None:  # the gallery had not read it yet (lazy): read it here, off the GUI thread
            try:
                src_params = parse_parameters(source)
            except Exception:  # noqa: BLE001 - a source without metadata is fine
                src_params = None
        params = {k: v for k, v in (src_params or {}).items() if k != "source"}
        params.update({"operation": OPERATIONS[op][1], "source_image": str(source), "postprocess_model": model_id,
                       "width": (info.get("size") or [None, None])[0], "height": (info.get("size") or [None, None])[1]})
        out.write_bytes(png_with_metadata(out.read_bytes(), params))
        yield ("result", out, params, QImage(str(out)))
        return "done"

    return job


def _parse_progress(line: str) -> tuple[int, int]:
    """'upscale: tile 3/8' → (3, 8); 'remove-bg: predict 50%' → (50, 100); else (0, 0)."""
    import re

    m = re.search(r"(\d+)\s*/\s*(\d+)", line)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.search(r"(\d+)\s*%", line)
    if m:
        return int(m.group(1)), 100
    return 0, 0
