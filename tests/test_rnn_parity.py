"""Sequence layers against Keras: SimpleRNN, LSTM, GRU (both reset_after conventions) over random sequence lengths,
widths, units and return_sequences (hypothesis) through compare.check_layer, Embedding with repeated indices, the
numerical witness, and for each layer kind a realistic wrong backward pass that the check fails."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from compare.check import Projection, check_layer
from compare.tolerances import F32_FACTOR, F64_TOL, GRADCHECK_TOL, norm_rel_error, truth_rel_error
from from_scratch import Architecture, BadInputError, Dense, LayerNormalization, Sequential
from from_scratch.arch import LayerSpec
from from_scratch.gradcheck import gradcheck
from from_scratch.recurrent import GRU, LSTM, SEQUENCE_LAYERS, Embedding, SimpleRNN
from keras_impl.model import KERAS_LAYERS
from keras_impl.recurrent import KERAS_SEQUENCE_LAYERS

#: CI runs a fixed (derandomized) set of examples per case; BACKPROP_PARITY_FUZZ=N runs N fresh random ones.
FUZZ = int(os.environ.get("BACKPROP_PARITY_FUZZ", "0"))
PROPERTY = settings(
    max_examples=FUZZ or 4,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def sequences(draw):
    """(timesteps, features): T >= 2, so that a gradient has a step to be carried back to."""
    return (draw(st.integers(2, 6)), draw(st.integers(1, 4)))


def recurrent_cases(kind, **fixed):
    @st.composite
    def cases(draw):
        options = {"return_sequences": draw(st.booleans()), **fixed}
        activation = draw(st.sampled_from(["tanh", "sigmoid", "relu", "linear"])) if kind == "simple_rnn" else "linear"
        return LayerSpec(kind, draw(st.integers(1, 4)), activation, options), draw(sequences())

    return cases()


#: Per case: a strategy of (spec, input shape). GRU's two conventions are separate cases so both always run.
CASES = {
    "simple_rnn": recurrent_cases("simple_rnn"),
    "lstm": recurrent_cases("lstm"),
    "gru": recurrent_cases("gru", reset_after=True),
    "gru_reset_before": recurrent_cases("gru", reset_after=False),
}


def test_every_sequence_layer_has_a_keras_twin_and_cases():
    assert set(SEQUENCE_LAYERS) == set(KERAS_SEQUENCE_LAYERS) == {c.split("_reset")[0] for c in CASES} | {"embedding"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_recurrent_layer_agrees_with_keras_on_random_shapes(case, dtype):
    """Random nonzero weights (biases too), a random batch and upstream gradient, both return_sequences; output,
    every weight gradient and dL/dX at the project's bounds, the numerical witness and the Taylor witness."""

    @PROPERTY
    @given(case=CASES[case], batch=st.integers(1, 4), seed=st.integers(0, 2**16))
    def run(case, batch, seed):
        spec, shape = case
        layer = SEQUENCE_LAYERS[spec.kind].from_spec(spec)
        twin = KERAS_SEQUENCE_LAYERS[spec.kind](spec, dtype)
        report = check_layer(layer, twin, shape, batch=batch, dtype=dtype, seed=seed)
        assert report.passed, f"{spec} on {shape}: " + "\n".join(map(str, report.failures))

    run()


@pytest.mark.parametrize(
    "layer, shapes",
    [
        (SimpleRNN(3), [(3, 3), (3, 3), (3,)]),
        (LSTM(2, return_sequences=True), [(3, 8), (2, 8), (8,)]),
        (GRU(2), [(3, 6), (2, 6), (2, 6)]),
        (GRU(2, reset_after=False), [(3, 6), (2, 6), (6,)]),
    ],
    ids=["simple_rnn", "lstm", "gru", "gru_reset_before"],
)
def test_weights_have_kerass_shapes_and_initial_values(layer, shapes):
    """kernel (F, k u), recurrent_kernel (u, k u) with orthonormal rows, bias (k u,) or GRU's (2, 3u); zero biases
    except LSTM's unit_forget_bias."""
    Sequential([layer], input_shape=(5, 3), seed=0)
    spec = layer.spec()
    twin = KERAS_SEQUENCE_LAYERS[spec.kind](spec, "float64")
    twin.build((None, 5, 3))
    assert [w.shape for w in layer.params] == shapes == [tuple(w.shape) for w in twin.get_weights()]
    u = layer.units
    np.testing.assert_allclose(layer.U @ layer.U.T, np.eye(u), atol=1e-12)
    expected_bias = np.zeros(shapes[2])
    if isinstance(layer, LSTM):
        expected_bias[u : 2 * u] = 1
    np.testing.assert_array_equal(layer.b, expected_bias)
    np.testing.assert_array_equal(twin.get_weights()[2], expected_bias)


