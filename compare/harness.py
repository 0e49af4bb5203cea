"""The comparison: the same weights and the same batch into both sides, every number checked.

`compare_models` takes a built scratch model and its Keras twin; `run_comparison` builds both from one
architecture description first. The result is a `Report`: one `Row` per compared quantity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import keras_impl
from compare.data import load_batch
from compare.diagnosis import Diagnosis, Step, build_trace, diagnose
from compare.matrix import targets
from keras_impl.trace import trace as keras_trace
from compare.scales import gradient_scales
from compare.tolerances import (
    CANCELLATION_FLOOR,
    GRADCHECK_TOL,
    ROUND_TRIP_TOL,
    TOLERANCES,
    max_abs_error,
    max_rel_error,
    norm_rel_error,
)
from from_scratch.arch import Architecture
from from_scratch.gradcheck import gradcheck
from from_scratch.losses import Loss, get_loss
from from_scratch.model import Sequential

Array = np.ndarray

#: The synthetic targets each non-one-hot loss takes (see compare.matrix.targets).
TARGET_KINDS = {
    "sparse_categorical_crossentropy": "labels",
    "binary_crossentropy": "binary",
    "mean_squared_error": "regression",
    "mean_absolute_error": "regression",
    "huber": "regression",
    "sum_squared_error": "regression",
}

MEASURES = {
    "norm-rel": "||a - b|| / max(||a||, ||b||)  (gradients: max(||a||, ||b||, 1e-3 ||M||), M = summed terms)",
    "norm/terms": "||a - b|| / ||M||, M = magnitude of the summed terms (float32 bound)",
    "max-rel": "max|a - b| / max(max|a|, max|b|)",
    "exact": "max|a - b| (must be 0)",
}


@dataclass
class Row:
    """One compared quantity: scratch vs Keras (or analytic vs numerical), its errors and its verdict."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    checked: float
    measure: str
    tol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.checked) and self.checked <= self.tol)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "status": "PASS" if self.passed else "FAIL"}


@dataclass
class Report:
    """All rows of one comparison, the configuration that produced them and the TensorFlow settings in force."""

    config: dict[str, Any]
    rows: list[Row]
    settings: dict[str, str] = field(default_factory=dict)
    trace: list[Step] = field(default_factory=list)
    diagnosis: Diagnosis | None = None

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows) and all(step.passed for step in self.trace)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.passed]

    def worst(self, measure: str | None = None) -> float:
        """The largest `checked` error among the rows (of one measure, if given)."""
        values = [row.checked for row in self.rows if measure is None or row.measure == measure]
        return max(values, default=0.0)

    def verdict(self) -> str:
        n = len(self.rows)
        if self.passed:
            return f"PASS: all {n} quantities agree within tolerance" + (
                f" (and all {len(self.trace)} per-layer quantities)" if self.trace else "")
        if not self.failures:
            return f"FAIL: the table agrees, but a per-layer quantity differs: {self.diagnosis.first.where}"
        names = ", ".join(row.name for row in self.failures)
        return f"FAIL: {len(self.failures)} of {n} quantities differ: {names}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "settings": self.settings,
            "measures": {k: MEASURES[k] for k in sorted({row.measure for row in self.rows})},
            "rows": [row.to_dict() for row in self.rows],
            "passed": self.passed,
            "verdict": self.verdict(),
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
        }


def tensor_row(name: str, a: Array, b: Array, dtype: str, scale: Array | None = None) -> Row:
    """A row comparing tensors a (scratch) and b (Keras): norm-relative in float64, against terms in float32."""
    a, b = np.asarray(a), np.asarray(b)
    if dtype == "float32" and scale is not None:
        checked, measure = norm_rel_error(a, b, scale), "norm/terms"
    else:
        checked, measure = norm_rel_error(a, b, scale, CANCELLATION_FLOOR), "norm-rel"
    return Row(name, a.shape, max_abs_error(a, b), max_rel_error(a, b), checked, measure, TOLERANCES[dtype])


