"""The trace the diagnosis reads: `Step`, one recorded quantity (Z, A, dL/dA, dL/dZ, a weight gradient, the loss) in
the order of computation, on both sides, with the harness's verdict on it; the names of the inference pass's row and
step; and how a backward step finds the one its gradient flows into (`_below`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Array = np.ndarray

#: The row and the trace step of the inference pass (compare/harness.py): forward(x, training=False) on both sides,
#: from the weights after the training pass (a BatchNormalization then normalises with the moving statistics that
#: pass moved). It runs after the training pass, so it is read apart from that pass's forward.
INFERENCE_ROW = "output (inference, after the step)"
INFERENCE_STEP = "output in inference mode (training=False, after the step)"


#: The traced quantities whose first axis is the batch (a row of them is a sample); a weight gradient's is not.
BATCH_FIRST = ("Z", "A", "dL/dA", "dL/dZ", "dL/dX (input)")


@dataclass
class Step:
    """One quantity in the order of computation, on both sides, with the harness's verdict on it."""

    phase: str  # "forward" | "backward"
    layer: int  # 1-based; 0 for the loss and the input gradient
    layer_name: str
    quantity: str  # "Z", "A", "dL/dA", "dL/dZ", "dL/dkernel", ...
    ours: Array | None = None
    theirs: Array | None = None
    error: float = 0.0
    passed: bool = True
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        if self.layer == 0:
            return self.quantity
        return f"layer {self.layer} ({self.layer_name}) {self.quantity}"

    def judged(self, ours: Array, theirs: Array, error: float, passed: bool, context: dict[str, Any]) -> Step:
        """This step with both sides' values and the verdict filled in."""
        return replace(
            self, ours=np.asarray(ours), theirs=np.asarray(theirs), error=error, passed=passed, context=context
        )


def _below(step: Step, steps: list[Step]) -> Step | None:
    """The backward step a layer's dL/dA flows into: the layer below's dL/dA, or dL/dX for the first layer."""
    at = next((i for i, s in enumerate(steps) if s is step), None)
    if at is None:
        return None
    return next(
        (
            s
            for s in steps[at + 1 :]
            if s.phase == "backward" and (s.layer, s.quantity) in ((step.layer - 1, "dL/dA"), (0, "dL/dX (input)"))
        ),
        None,
    )