# ----- wrong backward passes that the check must fail ---------------------------------------------------------------
def not_carried(cls):
    """`cls` whose backward forgets the gradient carried from step t to step t-1 (dh, and the LSTM's dc)."""

    class NotCarried(cls):
        def step_back(self, t, dh, carried):
            return tuple(np.zeros_like(c) for c in super().step_back(t, dh, carried))

    return NotCarried


def cell_not_carried(cls):
    """An LSTM that carries dh back but forgets dc: c_{t-1} reaches c_t through f, and loses that gradient."""

    class CellNotCarried(cls):
        def step_back(self, t, dh, carried):
            back_h, back_c = super().step_back(t, dh, carried)
            return back_h, np.zeros_like(back_c)

    return CellNotCarried


def gate_derivative_missing(cls):
    """`cls` whose gates' sigmoid derivative s (1 - s) is left out of the backward pass."""

    class GateDerivativeMissing(cls):
        @staticmethod
        def sigmoid_grad(s):
            return np.ones_like(s)

    return GateDerivativeMissing


def perturbed(cls):
    """`cls` with one entry of dL/dX and of dL/dkernel off by one part in 10^6 of their largest entry."""

    class Perturbed(cls):
        def backward(self, dy, *args, **kwargs):
            dx = super().backward(dy, *args, **kwargs)
            self.dW.flat[0] += 1e-6 * np.abs(self.dW).max()
            if dx is None:  # a training step's first layer: no dL/dX asked for
                return None
            dx = dx.copy()
            dx.flat[0] += 1e-6 * np.abs(dx).max()
            return dx

    return Perturbed


