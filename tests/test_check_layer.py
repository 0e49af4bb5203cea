"""Bring your own layer: compare.check_layer, the check-layer command and the pytest plugin's `parity` fixture."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import compare
from compare.check import away_from_kinks, check_layer, random_nonzero_params
from compare.cli import main
from from_scratch import BadInputError, BatchNormalization, Dense, Layer, Sequential

ROOT = Path(__file__).resolve().parent.parent
SWISH = ROOT / "examples" / "custom_layer" / "swish.py"
LAYER_NORM = ROOT / "examples" / "custom_layer" / "layer_norm.py"


def load(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


swish, layer_norm = load(SWISH), load(LAYER_NORM)


class Scale(Layer):
    """y = x * w with one weight per feature: a minimal layer with a parameter and no Keras built-in twin."""

    weight_names = ("w",)

    def build(self, input_shape, dtype, rng):
        self.w = np.ones(input_shape, dtype=dtype)
        return input_shape

    @property
    def params(self):
        return [self.w]

    @property
    def grads(self):
        return [self.dw]

    def forward(self, x, training=False):
        self.x = x
        return x * self.w

    def backward(self, dy):
        self.dw = (dy * self.x).sum(axis=0)
        return dy * self.w


class KerasScale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=input_shape[1:], initializer="ones", name="w")

    def call(self, x):
        return x * self.w


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "make",
    [
        lambda d: (swish.Swish(), swish.keras_swish(d), (7,)),
        lambda d: (layer_norm.LayerNorm(), layer_norm.keras_layer_norm(d), (6,)),
        lambda d: (Dense(5, "gelu"), keras.layers.Dense(5, activation="gelu", dtype=d), (4,)),
        lambda d: (BatchNormalization(), keras.layers.BatchNormalization(dtype=d), (3,)),
        lambda d: (Scale(), KerasScale(dtype=d), (2, 3)),
    ],
    ids=["swish", "layer_norm", "dense_gelu", "batch_normalization", "user_scale_2d"],
)
def test_right_layers_pass(make, dtype):
    layer, twin, shape = make(dtype)
    report = check_layer(layer, twin, shape, dtype=dtype)
    assert report.passed, report.verdict()
    taylor = report.rows[-1]
    assert taylor.name.startswith("Taylor") and taylor.error > 1.8
    witness = next(row for row in report.rows if row.name.startswith("numerical grad"))
    assert witness.shape[0] >= 8  # input coordinates are sampled even for a layer without parameters


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_layer_fails_with_a_diagnosis(dtype):
    report = check_layer(swish.BrokenSwish(), swish.keras_swish(dtype), (7,), dtype=dtype)
    assert not report.passed
    assert {row.name for row in report.failures} == {"grad input", report.rows[-1].name}
    assert report.diagnosis.text.startswith("forward agrees; backward first differs at dL/dX (input)")


def test_a_wrong_parameter_gradient_is_located():
    class WrongScale(Scale):
        def backward(self, dy):
            dx = super().backward(dy)
            self.dw = self.dw.mean(axis=0) * np.ones_like(self.dw)  # a mean where the sum belongs
            return dx

    report = check_layer(WrongScale(), KerasScale(dtype="float64"), (4,))
    assert [row.name for row in report.failures][0] == "grad wrong_scale/w"
    assert "layer 1 (wrong_scale) dL/dw" in report.diagnosis.text


def test_parameters_are_random_and_nonzero():
    model = Sequential([Dense(4), BatchNormalization()], input_shape=(3,))
    weights = random_nonzero_params(model, np.random.default_rng(0))
    assert all(np.all(np.abs(w) > 0.1) for w in weights)
    assert np.all(weights[-1] > 0)  # a moving variance stays a variance
    assert np.any(weights[1] < 0) and np.any(weights[1] > 0)


def test_inputs_are_kept_away_from_declared_kinks():
    x = np.array([-0.5, -1e-4, 0.0, 2e-3, 0.7, 1.0 + 1e-5])
    moved = away_from_kinks(x, (0.0, 1.0), margin=1e-2)
    np.testing.assert_array_equal(moved, [-0.5, -1e-2, 1e-2, 1e-2, 0.7, 1.01])


def test_parameter_mismatch_names_both_shapes():
    with pytest.raises(
        BadInputError,
        match=r"has 2 parameter\(s\) of shapes \[\(4, 3\), \(3,\)\], but Keras layer "
        r"'dense_\d+' has 2 of shapes \[\(4, 5\), \(5,\)\]",
    ):
        check_layer(Dense(3), keras.layers.Dense(5, dtype="float64"), (4,))


def test_a_keras_layer_of_another_dtype_is_rebuilt_in_the_checked_dtype():
    report = check_layer(Dense(3, "tanh"), keras.layers.Dense(3, activation="tanh", dtype="float32"), (4,))
    assert report.passed and report.worst("norm-rel") < 1e-14  # float64 arithmetic on both sides


def test_not_a_layer_is_refused():
    with pytest.raises(BadInputError, match="layer 0 is a str, not a from_scratch.Layer"):
        check_layer("dense", keras.layers.Dense(3), (4,))
    with pytest.raises(BadInputError, match="keras_layer must be a keras.layers.Layer, got str"):
        check_layer(Dense(3), "dense", (4,))


def test_the_lazy_public_names():
    assert compare.check_layer is check_layer
    assert callable(compare.check_model) and callable(compare.from_keras)
    code = "import sys, compare, compare.pytest_plugin; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ----- the command line --------------------------------------------------------------------------------------------
def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_passes_a_right_layer(capsys):
    code, out, _ = run(capsys, "check-layer", f"{SWISH}:swish", f"{SWISH}:keras_swish", "--input-shape", "7")
    assert code == 0 and "PASS: all" in out


def test_cli_fails_a_wrong_layer_with_the_diagnosis(capsys):
    code, out, _ = run(
        capsys,
        "check-layer",
        f"{SWISH}:broken_swish",
        f"{SWISH}:keras_swish",
        "--input-shape",
        "7",
        "--dtype",
        "float32",
        "--json",
    )
    report = json.loads(out)
    assert code == 1 and not report["passed"]
    assert report["diagnosis"]["quantity"] == "dL/dX (input)"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["nope.py:swish", f"{SWISH}:keras_swish"], "SCRATCH 'nope.py:swish': no such file nope.py"),
        ([f"{SWISH}:nothing", f"{SWISH}:keras_swish"], "has no function 'nothing'"),
        (["swish", f"{SWISH}:keras_swish"], "expected module:factory or path/to/file.py:factory"),
        (["no_such_module_xyz:f", f"{SWISH}:keras_swish"], "no module named 'no_such_module_xyz'"),
        (["json:dumps", f"{SWISH}:keras_swish"], "dumps() must take no argument (missing a required argument: 'obj')"),
        ([f"{SWISH}:keras_swish", f"{SWISH}:keras_swish"], "returned an Activation, not a from_scratch.Layer"),
        ([f"{SWISH}:swish", f"{SWISH}:swish"], "swish' returned a Swish, not a keras.layers.Layer"),
        (
            [f"{LAYER_NORM}:layer_norm", f"{LAYER_NORM}:keras_layer_norm", "--input-shape", "3,2"],
            "layer_norm.py:keras_layer_norm raised ValueError",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    if "--input-shape" not in argv:
        argv = [*argv, "--input-shape", "7"]
    code, out, err = run(capsys, "check-layer", *argv)
    assert code == 2, out
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shape", ["0", "7,-1", "x", "7.5"])
def test_cli_refuses_a_bad_input_shape(capsys, shape):
    with pytest.raises(SystemExit) as exit_info:
        main(["check-layer", f"{SWISH}:swish", f"{SWISH}:keras_swish", "--input-shape", shape])
    assert exit_info.value.code == 2
    assert "is not a shape of positive integers" in capsys.readouterr().err


# ----- the pytest plugin -------------------------------------------------------------------------------------------
PLUGIN_TEST = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("swish", {str(SWISH)!r})
swish = importlib.util.module_from_spec(spec); spec.loader.exec_module(swish)

def test_no_tensorflow_before_the_fixture():
    assert "tensorflow" not in sys.modules

def test_right(parity):
    report = parity(swish.Swish(), swish.keras_swish(), input_shape=(7,))
    print("DTYPE", report.config["dtype"], "SEED", report.config["seed"])

def test_wrong(parity):
    parity(swish.BrokenSwish(), swish.keras_swish(), input_shape=(7,))
"""


