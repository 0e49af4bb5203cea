"""Statements of docs/derivations.md section 23 (the multivariate chain rule on a graph) checked against TensorFlow:

- Maximum and Minimum send a tie's dY to the earliest of the tied inputs, never to several (the binary maximum's
  gradient picks its first operand where x >= y, and Keras folds the inputs left), for 2 and 3 inputs;
- every merge layer's vector-Jacobian product, as the section writes it, is the tape's, with the shapes it states
  (Dot on vectors and on sequences over either axis);
- a fan-out's gradient is the sum of what its consumers send back, a shared layer's the sum over its calls, and a
  model of several outputs minimises L = sum_o w_o L_o (its gradient the same weighted sum).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from compare.harness import build_pair, compare_models
from compare.tolerances import F64_TOL, norm_rel_error
from compare.zoo_graph import RESIDUAL, SIAMESE, graph
from from_scratch.arch import LayerSpec
from from_scratch.merge import MERGE_LAYERS

#: (number of inputs, which of them hold the tied extreme value in every entry).
TIES = [(2, (0, 1)), (3, (0, 1)), (3, (1, 2)), (3, (0, 2)), (3, (0, 1, 2))]


def tape_vjp(keras_layer, xs, dy):
    """dL/dx_i of L = <dY, layer(xs)> by TensorFlow's tape (the vector-Jacobian product of dY)."""
    tensors = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        for t in tensors:
            tape.watch(t)
        y = keras_layer(tensors)
    return [g.numpy() for g in tape.gradient(y, tensors, output_gradients=tf.constant(dy))]


def scratch_vjp(kind, options, xs, dy):
    layer = MERGE_LAYERS[kind](**options)
    layer.build([x.shape[1:] for x in xs], xs[0].dtype, np.random.default_rng(0))
    y = layer.forward(xs, training=True)
    return y, layer.backward(dy)


