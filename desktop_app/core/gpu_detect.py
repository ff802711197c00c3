"""GPU detection behind each vendor's boundary (NVML, AMD/Intel sysfs, amdsmi, Apple Silicon), each
probe safe without a driver. :mod:`desktop_app.core.hardware` puts the results together."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


GiB = 1024**3


@dataclass
class GPU:
    vendor: str
    name: str
    vram_total_bytes: int
    vram_free_bytes: int
    driver: str | None = None
    compute_capability: str | None = None
    index: int = 0
    pci_bus_id: str | None = None
    unified_memory: bool = False

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "vendor": self.vendor,
            "name": self.name,
            "vram_total_bytes": int(self.vram_total_bytes),
            "vram_free_bytes": int(self.vram_free_bytes),
        }
        if self.driver:
            d["driver"] = self.driver
        if self.compute_capability:
            d["compute_capability"] = self.compute_capability
        if self.pci_bus_id:
            d["pci_bus_id"] = self.pci_bus_id
        if self.unified_memory:
            d["unified_memory"] = True
        return d

    @property
    def cc_major(self) -> int:
        try:
            return int(str(self.compute_capability).split(".")[0])
        except (TypeError, ValueError):
            return 0


def _sysctl(key: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# --- NVIDIA (NVML) --------------------------------------------------------------------------
def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def detect_nvidia(nvml: Any = None, notes: list[str] | None = None) -> list[GPU]:
    """Every NVIDIA GPU through NVML. ``nvml`` is the ``pynvml`` module (or a fake in tests)."""
    if nvml is None:
        try:
            import pynvml as nvml  # nvidia-ml-py
        except Exception:  # noqa: BLE001
            return []
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA GPU
        name = type(exc).__name__
        if notes is not None and "LibraryNotFound" not in name and "DriverNotLoaded" not in name:
            notes.append(f"NVML failed to start: {name}: {exc}")
        return []
    gpus: list[GPU] = []
    try:
        try:
            driver = _s(nvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001
            driver = None
        for i in range(int(nvml.nvmlDeviceGetCount())):
            try:
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                mem = nvml.nvmlDeviceGetMemoryInfo(h)
                name = _s(nvml.nvmlDeviceGetName(h))
                try:
                    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
                    cc = f"{major}.{minor}"
                except Exception:  # noqa: BLE001
                    cc = None
                try:
                    bus = _s(nvml.nvmlDeviceGetPciInfo(h).busId).lower()
                except Exception:  # noqa: BLE001
                    bus = None
                gpus.append(GPU("nvidia", name, int(mem.total), int(mem.free), driver, cc, i, bus))
            except Exception as exc:  # noqa: BLE001 - one broken device must not hide the others
                if notes is not None:
                    notes.append(f"NVIDIA GPU {i}: {type(exc).__name__}: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    # NVML order is not CUDA order: CUDA_DEVICE_ORDER=PCI_BUS_ID (what we set for engines) sorts by bus id
    gpus.sort(key=lambda g: g.pci_bus_id or f"~{g.index:04d}")
    for i, g in enumerate(gpus):
        g.index = i
    return gpus


# --- AMD / Intel through sysfs (Linux) ----------------------------------------------------
def _read_int(p: Path) -> int | None:
    try:
        return int(p.read_text().strip(), 0)
    except (OSError, ValueError):
        return None


def detect_sysfs_gpus(sysfs_root: str | Path = "/sys", notes: list[str] | None = None) -> list[GPU]:
    """Discrete AMD (and Intel) GPUs from /sys/class/drm/card*/device/mem_info_vram_*.

    Integrated AMD GPUs (VRAM ≤ 4 GiB carved out of RAM with GTT ≥ 8 GiB and ≥ 4× VRAM, Ollama's
    rule) are not counted: their "VRAM" is system memory.
    """
    drm = Path(sysfs_root) / "class" / "drm"
    gpus: list[GPU] = []
    try:
        cards = sorted(p for p in drm.iterdir() if re.fullmatch(r"card\d+", p.name))
    except OSError:
        return []
    for card in cards:
        dev = card / "device"
        vendor_id = _read_int(dev / "vendor")
        vendor = {0x1002: "amd", 0x8086: "intel"}.get(vendor_id or 0)
        if vendor is None:
            continue
        total = _read_int(dev / "mem_info_vram_total")
        if not total:
            continue
        used = _read_int(dev / "mem_info_vram_used") or 0
        gtt = _read_int(dev / "mem_info_gtt_total") or 0
        if vendor == "amd" and total <= 4 * GiB and gtt >= 8 * GiB and gtt >= 4 * total:
            if notes is not None:
                notes.append(f"{card.name}: integrated AMD GPU ({total // 2**20} MiB carve-out) not counted as VRAM")
            continue
        name = ""
        for fname in ("product_name", "product_number"):
            try:
                name = (dev / fname).read_text().strip()
            except OSError:
                name = ""
            if name:
                break
        if not name:
            device_id = _read_int(dev / "device")
            name = f"{'AMD Radeon' if vendor == 'amd' else 'Intel'} GPU" + (f" [{device_id:#06x}]" if device_id else "")
        bus = None
        try:
            bus = os.path.basename(os.path.realpath(dev)) or None
        except OSError:
            pass
        driver = None
        try:
            driver = os.path.basename(os.readlink(dev / "driver"))
        except OSError:
            pass
        gpus.append(GPU(vendor, name, total, max(0, total - used), driver, None, len(gpus), bus))
    return gpus


def detect_amdsmi(amdsmi: Any = "auto", notes: list[str] | None = None) -> list[GPU]:
    """AMD GPUs through AMD SMI (the ``amdsmi`` Python package of ROCm) when it is installed.

    Better names than sysfs and the only source on Windows. Integrated GPUs are left out by the same
    rule as sysfs (small VRAM carve-out with a large GTT). Sizes come in MiB from ``vram_usage``.
    """
    if amdsmi == "auto":
        try:
            import amdsmi  # type: ignore[no-redef]
        except Exception:  # noqa: BLE001 - absent, or a broken ROCm install: sysfs still works
            return []
    if amdsmi is None:
        return []
    gpus: list[GPU] = []
    amdsmi.amdsmi_init()
    try:
        for h in amdsmi.amdsmi_get_processor_handles():
            usage = amdsmi.amdsmi_get_gpu_vram_usage(h)
            total = int(usage.get("vram_total", 0)) * 2**20
            used = int(usage.get("vram_used", 0)) * 2**20
            if not total:
                continue
            try:
                gtt = int(amdsmi.amdsmi_get_gpu_memory_total(h, amdsmi.AmdSmiMemoryType.GTT))
            except Exception:  # noqa: BLE001 - not every driver reports GTT
                gtt = 0
            if total <= 4 * GiB and gtt >= 8 * GiB and gtt >= 4 * total:
                if notes is not None:
                    notes.append(f"integrated AMD GPU ({total // 2**20} MiB carve-out) not counted as VRAM")
                continue
            try:
                name = str(amdsmi.amdsmi_get_gpu_asic_info(h).get("market_name") or "AMD GPU")
            except Exception:  # noqa: BLE001
                name = "AMD GPU"
            try:
                bus = str(amdsmi.amdsmi_get_gpu_device_bdf(h))
            except Exception:  # noqa: BLE001
                bus = None
            try:
                driver = str(amdsmi.amdsmi_get_gpu_driver_info(h).get("driver_version") or "") or None
            except Exception:  # noqa: BLE001
                driver = None
            gpus.append(GPU("amd", name, total, max(0, total - used), driver, None, len(gpus), bus))
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass
    return gpus


# --- Apple Silicon --------------------------------------------------------------------------
def apple_usable_bytes(ram_total: int, wired_limit_mb: int | None = None) -> int:
    """Metal's recommendedMaxWorkingSetSize, approximated: 2/3 of RAM up to 36 GB, ~75 % above;
    ``sysctl iogpu.wired_limit_mb`` (when set, > 0) overrides it."""
    if wired_limit_mb and wired_limit_mb > 0:
        return min(int(wired_limit_mb) * 2**20, ram_total)
    share = 2 / 3 if ram_total <= 36 * GiB else 0.75
    return int(ram_total * share)


def detect_apple(apple: dict | None, ram_total: int, ram_available: int) -> list[GPU]:
    """``apple`` = {"chip": str, "wired_limit_mb": int|None} when on Apple Silicon, else None."""
    if not apple:
        return []
    usable = apple_usable_bytes(ram_total, apple.get("wired_limit_mb"))
    free = min(usable, max(0, ram_available))
    return [GPU("apple", apple.get("chip") or "Apple Silicon GPU", usable, free, None, None, 0, None, True)]


def _apple_probe() -> dict | None:
    if sys.platform != "darwin" or platform.machine().lower() not in ("arm64", "aarch64"):
        return None
    chip = _sysctl("machdep.cpu.brand_string") or "Apple Silicon"
    wired = _sysctl("iogpu.wired_limit_mb")
    try:
        wired_mb = int(wired) if wired else None
    except ValueError:
        wired_mb = None
    return {"chip": f"{chip} GPU", "wired_limit_mb": wired_mb}
