"""The rows and steps of a comparison from two `Side`s: every compared quantity of a model (`quantities`: the
table's rows and the per-node trace steps, from one list), judged by one rule (`judge`: in float64 against the other
side, in float32 against the float64 truth, see compare/tolerances.py) in `compare_sides`; and the rows that are not
quantities of a pass: the weights' round trip (`round_trip_row`) and the layer protocol (`protocol_rows`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from compare.diagnosis import INFERENCE_ROW, INFERENCE_STEP, Step
from compare.report_rows import Row
from compare.sides import Side
from compare.terms import Terms
from compare.tolerances import (
    CANCELLATION_FLOOR,
    F32_FACTOR,
    F64_TOL,
    ROUND_TRIP_TOL,
    max_abs_error,
    max_rel_error,
    norm_rel_error,
    truth_rel_error,
)
from compare.trace import input_quantity, node_links, scratch_parts
from from_scratch.graph import Model
from from_scratch.watch import Watch

Array = np.ndarray

#: One compared quantity: (row name or None for trace-only, its place in the table, trace step or None, getter on a
#: Side, getter on Terms). The table lists loss, output, the weights in get_weights() order, then dL/dX.
Quantity = tuple[str | None, int, Step | None, Callable[[Side], Array], Callable[[Terms], Array | None]]


def judge(
    dtype: str, ours: Array, theirs: Array, truth: Array | None, terms: Array | None, again: Array | None = None
) -> tuple[float, str, float]:
    """(error, measure, tolerance) for scratch `ours` against Keras `theirs`.

    float64: norm-relative, with the cancellation floor where term magnitudes are known. float32: neither side may
    be more than F32_FACTOR times farther from the float64 truth `truth` than float32 rounding explains, gauged by
    the other side and by `again`, Keras's float32 result with inputs and weights moved by one ulp
    (tolerances.truth_rel_error): no per-layer knowledge needed."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape:
        return float("inf"), "norm-rel", F64_TOL
    if dtype == "float32" and truth is not None:
        return truth_rel_error(ours, theirs, np.asarray(truth), terms, again), "vs float64", F32_FACTOR
    return norm_rel_error(ours, theirs, terms, CANCELLATION_FLOOR, again), "norm-rel", F64_TOL


def _each(value: Any, k: int, several: bool) -> Any:
    """Entry k of a per-output (per-input) list, or the value itself for a model of one."""
    return value[k] if several and value is not None else value


