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
difference confined to some columns or rows, a gradient left at 0 where Keras's is not, a rounding-sized
difference.

The report's rows then say what kind of difference it is (`Diagnosis.reading`, `classify`). Three witnesses see
different things:

    output, loss        does the scratch forward f_s compute Keras's function f_k?
    numerical witness   is Keras's gradient the derivative of f_s (central differences of the scratch loss)?
    Taylor row          is the scratch gradient g_s the derivative of f_s?

A different convention (an epsilon, a gate order, another formula) is a consistent gradient of a different function:
output and witness fail, the Taylor row passes. A backward bug leaves f_s = f_k: output and witness pass, the Taylor
row and the gradients fail. `compare` runs have no Taylor row; the reading then says what it cannot tell.
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

#: float32's unit roundoff 2^-24: one rounding moves a value by at most this fraction of it.
F32_UNIT = 2.0**-24

#: Below this norm-relative size a difference is at the scale of float32 rounding compounded through a layer (about
#: 170 units of F32_UNIT); a formula or convention that differs moves a quantity by far more (BatchNormalization's
#: epsilon 1e-6 against 1e-3 on standard normal inputs: 6e-4 on its output).
F32_ROUNDING_SIZE = 1e-5

#: Gate blocks are named as differing "most" when their errors stand this many times above the next block's.
GATE_GAP = 3.0

#: What each kind of difference is called (`Diagnosis.kind`; the JSON's "kind").
#: The row and the trace step of the inference pass (compare/harness.py): forward(x, training=False) on both sides,
#: from the weights after the training pass (a BatchNormalization then normalises with the moving statistics that
#: pass moved). It runs after the training pass, so it is read apart from that pass's forward.
INFERENCE_ROW = "output (inference, after the step)"
INFERENCE_STEP = "output in inference mode (training=False, after the step)"

KINDS = {
    "convention": "a different function, not a backward bug",
    "backward bug": "a backward bug",
    "forward bug": "a forward bug",
    "forward and backward": "a forward difference, and a backward that is not its gradient",
    "float32 arithmetic": "float32 arithmetic in a float64 check",
    "forward differs": "the forward differs",
    "around the batch": "the functions agree on this batch but not around it",
    "witness only": "only the witnesses fail",
    "intermediate only": "only a recorded intermediate differs",
    "other rows": "only rows outside the trace fail",
    "inference only": "only the inference pass differs",
    "protocol": "the layer breaks the protocol",
}


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
    """The first quantity where the sides part (None when every one agrees) and what the difference looks like.

    `steps` are the trace it was made from; `rows` the report's rows, attached by the Report (the same list, so a
    row appended later, check_model's Taylor row, is read too). With them `reading` says what kind of difference
    it is (`classify`), and a failing report whose trace agrees names its failing rows."""

    first: Step | None
    pattern: str
    forward_ok: bool
    steps: list[Step] | None = field(default=None, repr=False, compare=False)
    rows: list[Any] | None = field(default=None, repr=False, compare=False)

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
        return f"{lead} first differs at {self.first.where} (error {self.first.error:.2e}): {self.pattern}"

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
        }


def diagnose(steps: list[Step]) -> Diagnosis:
    """The first failing step in the order of computation, and the pattern of its difference."""
    for step in steps:
        if not step.passed:
            forward_ok = step.phase == "backward"
            pattern = _overwritten_upstream(step, steps) or describe(
                step.ours, step.theirs, **step.context, batch_axis=step.quantity in BATCH_FIRST
            )
            if pattern.startswith(("no simple pattern", "confined to")):  # a sequence layer may say more
                pattern = _sequence_pattern(step, steps) or pattern
            return Diagnosis(step, pattern, forward_ok, steps)
    return Diagnosis(None, "", True, steps)


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


