"""The symbolic side of a graph under construction, as Keras's functional API has it: `Input` makes a `Tensor`,
calling a layer on tensors (`call_layer`, behind `Layer.__call__`) makes a `Node` (one call of a layer) and its output
tensor. `_map_graph` orders what a `from_scratch.graph.Model` runs: its nodes in the order they run and its layers in
the order their weights are listed, by Keras's algorithm (keras.src.ops.function.map_graph), with the messages that
name a node, an input or a shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from from_scratch.errors import BadInputError, a_or_an
from from_scratch.layers import Layer, Shape, as_shape


class Tensor:
    """A symbolic value of a graph under construction: an `Input`, or the output of one call of a layer. Its
    `shape` (without the batch axis) is known for an input, and for a call's output once a Model is built on it."""

    def __init__(self, node: Node, shape: Shape | None = None) -> None:
        self.node = node
        self.shape = shape

    def __repr__(self) -> str:
        return f"<Tensor {self.node.name or '?'} shape={self.shape}>"


class Node:
    """One call of a layer (`layer` None for an input): the tensors it was called on and its output tensor."""

    def __init__(
        self,
        layer: Layer | None,
        inputs: Sequence[Tensor],
        several: bool,
        name: str = "",
        options: dict[str, Any] | None = None,
    ) -> None:
        self.layer = layer
        self.inputs = list(inputs)
        self.several = several
        self.options = dict(options or {})  # per-call arguments (attention: roles, use_causal_mask, ...)
        self.name = name
        self.given_name = name
        self.output = Tensor(self)

    @property
    def is_input(self) -> bool:
        return self.layer is None


def Input(shape: Shape | int, name: str | None = None) -> Tensor:  # noqa: N802 - Keras's spelling
    """A model input of `shape` (without the batch axis; an int D is (D,)), as keras.Input."""
    if name is not None and (not isinstance(name, str) or not name):
        raise BadInputError(f"Input: name must be a non-empty string, got {name!r}")
    node = Node(None, (), False, name or "")
    node.output.shape = as_shape(shape, "Input shape")
    return node.output


def call_layer(layer: Layer, inputs: Any, options: dict[str, Any] | None = None) -> Tensor:
    """`layer(inputs)` on symbolic tensors: a new node, and its output tensor. `options`: the call's own arguments
    (MultiHeadAttention's roles, use_causal_mask, return_attention_scores), handed to the layer's build and forward."""
    name = getattr(layer, "name", "") or type(layer).__name__
    if isinstance(inputs, Tensor):
        several, tensors = False, [inputs]
    elif isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, Tensor) for t in inputs):
        several, tensors = True, list(inputs)
    else:
        what = a_or_an(type(inputs).__name__)
        if isinstance(inputs, (list, tuple)):
            kinds = sorted({type(t).__name__ for t in inputs if not isinstance(t, Tensor)})
            what = f"a {type(inputs).__name__} of {len(inputs)}" + (f" holding {', '.join(kinds)}" if kinds else "")
        raise BadInputError(
            f"layer {name!r} was called on {what}: call a layer on from_scratch.graph.Input "
            "tensors (x = Input(shape=(64,)); y = Dense(10)(x)), or on a list of them for a merge, then run arrays "
            "through Model(inputs=x, outputs=y)"
        )
    if layer.several_inputs and not several:
        raise BadInputError(
            f"layer {name!r} merges several tensors: call it on a list, e.g. {type(layer).__name__}()([a, b])"
        )
    if several and not layer.several_inputs:
        raise BadInputError(f"layer {name!r} takes one tensor, but was called on a list of {len(tensors)}")
    if several and len(tensors) < 2:
        raise BadInputError(f"layer {name!r} merges two or more tensors, but was called on a list of 1")
    scores = next((t for t in tensors if getattr(t, "scores_of", None) is not None), None)
    if scores is not None:
        raise BadInputError(
            f"layer {name!r} was called on the attention scores of {scores.scores_of.layer.name!r}: the scores a call "
            "returns are compared as their own row, but cannot yet feed another layer or be a model output"
        )
    return Node(layer, tensors, several, options=options).output


