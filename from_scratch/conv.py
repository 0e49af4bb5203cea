"""Image layers in matrix form (channels last): X (N, H, W, C).

A convolution is one matrix product. `im2col` lays every window of the (padded) input out as a row,

    cols[(n, i, j), (p, q, c)] = Xpad[n, i*s_h + p*d_h, j*s_w + q*d_w, c]        (N*Ho*Wo, kh*kw*C)

so that with the kernel K (kh, kw, C, F) seen as the matrix K_m (kh*kw*C, F),

    Z = cols @ K_m + b                    (N*Ho*Wo, F) -> (N, Ho, Wo, F),   A = f(Z)

and the backward pass is the transpose of that product, exactly as in Dense:

    dK_m = cols.T @ dZ      db = sum over (n, i, j) of dZ      dcols = dZ @ K_m.T

with `col2im` sending each row of dcols back to the input cells its window read. Windows overlap when the stride
is smaller than the window, so col2im *adds* into a cell (a cell read by two windows receives both gradients);
assigning instead of adding is the classic bug it guards against (compare/zoo_conv.py).

Pooling uses the same windows (`Windows`): the pooling layers are in from_scratch/pooling.py. This module holds the
windows, Conv2D, Reshape and Flatten.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from from_scratch.activations import Activation, get_activation
from from_scratch.arch import LayerSpec, window_geometry
from from_scratch.errors import BadInputError
from from_scratch.layers import LAYERS, Layer, Shape, activation_terms

Array = np.ndarray
Pair = tuple[int, int]


def _pair(value: int | tuple[int, int] | list[int], what: str, layer: str) -> Pair:
    """3 -> (3, 3); (3, 2) -> (3, 2): a positive int or a pair of them, as Keras's arguments."""
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise BadInputError(f"{layer}: {what} must be a positive integer or a pair of them, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _padding(value: str, layer: str) -> str:
    if value not in ("valid", "same"):
        raise BadInputError(f"{layer}: padding must be 'valid' or 'same', got {value!r}")
    return value


def window_options(
    where: str, kernel_size: Any, strides: Any, padding: Any, dilation_rate: Any, use_bias: Any
) -> tuple[Pair, Pair, str, Pair, bool]:
    """(kernel_size, strides, padding, dilation_rate, use_bias) of a convolution (Conv2D, DepthwiseConv2D) checked as
    Keras checks them, `where` naming the layer ("Conv2D 'c'"): pairs of positive integers, 'valid' or 'same',
    strides > 1 or dilation > 1 but not both, use_bias a bool."""
    kernel_size, strides = _pair(kernel_size, "kernel_size", where), _pair(strides, "strides", where)
    padding, dilation_rate = _padding(padding, where), _pair(dilation_rate, "dilation_rate", where)
    if strides != (1, 1) and dilation_rate != (1, 1):
        raise BadInputError(
            f"{where}: strides {strides} with dilation_rate {dilation_rate}: Keras's {where.split()[0]} takes "
            "strides > 1 or dilation > 1, not both"
        )
    if not isinstance(use_bias, (bool, np.bool_)):
        raise BadInputError(f"{where}: use_bias must be True or False, got {use_bias!r}")
    return kernel_size, strides, padding, dilation_rate, bool(use_bias)


class Windows:
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
        one strided slice copy per offset (p, q), or, without dilation along the width, one per kernel row p.

        Without dilation along the width, a window's row p is kw*C adjacent values of Xpad (Xpad[n, i*s_h + p*d_h,
        j*s_w : j*s_w + kw, :]) and lands as kw*C adjacent values of P[n, i, j, p]: copied as one block (a void
        element of kw*C values), the copy walks the Wo windows of a row at a time instead of C values (1 for a
        grey image). The values copied are the same."""
        xpad = self.pad(x, value)
        out = np.empty((len(x), *self.out_hw, *self.size, x.shape[3]), x.dtype)
        if self.dilation[1] == 1 and xpad.flags.c_contiguous and out.size:
            (kh, kw), (sh, sw), (_, hp, wp, c), (ho, wo) = self.size, self.strides, xpad.shape, self.out_hw
            row = kw * c  # one window row: a block of adjacent values in Xpad and in P
            dest = block_view(out, (len(x), ho, wo, kh), row, 0, (ho * wo * kh * row, wo * kh * row, kh * row, row))
            for p in range(kh):  # row p of every window: (N, Ho, Wo) blocks, from row p*d_h of the first window
                start = p * self.dilation[0] * wp * c
                dest[:, :, :, p] = block_view(xpad, (len(x), ho, wo), row, start, (hp * wp * c, sh * wp * c, sw * c))
            return out
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


def block_view(m: Array, shape: tuple[int, ...], block: int, offset: int, strides: tuple[int, ...]) -> Array:
    """A view of the C-contiguous array m whose elements are blocks of `block` adjacent values: element (n, i, ...)
    starts at value offset + n*s0 + i*s1 + ... of m (offset and strides counted in values, not bytes). Copying into
    or out of it moves each block whole (one void element) where NumPy would walk a strided view value by value."""
    it = m.itemsize
    return np.ndarray(shape, np.dtype((np.void, block * it)), m, offset * it, tuple(s * it for s in strides))


def _image_shape(shape: Shape, layer: str) -> Shape:
    if len(shape) != 3:
        raise BadInputError(f"layer {layer!r} takes images of shape (height, width, channels), got {shape}")
    return shape


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


class Conv2D(Layer):
    """A = f(Z), Z = conv(X, K) + b, as im2col then one matrix product (module docstring).

    X (N, H, W, C), K (kh, kw, C, F) (Keras's layout), b (F,) (none with use_bias=False) -> Z, A (N, Ho, Wo, F),
    with Ho = floor((H + P_h - d_h (kh - 1) - 1) / s_h) + 1 (P_h the padding: 0 for 'valid'; for 'same' what makes
    Ho = ceil(H / s_h), the odd cell at the bottom/right).
    Backward, from dA:
        dZ = f'(Z) * dA
        dK = (cols.T @ dZ_m).reshape(kh, kw, C, F)        dZ_m = dZ as (N*Ho*Wo, F)
        db = dZ summed over n, i, j                        (F,)
        dX = col2im(dZ_m @ K_m.T)                          (N, H, W, C)
    """

    kind = "conv2d"
    input_grad_optional = True

    def __init__(
        self,
        filters: int,
        kernel_size: int | Pair,
        strides: int | Pair = 1,
        padding: str = "valid",
        dilation_rate: int | Pair = 1,
        activation: str | None = None,
        name: str | None = None,
        use_bias: bool = True,
    ) -> None:
        self.name = name or "conv2d"
        where = f"Conv2D {self.name!r}"
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
            raise BadInputError(f"{where}: filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size, self.strides, self.padding, self.dilation_rate, self.use_bias = window_options(
            where, kernel_size, strides, padding, dilation_rate, use_bias
        )
        self.activation: Activation = get_activation(activation or "linear")
        self.K: Array | None = None

    @property
    def weight_names(self) -> tuple[str, ...]:
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    @property
    def trainable(self) -> tuple[bool, ...]:
        return (True,) * len(self.weight_names)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Conv2D:
        return cls(spec.units, activation=spec.activation, **spec.options)

    def spec(self) -> LayerSpec:
        options = {
            "kernel_size": self.kernel_size,
            "padding": self.padding,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
        }
        if not self.use_bias:
            options["use_bias"] = False
        return LayerSpec("conv2d", self.filters, self.activation.name, options)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """Glorot-uniform kernel (fan_in = kh kw C, fan_out = kh kw F, as Keras), zero bias."""
        h, w, c = _image_shape(input_shape, self.name)
        self.windows = Windows(input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)
        if min(self.windows.out_hw) <= 0:
            raise BadInputError(
                f"layer {self.name!r}: a {self.kernel_size} kernel (dilation {self.dilation_rate}) does not fit "
                f"in the input {input_shape} with padding 'valid'"
            )
        kh, kw = self.kernel_size
        limit = np.sqrt(6.0 / (kh * kw * c + kh * kw * self.filters))
        self.K = rng.uniform(-limit, limit, size=(kh, kw, c, self.filters)).astype(dtype)
        self.b = np.zeros(self.filters, dtype=dtype)
        return (*self.windows.out_hw, self.filters)

    @property
    def params(self) -> list[Array]:
        return [self.K, self.b] if self.use_bias else [self.K]

    @property
    def grads(self) -> list[Array]:
        return [self.dK, self.db] if self.use_bias else [self.dK]

    def record(self) -> dict[str, Array]:
        """Z and dL/dZ, lined up with the twin's pre-activation in the diagnosis."""
        return {"Z": self.Z, "dZ": getattr(self, "dZ", None)}

    def im2col(self, x: Array) -> Array:
        """X (N, H, W, C) -> cols (N*Ho*Wo, kh*kw*C): one row per window, in (p, q, c) order, matching the
        kernel's (kh, kw, C) rows.

        For one channel (a grey image) cols is the transpose of a contiguous (kh*kw, N*Ho*Wo) array (`_cols_t`):
        its row (p, q) is Xpad[cells(p, q)], copied a whole image row of windows at a time rather than kw values
        per window, about 3x faster. The values are the same, but `cols @ K` and `cols.T @ dZ` then hand the BLAS
        the other layout of the same matrix, and a BLAS may add the terms in another order (OpenBLAS's float32
        kernels do for small products): tests/test_conv_same_bits.py holds the two layouts' products to the bound
        that any order of summation obeys."""
        if x.shape[3] == 1 and self.kernel_size != (1, 1):
            return self._cols_t(x).T
        if self.kernel_size != (1, 1):  # the windows overlap or skip cells: gathered (the same values a view holds)
            return self.windows.gather(x).reshape(len(x) * self.windows.out_hw[0] * self.windows.out_hw[1], -1)
        patches = self.windows.patches(x)
        rows = (-1, int(np.prod(patches.shape[3:])))
        try:
            return patches.reshape(rows, copy=False)  # the windows are already a matrix (a 1x1 kernel): a view
        except ValueError:  # the usual case: the reshape needs a copy; gathering by offsets is the fast one
            return self.windows.gather(x).reshape(rows)
        except TypeError:  # NumPy < 2.1 (no copy=): reshape copies when it must
            return patches.reshape(rows)

    def _cols_t(self, x: Array) -> Array:
        """X (N, H, W, 1) -> cols.T (kh*kw, N*Ho*Wo), C-contiguous: row (p, q) holds offset (p, q) of every window,
        Xpad[cells(p, q)], in (n, i, j) order."""
        xpad, w = self.windows.pad(x)[..., 0], self.windows
        out = np.empty((*self.kernel_size, len(x), *w.out_hw), x.dtype)
        for p, q in w.offsets:
            out[p, q] = xpad[w.cells(p, q)]
        return out.reshape(len(w.offsets), -1)

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

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """M_Z = conv(M_X, |K|) + |b| (the same product on magnitudes), M_A as Dense's (compare/terms.py)."""
        k_abs = np.abs(self.K.astype(np.float64)).reshape(-1, self.filters)
        z_terms = self.im2col(x_terms) @ k_abs + (np.abs(self.b.astype(np.float64)) if self.use_bias else 0.0)
        z_terms = z_terms.reshape(self.Z.shape)
        return activation_terms(self.activation, self.Z, self.A, z_terms)

    def backward_terms(
        self, x_terms: Array, dA_terms: Array | None, dZ_terms: Array | None = None
    ) -> tuple[list[Array], Array, dict[str, Array]]:
        """|dZ| = |dA| |f'(Z)|; M_K = im2col(M_X).T |dZ|, M_b = sum |dZ|, |dX| = col2im(|dZ| |K|^T)."""
        if dZ_terms is None:
            dZ_terms = dA_terms * self.activation.grad_magnitude(self.Z.astype(np.float64))
        dz = dZ_terms.reshape(-1, self.filters)
        k_abs = np.abs(self.K.astype(np.float64)).reshape(-1, self.filters)
        d_k = (self.im2col(x_terms).T @ dz).reshape(self.K.shape)
        params = [d_k, dz.sum(axis=0)] if self.use_bias else [d_k]
        return params, self.col2im(dz @ k_abs.T, len(x_terms)), {"dZ": dZ_terms}


class Reshape(Layer):
    """A = X reshaped to (N, *target_shape), C order (Keras's).  Backward: dX = dA reshaped back."""

    kind = "reshape"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(self, target_shape: tuple[int, ...], name: str | None = None) -> None:
        self.name = name or self.kind
        self.target_shape = tuple(target_shape)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Reshape:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", {"target_shape": self.target_shape})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        self.in_shape = tuple(input_shape)
        if int(np.prod(self.target_shape)) != int(np.prod(input_shape)):
            raise BadInputError(f"layer {self.name!r}: cannot reshape {input_shape} to {self.target_shape}")
        return self.target_shape

    def forward(self, x: Array, training: bool = False) -> Array:
        self.A = x.reshape(len(x), *self.target_shape)
        return self.A

    def backward(self, dA: Array) -> Array:
        return dA.reshape(len(dA), *self.in_shape)

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        return {"A": x_terms.reshape(len(x_terms), *self.target_shape)}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


class Flatten(Reshape):
    """A = X reshaped to (N, H*W*C) in Keras's channels-last order: index (i*W + j)*C + c.
    (A (c, h, w) flattening, natural for a channels-first textbook, scrambles the next Dense layer's rows.)"""

    kind = "flatten"

    def __init__(self, name: str | None = None) -> None:
        super().__init__((), name or "flatten")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Flatten:
        return cls()

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", {})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        self.target_shape = (int(np.prod(input_shape)),)
        return super().build(input_shape, dtype, rng)


LAYERS.update(
    {
        "conv2d": Conv2D,
        "flatten": Flatten,
        "reshape": Reshape,
    }
)


def __getattr__(name: str) -> Any:
    """The pooling layers, defined in from_scratch/pooling.py (which registers them in LAYERS), stay importable from
    here: read from that module on first use, so that no import circle forms."""
    if name in ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "_Pooling"):
        from from_scratch import pooling

        return getattr(pooling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
