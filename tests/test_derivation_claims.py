"""Statements of docs/derivations.md checked by running them: a formula in the text is evaluated as the text writes
it and compared with what the code computes, so that a wrong estimate or a wrong matrix form in the reference fails
a test, not only a reader.

- 21.6: the one-sided differences of `slopes` on a smooth f differ by D+ - D- = -(h^3 / 2) f'''' + O(h^5) (the h^2
  terms cancel), exactly 0 on a cubic; evaluated in exact rational arithmetic on the values of f, so rounding of f
  cannot hide or fake the estimate.
- 22.1: X_m, H_prev_m and dZ_m are the (N, T, .) arrays reshaped to (NT, .) rows in (n, t) order, and
  dW = X_m^T dZ_m, dU = H_prev_m^T dZ_m, db = dZ_m^T 1, dX = dZ W^T are the recurrent backward's gradients; the
  stacked form [h_-1; ...; h_T-2], rows in (t, n) order, is not.
"""

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

from compare.tolerances import F64_TOL, norm_rel_error
from from_scratch import Sequential
from from_scratch.gradcheck import slopes
from from_scratch.recurrent import SimpleRNN

#: Digits kept in the Decimal evaluation of exp: 60, far below anything a difference at h >= 2^-10 can show.
EXP_DIGITS = 60


def exact_exp(a: int):
    """v -> exp(a v) as an exact Fraction of its EXP_DIGITS-digit Decimal value (v a float: exact in Decimal)."""

    def f(v) -> Fraction:
        with localcontext() as context:
            context.prec = EXP_DIGITS
            return Fraction((Decimal(a) * Decimal(float(v))).exp())

    return f


def power(k: int):
    """v -> v^k, exactly."""
    return lambda v: Fraction(float(v)) ** k


def one_sided(f, x: float, h: float) -> tuple[float, float]:
    """(D-, D+) as gradcheck.slopes computes them, fed exact values of f. x and h are dyadic (h a power of two, x a
    float of the same binade as its neighbours x +- 2h), so the abscissae x + k h slopes forms are exact too."""
    left, _, right, _ = slopes(f, np.float64(x), f(x), h)
    return left, right


# f, its fourth derivative, x: exp at 0.7 (the issue's case), exp(-2x) (another scale and sign), and x^5.
SMOOTH = {
    "exp_at_0.7": (exact_exp(1), lambda x: Fraction(exact_exp(1)(x)), 0.7),
    "exp_minus_2x_at_0.3": (exact_exp(-2), lambda x: 16 * exact_exp(-2)(x), 0.3),
    "x5_at_1.3": (power(5), lambda x: 120 * Fraction(x), 1.3),
}


@pytest.mark.parametrize("key", list(SMOOTH))
@pytest.mark.parametrize("log2_h", [-7, -10])
def test_the_one_sided_difference_of_a_smooth_function_is_half_h_cubed_f4(key, log2_h):
    """derivations 21.6: |D+ - D-| ~ (1/2) h^3 |f''''|, the ratio to that leading term 1 + O(h^2); the estimate the
    text used to give, (2/3) h^2 |f'''|, is off by a factor of about 1 / h (1e2 to 1e3 here)."""
    f, fourth, x = SMOOTH[key]
    h = 2.0**log2_h
    left, right = one_sided(f, x, h)
    stated = float(Fraction(h) ** 3 / 2 * fourth(x))
    ratio = abs(right - left) / abs(stated)
    # D+- are rounded to float64 once each (slopes divides by the float 2h): 2 ulps of |f'| ~ 1e-15 against
    # |D+ - D-| >= 1e-9 at h = 2^-10; the next term of the expansion is O(h^2) relative, 1e-4 at h = 2^-7.
    assert abs(ratio - 1) < 1e-3, (key, h, right - left, stated)
    assert np.sign(right - left) == -np.sign(fourth(x))  # D+ - D- = -(h^3 / 2) f'''': the sign too


def test_the_issue_figures_for_exp_at_0_7():
    """At h = 1e-5 on exp at 0.7 the leading term (1/2) h^3 e^0.7 is 1.0069e-15, where (2/3) h^2 e^0.7 = 1.34e-10:
    what a false kink needs is |f''''| > 2e9 |f'| with KINK_JUMP = 1e-6, not |f'''| > 1e4 |f'|."""
    e = float(exact_exp(1)(0.7))
    assert 0.5 * 1e-15 * e == pytest.approx(1.0069e-15, rel=1e-4)
    assert 2 / 3 * 1e-10 * e == pytest.approx(1.3425e-10, rel=1e-4)
    from from_scratch.gradcheck import GRADCHECK_STEP, KINK_JUMP

    assert KINK_JUMP / (0.5 * GRADCHECK_STEP**3) == pytest.approx(2e9)


