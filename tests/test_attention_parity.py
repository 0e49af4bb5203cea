"""MultiHeadAttention against keras.layers.MultiHeadAttention: random configurations (heads, key and value dims,
query and value lengths and widths, a separate key, output_shape, biases, attention masks of every broadcast shape,
the causal mask, returned scores, probability dropout) in graphs, in both dtypes; the Keras quirks kept (two
computation paths, the float32-rounded scale); the Keras side's per-head trace is the layer's own computation; and a
wrong attention fails."""

from __future__ import annotations

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from compare.harness import run_comparison
from compare.tolerances import F64_TOL
from from_scratch import BadInputError, Input, Model
from from_scratch.arch import LayerSpec
from from_scratch.attention import (
    FUSED_FILL,
    SOFTMAX_LAYER_FILL,
    MultiHeadAttention,
    add_bias,
    attention_scale,
    attention_softmax_backward,
    bias_add_axis,
    bias_grad,
)
from from_scratch.graph_arch import Call, GraphArchitecture
from keras_impl.attention import attention_steps

#: CI runs a fixed (derandomized) set of configurations per dtype; BACKPROP_PARITY_FUZZ=N runs N fresh random ones.
FUZZ = int(os.environ.get("BACKPROP_PARITY_FUZZ", "0"))
PROPERTY = settings(
    max_examples=FUZZ or 8,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def attention_graph(
    *,
    t: int,
    s: int,
    d_q: int,
    d_v: int,
    d_k: int | None,
    cross: bool,
    mask: tuple[int, ...] | None,
    causal: bool,
    scores: bool,
    **options: object,
) -> GraphArchitecture:
    """query (T, D_q) [, value (S, D_v)] [, key (S, D_k)] [, mask] -> attention -> Flatten -> Dense softmax."""
    inputs = [("query", (t, d_q))]
    if cross:
        inputs.append(("value", (s, d_v)))
    if d_k is not None:
        inputs.append(("key", (s if cross else t, d_k)))
    roles = ["query", "value"] + (["key"] if d_k is not None else [])
    handed = ["query", "value" if cross else "query"] + (["key"] if d_k is not None else [])
    if mask is not None:
        inputs.append(("mask", mask))
        roles.append("attention_mask")
        handed.append("mask")
    call = {"roles": tuple(roles)}
    if causal:
        call["use_causal_mask"] = True
    if scores:
        call["return_attention_scores"] = True
    spec = LayerSpec("multi_head_attention", None, "linear", dict(options))
    return GraphArchitecture(
        tuple(inputs),
        (("mha", spec), ("flatten", LayerSpec("flatten")), ("dense", LayerSpec("dense", 3, "softmax"))),
        (
            Call("mha", tuple(handed), "", tuple(sorted(call.items()))),
            Call("flatten", ("mha",)),
            Call("dense", ("flatten",)),
        ),
        ("dense",),
    )


@st.composite
def configurations(draw: st.DrawFn) -> dict:
    heads = draw(st.integers(1, 4))
    t = draw(st.integers(1, 6))
    cross = draw(st.booleans())
    s = draw(st.integers(1, 6)) if cross else t
    mask_kind = draw(st.sampled_from([None, "full", "keys", "queries", "per_head"]))
    mask = {
        None: None,
        "full": (t, s),
        "keys": (1, s),
        "queries": (t, 1),
        "per_head": (heads, t, s),
    }[mask_kind]
    return dict(
        t=t,
        s=s,
        d_q=draw(st.integers(1, 7)),
        d_v=draw(st.integers(1, 7)),
        d_k=draw(st.one_of(st.none(), st.integers(1, 7))),
        cross=cross,
        mask=mask,
        causal=draw(st.booleans()),
        scores=draw(st.booleans()),
        num_heads=heads,
        key_dim=draw(st.integers(1, 6)),
        value_dim=draw(st.one_of(st.none(), st.integers(1, 5))),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.25])),
        use_bias=draw(st.booleans()),
        output_shape=draw(st.one_of(st.none(), st.integers(1, 5))),
    )


#: Found by the generator: one unit per head with as many heads as value steps, where Keras adds the key and value
#: biases along the steps (bias_add_axis); the scratch layer reproduces it.
HEADS_EQUAL_STEPS = dict(
    t=1, s=2, d_q=1, d_v=1, d_k=None, cross=True, mask=None, causal=False, scores=False,
    num_heads=2, key_dim=1, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
)  # fmt: skip


