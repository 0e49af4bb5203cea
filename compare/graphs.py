"""The graph networks of the parity matrix (`compare --all`, tests/test_catalogue_parity.py): skip connections,
several inputs, a shared layer, several outputs with loss weights, and between them every merge layer
(from_scratch.graph_arch.MERGE_KINDS); and attention: a self-attention encoder block, cross-attention between
sequences of different lengths (query, value and key each its own input), causal self-attention on token indices,
a padding mask given as an input, and dropout on the attention probabilities.

The two residual networks are written in the branch notation of the architecture string; the others cannot be
(several inputs, a layer called twice, two outputs) and are built as descriptions here. Each builder takes nothing
and returns a new GraphArchitecture; `GRAPH_NETWORKS` names them, with the loss case of each output and the loss
weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from from_scratch.arch import Architecture
from from_scratch.arch import LayerSpec as L
from from_scratch.errors import BadInputError
from from_scratch.graph_arch import Call, GraphArchitecture, in_keras_order

#: The residual CNN block: conv, BN, ReLU, conv on one branch, a 1x1 projection on the skip, added.
RESIDUAL_CNN = "6x6x2-conv3k3:tanh:same-add(conv3k3:linear:same-bn-relu-conv3k3:linear:same | conv3k1:linear)-flatten-4"

#: A residual MLP: two residual blocks, the second nested in the first's branch.
RESIDUAL_MLP = "5-6:tanh-add(6:tanh-add(6:tanh-6:tanh | id) | id)-4"


def residual_mlp(output: str = "softmax") -> GraphArchitecture:
    return Architecture.parse(RESIDUAL_MLP, output_activation=output)


def residual_cnn(output: str = "softmax") -> GraphArchitecture:
    return Architecture.parse(RESIDUAL_CNN, output_activation=output)


def two_inputs(output: str = "softmax") -> GraphArchitecture:
    """Two inputs, a Dense each, joined by Concatenate with their element-wise Maximum and Minimum and the second
    input itself: cat([max(a', b'), min(a', b'), a', b]) -> Dense."""
    return _keras_order(
        (("input_a", (5,)), ("input_b", (3,))),
        (
            ("dense", L("dense", 4, "tanh")),
            ("dense_1", L("dense", 4, "sigmoid")),
            ("maximum", L("maximum")),
            ("minimum", L("minimum")),
            ("concatenate", L("concatenate")),
            ("dense_2", L("dense", 4, output)),
        ),
        (
            Call("dense", ("input_a",)),
            Call("dense_1", ("input_b",)),
            Call("maximum", ("dense", "dense_1")),
            Call("minimum", ("dense", "dense_1")),
            Call("concatenate", ("maximum", "minimum", "dense", "input_b")),
            Call("dense_2", ("concatenate",)),
        ),
        ("dense_2",),
    )


def siamese(output: str = "softmax") -> GraphArchitecture:
    """One Dense (the shared layer) applied to both inputs; their difference, product and dot product, concatenated
    -> Dense. The shared layer's gradient is the sum over its two calls."""
    return _keras_order(
        (("left", (5,)), ("right", (5,))),
        (
            ("shared", L("dense", 4, "tanh")),
            ("subtract", L("subtract")),
            ("multiply", L("multiply")),
            ("dot", L("dot", options={"axes": 1})),
            ("concatenate", L("concatenate")),
            ("dense", L("dense", 4, output)),
        ),
        (
            Call("shared", ("left",)),
            Call("shared", ("right",)),
            Call("subtract", ("shared", "shared#2")),
            Call("multiply", ("shared", "shared#2")),
            Call("dot", ("shared", "shared#2")),
            Call("concatenate", ("subtract", "multiply", "dot")),
            Call("dense", ("concatenate",)),
        ),
        ("dense",),
    )


def two_outputs(output: str = "softmax") -> GraphArchitecture:
    """One input, a trunk, two heads: a classifier (softmax) and a regressor (linear) reading the Average of the
    trunk and a second branch."""
    return _keras_order(
        (("input_layer", (5,)),),
        (
            ("dense", L("dense", 6, "tanh")),
            ("dense_1", L("dense", 6, "elu")),
            ("average", L("average")),
            ("classes", L("dense", 4, output)),
            ("value", L("dense", 2, "linear")),
        ),
        (
            Call("dense", ("input_layer",)),
            Call("dense_1", ("input_layer",)),
            Call("average", ("dense", "dense_1")),
            Call("classes", ("dense",)),
            Call("value", ("average",)),
        ),
        ("classes", "value"),
    )


def _attention(heads: int, key_dim: int, **options: object) -> L:
    return L("multi_head_attention", options={"num_heads": heads, "key_dim": key_dim, **options})


def _roles(*roles: str, causal: bool = False) -> tuple[tuple[str, object], ...]:
    """A MultiHeadAttention call's options: the role of each tensor it is handed, and the causal flag."""
    return (("roles", roles),) + ((("use_causal_mask", True),) if causal else ())


def self_attention(output: str = "softmax") -> GraphArchitecture:
    """A Transformer encoder block on a sequence of 6 steps of 8 features: h = x + P (PositionEmbedding) ->
    LayerNormalization(h + MHA(h, h)) -> (that + Dense(Dense relu) on every step) -> LayerNormalization ->
    GlobalAveragePooling1D -> Dense."""
    return _keras_order(
        (("sequence", (6, 8)),),
        (
            ("position_embedding", L("position_embedding")),
            ("multi_head_attention", _attention(2, 4)),
            ("add", L("add")),
            ("layer_normalization", L("layer_normalization")),
            ("dense", L("dense", 12, "relu")),
            ("dense_1", L("dense", 8, "linear")),
            ("add_1", L("add")),
            ("layer_normalization_1", L("layer_normalization")),
            ("global_average_pooling1d", L("global_average_pooling1d")),
            ("dense_2", L("dense", 4, output)),
        ),
        (
            Call("position_embedding", ("sequence",)),
            Call(
                "multi_head_attention",
                ("position_embedding", "position_embedding"),
                options=_roles("query", "value"),
            ),
            Call("add", ("position_embedding", "multi_head_attention")),
            Call("layer_normalization", ("add",)),
            Call("dense", ("layer_normalization",)),
            Call("dense_1", ("dense",)),
            Call("add_1", ("layer_normalization", "dense_1")),
            Call("layer_normalization_1", ("add_1",)),
            Call("global_average_pooling1d", ("layer_normalization_1",)),
            Call("dense_2", ("global_average_pooling1d",)),
        ),
        ("dense_2",),
    )


def cross_attention(output: str = "softmax") -> GraphArchitecture:
    """A query sequence (4 steps, 5 features) attending to a context of another length and width: value (7 steps,
    3 features) and key (7 steps, 6 features) each its own input; 3 heads, key_dim 2, value_dim 4 (the heads' value
    width differs from their key width) -> Flatten -> Dense."""
    return _keras_order(
        (("query", (4, 5)), ("value", (7, 3)), ("key", (7, 6))),
        (
            ("multi_head_attention", _attention(3, 2, value_dim=4)),
            ("flatten", L("flatten")),
            ("dense", L("dense", 4, output)),
        ),
        (
            Call("multi_head_attention", ("query", "value", "key"), options=_roles("query", "value", "key")),
            Call("flatten", ("multi_head_attention",)),
            Call("dense", ("flatten",)),
        ),
        ("dense",),
    )


def causal_attention(output: str = "softmax") -> GraphArchitecture:
    """Token indices (7 steps of a vocabulary of 9) -> Embedding (6) -> causal self-attention (step i sees steps
    0..i) -> Add -> LayerNormalization -> Flatten -> Dense."""
    return _keras_order(
        (("tokens", (7,)),),
        (
            ("embedding", L("embedding", 6, options={"input_dim": 9})),
            ("multi_head_attention", _attention(2, 3)),
            ("add", L("add")),
            ("layer_normalization", L("layer_normalization")),
            ("flatten", L("flatten")),
            ("dense", L("dense", 4, output)),
        ),
        (
            Call("embedding", ("tokens",)),
            Call("multi_head_attention", ("embedding", "embedding"), options=_roles("query", "value", causal=True)),
            Call("add", ("embedding", "multi_head_attention")),
            Call("layer_normalization", ("add",)),
            Call("flatten", ("layer_normalization",)),
            Call("dense", ("flatten",)),
        ),
        ("dense",),
    )


def padding_mask(output: str = "softmax") -> GraphArchitecture:
    """Self-attention over 6 steps of 5 features with a padding mask given as a second input, (1, 6) per sample:
    1 keeps a step, 0 hides it from every query (broadcast over the query steps and the heads) -> Flatten -> Dense.
    The harness draws the mask as 0/1 (compare.harness.synthetic_inputs); the mask input has no dL/dX."""
    return _keras_order(
        (("sequence", (6, 5)), ("padding", (1, 6))),
        (
            ("multi_head_attention", _attention(2, 3)),
            ("flatten", L("flatten")),
            ("dense", L("dense", 4, output)),
        ),
        (
            Call(
                "multi_head_attention",
                ("sequence", "sequence", "padding"),
                options=_roles("query", "value", "attention_mask"),
            ),
            Call("flatten", ("multi_head_attention",)),
            Call("dense", ("flatten",)),
        ),
        ("dense",),
    )


def attention_dropout(output: str = "softmax") -> GraphArchitecture:
    """Self-attention with dropout 0.25 on the attention probabilities (Keras's explicit path; one mask over
    (batch, heads, T, S) shared by both sides), a causal mask and a (T, S) attention mask input combined with it,
    then Dropout 0.25 on the block's output -> Flatten -> Dense."""
    return _keras_order(
        (("sequence", (5, 4)), ("mask", (5, 5))),
        (
            ("multi_head_attention", _attention(2, 2, dropout=0.25)),
            ("dropout", L("dropout", options={"rate": 0.25})),
            ("flatten", L("flatten")),
            ("dense", L("dense", 4, output)),
        ),
        (
            Call(
                "multi_head_attention",
                ("sequence", "sequence", "mask"),
                options=_roles("query", "value", "attention_mask", causal=True),
            ),
            Call("dropout", ("multi_head_attention",)),
            Call("flatten", ("dropout",)),
            Call("dense", ("flatten",)),
        ),
        ("dense",),
    )


def transformer_classifier(
    timesteps: int,
    vocabulary: int,
    classes: int,
    width: int = 16,
    heads: int = 4,
    hidden: int = 32,
    blocks: int = 2,
    dropout: float = 0.1,
    attention: bool = True,
    attention_dropout: float = 0.0,
) -> GraphArchitecture:
    """A Transformer encoder classifier of `blocks` post-norm encoder blocks (as in Vaswani et al., 2017):

        tokens (T,) -> token Embedding (T, D) -> PositionEmbedding (a learned (T, D) table added)
        block:  h = LayerNormalization(h + Dropout(MultiHeadAttention(h, h)))      self-attention, `heads` heads of
                                                                                    key_dim D / heads
                h = LayerNormalization(h + Dense_D(Dense_hidden relu(h)))           the feed-forward Dense on every step
        -> GlobalAveragePooling1D -> Dense(classes) softmax

    `attention=False` drops each block's attention sub-layer (its attention, Dropout, Add and LayerNormalization):
    the same network with nothing that mixes the steps, additive over them up to the pooling. `attention_dropout` is
    the attention layer's own dropout on the probabilities."""
    if width % heads:
        raise BadInputError(f"transformer_classifier: width {width} is not a multiple of the {heads} heads")
    layers: list[tuple[str, L]] = [
        ("token_embedding", L("embedding", width, options={"input_dim": vocabulary})),
        ("position_embedding", L("position_embedding")),
    ]
    calls = [Call("token_embedding", ("tokens",)), Call("position_embedding", ("token_embedding",))]
    h = "position_embedding"
    for k in range(1, blocks + 1):
        if attention:
            options = {"dropout": attention_dropout} if attention_dropout else {}
            layers += [
                (f"attention_{k}", _attention(heads, width // heads, **options)),
                (f"attention_dropout_{k}", L("dropout", options={"rate": dropout})),
                (f"attention_add_{k}", L("add")),
                (f"attention_norm_{k}", L("layer_normalization")),
            ]
            calls += [
                Call(f"attention_{k}", (h, h), options=_roles("query", "value")),
                Call(f"attention_dropout_{k}", (f"attention_{k}",)),
                Call(f"attention_add_{k}", (h, f"attention_dropout_{k}")),
                Call(f"attention_norm_{k}", (f"attention_add_{k}",)),
            ]
            h = f"attention_norm_{k}"
        layers += [
            (f"feed_forward_{k}", L("dense", hidden, "relu")),
            (f"feed_forward_out_{k}", L("dense", width, "linear")),
            (f"feed_forward_add_{k}", L("add")),
            (f"feed_forward_norm_{k}", L("layer_normalization")),
        ]
        calls += [
            Call(f"feed_forward_{k}", (h,)),
            Call(f"feed_forward_out_{k}", (f"feed_forward_{k}",)),
            Call(f"feed_forward_add_{k}", (h, f"feed_forward_out_{k}")),
            Call(f"feed_forward_norm_{k}", (f"feed_forward_add_{k}",)),
        ]
        h = f"feed_forward_norm_{k}"
    layers += [("pooling", L("global_average_pooling1d")), ("classifier", L("dense", classes, "softmax"))]
    calls += [Call("pooling", (h,)), Call("classifier", ("pooling",))]
    return _keras_order((("tokens", (timesteps,)),), tuple(layers), tuple(calls), ("classifier",))


def _keras_order(inputs: tuple, layers: tuple, calls: tuple, outputs: tuple) -> GraphArchitecture:
    return in_keras_order(GraphArchitecture(inputs, layers, calls, outputs))


@dataclass(frozen=True)
class GraphNetwork:
    """A graph network of the matrix: its readable name, its builder (the output activation of its first output ->
    the description), its loss configurations (each: a loss case id of compare.matrix.LOSS_CASES per output; the
    first case's output activation is the first output's) and the loss weights (None: each 1)."""

    name: str
    build: Callable[[str], GraphArchitecture]
    cases: tuple[tuple[str, ...], ...] = (("cce_softmax",), ("mse",))
    loss_weights: tuple[float, ...] | None = None


GRAPH_NETWORKS: dict[str, GraphNetwork] = {
    net.name: net
    for net in (
        GraphNetwork("residual MLP", residual_mlp),
        GraphNetwork("residual CNN block", residual_cnn),
        GraphNetwork("two inputs joined by Concatenate", two_inputs),
        GraphNetwork("siamese with a shared layer", siamese),
        GraphNetwork("two outputs with loss weights", two_outputs, (("cce_softmax", "mse"),), (0.3, 2.0)),
        GraphNetwork("self-attention encoder block", self_attention),
        GraphNetwork("cross-attention of two lengths", cross_attention),
        GraphNetwork("causal self-attention on tokens", causal_attention),
        GraphNetwork("attention with a padding mask", padding_mask),
        GraphNetwork("attention dropout with causal and attention masks", attention_dropout),
    )
}
