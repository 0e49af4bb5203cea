"""The attention layer's faster arithmetic gives the same bits as the version it replaced.

from_scratch/attention.py now makes fewer temporaries (the softmax exponentiates and divides in place, its backward
subtracts and multiplies in place, the scaling of the scores and the bias adds act on the products just made, the
scaled dS of the backward pass goes into a work array the layer keeps between steps) and skips the three
dX = dQ Wq^T, ... products when no input needs a gradient (`backward(dy, input_grad=False)`, as a training step asks).
None of this changes an operation or its order, so every array must be equal bit for bit: the frozen copy below is
the committed version before the change (its forward, backward and the two softmax helpers, verbatim), and each case
compares the bit patterns of the output, every record (Q, K, V, S, P, C and their gradients), every parameter
gradient and dL/dx, on random configurations with ties, signed zeros, infinities and NaNs in the inputs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from same_bits import check_the_comparison, differing_bits

from from_scratch.attention import (
    FUSED_FILL,
    SOFTMAX_LAYER_FILL,
    MultiHeadAttention,
    attention_softmax,
    attention_softmax_backward,
    merge_heads,
    split_heads,
)


# ----- the committed version before the change (3fe2bc6), verbatim but for the names -----------------------------
def frozen_softmax(scores, keep, fused):
    if keep is not None:
        fill = scores.dtype.type(FUSED_FILL if fused else SOFTMAX_LAYER_FILL)
        scores = np.where(keep, scores, fill)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    p = e / e.sum(axis=-1, keepdims=True)
    if keep is not None and not fused:
        p = np.where(keep, p, scores.dtype.type(0))
    return p


def frozen_softmax_backward(p, dp, keep):
    ds = (dp - (dp * p).sum(axis=-1, keepdims=True)) * p
    return ds if keep is None else np.where(keep, ds, p.dtype.type(0))


class FrozenAttention(MultiHeadAttention):
    """MultiHeadAttention with the forward and backward arithmetic of commit 3fe2bc6."""

    def _project(self, x, w, b):
        d = w.shape[0]
        y = x.reshape(-1, d) @ w.reshape(d, -1)
        if self.use_bias:
            y = y + b.reshape(-1)
        return split_heads(y.reshape(x.shape[0], x.shape[1], -1), w.shape[1])

    def forward(self, xs, training=False, roles=None, use_causal_mask=False, return_attention_scores=False):
        from from_scratch.attention import _roles, attention_scale

        self.roles = _roles(roles, len(xs), f"layer {self.name!r}")
        by = dict(zip(self.roles, xs))
        xq, xv = by["query"], by["value"]
        xk = by.get("key", xv)
        self.xs, self.xq, self.xk, self.xv = list(xs), xq, xk, xv
        self.key_given = "key" in by
        mask = by.get("attention_mask")
        t, s = xq.shape[1], xv.shape[1]
        self._t, self._s = t, s
        self.fused = self.dropout == 0.0 and not return_attention_scores
        self.keep = self._keep(mask, t, s, bool(use_causal_mask))
        scale = self.scale = attention_scale(self.key_dim, self.dtype)
        self.Q = self._project(xq, self.Wq, self.bq)
        self.K = self._project(xk, self.Wk, self.bk)
        self.V = self._project(xv, self.Wv, self.bv)
        kt = self.K.transpose(0, 1, 3, 2)
        self.S = (self.Q @ kt) * scale if self.fused else (self.Q * scale) @ kt
        self.P = frozen_softmax(self.S, self.keep, self.fused)
        self.dropping = training and self.dropout > 0
        if self.dropping:
            shape = self.P.shape
            self.mask = self.fixed_mask if self.fixed_mask is not None else self.draw_mask(shape)
            self.keep_scale = self.dtype.type(1.0 / (1.0 - self.dropout))
            self.P_used = self.P * self.keep_scale * self.mask
        else:
            self.P_used = self.P
        self.C = self.P_used @ self.V
        merged = merge_heads(self.C)
        wo = self.Wo.reshape(self.num_heads * self.value_dim, -1)
        y = merged.reshape(-1, wo.shape[0]) @ wo
        if self.use_bias:
            y = y + self.bo.reshape(-1)
        self.merged = merged
        self.Y = y.reshape(xq.shape[0], t, *self.Wo.shape[2:])
        return self.Y

    def _project_back(self, x, w, dh, input_grad=True):
        d = w.shape[0]
        rows = merge_heads(dh).reshape(-1, w.shape[1] * w.shape[2])
        dw = (x.reshape(-1, d).T @ rows).reshape(w.shape)
        db = rows.sum(axis=0).reshape(w.shape[1:])
        dx = (rows @ w.reshape(d, -1).T).reshape(x.shape)
        return dw, db, dx

    def backward(self, dy, input_grad=True):
        b, t = dy.shape[:2]
        wo = self.Wo.reshape(self.num_heads * self.value_dim, -1)
        rows = dy.reshape(b * t, -1)
        self.dWo = (self.merged.reshape(b * t, -1).T @ rows).reshape(self.Wo.shape)
        self.dbo = rows.sum(axis=0).reshape(self.Wo.shape[2:])
        dmerged = (rows @ wo.T).reshape(b, t, -1)
        self.dC = split_heads(dmerged, self.num_heads)
        self.dV_heads = self.P_used.transpose(0, 1, 3, 2) @ self.dC
        dp_used = self.dC @ self.V.transpose(0, 1, 3, 2)
        self.dP = dp_used * self.keep_scale * self.mask if self.dropping else dp_used
        self.dS = frozen_softmax_backward(self.P, self.dP, self.keep)
        if self.fused:
            ds = self.dS * self.scale
            self.dQ_heads = ds @ self.K
            self.dK_heads = ds.transpose(0, 1, 3, 2) @ self.Q
        else:
            self.dQ_heads = (self.dS @ self.K) * self.scale
            self.dK_heads = self.dS.transpose(0, 1, 3, 2) @ (self.Q * self.scale)
        self.dWq, self.dbq, dxq = self._project_back(self.xq, self.Wq, self.dQ_heads)
        self.dWk, self.dbk, dxk = self._project_back(self.xk, self.Wk, self.dK_heads)
        self.dWv, self.dbv, dxv = self._project_back(self.xv, self.Wv, self.dV_heads)
        if not self.key_given:
            dxv = dxv + dxk
        by = {"query": dxq, "value": dxv, "key": dxk}
        out = []
        for role, x in zip(self.roles, self.xs):
            out.append(by[role] if role in by else np.zeros(x.shape, self.dtype))
        return out


# ----- the comparison --------------------------------------------------------------------------------------------
def compare_layers(new: MultiHeadAttention, old: MultiHeadAttention, where: str) -> None:
    for name, a in new.record().items():
        if name in ("dquery", "dvalue", "dkey"):  # recorded since; they are the dL/dx compared below
            continue
        b = old.record()[name]
        if a is None or b is None:
            assert a is None and b is None, f"{where}: record {name} present on one side only"
            continue
        assert differing_bits(a, b) is None, f"{where}: record {name}: {differing_bits(a, b)}"
    for name, ga, gb in zip(new.weight_names, new.grads, old.grads):
        assert differing_bits(ga, gb) is None, f"{where}: gradient of {name}: {differing_bits(ga, gb)}"


def make_pair(config: dict, dtype: str, shapes: list, roles: tuple, seed: int):
    new = MultiHeadAttention(**config)
    old = FrozenAttention(**config)
    new.build(shapes, np.dtype(dtype), np.random.default_rng(seed), roles=roles)
    old.build(shapes, np.dtype(dtype), np.random.default_rng(seed), roles=roles)
    return new, old


def plant(x: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """x with ties (repeated steps, repeated features), signed zeros, or infinities and NaNs planted."""
    x = x.copy()
    if kind == "ties":
        x[:, 1::2] = x[:, ::2][:, : x[:, 1::2].shape[1]]  # every odd step repeats the one before: tied scores
        x[..., -1] = x[..., 0]
    elif kind == "zeros":
        flat = x.reshape(-1)
        at = rng.choice(flat.size, flat.size // 3, replace=False)
        flat[at] = np.where(rng.random(at.size) < 0.5, 0.0, -0.0)
        x[0] = -0.0  # a whole sample of negative zeros
    elif kind == "nonfinite":
        flat = x.reshape(-1)
        at = rng.choice(flat.size, 4, replace=False)
        flat[at] = [np.inf, -np.inf, np.nan, -np.nan]
    elif kind == "large":
        x *= x.dtype.type(1e3 if x.dtype == np.float32 else 1e100)  # scores that overflow to inf: rows of NaN
    return x


CONFIGS = [
    # (layer options, query steps, value steps, key given, mask kind, causal, return_attention_scores)
    (dict(num_heads=4, key_dim=16), 9, 9, False, None, False, False),
    (dict(num_heads=2, key_dim=3, value_dim=5), 6, 4, True, "full", False, False),
    (dict(num_heads=3, key_dim=4, output_shape=(2, 3)), 5, 7, False, "rows", True, False),
    (dict(num_heads=2, key_dim=4, use_bias=False), 5, 5, False, "per_head", True, True),
    (dict(num_heads=1, key_dim=8, dropout=0.25), 4, 6, True, "full", False, False),
    (dict(num_heads=2, key_dim=2, dropout=0.5), 3, 3, False, "masked_rows", False, True),
]
KINDS = ("plain", "ties", "zeros", "nonfinite", "large")


def mask_for(kind: str | None, rng: np.random.Generator, b: int, heads: int, t: int, s: int) -> np.ndarray | None:
    if kind is None:
        return None
    if kind == "full":
        return (rng.random((b, t, s)) < 0.7).astype("float32")
    if kind == "rows":
        return (rng.random((b, 1, s)) < 0.7).astype("int32")
    if kind == "per_head":
        return rng.random((b, heads, t, s)) < 0.6
    m = (rng.random((b, t, s)) < 0.7).astype("float32")
    m[:, 0] = 0  # fully masked rows: uniform on the fused path, zeros on the explicit one
    return m


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_new_arithmetic_gives_the_old_bits(dtype: str, index: int) -> None:
    config, t, s, key_given, mask_kind, causal, scores_asked = CONFIGS[index]
    rng = np.random.default_rng(100 + index)
    b, d_q, d_v = 3, 7, 5
    heads = config["num_heads"]
    with np.errstate(all="ignore"):
        for kind, training in itertools.product(KINDS, (True, False)):
            where = f"config {index}, {dtype}, inputs {kind}, training={training}"
            xq = plant(rng.standard_normal((b, t, d_q)).astype(dtype), rng, kind)
            xv = plant(rng.standard_normal((b, s, d_v)).astype(dtype), rng, kind)
            if kind == "ties" and t == s and d_q == d_v:
                xv = xq.copy()
            xs, roles, shapes = [xq, xv], ["query", "value"], [(t, d_q), (s, d_v)]
            if key_given:
                xs.append(plant(rng.standard_normal((b, s, 6)).astype(dtype), rng, kind))
                roles.append("key")
                shapes.append((s, 6))
            mask = mask_for(mask_kind, rng, b, heads, t, s)
            if mask is not None:
                xs.append(mask)
                roles.append("attention_mask")
                shapes.append(mask.shape[1:])
            new, old = make_pair(config, dtype, shapes, tuple(roles), seed=index)
            if kind == "zeros":  # zero kernels and biases of both signs: every score a tie of signed zeros
                for layer in (new, old):
                    layer.Wq[...] = -0.0
                    layer.bk[...] = 0.0
            if new.dropout:
                drop = (rng.random((b, heads, t, s)) >= new.dropout).astype(dtype)
                new.fix_mask(drop)
                old.fix_mask(drop)
            options = dict(roles=tuple(roles), use_causal_mask=causal, return_attention_scores=scores_asked)
            y_new = new.forward(xs, training=training, **options)
            y_old = old.forward(xs, training=training, **options)
            assert differing_bits(y_new, y_old) is None, f"{where}: output: {differing_bits(y_new, y_old)}"
            dy = plant(rng.standard_normal(y_new.shape).astype(dtype), rng, "zeros" if kind == "zeros" else "plain")
            dx_new = new.backward(dy)
            dx_old = old.backward(dy)
            compare_layers(new, old, where)
            for k, (a, c) in enumerate(zip(dx_new, dx_old)):
                assert differing_bits(a, c) is None, f"{where}: dL/dx[{k}] ({roles[k]}): {differing_bits(a, c)}"
            grads_with_dx = [g.copy() for g in new.grads]
            assert new.backward(dy, input_grad=False) is None
            for name, g, h in zip(new.weight_names, new.grads, grads_with_dx):
                assert differing_bits(g, h) is None, f"{where}: {name} without dX: {differing_bits(g, h)}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_softmax_helpers_give_the_old_bits(dtype: str) -> None:
    """The two helpers alone, on scores with ties, signed zeros, huge values, infinities and NaNs, every mask kind."""
    rng = np.random.default_rng(7)
    big = np.finfo(dtype).max
    specials = np.array([0.0, -0.0, 1.0, 1.0, -1.0, big, -big, np.inf, -np.inf, np.nan], dtype)
    with np.errstate(all="ignore"):
        for trial in range(40):
            shape = (2, 3, 4, int(rng.integers(1, 9)))
            scores = rng.standard_normal(shape).astype(dtype)
            if trial % 2:
                scores = rng.choice(specials, shape)
            dp = rng.choice(specials, shape) if trial % 3 == 0 else rng.standard_normal(shape).astype(dtype)
            keep = [None, rng.random(shape) < 0.5, rng.random((1, 1, 4, shape[-1])) < 0.3][trial % 3]
            for fused in (True, False):
                p_new, p_old = attention_softmax(scores, keep, fused), frozen_softmax(scores, keep, fused)
                assert differing_bits(p_new, p_old) is None, f"trial {trial}, fused={fused}: P"
                ds_new = attention_softmax_backward(p_old, dp, keep)
                ds_old = frozen_softmax_backward(p_old, dp, keep)
                assert differing_bits(ds_new, ds_old) is None, f"trial {trial}, fused={fused}: dS"


def test_the_bit_comparison_catches_one_ulp_a_zero_sign_and_a_nan_payload() -> None:
    """The check above fails on a wrong answer, down to the smallest one."""
    check_the_comparison()
    a = np.array([1.0, 0.0, np.nan], "float32")
    payload = a.copy()
    payload.view("u4")[2] ^= 1  # another NaN
    assert np.isnan(payload[2]) and differing_bits(a, payload) is not None
    # and the frozen layer really is another implementation: a planted change in it is caught
    new, old = make_pair(dict(num_heads=2, key_dim=3), "float64", [(4, 5), (4, 5)], ("query", "value"), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 4, 5))
    old.Wo[0, 0, 0] = np.nextafter(old.Wo[0, 0, 0], 1.0)
    assert differing_bits(new.forward([x, x]), old.forward([x, x])) is not None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_training_step_skips_the_inputs_gradient_with_and_without_the_protocol_watch(dtype: str) -> None:
    """A graph whose attention layer reads the model's input: a training step (input_grad=False) asks the layer for no
    dL/dx and gets None; the gradients equal, bit for bit, those of a pass that computes dL/dx, also under the
    protocol's Watch (which checks what every layer returns)."""
    from from_scratch import Add, Dense, Flatten, Input, LayerNormalization, Model
    from from_scratch.watch import Watch, watched

    x_in = Input((6, 8))
    a = MultiHeadAttention(2, 4)(x_in, x_in)
    model = Model(x_in, Dense(3, activation="softmax")(Flatten()(LayerNormalization()(Add()([x_in, a])))), dtype=dtype)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 8)).astype(dtype)
    y = np.eye(3, dtype=dtype)[[0, 2, 1, 2]]
    mha = next(layer for layer in model.layers if isinstance(layer, MultiHeadAttention))
    returned = []
    original = mha.backward

    def spy(dy, input_grad=True):
        out = original(dy, input_grad=input_grad)
        returned.append(out)
        return out

    mha.backward = spy
    try:
        full = model.backward_pass(x, y, input_grad=True)
        _, grads = model.loss_and_gradients(x, y)
        with watched(model, Watch()) as watch:
            _, watched_grads = model.loss_and_gradients(x, y)
            watch.finish()
    finally:
        del mha.backward
    assert isinstance(returned[0], list) and returned[1] is None and returned[2] is None
    for k, (g, h, w) in enumerate(zip(full.grads, grads, watched_grads)):
        assert differing_bits(g, h) is None and differing_bits(g, w) is None, f"gradient {k}"
