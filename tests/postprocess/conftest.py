"""Tiny post-processing models built once per session by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postprocess.models import write_tiny_esrgan, write_tiny_segmenter


@pytest.fixture(scope="session")
def tiny_esrgan(tmp_path_factory) -> Path:
    return write_tiny_esrgan(tmp_path_factory.mktemp("sr") / "tiny-esrgan-4x.safetensors", scale=4)


@pytest.fixture(scope="session")
def tiny_esrgan_2x(tmp_path_factory) -> Path:
    return write_tiny_esrgan(tmp_path_factory.mktemp("sr2") / "tiny-esrgan-2x.safetensors", scale=2, seed=1)


@pytest.fixture(scope="session")
def tiny_u2net(tmp_path_factory) -> Path:
    return write_tiny_segmenter(tmp_path_factory.mktemp("seg") / "tiny-u2net.onnx", outputs=7)


@pytest.fixture(scope="session")
def tiny_seg_single(tmp_path_factory) -> Path:
    return write_tiny_segmenter(tmp_path_factory.mktemp("seg1") / "tiny-seg-dynamic.onnx", outputs=1, dynamic=True)
