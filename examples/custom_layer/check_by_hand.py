"""The Python way in: run `python examples/custom_layer/check_by_hand.py` from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

import compare
from compare.report import render

HERE = Path(__file__).parent


def main() -> int:
    import importlib.util

    spec = importlib.util.spec_from_file_location("swish", HERE / "swish.py")
    swish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(swish)
    for layer in (swish.Swish(), swish.BrokenSwish()):
        report = compare.check_layer(layer, swish.keras_swish(), input_shape=(7,))
        print(f"== {type(layer).__name__}\n{render(report)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
