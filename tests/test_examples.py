"""The worked examples: each one's returned figures, checked against the seed posts and independent computations."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from compare.examples import EXAMPLES, run_example
from compare.examples.regression import hessian
from from_scratch.errors import BadInputError

#: Closed-form recurrences vs the examples' loops in float64: each of a few thousand steps rounds once or twice
#: (~1e-16 relative); measured <= 5e-15. 1e-13 is 20x that and far below any formula change (>= 1e-3).
RECURRENCE_RTOL = 1e-13

#: The seed post prints the gradient-descent end point to 9 significant digits ([6.11110793e-10 8.14814391e-10]):
#: half a unit in the last digit is <= 8e-9 relative.
SEED_PRINT_RTOL = 1e-8

#: Forward pass by NumPy matrices vs the hand computation with math.exp below: a few roundings each, ~1e-16.
FORWARD_TOL = 1e-14

#: softmax(z) vs softmax(z + 100): fl(z + 100) moves each logit by up to half the spacing of doubles at 110
#: (2^-47 ~ 7.1e-15), so the shifted differences z_i - z_max by up to 2^-46 = 1.4e-14, and each output by
#: |p_i (e_i - sum_j p_j e_j)| <= 2 * 1.4e-14 = 2.8e-14 (plus softmax's own few-ulp rounding). Measured 3.3e-15
#: at seed 0 and <= 3.6e-15 over 2000 seeds; 5e-14 is the derived bound with room for softmax's rounding.
SHIFT_TOL = 5e-14


def run(name, **options):
    """Run an example, collecting its printed lines; returns (figures, lines)."""
    lines = []
    return run_example(name, out=lines.append, **options), lines


class TestRegistry:
    def test_every_example_is_registered_with_a_description(self):
        expected = ["perceptron", "regression", "gradient_descent", "forward_pass", "softmax", "gradcheck"]
        assert list(EXAMPLES) == expected
        for name, example in EXAMPLES.items():
            assert example.name == name and example.description and callable(example.run)

    def test_unknown_name_lists_the_known_ones(self):
        with pytest.raises(BadInputError, match="unknown example 'xor'; known: forward_pass, gradcheck"):
            run_example("xor")

    def test_unknown_option_lists_the_accepted_ones(self):
        with pytest.raises(BadInputError, match=r"no option 'learning_rate'.*lr=0.02"):
            run_example("regression", learning_rate=0.1)

    def test_importing_examples_does_not_load_tensorflow(self):
        code = (
            "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "import compare.examples\n"
            "compare.examples.run_example('regression', out=lambda line: None)\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    @pytest.mark.parametrize("name", ["perceptron", "regression", "gradient_descent", "forward_pass", "softmax"])
    def test_figures_are_json_serialisable_and_steps_are_printed(self, name, tmp_path):
        options = {"plot_path": str(tmp_path / "a.png")} if name == "softmax" else {}
        figures, lines = run(name, **options)
        json.dumps(figures)
        assert lines


class TestPerceptron:
    def test_gate_truth_tables_are_exact(self):
        figures, _ = run("perceptron")
        # rows: (0,0), (0,1), (1,0), (1,1)
        assert figures["AND"] == [0, 0, 0, 1]
        assert figures["OR"] == [0, 1, 1, 1]
        assert figures["NAND"] == [1, 1, 1, 0]
        assert figures["XOR"] == [0, 1, 1, 0]

    def test_mlp_learns_xor(self):
        figures, _ = run("perceptron")
        mlp = figures["mlp"]
        assert mlp["learned"]
        assert mlp["first_correct_step"] <= mlp["steps"] < 5000
        np.testing.assert_allclose(mlp["predictions"], [0, 1, 1, 0], atol=0.1)


class TestRegression:
    def test_start_error_is_36(self):
        figures, _ = run("regression")
        start = figures["history"][0]
        assert (start["w"], start["b"], start["E"]) == (3.0, -8.0, 36.0)
        assert figures["E0"] == 36.0
        assert (start["dE_dw"], start["dE_db"]) == (36.0, 0.0)  # -6 * 3 + 6 * 9, and -6 + 6

    def test_first_step_by_hand(self):
        first = run("regression", lr=0.02)[0]["history"][1]
        # w = 3 - 0.02 * 36, b unchanged; y = (-1.16, 12.52); E = (8.16^2 + 0.48^2) / 2
        assert first["w"] == pytest.approx(2.28, rel=RECURRENCE_RTOL)
        assert first["b"] == -8.0
        assert first["E"] == pytest.approx(33.408, rel=RECURRENCE_RTOL)

    def test_matches_closed_form_and_converges_to_x_plus_4(self):
        lr, steps = 0.02, 3000
        figures, _ = run("regression", lr=lr, steps=steps)
        # theta_k - theta* = (I - lr H)^k (theta_0 - theta*), theta* = (1, 4)
        target = np.array([1.0, 4.0])
        expected = target + np.linalg.matrix_power(np.eye(2) - lr * hessian(np.array([[3.0], [9.0]])), steps) @ (
            np.array([3.0, -8.0]) - target
        )
        np.testing.assert_allclose([figures["w"], figures["b"]], expected, rtol=RECURRENCE_RTOL)
        np.testing.assert_allclose([figures["w"], figures["b"]], target, atol=1e-8)
        errors = [h["E"] for h in figures["history"]]
        assert all(np.diff(errors) <= 0)  # lr < 2 / lambda_max: E never increases

    def test_stated_learning_rate_bound(self):
        figures, _ = run("regression", steps=1)
        assert figures["lr_max"] == pytest.approx(2 / 91.607, rel=1e-4)
        assert figures["lr"] < figures["lr_max"]

    def test_diverges_above_the_bound(self):
        figures, _ = run("regression", lr=0.025, steps=100)
        assert figures["E"] > 1e6 * figures["E0"]


class TestGradientDescent:
    def test_analytic_end_point_is_0_8_to_the_100_times_start(self):
        figures, _ = run("gradient_descent")
        np.testing.assert_allclose(figures["analytic"], [3 * 0.8**100, 4 * 0.8**100], rtol=RECURRENCE_RTOL)

    def test_numerical_end_point_matches_the_seed_print(self):
        figures, _ = run("gradient_descent")
        np.testing.assert_allclose(figures["numerical"], [6.11110793e-10, 8.14814391e-10], rtol=SEED_PRINT_RTOL)


def sigmoid_by_hand(z):
    return 1 / (1 + math.exp(-z))


def layer_by_hand(inputs, weights, biases):
    """out_j = b_j + sum_i in_i W_ij, row by row with plain floats."""
    return [biases[j] + sum(inputs[i] * weights[i][j] for i in range(len(inputs))) for j in range(len(biases))]


W1, B1 = [[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]], [-0.3, -0.5, -0.8]
W2, B2 = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], [0.2, 0.6]
W3, B3 = [[0.1, 0.5], [0.6, 0.8]], [-0.3, -0.2]


class TestForwardPass:
    def test_correct_values_match_a_hand_computation(self):
        a1 = [sigmoid_by_hand(z) for z in layer_by_hand([1.0, 2.0], W1, B1)]
        a2 = [sigmoid_by_hand(z) for z in layer_by_hand(a1, W2, B2)]
        y = layer_by_hand(a2, W3, B3)
        correct = run("forward_pass")[0]["correct"]
        np.testing.assert_allclose(correct["a1"], a1, rtol=0, atol=FORWARD_TOL)
        np.testing.assert_allclose(correct["a2"], a2, rtol=0, atol=FORWARD_TOL)
        np.testing.assert_allclose(correct["a3"], y, rtol=0, atol=FORWARD_TOL)
        np.testing.assert_allclose(y, [0.249901, 0.786517], atol=1e-6)

    def test_seed_listing_is_reproduced(self):
        listing = run("forward_pass")[0]["seed_listing"]
        # y1 = (0.2, 0.6, 0.9); + b1 again = (-0.1, 0.1, 0.1); y2 = (0.27, 0.68); y3 = (0.135, 0.479)
        assert listing["printed1"] == [0.5, 0.6, 0.7]
        assert listing["printed2"] == [0.6, 0.7]
        np.testing.assert_allclose(listing["y3"], [0.135, 0.479], rtol=0, atol=FORWARD_TOL)

    def test_check_fails_on_the_seed_listing(self):
        """The same assertion that passes on the correct pass fails on the listing's output: off by 0.3075."""
        figures, _ = run("forward_pass")
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(figures["seed_listing"]["y3"], figures["correct"]["a3"], atol=FORWARD_TOL)
        assert figures["max_abs_difference"]["output"] == pytest.approx(0.307517, abs=1e-6)
        assert figures["max_abs_difference"]["layer1"] == pytest.approx(0.049834, abs=1e-6)  # the rounding alone


