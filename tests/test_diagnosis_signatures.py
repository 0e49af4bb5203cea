"""The diagnosis tells a convention from a bug, and says only what its evidence shows.

Real layers against real Keras twins (check_layer, compare_models): a different convention (an epsilon, a gate
order, another formula) is a consistent gradient of a different function, so the output and the numerical witness
fail and the Taylor row passes; a backward bug leaves output and witness passing and fails the Taylor row and the
gradients. The reading (`Diagnosis.kind`, `Diagnosis.reading`, the `kind:` line under a failing table) says which.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from compare.check import check_layer, keras_twin_model
from compare.diagnosis import INFERENCE_ROW, KINDS, describe
from compare.harness import compare_models
from compare.report import render, to_json
from examples.custom_layer.swish import BrokenSwish
from from_scratch import Layer, Sequential
from from_scratch.conv import MaxPooling2D
from from_scratch.layers import BatchNormalization, Dense, LayerNormalization
from from_scratch.recurrent import GRU, LSTM


def rows(report, kind):
    """The report's rows of one kind: "output", "witness" (numerical), "taylor"."""
    prefix = {"output": "output", "witness": "numerical grad", "taylor": "Taylor remainder"}[kind]
    return [row for row in report.rows if row.name.startswith(prefix)]


def passed(report, kind):
    return all(row.passed for row in rows(report, kind))


# ----- layers: conventions (consistent gradients of another function) -----------------------------------------------
class OtherGateOrderLSTM(LSTM):
    """An LSTM that reads Keras's (i, f, c, o) weight blocks as (f, i, o, c), in its forward and its backward alike:
    the exact gradient of another function."""

    order = (1, 0, 3, 2)

    def _columns(self):
        u = self.units
        return np.concatenate([np.arange(j * u, (j + 1) * u) for j in self.order])

    def forward(self, x, training=False):
        cols, kept = self._columns(), (self.W, self.U, self.b)
        self.W, self.U, self.b = self.W[:, cols], self.U[:, cols], self.b[cols]
        try:
            return super().forward(x, training)
        finally:
            self.W, self.U, self.b = kept

    def backward(self, dY, input_grad=True):
        cols, kept = self._columns(), (self.W, self.U, self.b)
        self.W, self.U, self.b = self.W[:, cols], self.U[:, cols], self.b[cols]
        try:
            dx = super().backward(dY, input_grad)
        finally:
            self.W, self.U, self.b = kept
        back = np.argsort(cols)
        self.dW, self.dU, self.db = self.dW[:, back], self.dU[:, back], self.db[back]
        return dx


class TanhGelu(Layer):
    """GELU by its tanh approximation, forward and exact derivative: Keras's Activation("gelu") is the erf form."""

    def forward(self, x, training=False):
        self.x = x
        self.t = np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))  # a Python float keeps x's dtype
        return 0.5 * x * (1 + self.t)

    def backward(self, dy):
        x, t = self.x, self.t
        du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x**2)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du)


# ----- layers: bugs --------------------------------------------------------------------------------------------------
class InputAndForgetGateBug(LSTM):
    """dz_i and dz_f without their sigmoid derivatives, carried back to step t-1 as the right ones would be."""

    def step_back(self, t, dh, carried):
        back = super().step_back(t, dh, carried)
        u, dz = self.units, self.dZ[:, t]
        dz[:, :u] /= self.sigmoid_grad(self.I[:, t])
        dz[:, u : 2 * u] /= self.sigmoid_grad(self.F[:, t])
        return dz @ self.U.T, back[1]


class UpdateAndResetGateBug(GRU):
    """dz and dr of a GRU twice what they are, carried back as the right ones would be."""

    def step_back(self, t, dh, carried):
        super().step_back(t, dh, carried)
        u = self.units
        self.dZ[:, t, : 2 * u] *= 2.0
        self.dMh[:, t, : 2 * u] *= 2.0
        return (dh * self.Zg[:, t] + self.dMh[:, t] @ self.U.T,)


