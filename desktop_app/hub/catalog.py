"""The curated catalog (``resources/catalog.json``): entries, fit badges for a machine, best picks.

Works offline: nothing here touches the network except :func:`refresh`, which the user triggers
(a refresh button, or a download) and which fetches exact sizes and sha256 from the hub into an
overlay file in the cache dir (the shipped JSON is never rewritten).

Typical GUI use::

    cat = load_catalog()
    hw = detect_hardware()
    rows = cat.view(hw, task="chat", fits_only=True, sort="size")   # list[EntryView]
    best = cat.best_per_family(hw)                                    # {family_id: entry_id}
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from desktop_app.core.errors import AtelierError
from desktop_app.core.paths import get_paths

GiB = 1024**3
CATALOG_FILE = Path(__file__).resolve().parents[2] / "resources" / "catalog.json"

# Quality order of GGUF quantizations (higher = closer to the original weights).
QUANT_RANK = {
    "Q2_K": 10, "IQ2_XXS": 8, "IQ2_XS": 9, "IQ2_M": 11, "Q3_K_S": 20, "IQ3_XXS": 19, "IQ3_XS": 21, "IQ3_M": 22,
    "Q3_K_M": 23, "Q3_K_L": 25, "Q3_K_XL": 26, "IQ4_XS": 30, "IQ4_NL": 31, "Q4_0": 32, "Q4_K_S": 34, "Q4_1": 35,
    "Q4_K_M": 40, "Q4_K_L": 41, "Q4_K_XL": 42, "Q5_0": 44, "Q5_K_S": 45, "Q5_1": 46, "Q5_K_M": 50, "Q5_K_L": 51,
    "Q5_K_XL": 52, "Q6_K": 60, "Q6_K_L": 61, "Q6_K_XL": 62, "Q8_0": 70, "Q8_K_XL": 71, "BF16": 80, "F16": 80,
    "FP16": 80, "F32": 90,
}
# On a CPU (or partial offload) bigger files are slower for little gain: prefer this one.
CPU_PREFERRED_RANK = QUANT_RANK["Q4_K_M"]

PLAN_ORDER = {"gpu": 4, "gpu_offload": 3, "partial": 3, "gpu_sequential_offload": 2, "cpu": 1, "too_large": 0,
              "server": -1}


def quant_rank(q: str) -> int:
    return QUANT_RANK.get((q or "").upper(), 0)


# ---------------------------------------------------------------------------------------
# entries
# ---------------------------------------------------------------------------------------
@dataclass
class CatalogEntry:
    id: str
    family_id: str
    family: str
    task: str  # chat | image | upscale | background_removal
    format: str  # gguf | diffusers | safetensors | onnx
    repo_id: str
    files: list[str] = field(default_factory=list)  # empty for a diffusers repo (the whole pipeline)
    quantization: str = ""
    size_bytes: int = 0
    size_exact: bool = False
    size_source: str = ""
    sha256: str = ""  # filled by refresh() or at download time, never invented
    license: str = ""
    license_url: str = ""
    gated: bool = False  # the hub requires accepting the licence (and a token)
    restrictive: bool = False  # licence with use restrictions: the user accepts it before download
    context_length: int = 0
    params: str = ""  # display, e.g. "8B", "30B-A3B"
    params_b: float = 0.0  # total parameters in billions
    layers: int = 0
    description: str = ""
    needs_server: bool = False  # too big for any desktop: shown as "needs a server"
    pipeline: str = ""  # image: sd15, sdxl, sd3, flux; upscale: esrgan; bg: birefnet, u2net
    requires: list[str] = field(default_factory=list)  # other repos needed (e.g. FLUX text encoders)
    extra: dict = field(default_factory=dict)

    @property
    def needs_acceptance(self) -> bool:
        return self.gated or self.restrictive

    @property
    def file(self) -> str:
        return self.files[0] if self.files else ""

    @property
    def record_id(self) -> str:
        """The library id this entry gets once installed."""
        return f"{self.repo_id}/{self.file}" if self.files else self.repo_id

    def to_dict(self) -> dict:
        d = asdict(self)
        d["needs_acceptance"] = self.needs_acceptance
        d["record_id"] = self.record_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CatalogEntry":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Fit:
    """How an entry (or a hub file of a known size) would run on a machine."""

    plan: str  # chat: gpu|partial|cpu|too_large ; image: gpu|gpu_offload|gpu_sequential_offload|cpu|too_large; server
    badge: str  # short text for the UI, e.g. "Full GPU", "Partial 20/32 layers", "CPU only · slow"
    fits: bool
    estimated_bytes: int = 0
    n_gpu_layers: int | None = None
    n_layers: int | None = None
    speed: str = ""  # CPU speed class: fast | ok | slow | very slow
    source: str = "estimate"  # "fitting" when desktop_app.core.fitting computed it
    tokens_per_s: float = 0.0  # fitting's decode estimate (chat on a CPU), 0 when it has none

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EntryView:
    entry: CatalogEntry
    fit: Fit
    installed: bool = False
    recommended: bool = False  # the best quantization of its family for this machine

    def to_dict(self) -> dict:
        d = self.entry.to_dict()
        d["fit"] = self.fit.to_dict()
        d["installed"] = self.installed
        d["recommended"] = self.recommended
        return d


# ---------------------------------------------------------------------------------------
# fitting (size based: the files are not on disk yet)
# ---------------------------------------------------------------------------------------
def _hw_view(hw: Any) -> dict:
    """Normalise a Hardware (core.hardware) or its dict form."""
    if hw is None:
        from desktop_app.core.hardware import detect_hardware

        hw = detect_hardware()
    if isinstance(hw, dict):
        from desktop_app.core.hardware import Hardware

        hw = Hardware.from_dict(hw)
    return hw


def _from_plan(plan: Any) -> Fit:
    """A catalog Fit from a core.fitting plan: the verdict, badge and speed words are fitting's own."""
    return Fit(plan=plan.plan, badge=plan.badge, fits=plan.fits, estimated_bytes=int(plan.estimated_bytes),
               n_gpu_layers=getattr(plan, "n_gpu_layers", None), n_layers=getattr(plan, "n_layers", None),
               speed=getattr(plan, "speed", "") if plan.plan == "cpu" else "", source="fitting",
               tokens_per_s=float(getattr(plan, "tokens_per_s", 0.0) or 0.0) if plan.plan == "cpu" else 0.0)


