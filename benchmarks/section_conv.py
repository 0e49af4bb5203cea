"""Section 6: the convolution training step (forward + backward + SGD update) of a small CNN at batch 64. The scratch
step against Keras's fastest configurations of the same step (tf.function and jit_compile, oneDNN and op determinism
on and off; each setting in a fresh child process, `python -m benchmarks --worker "conv: ..."`, which runs `worker`),
against its GEMM bound (the step's matrix products alone, NumPy, same shapes), and where its time goes (this process,
TensorFlow not loaded)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.children import run_worker
from benchmarks.config import BASE_ENV, DTYPES, LOSS, LR
from benchmarks.report import Section, load_cell, load_note, progress
from benchmarks.steps import make_batch
from benchmarks.timing import FULL, GUARD, Budget, Timing, measure_blocks
from from_scratch import AveragePooling2D, Conv2D, Dense, MaxPooling2D, Sequential
from from_scratch.arch import Architecture

#: The two small networks of the issue (1 channel, 8 filters: the products are small, the step's other work is most of
#: it), and one where the convolution's products are the bulk of the step (32 channels in, 64 filters: the GEMM
#: bound's target is read on it).
CONV_ARCHS = (
    "28x28x1-conv8k3-pool2-flatten-10",
    "8x8x1-conv8k3-pool2-flatten-10",
    "12x12x32-conv64k3-pool2-flatten-10",
)
CONV_BATCH = 64
#: The issue's target: scratch step <= 1.0x Keras's fastest, and >= 50% of the GEMM bound, at batch 64.
TARGET_VS_KERAS = 1.0
TARGET_OF_BOUND = 0.5

TITLE = f"6. Conv training step (forward + backward + SGD), batch {CONV_BATCH}: scratch vs Keras's fastest, GEMM bound"

#: Worker names of this section start with this (section 5's are its variant names).
WORKER_PREFIX = "conv: "


@dataclass(frozen=True)
class Setting:
    """One child-process setting for the Keras side: environment (oneDNN) and op determinism."""

    name: str
    env: dict[str, str]
    determinism: bool


SETTINGS = (
    Setting("oneDNN off, op determinism on (harness)", {"TF_ENABLE_ONEDNN_OPTS": "0"}, True),
    Setting("oneDNN off, op determinism off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, False),
    Setting("oneDNN on, op determinism on", {"TF_ENABLE_ONEDNN_OPTS": "1"}, True),
    Setting("oneDNN on, op determinism off", {"TF_ENABLE_ONEDNN_OPTS": "1"}, False),
)
KERAS_MODES = ("tf.function", "tf.function jit_compile")

#: The columns of the main table of sections 6, 7 and 9 after its first (the network): the scratch step against
#: Keras's fastest configuration; each section adds its own columns after these.
HEAD_VS_KERAS = [
    "dtype",
    "batch",
    "scratch ms (same child)",
    "Keras fastest ms",
    "Keras fastest setting",
    "scratch/Keras",
    f"<= {TARGET_VS_KERAS}x?",
    "scratch ms (TF not loaded)",
]
HEAD = [
    "input",
    *HEAD_VS_KERAS,
    "GEMM bound ms",
    "bound/scratch",
    f">= {TARGET_OF_BOUND:.0%}?",
    "bound/Keras fastest",
    "other load",
]
HEAD_KERAS = [
    "setting (a fresh child each)",
    "input",
    "dtype",
    "scratch ms",
    "Keras tf.function ms",
    "Keras jit_compile ms",
    "scratch / faster Keras",
    "update diff (tf.function / jit)",
    "IQR/med",
    "other load",
]
HEAD_PARTS = [
    "input",
    "dtype",
    "scratch step ms",
    "im2col",
    "conv GEMMs",
    "dense GEMMs",
    "pooling fwd+bwd",
    "rest",
    "col2im",
    "conv dX GEMM",
    "IQR/med",
    "other load",
]


# ----- the workload ----------------------------------------------------------------------------------------------
def conv_setup(arch: str, dtype: str, n: int) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """A compiled scratch CNN (seed 0, plain SGD at its default learning rate, LR) and a batch of n images for it."""
    model = Sequential.from_architecture(arch, dtype=dtype, seed=0)
    model.compile("sgd", LOSS)
    x, y = make_batch(n, model.input_dim, model.output_dim, dtype)
    return model, x.reshape(n, *model.input_shape), y


def scratch_conv_step(model: Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    """The scratch train step: forward, backward and the compiled optimizer's update (Sequential.train_step)."""
    return lambda: model.train_step(x, y)


