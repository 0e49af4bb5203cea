"""The checks a model makes on what it is given and on what its layers return (shapes, numbers, declarations)."""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.errors import BadInputError, a_or_an

Array = np.ndarray


def as_array(what: str, value: Any) -> Array:
    """np.asarray(value), with a ragged list or another non-array refused as bad input."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{what}: not an array of numbers ({exc})") from None


def check_declarations(layer: Any) -> None:
    """After build: `params` is a list of arrays, and `weight_names` / `trainable` (when declared) have one entry
    per parameter."""
    params = layer.params
    if not isinstance(params, (list, tuple)) or not all(isinstance(p, np.ndarray) for p in params):
        raise BadInputError(f"layer {layer.name!r}: params must be a list of NumPy arrays, got {params!r:.80}")
    for what, declared in (("weight_names", layer.weight_names), ("trainable", layer.trainable)):
        if declared is not None and len(declared) != len(params):
            raise BadInputError(
                f"layer {layer.name!r}: {what} has {len(declared)} entries for {len(params)} parameter(s)"
            )
    if params and (layer.passes_through(True) or layer.passes_through(False)):
        raise BadInputError(
            f"layer {layer.name!r}: passes_through() is True but the layer has {len(params)} parameter(s); a layer "
            "that returns its input unchanged has none"
        )


def check_shape(layer: Any, what: str, value: Any, shape: tuple[int, ...]) -> None:
    """A layer's forward output or backward dL/dX must be an array of the shape the protocol promises."""
    if not isinstance(value, np.ndarray) or value.shape != shape:
        got = f"shape {value.shape}" if isinstance(value, np.ndarray) else a_or_an(type(value).__name__)
        raise BadInputError(f"layer {layer.name!r}: {what} {got}, expected shape {shape}")


def check_grads(layer: Any, grads: list[Array] | None = None) -> None:
    """After backward, `grads` holds one array per entry of `params`, each of its parameter's shape."""
    params = layer.params
    grads = layer.grads if grads is None else grads
    if len(grads) != len(params):
        raise BadInputError(
            f"layer {layer.name!r}: grads has {len(grads)} array(s) for {len(params)} parameter(s); backward must "
            "leave dL/dparam in grads, aligned with params"
        )
    for name, p, g in zip(layer.param_names(), params, grads):
        if np.shape(g) != np.shape(p):
            raise BadInputError(
                f"layer {layer.name!r}: the gradient of {name} has shape {np.shape(g)}, its parameter {np.shape(p)}"
            )


def check_fits_dtype(what: str, a: Array, dtype: np.dtype) -> None:
    """Refuse values that the cast to the model's dtype would turn into infinity (float64 beyond float32's range
    into a float32 model): the cast would not be rounding but a silent inf, then NaN."""
    if np.issubdtype(a.dtype, np.floating) and np.finfo(a.dtype).max > np.finfo(dtype).max:
        over = np.abs(a) > np.finfo(dtype).max
        if over.any():
            index = tuple(int(i) for i in np.argwhere(over)[0])
            raise BadInputError(
                f"{what}: {a[index].item()!r} at index {index} is beyond the range of {dtype} "
                f"(+-{np.finfo(dtype).max:.4g})"
            )


def check_numbers(what: str, a: Array) -> None:
    """Refuse arrays that are not real numbers, are empty, or hold NaN or infinity (naming the first bad entry)."""
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise BadInputError(f"{what}: expected real numbers, got dtype {a.dtype}")
    if a.size == 0:
        raise BadInputError(f"{what}: empty (shape {a.shape}); a batch needs at least one sample")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise BadInputError(f"{what}: {a[index]} at index {index}; NaN and infinity are refused")
