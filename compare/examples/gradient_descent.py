"""Gradient descent on f(x0, x1) = x0^2 + x1^2 from (3, 4), as in the seed post (001): lr 0.1, 100 steps.

The update is x <- x - lr grad f(x). The seed takes grad f by central differences,

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h),   h = 1e-4,

which for a quadratic is exact up to rounding (the h^2 f''' / 6 truncation term is zero). The analytic gradient
is (2 x0, 2 x1), so each step multiplies x by 1 - 2 lr = 0.8 and after 100 steps x = 0.8^100 (3, 4)
= (6.11e-10, 8.15e-10): the seed's printed result [6.11110793e-10 8.14814391e-10].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from from_scratch.gradcheck import numerical_gradient

Array = np.ndarray


def f(x: Array) -> float:
    """f(x) = x0^2 + x1^2.  x (2,) -> scalar."""
    return float(x[0] ** 2 + x[1] ** 2)


def grad_f(x: Array) -> Array:
    """grad f(x) = (2 x0, 2 x1).  x (2,) -> (2,)."""
    return 2 * x


def descend(grad: Callable[[Array], Array], start: Array, lr: float, steps: int) -> list[Array]:
    """x_{k+1} = x_k - lr grad(x_k), k = 0 .. steps - 1; returns [x_0, ..., x_steps] (copies, x_0 untouched)."""
    x = np.array(start, dtype=np.float64)
    path = [x.copy()]
    for _ in range(steps):
        x = x - lr * grad(x)
        path.append(x.copy())
    return path


def run(
    out: Callable[[str], None] = print,
    start: tuple[float, float] = (3.0, 4.0),
    lr: float = 0.1,
    steps: int = 100,
    h: float = 1e-4,
) -> dict[str, Any]:
    """Descend with the numerical and with the analytic gradient; print every tenth step and return both end
    points, the closed form (1 - 2 lr)^steps * start, and the largest difference between the two paths."""
    out(f"f(x0, x1) = x0^2 + x1^2 from {start}, lr = {lr}, {steps} steps")
    numerical = descend(lambda x: numerical_gradient(f, x, h), np.array(start), lr, steps)
    analytic = descend(grad_f, np.array(start), lr, steps)
    out(f"  {'step':>4}  {'numerical gradient (h = ' + str(h) + ')':>34}  {'analytic gradient (2 x0, 2 x1)':>34}")
    for k in range(0, steps + 1, max(1, steps // 10)):
        row = [np.array2string(path[k], precision=8) for path in (numerical, analytic)]
        out(f"  {k:4d}  {row[0]:>34}  {row[1]:>34}")
    closed_form = (1 - 2 * lr) ** steps * np.array(start)
    path_difference = max(float(np.abs(a - n).max()) for a, n in zip(analytic, numerical))
    out(f"End point, numerical: {numerical[-1].tolist()}")
    out(f"End point, analytic:  {analytic[-1].tolist()}")
    out(f"Closed form (1 - 2 lr)^{steps} * start = {closed_form.tolist()}")
    out(f"Largest difference between the two paths: {path_difference:.3g}")
    return {
        "numerical": numerical[-1].tolist(),
        "analytic": analytic[-1].tolist(),
        "closed_form": closed_form.tolist(),
        "path_difference": path_difference,
    }
