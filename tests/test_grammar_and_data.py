"""The grammar and the data never change a request silently.

- An option given twice on one architecture token is refused, naming the token and both values, whether the second
  contradicts the first (`conv2k3:same:valid`) or repeats it: no later value silently wins.
- A data set is read only in shapes that keep its meaning (digits: 64 features, 8x8x1 images, 8 rows of 8): a shape
  with as many values that would rearrange them (digits as 4x4x4 or 4x16) is refused by compare, train, saved Keras
  models and the Python entry points, saying which shapes are accepted.
- A run's memory is estimated from the shapes before anything is built: the adding problem from T, a training step,
  a pass over the whole set, the step records of epochs x batches.
"""

import struct
import tracemalloc

import numpy as np
import pytest
from test_bad_input_round_two import assert_refused, run

from compare import cli
from from_scratch import Architecture, BadInputError

# ----- options given twice ----------------------------------------------------------------------------------------
#: arch -> (the token, the option named, the first value, the second value). The issue's two examples, then the same
#: class on every token kind that takes ':' options: Conv2D, both poolings, SimpleRNN, GRU, LSTM, Dense.
TWICE = {
    "8x8x1-conv2k3:same:valid-flatten-10": ("conv2k3:same:valid", "padding", "same", "valid"),
    "8x8x1-pool2:valid:same-flatten-10": ("pool2:valid:same", "padding", "valid", "same"),
    "8x8x1-avgpool2:same:valid-flatten-10": ("avgpool2:same:valid", "padding", "same", "valid"),
    "8x8x1-conv2k3:valid:valid-flatten-10": ("conv2k3:valid:valid", "padding", "valid", "valid"),
    "8x8x1-conv2k3:s=1:strides=2-flatten-10": ("conv2k3:s=1:strides=2", "strides", "s=1", "strides=2"),
    "8x8x1-conv2k3:d=2:d=2-flatten-10": ("conv2k3:d=2:d=2", "dilation_rate", "d=2", "d=2"),
    "8x8x1-conv2k3:d=1:dilation_rate=2-flatten-10": (
        "conv2k3:d=1:dilation_rate=2",
        "dilation_rate",
        "d=1",
        "dilation_rate=2",
    ),
    "8x8x1-conv2k3:tanh:same:relu-flatten-10": ("conv2k3:tanh:same:relu", "an activation", "tanh", "relu"),
    "8x8x1-pool2:s=1:s=2-flatten-10": ("pool2:s=1:s=2", "strides", "s=1", "s=2"),
    "8x8-rnn4:tanh:seq:relu-flatten-10": ("rnn4:tanh:seq:relu", "an activation", "tanh", "relu"),
    "8x8-rnn4:relu:relu-10": ("rnn4:relu:relu", "an activation", "relu", "relu"),
    "8x8-lstm4:seq:seq-flatten-10": ("lstm4:seq:seq", "seq", "seq", "seq"),
    "8x8-gru4:reset_before:seq:reset_before-flatten-10": (
        "gru4:reset_before:seq:reset_before",
        "reset_before",
        "reset_before",
        "reset_before",
    ),
    "4-3:tanh:relu-2": ("3:tanh:relu", "an activation", "tanh", "relu"),
    "4-3:tanh:l1=0.1:sigmoid-2": ("3:tanh:l1=0.1:sigmoid", "an activation", "tanh", "sigmoid"),
    "4-3:l2=0.01:l2=0.02-2": ("3:l2=0.01:l2=0.02", "l2=", "l2=0.01", "l2=0.02"),
    "4-3:relu:bias_l1=0.5:bias_l1=0.5-2": ("3:relu:bias_l1=0.5:bias_l1=0.5", "bias_l1=", "bias_l1=0.5", "bias_l1=0.5"),
}


def twice_message(token, option, first, second):
    return f"layer 1 gives {option} twice in {token!r} ({first!r} and {second!r}); give each option once"


@pytest.mark.parametrize("arch", sorted(TWICE))
def test_an_option_given_twice_is_refused_from_python(arch):
    with pytest.raises(BadInputError) as info:
        Architecture.parse(arch)
    assert twice_message(*TWICE[arch]) in str(info.value)


@pytest.mark.parametrize("arch", sorted(TWICE))
def test_an_option_given_twice_is_one_line_and_exit_2(capsys, arch):
    assert_refused(*run(capsys, "compare", "--arch", arch), twice_message(*TWICE[arch]))


