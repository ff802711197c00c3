"""Benchmark: hardware detection time and GGUF header time on a 150k-token vocabulary.

Writes a GGUF with a 152,064-token vocabulary (Qwen-sized) and tiny tensors with gguf.GGUFWriter,
then times, each as the median of several runs in this process:
- ``detect_ms``: ``probe_hardware()`` (uncached detection, what start-up pays);
- ``header_ms``: ``read_gguf_metadata()`` (our header parser);
- ``gguf_reader_ms``: ``gguf.GGUFReader`` on the same file (the baseline; one run, it is slow).
Last line of stdout: one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_TOKENS = 152_064


def write_big_vocab(path: Path, n_tokens: int = N_TOKENS) -> Path:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("bench-150k-vocab")
    w.add_block_count(2)
    w.add_context_length(32768)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(1)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"\u0120tok{i}" for i in range(n_tokens)])
    w.add_token_types([1] * n_tokens)
    w.add_token_merges([f"\u0120t ok{i}" for i in range(n_tokens - 1000)])
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.zeros((16, 64), dtype=np.float16))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
        w.add_tensor(f"blk.{i}.ffn_up.weight", np.zeros((128, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    from desktop_app.core.gguf_meta import read_gguf_metadata
    from desktop_app.core.hardware import probe_hardware

    t = time.perf_counter()
    probe_hardware()  # first, cold: includes the imports (psutil, pynvml) start-up pays
    cold_detect_ms = (time.perf_counter() - t) * 1000
    detect_ms = median_ms(probe_hardware, 7)
    with tempfile.TemporaryDirectory() as d:
        path = write_big_vocab(Path(d) / "vocab150k.gguf")
        info = read_gguf_metadata(path)
        assert info.n_vocab == N_TOKENS, info.n_vocab
        header_ms = median_ms(lambda: read_gguf_metadata(path), 7)
        import gguf

        t = time.perf_counter()
        reader = gguf.GGUFReader(str(path))
        gguf_reader_ms = (time.perf_counter() - t) * 1000
        assert len(reader.fields["tokenizer.ggml.tokens"].data) == N_TOKENS
        size = path.stat().st_size
    result = {
        "detect_ms": round(detect_ms, 1),
        "detect_cold_ms": round(cold_detect_ms, 1),
        "header_ms": round(header_ms, 1),
        "gguf_reader_ms": round(gguf_reader_ms, 1),
        "ratio": round(gguf_reader_ms / header_ms, 1),
        "n_tokens": N_TOKENS,
        "file_bytes": size,
    }
    print(f"hardware detection: {detect_ms:.1f} ms (cold {cold_detect_ms:.1f} ms); GGUF header "
          f"({N_TOKENS} tokens): {header_ms:.1f} ms vs gguf.GGUFReader {gguf_reader_ms:.0f} ms", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
