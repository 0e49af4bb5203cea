"""Section 5: the thread-pool question. Does TensorFlow in the process slow the scratch step down, and which setting
helps? Each setting is measured in a fresh child process (`python -m benchmarks --worker NAME`, which runs
`worker`), then in this process; then both steps while a neighbour process competes for the cores."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.children import run_worker
from benchmarks.config import ARCH, BASE_ENV
from benchmarks.machine import blas_info, blas_threads, os_thread_count
from benchmarks.report import Section, load_cell, load_note, progress
from benchmarks.steps import keras_steps, scratch_setup, scratch_step
from benchmarks.timing import GUARD, Budget, Timing, measure, measure_blocks, measure_interleaved
from from_scratch import Sequential

TITLE = f"5. Thread pools: scratch step {ARCH}, batch 128, float32, with and without TensorFlow"


@dataclass(frozen=True)
class Variant:
    """One child-process setting for the thread-pool question; `level`: run with --quick ("quick"), in the full run
    ("full"), or only with --all-settings ("all")."""

    name: str
    env: dict[str, str]
    level: str = "full"
    tf: bool = True
    tf_threads: tuple[int, int] | None = None  # (intra, inter) via tf.config.threading after import; 0 = default
    blas_threads: int | None = None  # threadpoolctl limit on every BLAS pool, applied after TF has loaded


ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}
#: OpenBLAS idle workers go to sleep after 2^4 cycles instead of spinning 2^28 cycles (about 0.1 s) for more work.
SPIN_OFF = {"OPENBLAS_THREAD_TIMEOUT": "4"}

VARIANTS = (
    Variant("no TensorFlow in the process", {}, "quick", tf=False),
    Variant("TF, harness settings (oneDNN off)", {}, "quick"),
    Variant("TF, oneDNN on", ONEDNN_ON),
    Variant("TF, tf.config intra=1 inter=1", {}, "quick", tf_threads=(1, 1)),
    Variant("TF, tf.config inter=1 (intra default)", {}, tf_threads=(0, 1)),
    Variant("TF, tf.config intra=2 inter=1", {}, "all", tf_threads=(2, 1)),
    Variant(
        "TF, TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1",
        {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
        "all",
    ),
    Variant("TF, OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, "all"),
    Variant("TF, threadpoolctl BLAS limit 1", {}, blas_threads=1),
    Variant("TF, OPENBLAS_THREAD_TIMEOUT=4", SPIN_OFF),
    Variant("TF, OPENBLAS_THREAD_TIMEOUT=4 + tf.config intra=1 inter=1", SPIN_OFF, "all", tf_threads=(1, 1)),
    Variant("TF, oneDNN on + OPENBLAS_THREAD_TIMEOUT=4", {**ONEDNN_ON, **SPIN_OFF}, "all"),
)

HEAD = [
    "setting (a fresh child each unless noted)",
    "scratch, TF not loaded",
    "scratch after Keras",
    "after / not loaded",
    "scratch interleaved",
    "interleaved / not loaded",
    "Keras alone",
    "Keras interleaved",
    "pair interleaved",
    "BLAS thr.",
    "OS thr.",
    "rounds",
    "other load",
]

NEIGHBOURS = {
    "none": None,
    "1 busy loop (`while True: pass`)": "while True: pass",
    "1 NumPy GEMM loop (2 BLAS threads)": "import numpy as np\na = np.ones((256, 256), 'f4')\nwhile True: a @ a",
}
HEAD_NEIGHBOURS = [
    "neighbour process",
    "scratch ms, BLAS default threads (median / p90)",
    "scratch ms, BLAS 1 thread (median / p90)",
    "Keras ms (median / p90)",
    "other load (incl. neighbour)",
]


def run(budget: Budget, level: str, rounds: int, before_ms: float) -> Section:
    """This process's numbers, each variant of `level` in fresh children (`rounds` rounds), then the neighbours.
    `before_ms`: this process's scratch step (ARCH, batch 128, float32) before TensorFlow loaded."""
    here = _in_process(budget, before_ms)
    thread_rows, notes = _children(budget, level, rounds, here)
    neighbour_rows = _neighbours(budget)
    return Section(
        TITLE,
        [(HEAD, thread_rows), (HEAD_NEIGHBOURS, neighbour_rows)],
        [
            (
                "each child times the scratch step before importing TensorFlow ('TF not loaded'), then imports "
                "keras_impl, applies its setting, runs Keras steps and times: the Keras step alone and the scratch "
                "step after Keras steps ('after'), in alternating blocks; then the two alternating call by call, "
                "as `compare train` alternates the two sides ('interleaved'; 'pair' = the two summed). Ratios are "
                "against the same process's 'TF not loaded' (for this process: its number before TF loaded). All "
                "ms; medians over the rounds; BLAS thr. = threads of each BLAS library loaded (NumPy's OpenBLAS, "
                "then SciPy's, which Keras loads); OS thr. = threads in the process at the end"
            ),
            (
                "TF_ENABLE_ONEDNN_OPTS=1 overrides keras_impl's default of 0; OPENBLAS_THREAD_TIMEOUT=4 makes idle "
                "OpenBLAS workers sleep after 2^4 cycles instead of spinning up to 2^28 (about 0.1 s); it must be "
                "set before NumPy loads"
            ),
            load_note(budget),
            (
                "second table: this process (TF loaded), while one neighbour process started here competes for "
                "the cores; BLAS 1 thread via threadpoolctl; other load includes the neighbour"
            ),
            *notes,
        ],
    )


