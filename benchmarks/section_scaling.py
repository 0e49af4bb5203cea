"""Section 4: how the scratch gradient step's time grows with width and batch, next to its FLOP count (TensorFlow
not loaded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.config import SCALE_BATCHES, SCALE_WIDTHS
from benchmarks.report import Section, load_cell, progress
from benchmarks.steps import dense_shapes, first_layer_dx_computed, scratch_setup, scratch_step, step_flops
from benchmarks.timing import Budget, measure_blocks

TITLE = "4. Scaling of the scratch gradient step, float32 (TensorFlow not loaded)"
HEAD = ["arch", "batch", "MFLOP/step", "ms", "ps/FLOP", "vs largest", "GFLOP/s", "other load"]


def run(budget: Budget, rounds: int, dtype: str = "float32") -> Section:
    """The scratch gradient step's time as width and batch grow, next to its FLOP count; each sweep's
    configurations are timed in alternating blocks."""

    def sweep(configs: Sequence[tuple[str, int]]) -> list[list[Any]]:
        progress(f"4: {', '.join(f'{a} batch {n}' for a, n in configs)}")
        steps, flops = [], []
        for arch, n in configs:
            model, x, y = scratch_setup(arch, dtype, n)
            flops.append(step_flops(dense_shapes(model), n, first_layer_dx_computed(model, x, y)))
            steps.append(scratch_step(model, x, y))
        timings = measure_blocks(steps, budget, rounds)
        largest = timings[-1].median / flops[-1]
        return [
            [
                arch,
                n,
                f"{f / 1e6:.1f}",
                f"{t.ms:.3f}",
                f"{t.median / f * 1e12:.2f}",
                f"{t.median / f / largest:.2f}",
                f"{f / t.median / 1e9:.0f}",
                load_cell(t.other),
            ]
            for (arch, n), f, t in zip(configs, flops, timings)
        ]

    widths = sweep([(f"784-{w}-{w}-10", 128) for w in SCALE_WIDTHS])
    batches = sweep([("784-256-256-10", n) for n in SCALE_BATCHES])
    return Section(
        TITLE,
        [(HEAD, widths), (HEAD, batches)],
        [
            (
                "each sweep's configurations timed in alternating blocks; 'vs largest' = ps/FLOP relative to the "
                "largest configuration: 1.00 = time grows exactly as the arithmetic, > 1 = fixed or element-wise "
                "costs (and smaller, less efficient matmuls) weigh more at that size"
            )
        ],
    )
