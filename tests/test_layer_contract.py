"""The contract a user's layer meets is named and holds: row names from the Keras twin's variables, inputs of the
user's choosing (integer ids too), the protocol enforced by name, check_model's Keras side, a memory estimate from
the layer's real shapes, the pytest plugin's options refused at start-up, and factory paths named as given."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import compare.data
from compare.check import Projection, as_batch, check_layer, check_model
from compare.cli import main
from compare.report import render
from from_scratch import BadInputError, Dense, Layer, Sequential
from from_scratch.recurrent import Embedding

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----- layers used below ------------------------------------------------------------------------------------------
class ScaleShift(Layer):
    """y = x * gamma + beta per feature; `beta_factor` scales dL/dbeta (0.5: a planted bug)."""

    def __init__(self, beta_factor=1.0):
        self.beta_factor = beta_factor

    def build(self, input_shape, dtype, rng):
        self.gamma = np.ones(input_shape, dtype)
        self.beta = np.zeros(input_shape, dtype)
        return input_shape

    @property
    def params(self):
        return [self.gamma, self.beta]

    @property
    def grads(self):
        return [self.dgamma, self.dbeta]

    def forward(self, x, training=False):
        self.x = x
        return x * self.gamma + self.beta

    def backward(self, dy):
        self.dgamma = (dy * self.x).sum(axis=0)
        self.dbeta = dy.sum(axis=0) * self.beta_factor
        return dy * self.gamma


class KerasScaleShift(keras.layers.Layer):
    def __init__(self, names=("gamma", "beta"), **kwargs):
        super().__init__(**kwargs)
        self.names = names

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=input_shape[1:], initializer="ones", name=self.names[0])
        self.beta = self.add_weight(shape=input_shape[1:], initializer="zeros", name=self.names[1])

    def call(self, x):
        return x * self.gamma + self.beta


def scale_shift_twin(names=("gamma", "beta"), dtype="float64"):
    return KerasScaleShift(names, name="scale_shift", dtype=dtype)


class Identity(Layer):
    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


class OwnEmbedding(Layer):
    """A user's lookup table that declares nothing about its inputs: Y = E[X], dE by np.add.at (or, with
    `slip`, by E[X] += dY, which keeps one of two gradients of a repeated index)."""

    def __init__(self, input_dim, output_dim, slip=False):
        self.input_dim, self.output_dim, self.slip = input_dim, output_dim, slip

    def build(self, input_shape, dtype, rng):
        self.E = rng.uniform(-0.05, 0.05, (self.input_dim, self.output_dim)).astype(dtype)
        return (*input_shape, self.output_dim)

    @property
    def params(self):
        return [self.E]

    @property
    def grads(self):
        return [self.dE]

    def forward(self, x, training=False):
        self.ids = x.astype(np.int64)
        return self.E[self.ids]

    def backward(self, dy):
        self.dE = np.zeros_like(self.E)
        if self.slip:
            self.dE[self.ids] += dy
        else:
            np.add.at(self.dE, self.ids, dy)
        return np.zeros(self.ids.shape, dy.dtype)


def ids(shape=(6, 5), vocabulary=10, seed=1):
    """Integer ids with repeats (6 x 5 draws from 10)."""
    return np.random.default_rng(seed).integers(0, vocabulary, size=shape)


# ----- row names come from the Keras twin's variables -----------------------------------------------------------
def test_rows_are_named_after_the_twins_variables_in_the_table_and_the_diagnosis():
    report = check_layer(ScaleShift(beta_factor=0.5), scale_shift_twin(), (3,))
    names = [row.name for row in report.rows]
    assert "grad scale_shift/gamma" in names and "grad scale_shift/beta" in names
    assert not any("weight_" in name for name in names)
    assert [row.name for row in report.failures][0] == "grad scale_shift/beta"
    assert report.diagnosis.first.quantity == "dL/dbeta"
    text = render(report)
    assert "grad scale_shift/beta" in text and "dL/dbeta" in text and "weight_1" not in text
    # the user's layer is left as it was: it declares no weight_names after the check either
    layer = ScaleShift()
    check_layer(layer, scale_shift_twin(), (3,))
    assert layer.weight_names is None and "weight_names" not in vars(layer)


def test_declared_weight_names_win_and_unusable_twin_names_fall_back():
    class Named(ScaleShift):
        weight_names = ("scale", "shift")

    report = check_layer(Named(), scale_shift_twin(), (3,))
    assert {"grad named/scale", "grad named/shift"} <= {row.name for row in report.rows}
    for names in (("w", "w"), (None, None), ("gamma", None)):  # repeated, or Keras's own "variable", "variable_1"
        report = check_layer(ScaleShift(), scale_shift_twin(names=names), (3,))
        assert {"grad scale_shift/weight_0", "grad scale_shift/weight_1"} <= {row.name for row in report.rows}


def test_check_model_names_rows_after_each_twin_layer():
    scratch = Sequential([ScaleShift(), Dense(2, "tanh")], input_shape=(3,))
    twin = keras.Sequential(
        [keras.Input((3,), dtype="float64"), scale_shift_twin(), keras.layers.Dense(2, "tanh", dtype="float64")]
    )
    x = np.random.default_rng(0).standard_normal((4, 3))
    report = check_model(scratch, twin, x, np.random.default_rng(1).standard_normal((4, 2)), "mse")
    names = [row.name for row in report.rows]
    assert "grad scale_shift/beta" in names and "grad dense/kernel" in names and report.passed


# ----- inputs of the user's choosing ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_embedding_is_checked_on_integer_ids(dtype):
    x = ids()
    report = check_layer(Embedding(10, 4), keras.layers.Embedding(10, 4, dtype=dtype), inputs=x, dtype=dtype)
    assert report.passed, render(report)
    assert report.config["batch"] == 6 and report.config["input_shape"] == [5]
    report = check_layer(OwnEmbedding(10, 4), keras.layers.Embedding(10, 4, dtype=dtype), inputs=x, dtype=dtype)
    assert report.passed, render(report)


def test_a_wrong_embedding_backward_fails_on_ids_that_repeat():
    report = check_layer(OwnEmbedding(10, 4, slip=True), keras.layers.Embedding(10, 4), inputs=ids())
    assert not report.passed
    assert "grad own_embedding/embeddings" in [row.name for row in report.failures]


def test_check_model_keeps_integer_ids_indices():
    """A user's lookup that declares nothing, first in a model, given integer ids: the witnesses move only the
    weights (the ids would otherwise turn into other ids, or out of range)."""
    scratch = Sequential([OwnEmbedding(10, 4), Dense(3, "tanh")], input_shape=(5,))
    twin = keras.Sequential(
        [
            keras.Input((5,), dtype="float64"),
            keras.layers.Embedding(10, 4, dtype="float64"),
            keras.layers.Dense(3, "tanh", dtype="float64"),
        ]
    )
    upstream = np.random.default_rng(2).standard_normal((6, 5, 3))
    report = check_model(scratch, twin, ids(), np.zeros((6, 5, 3)), Projection(upstream))
    assert report.passed, render(report)
    assert "integer_inputs" not in vars(scratch.layers[0])  # the declaration lasted the check only


def test_without_inputs_an_integer_layer_gets_indices_or_is_told_to_bring_them():
    assert check_layer(Embedding(10, 4), keras.layers.Embedding(10, 4), (5,)).passed  # ids in [0, input_dim)

    class Lookup(Layer):  # its vocabulary is not called input_dim: nothing to draw indices below
        integer_inputs = True

        def build(self, input_shape, dtype, rng):
            self.E = np.ones((10, 4), dtype)
            return (*input_shape, 4)

        @property
        def params(self):
            return [self.E]

    with pytest.raises(BadInputError, match="declares integer_inputs .* give the batch of indices with inputs="):
        check_layer(Lookup(), keras.layers.Embedding(10, 4), (5,))


def test_a_lookup_fed_random_values_is_pointed_to_inputs(capsys, tmp_path):
    """The issue's raw IndexError: a user's lookup table given random N(0, 1) values. From Python the user's own
    exception keeps its traceback and gains a note; the command says it in one line."""
    with pytest.raises(IndexError) as info:
        check_layer(OwnEmbedding(2, 4), keras.layers.Embedding(2, 4), (5,))
    if sys.version_info >= (3, 11):  # exception notes
        assert "give a batch of integer ids with inputs=" in "".join(info.value.__notes__)
    (tmp_path / "lookup.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_layer_contract import OwnEmbedding\n\n"
        "def scratch():\n    return OwnEmbedding(2, 4)\n\n"
        "def twin():\n    import keras\n    return keras.layers.Embedding(2, 4, dtype='float64')\n"
    )
    factories = [f"{tmp_path}/lookup.py:scratch", f"{tmp_path}/lookup.py:twin"]
    code, _, err = run(capsys, "check-layer", *factories, "--input-shape", "5")
    assert code == 2 and "raised IndexError" in err and "give them with --inputs" in err
    assert len(err.strip().splitlines()) == 1
    np.save(tmp_path / "ids.npy", ids(vocabulary=2))
    code, out, err = run(capsys, "check-layer", *factories, "--inputs", str(tmp_path / "ids.npy"))
    assert code == 0 and "PASS" in out, err


def test_the_callers_inputs_are_not_handed_to_the_layer():
    class Zeroes(Identity):  # writes into its input (a protocol break another check names); x stays the caller's
        def forward(self, x, training=False):
            y = x.copy()
            x[...] = 0
            return y

    x = np.arange(6.0).reshape(2, 3) + 1
    try:
        check_layer(Zeroes(), keras.layers.Identity(), inputs=x)
    except BadInputError:
        pass
    assert np.array_equal(x, np.arange(6.0).reshape(2, 3) + 1)


def test_a_prepared_batch_is_the_batch_compared():
    """A layer wrong only beyond |x| = 4 passes on N(0, 1) inputs and fails on a batch that reaches there."""

    class WrongFarOut(Layer):
        def forward(self, x, training=False):
            return np.where(np.abs(x) > 4, 2 * x, x)

        def backward(self, dy):
            return dy

    twin = keras.layers.Identity(dtype="float64")
    assert check_layer(WrongFarOut(), twin, (3,), seed=0).passed
    x = np.array([[0.5, -6.0, 1.0], [7.0, 0.1, -0.2]])
    report = check_layer(WrongFarOut(), keras.layers.Identity(dtype="float64"), inputs=x)
    assert not report.passed and report.config["batch"] == 2 and "output" in [r.name for r in report.failures]


def test_inputs_that_contradict_or_are_not_a_batch_are_refused():
    x = np.zeros((4, 3))
    with pytest.raises(BadInputError, match=r"input_shape \(5,\) contradicts inputs of shape \(4, 3\)"):
        check_layer(Identity(), keras.layers.Identity(), (5,), inputs=x)
    with pytest.raises(BadInputError, match=r"batch 2 contradicts inputs of shape \(4, 3\) \(4 samples\)"):
        check_layer(Identity(), keras.layers.Identity(), batch=2, inputs=x)
    assert check_layer(Identity(), keras.layers.Identity(), (3,), batch=4, inputs=x).passed  # agreeing: fine
    with pytest.raises(BadInputError, match="give input_shape"):
        check_layer(Identity(), keras.layers.Identity())
    bad = [
        (np.array([[1, None]], dtype=object), r"dtype object \(Python objects\)"),
        (np.ones((2, 3)) * 1j, r"dtype complex128 \(complex numbers\)"),
        (np.ones((2, 3), bool), r"dtype bool \(booleans\)"),
        (np.array([[1.0, np.nan]]), r"nan at index \(0, 1\)"),
        (np.array([[1.0], [-np.inf]]), r"-inf at index \(1, 0\)"),
        (np.ones(3), r"with a batch axis first, got shape \(3,\)"),
        (np.ones((0, 3)), "empty"),
        ([[1.0, 2.0], [3.0]], "not an array of numbers"),
    ]
    for value, message in bad:
        with pytest.raises(BadInputError, match=message):
            as_batch(value)
    with pytest.raises(BadInputError, match=r"the integer 16777217 at index \(0, 1\) is not exactly representable"):
        as_batch(np.array([[3, 2**24 + 1]]), "float32")
    with pytest.raises(BadInputError, match="beyond the range of float32"):
        as_batch(np.array([[1e300, 1.0]]), "float32")


def test_cli_inputs_file(capsys, tmp_path):
    here = tmp_path / "emb.py"
    here.write_text(
        "def scratch():\n    from from_scratch.recurrent import Embedding\n    return Embedding(10, 4)\n\n"
        "def twin():\n    import keras\n    return keras.layers.Embedding(10, 4, dtype='float64')\n"
    )
    np.save(tmp_path / "ids.npy", ids())
    factories = [f"{here}:scratch", f"{here}:twin"]
    code, out, err = run(capsys, "check-layer", *factories, "--inputs", str(tmp_path / "ids.npy"))
    assert code == 0 and "PASS" in out and "batch=6" in out, err
    np.save(tmp_path / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "complex.npy", np.ones((2, 3)) * 1j)
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "flat.npy", np.ones(3))
    (tmp_path / "garbage.npy").write_text("not an array")
    (tmp_path / "ids.txt").write_text("1 2 3")
    cases = {
        "missing.npy": "no such file",
        "ids.txt": "not a .npy file",
        "garbage.npy": "not in .npy format",
        "objects.npy": "holds Python objects",
        "complex.npy": "got dtype complex128",
        "nan.npy": r"nan at index \(0, 1\)",
        "flat.npy": r"got shape \(3,\)",
    }
    for name, message in cases.items():
        code, _, err = run(capsys, "check-layer", *factories, "--inputs", str(tmp_path / name))
        assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err and f"--inputs {tmp_path / name}" in err
    contradictions = [["--input-shape", "4"], ["--batch", "5"]]
    for flags in contradictions:
        code, _, err = run(capsys, "check-layer", *factories, "--inputs", str(tmp_path / "ids.npy"), *flags)
        assert code == 2 and "contradicts --inputs" in err and flags[0] in err
    code, _, err = run(capsys, "check-layer", *factories)
    assert code == 2 and "give --input-shape SHAPE" in err


# ----- the protocol, enforced by name ----------------------------------------------------------------------------
class HoldsAModule(Identity):
    def __init__(self):
        self.backend = np  # a module: copy.deepcopy cannot copy it


class ParamsCopied(ScaleShift):
    @property
    def params(self):
        return [self.gamma.copy(), self.beta]


class ParamsReadOnly(ScaleShift):
    def build(self, input_shape, dtype, rng):
        shape = super().build(input_shape, dtype, rng)
        self.beta.flags.writeable = False
        return shape


class ParamsOtherDtype(ScaleShift):
    def build(self, input_shape, dtype, rng):
        shape = super().build(input_shape, dtype, rng)
        self.beta = self.beta.astype(np.float32)
        return shape


class ParamsNotArrays(ScaleShift):
    @property
    def params(self):
        return [self.gamma, self.beta.tolist()]


class RandomWithoutMasks(Identity):
    deterministic = False


class RandomWithoutFixMask(Identity):
    deterministic = False

    def draw_mask(self, shape):
        return np.ones(shape)


@pytest.mark.parametrize(
    "layer,message",
    [
        (HoldsAModule(), "layer 'holds_a_module' (HoldsAModule): the harness deep-copies each layer (copy.deepcopy"),
        (HoldsAModule(), "copying its attribute 'backend' raised TypeError: cannot pickle 'module' object"),
        (ParamsCopied(), "layer 'params_copied' (ParamsCopied): params[0] is a new array on every call (a copy)"),
        (ParamsReadOnly(), "layer 'params_read_only' (ParamsReadOnly): params[1] is read-only"),
        (ParamsOtherDtype(), "params[1] has dtype float32, not the model's float64"),
        (ParamsNotArrays(), "params must be a list of NumPy arrays"),
        (RandomWithoutMasks(), "'random_without_masks' (RandomWithoutMasks) declares deterministic = False but has "),
        (RandomWithoutMasks(), "has no draw_mask and no fix_mask"),
        (RandomWithoutFixMask(), "has no fix_mask: a layer that draws random numbers offers draw_mask"),
    ],
)
def test_a_protocol_break_is_named_with_the_layer_and_the_attribute(layer, message):
    twin = scale_shift_twin() if isinstance(layer, ScaleShift) else keras.layers.Identity()
    with pytest.raises(BadInputError, match=re.escape(message)):
        check_layer(layer, twin, (3,))


def test_a_random_layers_twin_must_take_the_mask():
    from from_scratch.layers import Dropout

    with pytest.raises(BadInputError, match="its Keras twin 'dropout' \\(Dropout\\) has no mask attribute"):
        check_layer(Dropout(0.3), keras.layers.Dropout(0.3, name="dropout"), (5,))


def test_a_params_copy_says_the_harness_writes_into_params():
    with pytest.raises(BadInputError, match="the harness writes the compared parameter values into them"):
        check_layer(ParamsCopied(), scale_shift_twin(), (3,))


# ----- check_model: what the Keras side may be --------------------------------------------------------------------
def dense_pair():
    scratch = Sequential([Dense(3, "tanh"), Dense(2, "softmax")], input_shape=(4,))
    x = np.random.default_rng(0).standard_normal((5, 4))
    return scratch, x, np.eye(2)[[0, 1, 0, 1, 0]]


def test_check_model_takes_a_functional_chain_and_refuses_a_nested_and_a_subclassed_model_by_name():
    scratch, x, y = dense_pair()
    inputs = keras.Input((4,), dtype="float64")
    hidden = keras.layers.Dense(3, activation="tanh", dtype="float64")(inputs)
    functional = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", dtype="float64")(hidden), name="mine")
    assert check_model(scratch, functional, x, y, gradcheck_samples=2).passed  # the same chain, node for node
    wrong = keras.Model(inputs, keras.layers.Dropout(0.5, dtype="float64")(hidden), name="wrong")
    with pytest.raises(BadInputError, match="node 2 .*: the scratch layer is a dense, the Keras layer a dropout"):
        check_model(scratch, wrong, x, y)
    inner = keras.Sequential([keras.Input((4,), dtype="float64"), keras.layers.Dense(3, "tanh")], name="inner")
    nested = keras.Sequential([keras.Input((4,), dtype="float64"), inner, keras.layers.Dense(2, "softmax")])
    with pytest.raises(BadInputError, match="layer 0 of the Keras model .* is itself a model \\('inner', Sequential"):
        check_model(scratch, nested, x, y)

    class Mine(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.a, self.b = keras.layers.Dense(3, "tanh"), keras.layers.Dense(2, "softmax")

        def call(self, t):
            return self.b(self.a(t))

    with pytest.raises(BadInputError, match="'subclassed' is a subclassed model"):
        check_model(scratch, Mine(), x, y)


def test_check_model_refuses_scratch_side_oddities():
    scratch, x, y = dense_pair()
    twin = keras.Sequential(
        [
            keras.Input((4,), dtype="float64"),
            keras.layers.Dense(3, "tanh", dtype="float64"),
            keras.layers.Dense(2, "softmax", dtype="float64"),
        ]
    )
    assert check_model(scratch, twin, x, y).passed
    with pytest.raises(BadInputError, match="got a Keras model .* the arguments are \\(scratch_model, keras_model"):
        check_model(twin, scratch, x, y)
    with pytest.raises(BadInputError, match="keras_model is a from_scratch.Sequential"):
        check_model(scratch, scratch, x, y)
    with pytest.raises(
        BadInputError, match="scratch_model must be a from_scratch.Sequential or from_scratch.graph.Model, got a list"
    ):
        check_model([Dense(3)], twin, x, y)
    with pytest.raises(BadInputError, match="keras_model must be a keras.Sequential, got a Dense"):
        check_model(scratch, keras.layers.Dense(2), x, y)
    extra = Sequential([Dense(3, "tanh"), Identity(), Dense(2, "softmax")], input_shape=(4,))  # same weights
    with pytest.raises(BadInputError, match="has 2 layer\\(s\\) and the scratch model 3: check_model pairs them"):
        check_model(extra, twin, x, y)
    uncopyable = Sequential([Dense(3, "tanh"), HoldsAModule(), Dense(2, "softmax")], input_shape=(4,))
    twin = keras.Sequential(
        [keras.Input((4,), dtype="float64"), *twin.layers[:1], keras.layers.Identity(), *twin.layers[1:]]
    )
    with pytest.raises(BadInputError, match="layer 'holds_a_module' .* its attribute 'backend'"):
        check_model(uncopyable, twin, x, y)


# ----- memory: estimated from the layer's real shapes ---------------------------------------------------------
def test_valid_wide_runs_are_not_refused(capsys, tmp_path):
    (tmp_path / "ident.py").write_text(
        "from from_scratch import Layer\n\n"
        "class Identity(Layer):\n"
        "    def forward(self, x, training=False):\n        return x\n"
        "    def backward(self, dy):\n        return dy\n\n"
        "def scratch():\n    return Identity()\n\n"
        "def twin():\n    import keras\n    return keras.layers.Identity(dtype='float64')\n"
    )
    factories = [f"{tmp_path}/ident.py:scratch", f"{tmp_path}/ident.py:twin"]
    for shape, batch in (("128,128,3", "2"), ("20000", "1")):
        code, out, err = run(capsys, "check-layer", *factories, "--input-shape", shape, "--batch", batch)
        assert code == 0 and "PASS" in out, err


def test_a_run_that_cannot_fit_is_refused_before_it_allocates():
    with pytest.raises(BadInputError, match=r"checking layer 'identity' on a batch of 16 x 20000x20000 needs about"):
        check_layer(Identity(), keras.layers.Identity(), (20000, 20000))


def test_the_issues_square_input_is_refused_with_its_estimate(monkeypatch):
    monkeypatch.setattr(compare.data, "available_memory", lambda: 16 * 2**30)  # as on a 16 GiB machine
    with pytest.raises(BadInputError, match=r"16 samples x 18000000 values x 40 copies, 0 weights"):
        check_layer(Identity(), keras.layers.Identity(), (3000, 3000))


def test_the_estimate_counts_the_output_and_the_parameters(monkeypatch):
    """With 64 MiB available: an identity on 3000 features at batch 16 fits (2 x 3000 values per sample), a layer
    whose output is 3000 x 3000 per sample does not, nor a layer of 3000 x 3000 parameters."""
    monkeypatch.setattr(compare.data, "available_memory", lambda: 64 * 2**20)

    class Outer(Layer):  # y[n] = x[n] x[n]^T: a (3000,) input gives a (3000, 3000) output
        def build(self, input_shape, dtype, rng):
            return (input_shape[0], input_shape[0])

        def forward(self, x, training=False):
            raise AssertionError("refused before running")

    assert check_layer(Identity(), keras.layers.Identity(), (3000,), gradcheck_samples=1).passed
    with pytest.raises(BadInputError, match="16 samples x 9003000 values"):
        check_layer(Outer(), keras.layers.Identity(), (3000,))
    with pytest.raises(BadInputError, match="9003000 weights"):
        check_layer(Dense(3000), keras.layers.Dense(3000), (3000,), batch=1)


# ----- the pytest plugin refuses bad option values at start-up --------------------------------------------------
PLUGIN_TEST = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_layer_contract import ScaleShift, scale_shift_twin

def test_planted(parity):
    parity(ScaleShift(beta_factor=0.5), scale_shift_twin(), input_shape=(3,))
"""