def _overwritten_upstream(step: Step, steps: list[Step]) -> str:
    """A layer's recorded dL/dA that holds, on the scratch side only, the values of the gradient it handed down:
    the layer's backward wrote its result into the dy it was given. "" otherwise."""
    if step.quantity != "dL/dA" or step.phase != "backward" or step.ours is None:
        return ""
    below = _below(step, steps)
    if below is None or below.ours is None or np.shape(below.ours) != np.shape(step.ours):
        return ""
    if not _close(np.asarray(step.ours, np.float64), np.asarray(below.ours, np.float64)):
        return ""
    if _close(np.asarray(step.theirs, np.float64), np.asarray(below.theirs, np.float64)):
        return ""  # Keras's are equal too: a layer that passes its gradient through
    return (
        f"scratch's dL/dA holds the values of its {below.where} (Keras's does not): the layer's backward wrote its "
        "result into the dy it was handed, in place, overwriting the upstream gradient"
    )


#: The traced quantities whose first axis is the batch (a row of them is a sample); a weight gradient's is not.
BATCH_FIRST = ("Z", "A", "dL/dA", "dL/dZ", "dL/dX (input)")


def classify(steps: list[Step], rows: list[Any] | None = None) -> tuple[str, str]:
    """(kind, reading): what kind of difference a comparison found, a key of KINDS and a sentence saying it with its
    evidence; ("", "") when nothing differs. Read from the trace `steps` and the report's `rows` (None: the trace
    alone, as if no witness ran):

        forward fails, Taylor passes              a different function, consistently differentiated (a convention)
        forward agrees, Taylor and gradients fail a backward bug
        forward fails, Taylor fails               a forward bug (gradients agree) or a bug in each
        no Taylor row (compare)                   what the output, witness and gradient rows can tell, and what not

    A forward that differs by float32 rounding in a float64 check, its values float32 numbers, is float32 arithmetic
    whatever the witnesses say (they differentiate in float64 and cannot resolve a float32 loss)."""
    rows = list(rows or [])
    kind, reading = _classify(steps, rows)
    breaches = [r for r in rows if _row_kind(r) == "protocol" and not r.passed]
    if breaches and kind != "protocol":  # the rest was computed on the harness's copies: still worth reading
        kind, rest = _classify(steps, [r for r in rows if r not in breaches])
        reading = f"{KINDS['protocol']} ({', '.join(r.name for r in breaches)})" + (
            f", and besides: {rest}" * bool(rest)
        )
    return kind, reading


