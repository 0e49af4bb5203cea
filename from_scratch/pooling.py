"""The pooling layers over images (channels last), on conv.py's windows: MaxPooling2D sends dA to the first maximum
of each window in row-major order (where TensorFlow sends it when a window has tied maxima), AveragePooling2D divides
by the number of real cells in the window (Keras's 'same' padding does not count the padded ones), and
GlobalAveragePooling2D averages over all positions. Registered in from_scratch.layers.LAYERS, as conv.py registers
its layers; still importable from from_scratch.conv."""

from __future__ import annotations

import numpy as np

from from_scratch.arch import LayerSpec
from from_scratch.conv import Pair, Windows, _image_shape, _padding, _pair
from from_scratch.errors import BadInputError
from from_scratch.layers import LAYERS, Layer, Shape

Array = np.ndarray


class _Pooling(Layer):
    """Shared by the two pooling layers: Keras's arguments, the windows, the shape."""

    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()
    default_name = "pooling"

    def __init__(
        self,
        pool_size: int | Pair = 2,
        strides: int | Pair | None = None,
        padding: str = "valid",
        name: str | None = None,
    ) -> None:
        self.name = name or self.default_name
        where = f"{type(self).__name__} {self.name!r}"
        self.pool_size = _pair(pool_size, "pool_size", where)
        self.strides = self.pool_size if strides is None else _pair(strides, "strides", where)
        self.padding = _padding(padding, where)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> _Pooling:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        options = {"pool_size": self.pool_size, "padding": self.padding, "strides": self.strides}
        return LayerSpec(self.kind, None, "linear", options)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        c = _image_shape(input_shape, self.name)[2]
        self.windows = Windows(input_shape, self.pool_size, self.strides, (1, 1), self.padding)
        if min(self.windows.out_hw) <= 0:
            raise BadInputError(
                f"layer {self.name!r}: a {self.pool_size} pool does not fit in the input {input_shape} with padding "
                "'valid'"
            )
        return (*self.windows.out_hw, c)


class MaxPooling2D(_Pooling):
    """A[n, i, j, c] = max over the window (i, j) of X[n, ., ., c].  X (N, H, W, C) -> A (N, Ho, Wo, C).

    Backward: each window's dA goes to one cell, its maximum; with tied maxima, the first in row-major order
    (top row first, then left to right), where TensorFlow's MaxPoolGrad sends it (the test with constructed ties
    shows it). Overlapping windows (strides < pool) may pick the same cell: their gradients add. 'same' padding
    pads with -inf, so a padded cell is never the maximum.
    """

    kind = "max_pooling2d"
    default_name = "max_pooling2d"

    def forward(self, x: Array, training: bool = False) -> Array:
        """A = the running maximum over the kh*kw offsets: A = max(Xpad[cells(0, 0)], Xpad[cells(0, 1)], ...).
        X (N, H, W, C) -> A (N, Ho, Wo, C). The offsets' views are kept for the backward pass."""
        xpad = self.windows.pad(x, -np.inf)
        self.slices = [xpad[self.windows.cells(p, q)] for p, q in self.windows.offsets]  # each (N, Ho, Wo, C)
        a = self.slices[0].copy()
        for cell in self.slices[1:]:
            np.maximum(cell, a, out=a)  # NaN propagates; on a tie NumPy keeps a, the earlier cell (seen in 0.0 vs -0.0)
        if np.isnan(a).any():  # a window holding NaN: its value is its first NaN, as np.argmax picks
            for cell in reversed(self.slices):
                np.copyto(a, cell, where=np.isnan(cell))
        self.A = a
        return self.A

    def first_maxima(self) -> list[Array]:
        """One mask (N, Ho, Wo, C) per offset (p, q), row-major: True where Xpad[cells(p, q)] is the first maximum
        of its window (the first NaN, if the window holds one). Exactly one mask is True per window:

            hit = (cell == A) & ~taken,    taken |= hit        (offsets in row-major order)"""
        nan = np.isnan(self.A).any()
        taken = np.zeros(self.A.shape, bool)
        masks = []
        for cell in self.slices:
            hit = cell == self.A
            if nan:
                hit |= np.isnan(cell)  # only a NaN window has a NaN cell
            hit &= ~taken
            taken |= hit
            masks.append(hit)
        return masks

    def backward(self, dA: Array) -> Array:
        """dX = col2im(dP), dP[:, :, :, p, q] = dA where (p, q) is the window's first maximum, else 0.
        dA (N, Ho, Wo, C) -> dX (N, H, W, C)."""
        n, ho, wo, c = dA.shape
        routed = np.empty((n, ho, wo, *self.pool_size, c), dA.dtype)
        finite = np.isfinite(dA).all()
        for (p, q), hit in zip(self.windows.offsets, self.first_maxima()):
            if finite:
                np.multiply(dA, hit, out=routed[:, :, :, p, q])  # dA * 0 may be -0.0: col2im adds it as +0.0
            else:
                routed[:, :, :, p, q] = np.where(hit, dA, 0)  # inf * 0 would be NaN
        return self.windows.scatter(routed)

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """The maximum is exact: M_A = M_X at the chosen cell."""
        padded = self.windows.pad(x_terms)
        a_terms = np.zeros(self.A.shape, x_terms.dtype)
        for (p, q), hit in zip(self.windows.offsets, self.first_maxima()):
            np.copyto(a_terms, padded[self.windows.cells(p, q)], where=hit)
        return {"A": a_terms}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


