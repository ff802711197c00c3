"""The chat engine: a GGUF model in llama.cpp (llama-cpp-python), streaming replies as events.

Qt-free. The Qt layer runs one ``ChatEngine`` per loaded model in that model's QThread and
forwards the events through queued signals. Typical use::

    engine = ChatEngine()
    engine.load(LoadConfig.for_model(path), token, on_progress=lambda f: ...)   # or load_steps()
    for ev in engine.chat(messages, SamplingParams(temperature=0.7), token):
        if ev.type == "answer":      show(ev.text)             # answer text delta
        elif ev.type == "thinking":  show_thought(ev.text)     # <think> text delta
        elif ev.type == "reclassify": move_answer_to_thought(ev.text)
        elif ev.type == "truncated": notice(ev.truncation.notice)   # before any text
        elif ev.type == "done":      stats = ev.stats              # always last
    engine.unload()

``messages`` are OpenAI-format dicts (``role`` in system/user/assistant, ``content``);
``<think>`` blocks inside assistant messages are removed before they are fed back.

Cancel: ``token.cancel()`` from any thread; the generator checks it before pulling each token
from llama.cpp, so it stops within one token and ends with a ``done`` event whose
``finish_reason`` is ``"cancelled"``. The engine stays usable. Leaving the iterator early
(``close()`` / ``break``) is also safe.

Context overflow (counted with the model's own template and tokenizer before each turn):
``overflow="truncate_oldest"`` (default) keeps the system prompt and the latest turns and drops
the oldest, and shortens a single message that alone is too long (head and tail kept, a notice
in the middle); ``overflow="stop"`` raises ``ContextOverflow`` for the UI to ask the user. A
prompt longer than the context never reaches llama.cpp.

Load cancel: llama-cpp-python does not expose llama.cpp's ``progress_callback``; we attach one
for the loading thread only (see ``_progress_hook``), which gives progress fractions while the
weights load and aborts the load when the token is cancelled (returning False, as llama.cpp
documents). Context creation after the weights (KV cache allocation) is short and is checked
right after.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from desktop_app.core.errors import AtelierError, Cancelled, ModelFormatError
from desktop_app.engines.base import CancelToken
from desktop_app.engines.chat_stream import stream_reply
from desktop_app.engines.chat_template import TemplateLimitError, bounded_formatter, library_templates_deferred
from desktop_app.engines.think import ANSWER, RECLASSIFY, THINKING, ThinkParser, strip_thinking

log = logging.getLogger(__name__)

# The settings, events and their fold live in chat_types (the engine's child and its client share them).
from desktop_app.engines.chat_types import (  # noqa: E402,F401 - public names of this module too
    CHATML_STOP, CHATML_TEMPLATE, DEFAULT_N_CTX, FALLBACK_TEMPLATE_NAME, OVERFLOW_POLICIES, ChatEvent, ChatStats,
    ContextOverflow, LoadConfig, Reply, SamplingParams, Truncation, final_stats,
)


# ---------------------------------------------------------------------------- helpers
_load_lock = threading.Lock()


@contextlib.contextmanager
def _progress_hook(callback: Callable[[float], bool]):
    """Attach ``callback`` as llama.cpp's model-load progress callback, for this thread only.

    llama-cpp-python builds ``llama_model_params`` inside ``Llama.__init__`` from
    ``llama_cpp.llama_cpp.llama_model_default_params()`` without a way to pass a callback. We wrap
    that function during our load; other threads calling it meanwhile get the plain defaults.
    """
    import llama_cpp.llama_cpp as C

    tid = threading.get_ident()

    def _cb(progress: float, _user_data) -> bool:
        try:
            return bool(callback(float(progress)))
        except Exception:  # an exception here must not abort the load by accident
            log.exception("load progress callback failed")
            return True

    c_cb = C.llama_progress_callback(_cb)
    with _load_lock:
        orig = C.llama_model_default_params

        def patched():
            params = orig()
            if threading.get_ident() == tid:
                params.progress_callback = c_cb
            return params

        C.llama_model_default_params = patched
        try:
            yield
        finally:
            C.llama_model_default_params = orig


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise; RSS would not drop)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _clean_messages(messages: list[dict]) -> list[dict]:
    out = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("system", "user", "assistant"):
            raise AtelierError(f"Message {i} has role {role!r}; use system, user or assistant.")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise AtelierError(f"Message {i} content must be text.")
        if role == "assistant":
            content = strip_thinking(content)  # the thought is never fed back
        out.append({"role": role, "content": content})
    return out


# ---------------------------------------------------------------------------- the engine
class ChatEngine:
    """A loaded GGUF chat model. Not re-entrant: one reply at a time (a second concurrent
    ``chat`` raises AtelierError). Construct, ``load``, ``chat`` …, ``unload``."""

    def __init__(self, config: LoadConfig | dict | None = None) -> None:
        self.config: LoadConfig | None = LoadConfig.from_dict(config) if isinstance(config, dict) else config
        self.llm = None
        self.template_fallback = False
        self.template_error = ""  # why the file's template is not used (it hit a time or size limit)
        self.chat_template: str | None = None
        self._formatter = None
        self._last_prompt = ""
        self._busy = threading.Lock()
        self.native: dict = {}  # the engine options llama.cpp really uses (threads, flash attention…)
        self.governor = None  # adaptive decode threads (thread_governor.py), CPU loads only

    # ------------------------------------------------------------------ loading
    @property
    def loaded(self) -> bool:
        return self.llm is not None

    @property
    def n_ctx(self) -> int:
        return self.llm.n_ctx() if self.llm is not None else 0

    def info(self) -> dict:
        c = self.config
        return {
            "loaded": self.loaded,
            "model_path": c.model_path if c else None,
            "model_id": c.model_id if c else None,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": c.n_gpu_layers if c else 0,
            "plan": c.plan if c else None,
            "plan_note": c.plan_note if c else "",
            "template_fallback": self.template_fallback,
            "template": "gguf" if not self.template_fallback else FALLBACK_TEMPLATE_NAME,
            "template_error": self.template_error,
            **(self.native if self.llm is not None else {}),
            "memory": self.memory() if self.llm is not None else {},
        }

    def memory(self) -> dict:
        """What this process holds: llama.cpp's model buffers and the process's resident bytes
        (the memory broker counts a loaded model at this, not at its estimate)."""
        from desktop_app.core.usage import own_rss

        out = {"rss_bytes": own_rss()}
        try:
            import llama_cpp

            out["model_bytes"] = int(llama_cpp.llama_model_size(self.llm._model.model))
        except Exception:  # noqa: BLE001 - an older binding: the RSS alone
            pass
        return out

    def load(
        self,
        config: LoadConfig | dict | None = None,
        token: CancelToken | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        """Load the model (blocking; call it in the model's thread). ``on_progress(fraction)`` is
        called from this thread while the weights load. Raises ``Cancelled`` when ``token`` is
        cancelled (the partial load is freed), ``ModelFormatError`` for a bad file."""
        if config is not None:
            self.config = LoadConfig.from_dict(config) if isinstance(config, dict) else config
        if self.config is None:
            raise AtelierError("No model to load: pass a LoadConfig.")
        token = token or CancelToken()
        if self.llm is not None:
            self.unload()
        cfg = self.config
        path = Path(cfg.model_path)
        if not path.is_file():
            raise ModelFormatError(f"Model file not found: {path}. Check the path or re-download the model.")
        token.raise_if_cancelled()

        from llama_cpp import Llama  # heavy import: only in the model's thread

        def progress(frac: float) -> bool:
            if on_progress is not None:
                on_progress(frac)
            return not token.cancelled

        from desktop_app.engines import chat_native

        cfg.validate()
        kwargs: dict[str, Any] = dict(
            n_gpu_layers=int(cfg.n_gpu_layers),
            n_ctx=int(cfg.n_ctx),
            n_batch=int(cfg.n_batch),
            use_mmap=bool(cfg.use_mmap),
            verbose=False,
            **chat_native.llama_kwargs(cfg),
        )
        if cfg.tensor_split:
            kwargs["tensor_split"] = list(cfg.tensor_split)
        t0 = time.perf_counter()
        try:
            fa = chat_native.flash_request(cfg)
            with _progress_hook(progress), library_templates_deferred(), \
                    chat_native.native_load(fa) as llama_log:
                llm = Llama(str(path), **kwargs)
        except ValueError as exc:
            gc.collect()
            if token.cancelled:
                raise Cancelled("Model loading cancelled") from None
            raise ModelFormatError(
                f"llama.cpp could not load {path.name} ({exc}). The file may be incomplete or of an "
                "architecture this llama.cpp build does not support: re-download it or update Atelier."
            ) from None
        if token.cancelled:  # cancelled during context creation
            llm.close()
            del llm
            gc.collect()
            _malloc_trim()
            raise Cancelled("Model loading cancelled")
        self.llm = llm
        self.native = {"n_threads": kwargs["n_threads"], "n_threads_batch": kwargs["n_threads_batch"],
                       "flash_attn": chat_native.effective_flash_attn(fa, llama_log, cfg.kv_type),
                       "flash_attn_setting": cfg.flash_attn, "kv_type": cfg.kv_type,
                       "threads_auto": not cfg.n_threads, "adaptive_threads": bool(cfg.adaptive_threads),
                       "prompt_lookup": bool(cfg.prompt_lookup)}
        self.governor = None
        if cfg.adaptive_threads and kwargs["n_threads"] > 1 and not cfg.n_gpu_layers and not cfg.prompt_lookup:
            from desktop_app.engines.thread_governor import ThreadGovernor

            n_batch = kwargs["n_threads_batch"]
            self.governor = ThreadGovernor(kwargs["n_threads"],
                                           lambda n: chat_native.set_threads(llm, n, n_batch))
        self._setup_template()
        if on_progress is not None:
            on_progress(1.0)
        log.info(
            "chat model loaded in %.2f s: %s (n_ctx=%d, n_gpu_layers=%d, template=%s)",
            time.perf_counter() - t0, path.name, self.n_ctx, cfg.n_gpu_layers,
            "fallback-chatml" if self.template_fallback else "gguf",
        )

    def load_steps(self, config: LoadConfig | dict | None = None, token: CancelToken | None = None) -> Iterator[float]:
        """``load`` as a generator of progress fractions (0…1), ending with 1.0 when loaded.
        The load runs in a short-lived helper thread that is always joined before this returns;
        closing the generator early cancels the load."""
        token = token or CancelToken()
        inner = CancelToken()
        q: queue.Queue = queue.Queue()
        box: dict = {}

        def relay_cancel_into(frac: float) -> None:
            q.put(frac)

        def run() -> None:
            try:
                self.load(config, inner, on_progress=relay_cancel_into)
            except BaseException as exc:  # handed to the generator's thread
                box["error"] = exc
            finally:
                q.put(None)

        th = threading.Thread(target=run, name="atelier-chat-load", daemon=True)
        th.start()
        try:
            while True:
                try:
                    item = q.get(timeout=0.05)
                except queue.Empty:
                    if token.cancelled:
                        inner.cancel()
                    continue
                if token.cancelled:
                    inner.cancel()
                if item is None:
                    break
                yield item
        finally:
            if th.is_alive():
                inner.cancel()
            th.join()
        if "error" in box:
            raise box["error"]

    def _setup_template(self) -> None:
        llm = self.llm
        eos_id = llm.token_eos()
        bos_id = llm.token_bos()
        self._eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        self._bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        self._stop_ids = [eos_id] if eos_id != -1 else None
        self.template_error = ""
        tmpl = llm.metadata.get("tokenizer.chat_template")
        if not tmpl:
            log.warning("model has no chat template in its GGUF metadata; using the ChatML fallback")
            self._use_fallback("")
            return
        try:
            self._formatter = bounded_formatter(tmpl, self._eos, self._bos, self._stop_ids)
            # a first render under the limits: a template that loops or explodes is never used
            self._formatter(messages=[{"role": "user", "content": "Hello"}])
        except TemplateLimitError as exc:
            self._use_fallback(str(exc))
            return
        except Exception:  # noqa: BLE001 - raise_exception() etc.: judged on the real conversation
            pass
        self.template_fallback = False
        self.chat_template = tmpl
        # Our formatter renders for create_chat_completion too: exactly what we count tokens with,
        # under the same limits (the library's own would render the file's template unbounded).
        llm.chat_handler = self._formatter.to_chat_handler()

    def _use_fallback(self, reason: str) -> None:
        """Stop using the file's template (none, or it hit a limit): ChatML from now on."""
        if reason:
            log.warning("the model's chat template is not used: %s", reason)
            self.template_error = (f"{reason}. Atelier does not use this model's chat template and formats the "
                                   "conversation as ChatML instead, which may not match how the model was trained.")
        self.template_fallback = True
        self.chat_template = CHATML_TEMPLATE
        self._formatter = bounded_formatter(CHATML_TEMPLATE, CHATML_STOP, self._bos, self._stop_ids)
        self.llm.chat_handler = self._formatter.to_chat_handler()

    def unload(self) -> None:
        """Free the model, its context and KV cache; memory goes back to the OS."""
        from desktop_app.engines.chat_embed import drop

        drop(self)  # the embedding context, if the server asked for one
        llm, self.llm = self.llm, None
        self._formatter = None
        if llm is not None:
            # Never free under a running generation: stop it (token) and let its generator end first.
            if not self._busy.acquire(timeout=10):
                self.llm = llm
                raise AtelierError("The model is still answering: stop the reply before unloading.")
            try:
                llm.close()
                del llm
            finally:
                self._busy.release()
        gc.collect()
        _malloc_trim()

    close = unload

    def __enter__(self) -> "ChatEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.unload()

    # ------------------------------------------------------------------ token counting
    def _require(self):
        if self.llm is None:
            raise AtelierError("No chat model is loaded.")
        return self.llm

    def render(self, messages: list[dict]) -> str:
        """The prompt text the model sees for these messages (template + generation prompt)."""
        self._require()
        try:
            self._last_formatted = self._formatter(messages=messages)
        except TemplateLimitError as exc:
            if self.template_fallback:
                raise
            self._use_fallback(str(exc))  # this conversation made it loop or explode: never again
            self._last_formatted = self._formatter(messages=messages)
        except Exception as exc:  # jinja2 errors, raise_exception() in templates
            raise AtelierError(f"The model's chat template refused this conversation: {exc}") from None
        return self._last_formatted.prompt

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens for these (already cleaned) messages, as llama.cpp will see them."""
        llm = self._require()
        self._last_prompt = self.render(messages)
        return len(llm.tokenize(self._last_prompt.encode("utf-8"), add_bos=False, special=True))

    def context_usage(self, messages: list[dict]) -> tuple[int, int]:
        """(prompt tokens, n_ctx) for a conversation as it would be sent now: for the context meter."""
        return self.count_tokens(_clean_messages(messages)), self.n_ctx

    def reply_reserve(self, params: SamplingParams) -> int:
        """Tokens kept free for the reply when fitting the prompt: max_tokens, at most n_ctx/4."""
        n_ctx = self.n_ctx
        quarter = max(16, n_ctx // 4)
        want = params.max_tokens if params.max_tokens and params.max_tokens > 0 else quarter
        return max(1, min(want, quarter))

    def fit_messages(
        self, messages: list[dict], params: SamplingParams | None = None, overflow: str = "truncate_oldest"
    ) -> tuple[list[dict], Truncation | None, int]:
        """Apply the overflow policy: (messages to send, what was removed or None, prompt tokens)."""
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}")
        params = params or SamplingParams()
        llm = self._require()
        n_ctx = self.n_ctx
        budget = n_ctx - self.reply_reserve(params)
        msgs = _clean_messages(messages)
        if not msgs:
            raise AtelierError("Nothing to answer: the conversation is empty.")
        idx = list(range(len(msgs)))  # original index of each kept message
        trunc = Truncation(n_ctx=n_ctx)
        # A message far larger than any context is cut by characters first, so that 1 MB of
        # pasted text is never tokenized whole again and again (no token is > 16 characters here).
        char_cap = n_ctx * 16
        for i, m in enumerate(msgs):
            if len(m["content"]) > char_cap:
                if overflow == "stop":
                    raise ContextOverflow(self._count_text(m["content"]), n_ctx, budget, what="The message")
                head = m["content"][: char_cap // 2]
                tail = m["content"][-char_cap // 2:]
                trunc.removed_chars += len(m["content"]) - len(head) - len(tail)
                trunc.truncated_index = i
                msgs[i] = {"role": m["role"], "content": head + tail}
        total = self.count_tokens(msgs)
        trunc.prompt_tokens_before = total
        if total <= budget and trunc.truncated_index is None:
            return msgs, None, total
        if total > budget and overflow == "stop":
            raise ContextOverflow(total, n_ctx, budget)
        # Drop the oldest non-system messages (keeping the latest one), a user/assistant turn at a time.
        while total > budget:
            body = [j for j, m in enumerate(msgs) if m["role"] != "system"]
            if len(body) <= 1:
                break
            drop = [body[0]]
            if len(body) > 2 and msgs[body[1]]["role"] == "assistant":
                drop.append(body[1])  # keep the conversation starting with a user turn
            for j in reversed(drop):
                trunc.dropped_indices.append(idx[j])
                del msgs[j]
                del idx[j]
            total = self.count_tokens(msgs)
        trunc.dropped_indices.sort()
        trunc.dropped_messages = len(trunc.dropped_indices)
        if total > budget:
            # One message (with the system prompt) is still too long: shorten the longest one.
            j = max(range(len(msgs)), key=lambda k: len(msgs[k]["content"]))
            for _ in range(6):
                excess = total - budget
                content = msgs[j]["content"]
                toks = llm.tokenize(content.encode("utf-8"), add_bos=False, special=False)
                keep = len(toks) - excess - 24  # room for the notice
                if keep <= 0:
                    raise ContextOverflow(total, n_ctx, budget, what="Even the shortest form of the conversation")
                head_n = (keep * 2) // 3
                tail_n = keep - head_n
                head = llm.detokenize(toks[:head_n]).decode("utf-8", errors="ignore")
                tail = llm.detokenize(toks[len(toks) - tail_n:]).decode("utf-8", errors="ignore") if tail_n else ""
                removed = len(content) - len(head) - len(tail)
                new = f"{head}\n\n[… {removed:,} characters removed to fit the context …]\n\n{tail}"
                trunc.removed_chars += max(0, removed)
                trunc.truncated_index = idx[j]
                msgs[j] = {"role": msgs[j]["role"], "content": new}
                total = self.count_tokens(msgs)
                if total <= budget:
                    break
            else:
                raise ContextOverflow(total, n_ctx, budget)
        trunc.prompt_tokens_after = total
        return msgs, trunc, total

    def _count_text(self, text: str) -> int:
        llm = self._require()
        return len(llm.tokenize(text[: self.n_ctx * 64].encode("utf-8"), add_bos=False, special=False))

    # ------------------------------------------------------------------ generation
    def chat(
        self,
        messages: list[dict],
        params: SamplingParams | dict | None = None,
        token: CancelToken | None = None,
        overflow: str = "truncate_oldest",
        purpose: str = "chat",
    ) -> Iterator[ChatEvent]:
        """Stream a reply to ``messages`` as ChatEvents (see the class doc). Raises
        ``ContextOverflow`` (policy ``stop``) before any event; other failures as AtelierError.
        ``purpose`` is the audit record's kind, as for the child-process client; this in-process
        engine writes no record (it runs inside that client's child, which records the call)."""
        params = SamplingParams.from_dict(params) if isinstance(params, dict) else (params or SamplingParams())
        token = token or CancelToken()
        llm = self._require()
        if not self._busy.acquire(blocking=False):
            raise AtelierError("The model is still answering: stop it first or wait for the reply.")
        stream = None
        try:
            t0 = time.perf_counter()
            msgs, trunc, prompt_tokens = self.fit_messages(messages, params, overflow)
            if trunc is not None:
                log.info("context overflow: dropped %d messages, shortened %s", trunc.dropped_messages,
                         trunc.truncated_index is not None)
                yield ChatEvent("truncated", truncation=trunc)
            # fit_messages rendered exactly these messages last: does the template open a thought?
            starts_thinking = self._last_prompt.rstrip().endswith("<think>")
            parser = ThinkParser(start_in_thinking=starts_thinking)
            stats = ChatStats(prompt_tokens=prompt_tokens, n_ctx=self.n_ctx,
                              truncation=trunc.to_dict() if trunc else None,
                              template_fallback=self.template_fallback, template_error=self.template_error)
            n = 0
            t_first = t_last = None
            finish = None
            if params.seed is not None:
                # A fixed seed promises a reproducible reply. Reusing the KV cache of the previous
                # turn evaluates the prompt in different batches, which changes the logits in the
                # last bits and can flip a greedy choice; so evaluate the whole prompt afresh.
                llm.reset()
            gov = self.governor
            if gov is not None:
                gov.new_reply()
            if not token.cancelled:
                # the lean token loop (chat_stream.py): same prompt, sampling and text as the library's
                stream = stream_reply(llm, self._last_formatted, params.llama_kwargs(), token, self._stop_ids)
            while stream is not None:
                try:
                    text, fin = next(stream)
                except StopIteration:
                    break
                except ValueError as exc:
                    raise AtelierError(f"llama.cpp refused the prompt: {exc}") from None
                if fin is not None:
                    finish = fin
                    break
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                elif gov is not None:
                    gov.token(now - t_last)
                t_last = now
                n += 1
                for kind, seg in parser.feed(text):
                    yield ChatEvent(kind, seg)
            if token.cancelled:
                finish = "cancelled"
            for kind, seg in parser.finish():
                yield ChatEvent(kind, seg)
            t_end = time.perf_counter()
            stats.tokens = n
            stats.ttft_s = (t_first - t0) if t_first is not None else None
            stats.tokens_per_s = ((n - 1) / (t_last - t_first)) if n > 1 and t_last > t_first else None
            stats.total_s = t_end - t0
            stats.context_used = prompt_tokens + n
            stats.finish_reason = finish or "stop"
            stats.thinking_s = parser.thinking_s
            if gov is not None and gov.changes:
                stats.threads = [list(c) for c in gov.changes]
            stats.text = parser.answer
            stats.thinking = parser.thinking
            yield ChatEvent("done", stats=stats)
        finally:
            if stream is not None:
                stream.close()
            self._busy.release()

    def complete(self, messages: list[dict], params: SamplingParams | dict | None = None,
                 token: CancelToken | None = None, overflow: str = "truncate_oldest") -> ChatStats:
        """Run ``chat`` to the end and return the final stats (text in ``stats.text``)."""
        return final_stats(self.chat(messages, params, token, overflow))


__all__ = [
    "ANSWER", "THINKING", "RECLASSIFY", "OVERFLOW_POLICIES", "ChatEngine", "ChatEvent", "ChatStats",
    "ContextOverflow", "LoadConfig", "Reply", "SamplingParams", "Truncation",
]
