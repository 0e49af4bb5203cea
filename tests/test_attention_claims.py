"""Statements of docs/derivations.md section 24 (attention in matrix form) checked against TensorFlow and Keras 3:

- the row softmax's vector-Jacobian product dS = P * (dP - rowsum(P * dP)) is the tape's, and the same check fails
  on the product without the row sum;
- the masked softmax of each of Keras's two paths: the fused path (ops.dot_product_attention) fills with
  -0.7 * 3.38953e38 and gives a fully masked row a uniform distribution, the explicit path (the Softmax layer inside
  keras.layers.MultiHeadAttention) fills with -1e9 and gives it zeros; a rank-3 mask gains a head axis and
  broadcasts, a rank-4 mask is per head; the layer keeps every nonzero mask entry;
- the causal mask keep[i, j] = i >= j is Keras's on both paths, for T = S and T != S, and combines with a padding
  mask by AND;
- the explicit path scales the queries before the product, the fused path the product;
- one head and several heads, every forward and backward step as the section writes it (its shapes included), are
  keras.layers.MultiHeadAttention's forward pass and its tape's gradients, and attention-probability dropout uses
  one mask forward and backward;
- GlobalAveragePooling1D's and the position table's gradients.

Every formula is evaluated here as written in the section (the `stated_*` functions), not taken from from_scratch,
so the section is checked on its own; the last tests hold from_scratch/attention.py's helpers to the same claims.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from compare.tolerances import F64_TOL, norm_rel_error
from from_scratch.attention import (
    FUSED_FILL as SCRATCH_FUSED_FILL,
)
from from_scratch.attention import (
    SOFTMAX_LAYER_FILL,
    MultiHeadAttention,
    attention_scale,
    attention_softmax,
    attention_softmax_backward,
    causal_mask,
    merge_heads,
    split_heads,
)
from from_scratch.sequence import GlobalAveragePooling1D, PositionEmbedding

#: The fused path's fill for a masked logit: keras.src.backend.tensorflow.nn._get_large_negative (not float16).
FUSED_FILL = -0.7 * 3.38953e38
#: The Softmax layer's fill: keras.src.layers.activations.softmax._large_negative_number (not float16).
SOFTMAX_FILL = -1e9
#: float32 softmax rows compared with TensorFlow's: exp and the division each round to half an ulp (6e-8 relative)
#: and NumPy's and TensorFlow's float32 exp may differ by an ulp; 1e-6 norm-relative is about 16 ulps, where a wrong
#: fill, path or row sum is off by order one.
F32_SOFTMAX_TOL = 1e-6


# ----- the section's formulas, evaluated as written ------------------------------------------------------------------
def stated_softmax(s: np.ndarray) -> np.ndarray:
    """P = softmax over the last axis (each row of S), shifted by the row's maximum."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def stated_softmax_vjp(p: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """dS = P * (dP - rowsum(P * dP)): section 5's product, on every row; the Jacobian is never built."""
    return p * (dp - (p * dp).sum(axis=-1, keepdims=True))


def wrong_softmax_vjp(p: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """The zoo's bug: the Jacobian's row sum (its -p p^T part) dropped, dS = P * dP."""
    return p * dp


def stated_masked_softmax(s: np.ndarray, keep: np.ndarray, fused: bool) -> np.ndarray:
    """Fused: softmax(where(keep, S, FUSED_FILL)); explicit: where(keep, softmax(where(keep, S, -1e9)), 0)."""
    fill = np.asarray(FUSED_FILL if fused else SOFTMAX_FILL, s.dtype)
    p = stated_softmax(np.where(keep, s, fill))
    return p if fused else np.where(keep, p, np.zeros((), s.dtype))


def stated_masked_softmax_vjp(p: np.ndarray, dp: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """dS = keep * P * (dP - rowsum(P * dP)), P the path's output: one formula for both paths."""
    return np.where(keep, stated_softmax_vjp(p, dp), 0.0)


def stated_scale(key_dim: int, dtype) -> float:
    """1/sqrt(key_dim) as Keras 3.15 applies it on TensorFlow: a Python float cast to the dtype through a float32
    tensor, so fl32(1/sqrt(key_dim)) in float64 too (exact for key_dim 1, 4, 16, ...)."""
    return float(np.asarray(np.float32(1.0 / np.sqrt(key_dim)), dtype))


def stated_causal(t: int, s: int) -> np.ndarray:
    """keep[i, j] = i >= j, (T, S)."""
    return np.arange(t)[:, None] >= np.arange(s)[None, :]


def stated_keep(mask: np.ndarray | None, causal: bool, b: int, n: int, t: int, s: int) -> np.ndarray:
    """The mask the softmax sees, (B, N, T, S): nonzero entries keep; a rank-3 mask (B, T', S') gains the head axis
    (B, 1, T', S'), a rank-4 one is per head; AND the causal mask."""
    keep = np.ones((b, n, t, s), bool)
    if mask is not None:
        m = np.asarray(mask) != 0
        keep &= m[:, None] if m.ndim == 3 else m
    if causal:
        keep &= stated_causal(t, s)
    return keep


