"""Builders for tiny real post-processing models (no mocks): an ESRGAN .safetensors, ONNX segmenters."""

from __future__ import annotations

import warnings
from pathlib import Path


def write_tiny_esrgan(path: Path, scale: int = 4, num_filters: int = 8, seed: int = 0) -> Path:
    """A randomly initialised ESRGAN (RRDBNet, one block) saved as .safetensors."""
    import torch
    from safetensors.torch import save_file

    from desktop_app.engines.upscale import _import_spandrel

    _import_spandrel()  # the architecture lives in spandrel (imported without torchvision)
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = ESRGAN(num_filters=num_filters, num_blocks=1, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def write_tiny_segmenter(path: Path, outputs: int = 7, dynamic: bool = False) -> Path:
    """A U2Net-shaped ONNX segmenter: 1x3x320x320 in, `outputs` maps 1x1xHxW out.

    The first output is sigmoid(brightness): a bright subject on a dark background is the
    foreground. The side outputs are its inverse, so code that reads the wrong one fails.
    """
    import torch

    class TinySeg(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)
            with torch.no_grad():
                self.conv.weight.fill_(1.0)
                self.conv.bias.zero_()

        def forward(self, x):
            d0 = torch.sigmoid(self.conv(x))
            return (d0,) + tuple(1.0 - d0 for _ in range(outputs - 1))

    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if dynamic:
        kwargs["dynamic_axes"] = {"input.1": {2: "height", 3: "width"}}
    with warnings.catch_warnings():
        # torch warns that the TorchScript exporter is legacy; it is what rembg's models came from.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            TinySeg().eval(), (torch.zeros(1, 3, 320, 320),), str(path), dynamo=False,
            input_names=["input.1"], output_names=[f"d{i}" for i in range(outputs)], **kwargs,
        )
    return path


def subject_image(width: int = 96, height: int = 64):
    """A dark background with a bright disc whose edge is a soft ramp."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width]
    r = np.hypot(xx - width / 2, yy - height / 2)
    v = np.clip((height * 0.35 - r) / 6.0, 0.0, 1.0)  # 1 inside, ramp over 6 px, 0 outside
    rgb = np.stack([20 + 220 * v, 30 + 200 * v, 25 + 210 * v], axis=-1)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def noise_image(width: int = 90, height: int = 70, seed: int = 0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
