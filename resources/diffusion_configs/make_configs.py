"""Write the bundled single-file config folders (run once; the output is committed).

    .venv/bin/python resources/diffusion_configs/make_configs.py [OPEN_CLIP_WHEEL_OR_BPE_GZ]

Nothing here is downloaded from a model hub and no weights are involved:
- UNet / VAE configs come from diffusers' own single-file code (``create_unet_diffusers_config_from_ldm``,
  ``create_vae_diffusers_config_from_ldm``) applied to the architecture values of the original
  Stable Diffusion training configs (``v1-inference.yaml``, ``sd_xl_base.yaml``, ``sd-v1-5-inpainting``,
  written out below), then completed with the installed diffusers classes' defaults (``save_config``).
- Text-encoder configs are ``transformers.CLIPTextConfig`` values (CLIP ViT-L/14's text model for
  SD 1.5 and SDXL's first encoder, OpenCLIP ViT-bigG/14's text model for SDXL's second).
- Scheduler configs are the schedulers' defaults with diffusers' ``SCHEDULER_DEFAULT_CONFIG`` values.
- The CLIP BPE vocabulary (vocab.json, merges.txt) is converted from ``bpe_simple_vocab_16e6.txt.gz``
  (OpenAI CLIP, MIT; shipped in the open_clip_torch wheel on PyPI, MIT) exactly the way CLIP's
  ``SimpleTokenizer`` builds its vocabulary.
Needs the argument only when the vocabulary is to be rebuilt; get the wheel with
``pip download --no-deps open_clip_torch==3.3.0``.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

# ---- original (LDM / SGM) architecture values, as in the public training configs -------------------------
V1_INFERENCE = {"model": {"params": {
    "scale_factor": 0.18215,
    "unet_config": {"params": {
        "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4],
        "num_heads": 8, "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768,
        "use_checkpoint": True, "legacy": False}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
        "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}}},
}}}
V1_INPAINTING = copy.deepcopy(V1_INFERENCE)
V1_INPAINTING["model"]["params"]["unet_config"]["params"]["in_channels"] = 9
SDXL_BASE = {"model": {"params": {
    "scale_factor": 0.13025,
    "network_config": {"params": {
        "adm_in_channels": 2816, "num_classes": "sequential", "in_channels": 4, "out_channels": 4,
        "model_channels": 320, "attention_resolutions": [4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 4],
        "num_head_channels": 64, "use_linear_in_transformer": True, "transformer_depth": [1, 2, 10],
        "context_dim": 2048, "spatial_transformer_attn_type": "softmax-xformers"}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "attn_type": "vanilla-xformers", "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
        "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
        "dropout": 0.0}}},
}}}
SDXL_INPAINTING = copy.deepcopy(SDXL_BASE)
SDXL_INPAINTING["model"]["params"]["network_config"]["params"]["in_channels"] = 9

# CLIP ViT-L/14 text model (SD 1.5's encoder, SDXL's first) and OpenCLIP ViT-bigG/14 text model (SDXL's second)
CLIP_L = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "projection_dim": 768, "num_hidden_layers": 12,
              "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
              "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407}
CLIP_BIGG = {"vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "projection_dim": 1280, "num_hidden_layers": 32,
                 "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
                 "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}


def _unet_config(original, image_size):
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
    )

    cfg = create_unet_diffusers_config_from_ldm(original, {}, image_size=None)
    cfg["sample_size"] = image_size // 8
    if original is SDXL_BASE or original is SDXL_INPAINTING:
        # SGM's num_head_channels=64 -> diffusers' per-block head counts (the SDXL diffusers repo's values)
        cfg["attention_head_dim"] = [5, 10, 20]
    return cfg


def _vae_config(original, image_size, **extra):
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    cfg = create_vae_diffusers_config_from_ldm(original, {}, image_size=None)
    cfg["sample_size"] = image_size
    cfg.update(extra)
    return cfg


def _save_diffusers(cls, config: dict, folder: Path):
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(config)
    model.save_config(folder)
    _normalise(folder / "config.json")


def _normalise(path: Path):
    data = json.loads(path.read_text("utf-8"))
    data.pop("_name_or_path", None)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", "utf-8")


def _save_text_encoder(cls_name: str, values: dict, folder: Path):
    import transformers

    cfg = transformers.CLIPTextConfig(**values)
    cfg.architectures = [cls_name]
    cfg.dtype = "float32"
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(folder)
    _normalise(folder / "config.json")


def _save_scheduler(cls_name: str, folder: Path, **extra):
    import diffusers
    from diffusers.loaders.single_file_utils import SCHEDULER_DEFAULT_CONFIG

    cls = getattr(diffusers, cls_name)
    accepted = set(cls._get_init_keys(cls))
    kwargs = {k: v for k, v in SCHEDULER_DEFAULT_CONFIG.items() if k in accepted}
    kwargs.update(extra)
    cls(**kwargs).save_config(folder)
    _normalise(folder / "scheduler_config.json")


# ---- CLIP BPE -> vocab.json / merges.txt ------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab(bpe_text: str) -> tuple[dict[str, int], list[str]]:
    """(token -> id, merge lines) exactly as CLIP's SimpleTokenizer builds them (49408 tokens)."""
    merges = bpe_text.split("\n")[1:49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(p) for p in pairs]


