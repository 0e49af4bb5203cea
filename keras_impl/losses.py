"""The Keras twin of each entry in from_scratch.losses.LOSSES, under the same name.

`make_loss(name, config, dtype)` builds the Keras loss object with the scratch loss's constructor arguments and an
explicit dtype: a loss object left at its default casts y_pred to float32, which rounds a float64 model's output
and drops the logits a softmax output carries (silently switching to the clipped probability path).
"""

from __future__ import annotations

from typing import Any, Callable

import keras

KERAS_LOSSES: dict[str, Callable[..., keras.losses.Loss]] = {
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "mean_squared_error": keras.losses.MeanSquaredError,
}


def make_loss(name: str, config: dict[str, Any], dtype: str) -> keras.losses.Loss:
    """The Keras loss object `name`, built with `config` (the scratch loss's arguments) in `dtype`."""
    return KERAS_LOSSES[name](**config, dtype=dtype)
