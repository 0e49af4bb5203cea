"""The layer protocol and the declarations: every registry entry says on itself what the harness needs."""

import numpy as np
import pytest

from compare.terms import declares_terms
from from_scratch import ACTIVATIONS, LAYERS, LOSSES, BadInputError, Dense, Dropout, Layer, Sequential
from from_scratch.arch import LayerSpec
from from_scratch.graph import Input, Model
from from_scratch.graph_arch import spec_output_shape
from from_scratch.losses import get_loss
from from_scratch.merge import MERGE_LAYERS

TARGET_KINDS = {"onehot", "labels", "binary", "regression"}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_declares_its_kink_and_gradient(name):
    entry = ACTIVATIONS[name]
    z = np.linspace(-3, 3, 7)[None, :]
    if not entry.differentiable:
        assert entry.kink_value is None
        return
    if entry.grad is None:  # not elementwise (softmax): backward is its vector-Jacobian product
        assert entry.kink_value is None and not entry.kinked
        return
    assert entry.kink_value is not None, "an elementwise activation states f'(0)"
    assert entry.grad(np.zeros((1, 1)))[0, 0] == entry.kink_value
    assert np.all(entry.grad_magnitude(z) >= np.abs(entry.grad(z)) * (1 - 1e-15))
    if entry.kinked:
        assert entry.grad(np.array([[-1e-9]]))[0, 0] != entry.grad(np.array([[1e-9]]))[0, 0]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_declares_its_targets_output_and_fused_terms(name):
    loss = get_loss(name)
    assert loss.target_kind in TARGET_KINDS
    assert loss.default_output in ACTIVATIONS
    if loss.fuses_with:
        terms = loss.fused_terms(np.full((2, 3), 0.5), np.full((2, 3), 0.25))
        assert terms.shape == (2, 3) and np.all(terms > 0)
    else:
        with pytest.raises(NotImplementedError):
            loss.fused_terms(np.ones((2, 3)), np.ones((2, 3)))


SPECS = {
    "dense": LayerSpec("dense", 3, "relu"),
    "dropout": LayerSpec("dropout", options={"rate": 0.5}),
    "batch_normalization": LayerSpec("batch_normalization"),
    "layer_normalization": LayerSpec("layer_normalization"),
    "conv2d": LayerSpec(
        "conv2d", 2, "relu", {"kernel_size": (2, 2), "padding": "same", "strides": (1, 1), "dilation_rate": (1, 1)}
    ),
    "max_pooling2d": LayerSpec(
        "max_pooling2d", None, "linear", {"pool_size": (2, 2), "padding": "valid", "strides": (1, 1)}
    ),
    "average_pooling2d": LayerSpec(
        "average_pooling2d", None, "linear", {"pool_size": (2, 2), "padding": "same", "strides": (2, 2)}
    ),
    "global_average_pooling2d": LayerSpec("global_average_pooling2d"),
    "flatten": LayerSpec("flatten"),
    "reshape": LayerSpec("reshape", None, "linear", {"target_shape": (2, 3)}),
    "simple_rnn": LayerSpec("simple_rnn", 3, "relu", {"return_sequences": True}),
    "lstm": LayerSpec("lstm", 3, "linear", {"return_sequences": False}),
    "gru": LayerSpec("gru", 3, "linear", {"reset_after": False, "return_sequences": True}),
    "embedding": LayerSpec("embedding", 2, "linear", {"input_dim": 5}),
    **{kind: cls().spec() for kind, cls in MERGE_LAYERS.items()},  # every merge, at its defaults
    "zero_padding2d": LayerSpec("zero_padding2d", None, "linear", {"padding": ((0, 1), (2, 1))}),
    "depthwise_conv2d": LayerSpec(
        "depthwise_conv2d",
        None,
        "relu",
        {"kernel_size": (2, 2), "padding": "same", "strides": (1, 1), "dilation_rate": (1, 1), "depth_multiplier": 2},
    ),
    "activation": LayerSpec("activation", None, "tanh"),
    "re_lu": LayerSpec("re_lu", None, "linear", {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}),
    "multi_head_attention": LayerSpec(
        "multi_head_attention",
        None,
        "linear",
        {"num_heads": 2, "key_dim": 3, "value_dim": None, "dropout": 0.1, "use_bias": True, "output_shape": None},
    ),
    "global_average_pooling1d": LayerSpec("global_average_pooling1d"),
    "position_embedding": LayerSpec("position_embedding", None, "linear", {"sequence_length": 3}),
}

#: The input shape each kind is built for here: features for the MLP layers, sequences (T, F) for the recurrent
#: ones, index sequences (T,) for the Embedding, sequences (T, D) for the encoder's pooling and position table, a small
#: image for the others.
SHAPES = {
    "dense": (4,),
    "dropout": (4,),
    "batch_normalization": (4,),
    "layer_normalization": (3, 4),
    "reshape": (3, 2),
    "simple_rnn": (4, 2),
    "lstm": (4, 2),
    "gru": (4, 2),
    "embedding": (6,),
    "multi_head_attention": (3, 4),  # self-attention: query and value one sequence
    "global_average_pooling1d": (3, 4),
    "position_embedding": (3, 4),
}

