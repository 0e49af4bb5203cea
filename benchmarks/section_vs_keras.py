"""Section 1: the scratch gradient and train steps against the Keras twin's tf.function steps, in this process, with
the same weights (imports TensorFlow)."""

from __future__ import annotations

from typing import Any

from benchmarks.config import ARCH, BATCHES, DTYPES, TARGET_RATIO
from benchmarks.report import Section, load_cell, load_note, progress
from benchmarks.steps import (
    GEMM_FLOPS,
    agreement,
    dense_shapes,
    gemm_call,
    keras_steps,
    scratch_setup,
    scratch_step,
    scratch_train_step,
    step_flops,
)
from benchmarks.timing import Budget, Timing, measure, measure_blocks

TITLE = f"1. Scratch vs Keras tf.function step, {ARCH}, same process, same weights"
HEAD = [
    "step",
    "dtype",
    "batch",
    "scratch ms",
    "Keras ms",
    "scratch/Keras",
    f"<= {TARGET_RATIO}x?",
    "floor",
    "IQR/med",
    "grad diff",
    "other load",
]


def run(budget: Budget, rounds: int) -> Section:
    """Gradient and train step, scratch vs Keras, in this process, timed in alternating blocks; plus the floor: the
    ratio a NumPy step doing only Keras's matmuls at full GEMM throughput would reach."""
    rows, notes = [], []
    for dtype in DTYPES:
        gemm = measure(gemm_call(dtype), budget)
        gflops = GEMM_FLOPS / gemm.median / 1e9
        notes.append(
            f"GEMM throughput used for the {dtype} floor: {gflops:.0f} GFLOP/s (other load {load_cell(gemm.other)})"
        )
        for n in BATCHES:
            progress(f"1: {dtype} batch {n}")
            model, x, y = scratch_setup(ARCH, dtype, n)
            keras = keras_steps(model, x, y)
            err = agreement(model, x, y, keras["first"])
            limit = 1e-5 if dtype == "float32" else 1e-12
            if not err <= limit:
                notes.append(f"WARNING {dtype} batch {n}: gradients differ by {err:.1e} (> {limit:g})")
            ideal = step_flops(dense_shapes(model), n, first_dx=False) / (gflops * 1e9)
            ts, tk = measure_blocks([scratch_step(model, x, y), keras["grad_step"]], budget, rounds)
            rows.append(_ratio_row("gradient", dtype, n, ts, tk, err, ideal, check=n in (128, 1024)))
            ts, tk = measure_blocks([scratch_train_step(model, x, y), keras["train_step"]], budget, rounds)
            rows.append(_ratio_row("train (+SGD)", dtype, n, ts, tk, err, ideal, check=False))
    return Section(
        TITLE,
        [(HEAD, rows)],
        [
            f"target: scratch/Keras <= {TARGET_RATIO}x for the gradient step at batch 128 and 1024",
            (
                "floor: (matmul FLOPs Keras does, i.e. without the first layer's dX) / (NumPy's 1024x1024 GEMM "
                "throughput) / Keras ms, the ratio an ideal NumPy step would reach; a target below the floor is out "
                "of reach with this BLAS, whatever the Python code does"
            ),
            (
                f"median per call; the two sides timed in {rounds} alternating blocks each, every block after its "
                "own warm-up; IQR/med: the larger inter-quartile range / median of the two; grad diff: max "
                "norm-relative gradient difference (both sides compute the same thing)"
            ),
            load_note(budget),
            (
                "Keras: GradientTape over keras.losses.CategoricalCrossentropy(dtype) in a tf.function; its train "
                "step adds SGD.apply_gradients in the same tf.function; the scratch train step adds w -= lr*g in "
                "place; Keras results stay tensors (no .numpy())"
            ),
            *notes,
        ],
    )


def _ratio_row(
    kind: str, dtype: str, n: int, ts: Timing, tk: Timing, err: float, ideal: float, check: bool
) -> list[Any]:
    ratio = ts.median / tk.median
    verdict = ("yes" if ratio <= TARGET_RATIO else "no") if check else ""
    return [
        kind,
        dtype,
        n,
        f"{ts.ms:.3f}",
        f"{tk.ms:.3f}",
        f"{ratio:.2f}x",
        verdict,
        f"{ideal / tk.median:.2f}x",
        f"{max(ts.spread, tk.spread):.0%}",
        f"{err:.0e}",
        load_cell(max(ts.other, tk.other)),
    ]
