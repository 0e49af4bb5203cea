"""Term magnitudes: the backward pass run again on absolute values.

For every gradient entry, the magnitude M of the terms that floating-point arithmetic summed to produce it:

    |dZ| = |dA| * |f'(Z)|                     (softmax: P * (|dA| + sum_k |dA_k| P_k))
    M_W  = M_X^T |dZ|,   M_b = sum_n |dZ|,   |dX| = |dZ| |W|^T   (passed on as the next layer's |dA|)

where M_X is the magnitude of the terms behind the layer's input (a forward sweep: M_Z = M_X |W| + |b|,
M_A = |A| + |f'(Z)| M_Z), which is |X| for the network input, started from the loss gradient's own terms
(`Loss.fused_terms` on the fused path, |dL/dP| otherwise). The rounding error of a computed sum is bounded by a
multiple of u times the sum of its terms' magnitudes, so a tensor whose entries cancel almost completely (a Dense
bias feeding BatchNormalization, whose exact gradient is 0) is rounding noise of size ~u ||M||: the float64
measure takes such a tensor relative to CANCELLATION_FLOOR ||M|| (compare/tolerances.py).

Each layer computes its own terms (`forward_terms`, `backward_terms`: declarations of the layer, see
from_scratch.layers.Layer); a model with a layer that declares none has no term magnitudes (`gradient_terms`
returns None) and its float64 errors are measured plain norm-relative.
Computed in float64 from the scratch model's caches after `backward_pass`; nothing is written onto the layers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from from_scratch.model import BackwardPass

Array = np.ndarray


class Terms(NamedTuple):
    """Term magnitudes: `params` aligned with get_weights(), `input_grad` for dL/dX, `output` for the output, and
    per layer the magnitudes of its recorded quantities (`records`: "A", "dA" and the layer's own, e.g. "Z",
    "dZ"), which the layer-by-layer diagnosis measures against."""

    params: list[Array]
    input_grad: Array
    output: Array
    records: list[dict[str, Array]]


def declares_terms(model: Any) -> bool:
    """Whether every layer of `model` computes its term magnitudes."""
    return all(hasattr(layer, "forward_terms") and hasattr(layer, "backward_terms") for layer in model.layers)


def _inputs(model: Any, x: Any) -> list[Array]:
    return [np.asarray(a) for a in x] if len(model.inputs) > 1 else [np.asarray(x)]


def forward_term_sweep(model: Any, x: Any) -> list[dict[str, Array]] | None:
    """The forward sweep of term magnitudes over the model's caches, from |X| of the last batch: per node, in the
    model's order, {"X": terms behind its input (a list for a merge), "A": behind its output, and its own, e.g. "Z"}.
    None if a layer declares none."""
    if not declares_terms(model):
        return None
    at = {id(t): np.abs(np.asarray(a, np.float64)) for t, a in zip(model.inputs, _inputs(model, x))}
    records = []
    for i, node in enumerate(model.nodes):
        model._restore(i)  # a shared layer's caches of this call
        given = [at[id(t)] for t in node.inputs]
        magnitude = given if node.several else given[0]
        record = {"X": magnitude, **node.layer.forward_terms(magnitude)}
        records.append(record)
        at[id(node.output)] = record["A"]
    return records


def gradient_terms(
    model: Any, x: Any, y: Any, loss: Any, result: BackwardPass, sample_weight: Array | None = None
) -> Terms | None:
    """`_gradient_terms`, with overflow allowed: a bound compounded over many layers (50 BatchNormalizations) may
    exceed float64's range, and the measures then do not use it (compare/tolerances.py `norm_rel_error`)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _gradient_terms(model, x, y, loss, result, sample_weight)


