"""The app's chat engine against llama.cpp's own ``llama-bench``, on the same machine, the same
llama.cpp source and the same portable build flags (issue 11).

``llama-bench`` is built once from the llama.cpp that the installed llama-cpp-python wheel was
built from (its sdist, downloaded from the package registry, or ``--sdist``), with the flags of
``installers/bootstrap.py``, and cached under ``~/.cache/atelier/llama-bench/``. Then, in one run,
interleaved round by round on the starter model (SmolLM2-135M), at the same threads:

* ``llama-bench`` tg (decode) and pp (prompt) tokens/s, and tg after 2,048 tokens of context;
* raw llama-cpp-python (``Llama.eval`` for the prompt, ``Llama.generate`` greedy for decoding) with
  the app's settings (threads, flash attention);
* the app's engine (``ChatEngineProcess``: the child process, template, sampler, detokenising,
  <think> parsing and the pipe), decode tokens/s from its stats, prompt tokens/s as prompt tokens
  over the time to the first token, and decode with 2,048 tokens already in the context.

Goals: app decode >= 0.90 x llama-bench tg, app prompt >= 0.90 x llama-bench pp, at the same threads.

Usage: python bench/native.py [--rounds 5] [--tokens 64] [--build-only]. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atelier" / "llama-bench"
PROMPT_TOKENS = 512
LONG_DEPTH = 2048
WORDS = ("the river carried old maps of distant harbours while patient keepers counted lanterns "
         "under a slow green sky and merchants argued about salt copper wool and the price of "
         "silence in the winter markets of the northern coast").split()


def log(msg: str) -> None:
    print(f"[native] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ the build
def build_flags() -> list[str]:
    sys.path.insert(0, str(ROOT / "installers"))
    from bootstrap import cmake_args  # the flags the app's own wheel was built with

    return cmake_args("cpu").split() + ["-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF",
                                        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=OFF"]


def llama_bench(sdist: str | None = None) -> Path:
    """The cached llama-bench for the installed llama-cpp-python version and build flags."""
    import llama_cpp

    version = llama_cpp.__version__
    flags = build_flags()
    key = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:10]
    exe = CACHE / f"{version}-{key}" / "llama-bench"
    if exe.is_file():
        return exe
    work = Path(tempfile.mkdtemp(prefix="llama-bench-"))
    try:
        if sdist is None:
            log(f"downloading the llama-cpp-python {version} source from the package registry")
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            f"llama-cpp-python=={version}", "-d", str(work)], check=True,
                           stdout=subprocess.DEVNULL)
            sdist = str(next(work.glob("llama_cpp_python-*.tar.gz")))
        with tarfile.open(sdist) as tf:
            members = [m for m in tf.getmembers() if "/vendor/llama.cpp/" in m.name]
            tf.extractall(work, members=members, filter="data")
        src = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = work / "build"
        log(f"building llama-bench ({' '.join(flags)})")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(["cmake", "-S", str(src), "-B", str(build), *gen, *flags], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--target", "llama-bench", "-j", str(os.cpu_count() or 2)],
                       check=True, stdout=subprocess.DEVNULL)
        built = next(p for p in build.rglob("llama-bench") if p.is_file() and os.access(p, os.X_OK))
        exe.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, exe)
        (exe.parent / "flags.txt").write_text(" ".join(flags) + "\n")
        return exe
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------ the three sides
def bench_llama(exe: Path, model: Path, threads: int, tokens: int, flash: bool) -> dict:
    """llama-bench pp512, tg<tokens> at depth 0 and tg at depth 2048, flash attention as the app's."""
    out = subprocess.run([str(exe), "-m", str(model), "-t", str(threads), "-fa", "1" if flash else "0",
                          "-p", str(PROMPT_TOKENS),
                          "-n", str(tokens), "-d", f"0,{LONG_DEPTH}", "-r", "1", "-o", "json"],
                         capture_output=True, text=True, check=True, timeout=600)
    res = {}
    for row in json.loads(out.stdout):
        depth = row.get("n_depth", 0)
        kind = "pp" if row.get("n_prompt") else "tg"
        if kind == "pp" and depth:
            continue
        res[kind + ("_long" if depth else "")] = row["avg_ts"]
    return res


def prompt_text(llm, n_tokens: int) -> str:
    words, i = [], 0
    while True:
        words.append(WORDS[i % len(WORDS)])
        i += 1
        if i % 16 == 0 and len(llm.tokenize(" ".join(words).encode(), add_bos=False)) >= n_tokens:
            return " ".join(words)


def bench_raw(llm, tokens: int) -> dict:
    """Raw llama-cpp-python: the prompt evaluated in one call, then greedy decoding."""
    prompt = llm.tokenize(prompt_text(llm, PROMPT_TOKENS).encode(), add_bos=True)[:PROMPT_TOKENS]
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    pp = len(prompt) / (time.perf_counter() - t0)

    def decode(depth_tokens: list[int]) -> float:
        llm.reset()
        stamps = []
        for _ in llm.generate(depth_tokens, temp=0.0, top_k=1, repeat_penalty=1.0, reset=False):
            stamps.append(time.perf_counter())
            if len(stamps) > tokens:
                break
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    tg = decode(prompt[:16])
    long_prompt = llm.tokenize(prompt_text(llm, LONG_DEPTH).encode(), add_bos=True)[:LONG_DEPTH]
    tg_long = decode(long_prompt)
    return {"pp": pp, "tg": tg, "tg_long": tg_long}


