"""A completion of a raw prompt (the server's /v1/completions), with no chat template: the same
lean token loop as a chat reply (chat_stream.py), on the engine's loaded model."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Iterator

from desktop_app.core.errors import AtelierError
from desktop_app.engines.chat_types import ChatEvent, ChatStats, SamplingParams


def complete_raw(engine, prompt: str, params: dict | SamplingParams, token) -> Iterator[ChatEvent]:
    from desktop_app.engines.chat_stream import stream_reply

    if engine.llm is None:
        raise AtelierError("No chat model is loaded.")
    if not isinstance(prompt, str) or not prompt:
        raise AtelierError("The prompt must be a non-empty string.")
    params = SamplingParams.from_dict(params) if isinstance(params, dict) else params
    if not engine._busy.acquire(blocking=False):
        raise AtelierError("The model is busy with another reply.")
    llm = engine.llm
    t0 = time.perf_counter()
    try:
        if params.seed is not None:
            llm.reset()  # reproducible: the whole prompt evaluated afresh (see ChatEngine.chat)
        n_prompt = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        formatted = SimpleNamespace(prompt=prompt, added_special=False, stop=[])
        stats = ChatStats(prompt_tokens=n_prompt, n_ctx=engine.n_ctx)
        n, finish, t_first, text = 0, None, None, []
        stream = stream_reply(llm, formatted, params.llama_kwargs(), token, engine._stop_ids)
        try:
            for piece, fin in stream:
                if fin is not None:
                    finish = fin
                    break
                t_first = t_first or time.perf_counter()
                n += 1
                text.append(piece)
                yield ChatEvent("answer", piece)
        except ValueError as exc:
            raise AtelierError(f"llama.cpp refused the prompt: {exc}") from None
        finally:
            stream.close()
        stats.tokens = len(llm.tokenize("".join(text).encode("utf-8"), add_bos=False)) if text else 0
        stats.finish_reason = "cancelled" if token.cancelled else (finish or "stop")
        stats.ttft_s = (t_first - t0) if t_first else None
        stats.total_s = time.perf_counter() - t0
        stats.text = "".join(text)
        yield ChatEvent("done", stats=stats)
    finally:
        engine._busy.release()
