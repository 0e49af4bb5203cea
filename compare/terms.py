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


def forward_term_sweep(model: Any, x: Array) -> list[dict[str, Array]] | None:
    """The forward sweep of term magnitudes over the model's caches, from |X| of the last batch: per layer
    {"X": terms behind its input, "A": behind its output, and its own, e.g. "Z"}. None if a layer declares none."""
    if not declares_terms(model):
        return None
    magnitude = np.abs(np.asarray(x, np.float64))
    records = []
    for layer in model.layers:
        record = {"X": magnitude, **layer.forward_terms(magnitude)}
        records.append(record)
        magnitude = record["A"]
    return records


def gradient_terms(
    model: Any, x: Array, y: Array, loss: Any, result: BackwardPass, sample_weight: Array | None = None
) -> Terms | None:
    """Term magnitudes for every gradient of `model` (aligned with get_weights()), for dL/dX and for the output
    (the forward sweep's last magnitude), from the `result` of `model.backward_pass(x, y, loss)` just run.
    None when a layer declares no term magnitudes."""
    records = forward_term_sweep(model, x)
    if records is None:
        return None
    w = None if sample_weight is None else np.abs(np.asarray(sample_weight, np.float64))
    p = result.output.astype(np.float64)
    per_layer: list[list[Array]] = []
    if result.fused:  # the layers above the logits layer pass its output through and have no parameters
        top = result.logits_at
        per_layer += [[] for _ in model.layers[top + 1 :]]
        y64 = loss.prepare_targets(np.asarray(y, np.float64), p)
        dZ_abs = loss.reduce_grad(loss.fused_terms(np.abs(y64), np.abs(p)), w)
        params, d_abs, extra = model.layers[top].backward_terms(records[top]["X"], None, dZ_abs)
    else:
        top = len(model.layers) - 1
        grad = np.abs(loss.gradient(np.asarray(y, np.float64), p, sample_weight))
        records[top]["dA"] = grad
        params, d_abs, extra = model.layers[top].backward_terms(records[top]["X"], grad)
    records[top].update(extra)
    per_layer.append(params)
    for layer, record in zip(reversed(model.layers[:top]), reversed(records[:top])):
        record["dA"] = d_abs
        params, d_abs, extra = layer.backward_terms(record["X"], d_abs)
        record.update(extra)
        per_layer.append(params)
    return Terms([m for params in reversed(per_layer) for m in params], d_abs, records[-1]["A"], records)


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
    for layer, record, term in zip(model.layers, z_records, terms):
        activation = getattr(layer, "activation", None)
        if activation is None or not activation.kinked or "Z" not in record:
            continue
        z_mag = term["Z"]
        counts[layer.name] = int(np.sum((np.abs(record["Z"].astype(np.float64)) <= relative * z_mag) & (z_mag > 0)))
    return counts


def rounding_at_kinks(model: Any, x: Array) -> list[str]:
    """Layers whose kinked activation has an input that is rounding noise of its terms (|Z| <= KINK_ROUNDING M_Z)
    in the model's last forward pass on `x`: a mask there is decided by rounding, not by the formula."""
    terms = forward_term_sweep(model, x)
    if terms is None:
        return []
    records = [layer.record() for layer in model.layers]
    return [name for name, count in near_kinks(model, records, terms, KINK_ROUNDING).items() if count]
