"""Training parity: both sides over the same minibatch sequence, compared after every step.

The scratch model and its Keras twin start from the same weights, see the same batches in the same order (one
seeded permutation per epoch, the last batch partial) and update with the same optimizer configuration. After
every step the harness records each side's batch loss and the parameter difference; after each epoch, loss and
accuracy on the whole training set (inference mode) on both sides.

A chain and a graph take one code path: the data are handled as one array per input and per output (a model of
several inputs takes x as a list, one of several outputs y as a list, with one loss per output and `loss_weights`,
L = sum_o w_o L_o as Keras's compiled loss sums them), and a chain is the graph of one input and one output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compare.data import check_training_memory
from compare.diagnosis import describe
from compare.harness import build_pair, share_dropout_masks
from compare.terms import forward_term_sweep, near_kinks
from from_scratch.arch import Architecture
from from_scratch.errors import BadInputError, a_or_an, check_count
from from_scratch.graph import Model
from from_scratch.graph_arch import GraphArchitecture
from from_scratch.losses import Loss, OutputLosses, get_loss
from from_scratch.model import accuracy
from from_scratch.optimizers import Optimizer, get_optimizer
from keras_impl.model import evaluate_loss, train_step
from keras_impl.optimizers import make_optimizer

Array = np.ndarray

#: float64: final parameters, ||scratch - keras|| / ||keras|| over all weights. Measured over 10 digits epochs
#: (290 steps, 64-32-16-10): 2e-16 to 4e-16 for Adam, AMSGrad, AdamW, RMSprop, Adagrad and plain SGD, 1.5e-15
#: (Nesterov) and 5.6e-15 (momentum 0.9 at lr 0.1, which amplifies rounding most); a formula difference (a
#: constant off by one float32 ulp) reaches 1e-9 within a few steps.
TRAIN_F64_TOL = 1e-12

#: float32, the floor of the bound: per step each side rounds the gradient at ~1e-7 relative and the errors of
#: independent steps add up, at worst linearly: F32_TRAIN_PER_STEP x steps, relative to the parameters' norm.
F32_TRAIN_PER_STEP = 1e-6

#: float32, the part that follows the trajectory: training can amplify rounding (SGD with momentum 0.9 at lr 0.1 on
#: digits turned float32 rounding into a 6e-3 parameter difference in 290 steps, with two predictions flipped). How
#: much float32 rounding moves *this* trajectory is measured in the run itself: a float64 scratch copy trained in
#: lockstep gives s = ||W_scratch32 - W_scratch64|| / ||W_scratch64||. Two float32 implementations that are both
#: correct each sit about s from the exact trajectory, so they differ by about 2 s at most when their errors are
#: unrelated; a formula difference pushes one side far outside. The bound is max(F32_TRAIN_PER_STEP x steps,
#: F32_NOISE_FACTOR x s) with F32_NOISE_FACTOR = 10.
F32_NOISE_FACTOR = 10.0


def train_tolerance(dtype: str, steps: int, float32_sensitivity: float = 0.0) -> float:
    """The parameter bound after `steps` steps in `dtype`; in float32 it grows with the measured sensitivity of
    the trajectory to float32 rounding (see the constants above)."""
    if dtype == "float64":
        return TRAIN_F64_TOL
    return max(F32_TRAIN_PER_STEP * steps, F32_NOISE_FACTOR * float32_sensitivity)


@dataclass
class TrainingReport:
    """Per-step and per-epoch records of a training-parity run, and its verdict."""

    config: dict[str, Any]
    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    final_param_diff: float = 0.0
    tol: float = 0.0
    same_predictions: bool = True
    mismatched_predictions: int = 0
    confusion: list[list[int]] | None = None
    #: The first Conv2D layer's learned kernels (kh, kw, C, F) at the end, {"scratch": ..., "keras": ...}, for --plot.
    filters: dict[str, Array] | None = None
    diagnosis: str | None = None

    @property
    def passed(self) -> bool:
        """Parameters within the bound; in float64 also the same prediction on every sample. (In float32 a sample
        near a decision boundary may flip within the float32 bound; the count is reported, not failed.)"""
        predictions_ok = self.same_predictions or self.config.get("dtype") == "float32"
        return bool(np.isfinite(self.final_param_diff) and self.final_param_diff <= self.tol and predictions_ok)

    def verdict(self) -> str:
        what = f"final parameters {self.final_param_diff:.2e} norm-relative (tolerance {self.tol:.0e}), " + (
            "the same predictions on every sample"
            if self.same_predictions
            else f"{self.mismatched_predictions} predictions differ"
        )
        return f"{'PASS' if self.passed else 'FAIL'}: {len(self.steps)} steps, {what}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "epochs": self.epochs,
            "steps": self.steps,
            "final_param_diff": self.final_param_diff,
            "tol": self.tol,
            "same_predictions": self.same_predictions,
            "passed": self.passed,
            "verdict": self.verdict(),
            "diagnosis": self.diagnosis,
        }


def param_diff(ours: list[Array], theirs: list[Array]) -> tuple[float, float]:
    """(max |a - b| over all weights, ||a - b|| / ||b|| over all weights concatenated)."""
    a = np.concatenate([np.ravel(w).astype(np.float64) for w in ours])
    b = np.concatenate([np.ravel(w).astype(np.float64) for w in theirs])
    norm = np.linalg.norm(b)
    return float(np.abs(a - b).max()), float(np.linalg.norm(a - b) / norm) if norm else 0.0


def run_training(
    arch: str | Architecture | GraphArchitecture,
    x: Array | list[Array],
    y: Array | list[Array],
    optimizer: str | Optimizer = "adam",
    optimizer_config: dict[str, Any] | None = None,
    loss: Any = "categorical_crossentropy",
    epochs: int = 10,
    batch_size: int = 64,
    dtype: str = "float64",
    seed: int = 0,
    shuffle: bool = True,
    max_steps: int | None = None,
    on_step: Callable[[int, int, int, int], None] | None = None,
    initial_weights: list[Array] | None = None,
    loss_weights: list[float] | None = None,
) -> TrainingReport:
    """Train both sides side by side on (x, y) and compare them after every step.

    `arch`: a chain (Architecture or its text) or a graph (GraphArchitecture). A model of several inputs takes x as a
    list of arrays (N, *input_shape), one per input in the description's order; one of several outputs takes y as a
    list, one per output, and `loss` as one loss for every output or a list with one per output (or an
    OutputLosses), weighted by `loss_weights` (w_o per output, L = sum_o w_o L_o).
    Both start from the weights the scratch side draws from `seed`, or from `initial_weights` (get_weights() order,
    e.g. a trained Keras model's: compare.keras_model) when given.

    Accuracy: per epoch "acc_scratch"/"acc_keras" are the (first) output's; a model of several outputs also records
    each output's as "acc_scratch_<output>"/"acc_keras_<output>". Predictions (arg-max, or > 0.5 for one column)
    are compared on every output, and the confusion matrix is the first output's."""
    epochs = check_count("run_training", "epochs", epochs)
    batch_size = check_count("run_training", "batch_size", batch_size)
    if max_steps is not None:
        max_steps = check_count("run_training", "max_steps", max_steps, low=0)
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    graph = arch.graph()
    xs = _per_tensor("x", x, [name for name, _ in graph.inputs], "input")
    ys = _per_tensor("y", y, list(graph.outputs), "output")
    n = _rows_of(xs, ys)
    losses, weights = _output_losses(loss, loss_weights, len(graph.outputs))
    check_training_memory(arch, n, batch_size, epochs, "training", max_steps=max_steps)
    scratch, keras_model = build_pair(arch, dtype, seed)
    if initial_weights is not None:
        scratch.set_weights(initial_weights)
    arch = scratch.architecture
    keras_model.set_weights(scratch.get_weights())
    opt = get_optimizer(optimizer, **(optimizer_config or {}))
    scratch.compile(opt, losses, metrics=["accuracy"], loss_weights=weights)
    keras_opt = make_optimizer(opt.name, opt.config())
    keras_loss = ([item.name for item in losses], [item.config() for item in losses], weights)
    reference = None
    if dtype == "float32":
        reference = type(scratch).from_architecture(arch, dtype="float64", seed=seed)
        reference.set_weights(scratch.get_weights())
        reference.compile(copy.deepcopy(opt), losses, loss_weights=weights)
    xs = [np.asarray(a).astype(dtype) for a in xs]
    ys = [np.asarray(a).astype(dtype) for a in ys]
    rng = np.random.default_rng(seed)
    n_batches = -(-n // batch_size)
    report = TrainingReport(
        {
            "arch": str(arch),
            "optimizer": repr_optimizer(opt),
            "loss": repr(losses[0] if len(losses) == 1 and weights is None else OutputLosses(losses, weights)),
            "epochs": epochs,
            "batch_size": batch_size,
            "dtype": dtype,
            "seed": seed,
            "samples": n,
        }
    )
    step = 0
    after = scratch.get_weights(), keras_model.get_weights()  # each step's "before" is the previous "after"
    try:
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            for b, start in enumerate(range(0, n, batch_size)):
                if max_steps is not None and step >= max_steps:
                    break
                rows = order[start : start + batch_size]
                xb, yb = _one([a[rows] for a in xs]), _one([a[rows] for a in ys])
                before = after
                share_dropout_masks(scratch, keras_model, len(rows))  # one mask per step, the same on both sides
                if reference is not None:
                    for ours_layer, ref_layer in zip(scratch.layers, reference.layers):
                        if not ours_layer.deterministic:
                            ref_layer.fix_mask(ours_layer.fixed_mask)
                ours = scratch.train_step(xb, yb)
                theirs = train_step(keras_model, keras_opt, xb, yb, *keras_loss).loss
                if not np.isfinite(ours) and not np.isfinite(theirs):  # not a parity question: say so
                    raise BadInputError(
                        f"training diverged on both sides at step {step + 1} (epoch {epoch + 1}): the loss is "
                        f"{ours} here and {theirs} in Keras; lower the learning rate"
                    )
                after = scratch.get_weights(), keras_model.get_weights()
                max_abs, rel = param_diff(*after)
                sensitivity = 0.0
                if reference is not None:  # a float64 scratch copy in lockstep: how far float32 rounding moved it
                    reference.train_step(_float64(xb), _float64(yb))
                    sensitivity = param_diff(after[0], reference.get_weights())[1]
                if report.diagnosis is None and rel > train_tolerance(dtype, step + 1, sensitivity):
                    report.diagnosis = diagnose_step(scratch, step, epoch, before, after, xb)
                report.steps.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss_scratch": ours,
                        "loss_keras": theirs,
                        "param_max_abs": max_abs,
                        "param_norm_rel": rel,
                        "float32_sensitivity": sensitivity,
                    }
                )
                step += 1
                if on_step:
                    on_step(epoch, b + 1, n_batches, epochs)
            report.epochs.append(_epoch_record(epoch, scratch, keras_model, xs, ys, losses, keras_loss, report))
    except KeyboardInterrupt as interrupt:  # Ctrl-C: the caller reports the epochs finished so far
        interrupt.report = report
        raise
    final = scratch.get_weights(), keras_model.get_weights()
    last = report.epochs[-1] if report.epochs else {}
    blown = not np.isfinite(last.get("loss_scratch", 0.0)) and not np.isfinite(last.get("loss_keras", 0.0))
    if blown or not all(np.all(np.isfinite(w)) for w in final[0]) and not all(np.all(np.isfinite(w)) for w in final[1]):
        raise BadInputError(  # the last update blew up on both sides: not a parity question
            f"training diverged on both sides by the last step ({len(report.steps)}): the parameters or the loss "
            "are no longer finite; lower the learning rate"
        )
    _, report.final_param_diff = param_diff(*final)
    report.tol = train_tolerance(
        dtype, len(report.steps), report.steps[-1]["float32_sensitivity"] if report.steps else 0
    )
    ours_pred = _several(scratch.predict(_one(xs)))
    theirs_pred = [np.asarray(p) for p in _several(keras_model(_one(xs), training=False))]
    report.mismatched_predictions = 0
    for o, (loss_o, y_o, a_o, b_o) in enumerate(zip(losses, ys, ours_pred, theirs_pred)):
        if a_o.shape[-1] > 1:
            a, b = a_o.argmax(axis=-1), b_o.argmax(axis=-1)
            if o == 0:
                truth = loss_o.prepare_targets(y_o, a_o).argmax(axis=-1)
                k = a_o.shape[-1]
                confusion = np.zeros((k, k), dtype=int)
                np.add.at(confusion, (truth, a), 1)
                report.confusion = confusion.tolist()
        else:
            a, b = a_o[:, 0] > 0.5, b_o[:, 0] > 0.5
        report.mismatched_predictions += int(np.sum(a != b))
    report.same_predictions = report.mismatched_predictions == 0
    offsets = np.cumsum([0] + [len(layer.params) for layer in scratch.layers])
    for i, layer in enumerate(scratch.layers):
        if layer.kind == "conv2d":
            report.filters = {"scratch": final[0][offsets[i]], "keras": final[1][offsets[i]]}
            break
    return report