def run_pytest(tmp_path, *options):
    (tmp_path / "test_user_layer.py").write_text(PLUGIN_TEST)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            str(tmp_path / "test_user_layer.py"),
            *options,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )


def test_plugin_fixture_passes_and_fails_with_the_table(tmp_path):
    result = run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "2 passed, 1 failed" in result.stdout or "1 failed, 2 passed" in result.stdout
    assert "BrokenSwish differs from its Keras twin" in result.stdout
    assert "quantity" in result.stdout and "diagnosis: forward agrees; backward first differs" in result.stdout
    assert "DTYPE float64 SEED 0" in result.stdout


def test_plugin_options(tmp_path):
    result = run_pytest(tmp_path, "--parity-dtype", "float32", "--parity-seed", "5", "-k", "right")
    assert result.returncode == 0, result.stdout
    assert "DTYPE float32 SEED 5" in result.stdout


def test_json_is_strict_when_the_taylor_slope_is_infinite(capsys):
    """A layer that is linear along the Taylor direction leaves only rounding: slope inf, a pass, and the JSON
    carries it as the string "inf" (bare Infinity is not JSON)."""

    class Double(Layer):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    report = check_layer(Double(), keras.layers.Rescaling(2.0, dtype="float64"), (3,))
    assert report.passed and report.rows[-1].error == float("inf")
    from compare.report import to_json

    parsed = json.loads(to_json(report), parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))
    assert parsed["rows"][-1]["error"] == "inf"


