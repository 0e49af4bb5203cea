"""Multi-head attention in matrix form, as keras.layers.MultiHeadAttention computes it (Keras 3.15).

One head h, for a query sequence X_q (T, D_q) and a value sequence X_v (S, D_v) (and a key sequence X_k, the value
unless given):

    Q = X_q Wq_h + bq_h   (T, H)        K = X_k Wk_h + bk_h   (S, H)        V = X_v Wv_h + bv_h   (S, Hv)
    S = Q K^T / sqrt(H)   (T, S)        P = softmax over each row of S, masked positions excluded   (T, S)
    C = P V               (T, Hv)

and the layer's output is Y = sum_h C_h Wo_h + bo (T, D_out): the heads' contexts side by side, (T, N*Hv), times
the output kernel. In matrix form every sample and every head is one batched product: arrays are kept heads-first,
Q (B, N, T, H), and `@` multiplies the last two axes of every (batch, head) pair at once; nothing loops over heads,
samples or steps.

Backward, from dY (B, T, D_out), each step a matrix product or the softmax's vector-Jacobian product:

    dC = dY Wo^T (split per head)   dWo = C^T dY         dbo = sum over B, T of dY
    dP = dC V^T                     dV = P^T dC
    dS = P * (dP - rowsum(P * dP))  (the row softmax's VJP; 0 at masked positions)
    dQ = dS K / sqrt(H)             dK = dS^T Q / sqrt(H)
    dW_q = X_q^T dQ, db_q = sum dQ, dX_q = dQ Wq^T   (and the same for key and value)

Keras's quirks, kept (docs/derivations.md section 24):
- Two computation paths. With dropout 0 and the scores not asked for, Keras calls ops.dot_product_attention
  ("fused"): S = (Q K^T) * scale, masked positions set to `FUSED_FILL`, and a row whose every position is masked
  becomes uniform. Otherwise ("explicit") the query is scaled first, S = (Q * scale) K^T, the Softmax layer sets
  masked positions to `SOFTMAX_LAYER_FILL` and zeroes them after the softmax, so a fully masked row is all zeros.
- scale = 1/sqrt(key_dim) is a Python float that TensorFlow turns into a float32 constant before casting it to the
  dtype: in float64 too the scale is 1/sqrt(key_dim) ROUNDED TO FLOAT32 (`attention_scale`), a relative change of up
  to 3e-8 in every score that float64 parity would otherwise show.
- The attention mask keeps a position where it is nonzero; the causal mask keeps (i, j) where i >= j, also for
  cross-attention of different lengths; both combine with AND.
- Dropout acts on the probabilities P (explicit path only, training only).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from from_scratch.arch import LayerSpec, attention_buffer
from from_scratch.errors import BadInputError
from from_scratch.graph_arch import MERGE_KINDS, SELF_CALLS, SEVERAL_FOOTPRINTS
from from_scratch.layers import LAYERS, Layer, Shape

Array = np.ndarray

#: The value TensorFlow's dot_product_attention puts at masked logits: -0.7 times (about) float32's largest number.
FUSED_FILL = 3.38953e38 * -0.7
#: The value keras.layers.Softmax puts at masked scores (float32 and float64 alike).
SOFTMAX_LAYER_FILL = -1e9
#: The tensors one call can be handed, in Keras's argument order.
ROLES = ("query", "value", "key", "attention_mask")


def attention_scale(key_dim: int, dtype: np.dtype) -> Any:
    """Keras's scale of the scores: 1/sqrt(key_dim) rounded to float32 (TensorFlow reads the Python float as a
    float32 constant), then cast to `dtype`."""
    return np.dtype(dtype).type(np.float32(1.0 / math.sqrt(float(key_dim))))


def bias_add_axis(y_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int | None:
    """The axis of y along which Keras 3.15 adds a bias b where that differs from broadcasting, else None.

    EinsumDense adds its bias with keras.ops.add, whose TensorFlow version takes a b that squeezes to one axis of
    length n > 1 for tf.nn.bias_add when n is y's axis 1 or its last axis, and adds it along that axis (the last
    if both). A projection with one unit per head (key_dim or value_dim 1, bias (N, 1)) whose number of heads N
    equals the sequence length T is thus added along the steps, y[b, t, n] + bias[t], not the heads: a defect of
    Keras (its other backends broadcast) that this layer reproduces, since Keras's numbers are the specification.
    tests/test_attention_parity.py pins it against keras.layers.EinsumDense."""
    wide = [k for k, d in enumerate(b_shape) if d > 1]
    if len(wide) != 1 or len(y_shape) < 2 or b_shape[wide[0]] not in (y_shape[1], y_shape[-1]):
        return None
    axis = len(y_shape) - 1 if y_shape[-1] == b_shape[wide[0]] else 1
    return None if len(y_shape) - len(b_shape) + wide[0] == axis else axis


def add_bias(y: Array, b: Array) -> Array:
    """y + b as Keras adds an EinsumDense bias (`bias_add_axis`): broadcast, or along the axis it misreads."""
    axis = bias_add_axis(y.shape, b.shape)
    if axis is None:
        return y + b
    along = [1] * y.ndim
    along[axis] = y.shape[axis]
    return y + b.reshape(along)


def bias_grad(dy: Array, b_shape: tuple[int, ...]) -> Array:
    """dL/db for y = add_bias(x, b): dy summed over every axis b was broadcast along."""
    axis = bias_add_axis(dy.shape, b_shape)
    if axis is None:
        lead = dy.ndim - len(b_shape)
        return dy.sum(axis=tuple(range(lead))).reshape(b_shape)
    return dy.sum(axis=tuple(k for k in range(dy.ndim) if k != axis)).reshape(b_shape)


def split_heads(x: Array, num_heads: int) -> Array:
    """(B, T, N*H) -> (B, N, T, H): the projection's columns, head by head, as Keras's (D, N, H) kernel lays them."""
    b, t, width = x.shape
    return x.reshape(b, t, num_heads, width // num_heads).transpose(0, 2, 1, 3)


def merge_heads(c: Array) -> Array:
    """(B, N, T, H) -> (B, T, N*H): the heads' contexts side by side, head 0 first (the inverse of split_heads)."""
    b, n, t, h = c.shape
    return c.transpose(0, 2, 1, 3).reshape(b, t, n * h)


