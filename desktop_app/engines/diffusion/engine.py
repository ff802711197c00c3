"""The diffusion engine itself, as its child process runs it: loading and placing pipelines, the
OOM ladder, generation with progress, previews and cancel, LoRAs, post-processing models.
:mod:`desktop_app.engines.diffusion.server` is the process loop around it."""

from __future__ import annotations

import io
import os
import random
import threading
import time
import traceback

from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import Event, GenerateRequest, ModelSpec
from desktop_app.engines.diffusion.placement import LIGHTER, PLACEMENT_TEXT, PlacementMixin  # noqa: F401
from desktop_app.engines.wire import EventWriter

SCHEDULER_NAMES = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DDIMScheduler": "DDIM",
    "LCMScheduler": "LCM",
    "PNDMScheduler": "PNDM",
    "LMSDiscreteScheduler": "LMS",
}


class _Interrupted(Exception):
    """Raised from the step callback to leave the pipeline before the VAE decode."""

    def __init__(self, step: int):
        self.step = step


_Out = EventWriter  # the event writer on the protocol stream


class Engine(PlacementMixin):
    def __init__(self, out: _Out):
        self.out = out
        self.model = None          # loader.LoadedModel
        self.spec: ModelSpec | None = None
        self.pipes: dict[str, object] = {}
        self.placement = "cpu"
        self.device = "cpu"
        self.dtype_name = "float32"
        self.cpu_tuning: dict = {}  # threads and layout of a CPU placement (cpu_tuning.py)
        self.loads = 0
        self.vae_decodes = 0
        self.loras: dict[str, str] = {}   # path -> adapter name
        self.base_scheduler_config = None
        self.taesd = None
        self.post_models: dict[str, tuple] = {}  # "upscale"/"remove_bg" -> (key, loaded model)
        # cancel state, shared with the reader thread
        self.lock = threading.Lock()
        self.current_job: str | None = None
        self.cancel_flag = threading.Event()
        self.cancel_seen_at: int | None = None
        self.current_step = 0
        self.cancelled_ids: set[str] = set()
        self.fault_oom = int(os.environ.get("ATELIER_FAULT_OOM", "0") or 0)
        self.step_delay = float(os.environ.get("ATELIER_TEST_STEP_DELAY", "0") or 0)

    # -- called from the reader thread ------------------------------------------------------
    def request_cancel(self, job: str | None) -> None:
        with self.lock:
            if job is None or job == self.current_job:
                if not self.cancel_flag.is_set():
                    self.cancel_seen_at = self.current_step
                self.cancel_flag.set()
            elif job:
                self.cancelled_ids.add(job)

    def stats(self) -> dict:
        return {
            "pid": os.getpid(),
            "loads": self.loads,
            "vae_decodes": self.vae_decodes,
            "model": self.spec.path if self.spec else None,
            "placement": self.placement if self.model else None,
            "modes": sorted(self.pipes),
            "module_ids": {m: {"unet": id(getattr(p, "unet", None) or getattr(p, "transformer", None)),
                               "vae": id(p.vae), "text_encoder": id(p.text_encoder)}
                           for m, p in self.pipes.items()},
            "loras": sorted(self.loras),
            "post_models": {k: v[0][0] for k, v in self.post_models.items()},
            "busy": self.current_job,
        }

    # -- jobs ---------------------------------------------------------------------------------
    def _begin(self, job: str) -> None:
        with self.lock:
            self.current_job = job
            self.current_step = 0
            self.cancel_seen_at = None
            self.cancel_flag.clear()
            if job in self.cancelled_ids:
                self.cancelled_ids.discard(job)
                self.cancel_seen_at = 0
                self.cancel_flag.set()

    def _end(self) -> None:
        with self.lock:
            self.current_job = None
            self.cancel_flag.clear()

    def _emit(self, job, type_, image=None, **data):
        self.out.send(Event(type=type_, job=job, data=data, image=image))

    def _plan_input(self, spec: ModelSpec):
        """What plan_diffusion sizes: the path, or {component: params} with a separate transformer file."""
        from pathlib import Path

        if not spec.transformer_gguf:
            return Path(spec.path)
        from desktop_app.core.fitting import diffusion_components

        comps = diffusion_components(Path(spec.path))
        t = Path(spec.transformer_gguf).expanduser()
        if t.suffix.lower() == ".safetensors":
            comps["transformer"] = sum(diffusion_components(t).values())  # every tensor is the transformer's
        else:
            comps["transformer"] = t.stat().st_size // 2  # GGUF stays quantized: its size, counted as 16-bit
        return comps

    def load(self, spec: ModelSpec, job: str) -> None:
        if self.spec is not None and self.spec.to_dict() == spec.to_dict() and self.model is not None:
            return
        if (self.model is not None and self.spec is not None and spec.placement
                and {**self.spec.to_dict(), "placement": None} == {**spec.to_dict(), "placement": None}):
            self._replace(spec, job)  # the same model, moved by the memory broker: no reload
            return
        self.unload()
        from desktop_app.engines.diffusion.loader import inspect, load_pipeline

        t0 = time.perf_counter()
        inspect(spec)  # clear errors for bad files before any planning or heavy work
        placement, device, dtype = self._plan(self._plan_input(spec), job)
        placement, device, dtype = self._broker_placement(spec, placement, device, dtype)
        self.device, self.dtype_name = device, dtype
        model = load_pipeline(spec, dtype=dtype)
        pipe = model.pipe
        pipe.set_progress_bar_config(disable=True)
        self._count_decodes(pipe.vae)
        self.placement = placement
        self._place(pipe, placement)
        self.model, self.spec = model, spec
        self.pipes = {self._base_mode(): pipe}
        self.base_scheduler_config = dict(pipe.scheduler.config)
        self.base_scheduler_class = type(pipe.scheduler)
        self.loads += 1
        if spec.taesd:
            self._load_taesd(spec.taesd, pipe, device, job)
        self._emit(job, P.LOADED, model=spec.path, family=model.family, pipeline=model.pipeline,
                   device=device, dtype=dtype, plan=placement, native_size=model.native_size,
                   max_size=model.max_size, source=model.source, seconds=round(time.perf_counter() - t0, 3),
                   placement_text=PLACEMENT_TEXT.get(placement, placement), size_multiple=model.size_multiple,
                   default_steps=model.default_steps, default_guidance=model.default_guidance,
                   schedulers=list(model.schedulers), modes=list(model.modes), cpu=dict(self.cpu_tuning),
                   pid=os.getpid(), memory=self.memory())

    def _load_taesd(self, folder: str, pipe, device: str, job: str) -> None:
        from desktop_app.engines.diffusion.preview import load_taesd

        load_taesd(self, folder, pipe, device, job)

    def _base_mode(self) -> str:
        return "inpaint" if self.model.family.endswith("inpainting") else "txt2img"

    def _count_decodes(self, vae) -> None:
        orig = vae.decode
        if getattr(orig, "_atelier_counted", False):
            return

        def decode(*a, **k):
            self.vae_decodes += 1
            return orig(*a, **k)

        decode._atelier_counted = True
        vae.decode = decode

    def unload(self) -> None:
        if self.model is None:
            return
        self.pipes.clear()
        self.model = None
        self.spec = None
        self.taesd = None
        self.loras.clear()
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def pipe_for(self, mode: str):
        if mode in self.pipes:
            return self.pipes[mode]
        if self.model.family.endswith("inpainting"):
            raise AtelierError(f"This is an inpainting model: it only does inpainting, not {mode}.")
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        base = self.pipes["txt2img"]
        cls = {"img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting,
               "txt2img": AutoPipelineForText2Image}[mode]
        try:
            pipe = cls.from_pipe(base)
        except (ValueError, KeyError) as exc:
            raise AtelierError(f"{self.model.family} models cannot do {mode} with this diffusers version "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from exc
        pipe.set_progress_bar_config(disable=True)
        self.pipes[mode] = pipe
        return pipe

    def _scheduler(self, pipe, name: str | None) -> str:
        import diffusers

        cfg = self.base_scheduler_config
        if self.model.flow:
            if name not in (None, "Flow Euler", "Euler"):
                raise AtelierError(
                    f"The scheduler {name!r} does not apply to {self.model.family} (a flow-matching model); "
                    f"use: {', '.join(P.FLOW_SCHEDULERS)}."
                )
            pipe.scheduler = self.base_scheduler_class.from_config(cfg)
            return "Flow Euler"
        if name in P.FLOW_SCHEDULERS:
            raise AtelierError(f"The scheduler {name!r} applies to SD 3 and FLUX models; "
                               f"for {self.model.family} use one of: {', '.join(P.SCHEDULERS)}.")
        if name is None:
            pipe.scheduler = self.base_scheduler_class.from_config(cfg)
            cls_name = self.base_scheduler_class.__name__
            if cls_name == "DPMSolverMultistepScheduler":
                return "DPM++ 2M Karras" if cfg.get("use_karras_sigmas") else "DPM++ 2M"
            return SCHEDULER_NAMES.get(cls_name, cls_name)
        if name == "Euler":
            s = diffusers.EulerDiscreteScheduler.from_config(cfg)
        elif name == "Euler a":
            s = diffusers.EulerAncestralDiscreteScheduler.from_config(cfg)
        elif name == "DPM++ 2M Karras":
            s = diffusers.DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True,
                                                                  algorithm_type="dpmsolver++", solver_order=2)
        elif name == "DDIM":
            s = diffusers.DDIMScheduler.from_config(cfg)
        elif name == "LCM":
            s = diffusers.LCMScheduler.from_config(cfg)
        else:
            raise AtelierError(f"Unknown scheduler {name!r}; use one of: {', '.join(P.SCHEDULERS)}.")
        pipe.scheduler = s
        return name

    def _apply_loras(self, req: GenerateRequest) -> None:
        base = self.pipes.get("txt2img") or next(iter(self.pipes.values()))
        from pathlib import Path

        for lora in req.loras:
            p = str(Path(lora.path).expanduser().resolve())
            if p in self.loras:
                continue
            if not Path(p).is_file():
                raise ModelFormatError(f"LoRA not found: {p}")
            name = f"lora{len(self.loras)}"
            try:
                base.load_lora_weights(p, adapter_name=name)
            except (ValueError, KeyError, OSError, RuntimeError) as exc:
                raise ModelFormatError(
                    f"Cannot apply the LoRA {Path(p).name} to this {self.model.family} model: "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                ) from exc
            # diffusers loads nothing (a log line only) when no key of the file fits this model,
            # e.g. an SD 1.5 LoRA on FLUX; set_adapters would then fail with a bare ValueError.
            try:
                present = {a for names in base.get_list_adapters().values() for a in names}
            except (AttributeError, ValueError):
                present = {name}
            if name not in present:
                try:
                    base.delete_adapters(name)
                except (AttributeError, ValueError, KeyError):
                    pass
                raise ModelFormatError(
                    f"The LoRA {Path(p).name} has no weights that apply to this {self.model.family} model: it was "
                    "made for another model family (or is not a LoRA). Use a LoRA made for this model."
                )
            self.loras[p] = name
        if not self.loras:
            return
        if req.loras:
            names = [self.loras[str(Path(x.path).expanduser().resolve())] for x in req.loras]
            base.enable_lora()
            base.set_adapters(names, adapter_weights=[float(x.weight) for x in req.loras])
        else:
            base.disable_lora()

    def _open_image(self, data: bytes, size, mode="RGB"):
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as exc:
            raise AtelierError(f"Cannot read the {'mask' if mode == 'L' else 'init'} image: {exc}") from exc
        img = img.convert(mode)
        if size and img.size != size:
            img = img.resize(size, Image.LANCZOS)
        return img

    def generate(self, job: str, req: GenerateRequest) -> None:

        t_job = time.perf_counter()
        req.validate()
        self.load(req.model, job)
        model = self.model
        if req.mode == "txt2img" and model.family.endswith("inpainting"):
            raise AtelierError("This is an inpainting model: choose the Inpaint mode and give an image and a mask.")
        init = mask = None
        width, height = req.width, req.height
        if req.init_image:
            size = (width, height) if width and height else None
            init = self._open_image(req.init_image, size)
            if size is None:
                width = width or max(64, init.width // 8 * 8)
                height = height or max(64, init.height // 8 * 8)
                init = init.resize((width, height))
        width = width or model.native_size
        height = height or model.native_size
        if req.mode not in model.modes:
            raise AtelierError(f"{model.family} models do not do {req.mode}; modes: {', '.join(model.modes)}.")
        mult = model.size_multiple
        if init is not None and mult > 8 and req.width is None and req.height is None:
            width, height = max(64, width // mult * mult), max(64, height // mult * mult)
            init = init.resize((width, height))
        for name, v in (("width", width), ("height", height)):
            if v % mult or v < 64 or v > model.max_size:
                raise AtelierError(
                    f"Invalid {name} {v}: it must be a multiple of {mult} from 64 to {model.max_size} for this model "
                    f"(native size {model.native_size})."
                )
        if req.mask:
            mask = self._open_image(req.mask, (width, height), mode="L")
        pipe = self.pipe_for(req.mode)
        sched_name = self._scheduler(pipe, req.scheduler)
        self._apply_loras(req)
        steps = req.steps or (4 if sched_name == "LCM" else model.default_steps)
        guidance = req.guidance if req.guidance is not None else (1.0 if sched_name == "LCM" else model.default_guidance)
        is_flux = model.family.startswith("flux")
        if is_flux and req.negative:
            self._emit(job, P.NOTICE, kind="negative_ignored",
                       message="FLUX models do not use a negative prompt; it was ignored.")
        seed = req.seed if req.seed is not None else random.randrange(2**32)
        big = width * height > 1024 * 1024 or getattr(self, "plan_vae_tiling", False)
        if self.placement != "cpu_lowmem":
            if big:
                pipe.vae.enable_tiling()
                self._emit(job, P.NOTICE, kind="vae_tiling", message="Large image: decoding the VAE in tiles.")
            else:
                pipe.vae.disable_tiling()
        images = 0
        for index in range(req.batch):
            image_seed = seed + index
            t0 = time.perf_counter()
            kwargs = dict(prompt=req.prompt, negative_prompt=req.negative or None, num_inference_steps=steps,
                          guidance_scale=guidance, num_images_per_prompt=1, output_type="pil")
            if is_flux:
                kwargs.pop("negative_prompt")
                if model.family == "flux-schnell":
                    kwargs["max_sequence_length"] = 256  # schnell's T5 context
            if req.mode == "txt2img":
                kwargs.update(width=width, height=height)
            elif req.mode == "img2img":
                kwargs.update(image=init, strength=req.strength)
            else:
                kwargs.update(image=init, mask_image=mask, width=width, height=height, strength=req.strength)
            image = self._run(job, pipe, kwargs, image_seed, index, req, (width, height))
            params = {
                "prompt": req.prompt, "negative": req.negative, "mode": req.mode, "steps": steps,
                "guidance": guidance, "width": width, "height": height, "seed": image_seed,
                "scheduler": sched_name, "model": os.path.basename(os.path.normpath(req.model.path)),
                "family": model.family, "batch_index": index, "app": "Atelier",
                "loras": [{"path": os.path.basename(x.path) if req.private_metadata else x.path, "weight": x.weight}
                          for x in req.loras],
            }
            if not req.private_metadata:
                params["model_path"] = req.model.path
            if req.model_sha256:
                params["model_sha256"] = req.model_sha256
            if req.idea:
                params["idea"] = req.idea  # what the user typed before Enhance prompt rewrote it
            if req.mode != "txt2img":
                params["strength"] = req.strength
            from desktop_app.engines.diffusion.metadata import png_with_metadata

            png = png_with_metadata(image, params)
            images += 1
            self._emit(job, P.RESULT, image=png, params=params, index=index, width=image.width,
                       height=image.height, seconds=round(time.perf_counter() - t0, 4))
        self._emit(job, P.DONE, seconds=round(time.perf_counter() - t_job, 4), images=images, memory=self.memory())

    def _run(self, job, pipe, kwargs, seed, index, req, size):
        """One pipeline call with progress/preview/cancel, and one lighter retry on OOM."""
        import torch

        retried = False
        while True:
            gen = torch.Generator(device="cpu").manual_seed(seed)
            state = {"last": time.perf_counter(), "last_preview": 0.0}

            def on_step(p, i, t, kw):
                step = i + 1
                now = time.perf_counter()
                dt = now - state["last"]
                state["last"] = now
                self.current_step = step
                total = int(getattr(p, "_num_timesteps", None) or kwargs["num_inference_steps"])
                if self.cancel_flag.is_set():
                    raise _Interrupted(step)
                self._emit(job, P.PROGRESS, step=step, total=total, it_s=round(1.0 / dt, 3) if dt > 0 else None,
                           image_index=index, batch=req.batch)
                if req.preview and step % max(1, req.preview_every) == 0 and step < total:
                    self._preview(job, kw.get("latents"), step, total, index, size, p)
                if self.step_delay:
                    self.cancel_flag.wait(self.step_delay)
                if self.cancel_flag.is_set():
                    raise _Interrupted(step)
                return {}

            try:
                if self.fault_oom > 0:
                    self.fault_oom -= 1
                    raise torch.OutOfMemoryError("CUDA out of memory. (injected by ATELIER_FAULT_OOM)")
                out = pipe(**kwargs, generator=gen, callback_on_step_end=on_step,
                           callback_on_step_end_tensor_inputs=["latents"])
                return out.images[0]
            except torch.OutOfMemoryError as exc:
                lighter = LIGHTER.get(self.placement)
                if retried or lighter is None:
                    raise _OOM(self.placement, exc) from exc
                retried = True
                self._emit(job, P.NOTICE, kind="oom_retry",
                           message=f"Out of memory {PLACEMENT_TEXT[self.placement]}; retrying "
                                   f"{PLACEMENT_TEXT[lighter]}.", from_plan=self.placement, to_plan=lighter)
                import gc

                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.placement = lighter
                for p in self.pipes.values():
                    self._place(p, lighter)

    def _preview(self, job, latents, step, total, index, size, pipe=None):
        if latents is None:
            return
        from desktop_app.engines.diffusion import preview as pv

        res, decoder = None, "latent"
        try:
            if latents.dim() == 3 and pipe is not None and hasattr(pipe, "_unpack_latents"):  # FLUX: packed
                latents = pipe._unpack_latents(latents, size[1], size[0], pipe.vae_scale_factor)
            if self.taesd is not None:
                try:
                    res, decoder = pv.taesd_preview(self.taesd, latents, size), "taesd"
                except Exception as exc:  # noqa: BLE001 - fall back for the rest of this model's life
                    self.taesd = None
                    self._emit(job, P.NOTICE, kind="taesd", active=False,
                               message=f"TAESD previews failed ({type(exc).__name__}: {exc}); "
                                       "using the approximate latent previews.")
            if res is None:
                res, decoder = pv.latent_preview(latents, self.model.family, size), "latent"
        except Exception:  # a preview must never break a generation
            return
        if res:
            data, w, h = res
            self._emit(job, P.PREVIEW, image=data, step=step, total=total, width=w, height=h, format="jpeg",
                       image_index=index, decoder=decoder)


class _OOM(Exception):
    def __init__(self, placement, exc):
        self.placement = placement
        self.exc = exc


def _error_event(job, exc) -> Event:
    if isinstance(exc, ModelFormatError):
        kind = "model_format"
    elif isinstance(exc, AtelierError):
        kind = "invalid_request"
    elif isinstance(exc, _OOM):
        return Event(P.ERROR, job, {"kind": "oom", "message": (
            f"Out of memory {PLACEMENT_TEXT.get(exc.placement, exc.placement)}, even after retrying with less "
            "memory. Try a smaller size, fewer images per batch, or a smaller model.")})
    else:
        kind = "internal"
        traceback.print_exc()
        return Event(P.ERROR, job, {"kind": kind, "message": f"{type(exc).__name__}: {exc}"})
    return Event(P.ERROR, job, {"kind": kind, "message": str(exc)})
