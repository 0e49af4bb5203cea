"""Bring your own layer or model: one call proves a hand-written backward pass against Keras's autodiff.

    check_layer(layer, keras_layer, input_shape)   a from_scratch.Layer against the Keras layer it mirrors
    check_layer(layer, keras_layer, inputs=x)      the same on a batch x (N, *input_shape) of the user's choosing
    check_layer(merge, keras_merge, [(7,), (7,)])  a layer of several inputs (several_inputs = True), on a graph of
                                                   one Input per shape against Keras's functional twin
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

The Taylor witness is compare/taylor.py's, and what check_model requires of the models compare/contract.py's (both
re-exported here).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from compare.contract import (  # noqa: F401 (re-exported: importable from here as before)
    PARAMS_CONTRACT,
    _declared,
    _twin_names,
    _uncopyable_attribute,
    check_keras_sequential,
    check_protocol,
)
from compare.data import check_memory
from compare.harness import Report, compare_models
from compare.taylor import (  # noqa: F401 (re-exported: importable from here as before)
    TAYLOR_GRAD_ULPS,
    TAYLOR_MIN_SLOPE,
    TAYLOR_NOISE_FACTOR,
    TAYLOR_NOISE_ULPS,
    TAYLOR_STEPS,
    TAYLOR_STEPS_F32,
    _taylor_verdict,
    taylor_row,
)
from from_scratch.errors import BadInputError, a_or_an
from from_scratch.graph import Model
from from_scratch.layers import Layer, Shape, as_shape
from from_scratch.losses import Loss, OutputLosses, get_loss
from from_scratch.model import Sequential
from keras_impl.model import twin_layers

Array = np.ndarray

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

    return keras.Sequential([keras.Input(shape=input_shape, dtype=dtype), _keras_layer_in(keras_layer, dtype)])


def keras_twin_graph(keras_layer: Any, input_shapes: list[Shape], dtype: str) -> Any:
    """The functional twin of a layer of several inputs: keras.Model([Input(s) for s in input_shapes],
    keras_layer([...])) in `dtype` (the layer rebuilt in `dtype` as keras_twin_model does). A Keras layer that
    refuses these shapes is refused, naming it and the shapes."""
    import keras

    keras_layer = _keras_layer_in(keras_layer, dtype)
    inputs = [keras.Input(shape=shape, dtype=dtype) for shape in input_shapes]
    try:
        output = keras_layer(inputs)
    except Exception as exc:  # Keras's own shape checks (an Add of (7,) and (5,)), or a user's build
        raise BadInputError(
            f"Keras layer {keras_layer.name!r} ({type(keras_layer).__name__}) refused inputs of shapes "
            f"{' and '.join(map(str, input_shapes))}: {_keras_reason(exc)}"
        ) from None
    if isinstance(output, (list, tuple)):
        raise BadInputError(
            f"Keras layer {keras_layer.name!r} returned {len(output)} tensors: check_layer compares a layer of one "
            "output"
        )
    return keras.Model(inputs, output)


def _keras_reason(exc: Exception) -> str:
    """The line of a Keras exception that says what went wrong: without the "Exception encountered when calling"
    preamble, the "Arguments received" listing and the terminal's bold codes; at most 200 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split("Arguments received")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception encountered")] or [type(exc).__name__]
    reason = lines[-1]
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _keras_layer_in(keras_layer: Any, dtype: str) -> Any:
    """`keras_layer` checked to be a layer (not a model), rebuilt from its config when made for another dtype."""
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
    return keras_layer


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
    and parameter sizes before anything runs).

    A layer of several inputs (it declares `several_inputs = True`: a merge such as Add, or the user's own) is
    checked the same way on a graph: one Input per shape, `input_shape=[(7,), (7,)]`, or `inputs=[X1, X2]` (one
    batch per input, all of N rows), against a keras.Model of as many keras.Input and `keras_layer` called on their
    list; the rows name each input ("grad input input_layer_1"). Integer batches are indices only when every input
    is one (as above); a mix of index and value batches is refused."""
    if getattr(layer, "several_inputs", False):
        return _check_several(layer, keras_layer, input_shape, batch, dtype, seed, gradcheck_samples, inputs)
    if _shape_list(input_shape):  # (a list of arrays stays what it was: one batch, as NumPy reads it)
        raise BadInputError(
            f"layer {getattr(layer, 'name', '') or type(layer).__name__!r} takes one input (it does not declare "
            f"several_inputs = True), but input_shape gives {len(input_shape)} shapes: give one shape "
            "(input_shape=(7,))"
        )
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


def _shape_list(input_shape: Any) -> bool:
    """Whether `input_shape` is a list of shapes ([(7,), (7,)]) rather than one shape ((7,) or 7)."""
    return isinstance(input_shape, (list, tuple)) and any(isinstance(s, (list, tuple)) for s in input_shape)


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or (isinstance(value, (list, tuple)) and value and _is_array_like(value))


def _is_array_like(value: Any) -> bool:
    """A nested list of at least two levels (a batch written out as lists), not a list of numbers."""
    return all(isinstance(v, (list, tuple, np.ndarray)) for v in value)


def _check_several(
    layer: Layer,
    keras_layer: Any,
    input_shape: Any,
    batch: int | None,
    dtype: str,
    seed: int,
    gradcheck_samples: int,
    inputs: Any,
) -> Report:
    """check_layer for a layer of several inputs: a from_scratch.graph.Model of one Input per shape and the one
    call of `layer` on their list, against the functional twin (keras_twin_graph)."""
    from from_scratch.graph import Input, Model, call_layer

    name = getattr(layer, "name", "") or type(layer).__name__
    xs, shapes, batch = _batches_of(name, inputs, input_shape, batch, dtype)
    tensors = [Input(shape) for shape in shapes]
    model = Model(tensors, call_layer(layer, tensors), dtype=dtype, seed=seed)
    check_protocol(model)
    out_shape = model.output_shape
    shape_text = " and ".join("x".join(map(str, s)) for s in shapes)
    check_memory(
        f"checking layer {layer.name!r} on a batch of {batch} x ({shape_text})",
        batch,
        (sum(_size(s) for s in shapes) + _size(out_shape), sum(p.size for p in model.get_weights())),
    )
    twin = keras_twin_graph(keras_layer, shapes, dtype)
    theirs_layer = twin.layers[-1]
    ours_shapes = [tuple(w.shape) for w in model.get_weights()]
    theirs_shapes = [tuple(w.shape) for w in twin.get_weights()]
    if ours_shapes != theirs_shapes:
        raise BadInputError(
            f"layer {layer.name!r} has {len(ours_shapes)} parameter(s) of shapes {ours_shapes}, but Keras layer "
            f"{theirs_layer.name!r} has {len(theirs_shapes)} of shapes {theirs_shapes} (get_weights() order)"
        )
    rng = np.random.default_rng(seed)
    model.set_weights(random_nonzero_params(model, rng))
    if xs is None:
        xs = [rng.standard_normal((batch, *shape)) for shape in shapes]
        if getattr(layer, "integer_inputs", False):
            xs = [_random_indices(layer, x.shape, seed + k) for k, x in enumerate(xs)]
        else:
            xs = [away_from_kinks(x, tuple(layer.kinks)).astype(dtype) for x in xs]
    else:
        xs = [x.copy() for x in xs]  # the caller's arrays stay theirs, whatever the layer does with them
    upstream = rng.standard_normal((batch, *out_shape)).astype(dtype)
    y = np.zeros((batch, *out_shape), dtype=dtype)
    config = {
        "layer": type(layer).__name__,
        "keras_layer": type(theirs_layer).__name__,
        "input_shape": [list(s) for s in shapes],
        "batch": batch,
        "dtype": dtype,
        "seed": seed,
    }
    if inputs is not None:
        config["inputs"] = f"given ({', '.join(str(x.dtype) for x in xs)})"
    return _check_pair(model, twin, xs, y, Projection(upstream), None, gradcheck_samples, seed, config)


def _batches_of(
    name: str, inputs: Any, input_shape: Any, batch: Any, dtype: str
) -> tuple[list[Array] | None, list[Shape], int]:
    """(X per input or None, the shapes, batch) for a layer of several inputs: from `inputs`, a list of batches of
    one size (input_shape and batch, when given too, must agree with them), else from input_shape, a list of
    shapes, and batch (default 16)."""
    if batch is not None and (not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch <= 0):
        raise BadInputError(f"batch must be a positive integer, got {batch!r}")
    if dtype not in ("float64", "float32"):
        raise BadInputError(f"dtype must be one of float64, float32, got {dtype!r}")
    shapes = None
    if input_shape is not None:
        shapes_given = isinstance(input_shape, (list, tuple)) and len(input_shape) > 0
        if not shapes_given or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise BadInputError(
                f"layer {name!r} takes several inputs (several_inputs = True): give one shape per input, "
                f"input_shape=[(7,), (7,)], got {input_shape!r}"
            )
        shapes = [as_shape(s, f"input_shape[{k}]") for k, s in enumerate(input_shape)]
    if inputs is None:
        if shapes is None:
            raise BadInputError(
                f"layer {name!r} takes several inputs: give input_shape=[(7,), (7,)] (one sample's shape per "
                "input), or the batches with inputs=[x1, x2]"
            )
        return None, shapes, 16 if batch is None else int(batch)
    if not isinstance(inputs, (list, tuple)) or not inputs or not all(_is_array(a) for a in inputs):
        what = type(inputs).__name__ if not isinstance(inputs, (list, tuple)) else f"a list of {len(inputs)}"
        raise BadInputError(
            f"layer {name!r} takes several inputs: give inputs=[x1, x2, ...], one batch (N, *shape) per input, got "
            + (a_or_an(what) if not isinstance(inputs, (list, tuple)) else what)
            + ("" if not isinstance(inputs, (list, tuple)) or not inputs else " that are not all arrays")
        )
    xs = [as_batch(a, dtype, f"inputs[{k}]") for k, a in enumerate(inputs)]
    sizes = [len(x) for x in xs]
    if len(set(sizes)) > 1:
        raise BadInputError(f"inputs: batches of different sizes {sizes}; give each input the same N rows")
    kinds = ["indices" if x.dtype.kind in "iu" else "values" for x in xs]
    if len(set(kinds)) > 1:
        raise BadInputError(
            "inputs: "
            + ", ".join(f"inputs[{k}] holds {kind} ({x.dtype})" for k, (kind, x) in enumerate(zip(kinds, xs)))
            + "; integer batches are indices, and check_layer takes indices for every input or for none: give "
            "the values as floats"
        )
    given = [tuple(int(d) for d in x.shape[1:]) for x in xs]
    if shapes is not None and shapes != given:
        raise BadInputError(
            f"input_shape {shapes} contradicts inputs of shapes {[x.shape for x in xs]} (one sample each: "
            f"{given}); give one of them"
        )
    if batch is not None and batch != sizes[0]:
        raise BadInputError(f"batch {batch} contradicts inputs of {sizes[0]} samples; give one of them")
    return xs, given, sizes[0]


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
    scratch_model: Model,
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

    The Keras side is a keras.Sequential of plain layers, one per scratch layer, or for a graph model
    (from_scratch.graph.Model: several inputs or outputs as lists, `loss` one per output or an OutputLosses) a
    functional keras.Model of the same graph, node for node (check_keras_graph names the first node that differs);
    a model nested in it is refused, naming it. A scratch layer that declares no `weight_names` has its rows
    named after its Keras twin's variables (`grad scale_shift/beta`). An integer x is a batch of indices (not
    moved, not differentiated). Every layer is checked against the protocol first (check_protocol)."""
    if not isinstance(scratch_model, Model):
        what = type(scratch_model).__name__
        hint = (
            f": got a Keras model ({what}); the arguments are (scratch_model, keras_model, x, y)"
            if type(scratch_model).__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow")
            else f", got {a_or_an(what)}"
        )
        raise BadInputError(f"scratch_model must be a from_scratch.Sequential or from_scratch.graph.Model{hint}")
    check_keras_sequential(keras_model, scratch_model)
    return _check_pair(scratch_model, keras_model, x, y, loss, sample_weight, gradcheck_samples, seed, config)


def _check_pair(
    scratch_model: Model,
    keras_model: Any,
    x: Any,
    y: Any,
    loss: str | Loss,
    sample_weight: Array | None,
    gradcheck_samples: int,
    seed: int,
    config: dict[str, Any] | None,
) -> Report:
    """The check of a pair whose shape is known to match (a Sequential and its keras.Sequential, or a graph Model
    and its functional twin): the protocol, every row of compare_models and the Taylor witness. x is one array or
    a list, one per input."""
    check_protocol(scratch_model)
    for ours, theirs in zip(scratch_model.layers, twin_layers(keras_model)):
        if not ours.deterministic and not hasattr(theirs, "mask"):
            raise BadInputError(
                f"layer {ours.name!r} draws random numbers (deterministic = False), but its Keras twin "
                f"{theirs.name!r} ({type(theirs).__name__}) has no mask attribute to take the same mask: use a twin "
                "that applies a given mask, as keras_impl's FixedMaskDropout"
            )
    several = isinstance(x, (list, tuple))  # a model of several inputs
    if isinstance(loss, (list, tuple)):
        loss = OutputLosses(list(loss))
    loss = get_loss(loss)
    xs = list(x) if several else [x]
    integer = x is not None and all(np.asarray(a).dtype.kind in "iu" for a in xs)
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
        inputs = [np.asarray(a) for a in x] if several else np.asarray(x)
        ys = [np.asarray(a) for a in y] if isinstance(y, (list, tuple)) else np.asarray(y)
        report.rows.append(taylor_row(scratch_model, inputs, ys, loss, seed, sample_weight))
    return report
