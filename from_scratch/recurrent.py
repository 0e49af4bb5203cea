"""Sequence layers in matrix form: batch-major sequences X (N, T, F), one matrix product per time step.

A recurrent layer applies the same cell at every step t = 0 .. T-1 to the whole batch at once,

    h_t = cell(x_t, h_{t-1})            x_t = X[:, t] (N, F),  h_t (N, u),  h_{-1} = 0

and returns every h_t, H (N, T, u) (return_sequences=True), or the last one, h_{T-1} (N, u) (Keras's default).
The loop runs over time only: each step is a batch matrix product, never a loop over samples.

Backpropagation through time runs the same loop backwards. The gradient reaching h_t has two sources, the
layer's output (dY[:, t], or dY at the last step only) and the next step, which read h_t as its h_{t-1}:

    dh_t = dY_t + (dL/dh_t through step t+1)           (and for the LSTM the same for its cell state c_t)

so the backward pass carries dh (and dc) from step t to step t-1; forgetting to carry it is the classic bug
(tests/test_rnn_parity.py shows the check failing on it). The weights are shared by every step, so their gradients
are sums over the steps, which is one matrix product over all (n, t) rows at once once every step's dZ is known:

    dW = X_m.T @ dZ_m,   dU = Hprev_m.T @ dZ_m,   db = sum of dZ_m's rows,   dX_m = dZ_m @ W.T
    (X_m = X as (N*T, F), Hprev_m the h_{t-1} as (N*T, u), dZ_m every step's dZ as (N*T, k*u))

The formulas, weight layouts and gate orders are Keras's (keras/src/layers/rnn/): kernel (F, k*u), recurrent_kernel
(u, k*u), gate blocks side by side in the columns (LSTM i, f, c, o; GRU z, r, h). Embedding maps integer sequences
to vectors; its gradient adds the rows of dY of every position that used the same index.

Simplified: no masking, no dropout or recurrent dropout, no initial or returned states, no go_backwards, no
stateful mode, use_bias always True.
"""

from __future__ import annotations

import numpy as np

from from_scratch.activations import Activation, get_activation, sigmoid, sigmoid_into
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError, check_flag
from from_scratch.layers import LAYERS, Layer, Shape, glorot_uniform

Array = np.ndarray