def run_pytest(tmp_path, *options):
    (tmp_path / "test_user_layer.py").write_text(PLUGIN_TEST)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "test_user_layer.py",
        ]
        + list(options),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


@pytest.mark.parametrize(
    "options,message",
    [
        (["--parity-seed", "-1"], "--parity-seed must be an integer >= 0, got -1"),
        (["--parity-seed", "x"], "--parity-seed: invalid int value: 'x'"),
        (["--parity-seed", "1.5"], "--parity-seed: invalid int value: '1.5'"),
        (["--parity-dtype", "float16"], "--parity-dtype: invalid choice: 'float16'"),
        (["--parity-dtype", "int32"], "--parity-dtype: invalid choice: 'int32'"),
    ],
)
def test_plugin_refuses_a_bad_option_as_a_usage_error(tmp_path, options, message):
    result = run_pytest(tmp_path, *options)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert message in result.stderr and "failed" not in result.stdout


def test_plugin_failure_message_names_the_twins_variable(tmp_path):
    result = run_pytest(tmp_path, "--parity-seed", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ScaleShift differs from its Keras twin" in result.stdout
    assert "grad scale_shift/beta" in result.stdout and "dL/dbeta" in result.stdout
    assert "weight_1" not in result.stdout


# ----- factory paths --------------------------------------------------------------------------------------------
def test_a_factory_path_that_is_not_a_python_file_is_named(capsys, tmp_path):
    (tmp_path / "layer.txt").write_text("def f():\n    pass\n")
    (tmp_path / "folder.py").mkdir()
    swish = ROOT / "examples" / "custom_layer" / "swish.py"
    for target, message in (("layer.txt", "layer.txt is not a .py file"), ("folder.py", "folder.py is a folder")):
        code, _, err = run(
            capsys, "check-layer", f"{tmp_path / target}:f", f"{swish}:keras_swish", "--input-shape", "3"
        )
        assert code == 2 and message in err and "NoneType" not in err, err
        assert len(err.strip().splitlines()) == 1


def test_errors_name_the_users_file_by_its_path_as_given(capsys, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "layers.py").write_text(
        "import numpy as np\nfrom from_scratch import Layer\n\n"
        "class Broken(Layer):\n"
        "    def forward(self, x, training=False):\n"
        "        return np.reshape(x, (-1, 5))\n"
        "    def backward(self, dy):\n        return dy\n\n"
        "def broken():\n    return Broken()\n\n"
        "def twin():\n    import keras\n    return keras.layers.Identity(dtype='float64')\n"
    )
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "check-layer", "mine/layers.py:broken", "mine/layers.py:twin", "--input-shape", "3")
    assert code == 2 and "raised ValueError" in err
    assert "(at mine/layers.py:6 in forward)" in err, err  # not numpy's file, not only layers.py:6


