"""Bring your own layer or model: one call proves a hand-written backward pass against Keras's autodiff.

    check_layer(layer, keras_layer, input_shape)   a from_scratch.Layer against the Keras layer it mirrors
    check_layer(layer, keras_layer, inputs=x)      the same on a batch x (N, *input_shape) of the user's choosing
    check_model(scratch_model, keras_model, x, y)  a user's own pair of models

`check_layer` builds both on `input_shape`, draws random nonzero values for every parameter (a zero bias hides a
forward bias bug) and loads them into both, then runs a random batch X (or the user's) with a random upstream
gradient G (an all-ones G hides bugs that cancel) through both. The "loss" is the projection L = <Y, G> =
sum Y * G, so that dL/dY = G and the backward pass computes the layer's vector-Jacobian product:

    dX = (dY/dX)^T G,   dtheta = (dY/dtheta)^T G

It compares the output, dX and every parameter gradient (Keras side: the tape), the per-layer records, the
numerical witness (central differences of the scratch forward pass against Keras's gradient, on parameters and
inputs), and the Taylor witness (`taylor_row`), which needs no tolerance: along a random direction v,

    r(h) = |f(x + h v) - f(x) - h <g, v>|

shrinks as h^2 when g is the gradient of f, and only as h when it is not.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from compare.data import check_memory
from compare.harness import Report, Row, compare_models, integer_inputs
from from_scratch.errors import BadInputError, a_or_an
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

#: What a layer that indexes with its inputs is told when indexing fails: ids reach it as whole numbers in the
#: check's dtype, as Keras's Embedding receives them (its Input is of that dtype), so it casts them itself.
INDICES_AS_VALUES = (
    "the harness hands layer {layer!r} its integer ids as whole numbers of dtype {dtype}, as Keras's Embedding "
    "receives them: index with x.astype(np.int64)"
)

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
        from keras_impl.model import rebuilt

        try:
            keras_layer = rebuilt(keras_layer, dtype)
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
    input_shape: Shape | int | None = None,
    *,
    batch: int | None = None,
    dtype: str = "float64",
    seed: int = 0,
    gradcheck_samples: int = 8,
    inputs: Any = None,
) -> Report:
    """Prove a hand-written `layer` against `keras_layer` on random nonzero parameters, a batch X
    (batch, *input_shape) and a random upstream gradient G (batch, *output_shape); `Report.passed` is the verdict.

    X is random (N(0, 1), kept KINK_MARGIN away from the layer's declared kinks; batch 16 by default), or
    `inputs`, an array (N, *input_shape) of the user's choosing: then N and input_shape are read from it (giving
    either as well is allowed when it agrees). An integer array is a batch of indices (an Embedding's): it is not
    moved by an ulp and no derivative is taken with respect to it. A layer that declares `integer_inputs` and an
    `input_dim` gets random indices in [0, input_dim) when no `inputs` are given.

    Raises BadInputError when the two layers' parameters differ in count or shape (naming both shapes), when the
    layer breaks the protocol (naming the layer and what it breaks), when `inputs` are not a batch of finite real
    numbers, or when the run would not fit in the memory available (estimated from the built layer's input, output
    and parameter sizes before anything runs)."""
    x, input_shape, batch = _batch_of(inputs, input_shape, batch, dtype)
    model = Sequential([layer], dtype=dtype, seed=seed, input_shape=input_shape)
    check_protocol(model)
    check_memory(
        f"checking layer {layer.name!r} on a batch of {batch} x {'x'.join(map(str, input_shape))}",
        batch,
        (_size(input_shape) + _size(model.output_shape), sum(p.size for p in model.get_weights())),
    )
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
    if x is None:
        x = rng.standard_normal((batch, *input_shape))
        if getattr(layer, "integer_inputs", False):
            x = _random_indices(layer, x.shape, seed)
        else:
            x = away_from_kinks(x, tuple(layer.kinks)).astype(dtype)
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
    if inputs is not None:
        config["inputs"] = f"given ({x.dtype})"
        x = x.copy()  # the caller's array stays theirs, whatever the layer does with it
    try:
        return check_model(
            model, twin, x, y, Projection(upstream), gradcheck_samples=gradcheck_samples, seed=seed, config=config
        )
    except IndexError as exc:  # raised inside the layer: a lookup fed random values instead of indices?
        if inputs is None and hasattr(exc, "add_note"):
            exc.add_note(
                f"check_layer fed layer {layer.name!r} random N(0, 1) values; if it takes indices, give a batch of "
                "integer ids with inputs=... (check-layer --inputs FILE.npy)"
            )
        elif hasattr(exc, "add_note"):
            exc.add_note(INDICES_AS_VALUES.format(layer=layer.name, dtype=dtype))
        raise


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=object))


def _random_indices(layer: Layer, shape: Shape, seed: int) -> Array:
    """Random indices in [0, layer.input_dim) for a layer whose inputs are indices (it declares integer_inputs)."""
    vocabulary = getattr(layer, "input_dim", None)
    if not isinstance(vocabulary, (int, np.integer)) or isinstance(vocabulary, bool) or vocabulary <= 0:
        raise BadInputError(
            f"layer {layer.name!r} declares integer_inputs (its inputs are indices) but no input_dim to draw them "
            "below: give the batch of indices with inputs=..."
        )
    return np.random.default_rng(seed).integers(0, int(vocabulary), size=shape)


def as_batch(inputs: Any, dtype: str = "float64", what: str = "inputs") -> Array:
    """A user's batch (N, *input_shape) checked: an array of real numbers (integers are indices, floats values),
    with a batch axis and at least one feature axis, no sample missing, every value finite and exactly
    representable in `dtype` (an index above 2^24 is not, in float32). Returned as given (not cast)."""
    try:
        x = np.asarray(inputs)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{what}: not an array of numbers ({exc})") from None
    kind = x.dtype.kind
    if kind not in "iuf":
        names = {"b": "booleans", "c": "complex numbers", "O": "Python objects"}
        raise BadInputError(
            f"{what}: expected real numbers (floats, or integers for indices), got dtype {x.dtype}"
            + (f" ({names[kind]})" if kind in names else "")
        )
    if x.ndim < 2:
        raise BadInputError(
            f"{what}: expected an array (N, *input_shape) with a batch axis first, got shape {x.shape}"
            + (f"; a single sample of {x.shape} is x[None]" if x.ndim == 1 else "")
        )
    if x.size == 0:
        raise BadInputError(f"{what}: empty (shape {x.shape}); a batch needs at least one sample")
    if kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise BadInputError(f"{what}: {x[at]} at index {at}; NaN and infinity are refused")
        top = float(np.finfo(dtype).max)
        if np.finfo(x.dtype).max > top and (np.abs(x) > top).any():
            at = tuple(int(i) for i in np.argwhere(np.abs(x) > top)[0])
            raise BadInputError(f"{what}: {x[at].item()!r} at index {at} is beyond the range of {dtype}")
    else:
        exact = 2 ** (np.finfo(dtype).nmant + 1)
        if int(x.max()) > exact or int(x.min()) < -exact:
            at = tuple(int(i) for i in np.argwhere((x > exact) | (x < -exact))[0])
            raise BadInputError(
                f"{what}: the integer {x[at].item()} at index {at} is not exactly representable in {dtype} "
                f"(|value| <= 2^{np.finfo(dtype).nmant + 1} are)"
            )
    return x


def _batch_of(inputs: Any, input_shape: Any, batch: Any, dtype: str) -> tuple[Array | None, Shape, int]:
    """(X or None, input_shape, batch): from `inputs` when given (input_shape and batch, when given too, must
    agree with it), else from input_shape and batch (default 16)."""
    if batch is not None and (not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch <= 0):
        raise BadInputError(f"batch must be a positive integer, got {batch!r}")
    if inputs is None:
        if input_shape is None:
            raise BadInputError("give input_shape=(...) (the shape of one sample), or a batch with inputs=...")
        return None, as_shape(input_shape), 16 if batch is None else int(batch)
    if dtype not in ("float64", "float32"):
        raise BadInputError(f"dtype must be one of float64, float32, got {dtype!r}")
    x = as_batch(inputs, dtype)
    if input_shape is not None and as_shape(input_shape) != x.shape[1:]:
        raise BadInputError(
            f"input_shape {as_shape(input_shape)} contradicts inputs of shape {x.shape} (one sample: {x.shape[1:]}); "
            "give one of them"
        )
    if batch is not None and batch != len(x):
        raise BadInputError(f"batch {batch} contradicts inputs of shape {x.shape} ({len(x)} samples); give one of them")
    return x, tuple(int(d) for d in x.shape[1:]), len(x)


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
    every row of `compare` is checked, plus the Taylor witness of the scratch backward pass.

    The Keras side is a keras.Sequential of plain layers, one per scratch layer (a functional model or a model
    nested in the Sequential is refused, naming it). A scratch layer that declares no `weight_names` has its rows
    named after its Keras twin's variables (`grad scale_shift/beta`). An integer x is a batch of indices (not
    moved, not differentiated). Every layer is checked against the protocol first (check_protocol)."""
    if not isinstance(scratch_model, Sequential):
        what = type(scratch_model).__name__
        hint = (
            f": got a Keras model ({what}); the arguments are (scratch_model, keras_model, x, y)"
            if type(scratch_model).__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow")
            else f", got {a_or_an(what)}"
        )
        raise BadInputError(f"scratch_model must be a from_scratch.Sequential{hint}")
    check_keras_sequential(keras_model, scratch_model)
    check_protocol(scratch_model)
    for ours, theirs in zip(scratch_model.layers, keras_model.layers):
        if not ours.deterministic and not hasattr(theirs, "mask"):
            raise BadInputError(
                f"layer {ours.name!r} draws random numbers (deterministic = False), but its Keras twin "
                f"{theirs.name!r} ({type(theirs).__name__}) has no mask attribute to take the same mask: use a twin "
                "that applies a given mask, as keras_impl's FixedMaskDropout"
            )
    loss = get_loss(loss)
    integer = np.asarray(x).dtype.kind in "iu" if x is not None else False
    with _declared(scratch_model, _twin_names(scratch_model, keras_model), integer):
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


def check_keras_sequential(keras_model: Any, scratch_model: Sequential) -> None:
    """The Keras side of check_model: a keras.Sequential of plain layers, one per layer of `scratch_model` (when
    their weights agree in shape; weights that do not are compare_models's to name). A functional or subclassed
    model, or a model nested as a layer, is refused, naming it."""
    import keras

    import keras_impl  # noqa: F401 (pins the TensorFlow settings before TensorFlow loads)

    if isinstance(keras_model, Sequential):
        raise BadInputError(
            "keras_model is a from_scratch.Sequential: the arguments are (scratch_model, keras_model, x, y)"
        )
    if not isinstance(keras_model, keras.Model):
        raise BadInputError(f"keras_model must be a keras.Sequential, got {a_or_an(type(keras_model).__name__)}")
    if not isinstance(keras_model, keras.Sequential):
        kind = "a functional model" if type(keras_model).__name__ == "Functional" else "a subclassed model"
        raise BadInputError(
            f"the Keras model {keras_model.name!r} is {kind} ({type(keras_model).__name__}): check_model compares "
            "layer by layer against a keras.Sequential, which is not supported for other models; rebuild it as "
            "keras.Sequential([keras.Input(shape), layer, ...])"
        )
    for i, layer in enumerate(keras_model.layers):
        if isinstance(layer, keras.Model):
            raise BadInputError(
                f"layer {i} of the Keras model {keras_model.name!r} is itself a model ({layer.name!r}, "
                f"{type(layer).__name__}): nested models are not supported; put its layers into the outer "
                "keras.Sequential"
            )
    layers = len(scratch_model.layers)
    same_weights = [w.shape for w in keras_model.get_weights()] == [w.shape for w in scratch_model.get_weights()]
    if same_weights and len(keras_model.layers) != layers:
        raise BadInputError(
            f"the Keras model {keras_model.name!r} has {len(keras_model.layers)} layer(s) and the scratch model "
            f"{layers}: check_model pairs them one to one"
        )


#: What a layer's `params` must be, in words (the harness writes parameter values into these arrays in place).
PARAMS_CONTRACT = (
    "params must return the layer's own parameter arrays (the same writable ndarrays on every call, in the "
    "model's dtype): the harness writes the compared parameter values into them"
)


def check_protocol(model: Sequential) -> None:
    """BadInputError, naming the layer and the attribute, for what the harness relies on and a layer does not
    give: every layer survives copy.deepcopy (the float64 witnesses run on a copy of the model); `params` returns
    the layer's own writable arrays of the model's dtype, the same objects on every call (set_weights writes into
    them); a layer with `deterministic = False` offers callable `draw_mask(shape)` and `fix_mask(mask)`."""
    import copy

    for layer in model.layers:
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        try:
            copy.deepcopy(layer)
        except Exception as exc:  # a module, a file, a lock, a generator... held by the layer
            culprit = _uncopyable_attribute(layer)
            attribute = f"its attribute {culprit!r}" if culprit else "it"
            raise BadInputError(
                f"{where}: the harness deep-copies each layer (copy.deepcopy, to run it again in float64), and "
                f"copying {attribute} raised {type(exc).__name__}: {exc}; keep modules, files and other "
                "uncopyable objects out of the layer's attributes (or give the layer a __deepcopy__)"
            ) from None
        first, again = layer.params, layer.params
        for i, p in enumerate(first):
            problem = None
            if not isinstance(p, np.ndarray):
                problem = f"is {a_or_an(type(p).__name__)}, not a NumPy array"
            elif p.dtype != model.dtype:
                problem = f"has dtype {p.dtype}, not the model's {model.dtype}"
            elif not p.flags.writeable:
                problem = "is read-only"
            elif i >= len(again) or again[i] is not p and not np.may_share_memory(again[i], p):
                problem = "is a new array on every call (a copy)"
            if problem:
                raise BadInputError(f"{where}: params[{i}] {problem}; {PARAMS_CONTRACT}")
        if not layer.deterministic:
            missing = [m for m in ("draw_mask", "fix_mask") if not callable(getattr(layer, m, None))]
            if missing:
                raise BadInputError(
                    f"{where} declares deterministic = False but has no {' and no '.join(missing)}: a layer that "
                    "draws random numbers offers draw_mask(shape) -> mask and fix_mask(mask), so that the harness "
                    "gives both sides the same randomness"
                )


def _uncopyable_attribute(layer: Layer) -> str | None:
    """The name of the first attribute of `layer` that copy.deepcopy refuses, or None."""
    import copy

    for name, value in vars(layer).items():
        try:
            copy.deepcopy(value)
        except Exception:
            return name
    return None


def _twin_names(model: Sequential, keras_model: Any) -> list[tuple[str, ...] | None]:
    """Per scratch layer, its Keras twin's variable names (`add_weight(name="beta")` gives "beta") in get_weights()
    order, when the scratch layer declares no weight_names and the twin's names are as many, distinct and chosen
    (not Keras's "variable", "variable_1" for an unnamed add_weight); None otherwise (the declared names, or
    weight_0, weight_1, ...)."""
    layers = getattr(keras_model, "layers", [])
    names: list[tuple[str, ...] | None] = []
    for i, layer in enumerate(model.layers):
        twin = layers[i] if i < len(layers) else None
        theirs = tuple(str(getattr(v, "name", "")).split("/")[-1] for v in getattr(twin, "weights", []))
        usable = (
            layer.weight_names is None
            and len(theirs) == len(layer.params)
            and all(name and not re.fullmatch(r"variable(_\d+)?", name) for name in theirs)  # Keras's own
            and len(set(theirs)) == len(theirs)
        )
        names.append(theirs if usable and theirs else None)
    return names


class _declared:
    """For the time of one check: the declarations the user left out, filled in from what is known (the twin's
    variable names as weight_names; integer_inputs on the first layer when x is an integer array), put back as
    they were afterwards."""

    def __init__(self, model: Sequential, names: list[tuple[str, ...] | None], integer: bool) -> None:
        self.changes: list[tuple[Layer, str, Any]] = [
            (layer, "weight_names", given) for layer, given in zip(model.layers, names) if given is not None
        ]
        if integer and not integer_inputs(model):
            self.changes.append((model.layers[0], "integer_inputs", True))
        self.saved: list[tuple[Layer, str, Any]] = []

    def __enter__(self) -> None:
        for layer, attribute, value in self.changes:
            self.saved.append((layer, attribute, layer.__dict__.get(attribute, _MISSING)))
            try:
                setattr(layer, attribute, value)
            except AttributeError:  # a read-only property: the layer keeps what it says
                self.saved.pop()

    def __exit__(self, *exc: Any) -> None:
        for layer, attribute, value in reversed(self.saved):
            if value is _MISSING:
                delattr(layer, attribute)
            else:
                setattr(layer, attribute, value)


_MISSING = object()


def taylor_row(
    model: Sequential, x: Array, y: Array, loss: Loss, seed: int = 0, sample_weight: Array | None = None
) -> Row:
    """The tolerance-free witness of the scratch backward pass: along a random direction v over the inputs and
    every trainable parameter, the slope of log r(h) against log h, r(h) = |f(theta + h v) - f(theta) - h <g, v>|,
    with f the scratch loss and g the scratch gradient, both from the model in float64 (the same layers, weights
    upcast exactly): 2 when g is right, 1 when not. In float64 so that a float32 gradient's own rounding (1e-7
    relative) does not flatten the slope at small h; the float32 arithmetic is judged by the other rows. Index inputs
    (an Embedding's) are not moved.

    Points whose remainder is rounding are dropped: below TAYLOR_NOISE_ULPS float64 ulps of |f| + h |<g, v>|,
    TAYLOR_NOISE_FACTOR times the noise of f measured by `arithmetic_precision`, or h times the rounding a gradient
    of the check's dtype is owed (TAYLOR_GRAD_ULPS). A layer that computes in float32
    inside delivers f with float32 rounding: its remainders are taken at TAYLOR_STEPS_F32, whose h^2 term stays above
    that noise, and the row says so. When every point is rounding, f is linear along v and g exact there (a wrong g
    would leave a remainder h |<g - grad f, v>|, above rounding at the larger steps): the slope is reported as
    infinity, a pass, and the row says why. A loss noisier than float32 rounding explains cannot be judged: a FAIL."""
    model64 = model.astype("float64")
    model64.watch = Watch.casting()  # a copy of the model, discarded after the row
    x64 = np.asarray(x, np.float64)
    moves_input = not integer_inputs(model64)
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
    if norm == 0:  # indices as inputs and no trainable parameter: no direction to move along
        name = "Taylor remainder: nothing to vary (the inputs are indices and no parameter is trainable)"
        return Row(name, (0,), 0.0, 0.0, float("inf"), "taylor slope", TAYLOR_MIN_SLOPE)
    v_x, v_w = v_x / norm, [v / norm for v in v_w]
    products = [np.asarray(result.input_grad, np.float64) * v_x] + [
        np.asarray(g, np.float64) * v for g, v in zip(result.grads, v_w)
    ]
    slope_g = sum(float(p.sum()) for p in products)
    owed = TAYLOR_GRAD_ULPS * float(np.finfo(model.dtype).eps) * sum(float(np.abs(p).sum()) for p in products)

    def f(h: float) -> float:
        model64.set_weights([w + h * v for w, v in zip(weights, v_w)])
        return model64.backward_pass(x64 + h * v_x, y, loss, sample_weight, input_grad=False).loss

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
