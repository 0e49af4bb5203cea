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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "arch",
    ["4-3-dropout0.0", "4-5-3-dropout0.0-dropout0.0", "4-5:relu-1:sigmoid-dropout0.0"],
)
def test_an_inactive_dropout_above_the_output_keeps_keras_logits(arch, dtype):
    """Keras's inactive Dropout returns its input tensor, which still carries the softmax's (or sigmoid's) logits,
    so the cross-entropy above it is computed from them: both sides fuse through it and every per-layer quantity
    agrees (the trace once reported a false FAIL at the dropout's dL/dA)."""
    from compare.harness import run_comparison

    loss = "binary_crossentropy" if arch.endswith(":sigmoid-dropout0.0") else "categorical_crossentropy"
    report = run_comparison(arch, batch=16, dtype=dtype, loss=loss, gradcheck_samples=0)
    assert report.passed, [(s.layer_name, s.quantity, s.error) for s in report.trace if not s.passed]
    backward = {(s.layer, s.quantity) for s in report.trace if s.phase == "backward"}
    top = len(Architecture.parse(arch).layers)
    assert (top, "dL/dA") not in backward  # no dL/dA above the logits
    assert any(q == "dL/dZ" for _, q in backward)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evaluate_through_a_trailing_dropout_is_computed_from_the_logits_as_keras_does(dtype):
    """In inference even Dropout(0.3) passes the softmax output through, logits attached: Keras's loss is then the
    log-softmax of the logits, not the log of a probability clipped at 1e-7. With logits far apart the two differ by
    tens, so a scratch evaluate that took the clipped path fails here."""
    import keras

    from keras_impl.model import evaluate_loss

    scratch = Sequential.from_architecture("3-4:softmax-dropout0.3", dtype=dtype, seed=2)
    kernel, bias = scratch.get_weights()
    scratch.set_weights([kernel * 60, bias])
    real = keras.Sequential(
        [
            keras.Input((3,), dtype=dtype),
            keras.layers.Dense(4, "softmax", dtype=dtype),
            keras.layers.Dropout(0.3, dtype=dtype),
        ]
    )
    real.set_weights(scratch.get_weights())
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 3)).astype(dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 10)]
    scratch.compile("sgd", "categorical_crossentropy")
    ours = scratch.evaluate(x, y)["loss"]
    theirs, _ = evaluate_loss(real, x, y, "categorical_crossentropy")
    assert theirs > 20  # beyond -log(1e-7) = 16.1: the clipped path could not give it
    # float32: the two log-softmax arrangements round differently (measured 1e-7 relative, a few ulps)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12 if dtype == "float64" else 1e-6)
