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
re-exported here); the batches and parameter values a check runs on are compare/check_inputs.py's, the Keras twins and
the Projection loss compare/check_twins.py's (re-exported here too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compare.check_inputs import (  # noqa: F401 (re-exported: they were defined here)
    KINK_MARGIN,
    _batch_of,
    _batches_of,
    _is_array,
    _is_array_like,
    _random_indices,
    _shape_list,
    _size,
    as_batch,
    away_from_kinks,
    random_nonzero_params,
)
from compare.check_twins import (  # noqa: F401 (re-exported: they were defined here)
    Projection,
    _keras_layer_in,
    _keras_reason,
    keras_twin_graph,
    keras_twin_model,
)
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
from from_scratch.layers import Layer, Shape
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
    roles: Sequence[str] | None = None,
    call_options: dict[str, bool] | None = None,
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
    is one (as above); a mix of index and value batches is refused.

    A user's attention layer is checked against keras.layers.MultiHeadAttention (compare/check_attention.py):
    `roles` names each input (from "query", "value", "key", "attention_mask"; against a MultiHeadAttention, 2 or 3
    inputs default to query, value[, key]) and `call_options` sets use_causal_mask / return_attention_scores. Keras
    is called as keras_layer(query, value, key=..., attention_mask=..., use_causal_mask=...); the layer's build and
    forward receive roles=... and the options, as from_scratch.attention.MultiHeadAttention does. The inputs and
    rows are named by role ("grad input query"); the mask is random 0/1 with a kept position in every row of the
    scores (or the user's, booleans allowed), never moved and not differentiated (no row of its own). In float64 the
    scale 1/sqrt(key_dim) is Keras's (rounded to float32) or the exact one, whichever the layer uses (the config's
    "scale" says which and how far apart they are)."""
    if getattr(layer, "several_inputs", False):
        return _check_several(
            layer, keras_layer, input_shape, batch, dtype, seed, gradcheck_samples, inputs, roles, call_options
        )
    if roles is not None or call_options is not None:
        raise BadInputError(
            f"layer {getattr(layer, 'name', '') or type(layer).__name__!r} takes one input (it does not declare "
            "several_inputs = True): roles and call_options are for a layer called on several inputs (attention)"
        )
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
    _check_twin_weights(layer, model, twin)
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


def _check_several(
    layer: Layer,
    keras_layer: Any,
    input_shape: Any,
    batch: int | None,
    dtype: str,
    seed: int,
    gradcheck_samples: int,
    inputs: Any,
    roles: Sequence[str] | None = None,
    call_options: dict[str, bool] | None = None,
) -> Report:
    """check_layer for a layer of several inputs: a from_scratch.graph.Model of one Input per shape and the one
    call of `layer` on their list, against the functional twin (keras_twin_graph); for an attention call (roles,
    compare/check_attention.py) the call carries its roles and options on both sides."""
    from compare import check_attention as attn
    from from_scratch.graph import Input, Model, call_layer

    name = getattr(layer, "name", "") or getattr(layer, "kind", "") or type(layer).__name__  # as the graph names it
    count = (
        len(inputs)
        if isinstance(inputs, (list, tuple))
        else len(input_shape)
        if inputs is None and isinstance(input_shape, (list, tuple)) and _shape_list(input_shape)
        else None
    )
    options = attn.attention_call(name, keras_layer, roles, call_options, count)
    mask_at = options["roles"].index(attn.MASK_ROLE) if options and attn.MASK_ROLE in options["roles"] else None
    if mask_at is not None and isinstance(inputs, (list, tuple)) and _is_array(inputs[mask_at]):
        if dtype not in ("float64", "float32"):
            raise BadInputError(f"dtype must be one of float64, float32, got {dtype!r}")
        inputs = list(inputs)
        inputs[mask_at] = attn.as_mask(inputs[mask_at], dtype, f"inputs[{mask_at}] (the attention_mask)")
    xs, shapes, batch = _batches_of(name, inputs, input_shape, batch, dtype)
    names = list(options["roles"]) if options else [None] * len(shapes)
    if options:
        attn.check_takes_options(name, layer, options)
        attn.check_shapes(name, keras_layer, options, shapes)
    tensors = [Input(shape, name=role) for shape, role in zip(shapes, names)]
    model = Model(tensors, call_layer(layer, tensors, options), dtype=dtype, seed=seed)
    check_protocol(model)
    out_shape = model.output_shape
    shape_text = " and ".join("x".join(map(str, s)) for s in shapes)
    check_memory(
        f"checking layer {layer.name!r} on a batch of {batch} x ({shape_text})",
        batch,
        (sum(_size(s) for s in shapes) + _size(out_shape), sum(p.size for p in model.get_weights())),
    )
    if options:
        keras_layer = attn.with_fixed_dropout(keras_layer)
    twin = keras_twin_graph(keras_layer, shapes, dtype, options, names)
    theirs = tuple(int(d) for d in twin.output_shape[1:])
    if theirs != tuple(out_shape):
        raise BadInputError(
            f"layer {layer.name!r} gives outputs of shape {tuple(out_shape)} (its build() said so) on inputs of "
            f"shapes {shape_text}, but Keras layer {twin.layers[-1].name!r} gives {theirs}"
        )
    _check_twin_weights(layer, model, twin)
    rng = np.random.default_rng(seed)
    model.set_weights(random_nonzero_params(model, rng))
    if xs is None:
        xs = [rng.standard_normal((batch, *shape)) for shape in shapes]
        if getattr(layer, "integer_inputs", False):
            xs = [_random_indices(layer, x.shape, seed + k) for k, x in enumerate(xs)]
        else:
            xs = [away_from_kinks(x, tuple(layer.kinks)).astype(dtype) for x in xs]
        if mask_at is not None:
            by = dict(zip(names, shapes))
            causal = bool(options.get("use_causal_mask"))
            t, s = by["query"][0], by["value"][0]
            xs[mask_at] = attn.random_mask(rng, batch, shapes[mask_at], t, s, causal, dtype)
    else:
        xs = [x.copy() for x in xs]  # the caller's arrays stay theirs, whatever the layer does with them
    upstream = rng.standard_normal((batch, *out_shape)).astype(dtype)
    y = np.zeros((batch, *out_shape), dtype=dtype)
    config = {
        "layer": type(layer).__name__,
        "keras_layer": type(twin.layers[-1]).__name__,
        "input_shape": [list(s) for s in shapes],
        "batch": batch,
        "dtype": dtype,
        "seed": seed,
    }
    if options:
        config["roles"] = list(options["roles"])
        config.update({k: v for k, v in options.items() if k != "roles"})
    if inputs is not None:
        config["inputs"] = f"given ({', '.join(str(x.dtype) for x in xs)})"
    if options:
        twin.set_weights(model.get_weights())
        scale = attn.scale_convention(twin, twin.layers[-1], model, xs, dtype)
        if scale is not None:
            config["scale"] = scale
    report = _check_pair(model, twin, xs, y, Projection(upstream), None, gradcheck_samples, seed, config)
    if mask_at is not None:  # not differentiable: no row of its own (its step still holds the layer to zeros)
        report.rows = [row for row in report.rows if row.name != f"grad input {attn.MASK_ROLE}"]
    return report


def _check_twin_weights(layer: Layer, model: Model, twin: Any) -> None:
    """The layer's parameters and its Keras twin's (the model's last layer) agree in count and shapes, in
    get_weights() order, or the check is refused naming both."""
    ours = [tuple(w.shape) for w in model.get_weights()]
    theirs = [tuple(w.shape) for w in twin.get_weights()]
    if ours != theirs:
        raise BadInputError(
            f"layer {layer.name!r} has {len(ours)} parameter(s) of shapes {ours}, but Keras layer "
            f"{twin.layers[-1].name!r} has {len(theirs)} of shapes {theirs} (get_weights() order)"
        )


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
