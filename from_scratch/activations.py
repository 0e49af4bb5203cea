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

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError, unknown_name

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
    """A = 1 / (1 + exp(-Z)), computed without overflow for any sign of Z.  Z (N, M) -> A (N, M).

    With e = exp(-|Z|) in (0, 1]: A = 1 / (1 + e) where Z >= 0 and e / (1 + e) elsewhere (`sigmoid_into`)."""
    z = np.asarray(z)
    dtype = np.result_type(z.dtype, np.float16)  # exp's output type: z's own if it is floating
    out, e, d, m = (np.empty(z.shape, dtype) for _ in range(4))
    return sigmoid_into(z, out, e, d, m)


def sigmoid_into(z: Array, out: Array, e: Array, d: Array, m: Array) -> Array:
    """out = sigmoid(z), into arrays the caller keeps (the LSTM reuses them at every step): e = exp(-|z|), then
    1 / (1 + e) where z >= 0 and e / (1 + e) elsewhere, as one division whose numerator max(e, m) is exactly 1 or e
    (m = 1.0 where z >= 0, else 0.0, and e in [0, 1] wherever z is not NaN; where z is NaN, so are e, max(e, m)
    and the quotient), without np.where, whose branch per element is slow on values of random sign. The same
    quotients as the np.where form, so the same bits, a NaN's sign and payload aside.
    z, out, e, d, m of one shape (out may be a strided view); e, d, m overwritten."""
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)  # in (0, 1]: never overflows
    np.greater_equal(z, 0, out=m, casting="unsafe")  # 1.0 or 0.0
    np.maximum(e, m, out=m)  # the numerator: 1 where z >= 0, else e
    np.add(1, e, out=d)
    return np.divide(m, d, out=out)


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


def step(z: Array) -> Array:
    """The perceptron's step function: A = 1 where Z > 0, else 0 (so step(0) = 0).  Z (N, M) -> A (N, M)."""
    return (z > 0).astype(z.dtype)


def step_grad(z: Array) -> Array:
    """The step function has no useful derivative (0 almost everywhere, undefined at 0): backprop through it is
    refused with a clear error, rather than silently returning zeros that would stop learning."""
    raise BadInputError(
        "activation 'step' has no useful derivative (0 everywhere except an undefined jump at 0); "
        "use it for forward passes and perceptrons, and sigmoid or relu where gradients are needed"
    )


#: Keras's leaky_relu default slope. TensorFlow passes it as a float32 attribute, so in float64 the slope is
#: fl32(0.2) = 0.20000000298023224 (measured: leaky_relu(-1e-300) = -2.00000003e-301 in float64).
LEAKY_RELU_SLOPE = float(np.float32(0.2))


def leaky_relu(z: Array) -> Array:
    """A = Z where Z > 0, else alpha Z, alpha = fl32(0.2) (Keras default).  Z (N, M) -> A (N, M)."""
    return np.where(z > 0, z, z * z.dtype.type(LEAKY_RELU_SLOPE))


def leaky_relu_grad(z: Array) -> Array:
    """dA/dZ = 1 where Z > 0, else alpha; at the kink Z = 0 it is alpha, as TensorFlow's LeakyReluGrad."""
    return np.where(z > 0, 1, z.dtype.type(LEAKY_RELU_SLOPE)).astype(z.dtype)


def elu(z: Array) -> Array:
    """A = Z where Z > 0, else exp(Z) - 1 (alpha = 1, Keras default).  Z (N, M) -> A (N, M).

    Written exp(Z) - 1, not the more accurate expm1(Z), because TensorFlow's Elu kernel does: for Z ~ -3e-6 the
    two differ by 3e-11 relative (found by the property test, magnified by a following BatchNormalization).
    """
    return np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1)


def elu_grad(z: Array) -> Array:
    """dA/dZ = 1 where Z > 0, else exp(Z), computed as TensorFlow's EluGrad does: (A + 1) from A = exp(Z) - 1.
    At Z = 0 both sides give 1."""
    return np.where(z > 0, 1, (np.exp(np.minimum(z, 0)) - 1) + 1).astype(z.dtype)


