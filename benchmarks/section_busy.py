"""Section 11: the training steps next to a busy neighbour. The MLP, conv and LSTM steps of sections 1, 6 and 7,
scratch and Keras, timed on a quiet machine and then while a neighbour process this section starts spins on one
core, side by side in one child process (`python -m benchmarks --worker "busy: ..."`, Keras under its fastest
setting of sections 6 and 7: oneDNN on, op determinism off, the faster of tf.function and jit_compile on the quiet
machine). Target: the scratch step's busy/quiet no worse than Keras's own busy/quiet."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchmarks.children import SPINNER, neighbour, run_worker
from benchmarks.config import BASE_ENV, DTYPES
from benchmarks.report import Section, load_cell, progress
from benchmarks.section_conv import SETTINGS, conv_setup, keras_conv_steps, scratch_conv_step
from benchmarks.timing import GUARD, Budget, measure_blocks

TITLE = "11. Next to a busy process: each training step quiet and busy, scratch and Keras, one child process"
WORKER_PREFIX = "busy: "
#: Keras's fastest setting in sections 6 and 7 on most rows.
SETTING = SETTINGS[3]

#: (label, architecture, batch)
STEPS: tuple[tuple[str, str, int], ...] = (
    ("MLP 784-256-128-10, batch 128", "784-256-128-10", 128),
    ("MLP 784-256-128-10, batch 1024", "784-256-128-10", 1024),
    ("conv 28x28x1, batch 64", "28x28x1-conv8k3-pool2-flatten-10", 64),
    ("conv 8x8x1, batch 64", "8x8x1-conv8k3-pool2-flatten-10", 64),
    ("LSTM T=8 u=64, batch 64", "8x16-lstm64-10", 64),
    ("LSTM T=32 u=256, batch 64", "32x16-lstm256-10", 64),
)
QUICK_STEPS = tuple(STEPS[i] for i in (1, 2, 4))

HEAD = [
    "step",
    "dtype",
    "scratch quiet ms",
    "scratch busy ms (p90)",
    "scratch busy/quiet",
    "Keras mode",
    "Keras quiet ms",
    "Keras busy ms (p90)",
    "Keras busy/quiet",
    "scratch <= Keras?",
    "scratch/Keras quiet, busy",
    "other load (quiet)",
]


def worker(name: str, budget: Budget) -> dict[str, Any]:
    """Child side: keras_impl under SETTING, then every step and dtype quiet (scratch and both Keras modes in
    alternating blocks), then busy (scratch and the faster Keras mode), the neighbour started and killed here."""
    quick = name.endswith("quick")
    import keras_impl  # noqa: F401  (pins TF's settings before TensorFlow loads; the environment sets oneDNN)

    # isort: split
    from tensorflow.python.framework import config as tf_config

    from from_scratch import threads

    if not SETTING.determinism:
        tf_config.disable_op_determinism()
    rows = []
    for label, arch, n in QUICK_STEPS if quick else STEPS:
        for dtype in DTYPES:
            progress(f"11: {label} {dtype}, quiet")
            model, x, y = conv_setup(arch, dtype, n)
            km, keras = keras_conv_steps(arch, dtype, model.get_weights(), x, y)
            for step in keras.values():
                step()  # traces and compiles
            scratch = scratch_conv_step(model, x, y)
            quiet = measure_blocks([scratch, *keras.values()], budget)
            modes = list(keras)
            best = min(range(len(modes)), key=lambda k: quiet[1 + k].ms)
            progress(f"11: {label} {dtype}, busy")
            with neighbour():
                busy = measure_blocks([scratch, keras[modes[best]]], replace(budget, retries=0))
            rows.append(
                {
                    "step": label,
                    "dtype": dtype,
                    "scratch": [quiet[0].ms, quiet[0].p90_ms, busy[0].ms, busy[0].p90_ms],
                    "keras": [quiet[1 + best].ms, quiet[1 + best].p90_ms, busy[1].ms, busy[1].p90_ms],
                    "mode": modes[best],
                    "other": quiet[0].other,
                }
            )
    return {"rows": rows, "rule": threads.describe(), "waited": GUARD.waited, "disturbed": GUARD.disturbed}


def run(budget: Budget, quick: bool) -> Section:
    progress("11: child process")
    name = WORKER_PREFIX + ("quick" if quick else "full")
    patience = max(0.0, GUARD.patience - GUARD.waited)
    result, failure = run_worker(name, {**BASE_ENV, **SETTING.env}, quick, patience, 900)
    if result is None:
        return Section(TITLE, [], [f"the child failed {failure}"])
    rows = []
    for r in result["rows"]:
        sq, sq90, sb, sb90 = r["scratch"]
        kq, kq90, kb, kb90 = r["keras"]
        rows.append(
            [
                r["step"],
                r["dtype"],
                f"{sq:.3f}",
                f"{sb:.3f} ({sb90:.3f})",
                f"{sb / sq:.2f}x",
                r["mode"],
                f"{kq:.3f}",
                f"{kb:.3f} ({kb90:.3f})",
                f"{kb / kq:.2f}x",
                "yes" if sb / sq <= kb / kq else "no",
                f"{sq / kq:.2f}x, {sb / kb:.2f}x",
                load_cell(r["other"]),
            ]
        )
    notes = [
        f"one child process, Keras under '{SETTING.name}'; the scratch step (Sequential.train_step, SGD) and Keras's "
        "tf.function and jit_compile steps (GradientTape + SGD.apply_gradients) timed in alternating blocks on the "
        "quiet machine; then the scratch step and Keras's faster mode again while a neighbour process started by "
        f"the child spins on one core (`{SPINNER}`); medians, p90 in brackets",
        "target: scratch busy/quiet <= Keras busy/quiet ('scratch <= Keras?')",
        f"the scratch side's threads: {result['rule']} (from_scratch/threads.py)",
    ]
    return Section(TITLE, [(HEAD, rows)], notes)
