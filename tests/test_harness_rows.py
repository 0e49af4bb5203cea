"""The harness proves itself, row by row: a wrong value fed to one side makes exactly the rows that read it FAIL.

For every quantity the harness compares (the weights' round trip, the loss, the output, the output of the inference
pass after the step, every parameter's gradient or state after the step, dL/dX, every per-layer record, the numerical
witness, the Taylor witness), over three
depths (one Dense layer; two; Dense, BatchNormalization, Dense, Dropout, Dense) and both dtypes, a test perturbs
that quantity on the scratch side or on the Keras side only and asserts the set of failing checks (table rows
and per-layer steps) is exactly the set that depends on it. A row that compared a side with itself, or a figure
fixed at 0, fails here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import compare.harness as harness
from compare.check import check_layer, taylor_row
from compare.harness import INFERENCE_ROW, INFERENCE_STEP, build_pair, compare_models
from from_scratch import Dense
from from_scratch.arch import LayerSpec
from from_scratch.graph_arch import Call, GraphArchitecture
from keras_impl.model import astype as keras_astype


def _merges() -> GraphArchitecture:
    """Two inputs, every merge kind once (Multiply and Minimum of three tensors), fan-outs from both Dense layers and
    from input b, which also reaches the output directly through the Concatenate."""
    specs = {
        "d1": LayerSpec("dense", 4, "tanh"),
        "d2": LayerSpec("dense", 4, "sigmoid"),
        "add": LayerSpec("add"),
        "sub": LayerSpec("subtract"),
        "mul": LayerSpec("multiply"),
        "avg": LayerSpec("average"),
        "max": LayerSpec("maximum"),
        "min": LayerSpec("minimum"),
        "dot": LayerSpec("dot", options={"axes": 1}),
        "cat": LayerSpec("concatenate", options={"axis": -1}),
        "out": LayerSpec("dense", 3, "softmax"),
    }
    calls = {
        "d1": ("a",),
        "d2": ("b",),
        "add": ("d1", "d2"),
        "sub": ("d1", "d2"),
        "mul": ("add", "sub", "d2"),
        "avg": ("mul", "d1"),
        "max": ("avg", "d2"),
        "min": ("max", "d1", "add"),
        "dot": ("min", "d2"),
        "cat": ("min", "dot", "b"),
        "out": ("cat",),
    }
    return GraphArchitecture(
        (("a", (4,)), ("b", (4,))),
        tuple(specs.items()),
        tuple(Call(name, inputs) for name, inputs in calls.items()),
        ("out",),
    )


ARCHS = {
    "depth1": "6-4",
    "depth2": "6-5-4",
    "depth3_bn_dropout": "6-5-bn-4:tanh-dropout0.3-3",
    # the layers keras.applications' networks add, each row of each read by the harness
    "applications": "5x5x2-pad0x1x0x1-conv2k3:linear:nobias-relu6-dw2:same:m=2-act:tanh-relu:max=1.5:t=0.2-flatten-3",
    "merges": _merges(),
}
DTYPES = ("float64", "float32")

#: The relative size of the wrong value: far above float32 rounding (1e-7), far below a formula error.
WRONG = 1e-3


def batch(arch):
    scratch, _ = build_pair(arch)
    rng = np.random.default_rng(3)
    shapes = scratch.architecture.graph().input_shapes
    x = [rng.standard_normal((8, *shape)) for shape in shapes]
    k = scratch.architecture.graph().output_shapes[0][-1]
    return x if len(x) > 1 else x[0], np.eye(k)[rng.integers(0, k, size=8)]


def run(arch: str, dtype: str):
    scratch, keras_model = build_pair(arch, dtype, seed=1)
    x, y = batch(arch)
    return compare_models(scratch, keras_model, x, y, gradcheck_samples=3)


def failing(report) -> set[str]:
    return {row.name for row in report.rows if not row.passed} | {
        f"step {step.where}" for step in report.trace if not step.passed
    }


def wrong(value):
    """The value with an offset of WRONG times its root-mean-square (or WRONG, if it is all zeros)."""
    value = np.asarray(value, np.float64)
    rms = float(np.sqrt(np.mean(value**2))) if value.size else 0.0
    return (value + WRONG * max(rms, 1.0 if rms == 0 else rms)).astype(np.asarray(value).dtype)


def fields(arch):
    """(field, index, key, rows and steps that read it) for every quantity of `arch`'s Side record: per node (a chain's
    nodes are its layers), the parameters at their layer's node, dL/dX per input (named after it when several)."""
    scratch, _ = build_pair(arch)
    names = scratch.weight_names()
    trainable = scratch.trainable
    offsets = dict(
        zip((id(layer) for layer in scratch.layers), np.cumsum([0] + [len(la.params) for la in scratch.layers]))
    )
    out = [
        ("loss", None, None, {"loss", "step loss"}),
        ("output", None, None, {"output"}),
        ("inference", None, None, {INFERENCE_ROW, f"step {INFERENCE_STEP}"}),
    ]
    if len(scratch.inputs) == 1:
        out.append(("input_grad", None, None, {"grad input", "step dL/dX (input)"}))
    else:
        for j, t in enumerate(scratch.inputs):
            name = t.node.name
            out.append(("input_grad", j, None, {f"grad input {name}", f"step dL/dX (input {name})"}))
    for i, node in enumerate(scratch.nodes):
        layer = node.layer
        where = f"layer {i + 1} ({node.name})"
        for j, label in enumerate(layer.param_names()):
            k = int(offsets[id(layer)] + j)
            if trainable[k]:
                out.append(("grads", k, None, {f"grad {names[k]}", f"step {where} dL/d{label}"}))
            else:
                out.append(("state", k, None, {f"state {names[k]} after step"}))
        keys = ["A", "dA"] + (["Z", "dZ"] if isinstance(layer, Dense) else [])
        for key in keys:
            if key == "dA" and i == len(scratch.nodes) - 1:
                continue  # the fused softmax + cross-entropy path starts at dL/dZ
            quantity = key if key in ("A", "Z") else f"dL/d{key[1:]}"
            out.append(("records", i, key, {f"step {where} {quantity}"}))
    return out


