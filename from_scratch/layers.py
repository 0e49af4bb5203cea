"""Layers in matrix form: each works on a whole batch, caches what backward needs, and never mutates its input.

`Layer` is the public protocol: every shipped layer derives from it, and a user's own layer subclasses it to be
built into a `Sequential` and checked against its Keras twin (`compare.check_layer`). Shapes exclude the batch
axis and are tuples; an MLP's width D is the 1-tuple (D,).

This module holds the protocol, Dense and Dropout and the registry LAYERS; the normalization layers are in
from_scratch/normalization.py, the convolutional ones in conv.py and pooling.py, each registering in LAYERS.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from from_scratch.activations import Activation, get_activation
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError, check_real

Array = np.ndarray
Shape = tuple[int, ...]


class Layer:
    """The layer protocol.  X (N, *input_shape) -> Y (N, *output_shape).

    Required:
    - `build(input_shape, dtype, rng) -> output_shape`: create the parameters for inputs of `input_shape`
      (a tuple without the batch axis) in `dtype`, drawing any random initial values from `rng`.
    - `forward(x, training=False) -> y`: the batch forward pass; cache what backward needs. It must not write
      into `x`.
    - `backward(dy) -> dx`: dy = dL/dY (N, *output_shape) -> dx = dL/dX (N, *input_shape); afterwards `grads`
      holds dL/dparam aligned one to one with `params`. It must not write into `dy`.
    - `params` / `grads`: lists of arrays in Keras's `get_weights()` order and layout for the twin layer.
      `params` returns the layer's own arrays (writable, in the model's dtype, the same objects on every call):
      `Sequential.set_weights` writes new values into them in place.
    - The layer survives `copy.deepcopy` (`Sequential.astype` copies its layers): no modules, open files or
      locks among its attributes.

    Optional declarations, with their defaults (attributes of the layer itself, read by the harness):
    - `kind`: the name the layer is registered and named under (default: the class name in snake_case, as Keras
      names layers: `Swish` -> "swish").
    - `weight_names`: a name per entry of `params` (default "weight_0", "weight_1", ...; `compare.check_layer`
      and `check_model` name undeclared parameters after the Keras twin's variables).
    - `trainable`: a flag per entry of `params` (default all True); a non-trainable entry (a moving mean) has a
      zero gradient and is compared by its value after the training pass.
    - `deterministic`: False when a training forward pass draws random numbers (Dropout): then the layer offers
      `draw_mask(shape)` and `fix_mask(mask)`, and its Keras twin a `mask` attribute (as keras_impl's
      FixedMaskDropout), so that the harness can give both sides the same randomness.
    - `kinks`: input values where the derivative jumps (a ReLU-like layer: (0.0,)); `check_layer` keeps its random
      inputs away from them, since at a kink two correct implementations may legitimately differ.
    - `integer_inputs`: True when the inputs are indices (an Embedding): the harness draws indices for it, does
      not move them by an ulp and takes no derivative with respect to them.
    - `input_grad_optional`: True when `backward(dy, input_grad=False)` may skip dL/dX (and return None), which
      the model uses for the first layer of a training step.
    - `regularization()`: the penalty the layer adds to the loss (default 0); its gradient is already in `grads`.
    - `passes_through(training)`: True when `forward(x, training)` returns `x` itself (default False): an inactive
      Dropout. Keras's twin then returns its input tensor, which keeps the logits a softmax output carries, so a
      cross-entropy above it is still computed from the logits below. Such a layer has no parameters.
    - `several_inputs`: True for a layer called on a list of tensors (a merge: Add, Concatenate; see
      from_scratch/merge.py): then `build` takes a list of shapes, `forward(xs, training)` a list of arrays, and
      `backward(dy)` returns a list with one dL/dx per input.
    - `record()`: named intermediates to line up with the twin's in the layer-by-layer diagnosis (Dense: Z, dZ).
    - `forward_terms(x_terms)` / `backward_terms(x_terms, dy_terms)`: the magnitudes of the terms that rounding
      summed (see compare/terms.py); without them the harness measures this layer's float64 errors plain
      norm-relative and its float32 errors against Keras's own float32 error (the layer-agnostic rule).
    """

    weight_names: tuple[str, ...] | None = None
    trainable: tuple[bool, ...] | None = None
    several_inputs: bool = False
    deterministic: bool = True
    kinks: tuple[float, ...] = ()
    input_grad_optional: bool = False
    name: str = ""

    @property
    def kind(self) -> str:
        """The class name in snake_case, as Keras names layers (PReLU -> "p_re_lu", LayerNorm -> "layer_norm")."""
        name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(self).__name__)
        return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()

    @property
    def params(self) -> list[Array]:
        return []

    @property
    def grads(self) -> list[Array]:
        return []

    def __call__(self, inputs: Any) -> Any:
        """Keras's functional API: called on a symbolic tensor (`from_scratch.graph.Input` or another layer's
        output), or on a list of them for a layer of several inputs, it returns the symbolic output tensor; a
        `from_scratch.graph.Model(inputs, outputs)` then builds and runs the graph."""
        from from_scratch.graph import call_layer

        return call_layer(self, inputs)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """Default: no parameters, output shaped as the input. A layer of several inputs (`several_inputs`) is given
        a list of shapes: by default they must agree (an elementwise merge), and the output has that shape."""
        if self.several_inputs and isinstance(input_shape, list):
            shapes = [tuple(s) for s in input_shape]
            if any(s != shapes[0] for s in shapes[1:]):
                raise BadInputError(
                    f"layer {self.name or type(self).__name__!r} is called on inputs of shapes "
                    f"{' and '.join(map(str, shapes))}: its default build() shapes the output as its inputs, which "
                    "must then agree; define build(input_shapes, dtype, rng) returning the output shape"
                )
            return shapes[0]
        return tuple(input_shape)

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must define forward(x, training=False)")

    def backward(self, dy: Array) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must define backward(dy)")

    def regularization(self) -> float:
        return 0.0

    def passes_through(self, training: bool) -> bool:
        return False

    def record(self) -> dict[str, Array]:
        return {}

    def param_names(self) -> tuple[str, ...]:
        """`weight_names`, or "weight_0", ... when the layer declares none."""
        names = self.weight_names
        return tuple(names) if names is not None else tuple(f"weight_{i}" for i in range(len(self.params)))

    def param_trainable(self) -> tuple[bool, ...]:
        """`trainable`, or all True when the layer declares nothing."""
        flags = self.trainable
        return tuple(flags) if flags is not None else (True,) * len(self.params)


def as_shape(shape: Any, what: str = "input_shape") -> Shape:
    """A shape without the batch axis as a tuple of positive ints; an int D is the 1-tuple (D,)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if (
        not isinstance(shape, (tuple, list))
        or not shape
        or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise BadInputError(f"{what} must be a positive integer or a tuple of positive integers, got {shape!r}")
    return tuple(int(d) for d in shape)


def _flat(m: Array) -> Array:
    """(N, ..., D) -> (N ... , D): every leading axis as rows (a view for a contiguous array; 2-D as it is)."""
    return m if m.ndim == 2 else m.reshape(-1, m.shape[-1])


class Regularizer:
    """Keras's L1L2 penalty on one weight tensor: R(W) = l1 sum |W| + l2 sum W^2, dR/dW = l1 sign(W) + 2 l2 W.

    Keras adds R to the loss of a training step (`model.losses`), so dL/dW gains dR/dW.
    Keras quirk: the factors pass through a float32 tensor (`ops.cast(0.01, "float64")` converts the Python
    float to float32 first), so even a float64 model uses fl32(l1), fl32(l2): 0.01 acts as 0.009999999776.
    Measured: a 1e-9 relative loss difference with the exact 0.01, 0 with fl32(0.01).
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        # Keras keeps the factors in float32 (see above): beyond float32's range they cannot be represented at all
        top = float(np.finfo(np.float32).max)
        self.l1, self.l2 = check_real("regularizer", "l1", l1, 0, top), check_real("regularizer", "l2", l2, 0, top)
        self.l1_used, self.l2_used = float(np.float32(l1)), float(np.float32(l2))

    def __bool__(self) -> bool:
        return bool(self.l1 or self.l2)

    def penalty(self, w: Array) -> float:
        value = 0.0
        if self.l1:
            value += self.l1_used * np.abs(w).sum()
        if self.l2:
            value += self.l2_used * (w * w).sum()
        return value

    def grad(self, w: Array) -> Array:
        return w.dtype.type(self.l1_used) * np.sign(w) + w.dtype.type(2 * self.l2_used) * w


def activation_terms(f: Activation, z: Array, a: Array, z_terms: Array) -> dict[str, Array]:
    """{"Z": M_Z, "A": M_A} for A = f(Z) given the term magnitudes M_Z behind Z (Dense.forward_terms):
    M_A = |A| + |f'(Z)| M_Z (+ the activation's own `value_terms`; softmax: its JVP bound)."""
    z = z.astype(np.float64)
    a = np.abs(a.astype(np.float64))
    if f.grad is None:  # softmax
        return {"Z": z_terms, "A": a + a * (z_terms + (a * z_terms).sum(axis=-1, keepdims=True))}
    if f.name == "step":
        return {"Z": z_terms, "A": a}
    own = f.value_terms(z) if f.value_terms is not None else 0
    return {"Z": z_terms, "A": a + own + f.grad_magnitude(z) * z_terms}


def glorot_uniform(fan_in: int, fan_out: int, dtype: np.dtype, rng: np.random.Generator) -> Array:
    """Keras's default kernel initializer: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)).

    -> (fan_in, fan_out). The draw comes from NumPy's generator, so it does not reproduce Keras's own numbers;
    the comparison copies weights from one side to the other instead.
    """
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


class Dense(Layer):
    """A = f(Z), Z = X @ W + b;  X (N, D), W (D, M), b (M,) -> Z, A (N, M).

    On a sequence X (N, T, D) (any (N, ..., D)) it acts on the last axis, as Keras's Dense: the same W and b at every
    time step, Z (N, T, M). Backward then sums over the steps as over the batch: with X_m, dZ_m the arrays flattened
    to (N*T, D), (N*T, M), dW = X_m.T @ dZ_m, db = sum of dZ_m's rows, dX = dZ @ W.T (N, T, D).

    Keras layout: the kernel is (in, out), so a row-batch needs no transpose (textbook column form: W_col = W.T).
    Backward, from dA = dL/dA (N, M):
        dZ = f'(Z) * dA          (or the activation's vector-Jacobian product, for softmax)
        dW = X.T @ dZ            (D, M)
        db = dZ.sum(axis=0)      (M,)
        dX = dZ @ W.T            (N, D)
    """

    kind = "dense"
    weight_names = ("kernel", "bias")
    trainable = (True, True)
    input_grad_optional = True

    def __init__(
        self,
        units: int,
        activation: str = "linear",
        name: str | None = None,
        kernel_l1: float = 0.0,
        kernel_l2: float = 0.0,
        bias_l1: float = 0.0,
        bias_l2: float = 0.0,
    ) -> None:
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise BadInputError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation: Activation = get_activation(activation)
        self.name = name or "dense"
        self.kernel_regularizer = Regularizer(kernel_l1, kernel_l2)
        self.bias_regularizer = Regularizer(bias_l1, bias_l2)
        self.W: Array | None = None
        self.b: Array | None = None

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Dense:
        return cls(spec.units, spec.activation, **spec.options)

    def spec(self) -> LayerSpec:
        options = {
            key: value
            for key, value in (
                ("kernel_l1", self.kernel_regularizer.l1),
                ("kernel_l2", self.kernel_regularizer.l2),
                ("bias_l1", self.bias_regularizer.l1),
                ("bias_l2", self.bias_regularizer.l2),
            )
            if value
        }
        return LayerSpec("dense", self.units, self.activation.name, options)

    def regularization(self) -> float:
        """R(W) + R(b), the penalty Keras adds to the loss."""
        return self.kernel_regularizer.penalty(self.W) + self.bias_regularizer.penalty(self.b)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """Glorot-uniform kernel (D, units), zero bias (units,), as Keras, for inputs (D,) or (..., D) (a sequence
        (T, D)); returns (units,) or (..., units)."""
        self.W = glorot_uniform(input_shape[-1], self.units, dtype, rng)
        self.b = np.zeros(self.units, dtype=dtype)
        return (*input_shape[:-1], self.units)

    def record(self) -> dict[str, Array]:
        """Z and dL/dZ, lined up with the twin's pre-activation in the diagnosis."""
        return {"Z": self.Z, "dZ": getattr(self, "dZ", None)}

    @property
    def params(self) -> list[Array]:
        return [self.W, self.b]

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """Magnitudes of the terms behind Z and A, from those behind X (float64, see compare/terms.py):
        M_Z = M_X |W| + |b|, M_A = |A| + |f'(Z)| M_Z (+ the activation's own `value_terms`; softmax: its JVP bound).
        A value that is itself a cancellation (Z near 0 from terms of both signs) carries an error of order u M_Z,
        not u |Z|, and dW = A_prev^T dZ inherits it, so the next layer measures with M_A, not |A|."""
        z_terms = x_terms @ np.abs(self.W.astype(np.float64)) + np.abs(self.b.astype(np.float64))
        return activation_terms(self.activation, self.Z, self.A, z_terms)

    def backward_terms(
        self, x_terms: Array, dA_terms: Array | None, dZ_terms: Array | None = None
    ) -> tuple[list[Array], Array, dict[str, Array]]:
        """([M_W, M_b], |dX| terms, {"dZ": |dZ| terms}) from the terms behind dA (or dZ itself on the fused path):
        |dZ| = |dA| |f'(Z)| (softmax: P (|dA| + sum_k |dA_k| P_k)), M_W = M_X^T |dZ|, M_b = sum_n |dZ|,
        |dX| = |dZ| |W|^T. On a sequence (N, T, ...) M_W and M_b sum over the steps as over the batch (flattened to
        (N*T, ...) rows, as backward_from_z)."""
        if dZ_terms is None:
            if self.activation.grad is None:  # softmax: |P * (dA - sum dA P)| <= P * (|dA| + sum |dA| P)
                p = self.A.astype(np.float64)
                dZ_terms = p * (dA_terms + (dA_terms * p).sum(axis=-1, keepdims=True))
            else:
                dZ_terms = dA_terms * self.activation.grad_magnitude(self.Z.astype(np.float64))
        w_abs = np.abs(self.W.astype(np.float64))
        rows = _flat(dZ_terms)
        return [_flat(x_terms).T @ rows, rows.sum(axis=0)], dZ_terms @ w_abs.T, {"dZ": dZ_terms}

    @property
    def grads(self) -> list[Array]:
        return [self.dW, self.db]

    def forward(self, x: Array, training: bool = False) -> Array:
        """Z = X @ W + b, A = f(Z).  X (N, D) -> A (N, M); caches X, Z, A."""
        if self.W is None:
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")
        self.X = x
        self.Z = x @ self.W + self.b
        self.A = self.activation.forward(self.Z)
        return self.A

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dZ = f'(Z) * dA, then `backward_from_z`.  dA (N, M) -> dX (N, D)."""
        if not hasattr(self, "Z"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        self.dA = dA
        return self.backward_from_z(self.activation.backward(self.Z, self.A, dA), input_grad)

    def backward_from_z(self, dZ: Array, input_grad: bool = True) -> Array | None:
        """dW = X.T @ dZ (D, M), db = sum_n dZ (M,), dX = dZ @ W.T (N, D).  dZ (N, M) -> dX (N, D).
        On a sequence dZ (N, T, M): X and dZ flattened to (N*T, D), (N*T, M) rows for dW and db; dX (N, T, D).

        Entered directly on the fused softmax + cross-entropy path, where the loss gives dL/dZ itself.
        With input_grad=False (the first layer of a training step: nothing needs dL/dX) dX is not computed and
        None is returned, saving a third of the layer's backward arithmetic.
        """
        self.dZ = dZ
        rows = _flat(dZ)
        self.dW = _flat(self.X).T @ rows
        self.db = rows.sum(axis=0)
        if self.kernel_regularizer:
            self.dW = self.dW + self.kernel_regularizer.grad(self.W)
        if self.bias_regularizer:
            self.db = self.db + self.bias_regularizer.grad(self.b)
        return dZ @ self.W.T if input_grad else None


class Dropout(Layer):
    """Inverted dropout.  X (N, D) -> A (N, D).

    Training: A = X * s * M with M (N, D) in {0, 1} kept with probability 1 - rate and s = 1 / (1 - rate)
    (rounded to the model dtype, as TensorFlow does), so E[A] = X. Inference: A = X.
    Backward: dX = dA * s * M (the same mask).

    The mask is drawn from NumPy's generator (seeded by the model), one new mask per training forward pass;
    Keras's comes from TensorFlow's Philox generator, which NumPy cannot reproduce, so for parity the harness
    draws a mask once and sets it on both sides with `fix_mask` (then every training pass reuses it).
    """

    kind = "dropout"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()
    deterministic = False

    def __init__(self, rate: float, name: str | None = None) -> None:
        self.rate = check_real("Dropout", "rate", rate, 0, 1, high_open=True)
        self.name = name or "dropout"
        self.fixed_mask: Array | None = None

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Dropout:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec("dropout", None, "linear", {"rate": self.rate})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        self.dtype, self.rng = dtype, rng
        return tuple(input_shape)

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """The mask and the scale are exact: M_A = M_X s M in training."""
        return {"A": x_terms * float(self.scale) * self.mask if self.training else x_terms}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        """No parameters; |dX| = |dA| s M in training."""
        return [], dA_terms * float(self.scale) * self.mask if self.training else dA_terms, {}

    def passes_through(self, training: bool) -> bool:
        """Inactive (inference, or rate 0): A = X, the same array, as Keras's Dropout returns its input."""
        return not (training and self.rate > 0)

    def fix_mask(self, mask: Array | None) -> None:
        """Use `mask` (N, D) of 0/1 in every training pass (None: draw a fresh one each pass)."""
        self.fixed_mask = None if mask is None else np.asarray(mask).astype(self.dtype)

    def draw_mask(self, shape: tuple[int, ...]) -> Array:
        """A keep-mask: 1 with probability 1 - rate (uniform >= rate, as TensorFlow's test)."""
        return (self.rng.uniform(size=shape) >= self.rate).astype(self.dtype)

    def forward(self, x: Array, training: bool = False) -> Array:
        self.X = x
        self.training = training and self.rate > 0
        if not self.training:
            self.A = x
            return x
        self.mask = self.fixed_mask if self.fixed_mask is not None else self.draw_mask(x.shape)
        if self.mask.shape != x.shape:
            raise BadInputError(f"layer {self.name!r}: fixed dropout mask has shape {self.mask.shape}, input {x.shape}")
        self.scale = self.dtype.type(1.0 / (1.0 - self.rate))
        self.A = x * self.scale * self.mask
        return self.A

    def backward(self, dA: Array) -> Array:
        """dX = dA * s * M in training, dA in inference.  dA (N, D) -> dX (N, D)."""
        self.dA = dA
        return dA * self.scale * self.mask if self.training else dA


LAYERS: dict[str, type[Layer]] = {
    "dense": Dense,
    "dropout": Dropout,
}


def __getattr__(name: str) -> Any:
    """BatchNormalization and LayerNormalization, defined in from_scratch/normalization.py (which registers them in
    LAYERS), stay importable from here: read from that module on first use, so that no import circle forms."""
    if name in ("BatchNormalization", "LayerNormalization"):
        from from_scratch import normalization

        return getattr(normalization, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
