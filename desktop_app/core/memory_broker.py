"""The memory broker (Qt-free): one memory budget for every model Atelier holds at once.

It knows the machine (a Hardware: RAM and each GPU's free memory before Atelier loaded anything)
and every model that is loaded or loading (chat model, image pipeline, upscaler, background
remover): a :class:`Demand` each, with the real footprint the engines report where one is known.
Before a load, :func:`plan_models` chooses, from the fit plans (core/fitting), how every model
runs so that all of them fit, at the least cost to the user:

* a chat model: all layers on the GPU, part of them (N of M), the CPU, or unloaded;
* an image pipeline: on the GPU, model CPU offload, sequential offload, the CPU, or unloaded;
* small models (upscalers, background removal): the GPU or the CPU.

Cost: how much slower each model gets (a partial load costs more the fewer layers stay on the
GPU; unloading costs most); the model being loaded now (``active``) counts double, since the user
is waiting for it. A pinned model keeps its place; the active model is never unloaded. When no
combination fits, the plan is refused with the reason. Every move is said in words
(:attr:`BrokerPlan.messages`), e.g. "Llama 3.1 8B moved to the CPU to make room for SDXL; it
returns to the GPU when the Studio is idle."

:class:`MemoryBroker` keeps what is loaded (thread-safe) for the GUI; ``atelier models plan``
calls :func:`plan_models` for two ids on this machine or an ``ATELIER_HARDWARE`` profile.
"""

from __future__ import annotations

import copy
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from desktop_app.core.errors import AtelierError
from desktop_app.core.fitting_common import RAM_MARGIN, _vram_reserve_bytes
from desktop_app.core.hardware import Hardware
from desktop_app.core.memory_demands import (  # noqa: F401 - the broker's names too
    Demand, demand_for_entry, demand_for_record, resolve_demand,
)

PLACEMENT = {"gpu": "gpu", "partial": "partial", "cpu": "cpu", "gpu_offload": "offload",
             "gpu_sequential_offload": "offload", "unload": "unload"}
MODE_WORDS = {
    "gpu": "on the GPU",
    "partial": "partly on the GPU",
    "cpu": "on the CPU",
    "gpu_offload": "on the GPU with model CPU offload (slower)",
    "gpu_sequential_offload": "on the GPU with sequential offload (much slower)",
    "unload": "unloaded",
}
WHERE_IDLE = {"chat": "the chat is idle", "image": "the Studio is idle"}
UNLOAD_COST = 20.0
IDLE_WEIGHT = 0.25  # a restore plan: the other models are idle, their speed matters less


@dataclass
class Option:
    """One way to run one model: its mode and what it needs where."""

    mode: str  # llm: gpu | partial | cpu; diffusion: gpu | gpu_offload | gpu_sequential_offload | cpu; unload
    gpu_bytes: dict = field(default_factory=dict)  # GPU index -> bytes
    ram_bytes: int = 0
    n_gpu_layers: int = 0
    n_layers: int = 0
    n_ctx: int = 0
    plan: Any = None  # the LlmPlan / DiffusionPlan behind it
    gpu_index: int | None = None

    @property
    def total(self) -> int:
        return self.ram_bytes + sum(self.gpu_bytes.values())


@dataclass
class Decision:
    id: str
    task: str
    name: str
    placement: str  # gpu | partial | cpu | offload | unload
    mode: str  # the engine's mode (see Option.mode)
    device: str  # the GPU's name, "cpu", or "none" (unloaded)
    planned_bytes: int
    reason: str
    n_gpu_layers: int = 0
    n_layers: int = 0
    n_ctx: int = 0
    gpu_bytes: int = 0
    ram_bytes: int = 0
    pinned: bool = False
    moved: bool = False  # differs from where it runs now (or would run alone)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "task", "name", "placement", "mode", "device", "planned_bytes",
                                               "reason", "n_gpu_layers", "n_layers", "n_ctx", "gpu_bytes",
                                               "ram_bytes", "pinned", "moved")}


@dataclass
class BrokerPlan:
    models: list[Decision]
    devices: list[dict]  # {name, total_bytes, budget_bytes, planned_bytes}; system RAM is "cpu"
    messages: list[str] = field(default_factory=list)
    refused: str | None = None
    active: str | None = None

    def decision(self, model_id: str) -> Decision | None:
        return next((d for d in self.models if d.id == model_id), None)

    def to_dict(self) -> dict:
        return {"models": [d.to_dict() for d in self.models], "devices": [dict(d) for d in self.devices],
                "messages": list(self.messages), "refused": self.refused, "active": self.active}


