"""The shipped catalog: schema, coverage, fit badges per machine, best pick per family, filters, refresh."""

from __future__ import annotations

import json

import pytest

from desktop_app.core.library import FORMATS, TASKS
from desktop_app.hub.catalog import CatalogEntry, choose_best_gguf, fit_entry, load_catalog, refresh

GiB = 1024**3


def test_shipped_catalog_is_complete_and_honest():
    cat = load_catalog(with_overlay=False)
    assert len(cat) >= 90
    ids = set()
    for e in cat.entries:
        assert e.id not in ids
        ids.add(e.id)
        assert e.task in TASKS and e.format in FORMATS, e.id
        assert e.size_bytes > 0 and e.size_source and isinstance(e.size_exact, bool), e.id
        assert e.sha256 == "", f"{e.id}: a sha256 must come from the hub, never be typed in"
        assert e.license and e.description and e.repo_id.count("/") == 1, e.id
        if e.task == "chat" and not e.needs_server:
            assert e.files and e.files[0].endswith(".gguf") and e.quantization and e.layers and e.context_length, e.id
    fams = {e.family_id for e in cat.entries}
    for want in ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.3-70b", "llama-4-scout", "mistral-7b",
                 "r1-distill-qwen-1.5b", "r1-distill-qwen-7b", "r1-distill-qwen-14b", "r1-distill-qwen-32b",
                 "r1-distill-llama-8b", "r1-distill-llama-70b", "qwen3-0.6b", "qwen3-32b", "qwen3-30b-a3b",
                 "qwen3-235b-a22b", "granite-3.3-8b", "gemma-3-4b", "smollm2-1.7b", "phi-4-mini", "sd15", "sd-turbo",
                 "sdxl", "sdxl-turbo", "sd35-medium", "flux1-schnell-gguf", "deepseek-r1-full", "deepseek-v3-full"):
        assert want in fams, want
    assert {e.task for e in cat.entries} == set(TASKS)
    assert all(e.needs_server for e in cat.entries if e.family_id.startswith("deepseek-") and "full" in e.family_id)
    # licences that need reading first
    assert cat.get("llama-3.1-8b-q4_k_m").needs_acceptance and cat.get("sd35-medium").gated
    assert not cat.get("qwen3-8b-q4_k_m").needs_acceptance


def test_fit_badges_and_best_quant(cpu_hw, gpu_hw):
    cat = load_catalog()
    small = cat.get("llama-3.2-1b-q4_k_m")
    assert fit_entry(small, gpu_hw).badge == "Full GPU"
    f = fit_entry(small, cpu_hw)
    assert f.plan == "cpu" and f.badge.startswith("CPU") and f.fits
    big = fit_entry(cat.get("llama-3.3-70b-q4_k_m"), cpu_hw)
    assert big.plan == "too_large" and not big.fits
    part = fit_entry(cat.get("llama-3.3-70b-q4_k_m"), gpu_hw)
    assert part.plan == "partial" and 0 < part.n_gpu_layers < part.n_layers == 80
    assert fit_entry(cat.get("deepseek-r1-full-q4_k_m"), gpu_hw).badge == "Needs a server"
    best_cpu, best_gpu = cat.best_per_family(cpu_hw), cat.best_per_family(gpu_hw)
    assert best_cpu["llama-3.1-8b"] == "llama-3.1-8b-q4_k_m"  # CPU: Q4_K_M, bigger is slower
    assert best_gpu["llama-3.1-8b"] == "llama-3.1-8b-q8_0"  # 24 GB GPU: the best that fits fully
    assert "llama-3.3-70b" not in best_cpu  # nothing fits
    assert choose_best_gguf([("m-Q4_K_M.gguf", 5 * GiB), ("m-Q8_0.gguf", 9 * GiB), ("mmproj-f16.gguf", 1)],
                            gpu_hw) == "m-Q8_0.gguf"


def test_view_filters_and_sorts(cpu_hw):
    cat = load_catalog()
    rows = cat.view(cpu_hw, task="image")
    assert rows and all(r.entry.task == "image" for r in rows)
    fits = cat.view(cpu_hw, fits_only=True, sort="size")
    assert fits and all(r.fit.fits for r in fits)
    sizes = [r.entry.size_bytes for r in fits]
    assert sizes == sorted(sizes)
    assert sum(r.recommended for r in fits) == len(cat.best_per_family(cpu_hw))
    d = fits[0].to_dict()
    assert {"fit", "recommended", "installed", "record_id", "size_exact"} <= set(d)
    assert cat.view(cpu_hw, text="qwen3 8b")  # free-text filter
    inst = cat.view(cpu_hw, installed_ids=["bartowski/Qwen_Qwen3-8B-GGUF/Qwen_Qwen3-8B-Q4_K_M.gguf"], text="qwen3 8b")
    assert [r.entry.id for r in inst if r.installed] == ["qwen3-8b-q4_k_m"]


