"""BLAS threads chosen by the size of the work.

NumPy's matrix products run in a BLAS (OpenBLAS in NumPy's wheels) that splits a product over its threads. A
second thread pays for itself only on a large product: on a small one the threads spend longer handing the work out
and waiting for each other than computing, and when another process holds a core, a thread of the product waits for
that core, so a product of microseconds can take milliseconds. The model therefore picks the threads per layer call:

    threads(layer, X) = 1                           if M K N < SMALL_PRODUCT  (of the layer's typical product)
                        min(every thread, free cores)  otherwise

"every thread" is what the BLAS had when the pass began (its default, or a limit the user set); "free cores" are the
cores other processes leave free, read from /proc/stat at most every LOAD_INTERVAL seconds. Next to a busy process
a large product on every thread waits for the busy core as a small one does: the cap puts it on the free ones.

A Dense layer's product X @ W is (N, D) @ (D, M): M K N = N D M = N * W.size. A convolution's cols @ K is
(N Ho Wo, kh kw C) @ (kh kw C, F): about N H W * K.size. A recurrent layer runs T products h @ U per pass:
N * U.size. A layer may say it itself with `product_size(x) -> int`; otherwise the estimate is
rows(X) * (the size of its largest parameter with two or more axes), rows(X) = X.size / (its last axis), and a
layer without such a parameter (an activation, a pooling, a merge) leaves the threads as they are.

SMALL_PRODUCT and the cap come from measurements (`python -m benchmarks --sections 10`, benchmarks/README.md): the
products of this project's steps timed on one thread and on two, and whole training steps under candidate rules, on
a quiet machine and next to a busy process. Without the cap, steps next to a busy process took up to 3.1x their
quiet time (LSTM T=32 u=256 float64: 287 ms against 103 ms, 2.8x); with it at most 1.8x, about what losing a core
costs a step whose large products ran on two.

The setting, for users who want their own: the environment variable BACKPROP_PARITY_BLAS_THREADS ("auto", the
default, or a positive whole number: every layer on that many threads), or `set_blas_threads(n)` from Python
(None or "auto" puts the rule back). Thread control needs threadpoolctl (a dependency of this project, pure
Python); without it the threads stay as the BLAS chose and `describe()` says so.

Only the number of threads changes, never a formula. A BLAS may still round a product differently on another
number of threads (it may pick other kernels), which parity judges by meaning like any other BLAS difference.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError

#: Products with M*K*N below this run on one BLAS thread. Measured (benchmarks section 10, 2-core machine, quiet):
#: alone, products of 3.1M (the conv's cols @ K) to 1G ran 1.2x-2.1x faster on two threads (most 1.6x-2.0x); at
#: 1M (the LSTM's h @ U at u = 64, batch 64) 0.73x-1.39x, and the whole LSTM step with those products on one thread
#: was the faster (2.07 ms against 2.40 ms, float32); at 0.9M and below 0.86x-1.14x. The threshold lies between.
SMALL_PRODUCT = 2**21

#: Whether a large product's threads are capped by the cores other processes leave free (benchmarks turn it off to
#: show what the cap is worth).
LOAD_CAP = True

#: How long a reading of the other processes' load stands before it is read again (seconds).
LOAD_INTERVAL = 0.1

#: The environment variable that overrides the rule: "auto" or a positive whole number of threads.
ENV = "BACKPROP_PARITY_BLAS_THREADS"


class _Control:
    """The BLAS thread pools of this process (via threadpoolctl) and the count they are set to; set only when it
    changes (a call into the library costs about 2 microseconds)."""

    def __init__(self) -> None:
        self.libs: list[Any] = []
        self.current = 0
        self.fixed: int | None = _from_env()
        self.why = ""
        self.load = _Load()
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            self.why = "threadpoolctl is not installed"
            return
        self.libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        if not self.libs:
            self.why = "no BLAS library found in this process"
            return
        self.read()

    def read(self) -> int:
        """The count the pools have now (someone else may have set it: threadpoolctl, the library's own call)."""
        if self.libs:
            self.current = max(lib.get_num_threads() for lib in self.libs)
        return self.current

    def set(self, n: int) -> None:
        if n != self.current and self.libs:
            for lib in self.libs:
                lib.set_num_threads(n)
            self.current = n


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq, steal), from /proc/stat;
    None where there is none (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _TICKS


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else every logical CPU)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Load:
    """The cores other processes leave free: cores - round(their CPU use in cores over the last interval), at least
    1. Their use is the machine's busy time minus this process's (every thread of it, the BLAS's included), read at
    most every LOAD_INTERVAL seconds; where the machine's busy time cannot be read, every core counts as free."""

    def __init__(self) -> None:
        self.cores = usable_cores()
        self.free = self.cores
        self.other = 0.0
        self.last: tuple[float, float, float] | None = None

    def free_cores(self) -> int:
        now = time.monotonic()
        if self.last is not None and now - self.last[0] < LOAD_INTERVAL:
            return self.free
        busy, own = _busy_seconds(), time.process_time()
        if busy is None:
            return self.free
        if self.last is not None:
            self.other = max(0.0, (busy - self.last[1]) - (own - self.last[2])) / (now - self.last[0])
            self.free = max(1, min(self.cores, self.cores - int(self.other + 0.5)))
        self.last = (now, busy, own)
        return self.free