def _gradient_terms(
    model: Any, x: Any, y: Any, loss: Any, result: BackwardPass, sample_weight: Array | None = None
) -> Terms | None:
    """Term magnitudes for every gradient of `model` (aligned with get_weights()), for dL/dX and for the output
    (the forward sweep's last magnitude), from the `result` of `model.backward_pass(x, y, loss)` just run, node by
    node in reverse order: where a tensor feeds several nodes, the magnitudes coming back add up as the gradients do.
    None when a layer declares no term magnitudes."""
    records = forward_term_sweep(model, x)
    if records is None:
        return None
    w = None if sample_weight is None else np.abs(np.asarray(sample_weight, np.float64))
    losses = model._losses(loss)
    weights = getattr(loss, "weights", None) or [None] * len(losses)
    outputs = result.output if isinstance(result.output, list) else [result.output]
    ys = list(y) if len(outputs) > 1 else [y]
    back: dict[int, Array] = {}
    fused: dict[int, Array] = {}
    for o, (t, loss_o, y_o, p, weight) in enumerate(zip(model.outputs, losses, ys, outputs, weights)):
        p = p.astype(np.float64)
        scale = 1.0 if weight is None else abs(weight)
        node = model.logits_node(o, loss_o)
        if node is not None:
            y64 = loss_o.prepare_targets(np.asarray(y_o, np.float64), p)
            fused[node] = loss_o.reduce_grad(loss_o.fused_terms(np.abs(y64), np.abs(p)), w) * scale
        else:
            g = np.abs(loss_o.gradient(np.asarray(y_o, np.float64), p, sample_weight)) * scale
            back[id(t)] = back[id(t)] + g if id(t) in back else g
    per_layer: dict[int, list[Array]] = {}
    for i in range(len(model.nodes) - 1, -1, -1):
        node, record = model.nodes[i], records[i]
        d_abs, dz_abs = back.get(id(node.output)), fused.get(i)
        if d_abs is None and dz_abs is None:
            continue
        model._restore(i)
        if dz_abs is not None:
            if d_abs is not None:  # its output also feeds other nodes: their terms through the activation
                dz_abs = dz_abs + node.layer.backward_terms(record["X"], d_abs)[2].get("dZ", 0)
            params, dx_abs, extra = node.layer.backward_terms(record["X"], None, dz_abs)
        else:
            record["dA"] = d_abs
            params, dx_abs, extra = node.layer.backward_terms(record["X"], d_abs)
        record.update(extra)
        key = id(node.layer)
        per_layer[key] = params if key not in per_layer else [a + b for a, b in zip(per_layer[key], params)]
        for t, m in zip(node.inputs, dx_abs if node.several else [dx_abs]):
            back[id(t)] = back[id(t)] + m if id(t) in back else m
    params = [m for layer in model.layers for m in per_layer.get(id(layer), [np.zeros(p.shape) for p in layer.params])]
    input_terms = [back.get(id(t), np.zeros((len(outputs[0]), *t.shape))) for t in model.inputs]
    out_terms = [records[model.nodes.index(t.node)]["A"] for t in model.outputs]
    return Terms(
        params,
        input_terms[0] if len(input_terms) == 1 else input_terms,
        out_terms[0] if len(out_terms) == 1 else out_terms,
        records,
    )


#: The size below which a pre-activation is rounding noise of its terms (a few hundred ulps of float64): there the
#: two sides may legitimately land on different sides of a kink.
KINK_ROUNDING = 1e-13


def near_kinks(
    model: Any, z_records: list[dict[str, Array]], terms: list[dict[str, Array]], relative: float
) -> dict[str, int]:
    """Per layer with a kinked activation (`Activation.kinked`), how many inputs have |Z| <= relative M_Z with
    M_Z > 0: inputs that an error of `relative` times their terms could put on either side of 0. Exact zeros from
    zero terms (a zero input row with zero bias) are not counted: both sides compute them exactly.

    `z_records`: the pass's per-layer records (with "Z"); `terms`: the term magnitudes' (`forward_term_sweep`).
    """
    counts = {}
    for node, record, term in zip(model.nodes, z_records, terms):
        activation = getattr(node.layer, "activation", None)
        if activation is None or not activation.kinked or "Z" not in record:
            continue
        z_mag = term["Z"]
        counts[node.name] = int(np.sum((np.abs(record["Z"].astype(np.float64)) <= relative * z_mag) & (z_mag > 0)))
    return counts


def rounding_at_kinks(model: Any, x: Array) -> list[str]:
    """Layers whose kinked activation has an input that is rounding noise of its terms (|Z| <= KINK_ROUNDING M_Z)
    in the model's last forward pass on `x`: a mask there is decided by rounding, not by the formula."""
    terms = forward_term_sweep(model, x)
    if terms is None:
        return []
    records = []
    for i, node in enumerate(model.nodes):
        model._restore(i)
        records.append(node.layer.record())
    return [name for name, count in near_kinks(model, records, terms, KINK_ROUNDING).items() if count]
