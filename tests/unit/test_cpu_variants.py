"""Issue 11, llama.cpp's runtime-dispatched CPU variants: which variant Atelier loads (the best the
CPU's flags allow, passed over when a real inference with it dies), cached per CPU and build; a
build without variants needs nothing; and the sdist patch that makes such a build."""

from __future__ import annotations

import json
from pathlib import Path

from desktop_app.core import cpu_variants as V

AVX2_EPYC = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
SPR = AVX2_EPYC | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni",
                   "avx512_bf16", "amx_tile", "amx_int8", "avx_vnni"}


def fake_build(tmp_path: Path, tags) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("libggml.so", "libggml-base.so", "libllama.so"):
        (lib / name).write_bytes(b"\x7fELF")
    for t in tags:
        (lib / f"libggml-cpu-{t}.so").write_bytes(b"\x7fELF" + t.encode())
    return lib


def test_the_best_variant_the_flags_allow(tmp_path):
    lib = fake_build(tmp_path, V.REQUIRES)
    avail = V.variants(lib)
    assert set(avail) == set(V.REQUIRES) and avail["haswell"] == "libggml-cpu-haswell.so"
    assert V.ranked(avail, AVX2_EPYC)[0] == "haswell"
    assert V.ranked(avail, AVX2_EPYC | {"avx_vnni"})[0] == "alderlake"
    assert V.ranked(avail, SPR)[0] == "sapphirerapids"
    assert V.ranked(avail, set())[0] == "x64"  # any x86-64 runs something
    assert "skylakex" not in V.ranked(avail, AVX2_EPYC)


def test_a_variant_that_dies_is_passed_over_and_the_verdict_is_kept(tmp_path, monkeypatch):
    lib = fake_build(tmp_path, V.REQUIRES)
    tried = []

    def probe(name, model):
        tried.append(name)
        return "sapphirerapids" not in name and "zen4" not in name  # SIGILL there (e.g. AMX not allowed)

    assert V.chosen(lib, SPR, run_probe=probe) == "libggml-cpu-icelake.so"
    first = list(tried)
    assert first == ["libggml-cpu-sapphirerapids.so", "libggml-cpu-zen4.so", "libggml-cpu-icelake.so"]
    assert V.chosen(lib, SPR, run_probe=probe) == "libggml-cpu-icelake.so"
    assert tried == first  # the second time: the cached verdict, no probe
    saved = json.loads(V._cache_file().read_text())
    assert "sapphirerapids" in saved["refused"] and saved["variant"] == first[-1]
    # another build (a library changed): probed again
    (lib / "libggml-cpu-x64.so").write_bytes(b"\x7fELF changed")
    V.chosen(lib, SPR, run_probe=probe)
    assert len(tried) > len(first)


def test_the_probe_model_is_a_q4_0_gguf_that_llama_cpp_runs():
    """The probe's own model (Q4_0 weights reach the AMX path; the starter's Q4_1 did not: a
    sapphirerapids variant answered on the starter and died with SIGILL on Q4_0 models). It is
    written once; the installed build (whichever) runs the probe on it."""
    import gguf

    model = V._probe_model()
    assert model is not None and model.is_file() and model.stat().st_size < 2 * 2**20
    reader = gguf.GGUFReader(str(model))
    assert {t.tensor_type for t in reader.tensors if t.name.endswith("attn_q.weight")} == {
        gguf.GGMLQuantizationType.Q4_0}
    assert V._probe_model() == model  # kept, not written again
    assert V.probe(V.chosen() or "none", model)


def test_a_build_without_variants_needs_nothing(tmp_path):
    lib = fake_build(tmp_path, [])
    assert V.variants(lib) == {} and V.chosen(lib, SPR, run_probe=lambda *a: 1 / 0) == ""
    assert V.describe(lib) == {"dynamic": False}
    assert V.chosen() == "" or V.chosen().startswith("libggml-cpu-")  # the installed build, whichever it is


def test_the_sdist_patch_installs_every_variant_and_loads_one(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installers"))
    import llama_variants as LV

    src = tmp_path / "llama_cpp_python-0.3.36"
    (src / "vendor/llama.cpp/ggml/src").mkdir(parents=True)
    (src / "llama_cpp").mkdir()
    (src / "vendor/llama.cpp/ggml/src/CMakeLists.txt").write_text(
        'if (GGML_SYSTEM_ARCH STREQUAL "x86")\n    ggml_add_cpu_backend_variant(x64)\n'
        '    ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)\n'
        'elseif (GGML_SYSTEM_ARCH STREQUAL "ARM")\n    ggml_add_cpu_backend_variant(armv8.0_1)\nendif()\n')
    (src / "CMakeLists.txt").write_text("    llama_cpp_python_install_target(ggml-cpu)\n")
    (src / "llama_cpp/llama_cpp.py").write_text("_lib = load_shared_library(_lib_base_name, _base_path)\nx = 1\n")
    assert LV.patch(src) == ["x64", "haswell"]
    assert LV.patch(src) == ["x64", "haswell"]  # twice: patched once
    cm = (src / "CMakeLists.txt").read_text()
    assert cm.count("install_target(ggml-cpu-haswell)") == 1 and "armv8" not in cm
    py = (src / "llama_cpp/llama_cpp.py").read_text()
    assert py.count(LV.MARK) == 1 and "ATELIER_GGML_CPU_VARIANT" in py and py.rstrip().endswith("x = 1")
    compile(py, "llama_cpp.py", "exec")


def test_the_loader_runs_against_a_real_libggml_and_survives_a_broken_variant(tmp_path):
    """The loader put into llama_cpp.py, run in a child beside a real libggml (the installed
    build's): it finds the copy libllama would have loaded, tries the named variant (a broken
    file here), falls back to ggml's own search, and never takes the process down."""
    import shutil
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installers"))
    import llama_variants as LV

    real = V.lib_dir()
    lib = tmp_path / "lib"
    lib.mkdir()
    for p in real.glob("libggml*.so*"):
        if "ggml-cpu-" not in p.name:
            shutil.copy2(p, lib / p.name)
    (lib / "libggml-cpu-x64.so").write_bytes(b"not a library")
    code = ("import ctypes, pathlib, sys\n"
            f"_base_path = pathlib.Path({str(lib)!r})\n"
            f"ctypes.CDLL(str(_base_path / {'libggml.so.0' if (lib / 'libggml.so.0').exists() else 'libggml.so'!r}))\n"
            + LV.LOADER.format(mark=LV.MARK) + "print('survived')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"ATELIER_GGML_CPU_VARIANT": "libggml-cpu-x64.so", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip() == "survived", r.stderr[-2000:]


def test_doctor_names_the_variant_in_use():
    from desktop_app.commands.doctor import llama_cpu_variant

    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | REPACK = 1 |"
    assert llama_cpu_variant(info, ["avx2"], dynamic=True) == "SSE3 AVX AVX2 F16C FMA BMI2"
    assert "portable build" in llama_cpu_variant(info, ["avx512f"])
    assert "no variant of this build" in llama_cpu_variant(info, ["avx512f"], dynamic=True)
