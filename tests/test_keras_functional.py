"""Saved functional Keras models read by from_keras and compared: graphs, several inputs and outputs, shared layers,
nested models.

Real keras.Model graphs built with Keras's functional API, given random weights, compiled, saved as .keras files and
read back; every comparison in the model's dtype (float64 and float32), every row must pass.
"""

import json
import re

import keras
import numpy as np
import pytest
from test_keras_model import randomize, save_each

import keras_impl  # noqa: F401 (first: pins the TensorFlow settings before TensorFlow loads)
from compare import cli, keras_model, keras_reading
from compare.keras_model import compare_keras_model, comparison_twin, describe, from_keras, loss_of
from compare.tolerances import F64_TOL, norm_rel_error
from from_scratch.errors import BadInputError
from from_scratch.graph import Model
from from_scratch.graph_arch import Call, GraphArchitecture
from from_scratch.losses import OutputLosses
from from_scratch.model import Sequential
from keras_impl.model import FixedMaskDropout

L = keras.layers


def compile_model(model, dtype, **kwargs):
    """model.compile in `dtype` (Keras's compiled-loss wrapper takes floatx() when it is created)."""
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        model.compile(optimizer="sgd", **kwargs)
    finally:
        keras.config.set_floatx(before)


def residual(d):
    """x -> Dense(relu) -> BatchNormalization -> Dense, added back to x (a skip connection), -> Dense(softmax)."""
    x = keras.Input((6,), dtype=d, name="x")
    h = L.Dense(8, "relu", dtype=d, name="branch")(x)
    h = L.BatchNormalization(dtype=d, name="norm")(h)
    h = L.Dense(6, "tanh", dtype=d, name="back")(h)
    s = L.Add(dtype=d, name="skip")([x, h])
    s = L.Dropout(0.25, dtype=d, name="drop")(s)
    model = keras.Model(x, L.Dense(3, "softmax", dtype=d, name="head")(s), name="residual")
    compile_model(model, d, loss="categorical_crossentropy")
    return model


def two_inputs(d):
    """Two inputs of different widths, each through its own Dense, joined by Concatenate (axis -1) with one raw."""
    a = keras.Input((5,), dtype=d, name="a")
    b = keras.Input((3,), dtype=d, name="b")
    ha = L.Dense(4, "elu", dtype=d, name="da")(a)
    hb = L.Dense(4, "sigmoid", dtype=d, name="db")(b)
    joined = L.Concatenate(dtype=d, name="cat")([ha, b, hb])
    model = keras.Model([a, b], L.Dense(3, "softmax", dtype=d, name="head")(joined), name="two_inputs")
    compile_model(model, d, loss="categorical_crossentropy")
    return model


