"""Section 2: the scratch gradient step against its arithmetic bound, matmul FLOPs / GEMM throughput (TensorFlow not
loaded)."""

from __future__ import annotations

from benchmarks.config import ARCH, BATCHES, DTYPES
from benchmarks.report import Section, load_cell, progress
from benchmarks.steps import (
    GEMM_FLOPS,
    GEMM_SIZE,
    dense_shapes,
    first_layer_dx_computed,
    gemm_call,
    matmuls_only,
    scratch_setup,
    scratch_step,
    step_flops,
)
from benchmarks.timing import Budget, measure_blocks

TITLE = "2. Scratch gradient step vs its arithmetic bound (TensorFlow not loaded)"
HEAD = [
    "dtype",
    "batch",
    "MFLOP/step",
    "1st-layer dX",
    "GEMM GFLOP/s",
    "bound ms",
    "measured ms",
    "of bound",
    "matmuls alone ms",
    "non-matmul share",
    "step GFLOP/s",
    "other load",
]


def run(budget: Budget, rounds: int) -> tuple[Section, dict[tuple[str, int], float]]:
    """The scratch gradient step against FLOPs / GEMM throughput, and its matmuls alone; the GEMM, the step and
    its matmuls are timed in alternating blocks, so the bound uses the throughput of the same minutes.

    Also returns the step's median ms per (dtype, batch): section 5 uses it as this process's time before
    TensorFlow loaded."""
    rows, first_dx, step_ms = [], True, {}
    for dtype in DTYPES:
        gemm = gemm_call(dtype)
        for n in BATCHES:
            progress(f"2: bound {dtype} batch {n}")
            model, x, y = scratch_setup(ARCH, dtype, n)
            first_dx = first_layer_dx_computed(model, x, y)
            shapes = dense_shapes(model)
            flops = step_flops(shapes, n, first_dx)
            g, step, mm = measure_blocks(
                [gemm, scratch_step(model, x, y), matmuls_only(shapes, n, dtype, first_dx)], budget, rounds
            )
            gflops = GEMM_FLOPS / g.median / 1e9
            bound = flops / (gflops * 1e9)
            step_ms[dtype, n] = step.ms
            rows.append(
                [
                    dtype,
                    n,
                    f"{flops / 1e6:.1f}",
                    f"computed: {1 - step_flops(shapes, n, False) / flops:.0%} of FLOPs" if first_dx else "skipped",
                    f"{gflops:.0f}",
                    f"{bound * 1e3:.3f}",
                    f"{step.ms:.3f}",
                    f"{bound / step.median:.0%}",
                    f"{mm.ms:.3f}",
                    f"{1 - mm.median / step.median:.0%}",
                    f"{flops / step.median / 1e9:.0f}",
                    load_cell(step.other),
                ]
            )
    dx_note = (
        (
            "the scratch step (loss_and_gradients) computes the first layer's dX, dL/dX of the input, which nothing "
            "needs: 2*N*784*256 FLOPs, counted above. Keras's step does not compute it (the tape is asked for weight "
            "gradients only)"
        )
        if first_dx
        else (
            "the scratch step (loss_and_gradients) skips the first layer's dX (dL/dX of the input), as Keras's step "
            "does; it is not counted"
        )
    ) + " (observed by wrapping the first layer's backward_from_z for one call)"
    notes = [
        (
            "FLOPs: per Dense layer, forward X@W 2NDM, backward dW = X.T@dZ 2NDM and dX = dZ@W.T 2NDM; element-wise "
            "work (bias, ReLU, softmax, loss, bias gradients) not counted"
        ),
        dx_note,
        (
            f"GEMM: a {GEMM_SIZE}x{GEMM_SIZE} by {GEMM_SIZE}x{GEMM_SIZE} np.matmul in the dtype, timed in blocks "
            "alternating with the step; bound = FLOPs / GEMM throughput; 'of bound' = bound / measured; 'matmuls "
            "alone' = the step's matmuls (same shapes and transposes) without its element-wise work; non-matmul "
            "share = 1 - matmuls alone / measured"
        ),
    ]
    return Section(TITLE, [(HEAD, rows)], notes), step_ms
