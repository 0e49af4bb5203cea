"""Attention bugs are caught and located by head and block, and each pattern the diagnosis reads in an attention call
is recognised by its relation (not by a bug's name), on real comparisons with keras.layers.MultiHeadAttention and on
traces built from the formulas."""

from __future__ import annotations

import numpy as np
import pytest

from compare import zoo_attention
from compare.attention_patterns import MERGES, heads
from compare.diagnosis import diagnose
from compare.trace import Step
from compare.zoo import ZOO, diagnosis_text

#: Each attention entry's located pattern, as the diagnosis words it.
PATTERNS = {
    "attention_unscaled": "scratch's S is Keras's times sqrt(key_dim) = 2.00 (key_dim 4): the 1/sqrt(key_dim) scaling "
    "missing",
    "attention_softmax_query": "scratch's P sums to 1 over the query axis (axis 2 of (B, N, T, S)), Keras's over the "
    "key axis",
    "attention_mask_after": "scratch's P is nonzero at 134 of the 134 positions where Keras's is exactly 0 (the masked "
    "ones)",
    "attention_causal_diagonal": "scratch's P keeps the key steps j <= i - 1 of query step i, Keras's j <= i",
    "attention_heads_merged": "merged in (T, Hv, N) order, the head and feature axes swapped",
    "attention_rowsum_dropped": "scratch's dS is P * dP (P and dP agree)",
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_attention_bug_is_caught_and_located_by_head_and_block(name, dtype):
    report = ZOO[name].run(dtype=dtype)
    text = diagnosis_text(report)
    assert not report.passed
    assert ZOO[name].expect in text, text
    assert PATTERNS[name] in text, text
    first = report.diagnosis.to_dict()
    assert first["block"] in ZOO[name].expect and first["head"] in ("every head", "")
    # the reading places it alike, and counts the dL/dquery, dL/dvalue rows as gradients, not as unknown rows
    assert ZOO[name].expect in report.diagnosis.reading and "mha dL/d" not in report.diagnosis.reading


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(zoo_attention.GRAPHS))
def test_each_attention_zoo_graph_passes_without_its_bug(name, dtype):
    """The same graph, weights and batch unplanted: what the entries catch is the bug, not the graph."""
    report = zoo_attention.unplanted(name, dtype)
    assert report.passed, report.diagnosis.text
    assert report.diagnosis.first is None


#: from_scratch's own masked softmax, kept before any plant replaces it.
BASE_SOFTMAX = zoo_attention.attention.attention_softmax


def _one_head_unscaled(scores, keep, fused):
    scores = scores.copy()
    scores[:, 1] *= np.sqrt(scores.dtype.type(zoo_attention.KEY_DIM))  # head 1's softmax reads unscaled scores
    return BASE_SOFTMAX(scores, keep, fused)


class OneHeadUnscaled(zoo_attention.PlantedAttention):
    """The scale undone in head 1 only, inside the softmax (S itself, as recorded, agrees)."""

    forward_pieces = {"attention_softmax": _one_head_unscaled}


def test_a_bug_in_one_head_is_located_in_that_head():
    """Three heads, the probabilities of head 1 alone computed from unscaled scores: the diagnosis names head 1."""
    arch = zoo_attention.attention_graph(num_heads=3)
    text = diagnosis_text(zoo_attention._run(arch, OneHeadUnscaled, 36, "float64"))
    assert "first differs at layer 1 (mha) head 1 (of 0..2), probabilities P" in text, text


# ----- the signatures, on traces made from the formulas ---------------------------------------------------------------
B, N, T, H = 4, 2, 5, 3
RNG = np.random.default_rng(7)


def softmax(s, axis=-1):
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def merge(c):
    return c.transpose(0, 2, 1, 3).reshape(len(c), c.shape[2], -1)


