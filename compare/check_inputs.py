"""What a layer check runs on: the user's batch checked (`as_batch`; `_batch_of` for one input, `_batches_of` for a
layer of several), or a random one drawn away from the layer's declared kinks (`away_from_kinks`) or, for a layer
that indexes, random indices (`_random_indices`); and random nonzero values for every parameter
(`random_nonzero_params`: a zero bias hides a forward bias bug)."""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.errors import BadInputError, a_or_an
from from_scratch.layers import Layer, Shape, as_shape
from from_scratch.model import Sequential

Array = np.ndarray

#: How far (absolute) random inputs are kept from a layer's declared kinks.
KINK_MARGIN = 1e-2


def random_nonzero_params(model: Sequential, rng: np.random.Generator) -> list[Array]:
    """A value for every parameter, none near 0: |w| in [0.5, 1.5] (divided by sqrt(fan-in) for matrices) with a
    random sign; non-trainable entries (moving statistics) positive, so a moving variance stays a variance."""
    weights = []
    for w, trainable in zip(model.get_weights(), model.trainable):
        magnitude = rng.uniform(0.5, 1.5, size=w.shape) / (np.sqrt(w.shape[0]) if w.ndim >= 2 else 1.0)
        sign = rng.choice([-1.0, 1.0], size=w.shape) if trainable else 1.0
        weights.append((magnitude * sign).astype(w.dtype))
    return weights


def away_from_kinks(x: Array, kinks: tuple[float, ...], margin: float = KINK_MARGIN) -> Array:
    """Inputs within `margin` of a declared kink moved to the kink +- margin (the side they were on)."""
    x = x.copy()
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin)
    return x


def _shape_list(input_shape: Any) -> bool:
    """Whether `input_shape` is a list of shapes ([(7,), (7,)]) rather than one shape ((7,) or 7)."""
    return isinstance(input_shape, (list, tuple)) and any(isinstance(s, (list, tuple)) for s in input_shape)


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or (isinstance(value, (list, tuple)) and value and _is_array_like(value))


def _is_array_like(value: Any) -> bool:
    """A nested list of at least two levels (a batch written out as lists), not a list of numbers."""
    return all(isinstance(v, (list, tuple, np.ndarray)) for v in value)


def _batches_of(
    name: str, inputs: Any, input_shape: Any, batch: Any, dtype: str
) -> tuple[list[Array] | None, list[Shape], int]:
    """(X per input or None, the shapes, batch) for a layer of several inputs: from `inputs`, a list of batches of
    one size (input_shape and batch, when given too, must agree with them), else from input_shape, a list of
    shapes, and batch (default 16)."""
    if batch is not None and (not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch <= 0):
        raise BadInputError(f"batch must be a positive integer, got {batch!r}")
    if dtype not in ("float64", "float32"):
        raise BadInputError(f"dtype must be one of float64, float32, got {dtype!r}")
    shapes = None
    if input_shape is not None:
        shapes_given = isinstance(input_shape, (list, tuple)) and len(input_shape) > 0
        if not shapes_given or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise BadInputError(
                f"layer {name!r} takes several inputs (several_inputs = True): give one shape per input, "
                f"input_shape=[(7,), (7,)], got {input_shape!r}"
            )
        shapes = [as_shape(s, f"input_shape[{k}]") for k, s in enumerate(input_shape)]
    if inputs is None:
        if shapes is None:
            raise BadInputError(
                f"layer {name!r} takes several inputs: give input_shape=[(7,), (7,)] (one sample's shape per "
                "input), or the batches with inputs=[x1, x2]"
            )
        return None, shapes, 16 if batch is None else int(batch)
    if not isinstance(inputs, (list, tuple)) or not inputs or not all(_is_array(a) for a in inputs):
        what = type(inputs).__name__ if not isinstance(inputs, (list, tuple)) else f"a list of {len(inputs)}"
        raise BadInputError(
            f"layer {name!r} takes several inputs: give inputs=[x1, x2, ...], one batch (N, *shape) per input, got "
            + (a_or_an(what) if not isinstance(inputs, (list, tuple)) else what)
            + ("" if not isinstance(inputs, (list, tuple)) or not inputs else " that are not all arrays")
        )
    xs = [as_batch(a, dtype, f"inputs[{k}]") for k, a in enumerate(inputs)]
    sizes = [len(x) for x in xs]
    if len(set(sizes)) > 1:
        raise BadInputError(f"inputs: batches of different sizes {sizes}; give each input the same N rows")
    kinds = ["indices" if x.dtype.kind in "iu" else "values" for x in xs]
    if len(set(kinds)) > 1:
        raise BadInputError(
            "inputs: "
            + ", ".join(f"inputs[{k}] holds {kind} ({x.dtype})" for k, (kind, x) in enumerate(zip(kinds, xs)))
            + "; integer batches are indices, and check_layer takes indices for every input or for none: give "
            "the values as floats"
        )
    given = [tuple(int(d) for d in x.shape[1:]) for x in xs]
    if shapes is not None and shapes != given:
        raise BadInputError(
            f"input_shape {shapes} contradicts inputs of shapes {[x.shape for x in xs]} (one sample each: "
            f"{given}); give one of them"
        )
    if batch is not None and batch != sizes[0]:
        raise BadInputError(f"batch {batch} contradicts inputs of {sizes[0]} samples; give one of them")
    return xs, given, sizes[0]


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=object))


