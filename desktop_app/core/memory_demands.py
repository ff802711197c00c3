"""What the memory broker plans for (Qt-free): a :class:`Demand` per model, built from a
library record (its file's header) or a catalog entry (its listed size and shape)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.core.errors import AtelierError


@dataclass
class Demand:
    """One model that is loaded, loading or planned."""

    id: str
    task: str  # chat | image | upscale | background_removal
    name: str
    llm_shape: Any = None  # core.fitting.LlmShape (chat models)
    components: dict | None = None  # {component: parameter count} (image pipelines)
    size_bytes: int = 0  # small models
    n_ctx: int | None = None
    pinned: bool = False
    current: str | None = None  # the mode it runs in now (loaded models), else None
    current_layers: int = 0  # chat: the GPU layers it has now
    measured_ram: int = 0  # what its engine reported (RSS, llama.cpp's buffers), 0 = unknown
    measured_vram: int = 0  # torch's reserved memory / llama.cpp's GPU buffers

    @property
    def kind(self) -> str:
        return "llm" if self.llm_shape is not None else "diffusion" if self.components else "small"


# ------------------------------------------------------------------------------------------
# demands from library records and catalog entries
# ------------------------------------------------------------------------------------------
def demand_for_record(rec: Any, n_ctx: int | None = None) -> Demand:
    """The Demand for a library record (its file's header when it is on disk)."""
    from desktop_app.core.fitting import LlmShape, diffusion_components, shape_from_size

    name = getattr(rec, "display_name", None) or rec.name or rec.id
    path = Path(str(rec.path or ""))
    if rec.task == "chat":
        if path.is_file():
            from desktop_app.core.gguf_meta import read_gguf_metadata

            shape = LlmShape.from_gguf(read_gguf_metadata(path))
        else:
            shape = shape_from_size(int(rec.size_bytes or 1), quantization=rec.quantization or "")
        return Demand(rec.id, "chat", name, llm_shape=shape, n_ctx=n_ctx)
    if rec.task == "image":
        comps = diffusion_components(path) if path.exists() else _components_from_size(int(rec.size_bytes or 0))
        return Demand(rec.id, "image", name, components=comps)
    return Demand(rec.id, rec.task, name, size_bytes=int(rec.size_bytes or 0))


def _components_from_size(size_bytes: int) -> dict:
    """The catalog's split of a pipeline's bytes (hub.catalog.fit_image_size) as parameter counts."""
    params = max(1, size_bytes // 2)
    return {"unet": int(params * 0.65), "text_encoder": int(params * 0.30), "vae": int(params * 0.05)}


def demand_for_entry(entry: Any, n_ctx: int | None = None) -> Demand:
    """The Demand for a catalog entry (not downloaded: its listed size and shape)."""
    from desktop_app.core.fitting import shape_from_size

    if entry.task == "chat":
        shape = shape_from_size(int(entry.size_bytes), n_layers=entry.layers or None,
                                params_b=entry.params_b or None, context_length=entry.context_length or None,
                                quantization=entry.quantization or "")
        return Demand(entry.id, "chat", entry.family or entry.id, llm_shape=shape, n_ctx=n_ctx)
    if entry.task == "image":
        return Demand(entry.id, "image", entry.family or entry.id, components=_components_from_size(entry.size_bytes))
    return Demand(entry.id, entry.task, entry.family or entry.id, size_bytes=int(entry.size_bytes))


def resolve_demand(model_id: str, library=None, catalog=None, n_ctx: int | None = None) -> Demand:
    """A library id first, then a catalog id; an unknown id is a clear error."""
    if library is not None:
        rec = library.get(model_id)
        if rec is not None:
            return demand_for_record(rec, n_ctx)
    if catalog is not None:
        entry = catalog.get(model_id)
        if entry is not None:
            if entry.needs_server:
                raise AtelierError(f"{model_id} needs a server: it does not fit a desktop.")
            return demand_for_entry(entry, n_ctx)
    raise AtelierError(f"No model {model_id!r} in the library or the catalog "
                       "(see 'atelier models list' and 'atelier models catalog').")
