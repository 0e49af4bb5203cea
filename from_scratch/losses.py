"""Loss functions with their gradients, reduced as Keras reduces them by default.

Each loss computes one value per sample, l_i, and the Keras default reduction `sum_over_batch_size`:

    L = (1/N) sum_i w_i l_i          (w_i = 1 without sample weights; N = batch size, not sum(w))

so every gradient carries the factor w_i / N:  dL/dY_pred[i] = (w_i / N) dl_i/dY_pred[i].

Keras's hidden-logits path: a tensor produced by Keras's `softmax` or `sigmoid` activation carries its logits,
and the cross-entropy losses then compute from those logits, with no clipping, even with from_logits=False. A
loss whose `fuses_with` contains the output layer's activation is therefore evaluated on the logits Z by
`Sequential.backward_pass`: `per_sample_from_logits(Y, Z)` and `grad_from_logits(Y, Z)`.
Keras quirk: the check is only "has logits", not "has the right kind of logits". A sigmoid output with
categorical cross-entropy is computed as softmax cross-entropy of the sigmoid's logits, and a softmax output with
binary cross-entropy as sigmoid cross-entropy of the softmax's logits; the scratch side does the same.

The registry `LOSSES` maps Keras's string identifiers to classes; keras_impl/losses.py holds the twins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.activations import log_softmax, sigmoid, softmax
from from_scratch.errors import BadInputError, check_real, from_registry

Array = np.ndarray

#: keras.config.epsilon(): the clip applied to probabilities on the probability path.
EPSILON = 1e-7


class Loss:
    """Base class: subclasses give `per_sample(Y, P) -> (N,)` and `per_sample_grad(Y, P) -> (N, K)`.

    Declarations (read by the harness, never kept in a table elsewhere):
    - `fuses_with`: the output activations whose logits Keras uses instead of the probabilities;
    - `target_kind`: the targets it takes: "onehot" (N, K), "labels" (N,), "binary" (N, K) in [0, 1] or
      "regression" (N, K) of any real value;
    - `default_output`: the output activation a model built for it gets unless told otherwise.
    """

    name: str = ""
    fuses_with: tuple[str, ...] = ()
    target_kind: str = "regression"
    default_output: str = "linear"

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        """l_i for each sample.  Y (N, K), P (N, K) -> (N,)."""
        raise NotImplementedError

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        """dl_i/dP_i for each sample (unreduced).  Y (N, K), P (N, K) -> (N, K)."""
        raise NotImplementedError

    def per_sample_from_logits(self, y_true: Array, z: Array) -> Array:
        """l_i computed from the output layer's logits Z (the fused path).  Y (N, K), Z (N, K) -> (N,)."""
        raise NotImplementedError

    def grad_from_logits(self, y_true: Array, z: Array) -> Array:
        """dl_i/dZ_i on the fused path (unreduced).  Y (N, K), Z (N, K) -> (N, K)."""
        raise NotImplementedError

    def prepare_targets(self, y_true: Array, y_pred: Array) -> Array:
        """Targets as the loss uses them (e.g. after label smoothing).  Y (N, K) -> (N, K)."""
        return y_true

    def fused_terms(self, y_abs: Array, p_abs: Array) -> Array:
        """On the fused path, the magnitude of the terms behind the unreduced dl_i/dZ_i, from |Y| and |P|
        (N, K) -> (N, K); the loss's own `reduce_grad` reduces it. Only losses that fuse have one."""
        raise NotImplementedError(f"loss {self.name!r} has no fused path")

    def check_targets(self, y_true: Array, outputs: int) -> None:
        """Refuse labels that do not fit this loss on a model with `outputs` outputs: here, shape (N, outputs)."""
        if y_true.ndim != 2 or y_true.shape[1] != outputs:
            raise BadInputError(
                f"labels: shape {y_true.shape} does not fit {self.name} on {outputs} outputs: "
                f"expected ({y_true.shape[0]}, {outputs})"
            )

    def reduce(self, values: Array, sample_weight: Array | None) -> float:
        """L = sum_i w_i l_i / N (Keras's `sum_over_batch_size`).  values (N,) -> scalar."""
        if sample_weight is not None:
            values = values * sample_weight
        return values.sum() / values.shape[0]

    def reduce_grad(self, grad: Array, sample_weight: Array | None) -> Array:
        """dL/dP = (w_i / N) dl_i/dP_i.  grad (N, K) -> (N, K)."""
        n = grad.shape[0]
        if sample_weight is not None:
            grad = grad * sample_weight[:, None]
        return grad / n

    def __call__(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> float:
        """The reduced loss L on probabilities/outputs P.  Y (N, K), P (N, K) -> scalar."""
        return self.reduce(self.per_sample(self.prepare_targets(y_true, y_pred), y_pred), sample_weight)

    def gradient(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:
        """dL/dP for the reduced loss.  Y (N, K), P (N, K) -> (N, K)."""
        return self.reduce_grad(self.per_sample_grad(self.prepare_targets(y_true, y_pred), y_pred), sample_weight)

    def from_logits_value(self, y_true: Array, z: Array, sample_weight: Array | None = None) -> float:
        """The reduced loss computed on the logits (fused path).  Y (N, K), Z (N, K) -> scalar."""
        return self.reduce(self.per_sample_from_logits(self.prepare_targets(y_true, z), z), sample_weight)

    def gradient_from_logits(self, y_true: Array, z: Array, sample_weight: Array | None = None) -> Array:
        """dL/dZ for the reduced loss on the fused path.  Y (N, K), Z (N, K) -> (N, K)."""
        return self.reduce_grad(self.grad_from_logits(self.prepare_targets(y_true, z), z), sample_weight)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, so the Keras twin can be built with the same ones."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Crossentropy(Loss):
    """What the cross-entropies share: from_logits, label_smoothing in [0, 1], and Keras's hidden-logits path
    from a softmax or sigmoid output (see the module docstring)."""

    fuses_with = ("softmax", "sigmoid")

    def fused_terms(self, y_abs: Array, p_abs: Array) -> Array:
        """dl/dZ = P - Y (softmax cross-entropies): terms |P| + |Y|."""
        return p_abs + y_abs

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = check_real(f"loss {self.name!r}:", "label_smoothing", label_smoothing, 0, 1)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise BadInputError(f"loss {self.name!r}: from_logits must be True or False, got {from_logits!r}")
        self.from_logits = bool(from_logits)

    def config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(Crossentropy):
    """l_i = -sum_k Y_ik log P_ik, with one-hot (or probability) targets Y (N, K).

    - from_logits=True, or the output layer is a softmax (Keras's hidden-logits path):
      l_i = -sum_k Y_ik log_softmax(Z)_ik, and dl_i/dZ_i = P_i - Y_i. This is TensorFlow's
      softmax_cross_entropy_with_logits gradient; it equals the exact (sum_k Y_ik) P_i - Y_i when rows of Y sum to 1.
    - from_logits=False on a plain probability tensor P: P <- P / sum_k P_k, clip to [eps, 1 - eps],
      l_i = -sum_k Y_ik log P_ik (no renormalising after the clip). The clip passes no gradient
      where it is active, but the renormalisation before it still does: P = [0, .5, .5], Y = e_1 gives dl/dP =
      [1, -1, 1], not 0 in the clipped entry.
    - label_smoothing s: Y <- Y (1 - s) + s / K before everything else.
    """

    name = "categorical_crossentropy"
    target_kind = "onehot"
    default_output = "softmax"

    #: How far a row of Y may sum from 1 (float32 rounding of a probability row) before it is refused.
    ROW_SUM_TOL = 1e-6

    def check_targets(self, y_true: Array, outputs: int) -> None:
        """Y (N, K) with rows that are one-hot or probability distributions: TensorFlow's gradient P - Y is the
        true gradient only when every row sums to 1."""
        super().check_targets(y_true, outputs)
        sums = y_true.sum(axis=1)
        bad = np.flatnonzero((y_true < 0).any(axis=1) | (np.abs(sums - 1) > self.ROW_SUM_TOL))
        if bad.size:
            i = int(bad[0])
            raise BadInputError(
                f"labels: row {i} is not one-hot or a probability distribution ({y_true[i].tolist()[:10]} sums to "
                f"{sums[i]:g}); {self.name} needs rows of non-negative numbers that sum to 1"
            )

    def prepare_targets(self, y_true: Array, y_pred: Array) -> Array:
        if self.label_smoothing:
            k = y_true.shape[-1]
            return y_true * (1 - self.label_smoothing) + self.label_smoothing / k
        return y_true

    def per_sample_from_logits(self, y_true: Array, z: Array) -> Array:
        return -(y_true * log_softmax(z)).sum(axis=-1)

    def grad_from_logits(self, y_true: Array, z: Array) -> Array:
        return softmax(z) - y_true

    def _clipped(self, y_pred: Array) -> tuple[Array, Array, Array]:
        """(q, c, inside): q = P / sum P, c = clip(q, eps, 1 - eps), inside = where the clip passes gradient."""
        q = y_pred / y_pred.sum(axis=-1, keepdims=True)
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        c = np.clip(q, eps, 1 - eps)
        inside = (q >= eps) & (q <= 1 - eps)  # tf.clip_by_value passes the gradient on the boundary
        return q, c, inside

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.per_sample_from_logits(y_true, y_pred)
        _, c, _ = self._clipped(y_pred)
        return -(y_true * np.log(c)).sum(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        """Probability path: with s = sum_k P_k, q = P / s, c = clip(q) and g = dl/dq = -Y / c (0 where clipped),
        the chain through the renormalisation gives dl/dP_k = (g_k - sum_j g_j q_j) / s."""
        if self.from_logits:
            return self.grad_from_logits(y_true, y_pred)
        q, c, inside = self._clipped(y_pred)
        g = np.where(inside, -y_true / c, 0)
        s = y_pred.sum(axis=-1, keepdims=True)
        return (g - (g * q).sum(axis=-1, keepdims=True)) / s


class MeanSquaredError(Loss):
    """l_i = (1/K) sum_k (Y_ik - P_ik)^2, dl_i/dP_i = (2/K) (P_i - Y_i).  Y (N, K), P (N, K)."""

    name = "mean_squared_error"

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        return ((y_true - y_pred) ** 2).mean(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        return 2 * (y_pred - y_true) / y_pred.shape[-1]


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer class labels y (N,) (or (N, 1)); no label smoothing.

    - From logits (or a softmax output layer): the same as the one-hot form, dl_i/dZ_i = P_i - onehot(y_i).
    - On a plain probability tensor, Keras does *not* renormalise first: c = clip(P, eps, 1 - eps), then
      l_i = -log c_{i,y_i} + log sum_j c_ij, so dl_i/dc_ij = 1 / sum_j c_ij - [j = y_i] / c_ij (0 where clipped).
    """

    name = "sparse_categorical_crossentropy"
    target_kind = "labels"

    def __init__(self, from_logits: bool = False) -> None:
        super().__init__(from_logits=from_logits)

    def config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}

    def check_targets(self, y_true: Array, outputs: int) -> None:
        """Integer class indices in [0, outputs), shape (N,) or (N, 1)."""
        if not (y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1)):
            raise BadInputError(
                f"labels: shape {y_true.shape} does not fit {self.name}: expected class indices of shape "
                f"({y_true.shape[0]},) or ({y_true.shape[0]}, 1)"
            )
        flat = y_true.reshape(-1)
        bad = np.flatnonzero((flat != np.round(flat)) | (flat < 0) | (flat >= outputs))
        if bad.size:
            i = int(bad[0])
            raise BadInputError(
                f"labels: class index {flat[i]:g} at row {i} is out of range for {outputs} classes (0 to {outputs - 1})"
            )

    def prepare_targets(self, y_true: Array, y_pred: Array) -> Array:
        """Integer labels (N,) or (N, 1) -> one-hot (N, K) in the prediction's dtype."""
        labels = np.asarray(y_true).reshape(-1).astype(np.int64)
        return np.eye(y_pred.shape[-1], dtype=y_pred.dtype)[labels]

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.per_sample_from_logits(y_true, y_pred)
        c = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return -np.log((c * y_true).sum(axis=-1)) + np.log(c.sum(axis=-1))

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.grad_from_logits(y_true, y_pred)
        c = np.clip(y_pred, EPSILON, 1 - EPSILON)
        inside = (y_pred >= EPSILON) & (y_pred <= 1 - EPSILON)
        g = 1 / c.sum(axis=-1, keepdims=True) - y_true / c
        return np.where(inside, g, 0)


class BinaryCrossentropy(Crossentropy):
    """l_i = -(1/K) sum_k [Y_ik log P_ik + (1 - Y_ik) log(1 - P_ik)], targets in [0, 1].  Y, P (N, K).

    - from_logits=True, or the output layer is a sigmoid (Keras's hidden-logits path): computed stably as
      (1/K) sum_k [max(Z, 0) - Z Y + log(1 + exp(-|Z|))], and dl_i/dZ_i = (sigmoid(Z_i) - Y_i) / K.
    - Probabilities: c = clip(P, eps, 1 - eps); dl_i/dP_ik = (-Y/c + (1 - Y)/(1 - c)) / K, 0 where clipped.
    - label_smoothing s: Y <- Y (1 - s) + s / 2.
    """

    name = "binary_crossentropy"
    target_kind = "binary"
    default_output = "sigmoid"

    def fused_terms(self, y_abs: Array, p_abs: Array) -> Array:
        """dl/dZ = (P - Y) / K (sigmoid cross-entropy): terms (|P| + |Y|) / K."""
        return (p_abs + y_abs) / p_abs.shape[-1]

    def check_targets(self, y_true: Array, outputs: int) -> None:
        """Y (N, K) with every entry in [0, 1]."""
        super().check_targets(y_true, outputs)
        bad = np.argwhere((y_true < 0) | (y_true > 1))
        if bad.size:
            index = tuple(int(i) for i in bad[0])
            raise BadInputError(f"labels: {y_true[index]:g} at {index} is outside [0, 1], as {self.name} needs")

    def prepare_targets(self, y_true: Array, y_pred: Array) -> Array:
        if self.label_smoothing:
            return y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return y_true

    def per_sample_from_logits(self, y_true: Array, z: Array) -> Array:
        return (np.maximum(z, 0) - z * y_true + np.log1p(np.exp(-np.abs(z)))).mean(axis=-1)

    def grad_from_logits(self, y_true: Array, z: Array) -> Array:
        return (sigmoid(z) - y_true) / z.shape[-1]

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.per_sample_from_logits(y_true, y_pred)
        c = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return -(y_true * np.log(c) + (1 - y_true) * np.log(1 - c)).mean(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.grad_from_logits(y_true, y_pred)
        c = np.clip(y_pred, EPSILON, 1 - EPSILON)
        inside = (y_pred >= EPSILON) & (y_pred <= 1 - EPSILON)
        return np.where(inside, (-y_true / c + (1 - y_true) / (1 - c)) / y_pred.shape[-1], 0)


class MeanAbsoluteError(Loss):
    """l_i = (1/K) sum_k |Y_ik - P_ik|, dl_i/dP_i = sign(P_i - Y_i) / K (0 where P = Y, as TensorFlow's sign)."""

    name = "mean_absolute_error"

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        return np.abs(y_true - y_pred).mean(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        return np.sign(y_pred - y_true) / y_pred.shape[-1]


class Huber(Loss):
    """Per entry e = P - Y: e^2 / 2 where |e| <= delta, else delta |e| - delta^2 / 2; mean over the last axis.

    dl_i/dP_ik = e / K where |e| <= delta (the boundary belongs to the quadratic part), else delta sign(e) / K.
    """

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = check_real("loss 'huber':", "delta", delta, 0, low_open=True)

    def config(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        e = y_pred - y_true
        quadratic = 0.5 * e * e
        linear = self.delta * np.abs(e) - 0.5 * self.delta**2
        return np.where(np.abs(e) <= self.delta, quadratic, linear).mean(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        e = y_pred - y_true
        return np.where(np.abs(e) <= self.delta, e, self.delta * np.sign(e)) / y_pred.shape[-1]


class SumSquaredError(Loss):
    """The seed material's regression error E = (1/2) sum_i sum_k (Y_ik - P_ik)^2: summed over the batch too.

    dE/dP = P - Y: the 1/2 is there so that the 2 of the square's derivative cancels. Keras has no such loss;
    its twin (keras_impl/losses.py) is a small custom loss with reduction="sum" whose per-sample value is
    (1/2) sum_k (Y_ik - P_ik)^2. With sample weights: E = sum_i w_i l_i (no division by N).
    """

    name = "sum_squared_error"

    def per_sample(self, y_true: Array, y_pred: Array) -> Array:
        return 0.5 * ((y_true - y_pred) ** 2).sum(axis=-1)

    def per_sample_grad(self, y_true: Array, y_pred: Array) -> Array:
        return y_pred - y_true

    def reduce(self, values: Array, sample_weight: Array | None) -> float:
        """E = sum_i w_i l_i (Keras reduction "sum").  values (N,) -> scalar."""
        if sample_weight is not None:
            values = values * sample_weight
        return values.sum()

    def reduce_grad(self, grad: Array, sample_weight: Array | None) -> Array:
        """dE/dP = w_i dl_i/dP_i.  grad (N, K) -> (N, K)."""
        return grad if sample_weight is None else grad * sample_weight[:, None]


LOSSES: dict[str, type[Loss]] = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
    "sum_squared_error": SumSquaredError,
}


class OutputLosses:
    """The loss of a model of several outputs: one loss per output and their weights,
    L = sum_o w_o L_o (w_o = 1 when `weights` is None), as Keras's compiled loss sums them (CompileLoss: each output's
    loss, times its weight, added in the outputs' order). A model's passes take it where they take a loss."""

    def __init__(self, losses: Any, weights: Any = None) -> None:
        if not isinstance(losses, (list, tuple)) or not losses:
            raise BadInputError(f"OutputLosses takes a list with one loss per output, got {losses!r:.60}")
        self.losses = [get_loss(item) for item in losses]
        if weights is not None:
            if not isinstance(weights, (list, tuple)) or len(weights) != len(self.losses):
                raise BadInputError(
                    f"loss_weights: give a list of {len(self.losses)} numbers, one per output, got {weights!r:.60}"
                )
            weights = [check_real("loss_weights", f"entry {i}", w) for i, w in enumerate(weights)]
        self.weights = None if weights is None else [float(w) for w in weights]

    @property
    def name(self) -> str:
        return "+".join(loss.name for loss in self.losses)

    def __repr__(self) -> str:
        weights = "" if self.weights is None else f", loss_weights={self.weights}"
        return f"[{', '.join(map(repr, self.losses))}]{weights}"


def get_loss(loss: str | Loss, **kwargs: Any) -> Loss:
    """A loss object from a Keras string identifier (with constructor arguments) or an existing object (an
    OutputLosses for a model of several outputs)."""
    if isinstance(loss, OutputLosses):
        return loss  # type: ignore[return-value]
    if isinstance(loss, Loss):
        if kwargs:
            raise BadInputError(f"loss arguments {sorted(kwargs)} given with a loss object; pass them to its class")
        return loss
    return from_registry("loss", LOSSES, ALIASES.get(loss, loss) if isinstance(loss, str) else loss, **kwargs)


#: Keras's short names for the losses above (keras.losses.get accepts them too).
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
