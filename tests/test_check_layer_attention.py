"""A user's own attention layer brought to check_layer, the check-layer command and the `parity` fixture, against
keras.layers.MultiHeadAttention called as Keras calls it (query, value, key=, attention_mask=, use_causal_mask=):
from_scratch's own MultiHeadAttention, an independent einsum implementation written here, the same with planted bugs,
and bad input."""

import importlib.util
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from compare.check import check_layer
from compare.check_attention import random_mask
from compare.cli import main
from from_scratch import BadInputError
from from_scratch.attention import MultiHeadAttention

DTYPES = ["float64", "float32"]
MHA = keras.layers.MultiHeadAttention
ALL_ROLES = ("query", "value", "key", "attention_mask")
ROOT = Path(__file__).resolve().parent.parent


# ----- a user's own attention layer (examples/custom_layer/attention.py), right and with planted bugs --------------
ATTENTION = ROOT / "examples" / "custom_layer" / "attention.py"
_spec = importlib.util.spec_from_file_location("attention_example", ATTENTION)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)
EinsumAttention = example.EinsumAttention


class NoScale(EinsumAttention):
    """The 1/sqrt(key_dim) scaling missing (forward and backward agree with each other)."""

    def scale(self):
        return 1.0


class MaskAfterSoftmax(EinsumAttention):
    """The mask applied after the softmax: softmax over every position, the masked probabilities then zeroed (rows
    no longer sum to 1); its backward is that function's gradient."""

    def softmax(self, s, keep):
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        self.p_full = e / e.sum(axis=-1, keepdims=True)
        return self.p_full * keep

    def softmax_backward(self, dp):
        dp = dp * self.keep
        return self.p_full * (dp - (self.p_full * dp).sum(axis=-1, keepdims=True))


class RowsumDropped(EinsumAttention):
    """The softmax's vector-Jacobian product without its row sum: dS = P dP (the Jacobian's diagonal only)."""

    def softmax_backward(self, dp):
        return self.p * dp


BUGS = {"no_scale": NoScale, "mask_after_softmax": MaskAfterSoftmax, "rowsum_dropped": RowsumDropped}


def names(report, failed=False):
    return [row.name for row in (report.failures if failed else report.rows)]