def orthogonal(rows: int, cols: int, dtype: np.dtype, rng: np.random.Generator) -> Array:
    """Keras's default recurrent_initializer: an orthogonal (rows, cols) matrix, from the QR factorisation of a
    normal draw, Q's columns signed by diag(R) (so that Q is uniformly distributed); with rows < cols the
    transpose of a (cols, rows) one, so the rows are orthonormal.  -> (rows, cols). Only the shape and the seeding
    matter here: the comparison copies weights from one side to the other."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    return (q if rows >= cols else q.T).astype(dtype)


def _positive_int(value: object, what: str, layer: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise BadInputError(f"{layer}: {what} must be a positive integer, got {value!r}")
    return int(value)


def _sequence_shape(shape: Shape, layer: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise BadInputError(f"layer {layer!r} takes sequences of shape (timesteps, features), got {shape}")
    return shape[0], shape[1]


class _Recurrent(Layer):
    """What the three recurrent layers share: Keras's arguments, the weights, the output and the backward loop.

    A subclass gives `gates` (k: the kernel holds k blocks of u columns), `carries` (how many gradients travel
    back from step to step: 1, dh; the LSTM's 2, dh and dc), its `forward` (the loop over time, caching every
    step's gates and states) and `step_back` (one step of the backward loop, which `backward` runs from T-1 down
    to 0)."""

    weight_names = ("kernel", "recurrent_kernel", "bias")
    trainable = (True, True, True)
    input_grad_optional = True
    gates = 1
    carries = 1

    def __init__(self, units: int, return_sequences: bool = False, name: str | None = None) -> None:
        self.name = name or self.kind
        where = f"{type(self).__name__} {self.name!r}"
        self.units = _positive_int(units, "units", where)
        self.return_sequences = check_flag(where, "return_sequences", return_sequences)
        self.W: Array | None = None

    def options(self) -> dict[str, object]:
        return {"return_sequences": self.return_sequences}

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.units, "linear", self.options())

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> _Recurrent:
        return cls(spec.units, **spec.options)

    def bias_init(self, dtype: np.dtype) -> Array:
        """Keras's bias_initializer: zeros (u * gates,)."""
        return np.zeros(self.gates * self.units, dtype=dtype)

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """kernel (F, k u) Glorot-uniform, recurrent_kernel (u, k u) orthogonal, bias as `bias_init`, for inputs
        (T, F); returns (T, u) with return_sequences, else (u,)."""
        self.timesteps, features = _sequence_shape(input_shape, self.name)
        width = self.gates * self.units
        self.W = glorot_uniform(features, width, dtype, rng)
        self.U = orthogonal(self.units, width, dtype, rng)
        self.b = self.bias_init(dtype)
        return (self.timesteps, self.units) if self.return_sequences else (self.units,)

    @property
    def params(self) -> list[Array]:
        return [self.W, self.U, self.b]

    @property
    def grads(self) -> list[Array]:
        return [self.dW, self.dU, self.db]

    def product_size(self, x: Array) -> int:
        """M*K*N of the products the time loops repeat, h @ U (N, u) @ (u, k u): N * U.size (from_scratch/threads.py
        picks the BLAS threads by it; the one input product X @ W is T times larger but runs once)."""
        return len(x) * self.U.size

    def output(self) -> Array:
        """H (N, T, u) with return_sequences, else its last step h_{T-1} (N, u)."""
        return self.H if self.return_sequences else self.H[:, -1]

    def upstream(self, dY: Array) -> Array:
        """dL/dh_t from the layer's output alone, (N, T, u): dY itself with return_sequences, else zeros except
        dY at the last step."""
        if self.return_sequences:
            return dY
        dH = np.zeros((len(dY), self.timesteps, self.units), dY.dtype)
        dH[:, -1] = dY
        return dH

    def check_built(self) -> None:
        if self.W is None:
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")

    @staticmethod
    def sigmoid_grad(s: Array) -> Array:
        """s'(z) from the gate's value s = s(z): s (1 - s) (TensorFlow's SigmoidGrad uses the value too)."""
        return s * (1 - s)

    @staticmethod
    def tanh_grad(a: Array) -> Array:
        """tanh'(z) from the value a = tanh(z): 1 - a^2 (as TensorFlow's TanhGrad)."""
        return 1 - a * a

    def backward(self, dY: Array, input_grad: bool = True) -> Array | None:
        """Backpropagation through time: for t = T-1 down to 0, the gradient reaching h_t is the output's plus
        the one carried back from step t+1, dh_t = dY_t + carried[0]; `step_back` turns it into step t's dZ and
        the gradients carried on to step t-1. Then the weight gradients over all steps at once (`weight_grads`).
        dY (N, T, u) or (N, u) -> dX (N, T, F) (None when input_grad is False)."""
        if not hasattr(self, "H"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        dH = self.upstream(dY)
        self.dZ = np.empty((*dH.shape[:2], self.gates * self.units), dH.dtype)
        carried = tuple(np.zeros_like(dH[:, 0]) for _ in range(self.carries))  # nothing comes from beyond T-1
        for t in range(self.timesteps - 1, -1, -1):
            carried = self.step_back(t, dH[:, t] + carried[0], carried)
        return self.weight_grads(input_grad)

    def step_back(self, t: int, dh: Array, carried: tuple[Array, ...]) -> tuple[Array, ...]:
        """Step t's backward: fill self.dZ[:, t] from dh = dL/dh_t (N, u) (and the other carried gradients), and
        return the gradients carried to step t-1 (dL/dh_{t-1} through this step first)."""
        raise NotImplementedError

    def weight_grads(self, input_grad: bool) -> Array | None:
        """dW = X_m.T dZ_m, dU = Hprev_m.T dZ_m, db = sum of dZ_m's rows, over every (n, t) row at once;
        dX = dZ W.T (or None)."""
        dz = self.dZ.reshape(-1, self.dZ.shape[-1])
        self.dW = self.X.reshape(-1, self.X.shape[-1]).T @ dz
        self.dU = self.Hprev.reshape(-1, self.units).T @ dz
        self.db = dz.sum(axis=0)
        return self.dZ @ self.W.T if input_grad else None


class SimpleRNN(_Recurrent):
    """The plain recurrent layer, as keras.layers.SimpleRNN:

        z_t = (x_t W + b) + h_{t-1} U,     h_t = f(z_t)      (f = tanh by default; h_{-1} = 0)
        x_t (N, F), W (F, u), U (u, u), b (u,)  ->  z_t, h_t (N, u);   X (N, T, F) -> H (N, T, u) or h_{T-1} (N, u)

    Backward, for t = T-1 down to 0, with g the gradient carried from step t+1 (0 at the last step):
        dh_t = dY_t + g           dz_t = f'(z_t) * dh_t           g <- dz_t U.T        (carried to t-1)
    then over all steps at once:  dW = X_m.T dZ_m,  dU = Hprev_m.T dZ_m,  db = sum dZ_m,  dX = dZ W.T.
    """

    kind = "simple_rnn"
    gates = 1

    def __init__(
        self, units: int, activation: str = "tanh", return_sequences: bool = False, name: str | None = None
    ) -> None:
        super().__init__(units, return_sequences, name)
        self.activation: Activation = get_activation(activation)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.units, self.activation.name, self.options())

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> SimpleRNN:
        return cls(spec.units, spec.activation, **spec.options)

    def forward(self, x: Array, training: bool = False) -> Array:
        """H[:, t] = f((X[:, t] W + b) + H[:, t-1] U) for t = 0 .. T-1.  X (N, T, F) -> (N, T, u) or (N, u).
        Caches X, Z (N, T, u), H (N, T, u) and Hprev (N, T, u) (H shifted one step, zeros first)."""
        self.check_built()
        n, t_len, _ = x.shape
        self.X = x
        self.Z = np.empty((n, t_len, self.units), x.dtype)
        self.Hprev = np.zeros((n, t_len, self.units), x.dtype)
        self.H = np.empty((n, t_len, self.units), x.dtype)
        h = self.Hprev[:, 0]
        xw = x @ self.W + self.b  # (N, T, u): the input's part of every step in one product
        for t in range(t_len):
            self.Hprev[:, t] = h
            self.Z[:, t] = xw[:, t] + h @ self.U
            h = self.H[:, t] = self.activation.forward(self.Z[:, t])
        return self.output()

    def step_back(self, t: int, dh: Array, carried: tuple[Array, ...]) -> tuple[Array, ...]:
        """dz_t = f'(z_t) * dh_t; carried to t-1: dz_t U.T."""
        self.dZ[:, t] = self.activation.backward(self.Z[:, t], self.H[:, t], dh)
        return (self.dZ[:, t] @ self.U.T,)


