"""Layers of several inputs brought to check_layer, the check-layer command and the `parity` fixture: the shipped
merges, and a user's own (examples/custom_layer/merges.py), right and wrong, in float64 and float32."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

from compare.check import check_layer
from compare.cli import main
from from_scratch import BadInputError
from from_scratch import merge as m

ROOT = Path(__file__).resolve().parent.parent
MERGES = ROOT / "examples" / "custom_layer" / "merges.py"
_spec = importlib.util.spec_from_file_location("merges", MERGES)
merges = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(merges)

DTYPES = ["float64", "float32"]
SHIPPED = [
    (m.Add, keras.layers.Add, {}, [(7,), (7,)]),
    (m.Subtract, keras.layers.Subtract, {}, [(7,), (7,)]),
    (m.Multiply, keras.layers.Multiply, {}, [(2, 3), (2, 3)]),
    (m.Average, keras.layers.Average, {}, [(7,), (7,), (7,)]),
    (m.Maximum, keras.layers.Maximum, {}, [(7,), (7,), (7,)]),
    (m.Minimum, keras.layers.Minimum, {}, [(7,), (7,)]),
    (m.Concatenate, keras.layers.Concatenate, {}, [(3,), (5,)]),
    (m.Dot, keras.layers.Dot, {"axes": 1}, [(7,), (7,)]),
]


def input_rows(report):
    return [row.name for row in report.rows if row.name.startswith("grad input")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scratch,twin,options,shapes", SHIPPED, ids=[s[0].__name__ for s in SHIPPED])
def test_shipped_merges_pass_with_a_row_per_input(scratch, twin, options, shapes, dtype):
    report = check_layer(scratch(**options), twin(dtype=dtype, **options), shapes, dtype=dtype)
    assert report.passed, report.verdict()
    names = ["input_layer"] + [f"input_layer_{k}" for k in range(1, len(shapes))]
    assert input_rows(report) == [f"grad input {name}" for name in names]
    taylor = report.rows[-1]
    assert taylor.name.startswith("Taylor") and taylor.error > 1.8
    protocol = next(row for row in report.rows if row.name.startswith("protocol"))
    assert protocol.passed and f"results {dtype}" in protocol.name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "make,twin",
    [(merges.weighted_sum, merges.keras_weighted_sum), (merges.multiply, merges.keras_multiply)],
    ids=["weighted_sum", "multiply"],
)
def test_a_users_right_layer_of_two_inputs_passes(make, twin, dtype):
    report = check_layer(make(), twin(dtype), [(7,), (7,)], dtype=dtype)
    assert report.passed, report.verdict()
    assert report.rows[-1].error > 1.8  # the Taylor slope: the backward is the gradient of the forward
    if make is merges.weighted_sum:
        assert "grad weighted_sum/w" in [row.name for row in report.rows]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_users_wrong_backward_fails_at_the_input_it_gets_wrong(dtype):
    report = check_layer(merges.broken_multiply(), merges.keras_multiply(dtype), [(7,), (7,)], dtype=dtype)
    assert not report.passed
    failed = [row.name for row in report.failures]
    assert failed[0] == "grad input input_layer_1" and failed[1].startswith("Taylor") and len(failed) == 2
    assert "backward first differs at dL/dX (input input_layer_1)" in report.diagnosis.text


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_parameter_gradient_of_a_two_input_layer_is_located(dtype):
    class WrongWeightedSum(merges.WeightedSum):
        def backward(self, dy):
            dx = super().backward(dy)
            self.dw = (dy * (self.x2 - self.x1)).sum(axis=0)  # the sign of (x1 - x2) flipped
            return dx

    report = check_layer(WrongWeightedSum(), merges.keras_weighted_sum(dtype), [(4,), (4,)], dtype=dtype)
    assert not report.passed
    assert [row.name for row in report.failures][0] == "grad wrong_weighted_sum/w"
    assert report.failures[-1].name.startswith("Taylor")


def test_given_batches_are_checked_and_left_as_they_were():
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    before = [x1.copy(), x2.copy()]
    report = check_layer(merges.weighted_sum(), merges.keras_weighted_sum(), inputs=[x1, x2])
    assert report.passed and report.config["batch"] == 5 and report.config["input_shape"] == [[4], [4]]
    assert all(np.array_equal(a, b) for a, b in zip([x1, x2], before))
    again = check_layer(merges.weighted_sum(), merges.keras_weighted_sum(), [(4,), (4,)], inputs=[x1, x2], batch=5)
    assert again.passed


@pytest.mark.parametrize(
    "layer,twin,kwargs,message",
    [
        (m.Add(), keras.layers.Add(), {"input_shape": (7,)}, "give one shape per input, input_shape=[(7,), (7,)]"),
        (m.Add(), keras.layers.Add(), {}, "takes several inputs: give input_shape=[(7,), (7,)]"),
        (
            m.Add(),
            keras.layers.Add(),
            {"input_shape": (7, 7)},
            "give one shape per input, input_shape=[(7,), (7,)], got (7, 7)",
        ),
        (
            m.Add(),
            keras.layers.Add(),
            {"input_shape": [(7,), (5,)]},
            r"layer 'add': add takes tensors of one shape, got (7,) and (5,)",
        ),
        (
            merges.multiply(),
            merges.keras_multiply(),
            {"input_shape": [(7,), (5,)]},
            "layer 'multiply' is called on inputs of shapes (7,) and (5,)",
        ),
        (
            merges.weighted_sum(),
            merges.keras_weighted_sum(),
            {"input_shape": [(7,), (5,)]},
            "refused inputs of shapes (7,) and (5,): Dimensions must be equal, but are 7 and 5",
        ),
        (
            m.Add(),
            keras.layers.Add(),
            {"inputs": [np.zeros((4, 7)), np.zeros((3, 7))]},
            "inputs: batches of different sizes [4, 3]",
        ),
        (
            m.Add(),
            keras.layers.Add(),
            {"inputs": [np.zeros((4, 7)), np.zeros((4, 7), int)]},
            "inputs[0] holds values (float64), inputs[1] holds indices (int64)",
        ),
        (m.Add(), keras.layers.Add(), {"inputs": np.zeros((4, 7))}, "give inputs=[x1, x2, ...], one batch"),
        (
            m.Add(),
            keras.layers.Add(),
            {"inputs": [np.zeros((4, 7)), np.array([[np.nan] * 7] * 4)]},
            "inputs[1]: nan at index (0, 0)",
        ),
        (
            m.Add(),
            keras.layers.Add(),
            {"inputs": [np.zeros((4, 7)), np.zeros((4, 7))], "input_shape": [(7,), (6,)]},
            "contradicts inputs of shapes",
        ),
        (
            merges.Multiply(),
            keras.layers.Dense(3),
            {"input_shape": [(7,), (7,)]},
            "Keras layer 'dense",
        ),
        (
            m.Add(),
            keras.layers.Add(),
            {"input_shape": [(7,), (7,)], "batch": 0},
            "batch must be a positive integer, got 0",
        ),
    ],
    ids=[
        "one_shape",
        "no_shape",
        "two_ints_are_one_shape",
        "merge_shapes_disagree",
        "user_default_build_disagrees",
        "keras_refuses",
        "batch_sizes",
        "indices_and_values",
        "not_a_list",
        "nan",
        "shape_contradicts",
        "keras_one_input_layer",
        "batch_zero",
    ],
)
def test_bad_input_for_a_layer_of_several_inputs(layer, twin, kwargs, message):
    with pytest.raises(BadInputError) as info:
        check_layer(layer, twin, **kwargs)
    assert message in str(info.value)


def test_a_one_input_layer_given_several_shapes_is_refused():
    from from_scratch import Dense

    with pytest.raises(BadInputError, match=r"takes one input \(it does not declare several_inputs = True\), but "):
        check_layer(Dense(3), keras.layers.Dense(3), [(7,), (7,)])


# ----- the command line --------------------------------------------------------------------------------------------
def run(capsys, *argv):
    code = main(["check-layer", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_takes_one_input_shape_per_input(capsys):
    code, out, _ = run(capsys, f"{MERGES}:weighted_sum", f"{MERGES}:keras_weighted_sum", "--input-shape", "7", "7")
    assert code == 0 and "PASS: all" in out and "grad input input_layer_1" in out


def test_cli_fails_a_wrong_layer_of_two_inputs(capsys):
    argv = [f"{MERGES}:broken_multiply", f"{MERGES}:keras_multiply", "--input-shape", "3", "3", "--dtype", "float32"]
    code, out, _ = run(capsys, *argv)
    assert code == 1 and "backward first differs at dL/dX (input input_layer_1)" in out


def test_cli_takes_one_inputs_file_per_input(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((6, 4)))
    files = [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
    code, out, _ = run(capsys, f"{MERGES}:multiply", f"{MERGES}:keras_multiply", "--inputs", *files)
    assert code == 0 and "PASS: all" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--input-shape", "7", "5"], "refused inputs of shapes (7,) and (5,)"),
        (["--input-shape", "7"], "is a layer of several inputs (several_inputs = True): give one --input-shape per"),
        (
            ["--input-shape", "7", "7", "7"],
            "refused inputs of shapes (7,) and (7,) and (7,): too many values to unpack",
        ),
        (["--inputs", "A", "B"], "--inputs: batches of different sizes"),
        (["--inputs", "A", "--input-shape", "4", "4"], "2 --input-shape value(s) for 1 --inputs file(s)"),
        (["--inputs", "A", "A", "--input-shape", "4", "5"], "--input-shape 5 contradicts --inputs"),
        (["--inputs", "A", "A", "--batch", "3"], "--batch 3 contradicts --inputs (6 samples)"),
    ],
)
def test_cli_bad_input_of_several_inputs_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    np.save(tmp_path / "a.npy", np.zeros((6, 4)))
    np.save(tmp_path / "b.npy", np.zeros((5, 4)))
    argv = [str(tmp_path / "a.npy") if a == "A" else str(tmp_path / "b.npy") if a == "B" else a for a in argv]
    code, out, err = run(capsys, f"{MERGES}:weighted_sum", f"{MERGES}:keras_weighted_sum", *argv)
    assert code == 2, out
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_merge_with_disagreeing_shapes_names_the_layer_and_both_shapes(capsys, tmp_path):
    factory = tmp_path / "merge_factory.py"
    factory.write_text(
        "def add():\n    from from_scratch.merge import Add\n    return Add()\n\n"
        "def keras_add():\n    import keras\n    return keras.layers.Add()\n"
    )
    code, _, err = run(capsys, f"{factory}:add", f"{factory}:keras_add", "--input-shape", "7", "5")
    assert code == 2 and err.strip().endswith(
        "layer 'add': add takes tensors of one shape, got (7,) and (5,) (call 'add' on 'input_layer' and "
        "'input_layer_1')"
    )
    assert len(err.strip().splitlines()) == 1


def test_cli_one_input_layer_given_two_shapes(capsys):
    swish = ROOT / "examples" / "custom_layer" / "swish.py"
    code, _, err = run(capsys, f"{swish}:swish", f"{swish}:keras_swish", "--input-shape", "7", "7")
    assert code == 2 and "takes one input (it does not declare several_inputs = True), but 2" in err


# ----- the pytest plugin -------------------------------------------------------------------------------------------
def test_parity_fixture_takes_several_inputs(parity):
    report = parity(merges.weighted_sum(), merges.keras_weighted_sum(), input_shape=[(5,), (5,)])
    assert report.passed and len(input_rows(report)) == 2
    with pytest.raises(pytest.fail.Exception, match="first differs at dL/dX \\(input input_layer_1\\)"):
        parity(merges.broken_multiply(), merges.keras_multiply(), input_shape=[(5,), (5,)])


# ----- the protocol, watched per input -----------------------------------------------------------------------------
class WritesIntoItsSecondInput(merges.Multiply):
    def backward(self, dy):
        dx = [dy * self.x2, dy * self.x1]
        self.x2 *= 2.0
        return dx


class SecondGradientInFloat32(merges.Multiply):
    def backward(self, dy):
        return [dy * self.x2, (dy * self.x1).astype(np.float32)]


def test_the_watch_names_the_input_a_layer_of_several_inputs_writes_into():
    report = check_layer(WritesIntoItsSecondInput(), merges.keras_multiply(), [(5,), (5,)])
    (row,) = report.failures
    assert row.name.startswith(
        "layer 'writes_into_its_second_input' wrote into its input x[1] (input 1 of its list) during backward "
        "(x[1][0, 0] was "
    )


def test_the_watch_names_the_gradient_returned_in_another_dtype():
    report = check_layer(SecondGradientInFloat32(), merges.keras_multiply(), [(5,), (5,)])
    protocol = [row.name for row in report.failures if row.name.startswith("layer")]
    assert protocol == [
        "layer 'second_gradient_in_float32' returned dL/dx[1] of dtype float32 during backward (a float64 check: the "
        "layer computes in float32, its twin in float64)"
    ]