def _input_name(arch: str) -> str:
    return arch.split("-", 1)[0]


def _rounds(budget: Budget) -> int:
    """Alternating blocks per measurement: 3 in the full run, 2 with --quick (as the other sections)."""
    return 3 if budget.seconds >= FULL.seconds else 2


def _spread(timings: Sequence[Timing]) -> str:
    return f"{max(t.spread for t in timings):.0%}"


# ----- this process: the bound and the breakdown -----------------------------------------------------------------
def _calls(obj: Any, name: str, run: Callable[[], Any]) -> bool:
    """Whether run() calls obj.name, observed by shadowing the method with an instance attribute for one call."""
    original, seen = getattr(obj, name), []

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(True)
        return original(*args, **kwargs)

    setattr(obj, name, spy)
    try:
        run()
    finally:
        delattr(obj, name)
    return bool(seen)


def _step_parts(arch: str, dtype: str, n: int) -> tuple[dict[str, Callable[[], Any]], bool, list[str]]:
    """The scratch step's parts as separate callables, on arrays of the step's own shapes and layouts (taken from a
    second model after one train step): im2col, the conv GEMMs the step does (cols @ K, cols.T @ dZ), the dense
    GEMMs (X @ W, X.T @ dZ, dZ @ W.T), pooling forward + backward, col2im and the conv's dX GEMM (dZ @ K.T); and
    "bound": every GEMM the step does, back to back. Also whether the step calls col2im (observed) and the GEMM
    shapes, for the notes."""
    probe, x, y = conv_setup(arch, dtype, n)
    convs = [layer for layer in probe.layers if isinstance(layer, Conv2D)]
    dx_done = any([_calls(conv, "col2im", lambda: probe.train_step(x, y)) for conv in convs])
    rng = np.random.default_rng(3)
    conv_ops, dense_ops, pool_ops, shapes = [], [], [], []
    for i, layer in enumerate(probe.layers):
        if isinstance(layer, Conv2D):
            cols, k = layer.cols, layer.K.reshape(-1, layer.filters)
            dz = layer.dZ.reshape(-1, layer.filters)
            d_cols = rng.standard_normal(cols.shape).astype(dtype)
            conv_ops.append((layer, layer.X, cols, k, dz, d_cols))
            shapes.append(f"conv {cols.shape[0]}x{cols.shape[1]} @ {k.shape[0]}x{k.shape[1]}")
        elif isinstance(layer, Dense):
            dz = rng.standard_normal(layer.Z.shape).astype(dtype)
            dense_ops.append((layer.X, layer.W, dz, i > 0))
            shapes.append(f"dense {layer.X.shape[0]}x{layer.X.shape[1]} @ {layer.W.shape[0]}x{layer.W.shape[1]}")
        elif isinstance(layer, (MaxPooling2D, AveragePooling2D)):
            below = probe.layers[i - 1].A
            d_a = rng.standard_normal(layer.A.shape).astype(dtype)
            pool_ops.append((layer, below, d_a))

    def im2col() -> None:
        for conv, xin, *_ in conv_ops:
            conv.im2col(xin)

    def conv_gemms() -> None:
        for _, _, cols, k, dz, _ in conv_ops:
            cols @ k
            cols.T @ dz

    def dense_gemms() -> None:
        for xin, w, dz, dx in dense_ops:
            xin @ w
            xin.T @ dz
            if dx:
                dz @ w.T

    def conv_dx_gemm() -> None:
        for _, _, _, k, dz, _ in conv_ops:
            dz @ k.T

    def col2im() -> None:
        for conv, _, _, _, _, d_cols in conv_ops:
            conv.col2im(d_cols, n)

    def pooling() -> None:
        for pool, below, d_a in pool_ops:
            pool.forward(below, training=True)
            pool.backward(d_a)

    def bound() -> None:
        conv_gemms()
        if dx_done:
            conv_dx_gemm()
        dense_gemms()

    parts = {
        "bound": bound,
        "im2col": im2col,
        "conv GEMMs": conv_gemms,
        "dense GEMMs": dense_gemms,
        "pooling": pooling,
        "col2im": col2im,
        "conv dX GEMM": conv_dx_gemm,
    }
    return parts, dx_done, shapes


