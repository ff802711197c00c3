"""Background removal through onnxruntime with tiny U2Net-shaped ONNX models written by the test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from desktop_app.core.errors import Cancelled, ModelFormatError
from desktop_app.core.model_files import record_for_path
from desktop_app.engines.background import (
    BackgroundResult,
    MaskProgress,
    cut_out,
    load_segmenter,
    remove_background,
)
from desktop_app.engines.base import CancelToken
from tests.postprocess.models import subject_image


@pytest.fixture(scope="module")
def seg(tiny_u2net):
    return load_segmenter(tiny_u2net)


def test_loads_a_u2net_shaped_model(seg, tiny_u2net):
    assert seg.outputs == 7
    assert seg.input_size == (320, 320)
    assert seg.profile.name == "u2net"
    assert seg.providers == ["CPUExecutionProvider"]
    rec = record_for_path(tiny_u2net)
    assert (rec.task, rec.format) == ("background_removal", "onnx")


def test_cut_out_keeps_the_subject_and_clears_the_background(seg):
    img = subject_image(96, 64)
    events = list(remove_background(img, seg))
    assert [e.stage for e in events if isinstance(e, MaskProgress)] == ["preprocess", "inference", "postprocess"]
    res = events[-1]
    assert isinstance(res, BackgroundResult) and res.soft is False
    out = res.image
    assert out.mode == "RGBA" and out.size == img.size
    alpha = np.asarray(out.getchannel("A"))
    assert alpha.shape == (64, 96)
    assert alpha[32, 48] == 255  # centre of the disc
    assert alpha[0, 0] == 0 and alpha[63, 95] == 0  # corners
    assert set(np.unique(alpha)) <= {0, 255}  # hard edges
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(img))  # colours untouched


def test_soft_edges_differ_from_hard_ones(seg):
    img = subject_image(96, 64)
    hard = np.asarray(cut_out(img, seg, soft=False).getchannel("A")).astype(int)
    soft = np.asarray(cut_out(img, seg, soft=True).getchannel("A")).astype(int)
    partial = (soft > 5) & (soft < 250)
    assert partial.sum() > 20  # a feathered ring around the subject
    assert not np.array_equal(soft, hard)
    assert soft[32, 48] > 240 and soft[0, 0] < 10
    assert np.abs(soft - hard).mean() < 20  # the same subject


def test_mask_only(seg):
    img = subject_image(96, 64)
    mask = cut_out(img, seg, mask_only=True, soft=True)
    assert mask.mode == "L" and mask.size == img.size
    alpha = cut_out(img, seg, soft=True).getchannel("A")
    assert np.array_equal(np.asarray(mask), np.asarray(alpha))


def test_existing_transparency_is_kept(seg):
    img = subject_image(96, 64).convert("RGBA")
    a = np.full((64, 96), 255, np.uint8)
    a[:, :48] = 0
    img.putalpha(Image.fromarray(a))
    alpha = np.asarray(cut_out(img, seg).getchannel("A"))
    assert alpha[32, 40] == 0 and alpha[32, 56] == 255


def test_single_output_model_with_dynamic_size(tiny_seg_single):
    m = load_segmenter(tiny_seg_single)
    assert m.outputs == 1 and m.input_size == (320, 320)  # from the u2net profile
    alpha = np.asarray(cut_out(subject_image(50, 40), m).getchannel("A"))
    assert alpha[20, 25] == 255 and alpha[0, 0] == 0


def test_cancel(seg):
    token = CancelToken()
    gen = remove_background(subject_image(), seg, token=token)
    assert isinstance(next(gen), MaskProgress)
    token.cancel()
    with pytest.raises(Cancelled):
        next(gen)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelFormatError, match="No background-removal model file"):
        load_segmenter(tmp_path / "missing.onnx")
    p = tmp_path / "seg.safetensors"
    p.write_bytes(b"abc")
    with pytest.raises(ModelFormatError, match=".onnx"):
        load_segmenter(p)
    g = tmp_path / "garbage.onnx"
    g.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelFormatError, match="not a usable ONNX model"):
        load_segmenter(g)