@pytest.mark.parametrize(
    "arch,header",
    [  # each option once, in any order, is read as written (and printed back in the canonical order)
        ("8x8x1-conv2k3:same:tanh:s=2-flatten-10", "8x8x1-conv2k3:tanh:same:s=2-flatten-10:softmax"),
        ("8x8x1-pool3:s=1:same-flatten-10", "8x8x1-pool3:same:s=1-flatten-10:softmax"),
        ("8x8x1-conv2k3:d=2:valid-flatten-10", "8x8x1-conv2k3:relu:d=2-flatten-10:softmax"),
        (
            "8x8-gru4:reset_before:seq-rnn3:seq:relu-flatten-10",
            "8x8-gru4:seq:reset_before-rnn3:relu:seq-flatten-10:softmax",
        ),
        ("4-3:tanh:l1=0.1:l2=0.2-2", "4-3:tanh:l1=0.1:l2=0.2-2:softmax"),
    ],
)
def test_each_option_once_in_any_order_is_accepted(arch, header):
    assert str(Architecture.parse(arch)) == header


def test_the_padding_written_is_the_padding_built():
    """Before the fix the last padding won silently: the header of conv2k3:same:valid said valid."""
    assert Architecture.parse("8x8x1-conv2k3:same-flatten-10").layers[0].options["padding"] == "same"
    assert Architecture.parse("8x8x1-pool2:same-flatten-10").layers[0].options["padding"] == "same"


# ----- data read only in shapes that keep its meaning -------------------------------------------------------------
#: (data set, architecture with as many inputs as a sample, the input shape printed). The issue's two examples (digits
#: as 4x4x4 images and as 4 steps of 16), then digits as 64 steps of one pixel and as 2x32 images, and the small sets'
#: features read as time steps or pixels.
REARRANGED = {
    "digits as 4x4x4 images": ("digits", "4x4x4-conv2k3-flatten-10", "4x4x4"),
    "digits as 4 steps of 16": ("digits", "4x16-lstm4-10", "4x16"),
    "digits as 64 steps of 1": ("digits", "64x1-rnn3-10", "64x1"),
    "digits as 2x32x1 images": ("digits", "2x32x1-conv2k2-flatten-10", "2x32x1"),
    "digits as 8x1x8 images (8 channels)": ("digits", "8x1x8-flatten-10", "8x1x8"),
    "xor as 2 steps of 1": ("xor", "2x1-rnn2-2", "2x1"),
    "iris as 2 steps of 2": ("iris", "2x2-gru2-3", "2x2"),
    "iris as a 2x2x1 image": ("iris", "2x2x1-conv2k1-flatten-3", "2x2x1"),
    "spirals as 1 step of 2": ("spirals", "1x2-lstm2-3", "1x2"),
}

DIGITS_LAYOUTS = "64 features (the values row by row), 8x8x1 images or 8x8 sequences (8 rows of 8, read top to bottom)"


@pytest.mark.parametrize("case", sorted(REARRANGED))
def test_train_refuses_a_shape_that_rearranges_the_data(capsys, case):
    data, arch, shape = REARRANGED[case]
    code, out, err = run(capsys, "train", "--data", data, "--arch", arch, "--epochs", "1")
    assert_refused(code, out, err, f"the architecture's input {shape} would rearrange its values")
    assert f"--data {data} keeps its meaning only as" in err


@pytest.mark.parametrize("case", [c for c in sorted(REARRANGED) if REARRANGED[c][0] == "digits"])
def test_compare_refuses_a_shape_that_rearranges_digits(capsys, case):
    data, arch, shape = REARRANGED[case]
    code, out, err = run(capsys, "compare", "--data", data, "--arch", arch)
    assert_refused(
        code, out, err, f"--data digits keeps its meaning only as {DIGITS_LAYOUTS}; the architecture's input {shape}"
    )
    assert "start the architecture with 64 or 8x8x1 or 8x8" in err


def test_the_python_entry_points_refuse_a_rearranging_shape():
    from compare.data import as_inputs, load_batch, load_dataset

    with pytest.raises(BadInputError, match="input 4x4x4 would rearrange"):
        load_batch("digits", 64, 10, 8, 0, (4, 4, 4))
    with pytest.raises(BadInputError, match="input 4x16 would rearrange"):
        load_dataset("digits", (4, 16))
    with pytest.raises(BadInputError, match="input 2x1 would rearrange"):
        load_dataset("xor", (2, 1))
    x, _ = load_dataset("digits")
    with pytest.raises(BadInputError, match="input 4x16 would rearrange"):
        as_inputs(x, (4, 16), "digits")
    with pytest.raises(BadInputError, match="--data digits has 64 values per sample; an input of 7x7 takes 49"):
        as_inputs(x, (7, 7), "digits")


def test_run_comparison_refuses_digits_as_4x4x4():
    from compare.harness import run_comparison

    with pytest.raises(BadInputError, match="input 4x4x4 would rearrange its values"):
        run_comparison("4x4x4-conv2k3-flatten-10", batch=4, data="digits")


