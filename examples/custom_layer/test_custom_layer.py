"""The pytest way in: `pytest examples/custom_layer` (the `parity` fixture comes with backprop-parity)."""

import importlib.util
from pathlib import Path

import pytest


def load(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


swish, layer_norm, merges, attention = load("swish"), load("layer_norm"), load("merges"), load("attention")


def test_swish_matches_keras_silu(parity):
    parity(swish.Swish(), swish.keras_swish(), input_shape=(7,))


def test_layer_norm_matches_keras(parity):
    parity(layer_norm.LayerNorm(), layer_norm.keras_layer_norm(), input_shape=(6,))


def test_broken_swish_is_caught(parity):
    with pytest.raises(pytest.fail.Exception, match="first differs at dL/dX"):
        parity(swish.BrokenSwish(), swish.keras_swish(), input_shape=(7,))


def test_weighted_sum_of_two_inputs_matches_keras(parity):
    parity(merges.WeightedSum(), merges.keras_weighted_sum(), input_shape=[(7,), (7,)])


def test_broken_multiply_is_caught_at_its_second_input(parity):
    with pytest.raises(pytest.fail.Exception, match="first differs at dL/dX \\(input input_layer_1\\)"):
        parity(merges.BrokenMultiply(), merges.keras_multiply(), input_shape=[(7,), (7,)])


def test_einsum_attention_with_a_causal_mask_matches_keras(parity):
    parity(
        attention.EinsumAttention(2, 3),
        attention.keras_attention(),
        input_shape=[(6, 8), (5, 8), (6, 5)],
        roles=("query", "value", "attention_mask"),
        call_options={"use_causal_mask": True},
        batch=4,
    )


def test_unscaled_attention_is_caught_at_the_output(parity):
    with pytest.raises(pytest.fail.Exception, match="forward first differs"):
        parity(attention.UnscaledAttention(2, 3), attention.keras_attention(), input_shape=[(6, 8), (5, 8)], batch=4)