def fit_llm_size(size_bytes: int, hw: Any = None, n_layers: int = 0, n_ctx: int = 4096) -> Fit:
    """Fit of a GGUF of ``size_bytes`` (weights) on ``hw`` (core.fitting's size-based estimate)."""
    from desktop_app.core.fitting import estimate_llm_from_size

    return _from_plan(estimate_llm_from_size(size_bytes, n_layers or None, n_ctx, hw=_hw_view(hw)))


def fit_image_size(size_bytes: int, hw: Any = None, fp16_weights: bool = True) -> Fit:
    """Fit of a diffusion pipeline whose weights total ``size_bytes`` (size based, no file yet).

    core.fitting plans from parameter counts per component; a pipeline's weights are roughly 2/3
    denoiser, 3/10 text encoders, the rest VAE (SD 1.5, SDXL, SD3). ``fp16_weights`` False (a GGUF
    transformer, already quantized): its bytes count as fp16 parameters, which errs on the safe side."""
    from desktop_app.core.fitting import plan_diffusion

    params = size_bytes // 2
    comps = {"unet": int(params * 0.65), "text_encoder": int(params * 0.30), "vae": int(params * 0.05)}
    return _from_plan(plan_diffusion(comps, _hw_view(hw)))


def fit_entry(entry: CatalogEntry, hw: Any = None) -> Fit:
    if entry.needs_server:
        return Fit("server", "Needs a server", False, entry.size_bytes)
    if entry.task == "chat":
        return fit_llm_size(entry.size_bytes, hw, entry.layers, min(entry.context_length or 4096, 4096))
    if entry.task == "image":
        # GGUF transformers are already quantized: weights stay the same size in RAM on CPU
        return fit_image_size(entry.size_bytes, hw, fp16_weights=entry.format != "gguf")
    # upscalers and background removal nets are small: always fit, CPU speed is fine
    from desktop_app.core.fitting import plan_small_model

    return _from_plan(plan_small_model(entry.size_bytes, _hw_view(hw)))


