"""Pull a 2.4 MB model onto the (small) file system ATELIER_HOME lives on, from a fake hub on
127.0.0.1, with a disk probe that claims plenty of room; print one JSON line with the outcome."""

from __future__ import annotations

import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from desktop_app.core.logs import setup_logging
    from desktop_app.core.settings import Settings
    from desktop_app.hub.downloads import pull
    from tests.helpers import write_tiny_llama_gguf
    from tests.hub.fake_hub import FakeHub

    setup_logging()
    captured = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(captured))
    gguf = write_tiny_llama_gguf(Path(tempfile.mkdtemp()) / "t.gguf").read_bytes()
    hub = FakeHub()
    hub.add_repo("testorg/Big-GGUF", {"big-Q4_K_M.gguf": gguf + bytes(range(256)) * 8192}, tags=["gguf"])
    hub.start()
    Settings().set("hf_endpoint", hub.url)
    events = []
    t0 = time.monotonic()
    out: dict = {"error": "", "error_type": ""}
    try:
        pull("testorg/Big-GGUF", "big-Q4_K_M.gguf", on_progress=events.append, disk_probe=lambda _p: 10**12)
    except Exception as exc:  # noqa: BLE001 - reported
        out["error"], out["error_type"] = str(exc), type(exc).__name__
    out["seconds"] = round(time.monotonic() - t0, 3)
    out["retries"] = sum(1 for e in events if e.state == "retrying")
    out["traceback_lines_on_stderr"] = captured.getvalue().count("Traceback")
    hub.stop()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
