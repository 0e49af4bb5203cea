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
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from from_scratch.checks import (
    as_array,
    check_declarations,
    check_fits_dtype,
    check_grads,
    check_numbers,
    check_shape,
)
from from_scratch.errors import BadInputError, a_or_an, check_seed, unknown_name
from from_scratch.fitting import Training
from from_scratch.layers import LAYERS, Layer, Shape, as_shape
from from_scratch.losses import Loss, OutputLosses, get_loss
from from_scratch.watch import Watch

Array = np.ndarray

DTYPES = ("float64", "float32")


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

    def __init__(self, layer: Layer | None, inputs: Sequence[Tensor], several: bool, name: str = "") -> None:
        self.layer = layer
        self.inputs = list(inputs)
        self.several = several
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


def call_layer(layer: Layer, inputs: Any) -> Tensor:
    """`layer(inputs)` on symbolic tensors: a new node, and its output tensor."""
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
    return Node(layer, tensors, several).output


@dataclass
class BackwardPass:
    """Everything one forward + backward pass produced.

    loss: the reduced loss; grads: dL/dparam aligned with `get_weights()`; input_grad: dL/dX (N, D) (a list, one
    per input, for a model of several inputs), or None when it was not asked for; output: the model output P (a list
    for several outputs); logits_at: the index of the node whose logits Z the loss was computed from (the fused
    path; the first such node of a model of several outputs), or None; fused_at: every such node;
    records: per node, in the model's order, its output "A", the gradient that reached it "dA" (absent where no
    gradient arrives: the fused logits node and the pass-through layers above it) and the layer's own named
    intermediates (`Layer.record()`: Dense adds "Z" and "dZ"); where the backward ran, what the node sent back to
    its inputs "dX" (a list for a merge), before the fan-out sums add it to their other gradients, and for a shared
    layer that call's own parameter gradients "grads", before the sum over its calls.
    """

    loss: float
    grads: list[Array]
    input_grad: Array | list[Array] | None
    output: Array | list[Array]
    logits_at: int | None
    records: list[dict[str, Array]]
    fused_at: tuple[int, ...] = ()

    @property
    def fused(self) -> bool:
        """Whether the loss was computed from logits (Keras's hidden-logits path)."""
        return self.logits_at is not None


