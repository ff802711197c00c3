"""Zero sockets in offline use: every connect() and sendto() of the app and all its children, traced
by strace -f, over a GUI session (start-up, a chat turn on the starter model, an image on a tiny
pipeline, close) and the CLI (doctor, catalog, run, imagine). Goal: 0 non-loopback connects.

Baseline, side by side: the same tracer over `python -c "import socket; socket.create_connection(
('192.0.2.1', 9), timeout=0.01)"` must count exactly one (proves the tracer sees connects).

Usage: python bench/sockets.py. Needs strace (Debian package strace). Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_INET = re.compile(r'sa_family=AF_INET6?, .*?(?:sin_addr=inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


def session() -> int:
    """The GUI part: run in the traced process."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from desktop_app.app import create_app

    app = create_app()
    from _app import add_tiny_image_model, open_window, wait

    folder = Path(sys.argv[sys.argv.index("--session") + 1])  # built by the parent: only the app is traced
    win = open_window(app)
    chat, studio = win.chat_tab, win.studio_tab
    chat.params.max_tokens.setValue(16)
    done = []
    chat.reply_finished.connect(done.append)
    chat.send("Hello!")
    assert wait(app, lambda: bool(done), 180), "no chat reply"
    add_tiny_image_model(win, folder)
    ended = []
    studio.generation_finished.connect(ended.append)
    studio.generate()
    assert wait(app, lambda: bool(ended), 300) and ended[0] == "done", ended
    win.close()
    print(json.dumps({"chat": done[0].get("finish_reason"), "image": ended[0]}))
    return 0


def traced(argv: list[str], env: dict, log: Path) -> tuple[int, str]:
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log), *argv],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    return r.returncode, r.stdout + r.stderr


def count(log: Path) -> tuple[int, int, list[str]]:
    """(connects, non-loopback connects, examples) in an strace log."""
    total, outside, examples = 0, 0, []
    for line in log.read_text(errors="replace").splitlines():
        if "connect(" not in line and "sendto(" not in line and "sendmsg(" not in line:
            continue
        m = _INET.search(line)
        if not m:
            continue  # AF_UNIX, AF_NETLINK: not the network
        total += 1
        addr = m.group(1) or m.group(2)
        if not (addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1")):
            outside += 1
            examples.append(line.strip()[:200])
    return total, outside, examples


def main() -> int:
    if "--session" in sys.argv:
        return session()
    if shutil.which("strace") is None:
        print("strace is not installed (apt-get install strace)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="atelier-sockets-"))
    env = dict(os.environ, ATELIER_HOME=str(tmp / "home"), QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    env.pop("HF_ENDPOINT", None)
    py = sys.executable
    from _app import build_tiny_sd15

    pipe = build_tiny_sd15(tmp / "tiny-sd15")
    runs = {
        "gui_session": [py, __file__, "--session", str(pipe)],
        "doctor": [py, "-m", "desktop_app", "doctor", "--json"],
        "catalog": [py, "-m", "desktop_app", "models", "catalog"],
        "run": [py, "-m", "desktop_app", "run", "--prompt", "Hello", "--max-tokens", "8"],
        "imagine": [py, "-m", "desktop_app", "imagine", "--model", str(pipe), "--prompt", "a fox", "--steps", "2",
                    "--size", "64x64", "--out", str(tmp / "fox.png")],
    }
    results = {}
    for name, argv in runs.items():
        log = tmp / f"{name}.strace"
        rc, out = traced(argv, env, log)
        total, outside, ex = count(log)
        results[name] = {"exit": rc, "inet_connects": total, "non_loopback": outside, "examples": ex[:3]}
        print(json.dumps({name: results[name]}), flush=True)
        if rc != 0:
            print(out[-1500:], file=sys.stderr)
    base_log = tmp / "baseline.strace"
    traced([py, "-c", "import socket\ntry:\n socket.create_connection(('192.0.2.1', 9), timeout=0.01)\n"
            "except OSError: pass"], env, base_log)
    base = count(base_log)[1]
    app_total = sum(r["non_loopback"] for r in results.values())
    print(json.dumps({"bench": "sockets", "non_loopback_connects": app_total, "goal": 0,
                      "all_exit_0": all(r["exit"] == 0 for r in results.values()),
                      "baseline_probe_connects": base, "baseline_expected": 1,
                      "ratio": round(app_total / base, 3) if base else None,
                      "runs": {k: v["non_loopback"] for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
