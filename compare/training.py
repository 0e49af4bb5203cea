"""Training parity: both sides over the same minibatch sequence, compared after every step.

The scratch model and its Keras twin start from the same weights, see the same batches in the same order (one
seeded permutation per epoch, the last batch partial) and update with the same optimizer configuration. After
every step the harness records each side's batch loss and the parameter difference; after each epoch, loss and
accuracy on the whole training set (inference mode) on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import keras_impl
from keras_impl.model import train_step
from keras_impl.optimizers import make_optimizer
from from_scratch.arch import Architecture
from from_scratch.losses import get_loss
from from_scratch.model import Sequential, accuracy
from from_scratch.optimizers import Optimizer, get_optimizer

Array = np.ndarray

#: float64: final parameters, ||scratch - keras|| / ||keras|| over all weights. Measured: 0 (bit-identical) for
#: every optimizer over 100 steps and over 10 digits epochs; rounding alone would stay near 1e-15 over hundreds of
#: steps, and a formula difference (a constant off by one float32 ulp) reaches 1e-9 within a few steps.
TRAIN_F64_TOL = 1e-12

#: float32: per step each side rounds the gradient at ~1e-7 relative (the single-step bound F32_TOL is 1e-5 on the
#: term-magnitude measure); the optimizer turns a relative gradient error into a parameter error of at most
#: lr x |g| x that error per step, and the errors of independent steps add up at worst linearly. The named bound is
#: F32_TRAIN_PER_STEP x steps, with F32_TRAIN_PER_STEP = 1e-6 relative to the parameters' norm: ten times the
#: measured worst per-step drift in float32 (see the note in README), so a real formula difference (1e-3 and up
#: within tens of steps) still fails.
F32_TRAIN_PER_STEP = 1e-6


def train_tolerance(dtype: str, steps: int) -> float:
    """The final-parameter bound for a run of `steps` steps in `dtype` (see the constants above)."""
    return TRAIN_F64_TOL if dtype == "float64" else F32_TRAIN_PER_STEP * steps


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
    diagnosis: str | None = None

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.final_param_diff) and self.final_param_diff <= self.tol and self.same_predictions)

    def verdict(self) -> str:
        what = (f"final parameters {self.final_param_diff:.2e} norm-relative (tolerance {self.tol:.0e}), "
                f"{'the same predictions on every sample' if self.same_predictions else f'{self.mismatched_predictions} predictions differ'}")
        return f"{'PASS' if self.passed else 'FAIL'}: {len(self.steps)} steps, {what}"

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "epochs": self.epochs, "steps": self.steps,
                "final_param_diff": self.final_param_diff, "tol": self.tol,
                "same_predictions": self.same_predictions, "passed": self.passed, "verdict": self.verdict(),
                "diagnosis": self.diagnosis}


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
) -> TrainingReport:
    """Train both sides side by side on (x, y) and compare them after every step."""
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    loss = get_loss(loss)
    scratch = Sequential.from_architecture(arch, dtype=dtype, seed=seed)
    keras_model = keras_impl.build_model(arch, dtype)
    keras_model.set_weights(scratch.get_weights())
    opt = get_optimizer(optimizer, **(optimizer_config or {}))
    scratch.compile(opt, loss, metrics=["accuracy"])
    keras_opt = make_optimizer(opt.name, opt.config())
    x = np.asarray(x).astype(dtype)
    y = np.asarray(y).astype(dtype)
    rng = np.random.default_rng(seed)
    n_batches = -(-len(x) // batch_size)
    report = TrainingReport({"arch": str(arch), "optimizer": repr_optimizer(opt), "loss": repr(loss), "epochs": epochs,
                             "batch_size": batch_size, "dtype": dtype, "seed": seed, "samples": len(x)})
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        for b, start in enumerate(range(0, len(x), batch_size)):
            if max_steps is not None and step >= max_steps:
                break
            rows = order[start : start + batch_size]
            before = scratch.get_weights(), keras_model.get_weights()
            ours = scratch.train_step(x[rows], y[rows])
            theirs = train_step(keras_model, keras_opt, x[rows], y[rows], loss.name, loss.config()).loss
            after = scratch.get_weights(), keras_model.get_weights()
            max_abs, rel = param_diff(*after)
            if report.diagnosis is None and rel > train_tolerance(dtype, step + 1):
                report.diagnosis = diagnose_step(scratch, step, epoch, before, after, len(rows))
            report.steps.append({"step": step, "epoch": epoch, "loss_scratch": ours, "loss_keras": theirs,
                                 "param_max_abs": max_abs, "param_norm_rel": rel})
            step += 1
            if on_step:
                on_step(epoch, b + 1, n_batches, epochs)
        ours_eval = evaluate(scratch.predict(x), scratch, loss, y)
        keras_out = np.asarray(keras_model(x, training=False))
        theirs_eval = evaluate(keras_out, scratch, loss, y, logits=keras_logits(keras_model, x))
        report.epochs.append({"epoch": epoch + 1, "loss_scratch": ours_eval[0], "loss_keras": theirs_eval[0],
                              "acc_scratch": ours_eval[1], "acc_keras": theirs_eval[1],
                              "param_max_abs": report.steps[-1]["param_max_abs"] if report.steps else 0.0,
                              "param_norm_rel": report.steps[-1]["param_norm_rel"] if report.steps else 0.0})
    _, report.final_param_diff = param_diff(scratch.get_weights(), keras_model.get_weights())
    report.tol = train_tolerance(dtype, len(report.steps))
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
    return report


def diagnose_step(scratch: Sequential, step: int, epoch: int, before: tuple[list[Array], list[Array]],
                  after: tuple[list[Array], list[Array]], n: int) -> str:
    """Where a run first parts: the step, the weight that moved most differently, and the pattern of the two
    updates (scratch's W_after - W_before against Keras's)."""
    from compare.diagnosis import describe
    from compare.harness import weight_names

    names = weight_names(scratch)
    diffs = [float(np.abs(a - b).max()) for a, b in zip(*after)]
    k = int(np.argmax(diffs))
    ours_update, keras_update = after[0][k] - before[0][k], after[1][k] - before[1][k]
    started_equal = all(np.array_equal(a, b) for a, b in zip(*before))
    lead = (f"parameters identical before step {step + 1}, " if started_equal else "") + (
        f"the run first parts at step {step + 1} (epoch {epoch + 1})")
    return (f"{lead}; largest difference in {names[k]} ({diffs[k]:.2e}); its update: "
            f"{describe(ours_update, keras_update, n=n)}")


def keras_logits(model: Any, x: Array) -> Array:
    """The output layer's pre-activation on the Keras side (for the fused inference loss)."""
    h = x
    for layer in model.layers[:-1]:
        h = layer(h, training=False)
    last = model.layers[-1]
    return np.asarray(h @ last.kernel.numpy() + last.bias.numpy()) if hasattr(last, "kernel") else np.asarray(h)


def evaluate(output: Array, scratch: Sequential, loss: Any, y: Array, logits: Array | None = None) -> tuple[float, float]:
    """(loss, accuracy) of an output on the whole set, the loss as the scratch side defines it."""
    if scratch.fuses(loss):
        z = scratch.layers[-1].Z if logits is None else logits
        value = loss.from_logits_value(y, z)
    else:
        value = loss(y, output)
    return float(value), accuracy(loss.prepare_targets(y, output), output)


def repr_optimizer(opt: Optimizer) -> str:
    args = ", ".join(f"{k}={v}" for k, v in opt.config().items() if v is not None)
    return f"{type(opt).__name__}({args})"
