"""The wire format between the GUI/CLI process and the diffusion engine's child process.

Qt-free and torch-free: both sides import it.

A message is one line of UTF-8 JSON (an object) followed by the raw bytes of its blobs. The
header's ``"blobs"`` key, when present, lists ``[name, length]`` pairs; the blobs follow the
newline in that order. Images travel as encoded PNG/JPEG bytes, never as pickles.

Requests (parent → child), key ``op``:
  ``ping``                                   → ``pong`` {pid, loads, model, vae_decodes, ...}
  ``load`` {id, model: ModelSpec dict}       → ``loaded`` … ``done``
  ``generate`` {id, request: GenerateRequest dict; blobs init_image, mask}
                                             → [``loaded``] ``progress``* ``preview``* ``result``+ ``done``
  ``cancel`` {id}                            (read by the child while it computes)
  ``unload`` {id}                            → ``unloaded`` ``done``
  ``upscale`` {id, request: UpscaleRequest dict; blob image}
                                             → ``progress``* (one per tile) ``result`` ``done``
  ``remove_bg`` {id, request: RemoveBgRequest dict; blob image}
                                             → ``progress``* (preprocess/inference/postprocess) ``result`` ``done``
  ``shutdown``                               (the child exits)

Events (child → parent), key ``type``: see ``EVENT_TYPES``. Every job ends with exactly one
terminal event: ``done``, ``cancelled`` or ``error``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Event types -------------------------------------------------------------------------------
LOADED = "loaded"          # {model, family, pipeline, device, dtype, plan, native_size, max_size, seconds,
                           #  size_multiple, default_steps, default_guidance, schedulers, modes, source}
PROGRESS = "progress"      # {step, total, it_s, image_index, batch}
PREVIEW = "preview"        # {step, total, width, height, format, image_index}; blob "image"
RESULT = "result"          # {params: {...incl. seed}, index, width, height, seconds}; blob "image" (PNG)
NOTICE = "notice"          # {kind, message}: e.g. kind "oom_retry", "device_fallback", "vae_tiling"
ERROR = "error"            # {kind, message}: terminal. kinds: see ERROR_KINDS
CANCELLED = "cancelled"    # {step, total, cancel_seen_at_step, decoded: False}: terminal
DONE = "done"              # {seconds, images}: terminal
UNLOADED = "unloaded"
PONG = "pong"
EVENT_TYPES = (LOADED, PROGRESS, PREVIEW, RESULT, NOTICE, ERROR, CANCELLED, DONE, UNLOADED, PONG)
TERMINAL = (ERROR, CANCELLED, DONE)

# Error kinds -------------------------------------------------------------------------------
ERROR_KINDS = (
    "invalid_request",  # bad size, unknown scheduler, missing prompt … (fix the request)
    "model_format",     # missing/corrupt/pickle/unsupported model file, missing config folder
    "oom",              # out of memory even after the lighter retry
    "crashed",          # the engine process died (kill -9, driver crash, OOM killer); restart()
    "internal",         # anything else; message has the exception text
)

MODES = ("txt2img", "img2img", "inpaint")
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M Karras", "DDIM", "LCM")   # SD 1.5 / SDXL
FLOW_SCHEDULERS = ("Flow Euler",)   # SD 3.x / FLUX.1 (FlowMatchEulerDiscreteScheduler; "Euler" maps to it)
ALL_SCHEDULERS = SCHEDULERS + FLOW_SCHEDULERS


@dataclass
class ModelSpec:
    """What to load. ``path``: a diffusers folder or a single ``.safetensors`` file.

    ``config``: a local diffusers config folder for a single file (else the bundled one or the one
    the manager fetched under ``<models>/configs/<family>``). ``family``: force ``sd15``/``sdxl``/
    ``sd3``/``flux-schnell``/``flux-dev``. ``transformer_gguf``: see below (SD 3 / FLUX folders).
    """

    path: str
    allow_pickle: bool = False
    config: str | None = None
    family: str | None = None
    taesd: str | None = None  # a local AutoencoderTiny folder for better previews (optional)
    # SD 3/FLUX: the transformer from this file (.gguf via diffusers' GGUF quantization, or a
    # transformer-only .safetensors); every other component from the folder ``path``.
    transformer_gguf: str | None = None
    # the memory broker's choice (gpu | gpu_offload | gpu_sequential_offload | cpu); None: the fit plan's
    placement: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def for_record(cls, rec: Any, allow_pickle: bool = False) -> "ModelSpec":
        """The spec for a library record: its family (the Stable Diffusion ones, whose single files
        need a config folder chosen by family; SD 3 and FLUX are told apart from their files) and
        the config folder the manager fetched for it. The one rule for the Studio and ``imagine``."""
        fam = rec.family if rec.family in SPEC_FAMILIES else None
        return cls(path=rec.path, family=fam, allow_pickle=allow_pickle, config=(rec.extra or {}).get("config"))


SPEC_FAMILIES = ("sd15", "sd15-inpainting", "sd2", "sdxl", "sdxl-inpainting")


@dataclass
class LoraSpec:
    path: str
    weight: float = 1.0


@dataclass
class GenerateRequest:
    """One generation job. ``None`` means "the model's default" (steps 20, guidance 7, native size).

    ``init_image``/``mask`` are encoded image bytes (PNG/JPEG) for img2img/inpaint; the mask is
    white where the image is repainted. ``batch``: number of images (seed, seed+1, …).
    """

    model: ModelSpec
    prompt: str
    negative: str = ""
    mode: str = "txt2img"
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    batch: int = 1
    scheduler: str | None = None
    strength: float = 0.75
    loras: list[LoraSpec] = field(default_factory=list)
    init_image: bytes | None = None
    mask: bytes | None = None
    preview: bool = True
    preview_every: int = 1
    # What the saved PNG says about the files used: private (the default) keeps only their names
    # and the model's sha256, never an absolute path (it names the user, the machine's folders).
    private_metadata: bool = True
    model_sha256: str = ""
    idea: str = ""  # the short idea Enhance prompt turned into ``prompt`` (kept in the metadata)

    def validate(self) -> None:
        """Checks that need no model (the engine checks the model's maximum size)."""
        from desktop_app.core.errors import AtelierError

        if self.mode not in MODES:
            raise AtelierError(f"Unknown mode {self.mode!r}; use one of {', '.join(MODES)}.")
        if not isinstance(self.prompt, str):
            raise AtelierError("The prompt must be text.")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and (v < 64 or v % 8):
                raise AtelierError(f"Invalid {name} {v}: it must be a multiple of 8 and at least 64.")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise AtelierError(f"Invalid steps {self.steps}: use 1 to 1000.")
        if self.batch < 1 or self.batch > 64:
            raise AtelierError(f"Invalid batch count {self.batch}: use 1 to 64.")
        if self.scheduler is not None and self.scheduler not in ALL_SCHEDULERS:
            raise AtelierError(f"Unknown scheduler {self.scheduler!r}; use one of: {', '.join(ALL_SCHEDULERS)}.")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise AtelierError(f"Invalid seed {self.seed}: use a non-negative integer.")
        if self.mode in ("img2img", "inpaint") and not self.init_image:
            raise AtelierError(f"Mode {self.mode} needs an init image.")
        if self.mode == "inpaint" and not self.mask:
            raise AtelierError("Inpainting needs a mask image (white = repaint).")
        if self.mode == "img2img" and not 0.0 < self.strength <= 1.0:
            raise AtelierError(f"Invalid strength {self.strength}: use a value in (0, 1].")
        for lora in self.loras:
            if not str(lora.path).lower().endswith(".safetensors"):
                raise AtelierError(f"LoRA {lora.path}: only .safetensors LoRA files are supported.")

    def to_wire(self) -> tuple[dict, dict[str, bytes]]:
        d = asdict(self)
        d.pop("init_image")
        d.pop("mask")
        blobs = {}
        if self.init_image:
            blobs["init_image"] = self.init_image
        if self.mask:
            blobs["mask"] = self.mask
        return d, blobs

    @classmethod
    def from_wire(cls, d: dict, blobs: dict[str, bytes]) -> "GenerateRequest":
        d = dict(d)
        d["model"] = ModelSpec.from_dict(d["model"])
        d["loras"] = [LoraSpec(**x) for x in d.get("loras", [])]
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known, init_image=blobs.get("init_image"), mask=blobs.get("mask"))