# ------------------------------------------------------------------------------------------
# options and their costs
# ------------------------------------------------------------------------------------------
def _llm_gpus(hw: Hardware) -> list:
    from desktop_app.core.fitting import _usable_gpus

    return _usable_gpus(hw)


def _torch_gpus(hw: Hardware) -> list:
    device = hw.torch_device
    if device == "cpu":
        return []
    return [g for g in hw.gpus if (g.vendor == "apple") == (device == "mps")]


def _llm_option(d: Demand, hw: Hardware, cpu_only: bool, reserve_mib: int) -> Option | None:
    from desktop_app.core.fitting import plan_shape

    h = hw
    if cpu_only:
        h = copy.copy(hw)
        h.gpus = []
    plan = plan_shape(d.llm_shape, h, d.n_ctx, reserve_mib)
    if plan.plan == "too_large":
        return None
    gpus = _llm_gpus(h)[: max(1, plan.gpus_used)] if plan.plan in ("gpu", "partial") else []
    split = plan.tensor_split or ([1.0] if gpus else [])
    gpu_bytes = {g.index: int(plan.gpu_bytes * s) for g, s in zip(gpus, split)}
    return Option(plan.plan, gpu_bytes, int(plan.ram_bytes), plan.n_gpu_layers, plan.n_layers, plan.n_ctx, plan)


def _discrete_options(d: Demand, hw: Hardware, reserve_mib: int) -> list[Option]:
    """Diffusion and small models: each placement that fits the whole machine, best first."""
    if d.kind == "diffusion":
        from desktop_app.core.fitting_diffusion import diffusion_options

        out = []
        gpus = _torch_gpus(hw)
        g = max(gpus, key=lambda x: x.vram_free_bytes) if gpus else None
        for p in diffusion_options(dict(d.components), hw, reserve_mib):
            if p.plan == "too_large":
                continue
            if p.plan.startswith("gpu") and g is not None:
                out.append(Option(p.plan, {g.index: int(p.estimated_bytes)}, int(p.ram_bytes), plan=p, gpu_index=g.index))
            else:
                out.append(Option("cpu", {}, int(p.estimated_bytes), plan=p))
        return out
    from desktop_app.core.fitting_diffusion import plan_small_model

    p = plan_small_model(int(d.size_bytes), hw)
    out = []
    gpus = _torch_gpus(hw)
    if gpus:
        g = max(gpus, key=lambda x: x.vram_free_bytes)
        out.append(Option("gpu", {g.index: int(p.estimated_bytes)}, 0, plan=p, gpu_index=g.index))
    out.append(Option("cpu", {}, int(p.estimated_bytes), plan=p))
    return out


def _cost(d: Demand, opt: Option, hw: Hardware) -> float:
    if opt.mode == "unload":
        return UNLOAD_COST
    if d.kind == "llm":
        if opt.mode == "gpu":
            return 0.0
        if opt.mode == "partial":
            return 1.0 + 4.0 * (1.0 - opt.n_gpu_layers / max(1, opt.n_layers))
        return 5.0 if _llm_gpus(hw) else 0.0
    if d.kind == "diffusion":
        base = {"gpu": 0.0, "gpu_offload": 2.0, "gpu_sequential_offload": 6.0}.get(opt.mode)
        if base is not None:
            return base
        return 8.0 if _torch_gpus(hw) else 0.0
    return 0.0 if opt.mode == "gpu" or not _torch_gpus(hw) else 0.5


def _with_measured(d: Demand, opt: Option) -> Option:
    """A loaded model's option for the mode it runs in now holds at least what it was measured at."""
    if d.current != opt.mode or not (d.measured_ram or d.measured_vram):
        return opt
    o = copy.copy(opt)
    o.ram_bytes = max(o.ram_bytes, int(d.measured_ram))
    if o.gpu_bytes and d.measured_vram:
        first = next(iter(o.gpu_bytes))
        o.gpu_bytes = {**o.gpu_bytes, first: max(o.gpu_bytes[first], int(d.measured_vram))}
    return o


