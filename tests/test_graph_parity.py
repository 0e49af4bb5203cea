"""Random graphs against Keras's functional models (hypothesis): 1-3 inputs (vectors, sequences, images), Dense
layers of every differentiable activation, every merge kind (element-wise merges of 2-3 tensors, broadcasting an
axis of size 1, a tensor merged with itself; Concatenate along a random feature axis; Dot over random valid axes of
vectors and sequences), fan-outs, shared layers called 2-3 times (a shared merge too), 1-2 outputs with random losses
and loss weights. Both dtypes: PASS, and in float64 every norm-relative row within F64_TOL."""

from __future__ import annotations

import os

import keras
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from compare.harness import run_comparison
from compare.tolerances import F64_TOL
from from_scratch import BadInputError
from from_scratch.arch import LayerSpec
from from_scratch.graph_arch import MERGE_KINDS, Call, GraphArchitecture, spec_output_shape

#: CI runs a fixed (derandomized) handful of graphs per dtype; BACKPROP_PARITY_FUZZ=N runs N fresh random ones.
FUZZ = int(os.environ.get("BACKPROP_PARITY_FUZZ", "0"))
PROPERTY = settings(
    max_examples=FUZZ or 5,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

#: KERAS_BIAS_ADD: Keras's TensorFlow `ops.add` takes a second operand that squeezes to one axis of length n (batch
#: axis included) as a bias (tf.nn.bias_add) when n is the first operand's axis 1 or last axis, and adds it along that
#: axis (the last if both): an (N, 1) operand added to (N, D) with N == D is added along the features, x[i, j] + d[j],
#: instead of broadcast, x[i, j] + d[i]; at batch 1 a (1, T, 1) operand added to (1, T, T) likewise (keras 3.15,
#: backend/tensorflow/numpy.py `add`; Add and Average fold with it, Subtract, Multiply, Maximum and Minimum do not).
#: Its own compute_output_shape and every other backend broadcast, so this is a Keras defect, not a formula: the
#: generator draws a batch size at which no Add or Average step is misread (`bias_add_misreads`), and
#: test_keras_add_takes_a_column_for_a_bias_when_the_batch_matches pins the defect.


def bias_add_misreads(first: tuple[int, ...], second: tuple[int, ...]) -> bool:
    """Whether Keras's TensorFlow add(first, second) (shapes with the batch axis) takes `second` for a bias along
    another axis than broadcasting would add it along (KERAS_BIAS_ADD)."""
    wide = [i for i, d in enumerate(second) if d > 1]
    if len(wide) != 1 or len(first) < 2 or second[wide[0]] not in (first[1], first[-1]):
        return False
    along = len(first) - 1 if first[-1] == second[wide[0]] else 1
    return wide[0] + len(first) - len(second) != along


#: Every activation with a derivative almost everywhere ("step" has none worth comparing: zero everywhere).
ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid", "softmax", "elu", "gelu", "gelu_tanh", "leaky_relu", "softplus"]
ELEMENTWISE = ["add", "subtract", "multiply", "average", "maximum", "minimum"]
#: A loss and the output activation it takes (None: any activation).
LOSSES = {
    "categorical_crossentropy": "softmax",
    "sparse_categorical_crossentropy": "softmax",
    "binary_crossentropy": "sigmoid",
    "mean_squared_error": None,
    "mean_absolute_error": None,
    "huber": None,
}


class GraphDraw:
    """A graph grown one call at a time from hypothesis draws; every tensor's shape known as it is made."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.inputs: list[tuple[str, tuple[int, ...]]] = []
        self.layers: list[tuple[str, LayerSpec]] = []
        self.specs: dict[str, LayerSpec] = {}
        self.calls: list[Call] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.consumed: set[str] = set()
        self.count = 0
        self.folds: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # Add and Average steps (KERAS_BIAS_ADD)

    # ----- building blocks ------------------------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def call(self, spec: LayerSpec | None, tensors: list[str], layer: str | None = None) -> str:
        """Call a new layer of `spec` (or the existing `layer`: a shared one) on `tensors`; its output's name."""
        if layer is None:
            layer = self.fresh(spec.kind[:4])
            self.layers.append((layer, spec))
            self.specs[layer] = spec
        spec = self.specs[layer]
        k = sum(c.layer == layer for c in self.calls) + 1
        out = layer if k == 1 else f"{layer}#{k}"
        given = [self.shapes[t] for t in tensors]
        if spec.kind in ("add", "average"):
            running = given[0]
            for shape in given[1:]:
                self.folds.append((running, shape))
                running = tuple(max(a, b) for a, b in zip(running, shape))
        self.shapes[out] = spec_output_shape(spec, given if spec.kind in MERGE_KINDS else given[0], f"layer {out!r}")
        self.calls.append(Call(layer, tuple(tensors)))
        self.consumed.update(tensors)
        return out

    def pick(self, tensors: list[str]) -> str:
        return self.draw(st.sampled_from(sorted(tensors)))

    def dense(self, tensor: str, units: int | None = None) -> str:
        units = units or self.draw(st.integers(1, 6))
        return self.call(LayerSpec("dense", units, self.draw(st.sampled_from(ACTIVATIONS))), [tensor])

    def conv(self, tensor: str, filters: int | None = None, kernel: int | None = None) -> str:
        options = {
            "kernel_size": (kernel or self.draw(st.integers(1, 3)),) * 2,
            "padding": "same",
            "strides": (1, 1),
            "dilation_rate": (1, 1),
        }
        act = self.draw(st.sampled_from(["linear", "relu", "tanh"]))
        return self.call(LayerSpec("conv2d", filters or self.draw(st.integers(1, 3)), act, options), [tensor])

    def with_shape(self, shape: tuple[int, ...], exclude: str | None = None) -> str:
        """A tensor of exactly `shape`: an existing one (possibly the one being merged: merged with itself) or a
        projection (Dense, or a 1x1 convolution for images) of a tensor agreeing on every axis but the last."""
        same = [t for t, s in self.shapes.items() if s == shape]
        if same and self.draw(st.booleans()):
            return self.pick(same)
        near = [t for t, s in self.shapes.items() if len(s) == len(shape) and s[:-1] == shape[:-1]]
        source = self.pick(near) if near else self.vector(exclude)  # only vectors lack a tensor of their prefix
        if len(shape) == 3:
            return self.conv(source, filters=shape[-1], kernel=1)
        return self.dense(source, units=shape[-1])

    def vector(self, tensor: str) -> str:
        """The tensor as a vector (D,): itself, flattened, pooled, or read by a recurrent layer."""
        shape = self.shapes[tensor]
        if len(shape) == 1:
            return tensor
        if len(shape) == 3 and self.draw(st.booleans()):
            return self.call(LayerSpec("global_average_pooling2d"), [tensor])
        if len(shape) == 2 and self.draw(st.booleans()):
            kind = self.draw(st.sampled_from(["simple_rnn", "lstm", "gru"]))
            act = "tanh" if kind == "simple_rnn" else "linear"
            return self.call(LayerSpec(kind, self.draw(st.integers(1, 4)), act, {"return_sequences": False}), [tensor])
        return self.call(LayerSpec("flatten"), [tensor])

    # ----- the random steps -----------------------------------------------------------------------------------------
    def add_inputs(self) -> None:
        for i in range(self.draw(st.integers(1, 3))):
            kind = self.draw(st.sampled_from(["vector", "vector", "sequence", "image"]))
            if kind == "vector":
                shape = (self.draw(st.integers(1, 6)),)
            elif kind == "sequence":
                shape = (self.draw(st.integers(1, 4)), self.draw(st.integers(1, 4)))
            else:
                shape = (self.draw(st.integers(1, 4)), self.draw(st.integers(1, 4)), self.draw(st.integers(1, 2)))
            name = f"in{i}"
            self.inputs.append((name, shape))
            self.shapes[name] = shape
            self.first_layer(name)

    def first_layer(self, name: str) -> None:
        """Every input is read by at least one layer (an input that reaches no output is refused)."""
        rank = len(self.shapes[name])
        if rank == 3:
            self.conv(name)
        elif rank == 2 and self.draw(st.booleans()):
            kind = self.draw(st.sampled_from(["simple_rnn", "lstm", "gru"]))
            act = "tanh" if kind == "simple_rnn" else "linear"
            self.call(LayerSpec(kind, self.draw(st.integers(1, 4)), act, {"return_sequences": True}), [name])
        else:
            self.dense(name)

    def step(self) -> None:
        what = self.draw(
            st.sampled_from(["dense", "elementwise", "elementwise", "concatenate", "dot", "shared", "shared_merge"])
        )
        getattr(self, "step_" + what)()

    def step_dense(self) -> None:
        self.dense(
            self.pick([t for t, s in self.shapes.items() if len(s) < 3] or [self.vector(self.pick(self.shapes))])
        )

    def step_elementwise(self, kind: str | None = None, layer: str | None = None) -> str:
        kind = kind or self.draw(st.sampled_from(ELEMENTWISE))
        base = self.pick(self.shapes)
        shape = self.shapes[base]
        n = 2 if kind == "subtract" else self.draw(st.integers(2, 3))
        others = []
        for _ in range(n - 1):
            if shape[-1] > 1 and self.draw(st.integers(0, 4)) == 0:  # an axis of size 1, broadcast
                others.append(self.with_shape((*shape[:-1], 1), exclude=base))
            else:
                others.append(self.with_shape(shape, exclude=base))
        tensors = [base, *others]
        order = self.draw(st.permutations(range(n)))
        return self.call(LayerSpec(kind), [tensors[i] for i in order], layer=layer)

    def step_concatenate(self) -> None:
        base = self.pick(self.shapes)
        shape = self.shapes[base]
        rank = len(shape)
        axis = self.draw(st.integers(1, rank))
        others = []
        for _ in range(self.draw(st.integers(1, 2))):
            if axis == rank:
                others.append(self.with_shape((*shape[:-1], self.draw(st.integers(1, 4))), exclude=base))
            else:
                near = [
                    t
                    for t, s in self.shapes.items()
                    if len(s) == rank and s[: axis - 1] + s[axis:] == shape[: axis - 1] + shape[axis:]
                ]
                others.append(self.pick(near) if self.draw(st.booleans()) else self.with_shape(shape, exclude=base))
        tensors = [base, *others]
        written = axis if self.draw(st.booleans()) else axis - rank - 1  # 1..rank or -rank-1+axis .. -1
        self.call(
            LayerSpec("concatenate", options={"axis": written}),
            [tensors[i] for i in self.draw(st.permutations(range(len(tensors))))],
        )

    def step_dot(self) -> None:
        candidates = [t for t, s in self.shapes.items() if len(s) <= 2]
        x = self.pick(candidates) if candidates else self.vector(self.pick(self.shapes))
        xs = self.shapes[x]
        a0 = self.draw(st.integers(1, len(xs)))
        size = xs[a0 - 1]
        y_rank = self.draw(st.integers(1, 2))
        if y_rank == 1:
            y, a1 = self.with_shape((size,), exclude=x), 1
        else:
            a1 = self.draw(st.integers(1, 2))
            seqs = [t for t, s in self.shapes.items() if len(s) == 2]
            if a1 == 2:
                if not seqs:
                    y_rank, a1 = 1, 1
                    y = self.with_shape((size,), exclude=x)
                else:
                    source = self.pick(seqs)
                    y = self.dense(source, units=size) if self.shapes[source][1] != size else source
            else:
                timed = [t for t, s in self.shapes.items() if len(s) == 2 and s[0] == size]
                if not timed:
                    y_rank, a1 = 1, 1
                    y = self.with_shape((size,), exclude=x)
                else:
                    y = self.pick(timed)
        axes = [
            a0 - len(xs) - 1 if self.draw(st.booleans()) else a0,
            a1 - y_rank - 1 if self.draw(st.booleans()) else a1,
        ]
        pair = [x, y]
        if self.draw(st.booleans()):  # the operands either way round
            pair, axes = pair[::-1], axes[::-1]
        written = axes[0] if axes[0] == axes[1] and self.draw(st.booleans()) else tuple(axes)
        self.call(LayerSpec("dot", options={"axes": written}), pair)

    def step_shared(self) -> None:
        base = self.pick([t for t, s in self.shapes.items() if len(s) < 3] or [self.vector(self.pick(self.shapes))])
        shape = self.shapes[base]
        spec = LayerSpec("dense", self.draw(st.integers(1, 5)), self.draw(st.sampled_from(ACTIVATIONS)))
        layer = self.fresh("shared")
        self.layers.append((layer, spec))
        self.specs[layer] = spec
        self.call(None, [base], layer=layer)
        for _ in range(self.draw(st.integers(1, 2))):
            self.call(None, [self.with_shape(shape, exclude=base)], layer=layer)

    def step_shared_merge(self) -> None:
        out = self.step_elementwise()
        layer = out
        shapes = [self.shapes[t] for t in self.calls[-1].inputs]
        self.call(None, [self.with_shape(s, exclude=out) for s in shapes], layer=layer)

    # ----- the outputs ----------------------------------------------------------------------------------------------
    def finish(self) -> tuple[GraphArchitecture, list[str], list[float] | None]:
        """Every tensor no layer reads goes to an output (a model has no dead branches: Keras keeps only the layers
        on a path to an output); 1-2 outputs, each a Dense head with its loss's activation or, for a regression loss,
        the tensor itself."""
        dangling = [t for t in self.shapes if t not in self.consumed]
        vectors = [self.vector(t) for t in dangling]
        n_out = self.draw(st.integers(1, 2))
        groups: list[list[str]] = [[] for _ in range(n_out)]
        for i, v in enumerate(vectors):
            groups[i % n_out if i < n_out else self.draw(st.integers(0, n_out - 1))].append(v)
        for g in groups:
            if not g:
                g.append(self.pick(vectors))
        outputs, losses = [], []
        for g in groups:
            joined = g[0] if len(g) == 1 else self.call(LayerSpec("concatenate", options={"axis": -1}), g)
            loss = self.draw(st.sampled_from(sorted(LOSSES)))
            act = LOSSES[loss]
            if act is None and self.draw(st.booleans()) and joined not in outputs:
                outputs.append(joined)
            else:
                units = self.draw(st.integers(2 if act == "softmax" else 1, 4))
                outputs.append(
                    self.call(LayerSpec("dense", units, act or self.draw(st.sampled_from(ACTIVATIONS))), [joined])
                )
            losses.append(loss)
        weights = (
            None
            if self.draw(st.booleans())
            else [self.draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0])) for _ in outputs]
        )
        graph = GraphArchitecture(tuple(self.inputs), tuple(self.layers), tuple(self.calls), tuple(outputs))
        safe = [n for n in range(1, 7) if not any(bias_add_misreads((n, *a), (n, *b)) for a, b in self.folds)]
        assume(safe)
        batch = self.draw(st.sampled_from(safe))
        return graph, losses, weights, batch


