"""The branch notation of the architecture string (from_scratch/branches.py): a chain with merges of branches that
start from one tensor, `64-32-add(32-32 | id)-10`, read into a GraphArchitecture that writes itself back, named as
Keras names a fresh functional model's layers, in Keras's order, so both sides list their weights alike."""

import os

import keras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input_round_two import assert_refused, run

import keras_impl
from compare.harness import run_comparison
from from_scratch import Architecture, BadInputError
from from_scratch.arch import LayerSpec
from from_scratch.branches import IDENTITY, MERGES
from from_scratch.graph import Model
from from_scratch.graph_arch import Call, GraphArchitecture, in_keras_order
from keras_impl.model import twin_layers
from keras_impl.trace import graph_nodes

#: The issue's examples (a residual block, a projection on the skip, two branches concatenated), nested merges, and
#: every merge token with its options.
EXAMPLES = [
    "64-32-add(32-32 | id)-10",
    "8x8x1-conv8k3:same-add(conv8k3:same-bn-conv8k3:same | conv8k1)-flatten-10",
    "64-cat(32 | 16-16)-10",
    "64-32-add(32-add(32 | id)-32 | id)-10",
    "10-cat(4-add(4 | 4-4) | 6-mul(6 | id)-2 | id)-3",
    "12-sub(6:tanh | 6)-mul(id | 4:tanh-6)-avg(id | 6)-max(6:sigmoid | id)-min(id | 6)-4",
    "5x3-cat:axis=1(lstm4:seq | gru4:seq)-flatten-3",
    "5x3-dot:axes=2x2(rnn4:seq | lstm4:seq)-flatten-3",
    "8-dot:axes=1(4 | 4:tanh)-cat(id | 3)-2",
    "6x6x2-cat:axis=-1(conv3k3:same | pool3:s=1:same-conv2k1)-gap-3",
    "64-subtract(32 | 32)-multiply(id | id)-average(id | 32)-maximum(id | 32)-minimum(id | 32)-concatenate(id | id)-3",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_a_merge_gives_a_graph_that_writes_itself_back(text):
    graph = Architecture.parse(text)
    assert isinstance(graph, GraphArchitecture)
    again = Architecture.parse(str(graph))
    assert again == graph and str(again) == str(graph)
    assert [c.kind for _, c in graph.layers if c.kind in MERGES.values()], "a merge layer in the graph"


def test_the_residual_block_is_the_graph_keras_code_would_build():
    """x -> dense -> [dense_1 -> dense_2] + identity -> add -> dense_3, hidden activations inside the branch and the
    output activation on the last Dense."""
    graph = Architecture.parse("64-32-add(32-32 | id)-10")
    assert str(graph) == "64-32:relu-add(32:relu-32:relu | id)-10:softmax"
    assert graph.inputs == (("input_layer", (64,)),)
    assert [(c.layer, c.inputs) for c in graph.calls] == [
        ("dense", ("input_layer",)),
        ("dense_1", ("dense",)),
        ("dense_2", ("dense_1",)),
        ("add", ("dense_2", "dense")),
        ("dense_3", ("add",)),
    ]
    assert [spec.activation for _, spec in graph.layers] == ["relu", "relu", "relu", "linear", "softmax"]
    assert graph.outputs == ("dense_3",)


def test_nested_merges_are_named_after_their_branches_as_keras_names_them():
    """The inner add is created first (its branches, then it), so it is `add` and the outer one `add_1`."""
    graph = Architecture.parse("64-32-add(32-add(32 | id)-32 | id)-10")
    calls = {c.layer: c.inputs for c in graph.calls}
    assert calls["add"] == ("dense_2", "dense_1") and calls["add_1"] == ("dense_3", "dense")


def test_the_hidden_and_output_activations_are_the_defaults_as_in_a_chain():
    graph = Architecture.parse("8-cat(4 | 3-5)-2", hidden_activation="tanh", output_activation="sigmoid")
    assert str(graph) == "8-cat(4:tanh | 3:tanh-5:tanh)-2:sigmoid"
    last = Architecture.parse("8-cat(4 | 3-5)", output_activation="linear")  # the last Dense in reading order
    assert str(last) == "8-cat(4:relu | 3:relu-5:linear)"


def test_a_chain_string_still_gives_an_architecture_unchanged():
    for text in ("64-32-16-10", "8x8x1-conv8k3-pool2-flatten-10", "8-4:relu:l2=1e-05-3"):
        arch = Architecture.parse(text)
        assert type(arch) is Architecture
        assert Architecture.parse(str(arch)) == arch
    assert str(Architecture.parse("64-32-10")) == "64-32:relu-10:softmax"


def test_exponents_negative_axes_and_spaces_are_read():
    graph = Architecture.parse(" 64 - cat:axis=-1( 32:relu:l2=1e-05 | id ) - 10 ")
    spec = dict(graph.layers)
    assert spec["dense"].options == {"kernel_l2": 1e-05}
    assert spec["concatenate"].options == {}  # axis -1 is Keras's default
    assert str(graph) == "64-cat(32:relu:l2=1e-05 | id)-10:softmax"
    assert dict(Architecture.parse("5x3-cat:axis=1(lstm4:seq | gru4:seq)-flatten-3").layers)["concatenate"].options == {
        "axis": 1
    }


@pytest.mark.parametrize("text", EXAMPLES)
def test_both_sides_name_and_order_the_layers_and_weights_alike(text):
    """Real Keras: the functional twin's layers, weights and nodes in the description's order, and the scratch Model
    built from the same description likewise (compare_models copies weights in this order)."""
    graph = Architecture.parse(text)
    keras_model = keras_impl.build_model(graph, "float64")
    scratch = Model.from_architecture(graph)
    names = [name for name, _ in graph.layers]
    assert [layer.name for layer in twin_layers(keras_model)] == names == [layer.name for layer in scratch.layers]
    assert [w.shape for w in keras_model.get_weights()] == [w.shape for w in scratch.get_weights()]
    _, nodes = graph_nodes(keras_model)
    assert [node.operation.name for node in nodes] == [c.layer for c in graph.calls]
    assert [node.name for node in scratch.nodes] == graph.output_names()
    assert isinstance(keras_model, keras.Model) and not isinstance(keras_model, keras.Sequential)


def test_keras_order_reorders_a_description_written_in_another_order():
    """The ordering is not the reading order: a description with its layers and calls in reading order (branch
    `16-16` after `32`) is put in the order Keras's functional model gives, which is not that order."""
    parsed = Architecture.parse("64-cat(32 | 16-16)-10")
    reading = GraphArchitecture(
        parsed.inputs,
        tuple(
            sorted(
                parsed.layers, key=lambda item: ["dense", "dense_1", "dense_2", "concatenate", "dense_3"].index(item[0])
            )
        ),
        (
            Call("dense", ("input_layer",)),
            Call("dense_1", ("input_layer",)),
            Call("dense_2", ("dense_1",)),
            Call("concatenate", ("dense", "dense_2")),
            Call("dense_3", ("concatenate",)),
        ),
        parsed.outputs,
    )
    keras_model = keras_impl.build_model(reading, "float64")
    keras_names = [layer.name for layer in twin_layers(keras_model)]
    assert [name for name, _ in reading.layers] != keras_names  # the reading order is not Keras's
    assert [name for name, _ in in_keras_order(reading).layers] == keras_names == [n for n, _ in parsed.layers]


def test_keras_order_of_a_graph_with_a_shared_layer_is_the_scratch_models_order():
    """Two inputs, a layer called on both (its second call deeper than its first), each tensor keeping its name."""
    graph = GraphArchitecture(
        (("a", (3,)), ("b", (3,))),
        (
            ("shared", LayerSpec("dense", 3, "tanh")),
            ("d", LayerSpec("dense", 3)),
            ("e", LayerSpec("dense", 3)),
            ("sub", LayerSpec("subtract")),
        ),
        (
            Call("shared", ("a",)),
            Call("d", ("b",)),
            Call("shared", ("d",)),
            Call("e", ("shared#2",)),
            Call("sub", ("shared", "e")),
        ),
        ("sub",),
    )
    ordered = in_keras_order(graph)
    scratch = Model.from_architecture(graph)
    assert [c.layer for c in ordered.calls] != [c.layer for c in graph.calls]
    assert list(zip(ordered.output_names(), (c.inputs for c in ordered.calls))) == [
        (node.name, tuple(t.node.name for t in node.inputs)) for node in scratch.nodes
    ]
    assert [name for name, _ in ordered.layers] == [layer.name for layer in scratch.layers]
    keras_model = keras_impl.build_model(graph, "float64")
    assert [layer.name for layer in twin_layers(keras_model)] == [name for name, _ in ordered.layers]


#: Bad strings and what the one-line message must name.
BAD = {
    "64-add(32-32 | id-10": "'(' is not closed",
    "64-add(32 | id))-10": "')' at character 16 has no '('",
    "64-32 | 16-10": "'|' at character 7 has no '('",
    "64-add()-10": "layer 1 (add) has no branches",
    "64-add(32-32)-10": "layer 1 (add) has one branch",
    "64-cat(32 | )-10": "branch 2 is empty (write 'id' for the identity)",
    "64-cat( | 32)-10": "branch 1 is empty",
    "64-add(32 | 16)-10": "layer 1 'add(32:relu | 16:relu)': add takes tensors of one shape, got (32,) and (16,)",
    "64-32-add(32-16 | id)-10": "add takes tensors of one shape, got (16,) and (32,)",
    "8x8x1-add(conv2k3 | id)-flatten-3": "got (6, 6, 2) and (8, 8, 1)",
    "8-cat(2x2 | id)-3": "layer 2 '2x2' is neither a width",
    "64-sub(8 | 8 | 8)-4": "subtract takes exactly 2 tensors, got 3",
    "64-foo(32 | id)-10": "'foo' before '(' is not a merge; known: add, sub, mul, avg, max, min, cat, dot",
    "64-(32 | id)-10": "'' before '(' is not a merge",
    "64-add(32 | id)x-10": "'x' at character 16 follows a merge's ')'",
    "64-add(32 | id-32)-10": "layer 3 'id' (the identity) must be a whole branch",
    "64-add(32 | cat)-10": "layer 3 'cat' is a merge: give its branches",
    "64-add(32--32 | id)-10": "layer 3 is empty",
    "64-cat:axis=0(32 | id)-10": "axis 0 is not a feature axis",
    "64-cat:axis=2(32 | id)-10": "axis 2 is not a feature axis",
    "64-cat:axis=x(32 | id)-10": "axis='x' is not an integer",
    "64-add:axis=1(32 | 32)-10": "option 'axis=1' of 'add' (unknown; known: none)",
    "64-cat:axis=1:axis=1(32 | id)-10": "gives axis= twice",
    "8x8x1-add(conv2k3:same | id)": "the output has shape (8, 8, 2)",
    "64-add(32:tanh:relu | id)-10": "gives an activation twice",
    "(64)-10": "expected the input width",
}


@pytest.mark.parametrize("text", sorted(BAD))
def test_a_bad_merge_is_refused_in_one_line_naming_it(text):
    with pytest.raises(BadInputError) as exc:
        Architecture.parse(text)
    message = str(exc.value)
    assert BAD[text] in message and message.startswith(f"malformed architecture {text!r}: ")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["64-add(32 | 16)-10", "64-add(32)-10", "64-add(32 | id-10"])