class _Budget:
    def __init__(self, hw: Hardware, reserve: int) -> None:
        self.hw = hw
        self.gpu_free = {g.index: max(0, g.vram_free_bytes - reserve) for g in hw.gpus}
        self.unified = {g.index for g in hw.gpus if g.unified_memory}
        self.ram_free = max(0, hw.ram_available_bytes - RAM_MARGIN)

    def take(self, opts: list[Option]) -> bool:
        """Subtract ``opts``; False when they do not all fit."""
        for o in opts:
            for i, b in o.gpu_bytes.items():
                self.gpu_free[i] = self.gpu_free.get(i, 0) - b
                if i in self.unified:
                    self.ram_free -= b
            self.ram_free -= o.ram_bytes
        return self.ram_free >= 0 and all(v >= 0 for v in self.gpu_free.values())

    def remaining_hardware(self, used: list[Option]) -> Hardware:
        """``hw`` as the next model sees it once ``used`` is placed (reserves and margins are
        applied again by the fitter, so what is subtracted here is exactly what ``used`` takes)."""
        h = copy.copy(self.hw)
        h.gpus = [copy.copy(g) for g in self.hw.gpus]
        taken_ram = 0
        for o in used:
            taken_ram += o.ram_bytes
            for g in h.gpus:
                b = o.gpu_bytes.get(g.index, 0)
                g.vram_free_bytes = max(0, g.vram_free_bytes - b)
                if g.unified_memory:
                    taken_ram += b
        h.ram_available_bytes = max(0, self.hw.ram_available_bytes - taken_ram)
        return h