def perturbed(side: harness.Side, field: str, index, key) -> harness.Side:
    if field == "loss":
        return dataclasses.replace(side, loss=float(side.loss) * (1 + WRONG))
    if field == "input_grad" and index is not None:  # one input of several
        values = list(side.input_grad)
        values[index] = wrong(values[index])
        return dataclasses.replace(side, input_grad=values)
    if field in ("output", "input_grad", "inference"):
        return dataclasses.replace(side, **{field: wrong(getattr(side, field))})
    if field in ("grads", "state"):
        values = list(getattr(side, field))
        values[index] = wrong(values[index])
        return dataclasses.replace(side, **{field: values})
    records = [dict(r) for r in side.records]
    records[index][key] = wrong(records[index][key])
    return dataclasses.replace(side, records=records)


CASES = [
    pytest.param(name, dtype, f, i, k, expect, id=f"{name}-{dtype}-{f}-{i}-{k}")
    for name, arch in ARCHS.items()
    for dtype in DTYPES
    for f, i, k, expect in fields(arch)
]


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_unperturbed_everything_passes(name, dtype):
    assert failing(run(ARCHS[name], dtype)) == set()


@pytest.mark.parametrize("name,dtype,field,index,key,expect", CASES)
def test_a_wrong_scratch_value_fails_exactly_its_rows(monkeypatch, name, dtype, field, index, key, expect):
    if field == "inference":  # the inference pass runs after the term magnitudes are read from the caches
        inference = harness.scratch_inference
        monkeypatch.setattr(harness, "scratch_inference", lambda *args: wrong(inference(*args)))
    else:
        original = harness.scratch_side

        def tampered(*args, **kwargs):
            side, result = original(*args, **kwargs)
            return perturbed(side, field, index, key), result

        monkeypatch.setattr(harness, "scratch_side", tampered)
    assert failing(run(ARCHS[name], dtype)) == expect


@pytest.mark.parametrize("name,dtype,field,index,key,expect", CASES)
def test_a_wrong_keras_value_fails_exactly_its_rows(monkeypatch, name, dtype, field, index, key, expect):
    """The Keras side: the same rows, and in float64 also the numerical witness where it reads Keras's gradient
    (in float32 the witness reads the float64 truth, not the Keras float32 side)."""
    original = harness.keras_side
    calls = []

    def tampered(*args, **kwargs):
        side = original(*args, **kwargs)
        calls.append(side)
        return perturbed(side, field, index, key) if len(calls) == 1 else side  # the 2nd call is the truth

    monkeypatch.setattr(harness, "keras_side", tampered)
    report = run(ARCHS[name], dtype)
    witness = {row.name for row in report.rows if row.name.startswith("numerical grad")}
    reads_witness = dtype == "float64" and field in ("grads", "input_grad")
    assert failing(report) == expect | (witness if reads_witness else set())


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_round_trip_fails_exactly_its_row(monkeypatch, dtype):
    scratch, keras_model = build_pair(ARCHS["depth2"], dtype, seed=1)
    original = keras_model.get_weights
    calls = []

    def read_back():
        weights = original()
        calls.append(1)
        if len(calls) == 1:  # the round trip's read-back; later reads (the state after the step) are left alone
            weights[1] = weights[1] + np.asarray(np.finfo(dtype).eps, dtype)
        return weights

    monkeypatch.setattr(keras_model, "get_weights", read_back)
    x, y = batch(ARCHS["depth2"])
    report = compare_models(scratch, keras_model, x, y, gradcheck_samples=3)
    assert failing(report) == {"weights round trip"}
    assert report.rows[0].error > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_numerical_witness_fails_exactly_its_row(monkeypatch, dtype):
    original = harness.gradcheck

    def tampered(*args, **kwargs):
        points = original(*args, **kwargs)
        for p in points:  # every difference it takes (a wrong central difference alone reads as a joint: at_joint)
            p.numerical *= 1 + WRONG
            p.left = None if p.left is None else p.left * (1 + WRONG)
            p.right = None if p.right is None else p.right * (1 + WRONG)
        return points

    monkeypatch.setattr(harness, "gradcheck", tampered)
    report = run(ARCHS["depth2"], dtype)
    assert failing(report) == {row.name for row in report.rows if row.name.startswith("numerical grad")}


