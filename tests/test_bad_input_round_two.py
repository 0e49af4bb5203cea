"""Bad input, round two: valid values never refused or altered, crashes never reported as "differs", nothing
silently changed, no work lost, nothing large allocated before a refusal, no nonsense accepted, strict JSON.

Each class is a table; the command line is asserted on its exit code, its one line on stderr and the absence of
a traceback, the Python API on BadInputError and its message.
"""

import json
import math
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from compare import cli
from from_scratch import Architecture, BadInputError, Dense, Dropout, Sequential
from from_scratch.errors import check_real
from from_scratch.losses import get_loss
from from_scratch.optimizers import get_optimizer


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code, out, err, message):
    assert code == 2, out + err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ----- 1. valid values are read exactly, never refused or rounded ---------------------------------------------------
@pytest.mark.parametrize(
    "text,option,value",
    [
        ("8-4:relu:l2=1e-05-3", "kernel_l2", 1e-05),
        ("8-4:relu:l2=0.0123456789-3", "kernel_l2", 0.0123456789),
        ("8-4:relu:l1=1E-3-3", "kernel_l1", 1e-3),
        ("8-4:relu:bias_l2=2.5e-10-3", "bias_l2", 2.5e-10),
        ("8-4:relu:l2=1_000e-8-3", "kernel_l2", 1e-05),
    ],
)
def test_architecture_reads_any_float_python_reads(text, option, value):
    arch = Architecture.parse(text)
    assert arch.layers[0].options[option] == value
    assert Architecture.parse(str(arch)) == arch  # printed exactly, read back to the same float


@pytest.mark.parametrize("rate", [5e-05, 0.9999999, 1e-300, 0.123456789012345, 0.5])
def test_dropout_rates_survive_the_text_form_exactly(rate):
    arch = Architecture.parse(f"6-dropout{rate!r}-3")
    assert arch.layers[0].options["rate"] == rate and Architecture.parse(str(arch)) == arch


@pytest.mark.parametrize(
    "flags,expect",
    [
        (["--l2", "0.00001"], "l2=1e-05"),
        (["--l2", "0.0123456789"], "l2=0.0123456789"),
        (["--dropout", "0.00005"], "dropout5e-05"),
        (["--dropout", "0.9999999"], "dropout0.9999999"),
        (["--l1", "1e-7", "--batchnorm"], "l1=1e-07-bn"),
    ],
)
def test_compare_flags_are_built_from_their_values(flags, expect):
    args = cli.build_parser().parse_args(["compare", "--arch", "8-4-3", *flags])
    assert expect in str(cli.architecture_from_args(args))


def test_full_width_digits_are_read_and_shown():
    assert str(Architecture.parse("６４-３２-10")) == "64-32:relu-10:softmax"


