"""Fuzz: malformed GGUF and safetensors files through `models fit`, `models import` and `run` /
`imagine`, the app's own CLI paths (issue 9). Goal: 0 crash, 0 hang, 0 traceback.

Mutants are made from real, working files (a tiny random llama GGUF that llama.cpp runs; a tiny
SD 1.5 single-file checkpoint that the image engine loads), deterministically (seeded): every
known header key set to edge values, the header counts, tensor types/offsets/shapes, truncations,
random byte flips in the header; safetensors header JSON mutations (dtypes, shapes, offsets,
duplicates, metadata, lengths, nesting) and byte flips.

Each operation is classified:
  clean      an AtelierError: one line for the user, exit 1 (the wanted outcome for a bad file)
  ran        it worked (the mutation did not matter)
  crash      the process died (a signal; the worker is restarted)
  hang       it took longer than the per-operation limit
  traceback  any other exception (a bug: the user would see "TypeError: ..." or a stack)

Operations run in a worker process; `run` and `imagine` start the engines' own child processes,
as the app does. Usage: python bench/fuzz_models.py [--gguf 320] [--safetensors 110] [--limit-s 30].
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("clean", "ran", "crash", "hang", "traceback")


# ------------------------------------------------------------------------------ GGUF mutants
def _kv_positions(data: bytes) -> dict[str, tuple[int, int]]:
    """key -> (value offset, value type) for the scalar metadata of a GGUF (v3, little endian)."""
    pos = 24
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    out = {}
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    for _ in range(n_kv):
        n = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        vtype = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        out[key] = (pos, vtype)
        if vtype in sizes:
            pos += sizes[vtype]
        elif vtype == 8:
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        elif vtype == 9:
            et, cnt = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if et == 8:
                for _ in range(cnt):
                    pos += 8 + struct.unpack_from("<Q", data, pos)[0]
            else:
                pos += cnt * sizes[et]
    out["__tensors__"] = (pos, -1)
    return out


def gguf_mutants(base: bytes, n: int, rng: random.Random) -> list[tuple[str, bytes]]:
    kv = _kv_positions(base)
    out: list[tuple[str, bytes]] = []

    def put(name: str, data: bytes) -> None:
        out.append((name, data))

    u32_vals = [0, 1, 3, 513, 1000, 2**31, 2**32 - 1, 400_000_000]
    f32_vals = [float("nan"), float("inf"), -1.0, 0.0, 1e30]
    for key, (off, vtype) in kv.items():
        if vtype == 4:  # UINT32
            for v in u32_vals:
                d = bytearray(base)
                struct.pack_into("<I", d, off, v)
                put(f"{key}={v}", bytes(d))
        elif vtype == 6:  # FLOAT32
            for v in f32_vals:
                d = bytearray(base)
                struct.pack_into("<f", d, off, v)
                put(f"{key}={v}", bytes(d))
    for field_off, label in ((8, "n_tensors"), (16, "n_kv")):
        for v in (0, 1, 2**40, 2**64 - 1):
            d = bytearray(base)
            struct.pack_into("<Q", d, field_off, v)
            put(f"{label}={v}", bytes(d))
    for v in (1, 4, 99):
        d = bytearray(base)
        struct.pack_into("<I", d, 4, v)
        put(f"version={v}", bytes(d))
    # tensor table: name, n_dims, dims, type, offset
    pos = kv["__tensors__"][0]
    n_tensors = struct.unpack_from("<Q", base, 8)[0]
    infos = []
    for _ in range(n_tensors):
        nlen = struct.unpack_from("<Q", base, pos)[0]
        name = base[pos + 8:pos + 8 + nlen].decode()
        p = pos + 8 + nlen
        nd = struct.unpack_from("<I", base, p)[0]
        dims_at = p + 4
        type_at = dims_at + 8 * nd
        infos.append((name, dims_at, nd, type_at))
        pos = type_at + 4 + 8
    for name, dims_at, nd, type_at in infos[:12]:
        for t in (1, 8, 12, 30, 99, 2**31):
            d = bytearray(base)
            struct.pack_into("<I", d, type_at, t)
            put(f"{name}.type={t}", bytes(d))
        for delta in (1, 31, 2**40):
            d = bytearray(base)
            off = struct.unpack_from("<Q", d, type_at + 4)[0]
            struct.pack_into("<Q", d, type_at + 4, (off + delta) % 2**64)
            put(f"{name}.offset+{delta}", bytes(d))
        for v in (0, 2**33):
            d = bytearray(base)
            struct.pack_into("<Q", d, dims_at, v)
            put(f"{name}.dim0={v}", bytes(d))
        d = bytearray(base)
        struct.pack_into("<I", d, dims_at - 4, 9)
        put(f"{name}.n_dims=9", bytes(d))
    # a missing tensor: rename one so that llama.cpp does not find it
    for name, _d, _n, _t in infos[:6]:
        i = base.find(name.encode())
        d = bytearray(base)
        d[i] = ord("X")
        put(f"{name}.renamed", bytes(d))
    for cut in sorted({24, 30, 100, 500, 1000, pos - 1, pos + 1, len(base) // 2, len(base) - 1, len(base) - 64}):
        put(f"truncated@{cut}", base[:cut])
    header_end = pos
    while len(out) < n:
        d = bytearray(base)
        k = rng.choice((1, 2, 4, 16))
        for _ in range(k):
            d[rng.randrange(4, header_end)] = rng.randrange(256)
        put(f"flip{len(out)}x{k}", bytes(d))
    return out[:max(n, len(out))]


# ------------------------------------------------------------------------------ safetensors mutants
def safetensors_mutants(base: bytes, n: int, rng: random.Random) -> list[tuple[str, bytes]]:
    (hlen,) = struct.unpack_from("<Q", base, 0)
    header = json.loads(base[8:8 + hlen])
    data = base[8 + hlen:]
    names = [k for k in header if k != "__metadata__"]
    out: list[tuple[str, bytes]] = []

    def pack(h, raw: str | None = None, body: bytes = data, length: int | None = None) -> bytes:
        b = (raw if raw is not None else json.dumps(h)).encode()
        return struct.pack("<Q", len(b) if length is None else length) + b + body

    def with_entry(i: int, **change) -> dict:
        h = json.loads(json.dumps(header))
        h[names[i]].update(change)
        return h

    for i in range(0, min(len(names), 60), 6):
        k = names[i]
        beg, end = header[k]["data_offsets"]
        shape = header[k]["shape"]
        for dt in ("F99", None, "", 5, "F32 ", "I4"):
            out.append((f"{k}.dtype={dt}", pack(with_entry(i, dtype=dt))))
        for sh in ([-1] + shape[1:], [2.5], [2**60, 2**60], "4", [[1]], None):
            out.append((f"{k}.shape={sh}", pack(with_entry(i, shape=sh))))
        for offs in ([end, beg], [beg, end + 10**9], [-4, end], [beg], [beg, end, 0], [float(beg), end], None):
            out.append((f"{k}.offsets={offs}", pack(with_entry(i, data_offsets=offs))))
    dup = json.dumps(header)[:-1] + ", " + json.dumps(names[0]) + ": " + json.dumps(header[names[0]]) + "}"
    out.append(("duplicate-key", pack(None, raw=dup)))
    out.append(("metadata-not-str", pack({**header, "__metadata__": {"format": 1}})))
    out.append(("metadata-list", pack({**header, "__metadata__": [1, 2]})))
    out.append(("not-json", pack(None, raw="{not json")))
    out.append(("json-list", pack(None, raw="[1, 2, 3]")))
    out.append(("deep", pack(None, raw='{"a": ' + "[" * 50000 + "]" * 50000 + "}")))
    for length in (0, 1, hlen + 1, hlen - 1, 2**40, 2**64 - 1):
        out.append((f"header-length={length}", pack(header, length=length)))
    for cut in (4, 8, 20, 8 + hlen // 2, 8 + hlen, len(base) // 2, len(base) - 1):
        out.append((f"truncated@{cut}", base[:cut]))
    flips = max(n - len(out), 40)  # random byte flips in the header text, beyond the structured cases
    for _ in range(flips):
        d = bytearray(base)
        for _ in range(rng.choice((1, 2, 4))):
            d[rng.randrange(8, 8 + hlen)] = rng.randrange(32, 127)
        out.append((f"flip{len(out)}", bytes(d)))
    return out


# ------------------------------------------------------------------------------ the worker
class _Hang(BaseException):
    pass


def _alarm(_sig, _frame):
    raise _Hang()


def worker(jobs_file: str, results_file: str, limit_s: int) -> int:
    sys.path.insert(0, str(ROOT))
    from desktop_app import cli
    from desktop_app.core.logs import setup_logging

    setup_logging()
    signal.signal(signal.SIGALRM, _alarm)
    jobs = json.loads(Path(jobs_file).read_text())
    done = {json.loads(line)["i"] for line in Path(results_file).read_text().splitlines()} \
        if Path(results_file).exists() else set()
    with open(results_file, "a") as res:
        for i, (path, kind) in enumerate(jobs):
            if i in done:
                continue
            res.write(json.dumps({"i": i, "started": True}) + "\n")
            res.flush()
            outcomes = {}
            out_png = Path(path).with_suffix(".png")
            ops = {"fit": ["models", "fit", path, "--json"], "import": ["models", "import", path]}
            ops["run" if kind == "gguf" else "imagine"] = (
                ["run", "--model", path, "--prompt", "w1 w2", "--max-tokens", "3"] if kind == "gguf" else
                ["imagine", "--model", path, "--prompt", "x", "--out", str(out_png), "--steps", "1", "--size", "64x64"])
            for op, argv in ops.items():
                if kind == "safetensors" and op == "fit":
                    argv = ["models", "fit", path, "--json"]
                err, outbuf = io.StringIO(), io.StringIO()
                signal.alarm(limit_s)
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
                        rc = cli.main(argv)
                    text = err.getvalue()
                    if "Traceback" in text or any(ln.startswith("atelier: error: ") and ":" in ln[16:40] and
                                                  ln[16:].split(":", 1)[0].isidentifier() and
                                                  ln[16:].split(":", 1)[0].endswith(("Error", "Exception"))
                                                  for ln in text.splitlines()):
                        outcomes[op] = ["traceback", text.strip()[-300:]]
                    else:
                        outcomes[op] = ["ran" if rc == 0 else "clean", text.strip().splitlines()[-1][:200]
                                        if text.strip() else ""]
                except _Hang:
                    outcomes[op] = ["hang", ""]
                except SystemExit as exc:
                    outcomes[op] = ["clean" if exc.code else "ran", ""]
                except BaseException as exc:  # noqa: BLE001 - what the fuzz looks for
                    outcomes[op] = ["traceback", f"{type(exc).__name__}: {exc}"[:300]]
                finally:
                    signal.alarm(0)
            res.write(json.dumps({"i": i, "outcomes": outcomes}) + "\n")
            res.flush()
    return 0


# ------------------------------------------------------------------------------ the driver
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=int, default=320)
    ap.add_argument("--safetensors", type=int, default=110)
    ap.add_argument("--limit-s", type=int, default=60)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--worker", nargs=3)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], int(args.worker[2]))

    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="atelier-fuzz-"))
    os.environ["ATELIER_HOME"] = str(tmp / "home")
    from tests.helpers import write_tiny_llama_gguf

    rng = random.Random(args.seed)
    base_gguf = write_tiny_llama_gguf(tmp / "base.gguf").read_bytes()
    jobs: list[tuple[str, str]] = []
    names: list[str] = []
    (tmp / "gguf").mkdir()
    for k, (name, data) in enumerate(gguf_mutants(base_gguf, args.gguf, rng)):
        p = tmp / "gguf" / f"m{k:04d}.gguf"
        p.write_bytes(data)
        jobs.append((str(p), "gguf"))
        names.append(name)
    if args.safetensors:
        from tests.diffusion import tiny_pipelines as tp

        folder = tp.build_sd15(tmp / "tiny-sd15")
        base_st = tp.write_sd15_single_file(folder, tmp / "base.safetensors").read_bytes()
        (tmp / "st").mkdir()
        for k, (name, data) in enumerate(safetensors_mutants(base_st, args.safetensors, rng)):
            p = tmp / "st" / f"s{k:04d}.safetensors"
            p.write_bytes(data)
            jobs.append((str(p), "safetensors"))
            names.append(name)
    jobs_file, results_file = tmp / "jobs.json", tmp / "results.jsonl"
    jobs_file.write_text(json.dumps(jobs))
    t0 = time.monotonic()
    crashes = []
    while True:
        r = subprocess.run([sys.executable, __file__, "--worker", str(jobs_file), str(results_file),
                            str(args.limit_s)], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
                           capture_output=True, text=True)
        lines = [json.loads(x) for x in results_file.read_text().splitlines()]
        finished = {x["i"] for x in lines if "outcomes" in x}
        started = [x["i"] for x in lines if x.get("started")]
        if r.returncode == 0 and len(finished) == len(jobs):
            break
        # the worker died: the mutant it had started crashed it
        victim = next((i for i in reversed(started) if i not in finished), None)
        if victim is None:
            print(r.stderr[-2000:], file=sys.stderr)
            break
        crashes.append(victim)
        with open(results_file, "a") as f:
            f.write(json.dumps({"i": victim, "outcomes": {"worker": ["crash", f"exit {r.returncode}"]}}) + "\n")
    lines = [json.loads(x) for x in results_file.read_text().splitlines()]
    by_kind = {"gguf": {o: 0 for o in OUTCOMES}, "safetensors": {o: 0 for o in OUTCOMES}}
    per_op: dict[str, dict[str, int]] = {}
    bad: list[dict] = []
    for x in lines:
        if "outcomes" not in x:
            continue
        kind = jobs[x["i"]][1]
        for op, (outcome, detail) in x["outcomes"].items():
            by_kind[kind][outcome] += 1
            per_op.setdefault(f"{kind}:{op}", {o: 0 for o in OUTCOMES})[outcome] += 1
            if outcome in ("crash", "hang", "traceback"):
                bad.append({"mutant": names[x["i"]], "op": op, "outcome": outcome, "detail": detail})
    # accepted at import, yet they cannot run: import should have refused them (with the reason)
    accepted_broken = []
    for x in lines:
        o = x.get("outcomes") or {}
        run_op = o.get("run") or o.get("imagine")
        if o.get("import", [""])[0] == "ran" and run_op and run_op[0] != "ran":
            accepted_broken.append({"mutant": names[x["i"]], "run": run_op[1][:160]})
    for b in bad[:20] + accepted_broken[:40]:
        print(json.dumps(b), file=sys.stderr)
    total = {o: by_kind["gguf"][o] + by_kind["safetensors"][o] for o in OUTCOMES}
    print(json.dumps({"per_op": per_op}))
    print(json.dumps({
        "bench": "fuzz_models", "gguf_mutants": sum(1 for j in jobs if j[1] == "gguf"),
        "safetensors_mutants": sum(1 for j in jobs if j[1] == "safetensors"), "outcomes": total,
        "by_format": by_kind, "seconds": round(time.monotonic() - t0, 1),
        "goal": "0 crash, 0 hang, 0 traceback",
        "baseline": "round 1: 6 GGUF mutants aborted the app, 60 GGUF and 48 safetensors mutants imported",
        "bad": len(bad), "imported_but_cannot_run": len(accepted_broken), "ratio_bad_to_operations": round(len(bad) / max(1, sum(total.values())), 4),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
