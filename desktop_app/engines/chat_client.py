"""The chat engine in a child process, with the same API as :class:`~desktop_app.engines.chat.ChatEngine`.

Never imports llama_cpp: the model, its memory and everything that can abort the process
(``GGML_ASSERT`` on a malformed GGUF, a driver fault) live in the child
(:mod:`desktop_app.engines.chat_server`). The app, the CLI and the benches use this class::

    engine = ChatEngineProcess()
    engine.load(LoadConfig.for_model(path), token, on_progress=...)    # or load_steps()
    for ev in engine.chat(messages, params, token): ...                 # ChatEvents, as ChatEngine
    engine.unload()                                                     # the child exits

When the child dies, ``chat``/``load`` raise :class:`EngineCrashed` ("the model crashed the engine:
..." with the last line of its log), after the events it had already sent; the next ``chat``
starts a fresh child and loads the same model again. Cancel ends within one token; a child that
does not answer its cancel within ``cancel_grace`` seconds is killed, so stop and close never
wait on a stuck engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from desktop_app.core.errors import AtelierError, Cancelled, ModelFormatError
from desktop_app.engines import wire as P
from desktop_app.engines.audited import Call, admit, chat_events, start_call
from desktop_app.engines.base import CancelToken
from desktop_app.engines.chat_types import (
    ChatEvent, ChatStats, ContextOverflow, LoadConfig, SamplingParams, Truncation, final_stats,
)
from desktop_app.engines.host import EngineHost


class EngineCrashed(AtelierError):
    """The engine's child process died (the app did not)."""


def _from_fields(cls, d: dict):
    names = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in (d or {}).items() if k in names})


