"""`atelier models configs [REPO] --family F [--revision R] [--json]`: fetch a family's config folder.

Downloads only the config and tokenizer files of a diffusers repo (no weights) into
``<models dir>/configs/<family>/``, where the image engine looks for them when it loads a
single-file checkpoint of that family. REPO defaults to the family's usual repository.
"""

from __future__ import annotations

import sys

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError


def cmd_configs(args) -> int:
    from desktop_app.engines.diffusion.loader import (
        CONFIG_REPOS,
        FAMILIES,
        RESOURCES_CONFIGS,
    )
    from desktop_app.hub.configs import fetch_pipeline_configs

    family = args.family
    if family not in FAMILIES:
        raise AtelierError(f"Unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")
    repo = getattr(args, "repo", None) or CONFIG_REPOS.get(family)
    if not repo:
        raise AtelierError(f"No default repository for {family}; name one: atelier models configs REPO --family {family}")
    print(f"fetching the config files of {repo} (no weights) for {FAMILIES[family]} ...", file=sys.stderr)
    dest = fetch_pipeline_configs(repo, family, revision=getattr(args, "revision", None))
    from desktop_app.hub.configs import fetched_source

    src = fetched_source(family, dest.parents[1]) or {}
    bundled = (RESOURCES_CONFIGS / family / "model_index.json").is_file()
    if getattr(args, "json", False):
        emit_json({"family": family, "repo_id": repo, "path": str(dest), "revision": src.get("revision", ""),
                   "files": src.get("files", []), "bundled_also": bundled})
    else:
        n = len(src.get("files", []))
        print(f"Fetched {n} config files of {repo} for {FAMILIES[family]} into {dest}.")
        if bundled:
            print("Atelier also bundles generic configs for this family; the fetched folder is used first.")
    return 0