def _epoch_record(
    epoch: int,
    scratch: Model,
    keras_model: Any,
    xs: list[Array],
    ys: list[Array],
    losses: list[Loss],
    keras_loss: tuple[list[str], list[dict[str, Any]], list[float] | None],
    report: TrainingReport,
) -> dict[str, float]:
    """Loss and accuracy of both sides on the whole training set in inference mode after `epoch`, and the last
    step's parameter difference. Accuracy per output under "acc_<side>_<output>" for several outputs; "acc_<side>"
    is the first output's."""
    ours_eval = scratch.evaluate(_one(xs), _one(ys))
    keras_value, keras_out = evaluate_loss(keras_model, _one(xs), _one(ys), *keras_loss)
    names = [t.node.name for t in scratch.outputs]
    ours_acc = [ours_eval["accuracy"]] if len(names) == 1 else [ours_eval[f"{name}_accuracy"] for name in names]
    keras_acc = [accuracy(loss.prepare_targets(y, p), p) for loss, y, p in zip(losses, ys, _several(keras_out))]
    record = {
        "epoch": epoch + 1,
        "loss_scratch": ours_eval["loss"],
        "loss_keras": keras_value,
        "acc_scratch": ours_acc[0],
        "acc_keras": keras_acc[0],
        "param_max_abs": report.steps[-1]["param_max_abs"] if report.steps else 0.0,
        "param_norm_rel": report.steps[-1]["param_norm_rel"] if report.steps else 0.0,
    }
    if len(names) > 1:
        for name, ours, theirs in zip(names, ours_acc, keras_acc):
            record[f"acc_scratch_{name}"] = ours
            record[f"acc_keras_{name}"] = theirs
    return record