def stated_mha(weights, xq, xv, xk, keep, fused, dy, drop=None, rate=0.0):
    """Section 24.1-24.4 as written: forward to Y (B, T, E) and backward from dY to every input and weight.

    weights = [Wq (Dq, N, H), bq (N, H), Wk (Dk, N, H), bk (N, H), Wv (Dv, N, Hv), bv (N, Hv), Wo (N, Hv, E), bo (E,)];
    drop = the dropout keep-mask on P (B, N, T, S) or None. Returns (Y, P, dict of gradients)."""
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    key_dim = wq.shape[-1]
    scale = stated_scale(key_dim, xq.dtype)
    xk_ = xv if xk is None else xk
    q = np.einsum("btd,dnh->bnth", xq, wq) + bq[:, None, :]  # (B, N, T, H)
    k = np.einsum("bsd,dnh->bnsh", xk_, wk) + bk[:, None, :]  # (B, N, S, H)
    v = np.einsum("bsd,dnh->bnsh", xv, wv) + bv[:, None, :]  # (B, N, S, Hv)
    sc = (q @ np.swapaxes(k, -1, -2)) * scale if fused else (q * scale) @ np.swapaxes(k, -1, -2)  # (B, N, T, S)
    p = stated_masked_softmax(sc, keep, fused)
    pd = p if drop is None else np.where(drop, p / (1.0 - rate), 0.0)  # dropout on P, the same mask back
    c = pd @ v  # (B, N, T, Hv)
    y = np.einsum("bnth,nhe->bte", c, wo) + bo  # merge heads and project: (B, T, E)

    g = {"bo": dy.sum(axis=(0, 1)), "Wo": np.einsum("bnth,bte->nhe", c, dy)}
    dc = np.einsum("bte,nhe->bnth", dy, wo)  # (B, N, T, Hv)
    dpd = dc @ np.swapaxes(v, -1, -2)  # (B, N, T, S)
    dv = np.swapaxes(pd, -1, -2) @ dc  # (B, N, S, Hv)
    dp = dpd if drop is None else np.where(drop, dpd / (1.0 - rate), 0.0)
    ds = stated_masked_softmax_vjp(p, dp, keep)  # (B, N, T, S)
    dq = (ds @ k) * scale  # (B, N, T, H)
    dk = (np.swapaxes(ds, -1, -2) @ q) * scale  # (B, N, S, H)
    for name, d, x, w in (("q", dq, xq, wq), ("k", dk, xk_, wk), ("v", dv, xv, wv)):
        g["W" + name] = np.einsum("btd,bnth->dnh", x, d)  # (D, N, H)
        g["b" + name] = d.sum(axis=(0, 2))  # (N, H)
        g["x" + name] = np.einsum("bnth,dnh->btd", d, w)  # (B, T|S, D)
    if xk is None:  # key = value: the value tensor feeds both projections, its gradient is the sum (section 23)
        g["xv"] = g["xv"] + g.pop("xk")
    g["dK"] = dk
    shapes = {"q": q.shape, "k": k.shape, "v": v.shape, "s": sc.shape, "c": c.shape}
    assert dq.shape == shapes["q"] and dk.shape == shapes["k"] and dv.shape == shapes["v"], shapes
    assert ds.shape == dp.shape == shapes["s"] and dc.shape == shapes["c"], shapes
    return y, p, g


# ----- helpers reading Keras -----------------------------------------------------------------------------------------
def probabilities_of_the_fused_path(scores: np.ndarray, mask: np.ndarray | None, is_causal: bool = False):
    """P (B, N, T, S) as keras.ops.dot_product_attention computes it from the logits `scores` (B, N, T, S): with
    scale 1, keys e_s and values e_s (H = Hv = S) the logits are the queries exactly and the output is P exactly."""
    b, n, t, s = scores.shape
    eye = np.broadcast_to(np.eye(s, dtype=scores.dtype)[None, :, None, :], (b, s, n, s))
    out = keras.ops.dot_product_attention(
        np.transpose(scores, (0, 2, 1, 3)), eye, eye, mask=mask, scale=1.0, is_causal=is_causal
    )
    return np.transpose(keras.ops.convert_to_numpy(out), (0, 2, 1, 3))


def keras_mha(num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None, dtype="float64"):
    return keras.layers.MultiHeadAttention(
        num_heads,
        key_dim,
        value_dim=value_dim,
        dropout=dropout,
        use_bias=use_bias,
        output_shape=output_shape,
        dtype=dtype,
        seed=3,
    )


def built_mha(num_heads=2, key_dim=3, t=4, s=4, d=5, dtype="float64") -> keras.layers.MultiHeadAttention:
    layer = keras_mha(num_heads, key_dim, dtype=dtype)
    layer(np.zeros((1, t, d), dtype), np.zeros((1, s, d), dtype))
    return layer


def check_vjp(formula, p: np.ndarray, dp: np.ndarray, theirs: np.ndarray) -> float:
    """The norm-relative distance between a stated vector-Jacobian product and the tape's."""
    return norm_rel_error(formula(p, dp), theirs)