def tied_inputs(n, ties, dtype, sign=1.0, seed=0):
    """n inputs (4, 6): random, and in every entry the inputs listed in `ties` hold the same value, the others a
    smaller one (`sign` -1: a larger one, for Minimum)."""
    rng = np.random.default_rng(seed)
    top = rng.standard_normal((4, 6)).astype(dtype)
    return [top if i in ties else (top - sign * (1 + rng.random((4, 6)))).astype(dtype) for i in range(n)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind,sign", [("maximum", 1.0), ("minimum", -1.0)])
@pytest.mark.parametrize("n,ties", TIES, ids=[f"{n}-inputs-tie" + "".join(str(i + 1) for i in t) for n, t in TIES])
def test_tensorflow_routes_a_tie_to_the_earliest_input(kind, sign, n, ties, dtype):
    """keras.layers.Maximum (Minimum) under tf.GradientTape with exact ties: dY goes, entry for entry, to the
    earliest tied input only, the others receive exactly 0; from_scratch's merge does the same, bit for bit."""
    xs = tied_inputs(n, ties, dtype, sign)
    dy = np.random.default_rng(1).standard_normal((4, 6)).astype(dtype) + 3  # no zero: a routed 0 would hide
    keras_layer = {"maximum": keras.layers.Maximum, "minimum": keras.layers.Minimum}[kind](dtype=dtype)
    theirs = tape_vjp(keras_layer, xs, dy)
    first = min(ties)
    for i, g in enumerate(theirs):
        np.testing.assert_array_equal(g, dy if i == first else np.zeros_like(dy))
    _, ours = scratch_vjp(kind, {}, xs, dy)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_a_tie_in_a_two_input_maximum_goes_to_the_first_even_in_reverse_order():
    """The rule is about position, not about which tensor: Maximum([b, a]) sends the tie to b."""
    a = np.array([[1.0, 2.0, -3.0]])
    b = np.array([[1.0, 5.0, -3.0]])
    dy = np.array([[10.0, 20.0, 30.0]])
    ga, gb = tape_vjp(keras.layers.Maximum(dtype="float64"), [a, b], dy)
    np.testing.assert_array_equal(ga, [[10.0, 0.0, 30.0]])
    np.testing.assert_array_equal(gb, [[0.0, 20.0, 0.0]])
    gb, ga = tape_vjp(keras.layers.Maximum(dtype="float64"), [b, a], dy)
    np.testing.assert_array_equal(gb, [[10.0, 20.0, 30.0]])
    np.testing.assert_array_equal(ga, [[0.0, 0.0, 0.0]])


#: (kind, options, input shapes without the batch, output shape without the batch) as section 23 states them.
MERGE_CASES = [
    ("add", {}, [(6,), (6,), (6,)], (6,)),
    ("subtract", {}, [(6,), (6,)], (6,)),
    ("multiply", {}, [(6,), (6,), (6,)], (6,)),
    ("average", {}, [(6,), (6,), (6,)], (6,)),
    ("maximum", {}, [(6,), (6,), (6,)], (6,)),
    ("minimum", {}, [(6,), (6,)], (6,)),
    ("concatenate", {"axis": -1}, [(3,), (5,), (4,)], (12,)),
    ("concatenate", {"axis": 1}, [(2, 4), (3, 4)], (5, 4)),
    ("dot", {"axes": 1}, [(6,), (6,)], (1,)),
    ("dot", {"axes": (2, 2)}, [(3, 6), (5, 6)], (3, 5)),
    ("dot", {"axes": (1, 1)}, [(4, 3), (4, 5)], (3, 5)),
    ("dot", {"axes": (2, 1)}, [(3, 4), (4, 5)], (3, 5)),
]


@pytest.mark.parametrize(
    "kind,options,shapes,out", MERGE_CASES, ids=[f"{c[0]}-{c[1]}-{len(c[2])}" for c in MERGE_CASES]
)
def test_each_merge_vjp_is_tensorflows(kind, options, shapes, out):
    """Each merge's dX_i, as written in section 23, against the tape's vector-Jacobian product of the Keras layer,
    float64, with the stated output and input-gradient shapes."""
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((7, *s)) for s in shapes]
    layer = MERGE_LAYERS[kind](**options)
    layer.build(shapes, np.float64, rng)
    y = layer.forward(xs, training=True)
    assert y.shape == (7, *out)
    dy = rng.standard_normal(y.shape)
    ours = layer.backward(dy)
    keras_cls = {
        "add": keras.layers.Add,
        "subtract": keras.layers.Subtract,
        "multiply": keras.layers.Multiply,
        "average": keras.layers.Average,
        "maximum": keras.layers.Maximum,
        "minimum": keras.layers.Minimum,
        "concatenate": keras.layers.Concatenate,
        "dot": keras.layers.Dot,
    }[kind]
    theirs = tape_vjp(keras_cls(**options, dtype="float64"), xs, dy)
    stated = stated_vjp(kind, options, xs, dy)
    for a, b, c, x in zip(ours, theirs, stated, xs):
        assert a.shape == b.shape == c.shape == x.shape
        assert norm_rel_error(a, b) <= F64_TOL
        assert norm_rel_error(c, b) <= F64_TOL


