"""`Model`: a graph of layers, as Keras's functional API builds one, with batch backprop over the graph.

    x = Input(shape=(64,))
    h = Dense(64, activation="relu")(x)
    y = Dense(10, activation="softmax")(Add()([x, Dense(64)(h)]))       # a skip connection
    model = Model(inputs=x, outputs=y)

Each call of a layer is a node; the model runs the nodes in topological order (Keras's order: by depth from the
outputs, deepest first) and backpropagates in the reverse order:

    forward:   T_v = layer_v(T_u for the inputs u of v)                  every node once, inputs first
    backward:  dL/dT_u = sum over the consumers v of u of (dT_v/dT_u)^T dL/dT_v

the multivariate chain rule: where a tensor feeds several nodes (a fan-out: the input of a residual block feeds
its branch and its skip), the gradients that come back ADD UP. A layer called on several tensors (a shared layer,
e.g. one Dense applied to both halves of a siamese model) is one set of weights used twice, so its parameter gradient
is the sum over its calls: dL/dW = sum_calls (dL/dW)_call. Between its calls the model keeps each call's caches
apart (the layer's attributes after that call's forward, restored for that call's backward).

Several outputs: one loss per output, and L = sum_o w_o L_o (`loss_weights` w, 1 by default), as Keras's compiled
loss adds them; every output starts its own backward sweep at w_o dL_o/dP_o. A softmax (sigmoid) output under a
cross-entropy starts at the logits' dL/dZ as in a chain (from_scratch/model.py).
`Sequential` is the chain-shaped graph: the same engine, one input, each layer called once on the one before.

This module holds `Model`'s construction, weights and forward pass; the symbolic graph (`Input`, `Tensor`, `Node`,
`call_layer`, Keras's node order `_map_graph`) is from_scratch/nodes.py, the checks of what a pass is handed
from_scratch/feeding.py (`Feeding`), the backward pass from_scratch/backprop.py (`Backprop`, `BackwardPass`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from from_scratch.backprop import Backprop, BackwardPass  # noqa: F401 (re-exported: BackwardPass was defined here)
from from_scratch.checks import as_array, check_declarations, check_numbers, check_shape
from from_scratch.errors import BadInputError, a_or_an, check_seed, unknown_name
from from_scratch.feeding import Feeding
from from_scratch.fitting import Training
from from_scratch.layers import LAYERS, Shape, as_shape
from from_scratch.losses import Loss
from from_scratch.nodes import (  # noqa: F401 (re-exported: Tensor, Node, Input, call_layer, _map_graph were defined here)
    Input,
    Node,
    Tensor,
    _call_text,
    _map_graph,
    _shape_text,
    _tensors,
    call_layer,
)
from from_scratch.threads import LayerThreads
from from_scratch.watch import Watch

Array = np.ndarray

DTYPES = ("float64", "float32")


class Model(Backprop, Feeding, Training):
    """A graph of layers from `inputs` to `outputs` (from_scratch.graph.Input tensors and the tensors layer calls
    returned), built in `dtype` from `seed`. Weights follow Keras's order for the same graph (its layers sorted as
    keras.Model sorts them: by depth from the outputs, then by first visit), each layer's in its own order.

    `watch`: None, or a `from_scratch.watch.Watch` that the passes report protocol breaches to (the comparison
    harness sets one for its own passes)."""

    watch: Watch | None = None

    def __init__(
        self,
        inputs: Tensor | Sequence[Tensor],
        outputs: Tensor | Sequence[Tensor],
        dtype: str = "float64",
        seed: int | None = 0,
        name: str = "model",
    ) -> None:
        if dtype not in DTYPES:
            raise BadInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.inputs = _tensors(inputs, "inputs")
        self.outputs = _tensors(outputs, "outputs")
        for t in self.inputs:
            if not t.node.is_input:
                raise BadInputError(
                    f"Model inputs must be Input(...) tensors; {t.node.name or 'a layer output'!r} is a layer's output"
                )
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise BadInputError("Model: the same Input is given twice in inputs")
        self.name = name
        self.dtype = np.dtype(dtype)
        self.seed = check_seed(type(self).__name__, seed)
        self.nodes, self.layers = _map_graph(self.inputs, self.outputs)
        self._build(np.random.default_rng(seed))

    # ----- construction ----------------------------------------------------------------------------------------
    def _build(self, rng: np.random.Generator) -> None:
        """Name the inputs and layers as Keras names them in a fresh session (input_layer, dense, dense_1, ...),
        build each layer at its first call, in the order the nodes run, and check every later call's shapes."""
        for i, t in enumerate(self.inputs):
            t.node.name = t.node.given_name or ("input_layer" if i == 0 else f"input_layer_{i}")
        counts: dict[str, int] = {}
        for layer in self.layers:
            n = counts.get(layer.kind, 0)
            counts[layer.kind] = n + 1
            layer.name = layer.kind if n == 0 else f"{layer.kind}_{n}"
        self.calls: dict[int, list[Node]] = {}
        built: dict[int, tuple[Any, Shape]] = {}
        self.node_input_shapes: list[Any] = []
        for node in self.nodes:
            layer = node.layer
            given = [t.shape for t in node.inputs] if node.several else node.inputs[0].shape
            calls = self.calls.setdefault(id(layer), [])
            calls.append(node)
            node.name = layer.name if len(calls) == 1 else f"{layer.name}#{len(calls)}"
            if id(layer) in built:
                first, shape = built[id(layer)]
                if first != given:
                    raise BadInputError(
                        f"layer {layer.name!r} is shared: built for inputs of shape {_shape_text(first)}, then called "
                        f"again (call {len(calls)}) on {_shape_text(given)}{_call_text(node)}"
                    )
            else:
                try:
                    out = layer.build(given, self.dtype, rng, **node.options)
                except BadInputError as exc:  # a shape the layer cannot take: say which call handed it over
                    raise BadInputError(f"{exc}{_call_text(node)}") from None
                shape = as_shape(out, f"layer {layer.name!r}: build() must return the output shape, it returned")
                check_declarations(layer)
                built[id(layer)] = (given, shape)
            node.output.shape = shape
            self.node_input_shapes.append(given)
        self.node_output_shapes: list[Shape] = [node.output.shape for node in self.nodes]
        self.shared = {id(layer) for layer in self.layers if len(self.calls[id(layer)]) > 1}
        index = {id(node): i for i, node in enumerate(self.nodes)}
        self._index = index
        self._producer = [[index.get(id(t.node)) for t in node.inputs] for node in self.nodes]
        inputs = {id(t) for t in self.inputs}
        self._needs_input_grad = [any(id(t) not in inputs for t in node.inputs) for node in self.nodes]

    @property
    def layer_input_shapes(self) -> list[Any]:
        """Per node, the shape of what it is called on (a list of shapes for a merge)."""
        return self.node_input_shapes

    @property
    def layer_output_shapes(self) -> list[Shape]:
        return self.node_output_shapes

    @property
    def input_shapes(self) -> list[Shape]:
        return [t.shape for t in self.inputs]

    @property
    def input_shape(self) -> Shape:
        """The input's shape (a model of one input)."""
        if len(self.inputs) != 1:
            raise BadInputError(f"model {self.name!r} has {len(self.inputs)} inputs: read input_shapes")
        return self.inputs[0].shape

    @property
    def output_shapes(self) -> list[Shape]:
        return [t.shape for t in self.outputs]

    @property
    def output_shape(self) -> Shape:
        if len(self.outputs) != 1:
            raise BadInputError(f"model {self.name!r} has {len(self.outputs)} outputs: read output_shapes")
        return self.outputs[0].shape

    @property
    def input_dim(self) -> int:
        """The width D of 1-D inputs (N, D); the number of values of one sample otherwise."""
        return int(np.prod(self.input_shape))

    @property
    def output_dim(self) -> int:
        return self.output_shape[-1]

    @classmethod
    def from_architecture(cls, arch: Any, dtype: str = "float64", seed: int | None = 0) -> Model:
        """Build the model that `arch` describes (an Architecture, a GraphArchitecture, or their text); the same
        description builds the Keras twin."""
        from from_scratch.arch import Architecture
        from from_scratch.graph_arch import GraphArchitecture

        if isinstance(arch, str):
            arch = Architecture.parse(arch)
        if not isinstance(arch, (Architecture, GraphArchitecture)):
            raise BadInputError(
                f"from_architecture takes an Architecture or its text, got {a_or_an(type(arch).__name__)}"
            )
        graph = arch.graph()
        tensors = {name: Input(shape, name=name) for name, shape in graph.inputs}
        layers = {}
        for name, spec in graph.layers:
            if spec.kind not in LAYERS:
                raise unknown_name("layer", spec.kind, LAYERS)
            layers[name] = LAYERS[spec.kind].from_spec(spec)
        for call, out in zip(graph.calls, graph.output_names()):
            args = [tensors[t] for t in call.inputs]
            tensors[out] = call_layer(
                layers[call.layer], args if layers[call.layer].several_inputs else args[0], dict(call.options)
            )
        ins = [tensors[name] for name, _ in graph.inputs]
        outs = [tensors[name] for name in graph.outputs]
        model = Model(ins[0] if len(ins) == 1 else ins, outs[0] if len(outs) == 1 else outs, dtype=dtype, seed=seed)
        for name, layer in layers.items():
            layer.name = name
        for calls in model.calls.values():
            for k, node in enumerate(calls):
                node.name = node.layer.name if k == 0 else f"{node.layer.name}#{k + 1}"
        model.description_text = getattr(graph, "text", "")  # the string form it was read from, if any
        return model

    @property
    def architecture(self) -> Any:
        """The description of this model (a GraphArchitecture), from which `keras_impl.build_model` builds its
        twin."""
        from from_scratch.graph_arch import Call, GraphArchitecture

        custom = [layer.name for layer in self.layers if not hasattr(layer, "spec")]
        if custom:
            raise BadInputError(
                f"this model has no architecture description: layer(s) {', '.join(custom)} are not registry "
                "layers; compare it with compare.check_model"
            )
        return GraphArchitecture(
            tuple((t.node.name, t.shape) for t in self.inputs),
            tuple((layer.name, layer.spec()) for layer in self.layers),
            tuple(
                Call(
                    node.layer.name,
                    tuple(t.node.name for t in node.inputs),
                    node.name,
                    tuple(sorted(node.options.items())),
                )
                for node in self.nodes
            ),
            tuple(t.node.name for t in self.outputs),
            getattr(self, "description_text", ""),
        )

    def astype(self, dtype: str) -> Model:
        """The same model in `dtype`: the graph copied (each layer once, shared layers stay shared) and built again,
        then these weights set (float32 to float64 is exact). Fixed dropout masks carry over."""
        inputs, outputs = copy.deepcopy((self.inputs, self.outputs))
        model = Model(
            inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], dtype, self.seed
        )
        self._carry_over(model)
        model.description_text = getattr(self, "description_text", "")
        return model

    def _carry_over(self, model: Model) -> None:
        """Names, weights and fixed dropout masks of this model onto `model`, a copy of its graph."""
        for ours, theirs in zip(self.layers, model.layers):
            theirs.name = ours.name
        for ours, theirs in zip(self.nodes, model.nodes):
            theirs.name = ours.name
        for ours, theirs in zip(self.inputs, model.inputs):
            theirs.node.name = ours.node.name
        model.set_weights(self.get_weights())
        for ours, theirs in zip(self.layers, model.layers):
            if getattr(ours, "fixed_mask", None) is not None:
                theirs.fix_mask(ours.fixed_mask)

    # ----- weights -------------------------------------------------------------------------------------------
    def get_weights(self) -> list[Array]:
        """Copies of every parameter, in Keras's order [W1, b1, W2, b2, ...]."""
        return [p.copy() for layer in self.layers for p in layer.params]

    def set_weights(self, weights: Sequence[Array]) -> None:
        """Replace every parameter; count, shape and dtype must match (a float64 array is never rounded into a
        float32 model; float32 into float64 is exact and accepted)."""
        slots = [(layer, i, p) for layer in self.layers for i, p in enumerate(layer.params)]
        if not isinstance(weights, (list, tuple)):
            raise BadInputError(
                f"set_weights takes a list of arrays (as get_weights() gives), got {a_or_an(type(weights).__name__)}"
            )
        if len(weights) != len(slots):
            raise BadInputError(f"set_weights: expected {len(slots)} arrays, got {len(weights)}")
        for (layer, i, current), new in zip(slots, weights):
            where = f"set_weights: layer {layer.name!r} parameter {i}"
            new = as_array(where, new)
            if new.shape != current.shape:
                raise BadInputError(f"{where}: expected shape {current.shape}, got {new.shape}")
            check_numbers(where, new)
            if not np.issubdtype(new.dtype, np.floating) or np.finfo(new.dtype).bits > self.dtype.itemsize * 8:
                raise BadInputError(
                    f"{where}: dtype {new.dtype} does not fit a {self.dtype} model without rounding; "
                    f"convert it explicitly (e.g. .astype('{self.dtype}'))"
                )
        flat = iter(np.array(w, dtype=self.dtype) for w in weights)
        for layer in self.layers:
            for p in layer.params:
                p[...] = next(flat)

    @property
    def trainable(self) -> list[bool]:
        """One flag per entry of get_weights(): False for moving statistics."""
        return [t for layer in self.layers for t in layer.param_trainable()]

    def weight_names(self) -> list[str]:
        """Keras-style variable paths aligned with get_weights(): dense/kernel, dense/bias, dense_1/kernel, ..."""
        return [f"{layer.name}/{label}" for layer in self.layers for label in layer.param_names()]

    # ----- forward ---------------------------------------------------------------------------------------------
    def _run(self, xs: list[Array], training: bool) -> tuple[list[Array], list[dict[str, Array]], list[list[Array]]]:
        """Every node in order: (the outputs, per node {"A": its output}, per node the arrays handed to it, then its
        output). Under `watch` each input is handed as a copy (the caller's array never reaches a layer), each array
        a layer is handed is checked unchanged after the call (a layer that wrote into it is reported, and its other
        consumers and the record of its producer keep what the producer returned), and each output's shape, kind and
        dtype are checked. The caches of a shared layer's calls are kept apart (`_snapshots`)."""
        watch = self.watch
        if watch is not None:
            watch.start()
            xs = [x.copy() for x in xs]
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        records: list[dict[str, Array]] = []
        handed: list[list[Array]] = []
        self._snapshots: dict[int, dict[str, Any]] = {}
        with LayerThreads() as threads:
            for i in range(len(self.nodes)):
                self._run_node(i, threads, values, records, handed, training)
        outputs = [values[id(t)] for t in self.outputs]
        if watch is not None:
            for o in outputs:
                watch.keep(o)
        return outputs, records, handed

    def _run_node(
        self,
        i: int,
        threads: LayerThreads,
        values: dict[int, Array],
        records: list[dict[str, Array]],
        handed: list[list[Array]],
        training: bool,
    ) -> None:
        """Node i's forward call on the BLAS threads its size asks for (from_scratch/threads.py), with `_run`'s
        checks; its output goes into `values`, `records` and `handed`."""
        watch, node, shape = self.watch, self.nodes[i], self.node_output_shapes[i]
        n = len(values[id(self.inputs[0])])
        call = f"forward(training={training})"
        layer = node.layer
        args = [values[id(t)] for t in node.inputs]
        if watch is not None:
            for a in args:
                watch.keep(a)
        x = args if node.several else args[0]
        threads.use(layer, x)
        out = layer.forward(x, training=training, **node.options)
        if watch is not None:
            watch.calls += 1
            for k, (t, a, p) in enumerate(zip(node.inputs, args, self._producer[i])):
                before = watch.unchanged(layer, call, f"x[{k}]" if node.several else "x", a)
                if before is not a:  # its other consumers, and its producer's record, get what was returned
                    values[id(t)] = before
                    if p is not None:
                        records[p]["A"] = before
        check_shape(layer, "forward() returned", out, (n, *shape))
        if watch is not None:
            out = watch.result(layer, call, "its output", out, self.dtype)
        values[id(node.output)] = out
        records.append({"A": out})
        handed.append(args + [out])
        if id(layer) in self.shared:
            self._snapshots[i] = dict(vars(layer))

    def _restore(self, i: int) -> None:
        """Put back the caches node i's call left on its (shared) layer."""
        if i in self._snapshots:
            vars(self.nodes[i].layer).update(self._snapshots[i])

    def forward(self, x: Any, training: bool = False) -> Array | list[Array]:
        """Every node in order from the inputs.  X (N, *input_shape) (a list for several inputs) -> the output
        (a list for several outputs)."""
        outputs = self._run(self._as_inputs(x), training)[0]
        return outputs[0] if len(outputs) == 1 else outputs

    def predict(self, x: Any) -> Array | list[Array]:
        """The model output in inference mode."""
        return self.forward(x, training=False)

    def logits_node(self, output: int, loss: Loss, training: bool = True) -> int | None:
        """The index of the node (a Dense, or an Activation layer) whose logits output `output`'s loss is computed
        from (Keras's hidden-logits path: its softmax and sigmoid attach their logits to their output), or None: from
        the output's node down past layers that return their input itself (`passes_through(training)`: an inactive
        Dropout), as Keras's tensors keep the logits attached."""
        node = self.outputs[output].node
        while not node.is_input and not node.several and node.layer.passes_through(training):
            node = node.inputs[0].node
        if node.is_input:
            return None
        layer = node.layer
        activation = getattr(layer, "activation", None)  # a Dense, or an Activation layer: Keras's activation
        fuses = hasattr(layer, "backward_from_z") and activation is not None and activation.name in loss.fuses_with
        return self._index[id(node)] if fuses else None

    def logits_layer(self, loss: Loss, training: bool = True) -> int | None:
        """`logits_node` of the (only) output."""
        return self.logits_node(0, loss, training)

    def fuses(self, loss: Loss, training: bool = True) -> bool:
        """Whether `loss` is computed from logits (`logits_layer`) in a pass in this mode."""
        return self.logits_layer(loss, training) is not None

    loss_weights: list[float] | None = None
