"""Layers in matrix form: each works on a whole batch, caches what backward needs, and never mutates its input.

Protocol (shared by every layer in `LAYERS`):
- `build(input_dim, dtype, rng)` creates the parameters; `output_dim` is then known.
- `forward(X, training)` -> A, caching named attributes (`X`, `Z`, `A`).
- `backward(dA)` -> dX, storing the parameter gradients (`dW`, `db`) and the intermediates (`dA`, `dZ`).
- `params` / `grads`: lists in Keras's `get_weights()` order for this layer.
"""

from __future__ import annotations

import numpy as np

from from_scratch.activations import Activation, get_activation
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError

Array = np.ndarray


def glorot_uniform(fan_in: int, fan_out: int, dtype: np.dtype, rng: np.random.Generator) -> Array:
    """Keras's default kernel initializer: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)).

    -> (fan_in, fan_out). The draw comes from NumPy's generator, so it does not reproduce Keras's own numbers;
    the comparison copies weights from one side to the other instead.
    """
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


class Dense:
    """A = f(Z), Z = X @ W + b;  X (N, D), W (D, M), b (M,) -> Z, A (N, M).

    Keras layout: the kernel is (in, out), so a row-batch needs no transpose (textbook column form: W_col = W.T).
    Backward, from dA = dL/dA (N, M):
        dZ = f'(Z) * dA          (or the activation's vector-Jacobian product, for softmax)
        dW = X.T @ dZ            (D, M)
        db = dZ.sum(axis=0)      (M,)
        dX = dZ @ W.T            (N, D)
    """

    kind = "dense"

    def __init__(self, units: int, activation: str = "linear", name: str | None = None) -> None:
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise BadInputError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation: Activation = get_activation(activation)
        self.name = name or "dense"
        self.W: Array | None = None
        self.b: Array | None = None

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Dense:
        return cls(spec.units, spec.activation, **spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec("dense", self.units, self.activation.name)

    def build(self, input_dim: int, dtype: np.dtype, rng: np.random.Generator) -> int:
        """Glorot-uniform kernel (input_dim, units), zero bias (units,), as Keras; returns the output width."""
        self.W = glorot_uniform(input_dim, self.units, dtype, rng)
        self.b = np.zeros(self.units, dtype=dtype)
        return self.units

    @property
    def params(self) -> list[Array]:
        return [self.W, self.b]

    @property
    def grads(self) -> list[Array]:
        return [self.dW, self.db]

    def forward(self, x: Array, training: bool = False) -> Array:
        """Z = X @ W + b, A = f(Z).  X (N, D) -> A (N, M); caches X, Z, A."""
        self.X = x
        self.Z = x @ self.W + self.b
        self.A = self.activation.forward(self.Z)
        return self.A

    def backward(self, dA: Array) -> Array:
        """dZ = f'(Z) * dA, then `backward_from_z`.  dA (N, M) -> dX (N, D)."""
        self.dA = dA
        return self.backward_from_z(self.activation.backward(self.Z, self.A, dA))

    def backward_from_z(self, dZ: Array) -> Array:
        """dW = X.T @ dZ (D, M), db = sum_n dZ (M,), dX = dZ @ W.T (N, D).  dZ (N, M) -> dX (N, D).

        Entered directly on the fused softmax + cross-entropy path, where the loss gives dL/dZ itself.
        """
        self.dZ = dZ
        self.dW = self.X.T @ dZ
        self.db = dZ.sum(axis=0)
        return dZ @ self.W.T


LAYERS: dict[str, type] = {
    "dense": Dense,
}