def quantities(keep=None):
    """One attention call's per-head quantities by Keras's formulas (keep: a mask broadcast to (B, N, T, T))."""
    q, k, v = (RNG.standard_normal((B, N, T, H)) for _ in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(H)
    p = softmax(s if keep is None else np.where(keep, s, -1e9))
    p = p if keep is None else np.where(keep, p, 0.0)
    dp = RNG.standard_normal(p.shape)
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))
    return {
        "Q": q,
        "K": k,
        "V": v,
        "S": s,
        "P": p,
        "C": p @ v,
        "dL/dP": dp,
        "dL/dS": ds,
        "dL/dquery": np.zeros((B, T, 8)),
    }


def trace(values, failing, ours):
    """A trace of one attention node ("mha", node 1) in which `failing` is the first step to differ, scratch's value
    there `ours`; every other step agrees."""
    order = [("forward", k) for k in ("Q", "K", "V", "S", "P", "C", "A")]
    order += [("backward", k) for k in ("dL/dP", "dL/dS", "dL/dquery")]
    steps = []
    for phase, key in order:
        if key not in values:
            continue
        theirs = values[key]
        mine = ours if key == failing else theirs
        steps.append(Step(phase, 1, "mha", key, mine, theirs, 0.0 if key != failing else 1.0, key != failing))
    return steps


def read(values, failing, ours):
    return diagnose(trace(values, failing, ours)).text


def test_the_scale_is_read_as_sqrt_key_dim_in_either_direction_and_as_the_querys_width():
    v = quantities()
    assert "times sqrt(key_dim) = 1.73 (key_dim 3): the 1/sqrt(key_dim) scaling missing" in read(
        v, "S", v["S"] * np.sqrt(H)
    )
    assert "divided by sqrt(key_dim) = 1.73 (key_dim 3): the scores scaled twice" in read(v, "S", v["S"] / np.sqrt(H))
    assert "scaled by 1/sqrt(D) of the query's width D = 8" in read(v, "S", v["S"] * np.sqrt(H) / np.sqrt(8))
    # a factor no scale of the scores explains: describe's words stand
    assert "a constant factor: scratch = 3 x Keras" in read(v, "S", v["S"] * 3)


@pytest.mark.parametrize("axis,name", [(2, "query"), (1, "heads")])
def test_a_softmax_over_another_axis_is_named_by_that_axis(axis, name):
    v = quantities()
    text = read(v, "P", softmax(v["S"], axis=axis))
    assert f"scratch's P sums to 1 over the {name} axis (axis {axis} of (B, N, T, S)), Keras's over the key" in text


def band(k):
    """keep (T, T): key step j kept by query step i where j <= i + k."""
    return np.arange(T)[:, None] + k >= np.arange(T)[None, :]


@pytest.mark.parametrize(
    "k,reading",
    [
        (
            -1,
            "keeps the key steps j <= i - 1 of query step i, Keras's j <= i (zero beyond, in every sample and head): "
            "a causal mask off by 1, the diagonal masked",
        ),
        (
            1,
            "keeps the key steps j <= i + 1 of query step i, Keras's j <= i (zero beyond, in every sample and head): "
            "a causal mask off by 1, one step beyond the diagonal kept",
        ),
    ],
)
def test_a_causal_band_off_by_one_is_read_either_way(k, reading):
    v = quantities(keep=band(0))
    ours = np.where(band(k), softmax(np.where(band(k), v["S"], -1e9)), 0.0)
    text = read(v, "P", ours)
    assert reading in text
    assert ("Query step 0 then keeps no key step: scratch's row there is all zeros" in text) == (k < 0)


def test_a_mask_after_the_softmax_is_read_added_or_multiplied():
    keep = RNG.uniform(size=(B, 1, T, T)) < 0.7
    keep[..., 0] = True
    v = quantities(keep=keep)
    added = softmax(v["S"]) + np.where(keep, 0.0, -1e9)
    text = read(v, "P", added)
    masked = int(np.broadcast_to(~keep, v["P"].shape).sum())
    assert f"scratch's P is nonzero at {masked} of the {masked} positions where Keras's is exactly 0" in text
    assert "the mask's large negative adder" in text and "the softmax of S over every key step" in text
    multiplied = softmax(v["S"]) * keep
    text = read(v, "P", multiplied)
    assert f"scratch's P is 0 where Keras's is (the {masked} masked positions), but where Keras's is not" in text
    assert "not renormalised over the kept ones" in text


