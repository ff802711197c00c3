"""Hardware detection: this machine for real; NVML, sysfs and Apple through fakes at that boundary."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from desktop_app.core import hardware as hwmod
from desktop_app.core.errors import AtelierError
from desktop_app.core.hardware import (
    detect_amdsmi,
    Hardware,
    apple_usable_bytes,
    detect_apple,
    detect_hardware,
    detect_llama_backend,
    detect_nvidia,
    detect_sysfs_gpus,
    detect_torch,
    probe_hardware,
)

GiB = 2**30
PROFILES = Path(__file__).resolve().parents[1] / "profiles"


# --- this machine ---------------------------------------------------------------------------
def test_detects_this_machine_fast_and_without_gpus():
    best = min(_timed(lambda: detect_hardware(refresh=True)) for _ in range(3))
    hw = detect_hardware()
    assert best < 300, f"detection took {best:.0f} ms"
    assert hw.cpu_name and hw.cpu_cores >= 1
    assert hw.ram_total_bytes > 1 * GiB and 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.gpus == []  # this VM has no GPU: the contract says []
    assert hw.summary().startswith("CPU only · ") and hw.summary().endswith("GB RAM")
    d = hw.to_dict()
    assert set(d["cpu"]) == {"name", "cores", "flags"}
    assert d["gpus"] == [] and d["source"] == "detected"
    json.dumps(d)  # serialisable
    assert detect_hardware() is hw  # cached per process


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def test_cpu_flags_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f\n")
    name, cores, flags = hwmod.detect_cpu(info)
    assert name == "Test CPU 9000" and cores >= 1
    assert {"avx2", "avx512f", "fma"} <= set(flags) and "fpu" not in flags
    arm = tmp_path / "cpuinfo-arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm asimddp sve\nCPU implementer\t: 0x41\n")
    _, _, flags = hwmod.detect_cpu(arm)
    assert {"neon", "asimd", "dotprod", "sve"} <= set(flags)


def test_llama_backend_read_from_library_files(tmp_path):
    installed = importlib.util.find_spec("llama_cpp") is not None
    assert detect_llama_backend() == ("cpu" if installed else None)
    pkg = tmp_path / "llama_cpp"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "lib" / "libllama.so").write_bytes(b"")
    (pkg / "lib" / "libggml-cpu.so").write_bytes(b"")
    assert detect_llama_backend(pkg) == "cpu"
    (pkg / "lib" / "libggml-cuda.so").write_bytes(b"")
    assert detect_llama_backend(pkg) == "cuda"
    (pkg / "lib" / "libggml-cuda.so").unlink()
    (pkg / "lib" / "libggml-metal.dylib").write_bytes(b"")
    assert detect_llama_backend(pkg) == "metal"
    assert detect_llama_backend(None) is None


def test_torch_build_read_without_import(tmp_path):
    real = detect_torch()
    assert real["installed"] and real["version"].startswith("2.13.0") and real["cuda"] is None
    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "version.py").write_text(
        "from typing import Optional\n__version__ = '2.13.0+cu128'\ncuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n"
    )
    t = detect_torch(pkg)
    assert t == {"installed": True, "version": "2.13.0+cu128", "cuda": "12.8", "hip": None, "mps": False}
    assert detect_torch(None)["installed"] is False


# --- NVIDIA through a fake NVML module (the driver library is what this machine lacks) ------
class _Mem:
    def __init__(self, total, free):
        self.total, self.free, self.used = total, free, total - free


class _Pci:
    def __init__(self, bus):
        self.busId = bus


class FakeNVML:
    """The subset of pynvml that detection calls, with two GPUs listed out of PCI order."""

    class NVMLError_LibraryNotFound(Exception):
        pass

    def __init__(self, devices=None, fail_init=None):
        self.devices = devices or []
        self.fail_init = fail_init
        self.shutdown_called = False

    def nvmlInit(self):
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self):
        self.shutdown_called = True

    def nvmlSystemGetDriverVersion(self):
        return "550.54.14"

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetName(self, h):
        return h["name"].encode()  # old pynvml returned bytes

    def nvmlDeviceGetMemoryInfo(self, h):
        if h.get("broken"):
            raise RuntimeError("GPU is lost")
        return _Mem(h["total"], h["free"])

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return h["cc"]

    def nvmlDeviceGetPciInfo(self, h):
        return _Pci(h["bus"])


def test_nvidia_gpus_from_nvml_sorted_by_pci_bus():
    nv = FakeNVML([
        {"name": "NVIDIA GeForce RTX 3060", "total": 12 * GiB, "free": 11 * GiB, "cc": (8, 6), "bus": "00000000:02:00.0"},
        {"name": "NVIDIA GeForce RTX 4090", "total": 24 * GiB, "free": 23 * GiB, "cc": (8, 9), "bus": "00000000:01:00.0"},
    ])
    gpus = detect_nvidia(nv)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]
    g = gpus[0]
    assert (g.vendor, g.vram_total_bytes, g.vram_free_bytes, g.driver, g.compute_capability, g.index) == (
        "nvidia", 24 * GiB, 23 * GiB, "550.54.14", "8.9", 0)
    assert nv.shutdown_called


def test_nvml_without_driver_means_no_gpu_and_no_crash():
    nv = FakeNVML(fail_init=FakeNVML.NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    notes: list[str] = []
    assert detect_nvidia(nv, notes) == [] and notes == []
    broken = FakeNVML([{"name": "x", "broken": True, "cc": (8, 0), "bus": "0"},
                       {"name": "NVIDIA A100", "total": 80 * GiB, "free": 79 * GiB, "cc": (8, 0), "bus": "1"}])
    gpus = detect_nvidia(broken, notes)
    assert [g.name for g in gpus] == ["NVIDIA A100"] and "GPU is lost" in notes[0]


# --- AMD/Intel through a fake sysfs tree -----------------------------------------------------
def _card(root: Path, n: int, vendor: int, vram: int | None, used: int = 0, gtt: int = 0, name: str = ""):
    dev = root / "class" / "drm" / f"card{n}" / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(f"{vendor:#06x}\n")
    (dev / "device").write_text("0x744c\n")
    if vram is not None:
        (dev / "mem_info_vram_total").write_text(f"{vram}\n")
        (dev / "mem_info_vram_used").write_text(f"{used}\n")
        (dev / "mem_info_gtt_total").write_text(f"{gtt}\n")
    if name:
        (dev / "product_name").write_text(name + "\n")
    (root / "class" / "drm" / f"card{n}-DP-1").mkdir()  # connectors are not cards


def test_sysfs_discrete_amd_counted_integrated_not(tmp_path):
    _card(tmp_path, 0, 0x1002, 512 * 2**20, used=100 * 2**20, gtt=16 * GiB)  # APU carve-out
    _card(tmp_path, 1, 0x1002, 24 * GiB, used=2 * GiB, gtt=32 * GiB, name="AMD Radeon RX 7900 XTX")
    _card(tmp_path, 2, 0x10DE, None)  # NVIDIA: NVML's job
    notes: list[str] = []
    gpus = detect_sysfs_gpus(tmp_path, notes)
    assert len(gpus) == 1
    g = gpus[0]
    assert (g.vendor, g.name, g.vram_total_bytes, g.vram_free_bytes) == ("amd", "AMD Radeon RX 7900 XTX", 24 * GiB, 22 * GiB)
    assert any("integrated" in n for n in notes)
    assert detect_sysfs_gpus(tmp_path / "missing") == []


def test_probe_with_injected_boundaries(tmp_path):
    _card(tmp_path, 0, 0x1002, 16 * GiB, used=GiB, gtt=16 * GiB)
    nv = FakeNVML([{"name": "NVIDIA GeForce RTX 4090", "total": 24 * GiB, "free": 23 * GiB, "cc": (8, 9), "bus": "1"}])
    hw = probe_hardware(nvml=nv, sysfs_root=tmp_path, apple=None)
    assert [g.vendor for g in hw.gpus] == ["nvidia", "amd"]
    assert [g.index for g in hw.gpus] == [0, 1]
    assert hw.summary().startswith("2× NVIDIA GeForce RTX 4090 · 40 GB VRAM")
    # this machine's llama.cpp build is CPU-only: the GPU is there but unusable, and we say how to fix it
    if hw.llama_backend == "cpu":
        assert "GGML_CUDA=on" in (hw.backend_warning() or "")


def test_apple_unified_memory_share():
    assert apple_usable_bytes(16 * GiB) == int(16 * GiB * 2 / 3)
    assert apple_usable_bytes(128 * GiB) == int(128 * GiB * 0.75)
    assert apple_usable_bytes(64 * GiB, wired_limit_mb=56 * 1024) == 56 * GiB
    gpus = detect_apple({"chip": "Apple M2 Max GPU", "wired_limit_mb": None}, 32 * GiB, 20 * GiB)
    assert len(gpus) == 1 and gpus[0].vendor == "apple" and gpus[0].unified_memory
    assert gpus[0].vram_total_bytes == int(32 * GiB * 2 / 3) and gpus[0].vram_free_bytes == 20 * GiB
    assert detect_apple(None, 32 * GiB, 20 * GiB) == []


# --- profiles (ATELIER_HARDWARE) --------------------------------------------------------------
@pytest.mark.parametrize("profile", sorted(p.name for p in PROFILES.glob("*.json")))
def test_profiles_load_and_round_trip(profile, monkeypatch):
    path = PROFILES / profile
    monkeypatch.setenv("ATELIER_HARDWARE", str(path))
    hw = detect_hardware()
    raw = json.loads(path.read_text())
    d = hw.to_dict()
    for key in ("ram_total_bytes", "ram_available_bytes", "llama_backend"):
        assert d[key] == raw[key]
    assert d["cpu"] == raw["cpu"]
    assert [{k: g[k] for k in raw_g} for g, raw_g in zip(d["gpus"], raw["gpus"])] == raw["gpus"]
    assert d["source"].startswith("profile:")
    again = Hardware.from_dict(d)
    assert again.to_dict()["gpus"] == d["gpus"]
    assert hw.backend_warning() is None  # every shipped profile has a matching build


def test_profile_summary_texts(monkeypatch):
    monkeypatch.setenv("ATELIER_HARDWARE", str(PROFILES / "rtx4090_24gb.json"))
    assert detect_hardware().summary() == "NVIDIA GeForce RTX 4090 · 24 GB VRAM · 64 GB RAM"
    monkeypatch.setenv("ATELIER_HARDWARE", str(PROFILES / "cpu_only_8gb.json"))
    assert detect_hardware().summary() == "CPU only · 8 GB RAM"
    monkeypatch.setenv("ATELIER_HARDWARE", str(PROFILES / "2x_a100_80gb.json"))
    assert detect_hardware().summary().startswith("2× NVIDIA A100-SXM4-80GB · 160 GB VRAM")


def test_gpu_with_cpu_build_warns_with_fix():
    d = json.loads((PROFILES / "rtx4090_24gb.json").read_text())
    d["llama_backend"] = "cpu"
    hw = Hardware.from_dict(d)
    w = hw.backend_warning()
    assert w and "RTX 4090" in w and "CMAKE_ARGS=\"-DGGML_CUDA=on\"" in w and "--no-cache-dir" in w
    assert "GPU unused" in hw.summary()


def test_bad_profiles_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_HARDWARE", str(tmp_path / "none.json"))
    with pytest.raises(AtelierError, match="does not exist"):
        detect_hardware(refresh=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    monkeypatch.setenv("ATELIER_HARDWARE", str(bad))
    with pytest.raises(AtelierError, match="not readable JSON"):
        detect_hardware(refresh=True)
    bad.write_text(json.dumps({"cpu": {}, "ram_total_bytes": 1, "gpus": [{"vendor": "3dfx", "name": "Voodoo",
                                                                            "vram_total_bytes": 1}]}))
    with pytest.raises(AtelierError, match="vendor must be one of"):
        detect_hardware(refresh=True)
    bad.write_text(json.dumps({"cpu": {}, "gpus": []}))
    with pytest.raises(AtelierError, match="ram_total_bytes"):
        detect_hardware(refresh=True)


class FakeAMDSMI:
    """The amdsmi module's calls we use (boundary fake: no ROCm here). Sizes in MiB like the real one."""

    class AmdSmiMemoryType:
        GTT = "gtt"

    def __init__(self, cards):
        self.cards = cards
        self.inited = self.shut = False

    def amdsmi_init(self):
        self.inited = True

    def amdsmi_shut_down(self):
        self.shut = True

    def amdsmi_get_processor_handles(self):
        return list(range(len(self.cards)))

    def amdsmi_get_gpu_vram_usage(self, h):
        c = self.cards[h]
        return {"vram_total": c["total_mib"], "vram_used": c["used_mib"]}

    def amdsmi_get_gpu_memory_total(self, h, kind):
        assert kind == "gtt"
        return self.cards[h]["gtt"]

    def amdsmi_get_gpu_asic_info(self, h):
        return {"market_name": self.cards[h]["name"]}

    def amdsmi_get_gpu_device_bdf(self, h):
        return f"0000:0{h + 3}:00.0"

    def amdsmi_get_gpu_driver_info(self, h):
        return {"driver_version": "6.8.5"}


