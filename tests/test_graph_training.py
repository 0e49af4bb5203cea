"""Graph models trained in lockstep with their functional Keras twins (compare/training.py, one code path for chains
and graphs): a residual CNN and models of two inputs on digits, a model of two outputs with loss weights, and the
lockstep check failing on a graph's planted gradient bugs."""

import numpy as np
import pytest

from compare.training import TRAIN_F64_TOL, run_training
from from_scratch.arch import Architecture, LayerSpec
from from_scratch.errors import BadInputError
from from_scratch.graph import Model
from from_scratch.graph_arch import Call, GraphArchitecture


def specs(text):
    """The LayerSpecs of a chain's text (the layers after the input)."""
    return Architecture.parse(text).layers


def graph(inputs, layers, calls, outputs):
    return GraphArchitecture(tuple(inputs), tuple(layers), tuple(Call(*c) for c in calls), tuple(outputs))


#: conv(relu, same) -> [conv(relu, same) -> BN] + skip -> flatten -> dense softmax: a residual block on 8x8x1 digits.
#: (The branch's conv has a ReLU before the BN: the bias of a layer feeding a BN directly has a gradient of exactly 0,
#: so each side's is rounding noise, and Adam divides it by its own magnitude (plus epsilon), taking steps up to
#: lr * |g| / epsilon that differ between the sides far beyond float64 rounding of the parameters.)
CONV, CONV_1, BN, FLATTEN, DENSE = specs("8x8x1-conv6k3:relu:same-conv6k3:relu:same-bn-flatten-10")
RESIDUAL_CNN = graph(
    [("image", (8, 8, 1))],
    [("conv", CONV), ("conv_1", CONV_1), ("bn", BN), ("add", LayerSpec("add")), ("flatten", FLATTEN), ("dense", DENSE)],
    [
        ("conv", ("image",)),
        ("conv_1", ("conv",)),
        ("bn", ("conv_1",)),
        ("add", ("conv", "bn")),
        ("flatten", ("add",)),
        ("dense", ("flatten",)),
    ],
    ["dense"],
)

#: The upper and lower halves of a digit (32 pixels each) through a branch each, joined by Concatenate, dropout,
#: dense softmax.
TWO_INPUTS = graph(
    [("upper", (32,)), ("lower", (32,))],
    [
        ("upper_branch", LayerSpec("dense", 16, "tanh")),
        ("lower_branch", LayerSpec("dense", 16, "relu")),
        ("concatenate", LayerSpec("concatenate")),
        ("dropout", LayerSpec("dropout", options={"rate": 0.25})),
        ("dense", LayerSpec("dense", 10, "softmax")),
    ],
    [
        ("upper_branch", ("upper",)),
        ("lower_branch", ("lower",)),
        ("concatenate", ("upper_branch", "lower_branch")),
        ("dropout", ("concatenate",)),
        ("dense", ("dropout",)),
    ],
    ["dense"],
)

#: Siamese: one Dense encoder shared by both halves (its gradient is the sum over its two calls).
SIAMESE = graph(
    [("upper", (32,)), ("lower", (32,))],
    [
        ("encoder", LayerSpec("dense", 16, "tanh")),
        ("concatenate", LayerSpec("concatenate")),
        ("dense", LayerSpec("dense", 10, "softmax")),
    ],
    [
        ("encoder", ("upper",)),
        ("encoder", ("lower",)),
        ("concatenate", ("encoder", "encoder#2")),
        ("dense", ("concatenate",)),
    ],
    ["dense"],
)

#: Two heads on one trunk: the digit (softmax, categorical cross-entropy) and whether it is even (sigmoid, binary
#: cross-entropy), weighted 1 and 0.5.
TWO_OUTPUTS = graph(
    [("pixels", (64,))],
    [
        ("trunk", LayerSpec("dense", 24, "relu")),
        ("digit", LayerSpec("dense", 10, "softmax")),
        ("even", LayerSpec("dense", 1, "sigmoid")),
    ],
    [("trunk", ("pixels",)), ("digit", ("trunk",)), ("even", ("trunk",))],
    ["digit", "even"],
)


@pytest.fixture(scope="module")
def digit_data():
    pytest.importorskip("sklearn")
    from compare.data import as_inputs, digits

    x, y = digits()
    return {"flat": x, "images": as_inputs(x, (8, 8, 1)), "halves": [x[:, :32], x[:, 32:]], "y": y}


def assert_lockstep(report):
    """Within float64 rounding after the run, the same prediction on every sample, the same accuracy."""
    assert report.passed, report.verdict() + f"; {report.diagnosis}"
    assert report.final_param_diff <= TRAIN_F64_TOL and report.same_predictions
    assert max(s["param_norm_rel"] for s in report.steps) <= TRAIN_F64_TOL
    last = report.epochs[-1]
    assert last["acc_scratch"] == last["acc_keras"]
    assert abs(last["loss_scratch"] - last["loss_keras"]) <= 1e-12 * abs(last["loss_keras"])


def test_a_residual_cnn_trains_in_lockstep_on_digits(digit_data):
    report = run_training(
        RESIDUAL_CNN, digit_data["images"], digit_data["y"], "adam", {"learning_rate": 0.01}, epochs=2, batch_size=64
    )
    assert len(report.steps) == 2 * 29
    assert_lockstep(report)
    assert report.epochs[-1]["acc_scratch"] > 0.85  # it learned: from chance (0.1) to most digits
    assert report.filters["scratch"].shape == (3, 3, 1, 6)