class ChatEngineProcess(EngineHost):
    server_module = "desktop_app.engines.chat_server"
    label = "chat engine"
    log_name = "chat-engine.log"
    restart_hint = "Your next message restarts it and loads the model again"
    cancel_grace = 2.0
    stop_timeout = 2.0  # closing the app never waits longer than this on the child

    def __init__(self, config: LoadConfig | dict | None = None, env: dict[str, str] | None = None,
                 start_timeout: float = 120.0, log_path: str | Path | None = None) -> None:
        super().__init__(env=env, start_timeout=start_timeout, log_path=log_path)
        self.config: LoadConfig | None = LoadConfig.from_dict(config) if isinstance(config, dict) else config
        self._info: dict = {}
        self._want_loaded = False  # a model was loaded and not unloaded: restart it after a crash
        self._sha256 = ""  # the model's digest (policy and audit; engines/audited.py)
        self.restarts = 0

    def start(self) -> None:
        """Spawn the child, telling it which CPU variant of llama.cpp to load (a build with
        variants only; core/cpu_variants: chosen once per CPU and build, probed in a child)."""
        if not self.alive and "ATELIER_GGML_CPU_VARIANT" not in self.extra_env:
            from desktop_app.core.cpu_variants import ENV, chosen

            variant = chosen()
            if variant:
                self.extra_env[ENV] = variant
        super().start()

    # -- state --------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return bool(self._info) and self.alive

    @property
    def n_ctx(self) -> int:
        return int(self._info.get("n_ctx") or 0) if self.loaded else 0

    @property
    def template_fallback(self) -> bool:
        return bool(self._info.get("template_fallback"))

    def info(self) -> dict:
        c = self.config
        base = {"loaded": False, "model_path": c.model_path if c else None, "model_id": c.model_id if c else None,
                "n_ctx": 0, "n_gpu_layers": c.n_gpu_layers if c else 0, "plan": c.plan if c else None,
                "plan_note": c.plan_note if c else "", "template_fallback": False, "template": "gguf"}
        if self.loaded:
            base.update(self._info, loaded=True)
        base["engine_pid"] = self.pid if self.alive else None
        return base

    # -- events -> results ----------------------------------------------------------------------
    def _raise_for(self, ev, loading: bool = False) -> None:
        """Turn a terminal ``error``/``cancelled`` event into the exception ChatEngine would raise."""
        if ev.type == P.CANCELLED:
            if ev.get("killed"):
                self._info = {}
            raise Cancelled()
        kind, msg = ev.get("kind"), ev.get("message") or "unknown error"
        if kind == "crashed":
            self._info = {}
            if loading:
                self._want_loaded = False  # it would crash again on every message
                raise EngineCrashed("The model crashed the chat engine while loading, so this file cannot be used "
                                    "(is it damaged, or made for another llama.cpp?). "
                                    + self._crash_message(self._exit_code, hint=""))
            raise EngineCrashed(f"The model crashed the chat engine: {msg}")
        if kind == "context_overflow":
            exc = ContextOverflow(int(ev.get("prompt_tokens") or 0), int(ev.get("n_ctx") or 0),
                                  int(ev.get("budget") or 0))
            exc.args = (msg,)
            raise exc
        if kind == "model_format":
            raise ModelFormatError(msg)
        if kind == "invalid_request":
            raise AtelierError(msg)
        raise AtelierError(f"The chat engine failed: {msg}")

    # -- loading --------------------------------------------------------------------------------
    def load_steps(self, config: LoadConfig | dict | None = None, token: CancelToken | None = None) -> Iterator[float]:
        """Load (in the child) as a generator of progress fractions, ending with 1.0. Raises
        Cancelled, ModelFormatError, EngineCrashed."""
        if config is not None:
            self.config = LoadConfig.from_dict(config) if isinstance(config, dict) else config
        if self.config is None:
            raise AtelierError("No model to load: pass a LoadConfig.")
        path = Path(self.config.model_path)
        if not path.is_file():
            raise ModelFormatError(f"Model file not found: {path}. Check the path or re-download the model.")
        self._sha256 = admit(path, self.config.model_id or "", "", token)  # NotApproved before any load
        self._info = {}
        self._want_loaded = True
        for ev in self._job({"op": "load", "config": self.config.to_dict()}, {}, token):
            if ev.type == "load_progress":
                yield float(ev.get("fraction") or 0.0)
            elif ev.type == "loaded":
                self._info = dict(ev.get("info") or {})
            elif ev.type in (P.ERROR, P.CANCELLED):
                self._want_loaded = False  # a model that failed to load is not retried by itself
                self._raise_for(ev, loading=True)
        if not self._info:
            raise EngineCrashed("The chat engine ended the load without a model.")

    def load(self, config: LoadConfig | dict | None = None, token: CancelToken | None = None,
             on_progress: Callable[[float], None] | None = None) -> None:
        for frac in self.load_steps(config, token):
            if on_progress is not None:
                on_progress(frac)

    def _ensure_loaded(self, token: CancelToken | None) -> None:
        """After a crash (or a killed stuck job), start a fresh child and load the same model."""
        if self.loaded:
            return
        if not (self._want_loaded and self.config is not None):
            raise AtelierError("No chat model is loaded.")
        self.restarts += 1
        for _ in self.load_steps(None, token):
            pass

    def unload(self) -> None:
        """Free the model: the child exits, and with it every byte the model used."""
        self._want_loaded = False
        self._info = {}
        self.stop(self.stop_timeout)

    close = unload

    def __enter__(self) -> "ChatEngineProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.unload()

    # -- tokens ---------------------------------------------------------------------------------
    def context_usage(self, messages: list[dict]) -> tuple[int, int]:
        self._ensure_loaded(None)
        for ev in self._job({"op": "context_usage", "messages": messages}, {}, None):
            if ev.type == P.DONE:
                return int(ev.get("prompt_tokens") or 0), int(ev.get("n_ctx") or 0)
            if ev.type in (P.ERROR, P.CANCELLED):
                self._raise_for(ev)
        raise EngineCrashed("The chat engine gave no answer.")

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(a vector per text, tokens read) from the loaded model (engines/chat_embed.py)."""
        self._ensure_loaded(None)
        call = self._call("embed", {}, list(texts))
        try:
            for ev in self._job({"op": "embed", "texts": list(texts)}, {}, None):
                if ev.type == P.DONE:
                    vectors, n = list(ev.get("vectors") or []), int(ev.get("prompt_tokens") or 0)
                    call.end("done", {"vectors": len(vectors)}, {"prompt_tokens": n})
                    return vectors, n
                if ev.type in (P.ERROR, P.CANCELLED):
                    self._raise_for(ev)
            raise EngineCrashed("The chat engine gave no answer.")
        except BaseException as exc:
            call.end("error", None, {}, {"error": str(exc)[:500]})
            raise

    def _call(self, kind: str, params: dict, prompt) -> Call:
        """The audit record of one call (the policy is checked again: it may have changed since the load)."""
        c = self.config  # set: _ensure_loaded raised before a call without a model
        call = start_call(kind, c.model_path, params, prompt, model_id=c.model_id or "", sha256=self._sha256)
        self._sha256 = call.model_sha256
        return call

    # -- generation -----------------------------------------------------------------------------
    def chat(self, messages: list[dict], params: SamplingParams | dict | None = None,
             token: CancelToken | None = None, overflow: str = "truncate_oldest",
             raw_prompt: str | None = None, purpose: str = "chat") -> Iterator[ChatEvent]:
        """Stream a reply as ChatEvents (as ChatEngine.chat). A crash mid-reply raises
        EngineCrashed after the text already streamed. ``raw_prompt``: complete this text
        instead, with no chat template (engines/chat_raw.py). ``purpose``: the audit record's
        kind (chat, enhance)."""
        params = SamplingParams.from_dict(params) if isinstance(params, dict) else (params or SamplingParams())
        token = token or CancelToken()
        self._ensure_loaded(token)
        call = self._call(purpose, params.to_dict(), raw_prompt if raw_prompt is not None else messages)
        yield from chat_events(call, self._reply(messages, params, token, overflow, raw_prompt))

    def _reply(self, messages, params: SamplingParams, token: CancelToken, overflow: str,
               raw_prompt: str | None) -> Iterator[ChatEvent]:
        header = {"op": "chat", "messages": messages, "params": params.to_dict(), "overflow": overflow}
        if raw_prompt is not None:
            header["raw_prompt"] = raw_prompt
        for ev in self._job(header, {}, token):
            if ev.type == "chat":
                yield ChatEvent(str(ev.get("kind")), str(ev.get("text") or ""))
            elif ev.type == "truncated":
                yield ChatEvent("truncated", truncation=_from_fields(Truncation, ev.get("truncation")))
            elif ev.type == P.DONE:
                yield ChatEvent("done", stats=_from_fields(ChatStats, ev.get("stats")))
            elif ev.type == P.CANCELLED:  # stopped before its "done" (or killed when stuck): the
                if ev.get("killed"):         # caller keeps the text it has; a killed child restarts
                    self._info = {}          # with the next message
                return
            elif ev.type == P.ERROR:
                self._raise_for(ev)

    def complete(self, messages: list[dict], params: SamplingParams | dict | None = None,
                 token: CancelToken | None = None, overflow: str = "truncate_oldest") -> ChatStats:
        return final_stats(self.chat(messages, params, token, overflow))


__all__ = ["ChatEngineProcess", "EngineCrashed"]