def test_amdsmi_replaces_sysfs_entries_and_skips_integrated(tmp_path):
    _card(tmp_path, 1, 0x1002, 24 * GiB, used=2 * GiB, gtt=32 * GiB)  # the same card, seen by sysfs
    smi = FakeAMDSMI([
        {"name": "AMD Radeon RX 7900 XTX", "total_mib": 24 * 1024, "used_mib": 2048, "gtt": 32 * GiB},
        {"name": "AMD Radeon 780M", "total_mib": 512, "used_mib": 100, "gtt": 16 * GiB},  # APU
    ])
    notes: list[str] = []
    gpus = detect_amdsmi(smi, notes)
    assert smi.inited and smi.shut
    assert [(g.name, g.vram_total_bytes, g.vram_free_bytes, g.driver) for g in gpus] == [
        ("AMD Radeon RX 7900 XTX", 24 * GiB, 22 * GiB, "6.8.5")]
    assert any("integrated" in n for n in notes)
    hw = probe_hardware(nvml=FakeNVML([]), sysfs_root=tmp_path, apple=None, amdsmi=smi)
    assert [(g.vendor, g.name) for g in hw.gpus] == [("amd", "AMD Radeon RX 7900 XTX")]  # one entry per card
    assert detect_amdsmi(None) == []