# ----- a layer that breaks the protocol is told how -----------------------------------------------------------------
class NoGrads(Scale):
    @property
    def grads(self):
        return []


class TransposedGrad(Scale):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dw = self.dw.reshape(self.w.shape[::-1]) if self.dw.ndim == 2 else self.dw[None, :]
        return dx


class WrongWidth(Layer):
    def forward(self, x, training=False):
        return np.concatenate([x, x], axis=1)

    def backward(self, dy):
        return dy


@pytest.mark.parametrize(
    "layer,shape,message",
    [
        (NoGrads(), (3,), "layer 'no_grads': grads has 0 array(s) for 1 parameter(s)"),
        (TransposedGrad(), (2, 3), "layer 'transposed_grad': the gradient of w has shape (3, 2), its parameter (2, 3)"),
        (WrongWidth(), (3,), "layer 'wrong_width': forward() returned shape (16, 6), expected shape (16, 3)"),
    ],
)
def test_a_protocol_slip_is_named(layer, shape, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        check_layer(layer, KerasScale(dtype="float64") if isinstance(layer, Scale) else keras.layers.Identity(), shape)


def test_cli_names_where_a_users_code_raised_and_imports_its_neighbours(capsys, tmp_path):
    (tmp_path / "helpers.py").write_text("def width(shape):\n    (d,) = shape\n    return d\n")
    (tmp_path / "mine.py").write_text(
        "import helpers\nfrom from_scratch import Layer\n\n"
        "class Mine(Layer):\n"
        "    def build(self, input_shape, dtype, rng):\n"
        "        return (helpers.width(input_shape),)\n"
        "    def forward(self, x, training=False):\n        return x\n"
        "    def backward(self, dy):\n        return dy\n\n"
        "def mine():\n    return Mine()\n\n"
        "def twin():\n    import keras\n    return keras.layers.Identity(dtype='float64')\n"
    )
    code, out, _ = run(
        capsys, "check-layer", f"{tmp_path}/mine.py:mine", f"{tmp_path}/mine.py:twin", "--input-shape", "4"
    )
    assert code == 0 and "PASS" in out
    code, _, err = run(
        capsys, "check-layer", f"{tmp_path}/mine.py:mine", f"{tmp_path}/mine.py:twin", "--input-shape", "4,2"
    )
    assert code == 2 and "raised ValueError: too many values to unpack" in err
    assert f"(at {tmp_path.resolve() / 'helpers.py'}:2 in width)" in err  # the full path: not under the current folder


# ----- the Taylor witness fails a wrong dL/dX on its own -----------------------------------------------------------
class _ScaledInputGrad(Scale):
    """Scale with its dL/dw right and dL/dx 1.5 times too large."""

    def backward(self, dy):
        return 1.5 * super().backward(dy)


class _DenseActivationDerivativeDropped(Dense):
    """Dense tanh with dL/dW and dL/db right and dL/dX missing tanh's derivative: dX = dA W^T, not (f'(Z) dA) W^T."""

    def backward(self, dA, input_grad=True):
        dx = super().backward(dA, input_grad)
        return None if dx is None else dA @ self.W.T


class _SwishInputGradTermDropped(swish.Swish):
    """Swish (no parameters) with the x s (1 - s) term of dL/dx left out."""

    def backward(self, dy):
        return dy * self.s


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "make",
    [
        lambda d: (_ScaledInputGrad(), KerasScale(dtype=d), (2, 3), 1),
        lambda d: (
            _DenseActivationDerivativeDropped(4, "tanh"),
            keras.layers.Dense(4, activation="tanh", dtype=d),
            (5,),
            2,
        ),
        lambda d: (_SwishInputGradTermDropped(), swish.keras_swish(d), (6,), 0),
    ],
    ids=["scaled", "activation_derivative_dropped", "term_dropped_no_params"],
)
def test_the_taylor_row_fails_a_wrong_input_gradient_with_slope_one(make, dtype):
    """Only dL/dX wrong, every parameter gradient right: the Taylor row itself must FAIL with slope ~1 (the
    remainder keeps the first-order term h <dX_wrong - dX, v_x>), beside "grad input"; the parameter rows pass.
    A backward whose wrong dL/dX is never compared with Keras (a first layer of a network) is left to this row."""
    layer, twin, shape, n_params = make(dtype)
    report = check_layer(layer, twin, shape, dtype=dtype)
    taylor = report.rows[-1]
    assert taylor.name.startswith("Taylor remainder slope")
    assert not taylor.passed and 0.9 < taylor.error < 1.1, (taylor.name, taylor.error)
    failed = {row.name for row in report.failures}
    assert failed == {"grad input", taylor.name}, failed
    param_rows = [row for row in report.rows if row.name.startswith("grad ") and row.name != "grad input"]
    assert len(param_rows) == n_params and all(row.passed for row in param_rows)


def test_the_taylor_row_alone_fails_a_wrong_input_gradient_no_other_row_sees():
    """taylor_row on the scratch model alone (no Keras side): the right Dense gives slope ~2, the same weights with
    only dL/dX missing tanh's derivative give slope ~1 and FAIL."""
    from compare.check import Projection, taylor_row

    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((6, 5)), rng.standard_normal((6, 4))
    right = Sequential([Dense(4, "tanh")], input_shape=(5,))
    wrong = Sequential([_DenseActivationDerivativeDropped(4, "tanh")], input_shape=(5,))
    wrong.set_weights(right.get_weights())
    good = taylor_row(right, x, np.zeros((6, 4)), Projection(g))
    bad = taylor_row(wrong, x, np.zeros((6, 4)), Projection(g))
    assert good.passed and 1.9 < good.error < 2.1
    assert not bad.passed and 0.9 < bad.error < 1.1
