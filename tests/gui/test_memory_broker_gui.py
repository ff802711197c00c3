"""The memory broker in the running app (issue 14), with the real starter model and a tiny
pipeline in their real engine processes: a machine (a hardware profile) with room for either model
but not both; an injected out-of-memory in the image child; the memory meter."""

from __future__ import annotations

import json

import pytest

from desktop_app.core.library import ModelRecord
from desktop_app.core.starter import STARTER_ID
from desktop_app.qt.context import AppContext
from desktop_app.ui.chat.controller import ChatController
from desktop_app.ui.studio.controller import StudioController

pytestmark = pytest.mark.gui

PARAMS = {"prompt": "a red fox", "negative": "", "mode": "txt2img", "steps": 2, "guidance": 3.0, "width": 64,
          "height": 64, "seed": 5, "batch": 1, "scheduler": "Euler", "strength": 0.75, "loras": []}


@pytest.fixture
def tiny_sd15(tmp_path_factory):
    from tests.diffusion import tiny_pipelines as tp

    return tp.build_sd15(tmp_path_factory.mktemp("broker_tiny") / "tiny-sd15")


def tight_profile(path, starter_model, tiny_folder):
    """A CPU-only machine whose free RAM holds the starter or the tiny pipeline, not both."""
    from desktop_app.core.fitting import plan_diffusion, plan_llm
    from desktop_app.core.fitting_common import RAM_MARGIN
    from desktop_app.core.hardware import Hardware, detect_hardware

    big = Hardware.from_dict({**detect_hardware().to_dict(), "gpus": [], "llama_backend": "cpu"})
    chat = plan_llm(starter_model, big).estimated_bytes
    image = plan_diffusion(tiny_folder, big).estimated_bytes
    free = RAM_MARGIN + max(chat, image) + min(chat, image) // 2
    d = {**big.to_dict(), "ram_total_bytes": free * 2, "ram_available_bytes": free}
    d.pop("source", None)
    path.write_text(json.dumps(d))
    return path


@pytest.fixture
def app(qtbot, starter_model):
    ctx = AppContext()
    chat, studio = ChatController(ctx), StudioController(ctx)
    notices = []
    ctx.memory_notice.connect(notices.append)
    yield ctx, chat, studio, notices
    studio.shutdown()
    chat.shutdown()
    ctx.shutdown()


def listed(qtbot, studio, folder):
    studio.ctx.library.add(ModelRecord(id="tiny-sd15", task="image", format="diffusers", path=str(folder),
                                       size_bytes=1000, name="Tiny SD 1.5", family="sd15"))
    with qtbot.waitSignal(studio.models_listed, timeout=20_000):
        studio.refresh_models()
    return studio.records["tiny-sd15"]


@pytest.mark.slow
def test_either_model_but_not_both_the_broker_makes_room_each_way(app, qtbot, monkeypatch, tmp_path, starter_model,
                                                                   tiny_sd15):
    ctx, chat, studio, notices = app
    profile = tight_profile(tmp_path / "tight.json", starter_model, tiny_sd15)
    monkeypatch.setenv("ATELIER_HARDWARE", str(profile))
    from desktop_app.core.hardware import detect_hardware

    ctx.broker.set_hardware(detect_hardware(refresh=True))
    with qtbot.waitSignal(chat.loaded, timeout=120_000):
        chat.load(STARTER_ID)
    assert set(ctx.broker.slots()) == {"chat"} and ctx.broker.slots()["chat"].measured_ram > 0
    rec = listed(qtbot, studio, tiny_sd15)

    # the Studio loads: the chat model is unloaded first (its engine child really frees it)
    with qtbot.waitSignals([studio.loaded, chat.unloaded], timeout=120_000):
        studio.load(rec)
    assert set(ctx.broker.slots()) == {"image"} and chat.loaded_model is None
    assert any("SmolLM2" in n and "was unloaded to make room for Tiny SD 1.5" in n for n in notices), notices

    # back in the chat: now the image pipeline makes room
    notices.clear()
    with qtbot.waitSignal(chat.loaded, timeout=120_000):
        chat.load(STARTER_ID)
    qtbot.waitUntil(lambda: studio.loaded_path is None, timeout=30_000)
    assert set(ctx.broker.slots()) == {"chat"}
    assert any("Tiny SD 1.5 was unloaded to make room for SmolLM2" in n for n in notices), notices

    # a pinned chat model stays: the image cannot load, and says why
    ctx.set_pinned("chat", True)
    errors = []
    studio.engine_error.connect(lambda k, m: errors.append(m))
    with qtbot.waitSignal(studio.load_ended, timeout=60_000) as ended:
        studio.load(rec)
    assert ended.args[0] == "failed" and chat.loaded_model == STARTER_ID
    assert any("is pinned" in m for m in errors), errors
    assert ctx.settings.get("memory_pinned") == ["chat"]