def quantities(model: Model, logits_at: int | None, records: list[dict[str, Array]] | None = None) -> list[Quantity]:
    """Every compared quantity of a model: the table's rows (loss, each output, each parameter's gradient or, for a
    non-trainable weight, its value after the step, dL/dX per input) and the per-node steps in the order of
    computation (forward Z, A per node, the loss; backward dA, dZ per node from the last, each layer's parameter
    gradients at its first call, which the backward reaches last; dL/dX).
    dL/dA is compared where the scratch pass has one (`records`: BackwardPass.records; without them, below
    `logits_at` only, as in a chain): not at a node the loss took its logits from, nor at the pass-through layers
    above it."""
    names = model.weight_names()
    trainable = model.trainable
    offsets = dict(
        zip((id(layer) for layer in model.layers), np.cumsum([0] + [len(lay.params) for lay in model.layers]))
    )
    first_call = {id(calls[0]): True for calls in model.calls.values()}
    outputs, inputs = len(model.outputs), len(model.inputs)
    producers, consumers, input_consumers = node_links(model)
    out: list[Quantity] = []

    def add(
        row: str | None,
        phase: str | None,
        node: int,
        node_name: str,
        quantity: str,
        get: Callable[[Side], Array],
        terms: Callable[[Terms], Array | None],
        place: int = 0,
    ) -> None:
        step = None if phase is None else Step(phase, node, node_name, quantity)
        if step is not None and phase == "backward":  # where its gradient flows in the graph
            if node:
                step = replace(step, producers=producers[node - 1], consumers=consumers[node - 1])
            elif quantity.startswith("dL/dX (input"):
                k = next(k for k in range(inputs) if input_quantity(model, k) == quantity)
                step = replace(step, consumers=input_consumers[k])
        out.append((row, place, step, get, terms))

    for i, node in enumerate(model.nodes):
        recorded = _recorded(node.layer)
        # per head for an attention call: Q, K, V, the scores S, P and the contexts C; then Z (a Dense's), A
        for key in _attention_keys(node, "forward") + tuple(k for k in ("Z", "A") if k in recorded):
            add(
                None,
                "forward",
                i + 1,
                node.name,
                key,
                lambda s, i=i, key=key: s.records[i][key],
                lambda m, i=i, key=key: m.records[i].get(key),
            )
    add("loss", "forward", 0, "", "loss", lambda s: np.array(s.loss), lambda m: None, 0)
    for o, t in enumerate(model.outputs):
        suffix = f" {t.node.name}" if outputs > 1 else ""
        several = outputs > 1
        add(
            f"output{suffix}",
            None,
            0,
            "",
            "output",
            lambda s, o=o, several=several: _each(s.output, o, several),
            lambda m, o=o, several=several: _each(m.output, o, several),
            1,
        )
        row = INFERENCE_ROW.replace("output", f"output{suffix}", 1)
        add(row, None, 0, "", "", lambda s, o=o, several=several: _each(s.inference, o, several), lambda m: None, 1)
    for i in range(len(model.nodes) - 1, -1, -1):
        node = model.nodes[i]
        recorded = _recorded(node.layer)
        dA_skipped = ("dA" not in records[i]) if records is not None else (logits_at is not None and i >= logits_at)
        backward = [k for k in ("dA", "dZ") if k in recorded and not (k == "dA" and dA_skipped)]  # fused: from dZ
        # then an attention call's dC, dP, dS, dV, dK, dQ: the order its backward makes them
        for key in (*backward, *_attention_keys(node, "backward")):
            add(
                None,
                "backward",
                i + 1,
                node.name,
                f"dL/d{key[1:]}",
                lambda s, i=i, key=key: s.records[i][key],
                lambda m, i=i, key=key: m.records[i].get(key),
            )
        for role in _attention_roles(node):  # a row per tensor the call was handed: dL/dquery, dL/dvalue, ...
            add(
                f"{node.name} dL/d{role}",
                "backward",
                i + 1,
                node.name,
                f"dL/d{role}",
                lambda s, i=i, role=role: s.records[i]["d" + role],
                lambda m, i=i, role=role: m.records[i].get("d" + role),
                1,
            )
        if node.options.get("return_attention_scores") and "P" in _attention_keys(node, "forward"):  # P Keras returns
            add(
                f"{node.name} attention scores",
                None,
                0,
                "",
                "",
                lambda s, i=i: s.records[i]["P"],
                lambda m, i=i: m.records[i].get("P"),
                1,
            )
        if id(node) not in first_call:
            continue
        layer = node.layer
        for j, label in enumerate(layer.param_names()):
            k = int(offsets[id(layer)] + j)
            if trainable[k]:
                add(
                    f"grad {names[k]}",
                    "backward",
                    i + 1,
                    node.name,
                    f"dL/d{label}",
                    lambda s, k=k: s.grads[k],
                    lambda m, k=k: m.params[k],
                    2 + k,
                )
            else:  # a non-trainable weight (moving statistics): its value after the training pass
                add(
                    f"state {names[k]} after step",
                    None,
                    0,
                    "",
                    "",
                    lambda s, k=k: s.state[k],
                    lambda m, k=k: m.params[k],
                    2 + k,
                )
    for j, t in enumerate(model.inputs):
        suffix = f" {t.node.name}" if inputs > 1 else ""
        several = inputs > 1
        add(
            f"grad input{suffix}",
            "backward",
            0,
            "",
            input_quantity(model, j),
            lambda s, j=j, several=several: _each(s.input_grad, j, several),
            lambda m, j=j, several=several: _each(m.input_grad, j, several),
            2 + len(names),
        )
    for o, t in enumerate(model.outputs):  # run after the step
        several = outputs > 1
        step = INFERENCE_STEP if not several else INFERENCE_STEP.replace("output", f"output {t.node.name}", 1)
        add(
            None, "forward", 0, "", step, lambda s, o=o, several=several: _each(s.inference, o, several), lambda m: None
        )
    return out


#: An attention call's per-head quantities (from_scratch.attention.MultiHeadAttention.record), in the order the
#: forward pass makes them, and their gradients in the order the backward pass makes them.
ATTENTION_FORWARD = ("Q", "K", "V", "S", "P", "C")
ATTENTION_BACKWARD = ("dC", "dP", "dS", "dV", "dK", "dQ")


