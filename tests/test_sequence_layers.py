"""A Transformer encoder's layers beside attention, against Keras: GlobalAveragePooling1D (the mean over the steps)
and PositionEmbedding (a learned (T, D) table added to the sequence; Keras's core has none, its twin is
keras_impl.sequence.PositionEmbedding), each over random shapes in both dtypes; Dense, Dropout, LayerNormalization
and Embedding on sequences (N, T, D) in chains and graphs; the tokens `gap1d` and `pos`; saved Keras models holding
them read by from_keras; the refusals; and a planted wrong backward of each caught."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_impl  # noqa: F401 (first: pins the TensorFlow settings before TensorFlow loads)
from compare import cli
from compare.check import check_layer
from compare.harness import run_comparison
from compare.keras_model import compare_keras_model, from_keras
from compare.tolerances import F64_TOL
from from_scratch import Architecture, BadInputError, LayerSpec, Sequential
from from_scratch.graph_arch import Call, GraphArchitecture
from from_scratch.sequence import ENCODER_LAYERS, GlobalAveragePooling1D, PositionEmbedding
from keras_impl.model import KERAS_LAYERS
from keras_impl.sequence import PositionEmbedding as PositionEmbeddingTwin

L = keras.layers

#: CI runs a fixed (derandomized) set of shapes per layer; BACKPROP_PARITY_FUZZ=N runs N fresh random ones.
FUZZ = int(os.environ.get("BACKPROP_PARITY_FUZZ", "0"))
PROPERTY = settings(
    max_examples=FUZZ or 6,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: float64 norm-relative error of these shallow networks (at most a few hundred terms summed per entry): rounding
#: alone, some ulps (u = 1.1e-16). Measured at most 5e-16 on every network below; a formula difference (a missing
#: 1/T, a table summed over the wrong axis) gives 1e-2 or more. Stricter than the harness's own F64_TOL, which
#: also covers deep networks.
SHALLOW_F64 = 1e-14

SPECS = {
    "global_average_pooling1d": LayerSpec("global_average_pooling1d"),
    "position_embedding": LayerSpec("position_embedding"),
}


def sequences(low_steps: int = 1) -> st.SearchStrategy:
    return st.tuples(st.integers(low_steps, 12), st.integers(1, 6))


# ----- each layer against its twin ------------------------------------------------------------------------------------
def test_every_encoder_layer_has_a_twin_and_cases_here():
    assert set(ENCODER_LAYERS) == set(SPECS) and set(ENCODER_LAYERS) <= set(KERAS_LAYERS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_layer_agrees_with_keras_on_random_sequences(kind, dtype):
    """Random (T, D) (T = 1 and D = 1 among them: Keras's add takes the table for a bias there), random table, random
    upstream gradient, the numerical witness: every row passes, in float64 the outputs and gradients within
    SHALLOW_F64."""

    @PROPERTY
    @given(shape=sequences(), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
    def run(shape, batch, seed):
        spec = SPECS[kind]
        report = check_layer(
            ENCODER_LAYERS[kind].from_spec(spec),
            KERAS_LAYERS[kind](spec, dtype),
            shape,
            batch=batch,
            dtype=dtype,
            seed=seed,
        )
        assert report.passed, f"{kind} on {shape}: " + "\n".join(map(str, report.failures))
        if dtype == "float64":  # the loss here is the projection <Y, G>, a sum that cancels: held to F64_TOL only
            worst = max(row.error for row in report.rows if row.measure == "norm-rel" and row.name != "loss")
            assert worst <= SHALLOW_F64, report.verdict()

    run()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_position_embedding_is_kerass_twin_bit_for_bit(dtype):
    """A = X + P and dX = dA are one rounding (or none) per element: identical on both sides; dP = sum_n dA agrees to
    rounding (the order of the batch sum is each library's own)."""
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((5, 7, 4)).astype(dtype), rng.standard_normal((5, 7, 4)).astype(dtype)
    ours = Sequential([PositionEmbedding()], input_shape=(7, 4), dtype=dtype, seed=1).layers[0]
    twin = PositionEmbeddingTwin(dtype=dtype)
    twin.build((None, 7, 4))
    twin.set_weights([ours.P])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = twin(xt)
    dx, dp = tape.gradient(out, [xt, twin.embeddings], output_gradients=tf.constant(g))
    assert ours.forward(x).tobytes() == out.numpy().tobytes()
    assert ours.backward(g).tobytes() == dx.numpy().tobytes()
    eps = np.finfo(dtype).eps
    assert np.abs(ours.dP - dp.numpy()).max() <= 4 * eps * np.abs(g).sum(axis=0).max()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_mean_is_the_sum_then_one_division_as_tensorflows(dtype):
    """Keras's ops.mean is TensorFlow's reduce_mean: the sum over the steps, then one division by T. On integer-valued
    steps every sum is exact whatever its order, so both sides must give fl(S / T) bit for bit, which a mean taken as
    a sum of X / T or as S * (1 / T) misses (both are tried: they differ here)."""
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, size=(64, 7, 5)).astype(dtype)
    layer = Sequential([GlobalAveragePooling1D()], input_shape=(7, 5), dtype=dtype).layers[0]
    ours = layer.forward(x)
    theirs = np.asarray(L.GlobalAveragePooling1D(dtype=dtype)(tf.constant(x)))
    exact = (x.astype(np.float64).sum(axis=1) / 7).astype(dtype)  # S is exact; one rounding of S / T
    assert ours.tobytes() == theirs.tobytes() == exact.tobytes()
    by_reciprocal = x.sum(axis=1) * x.dtype.type(1 / 7)
    by_steps = (x / x.dtype.type(7)).sum(axis=1)
    assert not np.array_equal(by_reciprocal, exact) and not np.array_equal(by_steps, exact)
    g = rng.standard_normal((64, 5)).astype(dtype)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = L.GlobalAveragePooling1D(dtype=dtype)(xt)
    assert layer.backward(g).tobytes() == tape.gradient(out, xt, output_gradients=tf.constant(g)).numpy().tobytes()


# ----- networks on sequences: both sides built from one description ---------------------------------------------------
NETWORKS = [
    "8x16-pos-ln-32-gap1d-10",  # the chain: a Dense and LayerNormalization on every step
    "12-embed50x16-pos-gap1d-10",  # token ids: Embedding, then the position table
    "8x16-pos-32:tanh-dropout0.3-16-gap1d-10",  # Dropout on a sequence; every layer declares its term magnitudes
    "8x16-pos-add(32:relu-dropout0.2-16:linear | id)-ln-gap1d-10",  # a residual feed-forward block, as a graph
    "1x3-pos-gap1d-2",  # T = 1: Keras adds the table as a bias along the features
    "5x1-pos-gap1d-2",  # D = 1: Keras adds the table as a bias along the steps
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", NETWORKS)
def test_sequence_networks_pass_every_row(arch, dtype):
    report = run_comparison(arch, batch=6, dtype=dtype, gradcheck_samples=4)
    assert report.passed, report.verdict()
    if dtype == "float64":
        assert report.worst("norm-rel") <= SHALLOW_F64, report.verdict()


def encoder_block() -> GraphArchitecture:
    """Token ids -> Embedding -> PositionEmbedding -> LayerNormalization -> Dense(relu) -> Dropout -> Dense, added to
    the normalised sequence -> LayerNormalization -> GlobalAveragePooling1D -> Dense(softmax): a Transformer
    encoder block with its attention left out, written as a GraphArchitecture."""
    layers = (
        ("embedding", LayerSpec("embedding", 8, "linear", {"input_dim": 20})),
        ("position_embedding", LayerSpec("position_embedding", None, "linear", {"sequence_length": 9})),
        ("layer_normalization", LayerSpec("layer_normalization")),
        ("dense", LayerSpec("dense", 16, "relu")),
        ("dropout", LayerSpec("dropout", options={"rate": 0.25})),
        ("dense_1", LayerSpec("dense", 8)),
        ("add", LayerSpec("add")),
        ("layer_normalization_1", LayerSpec("layer_normalization", options={"epsilon": 1e-6})),
        ("global_average_pooling1d", LayerSpec("global_average_pooling1d")),
        ("dense_2", LayerSpec("dense", 3, "softmax")),
    )
    calls = (
        Call("embedding", ("tokens",)),
        Call("position_embedding", ("embedding",)),
        Call("layer_normalization", ("position_embedding",)),
        Call("dense", ("layer_normalization",)),
        Call("dropout", ("dense",)),
        Call("dense_1", ("dropout",)),
        Call("add", ("layer_normalization", "dense_1")),
        Call("layer_normalization_1", ("add",)),
        Call("global_average_pooling1d", ("layer_normalization_1",)),
        Call("dense_2", ("global_average_pooling1d",)),
    )
    return GraphArchitecture((("tokens", (9,)),), layers, calls, ("dense_2",))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_encoder_block_without_attention_passes_every_row(dtype):
    report = run_comparison(encoder_block(), batch=5, dtype=dtype, gradcheck_samples=4)
    assert report.passed, report.verdict()
    names = {row.name for row in report.rows}
    assert {"grad position_embedding/embeddings", "grad layer_normalization_1/gamma"} <= names
    if dtype == "float64":
        assert report.worst("norm-rel") <= SHALLOW_F64, report.verdict()


# ----- a wrong backward is caught -------------------------------------------------------------------------------------
class MeanWithoutDivision(GlobalAveragePooling1D):
    """Planted: dX = dA broadcast, the 1/T forgotten."""

    def backward(self, dA):
        return np.broadcast_to(dA[:, None, :], (len(dA), self.steps, dA.shape[1])).copy()


class TableAveragedOverTheBatch(PositionEmbedding):
    """Planted: dP = mean_n dA instead of the sum (the table taken for a per-sample input)."""

    def backward(self, dA):
        self.dP = dA.mean(axis=0)
        return dA


@pytest.mark.parametrize(
    "wrong, right, row",
    [
        (MeanWithoutDivision, GlobalAveragePooling1D, "grad input"),
        (TableAveragedOverTheBatch, PositionEmbedding, "grad position_embedding/embeddings"),
    ],
    ids=["gap1d dX without 1/T", "pos dP averaged"],
)
def test_a_wrong_backward_fails_the_check(wrong, right, row):
    """The same check passes the layer and fails the planted one on exactly the row of what was changed (and the
    Taylor remainder, which sees the whole gradient)."""
    kind = right.kind
    assert check_layer(right(), KERAS_LAYERS[kind](SPECS[kind], "float64"), (6, 3), batch=4).passed
    report = check_layer(wrong(name=kind), KERAS_LAYERS[kind](SPECS[kind], "float64"), (6, 3), batch=4)
    failed = {r.name for r in report.failures}
    assert not report.passed and row in failed, failed
    assert not {r for r in failed - {row} if not r.lower().startswith("taylor remainder")}, failed


def test_a_network_with_the_mean_backward_undivided_fails_and_is_located(monkeypatch):
    """In a whole network (the issue's chain) the undivided dX fails the rows below the pooling, and the diagnosis
    finds the first difference in the gradient the pooling hands down (the dL/dA of the Dense below it): backward
    only, T = 8 times Keras's, the forgotten 1/T."""
    assert run_comparison("8x16-pos-ln-32-gap1d-10", batch=4, gradcheck_samples=0).passed
    monkeypatch.setattr(GlobalAveragePooling1D, "backward", MeanWithoutDivision.backward)
    report = run_comparison("8x16-pos-ln-32-gap1d-10", batch=4, gradcheck_samples=0)
    failed = {r.name for r in report.failures}
    assert not report.passed and {"grad input", "grad position_embedding/embeddings", "grad dense/kernel"} <= failed
    assert "grad dense_1/kernel" not in failed  # above the pooling nothing changed
    first = report.diagnosis.first
    assert (first.phase, first.layer_name, first.quantity) == ("backward", "dense", "dL/dA"), report.diagnosis.text
    assert report.diagnosis.forward_ok and "scratch = 8 x Keras" in report.diagnosis.pattern, report.diagnosis.text


# ----- the string form ------------------------------------------------------------------------------------------------
TOKENS = {
    "8x16-pos-ln-32-gap1d-10": "8x16-pos-ln-32:relu-gap1d-10:softmax",
    "12-embed50x16-pos-gap1d-10": "12-embed50x16-pos-gap1d-10:softmax",
    "8x16-pos8-gap1d-10": "8x16-pos8-gap1d-10:softmax",
    "6x4-gru5:seq-pos-gap1d-3": "6x4-gru5:seq-pos-gap1d-3:softmax",
    "8x16-pos-add(32-16 | id)-gap1d-10": "8x16-pos-add(32:relu-16:relu | id)-gap1d-10:softmax",
}


@pytest.mark.parametrize("text", sorted(TOKENS))
def test_the_tokens_read_and_write_back(text):
    arch = Architecture.parse(text)
    assert str(arch) == TOKENS[text] and str(Architecture.parse(str(arch))) == TOKENS[text]
    specs = arch.layers if isinstance(arch, Architecture) else [spec for _, spec in arch.layers]
    for spec in specs:
        if spec.kind in SPECS:
            assert Architecture.parse(f"8x16-{spec.token()}-flatten-2").layers[0] == spec


def test_the_specs_of_built_layers_write_their_tokens():
    assert GlobalAveragePooling1D().spec().token() == "gap1d"
    assert PositionEmbedding().spec().token() == "pos" and PositionEmbedding(8).spec().token() == "pos8"
    arch = Architecture.parse("8x16-pos8-ln-gap1d-10")
    assert arch.shapes() == [(8, 16), (8, 16), (16,), (10,)] and arch.footprint()[1] == 8 * 16 + 2 * 16 + 17 * 10


# ----- saved Keras models ---------------------------------------------------------------------------------------------
def saved_encoder(folder, dtype: str, functional: bool) -> tuple[str, keras.Model]:
    """A Keras model built from keras.layers and the PositionEmbedding twin, random nonzero weights, compiled, saved."""
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        if functional:
            tokens = keras.Input((9,), dtype="int32")
            h = L.Embedding(20, 8, dtype=dtype)(tokens)
            h = L.LayerNormalization(dtype=dtype)(PositionEmbeddingTwin(dtype=dtype)(h))
            f = L.Dense(8, dtype=dtype)(L.Dropout(0.2, dtype=dtype)(L.Dense(16, "relu", dtype=dtype)(h)))
            h = L.LayerNormalization(epsilon=1e-6, dtype=dtype)(L.Add(dtype=dtype)([h, f]))
            model = keras.Model(tokens, L.Dense(3, "softmax", dtype=dtype)(L.GlobalAveragePooling1D(dtype=dtype)(h)))
        else:
            model = keras.Sequential(
                [
                    keras.Input((7, 5), dtype=dtype),
                    PositionEmbeddingTwin(7, dtype=dtype),
                    L.Dense(6, "tanh", dtype=dtype),
                    L.LayerNormalization(axis=2, dtype=dtype),  # the last axis, counted from the batch axis
                    L.GlobalAveragePooling1D(dtype=dtype),
                    L.Dense(3, "softmax", dtype=dtype),
                ]
            )
        rng = np.random.default_rng(0)
        model.set_weights([rng.standard_normal(w.shape).astype(dtype) for w in model.get_weights()])
        model.compile(optimizer="adam", loss="categorical_crossentropy")
    finally:
        keras.config.set_floatx(before)
    path = os.path.join(folder, f"encoder_{dtype}_{'functional' if functional else 'sequential'}.keras")
    model.save(path)
    return path, model


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_saved_model_with_the_encoder_layers_is_read_and_passes(dtype, functional, tmp_path):
    """From the .keras file: the description, the weights bit for bit, every row of the comparison in the model's
    dtype and in float64."""
    path, model = saved_encoder(tmp_path, dtype, functional)
    scratch = from_keras(path)
    kinds = [layer.kind for layer in scratch.layers]
    assert {"position_embedding", "layer_normalization", "global_average_pooling1d"} <= set(kinds)
    if not functional:
        assert str(scratch.architecture) == "7x5-pos7-6:tanh-ln-gap1d-3:softmax"
    for a, b in zip(scratch.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for wanted in (None, "float64"):
        report = compare_keras_model(path, batch=6, gradcheck_samples=3, dtype=wanted)
        assert report.passed, report.verdict()
        if scratch.dtype == np.float64 or wanted == "float64":
            assert report.worst("norm-rel") <= F64_TOL, report.verdict()


# ----- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Sequential([GlobalAveragePooling1D()], input_shape=(8,)), "takes sequences of shape (timesteps,"),
        (lambda: Sequential([GlobalAveragePooling1D()], input_shape=(4, 4, 1)), "got (4, 4, 1)"),
        (lambda: Sequential([PositionEmbedding()], input_shape=(8,)), "takes sequences of shape (timesteps,"),
        (lambda: Sequential([PositionEmbedding(7)], input_shape=(8, 4)), "has sequence_length 7 but is called on"),
        (lambda: PositionEmbedding(0), "sequence_length must be a positive integer (or None"),
        (lambda: PositionEmbedding(2.5), "got 2.5"),
        (lambda: PositionEmbedding(True), "got True"),
        (
            lambda: Sequential([GlobalAveragePooling1D()], input_shape=(3, 2)).layers[0].forward(
                np.ones((1, 3, 2)), mask=np.ones((1, 3))
            ),
            "a mask is not supported",
        ),
    ],
    ids=["gap1d on features", "gap1d on an image", "pos on features", "pos of another length", "length 0",
         "length 2.5", "length True", "gap1d with a mask"],
)  # fmt: skip
def test_bad_layers_are_refused(make, message):
    with pytest.raises(BadInputError) as info:
        make()
    assert message in str(info.value), info.value


BAD_ARCHS = {
    "pos of another length": ("8x16-pos7-gap1d-10", "layer 1 (position_embedding) has sequence_length 7 but is called"),
    "pos of length 0": ("8x16-pos0-gap1d-10", "layer 1 sequence_length '0' is not a positive integer"),
    "pos with an option": ("8x16-pos:2-gap1d-10", "layer 1 'pos:2'; expected pos (PositionEmbedding"),
    "pos on features": ("16-pos-10", "layer 1 (position_embedding) takes sequences of shape (timesteps, features)"),
    "gap1d on an image": ("8x8x1-gap1d-10", "layer 1 (global_average_pooling1d) takes sequences of shape"),
    "a sequence as the output": ("8x16-pos-10", "end with features (D,): add 'flatten' or 'gap1d' and a Dense"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHS))
def test_bad_sequence_strings_are_one_line_and_exit_2(case, capsys):
    text, message = BAD_ARCHS[case]
    with pytest.raises(BadInputError) as info:
        Architecture.parse(text)
    assert message in str(info.value)
    code = cli.main(["compare", "--arch", text])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def refused_model(case: str) -> keras.Model:
    seq = keras.Input((6, 4))
    if case == "channels_first":
        return keras.Model(seq, L.Dense(2)(L.GlobalAveragePooling1D(data_format="channels_first")(seq)))
    if case == "keepdims":
        return keras.Model(seq, L.Dense(2)(L.Flatten()(L.GlobalAveragePooling1D(keepdims=True)(seq))))
    if case == "mask":
        mask = keras.Input((6,), dtype="bool")
        return keras.Model([seq, mask], L.Dense(2)(L.GlobalAveragePooling1D()(seq, mask=mask)))
    if case == "mask_zero":
        tokens = keras.Input((6,), dtype="int32")
        pooled = L.GlobalAveragePooling1D()(L.Embedding(5, 3, mask_zero=True)(tokens))
        return keras.Model(tokens, L.Dense(2)(pooled))
    if case == "ln_axis":
        return keras.Model(seq, L.Dense(2)(L.GlobalAveragePooling1D()(L.LayerNormalization(axis=1)(seq))))
    if case == "sequence_output":
        return keras.Model(seq, L.Dense(2)(PositionEmbeddingTwin()(seq)))
    if case == "rms_scaling":
        return keras.Model(seq, L.Dense(2)(L.GlobalAveragePooling1D()(L.LayerNormalization(rms_scaling=True)(seq))))
    return keras.Model(seq, L.Dense(2)(L.GlobalAveragePooling1D()(L.LayerNormalization(center=False)(seq))))


REFUSED = {
    "channels_first": "(GlobalAveragePooling1D): data_format='channels_first'; only channels_last",
    "keepdims": "(GlobalAveragePooling1D): keepdims=True (the output (N, 1, D)); only keepdims=False",
    "mask": "(GlobalAveragePooling1D): called with mask=",
    "mask_zero": "(Embedding): mask_zero=True",
    "ln_axis": "(LayerNormalization): axis=[1]",
    "rms_scaling": "(LayerNormalization): rms_scaling=True",
    "center": "(LayerNormalization): center=False",
    "sequence_output": "has shape (6, 2); end with features (D,): add a Flatten (or GlobalAveragePooling1D)",
}


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`:UserWarning")  # Keras's own deprecation note
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_from_keras_refuses_what_the_scratch_layers_do_not_compute(case, tmp_path, capsys):
    """BadInputError from Python naming the layer and the option; one line and exit 2 from the command line."""
    model = refused_model(case)
    with pytest.raises(BadInputError) as info:
        from_keras(model)
    assert REFUSED[case] in str(info.value), info.value
    path = tmp_path / f"{case}.keras"
    model.save(path)
    code = cli.main(["compare", "--keras-model", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and REFUSED[case] in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_position_table_trains_in_lockstep_with_keras(dtype):
    """Adam on a seeded task, the residual feed-forward block between the table and the mean: after every step the
    two sides' parameters (the table among them) agree as the harness's rule says, and their predictions are the
    same."""
    from compare.training import run_training

    rng = np.random.default_rng(5)
    x = rng.standard_normal((192, 8, 6))
    labels = (x[:, :4, 0].sum(axis=1) > x[:, 4:, 0].sum(axis=1)).astype(int)  # which half holds more of feature 0
    y = np.eye(2)[labels]
    arch = "8x6-pos-add(12-dropout0.1-6:linear | id)-ln-gap1d-2"
    report = run_training(arch, x.astype(dtype), y.astype(dtype), "adam", epochs=2, batch_size=32, dtype=dtype)
    assert report.passed and report.same_predictions, report.verdict()
