"""Layers in matrix form: each works on a whole batch, caches what backward needs, and never mutates its input.

`Layer` is the public protocol: every shipped layer derives from it, and a user's own layer subclasses it to be
built into a `Sequential` and checked against its Keras twin (`compare.check_layer`). Shapes exclude the batch
axis and are tuples; an MLP's width D is the 1-tuple (D,).
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


class BatchNormalization(Layer):
    """Batch normalisation over the batch axis, as keras.layers.BatchNormalization (momentum 0.99, epsilon 1e-3).

    (An image X (N, H, W, C): the same per channel, over the n = N H W positions.)
    The mathematics, X (N, D):  mu = mean_n X,  var = mean_n (X - mu)^2 (biased),  r = 1 / sqrt(var + eps),
        Xhat = (X - mu) r,   A = gamma Xhat + beta                          -> A (N, D)
    and the moving statistics move:  m <- m momentum + mu (1 - momentum),  v <- v momentum + var (1 - momentum).
    Inference: the same with mu, var replaced by the moving statistics m, v.
    Backward (training), with dXhat = dA gamma:
        dgamma = sum_n dA Xhat,   dbeta = sum_n dA,
        dX = (r / N) (N dXhat - sum_n dXhat - Xhat sum_n (dXhat Xhat))

    The arithmetic is Keras's own (tf.nn.moments, then tf.nn.batch_normalization, differentiated by the tape):
        inv = gamma r,   A = X inv + (beta - mu inv)
        c = sum_n dA (= dbeta),   dinv = sum_n dA X - c mu,   dgamma = dinv r,
        dvar = dinv gamma (-1/2) r^3,   dX = (dA inv - c inv / N) + (dvar / N) 2 (X - mu)
    (the variance's mean sits under stop_gradient in tf.nn.moments: its gradient is 0 in exact arithmetic).
    The closed form above is the same function, but at tiny batches with large inputs its float32 rounding was up
    to 16 times farther from the float64 truth than Keras's (batch 2, inputs x10); this arrangement keeps the two
    sides' rounding alike, and in float64 gives A, dgamma and dbeta bit for bit.
    Weights in Keras's order: gamma (1), beta (0), moving_mean (0), moving_variance (1); the last two are not
    trainable (zero gradient).
    """

    kind = "batch_normalization"
    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    trainable = (True, True, False, False)
    input_grad_optional = True

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, name: str | None = None) -> None:
        self.momentum = check_real("BatchNormalization", "momentum", momentum, 0, 1)
        self.epsilon = check_real("BatchNormalization", "epsilon", epsilon, 0, low_open=True)
        self.name = name or "batch_normalization"

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> BatchNormalization:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec("batch_normalization", None, "linear", {"momentum": self.momentum, "epsilon": self.epsilon})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """One gamma, beta and moving statistic per feature: the last axis (an image's channels, normalised over
        the batch and every position, as Keras's axis=-1)."""
        d = input_shape[-1]
        self.axes = tuple(range(len(input_shape)))  # the batch axis and any spatial ones
        self.gamma = np.ones(d, dtype=dtype)
        self.beta = np.zeros(d, dtype=dtype)
        self.moving_mean = np.zeros(d, dtype=dtype)
        self.moving_variance = np.ones(d, dtype=dtype)
        return tuple(input_shape)

    @property
    def params(self) -> list[Array]:
        return [self.gamma, self.beta, self.moving_mean, self.moving_variance]

    @property
    def grads(self) -> list[Array]:
        return [self.dgamma, self.dbeta, np.zeros_like(self.moving_mean), np.zeros_like(self.moving_variance)]

    def forward(self, x: Array, training: bool = False) -> Array:
        """A = X inv + (beta - mu inv), inv = gamma / sqrt(var + eps), with the batch's mu, var in training (and
        the moving statistics moved), the moving ones in inference.  X (N, D) -> A (N, D)."""
        self.X = x
        self.training = training
        if training:
            mu = x.mean(axis=self.axes)
            var = ((x - mu) ** 2).mean(axis=self.axes)
            m = self.momentum
            self.moving_mean[...] = self.moving_mean * m + mu * (1.0 - m)
            self.moving_variance[...] = self.moving_variance * m + var * (1.0 - m)
        else:
            mu, var = self.moving_mean.copy(), self.moving_variance.copy()
        self.mu = mu
        self.r = 1 / np.sqrt(var + self.dtype_eps(x))
        self.inv = self.r * self.gamma
        self.A = x * self.inv + (self.beta - mu * self.inv)
        return self.A

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """|A| + |gamma| r (M_X + mean_n M_X): the centring X - mu is a cancellation of terms of that size."""
        r = self.r.astype(np.float64)
        centred = (x_terms + x_terms.mean(axis=self.axes)) * r * np.abs(self.gamma.astype(np.float64))
        return {"A": np.abs(self.A.astype(np.float64)) + centred}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        """M_gamma = sum_n |dA| |Xhat|, M_beta = sum_n |dA|, the terms of dX's three sums, and for the moving
        statistics (no gradient) the magnitude of the terms behind their updated values."""
        r = self.r.astype(np.float64)
        xhat = (
            np.abs((self.X.astype(np.float64) - self.mu.astype(np.float64)) * r)
            + (x_terms + x_terms.mean(axis=self.axes)) * r
        )  # (X - mu) r cancels
        dxhat = dA_terms * np.abs(self.gamma.astype(np.float64))
        n = dA_terms.size // dA_terms.shape[-1]
        dX = (r / n) * (n * dxhat + dxhat.sum(axis=self.axes) + xhat * (dxhat * xhat).sum(axis=self.axes))
        keep = 1 - self.momentum  # m momentum + mu (1 - momentum), mu a mean of terms of size M_X
        mean_terms = np.abs(self.moving_mean.astype(np.float64)) + keep * x_terms.mean(axis=self.axes)
        var_terms = np.abs(self.moving_variance.astype(np.float64)) + keep * (
            (x_terms + x_terms.mean(axis=self.axes)) ** 2
        ).mean(axis=self.axes)
        return [(dA_terms * xhat).sum(axis=self.axes), dA_terms.sum(axis=self.axes), mean_terms, var_terms], dX, {}

    def dtype_eps(self, x: Array) -> Array:
        return np.asarray(self.epsilon, dtype=x.dtype)

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dgamma, dbeta and dX in Keras's arrangement (class docstring).  dA (N, D) -> dX (N, D) (None if not
        input_grad)."""
        self.dA = dA
        c = dA.sum(axis=self.axes)
        dinv = (dA * self.X).sum(axis=self.axes) - c * self.mu
        self.dgamma = dinv * self.r
        self.dbeta = c
        if not input_grad:
            return None
        if not self.training:  # inference: mu and var are constants
            return dA * self.inv
        n = dA.size // dA.shape[-1]
        one = self.r.dtype.type
        dvar = dinv * self.gamma * one(-0.5) * self.r * self.r * self.r
        # summed in TensorFlow's order (the product's term, then the mean's, then the variance's): at batch 2, where
        # dX is a near-total cancellation, the order decided the last 5 digits of float32 results
        return (dA * self.inv + (-c * self.inv) / one(n)) + (dvar / one(n)) * one(2) * (self.X - self.mu)


class LayerNormalization(Layer):
    """Layer normalisation over the last axis, as keras.layers.LayerNormalization (axis=-1, epsilon 1e-3, center and
    scale): per sample (and per time step of a sequence), not per feature over the batch as BatchNormalization.

    The mathematics, X (N, D) or (N, T, D), every statistic over the last axis (D values), keepdims:
        mu = mean_d X,  var = mean_d (X - mu)^2 (biased),  r = 1 / sqrt(var + eps),
        Xhat = (X - mu) r,   A = gamma Xhat + beta                          -> A shaped as X
    No moving statistics: training and inference compute the same.
    Backward, with dXhat = dA gamma and the sums over the last axis (D values) unless said:
        dgamma = sum_{n,t} dA Xhat,   dbeta = sum_{n,t} dA,
        dX = (r / D) (D dXhat - sum_d dXhat - Xhat sum_d (dXhat Xhat))

    The arithmetic is Keras's own (keras.ops.layer_normalization: tf.nn.moments, rsqrt, then the tape):
        inv = r gamma (N, T, D),   A = X inv + (-mu inv + beta)
        dinv = dA X + dA (-mu),   dgamma = sum_{n,t} dinv r,   dr = sum_d dinv gamma,   dvar = dr (-1/2) r^3,
        dX = (dA inv - sum_d (dA inv) / D) + (dvar / D) 2 (X - mu)
    (the variance's mean sits under stop_gradient in tf.nn.moments: its gradient is 0 in exact arithmetic).
    Weights in Keras's order: gamma (D,) (initial 1), beta (D,) (initial 0).
    """

    kind = "layer_normalization"
    weight_names = ("gamma", "beta")
    trainable = (True, True)
    input_grad_optional = True

    def __init__(self, epsilon: float = 1e-3, name: str | None = None) -> None:
        self.epsilon = check_real("LayerNormalization", "epsilon", epsilon, 0, low_open=True)
        self.name = name or "layer_normalization"

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> LayerNormalization:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        """Keras's default epsilon is left out of the options (the grammar's `ln`)."""
        options = {} if self.epsilon == 1e-3 else {"epsilon": self.epsilon}
        return LayerSpec("layer_normalization", None, "linear", options)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """One gamma and beta per feature of the last axis; the output is shaped as the input."""
        d = input_shape[-1]
        self.gamma = np.ones(d, dtype=dtype)
        self.beta = np.zeros(d, dtype=dtype)
        return tuple(input_shape)

    @property
    def params(self) -> list[Array]:
        return [self.gamma, self.beta]

    @property
    def grads(self) -> list[Array]:
        return [self.dgamma, self.dbeta]

    def forward(self, x: Array, training: bool = False) -> Array:
        """A = X inv + (-mu inv + beta), inv = gamma / sqrt(var + eps), mu and var over the last axis.
        X (N, ..., D) -> A (N, ..., D); caches X, mu, r, inv."""
        if not hasattr(self, "gamma"):
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")
        self.X = x
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        self.mu = mu
        self.r = 1 / np.sqrt(var + np.asarray(self.epsilon, dtype=x.dtype))
        self.inv = self.r * self.gamma
        self.A = x * self.inv + (-mu * self.inv + self.beta)
        return self.A

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dgamma, dbeta and dX in Keras's arrangement (class docstring).  dA (N, ..., D) -> dX (N, ..., D) (None if
        not input_grad)."""
        if not hasattr(self, "r"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        self.dA = dA
        lead = tuple(range(dA.ndim - 1))  # the batch axis and any time steps
        dinv = dA * self.X + dA * -self.mu
        self.dgamma = (dinv * self.r).sum(axis=lead)
        self.dbeta = dA.sum(axis=lead)
        if not input_grad:
            return None
        d = dA.shape[-1]
        one = self.r.dtype.type
        dvar = (dinv * self.gamma).sum(axis=-1, keepdims=True) * one(-0.5) * self.r * self.r * self.r
        direct = dA * self.inv
        return (direct + (-direct.sum(axis=-1, keepdims=True)) / one(d)) + (dvar / one(d)) * one(2) * (self.X - self.mu)


LAYERS: dict[str, type[Layer]] = {
    "dense": Dense,
    "dropout": Dropout,
    "batch_normalization": BatchNormalization,
    "layer_normalization": LayerNormalization,
}