def bench_app(engine, llm, tokens: int) -> dict:
    """The app's engine (child process): decode rate from its stats, prompt rate from TTFT."""
    params = {"max_tokens": tokens, "temperature": 0.0, "seed": 1, "repeat_penalty": 1.0}
    text = prompt_text(llm, PROMPT_TOKENS - 40)
    st = engine.complete([{"role": "user", "content": text + "\n\nContinue the list."}], params)
    pp = st.prompt_tokens / st.ttft_s
    short = engine.complete([{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
                            dict(params, seed=2))
    long_text = prompt_text(llm, LONG_DEPTH - 40)
    long = engine.complete([{"role": "user", "content": long_text + "\n\nSummarise."}], dict(params, seed=3))
    return {"pp": pp, "tg": short.tokens_per_s, "tg_long": long.tokens_per_s,
            "tokens": short.tokens, "long_prompt_tokens": long.prompt_tokens}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--sdist", default=None, help="a llama_cpp_python-<version>.tar.gz instead of downloading it")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--round1-defaults", action="store_true",
                    help="the app's engine as round 1 loaded it (llama-cpp-python's defaults: half the logical "
                         "CPUs for decoding, flash attention off): the 'before' figure; llama-bench keeps all cores")
    args = ap.parse_args(argv)

    exe = llama_bench(args.sdist)
    if args.build_only:
        print(json.dumps({"bench": "native", "llama_bench": str(exe)}))
        return 0
    from llama_cpp import Llama

    from desktop_app.core.cpu_threads import auto_threads
    from desktop_app.core.starter import starter_model_path
    from desktop_app.engines.chat_client import ChatEngineProcess
    from desktop_app.engines.chat_native import llama_kwargs, native_load
    from desktop_app.engines.chat_types import LoadConfig

    model = starter_model_path()
    cfg = LoadConfig.for_model(model, n_ctx=LONG_DEPTH + 512, settings={})
    threads = cfg.n_threads or auto_threads()
    if args.round1_defaults:
        cfg.n_threads, cfg.n_threads_batch = max(os.cpu_count() // 2, 1), os.cpu_count()
        cfg.flash_attn, cfg.adaptive_threads = "off", False
    engine = ChatEngineProcess()
    engine.load(cfg)
    info = engine.info()
    flash = info["flash_attn"] == "on"  # all three sides run as the app's engine does
    raw_cfg = LoadConfig(str(model), n_ctx=cfg.n_ctx, flash_attn=info["flash_attn"], n_threads=info["n_threads"])
    with native_load(info["flash_attn"]):
        llm = Llama(str(model), n_ctx=cfg.n_ctx, verbose=False, **llama_kwargs(raw_cfg))
    sides: dict[str, list[dict]] = {"llama_bench": [], "raw": [], "app": []}
    order = list(sides)
    try:
        bench_app(engine, llm, 8)  # warm up both
        for r in range(args.rounds):
            for side in (order if r % 2 == 0 else order[::-1]):
                if side == "llama_bench":
                    # llama-bench at llama.cpp's own thread count (with --round1-defaults the app has fewer)
                    sides[side].append(bench_llama(exe, model, threads, args.tokens, flash))
                elif side == "raw":
                    sides[side].append(bench_raw(llm, args.tokens))
                else:
                    sides[side].append(bench_app(engine, llm, args.tokens))
            log(f"round {r + 1}: " + ", ".join(f"{s} tg {v[-1]['tg']:.1f} pp {v[-1]['pp']:.0f}" for s, v in sides.items()))
    finally:
        engine.unload()
        llm.close()

    def med(side, key):
        return round(statistics.median(x[key] for x in sides[side]), 2)

    res = {"bench": "native", "model": model.name, "threads": threads, "app_threads": info["n_threads"],
           "flash_attn": info["flash_attn"], "round1_defaults": args.round1_defaults,
           "rounds": args.rounds, "tokens": args.tokens, "llama_bench": str(exe)}
    for key in ("tg", "pp", "tg_long"):
        for side in sides:
            res[f"{side}_{key}_ts"] = med(side, key)
        res[f"app_vs_llama_bench_{key}"] = round(res[f"app_{key}_ts"] / res[f"llama_bench_{key}_ts"], 3)
        res[f"raw_vs_llama_bench_{key}"] = round(res[f"raw_{key}_ts"] / res[f"llama_bench_{key}_ts"], 3)
    res["goal"] = ">= 0.90 (tg and pp)"
    res["ok"] = res["app_vs_llama_bench_tg"] >= 0.90 and res["app_vs_llama_bench_pp"] >= 0.90
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
