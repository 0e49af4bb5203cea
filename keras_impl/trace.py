"""The Keras side's intermediate quantities, layer by layer, through the tape.

`trace` runs the model's layers one at a time so that every intermediate tensor can be watched: for a Dense layer
the pre-activation Z = X @ kernel + bias and the activation A = f(Z), exactly the three operations of
`keras.layers.Dense.call` (for a Conv2D, its convolution_op, the bias add and the activation); any other layer is
called as itself. One tape then gives dL/dA and dL/dZ for every layer. tests/test_zoo.py
(`test_keras_trace_is_the_models_own_computation`) checks that this pass
gives the same loss and gradients as calling the model, bit for bit.
Layer state that a training call changes (BatchNormalization's moving statistics) is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_impl.model import batch_tensors


def pre_activation(layer: keras.layers.Layer, h: Any) -> Any:
    """Z of a Dense or Conv2D layer, by the operations of its own `call` before the activation."""
    if isinstance(layer, keras.layers.Conv2D):
        z = layer.convolution_op(h, layer.kernel)
        if layer.use_bias:
            z = ops.add(z, ops.reshape(layer.bias, (1,) * (layer.rank + 1) + (layer.filters,)))
        return z
    z = ops.matmul(h, layer.kernel)
    if layer.bias is not None:
        z = ops.add(z, layer.bias)
    return z


def trace(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    loss: str | Callable[[str], keras.losses.Loss],
    loss_config: dict[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
) -> list[dict[str, np.ndarray]]:
    """Per layer, in order: {"Z", "A", "dA", "dZ"} for Dense and Conv2D layers, {"A", "dA"} for others (NumPy arrays).

    dA is dL/dA, the gradient reaching the layer's output; dZ is dL/dZ. Runs in training mode.
    """
    dtype, loss_obj, x_t, y_t, sw = batch_tensors(model, x, y, loss, loss_config, sample_weight)
    state = [v.numpy() for v in model.non_trainable_weights]
    records: list[dict[str, Any]] = []
    with tf.GradientTape() as tape:
        h = x_t
        for layer in model.layers:
            record: dict[str, Any] = {}
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
                z = pre_activation(layer, h)
                tape.watch(z)
                record["Z"] = z
                h = layer.activation(z) if layer.activation is not None else z
            else:
                h = layer(h, training=True)
            tape.watch(h)
            record["A"] = h
            records.append(record)
        value = loss_obj(y_t, h, sample_weight=sw)
        if model.losses:
            value = value + tf.add_n(model.losses)
    watched = [(i, key) for i, record in enumerate(records) for key in ("Z", "A") if key in record]
    grads = tape.gradient(value, [records[i][key] for i, key in watched])
    out = [{key: np.asarray(t) for key, t in record.items()} for record in records]
    for (i, key), g in zip(watched, grads):
        out[i]["d" + key] = np.zeros(out[i][key].shape, dtype=dtype) if g is None else np.asarray(g)
    for v, saved in zip(model.non_trainable_weights, state):
        v.assign(saved)
    return out
