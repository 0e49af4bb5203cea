"""A user's own Keras model: read into its NumPy model (compare.keras_model) and compared through the command line.

Real keras.Sequential models, trained with Keras's own `fit` where it matters and saved as .keras files.
"""

import dataclasses
import functools
import json
import re

import keras
import numpy as np
import pytest

import keras_impl  # noqa: F401 (first: pins the TensorFlow settings before TensorFlow loads)
from compare import cli, keras_model, keras_specs
from compare.keras_model import compare_keras_model, comparison_twin, describe, from_keras, loss_of
from compare.tolerances import F64_TOL, norm_rel_error
from compare.training import run_training
from from_scratch.errors import BadInputError
from keras_impl.activations import gelu_tanh
from keras_impl.model import FixedMaskDropout

L = keras.layers


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def sequential(layers, input_shape=(4,), dtype="float32", name="model"):
    return keras.Sequential([keras.Input(input_shape, dtype=dtype), *layers], name=name)


def compile_model(model, loss, dtype):
    """model.compile in `dtype`: Keras's compiled-loss wrapper takes floatx() when it is created, and a float32
    wrapper cannot add a float64 model's regularization losses in `fit`."""
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    finally:
        keras.config.set_floatx(before)


def save_each(folder, models, randomize):
    """(key, dtype) -> (path, model): each of `models` (key -> dtype -> Keras model) built in both dtypes, given
    random weights by `randomize(model, seed)`, saved as .keras in `folder`."""
    out = {}
    for key, make in models.items():
        for dtype in ("float64", "float32"):
            model = make(dtype)
            randomize(model, seed=len(key))
            path = folder / f"{key}_{dtype}.keras"
            model.save(path)
            out[key, dtype] = (path, model)
    return out


def randomize(model, seed=0):
    """Non-trivial weights in every slot (moving variances positive)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            (
                np.abs(rng.standard_normal(v.shape)) + 0.5
                if "moving_variance" in v.path
                else rng.standard_normal(v.shape)
            ).astype(v.dtype)
            for v in model.weights
        ]
    )


# ----- trained models ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from compare.data import digits as load_digits

    return load_digits()


def train(layers, digits, dtype, name, epochs):
    keras.utils.set_random_seed(0)  # fit shuffles, and op determinism wants seeded random ops
    model = sequential(layers, (64,), dtype, name)
    compile_model(model, keras.losses.CategoricalCrossentropy(label_smoothing=0.05, dtype=dtype), dtype)
    x, y = digits
    model.fit(x.astype(dtype), y.astype(dtype), epochs=epochs, batch_size=128, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """dtype -> (path, model): Dense (tanh, L2), BatchNormalization, Dropout, Dense (elu), Dense (softmax), trained
    three epochs on digits with Keras's fit and saved."""
    saved = {}
    for dtype in ("float64", "float32"):
        model = train(
            [
                L.Dense(
                    24, activation="tanh", kernel_regularizer=keras.regularizers.L2(1e-3), dtype=dtype, name="hidden"
                ),
                L.BatchNormalization(momentum=0.9, dtype=dtype, name="norm"),
                L.Dropout(0.2, dtype=dtype, name="drop"),
                L.Dense(16, activation="elu", dtype=dtype, name="hidden_2"),
                L.Dense(10, activation="softmax", dtype=dtype, name="out"),
            ],
            digits,
            dtype,
            f"digits_{dtype}",
            epochs=3,
        )
        path = tmp_path_factory.mktemp("models") / f"digits_{dtype}.keras"
        model.save(path)
        saved[dtype] = (path, model)
    return saved


@pytest.fixture(scope="module")
def trained_without_dropout(digits, tmp_path_factory):
    model = train(
        [
            L.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3), dtype="float64"),
            L.BatchNormalization(dtype="float64"),
            L.Dense(10, activation="softmax", dtype="float64"),
        ],
        digits,
        "float64",
        "no_dropout",
        epochs=2,
    )
    path = tmp_path_factory.mktemp("models") / "no_dropout.keras"
    model.save(path)
    return path, model


