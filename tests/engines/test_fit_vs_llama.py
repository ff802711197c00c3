"""The memory estimate against what llama.cpp really allocates (the buffer sizes it prints).

Each load runs in a child process: llama.cpp writes its log to the C-level stderr, which the
child's pipe captures whole, and the model's memory goes away with the process.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from desktop_app.core.fitting import plan_llm

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

_LOAD = """
import sys
from llama_cpp import Llama
from desktop_app.engines.chat_native import flash_request, llama_kwargs, native_load
from desktop_app.engines.chat_types import LoadConfig
cfg = LoadConfig(sys.argv[1], n_gpu_layers=int(sys.argv[3]), flash_attn=sys.argv[4], kv_type=sys.argv[5])
with native_load(flash_request(cfg)):  # the options as the app's engine passes them
    m = Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_gpu_layers=int(sys.argv[3]), verbose=True, **llama_kwargs(cfg))
sys.stderr.flush()
m.close()
"""
_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size\s*=\s*([\d.]+) MiB")


def llama_buffers(path, n_ctx: int, n_gpu_layers: int, flash_attn: str = "auto", kv_type: str = "f16"):
    """{kind: bytes} summed over devices, parsed from llama.cpp's verbose load log."""
    r = subprocess.run([sys.executable, "-c", _LOAD, str(path), str(n_ctx), str(n_gpu_layers), flash_attn, kv_type],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out: dict[str, float] = {}
    for line in r.stderr.splitlines():
        if line.startswith("~"):  # the destructor repeats the compute buffer size
            continue
        m = _BUFFER.search(line)
        if m:
            out[m.group(2)] = out.get(m.group(2), 0.0) + float(m.group(3)) * 2**20
    assert {"model", "KV", "compute", "output"} <= set(out), r.stderr[-2000:]
    return out


def check(path, n_ctx=None, flash_attn="auto", kv_type="f16"):
    from desktop_app.core.cpu_threads import flash_attn_request

    plan = plan_llm(path, n_ctx=n_ctx, vram_reserve_mib=512, kv_type=kv_type, flash_attn=flash_attn != "off")
    if flash_attn_request(flash_attn, plan.llama_n_gpu_layers, kv_type) == "off":  # as LoadConfig.for_model
        plan = plan_llm(path, n_ctx=n_ctx, vram_reserve_mib=512, kv_type=kv_type, flash_attn=False)
    measured = llama_buffers(path, plan.n_ctx, plan.llama_n_gpu_layers, flash_attn, kv_type)
    total = sum(measured.values())
    figures = (f"{path.name} n_ctx={plan.n_ctx}: estimated {plan.estimated_bytes / 2**20:.1f} MiB "
               f"(weights {plan.weights_bytes / 2**20:.1f}, KV {plan.kv_cache_bytes / 2**20:.1f}, "
               f"compute {plan.compute_bytes / 2**20:.1f}, output {plan.output_bytes / 2**20:.2f}) vs measured "
               f"{total / 2**20:.1f} MiB (model {measured['model'] / 2**20:.1f}, KV {measured['KV'] / 2**20:.1f}, "
               f"compute {measured['compute'] / 2**20:.1f}, output {measured['output'] / 2**20:.2f})")
    print(figures)
    assert plan.estimated_bytes == pytest.approx(total, rel=0.15), figures
    # the parts that are exact arithmetic match to the printed precision (2 decimals of MiB)
    assert plan.weights_bytes == pytest.approx(measured["model"], rel=0.01, abs=0.006 * 2**20), figures
    assert plan.kv_cache_bytes == pytest.approx(measured["KV"], rel=0.01, abs=0.006 * 2**20), figures
    assert plan.compute_bytes == pytest.approx(measured["compute"], rel=0.25), figures
    return plan, measured


def test_starter_model_default_plan(starter_model):
    plan, _ = check(starter_model)
    assert plan.plan == "cpu" and plan.n_ctx == 8192


def test_starter_model_small_context(starter_model):
    check(starter_model, n_ctx=1024)


def test_tiny_random_llama(tiny_gguf):
    check(tiny_gguf)
    check(tiny_gguf, n_ctx=512)


def test_starter_model_without_flash_attention_and_with_quantized_kv(starter_model):
    """Issue 11: the estimate follows the engine's options: flash attention off (the attention
    scores are materialised), and a q8_0 / q4_0 KV cache (ggml's block sizes)."""
    check(starter_model, n_ctx=4096, flash_attn="off")
    check(starter_model, n_ctx=4096, flash_attn="on")
    check(starter_model, n_ctx=4096, kv_type="q8_0")
    check(starter_model, n_ctx=4096, kv_type="q4_0")