def tape_softmax_vjp(s: np.ndarray, dp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    st = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(st)
        p = tf.nn.softmax(st, axis=-1)
    return p.numpy(), tape.gradient(p, st, output_gradients=tf.constant(dp)).numpy()


# ----- 24: the row softmax -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6, 7), (1, 1, 1, 9)], ids=str)
def test_the_row_softmax_vjp_is_tensorflows(shape):
    """dS = P * (dP - rowsum(P * dP)) on every row of a (B, N, T, S) array is tf.nn.softmax's gradient, and on one
    row it is J^T dP with J = diag(p) - p p^T (the Jacobian the backward pass never builds)."""
    rng = np.random.default_rng(0)
    s, dp = 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    p, theirs = tape_softmax_vjp(s, dp)
    assert norm_rel_error(stated_softmax(s), p) <= F64_TOL
    assert check_vjp(stated_softmax_vjp, p, dp, theirs) <= F64_TOL
    row_p, row_dp = p.reshape(-1, shape[-1])[0], dp.reshape(-1, shape[-1])[0]
    jacobian = np.diag(row_p) - np.outer(row_p, row_p)
    assert norm_rel_error(jacobian.T @ row_dp, theirs.reshape(-1, shape[-1])[0]) <= F64_TOL


def test_the_vjp_check_fails_without_the_row_sum():
    """The same check on the product without its row sum (dS = P * dP) is off by order one, not by rounding."""
    rng = np.random.default_rng(1)
    s, dp = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    p, theirs = tape_softmax_vjp(s, dp)
    assert check_vjp(stated_softmax_vjp, p, dp, theirs) <= F64_TOL
    assert check_vjp(wrong_softmax_vjp, p, dp, theirs) > 0.1


# ----- 24.3: masks and the two paths ---------------------------------------------------------------------------------
def padding_keep(rng: np.random.Generator, b: int, t: int, s: int) -> np.ndarray:
    """A random (B, T, S) keep-mask with row 0 of sample 0 fully masked and row 1 fully kept."""
    keep = rng.random((b, t, s)) < 0.6
    keep[0, 0, :] = False
    keep[0, 1, :] = True
    return keep


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_fused_path_fills_with_its_large_negative_and_a_fully_masked_row_is_uniform(dtype):
    """ops.dot_product_attention's P is softmax(where(keep, S, -0.7 * 3.38953e38)): a fully masked row is uniform
    (1/S), a kept logit equal to the fill ties with the masked ones, and nothing else differs from the formula."""
    rng = np.random.default_rng(2)
    b, n, t, s = 2, 3, 4, 5
    scores = (3 * rng.standard_normal((b, n, t, s))).astype(dtype)
    keep = padding_keep(rng, b, t, s)[:, None]  # (B, 1, T, S)
    fill = np.asarray(FUSED_FILL, dtype)
    scores[1, 0, 2, :] = [fill, 1, 2, 3, 4]  # a kept logit equal to the fill
    keep[1, 0, 2, :] = [True, False, False, False, False]
    theirs = probabilities_of_the_fused_path(scores, keep)
    uniform = np.full((n, s), 1 / s)
    np.testing.assert_allclose(theirs[0, :, 0, :], uniform, rtol=4 * np.finfo(dtype).eps)  # rounding only
    np.testing.assert_allclose(theirs[1, 0, 2, :], uniform[0], rtol=4 * np.finfo(dtype).eps)
    ours = stated_masked_softmax(scores, keep, fused=True)
    assert norm_rel_error(ours, theirs) <= (F64_TOL if dtype == "float64" else F32_SOFTMAX_TOL)
    np.testing.assert_array_equal(ours[keep.repeat(n, 1) == 0] == 0, theirs[keep.repeat(n, 1) == 0] == 0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_explicit_path_fills_with_minus_1e9_and_zeroes_a_fully_masked_row(dtype):
    """MultiHeadAttention._masked_softmax (its Softmax layer) is where(keep, softmax(where(keep, S, -1e9)), 0): a fully
    masked row is zeros, and a kept logit of exactly -1e9 ties with the masked ones, so its row sums to 1/S."""
    rng = np.random.default_rng(3)
    b, n, t, s = 2, 2, 4, 5
    layer = built_mha(num_heads=n, t=t, s=s, dtype=dtype)
    scores = (3 * rng.standard_normal((b, n, t, s))).astype(dtype)
    keep = padding_keep(rng, b, t, s)
    scores[1, :, 2, :] = [-1e9, 1, 2, 3, 4]
    keep[1, 2, :] = [True, False, False, False, False]
    theirs = keras.ops.convert_to_numpy(layer._masked_softmax(scores, keep))
    np.testing.assert_array_equal(theirs[0, :, 0, :], np.zeros((n, s), dtype))
    np.testing.assert_allclose(theirs[1, :, 2, 0], np.full(n, 1 / s), rtol=4 * np.finfo(dtype).eps)
    ours = stated_masked_softmax(scores, keep[:, None], fused=False)
    assert norm_rel_error(ours, theirs) <= (F64_TOL if dtype == "float64" else F32_SOFTMAX_TOL)
    np.testing.assert_array_equal(theirs[np.broadcast_to(~keep[:, None], theirs.shape)], 0)
    fused = stated_masked_softmax(scores, keep[:, None], fused=True)
    assert norm_rel_error(fused, theirs) > 0.1  # the other path's rule is a different answer on these rows


#: Masks as the layer is given them, (B, *shape), and the shapes the section says broadcast.
MASK_SHAPES = [(4, 5), (1, 5), (4, 1), (3, 4, 5), (1, 4, 5)]


@pytest.mark.parametrize("shape", MASK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_a_mask_gains_a_head_axis_and_broadcasts_on_both_paths(shape):
    """A (B, T', S') mask becomes (B, 1, T', S'), a (B, N', T, S) mask is taken as it is, each broadcast to
    (B, N, T, S), alike on the explicit path (Softmax layer) and the fused path (dot_product_attention)."""
    rng = np.random.default_rng(4)
    b, n, t, s = 2, 3, 4, 5
    mask = rng.random((b, *shape)) < 0.7
    keep = stated_keep(mask, False, b, n, t, s)
    scores = rng.standard_normal((b, n, t, s))
    layer = built_mha(num_heads=n, t=t, s=s)
    explicit = keras.ops.convert_to_numpy(layer._masked_softmax(scores, mask))
    assert norm_rel_error(stated_masked_softmax(scores, keep, fused=False), explicit) <= F64_TOL
    fused_mask = mask[:, None] if mask.ndim == 3 else mask  # what _compute_attention hands the fused path
    fused = probabilities_of_the_fused_path(scores, fused_mask)
    assert norm_rel_error(stated_masked_softmax(scores, keep, fused=True), fused) <= F64_TOL


def test_the_layer_keeps_every_nonzero_mask_entry():
    """keras.layers.MultiHeadAttention casts attention_mask to bool: 0.3 keeps as 1 does, 0 masks (the Softmax
    layer alone would keep only entries > 0.5; the layer casts before it is reached), on both paths."""
    rng = np.random.default_rng(5)
    q, v = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 5, 6))
    keep = padding_keep(rng, 2, 4, 5)
    layer = keras_mha(2, 3)
    for scores in (False, True):
        ones = layer(q, v, attention_mask=keep.astype("float64"), return_attention_scores=scores)
        small = layer(q, v, attention_mask=0.3 * keep, return_attention_scores=scores)
        for a, c in zip(ones if scores else [ones], small if scores else [small]):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(c))


