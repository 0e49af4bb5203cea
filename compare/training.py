"""Training parity: both sides over the same minibatch sequence, compared after every step.

The scratch model and its Keras twin start from the same weights, see the same batches in the same order (one
seeded permutation per epoch, the last batch partial) and update with the same optimizer configuration. After
every step the harness records each side's batch loss and the parameter difference; after each epoch, loss and
accuracy on the whole training set (inference mode) on both sides.
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
from from_scratch.errors import BadInputError, check_count
from from_scratch.losses import get_loss
from from_scratch.model import Sequential, accuracy
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
    arch: str | Architecture,
    x: Array,
    y: Array,
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
) -> TrainingReport:
    """Train both sides side by side on (x, y) and compare them after every step.

    Both start from the weights the scratch side draws from `seed`, or from `initial_weights` (get_weights() order,
    e.g. a trained Keras model's: compare.keras_model) when given."""
    loss = get_loss(loss)
    epochs = check_count("run_training", "epochs", epochs)
    batch_size = check_count("run_training", "batch_size", batch_size)
    if max_steps is not None:
        max_steps = check_count("run_training", "max_steps", max_steps, low=0)
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    check_training_memory(arch, len(x), batch_size, epochs, "training", max_steps=max_steps)
    scratch, keras_model = build_pair(arch, dtype, seed)
    if initial_weights is not None:
        scratch.set_weights(initial_weights)
    arch = scratch.architecture
    keras_model.set_weights(scratch.get_weights())
    opt = get_optimizer(optimizer, **(optimizer_config or {}))
    scratch.compile(opt, loss, metrics=["accuracy"])
    keras_opt = make_optimizer(opt.name, opt.config())
    reference = None
    if dtype == "float32":
        reference = Sequential.from_architecture(arch, dtype="float64", seed=seed)
        reference.set_weights(scratch.get_weights())
        reference.compile(copy.deepcopy(opt), loss)
    x = np.asarray(x).astype(dtype)
    y = np.asarray(y).astype(dtype)
    rng = np.random.default_rng(seed)
    n_batches = -(-len(x) // batch_size)
    report = TrainingReport(
        {
            "arch": str(arch),
            "optimizer": repr_optimizer(opt),
            "loss": repr(loss),
            "epochs": epochs,
            "batch_size": batch_size,
            "dtype": dtype,
            "seed": seed,
            "samples": len(x),
        }
    )
    step = 0
    after = scratch.get_weights(), keras_model.get_weights()  # each step's "before" is the previous "after"
    try:
        for epoch in range(epochs):
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            for b, start in enumerate(range(0, len(x), batch_size)):
                if max_steps is not None and step >= max_steps:
                    break
                rows = order[start : start + batch_size]
                before = after
                share_dropout_masks(scratch, keras_model, len(rows))  # one mask per step, the same on both sides
                if reference is not None:
                    for ours_layer, ref_layer in zip(scratch.layers, reference.layers):
                        if not ours_layer.deterministic:
                            ref_layer.fix_mask(ours_layer.fixed_mask)
                ours = scratch.train_step(x[rows], y[rows])
                theirs = train_step(keras_model, keras_opt, x[rows], y[rows], loss.name, loss.config()).loss
                if not np.isfinite(ours) and not np.isfinite(theirs):  # not a parity question: say so
                    raise BadInputError(
                        f"training diverged on both sides at step {step + 1} (epoch {epoch + 1}): the loss is "
                        f"{ours} here and {theirs} in Keras; lower the learning rate"
                    )
                after = scratch.get_weights(), keras_model.get_weights()
                max_abs, rel = param_diff(*after)
                sensitivity = 0.0
                if (
                    reference is not None
                ):  # the float64 scratch copy in lockstep: how far float32 rounding moved the run
                    reference.train_step(x[rows].astype(np.float64), y[rows].astype(np.float64))
                    sensitivity = param_diff(after[0], reference.get_weights())[1]
                if report.diagnosis is None and rel > train_tolerance(dtype, step + 1, sensitivity):
                    report.diagnosis = diagnose_step(scratch, step, epoch, before, after, x[rows])
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
            ours_eval = scratch.evaluate(x, y)
            keras_loss, keras_out = evaluate_loss(keras_model, x, y, loss.name, loss.config())
            keras_acc = accuracy(loss.prepare_targets(y, keras_out), keras_out)
            report.epochs.append(
                {
                    "epoch": epoch + 1,
                    "loss_scratch": ours_eval["loss"],
                    "loss_keras": keras_loss,
                    "acc_scratch": ours_eval["accuracy"],
                    "acc_keras": keras_acc,
                    "param_max_abs": report.steps[-1]["param_max_abs"] if report.steps else 0.0,
                    "param_norm_rel": report.steps[-1]["param_norm_rel"] if report.steps else 0.0,
                }
            )
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
    ours_pred = scratch.predict(x)
    theirs_pred = np.asarray(keras_model(x, training=False))
    if ours_pred.shape[-1] > 1:
        a, b = ours_pred.argmax(axis=-1), theirs_pred.argmax(axis=-1)
        truth = loss.prepare_targets(y, ours_pred).argmax(axis=-1)
        k = ours_pred.shape[-1]
        confusion = np.zeros((k, k), dtype=int)
        np.add.at(confusion, (truth, a), 1)
        report.confusion = confusion.tolist()
    else:
        a, b = ours_pred[:, 0] > 0.5, theirs_pred[:, 0] > 0.5
    report.mismatched_predictions = int(np.sum(a != b))
    report.same_predictions = report.mismatched_predictions == 0
    offsets = np.cumsum([0] + [len(layer.params) for layer in scratch.layers])
    for i, layer in enumerate(scratch.layers):
        if layer.kind == "conv2d":
            report.filters = {"scratch": final[0][offsets[i]], "keras": final[1][offsets[i]]}
            break
    return report


def diagnose_step(
    scratch: Sequential,
    step: int,
    epoch: int,
    before: tuple[list[Array], list[Array]],
    after: tuple[list[Array], list[Array]],
    x: Array,
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
    update = describe(ours_update, keras_update, n=len(x))
    text = f"{lead}; largest difference in {names[k]} ({diffs[k]:.2e}); its update: {update}"
    near = kink_inputs_within(scratch, x, param_diff(*before)[1])
    if near and not started_equal:
        text += (
            f"; {near} ReLU input(s) of this batch lie within the two sides' parameter difference of 0: a kink "
            "crossing (the masks may differ with no formula wrong), which float32 rounding makes possible"
        )
    return text


def kink_inputs_within(scratch: Sequential, x: Array, relative: float) -> int:
    """How many ReLU-like inputs of the last batch `x` have |Z| <= 10 (relative + eps) M_Z, M_Z = |X| |W| + |b|
    propagated from the batch: inputs that parameters `relative` apart could put on either side of 0."""
    terms = forward_term_sweep(scratch, x)
    if terms is None:
        return 0
    eps = float(np.finfo(scratch.dtype).eps)
    records = [layer.record() for layer in scratch.layers]
    return sum(near_kinks(scratch, records, terms, 10 * (relative + eps)).values())


def repr_optimizer(opt: Optimizer) -> str:
    args = ", ".join(f"{k}={v}" for k, v in opt.config().items() if v is not None)
    return f"{type(opt).__name__}({args})"
