"""Which of llama.cpp's CPU variants the chat engine loads (issue 11; Qt-free, no llama_cpp import).

A build made by ``installers/llama_variants.py`` ships one ``libggml-cpu-<level>.so`` per x86
level. Atelier picks the best one this CPU runs: the variant whose instruction sets are all in
the CPU's flags and that has the most of them. It never trusts the flags alone: the first time,
the pick runs a short real inference in a child process, and a variant that dies there (SIGILL:
an AMX or AVX-512 path the OS or a hypervisor does not allow) is passed over for the next one.
The verdict is cached per CPU and per build (``cache/cpu-variant.json``). The chat engine's child
gets the file name in ``ATELIER_GGML_CPU_VARIANT``; the patched llama_cpp loads it.

A build without variants (the portable one: the CPU code linked in) needs none of this:
``chosen()`` returns "" and nothing runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENV = "ATELIER_GGML_CPU_VARIANT"
_HASWELL = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
_AVX512 = _HASWELL | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
# ggml's x86 variants (ggml/src/CMakeLists.txt) and the /proc/cpuinfo flags each needs
REQUIRES: dict[str, set[str]] = {
    "x64": set(),
    "sse42": {"sse4_2"},
    "sandybridge": {"sse4_2", "avx"},
    "ivybridge": {"sse4_2", "avx", "f16c"},
    "piledriver": {"sse4_2", "avx", "f16c", "fma"},
    "haswell": _HASWELL,
    "alderlake": _HASWELL | {"avx_vnni"},
    "skylakex": _AVX512,
    "cannonlake": _AVX512 | {"avx512vbmi"},
    "cascadelake": _AVX512 | {"avx512_vnni"},
    "icelake": _AVX512 | {"avx512vbmi", "avx512_vnni"},
    "cooperlake": _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "zen4": _AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16"},
    "sapphirerapids": _AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
}


def lib_dir() -> Path | None:
    """llama_cpp's library folder (found without importing llama_cpp)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        return None
    d = Path(spec.origin).parent / "lib"
    return d if d.is_dir() else None


def variants(folder: Path | None) -> dict[str, str]:
    """{tag: file name} of the CPU variants in ``folder`` ({} for a build without them)."""
    if folder is None:
        return {}
    out = {}
    for p in folder.iterdir():
        stem = p.name.split(".")[0]
        if stem.startswith(("libggml-cpu-", "ggml-cpu-")) and p.suffix in (".so", ".dll", ".dylib"):
            out[stem.split("ggml-cpu-", 1)[1]] = p.name
    return out


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def ranked(available: dict[str, str], flags: set[str]) -> list[str]:
    """The variants this CPU's flags allow, best first (most instruction sets)."""
    ok = [t for t in available if t in REQUIRES and REQUIRES[t] <= flags]
    return sorted(ok, key=lambda t: (len(REQUIRES[t]), t), reverse=True)


def _cache_file() -> Path:
    from desktop_app.core.paths import get_paths

    return get_paths().cache / "cpu-variant.json"


def _key(folder: Path, flags: set[str]) -> str:
    import hashlib

    libs = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.glob("*ggml*"))
    return hashlib.sha256(json.dumps([sorted(flags), libs, PROBE_VERSION]).encode()).hexdigest()[:24]


PROBE_VERSION = 2  # 2: a Q4_0 model (1 probed with the starter's Q4_1, which missed the AMX path)
PROBE = (
    "import sys, llama_cpp\n"
    "m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, verbose=False)\n"
    "out = m.create_completion('Hello', max_tokens=4, temperature=0.0)\n"
    "print('ok', out['usage']['completion_tokens'])\n"
)


