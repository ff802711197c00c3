"""Seconds per image through Atelier's diffusion engine (child process, previews on) vs the raw
diffusers pipeline in this process: same random pipeline, steps, seed and scheduler, runs
interleaved, medians and their ratio (goal ≤ 1.05). The engine runs as the app does (on a CPU with
native bfloat16, ``auto`` is bfloat16 with channels_last; ``--dtype float32`` pins the raw
defaults' precision); ``mean_abs_pixel_diff`` is its quality check against the raw float32 image of
the same seed (0 when identical).

    .venv/bin/python bench/images.py [--runs 5] [--steps 8] [--size 256]

The pipeline is an SD 1.5-structured random model, big enough that one step takes ≥ 100 ms on
a small CPU. The GUI-stall figure (longest GUI-thread gap while the studio loads a model and
generates) is measured in the real window by bench/images_gui.py, which this script runs after
its own timing (unless --no-gui) and folds into ``gui_stall_ms``. The last stdout line is one JSON
object.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=384)  # one step >= 100 ms on this machine
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="the engine's CPU precision (the app's setting image_cpu_dtype)")
    ap.add_argument("--no-gui", dest="gui", action="store_false",
                    help="skip the GUI-stall figure (bench/images_gui.py in the real window)")
    args = ap.parse_args(argv)

    from desktop_app.engines.base import CancelToken
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec
    from tests.diffusion.tiny_pipelines import build_sd15

    tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-images-"))
    model = build_sd15(tmp / "bench-sd15", channels=(32, 64, 96, 96), sample_size=args.size // 8,
                       vae_channels=(8, 16, 32, 32))

    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from PIL import Image

    raw = StableDiffusionPipeline.from_pretrained(str(model), local_files_only=True, dtype=torch.float32)
    raw.scheduler = EulerDiscreteScheduler.from_config(raw.scheduler.config)
    raw.set_progress_bar_config(disable=True)

    engine = EngineProcess(log_path=tmp / "engine.log", env={"ATELIER_IMAGE_CPU_DTYPE": args.dtype})
    req = GenerateRequest(model=ModelSpec(str(model)), prompt="a lighthouse at dusk", steps=args.steps,
                          seed=args.seed, width=args.size, height=args.size, scheduler="Euler", guidance=7.0,
                          preview=True)

    def run_engine():
        t0 = time.perf_counter()
        image, previews, step_its = None, 0, []
        for ev in engine.generate(req, CancelToken()):
            if ev.type == "preview":
                previews += 1
            elif ev.type == "progress" and ev.get("it_s"):
                step_its.append(ev["it_s"])
            elif ev.type == "result":
                image = ev.image
            elif ev.type == "error":
                raise SystemExit(f"engine error: {ev['message']}")
        return time.perf_counter() - t0, image, previews, step_its

    def run_raw():
        t0 = time.perf_counter()
        out = raw(prompt=req.prompt, num_inference_steps=args.steps, guidance_scale=7.0, width=args.size,
                  height=args.size, generator=torch.Generator("cpu").manual_seed(args.seed))
        return time.perf_counter() - t0, out.images[0]

    try:
        run_engine()  # warm-up: child start, torch import, model load
        run_raw()
        eng_times, raw_times, previews, its = [], [], 0, []
        eng_img = raw_img = None
        for i in range(args.runs):
            order = (run_engine, run_raw) if i % 2 == 0 else (run_raw, run_engine)
            for fn in order:
                if fn is run_engine:
                    t, eng_img, previews, step_its = run_engine()
                    eng_times.append(t)
                    its.extend(step_its)
                else:
                    t, raw_img = run_raw()
                    raw_times.append(t)
            print(f"run {i + 1}/{args.runs}: engine {eng_times[-1]:.3f} s, raw {raw_times[-1]:.3f} s",
                  file=sys.stderr)
    finally:
        engine.stop()
    import numpy as np

    eng_px = np.asarray(Image.open(io.BytesIO(eng_img)).convert("RGB")).astype(float)
    raw_px = np.asarray(raw_img.convert("RGB")).astype(float)
    same = bool((eng_px == raw_px).all())
    mad = round(float(np.abs(eng_px - raw_px).mean()), 3)
    e, r = statistics.median(eng_times), statistics.median(raw_times)
    step_ms = 1000.0 / statistics.median(its) if its else None
    result = {
        "bench": "images",
        "engine_s_per_image": round(e, 4),
        "raw_s_per_image": round(r, 4),
        "ratio": round(e / r, 4),
        # each engine run over the raw run of the same pair: steadier on a noisy shared machine
        "ratio_pairwise_median": round(statistics.median(a / b for a, b in zip(eng_times, raw_times)), 4),
        "goal_ratio": 1.05,
        "ok": e / r <= 1.05,
        "runs": args.runs,
        "steps": args.steps,
        "size": f"{args.size}x{args.size}",
        "step_ms": round(step_ms, 1) if step_ms else None,
        "previews_per_image": previews,
        "identical_pixels": same,
        "engine_dtype": args.dtype,
        "mean_abs_pixel_diff": mad,
        "engine_times": [round(x, 4) for x in eng_times],
        "raw_times": [round(x, 4) for x in raw_times],
        # From bench/images_gui.py (the real window): longest GUI-thread stall, goal < 50 ms.
        "gui_stall_ms": None,
        "gui_stall_goal_ms": 50,
    }
    if args.gui:
        import subprocess

        g = subprocess.run([sys.executable, str(ROOT / "bench" / "images_gui.py")], capture_output=True, text=True,
                           timeout=1200, cwd=ROOT)
        if g.returncode == 0 and g.stdout.strip():
            gui = json.loads(g.stdout.strip().splitlines()[-1])
            result["gui_stall_ms"] = gui.get("value")
        else:
            print(f"images_gui.py failed: {g.stderr.strip()[-500:]}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
