"""The zoo's sequence bugs, the classic mistakes of hand-written backpropagation through time: an LSTM's gates stacked
in another order, dL/dh or the cell gradient not carried back a step, the forget gate without its sigmoid derivative,
an Embedding that assigns where repeated indices must accumulate, the textbook GRU cell against Keras's reset_after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compare.zoo_planting import _compare, _images, _swap_class
from from_scratch.activations import sigmoid

Array = np.ndarray


def _sequences(n: int, shape: tuple[int, ...], k: int, seed: int = 0) -> tuple[Array, Array]:
    return _images(n, shape, k, seed)


def _lstm_step_back(change: Callable[[Any, int, Array, tuple[Array, ...]], tuple[Array, ...]]) -> Callable:
    """An LSTM step_back that runs the right one, then lets `change` alter dZ[:, t] and what is carried back."""

    def step_back(self: Any, t: int, dh: Array, carried: tuple[Array, ...]) -> tuple[Array, ...]:
        back = type(self).__mro__[1].step_back(self, t, dh, carried)
        return change(self, t, dh, back)

    return step_back


def _plant_lstm(change: Callable[[Any, int, Array, tuple[Array, ...]], tuple[Array, ...]]) -> Callable:
    return lambda m: _swap_class(m.layers[0], "step_back", _lstm_step_back(change))


def lstm_gate_order(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=11)

    def change(self: Any, t: int, dh: Array, back: tuple[Array, ...]) -> tuple[Array, ...]:
        u, dz = self.units, self.dZ[:, t]
        di, df, dg, do = (dz[:, j * u : (j + 1) * u].copy() for j in range(4))
        dz[:] = np.hstack((df, dg, di, do))  # DLFS's stacking, into weights laid out as Keras's i, f, c, o
        return back

    return _compare("8x8-lstm16-10", x, y, _plant_lstm(change), dtype=dtype)


def lstm_dh_not_carried(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=12)
    return _compare(
        "8x8-lstm16-10", x, y, _plant_lstm(lambda self, t, dh, back: (np.zeros_like(back[0]), back[1])), dtype=dtype
    )


def lstm_dc_not_carried(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (2, 8), 10, seed=13)
    return _compare(
        "2x8-lstm16-10", x, y, _plant_lstm(lambda self, t, dh, back: (back[0], np.zeros_like(back[1]))), dtype=dtype
    )


def lstm_missing_sigmoid_grad(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=14)

    def change(self: Any, t: int, dh: Array, back: tuple[Array, ...]) -> tuple[Array, ...]:
        u, dz = self.units, self.dZ[:, t]
        dz[:, u : 2 * u] /= self.sigmoid_grad(self.F[:, t])  # dz_f = dc * c_{t-1}, without f (1 - f)
        return dz @ self.U.T, back[1]

    return _compare("8x8-lstm16-10", x, y, _plant_lstm(change), dtype=dtype)


def embedding_assigns(dtype: str = "float64") -> Any:
    rng = np.random.default_rng(15)
    x, y = rng.integers(0, 50, size=(8, 12)).astype(float), np.eye(2)[rng.integers(0, 2, size=8)]

    def backward(self: Any, dY: Array) -> Array:
        self.dE = np.zeros_like(self.E)
        self.dE[self.index] = dY  # the bug: a repeated index keeps one position's gradient
        return np.zeros(self.index.shape, dY.dtype)

    return _compare(
        "12-embed50x8-lstm16-2", x, y, lambda m: _swap_class(m.layers[0], "backward", backward), dtype=dtype
    )


def gru_reset_before(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=16)

    def forward(self: Any, x: Array, training: bool = False) -> Array:
        """Keras's reset_after=True weights (two bias rows), the textbook cell: r multiplies h_{t-1} before U_h."""
        n, t_len, _ = x.shape
        u = self.units
        self.X = x
        shape = (n, t_len, u)
        self.Zg, self.R, self.Nc, self.H, self.Mh = (np.empty(shape, x.dtype) for _ in range(5))
        self.Hprev = np.zeros(shape, x.dtype)
        mx_all = x @ self.W + self.b[0]
        h = self.Hprev[:, 0]
        for t in range(t_len):
            self.Hprev[:, t] = h
            mx, mh = mx_all[:, t], h @ self.U + self.b[1]
            z = sigmoid(mx[:, :u] + mh[:, :u])
            r = sigmoid(mx[:, u : 2 * u] + mh[:, u : 2 * u])
            self.Mh[:, t] = mh[:, 2 * u :]
            cand = np.tanh(mx[:, 2 * u :] + (r * h) @ self.U[:, 2 * u :] + self.b[1, 2 * u :])  # the bug
            h = z * h + (1 - z) * cand
            self.Zg[:, t], self.R[:, t], self.Nc[:, t], self.H[:, t] = z, r, cand, h
        return self.output()

    return _compare(
        "8x8-gru16:seq-flatten-10", x, y, lambda m: _swap_class(m.layers[0], "forward", forward), dtype=dtype
    )