def probe(variant_file: str, model: Path, timeout: float = 120.0) -> bool:
    """Does a short real inference with this variant finish (and not die on an instruction)?"""
    from desktop_app.core.runtime import python_argv

    env = dict(os.environ, **{ENV: variant_file})
    try:
        r = subprocess.run([*python_argv("-c", PROBE), str(model)], capture_output=True, text=True, env=env,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.strip().startswith("ok")


def _probe_model() -> Path | None:
    """A small random llama with Q4_0 weights (written once into the cache, about 0.5 MB): Q4_0
    runs the AMX and repacked kernels, which the starter's Q4_1 weights do not reach. Measured on a
    Sapphire Rapids Xeon: the sapphirerapids variant answered on the starter, then died with SIGILL
    on every Q4_0 model; this probe refuses it there."""
    try:
        path = _cache_file().with_name("cpu-variant-probe.gguf")
        if not path.is_file():
            _write_probe_model(path)
        return path
    except Exception:  # noqa: BLE001 - (no gguf-py) the starter, which at least catches a dead variant
        try:
            from desktop_app.core.starter import starter_model_path

            p = starter_model_path()
            return Path(p) if p else None
        except Exception:  # noqa: BLE001 - no model to probe with: trust the flags
            return None


def _write_probe_model(path: Path, n_embd: int = 256, n_ff: int = 512, n_head: int = 8, n_kv: int = 4) -> None:
    import gguf
    import numpy as np
    from gguf.quants import quantize

    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(tmp), "llama")
    for add, value in ((w.add_context_length, 256), (w.add_embedding_length, n_embd), (w.add_block_count, 1),
                       (w.add_feed_forward_length, n_ff), (w.add_head_count, n_head), (w.add_head_count_kv, n_kv),
                       (w.add_layer_norm_rms_eps, 1e-5), (w.add_rope_dimension_count, n_embd // n_head),
                       (w.add_file_type, 2)):  # MOSTLY_Q4_0
        add(value)
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    tokens += [f"\u2581w{i}".encode() for i in range(256 - 3)]
    T = gguf.TokenType
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256 + [T.NORMAL] * (len(tokens) - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def q4(name: str, rows: int, cols: int) -> None:
        data = quantize((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32), gguf.GGMLQuantizationType.Q4_0)
        w.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.Q4_0)

    kv = n_embd // n_head * n_kv
    q4("token_embd.weight", len(tokens), n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    q4("output.weight", len(tokens), n_embd)
    for name in ("attn_norm", "ffn_norm"):
        w.add_tensor(f"blk.0.{name}.weight", np.ones(n_embd, dtype=np.float32))
    for name, rows, cols in (("attn_q", n_embd, n_embd), ("attn_k", kv, n_embd), ("attn_v", kv, n_embd),
                             ("attn_output", n_embd, n_embd), ("ffn_gate", n_ff, n_embd), ("ffn_up", n_ff, n_embd),
                             ("ffn_down", n_embd, n_ff)):
        q4(f"blk.0.{name}.weight", rows, cols)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def chosen(folder: Path | None = None, flags: set[str] | None = None, run_probe=None) -> str:
    """The variant file for the chat engine ("" for a build without variants). Probes (once per
    CPU and build) when a model to probe with is there. Never raises."""
    try:
        folder = folder if folder is not None else lib_dir()
        available = variants(folder)
        if not available:
            return ""
        flags = cpu_flags() if flags is None else flags
        order = ranked(available, flags)
        if not order:
            return ""
        key = _key(folder, flags)
        cache = _cache_file()
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key and saved.get("variant") in available.values():
                return saved["variant"]
        except (OSError, ValueError, AttributeError):
            pass
        model = _probe_model()
        run_probe = run_probe or probe
        pick, refused = "", []
        for tag in order:
            if model is None or run_probe(available[tag], model):
                pick = available[tag]
                break
            refused.append(tag)
        from desktop_app.core.paths import write_json_atomic

        write_json_atomic(cache, {"key": key, "variant": pick, "refused": refused, "python": sys.version.split()[0]})
        return pick
    except Exception:  # noqa: BLE001 - ggml then chooses itself
        return ""


def describe(folder: Path | None = None) -> dict:
    """What ``atelier doctor`` says: the variants there, and the one Atelier would load."""
    folder = folder if folder is not None else lib_dir()
    available = variants(folder)
    if not available:
        return {"dynamic": False}
    flags = cpu_flags()
    try:
        saved = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        saved = {}
    return {"dynamic": True, "variants": sorted(available), "best_by_flags": (ranked(available, flags) or [""])[0],
            "chosen": saved.get("variant") if saved.get("key") == _key(folder, flags) else None,
            "refused": saved.get("refused") or []}
