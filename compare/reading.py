"""What kind of difference a comparison found, and on what evidence (`classify`): the report's rows read together,
the output and loss (does the scratch forward compute Keras's function?), the numerical witness (is Keras's gradient
the derivative of the scratch loss?) and the Taylor row (is the scratch gradient the derivative of the scratch loss?),
into one of KINDS and a sentence saying it; float32 rounding in a float64 check is read as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.attention_patterns import attention_where
from compare.patterns import F32_UNIT, _float32_values, _norm_rel
from compare.trace import INFERENCE_ROW, INFERENCE_STEP, Step

#: Below this norm-relative size a difference is at the scale of float32 rounding compounded through a layer (about
#: 170 units of F32_UNIT); a formula or convention that differs moves a quantity by far more (BatchNormalization's
#: epsilon 1e-6 against 1e-3 on standard normal inputs: 6e-4 on its output).
F32_ROUNDING_SIZE = 1e-5

#: What each kind of difference is called (`Diagnosis.kind`; the JSON's "kind").
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
    fwd_where = _where(fwd_step, steps) if fwd_step is not None else (fwd_rows[0].name if fwd_rows else "")
    bwd_where = _where(bwd_step, steps) if bwd_step is not None else (grad_rows[0].name if grad_rows else "")
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


#: The row names' endings of an attention call's gradients with respect to the tensors it was handed
#: (compare/rows.py: "<node> dL/dquery"); "<node> attention scores" is the probabilities it returns, a forward row.
ATTENTION_INPUT_GRADIENTS = (" dL/dquery", " dL/dvalue", " dL/dkey")


def _where(step: Step, steps: list[Step]) -> str:
    """A step's place, with its head and block inside an attention call."""
    return attention_where(step, steps) or step.where


def _row_kind(row: Any) -> str:
    """What a report row measures: "forward" (loss, output, returned attention scores), "gradient" (of a parameter,
    an input, a tensor an attention call was handed), "witness", "taylor", "state",
    "round trip" or "other" (a row this module does not know: it is named, not interpreted)."""
    name = row.name
    if getattr(row, "measure", "") == "taylor slope" or name.startswith("Taylor remainder"):
        return "taylor"
    if name.startswith("numerical grad"):
        return "witness"
    if name in ("loss", "output") or name.endswith(" attention scores"):
        return "forward"
    if name.startswith("grad ") or name.endswith(ATTENTION_INPUT_GRADIENTS):
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
