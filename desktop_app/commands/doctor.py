"""`atelier doctor [--json]`: hardware, backends, paths, offline state, installed models and their fit."""

from __future__ import annotations

import json
import subprocess

from desktop_app.commands import emit_json
from desktop_app.core.runtime import python_argv

GiB = 2**30

_LLAMA_PROBE = (
    "import json, llama_cpp\n"
    "out = {'version': llama_cpp.__version__, 'supports_gpu_offload': bool(llama_cpp.llama_supports_gpu_offload())}\n"
    "try:\n"
    "    out['system_info'] = llama_cpp.llama_print_system_info().decode(errors='replace').strip()\n"
    "except Exception:\n"
    "    pass\n"
    "print(json.dumps(out))\n"
)


_TORCH_PROBE = (
    "import json, torch\n"
    "out = {'version': torch.__version__, 'cuda_available': bool(torch.cuda.is_available()),\n"
    "       'cuda_devices': torch.cuda.device_count() if torch.cuda.is_available() else 0,\n"
    "       'mps_available': bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available())}\n"
    "print(json.dumps(out))\n"
)


def probe_llama_runtime(timeout: float = 60.0) -> dict:
    """Ask the installed llama-cpp-python itself, in a short-lived child process (a broken
    driver or library cannot take the doctor down with it). A build with CPU variants is asked
    with the variant the chat engine loads (core/cpu_variants), so its CPU code is the one shown."""
    import os

    from desktop_app.core.cpu_variants import ENV, chosen

    variant = chosen()
    out = _probe(_LLAMA_PROBE, "llama_cpp", timeout, env=dict(os.environ, **{ENV: variant}) if variant else None)
    if variant and "error" not in out:
        out["cpu_variant"] = variant
    return out


def probe_torch_runtime(timeout: float = 120.0) -> dict:
    """Whether torch really sees CUDA / MPS, asked in a child process (never in the GUI process)."""
    return _probe(_TORCH_PROBE, "torch", timeout)


def _probe(code: str, what: str, timeout: float, env: dict | None = None) -> dict:
    try:
        r = subprocess.run(python_argv("-c", code), capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if r.returncode != 0:
        tail = (r.stderr or "").strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        return {"error": tail[0]}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"unreadable answer from {what}"}


def collect(probe: bool = True) -> dict:
    from desktop_app.core.fitting import plan_for_record
    from desktop_app.core.hardware import detect_hardware
    from desktop_app.core.library import Library
    from desktop_app.core.paths import get_paths
    from desktop_app.core.settings import Settings
    from desktop_app.core.starter import ensure_starter_registered

    hw = detect_hardware()
    report = hw.to_dict()
    warnings = list(hw.warnings())
    backends: dict = {"llama": hw.llama_backend, "torch": hw.torch, "torch_device": hw.torch_device}
    if hw.llama_backend is None:
        warnings.append("llama-cpp-python is not installed: chat models cannot run. Run the README's set-up command.")
    elif probe and not hw.source.startswith("profile"):
        rt = probe_llama_runtime()
        backends["llama_runtime"] = rt
        if "error" in rt:
            warnings.append(f"llama-cpp-python is installed but does not load: {rt['error']}")
    if probe and not hw.source.startswith("profile") and (hw.torch or {}).get("installed"):
        trt = probe_torch_runtime()
        backends["torch_runtime"] = trt
        if "error" in trt:
            warnings.append(f"torch is installed but does not load: {trt['error']}")
        elif any(g.vendor == "nvidia" for g in hw.gpus) and not trt.get("cuda_available"):
            warnings.append("An NVIDIA GPU is present but torch cannot use it (CPU build or driver problem): image "
                            "models will run on the CPU. Install the CUDA build of torch (see README, "
                            "ATELIER_TORCH_INDEX).")
    try:
        ensure_starter_registered()
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not fail on one part
        warnings.append(f"Could not register the starter model: {exc}")
    models = []
    for rec in Library().list():
        d = rec.to_dict()
        try:
            d["fit"] = plan_for_record(rec, hw).to_dict()
        except Exception as exc:  # noqa: BLE001 - a broken file shows as such, the rest still reports
            d["fit"] = {"plan": "error", "error": str(exc)}
        models.append(d)
    settings = Settings()
    report.update({
        "summary": hw.summary(),
        "backends": backends,
        "paths": get_paths().as_dict(),
        "offline": settings.offline,
        "vram_reserve_mib": settings.get("vram_reserve_mib"),
        "models": models,
        "notes": list(hw.notes),
        "warnings": warnings,
        "detect_ms": round(hw.detect_ms, 1),
    })
    return report


def _gib(n) -> str:
    return f"{(n or 0) / GiB:.1f} GiB"


