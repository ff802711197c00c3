"""The CUDA paths on a lent GPU machine, in one short run (issue 11; driven by bench/gpu_check.sh).

1. NVML detection: the GPUs the app sees (name, total / free VRAM, driver) and the llama.cpp
   backend of the installed wheel.
2. Chat with every layer on the GPU: the starter model through the app's engine (child process),
   decode tokens/s; the fit plan's estimate against the buffers llama.cpp prints when it loads.
3. A tiny fp16 diffusers pipeline on CUDA through the app's image engine, seconds per image, with
   the GUI-thread stall of the real window measured by bench/images_gui.py.

Each part reports its error instead of stopping the others. Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size\s*=\s*([\d.]+) MiB")
_LOAD = """
import sys
from llama_cpp import Llama
from desktop_app.engines.chat_native import flash_request, llama_kwargs, native_load
from desktop_app.engines.chat_types import LoadConfig
cfg = LoadConfig(sys.argv[1], n_gpu_layers=-1)
with native_load(flash_request(cfg)):
    m = Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_gpu_layers=-1, verbose=True, **llama_kwargs(cfg))
sys.stderr.flush()
m.close()
"""


def part(name: str, out: dict, fn) -> None:
    t0 = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as exc:  # noqa: BLE001 - one failing part must not hide the others
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    out[name + "_s"] = round(time.perf_counter() - t0, 1)


def detection() -> dict:
    from desktop_app.core.hardware import detect_hardware

    hw = detect_hardware()
    return {"llama_backend": hw.llama_backend, "gpus": [
        {"name": g.name, "vendor": g.vendor, "vram_total_gib": round(g.vram_total_bytes / 2**30, 1),
         "vram_free_gib": round(g.vram_free_bytes / 2**30, 1), "driver": g.driver} for g in hw.gpus]}


def chat_full_offload() -> dict:
    from desktop_app.core.fitting import plan_llm
    from desktop_app.core.starter import starter_model_path
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    model = starter_model_path()
    plan = plan_llm(model, n_ctx=4096)
    r = subprocess.run([sys.executable, "-c", _LOAD, str(model), "4096"], capture_output=True, text=True,
                       timeout=300, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    measured: dict[str, float] = {}
    for line in r.stderr.splitlines():
        m = _BUFFER.search(line)
        if m and not line.startswith("~"):
            key = f"{m.group(1)} {m.group(2)}"
            measured[key] = measured.get(key, 0.0) + float(m.group(3))
    eng = ChatEngineProcess()
    try:
        eng.load(LoadConfig.for_model(model, n_ctx=4096, settings={}))
        info = eng.info()
        st = eng.complete([{"role": "user", "content": "Tell me a story about a lighthouse."}],
                          {"max_tokens": 128, "temperature": 0.0, "seed": 1})
    finally:
        eng.unload()
    return {"plan": plan.plan, "n_gpu_layers": info.get("n_gpu_layers"), "flash_attn": info.get("flash_attn"),
            "tokens_per_s": round(st.tokens_per_s or 0, 1), "ttft_s": round(st.ttft_s or 0, 3),
            "estimate_mib": {"total": round(plan.estimated_bytes / 2**20, 1), "gpu": round(plan.gpu_bytes / 2**20, 1),
                             "kv": round(plan.kv_cache_bytes / 2**20, 1),
                             "compute": round(plan.compute_bytes / 2**20, 1)},
            "llama_cpp_mib": measured, "llama_cpp_total_mib": round(sum(measured.values()), 1),
            "load_rc": r.returncode, "load_log_tail": r.stderr[-400:] if r.returncode else ""}


def image_fp16() -> dict:
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tiny-sd15"
        code = "import sys; from pathlib import Path; from tests.diffusion.tiny_pipelines import build_sd15; " \
               "build_sd15(Path(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(folder)], check=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
        eng = EngineProcess()
        try:
            spec = ModelSpec(path=str(folder), family="sd15")
            loaded = [e.data for e in eng.load(spec) if e.type == "loaded"]
            times = []
            for seed in range(3):
                t0 = time.perf_counter()
                evs = list(eng.generate(GenerateRequest(model=spec, prompt="a fox", steps=8, width=256, height=256,
                                                        seed=seed, scheduler="Euler")))
                assert evs[-1].type == "done", evs[-1].data
                times.append(time.perf_counter() - t0)
        finally:
            eng.stop()
        gui = subprocess.run([sys.executable, str(ROOT / "bench" / "images_gui.py"), "--model", str(folder),
                              "--steps", "8", "--size", "256"], capture_output=True, text=True, timeout=600,
                             cwd=str(ROOT))
        gui_res = json.loads(gui.stdout.strip().splitlines()[-1]) if gui.returncode == 0 else {"error": gui.stderr[-400:]}
    info = loaded[0] if loaded else {}
    return {"device": info.get("device"), "dtype": info.get("dtype"), "plan": info.get("plan"),
            "s_per_image_median": round(sorted(times)[1], 3), "gui_max_stall_ms": gui_res.get("value",
                                                                                            gui_res.get("error"))}


def main() -> int:
    out: dict = {"bench": "gpu_check"}
    part("detection", out, detection)
    part("chat_full_offload", out, chat_full_offload)
    part("image_fp16", out, image_fp16)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
