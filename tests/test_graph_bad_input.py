"""Bad input for graphs: each refused with a BadInputError naming the node (the layer and its call), the shapes or the
values, from the description (GraphArchitecture) and from the functional API (from_scratch.graph). A cycle can be
written in a description; through the functional API it cannot be built (a tensor exists only once the call that
makes it has run, so no call can take a later one): the guard that refuses one anyway is shown on a graph rewired by
hand. The command line's routes (check-layer with a merge) are in test_check_layer_several.py."""

import numpy as np
import pytest

from from_scratch import BadInputError
from from_scratch.arch import LayerSpec
from from_scratch.graph import Input, Model
from from_scratch.graph_arch import Call, GraphArchitecture
from from_scratch.layers import Dense
from from_scratch.losses import OutputLosses
from from_scratch.merge import Add, Concatenate, Multiply


def graph(inputs, layers, calls, outputs):
    return GraphArchitecture(
        tuple(inputs),
        tuple((name, LayerSpec(*spec) if isinstance(spec, tuple) else LayerSpec(spec)) for name, spec in layers),
        tuple(Call(*c) for c in calls),
        tuple(outputs),
    )


DESCRIPTIONS = {
    "cycle": (
        dict(
            inputs=[("x", (4,))],
            layers=[("a", ("dense", 4)), ("b", ("dense", 4)), ("add", "add")],
            calls=[("add", ("x", "b")), ("a", ("add",)), ("b", ("a",))],
            outputs=["b"],
        ),
        "graph: 'add' is computed from 'b', which is computed later: a cycle add -> b -> a -> add",
    ),
    "self_loop": (
        dict(inputs=[("x", (4,))], layers=[("a", ("dense", 4))], calls=[("a", ("a",))], outputs=["a"]),
        "graph: 'a' is computed from 'a', which is computed later: a cycle a -> a",
    ),
    "input_reaches_no_output": (
        dict(inputs=[("x", (4,)), ("z", (3,))], layers=[("a", ("dense", 4))], calls=[("a", ("x",))], outputs=["a"]),
        "graph: the input 'z' does not reach any output",
    ),
    "output_from_no_given_input": (
        dict(inputs=[("x", (4,))], layers=[("a", ("dense", 4))], calls=[("a", ("w",))], outputs=["a"]),
        "graph: 'a' is called on 'w', which is neither an input nor a call's output",
    ),
    "merge_shapes": (
        dict(inputs=[("x", (4,)), ("z", (3,))], layers=[("add", "add")], calls=[("add", ("x", "z"))], outputs=["add"]),
        "layer 'add': add takes tensors of one shape, got (4,) and (3,)",
    ),
    "merge_shapes_at_a_later_call": (
        dict(
            inputs=[("x", (4,)), ("z", (3,))],
            layers=[("d", ("dense", 3)), ("add", "add")],
            calls=[("d", ("x",)), ("add", ("d", "z")), ("add", ("x", "z"), "o2")],
            outputs=["add", "o2"],
        ),
        "layer 'add' (call 'o2'): the shared layer was built for (3,) and (3,) and is called again on (4,) and (3,)",
    ),
    "concatenate_shapes": (
        dict(
            inputs=[("x", (4, 2)), ("z", (3, 3))],
            layers=[("c", "concatenate")],
            calls=[("c", ("x", "z"))],
            outputs=["c"],
        ),
        "layer 'c': concatenate along axis -1 takes tensors that agree on every other axis, got (4, 2) and (3, 3)",
    ),
    "shared_layer_shapes": (
        dict(
            inputs=[("x", (4,)), ("z", (3,))],
            layers=[("d", ("dense", 3))],
            calls=[("d", ("x",)), ("d", ("z",))],
            outputs=["d", "d#2"],
        ),
        "layer 'd' (call 'd#2'): the shared layer was built for (4,) and is called again on (3,)",
    ),
    "merge_on_one_tensor": (
        dict(inputs=[("x", (4,))], layers=[("add", "add")], calls=[("add", ("x",))], outputs=["add"]),
        "layer 'add': add merges two or more tensors, got 1",
    ),
    "one_input_layer_on_two": (
        dict(inputs=[("x", (4,)), ("z", (4,))], layers=[("d", ("dense", 3))], calls=[("d", ("x", "z"))], outputs=["d"]),
        "layer 'd': a dense layer takes one tensor, got 2",
    ),
}