def scratch_ms_before_tf(budget: Budget) -> float:
    """This process's scratch step (ARCH, batch 128, float32), median ms; call it before TensorFlow loads."""
    model, x, y = scratch_setup(ARCH, "float32", 128)
    return measure(scratch_step(model, x, y), budget).ms


# ----- the child side --------------------------------------------------------------------------------------------
def worker(variant_name: str, budget: Budget) -> dict[str, Any]:
    """Child-process side of section 5 (784-256-128-10, batch 128, float32): the scratch step before TensorFlow
    loads, then, unless the variant has no TF, keras_impl imported, the setting applied, and the measurements of
    `_thread_measurements`. The result is printed as one JSON line."""
    variant = next(v for v in VARIANTS if v.name == variant_name)
    model, x, y = scratch_setup(ARCH, "float32", 128)
    before = measure(scratch_step(model, x, y), budget)
    result: dict[str, Any] = {"before_ms": before.ms, "other": before.other, "os_threads": os_thread_count()}
    if variant.tf:
        # keras_impl first: it sets TF_ENABLE_ONEDNN_OPTS=0 (unless the variant's env set it), then loads TF.
        import keras_impl  # noqa: F401

        # isort: split
        import tensorflow as tf

        if variant.tf_threads:
            tf.config.threading.set_intra_op_parallelism_threads(variant.tf_threads[0])
            tf.config.threading.set_inter_op_parallelism_threads(variant.tf_threads[1])
        if variant.blas_threads is not None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=variant.blas_threads, user_api="blas")
        measured = _thread_measurements(model, x, y, budget)
        result.update(measured, other=max(result["other"], measured["other"]))
    result.update(blas_threads=blas_threads(), waited=GUARD.waited, disturbed=GUARD.disturbed)
    return result


def _thread_measurements(model: Sequential, x: np.ndarray, y: np.ndarray, budget: Budget) -> dict[str, Any]:
    """With TensorFlow loaded: the Keras step alone and the scratch step after Keras steps (alternating blocks),
    then the two alternating call by call."""
    keras = keras_steps(model, x, y)
    step = scratch_step(model, x, y)
    k, after = measure_blocks([keras["grad_step"], step], budget, rounds=2)
    si, ki = measure_interleaved(step, keras["grad_step"], budget)
    return {
        "keras_ms": k.ms,
        "after_ms": after.ms,
        "interleaved_ms": si.ms,
        "keras_interleaved_ms": ki.ms,
        "other": max(k.other, si.other),
        "os_threads": os_thread_count(),
    }


# ----- the parent side -------------------------------------------------------------------------------------------
def _in_process(budget: Budget, before_ms: float) -> dict[str, Any]:
    """Section 5 in this process: TensorFlow is loaded and Keras steps have run (section 1). `before_ms`: this
    process's own scratch step time before TensorFlow loaded (section 2)."""
    progress("5: this process")
    model, x, y = scratch_setup(ARCH, "float32", 128)
    return {"before_ms": before_ms, **_thread_measurements(model, x, y, budget), "blas_threads": blas_threads()}


