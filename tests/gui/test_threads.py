"""The background framework: one long-lived QThread per model, queued signals, cancel, clean shutdown."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThread

from desktop_app.core.errors import Cancelled
from desktop_app.qt.threads import BackgroundRunner, ModelThread, running_qthreads

pytestmark = pytest.mark.gui


@pytest.fixture
def mt(qtbot):
    t = ModelThread("test")
    yield t
    assert t.shutdown()


def test_generator_items_arrive_in_order_on_gui_thread(mt, qtbot):
    got, threads = [], []
    gui = QThread.currentThread()

    def job(state, token):
        state["model"] = object()  # lives in the worker thread
        threads.append(threading.current_thread().name)
        for i in range(5):
            yield i
        return "done"

    def on_item(ev):
        assert QThread.currentThread() is gui
        got.append(ev.value)

    mt.yielded.connect(on_item)
    with qtbot.waitSignal(mt.finished, timeout=5000) as blocker:
        mt.submit(job)
    assert got == [0, 1, 2, 3, 4]
    assert blocker.args[0].value == "done"
    assert threads[0] != threading.main_thread().name


def test_state_persists_between_jobs(mt, qtbot):
    with qtbot.waitSignal(mt.finished, timeout=5000):
        mt.submit(lambda state, tok: state.setdefault("n", 41))
    with qtbot.waitSignal(mt.finished, timeout=5000) as blocker:
        mt.submit(lambda state, tok: state["n"] + 1)
    assert blocker.args[0].value == 42


def test_cancel_stops_a_running_generator_quickly(mt, qtbot):
    started = threading.Event()

    def job(state, token):
        started.set()
        while True:
            time.sleep(0.01)
            yield "tick"

    mt.submit(job)
    assert started.wait(5)
    t0 = time.perf_counter()
    with qtbot.waitSignal(mt.cancelled, timeout=5000):
        mt.cancel()
    assert time.perf_counter() - t0 < 1.0
    # the thread is still usable afterwards
    with qtbot.waitSignal(mt.finished, timeout=5000) as blocker:
        mt.submit(lambda s, t: "again")
    assert blocker.args[0].value == "again"


def test_failure_is_reported_not_raised(mt, qtbot):
    def job(state, token):
        raise ValueError("bad file")

    with qtbot.waitSignal(mt.failed, timeout=5000) as blocker:
        mt.submit(job)
    assert isinstance(blocker.args[0].value, ValueError)


def test_shutdown_mid_job_joins_the_thread_and_runs_cleanup(qtbot):
    t = ModelThread("shutdown-test")
    closed = threading.Event()
    started = threading.Event()

    def job(state, token):
        state["close"] = closed.set
        started.set()
        while not token.cancelled:
            time.sleep(0.005)
            yield None

    t.submit(job)
    assert started.wait(5)
    assert t.shutdown(5000)
    assert closed.is_set()
    assert "atelier-shutdown-test" not in running_qthreads()
    late = t.submit(lambda s, tok: None)  # born cancelled: it never runs (see the test below)
    assert late.done and late.token.cancelled


def test_background_runner_success_progress_failure_cancel(qtbot):
    r = BackgroundRunner("bg-test")
    progress = []

    def gen(token):
        for i in range(3):
            yield i
        return "ok"

    op = r.run(gen, on_progress=progress.append)
    with qtbot.waitSignal(op.succeeded, timeout=5000) as b:
        pass
    assert b.args == ["ok"] and progress == [0, 1, 2]

    op2 = r.run(lambda tok: 1 / 0)
    with qtbot.waitSignal(op2.errored, timeout=5000) as b2:
        pass
    assert isinstance(b2.args[0], ZeroDivisionError)

    ev = threading.Event()

    def slow(token):
        ev.set()
        while True:
            if token.wait(0.01):
                raise Cancelled()

    op3 = r.run(slow)
    assert ev.wait(5)
    with qtbot.waitSignal(op3.errored, timeout=5000) as b3:
        op3.cancel()
    assert isinstance(b3.args[0], Cancelled)
    assert r.shutdown()


def test_submit_returns_a_handle_with_its_own_signals(mt, qtbot):
    """Issue 10: callers connect to the job's handle; two jobs never see each other's events."""
    got_a, got_b = [], []

    def gen(n):
        def job(state, token):
            for i in range(n):
                yield i
            return n * 10
        return job

    a = mt.submit(gen(2))
    b = mt.submit(gen(3))
    a.progress.connect(got_a.append)
    b.progress.connect(got_b.append)
    with qtbot.waitSignal(b.succeeded, timeout=5000) as blocker:
        pass
    assert got_a == [0, 1] and got_b == [0, 1, 2] and blocker.args == [30] and a.done and b.done


def test_handle_cancel_and_failure(mt, qtbot):
    import threading as th

    started = th.Event()

    def spin(state, token):
        started.set()
        while True:
            time.sleep(0.01)
            yield None

    h = mt.submit(spin)
    assert started.wait(5)
    with qtbot.waitSignal(h.cancelled, timeout=5000):
        h.cancel()
    f = mt.submit(lambda s, t: 1 / 0)
    with qtbot.waitSignal(f.failed, timeout=5000) as blocker:
        pass
    assert isinstance(blocker.args[0], ZeroDivisionError)


def test_an_unhandled_failure_reaches_the_user_route(qtbot):
    said = []
    t = ModelThread("unhandled", on_unhandled=said.append)
    try:
        h = t.submit(lambda s, tok: (_ for _ in ()).throw(ValueError("disk on fire")), "Scanning the folder")
        qtbot.waitUntil(lambda: h.done, timeout=5000)
        assert said == ["Scanning the folder failed: disk on fire"]
        handled = t.submit(lambda s, tok: 1 / 0)
        seen = []
        handled.failed.connect(seen.append)
        qtbot.waitUntil(lambda: handled.done, timeout=5000)
        assert len(said) == 1 and seen  # a caller that handles it: not reported twice
    finally:
        assert t.shutdown()


def test_network_lane_never_delays_the_disk_lane(qtbot):
    """A 30 s hub timeout must not wait in front of a fit badge: separate lanes."""
    import threading as th

    from desktop_app.qt.context import AppContext

    ctx = AppContext()
    release = th.Event()
    try:
        slow = ctx.network.run(lambda token: release.wait(10))
        fast = ctx.background.run(lambda token: "badge")
        t0 = time.monotonic()
        with qtbot.waitSignal(fast.succeeded, timeout=5000) as blocker:
            pass
        assert blocker.args == ["badge"] and time.monotonic() - t0 < 2 and not slow.done
    finally:
        release.set()
        ctx.shutdown()


def test_work_asked_for_after_shutdown_never_runs_and_never_raises(qtbot):
    """A queued signal (hardware ready, library changed) can reach a view while the app closes,
    after its thread has stopped: the request returns a dead handle instead of raising on the GUI
    thread (CI once failed on exactly that)."""
    runner = BackgroundRunner("closing")
    assert runner.shutdown()
    ran, fired = [], []
    handle = runner.run(lambda token: ran.append(1), on_success=fired.append, on_failure=fired.append)
    assert handle.done and handle.token.cancelled
    qtbot.wait(100)
    assert ran == [] and fired == []
