"""The bundled single-file config folders (resources/diffusion_configs): found, loadable, right sizes.

Models are built on the meta device (no memory, no weights); the tokenizers are the real CLIP BPE.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest

from desktop_app.engines.diffusion.loader import RESOURCES_CONFIGS, find_config_dir

FAMILIES = ("sd15", "sd15-inpainting", "sdxl", "sdxl-inpainting")
CAT = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat" with OpenAI CLIP's tokenizer
DOG = [49406, 320, 1125, 539, 320, 1929, 49407]
# known parameter counts of the original models (SD 1.5, SDXL base, their inpainting UNets, CLIP L / bigG)
UNET = {"sd15": 859_520_964, "sd15-inpainting": 859_535_364, "sdxl": 2_567_463_684, "sdxl-inpainting": 2_567_478_084}
VAE = 83_653_863
CLIP_L = 123_060_480
CLIP_BIGG_PROJ = 694_659_840


def _components(family):
    idx = json.loads((RESOURCES_CONFIGS / family / "model_index.json").read_text("utf-8"))
    return idx, {k: v for k, v in idx.items() if not k.startswith("_") and isinstance(v, list) and v[0]}


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_is_found_and_complete(family):
    folder = find_config_dir(family)
    assert folder == RESOURCES_CONFIGS / family
    _idx, comps = _components(family)
    xl = family.startswith("sdxl")
    assert set(comps) == {"scheduler", "unet", "vae", "text_encoder", "tokenizer"} | (
        {"text_encoder_2", "tokenizer_2"} if xl else set())
    for name in comps:
        sub = folder / name
        if name.startswith("tokenizer"):
            for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
                assert (sub / f).is_file(), sub / f
        elif name == "scheduler":
            assert (sub / "scheduler_config.json").is_file()
        else:
            assert (sub / "config.json").is_file()
    # nothing that would need weights the single file does not have
    assert not any(p.suffix in (".safetensors", ".bin", ".ckpt") for p in folder.rglob("*"))


def test_tokenizers_give_the_clip_ids():
    from transformers import CLIPTokenizer

    digests = set()
    for family in FAMILIES:
        for name in ("tokenizer", "tokenizer_2"):
            sub = RESOURCES_CONFIGS / family / name
            if not sub.is_dir():
                continue
            tok = CLIPTokenizer.from_pretrained(str(sub), local_files_only=True)
            assert tok("a photo of a cat").input_ids == CAT
            assert tok("A photo of a dog").input_ids == DOG
            assert len(tok) == 49408 and tok.model_max_length == 77
            assert tok.pad_token_id == (0 if name == "tokenizer_2" else 49407)  # SDXL's OpenCLIP pads with "!"
            digests.add(tuple(hashlib.sha256((sub / f).read_bytes()).hexdigest() for f in ("vocab.json", "merges.txt")))
    assert len(digests) == 1  # one vocabulary everywhere


def test_vocab_is_simple_tokenizers_build_of_the_merges():
    """vocab.json is exactly what CLIP's SimpleTokenizer builds from merges.txt (bytes, bytes+</w>, merges, specials)."""
    spec = importlib.util.spec_from_file_location("make_configs", RESOURCES_CONFIGS / "make_configs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tok = RESOURCES_CONFIGS / "sd15" / "tokenizer"
    merges_text = (tok / "merges.txt").read_text("utf-8")
    lines = merges_text.rstrip("\n").split("\n")
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 49152 - 256 - 2
    vocab, merges = mod.clip_vocab(merges_text)
    assert json.loads((tok / "vocab.json").read_text("utf-8")) == vocab
    assert merges == lines[1:]
    assert vocab["cat</w>"] == 2368 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


@pytest.mark.parametrize("family", FAMILIES)
def test_configs_load_and_meta_models_have_the_known_sizes(family):
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    folder = RESOURCES_CONFIGS / family
    _idx, comps = _components(family)
    sched_cls = getattr(diffusers, comps["scheduler"][1])
    sched = sched_cls.from_pretrained(str(folder), subfolder="scheduler", local_files_only=True)
    assert sched.config.num_train_timesteps == 1000 and sched.config.beta_schedule == "scaled_linear"

    def count(m):
        return sum(p.numel() for p in m.parameters())

    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(
            diffusers.UNet2DConditionModel.load_config(str(folder), subfolder="unet", local_files_only=True))
        vae = diffusers.AutoencoderKL.from_config(
            diffusers.AutoencoderKL.load_config(str(folder), subfolder="vae", local_files_only=True))
        te = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(
            str(folder), subfolder="text_encoder", local_files_only=True))
        sizes = {"unet": count(unet), "vae": count(vae), "text_encoder": count(te)}
        if "text_encoder_2" in comps:
            cfg2 = transformers.CLIPTextConfig.from_pretrained(str(folder), subfolder="text_encoder_2",
                                                               local_files_only=True)
            assert (cfg2.hidden_size, cfg2.num_hidden_layers, cfg2.num_attention_heads, cfg2.intermediate_size,
                    cfg2.projection_dim, cfg2.hidden_act) == (1280, 32, 20, 5120, 1280, "gelu")
            sizes["text_encoder_2"] = count(transformers.CLIPTextModelWithProjection(cfg2))
    want = {"unet": UNET[family], "vae": VAE, "text_encoder": CLIP_L}
    if "text_encoder_2" in comps:
        want["text_encoder_2"] = CLIP_BIGG_PROJ
    assert sizes == want
    native = 1024 if family.startswith("sdxl") else 512
    assert unet.config.sample_size * 8 == native and vae.config.sample_size == native
    assert unet.config.in_channels == (9 if family.endswith("inpainting") else 4)
    assert vae.config.scaling_factor == (0.13025 if family.startswith("sdxl") else 0.18215)


