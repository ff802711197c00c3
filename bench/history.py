"""Chat history at scale: 10 000 conversations in a temporary ATELIER_HOME, store-side timings.

``make_history(n)`` writes ``n`` conversations (4 messages each, varied words) into the history
of the current ATELIER_HOME and returns the store; the GUI part (the conversation list opening
at once with a lazy model/view) reuses it: see ``gui_list_open`` below, the hook for it.

Times (medians of several runs): opening the store, counting, the first page of the list, a
deep page, a search by text (title or any message, LIKE), a search count, and loading one
conversation's messages. Usage: python bench/history.py [--n 10000]. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = (
    "model context token python river garden invoice patient contract meeting summary recipe "
    "budget travel lighthouse planet network server kernel memory window button report letter "
    "draft review physics history music painting camera coffee weather school thesis chapter"
).split()
NEEDLE = "zebracorn"  # a word present in about 1 % of the conversations


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_history(n: int = 10_000, seed: int = 0, store=None):
    """Fill the history (of ``store``, default: the one in the current ATELIER_HOME) with ``n``
    conversations of 4 messages each, ~1 % of them containing the word ``NEEDLE``. Returns the store."""
    from desktop_app.core.history import HistoryStore

    store = store or HistoryStore()
    rng = random.Random(seed)
    now = time.time()

    def convs():
        for i in range(n):
            t = now - (n - i) * 60
            needle = f" {NEEDLE}" if i % 100 == 7 else ""
            yield {
                "title": f"{_sentence(rng, 4)[:-1]} #{i}",
                "created": t,
                "updated": t + 30,
                "model_id": "smollm2-135m-instruct.q4_1.gguf",
                "messages": [
                    {"role": "user", "content": _sentence(rng, 25) + needle, "created": t},
                    {"role": "assistant", "content": " ".join(_sentence(rng, 12) for _ in range(5)), "created": t + 5},
                    {"role": "user", "content": _sentence(rng, 15), "created": t + 20},
                    {"role": "assistant", "content": " ".join(_sentence(rng, 12) for _ in range(4)), "created": t + 30},
                ],
            }

    store.import_conversations(convs())
    return store


def gui_list_open(store) -> dict | None:
    """HOOK for the GUI figure (added by the chat-tab work): open the real conversation list on
    ``store`` (10 000 rows, lazy model/view) and return e.g. ``{"list_open_ms": …}``. None here."""
    return None


def _median_ms(fn, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="atelier-history-bench-")
    os.environ["ATELIER_HOME"] = home

    from desktop_app.core.history import HistoryStore
    from desktop_app.core.paths import get_paths

    t = time.perf_counter()
    make_history(args.n).close()
    make_s = time.perf_counter() - t
    db = get_paths().data / "history.sqlite3"
    print(f"wrote {args.n} conversations in {make_s:.2f} s ({db.stat().st_size / 2**20:.1f} MiB)", flush=True)

    open_ms = _median_ms(lambda: HistoryStore().close(), reps=5)
    store = HistoryStore()
    first = store.list_conversations(limit=1)[0]
    figures = {
        "open_ms": open_ms,
        "count_ms": _median_ms(store.count_conversations),
        "list_first_page_ms": _median_ms(lambda: store.list_conversations(limit=100)),
        "list_deep_page_ms": _median_ms(lambda: store.list_conversations(limit=100, offset=args.n - 100)),
        "search_ms": _median_ms(lambda: store.list_conversations(search=NEEDLE, limit=100)),
        "search_count_ms": _median_ms(lambda: store.count_conversations(search=NEEDLE)),
        "search_common_word_ms": _median_ms(lambda: store.list_conversations(search="lighthouse", limit=100)),
        "messages_ms": _median_ms(lambda: store.messages(first.id)),
    }
    hits = store.count_conversations(search=NEEDLE)
    gui = gui_list_open(store)
    store.close()
    for k, v in figures.items():
        print(f"{k:>24}: {v:.2f} ms")
    result = {
        "bench": "history",
        "conversations": args.n,
        "messages": args.n * 4,
        "db_bytes": db.stat().st_size,
        "make_s": round(make_s, 3),
        "search_hits": hits,
        **figures,
        "gui": gui,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
