"""Section 7: the LSTM training step (forward + backward + SGD update) of `TxF-lstmU-10` at batch 64: the scratch
step against Keras's fastest configurations of the same step (the settings and child processes of section 6,
`python -m benchmarks --worker "lstm: ..."`, which runs `worker`), and where the scratch step's time goes (forward
loop, backward loop, the weight-gradient products; this process, TensorFlow not loaded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import DTYPES, LR
from benchmarks.report import Section, load_cell, load_note, progress
from benchmarks.section_conv import (
    HEAD_KERAS,
    HEAD_VS_KERAS,
    SETTINGS,
    TARGET_VS_KERAS,
    Best,
    _children,
    _spread,
    collect_keras,
    conv_setup,
    scratch_conv_step,
    settings_worker,
    vs_keras_cells,
)
from benchmarks.timing import FULL, Budget, Timing, measure_blocks
from from_scratch import LSTM

LSTM_BATCH = 64
FEATURES = 16
#: (timesteps T, units u): every pair in the full run, the smallest and the largest with --quick.
FULL_CASES = ((8, 64), (8, 256), (32, 64), (32, 256))
QUICK_CASES = ((8, 64), (32, 256))
#: With --quick only the harness's own setting and the one expected to be fastest (oneDNN on, determinism off).
QUICK_SETTINGS = (SETTINGS[0], SETTINGS[3])

TITLE = f"7. LSTM training step (forward + backward + SGD), batch {LSTM_BATCH}: scratch vs Keras's fastest"

#: Worker names of this section start with this (section 6's with "conv: ").
WORKER_PREFIX = "lstm: "

HEAD = [
    "network",
    *HEAD_VS_KERAS,
    "other load",
]
HEAD_PARTS = [
    "network",
    "dtype",
    "scratch step ms",
    "forward loop",
    "backward loop",
    "weight-grad products",
    "rest",
    "recurrent GEMMs (in the loops)",
    "IQR/med",
    "other load",
]


def lstm_arch(timesteps: int, units: int) -> str:
    return f"{timesteps}x{FEATURES}-lstm{units}-10"


def _archs(quick: bool) -> tuple[str, ...]:
    return tuple(lstm_arch(t, u) for t, u in (QUICK_CASES if quick else FULL_CASES))


def _name(arch: str) -> str:
    """'32x16-lstm256-10' -> 'T=32 u=256'."""
    shape, layer, _ = arch.split("-")
    return f"T={shape.split('x')[0]} u={layer.removeprefix('lstm')}"


# ----- this process: where the time goes -------------------------------------------------------------------------
def _step_parts(arch: str, dtype: str, n: int) -> dict[str, Callable[[], Any]]:
    """The scratch step's parts as separate callables on a second model after one train step (so every cache has
    the step's shapes): the LSTM's forward loop (LSTM.forward, with its input product X @ W), its backward loop
    (LSTM.backward with weight_grads shadowed by a no-op: the step_back loop over time), the weight-gradient
    products (LSTM.weight_grads(False): dW, dU, db over all steps at once; the step passes input_grad=False), and the
    recurrent GEMMs alone (T times h @ U and T times dz @ U.T, the products inside the two loops)."""
    probe, x, y = conv_setup(arch, dtype, n)
    probe.train_step(x, y)
    lstm = next(layer for layer in probe.layers if isinstance(layer, LSTM))
    rng = np.random.default_rng(3)
    d_y = rng.standard_normal((n, lstm.units)).astype(dtype)
    h = rng.standard_normal((n, lstm.units)).astype(dtype)
    dz = rng.standard_normal((n, 4 * lstm.units)).astype(dtype)
    u, u_t = lstm.U, lstm.U.T

    def forward() -> None:
        lstm.forward(x, training=True)

    def backward_loop() -> None:
        lstm.weight_grads = lambda input_grad: None  # an instance attribute shadows the method for this call
        try:
            lstm.backward(d_y, input_grad=False)
        finally:
            del lstm.weight_grads

    def weight_grads() -> None:
        lstm.weight_grads(False)

    def recurrent_gemms() -> None:
        for _ in range(lstm.timesteps):
            h @ u
            dz @ u_t

    return {
        "forward": forward,
        "backward": backward_loop,
        "weight grads": weight_grads,
        "recurrent GEMMs": recurrent_gemms,
    }


def _in_process(budget: Budget, rounds: int, archs: tuple[str, ...]) -> dict[tuple[str, str], dict[str, Timing]]:
    """Per (arch, dtype): the scratch train step and its parts, timed in alternating blocks."""
    results = {}
    for arch in archs:
        for dtype in DTYPES:
            progress(f"7: scratch step and parts, {_name(arch)} {dtype}")
            model, x, y = conv_setup(arch, dtype, LSTM_BATCH)
            parts = _step_parts(arch, dtype, LSTM_BATCH)
            timings = measure_blocks([scratch_conv_step(model, x, y), *parts.values()], budget, rounds)
            results[arch, dtype] = {"step": timings[0], **dict(zip(parts, timings[1:]))}
    return results


def _share(t: Timing, step: Timing) -> str:
    return f"{t.ms:.3f} ({t.median / step.median:.0%})"


def _parts_row(arch: str, dtype: str, r: dict[str, Timing]) -> list[Any]:
    step = r["step"]
    rest = step.median - sum(r[key].median for key in ("forward", "backward", "weight grads"))
    return [
        _name(arch),
        dtype,
        f"{step.ms:.3f}",
        _share(r["forward"], step),
        _share(r["backward"], step),
        _share(r["weight grads"], step),
        f"{rest * 1e3:.3f} ({rest / step.median:.0%})",
        _share(r["recurrent GEMMs"], step),
        _spread([step]),
        load_cell(step.other),
    ]


def _main_row(arch: str, dtype: str, best: Best | None, step: Timing) -> list[Any]:
    keras_cells, other = vs_keras_cells(best, step.other)
    return [_name(arch), dtype, LSTM_BATCH, *keras_cells, f"{step.ms:.3f}", load_cell(other)]


# ----- the child side --------------------------------------------------------------------------------------------
def worker(name: str, budget: Budget) -> dict[str, Any]:
    """Child-process side of section 7: section 6's worker on the LSTM networks (fewer of them with --quick, which
    the child sees as its budget)."""
    archs = _archs(quick=budget.seconds < FULL.seconds)
    return settings_worker(name, budget, WORKER_PREFIX, "7", archs, LSTM_BATCH, _name)


# ----- the parent side -------------------------------------------------------------------------------------------
def run(budget: Budget, rounds: int, quick: bool) -> Section:
    """The scratch LSTM step's parts in this process (TensorFlow not loaded), then the Keras settings in child
    processes; the target from the same run."""
    archs = _archs(quick)
    parts = _in_process(budget, rounds, archs)
    settings = QUICK_SETTINGS if quick else SETTINGS
    children, notes = _children(budget, quick, WORKER_PREFIX, "7", settings)
    keras_rows, bests = collect_keras(children, archs, _name, notes)
    main_rows = [_main_row(a, d, bests[a, d], parts[a, d]["step"]) for a in archs for d in DTYPES]
    return Section(
        TITLE,
        [(HEAD, main_rows), (HEAD_KERAS, keras_rows), (HEAD_PARTS, [_parts_row(a, d, parts[a, d]) for a, d in parts])],
        [
            (
                f"networks {', '.join(archs)}: T steps of {FEATURES} features, LSTM(u) (last output only), then "
                f"Dense(10, softmax), categorical cross-entropy, batch {LSTM_BATCH}; the step is forward + backward "
                f"+ plain SGD (lr {LR}): scratch `Sequential.train_step` after compile('sgd', ...); Keras a "
                "GradientTape over CategoricalCrossentropy(dtype) + SGD.apply_gradients in one tf.function, with "
                "and without jit_compile=True, on the keras_impl.build_model twin (keras.layers.LSTM, the generic "
                "TensorFlow loop on the CPU) with the same weights"
                + (", --quick: 2 of the 4 (T, u) pairs" if quick else "")
            ),
            (
                f"target: scratch/Keras <= {TARGET_VS_KERAS}x against the fastest Keras configuration measured; "
                "scratch/Keras uses the scratch step timed in the same child process as that Keras configuration, "
                "in alternating blocks. 'Keras fastest' is the smallest of the Keras medians over all settings and "
                "modes, so its noise favours Keras"
            ),
            (
                "second table: each setting in a fresh child process, as in section 6"
                + (
                    f" (--quick: only {' and '.join(repr(s.name) for s in settings)})"
                    if quick
                    else f" ({len(settings)} settings)"
                )
                + "; update diff: largest norm-relative difference between Keras's and the scratch step's first "
                "update w1 - w0 from the same weights"
            ),
            (
                "third table: the scratch step's parts, each a separate callable on a second model's caches, timed "
                "in alternating blocks with the step (ms, share of the step): forward loop = LSTM.forward (the "
                "input product X @ W for all steps, then per step h @ U, the gates, c and h); backward loop = "
                "LSTM.backward with weight_grads made a no-op (per step the gate gradients and dz @ U.T); "
                "weight-grad products = LSTM.weight_grads (dW = X_m.T dZ_m, dU = Hprev_m.T dZ_m, db; no dX, the "
                "step passes input_grad=False); rest = step minus those three (Dense forward and backward, "
                "softmax and loss, SGD update, the model's checks, Python). recurrent GEMMs: T x (h @ U) + T x "
                "(dz @ U.T) alone on the step's shapes, the matrix-product part of the two loops (already in them)"
            ),
            load_note(budget),
            *notes,
        ],
    )