def render_text(r: dict) -> str:
    lines = [f"Atelier doctor — {r['summary']}", ""]
    src = r.get("source", "detected")
    lines.append("Hardware" + (f" ({src})" if src != "detected" else ""))
    cpu = r["cpu"]
    lines.append(f"  CPU:  {cpu['name']} · {cpu['cores']} cores · {' '.join(cpu['flags']) or 'no SIMD flags found'}")
    lines.append(f"  RAM:  {_gib(r['ram_total_bytes'])} total, {_gib(r['ram_available_bytes'])} available")
    if not r["gpus"]:
        lines.append("  GPU:  none that can hold model weights")
    for g in r["gpus"]:
        extra = ", ".join(x for x in (f"driver {g['driver']}" if g.get("driver") else "",
                                      f"compute {g['compute_capability']}" if g.get("compute_capability") else "") if x)
        lines.append(f"  GPU:  {g['name']} ({g['vendor']}) · {_gib(g['vram_total_bytes'])} total, "
                     f"{_gib(g['vram_free_bytes'])} free" + (f" · {extra}" if extra else ""))
    b = r["backends"]
    lines += ["", "Backends"]
    llama = b.get("llama") or "not installed"
    rt = b.get("llama_runtime") or {}
    if "supports_gpu_offload" in rt:
        llama += f" (llama-cpp-python {rt.get('version')}, GPU offload {'yes' if rt['supports_gpu_offload'] else 'no'})"
    lines.append(f"  llama.cpp: {llama}")
    variant = llama_cpu_variant(rt.get("system_info", ""), r.get("cpu", {}).get("flags") or [],
                                dynamic=bool(rt.get("cpu_variant")))
    if variant:
        lines.append(f"             CPU code: {variant}")
    if rt.get("cpu_variant"):
        lines.append(f"             CPU variant: {rt['cpu_variant']} (the best of the build's variants this CPU runs)")
    t = b.get("torch") or {}
    if t.get("installed"):
        build = f"CUDA {t['cuda']}" if t.get("cuda") else f"ROCm {t['hip']}" if t.get("hip") else "MPS" if t.get("mps") else "CPU"
        lines.append(f"  torch:     {t.get('version') or '?'} ({build} build) → image models on {b.get('torch_device')}")
        trt = b.get("torch_runtime") or {}
        if "cuda_available" in trt:
            seen = "CUDA" if trt["cuda_available"] else ("MPS" if trt.get("mps_available") else "no GPU")
            lines.append(f"             runtime check: torch sees {seen}")
    else:
        lines.append("  torch:     not installed")
    lines += ["", "Paths"]
    for k, v in r["paths"].items():
        if k == "portable":
            v = "yes (ATELIER_HOME)" if v else "no"
        lines.append(f"  {k:<9} {v}")
    lines += ["", f"Offline: {'on' if r['offline'] else 'off'}", "", "Installed models"]
    if not r["models"]:
        lines.append("  (none)")
    for m in r["models"]:
        fit = m.get("fit") or {}
        if fit.get("plan") == "error":
            desc = f"error: {fit.get('error')}"
        else:
            desc = f"{fit.get('badge')} · ~{_gib(fit.get('estimated_bytes'))}"
            if "n_ctx" in fit:
                desc += f" · ctx {fit['n_ctx']}"
            if "device" in fit:
                desc += f" · {fit['device']} {fit['dtype']}"
        lines.append(f"  {m['id']} ({m['task']}, {m['format']}): {desc}")
        if fit.get("note"):
            lines.append(f"      {fit['note']}")
    if r["warnings"]:
        lines += ["", "Warnings"]
        lines += [f"  ! {w}" for w in r["warnings"]]
    return "\n".join(lines)


def cmd_doctor(args) -> int:
    report = collect()
    if getattr(args, "json", False):
        emit_json(report)
    else:
        print(render_text(report))
    return 0


def llama_cpu_variant(system_info: str, cpu_flags: list[str], dynamic: bool = False) -> str:
    """Which x86/ARM instruction sets the installed llama.cpp build uses, from its system info
    (``AVX2 = 1 | …``), and what this CPU has beyond them (a portable build leaves AVX-512 unused)."""
    import re

    used = [name for name, on in re.findall(r"([A-Z0-9_]+) = (\d)", system_info.split("CPU :")[-1]) if on == "1"
            and name not in ("LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI")]
    if not used:
        return ""
    names = {"avx512f": "AVX512", "avx512_bf16": "AVX512_BF16", "avx512_vnni": "AVX512_VNNI", "amx_tile": "AMX_INT8"}
    extra = [f for f, name in names.items() if f in cpu_flags and name not in used]
    text = " ".join(used)
    if extra:
        text += (f" (this CPU also has {', '.join(extra)}; no variant of this build uses them safely)" if dynamic
                 else f" (portable build; this CPU also has {', '.join(extra)}, unused: "
                      "ATELIER_LLAMA_CPU_VARIANTS=1 python3 installers/bootstrap.py builds the variants that use them)")
    return text