def causal_mask(t: int, s: int) -> Array:
    """keep (T, S), True where i >= j: query step i sees key steps 0..i (Keras's rule, also for T != S)."""
    return np.arange(t)[:, None] >= np.arange(s)[None, :]


def attention_softmax(scores: Array, keep: Array | None, fused: bool) -> Array:
    """P = softmax over the last axis of `scores` (B, N, T, S) with the positions where `keep` (broadcast to it)
    is False excluded, as Keras's two paths compute it (module docstring): fused, masked scores set to FUSED_FILL
    (a fully masked row uniform); explicit, set to SOFTMAX_LAYER_FILL and P zeroed there (a fully masked row 0)."""
    if keep is not None:
        fill = scores.dtype.type(FUSED_FILL if fused else SOFTMAX_LAYER_FILL)
        scores = np.where(keep, scores, fill)
    p = scores - scores.max(axis=-1, keepdims=True)
    np.exp(p, out=p)  # in place on the shifted scores, then the quotients too: the same values, no more arrays
    p /= p.sum(axis=-1, keepdims=True)
    if keep is not None and not fused:
        p = np.where(keep, p, scores.dtype.type(0))
    return p


def attention_softmax_backward(p: Array, dp: Array, keep: Array | None) -> Array:
    """dS = (dP - rowsum(dP * P)) * P, the row softmax's vector-Jacobian product (its Jacobian diag(p) - p p^T is
    never formed), 0 where `keep` is False (the mask's `where` passes no gradient). P, dP (B, N, T, S) -> dS.
    On the explicit path P is already 0 at masked positions, so dP there never reaches dS."""
    ds = dp * p
    np.subtract(dp, ds.sum(axis=-1, keepdims=True), out=ds)  # in place on a temporary: the same values, no copies
    ds *= p
    return ds if keep is None else np.where(keep, ds, p.dtype.type(0))


