"""When the two sides part, say where and why.

The harness records, for each layer on both sides, the forward quantities (pre-activation Z, activation A) and the
backward ones (dL/dA, dL/dZ, then dW, db), and lines them up as `Step`s in the order of computation
(compare/harness.py `quantities`):

    forward:  layer 1 Z, layer 1 A, layer 2 Z, ... , the output, the loss
    backward: last layer dL/dA (absent on the fused softmax + cross-entropy path, for the logits layer
              and the pass-through layers above it), dL/dZ, its weight gradients,
              then the layer below, ..., down to dL/dX

and `diagnose` names the first quantity whose error exceeds the tolerance, with a short description of the
difference's pattern (`describe`): a constant factor (N, 2, -1), a transpose, a mask off at the kink (Z == 0), a
difference confined to some columns or rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Array = np.ndarray

#: A factor fits when the residual ||a - c b|| is below this fraction of ||a||.
FACTOR_FIT = 1e-6

#: An entry differs "for real" when |a - b| exceeds this fraction of the tensors' largest entry (last-bit
#: rounding elsewhere in the tensor is ignored when locating the difference).
SIGNIFICANT = 1e-9


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


@dataclass
class Diagnosis:
    """The first quantity where the sides part (None when every one agrees) and what the difference looks like."""

    first: Step | None
    pattern: str
    forward_ok: bool

    @property
    def text(self) -> str:
        if self.first is None:
            return "every recorded quantity agrees, forward and backward"
        lead = "forward agrees; backward" if self.forward_ok else "forward"
        return f"{lead} first differs at {self.first.where} (error {self.first.error:.2e}): {self.pattern}"

    def to_dict(self) -> dict[str, Any]:
        if self.first is None:
            return {"text": self.text, "first": None}
        return {
            "text": self.text,
            "phase": self.first.phase,
            "layer": self.first.layer,
            "layer_name": self.first.layer_name,
            "quantity": self.first.quantity,
            "error": self.first.error,
            "pattern": self.pattern,
        }


def diagnose(steps: list[Step]) -> Diagnosis:
    """The first failing step in the order of computation, and the pattern of its difference."""
    for step in steps:
        if not step.passed:
            forward_ok = step.phase == "backward"
            return Diagnosis(step, describe(step.ours, step.theirs, **step.context), forward_ok)
    return Diagnosis(None, "", True)


def describe(
    ours: Array, theirs: Array, n: int | None = None, z: Array | None = None, input_shape: tuple | None = None
) -> str:
    """A short, recognisable summary of how `ours` (scratch) differs from `theirs` (Keras). `input_shape`: the
    shape reaching the layer (an image's (H, W, C) lets a flattened output be recognised in another order)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape:
        return f"shapes differ: scratch {a.shape}, Keras {b.shape}"
    if not np.all(np.isfinite(a)):
        return (
            "scratch has NaN or infinity where Keras is finite "
            "(0/0 or an overflow: is the softmax shifted by each row's own max?)"
        )
    d = a - b
    layout = _layout(a, b, input_shape)
    if layout:
        return layout
    if a.ndim == 2 and a.shape[0] == a.shape[1] and np.linalg.norm(a - b.T) <= FACTOR_FIT * np.linalg.norm(a):
        return "a transpose: scratch = Keras^T (a W used where W^T belongs, or the reverse)"
    bb = float((b * b).sum())
    if bb > 0:
        c = float((a * b).sum()) / bb
        if np.linalg.norm(a - c * b) <= FACTOR_FIT * max(np.linalg.norm(a), 1e-300):
            return _factor(c, n)
    # entries that differ by more than rounding (the rest of the tensor may carry last-bit differences)
    big = np.abs(d) > SIGNIFICANT * max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    if z is not None and np.shape(z) == d.shape:
        z = np.asarray(z)
        if (z == 0).any() and big.any() and not big[z != 0].any():
            return (
                f"a mask off at the kink: the sides differ only where Z == 0 exactly ({int(big.sum())} "
                "entries); is the derivative at 0 taken as 1 (mask z >= 0) instead of 0?"
            )
        if big.any() and not big[z > 0].any() and not a[big].any():
            return (
                f"zeroed where Z <= 0 ({int(big.sum())} entries): the ReLU mask was applied to dL/dA itself, "
                "in place; a backward that mutates its input"
            )
    if big.any() and not b[big].any() and big.sum() < big.size:
        return (
            f"scratch has gradient where Keras has exactly 0 ({int(big.sum())} entries) and agrees elsewhere: a "
            "route Keras does not take (a max-pool gradient sent to every tied maximum? a mask not applied?)"
        )
    if d.ndim == 2:
        cols = np.flatnonzero(big.any(axis=0))
        rows = np.flatnonzero(big.any(axis=1))
        if 0 < len(cols) < d.shape[1] and len(cols) <= 3:
            return f"confined to column(s) {cols.tolist()} of {d.shape[1]}"
        if 0 < len(rows) < d.shape[0] and len(rows) <= 3:
            return f"confined to row(s) {rows.tolist()} of {d.shape[0]} (these samples only)"
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(d)), d.shape)) if d.size else ()
    return f"no simple pattern; the largest difference is at {index}: scratch {a[index]:.6g}, Keras {b[index]:.6g}"