def test_a_bad_merge_on_the_command_line_is_one_line_and_exit_2(capsys, text):
    code, out, err = run(capsys, "compare", "--arch", text, "--batch", "4")
    assert_refused(code, out, err, "malformed architecture")


def test_layer_flags_on_a_graph_are_refused_naming_them(capsys):
    code, out, err = run(capsys, "compare", "--arch", "64-32-add(32-32 | id)-10", "--dropout", "0.2", "--l2", "0.1")
    assert_refused(code, out, err, "--l2, --dropout add to every Dense layer of a chain")


def test_a_graph_on_the_command_line_is_compared(capsys):
    code, out, _ = run(capsys, "compare", "--arch", "64-32-add(32-add(32 | id) | id)-10", "--batch", "4")
    assert code == 0, out
    assert "arch=64-32:relu-add(32:relu-add(32:relu | id) | id)-10:softmax" in out
    assert "grad add" not in out and "grad dense_3/kernel" in out


def test_a_graph_string_given_to_sequential_points_to_model():
    from from_scratch import Sequential

    with pytest.raises(
        BadInputError, match=r"got a GraphArchitecture \(64-add\(32:relu \| 32:relu\)-3:softmax\): build"
    ):
        Sequential.from_architecture("64-add(32 | 32)-3")
    assert isinstance(Model.from_architecture("64-add(32 | 32)-3").layers[-1].spec(), LayerSpec)


