"""When the two sides part, say where and why.

The harness records, for each layer on both sides, the forward quantities (pre-activation Z, activation A) and the
backward ones (dL/dA, dL/dZ, then dW, db). `Trace` lines them up in the order of computation:

    forward:  layer 1 Z, layer 1 A, layer 2 Z, ... , the output, the loss
    backward: last layer dL/dA (absent on the fused softmax + cross-entropy path), dL/dZ, its weight gradients,
              then the layer below, ..., down to dL/dX

and `diagnose` names the first quantity whose error exceeds the tolerance, with a short description of the
difference's pattern (`describe`): a constant factor (N, 2, -1), a transpose, a mask off at the kink (Z == 0), a
difference confined to some columns or rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compare.tolerances import CANCELLATION_FLOOR, TOLERANCES, norm_rel_error

Array = np.ndarray

#: A factor fits when the residual ||a - c b|| is below this fraction of ||a||.
FACTOR_FIT = 1e-6

#: An entry differs "for real" when |a - b| exceeds this fraction of the tensors' largest entry (last-bit
#: rounding elsewhere in the tensor is ignored when locating the difference).
SIGNIFICANT = 1e-9


@dataclass
class Step:
    """One quantity in the order of computation, on both sides."""

    phase: str  # "forward" | "backward"
    layer: int  # 1-based; 0 for the loss and the input gradient
    layer_name: str
    quantity: str  # "Z", "A", "dL/dA", "dL/dZ", "dL/dkernel", ...
    ours: Array
    theirs: Array
    error: float
    passed: bool
    context: dict[str, Any]

    @property
    def where(self) -> str:
        if self.layer == 0:
            return self.quantity
        return f"layer {self.layer} ({self.layer_name}) {self.quantity}"


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
        return {"text": self.text, "phase": self.first.phase, "layer": self.first.layer,
                "layer_name": self.first.layer_name, "quantity": self.first.quantity, "error": self.first.error,
                "pattern": self.pattern}


def _step(phase: str, layer: int, name: str, quantity: str, ours: Array, theirs: Array, dtype: str,
          scale: Array | None, context: dict[str, Any] | None = None) -> Step:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape:
        error = float("inf")
    elif dtype == "float32" and scale is not None:
        error = norm_rel_error(ours, theirs, scale)
    else:
        error = norm_rel_error(ours, theirs, scale, CANCELLATION_FLOOR)
    passed = bool(np.isfinite(error) and error <= TOLERANCES[dtype])
    return Step(phase, layer, name, quantity, ours, theirs, error, passed, context or {})


def build_trace(scratch: Any, ours_trace: list[dict[str, Array]], keras_trace: list[dict[str, Array]],
                ours_grads: list[Array], keras_grads: list[Array], loss_pair: tuple[float, float], fused: bool,
                input_grads: tuple[Array, Array], dtype: str, scales: Any) -> list[Step]:
    """Both sides' quantities in the order of computation (see the module docstring)."""
    steps: list[Step] = []
    n = len(ours_trace[0]["A"])
    for i, (layer, ours, theirs) in enumerate(zip(scratch.layers, ours_trace, keras_trace), start=1):
        if "Z" in ours:
            steps.append(_step("forward", i, layer.name, "Z", ours["Z"], theirs["Z"], dtype,
                               getattr(layer, "z_magnitude", None)))
        steps.append(_step("forward", i, layer.name, "A", ours["A"], theirs["A"], dtype,
                           getattr(layer, "output_magnitude", None)))
    steps.append(_step("forward", 0, "", "loss", np.array(loss_pair[0]), np.array(loss_pair[1]), dtype, None))
    offsets = np.cumsum([0] + [len(layer.weight_names) for layer in scratch.layers])
    last = len(scratch.layers)
    for i in range(last, 0, -1):
        layer, ours, theirs = scratch.layers[i - 1], ours_trace[i - 1], keras_trace[i - 1]
        if not (fused and i == last) and "dA" in ours:
            steps.append(_step("backward", i, layer.name, "dL/dA", ours["dA"], theirs["dA"], dtype,
                               getattr(layer, "dA_magnitude", None), {"n": n, "z": ours.get("Z")}))
        if "dZ" in ours:
            steps.append(_step("backward", i, layer.name, "dL/dZ", ours["dZ"], theirs["dZ"], dtype,
                               getattr(layer, "dz_magnitude", None), {"n": n, "z": ours.get("Z")}))
        for j, (label, trainable) in enumerate(zip(layer.weight_names, layer.trainable)):
            if trainable:
                k = offsets[i - 1] + j
                steps.append(_step("backward", i, layer.name, f"dL/d{label}", ours_grads[k], keras_grads[k], dtype,
                                   scales.params[k], {"n": n}))
    steps.append(_step("backward", 0, "", "dL/dX (input)", input_grads[0], input_grads[1], dtype, scales.input_grad,
                       {"n": n}))
    return steps


def diagnose(steps: list[Step]) -> Diagnosis:
    """The first failing step in the order of computation, and the pattern of its difference."""
    for step in steps:
        if not step.passed:
            forward_ok = step.phase == "backward"
            return Diagnosis(step, describe(step.ours, step.theirs, **step.context), forward_ok)
    return Diagnosis(None, "", True)


def describe(ours: Array, theirs: Array, n: int | None = None, z: Array | None = None) -> str:
    """A short, recognisable summary of how `ours` (scratch) differs from `theirs` (Keras)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape:
        return f"shapes differ: scratch {a.shape}, Keras {b.shape}"
    if not np.all(np.isfinite(a)):
        return "scratch has NaN or infinity where Keras is finite (0/0 or an overflow: is the softmax shifted by each row's own max?)"
    d = a - b
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
            return (f"a mask off at the kink: the sides differ only where Z == 0 exactly ({int(big.sum())} "
                    "entries); is the derivative at 0 taken as 1 (mask z >= 0) instead of 0?")
        if big.any() and not big[z > 0].any() and not a[big].any():
            return (f"zeroed where Z <= 0 ({int(big.sum())} entries): the ReLU mask was applied to dL/dA itself, "
                    "in place; a backward that mutates its input")
    if d.ndim == 2:
        cols = np.flatnonzero(big.any(axis=0))
        rows = np.flatnonzero(big.any(axis=1))
        if 0 < len(cols) < d.shape[1] and len(cols) <= 3:
            return f"confined to column(s) {cols.tolist()} of {d.shape[1]}"
        if 0 < len(rows) < d.shape[0] and len(rows) <= 3:
            return f"confined to row(s) {rows.tolist()} of {d.shape[0]} (these samples only)"
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(d)), d.shape)) if d.size else ()
    return f"no simple pattern; the largest difference is at {index}: scratch {a[index]:.6g}, Keras {b[index]:.6g}"


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
        return (f"a constant factor {c:.6g}: scratch = {c:.6g} x Keras (a 2 from a square's derivative or a 1/2, or "
                "gradients accumulated across calls: the harness runs the backward pass twice)")
    return f"a constant factor: scratch = {c:.6g} x Keras"
