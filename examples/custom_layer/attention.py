"""A user's own multi-head attention, written from scratch with one einsum per step (no loop over heads, samples or
steps), in keras.layers.MultiHeadAttention's weight layouts. N heads of size H, query (B, T, Dq), value (B, S, Dv),
key (B, S, Dk) (the value unless given), an optional attention mask (B, T, S) or (B, N, T, S), nonzero = keep:

    forward:   Q = einsum(btd,dnh->bnth)(Xq, Wq) + bq        K, V the same way from Xk, Xv     (B, N, T|S, H)
               S = einsum(bnth,bnsh->bnts)(Q, K) / sqrt(H)   masked (and, causal, j > i) positions -> -inf
               P = softmax over s                            C = einsum(bnts,bnsh->bnth)(P, V)
               Y = einsum(bnth,nhd->btd)(C, Wo) + bo                                            (B, T, Dq)
    backward:  dC = dY Wo^T,  dWo = C^T dY,  dbo = sum dY,  dP = dC V^T,  dV = P^T dC
               dS = P * (dP - rowsum(P * dP))                the row softmax's vector-Jacobian product
               dQ = dS K / sqrt(H),  dK = dS^T Q / sqrt(H);  per projection dW = X^T dQ, db = sum dQ, dX = dQ W^T

The layer receives its call's options as from_scratch.attention.MultiHeadAttention does: `build(input_shapes, dtype,
rng, roles=..., ...)` and `forward(xs, training, roles=..., use_causal_mask=...)`, xs in the order of `roles`; its
backward returns one gradient per input (zeros for the mask). Every row must keep one position (this layer's
softmax of a fully masked row is NaN; Keras's is uniform or zero, depending on its path).

The scale 1/sqrt(H) is computed in float64 here; Keras rounds it to float32 (compare.check_layer finds which of the
two a layer uses). `UnscaledAttention` forgets the scale, a classic slip. The factories at the end are what the
command line names: `examples/custom_layer/attention.py:einsum_attention`.
"""

from __future__ import annotations

import math

import numpy as np

from from_scratch import Layer


class EinsumAttention(Layer):
    """Multi-head attention as above; `scale` replaces 1/sqrt(key_dim) when given."""

    several_inputs = True
    weight_names = tuple(f"{b}/{w}" for b in ("query", "key", "value", "attention_output") for w in ("kernel", "bias"))

    def __init__(self, num_heads: int, key_dim: int, scale: float | None = None) -> None:
        self.num_heads, self.key_dim, self.given_scale = num_heads, key_dim, scale

    def build(
        self,
        input_shapes: list[tuple[int, ...]],
        dtype: np.dtype,
        rng: np.random.Generator,
        roles: tuple[str, ...] = ("query", "value"),
        **options: bool,
    ) -> tuple[int, ...]:
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
    def params(self) -> list[np.ndarray]:
        return [self.wq, self.bq, self.wk, self.bk, self.wv, self.bv, self.wo, self.bo]

    @property
    def grads(self) -> list[np.ndarray]:
        return [self.dwq, self.dbq, self.dwk, self.dbk, self.dwv, self.dbv, self.dwo, self.dbo]

    def scale(self) -> float:
        return self.given_scale or 1.0 / math.sqrt(self.key_dim)

    def softmax(self, s: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """P over the kept positions of each row of S (B, N, T, S)."""
        s = np.where(keep, s, -np.inf)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def softmax_backward(self, dp: np.ndarray) -> np.ndarray:
        """dS = P (dP - rowsum(P dP)): the softmax's Jacobian diag(p) - p p^T applied to each row of dP."""
        return self.p * (dp - (self.p * dp).sum(axis=-1, keepdims=True))

    def forward(
        self,
        xs: list[np.ndarray],
        training: bool = False,
        roles: tuple[str, ...] = ("query", "value"),
        use_causal_mask: bool = False,
        **options: bool,
    ) -> np.ndarray:
        self.roles, self.xs = roles, xs
        by = dict(zip(roles, xs))
        self.xq, self.xv = by["query"], by["value"]
        self.xk = by.get("key", self.xv)
        self.q = np.einsum("btd,dnh->bnth", self.xq, self.wq) + self.bq[None, :, None, :]
        self.k = np.einsum("bsd,dnh->bnsh", self.xk, self.wk) + self.bk[None, :, None, :]
        self.v = np.einsum("bsd,dnh->bnsh", self.xv, self.wv) + self.bv[None, :, None, :]
        s = np.einsum("bnth,bnsh->bnts", self.q, self.k) * self.scale()
        t, steps = s.shape[-2:]
        keep = np.ones((1, 1, t, steps), bool)
        if "attention_mask" in by:
            mask = by["attention_mask"] != 0
            keep = keep & (mask[:, None] if mask.ndim == 3 else mask)
        if use_causal_mask:
            keep = keep & (np.arange(t)[:, None] >= np.arange(steps)[None, :])
        self.keep = keep
        self.p = self.softmax(s, keep)
        self.c = np.einsum("bnts,bnsh->bnth", self.p, self.v)
        return np.einsum("bnth,nhd->btd", self.c, self.wo) + self.bo

    def backward(self, dy: np.ndarray) -> list[np.ndarray]:
        self.dwo = np.einsum("bnth,btd->nhd", self.c, dy)
        self.dbo = dy.sum(axis=(0, 1))
        dc = np.einsum("btd,nhd->bnth", dy, self.wo)
        dp = np.einsum("bnth,bnsh->bnts", dc, self.v)
        dv = np.einsum("bnts,bnth->bnsh", self.p, dc)
        ds = self.softmax_backward(dp) * self.scale()
        dq = np.einsum("bnts,bnsh->bnth", ds, self.k)
        dk = np.einsum("bnts,bnth->bnsh", ds, self.q)
        self.dwq, self.dbq, dxq = _project_back(self.xq, self.wq, dq)
        self.dwk, self.dbk, dxk = _project_back(self.xk, self.wk, dk)
        self.dwv, self.dbv, dxv = _project_back(self.xv, self.wv, dv)
        if "key" not in self.roles:  # the value served as the key too
            dxv = dxv + dxk
        by = {"query": dxq, "value": dxv, "key": dxk}
        return [by[r] if r in by else np.zeros_like(x) for r, x in zip(self.roles, self.xs)]


def _project_back(x: np.ndarray, w: np.ndarray, dh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Through H = X W + b per head: dh (B, N, T, H) -> (dW (D, N, H), db (N, H), dX (B, T, D))."""
    return np.einsum("btd,bnth->dnh", x, dh), dh.sum(axis=(0, 2)), np.einsum("bnth,dnh->btd", dh, w)


class UnscaledAttention(EinsumAttention):
    """The same layer without the 1/sqrt(H) scaling of the scores (forward and backward agree with each other)."""

    def scale(self) -> float:
        return 1.0


def einsum_attention() -> EinsumAttention:
    return EinsumAttention(num_heads=2, key_dim=3)


def unscaled_attention() -> UnscaledAttention:
    return UnscaledAttention(num_heads=2, key_dim=3)


def keras_attention() -> object:
    import keras

    return keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
