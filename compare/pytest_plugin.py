"""The pytest plugin: a `parity` fixture that proves a hand-written layer against its Keras twin inside a test.

    def test_my_swish(parity):
        parity(Swish(), keras.layers.Activation("silu"), input_shape=(7,))

A failing check fails the test with the comparison table and the diagnosis as its message. Options:
`--parity-dtype float64|float32` (default float64) and `--parity-seed N` (an integer >= 0, default 0) set the
defaults of every call; a bad value stops pytest at start-up with a usage error (not as failing layers).
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
    group.addoption(
        "--parity-seed", type=int, default=0, help="seed of the parity fixture's checks (an integer >= 0, default 0)"
    )


#: The plugin's options: (option, check of its value returning the value or None when it is bad, what it takes).
OPTIONS: tuple[tuple[str, Callable[[Any], Any], str], ...] = (
    ("--parity-dtype", lambda v: v if v in ("float64", "float32") else None, "float64 or float32"),
    ("--parity-seed", lambda v: _seed(v), "an integer >= 0"),
)


def _seed(value: Any) -> int | None:
    try:
        seed = int(str(value).strip())
    except ValueError:
        return None
    return seed if seed >= 0 else None


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a bad option value at start-up, as a usage error naming the option and the value: a bad seed must
    not surface later as every parity test failing, read as failing layers."""
    for option, check, takes in OPTIONS:
        value = config.getoption(option)
        if check(value) is None:
            raise pytest.UsageError(f"{option} must be {takes}, got {value!r}")


@pytest.fixture
def parity(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """`parity(layer, keras_layer, input_shape=(7,), *, batch=16, dtype=None, seed=None, inputs=None, roles=None,
    call_options=None) -> Report`:
    runs compare.check_layer (on `inputs` when given: then input_shape and batch are read from them) and fails the
    test with the table and diagnosis unless every quantity agrees. A layer of several inputs takes a shape per input
    (input_shape=[(7,), (7,)]) or a batch per input (inputs=[x1, x2]); an attention layer also its inputs' roles and
    call options (roles=("query", "value", "attention_mask"), call_options={"use_causal_mask": True}), as
    check_layer does."""
    default_dtype = request.config.getoption("--parity-dtype")
    default_seed = _seed(request.config.getoption("--parity-seed"))

    def check(
        layer: Any,
        keras_layer: Any,
        input_shape: Any = None,
        *,
        batch: int | None = None,
        dtype: str | None = None,
        seed: int | None = None,
        inputs: Any = None,
        roles: Any = None,
        call_options: dict[str, bool] | None = None,
    ) -> Any:
        from compare.check import check_layer
        from compare.report import render

        report = check_layer(
            layer,
            keras_layer,
            (7,) if input_shape is None and inputs is None else input_shape,
            batch=batch,
            dtype=dtype or default_dtype,
            seed=default_seed if seed is None else seed,
            inputs=inputs,
            roles=roles,
            call_options=call_options,
        )
        if not report.passed:
            pytest.fail(f"{type(layer).__name__} differs from its Keras twin\n{render(report)}", pytrace=False)
        return report

    return check
