"""Hardware detection: CPU, RAM, GPUs that can hold model weights, and the installed backends.

Fast (< 300 ms) and safe without drivers: every probe is wrapped so a missing or broken driver
gives "no GPU" rather than a crash. Nothing here imports torch or llama_cpp: the llama.cpp backend
is read from the library files inside the ``llama_cpp`` package, torch's CUDA/ROCm build from
``torch/version.py`` text.

``ATELIER_HARDWARE=profile.json`` replaces detection with a profile in the same shape as the
hardware part of ``atelier doctor --json`` (see :meth:`Hardware.to_dict`), so the fitting logic
can be exercised for machines we do not have, and the whole app believes it.

The boundaries this machine lacks are injectable for tests: ``probe_hardware(nvml=<module-like>,
sysfs_root=<fake /sys>, apple=<dict>)``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.errors import AtelierError
from desktop_app.core.gpu_detect import (  # noqa: F401 - also this module's public names
    GPU, _apple_probe, _read_int, _s, _sysctl, apple_usable_bytes, detect_amdsmi, detect_apple, detect_nvidia,
    detect_sysfs_gpus,
)

GiB = 1024**3
VENDORS = ("nvidia", "amd", "apple", "intel")
LLAMA_BACKENDS = ("cpu", "cuda", "metal", "vulkan", "hip", "sycl")
# which llama.cpp backends can drive which GPU vendor
USABLE_BACKENDS = {
    "nvidia": ("cuda", "vulkan"),
    "amd": ("hip", "vulkan"),
    "apple": ("metal",),
    "intel": ("sycl", "vulkan"),
}
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16", "fphp", "asimdhp", "dotprod",
)


@dataclass
class Hardware:
    cpu_name: str
    cpu_cores: int
    cpu_flags: list[str]
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: list[GPU] = field(default_factory=list)
    llama_backend: str | None = None  # None: llama-cpp-python is not installed
    torch: dict = field(default_factory=dict)  # installed, version, cuda, hip, mps
    os: str = ""
    source: str = "detected"  # or "profile:<path>"
    notes: list[str] = field(default_factory=list)  # what detection could not do (not errors)
    detect_ms: float = 0.0

    # --- views ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The hardware part of ``doctor --json`` and the shape of a profile file."""
        return {
            "cpu": {"name": self.cpu_name, "cores": self.cpu_cores, "flags": list(self.cpu_flags)},
            "ram_total_bytes": int(self.ram_total_bytes),
            "ram_available_bytes": int(self.ram_available_bytes),
            "gpus": [g.to_dict() for g in self.gpus],
            "llama_backend": self.llama_backend,
            "torch": dict(self.torch),
            "os": self.os,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "profile") -> "Hardware":
        try:
            cpu = d.get("cpu") or {}
            gpus = []
            for i, g in enumerate(d.get("gpus") or []):
                vendor = str(g["vendor"]).lower()
                if vendor not in VENDORS:
                    raise ValueError(f"gpus[{i}].vendor must be one of {', '.join(VENDORS)}, not {vendor!r}")
                total = int(g["vram_total_bytes"])
                gpus.append(GPU(
                    vendor=vendor, name=str(g.get("name") or vendor), vram_total_bytes=total,
                    vram_free_bytes=int(g.get("vram_free_bytes", total)), driver=g.get("driver"),
                    compute_capability=(str(g["compute_capability"]) if g.get("compute_capability") else None),
                    index=i, pci_bus_id=g.get("pci_bus_id"),
                    unified_memory=bool(g.get("unified_memory", vendor == "apple")),
                ))
            backend = d.get("llama_backend", "cpu")
            if backend is not None and backend not in LLAMA_BACKENDS:
                raise ValueError(f"llama_backend must be one of {', '.join(LLAMA_BACKENDS)}, not {backend!r}")
            ram_total = int(d["ram_total_bytes"])
            torch_info = d.get("torch")
            if not isinstance(torch_info, dict):
                # a profile stands for a machine where the app is installed properly: torch matches its GPU
                vendors = {g.vendor for g in gpus}
                torch_info = {"installed": True, "version": None, "cuda": "nvidia" in vendors or None,
                              "hip": "amd" in vendors or None, "mps": "apple" in vendors}
            return cls(
                cpu_name=str(cpu.get("name") or "unknown CPU"),
                cpu_cores=int(cpu.get("cores") or 1),
                cpu_flags=[str(x) for x in cpu.get("flags") or []],
                ram_total_bytes=ram_total,
                ram_available_bytes=int(d.get("ram_available_bytes", ram_total)),
                gpus=gpus,
                llama_backend=backend,
                torch=torch_info,
                os=str(d.get("os") or ""),
                source=source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AtelierError(f"Hardware profile {source}: invalid ({type(exc).__name__}: {exc}).") from exc

    def summary(self) -> str:
        """Status-bar text, e.g. 'NVIDIA GeForce RTX 4090 · 24 GB VRAM · 64 GB RAM'."""
        ram = f"{_gb(self.ram_total_bytes)} GB RAM"
        if not self.gpus:
            return f"CPU only · {ram}"
        g = self.gpus[0]
        name = g.name if len(self.gpus) == 1 else f"{len(self.gpus)}× {g.name}"
        vram = sum(x.vram_total_bytes for x in self.gpus)
        if g.unified_memory:
            text = f"{name} · {_gb(vram)} GB unified (GPU share) · {ram}"
        else:
            text = f"{name} · {_gb(vram)} GB VRAM · {ram}"
        if self.backend_warning():
            text += " · GPU unused by llama.cpp"
        return text

    @property
    def gpu_backend_usable(self) -> bool:
        """True when the installed llama.cpp build can use at least one of the GPUs."""
        return any(self.llama_backend in USABLE_BACKENDS.get(g.vendor, ()) for g in self.gpus)

    def backend_warning(self) -> str | None:
        """A sentence when there is a GPU the installed llama.cpp build cannot use, with the fix."""
        if not self.gpus or self.gpu_backend_usable:
            return None
        g = self.gpus[0]
        want = USABLE_BACKENDS.get(g.vendor, ("cuda",))[0]
        flag = {"cuda": "-DGGML_CUDA=on", "metal": "-DGGML_METAL=on", "hip": "-DGGML_HIP=on",
                "sycl": "-DGGML_SYCL=on", "vulkan": "-DGGML_VULKAN=on"}[want]
        built = "is not installed" if self.llama_backend is None else f"was built for {self.llama_backend.upper()} only"
        return (
            f"{g.name} found, but llama-cpp-python {built}, so chat models run on the CPU "
            f"(much slower). Fix: rebuild it with {want.upper()} — "
            f'CMAKE_ARGS="{flag}" pip install --force-reinstall --no-cache-dir llama-cpp-python '
            "(the README's set-up command does this when the toolkit is present)."
        )

    @property
    def torch_device(self) -> str:
        """'cuda', 'mps' or 'cpu': where torch work (diffusion) would run."""
        t = self.torch or {}
        if not t.get("installed", False):
            return "cpu"
        vendors = {g.vendor for g in self.gpus}
        if "nvidia" in vendors and t.get("cuda"):
            return "cuda"
        if "amd" in vendors and t.get("hip"):
            return "cuda"  # ROCm builds of torch use the cuda device name
        if "apple" in vendors and t.get("mps"):
            return "mps"
        return "cpu"

    def torch_warning(self) -> str | None:
        if not self.gpus or self.torch_device != "cpu":
            return None
        if not (self.torch or {}).get("installed", False):
            return None
        g = self.gpus[0]
        if g.vendor == "nvidia":
            return (f"{g.name} found, but the installed torch is a CPU build, so image models run on the CPU. "
                    "Fix: pip install --force-reinstall torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128")
        return f"{g.name} found, but the installed torch cannot use it; image models run on the CPU."

    def warnings(self) -> list[str]:
        return [w for w in (self.backend_warning(), self.torch_warning()) if w]


def _gb(n: int) -> str:
    v = n / GiB
    return f"{v:.0f}" if v >= 10 or abs(v - round(v)) < 0.05 else f"{v:.1f}"


# --- CPU / RAM ---------------------------------------------------------------------------
def detect_cpu(cpuinfo_path: str | Path = "/proc/cpuinfo") -> tuple[str, int, list[str]]:
    name = ""
    flags: set[str] = set()
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if not name and key in ("model name", "hardware", "cpu model", "processor") and not val.strip().isdigit():
            name = val.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
    if "asimd" in flags:
        flags.add("neon")
    if "asimddp" in flags:
        flags.add("dotprod")
    machine = platform.machine().lower()
    if sys.platform == "darwin":
        name = name or _sysctl("machdep.cpu.brand_string") or ""
        if machine in ("arm64", "aarch64"):
            flags |= {"neon", "dotprod", "fphp"}
        else:
            feats = (_sysctl("machdep.cpu.features") or "") + " " + (_sysctl("machdep.cpu.leaf7_features") or "")
            flags |= {f.lower().replace(".", "_") for f in feats.split()}
    if not flags and machine in ("arm64", "aarch64"):
        flags.add("neon")
    if not name:
        name = platform.processor() or platform.machine() or "unknown CPU"
    cores = 0
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or 0
    except Exception:  # noqa: BLE001
        pass
    cores = cores or os.cpu_count() or 1
    keep = sorted(f for f in flags if f in INTERESTING_FLAGS)
    return name, int(cores), keep


def detect_ram() -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except Exception:  # noqa: BLE001
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return int(pages), int(pages)
        except (ValueError, OSError, AttributeError):
            return 0, 0


# --- installed backends (without importing them) ------------------------------------------
def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            return Path(loc)
    return Path(spec.origin).parent if spec.origin else None


def detect_llama_backend(package_dir: Path | None | str = "auto") -> str | None:
    """Which backend the installed llama-cpp-python was built with, from its library files.

    None when llama-cpp-python is not installed; 'cpu' when no GPU backend library is present.
    """
    pkg = _package_dir("llama_cpp") if package_dir == "auto" else (Path(package_dir) if package_dir else None)
    if pkg is None or not pkg.exists():
        return None
    names: list[str] = []
    for sub in ("lib", "lib64", "."):
        d = pkg / sub
        try:
            names += [p.name.lower() for p in d.iterdir() if p.is_file()]
        except OSError:
            pass
    joined = " ".join(names)
    for backend, pattern in (("cuda", "ggml-cuda"), ("metal", "ggml-metal"), ("hip", "ggml-hip"),
                             ("vulkan", "ggml-vulkan"), ("sycl", "ggml-sycl")):
        if pattern in joined:
            return backend
    return "cpu"


def detect_torch(package_dir: Path | None | str = "auto") -> dict:
    """torch's version and GPU build from torch/version.py (text only; torch is not imported)."""
    pkg = _package_dir("torch") if package_dir == "auto" else (Path(package_dir) if package_dir else None)
    info: dict[str, Any] = {"installed": False, "version": None, "cuda": None, "hip": None, "mps": False}
    if pkg is None:
        return info
    try:
        text = (pkg / "version.py").read_text(errors="replace")
    except OSError:
        return info
    info["installed"] = True

    def grab(var: str) -> str | None:
        m = re.search(rf"^{var}\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        return m.group(1) if m else None

    info["version"] = grab("__version__")
    info["cuda"] = grab("cuda")
    info["hip"] = grab("hip")
    # macOS arm64 wheels are built with MPS
    info["mps"] = sys.platform == "darwin" and platform.machine().lower() == "arm64"
    return info


# --- entry points ---------------------------------------------------------------------------
def probe_hardware(
    nvml: Any = None,
    sysfs_root: str | Path | None = None,
    apple: dict | None | str = "auto",
    cpuinfo_path: str | Path = "/proc/cpuinfo",
    llama_package_dir: Path | None | str = "auto",
    torch_package_dir: Path | None | str = "auto",
    amdsmi: Any = "auto",
) -> Hardware:
    """Detect this machine (no cache). Arguments inject the boundaries: a fake NVML module,
    a fake sysfs tree, a fake Apple probe result, a fake AMD SMI module."""
    import time

    t0 = time.perf_counter()
    notes: list[str] = []
    name, cores, flags = detect_cpu(cpuinfo_path)
    ram_total, ram_avail = detect_ram()
    gpus: list[GPU] = []
    try:
        gpus += detect_nvidia(nvml, notes)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"NVIDIA detection failed: {type(exc).__name__}: {exc}")
    if sysfs_root is None:
        sysfs_root = "/sys" if sys.platform.startswith("linux") else None
    if sysfs_root is not None:
        try:
            gpus += detect_sysfs_gpus(sysfs_root, notes)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"sysfs GPU detection failed: {type(exc).__name__}: {exc}")
    try:
        amd = detect_amdsmi(amdsmi, notes)
    except Exception as exc:  # noqa: BLE001
        amd = []
        notes.append(f"AMD SMI detection failed: {type(exc).__name__}: {exc}")
    if amd:  # AMD SMI knows the same cards better than sysfs: keep one entry per card
        gpus = [g for g in gpus if g.vendor != "amd"] + amd
    if apple == "auto":
        apple = _apple_probe()
    gpus += detect_apple(apple, ram_total, ram_avail)  # type: ignore[arg-type]
    for i, g in enumerate(gpus):
        g.index = i
    hw = Hardware(
        cpu_name=name, cpu_cores=cores, cpu_flags=flags, ram_total_bytes=ram_total,
        ram_available_bytes=ram_avail, gpus=gpus,
        llama_backend=detect_llama_backend(llama_package_dir),
        torch=detect_torch(torch_package_dir),
        os=f"{platform.system()} {platform.release()} {platform.machine()}",
        notes=notes,
    )
    hw.detect_ms = (time.perf_counter() - t0) * 1000
    return hw


def load_profile(path: str | Path) -> Hardware:
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise AtelierError(f"Hardware profile {p} (ATELIER_HARDWARE) does not exist.") from None
    except (OSError, ValueError) as exc:
        raise AtelierError(f"Hardware profile {p} (ATELIER_HARDWARE) is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AtelierError(f"Hardware profile {p} (ATELIER_HARDWARE) must hold a JSON object.")
    # a whole `doctor --json` output works as a profile too
    return Hardware.from_dict(data, source=f"profile:{p}")


_cache: dict[str, Hardware] = {}
_cache_lock = threading.Lock()


def detect_hardware(refresh: bool = False) -> Hardware:
    """This machine's hardware (or the ATELIER_HARDWARE profile), cached per process."""
    key = os.environ.get("ATELIER_HARDWARE", "")
    with _cache_lock:
        if not refresh and key in _cache:
            return _cache[key]
    hw = load_profile(key) if key else probe_hardware()
    with _cache_lock:
        _cache[key] = hw
    return hw
