"""Reading a Keras model, Sequential or functional, into the description both sides are built from.

One path for every model: `read` walks the layer calls Keras runs (its nodes, by depth from the outputs, deepest
first, as keras_impl.trace.graph_nodes lists them) and writes each as a `Call` of a from_scratch
`GraphArchitecture`: the Keras layer names, inputs and connections; a layer with several nodes in the model is one
shared layer called several times (its k-th call's output is `name#k`); a merge layer (Add, Concatenate, Dot, ...)
is called on the list of tensors Keras called it on. The layers are listed in Keras's weight order (the model's
`layers`). A model used as a layer (a Sequential or functional model nested in another) is flattened: its layer
calls are read in its place, on the tensors it was called on, its layers keep their names, and one whose name
another layer of the flattened graph has too is named after its model (`inner_dense`), so every name stays unique.

A chain (one input, each layer called once on the one before, one output) is described as today's `Architecture`
and built as a `Sequential`; any other graph as the `GraphArchitecture` and a `from_scratch.graph.Model`.

`comparison_twin` is the Keras side of the comparison: the user's own layer objects (so the weights compared are the
trained ones, not a copy) called on the flattened graph, with each `keras.layers.Dropout` swapped for
`keras_impl.model.FixedMaskDropout` (the harness gives both sides one dropout mask; Keras's Dropout draws its own
from TensorFlow's Philox generator, which NumPy cannot reproduce).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

import keras_impl  # first: it pins TensorFlow's settings (oneDNN off, determinism) before TensorFlow loads
from compare.keras_application_specs import APPLICATION_SPECS
from compare.keras_loading import _as_model
from compare.keras_specs import SPECS, SUPPORTED, _layer_dtype, _refuse
from from_scratch.arch import Architecture, LayerSpec
from from_scratch.attention import ROLES
from from_scratch.errors import BadInputError
from from_scratch.graph import Model
from from_scratch.graph_arch import MERGE_KINDS, Call, GraphArchitecture
from from_scratch.model import DTYPES, Sequential
from keras_impl.attention import FixedMaskMultiHeadAttention, call_attention
from keras_impl.model import FixedMaskDropout, rebuilt, twin_layers
from keras_impl.trace import graph_nodes

Array = np.ndarray

SPECS.update(APPLICATION_SPECS)  # the layers keras.applications adds (compare/keras_application_specs.py)


@dataclass
class Reading:
    """What `read` found: the description (`arch`: an Architecture for a chain, else the GraphArchitecture), its
    graph form, the dtype the model computes in, and per layer name of the description the Keras layer object
    (in Keras's weight order)."""

    arch: Architecture | GraphArchitecture
    graph: GraphArchitecture
    dtype: str
    layers: dict[str, keras.layers.Layer]

    def keras_weights(self, names: list[str]) -> list[Array]:
        """The Keras layers' weights (get_weights()) for the layers `names`, in that order."""
        return [w for name in names for w in self.layers[name].get_weights()]


@dataclass
class _Walk:
    """The flat graph under construction: per Keras layer object (by id) its flat name (`flat_names`), and for the
    layers called so far their name, spec and number of calls."""

    flat: dict[int, str]
    names: dict[int, str] = field(default_factory=dict)
    specs: dict[int, LayerSpec] = field(default_factory=dict)
    objects: dict[int, keras.layers.Layer] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def call(self, layer: keras.layers.Layer, given: list[str], options: tuple[tuple[str, Any], ...] = ()) -> str:
        """Record one call of `layer` on the tensors `given` (with the call's own `options`: an attention call's
        roles and flags); return its output's name."""
        key = id(layer)
        if key not in self.names:
            self.names[key], self.objects[key], self.specs[key] = self.flat[key], layer, _spec(layer)
        self.counts[key] = self.counts.get(key, 0) + 1
        name, k = self.names[key], self.counts[key]
        self.calls.append(Call(name, tuple(given), options=options))
        return name if k == 1 else f"{name}#{k}"


def _where_node(op: Any, name: str) -> str:
    return f"node {name!r} ({type(op).__name__})"


#: keras.layers.MultiHeadAttention.call's parameters in their order (Keras 3.15): a positional argument is read as
#: the parameter at its place.
ATTENTION_PARAMETERS = (
    "query",
    "value",
    "key",
    "query_mask",
    "value_mask",
    "key_mask",
    "attention_mask",
    "return_attention_scores",
    "training",
    "use_causal_mask",
)
#: The name an attention call's second output (its scores, return_attention_scores=True) has while the graph is
#: read: no Keras name starts with a NUL, so a layer called on it or a model output naming it is caught.
SCORES = "\x00scores of "


def _attention_call(node: Any, name: str) -> tuple[list[Any], tuple[tuple[str, Any], ...]]:
    """(the tensors a MultiHeadAttention node is called on, in the order of their roles; the call's options for
    the description: ("roles", (...)), and ("use_causal_mask", True) / ("return_attention_scores", True) when set),
    from the node's arguments: query and value (positionally or by name), key=, attention_mask=, the two flags.
    A query_mask=/value_mask=/key_mask= given or carried by a tensor (Keras's masking: an Embedding with
    mask_zero=True, a Masking layer) is refused: the scratch layer takes its mask as attention_mask only."""
    op, arguments = node.operation, node.arguments
    where = f"{_where_node(op, name)}"
    if len(arguments.args) > len(ATTENTION_PARAMETERS):
        raise BadInputError(f"{where}: called with {len(arguments.args)} positional arguments")
    given = dict(zip(ATTENTION_PARAMETERS, arguments.args))
    given.update(arguments.kwargs)
    unknown = sorted(set(given) - set(ATTENTION_PARAMETERS))
    if unknown:
        raise BadInputError(f"{where}: called with {unknown[0]}=, which MultiHeadAttention.call does not take")
    for option in ("query_mask", "value_mask", "key_mask"):
        if given.get(option) is not None:
            raise BadInputError(
                f"{where}: called with {option}= (a padding mask Keras combines into the attention mask); only "
                "attention_mask= (give the mask as attention_mask of shape (T, S))"
            )
    roles, tensors = [], []
    for role in ROLES:
        t = given.get(role)
        if t is None:
            continue
        if not isinstance(t, keras.KerasTensor):
            raise BadInputError(f"{where}: its {role} is {type(t).__name__}, not a tensor of the model")
        if role != "attention_mask" and getattr(t, "_keras_mask", None) is not None:
            raise BadInputError(
                f"{where}: its {role} carries a Keras mask (an Embedding with mask_zero=True or a Masking layer "
                "before it), which Keras turns into a query/value mask of the attention; only attention_mask= "
                "(give the padding mask as an input, attention_mask of shape (T, S))"
            )
        roles.append(role)
        tensors.append(t)
    if "query" not in roles or "value" not in roles:
        raise BadInputError(f"{where}: called without a query and a value")
    options: list[tuple[str, Any]] = [("roles", tuple(roles))]
    for flag in ("use_causal_mask", "return_attention_scores"):
        value = given.get(flag, False)
        if not isinstance(value, (bool, np.bool_)):
            raise BadInputError(f"{where}: called with {flag}={value!r:.40}; only True or False")
        if value:
            options.append((flag, True))
    return tensors, tuple(options)


def _scores_used(where: str, names: list[str]) -> None:
    """Refuse the scores of an attention call (return_attention_scores=True) used as `where` (a layer's input or
    a model output): the description's tensors are the calls' outputs; the scores may only be left unused."""
    scores = next((n for n in names if n.startswith(SCORES)), None)
    if scores is not None:
        layer = scores[len(SCORES) :]
        raise BadInputError(
            f"layer {layer!r} (MultiHeadAttention): return_attention_scores=True with the scores used as {where}; "
            "only the attention output is read (leave the scores unused, or call it with "
            "return_attention_scores=False)"
        )


def _spec(layer: keras.layers.Layer) -> LayerSpec:
    """The LayerSpec of one Keras layer (SPECS), refusing a class it lacks and a frozen layer."""
    if type(layer) not in SPECS:
        raise _refuse(layer, "this layer class is not supported")
    if not layer.trainable:
        raise _refuse(
            layer,
            "trainable=False (a frozen layer: Keras computes no gradient for it, and a frozen "
            "BatchNormalization runs in inference mode)",
        )
    _layer_dtype(layer)
    return SPECS[type(layer)](layer)


def _check_arguments(node: Any, name: str) -> None:
    """A node calls its layer on its tensors only: a mask or another argument is refused (a `training=` given when
    the graph was built is not: calling the model passes its own `training` to every layer that takes one)."""
    op, arguments = node.operation, node.arguments
    if len(arguments.args) != 1:
        raise BadInputError(
            f"{_where_node(op, name)}: called with {len(arguments.args)} positional arguments; only the input "
            "tensor (or a list of tensors for a merge)"
        )
    for key, value in arguments.kwargs.items():
        unset = all(v is None for v in keras.tree.flatten(value))  # mask=[None, None] for a model of two inputs
        if not unset and key != "training":  # Keras's model call passes its own training= to every layer
            raise BadInputError(
                f"{_where_node(op, name)}: called with {key}={value!r:.40}; only the layer's own default "
                "(a mask or an argument changes what the layer computes)"
            )


def _walk(model: keras.Model, inputs: list[str], prefix: str, walk: _Walk) -> list[str]:
    """Read the nodes of `model` (called on the tensors named `inputs`) into `walk`; the names of its outputs."""
    try:
        graph, nodes = graph_nodes(model)
    except ValueError:
        raise BadInputError(
            f"model {model.name!r} is a subclassed model ({type(model).__name__}): only a Sequential or functional "
            f"model has a graph of layer calls to read; {SUPPORTED}"
        ) from None
    if len(graph.inputs) != len(inputs):
        raise BadInputError(
            f"model {model.name!r} takes {len(graph.inputs)} inputs but is called on {len(inputs)} tensors"
        )
    names = {id(t): name for t, name in zip(graph.inputs, inputs)}
    for node in nodes:
        op = node.operation
        name = prefix + op.name
        if not isinstance(op, keras.layers.Layer):
            raise BadInputError(
                f"{_where_node(op, name)} is an operation on Keras tensors (a keras.ops function or arithmetic such "
                f"as a + b), not a layer; write it as a layer (keras.layers.Add()([a, b])); {SUPPORTED}"
            )
        if type(op) is keras.layers.MultiHeadAttention:  # query, value, key=, attention_mask= and its flags
            tensors, options = _attention_call(node, name)
            given = [names[id(t)] for t in tensors]
            _scores_used(f"the input of {_where_node(op, name)}", given)
            out = walk.call(op, given, options)
            scores = SCORES + walk.names[id(op)]  # named after the layer, whichever call made them
            outs = [out, scores] if dict(options).get("return_attention_scores") else [out]
        else:
            _check_arguments(node, name)
            given = [names[id(t)] for t in node.input_tensors]
            _scores_used(f"the input of {_where_node(op, name)}", given)
            if isinstance(op, keras.Model):  # a nested model: its calls in its place
                outs = _walk(op, given, f"{name}/", walk)
            else:
                outs = [walk.call(op, given)]
        if len(outs) != len(node.outputs):
            raise BadInputError(f"{_where_node(op, name)} returns {len(node.outputs)} tensors; only one is supported")
        names.update({id(t): out for t, out in zip(node.outputs, outs)})
    return [names[id(t)] for t in graph.outputs]


def _weight_order(model: keras.Model, prefix: str = "") -> list[tuple[str, keras.layers.Layer]]:
    """(the names of the models it is nested in, joined by "_" and ending in "_" or "", layer) for the model's
    layers in the order of its weights, nested models' layers in their place, without InputLayers; each layer
    once."""
    out: list[tuple[str, keras.layers.Layer]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_weight_order(layer, f"{prefix}{layer.name}_"))
        elif not isinstance(layer, keras.layers.InputLayer):
            out.append((prefix, layer))
    seen: set[int] = set()
    return [(p, layer) for p, layer in out if not (id(layer) in seen or seen.add(id(layer)))]


def keras_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in the order of its weights, without its InputLayers; a nested model's layers in its place
    (each layer once)."""
    return [layer for _, layer in _weight_order(model)]


def flat_names(model: keras.Model, inputs: list[str]) -> dict[int, str]:
    """Per layer (by id) its name in the flattened graph: its own, unique in a Keras model; a nested model's layer
    whose name another layer (or an input) of the flattened graph has too is named after the models it is nested
    in, `inner_dense` (Keras keeps a "/" out of layer names, so not Keras's variable path `inner/dense`)."""
    layers = _weight_order(model)
    bare = [layer.name for _, layer in layers] + inputs
    names = {
        id(layer): (layer.name if bare.count(layer.name) == 1 else prefix + layer.name) for prefix, layer in layers
    }
    taken = list(names.values()) + inputs
    twice = next((name for name in taken if taken.count(name) > 1), None)
    if twice is not None:
        raise BadInputError(
            f"model {model.name!r}: two layers of its nested models are both named {twice!r}; give them distinct names"
        )
    return names


def _inputs(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape without the batch axis) per model input; a shape with an unknown dimension is refused."""
    try:
        tensors = list(model.inputs)
    except (AttributeError, TypeError, ValueError):
        tensors = []
    if not tensors:
        raise BadInputError(
            f"model {model.name!r} has no input shape yet: start it with keras.Input(shape=(D,)) or build it"
        )
    out = []
    for t in tensors:
        shape = tuple(t.shape)
        if len(shape) < 2 or any(d is None for d in shape[1:]):
            raise BadInputError(
                f"model {model.name!r} takes inputs of shape {shape}; only a fixed shape (None, D), (None, T, F) or "
                "(None, H, W, C) is supported"
            )
        out.append((t._keras_history.operation.name, tuple(int(d) for d in shape[1:])))
    return out


def _is_chain(graph: GraphArchitecture) -> bool:
    """One input, each layer called once on the output of the call before, in the order of the layers, one output."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1 or len(graph.calls) != len(graph.layers):
        return False
    previous = graph.inputs[0][0]
    for call, (name, spec), out in zip(graph.calls, graph.layers, graph.output_names()):
        if call.layer != name or call.inputs != (previous,) or spec.kind in MERGE_KINDS:
            return False
        previous = out
    return graph.outputs == (previous,)


def read(model: keras.Model | str | os.PathLike) -> Reading:
    """The description of a Keras model (Sequential or functional, nested models flattened), the dtype it computes
    in, and its layer objects by name; every unsupported part is refused, naming the node or layer and the option."""
    model = _as_model(model)
    inputs = _inputs(model)
    walk = _Walk(flat_names(model, [name for name, _ in inputs]))
    outputs = _walk(model, [name for name, _ in inputs], "", walk)
    _scores_used(f"an output of model {model.name!r}", outputs)
    if not walk.calls:
        raise BadInputError(f"model {model.name!r} has no layers")
    ordered = [layer for layer in keras_layers(model) if id(layer) in walk.names]  # Keras's weight order
    layers = [(walk.names[id(layer)], walk.specs[id(layer)]) for layer in ordered]
    dtypes = [_layer_dtype(layer) for layer in ordered]
    for layer, dtype in zip(ordered, dtypes):
        if dtype != dtypes[0]:
            raise _refuse(
                layer,
                f"dtype {dtype}, but layer {ordered[0].name!r} is {dtypes[0]} (Keras casts the "
                f"activations to {dtype} there); create every layer with the same dtype=",
            )
    graph = GraphArchitecture(tuple(inputs), tuple(layers), tuple(walk.calls), tuple(outputs))
    arch: Architecture | GraphArchitecture = graph
    if _is_chain(graph):
        arch = Architecture.of_shape(inputs[0][1], tuple(spec for _, spec in layers))
    for name, shape in zip(graph.outputs, graph.output_shapes):
        if len(shape) != 1:  # a Dense on a sequence acts on every time step: (T, units), not features
            which = "the output" if len(graph.outputs) == 1 else f"the output {name!r}"
            pooling = "GlobalAveragePooling1D" if len(shape) == 2 else "GlobalAveragePooling2D"
            raise BadInputError(
                f"model {model.name!r}: {which} has shape {shape}; end with features (D,): add a Flatten (or "
                f"{pooling}) and a Dense layer"
            )
    return Reading(arch, graph, dtypes[0], {walk.names[id(layer)]: layer for layer in ordered})


def describe(model: keras.Model | str | os.PathLike) -> tuple[Architecture | GraphArchitecture, str]:
    """(the description that `model` amounts to, the dtype it computes in): an Architecture for a chain, a
    GraphArchitecture for any other graph; unsupported parts are refused."""
    reading = read(model)
    return reading.arch, reading.dtype


def resolve_dtype(model_dtype: str, dtype: str | None) -> str:
    """The dtype to compare in: the model's unless given; a narrower one than the model's is refused."""
    if dtype is None:
        return model_dtype
    if dtype not in DTYPES:
        raise BadInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if np.dtype(dtype).itemsize < np.dtype(model_dtype).itemsize:
        raise BadInputError(
            f"dtype {dtype} was asked for a {model_dtype} Keras model: its weights would be rounded; "
            f"compare it in {model_dtype}"
        )
    return dtype


_resolve_dtype = resolve_dtype  # the name it had


def _graph_names(reading: Reading) -> list[str]:
    """The names the built models give the layers (a chain's are the kinds', dense, dense_1, ...), in the order of
    `reading.layers`."""
    return [name for name, _ in reading.arch.graph().layers]


def from_keras(model: keras.Model | str | os.PathLike, dtype: str | None = None) -> Model:
    """The scratch model of a Keras model (or of the `.keras` file at that path), with its weights: a
    `Sequential` for a chain, a `from_scratch.graph.Model` for any other functional model (several inputs and
    outputs, merges, shared layers, nested models flattened).

    Supported: Dense (any activation of the scratch registry, at Keras's default arguments; use_bias=True;
    L1/L2/L1L2 kernel and bias regularizers), Dropout and BatchNormalization (axis -1, center and scale, any
    momentum and epsilon), LayerNormalization (the last axis), the image layers, SimpleRNN, LSTM, GRU, Embedding,
    GlobalAveragePooling1D, keras_impl's PositionEmbedding, the merge layers and MultiHeadAttention (each call read
    with its query, value, key=, attention_mask=, use_causal_mask= and return_attention_scores=, the scores left
    unused) (see SUPPORTED); InputLayer is skipped. Anything else raises BadInputError naming the layer (node), the
    option and what is supported.

    dtype: the model's own (float32 or float64) unless given; float64 for a float32 model is exact, float32 for a
    float64 model is refused (the weights would be rounded). Each layer's weights are copied from the Keras layer of
    the same name in its get_weights() order and layout (Dense kernel (in, out), bias; BatchNormalization gamma,
    beta, moving_mean, moving_variance), exactly; the scratch layers take the Keras layers' names (a nested model's
    layer whose name is taken: `inner_dense`, see flat_names), so the report's rows read as the model's variables.
    """
    reading = read(model)
    dtype = resolve_dtype(reading.dtype, dtype)
    if isinstance(reading.arch, Architecture):
        scratch: Model = Sequential.from_architecture(reading.arch, dtype=dtype)
        for ours, name in zip(scratch.layers, reading.layers):
            ours.name = name
    else:
        scratch = Model.from_architecture(reading.arch, dtype=dtype)
    scratch.set_weights(reading.keras_weights([layer.name for layer in scratch.layers]))
    return scratch


def comparison_twin(model: keras.Model | str | os.PathLike, dtype: str | None = None) -> keras.Model:
    """The Keras side of a comparison: the model's own layers called on its flattened graph, each Dropout a
    FixedMaskDropout; a keras.Sequential for a chain, a functional keras.Model otherwise.

    Why not the loaded model itself: the harness gives both sides one dropout mask (`share_dropout_masks` sets
    `.mask` on each FixedMaskDropout), and keras.layers.Dropout draws its mask from TensorFlow's Philox generator,
    which NumPy cannot reproduce. FixedMaskDropout computes exactly what Keras's Dropout computes given a mask
    (tests/test_layers_parity.py::test_fixed_mask_dropout_equals_keras_dropout_given_its_mask shows it bit for
    bit), so swapping it in changes no arithmetic. Why not a rebuilt model: every other layer is *the same layer
    object* as in `model`, so the weights compared are the user's own trained variables, with the user's
    activation functions, regularizers and BatchNormalization settings, not a copy made from the description.
    (Consequently a training pass through the twin moves the model's BatchNormalization moving statistics;
    `compare_keras_model` puts them back.) A nested model's layer whose name another layer of the flattened graph
    also has is the one exception: Keras wants unique names in a model, so it is rebuilt from its own config under
    its flat name (`inner_dense`), with its weights copied; a MultiHeadAttention with dropout is another: it is
    rebuilt from its config as keras_impl.attention.FixedMaskMultiHeadAttention (the same layer with its
    probability dropout fed the shared mask), its weights copied. Each attention call is made as the model made it
    (keras_impl.attention.call_attention: query, value, key=, attention_mask=, the flags).

    With a dtype wider than the model's (float64 for a float32 model) the model's layers cannot be used (they
    compute in float32): the twin is then keras_impl.build_model of the same description in that dtype, with
    the model's weights upcast exactly.
    """
    reading = read(model)
    dtype = resolve_dtype(reading.dtype, dtype)
    sources = dict(zip(_graph_names(reading), reading.layers.values()))
    if dtype != reading.dtype:
        twin = keras_impl.build_model(reading.arch, dtype)
        names = [layer.name for layer in twin_layers(twin)]
        twin.set_weights([np.asarray(w, dtype=dtype) for name in names for w in sources[name].get_weights()])
        return twin
    model = _as_model(model)
    copies: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
    twins: dict[str, keras.layers.Layer] = {}
    for name, layer in reading.layers.items():
        if type(layer) is keras.layers.Dropout:
            twins[name] = FixedMaskDropout(layer.rate, dtype=dtype, name=name)
        elif type(layer) is keras.layers.MultiHeadAttention and layer.dropout > 0:  # its dropout fed the shared mask
            twins[name] = FixedMaskMultiHeadAttention.from_config({**layer.get_config(), "name": name})
            copies.append((layer, twins[name]))
        elif name == layer.name:
            twins[name] = layer
        else:  # a nested model's layer renamed in the flat graph (flat_names): a copy under that name
            twins[name] = rebuilt(layer, dtype)
            twins[name].name = name
            copies.append((layer, twins[name]))
    graph = reading.graph
    if isinstance(reading.arch, Architecture):
        twin = keras.Sequential(
            [keras.Input(shape=graph.inputs[0][1], dtype=dtype), *twins.values()], name=f"{model.name}_twin"
        )
    else:
        tensors = {name: keras.Input(shape=shape, dtype=dtype, name=name) for name, shape in graph.inputs}
        specs = dict(graph.layers)
        for call, out in zip(graph.calls, graph.output_names()):
            given = [tensors[t] for t in call.inputs]
            options = dict(call.options)
            if "roles" in options:  # an attention call: query, value, key=, attention_mask= and its flags
                tensors[out] = call_attention(twins[call.layer], given, options)
            else:
                tensors[out] = twins[call.layer](given if specs[call.layer].kind in MERGE_KINDS else given[0])
        ins = [tensors[name] for name, _ in graph.inputs]
        outs = [tensors[name] for name in graph.outputs]
        twin = keras.Model(
            ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0], name=f"{model.name}_twin"
        )
    for original, copy in copies:
        copy.set_weights(original.get_weights())
    return twin


__all__ = [
    "Reading",
    "comparison_twin",
    "describe",
    "from_keras",
    "keras_layers",
    "read",
    "resolve_dtype",
]
