"""The bug zoo: classic mistakes in hand-written backprop, each a small variant of the scratch network.

Every entry builds a scenario (architecture, batch, loss or optimizer), plants one bug in the scratch side, runs
the harness against the correct Keras twin, and says where the harness should locate it (`expect`: the layer and
quantity of the first difference, or for optimizers the step at which training first parts).
`backprop-parity zoo [NAME]` prints what a user would see; tests/test_zoo.py asserts that every bug is caught and
located.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from from_scratch.activations import Activation, relu, relu_grad, sigmoid, sigmoid_grad
from from_scratch.layers import Dense
from from_scratch.losses import CategoricalCrossentropy
from from_scratch.model import Sequential
from from_scratch.optimizers import SGD, Adam

Array = np.ndarray


@dataclass(frozen=True)
class ZooEntry:
    """One bug: what it is, the function that runs it (returning a report), and where it must be found."""

    name: str
    description: str
    kind: str  # "gradient" (one batch through compare_models; run(dtype="float64")) or "optimizer" (a training run)
    run: Callable[..., Any]
    expect: str  # the text the diagnosis must contain, e.g. "layer 2 (dense_1) dL/dZ"


# ----- gradient bugs ------------------------------------------------------------------------------------------------
def _compare(arch: str, x: Array, y: Array, plant: Callable[[Sequential], Any], dtype: str = "float64") -> Any:
    """Build both sides, let `plant` put the bug into the scratch side (it may return a buggy loss), compare."""
    from compare.harness import build_pair, compare_models

    scratch, keras_model = build_pair(arch, dtype)
    planted_loss = plant(scratch)
    return compare_models(
        scratch,
        keras_model,
        x,
        y,
        planted_loss or "categorical_crossentropy",
        gradcheck_samples=0,
        config={"arch": arch, "batch": len(x)},
    )


def _batch(n: int, d: int, k: int, seed: int = 0, scale: float = 1.0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * scale, np.eye(k)[rng.integers(0, k, size=n)]


def _swap_class(layer: Any, method: str, replacement: Callable) -> None:
    """Give one layer object a subclass whose `method` is `replacement` (the rest of the model is untouched)."""
    layer.__class__ = type(f"Buggy{type(layer).__name__}", (type(layer),), {method: replacement})


class MissingOneOverN(CategoricalCrossentropy):
    """dL/dZ = P - Y, forgetting the mean over the batch."""

    def reduce_grad(self, grad: Array, sample_weight: Array | None) -> Array:
        return grad


def missing_1_over_n(dtype: str = "float64") -> Any:
    x, y = _batch(16, 8, 4)
    return _compare("8-6-4", x, y, lambda m: MissingOneOverN(), dtype=dtype)


def relu_mask_at_kink(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=1)
    x[4] = 0.0  # a zero row with zero biases: every hidden Z of that row is exactly 0

    def plant(m: Sequential) -> None:
        wrong = Activation("relu", relu, lambda z, a, dA: dA * (z >= 0), relu_grad, kinked=True)
        for layer in m.layers[:-1]:
            layer.activation = wrong

    return _compare("6-5-5-3", x, y, plant, dtype=dtype)


def softmax_batch_max(dtype: str = "float64") -> Any:
    x, y = _batch(8, 5, 4, seed=2)

    def batch_max_softmax(z: Array) -> Array:
        e = np.exp(z - z.max())  # the max over the whole batch, not per row
        with np.errstate(invalid="ignore"):  # rows that underflow entirely give 0/0: that is the bug
            return e / e.sum(axis=-1, keepdims=True)

    def plant(m: Sequential) -> None:
        m.layers[-1].activation = Activation("softmax", batch_max_softmax, m.layers[-1].activation.backward)
        weights = m.get_weights()
        weights[-2] = weights[-2] * 3000.0  # logits in the thousands: rows far below the batch max underflow
        m.set_weights(weights)

    return _compare("5-6-4", x, y, plant, dtype=dtype)


def dx_untransposed(dtype: str = "float64") -> Any:
    x, y = _batch(10, 6, 6, seed=3)

    def backward_from_z(self: Dense, dZ: Array, input_grad: bool = True) -> Array:
        self.dZ = dZ
        self.dW = self.X.T @ dZ
        self.db = dZ.sum(axis=0)
        return dZ @ self.W  # W where W.T belongs (square layers, so the shapes do not complain)

    return _compare(
        "6-6-6-6",
        x,
        y,
        lambda m: [_swap_class(layer, "backward_from_z", backward_from_z) for layer in m.layers] and None,
        dtype=dtype,
    )


def bias_gradient_mean(dtype: str = "float64") -> Any:
    x, y = _batch(16, 8, 4, seed=4)

    def backward_from_z(self: Dense, dZ: Array, input_grad: bool = True) -> Array:
        self.dZ = dZ
        self.dW = self.X.T @ dZ
        self.db = dZ.mean(axis=0)  # a mean where the batch sum belongs
        return dZ @ self.W.T

    return _compare(
        "8-6-4",
        x,
        y,
        lambda m: [_swap_class(layer, "backward_from_z", backward_from_z) for layer in m.layers] and None,
        dtype=dtype,
    )


def sigmoid_grad_of_output(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=5)

    def plant(m: Sequential) -> None:
        m.layers[0].activation = Activation("sigmoid", sigmoid, lambda z, a, dA: dA * sigmoid_grad(a), sigmoid_grad)

    return _compare("6-5:sigmoid-3", x, y, plant, dtype=dtype)


def backward_mutates_input(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=6)

    def in_place(z: Array, a: Array, dA: Array) -> Array:
        dA[z <= 0] = 0  # deep-learning-from-scratch's Relu.backward writes into the caller's array
        return dA

    def plant(m: Sequential) -> None:
        for layer in m.layers[:-1]:
            layer.activation = Activation("relu", relu, in_place, relu_grad, kinked=True)

    return _compare("6-5-4-3", x, y, plant, dtype=dtype)


def gradients_accumulate(dtype: str = "float64") -> Any:
    x, y = _batch(12, 6, 3, seed=7)

    def backward_from_z(self: Dense, dZ: Array, input_grad: bool = True) -> Array:
        self.dZ = dZ
        self.dW = getattr(self, "dW", 0) + self.X.T @ dZ  # += across calls: never reset
        self.db = getattr(self, "db", 0) + dZ.sum(axis=0)
        return dZ @ self.W.T

    return _compare(
        "6-5-3",
        x,
        y,
        lambda m: [_swap_class(layer, "backward_from_z", backward_from_z) for layer in m.layers] and None,
        dtype=dtype,
    )


# ----- optimizer bugs -----------------------------------------------------------------------------------------------
def _train(optimizer: Any, steps: int = 30) -> Any:
    from compare.data import spirals
    from compare.training import run_training

    x, y = spirals(n=120, seed=1)
    return run_training("2-16:tanh-8-3", x, y, optimizer, epochs=10, batch_size=12, max_steps=steps)


class SwappedBetas(Adam):
    """beta_1 and beta_2 exchanged in the update."""

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        self.beta_1, self.beta_2 = self.beta_2, self.beta_1
        try:
            super().update_step(i, w, g, lr)
        finally:
            self.beta_1, self.beta_2 = self.beta_2, self.beta_1


class MissingBiasPower(Adam):
    """The bias correction written 1 - beta (no ^t): right at t = 1, wrong from the second step on."""

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        iterations, self.iterations = self.iterations, 0
        try:
            super().update_step(i, w, g, lr)
        finally:
            self.iterations = iterations


class MomentumWrongSign(SGD):
    """w <- w - m where Keras's velocity convention (m <- mu m - lr g) needs w <- w + m."""

    def update_step(self, i: int, w: Array, g: Array, lr: Any) -> None:
        super().update_step(i, w, g, lr)
        w -= 2 * self.slots["momentums"][i]  # undo the + m and apply - m


