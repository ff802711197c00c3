"""Command-line front end over the Qt-free core. With no arguments it opens the GUI."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from desktop_app import __version__
from desktop_app.core.errors import AtelierError, Cancelled

# command name -> "module:function" (modules under desktop_app.commands, imported lazily so that
# `atelier doctor` never pays for torch or llama_cpp).
HANDLERS = {
    "doctor": "doctor:cmd_doctor",
    "models.fit": "fit:cmd_fit",
    "models.list": "models:cmd_list",
    "models.pull": "models:cmd_pull",
    "models.import": "models:cmd_import",
    "models.export": "models:cmd_export",
    "models.discover": "models:cmd_discover",
    "models.rm": "models:cmd_rm",
    "models.search": "models:cmd_search",
    "models.files": "models:cmd_files",
    "models.catalog": "models:cmd_catalog",
    "models.configs": "configs:cmd_configs",
    "models.plan": "plan:cmd_plan",
    "models.digest": "policy:cmd_digest",
    "policy": "policy:cmd_policy",
    "settings.list": "policy:cmd_settings",
    "settings.set": "policy:cmd_settings",
    "run": "chat:cmd_run",
    "imagine": "imagine:cmd_imagine",
    "serve": "serve:cmd_serve",
    "audit.verify": "audit:cmd_verify",
    "audit.export": "audit:cmd_export",
    "remotes.add": "remotes:cmd_add",
    "remotes.list": "remotes:cmd_list",
    "remotes.rm": "remotes:cmd_rm",
    "upscale": "postprocess:cmd_upscale",
    "remove-bg": "postprocess:cmd_remove_bg",
    "desktop-install": "desktop:cmd_desktop_install",
    "gui": None,
}


class _Parser(argparse.ArgumentParser):
    """Usage errors follow the CLI contract too: one line on stderr (with a hint), exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="atelier", description="Atelier: offline chat and image studio.")
    p.add_argument("--version", action="version", version=f"atelier {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("doctor", help="hardware, backends, paths and the fit of every installed model")
    d.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list, fit, pull, import, discover, remove and search models")
    ms = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    f = ms.add_parser("fit", help="how a model file or folder fits this machine")
    f.add_argument("path")
    f.add_argument("--ctx", type=int, default=None, help="context length to plan for")
    f.add_argument("--json", action="store_true")
    ls = ms.add_parser("list", help="installed models")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--task", choices=["chat", "image", "upscale", "background_removal"])
    pl = ms.add_parser("pull", help="download a model from the hub (resumable, verified)")
    pl.add_argument("repo")
    pl.add_argument("file", nargs="?")
    pl.add_argument("--revision", default=None)
    pl.add_argument("--accept-license", action="store_true", help="accept a gated/restrictive licence")
    pl.add_argument("--allow-unverified", action="store_true",
                    help="install files the hub/mirror gives no checksum for (marked unverified)")
    pl.add_argument("--json", action="store_true")
    ex = ms.add_parser("export", help="write models and a verifiable pack.json to a folder (a USB stick)")
    ex.add_argument("ids", nargs="+")
    ex.add_argument("--to", required=True, help="the folder to write the pack to")
    ex.add_argument("--json", action="store_true")
    im = ms.add_parser("import", help="register a local file or folder, or every model of a pack folder")
    im.add_argument("path")
    im.add_argument("--copy", action="store_true", help="copy into the models folder instead of using it in place")
    im.add_argument("--allow-pickle", action="store_true")
    im.add_argument("--json", action="store_true")
    dc = ms.add_parser("discover", help="register models other apps already have on this machine")
    dc.add_argument("--dir", action="append", default=[], help="extra ComfyUI/A1111 models folder")
    dc.add_argument("--json", action="store_true")
    rm = ms.add_parser("rm", help="remove a model (deletes files Atelier owns)")
    rm.add_argument("id")
    rm.add_argument("--json", action="store_true")
    se = ms.add_parser("search", help="search the hub")
    se.add_argument("text")
    se.add_argument("--task", choices=["chat", "image"], default="chat")
    se.add_argument("--limit", type=int, default=20)
    se.add_argument("--json", action="store_true")
    fl = ms.add_parser("files", help="list a hub repo's files with sizes and fit")
    fl.add_argument("repo")
    fl.add_argument("--revision", default=None)
    fl.add_argument("--json", action="store_true")
    ca = ms.add_parser("catalog", help="the curated catalog with fit badges for this machine")
    ca.add_argument("--task", choices=["chat", "image", "upscale", "background_removal"])
    ca.add_argument("--fits", action="store_true", help="only what fits this machine")
    ca.add_argument("--json", action="store_true")
    pn = ms.add_parser("plan", help="what the memory broker does with a chat and an image model loaded at once")
    pn.add_argument("chat_id", help="library or catalog id of the chat model")
    pn.add_argument("image_id", help="library or catalog id of the image model")
    pn.add_argument("--active", choices=["image", "chat", "none"], default="image",
                    help="the model being loaded now, whose speed counts most (default: image, as when the "
                         "Studio loads while the chat model is loaded)")
    pn.add_argument("--ctx", type=int, default=None, help="the chat model's context length")
    pn.add_argument("--json", action="store_true")
    dg = ms.add_parser("digest", help="a model's sha256, as an administrator lists it in the policy's allowed_models")
    dg.add_argument("model", help="library id or path")
    dg.add_argument("--json", action="store_true")
    cf = ms.add_parser("configs", help="fetch a diffusion family's config files (no weights) for single-file checkpoints")
    cf.add_argument("repo", nargs="?", default=None, help="diffusers repo (default: the family's usual one)")
    cf.add_argument("--family", required=True,
                    help="sd15, sd15-inpainting, sd2, sdxl, sdxl-inpainting, sd3, flux-schnell or flux-dev")
    cf.add_argument("--revision", default=None)
    cf.add_argument("--json", action="store_true")

    r = sub.add_parser("run", help="chat with a model once, streaming the reply")
    r.add_argument("--model", default=None, help="library id or path (default: the starter model)")
    r.add_argument("--prompt", required=True)
    r.add_argument("--remote", default=None, help="a configured server's name, or a base URL (used once)")
    r.add_argument("--system", default=None)
    r.add_argument("--max-tokens", type=int, default=512)
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--temperature", type=float, default=None)
    r.add_argument("--ctx", type=int, default=None)
    r.add_argument("--threads", type=int, default=None, help="decode threads (0: auto, one per physical core)")
    r.add_argument("--flash-attn", choices=["auto", "on", "off"], default=None)
    r.add_argument("--kv-cache", choices=["f16", "q8_0", "q4_0"], default=None, help="KV cache type")
    r.add_argument("--prompt-lookup", action="store_true", default=None, help="prompt-lookup decoding")
    r.add_argument("--json", action="store_true")

    g = sub.add_parser("imagine", help="generate or edit an image")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--negative", default="")
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--guidance", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--size", default=None, help="WxH, e.g. 512x512")
    g.add_argument("--scheduler", default=None)
    g.add_argument("--init-image", default=None)
    g.add_argument("--strength", type=float, default=0.75)
    g.add_argument("--mask", default=None)
    g.add_argument("--lora", action="append", default=[], help="PATH[:WEIGHT], repeatable")
    g.add_argument("--enhance", action="store_true",
                   help="let a chat model turn --prompt (a short idea) into a full prompt for the model's family")
    g.add_argument("--chat-model", default=None, help="the chat model for --enhance (default: the starter model)")
    g.add_argument("--json", action="store_true")

    po = sub.add_parser("policy", help="the administrator's policy in force (models, network, history, audit)")
    po.add_argument("--json", action="store_true")
    st = sub.add_parser("settings", help="list or change settings (those the policy fixes are refused)")
    sts = st.add_subparsers(dest="settings_command", metavar="ACTION", required=True)
    sl = sts.add_parser("list", help="every setting, its value, and whether the policy locks it")
    sl.add_argument("--json", action="store_true")
    ss = sts.add_parser("set", help="change one setting")
    ss.add_argument("key")
    ss.add_argument("value", help="text, or JSON for numbers, true/false and lists")
    ss.add_argument("--json", action="store_true")

    au = sub.add_parser("audit", help="check or export the tamper-evident log of inference calls")
    aus = au.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    av = aus.add_parser("verify", help="check the hash chain; exit 0 only when all of it holds")
    av.add_argument("--dir", default=None, help="the log's folder (default: the policy's, or the data folder)")
    av.add_argument("--json", action="store_true")
    ae = aus.add_parser("export", help="write the records for auditors (.csv or .json)")
    ae.add_argument("--since", default=None, help="an ISO date, e.g. 2026-12-01")
    ae.add_argument("--to", required=True)
    ae.add_argument("--dir", default=None)
    ae.add_argument("--json", action="store_true")

    rs = sub.add_parser("remotes", help="team servers speaking the OpenAI API (vLLM, llama.cpp server, Ollama)")
    rss = rs.add_subparsers(dest="remotes_command", metavar="ACTION", required=True)
    ra = rss.add_parser("add", help="add (or replace) a server")
    ra.add_argument("name")
    ra.add_argument("url", help="base URL, e.g. http://gpu-box:8000/v1")
    ra.add_argument("--api-key", default=None, help="(or ATELIER_REMOTE_KEY); kept in the keyring")
    ra.add_argument("--json", action="store_true")
    rl = rss.add_parser("list", help="the servers and their models")
    rl.add_argument("--json", action="store_true")
    rr = rss.add_parser("rm", help="forget a server (and its key)")
    rr.add_argument("name")
    rr.add_argument("--json", action="store_true")

    sv = sub.add_parser("serve", help="serve the installed chat models through the OpenAI API")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--api-key", default=None, help="required from clients (needed off loopback; or ATELIER_API_KEY)")

    di = sub.add_parser("desktop-install", help="put Atelier in this user's Linux applications menu")
    di.add_argument("--uninstall", action="store_true", help="remove what desktop-install wrote")
    di.add_argument("--json", action="store_true")

    u = sub.add_parser("upscale", help="super-resolution")
    u.add_argument("input")
    u.add_argument("output")
    u.add_argument("--model", default=None)
    u.add_argument("--scale", type=int, default=None)
    u.add_argument("--tile", type=int, default=256)
    u.add_argument("--json", action="store_true")

    b = sub.add_parser("remove-bg", help="remove the background of an image")
    b.add_argument("input")
    b.add_argument("output")
    b.add_argument("--model", default=None)
    b.add_argument("--mask-only", action="store_true")
    b.add_argument("--soft", action="store_true", help="soft edges")
    b.add_argument("--json", action="store_true")

    sub.add_parser("gui", help="open the desktop app (the default)")
    return p