# ----- 2, 4, 5, 9. not a verdict: exit 2, one line; checked before any work and before TensorFlow loads ----------
CLI_CASES = {
    "negative seed": (["compare", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    "negative gradcheck": (["compare", "--gradcheck", "-1"], "argument --gradcheck: must be an integer >= 0"),
    "train negative seed": (["train", "--seed", "-3"], "argument --seed: must be an integer >= 0, got -3"),
    "superscript digit": (["compare", "--arch", "64-3²-10"], "layer 1 '3²' is neither a width (a positive integer)"),
    "l2 beyond float32": (["compare", "--l2", "1e300"], "regularizer l2 must be in [0, 3.40282e+38], got 1e+300"),
    "plot unknown format": (["train", "--plot", "out.xyz"], "--plot 'out.xyz': unknown image format '.xyz'"),
    "plot is a folder": (["train", "--plot", "."], "--plot '.' is a folder"),
    "plot folder missing": (["train", "--plot", "/nonexistent/dir/p.png"], "does not exist or is not writable"),
    "plot no extension": (["train", "--plot", "training"], "unknown image format '(none)'"),
    "examples plot path": (["examples", "--plot-path", "act.xyz"], "--plot 'act.xyz': unknown image format"),
    "huge float32 batch": (["compare", "--batch", "20000000", "--dtype", "float32"], "use a smaller batch"),
    "huge batch": (["compare", "--batch", "10000000"], "GiB are available; use a smaller batch"),
    "unknown data": (["compare", "--data", "nope"], "unknown data set 'nope'; known: digits, synthetic"),
    "all ignores arch": (["compare", "--all", "--arch", "4-2"], "--all runs the fixed matrix"),
    "all ignores dtype": (["compare", "--all", "--dtype", "float32"], "it does not take --dtype"),
    "too deep": (["compare", "--gradcheck", "0", "--arch", "-".join(["4"] * 1000 + ["2"])], "too deep for Keras"),
    "idx from a device": (["train", "--data", "idx:/dev/zero,/dev/zero"], "is not a regular file"),
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_not_a_verdict_is_one_line_and_exit_2(capsys, name):
    argv, message = CLI_CASES[name]
    try:
        code, out, err = run(capsys, *argv)
    except SystemExit as exit_info:  # argparse's own refusals
        code, captured = exit_info.code, capsys.readouterr()
        out, err = captured.out, captured.err
    assert_refused(code, out, err, message)


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--arch", "64-x-10"],
        ["compare", "--loss", "nope"],
        ["compare", "--batch", "10000000"],
        ["train", "--plot", "out.xyz"],
        ["compare", "--l2", "-1"],
    ],
)
def test_bad_arguments_are_refused_before_tensorflow_loads(argv):
    """Fail fast: the refusal comes without importing TensorFlow (which takes seconds)."""
    code = (
        "import sys\nfrom compare import cli\n"
        f"code = cli.main({argv!r})\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\nsys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "TensorFlow was imported" not in result.stderr


def test_an_unexpected_error_is_one_line_internal_error_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(cli, "run_examples", lambda args: {}["boom"])
    monkeypatch.setitem(cli.COMMANDS, "examples", cli.run_examples)
    code, out, err = run(capsys, "examples")
    assert_refused(code, out, err, "internal error (a bug in backprop-parity; please report it): KeyError: 'boom'")


def test_an_interrupted_training_reports_the_finished_epochs_and_exits_130(capsys, monkeypatch):
    from from_scratch.model import Sequential

    calls = {"n": 0}
    original = Sequential.train_step

    def step_then_interrupt(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:  # xor has 4 samples: one step per epoch at batch 4; the 3rd step is epoch 3
            raise KeyboardInterrupt
        return original(self, x, y)

    monkeypatch.setattr(Sequential, "train_step", step_then_interrupt)
    code, out, err = run(capsys, "train", "--data", "xor", "--arch", "2-4-2", "--epochs", "5", "--batch", "4")
    assert code == 130
    assert "interrupted after 2 of 5 epochs (2 steps); no verdict" in err and "Traceback" not in err
    assert out.count("\n1 ") + out.count("\n2 ") >= 2 and "PASS" not in out  # the two finished epochs, no verdict


def test_the_memory_refusal_allocates_nothing():
    from compare.data import check_memory

    with pytest.raises(BadInputError, match=r"needs about [0-9.]+ GiB .* but [0-9.]+ GiB are available"):
        check_memory("a run", 10**12, [1000, 1000])  # 3e17 bytes: refused from the shapes alone
    check_memory("a run", 8, [4, 3])  # small: accepted


# ----- 3. nothing silently changed: IDX files ------------------------------------------------------------------------
def idx_file(path, data, type_code=0x08, dims=None):
    data = np.asarray(data)
    dims = data.shape if dims is None else dims
    fmt = {0x08: ">u1", 0x09: ">i1", 0x0D: ">f4"}[type_code]
    path.write_bytes(
        bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">i", d) for d in dims) + data.astype(fmt).tobytes()
    )
    return str(path)


@pytest.mark.parametrize(
    "labels,type_code,message",
    [
        ([0, 1, -1, 1], 0x09, "label -1 at position 2 of the file is not a class index"),
        ([0, 1.5, 1, 0], 0x0D, "label 1.5 at position 1 of the file is not a class index"),
        ([0, 1, 1, -2], 0x09, "label -2 at position 3"),
    ],
)
def test_idx_labels_that_are_not_class_indices_are_refused_with_their_position(tmp_path, labels, type_code, message):
    from compare.data import idx

    images = idx_file(tmp_path / "x.idx", np.zeros((4, 2, 2)))
    with pytest.raises(BadInputError, match=message):
        idx(images, idx_file(tmp_path / "y.idx", labels, type_code))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">i", 10**9)), "truncated or padded"),
        (lambda p: p.write_bytes(b"\x00\x00\x08\x03\x00\x00"), "truncated in its header"),
        (lambda p: p.write_bytes(b"\x01\x02\x03\x04rest"), "bad magic number"),
        (lambda p: p.write_bytes(b""), "bad magic number empty"),
        (lambda p: p.write_bytes(b"\x00\x00\x08\x00\x07"), "expected (N, ...) with N >= 1"),
    ],
)
def test_malformed_idx_files_are_refused_before_reading_their_claimed_size(tmp_path, make, message):
    from compare.data import idx

    bad = tmp_path / "bad.idx"
    make(bad)
    labels = idx_file(tmp_path / "y.idx", [0])
    with pytest.raises(BadInputError, match=re.escape(message)):
        idx(str(bad), labels)


