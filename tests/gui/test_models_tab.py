"""Models tab: catalog filters and badges, downloads from a local fake hub, library, offline, settings."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget

from desktop_app.core.library import Library
from desktop_app.qt.context import AppContext
from desktop_app.ui.models.tab import ModelsTab
from tests.hub.conftest import fake_hub, gguf_bytes  # noqa: F401 - fixtures reused from the hub tests

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
GiB = 1024**3

CPU_16GB = {"cpu": {"name": "Test CPU", "cores": 8, "flags": ["avx2"]}, "ram_total_bytes": 16 * GiB,
            "ram_available_bytes": 14 * GiB, "gpus": [], "llama_backend": "cpu"}
RTX_4090 = {"cpu": {"name": "Test CPU", "cores": 16, "flags": ["avx2"]}, "ram_total_bytes": 64 * GiB,
            "ram_available_bytes": 60 * GiB, "llama_backend": "cuda",
            "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_total_bytes": 24 * GiB,
                      "vram_free_bytes": 23 * GiB}]}


# --- socket boundary: every connect attempt of the process is recorded ----------------------
_CONNECTS: list = []
_RECORDING = {"on": False}


def _audit(event, args):
    if _RECORDING["on"] and event in ("socket.connect", "socket.getaddrinfo"):
        _CONNECTS.append((event, args[1] if event == "socket.connect" else args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def record_sockets():
    _CONNECTS.clear()
    _RECORDING["on"] = True
    yield _CONNECTS
    _RECORDING["on"] = False


def use_profile(monkeypatch, tmp_path, profile: dict) -> None:
    p = tmp_path / "hw.json"
    p.write_text(json.dumps(profile))
    monkeypatch.setenv("ATELIER_HARDWARE", str(p))
    from desktop_app.core.hardware import detect_hardware

    detect_hardware(refresh=True)


class Harness:
    """A Models tab on its own AppContext, started like the main window starts it."""

    def __init__(self, qtbot) -> None:
        self.host = QWidget()
        self.ctx = AppContext(self.host)
        self.tab = ModelsTab(self.ctx, self.host)
        self.host.resize(1280, 760)
        self.tab.resize(1280, 760)
        qtbot.addWidget(self.host)
        self.host.show()
        self.ctx.start()
        self.tab.start()
        self.qtbot = qtbot

    def close(self) -> None:
        self.tab.shutdown()
        self.ctx.shutdown()
        self.host.close()


@pytest.fixture
def make_tab(qtbot):
    made: list[Harness] = []

    def make() -> Harness:
        h = Harness(qtbot)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
    from desktop_app.core.hardware import detect_hardware

    os.environ.pop("ATELIER_HARDWARE", None)
    detect_hardware(refresh=True)


def click_in_dialog_text(text: str) -> None:
    """Press the button labelled ``text`` of the next modal dialog once it is shown."""
    from PySide6.QtWidgets import QAbstractButton

    def press():
        w = QApplication.activeModalWidget()
        if w is None:
            QTimer.singleShot(20, press)
            return
        next(b for b in w.findChildren(QAbstractButton) if b.text() == text).click()

    QTimer.singleShot(0, press)


def click_in_dialog(button_property: str) -> None:
    """Press a button of the next modal dialog (QMessageBox.exec) once it is shown."""

    def press():
        w = QApplication.activeModalWidget()
        if w is None:
            QTimer.singleShot(20, press)
            return
        w.property(button_property).click()

    QTimer.singleShot(0, press)


def catalog_ready(h: Harness) -> bool:
    rows = h.tab.catalog.model.rows
    return bool(rows) and h.ctx.hardware is not None and all(r.fit is not None or r.entry.needs_server for r in rows)


# --- catalog --------------------------------------------------------------------------------
def test_catalog_filters_badges_and_best_pick_on_a_cpu_machine(make_tab, qtbot, monkeypatch, tmp_path):
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    h = make_tab()
    view = h.tab.catalog
    qtbot.waitUntil(lambda: catalog_ready(h), timeout=20000)
    all_rows = view.visible_rows()
    assert len(all_rows) >= 30

    # badges: every row shows one; huge models are too large; DeepSeek R1/V3 full need a server
    fit_col = view.model.COL_FIT
    texts = [view.proxy.index(i, fit_col).data() for i in range(view.proxy.rowCount())]
    assert all(t and t != "…" for t in texts)
    assert "Needs a server" in texts
    assert any(t.startswith("CPU") for t in texts) and "Too large" in texts
    server = [r for r in all_rows if r.entry.needs_server]
    assert server and all("deepseek" in (r.entry.family + r.entry.repo_id).lower() for r in server)
    assert view.model.data(view.model.index(view.model.rows.index(server[0]), fit_col)) == "Needs a server"

    # the best quantization per family is pre-selected and highlighted
    best = [r for r in all_rows if r.recommended]
    assert best and all(r.fit.fits for r in best)
    i = view.model.rows.index(best[0])
    assert "★ best" in view.model.index(i, 0).data()
    from PySide6.QtCore import Qt

    assert view.model.index(i, 1).data(Qt.ItemDataRole.BackgroundRole) is not None

    # task filter
    view.task_combo.setCurrentIndex(view.task_combo.findData("image"))
    img = view.visible_rows()
    assert img and all(r.entry.task == "image" for r in img)
    view.task_combo.setCurrentIndex(view.task_combo.findData("chat"))
    chat = view.visible_rows()
    assert chat and all(r.entry.task == "chat" for r in chat)

    # fits my machine: nothing too large, nothing that needs a server
    view.fits_check.setChecked(True)
    fitting = view.visible_rows()
    assert 0 < len(fitting) < len(chat)
    assert all(r.fit.fits and not r.entry.needs_server for r in fitting)

    # text filter and sort by size
    view.search_edit.setText("qwen3")
    q = view.visible_rows()
    assert q and all("qwen3" in (r.entry.family + r.entry.repo_id).lower() for r in q)
    view.search_edit.clear()
    view.fits_check.setChecked(False)
    view.sort_by_size()
    sizes = [r.entry.size_bytes for r in view.visible_rows()]
    assert sizes == sorted(sizes)
    # approximate sizes are marked
    approx = [r for r in view.visible_rows() if not r.entry.size_exact and r.entry.size_bytes]
    if approx:
        j = view.model.rows.index(approx[0])
        assert view.model.index(j, view.model.COL_SIZE).data().startswith("~")


def test_catalog_badges_follow_the_hardware_profile_and_screenshot(make_tab, qtbot, monkeypatch, tmp_path):
    use_profile(monkeypatch, tmp_path, RTX_4090)
    h = make_tab()
    view = h.tab.catalog
    qtbot.waitUntil(lambda: catalog_ready(h), timeout=20000)
    assert "RTX 4090" in h.ctx.hardware.summary()
    texts = {view.proxy.index(i, view.model.COL_FIT).data() for i in range(view.proxy.rowCount())}
    assert "Full GPU" in texts
    assert any(t.startswith("Partial") for t in texts) or "Too large" in texts
    view.task_combo.setCurrentIndex(view.task_combo.findData("chat"))
    view.sort_by_size(ascending=False)
    view.table.selectRow(4)
    view.table.scrollTo(view.proxy.index(8, 0))
    SHOTS.mkdir(exist_ok=True)
    assert h.host.grab().save(str(SHOTS / "models_catalog.png"))


RTX_4060 = {"cpu": {"name": "Test CPU", "cores": 8, "flags": ["avx2"]}, "ram_total_bytes": 32 * GiB,
            "ram_available_bytes": 28 * GiB, "llama_backend": "cuda",
            "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4060 Laptop GPU", "vram_total_bytes": 8 * GiB,
                      "vram_free_bytes": 7 * GiB}]}


@pytest.mark.parametrize("profile", [RTX_4060, CPU_16GB], ids=["rtx4060", "cpu16"])
def test_model_cards_say_what_fits_here_and_sort_per_machine(make_tab, qtbot, monkeypatch, tmp_path, profile):
    use_profile(monkeypatch, tmp_path, profile)
    h = make_tab()
    h.tab.sections.setCurrentWidget(h.tab.catalog)
    view = h.tab.catalog
    qtbot.waitUntil(lambda: catalog_ready(h), timeout=20000)
    assert view.views.currentWidget() is view.cards  # cards by default; the table is the list view
    from desktop_app.ui.models.cards import card_html

    rows = view.visible_rows()
    first = card_html(rows[0])
    assert rows[0].entry.family in first and "licence" in first and rows[0].fit.badge in first
    chat = [r for r in rows if r.entry.task == "chat"]
    # per machine: nothing partial, slow or too large is listed above a model that runs all on the GPU
    ranks = [{"gpu": 0, "partial": 1}.get(r.fit.plan, 2) if r.fit else 3 for r in chat]
    assert ranks == sorted(ranks)
    # "best" never stars a partial file when a full-GPU file of the same family exists
    by_family: dict = {}
    for r in chat:
        by_family.setdefault(r.entry.family_id, []).append(r)
    for fam in by_family.values():
        starred = [r for r in fam if r.recommended]
        if starred and any(r.fit.plan == "gpu" for r in fam):
            assert starred[0].fit.plan == "gpu", starred[0].entry.id
    if profile is RTX_4060:
        assert any(r.fit.plan == "gpu" for r in chat) and any(r.fit.plan == "partial" for r in chat)
        assert "every layer on the GPU" in card_html(next(r for r in chat if r.fit.plan == "gpu"))
    else:
        cpu = next(r for r in chat if r.fit.plan == "cpu" and r.fit.tokens_per_s)
        assert "tokens per second" in card_html(cpu)
    # a card and a table row are one selection: picking a card enables Download
    view.cards.setCurrentIndex(view.proxy.index(0, 0))
    assert view.selected_row() is rows[0] and view.download_btn.isEnabled() == (not rows[0].installed)
    view.list_btn.click()
    assert view.views.currentWidget() is view.table and view.proxy.rowCount() == len(rows)
    assert view.table.selectionModel().isRowSelected(0)
    view.cards_btn.click()
    SHOTS.mkdir(exist_ok=True)
    assert h.host.grab().save(str(SHOTS / f"model_cards_{'gpu' if profile is RTX_4060 else 'cpu'}.png"))


def test_gated_catalog_entry_asks_for_the_licence_first(make_tab, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_OFFLINE", "1")  # the download itself is then refused without a socket
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    h = make_tab()
    view = h.tab.catalog
    qtbot.waitUntil(lambda: catalog_ready(h), timeout=20000)
    gated = next(r for r in view.model.rows if r.entry.needs_acceptance and not r.entry.needs_server)
    assert view.select_entry(gated.entry.id)
    box = view.licence_box(gated.entry)
    assert (gated.entry.license or "licence") in box.text() and "http" in box.text()
    box.deleteLater()
    requested = []
    view.download_requested.connect(requested.append)
    # refusing the licence queues nothing
    QTimer.singleShot(0, lambda: QApplication.activeModalWidget().reject())
    view.download_btn.click()
    assert requested == [] and "not accepted" in view.message.text()
    # accepting it passes the entry on; offline, the downloads panel says so and queues nothing
    click_in_dialog("accept_button")
    view.download_btn.click()
    assert requested == [gated.entry]
    assert "Offline mode is on" in h.tab.downloads.message.text()
    assert h.tab.downloads.queue is None or not h.tab.downloads.queue.jobs()


# --- downloads from the local fake hub -----------------------------------------------------
def test_download_with_progress_pause_resume_from_fake_hub(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    fake_hub.throttle_bps = 3_000_000  # ~2.4 MB file: about a second, so progress and pause are visible
    h = make_tab()
    dl = h.tab.downloads
    h.tab.sections.setCurrentWidget(dl)
    updates = []
    dl.job_updated.connect(updates.append)
    job_id = dl.add("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    assert job_id
    qtbot.waitUntil(lambda: any(u.state == "running" and 0 < u.bytes_done < (u.bytes_total or 0) for u in updates),
                    timeout=15000)
    row = dl.row(job_id)
    assert "of" in row.status.text() and "ETA" in row.status.text() and "/s" in row.status.text()
    assert 0 < row.bar.value() < 1000

    assert "Downloading testorg/Big-GGUF big-Q4_K_M.gguf" in dl.message.text()  # not "Queued …" any more
    dl.pause(job_id)
    qtbot.waitUntil(lambda: dl.queue.get(job_id).state == "paused", timeout=10000)
    qtbot.waitUntil(lambda: dl.message.text().startswith("Paused testorg/Big-GGUF"), timeout=5000)
    assert not Library().get("testorg/Big-GGUF/big-Q4_K_M.gguf")  # an incomplete file is never installed
    qtbot.waitUntil(lambda: row.resume_btn.isVisible(), timeout=5000)
    SHOTS.mkdir(exist_ok=True)
    assert h.host.grab().save(str(SHOTS / "models_downloads.png"))
    fake_hub.throttle_bps = None
    finished = []
    dl.job_finished.connect(finished.append)
    row.resume_btn.click()
    qtbot.waitUntil(lambda: bool(finished), timeout=15000)
    assert finished[0].state == "done", finished[0].message
    assert any("bytes=" in r for r in fake_hub.ranges())  # resumed with an HTTP Range request
    rec = Library().get("testorg/Big-GGUF/big-Q4_K_M.gguf")
    assert rec and rec.managed and Path(rec.path).exists()
    # the library view refreshes on library_changed and shows it
    qtbot.waitUntil(lambda: any(r.id == rec.id for r in h.tab.library.records()), timeout=10000)
    assert "Installed" in row.status.text()


def test_hash_mismatch_is_a_clear_error_and_nothing_is_installed(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    fake_hub.corrupt.add("tiny-Q4_K_M.gguf")
    h = make_tab()
    dl = h.tab.downloads
    finished = []
    dl.job_finished.connect(finished.append)
    job_id = dl.add("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    qtbot.waitUntil(lambda: bool(finished), timeout=15000)
    assert finished[0].state == "failed"
    assert "checksum mismatch" in dl.row(job_id).status.text()
    assert "failed" in dl.message.text() and "checksum" in dl.message.text()
    assert Library().get("testorg/Tiny-GGUF/tiny-Q4_K_M.gguf") is None
    models = h.ctx.settings.models_dir
    assert not [p for p in models.rglob("tiny-Q4_K_M.gguf*")]


def test_an_interrupted_download_waits_for_the_user(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    """A job that quitting (or a kill) interrupted is not resumed behind the user's back: no network
    call they did not ask for now. It waits, paused, and Resume continues it."""
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    from desktop_app.hub.downloads import DownloadQueue

    job_id = DownloadQueue().add("testorg/Tiny-GGUF", "tiny-Q8_0.gguf")
    h = make_tab()
    dl = h.tab.downloads
    qtbot.waitUntil(lambda: dl.row(job_id) is not None and dl.queue.get(job_id).state == "paused", timeout=5000)
    assert "1 download(s) were interrupted" in dl.message.text()
    qtbot.wait(300)
    assert not [r for r in fake_hub.requests if "tiny-Q8_0" in str(r)]  # nothing fetched
    assert Library().get("testorg/Tiny-GGUF/tiny-Q8_0.gguf") is None
    h.tab.sections.setCurrentWidget(dl)
    qtbot.waitUntil(lambda: dl.row(job_id).resume_btn.isVisible(), timeout=5000)
    dl.row(job_id).resume_btn.click()
    qtbot.waitUntil(lambda: Library().get("testorg/Tiny-GGUF/tiny-Q8_0.gguf") is not None, timeout=15000)


def test_always_resume_picks_up_an_interrupted_download_at_start(make_tab, qtbot, fake_hub, monkeypatch,  # noqa: F811
                                                                 tmp_path):
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    from desktop_app.core.settings import Settings
    from desktop_app.hub.downloads import DownloadQueue

    Settings().set("downloads_auto_resume", True)  # the user said "always resume"
    DownloadQueue().add("testorg/Tiny-GGUF", "tiny-Q8_0.gguf")
    h = make_tab()
    qtbot.waitUntil(lambda: Library().get("testorg/Tiny-GGUF/tiny-Q8_0.gguf") is not None, timeout=15000)
    assert "Resuming 1 download" in h.tab.downloads.message.text() or "downloaded" in h.tab.downloads.message.text()


def test_quitting_during_a_download_asks_first(qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    from desktop_app.ui.main_window import MainWindow

    use_profile(monkeypatch, tmp_path, CPU_16GB)
    fake_hub.throttle_bps = 300_000  # long enough to still run when the user quits
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    dl = win.models_tab.downloads
    job_id = dl.add("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    qtbot.waitUntil(lambda: dl.queue.get(job_id).state == "running", timeout=10000)
    box = win.quit_box(1)
    assert box.defaultButton().text() == "Keep downloading"  # No is the default in a destructive dialog
    box.deleteLater()
    click_in_dialog_text("Keep downloading")
    assert win.request_quit() is False
    assert win.isVisible() and dl.queue.get(job_id).state == "running"
    click_in_dialog("quit_button")
    assert win.request_quit() is True
    assert not win.isVisible()
    from desktop_app.hub.downloads import DownloadQueue

    assert DownloadQueue().get(job_id).state in ("queued", "paused")  # kept for the user to resume


def test_hub_search_lists_files_with_sizes_and_badges_then_downloads(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    h = make_tab()
    hub = h.tab.hub
    qtbot.waitUntil(lambda: h.ctx.hardware is not None, timeout=10000)
    hub.search("tiny", "chat")
    qtbot.waitUntil(lambda: hub.results.count() > 0, timeout=10000)
    assert "testorg/Tiny-GGUF" in hub.results.item(0).text()
    hub.results.setCurrentRow(0)
    qtbot.waitUntil(lambda: hub.files.topLevelItemCount() == 4, timeout=10000)
    items = {hub.files.topLevelItem(i).data(0, 0x0100 + 3)["name"]: hub.files.topLevelItem(i) for i in range(4)}
    q4 = items["tiny-Q4_K_M.gguf"]
    assert q4.text(1).endswith("KB") or q4.text(1).endswith("MB")
    assert q4.text(3).startswith("CPU")  # fit badge
    assert "tokens per second on this CPU" in q4.text(3) or ": on the CPU" in q4.text(3)  # and the speed, in words
    hub.files.setCurrentItem(q4)  # the selected file as a model card
    card = hub.card.text()
    assert "testorg/Tiny-GGUF" in card and "tiny-Q4_K_M.gguf" in card and "licence" in card and "CPU" in card
    assert hub.best_file and "best for this machine" in items[hub.best_file].text(0)
    assert hub.select_file("tiny-Q2_K.gguf")
    finished = []
    h.tab.downloads.job_finished.connect(finished.append)
    hub.download_btn.click()
    assert h.tab.sections.currentWidget() is h.tab.downloads
    qtbot.waitUntil(lambda: bool(finished), timeout=15000)
    assert finished[0].state == "done", finished[0].message
    assert Library().get("testorg/Tiny-GGUF/tiny-Q2_K.gguf") is not None


# --- library ---------------------------------------------------------------------------------
def test_the_same_model_imported_twice_shows_once(make_tab, qtbot, monkeypatch, tmp_path, tiny_gguf):
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    h = make_tab()
    lib = h.tab.library
    lib.import_path(tiny_gguf, copy=True)
    qtbot.waitUntil(lambda: "Imported" in lib.message.text(), timeout=10000)
    usb = tmp_path / "usb" / "Same-Model.gguf"
    usb.parent.mkdir()
    usb.write_bytes(tiny_gguf.read_bytes())
    lib.import_path(usb, copy=False)
    qtbot.waitUntil(lambda: "already in the library" in lib.message.text(), timeout=10000)
    assert "Same-Model.gguf is already in the library as tiny-llama" in lib.message.text()
    assert len([r for r in Library().list() if r.format == "gguf" and r.source == "import"]) == 1
    qtbot.waitUntil(lambda: lib.selected_record() is not None, timeout=10000)
    assert lib.selected_record().name == "tiny-llama"


def test_library_import_delete_and_screenshot(make_tab, qtbot, monkeypatch, tmp_path, tiny_gguf):
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    h = make_tab()
    lib = h.tab.library
    h.tab.sections.setCurrentWidget(lib)
    qtbot.waitUntil(lambda: h.ctx.hardware is not None, timeout=10000)

    # a copy into the models folder (managed) and a file used in place (another app's folder)
    other_app = tmp_path / "lmstudio" / "models"
    other_app.mkdir(parents=True)
    in_place = other_app / "InPlace-Q4_K_M.gguf"
    in_place.write_bytes(tiny_gguf.read_bytes() + b"\0" * 8)  # another model (trailing bytes are ignored)
    lib.import_path(tiny_gguf, copy=True)
    qtbot.waitUntil(lambda: "Imported" in lib.message.text(), timeout=10000)
    lib.import_path(in_place, copy=False)
    qtbot.waitUntil(lambda: len(lib.records()) >= 3 and "InPlace" in lib.message.text(), timeout=10000)
    # pickle refused with a clear message
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"pickle")
    lib.import_path(ckpt, copy=False)
    qtbot.waitUntil(lambda: "refused" in lib.message.text(), timeout=10000)
    assert "pickle" in lib.message.text()

    recs = {r.path: r for r in lib.records()}
    copied = next(r for r in recs.values() if r.managed)
    assert Path(copied.path).exists() and copied.path != str(tiny_gguf)
    qtbot.waitUntil(lambda: all(lib.model.data(lib.model.index(i, lib.model.COL_FIT)) != "…"
                                for i in range(lib.model.rowCount())), timeout=10000)
    lib.select_model(copied.id)
    SHOTS.mkdir(exist_ok=True)
    assert h.host.grab().save(str(SHOTS / "models_library.png"))

    # open folder goes to the model's folder (QDesktopServices in the app)
    opened = []
    lib.open_url = opened.append
    assert lib.select_model(copied.id)
    lib.open_btn.click()
    assert opened and Path(opened[0].toLocalFile()) == Path(copied.path).parent

    # delete a managed model: the dialog states the space freed, the file goes
    box = lib.delete_box(copied)
    assert "freeing" in box.text() and "KB" in box.text() or "MB" in box.text()
    box.deleteLater()
    click_in_dialog("confirm_button")
    lib.delete_btn.click()
    qtbot.waitUntil(lambda: "freed" in lib.message.text(), timeout=10000)
    assert not Path(copied.path).exists()
    qtbot.waitUntil(lambda: copied.id not in [r.id for r in lib.records()], timeout=10000)

    # a model used in place is only unregistered, and the dialog says so
    placed = next(r for r in lib.records() if r.path == str(in_place.resolve()))
    assert lib.select_model(placed.id)
    assert lib.delete_btn.text().replace("&", "").startswith("Unregister")
    box = lib.delete_box(placed)
    assert "only unregisters" in box.text() and "no file is deleted" in box.text()
    box.deleteLater()
    click_in_dialog("confirm_button")
    lib.delete_btn.click()
    qtbot.waitUntil(lambda: "Unregistered" in lib.message.text(), timeout=10000)
    assert in_place.exists()


# --- offline ---------------------------------------------------------------------------------
def test_offline_the_whole_tab_opens_no_socket(make_tab, qtbot, monkeypatch, tmp_path, record_sockets):
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would be refused, but must not even be tried
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    from desktop_app.core.settings import Settings
    from desktop_app.hub.downloads import DownloadQueue

    Settings().set("downloads_auto_resume", True)  # even "always resume" waits while offline

    DownloadQueue().add("testorg/Tiny-GGUF", "tiny-Q4_K_M.gguf")  # a pending job from last time
    h = make_tab()
    tab = h.tab
    qtbot.waitUntil(lambda: catalog_ready(h), timeout=20000)
    assert "Offline mode" in tab.offline_label.text()
    assert "waiting" in tab.downloads.message.text()

    # refresh sizes is disabled with a message; hub search refuses at once
    assert not tab.catalog.refresh_btn.isEnabled()
    assert "Offline" in tab.catalog.refresh_btn.toolTip()
    tab.catalog._on_refresh_clicked()
    assert "Offline mode is on" in tab.catalog.message.text()
    assert tab.hub.search("qwen", "chat") is None
    assert "Offline mode is on" in tab.hub.message.text()
    assert tab.hub.show_repo("testorg/Tiny-GGUF") is None
    assert tab.downloads.add("testorg/Tiny-GGUF", "tiny-Q2_K.gguf") is None
    assert "Offline mode is on" in tab.downloads.message.text()
    # even a direct client call fails at once with OfflineError and no socket
    from desktop_app.core.errors import OfflineError
    from desktop_app.hub.client import HubClient

    with pytest.raises(OfflineError):
        HubClient().search("x")
    # every section visited, the library listed, start-up done
    for i in range(tab.sections.count()):
        tab.sections.setCurrentIndex(i)
        qtbot.wait(50)
    qtbot.waitUntil(lambda: bool(tab.library.records()), timeout=10000)
    assert record_sockets == []
    assert [j.state for j in tab.downloads.queue.jobs()] == ["queued"]


def test_download_messages_follow_the_truth(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    """The message line never keeps saying something that stopped being true: "Queued …" after a
    cancel, "Offline mode is on" after offline was turned off."""
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    fake_hub.throttle_bps = 1_000_000
    h = make_tab()
    dl = h.tab.downloads
    job_id = dl.add("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    # "Queued …", or already "Downloading …" when the queue took it at once (never a stale one)
    assert dl.message.text() in ("Queued testorg/Big-GGUF big-Q4_K_M.gguf.",
                                 "Downloading testorg/Big-GGUF big-Q4_K_M.gguf…")
    dl.cancel(job_id)
    qtbot.waitUntil(lambda: dl.queue.get(job_id).state == "cancelled", timeout=10000)
    qtbot.waitUntil(lambda: "Cancelled testorg/Big-GGUF" in dl.message.text(), timeout=5000)

    h.ctx.settings.set("offline", True)
    h.tab._on_settings_saved({"offline"})
    assert dl.add("testorg/Tiny-GGUF", "tiny-Q2_K.gguf") is None
    assert "Offline mode is on" in dl.message.text()
    h.ctx.settings.set("offline", False)
    h.tab._on_settings_saved({"offline"})
    assert "Offline" not in dl.message.text() and "Online again" in dl.message.text()


# --- settings --------------------------------------------------------------------------------
def test_settings_dialog_saves_options_and_token_masked(make_tab, qtbot, tmp_path, monkeypatch, caplog, tiny_gguf):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    h = make_tab()
    dlg = h.tab.settings_dialog()
    qtbot.addWidget(dlg)
    from PySide6.QtWidgets import QLineEdit

    assert dlg.token_edit.echoMode() == QLineEdit.EchoMode.Password
    dlg.models_dir_edit.setText(str(tmp_path / "mymodels"))
    provisioned = tmp_path / "provisioned" / "llm"
    provisioned.mkdir(parents=True)
    (provisioned / "Admin-Q4_K_M.gguf").write_bytes(tiny_gguf.read_bytes())
    dlg.extra_list.addItem(str(tmp_path / "provisioned"))
    dlg.offline_check.setChecked(True)
    dlg.endpoint_edit.setText("http://mirror.internal:8080/")
    dlg.proxy_edit.setText("http://proxy:3128")
    dlg.pickle_check.setChecked(True)
    assert not dlg.resume_check.isChecked() and not dlg.privacy_check.isChecked()  # the safe defaults
    dlg.resume_check.setChecked(True)
    dlg.token_edit.setText("hf_secret_value_123")
    with caplog.at_level("DEBUG"):
        dlg.accept()
    s = h.ctx.settings
    assert s.get("models_dir") == str(tmp_path / "mymodels")
    assert s.get("extra_model_dirs") == [str(tmp_path / "provisioned")]
    assert s.offline and s.get("allow_pickle") and s.get("proxy") == "http://proxy:3128"
    assert s.get("downloads_auto_resume") is True and s.get("image_metadata_paths") is False
    assert s.hf_endpoint == "http://mirror.internal:8080"
    from desktop_app.hub import credentials

    assert credentials.get_token() == "hf_secret_value_123"
    assert "hf_secret_value_123" not in caplog.text
    assert "hf_secret_value_123" not in Path(s.path).read_text()
    # the tab follows the offline switch
    assert "Offline mode" in h.tab.offline_label.text()
    assert not h.tab.catalog.refresh_btn.isEnabled()
    # the read-only folder's models are registered in place
    qtbot.waitUntil(lambda: any("Admin-Q4_K_M" in r.path for r in h.tab.library.records()), timeout=10000)
    admin = next(r for r in h.tab.library.records() if "Admin-Q4_K_M" in r.path)
    assert not admin.managed and admin.path == str(provisioned / "Admin-Q4_K_M.gguf")
    # a new dialog never shows the stored token
    dlg2 = h.tab.settings_dialog()
    qtbot.addWidget(dlg2)
    assert dlg2.token_edit.text() == "" and "hf_secret" not in dlg2.token_where.text()


def test_every_visible_control_has_an_accessible_name(make_tab, qtbot):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit

    h = make_tab()
    qtbot.waitUntil(lambda: h.ctx.hardware is not None, timeout=10000)
    missing = []
    for i in range(h.tab.sections.count()):
        h.tab.sections.setCurrentIndex(i)
        for cls in (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox):
            for w in h.tab.findChildren(cls):
                if w.isVisibleTo(h.host) and not w.accessibleName() and not getattr(w, "text", lambda: "")():
                    missing.append(f"{type(w).__name__} {w.objectName()!r}")
    assert not missing, missing


def test_discover_registers_models_of_other_apps_in_place(make_tab, qtbot, monkeypatch, tmp_path, tiny_gguf):
    home = tmp_path / "home"
    lm = home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF"
    lm.mkdir(parents=True)
    (lm / "Tiny-Q4_K_M.gguf").write_bytes(tiny_gguf.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "empty-ollama"))
    h = make_tab()
    lib = h.tab.library
    h.tab.sections.setCurrentWidget(lib)
    lib.discover_btn.click()
    qtbot.waitUntil(lambda: "Registered" in lib.message.text() or "found" in lib.message.text(), timeout=15000)
    assert "Registered 1 new model" in lib.message.text() and ".lmstudio" in lib.message.text()
    qtbot.waitUntil(lambda: any("Tiny-Q4_K_M" in r.path for r in lib.records()), timeout=10000)
    rec = next(r for r in lib.records() if "Tiny-Q4_K_M" in r.path)
    assert not rec.managed and Path(rec.path).parent == lm  # used in place, nothing copied


def test_catalog_refresh_sizes_and_download_through_the_hub(make_tab, qtbot, fake_hub, monkeypatch, tmp_path, gguf_bytes):  # noqa: F811
    """A catalog entry served by the (fake) hub: exact size on request, then download and install."""
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    from desktop_app.hub.catalog import load_catalog

    entry = next(e for e in load_catalog().entries
                 if e.task == "chat" and not e.needs_acceptance and e.files and e.size_bytes < 600e6)
    fake_hub.add_repo(entry.repo_id, {entry.file: gguf_bytes, "README.md": b"hi"}, tags=["gguf"])
    h = make_tab()
    view = h.tab.catalog
    qtbot.waitUntil(lambda: catalog_ready(h), timeout=20000)
    assert view.refresh_btn.isEnabled()
    assert view.select_entry(entry.id)
    view.refresh_btn.click()
    qtbot.waitUntil(lambda: "Sizes refreshed" in view.message.text() or "Could not" in view.message.text(),
                    timeout=15000)
    assert "Sizes refreshed: 1 changed" in view.message.text(), view.message.text()

    def refreshed_row():
        return next((r for r in view.model.rows if r.entry.id == entry.id and r.entry.size_exact), None)

    qtbot.waitUntil(lambda: refreshed_row() is not None, timeout=10000)
    row = view.model.rows.index(refreshed_row())
    assert not view.model.index(row, view.model.COL_SIZE).data().startswith("~")
    assert refreshed_row().entry.size_bytes == len(gguf_bytes)

    finished = []
    h.tab.downloads.job_finished.connect(finished.append)
    assert view.select_entry(entry.id)
    view.download_btn.click()
    qtbot.waitUntil(lambda: bool(finished), timeout=15000)
    assert finished[0].state == "done", finished[0].message
    qtbot.waitUntil(lambda: any(r.installed for r in view.model.rows if r.entry.id == entry.id), timeout=10000)
    rec = Library().get(entry.record_id)
    assert rec is not None and rec.quantization == entry.quantization


def test_cancel_deletes_the_partial_file(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    fake_hub.throttle_bps = 2_000_000
    h = make_tab()
    dl = h.tab.downloads
    h.tab.sections.setCurrentWidget(dl)
    job_id = dl.add("testorg/Big-GGUF", "big-Q4_K_M.gguf")
    qtbot.waitUntil(lambda: dl.queue.get(job_id).bytes_done > 0, timeout=15000)
    row = dl.row(job_id)
    qtbot.waitUntil(lambda: row.cancel_btn.isVisible(), timeout=5000)
    row.cancel_btn.click()
    qtbot.waitUntil(lambda: dl.queue.get(job_id).state == "cancelled", timeout=10000)
    qtbot.waitUntil(lambda: "Cancelled" in row.status.text(), timeout=5000)
    assert not list(h.ctx.settings.models_dir.rglob("big-Q4_K_M.gguf*"))
    assert Library().get("testorg/Big-GGUF/big-Q4_K_M.gguf") is None


def test_gated_hub_repo_needs_licence_acceptance_then_downloads_with_token(make_tab, qtbot, fake_hub, monkeypatch, tmp_path):  # noqa: F811
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    h = make_tab()
    hub = h.tab.hub
    hub.search("gated", "chat")
    qtbot.waitUntil(lambda: hub.results.count() == 1, timeout=10000)
    assert "gated" in hub.results.item(0).text()
    hub.results.setCurrentRow(0)
    qtbot.waitUntil(lambda: hub.files.topLevelItemCount() == 1, timeout=10000)
    assert "Gated" in hub.message.text() and "llama3.2" in hub.message.text()
    finished = []
    h.tab.downloads.job_finished.connect(finished.append)
    QTimer.singleShot(0, lambda: QApplication.activeModalWidget().reject())
    hub.select_file("g-Q4_K_M.gguf")
    hub.download_btn.click()
    assert "not accepted" in h.tab.downloads.message.text()
    click_in_dialog("accept_button")
    hub.download_btn.click()
    qtbot.waitUntil(lambda: bool(finished), timeout=15000)
    assert finished[0].state == "done", finished[0].message
    rec = Library().get("gatedorg/Gated-GGUF/g-Q4_K_M.gguf")
    assert rec is not None and rec.license == "llama3.2"


# --- model packs (issue 12) ------------------------------------------------------------------
def test_library_exports_and_imports_model_packs(make_tab, qtbot, monkeypatch, tmp_path, tiny_gguf):
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    h = make_tab()
    lib = h.tab.library
    h.tab.sections.setCurrentWidget(lib)
    second = tmp_path / "Second-Q8_0.gguf"
    second.write_bytes(tiny_gguf.read_bytes() + b"\0" * 64)  # another file (GGUF ignores trailing bytes)
    lib.import_path(tiny_gguf, copy=True)
    qtbot.waitUntil(lambda: "Imported" in lib.message.text(), timeout=10000)
    lib.import_path(second, copy=True)
    qtbot.waitUntil(lambda: "Second" in lib.message.text() and len(lib.records()) >= 3, timeout=10000)
    ids = [r.id for r in lib.records() if r.managed]
    assert len(ids) == 2

    # nothing selected: nothing to export; two selected: delete and open are off, export is on
    lib.table.clearSelection()
    assert not lib.export_pack_btn.isEnabled()
    for mid in ids:
        lib.select_model(mid)
    lib.table.selectAll()
    assert lib.export_pack_btn.isEnabled() and not lib.delete_btn.isEnabled() and not lib.open_btn.isEnabled()
    assert len(lib.selected_rows()) == len(lib.records())
    lib.select_model(ids[0])
    assert len(lib.selected_rows()) == 1 and lib.delete_btn.isEnabled()

    stick = tmp_path / "usb"
    lib.export_pack(ids, stick)
    qtbot.waitUntil(lambda: "pack.json" in lib.message.text(), timeout=10000)
    assert "Wrote 2 model(s)" in lib.message.text() and (stick / "pack.json").is_file()
    # exporting again into the same folder is refused, and says why
    lib.export_pack(ids, stick)
    qtbot.waitUntil(lambda: "already holds a model pack" in lib.message.text(), timeout=10000)

    # on the other machine (here: after removing them), a pack with one altered byte is refused whole
    from desktop_app.hub.importer import remove_model

    for mid in ids:
        remove_model(mid, Library())  # files too, as on a machine that never had them
    h.ctx.library_changed.emit()
    qtbot.waitUntil(lambda: not any(r.id in ids for r in lib.records()), timeout=10000)
    victim = next(p for p in (stick / "models").rglob("*.gguf") if p.is_file() and "Second" in p.name)
    original = victim.read_bytes()
    victim.write_bytes(original[:-1] + b"\1")
    lib.import_pack(stick)
    qtbot.waitUntil(lambda: "does not match its checksum" in lib.message.text(), timeout=10000)
    assert "Nothing was imported" in lib.message.text() and lib.import_pack_btn.isEnabled()
    assert not any(r.id in ids for r in Library().list())

    victim.write_bytes(original)
    lib.import_pack(stick)
    qtbot.waitUntil(lambda: "from the pack" in lib.message.text(), timeout=10000)
    assert "Imported 2 model(s)" in lib.message.text()
    qtbot.waitUntil(lambda: all(any(r.id == mid for r in lib.records()) for mid in ids), timeout=10000)
    assert all(Library().get(mid).source == "pack" for mid in ids)
    # the same pack again: nothing twice, and it says so
    lib.import_pack(stick)
    qtbot.waitUntil(lambda: "already in the library" in lib.message.text(), timeout=10000)
    assert "Imported 0 model(s)" in lib.message.text() and "2 already in the library" in lib.message.text()
    assert len([r for r in Library().list() if r.source == "pack"]) == 2
    SHOTS.mkdir(exist_ok=True)
    assert h.host.grab().save(str(SHOTS / "models_library_packs.png"))
