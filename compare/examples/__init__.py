"""Worked examples from the seed blog posts, runnable and asserted.

Each example is a module with `run(out=print, **options) -> dict`: it prints its steps through `out` and returns
its key figures (JSON-serialisable), so tests assert on numbers and not on text. `EXAMPLES` registers them by
name; `run_example(name, out, **options)` looks one up and runs it.

Only `gradcheck` needs TensorFlow, and imports it inside its `run`; importing this package loads NumPy only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compare.examples import forward_pass, gradcheck, gradient_descent, perceptron, regression, softmax
from from_scratch.errors import BadInputError, unknown_name

RunFunction = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Example:
    """One registry entry: its name, a one-line description, and its run(out=print, **options) -> dict."""

    name: str
    description: str
    run: RunFunction

    @property
    def options(self) -> dict[str, Any]:
        """The options `run` accepts besides `out`, with their defaults."""
        parameters = inspect.signature(self.run).parameters.values()
        return {p.name: p.default for p in parameters if p.name != "out"}


EXAMPLES: dict[str, Example] = {
    example.name: example
    for example in [
        Example(
            "perceptron",
            "AND, OR, NAND gates in matrix form, XOR from them, and an MLP that learns XOR",
            perceptron.run,
        ),
        Example(
            "regression",
            "fit y = wx + b to (3, 7), (9, 13) from y = 3x - 8 by gradient descent (E = 36 at start)",
            regression.run,
        ),
        Example(
            "gradient_descent",
            "minimise x0^2 + x1^2 from (3, 4) with numerical and analytic gradients",
            gradient_descent.run,
        ),
        Example(
            "forward_pass",
            "the seed's three-layer forward pass, correct, next to what its listing computes",
            forward_pass.run,
        ),
        Example(
            "softmax", "softmax shift invariance, and the step / sigmoid / ReLU plot (needs matplotlib)", softmax.run
        ),
        Example(
            "gradcheck", "backprop vs central differences vs Keras on a 4-5-3 network (needs TensorFlow)", gradcheck.run
        ),
    ]
}


def run_example(name: str, out: Callable[[str], None] = print, **options: Any) -> dict[str, Any]:
    """Run the example registered as `name`, printing through `out`; returns its figures.

    An unknown name or option raises BadInputError listing the known ones.
    """
    if name not in EXAMPLES:
        raise unknown_name("example", name, EXAMPLES)
    example = EXAMPLES[name]
    unknown = sorted(set(options) - set(example.options))
    if unknown:
        known = ", ".join(f"{k}={v!r}" for k, v in example.options.items()) or "none"
        raise BadInputError(f"example {name!r} has no option {', '.join(map(repr, unknown))}; its options: {known}")
    return example.run(out, **options)