def test_a_wrong_float64_truth_fails_the_witness_in_float32(monkeypatch):
    """In float32 the float64 truth is the witness's reference: a wrong truth gradient fails the witness."""
    original = harness.keras_side
    calls = []

    def tampered(*args, **kwargs):
        side = original(*args, **kwargs)
        calls.append(side)
        return perturbed(side, "grads", 0, None) if len(calls) == 2 else side

    monkeypatch.setattr(harness, "keras_side", tampered)
    report = run(ARCHS["depth2"], "float32")
    assert [row.name for row in report.failures if row.name.startswith("numerical grad")]


def test_the_float32_truth_is_keras_in_float64_on_the_same_weights(monkeypatch):
    """The float32 rows are measured against Keras run in float64 on the float32 weights and batch, upcast
    exactly: captured from the harness and recomputed independently, bit for bit."""
    import keras_impl

    captured = []
    original = harness.keras_side
    monkeypatch.setattr(harness, "keras_side", lambda *a, **k: captured.append(original(*a, **k)) or captured[-1])
    arch = ARCHS["depth3_bn_dropout"]
    scratch, keras_model = build_pair(arch, "float32", seed=1)
    weights = scratch.get_weights()
    x, y = batch(arch)
    compare_models(scratch, keras_model, x, y, gradcheck_samples=0)
    truth = captured[1]
    independent = keras_astype(keras_model, "float64")
    independent.set_weights([w.astype(np.float64) for w in weights])
    again = keras_impl.loss_and_gradients(
        independent, x.astype(np.float32).astype(np.float64), y, "categorical_crossentropy"
    )
    assert truth.loss == again.loss
    for a, b in zip(truth.grads, again.grads):
        np.testing.assert_array_equal(a, b)
    assert truth.output.dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_gradient_fails_the_taylor_witness(dtype):
    """The Taylor row on a correct backward has slope ~2; a backward scaled by 1.01 has slope ~1."""
    import keras

    from compare.check import Projection

    layer = Dense(4, "tanh")
    report = check_layer(layer, keras.layers.Dense(4, activation="tanh"), (5,), dtype=dtype)
    assert report.passed
    slope = report.rows[-1]
    assert slope.name.startswith("Taylor") and 1.9 < slope.error < 2.1

    class ScaledDense(Dense):  # a backward 1% off: every gradient scaled by 1.01
        def backward(self, dA, input_grad=True):
            dX = super().backward(dA, input_grad)
            self.dW, self.db = 1.01 * self.dW, 1.01 * self.db
            return None if dX is None else 1.01 * dX

    model = harness.Sequential([ScaledDense(4, "tanh")], input_shape=(5,), dtype=dtype)
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(dtype)
    g = np.random.default_rng(1).standard_normal((6, 4))
    row = taylor_row(model, x, np.zeros((6, 4)), Projection(g))
    assert not row.passed and 0.9 < row.error < 1.2


# ----- wrong backward passes, float32 included (the float32 rule needs no per-layer knowledge) -------------------
def plant_bn_dx_halved(model):
    from from_scratch import BatchNormalization

    class HalvedDX(BatchNormalization):
        def backward(self, dA, input_grad=True):
            dX = super().backward(dA, input_grad)
            return None if dX is None else 0.5 * dX

    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            layer.__class__ = HalvedDX


