"""AppContext: what every tab shares (settings, library, hardware, threads, status)."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from desktop_app.core.library import Library
from desktop_app.core.settings import Settings
from desktop_app.qt.threads import BackgroundRunner, ModelThread

log = logging.getLogger(__name__)


class AppContext(QObject):
    """Shared state of the running app. Lives on the GUI thread; never blocks it."""

    # hardware_ready: the Hardware (desktop_app.core.hardware) is known AND the start-up registrations
    # (starter model, read-only folders) are in the library: a view relists on it (fit badges too);
    # library_changed is not emitted as well, so that no view lists and fits everything twice.
    hardware_ready = Signal(object)
    library_changed = Signal()
    remotes_changed = Signal()  # a team server was added, removed or listed again (core/remotes)
    loaded_models_changed = Signal(object)  # dict name -> description
    status_message = Signal(str)
    memory_notice = Signal(str)  # the memory broker moved a model: what and why, in words
    image_engine_taken = Signal(object)  # the local server loaded a model on the Studio's engine: its LOADED data
    open_in_studio = Signal(str)  # an image path (a chat's inline image): show it in the Studio

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = Settings()
        self.library = Library()
        self.hardware: Any = None
        # two lanes: short disk/CPU jobs, and network calls (a 30 s hub timeout never delays a fit badge)
        self.background = BackgroundRunner("background", self, on_unhandled=self.status_message.emit)
        self.network = BackgroundRunner("network", self, on_unhandled=self.status_message.emit)
        self._model_threads: dict[str, ModelThread] = {}
        self._loaded: dict[str, str] = {}
        self._pids: dict[str, int | None] = {}
        self._shut_down = False
        self._broker = None  # core/memory_broker.MemoryBroker, made on first use (imported at start())
        self._movers: dict = {}  # slot -> fn(Decision) -> JobHandle | None (runs on the GUI thread)
        self._restorers: dict = {}
        self._busy: dict = {}
        self._idle_timer = None
        self.restore_after_ms = 30_000  # quiet time before moved models get their own place back
        self.imagine_handler = None  # the Studio's (prompt, on_done, on_failed): /imagine in the chat

    @property
    def broker(self):
        """The memory broker: one memory budget for every slot (core/memory_broker.py)."""
        if self._broker is None:
            from desktop_app.core.memory_broker import MemoryBroker

            self._broker = MemoryBroker(self.hardware)
            for slot in self.settings.get("memory_pinned") or []:
                self._broker.set_pinned(str(slot), True)
        return self._broker

    # start-up work, all off the GUI thread ---------------------------------------------
    def start(self) -> None:
        """Detect hardware, register the starter model and the models of the read-only folders an
        admin provisioned (Settings' extra_model_dirs), all in the background."""
        folders = list(self.settings.get("extra_model_dirs") or [])

        def work(_token):
            from desktop_app.core.hardware import detect_hardware
            from desktop_app.core.starter import ensure_starter_registered

            hw = detect_hardware()
            import desktop_app.core.memory_broker  # noqa: F401 - imported here, not on the GUI thread
            try:
                ensure_starter_registered(self.library)
            except Exception:  # noqa: BLE001 - a broken library file must not stop the app
                log.exception("could not register the starter model")
            try:  # the policy's retention (the folders it names are in extra_model_dirs)
                from desktop_app.core.policy import apply_at_startup

                for line in apply_at_startup(self.library, register_dirs=False):
                    log.error("%s", line)  # the policy's own error is in the window's banner
            except Exception:  # noqa: BLE001
                log.exception("the policy's start-up work failed")
            if folders:
                try:
                    from desktop_app.hub.discovery import register_folders

                    report = register_folders(folders, self.library)
                    log.info("read-only model folders: %d registered, %d skipped", len(report.added),
                             len(report.skipped))
                except Exception:  # noqa: BLE001
                    log.exception("could not register the read-only model folders")
            return hw

        self.background.run(work, on_success=self._on_hardware, on_failure=self._on_start_failed)

    @Slot(object)
    def _on_hardware(self, hw) -> None:
        self.hardware = hw
        self.broker.set_hardware(hw)
        self.hardware_ready.emit(hw)

    @Slot(object)
    def _on_start_failed(self, exc) -> None:
        log.error("start-up detection failed: %s", exc)
        self.status_message.emit(f"Hardware detection failed: {exc}")

    # model threads -------------------------------------------------------------------
    def model_thread(self, name: str) -> ModelThread:
        """The long-lived thread for one model slot (e.g. 'chat', 'image'); created on demand."""
        t = self._model_threads.get(name)
        if t is None:
            t = ModelThread(name, self, on_unhandled=self.status_message.emit)
            self._model_threads[name] = t
        return t

    # the memory broker's moves ------------------------------------------------------------
    def register_mover(self, slot: str, fn, restore=None, busy=None) -> None:
        """``fn(decision)`` moves or unloads what ``slot`` holds (queued in its model thread) and
        returns the JobHandle of that work, or None when there is nothing to wait for;
        ``restore()`` plans the slot's model again (after a move, when the others are idle);
        ``busy()`` says whether the slot is generating now."""
        self._movers[slot] = fn
        if restore is not None:
            self._restorers[slot] = restore
        if busy is not None:
            self._busy[slot] = busy

    def poke_idle(self) -> None:
        """A model finished its work: once every slot has been idle for ``restore_after_ms``, the
        models the broker moved to make room get their own plan again (back to the GPU)."""
        if self._shut_down:
            return
        if self._idle_timer is None:
            from PySide6.QtCore import QTimer

            self._idle_timer = QTimer(self)
            self._idle_timer.setSingleShot(True)
            self._idle_timer.timeout.connect(self._restore_idle)
        self._idle_timer.start(int(self.restore_after_ms))

    @Slot()
    def _restore_idle(self) -> None:
        if self._shut_down:
            return
        if any(self._safe(b) for b in self._busy.values()):
            self.poke_idle()  # someone is working: wait for the next quiet period
            return
        names = {s: d.name for s, d in self.broker.slots().items()}
        for slot in self.broker.restorable():
            fn = self._restorers.get(slot)
            if fn is not None and self._safe(fn) is not None:
                self.memory_notice.emit(f"{names.get(slot, slot)} gets its own place again: the other models are idle.")

    @staticmethod
    def _safe(fn):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - a restore must never break the app
            log.exception("memory broker restore failed")
            return None

    @Slot(object)
    def apply_moves(self, moves) -> None:
        """Carry out a memory broker plan's moves (a model thread waits on ``moves.gate``), and
        tell the user what moved and why."""
        pending = []
        for slot, decision in moves.moved.items():
            mover = self._movers.get(slot)
            if mover is None:
                continue
            try:
                handle = mover(decision)
            except Exception:  # noqa: BLE001 - a mover bug must not leave the other load waiting
                log.exception("could not move the %s model", slot)
                handle = None
            if handle is not None:
                pending.append(handle)
        for text in moves.plan.messages:
            self.memory_notice.emit(text)
            self.status_message.emit(text)
        if not pending:
            moves.gate.set()
            return
        left = {id(h) for h in pending}

        def one_done(h):
            left.discard(id(h))
            if not left:
                moves.gate.set()

        for h in pending:
            for sig in (h.succeeded, h.failed):
                sig.connect(lambda _x=None, h=h: one_done(h))
            h.cancelled.connect(lambda h=h: one_done(h))

    def set_pinned(self, slot: str, pinned: bool) -> None:
        """Pin a slot's model (Resources › Pin): the broker never moves it; remembered."""
        self.broker.set_pinned(slot, pinned)
        try:
            self.settings.set("memory_pinned", sorted(self.broker.pinned))
        except Exception:  # noqa: BLE001 - a read-only settings file: pinned for this session
            log.warning("could not remember the pinned models", exc_info=True)

    def set_loaded(self, slot: str, description: str | None, pid: int | None = None) -> None:
        """What a slot (chat, image) has loaded, and the engine process holding it (for its memory)."""
        if description:
            self._loaded[slot] = description
            self._pids[slot] = pid
        else:
            self._loaded.pop(slot, None)
            self._pids.pop(slot, None)
        self.loaded_models_changed.emit(dict(self._loaded))

    def loaded_slots(self) -> dict[str, tuple[str, int | None]]:
        """{slot: (description, engine pid)} of what is loaded now."""
        return {slot: (desc, self._pids.get(slot)) for slot, desc in self._loaded.items()}

    def shutdown(self) -> None:
        """Cancel all work, quit and wait for every thread. Safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        for t in self._model_threads.values():
            t.cancel()
        for t in self._model_threads.values():
            t.shutdown()
        self.background.shutdown()
        self.network.shutdown()
