"""Issue 11: the chat engine runs llama.cpp with the settings llama.cpp's own tools use, on the
real starter model; the adaptive-threads governor's decisions on synthetic clocks."""

from __future__ import annotations

import pytest

from desktop_app.core.cpu_threads import auto_threads
from desktop_app.core.errors import AtelierError
from desktop_app.engines.thread_governor import ThreadGovernor

MSG = [{"role": "user", "content": "Repeat exactly: the quick brown fox jumps over the lazy dog, "
                                   "the quick brown fox jumps over the lazy dog."}]
GREEDY = {"max_tokens": 40, "temperature": 0.0, "seed": 1}


def run(gov: ThreadGovernor, tokens: int, busy) -> list[int]:
    """Feed ``tokens`` timings from a machine model: 2 threads 13 ms a token, 1 thread 24 ms; a
    busy core makes 2 threads wait on each other (45 ms) and 1 thread 25 ms."""
    seen = []
    for _ in range(tokens):
        contended = busy(gov.tokens)
        dt = {(2, False): 0.013, (1, False): 0.024, (2, True): 0.045, (1, True): 0.025}[(gov.n, contended)]
        gov.token(dt)
        seen.append(gov.n)
    return seen


def test_governor_keeps_all_cores_when_nothing_competes():
    applied = []
    gov = ThreadGovernor(2, applied.append)
    assert set(run(gov, 300, lambda i: False)) == {2} and applied == []


def test_governor_drops_a_thread_under_contention_and_returns_when_free():
    applied = []
    gov = ThreadGovernor(2, applied.append)
    seen = run(gov, 600, lambda i: 60 <= i < 300)
    assert 1 in seen[60:120]  # within two windows of the busy process starting
    assert seen[-1] == 2 and applied[0] == 1 and applied[-1] == 2  # back on both cores once it is gone
    during = seen[150:300]
    assert during.count(1) > 0.75 * len(during)  # probes cost little while it is busy
    # a new reply starts on all cores and keeps the calm baseline
    gov.new_reply()
    assert gov.n == 2 and 2 in gov.baseline


def test_governor_goes_back_when_fewer_threads_are_no_faster():
    gov = ThreadGovernor(2, lambda n: None)
    slow = {2: 0.030, 1: 0.060}  # everything got slower, but one thread is worse still
    for i in range(200):
        gov.token(0.013 if i < 12 else slow[gov.n])
    assert gov.n == 2


@pytest.fixture(scope="module")
def engine(starter_model):
    from desktop_app.engines.chat import ChatEngine

    eng = ChatEngine()
    yield eng
    eng.unload()


def test_engine_defaults_are_llama_cpps_own(engine, starter_model):
    from desktop_app.engines.chat_types import LoadConfig

    engine.load(LoadConfig.for_model(starter_model, n_ctx=1024, settings={}))
    info = engine.info()
    assert info["n_threads"] == auto_threads() and info["n_threads_batch"] == auto_threads()
    # auto on a CPU-only load with an f16 KV cache: off (decoding is faster without it past ~200 tokens)
    assert info["flash_attn_setting"] == "auto" and info["flash_attn"] == "off"
    assert info["kv_type"] == "f16" and info["threads_auto"] and not info["prompt_lookup"]
    from llama_cpp import llama_cpp as C

    assert C.llama_n_threads(engine.llm._ctx.ctx) == auto_threads()
    assert C.LLAMA_FLASH_ATTN_TYPE_ENABLED == 1  # the auto switch is undone after the load
    base = engine.complete(MSG, GREEDY)
    assert base.tokens > 5
    if engine.governor is not None:  # the governor changes the live context's threads
        engine.governor.apply(1)
        assert C.llama_n_threads(engine.llm._ctx.ctx) == 1
        engine.governor.apply(auto_threads())

    # flash attention off, a q8_0 KV cache and prompt lookup give the same greedy reply
    engine.load(LoadConfig.for_model(starter_model, n_ctx=1024, settings={}, flash_attn="on", n_threads=1))
    assert engine.info()["flash_attn"] == "on" and engine.info()["n_threads"] == 1
    assert engine.complete(MSG, GREEDY).text == base.text
    engine.load(LoadConfig.for_model(starter_model, n_ctx=1024, settings={}, kv_type="q8_0", prompt_lookup=True))
    info = engine.info()
    assert info["kv_type"] == "q8_0" and info["flash_attn"] == "on" and info["prompt_lookup"]
    assert engine.governor is None  # drafted tokens come in bursts: no per-token clock to govern by
    looked = engine.complete(MSG, GREEDY)
    assert looked.text.split()[:6] == base.text.split()[:6]

    with pytest.raises(AtelierError, match="needs flash attention"):
        engine.load(LoadConfig.for_model(starter_model, n_ctx=1024, settings={}, kv_type="q4_0", flash_attn="off"))