# ----- 6, 8. nonsense refused, NumPy scalars accepted, always BadInputError ----------------------------------------
NONSENSE = {
    "rmsprop momentum 1": (lambda: get_optimizer("rmsprop", momentum=1.0), "RMSprop momentum must be in [0, 1)"),
    "rmsprop momentum nan": (lambda: get_optimizer("rmsprop", momentum=float("nan")), "got nan"),
    "adam beta_1 2": (lambda: get_optimizer("adam", beta_1=2), "Adam beta_1 must be in [0, 1), got 2"),
    "adam beta_2 1": (lambda: get_optimizer("adam", beta_2=1.0), "Adam beta_2 must be in [0, 1)"),
    "negative clipnorm": (lambda: get_optimizer("sgd", clipnorm=-1.0), "SGD clipnorm must be in (0, inf)"),
    "negative weight decay": (lambda: get_optimizer("adamw", weight_decay=-0.1), "weight_decay must be in [0, inf)"),
    "huber delta -1": (lambda: get_loss("huber", delta=-1), "loss 'huber': delta must be in (0, inf), got -1"),
    "huber delta text": (lambda: get_loss("huber", delta="x"), "delta must be a real number in (0, inf), got 'x'"),
    "smoothing text": (lambda: get_loss("binary_crossentropy", label_smoothing="0.1"), "label_smoothing must be a"),
    "from_logits text": (lambda: get_loss("binary_crossentropy", from_logits="yes"), "from_logits must be True or"),
    "fit epochs -1": (lambda: fitted(epochs=-1), "fit epochs must be an integer >= 0, got -1"),
    "fit batch 0": (lambda: fitted(batch_size=0), "fit batch_size must be an integer >= 1, got 0"),
    "fit batch float": (lambda: fitted(batch_size=2.5), "fit batch_size must be an integer >= 1, got 2.5"),
    "learning rate text": (lambda: get_optimizer("sgd", learning_rate="fast"), "learning_rate must be a real"),
    "dropout rate bool": (lambda: Dropout(True), "Dropout rate must be a real number in [0, 1), got True"),
    "architecture of another type": (lambda: Sequential.from_architecture(64), "takes an Architecture or its text"),
    "weights not a list": (lambda: Sequential([Dense(2)], input_dim=3).set_weights(None), "takes a list of arrays"),
    "float32 overflow input": (
        lambda: Sequential([Dense(2)], input_dim=3, dtype="float32").predict(np.array([[1e39, 0.0, 0.0]])),
        "input: 1e+39 at index (0, 0) is beyond the range of float32",
    ),
}


def fitted(**kwargs):
    model = Sequential.from_architecture(Architecture.parse("2-3-2"), seed=0)
    model.compile("sgd", "categorical_crossentropy")
    return model.fit(np.zeros((4, 2)), np.eye(2)[[0, 1, 0, 1]], **kwargs)


@pytest.mark.parametrize("name", sorted(NONSENSE))
def test_nonsense_is_refused_as_bad_input(name):
    make, message = NONSENSE[name]
    with pytest.raises(BadInputError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Dropout(np.float32(0.25)),
        lambda: get_optimizer("adam", beta_1=np.float64(0.8), learning_rate=np.float32(0.01)),
        lambda: get_loss("huber", delta=np.float32(0.5)),
        lambda: get_optimizer("rmsprop", momentum=np.float16(0.5), rho=0),
        lambda: fitted(epochs=np.int64(1), batch_size=np.int32(2)),
    ],
)
def test_numpy_scalars_are_accepted(make):
    make()