class EarlyReturnMaxPool(MaxPooling2D):
    """A max-pool whose loop over the windows returns inside the loop: only the first window gets its gradient."""

    def forward(self, x, training=False):
        self.X = x
        return super().forward(x, training)

    def backward(self, dA):
        x, dX = self.X, np.zeros_like(self.X)
        n, ho, wo, c = dA.shape
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        for i in range(ho):
            for j in range(wo):
                window = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :].reshape(n, kh * kw, c)
                first = window.argmax(axis=1)
                for m in range(n):
                    for ch in range(c):
                        p, q = divmod(int(first[m, ch]), kw)
                        dX[m, i * sh + p, j * sw + q, ch] += dA[m, i, j, ch]
                return dX  # the bug
        return dX


class SquaredSwishForward(Layer):
    """A forward bug with the backward written for the right function: y = x s(x) + x^2 / 10, dx = Swish's."""

    def forward(self, x, training=False):
        self.x, self.s = x, 1 / (1 + np.exp(-x))
        return x * self.s + x**2 / 10

    def backward(self, dy):
        s = self.s
        return dy * (s + self.x * s * (1 - s))


class SquaredBrokenSwishForward(SquaredSwishForward):
    """The same forward bug, and the backward missing sigmoid's (1 - s) as well."""

    def backward(self, dy):
        return dy * (self.s + self.x * self.s)


class Float32Swish(Layer):
    """Swish computed in float32 inside, returned in the caller's dtype (a correct layer, float32 arithmetic)."""

    def forward(self, x, training=False):
        self.dtype, self.x = x.dtype, x.astype(np.float32)
        self.s = 1 / (1 + np.exp(-self.x))
        return (self.x * self.s).astype(x.dtype)

    def backward(self, dy):
        s = self.s
        return (dy * (s + self.x * s * (1 - s))).astype(self.dtype)


class CachedSwish(Layer):
    """Swish that recomputes only when its input's shape changes: right on the batch it first sees, deaf to small
    changes of it (what differences of the loss are made of)."""

    def forward(self, x, training=False):
        if getattr(self, "shape", None) != x.shape:
            self.shape, self.x, self.s = x.shape, x.copy(), 1 / (1 + np.exp(-x))
        return self.x * self.s

    def backward(self, dy):
        s = self.s
        return dy * (s + self.x * s * (1 - s))


class KernelRowBug(Dense):
    """A Dense whose kernel gradient is off in input row 2 only."""

    def backward_from_z(self, dZ, input_grad=True):
        dX = super().backward_from_z(dZ, input_grad)
        self.dW[2] += 1.0
        return dX