def test_a_bad_inputs_file_is_refused_before_tensorflow_loads(tmp_path):
    (tmp_path / "garbage.npy").write_text("not an array")
    swish = str(ROOT / "examples" / "custom_layer" / "swish.py")
    for flags in (["--inputs", "missing.npy"], ["--inputs", "garbage.npy"], []):
        argv = ["check-layer", f"{swish}:swish", f"{swish}:keras_swish", *flags]
        code = (
            "import sys\nfrom compare import cli\n"
            f"code = cli.main({argv!r})\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\nsys.exit(code)"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert result.returncode == 2 and "TensorFlow was imported" not in result.stderr, result.stderr


def test_a_factory_module_that_does_not_exist_is_named_without_an_importer_frame(capsys):
    """A module:factory whose module is not there: one line naming it, not a frame inside Python's importer."""
    code, _, err = run(capsys, "check-layer", "no_such_module_xyz:make", "keras.layers:Identity", "--input-shape", "3")
    assert code == 2
    assert "no module named 'no_such_module_xyz'" in err
    assert "<frozen" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--seed", "1", "--seed", "2"],
        ["check-layer", "a.py:f", "b.py:g", "--seed=1", "--seed", "2"],
        ["train", "--epochs", "1", "--json", "--json"],
    ],
)
def test_an_option_given_twice_is_refused_not_the_last_one_kept(capsys, argv):
    with pytest.raises(SystemExit) as exc:  # argparse's usage error: one line, exit code 2
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "given twice" in err and len(err.strip().splitlines()) == 1


def test_a_factory_that_is_not_a_function_or_needs_arguments_is_named(capsys, tmp_path):
    (tmp_path / "mine.py").write_text("n = 3\n\n\ndef needs(units):\n    return units\n")
    code, _, err = run(capsys, "check-layer", f"{tmp_path}/mine.py:n", "keras.layers:Identity", "--input-shape", "3")
    assert code == 2 and "mine.py's n is 'int', not a function" in err
    code, _, err = run(
        capsys, "check-layer", f"{tmp_path}/mine.py:needs", "keras.layers:Identity", "--input-shape", "3"
    )
    assert code == 2 and "needs() must take no argument (missing a required argument: 'units')" in err
    assert "cli.py" not in err and "user_code.py" not in err
