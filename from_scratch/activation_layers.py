"""Activations as layers of their own, as keras.layers.Activation and keras.layers.ReLU: A = f(X) on any shape,
no parameters.

`Activation(name)` applies an entry of the registry (from_scratch.activations.ACTIVATIONS, as Dense's
`activation=`); softmax acts on the last axis. Its backward pass is the entry's: dX = f'(X) * dA, or softmax's
vector-Jacobian product.

`ReLU(max_value, negative_slope, threshold)` is Keras's parametrised rectifier, with t the threshold, M the
max_value and s the negative_slope:

    f(x) = min(x, M)      where x > t           (M = infinity when max_value is None)
    f(x) = -(s (t - x))   where x < t            (0 when s = 0)
    f(x) = 0              at x = t

computed in the operations Keras computes it with (keras/src/activations/activations.py `ReLU.static_call` on the
TensorFlow backend), and differentiated as TensorFlow's gradients of those operations route the kinks:

    f'(x) = 1   where x > t and x is below M, or at M when Keras clips (clip_by_value passes a tie to x)
    f'(x) = 0   at x = t; at and above M when Keras takes TensorFlow's relu6 (t = 0 and M = 6: Relu6Grad masks
                0 < x < 6); above M otherwise
    f'(x) = s   where x < t

With s != 0, M None and t = 0 Keras calls TensorFlow's leaky_relu, whose slope is a float32 attribute: in float64
the slope is fl32(s), and f'(0) = s (LeakyReluGrad masks x > 0). tests/test_activation_layers.py takes TensorFlow's
gradient at every kink of each branch.
"""

from __future__ import annotations

import numpy as np

from from_scratch.activations import Activation as ActivationEntry
from from_scratch.activations import get_activation
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError
from from_scratch.layers import LAYERS, Layer, activation_terms

Array = np.ndarray


class Activation(Layer):
    """A = f(X), f an entry of the activation registry.  X (N, ...) -> A (N, ...).  dX = f'(X) * dA (softmax: its
    vector-Jacobian product over the last axis)."""

    kind = "activation"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(self, activation: str, name: str | None = None) -> None:
        self.name = name or self.kind
        self.activation: ActivationEntry = get_activation(activation)
        self.kinks = (0.0,) if self.activation.kinked else ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Activation:
        return cls(spec.activation)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, self.activation.name, {})

    def forward(self, x: Array, training: bool = False) -> Array:
        self.X = x
        self.A = self.activation.forward(x)
        return self.A

    def backward(self, dA: Array) -> Array:
        if not self.activation.differentiable:
            raise BadInputError(f"layer {self.name!r}: the {self.activation.name} activation has no derivative")
        return self.activation.backward(self.X, self.A, dA)

    @property
    def Z(self) -> Array:
        """The logits: the input itself. A softmax or sigmoid Activation at the output carries them to the loss as
        Keras's output tensor does (`_keras_logits`), so a cross-entropy can be computed from them."""
        return self.X

    def backward_from_z(self, dZ: Array, input_grad: bool = True) -> Array | None:
        """dX = dL/dZ: the loss computed from the logits, Z = X."""
        return dZ if input_grad else None

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """M_A = |A| + |f'(X)| M_X, as after Dense's Z (layers.activation_terms)."""
        return {"A": activation_terms(self.activation, self.X, self.A, x_terms)["A"]}

    def backward_terms(
        self, x_terms: Array, dA_terms: Array | None, dZ_terms: Array | None = None
    ) -> tuple[list[Array], Array, dict[str, Array]]:
        """|dX| = |dA| |f'(X)| (softmax: |P| (|dA| + sum |P| |dA|), the terms of its VJP); from the logits,
        |dX| = |dZ|."""
        if dZ_terms is not None:
            return [], dZ_terms, {}
        if self.activation.grad is None:
            p = np.abs(self.A.astype(np.float64))
            return [], p * (dA_terms + (p * dA_terms).sum(axis=-1, keepdims=True)), {}
        return [], dA_terms * self.activation.grad_magnitude(self.X.astype(np.float64)), {}


