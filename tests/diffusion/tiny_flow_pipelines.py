"""Tiny random SD 3 and FLUX.1 pipelines built in code (no hub), and a tiny GGUF FLUX transformer.

Shapes follow diffusers' own tests (``get_dummy_components`` in tests/pipelines/stable_diffusion_3
and tests/pipelines/flux), with a 4-block VAE (scale factor 8, like the real ones) so that 64 px
images work. Tokenizers are written here: the byte-level CLIP BPE of tiny_pipelines.py and a
small T5 tokenizer (a ``tokenizers`` Unigram model over ``▁word`` pieces, Metaspace
pre-tokenizer, wrapped in ``T5TokenizerFast``).
"""

from __future__ import annotations

from pathlib import Path

from tests.diffusion.tiny_pipelines import write_clip_tokenizer

T5_WORDS = ("a", "tiny", "red", "fox", "blue", "cat", "photo", "of", "the", "in", "snow", "x")


def write_t5_tokenizer(folder: Path, extra_words: int = 100):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -1.0) for w in T5_WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab += [(f"▁w{i}", -3.0) for i in range(extra_words)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    fast = T5TokenizerFast(tokenizer_object=tok, extra_ids=0, pad_token="<pad>", eos_token="</s>",
                           unk_token="<unk>", model_max_length=512)
    fast.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def _t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=vocab_size, d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, is_encoder_decoder=False)
    return T5EncoderModel(cfg)


def _clip_config():
    from transformers import CLIPTextConfig

    from tests.diffusion.tiny_pipelines import TOKENIZER_VOCAB

    return CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=32, intermediate_size=37,
                          layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=TOKENIZER_VOCAB,
                          hidden_act="gelu", projection_dim=32, max_position_embeddings=77)


def _flow_vae(latent_channels: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(4, 4, 4, 4), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         latent_channels=latent_channels, norm_num_groups=2, layers_per_block=1, sample_size=64,
                         use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def build_sd3(folder: Path, seed: int = 0) -> Path:
    """A tiny StableDiffusion3Pipeline (two CLIP encoders + T5; native 64 px)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    # 16 latent channels as in SD 3 (its inpainting pipeline checks for 16)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=16, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                        pooled_projection_dim=64, out_channels=16)
    te = CLIPTextModelWithProjection(_clip_config())
    te2 = CLIPTextModelWithProjection(_clip_config())
    clip_tok = write_clip_tokenizer(folder.parent / (folder.name + "-clip-tok"))
    t5_tok = write_t5_tokenizer(folder.parent / (folder.name + "-t5-tok"))
    te3 = _t5_encoder(len(t5_tok))
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=_flow_vae(16), text_encoder=te, tokenizer=clip_tok, text_encoder_2=te2,
                                    tokenizer_2=clip_tok, text_encoder_3=te3, tokenizer_3=t5_tok)
    pipe.save_pretrained(folder)
    return folder


def build_flux(folder: Path, seed: int = 0, guidance: bool = False) -> Path:
    """A tiny FluxPipeline (CLIP + T5; schnell-like without a guidance embedder, dev-like with one)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance)
    te = CLIPTextModel(_clip_config())
    clip_tok = write_clip_tokenizer(folder.parent / (folder.name + "-clip-tok"))
    t5_tok = write_t5_tokenizer(folder.parent / (folder.name + "-t5-tok"))
    te2 = _t5_encoder(len(t5_tok))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_flow_vae(4), text_encoder=te,
                        tokenizer=clip_tok, text_encoder_2=te2, tokenizer_2=t5_tok)
    pipe.save_pretrained(folder)
    return folder


