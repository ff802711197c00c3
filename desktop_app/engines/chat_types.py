"""The chat engine's settings, events and the one fold of a reply's events (Qt-free, and free of
llama_cpp): :mod:`desktop_app.engines.chat` (in the engine's child), its client
:mod:`desktop_app.engines.chat_client`, the GUI job and the CLI all use these."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from desktop_app.core.errors import AtelierError, Cancelled
from desktop_app.engines.think import ANSWER, RECLASSIFY, THINKING

log = logging.getLogger("desktop_app.engines.chat")


OVERFLOW_POLICIES = ("truncate_oldest", "stop")
DEFAULT_N_CTX = 2048

# Used when a GGUF carries no tokenizer.chat_template: ChatML, the most widely trained format.
FALLBACK_TEMPLATE_NAME = "chatml"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_STOP = "<|im_end|>"


class ContextOverflow(AtelierError):
    """The conversation does not fit the model's context and the policy is ``stop``."""

    def __init__(self, prompt_tokens: int, n_ctx: int, budget: int, what: str = "The conversation") -> None:
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.budget = budget
        super().__init__(
            f"{what} is {prompt_tokens} tokens long and no longer fits the model's context of {n_ctx} "
            f"tokens ({n_ctx - budget} are kept for the reply). Start a new chat, shorten the message, "
            "load the model with a larger context, or let Atelier drop the oldest messages."
        )


