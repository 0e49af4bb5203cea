"""The layers keras.applications' networks add, from every entry point: keras.layers.ReLU's value and derivative
exactly on its kinks against TensorFlow's gradient, the Activation layer over the registry, and chains of
ZeroPadding2D, Conv2D without a bias, BatchNormalization as the applications set it, ReLU(6), DepthwiseConv2D and
Activation through run_comparison and through from_keras of a saved keras.Sequential, in both dtypes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from compare.check import check_layer
from compare.harness import run_comparison
from compare.keras_model import compare_keras_model, from_keras
from compare.matrix import GRADIENT_ACTIVATIONS
from from_scratch import LAYERS, BadInputError, ReLU
from from_scratch.arch import LayerSpec
from keras_impl.model import KERAS_LAYERS

L = keras.layers

#: Every branch of Keras's ReLU.static_call: plain relu, relu6, a clip, a threshold, the leaky_relu shortcut, a
#: slope with a clip, with a threshold, with both, a clip at 0, and max_value given as the int 6.
RELU_OPTIONS = [
    {},
    {"max_value": 6.0},
    {"max_value": 1.0},
    {"threshold": 0.5},
    {"threshold": 0.5, "max_value": 2.0},
    {"negative_slope": 0.1},
    {"negative_slope": 0.1, "max_value": 6.0},
    {"negative_slope": 0.1, "threshold": 0.5},
    {"negative_slope": 0.3, "threshold": 0.5, "max_value": 2.0},
    {"max_value": 0.0},
    {"max_value": 6},
]


def on_the_kinks(options, dtype="float64"):
    """Inputs exactly on every kink of `options` (0, the threshold, max_value), one ulp either side (1e-30 either
    side of 0: TensorFlow's CPU kernels flush subnormal values to zero, a rounding matter, not the formula's), and
    between."""
    points = {0.0, options.get("threshold", 0.0), float(options.get("max_value") or 0.0), 6.0}
    t = np.dtype(dtype).type
    x = [t(v) for v in (-2.0, -0.5, 0.25, 1.0, 3.0, 7.0, 0.3, 1e-30, -1e-30)]
    for p in points:
        x.append(t(p))
        if p:
            x += [np.nextafter(t(p), t(-np.inf)), np.nextafter(t(p), t(np.inf))]
    return np.array(x, dtype)


def tensorflow_relu(options, x, dtype):
    """keras.layers.ReLU's output and tf.GradientTape's derivative at x (an upstream gradient of 1)."""
    layer = L.ReLU(dtype=dtype, **options)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
    return np.asarray(y), np.asarray(tape.gradient(y, xt))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", RELU_OPTIONS, ids=str)
def test_relu_value_and_derivative_on_the_kinks_equal_tensorflows(options, dtype):
    x = on_the_kinks(options, dtype)
    value, derivative = tensorflow_relu(options, x, dtype)
    ours = ReLU(**options)
    assert np.array_equal(ours.forward(x), value)
    assert np.array_equal(ours.backward(np.ones_like(x)), derivative)
    assert set(ours.kinks) == {options.get("threshold", 0.0)} | (
        {float(options["max_value"])} if "max_value" in options else set()
    )


def test_a_relu6_whose_derivative_passes_at_6_is_told_apart():
    """The kink check fails on a wrong answer: a ReLU(6) with derivative 1 at x = 6 (the clip's routing, not
    relu6's) differs from TensorFlow exactly there."""

    class PassingAtSix(ReLU):
        def derivative(self, x):
            return ((x > 0) & (x <= 6)).astype(x.dtype)

    x = on_the_kinks({"max_value": 6.0})
    _, derivative = tensorflow_relu({"max_value": 6.0}, x, "float64")
    wrong = PassingAtSix(max_value=6.0)
    wrong.forward(x)
    differs = wrong.backward(np.ones_like(x)) != derivative
    assert differs.any() and set(x[differs]) == {6.0}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", GRADIENT_ACTIVATIONS)
def test_the_activation_layer_agrees_with_keras_for_every_activation(name, dtype):
    spec = LayerSpec("activation", None, name)
    report = check_layer(
        LAYERS["activation"].from_spec(spec), KERAS_LAYERS["activation"](spec, dtype), (3, 4), dtype=dtype
    )
    assert report.passed, report.failures


def test_a_relu6_activation_layer_reads_as_relu6():
    model = keras.Sequential([keras.Input((3, 3, 2)), L.Activation("relu6"), L.Flatten(), L.Dense(2)])
    assert from_keras(model).layers[0].spec() == LayerSpec(
        "re_lu", None, "linear", {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}
    )


#: A chain of what ResNet50 and MobileNetV2 put together, in the grammar.
CHAIN = "9x9x3-pad0x1x0x1-conv6k3:linear:s=2:nobias-bn-relu6-dw3:same:m=2:nobias-bn-act:relu-pad1-avgpool2-gap-4"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_chain_of_the_new_layers_agrees_with_keras(dtype):
    report = run_comparison(CHAIN, batch=8, dtype=dtype, gradcheck_samples=4)
    assert report.passed, report.failures


def application_chain(dtype):
    """The same kinds as Keras's applications configure them: BatchNormalization(axis=3, epsilon=1.001e-5) as
    ResNet50's, momentum 0.999 as MobileNetV2's, ReLU(6.), a ReLU with every option."""
    return keras.Sequential(
        [
            keras.Input((9, 9, 3), dtype=dtype),
            L.ZeroPadding2D(((0, 1), (0, 1)), dtype=dtype),
            L.Conv2D(6, 3, strides=2, use_bias=False, dtype=dtype),
            L.BatchNormalization(axis=3, epsilon=1.001e-5, momentum=0.999, dtype=dtype),
            L.ReLU(6.0, dtype=dtype),
            L.DepthwiseConv2D(3, padding="same", use_bias=False, depth_multiplier=2, dtype=dtype),
            L.BatchNormalization(axis=-1, dtype=dtype),
            L.Activation("relu", dtype=dtype),
            L.ZeroPadding2D(1, dtype=dtype),
            L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2, dtype=dtype),
            L.GlobalAveragePooling2D(dtype=dtype),
            L.Dense(4, activation="softmax", dtype=dtype),
        ]
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_saved_chain_of_the_new_layers_reads_and_agrees_with_keras(dtype, tmp_path):
    model = application_chain(dtype)
    model.compile(loss="categorical_crossentropy")
    model.save(tmp_path / "chain.keras")
    scratch = from_keras(tmp_path / "chain.keras")
    assert [layer.kind for layer in scratch.layers][:6] == [
        "zero_padding2d",
        "conv2d",
        "batch_normalization",
        "re_lu",
        "depthwise_conv2d",
        "batch_normalization",
    ]
    assert str(scratch.architecture).startswith("9x9x3-pad0x1x0x1-conv6k3:linear:s=2:nobias-bn-relu6-dw3:same:m=2")
    report = compare_keras_model(tmp_path / "chain.keras", batch=8)
    assert report.passed, report.failures


def test_a_saved_model_with_an_invalid_option_is_refused_naming_the_layer_and_the_option(tmp_path):
    """A config edited to what Keras's constructor would not take (a depth_multiplier of 0): one line naming the
    layer and the option, from Keras's loader or from the scratch layer."""
    import json
    import zipfile

    model = keras.Sequential([keras.Input((5, 5, 2)), L.DepthwiseConv2D(3, name="dw"), L.Flatten(), L.Dense(2)])
    model.save(tmp_path / "dw.keras")
    with zipfile.ZipFile(tmp_path / "dw.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    (layer,) = [layer for layer in config["config"]["layers"] if layer["class_name"] == "DepthwiseConv2D"]
    layer["config"]["depth_multiplier"] = 0
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(BadInputError, match="'dw'.*depth_multiplier") as error:
        from_keras(tmp_path / "bad.keras")
    assert "\n" not in str(error.value)


# ----- keras.applications: the layers Keras itself configures ---------------------------------------------------------
APPLICATIONS = {
    "ResNet50": (lambda: keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10), {"Add"}),
    "DenseNet121": (
        lambda: keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), classes=10),
        {"Concatenate"},
    ),
    "MobileNetV2": (
        lambda: keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10),
        {"Add"},
    ),
}


