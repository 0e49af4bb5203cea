"""Saved Transformer models built from keras.layers, read by from_keras and compared: MultiHeadAttention (self- and
cross-attention, a separate key, causal, an attention-mask input of each dtype, dropout, the scores returned and
left unused), LayerNormalization, Add, Embedding (tokens and positions), Dropout, the feed-forward Dense on every
step, and a pooling (Flatten, GlobalAveragePooling1D) before the softmax head; the position embedding is a
second Embedding read at positions given as an input, or keras_impl's PositionEmbedding.

Real keras.Model graphs with random weights, compiled, saved as .keras files and read back; every comparison in the
model's dtype (float64 and float32), every row must pass. What the scratch layer does not compute is refused in one
line (BadInputError; exit 2 from the command line), and a reading that swaps an attention call's roles fails.
"""

import json
import re

import keras
import numpy as np
import pytest
from test_keras_model import save_each

import keras_impl  # noqa: F401 (first: pins the TensorFlow settings before TensorFlow loads)
from compare import cli, keras_model, keras_reading
from compare.harness import fixed_input_flags
from compare.keras_model import compare_keras_model, describe, from_keras
from compare.tolerances import F64_TOL, norm_rel_error
from from_scratch.errors import BadInputError
from from_scratch.graph import Model
from from_scratch.graph_arch import Call, GraphArchitecture
from keras_impl.attention import FixedMaskMultiHeadAttention
from keras_impl.sequence import PositionEmbedding

L = keras.layers
T, V, D = 6, 11, 8  # steps, vocabulary, model width


def compile_model(model, dtype, loss="categorical_crossentropy"):
    """model.compile in `dtype` (Keras's compiled-loss wrapper takes floatx() when it is created)."""
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        model.compile(optimizer="sgd", loss=loss)
    finally:
        keras.config.set_floatx(before)


