"""The studio's parameter panel follows the loaded model: flow schedulers and size multiples (SD3/FLUX)."""

from __future__ import annotations

import pytest

from desktop_app.ui.studio.params import ParamsPanel

pytestmark = pytest.mark.gui


def test_panel_follows_the_models_schedulers_and_size_multiple(qtbot):
    panel = ParamsPanel()
    qtbot.addWidget(panel)
    items = [panel.scheduler.itemText(i) for i in range(panel.scheduler.count())]
    assert "Euler a" in items and "DPM++ 2M Karras" in items
    panel.width_box.setValue(520)
    panel.height_box.setValue(512)
    assert panel.size_errors() == []  # 520 is a multiple of 8

    panel.set_model_limits(["Flow Euler", "Euler"], 16)
    items = [panel.scheduler.itemText(i) for i in range(panel.scheduler.count())]
    assert items[1:] == ["Flow Euler", "Euler"]
    errs = panel.size_errors()
    assert len(errs) == 1 and "multiple of 16" in errs[0] and "520" in errs[0]
    assert panel.width_box.singleStep() == 16
    panel.width_box.setValue(512)
    assert panel.size_errors() == []