def _in_process(budget: Budget, rounds: int) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """Per (arch, dtype): the scratch train step, its GEMM bound and its parts, timed in alternating blocks."""
    results, notes = {}, []
    for arch in CONV_ARCHS:
        for dtype in DTYPES:
            progress(f"6: scratch step, bound and parts, {_input_name(arch)} {dtype}")
            model, x, y = conv_setup(arch, dtype, CONV_BATCH)
            parts, dx_done, shapes = _step_parts(arch, dtype, CONV_BATCH)
            timings = measure_blocks([scratch_conv_step(model, x, y), *parts.values()], budget, rounds)
            results[arch, dtype] = {"step": timings[0], **dict(zip(parts, timings[1:])), "dx": dx_done}
            if dtype == DTYPES[0]:
                notes.append(f"GEMMs of one step, {_input_name(arch)}: " + "; ".join(shapes))
    return results, notes


def _part_cell(t: Timing, step: Timing, counted: bool = True) -> str:
    return f"{t.ms:.3f} ({t.median / step.median:.0%})" if counted else f"{t.ms:.3f} (not in step)"


def _parts_row(arch: str, dtype: str, r: dict[str, Any]) -> list[Any]:
    step, dx = r["step"], r["dx"]
    counted = ["im2col", "conv GEMMs", "dense GEMMs", "pooling"] + (["col2im", "conv dX GEMM"] if dx else [])
    rest = step.median - sum(r[key].median for key in counted)
    return [
        _input_name(arch),
        dtype,
        f"{step.ms:.3f}",
        _part_cell(r["im2col"], step),
        _part_cell(r["conv GEMMs"], step),
        _part_cell(r["dense GEMMs"], step),
        _part_cell(r["pooling"], step),
        f"{rest * 1e3:.3f} ({rest / step.median:.0%})",
        _part_cell(r["col2im"], step, dx),
        _part_cell(r["conv dX GEMM"], step, dx),
        _spread([step]),
        load_cell(step.other),
    ]