class LSTM(SimpleRNN):
    """Long short-term memory, as keras.layers.LSTM (its default implementation=2, the fused product):

        z_t = x_t W + h_{t-1} U + b                  (N, 4u), split into the gate blocks [z_i | z_f | z_c | z_o]
        i = s(z_i),  f = s(z_f),  g = tanh(z_c),  o = s(z_o)        (s: the true sigmoid, Keras's
                                                                    recurrent_activation; tanh its activation)
        c_t = f * c_{t-1} + i * g,      h_t = o * tanh(c_t)         (c_{-1} = h_{-1} = 0)
        x_t (N, F), W (F, 4u), U (u, 4u), b (4u,)  ->  h_t, c_t (N, u)

    Keras's unit_forget_bias: the bias starts at 0 except the f block, 1 (the gate starts open: remember).
    Backward, for t = T-1 down to 0, with (g_h, g_c) carried from step t+1 (zeros at the last step):
        dh = dY_t + g_h,           dc = g_c + dh * o * (1 - tanh(c_t)^2)
        dz_o = dh * tanh(c_t) * o (1 - o),    dz_i = dc * g * i (1 - i),    dz_f = dc * c_{t-1} * f (1 - f),
        dz_c = dc * i * (1 - g^2)
        g_h <- dz_t U.T,   g_c <- dc * f                            (carried to t-1)
    then dW, dU, db, dX over all steps at once, as SimpleRNN's.
    """

    kind = "lstm"
    gates = 4
    carries = 2  # dL/dh and dL/dc

    def __init__(self, units: int, return_sequences: bool = False, name: str | None = None) -> None:
        super().__init__(units, "tanh", return_sequences, name)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.units, "linear", self.options())

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> LSTM:
        return cls(spec.units, **spec.options)

    def bias_init(self, dtype: np.dtype) -> Array:
        """unit_forget_bias: [0 (i) | 1 (f) | 0 (c) | 0 (o)], each block u long."""
        b = np.zeros(4 * self.units, dtype=dtype)
        b[self.units : 2 * self.units] = 1
        return b

    def forward(self, x: Array, training: bool = False) -> Array:
        """The cell at every step (class docstring).  X (N, T, F) -> (N, T, u) or (N, u).
        Caches the gates I, F, G, O, the cell states C and Cprev, tanh(C), H and Hprev, each (N, T, u).

        The same operations on the same operands, in the same order, as the plain loop (z = x_t W + h U + b,
        [s(z_i), s(z_f), tanh(z_c), s(z_o)], c = f c + i g, h = o tanh(c)), but into arrays made once per call and
        laid out time-major with the gate blocks apart, gates (T, 4, N, u) and c, tanh(c), h (T, N, u), so that
        every operation of a step reads and writes whole contiguous blocks; the caches are (N, T, u) views of them
        (H a copy). The sigmoid runs on all 4u columns of z at once (`activations.sigmoid_into`), the c block then
        replaced by its tanh."""
        self.check_built()
        n, t_len, _ = x.shape
        u = self.units
        self.X = x
        gates = np.empty((t_len, 4, n, u), x.dtype)  # step t's i, f, g, o in gates[t, 0 .. 3]
        cs, hs = np.zeros((t_len + 1, n, u), x.dtype), np.zeros((t_len + 1, n, u), x.dtype)  # c_{t-1}, h_{t-1} in [t]
        tanh_cs = np.empty((t_len, n, u), x.dtype)
        xw = x @ self.W  # (N, T, 4u)
        z, e, d, m = (np.empty((n, 4 * u), x.dtype) for _ in range(4))
        ig = np.empty((n, u), x.dtype)
        z3, e3, d3, m3 = (a.reshape(n, 4, u) for a in (z, e, d, m))  # views: the gate blocks side by side
        for t in range(t_len):
            np.matmul(hs[t], self.U, out=z)
            np.add(xw[:, t], z, out=z)
            np.add(z, self.b, out=z)  # z = x_t W + h U + b, summed in that order
            i, f, g, o = gates[t]
            sigmoid_into(z3, gates[t].transpose(1, 0, 2), e3, d3, m3)
            np.tanh(z3[:, 2], out=g)
            c_t = cs[t + 1]
            np.multiply(f, cs[t], out=c_t)
            np.multiply(i, g, out=ig)
            np.add(c_t, ig, out=c_t)  # c = f c + i g
            np.tanh(c_t, out=tanh_cs[t])
            np.multiply(o, tanh_cs[t], out=hs[t + 1])
        self._time_major = gates, cs, tanh_cs
        self.I, self.F, self.G, self.O = (gates[:, k].transpose(1, 0, 2) for k in range(4))
        self.C, self.Cprev = cs[1:].transpose(1, 0, 2), cs[:-1].transpose(1, 0, 2)
        self.tanhC, self.Hprev = tanh_cs.transpose(1, 0, 2), hs[:-1].transpose(1, 0, 2)
        self.H = np.ascontiguousarray(hs[1:].transpose(1, 0, 2))
        return self.output()

    def backward(self, dY: Array, input_grad: bool = True) -> Array | None:
        """Backpropagation through time (class docstring, `_Recurrent.backward`), with one work array (4, N, u) for
        the gate blocks of dz that `step_back` makes apart.
        dY (N, T, u) or (N, u) -> dX (N, T, F) (None when input_grad is False)."""
        if not hasattr(self, "H"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        gates = self._time_major[0]
        self._dz_blocks = np.empty(gates.shape[1:], gates.dtype)
        dH = self.upstream(dY)
        n, t_len, u = dH.shape
        self.dZ = np.empty((n, t_len, 4 * u), dH.dtype)
        carried = tuple(np.zeros_like(dH[:, 0]) for _ in range(self.carries))  # nothing comes from beyond T-1
        for t in range(t_len - 1, -1, -1):
            carried = self.step_back(t, dH[:, t] + carried[0], carried)
        return self.weight_grads(input_grad)

    def step_back(self, t: int, dh: Array, carried: tuple[Array, ...]) -> tuple[Array, ...]:
        """dc = g_c + dh o tanh'(c_t), then the four gate blocks of dz_t; carried to t-1: (dz_t U.T, dc f).
        Each product as in the class docstring and in its order (dz_i = (dc g) i (1 - i), ...): the blocks' first
        factors made apart in the forward's layout (dz_i and dz_c in one call: dc times [g, i]), then all four times
        their derivatives in one call that writes dZ[:, t] (N, 4u), the blocks side by side."""
        gates, cs, tanh_cs = self._time_major
        i, f, g, o = gates[t]
        derivative = self.sigmoid_grad(gates[t])  # s (1 - s) of every block, (4, N, u)
        derivative[2] = self.tanh_grad(g)  # the c block's is 1 - g^2
        dc = np.multiply(dh, o)
        np.multiply(dc, self.tanh_grad(tanh_cs[t]), out=dc)
        np.add(carried[1], dc, out=dc)  # dc = g_c + (dh o) tanh'(c_t)
        dzb = self._dz_blocks
        np.multiply(dc, gates[t, 2::-2], out=dzb[0::2])  # dc g, dc i
        np.multiply(dc, cs[t], out=dzb[1])
        np.multiply(dh, tanh_cs[t], out=dzb[3])
        dz = self.dZ[:, t]
        np.multiply(dzb, derivative, out=dz.reshape(len(dz), 4, -1).transpose(1, 0, 2))
        return dz @ self.U.T, np.multiply(dc, f, out=dc)


class GRU(SimpleRNN):
    """Gated recurrent unit, as keras.layers.GRU, gate blocks in Keras's order z (update), r (reset), h (candidate).

    reset_after=True (Keras's default, the cuDNN form): bias (2, 3u), row 0 b_in for the input product, row 1
    b_rec for the recurrent one, and the reset gate multiplies the recurrent product after it:
        m_x = x_t W + b_in,   m_h = h_{t-1} U + b_rec                      (N, 3u), blocks [z | r | h]
        z = s(m_x,z + m_h,z),   r = s(m_x,r + m_h,r),   n = tanh(m_x,h + r * m_h,h)
        h_t = z * h_{t-1} + (1 - z) * n                                    (h_{-1} = 0)
    reset_after=False (the original GRU): bias (3u,), and the reset gate multiplies h_{t-1} before its product:
        m_x = x_t W + b,   z = s(m_x,z + h_{t-1} U_z),   r = s(m_x,r + h_{t-1} U_r),
        n = tanh(m_x,h + (r * h_{t-1}) U_h),   h_t = z * h_{t-1} + (1 - z) * n
    x_t (N, F), W (F, 3u), U (u, 3u) = [U_z | U_r | U_h] -> h_t (N, u).

    Backward, for t = T-1 down to 0, with g carried from step t+1 (0 at the last step), dh = dY_t + g:
        dz = dh * (h_{t-1} - n) * z (1 - z),   dn = dh * (1 - z) * (1 - n^2),   g <- dh * z + ...
      reset_after=True:   dr = dn * m_h,h * r (1 - r);  dm_x = [dz | dr | dn],  dm_h = [dz | dr | dn * r]
                          g <- dh * z + dm_h U.T;        db_in = sum dm_x, db_rec = sum dm_h
      reset_after=False:  d(r h) = dn U_h.T,  dr = d(r h) * h_{t-1} * r (1 - r);  dm_x = [dz | dr | dn]
                          g <- dh * z + [dz | dr] [U_z | U_r].T + d(r h) * r;   db = sum dm_x,
                          dU = [h_{t-1}.T [dz | dr]  |  (r h_{t-1}).T dn]
    and dW = X_m.T dm_x, dX = dm_x W.T over all steps at once.
    """

    kind = "gru"
    gates = 3

    def __init__(
        self, units: int, reset_after: bool = True, return_sequences: bool = False, name: str | None = None
    ) -> None:
        super().__init__(units, "tanh", return_sequences, name)
        self.reset_after = check_flag(f"GRU {self.name!r}", "reset_after", reset_after)

    def options(self) -> dict[str, object]:
        return {"reset_after": self.reset_after, "return_sequences": self.return_sequences}

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.units, "linear", self.options())

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> GRU:
        return cls(spec.units, **spec.options)

    def bias_init(self, dtype: np.dtype) -> Array:
        """zeros (2, 3u) with reset_after (input and recurrent biases), else zeros (3u,)."""
        return np.zeros((2, 3 * self.units) if self.reset_after else 3 * self.units, dtype=dtype)

    def forward(self, x: Array, training: bool = False) -> Array:
        """The cell at every step (class docstring).  X (N, T, F) -> (N, T, u) or (N, u).
        Caches the gates Zg, R, the candidate Nc, Hprev, H (each (N, T, u)) and the recurrent candidate product
        Mh (m_h,h with reset_after; (r h_{t-1}) otherwise)."""
        self.check_built()
        n, t_len, _ = x.shape
        u = self.units
        self.X = x
        shape = (n, t_len, u)
        self.Zg, self.R, self.Nc, self.H, self.Mh = (np.empty(shape, x.dtype) for _ in range(5))
        self.Hprev = np.zeros(shape, x.dtype)
        b_in, b_rec = (self.b[0], self.b[1]) if self.reset_after else (self.b, None)
        mx_all = x @ self.W + b_in  # (N, T, 3u)
        h = self.Hprev[:, 0]
        for t in range(t_len):
            self.Hprev[:, t] = h
            mx = mx_all[:, t]
            if self.reset_after:
                mh = h @ self.U + b_rec
                z = sigmoid(mx[:, :u] + mh[:, :u])
                r = sigmoid(mx[:, u : 2 * u] + mh[:, u : 2 * u])
                self.Mh[:, t] = mh[:, 2 * u :]
                cand = np.tanh(mx[:, 2 * u :] + r * mh[:, 2 * u :])
            else:
                mh = h @ self.U[:, : 2 * u]
                z = sigmoid(mx[:, :u] + mh[:, :u])
                r = sigmoid(mx[:, u : 2 * u] + mh[:, u:])
                self.Mh[:, t] = r * h
                cand = np.tanh(mx[:, 2 * u :] + self.Mh[:, t] @ self.U[:, 2 * u :])
            h = z * h + (1 - z) * cand
            self.Zg[:, t], self.R[:, t], self.Nc[:, t], self.H[:, t] = z, r, cand, h
        return self.output()

    def backward(self, dY: Array, input_grad: bool = True) -> Array | None:
        """Backpropagation through time (class docstring), keeping dm_h (N, T, 3u) beside dZ = dm_x for dU and
        the recurrent bias.  dY (N, T, u) or (N, u) -> dX (N, T, F)."""
        self.dMh = np.empty((len(dY), self.timesteps, 3 * self.units), dY.dtype)
        return super().backward(dY, input_grad)

    def step_back(self, t: int, dh: Array, carried: tuple[Array, ...]) -> tuple[Array, ...]:
        """dz, dr, dn of step t into dZ[:, t] (dm_x) and dMh[:, t] (dm_h, or [dz | dr | dn] without reset_after);
        carried to t-1: dh z + the recurrent products' share (class docstring)."""
        u = self.units
        z, r, cand, h_prev = self.Zg[:, t], self.R[:, t], self.Nc[:, t], self.Hprev[:, t]
        dz = dh * (h_prev - cand) * self.sigmoid_grad(z)
        dn = dh * (1 - z) * self.tanh_grad(cand)
        dmh = self.dMh[:, t]
        if self.reset_after:
            dr = dn * self.Mh[:, t] * self.sigmoid_grad(r)
            dmh[:, :u], dmh[:, u : 2 * u], dmh[:, 2 * u :] = dz, dr, dn * r
            back = dh * z + dmh @ self.U.T
        else:
            d_rh = dn @ self.U[:, 2 * u :].T
            dr = d_rh * h_prev * self.sigmoid_grad(r)
            dmh[:, :u], dmh[:, u : 2 * u], dmh[:, 2 * u :] = dz, dr, dn
            back = dh * z + dmh[:, : 2 * u] @ self.U[:, : 2 * u].T + d_rh * r
        self.dZ[:, t, :u], self.dZ[:, t, u : 2 * u], self.dZ[:, t, 2 * u :] = dz, dr, dn
        return (back,)

    def weight_grads(self, input_grad: bool) -> Array | None:
        """dW = X_m.T dm_x and dX = dm_x W.T; with reset_after dU = Hprev_m.T dm_h, bias [sum dm_x; sum dm_h];
        without, dU = [Hprev_m.T [dz | dr] | (r h_{t-1})_m.T dn], bias sum dm_x."""
        u = self.units
        dx, dmh = self.dZ.reshape(-1, 3 * u), self.dMh.reshape(-1, 3 * u)
        h_prev = self.Hprev.reshape(-1, u)
        self.dW = self.X.reshape(-1, self.X.shape[-1]).T @ dx
        if self.reset_after:
            self.dU = h_prev.T @ dmh
            self.db = np.stack([dx.sum(axis=0), dmh.sum(axis=0)])
        else:
            self.dU = np.concatenate([h_prev.T @ dmh[:, : 2 * u], self.Mh.reshape(-1, u).T @ dmh[:, 2 * u :]], 1)
            self.db = dx.sum(axis=0)
        return self.dZ @ self.W.T if input_grad else None