#: The kinds that declare no term magnitudes: the harness measures their float64 errors plain norm-relative and
#: their float32 errors against Keras's own float32 error, the protocol's layer-agnostic rule (docs/derivations.md,
#: section 22). Every other registry layer must declare them.
WITHOUT_TERMS = {"simple_rnn", "lstm", "gru", "embedding", "layer_normalization"}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_every_layer_declares_what_the_harness_needs(kind):
    assert set(SPECS) == set(LAYERS)
    layer = LAYERS[kind].from_spec(SPECS[kind])
    assert isinstance(layer, Layer) and layer.kind == kind
    shape = SHAPES.get(kind, (3, 3, 2))
    if layer.several_inputs:  # a merge (or attention): called on two tensors of one shape
        shape = SHAPES.get(kind, (4,))
        a, b = Input(shape), Input(shape)
        model = Model([a, b], layer([a, b]))
        given = [shape, shape]
    else:
        model = Sequential([layer], input_shape=shape)
        given = shape
    assert len(layer.param_names()) == len(layer.params) == len(layer.param_trainable())
    assert declares_terms(model) == (kind not in WITHOUT_TERMS)
    assert spec_output_shape(layer.spec(), given, kind) == model.output_shape  # the grammar's shape, built
    if not layer.deterministic:
        assert callable(layer.fix_mask) and callable(layer.draw_mask)
    assert LAYERS[kind].from_spec(layer.spec()).spec() == layer.spec()


def test_dense_term_magnitudes_on_a_sequence_are_its_rows_flattened():
    """A Dense per time step (N, T, D) computes, and declares the term magnitudes of, the (N*T, D) rows it acts on."""
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 2))
    seq = Sequential([Dense(2, "tanh")], input_shape=(4, 5), seed=0).layers[0]
    rows = Sequential([Dense(2, "tanh")], input_shape=(5,), seed=0).layers[0]
    np.testing.assert_array_equal(seq.forward(x).reshape(12, 2), rows.forward(x.reshape(12, 5)))
    np.testing.assert_array_equal(seq.backward(g).reshape(12, 5), rows.backward(g.reshape(12, 2)))
    for a, b in zip(seq.grads, rows.grads):
        np.testing.assert_array_equal(a, b)
    forward = seq.forward_terms(np.abs(x))
    assert forward["A"].shape == (3, 4, 2)
    np.testing.assert_array_equal(forward["A"].reshape(12, 2), rows.forward_terms(np.abs(x).reshape(12, 5))["A"])
    params, dx, extra = seq.backward_terms(np.abs(x), np.abs(g))
    params_rows, dx_rows, _ = rows.backward_terms(np.abs(x).reshape(12, 5), np.abs(g).reshape(12, 2))
    assert dx.shape == x.shape and extra["dZ"].shape == g.shape
    np.testing.assert_array_equal(dx.reshape(12, 5), dx_rows)
    for a, b in zip(params, params_rows):
        np.testing.assert_array_equal(a, b)


class Twice(Layer):
    def forward(self, x, training=False):
        return 2 * x

    def backward(self, dy):
        return 2 * dy


def test_sequential_takes_a_users_layer_and_an_input_shape():
    model = Sequential([Twice(), Dense(3)], input_shape=(4,), seed=0)
    assert model.layers[0].name == "twice" and model.output_shape == (3,)
    x = np.ones((2, 4))
    result = model.backward_pass(x, np.eye(3)[[0, 1]], "mean_squared_error")
    assert result.records[0]["A"].shape == (2, 4) and "dA" in result.records[0]
    np.testing.assert_array_equal(result.records[1]["Z"], model.layers[1].Z)
    assert Sequential([Twice()], input_dim=4).input_shape == (4,)


def test_shape_and_type_errors_name_the_problem():
    with pytest.raises(BadInputError, match="give exactly one of input_shape"):
        Sequential([Twice()])
    with pytest.raises(BadInputError, match=r"input_shape must be a positive integer or a tuple"):
        Sequential([Twice()], input_shape=(4, 0))
    assert Sequential([Dense(3)], input_shape=(2, 5)).output_shape == (2, 3)  # a Dense per time step, as Keras's
    with pytest.raises(BadInputError, match="not registry layers"):
        _ = Sequential([Twice()], input_shape=(4,)).architecture


def test_astype_copies_layers_weights_and_masks_exactly():
    model = Sequential([Dense(5), Dropout(0.5), Dense(2)], input_shape=(3,), dtype="float32", seed=1)
    mask = model.layers[1].draw_mask((4, 5))
    model.layers[1].fix_mask(mask)
    twin = model.astype("float64")
    assert twin.dtype == np.float64 and twin.layers[0] is not model.layers[0]
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a.astype(np.float64), b)
    np.testing.assert_array_equal(twin.layers[1].fixed_mask, mask)
    with pytest.raises(BadInputError, match="does not fit a float32 model without rounding"):
        twin.astype("float32")


def test_a_pass_through_layer_with_parameters_is_refused():
    """A layer that returns its input unchanged keeps Keras's logits attached, and the fused path never calls its
    backward: a parameter there would have no gradient, so the declaration is refused at build."""

    class Leaky(Layer):
        def build(self, input_shape, dtype, rng):
            self.w = np.zeros(1, dtype)
            return input_shape

        @property
        def params(self):
            return [self.w]

        def passes_through(self, training):
            return not training

        def forward(self, x, training=False):
            return x

    with pytest.raises(BadInputError, match="layer 'leaky': passes_through\\(\\) is True but the layer has 1 param"):
        Sequential([Dense(3, "softmax"), Leaky()], input_dim=4)
    assert Dropout(0.5).passes_through(False) and not Dropout(0.5).passes_through(True)
    assert Dropout(0.0).passes_through(True)
