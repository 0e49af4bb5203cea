"""Your Keras model in NumPy: read a trained Keras model (Sequential or functional, or a `.keras` file) into the
scratch network, and compare the two.

    from compare.keras_model import compare_keras_model, from_keras
    scratch = from_keras("model.keras")            # the scratch model, with the model's own weights
    report = compare_keras_model("model.keras", data="digits")   # loss, outputs, every gradient, as `compare`

`from_keras` walks the model's layer calls and writes the description (from_scratch.arch.Architecture for a chain,
from_scratch.graph_arch.GraphArchitecture for any other graph) they amount to, refusing anything the scratch side
does not implement exactly (a layer class, an option, an activation, a dtype, an operation that is not a layer)
with a `BadInputError` that names the layer (node), the option and what is supported. The scratch model is built
from that description and given the Keras weights, bit for bit (float32 weights into a float64 scratch model are
exact, too).

The parts live beside this module, each re-exported here: compare/keras_specs.py reads one Keras layer into a
LayerSpec (SPECS, SUPPORTED), compare/keras_loading.py loads a .keras file and reads the compiled loss (load,
loss_of, choose_loss), compare/keras_reading.py reads the graph (describe, from_keras, comparison_twin); this module
is the comparison (compare_keras_model).

This package imports Keras and from_scratch, so it lives in `compare` (the only package that imports both).
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

import keras_impl  # noqa: F401 (first: it pins TensorFlow's settings before TensorFlow loads)
from compare.data import DATASETS, as_inputs, check_memory, load_batch, load_dataset, targets
from compare.harness import Report, Row, compare_models, synthetic_inputs
from compare.keras_loading import (
    KERAS_LOSS_CLASSES,
    KERAS_LOSS_FUNCTIONS,
    LOSS_ARGUMENTS,
    SUPPORTED_LOSSES,
    _as_model,
    choose_loss,
    load,
    loss_of,
    output_names,
)
from compare.keras_reading import (
    Reading,
    _resolve_dtype,
    comparison_twin,
    describe,
    from_keras,
    keras_layers,
    read,
    resolve_dtype,
)
from compare.keras_specs import (
    KERAS_ACTIVATION_FUNCTIONS,
    SPECS,
    SUPPORTED,
    _activation_name,
    _channels_last,
    _refuse,
)
from compare.tolerances import ROUND_TRIP_TOL, max_abs_error, max_rel_error
from from_scratch.arch import Architecture
from from_scratch.errors import BadInputError
from from_scratch.graph_arch import GraphArchitecture
from from_scratch.losses import Loss, OutputLosses

Array = np.ndarray

__all__ = [
    "KERAS_ACTIVATION_FUNCTIONS",
    "KERAS_LOSS_CLASSES",
    "KERAS_LOSS_FUNCTIONS",
    "LOSS_ARGUMENTS",
    "SPECS",
    "SUPPORTED",
    "SUPPORTED_LOSSES",
    "Reading",
    "choose_loss",
    "compare_keras_model",
    "comparison_twin",
    "describe",
    "from_keras",
    "keras_layers",
    "graph_row",
    "keras_model_batch",
    "load",
    "loss_of",
    "output_names",
    "read",
    "resolve_dtype",
]
# Kept importable from here (readers written against this module use them): _activation_name, _channels_last,
# _refuse, _resolve_dtype, _as_model.
_KEPT = (_activation_name, _channels_last, _refuse, _resolve_dtype, _as_model)


# ----- the comparison --------------------------------------------------------------------------------------------
def _single(loss: Loss | OutputLosses) -> Loss:
    """The loss of a model of one output (an OutputLosses of one output carries a loss weight: its loss)."""
    return loss.losses[0] if isinstance(loss, OutputLosses) else loss


def keras_model_batch(
    arch: Architecture | GraphArchitecture,
    loss: Loss | OutputLosses,
    data: str,
    batch: int,
    seed: int,
    model_name: str = "the model",
) -> tuple[Array | list[Array], Array | list[Array]]:
    """One batch for a model of `arch`: compare.data.load_batch, with targets of the loss's kind on synthetic
    data (as run_comparison makes them); a data set whose widths do not fit the model is refused, saying both.

    A model of several inputs or outputs takes synthetic data only: per input seeded normal values (index sequences
    for an input an Embedding reads), per output targets of its loss's kind; x and y are then lists."""
    graph = arch.graph()
    if len(graph.inputs) > 1 or len(graph.outputs) > 1:
        if data != "synthetic":
            raise BadInputError(
                f"--data {data}: the Keras model {model_name!r} has {len(graph.inputs)} input(s) and "
                f"{len(graph.outputs)} output(s); a data set feeds a model of one input and one output, so this one "
                "is compared on synthetic data (drop --data)"
            )
        rng = np.random.default_rng(seed)
        xs = [
            synthetic_inputs(graph, rng.standard_normal((batch, *shape)), seed, k)
            for k, shape in enumerate(graph.input_shapes)
        ]
        losses = loss.losses if isinstance(loss, OutputLosses) else [loss] * len(graph.outputs)
        ys = [
            targets(item.target_kind, batch, shape[-1], np.random.default_rng(seed + 1 + o))
            for o, (item, shape) in enumerate(zip(losses, graph.output_shapes))
        ]
        return (xs if len(xs) > 1 else xs[0]), (ys if len(ys) > 1 else ys[0])
    single = _single(loss)
    if data != "synthetic" and data in DATASETS:
        x_all, y_all = load_dataset(data, arch.input_shape)
        if x_all.shape[1] != arch.input_dim or y_all.shape[1] != arch.output_dim:
            raise BadInputError(
                f"--data {data} has {x_all.shape[1]} features and {y_all.shape[1]} outputs, but the Keras model "
                f"{model_name!r} takes {arch.input_dim} inputs and gives {arch.output_dim} outputs"
            )
    x, y = load_batch(data, arch.input_dim, arch.output_dim, batch, seed, arch.input_shape)
    if data == "synthetic" and single.target_kind != "onehot":
        y = targets(single.target_kind, len(x), arch.output_dim, np.random.default_rng(seed + 1))
    elif single.target_kind == "labels":
        y = y.argmax(axis=1).astype(np.float64)  # one-hot data set labels -> class indices
    x = as_inputs(x, arch.input_shape)
    return (synthetic_inputs(arch, x, seed) if data == "synthetic" else x), y


