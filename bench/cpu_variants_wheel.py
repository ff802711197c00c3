"""The CPU-variants build of llama-cpp-python (installers/llama_variants.py) against the portable
one, as Atelier runs them (issue 11): two Python environments, one with each wheel, measured
interleaved on the same model, the same threads. Each round runs a child in each environment: load,
a 256-token prompt (prompt tok/s), then 32 greedy tokens (decode tok/s). The variants child
loads the variant Atelier chooses (core/cpu_variants, probed), named in the output.

The model is a random llama-shaped GGUF with Q4_0 weights written with gguf-py (about 1.1 B
parameters by default: speed depends on the shapes and the quantisation, not the values).

    python bench/cpu_variants_wheel.py --variants-python /path/to/venv/bin/python [--rounds 3] [--layers 22]

The portable side is this interpreter (the README's .venv). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time, llama_cpp
model, threads = sys.argv[1], int(sys.argv[2])
m = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads, n_batch=512,
                    verbose=False)
prompt = [1] + [(i * 7919) % 31000 + 100 for i in range(255)]
t0 = time.perf_counter()
m.eval(prompt)
pp = len(prompt) / (time.perf_counter() - t0)
t0 = time.perf_counter()
tok = 0
for _ in range(32):
    tok = int(m.sample(temp=0.0)) if hasattr(m, "sample") else 2
    m.eval([tok])
tg = 32 / (time.perf_counter() - t0)
print(json.dumps({"pp": pp, "tg": tg, "version": llama_cpp.__version__}))
"""


def run(python: str, model: Path, threads: int, env: dict) -> dict:
    out = subprocess.run([python, "-c", CHILD, str(model), str(threads)], capture_output=True, text=True,
                         timeout=1800, env=env, cwd=str(ROOT))
    if out.returncode != 0:
        how = f"died with signal {-out.returncode}" if out.returncode < 0 else f"exited {out.returncode}"
        raise SystemExit(f"{python} {how} (variant {env.get('ATELIER_GGML_CPU_VARIANT') or 'ggml own choice'}): "
                         f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants-python", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=22)
    args = ap.parse_args(argv)
    from bench.cpu_variants import write_q4_model
    from desktop_app.core.cpu_threads import auto_threads

    # the variant Atelier's chat engine would load there (probed once, cached)
    pick = subprocess.run([args.variants_python, "-c", "from desktop_app.core.cpu_variants import chosen; "
                           "print(chosen())"], capture_output=True, text=True, cwd=str(ROOT),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600).stdout.strip()
    threads = auto_threads()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_q4_model(Path(tmp) / "random-q4_0.gguf", args.layers)
        size = model.stat().st_size
        res: dict[str, list[dict]] = {"portable": [], "variants": []}
        envs = {"portable": dict(os.environ),
                "variants": dict(os.environ, ATELIER_GGML_CPU_VARIANT=pick, PYTHONPATH=str(ROOT))}
        pythons = {"portable": sys.executable, "variants": args.variants_python}
        for r in range(args.rounds):
            for name in (["portable", "variants"] if r % 2 == 0 else ["variants", "portable"]):
                res[name].append(run(pythons[name], model, threads, envs[name]))
            print(f"[cpu_variants_wheel] round {r + 1}: " + ", ".join(
                f"{k} tg {v[-1]['tg']:.1f} pp {v[-1]['pp']:.1f}" for k, v in res.items()), file=sys.stderr)
    med = {f"{k}_{m}_ts": round(statistics.median(x[m] for x in v), 2) for k, v in res.items() for m in ("tg", "pp")}
    print(json.dumps({"bench": "cpu_variants_wheel", "variant": pick, "model_bytes": size, "layers": args.layers,
                      "threads": threads, **med,
                      "ratio_tg": round(med["variants_tg_ts"] / med["portable_tg_ts"], 3),
                      "ratio_pp": round(med["variants_pp_ts"] / med["portable_pp_ts"], 3),
                      "baseline": "the portable wheel (AVX2 FMA F16C), same model and threads, interleaved"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
