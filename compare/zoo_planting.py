"""How a zoo entry plants its bug and runs: `_compare` builds both sides of an architecture, lets the entry put the
bug into the scratch side, and compares them on a batch; `_swap_class` gives one layer object a buggy method; `_batch`
and `_images` draw the random batches (one-hot targets) the entries run on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from from_scratch.model import Sequential

Array = np.ndarray


def _compare(arch: str, x: Array, y: Array, plant: Callable[[Sequential], Any], dtype: str = "float64") -> Any:
    """Build both sides, let `plant` put the bug into the scratch side (it may return a buggy loss), compare."""
    from compare.harness import build_pair, compare_models

    scratch, keras_model = build_pair(arch, dtype)
    planted_loss = plant(scratch)
    return compare_models(
        scratch,
        keras_model,
        x,
        y,
        planted_loss or "categorical_crossentropy",
        gradcheck_samples=0,
        config={"arch": arch, "batch": len(x)},
    )


def _batch(n: int, d: int, k: int, seed: int = 0, scale: float = 1.0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * scale, np.eye(k)[rng.integers(0, k, size=n)]


def _swap_class(layer: Any, method: str, replacement: Callable) -> None:
    """Give one layer object a subclass whose `method` is `replacement` (the rest of the model is untouched)."""
    layer.__class__ = type(f"Buggy{type(layer).__name__}", (type(layer),), {method: replacement})


def _images(n: int, shape: tuple[int, ...], k: int, seed: int = 0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), np.eye(k)[rng.integers(0, k, size=n)]
