"""The chat engine in its child process: a model that aborts llama.cpp ends the child, never us
(issue 9, items 3, 5 and 9)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from desktop_app.core.errors import ModelFormatError
from desktop_app.engines.base import CancelToken
from desktop_app.engines.chat import LoadConfig
from desktop_app.engines.chat_client import ChatEngineProcess, EngineCrashed
from tests.helpers import write_tiny_llama_gguf

HELLO = [{"role": "user", "content": "w1 w2"}]


@pytest.fixture
def engine():
    e = ChatEngineProcess()
    yield e
    e.unload()


def test_starter_model_answers_and_unload_ends_the_child(engine, starter_model):
    engine.load(LoadConfig(str(starter_model), n_ctx=512))
    pid = engine.pid
    assert engine.loaded and engine.n_ctx == 512 and pid != os.getpid()
    n, n_ctx = engine.context_usage([{"role": "user", "content": "Hello"}])
    assert 0 < n < 64 and n_ctx == 512
    stats = engine.complete([{"role": "user", "content": "Say hi"}], {"max_tokens": 8, "seed": 1})
    assert stats.tokens > 0 and stats.text
    engine.unload()
    assert not engine.alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_abort_while_loading_is_an_error_not_our_death(engine, tmp_path):
    bad = write_tiny_llama_gguf(tmp_path / "layers.gguf", header_block_count=1000)
    t0 = time.monotonic()
    with pytest.raises(EngineCrashed) as exc:
        engine.load(LoadConfig(str(bad), n_ctx=128))
    msg = str(exc.value)
    assert "while loading" in msg and "SIGABRT" in msg and "GGML_ASSERT" in msg and "\n" not in msg
    assert time.monotonic() - t0 < 30
    assert not engine.loaded
    with pytest.raises(Exception, match="No chat model is loaded"):  # not retried: it would crash again
        list(engine.chat(HELLO))


@pytest.mark.parametrize("kw", [dict(rms_eps=float("nan")), dict(norm_dtype=np.int8)], ids=["nan-eps", "int8-norm"])
def test_abort_while_answering_raises_crashed(engine, tmp_path, kw):
    bad = write_tiny_llama_gguf(tmp_path / "bad.gguf", **kw)
    engine.load(LoadConfig(str(bad), n_ctx=128))  # these load, then abort at the first decode
    with pytest.raises(EngineCrashed, match="crashed the chat engine"):
        list(engine.chat(HELLO, {"max_tokens": 4}))
    assert not engine.loaded


def test_kill_mid_reply_keeps_the_text_and_the_next_message_restarts(tmp_path, tiny_gguf):
    e = ChatEngineProcess(env={"ATELIER_TEST_CHAT_DELAY": "0.05"})
    try:
        e.load(LoadConfig(str(tiny_gguf), n_ctx=256))
        got = []
        with pytest.raises(EngineCrashed):
            for ev in e.chat(HELLO, {"max_tokens": 200, "temperature": 0.0}):
                got.append(ev)
                if len(got) == 3:
                    os.kill(e.pid, signal.SIGKILL)
        assert len(got) >= 3 and all(ev.type in ("answer", "thinking") for ev in got)
        stats = e.complete(HELLO, {"max_tokens": 4})  # restarts the child and loads the same model
        assert e.restarts == 1 and e.loaded and stats.tokens > 0
    finally:
        e.unload()


def test_cancel_of_a_stuck_child_ends_within_the_grace(tmp_path, tiny_gguf):
    e = ChatEngineProcess(env={"ATELIER_TEST_CHAT_DELAY": "0.05"})
    try:
        e.load(LoadConfig(str(tiny_gguf), n_ctx=256))
        token = CancelToken()
        n = 0
        t_cancel = None
        for _ev in e.chat(HELLO, {"max_tokens": 500}, token):
            n += 1
            if n == 2:
                os.kill(e.pid, signal.SIGSTOP)  # stuck in native code: it will never read the cancel
                token.cancel()
                t_cancel = time.monotonic()
        assert t_cancel is not None and time.monotonic() - t_cancel < e.cancel_grace + 1.0
        assert not e.alive and not e.loaded
        assert e.complete(HELLO, {"max_tokens": 3}).tokens > 0  # the next message restarts it
    finally:
        e.unload()


def test_plain_cancel_ends_within_one_token(engine, starter_model):
    engine.load(LoadConfig(str(starter_model), n_ctx=512))
    token = CancelToken()
    last = None
    n = 0
    for ev in engine.chat([{"role": "user", "content": "Write a long story about a fox."}], {"max_tokens": 400},
                          token):
        n += 1
        if n == 3:
            token.cancel()
            t = time.monotonic()
        last = ev
    assert last.type == "done" and last.stats.finish_reason == "cancelled"
    assert time.monotonic() - t < 1.0 and engine.loaded


LOOPS = {
    "nested-range": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "huge-string": "{{ 'A' * 200000000 }}",
    "huge-concat": "{% set s = 'A' * 3000000 %}{{ s + s }}",
    "power": "{{ 10 ** 100000000 }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_a_looping_template_is_refused_at_load_and_chatml_is_used(engine, tmp_path, name):
    path = write_tiny_llama_gguf(tmp_path / f"{name}.gguf", chat_template=LOOPS[name])
    t0 = time.monotonic()
    engine.load(LoadConfig(str(path), n_ctx=256))
    info = engine.info()
    assert time.monotonic() - t0 < 15
    assert info["template_fallback"] and "chat template" in info["template_error"]
    stats = engine.complete(HELLO, {"max_tokens": 3})
    assert stats.template_fallback and stats.tokens > 0


def test_a_template_that_loops_only_on_a_long_conversation_falls_back_then(engine, tmp_path):
    tmpl = ("{% for m in messages %}{% if m.content|length > 50 %}{% for i in range(999999) %}"
            "{% for j in range(999999) %}.{% endfor %}{% endfor %}{% endif %}{{ m.content }}{% endfor %}")
    path = write_tiny_llama_gguf(tmp_path / "late.gguf", chat_template=tmpl)
    engine.load(LoadConfig(str(path), n_ctx=256))
    assert not engine.info()["template_fallback"]
    t0 = time.monotonic()
    stats = engine.complete([{"role": "user", "content": "w1 " * 30}], {"max_tokens": 3})
    assert time.monotonic() - t0 < 10
    assert stats.template_fallback and "chat template" in stats.template_error


def test_missing_file_is_a_clear_error(engine, tmp_path):
    with pytest.raises(ModelFormatError, match="not found"):
        engine.load(LoadConfig(str(tmp_path / "missing.gguf")))