class TestSoftmax:
    def test_shift_invariance_and_plot(self, tmp_path):
        path = tmp_path / "activations.png"
        figures, _ = run("softmax", plot_path=str(path))
        assert figures["max_abs_difference"] <= SHIFT_TOL
        assert figures["exact_case_difference"] == 0.0  # z + 100 exact -> bit-identical outputs
        assert math.fsum(figures["softmax"]) == pytest.approx(1.0, abs=1e-15)
        assert figures["naive_overflows"]
        assert figures["plot_path"] == str(path)
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000

    def test_no_plot_without_a_path(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        figures, _ = run("softmax", plot_path=None)
        assert figures["plot_path"] is None and not list(tmp_path.iterdir())

    def test_missing_matplotlib_is_a_clear_error(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
        with pytest.raises(BadInputError, match=r"matplotlib.*backprop-parity\[plot\]"):
            run("softmax", plot_path=str(tmp_path / "a.png"))


class TestGradcheck:
    def test_backprop_numerical_and_keras_agree(self):
        figures, lines = run("gradcheck")
        json.dumps(figures)
        assert figures["gradcheck_passed"] and figures["gradcheck_error"] <= figures["gradcheck_tol"]
        assert figures["kink_margin"] > 1e-3  # no ReLU input within reach of h = 1e-5
        assert figures["keras_passed"] and figures["report"]["passed"]
        assert figures["keras_worst"] <= 1e-12  # compare.tolerances.F64_TOL
        assert any(line.startswith("PASS") for line in lines)