# ----- a convention: output and witness fail, the Taylor row passes --------------------------------------------------
CONVENTIONS = {
    "batchnorm_epsilon": lambda dtype="float64": check_layer(
        BatchNormalization(epsilon=1e-6), keras.layers.BatchNormalization(), 5, dtype=dtype
    ),
    "layernorm_epsilon": lambda dtype="float64": check_layer(
        LayerNormalization(epsilon=1e-6), keras.layers.LayerNormalization(), 6, dtype=dtype
    ),
    "lstm_gate_order": lambda dtype="float64": check_layer(
        OtherGateOrderLSTM(3), keras.layers.LSTM(3), (4, 2), batch=4, dtype=dtype
    ),
    "gelu_tanh_formula": lambda dtype="float64": check_layer(
        TanhGelu(), keras.layers.Activation("gelu"), 7, dtype=dtype
    ),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_a_different_convention_is_read_as_a_different_function_not_a_backward_bug(name, dtype):
    report = CONVENTIONS[name](dtype)
    assert not passed(report, "output") and not passed(report, "witness") and passed(report, "taylor")  # the signature
    diagnosis = report.diagnosis
    assert diagnosis.kind == "convention"
    assert diagnosis.reading.startswith(KINDS["convention"] + ": the scratch forward computes a different function")
    assert "its backward is consistent with its own forward (the Taylor row passes)" in diagnosis.reading
    assert f"first at {diagnosis.first.where}" in diagnosis.reading and diagnosis.first.phase == "forward"
    assert f"\nkind: {diagnosis.reading}" in render(report)
    assert '"kind": "convention"' in to_json(report)


def test_an_epsilon_that_differs_is_described_as_a_rescaling_per_feature():
    """BatchNormalization's output with another epsilon is, feature by feature, c Keras + d (c = sqrt((v + 1e-3) /
    (v + 1e-6)) > 1): named as such, not "no simple pattern"."""
    text = CONVENTIONS["batchnorm_epsilon"]().diagnosis.text
    assert "feature by feature (last axis) scratch = c Keras + d" in text and "no simple pattern" not in text
    low, high = (float(v) for v in text.split("c - 1 from ")[1].split(",")[0].split(" to "))
    assert 0 < low <= high < 1e-2  # every feature scaled up a little: the larger epsilon is Keras's


# ----- a backward bug: output and witness pass, the Taylor row and the gradients fail --------------------------------
BACKWARD_BUGS = {
    "swish_missing_one_minus_s": (
        lambda dtype="float64": check_layer(BrokenSwish(), keras.layers.Activation("silu"), 7, dtype=dtype),
        "",
    ),
    "lstm_gates_i_and_f": (
        lambda dtype="float64": check_layer(
            InputAndForgetGateBug(3), keras.layers.LSTM(3), (2, 2), batch=4, dtype=dtype
        ),
        "most in gates i (columns 0..2) and f (columns 3..5)",
    ),
    "gru_blocks_z_and_r": (
        lambda dtype="float64": check_layer(
            UpdateAndResetGateBug(3), keras.layers.GRU(3), (4, 2), batch=4, dtype=dtype
        ),
        "most in gates z (columns 0..2) and r (columns 3..5)",
    ),
    "maxpool_returns_inside_its_loop": (
        lambda dtype="float64": check_layer(
            EarlyReturnMaxPool(), keras.layers.MaxPooling2D(), (8, 8, 2), batch=4, dtype=dtype
        ),
        "scratch is 0 at 120 of 128 entries where Keras is not",
    ),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BACKWARD_BUGS))
def test_a_backward_bug_is_read_as_one_and_located(name, dtype):
    run, pattern = BACKWARD_BUGS[name]
    report = run(dtype)
    assert passed(report, "output") and passed(report, "witness") and not passed(report, "taylor")  # the signature
    diagnosis = report.diagnosis
    assert diagnosis.kind == "backward bug" and diagnosis.forward_ok
    assert diagnosis.reading.startswith(
        "a backward bug: the forward agrees (output, loss and numerical witness pass) and the backward is not the "
        "gradient of the forward (the Taylor row fails): the gradients first differ at " + diagnosis.first.where
    )
    assert pattern in diagnosis.text


class InputGateMostlyBug(LSTM):
    """dz_i ten times, dz_f three times what they are: i stands out, f less so, and BPTT carries both into c, o."""

    def step_back(self, t, dh, carried):
        back = super().step_back(t, dh, carried)
        u, dz = self.units, self.dZ[:, t]
        dz[:, :u] *= 10.0
        dz[:, u : 2 * u] *= 3.0
        return dz @ self.U.T, back[1]


def test_a_bug_in_two_gate_blocks_names_both():
    """The LSTM bug in gates i and f, the GRU's in z and r: every block that stands out is named, none alone; where
    one block stands out, every other block is still named with its error."""
    for name, gates in (("lstm_gates_i_and_f", "gate i (columns"), ("gru_blocks_z_and_r", "gate z (columns")):
        text = BACKWARD_BUGS[name][0]().diagnosis.text
        assert "most in gates " in text and f"most in {gates}" not in text
    text = check_layer(InputGateMostlyBug(3), keras.layers.LSTM(3), (2, 2), batch=4).diagnosis.text
    assert "most in gate i (columns 0..2)" in text
    others = text.split("in the others ")[1].split(";")[0]
    assert [part.split(" ")[0] for part in others.split(", ")] == ["f", "c", "o"]


