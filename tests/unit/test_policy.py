"""The administrator's policy (core/policy.py): parsing, the most restrictive mode on a malformed
file, locked settings, refused imports, approved models, history retention (issue 16)."""

from __future__ import annotations

import json
import time

import pytest

from desktop_app.core import policy as P
from desktop_app.core.errors import AtelierError
from desktop_app.core.settings import Settings

FULL = """
offline = true
allowed_models = ["{digest}", "my-model:{digest2}"]
model_dirs = ["{dirs}"]
allow_import = false
allow_pickle = false
[history]
mode = "keep"
retain_days = 90
[audit]
mode = "full"
path = "{audit}"
"""


def write_policy(atelier_home, text: str):
    path = atelier_home / "policy.toml"
    path.write_text(text)
    import os

    os.environ["ATELIER_POLICY"] = str(path)  # the autouse fixture restores it
    return path


def test_no_file_is_no_policy(atelier_home):
    pol = P.current()
    assert not pol.present and pol.error == "" and pol.locked() == {}
    assert pol.approves("ab" * 32) and pol.imports_allowed and not pol.private_only


def test_the_issue_s_example_file_parses_with_every_key(atelier_home, tmp_path):
    d1, d2 = "a" * 64, "B" * 64
    write_policy(atelier_home, FULL.format(digest=d1, digest2=d2, dirs=tmp_path, audit=tmp_path / "audit"))
    pol = P.current()
    assert pol.present and not pol.error
    assert pol.offline is True and pol.allow_import is False and pol.allow_pickle is False
    assert pol.allowed_models == (d1, d2.lower()) and pol.allowed_ids == ("", "my-model")
    assert pol.model_dirs == (str(tmp_path),) and pol.history_mode == "keep" and pol.retain_days == 90
    assert pol.audit_mode == "full" and pol.audit_path == str(tmp_path / "audit")
    assert pol.approves(d1) and pol.approves(d2) and not pol.approves("c" * 64) and not pol.approves("")
    from desktop_app.core.audit import log_folder

    assert log_folder() == tmp_path / "audit"


@pytest.mark.parametrize("text, why", [
    ("offline = 'yes'", "offline must be true or false"),
    ("alowed_models = []", "unknown key 'alowed_models'"),
    ("allowed_models = ['not-a-digest']", "is not a sha256 digest"),
    ("[history]\nmode = 'forever'", "history.mode must be keep or private_only"),
    ("[history]\nretain_days = -1", "retain_days must be 0 or more"),
    ("[audit]\nmode = 'all'", "audit.mode must be off, metadata or full"),
    ("[audit]\nwhere = '/x'", "unknown key audit.where"),
    ("offline = true\noffline = false", "not valid TOML"),
    ("history = 3", "[history] must be a table"),
])
def test_a_malformed_policy_is_the_most_restrictive_one_and_says_why(atelier_home, text, why):
    write_policy(atelier_home, text)
    pol = P.current()
    assert why in pol.error and "\n" not in pol.error
    assert pol.offline is True and pol.allowed_models == () and pol.allow_import is False
    assert pol.allow_pickle is False and pol.private_only and pol.audit_mode == "full"
    assert not pol.approves("a" * 64)
    assert Settings().offline is True


def test_a_huge_bad_value_gives_a_short_error(atelier_home):
    write_policy(atelier_home, f"offline = '{'x' * 100_000}'")
    pol = P.current()
    assert "offline must be true or false" in pol.error and len(pol.error) < 400 and pol.offline is True


def test_an_unreadable_policy_is_restrictive_too(atelier_home):
    path = write_policy(atelier_home, "")
    path.unlink()
    path.mkdir()  # a folder where the file should be: cannot be read
    pol = P.current()
    assert pol.present and "cannot be read" in pol.error and pol.offline is True


def test_locked_settings_win_and_cannot_be_set(atelier_home):
    s = Settings()
    s.set("offline", False)
    s.set("allow_pickle", True)
    s.set("proxy", "http://proxy:3128")
    write_policy(atelier_home, "offline = true\nallow_pickle = false\n[audit]\nmode = 'metadata'")
    s = Settings()
    assert s.get("offline") is True and s.offline and s.get("allow_pickle") is False
    assert s.get("proxy") == "" and s.get("audit_mode") == "metadata"
    assert s.own("offline") is False and s.own("proxy") == "http://proxy:3128"  # the user's value is kept
    with pytest.raises(P.PolicyLocked, match="fixed by your administrator's policy"):
        s.set("offline", False)
    with pytest.raises(P.PolicyLocked):
        s.set("audit_mode", "off")
    s.set("theme", "dark")  # what the policy does not fix stays the user's
    assert "Set by your administrator's policy" in s.locked_reason("offline") and s.locked_reason("theme") == ""


