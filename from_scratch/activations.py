"""Activation functions and their derivatives, as pure pairs `f(z)` / `f_grad(z)`.

Every function works on a whole batch at once: Z (N, M) -> A (N, M). Elementwise activations have a
derivative `f_grad(Z)` (N, M), and the backward pass is the elementwise product dZ = dA * f'(Z).
Softmax is not elementwise: its backward pass is the vector-Jacobian product `softmax_vjp`.

Where a derivative has a kink, its value there is chosen to match Keras (TensorFlow's gradient), stated
in the docstring, and tested in tests/test_activations.py.

The registry `ACTIVATIONS` maps Keras's names to `Activation` entries; keras_impl/activations.py holds the
Keras twin of each entry under the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from from_scratch.errors import unknown_name

Array = np.ndarray


def linear(z: Array) -> Array:
    """Identity: A = Z.  Z (N, M) -> A (N, M)."""
    return z


def linear_grad(z: Array) -> Array:
    """dA/dZ = 1 everywhere.  Z (N, M) -> (N, M)."""
    return np.ones_like(z)


def relu(z: Array) -> Array:
    """A = max(Z, 0).  Z (N, M) -> A (N, M)."""
    return np.maximum(z, 0)


def relu_grad(z: Array) -> Array:
    """dA/dZ = 1 where Z > 0, else 0.  Z (N, M) -> (N, M).

    At the kink Z = 0 the derivative is 0: TensorFlow's ReluGrad masks with z > 0 (not >=), so
    `keras.activations.relu` has gradient 0 there. Exact zeros are common: a zero input row with a zero bias.
    """
    return (z > 0).astype(z.dtype)


def sigmoid(z: Array) -> Array:
    """A = 1 / (1 + exp(-Z)), computed without overflow for any sign of Z.  Z (N, M) -> A (N, M)."""
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(z: Array) -> Array:
    """dA/dZ = s(Z) (1 - s(Z)).  Z (N, M) -> (N, M).  Smooth: no kink."""
    s = sigmoid(z)
    return s * (1 - s)


def tanh(z: Array) -> Array:
    """A = tanh(Z).  Z (N, M) -> A (N, M)."""
    return np.tanh(z)


def tanh_grad(z: Array) -> Array:
    """dA/dZ = 1 - tanh(Z)^2.  Z (N, M) -> (N, M).  Smooth: no kink."""
    return 1 - np.tanh(z) ** 2


def softmax(z: Array) -> Array:
    """Row-wise softmax P_ik = exp(Z_ik - m_i) / sum_j exp(Z_ij - m_i), m_i = max_j Z_ij.  Z (N, K) -> P (N, K).

    Subtracting each row's own maximum changes nothing mathematically (softmax is shift invariant) and keeps
    every exponent <= 0, so logits of any size give no overflow and no NaN: softmax([1000, 0, -1000]) = [1, 0, 0].
    """
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z: Array) -> Array:
    """Row-wise log softmax Z_ik - m_i - log sum_j exp(Z_ij - m_i) (log-sum-exp).  Z (N, K) -> (N, K)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_jacobian(p: Array) -> Array:
    """The Jacobian of one softmax row: dP_i/dZ_j = P_i (delta_ij - P_j), i.e. diag(p) - p p^T.  p (K,) -> (K, K).

    For teaching and tests; the backward pass never builds it (see `softmax_vjp`).
    """
    return np.diag(p) - np.outer(p, p)


def softmax_vjp(p: Array, dA: Array) -> Array:
    """Backward through softmax without forming the Jacobian: dZ = P * (dA - sum_k dA_k P_k).

    Row by row this is dA @ (diag(p) - p p^T) (the Jacobian is symmetric).  P (N, K), dA (N, K) -> dZ (N, K).
    """
    return p * (dA - (dA * p).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Activation:
    """One registry entry: `forward(Z) -> A` and `backward(Z, A, dA) -> dZ`.

    The layer hands `backward` both of its caches; an entry uses what it needs. `grad` is the elementwise
    derivative f'(Z), or None for an activation that is not elementwise (softmax).
    """

    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]
    grad: Callable[[Array], Array] | None = None


def elementwise(name: str, f: Callable[[Array], Array], f_grad: Callable[[Array], Array]) -> Activation:
    """An entry for an elementwise activation, whose backward pass is dZ = dA * f'(Z)."""
    return Activation(name, f, lambda z, a, dA: dA * f_grad(z), f_grad)


ACTIVATIONS: dict[str, Activation] = {
    "linear": elementwise("linear", linear, linear_grad),
    "relu": elementwise("relu", relu, relu_grad),
    "sigmoid": elementwise("sigmoid", sigmoid, sigmoid_grad),
    "tanh": elementwise("tanh", tanh, tanh_grad),
    "softmax": Activation("softmax", softmax, lambda z, a, dA: softmax_vjp(a, dA)),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by its Keras name; an unknown name raises with the list of known ones."""
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]
