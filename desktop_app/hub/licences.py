"""Which licences the user must read and accept before a download (shared by the pull planning,
the CLI and the Models tab, so that they agree)."""

from __future__ import annotations

import re
from typing import Any

from desktop_app.core.errors import AtelierError


# Licence ids (the hub's ``license:`` tag / card ``license``) whose terms restrict use: the user
# reads and accepts them before a download, whoever uploaded the repo and whether or not the hub
# gates it (a third-party GGUF of Llama or Gemma carries the same licence as the original).
RESTRICTIVE_LICENCES = frozenset({
    "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma",
    "flux-1-dev-non-commercial-license", "stabilityai-ai-community",
})
_RESTRICTIVE_LICENCE_RE = re.compile(r"^llama-?\d")  # llama2 ... llama4 and future llamaN(.M)
# For licence "other" (the card then names its own licence): families with restrictive licences,
# looked for in the card's licence name, the repo id and ``base_model:`` tags (never in plain
# tags: "llama" is also the architecture tag of Mistral, SmolLM2 and others).
_RESTRICTIVE_FAMILY_RE = re.compile(
    r"llama[-_ ]?[2-9]|meta-llama|gemma|flux[-_.]?1?[-_.]?dev|stable[-_]?diffusion[-_]?3|sd[-_]?3(\.5)?\b|"
    r"stabilityai-ai-community",
    re.IGNORECASE,
)


def licence_requires_acceptance(licence: str, *, gated: bool | str = False, repo_id: str = "",
                                tags: Any = (), license_name: str = "") -> bool:
    """Whether the user must read and accept the licence before downloading.

    True for gated repos, for licence ids in :data:`RESTRICTIVE_LICENCES` (``llama3.2``,
    ``gemma``, ``flux-1-dev-non-commercial-license``, ``stabilityai-ai-community``, ...), and for
    ``other`` when the card's licence name, the repo id or a ``base_model:`` tag names one of those
    families (Llama, Gemma, FLUX.1-dev, Stable Diffusion 3.x). Shared by plan_pull, the CLI and
    the Models tab, so that they agree.
    """
    if gated:
        return True
    lic = (licence or "").strip().lower()
    if lic in RESTRICTIVE_LICENCES or _RESTRICTIVE_LICENCE_RE.match(lic):
        return True
    if lic == "other" or license_name:
        hay = [license_name or "", repo_id or ""]
        hay += [t.split(":", 1)[1] for t in (tags or ()) if isinstance(t, str) and t.startswith("base_model:")]
        if license_name and license_name.strip().lower() in RESTRICTIVE_LICENCES:
            return True
        return any(_RESTRICTIVE_FAMILY_RE.search(h) for h in hay if h)
    return False


def _licence_error(repo_id: str, licence: str, url: str) -> AtelierError:
    where = f" ({url})" if url else ""
    return AtelierError(
        f"{repo_id} is released under the licence '{licence or 'see the model card'}'{where}, which you must read "
        "and accept before downloading. Accept it in the Models tab, or pass --accept-license."
    )
