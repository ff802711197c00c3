"""Tiny random SD 1.5 / SDXL pipelines built in code (no hub), for the diffusion engine's tests.

Shapes follow diffusers' own test components (``get_dummy_components``), shrunk further; the
tokenizer is a byte-level CLIP BPE written here (256 byte symbols, the same with ``</w>``,
start/end tokens, no merges). Everything is random: images are noise, but deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_VOCAB = 1000


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    tok = CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                        model_max_length=77)
    return tok


def _text_config(projection: bool = False):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=32, intermediate_size=37,
                          layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
                          vocab_size=TOKENIZER_VOCAB, hidden_act="gelu" if projection else "quick_gelu",
                          projection_dim=32, max_position_embeddings=77)


def _tiny_vae(channels: tuple[int, ...] = (4, 4, 4, 4)):
    from diffusers import AutoencoderKL

    # SD's block structure (4 blocks, 2 resnets each: scale factor 8) with tiny channels.
    return AutoencoderKL(block_out_channels=tuple(channels), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         latent_channels=4, norm_num_groups=2, layers_per_block=2, sample_size=64)


def build_sd15(folder: Path, seed: int = 0, channels: tuple[int, ...] = (8, 8, 16, 16), sample_size: int = 8,
               vae_channels: tuple[int, ...] = (4, 4, 4, 4)) -> Path:
    """A tiny SD 1.5-structured pipeline (native 64 px) saved as a diffusers folder.

    ``channels``/``sample_size``/``vae_channels`` make bigger random pipelines (bench/images.py).
    """
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    # SD 1.5's UNet layout (3 cross-attention down blocks, a plain one; layers_per_block=2) so that a
    # single-file checkpoint in the original key layout can be written from it.
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=tuple(channels),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4,
    )
    vae = _tiny_vae(vae_channels)
    text_encoder = CLIPTextModel(_text_config())
    tokenizer = write_clip_tokenizer(folder.parent / (folder.name + "-tok"))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def build_sdxl(folder: Path, seed: int = 0) -> Path:
    """A tiny SDXL pipeline (two text encoders, text_time embedding; native 64 px)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=4,
    )
    vae = _tiny_vae()
    te = CLIPTextModel(_text_config(projection=True))
    te2 = CLIPTextModelWithProjection(_text_config(projection=True))
    tok = write_clip_tokenizer(folder.parent / (folder.name + "-tok"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok,
                                     unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder


# -- single file (original A1111/ComfyUI key layout) ---------------------------------------------

def _unet_map() -> list[tuple[str, str]]:
    """(original prefix, diffusers prefix) pairs for SD 1.x's UNet layout."""
    m = []
    for i in range(4):
        for j in range(2):
            m.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i < 3:
                m.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(3):
            m.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i > 0:
                m.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < 3:
            m.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            m.append((f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0."))
    m.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        m.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return m


_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
}
_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _unet_to_original(sd: dict) -> dict:
    out = {}
    layer_map = _unet_map()
    for k, v in sd.items():
        new = k
        for hf, orig in _UNET_TOP.items():
            if new.startswith(hf):
                new = orig + new[len(hf):]
        if "resnets" in new:
            for hf, orig in _RESNET:
                new = new.replace(hf, orig)
        for orig, hf in layer_map:
            new = new.replace(hf, orig)
        out["model.diffusion_model." + new] = v
    return out


def _vae_to_original(sd: dict) -> dict:
    pairs = [("conv_shortcut", "nin_shortcut"), ("conv_norm_out", "norm_out"), ("mid_block.attentions.0.", "mid.attn_1.")]
    for i in range(4):
        for j in range(2):
            pairs.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
        if i < 3:
            pairs.append((f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample."))
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"up.{3 - i}.upsample."))
        for j in range(3):
            pairs.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{3 - i}.block.{j}."))
    for i in range(2):
        pairs.append((f"mid_block.resnets.{i}.", f"mid.block_{i + 1}."))
    attn = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]
    out = {}
    for k, v in sd.items():
        new = k
        for hf, orig in pairs:
            new = new.replace(hf, orig)
        if "attn_1" in new:
            for hf, orig in attn:
                new = new.replace(hf, orig)
            if new.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")) and v.dim() == 2:
                v = v.reshape(*v.shape, 1, 1)
        out["first_stage_model." + new] = v
    return out


def write_sd15_single_file(folder: Path, out: Path) -> Path:
    """The tiny SD 1.5 folder as one original-layout ``.safetensors`` checkpoint."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True)
    te = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
    state = {}
    state.update(_unet_to_original(unet.state_dict()))
    state.update(_vae_to_original(vae.state_dict()))
    for k, v in te.state_dict().items():
        k = k[len("text_model."):] if k.startswith("text_model.") else k
        state["cond_stage_model.transformer.text_model." + k] = v
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


def write_tiny_lora(folder: Path, out_dir: Path, seed: int = 1) -> Path:
    """A rank-4 peft LoRA on the UNet's attention projections, with random ``lora_B`` (else it is a no-op)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    out_dir.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out_dir, unet_lora_layers=layers, safe_serialization=True,
                                              weight_name="tiny-lora.safetensors")
    return out_dir / "tiny-lora.safetensors"


def write_tiny_taesd(out: Path, latent_channels: int = 4, solid: tuple[int, int, int] | None = None,
                     seed: int = 2) -> Path:
    """A tiny random diffusers ``AutoencoderTiny`` (TAESD) folder; decodes 8x (like the real ones).

    ``solid``: make its decoder paint that RGB colour whatever the latents (last conv weights zero,
    bias = colour / 255), so a test can tell its previews from the latent projection's.
    """
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    taesd = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                            latent_channels=latent_channels)
    if solid is not None:
        last = taesd.decoder.layers[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([c / 255.0 for c in solid]))
    taesd.save_pretrained(out)
    return out
