"""The recurrent layers' faster arithmetic gives the same bits as the version it replaced.

from_scratch/recurrent.py's LSTM now writes every step into arrays made once per call (time-major, the gate blocks
apart: gates (T, 4, N, u)), with ufuncs into them (out=), takes the sigmoid of all 4u columns of z in one call per
operation and without np.where (its numerator max(e, m) is 1 or e; the c block then overwritten by its tanh), makes
each step's gate derivatives in the backward loop on whole blocks, and forms dz_i and dz_c in one call; the GRU's
gates use the same where-free sigmoid, which is now activations.sigmoid itself (every sigmoid of the project, a
Dense layer's and a loss's too). None of this changes an operation, its operands or their order, nor the layout
the matrix products read, so every array must be equal bit for bit (NaNs: see NAN_SIGN_AND_PAYLOAD_COMPARED). The
frozen copies below are the committed code before the change (89496a2: LSTM.forward, LSTM.step_back, the shared
_Recurrent.backward, GRU.forward and activations.sigmoid, verbatim but for the names), and each case compares the bit
patterns of the output, every cached array, every parameter gradient and dL/dX, with and without return_sequences and
input_grad, on random shapes with ties, signed zeros, infinities and NaNs in the inputs, the upstream gradient and the
weights, for the LSTM and the GRU both ways (reset_after True and False). SimpleRNN did not change.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import same_bits

from from_scratch import Sequential
from from_scratch.activations import sigmoid
from from_scratch.errors import BadInputError
from from_scratch.recurrent import GRU, LSTM


# ----- the committed version before the change (89496a2), verbatim but for the names -----------------------------
def frozen_sigmoid(z):
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class FrozenLSTM(LSTM):
    """LSTM with the forward and backward arithmetic of commit 89496a2."""

    sigmoid = staticmethod(frozen_sigmoid)

    def forward(self, x, training=False):
        self.check_built()
        n, t_len, _ = x.shape
        u = self.units
        self.X = x
        shape = (n, t_len, u)
        self.I, self.F, self.G, self.O = (np.empty(shape, x.dtype) for _ in range(4))
        self.C, self.tanhC, self.H = (np.empty(shape, x.dtype) for _ in range(3))
        self.Hprev, self.Cprev = np.zeros(shape, x.dtype), np.zeros(shape, x.dtype)
        h, c = self.Hprev[:, 0], self.Cprev[:, 0]
        xw = x @ self.W  # (N, T, 4u)
        for t in range(t_len):
            self.Hprev[:, t], self.Cprev[:, t] = h, c
            z = xw[:, t] + h @ self.U + self.b
            i, f, g, o = (
                self.sigmoid(z[:, :u]),
                self.sigmoid(z[:, u : 2 * u]),
                np.tanh(z[:, 2 * u : 3 * u]),
                self.sigmoid(z[:, 3 * u :]),
            )
            c = f * c + i * g
            self.tanhC[:, t] = np.tanh(c)
            h = o * self.tanhC[:, t]
            self.I[:, t], self.F[:, t], self.G[:, t], self.O[:, t], self.C[:, t], self.H[:, t] = i, f, g, o, c, h
        return self.output()

    def backward(self, dY, input_grad=True):
        if not hasattr(self, "H"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        dH = self.upstream(dY)
        self.dZ = np.empty((*dH.shape[:2], self.gates * self.units), dH.dtype)
        carried = tuple(np.zeros_like(dH[:, 0]) for _ in range(self.carries))  # nothing comes from beyond T-1
        for t in range(self.timesteps - 1, -1, -1):
            carried = self.step_back(t, dH[:, t] + carried[0], carried)
        return self.weight_grads(input_grad)

    def step_back(self, t, dh, carried):
        u = self.units
        i, f, g, o, tanh_c = self.I[:, t], self.F[:, t], self.G[:, t], self.O[:, t], self.tanhC[:, t]
        dc = carried[1] + dh * o * self.tanh_grad(tanh_c)
        dz = self.dZ[:, t]
        dz[:, :u] = dc * g * self.sigmoid_grad(i)
        dz[:, u : 2 * u] = dc * self.Cprev[:, t] * self.sigmoid_grad(f)
        dz[:, 2 * u : 3 * u] = dc * i * self.tanh_grad(g)
        dz[:, 3 * u :] = dh * tanh_c * self.sigmoid_grad(o)
        return dz @ self.U.T, dc * f


class FrozenGRU(GRU):
    """GRU with the forward arithmetic of commit 89496a2 (its backward did not change)."""

    def forward(self, x, training=False):
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
                z = frozen_sigmoid(mx[:, :u] + mh[:, :u])
                r = frozen_sigmoid(mx[:, u : 2 * u] + mh[:, u : 2 * u])
                self.Mh[:, t] = mh[:, 2 * u :]
                cand = np.tanh(mx[:, 2 * u :] + r * mh[:, 2 * u :])
            else:
                mh = h @ self.U[:, : 2 * u]
                z = frozen_sigmoid(mx[:, :u] + mh[:, :u])
                r = frozen_sigmoid(mx[:, u : 2 * u] + mh[:, u:])
                self.Mh[:, t] = r * h
                cand = np.tanh(mx[:, 2 * u :] + self.Mh[:, t] @ self.U[:, 2 * u :])
            h = z * h + (1 - z) * cand
            self.Zg[:, t], self.R[:, t], self.Nc[:, t], self.H[:, t] = z, r, cand, h
        return self.output()


# ----- the comparison --------------------------------------------------------------------------------------------
#: A NaN's sign and payload are not compared, only where the NaNs are: which operand's NaN an operation passes on is
#: decided by the SIMD kernel NumPy picks for the loop's length and the processor (on this AVX-512 machine, float32
#: -NaN * +NaN gives -NaN over 7 elements and +NaN over 24), and the new code runs some loops over 4u columns where
#: the old one ran over u. Every other value (+-0 and +-inf included) must match bit for bit.
NAN_SIGN_AND_PAYLOAD_COMPARED = False


def differing_bits(a: object, b: object) -> str | None:
    """tests/same_bits.py's comparison, NaNs as NAN_SIGN_AND_PAYLOAD_COMPARED says."""
    return same_bits.differing_bits(a, b, NAN_SIGN_AND_PAYLOAD_COMPARED)


