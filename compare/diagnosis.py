"""When the two sides part, say where and why.

The harness records, for each layer on both sides, the forward quantities (pre-activation Z, activation A) and the
backward ones (dL/dA, dL/dZ, then dW, db), and lines them up as `Step`s in the order of computation
(compare/rows.py `quantities`):

    forward:  layer 1 Z, layer 1 A, layer 2 Z, ... , the output, the loss
    backward: last layer dL/dA (absent on the fused softmax + cross-entropy path, for the logits layer
              and the pass-through layers above it), dL/dZ, its weight gradients,
              then the layer below, ..., down to dL/dX

and `diagnose` names the first quantity whose error exceeds the tolerance, with a short description of the
difference's pattern (`describe`): a constant factor (N, 2, -1), a transpose, a mask off at the kink (Z == 0), a
difference confined to some columns or rows, a gradient left at 0 where Keras's is not, a rounding-sized
difference.
Inside an attention call the place names the head and the block (query, key, value, scores, probabilities, context,
output) where the sides part, and the pattern may be one only attention has: a scale, a softmax over another axis, a
causal band off by one, a mask after the softmax, heads merged in another order, a softmax VJP without its row sum
(compare/attention_patterns.py).

The report's rows then say what kind of difference it is (`Diagnosis.reading`, `classify`). Three witnesses see
different things:

    output, loss        does the scratch forward f_s compute Keras's function f_k?
    numerical witness   is Keras's gradient the derivative of f_s (central differences of the scratch loss)?
    Taylor row          is the scratch gradient g_s the derivative of f_s?

A different convention (an epsilon, a gate order, another formula) is a consistent gradient of a different function:
output and witness fail, the Taylor row passes. A backward bug leaves f_s = f_k: output and witness pass, the Taylor
row and the gradients fail. `compare` runs have no Taylor row; the reading then says what it cannot tell.

`Diagnosis` and `diagnose` live here, with the pieces they are made of re-exported: the trace (compare/trace.py),
the pattern of a difference (compare/patterns.py) and its kind (compare/reading.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compare.attention_patterns import attention_location, attention_pattern, attention_where
from compare.graph_patterns import graph_pattern
from compare.patterns import (  # noqa: F401 (re-exported: importable from here as before)
    F32_UNIT,
    FACTOR_FIT,
    GATE_GAP,
    GATES,
    SIGNIFICANT,
    _close,
    _embedding_rows,
    _float32_values,
    _gate_blocks,
    _norm_rel,
    _sequence_pattern,
    _time_steps,
    describe,
)
from compare.reading import (  # noqa: F401 (re-exported: importable from here as before)
    F32_ROUNDING_SIZE,
    KINDS,
    _grouped,
    _row_kind,
    classify,
)
from compare.trace import (  # noqa: F401 (re-exported: importable from here as before)
    BATCH_FIRST,
    INFERENCE_ROW,
    INFERENCE_STEP,
    Array,
    Step,
    _below,
    _producers,
)


@dataclass
class Diagnosis:
    """The first quantity where the sides part (None when every one agrees) and what the difference looks like.

    `steps` are the trace it was made from; `rows` the report's rows, attached by the Report (the same list, so a
    row appended later, check_model's Taylor row, is read too). With them `reading` says what kind of difference
    it is (`classify`), and a failing report whose trace agrees names its failing rows."""

    first: Step | None
    pattern: str
    forward_ok: bool
    steps: list[Step] | None = field(default=None, repr=False, compare=False)
    rows: list[Any] | None = field(default=None, repr=False, compare=False)
    #: Where the first difference is, when the step's own name says less: an attention call's head and block,
    #: "layer 2 (mha) head 1, scores S" (compare/attention_patterns.py). "" to use the step's `where`.
    where: str = ""

    def attach(self, rows: list[Any]) -> Diagnosis:
        """Read the report's `rows` (kept by reference) for `reading` and `text`."""
        self.rows = rows
        return self

    @property
    def failing_rows(self) -> list[Any]:
        return [row for row in self.rows or [] if not row.passed]

    @property
    def text(self) -> str:
        if self.first is None:
            failing = self.failing_rows
            if not failing:
                return "every recorded quantity agrees, forward and backward"
            named = _grouped(failing)
            return (
                "every quantity the trace records agrees, forward and backward, yet "
                f"{'a row fails' if len(failing) == 1 else f'{len(failing)} rows fail'}: {named}"
            )
        lead = "forward agrees; backward" if self.forward_ok else "forward"
        return (
            f"{lead} first differs at {self.where or self.first.where} (error {self.first.error:.2e}): {self.pattern}"
        )

    @property
    def kind(self) -> str:
        """The kind of difference, a key of KINDS ("" when nothing differs)."""
        return classify(self.steps or [], self.rows)[0]

    @property
    def reading(self) -> str:
        """What kind of difference it is and on what evidence, in plain words ("" when nothing differs)."""
        return classify(self.steps or [], self.rows)[1]

    def to_dict(self) -> dict[str, Any]:
        kind, reading = classify(self.steps or [], self.rows)
        if self.first is None:
            return {"text": self.text, "first": None, "kind": kind, "reading": reading}
        return {
            "text": self.text,
            "phase": self.first.phase,
            "layer": self.first.layer,
            "layer_name": self.first.layer_name,
            "quantity": self.first.quantity,
            "error": self.first.error,
            "pattern": self.pattern,
            "kind": kind,
            "reading": reading,
            **self._attention(),
        }

    def _attention(self) -> dict[str, str]:
        """{"head": ..., "block": ...} when the first difference is inside an attention call, else {}."""
        found = attention_location(self.first, self.steps or []) if self.first is not None else None
        return {} if found is None else {"head": found[0], "block": found[1]}


def diagnose(steps: list[Step]) -> Diagnosis:
    """The first failing step in the order of computation, and the pattern of its difference."""
    for step in steps:
        if not step.passed:
            forward_ok = step.phase == "backward"
            pattern = (
                _overwritten_upstream(step, steps)
                or attention_pattern(step, steps)
                or graph_pattern(step, steps)
                or describe(step.ours, step.theirs, **step.context, batch_axis=step.quantity in BATCH_FIRST)
            )
            if pattern.startswith(("no simple pattern", "confined to")):  # a sequence layer may say more
                pattern = _sequence_pattern(step, steps) or pattern
            return Diagnosis(step, pattern, forward_ok, steps, where=attention_where(step, steps))
    return Diagnosis(None, "", True, steps)


def _overwritten_upstream(step: Step, steps: list[Step]) -> str:
    """A layer's recorded dL/dA that holds, on the scratch side only, the values of the gradient it handed down:
    the layer's backward wrote its result into the dy it was given. "" otherwise."""
    if step.quantity != "dL/dA" or step.phase != "backward" or step.ours is None:
        return ""
    below = next((s for s in _producers(step, steps) if _holds(step, s)), None)
    if below is None:
        return ""
    return (
        f"scratch's dL/dA holds the values of its {below.where} (Keras's does not): the layer's backward wrote its "
        "result into the dy it was handed, in place, overwriting the upstream gradient"
    )


def _holds(step: Step, below: Step) -> bool:
    """Whether scratch's dL/dA at `step` holds the values it handed `below` (a producer's step) while Keras's does
    not."""
    if below.ours is None or np.shape(below.ours) != np.shape(step.ours):
        return False
    if not _close(np.asarray(step.ours, np.float64), np.asarray(below.ours, np.float64)):
        return False
    return not _close(np.asarray(step.theirs, np.float64), np.asarray(below.theirs, np.float64))  # (else: pass-through)
