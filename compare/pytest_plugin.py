"""The pytest plugin: a `parity` fixture that proves a hand-written layer against its Keras twin inside a test.

    def test_my_swish(parity):
        parity(Swish(), keras.layers.Activation("silu"), input_shape=(7,))

A failing check fails the test with the comparison table and the diagnosis as its message. Options:
`--parity-dtype float64|float32` (default float64) and `--parity-seed N` (default 0) set the defaults of every call.
Registered under the `pytest11` entry point, so installing backprop-parity makes the fixture available. This module
imports pytest alone: TensorFlow loads only when a test calls the fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "backprop-parity: hand-written layers against Keras")
    group.addoption(
        "--parity-dtype",
        choices=("float64", "float32"),
        default="float64",
        help="dtype of the parity fixture's checks (default float64)",
    )
    group.addoption("--parity-seed", type=int, default=0, help="seed of the parity fixture's checks (default 0)")


@pytest.fixture
def parity(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """`parity(layer, keras_layer, input_shape=(7,), *, batch=16, dtype=None, seed=None) -> Report`: runs
    compare.check_layer and fails the test with the table and diagnosis unless every quantity agrees."""
    default_dtype = request.config.getoption("--parity-dtype")
    default_seed = request.config.getoption("--parity-seed")

    def check(
        layer: Any,
        keras_layer: Any,
        input_shape: Any = (7,),
        *,
        batch: int = 16,
        dtype: str | None = None,
        seed: int | None = None,
    ) -> Any:
        from compare.check import check_layer
        from compare.report import render

        report = check_layer(
            layer,
            keras_layer,
            input_shape,
            batch=batch,
            dtype=dtype or default_dtype,
            seed=default_seed if seed is None else seed,
        )
        if not report.passed:
            pytest.fail(f"{type(layer).__name__} differs from its Keras twin\n{render(report)}", pytrace=False)
        return report

    return check
