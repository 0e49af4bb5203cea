"""The parity matrix generated from the registries: every activation x every compatible loss x depths 1-3, and
small image networks covering every image layer (IMAGE_ARCHS), small sequence networks covering every recurrent
layer, the Embedding, a Dense per time step, LayerNormalization and the encoder's PositionEmbedding and
GlobalAveragePooling1D (SEQUENCE_ARCHS), and graph networks covering every merge layer, several inputs and outputs
and a shared layer (compare.graphs.GRAPH_NETWORKS).

`LOSS_CASES` says, for each loss configuration, which output activations it is compatible with and what kind of
targets it takes. Adding an activation to from_scratch.activations.ACTIVATIONS (and its Keras twin) or a loss
case here adds its rows to `compare --all` and to tests/test_catalogue_parity.py with no other change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compare.data import targets
from compare.graphs import GRAPH_NETWORKS
from compare.harness import build_pair, compare_models, synthetic_inputs
from from_scratch.activations import ACTIVATIONS
from from_scratch.arch import Architecture
from from_scratch.losses import Loss, get_loss

Array = np.ndarray

#: Activations usable inside a network whose gradient is checked (the step function has no derivative).
GRADIENT_ACTIVATIONS = tuple(name for name, entry in ACTIVATIONS.items() if entry.differentiable)


@dataclass(frozen=True)
class LossCase:
    """One loss configuration, the output activation it is paired with, and its target kind."""

    id: str
    loss: str
    config: dict[str, Any] = field(default_factory=dict, hash=False)
    output: str = "linear"
    targets: str = "onehot"  # onehot | labels | binary | regression

    def make(self) -> Loss:
        return get_loss(self.loss, **self.config)


LOSS_CASES: tuple[LossCase, ...] = (
    LossCase("cce_softmax", "categorical_crossentropy", {}, "softmax"),
    LossCase("cce_logits", "categorical_crossentropy", {"from_logits": True}, "linear"),
    LossCase("cce_smooth", "categorical_crossentropy", {"label_smoothing": 0.1}, "softmax"),
    LossCase("cce_probs", "categorical_crossentropy", {}, "softplus"),  # plain positive outputs: renormalise, clip
    LossCase("cce_sigmoid_quirk", "categorical_crossentropy", {}, "sigmoid"),  # Keras uses the sigmoid's logits
    LossCase("scce_softmax", "sparse_categorical_crossentropy", {}, "softmax", "labels"),
    LossCase("scce_logits", "sparse_categorical_crossentropy", {"from_logits": True}, "linear", "labels"),
    LossCase("bce_sigmoid", "binary_crossentropy", {}, "sigmoid", "binary"),
    LossCase("bce_logits", "binary_crossentropy", {"from_logits": True}, "linear", "binary"),
    LossCase("bce_smooth", "binary_crossentropy", {"label_smoothing": 0.2}, "sigmoid", "binary"),
    LossCase("mse", "mean_squared_error", {}, "linear", "regression"),
    LossCase("mae", "mean_absolute_error", {}, "linear", "regression"),
    LossCase("huber", "huber", {"delta": 0.5}, "linear", "regression"),
    LossCase("sse", "sum_squared_error", {}, "linear", "regression"),
)


#: Small image networks that exercise every image layer and option: overlapping and 'same' windows, strides
#: that do not divide the input (8 - 3 = 5 by 3), dilation, tied maxima are tested apart (tests/test_conv_parity.py).
#: tests/test_catalogue_parity.py checks that every layer kind of from_scratch.layers.LAYERS appears in the matrix.
IMAGE_ARCHS: tuple[str, ...] = (
    "6x7x2-conv3k3:tanh-flatten-4",
    "6x7x2-conv3k2x3:relu:same:s=2-flatten-4",
    "8x5x2-conv3k3:elu:s=3-flatten-4",
    "7x7x1-conv2k3:sigmoid:same:d=2-pool2-flatten-4",
    "7x7x2-pool3:s=1-flatten-4",
    "7x5x1-conv2k2:tanh-pool2:same-flatten-4",
    "7x7x2-avgpool2:same-flatten-4",
    "6x6x2-conv2k2:softplus-avgpool3:s=2-flatten-4",
    "6x6x2-conv3k3:tanh-gap-4",
    "24-reshape4x3x2-conv2k2:tanh-bn-dropout0.25-flatten-4",
    "7x6x2-pad0x1x0x1-conv3k3:linear:s=2:nobias-bn-relu6-dw3:same:m=2:nobias-act:tanh-gap-4",  # keras.applications'
    "6x6x2-pad1x2-dw2x3:elu:s=2-relu:max=1.5:slope=0.1:t=0.2-flatten-4",  # layers, with and without options
)


#: Small sequence networks (inputs TxF, or index sequences T for an Embedding) that exercise every recurrent layer
#: and option: return_sequences into another recurrent layer or into Flatten, GRU's two reset conventions, a SimpleRNN
#: with a kinked activation, dropout on a sequence, an Embedding's repeated indices (5 tokens, 7 positions), a Dense
#: on every time step, LayerNormalization per time step, a learned position table and the mean over the steps
#: (a Transformer encoder's layers beside attention).
SEQUENCE_ARCHS: tuple[str, ...] = (
    "5x3-rnn4-4",
    "6x3-rnn4:relu:seq-flatten-4",
    "5x3-lstm4-4",
    "5x2-lstm3:seq-dropout0.25-lstm4-4",
    "5x3-gru4-4",
    "5x3-gru4:reset_before:seq-rnn3:sigmoid-4",
    "7-embed5x3-gru4:seq-flatten-4",
    "5x3-lstm4:seq-3:tanh-flatten-4",
    "5x3-gru4:seq-ln-lstm3-4",
    "6x4-pos-ln-5:tanh-gap1d-4",
    "7-embed5x3-pos-dropout0.25-gap1d-4",
)


@dataclass(frozen=True)
class MatrixEntry:
    """One configuration of the matrix: an architecture string, a loss case and a dtype. `image` names one of
    IMAGE_ARCHS or SEQUENCE_ARCHS (its last Dense layer takes the case's output activation) instead of the MLP of
    `depth`; `graph` names one of compare.graphs.GRAPH_NETWORKS (its first output takes the output activation of
    `case`, and `cases` holds a loss case per output)."""

    hidden: str
    case: LossCase
    depth: int
    dtype: str
    image: str = ""
    graph: str = ""  # a name of compare.graphs.GRAPH_NETWORKS
    cases: tuple[LossCase, ...] = ()  # a graph network's loss case per output (`case` is the first)

    def description(self) -> Any:
        """The Architecture or GraphArchitecture of this entry."""
        if self.graph:
            return GRAPH_NETWORKS[self.graph].build(self.case.output)
        return Architecture.parse(self.arch)

    @property
    def label(self) -> str:
        """The configuration as `compare --all` shows it: a graph network by its name (and its string form when it
        has one)."""
        if not self.graph:
            return self.arch
        text = self.description().text
        return f"{self.graph}: {text}" if text else self.graph

    @property
    def loss_label(self) -> str:
        if not self.graph or len(self.cases) == 1:
            return self.case.id
        weights = GRAPH_NETWORKS[self.graph].loss_weights
        ids = [c.id for c in self.cases]
        return "+".join(ids if weights is None else [f"{w:g}*{i}" for w, i in zip(weights, ids)])

    @property
    def arch(self) -> str:
        if self.graph:
            return str(self.description())
        if self.image:
            return f"{self.image}:{self.case.output}"
        widths = [7, 6, 5][: self.depth - 1]
        hidden = "".join(f"-{w}:{self.hidden}" for w in widths)
        return f"5{hidden}-4:{self.case.output}"

    @property
    def id(self) -> str:
        if self.graph:
            return f"{self.graph.replace(' ', '_')}-{'+'.join(c.id for c in self.cases)}-{self.dtype}"
        if self.image:
            return f"{self.image}-{self.case.id}-{self.dtype}"
        return f"{self.hidden}-{self.case.id}-depth{self.depth}-{self.dtype}"


def matrix(dtypes: tuple[str, ...] = ("float64", "float32")) -> Iterator[MatrixEntry]:
    """Every gradient activation (as the hidden activation; depth 1 has none) x every loss case x depth 1-3."""
    for hidden in GRADIENT_ACTIVATIONS:
        for case in LOSS_CASES:
            for depth in (1, 2, 3):
                if depth == 1 and hidden != GRADIENT_ACTIVATIONS[0]:
                    continue  # depth 1 has no hidden layer: one entry per loss case is enough
                for dtype in dtypes:
                    yield MatrixEntry(hidden, case, depth, dtype)
    for image in IMAGE_ARCHS + SEQUENCE_ARCHS:  # each image or sequence network with a softmax and a regression head
        for case in (LOSS_CASES[0], LOSS_CASES[-4]):
            for dtype in dtypes:
                yield MatrixEntry("", case, 0, dtype, image)
    by_id = {case.id: case for case in LOSS_CASES}
    for name, network in GRAPH_NETWORKS.items():  # every graph network, each of its loss configurations
        for ids in network.cases:
            cases = tuple(by_id[i] for i in ids)
            for dtype in dtypes:
                yield MatrixEntry("", cases[0], 0, dtype, graph=name, cases=cases)


def batch_for(entry: MatrixEntry, n: int = 8, seed: int = 0) -> tuple[Array, Array]:
    """A seeded batch for one matrix entry: X (n, *input_shape) ~ N(0, 1) (index sequences for an Embedding) and
    targets of the case's kind."""
    rng = np.random.default_rng(seed)
    arch = entry.description()
    if entry.graph:  # an array per input and per output (a list when there are several)
        graph = arch.graph()
        x = [synthetic_inputs(arch, rng.standard_normal((n, *s)), seed, k) for k, s in enumerate(graph.input_shapes)]
        y = [targets(c.targets, n, s[-1], rng) for c, s in zip(entry.cases, graph.output_shapes)]
        return (x if len(x) > 1 else x[0]), (y if len(y) > 1 else y[0])
    x = synthetic_inputs(arch, rng.standard_normal((n, *arch.input_shape)), seed)
    return x, targets(entry.case.targets, n, 4, rng)


def run_entry(entry: MatrixEntry, n: int = 8, seed: int = 0) -> Any:
    """Build both sides for one entry and compare them on one batch (no numerical witness: it is slow)."""
    arch = entry.description()
    scratch, keras_model = build_pair(arch, entry.dtype, seed)
    x, y = batch_for(entry, n, seed)
    config = {"arch": entry.label, "loss": entry.loss_label, "dtype": entry.dtype}
    loss: Any = entry.case.make()
    weights = None
    if entry.graph and len(entry.cases) > 1:
        loss, weights = [c.make() for c in entry.cases], GRAPH_NETWORKS[entry.graph].loss_weights
    return compare_models(
        scratch,
        keras_model,
        x,
        y,
        loss,
        gradcheck_samples=0,
        config=config,
        loss_weights=None if weights is None else list(weights),
    )