def test_a_forward_bug_whose_backward_is_kerass_gradient():
    """Forward wrong, backward written for the right function: the gradients agree, the Taylor row fails."""
    report = check_layer(SquaredSwishForward(), keras.layers.Activation("silu"), 7)
    assert not passed(report, "output") and not passed(report, "taylor")
    assert all(row.passed for row in report.rows if row.name.startswith("grad "))
    assert report.diagnosis.kind == "forward bug"
    assert "the backward is Keras's gradient but not the gradient of the scratch forward" in report.diagnosis.reading


def test_a_forward_and_a_backward_bug_are_read_as_both():
    report = check_layer(SquaredBrokenSwishForward(), keras.layers.Activation("silu"), 7)
    assert report.diagnosis.kind == "forward and backward"
    assert "the backward is not the gradient of the scratch forward either (the Taylor row fails" in (
        report.diagnosis.reading
    )


# ----- compare runs: no Taylor row; what the other rows tell, and what they cannot -----------------------------------
def compare_layer(layer, keras_layer, input_shape, gradcheck_samples=8, seed=0):
    """One layer through compare_models (no Taylor row) with a squared-error loss on random targets."""
    model = Sequential([layer], seed=seed, input_shape=input_shape)
    twin = keras_twin_model(keras_layer, input_shape, "float64")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, *input_shape))
    y = rng.standard_normal((8, *model.output_shape))
    return compare_models(model, twin, x, y, "mse", gradcheck_samples=gradcheck_samples, seed=seed)


def test_a_compare_run_reads_a_backward_bug_from_the_witness_and_says_the_taylor_row_is_missing():
    report = compare_layer(BrokenSwish(), keras.layers.Activation("silu"), (7,))
    assert not rows(report, "taylor") and passed(report, "witness")
    assert report.diagnosis.kind == "backward bug"
    reading = report.diagnosis.reading
    assert "the numerical witness, central differences of the scratch loss, agrees with Keras's gradient" in reading
    assert "so the scratch gradient is not the derivative of the scratch loss" in reading
    assert "(this run has no Taylor row)" in reading


def test_a_compare_run_without_witnesses_says_how_far_it_can_read():
    report = compare_layer(BrokenSwish(), keras.layers.Activation("silu"), (7,), gradcheck_samples=0)
    assert not rows(report, "taylor") and not rows(report, "witness")
    assert report.diagnosis.kind == "backward bug"
    assert report.diagnosis.reading.startswith("a backward bug, as far as this run shows")
    assert "no numerical witness or Taylor row ran" in report.diagnosis.reading


def test_a_compare_run_cannot_tell_a_convention_from_a_forward_bug_and_says_so():
    report = compare_layer(BatchNormalization(epsilon=1e-6), keras.layers.BatchNormalization(), (5,))
    assert report.diagnosis.kind == "forward differs"
    reading = report.diagnosis.reading
    assert "This run has no Taylor row" in reading and "cannot tell a different convention" in reading
    assert "the numerical witness fails, as it does for either" in reading