# ----- (a) a trained model through the command line ----------------------------------------------------------------
@pytest.mark.parametrize("dtype,flags", [("float64", []), ("float32", []), ("float32", ["--dtype", "float64"])])
def test_trained_model_passes_every_row(capsys, trained, dtype, flags):
    path, model = trained[dtype]
    moving_mean, moving_variance = model.get_layer("norm").get_weights()[2:]
    assert np.abs(moving_mean).max() > 0.05 and np.abs(moving_variance - 1).max() > 0.05  # fit moved them
    code, out, err = run(capsys, "compare", "--keras-model", path, "--data", "digits", "--batch", 24, "--json", *flags)
    report = json.loads(out)
    assert code == 0, err
    assert [r["name"] for r in report["rows"] if r["status"] != "PASS"] == []
    names = [r["name"] for r in report["rows"]]
    assert names[:4] == [
        "weights from the Keras model",
        "outputs of the Keras model as read",
        "weights round trip",
        "loss",
    ]
    assert {
        "grad hidden/kernel",
        "grad norm/gamma",
        "state norm/moving_variance after step",
        "grad out/bias",
        "grad input",
    } <= set(names)
    assert report["config"]["keras_model"] == str(path)
    assert report["config"]["arch"] == "64-24:tanh:l2=0.001-bn-dropout0.2-16:elu-10:softmax"
    assert report["config"]["dtype"] == (flags[-1] if flags else dtype)
    assert "label_smoothing=0.05" in report["config"]["loss"]  # the compiled loss, with its argument
    assert report["passed"]


def test_text_report_and_weights_left_untouched(capsys, trained):
    path, model = trained["float64"]
    code, out, _ = run(capsys, "compare", "--keras-model", path, "--data", "digits", "--batch", 16, "--gradcheck", 2)
    assert code == 0
    assert out.startswith(f"keras_model={path}  arch=64-24:tanh")
    assert out.strip().splitlines()[-1].startswith("PASS: all 19 quantities agree")
    before = [w.copy() for w in model.get_weights()]
    report = compare_keras_model(model, data="digits", batch=16, gradcheck_samples=0)  # an in-memory model
    assert report.passed and report.config["keras_model"] == "<digits_float64>"
    for a, b in zip(before, model.get_weights()):  # the training pass moved the moving statistics: put back
        np.testing.assert_array_equal(a, b)


# ----- (b) every supported layer round-trips bit for bit ---------------------------------------------------------
F32 = float(np.float32(0.003))  # keras.regularizers.L1 keeps its factor as a float32 tensor

