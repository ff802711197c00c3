"""Streamed decode speed through `atelier serve` (the official openai client) ÷ the same model
through the app's own engine (ChatEngineProcess, as the Chat tab drives it), interleaved, same
prompt, greedy, N tokens. Goal ≥ 0.95. The last stdout line is one JSON object.

    .venv/bin/python bench/server.py [--tokens 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "Tell a long story about a lighthouse keeper and the sea."


def rate(times: list[float]) -> float:
    """Tokens per second after the first token (decode rate, as the app's stats count it)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0


def via_server(client, model: str, n: int) -> float:
    times = []
    for ch in client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                             max_tokens=n, temperature=0.0, seed=1, stream=True):
        if ch.choices and ch.choices[0].delta.content:
            times.append(time.perf_counter())
    return rate(times)


def via_app(engine, n: int) -> float:
    times = []
    for ev in engine.chat([{"role": "user", "content": PROMPT}], {"max_tokens": n, "temperature": 0.0, "seed": 1}):
        if ev.type == "answer" and ev.text:
            times.append(time.perf_counter())
    return rate(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from openai import OpenAI

    from desktop_app.core.starter import STARTER_ID, ensure_starter_registered
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    home = tempfile.mkdtemp(prefix="atelier-bench-serve-")
    os.environ["ATELIER_HOME"] = home
    rec = ensure_starter_registered()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "desktop_app", "serve", "--port", str(port)], cwd=ROOT,
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)
    engine = ChatEngineProcess()
    try:
        for _ in range(100):
            try:
                client.models.list()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        engine.load(LoadConfig.for_model(rec.path, model_id=rec.id))
        via_server(client, STARTER_ID, 8), via_app(engine, 8)  # warm-up: both models loaded
        srv, app = [], []
        for _ in range(args.runs):
            srv.append(via_server(client, STARTER_ID, args.tokens))
            app.append(via_app(engine, args.tokens))
    finally:
        engine.unload()
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
    s_med, a_med = statistics.median(srv), statistics.median(app)
    print(json.dumps({"bench": "server", "metric": "streamed decode tok/s through atelier serve (openai client)",
                      "value": round(s_med, 2), "baseline": round(a_med, 2),
                      "baseline_what": "the same model through the app's engine (ChatEngineProcess)",
                      "ratio": round(s_med / a_med, 3) if a_med else None, "goal_ratio": 0.95,
                      "runs_server": [round(x, 2) for x in srv], "runs_app": [round(x, 2) for x in app],
                      "tokens": args.tokens, "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