def _judge(config: dict, dtype: str, seed: int) -> None:
    report = run_comparison(attention_graph(**config), batch=4, dtype=dtype, seed=seed)
    failed = [(r.name, r.error, r.tol) for r in report.rows if not r.passed]
    assert report.passed, f"{config}: {failed}"
    names = {r.name for r in report.rows}
    assert {"mha dL/dquery", "grad mha/query/kernel", "grad mha/attention_output/kernel"} <= names
    assert ("mha dL/dkey" in names) == (config["d_k"] is not None)
    assert ("mha attention scores" in names) == config["scores"]
    if dtype == "float64":  # a norm-relative row within float64's bound (the key bias's gradient is zero: noise)
        worst = max(r.error for r in report.rows if r.name.startswith("mha dL/d") or r.name.startswith("output"))
        assert worst < F64_TOL, (config, worst)


@PROPERTY
@given(configurations(), st.integers(0, 2**16))
@example(HEADS_EQUAL_STEPS, 0)
def test_random_attention_configurations_agree_with_keras_in_float64(config, seed):
    _judge(config, "float64", seed)


@PROPERTY
@given(configurations(), st.integers(0, 2**16))
@example(HEADS_EQUAL_STEPS, 0)
def test_random_attention_configurations_agree_with_keras_in_float32(config, seed):
    _judge(config, "float32", seed)


# ----- Keras's quirks, kept -----------------------------------------------------------------------------------------
def _keras_layer(dtype: str, **kw: object) -> keras.layers.MultiHeadAttention:
    keras.config.set_floatx(dtype)
    return keras.layers.MultiHeadAttention(dtype=dtype, **kw)


def _pair(dtype: str, shapes: list[tuple[int, ...]], seed: int = 0, **kw: object):
    """Our layer and Keras's with the same weights, built for query/value(/key) of `shapes` (with the batch axis)."""
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    theirs = _keras_layer(dtype, **kw)
    theirs(*xs[:2], key=xs[2] if len(xs) > 2 else None)
    ours = MultiHeadAttention(**kw)
    ours.build([s[1:] for s in shapes], np.dtype(dtype), rng)
    for p, w in zip(ours.params, theirs.get_weights(), strict=True):
        assert p.shape == w.shape
        p[...] = w
    return ours, theirs, xs


@pytest.mark.parametrize("key_dim", [3, 5, 7])
def test_keras_rounds_the_scale_to_float32_even_in_float64(key_dim):
    """TensorFlow reads the Python float 1/sqrt(key_dim) as a float32 constant: Keras's float64 scores carry it."""
    theirs = _keras_layer("float64", num_heads=1, key_dim=key_dim)
    exact = 1.0 / math.sqrt(key_dim)
    cast = float(tf.cast(theirs._inverse_sqrt_key_dim, tf.float64))
    assert cast == float(np.float32(exact)) != exact
    assert float(attention_scale(key_dim, np.float64)) == cast


@pytest.mark.parametrize("fused", [True, False])
def test_a_fully_masked_row_is_uniform_on_the_fused_path_and_zero_on_the_explicit_one(fused):
    """Keras's two paths: dot_product_attention fills with FUSED_FILL (a fully masked row: uniform over the values),
    the Softmax layer with SOFTMAX_LAYER_FILL and zeroes masked probabilities (the row's context: 0)."""
    ours, theirs, (q, v) = _pair("float64", [(2, 3, 4), (2, 5, 4)], num_heads=2, key_dim=2)
    mask = np.ones((2, 3, 5), bool)
    mask[1, 2] = False  # sample 1, query step 2 sees nothing
    out = theirs(q, v, attention_mask=mask, return_attention_scores=not fused)
    y_theirs = np.asarray(out if fused else out[0])
    y_ours = ours.forward([q, v, mask], roles=("query", "value", "attention_mask"), return_attention_scores=not fused)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=0, atol=1e-14)
    row = ours.P[1, :, 2]
    if fused:
        np.testing.assert_array_equal(row, np.full_like(row, 1 / 5))
    else:
        np.testing.assert_array_equal(row, np.zeros_like(row))
        np.testing.assert_allclose(ours.C[1, :, 2], 0.0, atol=0)
    assert FUSED_FILL < -1e38 and SOFTMAX_LAYER_FILL == -1e9


