"""The fast GGUF header reader, checked against gguf.GGUFReader and on malformed files."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from desktop_app.core.errors import ModelFormatError
from desktop_app.core.gguf_meta import GGML_TYPES, read_gguf_metadata
from tests.helpers import write_tiny_llama_gguf


def _reader_view(path: Path):
    """What gguf.GGUFReader sees: scalar/string keys, array lengths, tensors."""
    import gguf

    r = gguf.GGUFReader(str(path))
    scalars, lengths = {}, {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            lengths[k] = len(f.data)
        else:
            v = f.contents()
            scalars[k] = v
    tensors = [(t.name, tuple(int(x) for x in t.shape), int(t.tensor_type), int(t.n_bytes)) for t in r.tensors]
    return scalars, lengths, tensors, r.data_offset


def _assert_same_as_reader(path: Path):
    info = read_gguf_metadata(path)
    scalars, lengths, tensors, data_offset = _reader_view(path)
    for k, v in scalars.items():
        got = info.metadata[k]
        if isinstance(v, float):
            assert got == pytest.approx(v), k
        else:
            assert got == v, k
    assert info.array_lengths == lengths
    assert [(t.name, t.shape, t.type_id, t.n_bytes) for t in info.tensors] == tensors
    assert info.data_offset == data_offset
    return info


def test_tiny_model_matches_gguf_reader(tmp_path):
    p = write_tiny_llama_gguf(tmp_path / "t.gguf", n_layers=3, chat_template="{{ messages[0]['content'] }}")
    info = _assert_same_as_reader(p)
    assert (info.architecture, info.n_layers, info.n_embd, info.n_head, info.n_head_kv) == ("llama", 3, 64, 4, 2)
    assert (info.head_dim_k, info.head_dim_v, info.context_length, info.n_ff) == (16, 16, 2048, 128)
    assert info.n_vocab == 3 + 256 + 44
    assert info.quantization == "F32" and info.file_type == 0
    assert info.chat_template == "{{ messages[0]['content'] }}"
    assert len(info.layer_bytes) == 3 and len(set(info.layer_bytes)) == 1
    assert info.total_tensor_bytes == sum(info.layer_bytes) + info.non_layer_bytes
    assert not info.tied_output and info.token_embd_bytes == info.n_vocab * 64 * 4


@pytest.mark.slow
def test_starter_model_matches_gguf_reader(starter_model):
    info = _assert_same_as_reader(starter_model)
    assert info.architecture == "llama" and info.quantization == "Q4_1"
    assert (info.n_layers, info.n_embd, info.n_head, info.n_head_kv, info.n_vocab) == (30, 576, 9, 3, 49152)
    assert info.context_length == 8192 and "im_start" in info.chat_template
    assert info.tied_output  # SmolLM2 ties the output head to the token embedding


def test_starter_model_header_is_fast(starter_model):
    t = time.perf_counter()
    info = read_gguf_metadata(starter_model)
    assert time.perf_counter() - t < 0.5
    assert info.total_tensor_bytes == 96576768  # llama.cpp: "CPU_Mapped model buffer size = 92.10 MiB"
    assert info.array_lengths["tokenizer.ggml.tokens"] == 49152
    assert info.metadata["tokenizer.ggml.tokens"] is None  # skipped, not materialised


def _big_vocab_gguf(path: Path, n_tokens: int) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_block_count(1)
    w.add_context_length(32768)
    w.add_embedding_length(32)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(n_tokens)])
    w.add_token_types([1] * n_tokens)
    w.add_token_merges([f"t o{i}" for i in range(n_tokens // 2)])
    w.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_150k_vocabulary_reads_well_under_a_second(tmp_path):
    p = _big_vocab_gguf(tmp_path / "big.gguf", 150_000)
    t = time.perf_counter()
    info = read_gguf_metadata(p)
    elapsed = time.perf_counter() - t
    assert elapsed < 0.5, f"{elapsed:.2f} s"
    assert info.n_vocab == 150_000 and info.array_lengths["tokenizer.ggml.merges"] == 75_000
    assert info.quantization == "F16"  # no general.file_type: the majority tensor type
    assert info.layer_bytes == [32 * 32 * 2] and info.non_layer_bytes == 8 * 32 * 2


def test_quant_table_matches_gguf():
    import gguf

    for type_id, (name, block, size) in GGML_TYPES.items():
        qt = gguf.GGMLQuantizationType(type_id)
        assert qt.name == name
        assert gguf.GGML_QUANT_SIZES[qt] == (block, size)


# --- malformed files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("g") / "g.gguf").read_bytes()


def test_every_truncation_is_a_clear_error(good_bytes, tmp_path):
    p = tmp_path / "cut.gguf"
    cuts = list(range(0, 64)) + list(range(64, len(good_bytes), max(1, len(good_bytes) // 97))) + [len(good_bytes) - 1]
    for n in cuts:
        p.write_bytes(good_bytes[:n])
        with pytest.raises(ModelFormatError) as err:
            read_gguf_metadata(p)
        msg = str(err.value)
        assert "cut.gguf" in msg and ("truncated" in msg or "not a GGUF" in msg or "corrupt" in msg), (n, msg)


def test_corrupt_lengths_never_hang(good_bytes, tmp_path):
    p = tmp_path / "bad.gguf"
    # a first key whose length claims 2**62 bytes
    bad = bytearray(good_bytes)
    bad[24:32] = struct.pack("<Q", 2**62)
    p.write_bytes(bytes(bad))
    with pytest.raises(ModelFormatError, match="corrupt|truncated"):
        read_gguf_metadata(p)
    # absurd tensor / key counts
    bad = bytearray(good_bytes)
    bad[8:16] = struct.pack("<Q", 2**60)
    p.write_bytes(bytes(bad))
    with pytest.raises(ModelFormatError, match="claims"):
        read_gguf_metadata(p)
    # every byte of the header flipped in turn: an error or a result, never anything else
    info = read_gguf_metadata(write_tiny_llama_gguf(tmp_path / "ok.gguf"))
    rng = np.random.default_rng(1)
    for pos in rng.integers(4, info.data_offset, 150):
        bad = bytearray(good_bytes)
        bad[pos] ^= 0xFF
        p.write_bytes(bytes(bad))
        try:
            read_gguf_metadata(p)
        except ModelFormatError:
            pass


def test_not_gguf_and_missing(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="not a GGUF"):
        read_gguf_metadata(p)
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelFormatError, match="bad magic"):
        read_gguf_metadata(p)
    p.write_bytes(b"GGUF" + struct.pack("<I", 99) + b"\0" * 100)
    with pytest.raises(ModelFormatError, match="version 99"):
        read_gguf_metadata(p)
    with pytest.raises(ModelFormatError, match="No such file"):
        read_gguf_metadata(tmp_path / "missing.gguf")
    with pytest.raises(ModelFormatError, match="folder"):
        read_gguf_metadata(tmp_path)