POSTPROCESS_DEVICES = ("auto", "cpu", "cuda", "mps")


def _check_image_bytes(image) -> None:
    from desktop_app.core.errors import AtelierError

    if not isinstance(image, (bytes, bytearray)) or not image:
        raise AtelierError("No image given: pass the encoded image bytes (PNG/JPEG/WebP).")


class _ImageOnWire:
    """A request dataclass whose ``image`` field (encoded bytes) travels as the one blob "image"."""

    image: bytes

    def to_wire(self) -> tuple[dict, dict[str, bytes]]:
        d = asdict(self)
        d.pop("image")
        return d, {"image": self.image}

    @classmethod
    def from_wire(cls, d: dict, blobs: dict[str, bytes]):
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "image"}
        return cls(**known, image=blobs.get("image", b""))


@dataclass
class UpscaleRequest(_ImageOnWire):
    """Super resolution of one image in the engine child (spandrel; see engines/upscale.py).

    ``model_path``: a super-resolution ``.safetensors`` file. ``image``: encoded image bytes.
    ``scale``: output scale (default: the model's; smaller ones are resized down with Lanczos).
    ``tile``: the largest tile side in input pixels, overlap included; ``None`` picks one from the
    free memory, 0 runs the whole image at once. ``device``: auto (GPU when torch can use one,
    fp16 when the architecture supports it), cpu, cuda or mps. ``metadata``: the parameters to
    write into the result PNG (the gallery's: the source's prompt, the operation, the source
    file); the child adds the result's size and scale and encodes the PNG once. ``None``: the
    source's own text chunks are copied.
    """

    model_path: str
    image: bytes
    scale: int | None = None
    tile: int | None = None
    overlap: int = 32
    allow_pickle: bool = False
    device: str = "auto"
    metadata: dict | None = None

    def validate(self) -> None:
        from desktop_app.core.errors import AtelierError

        _check_image_bytes(self.image)
        if not self.model_path:
            raise AtelierError("No upscaling model given.")
        if self.scale is not None and not 1 <= int(self.scale) <= 16:
            raise AtelierError(f"Invalid scale {self.scale}: use 1 to the model's scale (2 or 4).")
        if self.tile is not None and self.tile < 0:
            raise AtelierError(f"Invalid tile size {self.tile}: use 0 (no tiling) or a size in pixels.")
        if self.overlap < 0:
            raise AtelierError(f"Invalid tile overlap {self.overlap}: use 0 or more pixels.")
        if self.device not in POSTPROCESS_DEVICES:
            raise AtelierError(f"Unknown device {self.device!r}; use one of {', '.join(POSTPROCESS_DEVICES)}.")


