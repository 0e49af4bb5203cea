"""The scratch model on its own: layout, initialisation, weights I/O, backprop against central differences."""

import subprocess
import sys

import numpy as np
import pytest

from from_scratch import Architecture, BadInputError, Dense, Sequential, gradcheck
from from_scratch.losses import CategoricalCrossentropy

#: float64 backprop vs central differences (h = 1e-5): truncation + rounding ~3e-11 absolute, checked relative to
#: the largest sampled gradient entry.
GRADCHECK_TOL = 1e-6


def small_batch(n=6, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), np.eye(k)[rng.integers(0, k, size=n)]


def test_from_scratch_imports_without_tensorflow():
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "import from_scratch, from_scratch.gradcheck\n"
        "assert 'tensorflow' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class TestSequential:
    def test_weights_in_keras_order_and_layout(self):
        model = Sequential([Dense(4, "relu"), Dense(3, "softmax")], input_dim=5, seed=0)
        shapes = [w.shape for w in model.get_weights()]
        assert shapes == [(5, 4), (4,), (4, 3), (3,)]

    def test_glorot_uniform_kernel_and_zero_bias(self):
        model = Sequential([Dense(200, "relu")], input_dim=300, seed=0)
        w, b = model.get_weights()
        limit = np.sqrt(6 / 500)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
        assert not b.any()

    def test_same_seed_same_weights_bit_for_bit(self):
        arch = Architecture.parse("8-4-3")
        a = Sequential.from_architecture(arch, seed=7).get_weights()
        b = Sequential.from_architecture(arch, seed=7).get_weights()
        assert all(np.array_equal(x, y) for x, y in zip(a, b))

    def test_set_weights_round_trip(self):
        model = Sequential.from_architecture(Architecture.parse("5-4-3"), seed=1)
        new = [w + 1.0 for w in model.get_weights()]
        model.set_weights(new)
        assert all(np.array_equal(x, y) for x, y in zip(model.get_weights(), new))

    def test_set_weights_wrong_shape_names_layer_and_shapes(self):
        model = Sequential.from_architecture(Architecture.parse("5-4-3"), seed=1)
        weights = model.get_weights()
        weights[2] = np.zeros((3, 4))
        with pytest.raises(BadInputError, match=r"layer 'dense_1' parameter 0: expected shape \(4, 3\), got \(3, 4\)"):
            model.set_weights(weights)

    def test_float64_weights_are_not_rounded_into_float32_model(self):
        model = Sequential.from_architecture(Architecture.parse("5-4-3"), dtype="float32", seed=1)
        weights = [w.astype(np.float64) for w in model.get_weights()]
        with pytest.raises(BadInputError, match="float64 does not fit a float32 model"):
            model.set_weights(weights)

    def test_predict_shape_and_rows_sum_to_one(self):
        model = Sequential.from_architecture(Architecture.parse("5-4-3"), seed=1)
        x, _ = small_batch()
        p = model.predict(x)
        assert p.shape == (6, 3)
        np.testing.assert_allclose(p.sum(axis=1), 1.0)

    def test_float32_model_stays_float32(self):
        model = Sequential.from_architecture(Architecture.parse("5-4-3"), dtype="float32", seed=1)
        x, y = small_batch()
        loss, grads = model.loss_and_gradients(x, y)
        assert all(g.dtype == np.float32 for g in grads)
        assert model.predict(x).dtype == np.float32

    def test_fused_output_gradient_is_p_minus_y_over_n(self):
        model = Sequential.from_architecture(Architecture.parse("5-3"), seed=1)
        x, y = small_batch()
        result = model.backward_pass(x, y, "categorical_crossentropy")
        assert result.fused
        np.testing.assert_allclose(model.layers[-1].dZ, (result.output - y) / len(x), rtol=1e-15)


@pytest.mark.parametrize("arch", ["5-3", "5-4-3", "5-7-6-4-3", "5-1-3", "5-4:tanh-3", "5-4:sigmoid-3:linear"])
def test_backprop_matches_central_differences(arch):
    model = Sequential.from_architecture(Architecture.parse(arch), seed=3)
    x, y = small_batch()
    loss = "mean_squared_error" if arch.endswith("linear") else "categorical_crossentropy"
    points = gradcheck(model, x, y, loss, n_samples=6)
    analytic = np.array([p.analytic for p in points])
    numeric = np.array([p.numerical for p in points])
    assert np.abs(analytic - numeric).max() <= GRADCHECK_TOL * np.abs(analytic).max()


def test_gradcheck_catches_a_wrong_backward():
    """A dropped factor of 2 in one layer's dW must be caught by the numerical witness."""

    class HalfDense(Dense):
        def backward_from_z(self, dZ, input_grad=True):
            dX = super().backward_from_z(dZ)
            self.dW = self.dW / 2
            return dX

    model = Sequential([HalfDense(4, "relu"), Dense(3, "softmax")], input_dim=5, seed=3)
    x, y = small_batch()
    points = [p for p in gradcheck(model, x, y, n_samples=6) if p.param == 0]
    assert max(p.rel_error for p in points) > 0.4


def test_probability_path_cross_entropy_gradient_matches_central_differences():
    """Plain probabilities (no softmax layer): renormalise, clip, log; the chain through the renormalisation."""
    loss = CategoricalCrossentropy()
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 1.0, size=(4, 3))
    y = np.eye(3)[[0, 2, 1, 1]]
    from from_scratch.gradcheck import numerical_gradient

    numeric = numerical_gradient(lambda v: loss(y, v), p, h=1e-6)
    np.testing.assert_allclose(loss.gradient(y, p), numeric, atol=1e-8)


def test_regularizer_factors_are_rounded_to_float32_as_keras():
    from from_scratch.layers import Regularizer

    reg = Regularizer(l1=0.01, l2=0.01)
    w = np.array([[1.0, -2.0]])
    assert reg.penalty(w) == float(np.float32(0.01)) * 3 + float(np.float32(0.01)) * 5
    np.testing.assert_array_equal(reg.grad(w), float(np.float32(0.01)) * np.sign(w) + 2 * float(np.float32(0.01)) * w)