# ----- image bugs: the classic mistakes of a hand-written convolution --------------------------------------------
def _images(n: int, shape: tuple[int, ...], k: int, seed: int = 0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), np.eye(k)[rng.integers(0, k, size=n)]


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


# ----- sequence bugs: the classic mistakes of hand-written backpropagation through time ----------------------------
def _sequences(n: int, shape: tuple[int, ...], k: int, seed: int = 0) -> tuple[Array, Array]:
    return _images(n, shape, k, seed)


def _lstm_step_back(change: Callable[[Any, int, Array, tuple[Array, ...]], tuple[Array, ...]]) -> Callable:
    """An LSTM step_back that runs the right one, then lets `change` alter dZ[:, t] and what is carried back."""

    def step_back(self: Any, t: int, dh: Array, carried: tuple[Array, ...]) -> tuple[Array, ...]:
        back = type(self).__mro__[1].step_back(self, t, dh, carried)
        return change(self, t, dh, back)

    return step_back


def _plant_lstm(change: Callable[[Any, int, Array, tuple[Array, ...]], tuple[Array, ...]]) -> Callable:
    return lambda m: _swap_class(m.layers[0], "step_back", _lstm_step_back(change))


def lstm_gate_order(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=11)

    def change(self: Any, t: int, dh: Array, back: tuple[Array, ...]) -> tuple[Array, ...]:
        u, dz = self.units, self.dZ[:, t]
        di, df, dg, do = (dz[:, j * u : (j + 1) * u].copy() for j in range(4))
        dz[:] = np.hstack((df, dg, di, do))  # DLFS's stacking, into weights laid out as Keras's i, f, c, o
        return back

    return _compare("8x8-lstm16-10", x, y, _plant_lstm(change), dtype=dtype)