def weight_names(model: Sequential) -> list[str]:
    """Keras-style variable paths aligned with get_weights(): dense/kernel, dense/bias, dense_1/kernel, ..."""
    return [f"{layer.name}/{label}" for layer in model.layers for label in layer.weight_names]


def gradcheck_row(
    model: Sequential,
    x: Array,
    y: Array,
    loss: Loss,
    keras_grads: list[Array],
    samples: int,
    seed: int,
    sample_weight: Array | None = None,
) -> Row:
    """The third witness: central differences of the scratch loss in float64 on `samples` coordinates per
    parameter, against Keras's gradient there.

    It needs no backward pass at all, so a wrong scratch backward shows in its scratch-vs-Keras row alone and
    a formula that both sides got wrong the same way shows here. In a float32 comparison both witnesses are
    taken on float64 twins with the same weights (upcasting float32 is exact).
    """
    if model.dtype != np.float64:
        weights = model.get_weights()
        twin, keras64 = build_pair(model.architecture, "float64", model.seed)
        twin.set_weights(weights)
        keras64.set_weights(twin.get_weights())
        for ours, ours64, theirs64 in zip(model.layers, twin.layers, keras64.layers):
            if ours.kind == "dropout":
                ours64.fix_mask(ours.fixed_mask)
                theirs64.mask = ours.fixed_mask
        model = twin
        x, y = x.astype(np.float64), y.astype(np.float64)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, np.float64)
        keras_grads = keras_impl.loss_and_gradients(keras64, x, y, loss.name, loss.config(), sample_weight).grads
    points = gradcheck(
        model, x, y, loss, n_samples=samples, seed=seed, analytic=keras_grads, sample_weight=sample_weight
    )
    analytic = np.array([p.analytic for p in points])
    numerical = np.array([p.numerical for p in points])
    rel = max_rel_error(analytic, numerical)
    return Row(
        f"numerical grad vs Keras ({len(points)} coords, float64)",
        (len(points),),
        max_abs_error(analytic, numerical),
        rel,
        rel,
        "max-rel",
        GRADCHECK_TOL,
    )


def share_dropout_masks(scratch: Sequential, keras_model: Any, n: int) -> None:
    """Draw each Dropout layer's keep-mask once (scratch generator) and fix the same mask on both sides."""
    keras_layers = keras_model.layers
    for ours, theirs in zip(scratch.layers, keras_layers):
        if ours.kind == "dropout":
            width = ours.output_width
            mask = ours.draw_mask((n, width))
            ours.fix_mask(mask)
            theirs.mask = mask


