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
from keras_impl.attention import FixedMaskMultiHeadAttention, call_attention, multi_head_attention
from keras_impl.losses import make_loss
from keras_impl.recurrent import KERAS_SEQUENCE_LAYERS
from keras_impl.sequence import KERAS_ENCODER_LAYERS

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
        self.supports_masking = True  # as keras.layers.Dropout: a Keras mask passes through

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
    **KERAS_ENCODER_LAYERS,  # global_average_pooling1d, position_embedding (keras_impl/sequence.py)
}


#: The merge layers' twins (from_scratch/merge.py): called on a list of tensors.
KERAS_LAYERS.update(
    {
        "add": lambda spec, dtype: keras.layers.Add(dtype=dtype),
        "subtract": lambda spec, dtype: keras.layers.Subtract(dtype=dtype),
        "multiply": lambda spec, dtype: keras.layers.Multiply(dtype=dtype),
        "average": lambda spec, dtype: keras.layers.Average(dtype=dtype),
        "maximum": lambda spec, dtype: keras.layers.Maximum(dtype=dtype),
        "minimum": lambda spec, dtype: keras.layers.Minimum(dtype=dtype),
        "concatenate": lambda spec, dtype: keras.layers.Concatenate(axis=spec.options.get("axis", -1), dtype=dtype),
        "dot": lambda spec, dtype: keras.layers.Dot(axes=spec.options.get("axes", -1), dtype=dtype),
        "multi_head_attention": multi_head_attention,  # called with its roles (keras_impl/attention.py)
    }
)


def build_model(arch: Any, dtype: str = "float64") -> keras.Model:
    """The Keras model that `arch` (a from_scratch Architecture or GraphArchitecture) describes, in `dtype`: every
    layer made from its spec and named as the description names it, then called as the description's calls say.
    A chain (one input, each layer called once on the one before) is a keras.Sequential, any other graph a
    functional keras.Model.

    `arch` is used through its `graph()` form only (inputs, layers[].kind/units/activation/options, calls,
    outputs), so this package does not import from_scratch.
    """
    keras.config.set_floatx(dtype)
    graph = arch.graph()
    layers = {}
    for name, spec in graph.layers:
        layer = KERAS_LAYERS[spec.kind](spec, dtype)
        layer.name = name
        layers[name] = layer
    tensors = {name: keras.Input(shape=tuple(shape), dtype=dtype, name=name) for name, shape in graph.inputs}
    chain = len(graph.inputs) == 1 and len(graph.outputs) == 1
    previous = graph.inputs[0][0]
    for call, out in zip(graph.calls, graph.output_names()):
        args = [tensors[t] for t in call.inputs]  # a merge is called on its list of tensors, any other layer on one
        options = dict(getattr(call, "options", ()))
        if "roles" in options:  # an attention call: query, value, key=, attention_mask=, and its flags
            tensors[out] = call_attention(layers[call.layer], args, options)
        else:
            tensors[out] = layers[call.layer](args if len(args) > 1 else args[0])
        chain = chain and call.inputs == (previous,)
        previous = out
    chain = chain and len(graph.calls) == len(graph.layers) and graph.outputs == (previous,)
    if chain:
        return keras.Sequential([keras.Input(shape=tuple(graph.inputs[0][1]), dtype=dtype), *layers.values()])
    inputs = [tensors[name] for name, _ in graph.inputs]
    outputs = [tensors[name] for name in graph.outputs]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs)


def twin_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in the order of its weights, without its InputLayers (a functional model lists them)."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


@dataclass
class KerasPass:
    """What one taped forward + backward pass of the Keras model gave, in the scratch side's layout.

    grads: one array per entry of `model.get_weights()` (zeros for non-trainable weights); input_grad: dL/dX (a
    list, one per input, for a model of several inputs); output: the output (a list for several outputs).
    """

    loss: float
    grads: list[np.ndarray]
    input_grad: Any
    output: Any


