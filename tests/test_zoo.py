"""The bug zoo is caught and located, the diagnosis describes the patterns, and the Keras trace is the real thing."""

import json

import numpy as np
import pytest

import keras_impl
from compare import cli
from compare.diagnosis import describe
from compare.harness import INFERENCE_STEP, compare_models
from compare.zoo import ZOO, diagnosis_text
from from_scratch import Architecture, Sequential

#: The sequence bugs' located patterns (the time step, the gate block, the rows).
SEQUENCE_PATTERNS = [
    ("lstm_gate_order", "scratch's columns hold Keras's [f, c, i, o] blocks where Keras stacks [i, f, c, o]"),
    ("lstm_dh_not_carried", "its dL/dX agrees at t = 7 and first differs at t = 6 (of 0..7), step 2 counting"),
    ("lstm_dc_not_carried", "differs in gates i (columns 0..15) and c (columns 32..47); gate(s) f, o agree"),
    ("lstm_missing_sigmoid_grad", "differs in every gate block, most in gate f (columns 16..31)"),
    ("embedding_assigns", "each hold a single position's dL/dA where Keras sums every position"),
    ("gru_reset_before", "the output agrees at t = 0 and first differs at t = 1 (of 0..7)"),
]

#: The graph bugs' patterns: what the graph around the first differing node proves.
GRAPH_PATTERNS = [
    (
        "fanout_overwritten",
        "scratch's dL/dA is what branch (node 2) sent back alone; Keras's is the sum over what the 2",
    ),
    ("shared_last_call_only", "scratch's dL/dkernel is the gradient of call shared (node 1) alone; Keras's is the sum"),
    ("concatenate_wrong_offset", "scratch's dL/dA is columns 6..9 of joined's dL/dA (node 4), Keras's columns 8..11"),
    ("multiply_missing_other", "scratch's dL/dA is the dL/dA of gated (node 3) handed back unchanged, Keras's is not"),
    ("maximum_tie_to_both", "each where this node's output ties with another input of larger (node 3)"),
]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_bug_is_caught_and_located(name):
    entry = ZOO[name]
    report = entry.run()
    assert not report.passed
    assert entry.expect in diagnosis_text(report)


@pytest.mark.parametrize(
    "name,pattern",
    [
        ("missing_1_over_n", "a constant factor N = 16 (the batch size)"),
        ("relu_mask_at_kink", "a mask off at the kink: the sides differ only where Z == 0 exactly"),
        ("softmax_batch_max", "scratch has NaN or infinity where Keras is finite"),
        ("bias_gradient_mean", "a constant factor 1/N = 1/16"),
        ("backward_mutates_input", "zeroed where Z <= 0"),
        ("gradients_accumulate", "a constant factor 2"),
        ("momentum_wrong_sign", "a sign flip: scratch = -Keras"),
        ("adam_missing_bias_power", "the run first parts at step 2"),
        ("kernel_dlfs_layout", "a (c_out, c_in, kh, kw) kernel (deep-learning-from-scratch's) copied without"),
        ("flatten_chw", "scratch flattens in (c, h, w) order, Keras in (h, w, c)"),
        ("maxpool_every_tie", "scratch has gradient where Keras has exactly 0"),
        ("same_padding_wrong_side", "shifted by one cell (down and right)"),
        *SEQUENCE_PATTERNS,
        *GRAPH_PATTERNS,
    ],
)
def test_the_diagnosis_names_the_pattern(name, pattern):
    assert pattern in diagnosis_text(ZOO[name].run())