@pytest.mark.parametrize("order", sorted(MERGES))
def test_heads_merged_in_another_order_are_read_from_the_output(order):
    from compare.attention_patterns import _merged

    v = quantities()
    w, bias = RNG.standard_normal((N * H, 6)), RNG.standard_normal(6)
    v["A"] = merge(v["C"]) @ w + bias
    text = read(v, "A", _merged(v["C"], order) @ w + bias)
    assert "first differs at layer 1 (mha) output A" in text
    assert (
        f"every head: scratch's output is Keras's output projection of the heads' contexts C (which agree) merged "
        f"{MERGES[order]}" in text
    )


def test_a_per_head_quantity_split_in_another_layout_is_read():
    v = quantities()
    merged = merge(v["Q"])
    swapped = merged.reshape(B, T, H, N).transpose(0, 3, 1, 2)
    assert "holds Keras's values re-laid, its (T, N*H) columns split into heads in (H, N) order" in read(
        v, "Q", swapped
    )


@pytest.mark.parametrize(
    "wrong,reading",
    [
        (lambda p, dp: p * dp, "scratch's dS is P * dP (P and dP agree)"),
        (lambda p, dp: p * (1 - p) * dp, "only the Jacobian's diagonal applied"),
        (lambda p, dp: p * (dp - (p * dp).sum(axis=-2, keepdims=True)), "the row sum taken over the query axis"),
    ],
)
def test_a_wrong_softmax_vjp_is_read_from_p_and_dp(wrong, reading):
    v = quantities()
    text = read(v, "dL/dS", wrong(v["P"], v["dL/dP"]))
    assert "backward first differs at layer 1 (mha) every head, scores dL/dS" in text
    assert reading in text


def test_no_attention_pattern_is_claimed_for_an_arbitrary_difference():
    """Noise on P, S and dS fits none of the relations: the generic description stands (the place is still named)."""
    v = quantities()
    for key in ("S", "P", "dL/dS"):
        text = read(v, key, v[key] + 0.1 * RNG.standard_normal(v[key].shape))
        assert "no simple pattern" in text and "every head" in text, text


def test_heads_names_the_heads_that_differ_or_every_head():
    theirs = RNG.standard_normal((4, 3, 5, 2))
    one = theirs.copy()
    one[:, 1] += 1.0
    assert heads(one, theirs, 1) == "head 1 (of 0..2)"
    two = theirs.copy()
    two[:, [0, 2]] *= 1.5
    assert heads(two, theirs, 1) == "heads 0 and 2 (of 0..2)"
    assert heads(theirs * 2, theirs, 1) == "every head"
    most = theirs * 1.01
    most[:, 2] = theirs[:, 2] * 2
    assert heads(most, theirs, 1) == "every head, most head 2 (of 0..2)"
    kernel = RNG.standard_normal((8, 3, 2))  # a (D, N, H) kernel gradient: heads on axis 1
    bumped = kernel.copy()
    bumped[:, 0] = 0
    assert heads(bumped, kernel, 1) == "head 0 (of 0..2)"


def test_the_json_diagnosis_gives_the_head_and_block():
    v = quantities()
    steps = trace(v, "S", v["S"] * np.sqrt(H))
    first = diagnose(steps).to_dict()
    assert (first["head"], first["block"], first["quantity"]) == ("every head", "scores", "S")
    other = diagnose([Step("forward", 1, "dense", "Z", np.ones(3), np.zeros(3), 1.0, False)]).to_dict()
    assert "head" not in other and "block" not in other
