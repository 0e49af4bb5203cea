"""A user's own layer, written from scratch: Swish (SiLU), y = x * sigmoid(x), with no parameters.

    forward:   s = sigmoid(x),  y = x s                          x (N, D) -> y (N, D)
    backward:  dx = dy * (s + x s (1 - s))                       dy (N, D) -> dx (N, D)

Its Keras twin is keras.layers.Activation("silu"). `BrokenSwish` forgets the (1 - s) of sigmoid's derivative, a
classic slip; the checks below show where it parts. The factories at the end are what the command line and the
tests name: `examples/custom_layer/swish.py:swish`.
"""

from __future__ import annotations

import numpy as np

from from_scratch import Layer


class Swish(Layer):
    """y = x sigmoid(x), elementwise; smooth (no kinks), no parameters."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.x = x
        self.s = 1 / (1 + np.exp(-x))
        return x * self.s

    def backward(self, dy: np.ndarray) -> np.ndarray:
        s = self.s
        return dy * (s + self.x * s * (1 - s))


class BrokenSwish(Swish):
    """The same forward pass; the backward pass drops the (1 - s) of sigmoid's derivative."""

    def backward(self, dy: np.ndarray) -> np.ndarray:
        s = self.s
        return dy * (s + self.x * s)


def swish() -> Swish:
    return Swish()


def broken_swish() -> BrokenSwish:
    return BrokenSwish()


def keras_swish(dtype: str = "float64"):  # noqa: ANN201 (a Keras layer; importing Keras at module level is avoided)
    import keras

    return keras.layers.Activation("silu", dtype=dtype)
