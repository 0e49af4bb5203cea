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
        a = self.slices[0].copy()
        for cell in self.slices[1:]:
            np.maximum(cell, a, out=a)  # NaN propagates; on a tie NumPy keeps a, the earlier cell (seen in 0.0 vs -0.0)
        if np.isnan(a).any():  # a window holding NaN: its value is its first NaN, as np.argmax picks
            for cell in reversed(self.slices):
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

        With L = Wo*pw*C, Xpad's covered rows are X4 (N, Ho, ph, L): the windows' row p of window row i, every
        window side by side. The first maximum is taken in row-major order in two stages whose inner loops run
        along L (NumPy walks 8 channels at a time otherwise):
            within each row, over q:  M[k] = first-max(X4[k], X4[k + C], ..., X4[k + (pw - 1) C])
            over the rows p:          A[k] = first-max(M[p = 0, k], M[p = 1, k], ...)
        meaningful where k is a window's first column (k = j*pw*C + c), then read there. first-max(a, b) is
        np.maximum(b, a), which returns a on a tie (so 0.0 and -0.0 keep the earlier, as the running maximum
        does), and a later cell wins only where b > a; taking the first maximum of each row and then the first of
        those is the first maximum of the window in row-major order (the rule is associative), so A has the running
        maximum's bits and `first` points to the cell the running maximum's masks choose."""
        (ph, pw), (ho, wo) = self.pool_size, self.windows.out_hw
        if ph * pw > 255:
            return None
        n, c = len(xpad), xpad.shape[3]
        row = wo * pw * c
        span = row - (pw - 1) * c
        x4 = xpad[:, : ho * ph, : wo * pw].reshape(n, ho, ph, row)
        m, q_at = x4[..., :span], None
        for q in range(1, pw):
            later = x4[..., q * c : q * c + span]
            wins = np.greater(later, m).view(np.uint8)
            q_at = wins if q_at is None else np.maximum(q_at, wins * np.uint8(q))
            m = np.maximum(later, m) if q == 1 else np.maximum(later, m, out=m)
        a, p_at = m[:, :, 0], None
        for p in range(1, ph):
            later = m[:, :, p]
            wins = np.greater(later, a).view(np.uint8)
            p_at = wins if p_at is None else np.maximum(p_at, wins * np.uint8(p))
            a = np.maximum(later, a) if p == 1 else np.maximum(later, a, out=a)
        if np.isnan(a).any():
            return None
        if q_at is None:
            q_chosen = np.zeros((n, ho, span), np.uint8)
        else:
            q_chosen = q_at[:, :, 0].copy()  # the column chosen within the row the window's maximum is in
            for p in range(1, ph):
                in_row = np.negative(np.equal(p_at, p).view(np.uint8))  # 255 where row p holds it, else 0
                q_chosen ^= (q_chosen ^ q_at[:, :, p]) & in_row
        first = q_chosen if p_at is None else p_at * np.uint8(pw) + q_chosen
        self.first = _window_starts(first, n, ho, wo, pw, c)
        return _window_starts(a, n, ho, wo, pw, c)

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
        window's first maximum (`first`), else 0.0; cells no window covers 0.0; the padding cropped.

        The same bits as routing dA * hit through col2im: there a chosen cell receives dA + 0.0 (col2im's `+= 0.0`
        turns -0.0 into 0.0; inf and NaN pass unchanged) and every other cell 0.0. Here the chosen cells keep the
        bits of dA + 0.0 spread over the window (np.repeat), every other cell the bits of 0.0, by a bitwise AND with
        a mask of all ones or all zeros: no multiplication, so inf * 0 cannot appear, and the inner loops run along
        whole rows of windows."""
        (ph, pw), (ho, wo) = self.pool_size, self.windows.out_hw
        n, c = len(dA), dA.shape[3]
        row = wo * pw * c
        (top, bottom), (left, right) = self.windows.pads
        hp, wp = self.windows.in_hw[0] + top + bottom, self.windows.in_hw[1] + left + right
        bits = np.dtype(f"u{dA.itemsize}")
        first = np.repeat(self.first, pw, axis=2).reshape(n, ho, 1, row)
        chosen = np.negative(np.equal(first, self._cell_ids(c)).view(np.uint8), dtype=bits)  # all ones or zeros
        spread = np.repeat(dA + 0.0, pw, axis=2).reshape(n, ho, 1, row)
        covered = (ho * ph, wo * pw) == (hp, wp)
        dx = (np.empty if covered else np.zeros)((n, hp, wp, c), dA.dtype)
        it = dA.itemsize
        out = np.ndarray((n, ho, ph, row), bits, dx, 0, (hp * wp * c * it, ph * wp * c * it, wp * c * it, it))
        np.bitwise_and(spread.view(bits), chosen, out=out)
        return dx[:, top : top + self.windows.in_hw[0], left : left + self.windows.in_hw[1]]

    def _cell_ids(self, c: int) -> Array:
        """(ph, Wo*pw*C) uint8: p*pw + q at the position of cell (p, q) of every window in X4's layout."""
        (ph, pw), wo = self.pool_size, self.windows.out_hw[1]
        key = (c, wo)
        if getattr(self, "_ids_key", None) != key:
            ids = np.arange(ph, dtype=np.uint8)[:, None, None, None] * pw + np.arange(pw, dtype=np.uint8)[:, None]
            self._ids = np.ascontiguousarray(np.broadcast_to(ids, (ph, wo, pw, c))).reshape(ph, -1)
            self._ids_key = key
        return self._ids

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """The maximum is exact: M_A = M_X at the chosen cell."""
        padded = self.windows.pad(x_terms)
        a_terms = np.zeros(self.A.shape, x_terms.dtype)
        for (p, q), hit in zip(self.windows.offsets, self.first_maxima()):
            np.copyto(a_terms, padded[self.windows.cells(p, q)], where=hit)
        return {"A": a_terms}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


def _window_starts(m: Array, n: int, ho: int, wo: int, pw: int, c: int) -> Array:
    """m (N, Ho, S) (S >= (Wo - 1) pw C + C, its last axis in X4's layout) read at each window's first column:
    (N, Ho, Wo, C), out[n, i, j, c] = m[n, i, j*pw*C + c]. The C channels of a window are adjacent, so each is
    copied as one block of C values (a void element), not one value at a time."""
    m = np.ascontiguousarray(m)
    block = np.dtype((np.void, c * m.itemsize))
    starts = np.ndarray((n, ho, wo), block, m, 0, (m.strides[0], m.strides[1], pw * c * m.itemsize))
    return starts.copy().view(m.dtype).reshape(n, ho, wo, c)


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
