"""Every bad input gets a specific error that names the problem; nothing is silently coerced.

Python API: BadInputError (a ValueError) with the message checked exactly. Command line: one line on stderr,
exit code 2, no traceback.
"""

import subprocess
import sys

import numpy as np
import pytest

from compare import cli
from from_scratch import Architecture, BadInputError, Dense, Sequential
from from_scratch.losses import get_loss
from from_scratch.optimizers import get_optimizer


def model(arch="4-3-2", dtype="float64"):
    return Sequential.from_architecture(Architecture.parse(arch), dtype=dtype, seed=0)


X = np.arange(12, dtype=float).reshape(3, 4) / 10
Y = np.eye(2)[[0, 1, 0]]

API_CASES = {
    "weights wrong count": (
        lambda: model().set_weights(model().get_weights()[:3]),
        "set_weights: expected 4 arrays, got 3",
    ),
    "weights wrong shape": (
        lambda: model().set_weights([np.zeros((4, 3)), np.zeros(3), np.zeros((2, 3)), np.zeros(2)]),
        "set_weights: layer 'dense_1' parameter 0: expected shape (3, 2), got (2, 3)",
    ),
    "weights wrong dtype": (
        lambda: model(dtype="float32").set_weights(model().get_weights()),
        "set_weights: layer 'dense' parameter 0: dtype float64 does not fit a float32 model",
    ),
    "weights integer dtype": (
        lambda: model().set_weights([w.astype(int) for w in model().get_weights()]),
        "dtype int64 does not fit a float64 model without rounding",
    ),
    "weights NaN": (
        lambda: model().set_weights([np.full((4, 3), np.nan), np.zeros(3), np.zeros((3, 2)), np.zeros(2)]),
        "set_weights: layer 'dense' parameter 0: nan at index (0, 0); NaN and infinity are refused",
    ),
    "input wrong features": (lambda: model().predict(np.zeros((3, 5))), "input: expected shape (N, 4), got (3, 5)"),
    "input 1-D": (lambda: model().predict(np.zeros(4)), "input: expected shape (N, 4), got (4,)"),
    "input NaN": (
        lambda: model().predict(np.array([[0.0, 1.0, np.nan, 2.0]])),
        "input: nan at index (0, 2); NaN and infinity are refused",
    ),
    "input infinity": (
        lambda: model().predict(np.array([[0.0, np.inf, 0.0, 2.0]])),
        "input: inf at index (0, 1); NaN and infinity are refused",
    ),
    "input strings": (
        lambda: model().predict(np.array([["a", "b", "c", "d"]])),
        "input: expected real numbers, got dtype <U1",
    ),
    "empty batch": (
        lambda: model().predict(np.zeros((0, 4))),
        "input: empty (shape (0, 4)); a batch needs at least one sample",
    ),
    "labels wrong shape": (
        lambda: model().loss_and_gradients(X, np.eye(3)[[0, 1, 2]]),
        "labels: shape (3, 3) does not fit categorical_crossentropy on 2 outputs: expected (3, 2)",
    ),
    "labels wrong rows": (lambda: model().loss_and_gradients(X, Y[:2]), "labels: 2 rows for a batch of 3 inputs"),
    "labels not one-hot": (
        lambda: model().loss_and_gradients(X, np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])),
        "labels: row 1 is not one-hot or a probability distribution ([1.0, 1.0] sums to 2)",
    ),
    "labels negative": (
        lambda: model().loss_and_gradients(X, np.array([[1.5, -0.5], [0.0, 1.0], [0.0, 1.0]])),
        "labels: row 0 is not one-hot or a probability distribution",
    ),
    "labels NaN": (
        lambda: model().loss_and_gradients(X, np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]])),
        "labels: nan at index (1, 0); NaN and infinity are refused",
    ),
    "class index out of range": (
        lambda: model().loss_and_gradients(X, np.array([0, 2, 1]), "sparse_categorical_crossentropy"),
        "labels: class index 2 at row 1 is out of range for 2 classes (0 to 1)",
    ),
    "class index negative": (
        lambda: model().loss_and_gradients(X, np.array([0, -1, 1]), "sparse_categorical_crossentropy"),
        "labels: class index -1 at row 1 is out of range for 2 classes (0 to 1)",
    ),
    "class index not integer": (
        lambda: model().loss_and_gradients(X, np.array([0, 0.5, 1]), "sparse_categorical_crossentropy"),
        "labels: class index 0.5 at row 1 is out of range",
    ),
    "sparse labels one-hot": (
        lambda: model().loss_and_gradients(X, Y, "sparse_categorical_crossentropy"),
        "labels: shape (3, 2) does not fit sparse_categorical_crossentropy: expected class "
        "indices of shape (3,) or (3, 1)",
    ),
    "binary labels outside [0, 1]": (
        lambda: model("4-3-2:sigmoid").loss_and_gradients(
            X, np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0]]), "binary_crossentropy"
        ),
        "labels: 2 at (1, 0) is outside [0, 1], as binary_crossentropy needs",
    ),
    "sample weight wrong shape": (
        lambda: model().loss_and_gradients(X, Y, sample_weight=np.ones(2)),
        "sample_weight: expected shape (3,), one weight per sample, got (2,)",
    ),
    "unknown activation": (
        lambda: Dense(3, "swish"),
        "unknown activation 'swish'; known: elu, gelu, gelu_tanh, leaky_relu, linear, relu, "
        "sigmoid, softmax, softplus, step, tanh",
    ),
    "unknown loss": (lambda: get_loss("hinge"), "unknown loss 'hinge'; known: binary_crossentropy"),
    "unknown optimizer": (lambda: get_optimizer("lion"), "unknown optimizer 'lion'; known: adagrad, adam, adamw"),
    "unknown metric": (lambda: model().compile("sgd", metrics=["auc"]), "unknown metric 'auc'; known: accuracy"),
    "loss argument it lacks": (lambda: get_loss("huber", from_logits=True), "loss 'huber' does not take from_logits"),
    "label smoothing out of range": (
        lambda: get_loss("categorical_crossentropy", label_smoothing=1.5),
        "label_smoothing must be in [0, 1], got 1.5",
    ),
    "optimizer argument it lacks": (
        lambda: get_optimizer("adagrad", momentum=0.9),
        "optimizer 'adagrad' does not take momentum",
    ),
    "negative learning rate": (
        lambda: get_optimizer("sgd", learning_rate=-0.1),
        "SGD learning_rate must be in (0, inf), got -0.1",
    ),
    "zero units": (lambda: Dense(0), "Dense units must be a positive integer, got 0"),
    "negative units": (lambda: Dense(-3), "Dense units must be a positive integer, got -3"),
    "fractional units": (lambda: Dense(2.5), "Dense units must be a positive integer, got 2.5"),
    "dropout rate 1": (lambda: Architecture.parse("4-dropout1-2"), "layer 1 dropout rate '1' is not in [0, 1)"),
    "regulariser not a number": (lambda: Architecture.parse("4-3:relu:l2=x-2"), "layer 1 l2='x' is not a number >= 0"),
    "negative regulariser": (
        lambda: Architecture.parse("4-3:relu:l2=-1-2"),
        "layer 1 l2= has no value ('-' separates layers, and negative factors are refused)",
    ),
    "unknown layer option": (lambda: Architecture.parse("4-3:relu:l3=1-2"), "layer 1 option 'l3=1'; known: l1="),
    "bad dtype": (lambda: model(dtype="float16"), "dtype must be one of float64, float32, got 'float16'"),
    "fit before compile": (lambda: model().fit(X, Y), "fit: call compile(optimizer=..., loss=...) first"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_bad_input_raises_a_named_error(case):
    action, message = API_CASES[case]
    with pytest.raises(BadInputError) as exc:
        action()
    assert message in str(exc.value)


CLI_CASES = {
    "malformed arch": (["compare", "--arch", "64-32-x"], "malformed architecture '64-32-x'"),
    "arch without layers": (["compare", "--arch", "64"], "malformed architecture '64'"),
    "empty arch token": (["compare", "--arch", "64--10"], "malformed architecture '64--10'"),
    "zero width": (["compare", "--arch", "64-0-10"], "layer 1 width '0' is not a positive integer"),
    "unknown activation": (["compare", "--activation", "swish"], "unknown activation 'swish'"),
    "unknown loss": (["compare", "--loss", "hinge"], "unknown loss 'hinge'"),
    "unknown optimizer": (
        ["train", "--data", "xor", "--arch", "2-3-2", "--optimizer", "lion"],
        "unknown optimizer 'lion'",
    ),
    "unknown data set": (["train", "--data", "cifar"], "unknown data set 'cifar'"),
    "data does not fit arch": (
        ["train", "--data", "xor", "--arch", "3-4-2"],
        "--data xor has 2 features and 2 outputs, but --arch 3-4-2 expects 3 and 2",
    ),
    "dropout rate": (["compare", "--dropout", "1.5"], "Dropout rate must be in [0, 1), got 1.5"),
    "negative lr": (["train", "--data", "xor", "--arch", "2-3-2", "--lr", "-1"], "learning_rate must be in (0, inf)"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_command_line_is_one_line_and_exit_2(case, capsys):
    argv, message = CLI_CASES[case]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_argparse_errors_are_one_line_and_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "compare", "compare", "--dtype", "float16"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "argument --dtype: invalid choice: 'float16'" in proc.stderr


def test_inputs_are_cast_as_keras_casts_them_but_weights_are_not():
    """Inputs follow Keras (a float64 batch into a float32 model is cast); weights never are."""
    m = model(dtype="float32")
    assert m.predict(X).dtype == np.float32
    with pytest.raises(BadInputError):
        m.set_weights([w.astype(np.float64) for w in m.get_weights()])