def _per_tensor(what: str, data: Any, names: list[str], kind: str) -> list[Any]:
    """One array per model input (output): `data` itself for a model of one, the items of a list for several."""
    if len(names) == 1:
        if isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(data[0], np.ndarray):
            return [data[0]]
        return [data]
    if not isinstance(data, (list, tuple)) or len(data) != len(names):
        got = f"a list of {len(data)}" if isinstance(data, (list, tuple)) else a_or_an(type(data).__name__)
        raise BadInputError(
            f"run_training: the model has {len(names)} {kind}s ({', '.join(names)}): give {what} as a list of "
            f"{len(names)} arrays, got {got}"
        )
    return list(data)


def _rows_of(xs: list[Any], ys: list[Any]) -> int:
    """The number of samples, the same in every input and label array."""
    counts = [len(a) if np.ndim(a) else 0 for a in (*xs, *ys)]
    if len(set(counts)) > 1 or not counts[0]:
        raise BadInputError(
            f"run_training: the inputs and labels must have the same number of rows (at least one), got "
            f"{counts[: len(xs)]} input rows and {counts[len(xs) :]} label rows"
        )
    return counts[0]


def _output_losses(loss: Any, loss_weights: Any, outputs: int) -> tuple[list[Loss], list[float] | None]:
    """One loss per output (a single one for every output) and the loss weights (None: each 1, unweighted)."""
    if isinstance(loss, OutputLosses):
        loss, loss_weights = loss.losses, loss.weights if loss_weights is None else loss_weights
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss] * outputs
    if len(losses) != outputs:
        raise BadInputError(f"loss: {len(losses)} losses for {outputs} output(s); give one per output")
    grouped = OutputLosses([get_loss(item) for item in losses], loss_weights)
    return grouped.losses, grouped.weights


