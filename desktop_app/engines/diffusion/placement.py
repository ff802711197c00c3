"""Where the diffusion engine places a pipeline (its child process): the fit plan checked
against what torch can use, the memory broker's placement (core/memory_broker.py), moving a
loaded pipeline between placements, and what the process holds (reported after a load and
after each generation)."""

from __future__ import annotations

from desktop_app.core.errors import AtelierError
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import ModelSpec

# Placement ladder: on out of memory, retry once with the next, lighter mode.
LIGHTER = {
    "gpu": "gpu_offload",
    "gpu_offload": "gpu_sequential_offload",
    "gpu_sequential_offload": None,
    "cpu": "cpu_lowmem",
    "cpu_lowmem": None,
}
PLACEMENT_TEXT = {
    "gpu": "on the GPU",
    "gpu_offload": "on the GPU with model CPU offload",
    "gpu_sequential_offload": "on the GPU with sequential CPU offload (slow, least VRAM)",
    "cpu": "on the CPU (float32)",
    "cpu_lowmem": "on the CPU with attention slicing and VAE tiling",
}


class PlacementMixin:
    """The Engine's placement methods (engine.py); ``self`` is the Engine."""

    def _plan(self, path, job: str) -> tuple[str, str, str]:
        """(placement, device, dtype) from the fit plan, checked against what torch can use."""
        import torch

        placement, device, dtype = "cpu", "cpu", "float32"
        self.plan_vae_tiling = False
        try:
            from pathlib import Path

            from desktop_app.core.fitting import plan_diffusion
            from desktop_app.core.hardware import detect_hardware
        except ImportError:
            plan_diffusion = None  # fitting not available: the safe default (CPU, float32)
        if plan_diffusion is not None:
            try:
                plan = plan_diffusion(path if isinstance(path, dict) else Path(path), detect_hardware())
            except Exception as exc:  # noqa: BLE001 - the file passed inspect(); say so, run safely
                self._emit(job, P.NOTICE, kind="plan_failed",
                           message=f"Could not plan this model's memory use ({exc}); running on the CPU.")
            else:
                placement = plan.plan
                device = str(getattr(plan, "device", "cpu") or "cpu")
                dtype = str(getattr(plan, "dtype", "float32") or "float32").replace("torch.", "")
                self.plan_vae_tiling = bool(getattr(plan, "vae_tiling", False))
        if placement == "too_large":
            raise AtelierError(
                "This model does not fit this computer's memory (see its fit badge in the Models tab); "
                "choose a smaller model."
            )
        if placement.startswith("gpu"):
            ok = (device.startswith("cuda") and torch.cuda.is_available()) or (
                device.startswith("mps") and torch.backends.mps.is_available())
            if not ok:
                self._emit(job, P.NOTICE, kind="device_fallback",
                           message=f"The plan asked for {device}, but this torch build cannot use it "
                                   f"(torch {torch.__version__}); running on the CPU in float32, much slower. "
                                   "Install the CUDA build of torch to use the GPU.")
                placement, device, dtype = "cpu", "cpu", "float32"
        if placement.startswith("cpu"):
            from desktop_app.engines.diffusion.cpu_tuning import cpu_dtype

            # fp16 on CPU crashes (LayerNorm 'Half'); bfloat16 where the CPU has it natively, if asked
            dtype, note = cpu_dtype()
            device = "cpu"
            if note:
                self._emit(job, P.NOTICE, kind="cpu_dtype", message=note)
        return placement, device, dtype

    def _place(self, pipe, placement: str) -> None:
        import torch

        if placement == "gpu":
            pipe.to(self.device)
        elif placement == "gpu_offload":
            pipe.to("cpu")
            pipe.enable_model_cpu_offload(device=self.device)
        elif placement == "gpu_sequential_offload":
            pipe.to("cpu")
            pipe.enable_sequential_cpu_offload(device=self.device)
        elif placement == "cpu_lowmem":
            pipe.to("cpu")
            try:
                pipe.enable_attention_slicing()
            except (AttributeError, ValueError, NotImplementedError):
                pass  # transformer pipelines (SD 3, FLUX) have no sliced attention
            pipe.vae.enable_tiling()
        else:
            pipe.to("cpu")
        if placement.startswith("cpu"):
            from desktop_app.engines.diffusion.cpu_tuning import tune_cpu_pipeline

            self.cpu_tuning = tune_cpu_pipeline(pipe, self.dtype_name)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def memory(self) -> dict:
        """What this process holds: resident bytes, and torch's allocated and reserved GPU memory."""
        from desktop_app.core.usage import own_rss

        out = {"rss_bytes": own_rss()}
        try:
            import torch

            if torch.cuda.is_available():
                out["cuda_allocated_bytes"] = int(torch.cuda.memory_allocated())
                out["cuda_reserved_bytes"] = int(torch.cuda.memory_reserved())
        except Exception:  # noqa: BLE001 - a broken CUDA runtime must not fail the report
            pass
        return out

    def _broker_placement(self, spec: ModelSpec, placement: str, device: str, dtype: str) -> tuple[str, str, str]:
        """The memory broker's placement instead of the plan's, where this process can honour it:
        a GPU mode needs the GPU the plan found; the CPU always works (float32)."""
        want = spec.placement
        if not want or want == placement or want not in PLACEMENT_TEXT:
            return placement, device, dtype
        if want.startswith("gpu"):
            if placement.startswith("gpu"):
                return want, device, dtype
            return placement, device, dtype  # no usable GPU here: the plan's CPU placement stands
        return want, "cpu", "float32"

    def _replace(self, spec: ModelSpec, job: str) -> None:
        """Move the loaded pipelines to the broker's placement (e.g. full GPU -> model CPU offload)."""
        placement, device, dtype = self._broker_placement(spec, self.placement, self.device, self.dtype_name)
        if placement.startswith("gpu") == self.placement.startswith("gpu") and dtype == self.dtype_name:
            for p in self.pipes.values():
                if self.placement in ("gpu_offload", "gpu_sequential_offload") and hasattr(p, "remove_all_hooks"):
                    p.remove_all_hooks()  # offload hooks off before the pipeline moves again
                self._place(p, placement)
            self.placement, self.spec = placement, spec
            self._emit(job, P.NOTICE, kind="placement", plan=placement,
                       message=f"The image model now runs {PLACEMENT_TEXT.get(placement, placement)}.")
            return
        self.spec = None  # another dtype (GPU <-> CPU): load again
        self.load(spec, job)
