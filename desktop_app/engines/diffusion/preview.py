"""Cheap live previews of the latents (runs in the engine child; imports torch lazily).

The default is a linear latent→RGB projection (4 latent channels → RGB), the factors used by
A1111/ComfyUI for SD 1.x/2.x and SDXL latents: a blurry but faithful thumbnail for ~1 ms.
With a local TAESD (AutoencoderTiny) folder, previews are decoded by it instead.
Previews are encoded small (long side ≤ 256 px, JPEG).
"""

from __future__ import annotations

import io

# (latent channel) -> (R, G, B) contribution; rows are the 4 latent channels.
SD15_LATENT_RGB = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]
SD15_LATENT_RGB_BIAS = [0.0, 0.0, 0.0]
SDXL_LATENT_RGB = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
SDXL_LATENT_RGB_BIAS = [0.1084, -0.0175, -0.0011]

MAX_PREVIEW = 256


def _factors(family: str):
    if family.startswith("sdxl"):
        return SDXL_LATENT_RGB, SDXL_LATENT_RGB_BIAS
    return SD15_LATENT_RGB, SD15_LATENT_RGB_BIAS


def _encode(img) -> bytes:
    """JPEG bytes of a preview (the wire format of ``preview`` events)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _target_size(w: int, h: int, image_w: int, image_h: int, max_side: int) -> tuple[int, int]:
    long_side = min(max_side, max(image_w, image_h))
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def latent_preview(latents, family: str, image_size: tuple[int, int], max_side: int = MAX_PREVIEW):
    """(jpeg_bytes, width, height) for the first latent of the batch, or None if it cannot."""
    import torch
    from PIL import Image

    lat = latents[0].detach()
    if lat.dim() != 3 or lat.shape[0] < 3:
        return None
    if lat.shape[0] == 4 and not family.startswith(("sd3", "flux")):
        factors, bias = _factors(family)
        f = torch.tensor(factors, dtype=torch.float32, device=lat.device)
        b = torch.tensor(bias, dtype=torch.float32, device=lat.device)
        rgb = torch.einsum("chw,cr->hwr", lat.float(), f) + b
        rgb = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy()
    else:
        # SD 3 / FLUX latents (16 channels): no fitted factors here; three channel groups,
        # each normalised: shows the composition taking shape (TAESD3/TAEF1 give true colours).
        groups = torch.stack([g.float().mean(0) for g in torch.tensor_split(lat, 3, dim=0)], dim=-1)
        lo = groups.amin(dim=(0, 1), keepdim=True)
        hi = groups.amax(dim=(0, 1), keepdim=True)
        rgb = ((groups - lo) / (hi - lo).clamp_min(1e-6)).mul(255).to(torch.uint8).cpu().numpy()
    img = Image.fromarray(rgb, "RGB")
    tw, th = _target_size(img.width, img.height, image_size[0], image_size[1], max_side)
    img = img.resize((tw, th), Image.BILINEAR)
    return _encode(img), tw, th


def taesd_preview(taesd, latents, image_size: tuple[int, int], max_side: int = MAX_PREVIEW):
    """Decode with a tiny autoencoder (AutoencoderTiny): sharper previews, a few ms more."""
    import torch
    from PIL import Image

    with torch.no_grad():
        lat = latents[:1].to(device=taesd.device, dtype=taesd.dtype)
        # What a pipeline does before ``vae.decode`` when TAESD is its VAE: SD 1.x/SDXL TAESD have
        # scaling 1.0 / shift 0.0 (they decode the pipeline's latents as they are); taesd3/taef1
        # carry SD 3's/FLUX's scaling and shift factors in their config.
        cfg = taesd.config
        scale = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        shift = float(getattr(cfg, "shift_factor", 0.0) or 0.0)
        if scale != 1.0 or shift != 0.0:
            lat = lat / scale + shift
        out = taesd.decode(lat).sample[0]
    rgb = ((out.float() + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(rgb, "RGB")
    tw, th = _target_size(img.width, img.height, image_size[0], image_size[1], max_side)
    img = img.resize((tw, th), Image.BILINEAR)
    return _encode(img), tw, th


def load_taesd(engine, folder: str, pipe, device: str, job: str) -> None:
    """Load a local AutoencoderTiny folder into ``engine.taesd`` for the live previews; say
    whether it is used.

    Emits a ``notice`` kind ``taesd`` either way: ``active`` True (previews decoded by it) or
    False with the reason (previews fall back to the latent projection).
    """
    from desktop_app.engines.diffusion import protocol as P

    from pathlib import Path

    name = Path(folder).expanduser().name
    try:
        from diffusers import AutoencoderTiny

        taesd = AutoencoderTiny.from_pretrained(str(Path(folder).expanduser()), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - previews fall back to the latent projection
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        engine._emit(job, P.NOTICE, kind="taesd", active=False, folder=folder,
                   message=f"TAESD previews unavailable ({name} is not a loadable AutoencoderTiny folder: "
                           f"{first}); using the approximate latent previews.")
        return
    want = int(getattr(pipe.vae.config, "latent_channels", 4))
    have = int(getattr(taesd.config, "latent_channels", 4))
    if want != have:
        engine._emit(job, P.NOTICE, kind="taesd", active=False, folder=folder,
                   message=f"TAESD previews unavailable: {name} decodes {have}-channel latents, this "
                           f"{engine.model.family} model makes {want}-channel ones (use taesd for SD 1.x, taesdxl "
                           "for SDXL, taesd3 for SD 3, taef1 for FLUX); using the approximate latent previews.")
        return
    import torch

    dt = getattr(torch, engine.dtype_name, torch.float32) if device != "cpu" else torch.float32
    engine.taesd = taesd.to(device=device, dtype=dt).eval()
    engine._emit(job, P.NOTICE, kind="taesd", active=True, folder=folder,
               message=f"Live previews decoded by TAESD ({name}).")
