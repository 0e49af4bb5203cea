"""What check_model requires of a user's pair of models, and what it fills in for one check: the Keras side a plain
keras.Sequential with one layer per scratch layer (`check_keras_sequential`), every scratch layer keeping the protocol
the harness relies on (`check_protocol`: deep-copyable, its own writable params of the model's dtype, masks for a
layer that draws random numbers), and the declarations left out taken from the twin for the time of the check
(`_twin_names`, `_declared`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from compare.harness import integer_inputs
from from_scratch.errors import BadInputError, a_or_an
from from_scratch.graph import Model
from from_scratch.layers import LAYERS, Layer
from from_scratch.model import Sequential
from keras_impl.model import twin_layers


def check_keras_sequential(keras_model: Any, scratch_model: Model) -> None:
    """The Keras side of check_model: a keras.Sequential of plain layers, one per layer of `scratch_model` (when
    their weights agree in shape; weights that do not are compare_models's to name), or, for a graph, a functional
    keras.Model of the same graph (check_keras_graph). A subclassed model, or a model nested as a layer, is refused,
    naming it."""
    import keras

    import keras_impl  # noqa: F401 (pins the TensorFlow settings before TensorFlow loads)

    if isinstance(keras_model, Sequential):
        raise BadInputError(
            "keras_model is a from_scratch.Sequential: the arguments are (scratch_model, keras_model, x, y)"
        )
    if not isinstance(keras_model, keras.Model):
        raise BadInputError(f"keras_model must be a keras.Sequential, got {a_or_an(type(keras_model).__name__)}")
    if not isinstance(keras_model, keras.Sequential) and type(keras_model).__name__ != "Functional":
        raise BadInputError(
            f"the Keras model {keras_model.name!r} is a subclassed model ({type(keras_model).__name__}): check_model "
            "compares node by node against a keras.Sequential or a functional keras.Model, which is not supported "
            "for other models; rebuild it as keras.Sequential([keras.Input(shape), layer, ...]) or with the "
            "functional API"
        )
    for i, layer in enumerate(twin_layers(keras_model)):
        if isinstance(layer, keras.Model):
            raise BadInputError(
                f"layer {i} of the Keras model {keras_model.name!r} is itself a model ({layer.name!r}, "
                f"{type(layer).__name__}): nested models are not supported; put its layers into the outer "
                "model (compare_keras_model flattens a saved model's nested models for you)"
            )
    if not (isinstance(keras_model, keras.Sequential) and isinstance(scratch_model, Sequential)):
        check_keras_graph(keras_model, scratch_model)
        return
    layers = len(scratch_model.layers)
    same_weights = [w.shape for w in keras_model.get_weights()] == [w.shape for w in scratch_model.get_weights()]
    if same_weights and len(keras_model.layers) != layers:
        raise BadInputError(
            f"the Keras model {keras_model.name!r} has {len(keras_model.layers)} layer(s) and the scratch model "
            f"{layers}: check_model pairs them one to one"
        )


def _keras_kind(layer: Any) -> str | None:
    """The scratch registry kind a Keras layer twins (Keras's own classes, named as Keras names them: Dense ->
    "dense", Conv2D -> "conv2d"; FixedMaskDropout -> "dropout"), or None for a class of the user's own."""
    from keras.src.utils.naming import to_snake_case

    from compare.keras_specs import SPECS
    from keras_impl.model import FixedMaskDropout

    if isinstance(layer, FixedMaskDropout):
        return "dropout"
    return to_snake_case(type(layer).__name__) if type(layer) in SPECS else None


def check_keras_graph(keras_model: Any, scratch_model: Model) -> None:
    """The Keras side of check_model for a graph: a functional keras.Model (or a keras.Sequential) whose layer calls,
    in the order Keras runs them, are the scratch model's nodes one for one: the same kind of layer (where both are
    registry layers), called on the same tensors (the same inputs, or the outputs of the same nodes, in the same
    order), a layer shared by the same nodes, and the same outputs. The first node that differs is named, with what
    each side does there."""
    from keras_impl.trace import graph_nodes

    graph, nodes = graph_nodes(keras_model)
    name = keras_model.name
    for what, theirs, ours in (
        ("inputs", len(graph.inputs), len(scratch_model.inputs)),
        ("outputs", len(graph.outputs), len(scratch_model.outputs)),
        ("layer calls (nodes)", len(nodes), len(scratch_model.nodes)),
    ):
        if theirs != ours:
            raise BadInputError(f"the Keras model {name!r} has {theirs} {what} and the scratch model {ours}")
    keras_names = {id(t): ("input", k) for k, t in enumerate(graph.inputs)}
    scratch_names = {id(t): ("input", k) for k, t in enumerate(scratch_model.inputs)}
    labels = [t.node.name for t in scratch_model.inputs]
    first_keras: dict[int, int] = {}
    first_scratch: dict[int, int] = {}
    for i, (node, ours) in enumerate(zip(nodes, scratch_model.nodes)):
        layer = node.operation
        where = f"node {i + 1} ({ours.name!r}; the Keras model's {layer.name!r}, {type(layer).__name__})"
        kind, our_kind = _keras_kind(layer), getattr(ours.layer, "kind", None)
        if kind is not None and our_kind in LAYERS and kind != our_kind:
            raise BadInputError(f"{where}: the scratch layer is a {our_kind}, the Keras layer a {kind}")
        theirs_from = [keras_names.get(id(t)) for t in node.input_tensors]
        ours_from = [scratch_names.get(id(t)) for t in ours.inputs]
        if theirs_from != ours_from:

            def said(sources: list[Any]) -> str:
                return ", ".join(
                    f"input {labels[k]!r}" if source == "input" else f"node {k + 1} ({scratch_model.nodes[k].name!r})"
                    for source, k in (s or (None, 0) for s in sources)
                    if source is not None
                )

            raise BadInputError(
                f"{where}: the scratch model calls it on [{said(ours_from)}], the Keras model on [{said(theirs_from)}]"
            )
        shared_keras = first_keras.setdefault(id(layer), i)
        shared_scratch = first_scratch.setdefault(id(ours.layer), i)
        if shared_keras != shared_scratch:
            first = min(shared_keras, shared_scratch)
            raise BadInputError(
                f"{where}: one side calls the layer of node {first + 1} ({scratch_model.nodes[first].name!r}) again "
                "here (a shared layer) and the other a layer of its own"
            )
        keras_names[id(node.outputs[0])] = ("node", i)
        scratch_names[id(ours.output)] = ("node", i)
    theirs_out = [keras_names.get(id(t)) for t in graph.outputs]
    ours_out = [scratch_names.get(id(t)) for t in scratch_model.outputs]
    if theirs_out != ours_out:
        raise BadInputError(
            f"the Keras model {name!r} gives its outputs from other nodes than the scratch model: {theirs_out} "
            f"against {ours_out} (node numbers from 0)"
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
    """Per scratch layer, its Keras twin's variable names (`add_weight(name="beta")` gives "beta"; where those repeat,
    their paths inside the twin: MultiHeadAttention's "query/kernel", "key/kernel") in get_weights() order, when the
    scratch layer declares no weight_names and the twin's names are as many, distinct and chosen (not Keras's
    "variable", "variable_1" for an unnamed add_weight); None otherwise (the declared names, or weight_0, ...)."""
    layers = twin_layers(keras_model) if hasattr(keras_model, "layers") else []
    names: list[tuple[str, ...] | None] = []
    for i, layer in enumerate(model.layers):
        twin = layers[i] if i < len(layers) else None
        theirs = tuple(str(getattr(v, "name", "")).split("/")[-1] for v in getattr(twin, "weights", []))
        if len(set(theirs)) < len(theirs) and twin is not None:  # sublayers' kernels: "query/kernel", "key/kernel"
            prefix = f"{twin.name}/"
            paths = tuple(str(getattr(v, "path", "")) for v in twin.weights)
            if all(p.startswith(prefix) for p in paths):
                theirs = tuple(p[len(prefix) :] for p in paths)
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