def _weights_row(name: str, original: list[Array], copied: list[Array]) -> Row:
    """The model's weights against the scratch model's copy (in the wider dtype): must be identical."""
    pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in zip(original, copied)]
    worst = max((max_abs_error(a, b) for a, b in pairs), default=0.0)
    if len(original) != len(copied) or any(a.shape != b.shape for a, b in pairs):
        worst = float("inf")
    rel = max((max_rel_error(a, b) for a, b in pairs), default=0.0)
    return Row(name, (sum(np.size(w) for w in original),), worst, rel, worst, "exact", ROUND_TRIP_TOL)


def _several(value: Any) -> list[Array]:
    return [np.asarray(v) for v in value] if isinstance(value, (list, tuple)) else [np.asarray(value)]


def graph_row(model: keras.Model, reading: Reading, x: Array | list[Array]) -> Row:
    """The model's own outputs against its twin's in the model's dtype (its own layers, called as the graph was
    read), in inference mode, on the batch `x`: the same layers on the same inputs in the same order, so they must
    be identical. Both sides of the comparison are built from the reading, so only this row sees a connection read
    wrong (two inputs of a merge swapped, a skip connection dropped, a nested model's layers out of order)."""
    twin = comparison_twin(model)
    xs = x if isinstance(x, list) else [x]
    given = [np.asarray(a).astype(t.dtype) for a, t in zip(xs, model.inputs)]  # an Embedding's model takes int32
    theirs = _several(model(given if len(given) > 1 else given[0], training=False))
    ours = [np.asarray(a).astype(reading.dtype) for a in xs]
    read_back = _several(twin(ours if len(ours) > 1 else ours[0], training=False))
    return _weights_row("outputs of the Keras model as read", theirs, read_back)


def compare_keras_model(
    path_or_model: keras.Model | str | os.PathLike,
    data: str = "synthetic",
    batch: int = 32,
    seed: int = 0,
    loss: str | Loss | None = None,
    gradcheck_samples: int = 8,
    dtype: str | None = None,
) -> Report:
    """Compare a Keras model (Sequential or functional) with its scratch model on one batch: the table of
    `backprop-parity compare`.

    The scratch side is `from_keras` (the model's weights, exactly), the Keras side `comparison_twin` (the model's
    own layers); the loss is `loss` (for every output) or the model's compiled loss (per output, with its
    loss_weights). Besides the harness's rows the report starts with "weights from the Keras model": each Keras
    layer's weights against the scratch copy of that layer, which must be identical (the harness copies scratch
    weights into Keras, so only this row would notice a wrong copy), then "outputs of the Keras model as read"
    (`graph_row`: the model's own outputs against its layers called as the graph was read, identical). The model's
    weights (BatchNormalization moving statistics move in a training pass) are restored afterwards.
    """
    model = _as_model(path_or_model)
    reading = read(model)
    scratch = from_keras(model, dtype)
    twin = comparison_twin(model, dtype)
    loss = choose_loss(model, loss)
    arch = scratch.architecture
    check_memory(f"a batch of {batch}", batch, arch.footprint())
    x, y = keras_model_batch(arch, loss, data, batch, seed, model.name)
    source = os.fspath(path_or_model) if isinstance(path_or_model, (str, os.PathLike)) else f"<{model.name}>"
    config = {
        "keras_model": source,
        "arch": str(arch),
        "batch": int((x[0] if isinstance(x, list) else x).shape[0]),
        "dtype": scratch.dtype.name,
        "seed": seed,
        "data": data,
        "loss": repr(loss),
    }
    original = model.get_weights()
    theirs = reading.keras_weights([layer.name for layer in scratch.layers])
    copied = _weights_row("weights from the Keras model", theirs, scratch.get_weights())
    as_read = graph_row(model, reading, x)
    try:
        report = compare_models(
            scratch, twin, x, y, loss, gradcheck_samples=gradcheck_samples, seed=seed, config=config
        )
    finally:
        model.set_weights(original)
    report.rows[0:0] = [copied, as_read]
    return report
