"""The Keras twin of from_scratch.attention.MultiHeadAttention: keras.layers.MultiHeadAttention itself, and, where
it has dropout, the same layer with its probability dropout fed a mask from outside (as FixedMaskDropout does for
keras.layers.Dropout): TensorFlow's Philox generator cannot be reproduced in NumPy, so the harness draws one mask
and hands it to both sides."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="backprop_parity")
class FixedMaskMultiHeadAttention(keras.layers.MultiHeadAttention):
    """keras.layers.MultiHeadAttention whose attention-probability dropout uses `mask` (B, N, T, S) instead of a
    random draw. Nothing else is changed: the projections, the scaling, the masked softmax and the two computation
    paths are Keras's own code."""

    def _build_attention(self, rank: int) -> None:
        from keras_impl.model import FixedMaskDropout  # model.py imports this module

        super()._build_attention(rank)
        self._dropout_layer = FixedMaskDropout(self._dropout, dtype=self.dtype_policy)
        self._dropout_layer.mask = getattr(self, "_pending_mask", None)

    @property
    def mask(self) -> Any:
        """The probability-dropout mask (B, N, T, S) of 0/1 (set before or after the layer is built)."""
        layer = getattr(self, "_dropout_layer", None)
        return layer.mask if layer is not None else getattr(self, "_pending_mask", None)

    @mask.setter
    def mask(self, value: Any) -> None:
        self._pending_mask = value
        if getattr(self, "_dropout_layer", None) is not None:
            self._dropout_layer.mask = value


def multi_head_attention(spec: Any, dtype: str) -> keras.layers.Layer:
    """keras.layers.MultiHeadAttention from the spec's options (FixedMaskMultiHeadAttention with dropout)."""
    o = spec.options
    cls = FixedMaskMultiHeadAttention if o.get("dropout", 0.0) > 0 else keras.layers.MultiHeadAttention
    return cls(
        num_heads=o["num_heads"],
        key_dim=o["key_dim"],
        value_dim=o.get("value_dim"),
        dropout=o.get("dropout", 0.0),
        use_bias=o.get("use_bias", True),
        output_shape=o.get("output_shape"),
        dtype=dtype,
    )


def call_attention(layer: keras.layers.Layer, args: list[Any], options: dict[str, Any]) -> Any:
    """The functional call `layer(query, value, key=..., attention_mask=..., use_causal_mask=...,
    return_attention_scores=...)` from the tensors in the order of the call's roles; the output tensor."""
    by = dict(zip(options["roles"], args))
    out = layer(
        by.pop("query"),
        by.pop("value"),
        **by,
        use_causal_mask=bool(options.get("use_causal_mask", False)),
        return_attention_scores=bool(options.get("return_attention_scores", False)),
    )
    return out[0] if options.get("return_attention_scores") else out


def _heads_first(t: Any) -> Any:
    """(B, T, N, H) -> (B, N, T, H), the scratch side's layout of per-head quantities."""
    return tf.transpose(t, (0, 2, 1, 3))


def attention_steps(
    layer: keras.layers.MultiHeadAttention,
    query: Any,
    value: Any,
    key: Any = None,
    attention_mask: Any = None,
    use_causal_mask: bool = False,
    return_attention_scores: bool = False,
    training: Any = True,
    watch: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """One call of `layer` by the operations of Keras 3.15's own `call` and `_compute_attention` (both paths), so
    that the per-head quantities can be watched. Returns (the output, quantities): "Q", "K", "V", "S", "P", "C" as
    Keras keeps them ((B, T, N, H); the trace turns them heads-first), and "query", "value" (and "key"): the tensors
    handed to the call, each through its own identity so that the tape gives each role's gradient. `watch(t)` is
    called on each quantity where it is made (the tape's watch). tests/test_attention_parity.py checks that this
    gives the layer's own output bit for bit."""
    from keras.src.backend.tensorflow.nn import _apply_masks

    watch = watch or (lambda t: None)
    handed = {"query": tf.identity(query), "value": tf.identity(value)}  # each role's own gradient is watched
    if key is not None:
        handed["key"] = tf.identity(key)
    for t in handed.values():
        watch(t)
    query, value = handed["query"], handed["value"]
    key = handed.get("key", value)
    causal_only = use_causal_mask and attention_mask is None
    mask = (
        None
        if causal_only
        else layer._compute_attention_mask(query, value, attention_mask=attention_mask, use_causal_mask=use_causal_mask)
    )
    q, k, v = layer._query_dense(query), layer._key_dense(key), layer._value_dense(value)
    for t in (q, k, v):
        watch(t)
    if not (layer._dropout > 0.0 or return_attention_scores):  # ops.dot_product_attention, TensorFlow's code
        logits = tf.einsum("BTNH,BSNH->BNTS", q, k, optimize="optimal")
        scores = tf.multiply(logits, tf.cast(layer._inverse_sqrt_key_dim, logits.dtype))
        watch(scores)
        if mask is not None:
            while len(mask.shape) < 4:
                mask = ops.expand_dims(mask, axis=-3)
            mask = ops.cast(mask, "bool")
        probs = tf.nn.softmax(_apply_masks(scores, mask, causal_only), axis=-1)
        watch(probs)
        context = tf.einsum("BNTS,BSNH->BTNH", probs, v, optimize="optimal")
    else:
        if use_causal_mask and causal_only:
            mask = layer._compute_causal_mask(q, v)
        scaled = ops.multiply(q, ops.cast(layer._inverse_sqrt_key_dim, q.dtype))
        scores = ops.einsum(layer._dot_product_equation, k, scaled)
        watch(scores)
        probs = layer._masked_softmax(scores, mask)
        watch(probs)
        dropped = layer._dropout_layer(probs, training=training) if layer._dropout > 0.0 else probs
        context = ops.einsum(layer._combine_equation, dropped, v)
    watch(context)
    out = layer._output_dense(context)
    quantities = {"Q": q, "K": k, "V": v, "S": scores, "P": probs, "C": context, **handed}
    return out, quantities


#: Per-head quantities of an attention call stored (B, T, N, H) by Keras, turned heads-first for the comparison.
KERAS_LAYOUT_TOKEN_FIRST = ("Q", "K", "V", "C")
