"""A user's own layer with parameters: layer normalisation over the features of each sample.

    mu = mean_j x_j,  var = mean_j (x_j - mu)^2,  r = 1 / sqrt(var + eps),  xhat = (x - mu) r
    y = gamma xhat + beta                                    x (N, D), gamma (D,), beta (D,) -> y (N, D)

Backward, with dxhat = dy gamma (each row on its own, D features):

    dgamma = sum_n dy xhat,   dbeta = sum_n dy,
    dx = (r / D) (D dxhat - sum_j dxhat - xhat sum_j (dxhat xhat))

Its Keras twin is keras.layers.LayerNormalization(epsilon=1e-3) (Keras's default epsilon; weights [gamma, beta]).
"""

from __future__ import annotations

import numpy as np

from from_scratch import Layer


class LayerNorm(Layer):
    """Normalise each sample over its D features, then scale by gamma and shift by beta."""

    weight_names = ("gamma", "beta")

    def __init__(self, epsilon: float = 1e-3) -> None:
        self.epsilon = epsilon

    def build(self, input_shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> tuple[int, ...]:
        (d,) = input_shape
        self.gamma, self.beta = np.ones(d, dtype=dtype), np.zeros(d, dtype=dtype)
        return (d,)

    @property
    def params(self) -> list[np.ndarray]:
        return [self.gamma, self.beta]

    @property
    def grads(self) -> list[np.ndarray]:
        return [self.dgamma, self.dbeta]

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        self.r = 1 / np.sqrt(var + np.asarray(self.epsilon, x.dtype))
        self.xhat = (x - mu) * self.r
        return self.gamma * self.xhat + self.beta

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.dgamma = (dy * self.xhat).sum(axis=0)
        self.dbeta = dy.sum(axis=0)
        dxhat = dy * self.gamma
        d = dy.shape[-1]
        return (self.r / d) * (
            d * dxhat - dxhat.sum(axis=-1, keepdims=True) - self.xhat * (dxhat * self.xhat).sum(axis=-1, keepdims=True)
        )


def layer_norm() -> LayerNorm:
    return LayerNorm()


def keras_layer_norm(dtype: str = "float64"):  # noqa: ANN201
    import keras

    return keras.layers.LayerNormalization(epsilon=1e-3, dtype=dtype)
