"""Merge layers against TensorFlow itself: Maximum and Minimum route exact ties as TensorFlow does (2 and 3 inputs,
ties between any pair and among all three, a tensor merged with itself), Multiply and Dot against tf.GradientTape on
plain TensorFlow operations (no Keras layer between), and every merge kind in a small model through compare_models.
Then the numerical witness on graphs: it judges coordinates of every input, and a merge backward off by one fails it
where the wrong gradient is Keras's, and fails the gradient rows on either side."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import compare.harness as harness
import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from compare.harness import build_pair, compare_models, run_comparison
from compare.tolerances import F64_TOL, norm_rel_error
from from_scratch.arch import LayerSpec
from from_scratch.graph_arch import Call, GraphArchitecture
from from_scratch.merge import MERGE_LAYERS, Concatenate, Dot, Multiply
from keras_impl.model import KERAS_LAYERS

RNG = np.random.default_rng(21)


def tape(op, xs: list[np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """TensorFlow's output of op(xs) and the vector-Jacobian products <dy, d op / d x_i> from its tape."""
    ts = [tf.constant(x) for x in xs]
    with tf.GradientTape() as g:
        for t in ts:
            g.watch(t)
        y = op(ts)
    return y.numpy(), [d.numpy() for d in g.gradient(y, ts, output_gradients=tf.constant(dy))]