def _children(budget: Budget, level: str, rounds: int, here: dict[str, Any]) -> tuple[list[list[Any]], list[str]]:
    """Each variant in a fresh child process, `rounds` times round-robin (medians), then this process's numbers."""
    levels = {"quick": ("quick",), "full": ("quick", "full"), "all": ("quick", "full", "all")}[level]
    notes, results = [], {}
    for r in range(rounds):
        for v in VARIANTS:
            if v.level not in levels:
                continue
            if v.blas_threads is not None and not blas_info():
                if r == 0:
                    notes.append(f"skipped {v.name!r}: threadpoolctl not installed")
                continue
            progress(f"5: {v.name} (round {r + 1}/{rounds})")
            patience = max(0.0, min(max(20.0, GUARD.patience / 4), GUARD.patience - GUARD.waited))
            result, failure = run_worker(v.name, {**BASE_ENV, **v.env}, level == "quick", patience, 300)
            if result is None:
                notes.append(f"variant {v.name!r} failed {failure}")
                continue
            results.setdefault(v.name, []).append(result)
    merged = {name: _median_dicts(runs) for name, runs in results.items()}
    rows = [_thread_row(name, r) for name, r in merged.items()]
    if here:
        rows.append(_thread_row("this process (harness settings; TF loaded, Keras steps run)", here))
    return rows, notes


def _median_dicts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric fields over rounds (max for 'other'); other fields from the last round."""
    out = dict(runs[-1])
    for key, value in runs[-1].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs if key in r]
            out[key] = max(values) if key == "other" else statistics.median(values)
    out["rounds"] = len(runs)
    return out


def _thread_row(name: str, r: dict[str, Any]) -> list[Any]:
    def ms(key: str) -> str:
        return f"{r[key]:.3f}" if key in r else ""

    def ratio(key: str) -> str:
        return f"{r[key] / r['before_ms']:.2f}x" if key in r and r.get("before_ms") else ""

    pair = f"{r['interleaved_ms'] + r['keras_interleaved_ms']:.3f}" if "interleaved_ms" in r else ""
    return [
        name,
        ms("before_ms"),
        ms("after_ms"),
        ratio("after_ms"),
        ms("interleaved_ms"),
        ratio("interleaved_ms"),
        ms("keras_ms"),
        ms("keras_interleaved_ms"),
        pair,
        ",".join(map(str, r.get("blas_threads", []))) or "n/a",
        f"{r.get('os_threads', -1):.0f}",
        r.get("rounds", 1),
        load_cell(r.get("other", float("nan"))),
    ]


# ----- neighbours ------------------------------------------------------------------------------------------------
def _mp(t: Timing) -> str:
    return f"{t.ms:.3f} / {t.p90_ms:.3f}"


def _neighbours(budget: Budget) -> list[list[Any]]:
    """The scratch step (BLAS with its default threads, and with 1 thread) and the Keras step while a neighbour
    process competes for the cores: what happens to each library's thread pool when a core is taken. The
    neighbours are started and killed here, by their own process handle."""
    model, x, y = scratch_setup(ARCH, "float32", 128)
    keras = keras_steps(model, x, y)
    step = scratch_step(model, x, y)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rows = []
    for name, code in NEIGHBOURS.items():
        progress(f"5b: neighbour {name}")
        proc = subprocess.Popen([sys.executable, "-c", code], env=BASE_ENV) if code else None
        guarded = proc is None
        try:
            time.sleep(0.5 if proc else 0.0)
            many = measure(step, budget, guarded=guarded)
            one = None
            if threadpool_limits is not None:
                with threadpool_limits(limits=1, user_api="blas"):
                    one = measure(step, budget, guarded=guarded)
            kt = measure(keras["grad_step"], budget, guarded=guarded)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        other = max(many.other, kt.other, one.other if one else 0.0)
        rows.append(
            [
                name,
                _mp(many),
                _mp(one) if one else "n/a (no threadpoolctl)",
                _mp(kt),
                load_cell(other) if guarded else f"{other:.2f}",
            ]
        )
    return rows
