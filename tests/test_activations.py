"""The activation pairs f / f' and softmax, checked against their definitions and finite differences."""

import numpy as np
import pytest

from from_scratch.activations import (
    ACTIVATIONS,
    log_softmax,
    relu,
    relu_grad,
    softmax,
    softmax_jacobian,
    softmax_vjp,
)
from from_scratch.errors import BadInputError
from from_scratch.gradcheck import numerical_gradient

#: Central differences with h = 1e-6 on smooth functions of order one: error ~1e-10.
FINITE_DIFF_TOL = 1e-8


class TestRelu:
    def test_mask_is_strictly_positive(self):
        z = np.array([[-2.0, -1e-300, 0.0, 1e-300, 3.0]])
        np.testing.assert_array_equal(relu_grad(z), [[0, 0, 0, 1, 1]])

    def test_derivative_at_exact_zero_is_zero_as_keras(self):
        assert relu_grad(np.zeros((2, 3))).sum() == 0

    def test_forward(self):
        np.testing.assert_array_equal(relu(np.array([[-1.0, 0.0, 2.5]])), [[0.0, 0.0, 2.5]])

    def test_backward_does_not_mutate_its_argument(self):
        z = np.array([[-1.0, 2.0]])
        dA = np.array([[5.0, 7.0]])
        before = dA.copy()
        dZ = ACTIVATIONS["relu"].backward(z, relu(z), dA)
        np.testing.assert_array_equal(dA, before)
        np.testing.assert_array_equal(dZ, [[0.0, 7.0]])


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.grad is not None and n != "step"])
def test_elementwise_derivative_matches_finite_differences(name):
    act = ACTIVATIONS[name]
    z = np.random.default_rng(1).uniform(-3, 3, size=(4, 5))
    z[np.abs(z) < 0.1] = 0.5  # away from any kink at 0; kinks are tested on their own
    numeric = numerical_gradient(lambda v: act.forward(v).sum(), z, h=1e-6)
    np.testing.assert_allclose(act.grad(z), numeric, atol=FINITE_DIFF_TOL)


class TestSoftmax:
    def test_rows_sum_to_one(self):
        p = softmax(np.random.default_rng(0).normal(size=(5, 7)))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-15)

    def test_shift_invariance(self):
        z = np.random.default_rng(0).normal(size=(3, 4))
        np.testing.assert_allclose(softmax(z + 100.0), softmax(z), rtol=1e-13)

    def test_huge_logits_give_no_nan(self):
        z = np.array([[1000.0, 0.0, -1000.0]])
        np.testing.assert_array_equal(softmax(z), [[1.0, 0.0, 0.0]])
        assert np.all(np.isfinite(log_softmax(z)))
        assert log_softmax(z)[0, 2] == -2000.0

    def test_jacobian_is_diag_p_minus_ppT_against_finite_differences(self):
        z = np.array([0.3, -1.2, 2.0, 0.1])
        p = softmax(z[None])[0]
        numeric = np.stack([numerical_gradient(lambda v, i=i: softmax(v[None])[0, i], z, h=1e-6) for i in range(4)])
        np.testing.assert_allclose(softmax_jacobian(p), numeric, atol=FINITE_DIFF_TOL)
        # the two cases of the derivation: i == j gives p_i (1 - p_i), i != j gives -p_i p_j
        np.testing.assert_allclose(softmax_jacobian(p)[1, 1], p[1] * (1 - p[1]))
        np.testing.assert_allclose(softmax_jacobian(p)[0, 2], -p[0] * p[2])

    def test_vjp_equals_jacobian_product(self):
        rng = np.random.default_rng(2)
        z, dA = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
        p = softmax(z)
        expected = np.stack([dA[i] @ softmax_jacobian(p[i]) for i in range(3)])
        np.testing.assert_allclose(softmax_vjp(p, dA), expected, rtol=1e-13, atol=1e-15)

    def test_fused_cross_entropy_gradient_is_p_minus_y(self):
        """d/dZ of -sum_k y_k log softmax(z)_k is p - y (one sample, one-hot y), by finite differences."""
        z = np.array([0.5, -0.3, 1.7])
        y = np.array([0.0, 1.0, 0.0])
        numeric = numerical_gradient(lambda v: -(y * log_softmax(v[None])[0]).sum(), z, h=1e-6)
        np.testing.assert_allclose(softmax(z[None])[0] - y, numeric, atol=FINITE_DIFF_TOL)


def test_step_forward_and_its_refused_derivative():
    z = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(ACTIVATIONS["step"].forward(z), [[0.0, 0.0, 1.0]])
    with pytest.raises(BadInputError, match="activation 'step' has no useful derivative"):
        ACTIVATIONS["step"].backward(z, z, np.ones_like(z))


KINKS = sorted(name for name, entry in ACTIVATIONS.items() if entry.kink_value is not None)


@pytest.mark.parametrize("name", KINKS)
def test_stated_kink_value(name):
    assert ACTIVATIONS[name].grad(np.zeros((1, 1)))[0, 0] == ACTIVATIONS[name].kink_value