def test_check_real_names_owner_setting_value_and_range():
    with pytest.raises(BadInputError, match=r"^Thing knob must be in \(0, 1\], got -0.5$"):
        check_real("Thing", "knob", -0.5, 0, 1, low_open=True)
    assert check_real("Thing", "knob", np.float32(0.5), 0, 1) == 0.5 and math.isfinite(check_real("T", "k", 3))


# ----- 7. output that does not mislead: strict JSON everywhere, --version, divergence said as such ------------------
def strict(text):
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON token {token} in the output"))


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--json", "--batch", "4", "--gradcheck", "1"],
        ["compare", "--json", "--dtype", "float32", "--arch", "6-bn-4", "--batch", "4"],
        ["train", "--json", "--data", "xor", "--arch", "2-4-2", "--epochs", "2"],
        ["zoo", "missing_1_over_n", "--json"],
        ["examples", "gradient_descent", "--json"],
    ],
)
def test_every_json_output_is_strict_json(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code in (0, 1)
    assert strict(out)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("backprop-parity ")


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            [
                "train",
                "--data",
                "spirals",
                "--arch",
                "2-16-3",
                "--optimizer",
                "sgd",
                "--lr",
                "1e30",
                "--epochs",
                "2",
                "--dtype",
                "float32",
            ],
            "training diverged on both sides at step 2 (epoch 1): the loss is nan here and nan in Keras",
        ),
        (["compare", "--l2", "3e38", "--gradcheck", "0", "--dtype", "float32"], "the computation overflows"),
    ],
)
def test_both_sides_diverging_alike_is_said_so_not_called_a_difference(capsys, argv, message):
    assert_refused(*run(capsys, *argv), message)


# ----- found by an adversarial pass after the first round ----------------------------------------------------------
MORE_CLI = {
    "diverged on the last step": (
        [
            "train",
            "--data",
            "xor",
            "--arch",
            "2-4-2",
            "--epochs",
            "1",
            "--optimizer",
            "sgd",
            "--lr",
            "1e38",
            "--dtype",
            "float32",
        ],
        "training diverged on both sides",
    ),
    "all with a default given": (["compare", "--all", "--dtype", "float64"], "it does not take --dtype"),
    "option given twice": (["compare", "--arch", "4-3:l2=0.01:l2=0.02"], "layer 1 gives l2= twice"),
    "weights too large": (["compare", "--arch", "100000-100000", "--batch", "1"], "10000100000 weights"),
    "plot with a trailing slash": (["train", "--plot", "x.png/"], "is a folder"),
    "plot name too long": (["train", "--plot", "a" * 300 + ".png"], "File name too long"),
}


@pytest.mark.parametrize("name", sorted(MORE_CLI))
def test_more_not_a_verdict_cases(capsys, name):
    argv, message = MORE_CLI[name]
    assert_refused(*run(capsys, *argv), message)


def test_a_fifo_is_refused_without_waiting(capsys, tmp_path):
    import os

    fifo = tmp_path / "fifo.idx"
    os.mkfifo(fifo)
    assert_refused(*run(capsys, "train", "--data", f"idx:{fifo},{fifo}", "--arch", "4-5-3"), "is not a regular file")


def test_a_dangling_plot_link_is_refused_before_training(capsys, tmp_path):
    (tmp_path / "p.png").symlink_to(tmp_path / "nowhere" / "p.png")
    assert_refused(*run(capsys, "train", "--plot", tmp_path / "p.png"), "exists and is not a regular file")


@pytest.mark.parametrize(
    "body,message",
    [
        ("import sys\nsys.exit(0)\n", "importing"),
        ("def f():\n    raise SystemExit('bye')\n", "f() raised SystemExit: bye"),
        ("import sys\ndef f():\n    sys.exit(0)\n", "f() raised SystemExit: 0"),
    ],
)
def test_user_code_cannot_set_the_exit_code(capsys, tmp_path, body, message):
    (tmp_path / "bad.py").write_text(body)
    swish = "examples/custom_layer/swish.py:keras_swish"
    assert_refused(*run(capsys, "check-layer", f"{tmp_path}/bad.py:f", swish, "--input-shape", "7"), message)


