"""The patterns of a difference that only a graph has: where a gradient is a sum (a fan-out, a shared layer's calls)
or where a merge's backward hands its inputs their parts of dL/dY.

`graph_pattern(step, steps)` reads the first differing step against its neighbours in the graph (Step.producers,
Step.consumers, Step.parts, filled in by the harness) and says, when the values prove it:

- a sum that is one addend: scratch's dL/dA of a node read by several nodes (or a shared layer's parameter gradient)
  equals what one consumer sent back (one call's gradient) while Keras's equals the sum of scratch's addends;
- a gradient handed back unchanged: scratch's dL/dA equals the dL/dA of the merge that reads it, where Keras's does
  not (a Multiply's dY not multiplied by the other inputs);
- a slice at the wrong offset: scratch's dL/dA is a block of columns of its consumer's dL/dA, Keras's another block
  (a Concatenate's gradient split at the wrong offset).

"" when none of these holds; `describe` then says what it can.
"""

from __future__ import annotations

import numpy as np

from compare.patterns import FACTOR_FIT
from compare.trace import Array, Step

#: In float32 the two sides' sums of the same addends part by rounding (a few ulps of each addend, 2^-24 ~ 6e-8
#: relative, times the addends' count and cancellation); the graph patterns compare values that are equal up to
#: such rounding or differ at order 1, so 1e-4 keeps rounding in and every planted difference out.
F32_GRAPH_FIT = 1e-4


def _fit(a: Array) -> float:
    return FACTOR_FIT if np.asarray(a).dtype == np.float64 else F32_GRAPH_FIT


def _same(a: Array, b: Array, fit: float) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return float(np.linalg.norm(a - b)) <= fit * scale if scale > 0 else True


def graph_pattern(step: Step, steps: list[Step]) -> str:
    """What the graph around `step` shows about its difference, or ""."""
    if step.phase != "backward" or step.ours is None or step.theirs is None:
        return ""
    return _one_part(step) or _tie(step, steps) or _handed_back(step, steps) or ""


def _one_part(step: Step) -> str:
    """A sum (Step.parts, scratch's addends) that scratch did not take: scratch's value is one addend (or not their
    sum), Keras's is their sum."""
    if len(step.parts) < 2:
        return ""
    fit = _fit(step.ours)
    names = [name for name, _ in step.parts]
    total = sum((np.asarray(p, np.float64) for _, p in step.parts), np.zeros(np.shape(step.ours)))
    if _same(step.ours, total, fit) or not _same(step.theirs, total, fit):
        return ""
    shared = not step.quantity.startswith(("dL/dA", "dL/dX"))
    what = (
        f"its {len(names)} calls ({', '.join(names)})"
        if shared
        else f"what the {len(names)} nodes reading it ({', '.join(names)}) sent back"
    )
    alone = next((name for name, p in step.parts if _same(step.ours, p, fit)), None)
    if alone is None:
        held = "is not the sum of its parts"
    else:
        held = f"is the gradient of call {alone} alone" if shared else f"is what {alone} sent back alone"
    hint = (
        "a shared layer's gradient kept from one call (the last its backward ran) instead of summed over its calls?"
        if shared
        else "the gradients that meet at a fan-out overwritten (=) instead of added (+=)?"
    )
    return f"scratch's {step.quantity} {held}; Keras's is the sum over {what}, as scratch's parts add up: {hint}"


def _tie(step: Step, steps: list[Step]) -> str:
    """A node's dL/dA that has gradient, where Keras's is exactly 0, only at entries where this node's output ties
    with another input of the Maximum (Minimum) that reads it: the tie's dY sent to every tied input."""
    if step.quantity != "dL/dA" or not step.layer:
        return ""
    a, b = np.asarray(step.ours, np.float64), np.asarray(step.theirs, np.float64)
    if a.shape != b.shape:
        return ""
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    differs = np.abs(a - b) > _fit(step.ours) * scale
    if not differs.any() or (b[differs] != 0).any():
        return ""
    forward = {s.layer: s for s in steps if s.phase == "forward" and s.quantity == "A" and s.ours is not None}
    own = forward.get(step.layer)
    for c in step.consumers:
        merged = forward.get(c)
        back = next((s for s in steps if s.phase == "backward" and s.layer == c and s.producers), None)
        if own is None or merged is None or back is None or np.shape(merged.ours) != a.shape:
            continue
        others = [forward.get(p) for p, q in back.producers if q == "dL/dA" and p != step.layer]
        others = [o.ours for o in others if o is not None and np.shape(o.ours) == a.shape]
        chosen = own.ours == merged.ours
        tied = chosen & np.any([o == merged.ours for o in others], axis=0) if others else np.zeros_like(chosen)
        if tied[differs].all():
            rows = np.unique(np.nonzero(differs)[0])
            shown = ("row " if len(rows) == 1 else "rows ") + ", ".join(str(r) for r in rows[:6])
            shown += ", ..." if len(rows) > 6 else ""
            return (
                f"scratch has gradient where Keras has exactly 0 ({int(differs.sum())} entries, {shown}), each "
                f"where this node's output ties with another input of {merged.layer_name} (node {c}): the tie's dY "
                "sent to every tied input, where TensorFlow sends it to the first of them only"
            )
    return ""


def _handed_back(step: Step, steps: list[Step]) -> str:
    """A node's dL/dA, read by a merge, that is the merge's own dL/dY handed back unchanged, or a block of its
    columns other than Keras's."""
    if step.quantity != "dL/dA" or not step.layer:
        return ""
    fit = _fit(step.ours)
    for c in step.consumers:
        consumer = next((s for s in steps if s.phase == "backward" and (s.layer, s.quantity) == (c, "dL/dA")), None)
        if consumer is None or consumer.ours is None or consumer.theirs is None:
            continue
        if _same(step.ours, consumer.ours, fit) and not _same(step.theirs, consumer.theirs, fit):
            return (
                f"scratch's dL/dA is the dL/dA of {consumer.layer_name} (node {c}) handed back unchanged, Keras's "
                f"is not: {consumer.layer_name}'s backward passes dY through where its vector-Jacobian product "
                "changes it (a Multiply's dY not multiplied by the other inputs, a derivative left out?)"
            )
        ours_at, theirs_at = _block(step.ours, consumer.ours, fit), _block(step.theirs, consumer.theirs, fit)
        if ours_at is not None and theirs_at is not None and ours_at != theirs_at:
            width = np.shape(step.ours)[-1]
            return (
                f"scratch's dL/dA is columns {ours_at}..{ours_at + width - 1} of {consumer.layer_name}'s dL/dA "
                f"(node {c}), Keras's columns {theirs_at}..{theirs_at + width - 1}: the gradient split at the wrong "
                "offset (the slice of dY this input filled starts at the sum of the widths before it)"
            )
    return ""


def _block(part: Array, whole: Array, fit: float) -> int | None:
    """The offset s at which `part` equals whole[..., s : s + width] (the first, when several do), or None."""
    part, whole = np.asarray(part), np.asarray(whole)
    width = part.shape[-1] if part.ndim else 0
    if part.ndim != whole.ndim or part.shape[:-1] != whole.shape[:-1] or not 0 < width < whole.shape[-1]:
        return None
    return next((s for s in range(whole.shape[-1] - width + 1) if _same(part, whole[..., s : s + width], fit)), None)
