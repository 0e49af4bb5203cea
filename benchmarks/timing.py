"""How a measurement is timed: budgets, per-call timings, the other-load meter, and the guard that repeats a
measurement other processes disturbed."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, final

import numpy as np

#: Other processes using more than this many cores during a measurement make it "disturbed" (retried, flagged).
IDLE_THRESHOLD = 0.15

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """How long to time one measurement: `seconds` of timed calls, clamped to [min_reps, max_reps] calls, after
    at least `warmup` untimed calls and `warmup_seconds` (long enough for an idle thread pool of the other library
    to stop spinning: OpenBLAS's default is 2^28 cycles, about 0.1 s). A disturbed measurement is repeated up to
    `retries` times, waiting at most `patience` seconds in all (per process) for the machine to go idle."""

    seconds: float
    min_reps: int
    max_reps: int
    warmup: int
    warmup_seconds: float
    retries: int
    patience: float


FULL = Budget(seconds=0.6, min_reps=9, max_reps=400, warmup=3, warmup_seconds=0.15, retries=3, patience=30.0)
QUICK = Budget(seconds=0.12, min_reps=5, max_reps=60, warmup=2, warmup_seconds=0.05, retries=0, patience=0.0)


@dataclass
class Timing:
    """Per-call wall times of one measurement (seconds), and the other processes' load meanwhile (cores)."""

    times: list[float] = field(default_factory=list)
    other: float = float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def ms(self) -> float:
        return self.median * 1e3

    @property
    def p90_ms(self) -> float:
        """90th percentile per call, in ms (shows intermittent stalls that leave the median alone)."""
        return float(np.percentile(self.times, 90)) * 1e3

    @property
    def spread(self) -> float:
        """Inter-quartile range relative to the median: a noise indicator (0.05 = 5%)."""
        if len(self.times) < 4:
            return float("nan")
        q1, _, q3 = statistics.quantiles(self.times, n=4)
        return (q3 - q1) / self.median


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq, steal), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLOCK_TICKS


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@final
class CpuMeter:
    """Cores' worth of CPU used by other processes (and hypervisor steal) during a `with` block: the machine's busy
    time minus this process's and its reaped children's. NaN where /proc/stat is missing. Resolution: one clock
    tick (10 ms) per interval, so short blocks read noisy."""

    other: float = float("nan")

    def __enter__(self) -> CpuMeter:
        self._start = (_machine_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy0, own0, t0 = self._start
        busy1, own1, t1 = _machine_busy_seconds(), _own_seconds(), time.perf_counter()
        if busy0 is not None and busy1 is not None and t1 > t0:
            self.other = max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


class IdleGuard:
    """Repeats a measurement that other processes disturbed, after waiting for the machine to go idle."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.waited = 0.0
        self.disturbed = 0

    def wait_for_idle(self) -> bool:
        """Poll in 0.5 s windows until one is quiet; False when the patience is used up."""
        while self.waited < self.patience:
            with CpuMeter() as meter:
                time.sleep(0.5)
            self.waited += 0.5
            if meter.other <= IDLE_THRESHOLD:
                return True
        return False

    def clean(self, run: Callable[[], T], retries: int) -> tuple[T, float]:
        """run() under a CpuMeter, repeated (up to `retries` times) while the other load exceeds the threshold."""
        for attempt in range(retries + 1):
            if attempt and not self.wait_for_idle():
                break
            with CpuMeter() as meter:
                result = run()
            if not meter.other > IDLE_THRESHOLD:
                return result, meter.other
        self.disturbed += 1
        return result, meter.other


#: The process-wide guard: its patience is set from the options; its counts go into the report's last lines.
GUARD = IdleGuard(0.0)


def _warm_up(fns: Sequence[Callable[[], Any]], budget: Budget) -> float:
    """Call the fns in turn, untimed, for the warm-up budget; return the mean seconds per round."""
    start, rounds = time.perf_counter(), 0
    while rounds < budget.warmup or (time.perf_counter() - start < budget.warmup_seconds and rounds < 500):
        for fn in fns:
            fn()
        rounds += 1
    return (time.perf_counter() - start) / rounds


def _reps(per_call: float, seconds: float, budget: Budget) -> int:
    return max(budget.min_reps, min(budget.max_reps, int(seconds / max(per_call, 1e-9))))


def _timed(fn: Callable[[], Any], reps: int, into: list[float]) -> None:
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        into.append(time.perf_counter() - start)


def measure(fn: Callable[[], Any], budget: Budget, guarded: bool = True) -> Timing:
    """Per-call times of `fn` after a warm-up (retried if disturbed, when `guarded`)."""

    def run() -> Timing:
        timing = Timing()
        _timed(fn, _reps(_warm_up([fn], budget), budget.seconds, budget), timing.times)
        return timing

    if not guarded:
        with CpuMeter() as meter:
            timing = run()
        timing.other = meter.other
        return timing
    timing, timing.other = GUARD.clean(run, budget.retries)
    return timing


def measure_blocks(fns: Sequence[Callable[[], Any]], budget: Budget, rounds: int = 3) -> list[Timing]:
    """Several functions timed in alternating blocks (f1, f2, ..., f1, f2, ...), each block after its own warm-up,
    so that slow drift of the machine's speed and background load hit all alike, while none runs in another's
    wake. Each function gets about `budget.seconds` of timed calls in all."""

    def run() -> list[Timing]:
        timings = [Timing() for _ in fns]
        for _ in range(rounds):
            for fn, timing in zip(fns, timings):
                per_call = _warm_up([fn], budget)
                _timed(fn, max(2, _reps(per_call, budget.seconds, budget) // rounds), timing.times)
        return timings

    timings, other = GUARD.clean(run, budget.retries)
    for timing in timings:
        timing.other = other
    return timings


def measure_interleaved(fa: Callable[[], Any], fb: Callable[[], Any], budget: Budget) -> tuple[Timing, Timing]:
    """Two functions alternated call by call (as `backprop-parity train` alternates the two sides' steps); each
    call is timed on its own."""

    def run() -> tuple[Timing, Timing]:
        ta, tb = Timing(), Timing()
        reps = _reps(_warm_up([fa, fb], budget), budget.seconds, budget)
        for _ in range(reps):
            _timed(fa, 1, ta.times)
            _timed(fb, 1, tb.times)
        return ta, tb

    (ta, tb), other = GUARD.clean(run, budget.retries)
    ta.other = tb.other = other
    return ta, tb
