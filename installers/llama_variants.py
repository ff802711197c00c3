"""A portable *and* fast llama-cpp-python for x86-64 (issue 11): llama.cpp's runtime-dispatched CPU
variants, as llama.cpp's own releases ship them. One ``libggml-cpu-<level>.so`` per x86 level
(x64, sse42, haswell, skylakex, icelake, zen4, alderlake, sapphirerapids, …) is built with
``GGML_BACKEND_DL=ON GGML_CPU_ALL_VARIANTS=ON``; at run time one of them is loaded: the best this
CPU runs, so AVX-512 CPUs use their AVX-512 code and AVX2-only CPUs still run.

llama-cpp-python 0.3.36 does neither part itself, so its sdist is patched here before the build:

* ``CMakeLists.txt`` installs the variant libraries into ``llama_cpp/lib`` (it installs only the
  ``ggml-cpu`` target);
* ``llama_cpp/llama_cpp.py`` loads a CPU backend right after ``libllama`` (llama.cpp refuses to
  load a model when no backend is loaded): the variant named by ``ATELIER_GGML_CPU_VARIANT`` (a
  file name; Atelier chooses it: ``desktop_app/core/cpu_variants.py``), else ggml's own choice
  (``ggml_backend_load_all_from_path``), so that other users of the package (llama-cpp-python's
  own server) work too.

The wheel is built once and kept in ``~/.cache/atelier/wheels`` under a name of its own (pip's
wheel cache keys on the sdist, not on CMAKE_ARGS, so it would hand the portable wheel back).

    python installers/llama_variants.py --out DIR     # build (or reuse) the wheel, print its path
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MARK = "# --- Atelier: runtime-dispatched CPU variants (issue 11) ---"
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF")
CACHE = Path(os.environ.get("ATELIER_WHEEL_CACHE") or Path.home() / ".cache" / "atelier" / "wheels")

LOADER = '''
{mark}
def _atelier_load_cpu_backend() -> None:
    import ctypes as _ct
    import os as _os
    import sys as _sys

    names = sorted(p.name for p in _base_path.glob("*ggml-cpu-*") if p.suffix in (".so", ".dll", ".dylib"))
    if not names:
        return  # not a dynamic-backend build: the CPU backend is linked in
    # the very libggml that libllama loaded (a wheel holds copies, not links: libggml.so and
    # libggml.so.0 are two files, and a second copy would have a registry of its own)
    where = ""
    if _sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as maps:
                where = next((ln.split()[-1] for ln in maps if "/libggml.so" in ln), "")
        except OSError:
            pass
    ggml = _ct.CDLL(where or str(next(p for p in _base_path.iterdir() if p.stem in ("ggml", "libggml"))))
    chosen = _os.environ.get("ATELIER_GGML_CPU_VARIANT", "")
    if chosen in names:
        ggml.ggml_backend_load.argtypes = [_ct.c_char_p]
        ggml.ggml_backend_load.restype = _ct.c_void_p
        if ggml.ggml_backend_load(str(_base_path / chosen).encode()):
            return
    ggml.ggml_backend_load_all_from_path.argtypes = [_ct.c_char_p]
    ggml.ggml_backend_load_all_from_path(str(_base_path).encode())


_atelier_load_cpu_backend()
'''


def variant_tags(src: Path) -> list[str]:
    """The x86 variant tags the vendored ggml builds (read from its CMakeLists, not hard-coded)."""
    text = (src / "vendor" / "llama.cpp" / "ggml" / "src" / "CMakeLists.txt").read_text()
    x86 = text.split('GGML_SYSTEM_ARCH STREQUAL "x86"', 2)[-1].split("elseif", 1)[0]
    return re.findall(r"ggml_add_cpu_backend_variant\(\s*([A-Za-z0-9_.]+)", x86)


def patch(src: Path) -> list[str]:
    """Patch an unpacked llama-cpp-python sdist in place; returns the variant tags it installs."""
    tags = variant_tags(src)
    cm = src / "CMakeLists.txt"
    text = cm.read_text()
    if MARK not in text:
        anchor = "    llama_cpp_python_install_target(ggml-cpu)\n"
        assert anchor in text, "llama-cpp-python's CMakeLists changed: update installers/llama_variants.py"
        lines = "".join(f"    llama_cpp_python_install_target(ggml-cpu-{t})\n" for t in tags)
        cm.write_text(text.replace(anchor, anchor + f"    {MARK}\n" + lines))
    py = src / "llama_cpp" / "llama_cpp.py"
    text = py.read_text()
    if MARK not in text:
        anchor = "_lib = load_shared_library(_lib_base_name, _base_path)\n"
        assert anchor in text, "llama-cpp-python's llama_cpp.py changed: update installers/llama_variants.py"
        py.write_text(text.replace(anchor, anchor + LOADER.format(mark=MARK), 1))
    return tags


def wheel_name(version: str) -> str:
    return f"llama_cpp_python-{version}+cpuvariants"


def build(version: str, python: str = sys.executable, out: Path = CACHE) -> Path:
    """The patched wheel (built once, then reused from ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    done = sorted(out.glob(f"llama_cpp_python-{version}+cpuvariants-*.whl"))
    if done:
        return done[-1]
    with tempfile.TemporaryDirectory(prefix="atelier-llama-") as tmp:
        tmp = Path(tmp)
        subprocess.run([python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(tmp),
                        f"llama-cpp-python=={version}"], check=True)
        (sdist,) = tmp.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as tf:
            tf.extractall(tmp, filter="data")
        src = tmp / f"llama_cpp_python-{version}"
        patch(src)
        init = src / "llama_cpp" / "__init__.py"  # a version of its own: pip never mixes it up with the portable one
        init.write_text(init.read_text().replace(f'__version__ = "{version}"', f'__version__ = "{version}+cpuvariants"'))
        env = dict(os.environ, CMAKE_ARGS=CMAKE_ARGS)
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp / "dist"), str(src)],
                       check=True, env=env)
        (whl,) = (tmp / "dist").glob("*.whl")
        target = out / whl.name
        shutil.copy2(whl, target.with_suffix(".part"))
        os.replace(target.with_suffix(".part"), target)
        return target


def refresh_loader(wheel: Path) -> None:
    """Put this file's loader into an already built wheel (no rebuild: only llama_cpp.py and the
    wheel's RECORD change)."""
    import base64
    import hashlib
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        items = {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
    py = items["llama_cpp/llama_cpp.py"].decode()
    start = py.index("\n" + MARK)
    end = py.index("_atelier_load_cpu_backend()\n", start) + len("_atelier_load_cpu_backend()\n")
    py = py[:start] + LOADER.format(mark=MARK).rstrip("\n") + "\n" + py[end:]
    compile(py, "llama_cpp.py", "exec")
    items["llama_cpp/llama_cpp.py"] = py.encode()
    record = next(n for n in items if n.endswith(".dist-info/RECORD"))

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    items[record] = ("".join(f"{n},{digest(d)},{len(d)}\n" for n, d in items.items() if n != record)
                     + f"{record},,\n").encode()
    part = wheel.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in items.items():
            z.writestr(n, d)
    os.replace(part, wheel)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="0.3.36")
    ap.add_argument("--out", type=Path, default=CACHE)
    ap.add_argument("--refresh-loader", type=Path, help="update the loader in this built wheel, then stop")
    args = ap.parse_args(argv)
    if args.refresh_loader:
        refresh_loader(args.refresh_loader)
        return 0
    print(build(args.version, out=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