WRONG = {
    "simple_rnn dh not carried": ("simple_rnn", not_carried, {}),
    "simple_rnn perturbed by 1e-6": ("simple_rnn", perturbed, {}),
    "lstm dh and dc not carried": ("lstm", not_carried, {}),
    "lstm dc not carried": ("lstm", cell_not_carried, {}),
    "lstm gate derivative missing": ("lstm", gate_derivative_missing, {}),
    "lstm perturbed by 1e-6": ("lstm", perturbed, {}),
    "gru dh not carried": ("gru", not_carried, {"reset_after": True}),
    "gru gate derivative missing": ("gru", gate_derivative_missing, {"reset_after": True}),
    "gru_reset_before dh not carried": ("gru", not_carried, {"reset_after": False}),
    "gru_reset_before gate derivative missing": ("gru", gate_derivative_missing, {"reset_after": False}),
    "gru perturbed by 1e-6": ("gru", perturbed, {"reset_after": True}),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_backward_fails_the_check(case):
    """The same check passes the layer and fails the wrong backward: only gradient rows and the Taylor witness
    fail (the Taylor witness required to, with slope ~1, for every wrong formula); the output, the weights round
    trip and the numerical witness (which reads no scratch backward) pass.
    return_sequences=True, so every step also has its own upstream gradient and a lost carry is partly hidden."""
    kind, wrong, options = WRONG[case]
    spec = LayerSpec(kind, 3, "tanh" if kind == "simple_rnn" else "linear", {"return_sequences": True, **options})
    right = check_layer(SEQUENCE_LAYERS[kind].from_spec(spec), KERAS_SEQUENCE_LAYERS[kind](spec, "float64"), (4, 3))
    assert right.passed
    report = check_layer(
        wrong(SEQUENCE_LAYERS[kind]).from_spec(spec), KERAS_SEQUENCE_LAYERS[kind](spec, "float64"), (4, 3)
    )
    failed = {row.name for row in report.failures}
    assert not report.passed and "grad input" in failed, failed
    assert all(name.startswith(("grad ", "Taylor")) for name in failed), failed
    taylor = report.rows[-1]
    assert taylor.name.startswith("Taylor")
    if "perturbed" not in case:  # a wrong formula leaves the first-order term: slope ~1, a FAIL of its own
        assert not taylor.passed and 0.9 < taylor.error < 1.1, (taylor.name, taylor.error)
    # One entry off by 1e-6 of the largest moves <g, v> by ~1e-7: below the h^2 term at most steps, so the Taylor
    # row may pass there (the gradient rows are what catch it).


# ----- LayerNormalization and a Dense per time step -----------------------------------------------------------------
@st.composite
def layer_norm_shapes(draw):
    """Features (D,) or a sequence (T, D): the statistics are per sample and per time step, over the last axis.
    D >= 2: at D = 1 the output is beta whatever X (X - mu = 0), and X inv - mu inv cancels terms ~30 times |Y|
    (r = 1/sqrt(eps)), which leaves the Taylor witness's remainder at rounding noise above its noise allowance."""
    d = draw(st.integers(2, 6))
    return (d,) if draw(st.booleans()) else (draw(st.integers(2, 5)), d)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fixed", [None, (5, 4)], ids=["random", "sequence"])
def test_layer_normalization_agrees_with_keras_on_random_shapes(fixed, dtype):
    """Random nonzero gamma and beta, a random batch and upstream gradient, on features and on sequences: output,
    dgamma, dbeta and dL/dX at the project's bounds, the numerical witness and the Taylor witness."""
    spec = LayerSpec("layer_normalization")

    @PROPERTY
    @given(
        shape=layer_norm_shapes() if fixed is None else st.just(fixed),
        batch=st.integers(1, 4),
        seed=st.integers(0, 2**16),
    )
    def run(shape, batch, seed):
        twin = KERAS_LAYERS["layer_normalization"](spec, dtype)
        report = check_layer(LayerNormalization.from_spec(spec), twin, shape, batch=batch, dtype=dtype, seed=seed)
        assert report.passed, f"{shape}: " + "\n".join(map(str, report.failures))

    run()


class MeanPathDropped(LayerNormalization):
    """The classic bug: the mean's own gradient left out, dX = dA inv + (dvar / D) 2 (X - mu)."""

    def backward(self, dA, input_grad=True):
        dx = super().backward(dA, input_grad)
        return None if dx is None else dx + (dA * self.inv).sum(axis=-1, keepdims=True) / dA.shape[-1]


class BatchStatistics(LayerNormalization):
    """BatchNormalization's backward pasted in: the sums over the batch axis instead of the last one."""

    def backward(self, dA, input_grad=True):
        if super().backward(dA, input_grad) is None:
            return None
        d = dA.shape[0]
        dvar = (dA * (self.X - self.mu) * self.gamma).sum(axis=0, keepdims=True) * -0.5 * self.r**3
        direct = dA * self.inv
        return (direct - direct.sum(axis=0, keepdims=True) / d) + (dvar / d) * 2 * (self.X - self.mu)


@pytest.mark.parametrize("wrong", [MeanPathDropped, BatchStatistics], ids=["mean_path_dropped", "batch_statistics"])
@pytest.mark.parametrize("shape", [(5,), (4, 3)], ids=["features", "sequence"])
def test_a_wrong_layer_normalization_backward_fails_the_check(wrong, shape):
    """The same check passes LayerNormalization and fails each wrong dL/dX: exactly "grad input" and the Taylor
    witness fail (slope ~1: the remainder keeps h <dX_wrong - dX, v_x>); the output, dgamma, dbeta and the numerical
    witness pass."""
    spec = LayerSpec("layer_normalization")
    right = check_layer(LayerNormalization.from_spec(spec), KERAS_LAYERS["layer_normalization"](spec, "float64"), shape)
    assert right.passed
    report = check_layer(wrong.from_spec(spec), KERAS_LAYERS["layer_normalization"](spec, "float64"), shape)
    taylor = report.rows[-1]
    failed = {row.name for row in report.failures}
    assert failed == {"grad input", taylor.name}, failed
    assert taylor.name.startswith("Taylor") and 0.9 < taylor.error < 1.1, (taylor.name, taylor.error)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_dense_per_time_step_agrees_with_keras(dtype):
    """Dense on a sequence (N, T, F) acts on the last axis, as Keras's: alone through check_layer, and in networks
    with LayerNormalization through the whole comparison (every row passes)."""
    from compare.harness import run_comparison

    for activation in ("tanh", "relu", "softmax"):
        spec = LayerSpec("dense", 3, activation)
        report = check_layer(Dense.from_spec(spec), KERAS_LAYERS["dense"](spec, dtype), (4, 5), batch=3, dtype=dtype)
        assert report.passed, f"{activation}: " + "\n".join(map(str, report.failures))
    for arch in ("8x8-lstm16:seq-12-flatten-10", "8x8-gru8:seq-ln-lstm8-10", "6x4-rnn5:seq-3:tanh-ln-flatten-2"):
        report = run_comparison(arch, batch=8, dtype=dtype, gradcheck_samples=4)
        assert report.passed, f"{arch}: {report.verdict()}"
        assert all(row.passed for row in report.rows), arch


# ----- Embedding ----------------------------------------------------------------------------------------------------
def keras_embedding_pass(spec, dtype, weights, index, upstream):
    """Keras's Embedding output and dL/dE for L = <Y, G>, the tape's IndexedSlices made dense by TensorFlow."""
    twin = KERAS_SEQUENCE_LAYERS["embedding"](spec, dtype)
    twin.build(index.shape)
    twin.set_weights([weights.astype(dtype)])
    with tf.GradientTape() as tape:
        out = twin(tf.constant(index.astype(np.int32)))
    (grad,) = tape.gradient(out, twin.trainable_weights, output_gradients=tf.constant(upstream.astype(dtype)))
    assert isinstance(grad, tf.IndexedSlices)  # one row per position, repeats not yet added
    return out.numpy(), tf.convert_to_tensor(grad).numpy()


@st.composite
def embedding_cases(draw):
    vocab = draw(st.integers(1, 6))
    n, t = draw(st.integers(1, 4)), draw(st.integers(2, 8))
    return vocab, draw(st.integers(1, 5)), (n, t)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_embedding_agrees_with_keras_with_repeated_indices(dtype):
    """Few indices for many positions, so that most rows of E are used several times and their gradients add."""

    @PROPERTY
    @given(case=embedding_cases(), seed=st.integers(0, 2**16))
    def run(case, seed):
        vocab, dim, (n, t) = case
        rng = np.random.default_rng(seed)
        spec = LayerSpec("embedding", dim, "linear", {"input_dim": vocab})
        model = Sequential([Embedding.from_spec(spec)], input_shape=(t,), dtype=dtype, seed=seed)
        weights = rng.choice([-1.0, 1.0], size=(vocab, dim)) * rng.uniform(0.5, 1.5, size=(vocab, dim))
        model.set_weights([weights.astype(dtype)])
        index = rng.integers(0, vocab, size=(n, t))
        upstream = rng.standard_normal((n, t, dim))
        result = model.backward_pass(index, np.zeros((n, t, dim)), Projection(upstream))
        out, grad = keras_embedding_pass(spec, dtype, weights, index, upstream)
        if dtype == "float64":
            assert norm_rel_error(result.output, out) <= F64_TOL
            assert norm_rel_error(result.grads[0], grad) <= F64_TOL
        else:
            # the float64 truth on the float32 values (upcast exactly)
            w32, g32 = weights.astype(np.float32), upstream.astype(np.float32)
            out64, grad64 = keras_embedding_pass(spec, "float64", w32, index, g32)
            np.testing.assert_array_equal(result.output, out)  # a gather is exact
            assert truth_rel_error(result.output, out, out64) <= F32_FACTOR
            assert truth_rel_error(result.grads[0], grad, grad64) <= F32_FACTOR
        np.testing.assert_array_equal(result.input_grad, 0)  # indices have no gradient

    run()


class DropsRepeats(Embedding):
    """The classic bug: dE[X] += dY with fancy indexing keeps one gradient per repeated index, not their sum."""

    def backward(self, dY):
        self.dE = np.zeros_like(self.E)
        self.dE[self.index] += dY
        return np.zeros(self.index.shape, dY.dtype)


def test_embedding_numerical_witness_and_a_wrong_backward():
    """Central differences of the scratch forward pass agree with Keras's dL/dE; the fancy-index backward, which
    drops repeated indices, disagrees with both."""
    rng = np.random.default_rng(3)
    spec = LayerSpec("embedding", 3, "linear", {"input_dim": 4})
    index = np.array([[0, 1, 1, 3, 1], [3, 0, 0, 2, 1]])
    upstream = rng.standard_normal((2, 5, 3))
    weights = rng.uniform(0.5, 1.5, size=(4, 3))
    _, keras_grad = keras_embedding_pass(spec, "float64", weights, index, upstream)
    y = np.zeros((2, 5, 3))
    for cls, agrees in ((Embedding, True), (DropsRepeats, False)):
        model = Sequential([cls.from_spec(spec)], input_shape=(5,))
        model.set_weights([weights])
        points = gradcheck(model, index, y, Projection(upstream), n_samples=12, analytic=[keras_grad])
        assert all(p.decidable for p in points)
        assert max(abs(p.analytic - p.witness) for p in points) <= GRADCHECK_TOL * np.abs(keras_grad).max()
        ours = model.backward_pass(index, y, Projection(upstream)).grads[0]
        assert (norm_rel_error(ours, keras_grad) <= F64_TOL) == agrees


# ----- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: SimpleRNN(0), "units must be a positive integer, got 0"),
        (lambda: LSTM(2, return_sequences="yes"), "return_sequences must be True or False, got 'yes'"),
        (lambda: GRU(2, reset_after=None), "reset_after must be True or False, got None"),
        (lambda: Embedding(0, 3), "input_dim must be a positive integer, got 0"),
        (lambda: Sequential([LSTM(2)], input_shape=(4,)), "takes sequences of shape (timesteps, features), got (4,)"),
        (lambda: Sequential([Embedding(5, 2)], input_shape=(4, 1)), "takes index sequences of shape (timesteps,)"),
        (lambda: Sequential([Embedding(5, 2)], input_shape=(2,)).predict([[1, 5]]), "input 5.0 at (0, 1) is not"),
        (lambda: Sequential([Embedding(5, 2)], input_shape=(2,)).predict([[1.5, 0]]), "input 1.5 at (0, 0) is not"),
    ],
    ids=[
        "units",
        "return_sequences",
        "reset_after",
        "input_dim",
        "rnn_on_features",
        "embedding_on_2d",
        "index_5",
        "index_1.5",
    ],
)
def test_bad_sequence_layers_are_refused(make, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        make()


# ----- the architecture grammar and the command line ---------------------------------------------------------------
@pytest.mark.parametrize(
    "text,canonical,shapes,weights",
    [
        ("8x8-lstm16-10", "8x8-lstm16-10:softmax", [(16,), (10,)], 4 * 16 * (8 + 16 + 1) + 17 * 10),
        (
            "8x8-rnn8:tanh:seq-gru6:reset_before-3:tanh",
            "8x8-rnn8:seq-gru6:reset_before-3:tanh",
            [(8, 8), (6,), (3,)],
            8 * (8 + 8 + 1) + 3 * 6 * (8 + 6 + 1) + 7 * 3,
        ),
        (
            "6x3-rnn4:seq:relu-gru5:reset_before:seq-flatten-2",
            "6x3-rnn4:relu:seq-gru5:seq:reset_before-flatten-2:softmax",
            [(6, 4), (6, 5), (30,), (2,)],
            4 * (3 + 4 + 1) + 3 * 5 * (4 + 5 + 1) + 31 * 2,
        ),
        (
            "12-embed50x8-gru4-2",
            "12-embed50x8-gru4-2:softmax",
            [(12, 8), (4,), (2,)],
            50 * 8 + 3 * 4 * (8 + 4 + 2) + 10,
        ),
        ("8x8-lstm4", "8x8-lstm4", [(4,)], 4 * 4 * (8 + 4 + 1)),  # a recurrent output layer, no Dense
        (
            "8x8-lstm16:seq-12-flatten-10",
            "8x8-lstm16:seq-12:relu-flatten-10:softmax",
            [(8, 16), (8, 12), (96,), (10,)],
            4 * 16 * (8 + 16 + 1) + 17 * 12 + 97 * 10,
        ),
        (
            "8x8-gru8:seq-ln-lstm8-10",
            "8x8-gru8:seq-ln-lstm8-10:softmax",
            [(8, 8), (8, 8), (8,), (10,)],
            3 * 8 * (8 + 8 + 2) + 2 * 8 + 4 * 8 * (8 + 8 + 1) + 9 * 10,
        ),
    ],
    ids=["lstm", "rnn_seq_gru", "any_option_order", "embedding", "lstm_output", "dense_per_step", "layer_norm"],
)
def test_the_architecture_reads_sequence_networks_and_writes_them_back(text, canonical, shapes, weights):
    """Canonical tokens omit the defaults (tanh, return_sequences=False, reset_after=True); the grammar's shapes and
    weight counts are those of the built model."""
    arch = Architecture.parse(text)
    assert str(arch) == canonical and Architecture.parse(canonical) == arch
    assert arch.shapes() == shapes
    model = Sequential.from_architecture(arch)
    assert model.layer_output_shapes == shapes and model.architecture == arch
    assert arch.footprint()[1] == weights == sum(w.size for w in model.get_weights())


def test_sequential_takes_sequence_input_shapes():
    model = Sequential([GRU(3, return_sequences=True), SimpleRNN(2, "relu")], input_shape=(5, 4), seed=1)
    assert model.layer_output_shapes == [(5, 3), (2,)] and model.input_dim == 20
    assert model.predict(np.ones((7, 5, 4))).shape == (7, 2)
    assert str(model.architecture) == "5x4-gru3:seq-rnn2:relu"


SEQUENCE_BAD_INPUT = {
    "dense on every step as the output": (
        ["--arch", "8x8-lstm16:seq-10"],
        "the output has shape (8, 10); end with features (D,): drop ':seq' from the last recurrent layer, or add",
    ),
    "dense on a sequence input as the output": (
        ["--arch", "8x8-10"],
        "the output has shape (8, 10); end with features (D,): add 'flatten' or 'gap1d' and a Dense layer",
    ),
    "layer normalization as the output of a sequence": (
        ["--arch", "8x8-gru4:seq-ln"],
        "the output has shape (8, 4); end with features (D,): drop ':seq'",
    ),
    "sequence output": (["--arch", "8x8-gru4:seq"], "the output has shape (8, 4); end with features (D,): drop ':seq'"),
    "recurrent layer after a last state": (["--arch", "5x2-gru3-lstm2-1"], "layer 2 (lstm) takes sequences of shape"),
    "recurrent layer on features": (["--arch", "64-lstm16-10"], "layer 1 (lstm) takes sequences of shape (timesteps,"),
    "embedding on sequences": (["--arch", "8x8-embed5x3-lstm2-10"], "layer 1 (embedding) takes index sequences"),
    "no units": (["--arch", "8x8-lstm-10"], "layer 1 'lstm'; expected rnnU, lstmU or gruU with U units"),
    "zero units": (["--arch", "8x8-gru0-10"], "layer 1 units '0' is not a positive integer"),
    "unknown option": (["--arch", "8x8-lstm16:relu-10"], "layer 1 option 'relu' (unknown; known: seq)"),
    "seq twice": (["--arch", "8x8-gru4:seq:seq-3"], "layer 1 gives seq twice in 'gru4:seq:seq' ('seq' and 'seq')"),
    "reset_before on an lstm": (["--arch", "8x8-lstm4:reset_before-3"], "layer 1 option 'reset_before'"),
    "unknown activation": (["--arch", "8x8-rnn4:swish-3"], "unknown activation 'swish'"),
    "embedding without output_dim": (["--arch", "6-embed50-lstm2-3"], "layer 1 'embed50'; expected embedVxD"),
    "float indices": (["--arch", "64-embed17x4-gru3-10", "--data", "digits"], "input 0.0625 at (0, 1) is not an"),
    "digits into a sequence network of the wrong size": (
        ["--data", "digits", "--arch", "28x28-lstm8-10"],
        "--data digits has 64 features and 10 outputs, but --arch 28x28-lstm8-10 expects 784 and 10",
    ),
}


@pytest.mark.parametrize("case", sorted(SEQUENCE_BAD_INPUT))
def test_bad_sequence_networks_are_one_line_and_exit_2(case, capsys):
    from compare import cli

    args, message = SEQUENCE_BAD_INPUT[case]
    command = "train" if "28x28" in args[-1] else "compare"
    code = cli.main([command, *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("arch", ["8x8-lstm16-10", "8x8-gru8:reset_before:seq-flatten-10"])
def test_compare_reads_digits_row_by_row_and_passes(arch, capsys):
    """`compare --data digits`: each image as the sequence of its 8 rows; every row of the table passes."""
    from compare import cli

    code = cli.main(["compare", "--arch", arch, "--data", "digits", "--batch", "16", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    import json

    report = json.loads(out)
    assert report["passed"] and report["config"]["data"] == "digits"
    names = {row["name"] for row in report["rows"]}
    assert "grad input" in names and any("recurrent_kernel" in name for name in names)
    assert all(row["status"] == "PASS" for row in report["rows"])


def test_an_embedding_network_compares_on_synthetic_indices():
    """Synthetic data for an Embedding is index sequences; the numerical witness skips the indices (no derivative)
    and the float32 run keeps them exact (no one-ulp jitter: Keras's int32 cast would truncate 3 - ulp to 2)."""
    from compare.harness import run_comparison

    for dtype in ("float64", "float32"):
        report = run_comparison("9-embed6x3-lstm4-3", batch=8, dtype=dtype, gradcheck_samples=4)
        assert report.passed, report.verdict()
        witness = next(row for row in report.rows if row.name.startswith("numerical"))
        weights = Sequential.from_architecture("9-embed6x3-lstm4-3").get_weights()
        assert witness.shape == (sum(min(4, w.size) for w in weights),)  # up to 4 per weight, none of the input


# ----- training on digits, row by row ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_rows():
    from compare.data import as_inputs, load_dataset

    x, y = load_dataset("digits")
    return as_inputs(x, (8, 8)), y


def test_an_lstm_trains_in_lockstep_on_digits_with_identical_predictions(digit_rows):
    from compare.training import TRAIN_F64_TOL, run_training

    x, y = digit_rows
    report = run_training("8x8-lstm16-10", x[:320], y[:320], "adam", {"learning_rate": 0.01}, epochs=2)
    assert len(report.steps) == 2 * 5
    assert report.final_param_diff <= TRAIN_F64_TOL and report.same_predictions and report.passed
    assert report.epochs[-1]["loss_scratch"] < report.epochs[0]["loss_scratch"]  # it learns


@pytest.mark.parametrize("case", sorted(__import__("test_optimizers").CASES))
def test_every_optimizer_steps_a_gru_in_lockstep(case, digit_rows):
    """Every optimizer case of tests/test_optimizers.py, alternately on GRU's two reset conventions."""
    from test_optimizers import CASES

    from compare.training import TRAIN_F64_TOL, run_training

    x, y = digit_rows
    token = "gru8" if sorted(CASES).index(case) % 2 else "gru8:reset_before"
    report = run_training(
        f"8x8-{token}-10", x[:96], y[:96], case.split("_")[0], dict(CASES[case]), epochs=1, batch_size=32
    )
    assert report.passed and report.final_param_diff <= TRAIN_F64_TOL, report.verdict()


def test_train_command_runs_an_lstm_and_a_gru_in_float32(capsys):
    from compare import cli

    for arch in ("8x8-lstm8-10", "8x8-gru8-10"):
        code = cli.main(
            ["train", "--data", "digits", "--arch", arch, "--epochs", "1", "--batch", "512", "--dtype", "float32"]
        )
        out = capsys.readouterr().out
        assert code == 0 and "PASS: 4 steps" in out, out


# ----- the adding problem: a regression that needs memory ----------------------------------------------------------
def test_the_adding_problem_is_seeded_and_fitted_to_the_architecture():
    """T steps of (value, marker) with exactly two markers per sample; the target is the two marked values' sum."""
    from compare.data import REGRESSION_DATASETS, as_inputs, load_dataset

    x, y = load_dataset("adding", (7, 2))
    steps = as_inputs(x, (7, 2))
    assert x.shape == (1000, 14) and y.shape == (1000, 1) and "adding" in REGRESSION_DATASETS
    assert np.all(steps[:, :, 1].sum(axis=1) == 2) and set(np.unique(steps[:, :, 1])) == {0.0, 1.0}
    assert np.all((steps[:, :, 0] >= 0) & (steps[:, :, 0] < 1))
    np.testing.assert_array_equal(y[:, 0], np.sum(steps[:, :, 0] * steps[:, :, 1], axis=1))
    np.testing.assert_array_equal(load_dataset("adding", (7, 2))[0], x)  # seeded
    assert load_dataset("adding")[0].shape == (1000, 20)  # T = 10 without an architecture


def test_train_command_learns_the_adding_problem_in_lockstep(capsys):
    """`train --data adding`: mean squared error by default, both sides in lockstep, and the loss falls."""
    import json

    from compare import cli
    from compare.training import TRAIN_F64_TOL

    args = ["train", "--data", "adding", "--arch", "10x2-lstm8-1:linear", "--epochs", "2", "--batch", "128"]
    code = cli.main([*args, "--lr", "0.01", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"], report["verdict"]
    assert report["config"]["loss"] == "MeanSquaredError()" and len(report["steps"]) == 2 * 8
    assert report["final_param_diff"] <= TRAIN_F64_TOL
    first, last = report["epochs"][0], report["epochs"][-1]
    assert last["loss_scratch"] < first["loss_scratch"] and last["loss_keras"] < first["loss_keras"]


def test_gradient_clipping_steps_an_rnn_on_the_adding_problem_in_lockstep():
    """clipnorm and global_clipnorm (the optimizer's configuration, from Python) on a GRU."""
    from compare.data import as_inputs, load_dataset
    from compare.training import TRAIN_F64_TOL, run_training

    x, y = load_dataset("adding", (6, 2))
    for clip in ({"clipnorm": 0.05}, {"global_clipnorm": 0.05}):
        report = run_training(
            "6x2-gru4-1:linear", as_inputs(x[:128], (6, 2)), y[:128], "sgd", {"learning_rate": 0.5, **clip},
            loss="mean_squared_error", epochs=1, batch_size=32,
        )  # fmt: skip
        assert report.passed and report.final_param_diff <= TRAIN_F64_TOL, report.verdict()


ADDING_BAD_INPUT = {
    "three features": ("10x3-lstm8-1", "but the architecture's input is 10x3: give Tx2, e.g. --arch 10x2-lstm8-1"),
    "flat input": ("20-8-1", "but the architecture's input is 20: give Tx2"),
    "one step": ("1x2-lstm8-1", "--data adding needs at least 2 time steps (two marked values), got 1"),
    "three outputs": ("10x2-lstm8-3", "expects 20 and 3 (try --arch 10x2-lstm16-1)"),
}


@pytest.mark.parametrize("case", sorted(ADDING_BAD_INPUT))
def test_the_adding_problem_refuses_a_wrong_shape_in_one_line_with_exit_2(case, capsys):
    from compare import cli

    arch, message = ADDING_BAD_INPUT[case]
    code = cli.main(["train", "--data", "adding", "--arch", arch])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ----- deep-learning-from-scratch-2's RNN backward, settled by running it --------------------------------------------
def dlfs2_time_rnn_backward(xs, wx, wh, b, dhs, carry=True, carry_after_tanh=False):
    """DLFS-2 ch. 5's TimeRNN forward and backward (h = tanh(h_prev Wh + x Wx + b)), written from its equations:
    per step dt = dh_next * (1 - h_next ** 2), db = sum(dt), dWh = h_prev.T dt, dh_prev = dt Wh.T, dWx = x.T dt,
    dx = dt Wx.T; the time loop from T-1 down feeds each step dhs[:, t] + dh (dh: what the later step returned) and
    sums the weight gradients. Variants: carry=False drops the carried dh (the classic bug); carry_after_tanh adds
    it after the tanh derivative instead of before. -> (dWx, dWh, db, dxs)."""
    n, t_len, _ = xs.shape
    hs, h = np.zeros((n, t_len + 1, wh.shape[0])), np.zeros((n, wh.shape[0]))
    for t in range(t_len):
        h = hs[:, t + 1] = np.tanh(h @ wh + xs[:, t] @ wx + b)
    dwx, dwh, db, dxs, dh = np.zeros_like(wx), np.zeros_like(wh), np.zeros_like(b), np.zeros_like(xs), 0.0
    for t in reversed(range(t_len)):
        h_prev, h_next = hs[:, t], hs[:, t + 1]
        if carry_after_tanh:
            dt = dhs[:, t] * (1 - h_next**2) + dh
        else:
            dt = (dhs[:, t] + (dh if carry else 0.0)) * (1 - h_next**2)
        db += np.sum(dt, axis=0)
        dwh += np.dot(h_prev.T, dt)
        dh = np.dot(dt, wh.T)
        dwx += np.dot(xs[:, t].T, dt)
        dxs[:, t] = np.dot(dt, wx.T)
    return dwx, dwh, db, dxs


def test_dlfs2_rnn_backward_is_simple_rnns_and_the_dh_not_carried_variant_is_not():
    """A reader's question to DLFS-2 says its RNN backward is wrong. On a random case (float64) its equations give
    SimpleRNN's gradients (which agree with Keras, tests above) to F64_TOL and central differences to GRADCHECK_TOL;
    dropping the carried dh, or adding it after the tanh derivative, gives neither."""
    rng = np.random.default_rng(5)
    n, t_len, f, u = 3, 5, 4, 3
    layer = SimpleRNN(u, return_sequences=True)
    layer.build((t_len, f), np.dtype("float64"), rng)
    layer.W, layer.U, layer.b = rng.standard_normal((f, u)), rng.standard_normal((u, u)) / 2, rng.standard_normal(u)
    xs, dhs = rng.standard_normal((n, t_len, f)), rng.standard_normal((n, t_len, u))
    layer.forward(xs)
    dx = layer.backward(dhs)
    ours = (layer.dW, layer.dU, layer.db, dx)
    dlfs = dlfs2_time_rnn_backward(xs, layer.W, layer.U, layer.b, dhs)
    for name, a, b in zip(("dWx", "dWh", "db", "dx"), dlfs, ours):
        assert norm_rel_error(a, b) <= F64_TOL, (name, norm_rel_error(a, b))

    def loss(w, wh, b, x):  # L = <H, dhs>, whose gradient with respect to H is dhs
        h, total = np.zeros((n, u)), 0.0
        for t in range(t_len):
            h = np.tanh(h @ wh + x[:, t] @ w + b)
            total += np.sum(h * dhs[:, t])
        return total

    params, step = [layer.W, layer.U, layer.b, xs], 1e-6
    for k, (param, grad) in enumerate(zip(params, dlfs)):
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            shifted = [p.copy() for p in params]
            shifted[k][i] += step
            up = loss(*shifted)
            shifted[k][i] -= 2 * step
            numeric[i] = (up - loss(*shifted)) / (2 * step)
        assert norm_rel_error(grad, numeric) <= GRADCHECK_TOL, (k, norm_rel_error(grad, numeric))
    for wrong in ({"carry": False}, {"carry_after_tanh": True}):
        bad = dlfs2_time_rnn_backward(xs, layer.W, layer.U, layer.b, dhs, **wrong)
        assert norm_rel_error(bad[0], ours[0]) > 1e-2 and norm_rel_error(bad[3], ours[3]) > 1e-2, wrong
        # the last step has nothing carried into it: its dx is right in every variant
        assert norm_rel_error(bad[3][:, -1], ours[3][:, -1]) <= F64_TOL


@pytest.mark.parametrize("flag", ["--clipnorm", "--clipvalue", "--global-clipnorm"])
def test_train_clips_gradients_from_the_command_line(flag, capsys):
    """The clipping flags reach Keras's optimizer arguments on both sides: lockstep holds, and a clip so small that
    it binds changes the trajectory (a flag that was dropped would leave the parameters as without it)."""
    import json

    from compare import cli

    args = ["train", "--data", "adding", "--arch", "6x2-gru4-1:linear", "--epochs", "1", "--batch", "64", "--json"]
    runs = {}
    for extra in ([], [flag, "0.001"]):
        code = cli.main([*args, *extra])
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["passed"], report["verdict"]
        runs[bool(extra)] = report["epochs"][-1]["loss_scratch"]
    assert runs[True] != runs[False]


def test_a_bad_clip_is_one_line_and_exit_2(capsys):
    from compare import cli

    code = cli.main(["train", "--data", "adding", "--arch", "6x2-gru4-1:linear", "--clipnorm", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "clipnorm must be in (0, inf), got -1.0" in err[0]
