"""Perceptron gates in matrix form, XOR from three of them, and an MLP that learns XOR by gradient descent.

A perceptron fires when its weighted sum crosses the threshold:

    y = step(x . w + b),   step(z) = 1 if z > 0 else 0

In matrix form one call evaluates a gate on all four inputs at once: X (4, 2) @ w (2,) + b -> (4,).
The weights and biases are the seed post's (001): AND w = [0.5, 0.5], b = -0.7; OR w = [0.5, 0.5], b = 0.
The post names NAND without listing it; its values here are the book's, w = [-0.5, -0.5], b = 0.7.
OR's bias 0 works only because the threshold is strict: OR(0, 0) = step(0) = 0.

No single line separates XOR's ones from its zeros, so no single perceptron computes it; two layers do:
XOR(x) = AND(NAND(x), OR(x)). A network can also *learn* it: a 2-4-1 MLP (tanh hidden, sigmoid output) trained
on the four points with binary cross-entropy and plain gradient descent, W <- W - lr dL/dW.

Simplified: the XOR network trains by whole-batch plain SGD (from_scratch.optimizers.SGD), no momentum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from from_scratch.activations import step
from from_scratch.arch import Architecture
from from_scratch.model import Sequential
from from_scratch.optimizers import SGD

Array = np.ndarray

#: All four inputs of a two-input gate, one per row.  (4, 2)
INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])

#: name -> (w (2,), b), from the seed post (NAND from the book it follows).
GATES: dict[str, tuple[Array, float]] = {
    "AND": (np.array([0.5, 0.5]), -0.7),
    "OR": (np.array([0.5, 0.5]), 0.0),
    "NAND": (np.array([-0.5, -0.5]), 0.7),
}


def gate(name: str, x: Array) -> Array:
    """y = step(X @ w + b) for the gate `name`.  X (N, 2) -> y (N,) of 0.0 / 1.0."""
    w, b = GATES[name]
    return step(x @ w + b)


def xor(x: Array) -> Array:
    """XOR as a two-layer perceptron: AND(NAND(x), OR(x)).  X (N, 2) -> y (N,)."""
    hidden = np.stack([gate("NAND", x), gate("OR", x)], axis=1)  # (N, 2)
    return gate("AND", hidden)


def truth_table(name: str, x: Array, y: Array) -> list[str]:
    """Rows 'x1 x2 | y' for printing."""
    return [f"  {name:4s} {int(a)} {int(b)} | {int(v)}" for (a, b), v in zip(x, y)]


def learn_xor(
    arch: str = "2-4:tanh-1:sigmoid", lr: float = 1.0, seed: int = 0, margin: float = 0.1, max_steps: int = 5000
) -> dict[str, Any]:
    """Train a from_scratch MLP on XOR until every output is within `margin` of its target.

    One step (model.train_step with SGD): (L, grads) from backprop on X, T; W_i <- W_i - lr dL/dW_i.
    X (4, 2), T (4, 1). `first_correct_step` is the first step at which all four outputs are on the right side
    of 0.5 (|P - T| < 0.5); `steps` the first at which they are within `margin`.
    """
    model = Sequential.from_architecture(Architecture.parse(arch), dtype="float64", seed=seed)
    targets = xor(INPUTS)[:, None]  # (4, 1)
    first_correct = None
    loss = float("nan")
    predictions = model.predict(INPUTS)
    steps = 0
    model.compile(optimizer=SGD(learning_rate=lr), loss="binary_crossentropy")
    for steps in range(1, max_steps + 1):
        loss = model.train_step(INPUTS, targets)
        predictions = model.predict(INPUTS)
        error = np.abs(predictions - targets).max()
        if first_correct is None and error < 0.5:
            first_correct = steps
        if error < margin:
            break
    return {
        "arch": arch,
        "lr": lr,
        "seed": seed,
        "steps": steps,
        "first_correct_step": first_correct,
        "learned": bool(np.abs(predictions - targets).max() < margin),
        "loss": float(loss),
        "predictions": predictions.ravel().tolist(),
        "targets": targets.ravel().tolist(),
    }


def run(
    out: Callable[[str], None] = print,
    arch: str = "2-4:tanh-1:sigmoid",
    lr: float = 1.0,
    seed: int = 0,
    margin: float = 0.1,
    max_steps: int = 5000,
) -> dict[str, Any]:
    """Print the gate truth tables and the XOR training; return each gate's outputs on INPUTS and the MLP's
    final predictions and step counts."""
    out("Perceptron gates, y = step(X @ w + b) on all four inputs at once (X rows: 00, 01, 10, 11)")
    tables: dict[str, list[int]] = {}
    for name, (w, b) in GATES.items():
        y = gate(name, INPUTS)
        tables[name] = y.astype(int).tolist()
        out(f"{name}: w = {w.tolist()}, b = {b}")
        for line in truth_table(name, INPUTS, y):
            out(line)
    out("OR's bias 0 works because the threshold is strict: step(0) = 0.")
    y = xor(INPUTS)
    tables["XOR"] = y.astype(int).tolist()
    out("XOR = AND(NAND(x), OR(x)), a two-layer perceptron:")
    for line in truth_table("XOR", INPUTS, y):
        out(line)

    out(f"Learning XOR instead: {arch}, binary cross-entropy, gradient descent lr = {lr}, seed {seed}")
    learned = learn_xor(arch, lr, seed, margin, max_steps)
    out(f"  all four on the right side of 0.5 after {learned['first_correct_step']} steps")
    if learned["learned"]:
        out(f"  all four within {margin} of their targets after {learned['steps']} steps, loss {learned['loss']:.4f}")
    else:
        out(f"  not within {margin} of the targets after {max_steps} steps (a poor seed can stall in a local minimum)")
    for (a, b), p, t in zip(INPUTS, learned["predictions"], learned["targets"]):
        out(f"  {int(a)} {int(b)} -> {p:.4f} (target {int(t)})")
    return {**tables, "mlp": learned}
