"""The administrator's policy in the window (issue 16): locked settings shown greyed with the reason,
models the policy does not approve marked in the library, every chat private under private_only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from desktop_app.core.policy import model_digest
from tests.gui.test_models_tab import CPU_16GB, make_tab, use_profile  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def policy(home, text):
    p = home / "policy.toml"
    p.write_text(text)
    os.environ["ATELIER_POLICY"] = str(p)  # restored by the autouse fixture
    return p


def test_locked_settings_and_a_refused_model(make_tab, qtbot, monkeypatch, tmp_path, atelier_home, tiny_gguf):  # noqa: F811
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    admin_dir = tmp_path / "srv-models"
    admin_dir.mkdir()
    approved = admin_dir / "Approved-Q4_K_M.gguf"
    approved.write_bytes(tiny_gguf.read_bytes())
    policy(atelier_home, f"offline = true\nallow_pickle = false\nallowed_models = ['{model_digest(approved)}']\n"
                         f"model_dirs = ['{admin_dir}']\n[audit]\nmode = 'metadata'\npath = '{tmp_path / 'au'}'\n")
    h = make_tab()
    assert not h.tab.sections.isTabVisible(h.tab.sections.indexOf(h.tab.hub))  # offline by policy: no hub
    assert "as set by your administrator's policy" in h.tab.offline_label.text()
    dlg = h.tab.settings_dialog()
    qtbot.addWidget(dlg)
    for w in (dlg.offline_check, dlg.pickle_check, dlg.endpoint_edit, dlg.proxy_edit):
        assert not w.isEnabled() and "administrator's policy" in w.toolTip()
    assert dlg.offline_check.isChecked() and not dlg.pickle_check.isChecked()
    assert "fixed by your administrator's policy" in dlg.policy_label.text()
    assert str(admin_dir) in dlg.policy_label.text()
    assert [dlg.extra_list.item(i).text() for i in range(dlg.extra_list.count())] == []  # not the user's own
    dlg.show()
    qtbot.waitExposed(dlg)
    SHOTS.mkdir(exist_ok=True)
    assert dlg.grab().save(str(SHOTS / "settings_locked_by_policy.png"))
    dlg.save()  # saving changes nothing the policy fixes, and never raises
    assert h.ctx.settings.own("offline") is False
    dlg.close()

    lib = h.tab.library
    h.tab.sections.setCurrentWidget(lib)

    def names():
        m = lib.model
        return {m.data(m.index(i, m.COL_NAME)) for i in range(m.rowCount())}

    # the policy's folder registered at start-up; the starter model is not on the list
    qtbot.waitUntil(lambda: any("Approved" in n for n in names()) and any("smollm2" in n.lower() for n in names()),
                    timeout=15000)
    qtbot.waitUntil(lambda: any("not approved" in n for n in names()), timeout=15000)
    ns = names()
    assert any("Approved" in n and "not approved" not in n for n in ns)
    assert any("smollm2" in n.lower() and "(not approved by your administrator)" in n for n in ns)
    h.host.resize(1100, 520)
    assert h.host.grab().save(str(SHOTS / "models_not_approved.png"))


def test_private_only_keeps_every_chat_private(atelier_home):
    from desktop_app.ui.chat.session import ChatStores

    policy(atelier_home, "[history]\nmode = 'private_only'")
    stores = ChatStores()
    assert stores.saved is None and "Every chat is private" in stores.policy_note
    assert stores.set_private(True) and stores.active is not None and stores.active.private
    assert stores.set_private(False) is False and stores.private  # the policy keeps it on
    assert not (atelier_home / "data" / "history.sqlite3").exists()
    stores.close()


def test_the_window_says_a_malformed_policy_and_keeps_chats_private(qtbot, atelier_home):
    from desktop_app.ui.main_window import MainWindow

    policy(atelier_home, "alowed_models = []\n")  # misspelt: never ignored
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    qtbot.waitExposed(win)
    win.start()
    banner = win.storage_banner.text()
    assert win.storage_banner.isVisible() and "most restrictive mode" in banner and "alowed_models" in banner
    from PySide6.QtWidgets import QPushButton

    qtbot.waitUntil(lambda: win.findChild(QPushButton, "chatPrivate") is not None, timeout=10000)  # built lazily
    private = win.findChild(QPushButton, "chatPrivate")
    assert private is not None and private.isChecked() and not private.isEnabled()
    assert "Every chat is private" in private.toolTip()
    SHOTS.mkdir(exist_ok=True)
    assert win.grab().save(str(SHOTS / "window_malformed_policy.png"))
    win.close()


def test_the_chat_and_studio_pickers_mark_a_model_the_policy_refuses(atelier_home, starter_model, tiny_gguf, tmp_path):
    from desktop_app.core.library import Library, ModelRecord
    from desktop_app.core.starter import STARTER_ID, ensure_starter_registered
    from desktop_app.ui.chat.header import list_chat_models
    from desktop_app.ui.studio.controller import list_image_models

    lib = Library()
    ensure_starter_registered(lib)
    ok = tmp_path / "Approved-Q4_K_M.gguf"
    ok.write_bytes(tiny_gguf.read_bytes())
    lib.add(ModelRecord(id="approved", task="chat", format="gguf", path=str(ok), size_bytes=ok.stat().st_size))
    pipe = tmp_path / "pipe"
    (pipe / "unet").mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    lib.add(ModelRecord(id="pipe", task="image", format="diffusers", path=str(pipe), size_bytes=1, family="sd15"))
    policy(atelier_home, f"allowed_models = ['{model_digest(ok)}']\n")
    by_id = {m["id"]: m for m in list_chat_models(lib, None)}
    assert by_id[STARTER_ID]["badge"] == "not approved by your administrator"
    assert "not approved" not in by_id["approved"]["badge"]
    _recs, badges, _post = list_image_models(lib, None)
    assert badges["pipe"][0] == "not approved by your administrator"