#: What the forward pass caches (the backward pass and the diagnosis read them), then what the backward pass makes.
RECORDS = {LSTM: ("I", "F", "G", "O", "C", "tanhC", "H", "Hprev", "Cprev"), GRU: ("Zg", "R", "Nc", "H", "Mh", "Hprev")}
BACKWARD_RECORDS = {LSTM: ("dZ",), GRU: ("dZ", "dMh")}


def compare_layers(new: LSTM | GRU, old: LSTM | GRU, where: str, backward: bool) -> None:
    kind = type(new)
    for name in RECORDS[kind] + (BACKWARD_RECORDS[kind] if backward else ()):
        a, b = getattr(new, name), getattr(old, name)
        assert differing_bits(a, b) is None, f"{where}: {name}: {differing_bits(a, b)}"
    if backward:
        for name, ga, gb in zip(new.weight_names, new.grads, old.grads):
            assert differing_bits(ga, gb) is None, f"{where}: gradient of {name}: {differing_bits(ga, gb)}"


def make_pair(units: int, return_sequences: bool, shape: tuple[int, int], dtype: str, seed: int, kind: str = "lstm"):
    """The new layer and its frozen twin, built alike: kind "lstm", "gru" (reset_after) or "gru_reset_before"."""
    if kind == "lstm":
        new, old = LSTM(units, return_sequences), FrozenLSTM(units, return_sequences)
    else:
        reset_after = kind == "gru"
        new, old = GRU(units, reset_after, return_sequences), FrozenGRU(units, reset_after, return_sequences)
    for layer in (new, old):
        layer.build(shape, np.dtype(dtype), np.random.default_rng(seed))
    return new, old