def test_an_infinite_idx_label_is_refused_with_its_position(tmp_path):
    from compare.data import idx

    images = idx_file(tmp_path / "x.idx", np.zeros((3, 2, 2)))
    with pytest.raises(BadInputError, match="label inf at position 1 of the file"):
        idx(images, idx_file(tmp_path / "y.idx", [0, np.inf, 1], 0x0D))


def test_an_interrupted_json_training_prints_json(capsys, monkeypatch):
    from from_scratch.model import Sequential

    def interrupt(self, x, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(Sequential, "train_step", interrupt)
    code, out, _ = run(capsys, "train", "--data", "xor", "--arch", "2-4-2", "--json")
    assert code == 130 and strict(out)["interrupted"] is True


class Scale1(Dense):
    weight_names = ("kernel",)


class ListParams(Dense):
    @property
    def params(self):
        return [[1.0]]


DECLARATIONS = {
    "weight_names of another length": (lambda: Sequential([Scale1(2)], input_dim=3), "weight_names has 1 entries"),
    "params not arrays": (lambda: Sequential([ListParams(2)], input_dim=3), "params must be a list of NumPy arrays"),
    "seed -1": (lambda: Sequential([Dense(2)], input_dim=3, seed=-1), "Sequential seed must be an integer >= 0"),
    "seed text": (lambda: Sequential([Dense(2)], input_dim=3, seed="0"), "Sequential seed must be an integer"),
    "layers not a list": (lambda: Sequential(Dense(3), input_dim=4), "takes a non-empty list of layers"),
    "metrics None": (lambda: Sequential([Dense(2)], input_dim=3).compile(metrics=None), "metrics must be a list"),
    "evaluate before compile": (
        lambda: Sequential([Dense(2)], input_dim=3).evaluate(np.zeros((1, 3)), np.eye(2)[:1]),
        "evaluate: call compile",
    ),
    "fit without labels": (lambda: fitted_with(None), "fit: 4 input rows but no label rows"),
    "amsgrad as text": (lambda: get_optimizer("adam", amsgrad="no"), "Adam amsgrad must be True or False"),
    "nesterov as text": (lambda: get_optimizer("sgd", nesterov="no"), "SGD nesterov must be True or False"),
    "centered as text": (lambda: get_optimizer("rmsprop", centered="yes"), "RMSprop centered must be True or False"),
}


def fitted_with(y):
    model = Sequential.from_architecture("2-3-2", seed=0)
    model.compile("sgd", "categorical_crossentropy")
    return model.fit(np.zeros((4, 2)), y)


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
def test_more_api_slips_are_bad_input(name):
    make, message = DECLARATIONS[name]
    with pytest.raises(BadInputError, match=re.escape(message)):
        make()


def test_keras_short_loss_names_and_negative_zero_are_accepted():
    assert get_loss("mse").name == "mean_squared_error" and get_loss("mae").name == "mean_absolute_error"
    assert str(Architecture.parse("4-dropout0.0-2")) == "4-dropout0.0-2:softmax"
    assert Dropout(-0.0).rate == 0.0 and str(Dropout(-0.0).rate) == "0.0"


def test_compare_refuses_a_dtype_mismatch_and_bad_counts():
    import keras_impl
    from compare.harness import compare_models, run_comparison

    scratch = Sequential.from_architecture("3-2", seed=0)
    with pytest.raises(BadInputError, match="the scratch model is float64 but the Keras model takes float32"):
        compare_models(scratch, keras_impl.build_model(scratch.architecture, "float32"), np.zeros((2, 3)), np.eye(2))
    with pytest.raises(BadInputError, match="run_comparison batch must be an integer >= 1, got '32'"):
        run_comparison("3-2", batch="32")
    with pytest.raises(BadInputError, match="compare gradcheck_samples must be an integer >= 0, got -1"):
        compare_models(
            Sequential.from_architecture("3-2"),
            keras_impl.build_model(Architecture.parse("3-2")),
            np.zeros((2, 3)),
            np.eye(2),
            gradcheck_samples=-1,
        )


def test_keras_advice_stays_off_stderr_and_empty_names_are_refused(capsys):
    code, out, err = run(capsys, "compare", "--from-logits", "--output-activation", "softmax", "--gradcheck", "0")
    assert code in (0, 1) and err == ""
    assert_refused(*run(capsys, "zoo", ""), "unknown zoo entry ''")
    assert_refused(*run(capsys, "examples", ""), "unknown example ''")


def test_loss_weights_are_applied_not_dropped():
    """A model of one output compiled with loss_weights=[2.0]: the compared loss is Keras's 2.0 * MSE, on both
    sides (the scratch loss an OutputLosses carrying the weight)."""
    import keras

    from compare.keras_model import compare_keras_model, from_keras, loss_of

    model = keras.Sequential([keras.Input((3,), dtype="float64"), keras.layers.Dense(2, dtype="float64")])
    model.compile(loss="mse", loss_weights=[2.0])
    loss = loss_of(model)
    assert repr(loss) == "[MeanSquaredError()], loss_weights=[2.0]"
    report = compare_keras_model(model, batch=4, gradcheck_samples=0)
    assert report.passed, report.verdict()
    row = next(r for r in report.rows if r.name == "loss")
    assert row.error <= 1e-15
    assert "loss_weights=[2.0]" in report.config["loss"]
    scratch = from_keras(model)
    x, y = np.random.default_rng(0).standard_normal((2, 4, 3))[0], np.random.default_rng(1).standard_normal((4, 2))
    weighted = scratch.loss_and_gradients(x, y, loss)[0]
    assert weighted == pytest.approx(2.0 * scratch.loss_and_gradients(x, y, "mse")[0], rel=1e-15)


def test_ragged_arrays_a_model_as_layer_and_a_zero_step_are_bad_input():
    import keras

    from compare.check import check_layer
    from from_scratch.gradcheck import numerical_gradient

    model = Sequential([Dense(2)], input_dim=3)
    with pytest.raises(BadInputError, match="input: not an array of numbers"):
        model.predict([[1.0, 2.0, 3.0], [1.0]])
    with pytest.raises(BadInputError, match="set_weights: layer 'dense' parameter 0: not an array of numbers"):
        model.set_weights([[[1.0], [1.0, 2.0]], np.zeros(2)])
    with pytest.raises(BadInputError, match="keras_layer is a model"):
        check_layer(Dense(2), keras.Sequential([keras.layers.Dense(2)]), (3,))
    with pytest.raises(BadInputError, match=r"numerical_gradient h must be in \(0, inf\), got 0"):
        numerical_gradient(lambda v: float(v.sum()), np.ones(2), h=0)


def test_the_last_python_api_slips():
    import keras

    import keras_impl
    from compare.check import check_layer, check_model
    from from_scratch import get_optimizer as exported
    from from_scratch.gradcheck import gradcheck

    assert exported("adam").name == "adam"
    with pytest.raises(BadInputError, match="layer 'dense' is not built"):
        Dense(3).forward(np.ones((2, 4)))
    layer = Sequential([Dense(3)], input_dim=4).layers[0]
    with pytest.raises(BadInputError, match="backward before any forward pass"):
        layer.backward(np.ones((2, 3)))
    scratch = Sequential.from_architecture("4-3", seed=0)
    with pytest.raises(BadInputError, match="the Keras model's weights do not match the scratch model's"):
        check_model(scratch, keras_impl.build_model(Architecture.parse("4-5-3")), np.zeros((2, 4)), np.eye(3)[:2])
    with pytest.raises(BadInputError, match="x and y must be arrays of numbers"):
        check_model(scratch, keras_impl.build_model(Architecture.parse("4-3")), None, np.eye(3)[:2])
    with pytest.raises(BadInputError, match=r"fit: validation_data must be a tuple \(x, y\)"):
        scratch.compile("sgd", "categorical_crossentropy")
        scratch.fit(np.zeros((2, 4)), np.eye(3)[:2], validation_data=(np.zeros((2, 4)),))
    with pytest.raises(BadInputError, match="gradcheck needs a model with get_weights"):
        gradcheck(None, np.zeros((2, 4)), np.eye(3)[:2])
    for dtype in ("float32", "float64"):  # a Lambda twin, rebuilt for the float64 truth (and for another dtype)
        report = check_layer(Dense(3), keras.layers.Dense(3, dtype="float32"), (4,), dtype=dtype)
        assert report.passed
    twin = keras.layers.Lambda(lambda t: 2 * t, dtype="float32")

    class Double(Dense.__mro__[1]):  # a plain Layer
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    assert check_layer(Double(), twin, (3,), dtype="float32").passed