@pytest.mark.slow
def test_out_of_memory_in_the_image_child_is_the_brokers_next_step(app, qtbot, monkeypatch, tiny_sd15):
    """Two injected OOMs: the engine's own lighter retry, then the broker unloads the chat model
    (the image ran on the CPU, where they share the RAM) and the generation runs again."""
    from desktop_app.engines.diffusion.client import EngineProcess

    ctx, chat, studio, notices = app
    eng = EngineProcess(env={"ATELIER_FAULT_OOM": "2"})
    studio.engine_provider = lambda: (eng, True)
    with qtbot.waitSignal(chat.loaded, timeout=120_000):
        chat.load(STARTER_ID)
    rec = listed(qtbot, studio, tiny_sd15)
    statuses, results = [], []
    studio.status.connect(statuses.append)
    studio.result.connect(lambda item, _s: results.append(item))
    with qtbot.waitSignal(studio.generation_ended, timeout=180_000) as ended:
        studio.generate(rec, dict(PARAMS), None, None)
    assert ended.args == ["done", 1] and len(results) == 1
    assert chat.loaded_model is None and set(ctx.broker.slots()) == {"image"}
    assert any("Out of memory" in s and "SmolLM2" in s and "more room" in s and "Generating again" in s
               for s in statuses), statuses


def test_memory_meter_measures_in_the_background_at_most_once_a_second(app, qtbot):
    import time

    from desktop_app.ui.memory_meter import MemoryMeter

    ctx, chat, _studio, _n = app
    meter = MemoryMeter(ctx)
    qtbot.addWidget(meter)
    stamps = []
    meter.measured.connect(lambda _u: stamps.append(time.monotonic()))
    meter.start()
    with qtbot.waitSignal(chat.loaded, timeout=120_000) as loaded:
        chat.load(STARTER_ID)
    ctx.set_loaded("chat", "SmolLM2 (CPU)", loaded.args[0]["engine_pid"])  # as the Chat tab does
    qtbot.waitUntil(lambda: "Chat " in meter.text(), timeout=10_000)
    assert "RAM" in meter.text() and "free" in meter.text() and "SmolLM2" in meter.toolTip()
    n = len(stamps)
    qtbot.wait(3200)
    ticks = [b - a for a, b in zip(stamps[n - 1:], stamps[n:])]
    assert 2 <= len(ticks) <= 4 and min(ticks) >= 0.9, ticks  # the 1 Hz timer, never faster
    meter.grab().save(str(__import__("pathlib").Path("screenshots") / "memory_meter.png"))
    meter.stop()


@pytest.mark.slow
def test_a_moved_chat_model_gets_its_place_back_when_the_studio_is_idle(app, qtbot, monkeypatch, tmp_path,
                                                                         starter_model, tiny_sd15):
    """A profile with one small GPU (the chat model or the pipeline on it, not both): loading the
    image model moves the chat model off the GPU; once everything is idle it is planned again.
    (This machine has no GPU: the image child falls back to the CPU and says so, which frees the
    profile's GPU for the chat model's new plan.)"""
    from desktop_app.core.hardware import detect_hardware

    ctx, chat, studio, notices = app
    d = detect_hardware().to_dict()
    d.pop("source", None)
    d.pop("torch", None)  # a profile's torch matches its GPU (the CUDA build)
    d.update(gpus=[{"vendor": "nvidia", "name": "Small GPU", "vram_total_bytes": 1536 * 2**20,
                    "vram_free_bytes": 1536 * 2**20, "compute_capability": "8.6"}], llama_backend="cuda")
    (tmp_path / "small_gpu.json").write_text(json.dumps(d))
    monkeypatch.setenv("ATELIER_HARDWARE", str(tmp_path / "small_gpu.json"))
    ctx.broker.set_hardware(detect_hardware(refresh=True))
    ctx.restore_after_ms = 300
    with qtbot.waitSignal(chat.loaded, timeout=120_000):
        chat.load(STARTER_ID)
    assert ctx.broker.slots()["chat"].current == "gpu"
    rec = listed(qtbot, studio, tiny_sd15)
    with qtbot.waitSignal(studio.loaded, timeout=120_000):
        studio.load(rec)
    qtbot.waitUntil(lambda: chat.loaded_model == STARTER_ID and not chat.loading, timeout=60_000)
    assert any("SmolLM2" in n and "to make room for Tiny SD 1.5" in n for n in notices), notices
    assert ctx.broker.restorable() == ["chat"] and ctx.broker.slots()["chat"].current in ("cpu", "partial")
    # idle: the chat model is planned again on its own and goes back to the GPU
    ctx.poke_idle()
    qtbot.waitUntil(lambda: ctx.broker.slots().get("chat") is not None
                    and ctx.broker.slots()["chat"].current == "gpu", timeout=60_000)
    assert ctx.broker.restorable() == [] and any("gets its own place again" in n for n in notices)
