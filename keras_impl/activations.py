"""The Keras twin of each entry in from_scratch.activations.ACTIVATIONS, under the same name.

Values are what `keras.layers.Dense(activation=...)` accepts. Keras's own `softmax` and `sigmoid` must be used
(not a re-implementation): the tensors they return carry their logits, which the cross-entropy losses pick up.
"""

from __future__ import annotations

from typing import Any

KERAS_ACTIVATIONS: dict[str, Any] = {
    "linear": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
}