@pytest.fixture(scope="module", params=sorted(APPLICATIONS))
def application(request):
    make, merges = APPLICATIONS[request.param]
    return make(), merges


def test_every_layer_of_the_applications_is_read(application):
    """Every layer of ResNet50, DenseNet121 and MobileNetV2(alpha=0.35), the merges among them, reads as a spec that
    the scratch layer accepts (BatchNormalization with axis=3, epsilon=1.001e-5, momentum=0.999 among them)."""
    from compare.keras_model import SPECS

    model, merges = application
    unread = {type(layer).__name__ for layer in model.layers if type(layer) not in SPECS}
    assert unread == {"InputLayer"}
    assert merges <= {type(layer).__name__ for layer in model.layers}
    for layer in model.layers:
        if type(layer) in SPECS:
            spec = SPECS[type(layer)](layer)
            LAYERS[spec.kind].from_spec(spec)


def test_the_new_layers_as_the_applications_configure_them_agree_with_keras(application):
    """Each distinct ZeroPadding2D, DepthwiseConv2D, Activation, ReLU and bias-free Conv2D of the application (its
    own Keras layer, at its own input shape) passes check_layer in float64 and float32."""
    from compare.keras_model import SPECS
    from keras_impl.model import rebuilt

    model, _ = application
    seen = set()
    for layer in model.layers:
        spec = SPECS[type(layer)](layer) if type(layer) in SPECS else None
        new = spec is not None and spec.kind in ("zero_padding2d", "depthwise_conv2d", "activation", "re_lu")
        if not (new or (spec is not None and spec.options.get("use_bias") is False)):
            continue
        shape = tuple(int(d) for d in layer.input.shape[1:])
        if (str(spec), shape) in seen or len(seen) >= 12:
            continue
        seen.add((str(spec), shape))
        for dtype in ("float64", "float32"):
            scratch = LAYERS[spec.kind].from_spec(spec)
            report = check_layer(scratch, rebuilt(layer, dtype), shape, batch=2, dtype=dtype, gradcheck_samples=2)
            assert report.passed, (layer.name, dtype, report.failures)
    assert seen


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "binary_crossentropy"])
def test_a_trailing_softmax_or_sigmoid_activation_layer_hands_its_logits_to_the_loss_as_keras(loss):
    """Keras computes a cross-entropy from the logits under a softmax or sigmoid output tensor, whichever layer
    made it: Dense(activation=...) or Dense then Activation(...)."""
    for arch in ("6x6x2-flatten-4:linear-act:softmax", "6x6x2-flatten-4:linear-act:sigmoid-dropout0.3"):
        report = run_comparison(arch, batch=8, loss=loss, gradcheck_samples=2)
        assert report.passed, (arch, report.failures)