@pytest.mark.parametrize("case", list(DESCRIPTIONS))
def test_a_bad_description_is_refused_naming_the_call(case):
    parts, message = DESCRIPTIONS[case]
    with pytest.raises(BadInputError) as info:
        graph(**parts)
    assert str(info.value) == message


# ----- the functional API ------------------------------------------------------------------------------------------
def test_a_cycle_cannot_be_built_and_a_rewired_one_is_refused():
    x = Input((4,))
    h = Dense(4)(x)
    y = Dense(4)(h)
    h.node.inputs = [y]  # by hand: no call of the API makes a tensor from a later one
    with pytest.raises(BadInputError, match="Model: the graph has a cycle through layer 'dense'"):
        Model(x, y)


def test_an_input_that_reaches_no_output():
    x, z = Input((4,)), Input((3,))
    with pytest.raises(BadInputError) as info:
        Model([x, z], Dense(3)(x))
    assert str(info.value) == (
        "Model: the input of shape (3,) (unnamed) (inputs[1]) does not reach any output; drop it from inputs or "
        "connect it"
    )
    z = Input((3,), name="side")
    with pytest.raises(BadInputError, match=r"the input 'side' \(inputs\[1\]\) does not reach any output"):
        Model([x, z], Dense(3)(x))


def test_an_output_that_depends_on_an_input_not_given():
    x, w = Input((4,)), Input((4,), name="w")
    with pytest.raises(BadInputError) as info:
        Model(x, Add()([x, w]))
    assert str(info.value) == (
        "Model: an output depends on the Input 'w', called on by layer 'add', which is not among the model's "
        "inputs; add it to inputs"
    )
    with pytest.raises(BadInputError, match=r"the Input of shape \(4,\) \(unnamed\), called on by layer 'add'"):
        Model(x, Add()([x, Input((4,))]))
    with pytest.raises(BadInputError, match=r"depends on the Input 'w' which is not among"):
        Model(x, w)  # the output is the stray Input itself


@pytest.mark.parametrize(
    "build,message",
    [
        (
            lambda x, z: Add()([x, z]),
            "layer 'add': add takes tensors of one shape, got (4,) and (3,) (call 'add' on 'input_layer' and "
            "'input_layer_1')",
        ),
        (
            lambda x, z: Multiply()([Dense(4)(z), Dense(5)(x)]),
            "layer 'multiply': multiply takes tensors of one shape, got (4,) and (5,) (call 'multiply' on 'dense' "
            "and 'dense_1')",
        ),
    ],
    ids=["add", "multiply_of_dense"],
)
def test_a_merge_whose_shapes_disagree_names_the_node_and_both_shapes(build, message):
    x, z = Input((4,)), Input((3,))
    with pytest.raises(BadInputError) as info:
        Model([x, z], build(x, z))
    assert str(info.value).startswith(message)


def test_concatenate_needs_every_other_axis_to_agree():
    a, b = Input((4, 2)), Input((3, 3))
    with pytest.raises(BadInputError) as info:
        Model([a, b], Concatenate()([a, b]))
    assert "got (4, 2) and (3, 3) (call 'concatenate' on 'input_layer' and 'input_layer_1')" in str(info.value)