class Embedding(Layer):
    """A lookup table, as keras.layers.Embedding: row k of E is the vector of index k.

        Y[n, t] = E[X[n, t]]        X (N, T) integers in [0, input_dim), E (input_dim, output_dim)
                                    -> Y (N, T, output_dim)

    Backward: dE[k] = sum of dY[n, t] over every position (n, t) with X[n, t] = k: an index used twice receives
    both gradients, so the rows are added with np.add.at (dE[X] += dY would keep only one of them). The indices are
    not differentiable: dX is 0 (Keras's tape gives None). Inputs arrive in the model's float dtype (as Keras
    casts them to int32); values that are not integers in range are refused.
    Keras's embeddings_initializer "uniform": U(-0.05, 0.05).
    """

    kind = "embedding"
    weight_names = ("embeddings",)
    trainable = (True,)
    #: Its inputs are indices, not values: the harness draws integer batches for it, does not move them by an ulp
    #: (Keras's cast to int32 would truncate 3 - ulp to 2) and takes no numerical derivative with respect to them.
    integer_inputs = True

    def __init__(self, input_dim: int, output_dim: int, name: str | None = None) -> None:
        self.name = name or self.kind
        where = f"Embedding {self.name!r}"
        self.input_dim = _positive_int(input_dim, "input_dim", where)
        self.output_dim = _positive_int(output_dim, "output_dim", where)
        self.E: Array | None = None

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Embedding:
        return cls(spec.options["input_dim"], spec.units)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.output_dim, "linear", {"input_dim": self.input_dim})

    def build(self, input_shape: Shape, dtype: np.dtype, rng: np.random.Generator) -> Shape:
        """E (input_dim, output_dim) from U(-0.05, 0.05), for index sequences (T,); returns (T, output_dim)."""
        if len(input_shape) != 1:
            raise BadInputError(f"layer {self.name!r} takes index sequences of shape (timesteps,), got {input_shape}")
        self.E = rng.uniform(-0.05, 0.05, size=(self.input_dim, self.output_dim)).astype(dtype)
        return (input_shape[0], self.output_dim)

    @property
    def params(self) -> list[Array]:
        return [self.E]

    @property
    def grads(self) -> list[Array]:
        return [self.dE]

    def forward(self, x: Array, training: bool = False) -> Array:
        """Y = E[X] (a gather).  X (N, T) -> Y (N, T, output_dim); caches the integer indices."""
        if self.E is None:
            raise BadInputError(f"layer {self.name!r} is not built: put it in a Sequential (or call build) first")
        x = np.asarray(x)
        index = x.astype(np.int64)
        bad = (index != x) | (index < 0) | (index >= self.input_dim)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise BadInputError(
                f"layer {self.name!r}: input {x[at].item()!r} at {at} is not an index in [0, {self.input_dim})"
            )
        self.X, self.index = x, index
        self.A = self.E[index]
        return self.A

    def backward(self, dY: Array) -> Array:
        """dE = zeros, then dE[X[n, t]] += dY[n, t] for every position (np.add.at accumulates repeats).
        dY (N, T, output_dim) -> dX = 0 (N, T)."""
        if not hasattr(self, "index"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        self.dE = np.zeros_like(self.E)
        np.add.at(self.dE, self.index, dY)
        return np.zeros(self.index.shape, dY.dtype)


#: The sequence layers, by kind; registered in from_scratch.layers.LAYERS as the convolutional layers are (one
#: registry: the architecture grammar, the harness and the exhaustive tests read that one).
SEQUENCE_LAYERS: dict[str, type[Layer]] = {
    "simple_rnn": SimpleRNN,
    "lstm": LSTM,
    "gru": GRU,
    "embedding": Embedding,
}

LAYERS.update(SEQUENCE_LAYERS)