# ----- (a) from_scratch's MultiHeadAttention against Keras's ------------------------------------------------------
#: (id, MultiHeadAttention options, input shapes, roles or None for the default, call options)
CASES = [
    ("self", {}, [(5, 8), (5, 8)], None, None),
    ("cross", {}, [(6, 8), (4, 5)], None, None),
    ("with_key", {"value_dim": 2}, [(6, 8), (4, 5), (4, 7)], None, None),
    ("mask", {}, [(6, 8), (4, 5), (6, 4)], ("query", "value", "attention_mask"), None),
    ("causal", {}, [(6, 8), (6, 8)], None, {"use_causal_mask": True}),
    (
        "key_mask_causal_cross",
        {"output_shape": 3},
        [(6, 8), (5, 8), (5, 6), (6, 5)],
        ALL_ROLES,
        {"use_causal_mask": True},
    ),
    (
        "mask_first_explicit_path",
        {},
        [(1, 4), (6, 8), (4, 5)],
        ("attention_mask", "query", "value"),
        {"return_attention_scores": True},
    ),
    ("mask_per_head", {"use_bias": False}, [(6, 8), (4, 5), (2, 6, 4)], ("query", "value", "attention_mask"), None),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_from_scratch_attention_passes_against_keras(case, dtype):
    _, options, shapes, roles, call_options = case
    report = check_layer(
        MultiHeadAttention(2, 3, **options),
        keras.layers.MultiHeadAttention(2, 3, **options),
        shapes,
        batch=4,
        dtype=dtype,
        roles=roles,
        call_options=call_options,
    )
    assert report.passed, report.verdict()
    used = roles or ("query", "value", "key")[: len(shapes)]
    assert [n for n in names(report) if n.startswith("grad input")] == [
        f"grad input {r}" for r in used if r != "attention_mask"
    ]
    assert "grad multi_head_attention/query/kernel" in names(report)
    assert report.rows[-1].name.startswith("Taylor") and report.rows[-1].error > 1.8
    assert report.config["roles"] == list(used)
    if dtype == "float64":  # from_scratch rounds the scale to float32 as Keras does
        assert report.config["scale"].startswith("1/sqrt(3) rounded to float32, as Keras")


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_dropout_is_shared_with_keras(dtype):
    """A MultiHeadAttention with dropout is checked against Keras's with the same drop mask on its probabilities
    (its twin rebuilt as keras_impl's FixedMaskMultiHeadAttention; in float32 the float64 truth keeps the mask)."""
    report = check_layer(
        MultiHeadAttention(2, 3, dropout=0.3),
        keras.layers.MultiHeadAttention(2, 3, dropout=0.3),
        [(6, 8), (5, 8), (6, 5)],
        roles=("query", "value", "attention_mask"),
        batch=4,
        dtype=dtype,
    )
    assert report.passed, report.verdict()
    assert report.config["keras_layer"] == "FixedMaskMultiHeadAttention"


def test_self_attention_on_one_batch_as_query_and_value():
    x = np.random.default_rng(5).standard_normal((3, 5, 8))
    report = check_layer(MultiHeadAttention(2, 4), keras.layers.MultiHeadAttention(2, 4), inputs=[x, x])
    assert report.passed and report.config["batch"] == 3 and "scale" not in report.config  # 1/2 is exact in float32


def test_a_given_boolean_mask_is_taken_and_left_as_it_was():
    rng = np.random.default_rng(2)
    q, v = rng.standard_normal((3, 6, 8)), rng.standard_normal((3, 4, 5))
    mask = rng.random((3, 6, 4)) < 0.6
    mask[..., 0] = True
    before = mask.copy()
    report = check_layer(
        MultiHeadAttention(2, 3),
        keras.layers.MultiHeadAttention(2, 3),
        inputs=[q, v, mask],
        roles=("query", "value", "attention_mask"),
    )
    assert report.passed, report.verdict()
    assert np.array_equal(mask, before) and "grad input attention_mask" not in names(report)


def test_a_nonzero_gradient_for_the_mask_fails_though_the_mask_has_no_row():
    """The loss is piecewise constant in the mask: its gradient is 0 (Keras has none). The mask has no row, but the
    per-layer step dL/dX (input attention_mask) still holds a layer to zeros there."""

    class MaskGradient(EinsumAttention):
        def backward(self, dy):
            grads = super().backward(dy)
            return [np.ones_like(g) if r == "attention_mask" else g for r, g in zip(self.roles, grads)]

    report = check_layer(
        MaskGradient(2, 3), MHA(2, 3), [(6, 8), (5, 8), (6, 5)], roles=("query", "value", "attention_mask"), batch=4
    )
    assert not report.passed and not report.failures and "grad input attention_mask" not in names(report)
    assert "a per-layer quantity differs: dL/dX (input attention_mask)" in report.verdict()


def test_random_masks_keep_a_position_in_every_row_of_the_scores():
    rng = np.random.default_rng(0)
    for shape, causal in [((6, 5), True), ((1, 5), True), ((6, 1), False), ((2, 6, 5), True), ((6, 5), False)]:
        m = random_mask(rng, 50, shape, 6, 5, causal, "float64")
        assert set(np.unique(m)) <= {0.0, 1.0} and m.shape == (50, *shape)
        keep = np.broadcast_to(m if len(shape) == 3 else m[:, None], (50, 2, 6, 5)) != 0
        if causal:
            keep = keep & (np.arange(6)[:, None] >= np.arange(5)[None, :])
        assert keep.any(axis=-1).all()
        if shape == (6, 5):
            assert (m == 0).any()  # a mask that masks something


def check_all_roles(layer, dtype, causal):
    """check_layer of `layer` against keras.layers.MultiHeadAttention(2, 3), called with query (6, 8), value and key
    (5, 8) and a (6, 5) mask, causal or not."""
    return check_layer(
        layer,
        keras.layers.MultiHeadAttention(2, 3),
        [(6, 8), (5, 8), (5, 8), (6, 5)],
        roles=ALL_ROLES,
        call_options={"use_causal_mask": causal},
        batch=4,
        dtype=dtype,
    )


# ----- (b) a user's own layer --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_a_users_einsum_attention_passes(dtype, causal):
    report = check_all_roles(EinsumAttention(2, 3), dtype, causal)
    assert report.passed, report.verdict()
    assert "grad einsum_attention/attention_output/kernel" in names(report)
    assert [n for n in names(report) if n.startswith("grad input")] == [f"grad input {r}" for r in ALL_ROLES[:3]]
    assert report.rows[-1].error > 1.8
    if dtype == "float64":  # the layer scales by 1/sqrt(3) in float64: Keras keeps that scale for the check
        assert report.config["scale"].startswith("1/sqrt(3) in float64, which the layer's output is nearer")


def test_keras_float32_rounded_scale_is_what_a_float64_layer_meets_without_the_scale_choice(monkeypatch):
    """The number behind the choice: held to Keras's float32-rounded scale, the right einsum layer differs at 1e-9
    (key_dim 3), above F64_TOL; with the scale it computes, it passes at rounding (the test above)."""
    import compare.check_attention as attn

    monkeypatch.setattr(attn, "scale_convention", lambda *args: None)
    report = check_layer(EinsumAttention(2, 3), keras.layers.MultiHeadAttention(2, 3), [(6, 8), (5, 8)], batch=4)
    output = next(row for row in report.rows if row.name == "output")
    assert 1e-10 < output.error < 1e-7 and not report.passed


def test_rows_of_a_layer_without_weight_names_are_named_after_keras_sublayers():
    class Unnamed(EinsumAttention):
        weight_names = None

    report = check_layer(Unnamed(2, 3), MHA(2, 3), [(6, 8), (5, 8)], batch=4)
    assert report.passed
    grads = [n for n in names(report) if n.startswith("grad unnamed/")]
    assert grads == [
        f"grad unnamed/{b}/{w}" for b in ("query", "key", "value", "attention_output") for w in ("kernel", "bias")
    ]


def test_a_scale_near_but_not_one_over_sqrt_key_dim_fails_in_float64():
    """1/sqrt(key_dim) off by 1e-7 relative (three times the float32 rounding of the scale): neither scale explains
    it, and every row the scores reach fails."""
    layer = EinsumAttention(2, 3, scale=(1 + 1e-7) / math.sqrt(3))
    report = check_layer(layer, keras.layers.MultiHeadAttention(2, 3), [(6, 8), (5, 8)], batch=4)
    assert not report.passed and {"output", "grad input query"} <= set(names(report, failed=True))


# ----- (c) planted bugs, caught on the rows they break -------------------------------------------------------------
def check_bug(bug, dtype, causal=True):
    return check_all_roles(BUGS[bug](2, 3), dtype, causal)


def grad(bug, weight):
    """The row of a weight's gradient, named after the layer (NoScale -> "grad no_scale/query/kernel")."""
    return f"grad {BUGS[bug](1, 1).kind}/{weight}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_missing_scale_fails_in_the_forward_pass(dtype):
    report = check_bug("no_scale", dtype)
    failed = set(names(report, failed=True))
    assert {"loss", "output", "grad input query", "grad input key", grad("no_scale", "query/kernel")} <= failed
    # what the scale does not reach: the value bias (rows of P sum to 1) and the output bias pass, and the
    # backward is the gradient of the (wrong) forward, so the Taylor slope is 2
    unreached = {grad("no_scale", "value/bias"), grad("no_scale", "attention_output/bias")}
    assert not unreached & failed and not any(n.startswith("Taylor") for n in failed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_mask_applied_after_the_softmax_fails_at_the_output(dtype):
    report = check_bug("mask_after_softmax", dtype, causal=False)
    failed = set(names(report, failed=True))
    assert {"output", grad("mask_after_softmax", "value/bias"), "grad input value"} <= failed
    assert not any(n.startswith("Taylor") for n in failed)  # its backward is its forward's gradient
    assert grad("mask_after_softmax", "attention_output/bias") not in failed


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_dropped_softmax_row_sum_fails_in_the_backward_pass_only(dtype):
    report = check_bug("rowsum_dropped", dtype)
    failed = set(names(report, failed=True))
    assert "output" not in failed and "loss" not in failed
    wrong = {"grad input query", "grad input key"} | {grad("rowsum_dropped", f"{b}/kernel") for b in ("query", "key")}
    assert wrong <= failed and any(n.startswith("Taylor") for n in failed)
    assert not {"grad input value", grad("rowsum_dropped", "value/kernel")} & failed  # dV does not pass through dS


# ----- (d) bad input: one line, naming the problem -----------------------------------------------------------------
class NoOptions(EinsumAttention):
    def build(self, input_shapes, dtype, rng):
        return super().build(input_shapes, dtype, rng)


class ShortOutput(EinsumAttention):
    def forward(self, xs, training=False, **options):
        return super().forward(xs, training, **options)[:, :, :-1]


class BuildSaysValueWidth(EinsumAttention):
    def build(self, input_shapes, dtype, rng, **options):
        t, _ = super().build(input_shapes, dtype, rng, **options)
        return (t, self.key_dim)


class NoBiases(EinsumAttention):
    weight_names = None

    @property
    def params(self):
        return [self.wq, self.wk, self.wv, self.wo]


@pytest.mark.parametrize(
    "layer,kwargs,message",
    [
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8), (6, 4)], "roles": ("query", "value", "attention_mask")},
            "layer 'einsum_attention': attention_mask of shape (6, 4) (without the batch axis) does not broadcast to "
            "the scores' (query steps, value steps) = (6, 5)",
        ),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8), (3, 6, 5)], "roles": ("query", "value", "attention_mask")},
            "attention_mask of shape (3, 6, 5)",
        ),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8), (5, 8), (6, 5)], "roles": ("query", "value", "key")},
            "roles ('query', 'value', 'key') name 3 input(s), but 4 were given",
        ),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8), (5, 8), (6, 5)]},
            "4 inputs against MultiHeadAttention: name each with roles=(...)",
        ),
        (EinsumAttention(2, 3), {"input_shape": [(6, 8), (5, 8)], "roles": ("query", "keys")}, "unknown role 'keys'"),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8)], "roles": ("query", "query")},
            "role 'query' given twice",
        ),
        (EinsumAttention(2, 3), {"input_shape": [(6, 8), (5, 8)], "roles": ("key", "value")}, "lack a query"),
        (EinsumAttention(2, 3), {"input_shape": [(6, 8), (5, 8)], "roles": "query"}, "roles must be a tuple"),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8), (4, 8)], "roles": ("query", "value", "key")},
            "value and key must have the same length, got value (5, 8) and key (4, 8)",
        ),
        (EinsumAttention(2, 3), {"input_shape": [(6, 8), (5,)]}, "the value must be a sequence (steps, features)"),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8)], "call_options": {"causal": True}},
            "call option 'causal' is not one check_layer hands the layers",
        ),
        (
            EinsumAttention(2, 3),
            {"input_shape": [(6, 8), (5, 8)], "call_options": {"use_causal_mask": 1}},
            "call option use_causal_mask must be True or False, got 1",
        ),
        (
            NoOptions(2, 3),
            {"input_shape": [(6, 8), (5, 8)]},
            "layer 'no_options': build() does not take the call's options roles=...",
        ),
        (
            ShortOutput(2, 3),
            {"input_shape": [(6, 8), (5, 8)]},
            "layer 'short_output': forward() returned shape (16, 6, 7), expected shape (16, 6, 8)",
        ),
        (
            BuildSaysValueWidth(2, 3),
            {"input_shape": [(6, 8), (5, 8)]},
            "layer 'build_says_value_width' gives outputs of shape (6, 3) (its build() said so) on inputs of shapes "
            "6x8 and 5x8, but Keras layer",
        ),
        (NoBiases(2, 3), {"input_shape": [(6, 8), (5, 8)]}, "layer 'no_biases' has 4 parameter(s) of shapes"),
        (
            EinsumAttention(2, 3),
            {
                "inputs": [np.zeros((2, 6, 8)), np.zeros((2, 5, 8)), np.zeros((2, 6, 5), complex)],
                "roles": ("query", "value", "attention_mask"),
            },
            "inputs[2] (the attention_mask): expected booleans or numbers",
        ),
        (
            EinsumAttention(2, 3),
            {
                "inputs": [np.zeros((2, 6, 8)), np.zeros((2, 5, 8)), np.full((2, 6, 5), np.nan)],
                "roles": ("query", "value", "attention_mask"),
            },
            "inputs[2] (the attention_mask): nan at index (0, 0, 0)",
        ),
        (
            EinsumAttention(2, 3),
            {
                "inputs": [np.zeros((2, 6, 8)), np.zeros((2, 5, 8)), np.ones((2, 5))],
                "roles": ("query", "value", "attention_mask"),
            },
            "expected (N, T, S) or (N, heads, T, S) with the batch axis first, got shape (2, 5)",
        ),
    ],
    ids=[
        "mask_shape",
        "mask_heads",
        "roles_count",
        "four_without_roles",
        "unknown_role",
        "repeated_role",
        "no_query",
        "roles_a_string",
        "key_length",
        "value_not_a_sequence",
        "unknown_option",
        "option_not_bool",
        "build_without_options",
        "forward_wrong_shape",
        "build_wrong_shape",
        "weights_differ",
        "mask_complex",
        "mask_nan",
        "mask_no_steps",
    ],
)
def test_bad_input_for_an_attention_check_is_one_line(layer, kwargs, message):
    with pytest.raises(BadInputError) as info:
        check_layer(layer, MHA(2, 3), **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_roles_for_a_one_input_layer_are_refused():
    from from_scratch import Dense

    with pytest.raises(BadInputError, match="roles and call_options are for a layer called on several inputs"):
        check_layer(Dense(3), keras.layers.Dense(3), (7,), roles=("query",))


# ----- (e) the command line and the pytest plugin ------------------------------------------------------------------
HERE = str(ATTENTION)


def run(capsys, *argv):
    code = main(["check-layer", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FOUR = ["--input-shape", "6,8", "5,8", "5,8", "6,5", "--roles", *ALL_ROLES, "--batch", "4"]


def test_cli_passes_a_users_attention_layer_with_roles_and_a_causal_mask(capsys):
    code, out, _ = run(capsys, f"{HERE}:einsum_attention", f"{HERE}:keras_attention", *FOUR, "--use-causal-mask")
    assert code == 0, out
    assert "PASS: all" in out and "grad input key" in out and "grad input attention_mask" not in out
    assert "use_causal_mask=True" in out and "scale=1/sqrt(3) in float64" in out


def test_cli_fails_a_missing_scale_with_exit_1(capsys):
    code, out, _ = run(capsys, f"{HERE}:unscaled_attention", f"{HERE}:keras_attention", *FOUR, "--dtype", "float32")
    assert code == 1 and "FAIL" in out


def test_cli_takes_a_boolean_mask_file(capsys, tmp_path):
    rng = np.random.default_rng(1)
    mask = rng.random((3, 6, 5)) < 0.5
    mask[..., 0] = True
    for name, a in (("q", rng.standard_normal((3, 6, 8))), ("v", rng.standard_normal((3, 5, 8))), ("m", mask)):
        np.save(tmp_path / f"{name}.npy", a)
    files = [str(tmp_path / f"{n}.npy") for n in "qvm"]
    argv = ["--inputs", *files, "--roles", "query", "value", "attention_mask", "--return-attention-scores"]
    code, out, _ = run(capsys, f"{HERE}:einsum_attention", f"{HERE}:keras_attention", *argv)
    assert code == 0 and "return_attention_scores=True" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--input-shape", "6,8", "5,8", "5,8", "6,5", "--roles", "query", "value", "key"], "name 3 input(s), but 4"),
        (["--input-shape", "6,8", "5,8", "6,4", "--roles", "query", "value", "attention_mask"], "attention_mask of"),
        (["--input-shape", "6,8", "5,8", "--roles", "query", "querry"], "unknown role 'querry'"),
        (["--input-shape", "6,8", "5,8", "5,8", "6,5"], "4 inputs against MultiHeadAttention"),
    ],
)
def test_cli_bad_attention_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, f"{HERE}:einsum_attention", f"{HERE}:keras_attention", *argv)
    assert code == 2, out
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_parity_fixture_takes_roles_and_call_options(parity):
    report = parity(
        EinsumAttention(2, 3),
        MHA(2, 3),
        input_shape=[(6, 8), (5, 8), (6, 5)],
        roles=("query", "value", "attention_mask"),
        call_options={"use_causal_mask": True},
        batch=4,
    )
    assert report.passed and report.config["roles"] == ["query", "value", "attention_mask"]
    with pytest.raises(pytest.fail.Exception, match="differs from its Keras twin"):
        parity(RowsumDropped(2, 3), MHA(2, 3), input_shape=[(6, 8), (5, 8)], batch=4)


# ----- the README's attention section stays what the command prints ------------------------------------------------
def test_the_readme_attention_excerpt_is_what_check_layer_prints(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### An attention layer of your own") :]
    section = section[: section.index("\n## ")]
    command = next(line for line in section.splitlines() if line.startswith("backprop-parity check-layer"))
    code = main(command.replace(" examples/", f" {ROOT}/examples/").split()[1:])
    out = capsys.readouterr().out
    assert code == 0
    excerpt = section[section.index("\nquantity ") :].split("```")[0].strip().splitlines()
    printed = {line.split("  ")[0]: line.split()[-1] for line in out.splitlines() if "  " in line}
    for line in excerpt[1:-1]:  # each row's name and result (the digits are rounding and the processor's)
        assert printed[line.split("  ")[0]] == line.split()[-1], line
    assert excerpt[-1] in out
    apart = float(out.split("Keras rounds it to float32: ")[1].split()[0])
    assert 1e-9 < apart < 1e-8 and f"{apart:.1e} apart at the output" in section