def choose_best_gguf(candidates: Iterable[tuple[str, int]], hw: Any = None, n_layers: int = 0) -> str | None:
    """Pick the best quantization among (filename, size) GGUF files for this machine.

    Full GPU: the highest-quality file that fits entirely. Otherwise (partial/CPU): Q4_K_M when it
    fits (bigger files are slower for little gain), else the best smaller one that fits.
    """
    from desktop_app.hub.client import quantization_from_name, split_info

    scored = []
    for name, size in candidates:
        if "mmproj" in name.lower() or not name.lower().endswith(".gguf"):
            continue
        sp = split_info(name)
        if sp and sp[0] != 1:
            continue
        scored.append((name, quant_rank(quantization_from_name(name)), fit_llm_size(size, hw, n_layers)))
    return _pick_best(scored)


def _pick_best(scored: list[tuple[str, int, Fit]]) -> str | None:
    """scored: (key, quant rank, fit). See choose_best_gguf for the rule."""
    if not scored:
        return None
    full = [s for s in scored if s[2].plan == "gpu" and s[1] <= QUANT_RANK["Q8_0"]]
    if full:
        return max(full, key=lambda s: s[1])[0]
    fitting = [s for s in scored if s[2].fits]
    if not fitting:
        return None
    good = [s for s in fitting if 0 < s[1] <= CPU_PREFERRED_RANK]
    if good:
        return max(good, key=lambda s: s[1])[0]
    return min(fitting, key=lambda s: s[1] or 999)[0]


# ---------------------------------------------------------------------------------------
# the catalog
# ---------------------------------------------------------------------------------------
def _overlay_path() -> Path:
    return get_paths().cache / "catalog_overrides.json"


class Catalog:
    def __init__(self, entries: list[CatalogEntry], source: Path | None = None) -> None:
        self.entries = entries
        self.source = source
        self._by_id = {e.id: e for e in entries}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> CatalogEntry | None:
        return self._by_id.get(entry_id)

    def for_repo(self, repo_id: str, filename: str | None = None) -> list[CatalogEntry]:
        out = [e for e in self.entries if e.repo_id.lower() == repo_id.lower()]
        if filename:
            out = [e for e in out if filename in e.files] or out
        return out

    def families(self) -> dict[str, list[CatalogEntry]]:
        fam: dict[str, list[CatalogEntry]] = {}
        for e in self.entries:
            fam.setdefault(e.family_id, []).append(e)
        return fam

    def best_per_family(self, hw: Any = None) -> dict[str, str]:
        """{family_id: entry id} of the quantization to pre-select on this machine (only if one fits)."""
        hw = _hw_view(hw)
        out = {}
        for fid, items in self.families().items():
            if len(items) == 1 or items[0].task != "chat":
                fits = [e for e in items if fit_entry(e, hw).fits]
                if fits:
                    out[fid] = fits[0].id
                continue
            scored = [(e.id, quant_rank(e.quantization), fit_entry(e, hw)) for e in items if not e.needs_server]
            best = _pick_best(scored)
            if best:
                out[fid] = best
        return out

    def view(
        self,
        hw: Any = None,
        task: str | None = None,
        fits_only: bool = False,
        sort: str = "family",  # family | size | name | fit
        installed_ids: Iterable[str] = (),
        text: str = "",
    ) -> list[EntryView]:
        """Entries with their fit on ``hw``, filtered and sorted for the catalog table."""
        hw = _hw_view(hw)
        best = set(self.best_per_family(hw).values())
        installed = set(installed_ids)
        rows = []
        text_l = text.lower().strip()
        for e in self.entries:
            if task and e.task != task:
                continue
            if text_l and text_l not in f"{e.family} {e.repo_id} {e.quantization} {e.description}".lower():
                continue
            f = fit_entry(e, hw)
            if fits_only and not f.fits:
                continue
            rows.append(EntryView(e, f, installed=e.record_id in installed, recommended=e.id in best))
        keys: dict[str, Callable[[EntryView], Any]] = {
            "family": lambda r: (r.entry.task, r.entry.family, r.entry.size_bytes),
            "size": lambda r: r.entry.size_bytes,
            "name": lambda r: r.entry.family.lower(),
            "fit": lambda r: (-PLAN_ORDER.get(r.fit.plan, 0), r.entry.size_bytes),
        }
        rows.sort(key=keys.get(sort, keys["family"]))
        return rows


