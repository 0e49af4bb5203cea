"""The zoo's graph bugs: where gradients meet (a fan-out, a shared layer's calls) and where a merge layer hands its
inputs their parts of dL/dY. Each entry builds a small graph (a GraphArchitecture: both sides from one description),
plants its bug in the scratch model only (the engine's fan-in sum `Model._fan_in` or shared-layer sum
`Model._add_call` replaced on that instance, a merge layer object given a buggy `backward`), and returns the
comparison's report; the diagnosis names the first node, in the order the nodes run, where the sides part.

    fanout_overwritten        dL/dT = g where the sum over T's consumers belongs (the last one the backward ran)
    shared_last_call_only     a shared layer's dL/dW from one call, not summed over its calls
    concatenate_wrong_offset  dX_i = dY[:, i d_1 : i d_1 + d_i], offsets as if every input were as wide as the first
    multiply_missing_other    Multiply's dX_i = dY, without prod_{j != i} X_j
    maximum_tie_to_both       Maximum's dY sent to every input at a tie; TensorFlow sends it to the first
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.zoo_planting import _batch, _swap_class
from from_scratch.arch import LayerSpec
from from_scratch.graph import Model
from from_scratch.graph_arch import Call, GraphArchitecture
from from_scratch.merge import _unbroadcast

Array = np.ndarray


def graph(
    inputs: list[tuple[str, tuple[int, ...]]],
    layers: list[tuple[str, LayerSpec]],
    calls: list[tuple[str, tuple[str, ...]]],
    outputs: list[str],
) -> GraphArchitecture:
    """A GraphArchitecture from plain lists: calls as (layer, (input names...)); a call's output is named as the
    description names it (the layer's name, `name#k` for its k-th call)."""
    return GraphArchitecture(tuple(inputs), tuple(layers), tuple(Call(*c) for c in calls), tuple(outputs))


def _compare_graph(arch: GraphArchitecture, x: Any, y: Array, plant: Any, dtype: str = "float64") -> Any:
    """Both sides of `arch`, the bug planted into the scratch model by `plant`, compared on (x, y)."""
    from compare.harness import build_pair, compare_models

    scratch, keras_model = build_pair(arch, dtype)
    plant(scratch)
    return compare_models(scratch, keras_model, x, y, gradcheck_samples=0, config={"arch": str(arch), "batch": len(y)})


#: A residual block: the stem's output feeds both the branch and the skip connection (a fan-out of two).
RESIDUAL = graph(
    [("x", (6,))],
    [
        ("stem", LayerSpec("dense", 5, "tanh")),
        ("branch", LayerSpec("dense", 5, "tanh")),
        ("skip", LayerSpec("add")),
        ("head", LayerSpec("dense", 3, "softmax")),
    ],
    [("stem", ("x",)), ("branch", ("stem",)), ("skip", ("stem", "branch")), ("head", ("skip",))],
    ["head"],
)


def fanout_overwritten(dtype: str = "float64") -> Any:
    x, y = _batch(8, 6, 3, seed=20)

    def overwrite(grads_at: dict[int, Array], key: int, g: Array) -> None:
        grads_at[key] = g  # = where += belongs: the last consumer the backward ran wins

    def plant(m: Model) -> None:
        m._fan_in = overwrite

    return _compare_graph(RESIDUAL, x, y, plant, dtype)


#: A siamese pair: one Dense applied to both inputs, the two embeddings subtracted, then a head.
SIAMESE = graph(
    [("left", (5,)), ("right", (5,))],
    [
        ("shared", LayerSpec("dense", 4, "tanh")),
        ("difference", LayerSpec("subtract")),
        ("head", LayerSpec("dense", 3, "softmax")),
    ],
    [("shared", ("left",)), ("shared", ("right",)), ("difference", ("shared", "shared#2")), ("head", ("difference",))],
    ["head"],
)


def shared_last_call_only(dtype: str = "float64") -> Any:
    rng = np.random.default_rng(21)
    x = [rng.standard_normal((8, 5)), rng.standard_normal((8, 5))]
    y = np.eye(3)[rng.integers(0, 3, size=8)]

    def keep_last(total: list[Array] | None, grads: list[Array]) -> list[Array]:
        return grads  # each call replaces the sum: the call the backward runs last (the first call) is kept

    def plant(m: Model) -> None:
        m._add_call = keep_last

    return _compare_graph(SIAMESE, x, y, plant, dtype)


#: Three branches of widths 3, 5 and 4 joined by Concatenate (offsets 0, 3, 8), then a head.
CONCAT = graph(
    [("x", (6,))],
    [
        ("narrow", LayerSpec("dense", 3, "tanh")),
        ("wide", LayerSpec("dense", 5, "tanh")),
        ("middle", LayerSpec("dense", 4, "tanh")),
        ("joined", LayerSpec("concatenate", options={"axis": -1})),
        ("head", LayerSpec("dense", 3, "softmax")),
    ],
    [
        ("narrow", ("x",)),
        ("wide", ("x",)),
        ("middle", ("x",)),
        ("joined", ("narrow", "wide", "middle")),
        ("head", ("joined",)),
    ],
    ["head"],
)


def concatenate_wrong_offset(dtype: str = "float64") -> Any:
    x, y = _batch(8, 6, 3, seed=22)

    def backward(self: Any, dy: Array) -> list[Array]:
        width = self.input_shapes[0][-1]  # every input taken as wide as the first: input i starts at i * d_1
        return [dy[..., i * width : i * width + s[-1]] for i, s in enumerate(self.input_shapes)]

    def plant(m: Model) -> None:
        _swap_class(next(layer for layer in m.layers if layer.kind == "concatenate"), "backward", backward)

    return _compare_graph(CONCAT, x, y, plant, dtype)


#: A gated unit: a tanh branch multiplied by a sigmoid gate, then a head.
GATED = graph(
    [("x", (6,))],
    [
        ("value", LayerSpec("dense", 4, "tanh")),
        ("gate", LayerSpec("dense", 4, "sigmoid")),
        ("gated", LayerSpec("multiply")),
        ("head", LayerSpec("dense", 3, "softmax")),
    ],
    [("value", ("x",)), ("gate", ("x",)), ("gated", ("value", "gate")), ("head", ("gated",))],
    ["head"],
)


def multiply_missing_other(dtype: str = "float64") -> Any:
    x, y = _batch(8, 6, 3, seed=23)

    def backward(self: Any, dy: Array) -> list[Array]:
        return [_unbroadcast(dy, s) for s in self.input_shapes]  # dX_i = dY: the other factors left out

    def plant(m: Model) -> None:
        _swap_class(next(layer for layer in m.layers if layer.kind == "multiply"), "backward", backward)

    return _compare_graph(GATED, x, y, plant, dtype)


#: The larger of a ReLU layer and a linear one; a zero input row with zero biases makes both exactly 0 (a tie in
#: every column), where TensorFlow sends dY to the first input (the ReLU, whose derivative at 0 then stops it).
MAX_OF_TWO = graph(
    [("x", (6,))],
    [
        ("rectified", LayerSpec("dense", 4, "relu")),
        ("linear", LayerSpec("dense", 4, "linear")),
        ("larger", LayerSpec("maximum")),
        ("head", LayerSpec("dense", 3, "softmax")),
    ],
    [("rectified", ("x",)), ("linear", ("x",)), ("larger", ("rectified", "linear")), ("head", ("larger",))],
    ["head"],
)


def maximum_tie_to_both(dtype: str = "float64") -> Any:
    x, y = _batch(8, 6, 3, seed=24)
    x[2] = 0.0  # both branches exactly 0 on this row (zero biases): a tie in every column

    def backward(self: Any, dy: Array) -> list[Array]:
        best = self.running[-1]
        return [_unbroadcast(np.where(x == best, dy, 0), s) for x, s in zip(self.X, self.input_shapes)]

    def plant(m: Model) -> None:
        _swap_class(next(layer for layer in m.layers if layer.kind == "maximum"), "backward", backward)

    return _compare_graph(MAX_OF_TWO, x, y, plant, dtype)
