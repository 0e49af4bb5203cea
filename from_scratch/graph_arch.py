"""The description of a graph model: inputs, named layers, the calls that connect them, and the outputs.

A chain (`Architecture`) is a graph whose every layer is called once, on the output of the layer before it:
`Architecture.graph()` writes it in this form, and both sides build every network from this form only
(`from_scratch.graph.Model.from_architecture`, `keras_impl.model.build_model`).

    GraphArchitecture(
        inputs=(("x", (64,)),),
        layers=(("dense", LayerSpec("dense", 32, "relu")), ("dense_1", LayerSpec("dense", 64)),
                ("add", LayerSpec("add")), ("dense_2", LayerSpec("dense", 10, "softmax"))),
        calls=(Call("dense", ("x",)), Call("dense_1", ("dense",)), Call("add", ("x", "dense_1")),
               Call("dense_2", ("add",))),
        outputs=("dense_2",),
    )

is y = softmax(W2 (x + W1' relu(W1 x + b1) + b1') + b2): a residual block. A call names the layer it calls and the
tensors it is called on (an input's name, or an earlier call's output); its own output is named after the layer
(the k-th call of a layer called several times, a shared layer, is named `layer#k`, k from 2), or as `output=` says.
A merge layer (Add, Concatenate, ...: `MERGE_KINDS`) is called on two or more tensors, every other layer on one.

Plain data: no NumPy, no Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError

Shape = tuple[int, ...]


#: The layers called on several tensors, and the output shape each gives for inputs of `shapes` (options, shapes,
#: where -> shape; a shape mismatch raises BadInputError naming `where` and both shapes). Each merge layer of
#: from_scratch/merge.py registers its own rule here, as the layers register in LAYERS.
MERGE_KINDS: dict[str, Callable[[dict, list[Shape], str], Shape]] = {}

#: Kinds of several inputs that a chain calls on the one tensor before them, and the call's options for that: self-
#: attention calls MultiHeadAttention on it as query and value (registered by from_scratch/attention.py).
SELF_CALLS: dict[str, tuple[tuple[str, object], ...]] = {}

#: For a kind of several inputs with weights and buffers (attention): (options and the call's, input shapes, output
#: shape) -> (values per sample beside the output, numbers in the weights), for the memory check.
SEVERAL_FOOTPRINTS: dict[str, Callable[[dict, list[Shape], Shape], tuple[int, int]]] = {}


def chain_call(name: str, kind: str, previous: str) -> Call:
    """The call of a chain's layer on the tensor before it (a self-call kind on it twice, with its roles)."""
    if kind in SELF_CALLS:
        return Call(name, (previous, previous), "", SELF_CALLS[kind])
    return Call(name, (previous,))


def spec_output_shape(
    spec: LayerSpec, given: Shape | list[Shape], where: str, call_options: dict | None = None
) -> Shape:
    """The output shape of layer `spec` called on a tensor of shape `given` (a merge: a list of shapes; an attention
    call's `call_options` name their roles); a shape it cannot take is refused, the message naming `where` (the
    layer and the call)."""
    if spec.kind in MERGE_KINDS:
        return merge_output_shape(spec, list(given), where, call_options)
    try:
        return spec.output_shape(tuple(given))
    except BadInputError as exc:
        message, prefix = str(exc), f"layer {spec.kind!r}"
        raise BadInputError(where + message[len(prefix) :] if message.startswith(prefix) else message) from None


def merge_output_shape(spec: LayerSpec, shapes: list[Shape], where: str, call_options: dict | None = None) -> Shape:
    """The output shape of merge layer `spec` called on tensors of `shapes` (at least two)."""
    if len(shapes) < 2:
        raise BadInputError(f"{where}: {spec.kind} merges two or more tensors, got {len(shapes)}")
    return MERGE_KINDS[spec.kind]({**spec.options, **(call_options or {})}, [tuple(s) for s in shapes], where)


