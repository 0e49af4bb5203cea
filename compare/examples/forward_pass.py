"""The seed post's three-layer forward pass (001), computed correctly, next to what its listing computes.

The network: x (2,) -> 3 sigmoid units -> 2 sigmoid units -> 2 identity outputs,

    a1 = sigmoid(x @ W1 + b1)     W1 (2, 3), b1 (3,)
    a2 = sigmoid(a1 @ W2 + b2)    W2 (3, 2), b2 (2,)
    y  = a2 @ W3 + b3             W3 (2, 2), b3 (2,)

with the post's numbers. Here it runs through from_scratch Dense layers with those weights set, on a batch of one.

The post's listing differs from these equations in three ways: it adds b1 a second time (`y1 = np.array(y1) + b1`);
it only *prints* sigmoid(y1) and sigmoid(y2), passing the un-activated sums y1 and y2 on to the next layer; and
its sigmoid rounds to one decimal (`np.round(..., decimals=1)`). `seed_listing` reproduces it line for line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from from_scratch.activations import sigmoid
from from_scratch.layers import Dense
from from_scratch.model import Sequential

Array = np.ndarray

X = np.array([1.0, 2.0])
W1 = np.array([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]])
B1 = np.array([-0.3, -0.5, -0.8])
W2 = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
B2 = np.array([0.2, 0.6])
W3 = np.array([[0.1, 0.5], [0.6, 0.8]])
B3 = np.array([-0.3, -0.2])


def correct_forward() -> dict[str, list[float]]:
    """The forward pass through a from_scratch Sequential with the post's weights.  x (1, 2) -> y (1, 2).

    Returns each layer's pre-activation z and activation a (a3 = y, identity output).
    """
    model = Sequential([Dense(3, "sigmoid"), Dense(2, "sigmoid"), Dense(2, "linear")], input_dim=2, seed=None)
    model.set_weights([W1, B1, W2, B2, W3, B3])
    model.forward(X[None, :])
    values = {}
    for i, layer in enumerate(model.layers, start=1):
        values[f"z{i}"] = layer.Z[0].tolist()
        values[f"a{i}"] = layer.A[0].tolist()
    return values


def seed_listing(add_b1_twice: bool = True) -> dict[str, list[float]]:
    """The post's listing, line for line: what it prints after layers 1 and 2, and its output y3.

    With add_b1_twice=False the repeated `y1 = y1 + b1` is left out (everything else as listed).
    """

    def rounded_sigmoid(z: Array) -> Array:  # the post's sigmoid: np.round(1 / (1 + exp(-z)), decimals=1)
        return np.round(sigmoid(z), decimals=1)

    y1 = X @ W1 + B1
    printed1 = rounded_sigmoid(y1)
    if add_b1_twice:
        y1 = y1 + B1
    y2 = y1 @ W2 + B2  # the sum y1 goes on, not sigmoid(y1)
    printed2 = rounded_sigmoid(y2)
    y3 = y2 @ W3 + B3  # likewise y2
    return {"printed1": printed1.tolist(), "printed2": printed2.tolist(), "y3": y3.tolist()}


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6f}" for v in values) + "]"


def run(out: Callable[[str], None] = print) -> dict[str, Any]:
    """Print the correct value of each layer, the listing's values, and their differences; return them all."""
    correct = correct_forward()
    listing = seed_listing()
    b1_once = seed_listing(add_b1_twice=False)
    out(f"x = {X.tolist()}; sigmoid, sigmoid, identity (from_scratch Dense layers with the post's weights)")
    out(f"  z1 = x @ W1 + b1  = {_fmt(correct['z1'])}")
    out(f"  a1 = sigmoid(z1)  = {_fmt(correct['a1'])}")
    out(f"  z2 = a1 @ W2 + b2 = {_fmt(correct['z2'])}")
    out(f"  a2 = sigmoid(z2)  = {_fmt(correct['a2'])}")
    out(f"  y  = a2 @ W3 + b3 = {_fmt(correct['a3'])}")
    out("The post's listing (b1 added twice, sums passed on un-activated, sigmoid rounded to 1 decimal) prints:")
    out(f"  layer 1: {listing['printed1']}   layer 2: {listing['printed2']}   output: {_fmt(listing['y3'])}")
    differences = {
        "layer1": (np.array(listing["printed1"]) - correct["a1"]).tolist(),
        "layer2": (np.array(listing["printed2"]) - correct["a2"]).tolist(),
        "output": (np.array(listing["y3"]) - correct["a3"]).tolist(),
    }
    max_abs = {name: float(np.abs(d).max()) for name, d in differences.items()}
    out("Listing minus correct:")
    for name, d in differences.items():
        out(f"  {name:7s} {_fmt(d)}   max |difference| {max_abs[name]:.4f}")
    out(
        f"With b1 added only once (sums still passed on un-activated) the output would be {_fmt(b1_once['y3'])}: "
        "fixing b1 alone does not recover y; the activations must be passed on as well."
    )
    return {
        "correct": correct,
        "seed_listing": listing,
        "seed_listing_b1_once": b1_once,
        "difference": differences,
        "max_abs_difference": max_abs,
    }