def _random_indices(layer: Layer, shape: Shape, seed: int) -> Array:
    """Random indices in [0, layer.input_dim) for a layer whose inputs are indices (it declares integer_inputs)."""
    vocabulary = getattr(layer, "input_dim", None)
    if not isinstance(vocabulary, (int, np.integer)) or isinstance(vocabulary, bool) or vocabulary <= 0:
        raise BadInputError(
            f"layer {layer.name!r} declares integer_inputs (its inputs are indices) but no input_dim to draw them "
            "below: give the batch of indices with inputs=..."
        )
    return np.random.default_rng(seed).integers(0, int(vocabulary), size=shape)


def as_batch(inputs: Any, dtype: str = "float64", what: str = "inputs") -> Array:
    """A user's batch (N, *input_shape) checked: an array of real numbers (integers are indices, floats values),
    with a batch axis and at least one feature axis, no sample missing, every value finite and exactly
    representable in `dtype` (an index above 2^24 is not, in float32). Returned as given (not cast)."""
    try:
        x = np.asarray(inputs)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{what}: not an array of numbers ({exc})") from None
    kind = x.dtype.kind
    if kind not in "iuf":
        names = {"b": "booleans", "c": "complex numbers", "O": "Python objects"}
        raise BadInputError(
            f"{what}: expected real numbers (floats, or integers for indices), got dtype {x.dtype}"
            + (f" ({names[kind]})" if kind in names else "")
        )
    if x.ndim < 2:
        raise BadInputError(
            f"{what}: expected an array (N, *input_shape) with a batch axis first, got shape {x.shape}"
            + (f"; a single sample of {x.shape} is x[None]" if x.ndim == 1 else "")
        )
    if x.size == 0:
        raise BadInputError(f"{what}: empty (shape {x.shape}); a batch needs at least one sample")
    if kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise BadInputError(f"{what}: {x[at]} at index {at}; NaN and infinity are refused")
        top = float(np.finfo(dtype).max)
        if np.finfo(x.dtype).max > top and (np.abs(x) > top).any():
            at = tuple(int(i) for i in np.argwhere(np.abs(x) > top)[0])
            raise BadInputError(f"{what}: {x[at].item()!r} at index {at} is beyond the range of {dtype}")
    else:
        exact = 2 ** (np.finfo(dtype).nmant + 1)
        if int(x.max()) > exact or int(x.min()) < -exact:
            at = tuple(int(i) for i in np.argwhere((x > exact) | (x < -exact))[0])
            raise BadInputError(
                f"{what}: the integer {x[at].item()} at index {at} is not exactly representable in {dtype} "
                f"(|value| <= 2^{np.finfo(dtype).nmant + 1} are)"
            )
    return x


def _batch_of(inputs: Any, input_shape: Any, batch: Any, dtype: str) -> tuple[Array | None, Shape, int]:
    """(X or None, input_shape, batch): from `inputs` when given (input_shape and batch, when given too, must
    agree with it), else from input_shape and batch (default 16)."""
    if batch is not None and (not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch <= 0):
        raise BadInputError(f"batch must be a positive integer, got {batch!r}")
    if inputs is None:
        if input_shape is None:
            raise BadInputError("give input_shape=(...) (the shape of one sample), or a batch with inputs=...")
        return None, as_shape(input_shape), 16 if batch is None else int(batch)
    if dtype not in ("float64", "float32"):
        raise BadInputError(f"dtype must be one of float64, float32, got {dtype!r}")
    x = as_batch(inputs, dtype)
    if input_shape is not None and as_shape(input_shape) != x.shape[1:]:
        raise BadInputError(
            f"input_shape {as_shape(input_shape)} contradicts inputs of shape {x.shape} (one sample: {x.shape[1:]}); "
            "give one of them"
        )
    if batch is not None and batch != len(x):
        raise BadInputError(f"batch {batch} contradicts inputs of shape {x.shape} ({len(x)} samples); give one of them")
    return x, tuple(int(d) for d in x.shape[1:]), len(x)