@pytest.mark.parametrize("t,s", [(4, 4), (3, 6), (6, 3), (1, 5), (5, 1)])
def test_the_causal_mask_is_keras_for_any_lengths(t, s):
    """keep[i, j] = i >= j, (T, S), is MultiHeadAttention._compute_causal_mask for T = S and T != S (Keras does not
    refuse cross-attention with a causal mask, and aligns it top left), and the fused path's is_causal mask; the
    same check fails on the mask off by one (the diagonal masked, i > j)."""
    layer = keras.layers.MultiHeadAttention(1, 2)
    theirs = keras.ops.convert_to_numpy(layer._compute_causal_mask(np.zeros((1, t, 1)), np.zeros((1, s, 1))))
    assert theirs.shape == (1, t, s)
    np.testing.assert_array_equal(theirs[0], stated_causal(t, s))
    np.testing.assert_array_equal(causal_mask(t, s), theirs[0])
    assert not np.array_equal(theirs[0], np.arange(t)[:, None] > np.arange(s)[None, :])
    fused = probabilities_of_the_fused_path(np.zeros((1, 1, t, s)), None, is_causal=True)[0, 0]
    np.testing.assert_array_equal(fused > 0, stated_causal(t, s))


# ----- 24.1-24.4: the layer as the section writes it -----------------------------------------------------------------
#: (name, layer options, (B, T, S, Dq, Dv, Dk or None), padding mask rank or None, causal, return scores, key given).
CASES = [
    ("self-fused", {}, (3, 5, 5, 6, 6, None), None, False, False),
    ("self-padding-fused", {}, (3, 5, 5, 6, 6, None), 3, False, False),
    ("self-padding-causal-explicit", {}, (3, 5, 5, 6, 6, None), 3, True, True),
    ("cross-key-fused", {"value_dim": 4}, (2, 3, 6, 5, 7, 4), 3, False, False),
    ("cross-causal-explicit", {"value_dim": 2, "output_shape": (3,)}, (2, 6, 4, 5, 7, None), None, True, True),
    ("per-head-mask-no-bias", {"use_bias": False}, (2, 4, 5, 3, 6, 6), 4, False, True),
]


def drawn_weights(layer, rng):
    return [rng.standard_normal(w.shape) * 0.7 for w in layer.weights]