def _tensors(value: Any, what: str) -> list[Tensor]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    scores = next((t for t in items if getattr(t, "scores_of", None) is not None), None)
    if scores is not None:
        raise BadInputError(
            f"Model {what}: the attention scores of {scores.scores_of.layer.name!r} cannot be a model {what[:-1]} "
            "here; they are compared as their own row of the call"
        )
    if not items or not all(isinstance(t, Tensor) for t in items):
        bad = next((t for t in items if not isinstance(t, Tensor)), None)
        raise BadInputError(
            f"Model {what}: expected from_scratch.graph tensors (Input(...) and the outputs of layer calls), got "
            + (a_or_an(type(bad).__name__) if items else "none")
        )
    return items


def _call_text(node: Node) -> str:
    """ " (call 'add' on 'dense' and 'input_layer_1')": the node and the tensors it was handed, for a message."""
    return f" (call {node.name!r} on {' and '.join(repr(t.node.name) for t in node.inputs)})"


def _input_label(node: Node) -> str:
    """An Input in a message: its given name, else "of shape (4,) (unnamed)"."""
    return repr(node.given_name) if node.given_name else f"of shape {node.output.shape} (unnamed)"


def _layer_label(layer: Any) -> str:
    return getattr(layer, "name", "") or type(layer).__name__


def _shape_text(shape: Any) -> str:
    if isinstance(shape, list):
        return " and ".join(map(str, shape))
    return str(shape)


def _map_graph(inputs: list[Tensor], outputs: list[Tensor]) -> tuple[list[Node], list[Layer]]:
    """The nodes in the order they run and the layers in the order their weights are listed, as Keras's functional
    models order them (keras.src.ops.function.map_graph): a depth-first walk from each output gives each node's
    depth (the longest path to an output; a layer's at least its deepest call's), nodes run deepest first, layers are
    listed deepest first and, within a depth, in the order the walk first met them. An output that depends on an
    Input not among `inputs`, and an input that reaches no output, are refused."""
    given = {id(t.node) for t in inputs}
    finished: set[int] = set()
    order: list[Node] = []
    op_index: dict[int, int] = {}
    for out in outputs:
        stack: list[tuple[Node, int]] = [(out.node, 0)]
        in_progress: set[int] = set()
        while stack:
            node, k = stack.pop()
            if k == 0:
                if id(node) in finished:
                    continue
                if node.is_input and id(node) not in given:
                    consumer = stack[-1][0] if stack else None
                    by = f", called on by layer {_layer_label(consumer.layer)!r}," if consumer is not None else ""
                    raise BadInputError(
                        f"Model: an output depends on the Input {_input_label(node)}{by} which is not among the "
                        "model's inputs; add it to inputs"
                    )
                op_index.setdefault(id(node.layer) if node.layer is not None else id(node), len(op_index))
                in_progress.add(id(node))
            if k < len(node.inputs):
                stack.append((node, k + 1))
                parent = node.inputs[k].node
                if id(parent) in in_progress:
                    raise BadInputError(f"Model: the graph has a cycle through layer {_layer_label(node.layer)!r}")
                stack.append((parent, 0))
                continue
            in_progress.discard(id(node))
            finished.add(id(node))
            order.append(node)
    for k, t in enumerate(inputs):
        if id(t.node) not in finished:
            raise BadInputError(
                f"Model: the input {_input_label(t.node)} (inputs[{k}]) does not reach any output; drop it from "
                "inputs or connect it"
            )
    depth: dict[int, int] = {}
    op_depth: dict[int, int] = {}
    by_id = {id(node): node for node in order}
    for node in reversed(order):
        d = depth.setdefault(id(node), 0)
        op = id(node.layer) if node.layer is not None else id(node)
        d = max(d, op_depth.get(op, 0))
        op_depth[op] = d
        depth[id(node)] = d
        for t in node.inputs:
            parent = t.node
            if id(parent) in by_id:
                depth[id(parent)] = max(d + 1, depth.get(id(parent), 0))
    nodes_by_depth: dict[int, list[Node]] = {}
    for key, d in depth.items():
        nodes_by_depth.setdefault(d, []).append(by_id[key])
    nodes = [node for d in sorted(nodes_by_depth, reverse=True) for node in nodes_by_depth[d] if not node.is_input]
    layers_by_id = {id(node.layer): node.layer for node in order if node.layer is not None}
    ops = sorted(layers_by_id, key=lambda op: (-op_depth[op], op_index[op]))
    return nodes, [layers_by_id[op] for op in ops]