class AveragePooling2D(_Pooling):
    """A[n, i, j, c] = (sum of X[n, ., ., c] over the window's real cells) / (their count).
    X (N, H, W, C) -> A (N, Ho, Wo, C). With 'valid' the count is ph*pw; with 'same' a window at the border
    counts only the cells inside the image (TensorFlow's avg_pool), not the padding.
    Backward: every real cell of a window receives dA / count; overlapping windows add.
    """

    kind = "average_pooling2d"
    default_name = "average_pooling2d"

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """The windows, and once for all passes `count` (1, Ho, Wo, 1): the number of real cells in each."""
        shape = super().build(input_shape, dtype, rng)
        ones = np.ones((1, *self.windows.in_hw, 1), dtype)
        self.count = self.windows.patches(ones).sum(axis=(3, 4, 5))[:, :, :, None]
        return shape

    def forward(self, x: Array, training: bool = False) -> Array:
        self.A = self.windows.patches(x).sum(axis=(3, 4)) / self.count
        return self.A

    def backward(self, dA: Array) -> Array:
        """dX = col2im(dA / count broadcast over each window).  dA (N, Ho, Wo, C) -> dX (N, H, W, C)."""
        share = (dA / self.count)[:, :, :, None, None, :]
        ph, pw = self.pool_size
        return self.windows.scatter(np.broadcast_to(share, (*dA.shape[:3], ph, pw, dA.shape[3])))

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        return {"A": self.windows.patches(x_terms).sum(axis=(3, 4)) / self.count}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


class GlobalAveragePooling2D(Layer):
    """A[n, c] = mean over (i, j) of X[n, i, j, c].  X (N, H, W, C) -> A (N, C).  dX = dA / (H W) everywhere."""

    kind = "global_average_pooling2d"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        self.name = name or "global_average_pooling2d"

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> GlobalAveragePooling2D:
        return cls()

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", {})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        self.in_shape = _image_shape(input_shape, self.name)
        return (input_shape[2],)

    def forward(self, x: Array, training: bool = False) -> Array:
        self.A = x.mean(axis=(1, 2))
        return self.A

    def backward(self, dA: Array) -> Array:
        h, w, c = self.in_shape
        return np.broadcast_to((dA / dA.dtype.type(h * w))[:, None, None, :], (len(dA), h, w, c)).copy()

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        return {"A": x_terms.mean(axis=(1, 2))}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


LAYERS.update(
    {
        "max_pooling2d": MaxPooling2D,
        "average_pooling2d": AveragePooling2D,
        "global_average_pooling2d": GlobalAveragePooling2D,
    }
)
