"""The Keras twin of each entry in from_scratch.losses.LOSSES, under the same name.

`make_loss(name, config, dtype)` builds the Keras loss object with the scratch loss's constructor arguments and an
explicit dtype: a loss object left at its default casts y_pred to float32, which rounds a float64 model's output
and drops the logits a softmax output carries (silently switching to the clipped probability path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops


class SumSquaredError(keras.losses.Loss):
    """The seed material's E = (1/2) sum_i sum_k (y_ik - p_ik)^2 as a Keras loss: per-sample (1/2) sum_k (y - p)^2
    with reduction="sum" (summed over the batch, not divided by N). Equivalently 0.5 * K * MeanSquaredError(
    reduction="sum") for K outputs; written out to keep the arithmetic the same as the scratch side."""

    def __init__(self, dtype: str | None = None, name: str = "sum_squared_error") -> None:
        super().__init__(name=name, reduction="sum", dtype=dtype)

    def call(self, y_true, y_pred):  # noqa: ANN001, ANN201 (Keras signature)
        return 0.5 * ops.sum(ops.square(y_true - y_pred), axis=-1)


class Projection(keras.losses.Loss):
    """L = sum_n sum_j y_pred[n, j] G[n, j] for a fixed upstream gradient G: dL/dy_pred = G exactly. With it, a
    taped pass of one layer gives the layer's vector-Jacobian product with a random G (compare.check_layer).
    y_true is ignored."""

    def __init__(self, upstream: Any, dtype: str | None = None, name: str = "projection") -> None:
        super().__init__(name=name, reduction="sum", dtype=dtype)
        self.upstream = ops.convert_to_tensor(upstream, dtype=dtype)

    def call(self, y_true, y_pred):  # noqa: ANN001, ANN201 (Keras signature)
        flat = ops.reshape(y_pred * self.upstream, (ops.shape(y_pred)[0], -1))
        return ops.sum(flat, axis=-1)


KERAS_LOSSES: dict[str, Callable[..., keras.losses.Loss]] = {
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "mean_squared_error": keras.losses.MeanSquaredError,
    "mean_absolute_error": keras.losses.MeanAbsoluteError,
    "huber": keras.losses.Huber,
    "sum_squared_error": SumSquaredError,
}


def make_loss(name: str, config: dict[str, Any], dtype: str) -> keras.losses.Loss:
    """The Keras loss object `name`, built with `config` (the scratch loss's arguments) in `dtype`."""
    return KERAS_LOSSES[name](**config, dtype=dtype)
