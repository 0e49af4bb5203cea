"""The convolution step's faster code gives the same bits as the code it replaced.

from_scratch/pooling.py now runs MaxPooling2D's running maximum, for windows that tile the input (strides =
pool_size), on contiguous copies of the offsets' cells instead of strided views, keeps the index of each window's
first maximum, and puts dA + 0.0 at those cells' flat indices instead of masking per offset and calling col2im;
from_scratch/conv.py's Windows.gather (im2col) copies each window row as one block. None of this changes a value or
the order of an operation, so every array must be equal bit for bit: the frozen copy below is the committed version
before the change (89496a2: the Windows class, the pooling layers' forward and backward, Conv2D's im2col, col2im,
forward and backward, verbatim but for the names), and each case compares the bit patterns of the outputs, every
record, every parameter gradient and dL/dX, on random configurations (valid and same padding, strides below, equal
to and above the pool, odd sizes, dilation, 1x1 kernels, strided inputs, a shared layer) with ties, signed zeros,
infinities and NaNs in the inputs and in dA, in float32 and float64 (float16 for the strided inputs).

One change since is not bit for bit, and is compared apart: for one input channel (a grey image) Conv2D.im2col makes
cols as the transpose of a contiguous (kh*kw, N*Ho*Wo) array, about 3x faster to fill, so the products cols @ K and
cols.T @ dZ hand the BLAS the other layout of the same matrix. The BLAS may then add the same terms in another
order (OpenBLAS's float32 kernels do: dK differs in the last bits). The frozen layer therefore makes its one-channel
cols column-major too (`FrozenConv2D.layout_as_new`), so that every other operation is still compared bit for bit,
and `test_one_channel_products_in_the_new_layout_stay_within_a_rounding_bound` compares the two layouts' products
against the bound that any order of summation obeys. Parity with Keras is unchanged (tests/test_conv_parity.py).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from same_bits import check_the_comparison, differing_bits

from from_scratch import Sequential
from from_scratch.arch import window_geometry
from from_scratch.conv import Conv2D, Windows
from from_scratch.errors import BadInputError
from from_scratch.pooling import AveragePooling2D, MaxPooling2D, _Pooling

Array = np.ndarray
Pair = tuple[int, int]
Shape = tuple[int, ...]


# ----- the committed version before the change (89496a2), verbatim but for the names -----------------------------
class FrozenWindows:
    """The sliding-window geometry of one layer along height and width: output size, padding, and the movements
    between an input and its windows.

    cells(p, q)  the index of offset (p, q) of every window in Xpad: Xpad[cells(p, q)] (N, Ho, Wo, C) holds
                 Xpad[n, i*s_h + p*d_h, j*s_w + q*d_w, c] for all n, i, j, c (a strided view, no copy)
    patches(X)   (N, H, W, C) -> (N, Ho, Wo, kh, kw, C): a view of every window (im2col before the reshape)
    gather(X)    the same windows copied into a contiguous array, one strided slice copy per offset (p, q)
    scatter(dP)  (N, Ho, Wo, kh, kw, C) -> (N, H, W, C): each window's gradient added back into the cells it
                 read (col2im), the padding cropped

    Looping over the kh*kw offsets and moving all windows at once is fast in NumPy: each step is one strided slice
    of N*Ho*Wo*C values, where a (N, Ho, Wo, kh, kw, C) view would be walked a few values at a time.
    """

    def __init__(self, input_shape: Shape, size: Pair, strides: Pair, dilation: Pair, padding: str) -> None:
        self.size, self.strides, self.dilation, self.padding = size, strides, dilation, padding
        self.in_hw = input_shape[:2]
        geometry = [window_geometry(input_shape[a], size[a], strides[a], dilation[a], padding) for a in range(2)]
        self.out_hw = (geometry[0][0], geometry[1][0])
        self.pads = ((geometry[0][1], geometry[0][2]), (geometry[1][1], geometry[1][2]))

    @property
    def offsets(self) -> list[Pair]:
        """The kernel offsets (p, q) in row-major order: (0, 0), (0, 1), ..., (kh - 1, kw - 1)."""
        return [(p, q) for p in range(self.size[0]) for q in range(self.size[1])]

    def cells(self, p: int, q: int) -> tuple[slice, slice, slice]:
        """The index of offset (p, q) in every window: Xpad[cells(p, q)][n, i, j, c] = Xpad[n, i*s_h + p*d_h,
        j*s_w + q*d_w, c], shape (N, Ho, Wo, C). Within one offset no cell of Xpad repeats."""
        (sh, sw), (dh, dw), (ho, wo) = self.strides, self.dilation, self.out_hw
        rows = slice(p * dh, p * dh + sh * (ho - 1) + 1, sh)
        cols = slice(q * dw, q * dw + sw * (wo - 1) + 1, sw)
        return (slice(None), rows, cols)

    def pad(self, x: Array, value: float = 0.0) -> Array:
        """X (N, H, W, C) -> Xpad (N, H + pad_h, W + pad_w, C); 'same' puts the odd cell after (bottom, right)."""
        if self.pads == ((0, 0), (0, 0)):
            return x
        (top, bottom), (left, right) = self.pads
        n, h, w, c = x.shape
        xpad = np.full((n, h + top + bottom, w + left + right, c), value, x.dtype)
        xpad[:, top : top + h, left : left + w] = x
        return xpad

    def patches(self, x: Array, value: float = 0.0) -> Array:
        """Every window of X, padded with `value`: (N, Ho, Wo, kh, kw, C), a strided view (no copy)."""
        (kh, kw), (sh, sw), (dh, dw) = self.size, self.strides, self.dilation
        span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        view = sliding_window_view(self.pad(x, value), span, axis=(1, 2))  # (N, H', W', C, span_h, span_w)
        view = view[:, ::sh, ::sw, :, ::dh, ::dw][:, : self.out_hw[0], : self.out_hw[1]]
        return view.transpose(0, 1, 2, 4, 5, 3)

    def gather(self, x: Array, value: float = 0.0) -> Array:
        """patches(X) copied into a contiguous (N, Ho, Wo, kh, kw, C) array: P[:, :, :, p, q] = Xpad[cells(p, q)],
        one strided slice copy per offset (p, q)."""
        xpad = self.pad(x, value)
        out = np.empty((len(x), *self.out_hw, *self.size, x.shape[3]), x.dtype)
        for p, q in self.offsets:
            out[:, :, :, p, q] = xpad[self.cells(p, q)]
        return out

    @property
    def disjoint(self) -> bool:
        """A sufficient test that no two windows share a cell: the stride at least the window's span d (k - 1) + 1
        on both axes (pooling's default, strides = pool_size). Not a necessary one: dilated windows can interleave
        without sharing a cell (k = 2, d = 3, s = 2); those take the adding path, which gives the same result."""
        return all(s >= d * (k - 1) + 1 for s, d, k in zip(self.strides, self.dilation, self.size))

    def scatter(self, d_patches: Array) -> Array:
        """col2im: dXpad[n, i*s + p*d, j*s + q*d, c] += dP[n, i, j, p, q, c] for every window (i, j) and offset
        (p, q), then the padding cropped.  (N, Ho, Wo, kh, kw, C) -> (N, H, W, C).

        One strided slice per kernel offset (p, q) covers every window at once; within a slice no cell repeats,
        so `+=` on it is exact, and the loop over offsets accumulates what overlapping windows share. When the
        windows are disjoint every cell receives at most one value, so `=` does the same (and copies faster);
        adding 0.0 afterwards turns -0.0 into 0.0, as adding it into the zeros would."""
        (top, bottom), (left, right) = self.pads
        n, c = d_patches.shape[0], d_patches.shape[-1]
        dx = np.zeros((n, self.in_hw[0] + top + bottom, self.in_hw[1] + left + right, c), d_patches.dtype)
        if self.disjoint:
            for p, q in self.offsets:
                dx[self.cells(p, q)] = d_patches[:, :, :, p, q]
            dx += 0.0
        else:
            for p, q in reversed(self.offsets):  # the windows in row-major order, as TensorFlow's MaxPoolGrad adds
                cells = dx[self.cells(p, q)]  # them: a cell's window (i, j) = (r - p, c - q) / s rises as p, q fall
                cells += d_patches[:, :, :, p, q]
        return dx[:, top : top + self.in_hw[0], left : left + self.in_hw[1]]


def _add_bias(z: Array, b: Array) -> Array:
    """Z + b for Z (N, Ho*Wo*F) in (i, j, f) order and b (F,): b repeated Ho*Wo times, so that NumPy adds whole
    rows (Z + b on (N*Ho*Wo, F) adds F values at a time, several times slower). The same additions, in place."""
    z += np.tile(b, z.shape[1] // len(b))
    return z


def _sum_rows(m: Array) -> Array:
    """m (R, F) -> (F,): m[0] + m[1] + ... + m[R-1], one row after another, as m.sum(axis=0) adds them.
    np.einsum("rf->f") makes the same additions in the same order with less work per row; with one column (or
    another layout) einsum adds in another order than sum(), so sum() stays there."""
    if m.shape[1] > 1 and m.flags.c_contiguous:
        return np.einsum("rf->f", m)
    return m.sum(axis=0)


class FrozenMaxPooling2D(_Pooling):
    """MaxPooling2D with the arithmetic of commit 89496a2 (its `slices` an attribute again)."""

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


class FrozenAveragePooling2D(AveragePooling2D):
    """AveragePooling2D's forward and backward of commit 89496a2."""

    def forward(self, x: Array, training: bool = False) -> Array:
        self.A = self.windows.patches(x).sum(axis=(3, 4)) / self.count
        return self.A

    def backward(self, dA: Array) -> Array:
        """dX = col2im(dA / count broadcast over each window).  dA (N, Ho, Wo, C) -> dX (N, H, W, C)."""
        share = (dA / self.count)[:, :, :, None, None, :]
        ph, pw = self.pool_size
        return self.windows.scatter(np.broadcast_to(share, (*dA.shape[:3], ph, pw, dA.shape[3])))


class FrozenConv2D(Conv2D):
    """Conv2D's im2col, col2im, forward and backward of commit 89496a2, and one change since: for one input channel
    (`layout_as_new`), cols handed to the BLAS in column-major layout, as Conv2D.im2col now makes it (see the module
    docstring)."""

    layout_as_new = True

    def im2col(self, x: Array) -> Array:
        """X (N, H, W, C) -> cols (N*Ho*Wo, kh*kw*C): one row per window, in (p, q, c) order, matching the
        kernel's (kh, kw, C) rows."""
        patches = self.windows.patches(x)
        rows = (-1, int(np.prod(patches.shape[3:])))
        try:
            return patches.reshape(rows, copy=False)  # the windows are already a matrix (a 1x1 kernel): a view
        except ValueError:  # the usual case: the reshape needs a copy; gathering by offsets is the fast one
            return self.windows.gather(x).reshape(rows)
        except TypeError:  # NumPy < 2.1 (no copy=): reshape copies when it must
            return patches.reshape(rows)

    def col2im(self, d_cols: Array, n: int) -> Array:
        """d_cols (N*Ho*Wo, kh*kw*C) -> dX (N, H, W, C): the transpose of im2col (overlaps added)."""
        ho, wo = self.windows.out_hw
        return self.windows.scatter(d_cols.reshape(n, ho, wo, *self.kernel_size, -1))

    def forward(self, x: Array, training: bool = False) -> Array:
        """Z = im2col(X) @ K_m + b, A = f(Z).  X (N, H, W, C) -> A (N, Ho, Wo, F)."""
        if self.K is None:
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")
        self.X = x
        self.cols = self.im2col(x)
        if self.layout_as_new and x.shape[3] == 1 and self.kernel_size != (1, 1):
            self.cols = np.asfortranarray(self.cols)  # the same values; the products see the new layout
        z = self.cols @ self.K.reshape(-1, self.filters)  # (N*Ho*Wo, F)
        z = _add_bias(z.reshape(len(x), -1), self.b) if self.use_bias else z
        self.Z = z.reshape(len(x), *self.windows.out_hw, self.filters)
        self.A = self.activation.forward(self.Z)
        return self.A

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dZ = f'(Z) * dA; dK = cols.T @ dZ_m, db = sum dZ_m, dX = col2im(dZ_m @ K_m.T).  dA (N, Ho, Wo, F) ->
        dX (N, H, W, C) (None when input_grad is False: the first layer of a training step)."""
        if not hasattr(self, "Z"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        self.dA = dA
        self.dZ = self.activation.backward(self.Z, self.A, dA)
        dz = self.dZ.reshape(-1, self.filters)
        self.dK = (self.cols.T @ dz).reshape(self.K.shape)
        self.db = _sum_rows(dz)
        if not input_grad:
            return None
        return self.col2im(dz @ self.K.reshape(-1, self.filters).T, len(dA))


def freeze(layer: object) -> object:
    """The layer, built, switched to the frozen arithmetic and windows (its weights kept)."""
    frozen = {MaxPooling2D: FrozenMaxPooling2D, AveragePooling2D: FrozenAveragePooling2D, Conv2D: FrozenConv2D}
    w = layer.windows
    layer.__class__ = frozen[type(layer)]
    layer.windows = FrozenWindows((*w.in_hw, 1), w.size, w.strides, w.dilation, w.padding)
    return layer


def built_pair(make, shape, dtype: str, seed: int = 0) -> tuple[object, object]:
    """Two layers from `make()`, built alike for inputs of `shape` (the same weights from the same seed); the second
    switched to the frozen arithmetic."""
    new, old = make(), make()
    for layer in (new, old):
        layer.build(shape, np.dtype(dtype), np.random.default_rng(seed))
    return new, freeze(old)


# ----- the comparison --------------------------------------------------------------------------------------------
def same(a, b, where: str) -> None:
    assert differing_bits(a, b) is None, f"{where}: {differing_bits(a, b)}"


KINDS = ("plain", "ties", "zeros", "nonfinite", "nan_windows", "relu")


def images(rng: np.random.Generator, shape: Shape, dtype: str, kind: str) -> Array:
    """Random images with ties (values on a coarse grid: tied maxima in many windows), signed zeros (whole windows
    of +-0 in both orders), infinities and NaNs planted, or half of them 0 (a ReLU's output)."""
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    if kind == "ties":
        x[...] = rng.integers(-2, 3, shape)
    elif kind == "zeros":
        x[...] = np.where(rng.random(shape) < 0.5, 0.0, -0.0)
        x[..., 0] = -np.abs(x[..., 0])
        x[: len(x) // 2] *= rng.integers(0, 2, x[: len(x) // 2].shape)  # some windows of +0 and -0 with -1s
    elif kind == "nonfinite":
        at = rng.choice(flat.size, min(flat.size, 12), replace=False)
        flat[at] = np.resize([np.inf, -np.inf, np.inf, -np.inf, 0.0, -0.0], at.size)
        x[0] = -np.inf  # a whole sample of -inf: every window tied (and, with 'same', tied with the padding)
    elif kind == "nan_windows":
        at = rng.choice(flat.size, min(flat.size, 6), replace=False)
        flat[at] = [np.nan, -np.nan, np.inf, -np.inf, np.nan, 0.0][: at.size]
        flat.view(f"u{x.itemsize}")[at[0]] |= 1  # a NaN of another payload
    elif kind == "relu":
        x = np.maximum(x, 0)
    return x


def gradient(rng: np.random.Generator, shape: Shape, dtype: str, trial: int) -> Array:
    """dA: plain, or with -0.0, or with inf and NaN (every other trial), so that the +0.0 rule and inf * 0 show."""
    d = rng.standard_normal(shape).astype(dtype)
    if trial % 3 == 1:
        d[rng.random(shape) < 0.3] = -0.0
    elif trial % 3 == 2:
        flat = d.reshape(-1)
        at = rng.choice(flat.size, min(flat.size, 4), replace=False)
        flat[at] = [np.inf, -np.inf, np.nan, -0.0][: at.size]
    return d


POOLS = [
    # (pool_size, strides, padding, input (H, W, C))
    ((2, 2), None, "valid", (6, 6, 3)),
    ((2, 2), None, "valid", (7, 5, 2)),  # odd sizes: the last row and column in no window
    ((2, 2), None, "same", (7, 5, 2)),  # the odd cell padded (-inf) at the bottom and right
    ((3, 3), None, "same", (7, 8, 1)),  # padding on both sides
    ((3, 2), None, "valid", (9, 7, 4)),
    ((1, 3), None, "valid", (4, 9, 2)),
    ((2, 1), None, "same", (5, 3, 3)),
    ((1, 1), None, "valid", (3, 4, 2)),
    ((4, 4), None, "valid", (8, 9, 8)),
    ((3, 3), (1, 1), "valid", (6, 6, 2)),  # overlapping windows: their gradients add
    ((3, 3), (2, 2), "same", (7, 6, 2)),
    ((2, 2), (3, 3), "valid", (8, 8, 2)),  # strides above the pool: cells in no window
    ((2, 3), (1, 2), "same", (5, 7, 3)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", range(len(POOLS)))
def test_max_pooling_gives_the_old_bits(dtype: str, index: int) -> None:
    pool, strides, padding, shape = POOLS[index]
    rng = np.random.default_rng(10 + index)
    with np.errstate(all="ignore"):
        for trial, kind in enumerate(KINDS * 2):
            where = f"pool {pool}, strides {strides}, {padding}, {shape}, {dtype}, inputs {kind}, trial {trial}"
            new, old = built_pair(partial(MaxPooling2D, pool, strides, padding), shape, dtype)
            x = images(rng, (3, *shape), dtype, kind)
            before = x.copy()
            same(new.forward(x, training=True), old.forward(x, training=True), f"{where}: A")
            same(x, before, f"{where}: the input (never written)")
            for a, b in zip(new.first_maxima(), old.first_maxima()):
                same(a, b, f"{where}: first maxima")
            same(new.forward_terms(np.abs(x))["A"], old.forward_terms(np.abs(x))["A"], f"{where}: forward terms")
            d = gradient(rng, new.A.shape, dtype, trial)
            same(new.backward(d), old.backward(d), f"{where}: dL/dX")
            same(new.backward(d.astype("float64")), old.backward(d.astype("float64")), f"{where}: float64 dA")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_pooling_and_im2col_of_strided_inputs_give_the_old_bits(dtype: str) -> None:
    """Inputs that are views (every other channel, a flipped width) and float16: copied or walked, the same bits."""
    rng = np.random.default_rng(99)
    with np.errstate(all="ignore"):
        for trial, kind in enumerate(KINDS):
            big = images(rng, (3, 6, 7, 6), dtype, kind)
            for x in (big[..., ::2], big[:, :, ::-1, :3]):
                for pool, padding in (((2, 2), "valid"), ((3, 2), "same")):
                    new, old = built_pair(partial(MaxPooling2D, pool, padding=padding), x.shape[1:], dtype)
                    same(new.forward(x, training=True), old.forward(x, training=True), f"{kind}, {pool}: A")
                    d = gradient(rng, new.A.shape, dtype, trial)
                    same(new.backward(d), old.backward(d), f"{kind}, {pool}: dL/dX")
                new, old = built_pair(partial(Conv2D, 2, 3, padding="same"), x.shape[1:], dtype)
                same(new.im2col(x), old.im2col(x), f"{kind}: cols")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", range(len(POOLS)))
def test_average_pooling_gives_the_old_bits(dtype: str, index: int) -> None:
    pool, strides, padding, shape = POOLS[index]
    rng = np.random.default_rng(40 + index)
    with np.errstate(all="ignore"):
        for trial, kind in enumerate(KINDS):
            where = f"pool {pool}, strides {strides}, {padding}, {shape}, {dtype}, inputs {kind}"
            new, old = built_pair(partial(AveragePooling2D, pool, strides, padding), shape, dtype)
            x = images(rng, (3, *shape), dtype, kind)
            same(new.forward(x), old.forward(x), f"{where}: A")
            d = gradient(rng, new.A.shape, dtype, trial)
            same(new.backward(d), old.backward(d), f"{where}: dL/dX")


CONVS = [
    # (filters, kernel_size, strides, padding, dilation, activation, use_bias, input (H, W, C))
    (8, 3, 1, "valid", 1, "relu", True, (28, 28, 1)),
    (8, 3, 1, "valid", 1, "relu", True, (8, 8, 1)),
    (4, 3, 2, "same", 1, "tanh", True, (7, 9, 3)),
    (5, (2, 3), (1, 2), "valid", 1, "linear", False, (6, 7, 2)),
    (3, 3, 1, "same", (2, 1), "relu", True, (7, 7, 2)),  # dilation along the height only: rows as blocks
    (3, 3, 1, "valid", (1, 2), "sigmoid", True, (7, 8, 2)),  # dilation along the width: per offset
    (3, 2, 1, "same", 2, "relu", True, (6, 5, 3)),
    (6, 1, 1, "valid", 1, "relu", True, (5, 5, 4)),  # 1x1: the windows are a view
    (4, 1, 2, "valid", 1, "elu", True, (7, 7, 3)),  # 1x1 with strides: gathered
    (16, 3, 1, "valid", 1, "relu", True, (10, 10, 16)),
    (4, 3, 2, "same", 1, "relu", True, (9, 7, 1)),  # one channel (the transposed cols), padded and strided
    (3, (2, 3), 1, "same", (2, 1), "tanh", False, (8, 9, 1)),  # one channel, dilated and padded, no bias
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", range(len(CONVS)))
def test_conv2d_gives_the_old_bits(dtype: str, index: int) -> None:
    filters, kernel, strides, padding, dilation, activation, use_bias, shape = CONVS[index]
    rng = np.random.default_rng(70 + index)
    options = dict(strides=strides, padding=padding, dilation_rate=dilation, activation=activation, use_bias=use_bias)
    with np.errstate(all="ignore"):
        for trial, kind in enumerate(KINDS):
            where = f"conv {CONVS[index][:7]}, {shape}, {dtype}, inputs {kind}"
            new, old = built_pair(partial(Conv2D, filters, kernel, **options), shape, dtype, seed=index)
            if use_bias:
                for layer in (new, old):
                    layer.b[...] = np.where(np.arange(filters) % 2, -0.0, 0.25)
            x = images(rng, (3, *shape), dtype, kind)
            same(new.forward(x, training=True), old.forward(x, training=True), f"{where}: A")
            same(new.cols, old.cols, f"{where}: cols")
            for name in ("Z", "A"):
                same(getattr(new, name), getattr(old, name), f"{where}: {name}")
            d = gradient(rng, new.A.shape, dtype, trial)
            same(new.backward(d), old.backward(d), f"{where}: dL/dX")
            for name, a, b in zip(new.weight_names, new.grads, old.grads):
                same(a, b, f"{where}: gradient of {name}")
            for name, a in new.record().items():
                same(a, old.record()[name], f"{where}: record {name}")
            assert new.backward(d, input_grad=False) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "arch",
    [
        "28x28x1-conv8k3-pool2-flatten-10",
        "8x8x1-conv8k3-pool2-flatten-10",
        "9x9x2-conv4k3:tanh:same-pool3:same-conv3k2-avgpool2-flatten-5",
        "16x16x16-conv32k3-pool2-flatten-10",
    ],
)
def test_training_steps_give_the_old_bits(arch: str, dtype: str) -> None:
    """Whole training steps (the benchmark's networks among them): the loss, every record, every gradient and the
    weights after three SGD steps, new layers against frozen ones from the same weights."""
    rng = np.random.default_rng(5)
    models = [Sequential.from_architecture(arch, dtype=dtype, seed=1) for _ in range(2)]
    for layer in models[1].layers:
        if isinstance(layer, (MaxPooling2D, AveragePooling2D, Conv2D)):
            freeze(layer)
    x = rng.standard_normal((16, *models[0].input_shape)).astype(dtype)
    x[:4] = np.maximum(x[:4], 0)  # zero regions: tied windows after the ReLU
    y = np.eye(models[0].output_dim, dtype=dtype)[rng.integers(0, models[0].output_dim, 16)]
    results = [m.backward_pass(x, y, input_grad=True) for m in models]
    same(results[0].loss, results[1].loss, "loss")
    same(results[0].input_grad, results[1].input_grad, "dL/dX")
    for k, (a, b) in enumerate(zip(results[0].grads, results[1].grads)):
        same(a, b, f"gradient {k}")
    for i, (ra, rb) in enumerate(zip(results[0].records, results[1].records)):
        assert ra.keys() == rb.keys(), f"node {i}: records {sorted(ra)} vs {sorted(rb)}"
        for name in ra:
            same(ra[name], rb[name], f"node {i}: record {name}")
    for m in models:
        m.compile("sgd", "categorical_crossentropy")
        for _ in range(3):
            m.train_step(x, y)
    for k, (a, b) in enumerate(zip(models[0].get_weights(), models[1].get_weights())):
        same(a, b, f"weight {k} after three steps")


def test_the_bit_comparison_catches_one_ulp_a_zero_sign_a_nan_payload_and_a_flipped_tie_rule() -> None:
    """The checks above fail on a wrong answer, down to the smallest one: one ulp, the sign of a zero, a NaN's
    payload, and a frozen copy whose tie rule sends dA to the last maximum instead of the first."""
    check_the_comparison()
    a = np.array([1.0, 0.0, np.nan], "float32")
    payload = a.copy()
    payload.view("u4")[2] ^= 1
    assert np.isnan(payload[2]) and differing_bits(a, payload) is not None

    class LastMaximum(FrozenMaxPooling2D):
        def first_maxima(self):
            masks = super().first_maxima()
            taken = np.zeros(self.A.shape, bool)
            out = []
            for cell in reversed(self.slices):  # the planted change: the last maximum in row-major order
                hit = (cell == self.A) & ~taken
                taken |= hit
                out.append(hit)
            return out[::-1] if masks else masks

    class LaterZero(FrozenMaxPooling2D):
        def forward(self, x, training=False):
            a = super().forward(x, training)
            for cell in self.slices[1:]:
                np.maximum(a, cell, out=a)  # the planted change: on a tie of 0.0 and -0.0 the later cell
            return a

    rng = np.random.default_rng(0)
    x = images(rng, (2, 6, 6, 3), "float32", "ties")
    d = rng.standard_normal((2, 3, 3, 3)).astype("float32")
    new = MaxPooling2D(2)
    new.build((6, 6, 3), np.dtype("float32"), rng)
    new.forward(x, training=True)
    for planted, what in ((LastMaximum, "dL/dX"), (LaterZero, "A")):
        old = MaxPooling2D(2)
        old.build((6, 6, 3), np.dtype("float32"), rng)
        freeze(old)
        old.__class__ = planted
        xs = images(rng, (2, 6, 6, 3), "float32", "zeros") if planted is LaterZero else x
        a_new, a_old = new.forward(xs, training=True), old.forward(xs, training=True)
        found = differing_bits(new.backward(d), old.backward(d)) if what == "dL/dX" else differing_bits(a_new, a_old)
        assert found is not None, f"the planted {planted.__name__} was not caught"


def test_the_fast_paths_are_taken() -> None:
    """The cases above exercise the new code: tiling windows keep their first maxima from the forward pass, and NaN
    windows and overlapping ones take the running maximum."""
    rng = np.random.default_rng(1)
    pool = MaxPooling2D(2)
    pool.build((6, 6, 2), np.dtype("float64"), rng)
    pool.forward(images(rng, (2, 6, 6, 2), "float64", "ties"))
    assert pool.first is not None
    pool.forward(images(rng, (2, 6, 6, 2), "float64", "nan_windows"))
    assert pool.first is None
    overlapping = MaxPooling2D(2, strides=1)
    overlapping.build((6, 6, 2), np.dtype("float64"), rng)
    overlapping.forward(images(rng, (2, 6, 6, 2), "float64", "plain"))
    assert overlapping.first is None
    windows = Windows((6, 6, 2), (3, 3), (1, 1), (1, 1), "valid")
    x = rng.standard_normal((2, 6, 6, 2))
    same(windows.gather(x), FrozenWindows((6, 6, 2), (3, 3), (1, 1), (1, 1), "valid").gather(x), "gather")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_pooling_layer_shared_by_two_calls_gives_the_old_bits(dtype: str) -> None:
    """One MaxPooling2D called on two tensors of a graph: each call keeps its own first maxima (the model's snapshots
    of the layer's caches), so both calls' records and the gradients are the frozen layer's, bit for bit."""
    from from_scratch import Add, Dense, Flatten, Input, Model

    def build() -> Model:
        a, b = Input((8, 8, 2)), Input((8, 8, 2))
        pool = MaxPooling2D(2)
        h = Add()([pool(Conv2D(2, 3, padding="same", activation="relu")(a)), pool(b)])
        return Model([a, b], Dense(3, activation="softmax")(Flatten()(h)), dtype=dtype, seed=2)

    models = [build(), build()]
    for layer in models[1].layers:
        if isinstance(layer, (MaxPooling2D, Conv2D)):
            freeze(layer)
    rng = np.random.default_rng(3)
    xs = [images(rng, (4, 8, 8, 2), dtype, "ties"), images(rng, (4, 8, 8, 2), dtype, "plain")]
    y = np.eye(3, dtype=dtype)[[0, 1, 2, 1]]
    results = [m.backward_pass(xs, y, input_grad=True) for m in models]
    for k, (a, b) in enumerate(zip(results[0].grads, results[1].grads)):
        same(a, b, f"gradient {k}")
    for k, (a, b) in enumerate(zip(results[0].input_grad, results[1].input_grad)):
        same(a, b, f"dL/dx[{k}]")
    for i, (ra, rb) in enumerate(zip(results[0].records, results[1].records)):
        for name in ra:
            if name != "grads":
                same(ra[name], rb[name], f"node {i}: record {name}")


def within_summation_bound(new: Array, old: Array, magnitude: Array, terms: int, where: str) -> None:
    """new and old, two sums of the same `terms` products in any order, each within gamma_k |terms| of the exact
    sum (Higham's bound, gamma_k = k u / (1 - k u), u the unit roundoff), so within 2 gamma_k of each other;
    `magnitude` is the sum of the terms' magnitudes (|A| @ |B|, computed in float64)."""
    u = np.finfo(new.dtype).eps / 2
    gamma = terms * u / (1 - terms * u)
    excess = np.abs(new.astype(np.float64) - old.astype(np.float64)) - 2 * gamma * magnitude
    assert excess.max() <= 0, f"{where}: the layouts' products differ beyond 2 gamma_{terms} by {excess.max():.3g}"


ONE_CHANNEL = [index for index, conv in enumerate(CONVS) if conv[-1][2] == 1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", ONE_CHANNEL)
def test_one_channel_products_in_the_new_layout_stay_within_a_rounding_bound(dtype: str, index: int) -> None:
    """The one change not bit for bit (module docstring): for one channel, cols @ K and cols.T @ dZ in the new
    column-major cols against the old row-major cols, the values of cols themselves equal bit for bit."""
    filters, kernel, strides, padding, dilation, activation, use_bias, shape = CONVS[index]
    rng = np.random.default_rng(90 + index)
    options = dict(strides=strides, padding=padding, dilation_rate=dilation, activation=activation, use_bias=use_bias)
    for kind in ("plain", "ties", "zeros", "relu"):
        where = f"conv {CONVS[index][:7]}, {shape}, {dtype}, inputs {kind}"
        new, old = built_pair(partial(Conv2D, filters, kernel, **options), shape, dtype, seed=index)
        old.layout_as_new = False
        x = images(rng, (3, *shape), dtype, kind)
        new.forward(x, training=True), old.forward(x, training=True)
        assert new.cols.flags.f_contiguous and old.cols.flags.c_contiguous, "the two layouts are not compared"
        same(new.cols, old.cols, f"{where}: cols")
        k = new.K.reshape(-1, filters)
        dz = rng.standard_normal((len(new.cols), filters)).astype(dtype)
        cols64 = np.abs(new.cols.astype(np.float64))
        within_summation_bound(new.cols @ k, old.cols @ k, cols64 @ np.abs(k.astype(np.float64)), k.shape[0], where)
        within_summation_bound(
            new.cols.T @ dz, old.cols.T @ dz, cols64.T @ np.abs(dz.astype(np.float64)), len(dz), f"{where}, dK"
        )


def test_the_rounding_bound_catches_a_dropped_term() -> None:
    """A product with one window's offset dropped (one column of cols zeroed) is far outside the bound."""
    new, old = built_pair(partial(Conv2D, 8, 3), (28, 28, 1), "float32")
    old.layout_as_new = False
    x = np.random.default_rng(4).standard_normal((2, 28, 28, 1)).astype("float32")
    new.forward(x), old.forward(x)
    k = new.K.reshape(-1, 8)
    wrong = old.cols.copy()
    wrong[:, 4] = 0
    magnitude = np.abs(new.cols.astype(np.float64)) @ np.abs(k.astype(np.float64))
    within_summation_bound(new.cols @ k, old.cols @ k, magnitude, 9, "the right product")
    with pytest.raises(AssertionError, match="beyond 2 gamma_9"):
        within_summation_bound(new.cols @ k, wrong @ k, magnitude, 9, "one term dropped")
