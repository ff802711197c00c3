"""A compromised mirror: names from a listing, repo ids and revisions never write or delete outside
the models folder (issue 9, items 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_app.core.library import Library, ModelRecord
from desktop_app.core.safepath import (
    UnsafeNameError, inside, remove_inside, validate_relpath, validate_repo_id, validate_revision,
)
from desktop_app.hub.client import HubClient
from desktop_app.hub.downloads import DownloadQueue, hub_dir, pull
from desktop_app.hub.importer import remove_model
from tests.hub.conftest import models_dir, safetensors_bytes

BAD_NAMES = [
    "/x.json", "../x.json", "unet/../../x.json", "unet/..", "./x.json", "unet//x.json", "C:x.json", "C:\\x.json",
    "unet\\..\\..\\x.json", "CON", "unet/nul.json", "unet/COM1.txt", "unet/lpt9", "unet/x.json.", "unet/x ",
    "unet/\x00.json", "unet/a\nb.json", "unet/a|b.json", "unet/a*b.json", "unet/a?b.json", 'unet/a"b.json',
    "unet/a<b.json", "", "x" * 2000, "/".join(["d"] * 20) + "/x.json", "unet/" + "y" * 300,
]
GOOD_NAMES = ["model_index.json", "unet/config.json", "text_encoder/model.fp16.safetensors",
              "tokenizer/spiece.model", "a/b/c.json", "unet/cons/x.json", "icon.json", "console.json", "x.y.z"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_relative_names_are_refused(name, tmp_path):
    with pytest.raises(UnsafeNameError):
        validate_relpath(name)
    with pytest.raises(UnsafeNameError):
        inside(tmp_path, name)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_relative_names_stay_inside(name, tmp_path):
    p = inside(tmp_path, name)
    assert p.resolve().is_relative_to(tmp_path.resolve()) and p != tmp_path


def test_a_symlink_planted_inside_cannot_carry_a_write_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / "unet").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeNameError):
        inside(base, "unet/config.json")


@pytest.mark.parametrize("rid", ["evil/..", "../evil", "evil", "a/b/c", "evil/.", "./x", "a/-b", "a/b-", "a/b--c",
                                 "a/b..c", "a/" + "n" * 97, "a/b c", "a/b\\c", "", "/", "a/", 7, None])
def test_bad_repo_ids(rid):
    with pytest.raises(UnsafeNameError):
        validate_repo_id(rid)


@pytest.mark.parametrize("rid", ["testorg/Tiny-GGUF", "HuggingFaceTB/SmolLM2-135M-Instruct", "a/b", "a.b/c_d.e",
                                 "stabilityai/sd-turbo"])
def test_good_repo_ids(rid):
    assert validate_repo_id(rid) == rid


@pytest.mark.parametrize("rev", ["../x", "/main", "a//b", "x\n", "main/", "", "a b", "x" * 300])
def test_bad_revisions(rev):
    with pytest.raises(UnsafeNameError):
        validate_revision(rev)


def test_good_revisions():
    for rev in ("main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"):
        assert validate_revision(rev) == rev


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["/x.json", "../x.json", "unet/CON.json", "unet/a\\..\\..\\x.json", "unet/C:x.json",
                                  "unet/x.json:ads.json", "unet/lpt1.json"])
def test_hostile_diffusers_listing_writes_nothing(fake_hub, atelier_home, tmp_path, name):
    st = safetensors_bytes()
    fake_hub.add_repo("evil/mirror-pipe", {
        "model_index.json": b"not json: every first-level folder counts as a component",
        "unet/config.json": b"{}", "unet/diffusion_pytorch_model.safetensors": st, name: b'{"pwned": true}',
    }, tags=["diffusers"], library_name="diffusers", pipeline_tag="text-to-image")
    before = _snapshot(atelier_home)
    with pytest.raises(UnsafeNameError) as exc:
        pull("evil/mirror-pipe")
    msg = str(exc.value)
    assert "Nothing was written" in msg and "\n" not in msg
    assert _snapshot(atelier_home) == before  # not even the staging folder
    assert not Path("/x.json").exists()
    fetched = [r[1] for r in fake_hub.requests if "/resolve/" in r[1] and not r[1].endswith("/model_index.json")]
    assert fetched == []  # refused at planning time: not one file was asked for
    assert Library().list() == []


def test_names_the_pull_does_not_select_are_never_fetched(fake_hub, atelier_home):
    """Top-level oddities outside every component folder are not part of the pipeline: ignored."""
    st = safetensors_bytes()
    fake_hub.add_repo("evil/odd-pipe", {
        "model_index.json": json.dumps({"_class_name": "X", "unet": ["diffusers", "UNet2DConditionModel"]}).encode(),
        "unet/config.json": b"{}", "unet/diffusion_pytorch_model.safetensors": st,
        "C:x.json": b"{}", "unet\\..\\..\\x.json": b"{}", "unet/x.json.": b"{}",
    }, tags=["diffusers"], library_name="diffusers", pipeline_tag="text-to-image")
    rec = pull("evil/odd-pipe")
    got = sorted(str(p.relative_to(rec.path)) for p in Path(rec.path).rglob("*") if p.is_file())
    assert got == ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    fetched = {r[1].rsplit("/resolve/", 1)[1].split("/", 1)[1] for r in fake_hub.requests if "/resolve/" in r[1]}
    assert fetched <= {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"}


def test_hostile_single_file_name_is_refused(fake_hub):
    fake_hub.add_repo("evil/mirror-gguf", {"../../x.gguf": b"GGUF", "sub/../y.gguf": b"GGUF"}, tags=["gguf"])
    for fn in ("../../x.gguf", "sub/../y.gguf"):
        with pytest.raises(UnsafeNameError):
            pull("evil/mirror-gguf", fn)
    assert not (models_dir().parent / "x.gguf").exists()
    assert Library().list() == []


def test_hostile_revision_from_the_reply_is_refused(fake_hub, gguf_bytes):
    repo = fake_hub.add_repo("evil/bad-sha", {"m-Q4_K_M.gguf": gguf_bytes}, tags=["gguf"])
    repo.sha = "../../../../etc"
    with pytest.raises(UnsafeNameError):
        pull("evil/bad-sha", "m-Q4_K_M.gguf")


def test_pull_evil_dotdot_deletes_nothing(fake_hub, gguf_bytes):
    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    before = _snapshot(models_dir())
    for rid in ("evil/..", "testorg/..", "../testorg", "testorg/Tiny-GGUF/.."):
        with pytest.raises(UnsafeNameError):
            pull(rid)
    assert _snapshot(models_dir()) == before
    assert Path(rec.path).read_bytes() == gguf_bytes and Library().get(rec.id) is not None
    with pytest.raises(UnsafeNameError):
        hub_dir("evil/..")


def test_queue_refuses_bad_repo_ids_from_the_gui(tmp_path, fake_hub):
    q = DownloadQueue(tmp_path / "q.json")
    for rid in ("evil/..", "x/../../y"):
        with pytest.raises(UnsafeNameError):
            q.add(rid)
    with pytest.raises(UnsafeNameError):
        q.add("testorg/Tiny-GGUF", revision="../../x")
    assert q.jobs() == []


def test_queue_cancel_never_deletes_outside_the_hub_folder(tmp_path, fake_hub):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    state = tmp_path / "q.json"
    state.write_text(json.dumps({"version": 1, "jobs": [{
        "id": "j1", "repo_id": "testorg/Tiny-GGUF", "state": "paused",
        "partials": [str(victim), str(models_dir()), str(models_dir() / "hub" / ".." / "..")]}]}))
    q = DownloadQueue(state)
    q.cancel("j1")
    assert (victim / "keep.txt").read_text() == "precious"
    assert q.get("j1").state == "cancelled"


def test_hub_search_skips_invalid_repo_ids(fake_hub, gguf_bytes):
    fake_hub.add_repo("evil/..", {"x.gguf": gguf_bytes}, tags=["gguf"], downloads=10**6)
    ids = [r.repo_id for r in HubClient().search("", task="chat")]
    assert "evil/.." not in ids and "testorg/Tiny-GGUF" in ids


def test_remove_inside_refuses_owner_and_outside(tmp_path):
    owner = tmp_path / "owner"
    (owner / "a").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for p in (owner, owner / "a" / "..", tmp_path / "other", tmp_path, owner / ".."):
        with pytest.raises(UnsafeNameError):
            remove_inside(p, owner)
    assert owner.exists() and (tmp_path / "other").exists()
    assert remove_inside(owner / "a", owner) and not (owner / "a").exists()
    assert remove_inside(owner / "missing", owner) is False


def test_remove_model_with_a_record_pointing_at_the_models_folder_only_unregisters(fake_hub, gguf_bytes):
    rec = pull("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    lib = Library()
    lib.add(ModelRecord(id="evil", task="chat", format="gguf", path=str(models_dir()), size_bytes=0, managed=True))
    removal = remove_model("evil")
    assert not removal.deleted and Path(rec.path).exists()
    lib.add(ModelRecord(id="evil2", task="chat", format="gguf", path=str(models_dir() / "hub" / ".."), size_bytes=0,
                        managed=True))
    assert lib.delete("evil2") == 0 and Path(rec.path).exists()
