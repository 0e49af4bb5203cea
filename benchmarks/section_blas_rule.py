"""Section 10: the measurements behind from_scratch/threads.py's rule. The matrix products of this project's
benchmark steps (the MLP's, the convolution's, the LSTM's, the attention layer's) and a few larger ones, each timed
on one BLAS thread and on every thread, on a quiet machine and next to a busy neighbour process this section starts
itself (`while True: pass`): where a second thread starts to pay, and what it costs when a core is taken. The rule
is then read against the table: the threads it picks, and its time against the better of the two."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks import section_busy
from benchmarks.children import SPINNER, neighbour
from benchmarks.config import DTYPES
from benchmarks.report import Section, load_cell, load_note, progress
from benchmarks.timing import Budget, Timing, measure_blocks
from from_scratch import threads

TITLE = "10. BLAS threads by size: each product on one thread and on all, quiet and next to a busy process"

#: (where it comes from, M, K, N): the product (M, K) @ (K, N).
PRODUCTS: tuple[tuple[str, int, int, int], ...] = (
    ("attention scores, one head (64x16 @ 16x64)", 64, 16, 64),
    ("conv 28x28x1 dense head (64, 1352) @ (1352, 10)", 64, 1352, 10),
    ("LSTM T=8 u=64: h @ U", 64, 64, 256),
    ("MLP batch 32, layer 2", 32, 256, 128),
    ("conv 28x28x1: cols @ K", 43264, 9, 8),
    ("MLP batch 128, layer 2", 128, 256, 128),
    ("MLP batch 32, layer 1", 32, 784, 256),
    ("attention T=64 D=64 batch 32: a projection", 2048, 64, 64),
    ("LSTM T=32 u=256: h @ U", 64, 256, 1024),
    ("MLP batch 128, layer 1", 128, 784, 256),
    ("MLP batch 1024, layer 2", 1024, 256, 128),
    ("LSTM T=32 u=256: X @ W (all steps)", 2048, 16, 1024),
    ("MLP batch 1024, layer 1", 1024, 784, 256),
    ("LSTM T=32 u=256: dU = H^T @ dZ", 256, 2048, 1024),
    ("square 1024", 1024, 1024, 1024),
)
QUICK_PRODUCTS = tuple(PRODUCTS[i] for i in (2, 4, 8, 9, 10, 12, 14))

#: The whole training steps the candidate rules are tried on: section 11's but the 8x8x1 convolution.
STEPS = tuple(step for step in section_busy.STEPS if not step[1].startswith("8x8x1"))
#: Candidate rules: None = every layer on one thread, else (SMALL_PRODUCT, LOAD_CAP); (0, False) = every layer on
#: every thread, the BLAS's own behaviour.
Candidate = tuple[int, bool] | None
CANDIDATES: tuple[Candidate, ...] = (
    None,
    (0, False),
    (2**24, False),
    (0, True),
    (2**20, True),
    (2**21, True),
    (2**22, True),
    (2**24, True),
)
QUICK_CANDIDATES: tuple[Candidate, ...] = (
    None,
    (0, False),
    (threads.SMALL_PRODUCT, False),
    (threads.SMALL_PRODUCT, True),
)


def _candidate_name(c: Candidate) -> str:
    if c is None:
        return "1 thread everywhere"
    size, cap = c
    if size == 0:
        return "all threads everywhere" + (", capped by free cores" if cap else " (BLAS default)")
    mark = " (the rule)" if c == (threads.SMALL_PRODUCT, threads.LOAD_CAP) else ""
    return f"1 below 2^{size.bit_length() - 1}{', capped by free cores' if cap else ''}{mark}"


def _with(candidate: Candidate, step: Any) -> Any:
    def run() -> None:
        if candidate is None:
            threads.set_blas_threads(1)
        else:
            threads.set_blas_threads(None)
            threads.SMALL_PRODUCT, threads.LOAD_CAP = candidate
        step()

    return run


HEAD = [
    "product",
    "dtype",
    "M*K*N",
    "quiet: 1 thread ms",
    "quiet: all ms",
    "quiet: 1 / all",
    "busy: 1 thread ms",
    "busy: all ms (p90)",
    "busy: all / 1",
    "rule picks (quiet)",
    "rule vs better (quiet)",
    "other load (quiet)",
]


def _operands(m: int, k: int, n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


def _pair(a: np.ndarray, b: np.ndarray, full: int, budget: Budget) -> tuple[Timing, Timing]:
    """a @ b on 1 thread and on `full`, alternating blocks (the thread count set through the rule's own control)."""
    control = threads._get()

    def one() -> None:
        control.set(1)
        a @ b

    def every() -> None:
        control.set(full)
        a @ b

    t_one, t_all = measure_blocks([one, every], budget)
    control.set(full)
    return t_one, t_all


def _measure(products: tuple[tuple[str, int, int, int], ...], budget: Budget) -> dict[str, Any]:
    control = threads._get()
    full = control.read()
    out: dict[tuple[str, str, bool], tuple[Timing, Timing]] = {}
    for busy in (False, True):
        with neighbour(busy):
            for dtype in DTYPES:
                for label, m, k, n in products:
                    progress(f"10: {'busy' if busy else 'quiet'} {dtype} {label}")
                    a, b = _operands(m, k, n, dtype)
                    # next to the neighbour every measurement is "disturbed" by design: no retries
                    out[label, dtype, busy] = _pair(a, b, full, replace(budget, retries=0) if busy else budget)
    return {"full": full, "timings": out}


def _steps(candidates: tuple[Candidate, ...], budget: Budget) -> list[list[Any]]:
    """Every step under every candidate rule, the candidates in alternating blocks, quiet and busy."""
    from benchmarks.section_conv import conv_setup, scratch_conv_step

    rule = threads.SMALL_PRODUCT, threads.LOAD_CAP
    results: dict[tuple[str, str, bool], list[Timing]] = {}
    try:
        for busy in (False, True):
            with neighbour(busy):
                for dtype in DTYPES:
                    for label, arch, n in STEPS:
                        progress(f"10: steps {'busy' if busy else 'quiet'} {dtype} {label}")
                        step = scratch_conv_step(*conv_setup(arch, dtype, n))
                        fns = [_with(c, step) for c in candidates]
                        results[label, dtype, busy] = measure_blocks(
                            fns, replace(budget, retries=0) if busy else budget
                        )
    finally:
        threads.set_blas_threads(None)
        threads.SMALL_PRODUCT, threads.LOAD_CAP = rule
    rows = []
    for dtype in DTYPES:
        for label, _, _ in STEPS:
            quiet, busy = results[label, dtype, False], results[label, dtype, True]
            best_q, best_b = min(t.ms for t in quiet), min(t.ms for t in busy)
            for c, q, b in zip(candidates, quiet, busy):
                rows.append(
                    [
                        label,
                        dtype,
                        _candidate_name(c),
                        f"{q.ms:.3f} ({q.ms / best_q:.2f}x)",
                        f"{b.ms:.3f} ({b.ms / best_b:.2f}x)",
                        f"{b.p90_ms:.3f}",
                        f"{b.ms / q.ms:.2f}x",
                        load_cell(q.other),
                    ]
                )
    return rows


HEAD_STEPS = [
    "step",
    "dtype",
    "BLAS threads",
    "quiet ms (vs best)",
    "busy ms (vs best)",
    "busy p90 ms",
    "busy / quiet",
    "other load (quiet)",
]


def run(budget: Budget, quick: bool) -> Section:
    control = threads._get()
    products = QUICK_PRODUCTS if quick else PRODUCTS
    if not control.libs:
        return Section(TITLE, [], [f"skipped: {threads.describe()}"])
    measured = _measure(products, budget)
    full, timings = measured["full"], measured["timings"]
    rows = []
    for dtype in DTYPES:
        for label, m, k, n in products:
            q1, qa = timings[label, dtype, False]
            b1, ba = timings[label, dtype, True]
            size = m * k * n
            pick = threads.threads_for(size, full)
            q_rule = q1.ms if pick == 1 else qa.ms
            rows.append(
                [
                    label,
                    dtype,
                    f"{size:,}",
                    f"{q1.ms:.4f}",
                    f"{qa.ms:.4f}",
                    f"{q1.ms / qa.ms:.2f}x",
                    f"{b1.ms:.4f}",
                    f"{ba.ms:.4f} ({ba.p90_ms:.3f})",
                    f"{ba.ms / b1.ms:.2f}x",
                    pick,
                    f"{q_rule / min(q1.ms, qa.ms):.2f}x",
                    load_cell(max(q1.other, qa.other)),
                ]
            )
    notes = [
        f"rule (from_scratch/threads.py): {threads.describe()}; 'all' = {full} threads, what the BLAS had",
        "each product timed on 1 thread and on all in alternating blocks (median ms); 'busy': the same while a "
        f"neighbour process started here spins on one core (`{SPINNER}`); quiet: 1 / all > 1 means the second "
        "thread gains; busy: all / 1 > 1 means it costs; 'rule vs better': the rule's pick on a quiet machine "
        "against the faster of the two (1.00x = it picked the faster); next to a busy process the rule's cap puts "
        "every product on 1 thread",
        load_note(budget),
    ]
    step_rows = _steps(QUICK_CANDIDATES if quick else CANDIDATES, budget)
    notes.append(
        "second table: each training step (Sequential.train_step, SGD) under each candidate rule, the candidates "
        "timed in alternating blocks; 'vs best': against the fastest candidate of the same step, quiet or busy"
    )
    return Section(TITLE, [(HEAD, rows), (HEAD_STEPS, step_rows)], notes)
