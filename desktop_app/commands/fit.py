"""`atelier models fit PATH [--ctx N] [--json]`: how one model file or folder fits this machine."""

from __future__ import annotations

from pathlib import Path

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError

GiB = 2**30


def fit_path(path: str | Path, n_ctx: int | None = None) -> dict:
    from desktop_app.core.fitting import plan_for_record
    from desktop_app.core.hardware import detect_hardware
    from desktop_app.core.model_files import record_for_path

    p = Path(path).expanduser()
    if not p.exists():
        raise AtelierError(f"No such file or folder: {p}")
    if n_ctx is not None and n_ctx < 1:
        raise AtelierError(f"--ctx must be a positive number of tokens, not {n_ctx}.")
    rec = record_for_path(p)
    hw = detect_hardware()
    plan = plan_for_record(rec, hw, n_ctx=n_ctx)
    d = plan.to_dict()
    d.update({"path": rec.path, "format": rec.format, "task": rec.task, "size_bytes": rec.size_bytes,
              "hardware": hw.summary()})
    return d


def render_text(d: dict) -> str:
    lines = [f"{Path(d['path']).name} on {d['hardware']}", f"  plan:      {d['plan']} ({d['badge']})"]
    if "n_layers" in d:
        lines.append(f"  layers:    {d['n_gpu_layers']}/{d['n_layers']} on the GPU")
        lines.append(f"  context:   {d['n_ctx']} tokens (largest that fits: {d['max_ctx']}, model: {d['context_length']})")
        lines.append(f"  memory:    ~{d['estimated_bytes'] / GiB:.2f} GiB = weights {d['weights_bytes'] / GiB:.2f} + "
                     f"KV cache {d['kv_cache_bytes'] / GiB:.2f} + compute {d['compute_bytes'] / GiB:.2f} + "
                     f"output {d['output_bytes'] / GiB:.3f}")
    else:
        lines.append(f"  device:    {d['device']} ({d['dtype']})")
        lines.append(f"  memory:    ~{d['estimated_bytes'] / GiB:.2f} GiB peak, weights {d['weights_bytes'] / GiB:.2f} GiB")
    if d.get("note"):
        lines.append(f"  note:      {d['note']}")
    return "\n".join(lines)


def cmd_fit(args) -> int:
    d = fit_path(args.path, getattr(args, "ctx", None))
    if getattr(args, "json", False):
        emit_json(d)
    else:
        print(render_text(d))
    return 0
