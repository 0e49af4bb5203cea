"""The zoo's image bugs, the classic mistakes of a hand-written convolution: col2im assigning where overlapping
windows must add, a pooling backward that assigns, a stride forgotten in the backward, a kernel in
deep-learning-from-scratch's (c_out, c_in, kh, kw) layout, a flatten in (c, h, w) order, a max-pool gradient sent to
every tied maximum, 'same' padding's odd cell on the wrong side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compare.zoo_planting import _compare, _images, _swap_class
from from_scratch.model import Sequential

Array = np.ndarray


def _assigning_scatter(windows: Any, strided: bool = True) -> Callable[[Array], Array]:
    """col2im with `=` where `+=` belongs (or, with strided=False, with the stride forgotten): a cell that two
    windows read keeps only the last window's gradient."""

    def scatter(d_patches: Array) -> Array:
        (kh, kw), (sh, sw), (dh, dw) = windows.size, windows.strides, windows.dilation
        if not strided:
            sh = sw = 1
        (ho, wo), ((top, bottom), (left, right)) = windows.out_hw, windows.pads
        n, c = d_patches.shape[0], d_patches.shape[-1]
        dx = np.zeros((n, windows.in_hw[0] + top + bottom, windows.in_hw[1] + left + right, c), d_patches.dtype)
        for p in range(kh):
            for q in range(kw):
                rows = slice(p * dh, p * dh + sh * (ho - 1) + 1, sh)
                cols = slice(q * dw, q * dw + sw * (wo - 1) + 1, sw)
                if strided:
                    dx[:, rows, cols] = d_patches[:, :, :, p, q]  # the bug: assignment
                else:
                    dx[:, rows, cols] += d_patches[:, :, :, p, q]  # the bug: stride 1 where the forward strode
        return dx[:, top : top + windows.in_hw[0], left : left + windows.in_hw[1]]

    return scatter


def col2im_assigns(dtype: str = "float64") -> Any:
    x, y = _images(8, (6, 6, 2), 4, seed=5)

    def plant(m: Sequential) -> None:
        m.layers[1].windows.scatter = _assigning_scatter(m.layers[1].windows)

    return _compare("6x6x2-conv3k3:tanh-conv3k3:tanh-flatten-4", x, y, plant, dtype=dtype)


def pool_backward_assigns(dtype: str = "float64") -> Any:
    x, y = _images(8, (6, 6, 2), 4, seed=6)

    def plant(m: Sequential) -> None:
        m.layers[1].windows.scatter = _assigning_scatter(m.layers[1].windows)

    return _compare("6x6x2-conv3k2:tanh:same-pool3:s=1-flatten-4", x, y, plant, dtype=dtype)


def stride_forgotten(dtype: str = "float64") -> Any:
    x, y = _images(8, (7, 7, 2), 4, seed=7)

    def plant(m: Sequential) -> None:
        m.layers[1].windows.scatter = _assigning_scatter(m.layers[1].windows, strided=False)

    return _compare("7x7x2-conv3k3:tanh-conv2k3:tanh:s=2-flatten-4", x, y, plant, dtype=dtype)


def kernel_dlfs_layout(dtype: str = "float64") -> Any:
    x, y = _images(8, (5, 5, 2), 4, seed=8)

    def backward(self: Any, dA: Array, input_grad: bool = True) -> Array | None:
        dX = type(self).__mro__[1].backward(self, dA, input_grad)
        kh, kw, c, f = self.dK.shape
        dlfs = self.dK.transpose(3, 2, 0, 1)  # the gradient in (c_out, c_in, kh, kw), as DLFS keeps its kernels
        self.dK = dlfs.reshape(kh, kw, c, f)  # the bug: reshaped into Keras's layout instead of transposed
        return dX

    return _compare(
        "5x5x2-conv3k2:tanh-flatten-4", x, y, lambda m: _swap_class(m.layers[0], "backward", backward), dtype=dtype
    )


def flatten_chw(dtype: str = "float64") -> Any:
    x, y = _images(8, (4, 4, 1), 4, seed=9)

    def forward(self: Any, a: Array, training: bool = False) -> Array:
        self.A = a.transpose(0, 3, 1, 2).reshape(len(a), -1)  # (c, h, w): channels first, as a textbook keeps them
        return self.A

    def backward(self: Any, dA: Array) -> Array:
        h, w, c = self.in_shape
        return dA.reshape(len(dA), c, h, w).transpose(0, 2, 3, 1)

    def plant(m: Sequential) -> None:
        _swap_class(m.layers[1], "forward", forward)
        m.layers[1].__class__.backward = backward

    return _compare("4x4x1-conv3k3:tanh:same-flatten-4", x, y, plant, dtype=dtype)


def maxpool_every_tie(dtype: str = "float64") -> Any:
    from compare.data import as_inputs, load_batch

    x, y = load_batch("digits", 64, 10, 16, seed=0)  # digit images: zero background, so many tied windows

    def backward(self: Any, dA: Array) -> Array:
        patches = self.windows.patches(self.X, -np.inf)
        ties = patches == self.A[:, :, :, None, None, :]  # the bug: every maximum, not the first
        return self.windows.scatter(ties * dA[:, :, :, None, None, :])

    def plant(m: Sequential) -> None:
        layer = m.layers[1]
        forward = type(layer).forward

        def keep_input(self: Any, a: Array, training: bool = False) -> Array:
            self.X = a
            return forward(self, a, training)

        _swap_class(layer, "backward", backward)
        layer.__class__.forward = keep_input

    return _compare("8x8x1-conv4k3:linear:same-pool2-flatten-10", as_inputs(x, (8, 8, 1)), y, plant, dtype=dtype)


def same_padding_wrong_side(dtype: str = "float64") -> Any:
    x, y = _images(8, (6, 6, 1), 4, seed=10)

    def plant(m: Sequential) -> None:
        windows = m.layers[0].windows
        windows.pads = tuple((after, before) for before, after in windows.pads)  # the odd cell top/left

    return _compare("6x6x1-conv2k2:tanh:same-flatten-4", x, y, plant, dtype=dtype)
