"""Soak: many chat turns and images in one run of the real app window (offscreen), with the RSS
(the app and its engine children), thread and file-descriptor counts at start, after warm-up and
at the end. Goal: growth < 5 % from warm-up to the end (issue 9).

Chat: the starter model, short replies, a new conversation every 10 turns (so that the context
does not grow without end). Images: a tiny SD 1.5 pipeline at 64x64, 2 steps.

Usage: python bench/soak.py [--turns 500] [--images 100] [--warmup-turns 50] [--warmup-images 10].
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def sample(proc) -> dict:

    kids = proc.children(recursive=True)
    rss_app = proc.memory_info().rss
    rss_kids = sum(k.memory_info().rss for k in kids if k.is_running())
    return {"rss_app_mb": round(rss_app / 2**20, 1), "rss_children_mb": round(rss_kids / 2**20, 1),
            "rss_total_mb": round((rss_app + rss_kids) / 2**20, 1), "threads": proc.num_threads(),
            "fds": proc.num_fds() if hasattr(proc, "num_fds") else None, "children": len(kids)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=500)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--warmup-turns", type=int, default=50)
    ap.add_argument("--warmup-images", type=int, default=10)
    args = ap.parse_args()
    os.environ.setdefault("ATELIER_HOME", tempfile.mkdtemp(prefix="atelier-soak-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import psutil

    from desktop_app.app import create_app

    app = create_app()
    from _app import add_tiny_image_model, build_tiny_sd15, open_window, wait as _wait

    folder = build_tiny_sd15(Path(tempfile.mkdtemp()) / "tiny-sd15")  # torch never loads in this process
    proc = psutil.Process()
    win = open_window(app)

    def wait(cond, timeout):
        return _wait(app, cond, timeout, tick=0.002)

    chat, studio = win.chat_tab, win.studio_tab
    samples = {"start": sample(proc)}
    chat.params.max_tokens.setValue(8)
    chat.params.temperature.setValue(0.0)
    replies: list = []
    chat.reply_finished.connect(replies.append)
    add_tiny_image_model(win, folder)
    images: list = []
    studio.generation_finished.connect(images.append)

    def chat_turns(n: int) -> None:
        for i in range(n):
            if i % 10 == 0:
                chat.new_conversation()
            before = len(replies)
            chat.send(f"Say a word about the number {i}.")
            assert wait(lambda: len(replies) > before, 120), "reply timed out"

    def make_images(n: int) -> None:
        for _ in range(n):
            before = len(images)
            assert studio.generate() is not None
            assert wait(lambda: len(images) > before, 300), "image timed out"

    t0 = time.monotonic()
    chat_turns(args.warmup_turns)
    make_images(args.warmup_images)
    samples["after_warmup"] = sample(proc)
    chat_turns(args.turns - args.warmup_turns)
    make_images(args.images - args.warmup_images)
    samples["end"] = sample(proc)
    seconds = time.monotonic() - t0
    fin = [r.get("finish_reason") for r in replies]
    win.close()
    w, e = samples["after_warmup"], samples["end"]

    def growth(key):
        return round((e[key] - w[key]) / w[key], 4) if w.get(key) else None

    print(json.dumps({
        "bench": "soak", "chat_turns": len(replies), "images": sum(1 for x in images if x == "done"),
        "replies_ok": sum(1 for f in fin if f in ("stop", "length")), "seconds": round(seconds, 1),
        "samples": samples, "growth_after_warmup": {k: growth(k) for k in ("rss_total_mb", "threads", "fds")},
        "goal": "< 0.05 growth after warm-up",
        "baseline": "after_warmup sample of the same run",
        "ratio_end_to_warmup_rss": round(e["rss_total_mb"] / w["rss_total_mb"], 4),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