def test_causal_cross_attention_of_different_lengths_is_accepted_as_keras_accepts_it():
    """Keras keeps (i, j) with i >= j for T != S and refuses nothing: neither do we."""
    ours, theirs, (q, v) = _pair("float64", [(2, 5, 4), (2, 3, 6)], num_heads=2, key_dim=3)
    y_theirs = np.asarray(theirs(q, v, use_causal_mask=True))
    y_ours = ours.forward([q, v], use_causal_mask=True)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=0, atol=1e-14)
    assert (ours.P[:, :, 0, 1:] == 0).all() and (ours.P[:, :, 4] > 0).all()


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_keras_trace_is_the_layers_own_computation_bit_for_bit(scores, dtype):
    """attention_steps (the Keras side's per-head quantities) gives keras's own MultiHeadAttention output bit for
    bit, on both paths, with a mask and the causal rule."""
    _, theirs, (q, v, k) = _pair(dtype, [(3, 4, 5), (3, 6, 5), (3, 6, 2)], num_heads=2, key_dim=3)
    mask = np.random.default_rng(1).uniform(size=(3, 4, 6)) < 0.7
    kw = dict(key=k, attention_mask=mask, use_causal_mask=True, return_attention_scores=scores)
    own = theirs(q, v, **kw)
    own = own[0] if scores else own
    traced, quantities = attention_steps(theirs, q, v, **kw)
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(own))
    assert set(quantities) == {"Q", "K", "V", "S", "P", "C", "query", "value", "key"}


def test_the_softmax_backward_without_its_row_sum_fails_the_comparison():
    """A wrong attention (the softmax VJP without the row sum: dS = P * dP) fails: the harness can tell."""
    right = attention_softmax_backward

    def wrong(p, dp, keep):
        return right(p, dp, keep) + (dp * p).sum(axis=-1, keepdims=True) * p

    config = dict(
        t=4, s=4, d_q=5, d_v=5, d_k=None, cross=False, mask=None, causal=False, scores=False,
        num_heads=2, key_dim=3, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
    )  # fmt: skip
    assert run_comparison(attention_graph(**config), batch=4).passed
    MultiHeadAttention.softmax_backward = staticmethod(wrong)
    try:
        report = run_comparison(attention_graph(**config), batch=4)
    finally:
        MultiHeadAttention.softmax_backward = staticmethod(right)
    failing = {r.name for r in report.rows if not r.passed}
    assert not report.passed and "grad mha/query/kernel" in failing and "output" not in failing
    assert MultiHeadAttention.softmax_backward is right


# ----- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, words",
    [
        ({"num_heads": 0, "key_dim": 4}, "num_heads must be a positive integer, got 0"),
        ({"num_heads": -2, "key_dim": 4}, "num_heads must be a positive integer, got -2"),
        ({"num_heads": 2, "key_dim": 0}, "key_dim must be a positive integer, got 0"),
        ({"num_heads": 2, "key_dim": -1}, "key_dim must be a positive integer, got -1"),
        ({"num_heads": 2.0, "key_dim": 4}, "num_heads must be a positive integer, got 2.0"),
        ({"num_heads": 2, "key_dim": 4, "value_dim": 0}, "value_dim must be a positive integer, got 0"),
        ({"num_heads": 2, "key_dim": 4, "dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ({"num_heads": 2, "key_dim": 4, "output_shape": (0,)}, "output_shape entry must be a positive integer"),
    ],
)
def test_bad_options_are_refused_as_keras_refuses_them(kw, words):
    with pytest.raises(BadInputError, match=None) as info:
        MultiHeadAttention(**kw)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "shapes, call, words",
    [
        ([(4, 3), (5, 3), (6, 3)], {}, "value and key must have the same length, got value (5, 3) and key (6, 3)"),
        ([(4, 3), (5, 3), (4, 4)], {"mask": True}, "attention_mask of shape (4, 4)"),
        ([(4, 3), (5, 3), (2, 4, 5)], {"mask": True}, "attention_mask of shape (2, 4, 5)"),
        ([(4,), (5, 3)], {}, "the query must be a sequence (steps, features), got shape (4,)"),
        ([(4, 3), (2, 5, 3)], {}, "the value must be a sequence (steps, features), got shape (2, 5, 3)"),
    ],
)
def test_shapes_keras_would_refuse_are_refused_naming_the_layer_and_shapes(shapes, call, words):
    tensors = [Input(s) for s in shapes]
    mha = MultiHeadAttention(3, 2)
    with pytest.raises(BadInputError) as info:
        if call.get("mask"):
            out = mha(tensors[0], tensors[1], attention_mask=tensors[2])
        else:
            out = mha(*tensors[:2], key=tensors[2] if len(tensors) > 2 else None)
        Model(tensors, out)
    message = str(info.value)
    assert words in message and "layer 'multi_head_attention'" in message and "\n" not in message