def stated_vjp(kind, options, xs, dy):
    """The formulas of section 23 evaluated as written (not the layer's code)."""
    n = len(xs)
    if kind == "add":
        return [dy] * n
    if kind == "subtract":
        return [dy, -dy]
    if kind == "average":
        return [dy / n] * n
    if kind == "multiply":
        return [dy * np.prod([x for j, x in enumerate(xs) if j != i], axis=0) for i in range(n)]
    if kind in ("maximum", "minimum"):
        y = np.max(xs, axis=0) if kind == "maximum" else np.min(xs, axis=0)
        earliest = np.argmax([x == y for x in xs], axis=0)  # the first input holding the chosen value
        return [np.where(earliest == i, dy, 0.0) for i in range(n)]
    if kind == "concatenate":
        axis = options["axis"] % xs[0].ndim
        ends = np.cumsum([x.shape[axis] for x in xs])
        return [np.take(dy, np.arange(e - x.shape[axis], e), axis=axis) for x, e in zip(xs, ends)]
    x, y = xs  # dot
    axes = options["axes"]
    a0, a1 = (axes, axes) if isinstance(axes, int) else axes
    if x.ndim == 2:  # vectors: R = sum_d X_d Y_d, (N, 1); dX = dR Y, dY = dR X
        return [dy * y, dy * x]
    if (a0, a1) == (2, 2):  # R_b = X_b Y_b^T (T, S): dX_b = dR_b Y_b, dY_b = dR_b^T X_b
        return [np.einsum("nts,nsd->ntd", dy, y), np.einsum("nts,ntd->nsd", dy, x)]
    if (a0, a1) == (1, 1):  # R_b = X_b^T Y_b (T, S): dX_b = Y_b dR_b^T, dY_b = X_b dR_b
        return [np.einsum("nds,nts->ndt", y, dy), np.einsum("ndt,nts->nds", x, dy)]
    # the general form: move the contracted axis last in X, first (after the batch) in Y, then R_b = X_b Y_b
    x3 = x if a0 == 2 else np.swapaxes(x, 1, 2)  # (N, T, D)
    y3 = y if a1 == 1 else np.swapaxes(y, 1, 2)  # (N, D, S)
    dx3 = np.einsum("nts,nds->ntd", dy, y3)  # dX_b = dR_b Y_b^T
    dy3 = np.einsum("ntd,nts->nds", x3, dy)  # dY_b = X_b^T dR_b
    return [dx3 if a0 == 2 else np.swapaxes(dx3, 1, 2), dy3 if a1 == 1 else np.swapaxes(dy3, 1, 2)]


def test_a_fan_out_receives_the_sum_and_a_shared_layer_sums_its_calls():
    """In the residual block the stem's dL/dA is the sum of what the branch and the skip sent back; in the siamese
    pair the shared Dense's dL/dW is the sum of its two calls' X_c^T dZ_c; and both models agree with Keras."""
    rng = np.random.default_rng(7)
    scratch, keras_model = build_pair(RESIDUAL)
    x, y = rng.standard_normal((8, 6)), np.eye(3)[rng.integers(0, 3, size=8)]
    result = scratch.backward_pass(x, y)
    names = [node.name for node in scratch.nodes]
    stem, branch, skip = names.index("stem"), names.index("branch"), names.index("skip")
    sent = result.records[branch]["dX"] + result.records[skip]["dX"][0]
    assert norm_rel_error(result.records[stem]["dA"], sent) <= F64_TOL
    assert compare_models(scratch, keras_model, x, y, gradcheck_samples=0).passed

    scratch, keras_model = build_pair(SIAMESE)
    x = [rng.standard_normal((8, 5)), rng.standard_normal((8, 5))]
    result = scratch.backward_pass(x, y)
    shared = scratch.layers[0]
    calls = [scratch.nodes.index(node) for node in scratch.calls[id(shared)]]
    own = [xc.T @ result.records[c]["dZ"] for xc, c in zip(x, calls)]
    assert norm_rel_error(result.grads[0], own[0] + own[1]) <= F64_TOL
    assert compare_models(scratch, keras_model, x, y, gradcheck_samples=0).passed


