"""Would a CPU-specific llama.cpp build pay (issue 11: runtime-dispatched CPU variants)? On a
larger quantised model than the starter, ``llama-bench`` of the portable build (the wheel's flags,
from bench/native.py's cache) against a ``-DGGML_NATIVE=ON`` build of the same source (the best
variant a dispatching build could pick on this CPU), interleaved.

The model is a random llama-architecture GGUF with Q4_0 weights written here with gguf-py (about
1.1 B parameters by default: speed depends on the shapes and the quantisation, not the values).

The native build, from the same llama.cpp (the wheel's sdist, vendor/llama.cpp):
    cmake -S vendor/llama.cpp -B build -G Ninja -DGGML_NATIVE=ON -DLLAMA_BUILD_TOOLS=ON \
          -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release
    cmake --build build --target llama-bench
Measured here (AMD EPYC Zen 4, AVX512 + BF16 + VNNI, 2 threads, 1.1 B Q4_0): decode 1.11x,
prompt 2.40x: a dispatching build would pay for itself on prompts.

Usage: python bench/cpu_variants.py --native PATH/llama-bench [--rounds 3] [--layers 22].
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_q4_model(path: Path, n_layers: int) -> Path:
    """A 1.1 B-parameter-shaped llama (TinyLlama's shapes) with random Q4_0 weights."""
    from tests.helpers import write_tiny_llama_gguf

    return write_tiny_llama_gguf(path, n_layers=n_layers, n_embd=2048, n_head=32, n_head_kv=4, n_ff=5632,
                                 n_ctx=4096, n_vocab_words=32000 - 259, weights="q4_0")


def run(exe: str, model: Path, threads: int) -> dict:
    out = subprocess.run([exe, "-m", str(model), "-t", str(threads), "-p", "256", "-n", "32", "-r", "1", "-o", "json"],
                         capture_output=True, text=True, check=True, timeout=900)
    return {("pp" if r.get("n_prompt") else "tg"): r["avg_ts"] for r in json.loads(out.stdout)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--native", required=True, help="a llama-bench built with -DGGML_NATIVE=ON")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=22)
    args = ap.parse_args(argv)
    from bench.native import llama_bench
    from desktop_app.core.cpu_threads import auto_threads

    portable = str(llama_bench())
    with tempfile.TemporaryDirectory() as tmp:
        model = write_q4_model(Path(tmp) / "random-q4_0.gguf", args.layers)
        size = model.stat().st_size
        res: dict[str, list[dict]] = {"portable": [], "native": []}
        for r in range(args.rounds):
            for name in (["portable", "native"] if r % 2 == 0 else ["native", "portable"]):
                res[name].append(run(portable if name == "portable" else args.native, model, auto_threads()))
            print(f"[cpu_variants] round {r + 1}: " + ", ".join(f"{k} tg {v[-1]['tg']:.1f} pp {v[-1]['pp']:.1f}"
                                                              for k, v in res.items()), file=sys.stderr)
    med = {f"{k}_{m}_ts": round(statistics.median(x[m] for x in v), 2) for k, v in res.items() for m in ("tg", "pp")}
    print(json.dumps({"bench": "cpu_variants", "model_bytes": size, "layers": args.layers, "threads": auto_threads(),
                      **med, "native_vs_portable_tg": round(med["native_tg_ts"] / med["portable_tg_ts"], 3),
                      "native_vs_portable_pp": round(med["native_pp_ts"] / med["portable_pp_ts"], 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