def _classify(steps: list[Step], rows: list[Any]) -> tuple[str, str]:
    """classify's reading before a protocol breach is put first."""
    rows = list(rows or [])
    fwd_step = next((s for s in steps if s.phase == "forward" and not s.passed and s.quantity != INFERENCE_STEP), None)
    bwd_step = next((s for s in steps if s.phase == "backward" and not s.passed), None)
    fwd_rows = [r for r in rows if _row_kind(r) == "forward" and not r.passed]
    grad_rows = [r for r in rows if _row_kind(r) == "gradient" and not r.passed]
    witness = next((r for r in rows if _row_kind(r) == "witness"), None)
    taylor = next((r for r in rows if _row_kind(r) == "taylor"), None)
    others = [
        r for r in rows if _row_kind(r) in ("state", "round trip", "inference", "protocol", "other") and not r.passed
    ]
    table = any(_row_kind(r) == "gradient" for r in rows)  # output, loss and gradients are rows: judge by them
    forward_fails = bool(fwd_rows) if table else fwd_step is not None
    backward_fails = bool(grad_rows) if table else bwd_step is not None
    lone = (fwd_step if not forward_fails else None) or (bwd_step if not backward_fails else None)
    intermediate = lone if table and not forward_fails and not backward_fails else None
    witness_fails = witness is not None and not witness.passed
    taylor_fails = taylor is not None and not taylor.passed
    if not (forward_fails or backward_fails or intermediate is not None or witness_fails or taylor_fails or others):
        return "", ""
    also = f"; also failing: {_grouped(others)}" if others else ""
    fwd_where = fwd_step.where if fwd_step is not None else (fwd_rows[0].name if fwd_rows else "")
    bwd_where = bwd_step.where if bwd_step is not None else (grad_rows[0].name if grad_rows else "")
    w_ok = None if witness is None else witness.passed
    t_ok = None if taylor is None else taylor.passed

    rounding = _float32_reading(fwd_step or bwd_step, steps, witness_fails, taylor_fails)
    if rounding:
        return "float32 arithmetic", rounding + also
    if forward_fails:
        differs = f"the scratch forward computes a different function from Keras's (first at {fwd_where})"
        if t_ok and (backward_fails or w_ok is False):
            witness_note = (
                "; the numerical witness fails as it must: it compares differences of the scratch loss with Keras's "
                "gradient"
                if w_ok is False
                else ""
            )
            return "convention", (
                f"{KINDS['convention']}: the scratch forward computes a different function from Keras's (first at "
                f"{fwd_where}: a convention or formula differs, an epsilon, a gate order, a default?), and its "
                f"backward is consistent with its own forward (the Taylor row passes){witness_note}; the fix is in the "
                f"convention, forward and backward alike, not in the backward alone{also}"
            )
        if t_ok:
            witness_note = " and the numerical witness passes" if w_ok else ""
            return "forward differs", (
                f"{KINDS['forward differs']}: {differs}, yet every gradient agrees with Keras's{witness_note} and the "
                "backward is consistent with the scratch forward (the Taylor row passes): a difference that moves no "
                f"derivative (a constant added to the output or the loss?){also}"
            )
        if t_ok is False and not backward_fails:
            return "forward bug", (
                f"{KINDS['forward bug']}: {differs}, while every gradient agrees with Keras's: the backward is "
                "Keras's gradient but not the gradient of the scratch forward (the Taylor row fails), so the forward "
                f"is what differs{also}"
            )
        if t_ok is False:
            return "forward and backward", (
                f"{KINDS['forward and backward']}: {differs}, and the backward is not the gradient of the scratch "
                f"forward either (the Taylor row fails; the gradients first differ at {bwd_where}): a forward bug the "
                f"backward does not share, or a bug in each; start with the forward{also}"
            )
        witness_note = {
            False: "; the numerical witness fails, as it does for either",
            True: "; the numerical witness passes: Keras's gradient is the derivative of the scratch loss at the "
            "sampled coordinates",
            None: "",
        }[w_ok]
        return "forward differs", (
            f"{KINDS['forward differs']}: {differs}{witness_note}. This run has no Taylor row (check_layer and "
            "check_model add one), so it cannot tell a different convention, whose backward is the consistent "
            f"gradient of another function, from a forward bug{also}"
        )
    if backward_fails:
        agree = (
            "the forward agrees ("
            + ("output, loss and numerical witness pass" if w_ok else "output and loss pass")
            + ")"
        )
        if t_ok is False:
            witness_note = (
                "; the numerical witness fails too although the forward agrees on this batch: the scratch loss's own "
                "derivatives differ from Keras's gradient, so the forward also parts from Keras's around this batch"
                if w_ok is False
                else ""
            )
            return "backward bug", (
                f"{KINDS['backward bug']}: {agree} and the backward is not the gradient of the forward (the Taylor "
                f"row fails): the gradients first differ at {bwd_where}{witness_note}{also}"
            )
        if t_ok or w_ok is False:
            evidence = (
                "the backward is the gradient of the scratch forward (the Taylor row passes)"
                if t_ok
                else "the numerical witness fails: the scratch loss's own derivatives differ from Keras's gradient"
            )
            missing = (
                ""
                if t_ok is not None
                else "; whether the backward is also wrong needs the Taylor row (check_layer and check_model add one)"
            )
            return "around the batch", (
                f"{KINDS['around the batch']}: the forward agrees on this batch (output and loss pass) and "
                f"{evidence}, yet the gradients differ from Keras's, first at {bwd_where}: the scratch function parts "
                f"from Keras's away from this batch's values{missing}{also}"
            )
        if w_ok:
            return "backward bug", (
                f"{KINDS['backward bug']}: the forward agrees (output and loss pass) and the numerical witness, "
                "central differences of the scratch loss, agrees with Keras's gradient, so the scratch gradient is "
                f"not the derivative of the scratch loss: it first differs at {bwd_where} (this run has no Taylor "
                f"row){also}"
            )
        return "backward bug", (
            f"{KINDS['backward bug']}, as far as this run shows: the forward agrees (output and loss pass) and the "
            f"gradients differ, first at {bwd_where}; no numerical witness or Taylor row ran, so a forward that "
            f"agrees on this batch but not around it is not ruled out{also}"
        )
    if intermediate is not None:
        changed = (
            "it changed after it was handed to the layer (a backward that writes into its dy?), or is computed "
            "another way to the same gradients"
            if intermediate.phase == "backward"
            else "it is computed another way to the same output"
        )
        return "intermediate only", (
            f"{KINDS['intermediate only']}: the forward and every gradient agree with Keras's (output, loss and "
            f"gradient rows pass), but the value recorded at {intermediate.where} does not: {changed}"
            + "".join(f"; the {_short(r)} fails too" for r in (witness, taylor) if r is not None and not r.passed)
            + also
        )
    failing = [_short(r) for r in (witness, taylor) if r is not None and not r.passed]
    lead = "the forward and every gradient agree with Keras's"
    if failing:
        return "witness only", (
            f"{KINDS['witness only']}: {lead}, yet the {' and the '.join(failing)} fail"
            f"{'s' if len(failing) == 1 else ''}: differences of the scratch loss do not follow the gradient both "
            "sides agree on, so the scratch loss is not smooth at float64 resolution around this batch or does not "
            "follow its inputs there (float32 arithmetic inside the layer? kinks within the step? a forward that "
            f"ignores small changes of its input, a cache?){also}"
        )
    kinds = {_row_kind(r) for r in others}
    if kinds == {"protocol"}:
        return "protocol", (
            f"{KINDS['protocol']}: {lead} on the harness's own copies, but {_grouped(others)}; fix the layer so that "
            "it leaves what it is handed unchanged and returns arrays of the checked dtype"
        )
    if "inference" in kinds and kinds <= {"inference", "state"}:
        return "inference only", (
            f"{KINDS['inference only']}: the training pass agrees with Keras's (output, loss and every gradient), but "
            f"{_grouped(others)}: the forward with training=False, or the state it reads, differs"
        )
    return "other rows", f"{KINDS['other rows']}: {lead}; what fails: {_grouped(others)}"