def _several(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _one(arrays: list[Array]) -> Array | list[Array]:
    """The array of a model of one input (output), the list for several."""
    return arrays[0] if len(arrays) == 1 else arrays


def _float64(value: Array | list[Array]) -> Array | list[Array]:
    return [a.astype(np.float64) for a in value] if isinstance(value, list) else value.astype(np.float64)


def diagnose_step(
    scratch: Model,
    step: int,
    epoch: int,
    before: tuple[list[Array], list[Array]],
    after: tuple[list[Array], list[Array]],
    x: Array | list[Array],
) -> str:
    """Where a run first parts: the step, the weight that moved most differently, and the pattern of the two
    updates (scratch's W_after - W_before against Keras's)."""
    names = scratch.weight_names()
    diffs = [float(np.abs(a - b).max()) for a, b in zip(*after)]
    k = int(np.argmax(diffs))
    ours_update, keras_update = after[0][k] - before[0][k], after[1][k] - before[1][k]
    started_equal = all(np.array_equal(a, b) for a, b in zip(*before))
    lead = (f"parameters identical before step {step + 1}, " if started_equal else "") + (
        f"the run first parts at step {step + 1} (epoch {epoch + 1})"
    )
    update = describe(ours_update, keras_update, n=len(_several(x)[0]))
    text = f"{lead}; largest difference in {names[k]} ({diffs[k]:.2e}); its update: {update}"
    near = kink_inputs_within(scratch, x, param_diff(*before)[1])
    if near and not started_equal:
        text += (
            f"; {near} ReLU input(s) of this batch lie within the two sides' parameter difference of 0: a kink "
            "crossing (the masks may differ with no formula wrong), which float32 rounding makes possible"
        )
    return text


def kink_inputs_within(scratch: Model, x: Array | list[Array], relative: float) -> int:
    """How many ReLU-like inputs of the last batch `x` have |Z| <= 10 (relative + eps) M_Z, M_Z = |X| |W| + |b|
    propagated from the batch: inputs that parameters `relative` apart could put on either side of 0."""
    terms = forward_term_sweep(scratch, x)
    if terms is None:
        return 0
    eps = float(np.finfo(scratch.dtype).eps)
    records = []
    for i, node in enumerate(scratch.nodes):  # per node: a shared layer's caches of each call
        scratch._restore(i)
        records.append(node.layer.record())
    return sum(near_kinks(scratch, records, terms, 10 * (relative + eps)).values())


def repr_optimizer(opt: Optimizer) -> str:
    args = ", ".join(f"{k}={v}" for k, v in opt.config().items() if v is not None)
    return f"{type(opt).__name__}({args})"
