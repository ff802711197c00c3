"""Hub client against the fake hub: search, files, errors, token, offline switch (no socket)."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_app.core.errors import OfflineError
from desktop_app.hub.client import GatedError, HubClient, HubNotFoundError, quantization_from_name, split_info


def test_search_gguf_and_images(fake_hub):
    c = HubClient()
    assert c.endpoint == fake_hub.url
    chat = [r.repo_id for r in c.search("gguf", task="chat")]
    assert chat[:2] == ["testorg/Tiny-GGUF", "testorg/Big-GGUF"]  # sorted by downloads
    assert "testorg/tiny-diffusers" not in chat
    images = [r.repo_id for r in c.search("tiny", task="image")]
    assert images == ["testorg/tiny-diffusers"]
    assert ("GET", "/api/models", "") in fake_hub.requests


def test_repo_files_with_sizes_and_lfs_sha(fake_hub, gguf_bytes):
    import hashlib

    info = HubClient().repo_info("testorg/Tiny-GGUF")
    f = info.file("tiny-Q4_K_M.gguf")
    assert f.size == len(gguf_bytes) and f.lfs
    assert f.sha256 == hashlib.sha256(gguf_bytes).hexdigest()
    assert f.quantization == "Q4_K_M"
    readme = info.file("README.md")
    assert readme.lfs is False and readme.sha256 == "" and len(readme.blob_id) == 40
    assert info.license == "apache-2.0" and not info.is_diffusers
    assert {g.name for g in info.gguf_files} == {"tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf", "tiny-Q2_K.gguf"}
    assert HubClient().repo_info("testorg/tiny-diffusers").is_diffusers


def test_file_metadata_pins_commit(fake_hub, gguf_bytes):
    repo = fake_hub.repos["testorg/Tiny-GGUF"]
    meta = HubClient().file_metadata("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    assert meta.commit == repo.sha and repo.sha in meta.url
    assert meta.size == len(gguf_bytes) and len(meta.sha256) == 64


def test_404_and_revision_messages(fake_hub):
    c = HubClient()
    with pytest.raises(HubNotFoundError, match="not found"):
        c.repo_info("nobody/nothing")
    with pytest.raises(HubNotFoundError, match="no such revision"):
        c.repo_info("testorg/Tiny-GGUF", revision="v9")
    with pytest.raises(HubNotFoundError, match="no such file"):
        c.file_metadata("testorg/Tiny-GGUF", "missing.gguf")


def test_gated_401_then_token(fake_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(GatedError, match=r"^gated: .*accept the licence.*token"):
        HubClient().file_metadata("gatedorg/Gated-GGUF", "g-Q4_K_M.gguf")
    from desktop_app.hub import credentials

    where = credentials.set_token(fake_hub.token)
    assert "hf_token" in where or where == "keyring"
    assert credentials.describe_token() != "none" and fake_hub.token not in credentials.describe_token()
    meta = HubClient().file_metadata("gatedorg/Gated-GGUF", "g-Q4_K_M.gguf")
    assert meta.size and meta.sha256
    credentials.clear_token()
    assert credentials.get_token() is None


def test_token_file_is_private(atelier_home, monkeypatch):
    import os
    import stat

    from desktop_app.hub import credentials

    monkeypatch.delenv("HF_TOKEN", raising=False)
    where = credentials.set_token("hf_secret")
    if where != "keyring":
        mode = stat.S_IMODE(os.stat(where).st_mode)
        assert mode == 0o600
    assert credentials.get_token() == "hf_secret"


def test_offline_switch_opens_no_socket(fake_hub, monkeypatch, tmp_path, socket_attempts):
    """With ATELIER_OFFLINE=1 every hub entry point fails at once and no socket is ever connected."""
    attempts = socket_attempts
    monkeypatch.setenv("ATELIER_OFFLINE", "1")

    from desktop_app.hub import catalog, downloads

    c = HubClient()
    for call in (lambda: c.search("x"), lambda: c.repo_info("testorg/Tiny-GGUF"),
                 lambda: c.file_metadata("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf"),
                 lambda: downloads.pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf"),
                 lambda: downloads.pull("testorg/Tiny-GGUF"),
                 lambda: catalog.refresh(catalog.load_catalog(), c)):
        with pytest.raises(OfflineError, match="Offline mode is on"):
            call()
    q = downloads.DownloadQueue(tmp_path / "q.json")
    job = q.add("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    q.run_until_idle()
    assert q.get(job).state == "failed" and "Offline" in q.get(job).message
    assert attempts == []


def test_offline_setting_also_blocks(fake_hub):
    from desktop_app.core.settings import Settings

    Settings().set("offline", True)
    with pytest.raises(OfflineError):
        HubClient().search("x")


def test_quantization_and_split_names():
    assert quantization_from_name("Qwen_Qwen3-8B-Q4_K_M.gguf") == "Q4_K_M"
    assert quantization_from_name("llama-3.2-1b-instruct-q8_0.gguf") == "Q8_0"
    assert quantization_from_name("Q4_K_M/x-Q4_K_M-00001-of-00002.gguf") == "Q4_K_M"
    assert quantization_from_name("Qwen3-30B-A3B-UD-Q4_K_XL.gguf") == "Q4_K_XL"
    assert quantization_from_name("model.gguf") == ""
    assert split_info("a-00002-of-00003.gguf") == (2, 3) and split_info("a.gguf") is None


def test_proxy_setting_is_used(fake_hub):
    """With a proxy set, requests go to the proxy (here the fake hub itself answers as one)."""
    from desktop_app.core.settings import Settings

    Settings().set("proxy", fake_hub.url)
    got = HubClient(endpoint="http://hub.invalid").search("tiny")
    assert [r.repo_id for r in got] == ["testorg/Tiny-GGUF"]


def test_endpoint_from_hf_endpoint_env(monkeypatch):
    """No endpoint setting: HF_ENDPOINT (read at call time, not at import) is used; the setting wins over it."""
    from desktop_app.core.settings import Settings

    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.internal:8080/")
    assert HubClient().endpoint == "http://mirror.internal:8080"
    Settings().set("hf_endpoint", "http://other.internal")
    assert HubClient().endpoint == "http://other.internal"
    assert HubClient(endpoint="http://explicit").endpoint == "http://explicit"


def test_fake_hub_speaks_huggingface_hub(fake_hub, tmp_path, gguf_bytes):
    """The fake hub is compatible with huggingface_hub itself (model_info, list_models, hf_hub_download)."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=fake_hub.url)
    info = api.model_info("testorg/Tiny-GGUF", files_metadata=True)
    sib = {s.rfilename: s for s in info.siblings}
    assert sib["tiny-Q4_K_M.gguf"].size == len(gguf_bytes) and sib["tiny-Q4_K_M.gguf"].lfs.sha256
    assert [m.id for m in api.list_models(search="Tiny", filter="gguf", limit=5)] == ["testorg/Tiny-GGUF"]
    p = hf_hub_download("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", cache_dir=tmp_path, endpoint=fake_hub.url)
    assert Path(p).read_bytes() == gguf_bytes
