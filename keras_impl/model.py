"""Build the Keras twin of an architecture description and take its loss and gradients with tf.GradientTape.

float64 is true float64 end to end: `keras.config.set_floatx` is set before any layer or loss is created, and every
layer and loss object also gets the dtype explicitly (a loss object left at its default would cast the output to
float32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from keras_impl.activations import KERAS_ACTIVATIONS
from keras_impl.losses import make_loss

tf.config.experimental.enable_op_determinism()


def settings() -> dict[str, str]:
    """The TensorFlow settings that change float32 results, as they are in this process."""
    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "backend": keras.backend.backend(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: oneDNN on)"),
        "op_determinism": "enabled",
    }


def _dense(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.Dense(spec.units, activation=KERAS_ACTIVATIONS[spec.activation], dtype=dtype)


#: The Keras twin of each entry in from_scratch.layers.LAYERS: spec, dtype -> keras layer.
KERAS_LAYERS: dict[str, Callable[[Any, str], keras.layers.Layer]] = {
    "dense": _dense,
}


def build_model(arch: Any, dtype: str = "float64") -> keras.Sequential:
    """The keras.Sequential that `arch` (a from_scratch.arch.Architecture) describes, in `dtype`.

    `arch` is used through its attributes only (input_dim, layers[].kind/units/activation/options), so this
    package does not import from_scratch.
    """
    keras.config.set_floatx(dtype)
    layers = [KERAS_LAYERS[spec.kind](spec, dtype) for spec in arch.layers]
    return keras.Sequential([keras.Input(shape=(arch.input_dim,), dtype=dtype), *layers])


@dataclass
class KerasPass:
    """What one taped forward + backward pass of the Keras model gave, in the scratch side's layout.

    grads: one array per entry of `model.get_weights()` (zeros for non-trainable weights); input_grad: dL/dX.
    """

    loss: float
    grads: list[np.ndarray]
    input_grad: np.ndarray
    output: np.ndarray


def loss_and_gradients(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    loss: str,
    loss_config: dict[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
) -> KerasPass:
    """Loss, output and gradients (weights and input) of `model` on one batch, by tf.GradientTape.

    `loss` is a Keras loss identifier from keras_impl.losses.KERAS_LOSSES and `loss_config` its arguments.
    The forward pass runs in training mode, as a training step does.
    """
    dtype = model.inputs[0].dtype if model.inputs else keras.config.floatx()
    loss_obj = make_loss(loss, loss_config or {}, dtype)
    x_t = tf.constant(x, dtype=dtype)
    y_t = tf.constant(y, dtype=dtype)
    sw = None if sample_weight is None else tf.constant(sample_weight, dtype=dtype)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        output = model(x_t, training=True)
        value = loss_obj(y_t, output, sample_weight=sw)
    trainable = model.trainable_weights
    grads = tape.gradient(value, [*trainable, x_t])
    by_id = {id(v): g for v, g in zip(trainable, grads[:-1])}
    aligned = []
    for v in model.weights:
        g = by_id.get(id(v))
        aligned.append(np.zeros(v.shape, dtype=dtype) if g is None else np.asarray(g))
    return KerasPass(float(value), aligned, np.asarray(grads[-1]), np.asarray(output))