# ----- wording that claimed more than its evidence -------------------------------------------------------------------
def test_float32_arithmetic_in_a_float64_check_is_named_not_a_factor_of_1():
    report = check_layer(Float32Swish(), keras.layers.Activation("silu"), 7)
    text, reading = report.diagnosis.text, report.diagnosis.reading
    assert "1 x Keras" not in text and "constant factor" not in text
    assert "float32 rounding" in text and "holds only float32 numbers" in text
    assert report.diagnosis.kind == "float32 arithmetic"
    rel = float(text.split("differs by ")[1].split(" relative")[0])
    assert 2.0**-30 < rel <= 1e-5  # the size of float32 rounding, whatever the processor's last bits
    assert "check the layer with dtype='float32'" in reading


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_describe_never_calls_a_rounding_sized_difference_a_factor(dtype):
    rng = np.random.default_rng(3)
    theirs = rng.standard_normal((6, 5))
    for ours in (theirs * (1 + 3e-8), theirs + 1e-9 * rng.standard_normal(theirs.shape), theirs.astype(np.float32)):
        text = describe(ours.astype(dtype) if dtype == "float32" else ours, theirs)
        assert "factor" not in text and text.startswith("differs by ") and "relative (norm)" in text
    square = rng.standard_normal((5, 5))
    symmetric = square + square.T
    assert "transpose" not in describe(symmetric * (1 + 1e-9), symmetric)  # its own transpose: nothing to tell
    assert describe(theirs * 1.00000003, theirs).startswith("differs by 3.0e-08 relative")
    assert "scratch = 1.00002 x Keras" in describe(theirs * 1.00002, theirs)  # a small factor, printed as one


def test_a_gradient_left_at_zero_says_where():
    rng = np.random.default_rng(4)
    theirs = rng.standard_normal((8, 16))
    assert describe(np.zeros_like(theirs), theirs).startswith(
        "scratch is 0 at every one of the 128 entries where Keras is not"
    )
    partial = np.where(np.arange(16) < 2, theirs, 0.0)
    text = describe(partial, theirs)
    assert text.startswith("scratch is 0 at 112 of 128 entries where Keras is not") and "agrees elsewhere" in text


def test_a_failing_report_whose_trace_agrees_names_its_failing_rows():
    """A layer deaf to small changes of its input: forward and gradients agree, the witnesses fail. The diagnosis
    names each failing row and what it means, never "every recorded quantity agrees" alone."""
    report = check_layer(CachedSwish(), keras.layers.Activation("silu"), 7)
    failing = [row for row in report.rows if not row.passed]
    assert failing and {r.name.split(" ")[0] for r in failing} == {"numerical", "Taylor"}
    assert report.diagnosis.first is None
    text = report.diagnosis.text
    assert text.startswith("every quantity the trace records agrees, forward and backward, yet 2 rows fail")
    assert all(row.name in text for row in failing)
    assert "central differences of the scratch loss disagree with Keras's gradient" in text
    assert report.diagnosis.kind == "witness only"
    assert "differences of the scratch loss do not follow the gradient both sides agree on" in report.diagnosis.reading


def test_a_float32_layer_in_a_float32_check_is_not_told_everything_agrees():
    """The issue's case: a correct layer computing in float32 inside, checked in float32. The witnesses are judged
    at the precision the layer delivers, so it passes; and with nothing failing, the diagnosis says no more."""
    report = check_layer(Float32Swish(), keras.layers.Activation("silu"), 7, dtype="float32")
    assert report.passed, report.verdict()
    assert report.diagnosis.text == "every recorded quantity agrees, forward and backward"
    assert report.diagnosis.reading == ""


def test_rows_of_a_weight_gradient_are_not_called_samples():
    report = check_layer(KernelRowBug(4), keras.layers.Dense(4), 5)
    assert report.diagnosis.first.quantity == "dL/dkernel"
    assert "confined to row(s) [2] of 5" in report.diagnosis.text and "samples" not in report.diagnosis.text
    assert report.diagnosis.kind == "backward bug"
    rng = np.random.default_rng(5)
    theirs = rng.standard_normal((6, 4))
    shifted = np.where(np.arange(6)[:, None] == 1, theirs + 1, theirs)
    assert "(these samples only)" in describe(shifted, theirs, batch_axis=True)


