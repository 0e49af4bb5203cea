"""The harness: the only package that imports both from_scratch and keras_impl.

It builds both sides from one architecture description, loads identical weights into both, runs the same batch
and checks that losses, outputs and every gradient agree (harness.py), then prints the evidence (report.py).

For your own pieces: `compare.check_layer(layer, keras_layer, input_shape)` proves a hand-written layer on a random
batch (`inputs=x` on a batch of your own; integer arrays are indices),
`compare.check_model(scratch_model, keras_model, x, y, loss=...)` a pair of models, and
`compare.from_keras(model_or_path)` builds the NumPy model of a saved keras.Sequential. They are loaded on first
use, so `import compare` does not import TensorFlow.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# TensorFlow reads these when it is imported, which may be right after this package (`import compare, keras`):
# pinned here as keras_impl pins them (oneDNN's fused kernels off, quiet logs), without importing TensorFlow.
if "tensorflow" not in sys.modules:  # pinned in time: keras_impl's report may say so
    os.environ["BACKPROP_PARITY_PINNED"] = "1"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_LAZY = {"check_layer": "compare.check", "check_model": "compare.check", "from_keras": "compare.keras_model"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'compare' has no attribute {name!r}")
