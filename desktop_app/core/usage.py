"""What the loaded models really use (Qt-free): the resident memory of each engine child process
(and its children) from psutil, and on NVIDIA GPUs the memory each process holds from NVML, plus
the machine's totals. Read in a worker, at most once a second (the resources panel)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SlotUsage:
    slot: str  # chat | image | ...
    description: str
    pid: int | None
    ram_bytes: int = 0
    vram_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Usage:
    slots: list[SlotUsage] = field(default_factory=list)
    ram_total_bytes: int = 0
    ram_used_bytes: int = 0
    gpus: list[dict] = field(default_factory=list)  # {name, total_bytes, used_bytes}

    def to_dict(self) -> dict:
        return asdict(self)


def process_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its children (0 when it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except (psutil.Error, OSError):
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.Error, OSError):
            pass
    return total


def own_rss() -> int:
    """This process's resident bytes (an engine child reports its own)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil: unknown
        return 0


def nvidia_usage() -> tuple[list[dict], dict[int, int]]:
    """([{name, total_bytes, used_bytes}], {pid: bytes}) from NVML; empty without an NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: nothing to report
        return [], {}
    gpus, by_pid = [], {}
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            gpus.append({"name": name.decode() if isinstance(name, bytes) else str(name),
                         "total_bytes": int(mem.total), "used_bytes": int(mem.used)})
            try:
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    by_pid[int(p.pid)] = by_pid.get(int(p.pid), 0) + int(p.usedGpuMemory or 0)
            except Exception:  # noqa: BLE001 - some drivers refuse the per-process query
                pass
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return gpus, by_pid


def measure(slots: dict[str, tuple[str, int | None]]) -> Usage:
    """``slots``: {slot: (description, engine pid)} of what is loaded."""
    import psutil

    vm = psutil.virtual_memory()
    gpus, by_pid = nvidia_usage()
    rows = []
    for slot, (description, pid) in slots.items():
        ram = process_rss(pid) if pid else 0
        rows.append(SlotUsage(slot, description, pid, ram, by_pid.get(pid, 0) if pid else 0))
    return Usage(rows, int(vm.total), int(vm.total - vm.available), gpus)