def test_non_finite_values_are_counted_on_the_side_that_has_them():
    theirs = np.arange(1.0, 7.0).reshape(2, 3)
    ours = theirs.copy()
    ours[0, 1] = np.nan
    assert describe(ours, theirs).startswith("scratch has NaN or infinity where Keras is finite (1 of 6 entries")
    assert describe(theirs, ours).startswith("Keras has NaN or infinity where scratch is finite (1 of 6 entries)")


def test_a_factor_of_one_half_is_not_blamed_on_accumulation():
    """Gradients accumulated across the harness's two backward passes double; they never halve."""
    rng = np.random.default_rng(6)
    theirs = rng.standard_normal((4, 3))
    assert "accumulated" not in describe(theirs / 2, theirs)
    assert "accumulated across calls" in describe(theirs * 2, theirs)


# ----- more of the class: whole models, the command line, a forward deaf to its input ------------------------------
def test_a_convention_inside_a_model_is_read_through_check_model():
    """A BatchNormalization with another epsilon between two Dense layers of a user's model (check_model): read as a
    convention, first at the normalisation's output."""
    import keras_impl
    from compare.check import check_model
    from from_scratch import Architecture

    arch = Architecture.parse("6-5:tanh-bn-4")
    scratch = Sequential.from_architecture(arch, seed=0)
    scratch.layers[1].epsilon = 1e-6
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 6)), np.eye(4)[rng.integers(0, 4, size=9)]
    report = check_model(scratch, keras_impl.build_model(arch, "float64"), x, y)
    assert report.diagnosis.first.where == "layer 2 (batch_normalization) A"
    assert report.diagnosis.kind == "convention"


