"""The zoo's gradient bugs of dense networks: the loss gradient without its 1/N, ReLU's mask at the kink, a softmax
shifted by the batch's max, an untransposed dx, a bias gradient averaged, sigmoid's derivative of its output, a
backward that writes into its input, gradients accumulated across calls. Each entry returns the comparison's report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.zoo_planting import _batch, _compare, _swap_class
from from_scratch.activations import Activation, relu, relu_grad, sigmoid, sigmoid_grad
from from_scratch.layers import Dense
from from_scratch.losses import CategoricalCrossentropy
from from_scratch.model import Sequential

Array = np.ndarray


class MissingOneOverN(CategoricalCrossentropy):
    """dL/dZ = P - Y, forgetting the mean over the batch."""

    def reduce_grad(self, grad: Array, sample_weight: Array | None) -> Array:
        return grad


def missing_1_over_n(dtype: str = "float64") -> Any:
    x, y = _batch(16, 8, 4)
    return _compare("8-6-4", x, y, lambda m: MissingOneOverN(), dtype=dtype)


def relu_mask_at_kink(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=1)
    x[4] = 0.0  # a zero row with zero biases: every hidden Z of that row is exactly 0

    def plant(m: Sequential) -> None:
        wrong = Activation("relu", relu, lambda z, a, dA: dA * (z >= 0), relu_grad, kinked=True)
        for layer in m.layers[:-1]:
            layer.activation = wrong

    return _compare("6-5-5-3", x, y, plant, dtype=dtype)


def softmax_batch_max(dtype: str = "float64") -> Any:
    x, y = _batch(8, 5, 4, seed=2)

    def batch_max_softmax(z: Array) -> Array:
        e = np.exp(z - z.max())  # the max over the whole batch, not per row
        with np.errstate(invalid="ignore"):  # rows that underflow entirely give 0/0: that is the bug
            return e / e.sum(axis=-1, keepdims=True)

    def plant(m: Sequential) -> None:
        m.layers[-1].activation = Activation("softmax", batch_max_softmax, m.layers[-1].activation.backward)
        weights = m.get_weights()
        weights[-2] = weights[-2] * 3000.0  # logits in the thousands: rows far below the batch max underflow
        m.set_weights(weights)

    return _compare("5-6-4", x, y, plant, dtype=dtype)


def dx_untransposed(dtype: str = "float64") -> Any:
    x, y = _batch(10, 6, 6, seed=3)

    def backward_from_z(self: Dense, dZ: Array, input_grad: bool = True) -> Array:
        self.dZ = dZ
        self.dW = self.X.T @ dZ
        self.db = dZ.sum(axis=0)
        return dZ @ self.W  # W where W.T belongs (square layers, so the shapes do not complain)

    return _compare(
        "6-6-6-6",
        x,
        y,
        lambda m: [_swap_class(layer, "backward_from_z", backward_from_z) for layer in m.layers] and None,
        dtype=dtype,
    )


def bias_gradient_mean(dtype: str = "float64") -> Any:
    x, y = _batch(16, 8, 4, seed=4)

    def backward_from_z(self: Dense, dZ: Array, input_grad: bool = True) -> Array:
        self.dZ = dZ
        self.dW = self.X.T @ dZ
        self.db = dZ.mean(axis=0)  # a mean where the batch sum belongs
        return dZ @ self.W.T

    return _compare(
        "8-6-4",
        x,
        y,
        lambda m: [_swap_class(layer, "backward_from_z", backward_from_z) for layer in m.layers] and None,
        dtype=dtype,
    )


def sigmoid_grad_of_output(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=5)

    def plant(m: Sequential) -> None:
        m.layers[0].activation = Activation("sigmoid", sigmoid, lambda z, a, dA: dA * sigmoid_grad(a), sigmoid_grad)

    return _compare("6-5:sigmoid-3", x, y, plant, dtype=dtype)


def backward_mutates_input(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=6)

    def in_place(z: Array, a: Array, dA: Array) -> Array:
        dA[z <= 0] = 0  # deep-learning-from-scratch's Relu.backward writes into the caller's array
        return dA

    def plant(m: Sequential) -> None:
        for layer in m.layers[:-1]:
            layer.activation = Activation("relu", relu, in_place, relu_grad, kinked=True)

    return _compare("6-5-4-3", x, y, plant, dtype=dtype)


def gradients_accumulate(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=7)

    def backward_from_z(self: Dense, dZ: Array, input_grad: bool = True) -> Array:
        self.dZ = dZ
        self.dW = getattr(self, "dW", 0) + self.X.T @ dZ  # += across calls: never reset
        self.db = getattr(self, "db", 0) + dZ.sum(axis=0)
        return dZ @ self.W.T

    return _compare(
        "6-5-3",
        x,
        y,
        lambda m: [_swap_class(layer, "backward_from_z", backward_from_z) for layer in m.layers] and None,
        dtype=dtype,
    )
