"""Paths (portable mode), settings, library records, model-file checks, logging."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.core.library import Library, ModelRecord, slugify
from desktop_app.core.model_files import check_gguf_header, read_safetensors_header, record_for_path
from desktop_app.core.paths import get_paths
from desktop_app.core.settings import Settings
from desktop_app.core.starter import STARTER_ID, ensure_starter_registered


def test_atelier_home_puts_everything_under_one_folder(atelier_home):
    p = get_paths()
    assert p.portable
    for d in (p.config, p.data, p.models, p.cache, p.logs):
        assert d.is_dir() and Path(atelier_home) in d.parents
    assert oct(p.data.stat().st_mode & 0o777) == oct(0o700)


def test_platformdirs_used_without_atelier_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ATELIER_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    p = get_paths(create=False)
    assert not p.portable
    assert str(p.data).startswith(str(tmp_path / "xdg-data")) and p.data.name == "Atelier"
    assert str(p.config).startswith(str(tmp_path / "xdg-config"))


def test_settings_roundtrip_and_offline_env(monkeypatch):
    s = Settings()
    assert s.offline is False
    s.set("offline", True)
    assert Settings().offline is True
    Settings().set("offline", False)
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    assert Settings().offline is True
    with pytest.raises(KeyError):
        s.get("no_such_option")


def test_library_add_get_resolve_remove(tmp_path):
    lib = Library()
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\0" * 16)
    rec = lib.add(ModelRecord(id="org/repo/m.gguf", task="chat", format="gguf", path=str(f), size_bytes=24))
    assert lib.get("org/repo/m.gguf") == rec
    assert lib.resolve(str(f)).id == "org/repo/m.gguf"
    assert lib.resolve("org/repo/m.gguf").path == str(f)
    with pytest.raises(AtelierError, match="not an id in the library"):
        lib.resolve("nope")
    assert lib.delete("org/repo/m.gguf") == 0  # not managed: only unregistered
    assert f.exists() and lib.get("org/repo/m.gguf") is None
    with pytest.raises(ValueError):
        lib.add(ModelRecord(id="x", task="video", format="gguf", path="x", size_bytes=0))


def test_library_delete_managed_frees_space(tmp_path):
    lib = Library()
    f = get_paths().models / "owned.gguf"
    f.write_bytes(b"x" * 1000)
    lib.add(ModelRecord(id="owned", task="chat", format="gguf", path=str(f), size_bytes=1000, managed=True))
    assert lib.delete("owned") == 1000
    assert not f.exists()


def test_slugify():
    assert slugify("Llama-3.2-1B-Instruct-Q4_K_M.gguf") == "llama-3.2-1b-instruct-q4_k_m.gguf"
    assert slugify("  ") == "model"


def test_starter_model_registered_once(starter_model):
    rec = ensure_starter_registered()
    assert rec.id == STARTER_ID == slugify(starter_model.name)  # the contract's id for a local file
    assert Path(rec.path) == starter_model and rec.task == "chat"
    ensure_starter_registered()
    assert [r.id for r in Library().list()] == [STARTER_ID]


def test_pickle_refused_unless_opted_in(tmp_path):
    ck = tmp_path / "model.ckpt"
    ck.write_bytes(b"\x80\x04junk")
    with pytest.raises(ModelFormatError, match="pickle"):
        record_for_path(ck)


def test_bad_gguf_and_safetensors_headers(tmp_path, starter_model):
    assert check_gguf_header(starter_model) == 3
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" * 10)
    with pytest.raises(ModelFormatError, match="not a GGUF"):
        record_for_path(bad)
    st = tmp_path / "t.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    st.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    assert "w" in read_safetensors_header(st)
    st.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)  # truncated
    with pytest.raises(ModelFormatError, match="truncated"):
        read_safetensors_header(st)
    st.write_bytes(b"\xff" * 20)
    with pytest.raises(ModelFormatError):
        read_safetensors_header(st)


def test_logging_goes_to_rotating_file():
    import logging

    from desktop_app.core import logs

    logs._configured = False
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.setup_logging()
        logging.getLogger("atelier.test").warning("hello log")
        for h in root.handlers:
            h.flush()
        assert "hello log" in logs.log_file().read_text()
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
                h.close()
        logs._configured = False


def test_truncated_gguf_is_refused_at_registration(tmp_path, starter_model):
    """A header-complete but data-truncated GGUF (an interrupted copy) is never registered."""
    data = starter_model.read_bytes()
    for cut in (5_000, 50_000_000):
        bad = tmp_path / f"cut-{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError, match="truncated|corrupt"):
            record_for_path(bad)
    rec = record_for_path(starter_model)
    assert rec.format == "gguf" and rec.quantization == "Q4_1" and rec.family == "llama"


def test_hand_edited_settings_of_the_wrong_type_fall_back_with_a_message(tmp_path):
    """Issue 10: a string where an int belongs is never used, and it is said in words."""
    import json

    from desktop_app.core.errors import AtelierError
    from desktop_app.core.settings import Settings

    p = tmp_path / "settings.json"
    p.write_text(json.dumps({"vram_reserve_mib": "lots", "offline": "yes", "extra_model_dirs": [1, 2],
                             "context_overflow": "stop"}))
    s = Settings(p)
    assert s.get("vram_reserve_mib") == 512 and s.get("offline") is False and s.get("extra_model_dirs") == []
    assert s.get("context_overflow") == "stop"
    assert len(s.problems) == 3 and any("'vram_reserve_mib' must be a whole number" in x for x in s.problems)
    with pytest.raises(AtelierError, match="must be true or false"):
        s.set("offline", "no")
    p.write_text("[1, 2")
    assert "not a valid settings file" in Settings(p).problems[0]
