"""The normalization layers: BatchNormalization (over the batch axis, with moving statistics) and LayerNormalization
(over the last axis, per sample), each with Keras's own arithmetic so that both sides round alike. Registered in
from_scratch.layers.LAYERS, as conv.py registers its layers; still importable from from_scratch.layers."""

from __future__ import annotations

import numpy as np

from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError, check_real
from from_scratch.layers import LAYERS, Layer, Shape

Array = np.ndarray


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


LAYERS.update({"batch_normalization": BatchNormalization, "layer_normalization": LayerNormalization})