def test_the_compare_command_prints_the_kind_of_a_forward_difference(capsys, monkeypatch):
    from compare import cli

    original = BatchNormalization.__init__

    def small_epsilon(self, momentum=0.99, epsilon=1e-3, name=None):
        original(self, momentum, 1e-6, name)

    monkeypatch.setattr(BatchNormalization, "__init__", small_epsilon)
    code = cli.main(["compare", "--arch", "6-5-bn-4", "--batch", "8"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert lines[-2].startswith("diagnosis: forward first differs at layer 2 (batch_normalization) A")
    assert lines[-1].startswith("kind: the forward differs: the scratch forward computes a different function")
    assert "This run has no Taylor row (check_layer and check_model add one)" in lines[-1]


class CachedBrokenSwish(CachedSwish):
    """Deaf to small changes of its input, and its backward missing sigmoid's (1 - s)."""

    def backward(self, dy):
        return dy * (self.s + self.x * self.s)


def test_a_forward_deaf_to_its_input_is_not_read_as_a_plain_backward_bug_without_a_taylor_row():
    """Forward right on the batch, gradients wrong, the witness failing: without a Taylor row the functions part
    around the batch, and whether the backward is wrong too is left to the Taylor row; with it, a backward bug."""
    report = compare_layer(CachedBrokenSwish(), keras.layers.Activation("silu"), (7,))
    assert report.diagnosis.kind == "around the batch"
    assert "whether the backward is also wrong needs the Taylor row" in report.diagnosis.reading
    checked = check_layer(CachedBrokenSwish(), keras.layers.Activation("silu"), 7)
    assert checked.diagnosis.kind == "backward bug"
    assert "the numerical witness fails too although the forward agrees on this batch" in checked.diagnosis.reading


def test_a_compare_run_whose_witness_alone_fails_says_so():
    report = compare_layer(CachedSwish(), keras.layers.Activation("silu"), (7,))
    assert [row.name.split(" ")[0] for row in report.rows if not row.passed] == ["numerical"]
    assert report.diagnosis.kind == "witness only"
    assert report.diagnosis.text.startswith("every quantity the trace records agrees, forward and backward, yet a row")


def test_a_shift_is_not_claimed_where_keras_is_its_own_shift():
    """A feature map constant down its columns is its own shift: a difference on its top row alone is no shift."""
    rng = np.random.default_rng(7)
    rows_constant = np.repeat(rng.standard_normal((2, 1, 5, 3)), 5, axis=1)
    bordered = rows_constant.copy()
    bordered[:, 0] += 1.0  # differs on the top row only
    assert "shifted" not in describe(bordered, rows_constant)


def test_a_per_feature_shift_is_called_a_shift_not_a_rescaling():
    """A Dense whose bias is read from the wrong place: Z differs by a constant per unit, not by a scale."""

    class ShiftedBias(Dense):
        def forward(self, x, training=False):
            kept = self.b
            self.b = kept + np.arange(1, self.units + 1)
            try:
                return super().forward(x, training)
            finally:
                self.b = kept

    report = check_layer(ShiftedBias(4), keras.layers.Dense(4), 5)
    text = report.diagnosis.text
    assert "feature by feature (last axis) scratch = Keras + d with its own d: d from 1 to 4" in text
    assert "rescaled" not in text
    assert report.diagnosis.kind == "forward differs"  # a shift moves no derivative: gradients and witnesses pass
    assert "a difference that moves no derivative" in report.diagnosis.reading


class InPlaceSwish(Layer):
    """A right Swish whose backward writes its result into the dy it is handed (dy *= s'; return dy)."""

    def forward(self, x, training=False):
        self.x, self.s = x, 1 / (1 + np.exp(-x))
        return x * self.s

    def backward(self, dy):
        s = self.s
        dy *= s + self.x * s * (1 - s)
        return dy


def test_a_backward_that_writes_into_dy_is_named_not_no_simple_pattern():
    report = check_layer(InPlaceSwish(), keras.layers.Activation("silu"), 7)
    assert not report.passed
    assert report.verdict().startswith("FAIL: layer 'in_place_swish' wrote into its input dy during backward")
    assert report.diagnosis.reading.startswith(KINDS["protocol"] + " (layer 'in_place_swish' wrote into its input dy")
    assert report.diagnosis.reading.count("wrote into its input dy") == 1  # said once, first
    text = report.diagnosis.text
    assert "no simple pattern" not in text
    assert "scratch's dL/dA holds the values of its dL/dX (input) (Keras's does not)" in text
    assert "wrote its result into the dy it was handed" in text
    assert report.diagnosis.kind == "intermediate only"  # every gradient row agrees: not "agree on the batch only"


def test_moving_statistics_that_differ_are_named_under_an_agreeing_trace():
    """BatchNormalization with momentum 0.9 against Keras's 0.99: the training pass agrees, the moving statistics
    after the step do not, and so the inference pass that reads them; the diagnosis names those rows and reads
    them as the inference pass differing, not "every recorded quantity agrees" nor an intermediate."""
    report = check_layer(BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(), 5)
    failing = [row.name for row in report.rows if not row.passed]
    assert set(failing) == {
        INFERENCE_ROW,
        "state batch_normalization/moving_mean after step",
        "state batch_normalization/moving_variance after step",
    }
    assert all(name in report.diagnosis.reading for name in failing)
    assert "(a non-trainable weight after the training step: its update differs" in report.diagnosis.reading
    assert report.diagnosis.kind == "inference only"
    assert "the training pass agrees with Keras's (output, loss and every gradient)" in report.diagnosis.reading
    assert "every recorded quantity agrees" not in report.diagnosis.text


def test_a_protocol_breach_is_read_first():
    """A layer that writes into its input: the reading names the breach before anything else it finds."""

    class ZeroesItsInput(Layer):
        def forward(self, x, training=False):
            y = x + x**2
            x[...] = 0.0
            return y

        def backward(self, dy):
            return dy  # never reached correctly: the point is the breach

    report = check_layer(ZeroesItsInput(), keras.layers.Identity(), 4)
    assert not report.passed
    assert report.diagnosis.reading.startswith(KINDS["protocol"])
