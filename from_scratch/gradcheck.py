"""Central-difference numerical gradients: the witness that needs no calculus.

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)

The truncation error is about h^2 |f'''| / 6 and the rounding error about eps |f| / h; in float64, h = 1e-5
balances the two for losses of order one (measured on a 64-32-16-10 MLP: at most 3e-11 absolute, against 4e-10
at h = 1e-6 and 1.4e-10 at h = 1e-4). A coordinate whose perturbation crosses a kink (a ReLU input at
exactly 0, a max-pool window with tied maxima) measures the average of the two one-sided slopes instead, so each
point also keeps its one-sided slopes: where they part by more than KINK_JUMP the loss has a kink there, and the
point's `witness` is the slope between them nearest to the analytic value (which must be a one-sided slope or lie
between them, as any subgradient does), not the central difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError, check_real

Array = np.ndarray


def _as_float_array(what: str, x: object) -> Array:
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # a ragged list, text, None
        raise BadInputError(f"{what} must be an array of real numbers: {exc}") from None


#: The step of `gradcheck`'s central differences: balances truncation and rounding in float64 (module docstring).
GRADCHECK_STEP = 1e-5

#: One-sided slopes (f(x+h) - f(x)) / h and (f(x) - f(x-h)) / h that differ by more than this fraction of the
#: larger are a kink, not curvature: on a smooth loss they differ by about h |f''| (1e-5 |f''| at the default
#: step), so a false kink would need |f''| > 1e3 |f'|.
KINK_JUMP = 1e-2


def slopes(f: Callable[[Array], float], x: Array, f0: float, h: float = GRADCHECK_STEP) -> tuple[float, float, float]:
    """(left, central, right) slopes of the scalar f at the scalar x, f0 = f(x): (f0 - f(x-h)) / h,
    (f(x+h) - f(x-h)) / 2h, (f(x+h) - f0) / h. The caller's array is left unchanged."""
    x = _as_float_array("slopes: x", x)
    f_plus, f_minus = f(x + h), f(x - h)
    return (f0 - f_minus) / h, (f_plus - f_minus) / (2 * h), (f_plus - f0) / h


def numerical_gradient(f: Callable[[Array], float], x: Array, h: float = 1e-4) -> Array:
    """Every partial derivative of the scalar f at x by central differences.  x (any shape) -> same shape.

    `x` is perturbed one coordinate at a time and restored exactly; the caller's array is left unchanged.
    """
    if not callable(f):
        raise BadInputError(f"numerical_gradient needs a function of x, got {type(f).__name__}")
    check_real("numerical_gradient", "h", h, 0, low_open=True)
    x = _as_float_array("numerical_gradient: x", x)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + h
        f_plus = f(x)
        x[i] = keep - h
        f_minus = f(x)
        x[i] = keep
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


@dataclass
class GradcheckPoint:
    """One checked coordinate: which parameter (index into get_weights()), where, and the two values."""

    param: int
    index: tuple[int, ...]
    analytic: float
    numerical: float
    left: float | None = None
    right: float | None = None

    @property
    def at_kink(self) -> bool:
        """The one-sided slopes differ by more than KINK_JUMP of the larger: the loss is not smooth here."""
        if self.left is None or self.right is None:
            return False
        return abs(self.right - self.left) > KINK_JUMP * max(abs(self.left), abs(self.right))

    @property
    def witness(self) -> float:
        """The value the analytic gradient is held to: the central difference, or at a kink the point of
        [min(left, right), max(left, right)] nearest to the analytic value."""
        if not self.at_kink:
            return self.numerical
        return float(np.clip(self.analytic, min(self.left, self.right), max(self.left, self.right)))

    @property
    def rel_error(self) -> float:
        """|a - n| / max(|a|, |n|), 0 when both are 0."""
        scale = max(abs(self.analytic), abs(self.numerical))
        return 0.0 if scale == 0 else abs(self.analytic - self.numerical) / scale


def gradcheck(
    model: Any,
    x: Array,
    y: Array,
    loss: Any = "categorical_crossentropy",
    n_samples: int = 20,
    h: float = GRADCHECK_STEP,
    seed: int = 0,
    analytic: list[Array] | None = None,
    sample_weight: Array | None = None,
) -> list[GradcheckPoint]:
    """Compare analytic gradients with central differences of the model's loss on `n_samples` coordinates per
    parameter.

    Works on any model with `get_weights()`, `set_weights()` and `loss_and_gradients(x, y, loss)` (use a float64
    model: in float32 the rounding error eps/h swamps the signal). The analytic side is the model's own
    `loss_and_gradients` unless `analytic` (aligned with get_weights()) is given, e.g. another framework's
    gradients. The model's weights are restored afterwards.
    """
    if not all(hasattr(model, a) for a in ("get_weights", "set_weights", "loss_and_gradients")):
        raise BadInputError(
            f"gradcheck needs a model with get_weights, set_weights and loss_and_gradients, got {type(model).__name__}"
        )
    rng = np.random.default_rng(seed)
    weights = model.get_weights()
    if analytic is None:
        analytic = model.loss_and_gradients(x, y, loss, sample_weight)[1]
    analytic = [np.array(g, dtype=np.float64) for g in analytic]
    points = []
    f0 = model.loss_and_gradients(x, y, loss, sample_weight)[0]
    try:
        for p, w in enumerate(weights):
            count = min(n_samples, w.size)
            for flat in rng.choice(w.size, size=count, replace=False):
                index = np.unravel_index(flat, w.shape)

                def f(value: Array, p: int = p, index: tuple = index) -> float:
                    trial = [a.copy() for a in weights]
                    trial[p][index] = value
                    model.set_weights(trial)
                    return model.loss_and_gradients(x, y, loss, sample_weight)[0]

                left, central, right = slopes(f, np.array(w[index]), f0, h)
                index = tuple(int(i) for i in index)
                points.append(GradcheckPoint(p, index, float(analytic[p][index]), central, left, right))
    finally:
        model.set_weights(weights)
    return points