def plant(x: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """x with ties (repeated steps, repeated features), signed zeros, infinities and NaNs, or huge values planted."""
    x = x.copy()
    flat = x.reshape(-1)
    if kind == "ties":
        if x.ndim == 3:
            x[:, 1::2] = x[:, ::2][:, : x[:, 1::2].shape[1]]  # every odd step repeats the one before
        x[..., -1] = x[..., 0]
    elif kind == "zeros":
        at = rng.choice(flat.size, flat.size // 3, replace=False)
        flat[at] = np.where(rng.random(at.size) < 0.5, 0.0, -0.0)
        x[0] = -0.0  # a whole sample (or row) of negative zeros
    elif kind == "nonfinite":
        at = rng.choice(flat.size, min(4, flat.size), replace=False)
        flat[at] = [np.inf, -np.inf, np.nan, -np.nan][: at.size]
    elif kind == "large":
        x *= x.dtype.type(1e3 if x.dtype == np.float32 else 1e100)  # saturated gates, overflowing states
    return x


KINDS = ("plain", "ties", "zeros", "nonfinite", "large")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_activations_sigmoid_gives_the_old_bits(dtype: str) -> None:
    """activations.sigmoid (where-free, `sigmoid_into`) against the np.where form it replaced, on every kind of
    input, contiguous and strided, and on a 0-d array and an integer array (exp's own output type)."""
    rng = np.random.default_rng(3)
    with np.errstate(all="ignore"):
        for kind in KINDS:
            z = plant(rng.standard_normal((9, 40)).astype(dtype) * 20, rng, kind)
            for view in (z, z[:, ::3], z.T):
                assert differing_bits(sigmoid(view), frozen_sigmoid(view)) is None, f"{dtype}, {kind}"
    for z in (np.asarray(0.5, dtype), np.arange(-3, 4), np.arange(-3, 4, dtype=np.int8)):
        assert differing_bits(sigmoid(z), frozen_sigmoid(z)) is None, z.dtype


#: (batch N, timesteps T, features F, units u): one of each small edge (N, T, u of 1) and some larger ones.
SHAPES = ((3, 5, 4, 6), (1, 1, 1, 1), (2, 7, 3, 1), (1, 4, 2, 5), (5, 1, 6, 3), (4, 9, 5, 16), (64, 8, 16, 64))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", range(len(SHAPES)))
@pytest.mark.parametrize("layer", ["lstm", "gru", "gru_reset_before"])
def test_new_recurrent_arithmetic_gives_the_old_bits(layer: str, dtype: str, index: int) -> None:
    n, t, f, u = SHAPES[index]
    rng = np.random.default_rng(200 + index)
    with np.errstate(all="ignore"):
        for kind, return_sequences in itertools.product(KINDS, (False, True)):
            where = f"{layer}, shape {SHAPES[index]}, {dtype}, inputs {kind}, return_sequences={return_sequences}"
            new, old = make_pair(u, return_sequences, (t, f), dtype, seed=index, kind=layer)
            if kind in ("zeros", "nonfinite", "ties"):  # the same specials in the weights, on both sides
                for name in ("W", "U", "b"):
                    w = plant(getattr(new, name).reshape(1, -1), rng, kind).reshape(getattr(new, name).shape)
                    setattr(new, name, w)
                    setattr(old, name, w.copy())
            x = plant(rng.standard_normal((n, t, f)).astype(dtype), rng, kind)
            y_new, y_old = new.forward(x, training=True), old.forward(x.copy(), training=True)
            assert differing_bits(y_new, y_old) is None, f"{where}: output: {differing_bits(y_new, y_old)}"
            compare_layers(new, old, where, backward=False)
            dy = plant(rng.standard_normal(y_new.shape).astype(dtype), rng, "zeros" if kind == "zeros" else kind)
            for input_grad in (True, False):
                dx_new = new.backward(dy, input_grad=input_grad)
                dx_old = old.backward(dy.copy(), input_grad=input_grad)
                compare_layers(new, old, f"{where}, input_grad={input_grad}", backward=True)
                if input_grad:
                    assert differing_bits(dx_new, dx_old) is None, f"{where}: dL/dX: {differing_bits(dx_new, dx_old)}"
                else:
                    assert dx_new is None and dx_old is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arch", ["8x16-lstm64-10", "6x5-lstm7:seq-lstm4-3", "7x4-gru6:seq-gru5-3"])
def test_a_training_step_gives_the_old_bits(dtype: str, arch: str) -> None:
    """Sequential.train_step (the benchmarked step: forward, backward without dL/dX of the first layer, SGD) three
    times on the new and the frozen layers: the same loss and weights after each step, bit for bit."""
    rng = np.random.default_rng(9)
    models = []
    for frozen in (False, True):
        model = Sequential.from_architecture(arch, dtype=dtype, seed=0)
        if frozen:
            for layer in model.layers:
                layer.__class__ = {LSTM: FrozenLSTM, GRU: FrozenGRU}.get(type(layer), type(layer))
        model.compile("sgd", "categorical_crossentropy")
        models.append(model)
    t, f = models[0].input_shape
    for step in range(3):
        x = plant(rng.standard_normal((32, t, f)).astype(dtype), rng, "ties" if step == 1 else "plain")
        y = np.eye(models[0].output_dim, dtype=dtype)[rng.integers(0, models[0].output_dim, 32)]
        losses = [m.train_step(x, y) for m in models]
        assert differing_bits(np.asarray(losses[0]), np.asarray(losses[1])) is None, f"step {step}: loss"
        for k, (a, b) in enumerate(zip(models[0].get_weights(), models[1].get_weights())):
            assert differing_bits(a, b) is None, f"step {step}: parameter {k}: {differing_bits(a, b)}"


def test_the_bit_comparison_catches_one_ulp_a_zero_sign_a_nan_and_a_planted_change() -> None:
    """The check above fails on a wrong answer, down to the smallest one (a NaN's sign aside)."""
    same_bits.check_the_comparison(differing_bits)
    a = np.array([1.0, 0.0, np.nan], "float32")
    payload = a.copy()
    payload.view("u4")[2] ^= 1 << 31  # -NaN: another NaN, the same for this comparison
    assert np.isnan(payload[2]) and differing_bits(a, payload) is None
    # the frozen layer really is another implementation: a planted change in it is caught, in the output and in
    # every gradient, for a weight moved by one ulp and for the sigmoid in another (mathematically equal) form
    x = np.random.default_rng(0).standard_normal((4, 6, 5))
    dy = np.random.default_rng(1).standard_normal((4, 6, 7))
    new, old = make_pair(7, True, (6, 5), "float64", seed=0)
    old.U = old.U.copy()
    old.U[0, 0] = np.nextafter(old.U[0, 0], 1.0)
    new.forward(x), old.forward(x)
    new.backward(dy), old.backward(dy)
    with pytest.raises(AssertionError, match="differ in their bits"):
        compare_layers(new, old, "U moved by one ulp", backward=True)
    new, old = make_pair(7, True, (6, 5), "float64", seed=0)
    old.sigmoid = lambda z: 1 / (1 + np.exp(-z))
    assert differing_bits(new.forward(x), old.forward(x)) is not None
    new.backward(dy), old.backward(dy)
    for name, ga, gb in zip(new.weight_names, new.grads, old.grads):
        assert differing_bits(ga, gb) is not None, name