@pytest.mark.parametrize("name,options,dims,mask_rank,causal,scores", CASES, ids=[c[0] for c in CASES])
def test_the_stated_layer_is_keras_forward_and_backward(name, options, dims, mask_rank, causal, scores):
    """Sections 24.1-24.3 evaluated as written (projections (D, N, H), heads split to (B, N, T, H), scores, the
    path's masked softmax, P V, heads merged by the output kernel (N, Hv, E)), forward and every gradient, against
    keras.layers.MultiHeadAttention under tf.GradientTape, float64: the fused path when the scores are not returned,
    the explicit one when they are."""
    b, t, s, dq, dv, dk = dims
    n, key_dim = 3, (4 if name.startswith("self") else 3)  # 1/sqrt(3) is not a float32 number, 1/2 is
    rng = np.random.default_rng(6)
    xq, xv = rng.standard_normal((b, t, dq)), rng.standard_normal((b, s, dv))
    xk = None if dk is None else rng.standard_normal((b, s, dk))
    mask = None
    if mask_rank == 3:
        mask = padding_keep(rng, b, t, s)
    elif mask_rank == 4:
        mask = rng.random((b, n, t, s)) < 0.7
    layer = keras_mha(n, key_dim, **options)
    inputs = [tf.constant(x) for x in (xq, xv, xk) if x is not None]
    layer(*inputs[:2], key=inputs[2] if xk is not None else None)
    names = [w.path.split("/", 1)[1] for w in layer.weights]
    weights = drawn_weights(layer, rng)
    layer.set_weights(weights)
    full = dict(zip(names, weights))
    hv = options.get("value_dim", key_dim)
    e = options.get("output_shape", (dq,))[0]
    for part, h in (("query", key_dim), ("key", key_dim), ("value", hv)):  # use_bias=False: the stated zero bias
        full.setdefault(f"{part}/bias", np.zeros((n, h)))
    full.setdefault("attention_output/bias", np.zeros(e))
    ordered = [full[f"{p}/{w}"] for p in ("query", "key", "value", "attention_output") for w in ("kernel", "bias")]
    assert ordered[0].shape == (dq, n, key_dim) and ordered[6].shape == (n, hv, e)

    dy = rng.standard_normal((b, t, e))
    with tf.GradientTape() as tape:
        for x in inputs:
            tape.watch(x)
        out = layer(
            inputs[0],
            inputs[1],
            key=inputs[2] if xk is not None else None,
            attention_mask=mask,
            use_causal_mask=causal,
            return_attention_scores=scores,
        )
        y = out[0] if scores else out
    grads = tape.gradient(y, inputs + list(layer.trainable_weights), output_gradients=tf.constant(dy))
    keep = stated_keep(mask, causal, b, n, t, s)
    ours_y, ours_p, g = stated_mha(ordered, xq, xv, xk, keep, fused=not scores, dy=dy)
    assert norm_rel_error(ours_y, y.numpy()) <= F64_TOL
    if scores:
        assert norm_rel_error(ours_p, out[1].numpy()) <= F64_TOL
    labels = ["dquery", "dvalue", "dkey"][: len(inputs)] + names
    stated = [g["xq"], g["xv"]] + ([g["xk"]] if xk is not None else [])
    stated += [g[k] for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")][:: 1 if layer.use_bias else 2]
    assert len(labels) == len(stated) == len(grads)
    for label, a, c in zip(labels, stated, grads):
        c = keras.ops.convert_to_numpy(c)
        assert a.shape == c.shape, (label, a.shape, c.shape)
        if label == "key/bias":  # exactly 0: q . b_k shifts a whole row of scores, which the softmax ignores
            noise = F64_TOL * np.linalg.norm(g["dK"])
            assert np.linalg.norm(a) <= noise and np.linalg.norm(c) <= noise, (label, a, c)
            continue
        assert norm_rel_error(a, c) <= F64_TOL, (label, norm_rel_error(a, c))

    roles = (
        ("query", "value") + (("key",) if xk is not None else ()) + (("attention_mask",) if mask is not None else ())
    )
    xs = [x for x in (xq, xv, xk, None if mask is None else mask.astype("float64")) if x is not None]
    ours = scratch_mha(n, key_dim, options, xs, roles, [w for w in weights])
    y_scratch = ours.forward(xs, roles=roles, use_causal_mask=causal, return_attention_scores=scores)
    assert norm_rel_error(y_scratch, y.numpy()) <= F64_TOL
    assert norm_rel_error(ours.P, ours_p) <= F64_TOL
    dxs = ours.backward(dy)
    assert np.array_equal(dxs[-1], np.zeros_like(xs[-1])) or mask is None  # the mask gets no gradient
    for label, a, c in zip(labels, dxs[: len(inputs)] + ours.grads, grads):
        c = keras.ops.convert_to_numpy(c)
        assert a.shape == c.shape, ("scratch", label, a.shape, c.shape)
        if label == "key/bias":
            assert np.linalg.norm(a) <= F64_TOL * np.linalg.norm(ours.dK_heads), ("scratch", label, a)
        else:
            assert norm_rel_error(a, c) <= F64_TOL, ("scratch", label, norm_rel_error(a, c))


def stated_split_heads(x: np.ndarray) -> np.ndarray:
    """(N, T, n_h, d) -> (N, n_h, T, d): the head axis in front of time."""
    return np.transpose(x, (0, 2, 1, 3))


def stated_merge_heads(x: np.ndarray) -> np.ndarray:
    """(N, n_h, T, d) -> (N, T, n_h, d): the inverse move."""
    return np.transpose(x, (0, 2, 1, 3))


def test_split_and_merge_heads_are_kerass_layout():
    """Keras's query_dense gives X W_q + b_q as (N, T, n_h, d_k); split into (N, n_h, T, d_k) stacks, the batched
    product Q K^T is Keras's score einsum; and the output projection is the heads concatenated head after head
    (row h d_v + j of W_o reshaped to (n_h d_v, E)) times that matrix. Feature-major concatenation is not."""
    rng = np.random.default_rng(10)
    n, t, tk, d, nh, dk, dv = 2, 4, 6, 5, 3, 2, 4
    layer = keras_mha(nh, dk, value_dim=dv)
    xq, xv = rng.standard_normal((n, t, d)), rng.standard_normal((n, tk, d))
    layer(xq, xv)
    layer.set_weights(drawn_weights(layer, rng))
    wq, bq, wk, bk, _, _, wo, bo = layer.get_weights()
    q = keras.ops.convert_to_numpy(layer.query_dense(xq))
    k = keras.ops.convert_to_numpy(layer.key_dense(xv))
    assert q.shape == (n, t, nh, dk)
    assert norm_rel_error(q, np.einsum("btd,dhk->bthk", xq, wq) + bq) <= F64_TOL
    qs, ks = stated_split_heads(q), stated_split_heads(k)
    assert qs.shape == (n, nh, t, dk) and ks.shape == (n, nh, tk, dk)
    theirs = keras.ops.convert_to_numpy(keras.ops.einsum(layer._dot_product_equation, k, q))
    assert norm_rel_error(qs @ np.swapaxes(ks, -1, -2), theirs) <= F64_TOL
    np.testing.assert_array_equal(stated_merge_heads(qs), q)
    c = rng.standard_normal((n, nh, t, dv))  # contexts, as stacks
    y = keras.ops.convert_to_numpy(layer.output_dense(stated_merge_heads(c)))
    head_major = stated_merge_heads(c).reshape(n, t, nh * dv) @ wo.reshape(nh * dv, -1) + bo
    assert norm_rel_error(head_major, y) <= F64_TOL
    feature_major = np.transpose(c, (0, 2, 3, 1)).reshape(n, t, nh * dv) @ wo.reshape(nh * dv, -1) + bo
    assert norm_rel_error(feature_major, y) > 0.1
    one_product = xq.reshape(-1, d) @ wq.reshape(d, -1) + bq.reshape(-1)  # all heads' columns, head by head
    np.testing.assert_array_equal(
        split_heads(one_product.reshape(n, t, nh * dk), nh), stated_split_heads(one_product.reshape(n, t, nh, dk))
    )
    assert norm_rel_error(split_heads(one_product.reshape(n, t, nh * dk), nh), qs) <= F64_TOL
    np.testing.assert_array_equal(merge_heads(c), stated_merge_heads(c).reshape(n, t, nh * dv))
    np.testing.assert_array_equal(split_heads(merge_heads(c), nh), c)
    assert norm_rel_error(merge_heads(c) @ wo.reshape(nh * dv, -1) + bo, y) <= F64_TOL


def test_a_fully_masked_query_row_gives_the_output_bias_on_one_path_and_the_mean_value_on_the_other():
    """Through the whole layer: a query row with every key masked outputs b_o on the explicit path (C = 0) and
    (mean_s V_s) W_o + b_o on the fused path (uniform P); its gradient reaches V on the fused path only."""
    rng = np.random.default_rng(7)
    xq, xv = rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 6, 5))
    keep = padding_keep(rng, 2, 4, 6)
    layer = keras_mha(2, 3)
    layer(xq, xv)
    weights = drawn_weights(layer, rng)
    layer.set_weights(weights)
    explicit, _ = layer(xq, xv, attention_mask=keep, return_attention_scores=True)
    fused = layer(xq, xv, attention_mask=keep)
    np.testing.assert_allclose(explicit.numpy()[0, 0], weights[7], rtol=0, atol=0)
    v = np.einsum("sd,dnh->nsh", xv[0], weights[4]) + weights[5][:, None]
    mean_out = np.einsum("nh,nhe->e", v.mean(axis=1), weights[6]) + weights[7]
    assert norm_rel_error(fused.numpy()[0, 0], mean_out) <= F64_TOL


