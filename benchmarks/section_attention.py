"""Section 9: the attention training step (forward + backward + SGD update) of a one-block self-attention classifier,
T = 64 steps of D = 64 features, 4 heads, batch 32. The scratch step against Keras's fastest configuration of the same
functional model (section 6's settings and child processes, `python -m benchmarks --worker "attention: ..."`, which
runs `worker`), and where the scratch step's time goes: the attention layer's products, softmax and reshapes, forward
and backward, each timed alone on arrays of the step's shapes (this process, TensorFlow not loaded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import DTYPES, LOSS, LR
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
    scratch_conv_step,
    settings_worker,
    vs_keras_cells,
)
from benchmarks.section_lstm import QUICK_SETTINGS
from benchmarks.steps import make_batch
from benchmarks.timing import Budget, Timing, measure_blocks
from from_scratch import Add, Dense, Flatten, Input, LayerNormalization, Model, MultiHeadAttention
from from_scratch.attention import attention_softmax, attention_softmax_backward, merge_heads, split_heads

STEPS = 64
FEATURES = 64
HEADS = 4
KEY_DIM = 16
CLASSES = 10
BATCH = 32
NAME = f"T={STEPS} D={FEATURES} heads={HEADS}"

TITLE = (
    f"9. Attention training step (forward + backward + SGD), T={STEPS}, D={FEATURES}, {HEADS} heads, batch {BATCH}: "
    "scratch vs Keras's fastest"
)

#: Worker names of this section start with this (section 6's with "conv: ", 7's "lstm: ", 8's "graph: ").
WORKER_PREFIX = "attention: "

#: The first-update check of the two sides (norm-relative over the whole update, float32 and float64), as section 6's:
#: an update computed wrongly differs at order one; rounding alone stays far below. Over the whole update, not array
#: by array: the key bias's exact gradient is 0 (a row's softmax is unchanged by a constant added to all its scores),
#: so each side's update of it is rounding alone and the two differ by about 100% of their own size.
UPDATE_DIFF_LIMITS = (1e-4, 1e-10)

HEAD = [
    "network",
    *HEAD_VS_KERAS,
    "GEMM MFLOP/step",
    "other load",
]

#: The scratch step's parts: (key, column heading), forward then backward; "rest" and the GEMMs-alone column follow.
PARTS = (
    ("qkv", "fwd Q K V projections"),
    ("scores", "fwd scores Q K^T"),
    ("softmax", "fwd softmax"),
    ("context", "fwd P V"),
    ("output", "fwd merge + output proj."),
    ("output back", "bwd output proj. + split"),
    ("dv dp", "bwd dV, dP products"),
    ("softmax back", "bwd softmax VJP"),
    ("dq dk", "bwd dQ, dK products"),
    ("qkv back", "bwd Q K V projections (dW, db)"),
)
HEAD_PARTS = [
    "network",
    "dtype",
    "scratch step ms",
    "attention fwd",
    "attention bwd",
    *(heading for _, heading in PARTS),
    "rest of step",
    "GEMMs alone",
    "input dX products (not in step)",
    "IQR/med",
    "other load",
]


# ----- the workload ----------------------------------------------------------------------------------------------
def attention_model(dtype: str) -> Model:
    """The scratch network (seed 0), compiled with plain SGD at lr LR: x (T, D) -> MultiHeadAttention(HEADS,
    KEY_DIM)(x, x) = a -> Add([x, a]) -> LayerNormalization -> Flatten -> Dense(CLASSES, softmax)."""
    x = Input((STEPS, FEATURES))
    a = MultiHeadAttention(HEADS, KEY_DIM)(x, x)
    h = LayerNormalization()(Add()([x, a]))
    model = Model(x, Dense(CLASSES, activation="softmax")(Flatten()(h)), dtype=dtype, seed=0)
    model.compile("sgd", LOSS)
    return model


def attention_setup(name: str, dtype: str, n: int) -> tuple[Model, np.ndarray, np.ndarray]:
    """The compiled scratch network and a batch of n sequences for it (the child processes' setup; `name` is NAME)."""
    model = attention_model(dtype)
    x, y = make_batch(n, STEPS * FEATURES, CLASSES, dtype)
    return model, x.reshape(n, STEPS, FEATURES), y


def gemm_flops(n: int) -> int:
    """Matrix-product FLOPs of one train step (2 per multiply-add): the attention layer's forward (Q, K, V and the
    output projection, 4 x 2 n T D D; Q K^T and P V, 2 x 2 n T T D), its backward without dL/dX of the input (dWo,
    dC; dV, dP; dQ, dK; dWq, dWk, dWv: 9 products of the same sizes), and the Dense head's X W and X^T dZ."""
    projection, attention = 2 * n * STEPS * FEATURES * FEATURES, 2 * n * STEPS * STEPS * HEADS * KEY_DIM
    forward = 4 * projection + 2 * attention
    backward = 5 * projection + 4 * attention
    head = 2 * 2 * n * STEPS * FEATURES * CLASSES
    return forward + backward + head


# ----- this process: where the time goes -------------------------------------------------------------------------
def _mha(model: Model) -> MultiHeadAttention:
    return next(layer for layer in model.layers if isinstance(layer, MultiHeadAttention))


def _step_parts(dtype: str, n: int) -> dict[str, Callable[[], Any]]:
    """The attention layer's work as separate callables, on a second model's arrays after one train step (the
    step's shapes and layouts: Q, K, V are split-heads views of the projections' (B, T, N*H) products): the whole
    forward and backward of the layer as the step calls them, each piece of them (PARTS), every matrix product of
    the layer alone ("gemms"), and the products of dL/dX of the input, which a train step skips ("input dx")."""
    probe, x, y = attention_setup(NAME, dtype, n)
    probe.train_step(x, y)
    mha = _mha(probe)
    rng = np.random.default_rng(3)
    dy = rng.standard_normal(mha.Y.shape).astype(dtype)
    heads, width = mha.num_heads, mha.num_heads * mha.key_dim
    pairs = ((mha.Wq, mha.bq), (mha.Wk, mha.bk), (mha.Wv, mha.bv))
    w_qkv = [(w.reshape(w.shape[0], -1), b.reshape(-1)) for w, b in pairs]
    wo, bo = mha.Wo.reshape(width, -1), mha.bo.reshape(-1)
    rows_x = x.reshape(-1, x.shape[-1])
    q, k, v, p, c, scale = mha.Q, mha.K, mha.V, mha.P, mha.C, mha.scale
    kt = k.transpose(0, 1, 3, 2)
    s = mha.S
    dc = split_heads((dy.reshape(-1, dy.shape[-1]) @ wo.T).reshape(n, x.shape[1], -1), heads)
    dp = dc @ v.transpose(0, 1, 3, 2)
    ds = attention_softmax_backward(p, dp, None)
    d_heads = [ds @ k, ds.transpose(0, 1, 3, 2) @ q, p.transpose(0, 1, 3, 2) @ dc]
    d_rows = [merge_heads(d).reshape(-1, width) for d in d_heads]
    merged = merge_heads(c).reshape(-1, width)
    rows_dy = dy.reshape(-1, dy.shape[-1])

    def forward() -> None:
        mha.forward([x, x], training=True)

    def backward() -> None:
        if mha.input_grad_optional:  # as the step calls it: the input needs no gradient
            mha.backward(dy, input_grad=False)
        else:
            mha.backward(dy)

    def qkv() -> None:
        for w, b in w_qkv:
            split_heads((rows_x @ w + b).reshape(n, x.shape[1], -1), heads)

    def scores() -> None:
        (q @ kt) * scale

    def softmax() -> None:
        attention_softmax(s, None, True)

    def context() -> None:
        p @ v

    def output() -> None:
        merge_heads(c).reshape(-1, width) @ wo + bo

    def output_back() -> None:
        merged.T @ rows_dy
        rows_dy.sum(axis=0)
        split_heads((rows_dy @ wo.T).reshape(n, x.shape[1], -1), heads)

    def dv_dp() -> None:
        p.transpose(0, 1, 3, 2) @ dc
        dc @ v.transpose(0, 1, 3, 2)

    def softmax_back() -> None:
        attention_softmax_backward(p, dp, None)

    def dq_dk() -> None:
        d = ds * scale
        d @ k
        d.transpose(0, 1, 3, 2) @ q

    def qkv_back() -> None:
        for d in d_heads:
            rows = merge_heads(d).reshape(-1, width)
            rows_x.T @ rows
            rows.sum(axis=0)

    def gemms() -> None:
        for w, _ in w_qkv:
            rows_x @ w
        q @ kt
        p @ v
        merged @ wo
        merged.T @ rows_dy
        rows_dy @ wo.T
        p.transpose(0, 1, 3, 2) @ dc
        dc @ v.transpose(0, 1, 3, 2)
        ds @ k
        ds.transpose(0, 1, 3, 2) @ q
        for rows in d_rows:
            rows_x.T @ rows

    def input_dx() -> None:
        for (w, _), rows in zip(w_qkv, d_rows):
            rows @ w.T

    fns = {"attention fwd": forward, "attention bwd": backward}
    fns.update(zip((key for key, _ in PARTS), (qkv, scores, softmax, context, output)))
    fns.update(zip((key for key, _ in PARTS[5:]), (output_back, dv_dp, softmax_back, dq_dk, qkv_back)))
    fns.update({"gemms": gemms, "input dx": input_dx})
    return fns


def _in_process(budget: Budget, rounds: int) -> dict[str, dict[str, Timing]]:
    """Per dtype: the scratch train step and its parts, timed in alternating blocks."""
    results = {}
    for dtype in DTYPES:
        progress(f"9: scratch step and parts, {NAME} {dtype}")
        model, x, y = attention_setup(NAME, dtype, BATCH)
        parts = _step_parts(dtype, BATCH)
        timings = measure_blocks([scratch_conv_step(model, x, y), *parts.values()], budget, rounds)
        results[dtype] = {"step": timings[0], **dict(zip(parts, timings[1:]))}
    return results


def _share(t: Timing, step: Timing) -> str:
    return f"{t.ms:.3f} ({t.median / step.median:.0%})"


def _parts_row(dtype: str, r: dict[str, Timing]) -> list[Any]:
    step = r["step"]
    rest = step.median - r["attention fwd"].median - r["attention bwd"].median
    return [
        NAME,
        dtype,
        f"{step.ms:.3f}",
        _share(r["attention fwd"], step),
        _share(r["attention bwd"], step),
        *(_share(r[key], step) for key, _ in PARTS),
        f"{rest * 1e3:.3f} ({rest / step.median:.0%})",
        _share(r["gemms"], step),
        f"{r['input dx'].ms:.3f}",
        _spread([step]),
        load_cell(max(t.other for t in r.values())),
    ]


def _main_row(dtype: str, best: Best | None, step: Timing) -> list[Any]:
    keras_cells, other = vs_keras_cells(best, step.other)
    return [NAME, dtype, BATCH, *keras_cells, f"{step.ms:.3f}", f"{gemm_flops(BATCH) / 1e6:.0f}", load_cell(other)]


# ----- the child side --------------------------------------------------------------------------------------------
def worker(name: str, budget: Budget) -> dict[str, Any]:
    """Child-process side of section 9: section 6's worker on the attention network, the scratch step against the
    Keras functional twin that keras_impl.build_model makes from the model's description (`Model.architecture`)."""
    return settings_worker(name, budget, WORKER_PREFIX, "9", [NAME], BATCH, str, attention_setup, whole_update=True)


# ----- the parent side -------------------------------------------------------------------------------------------
def run(budget: Budget, rounds: int, quick: bool) -> Section:
    """The scratch step and its parts in this process (TensorFlow not loaded), then the Keras settings in child
    processes; the target from the same run."""
    parts = _in_process(budget, rounds)
    settings = QUICK_SETTINGS if quick else SETTINGS
    children, notes = _children(budget, quick, WORKER_PREFIX, "9", settings)
    keras_rows, bests = collect_keras(children, [NAME], str, notes, UPDATE_DIFF_LIMITS)
    main_rows = [_main_row(dtype, bests[NAME, dtype], parts[dtype]["step"]) for dtype in DTYPES]
    return Section(
        TITLE,
        [(HEAD, main_rows), (HEAD_KERAS, keras_rows), (HEAD_PARTS, [_parts_row(d, parts[d]) for d in DTYPES])],
        [
            (
                f"network: x ({STEPS}, {FEATURES}) -> MultiHeadAttention({HEADS}, key_dim {KEY_DIM})(x, x) (self-"
                "attention, no mask, dropout 0: Keras's fused path) = a -> Add([x, a]) -> LayerNormalization -> "
                f"Flatten -> Dense({CLASSES}, softmax), categorical cross-entropy, batch {BATCH}. The step is "
                f"forward + backward + plain SGD (lr {LR}): scratch `Model.train_step` after compile('sgd', ...); "
                "Keras a "
                "GradientTape over CategoricalCrossentropy(dtype) + SGD.apply_gradients in one tf.function, with and "
                "without jit_compile=True, on the keras_impl.build_model twin (keras.layers.MultiHeadAttention) with "
                "the same weights"
            ),
            (
                f"target: scratch/Keras <= {TARGET_VS_KERAS}x against the fastest Keras configuration measured; "
                "scratch/Keras uses the scratch step timed in the same child process as that Keras configuration, "
                "in alternating blocks. 'Keras fastest' is the smallest of the Keras medians over all settings and "
                "modes, so its noise favours Keras. GEMM MFLOP/step: the step's matrix products (the attention "
                "layer's 6 forward and 9 backward products, no dL/dX of the input; the Dense head's 2)"
            ),
            (
                "second table: each setting in a fresh child process, as in section 6"
                + (
                    f" (--quick: only {' and '.join(repr(s.name) for s in settings)})"
                    if quick
                    else f" ({len(settings)} settings)"
                )
                + "; update diff: norm-relative difference between Keras's and the scratch step's whole first update "
                "w1 - w0 (all 12 arrays in one vector) from the same weights, warned about above "
                f"{UPDATE_DIFF_LIMITS[0]:g} in float32 and {UPDATE_DIFF_LIMITS[1]:g} in float64 (not array by array: "
                "the key bias's exact gradient is 0, softmax being unchanged by a constant added to a row's scores, "
                "so both sides' update of it is rounding alone)"
            ),
            (
                "third table: the scratch step's parts, each a separate callable on a second model's arrays after "
                "one train step, timed in alternating blocks with the step (ms, share of the step). attention fwd / "
                "bwd: the layer's forward and backward as the step calls them; the pieces after them are inside "
                "those two: Q K V projections (X W + b, heads split: three (B T, D) @ (D, N H) products); scores "
                "(Q K^T) * scale (B N batched (T, H) @ (H, T)); the row softmax; P V; the heads merged and the "
                "output projection; backward: dWo, dbo and dC (split per head), dV = P^T dC and dP = dC V^T, the "
                "softmax's vector-Jacobian product, dQ = (dS scale) K and dK = (dS scale)^T Q, and the projections' "
                "dW, db (the heads merged back to rows). rest of step = step - attention fwd - attention bwd: "
                "Add, LayerNormalization, Flatten, Dense, softmax and loss, the SGD update of 12 arrays, the "
                "model's checks and records. GEMMs alone: every matrix product of the step's attention layer, back "
                "to back. input dX products: the three dX = dQ Wq^T ... products a layer computes when its input "
                "needs a gradient (a train step on this network does not ask for them)"
            ),
            load_note(budget),
            *notes,
        ],
    )
