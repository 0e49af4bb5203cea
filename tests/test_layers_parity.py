"""Layer twins that are not Keras's own layers, checked against the Keras layer they stand in for."""

import numpy as np
import pytest
import tensorflow as tf

import keras_impl  # noqa: F401 (pins the TensorFlow settings first)
from from_scratch import Architecture, Sequential
from keras_impl.model import FixedMaskDropout


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_fixed_mask_dropout_equals_keras_dropout_given_its_mask(dtype, rate):
    """keras.layers.Dropout(seed=s) draws its mask from TF's Philox generator. A fresh layer with the same seed,
    applied to ones, reveals that mask; fed it, FixedMaskDropout reproduces the output and the gradient bit for bit."""
    import keras

    x = tf.constant(np.random.default_rng(0).standard_normal((16, 9)), dtype=dtype)
    real = keras.layers.Dropout(rate, seed=7, dtype=dtype)
    probe = keras.layers.Dropout(rate, seed=7, dtype=dtype)
    mask = probe(tf.ones_like(x), training=True).numpy() != 0
    twin = FixedMaskDropout(rate, dtype=dtype)
    twin.mask = mask
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = real(x, training=True), twin(x, training=True)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(tape.gradient(la, x).numpy(), tape.gradient(lb, x).numpy())
    assert 0 < mask.mean() < 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scratch_dropout_with_the_same_mask_equals_keras_dropout(dtype):
    import keras

    rate = 0.3
    x = np.random.default_rng(1).standard_normal((12, 5)).astype(dtype)
    real = keras.layers.Dropout(rate, seed=3, dtype=dtype)
    probe = keras.layers.Dropout(rate, seed=3, dtype=dtype)
    mask = probe(tf.ones_like(x), training=True).numpy() != 0
    model = Sequential.from_architecture(Architecture.parse(f"5-dropout{rate}-2"), dtype=dtype, seed=0)
    layer = model.layers[0]
    layer.fix_mask(mask)
    np.testing.assert_array_equal(layer.forward(x, training=True), real(x, training=True).numpy())
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batchnorm_inference_uses_the_moving_statistics_after_a_step(dtype):
    """After one training pass the moving statistics moved identically; inference outputs then agree."""
    from compare.harness import compare_models

    arch = Architecture.parse("6-5-bn-3")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((10, 6)) * 3 + 1, np.eye(3)[rng.integers(0, 3, size=10)]
    scratch = Sequential.from_architecture(arch, dtype=dtype, seed=0)
    model = keras_impl.build_model(arch, dtype)
    report = compare_models(scratch, model, x, y, gradcheck_samples=0)
    assert report.passed
    ours = scratch.predict(x.astype(dtype))
    theirs = model(x.astype(dtype), training=False).numpy()
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert np.linalg.norm(ours - theirs) <= tol * np.linalg.norm(theirs)
    assert not np.array_equal(scratch.layers[1].moving_mean, np.zeros(5))