def randomize(model, seed=0):
    """Random weights in every slot, at a scale that keeps the softmax of the scores away from one-hot rows (weights
    of standard deviation 1 make scores of tens: every row a one-hot, every dS almost 0, nothing to compare)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(0.4 * rng.standard_normal(v.shape) + ("gamma" in v.path)).astype(v.dtype) for v in model.weights]
    )


def embedded(d, tokens, positions):
    """Token embedding plus a learned position table: a second Embedding read at the positions 0..T-1 (an input)."""
    words = L.Embedding(V, D, dtype=d, name="token_embedding")(tokens)
    places = L.Embedding(T, D, dtype=d, name="position_embedding")(positions)
    return L.Add(dtype=d, name="embed")([words, places])


def encoder_block(d, h, k, attention, **call):
    """Self-attention, Dropout, Add, LayerNormalization, the feed-forward Dense on every step, Add,
    LayerNormalization (post-norm, as keras.io's text-classification Transformer)."""
    a = attention(h, h, **call)
    a = a[0] if call.get("return_attention_scores") else a  # the scores left unused
    a = L.Dropout(0.1, dtype=d, name=f"drop_{k}")(a)
    h = L.LayerNormalization(dtype=d, name=f"norm_{k}a")(L.Add(dtype=d, name=f"res_{k}a")([h, a]))
    f = L.Dense(D, dtype=d, name=f"ff_{k}b")(L.Dense(16, "gelu", dtype=d, name=f"ff_{k}a")(h))
    return L.LayerNormalization(epsilon=1e-6, dtype=d, name=f"norm_{k}b")(L.Add(dtype=d, name=f"res_{k}b")([h, f]))


def token_inputs():
    return keras.Input((T,), dtype="int32", name="tokens"), keras.Input((T,), dtype="int32", name="positions")


def head(d, h, classes=3):
    return L.Dense(classes, "softmax", dtype=d, name="head")(L.Flatten(dtype=d, name="flat")(h))


def encoder(d):
    """Two encoder blocks: the first with attention dropout (Keras's explicit path), the second without (its fused
    path), 4 heads of key_dim 2 and value_dim 3, no biases."""
    tokens, positions = token_inputs()
    h = embedded(d, tokens, positions)
    h = encoder_block(d, h, 1, L.MultiHeadAttention(2, 4, dropout=0.2, dtype=d, name="attention_1"))
    h = encoder_block(d, h, 2, L.MultiHeadAttention(4, 2, value_dim=3, use_bias=False, dtype=d, name="attention_2"))
    model = keras.Model([tokens, positions], head(d, h), name="encoder")
    compile_model(model, d)
    return model


def cross(d):
    """Cross-attention: a query sequence of 5 steps (float features) attends to a context of 7 tokens; the key is
    its own tensor of another width than the value; output_shape given, attention_axes given as its default."""
    x = keras.Input((5, 3), dtype=d, name="queries")
    context = keras.Input((7,), dtype="int32", name="context")
    q = L.Dense(D, dtype=d, name="lift")(x)
    c = L.Embedding(V, D, dtype=d, name="context_embedding")(context)
    k = L.Dense(5, "tanh", dtype=d, name="keys")(c)
    mha = L.MultiHeadAttention(3, 2, value_dim=4, output_shape=6, attention_axes=1, dtype=d, name="cross_attention")
    a = mha(query=q, value=c, key=k)
    h = L.LayerNormalization(dtype=d, name="norm")(L.Add(dtype=d, name="res")([L.Dense(6, dtype=d, name="skip")(q), a]))
    model = keras.Model([x, context], head(d, h, 2), name="cross")
    compile_model(model, d, "sparse_categorical_crossentropy")
    return model


def causal(d):
    """Causal self-attention with the scores returned and left unused (Keras's explicit path), then causal
    cross-attention onto a memory of 4 steps (T != S: Keras does not refuse it, keep[i, j] = i >= j)."""
    tokens, positions = token_inputs()
    memory = keras.Input((4, 5), dtype=d, name="memory")
    h = embedded(d, tokens, positions)
    mha = L.MultiHeadAttention(2, 4, dtype=d, name="attention_1")
    h = encoder_block(d, h, 1, mha, use_causal_mask=True, return_attention_scores=True)
    a = L.MultiHeadAttention(2, 3, dtype=d, name="recall")(h, memory, use_causal_mask=True)
    h = L.LayerNormalization(dtype=d, name="norm")(L.Add(dtype=d, name="res")([h, a]))
    model = keras.Model([tokens, positions, memory], head(d, h), name="causal")
    compile_model(model, d)
    return model


def masked(d, mask_dtype):
    """An attention mask as a model input, (T, T) of `mask_dtype`, in both blocks (the second also causal: both
    masks combine with AND), and a padding mask (1, T) of int32 for the second (broadcast over the query steps)."""
    tokens, positions = token_inputs()
    mask = keras.Input((T, T), dtype=mask_dtype, name="mask")
    padding = keras.Input((1, T), dtype="int32", name="padding")
    h = embedded(d, tokens, positions)
    h = encoder_block(d, h, 1, L.MultiHeadAttention(2, 4, dtype=d, name="attention_1"), attention_mask=mask)
    a = L.MultiHeadAttention(2, 4, dropout=0.1, dtype=d, name="attention_2")
    h = encoder_block(d, h, 2, a, attention_mask=padding, use_causal_mask=True)
    model = keras.Model([tokens, positions, mask, padding], head(d, h), name=f"masked_{mask_dtype}")
    compile_model(model, d)
    return model


def pooled(d):
    """One input of token ids, a token Embedding and keras_impl's PositionEmbedding (a learned table added to the
    sequence), two encoder blocks (the second causal), the mean over the steps (GlobalAveragePooling1D), a softmax
    head: the encoder classifier as keras.io writes it."""
    tokens = keras.Input((T,), dtype="int32", name="tokens")
    h = PositionEmbedding(dtype=d, name="positions")(L.Embedding(V, D, dtype=d, name="token_embedding")(tokens))
    h = encoder_block(d, h, 1, L.MultiHeadAttention(2, 4, dropout=0.1, dtype=d, name="attention_1"))
    h = encoder_block(d, h, 2, L.MultiHeadAttention(2, 4, dtype=d, name="attention_2"), use_causal_mask=True)
    pooled = L.GlobalAveragePooling1D(dtype=d, name="pool")(h)
    model = keras.Model(tokens, L.Dense(3, "softmax", dtype=d, name="head")(pooled), name="pooled")
    compile_model(model, d)
    return model


def nested_shared(d):
    """An encoder block written as a functional model of (sequence, mask), called twice: its layers (attention with
    dropout, normalizations, feed-forward) are shared by both calls and flattened into the graph; the mask input
    reaches the attention through the nested model."""
    x = keras.Input((T, D), dtype=d, name="x")
    m = keras.Input((T, T), dtype="bool", name="m")
    attention = L.MultiHeadAttention(2, 4, dropout=0.1, dtype=d, name="attention")
    block = keras.Model([x, m], encoder_block(d, x, 1, attention, attention_mask=m), name="block")
    tokens, positions = token_inputs()
    mask = keras.Input((T, T), dtype="bool", name="mask")
    h = block([block([embedded(d, tokens, positions), mask]), mask])
    model = keras.Model([tokens, positions, mask], head(d, h), name="nested_shared")
    compile_model(model, d)
    return model


MODELS = {
    "encoder": encoder,
    "cross": cross,
    "causal": causal,
    "masked_bool": lambda d: masked(d, "bool"),
    "masked_int32": lambda d: masked(d, "int32"),
    "masked_float": lambda d: masked(d, d),
    "nested_shared": nested_shared,
    "pooled": pooled,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(key, dtype) -> (path, model): each model with random weights, compiled, saved as .keras."""
    return save_each(tmp_path_factory.mktemp("attention"), MODELS, randomize)


def batch_for(model, n=5, seed=3):
    """A batch the saved model takes: token ids, positions 0..T-1, 0/1 masks, normal values."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape, name = (n, *t.shape[1:]), t._keras_history.operation.name
        if name == "positions":
            xs.append(np.broadcast_to(np.arange(T), shape).copy())
        elif t.dtype == "int32" and name in ("tokens", "context"):
            xs.append(rng.integers(0, V, shape))
        elif name in ("mask", "padding"):
            xs.append((rng.random(shape) < 0.7).astype(t.dtype))
        else:
            xs.append(rng.standard_normal(shape))
    return xs


#: Each model in its own dtype, both; a float32 model compared in float64 (the Keras side then built from the
#: description in float64, the saved weights upcast exactly) for the models whose calls differ most.
CASES = [(key, dtype, None) for key in MODELS for dtype in ("float64", "float32")] + [
    (key, "float32", "float64") for key in ("encoder", "cross", "masked_bool", "pooled")
]


@pytest.mark.parametrize("key,dtype,wanted", CASES)
def test_saved_transformer_passes_every_row(saved, key, dtype, wanted):
    """Every row, in the model's dtype and (a float32 model) in float64, where the Keras side is built from the
    description in float64 with the saved weights upcast exactly."""
    path, _ = saved[key, dtype]
    report = compare_keras_model(path, batch=6, gradcheck_samples=3, dtype=wanted)
    assert report.passed, (report.verdict(), [(r.name, r.error) for r in report.failures])
    assert [row.name for row in report.rows[:2]] == [
        "weights from the Keras model",
        "outputs of the Keras model as read",
    ]
    assert report.rows[0].error == 0.0 and report.rows[1].error == 0.0
    names = [row.name for row in report.rows]
    assert any(name.startswith("grad ") and "/query/kernel" in name for name in names)
    assert report.config["dtype"] == (wanted or dtype)


def test_the_description_reads_each_attention_calls_roles_and_flags(saved):
    """Roles from the node's arguments (positional, or by keyword as in the cross model), the flags set, and the
    layers' options from their configs."""
    calls = {
        key: {c.layer: dict(c.options) for c in describe(saved[key, "float64"][1])[0].calls if c.options}
        for key in ("encoder", "cross", "causal", "masked_bool")
    }
    assert calls["encoder"] == {
        "attention_1": {"roles": ("query", "value")},
        "attention_2": {"roles": ("query", "value")},
    }
    assert calls["cross"] == {"cross_attention": {"roles": ("query", "value", "key")}}
    assert calls["causal"] == {
        "attention_1": {"roles": ("query", "value"), "use_causal_mask": True, "return_attention_scores": True},
        "recall": {"roles": ("query", "value"), "use_causal_mask": True},
    }
    assert calls["masked_bool"]["attention_2"] == {
        "roles": ("query", "value", "attention_mask"),
        "use_causal_mask": True,
    }
    arch, _ = describe(saved["cross", "float64"][1])
    cross_call = next(c for c in arch.calls if c.layer == "cross_attention")
    assert cross_call.inputs == ("lift", "context_embedding", "keys")
    spec = dict(arch.layers)["cross_attention"]
    assert spec.kind == "multi_head_attention"
    assert spec.options == {
        "num_heads": 3,
        "key_dim": 2,
        "value_dim": 4,
        "dropout": 0.0,
        "use_bias": True,
        "output_shape": (6,),
    }
    arch, _ = describe(saved["nested_shared", "float64"][1])
    shared = [c for c in arch.calls if c.layer == "attention"]
    assert [c.inputs[2] for c in shared] == ["mask", "mask"] and "attention#2" in arch.output_names()
    layers = dict(describe(saved["encoder", "float64"][1])[0].layers)
    assert layers["norm_1a"].kind == "layer_normalization" and layers["norm_1a"].options == {}
    assert layers["norm_1b"].options == {"epsilon": 1e-6}
    assert layers["attention_2"].options["use_bias"] is False and layers["attention_1"].options["dropout"] == 0.2


@pytest.mark.parametrize("key", list(MODELS))
def test_the_scratch_model_computes_the_saved_models_predictions(saved, key):
    """Without the harness copying anything: the scratch model's inference outputs are the loaded Keras model's to
    float64 rounding, on token ids, positions and 0/1 masks in the dtypes the model takes; the weights bit for
    bit, in Keras's get_weights() order."""
    path, _ = saved[key, "float64"]
    loaded = keras_model.load(path)
    scratch = from_keras(path)
    assert isinstance(scratch, Model)
    assert [a.tobytes() for a in scratch.get_weights()] == [b.tobytes() for b in loaded.get_weights()]
    xs = batch_for(loaded)
    theirs = np.asarray(loaded(xs if len(xs) > 1 else xs[0], training=False))
    ours = [np.asarray(x, np.float64) for x in xs]
    ours = scratch.forward(ours if len(ours) > 1 else ours[0], training=False)
    assert norm_rel_error(ours, theirs) <= F64_TOL


def test_a_mask_input_is_drawn_as_0_1_and_held_fixed(saved):
    """The harness's batch for a saved model gives each attention-mask input 0/1 values (some positions masked,
    some kept), whatever dtype the model takes it in, and holds it fixed like the token ids: no ulp jitter, no
    witness coordinate; its dL/dX row is 0 on both sides."""
    path, model = saved["masked_float", "float64"]
    arch, _ = describe(model)
    x, _ = keras_model.keras_model_batch(arch, keras_model.loss_of(model), "synthetic", 6, 0)
    names = [name for name, _ in arch.inputs]
    for name in ("mask", "padding"):
        values = x[names.index(name)]
        assert set(np.unique(values)) == {0.0, 1.0}, name
    assert fixed_input_flags(from_keras(path)) == [True, True, True, True]
    report = compare_keras_model(path, batch=6, gradcheck_samples=3)
    rows = {row.name: row for row in report.rows}
    assert rows["grad input mask"].error == 0.0 and rows["grad input padding"].error == 0.0
    witness = next(row for row in report.rows if row.name.startswith("numerical grad"))
    assert witness.shape[0] == sum(min(3, np.size(w)) for w in from_keras(path).get_weights())  # no input coords


def test_the_comparison_twin_feeds_the_shared_mask_to_an_attention_with_dropout(saved):
    """An attention layer with dropout becomes, in the twin, the same layer with its probability dropout fed the
    harness's mask (Keras's own draws from TensorFlow's generator); the other layers stay the user's objects."""
    _, model = saved["encoder", "float64"]
    twin = keras_reading.comparison_twin(model)
    by_name = {layer.name: layer for layer in twin.layers}
    assert type(by_name["attention_1"]) is FixedMaskMultiHeadAttention
    assert [w.tobytes() for w in by_name["attention_1"].get_weights()] == [
        w.tobytes() for w in model.get_layer("attention_1").get_weights()
    ]
    assert by_name["attention_2"] is model.get_layer("attention_2")


# ----- refusals ----------------------------------------------------------------------------------------------------
def small(attention=None, call=None, inputs=None):
    """x (5, 6) -> attention -> Flatten -> Dense; `attention` and the call's keyword arguments vary."""
    x = keras.Input((5, 6), name="x")
    mha = attention or L.MultiHeadAttention(2, 3, name="mha")
    a = mha(x, x, **(call or {}))
    return keras.Model(x, L.Dense(2, "softmax", name="out")(L.Flatten(name="flat")(a)), name="small")


def scores_used_as_output():
    x = keras.Input((5, 6), name="x")
    a, scores = L.MultiHeadAttention(2, 3, name="mha")(x, x, return_attention_scores=True)
    return keras.Model(x, [L.Dense(2, "softmax", name="out")(L.Flatten(name="flat")(a)), scores], name="both")


def scores_used_as_input():
    x = keras.Input((5, 6), name="x")
    _, scores = L.MultiHeadAttention(2, 3, name="mha")(x, x, return_attention_scores=True)
    return keras.Model(x, L.Dense(2, "softmax", name="out")(L.Flatten(name="flat")(scores)), name="weights")


def padding_from_mask_zero():
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    e = L.Embedding(V, 6, mask_zero=True, name="emb")(tokens)
    a = L.MultiHeadAttention(2, 3, name="mha")(e, e)
    return keras.Model(tokens, L.Dense(2, "softmax", name="out")(L.Flatten(name="flat")(a)), name="padded")


def query_mask_given():
    x = keras.Input((5, 6), name="x")
    m = keras.Input((5,), dtype="bool", name="m")
    a = L.MultiHeadAttention(2, 3, name="mha")(x, x, query_mask=m)
    return keras.Model([x, m], L.Dense(2, "softmax", name="out")(L.Flatten(name="flat")(a)), name="query_masked")


def on_images():
    x = keras.Input((3, 4, 6), name="x")
    a = L.MultiHeadAttention(2, 3, attention_axes=(1, 2), name="mha")(x, x)
    return keras.Model(x, L.Dense(2, "softmax", name="out")(L.Flatten(name="flat")(a)), name="axes")


def mha(**options):
    return lambda: small(L.MultiHeadAttention(2, 3, name="mha", **options))


REFUSED = {
    "attention_axes": (on_images, "layer 'mha' (MultiHeadAttention): attention_axes=(1, 2); only attention over the"),
    "use_gate": (mha(use_gate=True), "layer 'mha' (MultiHeadAttention): use_gate=True; only use_gate=False"),
    "sliding_window": (mha(sliding_window=2), "layer 'mha' (MultiHeadAttention): sliding_window=2; only"),
    "kernel_regularizer": (mha(kernel_regularizer="l2"), "layer 'mha' (MultiHeadAttention): kernel_regularizer=L2"),
    "bias_regularizer": (mha(bias_regularizer="l1"), "layer 'mha' (MultiHeadAttention): bias_regularizer=L1"),
    "activity_regularizer": (
        mha(activity_regularizer="l2"),
        "layer 'mha' (MultiHeadAttention): activity_regularizer=L2",
    ),
    "kernel_constraint": (
        mha(kernel_constraint="non_neg"),
        "layer 'mha' (MultiHeadAttention): kernel_constraint=NonNeg",
    ),
    "bias_constraint": (mha(bias_constraint="max_norm"), "layer 'mha' (MultiHeadAttention): bias_constraint=MaxNorm"),
    "mask_zero": (padding_from_mask_zero, "layer 'emb' (Embedding): mask_zero=True (a mask for the layers after it)"),
    "query_mask": (query_mask_given, "node 'mha' (MultiHeadAttention): called with query_mask= (a padding mask"),
    "scores_output": (
        scores_used_as_output,
        "layer 'mha' (MultiHeadAttention): return_attention_scores=True with the scores used as an output of model",
    ),
    "scores_input": (
        scores_used_as_input,
        "layer 'mha' (MultiHeadAttention): return_attention_scores=True with the scores used as the input of node "
        "'flat' (Flatten)",
    ),
}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", list(REFUSED))
def test_what_the_scratch_attention_does_not_compute_is_one_line_and_exit_2(capsys, tmp_path, kind):
    make, message = REFUSED[kind]
    model = make()
    with pytest.raises(BadInputError, match=re.escape(message)):
        from_keras(model)
    model.compile(loss="categorical_crossentropy")
    model.save(tmp_path / f"{kind}.keras")
    with pytest.raises(BadInputError, match=re.escape(message)) as caught:
        from_keras(tmp_path / f"{kind}.keras")
    assert len(str(caught.value).splitlines()) == 1
    code, out, err = run(capsys, "compare", "--keras-model", tmp_path / f"{kind}.keras")
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_flash_attention_in_memory_is_refused():
    """flash_attention=True is not part of the layer's config (a saved model loads without it): refused in a model
    handed over in memory."""
    with pytest.raises(BadInputError, match=re.escape("layer 'mha' (MultiHeadAttention): flash_attention=True")):
        from_keras(small(L.MultiHeadAttention(2, 3, flash_attention=True, name="mha")))


def test_valid_attention_options_read_and_pass(capsys, tmp_path):
    """What Keras computes and the scratch layer computes too is not refused: attention_axes given as its default,
    output_shape of two entries (a Flatten after it), the scores returned and unused, query/value/key by keyword."""
    x = keras.Input((5, 6), dtype="float64", name="x")
    mha = L.MultiHeadAttention(2, 3, output_shape=(2, 3), attention_axes=(1,), dtype="float64", name="mha")
    a, _ = mha(query=x, value=x, key=x, return_attention_scores=True)
    model = keras.Model(x, L.Dense(2, "softmax", dtype="float64", name="out")(L.Flatten(dtype="float64")(a)))
    randomize(model, 2)
    compile_model(model, "float64")
    model.save(tmp_path / "valid.keras")
    code, out, err = run(capsys, "compare", "--keras-model", tmp_path / "valid.keras", "--batch", 4, "--json")
    assert code == 0, err
    assert json.loads(out)["passed"]


# ----- a wrong read fails ------------------------------------------------------------------------------------------
def two_streams(d="float64"):
    """Cross-attention between two float sequences of one shape: the query from one, the value from the other."""
    a = keras.Input((5, 4), dtype=d, name="a")
    b = keras.Input((5, 4), dtype=d, name="b")
    h = L.MultiHeadAttention(2, 3, dtype=d, name="mha")(a, b)
    model = keras.Model([a, b], L.Dense(2, "softmax", dtype=d, name="out")(L.Flatten(dtype=d, name="flat")(h)))
    randomize(model, 4)
    compile_model(model, d)
    return model


def swap_query_and_value(call):
    return Call(call.layer, call.inputs, options=(("roles", ("value", "query")),))


def drop_the_causal_mask(call):
    return Call(call.layer, call.inputs, options=tuple(o for o in call.options if o[0] != "use_causal_mask"))


MISREADS = {
    "roles swapped": (lambda: two_streams(), "mha", swap_query_and_value),
    "causal flag dropped": (lambda: MODELS["causal"]("float64"), "recall", drop_the_causal_mask),
}


@pytest.mark.parametrize("misread", list(MISREADS))
def test_an_attention_call_read_wrong_fails(monkeypatch, misread):
    """from_keras reading mha(a, b) as mha(b, a) (the roles swapped), or a causal call as a plain one: both sides of
    the comparison are built from the reading, so they agree with each other; the row "outputs of the Keras model
    as read" (the model's own outputs) fails, and only it."""
    make, layer, change = MISREADS[misread]
    model = make()
    randomize(model, 5)
    original = keras_reading.read

    def wrong(model):
        reading = original(model)
        graph = reading.graph
        calls = tuple(change(c) if c.layer == layer else c for c in graph.calls)
        graph = GraphArchitecture(graph.inputs, graph.layers, calls, graph.outputs)
        return keras_reading.Reading(graph, graph, reading.dtype, reading.layers)

    assert compare_keras_model(model, batch=6, gradcheck_samples=0).passed  # read right, it passes
    monkeypatch.setattr(keras_reading, "read", wrong)
    monkeypatch.setattr(keras_model, "read", wrong)
    report = compare_keras_model(model, batch=6, gradcheck_samples=0)
    failed = [row.name for row in report.failures]
    assert failed == ["outputs of the Keras model as read"], failed
    assert report.rows[1].error > 1e-3