def compare_models(
    scratch: Sequential,
    keras_model: Any,
    x: Array,
    y: Array,
    loss: str | Loss = "categorical_crossentropy",
    sample_weight: Array | None = None,
    gradcheck_samples: int = 8,
    seed: int = 0,
    config: dict[str, Any] | None = None,
) -> Report:
    """Copy the scratch weights into Keras, check the round trip, run one batch through both and compare
    loss, output, every parameter gradient and the input gradient; then the numerical-gradient witness."""
    loss = get_loss(loss)
    dtype = scratch.dtype.name
    weights = scratch.get_weights()
    keras_model.set_weights(weights)
    back = keras_model.get_weights()
    rows = [
        Row(
            "weights round trip",
            (sum(w.size for w in weights),),
            max(max_abs_error(a, b) for a, b in zip(weights, back)),
            max(max_rel_error(a, b) for a, b in zip(weights, back)),
            max(max_abs_error(a, b) for a, b in zip(weights, back)),
            "exact",
            ROUND_TRIP_TOL,
        )
    ]
    x = np.asarray(x).astype(dtype, copy=False)
    y = np.asarray(y).astype(dtype, copy=False)
    share_dropout_masks(scratch, keras_model, len(x))
    scratch.backward_pass(x, y, loss, sample_weight)  # twice: gradients that accumulate across calls show up
    scratch.set_weights(weights)  # the first pass moved the moving statistics; the compared pass starts afresh
    ours = scratch.backward_pass(x, y, loss, sample_weight)
    ours_trace = scratch_trace(scratch)
    scales = gradient_scales(scratch, y, loss, ours.fused, sample_weight)
    theirs = keras_impl.loss_and_gradients(keras_model, x, y, loss.name, loss.config(), sample_weight)
    rows.append(tensor_row("loss", np.array(ours.loss), np.array(theirs.loss), dtype))
    rows.append(tensor_row("output", ours.output, theirs.output, dtype, scales.output))
    trainable = [t for layer in scratch.layers for t in layer.trainable]
    state_after = keras_model.get_weights()
    for name, g, k, s, t, w_ours, w_theirs in zip(
        weight_names(scratch), ours.grads, theirs.grads, scales.params, trainable, scratch.get_weights(), state_after
    ):
        if t:
            rows.append(tensor_row(f"grad {name}", g, k, dtype, s))
        else:  # a non-trainable weight (moving statistics): compare its value after the training pass
            rows.append(tensor_row(f"state {name} after step", w_ours, w_theirs, dtype, s))
    rows.append(tensor_row("grad input", ours.input_grad, theirs.input_grad, dtype, scales.input_grad))
    keras_steps = keras_trace(keras_model, x, y, loss.name, loss.config(), sample_weight)
    steps = build_trace(scratch, ours_trace, keras_steps, ours.grads, theirs.grads, (ours.loss, theirs.loss),
                        ours.fused, (ours.input_grad, theirs.input_grad), dtype, scales)
    if gradcheck_samples:
        rows.append(gradcheck_row(scratch, x, y, loss, theirs.grads, gradcheck_samples, seed, sample_weight))
    return Report(config or {}, rows, keras_impl.settings(), steps, diagnose(steps))


def scratch_trace(model: Sequential) -> list[dict[str, Array]]:
    """Copies of each scratch layer's recorded Z, A, dA, dZ after a backward pass (whatever the layer has)."""
    return [
        {key: np.array(getattr(layer, key)) for key in ("Z", "A", "dA", "dZ") if getattr(layer, key, None) is not None}
        for layer in model.layers
    ]


def build_pair(arch: str | Architecture, dtype: str = "float64", seed: int | None = 0) -> tuple[Sequential, Any]:
    """Both sides from one description: the scratch model initialised from `seed`, and its Keras twin (its
    weights are set from the scratch side by compare_models or run_training)."""
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    return Sequential.from_architecture(arch, dtype=dtype, seed=seed), keras_impl.build_model(arch, dtype)


def run_comparison(
    arch: str | Architecture = "64-32-16-10",
    batch: int = 32,
    dtype: str = "float64",
    seed: int = 0,
    data: str = "synthetic",
    loss: str | Loss = "categorical_crossentropy",
    gradcheck_samples: int = 8,
) -> Report:
    """Build both sides from one description, initialise the scratch side from `seed`, and compare on one batch."""
    loss = get_loss(loss)
    scratch, keras_model = build_pair(arch, dtype, seed)
    arch = scratch.architecture
    x, y = load_batch(data, arch.input_dim, arch.output_dim, batch, seed)
    if data == "synthetic" and loss.name in TARGET_KINDS:
        y = targets(TARGET_KINDS[loss.name], len(x), arch.output_dim, np.random.default_rng(seed + 1))
    elif loss.name == "sparse_categorical_crossentropy":
        y = y.argmax(axis=1).astype(np.float64)  # one-hot data set labels -> class indices
    config = {"arch": str(arch), "batch": int(x.shape[0]), "dtype": dtype, "seed": seed, "data": data, "loss": repr(loss)}
    return compare_models(scratch, keras_model, x, y, loss, gradcheck_samples=gradcheck_samples, seed=seed, config=config)
