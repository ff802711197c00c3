"""Adaptive decode threads under contention (issue 11): the app's engine on the starter model while
one other process keeps a core busy, with adaptive threads on (the default) and off (all cores
throughout, llama.cpp's own choice), interleaved; and both without the busy process, to show the
governor costs nothing when the machine is free.

Usage: python bench/contention.py [--pairs 5] [--tokens 256]. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]


def _spin() -> None:
    while True:
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args(argv)
    from desktop_app.core.starter import starter_model_path
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    model = starter_model_path()
    engines = {}
    for name, adaptive in (("adaptive", True), ("fixed", False)):
        eng = ChatEngineProcess()
        eng.load(LoadConfig.for_model(model, n_ctx=2048, settings={}, adaptive_threads=adaptive))
        engines[name] = eng
    params = {"max_tokens": args.tokens, "temperature": 0.0, "seed": 1, "repeat_penalty": 1.0}
    res: dict[str, list[float]] = {f"{k}_{load}": [] for k in engines for load in ("busy", "free")}
    changes = []
    try:
        for eng in engines.values():
            eng.complete(PROMPT, dict(params, max_tokens=16))
        for load in ("free", "busy"):
            spinner = None
            if load == "busy":
                spinner = mp.get_context("spawn").Process(target=_spin, daemon=True)
                spinner.start()
            try:
                for i in range(args.pairs):
                    order = list(engines) if i % 2 == 0 else list(engines)[::-1]
                    for name in order:
                        st = engines[name].complete(PROMPT, params)
                        res[f"{name}_{load}"].append(st.tokens_per_s or 0.0)
                        if name == "adaptive":
                            changes.append((load, len(st.threads or [])))
                    print(f"[contention] {load} pair {i + 1}: " + ", ".join(
                        f"{k} {v[-1]:.1f}" for k, v in res.items() if k.endswith(load)), file=sys.stderr)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.join()
    finally:
        for eng in engines.values():
            eng.unload()
    med = {k: round(statistics.median(v), 2) for k, v in res.items()}
    out = {"bench": "contention", "model": model.name, "tokens": args.tokens, "pairs": args.pairs,
           **{f"{k}_tokens_per_s": v for k, v in med.items()},
           "busy_ratio_adaptive_vs_fixed": round(med["adaptive_busy"] / med["fixed_busy"], 3),
           "free_ratio_adaptive_vs_fixed": round(med["adaptive_free"] / med["fixed_free"], 3),
           "thread_changes_per_reply_busy": [n for load, n in changes if load == "busy"],
           "thread_changes_per_reply_free": [n for load, n in changes if load == "free"]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