def test_several_outputs_minimise_the_weighted_sum_of_their_losses():
    """L = w_1 L_1 + w_2 L_2 and dL/dW = w_1 dL_1/dW + w_2 dL_2/dW (each loss alone is the model with the other's
    weight 0), and Keras's compiled loss agrees with loss_weights."""
    description = graph(
        [("x", (5,))],
        [
            ("trunk", LayerSpec("dense", 6, "tanh")),
            ("label", LayerSpec("dense", 3, "softmax")),
            ("value", LayerSpec("dense", 2, "linear")),
        ],
        [("trunk", ("x",)), ("label", ("trunk",)), ("value", ("trunk",))],
        ["label", "value"],
    )
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 5))
    y = [np.eye(3)[rng.integers(0, 3, size=8)], rng.standard_normal((8, 2))]
    losses, w = ["categorical_crossentropy", "mse"], [0.3, 2.0]
    scratch, keras_model = build_pair(description)
    both = scratch.backward_pass(x, y, losses, loss_weights=w)
    one = scratch.backward_pass(x, y, losses, loss_weights=[1.0, 0.0])
    two = scratch.backward_pass(x, y, losses, loss_weights=[0.0, 1.0])
    assert abs(both.loss - (w[0] * one.loss + w[1] * two.loss)) <= F64_TOL * both.loss
    for g, g1, g2 in zip(both.grads, one.grads, two.grads):
        assert norm_rel_error(g, w[0] * g1 + w[1] * g2) <= F64_TOL
    assert compare_models(scratch, keras_model, x, y, losses, gradcheck_samples=0, loss_weights=w).passed


def test_a_tensor_read_twice_by_one_node_receives_both_terms():
    """Add()([h, h]) reads h twice: dH = dY + dY = 2 dY (the sum runs over the inputs of one node too), and Keras
    agrees."""
    description = graph(
        [("x", (5,))],
        [("h", LayerSpec("dense", 4, "tanh")), ("twice", LayerSpec("add")), ("head", LayerSpec("dense", 3, "softmax"))],
        [("h", ("x",)), ("twice", ("h", "h")), ("head", ("twice",))],
        ["head"],
    )
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((6, 5)), np.eye(3)[rng.integers(0, 3, size=6)]
    scratch, keras_model = build_pair(description)
    result = scratch.backward_pass(x, y)
    names = [node.name for node in scratch.nodes]
    np.testing.assert_array_equal(
        result.records[names.index("h")]["dA"], 2 * result.records[names.index("twice")]["dA"]
    )
    assert compare_models(scratch, keras_model, x, y, gradcheck_samples=0).passed


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_weighted_loss_of_several_outputs_is_keras_compiled_loss_bit_for_bit(dtype):
    """keras_impl.total_loss, which the harness and the lockstep training use for Keras's side, is what a compiled
    Keras model computes (CompileLoss: each output's loss cast, times its weight, summed in order), weights that are
    not float32 numbers included; the scratch side's sum_o w_o L_o agrees to float64 rounding."""
    import keras
    import tensorflow as tf

    from from_scratch.graph import Input, Model
    from from_scratch.layers import Dense
    from from_scratch.losses import OutputLosses
    from keras_impl.model import batch_tensors, total_loss

    keras.config.set_floatx(dtype)
    i = keras.Input((4,), dtype=dtype)
    twin = keras.Model(i, [keras.layers.Dense(3, "softmax", dtype=dtype)(i), keras.layers.Dense(2, dtype=dtype)(i)])
    twin.compile(loss=["categorical_crossentropy", "mse"], loss_weights=[0.3, 2.7])
    rng = np.random.default_rng(0)
    x, y1, y2 = rng.standard_normal((5, 4)), np.eye(3)[rng.integers(0, 3, 5)], rng.standard_normal((5, 2))
    out = twin(tf.constant(x, dtype=dtype))
    compiled = twin.compute_loss(x=None, y=[tf.constant(y1, dtype=dtype), tf.constant(y2, dtype=dtype)], y_pred=out)
    _, objs, _, ys, _ = batch_tensors(twin, x, [y1, y2], ["categorical_crossentropy", "mean_squared_error"], None, None)
    assert float(total_loss(twin, objs, ys, out, None, [0.3, 2.7])) == float(compiled)
    if dtype == "float64":
        a = Input((4,))
        ours = Model(a, [Dense(3, "softmax")(a), Dense(2)(a)])
        ours.set_weights([np.asarray(w, np.float64) for w in twin.get_weights()])
        loss = OutputLosses(["categorical_crossentropy", "mean_squared_error"], [0.3, 2.7])
        value = ours.backward_pass(x, [y1, y2], loss).loss
        assert abs(value - float(compiled)) <= 1e-15 * abs(value)
