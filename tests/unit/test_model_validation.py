"""Files that parse but cannot work are refused at import with the reason; counts read from a file
are bounded before anything is allocated (issue 9, items 4 and 8)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from desktop_app.core.errors import ModelFormatError
from desktop_app.core.gguf_meta import read_gguf_metadata
from desktop_app.core.model_files import read_safetensors_header, record_for_path
from tests.helpers import write_tiny_llama_gguf


def _set_u32_key(path, key: str, value: int) -> None:
    """Overwrite a u32 metadata value in place (same length: the file stays valid otherwise)."""
    data = bytearray(path.read_bytes())
    k = key.encode()
    i = data.index(struct.pack("<Q", len(k)) + k) + 8 + len(k)
    assert struct.unpack_from("<I", data, i)[0] == 4  # UINT32
    struct.pack_into("<I", data, i + 4, value)
    path.write_bytes(bytes(data))


def test_a_huge_block_count_is_refused_without_allocating(tmp_path):
    p = write_tiny_llama_gguf(tmp_path / "m.gguf")
    _set_u32_key(p, "llama.block_count", 400_000_000)
    tracemalloc.start()
    with pytest.raises(ModelFormatError, match="400,000,000 layers"):
        read_gguf_metadata(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_cli_fit_on_a_huge_block_count_prints_one_line(tmp_path, atelier_home):
    p = write_tiny_llama_gguf(tmp_path / "m.gguf")
    _set_u32_key(p, "llama.block_count", 400_000_000)
    r = subprocess.run([sys.executable, "-m", "desktop_app", "models", "fit", str(p)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "layers" in r.stderr and len(r.stderr.strip().splitlines()) == 1


MUTANTS = {
    "nan-eps": dict(rms_eps=float("nan")),
    "negative-eps": dict(rms_eps=-1.0),
    "zero-eps": dict(rms_eps=0.0),
    "1000-layers": dict(header_block_count=1000),
    "0-layers": dict(header_block_count=0),
    "3-layers-of-2": dict(header_block_count=3),
    "int8-norm": dict(norm_dtype=np.int8),
    "f16-norm": dict(norm_dtype=np.float16),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_gguf_mutants_are_refused_at_import(tmp_path, name):
    p = write_tiny_llama_gguf(tmp_path / f"{name}.gguf", **MUTANTS[name])
    with pytest.raises(ModelFormatError) as exc:
        record_for_path(p)
    msg = str(exc.value)
    assert "cannot be used" in msg or "corrupt" in msg
    assert "\n" not in msg and "Error" not in msg.split(":")[0]


def test_gguf_head_count_zero_is_refused(tmp_path):
    p = write_tiny_llama_gguf(tmp_path / "h.gguf")
    _set_u32_key(p, "llama.attention.head_count", 0)
    with pytest.raises(ModelFormatError, match="head_count is 0"):
        record_for_path(p)


def test_a_good_gguf_still_imports(tmp_path):
    rec = record_for_path(write_tiny_llama_gguf(tmp_path / "good.gguf"))
    assert rec.format == "gguf" and rec.task == "chat"


def _safetensors(path, header: dict | str, data: bytes = b"") -> object:
    raw = header if isinstance(header, str) else json.dumps(header)
    h = raw.encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
ST_MUTANTS = {
    "unknown-dtype": {"w": {"dtype": "F99", "shape": [2, 2], "data_offsets": [0, 16]}},
    "null-dtype": {"w": {"dtype": None, "shape": [2, 2], "data_offsets": [0, 16]}},
    "negative-shape": {"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}},
    "float-shape": {"w": {"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]}},
    "reversed-offsets": {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]}},
    "beyond-file": {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1 << 40]}},
    "wrong-length": {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}},
    "overlap": {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
    "not-object": {"w": [1, 2, 3]},
    "bad-metadata": {"__metadata__": {"a": 1}, **GOOD},
    "duplicate-keys": '{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, '
                      '"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}',
    "deep-nesting": '{"w": ' + "[" * 100000 + "]" * 100000 + "}",
}


@pytest.mark.parametrize("name", list(ST_MUTANTS))
def test_safetensors_mutants_are_refused(tmp_path, name):
    p = _safetensors(tmp_path / f"{name}.safetensors", ST_MUTANTS[name], b"\0" * 16)
    with pytest.raises(ModelFormatError) as exc:
        read_safetensors_header(p)
    assert "\n" not in str(exc.value) and p.name in str(exc.value)


def test_a_good_safetensors_header_passes(tmp_path):
    p = _safetensors(tmp_path / "ok.safetensors", GOOD, b"\0" * 16)
    assert set(read_safetensors_header(p)) == {"w"}


def test_discovery_skips_mutants_with_the_reason(tmp_path):
    from desktop_app.hub.discovery import scan_gpt4all, scan_lmstudio

    lms = tmp_path / "lms" / "org" / "repo"
    write_tiny_llama_gguf(lms / "good.gguf")
    write_tiny_llama_gguf(lms / "bad.gguf", rms_eps=float("nan"))
    found = list(scan_lmstudio([tmp_path / "lms"]))
    recs = [r for r, _s in found if r is not None]
    skipped = [s for _r, s in found if s is not None]
    assert [Path(r.path).name for r in recs] == ["good.gguf"]
    assert len(skipped) == 1 and "bad.gguf" in skipped[0].path and "epsilon" in skipped[0].reason
    g4a = tmp_path / "g4a"
    write_tiny_llama_gguf(g4a / "x.gguf", header_block_count=1000)
    (s,) = [s for _r, s in scan_gpt4all([g4a])]
    assert "1,000 layers" in s.reason