def _handler(args: argparse.Namespace):
    key = args.command
    if key == "models":
        key = f"models.{args.models_command}"
    elif key in ("remotes", "audit", "settings"):
        key = f"{key}.{getattr(args, key + '_command')}"
    target = HANDLERS[key]
    mod_name, func = target.split(":")
    mod = importlib.import_module(f"desktop_app.commands.{mod_name}")
    return getattr(mod, func)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "gui"):
        from desktop_app.app import run_gui

        return run_gui()
    from desktop_app.core.logs import setup_logging

    setup_logging(debug=args.debug, console=args.debug)
    from desktop_app.core.paths import storage_problem

    problem = storage_problem()
    if problem:  # once, plainly: the command still runs, and anything it would save fails with a line
        print(f"atelier: warning: {problem} Nothing can be saved.", file=sys.stderr)
    from desktop_app.core.settings import Settings

    for why in Settings().problems:  # a hand-edited settings.json: said, never a crash
        print(f"atelier: warning: {why}.", file=sys.stderr)
    if args.command not in ("audit", "policy"):  # the administrator's policy: its folders, its retention
        from desktop_app.core.policy import apply_at_startup

        for line in apply_at_startup():
            print(f"atelier: warning: {line}", file=sys.stderr)
    try:
        return int(_handler(args)(args) or 0)
    except KeyboardInterrupt:
        print("atelier: interrupted", file=sys.stderr)
        return 130
    except Cancelled as exc:
        print(f"atelier: {exc}", file=sys.stderr)
        return 130
    except AtelierError as exc:
        if args.debug:
            raise
        print(f"atelier: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the contract: one line, no traceback unless --debug
        if args.debug:
            raise
        logging.getLogger("atelier").exception("command failed")
        print(f"atelier: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def gui_main() -> int:
    from desktop_app.app import run_gui

    return run_gui()