def test_sd15_original_key_layout_maps_onto_the_bundled_models():
    """A real SD 1.5 single file's key layout (built from the meta models), converted by diffusers' own
    single-file functions, gives exactly the bundled models' state-dict keys and shapes."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights
    from diffusers.loaders import single_file_utils as sfu

    from desktop_app.engines.diffusion.loader import detect_family
    from tests.diffusion.tiny_pipelines import _unet_to_original, _vae_to_original

    folder = RESOURCES_CONFIGS / "sd15"
    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(diffusers.UNet2DConditionModel.load_config(folder / "unet"))
        vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
        te = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    ckpt = {}
    ckpt.update(_unet_to_original(unet.state_dict()))
    ckpt.update(_vae_to_original(vae.state_dict()))
    for k, v in te.state_dict().items():
        ckpt["cond_stage_model.transformer.text_model." + k.removeprefix("text_model.")] = v
    # the original layout's sizes: 686 UNet, 248 VAE and 196 CLIP tensors (plus position_ids in real files)
    assert sum(k.startswith("model.diffusion_model.") for k in ckpt) == 686
    assert sum(k.startswith("first_stage_model.") for k in ckpt) == 248
    assert sfu.infer_diffusers_model_type(ckpt) == "v1"
    header = {k: {"dtype": "F16", "shape": list(v.shape)} for k, v in ckpt.items()}
    assert detect_family(header) == "sd15"

    def same(converted, model):
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in converted.items()}
        assert got == want

    same(sfu.convert_ldm_unet_checkpoint(ckpt, dict(unet.config)), unet)
    same(sfu.convert_ldm_vae_checkpoint(ckpt, dict(vae.config)), vae)
    clip = sfu.convert_ldm_clip_checkpoint(ckpt)
    same({k.removeprefix("text_model."): v for k, v in clip.items()}, te)


def _sdxl_unet_to_original(sd: dict) -> dict:
    """diffusers SDXL UNet keys -> the SGM (sd_xl_base) layout, as in diffusers' convert_diffusers_to_original_sdxl."""
    pairs = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
             ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
             ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
             ("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
             ("mid_block.resnets.1.", "middle_block.2.")]
    for i in range(3):
        for j in range(2):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{3 * i + j + 1}.0."))
            if i > 0:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{3 * i + j + 1}.1."))
        for j in range(3):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{3 * i + j}.0."))
            if i < 2:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{3 * i + j}.1."))
        if i < 2:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{3 * (i + 1)}.0.op."))
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{3 * i + 2}.2."))
    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
              ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    out = {}
    for k, v in sd.items():
        new = k
        for hf, orig in pairs:
            if new.startswith(hf):
                new = orig + new[len(hf):]
                if "resnets" in hf:
                    for a, b in resnet:
                        new = new.replace(a, b)
                break
        else:
            raise AssertionError(f"unmapped SDXL UNet key {k}")
        out["model.diffusion_model." + new] = v
    return out


