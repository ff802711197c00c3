"""`atelier policy` (the administrator's policy in force), `atelier models digest` (what to list in
``allowed_models``) and `atelier settings list|set` (the settings, with those the policy fixes)."""

from __future__ import annotations

import json

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError


def cmd_policy(args) -> int:
    from desktop_app.core.audit import log_folder
    from desktop_app.core.policy import current

    pol = current()
    d = {"path": pol.path, "present": pol.present, "error": pol.error or None, "offline": pol.offline,
         "allowed_models": list(pol.allowed_models) if pol.allowed_models is not None else None,
         "model_dirs": list(pol.model_dirs), "allow_import": pol.allow_import, "allow_pickle": pol.allow_pickle,
         "history": {"mode": pol.history_mode, "retain_days": pol.retain_days},
         "audit": {"mode": pol.audit_mode, "path": str(log_folder())}, "locked_settings": pol.locked()}
    if args.json:
        emit_json(d)
        return 0
    if not pol.present:
        print(f"No administrator's policy ({pol.path} does not exist): your own settings apply.")
        return 0
    if pol.error:
        print(f"The policy is NOT VALID, so Atelier runs in its most restrictive mode: {pol.error}")
    print(f"Policy: {pol.path}")
    allowed = ("any model" if pol.allowed_models is None else
               f"{len(pol.allowed_models)} approved model digest(s)")
    for label, value in (("models", allowed), ("offline", pol.offline), ("imports", pol.allow_import),
                         ("pickle", pol.allow_pickle), ("model folders", ", ".join(pol.model_dirs) or None),
                         ("history", pol.history_mode), ("retain days", pol.retain_days),
                         ("audit", f"{pol.audit_mode} in {log_folder()}" if pol.audit_mode else None)):
        print(f"  {label:14} {'(yours to choose)' if value is None else value}")
    return 0


def cmd_digest(args) -> int:
    from desktop_app.core.library import Library
    from desktop_app.core.policy import current, record_digest

    rec = Library().resolve(args.model)
    digest = record_digest(rec)
    ok = current().approves(digest)
    if args.json:
        emit_json({"model": rec.id, "path": rec.path, "sha256": digest, "approved": ok})
    else:
        print(f"{digest}  {rec.id}" + ("" if ok else "  (not approved by the policy in force)"))
        print(f"For policy.toml: allowed_models = [\"{rec.id}:{digest}\"]")
    return 0


def _parse_value(key: str, text: str):
    from desktop_app.core.settings import OPTIONS

    want = type(OPTIONS[key].default)
    if want is str:
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AtelierError(f"{key}: {text!r} is not a valid value (e.g. true, 4, or [\"a\", \"b\"]).") from exc


def cmd_settings(args) -> int:
    from desktop_app.core.settings import OPTIONS, Settings

    s = Settings()
    if args.settings_command == "set":
        if args.key not in OPTIONS:
            raise AtelierError(f"No setting '{args.key}' (see 'atelier settings list').")
        s.set(args.key, _parse_value(args.key, args.value))  # a policy-fixed key: PolicyLocked, one line
        if args.json:
            emit_json({"key": args.key, "value": s.get(args.key)})
        else:
            print(f"{args.key} = {json.dumps(s.get(args.key))}")
        return 0
    rows = {k: {"value": s.get(k), "locked": s.locked_reason(k) or None, "description": o.description}
            for k, o in OPTIONS.items()}
    if args.json:
        emit_json(rows)
        return 0
    for k, r in rows.items():
        lock = f"  [locked: {r['locked']}]" if r["locked"] else ""
        print(f"{k} = {json.dumps(r['value'])}{lock}")
    return 0
