"""Resumable, verified downloads and the queue, against the fake hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from desktop_app.core.errors import AtelierError, Cancelled, ModelFormatError
from desktop_app.core.library import Library
from desktop_app.hub.downloads import (
    DownloadControl, DownloadQueue, Paused, hub_dir, part_paths, pull, pull_iter, select_diffusers_files,
)
from tests.hub.conftest import models_dir


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_download_verifies_and_registers(fake_hub, gguf_bytes):
    events = []
    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", on_progress=events.append)
    p = Path(rec.path)
    assert p.read_bytes() == gguf_bytes
    assert rec.id == "testorg/Tiny-GGUF/tiny-Q4_K_M.gguf" and rec.managed and rec.source == "hub"
    assert rec.task == "chat" and rec.format == "gguf" and rec.quantization == "Q4_K_M"
    assert rec.sha256 == _sha(gguf_bytes) and rec.revision == fake_hub.repos["testorg/Tiny-GGUF"].sha
    assert p.parent == hub_dir("testorg/Tiny-GGUF")
    assert not any(p.parent.glob("*.part*"))
    states = [e.state for e in events]
    assert states[0] == "resolving" and "verifying" in states and states[-1] == "done"
    assert events[-1].bytes_done == events[-1].bytes_total == len(gguf_bytes)
    assert Library().get(rec.id) is not None
    # pulling again is a no-op
    again = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    assert again.id == rec.id


def test_pause_keeps_part_and_resume_uses_range(fake_hub):
    data = fake_hub.repos["testorg/Big-GGUF"].files["big-Q4_K_M.gguf"]
    ctl = DownloadControl()

    def on(ev):
        if ev.state == "downloading" and ev.bytes_done > 0:
            ctl.pause()

    with pytest.raises(Paused):
        pull("testorg/Big-GGUF", "big-Q4_K_M.gguf", control=ctl, on_progress=on)
    dest = hub_dir("testorg/Big-GGUF") / "big-Q4_K_M.gguf"
    part, side = part_paths(dest)
    assert part.exists() and 0 < part.stat().st_size < len(data)
    assert json.loads(side.read_text())["sha256"] == _sha(data)
    assert not dest.exists() and Library().get("testorg/Big-GGUF/big-Q4_K_M.gguf") is None
    have = part.stat().st_size
    rec = pull("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    assert Path(rec.path).read_bytes() == data
    assert f"bytes={have}-" in fake_hub.ranges()


def test_cancel_deletes_partial(fake_hub):
    ctl = DownloadControl()
    gen = pull_iter("testorg/Big-GGUF", "big-Q4_K_M.gguf", control=ctl)
    for ev in gen:
        if ev.state == "downloading" and ev.bytes_done > 0:
            ctl.cancel()
            break
    with pytest.raises(Cancelled) as exc:
        for _ev in gen:
            pass
    assert not isinstance(exc.value, Paused)
    dest = hub_dir("testorg/Big-GGUF") / "big-Q4_K_M.gguf"
    assert not any(p.exists() for p in part_paths(dest)) and not dest.exists()


def test_hash_mismatch_deletes_and_says_so(fake_hub):
    fake_hub.corrupt.add("tiny-Q8_0.gguf")
    with pytest.raises(ModelFormatError, match="checksum mismatch.*deleted"):
        pull("testorg/Tiny-GGUF", "tiny-Q8_0.gguf")
    d = hub_dir("testorg/Tiny-GGUF")
    assert not list(d.glob("tiny-Q8_0*"))
    assert Library().get("testorg/Tiny-GGUF/tiny-Q8_0.gguf") is None


def test_disk_full_is_checked_first(fake_hub):
    with pytest.raises(AtelierError, match="Not enough disk space"):
        pull("testorg/Big-GGUF", "big-Q4_K_M.gguf", disk_probe=lambda p: 1000)
    assert not [r for r in fake_hub.requests if r[1].startswith("/cdn/")]  # nothing downloaded


def test_dropped_connection_is_retried(fake_hub, gguf_bytes):
    fake_hub.drop_after = 5000
    fake_hub.drop_times = 2
    events = []
    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", on_progress=events.append)
    assert Path(rec.path).read_bytes() == gguf_bytes
    assert [e.state for e in events].count("retrying") == 2
    assert "bytes=5000-" in fake_hub.ranges()


def test_404_and_gated(fake_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(AtelierError, match="not found"):
        pull("nobody/nothing", "x.gguf")
    with pytest.raises(AtelierError, match="no file 'missing.gguf'"):
        pull("testorg/Tiny-GGUF", "missing.gguf")
    # gated: the licence must be accepted first, then the hub wants a token
    with pytest.raises(AtelierError, match="licence 'llama3.2'.*--accept-license"):
        pull("gatedorg/Gated-GGUF", "g-Q4_K_M.gguf")
    with pytest.raises(AtelierError, match="^gated: "):
        pull("gatedorg/Gated-GGUF", "g-Q4_K_M.gguf", accept_license=True)
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    rec = pull("gatedorg/Gated-GGUF", "g-Q4_K_M.gguf", accept_license=True)
    assert rec.license == "llama3.2"
    assert any(p.startswith("/cdn/") for _m, p, _r in fake_hub.requests)
    assert fake_hub.leaked_auth == []  # the token never went to the CDN host


def test_catalog_restrictive_licence_needs_acceptance(fake_hub, gguf_bytes):
    # a repo the catalog marks restrictive (Llama licence) refuses before touching the network
    n = len(fake_hub.requests)
    with pytest.raises(AtelierError, match="llama3.2"):
        pull("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf")
    assert len(fake_hub.requests) == n


def test_without_file_picks_best_quant_that_fits(fake_hub, cpu_hw, gpu_hw):
    from desktop_app.hub.downloads import plan_pull

    assert plan_pull("testorg/Tiny-GGUF", hw=cpu_hw).files[0].name == "tiny-Q4_K_M.gguf"
    assert plan_pull("testorg/Tiny-GGUF", hw=gpu_hw).files[0].name == "tiny-Q8_0.gguf"


def test_diffusers_folder_pull(fake_hub):
    rec = pull("testorg/tiny-diffusers")
    root = Path(rec.path)
    assert rec.id == "testorg/tiny-diffusers" and rec.format == "diffusers" and rec.task == "image"
    got = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    # safety_checker is null in model_index.json; the root checkpoint, .ckpt, .bin and fp32 copies are skipped
    assert got == ["model_index.json", "text_encoder/config.json", "text_encoder/model.fp16.safetensors", "tokenizer/merges.txt",
        "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"]
    assert rec.extra.get("variant") == "fp16"
    assert not root.with_name(root.name + ".partial").exists()


def test_select_diffusers_refuses_pickle_only_component(fake_hub):
    from desktop_app.hub.client import HubClient, HubFile, RepoInfo

    info = RepoInfo("a/b", files=[HubFile("model_index.json"), HubFile("unet/config.json"),
                                  HubFile("unet/diffusion_pytorch_model.bin", 10)])
    with pytest.raises(ModelFormatError, match="pickle"):
        select_diffusers_files(info, model_index={"unet": ["diffusers", "UNet2DConditionModel"]})
    files, variant = select_diffusers_files(info, allow_pickle=True, model_index={"unet": ["diffusers", "U"]})
    assert "unet/diffusion_pytorch_model.bin" in [f.name for f in files] and variant == ""
    assert HubClient  # imported for the type only


def test_queue_runs_persists_and_shuts_down_fast(fake_hub, tmp_path, gguf_bytes):
    state = tmp_path / "downloads.json"
    seen = []
    q = DownloadQueue(state, on_event=lambda j: seen.append(j.state))
    a = q.add("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    b = q.add("testorg/Tiny-GGUF", "tiny-Q2_K.gguf")
    q.pause(b)
    q.run_until_idle()
    assert q.get(a).state == "done" and q.get(a).record_id == "testorg/Tiny-GGUF/tiny-Q4_K_M.gguf"
    assert q.get(b).state == "paused"
    assert "running" in seen and "done" in seen
    # pending jobs survive a restart
    q2 = DownloadQueue(state)
    assert [j.id for j in q2.jobs()] == [b]
    q2.resume(b)
    q2.run_until_idle()
    assert q2.get(b).state == "done"

    # a slow download in the queue's own thread stops within a second and is re-queued with its .part
    fake_hub.throttle_bps = 200_000
    q3 = DownloadQueue(state)
    c = q3.add("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    q3.start()
    deadline = time.monotonic() + 10
    while q3.get(c).bytes_done == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    assert q3.shutdown(timeout=5)
    assert time.monotonic() - t0 < 1.5
    part, _ = part_paths(hub_dir("testorg/Big-GGUF") / "big-Q4_K_M.gguf")
    assert part.exists()
    assert [(j.id, j.state) for j in DownloadQueue(state).jobs()] == [(c, "queued")]


def test_queue_cancel_deletes_partials(fake_hub, tmp_path):
    fake_hub.throttle_bps = 300_000
    q = DownloadQueue(tmp_path / "d.json")
    c = q.add("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    q.start()
    deadline = time.monotonic() + 10
    while q.get(c).bytes_done == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    q.cancel(c)
    deadline = time.monotonic() + 5
    while q.get(c).state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q.get(c).state == "cancelled"
    assert q.shutdown(timeout=5)
    dest = hub_dir("testorg/Big-GGUF") / "big-Q4_K_M.gguf"
    assert not any(p.exists() for p in part_paths(dest))
    assert models_dir().exists()


def test_disk_check_covers_whole_diffusers_job(fake_hub):
    calls = []

    def probe(p):
        calls.append(p)
        return 10  # bytes

    with pytest.raises(AtelierError, match="Not enough disk space for testorg/tiny-diffusers"):
        pull("testorg/tiny-diffusers", disk_probe=probe)
    assert calls and not hub_dir("testorg/tiny-diffusers").with_name("tiny-diffusers.partial").exists()


# --- a mirror that gives no checksum -------------------------------------------------------
def test_no_checksum_is_refused_before_any_byte(fake_hub):
    fake_hub.omit_hashes = True
    events = []
    with pytest.raises(AtelierError, match=r"gave no checksum for testorg/Tiny-GGUF/tiny-Q4_K_M\.gguf.*cannot verify"):
        pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", on_progress=events.append)
    dest = hub_dir("testorg/Tiny-GGUF") / "tiny-Q4_K_M.gguf"
    assert not dest.exists() and not any(p.exists() for p in part_paths(dest))
    assert Library().get("testorg/Tiny-GGUF/tiny-Q4_K_M.gguf") is None
    assert not [p for m, p, _r in fake_hub.requests if m == "GET" and p.startswith("/cdn/")]  # no bytes fetched
    assert "done" not in [e.state for e in events]


def test_no_checksum_allowed_is_registered_unverified_with_warning(fake_hub, gguf_bytes):
    fake_hub.omit_hashes = True
    events = []
    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", allow_unverified=True, on_progress=events.append)
    assert Path(rec.path).read_bytes() == gguf_bytes
    assert rec.extra["verified"] is False and rec.extra["unverified_files"] == ["tiny-Q4_K_M.gguf"]
    assert rec.sha256 == ""  # no checksum is invented
    assert Library().get(rec.id).extra["verified"] is False
    warn = [e for e in events if e.state == "unverified"]
    assert len(warn) == 1 and warn[0].message.startswith("WARNING:") and "WITHOUT verification" in warn[0].message
    assert events[-1].state == "done" and "WITHOUT verification" in events[-1].message


def test_verified_download_is_not_marked_unverified(fake_hub):
    events = []
    rec = pull("testorg/Tiny-GGUF", "tiny-Q8_0.gguf", allow_unverified=True, on_progress=events.append)
    assert "verified" not in rec.extra and rec.sha256
    assert "unverified" not in [e.state for e in events] and events[-1].message == ""


def test_queue_refuses_or_warns_about_unverified(fake_hub, tmp_path):
    fake_hub.omit_hashes = True
    q = DownloadQueue(tmp_path / "q.json")
    refused = q.add("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    allowed = q.add("testorg/Tiny-GGUF", "tiny-Q2_K.gguf", allow_unverified=True)
    q.run_until_idle()
    r, a = q.get(refused), q.get(allowed)
    assert r.state == "failed" and "no checksum" in r.message and not r.record_id
    assert a.state == "done" and "WITHOUT verification" in a.message
    assert Library().get(a.record_id).extra["verified"] is False


def test_blob_id_from_listing_verifies_small_files_without_headers(fake_hub, tmp_path):
    """A mirror with model-info blobIds but no ETag headers: small (git) files are still checked."""
    from desktop_app.hub.client import HubClient
    from desktop_app.hub.downloads import download_file_iter
    from tests.hub.fake_hub import git_blob_sha1

    data = fake_hub.repos["testorg/Tiny-GGUF"].files["README.md"]
    fake_hub.omit_hashes = True
    dest = tmp_path / "README.md"
    gen = download_file_iter(HubClient(), "testorg/Tiny-GGUF", "README.md", dest,
                             expected_git_sha1=git_blob_sha1(data))
    states = [s for s, _d, _t in gen]
    assert dest.read_bytes() == data and "unverified" not in states and "verifying" in states
    # a wrong blob id is a checksum mismatch, and the file is deleted
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        list(download_file_iter(HubClient(), "testorg/Tiny-GGUF", "README.md", tmp_path / "R2.md",
                                expected_git_sha1="0" * 40))
    assert not (tmp_path / "R2.md").exists()


# --- restrictive licences on repos found through hub search ---------------------------------
def test_restrictive_licence_without_gating_needs_acceptance(fake_hub, gguf_bytes):
    fake_hub.add_repo("someuser/Llama-3.2-1B-Instruct-GGUF", {"l-Q4_K_M.gguf": gguf_bytes}, tags=["gguf"],
                      license="llama3.2")
    assert fake_hub.repos["someuser/Llama-3.2-1B-Instruct-GGUF"].gated is False
    with pytest.raises(AtelierError, match=r"licence 'llama3\.2'.*accept"):
        pull("someuser/Llama-3.2-1B-Instruct-GGUF", "l-Q4_K_M.gguf")
    assert not [p for _m, p, _r in fake_hub.requests if "/resolve/" in p or p.startswith("/cdn/")]
    rec = pull("someuser/Llama-3.2-1B-Instruct-GGUF", "l-Q4_K_M.gguf", accept_license=True)
    assert rec.license == "llama3.2" and Path(rec.path).read_bytes() == gguf_bytes


def test_other_licence_naming_a_restrictive_family_needs_acceptance(fake_hub, gguf_bytes):
    fake_hub.add_repo("someuser/tiny-quants", {"t-Q4_K_M.gguf": gguf_bytes}, license="other",
                      tags=["gguf", "llama", "base_model:quantized:google/gemma-3-1b-it"])
    with pytest.raises(AtelierError, match="licence 'other'"):
        pull("someuser/tiny-quants", "t-Q4_K_M.gguf")
    # an apache/mit repo, or "other" with no restrictive family named, downloads without a prompt
    fake_hub.add_repo("someuser/plain", {"p-Q4_K_M.gguf": gguf_bytes}, license="other", tags=["gguf", "llama"])
    assert pull("someuser/plain", "p-Q4_K_M.gguf").license == "other"


@pytest.mark.parametrize("licence, kw, expected", [
    ("llama2", {}, True), ("llama3", {}, True), ("llama3.1", {}, True), ("llama3.2", {}, True),
    ("llama3.3", {}, True), ("llama4", {}, True), ("gemma", {}, True), ("Gemma", {}, True),
    ("flux-1-dev-non-commercial-license", {}, True), ("stabilityai-ai-community", {}, True),
    ("apache-2.0", {}, False), ("mit", {}, False), ("openrail++", {}, False), ("", {}, False),
    ("apache-2.0", {"gated": "manual"}, True),
    ("other", {"repo_id": "city96/FLUX.1-dev-gguf"}, True),
    ("other", {"repo_id": "city96/FLUX.1-schnell-gguf"}, False),
    ("other", {"repo_id": "x/stable-diffusion-3.5-medium"}, True),
    ("other", {"repo_id": "x/Meta-Llama-3.1-8B-Instruct-GGUF"}, True),
    ("other", {"repo_id": "x/TinyLlama-1.1B-Chat"}, False),
    ("other", {"tags": ["llama", "gguf"]}, False),  # "llama" is an architecture tag, not a licence
    ("other", {"tags": ["base_model:meta-llama/Llama-3.3-70B-Instruct"]}, True),
    ("other", {"license_name": "flux-1-dev-non-commercial-license"}, True),
])
def test_licence_requires_acceptance_table(licence, kw, expected):
    from desktop_app.hub.downloads import licence_requires_acceptance

    assert licence_requires_acceptance(licence, **kw) is expected


def test_the_same_file_downloaded_and_imported_shows_once(fake_hub, gguf_bytes, tmp_path):
    """Issue 13: one model, one row: the same bytes downloaded under another name or imported from
    another folder are recognised (sha256), not listed twice, and the user is told."""
    from desktop_app.core.errors import AlreadyInstalled
    from desktop_app.hub.importer import import_path

    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    # the identical file under another name in the same repo: no second download, no second record
    events = []
    again = pull("testorg/Tiny-GGUF", "tiny-Q2_K.gguf", on_progress=events.append)
    assert again.id == rec.id and events[-1].state == "done"
    assert events[-1].message == f"already installed as {rec.display_name}"
    assert not (hub_dir("testorg/Tiny-GGUF") / "tiny-Q2_K.gguf").exists()
    # the same bytes imported from a USB stick: refused as a duplicate, named
    usb = tmp_path / "usb" / "my-model.gguf"
    usb.parent.mkdir()
    usb.write_bytes(gguf_bytes)
    for copy in (True, False):
        with pytest.raises(AlreadyInstalled) as err:
            import_path(usb, copy=copy)
        assert err.value.record.id == rec.id and "my-model.gguf is already in the library" in str(err.value)
    assert [r.id for r in Library().list() if r.format == "gguf" and r.source != "starter"] == [rec.id]
    # a file of the same size with other bytes is another model
    other = tmp_path / "usb" / "other.gguf"
    data = bytearray(gguf_bytes)
    data[-1] ^= 0xFF
    other.write_bytes(bytes(data))
    assert import_path(other, copy=True).sha256 == _sha(bytes(data))


def test_a_model_imported_in_place_first_is_not_downloaded_again(fake_hub, gguf_bytes, tmp_path):
    from desktop_app.hub.importer import import_path

    local = tmp_path / "lmstudio" / "tiny.gguf"
    local.parent.mkdir()
    local.write_bytes(gguf_bytes)
    imported = import_path(local, copy=False)
    assert imported.sha256 == ""  # in place, not read whole at import
    served = len(fake_hub.ranges()) if hasattr(fake_hub, "ranges") else None
    events = []
    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf", on_progress=events.append)
    assert rec.id == imported.id and "already installed" in events[-1].message
    assert Library().get(imported.id).sha256 == _sha(gguf_bytes)  # hashed once, when it mattered, and kept
    assert Library().get("testorg/Tiny-GGUF/tiny-Q4_K_M.gguf") is None
    if served is not None:
        assert len(fake_hub.ranges()) == served  # no file bytes were fetched
