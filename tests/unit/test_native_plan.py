"""Issue 11: the fit plan follows the engine's options (KV cache type, flash attention, threads,
prompt lookup) and gives each of several GPUs its share; threads are counted as llama.cpp does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from desktop_app.core.cpu_threads import auto_threads, physical_cores, resolve_threads
from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.core.fitting import estimate_llm_from_size, plan_llm
from desktop_app.engines.chat_types import LoadConfig, engine_options
from tests.unit.test_fitting import hw_of, llm70b

MiB = 2**20


def test_kv_type_and_flash_attention_change_the_estimate(starter_model):
    hw = hw_of("cpu_only_8gb")
    f16 = plan_llm(starter_model, hw, n_ctx=8192)
    q8 = plan_llm(starter_model, hw, n_ctx=8192, kv_type="q8_0")
    q4 = plan_llm(starter_model, hw, n_ctx=8192, kv_type="q4_0")
    no_fa = plan_llm(starter_model, hw, n_ctx=8192, flash_attn=False)
    # ggml's block sizes: q8_0 34 bytes, q4_0 18 bytes per 32 elements, against 64 for f16
    assert f16.kv_cache_bytes == 180 * MiB and q8.kv_cache_bytes == pytest.approx(180 * MiB * 34 / 64, abs=64)
    assert q4.kv_cache_bytes == pytest.approx(180 * MiB * 18 / 64, abs=64)
    assert (f16.kv_type, q8.kv_type, f16.flash_attn, no_fa.flash_attn) == ("f16", "q8_0", True, False)
    # flash attention never materialises the attention scores: 166 MiB -> 98 MiB on this model
    assert no_fa.compute_bytes > 1.5 * f16.compute_bytes
    assert plan_llm(starter_model, hw, n_ctx=8192, kv_type="q8_0", flash_attn=False).flash_attn  # q8 needs it
    with pytest.raises(ModelFormatError, match="q5_1"):
        plan_llm(starter_model, hw, kv_type="q5_1")


def test_prompt_lookup_keeps_every_positions_logits(starter_model):
    hw = hw_of("cpu_only_8gb")
    plain = plan_llm(starter_model, hw, n_ctx=4096)
    lookup = plan_llm(starter_model, hw, n_ctx=4096, prompt_lookup=True)
    assert lookup.output_bytes - plain.output_bytes == 49152 * 4 * (512 + 4096) - 49152 * 4


def test_the_speed_estimate_follows_the_threads(starter_model):
    hw = hw_of("cpu_only_8gb")
    one = plan_llm(starter_model, hw, threads=1)
    two = plan_llm(starter_model, hw, threads=2)
    auto = plan_llm(starter_model, hw)
    assert two.tokens_per_s == pytest.approx(2 * one.tokens_per_s, rel=0.01) and one.threads == 1
    assert auto.threads == hw.cpu_cores  # the profile's machine, not this one
    assert plan_llm(starter_model, hw, threads=64).tokens_per_s < 64 * one.tokens_per_s  # the bus saturates


def test_several_gpus_get_their_share_from_their_own_free_memory():
    hw = hw_of("2x_a100_80gb")
    even = llm70b(hw)
    assert even.gpus_used == 2 and even.tensor_split == [0.5, 0.5]
    d = hw.to_dict()
    d["gpus"][1]["vram_free_bytes"] = d["gpus"][0]["vram_free_bytes"] // 2
    from desktop_app.core.hardware import Hardware

    uneven = llm70b(Hardware.from_dict(d))
    assert uneven.plan == "gpu" and uneven.tensor_split[0] > 0.66 and sum(uneven.tensor_split) == pytest.approx(1)
    cfg = LoadConfig.from_plan("/m.gguf", uneven)
    assert cfg.tensor_split == uneven.tensor_split
    assert estimate_llm_from_size(int(4.9e9), 32, hw=hw_of("rtx4090_24gb")).tensor_split == []  # one GPU


def test_threads_are_physical_cores_within_the_affinity_mask():
    assert 1 <= auto_threads() <= physical_cores()
    assert resolve_threads(None, 0) == (auto_threads(), auto_threads()) and resolve_threads(3, 5) == (3, 5)
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs sched_setaffinity and two CPUs")
    code = ("import os; os.sched_setaffinity(0, {0}); "
            "from desktop_app.core.cpu_threads import auto_threads; print(auto_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stderr


def test_engine_options_come_from_the_settings_and_bad_ones_are_refused(tmp_path):
    from desktop_app.core.settings import Settings

    s = Settings()
    assert engine_options(s) == {"n_threads": 0, "n_threads_batch": 0, "flash_attn": "auto", "kv_type": "f16",
                                 "adaptive_threads": True, "prompt_lookup": False}
    for bad, msg in (({"flash_attn": "maybe"}, "Flash attention"), ({"kv_type": "q2"}, "KV cache type"),
                     ({"kv_type": "q8_0", "flash_attn": "off"}, "needs flash attention"),
                     ({"n_threads": -2}, "n_threads")):
        with pytest.raises(AtelierError, match=msg):
            LoadConfig(model_path="/m.gguf", **bad).validate()
    LoadConfig(model_path="/m.gguf", kv_type="q4_0").validate()


def test_doctor_says_which_cpu_code_llama_cpp_runs():
    from desktop_app.commands.doctor import llama_cpu_variant

    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | F16C = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 |"
    text = llama_cpu_variant(info, ["avx2", "avx512f", "avx512_bf16"])
    assert text.startswith("SSE3 AVX AVX2 F16C FMA") and "OPENMP" not in text
    assert "this CPU also has avx512f, avx512_bf16, unused" in text and "ATELIER_LLAMA_CPU_VARIANTS=1" in text
    both = "CPU : AVX2 = 1 | AVX512 = 1 | AVX512_BF16 = 1 |"
    assert llama_cpu_variant(both, ["avx512f", "avx512_bf16"]) == "AVX2 AVX512 AVX512_BF16"
    assert llama_cpu_variant("", []) == ""


@pytest.mark.slow
def test_cli_run_takes_the_engine_options_and_refuses_a_bad_pair(starter_model):
    from tests.unit.test_cli_doctor_fit import one_json, run_cli

    d = one_json(run_cli("run", "--prompt", "Say hi.", "--max-tokens", "4", "--seed", "1", "--kv-cache", "q8_0",
                         "--threads", "1", "--json"))
    assert d["engine"]["kv_type"] == "q8_0" and d["engine"]["n_threads"] == 1 and d["engine"]["flash_attn"] == "on"
    bad = run_cli("run", "--prompt", "Say hi.", "--kv-cache", "q4_0", "--flash-attn", "off")
    assert bad.returncode != 0 and "needs flash attention" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_flash_attention_auto_is_off_on_a_cpu_only_load_with_an_f16_cache(starter_model):
    from desktop_app.core.cpu_threads import flash_attn_request

    assert flash_attn_request("auto", 0, "f16") == "off"
    assert flash_attn_request("auto", 0, "q8_0") == "auto"  # a quantized V cache needs it
    assert flash_attn_request("auto", 33, "f16") == "auto"  # on a GPU llama.cpp decides
    assert flash_attn_request("on", 0, "f16") == "on" and flash_attn_request("off", 33, "f16") == "off"
    hw = hw_of("cpu_only_8gb")
    auto = LoadConfig.for_model(starter_model, n_ctx=8192, hw=hw, settings={})
    on = LoadConfig.for_model(starter_model, n_ctx=8192, hw=hw, settings={}, flash_attn="on")
    plan_auto = plan_llm(starter_model, hw, n_ctx=8192, flash_attn=False)
    assert auto.plan == on.plan == "cpu" and plan_auto.compute_bytes > plan_llm(starter_model, hw, n_ctx=8192).compute_bytes