def test_the_model_built_from_the_string_describes_itself_in_it(capsys):
    """Model.architecture keeps the string form (the training header shows it), and reads back as the same graph."""
    graph = Architecture.parse("4-8-add(8-8 | id)-3")
    described = Model.from_architecture(graph).architecture
    assert str(described) == str(graph) == "4-8:relu-add(8:relu-8:relu | id)-3:softmax"
    assert Architecture.parse(str(described)).layers == described.layers
    assert str(Model.from_architecture(graph, dtype="float32").astype("float64").architecture) == str(graph)
    code, out, _ = run(capsys, "train", "--data", "iris", "--arch", "4-8-add(8-8 | id)-3", "--epochs", "1")
    assert code == 0 and "arch=4-8:relu-add(8:relu-8:relu | id)-3:softmax  " in out


# ----- random strings with merges: read back, both sides ordered alike, both sides agree --------------------------
FUZZ = int(os.environ.get("BACKPROP_PARITY_FUZZ", "0"))
PROPERTY = settings(
    max_examples=FUZZ or 10,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WIDTH = 3


@st.composite
def chains(draw, depth, merge_first=False):
    """A chain of 1-3 items from a tensor of width WIDTH back to width WIDTH: Dense layers and (while depth lasts)
    merges of 2-3 branches, each a chain or `id`; a concatenation is followed by a Dense back to WIDTH."""
    items = []
    for i in range(draw(st.integers(1, 3))):
        if depth and ((merge_first and i == 0) or draw(st.booleans())):
            token = draw(st.sampled_from(sorted(MERGES)))
            count = 2 if token in ("sub", "dot") else draw(st.integers(2, 3))
            branches = [IDENTITY if draw(st.integers(0, 3)) == 0 else draw(chains(depth - 1)) for _ in range(count)]
            items.append(f"{token}({' | '.join(branches)})")
            if token in ("cat", "dot"):
                items.append(f"{WIDTH}:{draw(st.sampled_from(['tanh', 'sigmoid', 'linear']))}")
        else:
            items.append(f"{WIDTH}:{draw(st.sampled_from(['tanh', 'sigmoid', 'elu', 'linear']))}")
    return "-".join(items)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_random_strings_with_merges_read_back_and_agree_with_keras(dtype):
    @PROPERTY
    @given(body=chains(2, merge_first=True), seed=st.integers(0, 2**16))
    def run_one(body, seed):
        text = f"{WIDTH}-{body}-2"
        graph = Architecture.parse(text)
        assert isinstance(graph, GraphArchitecture)
        assert Architecture.parse(str(graph)) == graph
        keras_model = keras_impl.build_model(graph, dtype)
        scratch = Model.from_architecture(graph, dtype=dtype)
        assert [layer.name for layer in twin_layers(keras_model)] == [name for name, _ in graph.layers]
        assert [layer.name for layer in scratch.layers] == [name for name, _ in graph.layers]
        report = run_comparison(graph, batch=5, dtype=dtype, seed=seed, gradcheck_samples=0)
        assert report.passed, text + "\n" + report.verdict()

    run_one()


def _written_in_keras(text):
    """The network of `text` written by hand with Keras's functional API in reading order (one layer made per line,
    a merge after its branches), in a fresh session, its layers left to Keras to name."""
    keras.backend.clear_session()
    keras.config.set_floatx("float64")
    layers = keras.layers
    x = keras.Input((64,))
    if text == "64-32-add(32-32 | id)-10":
        h = layers.Dense(32, activation="relu")(x)
        b = layers.Dense(32, activation="relu")(h)
        b = layers.Dense(32, activation="relu")(b)
        s = layers.Add()([b, h])
        y = layers.Dense(10, activation="softmax")(s)
    elif text == "64-32-add(32-add(32 | id)-32 | id)-10":
        d = layers.Dense(32, activation="relu")(x)
        a = layers.Dense(32, activation="relu")(d)
        b = layers.Dense(32, activation="relu")(a)
        inner = layers.Add()([b, a])
        c = layers.Dense(32, activation="relu")(inner)
        outer = layers.Add()([c, d])
        y = layers.Dense(10, activation="softmax")(outer)
    else:  # 64-cat(32 | 16-16)-10
        p = layers.Dense(32, activation="relu")(x)
        q = layers.Dense(16, activation="relu")(x)
        q = layers.Dense(16, activation="relu")(q)
        c = layers.Concatenate()([p, q])
        y = layers.Dense(10, activation="softmax")(c)
    return keras.Model(x, y)


@pytest.mark.parametrize(
    "text", ["64-32-add(32-32 | id)-10", "64-32-add(32-add(32 | id)-32 | id)-10", "64-cat(32 | 16-16)-10"]
)
def test_the_names_and_weight_order_are_those_of_keras_code_written_by_hand(text):
    """Not by construction: Keras names the layers of the hand-written model itself, and lists its weights in its
    own order; the description and the scratch Model built from it agree with both."""
    model = _written_in_keras(text)
    graph = Architecture.parse(text)
    assert model.layers[0].name == graph.inputs[0][0] == "input_layer"
    assert [layer.name for layer in twin_layers(model)] == [name for name, _ in graph.layers]
    scratch = Model.from_architecture(graph)
    assert [w.shape for w in model.get_weights()] == [w.shape for w in scratch.get_weights()]
    assert [layer.name for layer in scratch.layers] == [layer.name for layer in twin_layers(model)]
