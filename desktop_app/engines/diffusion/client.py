"""The parent side of the diffusion engine: start/stop the child process and run jobs on it.

Never imports torch or diffusers (the GUI process stays light and never stalls on them).
Blocking API meant for a worker QThread (or the CLI)::

    from desktop_app.engines.base import CancelToken
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec

    engine = EngineProcess()           # nothing starts yet
    token = CancelToken()
    req = GenerateRequest(model=ModelSpec("/models/sd15"), prompt="a red fox", steps=20, seed=1)
    for ev in engine.generate(req, token):   # token.cancel() from any thread stops within a step
        if ev.type == "progress":  ev["step"], ev["total"], ev["it_s"]
        elif ev.type == "preview": ev.image  (JPEG bytes, ≤ 256 px)
        elif ev.type == "result":  ev.image  (PNG bytes with metadata), ev["params"]["seed"]
        elif ev.type == "notice":  ev["kind"], ev["message"]   (OOM retry, GPU fallback, tiling)
        elif ev.type == "error":   ev["kind"], ev["message"]   (terminal; kind "crashed" → restart())
        elif ev.type == "cancelled": ...                        (terminal; nothing was decoded)
        elif ev.type == "done":    ...                          (terminal)
    engine.stop()

Post-processing runs in the same child (no torch/onnxruntime in the caller), same events::

    req = UpscaleRequest(model_path="/models/4x.safetensors", image=png_bytes, scale=4)
    for ev in engine.upscale(req, token): ...              # progress per tile, result (PNG), done
    req = RemoveBgRequest(model_path="/models/u2net.onnx", image=png_bytes, soft=True)
    for ev in engine.remove_background(req, token): ...    # progress per stage, result (RGBA PNG), done

One job at a time per EngineProcess. Engine failures come back as ``error`` events, never as
exceptions; a crash of the child (kill -9, driver fault, OOM killer) yields an ``error`` event
of kind ``crashed`` and the next job starts a fresh child (or call ``restart()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from desktop_app.core.errors import AtelierError
from desktop_app.engines.base import CancelToken
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import Event, GenerateRequest, ModelSpec, RemoveBgRequest, UpscaleRequest
from desktop_app.engines.host import REPO_ROOT, EngineHost  # noqa: F401 - REPO_ROOT: older imports


def _refused(exc: AtelierError) -> Event:
    from desktop_app.core.policy import NotApproved

    kind = "not_approved" if isinstance(exc, NotApproved) else "audit"
    return Event(P.ERROR, None, {"kind": kind, "message": str(exc)})


def _spec_files(model: ModelSpec) -> tuple[str, ...]:
    """What a pipeline loads besides its own folder or file that the policy must approve too."""
    return (model.transformer_gguf,) if model.transformer_gguf else ()


def _sha(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


class EngineProcess(EngineHost):
    """A diffusion engine in a child process.

    ``env``: extra environment variables for the child (tests use the fault-injection hooks
    documented in ``server.py``). ``start_timeout``: seconds to wait for torch/diffusers to
    import in the child.
    """

    server_module = "desktop_app.engines.diffusion.server"
    label = "image engine"
    log_name = "diffusion-engine.log"
    restart_hint = "It restarts on the next generation"

    def load(self, model: ModelSpec, token: CancelToken | None = None) -> Iterator[Event]:
        """Load (or keep) a model: ``loaded`` (only when it was not loaded yet) then ``done``; a model
        the administrator's policy does not approve ends at once in a ``not_approved`` error."""
        from desktop_app.engines.audited import admit

        try:
            for path in (model.path, *_spec_files(model)):
                admit(path, Path(path).name, "", token, digest_needed=False)
        except AtelierError as exc:
            return iter([_refused(exc)])
        return self._job({"op": "load", "model": model.to_dict()}, {}, token)

    def unload(self) -> Iterator[Event]:
        """Free the model (the child stays up): ``unloaded`` then ``done``."""
        return self._job({"op": "unload"}, {}, None)

    def generate(self, request: GenerateRequest, token: CancelToken | None = None) -> Iterator[Event]:
        """Run one generation job; yields events until exactly one terminal event."""
        params = {k: getattr(request, k) for k in ("mode", "steps", "guidance", "width", "height", "seed", "batch",
                                                   "scheduler", "strength", "negative")}
        params["loras"] = [{"name": Path(lo.path).name, "weight": lo.weight} for lo in request.loras]
        return self._audited("image", request.model.path, params, request.prompt,
                             lambda: self._request_job("generate", request, token), token,
                             also=(*_spec_files(request.model), *(lo.path for lo in request.loras)))

    def upscale(self, request: UpscaleRequest, token: CancelToken | None = None) -> Iterator[Event]:
        """Super resolution in the child: ``notice`` (kind "upscaler": model, tile), ``progress`` per
        tile (step = tile index, total = tiles), one ``result`` (PNG; data: width, height, scale,
        tiles, params), then ``done``; or ``cancelled`` (checked between tiles) / ``error``."""
        return self._audited("upscale", request.model_path, {"scale": request.scale, "tile": request.tile},
                             {"image_sha256": _sha(request.image)},
                             lambda: self._request_job("upscale", request, token), token)

    def remove_background(self, request: RemoveBgRequest, token: CancelToken | None = None) -> Iterator[Event]:
        """Background removal in the child: ``progress`` per stage (step 1..3: preprocess,
        inference, postprocess), one ``result`` (PNG: RGBA cut-out, or the "L" mask with
        ``mask_only``), then ``done``; or ``cancelled`` / ``error``."""
        return self._audited("remove_bg", request.model_path, {"soft": request.soft, "mask_only": request.mask_only},
                             {"image_sha256": _sha(request.image)},
                             lambda: self._request_job("remove_bg", request, token), token)

    def _audited(self, kind: str, model_path: str, params: dict, prompt, job, token,
                 also: tuple = ()) -> Iterator[Event]:
        """The policy's gate (a model it does not approve, or an audit log that cannot be written: an
        error event, nothing runs), then the job's events with one audit record when it ends
        (engines/audited.py)."""
        from desktop_app.engines.audited import image_events, start_call

        try:
            call = start_call(kind, model_path, params, prompt, token=token, also=also)
        except AtelierError as exc:
            return iter([_refused(exc)])
        return image_events(call, job())

    def _request_job(self, op: str, request, token: CancelToken | None) -> Iterator[Event]:
        """Validate ``request`` (an invalid one ends at once in an ``invalid_request`` error event),
        then send it as job ``op``."""
        try:
            request.validate()
        except AtelierError as exc:
            return iter([Event(P.ERROR, None, {"kind": "invalid_request", "message": str(exc)})])
        header, blobs = request.to_wire()
        return self._job({"op": op, "request": header}, blobs, token)