@st.composite
def graphs(draw):
    g = GraphDraw(draw)
    try:
        g.add_inputs()
        for _ in range(draw(st.integers(2, 6))):
            g.step()
        return g.finish()
    except BadInputError:
        assume(False)


def describe(graph: GraphArchitecture, losses: list[str], weights: list[float] | None, batch: int = 0) -> str:
    specs = dict(graph.layers)

    def token(spec: LayerSpec) -> str:
        return (
            spec.kind
            + (f"{spec.units}:{spec.activation}" if spec.units else "")
            + (f"{spec.options}" if spec.options else "")
        )

    calls = "; ".join(
        f"{out} = {token(specs[c.layer])}({', '.join(c.inputs)})" for c, out in zip(graph.calls, graph.output_names())
    )
    head = f"inputs {list(graph.inputs)}; {calls}; outputs {list(graph.outputs)}"
    return f"{head}; losses {losses} x {weights}; batch {batch}"


def compare_graph(case, dtype: str, seed: int):
    graph, losses, weights, batch = case
    report = run_comparison(graph, batch=batch, dtype=dtype, seed=seed, loss=losses, loss_weights=weights)
    where = describe(graph, losses, weights, batch)
    assert report.passed, f"{where}\n{report.verdict()}\n" + "\n".join(map(str, report.failures))
    if dtype == "float64":
        rows = [row for row in report.rows if row.measure == "norm-rel"]
        assert rows and all(row.error <= F64_TOL for row in rows), where
    return report