# ----- the child side --------------------------------------------------------------------------------------------
def keras_conv_steps(arch: Any, dtype: str, weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> Any:
    """The Keras twin of `arch` (its text, or a description; keras_impl.build_model, `weights` copied in) and its
    train step, a GradientTape over keras.losses.CategoricalCrossentropy(dtype) + SGD(LR).apply_gradients, as a
    tf.function and as a tf.function with jit_compile=True. Returns the Keras model and {mode: closure over constant
    input tensors}."""
    import keras_impl  # first: it pins TF_ENABLE_ONEDNN_OPTS (the child's environment decides) before TF loads

    # isort: split
    import keras
    import tensorflow as tf

    km = keras_impl.build_model(Architecture.parse(arch) if isinstance(arch, str) else arch, dtype)
    km.set_weights(list(weights))
    loss_obj = keras.losses.CategoricalCrossentropy(dtype=dtype)
    variables = km.trainable_variables
    optimizer = keras.optimizers.SGD(learning_rate=LR)
    optimizer.build(variables)
    xt, yt = tf.constant(x, dtype=dtype), tf.constant(y, dtype=dtype)

    def train_step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_obj(yb, km(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    fns = {
        "tf.function": tf.function(train_step),
        "tf.function jit_compile": tf.function(train_step, jit_compile=True),
    }
    return km, {mode: (lambda fn=fn: fn(xt, yt)) for mode, fn in fns.items()}


def _update_diff(delta: Sequence[np.ndarray], reference: Sequence[np.ndarray], whole: bool = False) -> float:
    """Largest norm-relative difference between two one-step weight updates (w1 - w0), layer by layer; with `whole`,
    the norm-relative difference of the whole update (every array in one vector), for a model with a parameter whose
    exact gradient is 0 (an attention layer's key bias: a row's softmax does not change when a constant is added to
    all its scores), where both sides' update of it is rounding alone."""
    if whole:
        a64 = np.concatenate([a.astype(np.float64).ravel() for a in delta])
        b64 = np.concatenate([b.astype(np.float64).ravel() for b in reference])
        return float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(a64), np.linalg.norm(b64), 1e-300))
    worst = 0.0
    for a, b in zip(delta, reference):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = max(np.linalg.norm(a64), np.linalg.norm(b64), 1e-300)
        worst = max(worst, float(np.linalg.norm(a64 - b64) / scale))
    return worst


def _child_row(
    arch: str,
    dtype: str,
    budget: Budget,
    batch: int = CONV_BATCH,
    setup: Callable[..., Any] = conv_setup,
    whole_update: bool = False,
) -> dict[str, Any]:
    """One (arch, dtype) in a child: the Keras steps checked against the scratch step (one update from the same
    weights), then the scratch step and the Keras steps timed in alternating blocks. Also section 7's (LSTM) and
    section 8's (graphs: `setup` builds the scratch model from the name `arch`, the Keras twin is built from the
    model's description; section 9's attention network compares the whole update, `whole_update`)."""
    model, x, y = setup(arch, dtype, batch)
    initial = [w.copy() for w in model.get_weights()]
    reference, _, _ = setup(arch, dtype, batch)
    reference.train_step(x, y)
    ref_delta = [w1 - w0 for w1, w0 in zip(reference.get_weights(), initial)]
    km, steps = keras_conv_steps(arch if setup is conv_setup else model.architecture, dtype, initial, x, y)
    row: dict[str, Any] = {"arch": arch, "dtype": dtype, "keras_ms": {}, "diff": {}, "failed": {}}
    timed: dict[str, Callable[[], Any]] = {}
    for mode, step in steps.items():
        km.set_weights(initial)
        try:
            step()  # traces (and compiles) the function
        except Exception as exc:  # noqa: BLE001 (a configuration TensorFlow refuses is a result, not a crash)
            row["failed"][mode] = " ".join(str(exc).split()).split(" [[")[0][:160]
            continue
        row["diff"][mode] = _update_diff(
            [w1 - w0 for w1, w0 in zip(km.get_weights(), initial)], ref_delta, whole_update
        )
        timed[mode] = step
    km.set_weights(initial)
    timings = measure_blocks([scratch_conv_step(model, x, y), *timed.values()], budget, _rounds(budget))
    row.update(
        scratch_ms=timings[0].ms,
        keras_ms={mode: t.ms for mode, t in zip(timed, timings[1:])},
        spread=max(t.spread for t in timings),
        other=timings[0].other,
    )
    return row


def worker(name: str, budget: Budget) -> dict[str, Any]:
    """Child-process side of section 6: keras_impl imported under the setting's environment, op determinism set,
    then every (arch, dtype) of `_child_row`. The result is printed as one JSON line."""
    return settings_worker(name, budget, WORKER_PREFIX, "6", CONV_ARCHS, CONV_BATCH, _input_name)


def settings_worker(
    name: str,
    budget: Budget,
    prefix: str,
    label: str,
    archs: Sequence[str],
    batch: int,
    name_of: Callable[[str], str],
    setup: Callable[..., Any] = conv_setup,
    whole_update: bool = False,
) -> dict[str, Any]:
    """A child of sections 6 to 9: the setting named `name` (after `prefix`), then `_child_row` for every arch
    of `archs` and dtype at `batch` (the scratch model from `setup`; `whole_update`: see `_update_diff`)."""
    setting = next(s for s in SETTINGS if prefix + s.name == name)
    import keras_impl  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS=0 unless the environment set it; enables determinism)

    # isort: split
    from tensorflow.python.framework import config as tf_config

    if not setting.determinism:
        tf_config.disable_op_determinism()
    rows = []
    for arch in archs:
        for dtype in DTYPES:
            progress(f"{label}: {setting.name}, {name_of(arch)} {dtype}")
            rows.append(_child_row(arch, dtype, budget, batch, setup, whole_update))
    return {
        "rows": rows,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)"),
        "determinism": bool(tf_config.is_op_determinism_enabled()),
        "waited": GUARD.waited,
        "disturbed": GUARD.disturbed,
    }


