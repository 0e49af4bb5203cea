"""Layers in matrix form: each works on a whole batch, caches what backward needs, and never mutates its input.

Protocol (shared by every layer in `LAYERS`):
- `build(input_dim, dtype, rng)` creates the parameters and returns the output width.
- `forward(X, training)` -> A, caching named attributes (`X`, `Z`, `A`).
- `backward(dA, input_grad=True)` -> dX, storing the parameter gradients (`dW`, `db`) and the intermediates (`dA`,
  `dZ`); with input_grad=False (the first layer, when nothing needs dL/dX) it may skip dX and return None.
- `params` / `grads`: lists in Keras's `get_weights()` order for this layer (a non-trainable weight, such as
  a moving mean, has a zero gradient); `weight_names` and `trainable` run alongside.
- `regularization()` -> the penalty this layer adds to the loss (its gradient is already in `grads`).
"""

from __future__ import annotations

import numpy as np

from from_scratch.activations import Activation, get_activation
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError

Array = np.ndarray


class Regularizer:
    """Keras's L1L2 penalty on one weight tensor: R(W) = l1 sum |W| + l2 sum W^2, dR/dW = l1 sign(W) + 2 l2 W.

    Keras adds R to the loss of a training step (`model.losses`), so dL/dW gains dR/dW.
    Keras quirk: the factors pass through a float32 tensor (`ops.cast(0.01, "float64")` converts the Python
    float to float32 first), so even a float64 model uses fl32(l1), fl32(l2): 0.01 acts as 0.009999999776.
    Measured: a 1e-9 relative loss difference with the exact 0.01, 0 with fl32(0.01).
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        for name, value in (("l1", l1), ("l2", l2)):
            if not np.isfinite(value) or value < 0:
                raise BadInputError(f"regularizer {name} must be a finite number >= 0, got {value!r}")
        self.l1, self.l2 = float(l1), float(l2)
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
    weight_names = ("kernel", "bias")
    trainable = (True, True)

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

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dZ = f'(Z) * dA, then `backward_from_z`.  dA (N, M) -> dX (N, D)."""
        self.dA = dA
        return self.backward_from_z(self.activation.backward(self.Z, self.A, dA), input_grad)

    def backward_from_z(self, dZ: Array, input_grad: bool = True) -> Array | None:
        """dW = X.T @ dZ (D, M), db = sum_n dZ (M,), dX = dZ @ W.T (N, D).  dZ (N, M) -> dX (N, D).

        Entered directly on the fused softmax + cross-entropy path, where the loss gives dL/dZ itself.
        With input_grad=False (the first layer of a training step: nothing needs dL/dX) dX is not computed and
        None is returned, saving a third of the layer's backward arithmetic.
        """
        self.dZ = dZ
        self.dW = self.X.T @ dZ
        self.db = dZ.sum(axis=0)
        if self.kernel_regularizer:
            self.dW = self.dW + self.kernel_regularizer.grad(self.W)
        if self.bias_regularizer:
            self.db = self.db + self.bias_regularizer.grad(self.b)
        return dZ @ self.W.T if input_grad else None


class Dropout:
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

    def __init__(self, rate: float, name: str | None = None) -> None:
        if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
            raise BadInputError(f"Dropout rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.name = name or "dropout"
        self.fixed_mask: Array | None = None

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Dropout:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec("dropout", None, "linear", {"rate": self.rate})

    def build(self, input_dim: int, dtype: np.dtype, rng: np.random.Generator) -> int:
        self.dtype, self.rng, self.output_width = dtype, rng, input_dim
        return input_dim

    params: list[Array] = []
    grads: list[Array] = []

    def regularization(self) -> float:
        return 0.0

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

    def backward(self, dA: Array, input_grad: bool = True) -> Array:
        """dX = dA * s * M in training, dA in inference.  dA (N, D) -> dX (N, D)."""
        self.dA = dA
        return dA * self.scale * self.mask if self.training else dA


class BatchNormalization:
    """Batch normalisation over the batch axis, as keras.layers.BatchNormalization (momentum 0.99, epsilon 1e-3).

    Training, X (N, D):  mu = mean_n X,  var = mean_n (X - mu)^2 (biased),  r = 1 / sqrt(var + eps),
        Xhat = (X - mu) r,   A = gamma Xhat + beta                          -> A (N, D)
    and the moving statistics move:  m <- m momentum + mu (1 - momentum),  v <- v momentum + var (1 - momentum).
    Inference: the same with mu, var replaced by the moving statistics m, v.
    Backward (training), with dXhat = dA gamma:
        dgamma = sum_n dA Xhat,   dbeta = sum_n dA,
        dX = (r / N) (N dXhat - sum_n dXhat - Xhat sum_n (dXhat Xhat))
    Weights in Keras's order: gamma (1), beta (0), moving_mean (0), moving_variance (1); the last two are not
    trainable (zero gradient).
    """

    kind = "batch_normalization"
    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    trainable = (True, True, False, False)

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, name: str | None = None) -> None:
        if not (0 <= momentum <= 1) or not epsilon > 0:
            raise BadInputError(f"BatchNormalization needs 0 <= momentum <= 1 and epsilon > 0, got {momentum}, {epsilon}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.name = name or "batch_normalization"

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> BatchNormalization:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec("batch_normalization", None, "linear", {"momentum": self.momentum, "epsilon": self.epsilon})

    def build(self, input_dim: int, dtype: np.dtype, rng: np.random.Generator) -> int:
        self.gamma = np.ones(input_dim, dtype=dtype)
        self.beta = np.zeros(input_dim, dtype=dtype)
        self.moving_mean = np.zeros(input_dim, dtype=dtype)
        self.moving_variance = np.ones(input_dim, dtype=dtype)
        return input_dim

    @property
    def params(self) -> list[Array]:
        return [self.gamma, self.beta, self.moving_mean, self.moving_variance]

    @property
    def grads(self) -> list[Array]:
        return [self.dgamma, self.dbeta, np.zeros_like(self.moving_mean), np.zeros_like(self.moving_variance)]

    def regularization(self) -> float:
        return 0.0

    def forward(self, x: Array, training: bool = False) -> Array:
        self.X = x
        self.training = training
        if training:
            mu = x.mean(axis=0)
            var = ((x - mu) ** 2).mean(axis=0)
            m = self.momentum
            self.moving_mean[...] = self.moving_mean * m + mu * (1.0 - m)
            self.moving_variance[...] = self.moving_variance * m + var * (1.0 - m)
        else:
            mu, var = self.moving_mean, self.moving_variance
        self.r = 1 / np.sqrt(var + self.dtype_eps(x))
        self.Xhat = (x - mu) * self.r
        self.A = self.gamma * self.Xhat + self.beta
        return self.A

    def dtype_eps(self, x: Array) -> Array:
        return np.asarray(self.epsilon, dtype=x.dtype)

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dgamma, dbeta and dX as in the class docstring.  dA (N, D) -> dX (N, D) (None if not input_grad)."""
        self.dA = dA
        self.dgamma = (dA * self.Xhat).sum(axis=0)
        self.dbeta = dA.sum(axis=0)
        if not input_grad:
            return None
        dXhat = dA * self.gamma
        if not self.training:
            return dXhat * self.r
        n = dA.shape[0]
        return (self.r / n) * (n * dXhat - dXhat.sum(axis=0) - self.Xhat * (dXhat * self.Xhat).sum(axis=0))


LAYERS: dict[str, type] = {
    "dense": Dense,
    "dropout": Dropout,
    "batch_normalization": BatchNormalization,
}
