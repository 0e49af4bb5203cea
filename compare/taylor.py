"""The Taylor witness of a scratch backward pass, which needs no tolerance (`taylor_row`): along a random direction v
over the inputs and every trainable parameter,

    r(h) = |f(x + h v) - f(x) - h <g, v>|

shrinks as h^2 when g is the gradient of the scratch loss f, and only as h when it is not; the row is the slope of
log r against log h, with the remainders that are rounding left out (TAYLOR_NOISE_ULPS, TAYLOR_NOISE_FACTOR,
TAYLOR_GRAD_ULPS) and the steps chosen for the precision the loss is delivered in (TAYLOR_STEPS, TAYLOR_STEPS_F32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.harness import Row, fixed_input_flags
from from_scratch.gradcheck import arithmetic_precision
from from_scratch.losses import Loss
from from_scratch.model import Sequential
from from_scratch.watch import Watch

Array = np.ndarray

#: Taylor witness: the least log-log slope of the remainder that passes. A right gradient gives 2 (h^2), a wrong
#: one 1 (h); 1.8 leaves room for the curvature term's own variation over the range of h.
TAYLOR_MIN_SLOPE = 1.8

#: The step sizes of the Taylor witness, largest first. Small enough that a direction v of norm ~1 rarely carries
#: an input across a kink (a crossing adds a first-order term), large enough that h^2 stays far above rounding.
TAYLOR_STEPS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)

#: A remainder within this many float64 ulps of |f| + h |<g, v>| is rounding: a function that is linear along v
#: has a zero remainder whatever h, and a right gradient then leaves only rounding.
TAYLOR_NOISE_ULPS = 1e3

#: A remainder within this many times the noise of f (as `arithmetic_precision` measures it) is rounding too: for a
#: loss computed in float64 the ulps bound above is the larger, for a layer that computes in float32 inside this one
#: (its noise is 1e-8 to 1e-6 of |f|). At 100 times the noise, noise moves a kept remainder by at most 1%, its
#: logarithm by 0.01.
TAYLOR_NOISE_FACTOR = 100.0

#: The rounding a gradient of the check's dtype is owed. The row differentiates the float64 copy of the model, but a
#: layer may keep float32 caches (its output stored as float32, a float32 constant in its backward): in a float32
#: check that gradient is right to float32 rounding, and its error dg adds h |<dg, v>| <= h u sum_i |g_i v_i| to the
#: remainder, linear in h, which would read as a wrong gradient at the small steps (slope 1.41 on a tanh caching its
#: output in float32, 1.00 on a float32 0.1 in a Rescaling's backward). Remainders below h TAYLOR_GRAD_ULPS eps(dtype)
#: sum_i |g_i v_i| are that rounding: 1.2e-4 of the gradient in float32, far below a wrong gradient's order-one error;
#: a smaller error is the float32 rows' to judge (F32_FACTOR, measured against Keras). Applied only where the row
#: fails without it in a float32 check: it also drops the small steps of a right gradient (curvature h^2 |f''| below
#: it), so a float64-exact backward keeps the float64 row (a Dense tanh in float32 read all 7 steps as rounding, a
#: 1x1 ReLU conv kept 2 steps across kinks, slope 1.39, when it applied to every row).
TAYLOR_GRAD_ULPS = 1e3

#: The steps for a loss delivered in float32 arithmetic, largest first: h^2 terms of 1e-5 to 1e-3 of the curvature,
#: above 100 times float32 noise, while a direction v of norm 1 still moves each coordinate by a few 1e-3 at most.
TAYLOR_STEPS_F32 = (5e-2, 3.5e-2, 2.5e-2, 1.8e-2, 1.25e-2, 9e-3, 6e-3)


def taylor_row(
    model: Sequential, x: Array, y: Array, loss: Loss, seed: int = 0, sample_weight: Array | None = None
) -> Row:
    """The tolerance-free witness of the scratch backward pass: along a random direction v over the inputs and
    every trainable parameter, the slope of log r(h) against log h, r(h) = |f(theta + h v) - f(theta) - h <g, v>|,
    with f the scratch loss and g the scratch gradient, both from the model in float64 (the same layers, weights
    upcast exactly): 2 when g is right, 1 when not. In float64 so that a float32 gradient's own rounding (1e-7
    relative) does not flatten the slope at small h; the float32 arithmetic is judged by the other rows. Index inputs
    (an Embedding's) and attention masks are not moved (harness.fixed_input_flags).

    Points whose remainder is rounding are dropped: below TAYLOR_NOISE_ULPS float64 ulps of |f| + h |<g, v>|,
    TAYLOR_NOISE_FACTOR times the noise of f measured by `arithmetic_precision`, or h times the rounding a gradient
    of the check's dtype is owed (TAYLOR_GRAD_ULPS). A layer that computes in float32
    inside delivers f with float32 rounding: its remainders are taken at TAYLOR_STEPS_F32, whose h^2 term stays above
    that noise, and the row says so. When every point is rounding, f is linear along v and g exact there (a wrong g
    would leave a remainder h |<g - grad f, v>|, above rounding at the larger steps): the slope is reported as
    infinity, a pass, and the row says why. A loss noisier than float32 rounding explains cannot be judged: a FAIL."""
    model64 = model.astype("float64")
    model64.watch = Watch.casting()  # a copy of the model, discarded after the row
    several = isinstance(x, (list, tuple))  # a model of several inputs: one array each, each moved along v
    x64 = [np.asarray(a, np.float64) for a in (x if several else [x])]
    moves = [not flag for flag in fixed_input_flags(model64)]  # per input: indices and masks stay where they are
    precision = arithmetic_precision(
        model64, x64 if several else x64[0], y, loss, sample_weight, seed, move_input=moves if several else moves[0]
    )
    if not precision.judgeable:
        name = f"Taylor remainder slope ({precision.label})"
        return Row(name, (0,), float("inf"), 0.0, -float("inf"), "taylor slope", TAYLOR_MIN_SLOPE)
    steps = TAYLOR_STEPS_F32 if precision.reduced else TAYLOR_STEPS
    weights = model64.get_weights()
    result = model64.backward_pass(x64 if several else x64[0], y, loss, sample_weight)
    model64.set_weights(weights)  # the pass moved any moving statistics
    trainable = model64.trainable
    rng = np.random.default_rng(seed + 7)
    v_x = [rng.standard_normal(a.shape) if move else np.zeros(a.shape) for a, move in zip(x64, moves)]
    v_w = [rng.standard_normal(w.shape) if t else np.zeros(w.shape) for w, t in zip(weights, trainable)]
    norm = np.sqrt(sum((v**2).sum() for v in v_x) + sum((v**2).sum() for v in v_w))
    if norm == 0:  # indices as inputs and no trainable parameter: no direction to move along
        name = "Taylor remainder: nothing to vary (the inputs are indices and no parameter is trainable)"
        return Row(name, (0,), 0.0, 0.0, float("inf"), "taylor slope", TAYLOR_MIN_SLOPE)
    v_x, v_w = [v / norm for v in v_x], [v / norm for v in v_w]
    input_grads = result.input_grad if several else [result.input_grad]
    products = [np.asarray(g, np.float64) * v for g, v in zip(input_grads, v_x)] + [
        np.asarray(g, np.float64) * v for g, v in zip(result.grads, v_w)
    ]
    slope_g = sum(float(p.sum()) for p in products)
    owed = TAYLOR_GRAD_ULPS * float(np.finfo(model.dtype).eps) * sum(float(np.abs(p).sum()) for p in products)

    def f(h: float) -> float:
        model64.set_weights([w + h * v for w, v in zip(weights, v_w)])
        moved = [a + h * v for a, v in zip(x64, v_x)]
        return model64.backward_pass(moved if several else moved[0], y, loss, sample_weight, input_grad=False).loss

    f0 = f(0.0)
    eps = float(np.finfo(np.float64).eps)
    measured = []  # (h, remainder, its rounding floor)
    for h in steps:
        floor = max(TAYLOR_NOISE_ULPS * eps * (abs(f0) + h * abs(slope_g)), TAYLOR_NOISE_FACTOR * precision.noise)
        measured.append((h, abs(f(h) - f0 - h * slope_g), floor))
    model64.set_weights(weights)
    inside = f"; {precision.label}" if precision.reduced else ""
    row = _taylor_verdict(measured, 0.0, inside, precision)
    if not row.passed and model.dtype != np.float64:  # a float32 check owes the gradient float32 rounding
        return _taylor_verdict(measured, owed, f"; the gradient judged to {model.dtype} rounding{inside}", precision)
    return row


def _taylor_verdict(measured: list[tuple[float, float, float]], owed: float, inside: str, precision: Any) -> Row:
    """The Taylor row from the remainders `measured` (h, r, floor), keeping those above their floor and above h
    times the gradient rounding `owed`: the slope over the three smallest steps kept, or infinity when none is."""
    kept = [(h, r) for h, r, floor in measured if r > max(floor, h * owed)]
    hs, remainders = [h for h, _ in kept], [r for _, r in kept]
    if len(hs) >= 2:
        slope = float(np.polyfit(np.log(hs[-3:]), np.log(remainders[-3:]), 1)[0])
        name = f"Taylor remainder slope ({len(hs)} of {len(measured)} steps above rounding{inside})"
    else:
        slope = float("inf")  # linear along v: every remainder is rounding
        within = f" within {precision.name} noise" if precision.reduced else ""
        name = (
            f"Taylor remainder at rounding at {len(measured) - len(hs)} of {len(measured)} steps (f is linear along v"
            f"{within}, a wrong gradient would leave a remainder ~h{inside})"
        )
    smallest = remainders[-1] if remainders else 0.0
    return Row(name, (len(hs),), smallest, 0.0, slope, "taylor slope", TAYLOR_MIN_SLOPE)