@pytest.mark.parametrize(
    "data,shape,first_row",
    [  # each accepted layout reads the same pixels in the same order: sample 0's first row is pixels 0..7
        ("digits", (64,), slice(0, 8)),
        ("digits", (8, 8, 1), (0, slice(None), 0)),
        ("digits", (8, 8), (0, slice(None))),
    ],
)
def test_the_layouts_that_keep_digits_meaning_are_accepted(data, shape, first_row):
    from compare.data import as_inputs, load_batch, load_dataset

    x, _ = load_dataset(data, shape)
    images = as_inputs(x, shape, data)
    assert images.shape == (1797, *shape)
    np.testing.assert_array_equal(images[0][first_row], x[0, :8])
    xb, _ = load_batch(data, 64, 10, 5, 0, shape)
    assert xb.shape == (5, 64)


@pytest.mark.parametrize("data,shape", [("xor", (2,)), ("iris", (4,)), ("spirals", (2,)), ("regression", (1,))])
def test_features_are_accepted_as_features(data, shape):
    from compare.data import load_dataset

    x, _ = load_dataset(data, shape)
    assert x.shape[1:] == shape


def test_a_width_mismatch_keeps_its_own_message(capsys):
    """The layout check speaks only when the count of values fits: another width is the width check's, which names
    both widths and suggests an architecture."""
    code, out, err = run(capsys, "train", "--data", "digits", "--arch", "28x28-lstm8-10")
    assert_refused(code, out, err, "--data digits has 64 features and 10 outputs, but --arch 28x28-lstm8-10 expects")


def write_idx(path, array):
    path.write_bytes(
        bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape) + array.tobytes()
    )


def test_idx_images_are_read_only_in_their_own_shape(tmp_path, capsys):
    from compare.data import load_dataset

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "images.idx", rng.integers(0, 256, size=(12, 4, 6)).astype(np.uint8))
    write_idx(tmp_path / "labels.idx", rng.integers(0, 3, size=12).astype(np.uint8))
    name = f"idx:{tmp_path / 'images.idx'},{tmp_path / 'labels.idx'}"
    for shape in [(24,), (4, 6, 1), (4, 6)]:
        x, y = load_dataset(name, shape)
        assert x.shape == (12, 24) and y.shape == (12, 3)
    for shape in [(6, 4), (2, 12), (4, 3, 2), (24, 1)]:
        with pytest.raises(BadInputError, match="24 features .*, 4x6x1 images or 4x6 sequences"):
            load_dataset(name, shape)
    assert_refused(*run(capsys, "train", "--data", name, "--arch", "6x4-lstm2-3"), "the architecture's input 6x4")


# ----- saved Keras models read the data in their own shape --------------------------------------------------------
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    import keras

    folder = tmp_path_factory.mktemp("models")
    models = {
        "conv": [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="tanh"), keras.layers.Flatten()],
        "lstm416": [keras.Input((4, 16)), keras.layers.LSTM(3)],
    }
    for name, layers in models.items():
        model = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")], name=name)
        model.compile(loss="categorical_crossentropy")
        model.save(folder / f"{name}.keras")
    return folder


def test_compare_keras_model_refuses_digits_rearranged(saved_models, capsys):
    code, out, err = run(capsys, "compare", "--keras-model", saved_models / "lstm416.keras", "--data", "digits")
    assert_refused(code, out, err, "the architecture's input 4x16 would rearrange its values")


def test_train_keras_model_takes_digits_as_images(saved_models, capsys):
    """Before, the rows were handed to an image model flat: 'input: expected shape (N, 8, 8, 1), got (64, 64)'."""
    code, out, err = run(
        capsys, "train", "--keras-model", saved_models / "conv.keras", "--data", "digits", "--epochs", "1"
    )
    assert code == 0, out + err
    assert "PASS: 29 steps" in out
    assert_refused(
        *run(capsys, "train", "--keras-model", saved_models / "lstm416.keras", "--data", "digits"),
        "the architecture's input 4x16 would rearrange its values",
    )


# ----- memory estimated from the shapes before anything is built --------------------------------------------------
def peak_allocated(function, *args):
    """The largest traced allocation (Python and NumPy) while `function(*args)` runs, and its result or error."""
    tracemalloc.start()
    try:
        result = function(*args)
    except BadInputError as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, result


def test_train_adding_estimates_from_t_before_building(capsys):
    """The issue's example: 3000000x2-rnn1-1 built 48 GB of data, then fell to the out-of-memory handler."""
    peak, code = peak_allocated(cli.main, ["train", "--data", "adding", "--arch", "3000000x2-rnn1-1"])
    captured = capsys.readouterr()
    assert_refused(code, captured.out, captured.err, "train --data adding (a step on a batch of 64) needs about")
    assert "21000002 values x 40 copies" in captured.err
    assert peak < 50 * 2**20, peak