# ----- the parent side -------------------------------------------------------------------------------------------
def _children(
    budget: Budget,
    quick: bool,
    prefix: str = WORKER_PREFIX,
    label: str = "6",
    settings: Sequence[Setting] = SETTINGS,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each setting in a fresh child process (`--worker prefix + setting name`): {setting name: the worker's
    result}, and notes on failures."""
    results, notes = {}, []
    for setting in settings:
        progress(f"{label}: Keras, {setting.name} (child process)")
        patience = max(0.0, min(max(20.0, GUARD.patience / 4), GUARD.patience - GUARD.waited))
        result, failure = run_worker(prefix + setting.name, {**BASE_ENV, **setting.env}, quick, patience, 600)
        if result is None:
            notes.append(f"setting {setting.name!r} failed {failure}")
            continue
        expected = (setting.env["TF_ENABLE_ONEDNN_OPTS"], setting.determinism)
        if (result["onednn"], result["determinism"]) != expected:
            notes.append(f"WARNING {setting.name!r}: the child ran with {result['onednn']}, {result['determinism']}")
        results[setting.name] = result
    return results, notes


def run(budget: Budget, rounds: int, quick: bool) -> Section:
    """The scratch conv step's bound and parts in this process (TensorFlow not loaded), then the Keras settings in
    child processes; the two targets from the same run."""
    parts, shape_notes = _in_process(budget, rounds)
    children, notes = _children(budget, quick)
    keras_rows, bests = collect_keras(children, CONV_ARCHS, _input_name, notes)
    main_rows = [
        _main_row(arch, dtype, bests[arch, dtype], parts[arch, dtype]) for arch in CONV_ARCHS for dtype in DTYPES
    ]
    dx_note = (
        "the scratch step calls col2im (the conv layer's dX): counted in the step's parts and in the bound"
        if any(r["dx"] for r in parts.values())
        else (
            "the scratch step does not compute the conv layer's dX (it is the first layer: train_step passes "
            "input_grad=False), so neither col2im nor dZ @ K.T is in the step or in the bound; their times on the "
            "step's shapes are shown for information ('not in step'). Keras's step does not compute it either"
        )
    ) + " (observed by wrapping Conv2D.col2im for one train step)"
    return Section(
        TITLE,
        [(HEAD, main_rows), (HEAD_KERAS, keras_rows), (HEAD_PARTS, [_parts_row(a, d, parts[a, d]) for a, d in parts])],
        [
            (
                f"networks {' and '.join(CONV_ARCHS)} (ReLU conv, softmax output, categorical cross-entropy), "
                f"batch {CONV_BATCH}; the step is forward + backward + plain SGD (lr {LR}): scratch "
                "`Sequential.train_step` after `compile('sgd', 'categorical_crossentropy')`; Keras a GradientTape "
                "over CategoricalCrossentropy(dtype) + SGD.apply_gradients in one tf.function, with and without "
                "jit_compile=True, on the keras_impl.build_model twin with the same weights"
            ),
            (
                f"targets: scratch/Keras <= {TARGET_VS_KERAS}x against the fastest Keras configuration measured, "
                f"and bound/scratch >= {TARGET_OF_BOUND:.0%} where the products dominate ({CONV_ARCHS[-1]}: with 1 "
                "channel and 8 filters the products are a small part of either side's step). scratch/Keras uses "
                "the scratch step timed in the same child process as that Keras configuration, in alternating "
                "blocks; bound/scratch uses this "
                "process's scratch step (TensorFlow not loaded), timed in alternating blocks with the bound; "
                "bound/Keras fastest: the same bound against the fastest Keras step, for scale. 'Keras fastest' is "
                "the smallest of the Keras medians over all settings and modes, so its noise favours Keras"
            ),
            (
                "GEMM bound: every matrix product the scratch step does (conv forward cols @ K and dK = cols.T @ dZ, "
                "the Dense layer's X @ W, X.T @ dZ and dZ @ W.T), NumPy on arrays of the step's shapes and layouts, "
                "back to back with nothing else: what the step would cost if everything else were free"
            ),
            dx_note,
            (
                "second table: each setting in a fresh child process (TF_ENABLE_ONEDNN_OPTS must be set before "
                "TensorFlow loads; keras_impl enables op determinism, turned off here with TensorFlow's "
                "disable_op_determinism where the setting says so; 'failed': TensorFlow refused the configuration, "
                "message below). update diff: largest norm-relative difference between "
                "Keras's and the scratch step's first update w1 - w0 from the same weights; 'scratch / faster "
                "Keras' is against the faster of the two Keras modes in that child"
            ),
            (
                "third table: the scratch step's parts, each a separate callable on arrays of the step's shapes, "
                "timed in alternating blocks with the step (ms, share of the step); rest = step minus the parts "
                "in it (ReLU and its gradient, bias add and sum, softmax and loss, SGD update, the model's shape "
                "and gradient checks, Python); im2col = Conv2D.im2col (the windows gathered into the "
                "cols matrix: one block copy per kernel row, or for one channel one copy per offset into the "
                "transposed layout, a whole image row of windows at a time); pooling = MaxPooling2D.forward and "
                "backward (windows that tile the input: the running maximum on contiguous copies of the offsets' "
                "cells, dA put at each window's first maximum)"
            ),
            *shape_notes,
            load_note(budget),
            *notes,
        ],
    )


Best = tuple[float, str, dict[str, Any]]


def collect_keras(
    children: dict[str, dict[str, Any]],
    archs: Sequence[str],
    name_of: Callable[[str], str],
    notes: list[str],
    diff_limits: tuple[float, float] = (1e-4, 1e-10),
) -> tuple[list[list[Any]], dict[tuple[str, str], Best | None]]:
    """The children's results as the per-setting table's rows, and per (arch, dtype) the fastest Keras step over
    all settings and modes (ms, "mode, setting", that child's row) or None; update-diff warnings (beyond
    `diff_limits`, float32 and float64) and failures appended to `notes`."""
    keras_rows, bests, failures = [], {}, {}
    for arch in archs:
        for dtype in DTYPES:
            best: Best | None = None
            for name, result in children.items():
                row = next(r for r in result["rows"] if r["arch"] == arch and r["dtype"] == dtype)
                keras_rows.append(_keras_row(name, row, name_of))
                for mode, message in row["failed"].items():
                    failures.setdefault((mode, message), []).append(name)
                for mode, ms in row["keras_ms"].items():
                    if best is None or ms < best[0]:
                        best = (ms, f"{mode}, {name}", row)
                limit = diff_limits[0] if dtype == "float32" else diff_limits[1]
                for mode, err in row["diff"].items():
                    if not err <= limit:
                        notes.append(
                            f"WARNING {name}, {mode}, {name_of(arch)} {dtype}: the one-step update differs "
                            f"from the scratch step's by {err:.1e} (> {limit:g})"
                        )
            bests[arch, dtype] = best
    for (mode, message), where in failures.items():
        names = "; ".join(dict.fromkeys(where))
        notes.append(f"{mode} failed {len(where)} times (networks x dtypes) under the settings {names}: {message}")
    return keras_rows, bests


def vs_keras_cells(best: Best | None, other: float) -> tuple[list[str], float]:
    """The cells of HEAD_VS_KERAS from the scratch step in the same child to the verdict ("n/a" without a Keras
    result), and the larger of `other` and that child's other load (sections 6, 7 and 9)."""
    if best is None:
        return ["n/a"] * 5, other
    keras_ms, setting, row = best
    ratio = row["scratch_ms"] / keras_ms
    verdict = "yes" if ratio <= TARGET_VS_KERAS else "no"
    cells = [f"{row['scratch_ms']:.3f}", f"{keras_ms:.3f}", setting, f"{ratio:.2f}x", verdict]
    return cells, max(other, row["other"])


def _main_row(arch: str, dtype: str, best: Best | None, r: dict[str, Any]) -> list[Any]:
    step, bound = r["step"], r["bound"]
    of_bound = bound.median / step.median
    keras_cells, other = vs_keras_cells(best, step.other)
    return [
        _input_name(arch),
        dtype,
        CONV_BATCH,
        *keras_cells,
        f"{step.ms:.3f}",
        f"{bound.ms:.3f}",
        f"{of_bound:.0%}",
        "yes" if of_bound >= TARGET_OF_BOUND else "no",
        f"{bound.median * 1e3 / best[0]:.0%}" if best is not None else "n/a",
        load_cell(other),
    ]


def _keras_row(name: str, row: dict[str, Any], name_of: Callable[[str], str] = _input_name) -> list[Any]:
    def ms(mode: str) -> str:
        if mode in row["keras_ms"]:
            return f"{row['keras_ms'][mode]:.3f}"
        return "failed (see notes)"

    fastest = min(row["keras_ms"].values(), default=float("nan"))
    diffs = " / ".join(f"{row['diff'][m]:.0e}" if m in row["diff"] else "-" for m in KERAS_MODES)
    return [
        name,
        name_of(row["arch"]),
        row["dtype"],
        f"{row['scratch_ms']:.3f}",
        ms("tf.function"),
        ms("tf.function jit_compile"),
        f"{row['scratch_ms'] / fastest:.2f}x",
        diffs,
        f"{row['spread']:.0%}",
        load_cell(row["other"]),
    ]
