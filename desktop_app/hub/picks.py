"""Picks for this machine (Qt-free): the two or three catalog models of a task that run best here,
with the fit and an expected speed in words, for the welcome page.

Per machine, not per family: each family's best file for this machine (``best_per_family``: a
full-GPU file before a partial one), then the families ranked by where they run (all on the GPU,
then partly, then the CPU) and by size, the largest first (more capable), leaving out what is too
slow to recommend on this CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from desktop_app.hub.catalog import Catalog, CatalogEntry, Fit, _hw_view, fit_entry

# Where a model runs, best first (chat and image plans).
PLACE_RANK = {"gpu": 0, "partial": 1, "gpu_offload": 1, "cpu": 2, "gpu_sequential_offload": 3}
TOO_SLOW = ("slow", "very slow")


@dataclass
class Pick:
    entry: CatalogEntry
    fit: Fit
    speed: str  # the expected speed, in words

    def to_dict(self) -> dict:
        return {"id": self.entry.id, "family": self.entry.family, "task": self.entry.task,
                "size_bytes": self.entry.size_bytes, "license": self.entry.license, "fit": self.fit.to_dict(),
                "speed": self.speed}


def speed_words(entry: CatalogEntry, fit: Fit) -> str:
    """An honest expectation from the fit plan: tokens per second on a CPU where fitting estimated
    it; otherwise where it runs, which is what decides the speed."""
    if entry.task == "chat":
        if fit.plan == "gpu":
            return "fast: every layer on the GPU"
        if fit.plan == "partial":
            return f"medium: {fit.n_gpu_layers} of {fit.n_layers} layers on the GPU, the rest on the CPU"
        if fit.tokens_per_s:
            return f"about {fit.tokens_per_s:.0f} tokens per second on this CPU"
        return f"on the CPU ({fit.speed or 'speed unknown'})"
    if fit.plan == "gpu":
        return "seconds per image on the GPU"
    if fit.plan == "gpu_offload":
        return "on the GPU with part of the model in RAM: somewhat slower"
    return "on the CPU: a minute or more per image"


def picks_for_machine(catalog: Catalog, hw: Any, task: str, n: int = 3, installed_ids: Iterable[str] = ()
                      ) -> list[Pick]:
    hw = _hw_view(hw)
    installed = set(installed_ids)
    scored = []
    for eid in catalog.best_per_family(hw).values():
        e = catalog.get(eid)
        if e is None or e.task != task or e.needs_server or e.gated or e.record_id in installed:
            continue
        f = fit_entry(e, hw)
        if not f.fits or f.plan not in PLACE_RANK or (f.plan == "cpu" and f.speed in TOO_SLOW):
            continue
        if task == "image" and f.plan == "cpu" and e.size_bytes > 4e9:
            continue  # SDXL-size pipelines and up: many minutes per image on a CPU
        scored.append(((PLACE_RANK[f.plan], -(e.params_b or e.size_bytes / 1e9)), e, f))
    scored.sort(key=lambda t: t[0])
    return [Pick(e, f, speed_words(e, f)) for _k, e, f in scored[:n]]