def _close(a: Array, b: Array) -> bool:
    return bool(np.linalg.norm(a - b) <= FACTOR_FIT * max(np.linalg.norm(a), 1e-300))


def _layout(a: Array, b: Array, input_shape: tuple | None) -> str:
    """The image mistakes that move values without changing them: Keras's values in another axis order (a kernel
    in DLFS's (c_out, c_in, kh, kw) layout, a Flatten in (c, h, w) order), or a feature map shifted by one cell
    (the 'same' padding put on the wrong side)."""
    if np.allclose(a, b, rtol=0, atol=0):
        return ""
    if a.ndim == 4 and a.shape[0] * a.shape[1] > 1:  # a kernel (kh, kw, C, F)
        kh, kw, c, f = a.shape
        if _close(a, b.transpose(3, 2, 0, 1).reshape(a.shape)):
            return (
                "a layout: scratch holds Keras's kernel values in the order (F, C, kh, kw), reshaped, not "
                "transposed: a (c_out, c_in, kh, kw) kernel (deep-learning-from-scratch's) copied without "
                "transpose(2, 3, 1, 0)"
            )
    if a.ndim == 2 and input_shape is not None and len(input_shape) == 3 and a.shape[1] == np.prod(input_shape):
        h, w, c = input_shape
        chw = b.reshape(len(b), h, w, c).transpose(0, 3, 1, 2).reshape(b.shape)
        if c > 1 and _close(a, chw):
            return "a layout: scratch flattens in (c, h, w) order, Keras in (h, w, c) (channels last)"
    if a.ndim == 4 and a.shape[1] > 2 and a.shape[2] > 2:  # a feature map (N, H, W, C)
        for dy, dx in ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (-1, -1)):
            inner_a = a[:, max(dy, 0) : a.shape[1] + min(dy, 0), max(dx, 0) : a.shape[2] + min(dx, 0)]
            inner_b = b[:, max(-dy, 0) : b.shape[1] + min(-dy, 0), max(-dx, 0) : b.shape[2] + min(-dx, 0)]
            if _close(inner_a, inner_b):
                way = " and ".join(
                    w for w, v in (("down", dy > 0), ("up", dy < 0), ("right", dx > 0), ("left", dx < 0)) if v
                )
                return (
                    f"shifted by one cell ({way}): away from the border scratch = Keras moved by one position; is "
                    "the odd cell of 'same' padding put on the wrong side (Keras pads it at the bottom and right)?"
                )
    return ""


def _factor(c: float, n: int | None) -> str:
    def near(value: float) -> bool:
        return abs(c - value) <= 1e-6 * abs(value)

    if near(-1):
        return "a sign flip: scratch = -Keras"
    if n and n > 1 and near(n):
        return f"a constant factor N = {n} (the batch size): scratch = {n} x Keras; a missing 1/N?"
    if n and n > 1 and near(1 / n):
        return f"a constant factor 1/N = 1/{n}: scratch = Keras / {n}; a mean taken where Keras sums over the batch?"
    if near(2) or near(0.5):
        return (
            f"a constant factor {c:.6g}: scratch = {c:.6g} x Keras (a 2 from a square's derivative or a 1/2, or "
            "gradients accumulated across calls: the harness runs the backward pass twice)"
        )
    return f"a constant factor: scratch = {c:.6g} x Keras"
