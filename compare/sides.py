"""Each side's pass as one record: `Side` (loss, output, parameter gradients, dL/dX, the weights after the step, the
per-node records, the inference output), from the scratch model (`scratch_side`, `scratch_inference`) and from its
Keras twin (`keras_side`, `keras_inference`, with the loss as keras_impl takes it: `keras_loss_arguments`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import keras_impl
from from_scratch.graph import Model
from from_scratch.losses import Loss, OutputLosses
from keras_impl.trace import trace as keras_trace

Array = np.ndarray


@dataclass
class Side:
    """One side's pass over one batch, in the scratch layout (the one record both sides return).

    grads: dL/dparam aligned with get_weights() (zeros for non-trainable weights); state: get_weights() after the
    training pass (moving statistics move); records: per layer {"A", "dA", and Dense's "Z", "dZ"}; inference: the
    output of a pass in inference mode (training=False) on the same batch, from the state after the training pass
    (so moving statistics count), or None where none was run."""

    loss: float
    output: Array
    grads: list[Array]
    input_grad: Array
    state: list[Array]
    records: list[dict[str, Array]]
    inference: Array | None = None


def scratch_side(model: Model, x: Any, y: Any, loss: Loss, sample_weight: Array | None) -> tuple[Side, Any]:
    """The scratch pass as a Side, and the BackwardPass it came from (for the term magnitudes)."""
    result = model.backward_pass(x, y, loss, sample_weight)
    return Side(
        result.loss, result.output, result.grads, result.input_grad, model.get_weights(), result.records
    ), result


def keras_loss_arguments(loss: Any) -> tuple[Any, Any, Any]:
    """(twin, config, loss weights) of a scratch loss as keras_impl takes them: the registry name (or a loss outside
    the registry's own `keras_loss`) and its config; for an OutputLosses, one of each per output, and its weights."""
    if isinstance(loss, OutputLosses):
        parts = [keras_loss_arguments(item) for item in loss.losses]
        return [p[0] for p in parts], [p[1] for p in parts], loss.weights
    twin = loss.keras_loss if hasattr(loss, "keras_loss") else loss.name  # a loss outside the registry brings its own
    return twin, loss.config(), None


def keras_side(model: Any, x: Any, y: Any, loss: Loss, sample_weight: Array | None) -> Side:
    """The Keras pass (one taped call of the model) and its node-by-node trace, as a Side."""
    twin, config, weights = keras_loss_arguments(loss)
    before = model.get_weights()
    result = keras_impl.loss_and_gradients(model, x, y, twin, config, sample_weight, weights)
    state = model.get_weights()
    model.set_weights(before)
    records = keras_trace(model, x, y, twin, config, sample_weight, weights)
    model.set_weights(state)
    inference = keras_inference(model, x)
    return Side(result.loss, result.output, result.grads, result.input_grad, state, records, inference)


def keras_inference(model: Any, x: Any) -> Any:
    """The Keras model's output in inference mode (model(x, training=False)) from its current weights (a list for
    several outputs)."""
    dtype = model.inputs[0].dtype
    xs = [np.asarray(a).astype(dtype) for a in x] if len(model.inputs) > 1 else np.asarray(x).astype(dtype)
    out = model(xs, training=False)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def scratch_inference(model: Model, x: Any) -> Any:
    """The scratch model's output in inference mode (forward(x, training=False)) from its current weights."""
    return model.forward(x, training=False)
