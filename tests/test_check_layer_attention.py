"""A user's own attention layer brought to check_layer, the check-layer command and the `parity` fixture, against
keras.layers.MultiHeadAttention called as Keras calls it (query, value, key=, attention_mask=, use_causal_mask=):
from_scratch's own MultiHeadAttention, an independent einsum implementation written here, the same with planted bugs,
and bad input."""

import math

import keras
import numpy as np
import pytest

from compare.check import check_layer
from compare.check_attention import random_mask
from compare.cli import main
from from_scratch import BadInputError, Layer
from from_scratch.attention import MultiHeadAttention

DTYPES = ["float64", "float32"]
ALL_ROLES = ("query", "value", "key", "attention_mask")


# ----- a user's own attention layer: loop-free einsum, written independently of from_scratch.attention ------------
class EinsumAttention(Layer):
    """Multi-head attention with Keras's weight layouts, every step one einsum over (batch, heads):

        Q = einsum(btd,dnh->bnth)(Xq, Wq) + bq         (and K from Xk, V from Xv the same way)
        S = einsum(bnth,bnsh->bnts)(Q, K) / sqrt(H)    masked positions set to -inf (each row keeps one at least)
        P = softmax over s                              C = einsum(bnts,bnsh->bnth)(P, V)
        Y = einsum(bnth,nhd->btd)(C, Wo) + bo

    backward:  dC = dY Wo^T, dP = dC V^T, dV = P^T dC, dS = P (dP - rowsum(P dP)), dQ = dS K / sqrt(H),
    dK = dS^T Q / sqrt(H), and each projection's dW = X^T dQ, db = sum dQ, dX = dQ W^T.

    The scale is 1/sqrt(H) computed in float64 (Keras rounds it to float32); `bug` plants one mistake."""

    several_inputs = True
    weight_names = tuple(f"{b}/{w}" for b in ("query", "key", "value", "attention_output") for w in ("kernel", "bias"))

    def __init__(self, num_heads, key_dim, bug=None):
        self.num_heads, self.key_dim, self.bug = num_heads, key_dim, bug

    def build(self, input_shapes, dtype, rng, roles=("query", "value"), **options):
        by = dict(zip(roles, input_shapes))
        n, h = self.num_heads, self.key_dim
        d_q, d_v = by["query"][-1], by["value"][-1]
        d_k = by["key"][-1] if "key" in by else d_v
        self.wq, self.wk, self.wv = (rng.normal(size=(d, n, h)).astype(dtype) for d in (d_q, d_k, d_v))
        self.wo = rng.normal(size=(n, h, d_q)).astype(dtype)
        self.bq, self.bk, self.bv = (np.zeros((n, h), dtype) for _ in range(3))
        self.bo = np.zeros(d_q, dtype)
        return (by["query"][0], d_q)

    @property
    def params(self):
        return [self.wq, self.bq, self.wk, self.bk, self.wv, self.bv, self.wo, self.bo]

    @property
    def grads(self):
        return [self.dwq, self.dbq, self.dwk, self.dbk, self.dwv, self.dbv, self.dwo, self.dbo]

    def forward(self, xs, training=False, roles=("query", "value"), use_causal_mask=False, **options):
        self.roles, self.xs = roles, xs
        by = dict(zip(roles, xs))
        self.xq, self.xv = by["query"], by["value"]
        self.xk = by.get("key", self.xv)
        self.scale = 1.0 if self.bug == "no_scale" else 1.0 / math.sqrt(self.key_dim)
        self.q = np.einsum("btd,dnh->bnth", self.xq, self.wq) + self.bq[None, :, None, :]
        self.k = np.einsum("bsd,dnh->bnsh", self.xk, self.wk) + self.bk[None, :, None, :]
        self.v = np.einsum("bsd,dnh->bnsh", self.xv, self.wv) + self.bv[None, :, None, :]
        s = np.einsum("bnth,bnsh->bnts", self.q, self.k) * self.scale
        t, steps = s.shape[-2:]
        keep = np.ones((1, 1, t, steps), bool)
        if "attention_mask" in by:
            mask = by["attention_mask"] != 0
            keep = keep & (mask[:, None] if mask.ndim == 3 else mask)
        if use_causal_mask:
            keep = keep & (np.arange(t)[:, None] >= np.arange(steps)[None, :])
        self.keep = keep
        if self.bug == "mask_after_softmax":  # softmax over every position, the masked ones zeroed afterwards
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            self.p_full = e / e.sum(axis=-1, keepdims=True)
            self.p = self.p_full * keep
        else:
            s = np.where(keep, s, -np.inf)
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            self.p = e / e.sum(axis=-1, keepdims=True)
        self.c = np.einsum("bnts,bnsh->bnth", self.p, self.v)
        return np.einsum("bnth,nhd->btd", self.c, self.wo) + self.bo

    def backward(self, dy):
        self.dwo = np.einsum("bnth,btd->nhd", self.c, dy)
        self.dbo = dy.sum(axis=(0, 1))
        dc = np.einsum("btd,nhd->bnth", dy, self.wo)
        dp = np.einsum("bnth,bnsh->bnts", dc, self.v)
        dv = np.einsum("bnts,bnth->bnsh", self.p, dc)
        if self.bug == "mask_after_softmax":  # through the product with keep, then the unmasked softmax
            dp = dp * self.keep
            ds = self.p_full * (dp - (self.p_full * dp).sum(axis=-1, keepdims=True))
        elif self.bug == "rowsum_dropped":
            ds = self.p * dp
        else:
            ds = self.p * (dp - (self.p * dp).sum(axis=-1, keepdims=True))
        ds = ds * self.scale
        dq = np.einsum("bnts,bnsh->bnth", ds, self.k)
        dk = np.einsum("bnts,bnth->bnsh", ds, self.q)
        self.dwq, self.dbq, dxq = self._back(self.xq, self.wq, dq)
        self.dwk, self.dbk, dxk = self._back(self.xk, self.wk, dk)
        self.dwv, self.dbv, dxv = self._back(self.xv, self.wv, dv)
        if "key" not in self.roles:
            dxv = dxv + dxk
        by = {"query": dxq, "value": dxv, "key": dxk}
        return [by[r] if r in by else np.zeros_like(x) for r, x in zip(self.roles, self.xs)]

    @staticmethod
    def _back(x, w, dh):
        return np.einsum("btd,bnth->dnh", x, dh), dh.sum(axis=(0, 2)), np.einsum("bnth,dnh->btd", dh, w)


def einsum_attention():
    """The factory the command line names (tests/test_check_layer_attention.py:einsum_attention)."""
    return EinsumAttention(2, 3)


def keras_attention():
    return keras.layers.MultiHeadAttention(2, 3)


def no_scale_attention():
    return EinsumAttention(2, 3, bug="no_scale")


def names(report, failed=False):
    return [row.name for row in (report.failures if failed else report.rows)]
