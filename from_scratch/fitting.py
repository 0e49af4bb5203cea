"""Training a model as keras.Model trains one: `compile`, `train_step`, `evaluate`, `fit`, and the History they
record. A mixin of `from_scratch.graph.Model` (so of `Sequential`), written against its passes only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from from_scratch.errors import BadInputError, check_count, unknown_name
from from_scratch.losses import Loss, OutputLosses, get_loss
from from_scratch.optimizers import Optimizer, get_optimizer

Array = np.ndarray


def accuracy(y_true: Array, y_pred: Array) -> float:
    """Fraction of rows whose arg-max matches (one column: threshold 0.5, as binary accuracy)."""
    if y_pred.shape[-1] == 1:
        return float(np.mean((y_pred[:, 0] > 0.5) == (y_true[:, 0] > 0.5)))
    return float(np.mean(y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)))


METRICS = {"accuracy": accuracy}


class History:
    """Like keras.callbacks.History: `history` maps each logged name to its list of per-epoch values."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


def _rows(data: Any, rows: Array) -> Any:
    """The rows of one array, or of each array of a list (a model of several inputs or outputs)."""
    if isinstance(data, (list, tuple)):
        return [np.asarray(a)[rows] for a in data]
    return data[rows]


def _count(data: Any) -> int:
    first = data[0] if isinstance(data, (list, tuple)) else data
    return len(first) if np.ndim(first) else 0


class Training:
    """compile / train_step / evaluate / fit on a model's `backward_pass` and `forward`."""

    def compile(
        self,
        optimizer: str | Optimizer = "sgd",
        loss: Any = "categorical_crossentropy",
        metrics: Sequence[str] = (),
        loss_weights: Sequence[float] | None = None,
    ) -> None:
        """Choose the optimizer, the loss (one per output for several outputs), the loss weights and the metrics
        ("accuracy") that `fit` and `train_step` use."""
        if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics):
            raise BadInputError(f"compile: metrics must be a list of names such as ['accuracy'], got {metrics!r}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise unknown_name("metric", unknown[0], METRICS)
        self.optimizer = get_optimizer(optimizer)
        if loss_weights is None and isinstance(loss, OutputLosses):
            loss_weights = loss.weights
        self.losses = self._losses(loss)
        self.loss = self.losses[0] if len(self.losses) == 1 else self.losses
        self.loss_weights = None if loss_weights is None else self._loss_weights(loss_weights)
        self.metrics = list(metrics)

    def train_step(self, x: Any, y: Any) -> float:
        """One step on one batch: forward, backward, optimizer update. Returns the batch loss before the update."""
        self._check_compiled("train_step")
        result = self.backward_pass(x, y, self.loss, input_grad=False, loss_weights=self.loss_weights)
        self.optimizer.update([p for layer in self.layers for p in layer.params], result.grads, self.trainable)
        self.last_output = result.output
        return result.loss

    def _check_compiled(self, what: str) -> None:
        if not hasattr(self, "optimizer"):
            raise BadInputError(f"{what}: call compile(optimizer=..., loss=...) first")

    def _metrics(self, ys: list[Array], outputs: list[Array]) -> dict[str, float]:
        """Each metric per output (named `<output>_<metric>` for several outputs, as Keras logs them)."""
        logs = {}
        several = len(outputs) > 1
        for t, loss, y, p in zip(self.outputs, self.losses, ys, outputs):
            for name in self.metrics:
                key = f"{t.node.name}_{name}" if several else name
                logs[key] = METRICS[name](loss.prepare_targets(np.asarray(y).astype(self.dtype), p), p)
        return logs

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Loss (inference mode) and metrics on (x, y)."""
        self._check_compiled("evaluate")
        outputs = self._run(self._as_inputs(x), False)[0]
        ys = self._as_targets_all(y, self.losses, outputs)
        logs = {"loss": float(self._inference_loss(ys, outputs))}
        logs.update(self._metrics(ys, outputs))
        return logs

    def _inference_loss(self, ys: list[Array], outputs: list[Array]) -> float:
        """sum_o w_o L_o in inference mode, each from its logits where Keras takes them."""
        total = 0.0
        weights = self.loss_weights or [None] * len(outputs)
        for o, (loss, y, p, w) in enumerate(zip(self.losses, ys, outputs, weights)):
            at = self.logits_node(o, loss, training=False)
            value = loss.from_logits_value(y, self.nodes[at].layer.Z) if at is not None else loss(y, p)
            total = total + (value if w is None else value * w)
        return total

    def fit(
        self,
        x: Any,
        y: Any,
        batch_size: int = 32,
        epochs: int = 1,
        shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None,
        seed: int | None = None,
    ) -> History:
        """Minibatch training as keras.Model.fit: each epoch visits the samples (shuffled with a seeded NumPy
        generator when `shuffle`) in batches of `batch_size`, the last one partial. The history records, per
        epoch, the batch losses' mean weighted by batch size (as Keras's loss tracker) and the metrics."""
        batch_size = check_count("fit", "batch_size", batch_size)
        if validation_data is not None and not (isinstance(validation_data, tuple) and len(validation_data) == 2):
            raise BadInputError(f"fit: validation_data must be a tuple (x, y), got {validation_data!r:.60}")
        epochs = check_count("fit", "epochs", epochs, low=0)
        xs = self._as_inputs(x)
        x = xs if len(xs) > 1 else xs[0]
        y = [np.asarray(a) for a in y] if isinstance(y, (list, tuple)) else np.asarray(y)
        if _count(y) != len(xs[0]):
            raise BadInputError(f"fit: {len(xs[0])} input rows but {_count(y) or 'no'} label rows")
        if not hasattr(self, "optimizer"):
            raise BadInputError("fit: call compile(optimizer=..., loss=...) first")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        history = History()
        n = len(xs[0])
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            total, seen, correct = 0.0, 0, {}
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                yb = _rows(y, rows)
                total += self.train_step(_rows(x, rows), yb) * len(rows)
                seen += len(rows)
                outputs = self.last_output if isinstance(self.last_output, list) else [self.last_output]
                for key, value in self._metrics(yb if isinstance(yb, list) else [yb], outputs).items():
                    correct[key] = correct.get(key, 0.0) + value * len(rows)
            logs = {"loss": total / seen}
            logs.update({key: value / seen for key, value in correct.items()})
            if validation_data is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(*validation_data).items()})
            history.append(logs)
        return history

    loss: Loss | list[Loss]


__all__ = ["METRICS", "History", "Training", "accuracy", "get_loss"]
