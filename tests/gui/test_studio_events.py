"""Issue 10: the Studio's jobs hand the view one dataclass per kind, the same for every producer."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import Event
from desktop_app.ui.studio import events as E
from desktop_app.ui.studio.jobs import _translate

pytestmark = pytest.mark.gui


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


def test_engine_events_become_typed_items(tmp_path, qapp):
    prog = _translate(Event(P.PROGRESS, "j", {"step": 3, "total": 9, "it_s": 1.5, "image_index": 1, "batch": 2}),
                      tmp_path)
    assert prog == E.Progress(3, 9, 1.5, 1, 2)
    prev = _translate(Event(P.PREVIEW, "j", {"step": 3, "total": 9}, image=_png()), tmp_path)
    assert isinstance(prev, E.Preview) and prev.image.width() == 8 and (prev.step, prev.total) == (3, 9)
    res = _translate(Event(P.RESULT, "j", {"params": {"seed": 7}}, image=_png()), tmp_path)
    assert isinstance(res, E.Result) and res.path.parent == tmp_path and res.path.read_bytes() == _png()
    assert res.params == {"seed": 7}
    assert _translate(Event(P.ERROR, "j", {"kind": "oom", "message": "m"}), tmp_path) == E.EngineError("oom", "m")
    assert _translate(Event(P.NOTICE, "j", {"kind": "k", "message": "m"}), tmp_path) == E.Notice("k", "m")
    assert _translate(Event(P.LOADED, "j", {"native_size": 64}), tmp_path) == E.Loaded({"native_size": 64})
    # post-processing reports its stage through the same Progress type
    assert E.Progress(2, 12, text="Tile 2/12") == E.Progress(step=2, total=12, text="Tile 2/12")