def siamese(d):
    """One Dense shared by both inputs (two calls, one set of weights), |difference| and product merged."""
    a = keras.Input((5,), dtype=d, name="left")
    b = keras.Input((5,), dtype=d, name="right")
    shared = L.Dense(4, "tanh", dtype=d, name="shared")
    ea, eb = shared(a), shared(b)
    diff = L.Subtract(dtype=d, name="diff")([ea, eb])
    prod = L.Multiply(dtype=d, name="prod")([diff, ea])
    both = L.Concatenate(dtype=d, name="cat")([prod, L.Maximum(dtype=d, name="max")([ea, eb])])
    model = keras.Model([a, b], L.Dense(2, "softmax", dtype=d, name="head")(both), name="siamese")
    compile_model(model, d, loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    return model


def two_outputs(d):
    """Two heads on one trunk, compiled with a loss per output (a dict by output name) and loss weights."""
    x = keras.Input((6,), dtype=d, name="x")
    h = L.Dense(7, "relu", dtype=d, name="trunk")(x)
    g = L.Dense(7, dtype=d, name="gate")(x)
    avg = L.Average(dtype=d, name="avg")([h, g])
    cls = L.Dense(3, "softmax", dtype=d, name="cls")(h)
    reg = L.Dense(2, dtype=d, name="reg")(avg)
    model = keras.Model(x, [cls, reg], name="two_outputs")
    compile_model(
        model,
        d,
        loss={"cls": "categorical_crossentropy", "reg": keras.losses.Huber(delta=0.5)},
        loss_weights={"cls": 0.3, "reg": 2.0},
    )
    return model


def nested(d):
    """A Sequential (Dense, Dropout) and a two-input functional model used as layers inside a functional model; the
    nested Dense is named like an outer one, so the flat graph renames it."""
    inner = keras.Sequential(
        [keras.Input((5,), dtype=d), L.Dense(5, "tanh", dtype=d, name="dense"), L.Dropout(0.2, dtype=d, name="drop")],
        name="inner",
    )
    p = keras.Input((5,), dtype=d, name="p")
    q = keras.Input((5,), dtype=d, name="q")
    pair = keras.Model([p, q], L.Minimum(dtype=d, name="low")([p, L.Dense(5, dtype=d, name="lift")(q)]), name="pair")
    x = keras.Input((4,), dtype=d, name="x")
    h = L.Dense(5, dtype=d, name="dense")(x)
    k = inner(h)
    joined = L.Concatenate(dtype=d, name="cat")([pair([k, h]), h])
    model = keras.Model(x, L.Dense(2, "softmax", dtype=d, name="head")(joined), name="nested")
    compile_model(model, d, loss="categorical_crossentropy")
    return model


def shared_nested(d):
    """One functional model (a tower of two Dense layers) applied to both inputs: its layers are shared."""
    p = keras.Input((5,), dtype=d)
    tower = keras.Model(p, L.Dense(3, "relu", dtype=d, name="proj")(L.Dense(4, "tanh", dtype=d, name="enc")(p)))
    a, b = keras.Input((5,), dtype=d, name="a"), keras.Input((5,), dtype=d, name="b")
    joined = L.Concatenate(dtype=d, name="cat")([tower(a), tower(b)])
    model = keras.Model([a, b], L.Dense(2, "softmax", dtype=d, name="head")(joined), name="shared_nested")
    compile_model(model, d, loss="categorical_crossentropy")
    return model


def embedded(d):
    """An index input read by an Embedding beside a float input: synthetic indices for the one, values for the
    other."""
    a = keras.Input((5,), dtype="int32", name="tokens")
    b = keras.Input((3,), dtype=d, name="values")
    e = L.Flatten(dtype=d, name="flat")(L.Embedding(7, 2, dtype=d, name="emb")(a))
    joined = L.Concatenate(dtype=d, name="cat")([e, L.Dense(3, dtype=d, name="db")(b)])
    model = keras.Model([a, b], L.Dense(2, "softmax", dtype=d, name="head")(joined), name="embedded")
    compile_model(model, d, loss="sparse_categorical_crossentropy")
    return model


MODELS = {
    "shared_nested": shared_nested,
    "embedded": embedded,
    "residual": residual,
    "two_inputs": two_inputs,
    "siamese": siamese,
    "two_outputs": two_outputs,
    "nested": nested,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(key, dtype) -> (path, model): each model with random weights, compiled, saved as .keras."""
    return save_each(tmp_path_factory.mktemp("functional"), MODELS, randomize)


@pytest.mark.parametrize("dtype,wanted", [("float64", None), ("float32", None), ("float32", "float64")])
@pytest.mark.parametrize("key", list(MODELS))
def test_saved_functional_model_passes_every_row(saved, key, dtype, wanted):
    """Every row, in the model's dtype and (a float32 model) in float64, where the Keras side is built from the
    description in float64 with the saved weights upcast exactly."""
    path, _ = saved[key, dtype]
    report = compare_keras_model(path, batch=8, gradcheck_samples=4, dtype=wanted)
    assert report.passed, (report.verdict(), [(r.name, r.error) for r in report.failures])
    assert [row.name for row in report.rows[:2]] == [
        "weights from the Keras model",
        "outputs of the Keras model as read",
    ]
    assert report.rows[0].error == 0.0 and report.rows[1].error == 0.0
    assert report.config["dtype"] == (wanted or dtype) and report.trace


@pytest.mark.parametrize("key", list(MODELS))
def test_from_keras_weights_are_the_saved_weights_bit_for_bit(saved, key):
    """A graph model is a from_scratch.graph.Model whose layers take the Keras names; each layer's weights are the
    saved layer's, bit for bit; for a graph without nested models in Keras's own get_weights() order too."""
    for dtype in ("float64", "float32"):
        path, model = saved[key, dtype]
        loaded = keras_model.load(path)
        scratch = from_keras(path)
        assert isinstance(scratch, Model) and not isinstance(scratch, Sequential)
        assert scratch.dtype == np.dtype(dtype)
        by_name = keras_reading.read(loaded).layers
        for layer in scratch.layers:
            theirs = by_name[layer.name].get_weights()
            assert [a.tobytes() for a in layer.params] == [b.tobytes() for b in theirs], layer.name
        if key not in ("nested", "shared_nested"):
            assert [a.tobytes() for a in scratch.get_weights()] == [b.tobytes() for b in loaded.get_weights()]
            assert [layer.name for layer in scratch.layers] == [
                layer.name for layer in loaded.layers if not isinstance(layer, L.InputLayer)
            ]


def test_the_scratch_model_computes_the_saved_models_predictions(saved):
    """Without the harness copying anything: the scratch model's inference outputs are Keras's, to float64
    rounding, for every model (several inputs and outputs as lists)."""
    for key in MODELS:
        path, _ = saved[key, "float64"]
        loaded = keras_model.load(path)
        rng = np.random.default_rng(3)
        xs = [
            rng.integers(0, 7, (5, *t.shape[1:])) if t.dtype == "int32" else rng.standard_normal((5, *t.shape[1:]))
            for t in loaded.inputs
        ]
        x = xs if len(xs) > 1 else xs[0]
        theirs = loaded(x, training=False)
        theirs = [np.asarray(t) for t in theirs] if isinstance(theirs, (list, tuple)) else [np.asarray(theirs)]
        ours = from_keras(path).forward(x, training=False)
        ours = ours if isinstance(ours, list) else [ours]
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert norm_rel_error(a, b) <= F64_TOL, key


def test_the_description_names_keras_layers_calls_and_shared_layers(saved):
    _, model = saved["siamese", "float64"]
    arch, dtype = describe(model)
    assert isinstance(arch, GraphArchitecture) and dtype == "float64"
    assert [name for name, _ in arch.inputs] == ["left", "right"]
    assert [call.layer for call in arch.calls].count("shared") == 2  # one layer, two calls
    assert "shared#2" in arch.output_names()
    assert dict(arch.layers)["cat"].kind == "concatenate"
    _, model = saved["nested", "float64"]
    arch, _ = describe(model)
    names = [name for name, _ in arch.layers]
    assert "inner_dense" in names and "dense" in names and "lift" in names and "low" in names
    assert not any(name in ("inner", "pair") for name in names)  # the nested models are flattened


def test_a_chain_stays_a_sequential_and_its_twin_keeps_the_users_layers():
    x = keras.Input((4,))
    h = L.Dense(5, "relu", name="a")(x)
    model = keras.Model(x, L.Dense(3, name="c")(L.Dropout(0.5, name="b")(h)))
    arch, _ = describe(model)
    assert str(arch) == "4-5:relu-dropout0.5-3:linear"
    assert type(from_keras(model)) is Sequential
    twin = comparison_twin(model)
    assert twin.layers[0] is model.get_layer("a") and type(twin.layers[1]) is FixedMaskDropout


def test_the_functional_twin_shares_the_users_layers_and_variables(saved):
    _, model = saved["siamese", "float32"]
    twin = comparison_twin(model)
    assert twin.get_layer("shared") is model.get_layer("shared")
    assert len({id(v) for v in twin.weights} - {id(v) for v in model.weights}) == 0


def test_loss_of_reads_a_loss_per_output_and_the_loss_weights(saved):
    _, model = saved["two_outputs", "float64"]
    loss = loss_of(model)
    assert isinstance(loss, OutputLosses)
    cce = "CategoricalCrossentropy(from_logits=False, label_smoothing=0.0)"
    assert repr(loss) == f"[{cce}, Huber(delta=0.5)], loss_weights=[0.3, 2.0]"
    model = two_outputs("float64")
    compile_model(model, "float64", loss=["mse", "mae"], loss_weights=[1.5, 0.5])
    assert repr(loss_of(model)) == "[MeanSquaredError(), MeanAbsoluteError()], loss_weights=[1.5, 0.5]"
    compile_model(model, "float64", loss="mse")
    assert repr(loss_of(model)) == "[MeanSquaredError(), MeanSquaredError()]"


def test_the_loss_weights_are_applied_as_keras_applies_them(saved):
    """The reported loss is Keras's compiled objective: 0.3 * CCE(cls) + 2.0 * Huber(reg), as model.compute_loss
    gives it for the same outputs (checked against the losses computed one by one)."""
    path, model = saved["two_outputs", "float64"]
    report = compare_keras_model(path, batch=6, gradcheck_samples=0)
    assert report.passed
    x, y = keras_model.keras_model_batch(describe(model)[0], loss_of(model), "synthetic", 6, 0)
    cls, reg = model(x, training=True)
    expected = 0.3 * float(keras.losses.CategoricalCrossentropy(dtype="float64")(y[0], cls)) + 2.0 * float(
        keras.losses.Huber(delta=0.5, dtype="float64")(y[1], reg)
    )
    scratch_loss = from_keras(path).loss_and_gradients(x, y, loss_of(model))[0]
    assert scratch_loss == pytest.approx(expected, rel=1e-12)


# ----- the command line ------------------------------------------------------------------------------------------
def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_exit_2(code, out, err, message):
    assert code == 2 and out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err


def test_compare_command_takes_a_saved_model_of_several_inputs(capsys, saved):
    path, _ = saved["two_inputs", "float32"]
    code, out, err = run(capsys, "compare", "--keras-model", path, "--batch", 6, "--json", "--gradcheck", 2)
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] and report["config"]["keras_model"] == str(path)
    names = [row["name"] for row in report["rows"]]
    assert {"grad input a", "grad input b", "grad cat/kernel"} - set(names) == {"grad cat/kernel"}
    assert "grad da/kernel" in names and "grad head/bias" in names


def test_a_data_set_for_a_model_of_several_inputs_is_one_line_and_exit_2(capsys, saved):
    path, _ = saved["two_inputs", "float64"]
    assert_one_line_exit_2(
        *run(capsys, "compare", "--keras-model", path, "--data", "digits"),
        "--data digits: the Keras model 'two_inputs' has 2 input(s) and 1 output(s)",
    )


def unsupported(kind):
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    if kind == "dot_normalize":
        out = L.Dot(axes=1, normalize=True, name="cosine")([L.Dense(3, name="da")(a), L.Dense(3, name="db")(b)])
    elif kind == "operation":
        out = a + b  # a keras.ops node, not a layer
    elif kind == "nested_unsupported":
        inner = keras.Sequential([keras.Input((4,)), L.Dense(4, use_bias=False, name="nobias")], name="inner")
        out = L.Add(name="add")([inner(a), b])
    return keras.Model([a, b], L.Dense(2, name="head")(out), name=kind)


UNSUPPORTED = {
    "dot_normalize": "layer 'cosine' (Dot): normalize=True (the cosine of l2-normalized inputs); only normalize=False",
    "operation": "(Add) is an operation on Keras tensors (a keras.ops function or arithmetic such as a + b), not a",
    "nested_unsupported": "layer 'nobias' (Dense): use_bias=False",
}


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_a_saved_model_with_an_unsupported_node_is_one_line_and_exit_2(capsys, tmp_path, kind):
    model = unsupported(kind)
    model.compile(loss="mse")
    model.save(tmp_path / f"{kind}.keras")
    assert_one_line_exit_2(*run(capsys, "compare", "--keras-model", tmp_path / f"{kind}.keras"), UNSUPPORTED[kind])
    with pytest.raises(BadInputError, match=re.escape(UNSUPPORTED[kind])):
        from_keras(model)


# ----- a wrong read fails ----------------------------------------------------------------------------------------
def test_a_graph_read_with_two_merge_inputs_swapped_fails(monkeypatch, saved):
    """from_keras reading Subtract([a, b]) as Subtract([b, a]): both sides of the comparison are built from the
    reading, so they agree with each other; the row "outputs of the Keras model as read" (the saved model's own
    outputs) fails, and only it and what the wrong graph changes."""
    original = keras_reading.read

    def swapped(model):
        reading = original(model)
        graph = reading.graph
        calls = tuple(Call(c.layer, c.inputs[::-1]) if c.layer == "diff" else c for c in graph.calls)
        graph = GraphArchitecture(graph.inputs, graph.layers, calls, graph.outputs)
        return keras_reading.Reading(graph, graph, reading.dtype, reading.layers)

    monkeypatch.setattr(keras_reading, "read", swapped)
    monkeypatch.setattr(keras_model, "read", swapped)
    path, _ = saved["siamese", "float64"]
    report = compare_keras_model(path, batch=8, gradcheck_samples=0)
    failed = [row.name for row in report.failures]
    assert failed == ["outputs of the Keras model as read"], failed
    assert report.rows[1].error > 1e-3


# ----- check_model with a graph -----------------------------------------------------------------------------------
def scratch_siamese(seed=0):
    from from_scratch.graph import Input
    from from_scratch.layers import Dense
    from from_scratch.merge import Concatenate, Subtract

    a, b = Input((5,), name="left"), Input((5,), name="right")
    shared = Dense(4, "tanh")
    ea, eb = shared(a), shared(b)
    out = Dense(2, "softmax")(Concatenate()([Subtract()([ea, eb]), eb]))
    return Model([a, b], out, seed=seed)


def keras_siamese(swap=False, unshared=False):
    a, b = keras.Input((5,), dtype="float64", name="left"), keras.Input((5,), dtype="float64", name="right")
    shared = L.Dense(4, "tanh", dtype="float64")
    ea = shared(a)
    eb = (L.Dense(4, "tanh", dtype="float64") if unshared else shared)(b)
    diff = L.Subtract(dtype="float64")([eb, ea] if swap else [ea, eb])
    out = L.Dense(2, "softmax", dtype="float64")(L.Concatenate(dtype="float64")([diff, eb]))
    return keras.Model([a, b], out, name="twin")


def siamese_batch():
    rng = np.random.default_rng(1)
    return [rng.standard_normal((6, 5)), rng.standard_normal((6, 5))], np.eye(2)[rng.integers(0, 2, 6)]


def test_check_model_takes_a_graph_model_and_its_functional_twin():
    from compare import check_model

    x, y = siamese_batch()
    report = check_model(scratch_siamese(), keras_siamese(), x, y, gradcheck_samples=3)
    assert report.passed, report.verdict()
    names = [row.name for row in report.rows]
    assert "grad input left" in names and "grad input right" in names and names[-1].startswith("Taylor")


@pytest.mark.parametrize(
    "twin,message",
    [
        (
            lambda: keras_siamese(swap=True),
            "node 3 ('subtract'; the Keras model's 'subtract",
        ),
        (lambda: keras_siamese(unshared=True), "a shared layer) and the other a layer of its own"),
    ],
    ids=["merge_inputs_swapped", "not_shared"],
)
def test_check_model_names_the_first_node_where_the_graphs_differ(twin, message):
    from compare import check_model

    x, y = siamese_batch()
    with pytest.raises(BadInputError, match=re.escape(message)):
        check_model(scratch_siamese(), twin(), x, y)


def test_train_takes_a_saved_functional_model_of_one_input_and_refuses_several(capsys, tmp_path, saved):
    """A residual model on digits trains in lockstep from its saved weights (the same engine as a chain); a model
    of two inputs is refused in one line (run_training takes one input array)."""
    pytest.importorskip("sklearn")
    x = keras.Input((64,), dtype="float64", name="x")
    h = L.Dense(64, "relu", dtype="float64", name="branch")(x)
    head = L.Dense(10, "softmax", dtype="float64", name="head")(L.Add(dtype="float64", name="skip")([x, h]))
    model = keras.Model(x, head, name="digits_residual")
    model.compile(loss="categorical_crossentropy")
    model.save(tmp_path / "residual.keras")
    code, out, err = run(capsys, "train", "--keras-model", tmp_path / "residual.keras", "--epochs", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] and report["config"]["arch"].startswith("graph(inputs=['x']")
    path, _ = saved["two_inputs", "float64"]
    assert_one_line_exit_2(
        *run(capsys, "train", "--keras-model", path),
        "train --keras-model: the model 'two_inputs' has 2 input(s) and 1 output(s); training in lockstep takes",
    )


def test_a_shared_batch_normalization_on_images_reads_its_axis_and_passes():
    """BatchNormalization(axis=3) called on two tensors of one image shape (a shared layer has no single
    `layer.input` to read the rank from), then Add: read, and every row passes, the moving statistics after both
    calls included."""
    d = "float64"
    x = keras.Input((5, 5, 2), dtype=d)
    norm = L.BatchNormalization(axis=3, dtype=d, name="norm")
    conv = L.Conv2D(2, 3, padding="same", activation="relu", dtype=d, name="conv")(x)
    joined = L.Add(dtype=d, name="add")([norm(x), norm(conv)])
    model = keras.Model(x, L.Dense(3, "softmax", dtype=d, name="head")(L.Flatten(dtype=d)(joined)), name="bn_twice")
    compile_model(model, d, loss="categorical_crossentropy")
    arch, _ = describe(model)
    assert [call.layer for call in arch.calls].count("norm") == 2
    report = compare_keras_model(model, batch=4, gradcheck_samples=2)
    assert report.passed, report.verdict()
    assert "state norm/moving_mean after step" in [row.name for row in report.rows]
