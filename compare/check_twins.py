"""The Keras side of a layer check: `keras_twin_model` and `keras_twin_graph` wrap the user's Keras layer in a model of
the check's dtype (rebuilt from its config when made for another dtype, refused with Keras's own reason when it does
not take the shapes), and `Projection`, the loss L = <Y, G> whose gradient dL/dY is the fixed upstream G on both
sides."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError
from from_scratch.layers import Shape
from from_scratch.losses import Loss

Array = np.ndarray


class Projection(Loss):
    """L = sum_n sum_j Y[n, j] G[n, j] for a fixed upstream gradient G (N, *output_shape): dL/dY = G exactly.

    Reduced by summing (no 1/N), so the layer's gradients are its plain vector-Jacobian products. Its Keras twin
    is keras_impl.losses.Projection with the same G."""

    name = "projection"

    def __init__(self, upstream: Array) -> None:
        self.upstream = np.asarray(upstream)

    def check_targets(self, y_true: Array, outputs: int) -> None:
        """The targets are ignored: any array with one row per sample will do."""

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        return (y_pred * self.upstream.astype(y_pred.dtype)).reshape(len(y_pred), -1).sum(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        return np.broadcast_to(self.upstream.astype(y_pred.dtype), y_pred.shape).copy()

    def reduce(self, values: Array, sample_weight: Array | None) -> float:
        return values.sum()

    def reduce_grad(self, grad: Array, sample_weight: Array | None) -> Array:
        return grad

    def keras_loss(self, dtype: str) -> Any:
        """The Keras twin with the same G, in `dtype`."""
        from keras_impl.losses import Projection as KerasProjection

        return KerasProjection(self.upstream, dtype=dtype)

    def config(self) -> dict[str, Any]:
        return {}


def keras_twin_model(keras_layer: Any, input_shape: Shape, dtype: str) -> Any:
    """keras.Sequential([Input(input_shape), keras_layer]) in `dtype`; a layer made for another dtype is rebuilt
    from its config in `dtype` (refused, naming the layer, when its config cannot rebuild it)."""
    import keras

    return keras.Sequential([keras.Input(shape=input_shape, dtype=dtype), _keras_layer_in(keras_layer, dtype)])


def keras_twin_graph(
    keras_layer: Any,
    input_shapes: list[Shape],
    dtype: str,
    options: dict[str, Any] | None = None,
    names: list[str | None] | None = None,
) -> Any:
    """The functional twin of a layer of several inputs: keras.Model([Input(s) for s in input_shapes],
    keras_layer([...])) in `dtype` (the layer rebuilt in `dtype` as keras_twin_model does). With `options` (an
    attention call: {"roles": (...), "use_causal_mask": True, ...}) the layer is called as Keras's attention is,
    keras_layer(query, value, key=..., attention_mask=..., use_causal_mask=...), the inputs named by `names`. A Keras
    layer that refuses these shapes is refused, naming it and the shapes."""
    import keras

    keras_layer = _keras_layer_in(keras_layer, dtype)
    names = names or [None] * len(input_shapes)
    inputs = [keras.Input(shape=shape, dtype=dtype, name=name) for shape, name in zip(input_shapes, names)]
    try:
        if options:
            from keras_impl.attention import call_attention

            output = call_attention(keras_layer, inputs, options)
        else:
            output = keras_layer(inputs)
    except Exception as exc:  # Keras's own shape checks (an Add of (7,) and (5,)), or a user's build
        called = f" as {', '.join(options['roles'])}" if options else ""
        raise BadInputError(
            f"Keras layer {keras_layer.name!r} ({type(keras_layer).__name__}) refused inputs of shapes "
            f"{' and '.join(map(str, input_shapes))}{called}: {_keras_reason(exc)}"
        ) from None
    if isinstance(output, (list, tuple)):
        raise BadInputError(
            f"Keras layer {keras_layer.name!r} returned {len(output)} tensors: check_layer compares a layer of one "
            "output"
        )
    return keras.Model(inputs, output)


def _keras_reason(exc: Exception) -> str:
    """The line of a Keras exception that says what went wrong: without the "Exception encountered when calling"
    preamble, the "Arguments received" listing and the terminal's bold codes; at most 200 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split("Arguments received")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception encountered")] or [type(exc).__name__]
    reason = lines[-1]
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _keras_layer_in(keras_layer: Any, dtype: str) -> Any:
    """`keras_layer` checked to be a layer (not a model), rebuilt from its config when made for another dtype."""
    import keras

    import keras_impl  # noqa: F401 (pins the TensorFlow settings before TensorFlow loads)

    if not isinstance(keras_layer, keras.layers.Layer):
        raise BadInputError(f"keras_layer must be a keras.layers.Layer, got {type(keras_layer).__name__}")
    if isinstance(keras_layer, keras.Model):
        raise BadInputError(
            f"keras_layer is a model ({type(keras_layer).__name__}), not a layer: pass the layer "
            "itself, or compare whole models with compare.check_model"
        )
    if keras_layer.dtype_policy.compute_dtype != dtype or keras_layer.dtype_policy.variable_dtype != dtype:
        from keras_impl.model import rebuilt

        try:
            keras_layer = rebuilt(keras_layer, dtype)
        except Exception as exc:  # a user's layer whose config does not rebuild it
            raise BadInputError(
                f"Keras layer {keras_layer.name!r} ({type(keras_layer).__name__}) computes in "
                f"{keras_layer.dtype_policy.compute_dtype}, not {dtype}, and could not be rebuilt in {dtype} "
                f"({type(exc).__name__}); construct it with dtype={dtype!r}"
            ) from None
    return keras_layer
