"""Import (copy or in place) with header checks; removal deletes only what Atelier owns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_app.core.errors import Cancelled, ModelFormatError
from desktop_app.core.library import Library
from desktop_app.engines.base import CancelToken
from desktop_app.hub.importer import import_path, remove_model
from tests.hub.conftest import models_dir, safetensors_bytes


def _diffusers(root: Path, pickle_only: bool = False) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "vae").mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "X", "unet": ["diffusers", "U"],
                                                       "vae": ["diffusers", "V"], "safety_checker": [None, None]}))
    if pickle_only:
        (root / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    else:
        (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(safetensors_bytes())
    (root / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(safetensors_bytes())
    return root


def test_import_folder_copy_and_remove(tmp_path):
    src = _diffusers(tmp_path / "my-sd")
    progress = []
    rec = import_path(src, copy=True, progress=lambda d, t: progress.append((d, t)))
    assert rec.managed and rec.format == "diffusers" and rec.task == "image"
    dest = Path(rec.path)
    assert dest.parent == models_dir() / "imported" and (dest / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert progress[-1][0] == progress[-1][1] == rec.size_bytes
    res = remove_model(rec.id)
    assert res.deleted and res.bytes_freed == rec.size_bytes and not dest.exists() and src.exists()


def test_import_refuses_bad_files(tmp_path, gguf_bytes):
    with pytest.raises(ModelFormatError, match="pickle"):
        import_path(_diffusers(tmp_path / "pk", pickle_only=True))
    rec = import_path(tmp_path / "pk", allow_pickle=True)
    assert rec.format == "diffusers" and not rec.managed
    broken = _diffusers(tmp_path / "broken")
    (broken / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(safetensors_bytes()[:20])
    with pytest.raises(ModelFormatError):
        import_path(broken)
    missing = _diffusers(tmp_path / "missing")
    import shutil

    shutil.rmtree(missing / "vae")
    with pytest.raises(ModelFormatError, match="'vae'.*missing"):
        import_path(missing)
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(b"GGU")
    with pytest.raises(ModelFormatError, match="not a GGUF"):
        import_path(trunc)
    assert [r.id for r in Library().list()] == [rec.id]


def test_import_copy_cancel_leaves_nothing(tmp_path, gguf_bytes):
    src = tmp_path / "m-Q4_K_M.gguf"
    src.write_bytes(gguf_bytes)
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        import_path(src, copy=True, cancel=tok)
    assert not list((models_dir() / "imported").glob("*")) and Library().list() == []
    # same file name twice in place (other contents): two ids, both kept
    other = tmp_path / "b" / "m-Q4_K_M.gguf"
    other.parent.mkdir()
    other.write_bytes(gguf_bytes + b"\0" * 8)
    a, b = import_path(src), import_path(other)
    assert a.id != b.id and a.quantization == "Q4_K_M"
