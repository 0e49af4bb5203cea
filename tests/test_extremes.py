"""Hard numbers: huge and tiny logits, batches of 1 and 4096, one hidden unit, dead ReLU layers, determinism."""

import numpy as np
import pytest

import keras_impl
from compare.data import spirals
from compare.harness import compare_models
from from_scratch import Architecture, Sequential

DTYPES = ["float64", "float32"]


def batch(n, d, k, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * scale, np.eye(k)[rng.integers(0, k, size=n)]


def compare(arch, x, y, dtype, weights=None, loss="categorical_crossentropy"):
    description = Architecture.parse(arch)
    scratch = Sequential.from_architecture(description, dtype=dtype, seed=1)
    if weights is not None:
        scratch.set_weights(weights(scratch.get_weights()))
    return scratch, compare_models(scratch, keras_impl.build_model(description, dtype), x, y, loss, gradcheck_samples=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logit_scale", [1e-3, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4])
@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_logit_scales_from_1e_minus_3_to_1e4(dtype, logit_scale, loss):
    x, y = batch(16, 10, 5, seed=6)
    if loss.startswith("sparse"):
        y = y.argmax(axis=1).astype(float)

    def scaled(w):
        w[-2] = w[-2] * np.asarray(logit_scale, dtype=w[-2].dtype)
        return w

    scratch, report = compare("10-8-5", x, y, dtype, scaled, loss)
    loss_value, grads = scratch.loss_and_gradients(x, y, loss)
    assert np.isfinite(loss_value) and all(np.all(np.isfinite(g)) for g in grads)
    assert report.passed, report.verdict()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 4096])
def test_batches_of_1_and_4096(dtype, n):
    x, y = batch(n, 12, 4, seed=n)
    _, report = compare("12-16-8-4", x, y, dtype)
    assert report.passed, report.verdict()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_single_hidden_unit(dtype):
    x, y = batch(20, 6, 3, seed=2)
    _, report = compare("6-1-3", x, y, dtype)
    assert report.passed, report.verdict()


@pytest.mark.parametrize("dtype", DTYPES)
def test_dead_relu_layer_gives_all_zero_gradients_on_both_sides(dtype):
    """A bias of -100 kills every unit of the first layer: everything below it gets exactly zero gradient."""
    x, y = batch(10, 5, 3, seed=3)

    def dead(w):
        w[1] = np.full_like(w[1], -100.0)
        return w

    scratch, report = compare("5-4-3", x, y, dtype, dead)
    assert report.passed, report.verdict()
    rows = {row.name: row for row in report.rows}
    assert not scratch.layers[0].dW.any() and not scratch.layers[0].db.any()
    assert rows["grad dense/kernel"].max_abs == 0 and rows["grad input"].max_abs == 0


def test_same_seed_same_training_bit_for_bit():
    x, y = spirals(n=90, seed=0)

    def train():
        m = Sequential.from_architecture(Architecture.parse("2-8:tanh-3"), seed=11)
        m.compile("adam", "categorical_crossentropy")
        m.fit(x, y, batch_size=16, epochs=3)
        return m.get_weights()

    assert all(np.array_equal(a, b) for a, b in zip(train(), train()))