def _attention_keys(node: Any, phase: str) -> tuple[str, ...]:
    """The per-head quantities of an attention call whose layer records them (from_scratch's; a user's layer
    checked against Keras's may record none)."""
    if "roles" not in node.options:
        return ()
    own = set(node.layer.record()) if hasattr(node.layer, "record") else set()
    return tuple(k for k in (ATTENTION_FORWARD if phase == "forward" else ATTENTION_BACKWARD) if k in own)


def _attention_roles(node: Any) -> tuple[str, ...]:
    """The differentiable tensors an attention call was handed (the mask is not), in Keras's argument order, where
    its layer records their gradients (dquery, ...)."""
    own = set(node.layer.record()) if hasattr(node.layer, "record") else set()
    roles = node.options.get("roles", ())
    return tuple(r for r in roles if r != "attention_mask" and "d" + r in own)


def _recorded(layer: Any) -> tuple[str, ...]:
    """Which of Z/A/dA/dZ a layer's records hold on both sides: A and dA always, Z and dZ for layers that record
    them (Dense)."""
    own = tuple(layer.record()) if hasattr(layer, "record") else ()
    return ("A", "dA") + tuple(k for k in own if k in ("Z", "dZ"))


def compare_sides(
    model: Model,
    logits_at: int | None,
    ours: Side,
    theirs: Side,
    truth: Side | None,
    terms: Terms | None,
    dtype: str,
    again: Side | None = None,
) -> tuple[list[Row], list[Step]]:
    """The table's rows and the per-node steps for one pair of passes (in float32 also the float64 truth and
    Keras's float32 result on one-ulp-jittered values, `again`)."""
    rows, steps = [], []
    n = len(ours.records[0]["A"]) if ours.records else len(np.asarray(ours.output))
    for row_name, place, step, get, get_terms in quantities(model, logits_at, ours.records):
        a, b = get(ours), get(theirs)
        t = get(truth) if truth is not None else None
        m = get_terms(terms) if terms is not None else None
        error, measure, tol = judge(dtype, a, b, t, m, get(again) if again is not None else None)
        if row_name is not None:
            rows.append(
                (place, Row(row_name, np.shape(a), max_abs_error(a, b), max_rel_error(a, b), error, measure, tol))
            )
        if step is not None:
            node = model.nodes[step.layer - 1] if step.layer else None
            layer = node.layer if node is not None else None
            kinked = getattr(getattr(layer, "activation", None), "kinked", False)  # then Z tells about masks at 0
            z = ours.records[step.layer - 1].get("Z") if kinked else None
            shape = model.node_input_shapes[step.layer - 1] if node is not None and not node.several else None
            context = {"n": n, "z": z} if step.phase == "backward" else {}
            judged = step.judged(
                a, b, error, error <= tol and bool(np.isfinite(error)), {**context, "input_shape": shape}
            )
            steps.append(replace(judged, parts=scratch_parts(model, judged, ours.records)))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])], steps


def protocol_rows(watch: Watch, dtype: str) -> list[Row]:
    """The layer protocol over the harness's passes (training forward and backward, twice, and the inference pass):
    one passing row when no layer wrote into what it was handed and every output, dL/dX and parameter gradient was
    a real array of `dtype`; otherwise a failing row per breach, naming the layer, the argument and the call."""
    if not watch.breaches:
        return [
            Row(
                f"protocol: x and dy left unchanged, results {dtype} ({watch.calls} layer calls)",
                (watch.calls,),
                0.0,
                0.0,
                0.0,
                "protocol",
                0.0,
            )
        ]
    return [Row(breach.text, (watch.calls,), 0.0, 0.0, 1.0, "protocol", 0.0) for breach in watch.breaches]


def round_trip_row(weights: list[Array], back: list[Array]) -> Row:
    """Weights copied into Keras and read back must be bit-identical."""
    worst = max((max_abs_error(a, b) for a, b in zip(weights, back)), default=0.0)
    if len(weights) != len(back) or any(np.shape(a) != np.shape(b) for a, b in zip(weights, back)):
        worst = float("inf")
    rel = max((max_rel_error(a, b) for a, b in zip(weights, back)), default=0.0)
    return Row("weights round trip", (sum(np.size(w) for w in weights),), worst, rel, worst, "exact", ROUND_TRIP_TOL)