@dataclass(frozen=True)
class Call:
    """One call of a layer: the layer's name, the tensors it is called on, and the name of its output ("" for the
    default: the layer's name, `name#k` for its k-th call)."""

    layer: str
    inputs: tuple[str, ...]
    output: str = ""
    #: The call's own arguments as (name, value) pairs: MultiHeadAttention's ("roles", ("query", "value", ...)),
    #: ("use_causal_mask", True), ("return_attention_scores", True).
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class GraphArchitecture:
    """Inputs (name, shape without the batch axis), layers (name, LayerSpec) in the order their weights are listed,
    calls in an order where each call's inputs exist before it, and the output tensors' names."""

    inputs: tuple[tuple[str, Shape], ...]
    layers: tuple[tuple[str, LayerSpec], ...]
    calls: tuple[Call, ...]
    outputs: tuple[str, ...]
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.check()

    # ----- the form both builders read ------------------------------------------------------------------------
    def graph(self) -> GraphArchitecture:
        return self

    def output_names(self) -> list[str]:
        """Each call's output name, in call order."""
        counts: dict[str, int] = {}
        names = []
        for call in self.calls:
            counts[call.layer] = counts.get(call.layer, 0) + 1
            k = counts[call.layer]
            names.append(call.output or (call.layer if k == 1 else f"{call.layer}#{k}"))
        return names

    def check(self) -> None:
        """Refuse what is not a graph of these layers: an unknown layer or tensor, a name given twice, a cycle (a call
        on a tensor that only a later call makes), an input that reaches no output, a merge on one tensor, a plain
        layer on several, and shapes that do not agree (shapes())."""
        names = [name for name, _ in self.inputs] + [name for name, _ in self.layers]
        if not self.inputs or not self.outputs or not self.calls:
            raise BadInputError("a graph needs at least one input, one call and one output")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise BadInputError(f"graph: the name {twice[0]!r} is given to more than one input or layer")
        specs = dict(self.layers)
        made = self.output_names()
        later = {name: i for i, name in enumerate(made)}
        defined = {name for name, _ in self.inputs}
        for i, (call, out) in enumerate(zip(self.calls, made)):
            if call.layer not in specs:
                raise BadInputError(f"graph: call {i + 1} calls {call.layer!r}, which is not a layer of the graph")
            for t in call.inputs:
                if t in defined:
                    continue
                if t in later:
                    cycle = self._cycle(t, out, made)
                    raise BadInputError(
                        f"graph: {out!r} is computed from {t!r}, which is computed later"
                        + (
                            f": a cycle {' -> '.join(cycle)}"
                            if cycle
                            else "; list the calls in an order that computes each tensor first"
                        )
                    )
                raise BadInputError(f"graph: {out!r} is called on {t!r}, which is neither an input nor a call's output")
            if out in defined:
                raise BadInputError(f"graph: the tensor name {out!r} is given twice")
            defined.add(out)
        for name in self.outputs:
            if name not in defined:
                raise BadInputError(f"graph: the output {name!r} is neither an input nor a call's output")
        used = {name for name, _ in self.layers}
        called = {call.layer for call in self.calls}
        if used - called:
            raise BadInputError(f"graph: the layer {sorted(used - called)[0]!r} is never called")
        reach = self._reaching()
        for name, _ in self.inputs:
            if name not in reach:
                raise BadInputError(f"graph: the input {name!r} does not reach any output")
        self.shapes()

    def _cycle(self, start: str, target: str, made: list[str]) -> list[str]:
        """A path of calls from `start` back to `target`, if the tensors form a cycle."""
        producer = dict(zip(made, self.calls))
        path, seen = [start], set()

        def walk(name: str) -> bool:
            if name == target:
                return True
            if name in seen or name not in producer:
                return False
            seen.add(name)
            for t in producer[name].inputs:
                path.append(t)
                if walk(t):
                    return True
                path.pop()
            return False

        return [target, *path] if walk(start) else []

    def _reaching(self) -> set[str]:
        """The tensors some output depends on."""
        producer = dict(zip(self.output_names(), self.calls))
        seen: set[str] = set()
        todo = list(self.outputs)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in producer:
                todo.extend(producer[name].inputs)
        return seen

    def shapes(self) -> dict[str, Shape]:
        """Every tensor's shape without the batch axis (inputs and call outputs): a layer that cannot take the shape
        reaching it, a merge whose shapes disagree, or a layer called again on another shape is refused, naming the
        call and the shapes."""
        shapes: dict[str, Shape] = {name: tuple(shape) for name, shape in self.inputs}
        specs = dict(self.layers)
        first: dict[str, list[Shape]] = {}
        for call, out in zip(self.calls, self.output_names()):
            spec = specs[call.layer]
            given = [shapes[t] for t in call.inputs]
            where = f"layer {call.layer!r}" + (f" (call {out!r})" if out != call.layer else "")
            merge = spec.kind in MERGE_KINDS
            if merge and len(given) < 2:
                raise BadInputError(f"{where}: {spec.kind} merges two or more tensors, got {len(given)}")
            if not merge and len(given) != 1:
                raise BadInputError(f"{where}: a {spec.kind} layer takes one tensor, got {len(given)}")
            if call.layer in first and first[call.layer] != given:
                raise BadInputError(
                    f"{where}: the shared layer was built for {_shapes(first[call.layer])} and is called again on "
                    f"{_shapes(given)}"
                )
            first.setdefault(call.layer, given)
            shapes[out] = spec_output_shape(spec, given if merge else given[0], where, dict(call.options))
        return shapes

    # ----- what the harness reads ---------------------------------------------------------------------------------
    @property
    def input_shapes(self) -> list[Shape]:
        return [tuple(shape) for _, shape in self.inputs]

    @property
    def input_shape(self) -> Shape:
        """The input's shape (a graph of one input)."""
        if len(self.inputs) != 1:
            raise BadInputError(f"this graph has {len(self.inputs)} inputs: read input_shapes")
        return tuple(self.inputs[0][1])

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_shapes(self) -> list[Shape]:
        shapes = self.shapes()
        return [shapes[name] for name in self.outputs]

    @property
    def output_dim(self) -> int:
        """The output's width (a graph of one output)."""
        if len(self.outputs) != 1:
            raise BadInputError(f"this graph has {len(self.outputs)} outputs: read output_shapes")
        return self.output_shapes[0][-1]

    def footprint(self) -> tuple[int, int]:
        """(values per sample in activations and buffers, numbers in the weights), from the shapes alone."""
        shapes = self.shapes()
        specs = dict(self.layers)
        values = sum(math.prod(s) for _, s in self.inputs)
        weights, counted = 0, set()
        for call, out in zip(self.calls, self.output_names()):
            spec = specs[call.layer]
            given = shapes[call.inputs[0]]
            values += math.prod(shapes[out])
            if spec.kind in SEVERAL_FOOTPRINTS:
                options = {**spec.options, **dict(call.options)}
                buffer, count = SEVERAL_FOOTPRINTS[spec.kind](options, [shapes[t] for t in call.inputs], shapes[out])
                values += buffer
                weights += count if call.layer not in counted else 0
            elif spec.kind not in MERGE_KINDS:
                values += spec.buffer_size(given, shapes[out])
                if call.layer not in counted:
                    weights += spec.weight_count(given)
            counted.add(call.layer)
        return values, weights

    def __str__(self) -> str:
        if self.text:
            return self.text
        calls = ", ".join(f"{out}={c.layer}({','.join(c.inputs)})" for c, out in zip(self.calls, self.output_names()))
        return f"graph(inputs={[n for n, _ in self.inputs]}, {calls}, outputs={list(self.outputs)})"