def lstm_dh_not_carried(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=12)
    return _compare(
        "8x8-lstm16-10", x, y, _plant_lstm(lambda self, t, dh, back: (np.zeros_like(back[0]), back[1])), dtype=dtype
    )


def lstm_dc_not_carried(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (2, 8), 10, seed=13)
    return _compare(
        "2x8-lstm16-10", x, y, _plant_lstm(lambda self, t, dh, back: (back[0], np.zeros_like(back[1]))), dtype=dtype
    )


def lstm_missing_sigmoid_grad(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=14)

    def change(self: Any, t: int, dh: Array, back: tuple[Array, ...]) -> tuple[Array, ...]:
        u, dz = self.units, self.dZ[:, t]
        dz[:, u : 2 * u] /= self.sigmoid_grad(self.F[:, t])  # dz_f = dc * c_{t-1}, without f (1 - f)
        return dz @ self.U.T, back[1]

    return _compare("8x8-lstm16-10", x, y, _plant_lstm(change), dtype=dtype)


def embedding_assigns(dtype: str = "float64") -> Any:
    rng = np.random.default_rng(15)
    x, y = rng.integers(0, 50, size=(8, 12)).astype(float), np.eye(2)[rng.integers(0, 2, size=8)]

    def backward(self: Any, dY: Array) -> Array:
        self.dE = np.zeros_like(self.E)
        self.dE[self.index] = dY  # the bug: a repeated index keeps one position's gradient
        return np.zeros(self.index.shape, dY.dtype)

    return _compare(
        "12-embed50x8-lstm16-2", x, y, lambda m: _swap_class(m.layers[0], "backward", backward), dtype=dtype
    )