def write_flux_transformer_gguf(folder: Path, out: Path, quant: str = "F32") -> Path:
    """The tiny FLUX folder's transformer as a GGUF file (diffusers tensor names).

    ``quant``: "F32" (the same numbers as the folder), "F16", or "Q8_0" (2-D weights whose rows are
    a multiple of 32 are quantized; the rest stay F32). diffusers' GGUF loader keeps tensors named
    as the model's own parameters as they are (``_should_convert_state_dict_to_diffusers``);
    original BFL names would be converted assuming FLUX.1's full width (3072), which a tiny model
    does not have.
    """
    import gguf
    import numpy as np
    from diffusers import FluxTransformer2DModel

    tr = FluxTransformer2DModel.from_pretrained(folder / "transformer", local_files_only=True)
    w = gguf.GGUFWriter(str(out), "flux")
    w.add_name("tiny-flux")
    for name, t in tr.state_dict().items():
        arr = t.detach().float().contiguous().numpy()
        if quant == "F16" and arr.ndim >= 2:
            w.add_tensor(name, arr.astype(np.float16))
        elif quant == "Q8_0" and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def _sd3_transformer_to_original(sd: dict) -> dict:
    """diffusers SD3Transformer2DModel keys -> Stability's original (MMDiT) layout.

    The inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers`` (single_file_utils):
    q/k/v are concatenated into ``qkv``; the last block's context adaLN and the final adaLN have
    scale/shift swapped back. Generic in width and depth (no hard-coded dimensions there).
    """
    import torch

    def swap(w):
        a, b = w.chunk(2, dim=0)
        return torch.cat([b, a], dim=0)

    sd = dict(sd)
    layers = sorted({int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")})
    last = layers[-1]
    out = {
        "pos_embed": sd.pop("pos_embed.pos_embed"),
        "x_embedder.proj.weight": sd.pop("pos_embed.proj.weight"),
        "x_embedder.proj.bias": sd.pop("pos_embed.proj.bias"),
        "context_embedder.weight": sd.pop("context_embedder.weight"),
        "context_embedder.bias": sd.pop("context_embedder.bias"),
        "final_layer.linear.weight": sd.pop("proj_out.weight"),
        "final_layer.linear.bias": sd.pop("proj_out.bias"),
        "final_layer.adaLN_modulation.1.weight": swap(sd.pop("norm_out.linear.weight")),
        "final_layer.adaLN_modulation.1.bias": swap(sd.pop("norm_out.linear.bias")),
    }
    for hf, orig in (("timestep_embedder", "t_embedder"), ("text_embedder", "y_embedder")):
        for a, b in (("linear_1", "0"), ("linear_2", "2")):
            for p in ("weight", "bias"):
                out[f"{orig}.mlp.{b}.{p}"] = sd.pop(f"time_text_embed.{hf}.{a}.{p}")
    for i in layers:
        t, j = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{j}x_block.attn.qkv.{p}"] = torch.cat([sd.pop(f"{t}attn.to_{x}.{p}") for x in "qkv"])
            out[f"{j}context_block.attn.qkv.{p}"] = torch.cat(
                [sd.pop(f"{t}attn.add_{x}_proj.{p}") for x in "qkv"])
            out[f"{j}x_block.attn.proj.{p}"] = sd.pop(f"{t}attn.to_out.0.{p}")
            out[f"{j}x_block.adaLN_modulation.1.{p}"] = sd.pop(f"{t}norm1.linear.{p}")
            ctx = sd.pop(f"{t}norm1_context.linear.{p}")
            out[f"{j}context_block.adaLN_modulation.1.{p}"] = swap(ctx) if i == last else ctx
            out[f"{j}x_block.mlp.fc1.{p}"] = sd.pop(f"{t}ff.net.0.proj.{p}")
            out[f"{j}x_block.mlp.fc2.{p}"] = sd.pop(f"{t}ff.net.2.{p}")
            if i != last:
                out[f"{j}context_block.attn.proj.{p}"] = sd.pop(f"{t}attn.to_add_out.{p}")
                out[f"{j}context_block.mlp.fc1.{p}"] = sd.pop(f"{t}ff_context.net.0.proj.{p}")
                out[f"{j}context_block.mlp.fc2.{p}"] = sd.pop(f"{t}ff_context.net.2.{p}")
    if sd:
        raise ValueError(f"unmapped SD3 transformer keys: {sorted(sd)[:5]}")
    return out


def write_sd3_single_file(folder: Path, out: Path) -> Path:
    """The tiny SD 3 folder's transformer and VAE as one original-layout ``.safetensors``
    (``model.diffusion_model.`` / ``first_stage_model.``), without text encoders, like Stability's
    sd3.5_medium/large files (their CLIP-L/G and T5 ship separately)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from safetensors.torch import save_file

    from tests.diffusion.tiny_pipelines import _vae_to_original

    tr = SD3Transformer2DModel.from_pretrained(folder / "transformer", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True)
    state = {"model.diffusion_model." + k: v for k, v in _sd3_transformer_to_original(tr.state_dict()).items()}
    state.update(_vae_to_original(vae.state_dict()))
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


def write_flux_lora(folder: Path, out_dir: Path, seed: int = 1) -> Path:
    """A rank-4 peft LoRA on the tiny FLUX transformer's attention projections, random ``lora_B``
    (a fresh peft LoRA is a no-op), saved with FluxPipeline.save_lora_weights."""
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    tr = FluxTransformer2DModel.from_pretrained(folder / "transformer", local_files_only=True)
    tr.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                              target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tr.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    out_dir.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(out_dir, transformer_lora_layers=get_peft_model_state_dict(tr),
                                   safe_serialization=True, weight_name="tiny-flux-lora.safetensors")
    return out_dir / "tiny-flux-lora.safetensors"