# ---------------------------------------------------------------------------- configuration
@dataclass
class LoadConfig:
    """How to load a GGUF. Build it from the fitter's plan with ``LoadConfig.for_model(path)``."""

    model_path: str
    n_gpu_layers: int = 0
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None  # None/0: auto, one per physical core (core/cpu_threads.py)
    n_threads_batch: int | None = None  # the prompt batch; None/0: auto, as n_threads
    n_batch: int = 512
    flash_attn: str = "auto"  # auto (cpu_threads.flash_attn_request) | on | off
    kv_type: str = "f16"  # the KV cache's type: f16 | q8_0 | q4_0 (quantized needs flash attention)
    adaptive_threads: bool = True  # fewer decode threads while another process holds a core
    prompt_lookup: bool = False  # prompt-lookup decoding (drafts from the prompt: code, edits)
    tensor_split: list[float] = field(default_factory=list)  # each GPU's share (the fitter's, several GPUs)
    use_mmap: bool = True
    model_id: str | None = None
    plan: str | None = None  # the fitter's verdict: gpu / partial / cpu / too_large (for the UI)
    plan_note: str = ""  # e.g. "CPU only: no usable GPU" — show it, never fall back silently

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """A clear one-line error for an engine option llama.cpp would refuse or misread."""
        from desktop_app.core.cpu_threads import FLASH_ATTN_MODES, KV_TYPES

        if self.flash_attn not in FLASH_ATTN_MODES:
            raise AtelierError(f"Flash attention must be one of {', '.join(FLASH_ATTN_MODES)}, not {self.flash_attn!r}.")
        if self.kv_type not in KV_TYPES:
            raise AtelierError(f"The KV cache type must be one of {', '.join(KV_TYPES)}, not {self.kv_type!r}.")
        if self.kv_type != "f16" and self.flash_attn == "off":
            raise AtelierError(f"A {self.kv_type} KV cache needs flash attention: set it to auto or on, "
                               "or use an f16 KV cache.")
        for name in ("n_threads", "n_threads_batch"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 0 <= v <= 512):
                raise AtelierError(f"{name} must be 0 (auto) or a thread count up to 512, not {v!r}.")

    @classmethod
    def from_dict(cls, d: dict) -> "LoadConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_plan(cls, model_path: str | Path, plan: Any, **overrides: Any) -> "LoadConfig":
        """From a ``desktop_app.core.fitting.LlmPlan`` (or anything with ``n_gpu_layers``,
        ``n_ctx`` and optionally ``plan``/``badge``/``note``), or a dict with those keys."""
        get = (lambda k, d=None: plan.get(k, d)) if isinstance(plan, dict) else (lambda k, d=None: getattr(plan, k, d))
        verdict = get("plan")
        if verdict == "too_large":
            raise AtelierError(
                f"{Path(model_path).name} does not fit this machine's memory "
                f"({get('badge') or 'too large'}). Choose a smaller quantization or a smaller model."
            )
        note = get("note") or get("reason") or ""
        if not note and verdict == "cpu":
            note = "Running on the CPU only (no usable GPU for this model)."
        elif not note and verdict == "partial":
            note = f"Partial GPU offload: {get('n_gpu_layers')} of {get('n_layers')} layers on the GPU."
        cfg = cls(
            model_path=str(model_path),
            n_gpu_layers=int(get("n_gpu_layers") or 0),
            n_ctx=int(get("n_ctx") or DEFAULT_N_CTX),
            tensor_split=list(get("tensor_split") or []),
            plan=verdict,
            plan_note=str(note),
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg

    @classmethod
    def for_model(cls, model_path: str | Path, n_ctx: int | None = None, hw: Any = None, settings: Any = None,
                  **overrides: Any) -> "LoadConfig":
        """The fitter's plan for this machine (``n_ctx`` overrides the context) with the engine
        options of ``settings`` (a Settings or dict; None: the user's settings file). A malformed
        file raises its ModelFormatError; a fitter bug loads safely on the CPU instead of stopping
        the chat."""
        from desktop_app.core import fitting
        from desktop_app.core.cpu_threads import flash_attn_request

        overrides = {**engine_options(settings), **{k: v for k, v in overrides.items() if v is not None}}
        fa, kv = overrides.get("flash_attn", "auto"), overrides.get("kv_type", "f16")
        try:
            def plan_with(flash: bool):
                return fitting.plan_llm(Path(model_path), hw, n_ctx=n_ctx, kv_type=kv, flash_attn=flash,
                                        threads=overrides.get("n_threads") or None,
                                        prompt_lookup=bool(overrides.get("prompt_lookup")))

            plan = plan_with(fa != "off")
            if flash_attn_request(fa, plan.n_gpu_layers, kv) == "off" and plan.flash_attn:
                plan = plan_with(False)  # auto on a CPU-only load: planned as it will run
        except AtelierError:
            raise  # a malformed file: say so
        except Exception:  # noqa: BLE001 - a fitter bug must not stop the chat
            log.exception("fitting failed; loading on the CPU with the default context")
            cfg = cls(model_path=str(model_path), n_gpu_layers=0, n_ctx=n_ctx or DEFAULT_N_CTX, plan="cpu",
                      plan_note="The fitter failed (see the log): CPU only.")
            for k, v in overrides.items():
                if v is not None:
                    setattr(cfg, k, v)
            return cfg
        return cls.from_plan(model_path, plan, **overrides)


ENGINE_SETTINGS = {  # settings key -> LoadConfig field (core/settings.py describes them)
    "chat_threads": "n_threads", "chat_batch_threads": "n_threads_batch", "chat_flash_attn": "flash_attn",
    "chat_kv_cache": "kv_type", "chat_adaptive_threads": "adaptive_threads", "chat_prompt_lookup": "prompt_lookup",
}


def engine_options(settings: Any = None) -> dict:
    """The chat engine options the user chose (Settings, a dict, or None: the settings file)."""
    if settings is None:
        from desktop_app.core.settings import Settings

        settings = Settings()
    get = settings.get
    out = {}
    for key, name in ENGINE_SETTINGS.items():
        v = get(key)
        if v is not None:
            out[name] = v
    return out


@dataclass
class SamplingParams:
    """Sampling settings for one reply; ``to_dict``/``from_dict`` for presets and history."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512  # <= 0: until the context is full
    seed: int | None = None  # None: random each reply (and the KV cache of earlier turns is reused);
    # a fixed seed gives a reproducible reply: the engine re-evaluates the whole prompt for it
    stop: list[str] = field(default_factory=list)
    json_schema: dict | None = None  # the reply must be JSON matching it (a llama.cpp grammar)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "SamplingParams":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in (d or {}).items() if k in names and v is not None}
        if "stop" in d:
            d["stop"] = [d["stop"]] if isinstance(d["stop"], str) else list(d["stop"])
        return cls(**d)

    def llama_kwargs(self) -> dict:
        kw = dict(
            temperature=float(self.temperature),
            top_p=float(self.top_p),
            top_k=int(self.top_k),
            min_p=float(self.min_p),
            repeat_penalty=float(self.repeat_penalty),
            max_tokens=int(self.max_tokens) if self.max_tokens and self.max_tokens > 0 else None,
            stop=list(self.stop) or None,
        )
        if self.seed is not None:
            kw["seed"] = int(self.seed)
        if self.json_schema is not None:
            kw["json_schema"] = self.json_schema
        return kw


SCHEMA_ERROR = "The JSON schema cannot be used"  # the start of the message when a schema is refused


# ---------------------------------------------------------------------------- events
@dataclass
class Truncation:
    """What the overflow policy removed so the turn fits."""

    dropped_messages: int = 0
    dropped_indices: list[int] = field(default_factory=list)  # indices into the messages passed to chat()
    truncated_index: int | None = None  # a message that was shortened itself
    removed_chars: int = 0
    prompt_tokens_before: int = 0
    prompt_tokens_after: int = 0
    n_ctx: int = 0

    @property
    def notice(self) -> str:
        parts = []
        if self.dropped_messages:
            s = "s" if self.dropped_messages != 1 else ""
            parts.append(f"the {self.dropped_messages} oldest message{s} were left out")
        if self.truncated_index is not None:
            parts.append(f"a message was shortened by {self.removed_chars:,} characters")
        return (
            f"The conversation ({self.prompt_tokens_before:,} tokens) does not fit the model's context of "
            f"{self.n_ctx:,} tokens with room for the reply: " + " and ".join(parts) + "."
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notice"] = self.notice
        return d


@dataclass
class ChatStats:
    tokens: int = 0  # generated tokens
    prompt_tokens: int = 0
    ttft_s: float | None = None  # call -> first text token
    tokens_per_s: float | None = None  # decode rate after the first token
    total_s: float = 0.0
    context_used: int = 0  # prompt + generated tokens
    n_ctx: int = 0
    finish_reason: str = "stop"  # stop | length | cancelled
    thinking_s: float | None = None
    text: str = ""  # the answer (thinking excluded)
    thinking: str = ""
    truncation: dict | None = None
    template_fallback: bool = False
    template_error: str = ""
    threads: list | None = None  # adaptive threads: [token index, decode threads] at each change

    def to_dict(self, with_text: bool = False) -> dict:
        d = asdict(self)
        if not with_text:
            d.pop("text")
            d.pop("thinking")
        return d


@dataclass
class ChatEvent:
    """One step of a reply.

    type: ``"answer"`` / ``"thinking"`` (text delta), ``"reclassify"`` (``text`` already sent as
    answer is really thinking: move it), ``"truncated"`` (``truncation`` says what the overflow
    policy removed; comes first), ``"done"`` (``stats``; always the last event).
    """

    type: str
    text: str = ""
    truncation: Truncation | None = None
    stats: ChatStats | None = None


@dataclass
class Reply:
    """Folds a reply's events into its texts, e.g. to save a streaming reply to the history::

        reply = Reply()
        for ev in engine.chat(...):
            reply.add(ev)
            store.update_message(msg_id, reply.answer, reply.thinking)   # throttled by the store
        store.finish_message(msg_id, reply.answer, reply.thinking, reply.stats.to_dict())
    """

    answer: str = ""
    thinking: str = ""
    truncation: Truncation | None = None
    stats: ChatStats | None = None

    def add(self, ev: ChatEvent) -> None:
        if ev.type == ANSWER:
            self.answer += ev.text
        elif ev.type == THINKING:
            self.thinking += ev.text
        elif ev.type == RECLASSIFY:
            # the event carries all of the text that was really thought (what was shown as answer
            # so far, plus what the parser held back): see desktop_app.engines.think
            self.thinking += ev.text
            self.answer = ""
        elif ev.type == "truncated":
            self.truncation = ev.truncation
        elif ev.type == "done":
            self.stats = ev.stats
            self.answer, self.thinking = ev.stats.text, ev.stats.thinking

    @property
    def done(self) -> bool:
        return self.stats is not None


def final_stats(events: Iterator[ChatEvent]) -> ChatStats:
    """Drive a reply's events to the end; its ``done`` stats (Cancelled when it ended without one)."""
    stats = None
    for ev in events:
        if ev.type == "done":
            stats = ev.stats
    if stats is None:
        raise Cancelled()
    return stats
