"""The pooling layers over images (channels last), on conv.py's windows: MaxPooling2D sends dA to the first maximum
of each window in row-major order (where TensorFlow sends it when a window has tied maxima), AveragePooling2D divides
by the number of real cells in the window (Keras's 'same' padding does not count the padded ones), and
GlobalAveragePooling2D averages over all positions. Registered in from_scratch.layers.LAYERS, as conv.py registers
its layers; still importable from from_scratch.conv."""

from __future__ import annotations

import numpy as np

from from_scratch.arch import LayerSpec
from from_scratch.conv import Pair, Windows, _image_shape, _padding, _pair, block_view
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
        X (N, H, W, C) -> A (N, Ho, Wo, C). Windows that tile the input (strides = pool_size, the default) take
        `_tiled_forward`, which gives the same bits with long inner loops; the others (and windows holding NaN) take
        the running maximum over the offsets' views."""
        self.xpad = self.windows.pad(x, -np.inf)
        self.first = None
        if self.strides == self.pool_size and np.issubdtype(x.dtype, np.floating) and x.size:
            a = self._tiled_forward(self.xpad)
            if a is not None:
                self.A = a
                return self.A
        slices = self.slices
        a = slices[0].copy()
        for cell in slices[1:]:
            np.maximum(cell, a, out=a)  # NaN propagates; on a tie NumPy keeps a, the earlier cell (seen in 0.0 vs -0.0)
        if np.isnan(a).any():  # a window holding NaN: its value is its first NaN, as np.argmax picks
            for cell in reversed(slices):
                np.copyto(a, cell, where=np.isnan(cell))
        self.A = a
        return self.A

    @property
    def slices(self) -> list[Array]:
        """Xpad[cells(p, q)] per offset (p, q), row-major: each a view (N, Ho, Wo, C) of the padded input."""
        return [self.xpad[self.windows.cells(p, q)] for p, q in self.windows.offsets]

    def _tiled_forward(self, xpad: Array) -> Array | None:
        """The maximum of windows that tile Xpad (strides = pool_size), and in `first` (N, Ho, Wo, C) the index
        p*pw + q of each window's first maximum in row-major order; None when a window holds NaN (the running
        maximum then decides, as before).

        The same running maximum over the offsets in row-major order, on contiguous copies of the offsets' cells
        (`_window_starts`: each window's C channels copied as one block, where NumPy would walk the offsets' views
        C values at a time):
            A = cell(0, 0);   for each later offset k = p*pw + q:  first = k where cell(p, q) > A,
                                                                  A = np.maximum(cell(p, q), A)
        np.maximum returns A on a tie (0.0 and -0.0 keep the earlier), so A has the running maximum's bits, and a
        later cell takes `first` only where it is strictly greater: the first maximum in row-major order, the cell
        the running maximum's masks choose."""
        if self.pool_size[0] * self.pool_size[1] > 255:
            return None
        n, hp, wp, c = xpad.shape
        x = np.ascontiguousarray(xpad).reshape(-1)
        (ph, pw), (ho, wo) = self.pool_size, self.windows.out_hw
        shape = (n, ho, wo, c)
        starts = (hp * wp * c, ph * wp * c, pw * c)  # window (n, i, j) starts at n*Hp*Wp*C + i*ph*Wp*C + j*pw*C
        a, first = None, np.zeros(shape, np.uint8)
        for k, (p, q) in enumerate(self.windows.offsets):
            cell = _window_starts(x[(p * wp + q) * c :], starts, shape)
            if a is None:
                a = cell
                continue
            later = np.greater(cell, a).view(np.uint8)
            np.maximum(first, np.multiply(later, np.uint8(k), out=later), out=first)  # k rises: the last win is k
            np.maximum(cell, a, out=a)
        if np.isnan(a).any():
            return None
        self.first = first
        return a

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
        dA (N, Ho, Wo, C) -> dX (N, H, W, C). After `_tiled_forward`, `_tiled_backward` (the same bits)."""
        if self.first is not None and dA.dtype == self.A.dtype and dA.shape == self.A.shape:
            return self._tiled_backward(dA)
        n, ho, wo, c = dA.shape
        routed = np.empty((n, ho, wo, *self.pool_size, c), dA.dtype)
        finite = np.isfinite(dA).all()
        for (p, q), hit in zip(self.windows.offsets, self.first_maxima()):
            if finite:
                np.multiply(dA, hit, out=routed[:, :, :, p, q])  # dA * 0 may be -0.0: col2im adds it as +0.0
            else:
                routed[:, :, :, p, q] = np.where(hit, dA, 0)  # inf * 0 would be NaN
        return self.windows.scatter(routed)

    def _tiled_backward(self, dA: Array) -> Array:
        """Windows that tile Xpad: dXpad[n, i*ph + p, j*pw + q, c] = dA[n, i, j, c] + 0.0 where p*pw + q is the
        window's first maximum (`first`), 0.0 in every other cell; the padding cropped.

        The same bits as routing dA * hit through col2im, where the chosen cell receives dA + 0.0 (col2im's
        `+= 0.0` turns -0.0 into 0.0; inf and NaN pass unchanged) and every other cell 0.0: here dA + 0.0 is put
        at the chosen cells' flat indices into zeros, one value per window, no multiplication (so no inf * 0)."""
        n, c = len(dA), dA.shape[3]
        (top, bottom), (left, right) = self.windows.pads
        hp, wp = self.windows.in_hw[0] + top + bottom, self.windows.in_hw[1] + left + right
        start, offset = self._flat_indices(n, c, hp, wp)
        dx = np.zeros((n, hp, wp, c), dA.dtype)
        dx.reshape(-1)[(start + offset.take(self.first)).reshape(-1)] = (dA + 0.0).reshape(-1)
        return dx[:, top : top + self.windows.in_hw[0], left : left + self.windows.in_hw[1]]

    def _flat_indices(self, n: int, c: int, hp: int, wp: int) -> tuple[Array, Array]:
        """(start (N, Ho, Wo, C): the flat index in Xpad of each window's cell (0, 0), offset (ph*pw,): what cell
        p*pw + q adds to it, p*Wp*C + q*C), kept for the next batch of the same size."""
        key = (n, c, hp, wp)
        if getattr(self, "_indices_key", None) != key:
            (ph, pw), (ho, wo) = self.pool_size, self.windows.out_hw
            rows, cols = np.arange(ho)[:, None, None] * ph * wp * c, np.arange(wo)[:, None] * pw * c
            start = np.arange(n)[:, None, None, None] * hp * wp * c + (rows + cols + np.arange(c))
            offset = (np.arange(ph)[:, None] * wp * c + np.arange(pw) * c).reshape(-1)
            self._indices, self._indices_key = (start, offset), key
        return self._indices

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """The maximum is exact: M_A = M_X at the chosen cell."""
        padded = self.windows.pad(x_terms)
        a_terms = np.zeros(self.A.shape, x_terms.dtype)
        for (p, q), hit in zip(self.windows.offsets, self.first_maxima()):
            np.copyto(a_terms, padded[self.windows.cells(p, q)], where=hit)
        return {"A": a_terms}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


def _window_starts(m: Array, strides: tuple[int, int, int], shape: tuple[int, int, int, int]) -> Array:
    """m (flat, C-contiguous) read at each window's start: out[n, i, j, :] = the C values from m[n*s0 + i*s1 + j*s2]
    (strides in values), shape (N, Ho, Wo, C). A window's C channels are adjacent, so each is copied as one block of
    C values (`block_view`), not one value at a time."""
    m = np.ascontiguousarray(m)
    return block_view(m, shape[:3], shape[3], 0, strides).copy().view(m.dtype).reshape(shape)


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