LAYER_CASES = [
    *[
        (lambda dtype, a=a: L.Dense(5, activation=a, dtype=dtype), f"5:{a}")
        for a in ["linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "gelu", "softplus"]
    ],
    (lambda dtype: L.Dense(5, activation=gelu_tanh, dtype=dtype), "5:gelu_tanh"),
    (
        lambda dtype: L.Dense(5, activation=functools.partial(keras.activations.gelu, approximate=True), dtype=dtype),
        "5:gelu_tanh",
    ),
    (lambda dtype: L.Dense(5, activation=None, dtype=dtype), "5:linear"),
    (
        lambda dtype: L.Dense(
            5,
            "relu",
            kernel_regularizer=keras.regularizers.L2(0.01),
            bias_regularizer=keras.regularizers.L1(0.003),
            dtype=dtype,
        ),
        f"5:relu:l2=0.01:bias_l1={F32!r}",  # the float32 value Keras stores, printed exactly
    ),
    (
        lambda dtype: L.Dense(
            5,
            "tanh",
            kernel_regularizer=keras.regularizers.L1L2(l1=0.001, l2=0.002),
            bias_regularizer=keras.regularizers.L1L2(l2=0.0005),
            dtype=dtype,
        ),
        "5:tanh:l1=0.001:l2=0.002:bias_l2=0.0005",
    ),
    (lambda dtype: L.BatchNormalization(momentum=0.8, epsilon=1e-4, dtype=dtype), "bn"),
    (lambda dtype: L.Dropout(0.3, dtype=dtype), "dropout0.3"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make,token", LAYER_CASES, ids=[token for _, token in LAYER_CASES])
def test_each_supported_layer_round_trips_bit_for_bit(make, token, dtype):
    layer = make(dtype)
    model = sequential([L.Dense(6, "relu", dtype=dtype), layer, L.Dense(3, "softmax", dtype=dtype)], dtype=dtype)
    randomize(model)
    scratch = from_keras(model)
    assert str(scratch.architecture) == f"4-6:relu-{token}-3:softmax"
    assert scratch.dtype == np.dtype(dtype)
    ours, theirs = scratch.get_weights(), model.get_weights()
    assert len(ours) == len(theirs) == 4 + len(layer.weights)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(layer, L.BatchNormalization):
        assert (scratch.layers[1].momentum, scratch.layers[1].epsilon) == (0.8, 1e-4)
    if dtype == "float32":  # into a float64 twin: exact
        wide = from_keras(model, dtype="float64")
        for a, b in zip(wide.get_weights(), theirs):
            assert a.dtype == np.float64 and np.array_equal(a, b.astype(np.float64))
    else:  # a float64 model is never rounded into float32
        with pytest.raises(BadInputError, match="float32 was asked for a float64 Keras model"):
            from_keras(model, dtype="float32")


SEQUENCE_MODELS = {
    "rnn_lstm": (
        (5, 3),
        "float32",
        lambda d: [
            L.SimpleRNN(4, activation="relu", return_sequences=True, dtype=d),
            L.LSTM(3, dtype=d),
            L.Dense(2, "softmax", dtype=d),
        ],
        "5x3-rnn4:relu:seq-lstm3-2:softmax",
    ),
    "gru_both_resets": (
        (5, 3),
        "float64",
        lambda d: [
            L.GRU(4, return_sequences=True, dtype=d),
            L.GRU(3, reset_after=False, dtype=d),
            L.Dense(2, "softmax", dtype=d),
        ],
        "5x3-gru4:seq-gru3:reset_before-2:softmax",
    ),
    "embedding": (
        (7,),
        "int32",
        lambda d: [
            L.Embedding(6, 3, dtype=d),
            L.LSTM(4, return_sequences=True, dtype=d),
            L.Flatten(dtype=d),
            L.Dense(2, "softmax", dtype=d),
        ],
        "7-embed6x3-lstm4:seq-flatten-2:softmax",
    ),
}


@pytest.mark.parametrize("key", list(SEQUENCE_MODELS))
def test_saved_sequence_models_load_bit_for_bit_and_pass(key, tmp_path):
    """SimpleRNN, LSTM, GRU (both reset conventions) and Embedding (an int32 input, as Keras models take indices)
    from a .keras file: the description, the weights bit for bit, every row of the comparison in the model's dtype
    and in float64."""
    shape, input_dtype, make, arch = SEQUENCE_MODELS[key]
    dtype = "float64" if input_dtype == "float64" else "float32"
    model = keras.Sequential([keras.Input(shape, dtype=input_dtype), *make(dtype)], name=key)
    randomize(model)
    compile_model(model, "categorical_crossentropy", dtype)
    path = tmp_path / f"{key}.keras"
    model.save(path)
    scratch = from_keras(path)
    assert str(scratch.architecture) == arch and scratch.dtype == np.dtype(dtype)
    for a, b in zip(scratch.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for wanted in (None, "float64"):
        report = compare_keras_model(path, batch=8, gradcheck_samples=3, dtype=wanted)
        assert report.passed, report.verdict()


#: Image models as a user saves them: non-square kernels both ways round, an activation inside each Conv2D, strides,
#: dilation, both paddings, both poolings and a global average before the Dense head. Keras's own arguments only.
IMAGE_MODELS = {
    "tanh_3x2_valid_maxpool": (
        (7, 6, 2),
        "float64",
        lambda d: [
            L.Conv2D(3, (3, 2), activation="tanh", dtype=d, name="conv"),
            L.MaxPooling2D((2, 2), dtype=d, name="pool"),
            L.Flatten(dtype=d),
            L.Dense(4, "softmax", dtype=d, name="head"),
        ],
        "7x6x2-conv3k3x2:tanh-pool2-flatten-4:softmax",
    ),
    "relu_2x3_same_strided_gap": (
        (6, 7, 1),
        "float32",
        lambda d: [
            L.Conv2D(4, (2, 3), strides=(2, 1), padding="same", activation="relu", dtype=d, name="conv"),
            L.Conv2D(3, (3, 2), activation="sigmoid", padding="same", dtype=d, name="conv_2"),
            L.GlobalAveragePooling2D(dtype=d),
            L.Dense(3, "softmax", dtype=d, name="head"),
        ],
        "6x7x1-conv4k2x3:relu:same:s=2x1-conv3k3x2:sigmoid:same-gap-3:softmax",
    ),
    "elu_dilated_avgpool_same": (
        (8, 7, 2),
        "float64",
        lambda d: [
            L.Conv2D(2, (2, 3), dilation_rate=(2, 1), activation="elu", dtype=d, name="conv"),
            L.AveragePooling2D((3, 2), strides=(1, 2), padding="same", dtype=d, name="avg"),
            L.Conv2D(3, 2, activation="tanh", dtype=d, name="conv_2"),
            L.Flatten(dtype=d),
            L.Dense(5, "tanh", dtype=d, name="hidden"),
            L.Dense(3, "softmax", dtype=d, name="head"),
        ],
        None,  # checked against the spec, not a spelling
    ),
    "issue_example_tanh_square": (  # the 6x6x1 Conv2D(2, 3, activation="tanh")
        (6, 6, 1),
        "float64",
        lambda d: [
            L.Conv2D(2, 3, activation="tanh", dtype=d, name="conv"),
            L.Flatten(dtype=d),
            L.Dense(3, "softmax", dtype=d, name="head"),
        ],
        "6x6x1-conv2k3:tanh-flatten-3:softmax",
    ),
}


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    """key -> (path, model): each IMAGE_MODELS entry with random nonzero weights, compiled and saved as .keras."""
    folder = tmp_path_factory.mktemp("images")
    saved = {}
    for key, (shape, dtype, make, _) in IMAGE_MODELS.items():
        keras.utils.set_random_seed(0)
        model = sequential(make(dtype), shape, dtype, key)
        randomize(model, seed=len(key))
        compile_model(model, "categorical_crossentropy", dtype)
        model.save(folder / f"{key}.keras")
        saved[key] = (folder / f"{key}.keras", model)
    return saved


@pytest.mark.parametrize("key", list(IMAGE_MODELS))
def test_saved_image_models_load_bit_for_bit_and_pass(key, image_paths):
    """Conv2D (non-square kernels either way, activations inside, strides, dilation, both paddings), pooling and
    GlobalAveragePooling2D from a .keras file: the description (every kernel size, stride, padding, dilation and
    activation as Keras keeps it), the weights bit for bit in Keras's (kh, kw, C, F) layout, and every row of the
    comparison, "weights from the Keras model" first, in the model's dtype and in float64."""
    shape, dtype, _, spelled = IMAGE_MODELS[key]
    path, model = image_paths[key]
    scratch = from_keras(path)
    if spelled is not None:
        assert str(scratch.architecture) == spelled
    for spec, layer in zip(scratch.architecture.layers, keras_model.keras_layers(model)):
        if isinstance(layer, L.Conv2D):
            assert spec.options["kernel_size"] == tuple(layer.kernel_size)
            assert spec.options["strides"] == tuple(layer.strides)
            assert spec.options["dilation_rate"] == tuple(layer.dilation_rate)
            assert spec.options["padding"] == layer.padding
            assert spec.activation == layer.activation.__name__
    for ours, theirs in zip(scratch.layers, keras_model.keras_layers(model)):
        if isinstance(theirs, L.Conv2D):
            kernel = theirs.get_weights()[0]
            assert kernel.shape[:2] == tuple(theirs.kernel_size) and ours.params[0].tobytes() == kernel.tobytes()
    assert [a.tobytes() for a in scratch.get_weights()] == [b.tobytes() for b in model.get_weights()]
    for wanted in (None, "float64"):
        report = compare_keras_model(path, batch=6, gradcheck_samples=3, dtype=wanted)
        assert report.rows[0].name == "weights from the Keras model" and report.rows[0].passed
        assert report.rows[0].error == 0.0
        assert report.passed, report.verdict()
        assert report.config["dtype"] == (wanted or dtype)


def test_scratch_outputs_of_a_saved_image_model_are_keras_outputs(image_paths):
    """The scratch model from_keras builds computes the loaded model's own predictions (float64: to rounding),
    without the harness copying any weight: a kernel read in another layout, a lost activation or a wrong padding
    would change them."""
    path, model = image_paths["elu_dilated_avgpool_same"]
    x = np.random.default_rng(4).standard_normal((5, *IMAGE_MODELS["elu_dilated_avgpool_same"][0]))
    theirs = np.asarray(keras_model.load(path)(x, training=False))
    ours = from_keras(path).forward(x, training=False)
    assert norm_rel_error(ours, theirs) <= F64_TOL


@pytest.mark.parametrize(
    "layer,message",
    [
        (lambda: L.LSTM(3, dropout=0.1), "(LSTM): dropout=0.1; supported:"),
        (lambda: L.GRU(3, activation="relu"), "(GRU): activation 'relu' with recurrent_activation 'sigmoid'"),
        (lambda: L.SimpleRNN(3, go_backwards=True), "(SimpleRNN): go_backwards=True"),
        (lambda: L.LSTM(3, kernel_regularizer="l2"), "(LSTM): kernel_regularizer="),
        (lambda: L.GRU(3, use_bias=False), "(GRU): use_bias=False"),
    ],
    ids=["dropout", "activation", "go_backwards", "regularizer", "no_bias"],
)
def test_unsupported_recurrent_options_are_refused(layer, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        from_keras(keras.Sequential([keras.Input((5, 3)), layer(), L.Dense(2)]))
    with pytest.raises(BadInputError, match=re.escape("(Embedding): mask_zero=True")):
        from_keras(keras.Sequential([keras.Input((5,)), L.Embedding(4, 2, mask_zero=True), L.LSTM(2), L.Dense(2)]))


def test_scratch_layers_take_the_keras_names_and_the_twin_shares_the_layers():
    model = sequential([L.Dense(6, "relu", name="a"), L.Dropout(0.5, name="b"), L.Dense(3, name="c")])
    scratch = from_keras(model)
    assert scratch.weight_names() == ["a/kernel", "a/bias", "c/kernel", "c/bias"]
    twin = comparison_twin(model)
    assert twin.layers[0] is model.layers[0] and twin.layers[2] is model.layers[2]
    assert type(twin.layers[1]) is FixedMaskDropout and twin.layers[1].rate == 0.5
    assert all(a is b for a, b in zip(twin.weights, model.weights))  # the user's own variables


@pytest.mark.parametrize(
    "compiled,expected",
    [
        ("mse", "MeanSquaredError()"),
        ("categorical_crossentropy", "CategoricalCrossentropy(from_logits=False, label_smoothing=0.0)"),
        (keras.losses.mean_absolute_error, "MeanAbsoluteError()"),
        (keras.losses.Huber(delta=2.5), "Huber(delta=2.5)"),
        (
            keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
            "BinaryCrossentropy(from_logits=True, label_smoothing=0.1)",
        ),
        (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "SparseCategoricalCrossentropy(from_logits=True)",
        ),
    ],
)
def test_loss_of_reads_the_compiled_loss_and_its_arguments(compiled, expected):
    model = sequential([L.Dense(3)])
    assert loss_of(model) is None
    model.compile(loss=compiled)
    assert repr(loss_of(model)) == expected


@pytest.mark.parametrize(
    "compiled,message",
    [
        ("hinge", "compiled with loss 'hinge', which has no scratch counterpart; supported: categorical_crossentropy"),
        (
            keras.losses.CategoricalFocalCrossentropy(),
            "loss 'CategoricalFocalCrossentropy', which has no scratch counterpart",
        ),
        (keras.losses.MeanSquaredError(reduction="sum"), "reduction='sum'; only Keras's default 'sum_over_batch_size'"),
        (keras.losses.SparseCategoricalCrossentropy(ignore_class=0), "with ignore_class=0; only ignore_class=None"),
    ],
)
def test_unsupported_compiled_loss_is_refused(compiled, message):
    model = sequential([L.Dense(3)])
    model.compile(loss=compiled)
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loss_of(model)


# ----- (c) train from the saved weights --------------------------------------------------------------------------
def test_train_starts_from_the_saved_weights_and_passes(capsys, trained_without_dropout, digits):
    path, model = trained_without_dropout
    code, out, err = run(capsys, "train", "--keras-model", path, "--epochs", 1, "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["passed"] and len(report["steps"]) == 29
    assert report["config"]["keras_model"] == str(path)
    assert report["config"]["arch"] == "64-16:relu:l2=0.001-bn-10:softmax"
    # Zero steps: what both sides evaluate is the saved model itself.
    x, y = digits
    arch, _ = describe(model)
    start = run_training(arch, x, y, epochs=1, max_steps=0, initial_weights=from_keras(model).get_weights())
    expected = float(keras.losses.CategoricalCrossentropy(dtype="float64")(y, model(x, training=False)))
    assert start.epochs[0]["loss_keras"] == pytest.approx(expected, rel=1e-14)
    assert start.epochs[0]["loss_scratch"] == pytest.approx(expected, rel=1e-12)


# ----- (d) bad input ---------------------------------------------------------------------------------------------
class Custom(keras.layers.Layer):
    """A user's own layer class, unknown to Keras when the model is loaded."""

    def call(self, inputs):
        return inputs


def functional(name):
    a, b = keras.Input((4,)), keras.Input((4,))
    return keras.Model([a, b], L.Dense(3)(L.Dot(axes=1, normalize=True, name="cos")([a, b])), name=name)


BAD_MODELS = {
    "activation_layer": (
        lambda: sequential([L.Dense(3, name="d"), L.Activation("selu", name="act")]),
        "layer 'act' (Activation): activation 'selu'; supported: InputLayer; Dense",
    ),
    "separable_conv2d": (
        lambda: sequential([L.SeparableConv2D(2, 3, name="conv"), L.Flatten(), L.Dense(3)], (8, 8, 1)),
        "layer 'conv' (SeparableConv2D): this layer class is not supported",
    ),
    "conv3d": (
        lambda: sequential([L.Conv3D(2, 3, name="conv"), L.Flatten(), L.Dense(3)], (8, 8, 8, 1)),
        "layer 'conv' (Conv3D): this layer class is not supported",
    ),
    "no_bias": (
        lambda: sequential([L.Dense(3, use_bias=False, name="nobias")]),
        "layer 'nobias' (Dense): use_bias=False",
    ),
    "bn_center": (
        lambda: sequential([L.Dense(3), L.BatchNormalization(center=False, name="bn")]),
        "layer 'bn' (BatchNormalization): center=False",
    ),
    "leaky_slope": (
        lambda: sequential([L.Dense(3, activation=L.LeakyReLU(negative_slope=0.1), name="leaky")]),
        (
            "layer 'leaky' (Dense): activation LeakyReLU(negative_slope=0.1) layer; only the function "
            "leaky_relu with Keras's default negative_slope=0.2"
        ),
    ),
    "swish": (
        lambda: sequential([L.Dense(3, activation="swish", name="sw")]),
        "layer 'sw' (Dense): activation 'silu'; supported:",
    ),
    "constraint": (
        lambda: sequential([L.Dense(3, kernel_constraint=keras.constraints.MaxNorm(2), name="c")]),
        "layer 'c' (Dense): kernel_constraint=MaxNorm",
    ),
    "padding_channels_first": (
        lambda: sequential(
            [L.ZeroPadding2D(1, data_format="channels_first", name="pad"), L.Flatten(), L.Dense(3)], (2, 5, 5)
        ),
        "layer 'pad' (ZeroPadding2D): data_format='channels_first'; only channels_last",
    ),
    "depthwise_channels_first": (
        lambda: sequential(
            [L.DepthwiseConv2D(3, data_format="channels_first", name="dw"), L.Flatten(), L.Dense(3)], (2, 5, 5)
        ),
        "layer 'dw' (DepthwiseConv2D): data_format='channels_first'; only channels_last",
    ),
    "depthwise_regularizer": (
        lambda: sequential(
            [L.DepthwiseConv2D(3, depthwise_regularizer="l2", name="dw"), L.Flatten(), L.Dense(3)], (5, 5, 2)
        ),
        "layer 'dw' (DepthwiseConv2D): depthwise_regularizer=L2",
    ),
    "functional": (lambda: functional("fun"), "layer 'cos' (Dot): normalize=True"),
    "not_1d": (
        lambda: sequential([L.Dense(3)], (4, 2), name="seq"),
        "model 'seq': the output has shape (4, 3); end with features (D,): add a Flatten",
    ),
    "hinge": (lambda: sequential([L.Dense(3)], name="h"), "model 'h' is compiled with loss 'hinge'"),
    "mixed_dtypes": (
        lambda: sequential(
            [L.Dense(3, dtype="float64", name="d64"), L.Dropout(0.5, name="drop32", dtype="float32")], dtype="float64"
        ),
        (
            "layer 'drop32' (Dropout): dtype float32, but layer 'd64' is float64 (Keras casts the "
            "activations to float32 there)"
        ),
    ),
    "mixed_precision": (
        lambda: sequential([L.Dense(3, dtype="mixed_float16", name="half")]),
        (
            "layer 'half' (Dense): dtype policy 'mixed_float16' (computes in float16, keeps weights "
            "in float32): only float64 or float32 throughout"
        ),
    ),
}


@pytest.fixture(scope="module")
def bad_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    paths = {}
    for key, (make, _) in BAD_MODELS.items():
        model = make()
        model.compile(loss="hinge" if key == "hinge" else "mse")
        paths[key] = folder / f"{key}.keras"
        model.save(paths[key])
    model = sequential([L.Dense(3), Custom(name="mine")])
    model.compile(loss="mse")
    model.save(folder / "custom.keras")
    (folder / "model.h5").write_text("not a model")
    (folder / "notzip.keras").write_text("not a zip")
    return folder, paths


def assert_one_line_exit_2(code, out, err, message):
    assert code == 2 and out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


@pytest.mark.parametrize("key", list(BAD_MODELS))
def test_unsupported_model_is_one_line_and_exit_2(capsys, bad_paths, key):
    _, paths = bad_paths
    assert_one_line_exit_2(*run(capsys, "compare", "--keras-model", paths[key]), BAD_MODELS[key][1])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["compare", "--keras-model", "{folder}/missing.keras"], "Keras model '{folder}/missing.keras': no such file"),
        (["compare", "--keras-model", "{folder}/model.h5"], "Keras model '{folder}/model.h5' is not a .keras file"),
        (["compare", "--keras-model", "{folder}/notzip.keras"], "a .keras file is a zip archive, this one is not"),
        (
            ["compare", "--keras-model", "{folder}/custom.keras"],
            "cannot be loaded by Keras: layer 'mine' (Custom) is a custom layer class (not Keras's own); supported:",
        ),
        (
            ["compare", "--keras-model", "{folder}/no_bias.keras", "--arch", "64-32-16-10"],
            "--arch cannot be combined with --keras-model",
        ),
        (
            ["compare", "--keras-model", "{folder}/no_bias.keras", "--dropout", "0.1"],
            "--dropout cannot be combined with --keras-model",
        ),
        (
            ["train", "--keras-model", "{folder}/no_bias.keras", "--arch", "4-3"],
            "--arch cannot be combined with --keras-model",
        ),
        (["compare", "--keras-model", "{folder}/bn_center.keras", "--from-logits"], "--from-logits configures --loss"),
        (["compare", "--keras-model", "{folder}/swish.keras", "--data", "digits"], "layer 'sw' (Dense)"),
    ],
)
def test_bad_command_line_is_one_line_and_exit_2(capsys, bad_paths, argv, message):
    folder, _ = bad_paths
    argv = [a.format(folder=folder) for a in argv]
    assert_one_line_exit_2(*run(capsys, *argv), message.format(folder=folder))


def test_data_that_does_not_fit_the_model_says_both_widths(capsys, tmp_path, digits):
    model = sequential([L.Dense(3, "softmax")], name="small")
    model.compile(loss="categorical_crossentropy")
    model.save(tmp_path / "small.keras")
    for command in ("compare", "train"):
        assert_one_line_exit_2(
            *run(capsys, command, "--keras-model", tmp_path / "small.keras", "--data", "digits"),
            "--data digits has 64 features and 10 outputs, but the Keras model 'small' takes 4 "
            "inputs and gives 3 outputs",
        )


def test_train_shares_dropout_masks_and_refuses_a_rounding_dtype(capsys, trained):
    path, _ = trained["float64"]
    code, out, err = run(capsys, "train", "--keras-model", path, "--epochs", 1, "--data", "digits")
    assert code == 0 and "PASS" in out, out + err
    assert_one_line_exit_2(
        *run(capsys, "compare", "--keras-model", path, "--dtype", "float32"),
        "dtype float32 was asked for a float64 Keras model: its weights would be rounded",
    )


# ----- (e) the check can fail --------------------------------------------------------------------------------------
def test_a_perturbed_copied_weight_fails_its_row(capsys, monkeypatch, trained):
    """One kernel entry of the scratch twin moved by 1e-9 relative: only the copy check sees it, since the harness
    copies the scratch weights into Keras before comparing (both sides then compute with the same wrong weight)."""
    original = keras_model.from_keras

    def perturbed(*args, **kwargs):
        scratch = original(*args, **kwargs)
        scratch.layers[0].W[3, 5] *= 1 + 1e-9
        return scratch

    monkeypatch.setattr(keras_model, "from_keras", perturbed)
    path, _ = trained["float64"]
    code, out, _ = run(
        capsys, "compare", "--keras-model", path, "--data", "digits", "--batch", 16, "--json", "--gradcheck", 0
    )
    report = json.loads(out)
    assert code == 1 and not report["passed"]
    assert [r["name"] for r in report["rows"] if r["status"] == "FAIL"] == ["weights from the Keras model"]


def test_a_mistranslated_option_fails_the_loss_and_its_gradient(capsys, monkeypatch, trained):
    """from_keras reading the model wrong (here: dropping the L2 regularizer) is caught by the comparison itself:
    the Keras side is the user's own layer, with its regularizer."""
    monkeypatch.setattr(keras_specs, "_regularizer_options", lambda layer, which: {})
    path, _ = trained["float64"]
    code, out, _ = run(
        capsys, "compare", "--keras-model", path, "--data", "digits", "--batch", 16, "--json", "--gradcheck", 0
    )
    report = json.loads(out)
    assert code == 1
    failed = [r["name"] for r in report["rows"] if r["status"] == "FAIL"]
    assert failed == ["loss", "grad hidden/kernel"]


def test_a_conv2d_kernel_read_with_kh_and_kw_swapped_fails_the_weights_row(monkeypatch, image_paths):
    """A square kernel read as (kw, kh, C, F) keeps its shape, so nothing refuses it; the harness then copies the
    scratch weights into Keras, and both sides compute with the same wrong kernel: only the "weights from the Keras
    model" row can see it, and must. (A non-square kernel read that way has the other layer's shape and is refused
    by set_weights, naming the layer and both shapes.)"""
    original = keras_model.from_keras

    def transposed(*args, **kwargs):
        scratch = original(*args, **kwargs)
        kernel = scratch.layers[0].params[0]
        kernel[...] = kernel.transpose(1, 0, 2, 3).copy()
        return scratch

    monkeypatch.setattr(keras_model, "from_keras", transposed)
    path, _ = image_paths["issue_example_tanh_square"]
    report = keras_model.compare_keras_model(path, batch=6, gradcheck_samples=0)
    assert [row.name for row in report.failures] == ["weights from the Keras model"]
    assert report.rows[0].error > 0.1  # a transposed random kernel is a different kernel, not a rounding


def test_a_conv2d_activation_ignored_fails_the_loss_and_output(monkeypatch, image_paths):
    """from_keras reading a Conv2D without its activation: the Keras side is the user's own layer, with it, so the
    loss, the output and the gradients fail (tanh, relu and elu inside Conv2D)."""
    original = keras_model.SPECS[L.Conv2D]
    monkeypatch.setitem(
        keras_model.SPECS,
        L.Conv2D,
        lambda layer: dataclasses.replace(original(layer), activation="linear"),
    )
    for key in ("issue_example_tanh_square", "relu_2x3_same_strided_gap", "elu_dilated_avgpool_same"):
        path, _ = image_paths[key]
        report = keras_model.compare_keras_model(path, batch=6, gradcheck_samples=0)
        failed = [row.name for row in report.failures]
        assert {"loss", "output", "grad conv/kernel"} <= set(failed), (key, failed)
        assert "weights from the Keras model" not in failed  # the weights were read right
