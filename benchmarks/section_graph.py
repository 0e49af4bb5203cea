"""Section 8: what a graph costs beyond its layers. The scratch train step (forward + backward + SGD update) of a
residual MLP and of a residual CNN block, built with `from_scratch.graph` (`Input`, `Model`, `Add`), against the chain
`Sequential` of the same layers without the skip (this process, TensorFlow not loaded, alternating blocks), and
against Keras's fastest configuration of the same functional model (section 6's settings and child processes,
`python -m benchmarks --worker "graph: ..."`, which runs `worker`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.config import DTYPES, LOSS, LR
from benchmarks.report import Section, load_cell, load_note, progress
from benchmarks.section_conv import (
    HEAD_KERAS,
    SETTINGS,
    Best,
    _children,
    _spread,
    collect_keras,
    settings_worker,
)
from benchmarks.section_lstm import QUICK_SETTINGS
from benchmarks.steps import make_batch
from benchmarks.timing import Budget, Timing, measure_blocks
from from_scratch import Add, BatchNormalization, Conv2D, Dense, Flatten, Input, Layer, MaxPooling2D, Model, Sequential

#: The issue's target: a graph adds bookkeeping, not arithmetic; graph step / chain step <= 1.1x.
TARGET_VS_CHAIN = 1.1

TITLE = "8. Graph vs chain train step (forward + backward + SGD): residual MLP and CNN, scratch and Keras's fastest"

#: Worker names of this section start with this (section 6's with "conv: ", section 7's with "lstm: ").
WORKER_PREFIX = "graph: "

#: The first-update check of the two sides (norm-relative, float32 and float64), as section 6's but for float32 2e-3:
#: BatchNormalization's backward sums over N H W = 32,768 positions per channel, and float32 rounding alone moves
#: each side's update of the convolutions before it by up to about 4e-4 from the float64 step's (measured at seed 0:
#: scratch 3e-4, Keras 4e-4, the two 5e-4 apart); an update computed wrongly differs at order one.
UPDATE_DIFF_LIMITS = (2e-3, 1e-10)

IMAGE = (16, 16, 1)
#: Both networks, both sides.
BATCH = 128
FILTERS = 8
#: The bookkeeping probe: the same graphs and chains with next to no arithmetic (hidden width or filters 2, inputs of
#: 5 values or 4x4x1, batch 2), where what is left of a step is the model's Python work per node.
TINY_WIDTH = 2
TINY_BATCH = 2


@dataclass(frozen=True)
class Case:
    """A residual network: `layers(width)` makes fresh layers (hidden width or filters `width`: the case's own, or
    TINY_WIDTH for the bookkeeping probe on inputs of `tiny_input`); `graph(x, layers)` calls them on the input
    tensor x with the skip and returns the output tensor; `chain` lists, by position in the layers, those the chain
    keeps, in order; `text` describes both for the report."""

    name: str
    input_shape: tuple[int, ...]
    width: int
    tiny_input: tuple[int, ...]
    layers: Callable[[int], list[Layer]]
    graph: Callable[[Any, list[Layer]], Any]
    chain: tuple[int, ...]
    text: str


def _mlp_layers(width: int) -> list[Layer]:
    return [Dense(width), Dense(width, activation="relu"), Dense(width), Add(), Dense(10, activation="softmax")]


def _mlp_graph(x: Any, layers: list[Layer]) -> Any:
    stem, inner, outer, add, head = layers
    h = stem(x)
    return head(add([h, outer(inner(h))]))


def _cnn_layers(filters: int) -> list[Layer]:
    return [
        Conv2D(filters, 3, padding="same", activation="relu"),
        BatchNormalization(),
        Conv2D(filters, 3, padding="same"),
        Conv2D(filters, 1),
        Add(),
        MaxPooling2D(2),
        Flatten(),
        Dense(10, activation="softmax"),
    ]


def _cnn_graph(x: Any, layers: list[Layer]) -> Any:
    conv_a, norm, conv_b, projection, add, pool, flatten, head = layers
    return head(flatten(pool(add([conv_b(norm(conv_a(x))), projection(x)]))))


CASES = (
    Case(
        "residual MLP",
        (784,),
        256,
        (5,),
        _mlp_layers,
        _mlp_graph,
        (0, 1, 2, 4),
        "784 -> Dense(256) = h; h -> Dense(256, relu) -> Dense(256) -> Add with h -> Dense(10, softmax); chain: the "
        "same four Dense layers in a row (no Add)",
    ),
    Case(
        "residual CNN",
        IMAGE,
        FILTERS,
        (4, 4, 1),
        _cnn_layers,
        _cnn_graph,
        (0, 1, 2, 5, 6, 7),
        f"{'x'.join(map(str, IMAGE))} -> Conv2D({FILTERS}, 3, same, relu) -> BatchNormalization -> Conv2D({FILTERS}, "
        f"3, same), plus Conv2D({FILTERS}, 1) on the input (the skip's projection), Add -> MaxPooling2D(2) -> "
        f"Flatten -> Dense(10, softmax); chain: Conv2D({FILTERS}, 3, same, relu), BatchNormalization, "
        f"Conv2D({FILTERS}, 3, same), MaxPooling2D(2), Flatten, Dense(10, softmax) (no projection, no Add)",
    ),
)
BY_NAME = {case.name: case for case in CASES}

HEAD = [
    "network",
    "dtype",
    "batch",
    "graph ms",
    "chain ms",
    "graph/chain",
    f"<= {TARGET_VS_CHAIN}x?",
    "extra nodes alone ms",
    "rest (bookkeeping) ms",
    "extra GEMM FLOPs",
    "extra element-wise",
    "IQR/med",
    "other load",
]
HEAD_TINY = [
    "network",
    "dtype",
    "nodes (graph, chain)",
    f"tiny graph us (batch {TINY_BATCH})",
    "tiny chain us",
    "tiny graph/chain",
    "us per extra node",
    "chain us per node",
    "extra nodes' us / full-size chain step",
    "IQR/med",
    "other load",
]
HEAD_VS_KERAS = [
    "network",
    "dtype",
    "batch",
    "scratch graph ms (same child)",
    "Keras fastest ms",
    "Keras fastest setting",
    "scratch/Keras",
    "scratch graph ms (TF not loaded)",
    "other load",
]


# ----- the workload ----------------------------------------------------------------------------------------------
def build_graph(name: str, dtype: str, tiny: bool = False) -> tuple[Model, list[Layer]]:
    """The scratch graph of case `name` (seed 0; `tiny`: the bookkeeping probe's size), compiled with plain SGD at
    lr LR, and its layers as the case makes them (so `Case.chain` picks the chain's)."""
    case = BY_NAME[name]
    layers = case.layers(TINY_WIDTH if tiny else case.width)
    x = Input(case.tiny_input if tiny else case.input_shape)
    model = Model(x, case.graph(x, layers), dtype=dtype, seed=0)
    model.compile("sgd", LOSS)
    return model, layers


def graph_setup(name: str, dtype: str, n: int) -> tuple[Model, np.ndarray, np.ndarray]:
    """The compiled scratch graph of case `name` and a batch of n samples for it (the child processes' setup)."""
    model, _ = build_graph(name, dtype)
    return model, *_batch(model, n, dtype)


def chain_of(name: str, graph_layers: Sequence[Layer], dtype: str, tiny: bool = False) -> Sequential:
    """The compiled chain of the same case (and size): fresh copies of the layers `Case.chain` keeps, in a
    Sequential, with the graph's weights copied in."""
    case = BY_NAME[name]
    layers = case.layers(TINY_WIDTH if tiny else case.width)
    shape = case.tiny_input if tiny else case.input_shape
    model = Sequential([layers[i] for i in case.chain], input_shape=shape, dtype=dtype, seed=0)
    model.compile("sgd", LOSS)
    for i in case.chain:
        for ours, theirs in zip(layers[i].params, graph_layers[i].params):
            ours[...] = theirs
    return model


def _batch(model: Model, n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_batch(n, int(np.prod(model.input_shape)), model.output_dim, dtype)
    return x.reshape(n, *model.input_shape), y


def _train_step(model: Model, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    return lambda: model.train_step(x, y)


# ----- the arithmetic --------------------------------------------------------------------------------------------
def _needs_dx(model: Model) -> list[bool]:
    """Per node, whether a train step computes its dL/dX (some input is not a model input)."""
    inputs = {id(t) for t in model.inputs}
    return [any(id(t) not in inputs for t in node.inputs) for node in model.nodes]


def gemm_flops(model: Model, n: int) -> int:
    """Matrix-product FLOPs of one train step: per Dense node (D, M) 2NDM forward, 2NDM for dW and, where dX is
    computed, 2NDM; per Conv2D node the same with N Ho Wo rows and kh kw C columns (im2col's cols @ K)."""
    total = 0
    for node, dx, shape in zip(model.nodes, _needs_dx(model), model.node_output_shapes):
        layer = node.layer
        if isinstance(layer, Dense):
            d, m = layer.W.shape
            total += 2 * n * d * m * (3 if dx else 2)
        elif isinstance(layer, Conv2D):
            kh, kw, c, f = layer.K.shape
            total += 2 * n * int(np.prod(shape[:-1])) * kh * kw * c * f * (3 if dx else 2)
    return total


def merge_adds(model: Model, n: int) -> int:
    """Element-wise additions the graph structure itself asks for: each merge's forward ((k - 1) per output value
    for k inputs) and each fan-in sum in the backward pass (one per extra consumer of a tensor whose gradient is
    computed; a model input's is not, in a train step)."""
    index = {id(node): i for i, node in enumerate(model.nodes)}
    consumers: dict[int, int] = {}
    total = 0
    for node, dx, shape in zip(model.nodes, _needs_dx(model), model.node_output_shapes):
        if node.several:
            total += (len(node.inputs) - 1) * n * int(np.prod(shape))
        if dx:
            for t in node.inputs:
                if id(t.node) in index:
                    consumers[id(t)] = consumers.get(id(t), 0) + 1
    for node, shape in zip(model.nodes, model.node_output_shapes):
        total += max(0, consumers.get(id(node.output), 0) - 1) * n * int(np.prod(shape))
    return total


def extra_nodes(name: str, dtype: str, n: int) -> Callable[[], None]:
    """The graph's extra nodes (those of the layers the chain lacks: the Add, the projection) alone: each node's
    forward and backward on arrays of the step's shapes (a probe graph's after one backward pass), dX only where the
    step computes it, plus the fan-in sums of the backward pass: the arithmetic the graph adds, with none of the
    model's bookkeeping."""
    case = BY_NAME[name]
    probe, layers = build_graph(name, dtype)
    x, y = _batch(probe, n, dtype)
    result = probe.backward_pass(x, y, LOSS, input_grad=False)
    index = {id(node): i for i, node in enumerate(probe.nodes)}
    extra = {id(layer) for i, layer in enumerate(layers) if i not in case.chain}
    ops, sums, seen = [], [], {}
    for i, (node, dx) in enumerate(zip(probe.nodes, _needs_dx(probe))):
        if id(node.layer) in extra:
            args = [result.records[index[id(t.node)]]["A"] if id(t.node) in index else x for t in node.inputs]
            ops.append((node.layer, args if node.several else args[0], result.records[i]["dA"], dx))
        for t in node.inputs if dx else ():
            if id(t.node) in index:
                seen[id(t)] = seen.get(id(t), 0) + 1
                if seen[id(t)] > 1:
                    g = result.records[index[id(t.node)]]["dA"]
                    sums.append((g, g.copy()))

    def run() -> None:
        for layer, args, d_a, dx in ops:
            layer.forward(args, training=True)
            if dx or not layer.input_grad_optional:
                layer.backward(d_a)
            else:
                layer.backward(d_a, input_grad=False)
        for a, b in sums:
            a + b

    return run


# ----- this process ----------------------------------------------------------------------------------------------
def _in_process(budget: Budget, rounds: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (case, dtype): the graph step, the chain step (the graph's weights copied in) and the graph's extra nodes
    alone, timed in alternating blocks; the FLOP counts."""
    results = {}
    for case in CASES:
        for dtype in DTYPES:
            progress(f"8: graph and chain steps, {case.name} {dtype}")
            graph, layers = build_graph(case.name, dtype)
            x, y = _batch(graph, BATCH, dtype)
            chain = chain_of(case.name, layers, dtype)
            extra = extra_nodes(case.name, dtype, BATCH)
            tiny_graph, tiny_layers = build_graph(case.name, dtype, tiny=True)
            tiny_chain = chain_of(case.name, tiny_layers, dtype, tiny=True)
            tx, ty = _batch(tiny_graph, TINY_BATCH, dtype)
            timings = measure_blocks(
                [
                    _train_step(graph, x, y),
                    _train_step(chain, x, y),
                    extra,
                    _train_step(tiny_graph, tx, ty),
                    _train_step(tiny_chain, tx, ty),
                ],
                budget,
                rounds,
            )
            results[case.name, dtype] = {
                **dict(zip(("graph", "chain", "extra", "tiny graph", "tiny chain"), timings)),
                "flops": (gemm_flops(graph, BATCH), gemm_flops(chain, BATCH)),
                "adds": merge_adds(graph, BATCH),
                "nodes": (len(graph.nodes), len(chain.nodes)),
            }
    return results


def _main_row(case: Case, dtype: str, r: dict[str, Any]) -> list[Any]:
    graph, chain, extra = r["graph"], r["chain"], r["extra"]
    ratio = graph.median / chain.median
    rest = graph.median - chain.median - extra.median
    flops_graph, flops_chain = r["flops"]
    extra_flops = flops_graph - flops_chain
    return [
        case.name,
        dtype,
        BATCH,
        f"{graph.ms:.3f}",
        f"{chain.ms:.3f}",
        f"{ratio:.3f}x",
        "yes" if ratio <= TARGET_VS_CHAIN else "no",
        f"{extra.ms:.3f} ({extra.median / chain.median:.1%})",
        f"{rest * 1e3:.3f} ({rest / chain.median:.1%})",
        f"{extra_flops / 1e6:.2f} M (+{extra_flops / flops_chain:.1%})",
        f"{r['adds'] / 1e6:.3f} M adds",
        _spread([graph, chain]),
        load_cell(graph.other),
    ]


def _tiny_row(case: Case, dtype: str, r: dict[str, Any]) -> list[Any]:
    graph, chain = r["tiny graph"], r["tiny chain"]
    nodes_graph, nodes_chain = r["nodes"]
    extra = graph.median - chain.median
    return [
        case.name,
        dtype,
        f"{nodes_graph}, {nodes_chain}",
        f"{graph.median * 1e6:.0f}",
        f"{chain.median * 1e6:.0f}",
        f"{graph.median / chain.median:.2f}x",
        f"{extra * 1e6 / (nodes_graph - nodes_chain):.0f}",
        f"{chain.median * 1e6 / nodes_chain:.0f}",
        f"{extra / r['chain'].median:.1%}",
        _spread([graph, chain]),
        load_cell(graph.other),
    ]


def _keras_main_row(case: Case, dtype: str, best: Best | None, step: Timing) -> list[Any]:
    keras_cells, other = ["n/a"] * 4, step.other
    if best is not None:
        keras_ms, setting, row = best
        keras_cells = [f"{row['scratch_ms']:.3f}", f"{keras_ms:.3f}", setting, f"{row['scratch_ms'] / keras_ms:.2f}x"]
        other = max(other, row["other"])
    return [case.name, dtype, BATCH, *keras_cells, f"{step.ms:.3f}", load_cell(other)]


# ----- the child side --------------------------------------------------------------------------------------------
def worker(name: str, budget: Budget) -> dict[str, Any]:
    """Child-process side of section 8: section 6's worker on the graphs, each scratch graph step against the Keras
    functional twin that keras_impl.build_model makes from the graph's description (`Model.architecture`)."""
    return settings_worker(name, budget, WORKER_PREFIX, "8", list(BY_NAME), BATCH, str, graph_setup)


# ----- the parent side -------------------------------------------------------------------------------------------
def run(budget: Budget, rounds: int, quick: bool) -> Section:
    """The graph and chain steps in this process (TensorFlow not loaded), then the Keras settings in child
    processes."""
    results = _in_process(budget, rounds)
    settings = QUICK_SETTINGS if quick else SETTINGS
    children, notes = _children(budget, quick, WORKER_PREFIX, "8", settings)
    keras_rows, bests = collect_keras(children, list(BY_NAME), str, notes, UPDATE_DIFF_LIMITS)
    main_rows = [_main_row(case, dtype, results[case.name, dtype]) for case in CASES for dtype in DTYPES]
    keras_main = [
        _keras_main_row(case, dtype, bests[case.name, dtype], results[case.name, dtype]["graph"])
        for case in CASES
        for dtype in DTYPES
    ]
    return Section(
        TITLE,
        [
            (HEAD, main_rows),
            (HEAD_TINY, [_tiny_row(case, dtype, results[case.name, dtype]) for case in CASES for dtype in DTYPES]),
            (HEAD_VS_KERAS, keras_main),
            (HEAD_KERAS, keras_rows),
        ],
        [
            *(f"{case.name}: {case.text}" for case in CASES),
            (
                f"batch {BATCH}, categorical cross-entropy; the step is forward + backward + plain SGD (lr {LR}): "
                "`Model.train_step` / `Sequential.train_step` after compile('sgd', ...). The graph is built with "
                "from_scratch.graph (Input, layer calls, Add, Model); the chain is a Sequential of fresh copies of "
                "the layers it keeps, with the graph's weights copied in. (No standalone ReLU layer exists: the CNN's "
                "ReLU is the first conv's activation, so BatchNormalization follows it)"
            ),
            (
                f"first table, this process (TensorFlow not loaded): graph, chain and 'extra nodes alone' timed in "
                f"alternating blocks. Target: graph/chain <= {TARGET_VS_CHAIN}x. extra nodes alone: the forward and "
                "backward of the nodes the chain lacks (the Add; the CNN's projection conv with its im2col, "
                "without dX as in the step) and the backward pass's fan-in sums, each on arrays of the step's "
                "shapes, with none of the model's bookkeeping (% of the chain step); rest = graph - chain - extra "
                "nodes alone: what the graph's bookkeeping costs (negative: within the noise). extra GEMM FLOPs: "
                "the graph's matrix-product FLOPs minus the chain's (forward, dW, and dX where the step computes "
                "it); extra element-wise: the merge's additions and the fan-in sums"
            ),
            (
                f"second table, the bookkeeping alone: the same graph and chain with next to no arithmetic (hidden "
                f"width or filters {TINY_WIDTH}, inputs of {BY_NAME['residual MLP'].tiny_input[0]} values or "
                f"{'x'.join(map(str, BY_NAME['residual CNN'].tiny_input))}, batch {TINY_BATCH}; microseconds), timed "
                "in the same alternating blocks as the first table: the model's Python work per node (input and "
                "shape checks, the node loop, records, gradient checks, the optimizer's per-parameter call). 'us per "
                "extra node': (tiny graph - tiny chain) / the graph's extra nodes; the last column is that difference "
                "against the full-size chain step: what the graph's bookkeeping should add to the first table's ratio"
            ),
            (
                "third table: the scratch graph step against Keras's fastest configuration of the same functional "
                "model (keras_impl.build_model on the graph's description, the same weights; a GradientTape over "
                "CategoricalCrossentropy(dtype) + SGD.apply_gradients in one tf.function, with and without "
                "jit_compile=True), the scratch step timed in the same child in alternating blocks; 'Keras fastest' "
                "is the smallest Keras median over all settings and modes, so its noise favours Keras. The issue "
                "sets no number for this ratio; section 6's target for the chain CNN is 1.0x"
            ),
            (
                "fourth table: each setting in a fresh child process, as in section 6"
                + (
                    f" (--quick: only {' and '.join(repr(s.name) for s in settings)})"
                    if quick
                    else f" ({len(settings)} settings)"
                )
                + "; update diff: largest norm-relative difference between Keras's and the scratch graph's first "
                "update w1 - w0 from the same weights (BatchNormalization's moving statistics included), warned about "
                f"above {UPDATE_DIFF_LIMITS[0]:g} in float32 (BatchNormalization's sums over 32,768 positions: "
                f"float32 rounding alone is about 4e-4 on either side) and {UPDATE_DIFF_LIMITS[1]:g} in float64"
            ),
            load_note(budget),
            *notes,
        ],
    )
