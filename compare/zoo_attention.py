"""The zoo's attention bugs: the classic mistakes of a hand-written multi-head attention, each planted in a scratch
MultiHeadAttention (a subclass that replaces one piece of from_scratch.attention, the scale, the masked softmax or
its backward, the causal mask, the merge of the heads, while its own forward or backward runs) on a small
self-attention graph, and compared with keras.layers.MultiHeadAttention. The diagnosis names the node, the head and
the block (query, key, value, scores S, probabilities P, context C, output) where the sides part.

    attention_unscaled          S = Q K^T, the 1/sqrt(key_dim) left out
    attention_softmax_query     P = softmax over the query axis (each column sums to 1), forward and backward alike
    attention_mask_after        P = softmax(S) + the mask's large negative adder: the mask added after the softmax
    attention_causal_diagonal   the causal mask keeps j < i where Keras keeps j <= i: the diagonal masked
    attention_heads_merged      the heads' contexts merged (T, Hv, N) where Keras lays them (T, N, Hv)
    attention_rowsum_dropped    dS = P * dP: the softmax Jacobian's row-sum term left out
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

import from_scratch.attention as attention
from compare.zoo_graph import _compare_graph
from compare.zoo_planting import _batch
from from_scratch.arch import LayerSpec
from from_scratch.graph import Model
from from_scratch.graph_arch import Call, GraphArchitecture

Array = np.ndarray

#: Every zoo graph's attention: 2 heads of key_dim 4 (so sqrt(key_dim) = 2), on sequences of 6 steps of 8 features.
HEADS, KEY_DIM, STEPS, FEATURES, CLASSES, BATCH = 2, 4, 6, 8, 3, 8


def attention_graph(
    use_causal_mask: bool = False, masked: bool = False, scores: bool = False, num_heads: int = HEADS
) -> GraphArchitecture:
    """Self-attention on x (STEPS, FEATURES), flattened, then a softmax Dense: with a causal mask, an attention-mask
    input m (STEPS, STEPS), or return_attention_scores=True (Keras's explicit path, the scores a row)."""
    spec = LayerSpec(
        "multi_head_attention",
        None,
        "linear",
        {
            "num_heads": num_heads,
            "key_dim": KEY_DIM,
            "value_dim": None,
            "dropout": 0.0,
            "use_bias": True,
            "output_shape": None,
        },
    )
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = (("x", (STEPS, FEATURES)),)
    roles: tuple[str, ...] = ("query", "value")
    args: tuple[str, ...] = ("x", "x")
    if masked:
        inputs += (("m", (STEPS, STEPS)),)
        roles += ("attention_mask",)
        args += ("m",)
    options: dict[str, Any] = {"roles": roles}
    if use_causal_mask:
        options["use_causal_mask"] = True
    if scores:
        options["return_attention_scores"] = True
    return GraphArchitecture(
        inputs,
        (("mha", spec), ("flatten", LayerSpec("flatten")), ("head", LayerSpec("dense", CLASSES, "softmax"))),
        (
            Call("mha", args, "", tuple(sorted(options.items()))),
            Call("flatten", ("mha",)),
            Call("head", ("flatten",)),
        ),
        ("head",),
    )


#: The zoo's attention graphs: plain self-attention (Keras's fused path), causal, and with a padding mask input on
#: the explicit path (the scores returned).
SELF_ATTENTION = attention_graph()
CAUSAL_ATTENTION = attention_graph(use_causal_mask=True)
MASKED_ATTENTION = attention_graph(masked=True, scores=True)


def attention_batch(arch: GraphArchitecture, seed: int) -> tuple[Any, Array]:
    """A seeded batch for `arch`: normal sequences, one-hot targets, and for a mask input 0/1 keeping about 70% of
    the positions (each query step keeps its first key step, so no row is masked whole)."""
    x, y = _batch(BATCH, STEPS * FEATURES, CLASSES, seed=seed)
    x = x.reshape(BATCH, STEPS, FEATURES)
    if len(arch.inputs) == 1:
        return x, y
    keep = (np.random.default_rng(seed + 1).uniform(size=(BATCH, STEPS, STEPS)) < 0.7).astype(np.float64)
    keep[:, :, 0] = 1.0
    return [x, keep], y


#: The layer's attribute for each of from_scratch.attention's pieces (MultiHeadAttention calls them through these).
PIECES = {
    "attention_scale": "scale_of",
    "split_heads": "split",
    "merge_heads": "merge",
    "causal_mask": "causal",
    "attention_softmax": "softmax",
    "attention_softmax_backward": "softmax_backward",
}


@contextlib.contextmanager
def _replaced(layer: attention.MultiHeadAttention, pieces: dict[str, Callable]) -> Iterator[None]:
    """`layer`'s pieces replaced by `pieces` (named as from_scratch.attention's functions) for the duration, on
    this layer alone (its own attributes, removed after)."""
    try:
        for name, piece in pieces.items():
            setattr(layer, PIECES[name], piece)
        yield
    finally:
        for name in pieces:
            vars(layer).pop(PIECES[name], None)


class PlantedAttention(attention.MultiHeadAttention):
    """A MultiHeadAttention whose forward runs with `forward_pieces` and whose backward runs with `backward_pieces`
    in place of its own (named as from_scratch.attention's functions); everything else is the layer's own code."""

    forward_pieces: ClassVar[dict[str, Callable]] = {}
    backward_pieces: ClassVar[dict[str, Callable]] = {}

    def forward(self, xs: list[Array], training: bool = False, **options: Any) -> Array:  # type: ignore[override]
        with _replaced(self, self.forward_pieces):
            return super().forward(xs, training, **options)

    def backward(self, dy: Array) -> list[Array]:
        with _replaced(self, self.backward_pieces):
            return super().backward(dy)


def _masked_scores(scores: Array, keep: Array | None, fused: bool) -> Array:
    """The scores with masked positions set to Keras's fill of the path (as attention_softmax does)."""
    if keep is None:
        return scores
    return np.where(keep, scores, scores.dtype.type(attention.FUSED_FILL if fused else attention.SOFTMAX_LAYER_FILL))


def _softmax(s: Array, axis: int) -> Array:
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class UnscaledAttention(PlantedAttention):
    """S = Q K^T: the scale 1/sqrt(key_dim) taken as 1 (forward and backward both use it)."""

    forward_pieces: ClassVar[dict[str, Callable]] = {"attention_scale": lambda key_dim, dtype: np.dtype(dtype).type(1)}


def _softmax_over_queries(scores: Array, keep: Array | None, fused: bool) -> Array:
    p = _softmax(_masked_scores(scores, keep, fused), axis=-2)  # each column (one key step) sums to 1
    return p if keep is None or fused else np.where(keep, p, p.dtype.type(0))


def _softmax_over_queries_backward(p: Array, dp: Array, keep: Array | None) -> Array:
    ds = (dp - (dp * p).sum(axis=-2, keepdims=True)) * p  # the column softmax's VJP: consistent with its forward
    return ds if keep is None else np.where(keep, ds, p.dtype.type(0))


class QueryAxisSoftmaxAttention(PlantedAttention):
    """P = softmax of S over the query axis (axis -2), its backward the same softmax's VJP."""

    forward_pieces: ClassVar[dict[str, Callable]] = {"attention_softmax": _softmax_over_queries}
    backward_pieces: ClassVar[dict[str, Callable]] = {"attention_softmax_backward": _softmax_over_queries_backward}


def _mask_after_softmax(scores: Array, keep: Array | None, fused: bool) -> Array:
    p = _softmax(scores, axis=-1)  # the softmax of every score, the masked ones included
    if keep is None:
        return p
    fill = scores.dtype.type(attention.FUSED_FILL if fused else attention.SOFTMAX_LAYER_FILL)
    return p + np.where(keep, scores.dtype.type(0), fill)  # the mask's adder, after the softmax


class MaskAfterSoftmaxAttention(PlantedAttention):
    """P = softmax(S) + the mask's large negative adder: the mask added to the probabilities, not to the scores."""

    forward_pieces: ClassVar[dict[str, Callable]] = {"attention_softmax": _mask_after_softmax}


def _causal_diagonal(t: int, s: int) -> Array:
    return np.arange(t)[:, None] > np.arange(s)[None, :]  # i > j: query step i no longer sees key step i


class CausalDiagonalAttention(PlantedAttention):
    """A causal mask off by one: keep (i, j) where i > j, the diagonal masked (query step 0 then sees nothing)."""

    forward_pieces: ClassVar[dict[str, Callable]] = {"causal_mask": _causal_diagonal}


def _merge_feature_major(c: Array) -> Array:
    b, n, t, h = c.shape
    return c.transpose(0, 2, 3, 1).reshape(b, t, h * n)  # (B, T, Hv, N): the N and Hv axes swapped


class HeadsMergedAttention(PlantedAttention):
    """The heads' contexts merged in (T, Hv, N) order in the forward pass (head 0's first feature, head 1's first
    feature, ...), where the output kernel (N, Hv, D) reads them head by head."""

    forward_pieces: ClassVar[dict[str, Callable]] = {"merge_heads": _merge_feature_major}


def _softmax_backward_without_rowsum(p: Array, dp: Array, keep: Array | None) -> Array:
    ds = p * dp  # diag(p) only: the - p p^T of the Jacobian left out
    return ds if keep is None else np.where(keep, ds, p.dtype.type(0))


class RowSumDroppedAttention(PlantedAttention):
    """dS = P * dP: the softmax's vector-Jacobian product without its row-sum term."""

    backward_pieces: ClassVar[dict[str, Callable]] = {"attention_softmax_backward": _softmax_backward_without_rowsum}


def _plant(planted: type) -> Callable[[Model], None]:
    """Turn the scratch model's attention layer into `planted` (the rest of the model untouched)."""

    def plant(m: Model) -> None:
        layer = next(layer for layer in m.layers if layer.kind == attention.MultiHeadAttention.kind)
        layer.__class__ = planted

    return plant


def _run(arch: GraphArchitecture, planted: type | None, seed: int, dtype: str) -> Any:
    x, y = attention_batch(arch, seed)
    return _compare_graph(arch, x, y, _plant(planted) if planted is not None else (lambda m: None), dtype)


def attention_unscaled(dtype: str = "float64") -> Any:
    return _run(SELF_ATTENTION, UnscaledAttention, 30, dtype)


def attention_softmax_query(dtype: str = "float64") -> Any:
    return _run(SELF_ATTENTION, QueryAxisSoftmaxAttention, 31, dtype)


def attention_mask_after(dtype: str = "float64") -> Any:
    return _run(MASKED_ATTENTION, MaskAfterSoftmaxAttention, 32, dtype)


def attention_causal_diagonal(dtype: str = "float64") -> Any:
    return _run(CAUSAL_ATTENTION, CausalDiagonalAttention, 33, dtype)


def attention_heads_merged(dtype: str = "float64") -> Any:
    return _run(SELF_ATTENTION, HeadsMergedAttention, 34, dtype)


def attention_rowsum_dropped(dtype: str = "float64") -> Any:
    return _run(SELF_ATTENTION, RowSumDroppedAttention, 35, dtype)


#: Each entry's graph and seed, to run it without its bug (tests/test_attention_zoo.py: the graph passes).
GRAPHS = {
    "attention_unscaled": (SELF_ATTENTION, 30),
    "attention_softmax_query": (SELF_ATTENTION, 31),
    "attention_mask_after": (MASKED_ATTENTION, 32),
    "attention_causal_diagonal": (CAUSAL_ATTENTION, 33),
    "attention_heads_merged": (SELF_ATTENTION, 34),
    "attention_rowsum_dropped": (SELF_ATTENTION, 35),
}


def unplanted(name: str, dtype: str = "float64") -> Any:
    """The comparison of entry `name`'s graph and batch without its bug."""
    arch, seed = GRAPHS[name]
    return _run(arch, None, seed, dtype)