def _positive(owner: str, what: str, value: Any, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise BadInputError(f"{owner}: {what} must be a positive integer, got {value!r}")
    return int(value)


def _output_shape(value: Any, owner: str) -> tuple[int, ...] | None:
    """Keras's output_shape: None (the query's width), an int, or a tuple of positive ints."""
    if value is None:
        return None
    items = (value,) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if not isinstance(items, (tuple, list)) or not items:
        raise BadInputError(f"{owner}: output_shape must be None, a positive integer or a tuple of them, got {value!r}")
    return tuple(_positive(owner, "each output_shape entry", v) for v in items)


def _roles(roles: Any, count: int, owner: str) -> tuple[str, ...]:
    """The role of each of `count` tensors: given, or query, value[, key] by position."""
    if roles is None:
        if count not in (2, 3):
            raise BadInputError(f"{owner}: called on {count} tensors; give query and value (and key), or roles=")
        return ROLES[:count]
    roles = tuple(roles)
    if len(roles) != count or len(set(roles)) != count or not set(roles) <= set(ROLES):
        raise BadInputError(f"{owner}: roles {roles!r} do not name each of the {count} tensors once from {ROLES}")
    if "query" not in roles or "value" not in roles:
        raise BadInputError(f"{owner}: a call needs a query and a value, got the roles {roles!r}")
    return roles


def attention_output_shape(options: dict, shapes: list[Shape], where: str) -> Shape:
    """The output shape of a call on inputs of `shapes` (without the batch axis) in the call's `roles`: (T, *out),
    out = output_shape or the query's width. Query, value and key must be sequences (T, D); value and key of one
    length; a mask broadcastable to (heads, T, S). Anything else is refused, naming `where` and the shapes."""
    by = dict(zip(_roles(options.get("roles"), len(shapes), where), [tuple(s) for s in shapes]))
    for role in ("query", "value", "key"):
        if role in by and len(by[role]) != 2:
            raise BadInputError(f"{where}: the {role} must be a sequence (steps, features), got shape {by[role]}")
    t, s = by["query"][0], by["value"][0]
    if "key" in by and by["key"][0] != s:
        raise BadInputError(
            f"{where}: value and key must have the same length, got value {by['value']} and key {by['key']}"
        )
    heads = options.get("num_heads")
    if "attention_mask" in by:
        mask = by["attention_mask"]
        full = (heads, t, s)[3 - len(mask) :] if len(mask) in (2, 3) else None
        if full is None or any(m not in (1, f) for m, f in zip(mask, full)):
            raise BadInputError(
                f"{where}: attention_mask of shape {mask} (without the batch axis) does not broadcast to the scores' "
                f"(query steps, value steps) = {(t, s)} (or (heads, query steps, value steps) = {(heads, t, s)}); "
                "give (T, S), (1, S), (T, 1) or (heads, T, S)"
            )
    out = options.get("output_shape")
    return (t, *(_output_shape(out, where) or (by["query"][1],)))


class MultiHeadAttention(Layer):
    """keras.layers.MultiHeadAttention: query (B, T, D_q), value (B, S, D_v), key (B, S, D_k) (the value unless
    given), an optional attention_mask broadcastable to (B, N, T, S) -> (B, T, *out), out = output_shape or (D_q,).

    Parameters in Keras's order and layouts (N heads, H = key_dim, Hv = value_dim, key_dim by default):
    query/kernel (D_q, N, H), query/bias (N, H), key/kernel (D_k, N, H), key/bias (N, H), value/kernel (D_v, N, Hv),
    value/bias (N, Hv), attention_output/kernel (N, Hv, *out), attention_output/bias (out); no biases with
    use_bias=False.

    Called on symbolic tensors as Keras calls it: `mha(query, value, key=None, attention_mask=None,
    use_causal_mask=False, return_attention_scores=False)`; on arrays through `forward(xs, training, roles=...,
    use_causal_mask=..., return_attention_scores=...)`, xs in the order of `roles` (default query, value[, key]).
    The math and Keras's two paths are in the module docstring.
    """

    kind = "multi_head_attention"
    several_inputs = True
    input_grad_optional = True

    #: The module's pieces the passes call, each replaceable on its own in a subclass or an instance (the zoo's
    #: planted bugs in compare/zoo_attention.py replace exactly one).
    scale_of = staticmethod(attention_scale)
    split = staticmethod(split_heads)
    merge = staticmethod(merge_heads)
    causal = staticmethod(causal_mask)
    softmax = staticmethod(attention_softmax)
    softmax_backward = staticmethod(attention_softmax_backward)

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: int | tuple[int, ...] | None = None,
        name: str | None = None,
    ) -> None:
        owner = f"MultiHeadAttention{'' if name is None else f' {name!r}'}"
        self.num_heads = _positive(owner, "num_heads", num_heads)
        self.key_dim = _positive(owner, "key_dim", key_dim)
        self.value_dim = _positive(owner, "value_dim", value_dim, optional=True) or self.key_dim
        self._value_dim_given = value_dim
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise BadInputError(f"{owner}: dropout must be a number in [0, 1), got {dropout!r}")
        if not 0 <= float(dropout) < 1:
            raise BadInputError(f"{owner}: dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise BadInputError(f"{owner}: use_bias must be True or False, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        self.out_shape = _output_shape(output_shape, owner)
        self.name = name or self.kind
        self.fixed_mask: Array | None = None
        self.built = False

    # ----- the symbolic call -------------------------------------------------------------------------------------
    def __call__(  # type: ignore[override]
        self,
        query: Any,
        value: Any = None,
        key: Any = None,
        attention_mask: Any = None,
        use_causal_mask: bool = False,
        return_attention_scores: bool = False,
        training: Any = None,
    ) -> Any:
        """Keras's call on symbolic tensors (from_scratch.graph.Input or layer outputs): the output tensor, or
        (output, scores) with return_attention_scores=True. The scores are compared as their own row (the node's
        record P); they cannot feed another layer here. `training` is the model's, as in a functional model."""
        from from_scratch.nodes import Tensor, call_layer

        if value is None and isinstance(query, (list, tuple)) and len(query) in (2, 3):
            query, value, key = (*query, None)[:3]  # the several-input protocol's list: query, value[, key]
        if value is None:
            raise BadInputError(f"layer {self.name!r}: MultiHeadAttention is called on a query and a value (and key)")
        roles, tensors = [], []
        for role, t in zip(ROLES, (query, value, key, attention_mask)):
            if t is not None:
                roles.append(role)
                tensors.append(t)
        for flag, v in (("use_causal_mask", use_causal_mask), ("return_attention_scores", return_attention_scores)):
            if not isinstance(v, (bool, np.bool_)):
                raise BadInputError(f"layer {self.name!r}: {flag} must be True or False, got {v!r}")
        options: dict[str, Any] = {"roles": tuple(roles)}
        if use_causal_mask:
            options["use_causal_mask"] = True
        if return_attention_scores:
            options["return_attention_scores"] = True
        out = call_layer(self, tensors, options)
        if not return_attention_scores:
            return out
        scores = Tensor(out.node)
        scores.scores_of = out.node  # type: ignore[attr-defined]
        return out, scores

    def self_call(self, x: Any) -> Any:
        """Self-attention on one symbolic tensor, `mha(x, x)`: how a chain (a Sequential, the `mhaNxK` token)
        calls this layer."""
        return self(x, x)

    # ----- the description ---------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self._value_dim_given,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": self.out_shape,
        }

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> MultiHeadAttention:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", self.options())

    @property
    def weight_names(self) -> tuple[str, ...]:  # type: ignore[override]
        blocks = ("query", "key", "value", "attention_output")
        if not self.use_bias:
            return tuple(f"{b}/kernel" for b in blocks)
        return tuple(f"{b}/{w}" for b in blocks for w in ("kernel", "bias"))

    # ----- building ----------------------------------------------------------------------------------------------
    def build(
        self,
        input_shapes: list[Shape],
        dtype: np.dtype,
        rng: np.random.Generator,
        roles: tuple[str, ...] | None = None,
        **_: Any,
    ) -> Shape:
        """Kernels drawn as Keras's glorot_uniform draws an EinsumDense kernel (fan_in = D N, fan_out = H D for a
        (D, N, H) kernel: the leading axis counts as a receptive field), biases zero."""
        where = f"layer {self.name!r}"
        out = attention_output_shape({**self.options(), "roles": roles}, list(input_shapes), where)
        by = dict(zip(_roles(roles, len(input_shapes), where), [tuple(s) for s in input_shapes]))
        self.dtype = np.dtype(dtype)
        self.rng = rng
        n, h, hv = self.num_heads, self.key_dim, self.value_dim
        d_q, d_v = by["query"][1], by["value"][1]
        d_k = by["key"][1] if "key" in by else d_v
        self._t, self._s = by["query"][0], by["value"][0]
        width = out[1:]

        def kernel(shape: tuple[int, ...]) -> Array:
            field = math.prod(shape[:-2])
            limit = math.sqrt(6.0 / (shape[-2] * field + shape[-1] * field))
            return rng.uniform(-limit, limit, size=shape).astype(self.dtype)

        self.Wq, self.Wk, self.Wv = kernel((d_q, n, h)), kernel((d_k, n, h)), kernel((d_v, n, hv))
        self.Wo = kernel((n, hv, *width))
        zeros = [np.zeros(s, self.dtype) for s in ((n, h), (n, h), (n, hv), width)]
        self.bq, self.bk, self.bv, self.bo = zeros
        self.built = True
        return out

    @property
    def params(self) -> list[Array]:
        kernels = [self.Wq, self.Wk, self.Wv, self.Wo]
        if not self.use_bias:
            return kernels
        return [a for pair in zip(kernels, [self.bq, self.bk, self.bv, self.bo]) for a in pair]

    @property
    def grads(self) -> list[Array]:
        kernels = [self.dWq, self.dWk, self.dWv, self.dWo]
        if not self.use_bias:
            return kernels
        return [a for pair in zip(kernels, [self.dbq, self.dbk, self.dbv, self.dbo]) for a in pair]

    # ----- dropout on the probabilities --------------------------------------------------------------------------
    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        """False with dropout: a training pass then drops probabilities at random (draw_mask / fix_mask)."""
        return self.dropout == 0.0

    def dropout_mask_shape(self, n: int) -> tuple[int, ...]:
        """The shape of the probabilities dropout acts on, (B, N, T, S), for a batch of n (after a build)."""
        return (n, self.num_heads, self._t, self._s)

    def draw_mask(self, shape: tuple[int, ...]) -> Array:
        """A keep-mask over the probabilities: 1 with probability 1 - dropout."""
        return (self.rng.uniform(size=shape) >= self.dropout).astype(self.dtype)

    def fix_mask(self, mask: Array | None) -> None:
        """Use `mask` (B, N, T, S) of 0/1 in every training pass (None: draw a fresh one each pass)."""
        self.fixed_mask = None if mask is None else np.asarray(mask).astype(self.dtype)

    # ----- forward -----------------------------------------------------------------------------------------------
    def _project(self, x: Array, w: Array, b: Array) -> Array:
        """(B, T, D) @ (D, N, H) + (N, H) -> (B, N, T, H): one matrix product for every head."""
        d = w.shape[0]
        y = (x.reshape(-1, d) @ w.reshape(d, -1)).reshape(x.shape[0], x.shape[1], *w.shape[1:])  # (B, T, N, H)
        if self.use_bias:
            y = add_bias(y, b)
        return self.split(y.reshape(x.shape[0], x.shape[1], -1), w.shape[1])

    def _check_mask(self, mask: Any, b: int, t: int, s: int) -> Array:
        """The attention mask as given: real numbers or booleans (nonzero keeps), finite, of a shape broadcastable
        to the scores (B, N, T, S): (B, T, S), (B, 1, S), (B, T, 1), (B, N, T, S) or (T, S) (1 for any of them)."""
        mask = np.asarray(mask)
        where = f"layer {self.name!r}: attention_mask"
        if mask.dtype.kind not in "biuf":
            raise BadInputError(f"{where} must hold booleans or real numbers (nonzero keeps), got dtype {mask.dtype}")
        if mask.dtype.kind == "f" and not np.isfinite(mask).all():
            raise BadInputError(f"{where} holds NaN or infinite values; give 0/1 (or booleans)")
        full = {2: (t, s), 3: (b, t, s), 4: (b, self.num_heads, t, s)}.get(mask.ndim)
        if full is None or any(m not in (1, f) for m, f in zip(mask.shape, full)):
            raise BadInputError(
                f"{where} of shape {mask.shape} does not broadcast to the scores (batch, heads, query steps, value "
                f"steps) = {(b, self.num_heads, t, s)}; give (B, T, S), (B, 1, S), (B, T, 1) or (B, heads, T, S)"
            )
        return mask

    def _keep(self, mask: Array | None, t: int, s: int, causal: bool) -> Array | None:
        """The positions kept, broadcastable to (B, N, T, S): the attention mask's nonzero entries AND the causal
        rule, or None when nothing is masked."""
        keep = None
        if mask is not None:
            keep = mask != 0
            keep = keep[:, None] if keep.ndim == 3 else keep  # (B, T, S) -> (B, 1, T, S)
        if causal:
            c = self.causal(t, s)[None, None]
            keep = c if keep is None else keep & c
        return keep

    def forward(
        self,
        xs: list[Array],
        training: bool = False,
        roles: tuple[str, ...] | None = None,
        use_causal_mask: bool = False,
        return_attention_scores: bool = False,
    ) -> Array:
        """Y (B, T, *out) from the tensors `xs` in the order of `roles`. return_attention_scores selects Keras's
        explicit path, as it does in Keras; the scores Keras would return, P (B, N, T, S) before dropout, are
        `self.P` (and the record's "P")."""
        if not self.built:
            raise BadInputError(f"layer {self.name!r} is not built: call it in a Model (or build it) first")
        if not isinstance(xs, (list, tuple)):
            raise BadInputError(f"layer {self.name!r}: forward takes a list of arrays (query, value[, key])")
        self.roles = _roles(roles, len(xs), f"layer {self.name!r}")
        by = dict(zip(self.roles, xs))
        xq, xv = by["query"], by["value"]
        xk = by.get("key", xv)
        self.xs, self.xq, self.xk, self.xv = list(xs), xq, xk, xv
        self.key_given = "key" in by
        mask = by.get("attention_mask")
        t, s = xq.shape[1], xv.shape[1]
        self._t, self._s = t, s
        if mask is not None:
            mask = self._check_mask(mask, xq.shape[0], t, s)
        self.fused = self.dropout == 0.0 and not return_attention_scores
        self.keep = self._keep(mask, t, s, bool(use_causal_mask))
        scale = self.scale = self.scale_of(self.key_dim, self.dtype)
        self.Q = self._project(xq, self.Wq, self.bq)  # (B, N, T, H)
        self.K = self._project(xk, self.Wk, self.bk)  # (B, N, S, H)
        self.V = self._project(xv, self.Wv, self.bv)  # (B, N, S, Hv)
        kt = self.K.transpose(0, 1, 3, 2)
        if self.fused:  # S = (Q K^T) * scale, scaled in place
            self.S = self.Q @ kt
            self.S *= scale  # (B, N, T, S)
        else:  # S = (Q * scale) K^T
            self.S = (self.Q * scale) @ kt
        self.P = self.softmax(self.S, self.keep, self.fused)
        self.dropping = training and self.dropout > 0
        if self.dropping:
            shape = self.P.shape
            self.mask = self.fixed_mask if self.fixed_mask is not None else self.draw_mask(shape)
            if self.mask.shape != shape:
                raise BadInputError(
                    f"layer {self.name!r}: fixed dropout mask has shape {self.mask.shape}, the probabilities {shape}"
                )
            self.keep_scale = self.dtype.type(1.0 / (1.0 - self.dropout))
            self.P_used = self.P * self.keep_scale * self.mask
        else:
            self.P_used = self.P
        self.C = self.P_used @ self.V  # (B, N, T, Hv)
        merged = self.merge(self.C)  # (B, T, N*Hv)
        wo = self.Wo.reshape(self.num_heads * self.value_dim, -1)
        y = (merged.reshape(-1, wo.shape[0]) @ wo).reshape(xq.shape[0], t, *self.Wo.shape[2:])  # (B, T, *out)
        if self.use_bias:
            y = add_bias(y, self.bo)
        self.merged = merged
        self.Y = y
        return self.Y

    # ----- backward ----------------------------------------------------------------------------------------------
    def _scratch(self, like: Array) -> Array:
        """A work array shaped and typed as `like` that the layer keeps from one backward pass to the next (it never
        leaves the layer): a fresh (B, N, T, S) array each step costs more than its arithmetic (4 MiB at the
        benchmark's float64 shapes, page faults included)."""
        buf = getattr(self, "_work", None)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self._work = np.empty_like(like)
        return buf

    def _project_back(self, x: Array, w: Array, dh: Array, input_grad: bool = True) -> tuple[Array, Array, Any]:
        """Through Y = X W + b (heads split): dh (B, N, T, H) -> (dW (D, N, H), db (N, H), dX (B, T, D)); dX is
        None without input_grad."""
        d = w.shape[0]
        rows = self.merge(dh).reshape(-1, w.shape[1] * w.shape[2])  # (B*T, N*H)
        dw = (x.reshape(-1, d).T @ rows).reshape(w.shape)
        db = bias_grad(rows.reshape(x.shape[0], x.shape[1], *w.shape[1:]), w.shape[1:]) if self.use_bias else None
        dx = (rows @ w.reshape(d, -1).T).reshape(x.shape) if input_grad else None
        return dw, db, dx

    def backward(self, dy: Array, input_grad: bool = True) -> list[Array] | None:
        """dL/d(each input) in the order the call was given them (zeros for the attention mask); fills grads. With
        input_grad=False (no input needs a gradient: a training step on the model's inputs) the three dX = dQ Wq^T,
        ... products are skipped and None is returned; the parameter gradients are the same bits."""
        if not hasattr(self, "P"):
            raise BadInputError(f"layer {self.name!r}: backward before any forward pass")
        b, t = dy.shape[:2]
        wo = self.Wo.reshape(self.num_heads * self.value_dim, -1)
        rows = dy.reshape(b * t, -1)  # (B*T, out)
        self.dWo = (self.merged.reshape(b * t, -1).T @ rows).reshape(self.Wo.shape)
        self.dbo = bias_grad(dy, self.bo.shape) if self.use_bias else None
        dmerged = (rows @ wo.T).reshape(b, t, -1)  # (B, T, N*Hv)
        self.dC = self.split(dmerged, self.num_heads)  # (B, N, T, Hv)
        self.dV_heads = self.P_used.transpose(0, 1, 3, 2) @ self.dC  # (B, N, S, Hv)
        dp_used = self.dC @ self.V.transpose(0, 1, 3, 2)  # (B, N, T, S)
        self.dP = dp_used * self.keep_scale * self.mask if self.dropping else dp_used
        self.dS = self.softmax_backward(self.P, self.dP, self.keep)
        if self.fused:  # S = (Q K^T) * scale
            ds = np.multiply(self.dS, self.scale, out=self._scratch(self.dS))
            self.dQ_heads = ds @ self.K
            self.dK_heads = ds.transpose(0, 1, 3, 2) @ self.Q
        else:  # S = (Q * scale) K^T
            self.dQ_heads = (self.dS @ self.K) * self.scale
            self.dK_heads = self.dS.transpose(0, 1, 3, 2) @ (self.Q * self.scale)
        self.dWq, self.dbq, dxq = self._project_back(self.xq, self.Wq, self.dQ_heads, input_grad)
        self.dWk, self.dbk, dxk = self._project_back(self.xk, self.Wk, self.dK_heads, input_grad)
        self.dWv, self.dbv, dxv = self._project_back(self.xv, self.Wv, self.dV_heads, input_grad)
        if not input_grad:
            self.role_grads = {}
            return None
        if not self.key_given:  # the value served as the key too: it receives both
            dxv += dxk  # dxv is the product just made: the same sums, in place
        by = {"query": dxq, "value": dxv, "key": dxk}
        self.role_grads = {role: by[role] for role in self.roles if role in by}
        out = []
        for role, x in zip(self.roles, self.xs):
            out.append(by[role] if role in by else np.zeros(x.shape, self.dtype))
        return out

    # ----- term magnitudes (compare/terms.py): the passes again on absolute values -----------------------------------
    def _abs_project(self, m_x: Array, w: Array, b: Array) -> Array:
        """M = M_X |W| + |b| per head: (B, T, D) -> (B, N, T, H)."""
        d = w.shape[0]
        y = (m_x.reshape(-1, d) @ np.abs(w.astype(np.float64)).reshape(d, -1)).reshape(*m_x.shape[:2], *w.shape[1:])
        if self.use_bias:
            y = add_bias(y, np.abs(b.astype(np.float64)))
        return split_heads(y.reshape(m_x.shape[0], m_x.shape[1], -1), w.shape[1])

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        """M_Q = M_xq |Wq| + |bq| (and K, V); M_S = M_Q M_K^T scale; M_P = P (M_S + rowsum(P M_S)) (the softmax's
        Jacobian on magnitudes; 0 where masked); M_C = M_P' M_V; M_Y = M_C |Wo| + |bo|. Float64, from the caches, with
        P recomputed by this module's softmax from the cached scores: magnitudes in [0, 1] even when the layer's own
        P is wrong (a P inflated by a bug must not inflate the measure it is judged by)."""
        by = dict(zip(self.roles, x_terms))
        f = np.float64
        m_q = self._abs_project(by["query"], self.Wq, self.bq)
        m_k = self._abs_project(by.get("key", by["value"]), self.Wk, self.bk)
        m_v = self._abs_project(by["value"], self.Wv, self.bv)
        scale = abs(float(self.scale))
        m_s = (m_q @ m_k.transpose(0, 1, 3, 2)) * scale
        p = self._p_terms = attention_softmax(self.S.astype(f), self.keep, self.fused)  # the module's own softmax
        m_p = p * (m_s + (p * m_s).sum(axis=-1, keepdims=True))
        if self.dropping:
            m_p = m_p * float(self.keep_scale) * self.mask
        m_c = m_p @ m_v
        wo = np.abs(self.Wo.astype(f)).reshape(self.num_heads * self.value_dim, -1)
        m_y = (merge_heads(m_c).reshape(-1, wo.shape[0]) @ wo).reshape(self.Y.shape)
        if self.use_bias:
            m_y = add_bias(m_y, np.abs(self.bo.astype(f)))
        self._m = {"Q": m_q, "K": m_k, "V": m_v, "x": by}
        return {"A": m_y, "Q": m_q, "K": m_k, "V": m_v, "S": m_s, "P": m_p, "C": m_c}

    def _abs_project_back(self, m_x: Array, w: Array, m_dh: Array) -> tuple[Array, Array, Array]:
        d = w.shape[0]
        rows = merge_heads(m_dh).reshape(-1, w.shape[1] * w.shape[2])
        dw = (m_x.reshape(-1, d).T @ rows).reshape(w.shape)
        db = bias_grad(rows.reshape(*m_x.shape[:2], *w.shape[1:]), w.shape[1:])
        dx = (rows @ np.abs(w.astype(np.float64)).reshape(d, -1).T).reshape(m_x.shape)
        return dw, db, dx

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        """The backward pass on magnitudes: |dC| = |dY| |Wo|^T, |dV| = P'^T |dC|, |dP| = |dC| |V|^T, |dS| = P (|dP| +
        rowsum(P |dP|)), |dQ| = |dS| |K| scale, |dK| = |dS|^T |Q| scale; each parameter's M_W = M_X^T |dH|."""
        f = np.float64
        forward = self.forward_terms(x_terms)
        by = self._m["x"]
        b, t = dA_terms.shape[:2]
        rows = dA_terms.reshape(b * t, -1)
        wo = np.abs(self.Wo.astype(f)).reshape(self.num_heads * self.value_dim, -1)
        m_dwo = (merge_heads(forward["C"]).reshape(b * t, -1).T @ rows).reshape(self.Wo.shape)
        m_dbo = bias_grad(dA_terms, self.bo.shape)
        m_dc = split_heads((rows @ wo.T).reshape(b, t, -1), self.num_heads)
        p = self._p_terms
        p_used = p * float(self.keep_scale) * self.mask if self.dropping else p
        m_dv = p_used.transpose(0, 1, 3, 2) @ m_dc
        m_dp = m_dc @ np.abs(self.V.astype(f)).transpose(0, 1, 3, 2)
        if self.dropping:
            m_dp = m_dp * float(self.keep_scale) * self.mask
        m_ds = p * (m_dp + (p * m_dp).sum(axis=-1, keepdims=True))
        scale = abs(float(self.scale))
        m_dq = (m_ds @ np.abs(self.K.astype(f))) * scale
        m_dk = (m_ds.transpose(0, 1, 3, 2) @ np.abs(self.Q.astype(f))) * scale
        dwq, dbq, dxq = self._abs_project_back(by["query"], self.Wq, m_dq)
        dwk, dbk, dxk = self._abs_project_back(by.get("key", by["value"]), self.Wk, m_dk)
        dwv, dbv, dxv = self._abs_project_back(by["value"], self.Wv, m_dv)
        if "key" not in by:
            dxv = dxv + dxk
        kernels, biases = [dwq, dwk, dwv, m_dwo], [dbq, dbk, dbv, m_dbo]
        params = kernels if not self.use_bias else [a for pair in zip(kernels, biases) for a in pair]
        grads = {"query": dxq, "value": dxv, "key": dxk}
        dx = [grads[r] if r in grads else np.zeros(np.shape(m)) for r, m in zip(self.roles, x_terms)]
        extra = {"dC": m_dc, "dP": m_dp, "dS": m_ds, "dV": m_dv, "dK": m_dk, "dQ": m_dq}
        extra.update({"d" + r: grads[r] for r in self.roles if r in grads})
        return params, dx, extra

    def record(self) -> dict[str, Array]:
        """Per head: Q, K, V, the scores S, the probabilities P, the contexts C, and their gradients; dL/d(each
        tensor the call was handed): dquery, dvalue (with the key's share when no key was given), dkey."""
        names = ("Q", "K", "V", "S", "P", "C")
        out = {k: getattr(self, k, None) for k in names}
        grads = {"dQ": "dQ_heads", "dK": "dK_heads", "dV": "dV_heads", "dS": "dS", "dP": "dP", "dC": "dC"}
        out.update({k: getattr(self, v, None) for k, v in grads.items()})
        grads_by_role = getattr(self, "role_grads", {})
        out.update({"d" + role: grads_by_role.get(role) for role in ("query", "value", "key")})
        return out