def _several(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def batch_tensors(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Any,
    loss_config: Any,
    sample_weight: np.ndarray | None,
) -> tuple[str, list[keras.losses.Loss], list[tf.Tensor], list[tf.Tensor], tf.Tensor | None]:
    """The model's dtype, one Keras loss object per output in it, and x, y (one tensor per input and per output)
    and sample_weight as tensors of that dtype.

    `loss` is a name from keras_impl.losses.KERAS_LOSSES (built with `loss_config`), or a function dtype -> loss
    object for a loss that is not in the registry (the harness's projection <Y, G> for a single layer); for a model of
    several outputs, a list of them (and `loss_config` a list of configs), or one for every output."""
    dtype = model.inputs[0].dtype if model.inputs else keras.config.floatx()
    outputs = len(model.outputs) if getattr(model, "outputs", None) else 1
    losses = _several(loss) if isinstance(loss, (list, tuple)) else [loss] * outputs
    configs = list(loss_config) if isinstance(loss_config, (list, tuple)) else [loss_config] * len(losses)
    loss_objs = [
        item(dtype) if callable(item) else make_loss(item, config or {}, dtype) for item, config in zip(losses, configs)
    ]
    sw = None if sample_weight is None else tf.constant(sample_weight, dtype=dtype)
    xs = [tf.constant(a, dtype=dtype) for a in _several(x)]
    ys = [tf.constant(a, dtype=dtype) for a in (_several(y) if outputs > 1 else [y])]
    return dtype, loss_objs, xs, ys, sw


def total_loss(
    model: keras.Model,
    loss_objs: list[keras.losses.Loss],
    ys: list[tf.Tensor],
    outputs: Any,
    sw: tf.Tensor | None,
    loss_weights: Any = None,
    penalties: bool = True,
) -> tf.Tensor:
    """The loss a compiled Keras model trains on: per output its loss cast to the model's dtype and multiplied by its
    weight (keras's CompileLoss: ops.cast, then ops.multiply by the weight), the outputs' values summed in order,
    then the layers' regularisation penalties (model.losses) added."""
    dtype = ys[0].dtype
    weights = list(loss_weights) if loss_weights is not None else [None] * len(loss_objs)
    values = []
    for loss_obj, y_t, out, w in zip(loss_objs, ys, _several(outputs), weights):
        value = keras.ops.cast(loss_obj(y_t, out, sample_weight=sw), dtype)
        if w is not None:
            value = keras.ops.multiply(value, w)
        values.append(value)
    value = values[0] if len(values) == 1 else sum(values)
    if penalties and model.losses:  # regularisation penalties, added as a Keras training step adds them
        value = value + tf.add_n(model.losses)
    return value


def loss_and_gradients(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Any,
    loss_config: Any = None,
    sample_weight: np.ndarray | None = None,
    loss_weights: Any = None,
) -> KerasPass:
    """Loss, output and gradients (weights and inputs) of `model` on one batch, by tf.GradientTape.

    `loss` is a Keras loss identifier from keras_impl.losses.KERAS_LOSSES and `loss_config` its arguments (lists, one
    per output, for a model of several outputs; `loss_weights` one number per output).
    The forward pass runs in training mode, as a training step does.
    """
    dtype, loss_objs, xs, ys, sw = batch_tensors(model, x, y, loss, loss_config, sample_weight)
    with tf.GradientTape() as tape:
        for x_t in xs:
            tape.watch(x_t)
        output = model(xs if len(xs) > 1 else xs[0], training=True)
        value = total_loss(model, loss_objs, ys, output, sw, loss_weights)
    trainable = model.trainable_weights
    grads = tape.gradient(value, [*trainable, *xs])
    by_id = {id(v): g for v, g in zip(trainable, grads[: len(trainable)])}
    aligned = []
    for v in model.weights:
        g = by_id.get(id(v))
        if isinstance(g, tf.IndexedSlices):  # an Embedding's: one row per position, made dense (repeats added)
            g = tf.convert_to_tensor(g)
        aligned.append(np.zeros(v.shape, dtype=dtype) if g is None else np.asarray(g))
    # an Embedding casts its float input to int32 indices: the tape has no gradient for x (None), the scratch side 0
    input_grads = [
        np.zeros(x_t.shape, dtype=dtype) if g is None else np.asarray(g) for x_t, g in zip(xs, grads[len(trainable) :])
    ]
    outputs = [np.asarray(o) for o in _several(output)]
    return KerasPass(
        float(value),
        aligned,
        input_grads[0] if len(input_grads) == 1 else input_grads,
        outputs[0] if len(outputs) == 1 else outputs,
    )


def train_step(
    model: keras.Model,
    optimizer: Any,
    x: Any,
    y: Any,
    loss: Any,
    loss_config: Any = None,
    loss_weights: Any = None,
) -> KerasPass:
    """One eager training step: taped loss and gradients, then `optimizer.apply_gradients` (clipping, weight
    decay and the update rule in Keras's own order). Returns the pass as it was before the update."""
    result = loss_and_gradients(model, x, y, loss, loss_config, loss_weights=loss_weights)
    trainable = {id(v) for v in model.trainable_weights}
    pairs = [(g, v) for g, v in zip(result.grads, model.weights) if id(v) in trainable]
    optimizer.apply_gradients([(tf.constant(g), v) for g, v in pairs])
    return result


def evaluate_loss(
    model: keras.Model, x: Any, y: Any, loss: Any, loss_config: Any = None, loss_weights: Any = None
) -> tuple[float, Any]:
    """(loss, output) of the model in inference mode on (x, y), with the Keras loss objects."""
    dtype, loss_objs, xs, ys, _ = batch_tensors(model, x, y, loss, loss_config, None)
    output = model(xs if len(xs) > 1 else xs[0], training=False)
    value = total_loss(model, loss_objs, ys, output, None, loss_weights, penalties=False)
    outputs = [np.asarray(o) for o in _several(output)]
    return float(value), outputs[0] if len(outputs) == 1 else outputs


def astype(model: keras.Model, dtype: str) -> keras.Model:
    """The same model (Sequential or functional) in `dtype`: every layer rebuilt from its own config with that
    dtype, the weights copied (float32 to float64 is exact). A FixedMaskDropout, and a FixedMaskMultiHeadAttention's
    probability dropout, keep their mask. Used for the float64 truth that float32 comparisons are measured against."""

    inputs = [keras.Input(shape=tuple(t.shape[1:]), dtype=dtype) for t in model.inputs]
    copy = keras.models.clone_model(
        model,
        input_tensors=inputs[0] if len(inputs) == 1 else inputs,
        clone_function=lambda layer: rebuilt(layer, dtype),
    )
    copy.set_weights([np.asarray(w).astype(dtype) for w in model.get_weights()])
    return copy


def rebuilt(layer: keras.layers.Layer, dtype: str) -> keras.layers.Layer:
    """`layer` made anew in `dtype` from its own config (its weights are not copied). A Lambda keeps its function
    object: its config carries the function's code without the names it reads from its module or closure (a lambda
    written in a script or a test), so a rebuilt one could not run. A FixedMaskDropout (attention's too) keeps its
    mask."""
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
    if isinstance(layer, (FixedMaskDropout, FixedMaskMultiHeadAttention)):
        twin.mask = layer.mask
    return twin