@pytest.mark.parametrize("name,pattern", GRAPH_PATTERNS)
def test_graph_bugs_are_located_alike_in_float32(name, pattern):
    """The node and the graph pattern are read from values equal up to float32 rounding or apart at order 1."""
    text = diagnosis_text(ZOO[name].run(dtype="float32"))
    assert ZOO[name].expect in text and pattern in text


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", ["RESIDUAL", "SIAMESE", "CONCAT", "GATED", "MAX_OF_TWO"])
def test_the_graph_zoo_passes_without_its_bug(arch, dtype):
    """Each graph the zoo plants into passes unplanted, on the same kind of batch (the tie row included): what the
    planted entries catch is the bug, not the graph."""
    from compare import zoo_graph
    from compare.zoo_planting import _batch

    description = getattr(zoo_graph, arch)
    if arch == "SIAMESE":
        rng = np.random.default_rng(21)
        x, y = [rng.standard_normal((8, 5)), rng.standard_normal((8, 5))], np.eye(3)[rng.integers(0, 3, size=8)]
    else:
        x, y = _batch(8, 6, 3, seed=24)
        x[2] = 0.0
    report = zoo_graph._compare_graph(description, x, y, lambda m: None, dtype)
    assert report.passed, report.diagnosis.text
    assert report.diagnosis.first is None


def test_an_in_place_backward_in_a_graph_names_its_producer():
    """A square Dense whose backward writes dL/dX into the dy it was handed: its recorded dL/dA then holds its
    producer's dL/dA. In this graph the producer p is node 1 while the node numbered one below is another branch's,
    so the gradient is followed through the graph (Step.producers), not down the numbering."""
    from compare.zoo_graph import _compare_graph, graph
    from compare.zoo_planting import _batch, _swap_class
    from from_scratch.arch import LayerSpec

    description = graph(
        [("x", (5,))],
        [(name, LayerSpec("dense", 5, "tanh")) for name in ("p", "o", "r", "t")]
        + [("join", LayerSpec("multiply")), ("head", LayerSpec("dense", 3, "softmax"))],
        [("p", ("x",)), ("o", ("x",)), ("r", ("p",)), ("t", ("o",)), ("join", ("t", "r")), ("head", ("join",))],
        ["head"],
    )

    def plant(m):
        r = next(layer for layer in m.layers if layer.name == "r")
        base = type(r).backward

        def backward(self, dy, input_grad=True):
            dy[...] = base(self, dy)
            return dy

        _swap_class(r, "backward", backward)

    report = _compare_graph(description, *_batch(8, 5, 3, seed=3), plant)
    assert [step.layer_name for step in report.trace[:4]] == ["p", "p", "o", "o"]  # r is node 4, p node 1
    assert "first differs at layer 4 (r) dL/dA" in report.diagnosis.text
    assert "scratch's dL/dA holds the values of its layer 1 (p) dL/dA" in report.diagnosis.text


@pytest.mark.parametrize("name,pattern", SEQUENCE_PATTERNS)
def test_sequence_bugs_are_located_alike_in_float32(name, pattern):
    """The time step and gate block are read above float32 rounding, not above float64's."""
    text = diagnosis_text(ZOO[name].run(dtype="float32"))
    assert ZOO[name].expect in text and pattern in text