def _non_negative(value: object, option: str, where: str, none: bool = False) -> float | None:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value >= 0:
        allowed = "None or " if none else ""
        raise BadInputError(f"{where}: {option} must be {allowed}a number >= 0, got {value!r}")
    if not np.isfinite(value):
        raise BadInputError(f"{where}: {option} must be finite, got {value!r}")
    return float(value)


class ReLU(Layer):
    """Keras's ReLU layer: A = f(X) with f and f' as in the module docstring.  X (N, ...) -> A (N, ...)."""

    kind = "re_lu"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        name: str | None = None,
    ) -> None:
        self.name = name or self.kind
        where = f"ReLU {self.name!r}"
        self.max_value = _non_negative(max_value, "max_value", where, none=True)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", where)
        self.threshold = _non_negative(threshold, "threshold", where)
        self.kinks = tuple(sorted({self.threshold} | ({self.max_value} if self.max_value is not None else set())))

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> ReLU:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        options = {"max_value": self.max_value, "negative_slope": self.negative_slope, "threshold": self.threshold}
        return LayerSpec(self.kind, None, "linear", options)

    @property
    def leaky(self) -> bool:
        """Keras's shortcut to TensorFlow's leaky_relu (a float32 slope attribute)."""
        return self.negative_slope != 0 and self.max_value is None and self.threshold == 0

    @property
    def relu6(self) -> bool:
        """Keras's shortcut to TensorFlow's relu6 (no clip after it)."""
        return self.threshold == 0 and self.max_value == 6

    def forward(self, x: Array, training: bool = False) -> Array:
        """The operations of Keras's ReLU.static_call, in its order and dtype."""
        self.X = x
        t = x.dtype.type
        if self.leaky:
            self.A = np.where(x > 0, x, x * t(np.float32(self.negative_slope)))
            return self.A
        if self.threshold != 0:
            a = np.where(x > t(self.threshold), x, t(0))
        elif self.relu6:
            a = np.minimum(np.maximum(x, t(0)), t(6))
        else:
            a = np.maximum(x, t(0))
        if self.max_value is not None and not self.relu6:
            a = np.minimum(np.maximum(a, t(0)), t(self.max_value))
        if self.negative_slope != 0:
            below = np.maximum(-x + t(self.threshold), t(0))
            a = a - t(self.negative_slope) * below
        self.A = a
        return a

    def derivative(self, x: Array) -> Array:
        """f'(X) as TensorFlow's gradient routes it (module docstring).  X (N, ...) -> (N, ...)."""
        t = x.dtype.type
        if self.leaky:
            return np.where(x > 0, t(1), t(np.float32(self.negative_slope)))
        if self.threshold != 0:
            inside = x > t(self.threshold)
        elif self.relu6:
            inside = (x > 0) & (x < t(6))
        else:
            inside = x > 0
        if self.max_value is not None and not self.relu6:
            inside &= x <= t(self.max_value)
        below = (-x + t(self.threshold)) > 0
        slope = t(self.negative_slope) if self.negative_slope != 0 else t(0)
        return np.where(inside, t(1), np.where(below, slope, t(0)))

    def backward(self, dA: Array) -> Array:
        """dX = f'(X) * dA (the slope applied to dA once, as TensorFlow's product does)."""
        return dA * self.derivative(self.X)

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """M_A = |A| + |f'(X)| M_X (the rounding of t - x and of the slope's product are bounded by it)."""
        return {"A": np.abs(self.A.astype(np.float64)) + np.abs(self.derivative(self.X)).astype(np.float64) * x_terms}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], dA_terms * np.abs(self.derivative(self.X)).astype(np.float64), {}


LAYERS.update({"activation": Activation, "re_lu": ReLU})
