"""The Keras twin of each entry in from_scratch.activations.ACTIVATIONS, under the same name.
The two functions written here are registered as serializable, so a model using them can be saved, loaded and
rebuilt from its config (compare's float64 truth rebuilds the model in float64).

Values are what `keras.layers.Dense(activation=...)` accepts. Keras's own `softmax` and `sigmoid` must be used
(not a re-implementation): the tensors they return carry their logits, which the cross-entropy losses pick up.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="backprop_parity")
def gelu_tanh(x: Any) -> Any:
    """keras.activations.gelu with approximate=True (the string "gelu" is the exact form)."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="backprop_parity")
def step(x: Any) -> Any:
    """The perceptron step function, 1 where x > 0 else 0. Keras has none built in; forward parity only."""
    return ops.cast(ops.greater(x, 0), x.dtype)


KERAS_ACTIVATIONS: dict[str, Any] = {
    "linear": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "gelu": "gelu",
    "gelu_tanh": gelu_tanh,
    "softplus": "softplus",
    "step": step,
}