def softplus(z: Array) -> Array:
    """A = log(1 + exp(Z)), computed as max(Z, 0) + log1p(exp(-|Z|)) (no overflow).  Z (N, M) -> A (N, M)."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def softplus_grad(z: Array) -> Array:
    """dA/dZ = sigmoid(Z).  Smooth: no kink (1/2 at 0)."""
    return sigmoid(z)


_erfc = np.frompyfunc(math.erfc, 1, 1)  # NumPy has no erfc; the standard library's, applied elementwise
#: TensorFlow's constants pass through float32 (`math_ops.cast(0.7071067811865476, float64)` converts the Python
#: float to a float32 tensor first), so even float64 GELU uses c = fl32(1/sqrt 2) and fl32(0.044715). With the
#: exact constants the outputs differed from Keras by 1.7e-9 (relative) in float64; with these, by ~1e-16.
GELU_INV_SQRT_2 = float(np.float32(0.7071067811865476))
GELU_CUBIC = float(np.float32(0.044715))
_SQRT_2_OVER_PI = 0.7978845608028654  # multiplies a tensor directly in TF: exact in float64


def gelu(z: Array) -> Array:
    """Exact GELU: A = Z Phi(Z) = (Z / 2) erfc(-c Z), c = 1/sqrt 2 (as fl32, like TF).  Z (N, M) -> A (N, M)."""
    return 0.5 * z * _erfc(-z * GELU_INV_SQRT_2).astype(z.dtype)


def gelu_grad(z: Array) -> Array:
    """dA/dZ = erfc(-c Z) / 2 + Z c exp(-(c Z)^2) / sqrt(pi)  (Phi(Z) + Z phi(Z) with the exact c).

    Smooth: 1/2 at 0."""
    cz = GELU_INV_SQRT_2 * z
    return 0.5 * _erfc(-cz).astype(z.dtype) + z * GELU_INV_SQRT_2 * np.exp(-cz * cz) / math.sqrt(math.pi)


def gelu_tanh(z: Array) -> Array:
    """GELU, tanh approximation: A = Z (1 + tanh(u)) / 2, u = sqrt(2/pi) (Z + 0.044715 Z^3).  Z (N, M) -> A (N, M)."""
    return 0.5 * z * (1 + np.tanh(_SQRT_2_OVER_PI * (z + GELU_CUBIC * z**3)))


def gelu_tanh_grad(z: Array) -> Array:
    """dA/dZ = (1 + t) / 2 + Z (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 Z^2) / 2, t = tanh(u).  1/2 at 0."""
    t = np.tanh(_SQRT_2_OVER_PI * (z + GELU_CUBIC * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * z * z)


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
    """One registry entry: `forward(Z) -> A` and `backward(Z, A, dA) -> dZ`, and what the harness needs to know.

    The layer hands `backward` both of its caches; an entry uses what it needs. `grad` is the elementwise
    derivative f'(Z), or None for an activation that is not elementwise (softmax).
    Declarations (read by the harness, never kept in a table elsewhere):
    - `kink_value`: f'(0) as TensorFlow's gradient gives it (checked against Keras exactly); None where 0 is not a
      special point worth stating (softmax, step).
    - `kinked`: the derivative jumps at 0, so a pre-activation that is rounding noise around 0 may land on either
      side on the two sides (ReLU's mask).
    - `grad_terms(Z)`: for a derivative that is itself a difference of terms (tanh' = 1 - t^2), the magnitude of
      those terms, which bounds its rounding error; default |f'(Z)|.
    - `value_terms(Z)`: likewise for a value that is a cancellation (GELU's tanh form); default 0 (none beyond |A|).
    - `differentiable`: False for an activation whose backward pass is refused (step): forward parity only.
    """

    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]
    grad: Callable[[Array], Array] | None = None
    kink_value: float | None = None
    kinked: bool = False
    grad_terms: Callable[[Array], Array] | None = None
    value_terms: Callable[[Array], Array] | None = None
    differentiable: bool = True

    def grad_magnitude(self, z: Array) -> Array:
        """The magnitude of the terms behind f'(Z) (see `grad_terms`).  Z (N, M) -> (N, M)."""
        return self.grad_terms(z) if self.grad_terms is not None else np.abs(self.grad(z))


def elementwise(
    name: str, f: Callable[[Array], Array], f_grad: Callable[[Array], Array], **declared: Any
) -> Activation:
    """An entry for an elementwise activation, whose backward pass is dZ = dA * f'(Z)."""
    return Activation(name, f, lambda z, a, dA: dA * f_grad(z), f_grad, **declared)


def _gelu_u(z: Array) -> Array:
    return _SQRT_2_OVER_PI * (z + GELU_CUBIC * z**3)


def _gelu_du(z: Array) -> Array:
    return _SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * z * z)


def _tanh_terms(z: Array) -> Array:
    """tanh' = 1 - t^2: at saturation 1 - (1 - tiny), so one ulp of difference between NumPy's and Eigen's tanh
    becomes a 1e-12 relative difference in f' (found by the property test: 4-1:tanh-3:softmax, inputs x10)."""
    return 1 + np.tanh(z) ** 2


def _sigmoid_terms(z: Array) -> Array:
    """sigmoid' = s - s^2: the magnitude of both terms."""
    s = sigmoid(z)
    return s + s * s


def _gelu_tanh_terms(z: Array) -> Array:
    """(1 + t) / 2 + z (1 - t^2) u' / 2 with t = tanh(u): both brackets cancel where t is near -1."""
    t = np.tanh(_gelu_u(z))
    return 0.5 * (1 + np.abs(t)) + 0.5 * np.abs(z) * (1 + t * t) * _gelu_du(z)


def _gelu_tanh_value_terms(z: Array) -> Array:
    """GELU's tanh form is z (1 + t) / 2 with t near -1 for negative z, and TensorFlow's float32 tanh (Eigen's fast
    approximation) is exactly -1 from |u| ~ 7.9 on where NumPy's is -0.99999988 (found by the property test:
    4-1:gelu_tanh-3:softmax, float32, inputs x10, where f' is 0 on one side and 2e-6 on the other)."""
    return 0.5 * np.abs(z) * (1 + np.abs(np.tanh(_gelu_u(z))))


ACTIVATIONS: dict[str, Activation] = {
    "linear": elementwise("linear", linear, linear_grad, kink_value=1.0),
    "relu": elementwise("relu", relu, relu_grad, kink_value=0.0, kinked=True),
    "sigmoid": elementwise("sigmoid", sigmoid, sigmoid_grad, kink_value=0.25, grad_terms=_sigmoid_terms),
    "tanh": elementwise("tanh", tanh, tanh_grad, kink_value=1.0, grad_terms=_tanh_terms),
    "softmax": Activation("softmax", softmax, lambda z, a, dA: softmax_vjp(a, dA)),
    "leaky_relu": elementwise("leaky_relu", leaky_relu, leaky_relu_grad, kink_value=LEAKY_RELU_SLOPE, kinked=True),
    "elu": elementwise("elu", elu, elu_grad, kink_value=1.0),
    "gelu": elementwise("gelu", gelu, gelu_grad, kink_value=0.5),
    "gelu_tanh": elementwise(
        "gelu_tanh",
        gelu_tanh,
        gelu_tanh_grad,
        kink_value=0.5,
        grad_terms=_gelu_tanh_terms,
        value_terms=_gelu_tanh_value_terms,
    ),
    "softplus": elementwise("softplus", softplus, softplus_grad, kink_value=0.5),
    "step": elementwise("step", step, step_grad, kinked=True, differentiable=False),
}
"""Each entry's `kink_value` is checked against TensorFlow's gradient at 0 in
tests/test_catalogue_parity.py::test_derivative_at_the_kink_matches_tensorflow."""


def get_activation(name: str) -> Activation:
    """Look up an activation by its Keras name; an unknown name raises with the list of known ones."""
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]
