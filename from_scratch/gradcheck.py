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

Where f' is continuous but f'' jumps by J at x itself (ELU at an exact 0, Huber's loss at |r| = delta), the central
difference is off by h J / 4, first order in h, while D+ and D- agree with each other and with f' to second order:
such a point (`GradcheckPoint.at_joint`) is held to their mean instead of the central difference.
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

EPS64 = float(np.finfo(np.float64).eps)

#: Second-order one-sided derivatives of a smooth f are D+- = f' - h^2 f''' / 3 -+ h^3 f'''' / 4 + O(h^4): the h^2
#: terms cancel in their difference, D+ - D- = -h^3 f'''' / 2 + O(h^5) (about 5e-16 |f''''| at the default step;
#: exactly 0 on a cubic). They are a kink when they differ by more than this fraction of the larger, plus the
#: rounding noise; a false kink would need |f''''| > 2e9 |f'| at h = 1e-5 (at float32's step 8.1e-3
#: the rounding noise, 1e-3 of |f|, dominates).
KINK_JUMP = 1e-6

#: The rounding noise of a one-sided derivative, in units of eps |f| / h (eps = 2^-52, float64's machine epsilon):
#: its formula weighs three values of f with coefficients (3 + 4 + 1) / 2 = 4 in all, each computed to a few ulps
#: (a loss is a sum over the batch), rounded up to a power of two.
KINK_NOISE = 64


