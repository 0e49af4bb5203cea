"""`Sequential`: a stack of layers with Keras's weight layout, its default loss reduction, and batch backprop.

    forward:   A_0 = X,  A_l = layer_l(A_{l-1})                      X (N, D) -> P (N, K)
    loss:      L = (1/N) sum_i w_i l_i(Y_i, P_i)
    backward:  dA_L = dL/dP, then dA_{l-1} = layer_l.backward(dA_l)  down to dX = dL/dX (N, D)

When the loss fuses with the output activation (softmax + categorical cross-entropy, as Keras does through the
logits a softmax output carries), the loss is computed from the output layer's logits Z and backprop starts at
dZ = (P - Y) / N, skipping the softmax Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from from_scratch.arch import Architecture, LayerSpec
from from_scratch.errors import BadInputError, unknown_name
from from_scratch.layers import LAYERS
from from_scratch.losses import Loss, get_loss

Array = np.ndarray

DTYPES = ("float64", "float32")


@dataclass
class BackwardPass:
    """Everything one forward + backward pass produced.

    loss: the reduced loss; grads: dL/dparam aligned with `get_weights()`; input_grad: dL/dX (N, D);
    output: the model output P (N, K); fused: whether the loss was computed from the output logits.
    """

    loss: float
    grads: list[Array]
    input_grad: Array
    output: Array
    fused: bool


class Sequential:
    """A stack of layers built for `input_dim` features in `dtype`, initialised from `seed`.

    Weights follow Keras's order [W1, b1, W2, b2, ...] with kernels (in, out) and biases (out,).
    """

    def __init__(
        self, layers: Sequence[Any], input_dim: int, dtype: str = "float64", seed: int | None = 0
    ) -> None:
        if dtype not in DTYPES:
            raise BadInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if not isinstance(input_dim, (int, np.integer)) or isinstance(input_dim, bool) or input_dim <= 0:
            raise BadInputError(f"input_dim must be a positive integer, got {input_dim!r}")
        if not layers:
            raise BadInputError("a Sequential model needs at least one layer")
        self.layers = list(layers)
        self.input_dim = int(input_dim)
        self.dtype = np.dtype(dtype)
        self.seed = seed
        rng = np.random.default_rng(seed)
        width = self.input_dim
        counts: dict[str, int] = {}
        for layer in self.layers:
            n = counts.get(layer.kind, 0)
            counts[layer.kind] = n + 1
            layer.name = layer.kind if n == 0 else f"{layer.kind}_{n}"  # Keras's names in a fresh session
            width = layer.build(width, self.dtype, rng)
        self.output_dim = width

    @classmethod
    def from_architecture(cls, arch: Architecture, dtype: str = "float64", seed: int | None = 0) -> Sequential:
        """Build the model that `arch` describes (the same description builds the Keras twin)."""
        layers = []
        for spec in arch.layers:
            if spec.kind not in LAYERS:
                raise unknown_name("layer", spec.kind, LAYERS)
            layers.append(LAYERS[spec.kind].from_spec(spec))
        return cls(layers, input_dim=arch.input_dim, dtype=dtype, seed=seed)

    @property
    def architecture(self) -> Architecture:
        """The description of this model, from which `keras_impl.build_model` builds its twin."""
        specs: tuple[LayerSpec, ...] = tuple(layer.spec() for layer in self.layers)
        return Architecture(self.input_dim, specs)

    # ----- weights -------------------------------------------------------------------------------------------
    def get_weights(self) -> list[Array]:
        """Copies of every parameter, in Keras's order [W1, b1, W2, b2, ...]."""
        return [p.copy() for layer in self.layers for p in layer.params]

    def set_weights(self, weights: Sequence[Array]) -> None:
        """Replace every parameter; count, shape and dtype must match (a float64 array is never rounded into a
        float32 model; float32 into float64 is exact and accepted)."""
        slots = [(layer, i, p) for layer in self.layers for i, p in enumerate(layer.params)]
        if len(weights) != len(slots):
            raise BadInputError(f"set_weights: expected {len(slots)} arrays, got {len(weights)}")
        for (layer, i, current), new in zip(slots, weights):
            new = np.asarray(new)
            where = f"set_weights: layer {layer.name!r} parameter {i}"
            if new.shape != current.shape:
                raise BadInputError(f"{where}: expected shape {current.shape}, got {new.shape}")
            if not np.issubdtype(new.dtype, np.floating) or np.finfo(new.dtype).bits > self.dtype.itemsize * 8:
                raise BadInputError(
                    f"{where}: dtype {new.dtype} does not fit a {self.dtype} model without rounding; "
                    f"convert it explicitly (e.g. .astype('{self.dtype}'))"
                )
        flat = iter(np.array(w, dtype=self.dtype) for w in weights)
        for layer in self.layers:
            for p in layer.params:
                p[...] = next(flat)

    # ----- forward and backward ------------------------------------------------------------------------------
    def _as_input(self, x: Array) -> Array:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise BadInputError(f"input: expected shape (N, {self.input_dim}), got {x.shape}")
        return x.astype(self.dtype, copy=False)

    def forward(self, x: Array, training: bool = False) -> Array:
        """A_l = layer_l(A_{l-1}) from A_0 = X.  X (N, D) -> output (N, K)."""
        a = self._as_input(x)
        for layer in self.layers:
            a = layer.forward(a, training=training)
        return a

    def predict(self, x: Array) -> Array:
        """The model output in inference mode.  X (N, D) -> (N, K)."""
        return self.forward(x, training=False)

    def fuses(self, loss: Loss) -> bool:
        """Whether `loss` is computed from the output layer's logits (Keras's hidden-logits path)."""
        activation = getattr(self.layers[-1], "activation", None)
        return activation is not None and activation.name in loss.fuses_with

    def backward_pass(
        self, x: Array, y: Array, loss: str | Loss = "categorical_crossentropy", sample_weight: Array | None = None
    ) -> BackwardPass:
        """One forward pass in training mode and one backward pass over the whole batch."""
        loss = get_loss(loss)
        output = self.forward(x, training=True)
        y = np.asarray(y).astype(self.dtype, copy=False)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight).astype(self.dtype, copy=False)
        last = self.layers[-1]
        fused = self.fuses(loss)
        penalty = sum(layer.regularization() for layer in self.layers)  # Keras adds model.losses to the loss
        if fused:
            value = loss.from_logits_value(y, last.Z, sample_weight)
            dX = last.backward_from_z(loss.gradient_from_logits(y, last.Z, sample_weight))
        else:
            value = loss(y, output, sample_weight)
            dX = last.backward(loss.gradient(y, output, sample_weight))
        for layer in reversed(self.layers[:-1]):
            dX = layer.backward(dX)
        grads = [g for layer in self.layers for g in layer.grads]
        return BackwardPass(float(value + penalty), grads, dX, output, fused)

    def loss_and_gradients(
        self, x: Array, y: Array, loss: str | Loss = "categorical_crossentropy", sample_weight: Array | None = None
    ) -> tuple[float, list[Array]]:
        """(L, [dL/dW1, dL/db1, ...]): the loss reduced as Keras does by default and its gradients, aligned one to
        one with `get_weights()`."""
        result = self.backward_pass(x, y, loss, sample_weight)
        return result.loss, result.grads
