"""What the chat and diffusion fitting share: units, the RAM margin, the per-GPU VRAM reserve."""

from __future__ import annotations

MiB = 2**20
GiB = 2**30
RAM_MARGIN = 512 * MiB  # left to the OS and the app itself


def _vram_reserve_bytes(reserve_mib: int | None) -> int:
    if reserve_mib is None:
        try:
            from desktop_app.core.settings import Settings

            reserve_mib = int(Settings().get("vram_reserve_mib"))
        except Exception:  # noqa: BLE001 - a broken settings file must not stop planning
            reserve_mib = 512
    return max(0, int(reserve_mib)) * MiB
