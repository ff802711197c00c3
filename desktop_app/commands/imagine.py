"""``atelier imagine``: generate or edit one image through the same engine process as the studio."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from desktop_app.core.errors import AtelierError, Cancelled, ModelFormatError

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    m = _SIZE.match(text)
    if not m:
        raise AtelierError(f"Invalid --size {text!r}: use WIDTHxHEIGHT, e.g. 512x512.")
    return int(m.group(1)), int(m.group(2))


def parse_lora(text: str):
    from desktop_app.engines.diffusion.protocol import LoraSpec

    path, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            path = head
        except ValueError:
            pass
    p = Path(path).expanduser()
    if not p.is_file():
        raise AtelierError(f"LoRA file not found: {p}")
    from desktop_app.core.model_files import check_lora_file

    check_lora_file(p)  # a checkpoint or a VAE given as --lora: refused before the engine starts
    return LoraSpec(path=str(p.resolve()), weight=weight)


def resolve_model(text: str, allow_pickle: bool):
    """A library id or a path; a registered one gets the same spec as in the Studio (family, config)."""
    from desktop_app.core.library import Library
    from desktop_app.engines.diffusion.protocol import ModelSpec

    p = Path(text).expanduser()
    library = Library()
    rec = library.find_by_path(p.resolve()) if p.exists() else library.resolve(text)
    if rec is None:
        return ModelSpec(path=str(p.resolve()), allow_pickle=allow_pickle)
    if rec.task not in ("image",):
        raise AtelierError(f"{text} is a {rec.task} model, not an image model.")
    return ModelSpec.for_record(rec, allow_pickle=allow_pickle)


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    p = Path(path).expanduser()
    try:
        return p.read_bytes()
    except OSError as exc:
        raise AtelierError(f"Cannot read the {what} {p}: {exc.strerror or exc}") from exc


def _family_of(text: str) -> str | None:
    """The image family of a library id or a path (for Enhance prompt's style)."""
    from desktop_app.core.library import Library

    p = Path(text).expanduser()
    try:
        rec = Library().find_by_path(p.resolve()) if p.exists() else Library().resolve(text)
        if rec is None and p.exists():
            from desktop_app.core.model_files import record_for_path

            rec = record_for_path(p)
    except AtelierError:
        return None
    return getattr(rec, "family", None) if rec is not None else None


def enhance_prompt(idea: str, family: str | None, chat_model: str | None = None, seed: int | None = None,
                   token=None) -> tuple[str, str]:
    """Enhance prompt from the CLI: the chat model (default: the starter) in its own child
    process, streaming the prompt to stderr; the engine is stopped afterwards."""
    from desktop_app.commands.chat import _resolve_model
    from desktop_app.core.prompt_enhance import check_idea, custom_instructions, enhance
    from desktop_app.core.settings import Settings
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_types import LoadConfig

    check_idea(idea)
    rec = _resolve_model(chat_model)
    cfg = LoadConfig.for_model(rec.path, model_id=rec.id)
    engine = ChatEngineProcess()
    try:
        engine.load(cfg, token)
        print(f"enhancing the prompt with {rec.display_name or rec.id}…", file=sys.stderr)
        prompt, negative = enhance(engine, idea, family, token, custom_instructions(Settings(), family),
                                   seed=seed)
    finally:
        engine.unload()
    print(f"prompt: {prompt}", file=sys.stderr)
    if negative:
        print(f"negative: {negative}", file=sys.stderr)
    return prompt, negative


def cmd_imagine(args) -> int:
    from desktop_app.commands import emit_json
    from desktop_app.core.settings import Settings
    from desktop_app.engines.base import CancelToken
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.protocol import GenerateRequest

    out = Path(args.out).expanduser()
    if out.parent and not out.parent.exists():
        raise AtelierError(f"The output folder {out.parent} does not exist.")
    if out.suffix.lower() != ".png":
        raise AtelierError(
            f"--out {out.name}: Atelier saves generated images as PNG, which carries the generation parameters; "
            "use a .png file name (convert it afterwards if you need another format)."
        )
    allow_pickle = bool(Settings().get("allow_pickle"))
    model = resolve_model(args.model, allow_pickle)
    width, height = parse_size(args.size)
    init = _read(args.init_image, "init image")
    mask = _read(args.mask, "mask")
    if mask and not init:
        raise AtelierError("--mask needs --init-image (the image to inpaint).")
    mode = "inpaint" if mask else ("img2img" if init else "txt2img")
    prompt, negative, idea = args.prompt, args.negative or "", ""
    if getattr(args, "enhance", False):
        idea = args.prompt
        prompt, enhanced_negative = enhance_prompt(idea, model.family or _family_of(args.model),
                                                   getattr(args, "chat_model", None), args.seed)
        negative = negative or enhanced_negative
    req = GenerateRequest(
        model=model, prompt=prompt, negative=negative, idea=idea, mode=mode, steps=args.steps,
        guidance=args.guidance, width=width, height=height, seed=args.seed, scheduler=args.scheduler,
        strength=args.strength, loras=[parse_lora(x) for x in args.lora], init_image=init, mask=mask,
        preview=False, private_metadata=not Settings().get("image_metadata_paths"),
    )
    req.validate()
    t0 = time.perf_counter()
    token = CancelToken()
    engine = EngineProcess()
    result = None
    tty = sys.stderr.isatty()
    try:
        for ev in engine.generate(req, token):
            if ev.type == "loaded":
                print(f"loaded {Path(model.path).name} ({ev['family']}, {ev['placement_text']}) in {ev['seconds']:.1f} s",
                      file=sys.stderr)
            elif ev.type == "notice":
                print(f"note: {ev['message']}", file=sys.stderr)
            elif ev.type == "progress":
                it = f", {ev['it_s']:.2f} it/s" if ev.get("it_s") else ""
                end = "\r" if tty and ev["step"] < ev["total"] else "\n"
                print(f"step {ev['step']}/{ev['total']}{it}", end=end, file=sys.stderr, flush=True)
            elif ev.type == "result":
                result = ev
            elif ev.type == "error":
                raise (ModelFormatError if ev["kind"] == "model_format" else AtelierError)(ev["message"])
            elif ev.type == "cancelled":
                raise Cancelled()
    except KeyboardInterrupt:
        token.cancel()
        raise
    finally:
        engine.stop()
    if result is None or not result.image:
        raise AtelierError("The engine finished without an image.")
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(result.image)
    tmp.replace(out)
    params = result["params"]
    seconds = round(time.perf_counter() - t0, 3)
    print(f"saved {out} (seed {params['seed']}, {seconds:.1f} s)", file=sys.stderr)
    if args.json:
        emit_json({
            "out": str(out.resolve()), "seed": params["seed"], "steps": params["steps"],
            "size": f"{params['width']}x{params['height']}", "width": params["width"], "height": params["height"],
            "seconds": seconds, "model": model.path, "scheduler": params["scheduler"], "mode": mode,
            "guidance": params["guidance"], "prompt": params["prompt"], "negative": params["negative"],
            "idea": params.get("idea", ""),
        })
    return 0