def _shapes(shapes: list[Shape]) -> str:
    return " and ".join(map(str, shapes)) if len(shapes) > 1 else str(shapes[0])


def chain_graph(input_shape: Shape, specs: tuple[LayerSpec, ...]) -> GraphArchitecture:
    """A chain as a graph: one input named "input_layer" (Keras's name), each layer called once on the one before,
    layers named as Keras names them in a fresh session (dense, dense_1, ...)."""
    counts: dict[str, int] = {}
    layers, calls, previous = [], [], "input_layer"
    for spec in specs:
        n = counts.get(spec.kind, 0)
        counts[spec.kind] = n + 1
        name = spec.kind if n == 0 else f"{spec.kind}_{n}"
        layers.append((name, spec))
        calls.append(chain_call(name, spec.kind, previous))
        previous = name
    return GraphArchitecture((("input_layer", tuple(input_shape)),), tuple(layers), tuple(calls), (previous,))


def in_keras_order(graph: GraphArchitecture) -> GraphArchitecture:
    """The same graph with its calls in the order Keras's functional model runs its nodes and its layers in the order
    it lists their weights (keras.src.ops.function.map_graph, as from_scratch.graph.Model orders its nodes): a
    depth-first walk from each output, each input of a call in turn, gives every call its depth (the longest path to
    an output; a layer's at least its deepest call's); calls run deepest first, and layers are listed deepest first
    and, within a depth, in the order the walk first met them. Tensor names are kept."""
    names = graph.output_names()
    producer = {name: i for i, name in enumerate(names)}

    def parents(node: int | str) -> list[int | str]:  # a call's index, or an input's name
        return [producer.get(t, t) for t in graph.calls[node].inputs] if isinstance(node, int) else []

    def op(node: int | str) -> str:
        return graph.calls[node].layer if isinstance(node, int) else f"input {node}"

    finished: set[int | str] = set()
    order: list[int | str] = []
    op_index: dict[str, int] = {}
    for out in graph.outputs:
        stack: list[tuple[int | str, int]] = [(producer.get(out, out), 0)]
        while stack:
            node, k = stack.pop()
            if k == 0:
                if node in finished:
                    continue
                op_index.setdefault(op(node), len(op_index))
            given = parents(node)
            if k < len(given):
                stack.append((node, k + 1))
                stack.append((given[k], 0))
                continue
            finished.add(node)
            order.append(node)
    depth: dict[int | str, int] = {}
    op_depth: dict[str, int] = {}
    for node in reversed(order):
        d = max(depth.setdefault(node, 0), op_depth.get(op(node), 0))
        op_depth[op(node)] = depth[node] = d
        for parent in parents(node):
            depth[parent] = max(d + 1, depth.get(parent, 0))
    by_depth: dict[int, list[int | str]] = {}
    for node, d in depth.items():
        by_depth.setdefault(d, []).append(node)
    calls = [node for d in sorted(by_depth, reverse=True) for node in by_depth[d] if isinstance(node, int)]
    specs = dict(graph.layers)
    layers = sorted((name for name in op_index if name in specs), key=lambda name: (-op_depth[name], op_index[name]))
    ordered = [graph.calls[i] for i in calls]
    counts: dict[str, int] = {}
    renamed = []
    for call, i in zip(ordered, calls):  # keep every tensor's name: a shared layer's calls may change places
        counts[call.layer] = counts.get(call.layer, 0) + 1
        default = call.layer if counts[call.layer] == 1 else f"{call.layer}#{counts[call.layer]}"
        renamed.append(call if names[i] == default else Call(call.layer, call.inputs, names[i], call.options))
    return GraphArchitecture(
        graph.inputs, tuple((name, specs[name]) for name in layers), tuple(renamed), graph.outputs, graph.text
    )
