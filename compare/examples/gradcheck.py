"""Three witnesses for one gradient: backprop, central differences, and Keras.

A small two-layer network, 4 -> 5 ReLU -> 3 softmax in float64, on a seeded batch of six samples with
categorical cross-entropy. First the analytic gradients (from_scratch backprop) are checked against central
differences of the loss, coordinate by coordinate,

    dL/dtheta_j ~ (L(theta + h e_j) - L(theta - h e_j)) / (2h),   h = 1e-5,

measured as max_j |analytic_j - numerical_j| / max_j max(|analytic_j|, |numerical_j|). Then the same weights go
into the Keras twin and `compare.harness.compare_models` checks loss, output and every gradient against
tf.GradientTape's, plus central differences against Keras's gradient.

A ReLU input within h of 0 would make the central difference straddle the kink; the smallest |Z1| of the batch
is printed to show that none is near it.

TensorFlow is imported inside `run` only, so the other examples work without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from from_scratch.arch import Architecture
from from_scratch.gradcheck import gradcheck
from from_scratch.model import Sequential


def run(
    out: Callable[[str], None] = print,
    arch: str = "4-5:relu-3:softmax",
    batch: int = 6,
    seed: int = 0,
    samples: int = 20,
    h: float = 1e-5,
) -> dict[str, Any]:
    """Gradcheck the scratch model (`samples` coordinates per parameter) and compare it with Keras; return the
    gradcheck error, its tolerance and verdict, the smallest |Z1|, the worst backprop-vs-Keras error (norm-relative),
    the numerical-vs-Keras error, and the whole Keras report (as a dict)."""
    import keras_impl
    from compare.harness import compare_models
    from compare.tolerances import GRADCHECK_TOL, max_abs_error, max_rel_error

    architecture = Architecture.parse(arch)
    model = Sequential.from_architecture(architecture, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, architecture.input_dim))
    y = np.eye(architecture.output_dim)[rng.integers(0, architecture.output_dim, size=batch)]
    loss = "categorical_crossentropy"
    out(f"{arch}, float64, seed {seed}, batch of {batch}, {loss}")

    model.forward(x)
    kink_margin = float(np.abs(model.layers[0].Z).min())
    out(f"smallest |Z1| on the batch: {kink_margin:.3g} (central differences step h = {h:g})")

    points = gradcheck(model, x, y, loss, n_samples=samples, h=h, seed=seed)
    analytic = np.array([p.analytic for p in points])
    numerical = np.array([p.numerical for p in points])
    error = max_rel_error(analytic, numerical)
    passed = bool(error <= GRADCHECK_TOL)
    out(
        f"backprop vs central differences on {len(points)} coordinates: "
        f"max abs {max_abs_error(analytic, numerical):.3g}, "
        f"relative {error:.3g} (tolerance {GRADCHECK_TOL:g}): {'PASS' if passed else 'FAIL'}"
    )
    for p in points[:3]:
        out(f"  param {p.param} {p.index}: analytic {p.analytic:+.10f}, numerical {p.numerical:+.10f}")

    keras_model = keras_impl.build_model(architecture, "float64")
    report = compare_models(model, keras_model, x, y, loss, gradcheck_samples=8, seed=seed)
    out("backprop vs Keras (same weights, same batch):")
    for row in report.rows:
        out(f"  {row.name:45s} {row.measure:9s} {row.error:.3g} <= {row.tol:g}: {'PASS' if row.passed else 'FAIL'}")
    keras_worst = report.worst("norm-rel")
    out(f"{report.verdict()}; worst backprop-vs-Keras error {keras_worst:.3g}")
    return {
        "arch": arch,
        "coordinates": len(points),
        "kink_margin": kink_margin,
        "gradcheck_error": error,
        "gradcheck_tol": GRADCHECK_TOL,
        "gradcheck_passed": passed,
        "keras_passed": report.passed,
        "keras_worst": keras_worst,
        "keras_numerical_error": report.worst("max-rel"),
        "report": report.to_dict(),
    }
