"""Build the Keras twin of an architecture description and take its loss and gradients with tf.GradientTape.

float64 is true float64 end to end: `keras.config.set_floatx` is set before any layer or loss is created, and every
layer and loss object also gets the dtype explicitly (a loss object left at its default would cast the output to
float32).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import keras_impl
from keras_impl.activations import KERAS_ACTIVATIONS
from keras_impl.application_layers import KERAS_APPLICATION_LAYERS
from keras_impl.losses import make_loss
from keras_impl.recurrent import KERAS_SEQUENCE_LAYERS

tf.config.experimental.enable_op_determinism()


def settings() -> dict[str, str]:
    """The TensorFlow settings that change float32 results, as they are in this process."""
    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "backend": keras.backend.backend(),
        "TF_ENABLE_ONEDNN_OPTS": (
            "unknown: TensorFlow was imported before keras_impl (import keras_impl or compare first)"
            if keras_impl.TENSORFLOW_PRELOADED
            else os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: oneDNN on)")
        ),
        "op_determinism": "enabled",
    }


def _regularizer(options: dict[str, float], prefix: str) -> keras.regularizers.Regularizer | None:
    l1, l2 = options.get(f"{prefix}_l1", 0.0), options.get(f"{prefix}_l2", 0.0)
    return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None


def _dense(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.Dense(
        spec.units,
        activation=KERAS_ACTIVATIONS[spec.activation],
        kernel_regularizer=_regularizer(spec.options, "kernel"),
        bias_regularizer=_regularizer(spec.options, "bias"),
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="backprop_parity")
class FixedMaskDropout(keras.layers.Layer):
    """Dropout with a mask set from outside: where(M, X * s, 0), s = 1 / (1 - rate), in training; X in inference.

    This is exactly the arithmetic of TensorFlow's stateless_dropout behind keras.layers.Dropout (scale first,
    then `where` on the keep-mask), with the mask given instead of drawn from TensorFlow's Philox generator,
    which NumPy cannot reproduce.
    tests/test_layers_parity.py::test_fixed_mask_dropout_equals_keras_dropout_given_its_mask shows that, fed the
    mask Keras's own Dropout
    draws, this layer gives Keras's Dropout output bit for bit.
    """

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.mask: np.ndarray | None = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training or self.rate == 0:
            return inputs
        if self.mask is None:
            raise ValueError(f"layer {self.name!r}: set .mask before a training call")
        scale = tf.constant(1.0 / (1.0 - self.rate), dtype=inputs.dtype)
        keep = tf.constant(np.asarray(self.mask) > 0)
        return tf.where(keep, inputs * scale, tf.zeros_like(inputs))


def _dropout(spec: Any, dtype: str) -> keras.layers.Layer:
    return FixedMaskDropout(spec.options["rate"], dtype=dtype)


def _batch_normalization(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(
        momentum=spec.options.get("momentum", 0.99), epsilon=spec.options.get("epsilon", 1e-3), dtype=dtype
    )


def _layer_normalization(spec: Any, dtype: str) -> keras.layers.Layer:
    return keras.layers.LayerNormalization(epsilon=spec.options.get("epsilon", 1e-3), dtype=dtype)


def _conv2d(spec: Any, dtype: str) -> keras.layers.Layer:
    o = spec.options
    return keras.layers.Conv2D(
        spec.units,
        o["kernel_size"],
        strides=o["strides"],
        padding=o["padding"],
        dilation_rate=o["dilation_rate"],
        activation=KERAS_ACTIVATIONS[spec.activation],
        use_bias=o.get("use_bias", True),
        dtype=dtype,
    )


def _pooling(cls: type[keras.layers.Layer]) -> Callable[[Any, str], keras.layers.Layer]:
    def make(spec: Any, dtype: str) -> keras.layers.Layer:
        o = spec.options
        return cls(o["pool_size"], strides=o["strides"], padding=o["padding"], dtype=dtype)

    return make


#: The Keras twin of each entry in from_scratch.layers.LAYERS: spec, dtype -> keras layer.
KERAS_LAYERS: dict[str, Callable[[Any, str], keras.layers.Layer]] = {
    "dense": _dense,
    "dropout": _dropout,
    "batch_normalization": _batch_normalization,
    "layer_normalization": _layer_normalization,
    "conv2d": _conv2d,
    "max_pooling2d": _pooling(keras.layers.MaxPooling2D),
    "average_pooling2d": _pooling(keras.layers.AveragePooling2D),
    "global_average_pooling2d": lambda spec, dtype: keras.layers.GlobalAveragePooling2D(dtype=dtype),
    "flatten": lambda spec, dtype: keras.layers.Flatten(dtype=dtype),
    "reshape": lambda spec, dtype: keras.layers.Reshape(spec.options["target_shape"], dtype=dtype),
    **KERAS_SEQUENCE_LAYERS,  # simple_rnn, lstm, gru, embedding (keras_impl/recurrent.py)
    **KERAS_APPLICATION_LAYERS,  # zero_padding2d, depthwise_conv2d, activation, re_lu
}


def build_model(arch: Any, dtype: str = "float64") -> keras.Sequential:
    """The keras.Sequential that `arch` (a from_scratch.arch.Architecture) describes, in `dtype`.

    `arch` is used through its attributes only (input_shape, layers[].kind/units/activation/options), so this
    package does not import from_scratch.
    """
    keras.config.set_floatx(dtype)
    layers = [KERAS_LAYERS[spec.kind](spec, dtype) for spec in arch.layers]
    return keras.Sequential([keras.Input(shape=tuple(arch.input_shape), dtype=dtype), *layers])


@dataclass
class KerasPass:
    """What one taped forward + backward pass of the Keras model gave, in the scratch side's layout.

    grads: one array per entry of `model.get_weights()` (zeros for non-trainable weights); input_grad: dL/dX.
    """

    loss: float
    grads: list[np.ndarray]
    input_grad: np.ndarray
    output: np.ndarray


def batch_tensors(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    loss: str | Callable[[str], keras.losses.Loss],
    loss_config: dict[str, Any] | None,
    sample_weight: np.ndarray | None,
) -> tuple[str, keras.losses.Loss, tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """The model's dtype, the Keras loss object in it, and x, y, sample_weight as tensors of that dtype.

    `loss` is a name from keras_impl.losses.KERAS_LOSSES (built with `loss_config`), or a function dtype -> loss
    object for a loss that is not in the registry (the harness's projection <Y, G> for a single layer)."""
    dtype = model.inputs[0].dtype if model.inputs else keras.config.floatx()
    loss_obj = loss(dtype) if callable(loss) else make_loss(loss, loss_config or {}, dtype)
    sw = None if sample_weight is None else tf.constant(sample_weight, dtype=dtype)
    return dtype, loss_obj, tf.constant(x, dtype=dtype), tf.constant(y, dtype=dtype), sw


def loss_and_gradients(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    loss: str | Callable[[str], keras.losses.Loss],
    loss_config: dict[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
) -> KerasPass:
    """Loss, output and gradients (weights and input) of `model` on one batch, by tf.GradientTape.

    `loss` is a Keras loss identifier from keras_impl.losses.KERAS_LOSSES and `loss_config` its arguments.
    The forward pass runs in training mode, as a training step does.
    """
    dtype, loss_obj, x_t, y_t, sw = batch_tensors(model, x, y, loss, loss_config, sample_weight)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        output = model(x_t, training=True)
        value = loss_obj(y_t, output, sample_weight=sw)
        if model.losses:  # regularisation penalties, added as a Keras training step adds them
            value = value + tf.add_n(model.losses)
    trainable = model.trainable_weights
    grads = tape.gradient(value, [*trainable, x_t])
    by_id = {id(v): g for v, g in zip(trainable, grads[:-1])}
    aligned = []
    for v in model.weights:
        g = by_id.get(id(v))
        if isinstance(g, tf.IndexedSlices):  # an Embedding's: one row per position, made dense (repeats added)
            g = tf.convert_to_tensor(g)
        aligned.append(np.zeros(v.shape, dtype=dtype) if g is None else np.asarray(g))
    # an Embedding casts its float input to int32 indices: the tape has no gradient for x (None), the scratch side 0
    input_grad = np.zeros(x_t.shape, dtype=dtype) if grads[-1] is None else np.asarray(grads[-1])
    return KerasPass(float(value), aligned, input_grad, np.asarray(output))


def train_step(
    model: keras.Model,
    optimizer: Any,
    x: np.ndarray,
    y: np.ndarray,
    loss: str,
    loss_config: dict[str, Any] | None = None,
) -> KerasPass:
    """One eager training step: taped loss and gradients, then `optimizer.apply_gradients` (clipping, weight
    decay and the update rule in Keras's own order). Returns the pass as it was before the update."""
    result = loss_and_gradients(model, x, y, loss, loss_config)
    trainable = {id(v) for v in model.trainable_weights}
    pairs = [(g, v) for g, v in zip(result.grads, model.weights) if id(v) in trainable]
    optimizer.apply_gradients([(tf.constant(g), v) for g, v in pairs])
    return result


def evaluate_loss(
    model: keras.Model, x: np.ndarray, y: np.ndarray, loss: str, loss_config: dict[str, Any] | None = None
) -> tuple[float, np.ndarray]:
    """(loss, output) of the model in inference mode on (x, y), with the Keras loss object."""
    dtype = model.inputs[0].dtype if model.inputs else keras.config.floatx()
    output = model(tf.constant(x, dtype=dtype), training=False)
    value = make_loss(loss, loss_config or {}, dtype)(tf.constant(y, dtype=dtype), output)
    return float(value), np.asarray(output)


def astype(model: keras.Model, dtype: str) -> keras.Model:
    """The same Sequential model in `dtype`: every layer rebuilt from its own config with that dtype, the weights
    copied (float32 to float64 is exact). A FixedMaskDropout keeps its mask. Used for the float64 truth that
    float32 comparisons are measured against."""

    inputs = keras.Input(shape=model.input_shape[1:], dtype=dtype)
    copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: rebuilt(layer, dtype))
    copy.set_weights([np.asarray(w).astype(dtype) for w in model.get_weights()])
    return copy


def rebuilt(layer: keras.layers.Layer, dtype: str) -> keras.layers.Layer:
    """`layer` made anew in `dtype` from its own config (its weights are not copied). A Lambda keeps its function
    object: its config carries the function's code without the names it reads from its module or closure (a lambda
    written in a script or a test), so a rebuilt one could not run. A FixedMaskDropout keeps its mask."""
    from keras.src.saving.serialization_lib import SafeModeScope

    if isinstance(layer, keras.layers.Lambda):
        config = {k: v for k, v in layer.get_config().items() if k in ("name", "trainable")}
        return keras.layers.Lambda(
            layer.function,
            output_shape=layer._output_shape,
            mask=layer.mask,
            arguments=layer.arguments,
            dtype=dtype,
            **config,
        )
    with SafeModeScope(False):  # the caller's own layer rebuilt in this process: not read from a file
        twin = layer.__class__.from_config({**layer.get_config(), "dtype": dtype})
    if isinstance(layer, FixedMaskDropout):
        twin.mask = layer.mask
    return twin