def test_the_policy_s_model_dirs_join_the_read_only_folders(atelier_home, tmp_path):
    s = Settings()
    s.set("extra_model_dirs", ["/mine"])
    write_policy(atelier_home, f"model_dirs = ['{tmp_path}']")
    s = Settings()
    assert s.get("extra_model_dirs") == [str(tmp_path), "/mine"] and s.own("extra_model_dirs") == ["/mine"]


def test_imports_discovery_and_packs_are_refused_when_turned_off(atelier_home, tiny_gguf, tmp_path):
    from desktop_app.hub.discovery import discover
    from desktop_app.hub.importer import import_path
    from desktop_app.hub.packs import import_pack

    write_policy(atelier_home, "allow_import = false")
    for call in (lambda: import_path(tiny_gguf), lambda: discover(), lambda: import_pack(tmp_path)):
        with pytest.raises(P.PolicyLocked, match="Importing models is turned off"):
            call()


def test_pickle_asked_for_is_refused_when_the_policy_forbids_it(atelier_home, tmp_path):
    from desktop_app.hub.importer import import_path

    write_policy(atelier_home, "allow_pickle = false")
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"\x80\x04pickle")
    with pytest.raises(P.PolicyLocked, match="allow_pickle"):
        import_path(ckpt, allow_pickle=True)


def test_model_digest_of_a_file_and_of_a_folder(atelier_home, tmp_path):
    import hashlib

    f = tmp_path / "a.gguf"
    f.write_bytes(b"weights")
    assert P.model_digest(f) == hashlib.sha256(b"weights").hexdigest()
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "w.safetensors").write_bytes(b"xyz")
    manifest = (f"model_index.json\t{hashlib.sha256(b'{}').hexdigest()}\n"
                f"unet/w.safetensors\t{hashlib.sha256(b'xyz').hexdigest()}\n")
    d = P.model_digest(folder)
    assert d == hashlib.sha256(manifest.encode()).hexdigest()
    time.sleep(0.01)
    (folder / "unet" / "w.safetensors").write_bytes(b"xyZ")  # a changed weight: a new digest (not the cache's)
    assert P.model_digest(folder) != d


def test_check_model_names_the_refused_model(atelier_home, tiny_gguf):
    write_policy(atelier_home, f"allowed_models = ['{'0' * 64}']")
    with pytest.raises(P.NotApproved, match="tiny-llama.gguf is not approved by your administrator"):
        P.current().check_model(tiny_gguf)
    digest = P.model_digest(tiny_gguf)
    write_policy(atelier_home, f"allowed_models = ['tiny:{digest}']")
    assert P.current().check_model(tiny_gguf) == digest


def test_retention_deletes_old_conversations_and_logs_it(atelier_home, tmp_path):
    from desktop_app.core.audit import verify
    from desktop_app.core.history import HistoryStore

    with HistoryStore() as h:
        old = h.create_conversation("old")
        h.add_message(old.id, "user", "a secret from long ago")
        new = h.create_conversation("new")
    import sqlite3

    db = sqlite3.connect(atelier_home / "data" / "history.sqlite3")  # a conversation last touched 100 days ago
    db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (time.time() - 100 * 86400, old.id))
    db.commit()
    db.close()
    write_policy(atelier_home, f"[history]\nretain_days = 90\n[audit]\nmode = 'metadata'\npath = '{tmp_path / 'au'}'")
    assert P.apply_at_startup() == []
    with HistoryStore() as h:
        assert [c.id for c in h.list_conversations()] == [new.id]
    assert b"a secret from long ago" not in (atelier_home / "data" / "history.sqlite3").read_bytes()
    recs = [json.loads(x) for f in sorted((tmp_path / "au").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert [r["kind"] for r in recs] == ["history_retention"]
    assert recs[0]["counts"] == {"conversations_deleted": 1} and recs[0]["params"] == {"retain_days": 90}
    assert verify(tmp_path / "au")["ok"]


def test_the_cli_refuses_a_locked_setting_in_one_line(atelier_home, capsys):
    from desktop_app.cli import main

    write_policy(atelier_home, "offline = true")
    assert main(["settings", "set", "offline", "false"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("atelier: error: Cannot set offline: it is fixed by your administrator's policy")
    assert len(err.splitlines()) == 1
    assert main(["settings", "set", "theme", "dark"]) == 0 and Settings().get("theme") == "dark"
    assert main(["policy", "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["present"] and d["offline"] is True and d["locked_settings"]["offline"] is True


def test_a_policy_error_is_never_silent_in_the_cli(atelier_home, capsys):
    from desktop_app.cli import main

    write_policy(atelier_home, "offline = 1")
    assert main(["settings", "list"]) == 0
    err = capsys.readouterr().err
    assert "most restrictive mode" in err and "offline must be true or false" in err


def test_wrong_values_for_a_setting_are_one_line(atelier_home, capsys):
    from desktop_app.cli import main

    assert main(["settings", "set", "vram_reserve_mib", "lots"]) == 1
    assert main(["settings", "set", "nope", "1"]) == 1
    with pytest.raises(AtelierError):
        Settings().set("vram_reserve_mib", "lots")
