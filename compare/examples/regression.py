"""The seed post's regression walk-through (004): fit y = w x + b to two points by gradient descent.

Data (x, t) = (3, 7), (9, 13); the line through them is y = x + 4. Training starts from y = 3x - 8, which
predicts 1 and 19, so the sum-of-squares error is

    E = 1/2 sum_i (t_i - y_i)^2 = 1/2 (6^2 + (-6)^2) = 36.

Its derivatives, by the chain rule through y_i = w x_i + b (dE/dy_i = y_i - t_i):

    dE/dw = sum_i (y_i - t_i) x_i        dE/db = sum_i (y_i - t_i)

and each step moves against them: w <- w - lr dE/dw, b <- b - lr dE/db. At the start dE/dw = -18 + 54 = 36 and
dE/db = -6 + 6 = 0: the two errors cancel in b, so the first step changes only w.

E is quadratic in (w, b) with the constant Hessian H = [[sum x^2, sum x], [sum x, N]] = [[90, 12], [12, 2]],
eigenvalues about 91.6 and 0.393. Gradient descent converges when lr < 2 / lambda_max ~ 0.0218, and its slowest
direction shrinks by |1 - lr lambda_min| per step: at lr = 0.02, 0.992, so a few thousand steps are needed.
The badly conditioned H (ratio ~233) is why: x is not centred, so w and b pull against each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from from_scratch.losses import SumSquaredError

Array = np.ndarray

X = np.array([[3.0], [9.0]])  # (N, 1)
T = np.array([[7.0], [13.0]])  # (N, 1)
START = (3.0, -8.0)  # y = 3x - 8
TARGET = (1.0, 4.0)  # y = x + 4


def hessian(x: Array) -> Array:
    """d^2E / d(w, b)^2 = [[sum x^2, sum x], [sum x, N]] for a line fitted by sum of squares.  x (N, 1) -> (2, 2)."""
    return np.array([[float((x * x).sum()), float(x.sum())], [float(x.sum()), float(len(x))]])


def run(out: Callable[[str], None] = print, lr: float = 0.02, steps: int = 3000, show: int = 5) -> dict[str, Any]:
    """Run `steps` gradient-descent steps from y = 3x - 8 and print the first `show` and the last.

    Returns the learning rate, the stability bound 2 / lambda_max, the start and final E, the final w and b, and
    the history: one dict per step (step 0 = the start) with w, b, E and the gradient taken at that point.
    """
    loss = SumSquaredError()
    eigenvalues = np.linalg.eigvalsh(hessian(X))
    lr_max = 2.0 / float(eigenvalues.max())
    out(f"Data (x, t): {[(float(a), float(b)) for a, b in zip(X.ravel(), T.ravel())]}; start y = 3x - 8")
    out(
        f"Hessian eigenvalues {eigenvalues[1]:.3f}, {eigenvalues[0]:.3f}: converges for lr < {lr_max:.4f}; "
        f"lr = {lr}, slowest direction shrinks by {abs(1 - lr * eigenvalues[0]):.5f} per step"
    )
    w, b = START
    history = []
    for k in range(steps + 1):
        y = w * X + b  # (N, 1)
        error = float(loss(T, y))
        dY = loss.gradient(T, y)  # dE/dy = y - t, (N, 1)
        dW = float((dY * X).sum())  # dE/dw = sum (y - t) x
        db = float(dY.sum())  # dE/db = sum (y - t)
        history.append({"step": k, "w": w, "b": b, "E": error, "dE_dw": dW, "dE_db": db})
        if k <= show or k == steps:
            if k == steps and steps > show + 1:
                out("  ...")
            out(
                f"  step {k:4d}: w = {w:.6f}, b = {b:.6f}, y = {y.ravel().round(4).tolist()}, E = {error:.6g}, "
                f"dE/dw = {dW:.6g}, dE/db = {db:.6g}"
            )
        if k < steps:
            w, b = w - lr * dW, b - lr * db
    out(f"After {steps} steps: y = {w:.6f} x + {b:.6f}, E = {history[-1]['E']:.3g} (target y = x + 4)")
    return {
        "lr": lr,
        "lr_max": lr_max,
        "steps": steps,
        "E0": history[0]["E"],
        "E": history[-1]["E"],
        "w": w,
        "b": b,
        "history": history,
    }
