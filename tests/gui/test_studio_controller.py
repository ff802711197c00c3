"""The Image Studio's controller without any widget (issue 10): list, load, generate, cancel,
post-process, restart, against the real engine child process and tiny random pipelines."""

from __future__ import annotations


import pytest
from PySide6.QtWidgets import QApplication

from desktop_app.core.library import ModelRecord
from desktop_app.qt.context import AppContext
from desktop_app.ui.studio.controller import StudioController
from desktop_app.ui.studio.gallery import images_dir

pytestmark = pytest.mark.gui

PARAMS = {"prompt": "a red fox", "negative": "", "mode": "txt2img", "steps": 2, "guidance": 3.0, "width": 64,
          "height": 64, "seed": 5, "batch": 1, "scheduler": "Euler", "strength": 0.75, "loras": []}


@pytest.fixture
def ctl(qtbot):
    ctx = AppContext()
    c = StudioController(ctx)
    yield c
    c.shutdown()
    ctx.shutdown()


def test_models_are_listed_with_badges_and_a_broken_record_says_so(ctl, qtbot, tmp_path):
    before = set(QApplication.allWidgets())
    junk = tmp_path / "x.safetensors"
    junk.write_bytes(b"\xff" * 64)  # not a safetensors header
    ctl.ctx.library.add(ModelRecord(id="broken", task="image", format="safetensors", path=str(junk),
                                    size_bytes=64, name="Broken"))
    ctl.ctx.library.add(ModelRecord(id="sr", task="upscale", format="safetensors", path=str(tmp_path / "sr.safetensors"),
                                    size_bytes=10, name="SR"))
    with qtbot.waitSignal(ctl.models_listed, timeout=10_000) as listed:
        ctl.refresh_models()
    assert [r.id for r in listed.args[0]] == ["broken"] and ctl.records["broken"].display_name == "Broken"
    assert ctl.badges["broken"][0] == "Unreadable" and ctl.badges["broken"][2] == "error"
    assert [r.id for r in ctl.post_models["upscale"]] == ["sr"] and ctl.post_models["background_removal"] == []
    assert ctl.cancel() is None and not ctl.busy and not ctl.post_busy
    assert not set(QApplication.allWidgets()) - before


@pytest.mark.slow
def test_load_generate_cancel_upscale_and_restart_without_widgets(ctl, qtbot, tmp_path_factory):

    from desktop_app.core.model_files import record_for_path
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.metadata import parse_parameters
    from tests.diffusion import tiny_pipelines as tp
    from tests.postprocess.models import write_tiny_esrgan

    before = set(QApplication.allWidgets())
    folder = tp.build_sd15(tmp_path_factory.mktemp("ctl_tiny") / "tiny-sd15")
    ctl.ctx.library.add(ModelRecord(id="tiny-sd15", task="image", format="diffusers", path=str(folder),
                                    size_bytes=1000, name="Tiny SD 1.5", family="sd15"))
    sr = write_tiny_esrgan(tmp_path_factory.mktemp("ctl_sr") / "tiny-esrgan-2x.safetensors", scale=2)
    ctl.ctx.library.add(record_for_path(sr))
    eng = EngineProcess(env={"ATELIER_TEST_STEP_DELAY": "0.05"},
                        log_path=tmp_path_factory.mktemp("ctl_engine") / "engine.log")
    ctl.engine_provider = lambda: (eng, True)
    with qtbot.waitSignal(ctl.models_listed, timeout=10_000):
        ctl.refresh_models()
    rec = ctl.records["tiny-sd15"]

    with qtbot.waitSignal(ctl.loaded, timeout=120_000) as loaded:
        ctl.load(rec)
    assert loaded.args[0]["name"] == "Tiny SD 1.5" and loaded.args[0]["native_size"] == 64
    assert ctl.loaded_path == str(folder) and "Tiny SD 1.5" in ctl.ctx._loaded["image"]

    steps, results, errors = [], [], []
    ctl.engine_error.connect(lambda k, m: errors.append((k, m)))
    ctl.progress.connect(lambda p: steps.append(p.step))
    ctl.result.connect(lambda item, source: results.append((item, source)))
    with qtbot.waitSignal(ctl.generation_ended, timeout=120_000) as ended:
        assert ctl.generate(rec, dict(PARAMS), None, None) is not None
        assert ctl.busy and ctl.generate(rec, dict(PARAMS), None, None) is None  # one at a time
    assert ended.args == ["done", 1] and steps[-1] == 2 and not ctl.busy, errors
    item, source = results[0]
    assert source == "generate" and item.path.parent == images_dir() and parse_parameters(item.path)["seed"] == 5

    # cancel within a step: the child confirms, the generation ends as cancelled
    ctl.progress.connect(lambda p: ctl.cancel() if p.step == 2 else None)
    with qtbot.waitSignal(ctl.generation_ended, timeout=120_000) as ended:
        ctl.generate(rec, dict(PARAMS, steps=50), None, None)
    assert ended.args[0] == "cancelled" and len(results) == 1

    # post-processing drains through the same path; its PNG is encoded once, in the child
    out = tmp_path_factory.mktemp("ctl_out") / "up.png"
    with qtbot.waitSignal(ctl.post_ended, timeout=120_000) as post:
        ctl.postprocess("upscale", item.path, item.params, ctl.post_models["upscale"][0], out)
        assert ctl.post_busy
    assert post.args == ["done"] and not ctl.post_busy
    up, source = results[-1]
    assert source == "upscale" and up.path == out and up.image.width() == 128 and up.image.height() == 128
    meta = parse_parameters(out)
    assert meta["operation"] == "Upscaled" and meta["prompt"] == "a red fox" and meta["seed"] == 5
    assert (meta["width"], meta["height"], meta["scale"]) == (128, 128, 2) and up.params == {
        k: v for k, v in meta.items() if k not in ("version", "source")}

    # restart: a fresh child, the model loaded in it again
    pid = eng.pid
    with qtbot.waitSignal(ctl.loaded, timeout=120_000):
        ctl.restart(rec)
    assert eng.pid != pid and eng.alive
    assert not set(QApplication.allWidgets()) - before  # the controller builds no widget