def slopes(
    f: Callable[[Array], float], x: Array, f0: float, h: float = GRADCHECK_STEP, eps: float = EPS64
) -> tuple[float, float, float, float]:
    """(left, central, right, noise) derivatives of the scalar f at the scalar x, f0 = f(x), from f at x-2h ... x+2h:

        D- = (3 f0 - 4 f(x-h) + f(x-2h)) / 2h     D0 = (f(x+h) - f(x-h)) / 2h     D+ = (-3 f0 + 4 f(x+h) - f(x+2h)) / 2h

    and their rounding noise KINK_NOISE eps max|f| / h, eps the machine epsilon of the arithmetic f is computed in
    (`Precision.eps`). The caller's array is left unchanged."""
    x = _as_float_array("slopes: x", x)
    m2, m1, p1, p2 = (f(x + k * h) for k in (-2, -1, 1, 2))
    noise = KINK_NOISE * eps * max(abs(f0), abs(m2), abs(m1), abs(p1), abs(p2)) / h
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
        eps: float = EPS64,
    ) -> GradcheckPoint:
        """The point at the scalar x of f (f0 = f(x)), with all its slopes measured (`slopes`)."""
        left, central, right, noise = slopes(f, np.array(x), f0, h, eps)
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
    def at_joint(self) -> bool:
        """No kink, but the central difference parts from the one-sided derivatives: f'' jumps by J at x (ELU at 0,
        Huber's loss at |r| = delta: f' continuous, f'' not). There D0 = f' + h J / 4 (2.5e-6 relative at h = 1e-5
        for ELU at an exact 0, as a zero row under zero biases gives) while D+ and D-, each taken on one side of x,
        keep their second order; on a smooth f, D0 - (D+ + D-) / 2 = h^2 f''' / 2, far inside the slack."""
        if self.left is None or self.right is None or self.at_kink:
            return False
        return abs(self.numerical - (self.left + self.right) / 2) > self._slack()

    @property
    def witness(self) -> float:
        """The value the analytic gradient is held to: the central difference; at a joint (`at_joint`) the mean of
        the one-sided derivatives; at a kink the point of [min(left, right), max(left, right)] nearest to the
        analytic value."""
        if self.at_joint:
            return (self.left + self.right) / 2
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
    eps: float = EPS64,
) -> list[GradcheckPoint]:
    """Compare analytic gradients with central differences of the model's loss on `n_samples` coordinates per
    parameter.

    Works on any model with `get_weights()`, `set_weights()` and `loss_and_gradients(x, y, loss)` (use a float64
    model: in float32 the rounding error eps/h swamps the signal). The analytic side is the model's own
    `loss_and_gradients` unless `analytic` (aligned with get_weights()) is given, e.g. another framework's
    gradients. The model's weights are restored afterwards. `eps`: the machine epsilon of the arithmetic the
    model's loss is computed in (`Precision.eps`: float32's for a layer that computes in float32 inside), which sets
    the rounding noise the one-sided derivatives are allowed (`slopes`); pass h = `Precision.step` with it.
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
                points.append(GradcheckPoint.measure(p, index, float(analytic[p][index]), f, w[index], f0, h, eps))
    finally:
        model.set_weights(weights)
    return points


# ----- the precision the loss is delivered in ------------------------------------------------------------------------

#: The arithmetics the witnesses judge, finest first. They run the scratch model in float64, but a layer may compute
#: in float32 inside (a state stored as float32, an input cast down), and then the loss carries float32 rounding
#: whatever the model's dtype: differences of f must be taken with float32's steps and noise allowance.
PRECISIONS = ("float64", "float32")

#: The precision probe moves every coordinate of the input and of each trainable weight by PROBE_STEP of its own
#: value per step, with a random sign: 2^-20 (9.5e-7) is 8 float32 ulps, so float32 rounding decides each value afresh
#: at every step, and 4e9 float64 ulps, far above float64 rounding.
PROBE_STEP = 2.0**-20

#: Where the loss curves so much that its second differences along a probe are its curvature rather than noise (their
#: median stands more than CURVATURE_DOMINATES times their spread away from 0: every d2 has the sign and about the size
#: of t^2 f''), the spread is the curvature's own drift, not rounding; the probe is then taken again with steps
#: PROBE_SHRINK times shorter, down to PROBE_STEP_MIN, where curvature fades as t^2 and rounding does not. Found on
#: keras.applications.MobileNetV2 at batch 4 (52 BatchNormalizations over as few as 4 values): at 2^-20 the float64
#: loss read as noisy at 6.9e-5 of itself (d2 all ~2e-3 of |f|, one sign) and no witness could judge it; at 2^-28 its
#: spread is its float64 rounding. The probe is also taken again where its spread reads beyond float32 rounding: in
#: ResNet50 (2 million ReLU inputs at batch 4) every probe direction crosses tens of kinks at 2^-20 (noise 1.6e-4 of
#: |f|), and kinks crossed fall with the step while rounding does not; a forward pass that is not deterministic stays
#: beyond float32 at every step and is still refused. Rounding noise (a layer computing in float32) has d2 of both
#: signs around 0 within float32's reach and is read at the first step, as before.
CURVATURE_DOMINATES = 4.0
PROBE_SHRINK = 2.0**-4
PROBE_STEP_MIN = 2.0**-32

#: A probe that reads float32 at PROBE_STEP is taken once more at KINK_TEST of the step (2^-22, still 2 float32 ulps,
#: so float32 rounding is decided afresh at every step): rounding noise stays, while kinks crossed fall with the
#: step (fewer crossed, each moving f by less: as the step squared). A spread that falls KINK_DROP times or more is
#: kinks, and the probe shrinks as above. Found on DenseNet121 at batch 4 (121 ReLU layers): its float64 loss read
#: as float32 and the witness, at float32's step, saw 230 of 607 coordinates at kinks.
KINK_TEST = 0.25
KINK_DROP = 4.0

#: The probe evaluates f at t = -PROBE_POINTS .. PROBE_POINTS steps and takes the 2 PROBE_POINTS - 1 second
#: differences d2_k = f(k+1) - 2 f(k) + f(k-1). For a smooth f they are the curvature term t^2 f'' (the same for every
#: k, to third order: about 1e-15 of |f|), for f with rounding noise sigma each carries its own ~2.4 sigma. The noise
#: is their median absolute deviation from their median: a kink inside the probe (a max-pool tie at t = 0, a ReLU
#: input crossing 0) moves one or two of them, not the median.
PROBE_POINTS = 4

#: Independent probe directions; the smallest noise is taken (several kinks in one probe could move its median;
#: rounding noise shows in every direction).
PROBE_DIRECTIONS = 2


@dataclass(frozen=True)
class Precision:
    """The arithmetic a loss f is computed in, as its rounding noise shows.

    `noise`: the spread of f's second differences along the probes (`probe_noise`; absolute, in f's units), `scale`:
    max |f| there.
    `name` is the finest of PRECISIONS whose rounding explains noise / scale (the boundary between two is the
    geometric mean of their machine epsilons: 5.2e-12 between float64 and float32, 1.1e-5 above float32, that is
    float16's rounding or a forward pass that is not deterministic), or "" when none does."""

    name: str
    noise: float
    scale: float

    @property
    def relative(self) -> float:
        """noise / scale."""
        if self.noise == 0:
            return 0.0
        return self.noise / self.scale if self.scale > 0 else float("inf")

    @property
    def eps(self) -> float:
        """The machine epsilon of the arithmetic (float16's when noisier than float32)."""
        return float(np.finfo(self.name or "float16").eps)

    @property
    def step(self) -> float:
        """The central-difference step for this arithmetic: GRADCHECK_STEP scaled by cbrt(eps / eps64), since the
        step that balances truncation h^2 |f'''| / 6 against rounding eps |f| / h grows as eps^(1/3): 1e-5 in
        float64, 8.1e-3 in float32."""
        return GRADCHECK_STEP * float(np.cbrt(self.eps / EPS64))

    @property
    def reduced(self) -> bool:
        """Whether f is computed in less than float64 precision (the witnesses then say so in their rows)."""
        return self.name != "float64"

    @property
    def judgeable(self) -> bool:
        """Whether differences of f can judge a gradient at all: f's noise is that of float64 or float32."""
        return bool(self.name)

    @property
    def label(self) -> str:
        """How a witness row names a reduced precision ("" for float64)."""
        if not self.reduced:
            return ""
        if not self.judgeable:
            return (
                f"f noisy at {self.relative:.1e} of |f|, beyond float32 rounding: no difference of f can judge "
                "a gradient (a forward pass that is not deterministic?)"
            )
        return f"{self.name} arithmetic inside: judged at {self.name} precision"

    @classmethod
    def classify(cls, noise: float, scale: float) -> Precision:
        """The precision whose rounding explains `noise` at `scale` (class docstring)."""
        relative = 0.0 if noise == 0 else (noise / scale if scale > 0 else float("inf"))
        names = (*PRECISIONS, "float16")
        for finer, coarser in zip(names, names[1:]):
            if relative <= np.sqrt(np.finfo(finer).eps * np.finfo(coarser).eps):
                return cls(finer, noise, scale)
        return cls("", noise, scale)


def probe_noise(f: Callable[[float], float], with_curvature: bool = False) -> Any:
    """(noise, scale) of the scalar function f(t) near t = 0 (t in probe steps, see PROBE_POINTS): the median
    absolute deviation of f's second differences over t = -PROBE_POINTS .. PROBE_POINTS, and max |f| there; with
    `with_curvature`, also whether the curvature dominates them (CURVATURE_DOMINATES: the spread then measures the
    curvature's drift, not rounding)."""
    values = np.array([f(float(k)) for k in range(-PROBE_POINTS, PROBE_POINTS + 1)])
    if not np.all(np.isfinite(values)):
        return (float("inf"), float("inf"), False) if with_curvature else (float("inf"), float("inf"))
    d2 = values[2:] - 2 * values[1:-1] + values[:-2]
    centre = float(np.median(d2))
    noise, scale = float(np.median(np.abs(d2 - centre))), float(np.abs(values).max())
    if not with_curvature:
        return noise, scale
    return noise, scale, abs(centre) > CURVATURE_DOMINATES * noise and noise > 0


def arithmetic_precision(
    model: Any,
    x: Array,
    y: Array,
    loss: Any,
    sample_weight: Array | None = None,
    seed: int = 0,
    move_input: bool | list[bool] = True,
) -> Precision:
    """The precision the model's loss L(x, theta) is delivered in (`Precision`), measured by probes: every
    coordinate of x (unless `move_input` is False: indices; for a model of several inputs, one flag per input or one
    for all) and of each trainable weight moved by t PROBE_STEP of its own value, random signs, PROBE_DIRECTIONS
    directions, the least noise taken. The model's weights are restored."""
    rng = np.random.default_rng(seed + 13)
    weights = model.get_weights()
    trainable = getattr(model, "trainable", [True] * len(weights))
    several = isinstance(x, (list, tuple))  # a model of several inputs: one array each
    xs = [np.asarray(a, np.float64) for a in (x if several else [x])]
    moves = list(move_input) if isinstance(move_input, (list, tuple)) else [move_input] * len(xs)
    best: tuple[float, float] | None = None
    try:
        for _ in range(PROBE_DIRECTIONS):
            signs_x = [rng.choice([-1.0, 1.0], size=a.shape) if m else 0 * a for a, m in zip(xs, moves)]
            signs_w = [rng.choice([-1.0, 1.0], size=w.shape) * t for w, t in zip(weights, trainable)]

            def probe(step: float, signs_x: list[Array] = signs_x, signs_w: list[Array] = signs_w) -> tuple:
                d_x = [a * s * step for a, s in zip(xs, signs_x)]
                d_w = [w * s * step for w, s in zip(weights, signs_w)]

                def f(h: float) -> float:
                    model.set_weights([w + h * d for w, d in zip(weights, d_w)])
                    moved = [a + h * d for a, d in zip(xs, d_x)]
                    return model.loss_and_gradients(moved if several else moved[0], y, loss, sample_weight)[0]

                return probe_noise(f, with_curvature=True)

            step = PROBE_STEP
            noise, scale, curved = probe(step)
            while step * PROBE_SHRINK >= PROBE_STEP_MIN:
                read = Precision.classify(noise, scale)
                if not (curved or not read.judgeable):  # kinks crossed or not deterministic: beyond float32
                    if not (read.reduced and step == PROBE_STEP):
                        break
                    # read as float32: rounding stays as the step shrinks, kinks crossed fall with it
                    if probe(step * KINK_TEST)[0] * KINK_DROP > noise:
                        break
                step *= PROBE_SHRINK
                noise, scale, curved = probe(step)
            if best is None or noise < best[0]:
                best = (noise, scale)
    finally:
        model.set_weights(weights)
    return Precision.classify(*best)