def test_a_shared_layer_called_on_another_shape():
    x, z = Input((4,)), Input((3,))
    d = Dense(3)
    with pytest.raises(BadInputError) as info:
        Model([x, z], [d(x), d(z)])
    assert str(info.value) == (
        "layer 'dense' is shared: built for inputs of shape (3,), then called again (call 2) on (4,) "
        "(call 'dense#2' on 'input_layer')"
    )


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda x: Add()(x), "layer 'add' merges several tensors: call it on a list, e.g. Add()([a, b])"),
        (lambda x: Add()([x]), "layer 'add' merges two or more tensors, but was called on a list of 1"),
        (lambda x: Dense(3)([x, x]), "layer 'dense' takes one tensor, but was called on a list of 2"),
        (lambda x: Dense(3)(np.zeros((2, 4))), "layer 'dense' was called on a ndarray: call a layer on"),
        (
            lambda x: Add()([np.zeros((2, 4)), np.zeros((2, 4))]),
            "layer 'add' was called on a list of 2 holding ndarray: call a layer on",
        ),
        (lambda x: Add()([x, np.zeros((2, 4))]), "layer 'add' was called on a list of 2 holding ndarray"),
    ],
    ids=["merge_on_one", "merge_on_list_of_one", "dense_on_list", "dense_on_array", "merge_on_arrays", "mixed"],
)
def test_a_layer_called_on_what_it_does_not_take(call, message):
    with pytest.raises(BadInputError) as info:
        call(Input((4,)))
    assert str(info.value).startswith(message)


def test_model_inputs_must_be_inputs_given_once():
    x = Input((4,))
    h = Dense(3)(x)
    with pytest.raises(BadInputError, match="Model inputs must be Input"):
        Model(h, Dense(2)(h))
    with pytest.raises(BadInputError, match="the same Input is given twice"):
        Model([x, x], h)


# ----- arrays through a model of several inputs and outputs --------------------------------------------------------
@pytest.fixture
def two_by_two():
    x1, x2 = Input((4,)), Input((4,))
    model = Model([x1, x2], [Dense(3, "softmax")(Add()([x1, x2])), Dense(2)(x1)])
    xs = [np.zeros((5, 4)), np.ones((5, 4))]
    ys = [np.eye(3)[[0, 1, 2, 0, 1]], np.zeros((5, 2))]
    return model, xs, ys


LOSSES = ["categorical_crossentropy", "mse"]


