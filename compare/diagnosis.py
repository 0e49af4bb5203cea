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
            pattern = describe(step.ours, step.theirs, **step.context)
            if pattern.startswith(("no simple pattern", "confined to")):  # a sequence layer may say more
                pattern = _sequence_pattern(step, steps) or pattern
            return Diagnosis(step, pattern, forward_ok)
    return Diagnosis(None, "", True)


#: The gate blocks of a recurrent kernel's columns, in Keras's order, by their number (LSTM 4, GRU 3).
GATES = {4: ("i", "f", "c", "o"), 3: ("z", "r", "h")}


def _sequence_pattern(step: Step, steps: list[Step]) -> str:
    """For a sequence layer whose difference `describe` finds no simple pattern in, where the sides part within
    it: an Embedding's rows, and for a recurrent layer the gate blocks of a weight gradient's columns and the first
    time step, in the order of computation (backward: counting from the last step, as BPTT runs; forward: from the
    first), where its dL/dX (or its output) differs. "" when there is nothing more to say (`describe`'s text
    stands)."""
    if step.ours is None or step.theirs is None or np.shape(step.ours) != np.shape(step.theirs):
        return ""
    if step.quantity == "dL/dembeddings":
        return _embedding_rows(step, steps)
    recurrent = next((s for s in steps if s.layer == step.layer and s.quantity == "dL/drecurrent_kernel"), None)
    if recurrent is None or step.layer == 0 or recurrent.ours is None or step.quantity == "dL/dA":
        return ""  # (a recurrent layer's own dL/dA comes from the layers above it)
    units = recurrent.ours.shape[0]
    gates = GATES.get(recurrent.ours.shape[1] // units, ())
    if step.phase == "forward":
        t = _time_steps(step.ours, step.theirs)
        if t is None or not t.any() or t.all():
            return ""
        first = int(np.flatnonzero(t)[0])
        hint = (
            " (a GRU: is the reset gate applied before the recurrent product, reset_after=False, where Keras's "
            "default reset_after=True applies it after? With h_{-1} = 0 and a zero recurrent bias the two agree "
            "at t = 0)"
            if gates == GATES[3] and first == 1
            else ""
        )
        return (
            f"the output agrees at t = {'0' if first == 1 else f'0..{first - 1}'} and first differs at t = {first} "
            f"(of 0..{len(t) - 1}): "
            "a difference in how h_{t-1} enters the cell" + hint
        )
    parts = [_gate_blocks(step.ours, step.theirs, units, gates)] if gates else []
    below = next(
        (
            s
            for s in steps[next(i for i, s in enumerate(steps) if s is step) + 1 :]
            if s.phase == "backward" and (s.layer, s.quantity) in ((step.layer - 1, "dL/dA"), (0, "dL/dX (input)"))
        ),
        None,
    )
    t = _time_steps(below.ours, below.theirs) if below is not None and below.ours is not None else None
    if t is not None and t.any():
        last, first = len(t) - 1, int(np.flatnonzero(t)[-1])
        if first == last:
            parts.append(f"its dL/dX already differs at the last time step t = {last}, the first BPTT computes")
        else:
            agree = f"t = {last}" if first + 1 == last else f"t = {first + 1}..{last}"
            parts.append(
                f"its dL/dX agrees at {agree} and first differs at t = {first} (of 0..{last}), step "
                f"{last - first + 1} counting from the last as BPTT runs: a gradient not carried back from step t "
                "to step t-1 (dh, or an LSTM's dc)?"
            )
    return "; ".join(p for p in parts if p)


def _time_steps(ours: Array, theirs: Array) -> Array | None:
    """Which time steps of a sequence (N, T, ...) differ beyond rounding, (T,) bools; None for other shapes."""
    noise = _noise(ours)
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        return None
    big = np.abs(a - b) > noise * max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    return big.any(axis=(0, 2))


def _gate_blocks(ours: Array, theirs: Array, units: int, gates: tuple[str, ...]) -> str:
    """Which gate blocks (column blocks of `units`) of a recurrent weight gradient differ: Keras's blocks in
    another order, a few gates only, or the one that differs most."""
    noise = _noise(ours)
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape[-1] != units * len(gates):
        return ""
    blocks_a = [a[..., j * units : (j + 1) * units] for j in range(len(gates))]
    blocks_b = [b[..., j * units : (j + 1) * units] for j in range(len(gates))]
    order = [next((k for k, bb in enumerate(blocks_b) if _close(aa, bb, noise)), None) for aa in blocks_a]
    if None not in order and sorted(order) == list(range(len(gates))) and order != sorted(order):
        held = ", ".join(gates[k] for k in order)
        dlfs = " (deep-learning-from-scratch-2 stacks f, g, i, o)" if len(gates) == 4 else ""
        return (
            f"the gate blocks in another order: scratch's columns hold Keras's [{held}] blocks where Keras stacks "
            f"[{', '.join(gates)}]{dlfs}"
        )

    def cols(j: int) -> str:
        return f"{gates[j]} (columns {j * units}..{(j + 1) * units - 1})"

    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    differs = [j for j in range(len(gates)) if (np.abs(blocks_a[j] - blocks_b[j]) > noise * scale).any()]
    if not differs:
        return ""
    if len(differs) < len(gates):
        agree = ", ".join(gates[j] for j in range(len(gates)) if j not in differs)
        where = " and ".join(cols(j) for j in differs)
        return f"differs in gate{'s' if len(differs) > 1 else ''} {where}; gate(s) {agree} agree"
    errors = [np.linalg.norm(blocks_a[j] - blocks_b[j]) / max(np.linalg.norm(blocks_b[j]), 1e-300) for j in differs]
    ranked = np.argsort(errors)[::-1]
    top, second = errors[ranked[0]], errors[ranked[1]]
    if top >= 3 * second:
        return (
            f"differs in every gate block, most in gate {cols(int(ranked[0]))}: relative error {top:.2g} there, "
            f"at most {second:.2g} in the others"
        )
    return f"differs in every gate block ({', '.join(gates)}) alike"


def _embedding_rows(step: Step, steps: list[Step]) -> str:
    """An Embedding gradient whose differing rows each hold one position's dL/dA (Keras: the sum over every
    position that used the index): repeated indices assigned, not accumulated."""
    upstream = next((s for s in steps if s.layer == step.layer and s.quantity == "dL/dA"), None)
    if upstream is None or upstream.ours is None or np.ndim(step.ours) != 2:
        return ""
    noise = _noise(step.ours)
    a, b = np.asarray(step.ours, np.float64), np.asarray(step.theirs, np.float64)
    dy = np.asarray(upstream.ours, np.float64).reshape(-1, a.shape[1])
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    rows = np.flatnonzero((np.abs(a - b) > noise * scale).any(axis=1))
    if not len(rows) or not all(any(_close(a[k], y, noise) for y in dy) for k in rows):
        return ""
    shown = ", ".join(str(k) for k in rows[:6]) + (", ..." if len(rows) > 6 else "")
    return (
        f"rows {shown} ({len(rows)} of {len(a)}) each hold a single position's dL/dA where Keras sums every "
        "position that used the index: a repeated index's gradients assigned (dE[X] = dY, or dE[X] += dY, which "
        "keeps one of the repeats) instead of accumulated (np.add.at)"
    )


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


def _close(a: Array, b: Array, fit: float = FACTOR_FIT) -> bool:
    return bool(np.linalg.norm(a - b) <= fit * max(np.linalg.norm(a), 1e-300))


def _noise(x: Array) -> float:
    """Below which fraction of a sequence tensor's largest entry a difference is taken as rounding: SIGNIFICANT in
    float64, 1e-4 in float32 (the two sides' float32 passes part by far more than 1e-9 through rounding alone; the
    bugs located here differ at order 1)."""
    return SIGNIFICANT if np.asarray(x).dtype == np.float64 else 1e-4


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