def _from_env() -> int | None:
    value = os.environ.get(ENV, "auto").strip()
    if value in ("", "auto"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise BadInputError(f"{ENV}={value!r}: expected 'auto' or a positive whole number of BLAS threads")
    return int(value)


_control: _Control | None = None


def _get() -> _Control:
    global _control
    if _control is None:
        _control = _Control()
    return _control


def product_size(layer: Any, x: Any) -> int | None:
    """M*K*N of the layer's typical matrix product on input X (a list: its first array), or None when the layer has
    no matrix parameter (module docstring)."""
    own = getattr(layer, "product_size", None)
    if callable(own):
        return own(x)
    first = x[0] if isinstance(x, (list, tuple)) and x else x
    if not isinstance(first, np.ndarray) or first.ndim == 0 or first.shape[-1] == 0:
        return None
    try:
        params = layer.params
    except Exception:  # a layer not yet built, or one whose params raise: its own call reports it
        return None
    sizes = [p.size for p in params if isinstance(p, np.ndarray) and p.ndim >= 2]
    if not sizes:
        return None
    return first.size // first.shape[-1] * max(sizes)


def threads_for(size: int | None, ceiling: int, free: int | None = None) -> int | None:
    """The rule: 1 thread below SMALL_PRODUCT; from it on `ceiling` (every thread the pass started with), but no
    more than the `free` cores other processes leave; None (leave as it is) for a layer without products. A fixed
    setting wins."""
    control = _get()
    if control.fixed is not None:
        return control.fixed
    if size is None or not control.libs:
        return None
    if size < SMALL_PRODUCT:
        return 1
    return ceiling if free is None else max(1, min(ceiling, free))


class LayerThreads:
    """One pass of a model over its layers: `with LayerThreads() as threads:` reads the threads the BLAS has (the
    ceiling: the library's default, or what the user or threadpoolctl set), `threads.use(layer, x)` before each
    layer's call sets them by the rule, and leaving the block puts the ceiling back, so nothing outside the pass
    sees a change."""

    def __enter__(self) -> LayerThreads:
        self.control = _get()
        self.ceiling = self.control.read()
        self.free = self.control.load.free_cores() if self.ceiling > 1 and LOAD_CAP else None
        return self

    def use(self, layer: Any, x: Any) -> None:
        n = threads_for(product_size(layer, x), self.ceiling, self.free)
        if n is not None:
            self.control.set(n)

    def __exit__(self, *exc: object) -> None:
        self.control.set(self.ceiling)


def set_blas_threads(n: int | str | None) -> None:
    """Every layer on n BLAS threads (a positive int), or back to the rule (None or "auto")."""
    if n is None or n == "auto":
        _get().fixed = None
        return
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise BadInputError(f"set_blas_threads: expected a positive int, None or 'auto', got {n!r}")
    _get().fixed = int(n)


def describe() -> str:
    """One line: the rule in force, for reports."""
    control = _get()
    if not control.libs:
        return f"BLAS threads as the library chose ({control.why})"
    if control.fixed is not None:
        return f"BLAS threads fixed at {control.fixed} ({ENV} or set_blas_threads)"
    cap = ", no more than the cores other processes leave free" if LOAD_CAP else ""
    return f"BLAS threads by size: 1 below M*K*N = {SMALL_PRODUCT:,}, else all {control.read()}{cap}"