class Model(Training):
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
                    out = layer.build(given, self.dtype, rng)
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
            tensors[out] = call_layer(layers[call.layer], args if layers[call.layer].several_inputs else args[0])
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
            tuple(Call(node.layer.name, tuple(t.node.name for t in node.inputs), node.name) for node in self.nodes),
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

    # ----- inputs and targets --------------------------------------------------------------------------------
    def _as_inputs(self, x: Any) -> list[Array]:
        """One array per input (N, *shape), each cast to the model dtype as Keras casts inputs; refuses a wrong
        count or shape, batches of different sizes, an empty batch, non-numbers and NaN or infinity."""
        several = len(self.inputs) > 1
        if several and not (isinstance(x, (list, tuple)) and len(x) == len(self.inputs)):
            got = f"a list of {len(x)}" if isinstance(x, (list, tuple)) else a_or_an(type(x).__name__)
            raise BadInputError(
                f"input: the model has {len(self.inputs)} inputs, give a list of {len(self.inputs)} arrays, got {got}"
            )
        if not several and isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            x = x[0]
        rank = 1 + len(self.inputs[0].shape)
        if (
            not several
            and isinstance(x, (list, tuple))
            and all(isinstance(a, np.ndarray) and a.ndim == rank for a in x)
        ):
            raise BadInputError(
                f"input: the model has 1 input, give one array (N, {', '.join(map(str, self.inputs[0].shape))}), got "
                f"a list of {len(x)} such arrays"
            )
        arrays = list(x) if several else [x]
        out = []
        for t, a in zip(self.inputs, arrays):
            what = f"input {t.node.name!r}" if several else "input"
            a = as_array(what, a)
            if a.ndim != 1 + len(t.shape) or a.shape[1:] != t.shape:
                expected = ", ".join(["N", *map(str, t.shape)])
                raise BadInputError(f"{what}: expected shape ({expected}), got {a.shape}")
            check_numbers(what, a)
            check_fits_dtype(what, a, self.dtype)
            out.append(a.astype(self.dtype, copy=False))
        if len({len(a) for a in out}) > 1:
            sizes = ", ".join(f"{t.node.name!r} {len(a)}" for t, a in zip(self.inputs, out))
            raise BadInputError(
                f"inputs: batches of different sizes {[len(a) for a in out]} (rows per input: {sizes}); give each "
                "input N rows"
            )
        return out

    def _as_input(self, x: Any) -> Array:
        """X (N, *input_shape) of a model of one input, as `_as_inputs`."""
        return self._as_inputs(x)[0]

    def _losses(self, loss: Any) -> list[Loss]:
        """One loss per output: a single loss is used for every output, as Keras compiles it."""
        if isinstance(loss, OutputLosses):
            loss = loss.losses
        if isinstance(loss, (list, tuple)):
            if len(loss) != len(self.outputs):
                raise BadInputError(f"loss: {len(loss)} losses for {len(self.outputs)} outputs; give one per output")
            return [get_loss(item) for item in loss]
        return [get_loss(loss)] * len(self.outputs)

    def _loss_weights(self, loss_weights: Any) -> list[float | None]:
        if loss_weights is None:
            return [None] * len(self.outputs)
        if not isinstance(loss_weights, (list, tuple)) or len(loss_weights) != len(self.outputs):
            raise BadInputError(
                f"loss_weights: give a list of {len(self.outputs)} numbers, one per output, got {loss_weights!r:.60}"
            )
        out = []
        for i, w in enumerate(loss_weights):
            if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w):
                raise BadInputError(f"loss_weights[{i}]: expected a finite number, got {w!r}")
            out.append(float(w))
        return out

    def _as_targets_all(self, y: Any, losses: list[Loss], outputs: list[Array]) -> list[Array]:
        several = len(self.outputs) > 1
        if several and not (isinstance(y, (list, tuple)) and len(y) == len(self.outputs)):
            got = f"a list of {len(y)}" if isinstance(y, (list, tuple)) else a_or_an(type(y).__name__)
            names = ", ".join(repr(t.node.name) for t in self.outputs)
            raise BadInputError(
                f"labels: the model has {len(self.outputs)} outputs ({names}), give a list of {len(self.outputs)} "
                f"label arrays, got {got}"
            )
        ys = list(y) if several else [y]
        out = []
        for t, loss, yi, p in zip(self.outputs, losses, ys, outputs):
            what = f"labels of output {t.node.name!r}" if several else "labels"
            yi = as_array(what, yi)
            check_numbers(what, yi)
            if yi.ndim == 0 or yi.shape[0] != len(p):
                raise BadInputError(
                    f"{what}: {yi.shape[0] if yi.ndim else 'a scalar'} rows for a batch of {len(p)} inputs"
                )
            loss.check_targets(yi, t.shape[-1])
            out.append(yi.astype(self.dtype, copy=False))
        return out

    def _as_targets(self, y: Array, loss: Loss, n: int) -> Array:
        """Labels of a model of one output checked against the loss (shape, one-hot rows, class range, [0, 1])."""
        y = np.asarray(y)
        check_numbers("labels", y)
        if y.ndim == 0 or y.shape[0] != n:
            raise BadInputError(f"labels: {y.shape[0] if y.ndim else 'a scalar'} rows for a batch of {n} inputs")
        loss.check_targets(y, self.outputs[0].shape[-1])
        return y.astype(self.dtype, copy=False)

    def _as_sample_weight(self, sample_weight: Array | None, n: int) -> Array | None:
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight)
        check_numbers("sample_weight", w)
        if w.shape != (n,):
            raise BadInputError(f"sample_weight: expected shape ({n},), one weight per sample, got {w.shape}")
        return w.astype(self.dtype, copy=False)

    # ----- forward ---------------------------------------------------------------------------------------------
    def _run(self, xs: list[Array], training: bool) -> tuple[list[Array], list[dict[str, Array]], list[list[Array]]]:
        """Every node in order: (the outputs, per node {"A": its output}, per node the arrays handed to it, then its
        output). Under `watch` each input is handed as a copy (the caller's array never reaches a layer), each array
        a layer is handed is checked unchanged after the call (a layer that wrote into it is reported, and its other
        consumers and the record of its producer keep what the producer returned), and each output's shape, kind and
        dtype are checked. The caches of a shared layer's calls are kept apart (`_snapshots`)."""
        watch, n = self.watch, len(xs[0])
        call = f"forward(training={training})"
        if watch is not None:
            watch.start()
            xs = [x.copy() for x in xs]
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        records: list[dict[str, Array]] = []
        handed: list[list[Array]] = []
        self._snapshots: dict[int, dict[str, Any]] = {}
        for i, (node, shape) in enumerate(zip(self.nodes, self.node_output_shapes)):
            layer = node.layer
            args = [values[id(t)] for t in node.inputs]
            if watch is not None:
                for a in args:
                    watch.keep(a)
            out = layer.forward(args if node.several else args[0], training=training)
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
        outputs = [values[id(t)] for t in self.outputs]
        if watch is not None:
            for o in outputs:
                watch.keep(o)
        return outputs, records, handed

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

    # ----- backward --------------------------------------------------------------------------------------------
    def backward_pass(
        self,
        x: Any,
        y: Any,
        loss: Any = "categorical_crossentropy",
        sample_weight: Array | None = None,
        input_grad: bool = True,
        loss_weights: Sequence[float] | None = None,
    ) -> BackwardPass:
        """One forward pass in training mode and one backward pass over the whole batch.

        `loss`: one loss for every output, or a list with one per output; `loss_weights`: w_o per output (the loss
        is sum_o w_o L_o). input_grad=False skips dL/dX where only the inputs would need it (a training step)."""
        losses = self._losses(loss)
        if loss_weights is None and isinstance(loss, OutputLosses):
            loss_weights = loss.weights
        weights = self._loss_weights(loss_weights)
        outputs, records, handed = self._run(self._as_inputs(x), True)
        ys = self._as_targets_all(y, losses, outputs)
        sample_weight = self._as_sample_weight(sample_weight, len(outputs[0]))
        penalty = sum(layer.regularization() for layer in self.layers)  # Keras adds model.losses to the loss
        total = 0.0
        grads_at: dict[int, Array] = {}
        fused: dict[int, Array] = {}
        for o, (t, loss_o, y_o, p_o, w) in enumerate(zip(self.outputs, losses, ys, outputs, weights)):
            at = self.logits_node(o, loss_o)
            if at is not None:
                self._restore(at)
                z = self.nodes[at].layer.Z
                value = loss_o.from_logits_value(y_o, z, sample_weight)
                g = loss_o.gradient_from_logits(y_o, z, sample_weight)
                target = fused
                key = at
            else:
                value = loss_o(y_o, p_o, sample_weight)
                g = loss_o.gradient(y_o, p_o, sample_weight)
                target = grads_at
                key = id(t)
            if w is not None:
                value, g = value * w, g * self.dtype.type(w)
            total = total + value
            self._fan_in(target, key, g)
        summed: dict[int, list[Array]] = {}
        done = set()
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            dA, dZ = grads_at.get(id(node.output)), fused.get(i)
            if dA is None and dZ is None:
                continue
            dX = self._node_backward(i, dA, dZ, records[i], input_grad or self._needs_input_grad[i], handed[i])
            done.add(i)
            layer = node.layer
            records[i].update({key: v for key, v in layer.record().items() if v is not None})
            if id(layer) in self.shared:
                grads = [g.copy() for g in layer.grads]
                check_grads(layer, grads)
                records[i]["grads"] = grads
                summed[id(layer)] = self._add_call(summed.get(id(layer)), grads)
            else:
                check_grads(layer)
            if dX is None:
                continue
            records[i]["dX"] = dX
            for t, g in zip(node.inputs, dX if node.several else [dX]):
                self._fan_in(grads_at, id(t), g)
        for i, (node, record) in enumerate(zip(self.nodes, records)):
            if i not in done:
                record.update({key: v for key, v in node.layer.record().items() if v is not None})
        grads = self._gradients(summed)
        if input_grad:
            n = len(outputs[0])
            dxs = [grads_at.get(id(t)) for t in self.inputs]
            dxs = [np.zeros((n, *t.shape), self.dtype) if g is None else g for g, t in zip(dxs, self.inputs)]
            input_grads: Any = dxs[0] if len(dxs) == 1 else dxs
        else:
            input_grads = None
        fused_at = tuple(sorted(fused))
        return BackwardPass(
            float(total + penalty),
            grads,
            input_grads,
            outputs[0] if len(outputs) == 1 else outputs,
            fused_at[0] if fused_at else None,
            records,
            fused_at,
        )

    @staticmethod
    def _fan_in(grads_at: dict[int, Array], key: int, g: Array) -> None:
        """dL/dT += g: a tensor that feeds several nodes receives the sum of their gradients (the multivariate chain
        rule). A new array each time: what a layer returned is never written into."""
        grads_at[key] = g if key not in grads_at else grads_at[key] + g

    @staticmethod
    def _add_call(total: list[Array] | None, grads: list[Array]) -> list[Array]:
        """A shared layer's parameter gradients: the sum over its calls (one set of weights used at each)."""
        return grads if total is None else [a + b for a, b in zip(total, grads)]

    def _gradients(self, summed: dict[int, list[Array]]) -> list[Array]:
        """dL/dparam per layer in get_weights() order (a shared layer's summed over its calls); under `watch` each
        checked to be a real array of the model's dtype."""
        out = []
        for layer in self.layers:
            grads = summed.get(id(layer), None) if id(layer) in self.shared else layer.grads
            if grads is None:
                grads = [np.zeros_like(p) for p in layer.params]
            if self.watch is None:
                out += list(grads)
            else:
                out += [
                    self.watch.result(layer, "backward", f"the gradient of {name}", g, self.dtype)
                    for name, g in zip(layer.param_names(), grads)
                ]
        return out

    def _node_backward(
        self,
        i: int,
        dA: Array | None,
        dZ: Array | None,
        record: dict[str, Array],
        input_grad: bool,
        handed: list[Array],
    ) -> Any:
        """Node i's backward: from dA = dL/d(its output), or on the fused path from the logits' dL/dZ (plus the
        activation's vector-Jacobian product of dA where its output also feeds other nodes); skips dL/dX where
        nothing needs it and the layer allows it; checks dL/dX's shape (one per input for a merge). Under `watch`
        also that dA, the inputs and the output are unchanged, and dL/dX's kind and dtype."""
        node = self.nodes[i]
        layer, watch, n = node.layer, self.watch, len(handed[-1])
        self._restore(i)
        if dA is not None:
            record["dA"] = dA
        if dZ is not None:
            if dA is not None:
                dZ = dZ + layer.activation.backward(layer.Z, layer.A, dA)
            argument, upstream = "dZ", dZ
            if watch is not None:
                watch.keep(dZ)
            dX = layer.backward_from_z(dZ, input_grad)
        else:
            argument, upstream = "dy", dA
            if watch is not None:
                watch.keep(dA)
            if not input_grad and layer.input_grad_optional:
                dX = layer.backward(dA, input_grad=False)
            else:
                dX = layer.backward(dA)
        if dX is not None or input_grad:
            self._check_input_grads(i, dX, n)
        if watch is None:
            return dX
        watch.calls += 1
        watch.unchanged(layer, "backward", argument, upstream)
        for k, a in enumerate(handed[:-1]):
            watch.unchanged(layer, "backward", f"x[{k}]" if node.several else "x", a)
        watch.unchanged(layer, "backward", "y", handed[-1])
        if node.several:
            return [watch.result(layer, "backward", f"dL/dx[{k}]", g, self.dtype) for k, g in enumerate(dX)]
        return watch.result(layer, "backward", "dL/dX", dX, self.dtype)

    def _check_input_grads(self, i: int, dX: Any, n: int) -> None:
        node = self.nodes[i]
        if not node.several:
            check_shape(node.layer, "backward() returned dL/dX", dX, (n, *self.node_input_shapes[i]))
            return
        if not isinstance(dX, (list, tuple)) or len(dX) != len(node.inputs):
            got = f"a list of {len(dX)}" if isinstance(dX, (list, tuple)) else a_or_an(type(dX).__name__)
            raise BadInputError(
                f"layer {node.layer.name!r}: backward() must return one dL/dx per input (a list of {len(node.inputs)} "
                f"arrays), returned {got}"
            )
        for k, (g, shape) in enumerate(zip(dX, self.node_input_shapes[i])):
            check_shape(node.layer, f"backward() returned dL/dx[{k}]", g, (n, *shape))

    def loss_and_gradients(
        self, x: Any, y: Any, loss: Any = "categorical_crossentropy", sample_weight: Array | None = None
    ) -> tuple[float, list[Array]]:
        """(L, [dL/dW1, dL/db1, ...]): the loss reduced as Keras does by default and its gradients, aligned one to
        one with `get_weights()`."""
        result = self.backward_pass(x, y, loss, sample_weight, input_grad=False, loss_weights=self.loss_weights)
        return result.loss, result.grads

    loss_weights: list[float] | None = None


def _tensors(value: Any, what: str) -> list[Tensor]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
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