def gru_reset_before(dtype: str = "float64") -> Any:
    x, y = _sequences(6, (8, 8), 10, seed=16)

    def forward(self: Any, x: Array, training: bool = False) -> Array:
        """Keras's reset_after=True weights (two bias rows), the textbook cell: r multiplies h_{t-1} before U_h."""
        n, t_len, _ = x.shape
        u = self.units
        self.X = x
        shape = (n, t_len, u)
        self.Zg, self.R, self.Nc, self.H, self.Mh = (np.empty(shape, x.dtype) for _ in range(5))
        self.Hprev = np.zeros(shape, x.dtype)
        mx_all = x @ self.W + self.b[0]
        h = self.Hprev[:, 0]
        for t in range(t_len):
            self.Hprev[:, t] = h
            mx, mh = mx_all[:, t], h @ self.U + self.b[1]
            z = sigmoid(mx[:, :u] + mh[:, :u])
            r = sigmoid(mx[:, u : 2 * u] + mh[:, u : 2 * u])
            self.Mh[:, t] = mh[:, 2 * u :]
            cand = np.tanh(mx[:, 2 * u :] + (r * h) @ self.U[:, 2 * u :] + self.b[1, 2 * u :])  # the bug
            h = z * h + (1 - z) * cand
            self.Zg[:, t], self.R[:, t], self.Nc[:, t], self.H[:, t] = z, r, cand, h
        return self.output()

    return _compare(
        "8x8-gru16:seq-flatten-10", x, y, lambda m: _swap_class(m.layers[0], "forward", forward), dtype=dtype
    )


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry(
            "missing_1_over_n",
            "the loss gradient P - Y without the 1/N of the batch mean",
            "gradient",
            missing_1_over_n,
            "layer 2 (dense_1) dL/dZ",
        ),
        ZooEntry(
            "relu_mask_at_kink",
            "ReLU's derivative with the mask z >= 0 (1 at the kink, Keras has 0)",
            "gradient",
            relu_mask_at_kink,
            "layer 2 (dense_1) dL/dZ",
        ),
        ZooEntry(
            "softmax_batch_max",
            "softmax shifted by the max over the whole batch instead of each row",
            "gradient",
            softmax_batch_max,
            "layer 2 (dense_1) A",
        ),
        ZooEntry(
            "dx_untransposed",
            "dX = dZ @ W instead of dZ @ W.T (square layers hide the shape error)",
            "gradient",
            dx_untransposed,
            "layer 2 (dense_1) dL/dA",
        ),
        ZooEntry(
            "bias_gradient_mean",
            "db as the mean of dZ over the batch instead of the sum",
            "gradient",
            bias_gradient_mean,
            "layer 2 (dense_1) dL/dbias",
        ),
        ZooEntry(
            "sigmoid_grad_of_output",
            "sigmoid's derivative evaluated at A = s(Z) instead of at Z",
            "gradient",
            sigmoid_grad_of_output,
            "layer 1 (dense) dL/dZ",
        ),
        ZooEntry(
            "backward_mutates_input",
            "ReLU backward zeroing the caller's dA in place",
            "gradient",
            backward_mutates_input,
            "layer 2 (dense_1) dL/dA",
        ),
        ZooEntry(
            "gradients_accumulate",
            "dW += ... across calls, never reset",
            "gradient",
            gradients_accumulate,
            "layer 2 (dense_1) dL/dkernel",
        ),
        ZooEntry(
            "col2im_assigns",
            "col2im assigning (=) where overlapping windows must add (+=): right only when windows do not overlap",
            "gradient",
            col2im_assigns,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "pool_backward_assigns",
            "max-pool backward assigning where overlapping windows (pool 3, stride 1) must add",
            "gradient",
            pool_backward_assigns,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "kernel_dlfs_layout",
            "the kernel gradient computed in DLFS's (c_out, c_in, kh, kw) layout and reshaped, not transposed",
            "gradient",
            kernel_dlfs_layout,
            "layer 1 (conv2d) dL/dkernel",
        ),
        ZooEntry(
            "flatten_chw",
            "Flatten in (c, h, w) order, as a channels-first textbook does; Keras flattens (h, w, c)",
            "gradient",
            flatten_chw,
            "layer 2 (flatten) A",
        ),
        ZooEntry(
            "maxpool_every_tie",
            "max-pool gradient sent to every tied maximum, not to the first (digit images tie in their background)",
            "gradient",
            maxpool_every_tie,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "stride_forgotten",
            "col2im with stride 1 in the backward pass of a stride-2 convolution",
            "gradient",
            stride_forgotten,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "same_padding_wrong_side",
            "'same' padding with the odd cell at the top and left; Keras pads it at the bottom and right",
            "gradient",
            same_padding_wrong_side,
            "layer 1 (conv2d) Z",
        ),
        ZooEntry(
            "lstm_gate_order",
            "LSTM gate gradients stacked in deep-learning-from-scratch-2's order (f, g, i, o) into Keras's (i, f, c, o)"
            " weight layout",
            "gradient",
            lstm_gate_order,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "lstm_dh_not_carried",
            "BPTT without carrying dL/dh_t back to step t-1 (only the output's gradient reaches each step)",
            "gradient",
            lstm_dh_not_carried,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "lstm_dc_not_carried",
            "LSTM BPTT without carrying dL/dc_t back to step t-1 (two steps, c_{-1} = 0: only the gates i and c of "
            "step 0 read the lost dc)",
            "gradient",
            lstm_dc_not_carried,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "lstm_missing_sigmoid_grad",
            "the LSTM forget gate's gradient without the sigmoid derivative f (1 - f)",
            "gradient",
            lstm_missing_sigmoid_grad,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "embedding_assigns",
            "Embedding gradient assigned (dE[X] = dY) where a repeated index must accumulate (np.add.at)",
            "gradient",
            embedding_assigns,
            "layer 1 (embedding) dL/dembeddings",
        ),
        ZooEntry(
            "gru_reset_before",
            "GRU with the reset gate applied before the recurrent product (reset_after=False) on Keras's default "
            "reset_after=True",
            "gradient",
            gru_reset_before,
            "layer 1 (gru) A",
        ),
        ZooEntry(
            "adam_swapped_betas",
            "Adam with beta_1 and beta_2 exchanged",
            "optimizer",
            lambda: _train(SwappedBetas(learning_rate=0.01, beta_1=0.8, beta_2=0.95)),
            "step 1 ",
        ),
        ZooEntry(
            "adam_missing_bias_power",
            "Adam's bias correction without the power t (hidden by one step with beta_1 == beta_2)",
            "optimizer",
            lambda: _train(MissingBiasPower(learning_rate=0.01, beta_1=0.8, beta_2=0.95)),
            "step 2 ",
        ),
        ZooEntry(
            "momentum_wrong_sign",
            "SGD momentum applied with the wrong sign (w - m)",
            "optimizer",
            lambda: _train(MomentumWrongSign(learning_rate=0.05, momentum=0.9)),
            "step 1 ",
        ),
    ]
}


def diagnosis_text(report: Any) -> str:
    """The diagnosis line of either kind of report."""
    if hasattr(report, "rows"):
        return report.diagnosis.text if report.diagnosis else ""
    return report.diagnosis or ""