def test_a_two_input_model_with_dropout_trains_in_lockstep_on_digit_halves(digit_data):
    report = run_training(
        TWO_INPUTS, digit_data["halves"], digit_data["y"], "adam", {"learning_rate": 0.01}, epochs=3, batch_size=64
    )
    assert len(report.steps) == 3 * 29
    assert_lockstep(report)
    assert report.epochs[-1]["acc_scratch"] > 0.9
    assert report.config["samples"] == 1797


def test_a_shared_layer_trains_in_lockstep(digit_data):
    x, y = [h[:480] for h in digit_data["halves"]], digit_data["y"][:480]
    report = run_training(SIAMESE, x, y, "sgd", {"learning_rate": 0.1, "momentum": 0.9}, epochs=2, batch_size=32)
    assert_lockstep(report)


def test_two_outputs_with_loss_weights_train_in_lockstep_with_accuracy_per_output(digit_data):
    labels = digit_data["y"].argmax(axis=1)
    y = [digit_data["y"], (labels % 2 == 0).astype(np.float64)[:, None]]
    report = run_training(
        TWO_OUTPUTS,
        digit_data["flat"],
        y,
        "rmsprop",
        {"learning_rate": 0.005},
        ["categorical_crossentropy", "binary_crossentropy"],
        epochs=2,
        batch_size=64,
        loss_weights=[1.0, 0.5],
    )
    assert_lockstep(report)
    last = report.epochs[-1]
    assert last["acc_scratch"] == last["acc_scratch_digit"] == last["acc_keras_digit"]
    assert last["acc_scratch_even"] == last["acc_keras_even"] > 0.7
    assert "loss_weights=[1.0, 0.5]" in report.config["loss"]


def test_the_loss_weights_reach_both_sides(digit_data):
    """The weighted loss is the one both sides train on: the first step's losses differ from the unweighted run's
    by exactly the second output's share."""
    labels = digit_data["y"].argmax(axis=1)
    x, y = digit_data["flat"][:64], [digit_data["y"][:64], (labels[:64] % 2 == 0).astype(np.float64)[:, None]]
    losses = ["categorical_crossentropy", "binary_crossentropy"]
    runs = [
        run_training(TWO_OUTPUTS, x, y, "sgd", {}, losses, epochs=1, batch_size=64, loss_weights=w)
        for w in ([1.0, 1.0], [1.0, 3.0])
    ]
    one, three = (r.steps[0] for r in runs)
    assert one["loss_scratch"] != three["loss_scratch"]
    for r in (one, three):
        assert abs(r["loss_scratch"] - r["loss_keras"]) <= 1e-14 * r["loss_keras"]


def test_a_graph_trains_in_float32_within_the_float32_bound(digit_data):
    x, y = [h[:512] for h in digit_data["halves"]], digit_data["y"][:512]
    report = run_training(TWO_INPUTS, x, y, "adam", {"learning_rate": 0.01}, epochs=2, dtype="float32")
    assert report.passed, report.verdict()
    assert 0 < report.steps[-1]["float32_sensitivity"] < report.tol


# ----- the check fails on a planted graph bug ---------------------------------------------------------------------
def test_a_shared_layer_gradient_kept_from_its_last_call_only_fails_the_lockstep(digit_data, monkeypatch):
    monkeypatch.setattr(Model, "_add_call", staticmethod(lambda total, grads: grads))  # the last call's only
    x, y = [h[:192] for h in digit_data["halves"]], digit_data["y"][:192]
    report = run_training(SIAMESE, x, y, "adam", {"learning_rate": 0.01}, epochs=1, batch_size=32, max_steps=4)
    assert not report.passed
    assert report.final_param_diff > 1e6 * TRAIN_F64_TOL
    assert "first parts at step 1" in report.diagnosis and "encoder/" in report.diagnosis, report.diagnosis


def test_a_fan_out_gradient_overwritten_fails_the_lockstep_of_the_residual_cnn(digit_data, monkeypatch):
    def overwrite(grads_at, key, g):
        grads_at[key] = g  # the skip's gradient replaces the branch's instead of adding to it

    monkeypatch.setattr(Model, "_fan_in", staticmethod(overwrite))
    x, y = digit_data["images"][:128], digit_data["y"][:128]
    report = run_training(RESIDUAL_CNN, x, y, "adam", {"learning_rate": 0.01}, epochs=1, batch_size=32, max_steps=2)
    assert not report.passed
    assert report.final_param_diff > 1e6 * TRAIN_F64_TOL
    assert "first parts at step 1" in report.diagnosis and "conv/" in report.diagnosis, report.diagnosis


# ----- bad input --------------------------------------------------------------------------------------------------
def test_bad_data_for_a_graph_is_refused_naming_the_problem(digit_data):
    x, y = digit_data["halves"], digit_data["y"]
    with pytest.raises(BadInputError, match=r"2 inputs \(upper, lower\): give x as a list of 2 arrays, got a ndarray"):
        run_training(TWO_INPUTS, x[0], y, epochs=1)
    with pytest.raises(BadInputError, match=r"got \[1797, 100\] input rows and \[1797\] label rows"):
        run_training(TWO_INPUTS, [x[0], x[1][:100]], y, epochs=1)
    with pytest.raises(BadInputError, match=r"2 outputs \(digit, even\): give y as a list of 2 arrays"):
        run_training(TWO_OUTPUTS, digit_data["flat"], y, epochs=1)
    with pytest.raises(BadInputError, match="3 losses for 2 output"):
        run_training(TWO_OUTPUTS, digit_data["flat"], [y, y[:, :1]], loss=["mse"] * 3, epochs=1)
    with pytest.raises(BadInputError, match="loss_weights: give a list of 2 numbers"):
        run_training(TWO_OUTPUTS, digit_data["flat"], [y, y[:, :1]], loss="mse", loss_weights=[1.0], epochs=1)