def test_the_adding_problem_refuses_a_t_it_cannot_hold_before_allocating():
    from compare.data import adding

    peak, error = peak_allocated(adding, 10**9)
    assert isinstance(error, BadInputError), error
    assert "--data adding with 1000000000 time steps needs about" in str(error) and "use a smaller T" in str(error)
    assert peak < 50 * 2**20, peak


def test_a_pass_over_the_whole_set_is_estimated():
    """A step on 64 samples fits, the per-epoch evaluation of all of them at once does not (x is a broadcast view:
    no memory of its own)."""
    from compare.training import run_training

    x = np.broadcast_to(np.zeros(1000), (10**7, 1000))
    y = np.broadcast_to(np.eye(2)[0], (10**7, 2))
    peak, error = peak_allocated(run_training, "1000-1000-2", x, y)
    assert isinstance(error, BadInputError), error
    assert "training (a pass over all 10000000 samples) needs about" in str(error)
    assert peak < 50 * 2**20, peak


def test_epochs_times_batches_is_estimated(capsys):
    code, out, err = run(capsys, "train", "--data", "xor", "--arch", "2-2-2", "--epochs", 10**12, "--batch", 1)
    assert_refused(code, out, err, "train --data xor (1000000000000 epochs of 4 steps) keeps 4000000000000 step")


@pytest.mark.parametrize("option,value", [("epochs", 0), ("batch_size", 0), ("batch_size", 2.5), ("max_steps", -1)])
def test_run_training_refuses_counts_that_are_no_counts(option, value):
    from compare.data import xor
    from compare.training import run_training

    with pytest.raises(BadInputError, match=f"run_training {option} must be an integer >= "):
        run_training("2-2-2", *xor(), **{option: value})


def test_valid_adding_and_digits_runs_are_not_refused(capsys):
    code, out, err = run(capsys, "train", "--data", "adding", "--arch", "12x2-rnn3-1", "--epochs", "1")
    assert code == 0 and "PASS: 16 steps" in out, out + err
    code, out, err = run(capsys, "compare", "--data", "digits", "--arch", "8x8-rnn3-10", "--batch", "8")
    assert code == 0 and "PASS" in out, out + err


# ----- the README says what from_keras loads ----------------------------------------------------------------------
def keras_model_section():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Your own Keras model") :]
    return section[: section.index("\n## ")]


def test_the_readme_lists_every_layer_class_from_keras_loads():
    from compare.keras_model import SPECS

    section = keras_model_section()
    loads, refused = section.split("Refused with exit code 2")
    other_classes = refused[refused.index("any other layer class (") :].split(")")[0]
    for cls in SPECS:
        assert f"`{cls.__name__}`" in loads, cls.__name__
        assert f"`{cls.__name__}`" not in other_classes, cls.__name__
    assert "Anything else (a Conv2D" not in section  # what the section said before Conv2D loaded


@pytest.mark.parametrize("name", ["GroupNormalization", "Conv1D", "SeparableConv2D"])
def test_the_layer_classes_the_readme_says_are_refused_are_refused(name):
    import keras

    from compare.keras_model import from_keras

    assert f"`{name}`" in keras_model_section().split("Refused with exit code 2")[1]
    shape = (6, 6, 1) if name == "SeparableConv2D" else (6, 4)
    layer = {
        "GroupNormalization": lambda: keras.layers.GroupNormalization(groups=2),
        "Conv1D": lambda: keras.layers.Conv1D(2, 3),
        "SeparableConv2D": lambda: keras.layers.SeparableConv2D(2, 3),
    }[name]()
    model = keras.Sequential([keras.Input(shape), layer, keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(BadInputError, match=f"\\({name}\\).*this layer class is not supported"):
        from_keras(model)


def test_a_saved_conv2d_model_loads_as_the_readme_says(saved_models):
    from compare.keras_model import from_keras

    scratch = from_keras(saved_models / "conv.keras")
    assert [layer.kind for layer in scratch.layers] == ["conv2d", "flatten", "dense"]


def test_run_comparison_estimates_before_building_either_side():
    """From Python, run_comparison built a 100000x100000 kernel (74.5 GiB) before its memory check."""
    from compare.harness import run_comparison

    peak, error = peak_allocated(run_comparison, "100000-100000-2", 1)
    assert isinstance(error, BadInputError), error
    assert "a batch of 1 needs about" in str(error) and "10000300002 weights" in str(error)
    assert peak < 50 * 2**20, peak


@pytest.mark.parametrize(
    "arch", ["8x8x1-conv2k3:s2:s2-flatten-10", "8x8x1-conv2k3:relu:s2-flatten-10", "4x3-rnn2:seqq-2"]
)
def test_a_mistyped_option_is_called_unknown_not_a_second_activation(arch):
    with pytest.raises(BadInputError, match="unknown activation") as caught:
        Architecture.parse(arch)
    assert "twice" not in str(caught.value)