def _attention_shape(options: dict, shapes: list[Shape], where: str) -> Shape:
    return attention_output_shape(options, shapes, where)


def attention_footprint(options: dict, shapes: list[Shape], out: Shape) -> tuple[int, int]:
    """(values per sample beside the output, numbers in the weights) of a call on inputs of `shapes` in its roles."""
    by = dict(zip(_roles(options.get("roles"), len(shapes), "attention"), shapes))
    n, h = options["num_heads"], options["key_dim"]
    hv, bias = options.get("value_dim") or h, int(options.get("use_bias", True))
    d_q, d_v = by["query"][-1], by["value"][-1]
    d_k = by["key"][-1] if "key" in by else d_v
    width = math.prod(out[1:])
    weights = (d_q + bias) * n * h + (d_k + bias) * n * h + (d_v + bias) * n * hv + n * hv * width + bias * width
    return attention_buffer(options, by["query"][0], by["value"][0]), weights


#: The attention layers (parity cases in tests/test_attention_parity.py), registered in LAYERS as every layer is.
ATTENTION_LAYERS: dict[str, type[Layer]] = {MultiHeadAttention.kind: MultiHeadAttention}
MERGE_KINDS[MultiHeadAttention.kind] = _attention_shape
SEVERAL_FOOTPRINTS[MultiHeadAttention.kind] = attention_footprint
SELF_CALLS[MultiHeadAttention.kind] = (("roles", ("query", "value")),)  # a chain's `mhaNxK`: self-attention
LAYERS.update(ATTENTION_LAYERS)