def _bigg_to_original(sd: dict, prefix: str) -> dict:
    """transformers CLIPTextModelWithProjection keys -> OpenCLIP's layout (resblocks, fused in_proj)."""
    import torch

    out = {}
    top = {"embeddings.token_embedding.weight": "token_embedding.weight",
           "embeddings.position_embedding.weight": "positional_embedding",
           "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        k = k.removeprefix("text_model.")
        if k in top:
            out[prefix + top[k]] = v
        elif k == "text_projection.weight":
            out[prefix + "text_projection"] = v.T
        elif k.startswith("encoder.layers."):
            n, rest = k[len("encoder.layers."):].split(".", 1)
            base = f"{prefix}transformer.resblocks.{n}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                fused.setdefault(f"{base}attn.in_proj_{rest.rsplit('.', 1)[1]}", {})[rest.split(".")[1]] = v
                continue
            rest = (rest.replace("self_attn.", "attn.").replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
                    .replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[base + rest] = v
        else:
            raise AssertionError(f"unmapped CLIP key {k}")
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out


def test_sdxl_original_key_layout_maps_onto_the_bundled_models():
    """An SDXL base single file's layout (SGM UNet, LDM VAE, CLIP-L, OpenCLIP bigG), converted by diffusers'
    own single-file functions, gives exactly the bundled SDXL models' keys and shapes."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights
    from diffusers.loaders import single_file_utils as sfu

    from desktop_app.engines.diffusion.loader import detect_family
    from tests.diffusion.tiny_pipelines import _vae_to_original

    folder = RESOURCES_CONFIGS / "sdxl"
    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(diffusers.UNet2DConditionModel.load_config(folder / "unet"))
        vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
        te = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        te2 = transformers.CLIPTextModelWithProjection(
            transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    ckpt = {}
    ckpt.update(_sdxl_unet_to_original(unet.state_dict()))
    ckpt.update(_vae_to_original(vae.state_dict()))
    for k, v in te.state_dict().items():
        ckpt["conditioner.embedders.0.transformer.text_model." + k.removeprefix("text_model.")] = v
    ckpt.update(_bigg_to_original(te2.state_dict(), "conditioner.embedders.1.model."))
    assert sfu.infer_diffusers_model_type(ckpt) == "xl_base"
    assert sfu.is_clip_sdxl_model(ckpt) and sfu.is_open_clip_sdxl_model(ckpt)
    header = {k: {"dtype": "F16", "shape": list(v.shape)} for k, v in ckpt.items()}
    assert detect_family(header) == "sdxl"
    assert ckpt["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"].shape == (3840, 1280)

    def same(converted, model):
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k.removeprefix("text_model.") if not k.startswith("text_model.") or
               not any(w.startswith("text_model.") for w in want) else k: tuple(v.shape)
               for k, v in converted.items()}
        assert got == want

    same(sfu.convert_ldm_unet_checkpoint(ckpt, dict(unet.config)), unet)
    same(sfu.convert_ldm_vae_checkpoint(ckpt, dict(vae.config)), vae)
    same(sfu.convert_ldm_clip_checkpoint(ckpt), te)
    same(sfu.convert_open_clip_checkpoint(te2, ckpt, prefix="conditioner.embedders.1.model."), te2)


@pytest.mark.slow
@pytest.mark.skipif(__import__("os").environ.get("ATELIER_FULL_SIZE_TESTS") != "1",
                    reason="writes a 2.1 GB full-size SD 1.5 checkpoint; set ATELIER_FULL_SIZE_TESTS=1")
def test_full_size_sd15_single_file_loads_with_the_bundled_folder(tmp_path):
    """A full-size SD 1.5 single file (original layout, fp16 zeros) loads through the app's loader with
    the bundled folder, offline, and runs one step."""
    import diffusers
    import torch
    import transformers
    from accelerate import init_empty_weights
    from safetensors.torch import save_file

    from desktop_app.engines.diffusion.loader import load_pipeline
    from desktop_app.engines.diffusion.protocol import ModelSpec
    from tests.diffusion.tiny_pipelines import _unet_to_original, _vae_to_original

    folder = RESOURCES_CONFIGS / "sd15"
    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(diffusers.UNet2DConditionModel.load_config(folder / "unet"))
        vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
        te = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    shapes = {}
    shapes.update(_unet_to_original(unet.state_dict()))
    shapes.update(_vae_to_original(vae.state_dict()))
    for k, v in te.state_dict().items():
        shapes["cond_stage_model.transformer.text_model." + k.removeprefix("text_model.")] = v
    state = {k: torch.zeros(v.shape, dtype=torch.float16) for k, v in shapes.items()}
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    path = tmp_path / "sd15-full.safetensors"
    save_file(state, str(path))
    del state
    loaded = load_pipeline(ModelSpec(str(path)), dtype="float32")
    assert (loaded.family, loaded.source, loaded.native_size) == ("sd15", "single_file", 512)
    pipe = loaded.pipe
    assert sum(p.numel() for p in pipe.unet.parameters()) == UNET["sd15"]
    assert pipe.tokenizer("a photo of a cat").input_ids == CAT
    img = pipe("a photo of a cat", num_inference_steps=1, height=64, width=64, output_type="np").images
    assert img.shape == (1, 64, 64, 3)
