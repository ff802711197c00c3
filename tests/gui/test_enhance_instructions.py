"""Enhance prompt's instructions are the user's to edit, per style (issue 14): the dialog shows
the ones in use for the selected model's family, OK keeps an edit, Built-in puts the shipped ones
back (and stores nothing)."""

from __future__ import annotations

import pytest

from desktop_app.core.library import ModelRecord
from desktop_app.core.prompt_enhance import NATURAL_SYSTEM, TAG_SYSTEM, custom_instructions
from desktop_app.qt.context import AppContext
from desktop_app.ui.studio.tab import StudioTab

pytestmark = pytest.mark.gui


def test_edit_the_instructions_per_style(qtbot, tmp_path):
    ctx = AppContext()
    for mid, fam in (("a-sdxl", "sdxl"), ("b-flux", "flux-schnell")):
        ctx.library.add(ModelRecord(id=mid, task="image", format="diffusers", path=str(tmp_path / mid),
                                    size_bytes=1, name=mid, family=fam))
    tab = StudioTab(ctx)
    qtbot.addWidget(tab)
    with qtbot.waitSignal(tab.models_listed, timeout=10_000):
        tab.refresh_models()
    try:
        assert tab.select_model("a-sdxl", load=False)
        dlg = tab.enhancer.edit_instructions()
        assert dlg.editor.toPlainText() == TAG_SYSTEM  # the built-in ones for tags
        dlg.editor.setPlainText("Write only five tags.")
        dlg.accept()
        assert custom_instructions(ctx.settings, "sdxl") == "Write only five tags."
        assert custom_instructions(ctx.settings, "flux-schnell") is None  # the other style is untouched
        assert tab.enhancer.edit_instructions().editor.toPlainText() == "Write only five tags."
        assert tab.select_model("b-flux", load=False)
        dlg = tab.enhancer.edit_instructions()
        assert dlg.editor.toPlainText() == NATURAL_SYSTEM
        dlg.reject()
        # Built-in, then OK: nothing of the user's is stored for that style any more
        assert tab.select_model("a-sdxl", load=False)
        dlg = tab.enhancer.edit_instructions()
        next(b for b in dlg.findChildren(type(tab.enhancer.button)) if b.text() == "Built-in").click()
        assert dlg.editor.toPlainText() == TAG_SYSTEM
        dlg.accept()
        assert ctx.settings.get("enhance_system_prompts") == {}
        # an empty idea is a one-line status message, and nothing starts
        tab.params.prompt.setPlainText("   ")
        with qtbot.waitSignal(ctx.status_message, timeout=2000) as said:
            assert tab.enhancer.start() is None
        assert "Type a short idea" in said.args[0] and not tab.enhancer.busy
    finally:
        tab.shutdown()
        ctx.shutdown()
