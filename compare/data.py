"""Data sets the harness feeds to both sides: seeded synthetic batches and scikit-learn's bundled digits.

Every loader returns (X (N, D), Y (N, K) one-hot) as float64 NumPy arrays; the harness casts to the model dtype.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from from_scratch.errors import BadInputError

Array = np.ndarray


def one_hot(labels: Array, classes: int) -> Array:
    """Integer labels (N,) -> one-hot rows (N, classes)."""
    return np.eye(classes)[labels]


def synthetic(input_dim: int, classes: int, n: int, seed: int) -> tuple[Array, Array]:
    """X ~ N(0, 1) of shape (n, input_dim), uniformly drawn classes, one-hot Y (n, classes); seeded."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, input_dim)), one_hot(rng.integers(0, classes, size=n), classes)


def digits() -> tuple[Array, Array]:
    """scikit-learn's bundled 8x8 digits: X (1797, 64) scaled to [0, 1] (pixels / 16), one-hot Y (1797, 10)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BadInputError(
            "--data digits needs scikit-learn, which is not installed; install it with "
            "pip install 'backprop-parity[data]' (or pip install scikit-learn)"
        ) from None
    bunch = load_digits()
    return bunch.data / 16.0, one_hot(bunch.target, 10)


def _check_fits(name: str, x: Array, y: Array, input_dim: int, classes: int) -> None:
    if x.shape[1] != input_dim or y.shape[1] != classes:
        raise BadInputError(
            f"--data {name} has {x.shape[1]} features and {y.shape[1]} classes, but the architecture expects "
            f"{input_dim} inputs and {classes} outputs (try --arch {x.shape[1]}-32-{y.shape[1]})"
        )


def _digits_batch(input_dim: int, classes: int, n: int, seed: int) -> tuple[Array, Array]:
    x, y = digits()
    _check_fits("digits", x, y, input_dim, classes)
    rows = np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False)
    return x[rows], y[rows]


#: name -> loader(input_dim, classes, n, seed) -> (X, Y): one batch of n samples.
BATCHES: dict[str, Callable[[int, int, int, int], tuple[Array, Array]]] = {
    "synthetic": synthetic,
    "digits": _digits_batch,
}


def load_batch(name: str, input_dim: int, classes: int, n: int, seed: int) -> tuple[Array, Array]:
    """One batch of `n` samples from data set `name`, fitted to the architecture's input and output widths."""
    if name not in BATCHES:
        raise BadInputError(f"unknown data set {name!r}; known: {', '.join(BATCHES)}")
    if n <= 0:
        raise BadInputError(f"batch size must be a positive integer, got {n}")
    return BATCHES[name](input_dim, classes, n, seed)