def test_attention_dropout_uses_one_mask_forward_and_backward():
    """Explicit path in training: C = (P * B / (1 - r)) V with B the dropout keep-mask on P, and the tape's dV, dQ, dK
    use the same B (dP = B * (dC V^T) / (1 - r)). With values e_s the output is the dropped P itself, which reads B."""
    rng = np.random.default_rng(8)
    b, n, t, s, h, rate = 2, 2, 4, 5, 3, 0.4
    layer = keras_mha(n, h, value_dim=s, dropout=rate)
    layer(np.zeros((1, t, 6)), np.zeros((1, s, 6)))
    q, k = tf.constant(rng.standard_normal((b, t, n, h))), tf.constant(rng.standard_normal((b, s, n, h)))
    eye = tf.constant(np.broadcast_to(np.eye(s)[None, :, None, :], (b, s, n, s)).copy())
    dc = rng.standard_normal((b, t, n, s))
    with tf.GradientTape() as tape:
        tape.watch([q, k, eye])
        c, p = layer._compute_attention(q, k, eye, None, training=True, return_attention_scores=True)
    dq, dk, dv = tape.gradient(c, [q, k, eye], output_gradients=tf.constant(dc))
    p, dropped = p.numpy(), np.transpose(c.numpy(), (0, 2, 1, 3))  # (B, N, T, S)
    drop = dropped != 0
    assert 0 < drop.mean() < 1
    assert norm_rel_error(dropped, np.where(drop, p / (1 - rate), 0)) <= F64_TOL
    scale = stated_scale(h, "float64")
    qh, kh, v = (np.transpose(x, (0, 2, 1, 3)) for x in (q.numpy(), k.numpy(), eye.numpy()))
    dch = np.transpose(dc, (0, 2, 1, 3))
    dp = np.where(drop, (dch @ np.swapaxes(v, -1, -2)) / (1 - rate), 0)
    ds = stated_softmax_vjp(p, dp)
    checks = {
        "dV": (np.swapaxes(dropped, -1, -2) @ dch, dv.numpy()),
        "dQ": ((ds @ kh) * scale, dq.numpy()),
        "dK": ((np.swapaxes(ds, -1, -2) @ qh) * scale, dk.numpy()),
    }
    for label, (ours, theirs) in checks.items():
        assert norm_rel_error(ours, np.transpose(theirs, (0, 2, 1, 3))) <= F64_TOL, label
    fresh = np.where(rng.random(drop.shape) >= rate, dch @ np.swapaxes(v, -1, -2) / (1 - rate), 0)
    assert norm_rel_error((stated_softmax_vjp(p, fresh) @ kh) * scale, np.transpose(dq.numpy(), (0, 2, 1, 3))) > 0.1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_explicit_path_scales_the_queries_and_the_fused_path_the_product(dtype):
    """A score whose unscaled product overflows, q . k = x^2 > max, while x^2 / sqrt(H) does not: the explicit path,
    (Q / sqrt(H)) K^T, stays finite; the fused path, (Q K^T) / sqrt(H), meets inf - inf in its softmax."""
    h = 16
    big = np.sqrt(np.finfo(dtype).max) * 1.5  # big^2 overflows, big^2 / 4 does not
    q = np.zeros((1, 1, 1, h), dtype)
    q[..., 0] = big
    k = np.concatenate([q, np.zeros_like(q)], axis=1)  # scores [big^2 / 4, 0]
    eye = np.eye(2, dtype=dtype)[None, :, None, :]  # values e_s: the output is P
    layer = built_mha(num_heads=1, key_dim=h, t=1, s=2, dtype=dtype)
    explicit, p = layer._compute_attention(q, k, eye, None, return_attention_scores=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(p)[0, 0, 0], [1, 0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(explicit)[0, 0, 0], [1, 0])
    fused, _ = layer._compute_attention(q, k, eye, None, return_attention_scores=False)
    assert np.isnan(keras.ops.convert_to_numpy(fused)).all()


@pytest.mark.parametrize("key_dim", [3, 5, 4])
def test_the_scale_is_the_float32_rounding_of_one_over_sqrt_key_dim_in_float64_too(key_dim):
    """Scores [scale, 0] from q = k_1 = e_1, k_2 = 0: P_1 / P_2 = exp(scale) reads the scale each path applied. Both
    apply fl32(1/sqrt(key_dim)) in float64, which differs from the float64 1/sqrt(key_dim) by up to 3e-8 of it."""
    layer = built_mha(num_heads=1, key_dim=key_dim, t=1, s=2)
    q = np.zeros((1, 1, 1, key_dim))
    q[..., 0] = 1.0
    k = np.zeros((1, 2, 1, key_dim))
    k[0, 0, 0, 0] = 1.0
    eye = np.eye(2)[None, :, None, :]  # values e_s: the output is P
    _, p_explicit = layer._compute_attention(q, k, eye, None, return_attention_scores=True)
    p_fused, _ = layer._compute_attention(q, k, eye, None, return_attention_scores=False)
    read = [np.log(p[0] / p[1]) for p in (p_explicit.numpy()[0, 0, 0], p_fused.numpy()[0, 0, 0])]
    exact = 1 / np.sqrt(key_dim)
    assert attention_scale(key_dim, np.float64) == stated_scale(key_dim, "float64")
    assert attention_scale(key_dim, np.float32) == np.float32(1 / np.sqrt(key_dim))
    for value in read:
        assert abs(value - stated_scale(key_dim, "float64")) <= 1e-14  # a few ulps of exp, division and log
        if key_dim != 4:
            assert abs(value - exact) > 1e-10 * exact


# ----- 24.5: what an encoder needs beside it -------------------------------------------------------------------------
def test_global_average_pooling_1d_and_the_position_table_gradients_are_tensorflows():
    """GlobalAveragePooling1D: Y = (1/T) sum_t X_t (B, D), dX_t = dY / T; a position table P (T, D) added to every
    sample's token embeddings: dP = sum_b dX_b. Both against the tape."""
    rng = np.random.default_rng(9)
    b, t, d = 3, 5, 4
    x, table, dy = rng.standard_normal((b, t, d)), tf.Variable(rng.standard_normal((t, d))), rng.standard_normal((b, d))
    xt = tf.constant(x)
    pool = keras.layers.GlobalAveragePooling1D(dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = pool(xt + table[None])
    dx, dtable = tape.gradient(y, [xt, table], output_gradients=tf.constant(dy))
    assert norm_rel_error(y.numpy(), (x + table.numpy()).mean(axis=1)) <= F64_TOL
    stated_dx = np.broadcast_to(dy[:, None, :] / t, (b, t, d))
    assert norm_rel_error(stated_dx, dx.numpy()) <= F64_TOL
    assert norm_rel_error(stated_dx.sum(axis=0), dtable.numpy()) <= F64_TOL
    position, pooling = PositionEmbedding(), GlobalAveragePooling1D()
    position.build((t, d), np.float64, rng)
    pooling.build((t, d), np.float64, rng)
    position.P = table.numpy()
    assert norm_rel_error(pooling.forward(position.forward(x)), y.numpy()) <= F64_TOL
    dh = pooling.backward(dy)
    assert norm_rel_error(position.backward(dh), dx.numpy()) <= F64_TOL
    assert norm_rel_error(position.dP, dtable.numpy()) <= F64_TOL


def stated_layer_norm(x, gamma, beta, eps=1e-3):
    """Section 22.7 over the last axis: (a, x_hat, r)."""
    mu = x.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    x_hat = (x - mu) * r
    return gamma * x_hat + beta, x_hat, r


def stated_layer_norm_backward(da, x_hat, r, gamma):
    """dx = r/D (D dx_hat - sum_d dx_hat - x_hat sum_d dx_hat x_hat), dx_hat = da gamma (section 22.7)."""
    d = x_hat.shape[-1]
    g = da * gamma
    return r / d * (d * g - g.sum(axis=-1, keepdims=True) - x_hat * (g * x_hat).sum(axis=-1, keepdims=True))


def test_the_post_norm_encoder_block_sums_its_paths_as_stated():
    """24.5's block, H' = LN1(H + MHA(H, H)), H'' = LN2(H' + relu(H' W1 + b1) W2 + b2), forward and dL/dH by the
    section's fan-out sums (dH' = dU2 + the feed-forward's dH'; dH = dU1 + dX_q + dX_v), against the same Keras layers
    under the tape; dH without its skip term is off by order one."""
    rng = np.random.default_rng(12)
    b, t, d, n, dk, ff = 3, 5, 6, 2, 3, 8
    h = rng.standard_normal((b, t, d))
    mha, ln1, ln2 = keras_mha(n, dk), *(keras.layers.LayerNormalization(dtype="float64") for _ in range(2))
    dense1, dense2 = keras.layers.Dense(ff, "relu", dtype="float64"), keras.layers.Dense(d, dtype="float64")
    ht = tf.constant(h)
    mha(ht, ht)
    mha.set_weights(drawn_weights(mha, rng))
    dy = rng.standard_normal((b, t, d))
    with tf.GradientTape() as tape:
        tape.watch(ht)
        h1 = ln1(ht + mha(ht, ht))
        h2 = ln2(h1 + dense2(dense1(h1)))
    theirs = tape.gradient(h2, ht, output_gradients=tf.constant(dy)).numpy()
    w = mha.get_weights()
    (w1, b1), (w2, b2) = dense1.get_weights(), dense2.get_weights()
    keep = np.ones((b, n, t, t), bool)
    a, _, _ = stated_mha(w, h, h, None, keep, fused=True, dy=np.zeros_like(h))
    u1, xh1, r1 = stated_layer_norm(h + a, *ln1.get_weights())
    z1 = u1 @ w1 + b1
    u2, xh2, r2 = stated_layer_norm(u1 + np.maximum(z1, 0) @ w2 + b2, *ln2.get_weights())
    assert norm_rel_error(u2, h2.numpy()) <= F64_TOL
    du2 = stated_layer_norm_backward(dy, xh2, r2, ln2.get_weights()[0])  # to H' + F
    dh1 = du2 + ((du2 @ w2.T) * (z1 > 0)) @ w1.T  # the skip and the feed-forward branch
    du1 = stated_layer_norm_backward(dh1, xh1, r1, ln1.get_weights()[0])  # to H + A
    _, _, g = stated_mha(w, h, h, None, keep, fused=True, dy=du1)
    assert norm_rel_error(du1 + g["xq"] + g["xv"], theirs) <= F64_TOL  # the skip, the query and the value (key)
    assert norm_rel_error(g["xq"] + g["xv"], theirs) > 0.1


# ----- from_scratch/attention.py held to the same claims -------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_fills_are_kerass_constants(dtype):
    """FUSED_FILL and SOFTMAX_LAYER_FILL, cast to the dtype, are the numbers Keras's TensorFlow backend and Softmax
    layer put at masked scores."""
    from keras.src.backend.tensorflow.nn import _get_large_negative
    from keras.src.layers.activations.softmax import _large_negative_number

    assert np.asarray(SCRATCH_FUSED_FILL, dtype) == _get_large_negative(dtype).numpy()
    assert np.asarray(SCRATCH_FUSED_FILL, dtype) == np.asarray(FUSED_FILL, dtype)
    assert np.asarray(SOFTMAX_LAYER_FILL, dtype) == np.asarray(_large_negative_number(dtype), dtype)


def path_probabilities_and_vjp(scores, keep, dp, fused):
    """P and dS = (dL/dP -> dL/dS) of Keras's path on `scores` (B, N, T, S) with keep (B, 1, T, S), by the tape:
    fused through ops.dot_product_attention (logits = the queries, values e_s, so dC = dP), explicit through the
    layer's _masked_softmax."""
    st = tf.constant(scores)
    b, n, t, s = scores.shape
    with tf.GradientTape() as tape:
        tape.watch(st)
        if fused:
            eye = tf.constant(np.broadcast_to(np.eye(s, dtype=scores.dtype)[None, :, None, :], (b, s, n, s)).copy())
            out = keras.ops.dot_product_attention(tf.transpose(st, (0, 2, 1, 3)), eye, eye, mask=keep, scale=1.0)
            p = tf.transpose(out, (0, 2, 1, 3))
        else:
            p = built_mha(num_heads=n, t=t, s=s, dtype=scores.dtype.name)._masked_softmax(st, keep[:, 0])
    return p.numpy(), tape.gradient(p, st, output_gradients=tf.constant(dp)).numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_attention_softmax_and_its_backward_are_each_paths(fused, dtype):
    """from_scratch's attention_softmax(S, keep, fused) is the path's P and attention_softmax_backward(P, dP, keep)
    its tape gradient, fully masked rows included (uniform and dS = 0, or zeros); without a mask, the plain softmax."""
    rng = np.random.default_rng(11)
    b, n, t, s = 2, 3, 4, 5
    scores, dp = (3 * rng.standard_normal((2, b, n, t, s))).astype(dtype)
    keep = padding_keep(rng, b, t, s)[:, None]
    tol = F64_TOL if dtype == "float64" else F32_SOFTMAX_TOL
    p_theirs, ds_theirs = path_probabilities_and_vjp(scores, keep, dp, fused)
    p = attention_softmax(scores, keep, fused)
    assert p.dtype == np.dtype(dtype)
    assert norm_rel_error(p, p_theirs) <= tol
    assert norm_rel_error(attention_softmax_backward(p, dp, keep), ds_theirs) <= tol
    np.testing.assert_array_equal(attention_softmax_backward(p, dp, keep)[0, :, 0], 0)  # the fully masked row
    plain, ds_plain = tape_softmax_vjp(scores.astype("float64"), dp.astype("float64"))
    assert norm_rel_error(attention_softmax(scores, None, fused), plain) <= tol
    assert norm_rel_error(attention_softmax_backward(plain, dp.astype("float64"), None), ds_plain) <= F64_TOL
    assert norm_rel_error(wrong_softmax_vjp(p, dp) * keep, ds_theirs) > 0.1


def scratch_mha(num_heads, key_dim, options, xs, roles, weights):
    """from_scratch's layer built for the inputs `xs` in the order of `roles`, with Keras's weights."""
    layer = MultiHeadAttention(num_heads, key_dim, **options)
    layer.build([x.shape[1:] for x in xs], np.float64, np.random.default_rng(0), roles=roles)
    names = ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")
    for name, w in zip(names if layer.use_bias else names[0::2], weights):
        setattr(layer, name, w)
    return layer