@pytest.mark.parametrize("x", [0.7, -1.3, 2.5])
@pytest.mark.parametrize("log2_h", [-3, -7, -17])
def test_a_cubic_gives_equal_one_sided_differences(x, log2_h):
    """f = x^3 has f'''' = 0: D+ and D- are both 3x^2 - 2h^2 exactly, so their difference is 0 (the text used to
    predict (2/3) h^2 |f'''| = 4 h^2, 4e-4 at h = 1e-2), whatever h."""
    h = 2.0**log2_h
    left, right = one_sided(power(3), x, h)
    assert right - left == 0.0
    expected = float(3 * Fraction(x) ** 2 - 2 * Fraction(h) ** 2)
    assert left == right == pytest.approx(expected, rel=4e-16)


# ----- 22.1: backpropagation through time in matrix form -----------------------------------------------------------
def stated_bptt(x: np.ndarray, layer: SimpleRNN, dY: np.ndarray) -> dict[str, np.ndarray]:
    """Section 22.1 as written, for a tanh SimpleRNN with return_sequences: the forward loop, dh_t = dY_t +
    dz_{t+1} U^T (dz_T = 0), dz_t = f'(z_t) dh_t, then the matrix forms
        H_prev[:, t] = h_{t-1} (N, T, u),  X_m = X.reshape(NT, F),  H_prev_m = H_prev.reshape(NT, u),
        dZ_m = dZ.reshape(NT, u),  dW = X_m^T dZ_m,  dU = H_prev_m^T dZ_m,  db = dZ_m^T 1,  dX = dZ W^T
    and, for contrast, dU from the stacked [h_-1; ...; h_T-2] (rows in (t, n) order) against the same dZ_m."""
    n, t_len, features = x.shape
    w, u_mat, b = layer.W, layer.U, layer.b
    units = u_mat.shape[0]
    h = np.zeros((n, units))
    hs, zs = [], []
    for t in range(t_len):
        z = x[:, t] @ w + b + h @ u_mat
        h = np.tanh(z)
        zs.append(z)
        hs.append(h)
    dz = np.zeros((n, t_len, units))
    carried = np.zeros((n, units))
    for t in reversed(range(t_len)):
        dh = dY[:, t] + carried
        dz[:, t] = (1 - hs[t] ** 2) * dh
        carried = dz[:, t] @ u_mat.T
    h_prev = np.stack([np.zeros((n, units)), *hs[:-1]], axis=1)  # (N, T, u)
    x_m, h_prev_m, dz_m = x.reshape(n * t_len, features), h_prev.reshape(n * t_len, units), dz.reshape(-1, units)
    stacked = np.concatenate([np.zeros((n, units)), *hs[:-1]], axis=0)  # [h_-1; ...; h_T-2]: rows (t, n)
    return {
        "dW": x_m.T @ dz_m,
        "dU": h_prev_m.T @ dz_m,
        "db": dz_m.T @ np.ones(n * t_len),
        "dX": dz @ w.T,
        "dU_stacked": stacked.T @ dz_m,
        "dW_sum": sum(x[:, t].T @ dz[:, t] for t in range(t_len)),
        "dU_sum": sum(h_prev[:, t].T @ dz[:, t] for t in range(t_len)),
    }


@pytest.mark.parametrize("n, t_len, features, units", [(3, 4, 2, 3), (2, 5, 3, 2)])
def test_the_stated_bptt_matrix_forms_are_the_codes(n, t_len, features, units):
    """The matrix forms of 22.1, built as the text states them, equal the step sums and the code's recurrent
    backward (from_scratch.recurrent) to float64 rounding; the (t, n)-ordered stack is a different, wrong dU."""
    rng = np.random.default_rng(n * 10 + t_len)
    layer = SimpleRNN(units, "tanh", return_sequences=True)
    Sequential([layer], input_shape=(t_len, features))
    layer.W[...] = rng.standard_normal(layer.W.shape)
    layer.U[...] = 0.5 * rng.standard_normal(layer.U.shape)
    layer.b[...] = rng.standard_normal(layer.b.shape)
    x = rng.standard_normal((n, t_len, features))
    dY = rng.standard_normal((n, t_len, units))
    stated = stated_bptt(x, layer, dY)
    layer.forward(x, training=True)
    dX = layer.backward(dY)
    for name, ours in (("dW", layer.dW), ("dU", layer.dU), ("db", layer.db), ("dX", dX)):
        assert norm_rel_error(stated[name], ours) <= F64_TOL, name
    assert norm_rel_error(stated["dW_sum"], stated["dW"]) <= F64_TOL
    assert norm_rel_error(stated["dU_sum"], stated["dU"]) <= F64_TOL
    assert norm_rel_error(stated["dU_stacked"], layer.dU) > 0.1  # the (t, n) stack pairs the wrong rows
