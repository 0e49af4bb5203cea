"""The image layers that keras.applications' networks add to conv.py's: ZeroPadding2D and DepthwiseConv2D
(channels last, X (N, H, W, C)).

ZeroPadding2D adds rows and columns of zeros around each image; its backward pass is the slice that drops them.

DepthwiseConv2D convolves each input channel with its own M = depth_multiplier filters, never mixing channels:

    Z[n, i, j, c M + m] = sum over (p, q) of Xpad[n, i s_h + p d_h, j s_w + q d_w, c] K[p, q, c, m]  + b[c M + m]

K (kh, kw, C, M) and b (C M,) in Keras's layout. In matrix form the sum runs over the kh kw kernel offsets, each a
strided slice of every window at once (conv.py's `Windows.cells`), multiplied by one row K[p, q] (C, M) broadcast:

    Z5 = sum over (p, q) of Xpad[cells(p, q)][..., None] * K[p, q]        (N, Ho, Wo, C, M) -> (N, Ho, Wo, C M)

and the backward pass, from dZ5 (N, Ho, Wo, C, M):

    dK[p, q, c, m] = sum over (n, i, j) of Xpad[cells(p, q)][n, i, j, c] dZ5[n, i, j, c, m]
    db             = dZ summed over (n, i, j)
    dX             = col2im of dP, dP[:, :, :, p, q, c] = sum over m of dZ5[..., c, m] K[p, q, c, m]
"""

from __future__ import annotations

import numpy as np

from from_scratch.activations import Activation, get_activation
from from_scratch.arch import LayerSpec
from from_scratch.conv import Pair, Windows, _image_shape, window_options
from from_scratch.errors import BadInputError
from from_scratch.layers import LAYERS, Layer, Shape, activation_terms

Array = np.ndarray
Padding = tuple[tuple[int, int], tuple[int, int]]