def read_bpe(source: Path) -> str:
    import hashlib

    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as zf:
            raw = zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    else:
        raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BPE_SHA256:
        raise SystemExit(f"unexpected bpe_simple_vocab_16e6.txt.gz (sha256 {digest})")
    return gzip.decompress(raw).decode("utf-8")


def write_tokenizer(folder: Path, vocab: dict, merges: list[str], pad: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": pad}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", "utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, "errors": "replace",
              "add_prefix_space": False, "clean_up_tokenization_spaces": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")


# ---- the folders -------------------------------------------------------------------------------------------
def _index(cls_name: str, scheduler: str, xl: bool, **extra) -> dict:
    idx = {"_class_name": cls_name, "_diffusers_version": "0.42.1",
           "scheduler": ["diffusers", scheduler], "text_encoder": ["transformers", "CLIPTextModel"],
           "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
           "vae": ["diffusers", "AutoencoderKL"]}
    if xl:
        idx.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                   tokenizer_2=["transformers", "CLIPTokenizer"], feature_extractor=[None, None],
                   image_encoder=[None, None])
    else:
        idx.update(feature_extractor=[None, None], safety_checker=[None, None], image_encoder=[None, None],
                   requires_safety_checker=False)
    idx.update(extra)
    return idx


FOLDERS = {
    "sd15": {"index": _index("StableDiffusionPipeline", "PNDMScheduler", False), "original": V1_INFERENCE, "size": 512,
                 "xl": False},
    "sd15-inpainting": {"index": _index("StableDiffusionInpaintPipeline", "PNDMScheduler", False),
                            "original": V1_INPAINTING, "size": 512, "xl": False},
    "sdxl": {"index": _index("StableDiffusionXLPipeline", "EulerDiscreteScheduler", True,
                              force_zeros_for_empty_prompt=True),
                 "original": SDXL_BASE, "size": 1024, "xl": True},
    "sdxl-inpainting": {"index": _index("StableDiffusionXLInpaintPipeline", "EulerDiscreteScheduler", True,
                                         force_zeros_for_empty_prompt=True, requires_aesthetics_score=False),
                            "original": SDXL_INPAINTING, "size": 1024, "xl": True},
}


def build(family: str, vocab: dict | None, merges: list[str] | None):
    import diffusers

    spec = FOLDERS[family]
    root = HERE / family
    root.mkdir(exist_ok=True)
    (root / "model_index.json").write_text(json.dumps(spec["index"], indent=2) + "\n", "utf-8")
    sched = spec["index"]["scheduler"][1]
    extra = {"use_karras_sigmas": False} if sched == "EulerDiscreteScheduler" else {}
    _save_scheduler(sched, root / "scheduler", **extra)
    _save_diffusers(diffusers.UNet2DConditionModel, _unet_config(spec["original"], spec["size"]), root / "unet")
    vae_extra = {"force_upcast": True} if spec["xl"] else {}
    _save_diffusers(diffusers.AutoencoderKL, _vae_config(spec["original"], spec["size"], **vae_extra), root / "vae")
    _save_text_encoder("CLIPTextModel", CLIP_L, root / "text_encoder")
    if spec["xl"]:
        _save_text_encoder("CLIPTextModelWithProjection", CLIP_BIGG, root / "text_encoder_2")
    toks = [("tokenizer", "<|endoftext|>")] + ([("tokenizer_2", "!")] if spec["xl"] else [])
    for name, pad in toks:
        if vocab is not None:
            write_tokenizer(root / name, vocab, merges, pad)
        elif not (root / name / "vocab.json").is_file():
            src = HERE / "sd15" / "tokenizer"
            (root / name).mkdir(exist_ok=True)
            for f in ("vocab.json", "merges.txt"):
                shutil.copy(src / f, root / name / f)


def main(argv):
    vocab = merges = None
    if argv:
        vocab, merges = clip_vocab(read_bpe(Path(argv[0])))
    for family in FOLDERS:
        build(family, vocab, merges)
        print("wrote", HERE / family)


if __name__ == "__main__":
    main(sys.argv[1:])
