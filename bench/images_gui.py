"""GUI-thread stall while the Image Studio loads its first model and generates with previews.

In the real main window (offscreen), a 5 ms QTimer on the GUI thread records the longest gap
between its ticks from the moment a model is chosen in the studio (the engine child process
starts, imports torch/diffusers and loads the pipeline) through a generation with live previews
until its results are in the gallery. Goal: max gap < 50 ms. Also checks that torch/diffusers
never entered the GUI process. Each long gap is attributed: if the GUI process used under 30 % of
a CPU during it, the OS was running other processes (a loaded machine); otherwise it is ours
(``max_stall_process_running_ms``). ``value`` is the plain maximum, whatever the cause.

    .venv/bin/python bench/images_gui.py [--model PATH] [--steps 12] [--size 256] [--repeat 1]

Without --model, a tiny random SD 1.5 pipeline is built first (in a child process, so torch is
not imported here). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_tiny_model(folder: Path) -> Path:
    code = ("import sys; from pathlib import Path; from tests.diffusion.tiny_pipelines import build_sd15; "
            "build_sd15(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, cwd=str(ROOT),
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return folder


def run_once(model: Path, steps: int, size: int, timeout_s: float, settle_s: float = 3.0) -> dict:
    import desktop_app.qt  # noqa: F401 - first: its PySide6 refcount work-around must run early
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer

    from desktop_app.app import create_app
    from desktop_app.core.library import ModelRecord
    from desktop_app.ui.main_window import MainWindow

    app = create_app()
    win = MainWindow()
    lib = win.ctx.library
    if lib.get("bench-model") is None:
        lib.add(ModelRecord(id="bench-model", task="image", format="diffusers", path=str(model), size_bytes=0,
                            name="Bench model", family="sd15"))
    win.show()
    win.start()
    tab = win.studio_tab
    win.tabs.setCurrentWidget(tab)

    def wait_until(cond, what: str) -> None:
        """Run the event loop (no busy polling) until cond() holds."""
        if cond():
            return
        loop = QEventLoop()
        deadline = time.monotonic() + timeout_s
        timed_out = []

        def check() -> None:
            if cond():
                loop.quit()
            elif time.monotonic() > deadline:
                timed_out.append(True)
                loop.quit()

        chk = QTimer()
        chk.setInterval(20)
        chk.timeout.connect(check)
        chk.start()
        loop.exec()
        chk.stop()
        if timed_out:
            raise SystemExit(f"timed out waiting for {what}")

    wait_until(lambda: tab.current_model_id() == "bench-model", "the model list")
    wait_until(lambda: win.ctx.hardware is not None, "hardware detection")
    # Let the other tabs' start-up work (catalog, history, syntax-highlighter warm-up) finish: a user
    # picks a model seconds after the window opens. The stall is measured from that choice on.
    settle_until = time.monotonic() + settle_s
    wait_until(lambda: time.monotonic() > settle_until, "the start-up to settle")

    gaps: list[float] = []
    top: list[dict] = []
    starved: list[float] = []
    own: list[float] = []
    clock = QElapsedTimer()
    state = {"last": None, "phase": "load", "max": {"load": 0.0, "generate": 0.0}}

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        proc, thr = time.process_time(), time.thread_time()
        if state["last"] is not None:
            gap = now - state["last"]
            gaps.append(gap)
            proc_ms = (proc - state["proc"]) * 1000  # CPU used by the whole GUI process in the gap
            gui_ms = (thr - state["thr"]) * 1000     # … by the GUI thread itself
            if proc_ms < 0.3 * gap:
                starved.append(gap)  # the process barely ran: the OS gave its CPU to other processes
            else:
                own.append(gap)      # our process was running (GUI thread busy, or held off by the GIL)
            if gap > 25:
                top.append({"gap_ms": round(gap, 1), "phase": state["phase"], "t_s": round(now / 1000, 2),
                            "process_cpu_ms": round(proc_ms, 1), "gui_thread_cpu_ms": round(gui_ms, 1)})
            ph = state["phase"]
            state["max"][ph] = max(state["max"][ph], gap)
        state["last"], state["proc"], state["thr"] = now, proc, thr

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(5)
    timer.timeout.connect(tick)
    events = {"loaded": None, "previews": 0, "results": 0, "finished": None}
    tab.model_loaded.connect(lambda d: events.__setitem__("loaded", d))
    tab.preview_shown.connect(lambda _s: events.__setitem__("previews", events["previews"] + 1))
    tab.result_added.connect(lambda _p: events.__setitem__("results", events["results"] + 1))
    tab.generation_finished.connect(lambda r: events.__setitem__("finished", r))

    clock.start()
    timer.start()
    t0 = time.perf_counter()
    tab.select_model("bench-model")  # as when the user picks it in the combo box
    wait_until(lambda: events["loaded"] is not None or tab.last_error is not None, "the model load")
    if tab.last_error:
        raise SystemExit(f"load failed: {tab.last_error}")
    t_load = time.perf_counter() - t0
    state["phase"] = "generate"
    tab.params.prompt.setPlainText("a lighthouse on a cliff at dusk, oil painting")
    tab.params.steps.setValue(steps)
    tab.params.width_box.setValue(size)
    tab.params.height_box.setValue(size)
    tab.params.set_seed(1)
    t1 = time.perf_counter()
    if tab.generate() is None:
        raise SystemExit(f"generate refused: {tab.last_error}")
    wait_until(lambda: events["finished"] is not None, "the generation")
    t_gen = time.perf_counter() - t1
    timer.stop()
    heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
    win.close()
    app.processEvents()
    gaps.sort()
    return {
        "max_stall_ms": round(max(gaps), 2),
        "load_max_stall_ms": round(state["max"]["load"], 2),
        "generate_max_stall_ms": round(state["max"]["generate"], 2),
        "p99_gap_ms": round(gaps[int(len(gaps) * 0.99) - 1], 2),
        "ticks": len(gaps),
        "gaps_over_50ms": sum(1 for g in gaps if g > 50),
        "load_seconds": round(t_load, 2),
        "generate_seconds": round(t_gen, 2),
        "previews_shown": events["previews"],
        "results": events["results"],
        "outcome": events["finished"],
        "device": (events["loaded"] or {}).get("device"),
        "heavy_modules_in_gui_process": heavy,
        "gaps_over_25ms": sorted(top, key=lambda d: -d["gap_ms"])[:8],
        # A gap in which the GUI process used < 30 % of a CPU was OS scheduling (other processes
        # on a busy machine), not the app: reported apart so a loaded machine is visible.
        "max_stall_process_running_ms": round(max(own, default=0.0), 2),
        "max_stall_process_starved_ms": round(max(starved, default=0.0), 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="a diffusers folder (default: a tiny random SD 1.5)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to let start-up work finish first")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="atelier-bench-gui-"))
    os.environ["ATELIER_HOME"] = str(home)
    model = args.model
    if model is None:
        print("building a tiny random SD 1.5 pipeline…", file=sys.stderr, flush=True)
        model = build_tiny_model(home / "tiny-sd15")
    runs = []
    for i in range(args.repeat):
        r = run_once(model.resolve(), args.steps, args.size, args.timeout, args.settle)
        print(f"run {i + 1}: max stall {r['max_stall_ms']} ms (process running: "
              f"{r['max_stall_process_running_ms']} ms; load {r['load_max_stall_ms']}, generate "
              f"{r['generate_max_stall_ms']}), load {r['load_seconds']} s, generate {r['generate_seconds']} s, "
              f"{r['previews_shown']} previews", file=sys.stderr, flush=True)
        runs.append(r)
    worst = max(r["max_stall_ms"] for r in runs)
    worst_own = max(r["max_stall_process_running_ms"] for r in runs)
    out = {
        "bench": "images_gui",
        "metric": "gui_max_stall_ms",
        "value": worst,
        "median_max_stall_ms": round(statistics.median(r["max_stall_ms"] for r in runs), 2),
        "max_stall_process_running_ms": worst_own,
        "goal_ms": 50,
        "pass": worst < 50 and all(not r["heavy_modules_in_gui_process"] for r in runs),
        "steps": args.steps,
        "size": args.size,
        "model": "tiny random SD 1.5" if args.model is None else str(args.model),
        "runs": runs,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