def plant_first_bias_doubled(model):
    first = model.layers[0]

    class DoubledBias(Dense):
        def backward_from_z(self, dZ, input_grad=True):
            dX = super().backward_from_z(dZ, input_grad)
            self.db = 2 * self.db
            return dX

    first.__class__ = DoubledBias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "plant,first,pattern",
    [
        (plant_bn_dx_halved, "layer 3 (dense_1) dL/dA", "a constant factor 0.5"),  # the last BN's dX reaches dense_1
        (plant_first_bias_doubled, "layer 1 (dense) dL/dbias", "a constant factor 2"),
    ],
)
def test_wrong_backward_below_batchnorm_fails_in_both_dtypes(plant, first, pattern, dtype):
    """Found by review: with term magnitudes, float32 accepted these in 64-32-bn-16-bn-10 (the terms below a BN
    layer are 1e5 to 1.8e8 times the gradient). Measured against the float64 truth, both fail and are located."""
    scratch, keras_model = build_pair("64-32-bn-16-bn-10", dtype, seed=0)
    plant(scratch)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 64)), np.eye(10)[rng.integers(0, 10, size=32)]
    report = compare_models(scratch, keras_model, x, y, gradcheck_samples=0)
    assert not report.passed
    assert report.diagnosis.first.where == first
    assert pattern in report.diagnosis.text


@pytest.mark.parametrize(
    "name",
    [
        "missing_1_over_n",
        "relu_mask_at_kink",
        "softmax_batch_max",
        "dx_untransposed",
        "bias_gradient_mean",
        "sigmoid_grad_of_output",
        "backward_mutates_input",
        "gradients_accumulate",
    ],
)
def test_every_gradient_zoo_bug_is_caught_and_located_in_float32(name):
    from compare.zoo import ZOO, diagnosis_text

    entry = ZOO[name]
    report = entry.run(dtype="float32")
    assert not report.passed
    assert entry.expect in diagnosis_text(report)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_second_keras_sample_moves_every_input_and_weight_by_one_ulp(monkeypatch, dtype):
    """The float32 gauge b' is Keras on values one ulp off: every input and weight moved, by exactly one ulp."""
    scratch, keras_model = build_pair(ARCHS["depth3_bn_dropout"], dtype, seed=1)
    x, y = batch(ARCHS["depth3_bn_dropout"])
    x = x.astype(dtype)
    weights = scratch.get_weights()
    keras_model.set_weights(weights)
    seen = {}
    original = harness.keras_side

    def spy(model, xs, *args, **kwargs):
        seen["x"], seen["weights"] = xs, model.get_weights()
        return original(model, xs, *args, **kwargs)

    monkeypatch.setattr(harness, "keras_side", spy)
    harness.share_dropout_masks(scratch, keras_model, len(x))
    harness.jittered_side(
        keras_model, x, y.astype(dtype), harness.get_loss("categorical_crossentropy"), None, weights, seed=0
    )
    went_up = []
    for before, after in zip([x, *weights], [seen["x"], *seen["weights"]]):
        assert after.dtype == before.dtype
        up, down = (np.nextafter(before, np.array(v, before.dtype)) for v in (np.inf, -np.inf))
        assert np.all(np.where(before == 0, after == 0, (after == up) | (after == down)))  # zeros stay exact
        went_up.append((after == up).ravel())
    assert 0.3 < np.concatenate(went_up).mean() < 0.7  # random directions
    np.testing.assert_array_equal(keras_model.get_weights()[0], weights[0])  # the model is left as it was


def test_overflowed_term_magnitudes_are_no_floor():
    """A bound compounded over many layers can overflow; an infinite or NaN term magnitude must not make every
    difference pass, in either dtype."""
    from compare.tolerances import F32_FACTOR, F64_TOL, norm_rel_error, truth_rel_error

    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.5])
    for bad in (np.array([np.inf, 1.0]), np.array([np.nan, 1.0])):
        assert norm_rel_error(a, b, bad, 1e-3) > F64_TOL
        assert truth_rel_error(b, a, a, bad, a) > F32_FACTOR


def test_the_float64_rounding_floor_passes_noise_and_no_wrong_side():
    """float64's floor is 64 times what one ulp on every input and weight moves Keras's value (b'), measured from the
    side nearer to b': three values of rounding noise pass; a wrong value on either side fails, however far the other
    side's pass moved."""
    from compare.tolerances import F64_TOL, norm_rel_error

    rng = np.random.default_rng(0)
    noise = [rng.standard_normal(5) * 1e-16 for _ in range(3)]
    assert norm_rel_error(noise[0], noise[1], b_again=noise[2]) <= F64_TOL  # an exact zero, noise on all three
    assert norm_rel_error(noise[0], noise[1]) > F64_TOL  # plain norm-relative: 1.0
    right = rng.standard_normal(5)
    wrong = right * (1 + 1e-3)
    again = right + 1e-16 * rng.standard_normal(5)
    assert norm_rel_error(wrong, right, b_again=again) > F64_TOL  # scratch wrong
    assert norm_rel_error(right, wrong, b_again=again) > F64_TOL  # Keras wrong: b' far from b, near a
