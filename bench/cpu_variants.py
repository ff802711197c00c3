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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_q4_model(path: Path, n_layers: int, n_embd: int = 2048, n_ff: int = 5632, n_head: int = 32,
                   n_head_kv: int = 4, n_vocab: int = 32000) -> Path:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("random-q4_0")
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(2)  # MOSTLY_Q4_0
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    tokens += [f"\u2581t{i}".encode() for i in range(n_vocab - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
        [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (n_vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    cache: dict[tuple, np.ndarray] = {}

    def q(name: str, rows: int, cols: int) -> None:
        if (rows, cols) not in cache:  # one random matrix per shape: the values do not change the speed
            cache[(rows, cols)] = quantize((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32), Q.Q4_0)
        w.add_tensor(name, cache[(rows, cols)], raw_dtype=Q.Q4_0)  # shape from the bytes per row

    head = n_embd // n_head
    q("token_embd.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    q("output.weight", n_vocab, n_embd)
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        q(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        q(f"blk.{i}.attn_k.weight", head * n_head_kv, n_embd)
        q(f"blk.{i}.attn_v.weight", head * n_head_kv, n_embd)
        q(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        q(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        q(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        q(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


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