def test_refresh_fetches_exact_sizes_from_the_hub(fake_hub, tmp_path, gguf_bytes):
    import hashlib

    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"entries": [
        CatalogEntry(id="tiny-q4", family_id="tiny", family="Tiny", task="chat", format="gguf",
                     repo_id="testorg/Tiny-GGUF", files=["tiny-Q4_K_M.gguf"], quantization="Q4_K_M",
                     size_bytes=1, size_exact=False, size_source="approximate", license="apache-2.0").to_dict(),
        CatalogEntry(id="tiny-sd", family_id="tiny-sd", family="Tiny SD", task="image", format="diffusers",
                     repo_id="testorg/tiny-diffusers", size_bytes=1, license="x").to_dict()]}))
    cat = load_catalog(path)
    seen = []
    changes = refresh(cat, progress=lambda i, n, r: seen.append(r))
    assert {c["id"] for c in changes} == {"tiny-q4", "tiny-sd"} and len(seen) == 2
    e = cat.get("tiny-q4")
    assert e.size_bytes == len(gguf_bytes) and e.size_exact and e.sha256 == hashlib.sha256(gguf_bytes).hexdigest()
    assert cat.get("tiny-sd").size_bytes > 100
    again = load_catalog(path)  # the overlay persists; the shipped file is untouched
    assert again.get("tiny-q4").size_exact and json.loads(path.read_text())["entries"][0]["size_bytes"] == 1


def test_catalog_entry_pulls_with_licence(fake_hub, cpu_hw):
    """A catalog entry that needs acceptance is refused without it (before any request)."""
    from desktop_app.core.errors import AtelierError
    from desktop_app.hub.downloads import pull

    cat = load_catalog()
    e = cat.get("gemma-3-4b-q4_k_m")
    with pytest.raises(AtelierError, match="gemma"):
        pull(e.repo_id, e.file)


def test_every_size_is_cited_or_marked_approximate():
    """Each size says where it comes from: a cited page (with the figure as written there) or the formula."""
    import re

    cat = load_catalog(with_overlay=False)
    cited = exact = 0
    for e in cat.entries:
        src = e.size_source
        assert isinstance(e.size_bytes, int) and e.size_bytes > 0, e.id
        if src.startswith("approximate:"):
            assert not e.size_exact, e.id
            continue
        assert src.startswith("https://"), f"{e.id}: a cited size names its page"
        if e.size_exact:
            # an exact byte count taken from the page (e.g. an LFS pointer's 'size NNNN'), quoted as written
            assert f"'size {e.size_bytes}'" in src, f"{e.id}: quote the exact byte count from the page"
            exact += 1
            continue
        cited += 1
        # the figure as written on the page, e.g. "'4.92 GB'", and the stored size matches it
        m = re.search(r"'[^']*?(\d+(?:\.\d+)?) ?(GB|MB)'", src)
        assert m, f"{e.id}: quote the figure from the page in size_source"
        value = float(m.group(1)) * (10**9 if m.group(2) == "GB" else 10**6)
        assert abs(e.size_bytes - value) <= 0.01 * value, e.id
    assert cited >= 64 and exact >= 2, (cited, exact)
    # the everyday models all carry a cited size
    for eid in ("llama-3.2-1b-q4_k_m", "llama-3.2-3b-q4_k_m", "llama-3.1-8b-q4_k_m", "mistral-7b-q4_k_m",
                "qwen3-4b-q4_k_m", "qwen3-14b-q4_k_m", "gemma-3-1b-q4_k_m", "gemma-3-4b-q4_k_m",
                "smollm2-1.7b-q4_k_m", "phi-4-q4_k_m", "phi-4-mini-q4_k_m", "smollm2-360m-q4_k_m",
                "r1-distill-qwen-1.5b-q4_k_m", "r1-distill-qwen-32b-q4_k_m", "qwen3-32b-q4_k_m"):
        assert not cat.get(eid).size_source.startswith("approximate"), eid
