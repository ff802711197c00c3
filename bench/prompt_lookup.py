"""Prompt-lookup decoding (issue 11): the app's engine on the starter model with the option on and
off, on a task whose reply repeats its input (edit a block of code: the reply copies most of it)
and on one that does not (a story), interleaved. Greedy, so both sides write the same text.

Usage: python bench/prompt_lookup.py [--pairs 5] [--tokens 160]. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CODE = '''def total_price(items, tax_rate):
    subtotal = 0
    for item in items:
        subtotal += item["price"] * item["quantity"]
    tax = subtotal * tax_rate
    return subtotal + tax


def average_price(items):
    if not items:
        return 0
    return sum(item["price"] for item in items) / len(items)
'''
TASKS = {
    "repeat": [{"role": "user", "content": "Rename the function total_price to order_total and repeat the whole "
                                           "code unchanged otherwise:\n\n" + CODE}],
    "story": [{"role": "user", "content": "Tell me a story about a lighthouse keeper and a storm."}],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=160)
    args = ap.parse_args(argv)
    from desktop_app.core.starter import starter_model_path
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    model = starter_model_path()
    engines = {}
    for name, on in (("lookup", True), ("plain", False)):
        eng = ChatEngineProcess()
        eng.load(LoadConfig.for_model(model, n_ctx=2048, settings={}, prompt_lookup=on))
        engines[name] = eng
    params = {"max_tokens": args.tokens, "temperature": 0.0, "seed": 1, "repeat_penalty": 1.0}
    rates: dict[str, list[float]] = {f"{t}_{e}": [] for t in TASKS for e in engines}
    same = {}
    try:
        for eng in engines.values():
            eng.complete(TASKS["story"], dict(params, max_tokens=8))
        for i in range(args.pairs):
            for task, msgs in TASKS.items():
                texts = {}
                for name in (list(engines) if i % 2 == 0 else list(engines)[::-1]):
                    st = engines[name].complete(msgs, params)
                    # tokens over the whole reply time: drafted tokens arrive in bursts
                    rates[f"{task}_{name}"].append(st.tokens / max(1e-6, st.total_s - (st.ttft_s or 0)))
                    texts[name] = st.text
                same[task] = texts["lookup"] == texts["plain"]
            print(f"[prompt_lookup] pair {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()),
                  file=sys.stderr)
    finally:
        for eng in engines.values():
            eng.unload()
    med = {k: round(statistics.median(v), 2) for k, v in rates.items()}
    out = {"bench": "prompt_lookup", "model": model.name, "tokens": args.tokens, "pairs": args.pairs,
           **{f"{k}_tokens_per_s": v for k, v in med.items()},
           "repeat_speedup": round(med["repeat_lookup"] / med["repeat_plain"], 3),
           "story_speedup": round(med["story_lookup"] / med["story_plain"], 3), "same_text": same}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
