"""Adaptive decode threads (issue 11): when another process takes a core, llama.cpp's threads wait
on each other at every step and decoding collapses (measured here: 2 threads 23 tok/s with one
busy process, 1 thread 40-52). The governor watches the time per token and, when it jumps, drops
a thread for the rest of the reply; it probes all cores again now and then (less often after a
failed probe) and stays there when they are free again. Pure Python, fed with timings, so its
decisions are tested with synthetic clocks; the engine applies them with ``llama_set_n_threads``.
"""

from __future__ import annotations

import statistics
from typing import Callable

WINDOW = 6  # tokens per measurement
SLOW = 1.5  # a window this much slower than the calm baseline means contention
RECOVERED = 1.25  # a probe this close to the baseline: the cores are free again
FIRST_PROBE = 24  # tokens at the reduced count before trying all cores again (doubles per failure)
MAX_PROBE = 384


class ThreadGovernor:
    def __init__(self, full: int, apply: Callable[[int], None], window: int = WINDOW) -> None:
        self.full = max(1, int(full))
        self.n = self.full
        self.apply = apply
        self.window = window
        self._dts: list[float] = []
        self.baseline: dict[int, float] = {}  # calm median per token at a thread count
        self._contended: dict[int, float] = {}  # the median that made us leave a count
        self._probing_from: int | None = None
        self._since_probe = 0
        self._probe_every = FIRST_PROBE
        self.changes: list[tuple[int, int]] = []  # (token index, threads) for the log and the bench
        self.tokens = 0
        self._just_dropped = False
        self._hold_until = 0  # no drop before this token (fewer threads were no faster last time)

    def new_reply(self) -> None:
        """A reply starts on all cores; what was learned (the calm baselines) is kept."""
        self._probing_from = None
        self._since_probe = 0
        self._probe_every = FIRST_PROBE
        self._just_dropped = False
        self._hold_until = 0
        self._set(self.full)
        self.changes = []  # this reply's

    def _set(self, n: int) -> None:
        if n != self.n:
            self.n = n
            self.apply(n)
            self.changes.append((self.tokens, n))
        self._dts = []

    def token(self, dt: float) -> None:
        """One decoded token took ``dt`` seconds (the first token of a reply is not passed)."""
        self.tokens += 1
        if self.full <= 1:
            return
        self._dts.append(dt)
        if self.n < self.full and self._probing_from is None:
            self._since_probe += 1
        if len(self._dts) < self.window:
            return
        m = statistics.median(self._dts)
        self._dts = []
        n = self.n
        if self._probing_from is not None:  # a probe at all cores just ended
            back = self._probing_from
            self._probing_from = None
            base = self.baseline.get(n)
            if base is not None and m <= RECOVERED * base:
                self._probe_every = FIRST_PROBE  # free again: stay
                return
            self._probe_every = min(MAX_PROBE, self._probe_every * 2)
            self._since_probe = 0
            self._set(back)
            return
        if self._just_dropped:
            self._just_dropped = False
            if m >= self._contended.get(n + 1, float("inf")):  # one thread fewer was no better: go back
                self._hold_until = self.tokens + self._probe_every
                self._probe_every = min(MAX_PROBE, self._probe_every * 2)
                self._set(n + 1)
                return
        base = self.baseline.get(n)
        if base is None:
            self.baseline[n] = m
            return
        if m > SLOW * base:
            if n > 1 and self.tokens >= self._hold_until:
                self._contended[n] = m
                self._just_dropped = True
                self._set(n - 1)
                return
        else:
            self.baseline[n] = min(base, m)
        if n < self.full and self._since_probe >= self._probe_every:
            self._since_probe = 0
            self._probing_from = n
            self._set(self.full)
