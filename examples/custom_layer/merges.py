"""A user's own layers of several inputs, written from scratch: a layer that declares `several_inputs = True` is
called on a list of tensors, its forward takes the list and its backward returns one gradient per input.

WeightedSum mixes two inputs with one learned weight per feature:

    forward:   y = w * x1 + (1 - w) * x2                 x1, x2 (N, D) -> y (N, D); w (D,)
    backward:  dx1 = dy * w,  dx2 = dy * (1 - w),  dw = sum_n dy * (x1 - x2)

Its Keras twin is `keras_weighted_sum` below (a keras.layers.Layer with one weight). Multiply is the textbook
product y = x1 * x2 (dx1 = dy * x2, dx2 = dy * x1), twin keras.layers.Multiply; `BrokenMultiply` makes the classic
slip of multiplying the second input's gradient by that input itself (dx2 = dy * x2). The factories at the end are
what the command line names: `examples/custom_layer/merges.py:weighted_sum`.
"""

from __future__ import annotations

import numpy as np

from from_scratch import Layer


class WeightedSum(Layer):
    """y = w * x1 + (1 - w) * x2, elementwise, with one weight per feature."""

    several_inputs = True
    weight_names = ("w",)

    def build(self, input_shapes: list[tuple[int, ...]], dtype: np.dtype, rng: np.random.Generator) -> tuple:
        self.w = np.full(input_shapes[0], 0.5, dtype=dtype)
        return input_shapes[0]

    @property
    def params(self) -> list[np.ndarray]:
        return [self.w]

    @property
    def grads(self) -> list[np.ndarray]:
        return [self.dw]

    def forward(self, xs: list[np.ndarray], training: bool = False) -> np.ndarray:
        self.x1, self.x2 = xs
        return self.w * self.x1 + (1 - self.w) * self.x2

    def backward(self, dy: np.ndarray) -> list[np.ndarray]:
        self.dw = (dy * (self.x1 - self.x2)).sum(axis=0)
        return [dy * self.w, dy * (1 - self.w)]


class Multiply(Layer):
    """y = x1 * x2, elementwise; no parameters."""

    several_inputs = True

    def forward(self, xs: list[np.ndarray], training: bool = False) -> np.ndarray:
        self.x1, self.x2 = xs
        return self.x1 * self.x2

    def backward(self, dy: np.ndarray) -> list[np.ndarray]:
        return [dy * self.x2, dy * self.x1]


class BrokenMultiply(Multiply):
    """The same forward pass; the backward pass multiplies each input's gradient by that input itself."""

    def backward(self, dy: np.ndarray) -> list[np.ndarray]:
        return [dy * self.x2, dy * self.x2]


def weighted_sum() -> WeightedSum:
    return WeightedSum()


def multiply() -> Multiply:
    return Multiply()


def broken_multiply() -> BrokenMultiply:
    return BrokenMultiply()


def keras_multiply(dtype: str = "float64"):  # noqa: ANN201 (a Keras layer; importing Keras at module level is avoided)
    import keras

    return keras.layers.Multiply(dtype=dtype)


def keras_weighted_sum(dtype: str = "float64"):  # noqa: ANN201
    import keras

    class KerasWeightedSum(keras.layers.Layer):
        def build(self, input_shape: list[tuple]) -> None:
            self.w = self.add_weight(shape=input_shape[0][1:], initializer="ones", name="w")

        def call(self, inputs: list) -> object:
            x1, x2 = inputs
            return self.w * x1 + (1 - self.w) * x2

    return KerasWeightedSum(dtype=dtype)