# ------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------
def plan_models(demands: list[Demand], hw: Hardware, active: str | None = None,
                vram_reserve_mib: int | None = None, others_weight: float = 1.0) -> BrokerPlan:
    """How every model in ``demands`` runs together on ``hw`` (see the module docstring).
    ``active``: the id of the model being loaded now (never unloaded, its speed counts double);
    ``others_weight``: how much the other models' speed counts (less when they are idle: a model
    moved to make room gets its place back, :meth:`MemoryBroker.before_load` with ``restore``)."""
    if not demands:
        raise AtelierError("Nothing to plan: give at least one model.")
    reserve_mib = int(_vram_reserve_bytes(vram_reserve_mib) // 2**20)
    reserve = reserve_mib * 2**20
    by_id = {d.id: d for d in demands}
    if active is not None and active not in by_id:
        raise AtelierError(f"The active model {active!r} is not among the planned ones.")

    # what each model gets alone: the baseline its moves are measured against
    solo: dict[str, Option | None] = {}
    for d in demands:
        if d.kind == "llm":
            solo[d.id] = _llm_option(d, hw, False, reserve_mib)
        else:
            opts = _discrete_options(d, hw, reserve_mib)
            solo[d.id] = opts[0] if opts else None
    act = by_id.get(active) if active else None
    if act is not None and solo[act.id] is None:
        return _refused(demands, hw, reserve, active, f"{act.name} does not fit this machine: {_too_large_note(act, hw, reserve_mib)}", solo)

    discrete = [d for d in demands if d.kind != "llm"]
    llms = [d for d in demands if d.kind == "llm"]
    choices = []
    for d in discrete:
        opts = _discrete_options(d, hw, reserve_mib)
        opts = [_with_measured(d, o) for o in opts]
        if d.pinned and d.current:
            opts = [o for o in opts if o.mode == d.current] or opts[:1]
        elif d.pinned:
            opts = opts[:1]
        if d.id != active and not d.pinned:
            opts.append(Option("unload"))
        choices.append(opts or [Option("unload")])

    best = None
    for combo in itertools.product(*choices):
        budget = _Budget(hw, reserve)
        if not budget.take(list(combo)):
            continue
        picked = dict(zip((d.id for d in discrete), combo))
        used = list(combo)
        ok = True
        for d in llms:  # each chat model gets the best placement in what is left
            rest = budget.remaining_hardware(used)
            opts = [o for o in (_llm_option(d, rest, False, reserve_mib), _llm_option(d, rest, True, reserve_mib)) if o]
            opts = [_with_measured(d, o) for o in opts]
            if d.pinned:
                want = d.current or (solo[d.id].mode if solo[d.id] else None)
                opts = [o for o in opts if o.mode == want and (want != "partial" or not d.current
                                                                or o.n_gpu_layers >= d.current_layers)]
            if d.id != active and not d.pinned:
                opts.append(Option("unload"))
            opts = [o for o in opts if _Budget(hw, reserve).take([*used, o])]  # measured footprints included
            if not opts:
                ok = False
                break
            o = min(opts, key=lambda o: _cost(d, o, hw))
            picked[d.id] = o
            used.append(o)
        if not ok:
            continue
        cost = sum(_cost(d, picked[d.id], hw) * (2.0 if d.id == active else others_weight) for d in demands)
        moves = sum(1 for d in demands if d.current and picked[d.id].mode != d.current)
        key = (round(cost, 6), moves)
        if best is None or key < best[0]:
            best = (key, picked)
    if best is None:
        pinned = [d.name for d in demands if d.pinned and d.id != active]
        who = act.name if act else "These models"
        if pinned:
            reason = (f"{who} cannot load: {', '.join(pinned)} {'is' if len(pinned) == 1 else 'are'} pinned and "
                      "leave too little memory. Unpin or unload it first.")
        else:
            reason = f"{who} cannot load beside the others: together they do not fit this machine."
        return _refused(demands, hw, reserve, active, reason, solo)
    return _decide(demands, best[1], solo, hw, reserve, act)


def _too_large_note(d: Demand, hw: Hardware, reserve_mib: int) -> str:
    from desktop_app.core.fitting import plan_shape
    from desktop_app.core.fitting_diffusion import diffusion_options

    try:
        if d.kind == "llm":
            return plan_shape(d.llm_shape, hw, d.n_ctx, reserve_mib).note or "too large."
        if d.kind == "diffusion":
            return diffusion_options(dict(d.components), hw, reserve_mib)[0].note or "too large."
    except AtelierError as exc:
        return str(exc)
    return "too large."


def _device_name(hw: Hardware, index: int | None) -> str:
    g = next((g for g in hw.gpus if g.index == index), None)
    if g is None:
        return "cpu"
    same = [x for x in hw.gpus if x.name == g.name]
    return f"{g.name} #{g.index}" if len(same) > 1 else g.name


def _devices(hw: Hardware, reserve: int, picked: dict[str, Option]) -> list[dict]:
    out = []
    for g in hw.gpus:
        planned = sum(o.gpu_bytes.get(g.index, 0) for o in picked.values())
        out.append({"name": _device_name(hw, g.index), "total_bytes": int(g.vram_total_bytes),
                    "budget_bytes": int(max(0, g.vram_free_bytes - reserve)), "planned_bytes": int(planned),
                    "unified_memory": bool(g.unified_memory)})
    ram = sum(o.ram_bytes for o in picked.values())
    out.append({"name": "cpu", "total_bytes": int(hw.ram_total_bytes),
                "budget_bytes": int(max(0, hw.ram_available_bytes - RAM_MARGIN)), "planned_bytes": int(ram),
                "unified_memory": False})
    return out


def _refused(demands, hw, reserve, active, reason, solo) -> BrokerPlan:
    """The active model is not loaded; the others stay where they are (or would be alone)."""
    models, picked = [], {}
    for d in demands:
        o = solo.get(d.id) if d.id != active else None
        if o is None:
            why = reason if d.id == active else f"{d.name} does not fit this machine."
            models.append(Decision(d.id, d.task, d.name, "unload", "unload", "none", 0, why, pinned=d.pinned))
            continue
        picked[d.id] = o
        models.append(_decision(d, o, hw, "Stays as it is: the other model is not loaded.", False))
    return BrokerPlan(models, _devices(hw, reserve, picked), [reason], refused=reason, active=active)


def _decision(d: Demand, o: Option, hw: Hardware, reason: str, moved: bool) -> Decision:
    gpu_index = o.gpu_index if o.gpu_index is not None else (next(iter(o.gpu_bytes)) if o.gpu_bytes else None)
    device = "none" if o.mode == "unload" else "cpu" if o.mode == "cpu" else _device_name(hw, gpu_index)
    return Decision(
        d.id, d.task, d.name, PLACEMENT[o.mode], o.mode, device, int(o.total), reason,
        n_gpu_layers=int(o.n_gpu_layers), n_layers=int(o.n_layers or (d.llm_shape.n_layers if d.llm_shape else 0)),
        n_ctx=int(o.n_ctx), gpu_bytes=int(sum(o.gpu_bytes.values())), ram_bytes=int(o.ram_bytes),
        pinned=d.pinned, moved=bool(moved))


def _decide(demands, picked, solo, hw, reserve, act) -> BrokerPlan:
    models, messages = [], []
    for d in demands:
        o = picked[d.id]
        before = d.current or (solo[d.id].mode if solo[d.id] else None)
        before_layers = d.current_layers if d.current else (solo[d.id].n_gpu_layers if solo[d.id] else 0)
        moved = before is not None and (o.mode != before or (o.mode == "partial" and o.n_gpu_layers != before_layers))
        reason = _reason(d, o, moved, before, act, solo)
        if moved:
            messages.append(reason)
        models.append(_decision(d, o, hw, reason, moved))
    return BrokerPlan(models, _devices(hw, reserve, picked), messages, None, act.id if act else None)


def _where(o: Option) -> str:
    if o.mode == "partial":
        return f"with {o.n_gpu_layers} of {o.n_layers} layers on the GPU"
    return MODE_WORDS[o.mode]


def _reason(d: Demand, o: Option, moved: bool, before: str | None, act: Demand | None, solo) -> str:
    others = act.name if act is not None and act.id != d.id else "the other model"
    if solo.get(d.id) is None:
        return f"{d.name} does not fit this machine."
    if not moved:
        if o.mode == "unload":
            return "Not loaded."
        return f"Runs {_where(o)}" + (" (pinned)." if d.pinned else ", as it would alone.")
    if act is not None and d.id == act.id:
        return f"{d.name} runs {_where(o)} instead of {MODE_WORDS.get(before or '', before)}: the models already " \
               "loaded need the rest of the memory."
    back = WHERE_IDLE.get(act.task if act else "", "the other model is idle")
    if o.mode == "unload":
        return f"{d.name} was unloaded to make room for {others}; it loads again when you use it."
    if o.mode == "cpu":
        return f"{d.name} moved to the CPU to make room for {others}; it returns to the GPU when {back}."
    if o.mode == "partial":
        return (f"{d.name} keeps {o.n_gpu_layers} of {o.n_layers} layers on the GPU to make room for {others}; "
                f"it returns to the GPU when {back}.")
    return f"{d.name} now runs {_where(o)} to make room for {others}; it returns when {back}."


# ------------------------------------------------------------------------------------------
# what is loaded (the GUI's broker)
# ------------------------------------------------------------------------------------------
@dataclass
class Moves:
    """What a model thread asks the GUI to do before its load: move ``moved`` ({slot: Decision})
    as ``plan`` says; the GUI sets ``gate`` once they are done (the load waits for it)."""

    plan: BrokerPlan
    moved: dict
    gate: threading.Event = field(default_factory=threading.Event)
    retry: bool = False  # an out-of-memory step: the job that failed runs again afterwards


def wait_for(gate: threading.Event, token: Any = None, timeout: float = 300.0) -> bool:
    """Wait for the other slots' moves (cancellable); False when they took longer than ``timeout``
    (the load then goes ahead: at worst it runs out of memory and the broker takes its next step)."""
    import time

    end = time.monotonic() + timeout
    while not gate.wait(0.05):
        if token is not None and getattr(token, "cancelled", False):
            from desktop_app.core.errors import Cancelled

            raise Cancelled()
        if time.monotonic() > end:
            return False
    return True


class MemoryBroker:
    """What each slot (chat, image, upscale…) holds, and the plan before the next load.
    Thread-safe: the model threads report loads and footprints, the GUI reads the state."""

    def __init__(self, hardware: Hardware | None = None, vram_reserve_mib: int | None = None) -> None:
        self._lock = threading.Lock()
        self.hardware = hardware
        self.vram_reserve_mib = vram_reserve_mib
        self._slots: dict[str, Demand] = {}
        self.pinned: set[str] = set()  # slots the user pinned
        self.demoted: dict[str, str] = {}  # slots moved to make room -> the placement they had to take
        self.last_plan: BrokerPlan | None = None

    def set_hardware(self, hw: Hardware) -> None:
        with self._lock:
            self.hardware = hw

    def loaded(self, slot: str, demand: Demand, mode: str, n_gpu_layers: int = 0, moved: bool = False) -> None:
        """``slot`` holds ``demand`` in ``mode``; ``moved``: placed there by another model's plan
        (it goes back when that model is idle: :meth:`restorable`)."""
        with self._lock:
            demand.current, demand.current_layers = mode, int(n_gpu_layers)
            demand.pinned = slot in self.pinned
            self._slots[slot] = demand
            if not moved:
                self.demoted.pop(slot, None)

    def unloaded(self, slot: str, moving: bool = False) -> None:
        """``slot`` holds nothing now; ``moving``: only until the broker's move loads it again."""
        with self._lock:
            self._slots.pop(slot, None)
            if not moving:
                self.demoted.pop(slot, None)

    def restorable(self) -> list[str]:
        """Slots that were moved off their best placement (not unloaded: those load again when
        used) and are still loaded: a new plan of their own may bring them back."""
        with self._lock:
            return [s for s, how in self.demoted.items() if how != "unload" and s in self._slots]

    def measured(self, slot: str, ram_bytes: int = 0, vram_bytes: int = 0) -> None:
        with self._lock:
            d = self._slots.get(slot)
            if d is not None:
                d.measured_ram = int(ram_bytes or d.measured_ram)
                d.measured_vram = int(vram_bytes or d.measured_vram)

    def set_pinned(self, slot: str, pinned: bool) -> None:
        with self._lock:
            (self.pinned.add if pinned else self.pinned.discard)(slot)
            if slot in self._slots:
                self._slots[slot].pinned = bool(pinned)

    def slots(self) -> dict[str, Demand]:
        with self._lock:
            return {k: copy.copy(v) for k, v in self._slots.items()}

    def plan_load(self, slot: str, demand: Demand, restore: bool = False) -> tuple[BrokerPlan, dict[str, str]]:
        """The plan for loading ``demand`` into ``slot`` beside what the other slots hold, and the
        other slots whose model it moves ({slot: model id}). Call off the GUI thread (the plan
        may read file headers)."""
        with self._lock:
            hw = self.hardware
            others = {s: copy.copy(d) for s, d in self._slots.items() if s != slot}
        if hw is None:
            from desktop_app.core.hardware import detect_hardware

            hw = detect_hardware()
        demand = copy.copy(demand)
        demand.current, demand.pinned = None, False
        plan = plan_models([*others.values(), demand], hw, active=demand.id, vram_reserve_mib=self.vram_reserve_mib,
                           others_weight=IDLE_WEIGHT if restore else 1.0)
        with self._lock:
            self.last_plan = plan
        moved = {s: dec for s, d in others.items() if (dec := plan.decision(d.id)) is not None and dec.moved}
        with self._lock:
            for s, dec in moved.items():
                self.demoted[s] = dec.placement
        return plan, moved

    def before_load(self, slot: str, demand: Demand, token: Any = None, restore: bool = False):
        """For a model thread's job, before it loads ``demand``: plan, and when other slots must
        move, yield :class:`Moves` for the GUI and wait until they are done. Returns the
        Decision for ``demand``; a refused plan raises its reason."""
        plan, moved = self.plan_load(slot, demand, restore)
        if plan.refused:
            raise AtelierError(plan.refused)
        if moved:
            m = Moves(plan, moved)
            yield m
            wait_for(m.gate, token)
        return plan.decision(demand.id)

    def after_oom(self, slot: str) -> Moves | None:
        """The next step when ``slot`` ran out of memory: every other model that shares its device
        and is not pinned steps back (off the GPU when it ran on one, else unloaded). None when
        nothing can move (the error stands)."""
        with self._lock:
            me = self._slots.get(slot)
            others = {s: copy.copy(d) for s, d in self._slots.items() if s != slot}
        if me is None:
            return None
        on_gpu = bool(me.current and me.current.startswith("gpu"))
        moved, messages = {}, []
        for s, d in others.items():
            if d.pinned or d.current in (None, "unload"):
                continue
            if on_gpu and d.current != "cpu":
                mode, words = "cpu", f"{d.name} moved to the CPU to give {me.name} more room after it ran out of memory."
            elif not on_gpu:
                mode, words = "unload", f"{d.name} was unloaded to give {me.name} more room after it ran out of memory."
            else:
                continue
            moved[s] = Decision(d.id, d.task, d.name, PLACEMENT[mode], mode, "cpu" if mode == "cpu" else "none", 0,
                                words, n_layers=d.llm_shape.n_layers if d.llm_shape else 0, moved=True)
            messages.append(words)
        if not moved:
            return None
        plan = BrokerPlan(list(moved.values()), [], messages, None, me.id)
        return Moves(plan, moved, retry=True)
