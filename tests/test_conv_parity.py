"""Image layers against Keras: every layer over random shapes, kernels, strides, paddings and dilations
(hypothesis; dilated kernels taller and wider than 1 drawn on purpose along each axis), tied maxima and overlapping
pools, the numerical witness, and one proof per layer type that the check fails on a wrong backward pass."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from compare.check import check_layer
from compare.graphs import GRAPH_NETWORKS
from compare.matrix import GRADIENT_ACTIVATIONS, IMAGE_ARCHS, SEQUENCE_ARCHS
from from_scratch import Architecture, BadInputError, Sequential
from from_scratch.arch import LayerSpec
from from_scratch.attention import ATTENTION_LAYERS
from from_scratch.graph_arch import MERGE_KINDS
from from_scratch.layers import LAYERS
from from_scratch.merge import MERGE_LAYERS
from from_scratch.recurrent import SEQUENCE_LAYERS
from from_scratch.sequence import ENCODER_LAYERS
from keras_impl.model import KERAS_LAYERS

#: CI runs a fixed (derandomized) set of examples per layer; BACKPROP_PARITY_FUZZ=N runs N fresh random ones.
FUZZ = int(os.environ.get("BACKPROP_PARITY_FUZZ", "0"))
PROPERTY = settings(
    max_examples=FUZZ or 6,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))
paddings = st.sampled_from(["valid", "same"])


@st.composite
def images(draw, low=1):
    return (draw(st.integers(low, 9)), draw(st.integers(low, 9)), draw(st.integers(1, 3)))


@st.composite
def conv_cases(draw):
    shape = draw(images())
    strides = draw(pairs)
    dilation = (1, 1) if strides != (1, 1) else draw(pairs)
    kernel = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    padding = draw(paddings)
    activation = draw(st.sampled_from(["linear", "tanh", "relu", "sigmoid"]))
    options = {"kernel_size": kernel, "padding": padding, "strides": strides, "dilation_rate": dilation}
    return LayerSpec("conv2d", draw(st.integers(1, 4)), activation, options), shape


@st.composite
def dilated_conv_cases(draw, axes):
    """A Conv2D whose kernel is dilated along each of `axes` (0: height, 1: width): dilation d >= 2 and kernel size
    k >= 2 there (a kernel of size 1 has no gaps to dilate), the image at least the dilated span d (k - 1) + 1 when
    the padding is valid; the other axis drawn freely (dilation 1 to 3)."""
    kernel, dilation, image = [], [], []
    for axis in (0, 1):
        k = draw(st.integers(2, 3)) if axis in axes else draw(st.integers(1, 3))
        d = draw(st.integers(2, 3)) if axis in axes else draw(st.integers(1, 3))
        kernel.append(k)
        dilation.append(d)
        image.append(draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 4)))
    options = {
        "kernel_size": tuple(kernel),
        "padding": draw(paddings),
        "strides": (1, 1),  # Keras: strides > 1 or dilation > 1, not both
        "dilation_rate": tuple(dilation),
    }
    activation = draw(st.sampled_from(["linear", "tanh", "relu", "sigmoid"]))
    return LayerSpec("conv2d", draw(st.integers(1, 3)), activation, options), (*image, draw(st.integers(1, 3)))


def pool_cases(kind):
    @st.composite
    def cases(draw):
        shape = draw(images())
        size = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
        strides = draw(st.one_of(st.just(size), pairs))  # strides < pool: overlapping windows
        return LayerSpec(
            kind, None, "linear", {"pool_size": size, "padding": draw(paddings), "strides": strides}
        ), shape

    return cases()


@st.composite
def reshape_cases(draw):
    shape = draw(images())
    n = int(np.prod(shape))
    target = draw(st.sampled_from([(n,), (shape[1], shape[0], shape[2]), (1, n, 1), (n, 1, 1)]))
    return LayerSpec("reshape", None, "linear", {"target_shape": target}), shape


@st.composite
def zero_padding_cases(draw):
    sides = draw(st.tuples(*[st.integers(0, 3)] * 4))
    padding = ((sides[0], sides[1]), (sides[2], sides[3]))
    return LayerSpec("zero_padding2d", None, "linear", {"padding": padding}), draw(images())


@st.composite
def depthwise_cases(draw):
    spec, shape = draw(conv_cases())
    options = {k: v for k, v in spec.options.items()}
    strides = (spec.options["strides"][0],) * 2  # TensorFlow's depthwise kernel: one stride for both axes
    options.update(depth_multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()), strides=strides)
    return LayerSpec("depthwise_conv2d", None, spec.activation, options), shape


@st.composite
def relu_cases(draw):
    """keras.layers.ReLU over every branch of Keras's formula: plain, relu6, a clip, a threshold, a slope, each
    combination (the leaky_relu shortcut is slope alone)."""
    max_value = draw(st.sampled_from([None, 6.0, 0.5, 1.5]))
    options = {
        "max_value": max_value,
        "negative_slope": draw(st.sampled_from([0.0, 0.1, 0.3])),
        "threshold": draw(st.sampled_from([0.0, 0.2])) if max_value != 0.5 else 0.0,
    }
    return LayerSpec("re_lu", None, "linear", options), draw(images())


#: Per image layer kind: a strategy of (spec, input shape). The shape-agnostic MLP layers are covered by the matrix.
CASES = {
    "conv2d": conv_cases(),
    "max_pooling2d": pool_cases("max_pooling2d"),
    "average_pooling2d": pool_cases("average_pooling2d"),
    "global_average_pooling2d": images().map(lambda s: (LayerSpec("global_average_pooling2d"), s)),
    "flatten": images().map(lambda s: (LayerSpec("flatten"), s)),
    "reshape": reshape_cases(),
    "zero_padding2d": zero_padding_cases(),
    "depthwise_conv2d": depthwise_cases(),
    "activation": st.tuples(st.sampled_from(GRADIENT_ACTIVATIONS), images()).map(
        lambda c: (LayerSpec("activation", None, c[0]), c[1])
    ),
    "re_lu": relu_cases(),
}
MLP_KINDS = {"dense", "dropout", "batch_normalization", "layer_normalization"}


def fits(spec, shape):
    try:
        Architecture.of_shape(shape, (spec,)).shapes()
    except BadInputError:
        return False
    return True


def test_every_layer_kind_has_cases_here_or_in_the_matrix():
    """Image kinds have cases here, sequence kinds in tests/test_rnn_parity.py (which checks that each has its
    cases, and has LayerNormalization's), the encoder's GlobalAveragePooling1D and PositionEmbedding in
    tests/test_sequence_layers.py, attention in tests/test_attention_parity.py, and every non-MLP kind is in a
    network of the matrix; LayerNormalization, a Dense per time step and the encoder's layers are in its sequence
    networks; every merge kind, and every other kind called on several tensors (MultiHeadAttention), is in its
    graph networks."""
    assert set(MERGE_LAYERS) <= set(MERGE_KINDS)
    known = set(CASES) | MLP_KINDS | set(SEQUENCE_LAYERS) | set(MERGE_LAYERS) | set(ENCODER_LAYERS)
    known |= set(ATTENTION_LAYERS)  # cases in tests/test_attention_parity.py
    assert known == set(LAYERS) == set(KERAS_LAYERS)
    assert not set(CASES) & set(SEQUENCE_LAYERS)
    in_matrix = {spec.kind for arch in IMAGE_ARCHS for spec in Architecture.parse(arch).layers}
    in_sequences = {spec.kind for arch in SEQUENCE_ARCHS for spec in Architecture.parse(arch).layers}
    in_graphs = {spec.kind for net in GRAPH_NETWORKS.values() for _, spec in net.build("softmax").layers}
    assert set(MERGE_KINDS) <= in_graphs, f"kinds of several inputs in no graph network: {set(MERGE_KINDS) - in_graphs}"
    assert set(LAYERS) <= in_matrix | in_sequences | in_graphs | {"dense"} | MLP_KINDS
    assert set(CASES) <= in_matrix
    assert set(SEQUENCE_LAYERS) | set(ENCODER_LAYERS) | {"layer_normalization"} <= in_sequences
    per_step = [Architecture.parse(arch) for arch in SEQUENCE_ARCHS]
    assert any(
        spec.kind == "dense" and len(shape) == 2
        for arch in per_step
        for spec, shape in zip(arch.layers, [arch.input_shape, *arch.shapes()])
    ), "a Dense per time step"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_layer_agrees_with_keras_on_random_shapes(kind, dtype):
    """Random nonzero parameters (biases too), a random upstream gradient, and the numerical witness."""

    @PROPERTY
    @given(case=CASES[kind].filter(lambda c: fits(*c)), seed=st.integers(0, 2**16))
    def run(case, seed):
        spec, shape = case
        report = check_layer(
            LAYERS[kind].from_spec(spec), KERAS_LAYERS[kind](spec, dtype), shape, batch=3, dtype=dtype, seed=seed
        )
        assert report.passed, f"{spec} on {shape}: " + "\n".join(map(str, report.failures))

    run()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axes", [(0,), (1,), (0, 1)], ids=["height", "width", "both"])
def test_dilated_kernels_agree_with_keras_along_each_axis(axes, dtype):
    """Dilation along the height with a kernel taller than 1, along the width with a kernel wider than 1, and along
    both: every row passes (a Conv2D that ignores the dilation of either axis reads other cells and fails)."""

    @PROPERTY
    @given(case=dilated_conv_cases(axes), seed=st.integers(0, 2**16))
    def run(case, seed):
        spec, shape = case
        (kh, kw), (dh, dw) = spec.options["kernel_size"], spec.options["dilation_rate"]
        assert all((kh, kw)[a] > 1 and (dh, dw)[a] > 1 for a in axes)  # the case is what it says
        report = check_layer(
            LAYERS["conv2d"].from_spec(spec),
            KERAS_LAYERS["conv2d"](spec, dtype),
            shape,
            batch=2,
            dtype=dtype,
            seed=seed,
        )
        assert report.passed, f"{spec} on {shape}: " + "\n".join(map(str, report.failures))

    run()


@pytest.mark.parametrize(
    "kernel, dilation, shape",
    [
        ((3, 1), (2, 1), (6, 4, 1)),
        ((1, 3), (1, 2), (4, 6, 1)),
        ((2, 3), (3, 2), (7, 7, 2)),
        ((3, 2), (2, 3), (6, 5, 1)),
    ],
    ids=["height_only", "width_only", "both_2x3", "both_3x2"],
)
def test_a_conv2d_with_a_dilated_kernel_gives_keras_outputs(kernel, dilation, shape):
    """Fixed cases, independent of what the random draws hit: the forward pass equals Keras's Conv2D on a dilated
    kernel taller (or wider) than 1, in float64, and the whole check passes."""
    spec = LayerSpec(
        "conv2d", 2, "tanh", {"kernel_size": kernel, "padding": "valid", "strides": (1, 1), "dilation_rate": dilation}
    )
    report = check_layer(LAYERS["conv2d"].from_spec(spec), KERAS_LAYERS["conv2d"](spec, "float64"), shape, batch=2)
    assert report.passed, "\n".join(map(str, report.failures))
    output = next(row for row in report.rows if row.name == "output")
    assert output.shape[1:3] == tuple(s - d * (k - 1) for s, d, k in zip(shape, dilation, kernel))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "pool, strides, padding",
    [((2, 2), (2, 2), "valid"), ((3, 3), (1, 1), "valid"), ((2, 3), (1, 2), "same"), ((3, 3), (2, 2), "same")],
)
def test_max_pool_routes_tied_maxima_as_tensorflow_does(pool, strides, padding, dtype):
    """Inputs of 0s and 1s tie in almost every window; with overlapping windows one cell is the chosen maximum of
    several windows. Scratch's dX equals TensorFlow's MaxPoolGrad bit for bit: one cell per window, the first
    maximum in row-major order, overlaps added."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, size=(3, 7, 6, 2)).astype(dtype)
    spec = LayerSpec("max_pooling2d", None, "linear", {"pool_size": pool, "padding": padding, "strides": strides})
    model = Sequential([LAYERS["max_pooling2d"].from_spec(spec)], input_shape=x.shape[1:], dtype=dtype)
    keras_layer = KERAS_LAYERS["max_pooling2d"](spec, dtype)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = keras_layer(xt)
    upstream = rng.standard_normal(out.shape).astype(dtype)
    theirs = tape.gradient(out, xt, output_gradients=tf.constant(upstream)).numpy()
    a = model.forward(x, training=True)
    ours = model.layers[0].backward(upstream)
    np.testing.assert_array_equal(a, out.numpy())
    np.testing.assert_array_equal(ours, theirs)
    assert np.count_nonzero(ours) < np.count_nonzero(np.broadcast_to(1, x.shape))  # ties: not every cell gets one
    if strides[0] < pool[0]:  # overlapping windows: some cell collects the gradient of more than one window
        counts = model.layers[0].backward(np.ones_like(upstream))
        assert counts.max() >= 2


def wrong_backward(cls):
    """`cls` with a backward pass that is wrong by one part in 10^6 in one entry of dL/dX (and of the first
    parameter's gradient, for a layer with parameters)."""

    class Wrong(cls):
        def backward(self, dy, *args, **kwargs):
            dx = super().backward(dy, *args, **kwargs)
            if self.params:
                self.grads[0].flat[0] += 1e-6 * np.abs(self.grads[0]).max()
            if dx is None:  # a training step's first layer
                return None
            dx = dx.copy()
            dx.flat[0] += 1e-6 * np.abs(dx).max()
            return dx

    return Wrong


FAIL_CASES = {
    "conv2d": (
        LayerSpec(
            "conv2d", 3, "tanh", {"kernel_size": (3, 2), "padding": "same", "strides": (2, 1), "dilation_rate": (1, 1)}
        ),
        (5, 6, 2),
    ),
    "max_pooling2d": (
        LayerSpec("max_pooling2d", None, "linear", {"pool_size": (3, 3), "padding": "valid", "strides": (1, 1)}),
        (5, 5, 2),
    ),
    "average_pooling2d": (
        LayerSpec("average_pooling2d", None, "linear", {"pool_size": (2, 2), "padding": "same", "strides": (2, 2)}),
        (5, 5, 2),
    ),
    "global_average_pooling2d": (LayerSpec("global_average_pooling2d"), (4, 3, 2)),
    "flatten": (LayerSpec("flatten"), (4, 3, 2)),
    "reshape": (LayerSpec("reshape", None, "linear", {"target_shape": (6, 4)}), (4, 3, 2)),
    "zero_padding2d": (LayerSpec("zero_padding2d", None, "linear", {"padding": ((0, 1), (2, 1))}), (4, 3, 2)),
    "depthwise_conv2d": (
        LayerSpec(
            "depthwise_conv2d",
            None,
            "tanh",
            {
                "kernel_size": (3, 2),
                "padding": "same",
                "strides": (2, 2),
                "dilation_rate": (1, 1),
                "depth_multiplier": 2,
                "use_bias": False,
            },
        ),
        (5, 6, 2),
    ),
    "activation": (LayerSpec("activation", None, "elu"), (4, 3, 2)),
    "re_lu": (
        LayerSpec("re_lu", None, "linear", {"max_value": 1.5, "negative_slope": 0.1, "threshold": 0.2}),
        (4, 3, 2),
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_wrong_backward_fails_the_check(kind):
    """The same check passes the layer and fails it with one entry of dL/dX (and of dL/dkernel) off by 1e-6:
    exactly the rows of what was changed fail."""
    spec, shape = FAIL_CASES[kind]
    right = check_layer(LAYERS[kind].from_spec(spec), KERAS_LAYERS[kind](spec, "float64"), shape, batch=3)
    assert right.passed
    wrong = wrong_backward(LAYERS[kind]).from_spec(spec)
    report = check_layer(wrong, KERAS_LAYERS[kind](spec, "float64"), shape, batch=3)
    failed = {row.name for row in report.failures}
    expected = {"grad input"} | ({f"grad {wrong.name}/kernel"} if kind in ("conv2d", "depthwise_conv2d") else set())
    assert expected <= failed and not report.passed
    assert not {row for row in failed - expected if not row.lower().startswith("taylor remainder")}, failed


# ----- training on digits as 8x8x1 images ---------------------------------------------------------------------------
CNN = "8x8x1-conv6k3:relu:same-pool2-conv8k3:tanh-flatten-10"


@pytest.fixture(scope="module")
def digit_images():
    from compare.data import as_inputs, load_dataset

    x, y = load_dataset("digits")
    return as_inputs(x, (8, 8, 1)), y


def test_a_cnn_trains_in_lockstep_on_digits_with_identical_predictions(digit_images):
    from compare.training import TRAIN_F64_TOL, run_training

    x, y = digit_images
    report = run_training(CNN, x, y, "adam", {"learning_rate": 0.01}, epochs=3, batch_size=64)
    assert len(report.steps) == 3 * 29
    assert report.final_param_diff <= TRAIN_F64_TOL and report.same_predictions and report.passed
    assert report.epochs[-1]["acc_scratch"] > 0.8  # it learned: from chance (0.1) to most digits


@pytest.mark.parametrize("case", ["sgd_nesterov", "adamw", "rmsprop_centered_momentum", "adagrad", "sgd_clipnorm"])
def test_every_kind_of_optimizer_steps_a_cnn_in_lockstep(case, digit_images):
    from test_optimizers import CASES

    from compare.training import TRAIN_F64_TOL, run_training

    x, y = digit_images
    report = run_training(CNN, x[:240], y[:240], case.split("_")[0], dict(CASES[case]), epochs=2, batch_size=32)
    assert report.passed and report.final_param_diff <= TRAIN_F64_TOL, report.verdict()


def test_a_cnn_trains_in_float32_within_the_float32_bound(digit_images):
    from compare.training import run_training

    x, y = digit_images
    report = run_training(
        "8x8x1-conv4k3:relu-avgpool2:same-gap-10", x[:512], y[:512], "adam", epochs=2, dtype="float32"
    )
    assert report.passed, report.verdict()


def test_the_plot_shows_the_learned_filters_of_both_sides(digit_images, tmp_path):
    pytest.importorskip("matplotlib")
    from compare.plot import filter_tiles, plot_training
    from compare.training import run_training

    x, y = digit_images
    report = run_training(CNN, x[:128], y[:128], "sgd", epochs=1, batch_size=32)
    ours, theirs = report.filters["scratch"], report.filters["keras"]
    assert ours.shape == theirs.shape == (3, 3, 1, 6)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)
    tiles = filter_tiles(ours)
    assert tiles.shape == (4, 6 * 4 - 1) and np.isnan(tiles[:, 3]).all()
    np.testing.assert_array_equal(tiles[:3, :3], ours[:, :, 0, 0])
    plot_training(report, str(tmp_path / "cnn.png"))
    assert (tmp_path / "cnn.png").read_bytes()[:4] == b"\x89PNG"


# ----- the grammar, and bad input on images -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,canonical,shapes",
    [
        (
            "8x8x1-conv8k3-pool2-flatten-10",
            "8x8x1-conv8k3:relu-pool2-flatten-10:softmax",
            [(6, 6, 8), (3, 3, 8), (72,), (10,)],
        ),
        (
            "9x7x2-conv4k3x2:tanh:same:s=2-pool3:s=1-avgpool2:same-gap-5",
            "9x7x2-conv4k3x2:tanh:same:s=2-pool3:s=1-avgpool2:same-gap-5:softmax",
            [(5, 4, 4), (3, 2, 4), (2, 1, 4), (4,), (5,)],
        ),
        ("8x5x1-conv2k3:s=3-flatten-3", "8x5x1-conv2k3:relu:s=3-flatten-3:softmax", [(2, 1, 2), (4,), (3,)]),
        ("7x7x1-conv2k3:same:d=2-flatten-3", "7x7x1-conv2k3:relu:same:d=2-flatten-3:softmax", [(7, 7, 2), (98,), (3,)]),
        (
            "9x9x3-pad0x1x0x1-conv4k3:linear:s=2:nobias-bn-relu6-dw3:same:nobias-relu:max=1.5:t=0.25-act:tanh-gap-3",
            "9x9x3-pad0x1x0x1-conv4k3:linear:s=2:nobias-bn-relu6-dw3:same:nobias-relu:max=1.5:t=0.25-act:tanh-gap-3:softmax",
            [(10, 10, 3), (4, 4, 4), (4, 4, 4), (4, 4, 4), (4, 4, 4), (4, 4, 4), (4, 4, 4), (4,), (3,)],
        ),
        (
            "7x6x2-pad1x2-dw3x2:relu:s=2:m=2-flatten-3",
            "7x6x2-pad1x2-dw3x2:relu:s=2:m=2-flatten-3:softmax",
            [(9, 10, 2), (4, 5, 4), (80,), (3,)],
        ),
        (
            "6x6x1-pad0-relu:slope=0.2-act:softmax-flatten-2",
            "6x6x1-pad0-relu:slope=0.2-act:softmax-flatten-2:softmax",
            [(6, 6, 1), (6, 6, 1), (6, 6, 1), (36,), (2,)],
        ),
        (
            "24-reshape4x3x2-maxpool2-flatten-2",
            "24-reshape4x3x2-pool2-flatten-2:softmax",
            [(4, 3, 2), (2, 1, 2), (4,), (2,)],
        ),
    ],
)
def test_the_architecture_reads_image_networks_and_writes_them_back(text, canonical, shapes):
    arch = Architecture.parse(text)
    assert str(arch) == canonical and Architecture.parse(canonical) == arch
    assert arch.shapes() == shapes
    assert Sequential.from_architecture(arch).layer_output_shapes == shapes  # the same shapes, built


IMAGE_BAD_INPUT = {
    "dense on an image": (["--arch", "8x8x1-10"], "layer 1 (dense) takes inputs of shape (D,), got (8, 8, 1)"),
    "kernel larger than the image": (["--arch", "8x8x1-conv8k9-flatten-10"], "a 9x9 window (dilation 1) does not fit"),
    "strides with dilation": (["--arch", "8x8x1-conv8k3:s=2:d=2-flatten-10"], "takes strides > 1 or dilation > 1"),
    "image output": (["--arch", "8x8x1-conv8k3"], "the output has shape (6, 6, 8); end with features"),
    "zero pool": (["--arch", "8x8x1-pool0-flatten-10"], "layer 1 pool size '0' is not a positive integer"),
    "zero stride": (["--arch", "8x8x1-conv8k3:s=0-flatten-10"], "layer 1 strides '0' is not a positive integer"),
    "two activations": (["--arch", "8x8x1-conv8k3:relu:tanh-flatten-10"], "layer 1 gives an activation twice"),
    "reshape that loses values": (["--arch", "8x8x1-reshape3x3-10"], "cannot reshape (8, 8, 1) (64 values) to (3, 3)"),
    "four input axes": (["--arch", "8x8x1x1-flatten-10"], "input width '8x8x1x1' is not a positive integer or HxWxC"),
    "conv on features": (["--arch", "64-conv3k3-flatten-10"], "layer 1 (conv2d) takes images of shape (height, width"),
    "malformed conv token": (["--arch", "8x8x1-conv8-flatten-10"], "layer 1 'conv8'; expected convFkK"),
    "three paddings": (
        ["--arch", "8x8x1-pad1x2x3-flatten-10"],
        "layer 1 'pad1x2x3'; expected padP, padHxW or padTxBxLxR",
    ),
    "depth multiplier 0": (["--arch", "8x8x1-dw3:m=0-flatten-10"], "layer 1 depth_multiplier '0' is not a positive"),
    "dw strides with dilation": (["--arch", "8x8x1-dw3:s=2:d=2-flatten-10"], "takes strides > 1 or dilation > 1"),
    "dw unequal strides": (["--arch", "8x8x1-dw3:s=2x1-flatten-10"], "layer 1 strides 2x1: TensorFlow's depthwise"),
    "dw on features": (["--arch", "64-dw3-flatten-10"], "layer 1 (depthwise_conv2d) takes images of shape (height"),
    "padding on features": (["--arch", "64-pad1-flatten-10"], "layer 1 (zero_padding2d) takes images of shape"),
    "relu6 with max": (
        ["--arch", "8x8x1-relu6:max=2-flatten-10"],
        "layer 1 option 'max=2' (unknown; known: slope=, t=)",
    ),
    "negative threshold": (["--arch", "8x8x1-relu:t=-1-flatten-10"], "layer 1 t='' is not a number >= 0"),
    "relu slope twice": (["--arch", "8x8x1-relu:slope=0.1:slope=0.2-flatten-10"], "layer 1 gives slope= twice"),
    "unknown activation layer": (["--arch", "8x8x1-act:swish-flatten-10"], "unknown activation 'swish'"),
    "activation layer without a name": (["--arch", "8x8x1-act-flatten-10"], "layer 1 'act'; expected act:NAME"),
    "an image too large": (["--arch", "1000x1000x3-conv512k3-flatten-10"], "use a smaller batch or network"),
    "digits into a 28x28 network": (
        ["--data", "digits", "--arch", "28x28x1-conv8k3-pool2-flatten-10"],
        "expects 784 and 10 (try --arch 64-32-10 or 8x8x1-conv8k3-pool2-flatten-10)",
    ),
}


@pytest.mark.parametrize("case", sorted(IMAGE_BAD_INPUT))
def test_bad_image_networks_are_one_line_and_exit_2(case, capsys):
    from compare import cli

    args, message = IMAGE_BAD_INPUT[case]
    command = "train" if "digits" in args else "compare"
    code = cli.main([command, *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: LAYERS["conv2d"](0, 3), "filters must be a positive integer, got 0"),
        (lambda: LAYERS["conv2d"](2, (3,)), "kernel_size must be a positive integer or a pair of them, got (3,)"),
        (lambda: LAYERS["conv2d"](2, 3, padding="full"), "padding must be 'valid' or 'same', got 'full'"),
        (lambda: LAYERS["conv2d"](2, 3, strides=2, dilation_rate=2), "strides > 1 or dilation > 1, not both"),
        (lambda: LAYERS["max_pooling2d"](pool_size=0), "pool_size must be a positive integer or a pair of them"),
        (lambda: LAYERS["average_pooling2d"](strides=(1, True)), "strides must be a positive integer or a pair"),
        (lambda: Sequential([LAYERS["conv2d"](2, 3)], input_shape=(8,)), "takes images of shape (height, width"),
        (lambda: Sequential([LAYERS["conv2d"](2, 5)], input_shape=(4, 4, 1)), "does not fit in the input (4, 4, 1)"),
        (lambda: Sequential([LAYERS["reshape"]((5,))], input_shape=(2, 3)), "cannot reshape (2, 3) to (5,)"),
        (lambda: LAYERS["conv2d"](2, 3, use_bias="no"), "Conv2D 'conv2d': use_bias must be True or False, got 'no'"),
        (lambda: LAYERS["zero_padding2d"](-1), "ZeroPadding2D 'zero_padding2d': padding must be a non-negative"),
        (lambda: LAYERS["zero_padding2d"](((1, -2), (0, 0))), "padding must be a non-negative integer, a pair"),
        (lambda: LAYERS["zero_padding2d"]((1, 2, 3)), "got (1, 2, 3)"),
        (
            lambda: LAYERS["depthwise_conv2d"](3, depth_multiplier=0),
            "DepthwiseConv2D 'depthwise_conv2d': depth_multiplier must be a positive integer, got 0",
        ),
        (lambda: LAYERS["depthwise_conv2d"](3, strides=2, dilation_rate=2), "strides > 1 or dilation > 1, not both"),
        (lambda: LAYERS["depthwise_conv2d"](3, strides=(1, 2)), "strides (1, 2): TensorFlow's depthwise convolution"),
        (lambda: LAYERS["depthwise_conv2d"](0), "kernel_size must be a positive integer or a pair of them, got 0"),
        (lambda: Sequential([LAYERS["zero_padding2d"](1)], input_shape=(8,)), "takes images of shape (height, width"),
        (lambda: LAYERS["re_lu"](max_value=-1.0), "ReLU 're_lu': max_value must be None or a number >= 0, got -1.0"),
        (lambda: LAYERS["re_lu"](negative_slope=None), "negative_slope must be a number >= 0, got None"),
        (lambda: LAYERS["re_lu"](threshold=float("nan")), "threshold must be a number >= 0, got nan"),
        (lambda: LAYERS["activation"]("swish"), "unknown activation 'swish'"),
    ],
)
def test_bad_image_layers_are_refused_from_python(make, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_max_pool_with_nan_takes_and_routes_to_the_first_nan(dtype):
    """A window holding NaN outputs NaN, and its gradient goes to its first NaN in row-major order (np.argmax's
    choice); windows without NaN are unaffected."""
    x = np.arange(2 * 4 * 4 * 1, dtype=dtype).reshape(2, 4, 4, 1)
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = np.nan  # window (0, 0) of sample 0: NaN at offsets (0, 1) and (1, 0)
    layer = LAYERS["max_pooling2d"](2)
    Sequential([layer], input_shape=(4, 4, 1), dtype=dtype)
    a = layer.forward(x, training=True)
    assert np.isnan(a[0, 0, 0, 0]) and not np.isnan(np.delete(a.ravel(), 0)).any()
    dx = layer.backward(np.ones_like(a))
    assert dx[0, 0, 1, 0] == 1 and dx[0, 1, 0, 0] == 0 and dx[0, :2, :2].sum() == 1
