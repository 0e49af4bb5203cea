"""Central-difference numerical gradients: the witness that needs no calculus.

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)

The truncation error is about h^2 |f'''| / 6 and the rounding error about eps |f| / h; in float64, h = 1e-5
balances the two for losses of order one (measured on a 64-32-16-10 MLP: at most 3e-11 absolute, against 4e-10
at h = 1e-6 and 1.4e-10 at h = 1e-4).

A coordinate whose perturbation crosses a kink (a ReLU input at exactly 0, a max-pool window with tied maxima)
measures the average of the two one-sided derivatives there, while autodiff reports one side. So each point also
keeps its one-sided derivatives, by second-order one-sided differences (accurate to about h^2 |f'''| / 3, like the
central one, where first-order chords would be off by h |f''| / 2):

    D+ = (-3 f(x) + 4 f(x + h) - f(x + 2h)) / 2h        D- = (3 f(x) - 4 f(x - h) + f(x - 2h)) / 2h

Where D+ and D- part by more than the measurement's own error the point is at a kink, and the analytic value is held
to the interval between them: one side, or a subgradient between them. One coordinate can also cross several kinks
at once in opposite directions (an input pixel of 0 under several windows of zeros whose kernel weights have both
signs: +h opens some ReLUs, -h others; or a first-layer bias whose opened zero windows feed the next layer's kinks
through weights of both signs). The one-sided conventions then add up to a value outside [D-, D+] even when it is
right, and differences of f cannot decide it: `GradcheckPoint.decidable` is False there, and the harness counts such
points instead of judging them. So at a kink the witness confirms only that the value lies between the one-sided
derivatives; the bit-for-bit scratch-versus-Keras comparison is what judges it.
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

#: Second-order one-sided derivatives of a smooth f are D+- = f' - h^2 f''' / 3 -+ h^3 f'''' / 4 + O(h^4): the h^2
#: terms cancel in their difference, D+ - D- = -h^3 f'''' / 2 + O(h^5) (about 5e-16 |f''''| at the default step;
#: exactly 0 on a cubic). They are a kink when they differ by more than this fraction of the larger, plus the
#: rounding noise; a false kink would need |f''''| > 2e9 |f'|.
KINK_JUMP = 1e-6

#: The rounding noise of a one-sided derivative, in units of eps |f| / h (eps = 2^-52, float64's machine epsilon):
#: its formula weighs three values of f with coefficients (3 + 4 + 1) / 2 = 4 in all, each computed to a few ulps
#: (a loss is a sum over the batch), rounded up to a power of two.
KINK_NOISE = 64


def slopes(
    f: Callable[[Array], float], x: Array, f0: float, h: float = GRADCHECK_STEP
) -> tuple[float, float, float, float]:
    """(left, central, right, noise) derivatives of the scalar f at the scalar x, f0 = f(x), from f at x-2h ... x+2h:

        D- = (3 f0 - 4 f(x-h) + f(x-2h)) / 2h     D0 = (f(x+h) - f(x-h)) / 2h     D+ = (-3 f0 + 4 f(x+h) - f(x+2h)) / 2h

    and their rounding noise KINK_NOISE eps max|f| / h. The caller's array is left unchanged."""
    x = _as_float_array("slopes: x", x)
    m2, m1, p1, p2 = (f(x + k * h) for k in (-2, -1, 1, 2))
    noise = KINK_NOISE * np.finfo(np.float64).eps * max(abs(f0), abs(m2), abs(m1), abs(p1), abs(p2)) / h
    left = (3 * f0 - 4 * m1 + m2) / (2 * h)
    right = (-3 * f0 + 4 * p1 - p2) / (2 * h)
    return left, (p1 - m1) / (2 * h), right, float(noise)


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
    """One checked coordinate: which parameter (index into get_weights(), -1 for the input), where, the analytic
    value and the central difference, and the one-sided derivatives with their rounding noise (see `slopes`)."""

    param: int
    index: tuple[int, ...]
    analytic: float
    numerical: float
    left: float | None = None
    right: float | None = None
    noise: float = 0.0

    @classmethod
    def measure(
        cls,
        param: int,
        index: tuple[int, ...],
        analytic: float,
        f: Callable[[Array], float],
        x: Array,
        f0: float,
        h: float = GRADCHECK_STEP,
    ) -> GradcheckPoint:
        """The point at the scalar x of f (f0 = f(x)), with all its slopes measured."""
        left, central, right, noise = slopes(f, np.array(x), f0, h)
        return cls(param, index, analytic, central, left, right, noise)

    def _slack(self) -> float:
        """The one-sided derivatives' measurement error: KINK_JUMP of the larger plus the rounding noise."""
        return KINK_JUMP * max(abs(self.left), abs(self.right)) + self.noise

    @property
    def at_kink(self) -> bool:
        """The one-sided derivatives differ by more than their measurement error: the loss is not smooth here."""
        if self.left is None or self.right is None:
            return False
        return abs(self.right - self.left) > self._slack()

    @property
    def decidable(self) -> bool:
        """Whether differences of f can judge the analytic value: always away from kinks; at a kink only when the
        value lies between the one-sided derivatives (within their measurement error). Outside, it may be wrong, or
        right as the sum of several kinks' one-sided conventions (module docstring): differences of f cannot tell."""
        if not self.at_kink:
            return True
        low, high = min(self.left, self.right), max(self.left, self.right)
        return low - self._slack() <= self.analytic <= high + self._slack()

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

                index = tuple(int(i) for i in index)
                points.append(GradcheckPoint.measure(p, index, float(analytic[p][index]), f, w[index], f0, h))
    finally:
        model.set_weights(weights)
    return points