def scratch(layer, xs: list[np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    layer.build([x.shape[1:] for x in xs], np.float64, np.random.default_rng(0))
    y = layer.forward([x.copy() for x in xs])
    return y, layer.backward(dy.copy())


def tied(n: int, ties: list[tuple[int, ...]], shape=(4, 6)) -> list[np.ndarray]:
    """n arrays of `shape` drawn from a few values (so ties happen everywhere) and, in each group of `ties`, equal."""
    xs = [RNG.integers(-2, 3, size=shape).astype(np.float64) for _ in range(n)]
    for group in ties:
        for i in group[1:]:
            xs[i] = xs[group[0]].copy()
    return xs


# ----- Maximum / Minimum: TensorFlow's tie rule ---------------------------------------------------------------------
TIES = [
    pytest.param(2, [], id="2-inputs-random-ties"),
    pytest.param(2, [(0, 1)], id="2-inputs-all-tied"),
    pytest.param(3, [], id="3-inputs-random-ties"),
    pytest.param(3, [(0, 1)], id="3-inputs-first-two-tied"),
    pytest.param(3, [(1, 2)], id="3-inputs-last-two-tied"),
    pytest.param(3, [(0, 2)], id="3-inputs-first-and-last-tied"),
    pytest.param(3, [(0, 1, 2)], id="3-inputs-all-tied"),
]


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
@pytest.mark.parametrize("n,ties", TIES)
def test_ties_are_routed_as_tensorflow_routes_them(kind, n, ties):
    """Against keras.layers.Maximum/Minimum under tf.GradientTape: every tie goes to one input (the earliest), so
    the input gradients add up to dy exactly and agree with TensorFlow's bit for bit (a selection, no arithmetic)."""
    xs = tied(n, ties)
    dy = RNG.standard_normal(xs[0].shape)
    keras_layer = KERAS_LAYERS[kind](LayerSpec(kind), "float64")
    y_tf, dx_tf = tape(lambda ts: keras_layer(ts), xs, dy)
    y, dx = scratch(MERGE_LAYERS[kind](), xs, dy)
    assert np.array_equal(y, y_tf)
    for ours, theirs in zip(dx, dx_tf):
        assert np.array_equal(ours, theirs)
    assert np.array_equal(sum(dx), dy)  # never to two inputs, never to none
    for group in ties:  # an input equal to an earlier one everywhere never wins a tie
        assert all(not np.any(dx[i]) for i in group[1:])


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
def test_a_tie_sent_to_both_inputs_differs_from_tensorflow(kind):
    """The rule has teeth: a backward that sends a tie to both inputs (the issue's planted bug) disagrees with TF."""

    class BothGetTies(MERGE_LAYERS[kind]):
        def backward(self, dy):
            chosen = [x == self.running[-1] for x in self.X]
            return [np.where(c, dy, 0.0) for c in chosen]

    xs = tied(2, [(0, 1)])
    dy = RNG.standard_normal(xs[0].shape)
    _, dx_tf = tape(lambda ts: KERAS_LAYERS[kind](LayerSpec(kind), "float64")(ts), xs, dy)
    _, dx = scratch(BothGetTies(), xs, dy)
    assert not np.array_equal(dx[1], dx_tf[1])


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
@pytest.mark.parametrize("copies", [2, 3])
def test_a_tensor_merged_with_itself_gets_all_of_dy(kind, copies):
    """Maximum([h, h]) and Maximum([h, h, h]) in a model: every entry a tie, and the fan-in sum gives h all of dy,
    as Keras does; checked by compare_models in both dtypes (rows for the Dense below and the input)."""
    graph = GraphArchitecture(
        (("x", (5,)),),
        (("h", LayerSpec("dense", 4, "tanh")), ("m", LayerSpec(kind)), ("out", LayerSpec("dense", 3, "softmax"))),
        (Call("h", ("x",)), Call("m", ("h",) * copies), Call("out", ("m",))),
        ("out",),
    )
    for dtype in ("float64", "float32"):
        report = run_comparison(graph, batch=6, dtype=dtype, seed=2)
        assert report.passed, report.verdict()


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
def test_ties_from_relu_zeros_in_a_model_agree_with_keras(kind):
    """Two ReLU branches that are both 0 (a tie at the kink) on many entries, and inputs fed straight in with exact
    ties: the input gradients of both inputs agree with Keras's."""
    graph = GraphArchitecture(
        (("a", (4,)), ("b", (4,))),
        (
            ("ra", LayerSpec("dense", 4, "relu")),
            ("rb", LayerSpec("dense", 4, "relu")),
            ("m", LayerSpec(kind)),
            ("m2", LayerSpec(kind)),
            ("cat", LayerSpec("concatenate", options={"axis": -1})),
            ("out", LayerSpec("dense", 3, "softmax")),
        ),
        (
            Call("ra", ("a",)),
            Call("rb", ("b",)),
            Call("m", ("ra", "rb")),
            Call("m2", ("a", "b", "a")),
            Call("cat", ("m", "m2")),
            Call("out", ("cat",)),
        ),
        ("out",),
    )
    a = RNG.integers(-1, 2, size=(8, 4)).astype(np.float64)
    b = a.copy()
    b[::2] = RNG.integers(-1, 2, size=(4, 4))
    y = np.eye(3)[RNG.integers(0, 3, size=8)]
    for dtype in ("float64", "float32"):
        model, keras_model = build_pair(graph, dtype, seed=4)
        report = compare_models(model, keras_model, [a, b], y, gradcheck_samples=0)
        assert report.passed, report.verdict()
        assert {"grad input a", "grad input b"} <= {row.name for row in report.rows}


# ----- Multiply and Dot against the tape on plain TensorFlow operations -----------------------------------------------
def product(ts):
    out = ts[0]
    for t in ts[1:]:
        out = out * t
    return out


MULTIPLY = [
    pytest.param([(4, 5), (4, 5)], id="2"),
    pytest.param([(4, 5), (4, 5), (4, 5)], id="3"),
    pytest.param([(4, 5), (4, 1)], id="broadcast-column"),
    pytest.param([(4, 3, 2), (4, 1, 2), (4, 3, 1)], id="sequences-broadcast"),
]


@pytest.mark.parametrize("shapes", MULTIPLY)
def test_multiply_agrees_with_the_tape(shapes):
    """Y = X_1 * ... * X_n and its vector-Jacobian products, against tf.multiply under tf.GradientTape."""
    xs = [RNG.standard_normal(s) for s in shapes]
    out_shape = np.broadcast_shapes(*shapes)
    dy = RNG.standard_normal(out_shape)
    y_tf, dx_tf = tape(product, xs, dy)
    y, dx = scratch(Multiply(), xs, dy)
    assert norm_rel_error(y, y_tf) <= F64_TOL
    for ours, theirs in zip(dx, dx_tf):
        assert ours.shape == theirs.shape and norm_rel_error(ours, theirs) <= F64_TOL


#: (shapes with the batch axis, Keras's axes, the contraction written out for tf.einsum, and a reshape of its
#: result to Keras's output: two vectors give (N, 1)).
DOT = [
    pytest.param([(4, 5), (4, 5)], 1, "nd,nd->n", (4, 1), id="vectors"),
    pytest.param([(4, 5), (4, 5)], -1, "nd,nd->n", (4, 1), id="vectors-negative-axis"),
    pytest.param([(4, 3, 5), (4, 2, 5)], 2, "ntd,nsd->nts", None, id="sequences-features"),
    pytest.param([(4, 3, 5), (4, 3, 2)], 1, "ntd,nte->nde", None, id="sequences-time"),
    pytest.param([(4, 3, 5), (4, 2, 3)], (1, 2), "ntd,nst->nds", None, id="sequences-time-against-features"),
    pytest.param([(4, 3, 5), (4, 5, 2)], (-1, -2), "ntd,nde->nte", None, id="sequences-negative-axes"),
    pytest.param([(4, 5), (4, 3, 5)], (1, 2), "nd,ntd->nt", None, id="vector-with-sequence"),
    pytest.param([(4, 3, 5), (4, 3)], (1, 1), "ntd,nt->nd", None, id="sequence-with-vector"),
]


@pytest.mark.parametrize("shapes,axes,einsum,reshape", DOT)
def test_dot_agrees_with_the_tape_and_with_keras(shapes, axes, einsum, reshape):
    """The batch-wise contraction and its vector-Jacobian products, against tf.einsum (the contraction written out,
    not Keras's batch_dot) under tf.GradientTape; the forward also against keras.layers.Dot."""
    xs = [RNG.standard_normal(s) for s in shapes]

    def contraction(ts):
        y = tf.einsum(einsum, *ts)
        return tf.reshape(y, reshape) if reshape else y

    y_tf, _ = tape(contraction, xs, np.zeros(reshape or tf.einsum(einsum, *xs).shape))
    dy = RNG.standard_normal(y_tf.shape)
    y_tf, dx_tf = tape(contraction, xs, dy)
    y, dx = scratch(Dot(axes), xs, dy)
    assert y.shape == y_tf.shape and norm_rel_error(y, y_tf) <= F64_TOL
    for ours, theirs in zip(dx, dx_tf):
        assert ours.shape == theirs.shape and norm_rel_error(ours, theirs) <= F64_TOL
    y_keras = KERAS_LAYERS["dot"](LayerSpec("dot", options={"axes": axes}), "float64")([tf.constant(x) for x in xs])
    assert norm_rel_error(y, np.asarray(y_keras)) <= F64_TOL


def test_a_dot_backward_missing_a_transpose_differs_from_the_tape():
    """The Dot check has teeth: dY = dR^T X (instead of X^T dR) on square sequences is caught."""

    class Untransposed(Dot):
        def backward(self, dy):
            dx, dother = super().backward(dy)
            return [dx, np.swapaxes(dother, 1, 2)]

    xs = [RNG.standard_normal((4, 3, 3)), RNG.standard_normal((4, 3, 3))]
    dy = RNG.standard_normal((4, 3, 3))
    _, dx_tf = tape(lambda ts: tf.einsum("ntd,nsd->nts", *ts), xs, dy)
    _, dx = scratch(Untransposed(2), xs, dy)
    assert norm_rel_error(dx[1], dx_tf[1]) > 1e-3


def test_a_multiply_backward_missing_the_other_input_differs_from_the_tape():
    """The issue's planted bug, dX_i = dY (the other factor forgotten), against the tape."""

    class Forgetful(Multiply):
        def backward(self, dy):
            return [dy.copy() for _ in self.X]

    xs = [RNG.standard_normal((4, 5)), RNG.standard_normal((4, 5))]
    dy = RNG.standard_normal((4, 5))
    _, dx_tf = tape(product, xs, dy)
    _, dx = scratch(Forgetful(), xs, dy)
    assert all(norm_rel_error(a, b) > 1e-3 for a, b in zip(dx, dx_tf))


# ----- every merge kind in a small model ------------------------------------------------------------------------------
def merge_model(kind: str, options: dict | None = None, n: int = 2) -> GraphArchitecture:
    """Inputs a (5,) and b (5,) (and c), each through a Dense, merged by `kind`, then a softmax Dense."""
    names = "abc"[:n]
    layers = [(f"d{k}", LayerSpec("dense", 4, "tanh")) for k in names]
    layers += [("m", LayerSpec(kind, options=options or {})), ("out", LayerSpec("dense", 3, "softmax"))]
    calls = [Call(f"d{k}", (k,)) for k in names]
    calls += [Call("m", tuple(f"d{k}" for k in names)), Call("out", ("m",))]
    return GraphArchitecture(tuple((k, (5,)) for k in names), tuple(layers), tuple(calls), ("out",))


MODELS = [
    *[pytest.param(kind, None, 2, id=f"{kind}-2") for kind in ("add", "subtract", "multiply", "average")],
    *[pytest.param(kind, None, 3, id=f"{kind}-3") for kind in ("add", "multiply", "average", "maximum", "minimum")],
    pytest.param("maximum", None, 2, id="maximum-2"),
    pytest.param("minimum", None, 2, id="minimum-2"),
    pytest.param("concatenate", {"axis": -1}, 3, id="concatenate-3"),
    pytest.param("concatenate", {"axis": 1}, 2, id="concatenate-axis-1"),
    pytest.param("dot", {"axes": 1}, 2, id="dot"),
]


def test_every_merge_kind_has_a_model_here():
    assert {p.values[0] for p in MODELS} == set(MERGE_LAYERS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind,options,n", MODELS)
def test_every_merge_kind_in_a_model_agrees_with_keras(kind, options, n, dtype):
    """Rows for every input and every Dense, the numerical witness over every input, and per-node steps."""
    report = run_comparison(merge_model(kind, options, n), batch=5, dtype=dtype, seed=3, gradcheck_samples=4)
    assert report.passed, report.verdict() + "\n" + "\n".join(map(str, report.failures))
    assert {f"grad input {k}" for k in "abc"[:n]} <= {row.name for row in report.rows}
    if dtype == "float64":
        assert all(row.error <= F64_TOL for row in report.rows if row.measure == "norm-rel")
    merge_steps = [step for step in report.trace if step.layer_name == "m"]
    assert {step.quantity for step in merge_steps} == {"A", "dL/dA"} and all(s.passed for s in merge_steps)


def off_by_a_little(kind: str):
    """The merge of `kind` with one entry of its last input's dL/dx off by 1e-6 of dL/dY's largest entry."""

    class Wrong(MERGE_LAYERS[kind]):
        def backward(self, dy):
            dx = [d.copy() for d in super().backward(dy)]
            dx[-1].flat[0] += 1e-6 * np.abs(dy).max()
            return dx

    return Wrong


@pytest.mark.parametrize("kind", sorted(MERGE_LAYERS))
def test_a_wrong_merge_backward_fails_exactly_the_rows_below_it(kind):
    """Per merge kind: the model passes with the right layer, and with one entry of dL/dx_b off by 1e-6 the rows of
    the branch below input b fail (its Dense, input b), the other branch's rows and the witness (which reads Keras's
    gradient) pass, and the diagnosis names the first node on b's branch."""
    options = {"concatenate": {"axis": -1}, "dot": {"axes": 1}}.get(kind)
    graph = merge_model(kind, options, 2)
    x = [RNG.standard_normal((5, 5)), RNG.standard_normal((5, 5))]
    y = np.eye(3)[RNG.integers(0, 3, size=5)]
    model, keras_model = build_pair(graph, "float64", seed=3)
    assert compare_models(model, keras_model, x, y, gradcheck_samples=3).passed
    model, keras_model = build_pair(graph, "float64", seed=3)
    next(node.layer for node in model.nodes if node.name == "m").__class__ = off_by_a_little(kind)
    report = compare_models(model, keras_model, x, y, gradcheck_samples=3)
    failed = {row.name for row in report.failures}
    assert failed == {"grad db/kernel", "grad db/bias", "grad input b"}, failed
    assert report.diagnosis.first.layer_name == "db"


# ----- the numerical witness on graphs -------------------------------------------------------------------------------
THREE_INPUTS = GraphArchitecture(
    (("a", (3,)), ("b", (4,)), ("c", (2, 3))),
    (
        ("da", LayerSpec("dense", 3, "tanh")),
        ("fc", LayerSpec("flatten")),
        ("cat", LayerSpec("concatenate", options={"axis": -1})),
        ("out", LayerSpec("dense", 3, "softmax")),
    ),
    (Call("da", ("a",)), Call("fc", ("c",)), Call("cat", ("da", "b", "fc")), Call("out", ("cat",))),
    ("out",),
)


def witnessed_points(monkeypatch, graph: GraphArchitecture, dtype: str) -> tuple[list, harness.Report]:
    """Every point the harness's witness measures (parameters' and inputs'), and the report."""
    seen = []
    original = harness.GradcheckPoint.measure.__func__

    def measure(cls, *args, **kwargs):
        seen.append(original(cls, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(harness.GradcheckPoint, "measure", classmethod(measure))
    report = run_comparison(graph, batch=4, dtype=dtype, seed=1, gradcheck_samples=3)
    return seen, report


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_witness_judges_coordinates_of_every_input(monkeypatch, dtype):
    """A model of three inputs (vector, vector, sequence): the witness row measures 3 coordinates of each input
    (index -1 - j for input j) beside the parameters', and counts them all in its name."""
    points, report = witnessed_points(monkeypatch, THREE_INPUTS, dtype)
    assert report.passed, report.verdict()
    inputs = [p for p in points if p.param < 0]
    assert sorted({p.param for p in inputs}) == [-3, -2, -1]
    assert all(sum(p.param == j for p in inputs) == 3 for j in (-1, -2, -3))
    row = next(row for row in report.rows if row.name.startswith("numerical grad"))
    assert row.shape[0] >= len(points) and row.passed


def shifted(dy: np.ndarray, sizes: list[int], axis: int) -> list[np.ndarray]:
    """Concatenate's gradient split one place off: input i gets dY's slice starting one later (the first) or one
    earlier (the others) than its own, wrapping around; the shapes are right, the values are not."""
    starts = np.cumsum([0, *sizes[:-1]])
    starts = [(s + 1) if i == 0 else (s - 1) for i, s in enumerate(starts)]
    total = dy.shape[axis]
    return [np.take(dy, [(s + k) % total for k in range(n)], axis=axis) for s, n in zip(starts, sizes)]


def test_a_scratch_concatenate_split_off_by_one_fails_the_gradient_rows():
    """A wrong scratch backward: the gradient rows below the merge and the input rows fail. The witness takes
    differences of the scratch forward pass (right) against Keras's gradient (right), so it passes: it guards
    against a formula both sides share, the scratch-vs-Keras rows against a wrong backward on one side."""

    class OffByOne(Concatenate):
        def backward(self, dy):
            return shifted(dy, [s[self.feature_axis] for s in self.input_shapes], self.feature_axis + 1)

    model, keras_model = build_pair(THREE_INPUTS, "float64", seed=1)
    next(node.layer for node in model.nodes if node.name == "cat").__class__ = OffByOne
    x = [RNG.standard_normal((4, *shape)) for shape in THREE_INPUTS.input_shapes]
    y = np.eye(3)[RNG.integers(0, 3, size=4)]
    report = compare_models(model, keras_model, x, y, gradcheck_samples=3)
    failed = {row.name for row in report.failures}
    assert {"grad da/kernel", "grad da/bias", "grad input a", "grad input b", "grad input c"} <= failed
    assert not any(name.startswith("numerical grad") for name in failed)
    assert report.diagnosis.first.layer_name in ("fc", "da")  # the first node below the merge, in Keras's order


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_keras_concatenate_split_off_by_one_fails_the_witness_and_the_gradient_rows(monkeypatch, dtype):
    """The same wrong split on the Keras side (a custom gradient on the twin's Concatenate): the scratch-vs-Keras
    gradient rows fail, and the witness, which reads Keras's gradient (in float32 the float64 truth's), fails too,
    on the coordinates of the inputs and of the Dense below the merge."""
    model, keras_model = build_pair(THREE_INPUTS, dtype, seed=1)
    original = harness.keras_astype

    def break_concatenate(km):
        layer = next(layer for layer in km.layers if layer.name == "cat")
        right = layer.call

        def call(inputs):
            sizes = [int(t.shape[-1]) for t in inputs]

            @tf.custom_gradient
            def concat(*ts):
                def grad(dy):
                    return [tf.constant(g) for g in shifted(dy.numpy(), sizes, -1)]

                return right(list(ts)), grad

            return concat(*inputs)

        layer.call = call
        return km

    break_concatenate(keras_model)
    if dtype == "float32":  # the float64 truth is a rebuilt model: break it too
        monkeypatch.setattr(harness, "keras_astype", lambda km, dt: break_concatenate(original(km, dt)))
    x = [RNG.standard_normal((4, *shape)) for shape in THREE_INPUTS.input_shapes]
    y = np.eye(3)[RNG.integers(0, 3, size=4)]
    report = compare_models(model, keras_model, x, y, gradcheck_samples=3)
    failed = {row.name for row in report.failures}
    assert {"grad da/kernel", "grad input a", "grad input b", "grad input c"} <= failed
    assert any(name.startswith("numerical grad") for name in failed)


def index_and_vector(order: tuple[str, str]) -> GraphArchitecture:
    shapes = {"ids": (4,), "v": (3,)}
    return GraphArchitecture(
        tuple((name, shapes[name]) for name in order),
        (
            ("e", LayerSpec("embedding", 2, "linear", {"input_dim": 5})),
            ("f", LayerSpec("flatten")),
            ("d", LayerSpec("dense", 3, "tanh")),
            ("cat", LayerSpec("concatenate", options={"axis": -1})),
            ("out", LayerSpec("dense", 3, "softmax")),
        ),
        (Call("e", ("ids",)), Call("f", ("e",)), Call("d", ("v",)), Call("cat", ("f", "d")), Call("out", ("cat",))),
        ("out",),
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("order", [("ids", "v"), ("v", "ids")], ids=["indices-first", "indices-second"])
def test_an_index_input_beside_a_vector_input_is_left_unmoved_and_the_vector_is_witnessed(monkeypatch, order, dtype):
    """Found by review of the witness on graphs: whether the inputs are indices was read from the first input only,
    so indices as a second input were moved by the witness (3.99998 is no index: refused), and a vector input beside
    indices in the first place was never witnessed. Now per input."""
    points, report = witnessed_points(monkeypatch, index_and_vector(order), dtype)
    assert report.passed, report.verdict()
    assert {p.param for p in points if p.param < 0} == {-1 - order.index("v")}