@PROPERTY
@given(case=graphs(), seed=st.integers(0, 2**16))
def test_random_graphs_agree_with_keras_in_float64(case, seed):
    compare_graph(case, "float64", seed)


@PROPERTY
@given(case=graphs(), seed=st.integers(0, 2**16))
def test_random_graphs_agree_with_keras_in_float32(case, seed):
    compare_graph(case, "float32", seed)


def test_keras_add_takes_a_column_for_a_bias_when_the_batch_matches():
    """KERAS_BIAS_ADD: the defect the generator steps around, pinned so that the step-around goes when Keras fixes it.
    Subtract (no bias shortcut) broadcasts the column as NumPy does."""
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    d = np.array([[10.0], [20.0]])
    assert np.array_equal(np.asarray(keras.layers.Add()([d, x])), x + d)  # first operand broadcast: right
    assert np.array_equal(np.asarray(keras.layers.Add()([x, d])), x + d.T)  # second: taken as a bias along features
    assert np.array_equal(np.asarray(keras.layers.Subtract()([x, d])), x - d)
    x3 = np.array([[1.0, 2.0, 4.0], [3.0, -1.0, 5.0]])
    assert np.array_equal(np.asarray(keras.layers.Add()([x3, d])), x3 + d)  # a batch of 2 against 3 features: right
    s = np.arange(4.0).reshape(1, 2, 2)
    c = np.array([[[10.0], [20.0]]])  # (1, T, 1) at batch 1: a bias along the features again
    assert np.array_equal(np.asarray(keras.layers.Add()([s, c])), s + np.swapaxes(c, 1, 2))
    assert bias_add_misreads((2, 2), (2, 1)) and bias_add_misreads((1, 2, 2), (1, 2, 1))
    assert not bias_add_misreads((2, 3), (2, 1)) and not bias_add_misreads((1, 2, 3), (1, 2, 1))
