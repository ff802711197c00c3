"""The Image Studio's controller: a QObject with no widgets between the "image" model thread
(which drives the diffusion engine's child process) and the view, as the Chat tab's controller is.

It owns the model list with its fit badges, what is loaded, and the three kinds of job (load,
generation, post-processing), which run one after another in the model thread. The view lays
out, collects the request, and reacts to these typed signals:

  models_listed(list)        the image model records (``badges``, ``post_models`` are filled)
  models_failed(str)
  loaded(dict)               the engine's LOADED data (native_size, max_size, device, seconds…)
  progress(Progress)         generation steps (the view coalesces them)
  preview(Preview)           a decoded step preview
  post_progress(Progress)    post-processing stages ("Tile 3/12")
  result(Result, str)        a saved image; "generate" or the post operation
  status(str)                what the engine is doing or says (notices)
  engine_error(str, str)     kind, message (kind "crashed"/"oom"/"internal": offer a restart)
  load_ended(str)            done | failed | cancelled
  generation_ended(str, int) done | error | cancelled, images saved
  post_ended(str)            done | error | cancelled

Tested without widgets (tests/gui/test_studio_controller.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop_app.core.memory_broker import Moves
from desktop_app.qt.threads import JobHandle, watch
from desktop_app.ui.studio import events as E
from desktop_app.ui.studio import jobs

log = logging.getLogger(__name__)

POST_TASKS = ("upscale", "background_removal")
JOB_ATTR = {"load": "load_job", "gen": "gen_job", "post": "post_job"}  # kind of job -> where its handle is
FAMILY_SIZES = {"sd15": 512, "sd2": 768, "sdxl": 1024, "sd3": 1024, "flux": 1024}  # trained-for sizes


def list_image_models(library, hardware) -> tuple[list, dict, dict]:
    """(image records, {id: (badge, note, plan)}, {post task: records}) with one read of the
    library; a record that cannot be planned shows its error as badge. Off the GUI thread."""
    from desktop_app.core.policy import current, record_digest
    from desktop_app.ui.widgets.fit import plan_or_error

    pol = current()
    every = library.list()
    recs = [r for r in every if r.task == "image"]
    post = {task: [r for r in every if r.task == task] for task in POST_TASKS}
    badges = {}
    for r in recs:  # plan_for_record detects the hardware itself (cached) when it is not known yet
        if pol.restricts_models and Path(r.path).exists() and not pol.approves(record_digest(r)):
            badges[r.id] = ("not approved by your administrator", f"Not approved by {pol.source}: it cannot be "
                            "loaded.", "error")
            continue
        plan, exc = plan_or_error(r, hardware)
        badges[r.id] = (plan.badge, getattr(plan, "note", "") or "", plan.plan) if exc is None else (
            "Unreadable", str(exc), "error")
    from desktop_app.core.remotes import remote_entries

    try:  # a team server's image models, as last listed (no socket opened here)
        for e in remote_entries("image"):
            rec = jobs.remote_record(e)
            recs.append(rec)
            badges[rec.id] = (e["badge"], e["note"], "remote")
    except Exception as exc:  # noqa: BLE001 - a broken cache never hides the local models
        log.warning("could not list the remote image models: %s", exc)
    return recs, badges, post


class StudioController(QObject):
    models_listed = Signal(object)
    models_failed = Signal(str)
    loaded = Signal(dict)
    progress = Signal(object)
    preview = Signal(object)
    post_progress = Signal(object)
    result = Signal(object, str)
    status = Signal(str)
    engine_error = Signal(str, str)
    load_ended = Signal(str)
    generation_ended = Signal(str, int)
    post_ended = Signal(str)

    def __init__(self, ctx, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.engine_provider = None  # tests, bench: () -> (EngineProcess, owned)
        self.idea_provider = None  # prompt -> the idea Enhance prompt made it from ("" when none)
        self._thread = None
        self.records: dict[str, object] = {}
        self.badges: dict[str, tuple] = {}
        self.post_models: dict[str, list] = {task: [] for task in POST_TASKS}
        self.loaded_path: str | None = None
        self.loaded_native: int | None = None
        self.gen_job: JobHandle | None = None
        self.load_job: JobHandle | None = None
        self.post_job: JobHandle | None = None
        self._job_error = False
        self._results = 0
        self._post_op = ""
        self._shut = False
        ctx.register_mover("image", self.broker_move, restore=self.broker_restore,
                           busy=lambda: self.busy or self.post_busy)
        ctx.remotes_changed.connect(lambda: None if self._shut else self.refresh_models())  # a team server's models
        ctx.image_engine_taken.connect(self._on_engine_taken)

    # ------------------------------------------------------------------ state
    @property
    def thread(self):
        """The "image" model thread: it owns the engine client (created on first use)."""
        if self._thread is None:
            self._thread = self.ctx.model_thread("image")
        return self._thread

    @property
    def busy(self) -> bool:
        """A generation is running."""
        return self.gen_job is not None

    @property
    def post_busy(self) -> bool:
        return self.post_job is not None

    def spec_for(self, rec):
        from desktop_app.engines.diffusion.protocol import ModelSpec

        return ModelSpec.for_record(rec, allow_pickle=bool(self.ctx.settings.get("allow_pickle")))

    def shutdown(self) -> None:
        """Cancel what runs; the context then shuts the threads (the engine child stops there)."""
        if self._shut:
            return
        self._shut = True
        if self._thread is not None:
            self._thread.cancel()

    # ------------------------------------------------------------------ models
    def refresh_models(self) -> JobHandle:
        lib, hw = self.ctx.library, self.ctx.hardware
        return self.ctx.background.run(lambda _t: list_image_models(lib, hw), on_success=self._on_listed,
                                       on_failure=lambda exc: self.models_failed.emit(str(exc)))

    def _on_listed(self, result) -> None:
        if self._shut:
            return
        recs, badges, self.post_models = result
        self.records = {r.id: r for r in recs}
        self.badges.update(badges)
        self.models_listed.emit(recs)

    # ------------------------------------------------------------------ jobs
    def _submit(self, job, what: str, kind: str) -> JobHandle:
        attr = JOB_ATTR[kind]
        handle = watch(self.thread.submit(job, what), lambda h: h is getattr(self, attr),
                       progress=lambda item: self._on_item(item, kind),
                       succeeded=lambda _r: self._on_ended(kind, None),
                       failed=lambda exc: self._on_ended(kind, exc),
                       cancelled=lambda: self._on_ended(kind, "cancelled"))
        setattr(self, attr, handle)
        return handle

    def load(self, rec) -> JobHandle | None:
        """Load ``rec`` in the engine now (the first time, the child starts); a load in progress
        is cancelled first."""
        if self._shut or self.busy:
            return None
        self._cancel_load()
        return self._submit_load(rec)

    def _submit_load(self, rec) -> JobHandle:
        if rec.format == "remote":
            return self._submit(jobs.remote_load_job(rec, self.ctx.broker), "Checking the image server", "load")
        return self._submit(jobs.load_job(self.spec_for(rec), self.engine_provider, self.ctx.broker, rec),
                            "Loading the image model", "load")

    def broker_restore(self) -> JobHandle | None:
        """Plan the loaded pipeline again on its own (it was moved; the others are idle)."""
        rec = next((r for r in self.records.values() if str(r.path) == str(self.loaded_path)), None)
        if self._shut or self.busy or rec is None or self.load_job is not None or rec.format == "remote":
            return None
        return self._submit(jobs.load_job(self.spec_for(rec), self.engine_provider, self.ctx.broker, rec, replan=True),
                            "Placing the image model again", "load")

    def broker_move(self, decision) -> JobHandle | None:
        """The memory broker's move of the loaded pipeline (another model needs the room): unload
        it, or place it anew (e.g. model CPU offload). Queued behind a running generation."""
        if self._shut or self.loaded_path is None:
            return None
        rec = next((r for r in self.records.values() if str(r.path) == str(self.loaded_path)), None)
        if rec is not None and rec.format == "remote":
            return None  # it holds nothing on this machine
        if decision.placement == "unload" or rec is None:
            self._forget_loaded()
            job, what = jobs.unload_job(self.engine_provider, self.ctx.broker), "Unloading the image model"
        else:
            import dataclasses

            spec = dataclasses.replace(self.spec_for(rec), placement=decision.mode)
            job, what = jobs.load_job(spec, self.engine_provider, self.ctx.broker, rec), "Moving the image model"
        return watch(self.thread.submit(job, what), lambda _h: True, progress=lambda item: self._on_item(item, "move"))

    def _cancel_load(self) -> None:
        if self.load_job is not None:
            self.thread.cancel(self.load_job)

    # size and steps: the model's native ones, or what was last used with it (across restarts)
    def start_params(self, rec, loaded: dict | None = None) -> dict:
        """{width, height, steps} to start with for ``rec``: remembered ones first, else the loaded
        engine's native size and default steps, else its family's usual size."""
        remembered = (self.ctx.settings.get("studio_model_params") or {}).get(rec.id)
        n = int(loaded["native_size"]) if loaded and loaded.get("native_size") else FAMILY_SIZES.get(
            (rec.family or "").split("-")[0], 512)
        if isinstance(remembered, dict) and all(isinstance(remembered.get(k), int) for k in ("width", "height", "steps")):
            return {**{k: remembered[k] for k in ("width", "height", "steps")}, "native": n}
        if loaded and loaded.get("native_size"):
            return {"width": n, "height": n, "steps": int(loaded.get("default_steps") or 20), "native": n}
        return {"width": n, "height": n, "steps": 4 if (rec.family or "") == "flux-schnell" else 25, "native": n}

    def record_for_params(self, params: dict) -> str | None:
        """The library model an image was made with: by its path (images saved with paths), its
        sha256, or its file or folder name (private images keep only those)."""
        mp, sha, name = params.get("model_path"), params.get("model_sha256"), params.get("model")
        for key in (lambda r: mp and str(r.path) == str(mp), lambda r: sha and r.sha256 == sha,
                    lambda r: name and Path(str(r.path)).name == name):
            mid = next((i for i, r in self.records.items() if key(r)), None)
            if mid:
                return mid
        return None

    def remember_params(self, rec, p: dict) -> None:
        stored = dict(self.ctx.settings.get("studio_model_params") or {})
        stored[rec.id] = {"width": int(p["width"]), "height": int(p["height"]), "steps": int(p["steps"])}
        if len(stored) > 200:  # bounded: the oldest entries go
            stored = dict(list(stored.items())[-200:])
        try:
            self.ctx.settings.set("studio_model_params", stored)
        except Exception:  # noqa: BLE001 - a read-only settings file must not stop a generation
            log.warning("could not remember the Studio's size and steps", exc_info=True)

    def generate(self, rec, p: dict, init, mask) -> JobHandle | None:
        """Run the view's params ``p`` on ``rec``; ``init`` / ``mask`` are QImage copies (encoded
        to PNG in the job, off the GUI thread) or None."""
        if self._shut or self.busy:
            return None
        from desktop_app.ui.studio.mask_canvas import qimage_to_png

        if rec.format == "remote":  # another Atelier's atelier serve makes it
            self._cancel_load()
            self._results, self._job_error = 0, False
            return self._submit(jobs.remote_generate_job(rec, p), "The image generation", "gen")
        spec, provider, broker = self.spec_for(rec), self.engine_provider, self.ctx.broker
        idea = p.get("idea") or (self.idea_provider(p["prompt"]) if self.idea_provider else "")
        private = not self.ctx.settings.get("image_metadata_paths")

        def job(state, token):
            from desktop_app.engines.diffusion.protocol import GenerateRequest, LoraSpec

            from desktop_app.core.image_presets import apply_style

            prompt, negative = apply_style(p["prompt"], p["negative"], p.get("style") or "None")
            req = GenerateRequest(
                model=spec, prompt=prompt, negative=negative, mode=p["mode"], steps=p["steps"],
                guidance=p["guidance"], width=p["width"], height=p["height"], seed=p["seed"], batch=p["batch"],
                scheduler=p["scheduler"], strength=p["strength"],
                loras=[LoraSpec(x["path"], x["weight"]) for x in p["loras"]],
                init_image=qimage_to_png(init) if init is not None else None,
                mask=qimage_to_png(mask) if mask is not None else None,
                private_metadata=private, model_sha256=rec.sha256 or "", idea=idea,
            )
            return jobs.generate_job(req, provider, broker=broker, rec=rec)(state, token)

        self._cancel_load()
        self._results = 0
        self._job_error = False
        return self._submit(job, "The image generation", "gen")

    def restart(self, rec=None) -> JobHandle | None:
        """A fresh engine process, then ``rec`` loaded in it again."""
        if self._shut or self.busy:
            return None
        self._forget_loaded()
        handle = self._submit(jobs.restart_job(self.engine_provider), "Restarting the image engine", "load")
        if rec is None:
            return handle
        return self._submit_load(rec)  # queued behind the restart (jobs run in order), not cancelling it

    def unload(self) -> JobHandle | None:
        """Free the image model's memory (Resources › Unload); the next generation loads it again."""
        if self._shut or self.busy:
            return None
        self._forget_loaded()
        return self._submit(jobs.unload_job(self.engine_provider, self.ctx.broker), "Unloading the image model", "load")

    def postprocess(self, op: str, source: Path, params: dict | None, rec, out: Path) -> JobHandle | None:
        from desktop_app.ui.studio.postprocess import OPERATIONS, postprocess_job

        if self._shut or self.post_busy:
            return None
        self._job_error = False
        job = postprocess_job(op, source, out, rec.path, rec.id, params, self.engine_provider,
                              allow_pickle=bool(self.ctx.settings.get("allow_pickle")))
        self._post_op = op
        return self._submit(job, OPERATIONS[op][1], "post")

    def cancel(self) -> str | None:
        """Cancel the generation, else the post-processing; which one was cancelled."""
        if self.gen_job is not None:
            self.thread.cancel(self.gen_job)
            return "gen"
        if self.post_job is not None:
            self.thread.cancel(self.post_job)
            return "post"
        return None

    # ------------------------------------------------------------------ what the jobs hand over
    def _on_item(self, item, kind: str) -> None:
        if self._shut:
            return
        if isinstance(item, E.Progress):
            (self.post_progress if kind == "post" else self.progress).emit(item)
        elif isinstance(item, E.Preview):
            self.preview.emit(item)
        elif isinstance(item, E.Result):
            self._results += 1
            self.result.emit(item, self._post_op if kind == "post" else "generate")
        elif isinstance(item, E.Loaded):
            self._on_loaded(item.data)
        elif isinstance(item, E.Notice):
            if kind != "post":
                self.ctx.status_message.emit(item.message)
            if item.message:
                self.status.emit(item.message)
        elif isinstance(item, E.Status):
            self.status.emit(item.text)
        elif isinstance(item, E.EngineError):
            self._engine_error(item.kind, item.message)
        elif isinstance(item, Moves):
            self.ctx.apply_moves(item)  # the broker's moves of the other models; the job waits for them

    def _on_loaded(self, data: dict) -> None:
        self.loaded_path = data.get("model")
        rec = next((r for r in self.records.values() if str(r.path) == str(data.get("model"))), None)
        name = rec.display_name if rec else Path(str(data.get("model", ""))).name
        where = "remote server" if data.get("remote") else f"{data.get('device', 'cpu')}, {data.get('dtype', '')}"
        self.ctx.set_loaded("image", f"{name} ({where})", data.get("pid"))
        self.loaded.emit({**data, "name": name})

    def _on_engine_taken(self, data: dict) -> None:
        """The local server loaded another model on this engine for a client: what is loaded (for
        the broker's moves) and the footer follow; the next Generate loads the Studio's own again."""
        if self._shut or str(data.get("model")) == str(self.loaded_path):
            return
        self.loaded_path, self.loaded_native = data.get("model"), None
        self.status.emit(f"The local server loaded {data.get('name', 'another model')} for a client; "
                         "Generate loads this tab's model again.")

    def _forget_loaded(self) -> None:
        self.ctx.broker.unloaded("image")
        self.ctx.set_loaded("image", None)
        self.loaded_path = None
        self.loaded_native = None

    def _engine_error(self, kind: str, message: str) -> None:
        self._job_error = True
        if kind in ("crashed", "oom"):
            self._forget_loaded()
        self.engine_error.emit(kind, message)

    def _on_ended(self, kind: str, outcome) -> None:
        """``outcome``: None (the job ran to its end), "cancelled", or the exception it raised."""
        setattr(self, JOB_ATTR[kind], None)
        if outcome is not None and outcome != "cancelled":
            self._engine_error("internal", str(outcome) or type(outcome).__name__)
        if kind == "load":
            self.load_ended.emit("cancelled" if outcome == "cancelled" else "done" if outcome is None else "failed")
            return
        if outcome == "cancelled":
            reason = "cancelled"
        elif outcome is None and not self._job_error and (self._results or kind == "post"):
            reason = "done"
        else:
            reason = "error"
        if kind == "gen":
            self.generation_ended.emit(reason, self._results)
            self.ctx.poke_idle()
        else:
            self.post_ended.emit(reason)