def _row_kind(row: Any) -> str:
    """What a report row measures: "forward" (loss, output), "gradient", "witness", "taylor", "state",
    "round trip" or "other" (a row this module does not know: it is named, not interpreted)."""
    name = row.name
    if getattr(row, "measure", "") == "taylor slope" or name.startswith("Taylor remainder"):
        return "taylor"
    if name.startswith("numerical grad"):
        return "witness"
    if name in ("loss", "output"):
        return "forward"
    if name.startswith("grad "):
        return "gradient"
    if name.startswith("state "):
        return "state"
    if name == "weights round trip":
        return "round trip"
    if name == INFERENCE_ROW:
        return "inference"
    if getattr(row, "measure", "") == "protocol":
        return "protocol"
    return "other"


def _short(row: Any) -> str:
    return {"witness": "numerical witness", "taylor": "Taylor row"}.get(_row_kind(row), row.name)


def _grouped(rows: list[Any]) -> str:
    """Failing rows by what they mean: "name, name (meaning); name (meaning)", each meaning said once."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(_row_meaning(row), []).append(row.name)
    return "; ".join(f"{', '.join(names)} ({meaning})" for meaning, names in groups.items())


def _row_meaning(row: Any) -> str:
    """What a failing row says, in a few words."""
    kind = _row_kind(row)
    if kind == "witness":
        return "central differences of the scratch loss disagree with Keras's gradient at sampled coordinates"
    if kind == "taylor":
        return (
            "the scratch gradient does not predict the scratch loss to first order along a random direction "
            f"(remainder slope {row.error:.2f}, 2 for a gradient)"
        )
    if kind == "state":
        return "a non-trainable weight after the training step: its update differs, the momentum or the statistic?"
    if kind == "round trip":
        return "the weights read back from Keras are not the ones written: the two models' weights do not line up"
    if kind == "inference":
        return "the output in inference mode (training=False), from the state after the step, differs"
    if kind == "protocol":
        return "the layer wrote into what it was handed, or returned another dtype or kind: see the row"
    if kind == "forward":
        return "the forward differs"
    if kind == "gradient":
        return "the gradient differs from Keras's"
    return f"error {row.error:.2e} against tolerance {row.tol:.2e}"


def _float32_reading(step: Step | None, steps: list[Step], witness_fails: bool, taylor_fails: bool) -> str:
    """The reading of a comparison whose first difference is float32 rounding in a float64 check (scratch's values
    float32 numbers, differing from Keras's float64 ones by at most F32_ROUNDING_SIZE), or ""."""
    if step is None or step.ours is None or step.theirs is None or np.shape(step.ours) != np.shape(step.theirs):
        return ""
    values = _float32_values(step.ours, step.theirs)
    rel = _norm_rel(step.ours, step.theirs)
    if not values or not rel <= F32_ROUNDING_SIZE:
        return ""
    beyond = next(
        (
            s
            for s in steps
            if s.phase == "backward"
            and not s.passed
            and s.ours is not None
            and np.shape(s.ours) == np.shape(s.theirs)
            and _norm_rel(s.ours, s.theirs) > F32_ROUNDING_SIZE
        ),
        None,
    )
    backward = (
        f"; beyond rounding, {beyond.where} differs by {_norm_rel(beyond.ours, beyond.theirs):.1e}: the backward "
        "differs too"
        if beyond is not None
        else ""
    )
    failing = [name for name, fails in (("numerical witness", witness_fails), ("Taylor row", taylor_fails)) if fails]
    witnesses = (
        f"; the {' and the '.join(failing)} fail{'s' if len(failing) == 1 else ''} on the rounding alone: they "
        "differentiate the scratch loss in float64 and read float32 steps as kinks and noise, so they cannot judge "
        "this backward"
        if failing
        else ""
    )
    return (
        f"{KINDS['float32 arithmetic']}: scratch's {step.where} {values} and differs from Keras's by {rel:.1e} "
        f"relative (norm), float32 rounding (unit roundoff {F32_UNIT:.1e}), which a float64 check (1e-12) fails"
        f"{backward}{witnesses}; check the layer with dtype='float32', or compute it in float64"
    )


def _float32_values(ours: Array, theirs: Array) -> str:
    """How scratch's values show float32 arithmetic against Keras's float64 ones ("" when they do not): a float32
    array, or float64 values that are all float32 numbers (each survives a round trip through float32) where
    Keras's are not."""
    a, b = np.asarray(ours), np.asarray(theirs)
    if b.dtype != np.float64 or a.dtype not in (np.float32, np.float64) or a.size == 0:
        return ""
    if a.dtype == np.float32:
        return "is float32"
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(over="ignore"):
        ours_f32 = bool(np.all(a[finite].astype(np.float32).astype(np.float64) == a[finite]))
        theirs_f32 = bool(np.all(b[finite].astype(np.float32).astype(np.float64) == b[finite]))
    return "holds only float32 numbers" if ours_f32 and not theirs_f32 else ""


def _norm_rel(ours: Array, theirs: Array) -> float:
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0


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
        if first == 1:  # everything h_{t-1} multiplies vanishes at t = 0, where h_{-1} = 0
            return (
                f"the output agrees at t = 0 and first differs at t = 1 (of 0..{len(t) - 1}): a difference in a "
                "term that vanishes at t = 0, where h_{-1} = 0: in how h_{t-1} enters the cell?" + hint
            )
        return (
            f"the output agrees at t = 0..{first - 1} and first differs at t = {first} (of 0..{len(t) - 1}): a "
            "difference that shows only after some steps (one carried through the recurrence, below rounding "
            "before?)"
        )
    parts = [_gate_blocks(step.ours, step.theirs, units, gates)] if gates else []
    below = _below(step, steps)
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

    def own(j: int) -> float:
        """Block j's own scale (floored at sqrt(noise) of the tensor's): a block of small entries is judged on its
        own size, so a difference in it is not lost under a larger block's rounding."""
        block = max(float(np.abs(blocks_a[j]).max(initial=0)), float(np.abs(blocks_b[j]).max(initial=0)))
        return max(block, np.sqrt(noise) * scale)

    differs = [j for j in range(len(gates)) if (np.abs(blocks_a[j] - blocks_b[j]) > noise * own(j)).any()]
    if not differs:
        return ""
    if len(differs) < len(gates):
        agree = ", ".join(gates[j] for j in range(len(gates)) if j not in differs)
        where = " and ".join(cols(j) for j in differs)
        return f"differs in gate{'s' if len(differs) > 1 else ''} {where}; gate(s) {agree} agree"
    errors = [np.linalg.norm(blocks_a[j] - blocks_b[j]) / max(np.linalg.norm(blocks_b[j]), 1e-300) for j in differs]
    ranked = [int(k) for k in np.argsort(errors, kind="stable")[::-1]]
    ordered = [errors[k] for k in ranked]
    gaps = [ordered[k] / max(ordered[k + 1], 1e-300) for k in range(len(ordered) - 1)]
    cut = int(np.argmax(gaps)) + 1  # the blocks above the widest gap between consecutive errors
    if gaps[cut - 1] >= GATE_GAP:
        most = sorted(ranked[:cut])  # in Keras's order
        names = " and ".join(cols(j) for j in most)
        figures = " and ".join(f"{errors[j]:.2g}" for j in most)
        rest = ", ".join(f"{gates[j]} {errors[j]:.2g}" for j in range(len(gates)) if j not in most)
        return (
            f"differs in every gate block, most in gate{'s' if len(most) > 1 else ''} {names}: relative error"
            f"{'s' if len(most) > 1 else ''} {figures} there; in the others {rest}"
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
    ours: Array,
    theirs: Array,
    n: int | None = None,
    z: Array | None = None,
    input_shape: tuple | None = None,
    batch_axis: bool = False,
) -> str:
    """A short, recognisable summary of how `ours` (scratch) differs from `theirs` (Keras). `input_shape`: the
    shape reaching the layer (an image's (H, W, C) lets a flattened output be recognised in another order);
    `batch_axis`: the first axis holds the samples (so rows that differ are samples)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape:
        return f"shapes differ: scratch {a.shape}, Keras {b.shape}"
    bad_a, bad_b = ~np.isfinite(a), ~np.isfinite(b)
    if (bad_a & ~bad_b).any():
        return (
            f"scratch has NaN or infinity where Keras is finite ({int((bad_a & ~bad_b).sum())} of {a.size} entries;"
            " 0/0 or an overflow: a softmax or exponential not shifted by each row's own max?)"
        )
    if (bad_b & ~bad_a).any():
        return f"Keras has NaN or infinity where scratch is finite ({int((bad_b & ~bad_a).sum())} of {a.size} entries)"
    if bad_a.any():  # non-finite in the same places: describe the rest
        keep = ~bad_a
        if not np.array_equal(a[bad_a], b[bad_a], equal_nan=True):
            return f"both sides have NaN or infinity at the same {int(bad_a.sum())} entries, not the same values there"
        a, b = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
    d = a - b
    tiny = _tiny(ours, theirs, a, b)
    if tiny:
        return tiny
    zero = _zero_where_keras_is_not(a, b, z)
    if zero:
        return zero
    layout = _layout(a, b, input_shape)
    if layout:
        return layout
    if (
        a.ndim == 2
        and a.shape[0] == a.shape[1]
        and _close(a, b.T)
        and not _close(b, b.T)  # a symmetric Keras tensor is its own transpose: nothing to tell
    ):
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
            samples = " (these samples only)" if batch_axis else ""
            return f"confined to row(s) {rows.tolist()} of {d.shape[0]}{samples}"
    affine = _affine_per_slice(a, b, batch_axis)
    if affine:
        return affine
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(d)), d.shape)) if d.size else ()
    return f"no simple pattern; the largest difference is at {index}: scratch {a[index]:.6g}, Keras {b[index]:.6g}"


def _tiny(ours: Array, theirs: Array, a: Array, b: Array) -> str:
    """A difference below FACTOR_FIT of the tensor (norm-relative), too small for any factor or layout to be read in
    it: its size and what that size is, or "" for a larger one."""
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    rel = float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0
    if rel == 0 or rel > FACTOR_FIT:
        return ""
    size = f"differs by {rel:.1e} relative (norm)"
    values = _float32_values(ours, theirs)
    if values:
        return f"{size}: float32 rounding; scratch {values} where Keras is float64 (the layer computes in float32)"
    if np.asarray(ours).dtype == np.float32 or np.asarray(theirs).dtype == np.float32:
        return (
            f"{size}: too small to read a pattern in (float32's unit roundoff is {F32_UNIT:.1e}); the float32 "
            "verdict weighs each side's distance from the float64 truth"
        )
    if rel >= F32_UNIT / 16:
        return (
            f"{size}, the size of float32 rounding (unit roundoff {F32_UNIT:.1e}) though both sides return float64: "
            "float32 arithmetic somewhere inside, or a small constant that differs (an epsilon?)"
        )
    return (
        f"{size}: above float64 rounding, far below float32's: operations in another order, amplified by "
        "cancellation, or a tiny constant that differs?"
    )


def _zero_where_keras_is_not(a: Array, b: Array, z: Array | None) -> str:
    """Scratch exactly 0 at most of the entries where it differs, Keras not 0 there: where, how many of Keras's
    nonzero entries, and whether it agrees elsewhere; "" otherwise. A ReLU mask applied to dL/dA itself (0 exactly
    where Z <= 0, `z` given) is named as such."""
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    big = np.abs(a - b) > SIGNIFICANT * scale
    zeros = big & (a == 0) & (b != 0)
    if not zeros.any() or 2 * zeros.sum() < big.sum():
        return ""
    count, nonzero = int(zeros.sum()), int((b != 0).sum())
    rest = int(big.sum()) - count
    elsewhere = "and agrees elsewhere" if rest == 0 else f"and differs at {rest} more entries"
    if z is not None and np.shape(z) == a.shape and rest == 0 and not big[np.asarray(z) > 0].any():
        return (
            f"zeroed where Z <= 0 ({count} entries): scratch is 0 exactly where the pre-activation is not positive "
            "and agrees elsewhere: a ReLU mask applied where Keras applies none (to dL/dA itself, in place: a "
            "backward that writes into its input?)"
        )
    if count == nonzero:
        what = f"scratch is 0 at every one of the {nonzero} entries where Keras is not"
        hint = "a gradient never written, or zeroed?"
    else:
        what = f"scratch is 0 at {count} of {nonzero} entries where Keras is not"
        hint = "contributions lost: overwritten (= where += belongs) or never written (a loop left early)?"
    return f"{what} ({count} of {a.size} entries in all) {elsewhere}: {hint}"


def _affine_per_slice(a: Array, b: Array, batch_axis: bool) -> str:
    """Each feature (last axis) or each sample (first axis, when it is the batch) of scratch an affine map of
    Keras's, c Keras + d, with its own c and d: a per-feature or per-sample scale, a normalisation's epsilon or
    variance. Fitted by least squares where each slice has at least 4 entries (2 more than the fit's unknowns)."""
    if a.ndim < 2:
        return ""
    fits = [("feature", "last axis", a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))]
    if batch_axis:
        fits.append(("sample", "first axis", a.reshape(len(a), -1).T, b.reshape(len(b), -1).T))
    for what, axis, aa, bb in fits:
        if len(aa) < 4:
            continue
        mean_b = bb.mean(axis=0)
        cb = bb - mean_b
        var = (cb * cb).sum(axis=0)
        c = np.where(var > 0, (cb * (aa - aa.mean(axis=0))).sum(axis=0) / np.where(var > 0, var, 1), 1.0)
        d = aa.mean(axis=0) - c * mean_b
        if np.linalg.norm(aa - (c * bb + d)) > FACTOR_FIT * max(float(np.linalg.norm(aa)), 1e-300):
            continue
        shifted = bool(np.abs(d).max() > FACTOR_FIT * float(np.abs(aa).max()))
        scaled = bool(np.abs(c - 1).max() > FACTOR_FIT)
        if np.abs(c - 1).max() < 1e-2:  # near 1: the deviations are what can be read
            scales = f"c - 1 from {float((c - 1).min()):.2g} to {float((c - 1).max()):.2g}"
        else:
            scales = f"c from {float(c.min()):.4g} to {float(c.max()):.4g}"
        shifts = f"d from {d.min():.2g} to {d.max():.2g}"
        lead = f"{what} by {what} ({axis}) scratch = "
        if scaled and shifted:
            return (
                f"{lead}c Keras + d with its own c and d: {scales}, {shifts}; each {what} rescaled and shifted (a "
                "normalisation's epsilon or variance differs?)"
            )
        if scaled:
            return (
                f"{lead}c Keras with its own c: {scales}; each {what} rescaled (a per-{what} scale: a "
                "normalisation's epsilon or variance differs?)"
            )
        return f"{lead}Keras + d with its own d: {shifts}; each {what} shifted (a bias or offset that differs?)"
    return ""


def _number(value: float) -> str:
    """`value` to 6 significant digits, or as (1 +- delta) when those digits would round it to 1."""
    if value != 1 and f"{value:.6g}" == "1":
        return f"(1 {'+' if value > 1 else '-'} {abs(value - 1):.2g})"
    return f"{value:.6g}"


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
        dlfs = b.transpose(3, 2, 0, 1).reshape(a.shape)  # Keras's values read in (F, C, kh, kw) order
        if _close(a, dlfs) and not _close(b, dlfs):  # (a kernel that order leaves as it is tells nothing)
            return (
                "a layout: scratch holds Keras's kernel values in the order (F, C, kh, kw), reshaped, not "
                "transposed: a (c_out, c_in, kh, kw) kernel (deep-learning-from-scratch's) copied without "
                "transpose(2, 3, 1, 0)"
            )
    if a.ndim == 2 and input_shape is not None and len(input_shape) == 3 and a.shape[1] == np.prod(input_shape):
        h, w, c = input_shape
        chw = b.reshape(len(b), h, w, c).transpose(0, 3, 1, 2).reshape(b.shape)
        if c > 1 and _close(a, chw) and not _close(b, chw):
            return "a layout: scratch flattens in (c, h, w) order, Keras in (h, w, c) (channels last)"
    if a.ndim == 4 and a.shape[1] > 2 and a.shape[2] > 2:  # a feature map (N, H, W, C)
        for dy, dx in ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (-1, -1)):
            inner_a = a[:, max(dy, 0) : a.shape[1] + min(dy, 0), max(dx, 0) : a.shape[2] + min(dx, 0)]
            inner_b = b[:, max(-dy, 0) : b.shape[1] + min(-dy, 0), max(-dx, 0) : b.shape[2] + min(-dx, 0)]
            unmoved = b[:, max(dy, 0) : b.shape[1] + min(dy, 0), max(dx, 0) : b.shape[2] + min(dx, 0)]
            if _close(inner_a, inner_b) and not _close(unmoved, inner_b):  # (a map its own shift tells nothing)
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
    if near(2):
        return (
            "a constant factor 2: scratch = 2 x Keras (a 2 from a square's derivative, or gradients accumulated "
            "across calls: the harness runs the backward pass twice)"
        )
    if near(0.5):
        return "a constant factor 0.5: scratch = 0.5 x Keras (a 1/2 too many, or a square's 2 left out?)"
    if c == 0:
        return "scratch is 0 everywhere Keras is not (a gradient never written, or zeroed?)"
    return f"a constant factor: scratch = {_number(c)} x Keras"