def load_catalog(path: Path | None = None, with_overlay: bool = True) -> Catalog:
    path = Path(path or CATALOG_FILE)
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise AtelierError(f"The model catalog {path} is missing or unreadable: {exc}") from exc
    entries = [CatalogEntry.from_dict(d) for d in raw.get("entries", [])]
    if with_overlay:
        ov = _overlay_path()
        if ov.exists():
            try:
                over = json.loads(ov.read_text("utf-8"))
            except (OSError, ValueError):
                over = {}
            for e in entries:
                for k, v in (over.get(e.id) or {}).items():
                    if k in ("size_bytes", "sha256", "size_exact", "size_source"):
                        setattr(e, k, v)
    return Catalog(entries, path)


def refresh(catalog: Catalog, client=None, entry_ids: Iterable[str] | None = None, cancel=None,
            progress: Callable[[int, int, str], None] | None = None) -> list[dict]:
    """Fetch exact sizes and sha256 from the hub (only when the user asks). Returns the changes.

    Writes them to an overlay in the cache dir; the shipped catalog.json is left alone.
    Raises OfflineError at once when offline.
    """
    from desktop_app.hub.client import HubClient
    from desktop_app.hub.pull import select_diffusers_files

    client = client or HubClient()
    client.ensure_online()
    wanted = [catalog.get(i) for i in entry_ids] if entry_ids else list(catalog.entries)
    wanted = [e for e in wanted if e is not None and not e.needs_server]
    ov_path = _overlay_path()
    try:
        overlay = json.loads(ov_path.read_text("utf-8")) if ov_path.exists() else {}
    except (OSError, ValueError):
        overlay = {}
    changes = []
    infos: dict[str, Any] = {}
    for i, e in enumerate(wanted):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if progress:
            progress(i, len(wanted), e.repo_id)
        info = infos.get(e.repo_id) or client.repo_info(e.repo_id)
        infos[e.repo_id] = info
        if e.files:
            files = [info.file(f) for f in e.files]
            if any(f is None for f in files):
                changes.append({"id": e.id, "error": "file not in the repository any more"})
                continue
            size = sum(f.size or 0 for f in files)
            sha = files[0].sha256 if len(files) == 1 else ""
        else:
            sel, _variant = select_diffusers_files(info)
            size = sum(f.size or 0 for f in sel)
            sha = ""
        new = {"size_bytes": int(size), "sha256": sha, "size_exact": True,
               "size_source": f"{client.endpoint}/api/models/{e.repo_id} (commit {info.sha[:12]})"}
        if new["size_bytes"] != e.size_bytes or sha != e.sha256:
            changes.append({"id": e.id, "old_size": e.size_bytes, "new_size": new["size_bytes"], "sha256": sha})
        overlay[e.id] = new
        for k, v in new.items():
            setattr(e, k, v)
    ov_path.parent.mkdir(parents=True, exist_ok=True)
    ov_path.write_text(json.dumps(overlay, indent=1), "utf-8")
    return changes


_PARAMS_RE = re.compile(r"(\d+(?:\.\d+)?)\s*[bB]")


def params_billions(text: str) -> float:
    m = _PARAMS_RE.search(text or "")
    return float(m.group(1)) if m else 0.0
