"""Bring your own layer or model: one call proves a hand-written backward pass against Keras's autodiff.

    check_layer(layer, keras_layer, input_shape)   a from_scratch.Layer against the Keras layer it mirrors
    check_model(scratch_model, keras_model, x, y)  a user's own pair of models

`check_layer` builds both on `input_shape`, draws random nonzero values for every parameter (a zero bias hides a
forward bias bug) and loads them into both, then runs a random batch X with a random upstream gradient G (an
all-ones G hides bugs that cancel) through both. The "loss" is the projection L = <Y, G> = sum Y * G, so that
dL/dY = G and the backward pass computes the layer's vector-Jacobian product:

    dX = (dY/dX)^T G,   dtheta = (dY/dtheta)^T G

It compares the output, dX and every parameter gradient (Keras side: the tape), the per-layer records, the
numerical witness (central differences of the scratch forward pass against Keras's gradient, on parameters and
inputs), and the Taylor witness (`taylor_row`), which needs no tolerance: along a random direction v,

    r(h) = |f(x + h v) - f(x) - h <g, v>|

shrinks as h^2 when g is the gradient of f, and only as h when it is not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.harness import Report, Row, compare_models
from from_scratch.errors import BadInputError
from from_scratch.gradcheck import arithmetic_precision
from from_scratch.layers import Layer, Shape, as_shape
from from_scratch.losses import Loss, get_loss
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

#: The steps for a loss delivered in float32 arithmetic, largest first: h^2 terms of 1e-5 to 1e-3 of the curvature,
#: above 100 times float32 noise, while a direction v of norm 1 still moves each coordinate by a few 1e-3 at most.
TAYLOR_STEPS_F32 = (5e-2, 3.5e-2, 2.5e-2, 1.8e-2, 1.25e-2, 9e-3, 6e-3)

#: How far (absolute) random inputs are kept from a layer's declared kinks.
KINK_MARGIN = 1e-2


class Projection(Loss):
    """L = sum_n sum_j Y[n, j] G[n, j] for a fixed upstream gradient G (N, *output_shape): dL/dY = G exactly.

    Reduced by summing (no 1/N), so the layer's gradients are its plain vector-Jacobian products. Its Keras twin
    is keras_impl.losses.Projection with the same G."""

    name = "projection"

    def __init__(self, upstream: Array) -> None:
        self.upstream = np.asarray(upstream)

    def check_targets(self, y_true: Array, outputs: int) -> None:
        """The targets are ignored: any array with one row per sample will do."""

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        return (y_pred * self.upstream.astype(y_pred.dtype)).reshape(len(y_pred), -1).sum(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        return np.broadcast_to(self.upstream.astype(y_pred.dtype), y_pred.shape).copy()

    def reduce(self, values: Array, sample_weight: Array | None) -> float:
        return values.sum()

    def reduce_grad(self, grad: Array, sample_weight: Array | None) -> Array:
        return grad

    def keras_loss(self, dtype: str) -> Any:
        """The Keras twin with the same G, in `dtype`."""
        from keras_impl.losses import Projection as KerasProjection

        return KerasProjection(self.upstream, dtype=dtype)

    def config(self) -> dict[str, Any]:
        return {}


def keras_twin_model(keras_layer: Any, input_shape: Shape, dtype: str) -> Any:
    """keras.Sequential([Input(input_shape), keras_layer]) in `dtype`; a layer made for another dtype is rebuilt
    from its config in `dtype` (refused, naming the layer, when its config cannot rebuild it)."""
    import keras

    import keras_impl  # noqa: F401 (pins the TensorFlow settings before TensorFlow loads)

    if not isinstance(keras_layer, keras.layers.Layer):
        raise BadInputError(f"keras_layer must be a keras.layers.Layer, got {type(keras_layer).__name__}")
    if isinstance(keras_layer, keras.Model):
        raise BadInputError(
            f"keras_layer is a model ({type(keras_layer).__name__}), not a layer: pass the layer "
            "itself, or compare whole models with compare.check_model"
        )
    if keras_layer.dtype_policy.compute_dtype != dtype or keras_layer.dtype_policy.variable_dtype != dtype:
        from keras.src.saving.serialization_lib import SafeModeScope

        try:
            with SafeModeScope(False):  # the caller's own layer object (a Lambda too), rebuilt in this process
                keras_layer = keras_layer.__class__.from_config({**keras_layer.get_config(), "dtype": dtype})
        except Exception as exc:  # a user's layer whose config does not rebuild it
            raise BadInputError(
                f"Keras layer {keras_layer.name!r} ({type(keras_layer).__name__}) computes in "
                f"{keras_layer.dtype_policy.compute_dtype}, not {dtype}, and could not be rebuilt in {dtype} "
                f"({type(exc).__name__}); construct it with dtype={dtype!r}"
            ) from None
    model = keras.Sequential([keras.Input(shape=input_shape, dtype=dtype), keras_layer])
    return model


def random_nonzero_params(model: Sequential, rng: np.random.Generator) -> list[Array]:
    """A value for every parameter, none near 0: |w| in [0.5, 1.5] (divided by sqrt(fan-in) for matrices) with a
    random sign; non-trainable entries (moving statistics) positive, so a moving variance stays a variance."""
    weights = []
    for w, trainable in zip(model.get_weights(), model.trainable):
        magnitude = rng.uniform(0.5, 1.5, size=w.shape) / (np.sqrt(w.shape[0]) if w.ndim >= 2 else 1.0)
        sign = rng.choice([-1.0, 1.0], size=w.shape) if trainable else 1.0
        weights.append((magnitude * sign).astype(w.dtype))
    return weights


def away_from_kinks(x: Array, kinks: tuple[float, ...], margin: float = KINK_MARGIN) -> Array:
    """Inputs within `margin` of a declared kink moved to the kink +- margin (the side they were on)."""
    x = x.copy()
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin)
    return x


def check_layer(
    layer: Layer,
    keras_layer: Any,
    input_shape: Shape | int,
    *,
    batch: int = 16,
    dtype: str = "float64",
    seed: int = 0,
    gradcheck_samples: int = 8,
) -> Report:
    """Prove a hand-written `layer` against `keras_layer` on random nonzero parameters, a random batch
    (batch, *input_shape) and a random upstream gradient; `Report.passed` is the verdict.

    Raises BadInputError when the two layers' parameters differ in count or shape (naming both shapes), or when
    the layer breaks the protocol."""
    input_shape = as_shape(input_shape)
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch <= 0:
        raise BadInputError(f"batch must be a positive integer, got {batch!r}")
    model = Sequential([layer], dtype=dtype, seed=seed, input_shape=input_shape)
    twin = keras_twin_model(keras_layer, input_shape, dtype)
    ours_shapes = [tuple(w.shape) for w in model.get_weights()]
    theirs_shapes = [tuple(w.shape) for w in twin.get_weights()]
    if ours_shapes != theirs_shapes:
        raise BadInputError(
            f"layer {layer.name!r} has {len(ours_shapes)} parameter(s) of shapes {ours_shapes}, but Keras layer "
            f"{twin.layers[-1].name!r} has {len(theirs_shapes)} of shapes {theirs_shapes} (get_weights() order)"
        )
    rng = np.random.default_rng(seed)
    model.set_weights(random_nonzero_params(model, rng))
    x = away_from_kinks(rng.standard_normal((batch, *input_shape)), tuple(layer.kinks)).astype(dtype)
    out_shape = model.output_shape
    upstream = rng.standard_normal((batch, *out_shape)).astype(dtype)
    y = np.zeros((batch, *out_shape), dtype=dtype)
    config = {
        "layer": type(layer).__name__,
        "keras_layer": type(twin.layers[-1]).__name__,
        "input_shape": list(input_shape),
        "batch": batch,
        "dtype": dtype,
        "seed": seed,
    }
    return check_model(
        model, twin, x, y, Projection(upstream), gradcheck_samples=gradcheck_samples, seed=seed, config=config
    )


def check_model(
    scratch_model: Sequential,
    keras_model: Any,
    x: Array,
    y: Array,
    loss: str | Loss = "categorical_crossentropy",
    *,
    sample_weight: Array | None = None,
    gradcheck_samples: int = 8,
    seed: int = 0,
    config: dict[str, Any] | None = None,
) -> Report:
    """Compare a user's own pair of models on (x, y) with `loss`: the scratch weights are copied into Keras, and
    every row of `compare` is checked, plus the Taylor witness of the scratch backward pass."""
    if not isinstance(scratch_model, Sequential):
        raise BadInputError(f"scratch_model must be a from_scratch.Sequential, got {type(scratch_model).__name__}")
    loss = get_loss(loss)
    report = compare_models(
        scratch_model,
        keras_model,
        x,
        y,
        loss,
        sample_weight=sample_weight,
        gradcheck_samples=gradcheck_samples,
        seed=seed,
        config=config,
    )
    report.rows.append(taylor_row(scratch_model, np.asarray(x), np.asarray(y), loss, seed, sample_weight))
    return report


def taylor_row(
    model: Sequential, x: Array, y: Array, loss: Loss, seed: int = 0, sample_weight: Array | None = None
) -> Row:
    """The tolerance-free witness of the scratch backward pass: along a random direction v over the inputs and
    every trainable parameter, the slope of log r(h) against log h, r(h) = |f(theta + h v) - f(theta) - h <g, v>|,
    with f the scratch loss and g the scratch gradient, both from the model in float64 (the same layers, weights
    upcast exactly): 2 when g is right, 1 when not. In float64 so that a float32 gradient's own rounding (1e-7
    relative) does not flatten the slope at small h; the float32 arithmetic is judged by the other rows. Index inputs
    (an Embedding's) are not moved.

    Points whose remainder is rounding are dropped: below TAYLOR_NOISE_ULPS float64 ulps of |f| + h |<g, v>|, or
    TAYLOR_NOISE_FACTOR times the noise of f measured by `arithmetic_precision`. A layer that computes in float32
    inside delivers f with float32 rounding: its remainders are taken at TAYLOR_STEPS_F32, whose h^2 term stays above
    that noise, and the row says so. When every point is rounding, f is linear along v and g exact there (a wrong g
    would leave a remainder h |<g - grad f, v>|, above rounding at the larger steps): the slope is reported as
    infinity, a pass, and the row says why. A loss noisier than float32 rounding explains cannot be judged: a FAIL."""
    model64 = model.astype("float64")
    model64.watch = Watch(dtypes=False, arguments=False)  # results cast: float32 exactly, complex to its real part
    x64 = np.asarray(x, np.float64)
    moves_input = not getattr(model64.layers[0], "integer_inputs", False)
    precision = arithmetic_precision(model64, x64, y, loss, sample_weight, seed, move_input=moves_input)
    if not precision.judgeable:
        name = f"Taylor remainder slope ({precision.label})"
        return Row(name, (0,), float("inf"), 0.0, -float("inf"), "taylor slope", TAYLOR_MIN_SLOPE)
    steps = TAYLOR_STEPS_F32 if precision.reduced else TAYLOR_STEPS
    weights = model64.get_weights()
    result = model64.backward_pass(x64, y, loss, sample_weight)
    model64.set_weights(weights)  # the pass moved any moving statistics
    trainable = model64.trainable
    rng = np.random.default_rng(seed + 7)
    v_x = rng.standard_normal(x64.shape) if moves_input else np.zeros(x64.shape)
    v_w = [rng.standard_normal(w.shape) if t else np.zeros(w.shape) for w, t in zip(weights, trainable)]
    norm = np.sqrt((v_x**2).sum() + sum((v**2).sum() for v in v_w))
    v_x, v_w = v_x / norm, [v / norm for v in v_w]
    slope_g = float((np.asarray(result.input_grad, np.float64) * v_x).sum()) + sum(
        float((np.asarray(g, np.float64) * v).sum()) for g, v in zip(result.grads, v_w)
    )

    def f(h: float) -> float:
        model64.set_weights([w + h * v for w, v in zip(weights, v_w)])
        return model64.backward_pass(x64 + h * v_x, y, loss, sample_weight, input_grad=False).loss

    f0 = f(0.0)
    hs, remainders = [], []
    eps = float(np.finfo(np.float64).eps)
    for h in steps:
        r = abs(f(h) - f0 - h * slope_g)
        floor = max(TAYLOR_NOISE_ULPS * eps * (abs(f0) + h * abs(slope_g)), TAYLOR_NOISE_FACTOR * precision.noise)
        if r > floor:
            hs.append(h)
            remainders.append(r)
    model64.set_weights(weights)
    inside = f"; {precision.label}" if precision.reduced else ""
    if len(hs) >= 2:
        slope = float(np.polyfit(np.log(hs[-3:]), np.log(remainders[-3:]), 1)[0])
        name = f"Taylor remainder slope ({len(hs)} of {len(steps)} steps above rounding{inside})"
    else:
        slope = float("inf")  # linear along v: every remainder is rounding
        within = f" within {precision.name} noise" if precision.reduced else ""
        name = (
            f"Taylor remainder at rounding at {len(steps) - len(hs)} of {len(steps)} steps (f is linear along v"
            f"{within}, a wrong gradient would leave a remainder ~h{inside})"
        )
    smallest = remainders[-1] if remainders else 0.0
    return Row(name, (len(hs),), smallest, 0.0, slope, "taylor slope", TAYLOR_MIN_SLOPE)
