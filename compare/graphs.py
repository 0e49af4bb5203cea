"""The graph networks of the parity matrix (`compare --all`, tests/test_catalogue_parity.py): skip connections,
several inputs, a shared layer, several outputs with loss weights, and between them every merge layer
(from_scratch.graph_arch.MERGE_KINDS).

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
    )
}