@pytest.mark.parametrize("mask", [np.full((2, 4, 5), "yes"), np.full((2, 4, 5), np.nan), np.ones((2, 4, 5), complex)])
def test_a_mask_of_the_wrong_dtype_or_values_is_refused(mask):
    ours, _, (q, v) = _pair("float64", [(2, 4, 3), (2, 5, 3)], num_heads=1, key_dim=2)
    with pytest.raises(BadInputError, match="attention_mask"):
        ours.forward([q, v, mask], roles=("query", "value", "attention_mask"))


def test_a_mask_of_the_wrong_shape_in_forward_is_refused():
    ours, _, (q, v) = _pair("float64", [(2, 4, 3), (2, 5, 3)], num_heads=1, key_dim=2)
    with pytest.raises(BadInputError, match=r"attention_mask of shape \(2, 5, 4\)"):
        ours.forward([q, v, np.ones((2, 5, 4))], roles=("query", "value", "attention_mask"))


@pytest.mark.parametrize(
    "shape, heads, units",
    [((4, 2, 3), 2, 1), ((4, 3, 3), 3, 1), ((4, 2, 1), 2, 1), ((4, 3, 3), 2, 1), ((4, 2, 3), 2, 3), ((4, 2, 3), 1, 2)],
)
def test_keras_adds_a_one_unit_projection_bias_along_the_steps_when_heads_equal_steps(shape, heads, units):
    """Keras 3.15's EinsumDense adds a bias (N, 1) along the steps when N equals the sequence length (its TensorFlow
    ops.add takes it for tf.nn.bias_add); bias_add_axis says so, and add_bias / bias_grad reproduce it, forward and
    gradient (and broadcast as usual everywhere else), to the rounding of the product (NumPy's and TensorFlow's
    einsum may sum in different orders)."""
    keras.config.set_floatx("float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    layer = keras.layers.EinsumDense(
        "abc,cde->abde", output_shape=(None, heads, units), bias_axes="de", dtype="float64"
    )
    layer.build(shape)
    layer.bias.assign(rng.standard_normal((heads, units)))
    weight = rng.standard_normal((shape[0], shape[1], heads, units))
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y * weight)
    g = tape.gradient(loss, layer.bias).numpy()
    product = np.einsum("abc,cde->abde", x, layer.kernel.numpy())
    misread = bias_add_axis(product.shape, (heads, units)) is not None
    assert misread == (units == 1 and heads > 1 and heads == shape[1])
    np.testing.assert_allclose(add_bias(product, layer.bias.numpy()), y.numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(bias_grad(weight, (heads, units)), g, rtol=1e-14, atol=0)
    if misread:
        assert not np.allclose(product + layer.bias.numpy(), y.numpy())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_shared_attention_layer_sums_its_calls_gradients_and_keeps_each_calls_options(dtype):
    """One MultiHeadAttention (with dropout) called twice: cross-attention a -> b, then causal on its own output and
    b; an Add back to a, LayerNormalization, the mean over the steps. Each call has its rows, the weights' gradient
    is the sum over both calls, and the second call's causal rule is its own."""
    spec = LayerSpec(
        "multi_head_attention",
        None,
        "linear",
        {"num_heads": 2, "key_dim": 3, "value_dim": None, "dropout": 0.2, "use_bias": True, "output_shape": None},
    )
    roles = ("roles", ("query", "value"))
    graph = GraphArchitecture(
        (("a", (5, 4)), ("b", (3, 4))),
        (
            ("mha", spec),
            ("add", LayerSpec("add")),
            ("ln", LayerSpec("layer_normalization")),
            ("gap", LayerSpec("global_average_pooling1d")),
            ("dense", LayerSpec("dense", 3, "softmax")),
        ),
        (
            Call("mha", ("a", "b"), "", (roles,)),
            Call("mha", ("mha", "b"), "mha#2", (roles, ("use_causal_mask", True))),
            Call("add", ("mha#2", "a")),
            Call("ln", ("add",)),
            Call("gap", ("ln",)),
            Call("dense", ("gap",)),
        ),
        ("dense",),
    )
    report = run_comparison(graph, dtype=dtype, batch=6)
    assert report.passed, [(r.name, r.error) for r in report.rows if not r.passed]
    names = {r.name for r in report.rows}
    assert {"mha dL/dquery", "mha#2 dL/dquery", "mha#2 dL/dvalue"} <= names
