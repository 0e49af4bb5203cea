"""The numerical witness where the loss has kinks: one-sided derivatives measured to second order, the analytic value
held between them, points that differences cannot decide counted rather than judged, and the witness still failing
on a wrong gradient. The digits CNNs are where kinks are exact and frequent (windows of zeros under a zero bias)."""

import re

import numpy as np
import pytest

from compare import harness
from compare.harness import run_comparison
from from_scratch.gradcheck import GRADCHECK_STEP, GradcheckPoint

#: A ReLU kink at 0 plus smooth curvature on both sides: D- = f'(0-) = 1, D+ = f'(0+) = 3, and f'' = 4 on both
#: sides, so a first-order chord would be off by h f''/2 = 2e-5 while the second-order formulas are exact up to
#: rounding (f is quadratic on each side).
KINKED = {"f": lambda t: float(t + 2 * max(t, 0) + 2 * t * t), "left": 1.0, "right": 3.0}

#: The second-order one-sided derivatives of a piecewise quadratic: exact up to rounding, a few eps |f| / h.
ROUNDING = 1e-9


def point(analytic: float, f=KINKED["f"], x: float = 0.0) -> GradcheckPoint:
    return GradcheckPoint.measure(0, (0,), analytic, f, np.array(x), f(x), GRADCHECK_STEP)


def test_one_sided_derivatives_are_second_order():
    p = point(1.0)
    assert abs(p.left - KINKED["left"]) < ROUNDING and abs(p.right - KINKED["right"]) < ROUNDING
    assert abs(p.numerical - 2.0) < ROUNDING  # the central difference measures the average of the sides
    assert p.at_kink


@pytest.mark.parametrize(("analytic", "decidable"), [(1.0, True), (3.0, True), (2.2, True), (0.9, False), (3.1, False)])
def test_at_a_kink_the_analytic_value_is_held_between_the_sides(analytic, decidable):
    p = point(analytic)
    assert p.decidable is decidable
    if decidable:
        assert p.witness == analytic


def test_away_from_kinks_the_witness_is_the_central_difference_and_catches_an_error():
    smooth = point(0.0, f=lambda t: float(np.sin(t)), x=0.3)
    assert not smooth.at_kink and smooth.decidable
    assert abs(smooth.witness - np.cos(0.3)) < ROUNDING
    wrong = point(np.cos(0.3) * (1 + 1e-4), f=lambda t: float(np.sin(t)), x=0.3)
    assert wrong.decidable and wrong.rel_error > 5e-5


def joint(t: float) -> float:
    """f' continuous at 0 (1 on both sides), f'' jumping from 0 to 2 there: the central difference reads 1 + h / 2."""
    return float(t + max(t, 0.0) ** 2)


def test_at_a_joint_the_witness_is_the_one_sided_mean_and_catches_an_error():
    """Found by the random graphs: an ELU at an exact 0 (a zero row under zero biases) or a Huber residual of exactly
    delta failed the witness at h / 4 = 2.5e-6 on a correct model. The one-sided derivatives are exact there."""
    right = point(1.0, f=joint)
    assert abs(right.numerical - (1 + GRADCHECK_STEP / 2)) < ROUNDING and not right.at_kink
    assert right.at_joint and abs(right.witness - 1.0) < ROUNDING
    wrong = point(1.0 + 1e-5, f=joint)
    assert abs(wrong.analytic - wrong.witness) / abs(wrong.witness) > 5e-6
    smooth = point(0.0, f=lambda t: float(np.sin(t)), x=0.3)
    assert not smooth.at_joint and smooth.witness == smooth.numerical


@pytest.mark.parametrize(
    ("arch", "loss", "x", "y"),
    [
        ("4-3:elu-2:linear", "mse", np.zeros((1, 4)), np.array([[0.3, -1.2]])),  # ELU at Z = b = 0 exactly
        ("1-1:linear", "huber", np.zeros((1, 1)), np.ones((1, 1))),  # residual 0 - 1 = -delta exactly
    ],
)
def test_the_witness_passes_a_correct_model_at_a_joint(arch, loss, x, y):
    scratch, keras_model = harness.build_pair(arch, "float64", 0)
    report = harness.compare_models(scratch, keras_model, x, y, loss=loss, gradcheck_samples=12)
    assert report.passed, report.verdict()


DIGITS_CNNS = [("8x8x1-conv8k3-pool2-flatten-10", seed) for seed in range(8)] + [
    ("8x8x1-conv4k3:same-conv6k3-pool2-flatten-16-10", seed) for seed in (1, 4, 5)
]


@pytest.mark.parametrize(("arch", "seed"), DIGITS_CNNS)
def test_the_witness_passes_on_digits_cnns_full_of_kinks(arch, seed):
    """Every seed of the one-conv net failed the witness with first-order chords (up to 2e-3); the two-conv net
    crosses kinks in opposite directions from a first-layer bias (seeds 4 and 5) and from input pixels."""
    report = run_comparison(arch, data="digits", seed=seed)
    assert report.passed, report.verdict
    coords, kinks, undecidable = counts(report.rows[-1].name)
    assert 0 < kinks <= coords // 4  # the conv biases and a few pixels, not every point
    assert undecidable <= kinks
    assert report.rows[-1].error < 1e-8


def counts(name: str) -> tuple[int, int, int]:
    """(coords, at kinks, undecidable) from the witness row's name."""
    numbers = {word: int(n) for n, word in re.findall(r"(\d+) (coords|at kinks|undecidable)", name)}
    return numbers["coords"], numbers.get("at kinks", 0), numbers.get("undecidable", 0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_smooth_cnn_has_no_kinks(dtype):
    """tanh and average pooling on synthetic data: the one-sided derivatives agree at every point (first-order
    chords, off by h |f''| / 2, would call most of them kinks)."""
    report = run_comparison("8x8x1-conv4k3:tanh-avgpool2-flatten-10", dtype=dtype, seed=3)
    assert report.passed, report.verdict
    assert counts(report.rows[-1].name)[1:] == (0, 0)


def test_a_wrong_gradient_fails_the_witness_on_a_digits_cnn(monkeypatch):
    """Keras's dense-kernel gradient off by 1e-3 (a smooth parameter): the witness and that gradient's row fail."""
    original = harness.keras_side
    calls = []

    def tampered(*args, **kwargs):
        side = original(*args, **kwargs)
        calls.append(side)
        if len(calls) == 1:
            side.grads[2] = side.grads[2] * (1 + 1e-3)
        return side

    monkeypatch.setattr(harness, "keras_side", tampered)
    report = run_comparison("8x8x1-conv8k3-pool2-flatten-10", data="digits", seed=1)
    failing = {row.name for row in report.failures}
    assert any(name.startswith("numerical grad") for name in failing)
    assert "grad dense/kernel" in failing


def test_a_row_with_nothing_decidable_fails(monkeypatch):
    monkeypatch.setattr(GradcheckPoint, "decidable", property(lambda self: False))
    report = run_comparison("8x8x1-conv8k3-pool2-flatten-10", data="digits", seed=0)
    witness = report.rows[-1]
    assert "40 undecidable" in witness.name and not witness.passed
