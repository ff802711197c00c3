"""Builders for small real test models (no mocks): tiny GGUF files written with gguf.GGUFWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_llama_gguf(
    path: Path,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 2048,
    n_vocab_words: int = 44,
    arch: str = "llama",
    chat_template: str | None = None,
    seed: int = 0,
    rms_eps: float = 1e-5,
    header_block_count: int | None = None,
    norm_dtype=np.float32,
    weights: str = "f32",
) -> Path:
    """A random llama-architecture GGUF (f32 tensors) that llama.cpp loads and generates with.

    ``weights="q4_0"``: the matrices quantised to Q4_0 instead, one random matrix per shape (for
    speed benchmarks of larger shapes, bench/cpu_variants.py: the values do not change the speed).

    Mutants for the hardening tests: ``rms_eps`` (NaN, negative), ``header_block_count`` (a
    layer count in the header that the tensors do not have), ``norm_dtype`` (the type of
    ``output_norm``, e.g. ``np.int8``, which llama.cpp does not accept for a norm)."""
    import gguf

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-test-llama")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers if header_block_count is None else header_block_count)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(rms_eps)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(2 if weights == "q4_0" else 0)  # MOSTLY_Q4_0 / ALL_F32
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for i in range(256):
        tokens.append(f"<0x{i:02X}>".encode())
        types.append(gguf.TokenType.BYTE)
    for i in range(n_vocab_words):
        tokens.append(f"\u2581w{i}".encode())
        types.append(gguf.TokenType.NORMAL)
    n_vocab = len(tokens)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if chat_template:
        w.add_chat_template(chat_template)

    quantised: dict[tuple, np.ndarray] = {}

    def t(name: str, *shape: int) -> None:
        if weights != "q4_0":
            w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
            return
        from gguf.quants import quantize

        if shape not in quantised:
            quantised[shape] = quantize((rng.standard_normal(shape) * 0.02).astype(np.float32),
                                        gguf.GGMLQuantizationType.Q4_0)
        w.add_tensor(name, quantised[shape], raw_dtype=gguf.GGMLQuantizationType.Q4_0)  # shape from the bytes

    t("token_embd.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=norm_dtype))
    t("output.weight", n_vocab, n_embd)
    head_dim = n_embd // n_head
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_k.weight", head_dim * n_head_kv, n_embd)
        t(f"blk.{i}.attn_v.weight", head_dim * n_head_kv, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