@dataclass
class RemoveBgRequest(_ImageOnWire):
    """Background removal of one image in the engine child (ONNX segmenter; engines/background.py).

    ``soft``: keep the model's continuous alpha (slightly feathered) instead of hard 0/255 edges.
    ``mask_only``: the result is the mask (greyscale PNG) instead of the RGBA cut-out.
    ``device``: auto (onnxruntime's GPU providers when installed), cpu or cuda. ``metadata``: as
    for :class:`UpscaleRequest` (``None``: the result carries no text chunks).
    """

    model_path: str
    image: bytes
    soft: bool = False
    mask_only: bool = False
    threshold: int = 128
    feather: float | None = None
    device: str = "auto"
    metadata: dict | None = None

    def validate(self) -> None:
        from desktop_app.core.errors import AtelierError

        _check_image_bytes(self.image)
        if not self.model_path:
            raise AtelierError("No background-removal model given.")
        if not 0 <= self.threshold <= 255:
            raise AtelierError(f"The mask threshold must be between 0 and 255 (got {self.threshold}).")
        if self.device not in ("auto", "cpu", "cuda"):
            raise AtelierError(f"Unknown device {self.device!r} for background removal; use auto, cpu or cuda.")


# Event and framing: shared with the chat engine's child (desktop_app.engines.wire).
from desktop_app.engines.wire import Event, event_from_wire, event_to_wire, read_message, write_message  # noqa: E402,F401