@pytest.mark.parametrize(
    "run,message",
    [
        (
            lambda m, xs, ys: m.predict(xs[:1]),
            "input: the model has 2 inputs, give a list of 2 arrays, got a list of 1",
        ),
        (lambda m, xs, ys: m.predict(xs[0]), "input: the model has 2 inputs, give a list of 2 arrays, got a ndarray"),
        (
            lambda m, xs, ys: m.predict([xs[0], xs[1][:4]]),
            "inputs: batches of different sizes [5, 4] (rows per input: 'input_layer' 5, 'input_layer_1' 4)",
        ),
        (
            lambda m, xs, ys: m.predict([xs[0], np.zeros((5, 3))]),
            "input 'input_layer_1': expected shape (N, 4), got (5, 3)",
        ),
        (
            lambda m, xs, ys: m.predict([xs[0], np.full((5, 4), np.nan)]),
            "input 'input_layer_1'",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, ys, LOSSES, loss_weights=[1.0]),
            "loss_weights: give a list of 2 numbers, one per output, got [1.0]",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, ys, LOSSES, loss_weights=[1.0, float("nan")]),
            "loss_weights[1]: expected a finite number, got nan",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, ys, LOSSES, loss_weights=[float("inf"), 1.0]),
            "loss_weights[0]: expected a finite number, got inf",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, ys, LOSSES, loss_weights=[1.0, "2"]),
            "loss_weights[1]: expected a finite number, got '2'",
        ),
        (lambda m, xs, ys: m.compile("sgd", LOSSES, loss_weights=[1.0, 2.0, 3.0]), "loss_weights: give a list of 2"),
        (
            lambda m, xs, ys: m.compile("sgd", LOSSES, loss_weights=[np.nan, 1.0]),
            "loss_weights[0]: expected a finite number, got nan",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, ys[:1], LOSSES),
            "labels: the model has 2 outputs ('dense', 'dense_1'), give a list of 2 label arrays, got a list of 1",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, ys[0], LOSSES),
            "labels: the model has 2 outputs ('dense', 'dense_1'), give a list of 2 label arrays, got a ndarray",
        ),
        (
            lambda m, xs, ys: m.backward_pass(xs, [ys[0][:3], ys[1]], LOSSES),
            "labels of output 'dense': 3 rows for a batch of 5 inputs",
        ),
        (lambda m, xs, ys: m.backward_pass(xs, ys, LOSSES[:1]), "loss: 1 losses for 2 outputs; give one per output"),
        (
            lambda m, xs, ys: (m.compile("sgd", LOSSES), m.fit(xs[:1], ys, epochs=1)),
            "input: the model has 2 inputs, give a list of 2 arrays, got a list of 1",
        ),
        (
            lambda m, xs, ys: (m.compile("sgd", LOSSES), m.fit([xs[0], xs[1][:3]], ys, epochs=1)),
            "inputs: batches of different sizes [5, 3]",
        ),
        (
            lambda m, xs, ys: (m.compile("sgd", LOSSES), m.evaluate(xs, ys[1:])),
            "labels: the model has 2 outputs ('dense', 'dense_1'), give a list of 2 label arrays, got a list of 1",
        ),
    ],
    ids=[
        "one_array_of_two",
        "an_array_for_two_inputs",
        "batch_sizes",
        "input_shape",
        "nan_input",
        "loss_weights_length",
        "loss_weights_nan",
        "loss_weights_inf",
        "loss_weights_string",
        "compile_loss_weights_length",
        "compile_loss_weights_nan",
        "labels_length",
        "labels_not_a_list",
        "labels_rows",
        "losses_length",
        "fit_inputs",
        "fit_batch_sizes",
        "evaluate_labels",
    ],
)
def test_arrays_that_do_not_fit_a_model_of_several_inputs_and_outputs(two_by_two, run, message):
    model, xs, ys = two_by_two
    with pytest.raises(BadInputError) as info:
        run(model, xs, ys)
    assert str(info.value).startswith(message)


def test_a_model_of_one_input_given_a_list_of_batches():
    x = Input((4,))
    model = Model(x, Dense(3)(x))
    with pytest.raises(BadInputError) as info:
        model.predict([np.zeros((5, 4)), np.zeros((5, 4))])
    assert str(info.value) == "input: the model has 1 input, give one array (N, 4), got a list of 2 such arrays"
    assert model.predict([np.zeros((5, 4))]).shape == (5, 3)  # a list of one is that one array
    assert model.predict([np.zeros(4), np.ones(4)]).shape == (2, 3)  # a list of samples is a batch


@pytest.mark.parametrize(
    "weights,message",
    [([1.0], "loss_weights: give a list of 2 numbers"), ([1.0, float("nan")], "loss_weights entry 1 must be in")],
)
def test_output_losses_refuse_bad_weights(weights, message):
    with pytest.raises(BadInputError, match=message):
        OutputLosses(LOSSES, weights)


def test_the_harness_refuses_bad_loss_weights_before_running():
    from compare.harness import run_comparison

    arch = graph(
        inputs=[("x", (5,))],
        layers=[("h", ("dense", 6, "relu")), ("o1", ("dense", 3, "softmax")), ("o2", ("dense", 2))],
        calls=[("h", ("x",)), ("o1", ("h",)), ("o2", ("h",))],
        outputs=["o1", "o2"],
    )
    with pytest.raises(BadInputError, match=r"loss_weights: give a list of 2 numbers, one per output, got \[1.0\]"):
        run_comparison(arch, batch=4, loss=LOSSES, loss_weights=[1.0])
    with pytest.raises(BadInputError, match="loss_weights entry 1 must be in"):
        run_comparison(arch, batch=4, loss=LOSSES, loss_weights=[1.0, float("nan")])