def test_zoo_command_reports_every_bug_located(capsys):
    code = cli.main(["zoo", "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(results) == len(ZOO) and all(r["caught"] for r in results)


def test_compare_prints_the_diagnosis_below_a_failing_table(capsys, monkeypatch):
    original = Sequential.backward_pass

    def half_bias(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        self.layers[1].db = self.layers[1].db / 2
        result.grads[3] = self.layers[1].db
        return result

    monkeypatch.setattr(Sequential, "backward_pass", half_bias)
    code = cli.main(["compare", "--batch", "8"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.strip().splitlines()[-2] == (
        "diagnosis: forward agrees; backward first differs at layer 2 (dense_1) dL/dbias (error 5.00e-01): "
        "a constant factor 0.5: scratch = 0.5 x Keras (a 1/2 too many, or a square's 2 left out?)"
    )
    assert out.strip().splitlines()[-1].startswith("kind: a backward bug: the forward agrees (output and loss pass)")


#: The trace's dW = A_prev^T dZ is our own matmul of the traced tensors, not the tape's kernel gradient: equal to
#: rounding (a few ulps), not bit for bit.
TRACE_TOL = {"float64": 1e-14, "float32": 1e-6}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", ["6-5-4-3", "6-5:tanh-bn-dropout0.3-3:sigmoid", "6-4:gelu-3:linear"])
def test_keras_trace_is_the_models_own_computation(arch, dtype):
    """The layer-by-layer Keras pass (Dense as its three operations) gives model(x)'s output bit for bit, its
    dL/dZ reproduces the tape's weight gradients, and the layer state is left as it was."""
    description = Architecture.parse(arch)
    scratch = Sequential.from_architecture(description, dtype=dtype, seed=0)
    model = keras_impl.build_model(description, dtype)
    model.set_weights(scratch.get_weights())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 6)).astype(dtype), np.eye(3)[rng.integers(0, 3, size=7)].astype(dtype)
    for layer in model.layers:
        if hasattr(layer, "mask"):
            layer.mask = rng.uniform(size=(7, 5)) >= 0.3
    loss = "binary_crossentropy" if arch.endswith("sigmoid") else "categorical_crossentropy"
    state = [v.numpy() for v in model.non_trainable_weights]
    main = keras_impl.loss_and_gradients(model, x, y, loss)
    for v, s in zip(model.non_trainable_weights, state):
        v.assign(s)
    traced = keras_impl.trace.trace(model, x, y, loss)
    np.testing.assert_array_equal(traced[-1]["A"], main.output)
    assert all(np.array_equal(v.numpy(), s) for v, s in zip(model.non_trainable_weights, state))
    index = 0
    for i, layer in enumerate(model.layers):
        if hasattr(layer, "kernel"):
            h = traced[i - 1]["A"] if i > 0 else x
            dW, db = h.T @ traced[i]["dZ"], traced[i]["dZ"].sum(axis=0)
            for ours, theirs in ((dW, main.grads[index]), (db, main.grads[index + 1])):
                assert np.linalg.norm(ours - theirs) <= TRACE_TOL[dtype] * np.linalg.norm(theirs)
        index += len(layer.weights)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_keras_trace_of_a_cnn_is_the_models_own_computation(dtype):
    """For Conv2D the trace runs convolution_op, the bias add and the activation: the output is model(x)'s bit for
    bit, and the traced dL/dZ summed over (N, H, W) reproduces the tape's bias gradient."""
    from compare.check import random_nonzero_params

    description = Architecture.parse("6x6x2-conv3k3-pool2-conv4k2:same:tanh-flatten-3")
    scratch = Sequential.from_architecture(description, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    scratch.set_weights(random_nonzero_params(scratch, rng))  # nonzero biases: a lost bias add must show
    model = keras_impl.build_model(description, dtype)
    model.set_weights(scratch.get_weights())
    x, y = rng.standard_normal((5, 6, 6, 2)).astype(dtype), np.eye(3)[rng.integers(0, 3, size=5)].astype(dtype)
    main = keras_impl.loss_and_gradients(model, x, y, "categorical_crossentropy")
    traced = keras_impl.trace.trace(model, x, y, "categorical_crossentropy")
    np.testing.assert_array_equal(traced[-1]["A"], main.output)
    convs = [i for i, layer in enumerate(model.layers) if layer.__class__.__name__ == "Conv2D"]
    index = [sum(len(layer.weights) for layer in model.layers[:i]) for i in convs]
    for i, first in zip(convs, index):
        db = traced[i]["dZ"].sum(axis=(0, 1, 2))
        theirs = main.grads[first + 1]
        assert np.linalg.norm(db - theirs) <= TRACE_TOL[dtype] * np.linalg.norm(theirs)


def test_a_passing_comparison_records_every_layer_and_agrees():
    arch = Architecture.parse("6-5-bn-4")
    scratch = Sequential.from_architecture(arch, seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((9, 6)), np.eye(4)[rng.integers(0, 4, size=9)]
    report = compare_models(scratch, keras_impl.build_model(arch, "float64"), x, y, gradcheck_samples=0)
    assert report.passed and report.diagnosis.first is None
    wheres = [step.where for step in report.trace]
    assert wheres[:4] == [
        "layer 1 (dense) Z",
        "layer 1 (dense) A",
        "layer 2 (batch_normalization) A",
        "layer 3 (dense_1) Z",
    ]
    assert "layer 2 (batch_normalization) dL/dgamma" in wheres
    assert wheres[-2:] == ["dL/dX (input)", INFERENCE_STEP]  # the inference pass runs after the training step


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (lambda b: -b, None, "a sign flip"),
        (lambda b: b.T, "square", "a transpose: scratch = Keras^T"),
        (lambda b: b * 32, None, "a constant factor N = 32"),
        (lambda b: np.where(np.arange(b.shape[1]) == 2, b + 1, b), None, "confined to column(s) [2]"),
        (lambda b: np.where(np.arange(b.shape[0])[:, None] == 5, b * 3 + 1, b), None, "confined to row(s) [5]"),
    ],
    ids=["sign", "transpose", "factor-N", "column", "row"],
)
def test_describe_recognises_patterns(a, b, expected):
    rng = np.random.default_rng(0)
    theirs = rng.standard_normal((6, 6) if b == "square" else (32, 4))
    assert expected in describe(a(theirs), theirs, n=32)


def test_col2im_assignment_passes_when_windows_do_not_overlap():
    """Why the bug survives in hand-written code: with stride = kernel size no cell is read twice, so assigning
    and adding agree, and the same planted col2im passes; with overlapping windows it is caught (the zoo entry)."""
    from compare.harness import build_pair
    from compare.zoo import _assigning_scatter, _images

    x, y = _images(8, (6, 6, 2), 4, seed=5)
    scratch, keras_model = build_pair("6x6x2-conv3k3:tanh-conv3k2:tanh:s=2-flatten-4", "float64")
    scratch.layers[1].windows.scatter = _assigning_scatter(scratch.layers[1].windows)
    assert compare_models(scratch, keras_model, x, y, gradcheck_samples=0).passed
    assert not ZOO["col2im_assigns"].run().passed


def test_a_recurrent_layers_simple_pattern_is_kept():
    """The gate and time-step location speaks only where `describe` finds no simple pattern: an LSTM whose
    gradients accumulate across calls is still "a constant factor 2"."""
    from compare.zoo import _compare, _sequences, _swap_class

    def weight_grads(self, input_grad=True):
        before = getattr(self, "dW", 0)
        dX = type(self).__mro__[1].weight_grads(self, input_grad)
        self.dW = self.dW + before
        return dX

    x, y = _sequences(4, (3, 5), 10, seed=1)
    report = _compare("3x5-lstm4-10", x, y, lambda m: _swap_class(m.layers[0], "weight_grads", weight_grads))
    assert "layer 1 (lstm) dL/dkernel" in diagnosis_text(report)
    assert "a constant factor 2" in diagnosis_text(report)


# ----- behaviours each with a test of its own ---------------------------------------------------------------------
@pytest.mark.parametrize("cut", [1, 3, 5, 7])
def test_the_bptt_time_step_located_is_where_the_carry_was_cut(cut):
    """An LSTM whose carry dh is dropped only from step `cut` to step `cut` - 1 (every other carry right): its dL/dX
    agrees at t = cut..7 and first differs at t = cut - 1, and the diagnosis says that step, for every cut (the zoo
    entry drops every carry, which only ever shows t = 6)."""
    from compare.diagnosis import _time_steps
    from compare.zoo import _compare, _plant_lstm, _sequences

    x, y = _sequences(6, (8, 8), 10, seed=12)
    planted = _plant_lstm(lambda self, t, dh, back: (np.zeros_like(back[0]), back[1]) if t == cut else back)
    report = _compare("8x8-lstm16-10", x, y, planted)
    assert not report.passed
    dx = next(step for step in report.trace if step.where == "dL/dX (input)")
    differs = _time_steps(dx.ours, dx.theirs)
    np.testing.assert_array_equal(differs, np.arange(8) < cut)  # steps 0..cut-1 differ, cut..7 agree
    agree = "t = 7" if cut == 7 else f"t = {cut}..7"
    assert f"its dL/dX agrees at {agree} and first differs at t = {cut - 1} (of 0..7), step {9 - cut}" in (
        diagnosis_text(report)
    )


def test_time_steps_reads_each_step_above_rounding_only():
    """_time_steps flags exactly the steps of (N, T, D) that differ beyond rounding: one ulp everywhere flags none,
    a difference at steps 2 and 4 flags those two."""
    from compare.diagnosis import _time_steps

    theirs = np.random.default_rng(2).standard_normal((3, 6, 4))
    assert not _time_steps(np.nextafter(theirs, np.inf), theirs).any()
    ours = theirs.copy()
    ours[1, 2, 0] += 1e-3
    ours[0, 4, 3] -= 1e-3
    np.testing.assert_array_equal(_time_steps(ours, theirs), [False, False, True, False, True, False])


@pytest.mark.parametrize(
    "arch",
    [
        "7x6x2-conv3k3x2:tanh:same:s=2-conv2k2x3:sigmoid-flatten-3",
        "7x7x1-conv2k2x3:relu:d=2x1-pool2-flatten-3",
        "6x6x1-conv2k3:tanh-flatten-3",
    ],
)
def test_keras_trace_of_a_conv2d_gives_its_z_and_kernel_gradient(arch):
    """The traced Conv2D Z equals the scratch Z (same weights, float64), and the traced dL/dZ correlated with the
    traced input, dK[p, q, c, f] = sum_{n,i,j} Xpad[n, i s_h + p d_h, j s_w + q d_w, c] dZ[n, i, j, f], reproduces
    the tape's kernel gradient: non-square kernels, strides, 'same' padding and a dilation read by the trace."""
    from compare.check import random_nonzero_params

    description = Architecture.parse(arch)
    scratch = Sequential.from_architecture(description, seed=0)
    rng = np.random.default_rng(1)
    scratch.set_weights(random_nonzero_params(scratch, rng))  # nonzero biases: a lost bias add must show
    model = keras_impl.build_model(description, "float64")
    model.set_weights(scratch.get_weights())
    x = rng.standard_normal((4, *description.input_shape))
    y = np.eye(3)[rng.integers(0, 3, size=4)]
    main = keras_impl.loss_and_gradients(model, x, y, "categorical_crossentropy")
    traced = keras_impl.trace.trace(model, x, y, "categorical_crossentropy")
    scratch.forward(x, training=True)
    first, checked = 0, 0
    for i, (layer, ours) in enumerate(zip(model.layers, scratch.layers)):
        if layer.__class__.__name__ == "Conv2D":
            checked += 1
            assert np.linalg.norm(traced[i]["Z"] - ours.Z) <= TRACE_TOL["float64"] * np.linalg.norm(ours.Z)
            h = traced[i - 1]["A"] if i > 0 else x
            patches = ours.windows.gather(h)  # (N, Ho, Wo, kh, kw, C)
            dK = np.einsum("nijpqc,nijf->pqcf", patches, traced[i]["dZ"])
            theirs = main.grads[first]
            assert dK.shape == theirs.shape
            assert np.linalg.norm(dK - theirs) <= TRACE_TOL["float64"] * np.linalg.norm(theirs)
        first += len(layer.weights)
    assert checked == sum(spec.kind == "conv2d" for spec in description.layers) > 0


@pytest.mark.parametrize("arch", ["6-5:tanh-3", "9-embed6x3-lstm4-3"])
def test_the_float32_gauge_moves_float_inputs_by_one_ulp_and_leaves_indices(monkeypatch, arch):
    """In a float32 comparison the second Keras sample b' runs on the batch with every nonzero float input one ulp
    off, and on an Embedding's index batch unchanged (Keras's int32 cast would turn 3 - ulp into 2): what
    compare_models hands the jittered pass, read where Keras receives it."""
    from compare import harness

    seen, inside = [], []
    jittered, keras_side = harness.jittered_side, harness.keras_side

    def spy_jittered(*args, **kwargs):
        inside.append(True)
        try:
            return jittered(*args, **kwargs)
        finally:
            inside.pop()

    def spy_keras_side(model, xs, *args, **kwargs):
        if inside:
            seen.append(np.array(xs))
        return keras_side(model, xs, *args, **kwargs)

    monkeypatch.setattr(harness, "jittered_side", spy_jittered)
    monkeypatch.setattr(harness, "keras_side", spy_keras_side)
    scratch, keras_model = harness.build_pair(arch, "float32")
    shape = scratch.architecture.input_shape
    x = harness.synthetic_inputs(scratch.architecture, np.random.default_rng(3).standard_normal((5, *shape)), 3)
    x = x.astype(np.float32)
    y = np.eye(3)[np.arange(5) % 3].astype(np.float32)
    report = compare_models(scratch, keras_model, x, y, gradcheck_samples=0)
    assert report.passed, report.verdict()
    (moved,) = seen
    assert moved.dtype == x.dtype
    if "embed" in arch:
        np.testing.assert_array_equal(moved, x)  # indices are not moved
    else:
        up, down = np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))
        assert np.all(np.where(x == 0, moved == 0, (moved == up) | (moved == down)))
        assert np.count_nonzero(moved != x) == np.count_nonzero(x) > 0  # every nonzero input moved


def test_a_wrong_consumer_at_a_fan_out_is_not_called_an_overwrite():
    """The sum pattern is stated only when scratch's value is not the sum of its own addends: with the engine's sums
    right and a wrong backward in one consumer (the branch's dX = dZ @ W, untransposed) or in a shared layer (a bias
    gradient averaged over the batch), the diagnosis locates the same node but does not blame the sum."""
    from compare.zoo_graph import RESIDUAL, SIAMESE, _compare_graph
    from compare.zoo_planting import _batch, _swap_class

    def untransposed(self, dZ, input_grad=True):
        self.dZ, self.dW, self.db = dZ, self.X.T @ dZ, dZ.sum(axis=0)
        return dZ @ self.W  # square (5, 5): the shapes do not complain

    def plant_branch(m):
        _swap_class(next(layer for layer in m.layers if layer.name == "branch"), "backward_from_z", untransposed)

    report = _compare_graph(RESIDUAL, *_batch(8, 6, 3, seed=20), plant_branch)
    assert "first differs at layer 1 (stem) dL/dA" in report.diagnosis.text
    assert "sent back alone" not in report.diagnosis.text and "overwritten" not in report.diagnosis.text

    def bias_mean(self, dZ, input_grad=True):
        self.dZ, self.dW, self.db = dZ, self.X.T @ dZ, dZ.mean(axis=0)
        return dZ @ self.W.T

    def plant_shared(m):
        _swap_class(m.layers[0], "backward_from_z", bias_mean)

    rng = np.random.default_rng(21)
    x = [rng.standard_normal((8, 5)), rng.standard_normal((8, 5))]
    report = _compare_graph(SIAMESE, x, np.eye(3)[rng.integers(0, 3, size=8)], plant_shared)
    assert "first differs at layer 1 (shared) dL/dbias" in report.diagnosis.text
    assert "a constant factor 1/N = 1/8" in report.diagnosis.text and "alone" not in report.diagnosis.text
