"""What a pass of a `from_scratch.graph.Model` is handed: `Feeding`, the mixin that checks and
casts the inputs, the labels, the sample weights, the losses (one per output) and the loss weights as Keras's
`fit`/`evaluate` take them."""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.checks import as_array, check_fits_dtype, check_numbers
from from_scratch.errors import BadInputError, a_or_an
from from_scratch.losses import Loss, OutputLosses, get_loss
from from_scratch.nodes import Tensor

Array = np.ndarray


class Feeding:
    """The checks of what a pass is handed, for a model with `inputs` and `outputs` (symbolic tensors with their
    shapes) and a `dtype`: each refuses a wrong count, shape or value with a message naming the input or output."""

    inputs: list[Tensor]
    outputs: list[Tensor]
    dtype: np.dtype

    def _as_inputs(self, x: Any) -> list[Array]:
        """One array per input (N, *shape), each cast to the model dtype as Keras casts inputs; refuses a wrong
        count or shape, batches of different sizes, an empty batch, non-numbers and NaN or infinity."""
        several = len(self.inputs) > 1
        if several and not (isinstance(x, (list, tuple)) and len(x) == len(self.inputs)):
            got = f"a list of {len(x)}" if isinstance(x, (list, tuple)) else a_or_an(type(x).__name__)
            raise BadInputError(
                f"input: the model has {len(self.inputs)} inputs, give a list of {len(self.inputs)} arrays, got {got}"
            )
        if not several and isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            x = x[0]
        rank = 1 + len(self.inputs[0].shape)
        if (
            not several
            and isinstance(x, (list, tuple))
            and all(isinstance(a, np.ndarray) and a.ndim == rank for a in x)
        ):
            raise BadInputError(
                f"input: the model has 1 input, give one array (N, {', '.join(map(str, self.inputs[0].shape))}), got "
                f"a list of {len(x)} such arrays"
            )
        arrays = list(x) if several else [x]
        out = []
        for t, a in zip(self.inputs, arrays):
            what = f"input {t.node.name!r}" if several else "input"
            a = as_array(what, a)
            if a.ndim != 1 + len(t.shape) or a.shape[1:] != t.shape:
                expected = ", ".join(["N", *map(str, t.shape)])
                raise BadInputError(f"{what}: expected shape ({expected}), got {a.shape}")
            check_numbers(what, a)
            check_fits_dtype(what, a, self.dtype)
            out.append(a.astype(self.dtype, copy=False))
        if len({len(a) for a in out}) > 1:
            sizes = ", ".join(f"{t.node.name!r} {len(a)}" for t, a in zip(self.inputs, out))
            raise BadInputError(
                f"inputs: batches of different sizes {[len(a) for a in out]} (rows per input: {sizes}); give each "
                "input N rows"
            )
        return out

    def _as_input(self, x: Any) -> Array:
        """X (N, *input_shape) of a model of one input, as `_as_inputs`."""
        return self._as_inputs(x)[0]

    def _losses(self, loss: Any) -> list[Loss]:
        """One loss per output: a single loss is used for every output, as Keras compiles it."""
        if isinstance(loss, OutputLosses):
            loss = loss.losses
        if isinstance(loss, (list, tuple)):
            if len(loss) != len(self.outputs):
                raise BadInputError(f"loss: {len(loss)} losses for {len(self.outputs)} outputs; give one per output")
            return [get_loss(item) for item in loss]
        return [get_loss(loss)] * len(self.outputs)

    def _loss_weights(self, loss_weights: Any) -> list[float | None]:
        if loss_weights is None:
            return [None] * len(self.outputs)
        if not isinstance(loss_weights, (list, tuple)) or len(loss_weights) != len(self.outputs):
            raise BadInputError(
                f"loss_weights: give a list of {len(self.outputs)} numbers, one per output, got {loss_weights!r:.60}"
            )
        out = []
        for i, w in enumerate(loss_weights):
            if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w):
                raise BadInputError(f"loss_weights[{i}]: expected a finite number, got {w!r}")
            out.append(float(w))
        return out

    def _as_targets_all(self, y: Any, losses: list[Loss], outputs: list[Array]) -> list[Array]:
        several = len(self.outputs) > 1
        if several and not (isinstance(y, (list, tuple)) and len(y) == len(self.outputs)):
            got = f"a list of {len(y)}" if isinstance(y, (list, tuple)) else a_or_an(type(y).__name__)
            names = ", ".join(repr(t.node.name) for t in self.outputs)
            raise BadInputError(
                f"labels: the model has {len(self.outputs)} outputs ({names}), give a list of {len(self.outputs)} "
                f"label arrays, got {got}"
            )
        ys = list(y) if several else [y]
        out = []
        for t, loss, yi, p in zip(self.outputs, losses, ys, outputs):
            what = f"labels of output {t.node.name!r}" if several else "labels"
            yi = as_array(what, yi)
            check_numbers(what, yi)
            if yi.ndim == 0 or yi.shape[0] != len(p):
                raise BadInputError(
                    f"{what}: {yi.shape[0] if yi.ndim else 'a scalar'} rows for a batch of {len(p)} inputs"
                )
            loss.check_targets(yi, t.shape[-1])
            out.append(yi.astype(self.dtype, copy=False))
        return out

    def _as_targets(self, y: Array, loss: Loss, n: int) -> Array:
        """Labels of a model of one output checked against the loss (shape, one-hot rows, class range, [0, 1])."""
        y = np.asarray(y)
        check_numbers("labels", y)
        if y.ndim == 0 or y.shape[0] != n:
            raise BadInputError(f"labels: {y.shape[0] if y.ndim else 'a scalar'} rows for a batch of {n} inputs")
        loss.check_targets(y, self.outputs[0].shape[-1])
        return y.astype(self.dtype, copy=False)

    def _as_sample_weight(self, sample_weight: Array | None, n: int) -> Array | None:
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight)
        check_numbers("sample_weight", w)
        if w.shape != (n,):
            raise BadInputError(f"sample_weight: expected shape ({n},), one weight per sample, got {w.shape}")
        return w.astype(self.dtype, copy=False)