def _count(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def zero_padding(value: object, where: str) -> Padding:
    """Keras's ZeroPadding2D argument as ((top, bottom), (left, right)): an int p is ((p, p), (p, p)), a pair (h, w)
    is ((h, h), (w, w)), a pair of pairs is itself. Each a non-negative integer; anything else is refused."""
    if _count(value):
        return ((int(value), int(value)), (int(value), int(value)))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        if all(_count(v) for v in value):
            return ((int(value[0]), int(value[0])), (int(value[1]), int(value[1])))
        if all(isinstance(v, (tuple, list)) and len(v) == 2 and all(_count(u) for u in v) for v in value):
            return ((int(value[0][0]), int(value[0][1])), (int(value[1][0]), int(value[1][1])))
    raise BadInputError(
        f"{where}: padding must be a non-negative integer, a pair (height, width) of them or a pair of pairs "
        f"((top, bottom), (left, right)), got {value!r}"
    )


class ZeroPadding2D(Layer):
    """A = X with zeros around it: A[n, top + i, left + j, c] = X[n, i, j, c], zero elsewhere.
    X (N, H, W, C) -> A (N, top + H + bottom, left + W + right, C).  Backward: dX = dA[:, top:top+H, left:left+W]."""

    kind = "zero_padding2d"
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(self, padding: int | tuple = 1, name: str | None = None) -> None:
        self.name = name or self.kind
        self.padding = zero_padding(padding, f"ZeroPadding2D {self.name!r}")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> ZeroPadding2D:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", {"padding": self.padding})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        h, w, c = _image_shape(input_shape, self.name)
        (top, bottom), (left, right) = self.padding
        self.in_shape = (h, w, c)
        return (top + h + bottom, left + w + right, c)

    def _pad(self, x: Array) -> Array:
        (top, bottom), (left, right) = self.padding
        return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def forward(self, x: Array, training: bool = False) -> Array:
        self.A = self._pad(x)
        return self.A

    def backward(self, dA: Array) -> Array:
        """dX = the slice of dA the input was copied to.  dA (N, H', W', C) -> dX (N, H, W, C), a copy."""
        (top, _), (left, _) = self.padding
        h, w, _ = self.in_shape
        return dA[:, top : top + h, left : left + w].copy()

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """Copying is exact: M_A = M_X padded with zeros."""
        return {"A": self._pad(x_terms)}

    def backward_terms(self, x_terms: Array, dA_terms: Array) -> tuple[list[Array], Array, dict[str, Array]]:
        return [], self.backward(dA_terms), {}


class DepthwiseConv2D(Layer):
    """A = f(Z), Z = depthwise_conv(X, K) + b (module docstring).  X (N, H, W, C), K (kh, kw, C, M), b (C M,)
    -> Z, A (N, Ho, Wo, C M), Ho and Wo as Conv2D's. Output channel c M + m is input channel c through filter m.
    Backward, from dA: dZ = f'(Z) * dA, then dK, db and dX as in the module docstring."""

    kind = "depthwise_conv2d"
    trainable = None
    input_grad_optional = True

    def __init__(
        self,
        kernel_size: int | Pair,
        strides: int | Pair = 1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        dilation_rate: int | Pair = 1,
        use_bias: bool = True,
        activation: str | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or self.kind
        where = f"DepthwiseConv2D {self.name!r}"
        self.kernel_size, self.strides, self.padding, self.dilation_rate, self.use_bias = window_options(
            where, kernel_size, strides, padding, dilation_rate, use_bias
        )
        if self.strides[0] != self.strides[1]:
            raise BadInputError(
                f"{where}: strides {self.strides}: TensorFlow's depthwise convolution (DepthwiseConv2dNative) takes "
                "the same stride along height and width"
            )
        if not _count(depth_multiplier) or depth_multiplier == 0:
            raise BadInputError(f"{where}: depth_multiplier must be a positive integer, got {depth_multiplier!r}")
        self.depth_multiplier = int(depth_multiplier)
        self.activation: Activation = get_activation(activation or "linear")
        self.K: Array | None = None

    @property
    def weight_names(self) -> tuple[str, ...]:
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> DepthwiseConv2D:
        return cls(activation=spec.activation, **spec.options)

    def spec(self) -> LayerSpec:
        options = {
            "kernel_size": self.kernel_size,
            "padding": self.padding,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
            "depth_multiplier": self.depth_multiplier,
        }
        if not self.use_bias:
            options["use_bias"] = False
        return LayerSpec(self.kind, None, self.activation.name, options)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """Glorot-uniform kernel (fan_in = kh kw C, fan_out = kh kw M, as Keras counts the fans of a (kh, kw, C, M)
        kernel; the draw is NumPy's), zero bias."""
        c = _image_shape(input_shape, self.name)[2]
        self.windows = Windows(input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)
        if min(self.windows.out_hw) <= 0:
            raise BadInputError(
                f"layer {self.name!r}: a {self.kernel_size} kernel (dilation {self.dilation_rate}) does not fit "
                f"in the input {input_shape} with padding 'valid'"
            )
        kh, kw = self.kernel_size
        m = self.depth_multiplier
        limit = np.sqrt(6.0 / (kh * kw * c + kh * kw * m))
        self.K = rng.uniform(-limit, limit, size=(kh, kw, c, m)).astype(dtype)
        self.b = np.zeros(c * m, dtype=dtype)
        return (*self.windows.out_hw, c * m)

    @property
    def params(self) -> list[Array]:
        return [self.K, self.b] if self.use_bias else [self.K]

    @property
    def grads(self) -> list[Array]:
        return [self.dK, self.db] if self.use_bias else [self.dK]

    def _convolve(self, x: Array, k: Array) -> Array:
        """sum over (p, q) of Xpad[cells(p, q)][..., None] * K[p, q]: X (N, H, W, C), K (kh, kw, C, M)
        -> (N, Ho, Wo, C, M)."""
        xpad = self.windows.pad(x)
        z = np.zeros((len(x), *self.windows.out_hw, *k.shape[2:]), np.result_type(x, k))
        for p, q in self.windows.offsets:
            z += xpad[self.windows.cells(p, q)][..., None] * k[p, q]
        return z

    def _transpose(self, x: Array, dz5: Array, k: Array) -> tuple[Array, Array | None]:
        """(dK (kh, kw, C, M), dX (N, H, W, C)) from dZ5 (N, Ho, Wo, C, M): the two transposes of `_convolve`
        (dX None when x is None: only dK)."""
        xpad = self.windows.pad(x)
        d_k = np.empty(k.shape, dz5.dtype)
        n, ho, wo, c, _ = dz5.shape
        d_p = np.empty((n, ho, wo, *self.kernel_size, c), dz5.dtype)
        for p, q in self.windows.offsets:
            d_k[p, q] = np.einsum("nijc,nijcm->cm", xpad[self.windows.cells(p, q)], dz5)
            d_p[:, :, :, p, q] = np.einsum("nijcm,cm->nijc", dz5, k[p, q])
        return d_k, self.windows.scatter(d_p)

    def forward(self, x: Array, training: bool = False) -> Array:
        """Z = depthwise_conv(X, K) + b, A = f(Z).  X (N, H, W, C) -> A (N, Ho, Wo, C M)."""
        if self.K is None:
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")
        self.X = x
        z = self._convolve(x, self.K).reshape(len(x), *self.windows.out_hw, -1)
        self.Z = z + self.b if self.use_bias else z
        self.A = self.activation.forward(self.Z)
        return self.A

    def backward(self, dA: Array, input_grad: bool = True) -> Array | None:
        """dZ = f'(Z) * dA; dK, db, dX (module docstring).  dA (N, Ho, Wo, C M) -> dX (N, H, W, C) (None when
        input_grad is False)."""
        if not hasattr(self, "Z"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        self.dA = dA
        self.dZ = self.activation.backward(self.Z, self.A, dA)
        dz5 = self.dZ.reshape(*self.dZ.shape[:3], *self.K.shape[2:])
        self.dK, dx = self._transpose(self.X, dz5, self.K)
        self.db = self.dZ.sum(axis=(0, 1, 2))
        return dx if input_grad else None

    def forward_terms(self, x_terms: Array) -> dict[str, Array]:
        """M_Z = depthwise_conv(M_X, |K|) + |b| (the same sums on magnitudes), M_A as Dense's (compare/terms.py)."""
        z_terms = self._convolve(x_terms, np.abs(self.K.astype(np.float64))).reshape(self.Z.shape)
        if self.use_bias:
            z_terms = z_terms + np.abs(self.b.astype(np.float64))
        return activation_terms(self.activation, self.Z, self.A, z_terms)

    def backward_terms(
        self, x_terms: Array, dA_terms: Array | None, dZ_terms: Array | None = None
    ) -> tuple[list[Array], Array, dict[str, Array]]:
        """|dZ| = |dA| |f'(Z)|; M_K and |dX| the transposes on magnitudes, M_b = sum |dZ|."""
        if dZ_terms is None:
            dZ_terms = dA_terms * self.activation.grad_magnitude(self.Z.astype(np.float64))
        dz5 = dZ_terms.reshape(*dZ_terms.shape[:3], *self.K.shape[2:])
        d_k, d_x = self._transpose(x_terms, dz5, np.abs(self.K.astype(np.float64)))
        params = [d_k, dZ_terms.sum(axis=(0, 1, 2))] if self.use_bias else [d_k]
        return params, d_x, {"dZ": dZ_terms}


LAYERS.update({"zero_padding2d": ZeroPadding2D, "depthwise_conv2d": DepthwiseConv2D})
